/*
 * stub_store: server/db/db.h (and the store.h calls dispatch makes) for the dispatch fuzzer; see
 * stub_store.h. No PostgreSQL and no SQL: each db_* operation's rows are chosen by the fuzz
 * input's script, or canned.
 */
#include "stub_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <event2/event.h>

#include "audit.h"
#include "db_internal.h"
#include "dispatch.h"
#include "principal.h"
#include "ref.h"
#include "store.h"

#define STUB_QUEUE_MAX 256
#define STUB_MAX_ROWS 8
#define STUB_MAX_AUDITS 512
#define STUB_ARENA 16384
/* What the stub's statements say instead of SQL; dispatch only passes them on. */
#define STUB_STATEMENT "stub: a db_* operation"
#define STUB_AUDITED "stub: a db_* operation with its call's audit row"

#define TS "2024-01-01T00:00:00.000Z"
#define SOME_ID "00000000-0000-4000-8000-00000000000a"

/* Outcome byte: top 3 bits pick the kind of answer. */
enum { OUT_ERROR = 0, OUT_EMPTY = 1, OUT_FUZZ_ROWS = 2, OUT_SLOW = 3 };
#define OUTCOME_DEFAULT 0xff /* canned rows, at once */

enum rows_kind { ROWS_EMPTY, ROWS_FUZZ, ROWS_CANNED };

/* Which db_* operation a job is, by the shape of its callback. */
enum op_kind {
	K_DONE,
	K_COMPANY,
	K_COMPANIES,
	K_SECRET,
	K_SECRETS,
	K_DESCRIBED,
	K_PREPARED,
	K_NAMES,
	K_AGENT,
	K_AGENTS,
	K_RULE,
	K_RULES,
	K_PRINCIPAL,
	K_AUDIT,
	K_CHAINS,
	K_RESOLVE,
	K_ENV,
	K_STORED,
	K_DELETED,
	K_WATCH /* Watch */
};

struct stub_op {
	enum op_kind kind;
	union db_cb cb;
	size_t nrefs;     /* a resolve answers one row per reference */
	uint32_t attempt; /* echoed, as the real layer does */
	char company[PCS_NAME_MAX + 1], agent[PCS_NAME_MAX + 1];
};

struct store_result {
	int status;
	char message[256];
	struct store *s;
	enum rows_kind rows;
	const struct stub_op *op; /* the db_* operation the statement stands for */
};

enum job_state { JOB_QUEUED, JOB_SLOW, JOB_DONE };

struct db_job {
	struct store_job *job;
};

struct store_job {
	TAILQ_ENTRY(store_job) entry;
	struct store *s;
	enum job_state state;
	int cancelled;
	store_cb cb; /* dispatch's, for a call's statement */
	void *arg;
	struct stub_op *op;
	int audited; /* carries its call's audit row (the last AUDIT_NPARAMS values) */
	int nparams;
	char **values;
	size_t *lengths;
	/* A group-commit insert (db_audit_insert): its rows are the values. */
	struct db_job *batch;
	size_t nrows;
	db_audit_inserted_fn batch_fn;
	void *batch_arg;
	uint8_t outcome;
	struct event *slow;
};

TAILQ_HEAD(job_queue, store_job);

struct store {
	struct event_base *base;
	struct event *kick;
	struct job_queue queue; /* ready to answer */
	size_t queued;          /* in queue */
	size_t slow;            /* waiting on their timer */
	const uint8_t *script;
	size_t script_len, script_off;
	enum stub_persona persona;
	int in_callback, close_pending;
	uint64_t completed, failed;
	struct stub_audit audits[STUB_MAX_AUDITS];
	size_t naudits;
};

static struct stub_sealed sealed;
/* The operation whose statement is being submitted right now (see run_op). */
static struct stub_op *pending;

void stub_set_sealed(const struct stub_sealed *s) { sealed = *s; }

void stub_configure(struct store *s, const uint8_t *script, size_t len, enum stub_persona persona)
{
	s->script = script;
	s->script_len = len;
	s->script_off = 0;
	s->persona = persona;
}

size_t stub_outstanding(const struct store *s) { return s->queued + s->slow; }

/* The next script byte; def once the script has run out. */
static int next_byte(struct store *s, int def)
{
	if (s->script_off >= s->script_len)
		return def;
	return s->script[s->script_off++];
}

/* ---- rows: canned, or fields of fuzz bytes ---- */

struct gen {
	struct store *s;
	enum rows_kind rows;
	char *arena;
	size_t used;
};

static char *gen_alloc(struct gen *g, size_t n)
{
	char *p;

	if (g->used + n > STUB_ARENA)
		return NULL;
	p = g->arena + g->used;
	g->used += n;
	return p;
}

/* A fuzz string (up to 23 bytes, no NUL), or NULL when the script says so. */
static const char *fuzz_str(struct gen *g, size_t *len)
{
	int c = next_byte(g->s, 1), n = c % 24;
	char *p;

	*len = 0;
	if (c == 0 || (p = gen_alloc(g, (size_t)n + 1)) == NULL)
		return NULL;
	for (int k = 0; k < n; k++) {
		int b = next_byte(g->s, '1');
		p[k] = (char)(b == 0 ? '0' : b);
	}
	p[n] = '\0';
	*len = (size_t)n;
	return p;
}

/* A column that is never NULL (the real decoder reads NULL as ""). */
static const char *gen_str(struct gen *g, const char *canned)
{
	size_t len;
	const char *v;

	if (g->rows != ROWS_FUZZ)
		return canned;
	return (v = fuzz_str(g, &len)) != NULL ? v : "";
}

/* A column that may be NULL. */
static const char *gen_opt(struct gen *g, const char *canned)
{
	size_t len;

	return g->rows != ROWS_FUZZ ? canned : fuzz_str(g, &len);
}

