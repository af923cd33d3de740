/*
 * Hostile input against the real pcsecretd, with real uids (fork + setuid, as in
 * test_server.c), over raw frames so the bytes are exactly the attacker's:
 *
 *  - strings that are not UTF-8 or hold a NUL are refused at the edge, naming the field and
 *    never echoing the bytes (a NUL used to cut "x\0../../beta" to "x" silently);
 *  - a role-less peer flooding such calls cannot make other agents' resolves fail (its rows
 *    used to poison the group-commit INSERT) nor flood the log;
 *  - with audit_log locked past a call's deadline, every call's audit row says what the
 *    client was told (it used to say OK for calls refused UNAVAILABLE), and received_at <= at.
 */
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
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "frame.h"
#include "it.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"

#define VAL1 "hostile-test-value-1"
#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define FLOOD_MS 4000

static struct it_daemon D;
static char conninfo[512];

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

static uint32_t mid(const char *name)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(d, name);

	if (m == NULL)
		abort();
	return (uint32_t)(m - d->methods) + 1;
}

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

/*
 * A Call frame around raw request bytes, with the method given by id or, when method_id is
 * 0, by the raw bytes of method (mlen of them, NULs and all): built by hand because
 * protobuf-c packs strings with strlen.
 */
static size_t raw_call(uint8_t *out, size_t cap, uint64_t id, uint32_t method_id,
    const char *method, size_t mlen, uint32_t timeout_ms, const uint8_t *req, size_t rlen)
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
	if (n + mlen + 16 > cap)
		abort();
	protobuf_c_message_pack(&call.base, out + 4);
	if (mlen > 0) {
		out[4 + n++] = 0x12;          /* field 2 (method), length-delimited */
		out[4 + n++] = (uint8_t)mlen; /* < 128 here */
		memcpy(out + 4 + n, method, mlen);
		n += mlen;
	}
	frame_put_n32(out, (uint32_t)n);
	return 4 + n;
}

/* A packed message into out; returns its length. */
static size_t packed(const ProtobufCMessage *m, uint8_t *out, size_t cap)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	if (n > cap)
		abort();
	return protobuf_c_message_pack(m, out);
}

/* ---- a connection and its replies ---- */

struct wire {
	int fd;
	uint8_t buf[1 << 17];
	size_t len;
};

static int wire_open(struct wire *w, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	w->len = 0;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((w->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(w->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(w->fd);
		w->fd = -1;
		return -1;
	}
	return 0;
}

static void wire_close(struct wire *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}

/* Next reply within timeout_ms: 1 (*out set), 0 EOF, -1 timeout, -2 error. */
static int wire_reply(struct wire *w, int timeout_ms, Pcsecret__V1__Reply **out)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	*out = NULL;
	for (;;) {
		if (w->len >= 4) {
			uint32_t n = (uint32_t)w->buf[0] << 24 | (uint32_t)w->buf[1] << 16 |
			    (uint32_t)w->buf[2] << 8 | w->buf[3];
			if (n > sizeof(w->buf) - 4)
				return -2;
			if (w->len - 4 >= n) {
				*out = pcsecret__v1__reply__unpack(NULL, n, w->buf + 4);
				memmove(w->buf, w->buf + 4 + n, w->len - 4 - n);
				w->len -= 4 + n;
				return *out != NULL ? 1 : -2;
			}
		}
		uint64_t now = now_ms();
		struct pollfd pf = { w->fd, POLLIN, 0 };
		if (now >= end)
			return -1;
		if (poll(&pf, 1, (int)(end - now)) <= 0)
			continue;
		ssize_t r = recv(w->fd, w->buf + w->len, sizeof(w->buf) - w->len, 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return 0;
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return -2;
		if (r > 0)
			w->len += (size_t)r;
	}
}

/* One call (a packed request) and its reply status, -1 when none; *out keeps the reply. */
static int rpc(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
    const ProtobufCMessage *req, Pcsecret__V1__Reply **out)
{
	static uint8_t body[65536], frame[65600];
	Pcsecret__V1__Reply *r = NULL;
	size_t blen = req ? packed(req, body, sizeof(body)) : 0, flen;
	int st;

	flen = raw_call(frame, sizeof(frame), id, method_id, NULL, 0, timeout_ms, body, blen);
	if (write_all(w->fd, frame, flen) != 0 || wire_reply(w, 20000, &r) != 1)
		return -1;
	st = r->call_id == id ? (int)r->status : -1;
	if (out != NULL)
		*out = r;
	else
		pcsecret__v1__reply__free_unpacked(r, NULL);
	return st;
}

static int hello(struct wire *w, uint64_t id, uint32_t timeout_ms)
{
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;

	h.protocol_version = 1;
	h.client = (char *)"test_hostile_input";
	return rpc(w, id, mid("Hello"), timeout_ms, &h.base, NULL);
}

static int session(struct wire *w)
{
	if (wire_open(w, D.socket) != 0)
		return -1;
	if (hello(w, 1, 0) != ST_OK) {
		wire_close(w);
		return -1;
	}
	return 0;
}

/* 1 when s holds nothing but printable ASCII (what an echo of hostile bytes must be). */
static int printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

/* ---- forked clients ---- */

typedef int (*child_fn)(void *arg, FILE *out);

struct child {
	pid_t pid;
	int fd;
};

static int child_start(struct child *ch, uid_t uid, child_fn fn, void *arg)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) != 0 || (ch->pid = fork()) < 0)
		return -1;
	if (ch->pid == 0) {
		gid_t g = IT_GROUP;
		FILE *out;
		close(p[0]);
		if (uid != 0 && (setgroups(1, &g) != 0 || setgid((gid_t)uid) != 0 ||
		    setuid(uid) != 0))
			_exit(3);
		if ((out = fdopen(p[1], "w")) == NULL)
			_exit(4);
		int r = fn(arg, out);
		fclose(out);
		_exit(r == 0 ? 0 : 1);
	}
	close(p[1]);
	ch->fd = p[0];
	return 0;
}

