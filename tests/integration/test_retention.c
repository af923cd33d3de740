/*
 * Retention and destroying one version (docs/lifecycle.md) through the daemon: a secret's
 * limit (SetSecretRetention, pcctl secret set-retention) destroys the values of the versions
 * it no longer keeps, in the call and in every later update, keeping latest and staged ones;
 * DestroySecretVersion (pcctl secret destroy-version --yes) destroys one, never latest's. A
 * destroyed version keeps its row, says when, by whom and how, has no ciphertext left in the
 * database, and no longer resolves, also on an agent connection whose cache held it. Every
 * call and every refusal has its audit row; a bad limit changes nothing. Two daemons racing
 * updates under a limit leave exactly what the rule keeps.
 *
 * Two daemons on one database; the operator's pcctl runs as its own uid and the agent's
 * connection is opened by a child running as its uid. Needs root.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "itcli.h"
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_retention"
#define AGENT_UID IT_AGENT_UID       /* acme/bot */
#define OPERATOR_UID IT_OPERATOR_UID /* operator of acme */
#define OPERATOR "uid:40013"         /* its actor in created_by, destroyed_by */
#define OPERATOR_PEER "40013"        /* its peer uid in audit rows */

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_INVALID PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT
#define ST_NOT_FOUND PCSECRET__V1__STATUS_CODE__NOT_FOUND
#define ST_PRECONDITION PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION

#define RACERS 20 /* updates sent at once through each daemon */

enum { A, B };
static struct it_daemon D[2];
static char conninfo[512];
static struct itconn_env E[2]; /* each daemon: its socket, conninfo and instance id */
static struct itconn adm, agent;

static const char *const values[] = { NULL, "ret-one", "ret-two", "ret-three", "ret-four",
	"ret-five", "ret-six" };

static long long sql_count(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long sql_count(const char *fmt, ...)
{
	char sql[1024], buf[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	itconn_sql_text(&E[A], buf, sizeof(buf), "%s", sql);
	return atoll(buf);
}

static void sql_text(char *buf, size_t size, const char *sql)
{
	itconn_sql_text(&E[A], buf, size, "%s", sql);
}

/* The audit row of the admin's call id: "method status version" ("" when none). */
static void audit_of(uint64_t id, char *buf, size_t size)
{
	itconn_audit_of(
	    &E[A], "method || ' ' || status || ' ' || coalesce(version, '-')", id, buf, size);
}

/* The audit rows of pcctl's calls (call ids below the tests' own) of method, in order: the
 * peer's uid, the status, the secret and the version. */
static void pcctl_audit(const char *method, char *buf, size_t size)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	    "SELECT coalesce(string_agg(peer_uid || ' ' || status || ' ' || secret || ' ' || "
	    "coalesce(version, '-'), ',' ORDER BY id), '') FROM audit_log WHERE method = '%s' "
	    "AND call_id < 1000000",
	    method);
	sql_text(buf, size, sql);
}

/* An admin call of method (its request) that must end with want and needle; its audit row. */
static void admin_call(const char *method, const ProtobufCMessage *req, const char *version,
    int want, const char *needle, Pcsecret__V1__Reply **out)
{
	char msg[512], row[256], expect[256];
	uint64_t id;
	int st;

	st = itconn_call(&adm, method, req, msg, sizeof(msg), out, &id);
	if (st != want)
		fail_msg("%s: %s (%s), want %s", method, itconn_status_name(st), msg,
		    itconn_status_name(want));
	if (needle != NULL && strstr(msg, needle) == NULL)
		fail_msg("%s: \"%s\" does not say \"%s\"", method, msg, needle);
	audit_of(id, row, sizeof(row));
	snprintf(expect, sizeof(expect), "%s %s %s", method, itconn_status_name(want), version);
	if (strcmp(row, expect) != 0)
		fail_msg("%s: audit rows \"%s\", want \"%s\"", method, row, expect);
}

static void destroy(const char *name, uint32_t version, int want, const char *needle)
{
	Pcsecret__V1__SecretVersionRequest q = PCSECRET__V1__SECRET_VERSION_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;
	char v[16];

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.version = version;
	snprintf(v, sizeof(v), "%u", version);
	admin_call("DestroySecretVersion", &q.base, version != 0 ? v : "-", want, needle, &r);
	pcsecret__v1__reply__free_unpacked(r, NULL);
}

