/*
 * migrate: migrations, the SQL API schema and the service role's privileges, applied under a
 * session advisory lock; and the check the service role's connection makes afterwards.
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
/* Room for "pcs_api_<int>" and a little more. */
#define SCHEMA_NAME_MAX 32

void migrate_plan_builtin(struct migrate_plan *p)
{
	p->set = pcs_migrations;
	p->n = pcs_migrations_count;
	p->api_version = pcs_api_version;
	p->api_sql = pcs_api_sql;
}

static void api_schema(int api_version, char out[SCHEMA_NAME_MAX])
{
	snprintf(out, SCHEMA_NAME_MAX, "pcs_api_%d", api_version);
}

void migrate_search_path(int api_version, char *buf, size_t size)
{
	char schema[SCHEMA_NAME_MAX];

	api_schema(api_version, schema);
	/* public holds the tables; nothing else, so no other schema can shadow a function. */
	snprintf(buf, size, "%s,public", schema);
}

static int run(struct store_sync *c, const char *sql, int nparams, const char *const *values,
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

/* Runs sql and hands back the first cell of its one row (or "" when there is none). */
static int run_value(struct store_sync *c, const char *sql, int nparams, const char *const *values,
    char *buf, size_t size, pcs_error *err)
{
	struct store_result *r = NULL;
	int ret;

	buf[0] = '\0';
	if ((ret = run(c, sql, nparams, values, &r, err)) != 0)
		goto out;
	if (store_result_ntuples(r) > 0)
		snprintf(buf, size, "%s", store_result_value(r, 0, 0));
out:
	store_result_free(r);
	return ret;
}

static int sha256_hex(struct store_sync *c, const char *text, const char *what,
    char out[CHECKSUM_LEN + 1], pcs_error *err)
{
	const char *v[1] = { text };
	int ret;

	if ((ret = run_value(c, "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", 1, v, out,
	         CHECKSUM_LEN + 1, err)) != 0)
		return ret;
	if (strlen(out) != CHECKSUM_LEN)
		return pcs_fail(err, PCS_INTERNAL, "could not compute the checksum of %s", what);
	return 0;
}

static int checksum(
    struct store_sync *c, const struct migration *m, char out[CHECKSUM_LEN + 1], pcs_error *err)
{
	char what[160];

	snprintf(what, sizeof(what), "migration %s", m->name);
	return sha256_hex(c, m->sql, what, out, err);
}

static int plan_check(const struct migrate_plan *p, pcs_error *err)
{
	const struct migration *set = p->set;
	size_t i;

	if (p->api_version < 0 || (p->api_version > 0 && p->api_sql == NULL))
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "the SQL API is incomplete");
	for (i = 0; i < p->n; i++) {
		if (set[i].name == NULL || set[i].sql == NULL || set[i].version <= 0)
			return pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "migration %zu is incomplete", i);
		if (i > 0 && set[i].version <= set[i - 1].version)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "migration %s is out of order (versions must increase)", set[i].name);
		if (set[i].min_api < 0 || set[i].min_api > p->api_version)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "migration %s needs SQL API version %d; this build has %d", set[i].name,
			    set[i].min_api, p->api_version);
	}
	return 0;
}

/* A recorded version number (schema_migrations.version is an integer column). */
static int version_of(const struct store_result *recorded, int row)
{
	long v = strtol(store_result_value(recorded, row, 0), NULL, 10);

	return v > 0 && v <= INT_MAX ? (int)v : -1;
}

/* A count or version PostgreSQL printed; 0 for anything else. */
static int int_of(const char *s)
{
	long v = strtol(s, NULL, 10);

	return v > 0 && v <= INT_MAX ? (int)v : 0;
}

/* The row of recorded whose version is v, or -1. */
static int recorded_row(const struct store_result *recorded, int v)
{
	int i;

	for (i = 0; i < store_result_ntuples(recorded); i++)
		if (version_of(recorded, i) == v)
			return i;
	return -1;
}

static const struct migration *set_find(const struct migration *set, size_t n, int v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (set[i].version == v)
			return &set[i];
	return NULL;
}

