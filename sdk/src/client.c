/*
 * The blocking client: one Unix-socket connection to pcsecretd, shared by every thread that
 * calls on the pcs_client; the Hello handshake; pipelined calls.
 *
 * The library starts no thread of its own, so the callers do all the I/O:
 *  - c->lock guards the client's state. No blocking I/O happens while it is held.
 *  - A call takes a call_id, then the write role (c->writing) for as long as it takes to put
 *    its whole frame on the socket, so frames never interleave. Its slot (struct
 *    pcs_rpc_call) is registered before the first byte leaves: the reply may arrive before
 *    send() returns.
 *  - The daemon replies in any order. Whichever waiting caller finds the read role
 *    (c->reading) free takes it, reads frames and hands each reply to its slot, signalling the
 *    slot's condition variable. Once its own reply is in, or its deadline has passed, it passes
 *    the role to another waiting caller. A reply nobody waits for any more (a timed-out call's)
 *    is wiped and dropped; the connection stays up.
 *  - A connection-level failure (a Reply with call_id 0, EOF, an I/O error, a bad frame, a
 *    frame cut short by a timeout) fails every registered call with that status and shuts the
 *    socket down, so a writer blocked in send() and a reader blocked in poll() return at once.
 *    When neither role is held any more the descriptor is closed; the next call reconnects with
 *    a new Hello. A call none of whose bytes were sent is retried once on the new connection.
 *
 * pcs_close must not run while another thread uses the client (documented in pcsecret.h).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/types.h>
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
/*
 * How long past the call's deadline, counted from when its request was written, a reply is
 * still waited for. The daemon's deadline runs from the request's arrival and its answer is
 * what its audit row records; giving up first could leave a row saying OK for a call this
 * client reported as failed.
 */
#define REPLY_GRACE_MS 1000
/* A full listen backlog makes a Unix connect fail with EAGAIN; retry this often. */
#define CONNECT_RETRY_MS 10
/* Internal to this file: a wait on the socket reached the call's deadline. */
#define IO_TIMEOUT 1
/* Names the daemon's uid when it is neither root nor the client's own (a number or a user). */
#define SERVER_UID_ENV "PCSECRET_SERVER_UID"
#define NO_UID ((uid_t)-1)

struct hello_node {
	Pcsecret__V1__HelloReply *reply;
	struct hello_node *next;
};

/* One call from the moment it has a call_id until its caller has its result. */
struct pcs_rpc_call {
	struct pcs_rpc_call *prev, *next;  /* in c->calls while registered */
	const ProtobufCMethodDescriptor *m;
	uint64_t call_id;
	int timeout_ms;
	int64_t deadline;           /* 0 until the call first has a connection */
	pthread_cond_t cond;        /* done, or the read role may be free */
	int registered;
	int waiting;                /* blocked on cond: a candidate for the read role */
	int done;                   /* rep, or status and err, are set */
	int status;                 /* when done: 0 (rep holds the Reply) or -PCS_xxx */
	pcs_error err;
	Pcsecret__V1__Reply *rep;
};

struct pcs_client {
	pthread_mutex_t lock;
	pthread_cond_t state;         /* write role released; connection up, failed or gone */
	pthread_condattr_t condattr;  /* CLOCK_MONOTONIC, for every condition variable */
	int fd;                       /* -1: none; the next call connects */
	uint64_t gen;                 /* counts connections, so a failure hits only its own */
	int broken;                   /* failed; fd is closed once neither role is held */
	int writing;                  /* a caller is sending a frame on fd */
	int reading;                  /* a caller is reading fd and owns rbuf */
	int connecting;               /* a caller is connecting; it owns rbuf */
	uint64_t connect_seq;         /* counts finished connection attempts */
	int connect_status;           /* the last attempt's result, shared with its waiters */
	pcs_error connect_err;
	struct pcs_rpc_call *calls;   /* registered: sent or being sent, reply not yet taken */
	uint64_t next_call_id;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uid_t server_uid;             /* PCSECRET_SERVER_UID, or NO_UID */
	int connect_timeout_ms;
	int call_timeout_ms;
	atomic_size_t max_refs;       /* 0: PCS_MAX_REFS_PER_CALL */
	uint8_t *rbuf;                /* received bytes not yet consumed; wiped as consumed */
	size_t rlen;
	size_t rcap;
	/*
	 * Every handshake reply, newest first. Old ones are kept until pcs_close so pointers
	 * handed out by pcs_client_role and pcs_rpc_hello never dangle after a reconnect.
	 */
	struct hello_node *_Atomic hellos;
};

