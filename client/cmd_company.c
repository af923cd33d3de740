/* pcctl company create and list. */
#include <stdio.h>

#include "pcctl_cmd.h"
#include "render.h"

static int cmd_company_create(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__CreateCompanyRequest req = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	const Pcsecret__V1__Company *c;
	int r;

	req.name = args->pos[0];
	if ((r = ctl_call(ctl, "CreateCompany", &req.base, err)) != 0)
		return r;
	if ((c = ((const Pcsecret__V1__CreateCompanyReply *)ctl->reply)->company) == NULL)
		return ctl_no_reply_field("CreateCompany", err);
	if (ctl->json)
		return ctl_emit(j_company(c), err);
	printf("created company ");
	out_safe(stdout, c->name);
	printf(" (id ");
	out_safe(stdout, c->id);
	printf(")\n");
	return 0;
}

static json_t *company_json(const void *items, size_t i)
{
	return j_company(((Pcsecret__V1__Company *const *)items)[i]);
}

static int company_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__Company *c = ((Pcsecret__V1__Company *const *)items)[i];

	return table_add(t, c->name, c->id, c->created_at, c->created_by);
}

static int cmd_company_list(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListCompaniesRequest req = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	const Pcsecret__V1__ListCompaniesReply *rep;
	int r;

	(void)args;
	if ((r = ctl_call(ctl, "ListCompanies", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__ListCompaniesReply *)ctl->reply;
	if (ctl->json)
		return ctl_emit_array(rep->companies, rep->n_companies, company_json, err);
	return ctl_print_table(table_new(4, "NAME", "ID", "CREATED", "CREATED BY"), rep->companies,
	    rep->n_companies, company_row, err);
}

const struct ctl_command ctl_company_commands[] = {
	{ "company", "create", "NAME", "create a company", 1, 1, CTL_NO_OPTS, cmd_company_create },
	{ "company", "list", "", "list companies", 0, 0, CTL_NO_OPTS, cmd_company_list },
	{ .group = NULL },
};
