/*
 * Soft delete, restore and purge (docs/lifecycle.md) through the daemon. A deleted secret
 * stops resolving, by name and by id, with a NOT_FOUND that says it was deleted and until when
 * it can be restored, on an agent connection warmed before the deletion (the cache's answer
 * is refused by the audit statement's generation check); GetAgentEnv and pcrun fail loudly;
 * the agent's bindings are kept; its name stays reserved; restore brings it back with the
 * same id. Purge destroys every version's value and keeps the metadata and the audit rows.
 * A deletion whose recovery window ended is purged by the daemon's timer (purge_interval_ms,
 * short here), which releases the name. Every refusal has its status and its audit row.
 *
 * One daemon. The agent's connection is opened by a child running as its uid and handed back
 * (wire_connect_as), as in test_lifecycle.c. Needs root.
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

#define DB "it_soft_delete"
#define AGENT_UID IT_AGENT_UID /* acme/bot */

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_INVALID PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT
#define ST_NOT_FOUND PCSECRET__V1__STATUS_CODE__NOT_FOUND
#define ST_EXISTS PCSECRET__V1__STATUS_CODE__ALREADY_EXISTS
#define ST_PRECONDITION PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION

#define VK "soft-delete-k"
#define VP "soft-delete-p"
#define VE "soft-delete-e"

static struct it_daemon D;
static char conninfo[512];
static char k_id[64]; /* acme/k's id */

static struct itconn_env E; /* the daemon: its socket, conninfo and instance id */
static struct itconn adm, agent;

/* The method and status of the audit rows of the admin's call id ("" when none). */
static void audit_of(uint64_t id, char *buf, size_t size)
{
	itconn_audit_of(&E, "method || ' ' || status", id, buf, size);
}

/* An admin call that must end with want, its message containing needle, and one audit row. */
static void expect(const char *method, const ProtobufCMessage *req, int want, const char *needle,
    Pcsecret__V1__Reply **out)
{
	char msg[512], row[256], wanted[128];
	uint64_t id;
	int st = itconn_call(&adm, method, req, msg, sizeof(msg), out, &id);

	if (st != want)
		fail_msg("%s: %s (%s), want %s", method, itconn_status_name(st), msg,
		    itconn_status_name(want));
	if (needle != NULL && strstr(msg, needle) == NULL)
		fail_msg("%s: \"%s\" does not say \"%s\"", method, msg, needle);
	audit_of(id, row, sizeof(row));
	snprintf(wanted, sizeof(wanted), "%s %s", method, itconn_status_name(want));
	if (strcmp(row, wanted) != 0)
		fail_msg("%s: audit rows \"%s\", want \"%s\"", method, row, wanted);
}

static void create_secret(const char *name, const char *value, int want, const char *needle)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)value;
	q.value.len = strlen(value);
	expect("CreateSecret", &q.base, want, needle, NULL);
}

static void bind(const char *env, const char *name)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)name;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	itconn_admin_ok(&adm, "SetAgentEnv", &q.base);
}

/* DeleteSecret of acme/name; on OK the restore deadline goes to until (may be NULL). */
static void delete_secret(const char *name, int force, uint32_t days, int want, const char *needle,
    char *until, size_t size)
{
	Pcsecret__V1__DeleteSecretRequest q = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;
	Pcsecret__V1__DeleteSecretReply *rep;
	Pcsecret__V1__Reply *r = NULL;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.force = force;
	q.recovery_days = days;
	expect("DeleteSecret", &q.base, want, needle, &r);
	if (want == ST_OK) {
		rep = pcsecret__v1__delete_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
		assert_non_null(rep);
		/* Bindings are kept, never removed: the reply names them, unbound stays empty. */
		assert_int_equal(rep->n_unbound, 0);
		assert_true(rep->restore_until[0] != '\0');
		if (until != NULL)
			snprintf(until, size, "%s", rep->restore_until);
		pcsecret__v1__delete_secret_reply__free_unpacked(rep, NULL);
	}
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
}

static void name_verb(const char *method, const char *name, int want, const char *needle)
{
	Pcsecret__V1__SecretNameRequest q = PCSECRET__V1__SECRET_NAME_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	expect(method, &q.base, want, needle, NULL);
}

/*
 * The agent resolves acme/name (or the secret id when by_id) and must get want, and then the
 * value, or a message containing needle.
 */
