/*
 * test_store: the asynchronous pool and the blocking API against a real PostgreSQL
 * (the ctest fixture's private cluster), on a real libevent loop.
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

#include "pgtest.h"
#include "store.h"

static char conninfo[1024];
static struct event_base *base;

/* ---- loop helpers ---- */

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs the loop until done(arg) is true (returns 0) or timeout_ms pass (returns -1). */
static int
run_until(int (*done)(void *), void *arg, int timeout_ms)
{
	struct timeval tv = { 0, 10000 };
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	int64_t end = now_ms() + timeout_ms;
	int ret = -1;

	assert_non_null(tick);
	event_add(tick, &tv);
	while (now_ms() < end) {
		if (done != NULL && done(arg)) {
			ret = 0;
			break;
		}
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(tick);
	return ret;
}

static void
run_for(int ms)
{
	run_until(NULL, NULL, ms);
}

struct target {
	const int *count;
	int n;
};

static int
target_reached(void *arg)
{
	const struct target *t = arg;

	return *t->count >= t->n;
}

/* Waits until *count reaches n. */
static int
wait_count(const int *count, int n, int timeout_ms)
{
	struct target t = { count, n };

	return run_until(target_reached, &t, timeout_ms);
}

static struct store *
open_store(int pool_size)
{
	struct store *s = NULL;
	pcs_error err = { 0, "" };

	assert_int_equal(store_open(base, conninfo, pool_size, &s, &err), 0);
	assert_non_null(s);
	return s;
}

static int
all_up(void *arg)
{
	struct store_stats st;

	store_get_stats(arg, &st);
	return st.connections_up == st.pool_size;
}

static struct store *
open_store_up(int pool_size)
{
	struct store *s = open_store(pool_size);

	assert_int_equal(run_until(all_up, s, 10000), 0);
	return s;
}

/* ---- a generic callback recording what it saw ---- */

struct got {
	int called;
	int order;  /* value of seq when called */
	int status;
	char message[256];
	int ntuples;
	int nfields;
	char cells[4][256];
	int isnull[4];
	uint8_t *bytes;  /* column 0 as bytea, when want_bytes */
	size_t nbytes;
	int want_bytes;
};

static int seq;

static void
on_got(const struct store_result *r, void *arg)
{
	struct got *g = arg;
	int i;

	g->called++;
	g->order = ++seq;
	g->status = store_result_status(r);
	snprintf(g->message, sizeof(g->message), "%s", store_result_message(r));
	g->ntuples = store_result_ntuples(r);
	g->nfields = store_result_nfields(r);
	for (i = 0; i < 4 && g->ntuples > 0 && i < g->nfields; i++) {
		snprintf(g->cells[i], sizeof(g->cells[i]), "%s", store_result_value(r, 0, i));
		g->isnull[i] = store_result_isnull(r, 0, i);
	}
	if (g->want_bytes && g->ntuples > 0)
		assert_int_equal(store_result_bytea(r, 0, 0, &g->bytes, &g->nbytes), 0);
}

static int
got_called(void *arg)
{
	return ((struct got *)arg)->called > 0;
}

static void
submit_ok(struct store *s, const struct store_query *q, struct got *g)
{
	pcs_error err = { 0, "" };

	assert_non_null(store_submit(s, q, on_got, g, &err));
}

/* Runs one statement on a fresh pool of 1 and waits for its result. */
static void
one(const struct store_query *q, struct got *g)
{
	struct store *s = open_store(1);

	submit_ok(s, q, g);
	assert_int_equal(run_until(got_called, g, 10000), 0);
	assert_int_equal(g->called, 1);
	store_close(s);
}

/* ---- logger ---- */

struct logrec {
	int n;
	int connect_failed;
	int lost;
	int connected;
	int reconnected;
	int bad_detail;  /* a detail with a newline or the sentinel */
	char last_detail[256];
};

static void
on_log(int level, const char *event, const char *detail, void *arg)
{
	struct logrec *l = arg;

	l->n++;
	if (strcmp(event, "db_connect_failed") == 0) {
		l->connect_failed++;
		assert_int_equal(level, 1);
	} else if (strcmp(event, "db_connection_lost") == 0) {
		l->lost++;
		assert_int_equal(level, 2);
	} else if (strcmp(event, "db_connected") == 0) {
		l->connected++;
	} else if (strcmp(event, "db_reconnected") == 0) {
		l->reconnected++;
	}
	if (detail != NULL) {
		if (strchr(detail, '\n') != NULL || strstr(detail, "SENTINEL") != NULL)
			l->bad_detail++;
		snprintf(l->last_detail, sizeof(l->last_detail), "%s", detail);
	}
}

/* ---- tests ---- */

static void
test_simple_query(void **state)
{
	const char *v[] = { "41" };
	struct store_query q = { "SELECT 1 + $1::int, current_database()", 1, v, NULL, NULL };
	struct got g = { 0 };

	(void)state;
	one(&q, &g);
	assert_int_equal(g.status, 0);
	assert_string_equal(g.message, "");
	assert_int_equal(g.ntuples, 1);
	assert_int_equal(g.nfields, 2);
	assert_string_equal(g.cells[0], "42");
	assert_string_equal(g.cells[1], "pcs_test_store");
}

static void
test_params_round_trip(void **state)
{
	uint8_t blob[300];
	const char *v[] = { (const char *)blob, "h\xc3\xa9llo 'quoted' \\ w\xc3\xb6rld", NULL };
	int len[] = { (int)sizeof(blob), 0, 0 };
	int fmt[] = { 1, 0, 0 };
	struct store_query q = { "SELECT $1::bytea, $2::text, $3::text, length($1::bytea)", 3, v,
		len, fmt };
	struct got g = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7);  /* every byte value, NULs included */
	g.want_bytes = 1;
	one(&q, &g);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.nbytes, sizeof(blob));
	assert_memory_equal(g.bytes, blob, sizeof(blob));
	assert_string_equal(g.cells[1], v[1]);
	assert_int_equal(g.isnull[1], 0);
	assert_int_equal(g.isnull[2], 1);
	assert_string_equal(g.cells[2], "");
	assert_string_equal(g.cells[3], "300");
	free(g.bytes);

	/* An empty binary value is an empty bytea, not NULL. */
	{
		const char *v2[] = { "" };
		int len2[] = { 0 };
		int fmt2[] = { 1 };
		struct store_query q2 = { "SELECT $1::bytea, $1::bytea IS NULL", 1, v2, len2, fmt2 };
		struct got g2 = { 0 };

		g2.want_bytes = 1;
		one(&q2, &g2);
		assert_int_equal(g2.status, 0);
		assert_int_equal(g2.nbytes, 0);
		assert_string_equal(g2.cells[1], "f");
		free(g2.bytes);
	}
}