/* A number column, parsed as the real decoder does. */
static uint32_t gen_u32(struct gen *g, uint32_t canned)
{
	return g->rows != ROWS_FUZZ ? canned : (uint32_t)strtoul(gen_str(g, ""), NULL, 10);
}

static uint64_t gen_u64(struct gen *g, uint64_t canned)
{
	return g->rows != ROWS_FUZZ ? canned : (uint64_t)strtoull(gen_str(g, ""), NULL, 10);
}

/* How many rows: none, a few of fuzz, or canned ones (1 to 3 for a list). */
static size_t gen_rows(struct gen *g, int list)
{
	switch (g->rows) {
	case ROWS_EMPTY:
		return 0;
	case ROWS_FUZZ:
		return (size_t)(next_byte(g->s, 0) % 4);
	default:
		return list ? 1 + (size_t)(next_byte(g->s, 0) % 3) : 1;
	}
}

/* The canned sealed value, or (fuzz rows) it or bytes of fuzz: neither opens then. */
static void gen_sealed(struct gen *g, struct db_sealed *out)
{
	size_t len;

	out->ciphertext = sealed.ciphertext;
	out->ciphertext_len = sealed.ciphertext_len;
	out->nonce = sealed.nonce;
	out->nonce_len = sealed.nonce_len;
	out->wrapped_key = sealed.wrapped_key;
	out->wrapped_key_len = sealed.wrapped_key_len;
	out->key_id = sealed.key_id;
	if (g->rows != ROWS_FUZZ || (next_byte(g->s, 0) & 1) == 0)
		return;
	out->ciphertext = (const uint8_t *)fuzz_str(g, &len);
	out->ciphertext_len = len;
	out->nonce = (const uint8_t *)fuzz_str(g, &len);
	out->nonce_len = len;
	out->wrapped_key = (const uint8_t *)fuzz_str(g, &len);
	out->wrapped_key_len = len;
	out->key_id = gen_str(g, sealed.key_id);
}

static void *rows_alloc(size_t n, size_t size)
{
	void *p = calloc(n + 1, size);

	if (p == NULL)
		abort();
	return p;
}

static void gen_company(struct gen *g, struct db_company *r)
{
	r->id = gen_str(g, SOME_ID);
	r->name = gen_str(g, "acme");
	r->created_at = gen_str(g, TS);
	r->created_by = gen_str(g, "uid:0");
}

static void gen_secret(struct gen *g, struct db_secret *r)
{
	r->id = gen_str(g, sealed.secret_id);
	r->company = gen_str(g, "acme");
	r->name = gen_str(g, "key");
	r->description = gen_str(g, "");
	r->current_version = gen_u32(g, 1);
	r->created_at = gen_str(g, TS);
	r->updated_at = gen_str(g, TS);
	r->created_by = gen_str(g, "uid:0");
	r->deleted_at = gen_str(g, "");
	r->deleted_by = gen_str(g, "");
	r->restore_until = gen_str(g, "");
	r->purged = (int)gen_u32(g, 0);
	r->destroyed = gen_u32(g, 0);
	r->max_versions = gen_u32(g, 0);
}

static void gen_agent(struct gen *g, struct db_agent *r)
{
	r->id = gen_str(g, SOME_ID);
	r->company = gen_str(g, "acme");
	r->name = gen_str(g, "bot");
	r->uid = gen_u32(g, 40001);
	r->created_at = gen_str(g, TS);
	r->created_by = gen_str(g, "uid:0");
	r->bindings = NULL;
	r->nbindings = 0;
}

static void gen_rule(struct gen *g, struct db_principal_rule *r)
{
	r->id = gen_u64(g, 1);
	r->match = gen_str(g, "uid");
	r->unix_id = gen_u32(g, 40001);
	r->role = gen_str(g, "operator");
	r->company = gen_str(g, "acme");
	r->agent = gen_str(g, "");
	r->created_at = gen_str(g, TS);
	r->created_by = gen_str(g, "uid:0");
}

/* pcs_principal_lookup's rows for the store's persona (or empty, or of fuzz). */
static struct db_principal_match *gen_principal(struct gen *g, size_t *n)
{
	static const struct db_principal_match persona_rows[] = {
		{ "1", "uid", "40001", "admin", NULL, "", 1 },
		{ "2", "uid", "40001", "operator", "acme", "", 1 },
		{ "3", "uid", "40001", "operator", "beta", "", 1 },
		{ "4", "gid", "40000", "launcher", "acme", "", 1 },
		{ "5", "uid", "40001", "agent", "acme", "bot", 1 },
		{ "6", "uid", "40001", "superuser", "acme", "", 1 },
	};
	static const char *const roles[] = { "admin", "operator", "launcher", "agent" };
	struct db_principal_match *rows;
	size_t first = 0;

	*n = 0;
	if (g->rows == ROWS_CANNED) {
		switch (g->s->persona) {
		case STUB_ADMIN_RULE:
			first = 0;
			*n = 1;
			break;
		case STUB_OPERATOR:
			first = 1;
			*n = 2;
			break;
		case STUB_LAUNCHER:
			first = 3;
			*n = 1;
			break;
		case STUB_AGENT:
			first = 4;
			*n = 1;
			break;
		case STUB_UNKNOWN_ROLE:
			first = 5;
			*n = 1;
			break;
		default:
			break;
		}
		rows = rows_alloc(*n, sizeof(*rows));
		for (size_t i = 0; i < *n; i++)
			rows[i] = persona_rows[first + i];
		return rows;
	}
	*n = gen_rows(g, 1);
	rows = rows_alloc(*n, sizeof(*rows));
	for (size_t i = 0; i < *n; i++) {
		int pick = next_byte(g->s, 0);
		rows[i].id = gen_str(g, "");
		rows[i].match = (pick & 1) ? "gid" : "uid";
		rows[i].unix_id = gen_str(g, "");
		/* Mostly real roles, so the rules of principal_from_matches are reached. */
		rows[i].role = (pick >> 1) % 5 < 4 ? roles[(pick >> 1) % 5] : gen_str(g, "");
		rows[i].company = gen_opt(g, NULL);
		rows[i].agent_name = gen_str(g, "");
	}
	return rows;
}

