#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "frame.h"
#include "log.h"
#include "peers.h"

/* Frames handled per read event before yielding to other connections (fairness). */
#define CONN_FRAMES_PER_EVENT 32
#define CONN_READ_CHUNK 65536

static void conn_process(struct conn *c);
static void conn_arm_timer(struct conn *c);
static void note_principal(struct conn *c);

/*
 * Call accounting, so that work is shared between uids rather than between connections.
 * Per uid: with max_calls_per_uid of its calls in flight, its connections that have a whole
 * frame wait in order on the uid's slot_wait, and one goes on each time one of its calls ends;
 * other uids are not held up. Daemon-wide: with max_calls in flight, connections wait for a
 * turn. srv->waitq holds at most one connection per uid (the rest wait behind it on the uid's
 * turn_wait) and a uid that got a turn goes to the back, so turns rotate between uids: a uid
 * with a hundred connections waiting gets one turn in each round like a uid with one.
 */
static void wait_remove(struct conn *c)
{
	struct peer *p = c->peer;
	struct conn *next;

	switch (c->waiting) {
	case CONN_WAIT_SLOT:
		TAILQ_REMOVE(&p->slot_wait, c, wait_link);
		break;
	case CONN_WAIT_BEHIND:
		TAILQ_REMOVE(&p->turn_wait, c, wait_link);
		break;
	case CONN_WAIT_TURN:
		/* The uid keeps its place in the rotation: its next connection takes it. */
		if ((next = TAILQ_FIRST(&p->turn_wait)) != NULL) {
			TAILQ_REMOVE(&p->turn_wait, next, wait_link);
			TAILQ_INSERT_BEFORE(c, next, wait_link);
			next->waiting = CONN_WAIT_TURN;
		} else {
			p->has_turn = 0;
		}
		TAILQ_REMOVE(&c->srv->waitq, c, wait_link);
		break;
	case CONN_WAIT_NONE:
		break;
	}
	c->waiting = CONN_WAIT_NONE;
}

/* first: it was given a turn and lost it to a faster reader, so it stays first in line. */
static void wait_slot(struct conn *c, int first)
{
	if (first)
		TAILQ_INSERT_HEAD(&c->peer->slot_wait, c, wait_link);
	else
		TAILQ_INSERT_TAIL(&c->peer->slot_wait, c, wait_link);
	c->waiting = CONN_WAIT_SLOT;
}

static void wait_turn(struct conn *c, int first)
{
	struct peer *p = c->peer;

	if (!p->has_turn) {
		if (first)
			TAILQ_INSERT_HEAD(&c->srv->waitq, c, wait_link);
		else
			TAILQ_INSERT_TAIL(&c->srv->waitq, c, wait_link);
		p->has_turn = 1;
		c->waiting = CONN_WAIT_TURN;
	} else {
		if (first)
			TAILQ_INSERT_HEAD(&p->turn_wait, c, wait_link);
		else
			TAILQ_INSERT_TAIL(&p->turn_wait, c, wait_link);
		c->waiting = CONN_WAIT_BEHIND;
	}
}

/* Room for one more call: the uid at the head of the rotation starts its next one. */
static void wake_waiter(struct server *srv)
{
	struct conn *w = TAILQ_FIRST(&srv->waitq), *next;
	struct peer *p;

	if (w == NULL || srv->calls_in_flight >= (size_t)srv->cfg->max_calls || srv->draining)
		return;
	p = w->peer;
	TAILQ_REMOVE(&srv->waitq, w, wait_link);
	w->waiting = CONN_WAIT_NONE;
	p->has_turn = 0;
	if ((next = TAILQ_FIRST(&p->turn_wait)) != NULL) {
		TAILQ_REMOVE(&p->turn_wait, next, wait_link);
		wait_turn(next, 0);
	}
	w->woken = CONN_WAIT_TURN;
	event_active(w->rev, EV_READ, 0);
}

