/*
 * stub_store: server/store.h for the dispatch fuzzer (see stub_store.h). No PostgreSQL: every
 * job's result is chosen by the fuzz input's script, or built from the statement's columns.
 */
#include "stub_store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <event2/event.h>

#include "store.h"

#define STUB_QUEUE_MAX 256
#define STUB_MAX_ROWS 8
#define STUB_MAX_COLS 24
#define STUB_MAX_AUDITS 512

struct store_result {
	int status;
	char message[256];
	int nrows, ncols;
	char **cells;            /* nrows * ncols; NULL = SQL NULL */
};

enum job_state { JOB_QUEUED, JOB_SLOW, JOB_DONE };

struct store_job {
	TAILQ_ENTRY(store_job) entry;
	struct store *s;
	enum job_state state;
	int cancelled;
	store_cb cb;
	void *arg;
	char *sql;
	int nparams;
	char **values;
	size_t *lengths;
	uint8_t outcome;
	struct event *slow;
};

TAILQ_HEAD(job_queue, store_job);

struct store {
	struct event_base *base;
	struct event *kick;
	struct job_queue queue;    /* ready to answer */
	size_t queued;             /* in queue */
	size_t slow;               /* waiting on their timer */
	const uint8_t *script;
	size_t script_len, script_off;
	enum stub_persona persona;
	int in_callback, close_pending;
	uint64_t completed, failed;
	struct stub_audit audits[STUB_MAX_AUDITS];
	size_t naudits;
};

static struct stub_sealed sealed;

void stub_set_sealed(const struct stub_sealed *s) { sealed = *s; }

void stub_configure(struct store *s, const uint8_t *script, size_t len,
    enum stub_persona persona)
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

/* ---- results ---- */

static void result_clear(struct store_result *r)
{
	for (int i = 0; r->cells != NULL && i < r->nrows * r->ncols; i++)
		free(r->cells[i]);
	free(r->cells);
	memset(r, 0, sizeof(*r));
}

static int result_alloc(struct store_result *r, int nrows, int ncols)
{
	r->nrows = nrows;
	r->ncols = ncols;
	if ((r->cells = calloc((size_t)(nrows * ncols) + 1, sizeof(char *))) == NULL)
		abort();
	return 0;
}

static void cell_set(struct store_result *r, int row, int col, const char *v)
{
	char **slot = &r->cells[row * r->ncols + col];

	free(*slot);
	*slot = NULL;
	if (v != NULL && (*slot = strdup(v)) == NULL)
		abort();
}

static int cell_ok(const struct store_result *r, int row, int col)
{
	return row >= 0 && col >= 0 && row < r->nrows && col < r->ncols;
}

int store_result_status(const struct store_result *r) { return r->status; }

const char *store_result_message(const struct store_result *r)
{
	return r->status == 0 ? "" : r->message;
}

int store_result_ntuples(const struct store_result *r) { return r->nrows; }
int store_result_nfields(const struct store_result *r) { return r->ncols; }

const char *store_result_value(const struct store_result *r, int row, int col)
{
	const char *v = cell_ok(r, row, col) ? r->cells[row * r->ncols + col] : NULL;

	return v != NULL ? v : "";
}

