/*
 * The blocking client: one Unix-socket connection to pcsecretd, the Hello handshake, and calls.
 *
 * A mutex serialises calls, so each client has at most one call in flight; replies to other
 * call ids (stale or unsolicited) are read and dropped. Every wait is a poll() bounded by the
 * call's deadline. After a timeout, an I/O error or a connection-level error the connection
 * is in an unknown state: it is closed and the next call reconnects (with a new Hello).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "pbwipe.h"
#include "rpc.h"
#include "status.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 5000
#define CALL_TIMEOUT_DEFAULT_MS 10000
#define RBUF_INITIAL (64u * 1024u)
#define RBUF_MAX (FRAME_HEADER_LEN + FRAME_DEFAULT_MAX)
/* A full listen backlog makes a Unix connect fail with EAGAIN; retry this often. */
#define CONNECT_RETRY_MS 10
/* Internal to this file: the call was not sent at all, so retrying it cannot repeat it. */
#define CALL_NOT_SENT 1

struct hello_node {
	Pcsecret__V1__HelloReply *reply;
	struct hello_node *next;
};

struct pcs_client {
	pthread_mutex_t lock;         /* held for the whole of a call */
	int fd;                       /* -1: broken or closed; the next call reconnects */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int connect_timeout_ms;
	int call_timeout_ms;
	uint64_t next_call_id;
	uint8_t *rbuf;                /* received bytes not yet consumed; wiped as consumed */
	size_t rlen;
	size_t rcap;
	/*
	 * Every handshake reply, newest first. Old ones are kept until pcs_close so pointers
	 * handed out by pcs_client_role and pcs_rpc_hello never dangle after a reconnect.
	 */
	struct hello_node *_Atomic hellos;
};

