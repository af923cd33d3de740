/*
 * pcctl audit list: audit entries searched by filters, newest first, a page at a time.
 * pcctl audit tail [-f]: the newest entries, then (-f) every new one as it commits.
 * pcctl audit export: every entry of a time window as JSON lines, streamed.
 * pcctl audit verify: every hash chain of the audit log checked (docs/audit.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The filters every audit command shares (docs/audit.md, "Searching"), from its options. */
#define AUDIT_FILTER_OPTS \
	{ "company", CTL_VALUE }, { "secret", CTL_VALUE }, { "agent", CTL_VALUE }, \
	    { "principal", CTL_VALUE }, { "method", CTL_VALUE }, { "outcome", CTL_VALUE }, \
	    { "since", CTL_VALUE }, { "until", CTL_VALUE }, \
	{ \
		"no-hello", CTL_FLAG \
	}
#define AUDIT_FILTER_USAGE \
	"[--company C] [--secret C/N] [--agent C/A] [--principal P] [--method M] " \
	"[--outcome ok|denied|error] [--since T] [--until T] [--no-hello]"

#define PAGE_MAX 1000
#define TAIL_POLL_MS 500
/*
 * Rows can commit out of id order (two daemons, two transactions): tail -f asks again, each
 * poll, for rows after the place it had this long ago, and skips those it printed.
 */
#define TAIL_SETTLE_MS 5000

static char *opt_or_empty(const struct ctl_args *args, const char *name)
{
	const char *v = ctl_value(args, name);
	return (char *)(v != NULL ? v : "");
}

static void audit_filters(const struct ctl_args *args, Pcsecret__V1__ListAuditRequest *req)
{
	req->company = opt_or_empty(args, "company");
	req->secret = opt_or_empty(args, "secret");
	req->agent = opt_or_empty(args, "agent");
	req->principal = opt_or_empty(args, "principal");
	req->method = opt_or_empty(args, "method");
	req->outcome = opt_or_empty(args, "outcome");
	req->since = opt_or_empty(args, "since");
	req->until = opt_or_empty(args, "until");
	req->no_hello = ctl_flag(args, "no-hello");
}

/* One page; a daemon from before search ignores the filters and gives no cursor: refused. */
static int audit_page(struct ctl *ctl, const Pcsecret__V1__ListAuditRequest *req,
    const Pcsecret__V1__ListAuditReply **rep, pcs_error *err)
{
	int r;

	if ((r = ctl_call(ctl, "ListAudit", &req->base, err)) != 0)
		return r;
	*rep = (const Pcsecret__V1__ListAuditReply *)ctl->reply;
	if ((*rep)->n_entries > 0 && (*rep)->next_cursor[0] == '\0')
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "the daemon is too old to search the audit log (it ignores filters and "
		    "cursors): upgrade it");
	return 0;
}

/* One entry as one line of compact JSON (tail --json, export). */
static int audit_line(const Pcsecret__V1__AuditEntry *e)
{
	json_t *o = j_audit(e);
	int r;

	if (o == NULL)
		return -1;
	r = json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (r != 0 || fputc('\n', stdout) == EOF)
		return -1;
	return 0;
}

static int cmd_audit_list(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListAuditRequest req = PCSECRET__V1__LIST_AUDIT_REQUEST__INIT;
	const char *limit = ctl_value(args, "limit");
	const Pcsecret__V1__ListAuditReply *rep;
	int r;

	if (limit != NULL && (r = ctl_parse_u32(ctl, "--limit", limit, &req.limit, err)) != 0)
		return r;
	audit_filters(args, &req);
	req.cursor = opt_or_empty(args, "cursor");
	if ((r = audit_page(ctl, &req, &rep, err)) != 0)
		return r;
	/* Where the next page starts, where it cannot get in the way of the output. */
	if (rep->more)
		fprintf(stderr, "pcctl: more entries match: continue with --cursor %s\n",
		    rep->next_cursor);
	if (ctl->json)
		return ctl_emit_array(rep->entries, rep->n_entries, audit_json, err);
	return ctl_print_table(
	    table_new(11, "AT", "INSTANCE", "CALL", "PEER UID/GID/PID", "PRINCIPAL", "METHOD",
	        "SECRET", "VERSION", "REFS (SECRET@SERVED)", "STATUS", "MESSAGE"),
	    rep->entries, rep->n_entries, audit_row, err);
}

static int print_entry(struct ctl *ctl, const Pcsecret__V1__AuditEntry *e, pcs_error *err)
{
	if (ctl->json) {
		if (audit_line(e) != 0)
			return pcs_fail(err, PCS_INTERNAL, "cannot write the JSON output");
	} else {
		/* One line an entry, no header: a follow has no end to align columns at. */
		char *refs = refs_text(e);
		if (refs == NULL)
			return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		printf("%s %.8s %s %s [%s] peer %u/%u %s%s%s%s%s\n", e->at, e->instance_id,
		    e->method, e->status, e->principal, e->peer_uid, e->peer_pid,
		    e->company[0] ? e->company : "-", e->secret[0] ? "/" : "", e->secret,
		    refs[0] ? " refs " : "", refs);
		if (e->message[0] != '\0')
			printf("  %s\n", e->message);
		free(refs);
	}
	return fflush(stdout) == 0 ? 0 : pcs_fail(err, PCS_INTERNAL, "cannot write the output");
}

