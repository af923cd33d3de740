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
#include <cmocka.h>
#include <event2/event.h>

#include "audit.h"
#include "migrate.h"
#include "pgtest.h"
#include "store.h"

#define ROWS 1200

static char conninfo[512];
static int done, failed;

static void on_done(int status, void *arg)
{
	(void)arg;
	done++;
	if (status != 0)
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
		"agent acme/bot", "Resolve", "acme", "acme/key", "latest", "OK", NULL };

	assert_int_equal(store_open(base, conninfo, 2, &s, &err), 0);
	assert_non_null(q = audit_queue_new(base, s));
	done = failed = 0;
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
	count = pgtest_query_text(conninfo, "SELECT count(*) FROM audit_log WHERE method = 'Resolve'");
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
	assert_int_equal(pgtest_exec(conninfo, "ALTER TABLE audit_log RENAME TO audit_log_gone"), 0);
	run(50, 0, &batches);
	assert_int_equal(pgtest_exec(conninfo, "ALTER TABLE audit_log_gone RENAME TO audit_log"), 0);
	assert_int_equal(done, 50);
	assert_int_equal(failed, 50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows_share_batches),
		cmocka_unit_test(test_cancelled_rows_do_not_call_back),
		cmocka_unit_test(test_unwritable_batch_fails_every_caller),
	};
	return cmocka_run_group_tests_name("audit", tests, setup, NULL);
}
