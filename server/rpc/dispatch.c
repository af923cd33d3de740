#include "dispatch.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

#include "audit.h"
#include "cache.h"
#include "config.h"
#include "db.h"
#include "handlers.h"
#include "log.h"
#include "methods.h"
#include "pbcheck.h"
#include "pbwipe.h"
#include "pcsecret.pb-c.h"
#include "principal.h"
#include "server.h"
#include "session.h"

/* How long a finished call waits for its audit row before failing closed. */
#define AUDIT_GRACE_MS 5000
#define MAX_TIMEOUT_MS 3600000u

static Pcsecret__V1__PcSecret_Service service = PCSECRET__V1__PC_SECRET__INIT(handle_);

struct call {
	struct session *session;
	struct session_call link; /* in the session's list of calls */
	int peer_gone;            /* its reply will go nowhere */
	struct server *srv;
	uint64_t call_id;
	char method[64];
	const struct method *m; /* its row in the method table; NULL until the method is known */
	ProtobufCMessage *request;
	/*
	 * Who the caller is for this call: looked up again for every call, so a rule removed or
	 * an agent re-created for another uid takes effect on connections already open. Part of
	 * the call, not an allocation of its own: this is on every call's path.
	 */
	struct principal principal;
	int identified; /* principal holds the caller's credentials (and role, once decided) */
	int64_t principals_gen; /* the rules' generation the principal was decided at; 0: unknown */
	/*
	 * What an answer taken from the daemon's cache was built from (its identity, and for a
	 * Resolve its bindings and sealed versions): the queued audit row is written only if all
	 * of it is still current, else the call runs again from the database with no_cache set.
	 */
	struct db_check *check;
	int no_cache;
	int began_handshake; /* a Hello that put its session in the handshake: its end ends it */
	struct event *timer;
	uint32_t timeout_ms;
	/* Wall clock, microseconds: when the call arrived and its deadline (for the audit row). */
	long long received_us, deadline_us;
	struct store_job *job;
	struct audit_entry *audit_entry;
	call_db_cb db_cb;
	int db_audited;   /* the running statement carries the call's audit row */
	int db_retryable; /* the running statement's ABORTED goes to db_cb (call_db_retryable) */
	int authorized;
	int ended;   /* status decided; its audit row and reply are on their way */
	int audited; /* an OK audit row was committed with the call's work */
	int status;
	char message[256];
	uint8_t *reply;
	size_t reply_len;
	char company[PCS_NAME_MAX + 1];
	char secret[2 * PCS_NAME_MAX + 8];
	char version[16];
	char actor[32];
	/* The secrets its audit row lists (call_refs); NULL: none. */
	struct audit_ref *refs;
	size_t nrefs;
	void *db_arg; /* the running statement's, for db_cb */
	void (*db_arg_free)(void *);
	void (*sent_fn)(int status, void *arg); /* call_on_sent */
	void *sent_arg;
};

static void db_ops_run(struct call *c, int step, const struct store_query *q, call_db_cb cb,
    void *arg, void (*arg_free)(void *))
{
	if (step)
		call_db_step(c, q, cb, arg, arg_free);
	else
		call_db(c, q, cb, arg, arg_free);
}

static void db_ops_run_retryable(
    struct call *c, const struct store_query *q, call_db_cb cb, void *arg, void (*arg_free)(void *))
{
	call_db_retryable(c, q, cb, arg, arg_free);
}

static void db_ops_fail(struct call *c, int code, const char *message)
{
	call_fail(c, code, "%s", message);
}

/* What the db layer may ask of a call: it calls nothing of this layer directly. */
static const struct db_call_ops db_ops = { db_ops_run, db_ops_fail, call_actor,
	db_ops_run_retryable };

int dispatch_init(pcs_error *err)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	int r;

	if ((r = methods_check(d, err)) != 0)
		return r;
	session_set_dispatcher(dispatch_frame);
	db_set_call_ops(&db_ops);
	/* The INIT macro fills every slot at compile time; this guards against a NULL one. */
	for (unsigned i = 0; i < d->n_methods; i++) {
		const void *after_base = &service.base + 1;
		void (*const *slots)(void) = (void (*const *)(void))after_base;
		if (slots[i] == NULL)
			return pcs_fail(err, PCS_INTERNAL, "no handler for %s", d->methods[i].name);
	}
	return 0;
}

