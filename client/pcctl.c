/*
 * pcctl: the operators' command line for pcsecretd.
 *
 * Every command prints one result on stdout (a table or lines, or one JSON document with
 * --json). Failures print one line, "pcctl: STATUS: message", on stderr and exit 1; usage
 * errors exit 2. Secret values are read by value_input.c and never appear in argv or output.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyfile.h"
#include "output.h"
#include "pbwipe.h"
#include "ref.h"
#include "render.h"
#include "rpc.h"
#include "status.h"
#include "value_input.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

struct ctl {
	const char *socket;
	int json;
	int help;          /* --help given to a command: print its usage and succeed */
	int usage;         /* the failure is a usage error: exit 2 with the usage text */
	pcs_client *client;
};

struct command {
	const char *group;
	const char *name;   /* NULL: the group is the whole command */
	const char *args;
	const char *summary;
	int (*run)(struct ctl *, int, char **, pcs_error *);
};

/* A command's options; every one takes a value. */
struct opt {
	const char *name;
	const char **value;
	int *flag;      /* a flag without a value (--force): set to 1 when given */
};

static int usage_fail(struct ctl *ctl, pcs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
usage_fail(struct ctl *ctl, pcs_error *err, const char *fmt, ...)
{
	va_list ap;

	ctl->usage = 1;
	if (err != NULL) {
		err->code = PCS_INVALID_ARGUMENT;
		va_start(ap, fmt);
		(void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return -PCS_INVALID_ARGUMENT;
}

/*
 * Splits argv (after the command words) into options and npos positional arguments, with
 * options allowed anywhere. --json, --socket and --help work after the command too.
 */
static int
parse_args(struct ctl *ctl, int argc, char **argv, const struct opt *opts, int npos,
    char **pos, pcs_error *err)
{
	const struct opt *o;
	const char *arg, *val, *eq;
	size_t nlen;
	int i, n = 0, only_pos = 0;

	for (i = 0; i < argc; i++) {
		arg = argv[i];
		if (only_pos || arg[0] != '-' || arg[1] == '\0') {
			if (n == npos)
				return usage_fail(ctl, err, "unexpected argument \"%s\"", arg);
			pos[n++] = argv[i];
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			ctl->help = 1;
			return 0;
		}
		if (strcmp(arg, "--json") == 0) {
			ctl->json = 1;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0)
			return usage_fail(ctl, err, "unknown option %s", arg);
		eq = strchr(arg, '=');
		nlen = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		for (o = opts; o != NULL && o->name != NULL; o++)
			if (strlen(o->name) == nlen && strncmp(arg + 2, o->name, nlen) == 0)
				break;
		if ((o == NULL || o->name == NULL) && !(nlen == 6 &&
		    strncmp(arg + 2, "socket", 6) == 0))
			return usage_fail(ctl, err, "unknown option %.*s", (int)nlen + 2, arg);
		if (o != NULL && o->name != NULL && o->flag != NULL) {
			if (eq != NULL)
				return usage_fail(ctl, err, "option --%s takes no value", o->name);
			*o->flag = 1;
			continue;
		}
		if (eq != NULL)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return usage_fail(ctl, err, "option --%.*s needs a value", (int)nlen,
			    arg + 2);
		if (o == NULL || o->name == NULL)
			ctl->socket = val;
		else
			*o->value = val;
	}
	if (n < npos)
		return usage_fail(ctl, err, "missing arguments");
	return 0;
}

static int
parse_u64(struct ctl *ctl, const char *what, const char *s, uint64_t max, uint64_t *out,
    pcs_error *err)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (s[0] < '0' || s[0] > '9' || (v = strtoull(s, &end, 10), errno != 0) ||
	    *end != '\0' || v > max)
		return usage_fail(ctl, err, "%s \"%s\" is not a number from 0 to %" PRIu64, what, s,
		    max);
	*out = (uint64_t)v;
	return 0;
}

static int
parse_u32(struct ctl *ctl, const char *what, const char *s, uint32_t *out, pcs_error *err)
{
	uint64_t v = 0;
	int r;

	if ((r = parse_u64(ctl, what, s, UINT32_MAX, &v, err)) != 0)
		return r;
	*out = (uint32_t)v;
	return 0;
}

static int
ctl_connect(struct ctl *ctl, pcs_error *err)
{
	pcs_options opts = { 0 };

	if (ctl->client != NULL)
		return 0;
	opts.socket_path = ctl->socket;
	return pcs_connect(&opts, &ctl->client, err);
}

/* Connects if needed and calls method; *reply is freed by the caller with reply_free. */
static int
ctl_call(struct ctl *ctl, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply, pcs_error *err)
{
	int r;

	*reply = NULL;
	if ((r = ctl_connect(ctl, err)) != 0)
		return r;
	return pcs_rpc_call(ctl->client, method, req, reply, err);
}

static void
reply_free(ProtobufCMessage *reply)
{
	if (reply != NULL)
		protobuf_c_message_free_unpacked(reply, &pbwipe_allocator);
}

static int
emit(json_t *doc, pcs_error *err)
{
	if (json_emit(doc) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot write the JSON output");
	return 0;
}

static int
no_reply_field(const char *method, pcs_error *err)
{
	return pcs_fail(err, PCS_INTERNAL, "pcsecretd sent a %s reply without its result",
	    method);
}

static int
print_table(struct table *t, pcs_error *err)
{
	if (t == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	table_print(t, stdout);
	table_free(t);
	return 0;
}

static const Pcsecret__V1__HelloReply *
ctl_hello(struct ctl *ctl, pcs_error *err, int *r)
{
	const Pcsecret__V1__HelloReply *h;

	if ((*r = ctl_connect(ctl, err)) != 0)
		return NULL;
	if ((h = pcs_rpc_hello(ctl->client)) == NULL)
		*r = pcs_fail(err, PCS_INTERNAL, "no handshake reply");
	return h;
}

static int
cmd_status(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	const Pcsecret__V1__HelloReply *h;
	const Pcsecret__V1__Principal *p;
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 0, NULL, err)) != 0 || ctl->help)
		return r;
	if ((h = ctl_hello(ctl, err, &r)) == NULL)
		return r;
	p = h->principal;
	if (ctl->json)
		return emit(json_pack("{s:o, s:o, s:o, s:I, s:o, s:o}",
		    "socket", json_text(pcs_rpc_socket_path(ctl->client)),
		    "server_version", json_text(h->server_version),
		    "instance_id", json_text(h->instance_id),
		    "protocol_version", (json_int_t)h->protocol_version,
		    "client_version", json_text(PCS_VERSION),
		    "principal", j_principal(p)), err);
	out_kv(stdout, "socket", pcs_rpc_socket_path(ctl->client));
	out_kv(stdout, "server", h->server_version);
	out_kv(stdout, "instance", h->instance_id);
	out_kvf(stdout, "protocol", "%u", h->protocol_version);
	out_kv(stdout, "client", PCS_VERSION);
	if (p != NULL)
		out_kvf(stdout, "principal", "%s (%s)", p->role[0] != '\0' ? p->role : "-",
		    p->rule[0] != '\0' ? p->rule : "no rule");
	else
		out_kv(stdout, "principal", "-");
	return 0;
}

static int
cmd_whoami(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	const Pcsecret__V1__HelloReply *h;
	const Pcsecret__V1__Principal *p;
	char *companies;
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 0, NULL, err)) != 0 || ctl->help)
		return r;
	if ((h = ctl_hello(ctl, err, &r)) == NULL)
		return r;
	if ((p = h->principal) == NULL)
		return no_reply_field("Hello", err);
	if (ctl->json)
		return emit(j_principal(p), err);
	if ((companies = join_strings(p->companies, p->n_companies)) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	out_kv(stdout, "role", p->role);
	out_kv(stdout, "companies", companies);
	out_kv(stdout, "agent", p->agent);
	out_kv(stdout, "rule", p->rule);
	out_kvf(stdout, "uid", "%u", p->uid);
	out_kvf(stdout, "gid", "%u", p->gid);
	out_kvf(stdout, "pid", "%u", p->pid);
	free(companies);
	return 0;
}

