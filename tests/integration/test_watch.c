/*
 * Watch: changes pushed as they commit, from whichever daemon made them. Two
 * daemons, A and B, on one database:
 *  - an update through A reaches a watcher connected to B within a second (measured on each
 *    of several updates);
 *  - rollback, disable, enable, delete and restore through A each reach it as their own kind,
 *    with the latest version after the change;
 *  - an agent may watch its own environment but not a secret it is not bound to
 *    (PERMISSION_DENIED, with its audit row), and a rules change ends its stream (ABORTED);
 *  - 1,000 watch/close cycles leave no stream behind (the daemon's count of open streams,
 *    in its stop line) and no memory growth.
 * The method is looked up by name (wire_mid): its id depends on what else the service holds.
 */
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
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "wire.h"

#define DB "it_watch"
#define AGENT_UID IT_AGENT_UID /* acme/bot, K bound to acme/k */
#define ST_OK PCSECRET__V1__STATUS_CODE__OK

/*
 * Under AddressSanitizer freed memory waits in its quarantine, so the daemon's RSS says
 * nothing about what it still holds; its LeakSanitizer, which fails the daemon's exit status
 * on a leak, stands in for the RSS bound there.
 */
#if defined(__SANITIZE_ADDRESS__)
#define WATCH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WATCH_ASAN 1
#endif
#endif
#ifndef WATCH_ASAN
#define WATCH_ASAN 0
#endif

enum { A, B };
static struct it_daemon D[2];
static char conninfo[512];
static struct itconn_env E[2];
static struct itconn adm[2];

/* ---- the world ---- */

static void create_secret(const char *name, const char *value)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)(uintptr_t)value;
	q.value.len = strlen(value);
	itconn_admin_ok(&adm[A], "CreateSecret", &q.base);
}

static void update(int d, const char *value)
{
	Pcsecret__V1__UpdateSecretRequest q = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)"k";
	q.value.data = (uint8_t *)(uintptr_t)value;
	q.value.len = strlen(value);
	itconn_admin_ok(&adm[d], "UpdateSecret", &q.base);
}

static void version_action(int d, const char *method, uint32_t version)
{
	Pcsecret__V1__SecretVersionRequest q = PCSECRET__V1__SECRET_VERSION_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)"k";
	q.version = version;
	itconn_admin_ok(&adm[d], method, &q.base);
}

static void name_action(int d, const char *method)
{
	Pcsecret__V1__SecretNameRequest q = PCSECRET__V1__SECRET_NAME_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)"k";
	itconn_admin_ok(&adm[d], method, &q.base);
}

static void world(void)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	Pcsecret__V1__SetAgentEnvRequest se = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;
	static int done;

	if (done)
		return;
	done = 1;
	cc.name = (char *)"acme";
	itconn_admin_ok(&adm[A], "CreateCompany", &cc.base);
	create_secret("k", "v1");
	create_secret("other", "o1");
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = AGENT_UID;
	itconn_admin_ok(&adm[A], "CreateAgent", &ca.base);
	ref.company = (char *)"acme";
	ref.name = (char *)"k";
	se.company = (char *)"acme";
	se.agent = (char *)"bot";
	se.env_name = (char *)"K";
	se.ref = &ref;
	itconn_admin_ok(&adm[A], "SetAgentEnv", &se.base);
}

/* ---- watching ---- */

struct watcher {
	struct itconn c;
	uint64_t id; /* the Watch call's: its events carry it */
};

/*
 * Watch on c: refs acme/<names> (n of them) and/or agent. Returns the status; on OK, *latest
 * (may be NULL) gets the first secret's latest version. A daemon just started may not listen
 * to its feed yet (UNAVAILABLE): tried again for a while.
 */