/* Exit status (-1 on a signal) and what the child wrote. */
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

static long file_lines(const char *path)
{
	FILE *fp = fopen(path, "re");
	long n = 0;
	int c;

	if (fp == NULL)
		return -1;
	while ((c = getc(fp)) != EOF)
		n += c == '\n';
	fclose(fp);
	return n;
}

static char *query(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *query(const char *fmt, ...)
{
	char sql[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return pgtest_query_text(conninfo, sql);
}

/* ---- set-up: acme, acme/k1, agent acme/bot (IT_AGENT_UID) bound to it; as root (admin) ---- */

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database("it_hostile", conninfo, sizeof(conninfo)) != 0)
		return -1;
	return it_daemon_start(&D, conninfo, NULL);
}

static int teardown(void **state)
{
	(void)state;
	it_daemon_stop(&D);
	it_daemon_cleanup(&D);
	return 0;
}

static void test_setup_data(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	Pcsecret__V1__SetAgentEnvRequest se = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;
	struct wire w;

	(void)state;
	if (!it_is_root())
		skip();
	assert_int_equal(session(&w), 0);
	cc.name = (char *)"acme";
	assert_int_equal(rpc(&w, 2, mid("CreateCompany"), 0, &cc.base, NULL), ST_OK);
	cs.company = (char *)"acme";
	cs.name = (char *)"k1";
	cs.value.data = (uint8_t *)VAL1;
	cs.value.len = strlen(VAL1);
	assert_int_equal(rpc(&w, 3, mid("CreateSecret"), 0, &cs.base, NULL), ST_OK);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = IT_AGENT_UID;
	assert_int_equal(rpc(&w, 4, mid("CreateAgent"), 0, &ca.base, NULL), ST_OK);
	ref.company = (char *)"acme";
	ref.name = (char *)"k1";
	se.company = (char *)"acme";
	se.agent = (char *)"bot";
	se.env_name = (char *)"K1";
	se.ref = &ref;
	assert_int_equal(rpc(&w, 5, mid("SetAgentEnv"), 0, &se.base, NULL), ST_OK);
	wire_close(&w);
}

/*
 * As an admin: a secret name with a NUL, a method name that is not UTF-8 and one full of
 * control characters. Each is refused naming the field (or the bounded, escaped method), and
 * the NUL name creates nothing (it used to create acme/x).
 */
