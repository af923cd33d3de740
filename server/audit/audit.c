#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <event2/event.h>

#include "db.h"
#include "pbcheck.h"

/* 1 when s can go into a row as it is: valid UTF-8 and no control character. */
static int text_safe(const char *s)
{
	size_t n = strlen(s), k;

	for (size_t i = 0; i < n; i += k) {
		if ((k = pbcheck_utf8_seq((const uint8_t *)s + i, n - i)) == 0 ||
		    (k == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)))
			return 0;
	}
	return 1;
}

const char *audit_safe_text(const char *s, char *out, size_t size)
{
	size_t n = strlen(s), o = 0, k;

	for (size_t i = 0; i < n; i += k) {
		k = pbcheck_utf8_seq((const uint8_t *)s + i, n - i);
		if (k > 1 || (k == 1 && (unsigned char)s[i] >= 0x20 && s[i] != 0x7f)) {
			if (o + k >= size)
				break;
			memcpy(out + o, s + i, k);
			o += k;
			continue;
		}
		k = 1;
		if (o + 4 >= size)
			break;
		o += (size_t)snprintf(out + o, size - o, "\\x%02x", (unsigned char)s[i]);
	}
	out[o] = '\0';
	return out;
}

void audit_ref_set(struct audit_ref *r, const char *id, const char *company, const char *name,
    uint32_t asked, uint32_t served)
{
	char joined[sizeof(r->name)];

	snprintf(r->id, sizeof(r->id), "%s", id != NULL ? id : "");
	if (company != NULL && company[0] != '\0')
		snprintf(joined, sizeof(joined), "%s/%s", company, name != NULL ? name : "");
	else
		snprintf(joined, sizeof(joined), "%s", name != NULL ? name : "");
	audit_safe_text(joined, r->name, sizeof(r->name));
	r->asked = asked;
	r->served = served;
}

/* s itself when safe, else its escaped copy in buf's text (cut short when that is full). */
static const char *safe_param(const char *s, struct audit_buf *buf)
{
	size_t room = sizeof(buf->text) - buf->used;
	const char *t;

	if (s == NULL || text_safe(s))
		return s;
	if (room < 1)
		return "";
	t = audit_safe_text(s, buf->text + buf->used, room);
	buf->used += strlen(t) + 1;
	return t;
}

static const char *format_ts(long long us, char out[40]);

/* Appends s to out[*o..size) when it fits; *o counts every byte either way. */
static void put(char *out, size_t size, size_t *o, const char *s, size_t n)
{
	if (out != NULL && *o + n < size)
		memcpy(out + *o, s, n);
	*o += n;
}

/*
 * Field which (AUDIT_P_REF_*) of every ref as a PostgreSQL array literal into out (may be
 * NULL to measure); returns its length without the NUL, written only when shorter than size.
 * Names are safe text already: only '"' and '\' need a backslash inside a quoted element.
 */
static size_t refs_literal(const struct audit_row *row, int which, char *out, size_t size)
{
	size_t o = 0;
	char num[16];

	put(out, size, &o, "{", 1);
	for (size_t i = 0; i < row->nrefs; i++) {
		const struct audit_ref *r = &row->refs[i];
		if (i > 0)
			put(out, size, &o, ",", 1);
		if (which == AUDIT_P_REF_IDS) {
			if (r->id[0] == '\0')
				put(out, size, &o, "NULL", 4);
			else
				put(out, size, &o, r->id, strlen(r->id));
		} else if (which == AUDIT_P_REF_NAMES) {
			put(out, size, &o, "\"", 1);
			for (const char *p = r->name; *p != '\0'; p++) {
				if (*p == '"' || *p == '\\')
					put(out, size, &o, "\\", 1);
				put(out, size, &o, p, 1);
			}
			put(out, size, &o, "\"", 1);
		} else {
			uint32_t v = which == AUDIT_P_REF_VERSIONS ? r->served : r->asked;
			if (which == AUDIT_P_REF_VERSIONS && v == 0)
				put(out, size, &o, "NULL", 4);
			else
				put(out, size, &o, num,
				    (size_t)snprintf(num, sizeof(num), "%u", v));
		}
	}
	put(out, size, &o, "}", 1);
	if (out != NULL && o < size)
		out[o] = '\0';
	return o;
}

