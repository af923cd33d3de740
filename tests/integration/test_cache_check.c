/*
 * The generation check of the audit statement, on its own. A Resolve answered from the
 * daemon's cache carries the generations it was built from (secrets.gen, agents.gen, the
 * 'principals' row of pcs_gens), and the group-committed audit INSERT writes its row only if
 * they are still current; otherwise the call is answered again from the database. The change
 * feed (LISTEN/NOTIFY) usually drops a cache entry before that matters, so the other tests
 * cannot tell whether the check works. Here the feed is kept out of it: as the PostgreSQL
 * superuser, in one transaction with session_replication_role = replica (no trigger runs, so
 * no NOTIFY and no automatic generation bump), a row is changed and its generation bumped by
 * hand. The daemon's cache is then live but stale, and only the check stands between it and
 * the client:
 *  - a version disabled, a binding removed, the agent's rule removed, each with its
 *    generation bumped: the next Resolve on a connection warmed before the change is refused
 *    as the database refuses it, the refused call has exactly one audit row (the refusal's:
 *    the cached OK answer wrote none), and the daemon logged the cached answer as stale;
 *  - the same changes without the bump (controls): the cache still serves the old answer.
 *    That proves these calls really are answered from the cache, and that it is the
 *    generations the check compares: if the cache were bypassed, or the check looked at the
 *    rows themselves, the controls would fail.
 *
 * One daemon. The agent's connections are opened by a child running as its uid and handed
 * back (SCM_RIGHTS), as in test_two_daemons.c: the daemon takes the peer's credentials from
 * the kernel at accept, so they stay the agent's. Needs root.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_cache_check"
#define AGENT_UID IT_AGENT_UID /* acme/bot */
/* What a NOTIFY committed before a check needs to reach the daemon's feed: far more. */
#define SETTLE_MS 200

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_DENIED PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED
#define ST_UNAUTH PCSECRET__V1__STATUS_CODE__UNAUTHENTICATED
#define ST_NOT_FOUND PCSECRET__V1__STATUS_CODE__NOT_FOUND
#define ST_PRECONDITION PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION

/* The rows of the world, by name (the agent's id changes at every reset). */
#define K_ID \
	"(SELECT s.id FROM secrets s JOIN companies c ON c.id = s.company_id " \
	"WHERE c.name = 'acme' AND s.name = 'k' AND s.deleted_at IS NULL)"
#define K_CURRENT "(SELECT current_version FROM secrets WHERE id = " K_ID ")"
#define BOT_ID \
	"(SELECT a.id FROM agents a JOIN companies c ON c.id = a.company_id " \
	"WHERE c.name = 'acme' AND a.name = 'bot')"

/* The generations the check compares. */
#define SECRET_GEN "SELECT gen FROM secrets WHERE id = " K_ID
#define AGENT_GEN "SELECT gen FROM agents WHERE id = " BOT_ID
#define RULES_GEN "SELECT gen FROM pcs_gens WHERE name = 'principals'"

static struct it_daemon D;
static char conninfo[512]; /* the superuser's: changes behind the daemon's back */
static char instance[64];  /* the daemon's, from Hello: its audit rows */
static uint64_t next_base; /* call ids of each connection start at a new million */
static char value[64];     /* what acme/k holds */
static uint32_t version;   /* and its version, the current one */

/* One connection and its call ids. */
struct conn {
	struct wire w;
	uint64_t next_id;
	char what[32]; /* "agent", for messages */
};

static struct conn adm;

static const char *status_name(int st)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &pcsecret__v1__status_code__descriptor, st);

	return st < 0 ? "no reply" : v != NULL ? v->name : "?";
}

/* ---- SQL as the superuser ---- */

