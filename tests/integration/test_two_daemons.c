/*
 * Two daemons, A and B, on one database (same conninfo, same master key), each with its own
 * socket: what one daemon acknowledged, the other must already serve. A daemon that reads
 * PostgreSQL for every call passes them by construction; they are here for the cache (sealed
 * values, where `latest` points, agents' bindings, principal rules) fed by a LISTEN/NOTIFY
 * change feed, and fail if either daemon ever answers from stale state:
 *  - an update acknowledged by one daemon is what the other resolves next, on a connection
 *    it already had (1,000 times, both directions);
 *  - a binding removed or moved, an agent's or a launcher's rule removed, an agent deleted or
 *    re-created for another uid: the next call on connections opened (and answered) before
 *    the change is refused, or granted again, on both daemons alike;
 *  - the feed connections (application_name 'pcsecretd-feed') are terminated while updates
 *    go on: a resolve never returns a version older than the last update acknowledged before
 *    it was sent. A separate test requires that the kills hit one feed backend per daemon.
 *
 * The agent's and the launcher's connections are opened by a child running as their uid and
 * handed to this process (SCM_RIGHTS): the daemon takes the peer's credentials from the
 * kernel at accept, so they stay that uid's connections, and one process can drive them in
 * lock-step with the admin calls, with no pipe round trip per check. No Unix accounts are
 * made: numeric uids are enough (it.h), as no group rule is involved.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_two_daemons"
#define AGENT_UID IT_AGENT_UID     /* acme/bot */
#define LAUNCHER_UID IT_AGENT2_UID /* launcher of acme */
#define OTHER_AGENT_UID 40021      /* acme/bot re-created for another uid */
#define FEED_APP "pcsecretd-feed"  /* the change feed's application_name */
#define FEED_KILL_ROUNDS 4

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_DENIED PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED
#define ST_UNAUTH PCSECRET__V1__STATUS_CODE__UNAUTHENTICATED
#define ST_NOT_FOUND PCSECRET__V1__STATUS_CODE__NOT_FOUND

/* As srv.h: under AddressSanitizer everything is slower, so less load and the same checks. */
#if defined(__SANITIZE_ADDRESS__)
#define TWO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TWO_ASAN 1
#endif
#endif
#ifndef TWO_ASAN
#define TWO_ASAN 0
#endif

enum { A, B };
static const char NAME[2] = { 'A', 'B' };
static struct it_daemon D[2];
static char conninfo[512];
static unsigned scale = 1;

/* One connection and its call ids. */
struct conn {
	struct wire w;
	uint64_t next_id;
	char what[32]; /* "agent@B", for messages */
};

/* Root's connections: root is a bootstrap admin on both daemons. */
static struct conn adm[2];
/* The value acme/k holds now, and its version: every successful resolve must return them. */
static char cur_value[64];
static uint32_t cur_version;

static const char *status_name(int st)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &pcsecret__v1__status_code__descriptor, st);

	return st < 0 ? "no reply" : v != NULL ? v->name : "?";
}

/* ---- connections ---- */

/* A session with daemon d as uid (0: as root, an admin); Hello must succeed. */
static void conn_open(struct conn *c, uid_t uid, int d, const char *role)
{
	memset(c, 0, sizeof(*c));
	c->w.fd = -1;
	c->next_id = 1;
	snprintf(c->what, sizeof(c->what), "%s@%c", role, NAME[d]);
	if (uid == 0) {
		assert_int_equal(wire_open(&c->w, D[d].socket), 0);
	} else {
		char msg[2048];
		if ((c->w.fd = wire_connect_as(D[d].socket, uid, msg, sizeof(msg))) < 0)
			fail_msg("%s: connecting as uid %u: %s", c->what, (unsigned)uid, msg);
	}
	if (wire_hello(&c->w, c->next_id++) != ST_OK)
		fail_msg("%s: Hello failed", c->what);
}

static void conn_close(struct conn *c)
{
	/* A zeroed struct wire has fd 0: only close what conn_open opened. */
	if (c->next_id != 0)
		wire_close(&c->w);
	memset(c, 0, sizeof(*c));
}

/* One call; its status (-1: no reply). *out (may be NULL) keeps the reply: free it. */
static int call(
    struct conn *c, const char *method, const ProtobufCMessage *req, Pcsecret__V1__Reply **out)
{
	return wire_rpc(&c->w, c->next_id++, wire_mid(method), 0, req, out, 15000);
}