/* The four ref literals into one allocation, buf->refs; values point into it. */
static int refs_params(
    const struct audit_row *row, struct audit_buf *buf, const char *values[AUDIT_NPARAMS])
{
	static const int which[] = { AUDIT_P_REF_IDS, AUDIT_P_REF_NAMES, AUDIT_P_REF_VERSIONS,
		AUDIT_P_REF_ASKED };
	size_t len[4], total = 0, o = 0;

	for (int k = 0; k < 4; k++) {
		values[which[k]] = NULL;
		total += (len[k] = refs_literal(row, which[k], NULL, 0)) + 1;
	}
	if (row->nrefs == 0)
		return 0;
	if ((buf->refs = malloc(total)) == NULL)
		return -1;
	for (int k = 0; k < 4; k++) {
		refs_literal(row, which[k], buf->refs + o, len[k] + 1);
		values[which[k]] = buf->refs + o;
		o += len[k] + 1;
	}
	return 0;
}

void audit_buf_free(struct audit_buf *buf)
{
	free(buf->refs);
	buf->refs = NULL;
}

int audit_params(
    const struct audit_row *row, struct audit_buf *buf, const char *values[AUDIT_NPARAMS])
{
	buf->used = 0;
	buf->refs = NULL;
	snprintf(buf->call_id, sizeof(buf->call_id), "%llu", row->call_id);
	snprintf(buf->uid, sizeof(buf->uid), "%lu", row->uid);
	snprintf(buf->gid, sizeof(buf->gid), "%lu", row->gid);
	snprintf(buf->pid, sizeof(buf->pid), "%ld", row->pid);
	values[AUDIT_P_INSTANCE] = safe_param(row->instance_id, buf);
	values[AUDIT_P_CALL_ID] = buf->call_id;
	values[AUDIT_P_UID] = buf->uid;
	values[AUDIT_P_GID] = buf->gid;
	values[AUDIT_P_PID] = buf->pid;
	values[AUDIT_P_PRINCIPAL] = safe_param(row->principal, buf);
	values[AUDIT_P_METHOD] = safe_param(row->method, buf);
	values[AUDIT_P_COMPANY] = safe_param(row->company, buf);
	values[AUDIT_P_SECRET] = safe_param(row->secret, buf);
	values[AUDIT_P_VERSION] = safe_param(row->version, buf);
	values[AUDIT_P_STATUS] = safe_param(row->status, buf);
	values[AUDIT_P_MESSAGE] = safe_param(row->message, buf);
	values[AUDIT_P_RECEIVED] = format_ts(row->received_us, buf->received);
	return refs_params(row, buf, values);
}

/* "2024-05-01 12:00:00.123456+00", or NULL for 0 (unknown). */
static const char *format_ts(long long us, char out[40])
{
	struct tm tm;
	time_t secs;
	size_t n;

	if (us <= 0)
		return NULL;
	secs = (time_t)(us / 1000000);
	if (gmtime_r(&secs, &tm) == NULL || (n = strftime(out, 40, "%Y-%m-%d %H:%M:%S", &tm)) == 0)
		return NULL;
	snprintf(out + n, 40 - n, ".%06lld+00", us % 1000000);
	return out;
}

/* Rows per INSERT: each column is one array parameter, so this bounds only the batch's size. */
#define AUDIT_BATCH_MAX 500
/*
 * Batches written at once. One: rows queued while it commits all go in the next, so a batch
 * grows with the load and PostgreSQL pays a statement and a commit per batch, not per few
 * rows. Measured with 32 clients (docs/performance.md): 22,000-26,000 resolves/s with one in
 * flight against 16,000-19,000 with two, and a lower p99; one client alike.
 */
#define AUDIT_BATCHES_IN_FLIGHT 1

struct audit_entry {
	TAILQ_ENTRY(audit_entry) link;
	struct audit_queue *q;
	int in_batch;
	int cancelled;
	audit_done_fn fn;
	void *arg;
	const char
	    *text[AUDIT_QUEUE_NPARAMS]; /* the row's strings, copied into data (NULL stays NULL) */
	struct db_check *check;         /* a copy of the row's, in data too; NULL: none */
	char data[];
};

TAILQ_HEAD(audit_list, audit_entry);

struct audit_batch {
	struct audit_queue *q;
	struct db_job *job;
	struct audit_list entries;
	TAILQ_ENTRY(audit_batch) link;
};

TAILQ_HEAD(audit_batches, audit_batch);

struct audit_queue {
	struct store *store;
	struct event *kick;
	struct audit_list pending;
	struct audit_batches batches; /* in flight */
	struct audit_batches retry;   /* halves of a failed batch, sent before pending rows */
	int in_flight;
	unsigned long written; /* batches submitted so far */
	unsigned long retried; /* failed batches split in halves */
};

static void entry_free(struct audit_entry *e) { free(e); }