/* SetSecretRetention as the admin; on OK the reply's limit and destroyed count. */
static void retention(
    const char *name, int64_t max, int want, const char *needle, uint32_t destroyed)
{
	Pcsecret__V1__SetSecretRetentionRequest q =
	    PCSECRET__V1__SET_SECRET_RETENTION_REQUEST__INIT;
	Pcsecret__V1__SetSecretRetentionReply *rep;
	Pcsecret__V1__Reply *r = NULL;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.max_versions = max;
	admin_call("SetSecretRetention", &q.base, "-", want, needle, &r);
	if (want == ST_OK) {
		rep = pcsecret__v1__set_secret_retention_reply__unpack(
		    NULL, r->reply.len, r->reply.data);
		assert_non_null(rep);
		assert_non_null(rep->secret);
		assert_int_equal(rep->secret->max_versions, (uint32_t)max);
		assert_int_equal(rep->destroyed, destroyed);
		pcsecret__v1__set_secret_retention_reply__free_unpacked(rep, NULL);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
}

/* What DescribeSecret says of acme/k's versions. */
struct described {
	uint32_t current, max_versions;
	size_t n;
	struct {
		uint32_t version;
		char state[16];
		int latest, staged;
		char destroyed_at[40], destroyed_by[64], destroyed_how[24];
	} v[8];
};

static struct described describe(void)
{
	Pcsecret__V1__DescribeSecretReply *rep = itconn_describe(&adm, "acme", "k");
	struct described d;

	memset(&d, 0, sizeof(d));
	d.current = rep->secret->current_version;
	d.max_versions = rep->secret->max_versions;
	d.n = rep->secret->n_versions;
	assert_true(d.n <= 8);
	for (size_t i = 0; i < d.n; i++) {
		const Pcsecret__V1__VersionInfo *v = rep->secret->versions[i];

		d.v[i].version = v->version;
		snprintf(d.v[i].state, sizeof(d.v[i].state), "%s", v->state);
		d.v[i].latest = v->latest;
		d.v[i].staged = v->staged;
		snprintf(d.v[i].destroyed_at, sizeof(d.v[i].destroyed_at), "%s", v->destroyed_at);
		snprintf(d.v[i].destroyed_by, sizeof(d.v[i].destroyed_by), "%s", v->destroyed_by);
		snprintf(
		    d.v[i].destroyed_how, sizeof(d.v[i].destroyed_how), "%s", v->destroyed_how);
	}
	pcsecret__v1__describe_secret_reply__free_unpacked(rep, NULL);
	return d;
}

/* The states of acme/k's versions in order, e.g. "destroyed,active". */
static void states(char *buf, size_t size)
{
	sql_text(buf, size,
	    "SELECT string_agg(v.state, ',' ORDER BY v.version) FROM secret_versions v "
	    "JOIN secrets s ON s.id = v.secret_id WHERE s.name = 'k'");
}

/* The agent resolves acme/k@version (0: latest): want, and on OK value and got_version. */
static void agent_resolves(
    uint32_t version, int want, const char *value, uint32_t got_version, const char *when)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;
	Pcsecret__V1__SecretRef *refs[1] = { &ref };
	Pcsecret__V1__Reply *r = NULL;
	Pcsecret__V1__ResolveReply *rr;
	char msg[256], destroyed[64];
	int st;

	ref.company = (char *)"acme";
	ref.name = (char *)"k";
	ref.version = version;
	q.refs = refs;
	q.n_refs = 1;
	q.agent = (char *)"";
	st = itconn_call(&agent, "Resolve", &q.base, msg, sizeof(msg), &r, NULL);
	if (st != want)
		fail_msg("%s: resolving @%u: %s (%s), want %s", when, version,
		    itconn_status_name(st), msg, itconn_status_name(want));
	if (st == ST_OK) {
		rr = pcsecret__v1__resolve_reply__unpack(NULL, r->reply.len, r->reply.data);
		assert_non_null(rr);
		assert_int_equal(rr->n_values, 1);
		if (rr->values[0]->version != got_version ||
		    rr->values[0]->value.len != strlen(value) ||
		    memcmp(rr->values[0]->value.data, value, strlen(value)) != 0)
			fail_msg("%s: resolving @%u gave version %u, want %u", when, version,
			    rr->values[0]->version, got_version);
		pcsecret__v1__resolve_reply__free_unpacked(rr, NULL);
	} else {
		/* Refused with no value, and saying why. */
		assert_int_equal(r->reply.len, 0);
		snprintf(
		    destroyed, sizeof(destroyed), "version %u of acme/k was destroyed", version);
		if (strstr(msg, destroyed) == NULL)
			fail_msg("%s: \"%s\" does not say \"%s\"", when, msg, destroyed);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
}

static void bind(const char *env, uint32_t version)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)"k";
	ref.version = version;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	itconn_admin_ok(&adm, "SetAgentEnv", &q.base);
}