/* Builds the rows of op's kind and calls its callback. */
static void answer(struct call *c, const struct stub_op *op, struct gen *g)
{
	const struct db_target t = { op->company, op->agent };
	size_t n;

	switch (op->kind) {
	case K_DONE:
		op->cb.done(c);
		return;
	case K_COMPANY:
	case K_COMPANIES: {
		struct db_company *rows;
		n = gen_rows(g, op->kind == K_COMPANIES);
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++)
			gen_company(g, &rows[i]);
		if (op->kind == K_COMPANIES) {
			op->cb.companies(c, rows, n);
		} else {
			if (n == 0)
				rows[0] = (struct db_company){ "", "", "", "" };
			op->cb.company(c, &rows[0]);
		}
		free(rows);
		return;
	}
	case K_STORED: {
		struct db_secret row = { "", "", "", "", 0, "", "", "", "", "", "", 0, 0, 0 };
		if (gen_rows(g, 0) > 0)
			gen_secret(g, &row);
		op->cb.stored(c, op->attempt, 0, "", &row);
		return;
	}
	case K_SECRET:
	case K_SECRETS:
	case K_DESCRIBED: {
		struct db_secret *rows;
		struct db_version *versions;
		n = gen_rows(g, op->kind != K_SECRET);
		rows = rows_alloc(n, sizeof(*rows));
		versions = rows_alloc(n, sizeof(*versions));
		for (size_t i = 0; i < n; i++) {
			gen_secret(g, &rows[i]);
			versions[i].version = gen_u32(g, (uint32_t)i + 1);
			versions[i].state = gen_str(g, "active");
			versions[i].created_at = gen_str(g, TS);
			versions[i].created_by = gen_str(g, "uid:0");
			versions[i].key_id = gen_str(g, sealed.key_id);
			versions[i].disabled_at = gen_str(g, "");
			versions[i].disabled_by = gen_str(g, "");
			versions[i].enabled_at = gen_str(g, TS);
			versions[i].enabled_by = gen_str(g, "uid:0");
			versions[i].promoted_at = gen_str(g, "");
			versions[i].promoted_by = gen_str(g, "");
			versions[i].destroyed_at = gen_str(g, "");
			versions[i].destroyed_by = gen_str(g, "");
			versions[i].destroyed_how = gen_str(g, "");
		}
		if (n == 0)
			rows[0] = (struct db_secret){ "", "", "", "", 0, "", "", "", "", "", "", 0,
				0, 0 };
		if (op->kind == K_SECRETS)
			op->cb.secrets(c, rows, n);
		else if (op->kind == K_DESCRIBED)
			op->cb.described(c, &rows[0], versions, n);
		else
			op->cb.secret(c, &rows[0]);
		free(rows);
		free(versions);
		return;
	}
	case K_PREPARED: {
		struct db_secret_prepared p = { .company_id = "",
			.secret_id = "",
			.token_tag = "",
			.attempt = op->attempt,
			.token_description = "",
			.token_secret = "" };
		if (gen_rows(g, 0) > 0) {
			p.company_id = gen_str(g, sealed.company_id);
			p.secret_id = gen_str(g, sealed.secret_id);
			p.current_version = gen_u32(g, 1);
			p.next_version = gen_u32(g, 2);
			p.token_version = gen_u32(g, 0);
		}
		op->cb.prepared(c, &p);
		return;
	}
	case K_NAMES: {
		const char **names;
		n = gen_rows(g, 1);
		names = rows_alloc(n, sizeof(*names));
		for (size_t i = 0; i < n; i++)
			names[i] = gen_str(g, "API_KEY");
		op->cb.names(c, names, n);
		free(names);
		return;
	}
	case K_DELETED: {
		const char **bound;
		n = gen_rows(g, 1);
		bound = rows_alloc(n, sizeof(*bound));
		for (size_t i = 0; i < n; i++)
			bound[i] = gen_str(g, "acme/web:API_KEY");
		op->cb.deleted(c, bound, n, gen_str(g, TS));
		free(bound);
		return;
	}
	case K_AGENT: {
		struct db_agent a = { "", "", "", 0, "", "", NULL, 0 };
		struct db_binding *b;
		size_t k = 0;
		n = gen_rows(g, 1);
		b = rows_alloc(n, sizeof(*b));
		if (n > 0)
			gen_agent(g, &a);
		for (size_t i = 0; i < n; i++) {
			/* A NULL env name is the row of an agent without bindings. */
			if ((b[k].env_name = gen_opt(g, "API_KEY")) == NULL)
				continue;
			b[k].ref_company = gen_str(g, "acme");
			b[k].ref_name = gen_str(g, "key");
			b[k].ref_version = gen_u32(g, 0);
			k++;
		}
		a.bindings = b;
		a.nbindings = k;
		op->cb.agent(c, &a);
		free(b);
		return;
	}
	case K_AGENTS: {
		struct db_agent *rows;
		n = gen_rows(g, 1);
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++)
			gen_agent(g, &rows[i]);
		op->cb.agents(c, rows, n);
		free(rows);
		return;
	}
	case K_RULE:
	case K_RULES: {
		struct db_principal_rule *rows;
		n = gen_rows(g, op->kind == K_RULES);
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++)
			gen_rule(g, &rows[i]);
		if (op->kind == K_RULES) {
			op->cb.rules(c, rows, n);
		} else {
			if (n == 0)
				rows[0] = (struct db_principal_rule){ 0, "", 0, "", "", "", "",
					"" };
			op->cb.rule(c, &rows[0]);
		}
		free(rows);
		return;
	}
	case K_PRINCIPAL: {
		struct db_principal_match *rows = gen_principal(g, &n);
		op->cb.principal(c, rows, n);
		free(rows);
		return;
	}
	case K_AUDIT: {
		struct db_audit_entry *rows;
		n = gen_rows(g, 1);
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++) {
			struct db_audit_entry *e = &rows[i];
			e->id = gen_u64(g, i + 1);
			e->at = gen_str(g, TS);
			e->instance_id = gen_str(g, SOME_ID);
			e->call_id = gen_u64(g, 1);
			e->peer_uid = gen_u32(g, 40001);
			e->peer_gid = gen_u32(g, 40000);
			e->peer_pid = gen_u32(g, 1);
			e->principal = gen_str(g, "operator");
			e->method = gen_str(g, "Resolve");
			e->company = gen_str(g, "acme");
			e->secret = gen_str(g, "key");
			e->version = gen_str(g, "latest");
			e->status = gen_str(g, "OK");
			e->message = gen_str(g, "");
		}
		op->cb.audit(c, rows, n);
		free(rows);
		return;
	}
	case K_CHAINS: {
		struct db_audit_chain *rows;
		n = gen_rows(g, 1);
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++) {
			struct db_audit_chain *k = &rows[i];
			k->instance_id = gen_str(g, SOME_ID);
			k->lane = gen_u32(g, 4242);
			k->rows = gen_u64(g, 3);
			k->last_seq = gen_u64(g, 3);
			k->last_id = gen_u64(g, 7);
			k->head_seq = gen_u64(g, 3);
			k->last_hash = gen_str(g, "00");
			k->head_hash = gen_str(g, "00");
			k->problem = gen_str(g, "");
		}
		op->cb.chains(c, rows, n);
		free(rows);
		return;
	}
	case K_RESOLVE: {
		struct db_resolved *rows;
		/* Canned: one granted, active row per reference, in the order asked. */
		n = g->rows == ROWS_CANNED ? op->nrefs : gen_rows(g, 1);
		if (n > STUB_MAX_ROWS)
			n = STUB_MAX_ROWS;
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++) {
			rows[i].idx = gen_u32(g, (uint32_t)i + 1);
			rows[i].granted = g->rows == ROWS_FUZZ ? next_byte(g->s, 1) & 1 : 1;
			rows[i].company_id = gen_str(g, sealed.company_id);
			rows[i].secret_id = gen_str(g, sealed.secret_id);
			rows[i].version = gen_u32(g, 1);
			rows[i].state = gen_opt(g, "active");
			gen_sealed(g, &rows[i].sealed);
			/* What the cache keeps, so later resolves of the input may come from it. */
			rows[i].secret_gen = (int64_t)gen_u32(g, 1);
			rows[i].current_version = gen_u32(g, 1);
			rows[i].company = gen_str(g, "acme");
			rows[i].name = gen_str(g, "key");
			rows[i].agent_id = gen_str(g, "00000000-0000-4000-8000-0000000000a1");
			rows[i].agent_gen = (int64_t)gen_u32(g, 1);
			/* Some fuzzed rows are of a deleted secret (its binding kept). */
			rows[i].deleted_note = g->rows == ROWS_FUZZ && (next_byte(g->s, 0) & 1) ?
			    gen_str(
			        g, "secret acme/key was deleted; it can be restored until " TS) :
			    NULL;
		}
		op->cb.resolve(c, &t, rows, n);
		free(rows);
		return;
	}
	case K_ENV: {
		struct db_env_value *rows;
		n = gen_rows(g, 1);
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++) {
			rows[i].env_name = gen_str(g, "API_KEY");
			rows[i].ref_company = gen_str(g, "acme");
			rows[i].ref_name = gen_str(g, "key");
			rows[i].selector = gen_u32(g, 0);
			rows[i].company_id = gen_str(g, sealed.company_id);
			rows[i].secret_id = gen_str(g, sealed.secret_id);
			rows[i].version = gen_u32(g, 1);
			gen_sealed(g, &rows[i].sealed);
		}
		op->cb.env(c, &t, rows, n);
		free(rows);
		return;
	}
	case K_WATCH: {
		struct db_watch_target *rows;
		n = gen_rows(g, 1);
		rows = rows_alloc(n, sizeof(*rows));
		for (size_t i = 0; i < n; i++) {
			rows[i].idx = gen_u32(g, (uint32_t)i + 1);
			rows[i].secret_id = gen_str(g, sealed.secret_id);
			rows[i].company = gen_str(g, "acme");
			rows[i].name = gen_str(g, "key");
			rows[i].latest = gen_u32(g, 1);
			rows[i].deleted = (int)gen_u32(g, 0) & 1;
			rows[i].granted = (int)gen_u32(g, 1) & 1;
			rows[i].agent_id = gen_str(g, "");
		}
		op->cb.watch(c, &t, rows, n);
		free(rows);
		return;
	}
	}
	abort();
}

