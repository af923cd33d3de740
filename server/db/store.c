/*
 * store: the pool of connections on the daemon's loop, the FIFO job queue they serve, the
 * starve timer, and the result objects with their mapping of SQLSTATEs to pcs statuses
 * (store.h). The connections themselves are pgconn.c's; the blocking start-up API and the
 * conninfo helpers are store_sync.c's. libpq is included here for the results only.
 *
 * Each pooled connection runs one job at a time (no pipelining: a job's failure must never
 * take unrelated jobs down with it, and one statement per round trip is what callers need).
 * Its pgconn prepares a job's text the first time it runs there and executes it by name after
 * that (pgconn.h), unless the job was submitted with store_submit_once.
 * A job's callback may submit, cancel or even close the store, so every path that runs a
 * callback reports STORE_GONE when the store was freed underneath it and its callers stop
 * touching anything at once; to pgconn that is its own PGCONN_GONE, since the store frees
 * its pgconns with everything else.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "pgconn.h"
#include "store.h"
#include "store_internal.h"

#define STORE_QUEUE_MAX 10000
#define STORE_POOL_MAX 64
#define STORE_GONE PGCONN_GONE

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct store_job {
	TAILQ_ENTRY(store_job) entry;
	struct store *s;
	enum job_state state;
	int cancelled;
	int once; /* its text will not repeat: not worth preparing */
	store_cb cb;
	void *arg;
	char *sql;
	int nparams;
	const char **values;
	int *lengths;
	int *formats;
	/* All parameter bytes in one block so one explicit_bzero covers them. */
	char *data;
	size_t data_len;
	uint64_t queued_ms; /* when it was submitted (monotonic) */
	/* Embedded so delivering a result never needs an allocation that could fail. */
	struct store_result res;
};

TAILQ_HEAD(job_queue, store_job);

/* One connection of the pool and the job it runs. */
struct slot {
	struct store *s;
	int index;
	struct pgconn *pc;
	int was_up;
	struct store_job *job;
};

struct store {
	struct event_base *base;
	char *conninfo; /* the pgconns borrow it */
	int pool_size;
	struct slot *slots;
	struct job_queue queue;
	size_t queued;
	struct event *kick;
	store_log_fn log_fn;
	void *log_arg;
	uint64_t completed;
	uint64_t failed;
	int in_callback;
	int close_pending;
	/*
	 * With no connection up, a queued job fails after wait_ms instead of waiting for its
	 * owner's deadline (store_set_wait_limit). 0 = wait for ever.
	 */
	int wait_ms;
	struct event *starve;
};

static void store_free(struct store *s);
static int slot_next(struct slot *sl);
static void store_arm_starve(struct store *s);

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- results ---- */