/* The operator updates acme/k with values[version] through pcctl (staged with no_promote). */
static void operator_update(uint32_t version, int no_promote)
{
	struct it_result r;

	if (it_pcctl(OPERATOR_UID, D[A].socket, values[version], &r, "secret", "update", "acme/k",
	        no_promote ? "--no-promote" : (char *)NULL, (char *)NULL) != 0)
		fail_msg("secret update (version %u): %s", version, r.err);
	it_result_free(&r);
}

static long long gen_of(const char *name)
{
	return sql_count("SELECT gen FROM secrets WHERE name = '%s'", name);
}

static int setup(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	Pcsecret__V1__AddPrincipalRequest ap = PCSECRET__V1__ADD_PRINCIPAL_REQUEST__INIT;
	uint64_t until;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D[A], conninfo, NULL) != 0 ||
	    it_daemon_start(&D[B], conninfo, D[A].keyfile) != 0)
		return -1;
	/* The cache serves nothing until the feed listens: wait, so the cache is under test. */
	for (until = wire_now_ms() + 15000; it_file_contains(D[A].log, "event=feed_listening",
	                                        strlen("event=feed_listening")) != 1;
	     wire_sleep_ms(50))
		if (wire_now_ms() > until)
			return -1;
	for (int i = A; i <= B; i++) {
		E[i].socket = D[i].socket;
		E[i].conninfo = conninfo;
	}
	itconn_open(&E[A], &adm, 0, 1000000);
	cc.name = (char *)"acme";
	itconn_admin_ok(&adm, "CreateCompany", &cc.base);
	ap.match = (char *)"uid";
	ap.unix_id = OPERATOR_UID;
	ap.role = (char *)"operator";
	ap.company = (char *)"acme";
	itconn_admin_ok(&adm, "AddPrincipal", &ap.base);
	cs.company = (char *)"acme";
	cs.name = (char *)"k";
	cs.value.data = (uint8_t *)values[1];
	cs.value.len = strlen(values[1]);
	itconn_admin_ok(&adm, "CreateSecret", &cs.base);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = AGENT_UID;
	itconn_admin_ok(&adm, "CreateAgent", &ca.base);
	bind("K", 0);
	bind("K1", 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_close(&agent.w);
	wire_close(&adm.w);
	it_daemon_cleanup(&D[B]);
	it_daemon_cleanup(&D[A]);
	return 0;
}

