/*
 * ListAudit: admins see every company; operators see their own. VerifyAudit: admins check
 * every hash chain (docs/audit.md).
 */
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
	Pcsecret__V1__AuditRef *refs = NULL;
	Pcsecret__V1__AuditRef **ref_ptrs = NULL;
	size_t nrefs = 0, k = 0;

	for (size_t i = 0; i < n; i++)
		nrefs += rows[i].nrefs;
	if (h_repeated(c, nrefs, sizeof(*refs), &refs, &ref_ptrs) != 0)
		return;
	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0) {
		free(refs);
		free(ref_ptrs);
		return;
	}
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
		e->refs = &ref_ptrs[k];
		e->n_refs = row->nrefs;
		for (size_t j = 0; j < row->nrefs; j++, k++) {
			const struct db_audit_ref *x = &row->refs[j];
			pcsecret__v1__audit_ref__init(&refs[k]);
			refs[k].secret_id = (char *)(x->id != NULL ? x->id : "");
			refs[k].secret = (char *)(x->name != NULL ? x->name : "");
			refs[k].version = x->served;
			refs[k].asked = x->asked;
		}
	}
	rep.entries = ptrs;
	rep.n_entries = n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
	free(refs);
	free(ref_ptrs);
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

static void on_verified(struct call *c, const struct db_audit_chain *rows, size_t n)
{
	Pcsecret__V1__VerifyAuditReply rep = PCSECRET__V1__VERIFY_AUDIT_REPLY__INIT;
	Pcsecret__V1__AuditChain *items = NULL;
	Pcsecret__V1__AuditChain **ptrs = NULL;

	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct db_audit_chain *k = &rows[i];
		Pcsecret__V1__AuditChain *e = &items[i];
		pcsecret__v1__audit_chain__init(e);
		e->instance_id = (char *)k->instance_id;
		e->lane = k->lane;
		e->unchained = k->unchained;
		e->rows = k->rows;
		e->last_seq = k->last_seq;
		e->last_id = k->last_id;
		e->last_hash = (char *)(k->last_hash != NULL ? k->last_hash : "");
		e->head_seq = k->head_seq;
		e->head_hash = (char *)(k->head_hash != NULL ? k->head_hash : "");
		e->bad_id = k->bad_id;
		e->bad_seq = k->bad_seq;
		e->problem = (char *)(k->problem != NULL ? k->problem : "");
	}
	rep.chains = ptrs;
	rep.n_chains = n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_verify_audit(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__VerifyAuditRequest *in, Pcsecret__V1__VerifyAuditReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (call_authorize(c, NULL, NULL) != 0)
		return;
	if (in->instance_id[0] != '\0' && !uuid_valid(in->instance_id)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "instance id \"%.64s\" is not a uuid",
		    in->instance_id);
		return;
	}
	db_audit_verify(c, in->instance_id[0] != '\0' ? in->instance_id : NULL, on_verified);
}
