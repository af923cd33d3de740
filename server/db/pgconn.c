/*
 * pgconn: one non-blocking libpq connection on the loop (pgconn.h), the textbook way:
 * PQconnectStart/PQconnectPoll with the socket watched for what libpq asks, then
 * PQsendQueryParams and PQflush (1: wait until writable), and on input PQconsumeInput then
 * PQisBusy/PQgetResult until NULL.
 *
 * A callback may free the pgconn (its owner closed underneath it), so callbacks run only once
 * the pgconn's own state is settled, and every path that ran one returns PGCONN_GONE at once
 * when it did.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "pgconn.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* PQconnectPoll itself never times out (connect_timeout only applies to blocking connects). */
#define CONNECT_TIMEOUT_MS 10000

enum pgconn_state { PGCONN_DOWN, PGCONN_CONNECTING, PGCONN_READY };

struct pgconn {
	struct event_base *base;
	const char *conninfo; /* borrowed from the owner */
	const struct pgconn_cbs *cbs;
	void *arg;
	enum pgconn_state state;
	PGconn *pg;
	struct event *io;
	evutil_socket_t io_fd;
	short io_what;
	struct event *timer; /* backoff while down, connect timeout while connecting */
	int backoff_ms;
	int want_write;
	int busy;       /* a statement was sent and not all of its results are in */
	PGresult *kept; /* the result to hand over: the last one, or the first error */
};

/* ---- libpq helpers ---- */

static void notice_drop(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

void pgconn_mute(struct pg_conn *pg) { PQsetNoticeReceiver(pg, notice_drop, NULL); }

int pgconn_conninfo_check(const char *conninfo, pcs_error *err)
{
	PQconninfoOption *opts;
	char *msg = NULL;

	if (conninfo == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "no database connection string");
	if ((opts = PQconninfoParse(conninfo, &msg)) == NULL) {
		if (msg != NULL)
			PQfreemem(msg);
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "the database connection string is not valid");
	}
	PQconninfoFree(opts);
	return 0;
}

void pgconn_oneline(char *dst, size_t size, const char *src)
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

const char *pgconn_sqlstate(const struct pg_result *res)
{
	const char *st;
	size_t i;

	if (res == NULL || (st = PQresultErrorField(res, PG_DIAG_SQLSTATE)) == NULL ||
	    strlen(st) != 5)
		return NULL;
	for (i = 0; i < 5; i++)
		if (!isdigit((unsigned char)st[i]) && !isupper((unsigned char)st[i]))
			return NULL;
	return st;
}

/* ---- the socket and the timer ---- */

static void on_io(evutil_socket_t fd, short what, void *arg);

static void unwatch(struct pgconn *pc)
{
	if (pc->io != NULL) {
		event_free(pc->io);
		pc->io = NULL;
	}
}

/*
 * force: libpq may close a socket and open another that gets the same number while
 * connecting, and epoll forgets a closed descriptor, so that phase always re-registers.
 */
static int watch(struct pgconn *pc, short what, int force)
{
	evutil_socket_t fd = PQsocket(pc->pg);

	if (fd < 0)
		return -1;
	if (pc->io != NULL && !force && fd == pc->io_fd && what == pc->io_what)
		return 0;
	unwatch(pc);
	if ((pc->io = event_new(pc->base, fd, (short)(what | EV_PERSIST), on_io, pc)) == NULL)
		return -1;
	if (event_add(pc->io, NULL) != 0) {
		unwatch(pc);
		return -1;
	}
	pc->io_fd = fd;
	pc->io_what = what;
	return 0;
}

static void timer_in(struct pgconn *pc, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(pc->timer, &tv);
}

/* ---- the state machine ---- */

/*
 * Drops the session, schedules the next attempt after the backoff, then tells the owner.
 * detail is copied first: it can point into the connection or the result being freed.
 * Returns lost's PGCONN_GONE or 0.
 */