static int watch(struct watcher *w, const char *const *names, size_t n, const char *agent,
    uint32_t *latest, char *msg, size_t size)
{
	Pcsecret__V1__WatchRequest q = PCSECRET__V1__WATCH_REQUEST__INIT;
	Pcsecret__V1__SecretRef refs[4], *ptrs[4];
	Pcsecret__V1__Reply *r = NULL;
	int st;

	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		pcsecret__v1__secret_ref__init(&refs[i]);
		refs[i].company = (char *)"acme";
		refs[i].name = (char *)names[i];
		ptrs[i] = &refs[i];
	}
	q.refs = ptrs;
	q.n_refs = n;
	q.agent = (char *)(agent != NULL ? agent : "");
	for (int tries = 0;; tries++) {
		st = itconn_call(&w->c, "Watch", &q.base, msg, size, &r, &w->id);
		if (st != PCSECRET__V1__STATUS_CODE__UNAVAILABLE || tries == 50)
			break;
		pcsecret__v1__reply__free_unpacked(r, NULL);
		r = NULL;
		wire_sleep_ms(100);
	}
	if (st == ST_OK) {
		Pcsecret__V1__WatchReply *wr = pcsecret__v1__watch_reply__unpack(
		    NULL, r->reply.len, r->reply.data);
		assert_non_null(wr);
		assert_false(r->event);
		if (latest != NULL) {
			assert_true(wr->n_secrets >= 1);
			*latest = wr->secrets[0]->latest;
		}
		pcsecret__v1__watch_reply__free_unpacked(wr, NULL);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	return st;
}

/* The next frame of w's stream within ms: an event (kind, latest, version) or its end. */
struct ev {
	int got;    /* 0: nothing within the time */
	int status; /* OK for an event; else the stream ended */
	char kind[32], name[64], message[160];
	uint32_t latest, version;
};

static struct ev next_event(struct watcher *w, int ms)
{
	Pcsecret__V1__Reply *r = NULL;
	uint64_t until = wire_now_ms() + (uint64_t)ms;
	struct ev e;

	memset(&e, 0, sizeof(e));
	for (;;) {
		uint64_t now = wire_now_ms();
		if (now >= until || wire_reply(&w->c.w, (int)(until - now), &r) != 1)
			return e;
		if (r->call_id == w->id && r->event)
			break;
		/* Anything else on the connection is not this test's. */
		pcsecret__v1__reply__free_unpacked(r, NULL);
		r = NULL;
	}
	e.got = 1;
	e.status = r->status;
	snprintf(e.message, sizeof(e.message), "%s", r->message);
	if (r->status == ST_OK) {
		Pcsecret__V1__WatchEvent *we = pcsecret__v1__watch_event__unpack(
		    NULL, r->reply.len, r->reply.data);
		assert_non_null(we);
		snprintf(e.kind, sizeof(e.kind), "%s", we->kind);
		snprintf(e.name, sizeof(e.name), "%s/%s", we->company, we->name);
		e.latest = we->latest;
		e.version = we->version;
		pcsecret__v1__watch_event__free_unpacked(we, NULL);
	}
	pcsecret__v1__reply__free_unpacked(r, NULL);
	return e;
}

static void expect_event(
    struct watcher *w, const char *kind, uint32_t latest, uint32_t version, const char *when)
{
	struct ev e = next_event(w, 2000);

	if (!e.got)
		fail_msg("%s: no event within 2 s, want %s", when, kind);
	if (e.status != ST_OK || strcmp(e.kind, kind) != 0 || e.latest != latest ||
	    e.version != version || strcmp(e.name, "acme/k") != 0)
		fail_msg("%s: got %s %s %s latest %u version %u (%s), want %s acme/k latest %u "
		         "version %u",
		    when, itconn_status_name(e.status), e.kind, e.name, e.latest, e.version,
		    e.message, kind, latest, version);
}

/* ---- tests ---- */

