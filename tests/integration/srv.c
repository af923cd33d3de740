/*
 * srv: the fixture of the test_server_* executables (srv.h).
 */
#include "srv.h"

#include <setjmp.h>
#include <signal.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "frame.h"
#include "pcsecret.pb-c.h"

#define ST_OK PCSECRET__V1__STATUS_CODE__OK

struct srv srv;
uint8_t srv_big_value[SRV_BIG_LEN];

int srv_setup(const char *db) { return srv_setup_args(db, NULL); }

int srv_setup_args(const char *db, const char *const *extra)
{
	struct it_daemon_opts o = { 0 };
	const char *all[32];
	size_t n = 0;
	/*
	 * One uid opens 1,000 connections before any has said Hello (the load test): the
	 * per-uid connection limits are raised here and tested in test_dos, and so is the
	 * handshake deadline. Its 5 s default is tested in test_dos too; here the Hellos of the
	 * last connections wait behind the first ones' 16,000 Resolves of the same uid, and on a
	 * daemon just started (each test_server_* has its own) that took longer than 5 s in about
	 * one run in three. Every executable starts its daemon the same way, so each test meets
	 * the settings it was written for.
	 */
	const char *args[] = { "--max-connections", "1100", "--max-output", "1048576",
		"--max-conns-per-uid", "1100", "--max-conns-unknown-per-uid", "1100",
		"--handshake-timeout-ms", "30000", NULL };
	const char *env_scale = getenv("PCS_SERVER_TEST_SCALE");

	signal(SIGPIPE, SIG_IGN);
	/* Under AddressSanitizer everything is several times slower: less load, same checks. */
	srv.scale = env_scale != NULL ? (unsigned)atoi(env_scale) : SRV_ASAN ? 2 : 1;
	if (srv.scale == 0)
		srv.scale = 1;
	for (size_t i = 0; i < SRV_BIG_LEN; i++)
		srv_big_value[i] = (uint8_t)('a' + i % 26);
	snprintf(srv.scratch, sizeof(srv.scratch), "/tmp/pcs-it-srv-XXXXXX");
	if (mkdtemp(srv.scratch) == NULL || chmod(srv.scratch, 0777) != 0)
		return -1;
	if (it_database(db, srv.conninfo, sizeof(srv.conninfo)) != 0)
		return -1;
	if (SRV_ASAN) {
		/*
		 * The daemons inherit this. ASan's quarantine keeps up to 256 MB of freed memory
		 * resident, which would hide or fake growth; a small one still catches recent
		 * use-after-free and keeps the memory checks meaningful.
		 */
		const char *prev = getenv("ASAN_OPTIONS");
		char opts[512];
		snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4", prev ? prev : "",
		    prev && *prev ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
	}
	for (size_t i = 0; args[i] != NULL && n < 31; i++)
		all[n++] = args[i];
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
		all[n++] = extra[i];
	all[n] = NULL;
	o.args = all;
	o.nofile = 4096;
	return it_daemon_start_opts(&srv.d, srv.conninfo, NULL, &o);
}

int srv_after_test(void **state)
{
	(void)state;
	wire_lock_drop();
	return 0;
}

void srv_teardown(void)
{
	char cmd[128];

	it_daemon_cleanup(&srv.d);
	if (strncmp(srv.scratch, "/tmp/pcs-it-srv-", 16) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv.scratch);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", srv.scratch);
	}
}

int srv_need_root(void)
{
	if (!it_is_root()) {
		fprintf(
		    stderr, "skipped: needs root to run clients as other uids and read /proc\n");
		return 0;
	}
	return 1;
}

int srv_file_has(const char *path, const char *needle)
{
	return it_file_contains(path, needle, strlen(needle)) == 1;
}

int srv_create_secret(struct wire *w, uint64_t id, const char *name, const uint8_t *v, size_t len)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)(uintptr_t)v;
	q.value.len = len;
	return wire_rpc(w, id, wire_mid("CreateSecret"), 0, &q.base, NULL, 10000);
}

