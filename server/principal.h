/* principal: who a peer is, from its kernel credentials and the rules in PostgreSQL. */
#ifndef PCS_SERVER_PRINCIPAL_H
#define PCS_SERVER_PRINCIPAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "authz.h"
#include "db.h"
#include "pcsecret.pb-c.h"
#include "store.h"

/* Root and the daemon's own uid are admins without any rule (bootstrap). 1 when p was set. */
int principal_bootstrap(struct principal *p, uid_t self_uid);
/*
 * Builds p from the rules matching it (db_principal_lookup's rows: uid rules first). The most
 * specific rule wins: uid rules over gid rules; among rules of that kind, the first one's
 * role, with the companies of every rule of that kind and role. An agent's uid is an agent
 * and nothing else: a peer whose uid is an agent but who also matches any other rule (through
 * a group) is refused rather than given either role, so nobody who can create agents can turn
 * a person into an agent or an agent into a person. Returns 0, or -PCS_UNAUTHENTICATED.
 */
int principal_from_matches(struct principal *p, const struct db_principal_match *rows,
    size_t n, pcs_error *err) __attribute__((warn_unused_result));

/*
 * The groups of a peer the lookup considers (conn.h's CONN_MAX_GROUPS), and the room their
 * binary bigint[] takes: a 20-byte header and 12 bytes per group.
 */
#define PRINCIPAL_MAX_GROUPS 64
#define PRINCIPAL_GROUPS_ARRAY (20 + 12 * PRINCIPAL_MAX_GROUPS)

/*
 * The lookup as a statement for dispatch's call_identify, until it calls db_principal_lookup
 * (db.h) instead; both are defined in db_principal.c with the statement. principal_query
 * fills q (pointing into pq, which must outlive q's use) with the statement returning every
 * rule matching uid or any of groups[n]; principal_from_rows decodes its result with
 * principal_from_matches.
 */
struct principal_query {
	char uid[16];
	uint8_t gids[PRINCIPAL_GROUPS_ARRAY];
	const char *values[2];
	int lengths[2], formats[2];
};
void principal_query(struct principal_query *pq, uid_t uid, const gid_t *groups, size_t n,
    struct store_query *q);
int principal_from_rows(struct principal *p, const struct store_result *res, pcs_error *err)
    __attribute__((warn_unused_result));

/* Storage for principal_to_proto's pointers. */
struct principal_proto {
	Pcsecret__V1__Principal msg;
	char *companies[AUTHZ_MAX_COMPANIES];
	char agent[2 * PCS_NAME_MAX + 2];
};
void principal_to_proto(const struct principal *p, struct principal_proto *out);

#endif