static void test_retention_destroys_beyond_the_limit(void **state)
{
	struct it_result r;
	struct described d;
	char buf[512];
	long long gen;

	(void)state;
	itconn_open(&E[A], &agent, AGENT_UID, 2000000);
	/* Unlimited by default, and said so. */
	d = describe();
	assert_int_equal(d.max_versions, 0);

	/* The operator sets a limit of 2 through pcctl: one version, nothing to destroy. */
	if (it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "secret", "set-retention", "acme/k", "2",
	        (char *)NULL) != 0)
		fail_msg("secret set-retention: %s", r.err);
	assert_non_null(strstr(r.out, "keeps 2 versions"));
	it_result_free(&r);
	pcctl_audit("SetSecretRetention", buf, sizeof(buf));
	assert_string_equal(buf, OPERATOR_PEER " OK k -");

	operator_update(2, 0);
	states(buf, sizeof(buf));
	assert_string_equal(buf, "active,active");
	/* Version 1, pinned, from the database and then from the cache. */
	agent_resolves(1, ST_OK, values[1], 1, "before the limit is reached");
	agent_resolves(1, ST_OK, values[1], 1, "from the cache");
	gen = gen_of("k");

	/* A third version: the oldest is destroyed in the update's own transaction. */
	operator_update(3, 0);
	states(buf, sizeof(buf));
	assert_string_equal(buf, "destroyed,active,active");
	assert_true(gen_of("k") > gen);
	agent_resolves(1, ST_PRECONDITION, NULL, 0, "the version retention destroyed, pinned");
	agent_resolves(0, ST_OK, values[3], 3, "latest");

	/* 4 staged: the newest two are 4 and 3 (latest), so 2 goes. */
	operator_update(4, 1);
	states(buf, sizeof(buf));
	assert_string_equal(buf, "destroyed,destroyed,active,active");
	/* 5 staged: the newest two are 5 and 4, but latest (3) is always kept: three values. */
	operator_update(5, 1);
	states(buf, sizeof(buf));
	assert_string_equal(buf, "destroyed,destroyed,active,active,active");
	d = describe();
	assert_int_equal(d.current, 3);
	assert_int_equal(d.max_versions, 2);
	assert_true(d.v[2].latest && d.v[3].staged && d.v[4].staged);
	for (size_t i = 0; i < 2; i++) {
		assert_string_equal(d.v[i].state, "destroyed");
		assert_string_equal(d.v[i].destroyed_by, OPERATOR);
		assert_string_equal(d.v[i].destroyed_how, "retention");
		assert_true(d.v[i].destroyed_at[0] != '\0');
	}
	assert_string_equal(d.v[2].destroyed_at, "");
	/* Nothing of the destroyed values is left in the database, the value tag included. */
	assert_int_equal(sql_count("SELECT count(*) FROM secret_versions WHERE version <= 2 AND "
	                           "(ciphertext IS NOT NULL OR nonce IS NOT NULL OR wrapped_key IS "
	                           "NOT NULL OR idempotency_tag IS NOT NULL)"),
	    0);
	/* Each update that went past the limit has its row, in its transaction. */
	pcctl_audit("UpdateSecret", buf, sizeof(buf));
	assert_string_equal(buf,
	    OPERATOR_PEER " OK k 2," OPERATOR_PEER " OK k 3," OPERATOR_PEER " OK k 4," OPERATOR_PEER
	                  " OK k 5");

	/* show, as the operator: the limit, and per version who destroyed it, when and how. */
	if (it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "--json", "secret", "show", "acme/k",
	        (char *)NULL) != 0)
		fail_msg("secret show --json: %s", r.err);
	assert_non_null(strstr(r.out, "\"max_versions\": 2"));
	assert_non_null(strstr(r.out, "\"destroyed_by\": \"" OPERATOR "\""));
	assert_non_null(strstr(r.out, "\"destroyed_how\": \"retention\""));
	assert_null(strstr(r.out, values[1]));
	it_result_free(&r);
	if (it_pcctl(
	        OPERATOR_UID, D[A].socket, NULL, &r, "secret", "show", "acme/k", (char *)NULL) != 0)
		fail_msg("secret show: %s", r.err);
	assert_non_null(strstr(r.out, "keep 2 versions"));
	assert_non_null(strstr(r.out, "destroyed (retention)"));
	it_result_free(&r);
}

