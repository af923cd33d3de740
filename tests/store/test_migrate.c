/*
 * test_migrate: migrations against a real PostgreSQL (the ctest fixture's private cluster),
 * each test on a database of its own.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate.h"
#include "pgtest.h"

/* sha256sum of the SQL texts below, computed outside PostgreSQL. */
#define SUM_A "168f4af76cbece82a4185c6c57366e07883c6e4155f25ce28559018d99433b81"
#define SUM_A_CHANGED "22c69b9acf87dfbf96b59717109332740c380b42dac294560736d5b6a22167ae"

static const struct migration set_ab[] = {
	{ 1, "001_a", "CREATE TABLE a (id int);", 0 },
	{ 2, "002_b", "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1), (2);\n", 0 },
};

static char conninfo[1024];

static struct store_sync *
fresh(const char *dbname)
{
	struct store_sync *c = NULL;
	pcs_error err = { 0, "" };

	assert_int_equal(pgtest_create_db(dbname, conninfo, sizeof(conninfo)), 0);
	assert_int_equal(store_sync_connect(conninfo, &c, &err), 0);
	return c;
}

static void
assert_query(const char *sql, const char *want)
{
	char *got = pgtest_query_text(conninfo, sql);

	if (want == NULL) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void
test_fresh_then_noop(void **state)
{
	struct store_sync *c = fresh("pcs_test_mig_fresh");
	pcs_error err = { 0, "" };
	char *applied;

	(void)state;
	assert_int_equal(migrate_run_set(c, set_ab, 2, &err), 0);
	assert_int_equal(err.code, PCS_OK);
	assert_query("SELECT string_agg(version || ':' || name, ',' ORDER BY version) "
	    "FROM schema_migrations", "1:001_a,2:002_b");
	assert_query("SELECT checksum FROM schema_migrations WHERE version = 1", SUM_A);
	assert_query("SELECT count(*) FROM b", "2");
	applied = pgtest_query_text(conninfo, "SELECT string_agg(applied_at::text, ',' "
	    "ORDER BY version) FROM schema_migrations");
	assert_non_null(applied);

	/* Second run: nothing to do (002 would insert its rows again if it ran). */
	assert_int_equal(migrate_run_set(c, set_ab, 2, &err), 0);
	assert_query("SELECT count(*) FROM schema_migrations", "2");
	assert_query("SELECT count(*) FROM b", "2");
	assert_query("SELECT string_agg(applied_at::text, ',' ORDER BY version) "
	    "FROM schema_migrations", applied);
	free(applied);

	/* A later binary with one more migration applies only that one. */
	{
		const struct migration abc[] = { set_ab[0], set_ab[1],
			{ 3, "003_c", "CREATE TABLE c (id int);", 0 } };

		assert_int_equal(migrate_run_set(c, abc, 3, &err), 0);
		assert_query("SELECT count(*) FROM schema_migrations", "3");
		assert_query("SELECT to_regclass('c') IS NOT NULL", "t");
	}
	store_sync_close(c);
}

static void
test_changed_migration_refused(void **state)
{
	const struct migration changed[] = {
		{ 1, "001_a", "CREATE TABLE a (id bigint);", 0 },
		set_ab[1],
		{ 3, "003_c", "CREATE TABLE c (id int);", 0 },
	};
	struct store_sync *c = fresh("pcs_test_mig_changed");
	pcs_error err = { 0, "" };

	(void)state;
	assert_int_equal(migrate_run_set(c, set_ab, 2, &err), 0);
	assert_int_equal(migrate_run_set(c, changed, 3, &err), -PCS_FAILED_PRECONDITION);
	assert_int_equal(err.code, PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message, "migration 001_a was changed after it was applied "
	    "(recorded checksum 168f4af76cbe..., file checksum 22c69b9acf87...)");
	/* Refused before anything was applied. */
	assert_query("SELECT to_regclass('c') IS NULL", "t");
	assert_query("SELECT count(*) FROM schema_migrations", "2");
	store_sync_close(c);
}

static void
test_failing_migration_rolls_back(void **state)
{
	const struct migration bad[] = {
		set_ab[0],
		{ 2, "002_bad", "CREATE TABLE c (id int);\nINSERT INTO c VALUES (1);\nSELECT 1/0;", 0 },
		{ 3, "003_d", "CREATE TABLE d (id int);", 0 },
	};
	const struct migration fixed[] = {
		set_ab[0],
		{ 2, "002_good", "CREATE TABLE c (id int);\nINSERT INTO c VALUES (1);", 0 },
	};
	struct store_sync *c = fresh("pcs_test_mig_fail");
	pcs_error err = { 0, "" };

	(void)state;
	assert_int_equal(migrate_run_set(c, bad, 3, &err), -PCS_INTERNAL);
	assert_string_equal(err.message, "migration 002_bad failed: database error "
	    "(SQLSTATE 22012)");
	assert_query("SELECT string_agg(name, ',') FROM schema_migrations", "001_a");
	assert_query("SELECT to_regclass('a') IS NOT NULL", "t");
	assert_query("SELECT to_regclass('c') IS NULL", "t");
	assert_query("SELECT to_regclass('d') IS NULL", "t");
	/* The lock was released although our session is still open. */
	assert_query("SELECT pg_try_advisory_lock(" MIGRATE_LOCK_KEY ")", "t");

	/* The same session is usable (not left in an aborted transaction). */
	assert_int_equal(migrate_run_set(c, fixed, 2, &err), 0);
	assert_query("SELECT count(*) FROM c", "1");
	store_sync_close(c);
}

static void
test_unknown_version_refused(void **state)
{
	const struct migration with_gap[] = {
		set_ab[0],
		{ 3, "003_c", "CREATE TABLE c (id int);", 0 },
	};
	const struct migration other[] = {
		set_ab[0],
		{ 2, "002_x", "CREATE TABLE x (id int);", 0 },
		{ 4, "004_y", "CREATE TABLE y (id int);", 0 },
	};
	struct store_sync *c = fresh("pcs_test_mig_newer");
	pcs_error err = { 0, "" };

	(void)state;
	assert_int_equal(migrate_run_set(c, set_ab, 2, &err), 0);
	assert_int_equal(migrate_run_set(c, set_ab, 1, &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message, "database schema version 2 is newer than this pcsecretd");
	store_sync_close(c);

	c = fresh("pcs_test_mig_newer");
	assert_int_equal(migrate_run_set(c, with_gap, 2, &err), 0);
	assert_int_equal(migrate_run_set(c, other, 3, &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message,
	    "database records migration 003_c, which this pcsecretd does not know");
	assert_query("SELECT to_regclass('x') IS NULL AND to_regclass('y') IS NULL", "t");
	store_sync_close(c);
}

static void
test_bad_sets_refused(void **state)
{
	const struct migration unordered[] = { set_ab[1], set_ab[0] };
	struct store_sync *c = fresh("pcs_test_mig_badset");
	pcs_error err = { 0, "" };

	(void)state;
	assert_int_equal(migrate_run_set(c, unordered, 2, &err), -PCS_INVALID_ARGUMENT);
	assert_query("SELECT to_regclass('schema_migrations') IS NULL", "t");
	/* An empty set is fine on an empty database. */
	assert_int_equal(migrate_run_set(c, NULL, 0, &err), 0);
	store_sync_close(c);
}

#define RACERS 4

static void
test_concurrent_daemons(void **state)
{
	/* No IF NOT EXISTS: a migration applied twice fails. The sleep widens the race. */
	const struct migration set[] = {
		{ 1, "001_t1", "CREATE TABLE t1 (id int);\nSELECT pg_sleep(0.3);", 0 },
		{ 2, "002_t2", "CREATE TABLE t2 (id int);", 0 },
		{ 3, "003_t3", "CREATE TABLE t3 (id int);\nINSERT INTO t3 VALUES (1);", 0 },
	};
	struct store_sync *c = fresh("pcs_test_mig_race");
	pid_t pids[RACERS];
	int gate[2], i, status;
	char byte;

	(void)state;
	store_sync_close(c);
	assert_int_equal(pipe(gate), 0);
	for (i = 0; i < RACERS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			pcs_error err = { 0, "" };
			int r;

			close(gate[1]);
			/* Everyone starts when the parent closes the pipe. */
			if (read(gate[0], &byte, 1) < 0)
				_exit(3);
			if (store_sync_connect(conninfo, &c, &err) != 0) {
				fprintf(stderr, "racer %d: %s\n", i, err.message);
				_exit(2);
			}
			r = migrate_run_set(c, set, 3, &err);
			if (r != 0)
				fprintf(stderr, "racer %d: %s\n", i, err.message);
			store_sync_close(c);
			_exit(r == 0 ? 0 : 1);
		}
	}
	close(gate[0]);
	close(gate[1]);
	for (i = 0; i < RACERS; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_query("SELECT string_agg(name, ',' ORDER BY version) FROM schema_migrations",
	    "001_t1,002_t2,003_t3");
	assert_query("SELECT count(*) FROM t3", "1");
}

/* The build embedded every migrations/NNN_name.sql byte-exact and in order; they apply once. */
static void
test_embedded_migrations(void **state)
{
	const char *src = getenv("PCS_SOURCE_DIR");
	char dir[1024], path[2048], want[64];
	struct dirent **names = NULL;
	struct store_sync *c;
	pcs_error err = { 0, "" };
	size_t i, k = 0;
	int n, j;

	(void)state;
	assert_non_null(src);
	snprintf(dir, sizeof(dir), "%s/migrations", src);
	n = scandir(dir, &names, NULL, alphasort);
	assert_true(n >= 0);
	for (j = 0; j < n; j++) {
		const char *name = names[j]->d_name;
		size_t len = strlen(name);
		FILE *f;
		char *text;
		long size;

		if (len < 5 || strcmp(name + len - 4, ".sql") != 0)
			continue;
		assert_true(k < pcs_migrations_count);
		snprintf(want, sizeof(want), "%.*s", (int)(len - 4), name);
		assert_string_equal(pcs_migrations[k].name, want);
		assert_int_equal(pcs_migrations[k].version, atoi(name));
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		assert_non_null(f = fopen(path, "rb"));
		fseek(f, 0, SEEK_END);
		size = ftell(f);
		rewind(f);
		assert_non_null(text = calloc(1, (size_t)size + 1));
		assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
		fclose(f);
		assert_int_equal(strlen(pcs_migrations[k].sql), (size_t)size);
		assert_memory_equal(pcs_migrations[k].sql, text, (size_t)size);
		free(text);
		k++;
	}
	for (j = 0; j < n; j++)
		free(names[j]);
	free(names);
	assert_int_equal(k, pcs_migrations_count);
	for (i = 1; i < pcs_migrations_count; i++)
		assert_true(pcs_migrations[i].version > pcs_migrations[i - 1].version);

	c = fresh("pcs_test_mig_embedded");
	assert_int_equal(migrate_run(c, &err), 0);
	assert_int_equal(migrate_run(c, &err), 0);
	snprintf(want, sizeof(want), "%zu", pcs_migrations_count);
	assert_query("SELECT count(*) FROM schema_migrations", want);
	store_sync_close(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_then_noop),
		cmocka_unit_test(test_changed_migration_refused),
		cmocka_unit_test(test_failing_migration_rolls_back),
		cmocka_unit_test(test_unknown_version_refused),
		cmocka_unit_test(test_bad_sets_refused),
		cmocka_unit_test(test_concurrent_daemons),
		cmocka_unit_test(test_embedded_migrations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
