/*
 * pcctl audit list: recent audit entries, newest first, with the secrets each served.
 * pcctl audit verify: every hash chain of the audit log checked (docs/audit.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pcctl_cmd.h"
#include "ref.h"
#include "render.h"

/* What deleting a chain's newest rows needs to be seen: said with every verify. */
#define VERIFY_NOTE \
	"rows deleted from the end of a chain are found only against a recorded head: keep " \
	"this output (--json) somewhere the database's owner cannot change, and compare"

static json_t *audit_json(const void *items, size_t i)
{
	return j_audit(((Pcsecret__V1__AuditEntry *const *)items)[i]);
}

/* "acme/db@3 (id), acme/api@- (id)": each secret, the version served ("-": none). */
static char *refs_text(const Pcsecret__V1__AuditEntry *e)
{
	size_t size = 1, o = 0;
	char *s;

	for (size_t i = 0; i < e->n_refs; i++)
		size += strlen(e->refs[i]->secret) + strlen(e->refs[i]->secret_id) + 24;
	if ((s = malloc(size)) == NULL)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < e->n_refs; i++) {
		const Pcsecret__V1__AuditRef *r = e->refs[i];
		char v[16] = "-";
		if (r->version != 0)
			(void)snprintf(v, sizeof(v), "%u", r->version);
		o += (size_t)snprintf(s + o, size - o, "%s%s@%s%s%s%s", i ? ", " : "", r->secret, v,
		    r->secret_id[0] ? " (" : "", r->secret_id, r->secret_id[0] ? ")" : "");
	}
	return s;
}

static int audit_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__AuditEntry *e = ((Pcsecret__V1__AuditEntry *const *)items)[i];
	char call[24], peer[48], secret[2 * PCS_NAME_MAX + 16], *refs = refs_text(e);
	int r;

	if (refs == NULL)
		return -1;
	(void)snprintf(call, sizeof(call), "%" PRIu64, e->call_id);
	(void)snprintf(peer, sizeof(peer), "%u/%u/%u", e->peer_uid, e->peer_gid, e->peer_pid);
	/* The daemon may already write the secret as COMPANY/NAME. */
	if (strchr(e->secret, '/') != NULL || e->company[0] == '\0' || e->secret[0] == '\0')
		(void)snprintf(secret, sizeof(secret), "%.256s", e->secret);
	else
		(void)snprintf(secret, sizeof(secret), "%.128s/%.128s", e->company, e->secret);
	r = table_add(t, e->at, e->instance_id, call, peer, e->principal, e->method, secret,
	    e->version, refs[0] ? refs : NULL, e->status, e->message);
	free(refs);
	return r;
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
	return ctl_print_table(
	    table_new(11, "AT", "INSTANCE", "CALL", "PEER UID/GID/PID", "PRINCIPAL", "METHOD",
	        "SECRET", "VERSION", "REFS (SECRET@SERVED)", "STATUS", "MESSAGE"),
	    rep->entries, rep->n_entries, audit_row, err);
}

static json_t *chain_json(const void *items, size_t i)
{
	return j_audit_chain(((Pcsecret__V1__AuditChain *const *)items)[i]);
}

static int chain_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__AuditChain *k = ((Pcsecret__V1__AuditChain *const *)items)[i];
	char lane[16], rows[24], last[24], head[24];

	(void)snprintf(lane, sizeof(lane), "%u", k->lane);
	(void)snprintf(rows, sizeof(rows), "%" PRIu64, k->rows);
	(void)snprintf(last, sizeof(last), "%" PRIu64, k->last_seq);
	(void)snprintf(head, sizeof(head), "%" PRIu64, k->head_seq);
	if (k->unchained)
		return table_add(t, k->instance_id, "-", rows, "-", "-",
		    "not chained (written before migration 012)");
	return table_add(t, k->instance_id, lane, rows, last, k->head_seq ? head : "-",
	    k->problem[0] ? k->problem : "ok");
}

static int cmd_audit_verify(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__VerifyAuditRequest req = PCSECRET__V1__VERIFY_AUDIT_REQUEST__INIT;
	const char *instance = ctl_value(args, "instance");
	const Pcsecret__V1__VerifyAuditReply *rep;
	size_t broken = 0, chains = 0;
	int r;

	req.instance_id = (char *)(instance != NULL ? instance : "");
	if ((r = ctl_call(ctl, "VerifyAudit", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__VerifyAuditReply *)ctl->reply;
	for (size_t i = 0; i < rep->n_chains; i++) {
		chains += !rep->chains[i]->unchained;
		broken += rep->chains[i]->problem[0] != '\0';
	}
	if (ctl->json) {
		json_t *doc = json_pack("{s:b, s:I, s:I, s:o, s:s}", "ok", broken == 0, "chains",
		    (json_int_t)chains, "broken", (json_int_t)broken, "heads",
		    ctl_json_array(rep->chains, rep->n_chains, chain_json), "note", VERIFY_NOTE);
		if ((r = ctl_emit(doc, err)) != 0)
			return r;
	} else {
		if ((r = ctl_print_table(
		         table_new(6, "INSTANCE", "LANE", "ROWS", "LAST SEQ", "HEAD SEQ", "STATUS"),
		         rep->chains, rep->n_chains, chain_row, err)) != 0)
			return r;
		printf("%zu chain(s), %zu broken. Note: %s.\n", chains, broken, VERIFY_NOTE);
	}
	if (broken > 0)
		return pcs_fail(
		    err, PCS_DATA_LOSS, "%zu of %zu audit chain(s) are broken", broken, chains);
	return 0;
}

const struct ctl_command ctl_audit_commands[] = {
	{ "audit", "list", "[--company C] [--limit N]",
	    "recent audit entries, newest first, with the secrets and versions served", 0, 0,
	    { { "company", CTL_VALUE }, { "limit", CTL_VALUE } }, cmd_audit_list },
	{ "audit", "verify", "[--instance ID]",
	    "check every audit hash chain; report the first broken, altered or missing row", 0, 0,
	    { { "instance", CTL_VALUE } }, cmd_audit_verify },
	{ .group = NULL },
};
