/*
 * Watch: opens a stream of change events on the caller's connection
 * (server/rpc/watch.c keeps it). The call reads what it covers as it is now, decides who may
 * watch it (authz, with the agent's bindings as the grant), replies with the current latest
 * versions, and its reply opens the stream. Its audit row is queued like every read's: no row,
 * no reply, no stream. Events carry no values and get no row each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "config.h"
#include "db.h"
#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "server.h"
#include "watch.h"

/* Which agent's grants limit the caller: a launcher's named agent, an agent itself. */
static int grants_apply(const struct principal *p)
{
	return p->role == ROLE_LAUNCHER || p->role == ROLE_AGENT;
}

static void refuse_ref(struct call *c, const struct principal *p, const char *company,
    const char *agent, const char *what)
{
	if (grants_apply(p))
		/* As Resolve: not there and not granted look the same to an agent. */
		call_fail(c, PCS_PERMISSION_DENIED, "%s is not granted to agent %s/%s", what,
		    company, agent);
	else
		call_fail(c, PCS_NOT_FOUND, "%s does not exist", what);
}

static void on_targets(
    struct call *c, const struct db_target *t, const struct db_watch_target *rows, size_t n)
{
	const Pcsecret__V1__WatchRequest *in = (const Pcsecret__V1__WatchRequest *)call_request(c);
	const struct principal *p = call_principal(c);
	Pcsecret__V1__WatchReply rep = PCSECRET__V1__WATCH_REPLY__INIT;
	Pcsecret__V1__WatchedSecret *items = NULL, **ptrs = NULL;
	struct watch_hub *hub = call_server(c)->watch;
	struct watch_stream *w = hub != NULL ?
	    watch_stream_find(hub, call_session(c), call_wire_id(c)) :
	    NULL;
	char what[2 * PCS_NAME_MAX + 48], agent[2 * PCS_NAME_MAX + 2];
	const char *company = t->company;

	if (w == NULL) {
		call_fail(c, PCS_INTERNAL, "the watch's stream is gone");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct db_watch_target *r = &rows[i];
		const Pcsecret__V1__SecretRef *ref = r->idx >= 1 && r->idx <= in->n_refs ?
		    in->refs[r->idx - 1] :
		    NULL;

		if (ref != NULL && ref->secret_id[0] != '\0')
			snprintf(what, sizeof(what), "pcs:%s", ref->secret_id);
		else if (ref != NULL)
			snprintf(what, sizeof(what), "pcs:%s/%s", ref->company, ref->name);
		else
			snprintf(what, sizeof(what), "pcs:%s/%s", r->company, r->name);
		if (r->secret_id[0] == '\0') {
			refuse_ref(c, p, company, t->agent, what);
			return;
		}
		/* Refs by id alone: the company is the rows', one per watch, authorized now. */
		if (company[0] == '\0') {
			company = r->company;
			if (call_authorize(c, company, t->agent) != 0)
				return;
			call_set_target(c, company, NULL, NULL);
		} else if (strcmp(company, r->company) != 0) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "a watch covers one company: %s is in %s, not %s", what, r->company,
			    company);
			return;
		}
		if (grants_apply(p) && !r->granted) {
			refuse_ref(c, p, company, t->agent, what);
			return;
		}
	}
	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		pcsecret__v1__watched_secret__init(&items[i]);
		items[i].secret_id = (char *)rows[i].secret_id;
		items[i].company = (char *)rows[i].company;
		items[i].name = (char *)rows[i].name;
		items[i].latest = rows[i].latest;
		items[i].deleted = rows[i].deleted;
		if (watch_stream_add(w, rows[i].secret_id, rows[i].company, rows[i].name) != 0) {
			call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
	}
	if (n == 1)
		call_set_target(c, NULL, rows[0].name, NULL);
	agent[0] = '\0';
	if (n > 0 && rows[0].agent_id[0] != '\0') {
		watch_stream_set_agent(w, rows[0].agent_id, company, t->agent);
		snprintf(agent, sizeof(agent), "%s/%s", company, t->agent);
	}
	rep.n_secrets = n;
	rep.secrets = ptrs;
	rep.agent = agent;
	call_reply(c, &rep.base);
