/* AddPrincipal, ListPrincipals, RemovePrincipal: admin only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "server.h"

static void rule_msg(const struct db_principal_rule *row, Pcsecret__V1__PrincipalRule *out)
{
	pcsecret__v1__principal_rule__init(out);
	out->id = row->id;
	out->match = (char *)row->match;
	out->unix_id = row->unix_id;
	out->role = (char *)row->role;
	out->company = (char *)row->company;
	out->agent = (char *)row->agent;
	out->created_at = (char *)row->created_at;
	out->created_by = (char *)row->created_by;
}

static void on_added(struct call *c, const struct db_principal_rule *row)
{
	Pcsecret__V1__AddPrincipalReply rep = PCSECRET__V1__ADD_PRINCIPAL_REPLY__INIT;
	Pcsecret__V1__PrincipalRule rule;

	rule_msg(row, &rule);
	rep.principal = &rule;
	call_reply(c, &rep.base);
}

void handle_add_principal(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__AddPrincipalRequest *in, Pcsecret__V1__AddPrincipalReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (call_authorize(c, NULL, NULL) != 0)
		return;
	if (strcmp(in->match, "uid") != 0 && strcmp(in->match, "gid") != 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "match must be uid or gid");
		return;
	}
	if (strcmp(in->role, "admin") != 0 && strcmp(in->role, "operator") != 0 &&
	    strcmp(in->role, "launcher") != 0) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "role \"%.32s\" is not one of admin, operator, launcher (agents are made with "
		    "CreateAgent)",
		    in->role);
		return;
	}
	if (in->company[0] != '\0' && !name_valid(in->company)) {
		call_fail(
		    c, PCS_INVALID_ARGUMENT, "company name \"%.128s\" is invalid", in->company);
		return;
	}
	if (in->unix_id == UINT32_MAX) {
		call_fail(
		    c, PCS_INVALID_ARGUMENT, "%s %u is no process's id", in->match, in->unix_id);
		return;
	}
	if (strcmp(in->match, "uid") == 0 &&
	    (in->unix_id == 0 || in->unix_id == (uint32_t)call_server(c)->self_uid)) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "uid %u is %s, which is always an admin; a rule "
		    "for it would have no effect",
		    in->unix_id, in->unix_id == 0 ? "root" : "the daemon's own uid");
		return;
	}
	call_set_target(c, in->company, NULL, NULL);
	db_principal_add(c, in->match, in->unix_id, in->role, in->company, on_added);
}

static void on_listed(struct call *c, const struct db_principal_rule *rows, size_t n)
{
	Pcsecret__V1__ListPrincipalsReply rep = PCSECRET__V1__LIST_PRINCIPALS_REPLY__INIT;
	Pcsecret__V1__PrincipalRule *items = NULL;
	Pcsecret__V1__PrincipalRule **ptrs = NULL;

	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (size_t i = 0; i < n; i++)
		rule_msg(&rows[i], &items[i]);
	rep.principals = ptrs;
	rep.n_principals = n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_principals(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListPrincipalsRequest *in,
    Pcsecret__V1__ListPrincipalsReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);

	(void)in;
	if (call_authorize(c, NULL, NULL) != 0)
		return;
	db_principal_list(c, on_listed);
}

static void on_removed(struct call *c)
{
	Pcsecret__V1__RemovePrincipalReply rep = PCSECRET__V1__REMOVE_PRINCIPAL_REPLY__INIT;

	call_reply(c, &rep.base);
}

void handle_remove_principal(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__RemovePrincipalRequest *in,
    Pcsecret__V1__RemovePrincipalReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (call_authorize(c, NULL, NULL) != 0)
		return;
	if (in->id == 0 || in->id > INT64_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "principal id must be a positive number");
		return;
	}
	db_principal_remove(c, in->id, on_removed);
}
