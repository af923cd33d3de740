/*
 * db: the daemon's database operations, one typed C function each. A statement's SQL text and
 * the decoding of its result live together in db_*.c; nothing else in server/ holds SQL (the
 * store, migrations and their generator aside: tests/lint/lint.sh checks it).
 *
 * Results are decoded by column name: each statement declares the columns it reads, and
 * db_check_statements describes every statement at start-up and refuses to start, naming the
 * statement and the column, when one is missing; at run time decoders use the positions found
 * then. Arrays go to PostgreSQL as binary parameters (db_array_* in db.c), never as literals.
 *
 * Operations of a call run through dispatch (call_db / call_db_step), so a method whose audit
 * row commits with its work gets it in the same statement. Their callbacks run only when the
 * statement succeeded (a failure fails the call with the store's status) and only while the
 * call lives. Strings in decoded rows point into the result: valid during the callback only.
 * A function that returns at most one row passes an empty row (every string "", every number
 * 0) when it returned none.
 *
 * A statement's own state (which callback, which company and agent it was for) travels with it
 * as call_db's argument, freed by dispatch whatever happens to the call: handlers get back what
 * they asked about through the callbacks instead of keeping state.
 */
#ifndef PCS_SERVER_DB_H
#define PCS_SERVER_DB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "status.h"

struct call;
struct store;
struct store_query;
struct store_result;
struct store_sync;

/*
 * What the db layer needs of the call it runs a statement for. dispatch provides it at
 * start-up (db_set_call_ops), so the db layer calls nothing of the layer above it.
 *   run:    runs q as the call's statement (step 0: carrying its audit row when the method's
 *           mode says so) or as a step before it (step 1); cb gets the result with arg, which
 *           is freed with arg_free once cb returned or the call ended without it.
 *   fail:   ends the call with code and message.
 *   actor:  "uid:1000", for created_by columns.
 *   run_retryable: runs q as the call's statement, but a failure with ABORTED (a
 *           check-and-set that lost a race; it rolled back) goes to cb too, for the handler
 *           to try again, instead of failing the call.
 */
struct db_call_ops {
	void (*run)(struct call *c, int step, const struct store_query *q,
	    void (*cb)(struct call *c, const struct store_result *res, void *arg), void *arg,
	    void (*arg_free)(void *));
	void (*fail)(struct call *c, int code, const char *message);
	const char *(*actor)(const struct call *c);
	void (*run_retryable)(struct call *c, const struct store_query *q,
	    void (*cb)(struct call *c, const struct store_result *res, void *arg), void *arg,
	    void (*arg_free)(void *));
};
void db_set_call_ops(const struct db_call_ops *ops);

/* ---- the audit row's parameters, in audit_log's column order (audit.c fills them) ---- */

/* An audit row's parameters, in the order audit_params fills them (db_audit.c's columns). */
enum audit_param {
	AUDIT_P_INSTANCE,
	AUDIT_P_CALL_ID,
	AUDIT_P_UID,
	AUDIT_P_GID,
	AUDIT_P_PID,
	AUDIT_P_PRINCIPAL,
	AUDIT_P_METHOD,
	AUDIT_P_COMPANY,
	AUDIT_P_SECRET,
	AUDIT_P_VERSION,
	AUDIT_P_STATUS,
	AUDIT_P_MESSAGE,
	AUDIT_P_RECEIVED,
	/* The refs (audit.h's struct audit_ref), each a PostgreSQL array literal; NULL: none. */
	AUDIT_P_REF_IDS,
	AUDIT_P_REF_NAMES,
	AUDIT_P_REF_VERSIONS,
	AUDIT_P_REF_ASKED,
	AUDIT_NPARAMS,
	/* Queued rows (audit_enqueue) also carry their deadline. */
	AUDIT_P_DEADLINE = AUDIT_NPARAMS,
	AUDIT_QUEUE_NPARAMS
};

