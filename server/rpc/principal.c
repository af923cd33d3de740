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

int principal_from_matches(
    struct principal *p, const struct db_principal_match *rows, size_t n, pcs_error *err)
{
	const char *match, *role;

	if (n == 0)
		return pcs_fail(err, PCS_UNAUTHENTICATED,
		    "uid %u (gid %u) matches no principal; an admin can add one with pcctl principal add",
		    p->uid, p->gid);
	match = rows[0].match;
	role = rows[0].role;
	if (strcmp(role, "agent") == 0 && n > 1 && strcmp(rows[1].role, "agent") != 0)
		return pcs_fail(err, PCS_UNAUTHENTICATED,
		    "uid %u is agent %s/%s but also matches %s %s (principal %s, role %s); an agent's "
		    "uid may match no other rule",
		    p->uid, rows[0].company != NULL ? rows[0].company : "", rows[0].agent_name,
		    rows[1].match, rows[1].unix_id, rows[1].id, rows[1].role);
	p->role = authz_role_from_name(role);
	p->ncompanies = 0;
	p->agent[0] = '\0';
	snprintf(
	    p->rule, sizeof(p->rule), "%s %s (principal %s)", match, rows[0].unix_id, rows[0].id);
	for (size_t i = 0; i < n && p->ncompanies < AUTHZ_MAX_COMPANIES; i++) {
		if (strcmp(rows[i].match, match) != 0 || strcmp(rows[i].role, role) != 0 ||
		    rows[i].company == NULL)
			continue;
		if (authz_has_company(p, rows[i].company))
			continue;
		snprintf(p->companies[p->ncompanies++], PCS_NAME_MAX + 1, "%s", rows[i].company);
		if (p->role == ROLE_AGENT) {
			snprintf(p->agent, sizeof(p->agent), "%s", rows[i].agent_name);
			break; /* an agent principal is exactly one agent */
		}
	}
	if (p->role == ROLE_NONE)
		return pcs_fail(
		    err, PCS_UNAUTHENTICATED, "principal rule has unknown role %s", role);
	return 0;
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
