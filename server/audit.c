#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <event2/event.h>

#include "store.h"

#define AUDIT_COLUMNS "instance_id, call_id, peer_uid, peer_gid, peer_pid, principal, method, " \
	"company, secret, version, status, message"

const char audit_insert_sql[] = "INSERT INTO audit_log (" AUDIT_COLUMNS ") VALUES "
	"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

void audit_params(const struct audit_row *row, struct audit_buf *buf,
    const char *values[AUDIT_NPARAMS])
{
	snprintf(buf->call_id, sizeof(buf->call_id), "%llu", row->call_id);
	snprintf(buf->uid, sizeof(buf->uid), "%lu", row->uid);
	snprintf(buf->gid, sizeof(buf->gid), "%lu", row->gid);
	snprintf(buf->pid, sizeof(buf->pid), "%ld", row->pid);
	values[0] = row->instance_id;
	values[1] = buf->call_id;
	values[2] = buf->uid;
	values[3] = buf->gid;
	values[4] = buf->pid;
	values[5] = row->principal;
	values[6] = row->method;
	values[7] = row->company;
	values[8] = row->secret;
	values[9] = row->version;
	values[10] = row->status;
	values[11] = row->message;
}

int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param)
{
	int n = snprintf(buf, size, "WITH r AS (%s), a AS (INSERT INTO audit_log (" AUDIT_COLUMNS
	    ") VALUES ($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)) SELECT * FROM r",
	    inner, first_param, first_param + 1, first_param + 2, first_param + 3, first_param + 4,
	    first_param + 5, first_param + 6, first_param + 7, first_param + 8, first_param + 9,
	    first_param + 10, first_param + 11);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* Rows per INSERT: 12 parameters each, far below PostgreSQL's 65535. */
#define AUDIT_BATCH_MAX 500
/* Batches written at once; the rest of the pool stays free for the calls themselves. */
#define AUDIT_BATCHES_IN_FLIGHT 2

struct audit_entry {
	TAILQ_ENTRY(audit_entry) link;
	struct audit_queue *q;
	int in_batch;
	int cancelled;
	audit_done_fn fn;
	void *arg;
	const char *text[AUDIT_NPARAMS];  /* the row's strings, copied into data (NULL stays NULL) */
	char data[];
};

TAILQ_HEAD(audit_list, audit_entry);

struct audit_batch {
	struct audit_queue *q;
	struct store_job *job;
	struct audit_list entries;
	TAILQ_ENTRY(audit_batch) link;
};

struct audit_queue {
	struct store *store;
	struct event *kick;
	struct audit_list pending;
	TAILQ_HEAD(, audit_batch) batches;
	int in_flight;
	unsigned long written;    /* batches submitted so far */
};

static void entry_free(struct audit_entry *e)
{
	free(e);
}

static void flush(struct audit_queue *q);

static void on_batch(const struct store_result *res, void *arg)
{
	struct audit_batch *b = arg;
	struct audit_queue *q = b->q;
	struct audit_entry *e;
	int status = store_result_status(res);

	TAILQ_REMOVE(&q->batches, b, link);
	q->in_flight--;
	while ((e = TAILQ_FIRST(&b->entries)) != NULL) {
		TAILQ_REMOVE(&b->entries, e, link);
		if (!e->cancelled)
			e->fn(status, e->arg);
		entry_free(e);
	}
	free(b);
	flush(q);
}

/* "INSERT ... VALUES ($1..$12), ($13..$24), ..." for n rows, into a new string. */
static char *batch_sql(size_t n)
{
	size_t cap = sizeof(audit_insert_sql) + n * 96, o;
	char *sql = malloc(cap);
	const char *values = strstr(audit_insert_sql, "VALUES");

	if (sql == NULL)
		return NULL;
	o = (size_t)(values - audit_insert_sql) + 7;
	memcpy(sql, audit_insert_sql, o);
	for (size_t r = 0; r < n; r++) {
		o += (size_t)snprintf(sql + o, cap - o, "%s(", r ? ", " : "");
		for (int i = 0; i < AUDIT_NPARAMS; i++)
			o += (size_t)snprintf(sql + o, cap - o, "%s$%zu", i ? ", " : "",
			    r * AUDIT_NPARAMS + (size_t)i + 1);
		o += (size_t)snprintf(sql + o, cap - o, ")");
	}
	return sql;
}

static int write_batch(struct audit_queue *q)
{
	struct audit_batch *b = calloc(1, sizeof(*b));
	const char **values = NULL;
	struct audit_entry *e;
	struct store_query query = { 0 };
	char *sql = NULL;
	size_t n = 0;
	pcs_error err;

	if (b == NULL)
		return -1;
	TAILQ_INIT(&b->entries);
	b->q = q;
	while (n < AUDIT_BATCH_MAX && (e = TAILQ_FIRST(&q->pending)) != NULL) {
		TAILQ_REMOVE(&q->pending, e, link);
		e->in_batch = 1;
		TAILQ_INSERT_TAIL(&b->entries, e, link);
		n++;
	}
	if ((values = calloc(n * AUDIT_NPARAMS, sizeof(*values))) == NULL ||
	    (sql = batch_sql(n)) == NULL)
		goto fail;
	n = 0;
	TAILQ_FOREACH(e, &b->entries, link) {
		for (int i = 0; i < AUDIT_NPARAMS; i++)
			values[n * AUDIT_NPARAMS + (size_t)i] = e->text[i];
		n++;
	}
	query.sql = sql;
	query.nparams = (int)(n * AUDIT_NPARAMS);
	query.values = values;
	if ((b->job = store_submit(q->store, &query, on_batch, b, &err)) == NULL)
		goto fail;
	TAILQ_INSERT_TAIL(&q->batches, b, link);
	q->in_flight++;
	q->written++;
	free(values);
	free(sql);
	return 0;
fail:
	/* Fail closed: every caller in the batch learns its row was not written. */
	while ((e = TAILQ_FIRST(&b->entries)) != NULL) {
		TAILQ_REMOVE(&b->entries, e, link);
		if (!e->cancelled)
			e->fn(-PCS_UNAVAILABLE, e->arg);
		entry_free(e);
	}
	free(values);
	free(sql);
	free(b);
	return -1;
}

static void flush(struct audit_queue *q)
{
	while (q->in_flight < AUDIT_BATCHES_IN_FLIGHT && !TAILQ_EMPTY(&q->pending))
		if (write_batch(q) != 0)
			break;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush(arg);
}

struct audit_queue *audit_queue_new(struct event_base *base, struct store *store)
{
	struct audit_queue *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->store = store;
	TAILQ_INIT(&q->pending);
	TAILQ_INIT(&q->batches);
	if ((q->kick = event_new(base, -1, 0, on_kick, q)) == NULL) {
		free(q);
		return NULL;
	}
	return q;
}

void audit_queue_free(struct audit_queue *q)
{
	struct audit_entry *e;
	struct audit_batch *b;

	if (q == NULL)
		return;
	while ((e = TAILQ_FIRST(&q->pending)) != NULL) {
		TAILQ_REMOVE(&q->pending, e, link);
		entry_free(e);
	}
	while ((b = TAILQ_FIRST(&q->batches)) != NULL) {
		TAILQ_REMOVE(&q->batches, b, link);
		store_cancel(b->job);
		while ((e = TAILQ_FIRST(&b->entries)) != NULL) {
			TAILQ_REMOVE(&b->entries, e, link);
			entry_free(e);
		}
		free(b);
	}
	event_free(q->kick);
	free(q);
}

struct audit_entry *audit_enqueue(struct audit_queue *q, const struct audit_row *row,
    audit_done_fn fn, void *arg)
{
	const char *values[AUDIT_NPARAMS];
	struct audit_buf buf;
	struct audit_entry *e;
	size_t len[AUDIT_NPARAMS], total = 0, o = 0;

	/* One allocation per row: this is on every resolve's path. */
	audit_params(row, &buf, values);
	for (int i = 0; i < AUDIT_NPARAMS; i++)
		total += (len[i] = values[i] != NULL ? strlen(values[i]) + 1 : 0);
	if ((e = calloc(1, sizeof(*e) + total)) == NULL)
		return NULL;
	for (int i = 0; i < AUDIT_NPARAMS; i++) {
		if (values[i] == NULL)
			continue;
		memcpy(e->data + o, values[i], len[i]);
		e->text[i] = e->data + o;
		o += len[i];
	}
	e->q = q;
	e->fn = fn;
	e->arg = arg;
	TAILQ_INSERT_TAIL(&q->pending, e, link);
	/*
	 * Written after this loop iteration, so rows of calls finishing together share a batch;
	 * while batches are in flight, rows wait for the next one (group commit).
	 */
	if (q->in_flight < AUDIT_BATCHES_IN_FLIGHT)
		event_active(q->kick, 0, 0);
	return e;
}

unsigned long audit_queue_batches(const struct audit_queue *q) { return q->written; }

void audit_cancel(struct audit_entry *e)
{
	if (e->in_batch) {
		e->cancelled = 1;
		return;
	}
	TAILQ_REMOVE(&e->q->pending, e, link);
	entry_free(e);
}