/* Room for one more call of p's uid: its longest-waiting connection goes on. */
static void wake_slot(struct peer *p, const struct config *cfg)
{
	struct conn *w = TAILQ_FIRST(&p->slot_wait);

	if (w == NULL || peers_calls_full(p, cfg) || w->srv->draining)
		return;
	TAILQ_REMOVE(&p->slot_wait, w, wait_link);
	w->waiting = CONN_WAIT_NONE;
	w->woken = CONN_WAIT_SLOT;
	event_active(w->rev, EV_READ, 0);
}

uint64_t conn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void wipe_free(uint8_t *p, size_t len)
{
	if (p != NULL) {
		explicit_bzero(p, len);
		free(p);
	}
}

/* Gives the input buffer back (wiped), and its bytes to the uid's max_buffered_per_uid. */
static void drop_input(struct conn *c)
{
	wipe_free(c->in, c->in_cap);
	if (c->peer != NULL)
		peers_unbuffer(c->peer, c->in_cap);
	c->in = NULL;
	c->in_cap = 0;
	c->in_len = 0;
}

static void conn_free(struct conn *c)
{
	if (c->ops != NULL && c->ops->release != NULL)
		c->ops->release(c->owner);
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	if (c->tev != NULL)
		event_free(c->tev);
	if (c->out != NULL)
		evbuffer_free(c->out); /* reference chunks are wiped by their cleanup callback */
	drop_input(c);
	peers_put(c->peer, conn_now_ms());
	free(c);
}

void conn_ref(struct conn *c) { c->refs++; }

void conn_unref(struct conn *c)
{
	if (--c->refs == 0)
		conn_free(c);
}

void conn_close(struct conn *c, const char *reason)
{
	if (c->closed)
		return;
	c->closed = 1;
	wait_remove(c);
	/* A turn it was given and did not use passes on. */
	if (c->woken == CONN_WAIT_TURN)
		wake_waiter(c->srv);
	else if (c->woken == CONN_WAIT_SLOT)
		wake_slot(c->peer, c->srv->cfg);
	c->woken = CONN_WAIT_NONE;
	c->peer->conns--;
	if (c->counted_principal)
		c->peer->conns_principal--;
	c->counted_principal = 0;
	event_del(c->rev);
	event_del(c->wev);
	event_del(c->tev);
	close(c->fd);
	c->fd = -1;
	TAILQ_REMOVE(&c->srv->conns, c, link);
	c->srv->nconns--;
	log_event(LOG_DEBUG, "conn_closed", "conn=%llu uid=%u pid=%d reason=%s",
	    (unsigned long long)c->id, (unsigned)c->cred.uid, (int)c->cred.pid, log_q(reason));
	if (!c->gone_told) {
		c->gone_told = 1;
		c->ops->gone(c->owner);
	}
	conn_unref(c);
}

/*
 * Closes at once with a call_id 0 error, written now if the socket takes it (a peer that is
 * being shut out may not read, and must not keep its slot while we wait for it to).
 */
static void conn_close_with(struct conn *c, int status, const char *message, const char *reason)
{
	uint8_t *frame = NULL;
	size_t len = 0;

	if (c->ops->error_frame(status, message, &frame, &len) == 0)
		conn_send_frame(c, frame, len);
	if (c->closed)
		return;
	(void)evbuffer_write(c->out, c->fd);
	conn_close(c, reason);
}

int conn_evict_one(struct server *srv)
{
	struct conn *c, *victim = NULL;
	uint64_t now = conn_now_ms();

	/* Oldest first (conns is in accept order); one without a call in flight if there is one. */
	TAILQ_FOREACH(c, &srv->conns, link)
	{
		if (conn_established(c))
			continue;
		if (c->inflight == 0) {
			victim = c;
			break;
		}
		if (victim == NULL)
			victim = c;
	}
	if (victim == NULL)
		return -1;
	log_event(LOG_INFO, "conn_evicted", "conn=%llu uid=%u pid=%d age_ms=%llu",
	    (unsigned long long)victim->id, (unsigned)victim->cred.uid, (int)victim->cred.pid,
	    (unsigned long long)(now - victim->opened_ms));
	srv->stats.connections_evicted++;
	conn_close_with(victim, PCS_RESOURCE_EXHAUSTED,
	    "closed before Hello to make room under "
	    "max_connections",
	    "evicted before Hello");
	return 0;
}