/* An admin call that must succeed; its reply (free it) when out is not NULL. */
static void admin_ok(
    struct conn *c, const char *method, const ProtobufCMessage *req, Pcsecret__V1__Reply **out)
{
	Pcsecret__V1__Reply *r = NULL;
	int st = call(c, method, req, &r);

	if (st != ST_OK)
		fail_msg("%s on %s: %s %s", method, c->what, status_name(st), r ? r->message : "");
	if (out != NULL)
		*out = r;
	else
		pcsecret__v1__reply__free_unpacked(r, NULL);
}

/* ---- what the clients see ---- */

struct got {
	int status;
	char message[256];
	uint8_t value[128];
	size_t len;
	uint32_t version;
	size_t n; /* values in an OK reply */
};

/*
 * Resolve acme/k (latest, or version when not 0) on c, for itself or, from a launcher, for
 * agent ("acme/bot"). Never asserts: the callers say what was expected.
 */
static struct got resolve(struct conn *c, const char *agent, uint32_t version)
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
	ref.version = version;
	q.refs = refs;
	q.n_refs = 1;
	q.agent = (char *)(agent != NULL ? agent : "");
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

/* The agent's own environment on c: K's value and version. */
static struct got agent_env(struct conn *c)
{
	Pcsecret__V1__GetAgentEnvRequest q = PCSECRET__V1__GET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__GetAgentEnvReply *er;
	Pcsecret__V1__Reply *r = NULL;
	struct got g;

	memset(&g, 0, sizeof(g));
	q.company = (char *)"";
	q.agent = (char *)"";
	g.status = call(c, "GetAgentEnv", &q.base, &r);
	if (r == NULL)
		return g;
	snprintf(g.message, sizeof(g.message), "%s", r->message);
	if (g.status == ST_OK &&
	    (er = pcsecret__v1__get_agent_env_reply__unpack(NULL, r->reply.len, r->reply.data)) !=
	        NULL) {
		g.n = er->n_env;
		for (size_t i = 0; i < er->n_env; i++) {
			if (strcmp(er->env[i]->env_name, "K") != 0 ||
			    er->env[i]->value.len > sizeof(g.value))
				continue;
			g.len = er->env[i]->value.len;
			memcpy(g.value, er->env[i]->value.data, g.len);
			g.version = er->env[i]->version;
		}
		pcsecret__v1__get_agent_env_reply__free_unpacked(er, NULL);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	return g;
}

static int got_is(const struct got *g, const char *value, uint32_t version)
{
	return g->status == ST_OK && g->n == 1 && g->len == strlen(value) &&
	    memcmp(g->value, value, g->len) == 0 && g->version == version;
}

/* The resolve must have returned exactly value at version. */
static void check_value(const struct got *g, const struct conn *c, const char *value,
    uint32_t version, const char *when)
{
	if (!got_is(g, value, version))
		fail_msg("%s: %s served %s (%s) version %u \"%.*s\", want version %u \"%s\"", when,
		    c->what, status_name(g->status), g->message, g->version, (int)g->len,
		    (const char *)g->value, version, value);
}

/* The call must have been refused with status want, and carry no value. */
static void check_refused(const struct got *g, const struct conn *c, int want, const char *when)
{
	if (g->status != want || g->n != 0 || g->len != 0)
		fail_msg("%s: %s answered %s (%s) with %zu value(s) \"%.*s\", want %s", when,
		    c->what, status_name(g->status), g->message, g->n, (int)g->len,
		    (const char *)g->value, status_name(want));
}

/* Resolves twice on each connection, as a cache would be filled, and checks the answers. */
static void warm(struct conn *cs, size_t n, const char *agent, const char *when)
{
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < n; i++) {
			struct got g = resolve(&cs[i], agent, 0);
			check_value(&g, &cs[i], cur_value, cur_version, when);
		}
}

/* ---- admin operations ---- */

/* Updates acme/k through c to value; the new version, which becomes cur_*. */
static uint32_t update(struct conn *c, const char *value)
{
	Pcsecret__V1__UpdateSecretRequest q = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__UpdateSecretReply *ur;
	Pcsecret__V1__Reply *r = NULL;
	uint32_t v;

	q.company = (char *)"acme";
	q.name = (char *)"k";
	q.value.data = (uint8_t *)(uintptr_t)value;
	q.value.len = strlen(value);
	admin_ok(c, "UpdateSecret", &q.base, &r);
	ur = pcsecret__v1__update_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_non_null(ur);
	assert_non_null(ur->secret);
	v = ur->secret->current_version;
	pcsecret__v1__update_secret_reply__free_unpacked(ur, NULL);
	assert_true(v > cur_version);
	snprintf(cur_value, sizeof(cur_value), "%s", value);
	cur_version = v;
	return v;
}