/* One call's bookkeeping, for its deadline and its messages. */
struct call_ctx {
	const char *method;
	int timeout_ms;
	int64_t deadline;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
remaining_ms(int64_t deadline)
{
	int64_t left = deadline - now_ms();

	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

static const char *
errstr(int e, char *buf, size_t size)
{
	/* GNU strerror_r (we build with _GNU_SOURCE): thread-safe and returns the text. */
	return strerror_r(e, buf, size);
}

/* Returns 1 when fd is ready, 0 at the deadline, or -errno. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd;
	int n;

	for (;;) {
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, remaining_ms(deadline));
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

static int
fail_timeout(const struct call_ctx *ctx, pcs_error *err)
{
	return pcs_fail(err, PCS_DEADLINE_EXCEEDED, "call %s timed out after %d ms", ctx->method,
	    ctx->timeout_ms);
}

static int
fail_io(const pcs_client *c, const char *what, int e, pcs_error *err)
{
	char buf[128];

	return pcs_fail(err, PCS_UNAVAILABLE, "%s pcsecretd at %s: %s", what, c->path,
	    errstr(e, buf, sizeof(buf)));
}

static void
rbuf_consume(pcs_client *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	sodium_memzero(c->rbuf + (c->rlen - n), n);
	c->rlen -= n;
}

/* Forgets the connection; whatever it had buffered may hold values, so it is wiped. */
static void
conn_drop(pcs_client *c)
{
	if (c->fd != -1) {
		(void)close(c->fd);
		c->fd = -1;
	}
	if (c->rbuf != NULL)
		sodium_memzero(c->rbuf, c->rlen);
	c->rlen = 0;
}

static int
rbuf_reserve(pcs_client *c, size_t need, pcs_error *err)
{
	uint8_t *nb;
	size_t ncap;

	if (need <= c->rcap)
		return 0;
	ncap = c->rcap == 0 ? RBUF_INITIAL : c->rcap;
	while (ncap < need)
		ncap *= 2;
	if (ncap > RBUF_MAX)
		ncap = RBUF_MAX;
	if ((nb = malloc(ncap)) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate a receive buffer of %zu bytes", ncap);
	/* Not realloc: it could leave an unwiped copy of received values behind. */
	if (c->rbuf != NULL) {
		memcpy(nb, c->rbuf, c->rlen);
		sodium_memzero(c->rbuf, c->rcap);
		free(c->rbuf);
	}
	c->rbuf = nb;
	c->rcap = ncap;
	return 0;
}

static int
conn_connect_error(const pcs_client *c, int e, pcs_error *err)
{
	char buf[128];

	if (e == EACCES || e == EPERM)
		return pcs_fail(err, PCS_PERMISSION_DENIED,
		    "cannot connect to pcsecretd at %s: %s (the socket's owner, group and mode "
		    "decide who may connect)", c->path, errstr(e, buf, sizeof(buf)));
	return pcs_fail(err, PCS_UNAVAILABLE, "cannot connect to pcsecretd at %s: %s", c->path,
	    errstr(e, buf, sizeof(buf)));
}

static int
conn_open(pcs_client *c, int timeout_ms, int64_t deadline, pcs_error *err)
{
	struct sockaddr_un sa;
	struct timespec pause;
	socklen_t slen;
	int fd = -1, e, soerr, w, r;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	/* CLOEXEC: pcrun execs the agent and must not hand it a connection to the daemon. */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		r = fail_io(c, "cannot create a socket for", errno, err);
		goto out;
	}
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, (socklen_t)sizeof(sa)) == 0)
			break;
		e = errno;
		if (e == EAGAIN) {
			if (remaining_ms(deadline) == 0) {
				r = pcs_fail(err, PCS_UNAVAILABLE, "cannot connect to pcsecretd at "
				    "%s: its listen queue stayed full for %d ms", c->path,
				    timeout_ms);
				goto out;
			}
			pause.tv_sec = 0;
			pause.tv_nsec = CONNECT_RETRY_MS * 1000000L;
			(void)nanosleep(&pause, NULL);
			continue;
		}
		/* An interrupted connect carries on in the background, like EINPROGRESS. */
		if (e != EINPROGRESS && e != EINTR) {
			r = conn_connect_error(c, e, err);
			goto out;
		}
		if ((w = wait_fd(fd, POLLOUT, deadline)) == 0) {
			r = pcs_fail(err, PCS_UNAVAILABLE,
			    "cannot connect to pcsecretd at %s: timed out after %d ms", c->path,
			    timeout_ms);
			goto out;
		}
		if (w < 0) {
			r = conn_connect_error(c, -w, err);
			goto out;
		}
		soerr = 0;
		slen = (socklen_t)sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) == -1)
			soerr = errno;
		if (soerr != 0) {
			r = conn_connect_error(c, soerr, err);
			goto out;
		}
		break;
	}
	c->fd = fd;
	fd = -1;
	r = 0;
out:
	if (fd != -1)
		(void)close(fd);
	return r;
}