void conn_close_all(struct server *srv, const char *reason)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&srv->conns)) != NULL)
		conn_close(c, reason);
}

static void frame_cleanup(const void *data, size_t len, void *arg)
{
	(void)arg;
	frame_free((uint8_t *)(uintptr_t)data, len);
}

static void conn_want_write(struct conn *c)
{
	if (!c->closed && evbuffer_get_length(c->out) > 0)
		event_add(c->wev, NULL);
}

const struct conn_cred *conn_cred(const struct conn *c) { return &c->cred; }

void conn_send_frame(struct conn *c, uint8_t *frame, size_t len)
{
	if (c->closed) {
		frame_free(frame, len);
		return;
	}
	/* Added by reference so the frame, which may carry values, is wiped once written. */
	if (evbuffer_add_reference(c->out, frame, len, frame_cleanup, NULL) != 0) {
		frame_free(frame, len);
		conn_close(c, "out of memory");
		return;
	}
	if (evbuffer_get_length(c->out) > (size_t)c->srv->cfg->max_output) {
		log_event(LOG_WARN, "conn_slow_reader", "conn=%llu uid=%u pid=%d queued=%zu",
		    (unsigned long long)c->id, (unsigned)c->cred.uid, (int)c->cred.pid,
		    evbuffer_get_length(c->out));
		conn_close(c, "peer is not reading its replies");
		return;
	}
	conn_want_write(c);
}

void conn_fail(struct conn *c, int status, const char *message)
{
	uint8_t *frame = NULL;
	size_t len = 0;

	log_event(LOG_INFO, "protocol_error", "conn=%llu uid=%u pid=%d status=%s msg=%s",
	    (unsigned long long)c->id, (unsigned)c->cred.uid, (int)c->cred.pid,
	    pcs_status_name(status), log_q(message));
	if (c->ops->error_frame(status, message, &frame, &len) == 0)
		conn_send_frame(c, frame, len);
	if (c->closed)
		return;
	c->close_after_flush = 1;
	event_del(c->rev);
}

/*
 * The largest frame body c may send now: before Hello succeeded only a small one, so a peer
 * without a role cannot make us hold a large buffer at all.
 */
static uint32_t frame_max(const struct conn *c)
{
	const struct config *cfg = c->srv->cfg;

	if (!conn_established(c) && cfg->max_frame_before_hello < cfg->max_frame)
		return (uint32_t)cfg->max_frame_before_hello;
	return (uint32_t)cfg->max_frame;
}

/* The length a buffered frame header announces (at least FRAME_HEADER_LEN bytes are in). */
static uint32_t header_len(const struct conn *c)
{
	return (uint32_t)c->in[0] << 24 | (uint32_t)c->in[1] << 16 | (uint32_t)c->in[2] << 8 |
	    (uint32_t)c->in[3];
}

/* 1 when the input buffer starts with a whole frame or a header to refuse. */
static int frame_buffered(const struct conn *c)
{
	uint32_t body_len;
	pcs_error err;

	return frame_peek(c->in, c->in_len, frame_max(c), &body_len, &err) != 0;
}

/*
 * Closes once everything queued is written and nothing is left to do: after a protocol
 * error; after the peer's EOF once its calls (including whole frames still buffered) are
 * answered; while draining once its calls in flight are answered.
 */
static void conn_maybe_finish(struct conn *c)
{
	if (c->closed || evbuffer_get_length(c->out) != 0)
		return;
	if (c->close_after_flush)
		conn_close(c, "protocol error");
	else if (c->read_eof && c->inflight == 0 && !frame_buffered(c))
		conn_close(c, "peer closed");
	else if (c->srv->draining && c->inflight == 0)
		conn_close(c, "shutting down");
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int n;

	(void)fd;
	(void)what;
	n = evbuffer_write(c->out, c->fd);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		conn_close(c, "write failed");
		return;
	}
	if (n > 0)
		c->last_activity_ms = conn_now_ms();
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->wev, NULL);
	else
		conn_maybe_finish(c);
}