static void result_fail(struct store_result *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void result_fail(struct store_result *r, int code, const char *fmt, ...)
{
	va_list ap;

	r->status = -code;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

/* Only SQLSTATEs and our own PS0nn messages leave here: PostgreSQL's text can repeat values. */
static void result_map_error(struct store_result *r, int conn_bad)
{
	const char *st = pgconn_sqlstate(r->pg);
	const char *primary;
	int nn;

	if (st == NULL) {
		if (conn_bad)
			result_fail(r, PCS_UNAVAILABLE, "%s", "database connection lost");
		else
			result_fail(r, PCS_INTERNAL, "%s", "database error (no SQLSTATE)");
		return;
	}
	if (strncmp(st, "PS0", 3) == 0 && isdigit((unsigned char)st[3]) &&
	    isdigit((unsigned char)st[4])) {
		nn = (st[3] - '0') * 10 + (st[4] - '0');
		if (nn >= PCS_CANCELLED && nn <= PCS_UNAUTHENTICATED) {
			primary = PQresultErrorField(r->pg, PG_DIAG_MESSAGE_PRIMARY);
			result_fail(
			    r, nn, "%s", primary != NULL ? primary : "database refused the call");
			return;
		}
	}
	if (strcmp(st, "23505") == 0)
		result_fail(r, PCS_ALREADY_EXISTS, "%s", "already exists");
	else if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
		result_fail(r, PCS_ABORTED, "%s", "conflicting concurrent change; retry");
	else if (strcmp(st, "57014") == 0)
		result_fail(
		    r, PCS_DEADLINE_EXCEEDED, "%s", "database statement cancelled (timeout)");
	else if (conn_bad || strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
	    strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0)
		result_fail(r, PCS_UNAVAILABLE, "database unavailable (SQLSTATE %s)", st);
	else
		result_fail(r, PCS_INTERNAL, "database error (SQLSTATE %s)", st);
}

/* Takes ownership of pg (which may be NULL: no result at all). */
void store_result_set(struct store_result *r, struct pg_result *pg, int conn_bad)
{
	r->pg = pg;
	r->status = 0;
	r->message[0] = '\0';
	if (pg == NULL) {
		if (conn_bad)
			result_fail(r, PCS_UNAVAILABLE, "%s", "database connection lost");
		else
			result_fail(r, PCS_INTERNAL, "%s", "database returned no result");
		return;
	}
	switch (PQresultStatus(pg)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
	case PGRES_SINGLE_TUPLE:
		return;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
		result_fail(r, PCS_INTERNAL, "%s", "COPY is not supported by the store");
		return;
	case PGRES_BAD_RESPONSE:
		result_fail(r, PCS_INTERNAL, "%s", "database protocol error");
		return;
	default:
		result_map_error(r, conn_bad);
		return;
	}
}

int store_result_status(const struct store_result *r) { return r->status; }

const char *store_result_message(const struct store_result *r)
{
	return r->status == 0 ? "" : r->message;
}

int store_result_ntuples(const struct store_result *r)
{
	return r->pg != NULL ? PQntuples(r->pg) : 0;
}

int store_result_nfields(const struct store_result *r)
{
	return r->pg != NULL ? PQnfields(r->pg) : 0;
}

static int cell_ok(const struct store_result *r, int row, int col)
{
	return r->pg != NULL && row >= 0 && col >= 0 && row < PQntuples(r->pg) &&
	    col < PQnfields(r->pg);
}

const char *store_result_value(const struct store_result *r, int row, int col)
{
	return cell_ok(r, row, col) ? PQgetvalue(r->pg, row, col) : "";
}

int store_result_isnull(const struct store_result *r, int row, int col)
{
	return cell_ok(r, row, col) ? PQgetisnull(r->pg, row, col) : 1;
}

int store_result_bytea(const struct store_result *r, int row, int col, uint8_t **out, size_t *len)
{
	unsigned char *raw = NULL;
	uint8_t *buf = NULL;
	size_t n = 0;
	int ret = -PCS_INTERNAL;

	*out = NULL;
	*len = 0;
	if (!cell_ok(r, row, col) || PQgetisnull(r->pg, row, col)) {
		ret = -PCS_INVALID_ARGUMENT;
		goto out;
	}
	if ((raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r->pg, row, col), &n)) == NULL)
		goto out;
	/* The caller frees with free(); libpq's buffer must go back through PQfreemem. */
	if ((buf = malloc(n > 0 ? n : 1)) == NULL)
		goto out;
	memcpy(buf, raw, n);
	*out = buf;
	*len = n;
	buf = NULL;
	ret = 0;
out:
	if (raw != NULL) {
		explicit_bzero(raw, n);
		PQfreemem(raw);
	}
	free(buf);
	return ret;
}

void store_result_free(struct store_result *r)
{
	if (r == NULL)
		return;
	PQclear(r->pg);
	free(r);
}

const char *store_result_fname(const struct store_result *r, int col)
{
	const char *name;

	if (r->pg == NULL || col < 0 || col >= PQnfields(r->pg) ||
	    (name = PQfname(r->pg, col)) == NULL)
		return "";
	return name;
}

int store_result_nparams(const struct store_result *r)
{
	return r->pg != NULL ? PQnparams(r->pg) : 0;
}

unsigned store_result_paramtype(const struct store_result *r, int i)
{
	return r->pg != NULL && i >= 0 && i < PQnparams(r->pg) ? (unsigned)PQparamtype(r->pg, i) :
	                                                         0;
}

/* ---- statements ---- */

int store_query_check(const struct store_query *q, pcs_error *err)
{
	int i;

	if (q == NULL || q->sql == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no SQL statement");
	if (q->nparams < 0 || q->nparams > STORE_PARAMS_LIMIT)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "%d parameters (at most %d)", q->nparams,
		    STORE_PARAMS_LIMIT);
	if (q->nparams > 0 && q->values == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "parameters without values");
	for (i = 0; i < q->nparams; i++) {
		if (q->formats == NULL || q->formats[i] == 0 || q->values[i] == NULL)
			continue;
		if (q->formats[i] != 1 || q->lengths == NULL || q->lengths[i] < 0)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "parameter %d: binary format needs a length", i + 1);
	}
	return 0;
}

/* ---- jobs ---- */