static volatile sig_atomic_t tail_stop;

static void on_tail_signal(int sig)
{
	(void)sig;
	tail_stop = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The ids tail printed in the last TAIL_SETTLE_MS, sorted, and when each was printed. */
struct recent {
	uint64_t *id, *at;
	size_t n, cap;
};

static size_t recent_find(const struct recent *rc, uint64_t id)
{
	size_t lo = 0, hi = rc->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rc->id[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int recent_add(struct recent *rc, uint64_t id, uint64_t at)
{
	size_t i = recent_find(rc, id);

	if (rc->n == rc->cap) {
		size_t cap = rc->cap ? rc->cap * 2 : 256;
		uint64_t *a = realloc(rc->id, cap * sizeof(*a)), *b;
		if (a == NULL)
			return -1;
		rc->id = a;
		if ((b = realloc(rc->at, cap * sizeof(*b))) == NULL)
			return -1;
		rc->at = b;
		rc->cap = cap;
	}
	memmove(&rc->id[i + 1], &rc->id[i], (rc->n - i) * sizeof(*rc->id));
	memmove(&rc->at[i + 1], &rc->at[i], (rc->n - i) * sizeof(*rc->at));
	rc->id[i] = id;
	rc->at[i] = at;
	rc->n++;
	return 0;
}

/* Forgets ids printed before cut; *settled becomes the highest of them (or stays). */
static void recent_expire(struct recent *rc, uint64_t cut, uint64_t *settled)
{
	size_t k = 0;

	for (size_t i = 0; i < rc->n; i++) {
		if (rc->at[i] < cut) {
			if (rc->id[i] > *settled)
				*settled = rc->id[i];
			continue;
		}
		rc->id[k] = rc->id[i];
		rc->at[k++] = rc->at[i];
	}
	rc->n = k;
	/* Ids at or below the settled place are never asked for again. */
	k = recent_find(rc, *settled + 1);
	if (k == 0)
		return;
	memmove(rc->id, &rc->id[k], (rc->n - k) * sizeof(*rc->id));
	memmove(rc->at, &rc->at[k], (rc->n - k) * sizeof(*rc->at));
	rc->n -= k;
}

/* Every matching row after *settled not printed yet, printed oldest first. */
static int tail_poll(struct ctl *ctl, Pcsecret__V1__ListAuditRequest *req, char cursor[24],
    struct recent *rc, uint64_t settled, pcs_error *err)
{
	const Pcsecret__V1__ListAuditReply *rep;
	int r;

	(void)snprintf(cursor, 24, "%" PRIu64, settled);
	req->cursor = settled != 0 ? cursor : (char *)"";
	req->ascending = 1;
	req->limit = PAGE_MAX;
	do {
		if ((r = audit_page(ctl, req, &rep, err)) != 0)
			return r;
		for (size_t i = 0; i < rep->n_entries; i++) {
			const Pcsecret__V1__AuditEntry *e = rep->entries[i];
			size_t at = recent_find(rc, e->id);
			if (at < rc->n && rc->id[at] == e->id)
				continue;
			if ((r = print_entry(ctl, e, err)) != 0)
				return r;
			if (recent_add(rc, e->id, now_ms()) != 0)
				return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		}
		(void)snprintf(cursor, 24, "%s", rep->next_cursor);
		req->cursor = cursor;
	} while (rep->more && !tail_stop);
	return 0;
}

static int cmd_audit_tail(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListAuditRequest req = PCSECRET__V1__LIST_AUDIT_REQUEST__INIT;
	const char *lines = ctl_value(args, "lines");
	const Pcsecret__V1__ListAuditReply *rep;
	struct recent rc = { 0 };
	struct sigaction sa;
	char cursor[24];
	uint64_t settled = 0;
	uint32_t n = 10;
	int r;

	if (lines != NULL && (r = ctl_parse_u32(ctl, "--lines", lines, &n, err)) != 0)
		return r;
	if (n > PAGE_MAX)
		return ctl_usage_fail(ctl, err, "--lines is at most %d", PAGE_MAX);
	audit_filters(args, &req);
	/* The newest n, printed oldest first; the follow starts after the newest. */
	if (n > 0) {
		req.limit = n;
		if ((r = audit_page(ctl, &req, &rep, err)) != 0)
			return r;
		for (size_t i = rep->n_entries; i > 0; i--)
			if ((r = print_entry(ctl, rep->entries[i - 1], err)) != 0)
				return r;
		if (rep->n_entries > 0)
			settled = rep->entries[0]->id;
	}
	if (!ctl_flag(args, "follow"))
		return 0;
	if (n == 0) {
		req.limit = 1;
		if ((r = audit_page(ctl, &req, &rep, err)) != 0)
			return r;
		if (rep->n_entries > 0)
			settled = rep->entries[0]->id;
	}
	/* SIGINT and SIGTERM end the follow: exit 0, as for the end of the log. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_tail_signal;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	while (!tail_stop) {
		struct timespec ts = { 0, TAIL_POLL_MS * 1000000L };
		uint64_t cut = now_ms();
		if ((r = tail_poll(ctl, &req, cursor, &rc, settled, err)) != 0)
			break;
		recent_expire(&rc, cut > TAIL_SETTLE_MS ? cut - TAIL_SETTLE_MS : 0, &settled);
		(void)nanosleep(&ts, NULL);
	}
	free(rc.id);
	free(rc.at);
	/* A call cut short by the signal is the end asked for, not a failure. */
	if (tail_stop) {
		pcs_error_clear(err);
		return 0;
	}
	return r;
}

/* Now, as --until takes it (UTC). */
static void utc_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	(void)snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (int)(ts.tv_nsec / 1000) % 1000000);
}

static int cmd_audit_export(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListAuditRequest req = PCSECRET__V1__LIST_AUDIT_REQUEST__INIT;
	const Pcsecret__V1__ListAuditReply *rep;
	char cursor[24] = "", until[64];
	int progress = isatty(STDERR_FILENO), r;
	uint64_t rows = 0;

	audit_filters(args, &req);
	if (req.since[0] == '\0')
		return ctl_usage_fail(ctl, err, "export needs --since");
	/* Without --until, up to now: the export ends even while rows keep coming. */
	if (req.until[0] == '\0') {
		utc_now(until, sizeof(until));
		req.until = until;
	}
	req.ascending = 1;
	req.limit = PAGE_MAX;
	req.cursor = cursor;
	do {
		if ((r = audit_page(ctl, &req, &rep, err)) != 0)
			break;
		for (size_t i = 0; i < rep->n_entries; i++) {
			if (audit_line(rep->entries[i]) != 0) {
				r = pcs_fail(err, PCS_INTERNAL, "cannot write the output");
				break;
			}
		}
		rows += rep->n_entries;
		if (r == 0 && fflush(stdout) != 0)
			r = pcs_fail(err, PCS_INTERNAL, "cannot write the output");
		if (progress)
			fprintf(stderr, "\rpcctl: exported %" PRIu64 " entries", rows);
		(void)snprintf(cursor, sizeof(cursor), "%s", rep->next_cursor);
	} while (r == 0 && rep->more);
	if (progress)
		fputc('\n', stderr);
	return r;
}

static json_t *chain_json(const void *items, size_t i)
{
	return j_audit_chain(((Pcsecret__V1__AuditChain *const *)items)[i]);
}

static int chain_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__AuditChain *k = ((Pcsecret__V1__AuditChain *const *)items)[i];
	char lane[16], rows[24], last[24], head[24], status[1024];

	(void)snprintf(lane, sizeof(lane), "%u", k->lane);
	(void)snprintf(rows, sizeof(rows), "%" PRIu64, k->rows);
	(void)snprintf(last, sizeof(last), "%" PRIu64, k->last_seq);
	(void)snprintf(head, sizeof(head), "%" PRIu64, k->head_seq);
	/* What was archived is said on the chain's line: it is not missing. */
	(void)snprintf(status, sizeof(status), "%s%s%s",
	    k->unchained      ? "not chained (written before migration 012)" :
	        k->problem[0] ? k->problem :
	                        "ok",
	    k->archived[0] ? "; " : "", k->archived);
	if (k->unchained)
		return table_add(t, k->instance_id, "-", rows, "-", "-", status);
	return table_add(t, k->instance_id, lane, rows, last, k->head_seq ? head : "-", status);
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
	{ "audit", "list", AUDIT_FILTER_USAGE " [--limit N] [--cursor X]",
	    "audit entries matching every filter given, newest first, a page at a time", 0, 0,
	    { AUDIT_FILTER_OPTS, { "limit", CTL_VALUE }, { "cursor", CTL_VALUE } },
	    cmd_audit_list },
	{ "audit", "tail", "[-f|--follow] [--lines N] " AUDIT_FILTER_USAGE,
	    "the newest N entries (default 10), oldest first; -f: then every new one as it "
	    "commits, from every daemon, until interrupted",
	    0, 0, { AUDIT_FILTER_OPTS, { "follow", CTL_FLAG }, { "lines", CTL_VALUE } },
	    cmd_audit_tail },
	{ "audit", "export", "--since T " AUDIT_FILTER_USAGE,
	    "every entry from --since to --until (default: now), oldest first, as JSON lines", 0, 0,
	    { AUDIT_FILTER_OPTS }, cmd_audit_export },
	{ "audit", "verify", "[--instance ID]",
	    "check every audit hash chain; report the first broken, altered or missing row", 0, 0,
	    { { "instance", CTL_VALUE } }, cmd_audit_verify },
	{ .group = NULL },
};
