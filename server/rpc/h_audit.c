/* ListAudit: admins see every company; operators see their own. */
#include <stdlib.h>

#include "db.h"
#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"

static void on_listed(struct call *c, const struct db_audit_entry *rows, size_t n)
{
	Pcsecret__V1__ListAuditReply rep = PCSECRET__V1__LIST_AUDIT_REPLY__INIT;
	Pcsecret__V1__AuditEntry *items = NULL;
	Pcsecret__V1__AuditEntry **ptrs = NULL;

	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct db_audit_entry *row = &rows[i];
		Pcsecret__V1__AuditEntry *e = &items[i];
		pcsecret__v1__audit_entry__init(e);
		e->id = row->id;
		e->at = (char *)row->at;
		e->instance_id = (char *)row->instance_id;
		e->call_id = row->call_id;
		e->peer_uid = row->peer_uid;
		e->peer_gid = row->peer_gid;
		e->peer_pid = row->peer_pid;
		e->principal = (char *)row->principal;
		e->method = (char *)row->method;
		e->company = (char *)row->company;
		e->secret = (char *)row->secret;
		e->version = (char *)row->version;
		e->status = (char *)row->status;
		e->message = (char *)row->message;
	}
	rep.entries = ptrs;
	rep.n_entries = n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_audit(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListAuditRequest *in, Pcsecret__V1__ListAuditReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const struct principal *p = call_principal(c);
	const char *names[AUTHZ_MAX_COMPANIES];
	unsigned lim = in->limit == 0 ? 100 : in->limit;

	if (call_authorize(c, in->company, NULL) != 0)
		return;
	if (lim > 1000)
		lim = 1000;
	if (in->company[0] != '\0' && !name_valid(in->company)) {
		call_fail(
		    c, PCS_INVALID_ARGUMENT, "company name \"%.128s\" is invalid", in->company);
		return;
	}
	call_set_target(c, in->company, NULL, NULL);
	/* One company when named; else an admin's every company, anyone else's own. */
	if (in->company[0] != '\0') {
		names[0] = in->company;
		db_audit_list(c, names, 1, lim, on_listed);
	} else if (p->role != ROLE_ADMIN) {
		for (size_t i = 0; i < p->ncompanies; i++)
			names[i] = p->companies[i];
		db_audit_list(c, names, p->ncompanies, lim, on_listed);
	} else {
		db_audit_list(c, NULL, 0, lim, on_listed);
	}
}