static void job_free(struct store_job *job)
{
	if (job == NULL)
		return;
	if (job->data != NULL) {
		explicit_bzero(job->data, job->data_len);
		free(job->data);
	}
	free(job->sql);
	free(job->values);
	free(job->lengths);
	free(job->formats);
	PQclear(job->res.pg);
	free(job);
}

static struct store_job *job_new(
    const struct store_query *q, store_cb cb, void *arg, pcs_error *err)
{
	struct store_job *job = NULL, *ret = NULL;
	size_t total = 0, off = 0, n;
	int i, binary;

	if ((job = calloc(1, sizeof(*job))) == NULL || (job->sql = strdup(q->sql)) == NULL) {
		pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	job->state = JOB_QUEUED;
	job->cb = cb;
	job->arg = arg;
	job->nparams = q->nparams;
	if ((job->values = calloc((size_t)q->nparams + 1, sizeof(*job->values))) == NULL ||
	    (job->lengths = calloc((size_t)q->nparams + 1, sizeof(*job->lengths))) == NULL ||
	    (job->formats = calloc((size_t)q->nparams + 1, sizeof(*job->formats))) == NULL) {
		pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (i = 0; i < q->nparams; i++) {
		if (q->values[i] == NULL)
			continue;
		binary = q->formats != NULL && q->formats[i] == 1;
		total += binary ? (size_t)q->lengths[i] : strlen(q->values[i]) + 1;
	}
	job->data_len = total;
	if ((job->data = malloc(total > 0 ? total : 1)) == NULL) {
		pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (i = 0; i < q->nparams; i++) {
		binary = q->formats != NULL && q->formats[i] == 1;
		job->formats[i] = binary;
		if (q->values[i] == NULL)
			continue;
		n = binary ? (size_t)q->lengths[i] : strlen(q->values[i]) + 1;
		memcpy(job->data + off, q->values[i], n);
		job->values[i] = job->data + off;
		job->lengths[i] = binary ? q->lengths[i] : 0;
		off += n;
	}
	ret = job;
	job = NULL;
out:
	job_free(job);
	return ret;
}

/* ---- the pool ---- */

static void store_log(struct store *s, int level, const char *event, const char *detail)
{
	if (s->log_fn != NULL)
		s->log_fn(level, event, detail, s->log_arg);
}

void store_set_logger(struct store *s, store_log_fn fn, void *arg)
{
	s->log_fn = fn;
	s->log_arg = arg;
}

/*
 * Runs the job's callback (unless cancelled) and frees it. Returns STORE_GONE when the
 * callback closed the store, which is then freed here.
 */
static int deliver(struct store *s, struct store_job *job)
{
	if (job->res.status == 0)
		s->completed++;
	else
		s->failed++;
	job->state = JOB_DONE;
	if (!job->cancelled) {
		s->in_callback = 1;
		job->cb(&job->res, job->arg);
		s->in_callback = 0;
	}
	job_free(job);
	if (s->close_pending) {
		store_free(s);
		return STORE_GONE;
	}
	return 0;
}

/* Runs job on sl. Returns STORE_GONE, or 0 (the job is then running, requeued or done). */
static int slot_send(struct slot *sl, struct store_job *job)
{
	int r;

	/* Running before it is sent: a connection that breaks under it fails sl->job. */
	job->state = JOB_RUNNING;
	sl->job = job;
	r = pgconn_send(
	    sl->pc, job->sql, job->nparams, job->values, job->lengths, job->formats, !job->once);
	if (r != PGCONN_REFUSED)
		return r;
	sl->job = NULL;
	result_fail(&job->res, PCS_INTERNAL, "%s", "could not send the statement to the database");
	return deliver(sl->s, job);
}

/* Gives an idle connection the next queued job. Returns STORE_GONE or 0. */
static int slot_next(struct slot *sl)
{
	struct store *s = sl->s;
	struct store_job *job;

	while (pgconn_is_up(sl->pc) && sl->job == NULL && (job = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, job, entry);
		s->queued--;
		if (slot_send(sl, job) == STORE_GONE)
			return STORE_GONE;
	}
	return 0;
}

/* pgconn_cbs: what a connection of the pool reports. */

static int slot_on_ready(struct pgconn *pc, void *arg)
{
	struct slot *sl = arg;
	char detail[64];

	(void)pc;
	snprintf(detail, sizeof(detail), "connection %d of %d", sl->index + 1, sl->s->pool_size);
	store_log(sl->s, 0, sl->was_up ? "db_reconnected" : "db_connected", detail);
	sl->was_up = 1;
	return slot_next(sl);
}

static int slot_on_result(struct pgconn *pc, struct pg_result *res, void *arg)
{
	struct slot *sl = arg;
	struct store_job *job = sl->job;

	(void)pc;
	sl->job = NULL;
	if (job == NULL) {
		/* Not reached: a statement runs only for a job. */
		PQclear(res);
		return slot_next(sl);
	}
	store_result_set(&job->res, res, 0);
	if (deliver(sl->s, job) == STORE_GONE)
		return STORE_GONE;
	return slot_next(sl);
}

/*
 * The connection is down already. A job that never reached the server goes back to the head
 * of the queue, for any connection; a running one fails.
 */
static int slot_on_lost(struct pgconn *pc, enum pgconn_loss why, const char *detail, void *arg)
{
	struct slot *sl = arg;
	struct store *s = sl->s;
	struct store_job *job = sl->job;

	(void)pc;
	sl->job = NULL;
	if (why == PGCONN_BROKEN_UNSENT && job != NULL) {
		job->state = JOB_QUEUED;
		TAILQ_INSERT_HEAD(&s->queue, job, entry);
		s->queued++;
		job = NULL;
		/*
		 * This can come from the loop (a break between preparing and executing), where no
		 * slot_next is on its way: an idle connection must hear of the job.
		 */
		event_active(s->kick, EV_TIMEOUT, 0);
	}
	/* A session dropped for a COPY is not logged: the job's own error says what happened. */
	if (why == PGCONN_CONNECT_FAILED)
		store_log(s, 1, "db_connect_failed", detail);
	else if (why != PGCONN_COPY)
		store_log(s, 2, "db_connection_lost", detail);
	store_arm_starve(s);
	if (job == NULL)
		return 0;
	PQclear(job->res.pg);
	job->res.pg = NULL;
	if (why == PGCONN_COPY)
		result_fail(&job->res, PCS_INTERNAL, "%s", "COPY is not supported by the store");
	else
		result_fail(&job->res, PCS_UNAVAILABLE, "%s", "database connection lost");
	return deliver(s, job);
}

static const struct pgconn_cbs slot_cbs = { slot_on_ready, slot_on_result, slot_on_lost, NULL };

/* Submissions dispatch from the loop, so a callback never runs inside store_submit. */
static void store_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	int i;

	(void)fd;
	(void)what;
	for (i = 0; i < s->pool_size; i++)
		if (slot_next(&s->slots[i]) == STORE_GONE)
			return;
}

static int store_any_up(const struct store *s)
{
	for (int i = 0; i < s->pool_size; i++)
		if (pgconn_is_up(s->slots[i].pc))
			return 1;
	return 0;
}

/*
 * While no connection is up, the oldest queued job decides when the starve timer fires. With
 * a connection up the queue drains by itself and the timer has nothing to do.
 */
static void store_arm_starve(struct store *s)
{
	struct store_job *job = TAILQ_FIRST(&s->queue);
	uint64_t now, due;
	struct timeval tv;

	if (s->wait_ms <= 0 || s->starve == NULL || job == NULL || store_any_up(s) ||
	    evtimer_pending(s->starve, NULL))
		return;
	now = now_ms();
	due = job->queued_ms + (uint64_t)s->wait_ms;
	due = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(due / 1000);
	tv.tv_usec = (suseconds_t)((due % 1000) * 1000);
	evtimer_add(s->starve, &tv);
}

/* No connection came up in time: jobs that waited wait_ms fail now, not at their deadline. */
static void store_on_starve(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	struct store_job *job;
	uint64_t now = now_ms();

	(void)fd;
	(void)what;
	while (!store_any_up(s) && (job = TAILQ_FIRST(&s->queue)) != NULL &&
	    job->queued_ms + (uint64_t)s->wait_ms <= now) {
		TAILQ_REMOVE(&s->queue, job, entry);
		s->queued--;
		result_fail(&job->res, PCS_UNAVAILABLE,
		    "no database connection is up (waited %d ms)", s->wait_ms);
		if (deliver(s, job) == STORE_GONE)
			return;
	}
	store_arm_starve(s);
}

void store_set_wait_limit(struct store *s, int ms)
{
	s->wait_ms = ms;
	store_arm_starve(s);
}

int store_open(struct event_base *base, const char *conninfo, int pool_size, struct store **out,
    pcs_error *err)
{
	struct store *s = NULL;
	int i, ret;

	*out = NULL;
	if (base == NULL || pool_size < 1 || pool_size > STORE_POOL_MAX) {
		ret = pcs_fail(err, PCS_INVALID_ARGUMENT, "database pool size %d (1 to %d)",
		    pool_size, STORE_POOL_MAX);
		goto out;
	}
	if ((ret = pgconn_conninfo_check(conninfo, err)) != 0)
		goto out;
	ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto out;
	TAILQ_INIT(&s->queue);
	s->base = base;
	s->pool_size = pool_size;
	if ((s->conninfo = strdup(conninfo)) == NULL ||
	    (s->slots = calloc((size_t)pool_size, sizeof(*s->slots))) == NULL ||
	    (s->kick = event_new(base, -1, 0, store_on_kick, s)) == NULL ||
	    (s->starve = evtimer_new(base, store_on_starve, s)) == NULL)
		goto out;
	for (i = 0; i < pool_size; i++) {
		struct slot *sl = &s->slots[i];

		sl->s = s;
		sl->index = i;
		/* Its first attempt starts from the loop: a logger set after store_open sees it. */
		if ((ret = pgconn_new(base, s->conninfo, &slot_cbs, sl, &sl->pc, err)) != 0)
			goto out;
	}
	pcs_error_clear(err);
	*out = s;
	s = NULL;
	ret = 0;
out:
	if (s != NULL)
		store_free(s);
	return ret;
}

static void store_free(struct store *s)
{
	struct store_job *job;
	int i;

	while ((job = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, job, entry);
		job_free(job);
	}
	for (i = 0; s->slots != NULL && i < s->pool_size; i++) {
		job_free(s->slots[i].job);
		pgconn_free(s->slots[i].pc);
	}
	free(s->slots);
	if (s->kick != NULL)
		event_free(s->kick);
	if (s->starve != NULL)
		event_free(s->starve);
	if (s->conninfo != NULL) {
		/* It can hold a password. */
		explicit_bzero(s->conninfo, strlen(s->conninfo));
		free(s->conninfo);
	}
	free(s);
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->in_callback) {
		s->close_pending = 1;
		return;
	}
	store_free(s);
}

static struct store_job *submit(
    struct store *s, const struct store_query *q, int once, store_cb cb, void *arg, pcs_error *err)
{
	struct store_job *job;
	int i;

	if (cb == NULL) {
		pcs_fail(err, PCS_INVALID_ARGUMENT, "no callback");
		return NULL;
	}
	if (s->close_pending) {
		pcs_fail(err, PCS_UNAVAILABLE, "the database pool is closing");
		return NULL;
	}
	if (s->queued >= STORE_QUEUE_MAX) {
		pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "database queue is full (%d jobs)",
		    STORE_QUEUE_MAX);
		return NULL;
	}
	if (store_query_check(q, err) != 0 || (job = job_new(q, cb, arg, err)) == NULL)
		return NULL;
	job->s = s;
	job->once = once;
	job->queued_ms = now_ms();
	TAILQ_INSERT_TAIL(&s->queue, job, entry);
	s->queued++;
	for (i = 0; i < s->pool_size; i++) {
		if (pgconn_is_up(s->slots[i].pc) && s->slots[i].job == NULL) {
			event_active(s->kick, EV_TIMEOUT, 0);
			break;
		}
	}
	store_arm_starve(s);
	return job;
}

