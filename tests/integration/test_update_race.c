/*
 * Plain UpdateSecret calls racing on one secret, through two daemons on one database: none may
 * fail for racing the others (they serialize, as PutSecretValue does), none is lost and no two
 * share a version number. 16 forked clients (8 per daemon, each its own connection as the
 * daemon's own uid, a bootstrap admin) send 25 updates each, with distinct values and no
 * expected version, released together. Afterwards the versions are exactly 1..401, the
 * audit log has one OK row per update and no failed one, and the latest value is the one of
 * the update given the highest version. An update with a stale expected version is still
 * ABORTED, naming the current version, and an idempotency token still returns its version.
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "itcli.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_update_race"
#define CLIENTS 16 /* half on each daemon */
#define UPDATES 25
#define TOTAL (1 + CLIENTS * UPDATES)

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_ABORTED PCSECRET__V1__STATUS_CODE__ABORTED

enum { A, B };
static struct it_daemon D[2];
static char conninfo[512];

/* What each client saw, in shared memory: the version each update got, or its failure. */
struct outcome {
	uint32_t version[UPDATES];
	int status[UPDATES];
	char first_failure[320];
	int nfailed;
};

static const char *status_name(int st)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &pcsecret__v1__status_code__descriptor, st);

	return st < 0 ? "no reply" : v != NULL ? v->name : "?";
}

static int update(struct wire *w, uint64_t id, const char *value, uint32_t expected,
    const char *token, uint32_t *version, char *msg, size_t size)
{
	Pcsecret__V1__UpdateSecretRequest rq = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__UpdateSecretReply *rep;
	Pcsecret__V1__Reply *r = NULL;
	int st;

	rq.company = (char *)"acme";
	rq.name = (char *)"k";
	rq.value.data = (uint8_t *)(uintptr_t)value;
	rq.value.len = strlen(value);
	rq.expected_version = expected;
	rq.idempotency_token = (char *)(token != NULL ? token : "");
	*version = 0;
	st = wire_rpc(w, id, wire_mid("UpdateSecret"), 30000, &rq.base, &r, 35000);
	if (msg != NULL)
		snprintf(msg, size, "%s", r != NULL ? r->message : "");
	if (st == ST_OK && r != NULL) {
		rep = pcsecret__v1__update_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
		if (rep != NULL && rep->secret != NULL)
			*version = rep->secret->current_version;
		if (rep != NULL)
			pcsecret__v1__update_secret_reply__free_unpacked(rep, NULL);
	}
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	return st;
}

/* One client: waits on go (its closing), then sends its updates one after the other. */
static int client(int d, int n, int go, struct outcome *o)
{
	struct wire w;
	char value[64], msg[256];
	char b;

	memset(&w, 0, sizeof(w));
	w.fd = -1;
	if (wire_session(&w, D[d].socket) != 0) {
		snprintf(o->first_failure, sizeof(o->first_failure), "no session");
		return 1;
	}
	if (read(go, &b, 1) < 0)
		return 1;
	for (int i = 0; i < UPDATES; i++) {
		snprintf(value, sizeof(value), "race-c%d-u%d", n, i);
		o->status[i] = update(
		    &w, (uint64_t)i + 2, value, 0, NULL, &o->version[i], msg, sizeof(msg));
		if (o->status[i] != ST_OK && o->nfailed++ == 0)
			snprintf(o->first_failure, sizeof(o->first_failure), "%s: %s",
			    status_name(o->status[i]), msg);
	}
	wire_close(&w);
	return 0;
}

static uint32_t describe_versions(
    struct wire *w, uint64_t id, uint32_t *versions, size_t max, size_t *n)
{
	Pcsecret__V1__DescribeSecretRequest rq = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__DescribeSecretReply *rep;
	Pcsecret__V1__Reply *r = NULL;
	uint32_t current;

	rq.company = (char *)"acme";
	rq.name = (char *)"k";
	assert_int_equal(
	    wire_rpc(w, id, wire_mid("DescribeSecret"), 0, &rq.base, &r, 15000), ST_OK);
	rep = pcsecret__v1__describe_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
	assert_non_null(rep);
	assert_non_null(rep->secret);
	assert_true(rep->secret->n_versions <= max);
	*n = rep->secret->n_versions;
	for (size_t i = 0; i < *n; i++)
		versions[i] = rep->secret->versions[i]->version;
	current = rep->secret->current_version;
	pcsecret__v1__describe_secret_reply__free_unpacked(rep, NULL);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	return current;
}

