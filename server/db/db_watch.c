/*
 * db_watch: the statement that tells a Watch what it covers. Which
 * secrets an agent binds is decided in the statement, as for a resolve; the rows say so
 * (granted) and the handler has authz decide.
 */
#include "db_internal.h"

#include <stdlib.h>

enum { W_IDX, W_SECRET_ID, W_COMPANY, W_NAME, W_LATEST, W_DELETED, W_GRANTED, W_AGENT_ID };
static const char *const watch_cols[] = {
	[W_IDX] = "idx",
	[W_SECRET_ID] = "secret_id",
	[W_COMPANY] = "company",
	[W_NAME] = "name",
	[W_LATEST] = "latest",
	[W_DELETED] = "deleted",
	[W_GRANTED] = "granted",
	[W_AGENT_ID] = "agent_id",
};

/* company, agent, then per reference: id, name */
static struct db_stmt targets = {
	.name = "pcs_watch_targets",
	DB_FROM("SELECT idx, secret_id, company, name, latest, deleted, granted, agent_id",
	    "pcs_watch_targets($1, $2, $3, $4)"),
	DB_COLS(watch_cols),
	.param_oid = { [2] = DB_OID_TEXT_ARRAY, [3] = DB_OID_TEXT_ARRAY },
};

struct db_stmt *const db_watch_statements[] = { &targets, NULL };

static void deliver_targets(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	const struct db_stmt *st = p->st;
	const struct db_target t = { p->company, p->agent };
	size_t n = (size_t)store_result_ntuples(res);
	struct db_watch_target *rows = db_rows_alloc(c, n, sizeof(*rows));

	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		struct db_watch_target *x = &rows[i];
		int row = (int)i;
		x->idx = db_col_u32(res, row, st, W_IDX);
		x->secret_id = db_col_str(res, row, st, W_SECRET_ID);
		x->company = db_col_str(res, row, st, W_COMPANY);
		x->name = db_col_str(res, row, st, W_NAME);
		x->latest = db_col_u32(res, row, st, W_LATEST);
		x->deleted = db_col_bool(res, row, st, W_DELETED);
		x->granted = db_col_bool(res, row, st, W_GRANTED);
		x->agent_id = db_col_str(res, row, st, W_AGENT_ID);
	}
	p->cb.watch(c, &t, rows, n);
	free(rows);
}

void db_watch_targets(struct call *c, const char *company, const char *agent,
    const char *const *ids, const char *const *names, size_t n, db_watch_cb cb)
{
	const struct db_target t = { company != NULL ? company : "", agent };
	struct db_array a[2] = { { NULL, 0 }, { NULL, 0 } };
	struct db_params p = { 0 };

	if (db_array_new(&a[0], DB_ELEM_TEXT, ids, n) != 0 ||
	    db_array_new(&a[1], DB_ELEM_TEXT, names, n) != 0) {
		db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	db_param_text(&p, company);
	db_param_text(&p, agent);
	db_param_bytes(&p, a[0].data, a[0].len);
	db_param_bytes(&p, a[1].data, a[1].len);
	db_run(c, DB_RUN_CALL, &targets, &p, deliver_targets, (union db_cb){ .watch = cb }, &t);
out:
	db_array_free(&a[0]);
	db_array_free(&a[1]);
}
