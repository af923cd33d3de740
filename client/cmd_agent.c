/* pcctl agent list, delete, create, show, set-env and unset-env. */
#include <stdio.h>

#include "pcctl_cmd.h"
#include "ref.h"
#include "render.h"

/* The agent and its bindings: what show, set-env and unset-env all answer with. */
static int print_agent(struct ctl *ctl, const Pcsecret__V1__AgentInfo *a, pcs_error *err)
{
	char ref[REF_TEXT_MAX];
	size_t i;

	if (ctl->json)
		return ctl_emit(j_agent(a), err);
	out_kvf(stdout, "agent", "%s/%s", a->company, a->name);
	out_kv(stdout, "id", a->id);
	out_kvf(stdout, "uid", "%u", a->uid);
	out_kv(stdout, "created", a->created_at);
	out_kv(stdout, "created by", a->created_by);
	printf("env\n");
	if (a->n_env == 0)
		printf("  (none: the agent can resolve nothing)\n");
	for (i = 0; i < a->n_env; i++) {
		ref_text(a->env[i]->ref, ref, sizeof(ref));
		printf("  ");
		out_safe(stdout, a->env[i]->env_name);
		printf(" -> %s\n", ref);
	}
	return 0;
}

static json_t *agent_json(const void *items, size_t i)
{
	return j_agent(((Pcsecret__V1__AgentInfo *const *)items)[i]);
}

static int agent_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__AgentInfo *a = ((Pcsecret__V1__AgentInfo *const *)items)[i];
	char uid[16];

	(void)snprintf(uid, sizeof(uid), "%u", a->uid);
	return table_add(t, a->name, uid, a->created_at, a->created_by);
}

static int cmd_agent_list(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListAgentsRequest req = PCSECRET__V1__LIST_AGENTS_REQUEST__INIT;
	const Pcsecret__V1__ListAgentsReply *rep;
	int r;

	req.company = args->pos[0];
	if ((r = ctl_call(ctl, "ListAgents", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__ListAgentsReply *)ctl->reply;
	if (ctl->json)
		return ctl_emit_array(rep->agents, rep->n_agents, agent_json, err);
	return ctl_print_table(table_new(4, "NAME", "UID", "CREATED", "CREATED BY"), rep->agents,
	    rep->n_agents, agent_row, err);
}

static int cmd_agent_delete(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__DeleteAgentRequest req = PCSECRET__V1__DELETE_AGENT_REQUEST__INIT;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	if ((r = ctl_call(ctl, "DeleteAgent", &req.base, err)) != 0)
		return r;
	if (ctl->json)
		return ctl_emit(json_pack("{s:s}", "deleted", args->pos[0]), err);
	printf("deleted agent %s/%s, its bindings and its principal\n", path.company, path.name);
	return 0;
}

static int cmd_agent_create(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__CreateAgentRequest req = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	const char *uid = ctl_value(args, "uid");
	const Pcsecret__V1__AgentInfo *a;
	struct ctl_path path;
	int r;

	if (uid == NULL)
		return ctl_usage_fail(ctl, err, "agent create needs --uid UID");
	if ((r = ctl_parse_u32(ctl, "--uid", uid, &req.uid, err)) != 0 ||
	    (r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	if ((r = ctl_call(ctl, "CreateAgent", &req.base, err)) != 0)
		return r;
	if ((a = ((const Pcsecret__V1__CreateAgentReply *)ctl->reply)->agent) == NULL)
		return ctl_no_reply_field("CreateAgent", err);
	if (ctl->json)
		return ctl_emit(j_agent(a), err);
	printf("created agent %s/%s (uid %u, id ", path.company, path.name, a->uid);
	out_safe(stdout, a->id);
	printf(")\n");
	return 0;
}

static int cmd_agent_show(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__DescribeAgentRequest req = PCSECRET__V1__DESCRIBE_AGENT_REQUEST__INIT;
	const Pcsecret__V1__AgentInfo *a;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	if ((r = ctl_call(ctl, "DescribeAgent", &req.base, err)) != 0)
		return r;
	if ((a = ((const Pcsecret__V1__DescribeAgentReply *)ctl->reply)->agent) == NULL)
		return ctl_no_reply_field("DescribeAgent", err);
	return print_agent(ctl, a, err);
}

static int cmd_agent_set_env(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__SetAgentEnvRequest req = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef sref = PCSECRET__V1__SECRET_REF__INIT;
	const Pcsecret__V1__AgentInfo *a;
	struct ctl_path path;
	struct pcs_ref ref;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.agent, err)) != 0)
		return r;
	if (!env_name_valid(args->pos[1]))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "\"%.64s\" is not a valid environment "
		    "variable name (letters, digits and '_', not starting with a digit)",
		    args->pos[1]);
	if ((r = ref_parse(args->pos[2], &ref, err)) != 0)
		return r;
	/* A binding outlives any one secret id; operators name secrets by company and name. */
	if (ref.secret_id[0] != '\0')
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "agent environment references must "
		    "name the secret as pcs:COMPANY/NAME[@N], not by id");
	sref.company = ref.company;
	sref.name = ref.name;
	sref.version = ref.version;
	req.env_name = args->pos[1];
	req.ref = &sref;
	if ((r = ctl_call(ctl, "SetAgentEnv", &req.base, err)) != 0)
		return r;
	if ((a = ((const Pcsecret__V1__SetAgentEnvReply *)ctl->reply)->agent) == NULL)
		return ctl_no_reply_field("SetAgentEnv", err);
	return print_agent(ctl, a, err);
}

static int cmd_agent_unset_env(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__UnsetAgentEnvRequest req = PCSECRET__V1__UNSET_AGENT_ENV_REQUEST__INIT;
	const Pcsecret__V1__AgentInfo *a;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.agent, err)) != 0)
		return r;
	req.env_name = args->pos[1];
	if ((r = ctl_call(ctl, "UnsetAgentEnv", &req.base, err)) != 0)
		return r;
	if ((a = ((const Pcsecret__V1__UnsetAgentEnvReply *)ctl->reply)->agent) == NULL)
		return ctl_no_reply_field("UnsetAgentEnv", err);
	return print_agent(ctl, a, err);
}

const struct ctl_command ctl_agent_commands[] = {
	{ "agent", "list", "COMPANY", "list a company's agents", 1, 1, CTL_NO_OPTS,
	    cmd_agent_list },
	{ "agent", "delete", "COMPANY/AGENT", "delete an agent, its bindings and its principal", 1,
	    1, CTL_NO_OPTS, cmd_agent_delete },
	{ "agent", "create", "COMPANY/AGENT --uid UID", "create an agent run as Unix uid UID", 1, 1,
	    { { "uid", CTL_VALUE } }, cmd_agent_create },
	{ "agent", "show", "COMPANY/AGENT", "an agent and its environment bindings", 1, 1,
	    CTL_NO_OPTS, cmd_agent_show },
	{ "agent", "set-env", "COMPANY/AGENT ENV_NAME REF", "bind ENV_NAME to pcs:COMPANY/NAME[@N]",
	    3, 3, CTL_NO_OPTS, cmd_agent_set_env },
	{ "agent", "unset-env", "COMPANY/AGENT ENV_NAME", "remove a binding", 2, 2, CTL_NO_OPTS,
	    cmd_agent_unset_env },
	{ .group = NULL },
};
