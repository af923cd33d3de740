#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"
#include "render.h"

/* "pcs:company/name[@N]" for a structured reference; "-" when it cannot be written. */
void ref_text(const Pcsecret__V1__SecretRef *sref, char *buf, size_t size)
{
	struct pcs_ref ref;

	memset(&ref, 0, sizeof(ref));
	(void)snprintf(buf, size, "-");
	if (sref == NULL || strlen(sref->company) > PCS_NAME_MAX ||
	    strlen(sref->name) > PCS_NAME_MAX || strlen(sref->secret_id) > PCS_UUID_LEN)
		return;
	memcpy(ref.company, sref->company, strlen(sref->company) + 1);
	memcpy(ref.name, sref->name, strlen(sref->name) + 1);
	memcpy(ref.secret_id, sref->secret_id, strlen(sref->secret_id) + 1);
	ref.version = sref->version;
	if (ref_format(&ref, buf, size) != 0)
		(void)snprintf(buf, size, "-");
}

static json_t *j_strings(char **v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		(void)json_array_append_new(a, json_text(v[i]));
	return a;
}

json_t *j_principal(const Pcsecret__V1__Principal *p)
{
	static const Pcsecret__V1__Principal none = PCSECRET__V1__PRINCIPAL__INIT;

	if (p == NULL)
		p = &none;
	return json_pack("{s:o, s:o, s:o, s:o, s:I, s:I, s:I}", "role", json_text(p->role),
	    "companies", j_strings(p->companies, p->n_companies), "agent", json_text(p->agent),
	    "rule", json_text(p->rule), "uid", (json_int_t)p->uid, "gid", (json_int_t)p->gid, "pid",
	    (json_int_t)p->pid);
}

json_t *j_company(const Pcsecret__V1__Company *c)
{
	return json_pack("{s:o, s:o, s:o, s:o}", "id", json_text(c->id), "name", json_text(c->name),
	    "created_at", json_text(c->created_at), "created_by", json_text(c->created_by));
}

static json_t *j_version(const Pcsecret__V1__VersionInfo *v)
{
	json_t *o = json_pack("{s:I, s:o, s:o, s:o, s:o, s:b, s:b, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "version", (json_int_t)v->version, "state", json_text(v->state), "created_at",
	    json_text(v->created_at), "created_by", json_text(v->created_by), "key_id",
	    json_text(v->key_id), "latest", v->latest, "staged", v->staged, "disabled_at",
	    json_text(v->disabled_at), "disabled_by", json_text(v->disabled_by), "enabled_at",
	    json_text(v->enabled_at), "enabled_by", json_text(v->enabled_by), "promoted_at",
	    json_text(v->promoted_at), "promoted_by", json_text(v->promoted_by));

	/* Its value destroyed: when, by whom, how (destroy-version, retention, purge). */
	if (o != NULL) {
		(void)json_object_set_new(o, "destroyed_at", json_text(v->destroyed_at));
		(void)json_object_set_new(o, "destroyed_by", json_text(v->destroyed_by));
		(void)json_object_set_new(o, "destroyed_how", json_text(v->destroyed_how));
	}
	return o;
}

json_t *j_secret(const Pcsecret__V1__SecretInfo *s, int with_versions)
{
	json_t *o, *vs;
	size_t i;

	o = json_pack("{s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o}", "id", json_text(s->id), "company",
	    json_text(s->company), "name", json_text(s->name), "description",
	    json_text(s->description), "current_version", (json_int_t)s->current_version,
	    "created_at", json_text(s->created_at), "updated_at", json_text(s->updated_at),
	    "created_by", json_text(s->created_by));
	/* A deleted secret (list --deleted): when, by whom, and until when it can come back. */
	if (o != NULL && s->deleted_at[0] != '\0') {
		(void)json_object_set_new(o, "deleted_at", json_text(s->deleted_at));
		(void)json_object_set_new(o, "deleted_by", json_text(s->deleted_by));
		(void)json_object_set_new(o, "restore_until", json_text(s->restore_until));
		(void)json_object_set_new(o, "purged", json_boolean(s->purged));
	}
	if (o == NULL || !with_versions)
		return o;
	/* With the versions (secret show): the retention limit they are kept under, 0 = none. */
	(void)json_object_set_new(o, "max_versions", json_integer((json_int_t)s->max_versions));
	vs = json_array();
	for (i = 0; vs != NULL && i < s->n_versions; i++)
		(void)json_array_append_new(vs, j_version(s->versions[i]));
	(void)json_object_set_new(o, "versions", vs);
	return o;
}

