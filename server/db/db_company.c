/* db_company: CreateCompany and ListCompanies. */
#include "db_internal.h"

#include <stdlib.h>

enum { CO_ID, CO_NAME, CO_CREATED_AT, CO_CREATED_BY };
static const char *const company_cols[] = {
	[CO_ID] = "id",
	[CO_NAME] = "name",
	[CO_CREATED_AT] = "created_at",
	[CO_CREATED_BY] = "created_by",
};
#define COMPANY_SELECT "SELECT id, name, pcs_ts(created_at) AS created_at, created_by"

static struct db_stmt create_company = {
	.name = "pcs_create_company",
	DB_FROM(COMPANY_SELECT, "pcs_create_company($1, $2)"),
	DB_COLS(company_cols),
};

static struct db_stmt list_companies = {
	.name = "pcs_list_companies",
	DB_FROM(COMPANY_SELECT, "pcs_list_companies($1)"),
	DB_COLS(company_cols),
	.param_oid = { [0] = DB_OID_TEXT_ARRAY },
};

struct db_stmt *const db_company_statements[] = { &create_company, &list_companies, NULL };

static void company_row(
    const struct store_result *r, int row, const struct db_stmt *st, struct db_company *out)
{
	out->id = db_col_str(r, row, st, CO_ID);
	out->name = db_col_str(r, row, st, CO_NAME);
	out->created_at = db_col_str(r, row, st, CO_CREATED_AT);
	out->created_by = db_col_str(r, row, st, CO_CREATED_BY);
}

static void deliver_company(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	struct db_company co;

	company_row(res, 0, p->st, &co);
	p->cb.company(c, &co);
}

void db_company_create(struct call *c, const char *name, db_company_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, name);
	db_param_text(&p, db_actor(c));
	db_run(c, DB_RUN_CALL, &create_company, &p, deliver_company, (union db_cb){ .company = cb },
	    NULL);
}

static void deliver_companies(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res);
	struct db_company *rows = db_rows_alloc(c, n, sizeof(*rows));

	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		company_row(res, (int)i, p->st, &rows[i]);
	p->cb.companies(c, rows, n);
	free(rows);
}

void db_company_list(struct call *c, const char *const *only, size_t n, db_companies_cb cb)
{
	struct db_params p = { 0 };
	struct db_array a = { NULL, 0 };

	if (db_param_names(c, &p, &a, only, n) != 0)
		return;
	db_run(c, DB_RUN_CALL, &list_companies, &p, deliver_companies,
	    (union db_cb){ .companies = cb }, NULL);
	db_array_free(&a);
}
