/*
 * test_roles_db: the owner and service roles, the SQL API schema and the schema version
 * checks, against the real PostgreSQL of the ctest fixture (each test on a database of its
 * own; the cluster's superuser is the owner, as in the integration tests).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migrate.h"
#include "pgtest.h"
#include "store.h"

#define SVC "pcs_test_svc"
/*
 * What the migrations leave in public: trigger functions, and the audit chain's (migrations
 * 012 and 013: the row and link encodings the seal writes and verify checks, one definition
 * whatever the API version; the heartbeat); the API has its own schema.
 */
#define TRIGGER_FUNCTIONS \
	"pcs_agent_changed,pcs_audit_afield,pcs_audit_append_only,pcs_audit_archivable," \
	"pcs_audit_archivable_chain,pcs_audit_archive,pcs_audit_deadline,pcs_audit_field,pcs_audit_link_hash," \
	"pcs_audit_row_hash,pcs_audit_row_hash2,pcs_audit_seal,pcs_audit_ts," \
	"pcs_audit_verify,pcs_binding_changed,pcs_instance_heartbeat,pcs_notify_all," \
	"pcs_principals_changed,pcs_secret_changed,pcs_version_changed,pcs_watch_binding," \
	"pcs_watch_secret,pcs_watch_version"
#define TRIGGER_FUNCTIONS_COUNT "23"

static char owner_url[1024], svc_url[1200];

/* A fresh database; *owner is connected to it as the cluster's superuser. */
static void fresh(const char *dbname, struct store_sync **owner)
{
	pcs_error err = { 0, "" };

	assert_int_equal(pgtest_create_db(dbname, owner_url, sizeof(owner_url)), 0);
	assert_int_equal(pgtest_login_role(SVC, owner_url, svc_url, sizeof(svc_url)), 0);
	assert_int_equal(store_sync_connect(owner_url, owner, &err), 0);
}

/* A connection as the service role, with API version api's search_path as the daemon has. */
static struct store_sync *service(int api)
{
	struct store_sync *c = NULL;
	char path[64], opts[96], *url = NULL;
	pcs_error err = { 0, "" };

	migrate_search_path(api, path, sizeof(path));
	snprintf(opts, sizeof(opts), "-c search_path=%s", path);
	assert_int_equal(store_conninfo_add_options(svc_url, opts, &url, &err), 0);
	assert_int_equal(store_sync_connect(url, &c, &err), 0);
	store_conninfo_free(url);
	return c;
}

