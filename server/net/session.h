/*
 * session: the pcsecret protocol on one connection. Owns the handshake state (an enum, not
 * flags spread over modules), reaches the peer's kernel credentials through its connection,
 * encodes what is sent as Reply frames, and keeps the list of its calls so that they learn
 * when the peer is gone. Below it, conn moves frames and knows nothing of their meaning;
 * above it, dispatch turns each frame into a call (session_set_dispatcher, so this module
 * does not depend on the one above it).
 *
 * There is no principal here on purpose: who the peer is, is decided for every call from the
 * rules as they are then (dispatch's call_identify), never cached for the session.
 */
#ifndef PCS_SERVER_SESSION_H
#define PCS_SERVER_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include "conn.h"
#include "server.h"
#include "status.h"

enum session_state {
	SESSION_NEW = 0,    /* Hello not (successfully) done yet: only Hello is accepted */
	SESSION_HANDSHAKE,  /* a Hello is running; frames behind it wait */
	SESSION_ESTABLISHED /* Hello succeeded */
};

struct session;

/* A call's link into its session's list; dispatch embeds one in each call. */
struct session_call {
	TAILQ_ENTRY(session_call) link;
	/* The peer is gone: the call's reply will go nowhere (a stream would end here). */
	void (*gone)(struct session_call *sc);
};

/* Turns one frame of s into a call; -1 when the connection must close. */
typedef int (*session_dispatch_fn)(struct session *s, const uint8_t *body, size_t len);
/* Set once at start-up, before the first connection. */
void session_set_dispatcher(session_dispatch_fn fn);

/* A session on a new connection (takes fd). NULL (fd closed) when out of memory. */
struct session *session_new(struct server *srv, int fd);
/* A Reply frame with call_id 0 for status and message: the connection-level error. */
int session_error_frame(int status, const char *message, uint8_t **frame, size_t *len) PCS_WUR;

enum session_state session_state(const struct session *s);
/* Hello began; it ended with the peer established, or not (then Hello may be sent again). */
void session_handshake_begin(struct session *s);
void session_handshake_end(struct session *s, int established);

const struct conn_cred *session_cred(const struct session *s);
struct server *session_server(const struct session *s);
/* The connection's number, for log lines. */
unsigned long long session_id(const struct session *s);
/* The connection under s: for the fuzz harness, which poses as another peer. */
struct conn *session_conn(struct session *s);

/* Keeps s (and its connection) allocated until the matching session_unref. */
void session_ref(struct session *s);
void session_unref(struct session *s);

/* A call of s starts and ends: listed, and counted for the connection's fairness bounds. */
void session_call_started(struct session *s, struct session_call *sc);
void session_call_done(struct session *s, struct session_call *sc);

/*
 * a Watch stream of s, told like a call when the peer is gone (sc->gone), but
 * not a call in flight: it holds no max_inflight slot; it keeps the connection from its idle
 * timeout while open.
 */
void session_stream_opened(struct session *s, struct session_call *sc);
void session_stream_closed(struct session *s, struct session_call *sc);
/*
 * Queues a stream frame for call_id (Reply with event set): an event (status OK, ev the packed
 * WatchEvent) or the stream's end (status not OK, message why). Nothing once the peer is gone.
 */
void session_send_event(struct session *s, uint64_t call_id, int status, const char *message,
    const uint8_t *ev, size_t len);

/*
 * Queues a Reply for call_id: status, message and the packed reply (may be NULL). A reply
 * too large for a frame becomes RESOURCE_EXHAUSTED saying so. Nothing is sent once the peer
 * is gone.
 */
void session_send_reply(struct session *s, uint64_t call_id, int status, const char *message,
    const uint8_t *reply, size_t len);
/* Queues a connection-level error (call_id 0) and closes once it is written. */
void session_fail(struct session *s, int status, const char *message);

#endif