/*
 * The statement inner (one SELECT) with an insert of the call's audit row added, taking the
 * row's values (audit.c's audit_params) as parameters first_param onwards; it returns inner's
 * rows. Defined with the other audit statements in db_audit.c. 0, or -1 when buf is too small.
 */
int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param) PCS_WUR;

/* ---- start-up, on the blocking connection ---- */

/*
 * Describes every statement of the db layer (without running any) and finds the columns each
 * decoder reads, and the types of the binary parameters it sends. Fails naming the statement
 * and the column or parameter when the database's functions do not match this build.
 */
int db_check_statements(struct store_sync *db, pcs_error *err) PCS_WUR;
/* The role this connection logs in as. */
int db_current_user(struct store_sync *db, char *out, size_t size, pcs_error *err) PCS_WUR;
/* Records key_id and its check value when the database has no key and no secret yet. */
int db_keyring_claim(
    struct store_sync *db, const char *key_id, const char *check_hex, pcs_error *err) PCS_WUR;
/* The active key record: *found 0 when there is none. */
int db_keyring_active(struct store_sync *db, char *key_id, size_t key_id_size, char *check_hex,
    size_t check_hex_size, int *found, pcs_error *err) PCS_WUR;
int db_instance_register(struct store_sync *db, const char *instance_id, const char *host, long pid,
    const char *version, pcs_error *err) PCS_WUR;

/* ---- rows ---- */

struct db_company {
	const char *id, *name, *created_at, *created_by;
};

struct db_secret {
	const char *id, *company, *name, *description;
	uint32_t current_version;
	const char *created_at, *updated_at, *created_by;
	/* Deleted secrets (db_secret_list with deleted): "" and 0 otherwise. */
	const char *deleted_at, *deleted_by, *restore_until;
	int purged;         /* no version holds a value any more */
	uint32_t destroyed; /* db_secret_purge: versions whose value it destroyed */
	/* db_secret_describe and db_secret_set_retention: the retention limit (0: unlimited). */
	uint32_t max_versions;
};

struct db_version {
	uint32_t version;
	const char *state, *created_at, *created_by, *key_id;
	/* The last disable, enable, and promote or rollback of it: "" when never. */
	const char *disabled_at, *disabled_by, *enabled_at, *enabled_by, *promoted_at, *promoted_by;
	/* When its value was destroyed, by whom and how (destroy-version, retention, purge). */
	const char *destroyed_at, *destroyed_by, *destroyed_how;
};

/* What db_secret_version_action does to one version (docs/lifecycle.md). */
enum db_version_action {
	DB_VERSION_PROMOTE,  /* latest := the version (active) */
	DB_VERSION_ROLLBACK, /* latest := the version (active, older than latest) */
	DB_VERSION_DISABLE,  /* state := disabled (never latest's) */
	DB_VERSION_ENABLE,   /* state := active (a disabled one) */
};

/* What a write learns before it seals: the ids and version numbers the value's AD binds. */
struct db_secret_prepared {
	const char *company_id, *secret_id;
	uint32_t current_version, next_version;
	uint32_t token_version;  /* not 0: the idempotency token already made this version */
	const char *token_tag;   /* its value tag in hex ("" when stored without one) */
	uint32_t token_expected; /* the current version it was added on top of */
	uint32_t attempt;        /* as given to db_secret_prepare_*_attempt */
	/* What the write the token made did to the description: token_described 0 = nothing. */
	const char *token_description;
	const char *token_secret; /* a create's: the secret the token made ("" when none) */
	int token_described;
};

/* A sealed value, as stored (ciphertext only; see crypto.h). */
struct db_sealed {
	const uint8_t *ciphertext;
	size_t ciphertext_len;
	const uint8_t *nonce;
	size_t nonce_len;
	const uint8_t *wrapped_key;
	size_t wrapped_key_len;
	const char *key_id;
};

