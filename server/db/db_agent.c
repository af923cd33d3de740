/* db_agent: agents and their env config (bindings of env names to secret references). */
#include "db_internal.h"

#include <stdlib.h>

enum {
	A_ID,
	A_COMPANY,
	A_NAME,
	A_UID,
	A_CREATED_AT,
	A_CREATED_BY,
	/* One row per binding; one row of NULLs here for an agent without any. */
	A_ENV_NAME,
	A_REF_COMPANY,
	A_REF_NAME,
	A_REF_VERSION
};
#define AGENT_NAMES \
	[A_ID] = "id", [A_COMPANY] = "company", [A_NAME] = "name", [A_UID] = "uid", \
	[A_CREATED_AT] = "created_at", [A_CREATED_BY] = "created_by"
static const char *const agent_cols[] = {
	AGENT_NAMES,
	[A_ENV_NAME] = "env_name",
	[A_REF_COMPANY] = "ref_company",
	[A_REF_NAME] = "ref_name",
	[A_REF_VERSION] = "ref_version",
};
/* pcs_list_agents: the agents alone. */
static const char *const agent_list_cols[] = { AGENT_NAMES };
#define AGENT_LIST_SELECT \
	"SELECT id, company, name, uid, pcs_ts(created_at) AS created_at, " \
	"created_by"
#define AGENT_SELECT AGENT_LIST_SELECT ", env_name, ref_company, ref_name, ref_version"

enum { DEL_ID };
static const char *const delete_cols[] = { [DEL_ID] = "id" };

/* company, name, uid, actor, the uid's groups */
static struct db_stmt create_agent = {
	.name = "pcs_create_agent",
	DB_FROM(AGENT_SELECT, "pcs_create_agent($1, $2, $3, $4, $5)"),
	DB_COLS(agent_cols),
	.param_oid = { [4] = DB_OID_INT8_ARRAY },
};

static struct db_stmt describe_agent = {
	.name = "pcs_describe_agent",
	DB_FROM(AGENT_SELECT, "pcs_describe_agent($1, $2)"),
	DB_COLS(agent_cols),
};

/* company, agent, env name, ref secret id, ref company, ref name, ref version, actor */
static struct db_stmt set_agent_env = {
	.name = "pcs_set_agent_env",
	DB_FROM(AGENT_SELECT, "pcs_set_agent_env($1, $2, $3, $4, $5, $6, $7, $8)"),
	DB_COLS(agent_cols),
};

static struct db_stmt unset_agent_env = {
	.name = "pcs_unset_agent_env",
	DB_FROM(AGENT_SELECT, "pcs_unset_agent_env($1, $2, $3)"),
	DB_COLS(agent_cols),
};

static struct db_stmt list_agents = {
	.name = "pcs_list_agents",
	DB_FROM(AGENT_LIST_SELECT, "pcs_list_agents($1)"),
	DB_COLS(agent_list_cols),
};

static struct db_stmt delete_agent = {
	.name = "pcs_delete_agent",
	DB_FROM("SELECT id", "pcs_delete_agent($1, $2)"),
	DB_COLS(delete_cols),
};

struct db_stmt *const db_agent_statements[] = { &create_agent, &describe_agent, &set_agent_env,
	&unset_agent_env, &list_agents, &delete_agent, NULL };

static void agent_row(
    const struct store_result *r, int row, const struct db_stmt *st, struct db_agent *out)
{
	out->id = db_col_str(r, row, st, A_ID);
	out->company = db_col_str(r, row, st, A_COMPANY);
	out->name = db_col_str(r, row, st, A_NAME);
	out->uid = db_col_u32(r, row, st, A_UID);
	out->created_at = db_col_str(r, row, st, A_CREATED_AT);
	out->created_by = db_col_str(r, row, st, A_CREATED_BY);
	out->bindings = NULL;
	out->nbindings = 0;
}

