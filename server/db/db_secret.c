/* db_secret: secrets and their versions. Values arrive sealed (db_sealed), never in clear. */
#include "db_internal.h"

#include <stdlib.h>

enum {
	S_ID,
	S_COMPANY,
	S_NAME,
	S_DESCRIPTION,
	S_CURRENT_VERSION,
	S_CREATED_AT,
	S_UPDATED_AT,
	S_CREATED_BY,
	/* pcs_describe_secret adds one row per version. */
	V_VERSION,
	V_STATE,
	V_CREATED_AT,
	V_CREATED_BY,
	V_KEY_ID,
	V_DISABLED_AT,
	V_DISABLED_BY,
	V_ENABLED_AT,
	V_ENABLED_BY,
	V_PROMOTED_AT,
	V_PROMOTED_BY,
	/* Retention and destroyed versions (migration 009). */
	V_MAX_VERSIONS,
	V_DESTROYED_AT,
	V_DESTROYED_BY,
	V_DESTROYED_HOW
};
#define SECRET_NAMES \
	[S_ID] = "id", [S_COMPANY] = "company", [S_NAME] = "name", \
	[S_DESCRIPTION] = "description", [S_CURRENT_VERSION] = "current_version", \
	[S_CREATED_AT] = "created_at", [S_UPDATED_AT] = "updated_at", \
	[S_CREATED_BY] = "created_by"
static const char *const secret_cols[] = { SECRET_NAMES };
static const char *const describe_cols[] = {
	SECRET_NAMES,
	[V_VERSION] = "version",
	[V_STATE] = "state",
	[V_CREATED_AT] = "version_created_at",
	[V_CREATED_BY] = "version_created_by",
	[V_KEY_ID] = "key_id",
	[V_DISABLED_AT] = "disabled_at",
	[V_DISABLED_BY] = "disabled_by",
	[V_ENABLED_AT] = "enabled_at",
	[V_ENABLED_BY] = "enabled_by",
	[V_PROMOTED_AT] = "promoted_at",
	[V_PROMOTED_BY] = "promoted_by",
	[V_MAX_VERSIONS] = "max_versions",
	[V_DESTROYED_AT] = "destroyed_at",
	[V_DESTROYED_BY] = "destroyed_by",
	[V_DESTROYED_HOW] = "destroyed_how",
};
#define SECRET_SELECT \
	"SELECT id, company, name, description, current_version, " \
	"pcs_ts(created_at) AS created_at, pcs_ts(updated_at) AS updated_at, created_by"

enum {
	P_COMPANY_ID,
	P_SECRET_ID,
	P_CURRENT_VERSION,
	P_NEXT_VERSION,
	P_TOKEN_VERSION,
	P_TOKEN_TAG,
	P_TOKEN_EXPECTED,
	P_TOKEN_DESCRIBED,
	P_TOKEN_DESCRIPTION
};
/* A create's: the company, and the secret an earlier create with the same token made. */
enum { C_COMPANY_ID, C_TOKEN_SECRET, C_TOKEN_TAG, C_TOKEN_DESCRIPTION };
static const char *const prepare_create_cols[] = {
	[C_COMPANY_ID] = "company_id",
	[C_TOKEN_SECRET] = "token_secret",
	[C_TOKEN_TAG] = "token_tag",
	[C_TOKEN_DESCRIPTION] = "token_description",
};
static const char *const prepare_update_cols[] = {
	[P_COMPANY_ID] = "company_id",
	[P_SECRET_ID] = "secret_id",
	[P_CURRENT_VERSION] = "current_version",
	[P_NEXT_VERSION] = "next_version",
	[P_TOKEN_VERSION] = "token_version",
	[P_TOKEN_TAG] = "token_tag",
	[P_TOKEN_EXPECTED] = "token_expected",
	[P_TOKEN_DESCRIBED] = "token_described",
	[P_TOKEN_DESCRIPTION] = "token_description",
};

/* pcs_list_deleted_secrets adds these to the secret's columns; pcs_purge_secret one. */
enum { L_DELETED_AT = S_CREATED_BY + 1, L_DELETED_BY, L_RESTORE_UNTIL, L_PURGED };
static const char *const deleted_cols[] = {
	SECRET_NAMES,
	[L_DELETED_AT] = "deleted_at",
	[L_DELETED_BY] = "deleted_by",
	[L_RESTORE_UNTIL] = "restore_until",
	[L_PURGED] = "purged",
};
enum { G_DESTROYED = S_CREATED_BY + 1 };
static const char *const purge_cols[] = { SECRET_NAMES, [G_DESTROYED] = "destroyed" };
/* pcs_set_secret_retention adds the limit and what it destroyed. */
enum { R_MAX_VERSIONS = S_CREATED_BY + 1, R_DESTROYED };
static const char *const retention_cols[] = {
	SECRET_NAMES,
	[R_MAX_VERSIONS] = "max_versions",
	[R_DESTROYED] = "destroyed",
};

