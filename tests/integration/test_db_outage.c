/*
 * PostgreSQL out of reach: calls fail UNAVAILABLE within the daemon's db_wait_ms, not after
 * their whole deadline, and the daemon serves again once the database is back. The outage is
 * real: the daemon's database stops accepting connections and its sessions are terminated.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "itcli.h"
#include "pgtest.h"

#define DB "it_db_outage"
#define VALUE "OUTAGE-VALUE-5c0e2a71"

static struct it_daemon D;
static char conninfo[512];

/* The agent resolves through pcrun (the SDK's default deadline: 10 s); returns its status. */
static int agent_resolve(struct it_result *r)
{
	const char *env[] = { "K=pcs:acme/k", NULL };
	const char *argv[] = { it_path("client/pcrun"), "--", "/bin/sh", "-c", "printf '%s' \"$K\"",
		NULL };

	assert_int_equal(it_run(IT_AGENT_UID, D.socket, env, NULL, argv, r), 0);
	return r->status;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int setup(void **state)
{
	const char *args[] = { "--db-wait-ms", "300", NULL };
	struct it_daemon_opts o = { 0 };

	(void)state;
	if (!it_is_root())
		return 0;
	o.args = args;
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start_opts(&D, conninfo, NULL, &o) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!it_is_root())
		return 0;
	pgtest_exec(getenv("PCS_TEST_CONNINFO"), "ALTER DATABASE " DB " ALLOW_CONNECTIONS true");
	it_daemon_cleanup(&D);
	return 0;
}

static void test_calls_fail_fast_without_database(void **state)
{
	const char *admin = getenv("PCS_TEST_CONNINFO");
	struct it_result r;
	char uid[16];
	double t0, took;
	int ok = 0;

	(void)state;
	if (!it_is_root())
		skip();
	snprintf(uid, sizeof(uid), "%d", IT_AGENT_UID);
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "company", "create", "acme", NULL), 0);
	it_result_free(&r);
	assert_int_equal(it_pcctl(0, D.socket, VALUE, &r, "secret", "create", "acme/k", NULL), 0);
	it_result_free(&r);
	assert_int_equal(
	    it_pcctl(0, D.socket, NULL, &r, "agent", "create", "acme/bot", "--uid", uid, NULL), 0);
	it_result_free(&r);
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "agent", "set-env", "acme/bot", "K",
	                     "pcs:acme/k", NULL),
	    0);
	it_result_free(&r);
	assert_int_equal(agent_resolve(&r), 0);
	assert_string_equal(r.out, VALUE);
	it_result_free(&r);

	/* The outage: no new sessions, and the daemon's are cut. */
	assert_int_equal(pgtest_exec(admin, "ALTER DATABASE " DB " ALLOW_CONNECTIONS false"), 0);
	assert_int_equal(pgtest_exec(admin,
	                     "SELECT pg_terminate_backend(pid) FROM "
	                     "pg_stat_activity WHERE datname = '" DB "'"),
	    0);
	usleep(200 * 1000);

	t0 = now_s();
	assert_int_not_equal(agent_resolve(&r), 0);
	took = now_s() - t0;
	assert_null(strstr(r.out, VALUE));
	assert_non_null(strstr(r.err, "UNAVAILABLE"));
	it_result_free(&r);
	/* Well inside the 10 s deadline (db_wait_ms is 300 ms; process start-up is the rest). */
	fprintf(stderr, "resolve without a database failed after %.2f s\n", took);
	assert_true(took < 5.0);
	/* The daemon itself is fine: it still accepts connections and answers. */
	assert_int_equal(kill(D.pid, 0), 0);

	assert_int_equal(pgtest_exec(admin, "ALTER DATABASE " DB " ALLOW_CONNECTIONS true"), 0);
	for (int i = 0; i < 40 && !ok; i++) {
		ok = agent_resolve(&r) == 0 && strcmp(r.out, VALUE) == 0;
		it_result_free(&r);
		if (!ok)
			usleep(250 * 1000);
	}
	assert_true(ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calls_fail_fast_without_database),
	};

	/* Every test here needs root: ctest reports the binary skipped (SKIP_RETURN_CODE). */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (an agent as another uid)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