static void
raise_and_check(const char *sqlstate, int want_status, const char *want_message)
{
	char sql[512];
	struct store_query q = { sql, 0, NULL, NULL, NULL };
	struct got g = { 0 };

	snprintf(sql, sizeof(sql), "DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '%s', "
	    "MESSAGE = 'msg of %s: SENTINEL-%s'; END$$", sqlstate, sqlstate, sqlstate);
	one(&q, &g);
	assert_int_equal(g.status, want_status);
	if (want_message != NULL)
		assert_string_equal(g.message, want_message);
}

static void
test_sqlstate_mapping(void **state)
{
	(void)state;
	/* Our own functions' codes carry their (safe) message through. */
	raise_and_check("PS005", -PCS_NOT_FOUND, "msg of PS005: SENTINEL-PS005");
	raise_and_check("PS009", -PCS_FAILED_PRECONDITION, "msg of PS009: SENTINEL-PS009");
	raise_and_check("PS016", -PCS_UNAUTHENTICATED, "msg of PS016: SENTINEL-PS016");
	/* Outside our table: treated like any other unknown SQLSTATE. */
	raise_and_check("PS000", -PCS_INTERNAL, "database error (SQLSTATE PS000)");
	raise_and_check("PS017", -PCS_INTERNAL, "database error (SQLSTATE PS017)");
	raise_and_check("PS1AB", -PCS_INTERNAL, "database error (SQLSTATE PS1AB)");
	raise_and_check("23505", -PCS_ALREADY_EXISTS, "already exists");
	raise_and_check("40001", -PCS_ABORTED, "conflicting concurrent change; retry");
	raise_and_check("40P01", -PCS_ABORTED, "conflicting concurrent change; retry");
	raise_and_check("57014", -PCS_DEADLINE_EXCEEDED, NULL);
	raise_and_check("08006", -PCS_UNAVAILABLE, NULL);
	raise_and_check("P0001", -PCS_INTERNAL, "database error (SQLSTATE P0001)");
}

static void
test_unique_violation(void **state)
{
	const char *v[] = { "dup-SENTINEL-value" };
	struct store_query q = { "INSERT INTO uniq (k) VALUES ($1)", 1, v, NULL, NULL };
	struct got g1 = { 0 }, g2 = { 0 };
	struct store *s = open_store(1);

	(void)state;
	submit_ok(s, &q, &g1);
	submit_ok(s, &q, &g2);
	assert_int_equal(run_until(got_called, &g2, 10000), 0);
	assert_int_equal(g1.status, 0);
	assert_int_equal(g2.status, -PCS_ALREADY_EXISTS);
	assert_string_equal(g2.message, "already exists");
	store_close(s);
}

