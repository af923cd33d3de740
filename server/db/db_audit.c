/*
 * db_audit: the audit log's statements: the row a mutation writes with its work
 * (audit_wrap_sql, for dispatch), the group-commit insert of every other row (audit.c's
 * queue), and ListAudit.
 */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* audit_log's columns in enum audit_param's order (db.h); queued rows add their deadline. */
#define AUDIT_COLUMNS \
	"instance_id, call_id, peer_uid, peer_gid, peer_pid, principal, method, " \
	"company, secret, version, status, message, received_at, ref_ids, ref_names, " \
	"ref_versions, ref_asked"

/*
 * The group commit: one prepared statement whatever the batch's size, each column an array
 * ($1..$18, text, NULL allowed; a row's refs are array literals), then the checks of answers
 * built from the daemon's cache: (row, secret id, generation) for every secret one used
 * ($19..$21) and (row, agent id, generation, principal rules' generation) for each such row
 * ($22..$25; generation 0 when the
 * answer took only the caller's identity from the cache, with the nil uuid for the agent). A row whose check
 * fails is not inserted, in the same snapshot as the rows that are: the call is answered again
 * from the database (docs/architecture.md, "The cache"). Rows come back in the order given
 * (the insert's ORDER BY, and RETURNING follows the insert): first the status stored for each
 * row inserted, then the position of each row left out.
 */
#define QUEUE_ROWS \
	"WITH r AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], " \
	"$5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], " \
	"$12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], " \
	"$18::text[]) WITH ORDINALITY AS r(instance_id, call_id, " \
	"peer_uid, peer_gid, peer_pid, principal, method, company, secret, version, status, " \
	"message, received_at, ref_ids, ref_names, ref_versions, ref_asked, deadline, i)), "
#define QUEUE_INSERT_FROM_ROWS \
	"ins AS (INSERT INTO audit_log (" AUDIT_COLUMNS ", deadline) " \
	"SELECT r.instance_id::uuid, r.call_id::numeric, r.peer_uid::bigint, r.peer_gid::bigint, " \
	"r.peer_pid::bigint, r.principal, r.method, r.company, r.secret, r.version, r.status, " \
	"r.message, r.received_at::timestamptz, r.ref_ids::uuid[], r.ref_names::text[], " \
	"r.ref_versions::int4[], r.ref_asked::int4[], r.deadline::timestamptz FROM r "
#define QUEUE_INSERT \
	QUEUE_ROWS \
	"stale AS (SELECT s.i FROM unnest($19::int4[], $20::uuid[], $21::int8[]) AS s(i, id, gen) " \
	"LEFT JOIN secrets x ON x.id = s.id WHERE x.gen IS DISTINCT FROM s.gen " \
	"UNION SELECT a.i FROM unnest($22::int4[], $23::uuid[], $24::int8[], $25::int8[]) " \
	"AS a(i, id, gen, pgen) LEFT JOIN agents y ON y.id = a.id " \
	"WHERE (a.gen <> 0 AND y.gen IS DISTINCT FROM a.gen) OR a.pgen IS DISTINCT FROM " \
	"(SELECT g.gen FROM pcs_gens g WHERE g.name = 'principals')), " QUEUE_INSERT_FROM_ROWS \
	"WHERE r.i NOT IN (SELECT stale.i FROM stale) ORDER BY r.i RETURNING status) " \
	"SELECT status, NULL::bigint AS stale FROM ins " \
	"UNION ALL SELECT NULL, stale.i FROM stale"

/*
 * A batch with no check takes the same statement without them, which reads no other table:
 * a lock on secrets or agents (a migration's) then holds up no Hello and no refusal.
 */
#define QUEUE_INSERT_PLAIN \
	QUEUE_ROWS QUEUE_INSERT_FROM_ROWS "ORDER BY r.i RETURNING status) " \
	                                  "SELECT status, NULL::bigint AS stale FROM ins"

#define QUEUE_NCHECKS 7
/* $1..$18: one text array per column of the rows. */
#define QUEUE_ROW_OIDS \
	DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, \
	    DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, \
	    DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, \
	    DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY, \
	    DB_OID_TEXT_ARRAY, DB_OID_TEXT_ARRAY