static void flush(struct audit_queue *q);

static void batch_fail(struct audit_batch *b, int status)
{
	struct audit_entry *e;

	while ((e = TAILQ_FIRST(&b->entries)) != NULL) {
		TAILQ_REMOVE(&b->entries, e, link);
		if (!e->cancelled && e->fn != NULL)
			e->fn(status, e->arg);
		entry_free(e);
	}
	free(b);
}

/*
 * Splits b (two rows or more) into halves queued for retry, first half first, so the rows
 * PostgreSQL accepts are written and only the one it refuses fails. 0, or -1 out of memory.
 */
static int batch_split(struct audit_queue *q, struct audit_batch *b, size_t n)
{
	struct audit_batch *b2 = calloc(1, sizeof(*b2));
	struct audit_entry *e;
	size_t i = 0;

	if (b2 == NULL)
		return -1;
	TAILQ_INIT(&b2->entries);
	b2->q = q;
	while ((e = TAILQ_FIRST(&b->entries)) != NULL && i < n / 2) {
		TAILQ_REMOVE(&b->entries, e, link);
		TAILQ_INSERT_TAIL(&b2->entries, e, link);
		i++;
	}
	b->job = NULL;
	TAILQ_INSERT_HEAD(&q->retry, b, link);
	TAILQ_INSERT_HEAD(&q->retry, b2, link);
	return 0;
}

static void on_batch(int status, const char *const *stored, size_t nstored, void *arg)
{
	struct audit_batch *b = arg;
	struct audit_queue *q = b->q;
	struct audit_entry *e;
	int i = 0, n = 0;

	TAILQ_REMOVE(&q->batches, b, link);
	q->in_flight--;
	TAILQ_FOREACH(e, &b->entries, link)
	n++;
	/* A lost database fails every row alike; anything else may be one row's fault. */
	if (status != 0 && status != -PCS_UNAVAILABLE && n > 1 &&
	    batch_split(q, b, (size_t)n) == 0) {
		q->retried++;
		flush(q);
		return;
	}
	if (status == 0 && nstored != (size_t)n)
		status = -PCS_INTERNAL; /* RETURNING gives one row per row inserted, in order */
	if (status != 0) {
		batch_fail(b, status);
		flush(q);
		return;
	}
	while ((e = TAILQ_FIRST(&b->entries)) != NULL) {
		const char *st = stored[i++];
		int r = AUDIT_LATE;
		TAILQ_REMOVE(&b->entries, e, link);
		if (st == NULL)
			r = AUDIT_STALE;
		else if (e->text[AUDIT_P_STATUS] != NULL &&
		    strcmp(st, e->text[AUDIT_P_STATUS]) == 0)
			r = 0;
		if (!e->cancelled && e->fn != NULL)
			e->fn(r, e->arg);
		entry_free(e);
	}
	free(b);
	flush(q);
}

/*
 * Sends b (its rows in order); on failure every caller in it is told UNAVAILABLE. Either way
 * its rows have left the queue.
 */
static void submit_batch(struct audit_queue *q, struct audit_batch *b)
{
	const char **values = NULL;
	const struct db_check **checks = NULL;
	struct audit_entry *e;
	size_t n = 0;
	pcs_error err;

	TAILQ_FOREACH(e, &b->entries, link)
	n++;
	if (n == 0) {
		free(b);
		return;
	}
	if ((values = calloc(n * AUDIT_QUEUE_NPARAMS, sizeof(*values))) == NULL ||
	    (checks = calloc(n, sizeof(*checks))) == NULL)
		goto fail;
	n = 0;
	TAILQ_FOREACH(e, &b->entries, link)
	{
		for (int i = 0; i < AUDIT_QUEUE_NPARAMS; i++)
			values[n * AUDIT_QUEUE_NPARAMS + (size_t)i] = e->text[i];
		checks[n++] = e->check;
	}
	if ((b->job = db_audit_insert(q->store, values, checks, n, on_batch, b, &err)) == NULL)
		goto fail;
	TAILQ_INSERT_TAIL(&q->batches, b, link);
	q->in_flight++;
	q->written++;
	free(values);
	free(checks);
	return;
fail:
	/* Fail closed: every caller in the batch learns its row was not written. */
	batch_fail(b, -PCS_UNAVAILABLE);
	free(values);
	free(checks);
}

/*
 * Takes the next batch off the queue and sends it. Every call takes rows off the queue,
 * sent or failed: flush loops until the queue is empty or a batch is in flight, and nothing
 * else would come back for rows left behind (a failed submission is answered at once, with
 * no batch in flight to flush again when it ends).
 */
