/* CreateAgent, DescribeAgent, SetAgentEnv, UnsetAgentEnv: agent configuration, no values. */
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "dispatch.h"
#include "envname.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "rows.h"
#include "server.h"

#define AGENT_MAX_GROUPS 256

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

/*
 * Uids that can never be an agent: root and the daemon's own uid are always admins, the
 * caller cannot give itself an agent identity (an operator would then read values as that
 * agent), and (uid_t)-1 is no process's uid. Fails the call and returns -1 for those.
 */
static int agent_uid_usable(struct call *c, uint32_t uid)
{
	const struct principal *p = call_principal(c);

	if (uid == 0 || uid == (uint32_t)call_server(c)->self_uid) {
		call_fail(c, PCS_INVALID_ARGUMENT, "uid %u cannot be an agent: %s is always an admin",
		    uid, uid == 0 ? "root" : "the daemon's own uid");
		return -1;
	}
	if (uid == UINT32_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "uid %u cannot be an agent: no process can have it", uid);
		return -1;
	}
	if (uid == p->uid) {
		call_fail(c, PCS_PERMISSION_DENIED,
		    "uid %u is the caller's own uid: no principal can give itself an agent identity",
		    uid);
		return -1;
	}
	return 0;
}

/* "{g1,g2,...}": the groups uid is in now, from the system's group database. */
#define AGENT_GIDS_TEXT (AGENT_MAX_GROUPS * 12 + 4)

static void agent_uid_groups(uint32_t uid, char *buf, size_t size)
{
	gid_t groups[AGENT_MAX_GROUPS];
	int n = AGENT_MAX_GROUPS;
	size_t o = 0;
	struct passwd pw, *found = NULL;
	char pwbuf[4096];

	snprintf(buf, size, "{}");
	/*
	 * A uid without an account has no groups but its own number. This reads the local group
	 * database on the loop thread: agent creation is rare, and the rule it guards is also
	 * enforced when the agent connects (principal_from_rows), so this is for a clear error.
	 */
	if (getpwuid_r((uid_t)uid, &pw, pwbuf, sizeof(pwbuf), &found) != 0 || found == NULL)
		return;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		n = AGENT_MAX_GROUPS; /* more than that: check the first ones */
	buf[o++] = '{';
	for (int i = 0; i < n && o + 13 < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%u", i ? "," : "", (unsigned)groups[i]);
	snprintf(buf + o, size - o, "}");
}

void handle_create_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateAgentRequest *in,
    Pcsecret__V1__CreateAgentReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[5];
	char uid[16], gids[AGENT_GIDS_TEXT];

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	if (agent_uid_usable(c, in->uid) != 0)
		return;
	agent_uid_groups(in->uid, gids, sizeof(gids));
	snprintf(uid, sizeof(uid), "%u", in->uid);
	values[0] = in->company;
	values[1] = in->name;
	values[2] = uid;
	values[3] = call_actor(c);
	values[4] = gids;
	call_db_text(c, "SELECT " ROWS_AGENT_COLS " FROM pcs_create_agent($1, $2, $3, $4, $5)",
	    values, 5, reply_create);
}

void handle_describe_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DescribeAgentRequest *in,
    Pcsecret__V1__DescribeAgentReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[2];

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	values[0] = in->company;
	values[1] = in->name;
	call_db_text(c, "SELECT " ROWS_AGENT_COLS " FROM pcs_describe_agent($1, $2)", values, 2,
	    reply_describe);
}

void handle_set_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SetAgentEnvRequest *in,
    Pcsecret__V1__SetAgentEnvReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const Pcsecret__V1__SecretRef *ref = in->ref;
	pcs_error name_err;
	const char *values[8];
	char version[16];

	if (authorize_agent(c, in->company, in->agent) != 0)
		return;
	/* Not a name that decides what the agent loads or runs (LD_PRELOAD, ...): envname.c. */
	if (envname_check(in->env_name, &name_err) != 0) {
		call_fail(c, name_err.code, "%s", name_err.message);
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
	    " FROM pcs_set_agent_env($1, $2, $3, $4, $5, $6, $7, $8)", values, 8, reply_set);
}

void handle_unset_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__UnsetAgentEnvRequest *in,
    Pcsecret__V1__UnsetAgentEnvReply_Closure closure, void *closure_data)
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
	    3, reply_unset);
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

void handle_list_agents(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListAgentsRequest *in,
    Pcsecret__V1__ListAgentsReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[1];

	if (h_company(c, in->company) != 0)
		return;
	values[0] = in->company;
	call_db_text(c, "SELECT " ROWS_AGENT_COLS " FROM pcs_list_agents($1)", values, 1,
	    reply_list);
}

static void reply_deleted(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__DeleteAgentReply rep = PCSECRET__V1__DELETE_AGENT_REPLY__INIT;

	(void)res;
	call_reply(c, &rep.base);
}

void handle_delete_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DeleteAgentRequest *in,
    Pcsecret__V1__DeleteAgentReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[2];

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	values[0] = in->company;
	values[1] = in->name;
	call_db_text(c, "SELECT id FROM pcs_delete_agent($1, $2)", values, 2, reply_deleted);
}
