/*
 * conn: one framed peer on the socket, knowing nothing of what the frames mean. Reads frames
 * into a wiped input buffer and hands each whole one to its owner (ops->frame), queues the
 * owner's frames on an evbuffer written on a plain write event armed only while something is
 * queued, and tells the owner once when the peer is gone (ops->gone): one teardown path, as
 * tmux's peers have. The owner is the session (session.h).
 *
 * It also shares the daemon fairly between peers, since that is decided by what is read:
 * at most max_inflight units of work (calls) per connection and max_calls_per_uid per uid
 * (reading pauses), turns between uids under max_calls, a bounded input buffer (max_frame, or
 * max_frame_before_hello until the owner says the handshake succeeded, and
 * max_buffered_per_uid over a uid's connections), and a peer whose queued output passes
 * max_output is cut off. A connection not established within handshake_timeout_ms is closed.
 * A connection is freed once it is closed and nothing refers to it.
 */
#ifndef PCS_SERVER_CONN_H
#define PCS_SERVER_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include "server.h"
#include "status.h"

#define CONN_MAX_GROUPS 64

/* Which queue a connection waits on (conn->waiting). */
enum conn_wait {
	CONN_WAIT_NONE = 0,
	CONN_WAIT_SLOT,  /* its uid's slot_wait: the uid has max_calls_per_uid in flight */
	CONN_WAIT_TURN,  /* srv->waitq, holding its uid's one place in the rotation */
	CONN_WAIT_BEHIND /* its uid's turn_wait, behind the one on srv->waitq */
};

struct peer;

/* The peer's credentials, from the kernel at accept (SO_PEERCRED, SO_PEERGROUPS). */
struct conn_cred {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[CONN_MAX_GROUPS]; /* primary gid plus supplementary groups */
	size_t ngroups;
};

/* What the owner of a connection is told. Every callback runs on the loop thread. */
struct conn_ops {
	/* A whole frame arrived. 0 to go on; -1 when the owner failed the connection. */
	int (*frame)(void *owner, const uint8_t *body, size_t len);
	/*
	 * Encodes the error a peer is told before it is cut off (frame too large, handshake
	 * deadline, ...) in the owner's protocol; 0 and a frame_free-able *frame, or -1.
	 */
	int (*error_frame)(int status, const char *message, uint8_t **frame, size_t *len);
	/* The peer is gone (closed, for whatever reason). Called once. */
	void (*gone)(void *owner);
	/* Nothing refers to the connection any more: the owner frees what it keeps for it. */
	void (*release)(void *owner);
};

enum conn_handshake {
	CONN_HANDSHAKE_NONE = 0, /* not begun, or ended without success */
	CONN_HANDSHAKE_RUNNING,  /* frames after it wait until it ends */
	CONN_HANDSHAKE_DONE      /* established */
};

struct conn {
	TAILQ_ENTRY(conn) link;
	TAILQ_ENTRY(conn) wait_link; /* on the queue conn->waiting names */
	enum conn_wait waiting;
	enum conn_wait woken; /* taken off that queue, its turn not used yet */
	struct server *srv;
	struct peer *peer; /* its uid's accounting (peers.h); never NULL */
	const struct conn_ops *ops;
	void *owner;
	int counted_principal; /* counted in peer->conns_principal */
	int handshake_pending; /* a handshake ran; its outcome not yet noted */
	uint64_t opened_ms;    /* for handshake_timeout_ms */
	uint64_t id;
	int fd;
	struct conn_cred cred;
	struct event *rev, *wev, *tev;
	struct evbuffer *out;
	uint8_t *in; /* input buffer; wiped when compacted or freed */
	size_t in_len, in_cap;
	uint64_t partial_since_ms; /* when the current unfinished frame started; 0 = none */
	uint64_t last_activity_ms;
	int refs;              /* the connection itself + one per call in flight */
	int closed;            /* no more I/O; freed when refs drops to 0 */
	int read_eof;          /* peer shut down its side: finish calls, then close */
	int close_after_flush; /* a connection-level error was queued */
	enum conn_handshake handshake;
	int gone_told; /* ops->gone has run */
	size_t inflight;
	size_t streams; /* open Watch streams: the connection is not idle while it has one */
};

/*
 * 1 when the owner said the connection's handshake succeeded: it then has the larger frame
 * limit, counts against max_conns_per_uid rather than max_conns_unknown_per_uid, and has no
 * handshake deadline.
 */
static inline int conn_established(const struct conn *c)
{
	return c->handshake == CONN_HANDSHAKE_DONE;
}

/*
 * Takes ownership of fd (non-blocking, close-on-exec) and reads the peer's credentials.
 * Returns NULL (fd closed) on failure; owner is then not told anything.
 */
struct conn *conn_new(struct server *srv, int fd, const struct conn_ops *ops, void *owner);
const struct conn_cred *conn_cred(const struct conn *c);
/* Queues frame (frame_pack's, wiped and freed once written or on failure). */
void conn_send_frame(struct conn *c, uint8_t *frame, size_t len);
/* Queues ops->error_frame(status, message) and closes once it is written. */
void conn_fail(struct conn *c, int status, const char *message);
/*
 * The owner's handshake began (frames after it wait), and ended: established or not. An
 * ended one without success leaves the connection as it was before (another may be tried).
 */
void conn_handshake_begin(struct conn *c);
void conn_handshake_end(struct conn *c, int established);
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/* A call of c started; counts against max_inflight, max_calls_per_uid, max_calls. */
void conn_call_started(struct conn *c);
/* A call finished: lets a paused reader go on. */
void conn_call_done(struct conn *c);
/* A Watch stream on c opened or ended: no idle timeout while one is open. */
void conn_stream_opened(struct conn *c);
void conn_stream_closed(struct conn *c);
/* Calls in flight plus connections with output still queued, over all connections. */
size_t conn_busy_all(const struct server *srv);
void conn_close(struct conn *c, const char *reason);
/*
 * max_connections is reached: closes the oldest connection that has not completed Hello, so
 * role-less peers cannot keep the slots from ones with a principal. 0 when one was closed,
 * -1 when every connection has a principal.
 */
int conn_evict_one(struct server *srv) PCS_WUR;
void conn_close_all(struct server *srv, const char *reason);
/*
 * Shutdown has begun (srv->draining is set): nothing more is read; each connection closes
 * once the calls it has in flight are answered and written (idle ones at once).
 */
void conn_drain_all(struct server *srv);
uint64_t conn_now_ms(void);

#endif