out:
	free(items);
	free(ptrs);
}

void handle_watch(Pcsecret__V1__PcSecret_Service *svc, const Pcsecret__V1__WatchRequest *in,
    Pcsecret__V1__WatchReply_Closure closure, void *closure_data)
{
	struct call *c = closure_data;
	const struct principal *p = call_principal(c);
	struct server *srv = call_server(c);
	char company[PCS_NAME_MAX + 1] = "", agent[PCS_NAME_MAX + 1] = "";
	const char **ids = NULL, **names = NULL;
	struct watch_stream *w = NULL;
	pcs_error err;

	(void)svc;
	(void)closure;
	if (in->n_refs > (size_t)srv->cfg->max_refs) {
		call_fail(c, PCS_INVALID_ARGUMENT, "%zu refs; the maximum is %lld (max_refs)",
		    in->n_refs, (long long)srv->cfg->max_refs);
		return;
	}
	if (in->agent[0] != '\0') {
		if (ref_parse_path(in->agent, company, agent, &err) != 0) {
			call_fail(c, PCS_INVALID_ARGUMENT, "agent: %s", err.message);
			return;
		}
	} else if (p->role == ROLE_AGENT) {
		/* An agent watches its own environment (or refs it is bound to). */
		snprintf(company, sizeof(company), "%s", p->ncompanies ? p->companies[0] : "");
		snprintf(agent, sizeof(agent), "%s", p->agent);
	} else if (in->n_refs == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "name the secrets to watch, or an agent");
		return;
	}
	if ((ids = calloc(in->n_refs + 1, sizeof(*ids))) == NULL ||
	    (names = calloc(in->n_refs + 1, sizeof(*names))) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < in->n_refs; i++) {
		const Pcsecret__V1__SecretRef *r = in->refs[i];

		ids[i] = r->secret_id;
		names[i] = r->name;
		if (r->secret_id[0] != '\0') {
			if (!uuid_valid(r->secret_id)) {
				call_fail(c, PCS_INVALID_ARGUMENT,
				    "ref %zu: secret_id is not a lowercase uuid", i + 1);
				goto out;
			}
			continue;
		}
		if (!name_valid(r->company) || !name_valid(r->name)) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "ref %zu: give a secret_id or a valid company and name", i + 1);
			goto out;
		}
		if (company[0] == '\0')
			snprintf(company, sizeof(company), "%s", r->company);
		else if (strcmp(company, r->company) != 0) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "a watch covers one company: ref %zu is in %s, not %s", i + 1,
			    r->company, company);
			goto out;
		}
	}
	/* The role and company now; the agent's grants once its bindings are read. */
	if (company[0] != '\0') {
		call_set_target(c, company, NULL, NULL);
		if (call_authorize(c, company, agent) != 0)
			goto out;
	} else if (p->role != ROLE_ADMIN && p->role != ROLE_OPERATOR) {
		/* Only they name refs by id alone; the others' company is their agent's. */
		if (call_authorize(c, NULL, agent) != 0)
			goto out;
	}
	/* Registered before the read, so nothing that commits after its snapshot is missed. */
	if (watch_stream_new(srv->watch, call_session(c), call_wire_id(c), p->uid,
	        p->uid == 0 || p->uid == (uint32_t)srv->self_uid, &w, &err) != 0) {
		call_fail_err(c, -err.code, &err);
		goto out;
	}
	call_on_sent(c, watch_stream_opened, w);
	db_watch_targets(c, company[0] ? company : NULL, agent, ids, names, in->n_refs, on_targets);
out:
	free(ids);
	free(names);
}
