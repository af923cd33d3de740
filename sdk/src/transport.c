/*
 * One descriptor to pcsecretd: connecting it, checking who serves it, frames out and Replies
 * in, each bounded by a deadline. The caller guarantees that nobody else uses the descriptor
 * or the read buffer while it is in here (session.c and mux.c say how), so nothing here locks.
 */
#include <errno.h>
#include <poll.h>
#include <pwd.h>
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
#include "methods.h"
#include "pbwipe.h"
#include "status.h"
#include "transport.h"

#define RBUF_INITIAL (64u * 1024u)
#define RBUF_MAX (FRAME_HEADER_LEN + FRAME_DEFAULT_MAX)
/* A full listen backlog makes a Unix connect fail with EAGAIN; retry this often. */
#define CONNECT_RETRY_MS 10
/* Names the daemon's uid when it is neither root nor the client's own (a number or a user). */
#define SERVER_UID_ENV "PCSECRET_SERVER_UID"

int64_t transport_now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int transport_remaining_ms(int64_t deadline)
{
	int64_t left = deadline - transport_now_ms();

	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

static const char *errstr(int e, char *buf, size_t size)
{
	/* GNU strerror_r (we build with _GNU_SOURCE): thread-safe and returns the text. */
	return strerror_r(e, buf, size);
}

/* Returns 1 when fd is ready, 0 at the deadline, or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd;
	int n;

	for (;;) {
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, transport_remaining_ms(deadline));
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

int transport_fail_timeout(const char *method, int timeout_ms, pcs_error *err)
{
	return pcs_fail(
	    err, PCS_DEADLINE_EXCEEDED, "call %s timed out after %d ms", method, timeout_ms);
}

static int fail_io(const char *path, const char *what, int e, pcs_error *err)
{
	char buf[128];

	return pcs_fail(err, PCS_UNAVAILABLE, "%s pcsecretd at %s: %s", what, path,
	    errstr(e, buf, sizeof(buf)));
}

static int status_code(int wire)
{
	return wire > PCS_OK && wire <= PCS_UNAUTHENTICATED ? wire : PCS_UNKNOWN;
}

static void rbuf_consume(struct transport_rbuf *rb, size_t n)
{
	memmove(rb->data, rb->data + n, rb->len - n);
	sodium_memzero(rb->data + (rb->len - n), n);
	rb->len -= n;
}

void transport_rbuf_clear(struct transport_rbuf *rb)
{
	if (rb->data != NULL)
		sodium_memzero(rb->data, rb->len);
	rb->len = 0;
}

void transport_rbuf_free(struct transport_rbuf *rb)
{
	if (rb->data != NULL) {
		sodium_memzero(rb->data, rb->cap);
		free(rb->data);
	}
	rb->data = NULL;
	rb->len = rb->cap = 0;
}

static int rbuf_reserve(struct transport_rbuf *rb, size_t need, pcs_error *err)
{
	uint8_t *nb;
	size_t ncap;

	if (need <= rb->cap)
		return 0;
	ncap = rb->cap == 0 ? RBUF_INITIAL : rb->cap;
	while (ncap < need)
		ncap *= 2;
	if (ncap > RBUF_MAX)
		ncap = RBUF_MAX;
	if ((nb = malloc(ncap)) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate a receive buffer of %zu bytes", ncap);
	/* Not realloc: it could leave an unwiped copy of received values behind. */
	if (rb->data != NULL) {
		memcpy(nb, rb->data, rb->len);
		sodium_memzero(rb->data, rb->cap);
		free(rb->data);
	}
	rb->data = nb;
	rb->cap = ncap;
	return 0;
}

static int connect_error(const char *path, int e, pcs_error *err)
{
	char buf[128];

	if (e == EACCES || e == EPERM)
		return pcs_fail(err, PCS_PERMISSION_DENIED,
		    "cannot connect to pcsecretd at %s: %s (the socket's owner, group and mode "
		    "decide who may connect)",
		    path, errstr(e, buf, sizeof(buf)));
	return pcs_fail(err, PCS_UNAVAILABLE, "cannot connect to pcsecretd at %s: %s", path,
	    errstr(e, buf, sizeof(buf)));
}

