/*
 * db_resolve: the two statements that read sealed values (Resolve, GetAgentEnv). Which
 * references an agent may read is decided by its env config in the statement itself; the
 * rows say so (granted) and carry the ciphertext only then.
 */
#include "db_internal.h"

#include <stdlib.h>

enum {
	X_IDX,
	X_GRANTED,
	X_COMPANY_ID,
	X_SECRET_ID,
	X_VERSION,
	X_STATE,
	X_CIPHERTEXT,
	X_NONCE,
	X_WRAPPED_KEY,
	X_KEY_ID, /* enum db_sealed_col's order */
	X_SECRET_GEN,
	X_CURRENT_VERSION,
	X_COMPANY,
	X_NAME,
	X_AGENT_ID,
	X_AGENT_GEN,
	X_DELETED_NOTE
};
static const char *const resolve_cols[] = {
	[X_IDX] = "idx",
	[X_GRANTED] = "granted",
	[X_COMPANY_ID] = "company_id",
	[X_SECRET_ID] = "secret_id",
	[X_VERSION] = "version",
	[X_STATE] = "state",
	[X_CIPHERTEXT] = "ciphertext",
	[X_NONCE] = "nonce",
	[X_WRAPPED_KEY] = "wrapped_key",
	[X_KEY_ID] = "key_id",
	[X_SECRET_GEN] = "secret_gen",
	[X_CURRENT_VERSION] = "current_version",
	[X_COMPANY] = "company",
	[X_NAME] = "name",
	[X_AGENT_ID] = "agent_id",
	[X_AGENT_GEN] = "agent_gen",
	[X_DELETED_NOTE] = "deleted_note",
};

enum {
	E_ENV_NAME,
	E_REF_COMPANY,
	E_REF_NAME,
	E_SELECTOR,
	E_COMPANY_ID,
	E_SECRET_ID,
	E_VERSION,
	E_CIPHERTEXT,
	E_NONCE,
	E_WRAPPED_KEY,
	E_KEY_ID /* enum db_sealed_col's order */
};
static const char *const env_cols[] = {
	[E_ENV_NAME] = "env_name",
	[E_REF_COMPANY] = "ref_company",
	[E_REF_NAME] = "ref_name",
	[E_SELECTOR] = "selector",
	[E_COMPANY_ID] = "company_id",
	[E_SECRET_ID] = "secret_id",
	[E_VERSION] = "version",
	[E_CIPHERTEXT] = "ciphertext",
	[E_NONCE] = "nonce",
	[E_WRAPPED_KEY] = "wrapped_key",
	[E_KEY_ID] = "key_id",
};

/* company, agent, then per reference (arrays in the order asked): id, company, name, version */
static struct db_stmt resolve = {
	.name = "pcs_resolve",
	DB_FROM("SELECT idx, granted, company_id, secret_id, version, state, ciphertext, nonce, "
	        "wrapped_key, key_id, secret_gen, current_version, company, name, agent_id, "
	        "agent_gen, deleted_note",
	    "pcs_resolve($1, $2, $3, $4, $5, $6)"),
	DB_COLS(resolve_cols),
	.param_oid = { [2] = DB_OID_TEXT_ARRAY,
	    [3] = DB_OID_TEXT_ARRAY,
	    [4] = DB_OID_TEXT_ARRAY,
	    [5] = DB_OID_INT4_ARRAY },
};

static struct db_stmt agent_env = {
	.name = "pcs_agent_env",
	DB_FROM("SELECT env_name, ref_company, ref_name, selector, company_id, secret_id, version, "
	        "ciphertext, nonce, wrapped_key, key_id",
	    "pcs_agent_env($1, $2)"),
	DB_COLS(env_cols),
};

struct db_stmt *const db_resolve_statements[] = { &resolve, &agent_env, NULL };

static void bufs_free(struct db_sealed_buf *bufs, size_t n)
{
	for (size_t i = 0; bufs != NULL && i < n; i++)
		db_sealed_free(&bufs[i]);
	free(bufs);
}