static void assert_query(const char *conninfo, const char *sql, const char *want)
{
	char *got = pgtest_query_text(conninfo, sql);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

/* Runs sql on c; returns its status and leaves the message in err. */
static int exec(struct store_sync *c, const char *sql, pcs_error *err)
{
	return store_sync_exec_script(c, sql, err);
}

#define AUDIT_ROW \
	"INSERT INTO audit_log (instance_id, call_id, peer_uid, peer_gid, peer_pid, " \
	"principal, method, status) VALUES (gen_random_uuid(), 1, 0, 0, 0, 'test', 'Hello', 'OK')"

static void test_service_role_cannot_change_audit_rows(void **state)
{
	static const char *const changes[] = {
		"UPDATE audit_log SET status = 'PERMISSION_DENIED'",
		"DELETE FROM audit_log",
		"TRUNCATE audit_log",
	};
	static const char *const ops[] = { "UPDATE", "DELETE", "TRUNCATE" };
	struct store_sync *owner, *svc;
	struct migrate_plan plan;
	struct migrate_status st;
	pcs_error err = { 0, "" };
	char want[160];
	size_t i;

	(void)state;
	fresh("pcs_test_roles_audit", &owner);
	migrate_plan_builtin(&plan);
	assert_int_equal(migrate_apply(owner, &plan, SVC, &err), 0);
	svc = service(pcs_api_version);
	assert_int_equal(migrate_check(svc, &plan, &st, &err), 0);
	assert_int_equal(st.audit_mutable, 0);
	assert_int_equal(st.schema_version, plan.set[plan.n - 1].version);

	/* What the daemon does with audit rows: insert and read them. */
	assert_int_equal(exec(svc, AUDIT_ROW, &err), 0);
	assert_int_equal(exec(svc, "SELECT count(*) FROM audit_log", &err), 0);
	/*
	 * Its insert was sealed by the owner's trigger into a chain's link listing the row with
	 * its hash, and the chain's head recorded; the service role can read links and heads,
	 * and write neither (migrations 012 and 013, docs/audit.md).
	 */
	assert_query(owner_url,
	    "SELECT count(*)::text || max(h.seq)::text FROM audit_chain_heads h "
	    "JOIN audit_chain_links l ON l.instance_id = h.instance_id AND l.lane = h.lane "
	    "AND l.seq = h.seq AND l.hash = h.hash JOIN audit_log a ON a.id = ANY (l.ids) "
	    "AND l.row_hashes = ARRAY[pcs_audit_row_hash2(a)]",
	    "11");
	assert_int_equal(exec(svc, "SELECT count(*) FROM audit_chain_links", &err), 0);
	assert_int_equal(exec(svc, "UPDATE audit_chain_links SET seq = 0", &err), -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	assert_int_equal(exec(svc, "DELETE FROM audit_chain_links", &err), -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	assert_int_equal(exec(svc,
	                     "INSERT INTO audit_chain_links (instance_id, lane, seq, ids, "
	                     "row_hashes, prev_hash, hash) VALUES (gen_random_uuid(), 1, 1, "
	                     "'{1}', '{}', '\\x', '\\x00')",
	                     &err),
	    -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	assert_int_equal(exec(svc, "SELECT count(*) FROM audit_chain_heads", &err), 0);
	assert_int_equal(exec(svc, "UPDATE audit_chain_heads SET seq = 0", &err), -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	assert_int_equal(exec(svc, "DELETE FROM audit_chain_heads", &err), -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	assert_int_equal(exec(svc,
	                     "INSERT INTO audit_chain_heads (instance_id, lane, seq, hash) "
	                     "VALUES (gen_random_uuid(), 1, 1, '\\x00')",
	                     &err),
	    -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	/*
	 * It cannot choose chain values: the chain columns are 012's rows' only, and an insert
	 * that sets them is refused (nothing inserted); the chain is the trigger's.
	 */
	assert_int_equal(exec(svc,
	                     "INSERT INTO audit_log (instance_id, call_id, peer_uid, peer_gid, "
	                     "peer_pid, principal, method, status, chain_seq, chain_hash) VALUES "
	                     "(gen_random_uuid(), 1, 0, 0, 0, 'test', 'Hello', 'OK', 7, '\\x00')",
	                     &err),
	    -PCS_INTERNAL);
	assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	assert_int_equal(exec(svc,
	                     "INSERT INTO audit_log (instance_id, call_id, peer_uid, peer_gid, "
	                     "peer_pid, principal, method, status, chain_lane) VALUES "
	                     "(gen_random_uuid(), 1, 0, 0, 0, 'test', 'Hello', 'OK', 7)",
	                     &err),
	    -PCS_INTERNAL);
	assert_query(owner_url, "SELECT count(*) FROM audit_log", "1");
	assert_query(owner_url,
	    "SELECT count(*) FILTER (WHERE problem IS NULL)::text || max(last_seq)::text "
	    "FROM public.pcs_audit_verify(NULL)",
	    "11");

	/* Not granted. */
	for (i = 0; i < 3; i++) {
		assert_int_equal(exec(svc, changes[i], &err), -PCS_INTERNAL);
		assert_string_equal(err.message, "database error (SQLSTATE 42501)");
	}
	/* Nor is archiving (migration 014): the owner's only. */
	{
		static const char *const archive[] = {
			"SELECT * FROM public.pcs_audit_archive(now() - interval '1 day', 0)",
			"SELECT * FROM public.pcs_audit_archivable(now())",
			"SELECT * FROM public.pcs_audit_archivable_chain(now())",
		};
		for (i = 0; i < 3; i++) {
			assert_int_equal(exec(svc, archive[i], &err), -PCS_INTERNAL);
			assert_string_equal(err.message, "database error (SQLSTATE 42501)");
		}
	}
	/* Granted by someone careless: the trigger still refuses. */
	assert_int_equal(exec(owner, "GRANT ALL ON audit_log TO " SVC, &err), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(exec(svc, changes[i], &err), -PCS_PERMISSION_DENIED);
		snprintf(want, sizeof(want),
		    "audit rows are append-only: %s on audit_log is refused "
		    "to role " SVC,
		    ops[i]);
		assert_string_equal(err.message, want);
	}
	assert_query(owner_url, "SELECT count(*) || status FROM audit_log GROUP BY status", "1OK");
	/* The next start-up takes such grants back. */
	assert_int_equal(migrate_apply(owner, &plan, SVC, &err), 0);
	assert_query(owner_url,
	    "SELECT has_table_privilege('" SVC "', 'audit_log', "
	    "'UPDATE, DELETE, TRUNCATE')::text || has_table_privilege('" SVC "', 'audit_log', "
	    "'INSERT, SELECT')::text",
	    "falsetrue");
	/* The owner (who applies migrations) is the one role that may. */
	assert_int_equal(exec(owner, "UPDATE audit_log SET message = 'owner'", &err), 0);
	assert_int_equal(exec(owner, "DELETE FROM audit_log", &err), 0);
	assert_int_equal(exec(owner, "TRUNCATE audit_log", &err), 0);
	store_sync_close(svc);
	store_sync_close(owner);
}

static void test_service_role_uses_the_api_schema(void **state)
{
	struct store_sync *owner, *svc;
	struct migrate_plan plan;
	pcs_error err = { 0, "" };
	char sql[160];

	(void)state;
	fresh("pcs_test_roles_api", &owner);
	migrate_plan_builtin(&plan);
	assert_int_equal(migrate_apply(owner, &plan, SVC, &err), 0);
	/* Only the trigger functions stayed in public; the API is in its own schema. */
	assert_query(owner_url,
	    "SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc "
	    "WHERE pronamespace = 'public'::regnamespace",
	    TRIGGER_FUNCTIONS);
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM pg_proc WHERE pronamespace = "
	    "'pcs_api_%d'::regnamespace",
	    pcs_api_version);
	assert_query(owner_url, sql, "43");

	svc = service(pcs_api_version);
	/* Unqualified, as the daemon's statements call them. */
	assert_int_equal(exec(svc, "SELECT * FROM pcs_create_company('acme', 'test')", &err), 0);
	assert_int_equal(exec(svc,
	                     "SELECT * FROM pcs_create_agent('acme', 'bot', 40010, 'test', "
	                     "'{}')",
	                     &err),
	    0);
	assert_int_equal(exec(svc, "SELECT * FROM pcs_delete_agent('acme', 'bot')", &err), 0);
	assert_int_equal(exec(svc,
	                     "SELECT * FROM pcs_search_audit(NULL, NULL, NULL, 'x', "
	                     "NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, NULL, false, 10)",
	                     &err),
	    0);
	/* Beyond what the functions need, nothing. */
	assert_int_equal(exec(svc, "UPDATE companies SET name = 'x'", &err), -PCS_INTERNAL);
	assert_int_equal(exec(svc, "DELETE FROM keyring", &err), -PCS_INTERNAL);
	assert_int_equal(exec(svc,
	                     "CREATE FUNCTION pcs_api_1.pcs_ts(t timestamptz) RETURNS text "
	                     "LANGUAGE sql AS 'SELECT 1'",
	                     &err),
	    -PCS_INTERNAL);
	assert_int_equal(exec(svc, "DELETE FROM service_grants", &err), -PCS_INTERNAL);
	store_sync_close(svc);

	/* A role that is not there is named. */
	assert_int_equal(
	    migrate_apply(owner, &plan, "pcs_test_nobody", &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message, "database role pcs_test_nobody does not exist");
	/* The owner itself needs no grants (a single-role set-up). */
	assert_int_equal(migrate_apply(owner, &plan, "postgres", &err), 0);
	store_sync_close(owner);
}

/* A database made by a daemon from before API schemas moves to them, data and all. */
static void test_upgrade_from_public_functions(void **state)
{
	struct store_sync *owner, *svc;
	struct migrate_plan plan;
	pcs_error err = { 0, "" };

	(void)state;
	assert_true(pcs_migrations_count >= 4 && pcs_migrations[3].version == 4);
	fresh("pcs_test_roles_upgrade", &owner);
	/* What such a daemon did: 001-003, the functions in public, one role. */
	assert_int_equal(migrate_run_set(owner, pcs_migrations, 3, &err), 0);
	assert_int_equal(exec(owner, "SELECT * FROM pcs_create_company('acme', 'old')", &err), 0);

	migrate_plan_builtin(&plan);
	assert_int_equal(migrate_apply(owner, &plan, SVC, &err), 0);
	assert_query(owner_url,
	    "SELECT count(*) FROM pg_proc WHERE proname LIKE 'pcs_%' AND "
	    "pronamespace = 'public'::regnamespace",
	    TRIGGER_FUNCTIONS_COUNT);
	svc = service(pcs_api_version);
	assert_int_equal(migrate_check(svc, &plan, NULL, &err), 0);
	assert_int_equal(exec(svc, "SELECT * FROM pcs_create_company('beta', 'new')", &err), 0);
	assert_query(owner_url,
	    "SELECT string_agg(name || ':' || created_by, ',' ORDER BY name) "
	    "FROM companies",
	    "acme:old,beta:new");
	store_sync_close(svc);

	/* Such a daemon, restarted, cannot use the new schema: 004 says so. */
	assert_int_equal(migrate_run_set(owner, pcs_migrations, 3, &err), -PCS_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, "needs a pcsecretd with SQL API version 1 or later"));
	store_sync_close(owner);
}

/* The owner's connection may come with any search_path (a test's, ALTER ROLE ... SET). */
static void test_owner_search_path_does_not_matter(void **state)
{
	struct store_sync *owner, *odd;
	struct migrate_plan plan;
	char url[1200];
	pcs_error err = { 0, "" };

	(void)state;
	fresh("pcs_test_roles_path", &owner);
	snprintf(url, sizeof(url), "%s options=--search_path=pcs_api_1,public", owner_url);
	assert_int_equal(store_sync_connect(url, &odd, &err), 0);
	migrate_plan_builtin(&plan);
	/* The second run finds the API schema first on its path, and still the one record. */
	assert_int_equal(migrate_apply(odd, &plan, SVC, &err), 0);
	assert_int_equal(migrate_apply(odd, &plan, SVC, &err), 0);
	assert_query(owner_url,
	    "SELECT string_agg(n.nspname || '.' || c.relname, ',' ORDER BY "
	    "c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
	    "c.relname IN ('schema_migrations', 'schema_api', 'audit_log')",
	    "public.audit_log,public.schema_api,public.schema_migrations");
	store_sync_close(odd);
	store_sync_close(owner);
}

/* Two builds: API 1 knows migrations 1-2; API 2 adds 3 (additive) and maybe 4 (not). */
static const struct migration m1 = { 1, "001_a", "CREATE TABLE a (id int);", 0 };
static const struct migration m2 = { 2, "002_b", "CREATE TABLE b (id int);", 0 };
static const struct migration m3 = { 3, "003_c", "ALTER TABLE a ADD COLUMN note text;", 1 };
static const struct migration m4 = { 4, "004_d", "ALTER TABLE a DROP COLUMN id;", 2 };
#define API1 "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT count(id)::int FROM a';"
#define API1_FIX "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'SELECT 2';"
#define API2 "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT max(note) FROM a';"

static void test_old_and_new_daemons_share_a_database(void **state)
{
	const struct migration old_set[] = { m1, m2 };
	const struct migration new_set[] = { m1, m2, m3 };
	const struct migrate_plan old_plan = { old_set, 2, 1, API1 };
	const struct migrate_plan new_plan = { new_set, 3, 2, API2 };
	struct store_sync *owner, *svc1, *svc2;
	struct migrate_status st;
	pcs_error err = { 0, "" };

	(void)state;
	fresh("pcs_test_roles_share", &owner);
	assert_int_equal(migrate_apply(owner, &old_plan, SVC, &err), 0);
	assert_int_equal(migrate_apply(owner, &new_plan, SVC, &err), 0);
	assert_query(owner_url,
	    "SELECT string_agg(version || ':' || coalesce(min_api, 0), ',' "
	    "ORDER BY version) FROM schema_migrations",
	    "1:0,2:0,3:1");
	/* The old one restarts: 003 says API 1 still works, so it does. */
	assert_int_equal(migrate_apply(owner, &old_plan, SVC, &err), 0);
	svc1 = service(1);
	svc2 = service(2);
	assert_int_equal(migrate_check(svc1, &old_plan, &st, &err), 0);
	assert_int_equal(st.schema_version, 3);
	assert_int_equal(migrate_check(svc2, &new_plan, &st, &err), 0);
	/* Each finds its own f through its search_path (these sets have no service_grants). */
	assert_int_equal(exec(owner, "GRANT SELECT ON a TO " SVC, &err), 0);
	assert_int_equal(exec(svc1, "SELECT f() + 1", &err), 0);
	assert_int_equal(exec(svc2, "SELECT f() || 'x'", &err), 0);
	assert_query(owner_url,
	    "SELECT string_agg(version || ':' || schema, ',' ORDER BY version) "
	    "FROM schema_api",
	    "1:pcs_api_1,2:pcs_api_2");
	store_sync_close(svc1);
	store_sync_close(svc2);
	store_sync_close(owner);
}

static void test_newer_schema_the_api_cannot_use_refused(void **state)
{
	const struct migration old_set[] = { m1, m2 };
	const struct migration newer_set[] = { m1, m2, m3, m4 };
	const struct migration gap_set[] = { m1, m3 };
	const struct migrate_plan old_plan = { old_set, 2, 1, API1 };
	const struct migrate_plan newer_plan = { newer_set, 4, 2, API2 };
	const struct migrate_plan gap_plan = { gap_set, 2, 1, API1 };
	struct store_sync *owner;
	pcs_error err = { 0, "" };

	(void)state;
	fresh("pcs_test_roles_newer", &owner);
	assert_int_equal(migrate_apply(owner, &newer_plan, SVC, &err), 0);
	assert_int_equal(migrate_apply(owner, &old_plan, SVC, &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message,
	    "database schema version 4 (migration 004_d) needs a "
	    "pcsecretd with SQL API version 2 or later; this one has 1 (schema version 2): "
	    "upgrade it");
	/* Refused before anything was applied: no pcs_api_1. */
	assert_query(owner_url,
	    "SELECT (to_regnamespace('pcs_api_1') IS NULL)::text || "
	    "(SELECT count(*) FROM schema_api)",
	    "true1");
	store_sync_close(owner);

	/* A newer schema without one of ours (another branch): ours would meet a schema it was
	 * not written for. */
	fresh("pcs_test_roles_newer", &owner);
	assert_int_equal(migrate_apply(owner, &gap_plan, NULL, &err), 0);
	assert_int_equal(migrate_apply(owner, &old_plan, NULL, &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message,
	    "database schema version 3 is newer than this pcsecretd "
	    "but lacks its migration 002_b");
	assert_query(owner_url, "SELECT (to_regclass('b') IS NULL)::text", "true");
	store_sync_close(owner);
}

#define MISMATCH \
	"SQL API schema pcs_api_1 in the database holds another text than this " \
	"pcsecretd's (checksum "

static void test_service_side_checks(void **state)
{
	const struct migration old_set[] = { m1, m2 };
	const struct migration new_set[] = { m1, m2, m3 };
	const struct migrate_plan old_plan = { old_set, 2, 1, API1 };
	const struct migrate_plan old_fixed = { old_set, 2, 1, API1_FIX };
	const struct migrate_plan new_plan = { new_set, 3, 1, API1 };
	const struct migration too_new[] = { m1, m2, m4 };
	const struct migrate_plan bad_plan = { too_new, 3, 1, API1 };
	struct store_sync *owner, *svc, *plain;
	struct migrate_status st;
	pcs_error err = { 0, "" };

	(void)state;
	fresh("pcs_test_roles_check", &owner);
	svc = service(1);
	/* Migrations went elsewhere (migrate_database_url names another database). */
	assert_int_equal(migrate_check(svc, &old_plan, &st, &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message,
	    "the database of database_url has no pcsecret schema: "
	    "were the migrations applied to another one? (migrate_database_url must name the "
	    "same database)");

	assert_int_equal(migrate_apply(owner, &old_plan, SVC, &err), 0);
	assert_int_equal(migrate_check(svc, &old_plan, &st, &err), 0);
	/* A binary that needs a later schema than the database has. */
	assert_int_equal(migrate_check(svc, &new_plan, &st, &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message,
	    "database schema version 2 is older than this pcsecretd "
	    "needs (3): migrations are applied through migrate_database_url, which must name the "
	    "same database as database_url");
	assert_int_equal(st.schema_version, 2);

	/* Another text of the same API version replaces it (functions gone from it go too)... */
	assert_int_equal(migrate_apply(owner, &old_fixed, SVC, &err), 0);
	assert_query(owner_url,
	    "SELECT string_agg(proname, ',') FROM pg_proc "
	    "WHERE pronamespace = 'pcs_api_1'::regnamespace",
	    "g");
	/* ...the service role can still use the schema... */
	assert_int_equal(exec(svc, "SELECT g()", &err), 0);
	/* ...and a daemon of the first text is told, not left with functions it lacks. */
	assert_int_equal(migrate_check(svc, &old_plan, &st, &err), -PCS_FAILED_PRECONDITION);
	assert_true(strncmp(err.message, MISMATCH, strlen(MISMATCH)) == 0);
	assert_non_null(strstr(err.message,
	    "another build of API version 1 started meanwhile; a "
	    "changed sql/api.sql needs a new api_version"));

	/* Without the daemon's search_path the check says so. */
	assert_int_equal(store_sync_connect(svc_url, &plain, &err), 0);
	assert_int_equal(migrate_check(plain, &old_fixed, &st, &err), -PCS_FAILED_PRECONDITION);
	assert_string_equal(err.message,
	    "the connection's search_path does not start with "
	    "pcs_api_1");
	store_sync_close(plain);

	/* A build whose migration claims an API it does not have is refused outright. */
	assert_int_equal(migrate_apply(owner, &bad_plan, SVC, &err), -PCS_INVALID_ARGUMENT);
	assert_string_equal(err.message,
	    "migration 004_d needs SQL API version 2; this build "
	    "has 1");
	store_sync_close(svc);
	store_sync_close(owner);
}

/* The pool's connection string: the caller's settings stay, the search_path is added. */
static void test_conninfo_add_options(void **state)
{
	const char *base = getenv("PCS_TEST_CONNINFO");
	char in[1200], uri[1200], dir[512], port[16];
	const char *p;
	struct store_sync *c = NULL;
	struct store_result *r = NULL;
	struct store_query q = {
		"SELECT current_setting('search_path') || '|' || "
		"current_setting('statement_timeout') || '|' || current_setting('application_name')",
		0, NULL, NULL, NULL
	};
	pcs_error err = { 0, "" };
	char *out = NULL;

	(void)state;
	assert_non_null(base);
	snprintf(in, sizeof(in),
	    "%s options='-c statement_timeout=12345 -c search_path=x' "
	    "application_name='it\\'s \\\\ ok'",
	    base);
	assert_int_equal(
	    store_conninfo_add_options(in, "-c search_path=pcs_api_7,public", &out, &err), 0);
	assert_int_equal(store_sync_connect(out, &c, &err), 0);
	assert_int_equal(store_sync_exec(c, &q, &r, &err), 0);
	assert_string_equal(store_result_value(r, 0, 0), "pcs_api_7,public|12345ms|it's \\ ok");
	store_result_free(r);
	store_sync_close(c);
	store_conninfo_free(out);

	/* A URI too. */
	assert_non_null(p = strstr(base, "host="));
	assert_int_equal(sscanf(p, "host=%511s", dir), 1);
	assert_non_null(p = strstr(base, "port="));
	assert_int_equal(sscanf(p, "port=%15s", port), 1);
	snprintf(uri, sizeof(uri), "postgresql://postgres@/postgres?host=%s&port=%s", dir, port);
	assert_int_equal(
	    store_conninfo_add_options(uri, "-c search_path=pcs_api_7,public", &out, &err), 0);
	assert_int_equal(store_sync_connect(out, &c, &err), 0);
	assert_int_equal(store_sync_exec(c, &q, &r, &err), 0);
	assert_string_equal(store_result_value(r, 0, 0), "pcs_api_7,public|0|");
	store_result_free(r);
	store_sync_close(c);
	store_conninfo_free(out);

	assert_int_equal(store_conninfo_add_options("host='unterminated", "-c x=y", &out, &err),
	    -PCS_INVALID_ARGUMENT);
	assert_null(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_role_cannot_change_audit_rows),
		cmocka_unit_test(test_service_role_uses_the_api_schema),
		cmocka_unit_test(test_upgrade_from_public_functions),
		cmocka_unit_test(test_owner_search_path_does_not_matter),
		cmocka_unit_test(test_old_and_new_daemons_share_a_database),
		cmocka_unit_test(test_newer_schema_the_api_cannot_use_refused),
		cmocka_unit_test(test_service_side_checks),
		cmocka_unit_test(test_conninfo_add_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