/* dispatch's callback for every db_* operation's statement (it ran OK). */
static void on_op_result(struct call *c, const struct store_result *res, void *arg)
{
	struct gen g = { res->s, res->rows, NULL, 0 };

	(void)arg;
	if (res->op == NULL)
		abort(); /* a db_* operation's result without its operation */
	/* Only a retryable store gets a failed result: its ABORTED, for the handler to retry. */
	if (res->status != 0) {
		if (res->op->kind != K_STORED)
			abort();
		res->op->cb.stored(c, res->op->attempt, res->status, res->message, NULL);
		return;
	}
	if ((g.arena = malloc(STUB_ARENA)) == NULL)
		abort();
	answer(c, res->op, &g);
	free(g.arena);
}

/*
 * Runs op through dispatch as the real layer does; store_submit takes op over when the
 * statement reaches it (dispatch may refuse before: an ended call).
 */
static void run_op(struct call *c, int step, struct stub_op *op)
{
	struct store_query q = { STUB_STATEMENT, 0, NULL, NULL, NULL };

	pending = op;
	if (step)
		call_db_step(c, &q, on_op_result, NULL, NULL);
	else if (op->kind == K_STORED)
		call_db_retryable(c, &q, on_op_result, NULL, NULL);
	else
		call_db(c, &q, on_op_result, NULL, NULL);
	if (pending == op) {
		free(op);
		pending = NULL;
	}
}