/* What a wait on the socket is bounded by, and what its timeout message says. */
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

/* Waits on cond until signalled or until deadline (CLOCK_MONOTONIC ms); 0 or ETIMEDOUT. */
static int
cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t deadline)
{
	struct timespec ts;

	if (remaining_ms(deadline) == 0)
		return ETIMEDOUT;
	ts.tv_sec = (time_t)(deadline / 1000);
	ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
	return pthread_cond_timedwait(cond, lock, &ts) == ETIMEDOUT ? ETIMEDOUT : 0;
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
fail_timeout(const char *method, int timeout_ms, pcs_error *err)
{
	return pcs_fail(err, PCS_DEADLINE_EXCEEDED, "call %s timed out after %d ms", method,
	    timeout_ms);
}

static int
fail_io(const pcs_client *c, const char *what, int e, pcs_error *err)
{
	char buf[128];

	return pcs_fail(err, PCS_UNAVAILABLE, "%s pcsecretd at %s: %s", what, c->path,
	    errstr(e, buf, sizeof(buf)));
}

static int
status_code(int wire)
{
	return wire > PCS_OK && wire <= PCS_UNAUTHENTICATED ? wire : PCS_UNKNOWN;
}

static void
error_copy(pcs_error *dst, const pcs_error *src)
{
	if (dst != NULL)
		*dst = *src;
}

static void
rbuf_consume(pcs_client *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	sodium_memzero(c->rbuf + (c->rlen - n), n);
	c->rlen -= n;
}

/* Whatever a dead connection left buffered may hold values. */
static void
rbuf_clear(pcs_client *c)
{
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

/*
 * Whoever owns the listening socket gets everything this client sends, values included, so
 * it must be the daemon: root, this process's own uid, or the uid PCSECRET_SERVER_UID names.
 * Anyone else got there first (a directory others may write to, a daemon that was down) and
 * is told nothing; the kernel's word (SO_PEERCRED: who called listen) is the only one taken.
 */
static int
conn_check_peer(const pcs_client *c, int fd, pcs_error *err)
{
	struct ucred cred;
	socklen_t len = (socklen_t)sizeof(cred);
	char buf[128];

	memset(&cred, 0, sizeof(cred));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    len != (socklen_t)sizeof(cred))
		return pcs_fail(err, PCS_UNAVAILABLE, "cannot tell who serves %s: %s", c->path,
		    errstr(errno, buf, sizeof(buf)));
	if (cred.uid == 0 || cred.uid == geteuid() ||
	    (c->server_uid != NO_UID && cred.uid == c->server_uid))
		return 0;
	return pcs_fail(err, PCS_PERMISSION_DENIED, "refusing %s: it is served by uid %u, not by "
	    "root, this process's uid %u or " SERVER_UID_ENV "; nothing was sent", c->path,
	    (unsigned)cred.uid, (unsigned)geteuid());
}

static int
conn_open(const pcs_client *c, int64_t deadline, int *fdp, pcs_error *err)
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
				    c->connect_timeout_ms);
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
			    c->connect_timeout_ms);
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
	if ((r = conn_check_peer(c, fd, err)) != 0)
		goto out;
	*fdp = fd;
	fd = -1;
	r = 0;
out:
	if (fd != -1)
		(void)close(fd);
	return r;
}

/*
 * Sends the whole frame. Returns 0, IO_TIMEOUT (err untouched), or a negative status; *sent
 * says how many bytes left either way, so a caller knows whether the daemon saw anything.
 */
