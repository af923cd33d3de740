/*
 * watch: the daemon's Watch streams (docs/protocol.md, "Watch").
 *
 * A stream is opened by a Watch call and lives on its connection until the connection ends
 * or the daemon ends it. The hub hears every change from the change feed (pcs_watch
 * payloads, parsed by watch_event) and pushes an event frame to each stream that watches the
 * secret, on whichever daemon it is connected to: one notification per change per daemon,
 * matched against the streams in memory, no query per watcher.
 *
 * A stream is registered (pending) before its call reads what it covers, so a change that
 * commits while the call runs is held and sent after the call's reply; one committed before
 * the call's snapshot may be sent as well (an event can repeat what the reply already says).
 *
 * Authorization is decided by the Watch call on the rules as they are then. When they may
 * have changed for a stream (any principal rule, or the bindings of the agent it watches or is)
 * the stream ends with ABORTED ("watch again"): the new Watch is decided on the rules as they
 * are now, so a revoked watcher gets PERMISSION_DENIED. When the feed stops listening every
 * stream ends with UNAVAILABLE (changes may go unheard).
 */
#ifndef PCS_SERVER_WATCH_H
#define PCS_SERVER_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

struct server;
struct session;
struct watch_hub;
struct watch_stream;

int watch_hub_new(struct server *srv, struct watch_hub **out, pcs_error *err) PCS_WUR;
/* Ends nothing: the connections are closed first (their streams go with them). */
void watch_hub_free(struct watch_hub *h);
/* The feed listens (1) or stopped (0: every stream ends UNAVAILABLE). */
void watch_feed_live(struct watch_hub *h, int up);
/* A pcs_watch payload. One that does not parse is logged and ignored. */
void watch_feed_event(struct watch_hub *h, const char *payload);
/* A pcs_change payload: "p" (rules) ends every stream but the bootstrap admins'. */
void watch_feed_changed(struct watch_hub *h, const char *payload);
/* Streams open (pending ones too): in the daemon's stop line and for tests. */
size_t watch_hub_streams(const struct watch_hub *h);
/* Events sent since start. */
uint64_t watch_hub_events(const struct watch_hub *h);

/*
 * A pending stream for call call_id of s, by uid: refused with RESOURCE_EXHAUSTED past
 * max_watches_per_conn or max_watches_per_uid, UNAVAILABLE when the feed is not listening.
 * bootstrap: the caller is root or the daemon's uid (a rules change does not end it).
 */
int watch_stream_new(struct watch_hub *h, struct session *s, uint64_t call_id, uint32_t uid,
    int bootstrap, struct watch_stream **out, pcs_error *err) PCS_WUR;
/* The pending stream of call call_id of s; NULL when there is none. */
struct watch_stream *watch_stream_find(struct watch_hub *h, struct session *s, uint64_t call_id);
/* What it covers, from the call's query. 0, or -PCS_RESOURCE_EXHAUSTED. */
int watch_stream_add(
    struct watch_stream *w, const char *secret_id, const char *company, const char *name) PCS_WUR;
/* The agent whose bindings, when they change, end the stream (its env, or the caller's). */
void watch_stream_set_agent(
    struct watch_stream *w, const char *agent_id, const char *company, const char *agent);
/*
 * The call's reply went out (status OK: the stream opens and what it held is sent), or the
 * call failed or its peer was gone (status not OK, or -1): the stream is freed. Exactly once;
 * call_on_sent's signature.
 */
void watch_stream_opened(int status, void *w);

#endif