/* Binds K of acme/bot to acme/k at version (0: latest). */
static void bind_k(struct conn *c, uint32_t version)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)"k";
	ref.version = version;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)"K";
	q.ref = &ref;
	admin_ok(c, "SetAgentEnv", &q.base, NULL);
}

static void unbind_k(struct conn *c)
{
	Pcsecret__V1__UnsetAgentEnvRequest q = PCSECRET__V1__UNSET_AGENT_ENV_REQUEST__INIT;

	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)"K";
	admin_ok(c, "UnsetAgentEnv", &q.base, NULL);
}

static void create_agent(struct conn *c, uid_t uid)
{
	Pcsecret__V1__CreateAgentRequest q = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)"bot";
	q.uid = (uint32_t)uid;
	admin_ok(c, "CreateAgent", &q.base, NULL);
}

static void delete_agent(struct conn *c)
{
	Pcsecret__V1__DeleteAgentRequest q = PCSECRET__V1__DELETE_AGENT_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)"bot";
	admin_ok(c, "DeleteAgent", &q.base, NULL);
}

/* A launcher rule for uid in acme; its id. */
static uint64_t add_launcher(struct conn *c, uid_t uid)
{
	Pcsecret__V1__AddPrincipalRequest q = PCSECRET__V1__ADD_PRINCIPAL_REQUEST__INIT;
	Pcsecret__V1__AddPrincipalReply *pr;
	Pcsecret__V1__Reply *r = NULL;
	uint64_t id;

	q.match = (char *)"uid";
	q.unix_id = (uint32_t)uid;
	q.role = (char *)"launcher";
	q.company = (char *)"acme";
	admin_ok(c, "AddPrincipal", &q.base, &r);
	pr = pcsecret__v1__add_principal_reply__unpack(NULL, r->reply.len, r->reply.data);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_non_null(pr);
	assert_non_null(pr->principal);
	id = pr->principal->id;
	pcsecret__v1__add_principal_reply__free_unpacked(pr, NULL);
	return id;
}

/* The id of the rule of role for uid, as ListPrincipals shows it; 0 when there is none. */
static uint64_t rule_of(struct conn *c, uid_t uid, const char *role)
{
	Pcsecret__V1__ListPrincipalsRequest q = PCSECRET__V1__LIST_PRINCIPALS_REQUEST__INIT;
	Pcsecret__V1__ListPrincipalsReply *lr;
	Pcsecret__V1__Reply *r = NULL;
	uint64_t id = 0;

	admin_ok(c, "ListPrincipals", &q.base, &r);
	lr = pcsecret__v1__list_principals_reply__unpack(NULL, r->reply.len, r->reply.data);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_non_null(lr);
	for (size_t i = 0; i < lr->n_principals; i++)
		if (strcmp(lr->principals[i]->match, "uid") == 0 &&
		    lr->principals[i]->unix_id == (uint32_t)uid &&
		    strcmp(lr->principals[i]->role, role) == 0)
			id = lr->principals[i]->id;
	pcsecret__v1__list_principals_reply__free_unpacked(lr, NULL);
	return id;
}

static void remove_rule(struct conn *c, uint64_t id)
{
	Pcsecret__V1__RemovePrincipalRequest q = PCSECRET__V1__REMOVE_PRINCIPAL_REQUEST__INIT;

	q.id = id;
	admin_ok(c, "RemovePrincipal", &q.base, NULL);
}

/* ---- set-up ---- */

static int setup(void **state)
{
	const char *env_scale = getenv("PCS_SERVER_TEST_SCALE");

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	scale = env_scale != NULL ? (unsigned)atoi(env_scale) : TWO_ASAN ? 2 : 1;
	if (scale == 0)
		scale = 1;
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0)
		return -1;
	/* One after the other: A applies the migrations and records the key's check value. */
	if (it_daemon_start(&D[A], conninfo, NULL) != 0 ||
	    it_daemon_start(&D[B], conninfo, D[A].keyfile) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	conn_close(&adm[A]);
	conn_close(&adm[B]);
	it_daemon_cleanup(&D[B]);
	it_daemon_cleanup(&D[A]);
	return 0;
}

/*
 * acme, acme/k, acme/bot (AGENT_UID) with K bound to acme/k latest, a launcher of acme
 * (LAUNCHER_UID); made through A and B both, and the two really are two daemons.
 */