json_t *j_agent(const Pcsecret__V1__AgentInfo *a)
{
	char ref[REF_TEXT_MAX];
	json_t *o, *env;
	size_t i;

	o = json_pack("{s:o, s:o, s:o, s:I, s:o, s:o}", "id", json_text(a->id), "company",
	    json_text(a->company), "name", json_text(a->name), "uid", (json_int_t)a->uid,
	    "created_at", json_text(a->created_at), "created_by", json_text(a->created_by));
	env = json_array();
	for (i = 0; env != NULL && i < a->n_env; i++) {
		ref_text(a->env[i]->ref, ref, sizeof(ref));
		(void)json_array_append_new(env,
		    json_pack("{s:o, s:o}", "env_name", json_text(a->env[i]->env_name), "ref",
		        json_text(ref)));
	}
	if (o != NULL)
		(void)json_object_set_new(o, "env", env);
	else
		json_decref(env);
	return o;
}

json_t *j_rule(const Pcsecret__V1__PrincipalRule *p)
{
	return json_pack("{s:I, s:o, s:I, s:o, s:o, s:o, s:o, s:o}", "id", (json_int_t)p->id,
	    "match", json_text(p->match), "unix_id", (json_int_t)p->unix_id, "role",
	    json_text(p->role), "company", json_text(p->company), "agent", json_text(p->agent),
	    "created_at", json_text(p->created_at), "created_by", json_text(p->created_by));
}

/* {secret, id, version, asked}: id null when unknown, version null when nothing was served. */
static json_t *j_audit_refs(const Pcsecret__V1__AuditEntry *e)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < e->n_refs; i++) {
		const Pcsecret__V1__AuditRef *r = e->refs[i];
		json_t *o = json_pack("{s:o, s:o, s:o, s:I}", "secret", json_text(r->secret), "id",
		    r->secret_id[0] != '\0' ? json_text(r->secret_id) : json_null(), "version",
		    r->version != 0 ? json_integer((json_int_t)r->version) : json_null(), "asked",
		    (json_int_t)r->asked);
		if (o == NULL || json_array_append_new(a, o) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *j_audit_fields(const Pcsecret__V1__AuditEntry *e);

json_t *j_audit(const Pcsecret__V1__AuditEntry *e)
{
	json_t *o = j_audit_fields(e);

	/* The names docs/audit.md gives (time, instance), beside the older at and instance_id. */
	if (o != NULL &&
	    (json_object_set_new(o, "time", json_text(e->at)) != 0 ||
	        json_object_set_new(o, "instance", json_text(e->instance_id)) != 0 ||
	        json_object_set_new(o, "outcome", json_text(e->outcome)) != 0 ||
	        json_object_set_new(
	            o, "agent", e->agent[0] != '\0' ? json_text(e->agent) : json_null()) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *j_audit_fields(const Pcsecret__V1__AuditEntry *e)
{
	return json_pack(
	    "{s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
	    (json_int_t)e->id, "at", json_text(e->at), "instance_id", json_text(e->instance_id),
	    "call_id", (json_int_t)e->call_id, "peer_uid", (json_int_t)e->peer_uid, "peer_gid",
	    (json_int_t)e->peer_gid, "peer_pid", (json_int_t)e->peer_pid, "principal",
	    json_text(e->principal), "method", json_text(e->method), "company",
	    json_text(e->company), "secret", json_text(e->secret), "version", json_text(e->version),
	    "status", json_text(e->status), "message", json_text(e->message), "refs",
	    j_audit_refs(e));
}

json_t *j_audit_chain(const Pcsecret__V1__AuditChain *k)
{
	return json_pack("{s:o, s:o, s:b, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "instance_id", json_text(k->instance_id), "lane",
	    k->unchained ? json_null() : json_integer((json_int_t)k->lane), "unchained",
	    (int)k->unchained, "rows", (json_int_t)k->rows, "last_seq", (json_int_t)k->last_seq,
	    "last_id", k->last_id ? json_integer((json_int_t)k->last_id) : json_null(), "last_hash",
	    json_text(k->last_hash), "head_seq",
	    k->head_seq ? json_integer((json_int_t)k->head_seq) : json_null(), "head_hash",
	    json_text(k->head_hash), "bad_id",
	    k->bad_id ? json_integer((json_int_t)k->bad_id) : json_null(), "bad_seq",
	    k->bad_seq ? json_integer((json_int_t)k->bad_seq) : json_null(), "problem",
	    json_text(k->problem), "archived",
	    k->archived[0] != '\0' ? json_string(k->archived) : json_null());
}

char *join_strings(char **v, size_t n)
{
	size_t i, len = 1, o = 0, l;
	char *s;

	for (i = 0; i < n; i++)
		len += strlen(v[i]) + 2;
	if ((s = malloc(len)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (i > 0) {
			memcpy(s + o, ", ", 2);
			o += 2;
		}
		l = strlen(v[i]);
		memcpy(s + o, v[i], l);
		o += l;
	}
	s[o] = '\0';
	return s;
}