enum { D_BOUND, D_RESTORE_UNTIL };
static const char *const delete_cols[] = {
	[D_BOUND] = "bound", [D_RESTORE_UNTIL] = "restore_until"
};

static struct db_stmt prepare_create = {
	.name = "pcs_secret_prepare_create",
	DB_FROM("SELECT company_id, token_secret, token_tag, token_description",
	    "pcs_secret_prepare_create($1, $2, $3)"),
	DB_COLS(prepare_create_cols),
};

/*
 * company id, secret id, name, description, ciphertext, nonce, wrapped key, key id, actor,
 * token, value tag
 */
static struct db_stmt create_secret = {
	.name = "pcs_create_secret",
	DB_FROM(SECRET_SELECT, "pcs_create_secret($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
	DB_COLS(secret_cols),
	.param_oid = { [4] = DB_OID_BYTEA,
	    [5] = DB_OID_BYTEA,
	    [6] = DB_OID_BYTEA,
	    [10] = DB_OID_BYTEA },
};

static struct db_stmt prepare_update = {
	.name = "pcs_secret_prepare_update",
	DB_FROM("SELECT company_id, secret_id, current_version, next_version, token_version, "
	        "token_tag, token_expected, token_described, token_description",
	    "pcs_secret_prepare_update($1, $2, $3)"),
	DB_COLS(prepare_update_cols),
};

/*
 * secret id, version, expected version, ciphertext, nonce, wrapped key, key id, token, value
 * tag, actor, promote, description (NULL: unchanged)
 */
static struct db_stmt add_version = {
	.name = "pcs_add_version",
	DB_FROM(
	    SECRET_SELECT, "pcs_add_version($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
	DB_COLS(secret_cols),
	.param_oid = { [3] = DB_OID_BYTEA,
	    [4] = DB_OID_BYTEA,
	    [5] = DB_OID_BYTEA,
	    [8] = DB_OID_BYTEA },
};

/* company, name, description */
static struct db_stmt set_description = {
	.name = "pcs_set_secret_description",
	DB_FROM(SECRET_SELECT, "pcs_set_secret_description($1, $2, $3)"),
	DB_COLS(secret_cols),
};

static struct db_stmt secret_row = {
	.name = "pcs_secret_row",
	DB_FROM(SECRET_SELECT, "pcs_secret_row($1)"),
	DB_COLS(secret_cols),
};

static struct db_stmt list_secrets = {
	.name = "pcs_list_secrets",
	DB_FROM(SECRET_SELECT, "pcs_list_secrets($1)"),
	DB_COLS(secret_cols),
};

static struct db_stmt describe_secret = {
	.name = "pcs_describe_secret",
	DB_FROM(SECRET_SELECT ", version, state, pcs_ts(version_created_at) AS version_created_at, "
	                      "version_created_by, key_id, pcs_ts(disabled_at) AS disabled_at, "
	                      "disabled_by, pcs_ts(enabled_at) AS enabled_at, enabled_by, "
	                      "pcs_ts(promoted_at) AS promoted_at, promoted_by, max_versions, "
	                      "pcs_ts(destroyed_at) AS destroyed_at, destroyed_by, destroyed_how",
	    "pcs_describe_secret($1, $2)"),
	DB_COLS(describe_cols),
};

/* company, name, version, action, actor */
static struct db_stmt version_action = {
	.name = "pcs_secret_version_action",
	DB_FROM(SECRET_SELECT, "pcs_secret_version_action($1, $2, $3, $4, $5)"),
	DB_COLS(secret_cols),
};

static struct db_stmt list_deleted = {
	.name = "pcs_list_deleted_secrets",
	DB_FROM(SECRET_SELECT ", pcs_ts(deleted_at) AS deleted_at, deleted_by, "
	                      "pcs_ts(delete_after) AS restore_until, purged",
	    "pcs_list_deleted_secrets($1)"),
	DB_COLS(deleted_cols),
};

/* company, name, force, recovery days, actor */
static struct db_stmt delete_secret = {
	.name = "pcs_delete_secret",
	DB_FROM("SELECT bound, restore_until", "pcs_delete_secret($1, $2, $3, $4, $5)"),
	DB_COLS(delete_cols),
};

/* company, name, actor */
static struct db_stmt restore_secret = {
	.name = "pcs_restore_secret",
	DB_FROM(SECRET_SELECT, "pcs_restore_secret($1, $2, $3)"),
	DB_COLS(secret_cols),
};

/* company, name, actor */
static struct db_stmt purge_secret = {
	.name = "pcs_purge_secret",
	DB_FROM(SECRET_SELECT ", destroyed", "pcs_purge_secret($1, $2, $3)"),
	DB_COLS(purge_cols),
};

/* company, name, max versions, actor */
static struct db_stmt set_retention = {
	.name = "pcs_set_secret_retention",
	DB_FROM(
	    SECRET_SELECT ", max_versions, destroyed", "pcs_set_secret_retention($1, $2, $3, $4)"),
	DB_COLS(retention_cols),
};

/* company, name, version, actor */
static struct db_stmt destroy_version = {
	.name = "pcs_destroy_secret_version",
	DB_FROM(SECRET_SELECT, "pcs_destroy_secret_version($1, $2, $3, $4)"),
	DB_COLS(secret_cols),
};

struct db_stmt *const db_secret_statements[] = { &prepare_create, &create_secret, &prepare_update,
	&add_version, &secret_row, &list_secrets, &describe_secret, &version_action, &list_deleted,
	&delete_secret, &restore_secret, &purge_secret, &set_retention, &destroy_version,
	&set_description, NULL };

static void secret_row_of(
    const struct store_result *r, int row, const struct db_stmt *st, struct db_secret *out)
{
	out->id = db_col_str(r, row, st, S_ID);
	out->company = db_col_str(r, row, st, S_COMPANY);
	out->name = db_col_str(r, row, st, S_NAME);
	out->description = db_col_str(r, row, st, S_DESCRIPTION);
	out->current_version = db_col_u32(r, row, st, S_CURRENT_VERSION);
	out->created_at = db_col_str(r, row, st, S_CREATED_AT);
	out->updated_at = db_col_str(r, row, st, S_UPDATED_AT);
	out->created_by = db_col_str(r, row, st, S_CREATED_BY);
	out->deleted_at = "";
	out->deleted_by = "";
	out->restore_until = "";
	out->purged = 0;
	out->destroyed = 0;
	out->max_versions = 0;
	if (st == &describe_secret) {
		out->max_versions = db_col_u32(r, row, st, V_MAX_VERSIONS);
	} else if (st == &set_retention) {
		out->max_versions = db_col_u32(r, row, st, R_MAX_VERSIONS);
		out->destroyed = db_col_u32(r, row, st, R_DESTROYED);
	} else if (st == &list_deleted) {
		out->deleted_at = db_col_str(r, row, st, L_DELETED_AT);
		out->deleted_by = db_col_str(r, row, st, L_DELETED_BY);
		out->restore_until = db_col_str(r, row, st, L_RESTORE_UNTIL);
		out->purged = db_col_bool(r, row, st, L_PURGED);
	} else if (st == &purge_secret) {
		out->destroyed = db_col_u32(r, row, st, G_DESTROYED);
	}
}

static void deliver_secret(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	struct db_secret s;

	secret_row_of(res, 0, p->st, &s);
	p->cb.secret(c, &s);
}

static void deliver_prepared(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	struct db_secret_prepared out = { "", "", 0, 0, 0, "", 0, 0, "", "", 0 };
	const struct db_stmt *st = p->st;

	out.attempt = p->attempt;
	out.company_id = db_col_str(res, 0, st, P_COMPANY_ID);
	if (st == &prepare_create) {
		out.token_secret = db_col_str(res, 0, st, C_TOKEN_SECRET);
		out.token_tag = db_col_str(res, 0, st, C_TOKEN_TAG);
		out.token_description = db_col_str(res, 0, st, C_TOKEN_DESCRIPTION);
		out.token_described = out.token_secret[0] != '\0';
	}
	if (st == &prepare_update) {
		out.secret_id = db_col_str(res, 0, st, P_SECRET_ID);
		out.current_version = db_col_u32(res, 0, st, P_CURRENT_VERSION);
		out.next_version = db_col_u32(res, 0, st, P_NEXT_VERSION);
		out.token_version = db_col_u32(res, 0, st, P_TOKEN_VERSION);
		out.token_tag = db_col_str(res, 0, st, P_TOKEN_TAG);
		out.token_expected = db_col_u32(res, 0, st, P_TOKEN_EXPECTED);
		out.token_described = db_col_bool(res, 0, st, P_TOKEN_DESCRIBED);
		out.token_description = db_col_str(res, 0, st, P_TOKEN_DESCRIPTION);
	}
	p->cb.prepared(c, &out);
}

static void param_sealed(struct db_params *p, const struct db_sealed *s)
{
	db_param_bytes(p, s->ciphertext, s->ciphertext_len);
	db_param_bytes(p, s->nonce, s->nonce_len);
	db_param_bytes(p, s->wrapped_key, s->wrapped_key_len);
	db_param_text(p, s->key_id);
}

void db_secret_prepare_create_attempt(struct call *c, const char *company, const char *name,
    const char *token, uint32_t attempt, db_secret_prepared_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_text(&p, token);
	db_run_attempt(c, DB_RUN_STEP, &prepare_create, &p, deliver_prepared,
	    (union db_cb){ .prepared = cb }, attempt, 0);
}

static void deliver_stored(
    struct call *c, const struct db_pending *p, const struct store_result *res);

void db_secret_create_attempt(struct call *c, const char *company_id, const char *secret_id,
    const char *name, const char *description, const struct db_sealed *sealed, const char *token,
    const uint8_t *tag, size_t tag_len, uint32_t attempt, db_secret_stored_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company_id);
	db_param_text(&p, secret_id);
	db_param_text(&p, name);
	db_param_text(&p, description);
	param_sealed(&p, sealed);
	db_param_text(&p, db_actor(c));
	db_param_text(&p, token);
	db_param_bytes(&p, tag, tag_len);
	db_run_attempt(c, DB_RUN_CALL, &create_secret, &p, deliver_stored,
	    (union db_cb){ .stored = cb }, attempt, 1);
}

void db_secret_set_description(
    struct call *c, const char *company, const char *name, const char *description, db_secret_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_text(&p, description);
	db_run(c, DB_RUN_CALL, &set_description, &p, deliver_secret, (union db_cb){ .secret = cb },
	    NULL);
}

void db_secret_prepare_update_attempt(struct call *c, const char *company, const char *name,
    const char *token, uint32_t attempt, db_secret_prepared_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_text(&p, token);
	db_run_attempt(c, DB_RUN_STEP, &prepare_update, &p, deliver_prepared,
	    (union db_cb){ .prepared = cb }, attempt, 0);
}

/* A store that lost its check-and-set (ABORTED) reaches here too: nothing of it was kept. */
static void deliver_stored(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	int status = store_result_status(res);
	struct db_secret s;

	if (status != 0) {
		p->cb.stored(c, p->attempt, status, store_result_message(res), NULL);
		return;
	}
	secret_row_of(res, 0, p->st, &s);
	p->cb.stored(c, p->attempt, 0, "", &s);
}

void db_secret_add_version_attempt(struct call *c, const char *secret_id, uint32_t version,
    uint32_t expected, const struct db_sealed *sealed, const char *token, const uint8_t *tag,
    size_t tag_len, int promote, const char *description, uint32_t attempt, db_secret_stored_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, secret_id);
	db_param_u32(&p, version);
	db_param_u32(&p, expected);
	param_sealed(&p, sealed);
	db_param_text(&p, token);
	db_param_bytes(&p, tag, tag_len);
	db_param_text(&p, db_actor(c));
	db_param_bool(&p, promote);
	db_param_text(&p, description);
	db_run_attempt(c, DB_RUN_CALL, &add_version, &p, deliver_stored,
	    (union db_cb){ .stored = cb }, attempt, 1);
}