struct db_binding {
	const char *env_name, *ref_company, *ref_name;
	uint32_t ref_version; /* 0: latest */
};

struct db_agent {
	const char *id, *company, *name;
	uint32_t uid;
	const char *created_at, *created_by;
	const struct db_binding *bindings;
	size_t nbindings;
};

struct db_principal_rule {
	uint64_t id;
	const char *match;
	uint32_t unix_id;
	const char *role, *company, *agent, *created_at, *created_by;
};

/* A rule matching a peer (pcs_principal_lookup): uid rules first, then by id. */
struct db_principal_match {
	const char *id, *match, *unix_id, *role;
	const char *company; /* NULL: the rule names no company */
	const char *agent_name;
	int64_t gen; /* the principal rules' generation when the rows were read */
};

/* One secret an audit row lists: id and name may be NULL; served 0: none; asked 0: latest. */
struct db_audit_ref {
	const char *id, *name;
	uint32_t served, asked;
};

struct db_audit_entry {
	uint64_t id;
	const char *at, *instance_id;
	uint64_t call_id;
	uint32_t peer_uid, peer_gid, peer_pid;
	const char *principal, *method, *company, *secret, *version, *status, *message;
	const char *outcome; /* ok, denied, error (docs/audit.md) */
	const char *agent;   /* company/agent; NULL: none */
	const struct db_audit_ref *refs;
	size_t nrefs;
};

/*
 * One hash chain as pcs_audit_verify found it (docs/audit.md): lane 0 with unchained set
 * counts an instance's rows from before the chain; problem NULL: intact; archived NULL:
 * nothing archived, else what was (migration 014). Hashes in hex.
 */
struct db_audit_chain {
	const char *instance_id;
	uint32_t lane;
	int unchained;
	uint64_t rows, last_seq, last_id, head_seq, bad_id, bad_seq;
	const char *last_hash, *head_hash, *problem, *archived;
};

/* One reference to resolve: a secret id, or company and name ("" for the unused ones). */
struct db_ref {
	const char *secret_id, *company, *name;
	uint32_t version; /* 0: latest */
};

/* Whose values: the company and agent the statement was run for. */
struct db_target {
	const char *company, *agent;
};

/* One resolved reference. */
struct db_resolved {
	uint32_t idx; /* 1-based position in the refs asked for */
	int granted;  /* the agent's env config grants it */
	const char *company_id, *secret_id;
	uint32_t version;
	const char *state;       /* NULL: no such version */
	struct db_sealed sealed; /* only when granted and the version exists */
	/*
	 * What the daemon's cache keeps, read in the same snapshot (granted refs only; the agent's
	 * on every row): the secret's generation, what latest points to, its company's name and
	 * its own, and the agent's id and generation.
	 */
	int64_t secret_gen;
	uint32_t current_version;
	const char *company, *name;
	const char *agent_id;
	int64_t agent_gen;
	/*
	 * Not NULL: the secret was deleted (its binding is kept), and this says so and until when
	 * it can be restored. Such a row carries no value and is never cached.
	 */
	const char *deleted_note;
};

/*
 * What an answer built from the daemon's cache was built from: the generations the audit
 * statement checks are still current before it writes the call's row (migration 005).
 * principals_gen 0: nothing to check. An agent id "": only the caller's identity came from
 * the cache (its rules' generation is checked, no agent and no secret).
 */
struct db_check_secret {
	char id[37];
	int64_t gen;
};
struct db_check {
	char agent_id[37];
	int64_t agent_gen;
	int64_t principals_gen;
	size_t nsecrets;
	struct db_check_secret secrets[];
};

/* One binding of an agent's env config, with the sealed value it selects. */
struct db_env_value {
	const char *env_name, *ref_company, *ref_name;
	uint32_t selector; /* 0: latest */
	const char *company_id, *secret_id;
	uint32_t version;
	struct db_sealed sealed;
};

/* ---- a call's operations ---- */

