/*
 * The server core under real load and bad input: the real pcsecretd on its own database of
 * the private cluster, driven over raw Unix sockets with frames built by protobuf-c.
 * Pipelining, every limit, deadlines while PostgreSQL is blocked, idle and partial-frame
 * timeouts, slow readers, fairness, accept() at the descriptor limit, protocol errors, the
 * signals, and descriptor/memory growth.
 *
 * Tests run in order and share the main daemon D; a few start their own with other settings.
 * Clients that must be an agent are forked and setuid to IT_AGENT_UID (needs root, like the
 * end-to-end test; skipped otherwise). Under AddressSanitizer the load is scaled down
 * (PCS_SERVER_TEST_SCALE, set by main when it detects the sanitizer).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "frame.h"
#include "it.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"

#if defined(__SANITIZE_ADDRESS__)
#define IT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IT_ASAN 1
#endif
#endif
#ifndef IT_ASAN
#define IT_ASAN 0
#endif

#define VAL1 "server-test-value-1"
#define BIG_LEN 60000
#define ST_OK PCSECRET__V1__STATUS_CODE__OK

static struct it_daemon D, T, E, S;
static char conninfo[512];
static char scratch[64];
static char instance_id[64];
static unsigned scale = 1;   /* load divisor: 1 normally, more under ASan */

/* ---- small utilities ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int need_root(void)
{
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root to run clients as other uids and read /proc\n");
		return 0;
	}
	return 1;
}

static uint32_t mid(const char *name)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(d, name);

	if (m == NULL) {
		fprintf(stderr, "no method %s\n", name);
		abort();
	}
	return (uint32_t)(m - d->methods) + 1;
}

/* VmRSS of pid in KiB, -1 when unknown. */
static long proc_rss_kb(pid_t pid)
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

static int proc_fd_count(pid_t pid)
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

/* User + system CPU time of pid in milliseconds, -1 when unknown. */
static long proc_cpu_ms(pid_t pid)
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
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
	    &stime) != 2)
		return -1;
	return (long)((utime + stime) * 1000u / (unsigned long)sysconf(_SC_CLK_TCK));
}

/* Waits until the daemon's descriptor count is at most want; returns the last count. */
static int fd_count_settles(pid_t pid, int want, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	int n;

	while ((n = proc_fd_count(pid)) > want && now_ms() < end)
		sleep_ms(20);
	return n;
}

/* The descriptor count once connections that are closing have gone (equal 100 ms apart). */
static int fd_count_stable(pid_t pid)
{
	int n = proc_fd_count(pid), m;

	for (int i = 0; i < 30; i++) {
		sleep_ms(100);
		if ((m = proc_fd_count(pid)) == n)
			return n;
		n = m;
	}
	return n;
}

static int file_has(const char *path, const char *needle)
{
	return it_file_contains(path, needle, strlen(needle)) == 1;
}

/* ---- frames ---- */

/* A Call frame (header + body) in a new buffer; free with frame_free. */
static uint8_t *call_frame(uint64_t call_id, uint32_t method_id, const char *method,
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
	if (frame_pack(&call.base, 64u * 1024 * 1024, &frame, len, &err) != 0)
		frame = NULL;
	free(body);
	return frame;
}

/* A raw frame around arbitrary bytes. */
static size_t raw_frame(uint8_t *out, uint32_t len, const void *body, size_t blen)
{
	frame_put_n32(out, len);
	if (blen > 0)
		memcpy(out + 4, body, blen);
	return 4 + blen;
}

/* Writes everything within 15 s (the daemon may legitimately stop reading: backpressure). */
static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t end = now_ms() + 15000;

	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, b, n);
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = { fd, POLLOUT, 0 };
			if (now_ms() >= end)
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

/* ---- a client connection with its own reply buffer ---- */

struct wire {
	int fd;
	uint8_t *buf;
	size_t len, cap;
	size_t received;   /* bytes read in total */
};

static int sock_connect(const char *path, int nonblock)
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

static int wire_open(struct wire *w, const char *path)
{
	memset(w, 0, sizeof(*w));
	w->fd = sock_connect(path, 0);
	return w->fd >= 0 ? 0 : -1;
}

static void wire_close(struct wire *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->buf);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

static int wire_send_call(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
    const ProtobufCMessage *req)
{
	size_t len;
	uint8_t *f = call_frame(id, method_id, NULL, timeout_ms, req, &len);
	int r;

	if (f == NULL)
		return -1;
	r = write_all(w->fd, f, len);
	frame_free(f, len);
	return r;
}

/* Reads once (up to timeout). 1 got bytes, 0 EOF, -1 timeout, -2 error. */
static int wire_fill(struct wire *w, int timeout_ms)
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

/* A whole buffered reply, if any: 1 and *out, 0 none, -2 malformed. */
static int wire_take(struct wire *w, Pcsecret__V1__Reply **out)
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

/* Next reply: 1 (*out set), 0 EOF, -1 timeout, -2 error or a malformed frame. */
static int wire_reply(struct wire *w, int timeout_ms, Pcsecret__V1__Reply **out)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int r;

	*out = NULL;
	for (;;) {
		if ((r = wire_take(w, out)) != 0)
			return r;
		uint64_t now = now_ms();
		if (now >= end)
			return -1;
		if ((r = wire_fill(w, (int)(end - now))) <= 0)
			return r;
	}
}

/* Waits until the daemon hangs up, discarding data: 1 closed, 0 still open at timeout. */
static int wire_wait_closed(struct wire *w, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int r;

	for (;;) {
		uint64_t now = now_ms();
		if (now >= end)
			return 0;
		w->len = 0;
		if ((r = wire_fill(w, (int)(end - now))) == 0 || r == -2)
			return 1;
	}
}

