/*
 * The server core's protocol over raw frames (srv.h): pipelined calls matched by call id,
 * replies out of order, deadlines while PostgreSQL waits behind a table lock (for a call and
 * for Hello), and every protocol error's documented answer.
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
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "frame.h"
#include "it.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "srv.h"
#include "wire.h"

#define ST_OK PCSECRET__V1__STATUS_CODE__OK

static int setup(void **state)
{
	(void)state;
	/*
	 * What happens while calls wait for PostgreSQL (tables held locked) is tested on the
	 * database path: with the cache off, every Hello and Resolve reads PostgreSQL, as any
	 * call does that the cache cannot answer. The cached path has its own tests
	 * (test_cache_check, test_two_daemons).
	 */
	static const char *const no_cache[] = { "--cache-max-bytes", "0", NULL };

	return srv_setup_args("it_server_protocol", no_cache);
}

static int teardown(void **state)
{
	(void)state;
	srv_teardown();
	return 0;
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
	assert_int_equal(wire_session(&w, srv.d.socket), 0);
	for (int i = 0; i < N; i++) {
		const ProtobufCMessage *m;
		uint32_t method;
		size_t len;
		uint8_t *f;
		switch (i % 4) {
		case 0:
			m = &lc.base;
			method = wire_mid("ListCompanies");
			expect[i] = ST_OK;
			break;
		case 1:
			m = &ds.base;
			method = wire_mid("DescribeSecret");
			expect[i] = ST_OK;
			break;
		case 2:
			m = &dn.base;
			method = wire_mid("DescribeSecret");
			expect[i] = PCSECRET__V1__STATUS_CODE__NOT_FOUND;
			break;
		default:
			m = &bad.base;
			method = wire_mid("CreateCompany");
			expect[i] = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
			break;
		}
		/* call id = 1000003 * (i + 1): not sequential, and i is recoverable. */
		f = wire_call_frame(1000003ull * (uint64_t)(i + 1), method, NULL, 0, m, &len);
		assert_non_null(f);
		assert_true(off + len <= sizeof(all));
		memcpy(all + off, f, len);
		off += len;
		frame_free(f, len);
	}
	assert_int_equal(wire_write_all(w.fd, all, off), 0);
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
	assert_int_equal(srv_list_companies(&w, 77), ST_OK);
	wire_close(&w);
}

/* ---- deadlines while PostgreSQL waits, and replies out of order ---- */

struct deadline_arg {
	const char *socket;
	int go;    /* read end: the parent released the lock */
	int ready; /* write end: told when the DEADLINE_EXCEEDED reply came */
};

