/* CreateCompany, ListCompanies. */
#include <stdlib.h>

#include "db.h"
#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"

static void company_msg(const struct db_company *row, Pcsecret__V1__Company *out)
{
	pcsecret__v1__company__init(out);
	out->id = (char *)row->id;
	out->name = (char *)row->name;
	out->created_at = (char *)row->created_at;
	out->created_by = (char *)row->created_by;
}

static void on_created(struct call *c, const struct db_company *row)
{
	Pcsecret__V1__CreateCompanyReply rep = PCSECRET__V1__CREATE_COMPANY_REPLY__INIT;
	Pcsecret__V1__Company co;

	company_msg(row, &co);
	rep.company = &co;
	call_reply(c, &rep.base);
}

void handle_create_company(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateCompanyRequest *in, Pcsecret__V1__CreateCompanyReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (call_authorize(c, NULL, NULL) != 0)
		return;
	if (!name_valid(in->name)) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "company name \"%.128s\" is invalid: use 1 to 128 "
		    "lowercase letters, digits, '-', '_' or '.'",
		    in->name);
		return;
	}
	call_set_target(c, in->name, NULL, NULL);
	db_company_create(c, in->name, on_created);
}

static void on_listed(struct call *c, const struct db_company *rows, size_t n)
{
	Pcsecret__V1__ListCompaniesReply rep = PCSECRET__V1__LIST_COMPANIES_REPLY__INIT;
	Pcsecret__V1__Company *items = NULL;
	Pcsecret__V1__Company **ptrs = NULL;

	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (size_t i = 0; i < n; i++)
		company_msg(&rows[i], &items[i]);
	rep.companies = ptrs;
	rep.n_companies = n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_companies(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListCompaniesRequest *in, Pcsecret__V1__ListCompaniesReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const struct principal *p = call_principal(c);
	const char *names[AUTHZ_MAX_COMPANIES];

	(void)in;
	if (call_authorize(c, NULL, NULL) != 0)
		return;
	/* Admins see every company; anyone else only theirs. */
	if (p->role == ROLE_ADMIN) {
		db_company_list(c, NULL, 0, on_listed);
		return;
	}
	for (size_t i = 0; i < p->ncompanies; i++)
		names[i] = p->companies[i];
	db_company_list(c, names, p->ncompanies, on_listed);
}