void db_secret_get(struct call *c, const char *secret_id, db_secret_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, secret_id);
	db_run(
	    c, DB_RUN_CALL, &secret_row, &p, deliver_secret, (union db_cb){ .secret = cb }, NULL);
}

static void deliver_secrets(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res);
	struct db_secret *rows = db_rows_alloc(c, n, sizeof(*rows));

	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		secret_row_of(res, (int)i, p->st, &rows[i]);
	p->cb.secrets(c, rows, n);
	free(rows);
}

void db_secret_list(struct call *c, const char *company, int deleted, db_secrets_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_run(c, DB_RUN_CALL, deleted ? &list_deleted : &list_secrets, &p, deliver_secrets,
	    (union db_cb){ .secrets = cb }, NULL);
}

static void deliver_described(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res);
	struct db_version *rows = db_rows_alloc(c, n, sizeof(*rows));
	struct db_secret s;

	if (rows == NULL)
		return;
	secret_row_of(res, 0, p->st, &s);
	for (size_t i = 0; i < n; i++) {
		rows[i].version = db_col_u32(res, (int)i, p->st, V_VERSION);
		rows[i].state = db_col_str(res, (int)i, p->st, V_STATE);
		rows[i].created_at = db_col_str(res, (int)i, p->st, V_CREATED_AT);
		rows[i].created_by = db_col_str(res, (int)i, p->st, V_CREATED_BY);
		rows[i].key_id = db_col_str(res, (int)i, p->st, V_KEY_ID);
		rows[i].disabled_at = db_col_str(res, (int)i, p->st, V_DISABLED_AT);
		rows[i].disabled_by = db_col_str(res, (int)i, p->st, V_DISABLED_BY);
		rows[i].enabled_at = db_col_str(res, (int)i, p->st, V_ENABLED_AT);
		rows[i].enabled_by = db_col_str(res, (int)i, p->st, V_ENABLED_BY);
		rows[i].promoted_at = db_col_str(res, (int)i, p->st, V_PROMOTED_AT);
		rows[i].promoted_by = db_col_str(res, (int)i, p->st, V_PROMOTED_BY);
		rows[i].destroyed_at = db_col_str(res, (int)i, p->st, V_DESTROYED_AT);
		rows[i].destroyed_by = db_col_str(res, (int)i, p->st, V_DESTROYED_BY);
		rows[i].destroyed_how = db_col_str(res, (int)i, p->st, V_DESTROYED_HOW);
	}
	p->cb.described(c, &s, rows, n);
	free(rows);
}

