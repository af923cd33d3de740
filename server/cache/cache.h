/*
 * cache: what the daemon remembers of the database between calls, so a Resolve can be answered
 * without reading it. It holds who a peer is (the principal rules matching its uid and groups),
 * which secrets each agent's bindings grant, which version latest points to, and sealed
 * versions: ciphertext only, never plaintext. Bounded in bytes, least recently used first out.
 *
 * Nothing here is trusted on its own. Every entry carries the generation it was read at
 * (migration 005), and an answer built from entries says which generations (struct db_check):
 * the statement that writes the call's audit row checks them and writes nothing when one has
 * moved, and the call is answered again from the database. The change feed (feed.h) only makes
 * that rare: it drops entries as their rows change, and while it is down nothing is served.
 * docs/architecture.md ("The cache") says why this is never staler than a read.
 *
 * One thread (the daemon's loop). Pointers a lookup returns point into entries: valid until the
 * next call that changes the cache (a put, a forget, a change, a flush). A NULL cache is an
 * empty one that is never live: every lookup misses and puts do nothing.
 */
#ifndef PCS_SERVER_CACHE_H
#define PCS_SERVER_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "db.h"
#include "status.h"

struct cache;

struct cache_stats {
	uint64_t hits;      /* resolves answered from the cache */
	uint64_t misses;    /* resolves that went to the database */
	uint64_t stale;     /* cached answers the audit statement refused (answered again) */
	uint64_t evictions; /* entries dropped to stay under the size bound */
	uint64_t flushes;   /* everything dropped (feed lost or back, a change of unknown scope) */
	uint64_t changes;   /* notifications applied */
	size_t entries, bytes, max_bytes;
	int live;
};

/* max_bytes 0: the cache holds nothing and every lookup misses. */
int cache_new(size_t max_bytes, struct cache **out, pcs_error *err) PCS_WUR;
void cache_free(struct cache *c);

/*
 * Whether the cache may answer. The feed sets it: 0 when its connection is lost (and until it
 * listens again), then 1. Both drop everything: what was read before may have changed unseen.
 */
void cache_set_live(struct cache *c, int live);
int cache_live(const struct cache *c);
/* A change feed notification's payload ("s <secret id>", "a <agent id>", "p", ...). */
void cache_changed(struct cache *c, const char *payload);
void cache_flush(struct cache *c);

/*
 * Identity: the rules matching a peer with uid and groups, as the database returned them, and
 * the rules' generation then. 1 and *rows, *n, *gen on a hit; 0 on a miss.
 */
int cache_identity_get(struct cache *c, uint32_t uid, const gid_t *groups, size_t ngroups,
    const struct db_principal_match **rows, size_t *n, int64_t *gen);
void cache_identity_put(struct cache *c, uint32_t uid, const gid_t *groups, size_t ngroups,
    const struct db_principal_match *rows, size_t n);

/*
 * A Resolve of refs[n] for agent company/agent. 1 when every reference is granted, its version
 * active and all of it is cached: out[n] is filled as db_resolve would (pointers into the
 * cache) and *check (malloc'd, the caller frees it) names what it was built from, with
 * principals_gen. 0 when any of it is not cached (nothing allocated). -PCS_RESOURCE_EXHAUSTED.
 */
int cache_resolve(struct cache *c, const char *company, const char *agent,
    const struct db_ref *refs, size_t n, int64_t principals_gen, struct db_resolved *out,
    struct db_check **check) PCS_WUR;
/* Remembers what db_resolve returned for refs[n] (granted, active rows only). */
void cache_resolve_put(struct cache *c, const char *company, const char *agent,
    const uint32_t *selectors, size_t nrefs, const struct db_resolved *rows, size_t n);
/*
 * A cached answer was refused as stale: counted, and what it was built from is dropped (the
 * identity of uid and groups, the check's agent and secrets), so the next call reads it again
 * even when the change was never notified.
 */
void cache_note_stale(struct cache *c, const struct db_check *check, uint32_t uid,
    const gid_t *groups, size_t ngroups);

void cache_get_stats(const struct cache *c, struct cache_stats *out);

#endif
