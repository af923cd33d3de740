/*
 * Pipelined calls on the client's one connection (see client.c for the whole design):
 *  - A call takes a call_id, then the write role (c->writing) for as long as it takes to put
 *    its whole frame on the socket, so frames never interleave. Its slot (struct
 *    pcs_rpc_call) is registered before the first byte leaves: the reply may arrive before
 *    send() returns.
 *  - The daemon replies in any order. Whichever waiting caller finds the read role
 *    (c->reading) free takes it, reads frames and hands each reply to its slot, signalling the
 *    slot's condition variable. Once its own reply is in, or its deadline has passed, it passes
 *    the role to another waiting caller. A reply nobody waits for any more (a timed-out call's)
 *    is wiped and dropped; the connection stays up.
 * A connection-level failure fails every registered call (session.c tells how the connection
 * goes down and comes back).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "mux.h"
#include "pbwipe.h"
#include "session.h"
#include "status.h"

/*
 * How long past the call's deadline, counted from when its request was written, a reply is
 * still waited for. The daemon's deadline runs from the request's arrival and its answer is
 * what its audit row records; giving up first could leave a row saying OK for a call this
 * client reported as failed.
 */
#define REPLY_GRACE_MS 1000

/* One call from the moment it has a call_id until its caller has its result. */
struct pcs_rpc_call {
	struct pcs_rpc_call *prev, *next; /* in c->calls while registered */
	const ProtobufCMethodDescriptor *m;
	uint64_t call_id;
	int timeout_ms;
	int64_t deadline;    /* 0 until the call first has a connection */
	pthread_cond_t cond; /* done, or the read role may be free */
	int registered;
	int waiting; /* blocked on cond: a candidate for the read role */
	int done;    /* rep, or status and err, are set */
	int status;  /* when done: 0 (rep holds the Reply) or -PCS_xxx */
	pcs_error err;
	Pcsecret__V1__Reply *rep;
};

static void error_copy(pcs_error *dst, const pcs_error *src)
{
	if (dst != NULL)
		*dst = *src;
}

/* Called with c->lock held, as is everything below that takes a pcs_client. */
static void call_register(pcs_client *c, struct pcs_rpc_call *call)
{
	call->done = 0;
	call->status = 0;
	call->prev = NULL;
	call->next = c->calls;
	if (c->calls != NULL)
		c->calls->prev = call;
	c->calls = call;
	call->registered = 1;
}

static void call_unregister(pcs_client *c, struct pcs_rpc_call *call)
{
	if (!call->registered)
		return;
	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	call->registered = 0;
}

/*
 * Connection gen failed with why: every call registered on it fails the same way. A second
 * failure of the same connection (its reader seeing the EOF a writer's error caused) changes
 * nothing.
 */
static void conn_lost(pcs_client *c, uint64_t gen, const pcs_error *why)
{
	struct pcs_rpc_call *call;

	if (!session_fail(c, gen))
		return;
	for (call = c->calls; call != NULL; call = call->next) {
		if (call->done)
			continue;
		call->done = 1;
		call->status = -why->code;
		call->err = *why;
		(void)pthread_cond_signal(&call->cond);
	}
}

/* The read role is free: wake a caller that is waiting for its reply so it can take it. */
static void read_handoff(pcs_client *c)
{
	struct pcs_rpc_call *call;

	if (c->reading || c->broken || c->fd == -1)
		return;
	for (call = c->calls; call != NULL; call = call->next) {
		if (call->waiting && !call->done) {
			(void)pthread_cond_signal(&call->cond);
			return;
		}
	}
}

/* Hands a reply to its call, or wipes it when nobody waits for it any more. */
static void reply_deliver(pcs_client *c, Pcsecret__V1__Reply *rep)
{
	struct pcs_rpc_call *call;

	for (call = c->calls; call != NULL; call = call->next) {
		if (call->call_id == rep->call_id && !call->done) {
			call->rep = rep;
			call->done = 1;
			call->status = 0;
			(void)pthread_cond_signal(&call->cond);
			return;
		}
	}
	/* A timed-out or abandoned call's late reply, or one for a call id never used. */
	protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
}

/*
 * The caller holds the read role (c->reading) on behalf of call: reads and delivers replies
 * until call's own is in, its deadline passes or the connection fails; then gives the role
 * up. The lock is released while reading.
 */
static void read_turn(pcs_client *c, struct pcs_rpc_call *call)
{
	Pcsecret__V1__Reply *rep;
	pcs_error ferr;
	uint64_t gen = c->gen;
	int fd = c->fd, r;

	for (;;) {
		(void)pthread_mutex_unlock(&c->lock);
		r = transport_read_reply(&c->rbuf, c->path, fd, call->deadline, &rep, &ferr);
		(void)pthread_mutex_lock(&c->lock);
		if (r == TRANSPORT_TIMEOUT)
			break;
		if (r < 0) {
			conn_lost(c, gen, &ferr);
			break;
		}
		if (rep->call_id == 0) {
			/* The daemon is about to close: the connection is over, not just a call. */
			(void)transport_conn_error(rep, &ferr);
			protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
			conn_lost(c, gen, &ferr);
			break;
		}
		reply_deliver(c, rep);
		if (call->done || c->broken)
			break;
	}
	c->reading = 0;
	session_settle(c);
	read_handoff(c);
}

void mux_call_free(struct pcs_rpc_call *call)
{
	if (call == NULL)
		return;
	if (call->rep != NULL)
		protobuf_c_message_free_unpacked(&call->rep->base, &pbwipe_allocator);
	(void)pthread_cond_destroy(&call->cond);
	free(call);
}

