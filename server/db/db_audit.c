/*
 * db_audit: the audit log's statements: the row a mutation writes with its work
 * (audit_wrap_sql, for dispatch), the group-commit insert of every other row (audit.c's
 * queue), and ListAudit.
 */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* audit_log's columns in enum audit_param's order (db.h); queued rows add their deadline. */
#define AUDIT_COLUMNS \
	"instance_id, call_id, peer_uid, peer_gid, peer_pid, principal, method, " \
	"company, secret, version, status, message, received_at"
#define QUEUE_COLUMNS AUDIT_COLUMNS ", deadline"
#define QUEUE_INSERT "INSERT INTO audit_log (" QUEUE_COLUMNS ") VALUES "

enum { I_STATUS };
static const char *const insert_cols[] = { [I_STATUS] = "status" };

/* The one-row form: what the start-up check describes; batches repeat its VALUES. */
static struct db_stmt audit_insert = {
	.name = "audit_log insert",
	.sql = QUEUE_INSERT "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
	                    "RETURNING status",
	DB_COLS(insert_cols),
};

enum {
	L_ID,
	L_AT,
	L_INSTANCE_ID,
	L_CALL_ID,
	L_PEER_UID,
	L_PEER_GID,
	L_PEER_PID,
	L_PRINCIPAL,
	L_METHOD,
	L_COMPANY,
	L_SECRET,
	L_VERSION,
	L_STATUS,
	L_MESSAGE
};
static const char *const list_cols[] = {
	[L_ID] = "id",
	[L_AT] = "at",
	[L_INSTANCE_ID] = "instance_id",
	[L_CALL_ID] = "call_id",
	[L_PEER_UID] = "peer_uid",
	[L_PEER_GID] = "peer_gid",
	[L_PEER_PID] = "peer_pid",
	[L_PRINCIPAL] = "principal",
	[L_METHOD] = "method",
	[L_COMPANY] = "company",
	[L_SECRET] = "secret",
	[L_VERSION] = "version",
	[L_STATUS] = "status",
	[L_MESSAGE] = "message",
};

/* companies (NULL: all), limit */
static struct db_stmt list_audit = {
	.name = "pcs_list_audit",
	DB_FROM("SELECT id, pcs_ts(at) AS at, instance_id, call_id, peer_uid, peer_gid, peer_pid, "
	        "principal, method, company, secret, version, status, message",
	    "pcs_list_audit($1, $2)"),
	DB_COLS(list_cols),
	.param_oid = { [0] = DB_OID_TEXT_ARRAY },
};

struct db_stmt *const db_audit_statements[] = { &audit_insert, &list_audit, NULL };