/*
 * An emptied input buffer is given back at once: idle peers hold no input memory (a thousand
 * idle agents would otherwise keep 4 KiB each), and a block of 4 KiB comes back from malloc's
 * free lists, without a system call, when the next frame arrives.
 */
static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	explicit_bzero(c->in + c->in_len - n, n);
	c->in_len -= n;
	if (c->in_len == 0)
		drop_input(c);
}

static void process_frames(struct conn *c);

/* Handles whole frames already buffered, within the per-event and in-flight bounds. */
static void conn_process(struct conn *c)
{
	process_frames(c);
	/* A turn it was woken for and did not use (nothing to start after all) passes on. */
	if (!c->closed && c->woken == CONN_WAIT_TURN) {
		c->woken = CONN_WAIT_NONE;
		wake_waiter(c->srv);
	} else if (!c->closed && c->woken == CONN_WAIT_SLOT) {
		c->woken = CONN_WAIT_NONE;
		wake_slot(c->peer, c->srv->cfg);
	}
}

static void process_frames(struct conn *c)
{
	const struct config *cfg = c->srv->cfg;
	uint32_t body_len;
	pcs_error err;
	int handled = 0, r;

	if (c->srv->draining) {
		/* Shutting down: calls not started yet are not taken on (conn_drain_all). */
		event_del(c->rev);
		conn_maybe_finish(c);
		return;
	}
	while (!c->closed && !c->close_after_flush && c->in_len > 0) {
		if (c->inflight >= (size_t)c->srv->cfg->max_inflight) {
			event_del(c->rev); /* resumed by conn_call_done */
			return;
		}
		if (c->handshake == CONN_HANDSHAKE_RUNNING) {
			/*
			 * Frames pipelined behind the handshake wait for it to end: what they may do
			 * depends on its outcome. Resumed by conn_call_done.
			 */
			event_del(c->rev);
			return;
		}
		if (handled == CONN_FRAMES_PER_EVENT) {
			event_active(c->rev, EV_READ, 0); /* come back after others had a turn */
			return;
		}
		r = frame_peek(c->in, c->in_len, frame_max(c), &body_len, &err);
		if (r < 0) {
			if (r == -PCS_RESOURCE_EXHAUSTED && !conn_established(c))
				pcs_fail(&err, PCS_RESOURCE_EXHAUSTED,
				    "frame of %u bytes before Hello "
				    "exceeds max_frame_before_hello (%u bytes)",
				    header_len(c), frame_max(c));
			conn_fail(c, -r, err.message);
			return;
		}
		if (r == 0) {
			if (c->partial_since_ms == 0)
				c->partial_since_ms = conn_now_ms();
			break;
		}
		c->partial_since_ms = 0;
		if (peers_calls_full(c->peer, cfg)) {
			/* Its uid has its share in flight: wait for one of them to end (wake_slot). */
			event_del(c->rev);
			if (c->waiting != CONN_WAIT_SLOT) {
				wait_remove(c);
				wait_slot(c, c->woken == CONN_WAIT_SLOT);
			}
			if (c->woken == CONN_WAIT_TURN)
				wake_waiter(c->srv); /* a daemon-wide turn it cannot use */
			c->woken = CONN_WAIT_NONE;
			return;
		}
		/*
		 * The daemon is full, or others are waiting for room: a connection that just read
		 * new bytes does not go ahead of them.
		 */
		if (c->srv->calls_in_flight >= (size_t)cfg->max_calls ||
		    (c->woken != CONN_WAIT_TURN && !TAILQ_EMPTY(&c->srv->waitq))) {
			/* The daemon is full: wait for this uid's turn (wake_waiter), reading no more. */
			event_del(c->rev);
			if (c->waiting != CONN_WAIT_TURN && c->waiting != CONN_WAIT_BEHIND) {
				wait_remove(c);
				wait_turn(c, c->woken == CONN_WAIT_TURN);
			}
			c->woken = CONN_WAIT_NONE;
			return;
		}
		/* Going on: a wait it was still queued for (it was resumed another way) is over. */
		wait_remove(c);
		c->woken = CONN_WAIT_NONE;
		r = c->ops->frame(c->owner, c->in + FRAME_HEADER_LEN, body_len);
		if (c->closed)
			return;
		note_principal(c);
		consume(c, FRAME_HEADER_LEN + body_len);
		if (r < 0)
			return;
		handled++;
	}
	if (!c->closed && !c->close_after_flush && !c->read_eof &&
	    c->inflight < (size_t)cfg->max_inflight)
		event_add(c->rev, NULL);
	conn_arm_timer(c);
	conn_maybe_finish(c);
}