static void
test_generic_error_hides_text(void **state)
{
	const char *v[] = { "SENTINEL-not-a-number" };
	struct store_query q = { "SELECT $1::int", 1, v, NULL, NULL };
	struct store_query bad = { "SELEKT 1", 0, NULL, NULL, NULL };
	struct got g = { 0 }, g2 = { 0 };

	(void)state;
	one(&q, &g);
	assert_int_equal(g.status, -PCS_INTERNAL);
	assert_string_equal(g.message, "database error (SQLSTATE 22P02)");
	assert_null(strstr(g.message, "SENTINEL"));
	one(&bad, &g2);
	assert_int_equal(g2.status, -PCS_INTERNAL);
	assert_string_equal(g2.message, "database error (SQLSTATE 42601)");
}

static void
test_submit_validation(void **state)
{
	static const char *v[STORE_PARAMS_LIMIT + 1];
	int fmt[] = { 1 };
	struct store_query many = { "SELECT 1", STORE_PARAMS_LIMIT + 1, v, NULL, NULL };
	struct store_query binary_no_len = { "SELECT $1::bytea", 1, v, NULL, fmt };
	struct store *s = open_store(1);
	pcs_error err = { 0, "" };
	struct got g = { 0 };

	(void)state;
	v[0] = "x";
	assert_null(store_submit(s, &many, on_got, &g, &err));
	assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
	assert_null(store_submit(s, &binary_no_len, on_got, &g, &err));
	assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
	store_close(s);
	assert_int_equal(g.called, 0);
}

#define FIFO_JOBS 200

struct fifo {
	int n;
	int failed;
	long pid[FIFO_JOBS];
	int index[FIFO_JOBS];
};

static void
on_fifo(const struct store_result *r, void *arg)
{
	struct fifo *f = arg;

	if (store_result_status(r) != 0 || store_result_ntuples(r) != 1) {
		f->failed++;
		return;
	}
	f->pid[f->n] = atol(store_result_value(r, 0, 0));
	f->index[f->n] = atoi(store_result_value(r, 0, 1));
	f->n++;
}

static void
test_fifo_per_connection(void **state)
{
	static struct fifo f;
	char nums[FIFO_JOBS][8];
	const char *v[1];
	struct store_query q = { "SELECT pg_backend_pid(), $1::int", 1, v, NULL, NULL };
	struct store *s = open_store_up(3);
	struct store_stats st;
	pcs_error err = { 0, "" };
	long pids[3] = { 0 };
	int last[3] = { -1, -1, -1 };
	int i, k, npids = 0;

	(void)state;
	memset(&f, 0, sizeof(f));
	for (i = 0; i < FIFO_JOBS; i++) {
		snprintf(nums[i], sizeof(nums[i]), "%d", i);
		v[0] = nums[i];
		assert_non_null(store_submit(s, &q, on_fifo, &f, &err));
	}
	assert_int_equal(wait_count(&f.n, FIFO_JOBS, 30000), 0);
	assert_int_equal(f.failed, 0);
	for (i = 0; i < FIFO_JOBS; i++) {
		for (k = 0; k < npids && pids[k] != f.pid[i]; k++)
			;
		if (k == npids) {
			assert_true(npids < 3);
			pids[npids++] = f.pid[i];
		}
		/* Each connection ran its share in submission order. */
		assert_true(f.index[i] > last[k]);
		last[k] = f.index[i];
	}
	assert_int_equal(npids, 3);
	store_get_stats(s, &st);
	assert_int_equal(st.completed, FIFO_JOBS);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.queued, 0);
	assert_true(store_idle(s));
	store_close(s);
}

static void
test_cancel(void **state)
{
	struct store_query sleep = { "SELECT pg_sleep(0.3)", 0, NULL, NULL, NULL };
	struct store_query quick = { "SELECT 7", 0, NULL, NULL, NULL };
	struct got a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 }, e = { 0 };
	struct store *s = open_store_up(1);
	struct store_stats st;
	struct store_job *jb, *jd;
	pcs_error err = { 0, "" };

	(void)state;
	/* Queued: removed at once. */
	submit_ok(s, &sleep, &a);
	assert_non_null(jb = store_submit(s, &quick, on_got, &b, &err));
	submit_ok(s, &quick, &c);
	store_cancel(jb);
	/* Dispatch waits for the loop: a and c are still queued, b is gone. */
	store_get_stats(s, &st);
	assert_int_equal(st.queued, 2);
	assert_int_equal(run_until(got_called, &c, 10000), 0);
	assert_int_equal(a.called, 1);
	assert_int_equal(b.called, 0);
	assert_true(a.order < c.order);
	assert_string_equal(c.cells[0], "7");

	/* Running: its result is discarded; the next job runs after it. */
	assert_non_null(jd = store_submit(s, &sleep, on_got, &d, &err));
	run_for(100);
	store_get_stats(s, &st);
	assert_int_equal(st.queued, 0);
	assert_false(store_idle(s));
	store_cancel(jd);
	submit_ok(s, &quick, &e);
	assert_int_equal(run_until(got_called, &e, 10000), 0);
	assert_int_equal(e.status, 0);
	run_for(50);
	assert_int_equal(d.called, 0);
	assert_true(store_idle(s));
	store_close(s);
}

