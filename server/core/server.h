/* The daemon's shared context: one per process, owned by main. */
#ifndef PCS_SERVER_SERVER_H
#define PCS_SERVER_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

struct event_base;
struct event;
struct config;
struct store;
struct crypto_master;
struct conn;
struct listener;
struct audit_queue;
struct cache;
struct feed;
struct watch_hub;

TAILQ_HEAD(conn_list, conn);
TAILQ_HEAD(conn_waitq, conn);

struct server_stats {
	uint64_t connections_total;
	uint64_t connections_refused; /* over max_connections or a per-uid connection limit */
	uint64_t connections_evicted; /* closed before Hello to make room under max_connections */
	uint64_t handshake_timeouts;  /* closed without a successful Hello in time */
	uint64_t calls_total;
	uint64_t calls_failed;
};

struct server {
	struct event_base *base;
	const struct config *cfg;
	struct store *store;
	struct audit_queue *audit; /* group commit of audit rows not written with the work;
	                                   made at start-up, after the store */
	struct cache *cache;       /* what resolves may be answered from (server/cache) */
	struct feed *feed;         /* the change feed that keeps it (db/feed.h), and the watches */
	struct watch_hub *watch;   /* open Watch streams (rpc/watch.h) */
	struct crypto_master *master;
	char instance_id[37];
	uid_t self_uid;
	struct conn_list conns;
	size_t nconns;
	size_t calls_in_flight;  /* daemon-wide, against cfg->max_calls */
	struct conn_waitq waitq; /* connections waiting for room under max_calls */
	uint64_t next_conn_id;
	struct listener *listener;
	int draining;
	struct server_stats stats;
};

#endif