static int
send_all(const pcs_client *c, int fd, const uint8_t *buf, size_t len,
    const struct call_ctx *ctx, size_t *sent, pcs_error *err)
{
	ssize_t n;
	int w;

	*sent = 0;
	while (*sent < len) {
		n = send(fd, buf + *sent, len - *sent, MSG_NOSIGNAL);
		if (n >= 0) {
			*sent += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return fail_io(c, "lost the connection to", errno, err);
		if ((w = wait_fd(fd, POLLOUT, ctx->deadline)) == 0)
			return IO_TIMEOUT;
		if (w < 0)
			return fail_io(c, "lost the connection to", -w, err);
	}
	return 0;
}

/*
 * Reads until rbuf starts with a whole frame, then unpacks it as a Reply and consumes it.
 * Returns 0 with *rep set, IO_TIMEOUT (a partial frame stays in rbuf for the next reader), or
 * a negative status: the connection is unusable. The caller owns rbuf (read role, or it is
 * connecting).
 */
static int
read_reply(pcs_client *c, int fd, const struct call_ctx *ctx, Pcsecret__V1__Reply **rep,
    pcs_error *err)
{
	pcs_error perr;
	uint32_t blen = 0;
	size_t need;
	ssize_t n;
	int p, w, r;

	*rep = NULL;
	for (;;) {
		p = frame_peek(c->rbuf, c->rlen, FRAME_DEFAULT_MAX, &blen, &perr);
		if (p == 1)
			break;
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
		if ((w = wait_fd(fd, POLLIN, ctx->deadline)) == 0)
			return IO_TIMEOUT;
		if (w < 0)
			return fail_io(c, "lost the connection to", -w, err);
		n = read(fd, c->rbuf + c->rlen, c->rcap - c->rlen);
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
	*rep = pcsecret__v1__reply__unpack(&pbwipe_allocator, blen, c->rbuf + FRAME_HEADER_LEN);
	rbuf_consume(c, FRAME_HEADER_LEN + blen);
	if (*rep == NULL)
		return pcs_fail(err, PCS_INTERNAL, "pcsecretd at %s sent a reply that is not a "
		    "pcsecret.v1.Reply", c->path);
	return 0;
}

/* The error a Reply with call_id 0 reports for the whole connection. */
static int
conn_error_of(const Pcsecret__V1__Reply *rep, pcs_error *err)
{
	return pcs_fail(err, rep->status == 0 ? PCS_INTERNAL : status_code((int)rep->status),
	    "%s", rep->message[0] != '\0' ? rep->message : "pcsecretd reported a connection error");
}

/* A call's Reply into the method's output message. Frees rep. */
static int
reply_open(const pcs_client *c, const ProtobufCMethodDescriptor *m, Pcsecret__V1__Reply *rep,
    ProtobufCMessage **reply, pcs_error *err)
{
	static const uint8_t empty[1];
	int r;

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
	protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
	return r;
}

/* One Call frame: the envelope around req. Free *frame with frame_free (it may hold values). */
static int
call_frame(const ProtobufCMethodDescriptor *m, uint32_t method_id, const ProtobufCMessage *req,
    uint64_t call_id, int timeout_ms, uint8_t **frame, size_t *flen, pcs_error *err)
{
	Pcsecret__V1__Call call = PCSECRET__V1__CALL__INIT;
	uint8_t *reqbuf = NULL;
	size_t reqlen;
	int r;

	reqlen = protobuf_c_message_get_packed_size(req);
	if ((reqbuf = malloc(reqlen > 0 ? reqlen : 1)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "cannot allocate %zu bytes for a %s "
		    "request", reqlen, m->name);
		goto out;
	}
	(void)protobuf_c_message_pack(req, reqbuf);
	call.call_id = call_id;
	call.method_id = method_id;
	call.timeout_ms = (uint32_t)timeout_ms;
	call.request.data = reqbuf;
	call.request.len = reqlen;
	r = frame_pack(&call.base, FRAME_DEFAULT_MAX, frame, flen, err);
out:
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

/*
 * Connects and says Hello on a descriptor nobody else can see yet, so the exchange needs no
 * lock; the caller has set c->connecting, which gives it rbuf. On success *fdp is the new
 * connection and its handshake reply is the newest in c->hellos.
 */
static int
conn_establish(pcs_client *c, uint64_t call_id, int *fdp, pcs_error *err)
{
	Pcsecret__V1__HelloRequest req = PCSECRET__V1__HELLO_REQUEST__INIT;
	const ProtobufCMethodDescriptor *m;
	ProtobufCMessage *msg = NULL;
	Pcsecret__V1__Reply *rep = NULL;
	Pcsecret__V1__HelloReply *hello;
	struct hello_node *node = NULL;
	struct call_ctx ctx;
	uint8_t *frame = NULL;
	size_t flen = 0, sent;
	uint32_t method_id;
	int fd = -1, r;

	ctx.method = "Hello";
	ctx.timeout_ms = c->connect_timeout_ms;
	ctx.deadline = now_ms() + c->connect_timeout_ms;
	if ((m = method_find("Hello", &method_id)) == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "the protocol has no Hello method");
		goto out;
	}
	if ((node = calloc(1, sizeof(*node))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if ((r = conn_open(c, ctx.deadline, &fd, err)) != 0)
		goto out;
	req.protocol_version = PCS_PROTOCOL_VERSION;
	req.client = (char *)"libpcsecret/" PCS_VERSION;
	if ((r = call_frame(m, method_id, &req.base, call_id, remaining_ms(ctx.deadline) > 0 ?
	    remaining_ms(ctx.deadline) : 1, &frame, &flen, err)) != 0)
		goto out;
	if ((r = send_all(c, fd, frame, flen, &ctx, &sent, err)) != 0) {
		/* A fresh connection that dies at once is a plain failure: nothing to retry. */
		if (r == IO_TIMEOUT)
			r = fail_timeout(ctx.method, ctx.timeout_ms, err);
		goto out;
	}
	/* Nothing else is in flight on this connection, so anything but our reply is noise. */
	for (;;) {
		if ((r = read_reply(c, fd, &ctx, &rep, err)) != 0) {
			if (r == IO_TIMEOUT)
				r = fail_timeout(ctx.method, ctx.timeout_ms, err);
			goto out;
		}
		if (rep == NULL) {
			r = pcs_fail(err, PCS_INTERNAL, "no reply was read");
			goto out;
		}
		if (rep->call_id == 0) {
			r = conn_error_of(rep, err);
			goto out;
		}
		if (rep->call_id == call_id)
			break;
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
		rep = NULL;
	}
	r = reply_open(c, m, rep, &msg, err);
	rep = NULL;
	if (r != 0)
		goto out;
	if ((hello = (Pcsecret__V1__HelloReply *)msg) == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "Hello returned no reply");
		goto out;
	}
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
		rbuf_clear(c);
	}
	return r;
}

/* Called with c->lock held, as is everything below that takes a pcs_client. */
static void
call_register(pcs_client *c, struct pcs_rpc_call *call)
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

static void
call_unregister(pcs_client *c, struct pcs_rpc_call *call)
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

/* Closes a failed connection once no caller is inside send() or poll() on it. */
static void
conn_settle(pcs_client *c)
{
	if (!c->broken || c->reading || c->writing)
		return;
	(void)close(c->fd);
	c->fd = -1;
	c->broken = 0;
	rbuf_clear(c);
	(void)pthread_cond_broadcast(&c->state);
}

/*
 * Connection gen failed with why: every call registered on it fails the same way. A second
 * failure of the same connection (its reader seeing the EOF a writer's error caused) changes
 * nothing.
 */
static void
conn_fail(pcs_client *c, uint64_t gen, const pcs_error *why)
{
	struct pcs_rpc_call *call;

	if (gen != c->gen || c->broken || c->fd == -1)
		return;
	c->broken = 1;
	/* Not close: another caller may be inside send() or poll() on this descriptor. */
	(void)shutdown(c->fd, SHUT_RDWR);
	for (call = c->calls; call != NULL; call = call->next) {
		if (call->done)
			continue;
		call->done = 1;
		call->status = -why->code;
		call->err = *why;
		(void)pthread_cond_signal(&call->cond);
	}
	(void)pthread_cond_broadcast(&c->state);
	conn_settle(c);
}

/* The read role is free: wake a caller that is waiting for its reply so it can take it. */
static void
read_handoff(pcs_client *c)
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
static void
reply_deliver(pcs_client *c, Pcsecret__V1__Reply *rep)
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
static void
read_turn(pcs_client *c, struct pcs_rpc_call *call)
{
	Pcsecret__V1__Reply *rep;
	struct call_ctx ctx;
	pcs_error ferr;
	uint64_t gen = c->gen;
	int fd = c->fd, r;

	ctx.method = call->m->name;
	ctx.timeout_ms = call->timeout_ms;
	ctx.deadline = call->deadline;
	for (;;) {
		(void)pthread_mutex_unlock(&c->lock);
		r = read_reply(c, fd, &ctx, &rep, &ferr);
		(void)pthread_mutex_lock(&c->lock);
		if (r == IO_TIMEOUT)
			break;
		if (r < 0) {
			conn_fail(c, gen, &ferr);
			break;
		}
		if (rep->call_id == 0) {
			/* The daemon is about to close: the connection is over, not just a call. */
			(void)conn_error_of(rep, &ferr);
			protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
			conn_fail(c, gen, &ferr);
			break;
		}
		reply_deliver(c, rep);
		if (call->done || c->broken)
			break;
	}
	c->reading = 0;
	conn_settle(c);
	read_handoff(c);
}

/*
 * Makes sure there is a connection, connecting (with a new Hello) when there is none. Only one
 * caller connects; the others wait for it and share its failure rather than each waiting out
 * a timeout of its own.
 */
static int
conn_ready(pcs_client *c, pcs_error *err)
{
	int64_t deadline = now_ms() + c->connect_timeout_ms;
	pcs_error cerr;
	uint64_t seq, id;
	int fd = -1, was_connecting, timed_out = 0, r;

	for (;;) {
		if (c->fd != -1 && !c->broken)
			return 0;
		if (!c->connecting && !c->broken)
			break;
		if (timed_out)
			return pcs_fail(err, PCS_UNAVAILABLE, "timed out after %d ms waiting for "
			    "the connection to pcsecretd at %s", c->connect_timeout_ms, c->path);
		was_connecting = c->connecting;
		seq = c->connect_seq;
		timed_out = cond_wait_until(&c->state, &c->lock, deadline) == ETIMEDOUT;
		if (was_connecting && c->connect_seq != seq && c->fd == -1 &&
		    c->connect_status != 0) {
			error_copy(err, &c->connect_err);
			return c->connect_status;
		}
	}
	c->connecting = 1;
	id = c->next_call_id++;
	(void)pthread_mutex_unlock(&c->lock);
	r = conn_establish(c, id, &fd, &cerr);
	(void)pthread_mutex_lock(&c->lock);
	c->connecting = 0;
	c->connect_seq++;
	c->connect_status = r;
	if (r == 0) {
		c->fd = fd;
		c->gen++;
	} else {
		c->connect_err = cerr;
		error_copy(err, &cerr);
	}
	(void)pthread_cond_broadcast(&c->state);
	return r;
}

static void
call_free(struct pcs_rpc_call *call)
{
	if (call == NULL)
		return;
	if (call->rep != NULL)
		protobuf_c_message_free_unpacked(&call->rep->base, &pbwipe_allocator);
	(void)pthread_cond_destroy(&call->cond);
	free(call);
}

int
pcs_rpc_start(pcs_client *c, const char *method, const ProtobufCMessage *req,
    struct pcs_rpc_call **out, pcs_error *err)
{
	const ProtobufCMethodDescriptor *m;
	struct pcs_rpc_call *call = NULL;
	struct call_ctx ctx;
	pcs_error serr;
	uint8_t *frame = NULL;
	size_t flen = 0, sent = 0;
	uint32_t method_id;
	uint64_t gen;
	int64_t reply_deadline;
	int r, fd, locked = 0, retried = 0;

	if (out != NULL)
		*out = NULL;
	if (c == NULL || method == NULL || req == NULL || out == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_rpc_start: a required argument "
		    "is NULL");
	if ((m = method_find(method, &method_id)) == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcsecret.v1.PcSecret has no method %s",
		    method);
	if (req->descriptor != m->input)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "%s takes a %s, not a %s", method,
		    m->input->name, req->descriptor->name);
	if ((call = calloc(1, sizeof(*call))) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	if ((r = pthread_cond_init(&call->cond, &c->condattr)) != 0) {
		free(call);
		return pcs_fail(err, PCS_INTERNAL, "cannot create a condition variable: error %d",
		    r);
	}
	call->m = m;
	call->timeout_ms = c->call_timeout_ms;
	(void)pthread_mutex_lock(&c->lock);
	call->call_id = c->next_call_id++;
	(void)pthread_mutex_unlock(&c->lock);
	/* Packed outside the lock: it is the only work proportional to the request's size. */
	if ((r = call_frame(m, method_id, req, call->call_id, call->timeout_ms, &frame, &flen,
	    err)) != 0)
		goto out;
	(void)pthread_mutex_lock(&c->lock);
	locked = 1;
	for (;;) {
		if ((r = conn_ready(c, err)) != 0)
			goto out;
		/* The deadline runs from the first moment the call has a connection. */
		if (call->deadline == 0)
			call->deadline = now_ms() + call->timeout_ms;
		gen = c->gen;
		while (c->writing && c->gen == gen && !c->broken) {
			if (cond_wait_until(&c->state, &c->lock, call->deadline) == ETIMEDOUT &&
			    c->writing) {
				r = fail_timeout(m->name, call->timeout_ms, err);
				goto out;
			}
		}
		if (c->gen != gen || c->broken || c->fd == -1) {
			/* The connection went while we waited to write: nothing of ours was sent. */
			if (remaining_ms(call->deadline) == 0) {
				r = fail_timeout(m->name, call->timeout_ms, err);
				goto out;
			}
			continue;
		}
		c->writing = 1;
		call_register(c, call);
		fd = c->fd;
		(void)pthread_mutex_unlock(&c->lock);
		ctx.method = m->name;
		ctx.timeout_ms = call->timeout_ms;
		ctx.deadline = call->deadline;
		r = send_all(c, fd, frame, flen, &ctx, &sent, &serr);
		(void)pthread_mutex_lock(&c->lock);
		c->writing = 0;
		(void)pthread_cond_broadcast(&c->state);
		/* A reader may have failed the connection meanwhile and left its close to us. */
		conn_settle(c);
		if (r == 0)
			break;
		/* The connection may already have failed under us, with a better reason. */
		if (call->done && call->status != 0)
			serr = call->err;
		call_unregister(c, call);
		if (r == IO_TIMEOUT) {
			if (sent > 0) {
				/* Half a frame on the wire: nothing after it would parse. */
				(void)pcs_fail(&serr, PCS_UNAVAILABLE, "a call to pcsecretd at %s "
				    "timed out part-way through its request; the connection was "
				    "closed", c->path);
				conn_fail(c, gen, &serr);
			}
			r = fail_timeout(m->name, call->timeout_ms, err);
			goto out;
		}
		conn_fail(c, gen, &serr);
		/* Nothing sent (the daemon had closed an idle connection): safe to send again. */
		if (sent == 0 && !retried) {
			retried = 1;
			continue;
		}
		error_copy(err, &serr);
		r = -serr.code;
		goto out;
	}
	reply_deadline = now_ms() + call->timeout_ms + REPLY_GRACE_MS;
	if (reply_deadline > call->deadline)
		call->deadline = reply_deadline;
	*out = call;
	call = NULL;
	r = 0;
out:
	if (locked)
		(void)pthread_mutex_unlock(&c->lock);
	frame_free(frame, flen);
	call_free(call);
	return r;
}

int
pcs_rpc_finish(pcs_client *c, struct pcs_rpc_call *call, ProtobufCMessage **reply,
    pcs_error *err)
{
	Pcsecret__V1__Reply *rep = NULL;
	int r;

	if (reply != NULL)
		*reply = NULL;
	if (c == NULL || call == NULL || reply == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_rpc_finish: a required argument is "
		    "NULL");
		goto out;
	}
	(void)pthread_mutex_lock(&c->lock);
	while (!call->done && remaining_ms(call->deadline) > 0) {
		if (!c->reading && c->fd != -1 && !c->broken) {
			c->reading = 1;
			read_turn(c, call);
			continue;
		}
		call->waiting = 1;
		(void)cond_wait_until(&call->cond, &c->lock, call->deadline);
		call->waiting = 0;
	}
	call_unregister(c, call);
	/* Woken to take the read role but leaving instead (timed out): pass it on. */
	read_handoff(c);
	if (!call->done) {
		r = fail_timeout(call->m->name, call->timeout_ms, err);
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
		r = reply_open(c, call->m, rep, reply, err);
out:
	call_free(call);
	return r;
}

void
pcs_rpc_abandon(pcs_client *c, struct pcs_rpc_call *call)
{
	if (call == NULL)
		return;
	if (c != NULL) {
		(void)pthread_mutex_lock(&c->lock);
		call_unregister(c, call);
		(void)pthread_mutex_unlock(&c->lock);
	}
	call_free(call);
}

int
pcs_rpc_call(pcs_client *c, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply, pcs_error *err)
{
	struct pcs_rpc_call *call = NULL;
	int r;

	if (reply != NULL)
		*reply = NULL;
	if (reply == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_rpc_call: a required argument "
		    "is NULL");
	if ((r = pcs_rpc_start(c, method, req, &call, err)) != 0)
		return r;
	return pcs_rpc_finish(c, call, reply, err);
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

size_t
pcs_rpc_max_refs(const pcs_client *c)
{
	size_t n = atomic_load(&((pcs_client *)c)->max_refs);

	return n != 0 ? n : PCS_MAX_REFS_PER_CALL;
}

PCS_EXPORT int
pcs_set_max_refs_per_call(pcs_client *client, size_t max_refs, pcs_error *err)
{
	if (client == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_set_max_refs_per_call: client is "
		    "NULL");
	atomic_store(&client->max_refs, max_refs);
	return 0;
}

/* PCSECRET_SERVER_UID: a uid in decimal or a user name; NO_UID when unset or empty. */
static int
server_uid_get(uid_t *out, pcs_error *err)
{
	const char *s = getenv(SERVER_UID_ENV);
	struct passwd pw, *found = NULL;
	char *buf = NULL, *end;
	size_t size = 1024;
	unsigned long v;
	int e = 0, r;

	*out = NO_UID;
	if (s == NULL || s[0] == '\0')
		return 0;
	if (s[0] >= '0' && s[0] <= '9') {
		errno = 0;
		v = strtoul(s, &end, 10);
		/* Its text is not quoted: it came from the environment and may hold anything. */
		if (errno != 0 || *end != '\0' || v >= (unsigned long)NO_UID)
			return pcs_fail(err, PCS_INVALID_ARGUMENT, SERVER_UID_ENV " is not a uid "
			    "(0 to 4294967294) or a user name");
		*out = (uid_t)v;
		return 0;
	}
	for (;;) {
		if ((buf = malloc(size)) == NULL) {
			r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		if ((e = getpwnam_r(s, &pw, buf, size, &found)) != ERANGE || size >= 1048576)
			break;
		free(buf);
		buf = NULL;
		size *= 4;
	}
	if (found == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, SERVER_UID_ENV " names no user%s",
		    e != 0 ? " (the user database could not be read)" : "");
		goto out;
	}
	*out = pw.pw_uid;
	r = 0;
out:
	free(buf);
	return r;
}

/* The synchronisation objects of a client; undone by pcs_close. */
static int
client_sync_init(pcs_client *c, pcs_error *err)
{
	int r;

	if ((r = pthread_condattr_init(&c->condattr)) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot create the client's locks: error %d", r);
	/* Deadlines are CLOCK_MONOTONIC: a wall-clock jump must not stretch or cut a wait. */
	if ((r = pthread_condattr_setclock(&c->condattr, CLOCK_MONOTONIC)) != 0 ||
	    (r = pthread_mutex_init(&c->lock, NULL)) != 0) {
		(void)pthread_condattr_destroy(&c->condattr);
		return pcs_fail(err, PCS_INTERNAL, "cannot create the client's locks: error %d", r);
	}
	if ((r = pthread_cond_init(&c->state, &c->condattr)) != 0) {
		(void)pthread_mutex_destroy(&c->lock);
		(void)pthread_condattr_destroy(&c->condattr);
		return pcs_fail(err, PCS_INTERNAL, "cannot create the client's locks: error %d", r);
	}
	return 0;
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
	if ((r = server_uid_get(&c->server_uid, err)) != 0) {
		free(c);
		return r;
	}
	if ((r = client_sync_init(c, err)) != 0) {
		free(c);
		return r;
	}
	c->connect_timeout_ms = opts != NULL && opts->connect_timeout_ms > 0 ?
	    opts->connect_timeout_ms : CONNECT_TIMEOUT_DEFAULT_MS;
	c->call_timeout_ms = opts != NULL && opts->call_timeout_ms > 0 ?
	    opts->call_timeout_ms : CALL_TIMEOUT_DEFAULT_MS;
	c->next_call_id = 1;
	atomic_init(&c->max_refs, 0);
	atomic_init(&c->hellos, NULL);
	(void)pthread_mutex_lock(&c->lock);
	r = conn_ready(c, err);
	(void)pthread_mutex_unlock(&c->lock);
	if (r != 0)
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
	if (c->fd != -1)
		(void)close(c->fd);
	if (c->rbuf != NULL) {
		sodium_memzero(c->rbuf, c->rcap);
		free(c->rbuf);
	}
	for (node = atomic_load(&c->hellos); node != NULL; node = next) {
		next = node->next;
		protobuf_c_message_free_unpacked(&node->reply->base, &pbwipe_allocator);
		free(node);
	}
	(void)pthread_cond_destroy(&c->state);
	(void)pthread_mutex_destroy(&c->lock);
	(void)pthread_condattr_destroy(&c->condattr);
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