/* *sent says how many bytes left, so a failed first write can be retried safely. */
static int
send_all(pcs_client *c, const uint8_t *buf, size_t len, const struct call_ctx *ctx,
    size_t *sent, pcs_error *err)
{
	ssize_t n;
	int w;

	*sent = 0;
	while (*sent < len) {
		n = send(c->fd, buf + *sent, len - *sent, MSG_NOSIGNAL);
		if (n >= 0) {
			*sent += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return fail_io(c, "lost the connection to", errno, err);
		if ((w = wait_fd(c->fd, POLLOUT, ctx->deadline)) == 0)
			return fail_timeout(ctx, err);
		if (w < 0)
			return fail_io(c, "lost the connection to", -w, err);
	}
	return 0;
}

/*
 * Waits until rbuf starts with a whole frame and returns its body length; the frame stays in
 * rbuf until the caller consumes it.
 */
static int
read_frame(pcs_client *c, const struct call_ctx *ctx, uint32_t *body_len, pcs_error *err)
{
	pcs_error perr;
	uint32_t blen = 0;
	size_t need;
	ssize_t n;
	int p, w, r;

	for (;;) {
		p = frame_peek(c->rbuf, c->rlen, FRAME_DEFAULT_MAX, &blen, &perr);
		if (p == 1) {
			*body_len = blen;
			return 0;
		}
		if (p < 0)
			return pcs_fail(err, PCS_INTERNAL, "pcsecretd at %s sent a bad frame: %s",
			    c->path, perr.message);
		need = FRAME_HEADER_LEN;
		if (c->rlen >= FRAME_HEADER_LEN)
			need = FRAME_HEADER_LEN + ((size_t)c->rbuf[0] << 24 |
			    (size_t)c->rbuf[1] << 16 | (size_t)c->rbuf[2] << 8 | c->rbuf[3]);
		if (need < RBUF_INITIAL)
			need = RBUF_INITIAL;
		if ((r = rbuf_reserve(c, need, err)) != 0)
			return r;
		if ((w = wait_fd(c->fd, POLLIN, ctx->deadline)) == 0)
			return fail_timeout(ctx, err);
		if (w < 0)
			return fail_io(c, "lost the connection to", -w, err);
		n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
		if (n > 0) {
			c->rlen += (size_t)n;
			continue;
		}
		if (n == 0)
			return pcs_fail(err, PCS_UNAVAILABLE, "pcsecretd at %s closed the "
			    "connection%s", c->path, c->rlen > 0 ? " in the middle of a frame" : "");
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return fail_io(c, "lost the connection to", errno, err);
	}
}

static int
status_code(int wire)
{
	return wire > PCS_OK && wire <= PCS_UNAUTHENTICATED ? wire : PCS_UNKNOWN;
}

/*
 * Sends one Call and reads frames until its Reply. Returns CALL_NOT_SENT when the
 * connection turned out dead before a single byte of the call left (the daemon closed an
 * idle connection): nothing was sent, so the caller may reconnect and retry.
 */
static int
call_once(pcs_client *c, const ProtobufCMethodDescriptor *m, uint32_t method_id,
    const ProtobufCMessage *req, int timeout_ms, ProtobufCMessage **reply, pcs_error *err)
{
	static const uint8_t empty[1];
	Pcsecret__V1__Call call = PCSECRET__V1__CALL__INIT;
	Pcsecret__V1__Reply *rep = NULL;
	struct call_ctx ctx;
	pcs_error serr;
	uint8_t *reqbuf = NULL, *frame = NULL;
	size_t reqlen, flen = 0, sent = 0;
	uint32_t blen = 0;
	int r;

	ctx.method = m->name;
	ctx.timeout_ms = timeout_ms;
	ctx.deadline = now_ms() + timeout_ms;
	reqlen = protobuf_c_message_get_packed_size(req);
	if ((reqbuf = malloc(reqlen > 0 ? reqlen : 1)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "cannot allocate %zu bytes for a %s "
		    "request", reqlen, m->name);
		goto out;
	}
	(void)protobuf_c_message_pack(req, reqbuf);
	call.call_id = c->next_call_id++;
	call.method_id = method_id;
	call.timeout_ms = (uint32_t)timeout_ms;
	call.request.data = reqbuf;
	call.request.len = reqlen;
	if ((r = frame_pack(&call.base, FRAME_DEFAULT_MAX, &frame, &flen, err)) != 0)
		goto out;
	if ((r = send_all(c, frame, flen, &ctx, &sent, &serr)) != 0) {
		if (sent == 0 && r == -PCS_UNAVAILABLE)
			r = CALL_NOT_SENT;
		else if (err != NULL)
			*err = serr;
		conn_drop(c);
		goto out;
	}
	for (;;) {
		if ((r = read_frame(c, &ctx, &blen, err)) != 0) {
			conn_drop(c);
			goto out;
		}
		rep = pcsecret__v1__reply__unpack(&pbwipe_allocator, blen,
		    c->rbuf + FRAME_HEADER_LEN);
		rbuf_consume(c, FRAME_HEADER_LEN + blen);
		if (rep == NULL) {
			r = pcs_fail(err, PCS_INTERNAL, "pcsecretd at %s sent a reply that is not "
			    "a pcsecret.v1.Reply", c->path);
			conn_drop(c);
			goto out;
		}
		if (rep->call_id == 0) {
			/* The daemon is about to close: the connection is over, not just this call. */
			r = pcs_fail(err, rep->status == 0 ? PCS_INTERNAL : status_code((int)rep->status),
			    "%s", rep->message[0] != '\0' ? rep->message :
			    "pcsecretd reported a connection error");
			conn_drop(c);
			goto out;
		}
		if (rep->call_id == call.call_id)
			break;
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
		rep = NULL;
	}
	if (rep->status != PCSECRET__V1__STATUS_CODE__OK) {
		r = pcs_fail(err, status_code((int)rep->status), "%s", rep->message[0] != '\0' ?
		    rep->message : "pcsecretd gave no message");
		goto out;
	}
	*reply = protobuf_c_message_unpack(m->output, &pbwipe_allocator, rep->reply.len,
	    rep->reply.data != NULL ? rep->reply.data : empty);
	if (*reply == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "pcsecretd at %s sent a %s reply that does not "
		    "decode as %s", c->path, m->name, m->output->name);
		goto out;
	}
	r = 0;
out:
	if (rep != NULL)
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
	frame_free(frame, flen);
	if (reqbuf != NULL) {
		sodium_memzero(reqbuf, reqlen);
		free(reqbuf);
	}
	return r;
}

