/*
 * Group commit of audit rows against a real PostgreSQL: rows queued together go out in few
 * multi-row INSERTs, every caller hears back once its row is durable, and a batch that
 * cannot be written fails every caller in it (fail-closed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <event2/event.h>

#include "audit.h"
#include "migrate.h"
#include "pgtest.h"
#include "store.h"

#define ROWS 1200

static char conninfo[512];
static int done, failed, late;

static void on_done(int status, void *arg)
{
	(void)arg;
	done++;
	if (status == AUDIT_LATE)
		late++;
	else if (status != 0)
		failed++;
}

static int setup(void **state)
{
	struct store_sync *db = NULL;
	pcs_error err;
	int r;

	(void)state;
	if (pgtest_create_db("it_audit", conninfo, sizeof(conninfo)) != 0)
		return -1;
	r = store_sync_connect(conninfo, &db, &err) == 0 && migrate_run(db, &err) == 0 ? 0 : -1;
	store_sync_close(db);
	return r;
}

static void run(int rows, int cancel_every, unsigned long *batches)
{
	struct event_base *base = event_base_new();
	struct store *s = NULL;
	struct audit_queue *q;
	pcs_error err;
	struct audit_row row = { "00000000-0000-0000-0000-000000000001", 0, 1000, 1000, 42,
		"agent acme/bot", "Resolve", "acme", "acme/key", "latest", "OK", NULL, 0, 0, NULL,
		NULL, 0 };

	assert_int_equal(store_open(base, conninfo, 2, &s, &err), 0);
	assert_non_null(q = audit_queue_new(base, s));
	done = failed = late = 0;
	for (int i = 0; i < rows; i++) {
		struct audit_entry *e;
		row.call_id = (unsigned long long)i + 1;
		assert_non_null(e = audit_enqueue(q, &row, on_done, NULL));
		if (cancel_every && i % cancel_every == 0) {
			audit_cancel(e);
			done++; /* counted: its callback must not run */
		}
	}
	for (int spins = 0; done < rows && spins < 20000; spins++)
		event_base_loop(base, EVLOOP_ONCE);
	*batches = audit_queue_batches(q);
	audit_queue_free(q);
	store_close(s);
	event_base_free(base);
}

static void test_rows_share_batches(void **state)
{
	unsigned long batches;
	char *count;

	(void)state;
	run(ROWS, 0, &batches);
	assert_int_equal(done, ROWS);
	assert_int_equal(failed, 0);
	/* 1200 rows queued at once: three INSERTs of at most 500, not 1200. */
	assert_true(batches >= 3 && batches <= 4);
	count = pgtest_query_text(
	    conninfo, "SELECT count(*) FROM audit_log WHERE method = 'Resolve'");
	assert_string_equal(count, "1200");
	free(count);
}

static void test_cancelled_rows_do_not_call_back(void **state)
{
	unsigned long batches;

	(void)state;
	run(100, 10, &batches);
	assert_int_equal(done, 100);
	assert_int_equal(failed, 0);
}

static void test_unwritable_batch_fails_every_caller(void **state)
{
	unsigned long batches;

	(void)state;
	assert_int_equal(
	    pgtest_exec(conninfo, "ALTER TABLE audit_log RENAME TO audit_log_gone"), 0);
	run(50, 0, &batches);
	assert_int_equal(
	    pgtest_exec(conninfo, "ALTER TABLE audit_log_gone RENAME TO audit_log"), 0);
	assert_int_equal(done, 50);
	assert_int_equal(failed, 50);
}

/* Runs the loop until every one of rows callbacks ran. */
static void spin(struct event_base *base, int rows)
{
	for (int spins = 0; done < rows && spins < 20000; spins++)
		event_base_loop(base, EVLOOP_ONCE);
}

/*
 * One row PostgreSQL refuses (an instance id that is not a uuid) among 99 good ones queued
 * together: the batch is retried in halves, so only that row's caller fails.
 */
static void test_bad_row_fails_only_its_caller(void **state)
{
	struct event_base *base = event_base_new();
	struct store *s = NULL;
	struct audit_queue *q;
	pcs_error err;
	struct audit_row row = { "00000000-0000-0000-0000-000000000002", 0, 1000, 1000, 42,
		"uid 1000 (before Hello)", "Hello", NULL, NULL, NULL, "OK", NULL, 0, 0, NULL, NULL,
		0 };
	char *count;

	(void)state;
	assert_int_equal(store_open(base, conninfo, 2, &s, &err), 0);
	assert_non_null(q = audit_queue_new(base, s));
	done = failed = late = 0;
	for (int i = 0; i < 100; i++) {
		row.call_id = 5000 + (unsigned long long)i;
		row.instance_id = i == 37 ? "not-a-uuid" : "00000000-0000-0000-0000-000000000002";
		assert_non_null(audit_enqueue(q, &row, on_done, NULL));
	}
	spin(base, 100);
	assert_int_equal(done, 100);
	assert_int_equal(failed, 1);
	assert_true(audit_queue_retries(q) >= 1);
	audit_queue_free(q);
	store_close(s);
	event_base_free(base);
	count = pgtest_query_text(conninfo,
	    "SELECT count(*) FROM audit_log WHERE "
	    "instance_id = '00000000-0000-0000-0000-000000000002'");
	assert_string_equal(count, "99");
	free(count);
}

