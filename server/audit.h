/*
 * audit: the audit row every call makes. Mutations and resolves carry their row in the same
 * statement as their work (audit_wrap_sql), so it commits with them; everything else gets a
 * separate insert before its reply leaves. Rows never hold values.
 */
#ifndef PCS_SERVER_AUDIT_H
#define PCS_SERVER_AUDIT_H

#include <stddef.h>

#define AUDIT_NPARAMS 12

struct audit_row {
	const char *instance_id;
	unsigned long long call_id;
	unsigned long uid, gid;
	long pid;
	const char *principal, *method, *company, *secret, *version, *status, *message;
};

/* Room for the numbers audit_params formats. */
struct audit_buf {
	char call_id[24], uid[24], gid[24], pid[24];
};

/* Fills values[AUDIT_NPARAMS] (pointing into row and buf) in audit_insert_sql's order. */
void audit_params(const struct audit_row *row, struct audit_buf *buf,
    const char *values[AUDIT_NPARAMS]);
/* INSERT INTO audit_log ... VALUES ($1..$12). */
extern const char audit_insert_sql[];
/*
 * "WITH r AS (<inner>), a AS (INSERT INTO audit_log ... VALUES ($first..)) SELECT * FROM r".
 * Returns 0, or -1 when buf is too small.
 */
int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param);

/*
 * Group commit. Rows queued while a batch is being written go out together in the next one
 * (one multi-row INSERT, one commit); each row's callback runs once the batch holding it is
 * durable, with 0 or the store's negative status. A lone row is written at once.
 */
struct event_base;
struct store;
struct audit_queue;
struct audit_entry;
typedef void (*audit_done_fn)(int status, void *arg);

struct audit_queue *audit_queue_new(struct event_base *base, struct store *store);
/* Cancels everything queued or being written; no callback runs after this. */
void audit_queue_free(struct audit_queue *q);
/* Copies row. NULL when out of memory. */
struct audit_entry *audit_enqueue(struct audit_queue *q, const struct audit_row *row,
    audit_done_fn fn, void *arg);
/* Batches written so far (for tests and status). */
unsigned long audit_queue_batches(const struct audit_queue *q);
/* Its callback will not run (its row may still be written). */
void audit_cancel(struct audit_entry *e);

#endif