static struct stub_op *op_new(enum op_kind kind)
{
	struct stub_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		abort();
	op->kind = kind;
	return op;
}

#define OP(kind, field, cbv, step) \
	do { \
		struct stub_op *op_ = op_new(kind); \
		op_->cb.field = (cbv); \
		run_op(c, (step), op_); \
	} while (0)

/* ---- the db layer's operations ---- */

void db_company_create(struct call *c, const char *name, db_company_cb cb)
{
	(void)name;
	OP(K_COMPANY, company, cb, 0);
}

void db_company_list(struct call *c, const char *const *only, size_t n, db_companies_cb cb)
{
	(void)only;
	(void)n;
	OP(K_COMPANIES, companies, cb, 0);
}

void db_secret_prepare_create_attempt(struct call *c, const char *company, const char *name,
    const char *token, uint32_t attempt, db_secret_prepared_cb cb)
{
	struct stub_op *op = op_new(K_PREPARED);

	(void)company;
	(void)name;
	(void)token;
	op->cb.prepared = cb;
	op->attempt = attempt;
	run_op(c, 1, op);
}

/* What the real layer sends must be sealed: never the harness's plaintext. */
static void check_sealed(const struct db_sealed *s)
{
	if (s->ciphertext == NULL || s->ciphertext_len < 16 || s->nonce_len != sealed.nonce_len ||
	    s->wrapped_key_len != sealed.wrapped_key_len || s->key_id == NULL)
		abort();
}

void db_secret_create_attempt(struct call *c, const char *company_id, const char *secret_id,
    const char *name, const char *description, const struct db_sealed *s, const char *token,
    const uint8_t *tag, size_t tag_len, uint32_t attempt, db_secret_stored_cb cb)
{
	struct stub_op *op = op_new(K_STORED);

	(void)company_id;
	(void)secret_id;
	(void)name;
	(void)description;
	(void)token;
	(void)tag;
	(void)tag_len;
	check_sealed(s);
	op->cb.stored = cb;
	op->attempt = attempt;
	run_op(c, 0, op);
}

void db_secret_set_description(
    struct call *c, const char *company, const char *name, const char *description, db_secret_cb cb)
{
	(void)company;
	(void)name;
	(void)description;
	OP(K_SECRET, secret, cb, 0);
}

void db_secret_prepare_update_attempt(struct call *c, const char *company, const char *name,
    const char *token, uint32_t attempt, db_secret_prepared_cb cb)
{
	struct stub_op *op = op_new(K_PREPARED);

	(void)company;
	(void)name;
	(void)token;
	op->cb.prepared = cb;
	op->attempt = attempt;
	run_op(c, 1, op);
}

void db_secret_add_version_attempt(struct call *c, const char *secret_id, uint32_t version,
    uint32_t expected, const struct db_sealed *s, const char *token, const uint8_t *tag,
    size_t tag_len, int promote, const char *description, uint32_t attempt, db_secret_stored_cb cb)
{
	struct stub_op *op = op_new(K_STORED);

	(void)promote;
	(void)description;
	(void)secret_id;
	(void)version;
	(void)expected;
	(void)token;
	(void)tag;
	(void)tag_len;
	check_sealed(s);
	op->cb.stored = cb;
	op->attempt = attempt;
	run_op(c, 0, op);
}

void db_secret_get(struct call *c, const char *secret_id, db_secret_cb cb)
{
	(void)secret_id;
	OP(K_SECRET, secret, cb, 0);
}

void db_secret_version_action(struct call *c, const char *company, const char *name,
    uint32_t version, enum db_version_action action, db_secret_cb cb)
{
	(void)company;
	(void)name;
	(void)version;
	(void)action;
	OP(K_SECRET, secret, cb, 0);
}

void db_secret_list(struct call *c, const char *company, int deleted, db_secrets_cb cb)
{
	(void)company;
	(void)deleted;
	OP(K_SECRETS, secrets, cb, 0);
}

void db_secret_describe(
    struct call *c, const char *company, const char *name, db_secret_described_cb cb)
{
	(void)company;
	(void)name;
	OP(K_DESCRIBED, described, cb, 0);
}

void db_secret_delete(struct call *c, const char *company, const char *name, int force,
    uint32_t days, db_secret_deleted_cb cb)
{
	(void)company;
	(void)name;
	(void)force;
	(void)days;
	OP(K_DELETED, deleted, cb, 0);
}

void db_secret_restore(struct call *c, const char *company, const char *name, db_secret_cb cb)
{
	(void)company;
	(void)name;
	OP(K_SECRET, secret, cb, 0);
}

void db_secret_purge(struct call *c, const char *company, const char *name, db_secret_cb cb)
{
	(void)company;
	(void)name;
	OP(K_SECRET, secret, cb, 0);
}