/* One statement of a transaction: a script (nparams 0) or a statement with parameters. */
struct tx_step {
	const char *sql;
	int nparams;
	const char *const *values;
};

/*
 * Runs steps[0..n) as one transaction, rolled back when a step fails. 0, or the failing
 * step's status with e saying why.
 */
static int run_transaction(
    struct store_sync *c, const struct tx_step *steps, size_t n, pcs_error *e)
{
	pcs_error ignored;
	int ret;

	if ((ret = store_sync_exec_script(c, "BEGIN", e)) != 0)
		return ret;
	for (size_t i = 0; i < n; i++) {
		ret = steps[i].nparams == 0 ?
		    store_sync_exec_script(c, steps[i].sql, e) :
		    run(c, steps[i].sql, steps[i].nparams, steps[i].values, NULL, e);
		if (ret != 0)
			goto rollback;
	}
	if ((ret = store_sync_exec_script(c, "COMMIT", e)) == 0)
		return 0;
rollback:
	store_sync_exec_script(c, "ROLLBACK", &ignored);
	return ret;
}

static int apply(struct store_sync *c, const struct migration *m, const char *sum, pcs_error *err)
{
	char version[16], min_api[16];
	const char *v[4] = { version, m->name, sum, min_api };
	/*
	 * Tables live in public, where the API's search_path looks for them, whatever the
	 * owner's connection would otherwise use (its options, ALTER ROLE ... SET, "$user").
	 */
	const struct tx_step steps[] = {
		{ "SET LOCAL search_path TO public", 0, NULL },
		{ m->sql, 0, NULL },
		{ "INSERT INTO public.schema_migrations (version, name, checksum, min_api) "
		  "VALUES ($1, $2, $3, nullif($4::int, 0))",
		    4, v },
	};
	pcs_error e = { 0, "" };
	int ret;

	snprintf(version, sizeof(version), "%d", m->version);
	snprintf(min_api, sizeof(min_api), "%d", m->min_api);
	ret = run_transaction(c, steps, sizeof(steps) / sizeof(steps[0]), &e);
	if (ret != 0)
		pcs_fail(err, -ret, "migration %s failed: %s", m->name, e.message);
	return ret;
}

/*
 * Refuses a database that records migrations p does not know, unless they are all newer than
 * p's and declare that p's API version still works on them. *newer gets the first newer one
 * (0 when none).
 */
static int check_unknown(
    const struct migrate_plan *p, const struct store_result *recorded, int *newer, pcs_error *err)
{
	const struct migration *set = p->set;
	int row, v, min_api, top = p->n > 0 ? set[p->n - 1].version : 0;

	*newer = 0;
	for (row = 0; row < store_result_ntuples(recorded); row++) {
		v = version_of(recorded, row);
		if (set_find(set, p->n, v) != NULL)
			continue;
		if (v < top || v < 0)
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "database records migration %s, which this pcsecretd does not know",
			    store_result_value(recorded, row, 1));
		min_api = int_of(store_result_value(recorded, row, 3));
		if (min_api <= 0)
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "database schema version %d is newer than this pcsecretd", v);
		if (min_api > p->api_version)
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "database schema version %d (migration %s) needs a pcsecretd with SQL API "
			    "version %d or later; this one has %d (schema version %d): upgrade it",
			    v, store_result_value(recorded, row, 1), min_api, p->api_version, top);
		if (*newer == 0)
			*newer = v;
	}
	return 0;
}

/*
 * Creates p's API in its schema unless the database records that same text for it. The
 * schema is emptied rather than dropped, so the USAGE granted on it to service roles stays.
 */
