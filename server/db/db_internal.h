/*
 * db_internal: what the db_*.c files share: statements with the columns their decoders read,
 * parameter lists, binary arrays, and the call-bound submission that hands decoded rows to a
 * typed callback. Nothing outside the db layer includes this, but for the fuzz harness's stub
 * of the layer (tests/fuzz/stub_store.c), which keeps callbacks in union db_cb too.
 */
#ifndef PCS_SERVER_DB_INTERNAL_H
#define PCS_SERVER_DB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "db.h"
#include "ref.h"
#include "store.h"
#include "status.h"

#define DB_MAX_COLS 24

/* Type oids of the parameters sent in binary (they must match the statement's exactly). */
#define DB_OID_BYTEA 17u
#define DB_OID_INT8 20u
#define DB_OID_INT4 23u
#define DB_OID_TEXT 25u
#define DB_OID_UUID 2950u
#define DB_OID_INT4_ARRAY 1007u
#define DB_OID_TEXT_ARRAY 1009u
#define DB_OID_INT8_ARRAY 1016u
#define DB_OID_UUID_ARRAY 2951u

/*
 * One statement. cols names the columns its decoder reads, indexed by the decoder's own enum;
 * at[i] is where cols[i] is in the result, found by name (db_check_statements at start-up,
 * or the first result when that did not run, as in tests that use no daemon).
 */
struct db_stmt {
	const char *name; /* for messages: the SQL function it calls */
	const char *sql;
	const char *source; /* what follows FROM (NULL: none): see DB_FROM */
	const char *const *cols;
	int ncols;
	uint32_t param_oid[STORE_MAX_PARAMS]; /* binary parameters' types; 0: a text parameter */
	int at[DB_MAX_COLS];
	int nfields;
	int ready;
};

/*
 * A statement "select FROM source". Its select list names exactly the columns its decoder
 * reads, each under the source's own column name (pcs_ts(created_at) AS created_at), so when
 * the statement no longer prepares the start-up check can tell which column the source lacks.
 */
#define DB_FROM(select, src) .sql = select " FROM " src, .source = src
#define DB_COLS(names) .cols = (names), .ncols = (int)(sizeof(names) / sizeof((names)[0]))

/* Each db_*.c lists its statements (NULL-terminated) for db_check_statements. */
extern struct db_stmt *const db_company_statements[];
extern struct db_stmt *const db_secret_statements[];
extern struct db_stmt *const db_agent_statements[];
extern struct db_stmt *const db_principal_statements[];
extern struct db_stmt *const db_audit_statements[];
extern struct db_stmt *const db_resolve_statements[];
extern struct db_stmt *const db_startup_statements[];
extern struct db_stmt *const db_watch_statements[];

/*
 * Finds st's columns in a result or a statement description (by name, each exactly once).
 * Returns 0, or -PCS_INTERNAL naming the statement and the column.
 */
int db_stmt_bind(struct db_stmt *st, const struct store_result *r, pcs_error *err) PCS_WUR;

/*
 * Before decoding a result of st: binds st from it when the start-up check did not run, and
 * checks it has the shape described. 0, or -PCS_INTERNAL naming the statement.
 */
int db_stmt_ready(struct db_stmt *st, const struct store_result *r, pcs_error *err) PCS_WUR;

/* ---- parameters ---- */

struct db_params {
	int n;
	const char *values[STORE_MAX_PARAMS];
	int lengths[STORE_MAX_PARAMS];
	int formats[STORE_MAX_PARAMS];
	char num[STORE_MAX_PARAMS][24];
};

/* NULL is SQL NULL. */
void db_param_text(struct db_params *p, const char *s);
void db_param_u32(struct db_params *p, uint32_t v);
void db_param_u64(struct db_params *p, uint64_t v);
void db_param_bool(struct db_params *p, int v);
/* Binary (bytea, or an array from db_array_*); data must live until the statement is sent. */
void db_param_bytes(struct db_params *p, const void *data, size_t len);
void db_store_query(const struct db_stmt *st, const struct db_params *p, struct store_query *q);

/* ---- binary arrays (PostgreSQL's array_send format: one dimension; NULLs in text only) ---- */

enum db_elem { DB_ELEM_TEXT, DB_ELEM_INT4, DB_ELEM_INT8, DB_ELEM_UUID };

struct db_array {
	uint8_t *data;
	size_t len;
};

/*
 * Encodes n items (const char *const * for TEXT, where NULL is SQL NULL, and UUID, canonical "8-4-4-4-12" hex for UUID;
 * const int32_t * for INT4; const int64_t * for INT8) into buf when size allows. Returns the
 * length the encoding needs (like snprintf), or 0 for a UUID that does not parse.
 */