typedef void (*db_done_cb)(struct call *c);
typedef void (*db_company_cb)(struct call *c, const struct db_company *row);
typedef void (*db_companies_cb)(struct call *c, const struct db_company *rows, size_t n);
typedef void (*db_secret_cb)(struct call *c, const struct db_secret *row);
typedef void (*db_secrets_cb)(struct call *c, const struct db_secret *rows, size_t n);
typedef void (*db_secret_described_cb)(
    struct call *c, const struct db_secret *secret, const struct db_version *versions, size_t n);
typedef void (*db_secret_prepared_cb)(struct call *c, const struct db_secret_prepared *p);
/*
 * status 0: row is the secret as stored. -PCS_ABORTED: nothing was stored (the secret moved
 * since it was prepared; message names its current version) and row is NULL. attempt is the
 * one the statement was run with.
 */
typedef void (*db_secret_stored_cb)(
    struct call *c, uint32_t attempt, int status, const char *message, const struct db_secret *row);
typedef void (*db_names_cb)(struct call *c, const char *const *names, size_t n);
/* A deletion: the bindings that still name the secret, and the end of its recovery window. */
typedef void (*db_secret_deleted_cb)(
    struct call *c, const char *const *bound, size_t n, const char *restore_until);
typedef void (*db_agent_cb)(struct call *c, const struct db_agent *agent);
typedef void (*db_agents_cb)(struct call *c, const struct db_agent *rows, size_t n);
typedef void (*db_rule_cb)(struct call *c, const struct db_principal_rule *row);
typedef void (*db_rules_cb)(struct call *c, const struct db_principal_rule *rows, size_t n);
typedef void (*db_principal_cb)(struct call *c, const struct db_principal_match *rows, size_t n);
typedef void (*db_audit_list_cb)(struct call *c, const struct db_audit_entry *rows, size_t n);
typedef void (*db_audit_verify_cb)(struct call *c, const struct db_audit_chain *rows, size_t n);
typedef void (*db_resolve_cb)(
    struct call *c, const struct db_target *t, const struct db_resolved *rows, size_t n);
typedef void (*db_agent_env_cb)(
    struct call *c, const struct db_target *t, const struct db_env_value *rows, size_t n);

/* ---- what a Watch covers (db_watch.c) ---- */
struct db_watch_target {
	uint32_t idx;          /* the ref's position, 1-based; 0 for an agent's environment */
	const char *secret_id; /* "" when the ref names no secret */
	const char *company, *name;
	uint32_t latest;
	int deleted;
	int granted;          /* the named agent binds it (1 when no agent is named) */
	const char *agent_id; /* "" when no agent is named */
};
typedef void (*db_watch_cb)(
    struct call *c, const struct db_target *t, const struct db_watch_target *rows, size_t n);

/* Companies. only == NULL: every company; else those n names. */
void db_company_create(struct call *c, const char *name, db_company_cb cb);
void db_company_list(struct call *c, const char *const *only, size_t n, db_companies_cb cb);

/*
 * Secrets. The prepare steps are call_db_step statements (they never carry the call's audit
 * row); the writes and reads after them are the call's statement. created_by is the caller.
 */
/*
 * A create's two steps. With a token, the prepare step finds a live secret of that name whose
 * version 1 the token made (token_secret, token_tag, token_description); the store keeps token
 * and tag on version 1, and when it loses the name to a create with the same token (racing
 * daemons) it goes to cb as -PCS_ABORTED, for the handler to prepare again and answer from the
 * winner. Any other outcome but success fails the call.
 */
void db_secret_prepare_create_attempt(struct call *c, const char *company, const char *name,
    const char *token, uint32_t attempt, db_secret_prepared_cb cb);
void db_secret_create_attempt(struct call *c, const char *company_id, const char *secret_id,
    const char *name, const char *description, const struct db_sealed *sealed, const char *token,
    const uint8_t *tag, size_t tag_len, uint32_t attempt, db_secret_stored_cb cb);