static void agent_resolves(const char *name, const char *by_id, int want, const char *value,
    const char *needle, const char *when)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;
	Pcsecret__V1__SecretRef *refs[1] = { &ref };
	Pcsecret__V1__ResolveReply *rr;
	Pcsecret__V1__Reply *r = NULL;
	char msg[512];
	int st;

	if (by_id != NULL) {
		ref.secret_id = (char *)by_id;
	} else {
		ref.company = (char *)"acme";
		ref.name = (char *)name;
	}
	q.refs = refs;
	q.n_refs = 1;
	q.agent = (char *)"";
	st = itconn_call(&agent, "Resolve", &q.base, msg, sizeof(msg), &r, NULL);
	if (st != want)
		fail_msg("%s: resolving %s: %s (%s), want %s", when, by_id ? by_id : name,
		    itconn_status_name(st), msg, itconn_status_name(want));
	if (st == ST_OK) {
		rr = pcsecret__v1__resolve_reply__unpack(NULL, r->reply.len, r->reply.data);
		assert_non_null(rr);
		assert_int_equal(rr->n_values, 1);
		if (rr->values[0]->value.len != strlen(value) ||
		    memcmp(rr->values[0]->value.data, value, strlen(value)) != 0)
			fail_msg("%s: resolving %s gave another value", when, name);
		pcsecret__v1__resolve_reply__free_unpacked(rr, NULL);
	} else if (needle != NULL && strstr(msg, needle) == NULL) {
		fail_msg("%s: \"%s\" does not say \"%s\"", when, msg, needle);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
}

/* GetAgentEnv on the agent's own connection. */
static void agent_env(int want, const char *needle, const char *when)
{
	Pcsecret__V1__GetAgentEnvRequest q = PCSECRET__V1__GET_AGENT_ENV_REQUEST__INIT;
	char msg[512];
	int st;

	q.company = (char *)"";
	q.agent = (char *)"";
	st = itconn_call(&agent, "GetAgentEnv", &q.base, msg, sizeof(msg), NULL, NULL);
	if (st != want)
		fail_msg("%s: GetAgentEnv: %s (%s), want %s", when, itconn_status_name(st), msg,
		    itconn_status_name(want));
	if (needle != NULL && strstr(msg, needle) == NULL)
		fail_msg("%s: GetAgentEnv \"%s\" does not say \"%s\"", when, msg, needle);
}

/* pcrun as the agent with K=pcs:acme/k printing it; its exit status, output in r. */
static int pcrun_k(struct it_result *r)
{
	const char *env[] = { "K=pcs:acme/k", NULL };
	const char *argv[] = { it_path("client/pcrun"), "--", "/bin/sh", "-c", "printf '%s' \"$K\"",
		NULL };

	assert_int_equal(it_run(AGENT_UID, D.socket, env, NULL, argv, r), 0);
	return r->status;
}

static int setup(void **state)
{
	static const char *const args[] = { "--purge-interval-ms", "200", NULL };
	const struct it_daemon_opts opts = { args, 0, NULL };
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	uint64_t until;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start_opts(&D, conninfo, NULL, &opts) != 0)
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
	create_secret("k", VK, ST_OK, NULL);
	create_secret("p", VP, ST_OK, NULL);
	create_secret("e", VE, ST_OK, NULL);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = AGENT_UID;
	itconn_admin_ok(&adm, "CreateAgent", &ca.base);
	bind("K", "k");
	bind("P", "p");
	bind("E", "e");
	itconn_sql_text(&E, k_id, sizeof(k_id), "SELECT id FROM secrets WHERE name = 'k'");
	itconn_open(&E, &agent, AGENT_UID, 2000000);
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

