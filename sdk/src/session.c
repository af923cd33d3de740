/*
 * The client's connection to pcsecretd (see client.c for the whole design):
 *  - A connection-level failure (a Reply with call_id 0, EOF, an I/O error, a bad frame, a
 *    frame cut short by a timeout) fails every registered call with that status and shuts the
 *    socket down, so a writer blocked in send() and a reader blocked in poll() return at once.
 *    When neither role is held any more the descriptor is closed; the next call reconnects with
 *    a new Hello. A call none of whose bytes were sent is retried once on the new connection.
 * Failing the calls and the retry are mux.c's part; the connection's state is this file's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "pbwipe.h"
#include "session.h"
#include "status.h"

int session_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t deadline)
{
	struct timespec ts;

	if (transport_remaining_ms(deadline) == 0)
		return ETIMEDOUT;
	ts.tv_sec = (time_t)(deadline / 1000);
	ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
	return pthread_cond_timedwait(cond, lock, &ts) == ETIMEDOUT ? ETIMEDOUT : 0;
}

/*
 * Connects and says Hello on a descriptor nobody else can see yet, so the exchange needs no
 * lock; the caller has set c->connecting, which gives it rbuf. On success *fdp is the new
 * connection and its handshake reply is the newest in c->hellos.
 */
static int establish(pcs_client *c, uint64_t call_id, int *fdp, pcs_error *err)
{
	Pcsecret__V1__HelloRequest req = PCSECRET__V1__HELLO_REQUEST__INIT;
	const ProtobufCMethodDescriptor *m;
	ProtobufCMessage *msg = NULL;
	Pcsecret__V1__Reply *rep = NULL;
	Pcsecret__V1__HelloReply *hello;
	struct hello_node *node = NULL;
	uint8_t *frame = NULL;
	size_t flen = 0, sent;
	uint32_t method_id;
	int64_t deadline = transport_now_ms() + c->connect_timeout_ms;
	int fd = -1, r;

	if ((m = transport_method_find("Hello", &method_id)) == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "the protocol has no Hello method");
		goto out;
	}
	if ((node = calloc(1, sizeof(*node))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if ((r = transport_open(
	         c->path, c->server_uid, deadline, c->connect_timeout_ms, &fd, err)) != 0)
		goto out;
	req.protocol_version = PCS_PROTOCOL_VERSION;
	req.client = (char *)"libpcsecret/" PCS_VERSION;
	if ((r = transport_call_frame(m, method_id, &req.base, call_id,
	         transport_remaining_ms(deadline) > 0 ? transport_remaining_ms(deadline) : 1,
	         &frame, &flen, err)) != 0)
		goto out;
	if ((r = transport_send_all(c->path, fd, frame, flen, deadline, &sent, err)) != 0) {
		/* A fresh connection that dies at once is a plain failure: nothing to retry. */
		if (r == TRANSPORT_TIMEOUT)
			r = transport_fail_timeout("Hello", c->connect_timeout_ms, err);
		goto out;
	}
	/* Nothing else is in flight on this connection, so anything but our reply is noise. */
	for (;;) {
		if ((r = transport_read_reply(&c->rbuf, c->path, fd, deadline, &rep, err)) != 0) {
			if (r == TRANSPORT_TIMEOUT)
				r = transport_fail_timeout("Hello", c->connect_timeout_ms, err);
			goto out;
		}
		if (rep == NULL) {
			r = pcs_fail(err, PCS_INTERNAL, "no reply was read");
			goto out;
		}
		if (rep->call_id == 0) {
			r = transport_conn_error(rep, err);
			goto out;
		}
		if (rep->call_id == call_id)
			break;
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
		rep = NULL;
	}
	r = transport_reply_open(c->path, m, rep, &msg, err);
	rep = NULL;
	if (r != 0)
		goto out;
	if ((hello = (Pcsecret__V1__HelloReply *)msg) == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "Hello returned no reply");
		goto out;
	}
	if (hello->protocol_version != PCS_PROTOCOL_VERSION) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "pcsecretd at %s speaks protocol "
		    "version %u; this library speaks %d",
		    c->path, hello->protocol_version, PCS_PROTOCOL_VERSION);
		goto out;
	}
	node->reply = hello;
	msg = NULL;
	node->next = atomic_load(&c->hellos);
	atomic_store(&c->hellos, node);
	node = NULL;
	*fdp = fd;
	fd = -1;
	r = 0;
out:
	if (rep != NULL)
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
	frame_free(frame, flen);
	free(node);
	if (fd != -1) {
		(void)close(fd);
		transport_rbuf_clear(&c->rbuf);
	}
	return r;
}

void session_settle(pcs_client *c)
{
	if (!c->broken || c->reading || c->writing)
		return;
	(void)close(c->fd);
	c->fd = -1;
	c->broken = 0;
	transport_rbuf_clear(&c->rbuf);
	(void)pthread_cond_broadcast(&c->state);
}

int session_fail(pcs_client *c, uint64_t gen)
{
	if (gen != c->gen || c->broken || c->fd == -1)
		return 0;
	c->broken = 1;
	/* Not close: another caller may be inside send() or poll() on this descriptor. */
	(void)shutdown(c->fd, SHUT_RDWR);
	(void)pthread_cond_broadcast(&c->state);
	session_settle(c);
	return 1;
}

int session_ready(pcs_client *c, pcs_error *err)
{
	int64_t deadline = transport_now_ms() + c->connect_timeout_ms;
	pcs_error cerr;
	uint64_t seq, id;
	int fd = -1, was_connecting, timed_out = 0, r;

	for (;;) {
		if (c->fd != -1 && !c->broken)
			return 0;
		if (!c->connecting && !c->broken)
			break;
		if (timed_out)
			return pcs_fail(err, PCS_UNAVAILABLE,
			    "timed out after %d ms waiting for "
			    "the connection to pcsecretd at %s",
			    c->connect_timeout_ms, c->path);
		was_connecting = c->connecting;
		seq = c->connect_seq;
		timed_out = session_wait_until(&c->state, &c->lock, deadline) == ETIMEDOUT;
		if (was_connecting && c->connect_seq != seq && c->fd == -1 &&
		    c->connect_status != 0) {
			if (err != NULL)
				*err = c->connect_err;
			return c->connect_status;
		}
	}
	c->connecting = 1;
	id = c->next_call_id++;
	(void)pthread_mutex_unlock(&c->lock);
	r = establish(c, id, &fd, &cerr);
	(void)pthread_mutex_lock(&c->lock);
	c->connecting = 0;
	c->connect_seq++;
	c->connect_status = r;
	if (r == 0) {
		c->fd = fd;
		c->gen++;
	} else {
		c->connect_err = cerr;
		if (err != NULL)
			*err = cerr;
	}
	(void)pthread_cond_broadcast(&c->state);
	return r;
}