static void world(void)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	char id_a[64] = "", id_b[64] = "";
	static int done;

	if (done)
		return;
	done = 1;
	for (int d = A; d <= B; d++) {
		memset(&adm[d], 0, sizeof(adm[d]));
		adm[d].w.fd = -1;
		adm[d].next_id = 1;
		snprintf(adm[d].what, sizeof(adm[d].what), "admin@%c", NAME[d]);
		assert_int_equal(wire_open(&adm[d].w, D[d].socket), 0);
	}
	assert_int_equal(
	    wire_hello_instance(&adm[A].w, adm[A].next_id++, id_a, sizeof(id_a)), ST_OK);
	assert_int_equal(
	    wire_hello_instance(&adm[B].w, adm[B].next_id++, id_b, sizeof(id_b)), ST_OK);
	/* Else every check below would compare a daemon with itself. */
	assert_true(id_a[0] != '\0' && id_b[0] != '\0');
	assert_string_not_equal(id_a, id_b);
	assert_true(D[A].pid != D[B].pid);
	assert_string_not_equal(D[A].socket, D[B].socket);

	cc.name = (char *)"acme";
	admin_ok(&adm[A], "CreateCompany", &cc.base, NULL);
	snprintf(cur_value, sizeof(cur_value), "pcs2-initial");
	cs.company = (char *)"acme";
	cs.name = (char *)"k";
	cs.value.data = (uint8_t *)cur_value;
	cs.value.len = strlen(cur_value);
	admin_ok(&adm[B], "CreateSecret", &cs.base, NULL);
	cur_version = 1;
	create_agent(&adm[A], AGENT_UID);
	bind_k(&adm[B], 0);
	add_launcher(&adm[A], LAUNCHER_UID);
}

/*
 * The world as world() made it, whatever an earlier test that failed half-way left: acme/bot
 * for AGENT_UID with K bound to latest, the launcher's rule. Through A: each test's first
 * check then also reads through B what A just wrote.
 */
static void reset(void)
{
	Pcsecret__V1__DeleteAgentRequest q = PCSECRET__V1__DELETE_AGENT_REQUEST__INIT;
	int st;

	world();
	q.company = (char *)"acme";
	q.name = (char *)"bot";
	st = call(&adm[A], "DeleteAgent", &q.base, NULL);
	if (st != ST_OK && st != ST_NOT_FOUND)
		fail_msg("DeleteAgent on %s: %s", adm[A].what, status_name(st));
	create_agent(&adm[A], AGENT_UID);
	bind_k(&adm[A], 0);
	if (rule_of(&adm[A], LAUNCHER_UID, "launcher") == 0)
		add_launcher(&adm[A], LAUNCHER_UID);
}

/* ---- 1: an acknowledged update is what the other daemon serves next ---- */

static void test_update_on_one_daemon_resolved_at_once_on_the_other(void **state)
{
	struct conn ag[2];
	unsigned n = 1000 / scale, via_b = 0;
	uint64_t t0;
	char value[64], when[96];

	(void)state;
	reset();
	conn_open(&ag[A], AGENT_UID, A, "agent");
	conn_open(&ag[B], AGENT_UID, B, "agent");
	warm(ag, 2, NULL, "before the updates");
	t0 = wire_now_ms();
	for (unsigned i = 0; i < n; i++) {
		/* One in four the other way round: written through B, read through A. */
		int w = i % 4 == 3 ? B : A, r = 1 - w;
		uint32_t v;
		struct got g;

		via_b += w == B;
		snprintf(value, sizeof(value), "pcs2-iter-%05u-via-%c", i, NAME[w]);
		v = update(&adm[w], value);
		snprintf(when, sizeof(when), "iteration %u, right after %s acknowledged version %u",
		    i, adm[w].what, v);
		g = resolve(&ag[r], NULL, 0);
		check_value(&g, &ag[r], value, v, when);
		/* The agent's environment is read through `latest` too. */
		if (i % 5 == 4) {
			g = agent_env(&ag[r]);
			check_value(&g, &ag[r], value, v, when);
		}
	}
	fprintf(stderr,
	    "%u updates (%u through B), each resolved at once through the other "
	    "daemon, in %.1f s\n",
	    n, via_b, (double)(wire_now_ms() - t0) / 1000.0);
	conn_close(&ag[A]);
	conn_close(&ag[B]);
}

/* ---- 2: revocations reach connections already open, on both daemons ---- */