struct server *call_server(const struct call *c) { return c->srv; }
struct session *call_session(const struct call *c) { return c->session; }
const struct conn_cred *call_peer(const struct call *c) { return session_cred(c->session); }
const ProtobufCMessage *call_request(const struct call *c) { return c->request; }
const struct principal *call_principal(const struct call *c) { return &c->principal; }
const char *call_actor(const struct call *c) { return c->actor; }

int call_may_use_cache(const struct call *c)
{
	return !c->no_cache && (c->m->flags & METHOD_CACHED) && c->principals_gen > 0 &&
	    cache_live(c->srv->cache);
}

void call_answered_from_cache(struct call *c, struct db_check *check)
{
	free(c->check);
	check->principals_gen = c->principals_gen;
	c->check = check;
}

int64_t call_principals_gen(const struct call *c) { return c->principals_gen; }

/* The running statement's argument is dropped: its result will not be delivered. */
static void drop_db_arg(struct call *c)
{
	void *arg = c->db_arg;

	c->db_arg = NULL;
	if (arg != NULL && c->db_arg_free != NULL)
		c->db_arg_free(arg);
}

void call_set_target(struct call *c, const char *company, const char *secret, const char *version)
{
	if (company != NULL)
		snprintf(c->company, sizeof(c->company), "%s", company);
	if (secret != NULL)
		snprintf(c->secret, sizeof(c->secret), "%s", secret);
	if (version != NULL)
		snprintf(c->version, sizeof(c->version), "%s", version);
}

const char *call_method(const struct call *c) { return c->method; }
uint64_t call_wire_id(const struct call *c) { return c->call_id; }

int call_authorize(struct call *c, const char *company, const char *agent)
{
	struct authz_request rq = { METHOD_ACTION_SESSION, company, agent, AUTHZ_GRANT_NA };
	pcs_error err;
	int r;

	rq.action = c->m->action;
	if (!c->identified) {
		call_fail(c, PCS_INTERNAL, "%s ran before its caller was identified", c->method);
		return -PCS_INTERNAL;
	}
	r = authz_check(&c->principal, &rq, &err);

	if (r != 0) {
		call_fail_err(c, r, &err);
		return r;
	}
	c->authorized = 1;
	return 0;
}

static void call_free(struct call *c)
{
	if (c->job != NULL)
		store_cancel(c->job);
	if (c->audit_entry != NULL)
		audit_cancel(c->audit_entry);
	drop_db_arg(c);
	if (c->request != NULL)
		protobuf_c_message_free_unpacked(c->request, &pbwipe_allocator);
	if (c->reply != NULL) {
		explicit_bzero(c->reply, c->reply_len);
		free(c->reply);
	}
	if (c->timer != NULL)
		event_free(c->timer);
	free(c->check);
	free(c->refs);
	free(c);
}

static void drop_reply(struct call *c)
{
	if (c->reply != NULL) {
		explicit_bzero(c->reply, c->reply_len);
		free(c->reply);
		c->reply = NULL;
		c->reply_len = 0;
	}
}

static void call_send(struct call *c)
{
	struct session *s = c->session;
	const struct conn_cred *peer = session_cred(s);
	enum log_level lvl = c->status == PCS_OK ? LOG_DEBUG : LOG_INFO;

	log_event(lvl, "call", "conn=%llu call_id=%llu method=%s uid=%u pid=%d status=%s%s%s",
	    session_id(s), (unsigned long long)c->call_id, c->method, (unsigned)peer->uid,
	    (int)peer->pid, pcs_status_name(c->status), c->status ? " msg=" : "",
	    c->status ? log_q(c->message) : "");
	c->srv->stats.calls_total++;
	if (c->status != PCS_OK)
		c->srv->stats.calls_failed++;
	if (!c->peer_gone)
		session_send_reply(
		    s, c->call_id, c->status, c->status ? c->message : "", c->reply, c->reply_len);
	/*
	 * The handshake ends with the Hello's reply, as the client is told: established only by
	 * an OK whose audit row is committed. Any other end (its lookup failed, its deadline
	 * passed, its audit row was not written) leaves the session before Hello, so Hello may be
	 * sent again and the calls pipelined behind it (held until now) are refused.
	 */
	if (c->began_handshake)
		session_handshake_end(s, c->status == PCS_OK);
	if (c->sent_fn != NULL)
		c->sent_fn(c->peer_gone ? -1 : c->status, c->sent_arg);
	session_call_done(s, &c->link);
	call_free(c);
	session_unref(s);
}