/* The first cell of the query printf'd from fmt, in buf; the test fails without one. */
static const char *sql_text(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const char *sql_text(char *buf, size_t size, const char *fmt, ...)
{
	char sql[1024], *v;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	if ((v = pgtest_query_text(conninfo, sql)) == NULL)
		fail_msg("no result from: %s", sql);
	snprintf(buf, size, "%s", v);
	free(v);
	return buf;
}

static void sql_exec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sql_exec(const char *fmt, ...)
{
	char sql[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	if (pgtest_exec(conninfo, sql) != 0)
		fail_msg("failed: %s", sql);
}

/*
 * Runs change (SQL statements) in one transaction with the triggers off: no NOTIFY reaches
 * the daemon and no generation moves unless change moves it.
 */
static void behind_the_feed(const char *change)
{
	sql_exec("BEGIN; SET LOCAL session_replication_role = replica; %s COMMIT;", change);
}

/*
 * The statuses of the audit rows of the agent's call call_id on this daemon, in order,
 * comma-separated ("" when there is none). Call ids are unique to each connection here.
 */
static void audit_of(uint64_t call_id, char *buf, size_t size)
{
	sql_text(buf, size,
	    "SELECT coalesce(string_agg(status, ',' ORDER BY id), '') FROM audit_log "
	    "WHERE instance_id = '%s' AND peer_uid = %u AND call_id = %" PRIu64
	    " AND method = 'Resolve'",
	    instance, (unsigned)AGENT_UID, call_id);
}

/*
 * 1 when the daemon logged the cached answer of call_id as stale (dispatch.c,
 * call_again_uncached: logged before the call is answered again, so before its reply).
 */
static int logged_stale_of(uint64_t call_id, const char *method)
{
	char needle[96];
	int r;

	/* The whole line's tail: call 12 must not match call 123. */
	snprintf(needle, sizeof(needle), "event=cache_stale call_id=%" PRIu64 " method=%s\n",
	    call_id, method);
	if ((r = it_file_contains(D.log, needle, strlen(needle))) < 0)
		fail_msg("cannot read the daemon's log %s", D.log);
	return r;
}

static int logged_stale(uint64_t call_id) { return logged_stale_of(call_id, "Resolve"); }

/*
 * A session as uid (0: as root, an admin); Hello must succeed. Its call ids start at a new
 * million, so that an audit row names one call of one connection.
 */
static void conn_open(struct conn *c, uid_t uid, const char *role)
{
	memset(c, 0, sizeof(*c));
	c->w.fd = -1;
	next_base += 1000000;
	c->next_id = next_base;
	snprintf(c->what, sizeof(c->what), "%s", role);
	if (uid == 0) {
		assert_int_equal(wire_open(&c->w, D.socket), 0);
	} else {
		char msg[2048];
		if ((c->w.fd = wire_connect_as(D.socket, uid, msg, sizeof(msg))) < 0)
			fail_msg("%s: connecting as uid %u: %s", c->what, (unsigned)uid, msg);
	}
	if (wire_hello_instance(&c->w, c->next_id++, uid == 0 ? instance : NULL,
	        uid == 0 ? sizeof(instance) : 0) != ST_OK)
		fail_msg("%s: Hello failed", c->what);
}

static void conn_close(struct conn *c)
{
	if (c->next_id != 0)
		wire_close(&c->w);
	memset(c, 0, sizeof(*c));
}

static int call(
    struct conn *c, const char *method, const ProtobufCMessage *req, Pcsecret__V1__Reply **out)
{
	return wire_rpc(&c->w, c->next_id++, wire_mid(method), 0, req, out, 15000);
}

static void admin_ok(const char *method, const ProtobufCMessage *req)
{
	Pcsecret__V1__Reply *r = NULL;
	int st = call(&adm, method, req, &r);

	if (st != ST_OK)
		fail_msg("%s: %s %s", method, status_name(st), r ? r->message : "");
	pcsecret__v1__reply__free_unpacked(r, NULL);
}

/* ---- what the agent sees ---- */

struct got {
	int status;
	uint64_t call_id;
	char message[256];
	uint8_t value[128];
	size_t len;
	uint32_t version;
	size_t n; /* values in an OK reply */
};

/* Resolves acme/k (latest) for itself on c. Never asserts: the callers say what they want. */
static struct got resolve(struct conn *c)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;
	Pcsecret__V1__SecretRef *refs[1] = { &ref };
	Pcsecret__V1__ResolveReply *rr;
	Pcsecret__V1__Reply *r = NULL;
	struct got g;

	memset(&g, 0, sizeof(g));
	ref.company = (char *)"acme";
	ref.name = (char *)"k";
	q.refs = refs;
	q.n_refs = 1;
	q.agent = (char *)"";
	g.call_id = c->next_id;
	g.status = call(c, "Resolve", &q.base, &r);
	if (r == NULL)
		return g;
	snprintf(g.message, sizeof(g.message), "%s", r->message);
	if (g.status == ST_OK &&
	    (rr = pcsecret__v1__resolve_reply__unpack(NULL, r->reply.len, r->reply.data)) != NULL) {
		g.n = rr->n_values;
		if (rr->n_values > 0 && rr->values[0]->value.len <= sizeof(g.value)) {
			g.len = rr->values[0]->value.len;
			memcpy(g.value, rr->values[0]->value.data, g.len);
			g.version = rr->values[0]->version;
		}
		pcsecret__v1__resolve_reply__free_unpacked(rr, NULL);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	return g;
}

static void check_value(const struct got *g, const char *when)
{
	if (g->status != ST_OK || g->n != 1 || g->len != strlen(value) ||
	    memcmp(g->value, value, g->len) != 0 || g->version != version)
		fail_msg("%s: call %" PRIu64
		         " answered %s (%s) version %u \"%.*s\", want version %u "
		         "\"%s\"",
		    when, g->call_id, status_name(g->status), g->message, g->version, (int)g->len,
		    (const char *)g->value, version, value);
}

/* ---- the world ---- */

static void bind_k(void)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)"k";
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)"K";
	q.ref = &ref;
	admin_ok("SetAgentEnv", &q.base);
}