static int set_env(struct wire *w, uint64_t id, const char *env, const char *secret)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)secret;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	return wire_rpc(w, id, wire_mid("SetAgentEnv"), 0, &q.base, NULL, 10000);
}

void srv_test_setup_data(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	struct wire w;

	(void)state;
	assert_int_equal(wire_open(&w, srv.d.socket), 0);
	assert_int_equal(
	    wire_hello_instance(&w, 1, srv.instance_id, sizeof(srv.instance_id)), ST_OK);
	assert_true(srv.instance_id[0] != '\0');
	cc.name = (char *)"acme";
	assert_int_equal(
	    wire_rpc(&w, 2, wire_mid("CreateCompany"), 0, &cc.base, NULL, 10000), ST_OK);
	assert_int_equal(
	    srv_create_secret(&w, 3, "k1", (const uint8_t *)SRV_VAL1, strlen(SRV_VAL1)), ST_OK);
	assert_int_equal(srv_create_secret(&w, 4, "big", srv_big_value, SRV_BIG_LEN), ST_OK);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = IT_AGENT_UID;
	assert_int_equal(wire_rpc(&w, 5, wire_mid("CreateAgent"), 0, &ca.base, NULL, 10000), ST_OK);
	assert_int_equal(set_env(&w, 6, "K1", "k1"), ST_OK);
	assert_int_equal(set_env(&w, 7, "BIG", "big"), ST_OK);
	wire_close(&w);
}

int srv_start_tight(struct it_daemon *t, char *log, size_t size)
{
	struct it_daemon_opts o = { 0 };
	const char *args[] = { "--idle-timeout-ms", "3000", "--read-timeout-ms", "800",
		"--max-connections", "8", "--max-inflight", "1", "--log-file", log, "--max-value",
		"1024", NULL };

	snprintf(log, size, "%s/tight.log", srv.scratch);
	o.args = args;
	return it_daemon_start_opts(t, srv.conninfo, srv.d.keyfile, &o);
}

int srv_list_companies(struct wire *w, uint64_t id)
{
	Pcsecret__V1__ListCompaniesRequest q = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;

	return wire_rpc(w, id, wire_mid("ListCompanies"), 0, &q.base, NULL, 10000);
}

int srv_serves(const char *path)
{
	struct wire w;
	int ok;

	if (wire_session(&w, path) != 0)
		return 0;
	ok = srv_list_companies(&w, 2) == ST_OK;
	wire_close(&w);
	return ok;
}