static void test_delete_and_restore(void **state)
{
	struct it_result r;
	char until[64], note[160], dup[200];

	(void)state;
	/* Warmed: the answers below the deletion come from the cache until it is refused. */
	agent_resolves("k", NULL, ST_OK, VK, NULL, "before delete");
	agent_resolves("k", NULL, ST_OK, VK, NULL, "from the cache");
	agent_resolves(NULL, k_id, ST_OK, VK, NULL, "by id, from the cache");
	agent_env(ST_OK, NULL, "before delete");

	/* Refused: bound without force; a window out of range. */
	delete_secret("k", 0, 0, ST_PRECONDITION, "acme/bot:K", NULL, 0);
	delete_secret("k", 1, 31, ST_INVALID, "recovery days 31", NULL, 0);
	delete_secret("nope", 1, 0, ST_NOT_FOUND, "does not exist", NULL, 0);

	/* Deleted, bindings kept. */
	delete_secret("k", 1, 3, ST_OK, NULL, until, sizeof(until));
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM agent_env e JOIN secrets s ON "
	                     "s.id = e.secret_id WHERE s.name = 'k'"),
	    1);
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM secrets WHERE name = 'k' AND "
	                     "delete_after BETWEEN now() + interval '3 days' - interval "
	                     "'1 minute' AND now() + interval '3 days' AND deleted_by = 'uid:0'"),
	    1);
	snprintf(
	    note, sizeof(note), "secret acme/k was deleted; it can be restored until %s", until);
	agent_resolves("k", NULL, ST_NOT_FOUND, NULL, note, "by name after delete");
	agent_resolves(NULL, k_id, ST_NOT_FOUND, NULL, note, "by id after delete");
	agent_env(ST_NOT_FOUND, note, "after delete");
	/* pcrun does not start the program without the variable. */
	assert_int_not_equal(pcrun_k(&r), 0);
	assert_non_null(strstr(r.err, "NOT_FOUND"));
	assert_non_null(strstr(r.err, "was deleted"));
	assert_int_equal(r.out_len, 0);
	it_result_free(&r);
	if (it_pcctl(0, D.socket, NULL, &r, "agent", "show", "acme/bot", (char *)NULL) != 0)
		fail_msg("agent show: %s", r.err);
	assert_non_null(strstr(r.out, "acme/k"));
	it_result_free(&r);

	/* The name and id stay reserved; the other verbs say it was deleted. */
	snprintf(dup, sizeof(dup), "%s; its name stays reserved", note);
	create_secret("k", "other", ST_EXISTS, dup);
	delete_secret("k", 1, 0, ST_NOT_FOUND, note, NULL, 0);
	{
		Pcsecret__V1__DescribeSecretRequest q = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
		q.company = (char *)"acme";
		q.name = (char *)"k";
		expect("DescribeSecret", &q.base, ST_NOT_FOUND, note, NULL);
	}
	assert_int_equal(
	    it_pcctl(0, D.socket, "x", &r, "secret", "update", "acme/k", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "NOT_FOUND"));
	assert_non_null(strstr(r.err, "was deleted"));
	it_result_free(&r);

	/* Listed as deleted, with its deadline. */
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "list", "acme", "--deleted", (char *)NULL) !=
	    0)
		fail_msg("secret list --deleted: %s", r.err);
	assert_non_null(strstr(r.out, until));
	it_result_free(&r);
	if (it_pcctl(0, D.socket, NULL, &r, "--json", "secret", "list", "acme", "--deleted",
	        (char *)NULL) != 0)
		fail_msg("secret list --deleted --json: %s", r.err);
	assert_non_null(strstr(r.out, "\"restore_until\""));
	assert_non_null(strstr(r.out, k_id));
	it_result_free(&r);
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "list", "acme", (char *)NULL) != 0)
		fail_msg("secret list: %s", r.err);
	assert_null(strstr(r.out, "\nk "));
	it_result_free(&r);
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "secret", "delete", "acme/p",
	                     "--recovery-days", "0", (char *)NULL),
	    2);
	it_result_free(&r);

	/* Restored: same id, bindings intact, resolving again on the same connection. */
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "restore", "acme/k", (char *)NULL) != 0)
		fail_msg("secret restore: %s", r.err);
	assert_non_null(strstr(r.out, k_id));
	it_result_free(&r);
	agent_resolves("k", NULL, ST_OK, VK, NULL, "after restore");
	agent_resolves(NULL, k_id, ST_OK, VK, NULL, "by id after restore");
	agent_env(ST_OK, NULL, "after restore");
	assert_int_equal(pcrun_k(&r), 0);
	assert_string_equal(r.out, VK);
	it_result_free(&r);
	name_verb("RestoreSecret", "k", ST_PRECONDITION, "is not deleted");
	name_verb("RestoreSecret", "nope", ST_NOT_FOUND, "does not exist");
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM secrets WHERE name = 'k' AND deleted_at IS "
	                     "NULL AND restored_by = 'uid:0'"),
	    1);
	/* pcctl's own calls were audited. */
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM audit_log WHERE call_id < 1000000 AND "
	                     "method = 'RestoreSecret' AND status = 'OK' AND secret = 'k'"),
	    1);
}

