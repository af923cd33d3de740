/* principal: who a peer is, from its kernel credentials and the rules in PostgreSQL. */
#ifndef PCS_SERVER_PRINCIPAL_H
#define PCS_SERVER_PRINCIPAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "authz.h"
#include "db.h"
#include "pcsecret.pb-c.h"
#include "status.h"

/* Root and the daemon's own uid are admins without any rule (bootstrap). 1 when p was set. */
int principal_bootstrap(struct principal *p, uid_t self_uid) PCS_WUR;
/*
 * Builds p from the rules matching it (db_principal_lookup's rows: uid rules first). The most
 * specific rule wins: uid rules over gid rules; among rules of that kind, the first one's
 * role, with the companies of every rule of that kind and role. An agent's uid is an agent
 * and nothing else: a peer whose uid is an agent but who also matches any other rule (through
 * a group) is refused rather than given either role, so nobody who can create agents can turn
 * a person into an agent or an agent into a person. Returns 0, or -PCS_UNAUTHENTICATED.
 */
int principal_from_matches(
    struct principal *p, const struct db_principal_match *rows, size_t n, pcs_error *err) PCS_WUR;

/* Storage for principal_to_proto's pointers. */
struct principal_proto {
	Pcsecret__V1__Principal msg;
	char *companies[AUTHZ_MAX_COMPANIES];
	char agent[2 * PCS_NAME_MAX + 2];
};
void principal_to_proto(const struct principal *p, struct principal_proto *out);

#endif
