/* principal: who a peer is, from its kernel credentials and the rules in PostgreSQL. */
#ifndef PCS_SERVER_PRINCIPAL_H
#define PCS_SERVER_PRINCIPAL_H

#include <sys/types.h>
#include "authz.h"
#include "pcsecret.pb-c.h"
#include "store.h"

/* Root and the daemon's own uid are admins without any rule (bootstrap). 1 when p was set. */
int principal_bootstrap(struct principal *p, uid_t self_uid);
/*
 * Builds p from pcs_principal_lookup rows (uid rules sorted first). The most specific rule
 * wins: uid rules over gid rules; among rules of that kind, the first one's role, with the
 * companies of every rule of that kind and role. An agent's uid is an agent and nothing else:
 * a peer whose uid is an agent but who also matches any other rule (through a group) is
 * refused rather than given either role, so nobody who can create agents can turn a person
 * into an agent or an agent into a person. Returns 0, or -PCS_UNAUTHENTICATED.
 */
int principal_from_rows(struct principal *p, const struct store_result *res, pcs_error *err);

/* Storage for the lookup statement's parameters (principal_query). */
struct principal_query {
	char uid[16];
	char gids[64 * 12 + 4];
	const char *values[2];
};
/*
 * Fills q with the statement that returns every rule matching uid or any of groups[n] (the
 * peer's primary and supplementary groups), in the order principal_from_rows expects. q points
 * into pq, which must outlive q's use.
 */
void principal_query(struct principal_query *pq, uid_t uid, const gid_t *groups, size_t n,
    struct store_query *q);

/* Storage for principal_to_proto's pointers. */
struct principal_proto {
	Pcsecret__V1__Principal msg;
	char *companies[AUTHZ_MAX_COMPANIES];
	char agent[2 * PCS_NAME_MAX + 2];
};
void principal_to_proto(const struct principal *p, struct principal_proto *out);

#endif