static void create_agent(void)
{
	Pcsecret__V1__CreateAgentRequest q = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)"bot";
	q.uid = AGENT_UID;
	admin_ok("CreateAgent", &q.base);
}

static int setup(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	uint64_t until;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	/*
	 * The cache serves nothing until the feed listens; before that every case would pass
	 * through the database and prove nothing (the controls would fail, late and obscurely).
	 */
	for (until = wire_now_ms() + 15000;
	     it_file_contains(D.log, "event=feed_listening", strlen("event=feed_listening")) != 1;
	     wire_sleep_ms(50))
		if (wire_now_ms() > until) {
			fprintf(stderr,
			    "the daemon's change feed did not listen within 15 s; log %s\n", D.log);
			return -1;
		}
	conn_open(&adm, 0, "admin");
	assert_true(instance[0] != '\0');
	cc.name = (char *)"acme";
	admin_ok("CreateCompany", &cc.base);
	snprintf(value, sizeof(value), "cache-check-value");
	cs.company = (char *)"acme";
	cs.name = (char *)"k";
	cs.value.data = (uint8_t *)value;
	cs.value.len = strlen(value);
	admin_ok("CreateSecret", &cs.base);
	version = 1;
	create_agent();
	bind_k();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	conn_close(&adm);
	it_daemon_cleanup(&D);
	return 0;
}

/*
 * The world as setup made it, through the daemon or with the triggers on, so the feed is told
 * and every generation moves: acme/k's current version active, acme/bot (re-created: its rule
 * and binding as new) with K bound to latest. Whatever a case changed behind the feed, or left
 * half-way when it failed, is gone, and the NOTIFYs have had time to reach the cache.
 */
static void reset(void)
{
	Pcsecret__V1__DeleteAgentRequest q = PCSECRET__V1__DELETE_AGENT_REQUEST__INIT;
	int st;

	sql_exec("UPDATE secret_versions SET state = 'active' WHERE secret_id = " K_ID
	         " AND version = " K_CURRENT " AND state <> 'active'");
	q.company = (char *)"acme";
	q.name = (char *)"bot";
	st = call(&adm, "DeleteAgent", &q.base, NULL);
	if (st != ST_OK && st != ST_NOT_FOUND)
		fail_msg("DeleteAgent: %s", status_name(st));
	create_agent();
	bind_k();
	wire_sleep_ms(SETTLE_MS);
}

/* ---- one case ---- */

struct change {
	const char *what;
	const char *sql;     /* the change, run behind the feed */
	const char *gen_sql; /* the generation the check compares for it */
	long long gen_moves; /* by how much the change moves it: 1 bumped, 0 the control */
	int want;            /* ST_OK: served from the cache as it was */
	const char *message; /* a refusal's message contains it (may be NULL) */
};

static long long gen_of(const char *sql)
{
	char buf[32];

	return atoll(sql_text(buf, sizeof(buf), "%s", sql));
}

/*
 * reset, an agent connection warmed (two resolves: the first fills the cache, the second is
 * answered from it), the change behind the feed, then one Resolve, and what it must show:
 * the answer, its audit rows, and whether the daemon found its cached answer stale.
 */