int transport_server_uid_get(uid_t *out, pcs_error *err)
{
	const char *s = getenv(SERVER_UID_ENV);
	struct passwd pw, *found = NULL;
	char *buf = NULL, *end;
	size_t size = 1024;
	unsigned long v;
	int e = 0, r;

	*out = TRANSPORT_NO_UID;
	if (s == NULL || s[0] == '\0')
		return 0;
	if (s[0] >= '0' && s[0] <= '9') {
		errno = 0;
		v = strtoul(s, &end, 10);
		/* Its text is not quoted: it came from the environment and may hold anything. */
		if (errno != 0 || *end != '\0' || v >= (unsigned long)TRANSPORT_NO_UID)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    SERVER_UID_ENV " is not a uid "
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

/*
 * Whoever owns the listening socket gets everything this client sends, values included, so
 * it must be the daemon: root, this process's own uid, or the uid PCSECRET_SERVER_UID names.
 * Anyone else got there first (a directory others may write to, a daemon that was down) and
 * is told nothing; the kernel's word (SO_PEERCRED: who called listen) is the only one taken.
 */
static int check_peer(const char *path, uid_t server_uid, int fd, pcs_error *err)
{
	struct ucred cred;
	socklen_t len = (socklen_t)sizeof(cred);
	char buf[128];

	memset(&cred, 0, sizeof(cred));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    len != (socklen_t)sizeof(cred))
		return pcs_fail(err, PCS_UNAVAILABLE, "cannot tell who serves %s: %s", path,
		    errstr(errno, buf, sizeof(buf)));
	if (cred.uid == 0 || cred.uid == geteuid() ||
	    (server_uid != TRANSPORT_NO_UID && cred.uid == server_uid))
		return 0;
	return pcs_fail(err, PCS_PERMISSION_DENIED,
	    "refusing %s: it is served by uid %u, not by "
	    "root, this process's uid %u or " SERVER_UID_ENV "; nothing was sent",
	    path, (unsigned)cred.uid, (unsigned)geteuid());
}

int transport_open(
    const char *path, uid_t server_uid, int64_t deadline, int timeout_ms, int *fdp, pcs_error *err)
{
	struct sockaddr_un sa;
	struct timespec pause;
	socklen_t slen;
	int fd = -1, e, soerr, w, r;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* CLOEXEC: pcrun execs the agent and must not hand it a connection to the daemon. */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		r = fail_io(path, "cannot create a socket for", errno, err);
		goto out;
	}
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, (socklen_t)sizeof(sa)) == 0)
			break;
		e = errno;
		if (e == EAGAIN) {
			if (transport_remaining_ms(deadline) == 0) {
				r = pcs_fail(err, PCS_UNAVAILABLE,
				    "cannot connect to pcsecretd at "
				    "%s: its listen queue stayed full for %d ms",
				    path, timeout_ms);
				goto out;
			}
			pause.tv_sec = 0;
			pause.tv_nsec = CONNECT_RETRY_MS * 1000000L;
			(void)nanosleep(&pause, NULL);
			continue;
		}
		/* An interrupted connect carries on in the background, like EINPROGRESS. */
		if (e != EINPROGRESS && e != EINTR) {
			r = connect_error(path, e, err);
			goto out;
		}
		if ((w = wait_fd(fd, POLLOUT, deadline)) == 0) {
			r = pcs_fail(err, PCS_UNAVAILABLE,
			    "cannot connect to pcsecretd at %s: timed out after %d ms", path,
			    timeout_ms);
			goto out;
		}
		if (w < 0) {
			r = connect_error(path, -w, err);
			goto out;
		}
		soerr = 0;
		slen = (socklen_t)sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) == -1)
			soerr = errno;
		if (soerr != 0) {
			r = connect_error(path, soerr, err);
			goto out;
		}
		break;
	}
	if ((r = check_peer(path, server_uid, fd, err)) != 0)
		goto out;
	*fdp = fd;
	fd = -1;
	r = 0;
out:
	if (fd != -1)
		(void)close(fd);
	return r;
}

int transport_send_all(const char *path, int fd, const uint8_t *buf, size_t len, int64_t deadline,
    size_t *sent, pcs_error *err)
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
			return fail_io(path, "lost the connection to", errno, err);
		if ((w = wait_fd(fd, POLLOUT, deadline)) == 0)
			return TRANSPORT_TIMEOUT;
		if (w < 0)
			return fail_io(path, "lost the connection to", -w, err);
	}
	return 0;
}