/*
 * Makes room for need bytes, counted against the uid's max_buffered_per_uid: over it,
 * -PCS_RESOURCE_EXHAUSTED and err says so.
 */
static int conn_grow(struct conn *c, size_t need, pcs_error *err)
{
	size_t cap = c->in_cap ? c->in_cap : 4096;
	size_t limit = (size_t)frame_max(c) + FRAME_HEADER_LEN;
	uint8_t *p;
	int r;

	while (cap < need)
		cap *= 2;
	if (cap > limit && need <= limit)
		cap = limit; /* never more than the largest frame */
	if (cap <= c->in_cap)
		return 0;
	if ((r = peers_buffer(c->peer, c->srv->cfg, cap - c->in_cap, err)) != 0)
		return r;
	if ((p = malloc(cap)) == NULL) {
		peers_unbuffer(c->peer, cap - c->in_cap);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	}
	/* Not realloc: the old block may hold values and must be wiped before it is freed. */
	if (c->in_len > 0)
		memcpy(p, c->in, c->in_len);
	wipe_free(c->in, c->in_cap);
	c->in = p;
	c->in_cap = cap;
	return 0;
}

static void read_some(struct conn *c);

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	/* A handler may close the connection; keep it alive until this callback returns. */
	conn_ref(c);
	read_some(c);
	conn_unref(c);
}

static void read_some(struct conn *c)
{
	size_t limit = (size_t)frame_max(c) + FRAME_HEADER_LEN, want;
	uint8_t chunk[CONN_READ_CHUNK];
	pcs_error err;
	ssize_t n;

	if (c->closed)
		return;
	if (c->srv->draining) {
		conn_process(c);
		return;
	}
	/*
	 * Frames already buffered first: the event may have been re-activated for fairness. Only
	 * a whole frame (or a bad header) counts: a frame larger than what is buffered must be
	 * read on, whatever the buffer's size, or it would never complete.
	 */
	if (c->read_eof || c->in_len >= limit || frame_buffered(c)) {
		conn_process(c);
		return;
	}
	want = CONN_READ_CHUNK;
	if (c->in_len + want > limit)
		want = limit - c->in_len;
	/*
	 * Read on the stack, then keep only what came: a connection's buffer grows with what its
	 * peer actually sent, not by a whole chunk per connection (1,000 mostly idle peers would
	 * otherwise pin 64 KiB each).
	 */
	n = read(c->fd, chunk, want);
	if (n > 0 && conn_grow(c, c->in_len + (size_t)n, &err) != 0) {
		explicit_bzero(chunk, (size_t)n);
		log_event(LOG_WARN, "conn_buffer_limit", "conn=%llu uid=%u pid=%d uid_buffered=%zu",
		    (unsigned long long)c->id, (unsigned)c->cred.uid, (int)c->cred.pid,
		    c->peer->buffered);
		/* Nothing more of this connection's input is used: its memory goes back now. */
		drop_input(c);
		conn_fail(c, PCS_RESOURCE_EXHAUSTED, err.message);
		return;
	}
	if (n > 0) {
		memcpy(c->in + c->in_len, chunk, (size_t)n);
		explicit_bzero(chunk, (size_t)n);
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			conn_process(c);
			return;
		}
		conn_close(c, "read failed");
		return;
	}
	if (n == 0) {
		c->read_eof = 1;
		event_del(c->rev);
		conn_process(c);
		if (!c->closed && c->in_len > 0 && c->inflight == 0 && !frame_buffered(c) &&
		    evbuffer_get_length(c->out) == 0)
			conn_close(c, "peer closed in the middle of a frame");
		return;
	}
	c->in_len += (size_t)n;
	c->last_activity_ms = conn_now_ms();
	conn_process(c);
}

