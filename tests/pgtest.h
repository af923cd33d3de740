/*
 * pgtest: helpers for tests that need the private PostgreSQL cluster started by the ctest
 * fixture (tests/pg_harness.sh). Blocking libpq; for tests only. Failures are printed to
 * stderr, since a test's log is where they are read.
 */
#ifndef PCS_TESTS_PGTEST_H
#define PCS_TESTS_PGTEST_H

#include <stddef.h>

/*
 * Drops (WITH (FORCE)) and creates database dbname on the cluster named by
 * PCS_TEST_CONNINFO, and writes a connection string for it to conninfo_out.
 * dbname: lowercase letters, digits and _. Returns 0 or -1.
 */
int pgtest_create_db(const char *dbname, char *conninfo_out, size_t size);
/*
 * Makes sure login role exists on the cluster (tests running at once may all ask) and writes
 * conninfo with user=role to conninfo_out. role: lowercase letters, digits and _. The role
 * gets no privileges here: a pcsecretd granted its own when started with it as database_url.
 * Returns 0 or -1.
 */
int pgtest_login_role(const char *role, const char *conninfo, char *conninfo_out, size_t size);
/* Runs sql (one or more statements). Returns 0 or -1. */
int pgtest_exec(const char *conninfo, const char *sql);
/* The first cell of sql's result as a malloc'd string (free it), or NULL on error/no row. */
char *pgtest_query_text(const char *conninfo, const char *sql);

#endif