int store_result_isnull(const struct store_result *r, int row, int col)
{
	return cell_ok(r, row, col) ? r->cells[row * r->ncols + col] == NULL : 1;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Like PQunescapeBytea for the hex format ("\x..."); other text is taken as the bytes. */
int store_result_bytea(const struct store_result *r, int row, int col, uint8_t **out,
    size_t *len)
{
	const char *v;
	uint8_t *buf;
	size_t n;

	*out = NULL;
	*len = 0;
	if (store_result_isnull(r, row, col))
		return -PCS_INVALID_ARGUMENT;
	v = r->cells[row * r->ncols + col];
	n = strlen(v);
	if ((buf = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	if (n >= 2 && v[0] == '\\' && v[1] == 'x') {
		size_t o = 0;
		for (size_t i = 2; i < n; i += 2) {
			int hi = hexval((unsigned char)v[i]), lo = i + 1 < n ? hexval((unsigned char)v[i + 1]) : -1;
			if (hi < 0 || lo < 0) {
				/* libpq fails on bad hex: the caller sees an allocation-style failure. */
				free(buf);
				return -PCS_INTERNAL;
			}
			buf[o++] = (uint8_t)(hi << 4 | lo);
		}
		n = o;
	} else {
		memcpy(buf, v, n);
	}
	*out = buf;
	*len = n;
	return 0;
}

void store_result_free(struct store_result *r)
{
	if (r == NULL)
		return;
	result_clear(r);
	free(r);
}

/* ---- statements: what the canned rows look like ---- */

/* Copies the identifier-ish tail of a select-list expression: "pcs_ts(created_at)" -> as is. */
static void column_name(const char *expr, size_t len, char *out, size_t size)
{
	while (len > 0 && isspace((unsigned char)*expr)) {
		expr++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)expr[len - 1]))
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(out, expr, len);
	out[len] = '\0';
}

/*
 * Splits the select list of sql (the inner SELECT of a "WITH r AS (...)" wrapper) into
 * column names. Returns the count (0 for statements that return nothing); *func gets the
 * function after FROM.
 */
static int parse_columns(const char *sql, char cols[STUB_MAX_COLS][64], char *func,
    size_t func_size)
{
	const char *p = sql, *from, *start;
	int n = 0, depth = 0;

	func[0] = '\0';
	if (strncmp(p, "WITH r AS (", 11) == 0)
		p += 11;
	if (strncmp(p, "SELECT ", 7) != 0)
		return 0;
	p += 7;
	if ((from = strstr(p, " FROM ")) == NULL)
		return 0;
	{
		const char *f = from + 6;
		size_t k = 0;
		while (f[k] != '\0' && (isalnum((unsigned char)f[k]) || f[k] == '_') &&
		    k + 1 < func_size)
			k++;
		memcpy(func, f, k);
		func[k] = '\0';
	}
	for (start = p; p <= from && n < STUB_MAX_COLS; p++) {
		if (*p == '(')
			depth++;
		else if (*p == ')')
			depth--;
		else if ((*p == ',' && depth == 0) || p == from) {
			column_name(start, (size_t)(p - start), cols[n++], 64);
			start = p + 1;
		}
	}
	return n;
}

/* Elements of a PostgreSQL array literal of plain quoted names ({"a","b"}). */
static int array_len(const char *v)
{
	int n = 1;

	if (v == NULL || v[0] != '{' || strcmp(v, "{}") == 0)
		return v != NULL && v[0] == '{' ? 0 : 1;
	for (; *v != '\0'; v++)
		if (*v == ',')
			n++;
	return n;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A plausible value for a column of that name in row `row`. */
static const char *canned_cell(const char *col, int row, char *buf, size_t size)
{
	if (strncmp(col, "pcs_ts(", 7) == 0)
		return "2024-01-01T00:00:00.000Z";
	if (strcmp(col, "idx") == 0) {
		snprintf(buf, size, "%d", row + 1);
		return buf;
	}
	if (strcmp(col, "company_id") == 0)
		return sealed.company_id;
	if (strcmp(col, "secret_id") == 0)
		return sealed.secret_id;
	if (strcmp(col, "ciphertext") == 0)
		return sealed.ciphertext_hex;
	if (strcmp(col, "nonce") == 0)
		return sealed.nonce_hex;
	if (strcmp(col, "wrapped_key") == 0)
		return sealed.wrapped_hex;
	if (strcmp(col, "key_id") == 0)
		return sealed.key_id;
	if (strcmp(col, "token_version") == 0)
		return "0";
	if (strcmp(col, "granted") == 0)
		return "t";
	if (strcmp(col, "selector") == 0)
		return NULL;
	if (ends_with(col, "version") || ends_with(col, "uid") || ends_with(col, "gid") ||
	    ends_with(col, "pid") || strcmp(col, "call_id") == 0 || strcmp(col, "unix_id") == 0)
		return "1";
	if (strcmp(col, "id") == 0 || ends_with(col, "_id"))
		return "00000000-0000-4000-8000-00000000000a";
	if (strcmp(col, "role") == 0)
		return "operator";
	if (strcmp(col, "match") == 0)
		return "uid";
	if (strcmp(col, "state") == 0)
		return "active";
	if (strcmp(col, "status") == 0)
		return "OK";
	if (strcmp(col, "env_name") == 0)
		return "API_KEY";
	if (strcmp(col, "created_by") == 0)
		return "uid:0";
	if (strcmp(col, "agent") == 0 || strcmp(col, "name") == 0 || ends_with(col, "_name"))
		return "bot";
	return "acme";
}

/* pcs_principal_lookup's rows: id, match, unix_id, role, company, agent_id, agent_name. */
static void principal_rows(struct store *s, struct store_result *r)
{
	static const char *const rows[][7] = {
		{ "1", "uid", "40001", "admin", NULL, NULL, NULL },
		{ "2", "uid", "40001", "operator", "acme", NULL, NULL },
		{ "3", "uid", "40001", "operator", "beta", NULL, NULL },
		{ "4", "gid", "40000", "launcher", "acme", NULL, NULL },
		{ "5", "uid", "40001", "agent", "acme", "00000000-0000-4000-8000-00000000000b", "bot" },
		{ "6", "uid", "40001", "superuser", "acme", NULL, NULL },
	};
	int first = 0, n = 0;

	switch (s->persona) {
	case STUB_ADMIN_RULE: first = 0; n = 1; break;
	case STUB_OPERATOR: first = 1; n = 2; break;
	case STUB_LAUNCHER: first = 3; n = 1; break;
	case STUB_AGENT: first = 4; n = 1; break;
	case STUB_UNKNOWN_ROLE: first = 5; n = 1; break;
	default: n = 0; break;
	}
	result_alloc(r, n, 7);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < 7; j++)
			cell_set(r, i, j, rows[first + i][j]);
}

/*
 * The group-commit insert ("INSERT INTO audit_log (cols) VALUES (...), ... RETURNING status"):
 * one row per row inserted, with the status it was sent with. 1 when sql is one.
 */
static int audit_returning(const struct store_job *job, struct store_result *r)
{
	const char *p = job->sql, *end;
	int ncols = 1, col = -1, nrows;

	if (strncmp(p, "INSERT INTO audit_log (", 23) != 0 ||
	    strstr(p, " RETURNING status") == NULL || (end = strchr(p, ')')) == NULL)
		return 0;
	for (const char *c = p + 23; c < end; c++)
		if (*c == ',')
			ncols++;
	{
		const char *st = strstr(p + 23, "status");
		if (st == NULL || st > end)
			abort();
		col = 0;
		for (const char *c = p + 23; c < st; c++)
			if (*c == ',')
				col++;
	}
	nrows = job->nparams / ncols;
	result_alloc(r, nrows, 1);
	for (int i = 0; i < nrows; i++)
		cell_set(r, i, 0, job->values[i * ncols + col]);
	return 1;
}

static void canned_rows(struct store *s, const struct store_job *job, struct store_result *r)
{
	char cols[STUB_MAX_COLS][64], func[64], buf[16];
	int ncols = parse_columns(job->sql, cols, func, sizeof(func)), nrows;

	if (audit_returning(job, r))
		return;

	if (strcmp(func, "pcs_principal_lookup") == 0) {
		principal_rows(s, r);
		return;
	}
	if (ncols == 0) {
		result_alloc(r, 0, 0);
		return;
	}
	if (ncols == 1 && strcmp(cols[0], "*") == 0)
		snprintf(cols[0], sizeof(cols[0]), "id");
	/* A resolve answers one row per reference, in the order asked. */
	if (strcmp(func, "pcs_resolve") == 0)
		nrows = job->nparams > 2 ? array_len(job->values[2]) : 1;
	else
		nrows = 1 + next_byte(s, 0) % 3;
	if (nrows > STUB_MAX_ROWS)
		nrows = STUB_MAX_ROWS;
	result_alloc(r, nrows, ncols);
	for (int i = 0; i < nrows; i++)
		for (int j = 0; j < ncols; j++)
			cell_set(r, i, j, canned_cell(cols[j], i, buf, sizeof(buf)));
}

/* Rows of fuzz bytes: shape and every cell from the script. */
static void fuzz_rows(struct store *s, struct store_result *r)
{
	int nrows = next_byte(s, 0) % 4, ncols = 1 + next_byte(s, 0) % 14;
	char cell[32];

	result_alloc(r, nrows, ncols);
	for (int i = 0; i < nrows; i++) {
		for (int j = 0; j < ncols; j++) {
			int c = next_byte(s, 1), len = c % 24;
			if (c == 0)
				continue; /* NULL */
			for (int k = 0; k < len; k++) {
				int b = next_byte(s, '1');
				cell[k] = (char)(b == 0 ? '0' : b);
			}
			cell[len] = '\0';
			cell_set(r, i, j, cell);
		}
	}
}

static const int error_codes[12] = { PCS_UNAVAILABLE, PCS_ALREADY_EXISTS, PCS_NOT_FOUND,
	PCS_PERMISSION_DENIED, PCS_ABORTED, PCS_INTERNAL, PCS_INVALID_ARGUMENT,
	PCS_FAILED_PRECONDITION, PCS_DEADLINE_EXCEEDED, PCS_RESOURCE_EXHAUSTED,
	PCS_UNAUTHENTICATED, PCS_OK /* a database that reports an error without a code */ };

/* Outcome byte: top 3 bits pick the kind of answer. */
enum { OUT_ERROR = 0, OUT_EMPTY = 1, OUT_FUZZ_ROWS = 2, OUT_SLOW = 3 };
#define OUTCOME_DEFAULT 0xff  /* canned rows, at once */

static void build_result(struct store *s, struct store_job *job, struct store_result *r)
{
	int kind = job->outcome >> 5;

	memset(r, 0, sizeof(*r));
	switch (kind) {
	case OUT_ERROR: {
		int code = error_codes[(job->outcome & 0x0f) % 12];
		r->status = code == PCS_OK ? -PCS_INTERNAL : -code;
		snprintf(r->message, sizeof(r->message), "stub: %s", pcs_status_name(-r->status));
		result_alloc(r, 0, 0);
		return;
	}
	case OUT_EMPTY:
		result_alloc(r, 0, 0);
		return;
	case OUT_FUZZ_ROWS:
		fuzz_rows(s, r);
		return;
	default:
		canned_rows(s, job, r);
		return;
	}
}

/* ---- the audit table ---- */

static void audit_add(struct store *s, const struct stub_audit *a)
{
	if (s->naudits == STUB_MAX_AUDITS) {
		memmove(&s->audits[0], &s->audits[1], sizeof(s->audits[0]) * (STUB_MAX_AUDITS - 1));
		s->naudits--;
	}
	s->audits[s->naudits++] = *a;
}

/*
 * Finds "INSERT INTO audit_log (cols) VALUES ($a, $b, ...)[, ($c, ...)]" in sql and records
 * each row, mapping columns to parameters. Works for the plain insert, the group-commit
 * multi-row insert and the WITH wrapper alike.
 */
static void record_audit(struct store *s, const struct store_job *job)
{
	const char *p = strstr(job->sql, "INSERT INTO audit_log ("), *v;
	char cols[16][32];
	int ncols = 0;

	if (p == NULL)
		return;
	p += strlen("INSERT INTO audit_log (");
	while (*p != '\0' && *p != ')' && ncols < 16) {
		size_t k = 0;
		while (*p == ' ' || *p == ',')
			p++;
		while (p[k] != '\0' && p[k] != ',' && p[k] != ')' && k < 31)
			k++;
		memcpy(cols[ncols], p, k);
		cols[ncols++][k] = '\0';
		p += k;
	}
	if ((v = strstr(p, "VALUES (")) == NULL)
		abort();
	v += strlen("VALUES ");
	/* One "( $n, ... )" group per row. */
	while (*v == '(') {
		int params[16], nparams = 0;
		struct stub_audit a;

		for (v++; *v != '\0' && *v != ')'; v++)
			if (*v == '$' && nparams < 16)
				params[nparams++] = atoi(v + 1) - 1;
		if (*v != ')' || ncols != nparams)
			abort(); /* the daemon wrote an insert whose columns and values disagree */
		memset(&a, 0, sizeof(a));
		for (int i = 0; i < ncols; i++) {
			const char *val;
			if (params[i] < 0 || params[i] >= job->nparams)
				abort(); /* a placeholder without a parameter */
			val = job->values[params[i]] != NULL ? job->values[params[i]] : "";
			if (strcmp(cols[i], "call_id") == 0)
				a.call_id = strtoull(val, NULL, 10);
			else if (strcmp(cols[i], "method") == 0)
				snprintf(a.method, sizeof(a.method), "%s", val);
			else if (strcmp(cols[i], "principal") == 0)
				snprintf(a.principal, sizeof(a.principal), "%s", val);
			else if (strcmp(cols[i], "status") == 0)
				snprintf(a.status, sizeof(a.status), "%s", val);
		}
		audit_add(s, &a);
		v++;
		if (strncmp(v, ", (", 3) == 0)
			v += 2;
	}
}

int stub_take_audit(struct store *s, uint64_t call_id, const char *status,
    struct stub_audit *out)
{
	for (size_t i = 0; i < s->naudits; i++) {
		if (s->audits[i].call_id != call_id || strcmp(s->audits[i].status, status) != 0)
			continue;
		*out = s->audits[i];
		memmove(&s->audits[i], &s->audits[i + 1], sizeof(s->audits[0]) * (s->naudits - i - 1));
		s->naudits--;
		return 1;
	}
	return 0;
}

/* ---- jobs ---- */

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
	free(job->sql);
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

	build_result(s, job, &res);
	if (res.status == 0) {
		s->completed++;
		record_audit(s, job);
	} else {
		s->failed++;
	}
	job->state = JOB_DONE;
	if (!job->cancelled) {
		s->in_callback = 1;
		job->cb(&res, job->arg);
		s->in_callback = 0;
	}
	result_clear(&res);
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

int store_open(struct event_base *base, const char *conninfo, int pool_size,
    struct store **out, pcs_error *err)
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

void store_set_logger(struct store *s, store_log_fn fn, void *arg)
{
	(void)s;
	(void)fn;
	(void)arg;
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

struct store_job *store_submit(struct store *s, const struct store_query *q, store_cb cb,
    void *arg, pcs_error *err)
{
	struct store_job *job;
	int outcome;

	if (cb == NULL) {
		pcs_fail(err, PCS_INVALID_ARGUMENT, "no callback");
		return NULL;
	}
	if (s->close_pending) {
		pcs_fail(err, PCS_UNAVAILABLE, "the database pool is closing");
		return NULL;
	}
	if (query_check(q, err) != 0)
		return NULL;
	outcome = next_byte(s, OUTCOME_DEFAULT);
	if (s->queued + s->slow >= STUB_QUEUE_MAX ||
	    ((outcome >> 5) == OUT_ERROR && (outcome & 0x10) != 0)) {
		pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "database queue is full (%d jobs)",
		    STUB_QUEUE_MAX);
		return NULL;
	}
	if ((job = calloc(1, sizeof(*job))) == NULL || (job->sql = strdup(q->sql)) == NULL)
		abort();
	job->s = s;
	job->cb = cb;
	job->arg = arg;
	job->outcome = (uint8_t)outcome;
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

void store_get_stats(const struct store *s, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->connections_up = 1;
	out->pool_size = 1;
	out->queued = s->queued + s->slow;
	out->completed = s->completed;
	out->failed = s->failed;
}

int store_idle(const struct store *s) { return stub_outstanding(s) == 0; }

/* Start-up only, and the fuzzer never starts up through them: no database here. */
int store_sync_connect(const char *conninfo, struct store_sync **out, pcs_error *err)
{
	(void)conninfo;
	*out = NULL;
	return pcs_fail(err, PCS_UNAVAILABLE, "the stub store has no database");
}

int store_sync_exec(struct store_sync *c, const struct store_query *q, struct store_result **out,
    pcs_error *err)
{
	(void)c;
	(void)q;
	*out = NULL;
	return pcs_fail(err, PCS_UNAVAILABLE, "the stub store has no database");
}

int store_sync_exec_script(struct store_sync *c, const char *sql, pcs_error *err)
{
	(void)c;
	(void)sql;
	return pcs_fail(err, PCS_UNAVAILABLE, "the stub store has no database");
}

void store_sync_close(struct store_sync *c) { (void)c; }
