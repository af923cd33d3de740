/*
 * CreateSecret's idempotency token and UpdateSecret's description (docs/lifecycle.md,
 * "Idempotency"). A retried create with the same token, value and description answers the
 * first secret and creates nothing; another value or description is FAILED_PRECONDITION and
 * changes nothing; a plain create of a taken name stays ALREADY_EXISTS; a retry never brings
 * back the secret it made once that was deleted. Racing creates with one token through two
 * daemons end as one secret, every racer answered with it. A description changes alone (no
 * version, pcctl reads no value) or with a value (one version, one audit row); an update with
 * neither is refused. Every call, refusals included, has its audit row; no value or token is
 * stored, audited or logged in clear.
 */
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

#define DB "it_create_idempotency"
#define VALUE_A "cidem-value-alpha"
#define VALUE_B "cidem-value-bravo"
#define TOKEN "cidem-token-1"
#define CLIENTS 8 /* racing creates, half on each daemon */
#define ROUNDS 5

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_INVALID PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT
#define ST_EXISTS PCSECRET__V1__STATUS_CODE__ALREADY_EXISTS
#define ST_PRECONDITION PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION

enum { A, B };
static struct it_daemon D[2];
static char conninfo[512];

struct answer {
	int status;
	uint32_t version;
	char id[64];
	char description[128];
	char message[256];
};

/* The reply's secret into a (CreateSecretReply and UpdateSecretReply share its shape). */
static void answer_of(Pcsecret__V1__Reply *r, int create, struct answer *a)
{
	Pcsecret__V1__CreateSecretReply *cr = NULL;
	Pcsecret__V1__UpdateSecretReply *ur = NULL;
	const Pcsecret__V1__SecretInfo *s;

	if (r == NULL)
		return;
	snprintf(a->message, sizeof(a->message), "%s", r->message);
	if (a->status != ST_OK)
		return;
	if (create)
		cr = pcsecret__v1__create_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
	else
		ur = pcsecret__v1__update_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
	s = create ? (cr != NULL ? cr->secret : NULL) : (ur != NULL ? ur->secret : NULL);
	assert_non_null(s);
	a->version = s->current_version;
	snprintf(a->id, sizeof(a->id), "%s", s->id);
	snprintf(a->description, sizeof(a->description), "%s", s->description);
	if (cr != NULL)
		pcsecret__v1__create_secret_reply__free_unpacked(cr, NULL);
	if (ur != NULL)
		pcsecret__v1__update_secret_reply__free_unpacked(ur, NULL);
}

static void create(struct wire *w, uint64_t id, const char *name, const char *value,
    const char *description, const char *token, struct answer *a)
{
	Pcsecret__V1__CreateSecretRequest rq = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;

	memset(a, 0, sizeof(*a));
	rq.company = (char *)"acme";
	rq.name = (char *)name;
	rq.value.data = (uint8_t *)(uintptr_t)value;
	rq.value.len = strlen(value);
	rq.description = (char *)description;
	rq.idempotency_token = (char *)token;
	a->status = wire_rpc(w, id, wire_mid("CreateSecret"), 30000, &rq.base, &r, 35000);
	answer_of(r, 1, a);
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
}

/* value NULL: none; description NULL: not set. */
static void update(struct wire *w, uint64_t id, const char *name, const char *value,
    const char *description, const char *token, struct answer *a)
{
	Pcsecret__V1__UpdateSecretRequest rq = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;

	memset(a, 0, sizeof(*a));
	rq.company = (char *)"acme";
	rq.name = (char *)name;
	if (value != NULL) {
		rq.value.data = (uint8_t *)(uintptr_t)value;
		rq.value.len = strlen(value);
	}
	if (description != NULL) {
		rq.description = (char *)description;
		rq.set_description = 1;
	}
	rq.idempotency_token = (char *)token;
	a->status = wire_rpc(w, id, wire_mid("UpdateSecret"), 0, &rq.base, &r, 15000);
	answer_of(r, 0, a);
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
}