size_t db_array_encode(enum db_elem type, const void *items, size_t n, uint8_t *buf, size_t size);
/* The same into a new allocation; db_array_free frees it. 0, or a negative status. */
int db_array_new(struct db_array *a, enum db_elem type, const void *items, size_t n) PCS_WUR;
void db_array_free(struct db_array *a);
/*
 * Adds names[n] as a binary text[] parameter (its bytes in *a, which the caller frees after
 * submitting), or SQL NULL when names is NULL ("no filter"). 0, or -1 with the call failed.
 */
int db_param_names(struct call *c, struct db_params *p, struct db_array *a,
    const char *const *names, size_t n) PCS_WUR;

/* ---- decoding ---- */

/* The text of st's column col ("" for NULL), in row. */
const char *db_col_str(const struct store_result *r, int row, const struct db_stmt *st, int col);
/* NULL for SQL NULL. */
const char *db_col_opt(const struct store_result *r, int row, const struct db_stmt *st, int col);
int db_col_null(const struct store_result *r, int row, const struct db_stmt *st, int col) PCS_WUR;
uint32_t db_col_u32(const struct store_result *r, int row, const struct db_stmt *st, int col);
uint64_t db_col_u64(const struct store_result *r, int row, const struct db_stmt *st, int col);
int db_col_bool(const struct store_result *r, int row, const struct db_stmt *st, int col) PCS_WUR;

/* Sealed-value columns, decoded into buffers the caller frees with db_sealed_free. */
struct db_sealed_buf {
	uint8_t *ciphertext, *nonce, *wrapped_key;
};
enum db_sealed_col { DB_SEALED_CT, DB_SEALED_NONCE, DB_SEALED_WRAPPED, DB_SEALED_KEY_ID };
/*
 * Fills out from the four columns from st's column first on (in enum db_sealed_col's order);
 * NULL cells leave out empty. 0, or -PCS_RESOURCE_EXHAUSTED.
 */
int db_col_sealed(const struct store_result *r, int row, const struct db_stmt *st, int first,
    struct db_sealed *out, struct db_sealed_buf *buf) PCS_WUR;
void db_sealed_free(struct db_sealed_buf *buf);

/* ---- a call's statement ---- */

union db_cb {
	db_done_cb done;
	db_company_cb company;
	db_companies_cb companies;
	db_secret_cb secret;
	db_secrets_cb secrets;
	db_secret_described_cb described;
	db_secret_prepared_cb prepared;
	db_secret_stored_cb stored;
	db_names_cb names;
	db_secret_deleted_cb deleted;
	db_agent_cb agent;
	db_agents_cb agents;
	db_rule_cb rule;
	db_rules_cb rules;
	db_principal_cb principal;
	db_audit_list_cb audit;
	db_audit_verify_cb chains;
	db_resolve_cb resolve;
	db_agent_env_cb env;
	db_watch_cb watch;
};

struct db_pending;
/* Decodes res and calls p's typed callback; fails the call itself when it cannot. */
typedef void (*db_deliver_fn)(
    struct call *c, const struct db_pending *p, const struct store_result *res);

struct db_pending {
	struct db_stmt *st;
	db_deliver_fn deliver;
	union db_cb cb;
	char company[PCS_NAME_MAX + 1], agent[PCS_NAME_MAX + 1]; /* echoed as a db_target */
	uint32_t attempt; /* echoed to callbacks that take it (db_run_attempt) */
};

/* The call's side of things, through db_call_ops. */
void db_fail(struct call *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *db_actor(const struct call *c);

enum db_run_kind { DB_RUN_CALL, DB_RUN_STEP };
/*
 * Runs st with p as the call's statement (call_db) or a step before it (call_db_step); deliver
 * gets the result. t (may be NULL) is handed back to the callback.
 */
void db_run(struct call *c, enum db_run_kind kind, struct db_stmt *st, const struct db_params *p,
    db_deliver_fn deliver, union db_cb cb, const struct db_target *t);
/*
 * As db_run, with attempt echoed in the db_pending deliver gets. retryable (DB_RUN_CALL only):
 * a result that failed with ABORTED goes to deliver too, which must check
 * store_result_status; any other failure fails the call as with db_run.
 */
void db_run_attempt(struct call *c, enum db_run_kind kind, struct db_stmt *st,
    const struct db_params *p, db_deliver_fn deliver, union db_cb cb, uint32_t attempt,
    int retryable);
/* The rows of a result, allocated zeroed (n + 1 elements); NULL with the call failed. */
void *db_rows_alloc(struct call *c, size_t n, size_t size);

/* ---- start-up statements ---- */

/* Runs st on the blocking connection; *out is freed by the caller with store_result_free. */
int db_sync_run(struct store_sync *db, struct db_stmt *st, const struct db_params *p,
    struct store_result **out, pcs_error *err) PCS_WUR;

#endif
