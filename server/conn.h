/*
 * conn: one client connection. Reads frames into a wiped input buffer, hands each whole frame
 * to dispatch, queues reply frames on an evbuffer written on a plain write event armed only
 * while something is queued. Backpressure: at most max_inflight calls per connection (reading
 * pauses), a bounded input buffer, and a peer whose queued output passes max_output is cut
 * off. A connection is freed once it is closed and no call refers to it.
 */
#ifndef PCS_SERVER_CONN_H
#define PCS_SERVER_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include "authz.h"
#include "server.h"

#define CONN_MAX_GROUPS 64

struct conn {
	TAILQ_ENTRY(conn) link;
	TAILQ_ENTRY(conn) wait_link;     /* waiting for room under max_calls */
	int waiting;                     /* on that queue */
	int woken;                       /* taken off it, its turn not used yet */
	struct server *srv;
	uint64_t id;
	int fd;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[CONN_MAX_GROUPS];   /* primary gid plus supplementary groups (SO_PEERGROUPS) */
	size_t ngroups;
	struct event *rev, *wev, *tev;
	struct evbuffer *out;
	uint8_t *in;                     /* input buffer; wiped when compacted or freed */
	size_t in_len, in_cap;
	uint64_t partial_since_ms;       /* when the current unfinished frame started; 0 = none */
	uint64_t last_activity_ms;
	int refs;                        /* the connection itself + one per call in flight */
	int closed;                      /* no more I/O; freed when refs drops to 0 */
	int read_eof;                    /* peer shut down its side: finish calls, then close */
	int close_after_flush;           /* a connection-level error was queued */
	int hello_state;                 /* 0 none, 1 in progress, 2 done */
	struct principal principal;
	size_t inflight;
};

/* Takes ownership of fd (non-blocking, close-on-exec). Returns NULL (fd closed) on failure. */
struct conn *conn_new(struct server *srv, int fd);
/* Queues a Reply frame. reply/len is the packed reply message (may be NULL). */
void conn_send_reply(struct conn *c, uint64_t call_id, int status, const char *message,
    const uint8_t *reply, size_t len);
/* Queues a call_id 0 error and closes once it is written. */
void conn_protocol_error(struct conn *c, int status, const char *message);
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/* A call of c started (dispatch); counts against max_inflight and max_calls. */
void conn_call_started(struct conn *c);
/* A call finished: lets a paused reader go on. */
void conn_call_done(struct conn *c);
void conn_close(struct conn *c, const char *reason);
void conn_close_all(struct server *srv, const char *reason);
/*
 * Shutdown has begun (srv->draining is set): nothing more is read; each connection closes
 * once the calls it has in flight are answered and written (idle ones at once).
 */
void conn_drain_all(struct server *srv);
uint64_t conn_now_ms(void);

#endif
