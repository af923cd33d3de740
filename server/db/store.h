/*
 * store: the only module that talks to PostgreSQL, and the only one that includes libpq-fe.h:
 * store.c (this pool and the results), pgconn.c (one connection on the loop: pgconn.h) and
 * store_sync.c (the blocking API and the conninfo helpers).
 *
 * A small pool of non-blocking libpq connections driven by the daemon's libevent loop. Jobs
 * are single SQL statements with parameters; they queue FIFO until a connection is free and
 * their callback runs on the loop thread with the result. Each connection prepares a text the
 * first time it runs it and only executes it after that, so the server parses and plans each
 * statement once per connection, not once per call. Lost connections are re-established
 * with exponential backoff; jobs queued meanwhile wait (their owner enforces deadlines by
 * cancelling them). The store never sees plaintext: values are sealed before they get here.
 *
 * A blocking API (store_sync_*) exists for start-up only (migrations, keyring check), before
 * the loop serves anyone.
 */
#ifndef PCS_SERVER_STORE_H
#define PCS_SERVER_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

struct event_base;
struct store;
struct store_job;
struct store_result;
struct store_sync;

/* Parameters an rpc's own statement takes at most (audit rows add theirs). */
#define STORE_MAX_PARAMS 32
/* PostgreSQL's protocol limit on parameters of one statement. */
#define STORE_PARAMS_LIMIT 65535

/* One statement. Parameters are text unless formats[i] == 1 (binary, e.g. bytea). */
struct store_query {
	const char *sql;
	int nparams;
	const char *const *values; /* NULL entry = SQL NULL */
	const int *lengths;        /* only read for binary parameters; may be NULL */
	const int *formats;        /* may be NULL: all text */
};

/*
 * Called once per job on the loop thread, unless the job was cancelled. res is owned by the
 * store and valid only during the call.
 */
typedef void (*store_cb)(const struct store_result *res, void *arg);

struct store_stats {
	int connections_up;
	int pool_size;
	size_t queued;
	uint64_t completed;
	uint64_t failed;
	uint64_t prepared; /* statements prepared, over every connection and session */
};

/* Starts pool_size connections (non-blocking, returns at once). */
int store_open(struct event_base *base, const char *conninfo, int pool_size, struct store **out,
    pcs_error *err);
/*
 * Connection events, for the daemon's log: "db_connected", "db_reconnected" (info),
 * "db_connect_failed" (warn; detail is libpq's connection error on one line, never the
 * connection string), "db_connection_lost" (error; detail is a SQLSTATE or a fixed phrase).
 * Called on the loop thread; detail may be NULL.
 */
typedef void (*store_log_fn)(
    int level /* 0 info, 1 warn, 2 error */, const char *event, const char *detail, void *arg);
void store_set_logger(struct store *s, store_log_fn fn, void *arg);
/*
 * While no connection is up, a queued job fails with UNAVAILABLE once it has waited ms
 * (instead of for its owner's whole deadline). 0 (the default) waits for ever.
 */
void store_set_wait_limit(struct store *s, int ms);
/*
 * Cancels every queued job (their callbacks are not called) and closes the connections.
 * May be called from a job's callback: the store is then freed when the callback returns.
 */
void store_close(struct store *s);
/*
 * Queues q (its SQL and parameters are copied; parameter copies are wiped on free). Returns
 * the job, or NULL with err filled (-PCS_RESOURCE_EXHAUSTED when the queue is full).
 */
struct store_job *store_submit(
    struct store *s, const struct store_query *q, store_cb cb, void *arg, pcs_error *err);
/*
 * store_submit for a text that will not repeat (generated, say): it runs unprepared rather
 * than take a place among the connection's prepared statements. A function rather than a
 * field of store_query, which callers fill field by field without zeroing it.
 */
struct store_job *store_submit_once(
    struct store *s, const struct store_query *q, store_cb cb, void *arg, pcs_error *err);
/* The callback will not be called. Safe on a job whose statement is already running. */
void store_cancel(struct store_job *job);
void store_get_stats(const struct store *s, struct store_stats *out);
/* Returns 1 when no job is queued or running (used when draining). */
int store_idle(const struct store *s);

/*
 * Result access. store_result_status is 0 or a negative pcs status:
 *   SQLSTATE "PS0nn" raised by our SQL functions -> -nn with the function's message
 *   (messages raised by our own functions name the problem and never contain values);
 *   unique_violation -> -PCS_ALREADY_EXISTS; serialization failure/deadlock -> -PCS_ABORTED;
 *   connection lost -> -PCS_UNAVAILABLE; anything else -> -PCS_INTERNAL "database error
 *   (SQLSTATE x)". PostgreSQL's own message text is never passed on (it can repeat values).
 */
int store_result_status(const struct store_result *r);
const char *store_result_message(const struct store_result *r);
int store_result_ntuples(const struct store_result *r);
int store_result_nfields(const struct store_result *r);
/* Text value of a cell ("" for NULL). */
const char *store_result_value(const struct store_result *r, int row, int col);
int store_result_isnull(const struct store_result *r, int row, int col);
/* Decodes a bytea cell into a new malloc'd buffer (*out, *len); the caller frees it. */
int store_result_bytea(const struct store_result *r, int row, int col, uint8_t **out, size_t *len);

/*
 * A copy of conninfo (a URI or key=value string) as key=value pairs, with options appended to
 * its "options" (or to PGOPTIONS when it sets none): settings every connection made with it
 * gets, such as the search_path of the daemon's API schema ("-c search_path=..."). *out holds
 * any password conninfo holds: free it with store_conninfo_free, which wipes it.
 */
int store_conninfo_add_options(
    const char *conninfo, const char *options, char **out, pcs_error *err) PCS_WUR;
void store_conninfo_free(char *conninfo);

/* Start-up only: blocking connection and statements. */
int store_sync_connect(const char *conninfo, struct store_sync **out, pcs_error *err);
/* Runs q; on success *out is a result the caller frees with store_result_free. */
int store_sync_exec(
    struct store_sync *c, const struct store_query *q, struct store_result **out, pcs_error *err);
/* Runs a script of several statements without parameters (a migration file). */
int store_sync_exec_script(struct store_sync *c, const char *sql, pcs_error *err);
void store_result_free(struct store_result *r);
void store_sync_close(struct store_sync *c);
/*
 * Start-up only: describes sql without running it (parameter types inferred from the
 * statement). *out, freed with store_result_free, has its columns (store_result_nfields,
 * store_result_fname) and parameter types.
 */
int store_sync_describe(
    struct store_sync *c, const char *sql, struct store_result **out, pcs_error *err) PCS_WUR;
/* A result's (or description's) column name; "" when col is out of range. */
const char *store_result_fname(const struct store_result *r, int col);
/* A description's parameters and their type oids (0 when i is out of range). */
int store_result_nparams(const struct store_result *r);
unsigned store_result_paramtype(const struct store_result *r, int i);

#endif