static int
sleep_running(void *arg)
{
	char *n;
	int ok;

	(void)arg;
	n = pgtest_query_text(conninfo, "SELECT count(*) FROM pg_stat_activity WHERE "
	    "datname = current_database() AND query = 'SELECT pg_sleep(30)' AND state = 'active'");
	ok = n != NULL && strcmp(n, "1") == 0;
	free(n);
	return ok;
}

static void
test_connection_loss(void **state)
{
	struct store_query sleep = { "SELECT pg_sleep(30)", 0, NULL, NULL, NULL };
	const char *v[] = { "5" };
	struct store_query quick = { "SELECT $1::int * 2", 1, v, NULL, NULL };
	struct got j = { 0 }, after[5];
	struct logrec l = { 0 };
	struct store *s = NULL;
	pcs_error err = { 0, "" };
	char tagged[1200], *killed;
	int i;

	(void)state;
	/* Tagged, so only this pool's backends are killed. */
	snprintf(tagged, sizeof(tagged), "%s application_name=pcs_test_loss", conninfo);
	assert_int_equal(store_open(base, tagged, 2, &s, &err), 0);
	store_set_logger(s, on_log, &l);
	assert_int_equal(run_until(all_up, s, 10000), 0);
	assert_int_equal(l.connected, 2);
	submit_ok(s, &sleep, &j);
	assert_int_equal(run_until(sleep_running, NULL, 10000), 0);
	killed = pgtest_query_text(conninfo, "SELECT count(pg_terminate_backend(pid)) FROM "
	    "pg_stat_activity WHERE application_name = 'pcs_test_loss'");
	assert_non_null(killed);
	assert_string_equal(killed, "2");
	free(killed);

	assert_int_equal(run_until(got_called, &j, 10000), 0);
	assert_int_equal(j.status, -PCS_UNAVAILABLE);
	assert_string_equal(j.message, "database connection lost");

	/*
	 * Submitted once the store saw both backends go: a job sent to a backend that is dying
	 * but not yet gone fails with UNAVAILABLE, correctly, and would make this test racy.
	 */
	assert_int_equal(wait_count(&l.lost, 2, 10000), 0);
	memset(after, 0, sizeof(after));
	for (i = 0; i < 5; i++)
		submit_ok(s, &quick, &after[i]);
	/* Two connections: they can finish in any order. */
	for (i = 0; i < 5; i++)
		assert_int_equal(run_until(got_called, &after[i], 15000), 0);
	for (i = 0; i < 5; i++) {
		assert_int_equal(after[i].called, 1);
		assert_int_equal(after[i].status, 0);
		assert_string_equal(after[i].cells[0], "10");
	}
	assert_int_equal(run_until(all_up, s, 10000), 0);
	assert_int_equal(l.lost, 2);
	assert_int_equal(l.reconnected, 2);
	assert_int_equal(l.bad_detail, 0);
	store_close(s);
}

static int count_calls;

static void
on_count(const struct store_result *r, void *arg)
{
	(void)arg;
	if (store_result_status(r) == 0)
		count_calls++;
}

static void
test_queue_cap(void **state)
{
	struct store_query q = { "SELECT 1", 0, NULL, NULL, NULL };
	struct store *s = open_store(3);
	struct store_stats st;
	pcs_error err = { 0, "" };
	int i;

	(void)state;
	count_calls = 0;
	/* Nothing is dispatched before the loop runs, so all of these stay queued. */
	for (i = 0; i < 10000; i++)
		assert_non_null(store_submit(s, &q, on_count, NULL, &err));
	assert_null(store_submit(s, &q, on_count, NULL, &err));
	assert_int_equal(err.code, PCS_RESOURCE_EXHAUSTED);
	assert_string_equal(err.message, "database queue is full (10000 jobs)");
	store_get_stats(s, &st);
	assert_int_equal(st.queued, 10000);
	assert_int_equal(wait_count(&count_calls, 10000, 120000), 0);
	assert_non_null(store_submit(s, &q, on_count, NULL, &err));
	assert_int_equal(wait_count(&count_calls, 10001, 10000), 0);
	store_close(s);
}