/* Every connection of cs resolves (for agent) and gets exactly the current value. */
static void all_serve(struct conn *cs, size_t n, const char *agent, const char *when)
{
	for (size_t i = 0; i < n; i++) {
		struct got g = resolve(&cs[i], agent, 0);
		check_value(&g, &cs[i], cur_value, cur_version, when);
	}
}

/* Every connection of cs is refused with want. */
static void all_refused(struct conn *cs, size_t n, const char *agent, int want, const char *when)
{
	for (size_t i = 0; i < n; i++) {
		struct got g = resolve(&cs[i], agent, 0);
		check_refused(&g, &cs[i], want, when);
	}
}

/* (a) a binding removed, then moved to a pinned version: the grant follows on both. */
static void test_unbound_env_refused_on_open_connections(void **state)
{
	struct conn ag[2], ln[2];
	struct got g;
	uint32_t pinned;
	char pinned_value[sizeof(cur_value)];

	(void)state;
	reset();
	conn_open(&ag[A], AGENT_UID, A, "agent");
	conn_open(&ag[B], AGENT_UID, B, "agent");
	conn_open(&ln[A], LAUNCHER_UID, A, "launcher");
	conn_open(&ln[B], LAUNCHER_UID, B, "launcher");
	warm(ag, 2, NULL, "before unbinding");
	warm(ln, 2, "acme/bot", "before unbinding");

	unbind_k(&adm[A]);
	all_refused(ag, 2, NULL, ST_DENIED, "K unbound through A");
	all_refused(ln, 2, "acme/bot", ST_DENIED, "K unbound through A");

	bind_k(&adm[B], 0);
	all_serve(ag, 2, NULL, "K bound again through B");
	all_serve(ln, 2, "acme/bot", "K bound again through B");

	/* Moved to a pinned version: `latest` is no longer granted, the pinned one is. */
	pinned = cur_version;
	memcpy(pinned_value, cur_value, sizeof(pinned_value));
	bind_k(&adm[A], pinned);
	update(&adm[B], "pcs2-after-pinning");
	all_refused(ag, 2, NULL, ST_DENIED, "K pinned through A");
	all_refused(ln, 2, "acme/bot", ST_DENIED, "K pinned through A");
	for (int d = A; d <= B; d++) {
		g = resolve(&ag[d], NULL, pinned);
		check_value(&g, &ag[d], pinned_value, pinned, "K pinned through A, pinned version");
	}
	bind_k(&adm[B], 0);
	all_serve(ag, 2, NULL, "K bound to latest again through B");
	all_serve(ln, 2, "acme/bot", "K bound to latest again through B");
	for (int d = A; d <= B; d++) {
		g = resolve(&ag[d], NULL, pinned);
		check_refused(&g, &ag[d], ST_DENIED, "pinned version after K went back to latest");
		conn_close(&ag[d]);
		conn_close(&ln[d]);
	}
}

/* (b) the agent's own rule removed: refused on both; re-created, served on both again. */
static void test_removed_agent_rule_refused_on_open_connections(void **state)
{
	struct conn ag[2];
	uint64_t rule;

	(void)state;
	reset();
	conn_open(&ag[A], AGENT_UID, A, "agent");
	conn_open(&ag[B], AGENT_UID, B, "agent");
	warm(ag, 2, NULL, "before removing the agent's rule");

	rule = rule_of(&adm[A], AGENT_UID, "agent");
	assert_true(rule != 0);
	remove_rule(&adm[B], rule);
	all_refused(ag, 2, NULL, ST_UNAUTH, "the agent's rule removed through B");

	/* An agent without its rule is only made whole by re-creating it. */
	delete_agent(&adm[A]);
	create_agent(&adm[B], AGENT_UID);
	bind_k(&adm[A], 0);
	all_serve(ag, 2, NULL, "the agent re-created");
	conn_close(&ag[A]);
	conn_close(&ag[B]);
}

/* (b) a launcher's rule removed: refused on both; added again, served on both again. */
static void test_removed_launcher_rule_refused_on_open_connections(void **state)
{
	struct conn ln[2];
	uint64_t rule;

	(void)state;
	reset();
	conn_open(&ln[A], LAUNCHER_UID, A, "launcher");
	conn_open(&ln[B], LAUNCHER_UID, B, "launcher");
	warm(ln, 2, "acme/bot", "before removing the launcher's rule");

	rule = rule_of(&adm[B], LAUNCHER_UID, "launcher");
	assert_true(rule != 0);
	remove_rule(&adm[A], rule);
	all_refused(ln, 2, "acme/bot", ST_UNAUTH, "the launcher's rule removed through A");

	add_launcher(&adm[B], LAUNCHER_UID);
	all_serve(ln, 2, "acme/bot", "the launcher's rule added again through B");
	conn_close(&ln[A]);
	conn_close(&ln[B]);
}