static void test_bad_strings_refused_at_the_edge(void **state)
{
	static const uint8_t nul_name[] = {
		0x0a, 0x04, 'a', 'c', 'm', 'e',                                   /* company */
		0x12, 0x0c, 'x', 0, '.', '.', '/', '.', '.', '/', 'b', 'e', 't', 'a', /* name */
		0x22, 0x01, 'v',                                                  /* value */
	};
	static const char bad_method[] = "pcsecret.v1.PcSecret/Res\xc3\x28olve";
	static const char ctl_method[] = "pcsecret.v1.PcSecret/\x1b[2J\nlevel=error event=forged";
	Pcsecret__V1__DescribeSecretRequest ds = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;
	uint8_t frame[512];
	struct wire w;
	size_t n;
	char *rows;

	(void)state;
	if (!it_is_root())
		skip();
	assert_int_equal(session(&w), 0);

	n = raw_call(frame, sizeof(frame), 10, mid("CreateSecret"), NULL, 0, 0, nul_name,
	    sizeof(nul_name));
	assert_int_equal(write_all(w.fd, frame, n), 0);
	assert_int_equal(wire_reply(&w, 10000, &r), 1);
	assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_string_equal(r->message, "field CreateSecretRequest.name contains a NUL byte");
	pcsecret__v1__reply__free_unpacked(r, NULL);
	ds.company = (char *)"acme";
	ds.name = (char *)"x";
	assert_int_equal(rpc(&w, 11, mid("DescribeSecret"), 0, &ds.base, NULL),
	    PCSECRET__V1__STATUS_CODE__NOT_FOUND);

	n = raw_call(frame, sizeof(frame), 12, 0, bad_method, sizeof(bad_method) - 1, 0, NULL, 0);
	assert_int_equal(write_all(w.fd, frame, n), 0);
	assert_int_equal(wire_reply(&w, 10000, &r), 1);
	assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_string_equal(r->message, "field Call.method is not valid UTF-8");
	pcsecret__v1__reply__free_unpacked(r, NULL);

	n = raw_call(frame, sizeof(frame), 13, 0, ctl_method, sizeof(ctl_method) - 1, 0, NULL, 0);
	assert_int_equal(write_all(w.fd, frame, n), 0);
	assert_int_equal(wire_reply(&w, 10000, &r), 1);
	assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__UNIMPLEMENTED);
	assert_true(printable(r->message));
	assert_true(strlen(r->message) < 100);
	assert_non_null(strstr(r->message, "\\x1b[2J\\x0alevel"));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);

	/* Every audit row of this test is printable and names nothing but the field. */
	rows = query("SELECT string_agg(call_id || ':' || status || ':' || coalesce(message, ''), "
	    "'|' ORDER BY call_id) FROM audit_log WHERE call_id IN (10, 12, 13) AND "
	    "peer_uid = 0 AND method <> 'Hello'");
	assert_non_null(rows);
	fprintf(stderr, "audit rows: %s\n", rows);
	assert_true(printable(rows));
	assert_non_null(strstr(rows, "10:INVALID_ARGUMENT:field CreateSecretRequest.name contains a NUL byte"));
	assert_non_null(strstr(rows, "12:INVALID_ARGUMENT:field Call.method is not valid UTF-8"));
	free(rows);
	/* The forged line never reached the log. */
	assert_int_equal(it_file_contains(D.log, "\nlevel=error event=forged", 25), 0);
}

/* The stranger (no role): floods calls with bad strings, pipelined, for FLOOD_MS. */
static int child_flood(void *arg, FILE *out)
{
	static const char bad_method[] = "pcsecret.v1.PcSecret/\xff\xfe\xed\xa0\x80";
	static const uint8_t nul_name[] = { 0x0a, 0x04, 'a', 'c', 'm', 'e', 0x12, 0x03, 'x', 0,
		'y', 0x22, 0x01, 'v' };
	static const uint8_t bad_client[] = { 0x08, 0x01, 0x12, 0x03, 'c', 0xc0, 0x80 };
	static struct wire w;
	uint8_t batch[64 * 128];
	uint64_t end = now_ms() + FLOOD_MS, id = 1;
	unsigned long sent = 0, replies = 0, bad = 0, echoed = 0;

	(void)arg;
	while (now_ms() < end) {
		size_t o = 0;
		Pcsecret__V1__Reply *r;
		int k = 0;

		if (wire_open(&w, D.socket) != 0)
			return fprintf(out, "stranger cannot connect\n"), 1;
		/* 48 calls in one write: the three kinds in turn. */
		for (k = 0; k < 48; k++) {
			if (k % 3 == 0)
				o += raw_call(batch + o, sizeof(batch) - o, id++, 0, bad_method,
				    sizeof(bad_method) - 1, 0, NULL, 0);
			else if (k % 3 == 1)
				o += raw_call(batch + o, sizeof(batch) - o, id++, mid("CreateSecret"), NULL,
				    0, 0, nul_name, sizeof(nul_name));
			else
				o += raw_call(batch + o, sizeof(batch) - o, id++, mid("Hello"), NULL, 0, 0,
				    bad_client, sizeof(bad_client));
		}
		if (write_all(w.fd, batch, o) != 0) {
			wire_close(&w);
			continue;
		}
		sent += 48;
		while (k-- > 0 && wire_reply(&w, 10000, &r) == 1) {
			replies++;
			if (r->status == ST_OK)
				bad++;
			if (!printable(r->message))
				echoed++;
			pcsecret__v1__reply__free_unpacked(r, NULL);
		}
		wire_close(&w);
	}
	fprintf(out, "flood sent=%lu replies=%lu ok=%lu echoed=%lu\n", sent, replies, bad, echoed);
	return bad == 0 && echoed == 0 && replies > 0 ? 0 : 1;
}

