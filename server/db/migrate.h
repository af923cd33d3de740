/*
 * migrate: brings the database to what this daemon needs, over the owner's connection, under
 * a PostgreSQL advisory lock so several daemons starting at once take turns:
 *  - the numbered SQL files of migrations/ (tables, indexes, triggers, the grants table),
 *    applied in order, each exactly once, recorded in schema_migrations with the SHA-256 of
 *    its text and its min_api;
 *  - the SQL API of sql/api.sql in the schema pcs_api_<api_version>, re-created whenever the
 *    database records another text for it (schema_api);
 *  - the service role's privileges (the rows of service_grants).
 * Then, over the service role's own connection, migrate_check confirms that what it will use
 * is there. docs/architecture.md ("Upgrades") gives the rules these checks enforce.
 */
#ifndef PCS_SERVER_MIGRATE_H
#define PCS_SERVER_MIGRATE_H

#include <stddef.h>
#include "status.h"
#include "store.h"

/* The session advisory lock every pcsecretd takes while migrating ("pcsmigra" in ASCII). */
#define MIGRATE_LOCK_KEY "8098443468699300449"

struct migration {
	int version;      /* NNN of migrations/NNN_name.sql */
	const char *name; /* "NNN_name" */
	const char *sql;  /* the file's text, byte-exact */
	/*
	 * The oldest SQL API version that still works on the schema once this migration is
	 * applied ("-- min_api: N" in the file). 0: not declared, so only a daemon that knows
	 * this migration may use a database that has it.
	 */
	int min_api;
};

/* Generated from the files migrations/NNN_name.sql, sorted by version, and sql/api.sql. */
extern const struct migration pcs_migrations[];
extern const size_t pcs_migrations_count;
extern const char *const pcs_api_sql;
extern const int pcs_api_version;

/* What one daemon build brings to a database. */
struct migrate_plan {
	const struct migration *set; /* versions strictly increasing */
	size_t n;
	int api_version;     /* 0: no SQL API (migrations only) */
	const char *api_sql; /* functions only; created in pcs_api_<api_version> */
};

/* What migrate_check found. */
struct migrate_status {
	int schema_version; /* the highest migration recorded */
	/* 1 when the checked role may change or remove audit rows (it owns audit_log). */
	int audit_mutable;
};

/* This build's migrations and SQL API. */
void migrate_plan_builtin(struct migrate_plan *p);
/* "pcs_api_<N>,public": the search_path of a connection that uses API version N. */
void migrate_search_path(int api_version, char *buf, size_t size);

/*
 * Applies p over owner's connection, all under the advisory lock: the migrations not yet
 * recorded (each in its own transaction with its schema_migrations row), then the SQL API,
 * then, when service_role is neither NULL, "" nor the connection's own role, its privileges:
 * every row of service_grants, USAGE on the API schema, and the revokes service_grants
 * names. Refuses (FAILED_PRECONDITION), before changing anything, when a recorded migration's
 * text changed, the database records a migration p does not know below p's newest, or
 * newer ones that p's API version cannot work with (their min_api). A migration's SQL runs
 * inside BEGIN/COMMIT, so it must not manage transactions itself.
 */
int migrate_apply(struct store_sync *owner, const struct migrate_plan *p, const char *service_role,
    pcs_error *err) PCS_WUR;
/* Applies this build's migrations and SQL API; grants nothing. */
int migrate_run(struct store_sync *c, pcs_error *err) PCS_WUR;
/* Applies set (n migrations, versions strictly increasing) alone: no SQL API, no grants. */
int migrate_run_set(
    struct store_sync *c, const struct migration *set, size_t n, pcs_error *err) PCS_WUR;
/*
 * Over the service role's connection (made with the search_path of migrate_search_path):
 * the database records every migration of p, p's SQL API is there with p's text, the role may
 * use it and the connection's search_path starts with it. Refuses with FAILED_PRECONDITION
 * saying which is not so; fills *st (may be NULL) either way as far as it got.
 */
int migrate_check(struct store_sync *service, const struct migrate_plan *p,
    struct migrate_status *st, pcs_error *err) PCS_WUR;

#endif