/*
 * (c) the agent deleted: refused on both, for the agent and for a launcher resolving for it;
 * re-created for another uid, the old uid's connections stay refused while the new uid's
 * and the launcher's are served.
 */
static void test_deleted_agent_refused_on_open_connections(void **state)
{
	struct conn ag[2], ln[2], other[2];

	(void)state;
	reset();
	conn_open(&ag[A], AGENT_UID, A, "agent");
	conn_open(&ag[B], AGENT_UID, B, "agent");
	conn_open(&ln[A], LAUNCHER_UID, A, "launcher");
	conn_open(&ln[B], LAUNCHER_UID, B, "launcher");
	warm(ag, 2, NULL, "before deleting the agent");
	warm(ln, 2, "acme/bot", "before deleting the agent");

	delete_agent(&adm[A]);
	all_refused(ag, 2, NULL, ST_UNAUTH, "the agent deleted through A");
	/* A launcher of acme may list acme's agents anyway: it is told there is no such agent. */
	all_refused(ln, 2, "acme/bot", ST_NOT_FOUND, "the agent deleted through A");

	create_agent(&adm[B], OTHER_AGENT_UID);
	bind_k(&adm[B], 0);
	conn_open(&other[A], OTHER_AGENT_UID, A, "new agent");
	conn_open(&other[B], OTHER_AGENT_UID, B, "new agent");
	all_refused(ag, 2, NULL, ST_UNAUTH, "the agent re-created for another uid through B");
	all_serve(other, 2, NULL, "the agent re-created for another uid through B");
	all_serve(ln, 2, "acme/bot", "the agent re-created for another uid through B");

	/* Back as it was, for the next test; the new uid's open connections lose it at once. */
	delete_agent(&adm[B]);
	create_agent(&adm[A], AGENT_UID);
	bind_k(&adm[A], 0);
	all_refused(other, 2, NULL, ST_UNAUTH, "the agent re-created for its first uid");
	all_serve(ag, 2, NULL, "the agent re-created for its first uid");
	for (int d = A; d <= B; d++) {
		conn_close(&ag[d]);
		conn_close(&ln[d]);
		conn_close(&other[d]);
	}
}

/* ---- 3: the change feed killed while updates go on ---- */

/*
 * Between this process and the updater (a child): shared, lock-free atomics, so the
 * acknowledged counter is read without a round trip. The value of counter c is
 * "pcs2-feed-<c>" and its version base + c.
 */
struct feed_shared {
	_Atomic uint64_t acked; /* the last counter A acknowledged */
	_Atomic int stop;
	_Atomic int failed;
	uint32_t base;
};

static struct feed_shared *feed;
static struct wire_child updater;
static int updater_running;
/* For test_feed_kills_hit_both_daemons: what each terminate statement found. */
static int kill_rounds, killed[FEED_KILL_ROUNDS];

static void feed_value(char *buf, size_t size, uint64_t counter)
{
	snprintf(buf, size, "pcs2-feed-%" PRIu64, counter);
}

/* The updater: counter after counter through A until told to stop. */
static int child_updater(void *arg, FILE *out)
{
	Pcsecret__V1__UpdateSecretRequest q = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__UpdateSecretReply *ur;
	Pcsecret__V1__Reply *r = NULL;
	uint64_t id = 2, c, end = wire_now_ms() + 120000;
	char value[64];
	struct wire w;
	int st;

	(void)arg;
	if (wire_session(&w, D[A].socket) != 0) {
		atomic_store(&feed->failed, 1);
		return wire_child_report(out, "updater: no session with A");
	}
	q.company = (char *)"acme";
	q.name = (char *)"k";
	for (c = atomic_load(&feed->acked) + 1; !atomic_load(&feed->stop); c++) {
		uint32_t v;

		if (wire_now_ms() > end) {
			atomic_store(&feed->failed, 1);
			return wire_child_report(out, "updater: never told to stop");
		}
		feed_value(value, sizeof(value), c);
		q.value.data = (uint8_t *)value;
		q.value.len = strlen(value);
		st = wire_rpc(&w, id++, wire_mid("UpdateSecret"), 0, &q.base, &r, 15000);
		if (st != ST_OK) {
			atomic_store(&feed->failed, 1);
			return wire_child_report(out,
			    "updater: update %" PRIu64 " through A: %s %s", c, status_name(st),
			    r != NULL ? r->message : "");
		}
		ur = pcsecret__v1__update_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
		pcsecret__v1__reply__free_unpacked(r, NULL);
		r = NULL;
		v = ur != NULL && ur->secret != NULL ? ur->secret->current_version : 0;
		if (ur != NULL)
			pcsecret__v1__update_secret_reply__free_unpacked(ur, NULL);
		if (v != feed->base + c) {
			atomic_store(&feed->failed, 1);
			return wire_child_report(out,
			    "updater: update %" PRIu64 " made version %u, "
			    "want %" PRIu64,
			    c, v, feed->base + c);
		}
		atomic_store(&feed->acked, c);
	}
	wire_close(&w);
	return 0;
}

