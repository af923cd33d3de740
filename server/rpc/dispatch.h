/*
 * dispatch: turns one Call envelope into a call of the handler the generated service
 * descriptor names, and owns every call's life: Hello gating, the deadline, the database job
 * it waits on, the audit row (written before any reply leaves: fail-closed) and the reply.
 *
 * Handlers (h_*.c) have the generated rpc signatures; their closure_data is the struct call.
 * Each handler must call call_authorize() before it replies OK (a reply without it becomes
 * INTERNAL, so a forgotten check fails closed), and ends the call with exactly one of
 * call_reply() or call_fail(), possibly later from a database callback.
 */
#ifndef PCS_SERVER_DISPATCH_H
#define PCS_SERVER_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "authz.h"
#include "status.h"
#include "store.h"

struct audit_ref;
struct db_check;

struct call;
struct conn_cred;
struct session;

/* arg: the one given to call_db with the statement. */
typedef void (*call_db_cb)(struct call *c, const struct store_result *res, void *arg);

/*
 * Checks the method table against the service and that every rpc has a handler, makes
 * dispatch_frame the sessions' dispatcher and gives the db layer what it may ask of a call
 * (db_set_call_ops): the layers below dispatch call it only through those.
 */
int dispatch_init(pcs_error *err) PCS_WUR;
/*
 * Handles one whole frame body of session s (its session_dispatch_fn). Returns -1 when the
 * connection must close.
 */
int dispatch_frame(struct session *s, const uint8_t *body, size_t len) PCS_WUR;

/* What the audit row names. Any may be NULL. */
void call_set_target(struct call *c, const char *company, const char *secret, const char *version);
/*
 * The secrets the audit row lists (audit.h's struct audit_ref, fill with audit_ref_set): n
 * zeroed entries owned by the call, replacing any given before. NULL when out of memory.
 */
struct audit_ref *call_refs(struct call *c, size_t n);
/*
 * Checks the caller may run this call's method (its action comes from authz's method table)
 * on company (and, for value methods, agent). Fails the call and returns <0 when not.
 */
int call_authorize(struct call *c, const char *company, const char *agent) PCS_WUR;
/* The call's id on the wire (a stream's frames carry it). */
uint64_t call_wire_id(const struct call *c);
/* The rpc's name ("Resolve"). */
const char *call_method(const struct call *c);
const struct principal *call_principal(const struct call *c);
struct session *call_session(const struct call *c);
/* The peer's kernel credentials (uid, gid, pid, groups). */
const struct conn_cred *call_peer(const struct call *c);
/* "uid:1000" etc., for created_by columns. */
const char *call_actor(const struct call *c);
/*
 * Whether the daemon's cache may answer this call: a METHOD_CACHED rpc whose principal's rule
 * generation is known, not already sent back to the database, with the cache live.
 */
int call_may_use_cache(const struct call *c);
/* The principal rules' generation the caller was identified at (0: unknown). */
int64_t call_principals_gen(const struct call *c);
/*
 * The answer is being built from the cache; check (malloc'd; the call owns it from now on)
 * says from what, and the audit row's statement checks it (call_again_uncached otherwise).
 */
void call_answered_from_cache(struct call *c, struct db_check *check);
struct server *call_server(const struct call *c);
/* The unpacked request; valid until the call ends. */
const ProtobufCMessage *call_request(const struct call *c);

/*
 * Runs the call's statement q; cb gets the result unless the call ended first (deadline).
 * When the method's audit mode (common/methods.h) is METHOD_AUDIT_WITH_WORK the audit row is
 * written in the same statement (so the same transaction) as q, and q must be a single
 * SELECT: it is wrapped as WITH r AS (q), a AS (INSERT INTO audit_log ...) SELECT * FROM r.
 * On failure the call is failed with the store's status and cb is not called. arg (may be NULL)
 * is handed to cb and freed with arg_free (may be NULL) once cb has returned, or when the call
 * ends without it: the statement's own state, with one owner whatever happens.
 */
void call_db(struct call *c, const struct store_query *q, call_db_cb cb, void *arg,
    void (*arg_free)(void *));
/*
 * As call_db, but when q fails with ABORTED (a check-and-set lost a race: the statement, its
 * audit row with it, rolled back) cb gets that result (store_result_status says so) and the
 * call goes on, so the handler may prepare and run its statement again. Other failures fail
 * the call as call_db does.
 */
void call_db_retryable(struct call *c, const struct store_query *q, call_db_cb cb, void *arg,
    void (*arg_free)(void *));
/* A statement that prepares the call's statement (reads ids, checks): never carries its row. */
void call_db_step(struct call *c, const struct store_query *q, call_db_cb cb, void *arg,
    void (*arg_free)(void *));

/*
 * fn(status, arg) runs once when the call ends, right after its reply was
 * queued (status: what the client was told; -1 when the peer was gone and nothing was sent).
 */
void call_on_sent(struct call *c, void (*fn)(int status, void *arg), void *arg);

void call_reply(struct call *c, const ProtobufCMessage *reply);
void call_fail(struct call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fails with the status and message of a pcs_error (r is its negative code). */
void call_fail_err(struct call *c, int r, const pcs_error *err);
/* Fails with a store result's status and message. */
void call_fail_res(struct call *c, const struct store_result *res);

#endif
