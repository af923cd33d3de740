/*
 * conn: one client connection. Reads frames into a wiped input buffer, hands each whole frame
 * to dispatch, queues reply frames on an evbuffer written on a plain write event armed only
 * while something is queued. Backpressure: at most max_inflight calls per connection and
 * max_calls_per_uid per uid (reading pauses), a bounded input buffer (max_frame, or
 * max_frame_before_hello until Hello succeeded, and max_buffered_per_uid over a uid's
 * connections), and a peer whose queued output passes max_output is cut off. A connection
 * that has not completed Hello within handshake_timeout_ms is closed. A connection is freed
 * once it is closed and no call refers to it.
 */
#ifndef PCS_SERVER_CONN_H
#define PCS_SERVER_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include "server.h"

#define CONN_MAX_GROUPS 64

/* Which queue a connection waits on (conn->waiting). */
enum conn_wait {
	CONN_WAIT_NONE = 0,
	CONN_WAIT_SLOT,      /* its uid's slot_wait: the uid has max_calls_per_uid in flight */
	CONN_WAIT_TURN,      /* srv->waitq, holding its uid's one place in the rotation */
	CONN_WAIT_BEHIND     /* its uid's turn_wait, behind the one on srv->waitq */
};

struct peer;

struct conn {
	TAILQ_ENTRY(conn) link;
	TAILQ_ENTRY(conn) wait_link;     /* on the queue conn->waiting names */
	enum conn_wait waiting;
	enum conn_wait woken;            /* taken off that queue, its turn not used yet */
	struct server *srv;
	struct peer *peer;               /* its uid's accounting (peers.h); never NULL */
	int counted_principal;           /* counted in peer->conns_principal */
	int hello_pending;               /* a Hello was seen in progress; its outcome not yet noted */
	uint64_t opened_ms;              /* for handshake_timeout_ms */
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
	size_t inflight;
};

/*
 * 1 when the connection's last Hello succeeded: it then has the larger frame limit, counts
 * against max_conns_per_uid rather than max_conns_unknown_per_uid, and no handshake deadline.
 */
static inline int conn_has_principal(const struct conn *c)
{
	return c->hello_state == 2;
}

/* Takes ownership of fd (non-blocking, close-on-exec). Returns NULL (fd closed) on failure. */
struct conn *conn_new(struct server *srv, int fd);
/* Queues a Reply frame. reply/len is the packed reply message (may be NULL). */
void conn_send_reply(struct conn *c, uint64_t call_id, int status, const char *message,
    const uint8_t *reply, size_t len);
/* Queues a call_id 0 error and closes once it is written. */
void conn_protocol_error(struct conn *c, int status, const char *message);
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/* A call of c started (dispatch); counts against max_inflight, max_calls_per_uid, max_calls. */
void conn_call_started(struct conn *c);
/* A call finished: lets a paused reader go on. */
void conn_call_done(struct conn *c);
void conn_close(struct conn *c, const char *reason);
/*
 * max_connections is reached: closes the oldest connection that has not completed Hello, so
 * role-less peers cannot keep the slots from ones with a principal. 0 when one was closed,
 * -1 when every connection has a principal.
 */
int conn_evict_one(struct server *srv);
void conn_close_all(struct server *srv, const char *reason);
/*
 * Shutdown has begun (srv->draining is set): nothing more is read; each connection closes
 * once the calls it has in flight are answered and written (idle ones at once).
 */
void conn_drain_all(struct server *srv);
uint64_t conn_now_ms(void);

#endif
