/*
 * migrate: applies embedded migrations under a session advisory lock.
 *
 * Everything is checked before anything is applied: a database that records a changed or
 * unknown migration is refused untouched. Checksums are computed by PostgreSQL (sha256()),
 * so the daemon carries no hashing code of its own for this.
 */
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"

#define CHECKSUM_LEN 64

static int
run(struct store_sync *c, const char *sql, int nparams, const char *const *values,
    struct store_result **out, pcs_error *err)
{
	struct store_query q = { sql, nparams, values, NULL, NULL };
	struct store_result *r = NULL;
	int ret;

	ret = store_sync_exec(c, &q, &r, err);
	if (out != NULL) {
		*out = r;
		r = NULL;
	}
	store_result_free(r);
	return ret;
}

static int
checksum(struct store_sync *c, const struct migration *m, char out[CHECKSUM_LEN + 1],
    pcs_error *err)
{
	struct store_result *r = NULL;
	const char *v[1] = { m->sql };
	int ret;

	if ((ret = run(c, "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", 1, v, &r,
	    err)) != 0)
		goto out;
	if (store_result_ntuples(r) != 1 ||
	    strlen(store_result_value(r, 0, 0)) != CHECKSUM_LEN) {
		ret = pcs_fail(err, PCS_INTERNAL, "could not compute the checksum of migration %s",
		    m->name);
		goto out;
	}
	memcpy(out, store_result_value(r, 0, 0), CHECKSUM_LEN + 1);
out:
	store_result_free(r);
	return ret;
}

static int
set_check(const struct migration *set, size_t n, pcs_error *err)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (set[i].name == NULL || set[i].sql == NULL || set[i].version <= 0)
			return pcs_fail(err, PCS_INVALID_ARGUMENT, "migration %zu is incomplete", i);
		if (i > 0 && set[i].version <= set[i - 1].version)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "migration %s is out of order (versions must increase)", set[i].name);
	}
	return 0;
}

/* A recorded version number (schema_migrations.version is an integer column). */
static int
version_of(const struct store_result *recorded, int row)
{
	long v = strtol(store_result_value(recorded, row, 0), NULL, 10);

	return v > 0 && v <= INT_MAX ? (int)v : -1;
}

/* The row of recorded whose version is v, or -1. */
static int
recorded_row(const struct store_result *recorded, int v)
{
	int i;

	for (i = 0; i < store_result_ntuples(recorded); i++)
		if (version_of(recorded, i) == v)
			return i;
	return -1;
}

static const struct migration *
set_find(const struct migration *set, size_t n, int v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (set[i].version == v)
			return &set[i];
	return NULL;
}

static int
apply(struct store_sync *c, const struct migration *m, const char *sum, pcs_error *err)
{
	char version[16];
	const char *v[3] = { version, m->name, sum };
	pcs_error e = { 0, "" };
	int ret, begun = 0;

	snprintf(version, sizeof(version), "%d", m->version);
	if ((ret = store_sync_exec_script(c, "BEGIN", &e)) != 0)
		goto out;
	begun = 1;
	if ((ret = store_sync_exec_script(c, m->sql, &e)) != 0 ||
	    (ret = run(c, "INSERT INTO schema_migrations (version, name, checksum) "
	    "VALUES ($1, $2, $3)", 3, v, NULL, &e)) != 0 ||
	    (ret = store_sync_exec_script(c, "COMMIT", &e)) != 0)
		goto out;
	begun = 0;
out:
	if (begun) {
		pcs_error ignored;

		store_sync_exec_script(c, "ROLLBACK", &ignored);
	}
	if (ret != 0)
		pcs_fail(err, -ret, "migration %s failed: %s", m->name, e.message);
	return ret;
}

int
migrate_run_set(struct store_sync *c, const struct migration *set, size_t n, pcs_error *err)
{
	struct store_result *recorded = NULL;
	char (*sums)[CHECKSUM_LEN + 1] = NULL;
	const struct migration *m;
	const char *have;
	size_t i;
	int ret, locked = 0, row, v;

	if ((ret = set_check(set, n, err)) != 0)
		goto out;
	if ((sums = calloc(n > 0 ? n : 1, sizeof(*sums))) == NULL) {
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if ((ret = run(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL, NULL,
	    err)) != 0)
		goto out;
	locked = 1;
	/* Under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide. */
	if ((ret = run(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
	    "version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
	    "applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL, NULL, err)) != 0 ||
	    (ret = run(c, "SELECT version, name, checksum FROM schema_migrations "
	    "ORDER BY version", 0, NULL, &recorded, err)) != 0)
		goto out;

	for (row = 0; row < store_result_ntuples(recorded); row++) {
		v = version_of(recorded, row);
		if (set_find(set, n, v) != NULL)
			continue;
		if (n == 0 || v > set[n - 1].version)
			ret = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "database schema version %d is newer than this pcsecretd", v);
		else
			ret = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "database records migration %s, which this pcsecretd does not know",
			    store_result_value(recorded, row, 1));
		goto out;
	}
	for (i = 0; i < n; i++) {
		m = &set[i];
		if ((ret = checksum(c, m, sums[i], err)) != 0)
			goto out;
		if ((row = recorded_row(recorded, m->version)) < 0)
			continue;
		have = store_result_value(recorded, row, 2);
		if (strcmp(have, sums[i]) != 0) {
			ret = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "migration %s was changed after it was applied (recorded checksum "
			    "%.12s..., file checksum %.12s...)", m->name, have, sums[i]);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (recorded_row(recorded, set[i].version) >= 0)
			continue;
		if ((ret = apply(c, &set[i], sums[i], err)) != 0)
			goto out;
	}
	pcs_error_clear(err);
out:
	if (locked) {
		pcs_error ignored;

		/* A lost connection releases the lock by itself. */
		run(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL, NULL, &ignored);
	}
	store_result_free(recorded);
	free(sums);
	return ret;
}

int
migrate_run(struct store_sync *c, pcs_error *err)
{
	return migrate_run_set(c, pcs_migrations, pcs_migrations_count, err);
}