static void
test_close_with_jobs(void **state)
{
	struct store_query sleep = { "SELECT pg_sleep(0.2)", 0, NULL, NULL, NULL };
	struct got g[4];
	struct store *s = open_store_up(1);
	int i;

	(void)state;
	memset(g, 0, sizeof(g));
	for (i = 0; i < 4; i++)
		submit_ok(s, &sleep, &g[i]);
	run_for(50);
	store_close(s);
	run_for(300);
	for (i = 0; i < 4; i++)
		assert_int_equal(g[i].called, 0);
}

struct closer {
	struct store *s;
	int called;
};

static void
on_close_inside(const struct store_result *r, void *arg)
{
	struct closer *c = arg;

	(void)r;
	c->called++;
	store_close(c->s);
}

static int
closer_called(void *arg)
{
	return ((struct closer *)arg)->called > 0;
}

static void
test_close_inside_callback(void **state)
{
	struct store_query q = { "SELECT 1", 0, NULL, NULL, NULL };
	struct closer c = { 0 };
	struct got g[3];
	pcs_error err = { 0, "" };
	int i;

	(void)state;
	memset(g, 0, sizeof(g));
	c.s = open_store_up(1);
	assert_non_null(store_submit(c.s, &q, on_close_inside, &c, &err));
	for (i = 0; i < 3; i++)
		submit_ok(c.s, &q, &g[i]);
	assert_int_equal(run_until(closer_called, &c, 10000), 0);
	run_for(100);
	assert_int_equal(c.called, 1);
	for (i = 0; i < 3; i++)
		assert_int_equal(g[i].called, 0);
}

static void
test_connect_failure_backoff(void **state)
{
	const char *bad = "host=/nonexistent-pcs-dir port=1 user=postgres password=SENTINELPW";
	struct store_query q = { "SELECT 1", 0, NULL, NULL, NULL };
	struct logrec l = { 0 };
	struct store *s = NULL;
	struct store_stats st;
	pcs_error err = { 0, "" };
	struct got g = { 0 };

	(void)state;
	assert_int_equal(store_open(base, bad, 1, &s, &err), 0);
	store_set_logger(s, on_log, &l);
	submit_ok(s, &q, &g);
	/* Attempts at 0, 100, 300 and 700 ms (doubling); the next would be at 1500. */
	run_for(1200);
	assert_in_range(l.connect_failed, 3, 4);
	assert_int_equal(l.bad_detail, 0);
	assert_non_null(strstr(l.last_detail, "nonexistent-pcs-dir"));
	store_get_stats(s, &st);
	assert_int_equal(st.connections_up, 0);
	assert_int_equal(st.queued, 1);
	assert_int_equal(g.called, 0);
	store_close(s);
	assert_int_equal(g.called, 0);
}

static void
test_invalid_conninfo(void **state)
{
	const char *bad = "host=/tmp password=SENTINELPW bogus";
	struct store *s = NULL;
	struct store_sync *c = NULL;
	pcs_error err = { 0, "" };

	(void)state;
	assert_int_equal(store_open(base, bad, 1, &s, &err), -PCS_INVALID_ARGUMENT);
	assert_null(s);
	assert_null(strstr(err.message, "SENTINEL"));
	assert_int_equal(store_sync_connect(bad, &c, &err), -PCS_INVALID_ARGUMENT);
	assert_null(c);
	assert_null(strstr(err.message, "SENTINEL"));
	assert_int_equal(store_open(base, conninfo, 0, &s, &err), -PCS_INVALID_ARGUMENT);
}

static void
test_sync(void **state)
{
	uint8_t blob[4] = { 0, 0xff, 'a', 0 };
	const char *v[] = { (const char *)blob };
	int len[] = { 4 };
	int fmt[] = { 1 };
	struct store_query q = { "SELECT $1::bytea", 1, v, len, fmt };
	struct store_query raise = { "DO $$BEGIN RAISE EXCEPTION USING ERRCODE = 'PS005', "
		"MESSAGE = 'no such secret'; END$$", 0, NULL, NULL, NULL };
	struct store_sync *c = NULL;
	struct store_result *r = NULL;
	pcs_error err = { 0, "" };
	uint8_t *out = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(store_sync_connect(conninfo, &c, &err), 0);
	assert_int_equal(store_sync_exec(c, &q, &r, &err), 0);
	assert_int_equal(store_result_status(r), 0);
	assert_int_equal(store_result_bytea(r, 0, 0, &out, &n), 0);
	assert_int_equal(n, 4);
	assert_memory_equal(out, blob, 4);
	free(out);
	out = NULL;
	assert_int_equal(store_result_bytea(r, 0, 1, &out, &n), -PCS_INVALID_ARGUMENT);
	assert_null(out);
	store_result_free(r);
	r = NULL;

	assert_int_equal(store_sync_exec(c, &raise, &r, &err), -PCS_NOT_FOUND);
	assert_null(r);
	assert_int_equal(err.code, PCS_NOT_FOUND);
	assert_string_equal(err.message, "no such secret");

	assert_int_equal(store_sync_exec_script(c, "CREATE TEMP TABLE x (a int); "
	    "INSERT INTO x VALUES (1), (2); SELECT count(*) FROM x", &err), 0);
	assert_int_equal(store_sync_exec_script(c, "INSERT INTO x VALUES ('SENTINEL')", &err),
	    -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 22P02)");
	store_sync_close(c);

	assert_int_equal(store_sync_connect("host=/nonexistent-pcs-dir port=1", &c, &err),
	    -PCS_UNAVAILABLE);
	assert_null(strchr(err.message, '\n'));
	assert_null(c);
}