#define NIL_UUID "00000000-0000-0000-0000-000000000000"

enum { I_STATUS, I_STALE };
static const char *const insert_cols[] = { [I_STATUS] = "status", [I_STALE] = "stale" };

static struct db_stmt audit_insert = {
	.name = "audit_log insert",
	.sql = QUEUE_INSERT,
	DB_COLS(insert_cols),
	.param_oid = { QUEUE_ROW_OIDS, DB_OID_INT4_ARRAY, DB_OID_UUID_ARRAY, DB_OID_INT8_ARRAY,
	    DB_OID_INT4_ARRAY, DB_OID_UUID_ARRAY, DB_OID_INT8_ARRAY, DB_OID_INT8_ARRAY },
};

enum {
	L_ID,
	L_AT,
	L_INSTANCE_ID,
	L_CALL_ID,
	L_PEER_UID,
	L_PEER_GID,
	L_PEER_PID,
	L_PRINCIPAL,
	L_METHOD,
	L_COMPANY,
	L_SECRET,
	L_VERSION,
	L_STATUS,
	L_MESSAGE,
	L_REF_ID,
	L_REF_NAME,
	L_REF_SERVED,
	L_REF_ASKED,
	L_OUTCOME,
	L_AGENT
};
static const char *const list_cols[] = {
	[L_ID] = "id",
	[L_AT] = "at",
	[L_INSTANCE_ID] = "instance_id",
	[L_CALL_ID] = "call_id",
	[L_PEER_UID] = "peer_uid",
	[L_PEER_GID] = "peer_gid",
	[L_PEER_PID] = "peer_pid",
	[L_PRINCIPAL] = "principal",
	[L_METHOD] = "method",
	[L_COMPANY] = "company",
	[L_SECRET] = "secret",
	[L_VERSION] = "version",
	[L_STATUS] = "status",
	[L_MESSAGE] = "message",
	[L_REF_ID] = "ref_id",
	[L_REF_NAME] = "ref_name",
	[L_REF_SERVED] = "ref_served",
	[L_REF_ASKED] = "ref_asked",
	[L_OUTCOME] = "outcome",
	[L_AGENT] = "agent",
};

/*
 * struct db_audit_query's fields in pcs_search_audit's order, limit last. One result row per
 * ref (an entry without refs: one row with NULL refs), entries in the order asked and each
 * entry's refs in the order the call asked them.
 */
static struct db_stmt list_audit = {
	.name = "pcs_search_audit",
	.sql = "SELECT a.id, pcs_ts(a.at) AS at, a.instance_id, a.call_id, a.peer_uid, a.peer_gid, "
	       "a.peer_pid, a.principal, a.method, a.company, a.secret, a.version, a.status, "
	       "a.message, x.id AS ref_id, x.name AS ref_name, x.served AS ref_served, "
	       "x.asked AS ref_asked, pcs_audit_outcome(a.status) AS outcome, "
	       "pcs_audit_agent(a.principal, a.company, a.secret) AS agent "
	       "FROM pcs_search_audit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz, "
	       "$11::timestamptz, $12::boolean, $13::bigint, $14::boolean, $15::integer) a "
	       "LEFT JOIN LATERAL "
	       "unnest(a.ref_ids, a.ref_names, a.ref_versions, a.ref_asked) WITH ORDINALITY "
	       "AS x(id, name, served, asked, ord) ON true "
	       "ORDER BY CASE WHEN $14::boolean THEN a.id ELSE -a.id END, x.ord",
	DB_COLS(list_cols),
	.param_oid = { [0] = DB_OID_TEXT_ARRAY },
};