/* One agent from its rows (one per binding). */
static void deliver_agent(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	int n = store_result_ntuples(res);
	struct db_agent a = { "", "", "", 0, "", "", NULL, 0 };
	struct db_binding *b = db_rows_alloc(c, (size_t)n, sizeof(*b));
	size_t k = 0;

	if (b == NULL)
		return;
	if (n > 0)
		agent_row(res, 0, p->st, &a);
	for (int row = 0; row < n; row++) {
		if (db_col_null(res, row, p->st, A_ENV_NAME))
			continue;
		b[k].env_name = db_col_str(res, row, p->st, A_ENV_NAME);
		b[k].ref_company = db_col_str(res, row, p->st, A_REF_COMPANY);
		b[k].ref_name = db_col_str(res, row, p->st, A_REF_NAME);
		b[k].ref_version = db_col_null(res, row, p->st, A_REF_VERSION) ?
		    0 :
		    db_col_u32(res, row, p->st, A_REF_VERSION);
		k++;
	}
	a.bindings = b;
	a.nbindings = k;
	p->cb.agent(c, &a);
	free(b);
}

void db_agent_create(struct call *c, const char *company, const char *name, uint32_t uid,
    const gid_t *groups, size_t ngroups, db_agent_cb cb)
{
	struct db_params p = { 0 };
	struct db_array a = { NULL, 0 };
	int64_t *gids = calloc(ngroups + 1, sizeof(*gids));

	if (gids == NULL) {
		db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (size_t i = 0; i < ngroups; i++)
		gids[i] = (int64_t)groups[i];
	if (db_array_new(&a, DB_ELEM_INT8, gids, ngroups) != 0) {
		db_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	db_param_text(&p, company);
	db_param_text(&p, name);
	db_param_u32(&p, uid);
	db_param_text(&p, db_actor(c));
	db_param_bytes(&p, a.data, a.len);
	db_run(
	    c, DB_RUN_CALL, &create_agent, &p, deliver_agent, (union db_cb){ .agent = cb }, NULL);
out:
	db_array_free(&a);
	free(gids);
}

void db_agent_describe(struct call *c, const char *company, const char *name, db_agent_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_run(
	    c, DB_RUN_CALL, &describe_agent, &p, deliver_agent, (union db_cb){ .agent = cb }, NULL);
}

void db_agent_set_env(struct call *c, const char *company, const char *agent, const char *env_name,
    const struct db_ref *ref, db_agent_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, agent);
	db_param_text(&p, env_name);
	db_param_text(&p, ref->secret_id[0] != '\0' ? ref->secret_id : NULL);
	db_param_text(&p, ref->company);
	db_param_text(&p, ref->name);
	if (ref->version != 0)
		db_param_u32(&p, ref->version);
	else
		db_param_text(&p, NULL);
	db_param_text(&p, db_actor(c));
	db_run(
	    c, DB_RUN_CALL, &set_agent_env, &p, deliver_agent, (union db_cb){ .agent = cb }, NULL);
}

void db_agent_unset_env(
    struct call *c, const char *company, const char *agent, const char *env_name, db_agent_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, agent);
	db_param_text(&p, env_name);
	db_run(c, DB_RUN_CALL, &unset_agent_env, &p, deliver_agent, (union db_cb){ .agent = cb },
	    NULL);
}

static void deliver_agents(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res);
	struct db_agent *rows = db_rows_alloc(c, n, sizeof(*rows));

	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		agent_row(res, (int)i, p->st, &rows[i]);
	p->cb.agents(c, rows, n);
	free(rows);
}

void db_agent_list(struct call *c, const char *company, db_agents_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_run(
	    c, DB_RUN_CALL, &list_agents, &p, deliver_agents, (union db_cb){ .agents = cb }, NULL);
}

static void deliver_done(struct call *c, const struct db_pending *p, const struct store_result *res)
{
	(void)res;
	p->cb.done(c);
}

void db_agent_delete(struct call *c, const char *company, const char *name, db_done_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, company);
	db_param_text(&p, name);
	db_run(c, DB_RUN_CALL, &delete_agent, &p, deliver_done, (union db_cb){ .done = cb }, NULL);
}
