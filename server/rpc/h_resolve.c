/*
 * Resolve and GetAgentEnv: the only rpcs that return values, and only to an agent (for itself)
 * or a launcher (for an agent of its companies). Which refs an agent may read is decided by
 * its env config, in the same statement that reads the ciphertext and writes the audit row.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cache.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "dispatch.h"
#include "handlers.h"
#include "ref.h"
#include "server.h"

/* Which agent the values are for: the caller itself, or the one a launcher names. */
static int target_agent(struct call *c, const char *company_in, const char *agent_in,
    char company[PCS_NAME_MAX + 1], char agent[PCS_NAME_MAX + 1])
{
	const struct principal *p = call_principal(c);

	if (company_in[0] == '\0' && agent_in[0] == '\0') {
		if (p->role == ROLE_LAUNCHER) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "a launcher must name the agent "
			    "(company/agent) it resolves for");
			return -1;
		}
		if (p->role != ROLE_AGENT) {
			/* Admins and operators learn they may not at all (authz refuses them). */
			if (call_authorize(c, NULL, NULL) == 0)
				call_fail(
				    c, PCS_INTERNAL, "a value read naming no agent was allowed");
			return -1;
		}
		snprintf(company, PCS_NAME_MAX + 1, "%s", p->companies[0]);
		snprintf(agent, PCS_NAME_MAX + 1, "%s", p->agent);
	} else {
		if (!name_valid(company_in) || !name_valid(agent_in)) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "agent \"%.128s/%.128s\" is not a valid "
			    "company/agent name",
			    company_in, agent_in);
			return -1;
		}
		snprintf(company, PCS_NAME_MAX + 1, "%s", company_in);
		snprintf(agent, PCS_NAME_MAX + 1, "%s", agent_in);
	}
	return call_authorize(c, company, agent);
}

/* Opens a sealed value of (company_id, secret_id, version) into out; fails the call if not. */
static int open_sealed(struct call *c, const struct db_sealed *sealed, const char *company_id,
    const char *secret_id, uint32_t version, struct crypto_plain *out)
{
	struct crypto_ad ad = { company_id, secret_id, version };
	pcs_error err;
	int r;

	r = crypto_open(call_server(c)->master, &ad, sealed->ciphertext, sealed->ciphertext_len,
	    sealed->nonce, sealed->nonce_len, sealed->wrapped_key, sealed->wrapped_key_len,
	    sealed->key_id, out, &err);
	if (r != 0)
		call_fail(c, r, "secret %s version %u: %s", secret_id, version, err.message);
	return r;
}

struct opened {
	struct crypto_plain *plain;
	size_t n;
};

static void opened_free(struct opened *o)
{
	for (size_t i = 0; i < o->n; i++)
		crypto_plain_clear(&o->plain[i]);
	free(o->plain);
}

/* How a reference is named in messages: as the caller wrote it. */
static void ref_label(const Pcsecret__V1__SecretRef *r, char *buf, size_t size)
{
	struct pcs_ref ref;

	memset(&ref, 0, sizeof(ref));
	snprintf(ref.secret_id, sizeof(ref.secret_id), "%s", r->secret_id);
	snprintf(ref.company, sizeof(ref.company), "%s", r->secret_id[0] ? "" : r->company);
	snprintf(ref.name, sizeof(ref.name), "%s", r->secret_id[0] ? "" : r->name);
	ref.version = r->version;
	if (ref_format(&ref, buf, size) != 0)
		snprintf(buf, size, "reference");
}

/*
 * The audit row's refs as the caller asked them (an id, or company/name, and the version):
 * what a refusal records. NULL when out of memory.
 */
static struct audit_ref *resolve_refs_asked(struct call *c, const Pcsecret__V1__ResolveRequest *in)
{
	struct audit_ref *ar = call_refs(c, in->n_refs);

	for (size_t i = 0; ar != NULL && i < in->n_refs; i++) {
		const Pcsecret__V1__SecretRef *r = in->refs[i];
		if (r->secret_id[0] != '\0')
			audit_ref_set(&ar[i], uuid_valid(r->secret_id) ? r->secret_id : NULL, NULL,
			    uuid_valid(r->secret_id) ? NULL : r->secret_id, r->version, 0);
		else
			audit_ref_set(&ar[i], NULL, r->company, r->name, r->version, 0);
	}
	return ar;
}

/* Every ref must be granted (authz decides from the row) and its version active. */
static void on_resolved(
    struct call *c, const struct db_target *t, const struct db_resolved *rows, size_t n)
{
	const Pcsecret__V1__ResolveRequest *in = (const Pcsecret__V1__ResolveRequest *)call_request(
	    c);
	Pcsecret__V1__ResolveReply rep = PCSECRET__V1__RESOLVE_REPLY__INIT;
	Pcsecret__V1__ResolvedValue *items = calloc(n + 1, sizeof(*items));
	Pcsecret__V1__ResolvedValue **ptrs = calloc(n + 1, sizeof(*ptrs));
	struct opened o = { calloc(n + 1, sizeof(struct crypto_plain)), 0 };
	struct audit_ref *ar = NULL;
	char label[2 * PCS_NAME_MAX + 64];
	pcs_error err;

