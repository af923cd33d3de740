/* pcctl status and whoami: what the handshake says, so they work for every role. */
#include <stdio.h>
#include <stdlib.h>

#include "pcctl_cmd.h"
#include "render.h"

static int cmd_status(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	const Pcsecret__V1__HelloReply *h;
	const Pcsecret__V1__Principal *p;
	int r;

	(void)args;
	if ((r = ctl_hello(ctl, &h, err)) != 0)
		return r;
	p = h->principal;
	if (ctl->json)
		return ctl_emit(
		    json_pack("{s:o, s:o, s:o, s:I, s:o, s:o}", "socket",
		        json_text(pcs_rpc_socket_path(ctl->client)), "server_version",
		        json_text(h->server_version), "instance_id", json_text(h->instance_id),
		        "protocol_version", (json_int_t)h->protocol_version, "client_version",
		        json_text(PCS_VERSION), "principal", j_principal(p)),
		    err);
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

static int cmd_whoami(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	const Pcsecret__V1__HelloReply *h;
	const Pcsecret__V1__Principal *p;
	char *companies;
	int r;

	(void)args;
	if ((r = ctl_hello(ctl, &h, err)) != 0)
		return r;
	if ((p = h->principal) == NULL)
		return ctl_no_reply_field("Hello", err);
	if (ctl->json)
		return ctl_emit(j_principal(p), err);
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

const struct ctl_command ctl_session_commands[] = {
	{ "status", NULL, "", "the server's version and instance, and your principal", 0, 0,
	    CTL_NO_OPTS, cmd_status },
	{ "whoami", NULL, "", "your role, companies, agent, matching rule and uid/gid/pid", 0, 0,
	    CTL_NO_OPTS, cmd_whoami },
	{ .group = NULL },
};