static void deliver_resolved(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	const struct db_stmt *st = p->st;
	const struct db_target t = { p->company, p->agent };
	size_t n = (size_t)store_result_ntuples(res), done = 0;
	struct db_resolved *rows = db_rows_alloc(c, n, sizeof(*rows));
	struct db_sealed_buf *bufs = rows != NULL ? db_rows_alloc(c, n, sizeof(*bufs)) : NULL;

	if (rows == NULL || bufs == NULL)
		goto out;
	for (; done < n; done++) {
		struct db_resolved *x = &rows[done];
		int row = (int)done;
		x->idx = db_col_u32(res, row, st, X_IDX);
		x->granted = db_col_bool(res, row, st, X_GRANTED);
		x->company_id = db_col_str(res, row, st, X_COMPANY_ID);
		x->secret_id = db_col_str(res, row, st, X_SECRET_ID);
		x->version = db_col_u32(res, row, st, X_VERSION);
		x->state = db_col_opt(res, row, st, X_STATE);
		x->secret_gen = (int64_t)db_col_u64(res, row, st, X_SECRET_GEN);
		x->current_version = db_col_u32(res, row, st, X_CURRENT_VERSION);
		x->company = db_col_str(res, row, st, X_COMPANY);
		x->name = db_col_str(res, row, st, X_NAME);
		x->agent_id = db_col_str(res, row, st, X_AGENT_ID);
		x->agent_gen = (int64_t)db_col_u64(res, row, st, X_AGENT_GEN);
		x->deleted_note = db_col_opt(res, row, st, X_DELETED_NOTE);
		if (db_col_sealed(res, row, st, X_CIPHERTEXT, &x->sealed, &bufs[done]) != 0) {
			db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
	}
	p->cb.resolve(c, &t, rows, n);
out:
	bufs_free(bufs, done);
	free(rows);
}

void db_resolve(struct call *c, const char *company, const char *agent, const struct db_ref *refs,
    size_t n, db_resolve_cb cb)
{
	const struct db_target t = { company, agent };
	const char **ids = calloc(n + 1, sizeof(*ids)), **companies = calloc(n + 1, sizeof(*ids));
	const char **names = calloc(n + 1, sizeof(*ids));
	int32_t *versions = calloc(n + 1, sizeof(*versions));
	struct db_array a[4] = { { NULL, 0 }, { NULL, 0 }, { NULL, 0 }, { NULL, 0 } };
	struct db_params p = { 0 };

	if (ids == NULL || companies == NULL || names == NULL || versions == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		ids[i] = refs[i].secret_id;
		companies[i] = refs[i].company;
		names[i] = refs[i].name;
		versions[i] =
		    (int32_t)refs[i].version; /* the handler refused more than INT32_MAX */
	}
	if (db_array_new(&a[0], DB_ELEM_TEXT, ids, n) != 0 ||
	    db_array_new(&a[1], DB_ELEM_TEXT, companies, n) != 0 ||
	    db_array_new(&a[2], DB_ELEM_TEXT, names, n) != 0 ||
	    db_array_new(&a[3], DB_ELEM_INT4, versions, n) != 0)
		goto oom;
	db_param_text(&p, company);
	db_param_text(&p, agent);
	for (int i = 0; i < 4; i++)
		db_param_bytes(&p, a[i].data, a[i].len);
	db_run(c, DB_RUN_CALL, &resolve, &p, deliver_resolved, (union db_cb){ .resolve = cb }, &t);
	goto out;
oom:
	db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
out:
	for (int i = 0; i < 4; i++)
		db_array_free(&a[i]);
	free(ids);
	free(companies);
	free(names);
	free(versions);
}

static void deliver_env(struct call *c, const struct db_pending *p, const struct store_result *res)
{
	const struct db_stmt *st = p->st;
	const struct db_target t = { p->company, p->agent };
	size_t n = (size_t)store_result_ntuples(res), done = 0;
	struct db_env_value *rows = db_rows_alloc(c, n, sizeof(*rows));
	struct db_sealed_buf *bufs = rows != NULL ? db_rows_alloc(c, n, sizeof(*bufs)) : NULL;

	if (rows == NULL || bufs == NULL)
		goto out;
	for (; done < n; done++) {
		struct db_env_value *v = &rows[done];
		int row = (int)done;
		v->env_name = db_col_str(res, row, st, E_ENV_NAME);
		v->ref_company = db_col_str(res, row, st, E_REF_COMPANY);
		v->ref_name = db_col_str(res, row, st, E_REF_NAME);
		v->selector = db_col_null(res, row, st, E_SELECTOR) ?
		    0 :
		    db_col_u32(res, row, st, E_SELECTOR);
		v->company_id = db_col_str(res, row, st, E_COMPANY_ID);
		v->secret_id = db_col_str(res, row, st, E_SECRET_ID);
		v->version = db_col_u32(res, row, st, E_VERSION);
		if (db_col_sealed(res, row, st, E_CIPHERTEXT, &v->sealed, &bufs[done]) != 0) {
			db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
	}
	p->cb.env(c, &t, rows, n);
out:
	bufs_free(bufs, done);
	free(rows);
}

void db_agent_env(struct call *c, const char *company, const char *agent, db_agent_env_cb cb)
{
	const struct db_target t = { company, agent };
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, agent);
	db_run(c, DB_RUN_CALL, &agent_env, &p, deliver_env, (union db_cb){ .env = cb }, &t);
}
