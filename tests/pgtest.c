/* pgtest: blocking libpq helpers for tests (see pgtest.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgtest.h"

static void
quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *
connect_to(const char *conninfo)
{
	PGconn *pg = PQconnectdb(conninfo);

	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "pgtest: cannot connect: %s", pg != NULL ? PQerrorMessage(pg) : "oom\n");
		PQfinish(pg);
		return NULL;
	}
	/* "database does not exist, skipping" and the like are noise in a test's log. */
	PQsetNoticeProcessor(pg, quiet, NULL);
	return pg;
}

static int
exec_on(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);
	int ret = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
		fprintf(stderr, "pgtest: \"%s\" failed: %s", sql, PQerrorMessage(pg));
		ret = -1;
	}
	PQclear(r);
	return ret;
}

int
pgtest_create_db(const char *dbname, char *conninfo_out, size_t size)
{
	const char *base = getenv("PCS_TEST_CONNINFO");
	PGconn *pg = NULL;
	char sql[256];
	size_t i;
	int n, ret = -1;

	if (base == NULL || *base == '\0') {
		fprintf(stderr, "pgtest: PCS_TEST_CONNINFO is not set (run the test through ctest)\n");
		goto out;
	}
	for (i = 0; dbname[i] != '\0'; i++) {
		if (strchr("abcdefghijklmnopqrstuvwxyz0123456789_", dbname[i]) == NULL) {
			fprintf(stderr, "pgtest: bad database name %s\n", dbname);
			goto out;
		}
	}
	if (i == 0 || i > 60 || (pg = connect_to(base)) == NULL)
		goto out;
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
	if (exec_on(pg, sql) != 0)
		goto out;
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
	if (exec_on(pg, sql) != 0)
		goto out;
	/* In a conninfo string a repeated keyword takes its last value. */
	n = snprintf(conninfo_out, size, "%s dbname=%s", base, dbname);
	if (n < 0 || (size_t)n >= size) {
		fprintf(stderr, "pgtest: conninfo buffer too small\n");
		goto out;
	}
	ret = 0;
out:
	PQfinish(pg);
	return ret;
}

int
pgtest_login_role(const char *role, const char *conninfo, char *conninfo_out, size_t size)
{
	const char *base = getenv("PCS_TEST_CONNINFO");
	char sql[512];
	size_t i;
	int n;

	for (i = 0; role[i] != '\0'; i++) {
		if (strchr("abcdefghijklmnopqrstuvwxyz0123456789_", role[i]) == NULL) {
			fprintf(stderr, "pgtest: bad role name %s\n", role);
			return -1;
		}
	}
	if (i == 0 || i > 60 || base == NULL)
		return -1;
	/* Roles belong to the cluster, and parallel tests race to create the same one. */
	snprintf(sql, sizeof(sql), "DO $$ BEGIN CREATE ROLE %s LOGIN; "
	    "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$", role);
	if (pgtest_exec(base, sql) != 0)
		return -1;
	n = snprintf(conninfo_out, size, "%s user=%s", conninfo, role);
	if (n < 0 || (size_t)n >= size) {
		fprintf(stderr, "pgtest: conninfo buffer too small\n");
		return -1;
	}
	return 0;
}

int
pgtest_exec(const char *conninfo, const char *sql)
{
	PGconn *pg;
	int ret;

	if ((pg = connect_to(conninfo)) == NULL)
		return -1;
	ret = exec_on(pg, sql);
	PQfinish(pg);
	return ret;
}

char *
pgtest_query_text(const char *conninfo, const char *sql)
{
	PGconn *pg;
	PGresult *r = NULL;
	char *ret = NULL;

	if ((pg = connect_to(conninfo)) == NULL)
		goto out;
	r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "pgtest: \"%s\" failed: %s", sql, PQerrorMessage(pg));
		goto out;
	}
	if (PQntuples(r) < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0))
		goto out;
	ret = strdup(PQgetvalue(r, 0, 0));
out:
	PQclear(r);
	PQfinish(pg);
	return ret;
}