/* UpdateSecret without a value: only the description changes; no version is made. */
void db_secret_set_description(struct call *c, const char *company, const char *name,
    const char *description, db_secret_cb cb);
/*
 * An update's two steps, for a write that tries again when it loses a race: attempt is handed
 * back to the callbacks (the handler keeps no state of its own). The store adds version to
 * secret_id if its current version is still expected; one that lost the race goes to cb as
 * -PCS_ABORTED (its statement rolled back, audit row included) instead of failing the call.
 */
void db_secret_prepare_update_attempt(struct call *c, const char *company, const char *name,
    const char *token, uint32_t attempt, db_secret_prepared_cb cb);
void db_secret_add_version_attempt(struct call *c, const char *secret_id, uint32_t version,
    uint32_t expected, const struct db_sealed *sealed, const char *token, const uint8_t *tag,
    size_t tag_len, int promote, const char *description, uint32_t attempt, db_secret_stored_cb cb);
/* One transition of a version of company/name; cb gets the secret as it is afterwards. */
void db_secret_version_action(struct call *c, const char *company, const char *name,
    uint32_t version, enum db_version_action action, db_secret_cb cb);
void db_secret_get(struct call *c, const char *secret_id, db_secret_cb cb);
/* deleted: the deleted secrets that can still be restored, instead of the live ones. */
void db_secret_list(struct call *c, const char *company, int deleted, db_secrets_cb cb);
void db_secret_describe(
    struct call *c, const char *company, const char *name, db_secret_described_cb cb);
/*
 * Soft delete, restorable for days (docs/lifecycle.md). Bindings are kept; without force it is
 * refused while there are any.
 */
void db_secret_delete(struct call *c, const char *company, const char *name, int force,
    uint32_t days, db_secret_deleted_cb cb);
/* A deleted secret back within its recovery window, as it was. */
void db_secret_restore(struct call *c, const char *company, const char *name, db_secret_cb cb);
/* Every version's value destroyed, live or deleted; cb's row has destroyed set. */
void db_secret_purge(struct call *c, const char *company, const char *name, db_secret_cb cb);
/*
 * Retention (docs/lifecycle.md): sets company/name's limit (0: unlimited) and destroys the
 * values it no longer keeps, in the same transaction; cb's row has max_versions and destroyed.
 */
void db_secret_set_retention(
    struct call *c, const char *company, const char *name, uint32_t max, db_secret_cb cb);
/* One version's value destroyed (never latest's); cb gets the secret as it is afterwards. */
void db_secret_destroy_version(
    struct call *c, const char *company, const char *name, uint32_t version, db_secret_cb cb);

/* Agents. groups: the groups the agent's uid is in now (a rule of another kind for any of
 * them makes the database refuse the agent). */
void db_agent_create(struct call *c, const char *company, const char *name, uint32_t uid,
    const gid_t *groups, size_t ngroups, db_agent_cb cb);
void db_agent_describe(struct call *c, const char *company, const char *name, db_agent_cb cb);
/* ref: a secret id, or company and name; version 0 follows latest. */
void db_agent_set_env(struct call *c, const char *company, const char *agent, const char *env_name,
    const struct db_ref *ref, db_agent_cb cb);
void db_agent_unset_env(
    struct call *c, const char *company, const char *agent, const char *env_name, db_agent_cb cb);
/* One row per agent, without bindings. */
void db_agent_list(struct call *c, const char *company, db_agents_cb cb);
void db_agent_delete(struct call *c, const char *company, const char *name, db_done_cb cb);

/*
 * The purge of deleted secrets whose recovery window ended (db_purge.c): a timer on base that
 * runs once at once and then every interval_ms, for as long as the purger lives. Each round
 * that purged anything logs the count.
 */