static void test_destroy_one_version(void **state)
{
	struct it_result r;
	struct described d;
	char buf[512];
	long long gen;

	(void)state;
	/* acme/k: 1 and 2 destroyed, 3 latest, 4 and 5 staged. */
	states(buf, sizeof(buf));
	assert_string_equal(buf, "destroyed,destroyed,active,active,active");

	/* Without --yes pcctl refuses before sending anything. */
	assert_int_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "secret", "destroy-version",
	                     "acme/k", "4", (char *)NULL),
	    2);
	assert_non_null(strstr(r.err, "--yes"));
	it_result_free(&r);
	assert_int_equal(sql_count("SELECT count(*) FROM audit_log WHERE method = "
	                           "'DestroySecretVersion'"),
	    0);

	/* Refusals, each audited with its version. */
	destroy("k", 3, ST_PRECONDITION, "version 3 of secret acme/k is latest");
	destroy("k", 1, ST_PRECONDITION, "already destroyed");
	destroy("k", 9, ST_NOT_FOUND, "version 9 of secret acme/k does not exist");
	destroy("k", 0, ST_INVALID, "version is 0");
	destroy("nope", 1, ST_NOT_FOUND, "acme/nope does not exist");
	states(buf, sizeof(buf));
	assert_string_equal(buf, "destroyed,destroyed,active,active,active");

	/* A staged version pinned and cached, then destroyed by the operator. */
	bind("K4", 4);
	agent_resolves(4, ST_OK, values[4], 4, "staged, pinned");
	agent_resolves(4, ST_OK, values[4], 4, "staged, pinned, from the cache");
	gen = gen_of("k");
	if (it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "secret", "destroy-version", "acme/k",
	        "4", "--yes", (char *)NULL) != 0)
		fail_msg("secret destroy-version: %s", r.err);
	assert_non_null(strstr(r.out, "destroyed the value of version 4"));
	it_result_free(&r);
	assert_true(gen_of("k") > gen);
	agent_resolves(4, ST_PRECONDITION, NULL, 0, "after destroy-version");
	agent_resolves(0, ST_OK, values[3], 3, "latest after destroy-version");
	assert_int_equal(sql_count("SELECT count(*) FROM secret_versions WHERE version = 4 AND "
	                           "state = 'destroyed' AND ciphertext IS NULL AND nonce IS NULL "
	                           "AND wrapped_key IS NULL AND idempotency_tag IS NULL AND "
	                           "destroyed_by = '" OPERATOR "' AND destroyed_how = "
	                           "'destroy-version' AND destroyed_at IS NOT NULL"),
	    1);
	pcctl_audit("DestroySecretVersion", buf, sizeof(buf));
	assert_string_equal(buf, OPERATOR_PEER " OK k 4");

	/* The agent's whole env fails loudly: it binds destroyed versions. */
	{
		Pcsecret__V1__GetAgentEnvRequest q = PCSECRET__V1__GET_AGENT_ENV_REQUEST__INIT;
		char msg[256];

		q.company = (char *)"";
		q.agent = (char *)"";
		assert_int_equal(
		    itconn_call(&agent, "GetAgentEnv", &q.base, msg, sizeof(msg), NULL, NULL),
		    ST_PRECONDITION);
		assert_non_null(strstr(msg, "of acme/k was destroyed"));
	}

	/* Again: refused, nothing changed. */
	destroy("k", 4, ST_PRECONDITION, "already destroyed");
	destroy("k", 5, ST_OK, NULL);
	d = describe();
	assert_string_equal(d.v[4].state, "destroyed");
	assert_string_equal(d.v[4].destroyed_by, "uid:0");
	assert_string_equal(d.v[4].destroyed_how, "destroy-version");
	assert_int_equal(d.current, 3);

	/* An agent may not destroy anything. */
	{
		Pcsecret__V1__SecretVersionRequest q = PCSECRET__V1__SECRET_VERSION_REQUEST__INIT;

		q.company = (char *)"acme";
		q.name = (char *)"k";
		q.version = 2;
		assert_int_equal(
		    itconn_call(&agent, "DestroySecretVersion", &q.base, NULL, 0, NULL, NULL),
		    PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED);
	}
}

static void test_bad_limit_changes_nothing(void **state)
{
	struct it_result r;
	char before[256], after[256];

	(void)state;
	states(before, sizeof(before));
	retention("k", -1, ST_INVALID, "max versions -1 is negative", 0);
	retention("k", 10001, ST_INVALID, "max versions 10001 is too large", 0);
	retention("k", 1LL << 40, ST_INVALID, "too large", 0);
	retention("nope", 2, ST_NOT_FOUND, "acme/nope does not exist", 0);
	assert_int_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "secret", "set-retention",
	                     "acme/k", "two", (char *)NULL),
	    2);
	it_result_free(&r);
	assert_int_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "secret", "set-retention",
	                     "acme/k", "1x", (char *)NULL),
	    2);
	it_result_free(&r);
	/* A negative number reads as an option unless after "--": then the daemon refuses it. */
	assert_int_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "secret", "set-retention",
	                     "acme/k", "-1", (char *)NULL),
	    2);
	it_result_free(&r);
	assert_int_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "secret", "set-retention",
	                     "acme/k", "--", "-3", (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
	assert_non_null(strstr(r.err, "max versions -3 is negative"));
	it_result_free(&r);
	states(after, sizeof(after));
	assert_string_equal(before, after);
	assert_int_equal(sql_count("SELECT max_versions FROM secrets WHERE name = 'k'"), 2);
	/* The daemon's refusals of a bad limit were audited. */
	assert_int_equal(sql_count("SELECT count(*) FROM audit_log WHERE method = "
	                           "'SetSecretRetention' AND status = 'INVALID_ARGUMENT'"),
	    4);

	/* Back to unlimited: nothing is destroyed by that, or by the next updates. */
	retention("k", 0, ST_OK, NULL, 0);
	operator_update(6, 0);
	states(after, sizeof(after));
	assert_string_equal(after, "destroyed,destroyed,active,destroyed,destroyed,active");
	/* A limit of 1 keeps latest only: version 3 goes, by this call. */
	retention("k", 1, ST_OK, NULL, 1);
	states(after, sizeof(after));
	assert_string_equal(after, "destroyed,destroyed,destroyed,destroyed,destroyed,active");
}