static void updater_stop(void)
{
	if (!updater_running)
		return;
	updater_running = 0;
	atomic_store(&feed->stop, 1);
	WIRE_CHILD_OK(&updater);
}

/* The per-test teardown: a failed check must not leave the updater running. */
static int feed_teardown(void **state)
{
	char msg[1024];

	(void)state;
	if (updater_running) {
		updater_running = 0;
		atomic_store(&feed->stop, 1);
		wire_child_wait(&updater, msg, sizeof(msg));
	}
	if (feed != NULL) {
		munmap(feed, sizeof(*feed));
		feed = NULL;
	}
	return 0;
}

/* Feed backends of this database, or, with kill, how many of them were terminated. */
static int feed_backends(int kill)
{
	char sql[400], *v;
	int n;

	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FILTER (WHERE t) FROM (SELECT %s AS t FROM "
	    "pg_stat_activity WHERE application_name = '" FEED_APP "' AND datname = "
	    "current_database()) s",
	    kill ? "pg_terminate_backend(pid)" : "true");
	v = pgtest_query_text(conninfo, sql);
	assert_non_null(v);
	n = atoi(v);
	free(v);
	return n;
}

/* What each connection last returned: the counter must never go back. */
struct reader {
	struct conn c;
	uint64_t last;
	unsigned n;
};

/*
 * One resolve on r, checked against the counter acknowledged before it was sent: never
 * older, never going back, and the version the one that counter was written as.
 */
static void check_fresh(struct reader *r, const char *phase)
{
	uint64_t before = atomic_load(&feed->acked), got;
	struct got g = resolve(&r->c, NULL, 0);
	char want[64];

	if (g.status != ST_OK || g.n != 1 || g.len >= sizeof(want) ||
	    sscanf((const char *)g.value, "pcs2-feed-%" SCNu64, &got) != 1)
		fail_msg("%s: %s served %s (%s) \"%.*s\"", phase, r->c.what, status_name(g.status),
		    g.message, (int)g.len, (const char *)g.value);
	feed_value(want, sizeof(want), got);
	if (g.len != strlen(want) || memcmp(g.value, want, g.len) != 0)
		fail_msg(
		    "%s: %s served \"%.*s\"", phase, r->c.what, (int)g.len, (const char *)g.value);
	if (got < before)
		fail_msg("%s: %s served update %" PRIu64 " (version %u) after A had acknowledged "
		         "update %" PRIu64 " (version %" PRIu64 "): stale",
		    phase, r->c.what, got, g.version, before, feed->base + before);
	if (got < r->last)
		fail_msg("%s: %s served update %" PRIu64 " after it had served %" PRIu64, phase,
		    r->c.what, got, r->last);
	if (g.version != feed->base + got)
		fail_msg("%s: %s served update %" PRIu64 " as version %u, want %" PRIu64, phase,
		    r->c.what, got, g.version, feed->base + got);
	r->last = got;
	r->n++;
	if (atomic_load(&feed->failed))
		updater_stop(); /* fails the test with the updater's report */
}

static void check_both(struct reader *rd, const char *phase)
{
	check_fresh(&rd[B], phase);
	check_fresh(&rd[A], phase);
}