static void call_identify(struct call *c);
static void arm(struct call *c, uint32_t ms);

/*
 * The cached state an answer was built from moved before its audit row was written: nothing
 * was written and nothing was sent. The call starts again, from the database this time, with
 * what is left of its deadline.
 */
static void call_again_uncached(struct call *c)
{
	struct timespec now;
	long long now_us, left_ms;

	cache_note_stale(c->srv->cache, c->check, (uint32_t)call_peer(c)->uid, call_peer(c)->groups,
	    call_peer(c)->ngroups);
	log_event(LOG_DEBUG, "cache_stale", "call_id=%llu method=%s",
	    (unsigned long long)c->call_id, c->method);
	drop_reply(c);
	free(c->check);
	c->check = NULL;
	c->no_cache = 1;
	c->ended = 0;
	c->authorized = 0;
	c->audited = 0;
	c->status = PCS_OK;
	c->message[0] = '\0';
	c->company[0] = '\0';
	c->secret[0] = '\0';
	c->version[0] = '\0';
	free(c->refs);
	c->refs = NULL;
	c->nrefs = 0;
	c->principals_gen = 0;
	c->identified = 0;
	memset(&c->principal, 0, sizeof(c->principal));
	clock_gettime(CLOCK_REALTIME, &now);
	now_us = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	left_ms = c->deadline_us > now_us ? (c->deadline_us - now_us + 999) / 1000 : 0;
	evtimer_del(c->timer);
	arm(c, (uint32_t)left_ms);
	if (left_ms > 0)
		call_identify(c);
}

static void on_audit_written(int status, void *arg)
{
	struct call *c = arg;

	c->audit_entry = NULL;
	if (status == AUDIT_STALE) {
		call_again_uncached(c);
		return;
	}
	if (status == AUDIT_LATE) {
		/* PostgreSQL stored the row as UNAVAILABLE: the client is told what the row says. */
		drop_reply(c);
		c->status = PCS_UNAVAILABLE;
		snprintf(c->message, sizeof(c->message), "%s; call refused", AUDIT_LATE_MESSAGE);
	} else if (status != 0) {
		log_event(LOG_ERROR, "audit_failed", "call_id=%llu method=%s status=%s",
		    (unsigned long long)c->call_id, c->method, pcs_status_name(-status));
		drop_reply(c);
		c->status = PCS_UNAVAILABLE;
		snprintf(c->message, sizeof(c->message), "audit log unavailable; call refused");
	}
	call_send(c);
}

static void fill_audit(struct call *c, struct audit_row *row, char *principal, size_t size,
    int status, const char *message)
{
	if (c->principal.role != ROLE_NONE)
		authz_describe(&c->principal, principal, size);
	else
		snprintf(principal, size, "uid %u (no principal)", (unsigned)call_peer(c)->uid);
	row->instance_id = c->srv->instance_id;
	row->call_id = (unsigned long long)c->call_id;
	row->uid = (unsigned long)call_peer(c)->uid;
	row->gid = (unsigned long)call_peer(c)->gid;
	row->pid = (long)call_peer(c)->pid;
	row->principal = principal;
	row->method = c->method;
	row->company = c->company[0] ? c->company : NULL;
	row->secret = c->secret[0] ? c->secret : NULL;
	row->version = c->version[0] ? c->version : NULL;
	row->status = pcs_status_name(status);
	row->message = status != PCS_OK ? message : NULL;
	row->received_us = c->received_us;
	row->deadline_us = 0;
	row->check = c->check;
	row->refs = c->refs;
	row->nrefs = c->nrefs;
}

/* ---- the refs of the audit row (docs/audit.md) ---- */

struct audit_ref *call_refs(struct call *c, size_t n)
{
	struct audit_ref *refs = calloc(n + 1, sizeof(*refs));

