/*
 * The purge of expired deletions with two daemons on one database (docs/lifecycle.md): they
 * take turns through one advisory lock, so a secret is purged once, by one daemon, with one
 * audit row. Both run the purge every 100 ms. While the test holds the lock in a session of its
 * own, neither purges anything (a daemon that finds it taken skips its round instead of
 * waiting); once released, every expired deletion is purged exactly once; with daemon A
 * stopped, B alone purges what expires next.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include "it.h"
#include "itcli.h"
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_purge_turns"
#define NSECRETS 12

#define ST_OK PCSECRET__V1__STATUS_CODE__OK

enum { A, B };
static struct it_daemon D[2];
static struct itconn_env E[2];
static struct itconn adm;
static char conninfo[512];

/* Creates and deletes acme/<prefix><i> for i < n (restorable for a day). */
static void create_and_delete(const char *prefix, int n)
{
	char name[32];

	for (int i = 0; i < n; i++) {
		Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
		Pcsecret__V1__DeleteSecretRequest ds = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;

		snprintf(name, sizeof(name), "%s%d", prefix, i);
		cs.company = (char *)"acme";
		cs.name = name;
		cs.value.data = (uint8_t *)"purge-me";
		cs.value.len = strlen("purge-me");
		itconn_admin_ok(&adm, "CreateSecret", &cs.base);
		ds.company = (char *)"acme";
		ds.name = name;
		ds.recovery_days = 1;
		itconn_admin_ok(&adm, "DeleteSecret", &ds.base);
	}
}

/* The recovery window of every deletion of that prefix ends now: as the superuser. */
static void expire(const char *prefix)
{
	char sql[200];

	snprintf(sql, sizeof(sql),
	    "UPDATE secrets SET delete_after = now() - interval '1 second' WHERE name LIKE '%s%%'",
	    prefix);
	assert_int_equal(pgtest_exec(conninfo, sql), 0);
}

static long long released(const char *prefix)
{
	char sql[200];

	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM secrets WHERE name LIKE '%s%%' AND released_at IS NOT NULL",
	    prefix);
	return it_sql_count(conninfo, sql);
}

static void wait_released(const char *prefix, long long want)
{
	uint64_t until = wire_now_ms() + 15000;

	while (released(prefix) != want) {
		if (wire_now_ms() > until)
			fail_msg("%lld of %lld expired deletions %s* purged after 15 s",
			    released(prefix), want, prefix);
		wire_sleep_ms(50);
	}
}

static void test_one_daemon_at_a_time(void **state)
{
	PGconn *holder;
	PGresult *res;
	char sql[300];

	(void)state;
	create_and_delete("t", NSECRETS);

	/* The daemons' lock, held by the test: no round may purge anything meanwhile. */
	holder = PQconnectdb(conninfo);
	assert_int_equal(PQstatus(holder), CONNECTION_OK);
	res = PQexec(holder, "SELECT pg_advisory_lock(1885565808, 1970431845)");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	expire("t");
	/* Ten rounds of each daemon. */
	wire_sleep_ms(1000);
	assert_int_equal(released("t"), 0);
	assert_int_equal(
	    it_sql_count(conninfo, "SELECT count(*) FROM audit_log WHERE method = 'PurgeExpired'"),
	    0);
	/* Skipping, not waiting: no daemon's round is stuck behind the lock. */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type "
	                     "= 'Lock' AND datname = current_database()"),
	    0);
	PQfinish(holder);

	wait_released("t", NSECRETS);
	/* Once each: one OK row per secret, no second purge by the other daemon. */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'PurgeExpired' "
	                     "AND status = 'OK' AND secret LIKE 't%'"),
	    NSECRETS);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(DISTINCT secret) FROM audit_log WHERE method = "
	                     "'PurgeExpired' AND secret LIKE 't%'"),
	    NSECRETS);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                     "s.id = v.secret_id WHERE s.name LIKE 't%' AND (v.ciphertext IS "
	                     "NOT NULL OR v.state <> 'destroyed')"),
	    0);
	/* Every row was written by one of the two daemons. */
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM audit_log WHERE method = 'PurgeExpired' AND "
	    "instance_id::text NOT IN ('%s', '%s')",
	    E[A].instance, E[B].instance);
	assert_int_equal(it_sql_count(conninfo, sql), 0);
}

static void test_the_other_daemon_carries_on(void **state)
{
	char sql[300];

	(void)state;
	assert_int_equal(it_daemon_stop(&D[A]), 0);
	create_and_delete("u", 3);
	expire("u");
	wait_released("u", 3);
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM audit_log WHERE method = 'PurgeExpired' AND status = 'OK' AND "
	    "secret LIKE 'u%%' AND instance_id::text = '%s'",
	    E[B].instance);
	assert_int_equal(it_sql_count(conninfo, sql), 3);
}

static int setup(void **state)
{
	static const char *const args[] = { "--purge-interval-ms", "100", NULL };
	const struct it_daemon_opts opts = { args, 0, NULL };
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	struct itconn probe;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	/* One after the other: A applies the migrations and records the key's check value. */
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start_opts(&D[A], conninfo, NULL, &opts) != 0 ||
	    it_daemon_start_opts(&D[B], conninfo, D[A].keyfile, &opts) != 0)
		return -1;
	for (int d = A; d <= B; d++) {
		E[d].socket = D[d].socket;
		E[d].conninfo = conninfo;
	}
	/* B's instance id, from a session's Hello; the secrets are managed through B. */
	itconn_open(&E[A], &probe, 0, 1000000);
	wire_close(&probe.w);
	itconn_open(&E[B], &adm, 0, 2000000);
	cc.name = (char *)"acme";
	itconn_admin_ok(&adm, "CreateCompany", &cc.base);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_close(&adm.w);
	it_daemon_cleanup(&D[B]);
	it_daemon_cleanup(&D[A]);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_daemon_at_a_time),
		cmocka_unit_test(test_the_other_daemon_carries_on),
	};

	return cmocka_run_group_tests_name("purge_turns", tests, setup, teardown);
}
