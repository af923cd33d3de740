/*
 * authz: who may do what. A pure function of the principal and the request: no I/O, no state.
 * Agent-level grants (which secrets an agent's env config names) are checked where the data
 * is, in the resolve query; this decides roles and companies.
 */
#ifndef PCS_SERVER_AUTHZ_H
#define PCS_SERVER_AUTHZ_H

#include <stddef.h>
#include <stdint.h>
#include "methods.h"
#include "ref.h"
#include "status.h"

enum role { ROLE_NONE = 0, ROLE_ADMIN, ROLE_OPERATOR, ROLE_LAUNCHER, ROLE_AGENT };

#define AUTHZ_MAX_COMPANIES 64

struct principal {
	enum role role;
	size_t ncompanies; /* operator, launcher: companies; agent: its own */
	char companies[AUTHZ_MAX_COMPANIES][PCS_NAME_MAX + 1];
	char agent[PCS_NAME_MAX + 1]; /* agent: its name (company is companies[0]) */
	char rule[96];                /* which rule matched, for whoami and the audit */
	uint32_t uid, gid, pid;       /* peer credentials from the kernel */
};

/* Whether the agent's env config names the reference (METHOD_ACTION_VALUE_READ of a reference). */
enum authz_grant {
	AUTHZ_GRANT_NA = 0, /* not known yet (the call-level check) or not applicable */
	AUTHZ_GRANT_YES,
	AUTHZ_GRANT_NO
};

struct authz_request {
	enum method_action action; /* from the rpc's row in the method table (common/methods.h) */
	const char *company;       /* the company the call touches; NULL/"" when none */
	const char *agent;         /* value actions: the agent's name within company */
	enum authz_grant grant;
};

/* The action that governs rpc `method` ("Resolve") from the method table; -1 for none. */
int authz_method_action(const char *method) PCS_WUR;

/* 0 when allowed; else -PCS_PERMISSION_DENIED / -PCS_UNAUTHENTICATED with a reason. */
int authz_check(const struct principal *p, const struct authz_request *rq, pcs_error *err) PCS_WUR;
const char *authz_role_name(enum role role);
/* Parses "admin" etc.; ROLE_NONE when unknown. */
enum role authz_role_from_name(const char *name);
/* 1 when p is operator/launcher/agent of company. */
int authz_has_company(const struct principal *p, const char *company) PCS_WUR;
/* "agent acme/bot", "operator of acme,beta", "admin": for the audit's principal column. */
void authz_describe(const struct principal *p, char *buf, size_t size);

#endif
