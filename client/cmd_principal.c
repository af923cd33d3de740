/* pcctl principal add, list and remove: the rules that map Unix uids and gids to roles. */
#include <inttypes.h>
#include <stdio.h>

#include "pcctl_cmd.h"
#include "render.h"

static void rule_match(const Pcsecret__V1__PrincipalRule *p, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s %u", p->match, p->unix_id);
}

static int cmd_principal_add(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__AddPrincipalRequest req = PCSECRET__V1__ADD_PRINCIPAL_REQUEST__INIT;
	const char *uid = ctl_value(args, "uid"), *gid = ctl_value(args, "gid");
	const char *role = ctl_value(args, "role"), *company = ctl_value(args, "company");
	const Pcsecret__V1__PrincipalRule *p;
	char match[64];
	int r;

	if ((uid == NULL) == (gid == NULL))
		return ctl_usage_fail(
		    ctl, err, "principal add needs exactly one of --uid and --gid");
	if (role == NULL)
		return ctl_usage_fail(ctl, err, "principal add needs --role ROLE");
	req.match = (char *)(uid != NULL ? "uid" : "gid");
	if ((r = ctl_parse_u32(ctl, uid != NULL ? "--uid" : "--gid", uid != NULL ? uid : gid,
	         &req.unix_id, err)) != 0)
		return r;
	req.role = (char *)role;
	req.company = (char *)(company != NULL ? company : "");
	if ((r = ctl_call(ctl, "AddPrincipal", &req.base, err)) != 0)
		return r;
	if ((p = ((const Pcsecret__V1__AddPrincipalReply *)ctl->reply)->principal) == NULL)
		return ctl_no_reply_field("AddPrincipal", err);
	if (ctl->json)
		return ctl_emit(j_rule(p), err);
	rule_match(p, match, sizeof(match));
	printf("added principal %" PRIu64 ": ", p->id);
	out_safe(stdout, match);
	printf(" -> ");
	out_safe(stdout, p->role);
	if (p->company[0] != '\0') {
		printf(" of ");
		out_safe(stdout, p->company);
	}
	printf("\n");
	return 0;
}

static json_t *rule_json(const void *items, size_t i)
{
	return j_rule(((Pcsecret__V1__PrincipalRule *const *)items)[i]);
}

static int rule_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__PrincipalRule *p = ((Pcsecret__V1__PrincipalRule *const *)items)[i];
	char id[24], match[64];

	(void)snprintf(id, sizeof(id), "%" PRIu64, p->id);
	rule_match(p, match, sizeof(match));
	return table_add(t, id, match, p->role, p->company, p->agent, p->created_at, p->created_by);
}

static int cmd_principal_list(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListPrincipalsRequest req = PCSECRET__V1__LIST_PRINCIPALS_REQUEST__INIT;
	const Pcsecret__V1__ListPrincipalsReply *rep;
	int r;

	(void)args;
	if ((r = ctl_call(ctl, "ListPrincipals", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__ListPrincipalsReply *)ctl->reply;
	if (ctl->json)
		return ctl_emit_array(rep->principals, rep->n_principals, rule_json, err);
	return ctl_print_table(
	    table_new(7, "ID", "MATCH", "ROLE", "COMPANY", "AGENT", "CREATED", "CREATED BY"),
	    rep->principals, rep->n_principals, rule_row, err);
}

static int cmd_principal_remove(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__RemovePrincipalRequest req = PCSECRET__V1__REMOVE_PRINCIPAL_REQUEST__INIT;
	int r;

	if ((r = ctl_parse_u64(ctl, "principal id", args->pos[0], INT64_MAX, &req.id, err)) != 0 ||
	    (r = ctl_call(ctl, "RemovePrincipal", &req.base, err)) != 0)
		return r;
	if (ctl->json)
		return ctl_emit(json_pack("{s:I}", "removed", (json_int_t)req.id), err);
	printf("removed principal %" PRIu64 "\n", req.id);
	return 0;
}

const struct ctl_command ctl_principal_commands[] = {
	{ "principal", "add", "(--uid UID | --gid GID) --role ROLE [--company NAME]",
	    "map a Unix uid or gid to a role", 0, 0,
	    { { "uid", CTL_VALUE }, { "gid", CTL_VALUE }, { "role", CTL_VALUE },
	        { "company", CTL_VALUE } },
	    cmd_principal_add },
	{ "principal", "list", "", "list principal rules", 0, 0, CTL_NO_OPTS, cmd_principal_list },
	{ "principal", "remove", "ID", "remove a principal rule", 1, 1, CTL_NO_OPTS,
	    cmd_principal_remove },
	{ .group = NULL },
};