static void run_case(const struct change *ch)
{
	char rows[256];
	struct conn ag;
	struct got g;
	long long gen0, gen1;
	uint64_t t0 = wire_now_ms();

	reset();
	conn_open(&ag, AGENT_UID, "agent");
	for (int i = 0; i < 2; i++) {
		g = resolve(&ag);
		check_value(&g, "warming the cache");
	}

	gen0 = gen_of(ch->gen_sql);
	behind_the_feed(ch->sql);
	gen1 = gen_of(ch->gen_sql);
	/* With a trigger running, the change alone would have moved the generation. */
	if (gen1 - gen0 != ch->gen_moves)
		fail_msg("%s: the generation went from %lld to %lld, want +%lld (triggers off?)",
		    ch->what, gen0, gen1, ch->gen_moves);

	g = resolve(&ag);
	audit_of(g.call_id, rows, sizeof(rows));
	if (ch->want == ST_OK) {
		check_value(&g, ch->what);
		/* Served as cached, and its row written: the check found nothing moved. */
		if (strcmp(rows, "OK") != 0)
			fail_msg("%s: call %" PRIu64 " has audit rows \"%s\", want \"OK\"",
			    ch->what, g.call_id, rows);
		if (logged_stale(g.call_id))
			fail_msg("%s: call %" PRIu64 " was found stale with no generation moved",
			    ch->what, g.call_id);
	} else {
		if (g.status != ch->want || g.n != 0 || g.len != 0)
			fail_msg("%s: call %" PRIu64
			         " answered %s (%s) with %zu value(s) \"%.*s\", "
			         "want %s and no value",
			    ch->what, g.call_id, status_name(g.status), g.message, g.n, (int)g.len,
			    (const char *)g.value, status_name(ch->want));
		if (ch->message != NULL && strstr(g.message, ch->message) == NULL)
			fail_msg("%s: call %" PRIu64 " refused with \"%s\", want it to say \"%s\"",
			    ch->what, g.call_id, g.message, ch->message);
		/*
		 * One row, the refusal's: the cached OK answer inserted nothing, and the call
		 * answered again from the database wrote what the client was told.
		 */
		if (strcmp(rows, status_name(ch->want)) != 0)
			fail_msg("%s: call %" PRIu64 " has audit rows \"%s\", want exactly \"%s\"",
			    ch->what, g.call_id, rows, status_name(ch->want));
		/* It was the check that refused it: the cache had answered, unaware. */
		if (!logged_stale(g.call_id))
			fail_msg("%s: call %" PRIu64
			         " was refused but the daemon never found a cached "
			         "answer stale (event=cache_stale): the cache was not used, so the "
			         "check was not tested",
			    ch->what, g.call_id);
	}
	conn_close(&ag);
	/* Back through the daemon and the triggers: the feed tells the cache. */
	reset();
	fprintf(stderr, "%s: %s as expected, in %.2f s\n", ch->what,
	    ch->want == ST_OK ? "served from the cache" : status_name(ch->want),
	    (double)(wire_now_ms() - t0) / 1000.0);
}

/* ---- the cases ---- */

/* 1. The version latest points to disabled, the secret's generation bumped. */
static void test_disabled_version_refused_from_stale_cache(void **state)
{
	char msg[64];
	struct change ch = { "version disabled, secrets.gen bumped",
		"UPDATE secret_versions SET state = 'disabled' WHERE secret_id = " K_ID
		" AND version = " K_CURRENT "; UPDATE secrets SET gen = gen + 1 WHERE id = " K_ID
		";",
		SECRET_GEN, 1, ST_PRECONDITION, msg };

	(void)state;
	/* What the database path says (h_resolve.c), not the cache's word. */
	snprintf(msg, sizeof(msg), "version %u is disabled", version);
	run_case(&ch);
}

/* 2. K's binding removed, the agent's generation bumped. */
static void test_removed_binding_refused_from_stale_cache(void **state)
{
	struct change ch = { "binding removed, agents.gen bumped",
		"DELETE FROM agent_env WHERE agent_id = " BOT_ID " AND env_name = 'K'; "
		"UPDATE agents SET gen = gen + 1 WHERE id = " BOT_ID ";",
		AGENT_GEN, 1, ST_DENIED, NULL };

	(void)state;
	run_case(&ch);
}

/* 3. The agent's principal rule removed, the rules' generation bumped. */
static void test_removed_rule_refused_from_stale_cache(void **state)
{
	struct change ch = { "agent's rule removed, principals gen bumped",
		"DELETE FROM principals WHERE agent_id = " BOT_ID "; "
		"UPDATE pcs_gens SET gen = gen + 1 WHERE name = 'principals';",
		RULES_GEN, 1, ST_UNAUTH, NULL };

	(void)state;
	run_case(&ch);
}

/*
 * 3b. The same for a Hello: a new connection of the agent's uid is identified from the cache
 * (the first connection's Hello and calls put its rules there); its Hello must be refused, and
 * the session left without a handshake, so the next call is refused as before Hello.
 */