/*
 * Whether the handshake deadline applies now: to a peer that is not established, has no
 * handshake running and no whole frame waiting to be started. A running handshake, or a
 * frame waiting for a call slot, waits on the daemon (a busy database after a deploy, a
 * launcher's thousand connections), not on the peer; and a call has a deadline of its own.
 */
static int handshake_due(const struct conn *c)
{
	return !conn_established(c) && c->handshake != CONN_HANDSHAKE_RUNNING && !frame_buffered(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	uint64_t now = conn_now_ms();
	const struct config *cfg = c->srv->cfg;

	(void)fd;
	(void)what;
	if (handshake_due(c) && now - c->opened_ms >= (uint64_t)cfg->handshake_timeout_ms) {
		log_event(LOG_INFO, "conn_handshake_timeout", "conn=%llu uid=%u pid=%d",
		    (unsigned long long)c->id, (unsigned)c->cred.uid, (int)c->cred.pid);
		c->srv->stats.handshake_timeouts++;
		conn_close_with(c, PCS_DEADLINE_EXCEEDED,
		    "Hello did not succeed within "
		    "handshake_timeout_ms",
		    "no Hello in time");
		return;
	}
	if (c->partial_since_ms != 0 &&
	    now - c->partial_since_ms >= (uint64_t)cfg->read_timeout_ms) {
		log_event(LOG_INFO, "conn_read_timeout", "conn=%llu uid=%u pid=%d buffered=%zu",
		    (unsigned long long)c->id, (unsigned)c->cred.uid, (int)c->cred.pid, c->in_len);
		conn_close(c, "incomplete frame timed out");
		return;
	}
	if (c->inflight == 0 && c->streams == 0 &&
	    now - c->last_activity_ms >= (uint64_t)cfg->idle_timeout_ms) {
		conn_close(c, "idle");
		return;
	}
	conn_arm_timer(c);
}

static void conn_arm_timer(struct conn *c)
{
	const struct config *cfg = c->srv->cfg;
	uint64_t now = conn_now_ms(), due = UINT64_MAX, hs;
	struct timeval tv;

	if (c->closed)
		return;
	if (c->partial_since_ms != 0)
		due = c->partial_since_ms + (uint64_t)cfg->read_timeout_ms;
	else if (c->inflight == 0 && c->streams == 0)
		due = c->last_activity_ms + (uint64_t)cfg->idle_timeout_ms;
	/* else not idle: each call has its own deadline. Re-armed when the last one ends. */
	if (handshake_due(c)) {
		/* Whatever it does, a peer without a successful Hello holds its slot this long. */
		hs = c->opened_ms + (uint64_t)cfg->handshake_timeout_ms;
		if (hs < due)
			due = hs;
	}
	if (due == UINT64_MAX) {
		event_del(c->tev);
		return;
	}
	due = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(due / 1000);
	tv.tv_usec = (suseconds_t)((due % 1000) * 1000);
	event_add(c->tev, &tv);
}

/*
 * Keeps the uid's count of connections with a principal in step with this one, and
 * remembers the outcome of a Hello: a uid whose Hello succeeded is known (peers.h); one that
 * ended without a principal makes the uid unknown unless another connection has one.
 */
static void note_principal(struct conn *c)
{
	struct peer *p = c->peer;
	int has = conn_established(c);

	if (has != c->counted_principal) {
		if (has) {
			p->conns_principal++;
			peers_remember(p, conn_now_ms());
		} else {
			p->conns_principal--;
		}
		c->counted_principal = has;
	}
	if (c->handshake == CONN_HANDSHAKE_RUNNING) {
		c->handshake_pending = 1;
	} else if (c->handshake_pending) {
		c->handshake_pending = 0;
		if (!has && p->conns_principal == 0)
			peers_forget(p);
	}
}

void conn_call_started(struct conn *c)
{
	size_t peak = c->peer->calls_peak;

	c->inflight++;
	c->srv->calls_in_flight++;
	peers_call_started(c->peer);
	if (c->peer->calls_peak > peak)
		log_event(LOG_DEBUG, "uid_calls_peak", "uid=%u calls=%zu", (unsigned)c->cred.uid,
		    c->peer->calls_peak);
}

void conn_stream_opened(struct conn *c)
{
	c->streams++;
	conn_arm_timer(c);
}

void conn_stream_closed(struct conn *c)
{
	c->streams--;
	if (c->closed)
		return;
	c->last_activity_ms = conn_now_ms();
	conn_arm_timer(c);
}

void conn_call_done(struct conn *c)
{
	c->inflight--;
	c->srv->calls_in_flight--;
	peers_call_done(c->peer);
	wake_slot(c->peer, c->srv->cfg);
	wake_waiter(c->srv);
	if (c->closed)
		return;
	note_principal(c);
	c->last_activity_ms = conn_now_ms();
	conn_arm_timer(c);
	/*
	 * Deferred to the loop, not called here: a call can finish while its own frame is still
	 * being dispatched, and the frame loop must not run inside itself.
	 */
	if (c->srv->draining) {
		/* Nothing more is read; the connection closes once its replies are written. */
	} else if (c->in_len > 0 && !c->close_after_flush) {
		event_active(c->rev, EV_READ, 0);
	} else if (!c->read_eof && !c->close_after_flush) {
		event_add(c->rev, NULL);
	}
	conn_maybe_finish(c);
}

void conn_handshake_begin(struct conn *c) { c->handshake = CONN_HANDSHAKE_RUNNING; }

void conn_handshake_end(struct conn *c, int established)
{
	c->handshake = established ? CONN_HANDSHAKE_DONE : CONN_HANDSHAKE_NONE;
}

size_t conn_busy_all(const struct server *srv)
{
	const struct conn *c;
	size_t busy = 0;

	TAILQ_FOREACH(c, &srv->conns, link)
	busy += c->inflight + (evbuffer_get_length(c->out) > 0);
	return busy;
}

void conn_drain_all(struct server *srv)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&srv->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		event_del(c->rev);
		conn_maybe_finish(c);
	}
}