int transport_read_reply(struct transport_rbuf *rb, const char *path, int fd, int64_t deadline,
    Pcsecret__V1__Reply **rep, pcs_error *err)
{
	pcs_error perr;
	uint32_t blen = 0;
	size_t need;
	ssize_t n;
	int p, w, r;

	*rep = NULL;
	for (;;) {
		p = frame_peek(rb->data, rb->len, FRAME_DEFAULT_MAX, &blen, &perr);
		if (p == 1)
			break;
		if (p < 0)
			return pcs_fail(err, PCS_INTERNAL, "pcsecretd at %s sent a bad frame: %s",
			    path, perr.message);
		need = FRAME_HEADER_LEN;
		if (rb->len >= FRAME_HEADER_LEN)
			need = FRAME_HEADER_LEN +
			    ((size_t)rb->data[0] << 24 | (size_t)rb->data[1] << 16 |
			        (size_t)rb->data[2] << 8 | rb->data[3]);
		if (need < RBUF_INITIAL)
			need = RBUF_INITIAL;
		if ((r = rbuf_reserve(rb, need, err)) != 0)
			return r;
		if ((w = wait_fd(fd, POLLIN, deadline)) == 0)
			return TRANSPORT_TIMEOUT;
		if (w < 0)
			return fail_io(path, "lost the connection to", -w, err);
		n = read(fd, rb->data + rb->len, rb->cap - rb->len);
		if (n > 0) {
			rb->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return pcs_fail(err, PCS_UNAVAILABLE,
			    "pcsecretd at %s closed the "
			    "connection%s",
			    path, rb->len > 0 ? " in the middle of a frame" : "");
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return fail_io(path, "lost the connection to", errno, err);
	}
	*rep = pcsecret__v1__reply__unpack(&pbwipe_allocator, blen, rb->data + FRAME_HEADER_LEN);
	rbuf_consume(rb, FRAME_HEADER_LEN + blen);
	if (*rep == NULL)
		return pcs_fail(err, PCS_INTERNAL,
		    "pcsecretd at %s sent a reply that is not a "
		    "pcsecret.v1.Reply",
		    path);
	return 0;
}

int transport_conn_error(const Pcsecret__V1__Reply *rep, pcs_error *err)
{
	return pcs_fail(err, rep->status == 0 ? PCS_INTERNAL : status_code((int)rep->status), "%s",
	    rep->message[0] != '\0' ? rep->message : "pcsecretd reported a connection error");
}

int transport_reply_open(const char *path, const ProtobufCMethodDescriptor *m,
    Pcsecret__V1__Reply *rep, ProtobufCMessage **reply, pcs_error *err)
{
	static const uint8_t empty[1];
	int r;

	if (rep->status != PCSECRET__V1__STATUS_CODE__OK) {
		r = pcs_fail(err, status_code((int)rep->status), "%s",
		    rep->message[0] != '\0' ? rep->message : "pcsecretd gave no message");
		goto out;
	}
	*reply = protobuf_c_message_unpack(m->output, &pbwipe_allocator, rep->reply.len,
	    rep->reply.data != NULL ? rep->reply.data : empty);
	if (*reply == NULL) {
		r = pcs_fail(err, PCS_INTERNAL,
		    "pcsecretd at %s sent a %s reply that does not "
		    "decode as %s",
		    path, m->name, m->output->name);
		goto out;
	}
	r = 0;
out:
	protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
	return r;
}

int transport_call_frame(const ProtobufCMethodDescriptor *m, uint32_t method_id,
    const ProtobufCMessage *req, uint64_t call_id, int timeout_ms, uint8_t **frame, size_t *flen,
    pcs_error *err)
{
	Pcsecret__V1__Call call = PCSECRET__V1__CALL__INIT;
	uint8_t *reqbuf = NULL;
	size_t reqlen;
	int r;

	reqlen = protobuf_c_message_get_packed_size(req);
	if ((reqbuf = malloc(reqlen > 0 ? reqlen : 1)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate %zu bytes for a %s "
		    "request",
		    reqlen, m->name);
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

const ProtobufCMethodDescriptor *transport_method_find(const char *name, uint32_t *method_id)
{
	const ProtobufCServiceDescriptor *svc = &pcsecret__v1__pc_secret__descriptor;
	const struct method *m;

	/* The wire id is the method table's (common/methods.h), the one the daemon reads. */
	if ((m = method_by_name(name)) == NULL || m->id > svc->n_methods)
		return NULL;
	*method_id = m->id;
	return &svc->methods[m->id - 1];
}