/*
 * Strings that would fail a statement (invalid UTF-8) or forge lines (control characters)
 * are escaped, and the row is written.
 */
static void test_unsafe_strings_are_escaped(void **state)
{
	struct event_base *base = event_base_new();
	struct store *s = NULL;
	struct audit_queue *q;
	pcs_error err;
	struct audit_row row = { "00000000-0000-0000-0000-000000000003", 77, 1000, 1000, 42,
		"uid 1000 (before Hello)", "unknown", "ac\xc3\x28me", "x\n\x1b[31m", NULL,
		"INVALID_ARGUMENT", "bad \xed\xa0\x80 surrogate", 0, 0, NULL, NULL, 0 };
	char *got;

	(void)state;
	assert_int_equal(store_open(base, conninfo, 2, &s, &err), 0);
	assert_non_null(q = audit_queue_new(base, s));
	done = failed = late = 0;
	assert_non_null(audit_enqueue(q, &row, on_done, NULL));
	spin(base, 1);
	assert_int_equal(failed, 0);
	audit_queue_free(q);
	store_close(s);
	event_base_free(base);
	got = pgtest_query_text(conninfo,
	    "SELECT company || '|' || secret || '|' || message "
	    "FROM audit_log WHERE instance_id = '00000000-0000-0000-0000-000000000003'");
	assert_non_null(got);
	assert_string_equal(got, "ac\\xc3(me|x\\x0a\\x1b[31m|bad \\xed\\xa0\\x80 surrogate");
	free(got);
}

/*
 * A row whose deadline has passed when PostgreSQL inserts it is stored as UNAVAILABLE and its
 * caller hears AUDIT_LATE; received_at and deadline are stored as sent.
 */
static void test_late_row_stored_unavailable(void **state)
{
	struct event_base *base = event_base_new();
	struct store *s = NULL;
	struct audit_queue *q;
	struct timespec now;
	pcs_error err;
	struct audit_row row = { "00000000-0000-0000-0000-000000000004", 0, 1000, 1000, 42,
		"agent acme/bot", "Resolve", "acme", "acme/key", "latest", "OK", NULL, 0, 0, NULL,
		NULL, 0 };
	long long now_us;
	char *got;

	(void)state;
	clock_gettime(CLOCK_REALTIME, &now);
	now_us = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	assert_int_equal(store_open(base, conninfo, 2, &s, &err), 0);
	assert_non_null(q = audit_queue_new(base, s));
	done = failed = late = 0;
	row.call_id = 901;
	row.received_us = now_us - 2000000;
	row.deadline_us = now_us - 1000000; /* passed a second ago */
	assert_non_null(audit_enqueue(q, &row, on_done, NULL));
	row.call_id = 902;
	row.deadline_us = now_us + 60000000; /* a minute away */
	assert_non_null(audit_enqueue(q, &row, on_done, NULL));
	spin(base, 2);
	assert_int_equal(done, 2);
	assert_int_equal(failed, 0);
	assert_int_equal(late, 1);
	audit_queue_free(q);
	store_close(s);
	event_base_free(base);
	got = pgtest_query_text(conninfo,
	    "SELECT string_agg(call_id || ':' || status || ':' || "
	    "(received_at < at)::text || ':' || (deadline IS NOT NULL)::text, ',' ORDER BY call_id) "
	    "FROM audit_log WHERE call_id IN (901, 902)");
	assert_non_null(got);
	assert_string_equal(got, "901:UNAVAILABLE:true:true,902:OK:true:true");
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows_share_batches),
		cmocka_unit_test(test_cancelled_rows_do_not_call_back),
		cmocka_unit_test(test_unwritable_batch_fails_every_caller),
		cmocka_unit_test(test_bad_row_fails_only_its_caller),
		cmocka_unit_test(test_unsafe_strings_are_escaped),
		cmocka_unit_test(test_late_row_stored_unavailable),
	};
	return cmocka_run_group_tests_name("audit", tests, setup, NULL);
}