static void write_batch(struct audit_queue *q)
{
	struct audit_batch *b;
	struct audit_entry *e;
	size_t n = 0;

	if ((b = TAILQ_FIRST(&q->retry)) != NULL) {
		TAILQ_REMOVE(&q->retry, b, link);
		submit_batch(q, b);
		return;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		/* Out of memory: the oldest row fails closed, so the queue still moves. */
		e = TAILQ_FIRST(&q->pending);
		TAILQ_REMOVE(&q->pending, e, link);
		if (e->fn != NULL)
			e->fn(-PCS_UNAVAILABLE, e->arg);
		entry_free(e);
		return;
	}
	TAILQ_INIT(&b->entries);
	b->q = q;
	while (n < AUDIT_BATCH_MAX && (e = TAILQ_FIRST(&q->pending)) != NULL) {
		TAILQ_REMOVE(&q->pending, e, link);
		e->in_batch = 1;
		TAILQ_INSERT_TAIL(&b->entries, e, link);
		n++;
	}
	submit_batch(q, b);
}

static void flush(struct audit_queue *q)
{
	while (q->in_flight < AUDIT_BATCHES_IN_FLIGHT &&
	    (!TAILQ_EMPTY(&q->retry) || !TAILQ_EMPTY(&q->pending)))
		write_batch(q);
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
	TAILQ_INIT(&q->retry);
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
	while ((b = TAILQ_FIRST(&q->retry)) != NULL) {
		TAILQ_REMOVE(&q->retry, b, link);
		while ((e = TAILQ_FIRST(&b->entries)) != NULL) {
			TAILQ_REMOVE(&b->entries, e, link);
			entry_free(e);
		}
		free(b);
	}
	while ((b = TAILQ_FIRST(&q->batches)) != NULL) {
		TAILQ_REMOVE(&q->batches, b, link);
		db_job_cancel(b->job);
		while ((e = TAILQ_FIRST(&b->entries)) != NULL) {
			TAILQ_REMOVE(&b->entries, e, link);
			entry_free(e);
		}
		free(b);
	}
	event_free(q->kick);
	free(q);
}

struct audit_entry *audit_enqueue(
    struct audit_queue *q, const struct audit_row *row, audit_done_fn fn, void *arg)
{
	const char *values[AUDIT_QUEUE_NPARAMS];
	struct audit_buf buf;
	struct audit_entry *e;
	char deadline[40];
	size_t len[AUDIT_QUEUE_NPARAMS], total = 0, o = 0, check_len = 0;

	/* One allocation per row (and one for its refs' text, freed here): every resolve's path. */
	if (audit_params(row, &buf, values) != 0) {
		audit_buf_free(&buf);
		return NULL;
	}
	values[AUDIT_P_DEADLINE] = format_ts(row->deadline_us, deadline);
	if (row->check != NULL)
		check_len = sizeof(*row->check) +
		    row->check->nsecrets * sizeof(row->check->secrets[0]);
	for (int i = 0; i < AUDIT_QUEUE_NPARAMS; i++)
		total += (len[i] = values[i] != NULL ? strlen(values[i]) + 1 : 0);
	/* The check first, where data is aligned for it (data follows pointers in the struct). */
	if ((e = calloc(1, sizeof(*e) + check_len + total)) == NULL) {
		audit_buf_free(&buf);
		return NULL;
	}
	if (row->check != NULL) {
		e->check = (struct db_check *)(void *)e->data;
		memcpy(e->check, row->check, check_len);
		o = check_len;
	}
	for (int i = 0; i < AUDIT_QUEUE_NPARAMS; i++) {
		if (values[i] == NULL)
			continue;
		memcpy(e->data + o, values[i], len[i]);
		e->text[i] = e->data + o;
		o += len[i];
	}
	audit_buf_free(&buf);
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

unsigned long audit_queue_retries(const struct audit_queue *q) { return q->retried; }

int audit_expire(struct audit_entry *e)
{
	if (e->in_batch)
		return 0;
	/* Static strings: the row's own copies stay in its allocation, unused. */
	e->text[AUDIT_P_STATUS] = "UNAVAILABLE";
	e->text[AUDIT_P_MESSAGE] = AUDIT_LATE_MESSAGE;
	e->fn = NULL;
	e->arg = NULL;
	return 1;
}

void audit_cancel(struct audit_entry *e)
{
	if (e->in_batch) {
		e->cancelled = 1;
		return;
	}
	TAILQ_REMOVE(&e->q->pending, e, link);
	entry_free(e);
}