/* The agent: resolves one after another for FLOOD_MS; counts OK and failed. */
static int child_resolver(void *arg, FILE *out)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT, *refs[1] = { &ref };
	static struct wire w;
	uint64_t end = now_ms() + FLOOD_MS, id = 100;
	unsigned long ok = 0, failed = 0;

	(void)arg;
	ref.company = (char *)"acme";
	ref.name = (char *)"k1";
	q.refs = refs;
	q.n_refs = 1;
	if (session(&w) != 0)
		return fprintf(out, "agent Hello failed\n"), 1;
	while (now_ms() < end) {
		int st = rpc(&w, id++, mid("Resolve"), 0, &q.base, NULL);
		if (st == ST_OK)
			ok++;
		else
			failed++;
	}
	wire_close(&w);
	fprintf(out, "resolves ok=%lu failed=%lu\n", ok, failed);
	return 0;
}

static void test_flood_of_bad_strings(void **state)
{
	struct child flood, agent;
	char fmsg[512], amsg[512], *rows;
	unsigned long ok = 0, failed = 1;
	long before, after;
	int fst, ast;

	(void)state;
	if (!it_is_root())
		skip();
	before = file_lines(D.log);
	assert_int_equal(child_start(&flood, IT_STRANGER_UID, child_flood, NULL), 0);
	assert_int_equal(child_start(&agent, IT_AGENT_UID, child_resolver, NULL), 0);
	fst = child_wait(&flood, fmsg, sizeof(fmsg));
	ast = child_wait(&agent, amsg, sizeof(amsg));
	sleep_ms(1500);   /* the last window's log_suppressed lines */
	after = file_lines(D.log);
	fprintf(stderr, "%s%slog lines during the flood: %ld\n", fmsg, amsg, after - before);
	assert_int_equal(fst, 0);
	assert_int_equal(ast, 0);
	assert_int_equal(sscanf(amsg, "resolves ok=%lu failed=%lu", &ok, &failed), 2);
	/* The agent saw no failure at all, and did real work. */
	assert_int_equal(failed, 0);
	assert_true(ok > 10);
	/* Every OK resolve has its OK audit row. */
	rows = query("SELECT count(*) FROM audit_log WHERE peer_pid = %d AND method = 'Resolve' "
	    "AND status = 'OK'", (int)agent.pid);
	assert_non_null(rows);
	assert_int_equal(strtoul(rows, NULL, 10), ok);
	free(rows);
	/* The stranger's rows were all written, safely (none says OK). */
	rows = query("SELECT count(*) FROM audit_log WHERE peer_pid = %d AND status = 'OK'",
	    (int)flood.pid);
	assert_string_equal(rows, "0");
	free(rows);
	/*
	 * The log stays bounded: each event is limited to 20 lines a second (a few events are
	 * involved: call, conn_open, conn_closed, ...) where it used to take a line per call.
	 */
	assert_true(after - before < 200L * (FLOOD_MS / 1000 + 2));
	assert_int_equal(it_file_contains(D.log, "event=log_suppressed", 20), 1);
}

/* ---- the audit row says what the client was told ---- */

struct table_lock {
	pid_t pid;
	int in;
};

static int lock_table(struct table_lock *l, const char *table)
{
	int in[2];
	char cmd[160], *held;
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
	end = now_ms() + 10000;
	while (now_ms() < end) {
		held = query("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
		    "WHERE c.relname = '%s' AND l.mode = 'AccessExclusiveLock' AND l.granted", table);
		int n = held != NULL ? atoi(held) : 0;
		free(held);
		if (n > 0)
			return 0;
		sleep_ms(20);
	}
	return -1;
}

static int lock_release(struct table_lock *l)
{
	const char *cmd = "COMMIT;\n\\q\n";
	int status;

	if (write_all(l->in, cmd, strlen(cmd)) != 0)
		return -1;
	close(l->in);
	if (waitpid(l->pid, &status, 0) != l->pid)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static const char *status_name(int st)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &pcsecret__v1__status_code__descriptor, st);

	return v != NULL ? v->name : "?";
}