static int apply_api(struct store_sync *c, const struct migrate_plan *p, pcs_error *err)
{
	char schema[SCHEMA_NAME_MAX], path[SCHEMA_NAME_MAX + 16], version[16];
	char sum[CHECKSUM_LEN + 1], have[CHECKSUM_LEN + 2];
	char create[128], empty[512], search[128];
	const char *v[3] = { version, schema, sum };
	/* Recorded in the same transaction: a daemon never sees the text without its record. */
	const struct tx_step steps[] = {
		{ create, 0, NULL },
		{ empty, 0, NULL },
		{ search, 0, NULL },
		{ p->api_sql, 0, NULL },
		{ "INSERT INTO public.schema_api (version, schema, checksum) "
		  "VALUES ($1, $2, $3) ON CONFLICT (version) DO UPDATE SET schema = EXCLUDED.schema, "
		  "checksum = EXCLUDED.checksum, applied_at = now()",
		    3, v },
	};
	pcs_error e = { 0, "" };
	int ret;

	api_schema(p->api_version, schema);
	migrate_search_path(p->api_version, path, sizeof(path));
	snprintf(version, sizeof(version), "%d", p->api_version);
	if ((ret = sha256_hex(c, p->api_sql, "the SQL API", sum, err)) != 0 ||
	    (ret = run_value(c,
	         "SELECT a.checksum FROM public.schema_api a WHERE a.version = $1 "
	         "AND to_regnamespace(a.schema) IS NOT NULL",
	         1, v, have, sizeof(have), err)) != 0)
		return ret;
	if (strcmp(have, sum) == 0)
		return 0;
	snprintf(create, sizeof(create), "CREATE SCHEMA IF NOT EXISTS %s", schema);
	snprintf(empty, sizeof(empty),
	    "DO $$ DECLARE f regprocedure; BEGIN "
	    "FOR f IN SELECT p.oid::regprocedure FROM pg_proc p "
	    "WHERE p.pronamespace = '%s'::regnamespace LOOP EXECUTE "
	    "format('DROP ROUTINE %%s', f); END LOOP; END $$",
	    schema);
	snprintf(search, sizeof(search), "SET LOCAL search_path TO %s", path);
	if ((ret = run_transaction(c, steps, sizeof(steps) / sizeof(steps[0]), &e)) != 0)
		pcs_fail(err, -ret, "SQL API %s (sql/api.sql) failed: %s", schema, e.message);
	return ret;
}

/*
 * What migrate itself makes: the API schema, and the tables migrate_check reads from the
 * service role's side ($1 the role, $2 the schema or "").
 */
#define API_GRANTS \
	"SELECT format('GRANT USAGE ON SCHEMA %I TO %I', $2::text, $1::text) WHERE $2 <> '' " \
	"UNION ALL SELECT format('GRANT SELECT ON public.schema_migrations, public.schema_api TO %I', $1::text)"

/*
 * Grants service_role what service_grants lists (and USAGE on the API schema) and revokes
 * what it says to revoke, in one transaction. Nothing for the connection's own role: an owner
 * has every privilege, and a single-role set-up is the owner.
 */
static int grant_service(
    struct store_sync *c, const struct migrate_plan *p, const char *role, pcs_error *err)
{
	char schema[SCHEMA_NAME_MAX], same[8], grants[8], api[SCHEMA_NAME_MAX];
	const char *v[2] = { role, api };
	struct store_result *stmts = NULL;
	struct tx_step *steps = NULL;
	pcs_error e = { 0, "" };
	size_t i, n;
	int ret;