static void sql_text(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sql_text(char *buf, size_t size, const char *fmt, ...)
{
	char sql[1024];
	char *t;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	t = pgtest_query_text(conninfo, sql);
	assert_non_null(t);
	snprintf(buf, size, "%s", t);
	free(t);
}

/* The audit rows of daemon A's call id: "METHOD STATUS VERSION", joined by ','. */
static void audit_of(uint64_t id, char *buf, size_t size)
{
	sql_text(buf, size,
	    "SELECT coalesce(string_agg(a.method || ' ' || a.status || ' ' || "
	    "coalesce(a.version, '-'), ',' ORDER BY a.id), '') FROM audit_log a "
	    "WHERE a.call_id = %llu AND a.method <> 'Hello' AND a.instance_id = "
	    "(SELECT i.id FROM instances i ORDER BY i.started_at LIMIT 1)",
	    (unsigned long long)id);
}

static void assert_audit(uint64_t id, const char *want)
{
	char got[512];

	audit_of(id, got, sizeof(got));
	if (strcmp(got, want) != 0)
		fail_msg(
		    "call %llu: audit rows \"%s\", want \"%s\"", (unsigned long long)id, got, want);
}

static void session(struct wire *w, int d)
{
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	assert_int_equal(wire_session(w, D[d].socket), 0);
}

static void test_create_token(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__DeleteSecretRequest del = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;
	struct wire w;
	struct answer first, a;
	char cipher[128], now[128];

	(void)state;
	session(&w, A);
	cc.name = (char *)"acme";
	assert_int_equal(
	    wire_rpc(&w, 100, wire_mid("CreateCompany"), 0, &cc.base, NULL, 15000), ST_OK);

	create(&w, 101, "c1", VALUE_A, "first", TOKEN, &first);
	assert_int_equal(first.status, ST_OK);
	assert_int_equal(first.version, 1);
	assert_audit(101, "CreateSecret OK 1");
	sql_text(cipher, sizeof(cipher),
	    "SELECT md5(v.ciphertext) FROM secret_versions v JOIN secrets s ON s.id = "
	    "v.secret_id WHERE s.name = 'c1'");

	/* The retry: the same secret, nothing created. */
	create(&w, 102, "c1", VALUE_A, "first", TOKEN, &a);
	assert_int_equal(a.status, ST_OK);
	assert_string_equal(a.id, first.id);
	assert_int_equal(a.version, 1);
	assert_audit(102, "CreateSecret OK 1");
	assert_int_equal(
	    it_sql_count(conninfo, "SELECT count(*) FROM secrets WHERE name = 'c1'"), 1);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                     "s.id = v.secret_id WHERE s.name = 'c1'"),
	    1);

	/* Another value: refused, naming the secret, never the value or the token. */
	create(&w, 103, "c1", VALUE_B, "first", TOKEN, &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	assert_string_equal(
	    a.message, "this idempotency token created secret acme/c1 with a different value");
	assert_audit(103, "CreateSecret FAILED_PRECONDITION 1");

	/* Another description. */
	create(&w, 104, "c1", VALUE_A, "second", TOKEN, &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	assert_string_equal(a.message,
	    "this idempotency token created secret acme/c1 with a different description");
	assert_audit(104, "CreateSecret FAILED_PRECONDITION 1");

	/* Nothing changed: one version, the first ciphertext, the first description... */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	                     "s.id = v.secret_id WHERE s.name = 'c1'"),
	    1);
	sql_text(now, sizeof(now),
	    "SELECT md5(v.ciphertext) FROM secret_versions v JOIN secrets s ON s.id = "
	    "v.secret_id WHERE s.name = 'c1'");
	assert_string_equal(now, cipher);
	sql_text(now, sizeof(now), "SELECT description FROM secrets WHERE name = 'c1'");
	assert_string_equal(now, "first");
	/* ...and the stored value is still the first: its tag still matches the first value. */
	create(&w, 105, "c1", VALUE_A, "first", TOKEN, &a);
	assert_int_equal(a.status, ST_OK);
	assert_string_equal(a.id, first.id);

	/* Without the token, or with another, the name is taken as before. */
	create(&w, 106, "c1", VALUE_A, "first", "", &a);
	assert_int_equal(a.status, ST_EXISTS);
	assert_string_equal(a.message, "secret acme/c1 already exists");
	create(&w, 107, "c1", VALUE_A, "first", "cidem-token-2", &a);
	assert_int_equal(a.status, ST_EXISTS);
	assert_audit(106, "CreateSecret ALREADY_EXISTS -");
	assert_audit(107, "CreateSecret ALREADY_EXISTS -");

	/* Too long a token, a description with a control character: refused before anything. */
	char longtok[200];
	memset(longtok, 't', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	create(&w, 108, "c9", VALUE_A, "", longtok, &a);
	assert_int_equal(a.status, ST_INVALID);
	create(&w, 109, "c9", VALUE_A, "two\nlines", "", &a);
	assert_int_equal(a.status, ST_INVALID);
	assert_non_null(strstr(a.message, "control character"));
	assert_audit(108, "CreateSecret INVALID_ARGUMENT -");
	assert_audit(109, "CreateSecret INVALID_ARGUMENT -");
	assert_int_equal(
	    it_sql_count(conninfo, "SELECT count(*) FROM secrets WHERE name = 'c9'"), 0);

	/* A deleted secret is neither brought back nor reported live by a retry of its create. */
	create(&w, 110, "c2", VALUE_A, "", TOKEN, &first);
	assert_int_equal(first.status, ST_OK);
	del.company = (char *)"acme";
	del.name = (char *)"c2";
	assert_int_equal(
	    wire_rpc(&w, 111, wire_mid("DeleteSecret"), 0, &del.base, NULL, 15000), ST_OK);
	create(&w, 112, "c2", VALUE_A, "", TOKEN, &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	assert_non_null(strstr(a.message,
	    "the secret this idempotency token created was deleted "
	    "since: secret acme/c2 was deleted; it can be restored "
	    "until "));
	assert_audit(112, "CreateSecret FAILED_PRECONDITION -");
	create(&w, 113, "c2", VALUE_A, "", "", &a);
	assert_int_equal(a.status, ST_EXISTS);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secrets WHERE name = 'c2' AND deleted_at "
	                     "IS NOT NULL AND restored_at IS NULL"),
	    1);
	assert_int_equal(
	    it_sql_count(conninfo, "SELECT count(*) FROM secrets WHERE name = 'c2'"), 1);

	/* Tokens and tags only on version 1 of a create with a token; no value in clear. */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions WHERE idempotency_token "
	                     "IS NOT NULL AND version = 1 AND length(idempotency_tag) = 32 "
	                     "AND idempotency_description IS NOT NULL"),
	    2);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions v WHERE v::text LIKE "
	                     "'%cidem-value%' OR position('cidem-value'::bytea IN "
	                     "v.ciphertext) > 0"),
	    0);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log a WHERE a::text LIKE "
	                     "'%cidem-value%' OR a::text LIKE '%" TOKEN "%'"),
	    0);
	wire_close(&w);
	assert_int_equal(it_file_contains(D[A].log, "cidem-value", strlen("cidem-value")), 0);
	assert_int_equal(it_file_contains(D[A].log, TOKEN, strlen(TOKEN)), 0);
}