	if (items == NULL || ptrs == NULL || o.plain == NULL ||
	    (ar = resolve_refs_asked(c, in)) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (n != in->n_refs) {
		call_fail(c, PCS_INTERNAL, "resolved %zu of %zu references", n, in->n_refs);
		goto out;
	}
	/* The audit row names each secret as found, before anything may refuse the call. */
	for (size_t i = 0; i < n; i++) {
		const struct db_resolved *x = &rows[i];
		size_t idx = (size_t)x->idx - 1;
		if (idx < in->n_refs && x->secret_id != NULL && x->secret_id[0] != '\0')
			audit_ref_set(&ar[idx], x->secret_id,
			    x->company != NULL ? x->company : in->refs[idx]->company,
			    x->name != NULL ? x->name : in->refs[idx]->name, in->refs[idx]->version,
			    0);
	}
	for (size_t i = 0; i < n; i++) {
		const struct db_resolved *x = &rows[i];
		size_t idx = (size_t)x->idx - 1;
		struct authz_request rq = { METHOD_ACTION_VALUE_READ, t->company, t->agent,
			x->granted ? AUTHZ_GRANT_YES : AUTHZ_GRANT_NO };
		int r;

		if (idx >= in->n_refs) {
			call_fail(c, PCS_INTERNAL, "resolve returned an unknown reference");
			goto out;
		}
		if ((r = authz_check(call_principal(c), &rq, &err)) != 0) {
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(c, r, "%s: %s", label, err.message);
			goto out;
		}
		if (x->deleted_note != NULL) {
			/* Loud and telling: the binding is kept so the agent learns why (lifecycle). */
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(c, PCS_NOT_FOUND, "%s: %s", label, x->deleted_note);
			goto out;
		}
		if (x->state == NULL) {
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(
			    c, PCS_NOT_FOUND, "%s: version %u does not exist", label, x->version);
			goto out;
		}
		if (strcmp(x->state, "destroyed") == 0) {
			/* Never a value: its ciphertext is gone (destroy-version, retention, purge). */
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(c, PCS_FAILED_PRECONDITION,
			    "%s: version %u of %s/%s was destroyed", label, x->version,
			    x->company != NULL ? x->company : "?", x->name != NULL ? x->name : "?");
			goto out;
		}
		if (strcmp(x->state, "active") != 0) {
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(c, PCS_FAILED_PRECONDITION, "%s: version %u is %s", label,
			    x->version, x->state);
			goto out;
		}
		if (open_sealed(
		        c, &x->sealed, x->company_id, x->secret_id, x->version, &o.plain[o.n]) != 0)
			goto out;
		pcsecret__v1__resolved_value__init(&items[i]);
		items[i].ref = in->refs[idx];
		items[i].secret_id = (char *)x->secret_id;
		items[i].version = x->version;
		items[i].value.data = o.plain[o.n].data;
		items[i].value.len = o.plain[o.n].len;
		o.n++;
		ptrs[i] = &items[i];
	}
	/* Every value opened: the versions the reply serves are the row's. */
	for (size_t i = 0; i < n; i++)
		ar[rows[i].idx - 1].served = rows[i].version;
	rep.values = ptrs;
	rep.n_values = n;
	call_reply(c, &rep.base);
out:
	opened_free(&o);
	free(items);
	free(ptrs);
}

/* Read from the database: what it returned is remembered for the next calls, then used. */
static void on_resolved_db(
    struct call *c, const struct db_target *t, const struct db_resolved *rows, size_t n)
{
	const Pcsecret__V1__ResolveRequest *in = (const Pcsecret__V1__ResolveRequest *)call_request(
	    c);
	uint32_t *selectors = calloc(in->n_refs + 1, sizeof(*selectors));

	if (selectors != NULL) {
		for (size_t i = 0; i < in->n_refs; i++)
			selectors[i] = in->refs[i]->version;
		cache_resolve_put(
		    call_server(c)->cache, t->company, t->agent, selectors, in->n_refs, rows, n);
		free(selectors);
	}
	on_resolved(c, t, rows, n);
}

/* 1 when the cache answered (the call's check says from what), 0 to ask the database. */
static int resolve_cached(
    struct call *c, const char *company, const char *agent, const struct db_ref *refs, size_t n)
{
	const struct db_target t = { company, agent };
	struct db_resolved *rows;
	struct db_check *check = NULL;

