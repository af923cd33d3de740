#include "session.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "frame.h"
#include "pcsecret.pb-c.h"

struct session {
	struct conn *conn;
	enum session_state state;
	TAILQ_HEAD(, session_call) calls;
	TAILQ_HEAD(, session_call) streams; /* open Watch streams */
};

static session_dispatch_fn dispatcher;

void session_set_dispatcher(session_dispatch_fn fn) { dispatcher = fn; }

static int on_frame(void *owner, const uint8_t *body, size_t len)
{
	return dispatcher(owner, body, len);
}

static void on_gone(void *owner)
{
	struct session *s = owner;
	struct session_call *sc, *next;

	/* A call may leave the list from its own callback. */
	for (sc = TAILQ_FIRST(&s->calls); sc != NULL; sc = next) {
		next = TAILQ_NEXT(sc, link);
		sc->gone(sc);
	}
	for (sc = TAILQ_FIRST(&s->streams); sc != NULL; sc = next) {
		next = TAILQ_NEXT(sc, link);
		sc->gone(sc);
	}
}

static void on_release(void *owner) { free(owner); }

static const struct conn_ops session_ops = {
	on_frame,
	session_error_frame,
	on_gone,
	on_release,
};

struct session *session_new(struct server *srv, int fd)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		close(fd);
		return NULL;
	}
	TAILQ_INIT(&s->calls);
	TAILQ_INIT(&s->streams);
	if ((s->conn = conn_new(srv, fd, &session_ops, s)) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

/* Packs a Reply envelope into a new frame; a reply too large says so instead. */
static int reply_frame(uint64_t call_id, int event, int status, const char *message,
    const uint8_t *reply, size_t len, uint32_t max, uint8_t **frame, size_t *frame_len)
{
	Pcsecret__V1__Reply r = PCSECRET__V1__REPLY__INIT;
	pcs_error err;

	r.call_id = call_id;
	r.event = event != 0;
	r.status = (Pcsecret__V1__StatusCode)status;
	r.message = (char *)(message != NULL ? message : "");
	r.reply.data = (uint8_t *)(uintptr_t)reply;
	r.reply.len = reply != NULL ? len : 0;
	if (frame_pack(&r.base, max, frame, frame_len, &err) == 0)
		return 0;
	r.status = PCSECRET__V1__STATUS_CODE__RESOURCE_EXHAUSTED;
	r.message = err.message;
	r.reply.data = NULL;
	r.reply.len = 0;
	return frame_pack(&r.base, max, frame, frame_len, &err) == 0 ? 0 : -1;
}

int session_error_frame(int status, const char *message, uint8_t **frame, size_t *len)
{
	/* Small by construction: the default limit every peer accepts. */
	return reply_frame(0, 0, status, message, NULL, 0, FRAME_DEFAULT_MAX, frame, len);
}

enum session_state session_state(const struct session *s) { return s->state; }

void session_handshake_begin(struct session *s)
{
	s->state = SESSION_HANDSHAKE;
	conn_handshake_begin(s->conn);
}

void session_handshake_end(struct session *s, int established)
{
	s->state = established ? SESSION_ESTABLISHED : SESSION_NEW;
	conn_handshake_end(s->conn, established);
}

const struct conn_cred *session_cred(const struct session *s) { return conn_cred(s->conn); }
struct server *session_server(const struct session *s) { return s->conn->srv; }
unsigned long long session_id(const struct session *s) { return s->conn->id; }
struct conn *session_conn(struct session *s) { return s->conn; }
void session_ref(struct session *s) { conn_ref(s->conn); }
void session_unref(struct session *s) { conn_unref(s->conn); }

void session_call_started(struct session *s, struct session_call *sc)
{
	TAILQ_INSERT_TAIL(&s->calls, sc, link);
	conn_call_started(s->conn);
}

void session_call_done(struct session *s, struct session_call *sc)
{
	TAILQ_REMOVE(&s->calls, sc, link);
	conn_call_done(s->conn);
}

void session_stream_opened(struct session *s, struct session_call *sc)
{
	TAILQ_INSERT_TAIL(&s->streams, sc, link);
	conn_stream_opened(s->conn);
}

void session_stream_closed(struct session *s, struct session_call *sc)
{
	TAILQ_REMOVE(&s->streams, sc, link);
	conn_stream_closed(s->conn);
}

static void send_frame(struct session *s, uint64_t call_id, int event, int status,
    const char *message, const uint8_t *reply, size_t len)
{
	uint8_t *frame = NULL;
	size_t frame_len = 0;

	if (s->conn->closed)
		return;
	if (reply_frame(call_id, event, status, message, reply, len,
	        (uint32_t)s->conn->srv->cfg->max_frame, &frame, &frame_len) != 0) {
		conn_close(s->conn, "cannot encode reply");
		return;
	}
	conn_send_frame(s->conn, frame, frame_len);
}

void session_send_reply(struct session *s, uint64_t call_id, int status, const char *message,
    const uint8_t *reply, size_t len)
{
	send_frame(s, call_id, 0, status, message, reply, len);
}

void session_send_event(struct session *s, uint64_t call_id, int status, const char *message,
    const uint8_t *ev, size_t len)
{
	send_frame(s, call_id, 1, status, message, ev, len);
}

void session_fail(struct session *s, int status, const char *message)
{
	conn_fail(s->conn, status, message);
}