static const ProtobufCMethodDescriptor *
method_find(const char *name, uint32_t *method_id)
{
	const ProtobufCServiceDescriptor *svc = &pcsecret__v1__pc_secret__descriptor;
	const ProtobufCMethodDescriptor *m;

	if ((m = protobuf_c_service_descriptor_get_method_by_name(svc, name)) == NULL)
		return NULL;
	/* Method ids on the wire are 1-based positions in the service's declaration order. */
	*method_id = (uint32_t)(m - svc->methods) + 1;
	return m;
}

/* Connects and says Hello; c->fd is -1 and the caller holds the lock (or is c's only user). */
static int
conn_establish(pcs_client *c, pcs_error *err)
{
	Pcsecret__V1__HelloRequest req = PCSECRET__V1__HELLO_REQUEST__INIT;
	const ProtobufCMethodDescriptor *m;
	ProtobufCMessage *msg = NULL;
	Pcsecret__V1__HelloReply *hello;
	struct hello_node *node = NULL;
	uint32_t method_id;
	int64_t deadline;
	int r;

	deadline = now_ms() + c->connect_timeout_ms;
	if ((m = method_find("Hello", &method_id)) == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "the protocol has no Hello method");
		goto out;
	}
	if ((node = calloc(1, sizeof(*node))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if ((r = conn_open(c, c->connect_timeout_ms, deadline, err)) != 0)
		goto out;
	req.protocol_version = PCS_PROTOCOL_VERSION;
	req.client = (char *)"libpcsecret/" PCS_VERSION;
	/* A fresh connection cannot be stale, so CALL_NOT_SENT is a plain failure here. */
	if ((r = call_once(c, m, method_id, &req.base, remaining_ms(deadline) > 0 ?
	    remaining_ms(deadline) : 1, &msg, err)) != 0) {
		if (r == CALL_NOT_SENT)
			r = pcs_fail(err, PCS_UNAVAILABLE, "pcsecretd at %s closed the connection "
			    "before the handshake", c->path);
		goto out;
	}
	hello = (Pcsecret__V1__HelloReply *)msg;
	if (hello->protocol_version != PCS_PROTOCOL_VERSION) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION, "pcsecretd at %s speaks protocol "
		    "version %u; this library speaks %d", c->path, hello->protocol_version,
		    PCS_PROTOCOL_VERSION);
		goto out;
	}
	node->reply = hello;
	msg = NULL;
	node->next = atomic_load(&c->hellos);
	atomic_store(&c->hellos, node);
	node = NULL;
	r = 0;
out:
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
	free(node);
	if (r != 0)
		conn_drop(c);
	return r;
}

