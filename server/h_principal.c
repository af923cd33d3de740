/* AddPrincipal, ListPrincipals, RemovePrincipal: admin only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "rows.h"
#include "server.h"

static void on_added(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__AddPrincipalReply rep = PCSECRET__V1__ADD_PRINCIPAL_REPLY__INIT;
	Pcsecret__V1__PrincipalRule rule;

	rows_principal(res, 0, &rule);
	rep.principal = &rule;
	call_reply(c, &rep.base);
}

void handle_add_principal(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__AddPrincipalRequest *in,
    Pcsecret__V1__AddPrincipalReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[5];
	char id[16];

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
		    "CreateAgent)", in->role);
		return;
	}
	if (in->company[0] != '\0' && !name_valid(in->company)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "company name \"%.128s\" is invalid", in->company);
		return;
	}
	if (in->unix_id == UINT32_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "%s %u is no process's id", in->match, in->unix_id);
		return;
	}
	if (strcmp(in->match, "uid") == 0 &&
	    (in->unix_id == 0 || in->unix_id == (uint32_t)call_server(c)->self_uid)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "uid %u is %s, which is always an admin; a rule "
		    "for it would have no effect", in->unix_id,
		    in->unix_id == 0 ? "root" : "the daemon's own uid");
		return;
	}
	snprintf(id, sizeof(id), "%u", in->unix_id);
	call_set_target(c, in->company, NULL, NULL);
	values[0] = in->match;
	values[1] = id;
	values[2] = in->role;
	values[3] = in->company;
	values[4] = call_actor(c);
	call_db_text(c, "SELECT " ROWS_PRINCIPAL_COLS " FROM pcs_add_principal($1, $2, $3, $4, $5)",
	    values, 5, on_added);
}

static void on_listed(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__ListPrincipalsReply rep = PCSECRET__V1__LIST_PRINCIPALS_REPLY__INIT;
	int n = store_result_ntuples(res);
	Pcsecret__V1__PrincipalRule *items = NULL;
	Pcsecret__V1__PrincipalRule **ptrs = NULL;

	if (h_repeated(c, (size_t)n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (int i = 0; i < n; i++)
		rows_principal(res, i, &items[i]);
	rep.principals = ptrs;
	rep.n_principals = (size_t)n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_principals(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListPrincipalsRequest *in,
    Pcsecret__V1__ListPrincipalsReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[1] = { NULL };

	(void)in;
	if (call_authorize(c, NULL, NULL) != 0)
		return;
	call_db_text(c, "SELECT " ROWS_PRINCIPAL_COLS " FROM pcs_principal_rows($1)", values, 1,
	    on_listed);
}

static void on_removed(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__RemovePrincipalReply rep = PCSECRET__V1__REMOVE_PRINCIPAL_REPLY__INIT;

	(void)res;
	call_reply(c, &rep.base);
}

void handle_remove_principal(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__RemovePrincipalRequest *in,
    Pcsecret__V1__RemovePrincipalReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[1];
	char id[24];

	if (call_authorize(c, NULL, NULL) != 0)
		return;
	if (in->id == 0 || in->id > INT64_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "principal id must be a positive number");
		return;
	}
	snprintf(id, sizeof(id), "%llu", (unsigned long long)in->id);
	values[0] = id;
	call_db_text(c, "SELECT id FROM pcs_remove_principal($1)", values, 1, on_removed);
}
