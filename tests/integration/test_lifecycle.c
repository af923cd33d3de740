/*
 * The version lifecycle (docs/lifecycle.md) through the daemon: a version staged with
 * UpdateSecret's no_promote (pcctl secret update --no-promote) leaves latest where it was,
 * PromoteSecret makes it latest, RollbackSecret moves latest back without writing a version,
 * DisableSecretVersion and EnableSecretVersion change a version's state, and latest never
 * points at a disabled version. What an agent resolves follows each change on the next call
 * of a connection opened before it (the daemon's cache is checked in the audit statement),
 * every refused transition has its status code, and every call its audit row.
 *
 * One daemon. The agent's connection is opened by a child running as its uid and handed back
 * (wire_connect_as), as in test_cache_check.c. Needs root.
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

#define DB "it_lifecycle"
#define AGENT_UID IT_AGENT_UID /* acme/bot */

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_INVALID PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT
#define ST_NOT_FOUND PCSECRET__V1__STATUS_CODE__NOT_FOUND
#define ST_PRECONDITION PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION

#define V1 "lifecycle-one"
#define V2 "lifecycle-two"

static struct it_daemon D;
static char conninfo[512];
static struct itconn_env E; /* the daemon: its socket, conninfo and instance id */
static struct itconn adm, agent;

/* The method and status of the audit row of the admin's call id ("" when none). */
static void audit_of(uint64_t id, char *buf, size_t size)
{
	itconn_audit_of(
	    &E, "method || ' ' || status || ' ' || coalesce(version, '-')", id, buf, size);
}

/*
 * A lifecycle rpc on acme/k as the admin: its status must be want, its message must contain
 * needle (when not NULL), its audit row must name the method, status and version, and on OK
 * latest must be current afterwards.
 */
