/*
 * pgconn: one non-blocking libpq connection on the loop (pgconn.h), the textbook way:
 * PQconnectStart/PQconnectPoll with the socket watched for what libpq asks, then one PQsend* and
 * PQflush (1: wait until writable), and on input PQconsumeInput then PQisBusy/PQgetResult
 * until NULL.
 *
 * Statements the owner will repeat are prepared once per session (a named statement) and then
 * only executed: the daemon's statements are short calls, for which parsing and planning are a
 * large share of the server's work. The first run of a text is two sequential round trips,
 * PQsendPrepare then PQsendQueryPrepared, not one in pipeline mode: it happens once per text
 * and session, and outside pipeline mode a statement's results end with PQgetResult's NULL, so
 * drain and the result callback stay as simple as for one statement. The table of prepared
 * texts is bounded and never evicts: a text that finds it full runs unprepared, as every text
 * did before. It is cleared with the session, which takes its statements with it.
 *
 * A callback may free the pgconn (its owner closed underneath it), so callbacks run only once
 * the pgconn's own state is settled, and every path that ran one returns PGCONN_GONE at once
 * when it did.
 */
#include <ctype.h>
#include <stdint.h>
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
/* Prepared statements one session keeps: the daemon has a few dozen texts. */
#define PGCONN_STMTS 128
/*
 * Longer texts run unprepared: such a text is generated (a multi-row statement whose text
 * changes with its row count, say), rarely repeats, and would hold memory here and in the
 * server for nothing. Every fixed statement of the daemon is far shorter.
 */
#define PGCONN_STMT_TEXT_MAX 8192

enum pgconn_state { PGCONN_DOWN, PGCONN_CONNECTING, PGCONN_READY };

/* What the statement being run sends next (one libpq send, one round trip, each). */
enum pgconn_step {
	STEP_NONE,
	STEP_PARAMS,     /* unprepared: PQsendQueryParams */
	STEP_PREPARE,    /* PQsendPrepare; when it succeeds, STEP_EXECUTE */
	STEP_EXECUTE,    /* PQsendQueryPrepared */
	STEP_DEALLOCATE, /* a stale statement's name, while its error waits in held */
};

/* A statement prepared on the current session; its name is "s<id>". */
struct pgstmt {
	char *sql; /* NULL: a free entry */
	size_t len;
	uint64_t hash;
	uint64_t id;
};

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
	/* The statement being run, borrowed from the owner until its result or loss. */
	enum pgconn_step step;
	const char *sql;
	size_t sql_len;
	uint64_t sql_hash;
	int nparams;
	const char *const *values;
	const int *lengths;
	const int *formats;
	int cur;        /* its entry in stmts, -1 for none */
	uint64_t id;    /* the name it is prepared, executed or deallocated under */
	PGresult *held; /* a stale statement's error, delivered once its name is deallocated */
	/* This session's prepared statements. Ids are never reused within a session. */
	struct pgstmt stmts[PGCONN_STMTS];
	int nstmts;
	uint64_t next_id;
	uint64_t prepared; /* statements prepared, over every session */
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

int pgconn_result_ok(const struct pg_result *res)
{
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

void pgconn_result_free(struct pg_result *res) { PQclear(res); }

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

/* ---- this session's prepared statements ---- */

/* FNV-1a: the texts are the daemon's own, so nothing needs a keyed hash against collisions. */
static uint64_t text_hash(const char *s, size_t *len)
{
	uint64_t h = 14695981039346656037u;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211u;
	}
	*len = i;
	return h;
}

static int stmt_find(const struct pgconn *pc, const char *sql, size_t len, uint64_t hash)
{
	int i;

	for (i = 0; i < PGCONN_STMTS; i++) {
		const struct pgstmt *e = &pc->stmts[i];

		if (e->sql != NULL && e->hash == hash && e->len == len &&
		    memcmp(e->sql, sql, len) == 0)
			return i;
	}
	return -1;
}

static void stmt_forget(struct pgconn *pc, int i)
{
	if (i < 0 || pc->stmts[i].sql == NULL)
		return;
	free(pc->stmts[i].sql);
	pc->stmts[i].sql = NULL;
	pc->nstmts--;
}

