/* pcctl audit list: recent audit entries, newest first. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pcctl_cmd.h"
#include "ref.h"
#include "render.h"

static json_t *audit_json(const void *items, size_t i)
{
	return j_audit(((Pcsecret__V1__AuditEntry *const *)items)[i]);
}

static int audit_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__AuditEntry *e = ((Pcsecret__V1__AuditEntry *const *)items)[i];
	char call[24], peer[48], secret[2 * PCS_NAME_MAX + 16];

	(void)snprintf(call, sizeof(call), "%" PRIu64, e->call_id);
	(void)snprintf(peer, sizeof(peer), "%u/%u/%u", e->peer_uid, e->peer_gid, e->peer_pid);
	/* The daemon may already write the secret as COMPANY/NAME. */
	if (strchr(e->secret, '/') != NULL || e->company[0] == '\0' || e->secret[0] == '\0')
		(void)snprintf(secret, sizeof(secret), "%.256s", e->secret);
	else
		(void)snprintf(secret, sizeof(secret), "%.128s/%.128s", e->company, e->secret);
	return table_add(t, e->at, e->instance_id, call, peer, e->principal, e->method, secret,
	    e->version, e->status, e->message);
}

static int cmd_audit_list(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListAuditRequest req = PCSECRET__V1__LIST_AUDIT_REQUEST__INIT;
	const char *company = ctl_value(args, "company"), *limit = ctl_value(args, "limit");
	const Pcsecret__V1__ListAuditReply *rep;
	int r;

	if (limit != NULL && (r = ctl_parse_u32(ctl, "--limit", limit, &req.limit, err)) != 0)
		return r;
	req.company = (char *)(company != NULL ? company : "");
	if ((r = ctl_call(ctl, "ListAudit", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__ListAuditReply *)ctl->reply;
	if (ctl->json)
		return ctl_emit_array(rep->entries, rep->n_entries, audit_json, err);
	return ctl_print_table(table_new(10, "AT", "INSTANCE", "CALL", "PEER UID/GID/PID",
	                           "PRINCIPAL", "METHOD", "SECRET", "VERSION", "STATUS", "MESSAGE"),
	    rep->entries, rep->n_entries, audit_row, err);
}

const struct ctl_command ctl_audit_commands[] = {
	{ "audit", "list", "[--company C] [--limit N]", "recent audit entries, newest first", 0, 0,
	    { { "company", CTL_VALUE }, { "limit", CTL_VALUE } }, cmd_audit_list },
	{ .group = NULL },
};