static void transition(
    const char *method, uint32_t version, int want, const char *needle, uint32_t current)
{
	Pcsecret__V1__SecretVersionRequest q = PCSECRET__V1__SECRET_VERSION_REQUEST__INIT;
	Pcsecret__V1__SecretVersionReply *rep;
	Pcsecret__V1__Reply *r = NULL;
	char msg[512], row[256], expect[256];
	uint64_t id;
	int st;

	q.company = (char *)"acme";
	q.name = (char *)"k";
	q.version = version;
	st = itconn_call(&adm, method, &q.base, msg, sizeof(msg), &r, &id);
	if (st != want)
		fail_msg("%s version %u: %s (%s), want %s", method, version, itconn_status_name(st),
		    msg, itconn_status_name(want));
	if (needle != NULL && strstr(msg, needle) == NULL)
		fail_msg("%s version %u: \"%s\" does not say \"%s\"", method, version, msg, needle);
	if (st == ST_OK) {
		rep = pcsecret__v1__secret_version_reply__unpack(NULL, r->reply.len, r->reply.data);
		assert_non_null(rep);
		assert_non_null(rep->secret);
		assert_int_equal(rep->secret->current_version, current);
		pcsecret__v1__secret_version_reply__free_unpacked(rep, NULL);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	audit_of(id, row, sizeof(row));
	if (version != 0)
		snprintf(
		    expect, sizeof(expect), "%s %s %u", method, itconn_status_name(want), version);
	else
		snprintf(expect, sizeof(expect), "%s %s -", method, itconn_status_name(want));
	if (strcmp(row, expect) != 0)
		fail_msg(
		    "%s version %u: audit rows \"%s\", want \"%s\"", method, version, row, expect);
}

/* What DescribeSecret says of acme/k. */
struct described {
	uint32_t current;
	size_t n;
	struct {
		uint32_t version;
		char state[16];
		int latest, staged;
		char disabled_by[64], enabled_by[64], promoted_by[64];
	} v[8];
};

static struct described describe(void)
{
	Pcsecret__V1__DescribeSecretReply *rep = itconn_describe(&adm, "acme", "k");
	struct described d;

	memset(&d, 0, sizeof(d));
	d.current = rep->secret->current_version;
	d.n = rep->secret->n_versions;
	assert_true(d.n <= 8);
	for (size_t i = 0; i < d.n; i++) {
		const Pcsecret__V1__VersionInfo *v = rep->secret->versions[i];

		d.v[i].version = v->version;
		snprintf(d.v[i].state, sizeof(d.v[i].state), "%s", v->state);
		d.v[i].latest = v->latest;
		d.v[i].staged = v->staged;
		snprintf(d.v[i].disabled_by, sizeof(d.v[i].disabled_by), "%s", v->disabled_by);
		snprintf(d.v[i].enabled_by, sizeof(d.v[i].enabled_by), "%s", v->enabled_by);
		snprintf(d.v[i].promoted_by, sizeof(d.v[i].promoted_by), "%s", v->promoted_by);
	}
	pcsecret__v1__describe_secret_reply__free_unpacked(rep, NULL);
	return d;
}

/* The agent resolves acme/k (version 0: latest) and must get want (status, then value). */
static void agent_resolves(
    uint32_t version, int want, const char *value, uint32_t got_version, const char *when)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;
	Pcsecret__V1__SecretRef *refs[1] = { &ref };
	Pcsecret__V1__ResolveReply *rr;
	Pcsecret__V1__Reply *r = NULL;
	char msg[256], pinned[32];
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
			fail_msg("%s: resolving @%u gave version %u, want version %u \"%s\"", when,
			    version, rr->values[0]->version, got_version, value);
		pcsecret__v1__resolve_reply__free_unpacked(rr, NULL);
	} else {
		/* A refusal names the version it refused. */
		snprintf(pinned, sizeof(pinned), "%u", version);
		if (strstr(msg, pinned) == NULL)
			fail_msg("%s: \"%s\" does not name version %u", when, msg, version);
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

static int setup(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	uint64_t until;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	/* The cache serves nothing until the feed listens: wait, so the cache is under test. */
	for (until = wire_now_ms() + 15000;
	     it_file_contains(D.log, "event=feed_listening", strlen("event=feed_listening")) != 1;
	     wire_sleep_ms(50))
		if (wire_now_ms() > until)
			return -1;
	E.socket = D.socket;
	E.conninfo = conninfo;
	itconn_open(&E, &adm, 0, 1000000);
	cc.name = (char *)"acme";
	itconn_admin_ok(&adm, "CreateCompany", &cc.base);
	cs.company = (char *)"acme";
	cs.name = (char *)"k";
	cs.value.data = (uint8_t *)V1;
	cs.value.len = strlen(V1);
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
	it_daemon_cleanup(&D);
	return 0;
}

static void test_stage_promote_rollback_disable_enable(void **state)
{
	struct it_result r;
	struct described d;
	char row[256];

	(void)state;
	/* An agent connection opened now, and kept through every change below. */
	itconn_open(&E, &agent, AGENT_UID, 2000000);
	agent_resolves(0, ST_OK, V1, 1, "before anything");
	agent_resolves(0, ST_OK, V1, 1, "from the cache");

	/* Staged: version 2 is added, latest stays 1. */
	if (it_pcctl(0, D.socket, V2, &r, "secret", "update", "acme/k", "--no-promote",
	        (char *)NULL) != 0)
		fail_msg("secret update --no-promote: %s", r.err);
	assert_non_null(strstr(r.out, "staged"));
	it_result_free(&r);
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' "
	                     "AND status = 'OK' AND version = '2'"),
	    1);
	d = describe();
	assert_int_equal(d.current, 1);
	assert_int_equal(d.n, 2);
	assert_true(d.v[0].latest && !d.v[0].staged);
	assert_true(!d.v[1].latest && d.v[1].staged);
	agent_resolves(0, ST_OK, V1, 1, "after staging");
	/* Pinned, the staged version resolves: that is how it is tested before promotion. */
	bind("K2", 2);
	agent_resolves(2, ST_OK, V2, 2, "the staged version pinned");

	/* Promoted: the open connection's next resolve of latest gets it. */
	transition("PromoteSecret", 2, ST_OK, NULL, 2);
	agent_resolves(0, ST_OK, V2, 2, "after promote");
	d = describe();
	assert_true(!d.v[0].latest && d.v[1].latest && !d.v[1].staged);
	assert_string_equal(d.v[1].promoted_by, "uid:0");

	/* Rolled back: latest is 1 again, and no version was written. */
	transition("RollbackSecret", 1, ST_OK, NULL, 1);
	agent_resolves(0, ST_OK, V1, 1, "after rollback");
	d = describe();
	assert_int_equal(d.current, 1);
	assert_int_equal(d.n, 2);
	/* Above latest and active once more: staged again. */
	assert_true(d.v[0].latest && d.v[1].staged);

	/* Refused transitions, each with its status. */
	transition("RollbackSecret", 2, ST_PRECONDITION, "not earlier than latest", 0);
	transition("RollbackSecret", 1, ST_PRECONDITION, "not earlier than latest", 0);
	transition("RollbackSecret", 9, ST_NOT_FOUND, "version 9", 0);
	transition("PromoteSecret", 9, ST_NOT_FOUND, "version 9", 0);
	transition("PromoteSecret", 0, ST_INVALID, "version", 0);
	transition("DisableSecretVersion", 1, ST_PRECONDITION,
	    "latest may not point at a disabled version", 0);
	transition("EnableSecretVersion", 2, ST_PRECONDITION, "not disabled", 0);

	/* Disabled: version 2 no longer resolves pinned; latest (1) still does. */
	transition("DisableSecretVersion", 2, ST_OK, NULL, 1);
	agent_resolves(2, ST_PRECONDITION, NULL, 0, "the disabled version pinned");
	agent_resolves(0, ST_OK, V1, 1, "latest while 2 is disabled");
	d = describe();
	assert_string_equal(d.v[1].state, "disabled");
	assert_false(d.v[1].staged);
	assert_string_equal(d.v[1].disabled_by, "uid:0");
	transition("DisableSecretVersion", 2, ST_PRECONDITION, "already disabled", 0);
	transition("PromoteSecret", 2, ST_PRECONDITION, "version 2", 0);

	/* Enabled again: resolves pinned, and may be promoted. */
	transition("EnableSecretVersion", 2, ST_OK, NULL, 1);
	agent_resolves(2, ST_OK, V2, 2, "the version enabled again");
	d = describe();
	assert_string_equal(d.v[1].state, "active");
	assert_string_equal(d.v[1].enabled_by, "uid:0");

	/* The verbs through pcctl, and what secret show prints. */
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "promote", "acme/k", "2", (char *)NULL) != 0)
		fail_msg("secret promote: %s", r.err);
	it_result_free(&r);
	agent_resolves(0, ST_OK, V2, 2, "after pcctl secret promote");
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "secret", "disable-version", "acme/k", "2",
	                     (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "FAILED_PRECONDITION"));
	assert_non_null(strstr(r.err, "latest may not point at a disabled version"));
	it_result_free(&r);
	assert_int_equal(
	    it_pcctl(0, D.socket, NULL, &r, "secret", "rollback", "acme/k", "x", (char *)NULL), 2);
	it_result_free(&r);
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "rollback", "acme/k", "1", (char *)NULL) != 0)
		fail_msg("secret rollback: %s", r.err);
	it_result_free(&r);
	agent_resolves(0, ST_OK, V1, 1, "after pcctl secret rollback");
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "disable-version", "acme/k", "2",
	        (char *)NULL) != 0)
		fail_msg("secret disable-version: %s", r.err);
	it_result_free(&r);
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "show", "acme/k", (char *)NULL) != 0)
		fail_msg("secret show: %s", r.err);
	assert_non_null(strstr(r.out, "latest"));
	assert_non_null(strstr(r.out, "disabled"));
	it_result_free(&r);
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "enable-version", "acme/k", "2",
	        (char *)NULL) != 0)
		fail_msg("secret enable-version: %s", r.err);
	it_result_free(&r);
	if (it_pcctl(0, D.socket, NULL, &r, "--json", "secret", "show", "acme/k", (char *)NULL) !=
	    0)
		fail_msg("secret show --json: %s", r.err);
	assert_non_null(strstr(r.out, "\"staged\": true"));
	assert_non_null(strstr(r.out, "\"latest\": true"));
	assert_non_null(strstr(r.out, "\"enabled_by\": \"uid:0\""));
	it_result_free(&r);

	/* Still two versions: nothing above wrote one. */
	assert_int_equal(it_sql_count(E.conninfo, "SELECT count(*) FROM secret_versions"), 2);
	/* pcctl's calls were audited too, each once. */
	itconn_sql_text(&E, row, sizeof(row),
	    "SELECT string_agg(method || ' ' || status, ',' ORDER BY id) FROM audit_log "
	    "WHERE call_id < 1000000 AND method IN ('PromoteSecret', 'RollbackSecret', "
	    "'DisableSecretVersion', 'EnableSecretVersion')");
	assert_string_equal(row,
	    "PromoteSecret OK,DisableSecretVersion FAILED_PRECONDITION,RollbackSecret OK,"
	    "DisableSecretVersion OK,EnableSecretVersion OK");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stage_promote_rollback_disable_enable),
	};

	/* The agent's connection is opened as its uid. */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (the agent's connection as its uid)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("lifecycle", tests, setup, teardown);
}