/* As the agent: a Resolve stuck behind the lock must end at its deadline. */
static int child_deadline(void *a, FILE *out)
{
	struct deadline_arg *d = a;
	struct wire_resolve m;
	Pcsecret__V1__Reply *r = NULL;
	struct wire w;
	uint64_t t0, took;
	char c;
	int rc = 1;

	wire_resolve_init(&m, "k1", 1);
	if (wire_session(&w, d->socket) != 0)
		return wire_child_report(out, "agent Hello failed");
	t0 = wire_now_ms();
	if (wire_send_call(&w, 7001, wire_mid("Resolve"), 300, &m.req.base) != 0 ||
	    wire_reply(&w, 5000, &r) != 1) {
		wire_child_report(out, "no reply to the blocked Resolve within 5 s");
		goto out;
	}
	took = wire_now_ms() - t0;
	if (r->call_id != 7001 || r->status != PCSECRET__V1__STATUS_CODE__DEADLINE_EXCEEDED ||
	    strstr(r->message, "deadline") == NULL) {
		wire_child_report(out, "blocked Resolve: call %" PRIu64 " status %d (%s)",
		    (uint64_t)r->call_id, (int)r->status, r->message);
		goto out;
	}
	if (took < 250 || took > 2500) {
		wire_child_report(
		    out, "DEADLINE_EXCEEDED after %" PRIu64 " ms for a 300 ms deadline", took);
		goto out;
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	r = NULL;
	if (write(d->ready, "d", 1) != 1 || read(d->go, &c, 1) != 1)
		goto out;
	/* The late result of 7001 must never arrive; the next reply is this call's. */
	if (wire_send_call(&w, 7002, wire_mid("Resolve"), 0, &m.req.base) != 0 ||
	    wire_reply(&w, 10000, &r) != 1) {
		wire_child_report(out, "no reply after the lock was released");
		goto out;
	}
	if (r->call_id != 7002 ||
	    !wire_resolve_ok(r, 1, (const uint8_t *)SRV_VAL1, strlen(SRV_VAL1))) {
		wire_child_report(out, "after release: call %" PRIu64 " status %d (%s)",
		    (uint64_t)r->call_id, (int)r->status, r->message);
		goto out;
	}
	rc = 0;
out:
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
	wire_resolve_free(&m);
	return rc;
}

static void test_deadline_while_waiting_for_postgres(void **state)
{
	struct wire_lock lock;
	struct deadline_arg a;
	struct wire_child ch;
	int go[2], ready[2];
	char c, sql[256], *rows;

	(void)state;
	if (!srv_need_root())
		skip();
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(wire_lock_table(&lock, srv.conninfo, "secrets"), 0);
	a.socket = srv.d.socket;
	a.go = go[0];
	a.ready = ready[1];
	assert_int_equal(wire_child_start(&ch, IT_AGENT_UID, child_deadline, &a), 0);
	close(go[0]);
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1) {
		wire_lock_release(&lock);
		WIRE_CHILD_OK(&ch);
		fail_msg("the agent never saw DEADLINE_EXCEEDED");
	}
	/* The daemon still serves calls that do not need the locked table. */
	assert_true(srv_serves(srv.d.socket));
	assert_int_equal(wire_lock_release(&lock), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);
	close(ready[0]);
	WIRE_CHILD_OK(&ch);
	/* The deadline was audited for that call. */
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM audit_log WHERE instance_id = '%s' AND "
	    "peer_pid = %d AND call_id = 7001 AND status = 'DEADLINE_EXCEEDED'",
	    srv.instance_id, (int)ch.pid);
	rows = pgtest_query_text(srv.conninfo, sql);
	assert_non_null(rows);
	assert_string_equal(rows, "1");
	free(rows);
	/* For the log: what else the audit says about it (the late statement may commit). */
	snprintf(sql, sizeof(sql),
	    "SELECT string_agg(status, ',' ORDER BY id) FROM audit_log "
	    "WHERE instance_id = '%s' AND peer_pid = %d AND call_id = 7001",
	    srv.instance_id, (int)ch.pid);
	rows = pgtest_query_text(srv.conninfo, sql);
	fprintf(stderr, "audit rows of the timed-out call: %s\n", rows ? rows : "?");
	free(rows);
	assert_true(srv_serves(srv.d.socket));
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
	struct wire_resolve m;
	uint8_t *f1, *f2;
	size_t l1, l2;
	struct wire w;
	char c;
	int rc = 1;

	h.protocol_version = 1;
	wire_resolve_init(&m, "k1", 1);
	f1 = wire_call_frame(1, wire_mid("Hello"), NULL, 300, &h.base, &l1);
	f2 = wire_call_frame(2, wire_mid("Resolve"), NULL, 0, &m.req.base, &l2);
	if (wire_open(&w, d->socket) != 0 || wire_write_all(w.fd, f1, l1) != 0 ||
	    wire_write_all(w.fd, f2, l2) != 0 || wire_reply(&w, 5000, &r1) != 1 ||
	    wire_reply(&w, 5000, &r2) != 1) {
		wire_child_report(out, "no replies to Hello + Resolve");
		goto out;
	}
	if (r1->call_id != 1 || r1->status != PCSECRET__V1__STATUS_CODE__DEADLINE_EXCEEDED ||
	    r2->call_id != 2 || r2->status != PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION ||
	    strstr(r2->message, "call Hello before Resolve") == NULL) {
		wire_child_report(out, "got %" PRIu64 ":%d (%s), %" PRIu64 ":%d (%s)",
		    (uint64_t)r1->call_id, (int)r1->status, r1->message, (uint64_t)r2->call_id,
		    (int)r2->status, r2->message);
		goto out;
	}
	if (write(d->ready, "d", 1) != 1 || read(d->go, &c, 1) != 1)
		goto out;
	if (wire_hello(&w, 3) != ST_OK) {
		wire_child_report(out, "Hello after a timed-out Hello was refused");
		goto out;
	}
	if (wire_rpc(&w, 4, wire_mid("Resolve"), 0, &m.req.base, &r, 10000) != ST_OK ||
	    !wire_resolve_ok(r, 1, (const uint8_t *)SRV_VAL1, strlen(SRV_VAL1))) {
		wire_child_report(out, "Resolve after the second Hello failed");
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
	wire_resolve_free(&m);
	return rc;
}

