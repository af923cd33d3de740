/*
 * wire: the raw-protobuf client and its helpers (wire.h). Shared by test_server_*, test_dos
 * and test_hostile_input, which used to carry copies of it that drifted apart.
 */
#include "wire.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "it.h"
#include "pgtest.h"

/* ---- clock ---- */

uint64_t wire_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void wire_sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- frames ---- */

uint32_t wire_mid(const char *name)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
	    d, name);

	if (m == NULL) {
		fprintf(stderr, "no method %s\n", name);
		abort();
	}
	return (uint32_t)(m - d->methods) + 1;
}

uint8_t *wire_call_frame(uint64_t call_id, uint32_t method_id, const char *method,
    uint32_t timeout_ms, const ProtobufCMessage *req, size_t *len)
{
	Pcsecret__V1__Call call = PCSECRET__V1__CALL__INIT;
	uint8_t *body = NULL, *frame = NULL;
	size_t blen = req ? protobuf_c_message_get_packed_size(req) : 0;
	pcs_error err;

	if (blen > 0) {
		if ((body = malloc(blen)) == NULL)
			return NULL;
		protobuf_c_message_pack(req, body);
	}
	call.call_id = call_id;
	call.method_id = method_id;
	call.method = (char *)(method ? method : "");
	call.timeout_ms = timeout_ms;
	call.request.data = body;
	call.request.len = blen;
	/* Far above the daemon's max_frame: the tests build oversized frames on purpose. */
	if (frame_pack(&call.base, 64u * 1024 * 1024, &frame, len, &err) != 0)
		frame = NULL;
	free(body);
	return frame;
}

uint8_t *wire_hello_frame(uint64_t call_id, uint32_t timeout_ms, size_t *len)
{
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;

	h.protocol_version = 1;
	h.client = program_invocation_short_name;
	return wire_call_frame(call_id, wire_mid("Hello"), NULL, timeout_ms, &h.base, len);
}

size_t wire_raw_frame(uint8_t *out, uint32_t len, const void *body, size_t blen)
{
	frame_put_n32(out, len);
	if (blen > 0)
		memcpy(out + 4, body, blen);
	return 4 + blen;
}

size_t wire_raw_call(uint8_t *out, size_t cap, uint64_t id, uint32_t method_id, const char *method,
    size_t mlen, uint32_t timeout_ms, const uint8_t *req, size_t rlen)
{
	Pcsecret__V1__Call call = PCSECRET__V1__CALL__INIT;
	size_t n;

	call.call_id = id;
	call.method_id = method_id;
	call.method = (char *)"";
	call.timeout_ms = timeout_ms;
	call.request.data = (uint8_t *)(uintptr_t)req;
	call.request.len = rlen;
	n = protobuf_c_message_get_packed_size(&call.base);
	if (n + mlen + 16 > cap || mlen >= 128)
		abort();
	protobuf_c_message_pack(&call.base, out + 4);
	if (mlen > 0) {
		out[4 + n++] = 0x12;          /* field 2 (method), length-delimited */
		out[4 + n++] = (uint8_t)mlen; /* one byte of varint: < 128 */
		memcpy(out + 4 + n, method, mlen);
		n += mlen;
	}
	frame_put_n32(out, (uint32_t)n);
	return 4 + n;
}

int wire_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t end = wire_now_ms() + 15000;

	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, b, n);
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = { fd, POLLOUT, 0 };
			if (wire_now_ms() >= end)
				return -1;
			poll(&pf, 1, 100);
			continue;
		}
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- a client connection ---- */