enum {
	V_INSTANCE,
	V_LANE,
	V_ROWS,
	V_LAST_SEQ,
	V_LAST_ID,
	V_LAST_HASH,
	V_HEAD_SEQ,
	V_HEAD_HASH,
	V_BAD_ID,
	V_BAD_SEQ,
	V_PROBLEM,
	V_ARCHIVED
};
static const char *const verify_cols[] = { [V_INSTANCE] = "instance_id",
	[V_LANE] = "lane",
	[V_ROWS] = "nrows",
	[V_LAST_SEQ] = "last_seq",
	[V_LAST_ID] = "last_id",
	[V_LAST_HASH] = "last_hash",
	[V_HEAD_SEQ] = "head_seq",
	[V_HEAD_HASH] = "head_hash",
	[V_BAD_ID] = "bad_id",
	[V_BAD_SEQ] = "bad_seq",
	[V_PROBLEM] = "problem",
	[V_ARCHIVED] = "archived" };

/*
 * instance id (NULL: all). The check lives with the chain's trigger (migration 012), in
 * public, so it always uses the encoding the rows were sealed with.
 */
static struct db_stmt verify_audit = {
	.name = "pcs_audit_verify",
	.sql = "SELECT v.instance_id, v.lane, v.nrows, v.last_seq, v.last_id, "
	       "encode(v.last_hash, 'hex') AS last_hash, v.head_seq, "
	       "encode(v.head_hash, 'hex') AS head_hash, v.bad_id, v.bad_seq, v.problem, "
	       "v.archived "
	       "FROM public.pcs_audit_verify($1::uuid) v "
	       "ORDER BY v.instance_id, v.lane NULLS FIRST",
	DB_COLS(verify_cols),
};

static struct db_stmt audit_insert_plain = {
	.name = "audit_log insert (no checks)",
	.sql = QUEUE_INSERT_PLAIN,
	DB_COLS(insert_cols),
	.param_oid = { QUEUE_ROW_OIDS },
};

struct db_stmt *const db_audit_statements[] = { &audit_insert, &audit_insert_plain, &list_audit,
	&verify_audit, NULL };