void db_secret_set_retention(
    struct call *c, const char *company, const char *name, uint32_t max, db_secret_cb cb)
{
	(void)company;
	(void)name;
	(void)max;
	OP(K_SECRET, secret, cb, 0);
}

void db_secret_destroy_version(
    struct call *c, const char *company, const char *name, uint32_t version, db_secret_cb cb)
{
	(void)company;
	(void)name;
	(void)version;
	OP(K_SECRET, secret, cb, 0);
}

void db_agent_create(struct call *c, const char *company, const char *name, uint32_t uid,
    const gid_t *groups, size_t ngroups, db_agent_cb cb)
{
	(void)company;
	(void)name;
	(void)uid;
	(void)groups;
	(void)ngroups;
	OP(K_AGENT, agent, cb, 0);
}

void db_agent_describe(struct call *c, const char *company, const char *name, db_agent_cb cb)
{
	(void)company;
	(void)name;
	OP(K_AGENT, agent, cb, 0);
}

void db_agent_set_env(struct call *c, const char *company, const char *agent, const char *env_name,
    const struct db_ref *ref, db_agent_cb cb)
{
	(void)company;
	(void)agent;
	(void)env_name;
	(void)ref;
	OP(K_AGENT, agent, cb, 0);
}

void db_agent_unset_env(
    struct call *c, const char *company, const char *agent, const char *env_name, db_agent_cb cb)
{
	(void)company;
	(void)agent;
	(void)env_name;
	OP(K_AGENT, agent, cb, 0);
}

void db_agent_list(struct call *c, const char *company, db_agents_cb cb)
{
	(void)company;
	OP(K_AGENTS, agents, cb, 0);
}

void db_agent_delete(struct call *c, const char *company, const char *name, db_done_cb cb)
{
	(void)company;
	(void)name;
	OP(K_DONE, done, cb, 0);
}

void db_principal_add(struct call *c, const char *match, uint32_t unix_id, const char *role,
    const char *company, db_rule_cb cb)
{
	(void)match;
	(void)unix_id;
	(void)role;
	(void)company;
	OP(K_RULE, rule, cb, 0);
}

void db_principal_list(struct call *c, db_rules_cb cb) { OP(K_RULES, rules, cb, 0); }

void db_principal_remove(struct call *c, uint64_t id, db_done_cb cb)
{
	(void)id;
	OP(K_DONE, done, cb, 0);
}

/* The stub runs its statements through dispatch itself. */
void db_set_call_ops(const struct db_call_ops *ops) { (void)ops; }

void db_principal_lookup(
    struct call *c, uint32_t uid, const gid_t *groups, size_t ngroups, db_principal_cb cb)
{
	(void)uid;
	(void)groups;
	(void)ngroups;
	OP(K_PRINCIPAL, principal, cb, 1);
}

void db_audit_list(struct call *c, const struct db_audit_query *q, db_audit_list_cb cb)
{
	(void)q;
	OP(K_AUDIT, audit, cb, 0);
}

void db_audit_verify(struct call *c, const char *instance_id, db_audit_verify_cb cb)
{
	(void)instance_id;
	OP(K_CHAINS, chains, cb, 0);
}

void db_resolve(struct call *c, const char *company, const char *agent, const struct db_ref *refs,
    size_t n, db_resolve_cb cb)
{
	struct stub_op *op = op_new(K_RESOLVE);

	(void)refs;
	op->cb.resolve = cb;
	op->nrefs = n;
	snprintf(op->company, sizeof(op->company), "%s", company);
	snprintf(op->agent, sizeof(op->agent), "%s", agent);
	run_op(c, 0, op);
}

void db_agent_env(struct call *c, const char *company, const char *agent, db_agent_env_cb cb)
{
	struct stub_op *op = op_new(K_ENV);

	op->cb.env = cb;
	snprintf(op->company, sizeof(op->company), "%s", company);
	snprintf(op->agent, sizeof(op->agent), "%s", agent);
	run_op(c, 0, op);
}

void db_watch_targets(struct call *c, const char *company, const char *agent,
    const char *const *ids, const char *const *names, size_t n, db_watch_cb cb)
{
	struct stub_op *op = op_new(K_WATCH);

	(void)ids;
	(void)names;
	op->cb.watch = cb;
	op->nrefs = n;
	snprintf(op->company, sizeof(op->company), "%s", company != NULL ? company : "");
	snprintf(op->agent, sizeof(op->agent), "%s", agent);
	run_op(c, 0, op);
}