const char *srv_bad_input(const char *path, enum srv_bad kind)
{
	static char why[256];
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest cs = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	Pcsecret__V1__ListCompaniesRequest lc = PCSECRET__V1__LIST_COMPANIES_REQUEST__INIT;
	Pcsecret__V1__Reply *r = NULL;
	uint8_t buf[64], *f = NULL;
	size_t len = 0, flen = 0;
	uint64_t want_id = 0;
	int want_status, closes = 1, rr;
	const char *want_msg;
	struct wire w;

	h.protocol_version = 1;
	if (wire_open(&w, path) != 0)
		return "cannot connect";
	switch (kind) {
	case SRV_BAD_LEN0:
		len = wire_raw_frame(buf, 0, NULL, 0);
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "frame length 0";
		break;
	case SRV_BAD_TOO_LONG:
		/* Before Hello the limit is max_frame_before_hello; test_max_frame checks max_frame. */
		len = wire_raw_frame(buf, 1048577, "xxxx", 4);
		want_status = PCSECRET__V1__STATUS_CODE__RESOURCE_EXHAUSTED;
		want_msg = "exceeds max_frame_before_hello (4096 bytes)";
		break;
	case SRV_BAD_GARBAGE:
		len = wire_raw_frame(buf, 6, "\xff\xff\xff\xff\xff\xff", 6);
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "not a valid pcsecret.v1.Call";
		break;
	case SRV_BAD_CALL_ID0:
		f = wire_call_frame(0, wire_mid("Hello"), NULL, 0, &h.base, &flen);
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "call_id 0";
		break;
	case SRV_BAD_UNKNOWN_ID:
		f = wire_call_frame(5, 999, NULL, 0, NULL, &flen);
		want_id = 5;
		want_status = PCSECRET__V1__STATUS_CODE__UNIMPLEMENTED;
		want_msg = "method id 999";
		closes = 0;
		break;
	case SRV_BAD_UNKNOWN_NAME:
		f = wire_call_frame(6, 0, "pcsecret.v1.PcSecret/Nope", 0, NULL, &flen);
		want_id = 6;
		want_status = PCSECRET__V1__STATUS_CODE__UNIMPLEMENTED;
		want_msg = "unknown method";
		closes = 0;
		break;
	case SRV_BAD_WRONG_MESSAGE:
		/* A CreateSecretRequest sent as Hello: field 1 has the wrong wire type. */
		cs.company = (char *)"acme";
		cs.name = (char *)"x";
		f = wire_call_frame(7, wire_mid("Hello"), NULL, 0, &cs.base, &flen);
		want_id = 7;
		want_status = PCSECRET__V1__STATUS_CODE__INVALID_ARGUMENT;
		want_msg = "request is not a valid";
		closes = 0;
		break;
	case SRV_BAD_BEFORE_HELLO:
		f = wire_call_frame(8, wire_mid("ListCompanies"), NULL, 0, &lc.base, &flen);
		want_id = 8;
		want_status = PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION;
		want_msg = "call Hello before ListCompanies";
		closes = 0;
		break;
	case SRV_BAD_SECOND_HELLO:
		if (wire_hello(&w, 1) != ST_OK) {
			wire_close(&w);
			return "first Hello failed";
		}
		f = wire_call_frame(9, wire_mid("Hello"), NULL, 0, &h.base, &flen);
		want_id = 9;
		want_status = PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION;
		want_msg = "already called";
		closes = 0;
		break;
	case SRV_BAD_TRUNCATED:
	default:
		len = wire_raw_frame(buf, 40, "half", 4);
		wire_write_all(w.fd, buf, len);
		shutdown(w.fd, SHUT_WR);
		rr = wire_wait_closed(&w, 5000);
		wire_close(&w);
		return rr == 1 ? NULL : "a half frame and EOF did not close the connection";
	}
	if (f != NULL) {
		rr = wire_write_all(w.fd, f, flen);
		frame_free(f, flen);
	} else {
		rr = wire_write_all(w.fd, buf, len);
	}
	if (rr != 0) {
		wire_close(&w);
		return "write failed";
	}
	if ((rr = wire_reply(&w, 5000, &r)) != 1) {
		snprintf(why, sizeof(why), "kind %d: no reply (%d)", (int)kind, rr);
		wire_close(&w);
		return why;
	}
	if (r->call_id != want_id || (int)r->status != want_status ||
	    strstr(r->message, want_msg) == NULL) {
		snprintf(why, sizeof(why), "kind %d: got call %" PRIu64 " status %d \"%s\"",
		    (int)kind, (uint64_t)r->call_id, (int)r->status, r->message);
		pcsecret__v1__reply__free_unpacked(r, NULL);
		wire_close(&w);
		return why;
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	if (closes) {
		if (wire_wait_closed(&w, 5000) != 1) {
			snprintf(why, sizeof(why), "kind %d: connection not closed", (int)kind);
			wire_close(&w);
			return why;
		}
	} else if (kind != SRV_BAD_SECOND_HELLO && kind != SRV_BAD_WRONG_MESSAGE) {
		/* Still open, and still before Hello: the handshake works now. */
		if (wire_hello(&w, 100) != ST_OK || srv_list_companies(&w, 101) != ST_OK) {
			snprintf(
			    why, sizeof(why), "kind %d: connection unusable afterwards", (int)kind);
			wire_close(&w);
			return why;
		}
	} else if (srv_list_companies(&w, 102) !=
	    (kind == SRV_BAD_SECOND_HELLO ? ST_OK :
	                                    PCSECRET__V1__STATUS_CODE__FAILED_PRECONDITION)) {
		snprintf(why, sizeof(why), "kind %d: connection unusable afterwards", (int)kind);
		wire_close(&w);
		return why;
	}
	wire_close(&w);
	return NULL;
}
