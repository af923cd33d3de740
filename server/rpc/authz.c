#include "authz.h"

#include <stdio.h>
#include <string.h>

static const char *const role_names[] = {
	[ROLE_NONE] = "none",
	[ROLE_ADMIN] = "admin",
	[ROLE_OPERATOR] = "operator",
	[ROLE_LAUNCHER] = "launcher",
	[ROLE_AGENT] = "agent",
};

int authz_method_action(const char *method)
{
	const struct method *m = method_by_name(method);

	return m != NULL ? (int)m->action : -1;
}

const char *authz_role_name(enum role role)
{
	if ((unsigned)role >= sizeof(role_names) / sizeof(role_names[0]))
		return "none";
	return role_names[role];
}

enum role authz_role_from_name(const char *name)
{
	for (unsigned i = ROLE_ADMIN; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (name != NULL && strcmp(name, role_names[i]) == 0)
			return (enum role)i;
	return ROLE_NONE;
}

int authz_has_company(const struct principal *p, const char *company)
{
	if (company == NULL)
		return 0;
	for (size_t i = 0; i < p->ncompanies; i++)
		if (strcmp(p->companies[i], company) == 0)
			return 1;
	return 0;
}

void authz_describe(const struct principal *p, char *buf, size_t size)
{
	size_t o;

	switch (p->role) {
	case ROLE_ADMIN:
		snprintf(buf, size, "admin");
		return;
	case ROLE_AGENT:
		snprintf(buf, size, "agent %s/%s", p->ncompanies ? p->companies[0] : "", p->agent);
		return;
	case ROLE_OPERATOR:
	case ROLE_LAUNCHER:
		o = (size_t)snprintf(buf, size, "%s of ", authz_role_name(p->role));
		for (size_t i = 0; i < p->ncompanies && o < size; i++)
			o += (size_t)snprintf(
			    buf + o, size - o, "%s%s", i ? "," : "", p->companies[i]);
		return;
	case ROLE_NONE:
		break;
	}
	snprintf(buf, size, "uid %u (unknown)", p->uid);
}

static int deny(pcs_error *err, const struct principal *p, const char *what)
{
	char who[128];

	authz_describe(p, who, sizeof(who));
	return pcs_fail(err, PCS_PERMISSION_DENIED, "%s may not %s", who, what);
}

static int need_company(
    const struct principal *p, const char *company, const char *what, pcs_error *err)
{
	char buf[PCS_NAME_MAX + 64];

	if (company == NULL || company[0] == '\0')
		return deny(err, p, what);
	if (authz_has_company(p, company))
		return 0;
	snprintf(buf, sizeof(buf), "%s of company %s", what, company);
	return deny(err, p, buf);
}

/* Values go to an agent (for itself) or a launcher (for its companies' agents), nobody else. */
static int check_value(const struct principal *p, const struct authz_request *rq, pcs_error *err)
{
	int own;

	switch (p->role) {
	case ROLE_LAUNCHER:
		if (need_company(p, rq->company, "resolve values for agents", err) != 0)
			return -PCS_PERMISSION_DENIED;
		break;
	case ROLE_AGENT:
		own = rq->company == NULL || rq->company[0] == '\0' ||
		    (authz_has_company(p, rq->company) && rq->agent != NULL &&
		        strcmp(rq->agent, p->agent) == 0);
		if (!own)
			return deny(err, p, "resolve values for another agent");
		break;
	default:
		/* Admins and operators manage secrets but never see values. */
		return deny(err, p, "read secret values (only agents and launchers can)");
	}
	if (rq->grant == AUTHZ_GRANT_NO)
		return pcs_fail(err, PCS_PERMISSION_DENIED, "not granted to agent %s/%s",
		    rq->company ? rq->company : "", rq->agent ? rq->agent : "");
	return 0;
}

/*
 * Watching tells when a secret changes (never its value): operators for their companies, a
 * launcher for an agent of its company, an agent for itself; launchers and agents only what
 * the agent is bound to (the grant, decided by the watch's query).
 */
static int check_watch(const struct principal *p, const struct authz_request *rq, pcs_error *err)
{
	int own;

	switch (p->role) {
	case ROLE_ADMIN:
		return 0;
	case ROLE_OPERATOR:
		return need_company(p, rq->company, "watch secrets", err);
	case ROLE_LAUNCHER:
		if (rq->agent == NULL || rq->agent[0] == '\0')
			return deny(err, p, "watch secrets except through an agent's environment");
		if (need_company(p, rq->company, "watch secrets of agents", err) != 0)
			return -PCS_PERMISSION_DENIED;
		break;
	case ROLE_AGENT:
		own = authz_has_company(p, rq->company) && rq->agent != NULL &&
		    strcmp(rq->agent, p->agent) == 0;
		if (!own)
			return deny(err, p, "watch another agent's secrets");
		break;
	case ROLE_NONE:
		return deny(err, p, "watch secrets");
	}
	if (rq->grant == AUTHZ_GRANT_NO)
		return pcs_fail(err, PCS_PERMISSION_DENIED, "not granted to agent %s/%s",
		    rq->company ? rq->company : "", rq->agent ? rq->agent : "");
	return 0;
}

int authz_check(const struct principal *p, const struct authz_request *rq, pcs_error *err)
{
	if (p == NULL || p->role == ROLE_NONE)
		return pcs_fail(err, PCS_UNAUTHENTICATED, "uid %u gid %u matches no principal",
		    p ? p->uid : 0, p ? p->gid : 0);

	switch (rq->action) {
	case METHOD_ACTION_SESSION:
		return 0;
	case METHOD_ACTION_COMPANY_CREATE:
	case METHOD_ACTION_PRINCIPAL_ADMIN:
		if (p->role == ROLE_ADMIN)
			return 0;
		return deny(err, p,
		    rq->action == METHOD_ACTION_COMPANY_CREATE ? "create companies" :
		                                                 "manage principals");
	case METHOD_ACTION_COMPANY_LIST:
		if (p->role == ROLE_AGENT)
			return deny(err, p, "list companies");
		return 0;
	case METHOD_ACTION_SECRET_WRITE:
	case METHOD_ACTION_SECRET_READ:
	case METHOD_ACTION_AGENT_WRITE:
		if (p->role == ROLE_ADMIN)
			return 0;
		if (p->role != ROLE_OPERATOR)
			return deny(err, p,
			    rq->action == METHOD_ACTION_AGENT_WRITE ? "manage agents" :
			                                              "manage secrets");
		return need_company(p, rq->company,
		    rq->action == METHOD_ACTION_AGENT_WRITE ? "manage agents" : "manage secrets",
		    err);
	case METHOD_ACTION_AGENT_READ:
		if (p->role == ROLE_ADMIN)
			return 0;
		if (p->role != ROLE_OPERATOR && p->role != ROLE_LAUNCHER)
			return deny(err, p, "read agent configuration");
		return need_company(p, rq->company, "read agent configuration", err);
	case METHOD_ACTION_VALUE_READ:
		return check_value(p, rq, err);
	case METHOD_ACTION_AUDIT_READ:
		if (p->role == ROLE_ADMIN)
			return 0;
		if (p->role != ROLE_OPERATOR)
			return deny(err, p, "read the audit log");
		if (rq->company == NULL || rq->company[0] == '\0')
			return 0; /* the listing is filtered to its companies */
		return need_company(p, rq->company, "read the audit log", err);
	case METHOD_ACTION_WATCH:
		return check_watch(p, rq, err);
	case METHOD_ACTION_AUDIT_VERIFY:
		if (p->role == ROLE_ADMIN)
			return 0;
		return deny(err, p, "verify the audit log");
	}
	return pcs_fail(err, PCS_INTERNAL, "unknown authorization action %d", (int)rq->action);
}