/*
 * As the agent while audit_log is locked: 8 Resolves pipelined with a 1 s deadline and 2 with
 * 30 s, then a Hello with a 1 s deadline on a second connection. Reports "id:STATUS ..." for
 * every call, as the client saw it.
 */
static int child_locked(void *arg, FILE *out)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT, *refs[1] = { &ref };
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
	static struct wire w, w2;
	uint8_t body[256], frames[4096];
	size_t blen, o = 0;
	Pcsecret__V1__Reply *r;
	int rc = 0;

	(void)arg;
	ref.company = (char *)"acme";
	ref.name = (char *)"k1";
	q.refs = refs;
	q.n_refs = 1;
	h.protocol_version = 1;
	if (session(&w) != 0)
		return fprintf(out, "agent Hello failed\n"), 1;
	/* told the parent (through the report) nothing yet: it locks after our Hello */
	sleep_ms(1000);
	blen = packed(&q.base, body, sizeof(body));
	for (uint64_t id = 201; id <= 210; id++)
		o += raw_call(frames + o, sizeof(frames) - o, id, mid("Resolve"), NULL, 0,
		    id <= 208 ? 1000 : 30000, body, blen);
	if (write_all(w.fd, frames, o) != 0)
		return fprintf(out, "write failed\n"), 1;
	if (wire_open(&w2, D.socket) != 0)
		return fprintf(out, "second connection failed\n"), 1;
	blen = packed(&h.base, body, sizeof(body));
	o = raw_call(frames, sizeof(frames), 301, mid("Hello"), NULL, 0, 1000, body, blen);
	if (write_all(w2.fd, frames, o) != 0)
		return fprintf(out, "write failed\n"), 1;
	for (int i = 0; i < 10; i++) {
		if (wire_reply(&w, 30000, &r) != 1) {
			fprintf(out, "no reply\n");
			return 1;
		}
		fprintf(out, "%" PRIu64 ":%s ", (uint64_t)r->call_id, status_name((int)r->status));
		pcsecret__v1__reply__free_unpacked(r, NULL);
	}
	if (wire_reply(&w2, 30000, &r) != 1)
		return fprintf(out, "no Hello reply\n"), 1;
	fprintf(out, "%" PRIu64 ":%s", (uint64_t)r->call_id, status_name((int)r->status));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
	wire_close(&w2);
	return rc;
}

static void test_audit_row_says_what_client_was_told(void **state)
{
	struct table_lock lock = { -1, -1 };
	struct child ch;
	char msg[1024], *rows, *tok, *save = NULL;
	int st, unavailable = 0, ok = 0, n = 0;

	(void)state;
	if (!it_is_root())
		skip();
	assert_int_equal(child_start(&ch, IT_AGENT_UID, child_locked, NULL), 0);
	sleep_ms(400);   /* the agent's Hello is done; its calls come at 1 s */
	assert_int_equal(lock_table(&lock, "audit_log"), 0);
	sleep_ms(4000);  /* well past the 1 s deadlines */
	assert_int_equal(lock_release(&lock), 0);
	st = child_wait(&ch, msg, sizeof(msg));
	fprintf(stderr, "client saw: %s\n", msg);
	assert_int_equal(st, 0);
	rows = query("SELECT string_agg(call_id || ':' || status, ' ' ORDER BY call_id) || '|' || "
	    "bool_and(received_at <= at) || '|' || count(*) FROM audit_log WHERE peer_pid = %d AND "
	    "call_id > 200", (int)ch.pid);
	assert_non_null(rows);
	fprintf(stderr, "audit rows:  %s\n", rows);
	/* Every call the client heard about has exactly its status in its only row. */
	for (tok = strtok_r(msg, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		char needle[64];
		snprintf(needle, sizeof(needle), "%s", tok);
		if (strstr(rows, needle) == NULL)
			fail_msg("the client saw %s; the audit says %s", tok, rows);
		unavailable += strstr(tok, ":UNAVAILABLE") != NULL;
		ok += strstr(tok, ":OK") != NULL;
		n++;
	}
	assert_int_equal(n, 11);
	assert_non_null(strstr(rows, "|true|11"));
	/* The lock made the 1 s calls fail, and they were told so; the 30 s ones succeeded. */
	assert_true(unavailable >= 8);
	assert_true(ok >= 1);
	free(rows);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_setup_data),
		cmocka_unit_test(test_bad_strings_refused_at_the_edge),
		cmocka_unit_test(test_flood_of_bad_strings),
		cmocka_unit_test(test_audit_row_says_what_client_was_told),
	};
	return cmocka_run_group_tests_name("hostile_input", tests, setup, teardown);
}