/* ---- prepared statements ---- */

static uint64_t
prepared_count(const struct store *s)
{
	struct store_stats st;

	store_get_stats(s, &st);
	return st.prepared;
}

/* Runs q on s (submitted as store_submit_once when once) and waits for its result. */
static void
run_q(struct store *s, const struct store_query *q, int once, struct got *g)
{
	pcs_error err = { 0, "" };

	memset(g, 0, sizeof(*g));
	if (once)
		assert_non_null(store_submit_once(s, q, on_got, g, &err));
	else
		submit_ok(s, q, g);
	assert_int_equal(run_until(got_called, g, 10000), 0);
	assert_int_equal(g->called, 1);
}

/*
 * On a pool of 1, what the server holds: how many of the session's prepared statements are
 * sql, and how many times they were executed (a plan is chosen per execution). sql NULL:
 * every prepared statement of the session. Asked unprepared, so the count is left as it was.
 */
static void
assert_server_prepared(struct store *s, const char *sql, int want_count, int want_runs)
{
	const char *v[] = { sql };
	struct store_query q = { "SELECT count(*), coalesce(sum(generic_plans + custom_plans), 0) "
	    "FROM pg_prepared_statements WHERE $1::text IS NULL OR statement = $1::text", 1, v,
	    NULL, NULL };
	struct got g;

	run_q(s, &q, 1, &g);
	assert_int_equal(g.status, 0);
	assert_int_equal(atoi(g.cells[0]), want_count);
	if (want_runs >= 0)
		assert_int_equal(atoi(g.cells[1]), want_runs);
}

#define PREP_RUNS 20

static void
test_prepare_once(void **state)
{
	const char *x = "SELECT $1::int * 3, pg_backend_pid()";
	const char *y = "SELECT $1::text || '!'";
	struct store_query qx = { x, 1, NULL, NULL, NULL }, qy = { y, 1, NULL, NULL, NULL };
	struct store_query once = { "SELECT 'once'::text", 0, NULL, NULL, NULL };
	struct store_query qlong = { NULL, 0, NULL, NULL, NULL };
	static struct got g[PREP_RUNS];
	struct got h;
	struct store *s = open_store_up(1);
	char num[16], want[16], *longsql;
	const char *v[1] = { num };
	int i;

	(void)state;
	assert_int_equal(prepared_count(s), 0);
	/* All queued at once: the one connection runs them back to back. */
	qx.values = v;
	memset(g, 0, sizeof(g));
	for (i = 0; i < PREP_RUNS; i++) {
		snprintf(num, sizeof(num), "%d", i);
		submit_ok(s, &qx, &g[i]);
	}
	assert_int_equal(run_until(got_called, &g[PREP_RUNS - 1], 10000), 0);
	for (i = 0; i < PREP_RUNS; i++) {
		assert_int_equal(g[i].called, 1);
		assert_int_equal(g[i].status, 0);
		assert_int_equal(g[i].nfields, 2);
		snprintf(want, sizeof(want), "%d", i * 3);
		assert_string_equal(g[i].cells[0], want);
		assert_string_equal(g[i].cells[1], g[0].cells[1]);
	}
	assert_int_equal(prepared_count(s), 1);
	/* Prepared once and executed by its name every time, on the server's own account. */
	assert_server_prepared(s, x, 1, PREP_RUNS);

	qy.values = v;
	for (i = 0; i < 5; i++) {
		snprintf(num, sizeof(num), "y%d", i);
		run_q(s, &qy, 0, &h);
		assert_int_equal(h.status, 0);
		snprintf(want, sizeof(want), "y%d!", i);
		assert_string_equal(h.cells[0], want);
	}
	assert_int_equal(prepared_count(s), 2);
	assert_server_prepared(s, y, 1, 5);
	assert_server_prepared(s, NULL, 2, -1);

	/* Opted out, or too long to keep: unprepared, and counted nowhere. */
	for (i = 0; i < 3; i++) {
		run_q(s, &once, 1, &h);
		assert_int_equal(h.status, 0);
		assert_string_equal(h.cells[0], "once");
	}
	assert_non_null(longsql = malloc(9000));
	memset(longsql, ' ', 8999);
	memcpy(longsql, "SELECT 'long'::text", 19);
	longsql[8999] = '\0';
	qlong.sql = longsql;
	for (i = 0; i < 2; i++) {
		run_q(s, &qlong, 0, &h);
		assert_int_equal(h.status, 0);
		assert_string_equal(h.cells[0], "long");
	}
	free(longsql);
	assert_int_equal(prepared_count(s), 2);
	assert_server_prepared(s, NULL, 2, -1);
	store_close(s);
}