	api_schema(p->api_version, schema);
	snprintf(api, sizeof(api), "%s", p->api_version > 0 ? schema : "");
	if ((ret = run_value(c, "SELECT current_user = $1", 1, v, same, sizeof(same), err)) != 0)
		goto out;
	if (strcmp(same, "t") == 0)
		goto out;
	if ((ret = run_value(c, "SELECT to_regrole(quote_ident($1)) IS NOT NULL", 1, v, same,
	         sizeof(same), err)) != 0)
		goto out;
	if (strcmp(same, "t") != 0) {
		ret = pcs_fail(
		    err, PCS_FAILED_PRECONDITION, "database role %s does not exist", role);
		goto out;
	}
	/* A plan without migration 004 (tests' own sets) has no service_grants. */
	if ((ret = run_value(c, "SELECT to_regclass('public.service_grants') IS NOT NULL", 0, NULL,
	         grants, sizeof(grants), err)) != 0)
		goto out;
	/* The statements are built by the server: %I quotes the role name whatever it holds. */
	if ((ret = run(c,
	         strcmp(grants, "t") == 0 ?
	             "SELECT format('GRANT %s ON %s TO %I', g.privileges, g.object, $1::text) "
	             "FROM public.service_grants g WHERE g.privileges <> '' "
	             "UNION ALL SELECT format('REVOKE %s ON %s FROM %I', g.revoked, g.object, $1::text) "
	             "FROM public.service_grants g WHERE g.revoked <> '' "
	             "UNION ALL " API_GRANTS :
	             API_GRANTS,
	         2, v, &stmts, err)) != 0)
		goto out;
	n = (size_t)store_result_ntuples(stmts);
	if ((steps = calloc(n + 1, sizeof(*steps))) == NULL) {
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	/* service_grants names its objects as they are in public. */
	steps[0].sql = "SET LOCAL search_path TO public";
	for (i = 0; i < n; i++)
		steps[i + 1].sql = store_result_value(stmts, (int)i, 0);
	ret = run_transaction(c, steps, n + 1, &e);
out:
	free(steps);
	if (ret != 0 && e.message[0] != '\0')
		pcs_fail(err, -ret, "granting database role %s its privileges failed: %s", role,
		    e.message);
	store_result_free(stmts);
	return ret;
}

int migrate_apply(
    struct store_sync *c, const struct migrate_plan *p, const char *service_role, pcs_error *err)
{
	const struct migration *set = p->set;
	struct store_result *recorded = NULL;
	char(*sums)[CHECKSUM_LEN + 1] = NULL;
	const struct migration *m;
	const char *have;
	size_t i, n = p->n;
	int ret, locked = 0, row, newer;