static void test_plain_updates_racing_all_succeed(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	struct outcome *o;
	struct wire adm;
	pid_t pids[CLIENTS];
	uint32_t versions[TOTAL + 8], current, v;
	size_t n, failed = 0;
	int go[2], seen[TOTAL + 1] = { 0 };
	char msg[256], want[64] = "";
	int st;

	(void)state;
	memset(&adm, 0, sizeof(adm));
	adm.fd = -1;
	assert_int_equal(wire_session(&adm, D[A].socket), 0);
	cc.name = (char *)"acme";
	assert_int_equal(
	    wire_rpc(&adm, 2, wire_mid("CreateCompany"), 0, &cc.base, NULL, 15000), ST_OK);
	cs.company = (char *)"acme";
	cs.name = (char *)"k";
	cs.value.data = (uint8_t *)"race-initial";
	cs.value.len = strlen("race-initial");
	assert_int_equal(
	    wire_rpc(&adm, 3, wire_mid("CreateSecret"), 0, &cs.base, NULL, 15000), ST_OK);

	o = mmap(
	    NULL, sizeof(*o) * CLIENTS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(o != MAP_FAILED);
	memset(o, 0, sizeof(*o) * CLIENTS);
	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < CLIENTS; i++) {
		if ((pids[i] = fork()) == 0) {
			close(go[1]);
			_exit(client(i % 2 == 0 ? A : B, i, go[0], &o[i]));
		}
		assert_true(pids[i] > 0);
	}
	close(go[0]);
	/* Every client blocks reading go until it is closed: they start together. */
	wire_sleep_ms(300);
	close(go[1]);
	for (int i = 0; i < CLIENTS; i++) {
		int ws;
		assert_int_equal(waitpid(pids[i], &ws, 0), pids[i]);
		assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	}

	for (int i = 0; i < CLIENTS; i++) {
		if (o[i].nfailed > 0)
			fprintf(stderr,
			    "client %d (daemon %c): %d of %d updates failed, first: %s\n", i,
			    i % 2 == 0 ? 'A' : 'B', o[i].nfailed, UPDATES, o[i].first_failure);
		failed += (size_t)o[i].nfailed;
		for (int u = 0; u < UPDATES; u++) {
			v = o[i].version[u];
			if (o[i].status[u] != ST_OK)
				continue;
			if (v < 2 || v > TOTAL || seen[v]++)
				fail_msg(
				    "client %d update %d acknowledged version %u twice or out of "
				    "range",
				    i, u, v);
			if (v == TOTAL)
				snprintf(want, sizeof(want), "race-c%d-u%d", i, u);
		}
	}
	if (failed > 0)
		fail_msg("%zu of %d plain updates failed", failed, CLIENTS * UPDATES);

	/* Exactly 1..401, no gap and no duplicate, and the last is current. */
	current = describe_versions(&adm, 4, versions, TOTAL + 8, &n);
	assert_int_equal(n, TOTAL);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(versions[i], i + 1);
	assert_int_equal(current, TOTAL);
	assert_string_not_equal(want, "");

	/* One audit row per update, all OK: the retries wrote none. */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' "
	                     "AND status = 'OK'"),
	    CLIENTS * UPDATES);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' "
	                     "AND status <> 'OK'"),
	    0);

	/* The check-and-set the client asks for is kept: a stale expected version is refused. */
	st = update(&adm, 5, "race-stale", 1, NULL, &v, msg, sizeof(msg));
	assert_int_equal(st, ST_ABORTED);
	snprintf(want, sizeof(want), "%d", TOTAL);
	if (strstr(msg, want) == NULL)
		fail_msg("stale expected version: \"%s\" does not name the current version %s", msg,
		    want);
	st = update(&adm, 6, "race-expected", TOTAL, NULL, &v, msg, sizeof(msg));
	assert_int_equal(st, ST_OK);
	assert_int_equal(v, TOTAL + 1);

	/* An idempotency token still makes one version however often it is sent. */
	assert_int_equal(update(&adm, 7, "race-token", 0, "tok-1", &v, NULL, 0), ST_OK);
	assert_int_equal(v, TOTAL + 2);
	assert_int_equal(update(&adm, 8, "race-token", 0, "tok-1", &v, NULL, 0), ST_OK);
	assert_int_equal(v, TOTAL + 2);
	current = describe_versions(&adm, 9, versions, TOTAL + 8, &n);
	assert_int_equal(current, TOTAL + 2);
	assert_int_equal(n, TOTAL + 2);

	wire_close(&adm);
	munmap(o, sizeof(*o) * CLIENTS);
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
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
	it_daemon_cleanup(&D[B]);
	it_daemon_cleanup(&D[A]);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_updates_racing_all_succeed),
	};

	return cmocka_run_group_tests_name("update_race", tests, setup, teardown);
}