static void
test_prepare_failure(void **state)
{
	const char *v[] = { "4" };
	const char *nan[] = { "SENTINEL-not-a-number" };
	struct store_query missing = { "SELECT pcs_no_such_function($1::int)", 1, v, NULL, NULL };
	struct store_query typo = { "SELEKT $1::int", 1, v, NULL, NULL };
	struct store_query good = { "SELECT $1::int + 1", 1, v, NULL, NULL };
	struct store_query cast = { "SELECT $1::int * 2", 1, nan, NULL, NULL };
	struct store *s = open_store_up(1);
	struct store_stats st;
	struct got g, unprepared;
	int i;

	(void)state;
	/* Fails as the same text fails unprepared, every time: it is never recorded. */
	run_q(s, &missing, 1, &unprepared);
	assert_int_equal(unprepared.status, -PCS_INTERNAL);
	assert_string_equal(unprepared.message, "database error (SQLSTATE 42883)");
	for (i = 0; i < 2; i++) {
		run_q(s, &missing, 0, &g);
		assert_int_equal(g.status, unprepared.status);
		assert_string_equal(g.message, unprepared.message);
	}
	run_q(s, &typo, 0, &g);
	assert_int_equal(g.status, -PCS_INTERNAL);
	assert_string_equal(g.message, "database error (SQLSTATE 42601)");
	assert_int_equal(prepared_count(s), 0);
	assert_server_prepared(s, NULL, 0, -1);

	/* The connection is fine for the next statement. */
	for (i = 0; i < 2; i++) {
		run_q(s, &good, 0, &g);
		assert_int_equal(g.status, 0);
		assert_string_equal(g.cells[0], "5");
	}
	assert_int_equal(prepared_count(s), 1);

	/* Prepared, then failing on its value: the failure is the job's, the statement stays. */
	run_q(s, &cast, 0, &g);
	assert_int_equal(g.status, -PCS_INTERNAL);
	assert_string_equal(g.message, "database error (SQLSTATE 22P02)");
	assert_null(strstr(g.message, "SENTINEL"));
	cast.values = v;
	run_q(s, &cast, 0, &g);
	assert_int_equal(g.status, 0);
	assert_string_equal(g.cells[0], "8");
	assert_int_equal(prepared_count(s), 2);
	assert_server_prepared(s, cast.sql, 1, 1);
	store_get_stats(s, &st);
	assert_int_equal(st.connections_up, 1);
	store_close(s);
}

static void
test_prepare_after_loss(void **state)
{
	const char *v[] = { "6" };
	struct store_query q = { "SELECT $1::int * 7", 1, v, NULL, NULL };
	struct logrec l = { 0 };
	struct store *s = NULL;
	pcs_error err = { 0, "" };
	char tagged[1200], *killed;
	struct got g;
	int i;

	(void)state;
	snprintf(tagged, sizeof(tagged), "%s application_name=pcs_test_prep_loss", conninfo);
	assert_int_equal(store_open(base, tagged, 1, &s, &err), 0);
	store_set_logger(s, on_log, &l);
	assert_int_equal(run_until(all_up, s, 10000), 0);
	for (i = 0; i < 2; i++) {
		run_q(s, &q, 0, &g);
		assert_int_equal(g.status, 0);
		assert_string_equal(g.cells[0], "42");
	}
	assert_int_equal(prepared_count(s), 1);

	killed = pgtest_query_text(conninfo, "SELECT count(pg_terminate_backend(pid)) FROM "
	    "pg_stat_activity WHERE application_name = 'pcs_test_prep_loss'");
	assert_non_null(killed);
	assert_string_equal(killed, "1");
	free(killed);
	assert_int_equal(wait_count(&l.lost, 1, 10000), 0);
	assert_int_equal(run_until(all_up, s, 10000), 0);
	assert_int_equal(l.reconnected, 1);

	/* The new session has no statements: the text is prepared again, not executed by name. */
	for (i = 0; i < 2; i++) {
		run_q(s, &q, 0, &g);
		assert_int_equal(g.status, 0);
		assert_string_equal(g.cells[0], "42");
	}
	assert_int_equal(prepared_count(s), 2);
	assert_server_prepared(s, q.sql, 1, 2);
	assert_int_equal(l.bad_detail, 0);
	store_close(s);
}

