/*
 * store: a pool of non-blocking libpq connections on the daemon's libevent loop, plus a
 * blocking API for start-up. The only file that includes libpq-fe.h.
 *
 * Each pooled connection runs one job at a time (no pipelining: a job's failure must never
 * take unrelated jobs down with it, and one statement per round trip is what callers need).
 * A job's callback may submit, cancel or even close the store, so every path that runs a
 * callback reports STORE_GONE when the store was freed underneath it and its callers stop
 * touching anything at once.
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

#include "store.h"

#define STORE_QUEUE_MAX 10000
#define STORE_POOL_MAX 64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* PQconnectPoll itself never times out (connect_timeout only applies to blocking connects). */
#define CONNECT_TIMEOUT_MS 10000
#define STORE_GONE 1

struct store_result {
	PGresult *pg;  /* NULL for a synthesized error */
	int status;
	char message[256];
};

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct store_job {
	TAILQ_ENTRY(store_job) entry;
	struct store *s;
	enum job_state state;
	int cancelled;
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
	uint64_t queued_ms;   /* when it was submitted (monotonic) */
	/* Embedded so delivering a result never needs an allocation that could fail. */
	struct store_result res;
};

TAILQ_HEAD(job_queue, store_job);

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_READY };

struct pconn {
	struct store *s;
	int index;
	enum conn_state state;
	PGconn *pg;
	struct event *io;
	evutil_socket_t io_fd;
	short io_what;
	struct event *timer;  /* backoff while down, connect timeout while connecting */
	int backoff_ms;
	int was_up;
	int want_write;
	struct store_job *job;
	PGresult *kept;  /* the result to deliver: the last one, or the first error */
};

struct store {
	struct event_base *base;
	char *conninfo;
	int pool_size;
	struct pconn *conns;
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

struct store_sync {
	PGconn *pg;
};

static void store_free(struct store *s);
static int conn_next(struct pconn *c);
static void store_arm_starve(struct store *s);

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- results ---- */

static void result_fail(struct store_result *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
result_fail(struct store_result *r, int code, const char *fmt, ...)
{
	va_list ap;

	r->status = -code;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

static int
sqlstate_ok(const char *st)
{
	size_t i;

	if (st == NULL || strlen(st) != 5)
		return 0;
	for (i = 0; i < 5; i++)
		if (!isdigit((unsigned char)st[i]) && !isupper((unsigned char)st[i]))
			return 0;
	return 1;
}

/* Only SQLSTATEs and our own PS0nn messages leave here: PostgreSQL's text can repeat values. */
static void
result_map_error(struct store_result *r, int conn_bad)
{
	const char *st = r->pg != NULL ? PQresultErrorField(r->pg, PG_DIAG_SQLSTATE) : NULL;
	const char *primary;
	int nn;

	if (!sqlstate_ok(st)) {
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
			result_fail(r, nn, "%s", primary != NULL ? primary : "database refused the call");
			return;
		}
	}
	if (strcmp(st, "23505") == 0)
		result_fail(r, PCS_ALREADY_EXISTS, "%s", "already exists");
	else if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
		result_fail(r, PCS_ABORTED, "%s", "conflicting concurrent change; retry");
	else if (strcmp(st, "57014") == 0)
		result_fail(r, PCS_DEADLINE_EXCEEDED, "%s",
		    "database statement cancelled (timeout)");
	else if (conn_bad || strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
	    strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0)
		result_fail(r, PCS_UNAVAILABLE, "database unavailable (SQLSTATE %s)", st);
	else
		result_fail(r, PCS_INTERNAL, "database error (SQLSTATE %s)", st);
}

/* Takes ownership of pg (which may be NULL: no result at all). */
static void
result_set(struct store_result *r, PGresult *pg, int conn_bad)
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

int
store_result_status(const struct store_result *r)
{
	return r->status;
}

const char *
store_result_message(const struct store_result *r)
{
	return r->status == 0 ? "" : r->message;
}

int
store_result_ntuples(const struct store_result *r)
{
	return r->pg != NULL ? PQntuples(r->pg) : 0;
}

int
store_result_nfields(const struct store_result *r)
{
	return r->pg != NULL ? PQnfields(r->pg) : 0;
}

static int
cell_ok(const struct store_result *r, int row, int col)
{
	return r->pg != NULL && row >= 0 && col >= 0 && row < PQntuples(r->pg) &&
	    col < PQnfields(r->pg);
}

const char *
store_result_value(const struct store_result *r, int row, int col)
{
	return cell_ok(r, row, col) ? PQgetvalue(r->pg, row, col) : "";
}

int
store_result_isnull(const struct store_result *r, int row, int col)
{
	return cell_ok(r, row, col) ? PQgetisnull(r->pg, row, col) : 1;
}

int
store_result_bytea(const struct store_result *r, int row, int col, uint8_t **out,
    size_t *len)
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
	if ((raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r->pg, row, col),
	    &n)) == NULL)
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