	if (!call_may_use_cache(c) || (rows = calloc(n, sizeof(*rows))) == NULL)
		return 0;
	if (cache_resolve(call_server(c)->cache, company, agent, refs, n, call_principals_gen(c),
	        rows, &check) != 1) {
		free(rows);
		return 0;
	}
	call_answered_from_cache(c, check);
	on_resolved(c, &t, rows, n);
	free(rows);
	return 1;
}

void handle_resolve(Pcsecret__V1__PcSecret_Service *svc, const Pcsecret__V1__ResolveRequest *in,
    Pcsecret__V1__ResolveReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	char company[PCS_NAME_MAX + 1], agent[PCS_NAME_MAX + 1], acompany[PCS_NAME_MAX + 1] = "";
	char aname[PCS_NAME_MAX + 1] = "", target[PCS_NAME_MAX + 8];
	size_t n = in->n_refs, max = (size_t)call_server(c)->cfg->max_refs;
	struct db_ref *refs = NULL;
	pcs_error err;

	/* A refusal records what was asked too (not past max_refs: that is the refusal). */
	if (n > 0 && n <= max && resolve_refs_asked(c, in) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (in->agent[0] != '\0' && ref_parse_path(in->agent, acompany, aname, &err) != 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "agent: %s", err.message);
		return;
	}
	if (target_agent(c, acompany, aname, company, agent) != 0)
		return;
	if (n == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "Resolve needs at least one reference");
		return;
	}
	if (n > max) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "Resolve has %zu references; the maximum is %zu "
		    "(max_refs)",
		    n, max);
		return;
	}
	if ((refs = calloc(n, sizeof(*refs))) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const Pcsecret__V1__SecretRef *r = in->refs[i];
		int by_id = r->secret_id[0] != '\0';
		if (by_id ? !uuid_valid(r->secret_id) :
		            (!name_valid(r->company) || !name_valid(r->name))) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "reference %zu names no valid secret (give a "
			    "secret id, or a company and a name)",
			    i + 1);
			goto out;
		}
		if (r->version > INT32_MAX) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "reference %zu: version %u is out of range", i + 1, r->version);
			goto out;
		}
		refs[i].secret_id = by_id ? r->secret_id : "";
		refs[i].company = by_id ? "" : r->company;
		refs[i].name = by_id ? "" : r->name;
		refs[i].version = r->version;
	}
	/* The row names the agent; its refs name each secret and the version served. */
	snprintf(target, sizeof(target), "agent:%s", agent);
	call_set_target(c, company, target, NULL);
	/*
	 * Resolve's audit row is queued (common/methods.h), not part of this statement: authz
	 * decides from its rows, and the row (written before the reply leaves) carries that.
	 */
	if (!resolve_cached(c, company, agent, refs, n))
		db_resolve(c, company, agent, refs, n, on_resolved_db);
out:
	free(refs);
}

static void on_env(
    struct call *c, const struct db_target *t, const struct db_env_value *rows, size_t n)
{
	Pcsecret__V1__GetAgentEnvReply rep = PCSECRET__V1__GET_AGENT_ENV_REPLY__INIT;
	Pcsecret__V1__EnvValue *items = calloc(n + 1, sizeof(*items));
	Pcsecret__V1__SecretRef *refs = calloc(n + 1, sizeof(*refs));
	Pcsecret__V1__EnvValue **ptrs = calloc(n + 1, sizeof(*ptrs));
	struct opened o = { calloc(n + 1, sizeof(struct crypto_plain)), 0 };
	struct audit_ref *ar = call_refs(c, n);
	char agent[2 * PCS_NAME_MAX + 2];

	if (items == NULL || refs == NULL || ptrs == NULL || o.plain == NULL || ar == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	/* Each binding's secret, named before anything may refuse the call. */
	for (size_t i = 0; i < n; i++)
		audit_ref_set(&ar[i], rows[i].secret_id, rows[i].ref_company, rows[i].ref_name,
		    rows[i].selector, 0);
	for (size_t i = 0; i < n; i++) {
		const struct db_env_value *v = &rows[i];
		if (open_sealed(
		        c, &v->sealed, v->company_id, v->secret_id, v->version, &o.plain[o.n]) != 0)
			goto out;
		pcsecret__v1__secret_ref__init(&refs[i]);
		refs[i].company = (char *)v->ref_company;
		refs[i].name = (char *)v->ref_name;
		refs[i].version = v->selector;
		pcsecret__v1__env_value__init(&items[i]);
		items[i].env_name = (char *)v->env_name;
		items[i].ref = &refs[i];
		items[i].version = v->version;
		items[i].value.data = o.plain[o.n].data;
		items[i].value.len = o.plain[o.n].len;
		o.n++;
		ptrs[i] = &items[i];
	}
	for (size_t i = 0; i < n; i++)
		ar[i].served = rows[i].version;
	snprintf(agent, sizeof(agent), "%s/%s", t->company, t->agent);
	rep.agent = agent;
	rep.env = ptrs;
	rep.n_env = n;
	call_reply(c, &rep.base);
out:
	opened_free(&o);
	free(items);
	free(refs);
	free(ptrs);
}

void handle_get_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__GetAgentEnvRequest *in, Pcsecret__V1__GetAgentEnvReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);
	char company[PCS_NAME_MAX + 1], agent[PCS_NAME_MAX + 1];
	char label[PCS_NAME_MAX + 8];

	if (target_agent(c, in->company, in->agent, company, agent) != 0)
		return;
	/* As Resolve's row: the agent here, each binding's secret and version in its refs. */
	snprintf(label, sizeof(label), "agent:%s", agent);
	call_set_target(c, company, label, NULL);
	/* Audited after opening the values, so a DATA_LOSS is the call's one row, not a second. */
	db_agent_env(c, company, agent, on_env);
}
