/*
 * ListAudit: admins see every company; operators see their own, searched by the filters the
 * request gives, one page at a time (docs/audit.md, "Searching"). VerifyAudit: admins check
 * every hash chain (docs/audit.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000
#define MATCH_MAX 256 /* --principal, --method: longer matches no row */

static uint32_t page_limit(const Pcsecret__V1__ListAuditRequest *in)
{
	if (in->limit == 0)
		return LIST_LIMIT_DEFAULT;
	return in->limit > LIST_LIMIT_MAX ? LIST_LIMIT_MAX : in->limit;
}

static void on_listed(struct call *c, const struct db_audit_entry *rows, size_t n)
{
	Pcsecret__V1__ListAuditReply rep = PCSECRET__V1__LIST_AUDIT_REPLY__INIT;
	const Pcsecret__V1__ListAuditRequest *in = (const Pcsecret__V1__ListAuditRequest *)
	    call_request(c);
	uint32_t limit = page_limit(in);
	char next[24];
	Pcsecret__V1__AuditEntry *items = NULL;
	Pcsecret__V1__AuditEntry **ptrs = NULL;
	Pcsecret__V1__AuditRef *refs = NULL;
	Pcsecret__V1__AuditRef **ref_ptrs = NULL;
	size_t nrefs = 0, k = 0;

	/* The statement read one row more than the page, to say whether more follow. */
	if (n > limit) {
		n = limit;
		rep.more = 1;
	}
	/* The cursor is the last row's id; with no row, the request's (the same place). */
	if (n > 0)
		(void)snprintf(next, sizeof(next), "%" PRIu64, rows[n - 1].id);
	rep.next_cursor = (char *)(n > 0 ? next : in->cursor);
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
		e->outcome = (char *)row->outcome;
		e->agent = (char *)(row->agent != NULL ? row->agent : "");
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

static int digits(const char **s, int n, int lo, int hi, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*s)++) {
		if (**s < '0' || **s > '9')
			return -1;
		v = v * 10 + (**s - '0');
	}
	*out = v;
	return v < lo || v > hi ? -1 : 0;
}

/*
 * An ISO 8601 time as --since/--until take it: YYYY-MM-DD, optionally followed by "T" (or a
 * space) HH:MM[:SS[.ffffff]], optionally by Z or +HH[:MM] / -HH[:MM]. No zone means UTC.
 * Written to out as PostgreSQL reads it whatever the session's settings; 0 or -1.
 */
static int time_parse(const char *in, char *out, size_t size)
{
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const char *s = in;
	int y, mo, d, h = 0, mi = 0, sec = 0, zh = 0, zm = 0, nfrac = 0, zsign = 1;
	char f[8] = "0";

	if (digits(&s, 4, 1, 9999, &y) != 0 || *s++ != '-' || digits(&s, 2, 1, 12, &mo) != 0 ||
	    *s++ != '-' || digits(&s, 2, 1, mdays[mo - 1], &d) != 0)
		return -1;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -1;
	if (*s == 'T' || *s == ' ') {
		s++;
		if (digits(&s, 2, 0, 23, &h) != 0 || *s++ != ':' || digits(&s, 2, 0, 59, &mi) != 0)
			return -1;
		if (*s == ':' && (s++, digits(&s, 2, 0, 59, &sec) != 0))
			return -1;
		if (*s == '.') {
			for (s++; *s >= '0' && *s <= '9' && nfrac < 6; s++, nfrac++)
				f[nfrac] = *s;
			f[nfrac > 0 ? nfrac : 1] = '\0';
			if (nfrac == 0)
				return -1;
		}
	}
	if (*s == 'Z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		zsign = *s++ == '-' ? -1 : 1;
		if (digits(&s, 2, 0, 15, &zh) != 0)
			return -1;
		if (*s == ':')
			s++;
		if (*s != '\0' && digits(&s, 2, 0, 59, &zm) != 0)
			return -1;
	}
	if (*s != '\0')
		return -1;
	return snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%s%c%02d:%02d", y, mo, d, h, mi,
	           sec, f, zsign < 0 ? '-' : '+', zh, zm) >= (int)size ?
	    -1 :
	    0;
}