/* One call and its reply. Returns the status, or -1 when no reply came. */
static int wire_rpc(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
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

static int wire_hello(struct wire *w, uint64_t id)
{
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;
	int st;

	h.protocol_version = 1;
	h.client = (char *)"test_server";
	st = wire_rpc(w, id, mid("Hello"), 0, &h.base, &r, 10000);
	if (st == ST_OK && instance_id[0] == '\0') {
		Pcsecret__V1__HelloReply *hr = pcsecret__v1__hello_reply__unpack(NULL, r->reply.len,
		    r->reply.data);
		if (hr != NULL) {
			snprintf(instance_id, sizeof(instance_id), "%s", hr->instance_id);
			pcsecret__v1__hello_reply__free_unpacked(hr, NULL);
		}
	}
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	return st;
}

/* Connects and says Hello; the daemon must answer OK. */
static int wire_session(struct wire *w, const char *path)
{
	if (wire_open(w, path) != 0)
		return -1;
	if (wire_hello(w, 1) != ST_OK) {
		wire_close(w);
		return -1;
	}
	return 0;
}

static int list_companies(struct wire *w, uint64_t id)
{
	Pcsecret__V1__ListCompaniesRequest q = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;

	return wire_rpc(w, id, mid("ListCompanies"), 0, &q.base, NULL, 10000);
}

/* A fresh admin connection: Hello and one call work. */
static int daemon_serves(const char *path)
{
	struct wire w;
	int ok;

	if (wire_session(&w, path) != 0)
		return 0;
	ok = list_companies(&w, 2) == ST_OK;
	wire_close(&w);
	return ok;
}

/* Builds a Resolve of n refs to acme/<name> latest. */
struct resolve_msg {
	Pcsecret__V1__ResolveRequest req;
	Pcsecret__V1__SecretRef ref;
	Pcsecret__V1__SecretRef **refs;
};

static void resolve_init(struct resolve_msg *m, const char *name, size_t n)
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

static void resolve_free(struct resolve_msg *m)
{
	free(m->refs);
}

/* 1 when r is an OK Resolve reply with n values equal to want. */
static int resolve_ok(const Pcsecret__V1__Reply *r, size_t n, const uint8_t *want, size_t wlen)
{
	Pcsecret__V1__ResolveReply *rr;
	int ok;

	if (r->status != ST_OK)
		return 0;
	if ((rr = pcsecret__v1__resolve_reply__unpack(NULL, r->reply.len, r->reply.data)) == NULL)
		return 0;
	ok = rr->n_values == n;
	for (size_t i = 0; ok && i < n; i++)
		ok = rr->values[i]->value.len == wlen && memcmp(rr->values[i]->value.data, want,
		    wlen) == 0;
	pcsecret__v1__resolve_reply__free_unpacked(rr, NULL);
	return ok;
}

static uint8_t big_value[BIG_LEN];

static void big_fill(void)
{
	for (size_t i = 0; i < BIG_LEN; i++)
		big_value[i] = (uint8_t)('a' + i % 26);
}

/* ---- forked clients ---- */

/*
 * A client process: fn runs as uid (0 = root) with a raised descriptor limit and returns 0 on
 * success; what it writes to out is the failure reason the parent prints.
 */
typedef int (*child_fn)(void *arg, FILE *out);

struct child {
	pid_t pid;
	int fd;   /* read end of the child's report */
};

static void raise_nofile(rlim_t n)
{
	struct rlimit rl = { n, n };

	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int child_start(struct child *ch, uid_t uid, child_fn fn, void *arg)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	if ((ch->pid = fork()) < 0)
		return -1;
	if (ch->pid == 0) {
		FILE *out;
		gid_t g = IT_GROUP;
		close(p[0]);
		raise_nofile(4096);
		if (uid != 0 && (setgroups(1, &g) != 0 || setgid((gid_t)uid) != 0 ||
		    setuid(uid) != 0))
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

/* Waits for the child; returns its exit status (-1 on a signal), its report in msg. */
static int child_wait(struct child *ch, char *msg, size_t size)
{
	size_t n = 0;
	ssize_t r;
	int status;

	while (n + 1 < size && (r = read(ch->fd, msg + n, size - 1 - n)) > 0)
		n += (size_t)r;
	msg[n] = '\0';
	close(ch->fd);
	if (waitpid(ch->pid, &status, 0) != ch->pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define CHILD_OK(ch)                                                                   \
	do {                                                                               \
		char msg_[2048];                                                               \
		int st_ = child_wait(ch, msg_, sizeof(msg_));                                  \
		if (st_ != 0)                                                                  \
			fail_msg("client process failed (%d): %s", st_, msg_);                     \
	} while (0)

static int child_report(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int child_report(FILE *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	return 1;
}

/* A table lock held by psql in an open transaction until lock_release. */
struct table_lock {
	pid_t pid;
	int in;   /* psql's standard input: the transaction stays open until COMMIT */
};

/* The lock currently held, so a failed test cannot leave the table locked for the next. */
static struct table_lock *held_lock;

static int lock_table(struct table_lock *l, const char *table)
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
	if (write_all(l->in, cmd, strlen(cmd)) != 0)
		return -1;
	/* Held once PostgreSQL shows it granted. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_locks l JOIN pg_class c ON "
	    "c.oid = l.relation WHERE c.relname = '%s' AND l.mode = 'AccessExclusiveLock' AND "
	    "l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = "
	    "current_database())", table);
	end = now_ms() + 10000;
	while (now_ms() < end) {
		int n = (held = pgtest_query_text(conninfo, sql)) != NULL ? atoi(held) : 0;
		free(held);
		if (n > 0) {
			held_lock = l;
			return 0;
		}
		sleep_ms(20);
	}
	return -1;
}

static int lock_release(struct table_lock *l)
{
	const char *cmd = "COMMIT;\n\\q\n";
	int status;

	held_lock = NULL;
	if (write_all(l->in, cmd, strlen(cmd)) != 0)
		return -1;
	close(l->in);
	if (waitpid(l->pid, &status, 0) != l->pid)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---- set-up ---- */

static int setup(void **state)
{
	struct it_daemon_opts o = { 0 };
	/*
	 * One uid opens 1,000 connections before any has said Hello (the load test): the
	 * per-uid connection limits are raised here and tested in test_dos.
	 */
	const char *args[] = { "--max-connections", "1100", "--max-output", "1048576",
		"--max-conns-per-uid", "1100", "--max-conns-unknown-per-uid", "1100", NULL };

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (getenv("PCS_SERVER_TEST_SCALE") != NULL)
		scale = (unsigned)atoi(getenv("PCS_SERVER_TEST_SCALE"));
	if (scale == 0)
		scale = 1;
	big_fill();
	snprintf(scratch, sizeof(scratch), "/tmp/pcs-it-srv-XXXXXX");
	if (mkdtemp(scratch) == NULL || chmod(scratch, 0777) != 0)
		return -1;
	if (it_database("it_server", conninfo, sizeof(conninfo)) != 0)
		return -1;
	if (IT_ASAN) {
		/*
		 * The daemons inherit this. ASan's quarantine keeps up to 256 MB of freed memory
		 * resident, which would hide or fake growth; a small one still catches recent
		 * use-after-free and keeps the memory checks meaningful.
		 */
		const char *prev = getenv("ASAN_OPTIONS");
		char opts[512];
		snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4", prev ? prev : "",
		    prev && *prev ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
	}
	o.args = args;
	o.nofile = 4096;
	return it_daemon_start_opts(&D, conninfo, NULL, &o);
}

/* After each test: a lock a failed test still holds is dropped (psql killed: rollback). */
static int after_test(void **state)
{
	(void)state;
	if (held_lock != NULL) {
		close(held_lock->in);
		kill(held_lock->pid, SIGTERM);
		waitpid(held_lock->pid, NULL, 0);
		held_lock = NULL;
	}
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	it_daemon_cleanup(&D);
	it_daemon_cleanup(&T);
	it_daemon_cleanup(&E);
	it_daemon_cleanup(&S);
	if (strncmp(scratch, "/tmp/pcs-it-srv-", 16) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", scratch);
	}
	return 0;
}

static int create_secret(struct wire *w, uint64_t id, const char *name, const uint8_t *v,
    size_t len)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)(uintptr_t)v;
	q.value.len = len;
	return wire_rpc(w, id, mid("CreateSecret"), 0, &q.base, NULL, 10000);
}

static int set_env(struct wire *w, uint64_t id, const char *env, const char *secret)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)secret;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	return wire_rpc(w, id, mid("SetAgentEnv"), 0, &q.base, NULL, 10000);
}

/* acme, acme/k1 and acme/big, agent acme/bot (IT_AGENT_UID) granted both; over raw frames. */
static void test_setup_data(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	struct wire w;

	(void)state;
	assert_int_equal(wire_session(&w, D.socket), 0);
	assert_true(instance_id[0] != '\0');
	cc.name = (char *)"acme";
	assert_int_equal(wire_rpc(&w, 2, mid("CreateCompany"), 0, &cc.base, NULL, 10000), ST_OK);
	assert_int_equal(create_secret(&w, 3, "k1", (const uint8_t *)VAL1, strlen(VAL1)), ST_OK);
	assert_int_equal(create_secret(&w, 4, "big", big_value, BIG_LEN), ST_OK);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = IT_AGENT_UID;
	assert_int_equal(wire_rpc(&w, 5, mid("CreateAgent"), 0, &ca.base, NULL, 10000), ST_OK);
	assert_int_equal(set_env(&w, 6, "K1", "k1"), ST_OK);
	assert_int_equal(set_env(&w, 7, "BIG", "big"), ST_OK);
	wire_close(&w);
}

/* ---- pipelining ---- */

/*
 * 300 calls of four kinds in one write, with scattered call ids: every call id comes back
 * exactly once with the status its call deserves.
 */
static void test_pipelining_matched_by_call_id(void **state)
{
	enum { N = 300 };
	Pcsecret__V1__ListCompaniesRequest lc = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	Pcsecret__V1__DescribeSecretRequest ds = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__DescribeSecretRequest dn = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__CreateCompanyRequest bad = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	static uint8_t all[N * 128];
	int expect[N], seen[N] = { 0 };
	size_t off = 0;
	struct wire w;

	(void)state;
	ds.company = (char *)"acme";
	ds.name = (char *)"k1";
	dn.company = (char *)"acme";
	dn.name = (char *)"nope";
	bad.name = (char *)"Bad!";
	assert_int_equal(wire_session(&w, D.socket), 0);
	for (int i = 0; i < N; i++) {
		const ProtobufCMessage *m;
		uint32_t method;
		size_t len;
		uint8_t *f;
		switch (i % 4) {
		case 0: m = &lc.base; method = mid("ListCompanies"); expect[i] = ST_OK; break;
		case 1: m = &ds.base; method = mid("DescribeSecret"); expect[i] = ST_OK; break;
		case 2:
			m = &dn.base;
			method = mid("DescribeSecret");
			expect[i] = PCSECRET__V1__STATUS_CODE__NOT_FOUND;
			break;
		default:
			m = &bad.base;
			method = mid("CreateCompany");
			expect[i] = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
			break;
		}
		/* call id = 1000003 * (i + 1): not sequential, and i is recoverable. */
		f = call_frame(1000003ull * (uint64_t)(i + 1), method, NULL, 0, m, &len);
		assert_non_null(f);
		assert_true(off + len <= sizeof(all));
		memcpy(all + off, f, len);
		off += len;
		frame_free(f, len);
	}
	assert_int_equal(write_all(w.fd, all, off), 0);
	for (int got = 0; got < N; got++) {
		Pcsecret__V1__Reply *r;
		assert_int_equal(wire_reply(&w, 20000, &r), 1);
		assert_true(r->call_id % 1000003ull == 0);
		uint64_t i = r->call_id / 1000003ull - 1;
		assert_true(i < N);
		assert_int_equal(seen[i], 0);
		seen[i] = 1;
		assert_int_equal((int)r->status, expect[i]);
		pcsecret__v1__reply__free_unpacked(r, NULL);
	}
	/* Nothing more: no duplicate replies. */
	assert_int_equal(list_companies(&w, 77), ST_OK);
	wire_close(&w);
}

/* ---- deadlines while PostgreSQL waits, and replies out of order ---- */

struct deadline_arg {
	const char *socket;
	int go;     /* read end: the parent released the lock */
	int ready;  /* write end: told when the DEADLINE_EXCEEDED reply came */
};

/* As the agent: a Resolve stuck behind the lock must end at its deadline. */
static int child_deadline(void *a, FILE *out)
{
	struct deadline_arg *d = a;
	struct resolve_msg m;
	Pcsecret__V1__Reply *r = NULL;
	struct wire w;
	uint64_t t0, took;
	char c;
	int rc = 1;

	resolve_init(&m, "k1", 1);
	if (wire_session(&w, d->socket) != 0)
		return child_report(out, "agent Hello failed");
	t0 = now_ms();
	if (wire_send_call(&w, 7001, mid("Resolve"), 300, &m.req.base) != 0 ||
	    wire_reply(&w, 5000, &r) != 1) {
		child_report(out, "no reply to the blocked Resolve within 5 s");
		goto out;
	}
	took = now_ms() - t0;
	if (r->call_id != 7001 || r->status != PCSECRET__V1__STATUS_CODE__DEADLINE_EXCEEDED ||
	    strstr(r->message, "deadline") == NULL) {
		child_report(out, "blocked Resolve: call %" PRIu64 " status %d (%s)",
		    (uint64_t)r->call_id, (int)r->status, r->message);
		goto out;
	}
	if (took < 250 || took > 2500) {
		child_report(out, "DEADLINE_EXCEEDED after %" PRIu64 " ms for a 300 ms deadline", took);
		goto out;
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	r = NULL;
	if (write(d->ready, "d", 1) != 1 || read(d->go, &c, 1) != 1)
		goto out;
	/* The late result of 7001 must never arrive; the next reply is this call's. */
	if (wire_send_call(&w, 7002, mid("Resolve"), 0, &m.req.base) != 0 ||
	    wire_reply(&w, 10000, &r) != 1) {
		child_report(out, "no reply after the lock was released");
		goto out;
	}
	if (r->call_id != 7002 || !resolve_ok(r, 1, (const uint8_t *)VAL1, strlen(VAL1))) {
		child_report(out, "after release: call %" PRIu64 " status %d (%s)",
		    (uint64_t)r->call_id, (int)r->status, r->message);
		goto out;
	}
	rc = 0;
out:
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
	resolve_free(&m);
	return rc;
}

static void test_deadline_while_waiting_for_postgres(void **state)
{
	struct table_lock lock;
	struct deadline_arg a;
	struct child ch;
	int go[2], ready[2];
	char c, sql[256], *rows;

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(lock_table(&lock, "secrets"), 0);
	a.socket = D.socket;
	a.go = go[0];
	a.ready = ready[1];
	assert_int_equal(child_start(&ch, IT_AGENT_UID, child_deadline, &a), 0);
	close(go[0]);
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1) {
		lock_release(&lock);
		CHILD_OK(&ch);
		fail_msg("the agent never saw DEADLINE_EXCEEDED");
	}
	/* The daemon still serves calls that do not need the locked table. */
	assert_true(daemon_serves(D.socket));
	assert_int_equal(lock_release(&lock), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);
	close(ready[0]);
	CHILD_OK(&ch);
	/* The deadline was audited for that call. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_log WHERE instance_id = '%s' AND "
	    "peer_pid = %d AND call_id = 7001 AND status = 'DEADLINE_EXCEEDED'", instance_id,
	    (int)ch.pid);
	rows = pgtest_query_text(conninfo, sql);
	assert_non_null(rows);
	assert_string_equal(rows, "1");
	free(rows);
	/* For the log: what else the audit says about it (the late statement may commit). */
	snprintf(sql, sizeof(sql), "SELECT string_agg(status, ',' ORDER BY id) FROM audit_log "
	    "WHERE instance_id = '%s' AND peer_pid = %d AND call_id = 7001", instance_id,
	    (int)ch.pid);
	rows = pgtest_query_text(conninfo, sql);
	fprintf(stderr, "audit rows of the timed-out call: %s\n", rows ? rows : "?");
	free(rows);
	assert_true(daemon_serves(D.socket));
}

/*
 * As the agent, with the principals table locked: Hello (300 ms deadline) and a Resolve in
 * one write. The Resolve waits behind the Hello, which times out, so the Resolve is refused
 * as a call before Hello; once the lock is gone a new Hello and the Resolve succeed.
 */
static int child_hello_retry(void *a, FILE *out)
{
	struct deadline_arg *d = a;
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
	Pcsecret__V1__Reply *r1 = NULL, *r2 = NULL, *r = NULL;
	struct resolve_msg m;
	uint8_t *f1, *f2;
	size_t l1, l2;
	struct wire w;
	char c;
	int rc = 1;

	h.protocol_version = 1;
	resolve_init(&m, "k1", 1);
	f1 = call_frame(1, mid("Hello"), NULL, 300, &h.base, &l1);
	f2 = call_frame(2, mid("Resolve"), NULL, 0, &m.req.base, &l2);
	if (wire_open(&w, d->socket) != 0 || write_all(w.fd, f1, l1) != 0 ||
	    write_all(w.fd, f2, l2) != 0 || wire_reply(&w, 5000, &r1) != 1 ||
	    wire_reply(&w, 5000, &r2) != 1) {
		child_report(out, "no replies to Hello + Resolve");
		goto out;
	}
	if (r1->call_id != 1 || r1->status != PCSECRET__V1__STATUS_CODE__DEADLINE_EXCEEDED ||
	    r2->call_id != 2 || r2->status != PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION ||
	    strstr(r2->message, "call Hello before Resolve") == NULL) {
		child_report(out, "got %" PRIu64 ":%d (%s), %" PRIu64 ":%d (%s)", (uint64_t)r1->call_id,
		    (int)r1->status, r1->message, (uint64_t)r2->call_id, (int)r2->status, r2->message);
		goto out;
	}
	if (write(d->ready, "d", 1) != 1 || read(d->go, &c, 1) != 1)
		goto out;
	if (wire_hello(&w, 3) != ST_OK) {
		child_report(out, "Hello after a timed-out Hello was refused");
		goto out;
	}
	if (wire_rpc(&w, 4, mid("Resolve"), 0, &m.req.base, &r, 10000) != ST_OK ||
	    !resolve_ok(r, 1, (const uint8_t *)VAL1, strlen(VAL1))) {
		child_report(out, "Resolve after the second Hello failed");
		goto out;
	}
	rc = 0;
out:
	if (r1 != NULL)
		pcsecret__v1__reply__free_unpacked(r1, NULL);
	if (r2 != NULL)
		pcsecret__v1__reply__free_unpacked(r2, NULL);
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	frame_free(f1, l1);
	frame_free(f2, l2);
	wire_close(&w);
	resolve_free(&m);
	return rc;
}

static void test_hello_deadline_then_retry(void **state)
{
	struct table_lock lock;
	struct deadline_arg a;
	struct child ch;
	int go[2], ready[2];
	char c;

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(lock_table(&lock, "principals"), 0);
	a.socket = D.socket;
	a.go = go[0];
	a.ready = ready[1];
	assert_int_equal(child_start(&ch, IT_AGENT_UID, child_hello_retry, &a), 0);
	close(go[0]);
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1) {
		lock_release(&lock);
		CHILD_OK(&ch);
		fail_msg("the agent's first Hello did not time out");
	}
	assert_int_equal(lock_release(&lock), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);
	close(ready[0]);
	CHILD_OK(&ch);
}

/* Call 1 waits for a lock, call 2 does not: 2's reply comes first, then 1's. */
static void test_replies_out_of_order(void **state)
{
	Pcsecret__V1__DescribeSecretRequest ds = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__ListCompaniesRequest lc = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	Pcsecret__V1__Reply *r;
	struct table_lock lock;
	struct wire w;

	(void)state;
	ds.company = (char *)"acme";
	ds.name = (char *)"k1";
	assert_int_equal(wire_session(&w, D.socket), 0);
	assert_int_equal(lock_table(&lock, "secrets"), 0);
	assert_int_equal(wire_send_call(&w, 11, mid("DescribeSecret"), 0, &ds.base), 0);
	assert_int_equal(wire_send_call(&w, 12, mid("ListCompanies"), 0, &lc.base), 0);
	assert_int_equal(wire_reply(&w, 5000, &r), 1);
	assert_int_equal(r->call_id, 12);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	/* 11 is still waiting for the table. */
	assert_int_equal(wire_reply(&w, 300, &r), -1);
	assert_int_equal(lock_release(&lock), 0);
	assert_int_equal(wire_reply(&w, 5000, &r), 1);
	assert_int_equal(r->call_id, 11);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
}

/* ---- protocol errors ---- */

enum bad_kind {
	BAD_LEN0,
	BAD_TOO_LONG,
	BAD_GARBAGE,
	BAD_CALL_ID0,
	BAD_UNKNOWN_ID,
	BAD_UNKNOWN_NAME,
	BAD_WRONG_MESSAGE,
	BAD_BEFORE_HELLO,
	BAD_SECOND_HELLO,
	BAD_TRUNCATED,   /* half a frame, then the peer hangs up */
	BAD_KINDS
};

/*
 * Sends one kind of bad input on a fresh connection and checks the documented answer:
 * the status, a message naming the problem, and whether the daemon closes. Returns NULL on
 * success or what went wrong.
 */
static const char *bad_input(const char *path, enum bad_kind kind)
{
	static char why[256];
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__ListCompaniesRequest lc = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;
	uint8_t buf[64], *f = NULL;
	size_t len = 0, flen = 0;
	uint64_t want_id = 0;
	int want_status, closes = 1, rr;
	const char *want_msg;
	struct wire w;

	h.protocol_version = 1;
	if (wire_open(&w, path) != 0)
		return "cannot connect";
	switch (kind) {
	case BAD_LEN0:
		len = raw_frame(buf, 0, NULL, 0);
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "frame length 0";
		break;
	case BAD_TOO_LONG:
		/* Before Hello the limit is max_frame_before_hello; test_max_frame checks max_frame. */
		len = raw_frame(buf, 1048577, "xxxx", 4);
		want_status = PCSECRET__V1__STATUS_CODE__RESOURCE_EXHAUSTED;
		want_msg = "exceeds max_frame_before_hello (4096 bytes)";
		break;
	case BAD_GARBAGE:
		len = raw_frame(buf, 6, "\xff\xff\xff\xff\xff\xff", 6);
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "not a valid pcsecret.v1.Call";
		break;
	case BAD_CALL_ID0:
		f = call_frame(0, mid("Hello"), NULL, 0, &h.base, &flen);
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "call_id 0";
		break;
	case BAD_UNKNOWN_ID:
		f = call_frame(5, 999, NULL, 0, NULL, &flen);
		want_id = 5;
		want_status = PCSECRET__V1__STATUS_CODE__UNIMPLEMENTED;
		want_msg = "method id 999";
		closes = 0;
		break;
	case BAD_UNKNOWN_NAME:
		f = call_frame(6, 0, "pcsecret.v1.PcSecret/Nope", 0, NULL, &flen);
		want_id = 6;
		want_status = PCSECRET__V1__STATUS_CODE__UNIMPLEMENTED;
		want_msg = "unknown method";
		closes = 0;
		break;
	case BAD_WRONG_MESSAGE:
		/* A CreateSecretRequest sent as Hello: field 1 has the wrong wire type. */
		cs.company = (char *)"acme";
		cs.name = (char *)"x";
		f = call_frame(7, mid("Hello"), NULL, 0, &cs.base, &flen);
		want_id = 7;
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "request is not a valid";
		closes = 0;
		break;
	case BAD_BEFORE_HELLO:
		f = call_frame(8, mid("ListCompanies"), NULL, 0, &lc.base, &flen);
		want_id = 8;
		want_status = PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION;
		want_msg = "call Hello before ListCompanies";
		closes = 0;
		break;
	case BAD_SECOND_HELLO:
		if (wire_hello(&w, 1) != ST_OK) {
			wire_close(&w);
			return "first Hello failed";
		}
		f = call_frame(9, mid("Hello"), NULL, 0, &h.base, &flen);
		want_id = 9;
		want_status = PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION;
		want_msg = "already called";
		closes = 0;
		break;
	case BAD_TRUNCATED:
	default:
		len = raw_frame(buf, 40, "half", 4);
		write_all(w.fd, buf, len);
		shutdown(w.fd, SHUT_WR);
		rr = wire_wait_closed(&w, 5000);
		wire_close(&w);
		return rr == 1 ? NULL : "a half frame and EOF did not close the connection";
	}
	if (f != NULL) {
		rr = write_all(w.fd, f, flen);
		frame_free(f, flen);
	} else {
		rr = write_all(w.fd, buf, len);
	}
	if (rr != 0) {
		wire_close(&w);
		return "write failed";
	}
	if ((rr = wire_reply(&w, 5000, &r)) != 1) {
		snprintf(why, sizeof(why), "kind %d: no reply (%d)", (int)kind, rr);
		wire_close(&w);
		return why;
	}
	if (r->call_id != want_id || (int)r->status != want_status ||
	    strstr(r->message, want_msg) == NULL) {
		snprintf(why, sizeof(why), "kind %d: got call %" PRIu64 " status %d \"%s\"", (int)kind,
		    (uint64_t)r->call_id, (int)r->status, r->message);
		pcsecret__v1__reply__free_unpacked(r, NULL);
		wire_close(&w);
		return why;
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	if (closes) {
		if (wire_wait_closed(&w, 5000) != 1) {
			snprintf(why, sizeof(why), "kind %d: connection not closed", (int)kind);
			wire_close(&w);
			return why;
		}
	} else if (kind != BAD_SECOND_HELLO && kind != BAD_WRONG_MESSAGE) {
		/* Still open, and still before Hello: the handshake works now. */
		if (wire_hello(&w, 100) != ST_OK || list_companies(&w, 101) != ST_OK) {
			snprintf(why, sizeof(why), "kind %d: connection unusable afterwards", (int)kind);
			wire_close(&w);
			return why;
		}
	} else if (list_companies(&w, 102) != (kind == BAD_SECOND_HELLO ? ST_OK :
	    PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION)) {
		snprintf(why, sizeof(why), "kind %d: connection unusable afterwards", (int)kind);
		wire_close(&w);
		return why;
	}
	wire_close(&w);
	return NULL;
}

static void test_protocol_errors_documented(void **state)
{
	struct wire bystander;

	(void)state;
	/* A connection that is not at fault keeps working through all of it. */
	assert_int_equal(wire_session(&bystander, D.socket), 0);
	for (int k = 0; k < BAD_KINDS; k++) {
		const char *why = bad_input(D.socket, (enum bad_kind)k);
		if (why != NULL)
			fail_msg("%s", why);
		assert_int_equal(list_companies(&bystander, 1000 + (uint64_t)k), ST_OK);
	}
	wire_close(&bystander);
	assert_true(daemon_serves(D.socket));
}

/* ---- limits ---- */

static int create_company(struct wire *w, uint64_t id, const char *name)
{
	Pcsecret__V1__CreateCompanyRequest q = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;

	q.name = (char *)name;
	return wire_rpc(w, id, mid("CreateCompany"), 0, &q.base, NULL, 10000);
}

static void test_value_size_and_name_limits(void **state)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__Reply *r;
	static uint8_t v[65537];
	char name[200];
	struct wire w;

	(void)state;
	memset(v, 'v', sizeof(v));
	assert_int_equal(wire_session(&w, D.socket), 0);
	/* Exactly 64 KiB is accepted (a frame over 64 KiB, read in several pieces)... */
	assert_int_equal(create_secret(&w, 2, "max-size", v, 65536), ST_OK);
	/* ...one byte more is refused and the message names the limit. */
	q.company = (char *)"acme";
	q.name = (char *)"too-big";
	q.value.data = v;
	q.value.len = 65537;
	assert_int_equal(wire_rpc(&w, 3, mid("CreateSecret"), 0, &q.base, &r, 10000),
	    PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_non_null(strstr(r->message, "65536"));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	/* An empty value. */
	assert_int_equal(create_secret(&w, 4, "empty", v, 0),
	    PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	/* Names: 128 characters of [a-z0-9._-] pass, anything else does not. */
	memset(name, 'n', 128);
	name[128] = '\0';
	assert_int_equal(create_company(&w, 5, name), ST_OK);
	name[128] = 'n';
	name[129] = '\0';
	{
		Pcsecret__V1__CreateCompanyRequest cq = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
		cq.name = name;
		assert_int_equal(wire_rpc(&w, 6, mid("CreateCompany"), 0, &cq.base, &r, 10000),
		    PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
		assert_non_null(strstr(r->message, "1 to 128"));
		pcsecret__v1__reply__free_unpacked(r, NULL);
	}
	const char *bad[] = { "Acme", "a/b", "a b", ".", "..", "", "caf\xc3\xa9", "x\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(create_company(&w, 10 + i, bad[i]),
		    PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_int_equal(create_company(&w, 30, "ok-name_1.x"), ST_OK);
	wire_close(&w);
}

/* max_frame: a header over the limit is refused before the body is read. */
static void test_max_frame(void **state)
{
	struct wire w;
	Pcsecret__V1__Reply *r;
	uint8_t hdr[4];

	(void)state;
	assert_int_equal(wire_session(&w, D.socket), 0);
	frame_put_n32(hdr, 1048577);
	assert_int_equal(write_all(w.fd, hdr, 4), 0);
	assert_int_equal(wire_reply(&w, 5000, &r), 1);
	assert_int_equal(r->call_id, 0);
	assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__RESOURCE_EXHAUSTED);
	assert_non_null(strstr(r->message, "frame of 1048577 bytes exceeds the maximum of 1048576"));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_int_equal(wire_wait_closed(&w, 5000), 1);
	wire_close(&w);
	/*
	 * Exactly the maximum is a frame like any other (here: not a valid Call), after Hello:
	 * before it, max_frame_before_hello applies.
	 */
	{
		size_t n = 1048576 + 4;
		uint8_t *big = calloc(1, n);
		assert_non_null(big);
		frame_put_n32(big, 1048576);
		memset(big + 4, 0xff, 1048576);
		assert_int_equal(wire_session(&w, D.socket), 0);
		assert_int_equal(write_all(w.fd, big, n), 0);
		free(big);
		assert_int_equal(wire_reply(&w, 5000, &r), 1);
		assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
		assert_non_null(strstr(r->message, "not a valid"));
		pcsecret__v1__reply__free_unpacked(r, NULL);
		wire_close(&w);
	}
	assert_true(daemon_serves(D.socket));
}

struct refs_arg {
	const char *socket;
};

static int child_max_refs(void *a, FILE *out)
{
	struct refs_arg *ra = a;
	struct resolve_msg ok, over;
	Pcsecret__V1__Reply *r = NULL;
	struct wire w;
	int rc = 1, st;

	resolve_init(&ok, "k1", 256);
	resolve_init(&over, "k1", 257);
	if (wire_session(&w, ra->socket) != 0) {
		child_report(out, "agent Hello failed");
		goto out;
	}
	st = wire_rpc(&w, 2, mid("Resolve"), 0, &ok.req.base, &r, 10000);
	if (st != ST_OK || !resolve_ok(r, 256, (const uint8_t *)VAL1, strlen(VAL1))) {
		child_report(out, "256 refs: status %d", st);
		goto out;
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	r = NULL;
	st = wire_rpc(&w, 3, mid("Resolve"), 0, &over.req.base, &r, 10000);
	if (st != PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT || strstr(r->message, "max_refs") ==
	    NULL || strstr(r->message, "256") == NULL) {
		child_report(out, "257 refs: status %d (%s)", st, r ? r->message : "");
		goto out;
	}
	rc = 0;
out:
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
	resolve_free(&ok);
	resolve_free(&over);
	return rc;
}

static void test_max_refs(void **state)
{
	struct refs_arg a = { D.socket };
	struct child ch;

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(child_start(&ch, IT_AGENT_UID, child_max_refs, &a), 0);
	CHILD_OK(&ch);
}

/* ---- 10,000 bad connections: nothing leaks ---- */

struct bad_arg {
	const char *socket;
	int from, count;
};

static int child_bad_connections(void *a, FILE *out)
{
	struct bad_arg *b = a;

	for (int i = b->from; i < b->from + b->count; i++) {
		const char *why = bad_input(b->socket, (enum bad_kind)(i % BAD_KINDS));
		if (why != NULL)
			return child_report(out, "connection %d: %s", i, why);
	}
	return 0;
}

static void run_bad_connections(int total)
{
	enum { WORKERS = 4 };
	struct bad_arg args[WORKERS];
	struct child ch[WORKERS];

	for (int i = 0; i < WORKERS; i++) {
		args[i].socket = D.socket;
		args[i].from = i * (total / WORKERS);
		args[i].count = total / WORKERS;
		assert_int_equal(child_start(&ch[i], 0, child_bad_connections, &args[i]), 0);
	}
	for (int i = 0; i < WORKERS; i++)
		CHILD_OK(&ch[i]);
}

static void test_bad_connections_leak_nothing(void **state)
{
	int total = 10000 / (int)scale, fds_before, fds_after;
	long rss_before, rss_after;
	uint64_t t0 = now_ms();

	(void)state;
	if (!need_root())
		skip();
	/* Warm up: lazily made pools and allocator arenas are not growth. */
	run_bad_connections(400);
	fds_before = fd_count_stable(D.pid);
	rss_before = proc_rss_kb(D.pid);
	assert_true(fds_before > 0 && rss_before > 0);
	run_bad_connections(total);
	fds_after = fd_count_settles(D.pid, fds_before, 5000);
	rss_after = proc_rss_kb(D.pid);
	fprintf(stderr, "%d bad connections in %" PRIu64 " ms; fds %d -> %d; VmRSS %ld -> %ld KiB\n",
	    total, now_ms() - t0, fds_before, fds_after, rss_before, rss_after);
	assert_int_equal(fds_after, fds_before);
	assert_true(rss_after - rss_before < 8 * 1024);
	assert_true(daemon_serves(D.socket));
}

/* ---- 1,000 connections, 16 pipelined Resolves each ---- */

struct many_arg {
	const char *socket;
	int conns;
	int calls;    /* Resolves per connection, sent right behind Hello */
};

static int child_many(void *a, FILE *out)
{
	struct many_arg *m = a;
	struct resolve_msg rm;
	struct wire *w = calloc((size_t)m->conns, sizeof(*w));
	struct pollfd *pf = calloc((size_t)m->conns, sizeof(*pf));
	uint32_t *seen = calloc((size_t)m->conns, sizeof(*seen));
	int *got = calloc((size_t)m->conns, sizeof(*got));
	uint8_t *batch = NULL;
	size_t blen = 0;
	int rc = 1, done = 0, want = m->calls + 1;
	uint64_t end;

	resolve_init(&rm, "k1", 1);
	if (w == NULL || pf == NULL || seen == NULL || got == NULL || m->calls > 31) {
		child_report(out, "out of memory");
		goto out;
	}
	/* Hello and the Resolves in one write: the calls wait for the handshake. */
	{
		Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
		size_t len;
		uint8_t *f;
		h.protocol_version = 1;
		batch = malloc((size_t)want * 64);
		f = call_frame(1, mid("Hello"), NULL, 0, &h.base, &len);
		memcpy(batch, f, len);
		blen = len;
		frame_free(f, len);
		for (int i = 0; i < m->calls; i++) {
			f = call_frame((uint64_t)(2 + i), mid("Resolve"), NULL, 0, &rm.req.base, &len);
			memcpy(batch + blen, f, len);
			blen += len;
			frame_free(f, len);
		}
	}
	for (int i = 0; i < m->conns; i++) {
		w[i].fd = -1;
		if ((w[i].fd = sock_connect(m->socket, 0)) < 0) {
			child_report(out, "connection %d: connect: %s", i, strerror(errno));
			goto out;
		}
		pf[i].fd = w[i].fd;
		pf[i].events = POLLIN;
	}
	/* Every connection is open before any call is sent: they are all concurrent. */
	for (int i = 0; i < m->conns; i++) {
		if (write_all(w[i].fd, batch, blen) != 0) {
			child_report(out, "connection %d: write failed", i);
			goto out;
		}
	}
	end = now_ms() + 60000;
	while (done < m->conns && now_ms() < end) {
		if (poll(pf, (nfds_t)m->conns, 1000) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < m->conns; i++) {
			Pcsecret__V1__Reply *r;
			int t;
			if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (wire_fill(&w[i], 0) == 0) {
				child_report(out, "connection %d closed after %d replies", i, got[i]);
				goto out;
			}
			while ((t = wire_take(&w[i], &r)) == 1) {
				uint64_t id = r->call_id;
				int ok = id >= 1 && id <= (uint64_t)want && !(seen[i] & (1u << id)) &&
				    (id == 1 ? r->status == ST_OK :
				    resolve_ok(r, 1, (const uint8_t *)VAL1, strlen(VAL1)));
				if (!ok) {
					child_report(out, "connection %d: reply %" PRIu64 " status %d (%s)", i,
					    id, (int)r->status, r->message);
					pcsecret__v1__reply__free_unpacked(r, NULL);
					goto out;
				}
				seen[i] |= 1u << id;
				pcsecret__v1__reply__free_unpacked(r, NULL);
				if (++got[i] == want) {
					pf[i].fd = -1;
					done++;
				}
			}
			if (t < 0) {
				child_report(out, "connection %d: malformed reply", i);
				goto out;
			}
		}
	}
	if (done != m->conns) {
		child_report(out, "%d of %d connections got all replies in time", done, m->conns);
		goto out;
	}
	rc = 0;
out:
	for (int i = 0; w != NULL && i < m->conns; i++)
		if (w[i].fd > 0)
			wire_close(&w[i]);
	free(w);
	free(pf);
	free(seen);
	free(got);
	free(batch);
	resolve_free(&rm);
	return rc;
}

static void test_thousand_connections_pipelined(void **state)
{
	enum { PROCS = 4 };
	struct many_arg a;
	struct child ch[PROCS];
	uint64_t t0 = now_ms();
	char sql[256], *rows;
	long rss0;

	(void)state;
	if (!need_root())
		skip();
	a.socket = D.socket;
	a.conns = 250 / (int)scale;
	a.calls = 16;
	rss0 = proc_rss_kb(D.pid);
	for (int i = 0; i < PROCS; i++)
		assert_int_equal(child_start(&ch[i], IT_AGENT_UID, child_many, &a), 0);
	for (int i = 0; i < PROCS; i++)
		CHILD_OK(&ch[i]);
	fprintf(stderr, "%d connections x %d pipelined Resolves: %" PRIu64 " ms; VmRSS %ld -> "
	    "%ld KiB\n", PROCS * a.conns, a.calls, now_ms() - t0, rss0, proc_rss_kb(D.pid));
	/* Each of them audited. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_log WHERE instance_id = '%s' AND "
	    "method = 'Resolve' AND status = 'OK' AND peer_pid IN (%d, %d, %d, %d)", instance_id,
	    (int)ch[0].pid, (int)ch[1].pid, (int)ch[2].pid, (int)ch[3].pid);
	rows = pgtest_query_text(conninfo, sql);
	assert_non_null(rows);
	assert_int_equal(atoi(rows), PROCS * a.conns * a.calls);
	free(rows);
	assert_true(daemon_serves(D.socket));
}

/* ---- fairness ---- */

struct flood_arg {
	const char *socket;
	int stop;     /* read end: stop flooding */
	int started;  /* write end */
};

/* One connection: Resolves as fast as the socket takes them, until told to stop. */
static int child_flood(void *a, FILE *out)
{
	struct flood_arg *fa = a;
	struct resolve_msg rm;
	struct wire w;
	uint8_t *f;
	size_t flen, pos = 0;
	uint64_t next_id = 2, replies = 0, end;
	int stopping = 0, told = 0, rc = 1;

	resolve_init(&rm, "k1", 1);
	if (wire_session(&w, fa->socket) != 0) {
		resolve_free(&rm);
		return child_report(out, "flood: Hello failed");
	}
	fcntl(w.fd, F_SETFL, fcntl(w.fd, F_GETFL) | O_NONBLOCK);
	f = call_frame(next_id, mid("Resolve"), NULL, 0, &rm.req.base, &flen);
	end = now_ms() + 60000;
	while (now_ms() < end) {
		struct pollfd pf[2] = { { w.fd, POLLIN | (stopping ? 0 : POLLOUT), 0 },
			{ fa->stop, POLLIN, 0 } };
		Pcsecret__V1__Reply *r;
		int t;
		if (poll(pf, 2, 1000) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & (POLLIN | POLLHUP))
			stopping = 1;
		if (!stopping && (pf[0].revents & POLLOUT)) {
			/* Write whole frames, each with its own call id. */
			for (int k = 0; k < 64; k++) {
				ssize_t n = send(w.fd, f + pos, flen - pos, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n <= 0)
					break;
				pos += (size_t)n;
				if (pos == flen) {
					frame_free(f, flen);
					f = call_frame(++next_id, mid("Resolve"), NULL, 0, &rm.req.base, &flen);
					pos = 0;
				}
			}
		}
		if (pf[0].revents & (POLLIN | POLLHUP)) {
			if (wire_fill(&w, 0) == 0) {
				child_report(out, "flood: connection closed after %" PRIu64 " replies",
				    replies);
				goto out;
			}
			while ((t = wire_take(&w, &r)) == 1) {
				if (!resolve_ok(r, 1, (const uint8_t *)VAL1, strlen(VAL1))) {
					child_report(out, "flood: reply %" PRIu64 " status %d (%s)",
					    (uint64_t)r->call_id, (int)r->status, r->message);
					pcsecret__v1__reply__free_unpacked(r, NULL);
					goto out;
				}
				pcsecret__v1__reply__free_unpacked(r, NULL);
				replies++;
			}
		}
		if (!told && replies >= 200) {
			told = 1;
			if (write(fa->started, "s", 1) != 1)
				goto out;
		}
		/* Stopped, with every whole frame sent answered (a partial one never completes). */
		if (stopping && replies == next_id - 2)
			break;
	}
	if (!stopping || replies != next_id - 2) {
		child_report(out, "flood: %" PRIu64 " of %" PRIu64 " replies", replies, next_id - 2);
		goto out;
	}
	fprintf(stderr, "flood: %" PRIu64 " Resolves on one connection\n", replies);
	rc = 0;
out:
	frame_free(f, flen);
	wire_close(&w);
	resolve_free(&rm);
	return rc;
}

static void test_fairness_under_flood(void **state)
{
	struct flood_arg a;
	struct child ch;
	struct wire w;
	int stop[2], started[2];
	uint64_t worst = 0, bound = IT_ASAN ? 3000 : 1000;
	char c;

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
	assert_int_equal(pipe2(started, O_CLOEXEC), 0);
	a.socket = D.socket;
	a.stop = stop[0];
	a.started = started[1];
	assert_int_equal(child_start(&ch, IT_AGENT_UID, child_flood, &a), 0);
	close(stop[0]);
	close(started[1]);
	assert_int_equal(read(started[0], &c, 1), 1);
	assert_int_equal(wire_session(&w, D.socket), 0);
	for (int i = 0; i < 20; i++) {
		uint64_t t0 = now_ms(), took;
		assert_int_equal(list_companies(&w, 10 + (uint64_t)i), ST_OK);
		took = now_ms() - t0;
		if (took > worst)
			worst = took;
	}
	wire_close(&w);
	/* The flood was still going the whole time. */
	assert_int_equal(waitpid(ch.pid, NULL, WNOHANG), 0);
	assert_int_equal(write(stop[1], "x", 1), 1);
	close(stop[1]);
	close(started[0]);
	CHILD_OK(&ch);
	fprintf(stderr, "slowest call beside the flood: %" PRIu64 " ms\n", worst);
	assert_true(worst < bound);
}

/* ---- a peer that never reads ---- */

struct nonreader_arg {
	const char *socket;
	int calls;
};

/* Sends many Resolves of a 60 KB value and never reads; the daemon must hang up. */
static int child_nonreader(void *a, FILE *out)
{
	struct nonreader_arg *na = a;
	struct resolve_msg rm;
	struct wire w;
	uint8_t *f;
	size_t flen;
	int rc = 1;
	uint64_t end;

	resolve_init(&rm, "big", 1);
	if (wire_session(&w, na->socket) != 0) {
		resolve_free(&rm);
		return child_report(out, "Hello failed");
	}
	for (int i = 0; i < na->calls; i++) {
		f = call_frame((uint64_t)(2 + i), mid("Resolve"), NULL, 0, &rm.req.base, &flen);
		if (write_all(w.fd, f, flen) != 0) {
			frame_free(f, flen);
			break; /* already cut off */
		}
		frame_free(f, flen);
	}
	/* Wait for the hang-up without reading: POLLHUP comes with a closed peer. */
	end = now_ms() + 20000;
	while (now_ms() < end) {
		struct pollfd pf = { w.fd, POLLRDHUP, 0 };
		if (poll(&pf, 1, 200) > 0 && (pf.revents & (POLLHUP | POLLRDHUP | POLLERR)))
			break;
	}
	if (now_ms() >= end) {
		child_report(out, "the daemon kept a peer that never reads");
		goto out;
	}
	wire_wait_closed(&w, 5000);
	if (w.received >= (size_t)na->calls * BIG_LEN) {
		child_report(out, "got all %zu bytes: not cut off", w.received);
		goto out;
	}
	rc = 0;
out:
	wire_close(&w);
	resolve_free(&rm);
	return rc;
}

static void test_non_reader_cut_off_memory_bounded(void **state)
{
	enum { PROCS = 4 };
	struct nonreader_arg a;
	struct child ch[PROCS];
	int status[PROCS], done[PROCS] = { 0 }, left = PROCS, fds_before;
	long base, peak = 0, rss;

	(void)state;
	if (!need_root())
		skip();
	fds_before = fd_count_stable(D.pid);
	base = proc_rss_kb(D.pid);
	a.socket = D.socket;
	/* Each peer asks for 48 MB of replies. */
	a.calls = 800;
	for (int i = 0; i < PROCS; i++)
		assert_int_equal(child_start(&ch[i], IT_AGENT_UID, child_nonreader, &a), 0);
	while (left > 0) {
		for (int i = 0; i < PROCS; i++)
			if (!done[i] && waitpid(ch[i].pid, &status[i], WNOHANG) == ch[i].pid) {
				done[i] = 1;
				left--;
			}
		if ((rss = proc_rss_kb(D.pid)) > peak)
			peak = rss;
		sleep_ms(10);
	}
	for (int i = 0; i < PROCS; i++) {
		char msg[512];
		size_t n = 0;
		ssize_t r;
		while (n + 1 < sizeof(msg) && (r = read(ch[i].fd, msg + n, sizeof(msg) - 1 - n)) > 0)
			n += (size_t)r;
		msg[n] = '\0';
		close(ch[i].fd);
		if (!WIFEXITED(status[i]) || WEXITSTATUS(status[i]) != 0)
			fail_msg("non-reading client: %s", msg);
	}
	fprintf(stderr, "non-readers: VmRSS %ld KiB, peak %ld KiB\n", base, peak);
	assert_true(file_has(D.log, "event=conn_slow_reader"));
	/*
	 * Per peer: max_output (1 MiB) queued, plus at most max_inflight (64) replies of ~60 KB
	 * built and waiting for their audit rows: about 5 MiB each, 20 MiB in all, far below the
	 * 192 MB asked for.
	 */
	assert_true(peak - base < 40 * 1024);
	assert_int_equal(fd_count_settles(D.pid, fds_before, 5000), fds_before);
	assert_true(daemon_serves(D.socket));
}

/* ---- timeouts, connection cap, backpressure and signals on a daemon with tight limits ---- */

static char tlog[128];

static void start_tight(void)
{
	struct it_daemon_opts o = { 0 };
	const char *args[] = { "--idle-timeout-ms", "3000", "--read-timeout-ms", "800",
		"--max-connections", "8", "--max-inflight", "1", "--log-file", tlog,
		"--max-value", "1024", NULL };

	snprintf(tlog, sizeof(tlog), "%s/tight.log", scratch);
	o.args = args;
	assert_int_equal(it_daemon_start_opts(&T, conninfo, D.keyfile, &o), 0);
}

/*
 * idle_timeout 3 s, read_timeout 0.8 s: a stalled partial frame and a peer trickling one byte
 * at a time are closed at the read timeout; idle peers at the idle timeout; a busy one stays.
 */
static void test_idle_and_partial_frame_timeouts(void **state)
{
	enum { IDLE, SILENT, STALLED, TRICKLE, BUSY, N };
	struct wire w[N];
	uint64_t t0, closed_at[N] = { 0 }, next_trickle, next_busy;
	uint8_t hdr[4];
	uint64_t busy_id = 10;

	(void)state;
	start_tight();
	assert_int_equal(wire_session(&w[IDLE], T.socket), 0);
	assert_int_equal(wire_open(&w[SILENT], T.socket), 0);
	assert_int_equal(wire_open(&w[STALLED], T.socket), 0);
	assert_int_equal(wire_open(&w[TRICKLE], T.socket), 0);
	assert_int_equal(wire_session(&w[BUSY], T.socket), 0);
	frame_put_n32(hdr, 100);
	assert_int_equal(write_all(w[STALLED].fd, hdr, 2), 0);
	assert_int_equal(write_all(w[TRICKLE].fd, hdr, 4), 0);
	t0 = now_ms();
	next_trickle = next_busy = t0 + 150;
	while (now_ms() - t0 < 6000) {
		uint64_t now = now_ms();
		for (int i = 0; i < N; i++) {
			struct pollfd pf = { w[i].fd, POLLIN, 0 };
			if (closed_at[i] || i == BUSY)
				continue;
			if (poll(&pf, 1, 0) > 0 && wire_fill(&w[i], 0) <= 0)
				closed_at[i] = now - t0;
		}
		if (!closed_at[TRICKLE] && now >= next_trickle) {
			/* 1 byte per 150 ms: activity, but the frame would take 15 s. */
			if (write_all(w[TRICKLE].fd, "x", 1) != 0)
				closed_at[TRICKLE] = now - t0;
			next_trickle = now + 150;
		}
		if (now >= next_busy && now - t0 < 5000) {
			assert_int_equal(list_companies(&w[BUSY], ++busy_id), ST_OK);
			next_busy = now + 500;
		}
		sleep_ms(10);
	}
	fprintf(stderr, "closed after (ms): idle %" PRIu64 ", silent %" PRIu64 ", stalled %" PRIu64
	    ", trickle %" PRIu64 "\n", closed_at[IDLE], closed_at[SILENT], closed_at[STALLED],
	    closed_at[TRICKLE]);
	assert_true(closed_at[STALLED] >= 600 && closed_at[STALLED] < 2500);
	assert_true(closed_at[TRICKLE] >= 600 && closed_at[TRICKLE] < 2500);
	/* Idle ones: 3 s after their last activity (the Hello was a little before t0). */
	assert_true(closed_at[IDLE] >= 2000 && closed_at[IDLE] < 5000);
	assert_true(closed_at[SILENT] >= 2000 && closed_at[SILENT] < 5000);
	/* The busy one was never idle: still open and serving. */
	assert_int_equal(list_companies(&w[BUSY], 999), ST_OK);
	for (int i = 0; i < N; i++)
		wire_close(&w[i]);
	assert_true(file_has(tlog, "event=conn_read_timeout"));
}

/* max_connections = 8: the ninth gets RESOURCE_EXHAUSTED and is closed; the rest serve. */
static void test_max_connections(void **state)
{
	struct wire w[8], extra;
	Pcsecret__V1__Reply *r;
	int ok = 0;

	(void)state;
	sleep_ms(200); /* the previous test's connections are gone */
	for (int i = 0; i < 8; i++)
		assert_int_equal(wire_session(&w[i], T.socket), 0);
	assert_int_equal(wire_open(&extra, T.socket), 0);
	assert_int_equal(wire_reply(&extra, 5000, &r), 1);
	assert_int_equal(r->call_id, 0);
	assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__RESOURCE_EXHAUSTED);
	assert_non_null(strstr(r->message, "max_connections = 8"));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_int_equal(wire_wait_closed(&extra, 5000), 1);
	wire_close(&extra);
	for (int i = 0; i < 8; i++)
		assert_int_equal(list_companies(&w[i], 50), ST_OK);
	/* A slot that frees up is taken by the next peer. */
	wire_close(&w[0]);
	for (int tries = 0; tries < 40 && !ok; tries++) {
		sleep_ms(50);
		ok = daemon_serves(T.socket);
	}
	assert_true(ok);
	for (int i = 1; i < 8; i++)
		wire_close(&w[i]);
}

/* max_inflight = 1: a second call is not even read while the first waits for a lock. */
static void test_inflight_backpressure(void **state)
{
	Pcsecret__V1__DescribeSecretRequest ds = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__ListCompaniesRequest lc = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	Pcsecret__V1__Reply *r;
	struct table_lock lock;
	struct wire w;

	(void)state;
	ds.company = (char *)"acme";
	ds.name = (char *)"k1";
	sleep_ms(200);
	assert_int_equal(wire_session(&w, T.socket), 0);
	assert_int_equal(lock_table(&lock, "secrets"), 0);
	assert_int_equal(wire_send_call(&w, 11, mid("DescribeSecret"), 0, &ds.base), 0);
	assert_int_equal(wire_send_call(&w, 12, mid("ListCompanies"), 0, &lc.base), 0);
	/* On the main daemon 12 overtakes 11 (test_replies_out_of_order); here it waits. */
	assert_int_equal(wire_reply(&w, 700, &r), -1);
	assert_int_equal(lock_release(&lock), 0);
	assert_int_equal(wire_reply(&w, 5000, &r), 1);
	assert_int_equal(r->call_id, 11);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_int_equal(wire_reply(&w, 5000, &r), 1);
	assert_int_equal(r->call_id, 12);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
}

/* max_value lowers the 64 KiB ceiling; the refusal names the setting. */
static void test_max_value_setting(void **state)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__Reply *r;
	static uint8_t v[1025];
	struct wire w;

	(void)state;
	memset(v, 'm', sizeof(v));
	assert_int_equal(wire_session(&w, T.socket), 0);
	assert_int_equal(create_secret(&w, 2, "max-value-ok", v, 1024), ST_OK);
	q.company = (char *)"acme";
	q.name = (char *)"max-value-over";
	q.value.data = v;
	q.value.len = 1025;
	assert_int_equal(wire_rpc(&w, 3, mid("CreateSecret"), 0, &q.base, &r, 10000),
	    PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_non_null(strstr(r->message, "max_value"));
	assert_non_null(strstr(r->message, "1024"));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
}

static void test_sighup_reopens_log(void **state)
{
	char rotated[160];
	struct stat st;
	struct wire w;
	int ok = 0;

	(void)state;
	snprintf(rotated, sizeof(rotated), "%s.1", tlog);
	assert_int_equal(rename(tlog, rotated), 0);
	assert_int_equal(kill(T.pid, SIGHUP), 0);
	for (int i = 0; i < 100 && !ok; i++) {
		sleep_ms(20);
		ok = stat(tlog, &st) == 0 && file_has(tlog, "event=log_reopened");
	}
	assert_true(ok);
	assert_int_equal(wire_session(&w, T.socket), 0);
	assert_int_equal(list_companies(&w, 987654321), ST_OK);
	wire_close(&w);
	assert_true(file_has(tlog, "call_id=987654321"));
	assert_false(file_has(rotated, "call_id=987654321"));
	assert_true(file_has(rotated, "event=listening"));
}

/*
 * SIGINT drains like SIGTERM: a call in flight (waiting for a lock) finishes and gets its
 * reply; a call sent after the drain began is not taken on; exit 0, socket removed.
 */
static void test_sigint_drains(void **state)
{
	Pcsecret__V1__DescribeSecretRequest ds = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__Reply *r;
	struct table_lock lock;
	struct wire a, b;
	struct stat st;
	int status, ok = 0;

	(void)state;
	ds.company = (char *)"acme";
	ds.name = (char *)"k1";
	sleep_ms(200);
	assert_int_equal(wire_session(&a, T.socket), 0);
	assert_int_equal(wire_session(&b, T.socket), 0);
	assert_int_equal(lock_table(&lock, "secrets"), 0);
	assert_int_equal(wire_send_call(&a, 21, mid("DescribeSecret"), 0, &ds.base), 0);
	sleep_ms(100);
	assert_int_equal(kill(T.pid, SIGINT), 0);
	for (int i = 0; i < 100 && !ok; i++) {
		sleep_ms(20);
		ok = file_has(tlog, "event=draining");
	}
	assert_true(ok);
	/* Draining: new connections are refused... */
	assert_int_equal(sock_connect(T.socket, 0), -1);
	/* ...and a new call on an open one is not started. */
	assert_int_equal(list_companies(&b, 22), -1);
	assert_int_equal(lock_release(&lock), 0);
	assert_int_equal(wire_reply(&a, 5000, &r), 1);
	assert_int_equal(r->call_id, 21);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_int_equal(wire_wait_closed(&a, 5000), 1);
	assert_int_equal(wire_wait_closed(&b, 5000), 1);
	wire_close(&a);
	wire_close(&b);
	assert_int_equal(waitpid(T.pid, &status, 0), T.pid);
	T.pid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(stat(T.socket, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_true(file_has(tlog, "event=stopped"));
	assert_false(file_has(tlog, "event=drain_timeout"));
}

/* ---- accept() at the descriptor limit ---- */

static void test_accept_emfile_backs_off(void **state)
{
	struct it_daemon_opts o = { 0 };
	const char *args[] = { "--max-connections", "1000", NULL };
	struct wire w[64];
	int n = 0, stuck = 0, ok = 0;
	long cpu0, cpu1;

	(void)state;
	if (!need_root())
		skip();
	o.args = args;
	o.nofile = 40;
	assert_int_equal(it_daemon_start_opts(&E, conninfo, D.keyfile, &o), 0);
	/* Connections until one is no longer accepted (it waits in the listen backlog). */
	while (n < 64) {
		assert_int_equal(wire_open(&w[n], E.socket), 0);
		Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
		Pcsecret__V1__Reply *r;
		h.protocol_version = 1;
		assert_int_equal(wire_send_call(&w[n], 1, mid("Hello"), 0, &h.base), 0);
		int got = wire_reply(&w[n], 1500, &r);
		n++;
		if (got == -1) {
			stuck = 1;
			break;
		}
		assert_int_equal(got, 1);
		assert_int_equal(r->status, ST_OK);
		pcsecret__v1__reply__free_unpacked(r, NULL);
	}
	assert_true(stuck);
	assert_true(n > 3);
	/* At the limit the daemon waits instead of spinning on accept(). */
	cpu0 = proc_cpu_ms(E.pid);
	sleep_ms(2000);
	cpu1 = proc_cpu_ms(E.pid);
	fprintf(stderr, "EMFILE after %d connections; CPU over 2 s: %ld ms\n", n - 1, cpu1 - cpu0);
	assert_true(cpu0 >= 0 && cpu1 - cpu0 < (IT_ASAN ? 600 : 300));
	assert_true(file_has(E.log, "event=accept_backoff"));
	/* Accepted connections still work. */
	assert_int_equal(list_companies(&w[0], 2), ST_OK);
	for (int i = 0; i < n; i++)
		wire_close(&w[i]);
	for (int tries = 0; tries < 60 && !ok; tries++) {
		sleep_ms(100);
		ok = daemon_serves(E.socket);
	}
	assert_true(ok);
	assert_int_equal(it_daemon_stop(&E), 0);
}

/* ---- a stale socket file ---- */

static void test_stale_socket_replaced(void **state)
{
	struct it_daemon_opts o = { 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[128];
	struct stat st;
	int fd;

	(void)state;
	/*
	 * What a crashed daemon leaves: a socket file nobody listens on, in a directory only its
	 * owner may write (the daemon refuses one that others could bind in first).
	 */
	snprintf(path, sizeof(path), "%s/stale", scratch);
	assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
	snprintf(path, sizeof(path), "%s/stale/stale.sock", scratch);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(sock_connect(path, 0), -1);
	o.socket = path;
	assert_int_equal(it_daemon_start_opts(&S, conninfo, D.keyfile, &o), 0);
	assert_true(daemon_serves(path));
	assert_int_equal(it_daemon_stop(&S), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

/* ---- SIGTERM under load: every OK reply has its audit row ---- */

struct load_arg {
	const char *socket;
	int conns;
	int depth;      /* calls in flight per connection */
	int started;    /* write end: told after the first replies */
	char okfile[160];
};

static int child_load(void *a, FILE *out)
{
	struct load_arg *la = a;
	struct resolve_msg rm;
	struct wire w[16];
	struct pollfd pf[16];
	FILE *ok = NULL;
	uint64_t next_id = 1000, oks = 0, end;
	int open_conns = 0, told = 0, rc = 1;

	resolve_init(&rm, "k1", 1);
	if (la->conns > 16 || (ok = fopen(la->okfile, "we")) == NULL) {
		resolve_free(&rm);
		return child_report(out, "cannot write %s", la->okfile);
	}
	for (int i = 0; i < la->conns; i++) {
		if (wire_session(&w[i], la->socket) != 0) {
			child_report(out, "load: Hello failed");
			la->conns = i;
			goto out;
		}
		pf[i].fd = w[i].fd;
		pf[i].events = POLLIN;
		open_conns++;
		for (int k = 0; k < la->depth; k++)
			if (wire_send_call(&w[i], next_id++, mid("Resolve"), 0, &rm.req.base) != 0)
				break;
	}
	end = now_ms() + 30000;
	while (open_conns > 0 && now_ms() < end) {
		if (poll(pf, (nfds_t)la->conns, 500) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < la->conns; i++) {
			Pcsecret__V1__Reply *r;
			int t, f;
			if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			f = wire_fill(&w[i], 0);
			while ((t = wire_take(&w[i], &r)) == 1) {
				if (!resolve_ok(r, 1, (const uint8_t *)VAL1, strlen(VAL1))) {
					child_report(out, "load: call %" PRIu64 " got status %d (%s)",
					    (uint64_t)r->call_id, (int)r->status, r->message);
					pcsecret__v1__reply__free_unpacked(r, NULL);
					goto out;
				}
				fprintf(ok, "%" PRIu64 "\n", (uint64_t)r->call_id);
				oks++;
				pcsecret__v1__reply__free_unpacked(r, NULL);
				/* Keep the pipeline full; after the drain began this is not read. */
				wire_send_call(&w[i], next_id++, mid("Resolve"), 0, &rm.req.base);
			}
			if (f <= 0 && f != -1) {
				pf[i].fd = -1;
				open_conns--;
			}
		}
		if (!told && oks >= 100) {
			told = 1;
			if (write(la->started, "s", 1) != 1)
				goto out;
		}
	}
	if (open_conns > 0) {
		child_report(out, "load: %d connections still open after 30 s", open_conns);
		goto out;
	}
	if (!told) {
		child_report(out, "load: only %" PRIu64 " replies before the end", oks);
		goto out;
	}
	rc = 0;
out:
	if (ok != NULL)
		fclose(ok);
	for (int i = 0; i < la->conns; i++)
		wire_close(&w[i]);
	resolve_free(&rm);
	return rc;
}

static void test_sigterm_during_load(void **state)
{
	enum { PROCS = 4 };
	struct load_arg a[PROCS];
	struct child ch[PROCS];
	int started[2], status;
	struct stat st;
	uint64_t t0, took;
	size_t total = 0, cap = 1 << 20, len = 0;
	char *sql, *rows, c, line[64];

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pipe2(started, O_CLOEXEC), 0);
	for (int i = 0; i < PROCS; i++) {
		a[i].socket = D.socket;
		a[i].conns = 8;
		a[i].depth = 16;
		a[i].started = started[1];
		snprintf(a[i].okfile, sizeof(a[i].okfile), "%s/ok.%d", scratch, i);
		assert_int_equal(child_start(&ch[i], IT_AGENT_UID, child_load, &a[i]), 0);
	}
	close(started[1]);
	for (int i = 0; i < PROCS; i++)
		if (read(started[0], &c, 1) != 1)
			break;
	close(started[0]);
	sleep_ms(200);
	t0 = now_ms();
	assert_int_equal(kill(D.pid, SIGTERM), 0);
	assert_int_equal(waitpid(D.pid, &status, 0), D.pid);
	took = now_ms() - t0;
	D.pid = 0;
	for (int i = 0; i < PROCS; i++)
		CHILD_OK(&ch[i]);
	fprintf(stderr, "SIGTERM under load: exited after %" PRIu64 " ms\n", took);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(took < 5000);
	assert_int_equal(stat(D.socket, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_true(file_has(D.log, "event=draining"));
	assert_true(file_has(D.log, "event=stopped"));
	assert_false(file_has(D.log, "event=drain_timeout"));
	/* Every OK the clients saw is in audit_log as OK for that peer pid and call id. */
	sql = malloc(cap);
	assert_non_null(sql);
	len = (size_t)snprintf(sql, cap, "SELECT count(DISTINCT (peer_pid, call_id)) FROM audit_log "
	    "WHERE instance_id = '%s' AND method = 'Resolve' AND status = 'OK' AND "
	    "(peer_pid, call_id) IN (VALUES (0, 0)", instance_id);
	for (int i = 0; i < PROCS; i++) {
		FILE *fp = fopen(a[i].okfile, "re");
		assert_non_null(fp);
		while (fgets(line, sizeof(line), fp) != NULL) {
			if (len + 64 > cap) {
				char *p = realloc(sql, cap *= 2);
				assert_non_null(p);
				sql = p;
			}
			len += (size_t)snprintf(sql + len, cap - len, ",(%d,%llu)", (int)ch[i].pid,
			    strtoull(line, NULL, 10));
			total++;
		}
		fclose(fp);
	}
	snprintf(sql + len, cap - len, ")");
	rows = pgtest_query_text(conninfo, sql);
	free(sql);
	assert_non_null(rows);
	fprintf(stderr, "%zu OK replies, %s with their audit row\n", total, rows);
	assert_true(total >= 400);
	assert_int_equal(strtoull(rows, NULL, 10), total);
	free(rows);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_setup_data, after_test),
		cmocka_unit_test_teardown(test_pipelining_matched_by_call_id, after_test),
		cmocka_unit_test_teardown(test_deadline_while_waiting_for_postgres, after_test),
		cmocka_unit_test_teardown(test_replies_out_of_order, after_test),
		cmocka_unit_test_teardown(test_hello_deadline_then_retry, after_test),
		cmocka_unit_test_teardown(test_protocol_errors_documented, after_test),
		cmocka_unit_test_teardown(test_value_size_and_name_limits, after_test),
		cmocka_unit_test_teardown(test_max_frame, after_test),
		cmocka_unit_test_teardown(test_max_refs, after_test),
		cmocka_unit_test_teardown(test_non_reader_cut_off_memory_bounded, after_test),
		cmocka_unit_test_teardown(test_bad_connections_leak_nothing, after_test),
		cmocka_unit_test_teardown(test_thousand_connections_pipelined, after_test),
		cmocka_unit_test_teardown(test_fairness_under_flood, after_test),
		cmocka_unit_test_teardown(test_idle_and_partial_frame_timeouts, after_test),
		cmocka_unit_test_teardown(test_max_connections, after_test),
		cmocka_unit_test_teardown(test_inflight_backpressure, after_test),
		cmocka_unit_test_teardown(test_max_value_setting, after_test),
		cmocka_unit_test_teardown(test_sighup_reopens_log, after_test),
		cmocka_unit_test_teardown(test_sigint_drains, after_test),
		cmocka_unit_test_teardown(test_accept_emfile_backs_off, after_test),
		cmocka_unit_test_teardown(test_stale_socket_replaced, after_test),
		cmocka_unit_test_teardown(test_sigterm_during_load, after_test),
	};

	/* Under AddressSanitizer everything is several times slower: less load, same checks. */
	if (IT_ASAN && getenv("PCS_SERVER_TEST_SCALE") == NULL)
		setenv("PCS_SERVER_TEST_SCALE", "2", 1);
	return cmocka_run_group_tests_name("server", tests, setup, teardown);
}
