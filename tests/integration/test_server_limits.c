/*
 * The server core's limits over raw frames (srv.h): value size, names, max_frame, max_refs
 * on the main daemon; on a second one with tight settings, the idle and partial-frame
 * timeouts, max_connections, max_inflight backpressure and max_value; and accept() at the
 * descriptor limit, which backs off instead of spinning.
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

static struct it_daemon T, E;
static char tlog[128];

static int setup(void **state)
{
	(void)state;
	return srv_setup("it_server_limits");
}

static int teardown(void **state)
{
	(void)state;
	it_daemon_cleanup(&T);
	it_daemon_cleanup(&E);
	srv_teardown();
	return 0;
}

/* ---- limits ---- */

static int create_company(struct wire *w, uint64_t id, const char *name)
{
	Pcsecret__V1__CreateCompanyRequest q = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;

	q.name = (char *)name;
	return wire_rpc(w, id, wire_mid("CreateCompany"), 0, &q.base, NULL, 10000);
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
	assert_int_equal(wire_session(&w, srv.d.socket), 0);
	/* Exactly 64 KiB is accepted (a frame over 64 KiB, read in several pieces)... */
	assert_int_equal(srv_create_secret(&w, 2, "max-size", v, 65536), ST_OK);
	/* ...one byte more is refused and the message names the limit. */
	q.company = (char *)"acme";
	q.name = (char *)"too-big";
	q.value.data = v;
	q.value.len = 65537;
	assert_int_equal(wire_rpc(&w, 3, wire_mid("CreateSecret"), 0, &q.base, &r, 10000),
	    PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_non_null(strstr(r->message, "65536"));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	/* An empty value. */
	assert_int_equal(srv_create_secret(&w, 4, "empty", v, 0),
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
		assert_int_equal(wire_rpc(&w, 6, wire_mid("CreateCompany"), 0, &cq.base, &r, 10000),
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
	assert_int_equal(wire_session(&w, srv.d.socket), 0);
	frame_put_n32(hdr, 1048577);
	assert_int_equal(wire_write_all(w.fd, hdr, 4), 0);
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
		assert_int_equal(wire_session(&w, srv.d.socket), 0);
		assert_int_equal(wire_write_all(w.fd, big, n), 0);
		free(big);
		assert_int_equal(wire_reply(&w, 5000, &r), 1);
		assert_int_equal(r->status, PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
		assert_non_null(strstr(r->message, "not a valid"));
		pcsecret__v1__reply__free_unpacked(r, NULL);
		wire_close(&w);
	}
	assert_true(srv_serves(srv.d.socket));
}

struct refs_arg {
	const char *socket;
};

static int child_max_refs(void *a, FILE *out)
{
	struct refs_arg *ra = a;
	struct wire_resolve ok, over;
	Pcsecret__V1__Reply *r = NULL;
	struct wire w;
	int rc = 1, st;

	wire_resolve_init(&ok, "k1", 256);
	wire_resolve_init(&over, "k1", 257);
	if (wire_session(&w, ra->socket) != 0) {
		wire_child_report(out, "agent Hello failed");
		goto out;
	}
	st = wire_rpc(&w, 2, wire_mid("Resolve"), 0, &ok.req.base, &r, 10000);
	if (st != ST_OK || !wire_resolve_ok(r, 256, (const uint8_t *)SRV_VAL1, strlen(SRV_VAL1))) {
		wire_child_report(out, "256 refs: status %d", st);
		goto out;
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	r = NULL;
	st = wire_rpc(&w, 3, wire_mid("Resolve"), 0, &over.req.base, &r, 10000);
	if (st != PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT || strstr(r->message, "max_refs") ==
	    NULL || strstr(r->message, "256") == NULL) {
		wire_child_report(out, "257 refs: status %d (%s)", st, r ? r->message : "");
		goto out;
	}
	rc = 0;
out:
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
	wire_resolve_free(&ok);
	wire_resolve_free(&over);
	return rc;
}

static void test_max_refs(void **state)
{
	struct refs_arg a = { srv.d.socket };
	struct wire_child ch;

	(void)state;
	if (!srv_need_root())
		skip();
	assert_int_equal(wire_child_start(&ch, IT_AGENT_UID, child_max_refs, &a), 0);
	WIRE_CHILD_OK(&ch);
}

/* ---- timeouts, connection cap and backpressure on a daemon with tight limits (T) ---- */

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
	assert_int_equal(srv_start_tight(&T, tlog, sizeof(tlog)), 0);
	assert_int_equal(wire_session(&w[IDLE], T.socket), 0);
	assert_int_equal(wire_open(&w[SILENT], T.socket), 0);
	assert_int_equal(wire_open(&w[STALLED], T.socket), 0);
	assert_int_equal(wire_open(&w[TRICKLE], T.socket), 0);
	assert_int_equal(wire_session(&w[BUSY], T.socket), 0);
	frame_put_n32(hdr, 100);
	assert_int_equal(wire_write_all(w[STALLED].fd, hdr, 2), 0);
	assert_int_equal(wire_write_all(w[TRICKLE].fd, hdr, 4), 0);
	t0 = wire_now_ms();
	next_trickle = next_busy = t0 + 150;
	while (wire_now_ms() - t0 < 6000) {
		uint64_t now = wire_now_ms();
		for (int i = 0; i < N; i++) {
			struct pollfd pf = { w[i].fd, POLLIN, 0 };
			if (closed_at[i] || i == BUSY)
				continue;
			if (poll(&pf, 1, 0) > 0 && wire_fill(&w[i], 0) <= 0)
				closed_at[i] = now - t0;
		}
		if (!closed_at[TRICKLE] && now >= next_trickle) {
			/* 1 byte per 150 ms: activity, but the frame would take 15 s. */
			if (wire_write_all(w[TRICKLE].fd, "x", 1) != 0)
				closed_at[TRICKLE] = now - t0;
			next_trickle = now + 150;
		}
		if (now >= next_busy && now - t0 < 5000) {
			assert_int_equal(srv_list_companies(&w[BUSY], ++busy_id), ST_OK);
			next_busy = now + 500;
		}
		wire_sleep_ms(10);
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
	assert_int_equal(srv_list_companies(&w[BUSY], 999), ST_OK);
	for (int i = 0; i < N; i++)
		wire_close(&w[i]);
	assert_true(srv_file_has(tlog, "event=conn_read_timeout"));
}

/* max_connections = 8: the ninth gets RESOURCE_EXHAUSTED and is closed; the rest serve. */
static void test_max_connections(void **state)
{
	struct wire w[8], extra;
	Pcsecret__V1__Reply *r;
	int ok = 0;

	(void)state;
	wire_sleep_ms(200); /* the previous test's connections are gone */
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
		assert_int_equal(srv_list_companies(&w[i], 50), ST_OK);
	/* A slot that frees up is taken by the next peer. */
	wire_close(&w[0]);
	for (int tries = 0; tries < 40 && !ok; tries++) {
		wire_sleep_ms(50);
		ok = srv_serves(T.socket);
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
	struct wire_lock lock;
	struct wire w;

	(void)state;
	ds.company = (char *)"acme";
	ds.name = (char *)"k1";
	wire_sleep_ms(200);
	assert_int_equal(wire_session(&w, T.socket), 0);
	assert_int_equal(wire_lock_table(&lock, srv.conninfo, "secrets"), 0);
	assert_int_equal(wire_send_call(&w, 11, wire_mid("DescribeSecret"), 0, &ds.base), 0);
	assert_int_equal(wire_send_call(&w, 12, wire_mid("ListCompanies"), 0, &lc.base), 0);
	/* On the main daemon 12 overtakes 11 (test_replies_out_of_order); here it waits. */
	assert_int_equal(wire_reply(&w, 700, &r), -1);
	assert_int_equal(wire_lock_release(&lock), 0);
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
	assert_int_equal(srv_create_secret(&w, 2, "max-value-ok", v, 1024), ST_OK);
	q.company = (char *)"acme";
	q.name = (char *)"max-value-over";
	q.value.data = v;
	q.value.len = 1025;
	assert_int_equal(wire_rpc(&w, 3, wire_mid("CreateSecret"), 0, &q.base, &r, 10000),
	    PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT);
	assert_non_null(strstr(r->message, "max_value"));
	assert_non_null(strstr(r->message, "1024"));
	pcsecret__v1__reply__free_unpacked(r, NULL);
	wire_close(&w);
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
	if (!srv_need_root())
		skip();
	o.args = args;
	o.nofile = 40;
	assert_int_equal(it_daemon_start_opts(&E, srv.conninfo, srv.d.keyfile, &o), 0);
	/* Connections until one is no longer accepted (it waits in the listen backlog). */
	while (n < 64) {
		assert_int_equal(wire_open(&w[n], E.socket), 0);
		Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
		Pcsecret__V1__Reply *r;
		h.protocol_version = 1;
		assert_int_equal(wire_send_call(&w[n], 1, wire_mid("Hello"), 0, &h.base), 0);
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
	cpu0 = wire_proc_cpu_ms(E.pid);
	wire_sleep_ms(2000);
	cpu1 = wire_proc_cpu_ms(E.pid);
	fprintf(stderr, "EMFILE after %d connections; CPU over 2 s: %ld ms\n", n - 1, cpu1 - cpu0);
	assert_true(cpu0 >= 0 && cpu1 - cpu0 < (SRV_ASAN ? 600 : 300));
	assert_true(srv_file_has(E.log, "event=accept_backoff"));
	/* Accepted connections still work. */
	assert_int_equal(srv_list_companies(&w[0], 2), ST_OK);
	for (int i = 0; i < n; i++)
		wire_close(&w[i]);
	for (int tries = 0; tries < 60 && !ok; tries++) {
		wire_sleep_ms(100);
		ok = srv_serves(E.socket);
	}
	assert_true(ok);
	assert_int_equal(it_daemon_stop(&E), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(srv_test_setup_data, srv_after_test),
		cmocka_unit_test_teardown(test_value_size_and_name_limits, srv_after_test),
		cmocka_unit_test_teardown(test_max_frame, srv_after_test),
		cmocka_unit_test_teardown(test_max_refs, srv_after_test),
		cmocka_unit_test_teardown(test_idle_and_partial_frame_timeouts, srv_after_test),
		cmocka_unit_test_teardown(test_max_connections, srv_after_test),
		cmocka_unit_test_teardown(test_inflight_backpressure, srv_after_test),
		cmocka_unit_test_teardown(test_max_value_setting, srv_after_test),
		cmocka_unit_test_teardown(test_accept_emfile_backs_off, srv_after_test),
	};

	return cmocka_run_group_tests_name("server_limits", tests, setup, teardown);
}
