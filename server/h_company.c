/* CreateCompany, ListCompanies. */
#include <stdlib.h>

#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "rows.h"

static void on_created(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__CreateCompanyReply rep = PCSECRET__V1__CREATE_COMPANY_REPLY__INIT;
	Pcsecret__V1__Company co;

	rows_company(res, 0, &co);
	rep.company = &co;
	call_reply(c, &rep.base);
}

void handle_create_company(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateCompanyRequest *in,
    Pcsecret__V1__CreateCompanyReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[2];

	if (call_authorize(c, NULL, NULL) != 0)
		return;
	if (!name_valid(in->name)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "company name \"%.128s\" is invalid: use 1 to 128 "
		    "lowercase letters, digits, '-', '_' or '.'", in->name);
		return;
	}
	call_set_target(c, in->name, NULL, NULL);
	values[0] = in->name;
	values[1] = call_actor(c);
	call_db_text(c, "SELECT " ROWS_COMPANY_COLS " FROM pcs_create_company($1, $2)", values, 2,
	    on_created);
}

static void on_listed(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__ListCompaniesReply rep = PCSECRET__V1__LIST_COMPANIES_REPLY__INIT;
	int n = store_result_ntuples(res);
	Pcsecret__V1__Company *items = NULL;
	Pcsecret__V1__Company **ptrs = NULL;

	if (h_repeated(c, (size_t)n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (int i = 0; i < n; i++)
		rows_company(res, i, &items[i]);
	rep.companies = ptrs;
	rep.n_companies = (size_t)n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_companies(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListCompaniesRequest *in,
    Pcsecret__V1__ListCompaniesReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const struct principal *p = call_principal(c);
	const char *names[AUTHZ_MAX_COMPANIES], *values[1];
	char *only = NULL;

	(void)in;
	if (call_authorize(c, NULL, NULL) != 0)
		return;
	if (p->role != ROLE_ADMIN) {
		for (size_t i = 0; i < p->ncompanies; i++)
			names[i] = p->companies[i];
		if ((only = rows_text_array(names, p->ncompanies)) == NULL) {
			call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
	}
	values[0] = only;
	call_db_text(c, "SELECT " ROWS_COMPANY_COLS " FROM pcs_list_companies($1)", values, 1,
	    on_listed);
	free(only);
}