static void test_hello_deadline_then_retry(void **state)
{
	struct wire_lock lock;
	struct deadline_arg a;
	struct wire_child ch;
	int go[2], ready[2];
	char c;

	(void)state;
	if (!srv_need_root())
		skip();
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(wire_lock_table(&lock, srv.conninfo, "principals"), 0);
	a.socket = srv.d.socket;
	a.go = go[0];
	a.ready = ready[1];
	assert_int_equal(wire_child_start(&ch, IT_AGENT_UID, child_hello_retry, &a), 0);
	close(go[0]);
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1) {
		wire_lock_release(&lock);
		WIRE_CHILD_OK(&ch);
		fail_msg("the agent's first Hello did not time out");
	}
	assert_int_equal(wire_lock_release(&lock), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);
	close(ready[0]);
	WIRE_CHILD_OK(&ch);
}

/* Call 1 waits for a lock, call 2 does not: 2's reply comes first, then 1's. */
static void test_replies_out_of_order(void **state)
{
	Pcsecret__V1__DescribeSecretRequest ds = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__ListCompaniesRequest lc = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	Pcsecret__V1__Reply *r;
	struct wire_lock lock;
	struct wire w;

	(void)state;
	ds.company = (char *)"acme";
	ds.name = (char *)"k1";
	assert_int_equal(wire_session(&w, srv.d.socket), 0);
	assert_int_equal(wire_lock_table(&lock, srv.conninfo, "secrets"), 0);
	assert_int_equal(wire_send_call(&w, 11, wire_mid("DescribeSecret"), 0, &ds.base), 0);
	assert_int_equal(wire_send_call(&w, 12, wire_mid("ListCompanies"), 0, &lc.base), 0);
	assert_int_equal(wire_reply(&w, 5000, &r), 1);
	assert_int_equal(r->call_id, 12);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	/* 11 is still waiting for the table. */
	assert_int_equal(wire_reply(&w, 300, &r), -1);
	assert_int_equal(wire_lock_release(&lock), 0);
	assert_int_equal(wire_reply(&w, 5000, &r), 1);
	assert_int_equal(r->call_id, 11);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
}

/* ---- protocol errors (srv_bad_input) ---- */

static void test_protocol_errors_documented(void **state)
{
	struct wire bystander;

	(void)state;
	/* A connection that is not at fault keeps working through all of it. */
	assert_int_equal(wire_session(&bystander, srv.d.socket), 0);
	for (int k = 0; k < SRV_BAD_KINDS; k++) {
		const char *why = srv_bad_input(srv.d.socket, (enum srv_bad)k);
		if (why != NULL)
			fail_msg("%s", why);
		assert_int_equal(srv_list_companies(&bystander, 1000 + (uint64_t)k), ST_OK);
	}
	wire_close(&bystander);
	assert_true(srv_serves(srv.d.socket));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(srv_test_setup_data, srv_after_test),
		cmocka_unit_test_teardown(test_pipelining_matched_by_call_id, srv_after_test),
		cmocka_unit_test_teardown(test_deadline_while_waiting_for_postgres, srv_after_test),
		cmocka_unit_test_teardown(test_replies_out_of_order, srv_after_test),
		cmocka_unit_test_teardown(test_hello_deadline_then_retry, srv_after_test),
		cmocka_unit_test_teardown(test_protocol_errors_documented, srv_after_test),
	};

	return cmocka_run_group_tests_name("server_protocol", tests, setup, teardown);
}