void
store_result_free(struct store_result *r)
{
	if (r == NULL)
		return;
	PQclear(r->pg);
	free(r);
}

/* ---- shared helpers ---- */

/* Notices would go to stderr by default, and their text can repeat values. */
static void
notice_drop(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

/*
 * Checks conninfo before libpq sees it for real: libpq's parse errors quote fragments of
 * the string, which can be a password.
 */
static int
conninfo_check(const char *conninfo, pcs_error *err)
{
	PQconninfoOption *opts;
	char *msg = NULL;

	if (conninfo == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no database connection string");
	if ((opts = PQconninfoParse(conninfo, &msg)) == NULL) {
		if (msg != NULL)
			PQfreemem(msg);
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "the database connection string is not valid");
	}
	PQconninfoFree(opts);
	return 0;
}

/* Copies a libpq message onto one line (they end in newlines and can span several). */
static void
oneline(char *dst, size_t size, const char *src)
{
	size_t i, n = 0;

	for (i = 0; src != NULL && src[i] != '\0' && n + 1 < size; i++) {
		if (src[i] == '\n' || src[i] == '\r' || src[i] == '\t') {
			if (n > 0 && dst[n - 1] != ' ')
				dst[n++] = ' ';
		} else
			dst[n++] = src[i];
	}
	while (n > 0 && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

static int
query_check(const struct store_query *q, pcs_error *err)
{
	int i;

	if (q == NULL || q->sql == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no SQL statement");
	if (q->nparams < 0 || q->nparams > STORE_PARAMS_LIMIT)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "%d parameters (at most %d)",
		    q->nparams, STORE_PARAMS_LIMIT);
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

static void
job_free(struct store_job *job)
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

static struct store_job *
job_new(const struct store_query *q, store_cb cb, void *arg, pcs_error *err)
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

static void
store_log(struct store *s, int level, const char *event, const char *detail)
{
	if (s->log_fn != NULL)
		s->log_fn(level, event, detail, s->log_arg);
}

void
store_set_logger(struct store *s, store_log_fn fn, void *arg)
{
	s->log_fn = fn;
	s->log_arg = arg;
}

/*
 * Runs the job's callback (unless cancelled) and frees it. Returns STORE_GONE when the
 * callback closed the store, which is then freed here.
 */
static int
deliver(struct store *s, struct store_job *job)
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

static void
conn_unwatch(struct pconn *c)
{
	if (c->io != NULL) {
		event_free(c->io);
		c->io = NULL;
	}
}

static void conn_on_io(evutil_socket_t fd, short what, void *arg);

/*
 * force: libpq may close a socket and open another that gets the same number while
 * connecting, and epoll forgets a closed descriptor, so that phase always re-registers.
 */
static int
conn_watch(struct pconn *c, short what, int force)
{
	evutil_socket_t fd = PQsocket(c->pg);

	if (fd < 0)
		return -1;
	if (c->io != NULL && !force && fd == c->io_fd && what == c->io_what)
		return 0;
	conn_unwatch(c);
	if ((c->io = event_new(c->s->base, fd, (short)(what | EV_PERSIST), conn_on_io, c)) ==
	    NULL)
		return -1;
	if (event_add(c->io, NULL) != 0) {
		conn_unwatch(c);
		return -1;
	}
	c->io_fd = fd;
	c->io_what = what;
	return 0;
}

static void
conn_timer_in(struct pconn *c, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(c->timer, &tv);
}

/* Drops the libpq connection and schedules the next attempt after the backoff. */
static void
conn_down(struct pconn *c)
{
	conn_unwatch(c);
	PQclear(c->kept);
	c->kept = NULL;
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->state = CONN_DOWN;
	c->want_write = 0;
	store_arm_starve(c->s);
	conn_timer_in(c, c->backoff_ms);
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void
conn_connect_failed(struct pconn *c, const char *why)
{
	char detail[256];

	oneline(detail, sizeof(detail), why);
	store_log(c->s, 1, "db_connect_failed", detail);
	conn_down(c);
}

/*
 * The running job (if any) gets UNAVAILABLE. detail is a SQLSTATE or a fixed phrase, never
 * PQerrorMessage: after a statement error that still holds the statement's message.
 */
static int
conn_lost(struct pconn *c, const char *detail)
{
	struct store_job *job = c->job;

	store_log(c->s, 2, "db_connection_lost", detail != NULL ? detail : "connection closed");
	c->job = NULL;
	conn_down(c);
	if (job == NULL)
		return 0;
	PQclear(job->res.pg);
	job->res.pg = NULL;
	result_fail(&job->res, PCS_UNAVAILABLE, "%s", "database connection lost");
	return deliver(c->s, job);
}

static const char *
kept_sqlstate(const struct pconn *c)
{
	const char *st;

	if (c->kept == NULL)
		return NULL;
	st = PQresultErrorField(c->kept, PG_DIAG_SQLSTATE);
	return sqlstate_ok(st) ? st : NULL;
}

static void
conn_connected(struct pconn *c)
{
	char detail[64];

	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_connect_failed(c, "could not make the connection non-blocking");
		return;
	}
	PQsetNoticeReceiver(c->pg, notice_drop, NULL);
	evtimer_del(c->timer);
	c->state = CONN_READY;
	c->backoff_ms = BACKOFF_MIN_MS;
	if (conn_watch(c, EV_READ, 1) != 0) {
		conn_lost(c, "could not watch the socket");
		return;
	}
	snprintf(detail, sizeof(detail), "connection %d of %d", c->index + 1, c->s->pool_size);
	store_log(c->s, 0, c->was_up ? "db_reconnected" : "db_connected", detail);
	c->was_up = 1;
	conn_next(c);
}

static void
conn_poll_connect(struct pconn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		if (conn_watch(c, EV_READ, 1) != 0)
			conn_connect_failed(c, "could not watch the socket");
		break;
	case PGRES_POLLING_WRITING:
		if (conn_watch(c, EV_WRITE, 1) != 0)
			conn_connect_failed(c, "could not watch the socket");
		break;
	case PGRES_POLLING_OK:
		conn_connected(c);
		break;
	default:
		conn_connect_failed(c, PQerrorMessage(c->pg));
		break;
	}
}

static void
conn_start(struct pconn *c)
{
	if ((c->pg = PQconnectStart(c->s->conninfo)) == NULL) {
		conn_connect_failed(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_connect_failed(c, PQerrorMessage(c->pg));
		return;
	}
	PQsetNoticeReceiver(c->pg, notice_drop, NULL);
	c->state = CONN_CONNECTING;
	conn_timer_in(c, CONNECT_TIMEOUT_MS);
	/* libpq: before the first PQconnectPoll, behave as if it had asked to write. */
	if (conn_watch(c, EV_WRITE, 1) != 0)
		conn_connect_failed(c, "could not watch the socket");
}

static void
conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pconn *c = arg;

	(void)fd;
	(void)what;
	if (c->state == CONN_DOWN)
		conn_start(c);
	else if (c->state == CONN_CONNECTING)
		conn_connect_failed(c, "timed out");
}

/* Sends job on c. Returns STORE_GONE, or 0 (the job is then running, requeued or done). */
static int
conn_send(struct pconn *c, struct store_job *job)
{
	struct store *s = c->s;
	int r;

	if (!PQsendQueryParams(c->pg, job->sql, job->nparams, NULL, job->values, job->lengths,
	    job->formats, 0)) {
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			/* Nothing reached the server: the job may go to another connection. */
			TAILQ_INSERT_HEAD(&s->queue, job, entry);
			s->queued++;
			return conn_lost(c, "connection closed");
		}
		result_fail(&job->res, PCS_INTERNAL, "%s",
		    "could not send the statement to the database");
		return deliver(s, job);
	}
	job->state = JOB_RUNNING;
	c->job = job;
	if ((r = PQflush(c->pg)) < 0)
		return conn_lost(c, "connection closed");
	c->want_write = r == 1;
	if (conn_watch(c, c->want_write ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
		return conn_lost(c, "could not watch the socket");
	return 0;
}

/* Gives an idle connection the next queued job. Returns STORE_GONE or 0. */
static int
conn_next(struct pconn *c)
{
	struct store *s = c->s;
	struct store_job *job;

	while (c->state == CONN_READY && c->job == NULL &&
	    (job = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, job, entry);
		s->queued--;
		if (conn_send(c, job) == STORE_GONE)
			return STORE_GONE;
	}
	return 0;
}

static int
conn_finish_job(struct pconn *c)
{
	struct store_job *job = c->job;

	c->job = NULL;
	result_set(&job->res, c->kept, 0);
	c->kept = NULL;
	if (deliver(c->s, job) == STORE_GONE)
		return STORE_GONE;
	return conn_next(c);
}

/* Collects every result libpq has parsed. Returns STORE_GONE or 0. */
static int
conn_drain(struct pconn *c)
{
	PGresult *r;
	ExecStatusType st;

	while (c->state == CONN_READY) {
		if (PQstatus(c->pg) == CONNECTION_BAD)
			return conn_lost(c, kept_sqlstate(c));
		if (PQisBusy(c->pg))
			return 0;
		if ((r = PQgetResult(c->pg)) == NULL) {
			if (c->job == NULL)
				return 0;
			if (conn_finish_job(c) == STORE_GONE)
				return STORE_GONE;
			continue;
		}
		if (c->job == NULL) {
			PQclear(r);
			continue;
		}
		st = PQresultStatus(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			/* libpq would hand this result back forever; the session is unusable. */
			struct store_job *job = c->job;

			PQclear(r);
			c->job = NULL;
			conn_down(c);
			result_fail(&job->res, PCS_INTERNAL, "%s", "COPY is not supported by the store");
			return deliver(c->s, job);
		}
		if (c->kept != NULL && PQresultStatus(c->kept) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			PQclear(c->kept);
			c->kept = r;
		}
	}
	return 0;
}

static void
conn_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pconn *c = arg;
	int r;

	(void)fd;
	if (c->state == CONN_CONNECTING) {
		conn_poll_connect(c);
		return;
	}
	if ((what & EV_READ) && !PQconsumeInput(c->pg)) {
		conn_lost(c, kept_sqlstate(c));
		return;
	}
	/* libpq: while output is pending, readable also means "try PQflush again". */
	if (c->want_write) {
		if ((r = PQflush(c->pg)) < 0) {
			conn_lost(c, "connection closed");
			return;
		}
		c->want_write = r == 1;
	}
	if (conn_drain(c) == STORE_GONE)
		return;
	if (c->state == CONN_READY &&
	    conn_watch(c, c->want_write ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
		conn_lost(c, "could not watch the socket");
}

/* Submissions dispatch from the loop, so a callback never runs inside store_submit. */
static void
store_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	int i;

	(void)fd;
	(void)what;
	for (i = 0; i < s->pool_size; i++)
		if (conn_next(&s->conns[i]) == STORE_GONE)
			return;
}

static int
store_any_up(const struct store *s)
{
	for (int i = 0; i < s->pool_size; i++)
		if (s->conns[i].state == CONN_READY)
			return 1;
	return 0;
}

/*
 * While no connection is up, the oldest queued job decides when the starve timer fires. With
 * a connection up the queue drains by itself and the timer has nothing to do.
 */
static void
store_arm_starve(struct store *s)
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
static void
store_on_starve(evutil_socket_t fd, short what, void *arg)
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
		result_fail(&job->res, PCS_UNAVAILABLE, "no database connection is up (waited %d ms)",
		    s->wait_ms);
		if (deliver(s, job) == STORE_GONE)
			return;
	}
	store_arm_starve(s);
}

void
store_set_wait_limit(struct store *s, int ms)
{
	s->wait_ms = ms;
	store_arm_starve(s);
}

int
store_open(struct event_base *base, const char *conninfo, int pool_size, struct store **out,
    pcs_error *err)
{
	struct store *s = NULL;
	struct timeval now = { 0, 0 };
	int i, ret;

	*out = NULL;
	if (base == NULL || pool_size < 1 || pool_size > STORE_POOL_MAX) {
		ret = pcs_fail(err, PCS_INVALID_ARGUMENT, "database pool size %d (1 to %d)",
		    pool_size, STORE_POOL_MAX);
		goto out;
	}
	if ((ret = conninfo_check(conninfo, err)) != 0)
		goto out;
	ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto out;
	TAILQ_INIT(&s->queue);
	s->base = base;
	s->pool_size = pool_size;
	if ((s->conninfo = strdup(conninfo)) == NULL ||
	    (s->conns = calloc((size_t)pool_size, sizeof(*s->conns))) == NULL ||
	    (s->kick = event_new(base, -1, 0, store_on_kick, s)) == NULL ||
	    (s->starve = evtimer_new(base, store_on_starve, s)) == NULL)
		goto out;
	for (i = 0; i < pool_size; i++) {
		struct pconn *c = &s->conns[i];

		c->s = s;
		c->index = i;
		c->state = CONN_DOWN;
		c->backoff_ms = BACKOFF_MIN_MS;
		if ((c->timer = evtimer_new(base, conn_on_timer, c)) == NULL)
			goto out;
		/* From the loop, so a logger set right after store_open sees the first attempt. */
		evtimer_add(c->timer, &now);
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

static void
store_free(struct store *s)
{
	struct store_job *job;
	int i;

	while ((job = TAILQ_FIRST(&s->queue)) != NULL) {
		TAILQ_REMOVE(&s->queue, job, entry);
		job_free(job);
	}
	for (i = 0; s->conns != NULL && i < s->pool_size; i++) {
		struct pconn *c = &s->conns[i];

		job_free(c->job);
		conn_unwatch(c);
		PQclear(c->kept);
		if (c->pg != NULL)
			PQfinish(c->pg);
		if (c->timer != NULL)
			event_free(c->timer);
	}
	free(s->conns);
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

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->in_callback) {
		s->close_pending = 1;
		return;
	}
	store_free(s);
}

struct store_job *
store_submit(struct store *s, const struct store_query *q, store_cb cb, void *arg,
    pcs_error *err)
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
	if (query_check(q, err) != 0 || (job = job_new(q, cb, arg, err)) == NULL)
		return NULL;
	job->s = s;
	job->queued_ms = now_ms();
	TAILQ_INSERT_TAIL(&s->queue, job, entry);
	s->queued++;
	for (i = 0; i < s->pool_size; i++) {
		if (s->conns[i].state == CONN_READY && s->conns[i].job == NULL) {
			event_active(s->kick, EV_TIMEOUT, 0);
			break;
		}
	}
	store_arm_starve(s);
	return job;
}

void
store_cancel(struct store_job *job)
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

void
store_get_stats(const struct store *s, struct store_stats *out)
{
	int i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < s->pool_size; i++)
		if (s->conns[i].state == CONN_READY)
			out->connections_up++;
	out->pool_size = s->pool_size;
	out->queued = s->queued;
	out->completed = s->completed;
	out->failed = s->failed;
}

int
store_idle(const struct store *s)
{
	int i;

	if (s->queued > 0)
		return 0;
	for (i = 0; i < s->pool_size; i++)
		if (s->conns[i].job != NULL)
			return 0;
	return 1;
}

/* ---- connection strings ---- */

/* Appends value to p as a single-quoted conninfo value; returns the new end. */
static char *
quote_value(char *p, const char *value)
{
	*p++ = '\'';
	for (; *value != '\0'; value++) {
		if (*value == '\'' || *value == '\\')
			*p++ = '\\';
		*p++ = *value;
	}
	*p++ = '\'';
	return p;
}

int
store_conninfo_add_options(const char *conninfo, const char *options, char **out,
    pcs_error *err)
{
	PQconninfoOption *opts = NULL, *o;
	const char *have = NULL;
	char *merged = NULL, *buf = NULL, *p;
	size_t size, merged_size = 0, buf_size = 0;
	int ret;

	*out = NULL;
	if ((ret = conninfo_check(conninfo, err)) != 0)
		goto out;
	ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	if ((opts = PQconninfoParse(conninfo, NULL)) == NULL)
		goto out;
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "options") == 0)
			have = o->val;
	/* Explicit options would hide PGOPTIONS from libpq: keep what it says. */
	if (have == NULL)
		have = getenv("PGOPTIONS");
	if (have == NULL)
		have = "";
	merged_size = strlen(have) + 1 + strlen(options) + 1;
	if ((merged = malloc(merged_size)) == NULL)
		goto out;
	/* The server reads -c settings in order: ours, last, win over the same ones before. */
	snprintf(merged, merged_size, "%s%s%s", have, have[0] != '\0' ? " " : "", options);
	size = sizeof("options=''") + 2 * strlen(merged);
	for (o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "options") != 0)
			size += strlen(o->keyword) + sizeof("='' ") + 2 * strlen(o->val);
	buf_size = size;
	if ((buf = malloc(buf_size)) == NULL)
		goto out;
	p = buf;
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || strcmp(o->keyword, "options") == 0)
			continue;
		memcpy(p, o->keyword, strlen(o->keyword));
		p += strlen(o->keyword);
		*p++ = '=';
		p = quote_value(p, o->val);
		*p++ = ' ';
	}
	memcpy(p, "options=", 8);
	p = quote_value(p + 8, merged);
	*p = '\0';
	*out = buf;
	buf = NULL;
	pcs_error_clear(err);
	ret = 0;