	if (refs == NULL)
		return NULL;
	free(c->refs);
	c->refs = refs;
	c->nrefs = n;
	return refs;
}

static void arm(struct call *c, uint32_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };

	evtimer_add(c->timer, &tv);
}

/* The status is decided: write the audit row unless the work committed one, then reply. */
static void call_end(struct call *c)
{
	struct audit_row row;
	struct timespec now;
	long long now_us;
	char principal[160];

	if (c->ended)
		return;
	c->ended = 1;
	if (c->job != NULL) {
		store_cancel(c->job);
		c->job = NULL;
	}
	drop_db_arg(c);
	if (c->status == PCS_OK && !c->authorized) {
		drop_reply(c);
		c->status = PCS_INTERNAL;
		snprintf(
		    c->message, sizeof(c->message), "handler for %s did not authorize", c->method);
	}
	if (c->audited && c->status == PCS_OK) {
		call_send(c);
		return;
	}
	fill_audit(c, &row, principal, sizeof(principal), c->status, c->message);
	/*
	 * The row's deadline is the call's: past it the client has given up on an answer, so a
	 * row not yet durable then says UNAVAILABLE, and so does the reply. A call that ended at
	 * its deadline (DEADLINE_EXCEEDED) gives its row the grace period instead.
	 */
	clock_gettime(CLOCK_REALTIME, &now);
	now_us = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	row.received_us = c->received_us;
	/*
	 * By its status, not by comparing clocks: the deadline timer (monotonic, whole ms) can
	 * fire a little before deadline_us (wall clock, µs), which would leave the refusal's own
	 * row a deadline already past.
	 */
	row.deadline_us = c->status != PCS_DEADLINE_EXCEEDED && c->deadline_us > now_us ?
	    c->deadline_us :
	    now_us + (long long)AUDIT_GRACE_MS * 1000;
	if ((c->audit_entry = audit_enqueue(c->srv->audit, &row, on_audit_written, c)) == NULL) {
		drop_reply(c);
		c->status = PCS_UNAVAILABLE;
		snprintf(c->message, sizeof(c->message), "audit log unavailable; call refused");
		call_send(c);
		return;
	}
	evtimer_del(c->timer);
	arm(c, (uint32_t)((row.deadline_us - now_us + 999) / 1000));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct call *c = arg;

	(void)fd;
	(void)what;
	if (!c->ended) {
		/* Whatever the running statement does now, the client is told it did not finish. */
		drop_reply(c);
		c->audited = 0;
		c->status = PCS_DEADLINE_EXCEEDED;
		snprintf(c->message, sizeof(c->message), "%s exceeded its deadline of %u ms",
		    c->method, c->timeout_ms);
		call_end(c);
		return;
	}
	/*
	 * The audit row's deadline. Sent already: PostgreSQL decides (its trigger stores a late
	 * row as UNAVAILABLE) and on_audit_written replies what was stored. Still queued: the row
	 * becomes the refusal's own row and the client is told UNAVAILABLE now.
	 */
	if (c->audit_entry == NULL || !audit_expire(c->audit_entry))
		return;
	c->audit_entry = NULL;
	drop_reply(c);
	c->status = PCS_UNAVAILABLE;
	snprintf(c->message, sizeof(c->message), "%s; call refused", AUDIT_LATE_MESSAGE);
	call_send(c);
}

void call_on_sent(struct call *c, void (*fn)(int status, void *arg), void *arg)
{
	c->sent_fn = fn;
	c->sent_arg = arg;
}