void db_secret_describe(
    struct call *c, const char *company, const char *name, db_secret_described_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_run(c, DB_RUN_CALL, &describe_secret, &p, deliver_described,
	    (union db_cb){ .described = cb }, NULL);
}

void db_secret_version_action(struct call *c, const char *company, const char *name,
    uint32_t version, enum db_version_action action, db_secret_cb cb)
{
	/* The SQL function takes the action by name, so its refusals read as the verb did. */
	static const char *const names[] = {
		[DB_VERSION_PROMOTE] = "promote",
		[DB_VERSION_ROLLBACK] = "rollback",
		[DB_VERSION_DISABLE] = "disable",
		[DB_VERSION_ENABLE] = "enable",
	};
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_u32(&p, version);
	db_param_text(&p, names[action]);
	db_param_text(&p, db_actor(c));
	db_run(c, DB_RUN_CALL, &version_action, &p, deliver_secret, (union db_cb){ .secret = cb },
	    NULL);
}

/* One row per binding kept, or one with no binding (NULL) when there are none. */
static void deliver_deleted(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res), nbound = 0;
	const char **bound = db_rows_alloc(c, n, sizeof(*bound));
	const char *until = n > 0 ? db_col_str(res, 0, p->st, D_RESTORE_UNTIL) : "";

	if (bound == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		if (!db_col_null(res, (int)i, p->st, D_BOUND))
			bound[nbound++] = db_col_str(res, (int)i, p->st, D_BOUND);
	p->cb.deleted(c, bound, nbound, until);
	free(bound);
}

