/*
 * db: the machinery every db_*.c shares (db_internal.h): the start-up check of every
 * statement, columns by name, parameters, binary arrays, and the call-bound submission.
 */
#include "db_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tells a pending statement of ours from anything else in the call's state slot. */

static struct db_stmt *const *const statement_lists[] = {
	db_company_statements,
	db_secret_statements,
	db_agent_statements,
	db_principal_statements,
	db_audit_statements,
	db_resolve_statements,
	db_watch_statements,
	db_startup_statements,
};

/* ---- columns by name ---- */

int db_stmt_bind(struct db_stmt *st, const struct store_result *r, pcs_error *err)
{
	int nf = store_result_nfields(r);

	if (st->ncols > DB_MAX_COLS)
		return pcs_fail(err, PCS_INTERNAL,
		    "database statement %s reads %d columns (at most %d)", st->name, st->ncols,
		    DB_MAX_COLS);
	for (int i = 0; i < st->ncols; i++) {
		int found = -1;
		for (int f = 0; f < nf; f++) {
			if (strcmp(store_result_fname(r, f), st->cols[i]) != 0)
				continue;
			/* Two columns of one name: which one the decoder meant is a guess. */
			if (found >= 0)
				return pcs_fail(err, PCS_INTERNAL,
				    "database statement %s returns column "
				    "\"%s\" twice",
				    st->name, st->cols[i]);
			found = f;
		}
		if (found < 0)
			return pcs_fail(err, PCS_INTERNAL,
			    "database statement %s returns no column "
			    "\"%s\": the database's SQL functions do not match this build",
			    st->name, st->cols[i]);
		st->at[i] = found;
	}
	st->nfields = nf;
	st->ready = 1;
	return 0;
}

int db_stmt_ready(struct db_stmt *st, const struct store_result *r, pcs_error *err)
{
	int r2;

	if (!st->ready && (r2 = db_stmt_bind(st, r, err)) != 0)
		return r2;
	if (store_result_nfields(r) != st->nfields)
		return pcs_fail(err, PCS_INTERNAL,
		    "database statement %s returned %d columns, not %d", st->name,
		    store_result_nfields(r), st->nfields);
	return 0;
}

/*
 * st does not prepare. When its source (say a function whose columns changed) lacks a column
 * the decoder reads, fails naming it; else returns 0 (the caller reports the store's error).
 */
static int diagnose(struct store_sync *db, const struct db_stmt *st, pcs_error *err)
{
	struct store_result *desc = NULL;
	char sql[512];
	pcs_error ignored;
	int r = 0, n;

	n = snprintf(sql, sizeof(sql), "SELECT * FROM %s", st->source);
	if (n < 0 || (size_t)n >= sizeof(sql) || store_sync_describe(db, sql, &desc, &ignored) != 0)
		goto out;
	for (int i = 0; i < st->ncols && r == 0; i++) {
		int found = 0;
		for (int f = 0; f < store_result_nfields(desc) && !found; f++)
			found = strcmp(store_result_fname(desc, f), st->cols[i]) == 0;
		if (!found)
			r = pcs_fail(err, PCS_INTERNAL,
			    "database statement %s: %s returns no column "
			    "\"%s\": the database's SQL functions do not match this build",
			    st->name, st->source, st->cols[i]);
	}
out:
	store_result_free(desc);
	return r;
}

static int check_one(struct store_sync *db, struct db_stmt *st, pcs_error *err)
{
	struct store_result *desc = NULL;
	char why[sizeof(err->message)];
	int r, code;

	if ((r = store_sync_describe(db, st->sql, &desc, err)) != 0) {
		/* The store's message: a SQLSTATE or our functions' own words, never PostgreSQL's. */
		code = -r;
		snprintf(why, sizeof(why), "%s", err->message);
		if (st->source == NULL || (r = diagnose(db, st, err)) == 0)
			r = pcs_fail(err, code, "database statement %s: %s", st->name, why);
		goto out;
	}
	if ((r = db_stmt_bind(st, desc, err)) != 0)
		goto out;
	for (int i = 0; i < STORE_MAX_PARAMS; i++) {
		unsigned have;
		if (st->param_oid[i] == 0)
			continue;
		have = i < store_result_nparams(desc) ? store_result_paramtype(desc, i) : 0;
		/* Binary parameters are read as the exact type the statement expects. */
		if (have != st->param_oid[i]) {
			r = pcs_fail(err, PCS_INTERNAL,
			    "database statement %s: parameter $%d has type "
			    "oid %u, this build sends oid %u",
			    st->name, i + 1, have, st->param_oid[i]);
			goto out;
		}
	}
out:
	store_result_free(desc);
	return r;
}

