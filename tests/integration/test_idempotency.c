/*
 * UpdateSecret's idempotency token, as AWS's ClientRequestToken: the same token with the same
 * value answers what the first call made and adds nothing; the same token with another value,
 * or with an expected version that does not fit what the first call made, is
 * FAILED_PRECONDITION (audited, nothing stored) instead of a success that drops the value.
 * The stored tag is keyed (no plain hash of the value), and no value reaches the database or
 * the daemon's log in clear.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "it.h"
#include "itcli.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_idempotency"
#define VALUE_A "idem-value-alpha"
#define VALUE_B "idem-value-bravo"

#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_PRECONDITION PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION

static struct it_daemon D;
static char conninfo[512];

struct answer {
	int status;
	uint32_t version;
	char updated_at[64];
	char message[256];
};

static void update(struct wire *w, uint64_t id, const char *value, uint32_t expected,
    const char *token, struct answer *a)
{
	Pcsecret__V1__UpdateSecretRequest rq = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__UpdateSecretReply *rep;
	Pcsecret__V1__Reply *r = NULL;

	memset(a, 0, sizeof(*a));
	rq.company = (char *)"acme";
	rq.name = (char *)"k";
	rq.value.data = (uint8_t *)(uintptr_t)value;
	rq.value.len = strlen(value);
	rq.expected_version = expected;
	rq.idempotency_token = (char *)token;
	a->status = wire_rpc(w, id, wire_mid("UpdateSecret"), 0, &rq.base, &r, 15000);
	if (r != NULL)
		snprintf(a->message, sizeof(a->message), "%s", r->message);
	if (a->status == ST_OK && r != NULL) {
		rep = pcsecret__v1__update_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
		assert_non_null(rep);
		assert_non_null(rep->secret);
		a->version = rep->secret->current_version;
		snprintf(a->updated_at, sizeof(a->updated_at), "%s", rep->secret->updated_at);
		pcsecret__v1__update_secret_reply__free_unpacked(rep, NULL);
	}
	if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
}

#define VERSIONS "SELECT count(*) FROM secret_versions"
#define CURRENT "SELECT current_version FROM secrets WHERE name = 'k'"

static void test_token_reuse(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	struct wire w;
	struct answer first, again, a;

	(void)state;
	memset(&w, 0, sizeof(w));
	w.fd = -1;
	assert_int_equal(wire_session(&w, D.socket), 0);
	cc.name = (char *)"acme";
	assert_int_equal(
	    wire_rpc(&w, 2, wire_mid("CreateCompany"), 0, &cc.base, NULL, 15000), ST_OK);
	cs.company = (char *)"acme";
	cs.name = (char *)"k";
	cs.value.data = (uint8_t *)"idem-value-initial";
	cs.value.len = strlen("idem-value-initial");
	assert_int_equal(
	    wire_rpc(&w, 3, wire_mid("CreateSecret"), 0, &cs.base, NULL, 15000), ST_OK);

	/* Same token, same value: one version, the same reply. */
	update(&w, 4, VALUE_A, 0, "t1", &first);
	assert_int_equal(first.status, ST_OK);
	assert_int_equal(first.version, 2);
	update(&w, 5, VALUE_A, 0, "t1", &again);
	assert_int_equal(again.status, ST_OK);
	assert_int_equal(again.version, 2);
	assert_string_equal(again.updated_at, first.updated_at);
	assert_int_equal(it_sql_count(conninfo, VERSIONS), 2);

	/* Same token, another value: refused, naming the version, never the value or the token. */
	update(&w, 6, VALUE_B, 0, "t1", &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	assert_non_null(strstr(a.message,
	    "this idempotency token was used for a different value "
	    "(version 2)"));
	assert_null(strstr(a.message, "idem-value"));
	assert_null(strstr(a.message, "t1"));
	assert_int_equal(it_sql_count(conninfo, VERSIONS), 2);
	assert_int_equal(it_sql_count(conninfo, CURRENT), 2);

	/* Same token and value with an expected version the first call was not made on. */
	update(&w, 7, VALUE_A, 5, "t1", &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	assert_non_null(
	    strstr(a.message, "this idempotency token was used with expected version 1"));
	update(&w, 8, VALUE_A, 2, "t1", &a);
	assert_int_equal(a.status, ST_PRECONDITION);
	/* The one it was made on (version 1) fits: the first call's answer. */
	update(&w, 9, VALUE_A, 1, "t1", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 2);
	assert_int_equal(it_sql_count(conninfo, VERSIONS), 2);

	/* A token first used with an expected version keeps it. */
	update(&w, 10, VALUE_B, 2, "t2", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 3);
	update(&w, 11, VALUE_B, 2, "t2", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 3);
	update(&w, 12, VALUE_B, 3, "t2", &a);
	assert_int_equal(a.status, ST_PRECONDITION);

	/* Different tokens make new versions, even of the same value. */
	update(&w, 13, VALUE_A, 0, "t3", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 4);
	update(&w, 14, VALUE_A, 0, "t4", &a);
	assert_int_equal(a.status, ST_OK);
	assert_int_equal(a.version, 5);
	assert_int_equal(it_sql_count(conninfo, VERSIONS), 5);
	assert_int_equal(it_sql_count(conninfo, CURRENT), 5);

	/* Tags are kept with tokens only, 32 bytes, equal for equal values of one secret. */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions WHERE idempotency_tag IS "
	                     "NOT NULL AND length(idempotency_tag) = 32"),
	    4);
	assert_int_equal(
	    it_sql_count(conninfo, "SELECT count(DISTINCT idempotency_tag) FROM secret_versions"),
	    2);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions WHERE idempotency_token IS "
	                     "NULL AND (idempotency_tag IS NOT NULL OR "
	                     "idempotency_expected IS NOT NULL)"),
	    0);
	/* Sanity: no unkeyed hash of the value, nor the value itself, in any stored column. */
	assert_int_equal(
	    it_sql_count(conninfo,
	        "SELECT count(*) FROM secret_versions WHERE idempotency_tag IN "
	        "(sha256('" VALUE_A "'::bytea), sha256('" VALUE_B "'::bytea), "
	        "decode(md5('" VALUE_A "'), 'hex'), decode(md5('" VALUE_B "'), 'hex'))"),
	    0);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM secret_versions v WHERE "
	                     "position('idem-value'::bytea IN v.ciphertext) > 0 OR "
	                     "position('idem-value'::bytea IN v.idempotency_tag) > 0 OR "
	                     "position('idem-value'::bytea IN v.nonce) > 0 OR "
	                     "position('idem-value'::bytea IN v.wrapped_key) > 0 OR "
	                     "v::text LIKE '%idem-value%'"),
	    0);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log a WHERE a::text LIKE "
	                     "'%idem-value%'"),
	    0);

	/* The refusals are audited like any call. */
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' "
	                     "AND status <> 'OK'"),
	    4);
	assert_int_equal(it_sql_count(conninfo,
	                     "SELECT count(*) FROM audit_log WHERE method = 'UpdateSecret' "
	                     "AND status = 'OK'"),
	    7);

	wire_close(&w);
	assert_int_equal(it_file_contains(D.log, "idem-value", strlen("idem-value")), 0);
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0)
		return -1;
	return it_daemon_start(&D, conninfo, NULL) != 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	it_daemon_cleanup(&D);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_reuse),
	};

	return cmocka_run_group_tests_name("idempotency", tests, setup, teardown);
}