void db_secret_delete(struct call *c, const char *company, const char *name, int force,
    uint32_t days, db_secret_deleted_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_bool(&p, force);
	db_param_u32(&p, days);
	db_param_text(&p, db_actor(c));
	db_run(c, DB_RUN_CALL, &delete_secret, &p, deliver_deleted, (union db_cb){ .deleted = cb },
	    NULL);
}

/* Restore and purge: the same parameters, a secret's row back. */
static void run_named(
    struct call *c, struct db_stmt *st, const char *company, const char *name, db_secret_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_text(&p, db_actor(c));
	db_run(c, DB_RUN_CALL, st, &p, deliver_secret, (union db_cb){ .secret = cb }, NULL);
}

void db_secret_restore(struct call *c, const char *company, const char *name, db_secret_cb cb)
{
	run_named(c, &restore_secret, company, name, cb);
}

void db_secret_purge(struct call *c, const char *company, const char *name, db_secret_cb cb)
{
	run_named(c, &purge_secret, company, name, cb);
}

void db_secret_set_retention(
    struct call *c, const char *company, const char *name, uint32_t max, db_secret_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_u32(&p, max);
	db_param_text(&p, db_actor(c));
	db_run(c, DB_RUN_CALL, &set_retention, &p, deliver_secret, (union db_cb){ .secret = cb },
	    NULL);
}

void db_secret_destroy_version(
    struct call *c, const char *company, const char *name, uint32_t version, db_secret_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_u32(&p, version);
	db_param_text(&p, db_actor(c));
	db_run(c, DB_RUN_CALL, &destroy_version, &p, deliver_secret, (union db_cb){ .secret = cb },
	    NULL);
}
