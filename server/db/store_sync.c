/*
 * store_sync: the store's blocking side, for start-up only (migrations, the keyring check,
 * the db layer's statement check), before the loop serves anyone; and the conninfo helpers
 * (store.h). Its results are the pool's (store.c); its libpq helpers pgconn's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgconn.h"
#include "store.h"
#include "store_internal.h"

struct store_sync {
	PGconn *pg;
};

/* ---- connection strings ---- */

/* Appends value to p as a single-quoted conninfo value; returns the new end. */
static char *quote_value(char *p, const char *value)
{
	*p++ = '\'';
	for (; *value != '\0'; value++) {
		if (*value == '\'' || *value == '\\')
			*p++ = '\\';
		*p++ = *value;
	}
	*p++ = '\'';
	return p;
}

int store_conninfo_add_options(
    const char *conninfo, const char *options, char **out, pcs_error *err)
{
	PQconninfoOption *opts = NULL, *o;
	const char *have = NULL;
	char *merged = NULL, *buf = NULL, *p;
	size_t size, merged_size = 0, buf_size = 0;
	int ret;

	*out = NULL;
	if ((ret = pgconn_conninfo_check(conninfo, err)) != 0)
		goto out;
	ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	if ((opts = PQconninfoParse(conninfo, NULL)) == NULL)
		goto out;
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "options") == 0)
			have = o->val;
	/* Explicit options would hide PGOPTIONS from libpq: keep what it says. */
	if (have == NULL)
		have = getenv("PGOPTIONS");
	if (have == NULL)
		have = "";
	merged_size = strlen(have) + 1 + strlen(options) + 1;
	if ((merged = malloc(merged_size)) == NULL)
		goto out;
	/* The server reads -c settings in order: ours, last, win over the same ones before. */
	snprintf(merged, merged_size, "%s%s%s", have, have[0] != '\0' ? " " : "", options);
	size = sizeof("options=''") + 2 * strlen(merged);
	for (o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "options") != 0)
			size += strlen(o->keyword) + sizeof("='' ") + 2 * strlen(o->val);
	buf_size = size;
	if ((buf = malloc(buf_size)) == NULL)
		goto out;
	p = buf;
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || strcmp(o->keyword, "options") == 0)
			continue;
		memcpy(p, o->keyword, strlen(o->keyword));
		p += strlen(o->keyword);
		*p++ = '=';
		p = quote_value(p, o->val);
		*p++ = ' ';
	}
	memcpy(p, "options=", 8);
	p = quote_value(p + 8, merged);
	*p = '\0';
	*out = buf;
	buf = NULL;
	pcs_error_clear(err);
	ret = 0;
out:
	/* Both may hold the password. */
	if (merged != NULL) {
		explicit_bzero(merged, merged_size);
		free(merged);
	}
	if (buf != NULL) {
		explicit_bzero(buf, buf_size);
		free(buf);
	}
	PQconninfoFree(opts);
	return ret;
}

void store_conninfo_free(char *conninfo)
{
	if (conninfo == NULL)
		return;
	explicit_bzero(conninfo, strlen(conninfo));
	free(conninfo);
}

/* ---- blocking API for start-up ---- */

int store_sync_connect(const char *conninfo, struct store_sync **out, pcs_error *err)
{
	struct store_sync *c = NULL;
	char why[200];
	int ret;

	*out = NULL;
	if ((ret = pgconn_conninfo_check(conninfo, err)) != 0)
		goto out;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->pg = PQconnectdb(conninfo)) == NULL) {
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (PQstatus(c->pg) != CONNECTION_OK) {
		pgconn_oneline(why, sizeof(why), PQerrorMessage(c->pg));
		ret = pcs_fail(err, PCS_UNAVAILABLE, "could not connect to the database: %s", why);
		goto out;
	}
	pgconn_mute(c->pg);
	pcs_error_clear(err);
	*out = c;
	c = NULL;
	ret = 0;
out:
	store_sync_close(c);
	return ret;
}

/* Takes ownership of pg; on success hands it to *out (or frees it when out is NULL). */
static int sync_result(
    struct store_sync *c, PGresult *pg, struct store_result **out, pcs_error *err)
{
	struct store_result *r = NULL;
	int ret;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		PQclear(pg);
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	store_result_set(r, pg, PQstatus(c->pg) == CONNECTION_BAD);
	if ((ret = r->status) != 0) {
		pcs_fail(err, -ret, "%s", r->message);
		goto out;
	}
	pcs_error_clear(err);
	if (out != NULL) {
		*out = r;
		r = NULL;
	}
out:
	store_result_free(r);
	return ret;
}

int store_sync_exec(
    struct store_sync *c, const struct store_query *q, struct store_result **out, pcs_error *err)
{
	int ret;

	*out = NULL;
	if ((ret = store_query_check(q, err)) != 0)
		return ret;
	return sync_result(c,
	    PQexecParams(c->pg, q->sql, q->nparams, NULL, q->values, q->lengths, q->formats, 0),
	    out, err);
}

int store_sync_exec_script(struct store_sync *c, const char *sql, pcs_error *err)
{
	if (sql == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no SQL script");
	/* PQexec (not PQexecParams): only the simple protocol runs several statements. */
	return sync_result(c, PQexec(c->pg, sql), NULL, err);
}

void store_sync_close(struct store_sync *c)
{
	if (c == NULL)
		return;
	if (c->pg != NULL)
		PQfinish(c->pg);
	free(c);
}

/* ---- statement descriptions (start-up: the db layer checks its statements' columns) ---- */

int store_sync_describe(
    struct store_sync *c, const char *sql, struct store_result **out, pcs_error *err)
{
	int ret;

	*out = NULL;
	if (sql == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no SQL statement");
	/* The unnamed statement: prepared, never run; parameter types are inferred. */
	if ((ret = sync_result(c, PQprepare(c->pg, "", sql, 0, NULL), NULL, err)) != 0)
		return ret;
	return sync_result(c, PQdescribePrepared(c->pg, ""), out, err);
}