int
pcs_rpc_call(pcs_client *c, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply, pcs_error *err)
{
	const ProtobufCMethodDescriptor *m;
	uint32_t method_id;
	int r, fresh = 0;

	if (reply != NULL)
		*reply = NULL;
	if (c == NULL || method == NULL || req == NULL || reply == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_rpc_call: a required argument "
		    "is NULL");
	if ((m = method_find(method, &method_id)) == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcsecret.v1.PcSecret has no method %s",
		    method);
	if (req->descriptor != m->input)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "%s takes a %s, not a %s", method,
		    m->input->name, req->descriptor->name);
	if ((r = pthread_mutex_lock(&c->lock)) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot lock the client: error %d", r);
	if (c->fd == -1) {
		if ((r = conn_establish(c, err)) != 0)
			goto out;
		fresh = 1;
	}
	r = call_once(c, m, method_id, req, c->call_timeout_ms, reply, err);
	if (r == CALL_NOT_SENT && !fresh) {
		if ((r = conn_establish(c, err)) != 0)
			goto out;
		r = call_once(c, m, method_id, req, c->call_timeout_ms, reply, err);
	}
	if (r == CALL_NOT_SENT)
		r = pcs_fail(err, PCS_UNAVAILABLE, "pcsecretd at %s closed the connection",
		    c->path);
out:
	(void)pthread_mutex_unlock(&c->lock);
	return r;
}

const Pcsecret__V1__HelloReply *
pcs_rpc_hello(const pcs_client *c)
{
	struct hello_node *node;

	if (c == NULL)
		return NULL;
	node = atomic_load(&((pcs_client *)c)->hellos);
	return node != NULL ? node->reply : NULL;
}

const char *
pcs_rpc_socket_path(const pcs_client *c)
{
	return c != NULL ? c->path : NULL;
}

PCS_EXPORT int
pcs_connect(const pcs_options *opts, pcs_client **out, pcs_error *err)
{
	pcs_client *c = NULL;
	const char *path = NULL;
	size_t plen;
	int r;

	if (out == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_connect: out is NULL");
	*out = NULL;
	if (sodium_init() < 0)
		return pcs_fail(err, PCS_INTERNAL, "libsodium failed to initialise");
	if (opts != NULL && opts->socket_path != NULL)
		path = opts->socket_path;
	else if ((path = getenv("PCSECRET_SOCKET")) == NULL || path[0] == '\0')
		path = PCS_DEFAULT_SOCKET;
	plen = strlen(path);
	if (plen == 0)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "the socket path is empty");
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	c->fd = -1;
	if (plen >= sizeof(c->path)) {
		/* Sizes first: the message would cut a long path short. */
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "socket path is %zu bytes; the maximum is "
		    "%zu: %.80s...", plen, sizeof(c->path) - 1, path);
		free(c);
		return r;
	}
	memcpy(c->path, path, plen + 1);
	if ((r = pthread_mutex_init(&c->lock, NULL)) != 0) {
		free(c);
		return pcs_fail(err, PCS_INTERNAL, "cannot create the client's lock: error %d", r);
	}
	c->connect_timeout_ms = opts != NULL && opts->connect_timeout_ms > 0 ?
	    opts->connect_timeout_ms : CONNECT_TIMEOUT_DEFAULT_MS;
	c->call_timeout_ms = opts != NULL && opts->call_timeout_ms > 0 ?
	    opts->call_timeout_ms : CALL_TIMEOUT_DEFAULT_MS;
	c->next_call_id = 1;
	atomic_init(&c->hellos, NULL);
	/* No lock needed: no other thread can see c yet. */
	if ((r = conn_establish(c, err)) != 0)
		goto out;
	*out = c;
	c = NULL;
out:
	pcs_close(c);
	return r;
}

PCS_EXPORT void
pcs_close(pcs_client *c)
{
	struct hello_node *node, *next;

	if (c == NULL)
		return;
	conn_drop(c);
	if (c->rbuf != NULL) {
		sodium_memzero(c->rbuf, c->rcap);
		free(c->rbuf);
	}
	for (node = atomic_load(&c->hellos); node != NULL; node = next) {
		next = node->next;
		protobuf_c_message_free_unpacked(&node->reply->base, &pbwipe_allocator);
		free(node);
	}
	(void)pthread_mutex_destroy(&c->lock);
	free(c);
}

PCS_EXPORT const char *
pcs_client_role(const pcs_client *c)
{
	const Pcsecret__V1__HelloReply *h = pcs_rpc_hello(c);

	if (h == NULL || h->principal == NULL)
		return "";
	return h->principal->role;
}

PCS_EXPORT const char *
pcs_client_instance(const pcs_client *c)
{
	const Pcsecret__V1__HelloReply *h = pcs_rpc_hello(c);

	return h != NULL ? h->instance_id : "";
}
