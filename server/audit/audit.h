/*
 * audit: the audit row every call makes. Mutations carry their row in the same statement as
 * their work (audit_wrap_sql), so it commits with them; everything else (resolves, Hello,
 * refusals) gets a group-committed insert before its reply leaves. Rows never hold values,
 * and every string is made safe before it is sent: valid UTF-8, control characters and bytes
 * that are not UTF-8 written as \xNN, so one hostile string cannot fail a statement.
 */
#ifndef PCS_SERVER_AUDIT_H
#define PCS_SERVER_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include "db.h"
#include "ref.h"
#include "status.h"

/*
 * One secret a Resolve or GetAgentEnv was about (docs/audit.md, "The record"): its id when
 * the daemon identified it ("" otherwise), company/name (as asked when unknown), the version
 * served (0: none, as in every ref of a refused call) and the version asked (0: latest).
 * Strings already safe for a row (audit_safe_text).
 */
struct audit_ref {
	char id[37];
	char name[2 * PCS_NAME_MAX + 2];
	uint32_t served, asked;
};

struct audit_row {
	const char *instance_id;
	unsigned long long call_id;
	unsigned long uid, gid;
	long pid;
	const char *principal, *method, *company, *secret, *version, *status, *message;
	/*
	 * Wall-clock microseconds since the epoch, 0 = unknown: when the call arrived (received_at,
	 * every row), and (queued rows only, audit_enqueue) the time after which the daemon will have
	 * told the client something else than status. A row inserted after its deadline is stored as
	 * UNAVAILABLE (migrations/002_audit_truth.sql), and its caller is told so.
	 */
	long long received_us, deadline_us;
	/*
	 * Queued rows only: what an answer built from the daemon's cache was built from (NULL:
	 * nothing). The row is written only if all of it is still current when it is inserted;
	 * otherwise its callback gets AUDIT_STALE and nothing was written.
	 */
	const struct db_check *check;
	/* The secrets the call was about, in the order asked (NULL, 0: none). */
	const struct audit_ref *refs;
	size_t nrefs;
};

/*
 * Room for the numbers audit_params formats, and for strings it has to escape; refs holds the
 * row's refs as PostgreSQL array literals (malloc'd only for a row with refs).
 */
struct audit_buf {
	char call_id[24], uid[24], gid[24], pid[24], received[40];
	char text[2048];
	size_t used;
	char *refs;
};

/*
 * Fills values[AUDIT_NPARAMS] (pointing into row and buf) in enum audit_param's order; a
 * string that is not safe as it is (see above) is escaped into buf. 0, or -1 out of memory
 * (for the refs' literals). audit_buf_free releases buf's refs either way.
 */
int audit_params(
    const struct audit_row *row, struct audit_buf *buf, const char *values[AUDIT_NPARAMS]) PCS_WUR;
void audit_buf_free(struct audit_buf *buf);

/*
 * Group commit. Rows queued while a batch is being written go out together in the next one
 * (one multi-row INSERT, one commit); each row's callback runs once the batch holding it is
 * durable, with 0 (written as queued), AUDIT_LATE (written, but as UNAVAILABLE: the insert ran
 * past the row's deadline) or the store's negative status (not written). A lone row is
 * written at once. A multi-row batch that fails for another reason than a lost database is
 * retried in halves, so one row PostgreSQL refuses fails only its own call.
 */
#define AUDIT_LATE 1
/* Not written: the cached state the answer was built from has changed (row.check). */
#define AUDIT_STALE 2
/* The message of a row that was not durable before its deadline. */
#define AUDIT_LATE_MESSAGE "audit row not durable before the call's deadline"
struct event_base;
struct store;
struct audit_queue;
struct audit_entry;
typedef void (*audit_done_fn)(int status, void *arg);

struct audit_queue *audit_queue_new(struct event_base *base, struct store *store);
/* Cancels everything queued or being written; no callback runs after this. */
void audit_queue_free(struct audit_queue *q);
/* Copies row. NULL when out of memory. */
struct audit_entry *audit_enqueue(
    struct audit_queue *q, const struct audit_row *row, audit_done_fn fn, void *arg);
/* Batches written so far (for tests and status). */
unsigned long audit_queue_batches(const struct audit_queue *q);
/* Failed multi-row batches split in halves so far (for tests). */
unsigned long audit_queue_retries(const struct audit_queue *q);
/* Its callback will not run (its row may still be written). */
void audit_cancel(struct audit_entry *e);
/*
 * The row's deadline has come. A row still queued is rewritten as UNAVAILABLE with
 * AUDIT_LATE_MESSAGE, stays queued without its callback (the refusal is audited too) and 1
 * is returned: the caller tells its client UNAVAILABLE now. A row already sent returns 0: its
 * callback will report what PostgreSQL stored, and the caller must wait for it.
 */
int audit_expire(struct audit_entry *e) PCS_WUR;
/*
 * Fills r: id and company/name may be NULL or "" (unknown); a name that is not safe text is
 * escaped (audit_safe_text). served 0: nothing served; asked 0: latest.
 */
void audit_ref_set(struct audit_ref *r, const char *id, const char *company, const char *name,
    uint32_t asked, uint32_t served);
/* Makes s safe for a row or a reply (see above) into out; returns out. */
const char *audit_safe_text(const char *s, char *out, size_t size);

#endif
