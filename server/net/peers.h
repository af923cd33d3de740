/*
 * peers: accounting per peer uid, over all of that uid's connections, so that one local user
 * cannot take what the daemon shares between all of them: connection slots, input buffer
 * memory, and calls in flight. One entry per uid that has a connection; conn keeps a pointer
 * to its uid's entry for the connection's whole life (until it is freed, not merely closed,
 * since calls in flight still count).
 *
 * A uid is "known" while one of its connections has a principal, and for a while after its
 * last successful Hello: a burst of new connections from an agent that just ran is not held
 * to the tight limit for uids without a role. The remembered entries are capped.
 *
 * The table is the process's own (one daemon per process), so an entry outlives any one
 * struct server; nothing here does I/O.
 */
#ifndef PCS_SERVER_PEERS_H
#define PCS_SERVER_PEERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "server.h"
#include "status.h"

struct config;

struct peer {
	uid_t uid;
	size_t refs;             /* struct conns that point here (open or closing) */
	size_t conns;            /* open connections */
	size_t conns_principal;  /* of them, those whose last Hello succeeded */
	size_t buffered;         /* bytes of input buffer held over its connections */
	size_t calls;            /* calls in flight, against max_calls_per_uid */
	size_t calls_peak;       /* the most ever in flight at once (stats, tests) */
	uint64_t known_until_ms; /* remembered as having a principal until then; 0 = not */
	/*
	 * Connections of this uid waiting for one of its call slots (max_calls_per_uid), and
	 * those waiting for daemon-wide room (max_calls) behind the one that holds this uid's
	 * single place in srv->waitq. conn.c owns the queueing.
	 */
	struct conn_waitq slot_wait;
	struct conn_waitq turn_wait;
	int has_turn;      /* one of its connections is on srv->waitq */
	struct peer *next; /* hash chain */
};

/* Why peers_admit refused; stable names for the log. */
#define PEERS_REASON_PER_UID "per_uid_limit"
#define PEERS_REASON_UNKNOWN "unknown_per_uid_limit"

/*
 * 0 when uid may open one more connection now; otherwise -PCS_RESOURCE_EXHAUSTED, err naming
 * the limit and *reason one of the PEERS_REASON_* names.
 */
int peers_admit(const struct config *cfg, uid_t uid, uint64_t now_ms, const char **reason,
    pcs_error *err) PCS_WUR;
/* The entry of uid, made when it has none, with one more reference; NULL when out of memory. */
struct peer *peers_get(uid_t uid);
/* Drops a reference; the entry goes once unused, unless it is remembered as known. */
void peers_put(struct peer *p, uint64_t now_ms);
/* 1 when p has a principal now or had one recently. */
int peers_known(const struct peer *p, uint64_t now_ms) PCS_WUR;
/* A Hello of p's uid succeeded / ended without a principal. */
void peers_remember(struct peer *p, uint64_t now_ms);
void peers_forget(struct peer *p);
/*
 * Reserves add more bytes of input buffer for p; -PCS_RESOURCE_EXHAUSTED (err says so) when
 * that would pass max_buffered_per_uid. peers_unbuffer gives bytes back.
 */
int peers_buffer(struct peer *p, const struct config *cfg, size_t add, pcs_error *err) PCS_WUR;
void peers_unbuffer(struct peer *p, size_t bytes);
/* Counts a call started / finished. */
void peers_call_started(struct peer *p);
void peers_call_done(struct peer *p);
/* 1 when p has max_calls_per_uid calls in flight. */
int peers_calls_full(const struct peer *p, const struct config *cfg) PCS_WUR;

#endif