/* Updates of acme/t sent at once through both daemons, RACERS on each, under a limit of 3. */
static void test_two_daemons_keep_the_rule(void **state)
{
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__UpdateSecretRequest up = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	struct itconn conn[2];
	char value[32], buf[256];
	int ok = 0;

	(void)state;
	cs.company = (char *)"acme";
	cs.name = (char *)"t";
	cs.value.data = (uint8_t *)"t-0";
	cs.value.len = 3;
	itconn_admin_ok(&adm, "CreateSecret", &cs.base);
	retention("t", 3, ST_OK, NULL, 0);
	itconn_open(&E[A], &conn[A], 0, 4000000);
	itconn_open(&E[B], &conn[B], 0, 5000000);
	up.company = (char *)"acme";
	up.name = (char *)"t";
	for (int i = 0; i < RACERS; i++)
		for (int d = A; d <= B; d++) {
			snprintf(value, sizeof(value), "t-%d-%d", d, i);
			up.value.data = (uint8_t *)value;
			up.value.len = strlen(value);
			assert_int_equal(wire_send_call(&conn[d].w, conn[d].next_id++,
			                     wire_mid("UpdateSecret"), 0, &up.base),
			    0);
		}
	for (int d = A; d <= B; d++)
		for (int i = 0; i < RACERS; i++) {
			Pcsecret__V1__Reply *r = NULL;

			assert_int_equal(wire_reply(&conn[d].w, 30000, &r), 1);
			if (r->status == ST_OK)
				ok++;
			else
				fail_msg("a racing update: %s", r->message);
			pcsecret__v1__reply__free_unpacked(r, NULL);
		}
	assert_int_equal(ok, 2 * RACERS);
	/* Every update made its version; only the newest 3 (latest among them) keep a value. */
	assert_int_equal(sql_count("SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                           "s.id = v.secret_id WHERE s.name = 't'"),
	    1 + 2 * RACERS);
	itconn_sql_text(&E[A], buf, sizeof(buf),
	    "SELECT string_agg(v.version::text, ',' ORDER BY v.version) FROM secret_versions v "
	    "JOIN secrets s ON s.id = v.secret_id WHERE s.name = 't' AND v.state <> 'destroyed'");
	snprintf(value, sizeof(value), "%d,%d,%d", 2 * RACERS - 1, 2 * RACERS, 2 * RACERS + 1);
	assert_string_equal(buf, value);
	assert_int_equal(
	    sql_count("SELECT current_version FROM secrets WHERE name = 't'"), 2 * RACERS + 1);
	assert_int_equal(sql_count("SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                           "s.id = v.secret_id WHERE s.name = 't' AND (v.ciphertext IS NOT "
	                           "NULL) <> (v.state <> 'destroyed')"),
	    0);
	assert_int_equal(sql_count("SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                           "s.id = v.secret_id WHERE s.name = 't' AND v.state = "
	                           "'destroyed' AND v.destroyed_how = 'retention' AND "
	                           "v.destroyed_by = 'uid:0'"),
	    2 * RACERS - 2);
	/* One OK row per update, through either daemon, and no failed one. */
	assert_int_equal(sql_count("SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' "
	                           "AND secret = 't' AND status = 'OK'"),
	    2 * RACERS);
	assert_int_equal(sql_count("SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' "
	                           "AND secret = 't' AND status <> 'OK'"),
	    0);
	assert_int_equal(sql_count("SELECT count(DISTINCT instance_id) FROM audit_log WHERE "
	                           "method = 'UpdateSecret' AND secret = 't'"),
	    2);
	wire_close(&conn[A].w);
	wire_close(&conn[B].w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retention_destroys_beyond_the_limit),
		cmocka_unit_test(test_destroy_one_version),
		cmocka_unit_test(test_bad_limit_changes_nothing),
		cmocka_unit_test(test_two_daemons_keep_the_rule),
	};

	/* The agent's and the operator's connections are opened as their uids. */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (the agent's and operator's uids)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("retention", tests, setup, teardown);
}