/* The current statement was prepared as "s<pc->id>": it is executed by that name from now on. */
static void stmt_remember(struct pgconn *pc)
{
	struct pgstmt *e = NULL;
	int i;

	pc->prepared++;
	pc->cur = -1;
	for (i = 0; i < PGCONN_STMTS && e == NULL; i++)
		if (pc->stmts[i].sql == NULL)
			e = &pc->stmts[i];
	/*
	 * No room (not reached: pgconn_send checked) or no memory: the statement still runs by
	 * its name this time, and the text is prepared again under a new one the next time.
	 */
	if (e == NULL || (e->sql = malloc(pc->sql_len + 1)) == NULL)
		return;
	memcpy(e->sql, pc->sql, pc->sql_len + 1);
	e->len = pc->sql_len;
	e->hash = pc->sql_hash;
	e->id = pc->id;
	pc->nstmts++;
	pc->cur = (int)(e - pc->stmts);
}

static void stmts_clear(struct pgconn *pc)
{
	int i;

	for (i = 0; i < PGCONN_STMTS; i++)
		stmt_forget(pc, i);
	pc->next_id = 0;
}

/* The statement is over (delivered or lost): nothing of the owner's is borrowed any more. */
static void statement_end(struct pgconn *pc)
{
	pc->busy = 0;
	pc->step = STEP_NONE;
	pc->sql = NULL;
	pc->values = NULL;
	pc->lengths = NULL;
	pc->formats = NULL;
	pc->cur = -1;
	PQclear(pc->held);
	pc->held = NULL;
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
	statement_end(pc);
	/* The session's prepared statements went with it. */
	stmts_clear(pc);
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

/*
 * Sends the current statement's step. Returns 0 when it left, PGCONN_REFUSED when libpq
 * refused it with the connection up, else go_down's return (the connection is down then).
 */
static int issue(struct pgconn *pc)
{
	char name[32], dealloc[64];
	int ok, r;

	snprintf(name, sizeof(name), "s%llu", (unsigned long long)pc->id);
	switch (pc->step) {
	case STEP_PREPARE:
		/* Parameter types inferred by the server, as PQsendQueryParams lets it. */
		ok = PQsendPrepare(pc->pg, name, pc->sql, pc->nparams, NULL);
		break;
	case STEP_EXECUTE:
		ok = PQsendQueryPrepared(
		    pc->pg, name, pc->nparams, pc->values, pc->lengths, pc->formats, 0);
		break;
	case STEP_DEALLOCATE:
		snprintf(dealloc, sizeof(dealloc), "DEALLOCATE %s", name);
		ok = PQsendQueryParams(pc->pg, dealloc, 0, NULL, NULL, NULL, NULL, 0);
		break;
	default:
		ok = PQsendQueryParams(
		    pc->pg, pc->sql, pc->nparams, NULL, pc->values, pc->lengths, pc->formats, 0);
		break;
	}
	if (!ok) {
		/* Until STEP_DEALLOCATE the owner's statement has not run: it may run elsewhere. */
		if (PQstatus(pc->pg) == CONNECTION_BAD)
			return go_down(pc,
			    pc->step == STEP_DEALLOCATE ? PGCONN_BROKEN : PGCONN_BROKEN_UNSENT,
			    "connection closed");
		return PGCONN_REFUSED;
	}
	if ((r = PQflush(pc->pg)) < 0)
		return go_down(pc, PGCONN_BROKEN, "connection closed");
	pc->want_write = r == 1;
	return 0;
}

/* SQLSTATEs of executing a name the session no longer has, or whose plan went stale. */
static int stale_statement(const PGresult *res)
{
	const char *st = pgconn_sqlstate(res);

	return st != NULL && (strcmp(st, "26000") == 0 || strcmp(st, "0A000") == 0);
}

/*
 * The current step's results are all in: sends the next step, or ends the statement and
 * hands its result over. Returns PGCONN_GONE or 0.
 */
static int step_done(struct pgconn *pc)
{
	PGresult *res = pc->kept;
	int r;

	pc->kept = NULL;
	if (pc->step == STEP_PREPARE && res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res);
		res = NULL;
		stmt_remember(pc);
		pc->step = STEP_EXECUTE;
		/* Refused: the owner gets no result, as from a server that answered with none. */
		if ((r = issue(pc)) != PGCONN_REFUSED)
			return r;
	} else if (pc->step == STEP_EXECUTE && stale_statement(res)) {
		/*
		 * The job fails like any other, and the next run prepares the text again. 26000:
		 * the name is gone already. 0A000 ("cached plan must not change result type", or
		 * any other feature_not_supported): the name stays until deallocated, so it is,
		 * before the error is handed over, lest a text that keeps failing leave one behind
		 * every time.
		 */
		stmt_forget(pc, pc->cur);
		pc->cur = -1;
		if (strcmp(pgconn_sqlstate(res), "0A000") == 0) {
			pc->held = res;
			res = NULL;
			pc->step = STEP_DEALLOCATE;
			if ((r = issue(pc)) != PGCONN_REFUSED)
				return r;
			res = pc->held;
			pc->held = NULL;
		}
	} else if (pc->step == STEP_DEALLOCATE) {
		/* Whatever became of the name, the owner hears the statement's own error. */
		PQclear(res);
		res = pc->held;
		pc->held = NULL;
	}
	/* The statement is complete: the connection is idle before its owner hears. */
	statement_end(pc);
	return pc->cbs->result(pc, res, pc->arg);
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
			if (step_done(pc) == PGCONN_GONE)
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

/* Hands every notification libpq has parsed to the owner. Returns PGCONN_GONE or 0. */
static int deliver_notifies(struct pgconn *pc)
{
	PGnotify *n;
	int r = 0;

	while (r == 0 && pc->state == PGCONN_READY && (n = PQnotifies(pc->pg)) != NULL) {
		if (pc->cbs->notify != NULL)
			r = pc->cbs->notify(pc, n->relname, n->extra, pc->arg);
		PQfreemem(n);
	}
	return r == PGCONN_GONE ? PGCONN_GONE : 0;
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
	if (drain(pc) == PGCONN_GONE || deliver_notifies(pc) == PGCONN_GONE)
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
	pc->cur = -1;
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
	PQclear(pc->held);
	stmts_clear(pc);
	if (pc->pg != NULL)
		PQfinish(pc->pg);
	if (pc->timer != NULL)
		event_free(pc->timer);
	free(pc);
}

int pgconn_is_up(const struct pgconn *pc) { return pc->state == PGCONN_READY; }

uint64_t pgconn_prepared(const struct pgconn *pc) { return pc->prepared; }

int pgconn_send(struct pgconn *pc, const char *sql, int nparams, const char *const *values,
    const int *lengths, const int *formats, int prepare)
{
	int fits, i, r;

	if (pc->state != PGCONN_READY || pc->busy)
		return PGCONN_REFUSED;
	pc->busy = 1;
	pc->step = STEP_PARAMS;
	pc->sql = sql;
	pc->nparams = nparams;
	pc->values = values;
	pc->lengths = lengths;
	pc->formats = formats;
	pc->cur = -1;
	if (prepare) {
		pc->sql_hash = text_hash(sql, &pc->sql_len);
		fits = pc->sql_len <= PGCONN_STMT_TEXT_MAX;
		if (fits && (i = stmt_find(pc, sql, pc->sql_len, pc->sql_hash)) >= 0) {
			pc->step = STEP_EXECUTE;
			pc->cur = i;
			pc->id = pc->stmts[i].id;
		} else if (fits && pc->nstmts < PGCONN_STMTS) {
			pc->step = STEP_PREPARE;
			pc->id = ++pc->next_id;
		}
	}
	if ((r = issue(pc)) == PGCONN_REFUSED)
		statement_end(pc);
	if (r != 0 || pc->state != PGCONN_READY)
		return r;
	if (watch(pc, pc->want_write ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
		return go_down(pc, PGCONN_BROKEN, "could not watch the socket");
	return 0;
}