int db_check_statements(struct store_sync *db, pcs_error *err)
{
	int r;

	for (size_t l = 0; l < sizeof(statement_lists) / sizeof(statement_lists[0]); l++)
		for (struct db_stmt *const *st = statement_lists[l]; *st != NULL; st++)
			if ((r = check_one(db, *st, err)) != 0)
				return r;
	return 0;
}

/* ---- parameters ---- */

static int param_next(struct db_params *p)
{
	/* Statements are written with their parameters: more is a bug, caught by any test. */
	if (p->n >= STORE_MAX_PARAMS)
		abort();
	p->lengths[p->n] = 0;
	p->formats[p->n] = 0;
	return p->n++;
}

void db_param_text(struct db_params *p, const char *s) { p->values[param_next(p)] = s; }

void db_param_u32(struct db_params *p, uint32_t v)
{
	int i = param_next(p);

	snprintf(p->num[i], sizeof(p->num[i]), "%u", v);
	p->values[i] = p->num[i];
}

void db_param_u64(struct db_params *p, uint64_t v)
{
	int i = param_next(p);

	snprintf(p->num[i], sizeof(p->num[i]), "%llu", (unsigned long long)v);
	p->values[i] = p->num[i];
}

void db_param_bool(struct db_params *p, int v) { p->values[param_next(p)] = v ? "true" : "false"; }

void db_param_bytes(struct db_params *p, const void *data, size_t len)
{
	int i = param_next(p);

	p->values[i] = data;
	p->lengths[i] = (int)len;
	p->formats[i] = 1;
}

void db_store_query(const struct db_stmt *st, const struct db_params *p, struct store_query *q)
{
	q->sql = st->sql;
	q->nparams = p->n;
	q->values = p->values;
	q->lengths = p->lengths;
	q->formats = p->formats;
}

/* ---- binary arrays ---- */

/* Each writes at *o when it fits (buf NULL: only counts) and advances *o. */
static void put32(uint8_t *buf, size_t size, size_t *o, uint32_t v)
{
	if (buf != NULL && *o + 4 <= size) {
		buf[*o] = (uint8_t)(v >> 24);
		buf[*o + 1] = (uint8_t)(v >> 16);
		buf[*o + 2] = (uint8_t)(v >> 8);
		buf[*o + 3] = (uint8_t)v;
	}
	*o += 4;
}