#define D_VERSIONS \
	"SELECT count(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE " \
	"s.name = 'd'"
#define D_AUDIT(status) \
	"SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' AND secret = 'd' AND " \
	"status = '" status "'"

static void test_update_description(void **state)
{
	struct wire w;
	struct answer a;
	struct it_result r;
	char buf[256], longdesc[1100];

	(void)state;
	session(&w, A);
	create(&w, 200, "d", VALUE_A, "one", "", &a);
	assert_int_equal(a.status, ST_OK);

	/* The description alone: no version. */
	update(&w, 201, "d", NULL, "two", "", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 1);
	assert_string_equal(a.description, "two");
	assert_int_equal(it_sql_count(conninfo, D_VERSIONS), 1);
	sql_text(buf, sizeof(buf), "SELECT description FROM secrets WHERE name = 'd'");
	assert_string_equal(buf, "two");
	assert_audit(201, "UpdateSecret OK -");

	/* Both: one version, one audit row, one transaction. */
	update(&w, 202, "d", VALUE_B, "three", "", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 2);
	assert_string_equal(a.description, "three");
	assert_int_equal(it_sql_count(conninfo, D_VERSIONS), 2);
	assert_audit(202, "UpdateSecret OK 2");

	/* Neither: refused. A description-only update takes none of the value's options. */
	update(&w, 203, "d", NULL, NULL, "", &a);
	assert_int_equal(a.status, ST_INVALID);
	assert_string_equal(
	    a.message, "nothing to update: give a new value, a new description, or both");
	assert_audit(203, "UpdateSecret INVALID_ARGUMENT -");
	update(&w, 204, "d", NULL, "four", "cidem-token-3", &a);
	assert_int_equal(a.status, ST_INVALID);
	assert_audit(204, "UpdateSecret INVALID_ARGUMENT -");
	update(&w, 205, "d", NULL, "bad\x01", "", &a);
	assert_int_equal(a.status, ST_INVALID);
	assert_non_null(strstr(a.message, "control character at byte 3"));
	memset(longdesc, 'x', 1025);
	longdesc[1025] = '\0';
	update(&w, 206, "d", NULL, longdesc, "", &a);
	assert_int_equal(a.status, ST_INVALID);
	assert_string_equal(a.message, "description is longer than 1024 bytes");
	sql_text(buf, sizeof(buf), "SELECT description FROM secrets WHERE name = 'd'");
	assert_string_equal(buf, "three");
	assert_int_equal(it_sql_count(conninfo, D_VERSIONS), 2);

	/* An update's token covers its description too. */
	update(&w, 207, "d", VALUE_A, "five", "cidem-token-4", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 3);
	update(&w, 208, "d", VALUE_A, "five", "cidem-token-4", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 3);
	update(&w, 209, "d", VALUE_A, "six", "cidem-token-4", &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	assert_string_equal(
	    a.message, "this idempotency token was used with a different description (version 3)");
	update(&w, 210, "d", VALUE_A, NULL, "cidem-token-4", &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	assert_audit(209, "UpdateSecret FAILED_PRECONDITION 3");
	assert_int_equal(it_sql_count(conninfo, D_VERSIONS), 3);
	wire_close(&w);

	/* pcctl: --description alone reads no value, even from a pipe, and makes no version. */
	if (it_pcctl(0, D[A].socket, "cidem-value-piped", &r, "secret", "update", "acme/d",
	        "--description", "seven", (char *)NULL) != 0)
		fail_msg("pcctl secret update --description: %s", r.err);
	assert_non_null(strstr(r.out, "updated the description of secret acme/d; no new version"));
	it_result_free(&r);
	assert_int_equal(it_sql_count(conninfo, D_VERSIONS), 3);
	if (it_pcctl(0, D[A].socket, NULL, &r, "secret", "show", "acme/d", (char *)NULL) != 0)
		fail_msg("pcctl secret show: %s", r.err);
	assert_non_null(strstr(r.out, "seven"));
	it_result_free(&r);
	/* With --from-file, both. */
	if (it_pcctl(0, D[A].socket, "cidem-value-piped", &r, "secret", "update", "acme/d",
	        "--description", "eight", "--from-file", "/dev/stdin", (char *)NULL) != 0)
		fail_msg("pcctl secret update --description --from-file: %s", r.err);
	it_result_free(&r);
	assert_int_equal(it_sql_count(conninfo, D_VERSIONS), 4);
	sql_text(buf, sizeof(buf), "SELECT description FROM secrets WHERE name = 'd'");
	assert_string_equal(buf, "eight");
	/* The value's options without a value: usage, nothing sent. */
	assert_int_equal(it_pcctl(0, D[A].socket, NULL, &r, "secret", "update", "acme/d",
	                     "--description", "nine", "--no-promote", (char *)NULL),
	    2);
	it_result_free(&r);
	/* create --idempotency-token through pcctl, twice: one secret. */
	assert_int_equal(it_pcctl(0, D[A].socket, "cidem-value-cli", &r, "secret", "create",
	                     "acme/e", "--idempotency-token", "cidem-token-5", (char *)NULL),
	    0);
	it_result_free(&r);
	assert_int_equal(it_pcctl(0, D[A].socket, "cidem-value-cli", &r, "secret", "create",
	                     "acme/e", "--idempotency-token", "cidem-token-5", (char *)NULL),
	    0);
	it_result_free(&r);
	assert_int_equal(
	    it_sql_count(conninfo, "SELECT count(*) FROM secrets WHERE name = 'e'"), 1);

	/* Every update sent audited once: 4 OK on the wire and 2 through pcctl, 6 refused. */
	assert_int_equal(it_sql_count(conninfo, D_AUDIT("OK")), 6);
	assert_int_equal(it_sql_count(conninfo, D_AUDIT("INVALID_ARGUMENT")), 4);
	assert_int_equal(it_sql_count(conninfo, D_AUDIT("FAILED_PRECONDITION")), 2);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log a WHERE a::text LIKE "
	                     "'%cidem-value%'"),
	    0);
}