void call_reply(struct call *c, const ProtobufCMessage *reply)
{
	size_t len;

	if (c->ended)
		return;
	len = protobuf_c_message_get_packed_size(reply);
	if ((c->reply = malloc(len ? len : 1)) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	c->reply_len = protobuf_c_message_pack(reply, c->reply);
	c->status = PCS_OK;
	call_end(c);
}

static void call_vfail(struct call *c, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void call_vfail(struct call *c, int code, const char *fmt, va_list ap)
{
	if (c->ended)
		return;
	drop_reply(c);
	c->status = code > 0 ? code : -code;
	if (c->status == PCS_OK)
		c->status = PCS_INTERNAL;
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	call_end(c);
}

void call_fail(struct call *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	call_vfail(c, code, fmt, ap);
	va_end(ap);
}

void call_fail_err(struct call *c, int r, const pcs_error *err)
{
	call_fail(c, r, "%s", err->message);
}

void call_fail_res(struct call *c, const struct store_result *res)
{
	call_fail(c, store_result_status(res), "%s", store_result_message(res));
}

static void on_db_done(const struct store_result *res, void *arg)
{
	struct call *c = arg;
	void *db_arg = c->db_arg;
	void (*db_arg_free)(void *) = c->db_arg_free;
	int status = store_result_status(res);

	c->job = NULL;
	c->db_arg = NULL;
	/*
	 * A retryable statement that lost a check-and-set rolled back (its audit row with it):
	 * the handler decides whether to try again or fail.
	 */
	if (status != 0 && !(status == -PCS_ABORTED && c->db_retryable))
		call_fail_res(c, res);
	else {
		if (status == 0 && c->db_audited)
			c->audited = 1;
		/* May end the call (c is then gone) or start its next statement. */
		c->db_cb(c, res, db_arg);
	}
	if (db_arg != NULL && db_arg_free != NULL)
		db_arg_free(db_arg);
}

static void call_db_run(struct call *c, const struct store_query *q, int audited, int retryable,
    call_db_cb cb, void *arg, void (*arg_free)(void *))
{
	char sql[4096], principal[160];
	const char *values[STORE_MAX_PARAMS + AUDIT_NPARAMS];
	int lengths[STORE_MAX_PARAMS + AUDIT_NPARAMS], formats[STORE_MAX_PARAMS + AUDIT_NPARAMS];
	struct store_query wq = *q;
	struct audit_row row;
	struct audit_buf buf;
	pcs_error err;

	if (c->ended) {
		if (arg != NULL && arg_free != NULL)
			arg_free(arg);
		return;
	}
	c->db_cb = cb;
	c->db_arg = arg;
	c->db_arg_free = arg_free;
	c->db_audited = audited;
	c->db_retryable = retryable;
	if (audited) {
		if (q->nparams > STORE_MAX_PARAMS ||
		    audit_wrap_sql(sql, sizeof(sql), q->sql, q->nparams + 1) != 0) {
			call_fail(c, PCS_INTERNAL, "statement for %s is too large", c->method);
			return;
		}
		fill_audit(c, &row, principal, sizeof(principal), PCS_OK, NULL);
		for (int i = 0; i < q->nparams; i++) {
			values[i] = q->values[i];
			lengths[i] = q->lengths ? q->lengths[i] : 0;
			formats[i] = q->formats ? q->formats[i] : 0;
		}
		if (audit_params(&row, &buf, values + q->nparams) != 0) {
			audit_buf_free(&buf);
			call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		for (int i = q->nparams; i < q->nparams + AUDIT_NPARAMS; i++) {
			lengths[i] = 0;
			formats[i] = 0;
		}
		wq.sql = sql;
		wq.nparams = q->nparams + AUDIT_NPARAMS;
		wq.values = values;
		wq.lengths = lengths;
		wq.formats = formats;
	}
	c->job = store_submit(c->srv->store, &wq, on_db_done, c, &err);
	if (audited)
		audit_buf_free(&buf);
	if (c->job == NULL)
		call_fail_err(c, -err.code, &err);
}

void call_db(
    struct call *c, const struct store_query *q, call_db_cb cb, void *arg, void (*arg_free)(void *))
{
	call_db_run(c, q, c->m->audit == METHOD_AUDIT_WITH_WORK, 0, cb, arg, arg_free);
}

void call_db_retryable(
    struct call *c, const struct store_query *q, call_db_cb cb, void *arg, void (*arg_free)(void *))
{
	call_db_run(c, q, c->m->audit == METHOD_AUDIT_WITH_WORK, 1, cb, arg, arg_free);
}

void call_db_step(
    struct call *c, const struct store_query *q, call_db_cb cb, void *arg, void (*arg_free)(void *))
{
	call_db_run(c, q, 0, 0, cb, arg, arg_free);
}

static void generic_closure(const ProtobufCMessage *msg, void *data);

static void call_invoke(struct call *c)
{
	protobuf_c_service_invoke_internal(
	    &service.base, c->m->id - 1, c->request, generic_closure, c);
}

static void on_identified(struct call *c, const struct db_principal_match *rows, size_t n)
{
	const struct conn_cred *peer = call_peer(c);
	pcs_error err;
	int r;

	if ((r = principal_from_matches(&c->principal, rows, n, &err)) != 0) {
		call_fail_err(c, r, &err);
		return;
	}
	c->principals_gen = n > 0 ? rows[0].gen : 0;
	if (c->m->flags & METHOD_CACHED)
		cache_identity_put(
		    c->srv->cache, (uint32_t)peer->uid, peer->groups, peer->ngroups, rows, n);
	call_invoke(c);
}

/* Who the caller is, from the rules the cache holds; 1 when that decided it. */
static int identify_cached(struct call *c)
{
	const struct conn_cred *peer = call_peer(c);
	const struct db_principal_match *rows;
	struct principal p = c->principal;
	int64_t gen;
	size_t n;
	pcs_error err;

	if (c->no_cache || !(c->m->flags & METHOD_CACHED) ||
	    !cache_identity_get(
	        c->srv->cache, (uint32_t)peer->uid, peer->groups, peer->ngroups, &rows, &n, &gen))
		return 0;
	/* A refusal is left to the database: only an answer is worth checking later. */
	if (principal_from_matches(&p, rows, n, &err) != 0 ||
	    (c->check = calloc(1, sizeof(*c->check))) == NULL)
		return 0;
	c->principal = p;
	c->principals_gen = gen;
	c->check->principals_gen = gen;
	return 1;
}

/*
 * Decides who the caller is from its kernel credentials and the rules as they are now, then
 * runs the handler. Every call, not only Hello: authorization is never taken from a cache
 * that a removed rule or a re-created agent would leave stale.
 */
static void call_identify(struct call *c)
{
	const struct conn_cred *peer = call_peer(c);

	c->principal.uid = (uint32_t)peer->uid;
	c->principal.gid = (uint32_t)peer->gid;
	c->principal.pid = (uint32_t)peer->pid;
	c->identified = 1;
	if (principal_bootstrap(&c->principal, c->srv->self_uid) || identify_cached(c)) {
		call_invoke(c);
		return;
	}
	db_principal_lookup(c, (uint32_t)peer->uid, peer->groups, peer->ngroups, on_identified);
}

static void generic_closure(const ProtobufCMessage *msg, void *data)
{
	struct call *c = data;

	if (msg != NULL)
		call_reply(c, msg);
	else
		call_fail(c, PCS_INTERNAL, "%s failed", c->method);
}

/* The method by id or by "pcsecret.v1.PcSecret/Name"; NULL with a message otherwise. */
static const struct method *find_method(const Pcsecret__V1__Call *env, char *msg, size_t size)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	const struct method *m;
	const char *name = env->method ? env->method : "";
	size_t plen = strlen(d->name), o = 0;
	char shown[72];

	if (env->method_id != 0) {
		if ((m = method_by_id(env->method_id)) == NULL)
			snprintf(msg, size, "method id %u is not defined (1..%zu)", env->method_id,
			    methods_count());
		return m;
	}
	if (name[0] == '/')
		name++;
	if (strncmp(name, d->name, plen) == 0 && name[plen] == '/' &&
	    (m = method_by_name(name + plen + 1)) != NULL)
		return m;
	/*
	 * Named back to help with a typo, but it came from the peer: bounded, and nothing but
	 * printable ASCII goes out (the rest as \xNN), since the message reaches the log and the
	 * audit row.
	 */
	for (size_t i = 0; name[i] != '\0' && o + 8 < sizeof(shown); i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			shown[o++] = (char)ch;
		else
			o += (size_t)snprintf(shown + o, sizeof(shown) - o, "\\x%02x", ch);
		if (name[i + 1] != '\0' && o + 8 >= sizeof(shown)) {
			memcpy(shown + o, "...", 3);
			o += 3;
		}
	}
	shown[o] = '\0';
	snprintf(msg, size, "unknown method \"%s\"", shown);
	return NULL;
}

/* The peer is gone: nothing to stop for an ordinary call, which ends and is audited. */
static void on_peer_gone(struct session_call *sc)
{
	struct call *c = (struct call *)(void *)((char *)sc - offsetof(struct call, link));

	c->peer_gone = 1;
}

int dispatch_frame(struct session *s, const uint8_t *body, size_t len)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	Pcsecret__V1__Call *env;
	struct call *c;
	struct timespec now;
	const ProtobufCMethodDescriptor *md;
	char msg[160], field[PBCHECK_FIELD_MAX];
	enum pbcheck_result chk;
	int handshake;

	clock_gettime(CLOCK_REALTIME, &now);
	env = pcsecret__v1__call__unpack(&pbwipe_allocator, len, body);
	if (env == NULL) {
		session_fail(s, PCS_INVALID_ARGUMENT, "frame is not a valid pcsecret.v1.Call");
		return -1;
	}
	if (env->call_id == 0) {
		protobuf_c_message_free_unpacked(&env->base, &pbwipe_allocator);
		session_fail(
		    s, PCS_INVALID_ARGUMENT, "call_id 0 is reserved for connection errors");
		return -1;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->timer = evtimer_new(session_server(s)->base, on_timer, c)) == NULL) {
		free(c);
		protobuf_c_message_free_unpacked(&env->base, &pbwipe_allocator);
		session_fail(s, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return -1;
	}
	c->session = s;
	c->srv = session_server(s);
	c->call_id = env->call_id;
	snprintf(c->actor, sizeof(c->actor), "uid:%u", (unsigned)call_peer(c)->uid);
	session_ref(s);
	c->link.gone = on_peer_gone;
	session_call_started(s, &c->link);
	c->timeout_ms = env->timeout_ms != 0 ? env->timeout_ms :
	                                       (uint32_t)c->srv->cfg->call_timeout_ms;
	if (c->timeout_ms > MAX_TIMEOUT_MS)
		c->timeout_ms = MAX_TIMEOUT_MS;
	c->received_us = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	c->deadline_us = c->received_us + (long long)c->timeout_ms * 1000;
	arm(c, c->timeout_ms);

	/*
	 * Strings are checked on the wire bytes: unpacking stops a string at its first NUL and
	 * keeps invalid UTF-8. The refusal names the field, never its bytes.
	 */
	if ((chk = pbcheck_message(&pcsecret__v1__call__descriptor, body, len, field)) !=
	    PBCHECK_OK) {
		snprintf(c->method, sizeof(c->method), "unknown");
		call_fail(c, PCS_INVALID_ARGUMENT, "field %s %s", field, pbcheck_problem(chk));
		goto out;
	}
	if ((c->m = find_method(env, msg, sizeof(msg))) == NULL) {
		snprintf(c->method, sizeof(c->method), "unknown");
		call_fail(c, PCS_UNIMPLEMENTED, "%s", msg);
		goto out;
	}
	snprintf(c->method, sizeof(c->method), "%s", c->m->name);
	md = &d->methods[c->m->id - 1];
	handshake = (c->m->flags & METHOD_HANDSHAKE) != 0;
	if (handshake && session_state(s) != SESSION_NEW) {
		call_fail(
		    c, PCS_FAILED_PRECONDITION, "Hello was already called on this connection");
		goto out;
	}
	if (!handshake && session_state(s) != SESSION_ESTABLISHED) {
		call_fail(c, PCS_FAILED_PRECONDITION, "call Hello before %s", c->method);
		goto out;
	}
	chk = pbcheck_message(md->input, env->request.data, env->request.len, field);
	if (chk == PBCHECK_BAD_UTF8 || chk == PBCHECK_NUL) {
		call_fail(c, PCS_INVALID_ARGUMENT, "field %s %s", field, pbcheck_problem(chk));
		goto out;
	}
	c->request = protobuf_c_message_unpack(
	    md->input, &pbwipe_allocator, env->request.len, env->request.data);
	if (c->request == NULL || chk != PBCHECK_OK) {
		call_fail(c, PCS_INVALID_ARGUMENT, "request is not a valid %s", md->input->name);
		goto out;
	}
	if (handshake) {
		session_handshake_begin(s);
		c->began_handshake = 1;
	}
	call_identify(c);
out:
	protobuf_c_message_free_unpacked(&env->base, &pbwipe_allocator);
	return 0;
}