static void
test_prepare_stale(void **state)
{
	struct store_query q = { "SELECT * FROM prep_t", 0, NULL, NULL, NULL };
	struct store_query dealloc = { "DEALLOCATE ALL", 0, NULL, NULL, NULL };
	struct store *s = open_store_up(1);
	struct got g;

	(void)state;
	assert_int_equal(pgtest_exec(conninfo, "DROP TABLE IF EXISTS prep_t; "
	    "CREATE TABLE prep_t (a int); INSERT INTO prep_t VALUES (1)"), 0);
	run_q(s, &q, 0, &g);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.nfields, 1);
	assert_int_equal(prepared_count(s), 1);

	/* Its result type changed under it (0A000): the job fails, the name is deallocated. */
	assert_int_equal(pgtest_exec(conninfo, "ALTER TABLE prep_t ADD COLUMN b int DEFAULT 7"), 0);
	run_q(s, &q, 0, &g);
	assert_int_equal(g.status, -PCS_INTERNAL);
	assert_string_equal(g.message, "database error (SQLSTATE 0A000)");
	assert_int_equal(prepared_count(s), 1);
	assert_server_prepared(s, NULL, 0, -1);
	run_q(s, &q, 0, &g);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.nfields, 2);
	assert_string_equal(g.cells[1], "7");
	assert_int_equal(prepared_count(s), 2);
	assert_server_prepared(s, q.sql, 1, 1);

	/* Its name gone from the session (26000): the job fails, the next run prepares it again. */
	run_q(s, &dealloc, 1, &g);
	assert_int_equal(g.status, 0);
	run_q(s, &q, 0, &g);
	assert_int_equal(g.status, -PCS_INTERNAL);
	assert_string_equal(g.message, "database error (SQLSTATE 26000)");
	run_q(s, &q, 0, &g);
	assert_int_equal(g.status, 0);
	assert_string_equal(g.cells[0], "1");
	assert_int_equal(prepared_count(s), 3);
	assert_server_prepared(s, q.sql, 1, 1);
	store_close(s);
}

#define PREP_TEXTS 130 /* more than a connection keeps (128) */

static void
test_prepare_table_full(void **state)
{
	static struct got g[PREP_TEXTS];
	char sql[64], want[16];
	struct store_query q = { sql, 0, NULL, NULL, NULL };
	struct store *s = open_store_up(1);
	struct got h;
	int i;

	(void)state;
	memset(g, 0, sizeof(g));
	for (i = 0; i < PREP_TEXTS; i++) {
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		submit_ok(s, &q, &g[i]);
	}
	assert_int_equal(run_until(got_called, &g[PREP_TEXTS - 1], 30000), 0);
	for (i = 0; i < PREP_TEXTS; i++) {
		snprintf(want, sizeof(want), "%d", i);
		assert_int_equal(g[i].status, 0);
		assert_string_equal(g[i].cells[0], want);
	}
	/* Full: the last texts ran unprepared, and nothing was evicted for them. */
	assert_int_equal(prepared_count(s), 128);
	for (i = 0; i < PREP_TEXTS; i += PREP_TEXTS - 1) {
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		run_q(s, &q, 0, &h);
		assert_int_equal(h.status, 0);
	}
	assert_int_equal(prepared_count(s), 128);
	assert_server_prepared(s, NULL, 128, -1);
	assert_server_prepared(s, "SELECT 0", 1, 2);
	assert_server_prepared(s, "SELECT 129", 0, -1);
	store_close(s);
}

static int
group_setup(void **state)
{
	(void)state;
	if (pgtest_create_db("pcs_test_store", conninfo, sizeof(conninfo)) != 0 ||
	    pgtest_exec(conninfo, "CREATE TABLE uniq (k text PRIMARY KEY)") != 0)
		return -1;
	base = event_base_new();
	return base != NULL ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	event_base_free(base);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_query),
		cmocka_unit_test(test_params_round_trip),
		cmocka_unit_test(test_sqlstate_mapping),
		cmocka_unit_test(test_unique_violation),
		cmocka_unit_test(test_generic_error_hides_text),
		cmocka_unit_test(test_submit_validation),
		cmocka_unit_test(test_fifo_per_connection),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_connection_loss),
		cmocka_unit_test(test_queue_cap),
		cmocka_unit_test(test_close_with_jobs),
		cmocka_unit_test(test_close_inside_callback),
		cmocka_unit_test(test_connect_failure_backoff),
		cmocka_unit_test(test_invalid_conninfo),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_prepare_once),
		cmocka_unit_test(test_prepare_failure),
		cmocka_unit_test(test_prepare_after_loss),
		cmocka_unit_test(test_prepare_stale),
		cmocka_unit_test(test_prepare_table_full),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