static int go_down(struct pgconn *pc, enum pgconn_loss why, const char *detail)
{
	char copy[256];

	if (why == PGCONN_CONNECT_FAILED)
		pgconn_oneline(copy, sizeof(copy), detail);
	else
		snprintf(copy, sizeof(copy), "%s", detail != NULL ? detail : "connection closed");
	unwatch(pc);
	PQclear(pc->kept);
	pc->kept = NULL;
	if (pc->pg != NULL) {
		PQfinish(pc->pg);
		pc->pg = NULL;
	}
	pc->state = PGCONN_DOWN;
	pc->want_write = 0;
	pc->busy = 0;
	timer_in(pc, pc->backoff_ms);
	pc->backoff_ms = pc->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : pc->backoff_ms * 2;
	return pc->cbs->lost(pc, why, copy, pc->arg);
}

/*
 * For the log of a lost connection: the SQLSTATE of what was kept, never PQerrorMessage
 * (after a statement error that still holds the statement's message).
 */
static const char *kept_sqlstate(const struct pgconn *pc) { return pgconn_sqlstate(pc->kept); }

static int connected(struct pgconn *pc)
{
	if (PQsetnonblocking(pc->pg, 1) != 0)
		return go_down(
		    pc, PGCONN_CONNECT_FAILED, "could not make the connection non-blocking");
	pgconn_mute(pc->pg);
	evtimer_del(pc->timer);
	pc->state = PGCONN_READY;
	pc->backoff_ms = BACKOFF_MIN_MS;
	if (watch(pc, EV_READ, 1) != 0)
		return go_down(pc, PGCONN_BROKEN, "could not watch the socket");
	return pc->cbs->ready(pc, pc->arg);
}

static int poll_connect(struct pgconn *pc)
{
	switch (PQconnectPoll(pc->pg)) {
	case PGRES_POLLING_READING:
		if (watch(pc, EV_READ, 1) != 0)
			return go_down(pc, PGCONN_CONNECT_FAILED, "could not watch the socket");
		return 0;
	case PGRES_POLLING_WRITING:
		if (watch(pc, EV_WRITE, 1) != 0)
			return go_down(pc, PGCONN_CONNECT_FAILED, "could not watch the socket");
		return 0;
	case PGRES_POLLING_OK:
		return connected(pc);
	default:
		return go_down(pc, PGCONN_CONNECT_FAILED, PQerrorMessage(pc->pg));
	}
}

static int start(struct pgconn *pc)
{
	if ((pc->pg = PQconnectStart(pc->conninfo)) == NULL)
		return go_down(pc, PGCONN_CONNECT_FAILED, "out of memory");
	if (PQstatus(pc->pg) == CONNECTION_BAD)
		return go_down(pc, PGCONN_CONNECT_FAILED, PQerrorMessage(pc->pg));
	pgconn_mute(pc->pg);
	pc->state = PGCONN_CONNECTING;
	timer_in(pc, CONNECT_TIMEOUT_MS);
	/* libpq: before the first PQconnectPoll, behave as if it had asked to write. */
	if (watch(pc, EV_WRITE, 1) != 0)
		return go_down(pc, PGCONN_CONNECT_FAILED, "could not watch the socket");
	return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *pc = arg;

	(void)fd;
	(void)what;
	if (pc->state == PGCONN_DOWN)
		start(pc);
	else if (pc->state == PGCONN_CONNECTING)
		go_down(pc, PGCONN_CONNECT_FAILED, "timed out");
}