out:
	/* Both may hold the password. */
	if (merged != NULL) {
		explicit_bzero(merged, merged_size);
		free(merged);
	}
	if (buf != NULL) {
		explicit_bzero(buf, buf_size);
		free(buf);
	}
	PQconninfoFree(opts);
	return ret;
}

void
store_conninfo_free(char *conninfo)
{
	if (conninfo == NULL)
		return;
	explicit_bzero(conninfo, strlen(conninfo));
	free(conninfo);
}

/* ---- blocking API for start-up ---- */

int
store_sync_connect(const char *conninfo, struct store_sync **out, pcs_error *err)
{
	struct store_sync *c = NULL;
	char why[200];
	int ret;

	*out = NULL;
	if ((ret = conninfo_check(conninfo, err)) != 0)
		goto out;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->pg = PQconnectdb(conninfo)) == NULL) {
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (PQstatus(c->pg) != CONNECTION_OK) {
		oneline(why, sizeof(why), PQerrorMessage(c->pg));
		ret = pcs_fail(err, PCS_UNAVAILABLE, "could not connect to the database: %s", why);
		goto out;
	}
	PQsetNoticeReceiver(c->pg, notice_drop, NULL);
	pcs_error_clear(err);
	*out = c;
	c = NULL;
	ret = 0;
out:
	store_sync_close(c);
	return ret;
}