static void test_update_through_a_seen_on_b_within_a_second(void **state)
{
	static const char *const k[] = { "k" };
	struct watcher w;
	uint32_t latest = 0, worst = 0;
	char msg[256];

	(void)state;
	world();
	itconn_open(&E[B], &w.c, 0, 1000);
	assert_int_equal(watch(&w, k, 1, NULL, &latest, msg, sizeof(msg)), ST_OK);
	for (int i = 0; i < 20; i++) {
		char value[32];
		uint64_t t0, dt;
		struct ev e;

		snprintf(value, sizeof(value), "u%d", i);
		t0 = wire_now_ms();
		update(A, value);
		e = next_event(&w, 5000);
		dt = wire_now_ms() - t0;
		if (!e.got || e.status != ST_OK || strcmp(e.kind, "new_version") != 0 ||
		    e.latest != latest + 1 || e.version != latest + 1)
			fail_msg("update %d: got %d %s %s latest %u (%s), want new_version %u", i,
			    e.got, itconn_status_name(e.status), e.kind, e.latest, e.message,
			    latest + 1);
		latest = e.latest;
		if (dt > worst)
			worst = (uint32_t)dt;
	}
	/* From the update's call through A to the event on B, the update's round trip included. */
	print_message("worst update-to-event time: %u ms\n", worst);
	assert_true(worst < 1000);
	wire_close(&w.c.w);
}

static void test_lifecycle_kinds(void **state)
{
	static const char *const k[] = { "k" };
	struct watcher w;
	uint32_t latest = 0;
	char msg[256];

	(void)state;
	world();
	itconn_open(&E[B], &w.c, 0, 2000);
	assert_int_equal(watch(&w, k, 1, NULL, &latest, msg, sizeof(msg)), ST_OK);
	update(A, "next");
	expect_event(&w, "new_version", latest + 1, latest + 1, "update");
	version_action(A, "RollbackSecret", latest);
	expect_event(&w, "rollback", latest, latest, "rollback");
	version_action(A, "DisableSecretVersion", latest + 1);
	expect_event(&w, "disabled", latest, latest + 1, "disable-version");
	version_action(A, "EnableSecretVersion", latest + 1);
	expect_event(&w, "enabled", latest, latest + 1, "enable-version");
	version_action(A, "PromoteSecret", latest + 1);
	expect_event(&w, "promoted", latest + 1, latest + 1, "promote");
	{
		Pcsecret__V1__DeleteSecretRequest q = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;
		q.company = (char *)"acme";
		q.name = (char *)"k";
		q.force = 1; /* acme/bot's binding stays, and fails until restored */
		itconn_admin_ok(&adm[A], "DeleteSecret", &q.base);
	}
	expect_event(&w, "deleted", latest + 1, 0, "delete");
	name_action(A, "RestoreSecret");
	expect_event(&w, "restored", latest + 1, 0, "restore");
	wire_close(&w.c.w);
}