static void test_removed_rule_refuses_hello_from_stale_cache(void **state)
{
	struct conn ag, fresh;
	Pcsecret__V1__HelloRequest hq = PCSECRET__V1__HELLO_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;
	char msg[2048], rows[256];
	uint64_t id;
	struct got g;
	int st;

	(void)state;
	reset();
	conn_open(&ag, AGENT_UID, "agent");
	for (int i = 0; i < 2; i++) {
		g = resolve(&ag);
		check_value(&g, "warming the cache");
	}
	behind_the_feed("DELETE FROM principals WHERE agent_id = " BOT_ID "; "
	                "UPDATE pcs_gens SET gen = gen + 1 WHERE name = 'principals';");
	memset(&fresh, 0, sizeof(fresh));
	next_base += 1000000;
	fresh.next_id = next_base;
	snprintf(fresh.what, sizeof(fresh.what), "agent (new connection)");
	if ((fresh.w.fd = wire_connect_as(D.socket, AGENT_UID, msg, sizeof(msg))) < 0)
		fail_msg("connecting as the agent: %s", msg);
	hq.protocol_version = 1; /* the protocol this build speaks */
	id = fresh.next_id;      /* the id call() gives the Hello */
	st = call(&fresh, "Hello", &hq.base, &r);
	if (st != ST_UNAUTH)
		fail_msg("Hello after the agent's rule was removed (no NOTIFY): %s (%s), want %s",
		    status_name(st), r != NULL ? r->message : "", status_name(ST_UNAUTH));
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	sql_text(rows, sizeof(rows),
	    "SELECT coalesce(string_agg(status, ',' ORDER BY id), '') FROM audit_log "
	    "WHERE instance_id = '%s' AND peer_uid = %u AND call_id = %" PRIu64
	    " AND method = 'Hello'",
	    instance, (unsigned)AGENT_UID, id);
	if (strcmp(rows, "UNAUTHENTICATED") != 0)
		fail_msg(
		    "the refused Hello has audit rows \"%s\", want exactly \"UNAUTHENTICATED\"",
		    rows);
	if (!logged_stale_of(id, "Hello"))
		fail_msg("the Hello was refused but never answered from the cache (no "
		         "event=cache_stale): the check was not tested");
	/* The handshake was undone: the connection is back before Hello. */
	g = resolve(&fresh);
	if (g.status != ST_PRECONDITION || g.n != 0)
		fail_msg("a Resolve after the refused Hello answered %s (%s), want %s",
		    status_name(g.status), g.message, status_name(ST_PRECONDITION));
	conn_close(&fresh);
	conn_close(&ag);
	reset();
}

/* 4. Control: the version disabled without the bump is served from the cache. */
static void test_unbumped_disable_served_from_cache(void **state)
{
	struct change ch = { "control: version disabled, no bump",
		"UPDATE secret_versions SET state = 'disabled' WHERE secret_id = " K_ID
		" AND version = " K_CURRENT ";",
		SECRET_GEN, 0, ST_OK, NULL };

	(void)state;
	run_case(&ch);
}

/* The same for the agent's generation: a binding removed without the bump is served. */
static void test_unbumped_unbind_served_from_cache(void **state)
{
	struct change ch = { "control: binding removed, no bump",
		"DELETE FROM agent_env WHERE agent_id = " BOT_ID " AND env_name = 'K';", AGENT_GEN,
		0, ST_OK, NULL };

	(void)state;
	run_case(&ch);
}

/* And for the rules' generation: the agent's rule removed without the bump is served. */
static void test_unbumped_rule_removal_served_from_cache(void **state)
{
	struct change ch = { "control: agent's rule removed, no bump",
		"DELETE FROM principals WHERE agent_id = " BOT_ID ";", RULES_GEN, 0, ST_OK, NULL };

	(void)state;
	run_case(&ch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disabled_version_refused_from_stale_cache),
		cmocka_unit_test(test_removed_binding_refused_from_stale_cache),
		cmocka_unit_test(test_removed_rule_refused_from_stale_cache),
		cmocka_unit_test(test_removed_rule_refuses_hello_from_stale_cache),
		cmocka_unit_test(test_unbumped_disable_served_from_cache),
		cmocka_unit_test(test_unbumped_unbind_served_from_cache),
		cmocka_unit_test(test_unbumped_rule_removal_served_from_cache),
	};

	/* The agent's connections are opened as its uid. */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (the agent's connections as its uid)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("cache_check", tests, setup, teardown);
}