static int
cmd_company_create(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__CreateCompanyRequest req = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateCompanyReply *rep;
	ProtobufCMessage *msg = NULL;
	char *pos[1];
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 1, pos, err)) != 0 || ctl->help)
		goto out;
	req.name = pos[0];
	if ((r = ctl_call(ctl, "CreateCompany", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__CreateCompanyReply *)msg;
	if (rep->company == NULL) {
		r = no_reply_field("CreateCompany", err);
		goto out;
	}
	if (ctl->json) {
		r = emit(j_company(rep->company), err);
		goto out;
	}
	printf("created company ");
	out_safe(stdout, rep->company->name);
	printf(" (id ");
	out_safe(stdout, rep->company->id);
	printf(")\n");
	r = 0;
out:
	reply_free(msg);
	return r;
}

static int
cmd_company_list(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__ListCompaniesRequest req = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	Pcsecret__V1__ListCompaniesReply *rep;
	ProtobufCMessage *msg = NULL;
	struct table *t = NULL;
	json_t *a;
	size_t i;
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 0, NULL, err)) != 0 || ctl->help)
		goto out;
	if ((r = ctl_call(ctl, "ListCompanies", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__ListCompaniesReply *)msg;
	if (ctl->json) {
		a = json_array();
		for (i = 0; a != NULL && i < rep->n_companies; i++)
			(void)json_array_append_new(a, j_company(rep->companies[i]));
		r = emit(a, err);
		goto out;
	}
	t = table_new(4, "NAME", "ID", "CREATED", "CREATED BY");
	for (i = 0; t != NULL && i < rep->n_companies; i++) {
		const Pcsecret__V1__Company *c = rep->companies[i];

		if (table_add(t, c->name, c->id, c->created_at, c->created_by) != 0) {
			table_free(t);
			t = NULL;
		}
	}
	r = print_table(t, err);
	t = NULL;
out:
	table_free(t);
	reply_free(msg);
	return r;
}

static int
cmd_secret_create(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__CreateSecretRequest req = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__CreateSecretReply *rep;
	ProtobufCMessage *msg = NULL;
	const char *description = NULL, *from_file = NULL;
	const struct opt opts[] = {
		{ "description", &description, NULL }, { "from-file", &from_file, NULL }, { NULL, NULL, NULL }
	};
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1], prompt[320];
	unsigned char *value = NULL;
	size_t len = 0;
	char *pos[1];
	int r;

	if ((r = parse_args(ctl, argc, argv, opts, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	(void)snprintf(prompt, sizeof(prompt), "Value for %s/%s (input hidden): ", company, name);
	/* Connect first: a missing daemon should not cost the operator typing the value. */
	if ((r = ctl_connect(ctl, err)) != 0 ||
	    (r = value_read(from_file, prompt, &value, &len, err)) != 0)
		goto out;
	req.company = company;
	req.name = name;
	req.description = (char *)(description != NULL ? description : "");
	req.value.data = value;
	req.value.len = len;
	if ((r = ctl_call(ctl, "CreateSecret", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__CreateSecretReply *)msg;
	if (rep->secret == NULL) {
		r = no_reply_field("CreateSecret", err);
		goto out;
	}
	if (ctl->json) {
		r = emit(j_secret(rep->secret, 0), err);
		goto out;
	}
	printf("created secret %s/%s (version %u, id ", company, name,
	    rep->secret->current_version);
	out_safe(stdout, rep->secret->id);
	printf(")\n");
	r = 0;
out:
	value_free(value);
	reply_free(msg);
	return r;
}

static int
cmd_secret_update(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__UpdateSecretRequest req = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__UpdateSecretReply *rep;
	ProtobufCMessage *msg = NULL;
	const char *from_file = NULL, *expected = NULL, *token = NULL;
	const struct opt opts[] = {
		{ "from-file", &from_file, NULL }, { "expected-version", &expected, NULL },
		{ "idempotency-token", &token, NULL }, { NULL, NULL, NULL }
	};
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1], prompt[320];
	unsigned char *value = NULL;
	size_t len = 0;
	char *pos[1];
	int r;

	if ((r = parse_args(ctl, argc, argv, opts, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	if (expected != NULL &&
	    (r = parse_u32(ctl, "--expected-version", expected, &req.expected_version, err)) != 0)
		goto out;
	(void)snprintf(prompt, sizeof(prompt), "New value for %s/%s (input hidden): ", company,
	    name);
	if ((r = ctl_connect(ctl, err)) != 0 ||
	    (r = value_read(from_file, prompt, &value, &len, err)) != 0)
		goto out;
	req.company = company;
	req.name = name;
	req.value.data = value;
	req.value.len = len;
	req.idempotency_token = (char *)(token != NULL ? token : "");
	if ((r = ctl_call(ctl, "UpdateSecret", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__UpdateSecretReply *)msg;
	if (rep->secret == NULL) {
		r = no_reply_field("UpdateSecret", err);
		goto out;
	}
	if (ctl->json) {
		r = emit(j_secret(rep->secret, 0), err);
		goto out;
	}
	printf("updated secret %s/%s: version %u is current\n", company, name,
	    rep->secret->current_version);
	r = 0;
out:
	value_free(value);
	reply_free(msg);
	return r;
}

static int
cmd_secret_list(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__ListSecretsRequest req = PCSECRET__V1__LIST_SECRETS_REQUEST__INIT;
	Pcsecret__V1__ListSecretsReply *rep;
	ProtobufCMessage *msg = NULL;
	struct table *t = NULL;
	char ver[16];
	char *pos[1];
	json_t *a;
	size_t i;
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 1, pos, err)) != 0 || ctl->help)
		goto out;
	req.company = pos[0];
	if ((r = ctl_call(ctl, "ListSecrets", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__ListSecretsReply *)msg;
	if (ctl->json) {
		a = json_array();
		for (i = 0; a != NULL && i < rep->n_secrets; i++)
			(void)json_array_append_new(a, j_secret(rep->secrets[i], 0));
		r = emit(a, err);
		goto out;
	}
	t = table_new(5, "NAME", "VERSION", "UPDATED", "CREATED BY", "DESCRIPTION");
	for (i = 0; t != NULL && i < rep->n_secrets; i++) {
		const Pcsecret__V1__SecretInfo *s = rep->secrets[i];

		(void)snprintf(ver, sizeof(ver), "%u", s->current_version);
		if (table_add(t, s->name, ver, s->updated_at, s->created_by,
		    s->description) != 0) {
			table_free(t);
			t = NULL;
		}
	}
	r = print_table(t, err);
	t = NULL;
out:
	table_free(t);
	reply_free(msg);
	return r;
}

static int
cmd_secret_show(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__DescribeSecretRequest req = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	const Pcsecret__V1__SecretInfo *s;
	ProtobufCMessage *msg = NULL;
	struct table *t = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1], ver[16];
	char *pos[1];
	size_t i;
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	req.company = company;
	req.name = name;
	if ((r = ctl_call(ctl, "DescribeSecret", &req.base, &msg, err)) != 0)
		goto out;
	if ((s = ((Pcsecret__V1__DescribeSecretReply *)msg)->secret) == NULL) {
		r = no_reply_field("DescribeSecret", err);
		goto out;
	}
	if (ctl->json) {
		r = emit(j_secret(s, 1), err);
		goto out;
	}
	out_kvf(stdout, "secret", "%s/%s", company, name);
	out_kv(stdout, "id", s->id);
	out_kv(stdout, "description", s->description);
	out_kvf(stdout, "current", "version %u", s->current_version);
	out_kv(stdout, "created", s->created_at);
	out_kv(stdout, "created by", s->created_by);
	out_kv(stdout, "updated", s->updated_at);
	printf("\n");
	t = table_new(5, "VERSION", "STATE", "CREATED", "CREATED BY", "KEY");
	for (i = 0; t != NULL && i < s->n_versions; i++) {
		const Pcsecret__V1__VersionInfo *v = s->versions[i];

		(void)snprintf(ver, sizeof(ver), "%u", v->version);
		if (table_add(t, ver, v->state, v->created_at, v->created_by, v->key_id) != 0) {
			table_free(t);
			t = NULL;
		}
	}
	r = print_table(t, err);
	t = NULL;
out:
	table_free(t);
	reply_free(msg);
	return r;
}

static int
print_agent(struct ctl *ctl, const Pcsecret__V1__AgentInfo *a, pcs_error *err)
{
	char ref[REF_TEXT_MAX];
	size_t i;

	if (ctl->json)
		return emit(j_agent(a), err);
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

static int
cmd_agent_create(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__CreateAgentRequest req = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	const Pcsecret__V1__AgentInfo *a;
	ProtobufCMessage *msg = NULL;
	const char *uid = NULL;
	const struct opt opts[] = { { "uid", &uid, NULL }, { NULL, NULL, NULL } };
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	char *pos[1];
	int r;

	if ((r = parse_args(ctl, argc, argv, opts, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if (uid == NULL) {
		r = usage_fail(ctl, err, "agent create needs --uid UID");
		goto out;
	}
	if ((r = parse_u32(ctl, "--uid", uid, &req.uid, err)) != 0 ||
	    (r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	req.company = company;
	req.name = name;
	if ((r = ctl_call(ctl, "CreateAgent", &req.base, &msg, err)) != 0)
		goto out;
	if ((a = ((Pcsecret__V1__CreateAgentReply *)msg)->agent) == NULL) {
		r = no_reply_field("CreateAgent", err);
		goto out;
	}
	if (ctl->json) {
		r = emit(j_agent(a), err);
		goto out;
	}
	printf("created agent %s/%s (uid %u, id ", company, name, a->uid);
	out_safe(stdout, a->id);
	printf(")\n");
	r = 0;
out:
	reply_free(msg);
	return r;
}

static int
cmd_agent_show(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__DescribeAgentRequest req = PCSECRET__V1__DESCRIBE_AGENT_REQUEST__INIT;
	const Pcsecret__V1__AgentInfo *a;
	ProtobufCMessage *msg = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	char *pos[1];
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	req.company = company;
	req.name = name;
	if ((r = ctl_call(ctl, "DescribeAgent", &req.base, &msg, err)) != 0)
		goto out;
	if ((a = ((Pcsecret__V1__DescribeAgentReply *)msg)->agent) == NULL) {
		r = no_reply_field("DescribeAgent", err);
		goto out;
	}
	r = print_agent(ctl, a, err);
out:
	reply_free(msg);
	return r;
}

static int
cmd_agent_set_env(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__SetAgentEnvRequest req = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef sref = PCSECRET__V1__SECRET_REF__INIT;
	const Pcsecret__V1__AgentInfo *a;
	ProtobufCMessage *msg = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	struct pcs_ref ref;
	char *pos[3];
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 3, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	if (!env_name_valid(pos[1])) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "\"%.64s\" is not a valid environment "
		    "variable name (letters, digits and '_', not starting with a digit)", pos[1]);
		goto out;
	}
	if ((r = ref_parse(pos[2], &ref, err)) != 0)
		goto out;
	/* A binding outlives any one secret id; operators name secrets by company and name. */
	if (ref.secret_id[0] != '\0') {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "agent environment references must name "
		    "the secret as pcs:COMPANY/NAME[@N], not by id");
		goto out;
	}
	sref.company = ref.company;
	sref.name = ref.name;
	sref.version = ref.version;
	req.company = company;
	req.agent = name;
	req.env_name = pos[1];
	req.ref = &sref;
	if ((r = ctl_call(ctl, "SetAgentEnv", &req.base, &msg, err)) != 0)
		goto out;
	if ((a = ((Pcsecret__V1__SetAgentEnvReply *)msg)->agent) == NULL) {
		r = no_reply_field("SetAgentEnv", err);
		goto out;
	}
	r = print_agent(ctl, a, err);
out:
	reply_free(msg);
	return r;
}

static int
cmd_agent_unset_env(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__UnsetAgentEnvRequest req = PCSECRET__V1__UNSET_AGENT_ENV_REQUEST__INIT;
	const Pcsecret__V1__AgentInfo *a;
	ProtobufCMessage *msg = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	char *pos[2];
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 2, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	req.company = company;
	req.agent = name;
	req.env_name = pos[1];
	if ((r = ctl_call(ctl, "UnsetAgentEnv", &req.base, &msg, err)) != 0)
		goto out;
	if ((a = ((Pcsecret__V1__UnsetAgentEnvReply *)msg)->agent) == NULL) {
		r = no_reply_field("UnsetAgentEnv", err);
		goto out;
	}
	r = print_agent(ctl, a, err);
out:
	reply_free(msg);
	return r;
}

static int
cmd_secret_delete(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__DeleteSecretRequest req = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;
	const Pcsecret__V1__DeleteSecretReply *rep;
	ProtobufCMessage *msg = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	char *pos[1];
	int force = 0, r;
	const struct opt opts[] = { { "force", NULL, &force }, { NULL, NULL, NULL } };
	json_t *a;

	if ((r = parse_args(ctl, argc, argv, opts, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	req.company = company;
	req.name = name;
	req.force = force != 0;
	if ((r = ctl_call(ctl, "DeleteSecret", &req.base, &msg, err)) != 0)
		goto out;
	rep = (const Pcsecret__V1__DeleteSecretReply *)msg;
	if (ctl->json) {
		a = json_array();
		for (size_t i = 0; a != NULL && i < rep->n_unbound; i++)
			(void)json_array_append_new(a, json_text(rep->unbound[i]));
		r = emit(json_pack("{s:s, s:s, s:o}", "deleted", pos[0], "status", "deleted",
		    "unbound", a), err);
		goto out;
	}
	printf("deleted secret %s/%s\n", company, name);
	for (size_t i = 0; i < rep->n_unbound; i++) {
		printf("removed binding ");
		out_safe(stdout, rep->unbound[i]);
		printf("\n");
	}
	r = 0;
out:
	reply_free(msg);
	return r;
}

static int
cmd_agent_list(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__ListAgentsRequest req = PCSECRET__V1__LIST_AGENTS_REQUEST__INIT;
	const Pcsecret__V1__ListAgentsReply *rep;
	ProtobufCMessage *msg = NULL;
	struct table *t = NULL;
	char uid[16];
	char *pos[1];
	json_t *a;
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 1, pos, err)) != 0 || ctl->help)
		goto out;
	req.company = pos[0];
	if ((r = ctl_call(ctl, "ListAgents", &req.base, &msg, err)) != 0)
		goto out;
	rep = (const Pcsecret__V1__ListAgentsReply *)msg;
	if (ctl->json) {
		a = json_array();
		for (size_t i = 0; a != NULL && i < rep->n_agents; i++)
			(void)json_array_append_new(a, j_agent(rep->agents[i]));
		r = emit(a, err);
		goto out;
	}
	t = table_new(4, "NAME", "UID", "CREATED", "CREATED BY");
	for (size_t i = 0; t != NULL && i < rep->n_agents; i++) {
		const Pcsecret__V1__AgentInfo *ag = rep->agents[i];

		(void)snprintf(uid, sizeof(uid), "%u", ag->uid);
		if (table_add(t, ag->name, uid, ag->created_at, ag->created_by) != 0) {
			table_free(t);
			t = NULL;
		}
	}
	r = print_table(t, err);
	t = NULL;
out:
	table_free(t);
	reply_free(msg);
	return r;
}

static int
cmd_agent_delete(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__DeleteAgentRequest req = PCSECRET__V1__DELETE_AGENT_REQUEST__INIT;
	ProtobufCMessage *msg = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	char *pos[1];
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = ref_parse_path(pos[0], company, name, err)) != 0)
		goto out;
	req.company = company;
	req.name = name;
	if ((r = ctl_call(ctl, "DeleteAgent", &req.base, &msg, err)) != 0)
		goto out;
	if (ctl->json) {
		r = emit(json_pack("{s:s}", "deleted", pos[0]), err);
		goto out;
	}
	printf("deleted agent %s/%s, its bindings and its principal\n", company, name);
	r = 0;
out:
	reply_free(msg);
	return r;
}

static void
rule_match(const Pcsecret__V1__PrincipalRule *p, char *buf, size_t size)
{
	(void)snprintf(buf, size, "%s %u", p->match, p->unix_id);
}

static int
cmd_principal_add(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__AddPrincipalRequest req = PCSECRET__V1__ADD_PRINCIPAL_REQUEST__INIT;
	const Pcsecret__V1__PrincipalRule *p;
	ProtobufCMessage *msg = NULL;
	const char *uid = NULL, *gid = NULL, *role = NULL, *company = NULL;
	const struct opt opts[] = {
		{ "uid", &uid, NULL }, { "gid", &gid, NULL }, { "role", &role, NULL }, { "company", &company, NULL },
		{ NULL, NULL, NULL }
	};
	char match[64];
	int r;

	if ((r = parse_args(ctl, argc, argv, opts, 0, NULL, err)) != 0 || ctl->help)
		goto out;
	if ((uid == NULL) == (gid == NULL)) {
		r = usage_fail(ctl, err, "principal add needs exactly one of --uid and --gid");
		goto out;
	}
	if (role == NULL) {
		r = usage_fail(ctl, err, "principal add needs --role ROLE");
		goto out;
	}
	req.match = (char *)(uid != NULL ? "uid" : "gid");
	if ((r = parse_u32(ctl, uid != NULL ? "--uid" : "--gid", uid != NULL ? uid : gid,
	    &req.unix_id, err)) != 0)
		goto out;
	req.role = (char *)role;
	req.company = (char *)(company != NULL ? company : "");
	if ((r = ctl_call(ctl, "AddPrincipal", &req.base, &msg, err)) != 0)
		goto out;
	if ((p = ((Pcsecret__V1__AddPrincipalReply *)msg)->principal) == NULL) {
		r = no_reply_field("AddPrincipal", err);
		goto out;
	}
	if (ctl->json) {
		r = emit(j_rule(p), err);
		goto out;
	}
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
	r = 0;
out:
	reply_free(msg);
	return r;
}

static int
cmd_principal_list(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__ListPrincipalsRequest req = PCSECRET__V1__LIST_PRINCIPALS_REQUEST__INIT;
	Pcsecret__V1__ListPrincipalsReply *rep;
	ProtobufCMessage *msg = NULL;
	struct table *t = NULL;
	char id[24], match[64];
	json_t *a;
	size_t i;
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 0, NULL, err)) != 0 || ctl->help)
		goto out;
	if ((r = ctl_call(ctl, "ListPrincipals", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__ListPrincipalsReply *)msg;
	if (ctl->json) {
		a = json_array();
		for (i = 0; a != NULL && i < rep->n_principals; i++)
			(void)json_array_append_new(a, j_rule(rep->principals[i]));
		r = emit(a, err);
		goto out;
	}
	t = table_new(7, "ID", "MATCH", "ROLE", "COMPANY", "AGENT", "CREATED", "CREATED BY");
	for (i = 0; t != NULL && i < rep->n_principals; i++) {
		const Pcsecret__V1__PrincipalRule *p = rep->principals[i];

		(void)snprintf(id, sizeof(id), "%" PRIu64, p->id);
		rule_match(p, match, sizeof(match));
		if (table_add(t, id, match, p->role, p->company, p->agent, p->created_at,
		    p->created_by) != 0) {
			table_free(t);
			t = NULL;
		}
	}
	r = print_table(t, err);
	t = NULL;
out:
	table_free(t);
	reply_free(msg);
	return r;
}

static int
cmd_principal_remove(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__RemovePrincipalRequest req = PCSECRET__V1__REMOVE_PRINCIPAL_REQUEST__INIT;
	ProtobufCMessage *msg = NULL;
	char *pos[1];
	int r;

	if ((r = parse_args(ctl, argc, argv, NULL, 1, pos, err)) != 0 || ctl->help)
		goto out;
	if ((r = parse_u64(ctl, "principal id", pos[0], INT64_MAX, &req.id, err)) != 0)
		goto out;
	if ((r = ctl_call(ctl, "RemovePrincipal", &req.base, &msg, err)) != 0)
		goto out;
	if (ctl->json) {
		r = emit(json_pack("{s:I}", "removed", (json_int_t)req.id), err);
		goto out;
	}
	printf("removed principal %" PRIu64 "\n", req.id);
	r = 0;
out:
	reply_free(msg);
	return r;
}

static int
cmd_audit_list(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	Pcsecret__V1__ListAuditRequest req = PCSECRET__V1__LIST_AUDIT_REQUEST__INIT;
	Pcsecret__V1__ListAuditReply *rep;
	ProtobufCMessage *msg = NULL;
	const char *company = NULL, *limit = NULL;
	const struct opt opts[] = { { "company", &company, NULL }, { "limit", &limit, NULL }, { NULL, NULL, NULL } };
	struct table *t = NULL;
	char call[24], peer[48];
	json_t *a;
	size_t i;
	int r;

	if ((r = parse_args(ctl, argc, argv, opts, 0, NULL, err)) != 0 || ctl->help)
		goto out;
	if (limit != NULL && (r = parse_u32(ctl, "--limit", limit, &req.limit, err)) != 0)
		goto out;
	req.company = (char *)(company != NULL ? company : "");
	if ((r = ctl_call(ctl, "ListAudit", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__ListAuditReply *)msg;
	if (ctl->json) {
		a = json_array();
		for (i = 0; a != NULL && i < rep->n_entries; i++)
			(void)json_array_append_new(a, j_audit(rep->entries[i]));
		r = emit(a, err);
		goto out;
	}
	t = table_new(10, "AT", "INSTANCE", "CALL", "PEER UID/GID/PID", "PRINCIPAL", "METHOD",
	    "SECRET", "VERSION", "STATUS", "MESSAGE");
	for (i = 0; t != NULL && i < rep->n_entries; i++) {
		const Pcsecret__V1__AuditEntry *e = rep->entries[i];
		char secret[2 * PCS_NAME_MAX + 16];

		(void)snprintf(call, sizeof(call), "%" PRIu64, e->call_id);
		(void)snprintf(peer, sizeof(peer), "%u/%u/%u", e->peer_uid, e->peer_gid,
		    e->peer_pid);
		/* The daemon may already write the secret as COMPANY/NAME. */
		if (strchr(e->secret, '/') != NULL || e->company[0] == '\0' ||
		    e->secret[0] == '\0')
			(void)snprintf(secret, sizeof(secret), "%.256s", e->secret);
		else
			(void)snprintf(secret, sizeof(secret), "%.128s/%.128s", e->company,
			    e->secret);
		if (table_add(t, e->at, e->instance_id, call, peer, e->principal, e->method,
		    secret, e->version, e->status, e->message) != 0) {
			table_free(t);
			t = NULL;
		}
	}
	r = print_table(t, err);
	t = NULL;
out:
	table_free(t);
	reply_free(msg);
	return r;
}

static int
cmd_keys_init(struct ctl *ctl, int argc, char **argv, pcs_error *err)
{
	const char *path = NULL;
	const struct opt opts[] = { { "out", &path, NULL }, { NULL, NULL, NULL } };
	int r;

	if ((r = parse_args(ctl, argc, argv, opts, 0, NULL, err)) != 0 || ctl->help)
		return r;
	if (path == NULL)
		return usage_fail(ctl, err, "keys init needs --out FILE");
	if ((r = keyfile_create(path, err)) != 0)
		return r;
	if (ctl->json)
		return emit(json_pack("{s:o, s:s}", "path", json_text(path), "mode", "0600"), err);
	printf("wrote a new master key to %s (mode 0600)\n", path);
	return 0;
}

static const struct command commands[] = {
	{ "status", NULL, "", "the server's version and instance, and your principal",
	    cmd_status },
	{ "whoami", NULL, "", "your role, companies, agent, matching rule and uid/gid/pid",
	    cmd_whoami },
	{ "company", "create", "NAME", "create a company", cmd_company_create },
	{ "company", "list", "", "list companies", cmd_company_list },
	{ "secret", "create", "COMPANY/NAME [--description TEXT] [--from-file FILE]",
	    "create a secret (version 1)", cmd_secret_create },
	{ "secret", "update", "COMPANY/NAME [--from-file FILE] [--expected-version N] "
	    "[--idempotency-token T]", "add a version and make it current", cmd_secret_update },
	{ "secret", "list", "COMPANY", "list a company's secrets", cmd_secret_list },
	{ "secret", "show", "COMPANY/NAME", "a secret's metadata and versions",
	    cmd_secret_show },
	{ "secret", "delete", "COMPANY/NAME [--force]", "delete a secret (refused while agents "
	    "use it, unless --force, which also removes their bindings)", cmd_secret_delete },
	{ "agent", "list", "COMPANY", "list a company's agents", cmd_agent_list },
	{ "agent", "delete", "COMPANY/AGENT", "delete an agent, its bindings and its principal",
	    cmd_agent_delete },
	{ "agent", "create", "COMPANY/AGENT --uid UID", "create an agent run as Unix uid UID",
	    cmd_agent_create },
	{ "agent", "show", "COMPANY/AGENT", "an agent and its environment bindings",
	    cmd_agent_show },
	{ "agent", "set-env", "COMPANY/AGENT ENV_NAME REF",
	    "bind ENV_NAME to pcs:COMPANY/NAME[@N]", cmd_agent_set_env },
	{ "agent", "unset-env", "COMPANY/AGENT ENV_NAME", "remove a binding",
	    cmd_agent_unset_env },
	{ "principal", "add", "(--uid UID | --gid GID) --role ROLE [--company NAME]",
	    "map a Unix uid or gid to a role", cmd_principal_add },
	{ "principal", "list", "", "list principal rules", cmd_principal_list },
	{ "principal", "remove", "ID", "remove a principal rule", cmd_principal_remove },
	{ "audit", "list", "[--company C] [--limit N]", "recent audit entries, newest first",
	    cmd_audit_list },
	{ "keys", "init", "--out FILE", "write a new master key file (mode 0600); needs no "
	    "daemon", cmd_keys_init },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Usage for every command, or for one group's commands. */
static void
usage(FILE *f, const char *group)
{
	const struct command *c;
	size_t i;

	fprintf(f, "usage: pcctl [--socket PATH] [--json] COMMAND [ARGS]\n\n");
	for (i = 0; i < NCOMMANDS; i++) {
		c = &commands[i];
		if (group != NULL && strcmp(group, c->group) != 0)
			continue;
		fprintf(f, "  %s%s%s%s%s\n      %s\n", c->group, c->name != NULL ? " " : "",
		    c->name != NULL ? c->name : "", c->args[0] != '\0' ? " " : "", c->args,
		    c->summary);
	}
	if (group == NULL)
		fprintf(f, "\nThe socket is --socket PATH, else $PCSECRET_SOCKET, else "
		    PCS_DEFAULT_SOCKET ".\nValues come from --from-file FILE (exact bytes), else "
		    "stdin when it is not a terminal\n(one trailing newline removed), else a prompt "
		    "that does not echo. Never from arguments.\n");
}

static const struct command *
command_find(const char *group, const char *name, int *group_known)
{
	size_t i;

	*group_known = 0;
	for (i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].group, group) != 0)
			continue;
		*group_known = 1;
		if (commands[i].name == NULL ||
		    (name != NULL && strcmp(commands[i].name, name) == 0))
			return &commands[i];
	}
	return NULL;
}

/* Keeps the error on one line whatever the server put in its message. */
static void
print_error(const pcs_error *err)
{
	fprintf(stderr, "pcctl: %s: ", pcs_status_name(err->code));
	out_safe(stderr, err->message);
	fputc('\n', stderr);
}

int
main(int argc, char **argv)
{
	struct ctl ctl = { 0 };
	const struct command *cmd;
	pcs_error err = { 0 };
	int i, r, known, words;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout, NULL);
			return 0;
		} else if (strcmp(argv[i], "--json") == 0) {
			ctl.json = 1;
		} else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			ctl.socket = argv[++i];
		} else if (strncmp(argv[i], "--socket=", 9) == 0) {
			ctl.socket = argv[i] + 9;
		} else {
			fprintf(stderr, "pcctl: unknown option %s\n", argv[i]);
			usage(stderr, NULL);
			return EXIT_USAGE;
		}
	}
	if (i == argc) {
		usage(stderr, NULL);
		return EXIT_USAGE;
	}
	cmd = command_find(argv[i], i + 1 < argc ? argv[i + 1] : NULL, &known);
	if (cmd == NULL) {
		if (!known)
			fprintf(stderr, "pcctl: unknown command \"%s\"\n", argv[i]);
		else if (i + 1 < argc && strcmp(argv[i + 1], "--help") != 0 &&
		    strcmp(argv[i + 1], "-h") != 0)
			fprintf(stderr, "pcctl: unknown command \"%s %s\"\n", argv[i], argv[i + 1]);
		else if (i + 1 < argc) {
			usage(stdout, argv[i]);
			return 0;
		}
		usage(stderr, known ? argv[i] : NULL);
		return EXIT_USAGE;
	}
	words = cmd->name != NULL ? 2 : 1;
	r = cmd->run(&ctl, argc - i - words, argv + i + words, &err);
	if (ctl.help) {
		usage(stdout, cmd->group);
		r = 0;
	} else if (r != 0 && ctl.usage) {
		fprintf(stderr, "pcctl: %s\n", err.message);
		usage(stderr, cmd->group);
		r = EXIT_USAGE;
	} else if (r != 0) {
		print_error(&err);
		r = EXIT_FAILED;
	}
	pcs_close(ctl.client);
	if (fflush(stdout) != 0 && r == 0) {
		fprintf(stderr, "pcctl: cannot write the output: %s\n", strerror(errno));
		r = EXIT_FAILED;
	}
	return r;
}