static void test_purge(void **state)
{
	struct it_result r;

	(void)state;
	agent_resolves("k", NULL, ST_OK, VK, NULL, "before purge");
	/* Irreversible: not without --yes (refused by pcctl, before any call). */
	assert_int_equal(
	    it_pcctl(0, D.socket, NULL, &r, "secret", "purge", "acme/k", (char *)NULL), 2);
	assert_non_null(strstr(r.err, "--yes"));
	it_result_free(&r);
	assert_int_equal(
	    it_sql_count(E.conninfo, "SELECT count(*) FROM audit_log WHERE method = 'PurgeSecret'"),
	    0);
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "purge", "acme/k", "--yes", (char *)NULL) !=
	    0)
		fail_msg("secret purge: %s", r.err);
	assert_non_null(strstr(r.out, "1 version"));
	it_result_free(&r);
	/* The values are gone; the metadata stays. */
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                     "s.id = v.secret_id WHERE s.name = 'k' AND (v.ciphertext IS NOT "
	                     "NULL OR v.nonce IS NOT NULL OR v.wrapped_key IS NOT NULL)"),
	    0);
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                     "s.id = v.secret_id WHERE s.name = 'k' AND v.state = 'destroyed' "
	                     "AND v.purged_by = 'uid:0' AND v.purged_at IS NOT NULL"),
	    1);
	agent_resolves(
	    "k", NULL, ST_PRECONDITION, NULL, "version 1 of acme/k was destroyed", "after purge");
	agent_env(ST_PRECONDITION, "was destroyed", "after purge");
	if (it_pcctl(0, D.socket, NULL, &r, "secret", "show", "acme/k", (char *)NULL) != 0)
		fail_msg("secret show after purge: %s", r.err);
	assert_non_null(strstr(r.out, "destroyed"));
	it_result_free(&r);
	name_verb("PurgeSecret", "k", ST_PRECONDITION, "already purged");
	name_verb("PurgeSecret", "nope", ST_NOT_FOUND, "does not exist");
	/* The history is kept: every call on k so far still has its row. */
	assert_true(
	    it_sql_count(E.conninfo, "SELECT count(*) FROM audit_log WHERE secret = 'k'") >= 10);

	/* A deleted secret can be purged too; it then says it was deleted. */
	delete_secret("p", 1, 0, ST_OK, NULL, NULL, 0);
	name_verb("PurgeSecret", "p", ST_OK, NULL);
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                     "s.id = v.secret_id WHERE s.name = 'p' AND v.ciphertext IS NOT "
	                     "NULL"),
	    0);
	agent_resolves("p", NULL, ST_NOT_FOUND, NULL, "secret acme/p was deleted", "p purged");
	if (it_pcctl(0, D.socket, NULL, &r, "--json", "secret", "list", "acme", "--deleted",
	        (char *)NULL) != 0)
		fail_msg("secret list --deleted: %s", r.err);
	assert_non_null(strstr(r.out, "\"purged\": true"));
	it_result_free(&r);
}

static void test_expired_deletion_is_purged_by_the_daemon(void **state)
{
	uint64_t until;
	char note[160];

	(void)state;
	agent_resolves("e", NULL, ST_OK, VE, NULL, "before delete");
	delete_secret("e", 1, 1, ST_OK, NULL, NULL, 0);
	/* The window ends now: as the superuser, past the API. */
	assert_int_equal(pgtest_exec(conninfo,
	                     "UPDATE secrets SET delete_after = now() - "
	                     "interval '1 second' WHERE name = 'e'"),
	    0);
	for (until = wire_now_ms() + 15000;
	     it_sql_count(E.conninfo,
	         "SELECT count(*) FROM secrets WHERE name = 'e' AND released_at IS NOT NULL") != 1;
	     wire_sleep_ms(100))
		if (wire_now_ms() > until)
			fail_msg("the daemon did not purge the expired deletion");
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                     "s.id = v.secret_id WHERE s.name = 'e' AND (v.ciphertext IS NOT "
	                     "NULL OR v.state <> 'destroyed' OR v.purged_by <> 'pcsecretd')"),
	    0);
	/* One audit row, in the same transaction, and one log line with the count. */
	assert_int_equal(it_sql_count(E.conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'PurgeExpired' "
	                     "AND status = 'OK' AND company = 'acme' AND secret = 'e'"),
	    1);
	assert_int_equal(it_file_contains(D.log, "event=purged_expired secrets=1",
	                     strlen("event=purged_expired secrets=1")),
	    1);
	/* Only that one: the others (k, p) are live or within their window. */
	assert_int_equal(
	    it_sql_count(E.conninfo, "SELECT count(*) FROM secrets WHERE released_at IS NOT NULL"),
	    1);
	snprintf(note, sizeof(note), "secret acme/e was deleted; its recovery window ended at");
	agent_resolves("e", NULL, ST_NOT_FOUND, NULL, note, "after the purge");
	agent_env(ST_NOT_FOUND, "secret acme/e was deleted", "after the purge");
	/* Past its window it cannot come back, and its name is free again. */
	name_verb("RestoreSecret", "e", ST_NOT_FOUND, "recovery window ended");
	create_secret("e", "new", ST_OK, NULL);
	name_verb("RestoreSecret", "e", ST_PRECONDITION, "is not deleted");
	/* The agent's binding still names the purged secret, not the new one of that name. */
	agent_resolves("e", NULL, ST_NOT_FOUND, NULL, "was deleted", "binding to the purged one");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delete_and_restore),
		cmocka_unit_test(test_purge),
		cmocka_unit_test(test_expired_deletion_is_purged_by_the_daemon),
	};

	/* The agent's connection is opened as its uid. */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (the agent's connection as its uid)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("soft_delete", tests, setup, teardown);
}