static void read_peer(struct conn *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t groups[CONN_MAX_GROUPS];
	socklen_t glen = sizeof(groups);

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		c->cred.pid = cred.pid;
		c->cred.uid = cred.uid;
		c->cred.gid = cred.gid;
	} else {
		/* Without kernel credentials the peer is nobody: every call is UNAUTHENTICATED. */
		c->cred.uid = (uid_t)-1;
		c->cred.gid = (gid_t)-1;
	}
	c->cred.groups[0] = c->cred.gid;
	c->cred.ngroups = 1;
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
		for (size_t i = 0; i < glen / sizeof(gid_t) && c->cred.ngroups < CONN_MAX_GROUPS;
		     i++)
			if (groups[i] != c->cred.gid)
				c->cred.groups[c->cred.ngroups++] = groups[i];
	}
}

struct conn *conn_new(struct server *srv, int fd, const struct conn_ops *ops, void *owner)
{
	struct conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	c->srv = srv;
	c->fd = fd;
	c->id = ++srv->next_conn_id;
	c->refs = 1;
	c->last_activity_ms = c->opened_ms = conn_now_ms();
	read_peer(c);
	c->peer = peers_get(c->cred.uid);
	c->rev = event_new(srv->base, fd, EV_READ, on_read, c);
	c->wev = event_new(srv->base, fd, EV_WRITE, on_write, c);
	c->tev = evtimer_new(srv->base, on_timer, c);
	c->out = evbuffer_new();
	if (c->peer == NULL || c->rev == NULL || c->wev == NULL || c->tev == NULL ||
	    c->out == NULL) {
		close(fd);
		conn_free(c);
		return NULL;
	}
	c->ops = ops;
	c->owner = owner;
	c->peer->conns++;
	TAILQ_INSERT_TAIL(&srv->conns, c, link);
	srv->nconns++;
	srv->stats.connections_total++;
	event_add(c->rev, NULL);
	conn_arm_timer(c);
	log_event(LOG_DEBUG, "conn_open", "conn=%llu uid=%u gid=%u pid=%d",
	    (unsigned long long)c->id, (unsigned)c->cred.uid, (unsigned)c->cred.gid,
	    (int)c->cred.pid);
	return c;
}