int mux_start(pcs_client *c, const ProtobufCMethodDescriptor *m, uint32_t method_id,
    const ProtobufCMessage *req, struct pcs_rpc_call **out, pcs_error *err)
{
	struct pcs_rpc_call *call = NULL;
	pcs_error serr;
	uint8_t *frame = NULL;
	size_t flen = 0, sent = 0;
	uint64_t gen;
	int64_t reply_deadline;
	int r, fd, locked = 0, retried = 0;

	if ((call = calloc(1, sizeof(*call))) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	if ((r = pthread_cond_init(&call->cond, &c->condattr)) != 0) {
		free(call);
		return pcs_fail(
		    err, PCS_INTERNAL, "cannot create a condition variable: error %d", r);
	}
	call->m = m;
	call->timeout_ms = c->call_timeout_ms;
	(void)pthread_mutex_lock(&c->lock);
	call->call_id = c->next_call_id++;
	(void)pthread_mutex_unlock(&c->lock);
	/* Packed outside the lock: it is the only work proportional to the request's size. */
	if ((r = transport_call_frame(
	         m, method_id, req, call->call_id, call->timeout_ms, &frame, &flen, err)) != 0)
		goto out;
	(void)pthread_mutex_lock(&c->lock);
	locked = 1;
	for (;;) {
		if ((r = session_ready(c, err)) != 0)
			goto out;
		/* The deadline runs from the first moment the call has a connection. */
		if (call->deadline == 0)
			call->deadline = transport_now_ms() + call->timeout_ms;
		gen = c->gen;
		while (c->writing && c->gen == gen && !c->broken) {
			if (session_wait_until(&c->state, &c->lock, call->deadline) == ETIMEDOUT &&
			    c->writing) {
				r = transport_fail_timeout(m->name, call->timeout_ms, err);
				goto out;
			}
		}
		if (c->gen != gen || c->broken || c->fd == -1) {
			/* The connection went while we waited to write: nothing of ours was sent. */
			if (transport_remaining_ms(call->deadline) == 0) {
				r = transport_fail_timeout(m->name, call->timeout_ms, err);
				goto out;
			}
			continue;
		}
		c->writing = 1;
		call_register(c, call);
		fd = c->fd;
		(void)pthread_mutex_unlock(&c->lock);
		r = transport_send_all(c->path, fd, frame, flen, call->deadline, &sent, &serr);
		(void)pthread_mutex_lock(&c->lock);
		c->writing = 0;
		(void)pthread_cond_broadcast(&c->state);
		/* A reader may have failed the connection meanwhile and left its close to us. */
		session_settle(c);
		if (r == 0)
			break;
		/* The connection may already have failed under us, with a better reason. */
		if (call->done && call->status != 0)
			serr = call->err;
		call_unregister(c, call);
		if (r == TRANSPORT_TIMEOUT) {
			if (sent > 0) {
				/* Half a frame on the wire: nothing after it would parse. */
				(void)pcs_fail(&serr, PCS_UNAVAILABLE,
				    "a call to pcsecretd at %s "
				    "timed out part-way through its request; the connection was "
				    "closed",
				    c->path);
				conn_lost(c, gen, &serr);
			}
			r = transport_fail_timeout(m->name, call->timeout_ms, err);
			goto out;
		}
		conn_lost(c, gen, &serr);
		/* Nothing sent (the daemon had closed an idle connection): safe to send again. */
		if (sent == 0 && !retried) {
			retried = 1;
			continue;
		}
		error_copy(err, &serr);
		r = -serr.code;
		goto out;
	}
	reply_deadline = transport_now_ms() + call->timeout_ms + REPLY_GRACE_MS;
	if (reply_deadline > call->deadline)
		call->deadline = reply_deadline;
	*out = call;
	call = NULL;
	r = 0;
out:
	if (locked)
		(void)pthread_mutex_unlock(&c->lock);
	frame_free(frame, flen);
	mux_call_free(call);
	return r;
}

int mux_finish(pcs_client *c, struct pcs_rpc_call *call, ProtobufCMessage **reply, pcs_error *err)
{
	Pcsecret__V1__Reply *rep = NULL;
	int r;

	(void)pthread_mutex_lock(&c->lock);
	while (!call->done && transport_remaining_ms(call->deadline) > 0) {
		if (!c->reading && c->fd != -1 && !c->broken) {
			c->reading = 1;
			read_turn(c, call);
			continue;
		}
		call->waiting = 1;
		(void)session_wait_until(&call->cond, &c->lock, call->deadline);
		call->waiting = 0;
	}
	call_unregister(c, call);
	/* Woken to take the read role but leaving instead (timed out): pass it on. */
	read_handoff(c);
	if (!call->done) {
		r = transport_fail_timeout(call->m->name, call->timeout_ms, err);
	} else if (call->status != 0) {
		error_copy(err, &call->err);
		r = call->status;
	} else {
		rep = call->rep;
		call->rep = NULL;
		r = 0;
	}
	(void)pthread_mutex_unlock(&c->lock);
	/* Unpacking a large reply is real work: not under the lock. */
	if (rep != NULL)
		r = transport_reply_open(c->path, call->m, rep, reply, err);
	return r;
}

void mux_forget(pcs_client *c, struct pcs_rpc_call *call)
{
	(void)pthread_mutex_lock(&c->lock);
	call_unregister(c, call);
	(void)pthread_mutex_unlock(&c->lock);
}