struct store_job *store_submit(
    struct store *s, const struct store_query *q, store_cb cb, void *arg, pcs_error *err)
{
	return submit(s, q, 0, cb, arg, err);
}

struct store_job *store_submit_once(
    struct store *s, const struct store_query *q, store_cb cb, void *arg, pcs_error *err)
{
	return submit(s, q, 1, cb, arg, err);
}

void store_cancel(struct store_job *job)
{
	if (job == NULL)
		return;
	if (job->state != JOB_QUEUED) {
		/* Running: freed when its result arrives. Done: being delivered right now. */
		job->cancelled = 1;
		return;
	}
	TAILQ_REMOVE(&job->s->queue, job, entry);
	job->s->queued--;
	job_free(job);
}

void store_get_stats(const struct store *s, struct store_stats *out)
{
	int i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < s->pool_size; i++) {
		if (pgconn_is_up(s->slots[i].pc))
			out->connections_up++;
		out->prepared += pgconn_prepared(s->slots[i].pc);
	}
	out->pool_size = s->pool_size;
	out->queued = s->queued;
	out->completed = s->completed;
	out->failed = s->failed;
}

int store_idle(const struct store *s)
{
	int i;

	if (s->queued > 0)
		return 0;
	for (i = 0; i < s->pool_size; i++)
		if (s->slots[i].job != NULL)
			return 0;
	return 1;
}
