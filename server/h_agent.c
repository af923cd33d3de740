/* CreateAgent, DescribeAgent, SetAgentEnv, UnsetAgentEnv: agent configuration, no values. */
#include <stdio.h>
#include <stdlib.h>

#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "rows.h"

static int authorize_agent(struct call *c, const char *company,
    const char *agent)
{
	char target[2 * PCS_NAME_MAX + 8];

	if (h_company(c, company) != 0)
		return -1;
	if (!name_valid(agent)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "agent name \"%.128s\" is invalid: use 1 to 128 "
		    "lowercase letters, digits, '-', '_' or '.'", agent);
		return -1;
	}
	snprintf(target, sizeof(target), "agent:%s", agent);
	call_set_target(c, NULL, target, NULL);
	return 0;
}

/* Every agent rpc replies with the agent as pcs_describe_agent returns it. */
#define AGENT_REPLY(fn, Rep, REP_INIT)                                         \
	static void fn(struct call *c, const struct store_result *res)           \
	{                                                                        \
		Pcsecret__V1__##Rep rep = REP_INIT;                                  \
		struct rows_agent a;                                                 \
		if (rows_agent(res, &a) != 0) {                                      \
			call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");           \
			return;                                                          \
		}                                                                    \
		rep.agent = &a.msg;                                                  \
		call_reply(c, &rep.base);                                            \
		rows_agent_free(&a);                                                 \
	}

AGENT_REPLY(reply_create, CreateAgentReply, PCSECRET__V1__CREATE_AGENT_REPLY__INIT)
AGENT_REPLY(reply_describe, DescribeAgentReply, PCSECRET__V1__DESCRIBE_AGENT_REPLY__INIT)
AGENT_REPLY(reply_set, SetAgentEnvReply, PCSECRET__V1__SET_AGENT_ENV_REPLY__INIT)
AGENT_REPLY(reply_unset, UnsetAgentEnvReply, PCSECRET__V1__UNSET_AGENT_ENV_REPLY__INIT)

PCS_HANDLER(create_agent, CreateAgentRequest, CreateAgentReply)
{
	HANDLER_PROLOGUE(c);
	const char *values[4];
	char uid[16];

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	if (in->uid == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "an agent needs its own uid; uid 0 is root, which is always an admin");
		return;
	}
	snprintf(uid, sizeof(uid), "%u", in->uid);
	values[0] = in->company;
	values[1] = in->name;
	values[2] = uid;
	values[3] = call_actor(c);
	call_db_text(c, "SELECT " ROWS_AGENT_COLS " FROM pcs_create_agent($1, $2, $3, $4)", values,
	    4, 1, reply_create);
}

PCS_HANDLER(describe_agent, DescribeAgentRequest, DescribeAgentReply)
{
	HANDLER_PROLOGUE(c);
	const char *values[2];

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	values[0] = in->company;
	values[1] = in->name;
	call_db_text(c, "SELECT " ROWS_AGENT_COLS " FROM pcs_describe_agent($1, $2)", values, 2, 1,
	    reply_describe);
}

PCS_HANDLER(set_agent_env, SetAgentEnvRequest, SetAgentEnvReply)
{
	HANDLER_PROLOGUE(c);
	const Pcsecret__V1__SecretRef *ref = in->ref;
	const char *values[8];
	char version[16];

	if (authorize_agent(c, in->company, in->agent) != 0)
		return;
	if (!env_name_valid(in->env_name)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "\"%.64s\" is not a valid environment variable "
		    "name ([A-Za-z_][A-Za-z0-9_]*)", in->env_name);
		return;
	}
	if (ref == NULL || (ref->secret_id[0] == '\0' && (ref->company[0] == '\0' ||
	    ref->name[0] == '\0'))) {
		call_fail(c, PCS_INVALID_ARGUMENT, "a reference needs a secret id or company and name");
		return;
	}
	if (ref->secret_id[0] != '\0' ? !uuid_valid(ref->secret_id) :
	    (!name_valid(ref->company) || !name_valid(ref->name))) {
		call_fail(c, PCS_INVALID_ARGUMENT, "the reference names an invalid secret");
		return;
	}
	if (ref->version > INT32_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "version %u is out of range", ref->version);
		return;
	}
	snprintf(version, sizeof(version), "%u", ref->version);
	values[0] = in->company;
	values[1] = in->agent;
	values[2] = in->env_name;
	values[3] = ref->secret_id[0] ? ref->secret_id : NULL;
	values[4] = ref->company;
	values[5] = ref->name;
	values[6] = ref->version ? version : NULL;
	values[7] = call_actor(c);
	call_db_text(c, "SELECT " ROWS_AGENT_COLS
	    " FROM pcs_set_agent_env($1, $2, $3, $4, $5, $6, $7, $8)", values, 8, 1, reply_set);
}

PCS_HANDLER(unset_agent_env, UnsetAgentEnvRequest, UnsetAgentEnvReply)
{
	HANDLER_PROLOGUE(c);
	const char *values[3];

	if (authorize_agent(c, in->company, in->agent) != 0)
		return;
	if (!env_name_valid(in->env_name)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "\"%.64s\" is not a valid environment variable name",
		    in->env_name);
		return;
	}
	values[0] = in->company;
	values[1] = in->agent;
	values[2] = in->env_name;
	call_db_text(c, "SELECT " ROWS_AGENT_COLS " FROM pcs_unset_agent_env($1, $2, $3)", values,
	    3, 1, reply_unset);
}

static void reply_list(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__ListAgentsReply rep = PCSECRET__V1__LIST_AGENTS_REPLY__INIT;
	int n = store_result_ntuples(res);
	Pcsecret__V1__AgentInfo *items = NULL;
	Pcsecret__V1__AgentInfo **ptrs = NULL;

	if (h_repeated(c, (size_t)n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (int i = 0; i < n; i++) {
		pcsecret__v1__agent_info__init(&items[i]);
		items[i].id = (char *)rows_str(res, i, 0);
		items[i].company = (char *)rows_str(res, i, 1);
		items[i].name = (char *)rows_str(res, i, 2);
		items[i].uid = rows_u32(res, i, 3);
		items[i].created_at = (char *)rows_str(res, i, 4);
		items[i].created_by = (char *)rows_str(res, i, 5);
	}
	rep.agents = ptrs;
	rep.n_agents = (size_t)n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

PCS_HANDLER(list_agents, ListAgentsRequest, ListAgentsReply)
{
	HANDLER_PROLOGUE(c);
	const char *values[1];

	if (h_company(c, in->company) != 0)
		return;
	values[0] = in->company;
	call_db_text(c, "SELECT " ROWS_AGENT_COLS " FROM pcs_list_agents($1)", values, 1, 1,
	    reply_list);
}

static void reply_deleted(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__DeleteAgentReply rep = PCSECRET__V1__DELETE_AGENT_REPLY__INIT;

	(void)res;
	call_reply(c, &rep.base);
}

PCS_HANDLER(delete_agent, DeleteAgentRequest, DeleteAgentReply)
{
	HANDLER_PROLOGUE(c);
	const char *values[2];

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	values[0] = in->company;
	values[1] = in->name;
	call_db_text(c, "SELECT id FROM pcs_delete_agent($1, $2)", values, 2, 1, reply_deleted);
}
