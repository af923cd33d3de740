/*
 * Hostile input against the real pcsecretd, with real uids (fork + setuid, through wire.h like
 * the test_server_* tests), over raw frames so the bytes are exactly the attacker's:
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "frame.h"
#include "it.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define VAL1 "hostile-test-value-1"
#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define FLOOD_MS 4000

static struct it_daemon D;
static char conninfo[512];

/* A packed message into out; returns its length. */
static size_t packed(const ProtobufCMessage *m, uint8_t *out, size_t cap)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	if (n > cap)
		abort();
	return protobuf_c_message_pack(m, out);
}

/* ---- a connection and its replies (wire.h) ---- */

/* One call (a packed request) and its reply status, -1 when none. */
static int rpc(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
    const ProtobufCMessage *req)
{
	return wire_rpc(w, id, method_id, timeout_ms, req, NULL, 20000);
}

static int session(struct wire *w)
{
	return wire_session(w, D.socket);
}

/* 1 when s holds nothing but printable ASCII (what an echo of hostile bytes must be). */
static int printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
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
	if (it_database("it_hostile_input", conninfo, sizeof(conninfo)) != 0)
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
	assert_int_equal(rpc(&w, 2, wire_mid("CreateCompany"), 0, &cc.base), ST_OK);
	cs.company = (char *)"acme";
	cs.name = (char *)"k1";
	cs.value.data = (uint8_t *)VAL1;
	cs.value.len = strlen(VAL1);
	assert_int_equal(rpc(&w, 3, wire_mid("CreateSecret"), 0, &cs.base), ST_OK);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = IT_AGENT_UID;
	assert_int_equal(rpc(&w, 4, wire_mid("CreateAgent"), 0, &ca.base), ST_OK);
	ref.company = (char *)"acme";
	ref.name = (char *)"k1";
	se.company = (char *)"acme";
	se.agent = (char *)"bot";
	se.env_name = (char *)"K1";
	se.ref = &ref;
	assert_int_equal(rpc(&w, 5, wire_mid("SetAgentEnv"), 0, &se.base), ST_OK);
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

	n = wire_raw_call(frame, sizeof(frame), 10, wire_mid("CreateSecret"), NULL, 0, 0, nul_name,
	    sizeof(nul_name));
	assert_int_equal(wire_write_all(w.fd, frame, n), 0);
	assert_int_equal(wire_reply(&w, 10000, &r), 1);
	assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_string_equal(r->message, "field CreateSecretRequest.name contains a NUL byte");
	pcsecret__v1__reply__free_unpacked(r, NULL);
	ds.company = (char *)"acme";
	ds.name = (char *)"x";
	assert_int_equal(rpc(&w, 11, wire_mid("DescribeSecret"), 0, &ds.base),
	    PCSECRET__V1__STATUS_CODE__NOT_FOUND);

	n = wire_raw_call(frame, sizeof(frame), 12, 0, bad_method, sizeof(bad_method) - 1, 0, NULL, 0);
	assert_int_equal(wire_write_all(w.fd, frame, n), 0);
	assert_int_equal(wire_reply(&w, 10000, &r), 1);
	assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_string_equal(r->message, "field Call.method is not valid UTF-8");
	pcsecret__v1__reply__free_unpacked(r, NULL);

	n = wire_raw_call(frame, sizeof(frame), 13, 0, ctl_method, sizeof(ctl_method) - 1, 0, NULL, 0);
	assert_int_equal(wire_write_all(w.fd, frame, n), 0);
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
	struct wire w;
	uint8_t batch[64 * 128];
	uint64_t end = wire_now_ms() + FLOOD_MS, id = 1;
	unsigned long sent = 0, replies = 0, bad = 0, echoed = 0;

	(void)arg;
	while (wire_now_ms() < end) {
		size_t o = 0;
		Pcsecret__V1__Reply *r;
		int k = 0;

		if (wire_open(&w, D.socket) != 0)
			return fprintf(out, "stranger cannot connect\n"), 1;
		/* 48 calls in one write: the three kinds in turn. */
		for (k = 0; k < 48; k++) {
			if (k % 3 == 0)
				o += wire_raw_call(batch + o, sizeof(batch) - o, id++, 0, bad_method,
				    sizeof(bad_method) - 1, 0, NULL, 0);
			else if (k % 3 == 1)
				o += wire_raw_call(batch + o, sizeof(batch) - o, id++,
				    wire_mid("CreateSecret"), NULL, 0, 0, nul_name, sizeof(nul_name));
			else
				o += wire_raw_call(batch + o, sizeof(batch) - o, id++, wire_mid("Hello"), NULL,
				    0, 0, bad_client, sizeof(bad_client));
		}
		if (wire_write_all(w.fd, batch, o) != 0) {
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
	struct wire w;
	uint64_t end = wire_now_ms() + FLOOD_MS, id = 100;
	unsigned long ok = 0, failed = 0;

	(void)arg;
	ref.company = (char *)"acme";
	ref.name = (char *)"k1";
	q.refs = refs;
	q.n_refs = 1;
	if (session(&w) != 0)
		return fprintf(out, "agent Hello failed\n"), 1;
	while (wire_now_ms() < end) {
		int st = rpc(&w, id++, wire_mid("Resolve"), 0, &q.base);
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
	struct wire_child flood, agent;
	char fmsg[512], amsg[512], *rows;
	unsigned long ok = 0, failed = 1;
	long before, after;
	int fst, ast;

	(void)state;
	if (!it_is_root())
		skip();
	before = file_lines(D.log);
	assert_int_equal(wire_child_start(&flood, IT_STRANGER_UID, child_flood, NULL), 0);
	assert_int_equal(wire_child_start(&agent, IT_AGENT_UID, child_resolver, NULL), 0);
	fst = wire_child_wait(&flood, fmsg, sizeof(fmsg));
	ast = wire_child_wait(&agent, amsg, sizeof(amsg));
	wire_sleep_ms(1500);   /* the last window's log_suppressed lines */
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
	struct wire w, w2;
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
	wire_sleep_ms(1000);
	blen = packed(&q.base, body, sizeof(body));
	for (uint64_t id = 201; id <= 210; id++)
		o += wire_raw_call(frames + o, sizeof(frames) - o, id, wire_mid("Resolve"), NULL, 0,
		    id <= 208 ? 1000 : 30000, body, blen);
	if (wire_write_all(w.fd, frames, o) != 0)
		return fprintf(out, "write failed\n"), 1;
	if (wire_open(&w2, D.socket) != 0)
		return fprintf(out, "second connection failed\n"), 1;
	blen = packed(&h.base, body, sizeof(body));
	o = wire_raw_call(frames, sizeof(frames), 301, wire_mid("Hello"), NULL, 0, 1000, body, blen);
	if (wire_write_all(w2.fd, frames, o) != 0)
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
	struct wire_lock lock = { -1, -1 };
	struct wire_child ch;
	char msg[1024], *rows, *tok, *save = NULL;
	int st, unavailable = 0, ok = 0, n = 0;

	(void)state;
	if (!it_is_root())
		skip();
	assert_int_equal(wire_child_start(&ch, IT_AGENT_UID, child_locked, NULL), 0);
	wire_sleep_ms(400);   /* the agent's Hello is done; its calls come at 1 s */
	assert_int_equal(wire_lock_table(&lock, conninfo, "audit_log"), 0);
	wire_sleep_ms(4000);  /* well past the 1 s deadlines */
	assert_int_equal(wire_lock_release(&lock), 0);
	st = wire_child_wait(&ch, msg, sizeof(msg));
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
	/* Every test here needs root: ctest reports the binary skipped (SKIP_RETURN_CODE). */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (clients as other uids)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("hostile_input", tests, setup, teardown);
}