static void test_agent_watches_only_its_bindings(void **state)
{
	static const char *const other[] = { "other" }, *const k[] = { "k" };
	struct watcher w;
	struct ev e;
	uint32_t latest = 0;
	char msg[256], row[256];

	(void)state;
	world();
	itconn_open(&E[B], &w.c, AGENT_UID, 3000);
	/* Not bound: refused, and the refusal has its row. */
	assert_int_equal(watch(&w, other, 1, NULL, NULL, msg, sizeof(msg)),
	    PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED);
	assert_non_null(strstr(msg, "not granted to agent acme/bot"));
	itconn_sql_text(&E[B], row, sizeof(row),
	    "SELECT status || ' ' || principal FROM audit_log WHERE method = 'Watch' AND "
	    "call_id = %llu AND peer_uid = %u",
	    (unsigned long long)w.id, (unsigned)AGENT_UID);
	assert_string_equal(row, "PERMISSION_DENIED agent acme/bot");
	/* Another agent's environment: refused. */
	assert_int_equal(watch(&w, NULL, 0, "acme/nobody", NULL, msg, sizeof(msg)),
	    PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED);
	/* Its own environment (nothing named) and what it is bound to: allowed. */
	assert_int_equal(watch(&w, NULL, 0, NULL, &latest, msg, sizeof(msg)), ST_OK);
	update(A, "for-the-agent");
	e = next_event(&w, 2000);
	assert_true(e.got);
	assert_string_equal(e.kind, "new_version");
	assert_int_equal(e.latest, latest + 1);
	wire_close(&w.c.w);
	itconn_open(&E[B], &w.c, AGENT_UID, 4000);
	assert_int_equal(watch(&w, k, 1, NULL, NULL, msg, sizeof(msg)), ST_OK);
	/* The rules change (a rule added): decided again, so the stream ends. */
	{
		Pcsecret__V1__AddPrincipalRequest q = PCSECRET__V1__ADD_PRINCIPAL_REQUEST__INIT;
		q.match = (char *)"uid";
		q.unix_id = 40099;
		q.role = (char *)"operator";
		q.company = (char *)"acme";
		itconn_admin_ok(&adm[A], "AddPrincipal", &q.base);
	}
	e = next_event(&w, 2000);
	assert_true(e.got);
	assert_int_equal(e.status, PCSECRET__V1__STATUS_CODE__ABORTED);
	assert_non_null(strstr(e.message, "watch again"));
	wire_close(&w.c.w);
}

static void test_closed_connections_free_their_streams(void **state)
{
	static const char *const k[] = { "k" };
	long rss0 = -1, rss1;
	char msg[256];

	(void)state;
	world();
	/* Warm-up, so allocator growth that would be there anyway is not counted. */
	for (int round = 0; round < 2; round++) {
		int n = round == 0 ? 100 : 1000;
		if (round == 1)
			rss0 = wire_proc_rss_kb(D[A].pid);
		for (int i = 0; i < n; i++) {
			struct watcher w;
			itconn_open(&E[A], &w.c, 0, 10000);
			if (watch(&w, k, 1, NULL, NULL, msg, sizeof(msg)) != ST_OK)
				fail_msg("watch %d: %s", i, msg);
			wire_close(&w.c.w);
		}
	}
	assert_true(wire_fd_count_settles(D[A].pid, 64, 5000) <= 64);
	rss1 = wire_proc_rss_kb(D[A].pid);
	print_message(
	    "daemon RSS %ld KiB before, %ld KiB after 1,000 watch/close cycles\n", rss0, rss1);
	assert_true(rss0 > 0 && rss1 > 0);
	if (!WATCH_ASAN)
		assert_true(rss1 - rss0 < 2048);
	/* The daemon's own count of open streams, in its stop line: none left (and, under
	 * ASan, a clean exit: no leak). */
	wire_close(&adm[A].w);
	assert_int_equal(it_daemon_stop(&D[A]), 0);
	assert_int_equal(it_file_contains(D[A].log, " watches=0 ", 11), 1);
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0)
		return -1;
	if (it_daemon_start(&D[A], conninfo, NULL) != 0 ||
	    it_daemon_start(&D[B], conninfo, D[A].keyfile) != 0)
		return -1;
	for (int d = A; d <= B; d++) {
		E[d].socket = D[d].socket;
		E[d].conninfo = conninfo;
	}
	itconn_open(&E[A], &adm[A], 0, 1u << 20);
	itconn_open(&E[B], &adm[B], 0, 1u << 21);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_close(&adm[A].w);
	wire_close(&adm[B].w);
	it_daemon_cleanup(&D[B]);
	it_daemon_cleanup(&D[A]);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_update_through_a_seen_on_b_within_a_second),
		cmocka_unit_test(test_lifecycle_kinds),
		cmocka_unit_test(test_agent_watches_only_its_bindings),
		/* Last: it stops daemon A to read its count. */
		cmocka_unit_test(test_closed_connections_free_their_streams),
	};

	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (an agent's connection as its uid)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("watch", tests, setup, teardown);
}
