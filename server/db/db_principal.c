/* db_principal: principal rules, and the lookup that identifies every call's peer. */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { R_ID, R_MATCH, R_UNIX_ID, R_ROLE, R_COMPANY, R_AGENT, R_CREATED_AT, R_CREATED_BY };
static const char *const rule_cols[] = {
	[R_ID] = "id",
	[R_MATCH] = "match",
	[R_UNIX_ID] = "unix_id",
	[R_ROLE] = "role",
	[R_COMPANY] = "company",
	[R_AGENT] = "agent",
	[R_CREATED_AT] = "created_at",
	[R_CREATED_BY] = "created_by",
};
#define RULE_SELECT \
	"SELECT id, match, unix_id, role, company, agent, " \
	"pcs_ts(created_at) AS created_at, created_by"

enum { L_ID, L_MATCH, L_UNIX_ID, L_ROLE, L_COMPANY, L_AGENT_NAME, L_GEN };
static const char *const lookup_cols[] = {
	[L_ID] = "id",
	[L_MATCH] = "match",
	[L_UNIX_ID] = "unix_id",
	[L_ROLE] = "role",
	[L_COMPANY] = "company",
	[L_AGENT_NAME] = "agent_name",
	[L_GEN] = "gen",
};

enum { DEL_ID };
static const char *const remove_cols[] = { [DEL_ID] = "id" };

/* match, unix id, role, company, actor */
static struct db_stmt add_principal = {
	.name = "pcs_add_principal",
	DB_FROM(RULE_SELECT, "pcs_add_principal($1, $2, $3, $4, $5)"),
	DB_COLS(rule_cols),
};

static struct db_stmt principal_rows = {
	.name = "pcs_principal_rows",
	DB_FROM(RULE_SELECT, "pcs_principal_rows($1)"),
	DB_COLS(rule_cols),
};

static struct db_stmt remove_principal = {
	.name = "pcs_remove_principal",
	DB_FROM("SELECT id", "pcs_remove_principal($1)"),
	DB_COLS(remove_cols),
};

/* uid, the peer's groups; uid rules first, then by id (principal_from_matches relies on it) */
static struct db_stmt principal_lookup = {
	.name = "pcs_principal_lookup",
	DB_FROM("SELECT id, match, unix_id, role, company, agent_name, gen",
	    "pcs_principal_lookup($1, $2)"),
	DB_COLS(lookup_cols),
	.param_oid = { [1] = DB_OID_INT8_ARRAY },
};

struct db_stmt *const db_principal_statements[] = { &add_principal, &principal_rows,
	&remove_principal, &principal_lookup, NULL };

static void rule_row(
    const struct store_result *r, int row, const struct db_stmt *st, struct db_principal_rule *out)
{
	out->id = db_col_u64(r, row, st, R_ID);
	out->match = db_col_str(r, row, st, R_MATCH);
	out->unix_id = db_col_u32(r, row, st, R_UNIX_ID);
	out->role = db_col_str(r, row, st, R_ROLE);
	out->company = db_col_str(r, row, st, R_COMPANY);
	out->agent = db_col_str(r, row, st, R_AGENT);
	out->created_at = db_col_str(r, row, st, R_CREATED_AT);
	out->created_by = db_col_str(r, row, st, R_CREATED_BY);
}

static void deliver_rule(struct call *c, const struct db_pending *p, const struct store_result *res)
{
	struct db_principal_rule rule;

	rule_row(res, 0, p->st, &rule);
	p->cb.rule(c, &rule);
}

void db_principal_add(struct call *c, const char *match, uint32_t unix_id, const char *role,
    const char *company, db_rule_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, match);
	db_param_u32(&p, unix_id);
	db_param_text(&p, role);
	db_param_text(&p, company);
	db_param_text(&p, db_actor(c));
	db_run(c, DB_RUN_CALL, &add_principal, &p, deliver_rule, (union db_cb){ .rule = cb }, NULL);
}

static void deliver_rules(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res);
	struct db_principal_rule *rows = db_rows_alloc(c, n, sizeof(*rows));

	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		rule_row(res, (int)i, p->st, &rows[i]);
	p->cb.rules(c, rows, n);
	free(rows);
}

void db_principal_list(struct call *c, db_rules_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, NULL); /* every rule */
	db_run(
	    c, DB_RUN_CALL, &principal_rows, &p, deliver_rules, (union db_cb){ .rules = cb }, NULL);
}

static void deliver_done(struct call *c, const struct db_pending *p, const struct store_result *res)
{
	(void)res;
	p->cb.done(c);
}

void db_principal_remove(struct call *c, uint64_t id, db_done_cb cb)
{
	struct db_params p = { 0 };

	db_param_u64(&p, id);
	db_run(
	    c, DB_RUN_CALL, &remove_principal, &p, deliver_done, (union db_cb){ .done = cb }, NULL);
}

/* ---- the lookup ---- */

/* The lookup's rows; NULL when out of memory. Free with free(). */
static struct db_principal_match *lookup_rows(const struct store_result *res, size_t *n)
{
	const struct db_stmt *st = &principal_lookup;
	struct db_principal_match *rows;

	*n = (size_t)store_result_ntuples(res);
	if ((rows = calloc(*n + 1, sizeof(*rows))) == NULL)
		return NULL;
	for (size_t i = 0; i < *n; i++) {
		rows[i].id = db_col_str(res, (int)i, st, L_ID);
		rows[i].match = db_col_str(res, (int)i, st, L_MATCH);
		rows[i].unix_id = db_col_str(res, (int)i, st, L_UNIX_ID);
		rows[i].role = db_col_str(res, (int)i, st, L_ROLE);
		rows[i].company = db_col_opt(res, (int)i, st, L_COMPANY);
		rows[i].agent_name = db_col_str(res, (int)i, st, L_AGENT_NAME);
		rows[i].gen = (int64_t)db_col_u64(res, (int)i, st, L_GEN);
	}
	return rows;
}

static void deliver_lookup(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	struct db_principal_match *rows;
	size_t n;

	if ((rows = lookup_rows(res, &n)) == NULL) {
		db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	p->cb.principal(c, rows, n);
	free(rows);
}

/*
 * The groups of a peer the lookup considers (conn.h's CONN_MAX_GROUPS), and the room their
 * binary bigint[] takes: a 20-byte header and 12 bytes per group.
 */
#define PRINCIPAL_MAX_GROUPS 64
#define PRINCIPAL_GROUPS_ARRAY (20 + 12 * PRINCIPAL_MAX_GROUPS)

/* The binary bigint[] of groups into buf; its length. */
static size_t groups_array(const gid_t *groups, size_t n, uint8_t *buf, size_t size)
{
	int64_t gids[PRINCIPAL_MAX_GROUPS];

	if (n > PRINCIPAL_MAX_GROUPS)
		n = PRINCIPAL_MAX_GROUPS;
	for (size_t i = 0; i < n; i++)
		gids[i] = (int64_t)groups[i];
	return db_array_encode(DB_ELEM_INT8, gids, n, buf, size);
}

void db_principal_lookup(
    struct call *c, uint32_t uid, const gid_t *groups, size_t ngroups, db_principal_cb cb)
{
	struct db_params p = { 0 };
	uint8_t gids[PRINCIPAL_GROUPS_ARRAY];
	size_t len = groups_array(groups, ngroups, gids, sizeof(gids));

	db_param_u32(&p, uid);
	db_param_bytes(&p, gids, len);
	db_run(c, DB_RUN_STEP, &principal_lookup, &p, deliver_lookup,
	    (union db_cb){ .principal = cb }, NULL);
}
