/*
 * pgconn: one non-blocking libpq connection on the daemon's libevent loop, and nothing else.
 *
 * It connects (PQconnectStart/PQconnectPoll, with a timeout), watches its socket, sends one
 * statement at a time and collects its results, prepares the statements its owner repeats once
 * per session, and when an attempt fails or the connection breaks it drops the session (and
 * what was prepared on it) and tries again after an exponential backoff. It knows nothing
 * of jobs or queues: its owner (the store's pool, later a LISTEN connection) learns what
 * happens through three callbacks, and decides what to log.
 *
 * The libpq types appear here only by their struct tags (libpq-fe.h declares
 * "typedef struct pg_conn PGconn" and "typedef struct pg_result PGresult"), so this header
 * does not include libpq-fe.h; the files that do are pgconn.c, store.c (results) and
 * store_sync.c (start-up), and tests/lint/lint.sh keeps it that way.
 */
#ifndef PCS_SERVER_PGCONN_H
#define PCS_SERVER_PGCONN_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

struct event_base;
struct pgconn;
struct pg_conn;   /* libpq's PGconn */
struct pg_result; /* libpq's PGresult */

/*
 * Returned by a callback that freed the pgconn (its owner went away inside it), and then by
 * every pgconn function that ran the callback: nothing may touch the pgconn after that.
 */
#define PGCONN_GONE 1
/* pgconn_send: libpq refused the statement while the connection stays up. */
#define PGCONN_REFUSED 2

/* Why the connection went down. */
enum pgconn_loss {
	/* An attempt failed (detail: libpq's message on one line; it may name the host). */
	PGCONN_CONNECT_FAILED,
	/* An established connection broke; a running statement is lost with it. */
	PGCONN_BROKEN,
	/* pgconn_send found the connection broken: its statement never reached the server. */
	PGCONN_BROKEN_UNSENT,
	/* The running statement started COPY, which leaves the session unusable: dropped. */
	PGCONN_COPY,
};

/*
 * Each runs on the loop thread and returns 0, or PGCONN_GONE when it freed the pgconn.
 *   ready   the connection is up and idle (again, after a loss).
 *   result  the statement sent with pgconn_send completed: res is its last result, or its
 *           first error, and the callee owns it (PQclear); NULL when the server sent none.
 *           The connection is idle again.
 *   lost    the connection went down: it is down already (pgconn_is_up is 0) and its next
 *           attempt is scheduled. detail is never NULL and never PostgreSQL's message about a
 *           statement: for PGCONN_BROKEN a SQLSTATE or a fixed phrase.
 */
struct pgconn_cbs {
	int (*ready)(struct pgconn *pc, void *arg);
	int (*result)(struct pgconn *pc, struct pg_result *res, void *arg);
	int (*lost)(struct pgconn *pc, enum pgconn_loss why, const char *detail, void *arg);
	/* Optional: a NOTIFY arrived on a channel the session LISTENs on (borrowed strings). */
	int (*notify)(struct pgconn *pc, const char *channel, const char *payload, void *arg);
};

/*
 * A connection whose first attempt starts from the loop (so an owner can finish setting up
 * before any callback). conninfo is borrowed: it must pass pgconn_conninfo_check and outlive
 * the pgconn. cbs too is borrowed.
 */
int pgconn_new(struct event_base *base, const char *conninfo, const struct pgconn_cbs *cbs,
    void *arg, struct pgconn **out, pcs_error *err) PCS_WUR;
/* Closes the connection; no callback runs. */
void pgconn_free(struct pgconn *pc);
/* 1 when connected (idle or running a statement). */
int pgconn_is_up(const struct pgconn *pc);
/*
 * Sends one statement with its parameters (as PQsendQueryParams takes them) on an idle
 * connection. Returns 0 when it left: its result comes through result, or its loss through
 * lost (possibly already, when the connection broke while it was being written). Returns
 * PGCONN_REFUSED, with no callback run, when libpq refused it or the connection was not
 * idle. When the connection turns out to be broken before the statement ran, lost runs with
 * PGCONN_BROKEN_UNSENT (now, or from the loop) and its return value is returned.
 *
 * prepare: the text will run again. The first time it runs on a session it is prepared
 * (named, parameter types inferred), which is one more round trip, then executed by its name
 * from then on; unless the session already holds 128 such texts or it is over 8 KiB, when it
 * runs unprepared. A text that fails to prepare fails with the same result as unprepared and
 * is not recorded; one whose execution finds its name gone (26000) or its plan stale (0A000)
 * fails, and is prepared again on its next run. 0: the text runs unprepared.
 * sql and the parameters are borrowed until the result or the loss is reported.
 */
int pgconn_send(struct pgconn *pc, const char *sql, int nparams, const char *const *values,
    const int *lengths, const int *formats, int prepare) PCS_WUR;
/* Statements this pgconn prepared, over all its sessions. */
uint64_t pgconn_prepared(const struct pgconn *pc);

/* ---- libpq helpers for the other files that hold a connection (store_sync.c) ---- */

/*
 * Checks conninfo before libpq sees it for real: libpq's parse errors quote fragments of the
 * string, which can be a password.
 */
int pgconn_conninfo_check(const char *conninfo, pcs_error *err) PCS_WUR;
/* Drops pg's notices, which would go to stderr and whose text can repeat values. */
void pgconn_mute(struct pg_conn *pg);
/* Copies a libpq message onto one line (they end in newlines and can span several). */
void pgconn_oneline(char *dst, size_t size, const char *src);
/* res's SQLSTATE when it has a well-formed one, else NULL (also for a NULL res). */
const char *pgconn_sqlstate(const struct pg_result *res);
/* 1 when res is a command's or a query's success; 0 for an error or NULL. */
int pgconn_result_ok(const struct pg_result *res);
/* PQclear, for the owners that do not include libpq-fe.h. */
void pgconn_result_free(struct pg_result *res);

#endif