/* The statement that carries a call's audit row: the row is in its parameters. */
int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param)
{
	int n = snprintf(buf, size, "%s", STUB_AUDITED);

	(void)inner;
	(void)first_param;
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* ---- the audit table ---- */

static void audit_add(struct store *s, char *const *values)
{
	struct stub_audit a;
	const char *v;

	memset(&a, 0, sizeof(a));
	v = values[AUDIT_P_CALL_ID];
	a.call_id = v != NULL ? strtoull(v, NULL, 10) : 0;
	snprintf(
	    a.method, sizeof(a.method), "%s", values[AUDIT_P_METHOD] ? values[AUDIT_P_METHOD] : "");
	snprintf(a.principal, sizeof(a.principal), "%s",
	    values[AUDIT_P_PRINCIPAL] ? values[AUDIT_P_PRINCIPAL] : "");
	snprintf(
	    a.status, sizeof(a.status), "%s", values[AUDIT_P_STATUS] ? values[AUDIT_P_STATUS] : "");
	if (s->naudits == STUB_MAX_AUDITS) {
		memmove(&s->audits[0], &s->audits[1], sizeof(s->audits[0]) * (STUB_MAX_AUDITS - 1));
		s->naudits--;
	}
	s->audits[s->naudits++] = a;
}

/* A statement that succeeded commits the audit rows it carries. */
static void record_audit(struct store *s, const struct store_job *job)
{
	if (job->batch != NULL) {
		for (size_t i = 0; i < job->nrows; i++)
			audit_add(s, job->values + i * AUDIT_QUEUE_NPARAMS);
		return;
	}
	if (job->audited) {
		if (job->nparams < AUDIT_NPARAMS)
			abort(); /* dispatch sent an audited statement without its row */
		audit_add(s, job->values + (job->nparams - AUDIT_NPARAMS));
	}
}

int stub_take_audit(struct store *s, uint64_t call_id, const char *status, struct stub_audit *out)
{
	for (size_t i = 0; i < s->naudits; i++) {
		if (s->audits[i].call_id != call_id || strcmp(s->audits[i].status, status) != 0)
			continue;
		*out = s->audits[i];
		memmove(
		    &s->audits[i], &s->audits[i + 1], sizeof(s->audits[0]) * (s->naudits - i - 1));
		s->naudits--;
		return 1;
	}
	return 0;
}

/* The group commit's answer: the status each row was stored with. */
static void answer_batch(struct store_job *job, const struct store_result *res)
{
	struct gen g = { res->s, res->rows, NULL, 0 };
	const char **stored;
	size_t n;

	if (res->status != 0) {
		job->batch_fn(res->status, NULL, 0, job->batch_arg);
		return;
	}
	if ((g.arena = malloc(STUB_ARENA)) == NULL)
		abort();
	n = res->rows == ROWS_CANNED ? job->nrows : gen_rows(&g, 1);
	stored = rows_alloc(n, sizeof(*stored));
	for (size_t i = 0; i < n; i++) {
		/* Fuzz rows may be more than were sent. */
		const char *sent = i < job->nrows ?
		    job->values[i * AUDIT_QUEUE_NPARAMS + AUDIT_P_STATUS] :
		    NULL;
		stored[i] = gen_str(&g, sent != NULL ? sent : "");
	}
	job->batch_fn(0, stored, n, job->batch_arg);
	free(stored);
	free(g.arena);
}

/* ---- jobs ---- */

static const int error_codes[12] = { PCS_UNAVAILABLE, PCS_ALREADY_EXISTS, PCS_NOT_FOUND,
	PCS_PERMISSION_DENIED, PCS_ABORTED, PCS_INTERNAL, PCS_INVALID_ARGUMENT,
	PCS_FAILED_PRECONDITION, PCS_DEADLINE_EXCEEDED, PCS_RESOURCE_EXHAUSTED, PCS_UNAUTHENTICATED,
	PCS_OK /* a database that reports an error without a code */ };

static void job_free(struct store_job *job)
{
	if (job == NULL)
		return;
	for (int i = 0; job->values != NULL && i < job->nparams; i++) {
		if (job->values[i] != NULL) {
			explicit_bzero(job->values[i], job->lengths[i]);
			free(job->values[i]);
		}
	}
	free(job->values);
	free(job->lengths);
	if (job->slow != NULL)
		event_free(job->slow);
	free(job->op);
	free(job->batch);
	free(job);
}

static void store_free(struct store *s)
{
	struct store_job *job;

	while ((job = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, job, entry);
		job_free(job);
	}
	if (s->kick != NULL)
		event_free(s->kick);
	free(s);
}

/* Runs the job's callback (unless cancelled) and frees it. 1 when the store is gone. */
static int deliver(struct store *s, struct store_job *job)
{
	struct store_result res;
	int kind = job->outcome >> 5;

	memset(&res, 0, sizeof(res));
	res.s = s;
	res.op = job->op;
	switch (kind) {
	case OUT_ERROR: {
		int code = error_codes[(job->outcome & 0x0f) % 12];
		res.status = code == PCS_OK ? -PCS_INTERNAL : -code;
		snprintf(
		    res.message, sizeof(res.message), "stub: %s", pcs_status_name(-res.status));
		break;
	}
	case OUT_EMPTY:
		res.rows = ROWS_EMPTY;
		break;
	case OUT_FUZZ_ROWS:
		res.rows = ROWS_FUZZ;
		break;
	default:
		res.rows = ROWS_CANNED;
		break;
	}
	if (res.status == 0) {
		s->completed++;
		record_audit(s, job);
	} else {
		s->failed++;
	}
	job->state = JOB_DONE;
	if (!job->cancelled) {
		s->in_callback = 1;
		if (job->batch != NULL)
			answer_batch(job, &res);
		else
			job->cb(&res, job->arg);
		s->in_callback = 0;
	}
	job_free(job);
	if (s->close_pending) {
		store_free(s);
		return 1;
	}
	return 0;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	struct store_job *job;
	size_t pick;

	(void)fd;
	(void)what;
	if (s->queued == 0)
		return;
	/* One answer per turn of the loop, from whichever job the script picks. */
	pick = (size_t)next_byte(s, 0) % s->queued;
	job = TAILQ_FIRST(&s->queue);
	while (pick-- > 0)
		job = TAILQ_NEXT(job, entry);
	TAILQ_REMOVE(&s->queue, job, entry);
	s->queued--;
	if (deliver(s, job))
		return;
	if (s->queued > 0)
		event_active(s->kick, EV_TIMEOUT, 0);
}

static void on_slow(evutil_socket_t fd, short what, void *arg)
{
	struct store_job *job = arg;
	struct store *s = job->s;

	(void)fd;
	(void)what;
	s->slow--;
	job->outcome = OUTCOME_DEFAULT;
	deliver(s, job);
}

int store_open(struct event_base *base, const char *conninfo, int pool_size, struct store **out,
    pcs_error *err)
{
	struct store *s;

	(void)conninfo;
	(void)pool_size;
	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	s->base = base;
	TAILQ_INIT(&s->queue);
	if ((s->kick = event_new(base, -1, 0, on_kick, s)) == NULL) {
		free(s);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	}
	s->persona = STUB_NO_RULE;
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->in_callback) {
		s->close_pending = 1;
		return;
	}
	if (s->slow != 0)
		abort(); /* the harness closes the store only once every job has answered */
	store_free(s);
}