int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param)
{
	int n = snprintf(buf, size,
	    "WITH r AS (%s), a AS (INSERT INTO audit_log (" AUDIT_COLUMNS
	    ") VALUES ($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, "
	    "$%d, $%d)) SELECT * FROM r",
	    inner, first_param, first_param + 1, first_param + 2, first_param + 3, first_param + 4,
	    first_param + 5, first_param + 6, first_param + 7, first_param + 8, first_param + 9,
	    first_param + 10, first_param + 11, first_param + 12, first_param + 13,
	    first_param + 14, first_param + 15, first_param + 16);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* ---- group commit ---- */

struct db_job {
	struct store_job *job;
	struct db_stmt *st;
	db_audit_inserted_fn fn;
	void *arg;
	size_t nrows;
};

static void on_inserted(const struct store_result *res, void *arg)
{
	struct db_job *j = arg;
	int status = store_result_status(res);
	const char **stored = NULL;
	uint8_t *stale = NULL;
	size_t n = 0, nres = 0, nstale = 0, next = 0;
	pcs_error err;

	if (status == 0)
		status = db_stmt_ready(j->st, res, &err);
	if (status == 0 &&
	    ((stored = calloc(j->nrows + 1, sizeof(*stored))) == NULL ||
	        (stale = calloc(j->nrows + 1, 1)) == NULL))
		status = -PCS_RESOURCE_EXHAUSTED;
	if (status == 0) {
		nres = (size_t)store_result_ntuples(res);
		for (size_t i = 0; i < nres; i++) {
			uint64_t at;
			if (db_col_null(res, (int)i, j->st, I_STALE))
				continue;
			at = db_col_u64(res, (int)i, j->st, I_STALE);
			if (at < 1 || at > j->nrows || stale[at - 1])
				status = -PCS_INTERNAL;
			else
				stale[at - 1] = 1;
			nstale++;
		}
		/* The statuses, in order, of the rows that were inserted. */
		for (size_t i = 0; status == 0 && i < nres; i++) {
			if (!db_col_null(res, (int)i, j->st, I_STALE))
				continue;
			while (next < j->nrows && stale[next])
				next++;
			if (next == j->nrows) {
				status = -PCS_INTERNAL;
				break;
			}
			stored[next++] = db_col_str(res, (int)i, j->st, I_STATUS);
		}
		if (status == 0 && nres != j->nrows)
			status = -PCS_INTERNAL; /* one row back for each row given */
		n = status == 0 ? j->nrows : 0;
	}
	j->fn(status, stored, n, j->arg);
	free(stored);
	free(stale);
	free(j);
}

/* The check arrays of the statement ($19..$25), from each row's check. */
struct check_arrays {
	int32_t *s_row, *a_row;
	const char **s_id, **a_id;
	int64_t *s_gen, *a_gen, *a_pgen;
	size_t ns, na;
};

static void check_arrays_free(struct check_arrays *ca)
{
	free(ca->s_row);
	free(ca->a_row);
	free(ca->s_id);
	free(ca->a_id);
	free(ca->s_gen);
	free(ca->a_gen);
	free(ca->a_pgen);
}

static int check_arrays_fill(
    struct check_arrays *ca, const struct db_check *const *checks, size_t nrows)
{
	size_t ns = 0, na = 0;

	memset(ca, 0, sizeof(*ca));
	for (size_t r = 0; checks != NULL && r < nrows; r++)
		if (checks[r] != NULL && checks[r]->principals_gen > 0) {
			ns += checks[r]->nsecrets;
			na++;
		}
	ca->s_row = calloc(ns + 1, sizeof(*ca->s_row));
	ca->s_id = calloc(ns + 1, sizeof(*ca->s_id));
	ca->s_gen = calloc(ns + 1, sizeof(*ca->s_gen));
	ca->a_row = calloc(na + 1, sizeof(*ca->a_row));
	ca->a_id = calloc(na + 1, sizeof(*ca->a_id));
	ca->a_gen = calloc(na + 1, sizeof(*ca->a_gen));
	ca->a_pgen = calloc(na + 1, sizeof(*ca->a_pgen));
	if (ca->s_row == NULL || ca->s_id == NULL || ca->s_gen == NULL || ca->a_row == NULL ||
	    ca->a_id == NULL || ca->a_gen == NULL || ca->a_pgen == NULL)
		return -1;
	for (size_t r = 0; checks != NULL && r < nrows; r++) {
		const struct db_check *k = checks[r];
		if (k == NULL || k->principals_gen <= 0)
			continue;
		for (size_t i = 0; i < k->nsecrets; i++) {
			ca->s_row[ca->ns] = (int32_t)(r + 1);
			ca->s_id[ca->ns] = k->secrets[i].id;
			ca->s_gen[ca->ns++] = k->secrets[i].gen;
		}
		ca->a_row[ca->na] = (int32_t)(r + 1);
		ca->a_id[ca->na] = k->agent_id[0] != '\0' ? k->agent_id : NIL_UUID;
		ca->a_gen[ca->na] = k->agent_id[0] != '\0' ? k->agent_gen : 0;
		ca->a_pgen[ca->na++] = k->principals_gen;
	}
	return 0;
}

struct db_job *db_audit_insert(struct store *s, const char *const *values,
    const struct db_check *const *checks, size_t nrows, db_audit_inserted_fn fn, void *arg,
    pcs_error *err)
{
	struct db_job *j = calloc(1, sizeof(*j));
	struct db_array a[AUDIT_QUEUE_NPARAMS + QUEUE_NCHECKS];
	const char **col = calloc(nrows + 1, sizeof(*col));
	struct check_arrays ca;
	struct db_params p = { 0 };
	struct store_query q = { 0 };
	int bad = 0;

	memset(a, 0, sizeof(a));
	memset(&ca, 0, sizeof(ca));
	if (j == NULL || col == NULL || check_arrays_fill(&ca, checks, nrows) != 0)
		goto oom;
	for (int c = 0; c < AUDIT_QUEUE_NPARAMS; c++) {
		for (size_t r = 0; r < nrows; r++)
			col[r] = values[r * AUDIT_QUEUE_NPARAMS + (size_t)c];
		bad |= db_array_new(&a[c], DB_ELEM_TEXT, col, nrows);
	}
	j->st = ca.na > 0 ? &audit_insert : &audit_insert_plain;
	bad |= db_array_new(&a[AUDIT_QUEUE_NPARAMS + 0], DB_ELEM_INT4, ca.s_row, ca.ns);
	bad |= db_array_new(&a[AUDIT_QUEUE_NPARAMS + 1], DB_ELEM_UUID, ca.s_id, ca.ns);
	bad |= db_array_new(&a[AUDIT_QUEUE_NPARAMS + 2], DB_ELEM_INT8, ca.s_gen, ca.ns);
	bad |= db_array_new(&a[AUDIT_QUEUE_NPARAMS + 3], DB_ELEM_INT4, ca.a_row, ca.na);
	bad |= db_array_new(&a[AUDIT_QUEUE_NPARAMS + 4], DB_ELEM_UUID, ca.a_id, ca.na);
	bad |= db_array_new(&a[AUDIT_QUEUE_NPARAMS + 5], DB_ELEM_INT8, ca.a_gen, ca.na);
	bad |= db_array_new(&a[AUDIT_QUEUE_NPARAMS + 6], DB_ELEM_INT8, ca.a_pgen, ca.na);
	if (bad != 0)
		goto oom;
	for (int i = 0; i < (ca.na > 0 ? AUDIT_QUEUE_NPARAMS + QUEUE_NCHECKS : AUDIT_QUEUE_NPARAMS);
	     i++)
		db_param_bytes(&p, a[i].data, a[i].len);
	j->fn = fn;
	j->arg = arg;
	j->nrows = nrows;
	db_store_query(j->st, &p, &q);
	if ((j->job = store_submit(s, &q, on_inserted, j, err)) == NULL)
		goto fail;
	goto out;
oom:
	pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
fail:
	free(j);
	j = NULL;
out:
	for (int i = 0; i < AUDIT_QUEUE_NPARAMS + QUEUE_NCHECKS; i++)
		db_array_free(&a[i]);
	check_arrays_free(&ca);
	free(col);
	return j;
}

void db_job_cancel(struct db_job *job)
{
	if (job == NULL)
		return;
	store_cancel(job->job);
	free(job);
}

/* ---- ListAudit ---- */

static void deliver_list(struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t nres = (size_t)store_result_ntuples(res), n = 0, nref = 0;
	struct db_audit_entry *rows = db_rows_alloc(c, nres, sizeof(*rows));
	struct db_audit_ref *refs = db_rows_alloc(c, nres, sizeof(*refs));
	const struct db_stmt *st = p->st;

	if (rows == NULL || refs == NULL) {
		free(rows);
		free(refs);
		return;
	}
	for (size_t i = 0; i < nres; i++) {
		struct db_audit_entry *e = &rows[n > 0 ? n - 1 : 0];
		int row = (int)i;
		uint64_t id = db_col_u64(res, row, st, L_ID);
		/* A ref of the entry before it, or a new entry. */
		if (n == 0 || e->id != id) {
			e = &rows[n++];
			e->id = id;
			e->at = db_col_str(res, row, st, L_AT);
			e->instance_id = db_col_str(res, row, st, L_INSTANCE_ID);
			e->call_id = db_col_u64(res, row, st, L_CALL_ID);
			e->peer_uid = db_col_u32(res, row, st, L_PEER_UID);
			e->peer_gid = db_col_u32(res, row, st, L_PEER_GID);
			e->peer_pid = db_col_u32(res, row, st, L_PEER_PID);
			e->principal = db_col_str(res, row, st, L_PRINCIPAL);
			e->method = db_col_str(res, row, st, L_METHOD);
			e->company = db_col_str(res, row, st, L_COMPANY);
			e->secret = db_col_str(res, row, st, L_SECRET);
			e->version = db_col_str(res, row, st, L_VERSION);
			e->status = db_col_str(res, row, st, L_STATUS);
			e->message = db_col_str(res, row, st, L_MESSAGE);
			e->outcome = db_col_str(res, row, st, L_OUTCOME);
			e->agent = db_col_opt(res, row, st, L_AGENT);
			e->refs = &refs[nref];
		}
		if (db_col_null(res, row, st, L_REF_NAME) && db_col_null(res, row, st, L_REF_ID))
			continue;
		refs[nref].id = db_col_null(res, row, st, L_REF_ID) ?
		    NULL :
		    db_col_str(res, row, st, L_REF_ID);
		refs[nref].name = db_col_null(res, row, st, L_REF_NAME) ?
		    NULL :
		    db_col_str(res, row, st, L_REF_NAME);
		refs[nref].served = db_col_null(res, row, st, L_REF_SERVED) ?
		    0 :
		    db_col_u32(res, row, st, L_REF_SERVED);
		refs[nref].asked = db_col_null(res, row, st, L_REF_ASKED) ?
		    0 :
		    db_col_u32(res, row, st, L_REF_ASKED);
		nref++;
		e->nrefs++;
	}
	p->cb.audit(c, rows, n);
	free(rows);
	free(refs);
}

void db_audit_list(struct call *c, const struct db_audit_query *q, db_audit_list_cb cb)
{
	struct db_params p = { 0 };
	struct db_array a = { NULL, 0 };
	char cursor[24];

	if (db_param_names(c, &p, &a, q->only, q->nonly) != 0)
		return;
	(void)snprintf(cursor, sizeof(cursor), "%llu", (unsigned long long)q->cursor);
	db_param_text(&p, q->company);
	db_param_text(&p, q->secret_company);
	db_param_text(&p, q->secret_name);
	db_param_text(&p, q->agent_company);
	db_param_text(&p, q->agent_name);
	db_param_text(&p, q->principal);
	db_param_text(&p, q->method);
	db_param_text(&p, q->outcome);
	db_param_text(&p, q->since);
	db_param_text(&p, q->until);
	db_param_bool(&p, q->no_hello);
	db_param_text(&p, q->cursor != 0 ? cursor : NULL);
	db_param_bool(&p, q->ascending);
	db_param_u32(&p, q->limit);
	db_run(c, DB_RUN_CALL, &list_audit, &p, deliver_list, (union db_cb){ .audit = cb }, NULL);
	db_array_free(&a);
}

/* ---- VerifyAudit ---- */

static void deliver_verify(
    struct call *c, const struct db_pending *p, const struct store_result *res)
{
	size_t n = (size_t)store_result_ntuples(res);
	struct db_audit_chain *rows = db_rows_alloc(c, n, sizeof(*rows));
	const struct db_stmt *st = p->st;

	if (rows == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		struct db_audit_chain *k = &rows[i];
		int row = (int)i;
#define OPT_U64(col) (db_col_null(res, row, st, (col)) ? 0 : db_col_u64(res, row, st, (col)))
#define OPT_STR(col) (db_col_null(res, row, st, (col)) ? NULL : db_col_str(res, row, st, (col)))
		k->instance_id = db_col_str(res, row, st, V_INSTANCE);
		k->unchained = db_col_null(res, row, st, V_LANE);
		k->lane = k->unchained ? 0 : db_col_u32(res, row, st, V_LANE);
		k->rows = OPT_U64(V_ROWS);
		k->last_seq = OPT_U64(V_LAST_SEQ);
		k->last_id = OPT_U64(V_LAST_ID);
		k->head_seq = OPT_U64(V_HEAD_SEQ);
		k->bad_id = OPT_U64(V_BAD_ID);
		k->bad_seq = OPT_U64(V_BAD_SEQ);
		k->last_hash = OPT_STR(V_LAST_HASH);
		k->head_hash = OPT_STR(V_HEAD_HASH);
		k->problem = OPT_STR(V_PROBLEM);
		k->archived = OPT_STR(V_ARCHIVED);
#undef OPT_U64
#undef OPT_STR
	}
	p->cb.chains(c, rows, n);
	free(rows);
}

void db_audit_verify(struct call *c, const char *instance_id, db_audit_verify_cb cb)
{
	struct db_params p = { 0 };

	db_param_text(&p, instance_id);
	db_run(
	    c, DB_RUN_CALL, &verify_audit, &p, deliver_verify, (union db_cb){ .chains = cb }, NULL);
}