/* "COMPANY/NAME" into company and name; 0, or the call failed naming what. */
static int path_arg(struct call *c, const char *what, const char *in, char *company, char *name)
{
	pcs_error err;
	const struct principal *p = call_principal(c);

	if (ref_parse_path(in, company, name, &err) != 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "%s: %s", what, err.message);
		return -1;
	}
	/* An operator searches only its own companies' rows, and says so by asking. */
	if (p->role != ROLE_ADMIN && !authz_has_company(p, company)) {
		char who[128];
		authz_describe(p, who, sizeof(who));
		call_fail(c, PCS_PERMISSION_DENIED, "%s may not read the audit log of company %s",
		    who, company);
		return -1;
	}
	return 0;
}

void handle_list_audit(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListAuditRequest *in, Pcsecret__V1__ListAuditReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const struct principal *p = call_principal(c);
	const char *names[AUTHZ_MAX_COMPANIES];
	struct db_audit_query q = { 0 };
	char sc[PCS_NAME_MAX + 1], sn[PCS_NAME_MAX + 1], ac[PCS_NAME_MAX + 1], an[PCS_NAME_MAX + 1],
	    since[48], until[48];
	const char *o = in->outcome;

	if (call_authorize(c, in->company, NULL) != 0)
		return;
	if (in->company[0] != '\0' && !name_valid(in->company)) {
		call_fail(
		    c, PCS_INVALID_ARGUMENT, "company name \"%.128s\" is invalid", in->company);
		return;
	}
	call_set_target(c, in->company, NULL, NULL);
	if (in->secret[0] != '\0') {
		if (path_arg(c, "secret", in->secret, sc, sn) != 0)
			return;
		q.secret_company = sc;
		q.secret_name = sn;
	}
	if (in->agent[0] != '\0') {
		if (path_arg(c, "agent", in->agent, ac, an) != 0)
			return;
		q.agent_company = ac;
		q.agent_name = an;
	}
	if (o[0] != '\0' && strcmp(o, "ok") != 0 && strcmp(o, "denied") != 0 &&
	    strcmp(o, "error") != 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "outcome must be ok, denied or error");
		return;
	}
	if ((in->since[0] != '\0' && time_parse(in->since, since, sizeof(since)) != 0) ||
	    (in->until[0] != '\0' && time_parse(in->until, until, sizeof(until)) != 0)) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "%s is not a time: give YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM]",
		    in->since[0] != '\0' && time_parse(in->since, since, sizeof(since)) != 0 ?
		        "since" :
		        "until");
		return;
	}
	if (in->cursor[0] != '\0') {
		unsigned long long v = 0;
		if (strspn(in->cursor, "0123456789") == strlen(in->cursor) &&
		    strlen(in->cursor) <= 19)
			v = strtoull(in->cursor, NULL, 10);
		if (v == 0) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "cursor is not one a ListAudit reply gave (next_cursor)");
			return;
		}
		q.cursor = v;
	}
	q.limit = page_limit(in) + 1;
	q.company = in->company[0] != '\0' ? in->company : NULL;
	/* Longer than any principal or method the daemon writes: such a filter matches nothing,
	 * and the statement is not given an unbounded string. */
	q.principal = in->principal[0] != '\0' ? in->principal : NULL;
	q.method = in->method[0] != '\0' ? in->method : NULL;
	if ((q.principal != NULL && strlen(q.principal) > MATCH_MAX) ||
	    (q.method != NULL && strlen(q.method) > MATCH_MAX)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "principal and method are at most %d bytes",
		    MATCH_MAX);
		return;
	}
	q.outcome = o[0] != '\0' ? o : NULL;
	q.since = in->since[0] != '\0' ? since : NULL;
	q.until = in->until[0] != '\0' ? until : NULL;
	q.no_hello = in->no_hello;
	q.ascending = in->ascending;
	/* A named company's rows; else an admin's every company, anyone else's own. */
	if (p->role != ROLE_ADMIN && in->company[0] == '\0') {
		for (size_t i = 0; i < p->ncompanies; i++)
			names[i] = p->companies[i];
		q.only = names;
		q.nonly = p->ncompanies;
	}
	db_audit_list(c, &q, on_listed);
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
		e->archived = (char *)(k->archived != NULL ? k->archived : "");
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