/* The same checks as the real store, so that a bad query fails here as it would there. */
static int query_check(const struct store_query *q, pcs_error *err)
{
	if (q == NULL || q->sql == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no SQL statement");
	if (q->nparams < 0 || q->nparams > STORE_PARAMS_LIMIT)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "%d parameters (at most %d)", q->nparams,
		    STORE_PARAMS_LIMIT);
	if (q->nparams > 0 && q->values == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "parameters without values");
	for (int i = 0; i < q->nparams; i++) {
		if (q->formats == NULL || q->formats[i] == 0 || q->values[i] == NULL)
			continue;
		if (q->formats[i] != 1 || q->lengths == NULL || q->lengths[i] < 0)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "parameter %d: binary format needs a length", i + 1);
	}
	return 0;
}

/* Queues a job for q; takes op (freed with the job, or now when refused). */
static struct store_job *job_submit(
    struct store *s, const struct store_query *q, struct stub_op *op, pcs_error *err)
{
	struct store_job *job;
	int outcome;

	if (s->close_pending) {
		pcs_fail(err, PCS_UNAVAILABLE, "the database pool is closing");
		goto refuse;
	}
	if (query_check(q, err) != 0)
		goto refuse;
	outcome = next_byte(s, OUTCOME_DEFAULT);
	if (s->queued + s->slow >= STUB_QUEUE_MAX ||
	    ((outcome >> 5) == OUT_ERROR && (outcome & 0x10) != 0)) {
		pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "database queue is full (%d jobs)",
		    STUB_QUEUE_MAX);
		goto refuse;
	}
	if ((job = calloc(1, sizeof(*job))) == NULL)
		abort();
	job->s = s;
	job->op = op;
	job->outcome = (uint8_t)outcome;
	job->audited = strcmp(q->sql, STUB_AUDITED) == 0;
	job->nparams = q->nparams;
	if ((job->values = calloc((size_t)q->nparams + 1, sizeof(*job->values))) == NULL ||
	    (job->lengths = calloc((size_t)q->nparams + 1, sizeof(*job->lengths))) == NULL)
		abort();
	for (int i = 0; i < q->nparams; i++) {
		int binary = q->formats != NULL && q->formats[i] == 1;
		size_t n;
		if (q->values[i] == NULL)
			continue;
		n = binary ? (size_t)q->lengths[i] : strlen(q->values[i]);
		/* Binary parameters keep their bytes; a NUL is added for text ones. */
		if ((job->values[i] = malloc(n + 1)) == NULL)
			abort();
		memcpy(job->values[i], q->values[i], n);
		job->values[i][n] = '\0';
		job->lengths[i] = n + 1;
	}
	if ((outcome >> 5) == OUT_SLOW) {
		struct timeval tv = { 0, 1000 * (1 + (outcome & 7)) };
		if ((job->slow = evtimer_new(s->base, on_slow, job)) == NULL)
			abort();
		job->state = JOB_SLOW;
		s->slow++;
		evtimer_add(job->slow, &tv);
		return job;
	}
	job->state = JOB_QUEUED;
	TAILQ_INSERT_TAIL(&s->queue, job, entry);
	s->queued++;
	event_active(s->kick, EV_TIMEOUT, 0);
	return job;
refuse:
	free(op);
	return NULL;
}

struct store_job *store_submit(
    struct store *s, const struct store_query *q, store_cb cb, void *arg, pcs_error *err)
{
	struct stub_op *op = pending;
	struct store_job *job;

	pending = NULL;
	if (cb == NULL) {
		free(op);
		pcs_fail(err, PCS_INVALID_ARGUMENT, "no callback");
		return NULL;
	}
	if ((job = job_submit(s, q, op, err)) == NULL)
		return NULL;
	job->cb = cb;
	job->arg = arg;
	return job;
}

void store_cancel(struct store_job *job)
{
	if (job == NULL)
		return;
	switch (job->state) {
	case JOB_QUEUED:
		TAILQ_REMOVE(&job->s->queue, job, entry);
		job->s->queued--;
		job_free(job);
		return;
	case JOB_SLOW:
		job->s->slow--;
		job_free(job);
		return;
	case JOB_DONE:
		job->cancelled = 1; /* being delivered right now */
		return;
	}
}

struct db_job *db_audit_insert(struct store *s, const char *const *values,
    const struct db_check *const *checks, size_t nrows, db_audit_inserted_fn fn, void *arg,
    pcs_error *err)
{
	struct store_query q = { STUB_STATEMENT, (int)(nrows * AUDIT_QUEUE_NPARAMS), values, NULL,
		NULL };
	struct store_job *job;
	struct db_job *handle = calloc(1, sizeof(*handle));

	(void)checks; /* the stub's rows are never answers built from a cache */
	if (handle == NULL)
		abort();
	if ((job = job_submit(s, &q, NULL, err)) == NULL) {
		free(handle);
		return NULL;
	}
	handle->job = job;
	job->batch = handle;
	job->nrows = nrows;
	job->batch_fn = fn;
	job->batch_arg = arg;
	return handle;
}

/* The job owns its handle: freed with it, now or once its delivery returns. */
void db_job_cancel(struct db_job *handle)
{
	if (handle != NULL)
		store_cancel(handle->job);
}

int store_result_status(const struct store_result *r) { return r->status; }

const char *store_result_message(const struct store_result *r)
{
	return r->status == 0 ? "" : r->message;
}