int wire_connect(const char *path, int nonblock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	if (nonblock)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

int wire_open(struct wire *w, const char *path)
{
	memset(w, 0, sizeof(*w));
	w->fd = wire_connect(path, 0);
	return w->fd >= 0 ? 0 : -1;
}

void wire_close(struct wire *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->buf);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

int wire_send_call(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
    const ProtobufCMessage *req)
{
	size_t len;
	uint8_t *f = wire_call_frame(id, method_id, NULL, timeout_ms, req, &len);
	int r;

	if (f == NULL)
		return -1;
	r = wire_write_all(w->fd, f, len);
	frame_free(f, len);
	return r;
}

int wire_fill(struct wire *w, int timeout_ms)
{
	struct pollfd pf = { w->fd, POLLIN, 0 };
	ssize_t n;
	int pr;

	if (w->cap - w->len < 65536) {
		size_t ncap = w->cap ? w->cap * 2 : 131072;
		uint8_t *p = realloc(w->buf, ncap);
		if (p == NULL)
			return -2;
		w->buf = p;
		w->cap = ncap;
	}
	while ((pr = poll(&pf, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (pr == 0)
		return -1;
	n = recv(w->fd, w->buf + w->len, w->cap - w->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 1;
	if (n < 0 && errno == ECONNRESET)
		return 0;
	if (n < 0)
		return -2;
	if (n == 0)
		return 0;
	w->len += (size_t)n;
	w->received += (size_t)n;
	return 1;
}

int wire_take(struct wire *w, Pcsecret__V1__Reply **out)
{
	uint32_t n;

	if (w->len < 4)
		return 0;
	n = (uint32_t)w->buf[0] << 24 | (uint32_t)w->buf[1] << 16 | (uint32_t)w->buf[2] << 8 |
	    w->buf[3];
	if (w->len - 4 < n)
		return 0;
	*out = pcsecret__v1__reply__unpack(NULL, n, w->buf + 4);
	memmove(w->buf, w->buf + 4 + n, w->len - 4 - n);
	w->len -= 4 + n;
	return *out != NULL ? 1 : -2;
}

int wire_reply(struct wire *w, int timeout_ms, Pcsecret__V1__Reply **out)
{
	uint64_t end = wire_now_ms() + (uint64_t)timeout_ms;
	int r;

	*out = NULL;
	for (;;) {
		if ((r = wire_take(w, out)) != 0)
			return r;
		uint64_t now = wire_now_ms();
		if (now >= end)
			return -1;
		if ((r = wire_fill(w, (int)(end - now))) <= 0)
			return r;
	}
}

int wire_wait_closed(struct wire *w, int timeout_ms)
{
	uint64_t end = wire_now_ms() + (uint64_t)timeout_ms;
	int r;

	for (;;) {
		uint64_t now = wire_now_ms();
		if (now >= end)
			return 0;
		w->len = 0;
		if ((r = wire_fill(w, (int)(end - now))) == 0 || r == -2)
			return 1;
	}
}

int wire_rpc(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
    const ProtobufCMessage *req, Pcsecret__V1__Reply **out, int wait_ms)
{
	Pcsecret__V1__Reply *r = NULL;
	int st;

	if (out != NULL)
		*out = NULL;
	if (wire_send_call(w, id, method_id, timeout_ms, req) != 0)
		return -1;
	if (wire_reply(w, wait_ms, &r) != 1)
		return -1;
	if (r->call_id != id) {
		fprintf(stderr, "reply for call %" PRIu64 " while waiting for %" PRIu64 "\n",
		    (uint64_t)r->call_id, id);
		pcsecret__v1__reply__free_unpacked(r, NULL);
		return -1;
	}
	st = (int)r->status;
	if (out != NULL)
		*out = r;
	else
		pcsecret__v1__reply__free_unpacked(r, NULL);
	return st;
}

int wire_hello_instance(struct wire *w, uint64_t id, char *instance_id, size_t size)
{
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;
	int st;

	h.protocol_version = 1;
	h.client = program_invocation_short_name;
	st = wire_rpc(w, id, wire_mid("Hello"), 0, &h.base, &r, 10000);
	if (st == PCSECRET__V1__STATUS_CODE__OK && instance_id != NULL) {
		Pcsecret__V1__HelloReply *hr = pcsecret__v1__hello_reply__unpack(
		    NULL, r->reply.len, r->reply.data);
		if (hr != NULL) {
			snprintf(instance_id, size, "%s", hr->instance_id);
			pcsecret__v1__hello_reply__free_unpacked(hr, NULL);
		}
	}
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	return st;
}

int wire_hello(struct wire *w, uint64_t id) { return wire_hello_instance(w, id, NULL, 0); }

int wire_session(struct wire *w, const char *path)
{
	if (wire_open(w, path) != 0)
		return -1;
	if (wire_hello(w, 1) != PCSECRET__V1__STATUS_CODE__OK) {
		wire_close(w);
		return -1;
	}
	return 0;
}

/* ---- Resolve requests ---- */

void wire_resolve_init(struct wire_resolve *m, const char *name, size_t n)
{
	pcsecret__v1__resolve_request__init(&m->req);
	pcsecret__v1__secret_ref__init(&m->ref);
	m->ref.company = (char *)"acme";
	m->ref.name = (char *)name;
	m->refs = calloc(n, sizeof(*m->refs));
	for (size_t i = 0; m->refs != NULL && i < n; i++)
		m->refs[i] = &m->ref;
	m->req.refs = m->refs;
	m->req.n_refs = m->refs != NULL ? n : 0;
}

void wire_resolve_free(struct wire_resolve *m) { free(m->refs); }

int wire_resolve_ok(const Pcsecret__V1__Reply *r, size_t n, const uint8_t *want, size_t wlen)
{
	Pcsecret__V1__ResolveReply *rr;
	int ok;

	if (r->status != PCSECRET__V1__STATUS_CODE__OK)
		return 0;
	if ((rr = pcsecret__v1__resolve_reply__unpack(NULL, r->reply.len, r->reply.data)) == NULL)
		return 0;
	ok = rr->n_values == n;
	for (size_t i = 0; ok && i < n; i++)
		ok = rr->values[i]->value.len == wlen &&
		    memcmp(rr->values[i]->value.data, want, wlen) == 0;
	pcsecret__v1__resolve_reply__free_unpacked(rr, NULL);
	return ok;
}

/* ---- clients forked as other uids ---- */

/* Load tests open hundreds of connections per client. */
static void raise_nofile(rlim_t n)
{
	struct rlimit rl = { n, n };

	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int wire_child_start(struct wire_child *ch, uid_t uid, wire_child_fn fn, void *arg)
{
	int p[2];

	/* A child that never started is one wire_child_wait reports as failed, not waits for. */
	ch->pid = -1;
	ch->fd = -1;
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	if ((ch->pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (ch->pid == 0) {
		FILE *out;
		gid_t g = IT_GROUP;
		close(p[0]);
		raise_nofile(4096);
		if (uid != 0 &&
		    (setgroups(1, &g) != 0 || setgid((gid_t)uid) != 0 || setuid(uid) != 0))
			_exit(3);
		out = fdopen(p[1], "w");
		if (out == NULL)
			_exit(4);
		int r = fn(arg, out);
		fclose(out);
		_exit(r == 0 ? 0 : 1);
	}
	close(p[1]);
	ch->fd = p[0];
	return 0;
}

int wire_child_wait(struct wire_child *ch, char *msg, size_t size)
{
	size_t n = 0;
	ssize_t r;
	int status;

	msg[0] = '\0';
	/* waitpid(-1) would reap any child at all. */
	if (ch->pid <= 0 || ch->fd < 0)
		return -1;
	while (n + 1 < size && (r = read(ch->fd, msg + n, size - 1 - n)) > 0)
		n += (size_t)r;
	msg[n] = '\0';
	close(ch->fd);
	ch->fd = -1;
	if (waitpid(ch->pid, &status, 0) != ch->pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int wire_child_report(FILE *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	return 1;
}

/* ---- a PostgreSQL table held locked ---- */

/* The lock currently held, so a failed test cannot leave the table locked for the next. */
static struct wire_lock *held_lock;

int wire_lock_table(struct wire_lock *l, const char *conninfo, const char *table)
{
	int in[2];
	char cmd[160], sql[400], *held;
	uint64_t end;

	if (pipe2(in, O_CLOEXEC) != 0)
		return -1;
	if ((l->pid = fork()) == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(in[0], STDIN_FILENO);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		execlp("psql", "psql", "-X", "-q", "-d", conninfo, "-v", "ON_ERROR_STOP=1",
		    (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	l->in = in[1];
	snprintf(cmd, sizeof(cmd), "BEGIN;\nLOCK TABLE %s IN ACCESS EXCLUSIVE MODE;\n", table);
	if (wire_write_all(l->in, cmd, strlen(cmd)) != 0)
		return -1;
	/*
	 * Held once PostgreSQL shows it granted, in this database: tests running at the same time
	 * lock tables of the same names in theirs.
	 */
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON "
	    "c.oid = l.relation WHERE c.relname = '%s' AND l.mode = 'AccessExclusiveLock' AND "
	    "l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = "
	    "current_database())",
	    table);
	end = wire_now_ms() + 10000;
	while (wire_now_ms() < end) {
		int n = (held = pgtest_query_text(conninfo, sql)) != NULL ? atoi(held) : 0;
		free(held);
		if (n > 0) {
			held_lock = l;
			return 0;
		}
		wire_sleep_ms(20);
	}
	return -1;
}

int wire_lock_release(struct wire_lock *l)
{
	const char *cmd = "COMMIT;\n\\q\n";
	int status;

	held_lock = NULL;
	if (wire_write_all(l->in, cmd, strlen(cmd)) != 0)
		return -1;
	close(l->in);
	if (waitpid(l->pid, &status, 0) != l->pid)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

void wire_lock_drop(void)
{
	if (held_lock != NULL) {
		close(held_lock->in);
		kill(held_lock->pid, SIGTERM);
		waitpid(held_lock->pid, NULL, 0);
		held_lock = NULL;
	}
}

/* ---- the daemon seen from /proc ---- */

long wire_proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((fp = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(fp);
	return kb;
}

int wire_proc_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

long wire_proc_cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long utime, stime;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fp = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	/* Fields after the command name (which may hold spaces): state is field 3, utime 14. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) !=
	        2)
		return -1;
	return (long)((utime + stime) * 1000u / (unsigned long)sysconf(_SC_CLK_TCK));
}

int wire_fd_count_settles(pid_t pid, int want, unsigned timeout_ms)
{
	uint64_t end = wire_now_ms() + timeout_ms;
	int n;

	while ((n = wire_proc_fd_count(pid)) > want && wire_now_ms() < end)
		wire_sleep_ms(20);
	return n;
}

int wire_fd_count_stable(pid_t pid)
{
	int n = wire_proc_fd_count(pid), m;

	for (int i = 0; i < 30; i++) {
		wire_sleep_ms(100);
		if ((m = wire_proc_fd_count(pid)) == n)
			return n;
		n = m;
	}
	return n;
}

/* ---- a connection made as another uid ---- */

/* Handed from wire_child_start's child: the descriptor travels over this socket. */
struct opener {
	const char *path;
	int sock;
};

static int send_fd(int sock, int fd)
{
	char byte = 'c';
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m;
	struct cmsghdr *c;

	memset(&u, 0, sizeof(u));
	memset(&m, 0, sizeof(m));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.buf;
	m.msg_controllen = sizeof(u.buf);
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m;
	struct cmsghdr *c;
	int fd = -1;

	memset(&u, 0, sizeof(u));
	memset(&m, 0, sizeof(m));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.buf;
	m.msg_controllen = sizeof(u.buf);
	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&m);
	if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* In the child, as the uid: connect, and hand the connection over. */
static int child_connect(void *arg, FILE *out)
{
	struct opener *o = arg;
	int fd = wire_connect(o->path, 0);

	if (fd < 0)
		return wire_child_report(out, "connect %s: %s", o->path, strerror(errno));
	if (send_fd(o->sock, fd) != 0)
		return wire_child_report(out, "sending the descriptor: %s", strerror(errno));
	close(fd);
	return 0;
}

int wire_connect_as(const char *path, uid_t uid, char *msg, size_t size)
{
	struct wire_child ch;
	struct opener o = { path, -1 };
	int sv[2], fd;

	snprintf(msg, size, "socketpair: %s", strerror(errno));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	o.sock = sv[1];
	if (wire_child_start(&ch, uid, child_connect, &o) != 0) {
		snprintf(msg, size, "cannot start a process as uid %u", (unsigned)uid);
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	fd = recv_fd(sv[0]);
	close(sv[0]);
	if (wire_child_wait(&ch, msg, size) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}