static void test_feed_killed_while_updating_never_stale(void **state)
{
	struct reader rd[2];
	unsigned min_resolves = 50 / scale, updates;
	uint64_t t0 = wire_now_ms();
	int feed_seen = 0;
	char phase[64];

	(void)state;
	reset();
	feed = mmap(NULL, sizeof(*feed), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(feed != MAP_FAILED);
	memset(feed, 0, sizeof(*feed));
	/* Counter 0 first, so every value served from here on has the same form. */
	feed_value(phase, sizeof(phase), 0);
	feed->base = update(&adm[A], phase);

	memset(rd, 0, sizeof(rd));
	conn_open(&rd[A].c, AGENT_UID, A, "agent");
	conn_open(&rd[B].c, AGENT_UID, B, "agent");
	for (int i = 0; i < 2; i++)
		check_both(rd, "before the updates");
	assert_int_equal(wire_child_start(&updater, 0, child_updater, NULL), 0);
	updater_running = 1;

	for (int round = 0; round < FEED_KILL_ROUNDS; round++) {
		/*
		 * Steady state first: until both feeds are up (bounded: a daemon reconnects its
		 * feed on its own time; 2 s for the first round, and no waiting at all while no feed
		 * has ever been seen, as before the feed exists), resolving all along.
		 */
		unsigned wait_ms = round == 0 ? 2000 : feed_seen ? 15000 : 0;
		uint64_t until = wire_now_ms() + wait_ms, at_kill;
		unsigned k = 0;
		int up = 0;

		snprintf(phase, sizeof(phase), "before kill %d", round + 1);
		for (;;) {
			check_both(rd, phase);
			if (++k % 10 == 0 || k >= min_resolves)
				up = feed_backends(0);
			if (k >= min_resolves && (up >= 2 || wire_now_ms() >= until))
				break;
		}
		feed_seen |= up > 0;
		at_kill = atomic_load(&feed->acked);
		killed[round] = feed_backends(1);
		kill_rounds = round + 1;

		/*
		 * Right after the kill, while the feeds are down or coming back: resolves until
		 * updates acknowledged after the kill have been checked, those made while no
		 * notification could reach the other daemon.
		 */
		snprintf(phase, sizeof(phase), "after kill %d", round + 1);
		until = wire_now_ms() + 15000;
		k = 0;
		while (k < min_resolves || atomic_load(&feed->acked) < at_kill + 5) {
			check_both(rd, phase);
			k++;
			if (wire_now_ms() > until)
				fail_msg("%s: A acknowledged %" PRIu64 " updates in 15 s", phase,
				    atomic_load(&feed->acked) - at_kill);
		}
		/* Sent once A had acknowledged updates made after the kill: they must be served. */
		check_both(rd, phase);
	}
	updater_stop();
	updates = (unsigned)atomic_load(&feed->acked);
	fprintf(stderr,
	    "%u updates through A, %u resolves through B and %u through A, "
	    "%d feed kills terminating",
	    updates, rd[B].n, rd[A].n, kill_rounds);
	for (int i = 0; i < kill_rounds; i++)
		fprintf(stderr, " %d", killed[i]);
	fprintf(stderr, " backends, in %.1f s\n", (double)(wire_now_ms() - t0) / 1000.0);
	assert_true(updates >= 5 * FEED_KILL_ROUNDS);
	cur_version = feed->base + (uint32_t)updates;
	feed_value(cur_value, sizeof(cur_value), updates);
	conn_close(&rd[A].c);
	conn_close(&rd[B].c);
}

/*
 * The kills above were real: each terminate statement ended one feed connection per daemon.
 * Fails until the daemons have a change feed named FEED_APP.
 */
static void test_feed_kills_hit_both_daemons(void **state)
{
	(void)state;
	if (kill_rounds != FEED_KILL_ROUNDS)
		fail_msg("the feed-kill test ran %d of %d kills", kill_rounds, FEED_KILL_ROUNDS);
	for (int i = 0; i < kill_rounds; i++)
		if (killed[i] != 2)
			fail_msg("kill %d terminated %d backends with application_name '" FEED_APP
			         "' in database " DB ", want 2 (one feed per daemon)",
			    i + 1, killed[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_on_one_daemon_resolved_at_once_on_the_other),
		cmocka_unit_test(test_unbound_env_refused_on_open_connections),
		cmocka_unit_test(test_removed_agent_rule_refused_on_open_connections),
		cmocka_unit_test(test_removed_launcher_rule_refused_on_open_connections),
		cmocka_unit_test(test_deleted_agent_refused_on_open_connections),
		cmocka_unit_test_teardown(
		    test_feed_killed_while_updating_never_stale, feed_teardown),
		cmocka_unit_test(test_feed_kills_hit_both_daemons),
	};

	/* The agents' and launchers' connections are opened as their uids. */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (agents and launchers as other uids)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("two_daemons", tests, setup, teardown);
}
