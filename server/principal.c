#include "principal.h"

#include <stdio.h>
#include <string.h>

int principal_bootstrap(struct principal *p, uid_t self_uid)
{
	if (p->uid != 0 && p->uid != (uint32_t)self_uid)
		return 0;
	p->role = ROLE_ADMIN;
	p->ncompanies = 0;
	if (p->uid == 0)
		snprintf(p->rule, sizeof(p->rule), "bootstrap: root");
	else
		snprintf(p->rule, sizeof(p->rule), "bootstrap: the daemon's own uid %u", p->uid);
	return 1;
}

/* Columns: id, match, unix_id, role, company, agent_id, agent_name. */
int principal_from_rows(struct principal *p, const struct store_result *res, pcs_error *err)
{
	int n = store_result_ntuples(res);
	const char *match, *role;

	if (n == 0)
		return pcs_fail(err, PCS_UNAUTHENTICATED,
		    "uid %u (gid %u) matches no principal; an admin can add one with pcctl principal add",
		    p->uid, p->gid);
	match = store_result_value(res, 0, 1);
	role = store_result_value(res, 0, 3);
	if (strcmp(role, "agent") == 0 && n > 1 && strcmp(store_result_value(res, 1, 3), "agent") != 0)
		return pcs_fail(err, PCS_UNAUTHENTICATED,
		    "uid %u is agent %s/%s but also matches %s %s (principal %s, role %s); an agent's "
		    "uid may match no other rule", p->uid, store_result_value(res, 0, 4),
		    store_result_value(res, 0, 6), store_result_value(res, 1, 1),
		    store_result_value(res, 1, 2), store_result_value(res, 1, 0),
		    store_result_value(res, 1, 3));
	p->role = authz_role_from_name(role);
	p->ncompanies = 0;
	p->agent[0] = '\0';
	snprintf(p->rule, sizeof(p->rule), "%s %s (principal %s)", match,
	    store_result_value(res, 0, 2), store_result_value(res, 0, 0));
	for (int i = 0; i < n && p->ncompanies < AUTHZ_MAX_COMPANIES; i++) {
		if (strcmp(store_result_value(res, i, 1), match) != 0 ||
		    strcmp(store_result_value(res, i, 3), role) != 0 ||
		    store_result_isnull(res, i, 4))
			continue;
		if (authz_has_company(p, store_result_value(res, i, 4)))
			continue;
		snprintf(p->companies[p->ncompanies++], PCS_NAME_MAX + 1, "%s",
		    store_result_value(res, i, 4));
		if (p->role == ROLE_AGENT) {
			snprintf(p->agent, sizeof(p->agent), "%s", store_result_value(res, i, 6));
			break; /* an agent principal is exactly one agent */
		}
	}
	if (p->role == ROLE_NONE)
		return pcs_fail(err, PCS_UNAUTHENTICATED, "principal rule has unknown role %s", role);
	return 0;
}

void principal_query(struct principal_query *pq, uid_t uid, const gid_t *groups, size_t n,
    struct store_query *q)
{
	size_t o = 0;

	pq->gids[o++] = '{';
	for (size_t i = 0; i < n && o < sizeof(pq->gids) - 13; i++)
		o += (size_t)snprintf(pq->gids + o, sizeof(pq->gids) - o, "%s%u", i ? "," : "",
		    (unsigned)groups[i]);
	snprintf(pq->gids + o, sizeof(pq->gids) - o, "}");
	snprintf(pq->uid, sizeof(pq->uid), "%u", (unsigned)uid);
	pq->values[0] = pq->uid;
	pq->values[1] = pq->gids;
	memset(q, 0, sizeof(*q));
	q->sql = "SELECT * FROM pcs_principal_lookup($1, $2)";
	q->nparams = 2;
	q->values = pq->values;
}

void principal_to_proto(const struct principal *p, struct principal_proto *out)
{
	pcsecret__v1__principal__init(&out->msg);
	out->msg.role = (char *)authz_role_name(p->role);
	for (size_t i = 0; i < p->ncompanies; i++)
		out->companies[i] = (char *)p->companies[i];
	out->msg.companies = out->companies;
	out->msg.n_companies = p->ncompanies;
	out->agent[0] = '\0';
	if (p->role == ROLE_AGENT && p->ncompanies > 0)
		snprintf(out->agent, sizeof(out->agent), "%s/%s", p->companies[0], p->agent);
	out->msg.agent = out->agent;
	out->msg.rule = (char *)p->rule;
	out->msg.uid = p->uid;
	out->msg.gid = p->gid;
	out->msg.pid = p->pid;
}
