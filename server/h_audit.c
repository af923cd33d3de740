/* ListAudit: admins see every company; operators see their own. */
#include <stdio.h>
#include <stdlib.h>

#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "rows.h"

#define AUDIT_COLS "id, pcs_ts(at), instance_id, call_id, peer_uid, peer_gid, peer_pid, " \
	"principal, method, company, secret, version, status, message"

static void on_listed(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__ListAuditReply rep = PCSECRET__V1__LIST_AUDIT_REPLY__INIT;
	int n = store_result_ntuples(res);
	Pcsecret__V1__AuditEntry *items = NULL;
	Pcsecret__V1__AuditEntry **ptrs = NULL;

	if (h_repeated(c, (size_t)n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (int i = 0; i < n; i++) {
		Pcsecret__V1__AuditEntry *e = &items[i];
		pcsecret__v1__audit_entry__init(e);
		e->id = rows_u64(res, i, 0);
		e->at = (char *)rows_str(res, i, 1);
		e->instance_id = (char *)rows_str(res, i, 2);
		e->call_id = rows_u64(res, i, 3);
		e->peer_uid = rows_u32(res, i, 4);
		e->peer_gid = rows_u32(res, i, 5);
		e->peer_pid = rows_u32(res, i, 6);
		e->principal = (char *)rows_str(res, i, 7);
		e->method = (char *)rows_str(res, i, 8);
		e->company = (char *)rows_str(res, i, 9);
		e->secret = (char *)rows_str(res, i, 10);
		e->version = (char *)rows_str(res, i, 11);
		e->status = (char *)rows_str(res, i, 12);
		e->message = (char *)rows_str(res, i, 13);
	}
	rep.entries = ptrs;
	rep.n_entries = (size_t)n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_audit(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListAuditRequest *in,
    Pcsecret__V1__ListAuditReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const struct principal *p = call_principal(c);
	const char *names[AUTHZ_MAX_COMPANIES], *values[2];
	char *only = NULL, limit[16];
	unsigned lim = in->limit == 0 ? 100 : in->limit;

	if (call_authorize(c, in->company, NULL) != 0)
		return;
	if (lim > 1000)
		lim = 1000;
	if (in->company[0] != '\0') {
		if (!name_valid(in->company)) {
			call_fail(c, PCS_INVALID_ARGUMENT, "company name \"%.128s\" is invalid",
			    in->company);
			return;
		}
		names[0] = in->company;
		only = rows_text_array(names, 1);
	} else if (p->role != ROLE_ADMIN) {
		for (size_t i = 0; i < p->ncompanies; i++)
			names[i] = p->companies[i];
		only = rows_text_array(names, p->ncompanies);
	}
	if ((in->company[0] != '\0' || p->role != ROLE_ADMIN) && only == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	call_set_target(c, in->company, NULL, NULL);
	snprintf(limit, sizeof(limit), "%u", lim);
	values[0] = only;
	values[1] = limit;
	call_db_text(c, "SELECT " AUDIT_COLS " FROM pcs_list_audit($1, $2)", values, 2,
	    on_listed);
	free(only);
}