struct event_base;
struct store;
struct db_purger;
int db_purger_new(struct event_base *base, struct store *store, const char *instance_id,
    int64_t interval_ms, struct db_purger **out, pcs_error *err) PCS_WUR;
void db_purger_free(struct db_purger *p);
/*
 * The instance's heartbeat (db_heartbeat.c): once at once and then every interval_ms, its
 * last_seen and the heads of its audit hash chains go to its instances row.
 */
struct db_heartbeat;
int db_heartbeat_new(struct event_base *base, struct store *store, const char *instance_id,
    int64_t interval_ms, struct db_heartbeat **out, pcs_error *err) PCS_WUR;
void db_heartbeat_free(struct db_heartbeat *h);

/* Principal rules. */
void db_principal_add(struct call *c, const char *match, uint32_t unix_id, const char *role,
    const char *company, db_rule_cb cb);
void db_principal_list(struct call *c, db_rules_cb cb);
void db_principal_remove(struct call *c, uint64_t id, db_done_cb cb);
/* Every rule matching uid or any of groups: a step (identification precedes the handler). */
void db_principal_lookup(
    struct call *c, uint32_t uid, const gid_t *groups, size_t ngroups, db_principal_cb cb);

/*
 * An audit search (docs/audit.md, "Searching"): each field NULL (0) = no filter. only[nonly]:
 * the companies the caller may see (only == NULL: all). Times are ISO 8601 text the caller
 * checked; cursor 0: from the newest (or, ascending, the oldest) row.
 */
struct db_audit_query {
	const char *const *only;
	size_t nonly;
	const char *company;
	const char *secret_company, *secret_name;
	const char *agent_company, *agent_name;
	const char *principal, *method, *outcome;
	const char *since, *until;
	int no_hello, ascending;
	uint64_t cursor;
	uint32_t limit;
};
/* The rows of q, at most q->limit, in the order asked. */
void db_audit_list(struct call *c, const struct db_audit_query *q, db_audit_list_cb cb);
/* Every chain of instance_id (NULL: of every instance) checked from its first row. */
void db_audit_verify(struct call *c, const char *instance_id, db_audit_verify_cb cb);

/*
 * Values. Which refs the agent company/agent may read is decided by its env config in the
 * same statement that reads the ciphertext; rows come in the order of refs.
 */
void db_resolve(struct call *c, const char *company, const char *agent, const struct db_ref *refs,
    size_t n, db_resolve_cb cb);
void db_agent_env(struct call *c, const char *company, const char *agent, db_agent_env_cb cb);
/*
 * the secrets a Watch covers, as they are now (pcs_watch_targets). company may
 * be NULL (ids in any company); agent "" for none; n refs as ids[i] (or "") and names[i]; no
 * refs: the agent's environment.
 */
void db_watch_targets(struct call *c, const char *company, const char *agent,
    const char *const *ids, const char *const *names, size_t n, db_watch_cb cb);

/* ---- the audit queue's group commit ---- */

struct db_job;
/*
 * status 0: stored[i] is the status the database stored for row i (it stores UNAVAILABLE for
 * a row inserted past its deadline), or NULL for a row not inserted because its check failed
 * (what the answer was built from has changed); otherwise the store's negative status and
 * n == 0.
 */
typedef void (*db_audit_inserted_fn)(int status, const char *const *stored, size_t n, void *arg);
/*
 * Inserts nrows audit rows in one statement; values holds AUDIT_QUEUE_NPARAMS strings per row
 * in enum audit_param's order (audit.h); checks[i] (checks may be NULL, and so may each) is
 * what row i's answer was built from: the row is inserted only if all of it is still current,
 * in the statement's own snapshot. Returns the job, or NULL with err filled.
 */
struct db_job *db_audit_insert(struct store *s, const char *const *values,
    const struct db_check *const *checks, size_t nrows, db_audit_inserted_fn fn, void *arg,
    pcs_error *err);
/* fn will not be called. */
void db_job_cancel(struct db_job *job);

#endif