static void put_bytes(uint8_t *buf, size_t size, size_t *o, const void *data, size_t len)
{
	if (buf != NULL && *o + len <= size)
		memcpy(buf + *o, data, len);
	*o += len;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The 16 bytes of a canonical uuid; -1 when s is not one. */
static int uuid_bytes(const char *s, uint8_t out[16])
{
	size_t k = 0;

	if (strlen(s) != 36)
		return -1;
	for (size_t i = 0; i < 36; i++) {
		int hi, lo;
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			continue;
		}
		if ((hi = hexval((unsigned char)s[i])) < 0 ||
		    (lo = hexval((unsigned char)s[i + 1])) < 0)
			return -1;
		out[k++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	return 0;
}

size_t db_array_encode(enum db_elem type, const void *items, size_t n, uint8_t *buf, size_t size)
{
	static const uint32_t elem_oid[] = { [DB_ELEM_TEXT] = DB_OID_TEXT,
		[DB_ELEM_INT4] = DB_OID_INT4,
		[DB_ELEM_INT8] = DB_OID_INT8,
		[DB_ELEM_UUID] = DB_OID_UUID };
	size_t o = 0;
	int nulls = 0;

	for (size_t i = 0; type == DB_ELEM_TEXT && i < n; i++)
		nulls |= ((const char *const *)items)[i] == NULL;
	put32(buf, size, &o, n > 0 ? 1 : 0); /* dimensions: an empty array has none */
	put32(buf, size, &o, (uint32_t)nulls);
	put32(buf, size, &o, elem_oid[type]);
	if (n > 0) {
		put32(buf, size, &o, (uint32_t)n);
		put32(buf, size, &o, 1); /* lower bound */
	}
	for (size_t i = 0; i < n; i++) {
		switch (type) {
		case DB_ELEM_TEXT: {
			const char *s = ((const char *const *)items)[i];
			size_t len = s != NULL ? strlen(s) : 0;
			put32(
			    buf, size, &o, s != NULL ? (uint32_t)len : 0xffffffffu); /* -1: NULL */
			if (s != NULL)
				put_bytes(buf, size, &o, s, len);
			break;
		}
		case DB_ELEM_INT4:
			put32(buf, size, &o, 4);
			put32(buf, size, &o, (uint32_t)((const int32_t *)items)[i]);
			break;
		case DB_ELEM_INT8: {
			uint64_t v = (uint64_t)((const int64_t *)items)[i];
			put32(buf, size, &o, 8);
			put32(buf, size, &o, (uint32_t)(v >> 32));
			put32(buf, size, &o, (uint32_t)v);
			break;
		}
		case DB_ELEM_UUID: {
			uint8_t u[16];
			if (uuid_bytes(((const char *const *)items)[i], u) != 0)
				return 0;
			put32(buf, size, &o, 16);
			put_bytes(buf, size, &o, u, sizeof(u));
			break;
		}
		}
	}
	return o;
}

int db_array_new(struct db_array *a, enum db_elem type, const void *items, size_t n)
{
	size_t len = db_array_encode(type, items, n, NULL, 0);

	a->data = NULL;
	a->len = 0;
	if (len == 0)
		return -PCS_INVALID_ARGUMENT;
	if ((a->data = malloc(len)) == NULL)
		return -PCS_RESOURCE_EXHAUSTED;
	a->len = db_array_encode(type, items, n, a->data, len);
	return 0;
}

void db_array_free(struct db_array *a)
{
	free(a->data);
	a->data = NULL;
	a->len = 0;
}

int db_param_names(
    struct call *c, struct db_params *p, struct db_array *a, const char *const *names, size_t n)
{
	if (names == NULL) {
		db_param_text(p, NULL);
		return 0;
	}
	if (db_array_new(a, DB_ELEM_TEXT, names, n) != 0) {
		db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return -1;
	}
	db_param_bytes(p, a->data, a->len);
	return 0;
}

/* ---- decoding ---- */

const char *db_col_str(const struct store_result *r, int row, const struct db_stmt *st, int col)
{
	return store_result_value(r, row, st->at[col]);
}

const char *db_col_opt(const struct store_result *r, int row, const struct db_stmt *st, int col)
{
	return store_result_isnull(r, row, st->at[col]) ? NULL :
	                                                  store_result_value(r, row, st->at[col]);
}

int db_col_null(const struct store_result *r, int row, const struct db_stmt *st, int col)
{
	return store_result_isnull(r, row, st->at[col]);
}

uint32_t db_col_u32(const struct store_result *r, int row, const struct db_stmt *st, int col)
{
	return (uint32_t)strtoul(db_col_str(r, row, st, col), NULL, 10);
}

uint64_t db_col_u64(const struct store_result *r, int row, const struct db_stmt *st, int col)
{
	return (uint64_t)strtoull(db_col_str(r, row, st, col), NULL, 10);
}

int db_col_bool(const struct store_result *r, int row, const struct db_stmt *st, int col)
{
	return strcmp(db_col_str(r, row, st, col), "t") == 0;
}

/* A bytea cell into *out; a NULL cell leaves it empty. */
static int col_bytea(
    const struct store_result *r, int row, int at, uint8_t **out, const uint8_t **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	if (store_result_isnull(r, row, at))
		return 0;
	if (store_result_bytea(r, row, at, out, len) != 0)
		return -PCS_RESOURCE_EXHAUSTED;
	*data = *out;
	return 0;
}

int db_col_sealed(const struct store_result *r, int row, const struct db_stmt *st, int first,
    struct db_sealed *out, struct db_sealed_buf *buf)
{
	memset(out, 0, sizeof(*out));
	memset(buf, 0, sizeof(*buf));
	if (col_bytea(r, row, st->at[first + DB_SEALED_CT], &buf->ciphertext, &out->ciphertext,
	        &out->ciphertext_len) != 0 ||
	    col_bytea(r, row, st->at[first + DB_SEALED_NONCE], &buf->nonce, &out->nonce,
	        &out->nonce_len) != 0 ||
	    col_bytea(r, row, st->at[first + DB_SEALED_WRAPPED], &buf->wrapped_key,
	        &out->wrapped_key, &out->wrapped_key_len) != 0) {
		db_sealed_free(buf);
		memset(out, 0, sizeof(*out));
		return -PCS_RESOURCE_EXHAUSTED;
	}
	out->key_id = db_col_str(r, row, st, first + DB_SEALED_KEY_ID);
	return 0;
}

void db_sealed_free(struct db_sealed_buf *buf)
{
	free(buf->ciphertext);
	free(buf->nonce);
	free(buf->wrapped_key);
	memset(buf, 0, sizeof(*buf));
}

/* ---- a call's statement ---- */

static const struct db_call_ops *call_ops;

void db_set_call_ops(const struct db_call_ops *ops) { call_ops = ops; }

void db_fail(struct call *c, int code, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	call_ops->fail(c, code, msg);
}

const char *db_actor(const struct call *c) { return call_ops->actor(c); }

/* dispatch frees p (call_ops->run's arg) once this returned, or when the call ends without it. */
static void on_result(struct call *c, const struct store_result *res, void *arg)
{
	struct db_pending *p = arg;
	pcs_error err;
	int r;

	/* Only a retryable statement's ABORTED gets here failed: it has no rows to check. */
	if (store_result_status(res) != 0) {
		p->deliver(c, p, res);
		return;
	}
	if ((r = db_stmt_ready(p->st, res, &err)) != 0) {
		db_fail(c, r, "%s", err.message);
		return;
	}
	p->deliver(c, p, res);
}

static void run(struct call *c, enum db_run_kind kind, struct db_stmt *st,
    const struct db_params *p, db_deliver_fn deliver, union db_cb cb, const struct db_target *t,
    uint32_t attempt, int retryable)
{
	struct db_pending *pend = calloc(1, sizeof(*pend));
	struct store_query q = { 0 };

	if (pend == NULL) {
		db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	pend->st = st;
	pend->deliver = deliver;
	pend->cb = cb;
	pend->attempt = attempt;
	if (t != NULL) {
		snprintf(pend->company, sizeof(pend->company), "%s", t->company);
		snprintf(pend->agent, sizeof(pend->agent), "%s", t->agent);
	}
	db_store_query(st, p, &q);
	if (retryable && kind == DB_RUN_CALL)
		call_ops->run_retryable(c, &q, on_result, pend, free);
	else
		call_ops->run(c, kind == DB_RUN_STEP, &q, on_result, pend, free);
}

void db_run(struct call *c, enum db_run_kind kind, struct db_stmt *st, const struct db_params *p,
    db_deliver_fn deliver, union db_cb cb, const struct db_target *t)
{
	run(c, kind, st, p, deliver, cb, t, 0, 0);
}

void db_run_attempt(struct call *c, enum db_run_kind kind, struct db_stmt *st,
    const struct db_params *p, db_deliver_fn deliver, union db_cb cb, uint32_t attempt,
    int retryable)
{
	run(c, kind, st, p, deliver, cb, NULL, attempt, retryable);
}

void *db_rows_alloc(struct call *c, size_t n, size_t size)
{
	void *rows = calloc(n + 1, size);

	if (rows == NULL)
		db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
	return rows;
}

/* ---- start-up statements ---- */

int db_sync_run(struct store_sync *db, struct db_stmt *st, const struct db_params *p,
    struct store_result **out, pcs_error *err)
{
	struct store_query q = { 0 };
	int r;

	db_store_query(st, p, &q);
	if ((r = store_sync_exec(db, &q, out, err)) != 0)
		return r;
	if ((r = db_stmt_ready(st, *out, err)) != 0) {
		store_result_free(*out);
		*out = NULL;
	}
	return r;
}
