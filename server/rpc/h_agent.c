/* CreateAgent, DescribeAgent, SetAgentEnv, UnsetAgentEnv: agent configuration, no values. */
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "db.h"
#include "dispatch.h"
#include "envname.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "server.h"

#define AGENT_MAX_GROUPS 256

static int authorize_agent(struct call *c, const char *company, const char *agent)
{
	char target[2 * PCS_NAME_MAX + 8];

	if (h_company(c, company) != 0)
		return -1;
	if (!name_valid(agent)) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "agent name \"%.128s\" is invalid: use 1 to 128 "
		    "lowercase letters, digits, '-', '_' or '.'",
		    agent);
		return -1;
	}
	snprintf(target, sizeof(target), "agent:%s", agent);
	call_set_target(c, NULL, target, NULL);
	return 0;
}

/* An AgentInfo with its bindings; env points into storage agent_msg_free frees. */
struct agent_msg {
	Pcsecret__V1__AgentInfo msg;
	Pcsecret__V1__EnvBinding *bindings;
	Pcsecret__V1__SecretRef *refs;
	Pcsecret__V1__EnvBinding **ptrs;
};

static void agent_msg_free(struct agent_msg *m)
{
	free(m->bindings);
	free(m->refs);
	free(m->ptrs);
}

/* The agent's own fields (all ListAgents shows). */
static void agent_info(const struct db_agent *a, Pcsecret__V1__AgentInfo *out)
{
	pcsecret__v1__agent_info__init(out);
	out->id = (char *)a->id;
	out->company = (char *)a->company;
	out->name = (char *)a->name;
	out->uid = a->uid;
	out->created_at = (char *)a->created_at;
	out->created_by = (char *)a->created_by;
}

/* The agent with its bindings, into m. 0, or -1 with the call failed. */
static int agent_msg(struct call *c, const struct db_agent *a, struct agent_msg *m)
{
	size_t n = a->nbindings;

	memset(m, 0, sizeof(*m));
	agent_info(a, &m->msg);
	m->bindings = calloc(n + 1, sizeof(*m->bindings));
	m->refs = calloc(n + 1, sizeof(*m->refs));
	m->ptrs = calloc(n + 1, sizeof(*m->ptrs));
	if (m->bindings == NULL || m->refs == NULL || m->ptrs == NULL) {
		agent_msg_free(m);
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return -1;
	}
	for (size_t k = 0; k < n; k++) {
		pcsecret__v1__env_binding__init(&m->bindings[k]);
		pcsecret__v1__secret_ref__init(&m->refs[k]);
		m->bindings[k].env_name = (char *)a->bindings[k].env_name;
		m->refs[k].company = (char *)a->bindings[k].ref_company;
		m->refs[k].name = (char *)a->bindings[k].ref_name;
		m->refs[k].version = a->bindings[k].ref_version;
		m->bindings[k].ref = &m->refs[k];
		m->ptrs[k] = &m->bindings[k];
	}
	m->msg.env = m->ptrs;
	m->msg.n_env = n;
	return 0;
}

/* Every agent rpc replies with the agent as it is after the call. */
#define AGENT_REPLY(fn, Rep, REP_INIT) \
	static void fn(struct call *c, const struct db_agent *a) \
	{ \
		Pcsecret__V1__##Rep rep = REP_INIT; \
		struct agent_msg m; \
		if (agent_msg(c, a, &m) != 0) \
			return; \
		rep.agent = &m.msg; \
		call_reply(c, &rep.base); \
		agent_msg_free(&m); \
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
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "uid %u cannot be an agent: %s is always an admin", uid,
		    uid == 0 ? "root" : "the daemon's own uid");
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

/* The groups uid is in now, from the system's group database, into groups; their number. */
static size_t agent_uid_groups(uint32_t uid, gid_t groups[AGENT_MAX_GROUPS])
{
	int n = AGENT_MAX_GROUPS;
	struct passwd pw, *found = NULL;
	char pwbuf[4096];

	/*
	 * A uid without an account has no groups but its own number. This reads the local group
	 * database on the loop thread: agent creation is rare, and the rule it guards is also
	 * enforced when the agent connects (principal_from_rows), so this is for a clear error.
	 */
	if (getpwuid_r((uid_t)uid, &pw, pwbuf, sizeof(pwbuf), &found) != 0 || found == NULL)
		return 0;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		n = AGENT_MAX_GROUPS; /* more than that: check the first ones */
	return n < 0 ? 0 : (size_t)n;
}

void handle_create_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateAgentRequest *in, Pcsecret__V1__CreateAgentReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);
	gid_t groups[AGENT_MAX_GROUPS];
	size_t ngroups;

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	if (agent_uid_usable(c, in->uid) != 0)
		return;
	ngroups = agent_uid_groups(in->uid, groups);
	db_agent_create(c, in->company, in->name, in->uid, groups, ngroups, reply_create);
}

void handle_describe_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DescribeAgentRequest *in, Pcsecret__V1__DescribeAgentReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	db_agent_describe(c, in->company, in->name, reply_describe);
}

void handle_set_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SetAgentEnvRequest *in, Pcsecret__V1__SetAgentEnvReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const Pcsecret__V1__SecretRef *ref = in->ref;
	struct db_ref target;
	pcs_error name_err;

	if (authorize_agent(c, in->company, in->agent) != 0)
		return;
	/* Not a name that decides what the agent loads or runs (LD_PRELOAD, ...): envname.c. */
	if (envname_check(in->env_name, &name_err) != 0) {
		call_fail(c, name_err.code, "%s", name_err.message);
		return;
	}
	if (ref == NULL ||
	    (ref->secret_id[0] == '\0' && (ref->company[0] == '\0' || ref->name[0] == '\0'))) {
		call_fail(
		    c, PCS_INVALID_ARGUMENT, "a reference needs a secret id or company and name");
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
	target.secret_id = ref->secret_id;
	target.company = ref->company;
	target.name = ref->name;
	target.version = ref->version;
	db_agent_set_env(c, in->company, in->agent, in->env_name, &target, reply_set);
}

void handle_unset_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__UnsetAgentEnvRequest *in, Pcsecret__V1__UnsetAgentEnvReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_agent(c, in->company, in->agent) != 0)
		return;
	if (!env_name_valid(in->env_name)) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "\"%.64s\" is not a valid environment variable name", in->env_name);
		return;
	}
	db_agent_unset_env(c, in->company, in->agent, in->env_name, reply_unset);
}

static void reply_list(struct call *c, const struct db_agent *rows, size_t n)
{
	Pcsecret__V1__ListAgentsReply rep = PCSECRET__V1__LIST_AGENTS_REPLY__INIT;
	Pcsecret__V1__AgentInfo *items = NULL;
	Pcsecret__V1__AgentInfo **ptrs = NULL;

	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (size_t i = 0; i < n; i++)
		agent_info(&rows[i], &items[i]);
	rep.agents = ptrs;
	rep.n_agents = n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_agents(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListAgentsRequest *in, Pcsecret__V1__ListAgentsReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (h_company(c, in->company) != 0)
		return;
	db_agent_list(c, in->company, reply_list);
}

static void reply_deleted(struct call *c)
{
	Pcsecret__V1__DeleteAgentReply rep = PCSECRET__V1__DELETE_AGENT_REPLY__INIT;

	call_reply(c, &rep.base);
}

void handle_delete_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DeleteAgentRequest *in, Pcsecret__V1__DeleteAgentReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_agent(c, in->company, in->name) != 0)
		return;
	db_agent_delete(c, in->company, in->name, reply_deleted);
}