	if ((ret = plan_check(p, err)) != 0)
		goto out;
	if ((sums = calloc(n > 0 ? n : 1, sizeof(*sums))) == NULL) {
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if ((ret = run(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL, NULL, err)) !=
	    0)
		goto out;
	locked = 1;
	/*
	 * Under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide. Qualified,
	 * because IF NOT EXISTS looks only where it would create: with the API schema first on
	 * the connection's search_path it would make a second, empty record there. min_api came
	 * with API schemas; daemons from before them neither read nor write it.
	 */
	if ((ret = run(c,
	         "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
	         "version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
	         "applied_at timestamptz NOT NULL DEFAULT now())",
	         0, NULL, NULL, err)) != 0 ||
	    (ret = run(c,
	         "ALTER TABLE public.schema_migrations ADD COLUMN IF NOT EXISTS min_api int", 0,
	         NULL, NULL, err)) != 0 ||
	    (ret = run(c,
	         "CREATE TABLE IF NOT EXISTS public.schema_api ("
	         "version int PRIMARY KEY, schema text NOT NULL, checksum text NOT NULL, "
	         "applied_at timestamptz NOT NULL DEFAULT now())",
	         0, NULL, NULL, err)) != 0 ||
	    (ret = run(c,
	         "SELECT version, name, checksum, coalesce(min_api, 0) "
	         "FROM public.schema_migrations ORDER BY version",
	         0, NULL, &recorded, err)) != 0)
		goto out;

	if ((ret = check_unknown(p, recorded, &newer, err)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		m = &set[i];
		if ((ret = checksum(c, m, sums[i], err)) != 0)
			goto out;
		if ((row = recorded_row(recorded, m->version)) < 0) {
			/* Applied after a newer one, it would meet a schema it was not written for. */
			if (newer != 0) {
				ret = pcs_fail(err, PCS_FAILED_PRECONDITION,
				    "database schema version %d is newer than this pcsecretd but lacks "
				    "its migration %s",
				    newer, m->name);
				goto out;
			}
			continue;
		}
		have = store_result_value(recorded, row, 2);
		if (strcmp(have, sums[i]) != 0) {
			ret = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "migration %s was changed after it was applied (recorded checksum "
			    "%.12s..., file checksum %.12s...)",
			    m->name, have, sums[i]);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (recorded_row(recorded, set[i].version) >= 0)
			continue;
		if ((ret = apply(c, &set[i], sums[i], err)) != 0)
			goto out;
	}
	if (p->api_version > 0 && (ret = apply_api(c, p, err)) != 0)
		goto out;
	if (service_role != NULL && service_role[0] != '\0' &&
	    (ret = grant_service(c, p, service_role, err)) != 0)
		goto out;
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

int migrate_run_set(struct store_sync *c, const struct migration *set, size_t n, pcs_error *err)
{
	const struct migrate_plan p = { set, n, 0, NULL };

	return migrate_apply(c, &p, NULL, err);
}

int migrate_run(struct store_sync *c, pcs_error *err)
{
	struct migrate_plan p;

	migrate_plan_builtin(&p);
	return migrate_apply(c, &p, NULL, err);
}

int migrate_check(
    struct store_sync *c, const struct migrate_plan *p, struct migrate_status *st, pcs_error *err)
{
	char schema[SCHEMA_NAME_MAX], version[16], sum[CHECKSUM_LEN + 1];
	char buf[CHECKSUM_LEN + 2];
	const char *v[2] = { version, schema };
	struct migrate_status ignored;
	int ret, want = p->n > 0 ? p->set[p->n - 1].version : 0;

	if (st == NULL)
		st = &ignored;
	memset(st, 0, sizeof(*st));
	api_schema(p->api_version, schema);
	snprintf(version, sizeof(version), "%d", p->api_version);
	if ((ret = run_value(c, "SELECT to_regclass('public.schema_migrations') IS NOT NULL", 0,
	         NULL, buf, sizeof(buf), err)) != 0)
		return ret;
	if (strcmp(buf, "t") != 0)
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "the database of database_url has no "
		    "pcsecret schema: were the migrations applied to another one? "
		    "(migrate_database_url must name the same database)");
	if ((ret = run_value(c, "SELECT has_table_privilege('public.schema_migrations', 'SELECT')",
	         0, NULL, buf, sizeof(buf), err)) != 0)
		return ret;
	if (strcmp(buf, "t") != 0)
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "the service role (database_url) may "
		    "not read schema_migrations: it has not been granted its privileges");
	if ((ret = run_value(c, "SELECT coalesce(max(version), 0) FROM public.schema_migrations", 0,
	         NULL, buf, sizeof(buf), err)) != 0)
		return ret;
	st->schema_version = int_of(buf);
	if (st->schema_version < want)
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "database schema version %d is older "
		    "than this pcsecretd needs (%d): migrations are applied through "
		    "migrate_database_url, which must name the same database as database_url",
		    st->schema_version, want);
	/* A newer schema is fine here: migrate_apply has checked that it still suits us. */
	if (p->api_version > 0) {
		if ((ret = sha256_hex(c, p->api_sql, "the SQL API", sum, err)) != 0 ||
		    (ret = run_value(c,
		         "SELECT checksum FROM public.schema_api WHERE version = $1 "
		         "AND schema = $2",
		         2, v, buf, sizeof(buf), err)) != 0)
			return ret;
		if (buf[0] == '\0')
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "the database has no SQL API "
			    "schema %s, which this pcsecretd uses",
			    schema);
		if (strcmp(buf, sum) != 0)
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "SQL API schema %s in the "
			    "database holds another text than this pcsecretd's (checksum %.12s..., "
			    "ours %.12s...): another build of API version %d started meanwhile; a "
			    "changed sql/api.sql needs a new api_version",
			    schema, buf, sum, p->api_version);
		if ((ret = run_value(c, "SELECT has_schema_privilege($1, 'USAGE')", 1, v + 1, buf,
		         sizeof(buf), err)) != 0)
			return ret;
		if (strcmp(buf, "t") != 0)
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "the service role (database_url) "
			    "may not use schema %s",
			    schema);
		if ((ret = run_value(
		         c, "SELECT current_schema()", 0, NULL, buf, sizeof(buf), err)) != 0)
			return ret;
		if (strcmp(buf, schema) != 0)
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "the connection's search_path "
			    "does not start with %s",
			    schema);
	}
	if ((ret = run_value(c,
	         "SELECT coalesce(pg_has_role(current_user, (SELECT c.relowner "
	         "FROM pg_class c WHERE c.oid = to_regclass('public.audit_log')), 'MEMBER'), false)",
	         0, NULL, buf, sizeof(buf), err)) != 0)
		return ret;
	st->audit_mutable = strcmp(buf, "t") == 0;
	pcs_error_clear(err);
	return 0;
}