int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param)
{
	int n = snprintf(buf, size,
	    "WITH r AS (%s), a AS (INSERT INTO audit_log (" AUDIT_COLUMNS
	    ") VALUES ($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)) "
	    "SELECT * FROM r",
	    inner, first_param, first_param + 1, first_param + 2, first_param + 3, first_param + 4,
	    first_param + 5, first_param + 6, first_param + 7, first_param + 8, first_param + 9,
	    first_param + 10, first_param + 11, first_param + 12);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* ---- group commit ---- */

struct db_job {
	struct store_job *job;
	db_audit_inserted_fn fn;
	void *arg;
};

/* The insert of n rows: "... VALUES ($1..$14), ($15..$28), ... RETURNING status". */
static char *batch_sql(size_t n)
{
	size_t cap = sizeof(QUEUE_INSERT) + n * 112 + 32, o;
	char *sql = malloc(cap);

	if (sql == NULL)
		return NULL;
	o = (size_t)snprintf(sql, cap, "%s", QUEUE_INSERT);
	for (size_t r = 0; r < n; r++) {
		o += (size_t)snprintf(sql + o, cap - o, "%s(", r ? ", " : "");
		for (int i = 0; i < AUDIT_QUEUE_NPARAMS; i++)
			o += (size_t)snprintf(sql + o, cap - o, "%s$%zu", i ? ", " : "",
			    r * AUDIT_QUEUE_NPARAMS + (size_t)i + 1);
		o += (size_t)snprintf(sql + o, cap - o, ")");
	}
	snprintf(sql + o, cap - o, " RETURNING status");
	return sql;
}

static void on_inserted(const struct store_result *res, void *arg)
{
	struct db_job *j = arg;
	int status = store_result_status(res);
	const char **stored = NULL;
	size_t n = 0;
	pcs_error err;

	if (status == 0)
		status = db_stmt_ready(&audit_insert, res, &err);
	if (status == 0) {
		n = (size_t)store_result_ntuples(res);
		if ((stored = calloc(n + 1, sizeof(*stored))) == NULL) {
			status = -PCS_RESOURCE_EXHAUSTED;
			n = 0;
		}
		for (size_t i = 0; i < n; i++)
			stored[i] = db_col_str(res, (int)i, &audit_insert, I_STATUS);
	}
	j->fn(status, stored, n, j->arg);
	free(stored);
	free(j);
}

struct db_job *db_audit_insert(struct store *s, const char *const *values, size_t nrows,
    db_audit_inserted_fn fn, void *arg, pcs_error *err)
{
	struct db_job *j = calloc(1, sizeof(*j));
	struct store_query q = { 0 };
	char *sql = NULL;

	if (j == NULL || (sql = batch_sql(nrows)) == NULL) {
		pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto fail;
	}
	j->fn = fn;
	j->arg = arg;
	q.sql = sql;
	q.nparams = (int)(nrows * AUDIT_QUEUE_NPARAMS);
	q.values = values;
	if ((j->job = store_submit(s, &q, on_inserted, j, err)) == NULL)
		goto fail;
	free(sql);
	return j;
fail:
	free(sql);
	free(j);
	return NULL;
}

void db_job_cancel(struct db_job *job)
{
	if (job == NULL)
		return;
	store_cancel(job->job);
	free(job);
}

/* ---- ListAudit ---- */

static void deliver_list(struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res);
	struct db_audit_entry *rows = db_rows_alloc(c, n, sizeof(*rows));
	const struct db_stmt *st = p->st;

	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		struct db_audit_entry *e = &rows[i];
		int row = (int)i;
		e->id = db_col_u64(res, row, st, L_ID);
		e->at = db_col_str(res, row, st, L_AT);
		e->instance_id = db_col_str(res, row, st, L_INSTANCE_ID);
		e->call_id = db_col_u64(res, row, st, L_CALL_ID);
		e->peer_uid = db_col_u32(res, row, st, L_PEER_UID);
		e->peer_gid = db_col_u32(res, row, st, L_PEER_GID);
		e->peer_pid = db_col_u32(res, row, st, L_PEER_PID);
		e->principal = db_col_str(res, row, st, L_PRINCIPAL);
		e->method = db_col_str(res, row, st, L_METHOD);
		e->company = db_col_str(res, row, st, L_COMPANY);
		e->secret = db_col_str(res, row, st, L_SECRET);
		e->version = db_col_str(res, row, st, L_VERSION);
		e->status = db_col_str(res, row, st, L_STATUS);
		e->message = db_col_str(res, row, st, L_MESSAGE);
	}
	p->cb.audit(c, rows, n);
	free(rows);
}

void db_audit_list(
    struct call *c, const char *const *only, size_t n, uint32_t limit, db_audit_list_cb cb)
{
	struct db_params p = { 0 };
	struct db_array a = { NULL, 0 };

	if (db_param_names(c, &p, &a, only, n) != 0)
		return;
	db_param_u32(&p, limit);
	db_run(c, DB_RUN_CALL, &list_audit, &p, deliver_list, (union db_cb){ .audit = cb }, NULL);
	db_array_free(&a);
}