/* Collects every result libpq has parsed. Returns PGCONN_GONE or 0. */
static int drain(struct pgconn *pc)
{
	PGresult *r;
	ExecStatusType st;

	while (pc->state == PGCONN_READY) {
		if (PQstatus(pc->pg) == CONNECTION_BAD)
			return go_down(pc, PGCONN_BROKEN, kept_sqlstate(pc));
		if (PQisBusy(pc->pg))
			return 0;
		if ((r = PQgetResult(pc->pg)) == NULL) {
			if (!pc->busy)
				return 0;
			/* The statement is complete: the connection is idle before its owner hears. */
			pc->busy = 0;
			r = pc->kept;
			pc->kept = NULL;
			if (pc->cbs->result(pc, r, pc->arg) == PGCONN_GONE)
				return PGCONN_GONE;
			continue;
		}
		if (!pc->busy) {
			PQclear(r);
			continue;
		}
		st = PQresultStatus(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			/* libpq would hand this result back forever; the session is unusable. */
			PQclear(r);
			return go_down(pc, PGCONN_COPY, "the statement started COPY");
		}
		if (pc->kept != NULL && PQresultStatus(pc->kept) == PGRES_FATAL_ERROR) {
			PQclear(r);
		} else {
			PQclear(pc->kept);
			pc->kept = r;
		}
	}
	return 0;
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *pc = arg;
	int r;

	(void)fd;
	if (pc->state == PGCONN_CONNECTING) {
		poll_connect(pc);
		return;
	}
	if ((what & EV_READ) && !PQconsumeInput(pc->pg)) {
		go_down(pc, PGCONN_BROKEN, kept_sqlstate(pc));
		return;
	}
	/* libpq: while output is pending, readable also means "try PQflush again". */
	if (pc->want_write) {
		if ((r = PQflush(pc->pg)) < 0) {
			go_down(pc, PGCONN_BROKEN, "connection closed");
			return;
		}
		pc->want_write = r == 1;
	}
	if (drain(pc) == PGCONN_GONE)
		return;
	if (pc->state == PGCONN_READY &&
	    watch(pc, pc->want_write ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
		go_down(pc, PGCONN_BROKEN, "could not watch the socket");
}

/* ---- the API ---- */

int pgconn_new(struct event_base *base, const char *conninfo, const struct pgconn_cbs *cbs,
    void *arg, struct pgconn **out, pcs_error *err)
{
	struct timeval now = { 0, 0 };
	struct pgconn *pc = NULL;
	int ret;

	*out = NULL;
	if ((pc = calloc(1, sizeof(*pc))) == NULL ||
	    (pc->timer = evtimer_new(base, on_timer, pc)) == NULL) {
		ret = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	pc->base = base;
	pc->conninfo = conninfo;
	pc->cbs = cbs;
	pc->arg = arg;
	pc->state = PGCONN_DOWN;
	pc->backoff_ms = BACKOFF_MIN_MS;
	/* From the loop, so the owner finishes setting up (its logger, say) before any report. */
	evtimer_add(pc->timer, &now);
	*out = pc;
	pc = NULL;
	ret = 0;
out:
	pgconn_free(pc);
	return ret;
}

void pgconn_free(struct pgconn *pc)
{
	if (pc == NULL)
		return;
	unwatch(pc);
	PQclear(pc->kept);
	if (pc->pg != NULL)
		PQfinish(pc->pg);
	if (pc->timer != NULL)
		event_free(pc->timer);
	free(pc);
}

int pgconn_is_up(const struct pgconn *pc) { return pc->state == PGCONN_READY; }

int pgconn_send(struct pgconn *pc, const char *sql, int nparams, const char *const *values,
    const int *lengths, const int *formats)
{
	int r;

	if (pc->state != PGCONN_READY || pc->busy)
		return PGCONN_REFUSED;
	if (!PQsendQueryParams(pc->pg, sql, nparams, NULL, values, lengths, formats, 0)) {
		if (PQstatus(pc->pg) == CONNECTION_BAD)
			return go_down(pc, PGCONN_BROKEN_UNSENT, "connection closed");
		return PGCONN_REFUSED;
	}
	pc->busy = 1;
	if ((r = PQflush(pc->pg)) < 0)
		return go_down(pc, PGCONN_BROKEN, "connection closed");
	pc->want_write = r == 1;
	if (watch(pc, pc->want_write ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
		return go_down(pc, PGCONN_BROKEN, "could not watch the socket");
	return 0;
}