/* One racer: waits on go, then creates race-N with the round's token. */
static int racer(int d, int go, char (*ids)[64], int *status)
{
	struct wire w;
	struct answer a;
	char name[32], token[32], b;

	memset(&w, 0, sizeof(w));
	w.fd = -1;
	if (wire_session(&w, D[d].socket) != 0)
		return 1;
	if (read(go, &b, 1) < 0)
		return 1;
	for (int n = 0; n < ROUNDS; n++) {
		snprintf(name, sizeof(name), "race-%d", n);
		snprintf(token, sizeof(token), "race-token-%d", n);
		create(&w, (uint64_t)n + 2, name, VALUE_A, "raced", token, &a);
		status[n] = a.status;
		snprintf(ids[n], sizeof(ids[n]), "%s", a.id);
	}
	wire_close(&w);
	return 0;
}

struct race_outcome {
	char ids[ROUNDS][64];
	int status[ROUNDS];
};

static void test_racing_creates_one_token(void **state)
{
	struct race_outcome *o;
	pid_t pids[CLIENTS];
	int go[2];
	char sql[256];

	(void)state;
	o = mmap(
	    NULL, sizeof(*o) * CLIENTS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(o != MAP_FAILED);
	memset(o, 0, sizeof(*o) * CLIENTS);
	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < CLIENTS; i++) {
		if ((pids[i] = fork()) == 0) {
			close(go[1]);
			_exit(racer(i % 2 == 0 ? A : B, go[0], o[i].ids, o[i].status));
		}
		assert_true(pids[i] > 0);
	}
	close(go[0]);
	wire_sleep_ms(300);
	close(go[1]);
	for (int i = 0; i < CLIENTS; i++) {
		int ws;
		assert_int_equal(waitpid(pids[i], &ws, 0), pids[i]);
		assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	}
	/* Every racer of a round got the one secret's answer. */
	for (int n = 0; n < ROUNDS; n++) {
		for (int i = 0; i < CLIENTS; i++) {
			if (o[i].status[n] != ST_OK)
				fail_msg("round %d racer %d: status %d", n, i, o[i].status[n]);
			assert_string_equal(o[i].ids[n], o[0].ids[n]);
		}
		snprintf(sql, sizeof(sql),
		    "SELECT count(*) FROM secrets s JOIN secret_versions v ON v.secret_id = s.id "
		    "WHERE s.name = 'race-%d' AND s.id = '%s'",
		    n, o[0].ids[n]);
		assert_int_equal(it_sql_count(conninfo, sql), 1);
		snprintf(
		    sql, sizeof(sql), "SELECT count(*) FROM secrets WHERE name = 'race-%d'", n);
		assert_int_equal(it_sql_count(conninfo, sql), 1);
	}
	/* One OK audit row per racer's call, none failed. */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'CreateSecret' "
	                     "AND secret LIKE 'race-%' AND status = 'OK'"),
	    CLIENTS * ROUNDS);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'CreateSecret' "
	                     "AND secret LIKE 'race-%' AND status <> 'OK'"),
	    0);
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
		cmocka_unit_test(test_create_token),
		cmocka_unit_test(test_update_description),
		cmocka_unit_test(test_racing_creates_one_token),
	};

	return cmocka_run_group_tests_name("create_idempotency", tests, setup, teardown);
}