/* Takes ownership of pg; on success hands it to *out (or frees it when out is NULL). */
static int
sync_result(struct store_sync *c, PGresult *pg, struct store_result **out, pcs_error *err)
{
	struct store_result *r = NULL;
	int ret;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		PQclear(pg);
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	result_set(r, pg, PQstatus(c->pg) == CONNECTION_BAD);
	if ((ret = r->status) != 0) {
		pcs_fail(err, -ret, "%s", r->message);
		goto out;
	}
	pcs_error_clear(err);
	if (out != NULL) {
		*out = r;
		r = NULL;
	}
out:
	store_result_free(r);
	return ret;
}

int
store_sync_exec(struct store_sync *c, const struct store_query *q, struct store_result **out,
    pcs_error *err)
{
	int ret;

	*out = NULL;
	if ((ret = query_check(q, err)) != 0)
		return ret;
	return sync_result(c, PQexecParams(c->pg, q->sql, q->nparams, NULL, q->values, q->lengths,
	    q->formats, 0), out, err);
}

int
store_sync_exec_script(struct store_sync *c, const char *sql, pcs_error *err)
{
	if (sql == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no SQL script");
	/* PQexec (not PQexecParams): only the simple protocol runs several statements. */
	return sync_result(c, PQexec(c->pg, sql), NULL, err);
}

void
store_sync_close(struct store_sync *c)
{
	if (c == NULL)
		return;
	if (c->pg != NULL)
		PQfinish(c->pg);
	free(c);
}

/* ---- statement descriptions (start-up: the db layer checks its statements' columns) ---- */

int
store_sync_describe(struct store_sync *c, const char *sql, struct store_result **out,
    pcs_error *err)
{
	int ret;

	*out = NULL;
	if (sql == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no SQL statement");
	/* The unnamed statement: prepared, never run; parameter types are inferred. */
	if ((ret = sync_result(c, PQprepare(c->pg, "", sql, 0, NULL), NULL, err)) != 0)
		return ret;
	return sync_result(c, PQdescribePrepared(c->pg, ""), out, err);
}

const char *
store_result_fname(const struct store_result *r, int col)
{
	const char *name;

	if (r->pg == NULL || col < 0 || col >= PQnfields(r->pg) ||
	    (name = PQfname(r->pg, col)) == NULL)
		return "";
	return name;
}

int
store_result_nparams(const struct store_result *r)
{
	return r->pg != NULL ? PQnparams(r->pg) : 0;
}

unsigned
store_result_paramtype(const struct store_result *r, int i)
{
	return r->pg != NULL && i >= 0 && i < PQnparams(r->pg) ? (unsigned)PQparamtype(r->pg, i) : 0;
}
