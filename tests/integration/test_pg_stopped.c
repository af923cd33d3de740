/*
 * PostgreSQL stopped under a warmed daemon: the cluster is
 * shut down for 5 s (pg_ctl stop -m fast, tests/pg_harness.sh halt), not merely refusing
 * connections as in test_db_outage. Before, the agent's resolves filled the daemon's cache;
 * during the outage no audit row can be written, so:
 *
 *  - every call on connections opened before, and on new ones (a Hello, a Resolve pipelined
 *    behind it), is refused UNAVAILABLE by its deadline + db_wait_ms (+ 1 s for a loaded
 *    machine): docs/protocol.md, "Audit rows", and docs/audit.md, "Fail-closed"; no reply
 *    frame holds the value's bytes; pcrun as the agent fails without printing it;
 *  - the daemon stays up, and once PostgreSQL is back resolves succeed again within 20 s, on
 *    the old connections and new ones; each OK has exactly one OK audit row, and no call
 *    refused in between has one;
 *  - its log says it lost the database and its change feed, and regained both.
 *
 * The cluster is the test's own (PCS_PGSTOP_DIR, PCS_PGSTOP_PORT from CMake): the shared one
 * serves the tests running alongside and must never stop. A ctest cleanup fixture removes it
 * even when this binary is killed.
 */
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "wire.h"

#ifndef PCS_PGSTOP_DIR
#error "PCS_PGSTOP_DIR (the private cluster's directory) comes from CMake"
#endif
#ifndef PCS_PGSTOP_PORT
#error "PCS_PGSTOP_PORT (the private cluster's port) comes from CMake"
#endif

#define DB "it_pg_stopped"
#define VALUE "PGSTOP-VALUE-8d41c3e9a7"
#define CALL_MS 2000   /* every call's deadline (timeout_ms) */
#define DB_WAIT_MS 500 /* the daemon's db_wait_ms */
/*
 * A refused call is answered by its deadline + DB_WAIT_MS: a call that ends at its deadline
 * (or was held behind a Hello until then) still waits for its refusal's own audit row, which
 * fails once it has waited db_wait_ms. MARGIN_MS more for a loaded machine.
 */
#define MARGIN_MS 1000
#define OUTAGE_MS 5000   /* PostgreSQL stays stopped this long */
#define RECOVER_MS 20000 /* a resolve succeeds again within this long of the restart */
#define NOPEN 3          /* agent connections opened before the outage */
#define ST_OK PCSECRET__V1__STATUS_CODE__OK
#define ST_UNAVAILABLE PCSECRET__V1__STATUS_CODE__UNAVAILABLE

static struct it_daemon D;
static char conninfo[600];
static struct itconn_env env;
static int cluster_up;
static struct wire_resolve RES; /* a Resolve of acme/k */
/* Call ids, unique over every agent connection of the test, so that rows name one call. */
static uint64_t next_id = 1000;

/* One call on a connection and what came back. */
struct call {
	struct wire *w;
	const char *method;
	uint64_t id;
	uint64_t sent_ms;
	int status;       /* -1 while no reply came */
	uint64_t took_ms; /* from sending to the whole reply read */
	int leaked;       /* the reply frame held the value's bytes */
	int value_ok;     /* an OK Resolve with the value */
	char message[160];
};

/* ---- the private cluster ---- */

/* tests/pg_harness.sh cmd on the private cluster; its messages go to the test's log. */
static int harness(const char *cmd)
{
	const char *src = getenv("PCS_SOURCE_DIR");
	char script[1024], port[16];
	pid_t pid;
	int st;

	snprintf(script, sizeof(script), "%s/tests/pg_harness.sh", src != NULL ? src : ".");
	snprintf(port, sizeof(port), "%d", PCS_PGSTOP_PORT);
	fflush(NULL);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		execl("/bin/sh", "sh", script, cmd, PCS_PGSTOP_DIR, port, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- calls ---- */

static int pcctl(const char *stdin_data, ...)
{
	const char *argv[16];
	struct it_result r;
	va_list ap;
	size_t n = 0;
	int st;

	argv[n++] = it_path("client/pcctl");
	va_start(ap, stdin_data);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(it_run(0, D.socket, NULL, stdin_data, argv, &r), 0);
	if ((st = r.status) != 0)
		fprintf(stderr, "pcctl %s %s: %s", argv[1], argv[2], r.err);
	it_result_free(&r);
	return st;
}

/* pcrun as the agent, printing K (bound to acme/k); r holds what it wrote. */
static void agent_pcrun(struct it_result *r)
{
	const char *e[] = { "K=pcs:acme/k", NULL };
	const char *argv[] = { it_path("client/pcrun"), "--", "/bin/sh", "-c", "printf '%s' \"$K\"",
		NULL };

	assert_int_equal(it_run(IT_AGENT_UID, D.socket, e, NULL, argv, r), 0);
}

/* A connection of the agent's uid (opened by a child running as it). */
static void agent_connect(struct wire *w)
{
	char msg[2048];

	memset(w, 0, sizeof(*w));
	if ((w->fd = wire_connect_as(D.socket, IT_AGENT_UID, msg, sizeof(msg))) < 0)
		fail_msg("connecting as the agent: %s", msg);
}

static void send_call(struct call *c, struct wire *w, const char *method)
{
	Pcsecret__V1__HelloRequest hello = PCSECRET__V1__HELLO_REQUEST__INIT;
	const ProtobufCMessage *req;

	hello.protocol_version = 1;
	hello.client = (char *)"test_pg_stopped";
	req = strcmp(method, "Hello") == 0 ? &hello.base : &RES.req.base;
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->method = method;
	c->id = next_id++;
	c->status = -1;
	c->sent_ms = wire_now_ms();
	if (wire_send_call(w, c->id, wire_mid(method), CALL_MS, req) != 0)
		fail_msg("%s %" PRIu64 ": could not send", method, c->id);
}

/* The whole frame at the head of w's buffer, if there is one: its length, else 0. */
static size_t frame_ready(const struct wire *w)
{
	uint32_t n;

	if (w->len < 4)
		return 0;
	n = (uint32_t)w->buf[0] << 24 | (uint32_t)w->buf[1] << 16 | (uint32_t)w->buf[2] << 8 |
	    w->buf[3];
	return w->len - 4 >= n ? 4 + (size_t)n : 0;
}

/* Takes w's buffered replies, each into the call it answers. */
static void take_replies(struct wire *w, struct call *calls, size_t n)
{
	size_t flen;

	while ((flen = frame_ready(w)) > 0) {
		int leaked = it_mem_contains((const char *)w->buf, flen, VALUE, strlen(VALUE));
		Pcsecret__V1__Reply *r = NULL;
		struct call *c = NULL;

		if (wire_take(w, &r) != 1)
			fail_msg("a malformed reply frame");
		for (size_t i = 0; i < n && c == NULL; i++)
			if (calls[i].w == w && calls[i].id == r->call_id && calls[i].status < 0)
				c = &calls[i];
		if (c == NULL)
			fail_msg("a reply for call %" PRIu64 ", which was not waiting", r->call_id);
		c->status = (int)r->status;
		c->took_ms = wire_now_ms() - c->sent_ms;
		c->leaked = leaked;
		c->value_ok = strcmp(c->method, "Resolve") == 0 &&
		    wire_resolve_ok(r, 1, (const uint8_t *)VALUE, strlen(VALUE));
		snprintf(
		    c->message, sizeof(c->message), "%s", r->message != NULL ? r->message : "");
		pcsecret__v1__reply__free_unpacked(r, NULL);
	}
}

/*
 * Waits for the replies of n calls sent just before, on any of their connections at once (so
 * that each reply's time is its own), until each came or its deadline + DB_WAIT_MS +
 * MARGIN_MS passed.
 */
static void collect(struct call *calls, size_t n)
{
	for (;;) {
		struct pollfd pf[8];
		struct wire *pw[8];
		size_t np = 0;
		uint64_t now = wire_now_ms(), end = 0;
		int pr;

		for (size_t i = 0; i < n; i++) {
			size_t j;
			if (calls[i].status >= 0)
				continue;
			if (calls[i].sent_ms + CALL_MS + DB_WAIT_MS + MARGIN_MS > end)
				end = calls[i].sent_ms + CALL_MS + DB_WAIT_MS + MARGIN_MS;
			for (j = 0; j < np && pw[j] != calls[i].w; j++)
				;
			if (j == np && np < 8) {
				pw[np] = calls[i].w;
				pf[np++] = (struct pollfd){ calls[i].w->fd, POLLIN, 0 };
			}
		}
		if (np == 0 || now >= end)
			return;
		pr = poll(pf, np, (int)(end - now < 100 ? end - now : 100));
		for (size_t j = 0; pr > 0 && j < np; j++) {
			if (pf[j].revents == 0)
				continue;
			if (wire_fill(pw[j], 0) == 0 && frame_ready(pw[j]) == 0)
				fail_msg("the daemon closed a connection with calls in flight");
			take_replies(pw[j], calls, n);
		}
	}
}

/* Prints and checks one call of the outage: refused, in time, without the value. */
static void check_refused(const struct call *c, int want)
{
	fprintf(stderr, "  %-7s %" PRIu64 ": %s after %" PRIu64 " ms (%s)\n", c->method, c->id,
	    itconn_status_name(c->status), c->took_ms, c->message);
	if (c->status < 0)
		fail_msg("%s %" PRIu64 ": no reply within its deadline + %d ms", c->method, c->id,
		    DB_WAIT_MS + MARGIN_MS);
	if (c->leaked)
		fail_msg("%s %" PRIu64 ": the reply carried the value's bytes", c->method, c->id);
	if (c->status != want)
		fail_msg("%s %" PRIu64 ": %s (%s), want %s", c->method, c->id,
		    itconn_status_name(c->status), c->message, itconn_status_name(want));
	assert_true(c->took_ms <= CALL_MS + DB_WAIT_MS + MARGIN_MS);
}

/* Checks one call after the restart that must succeed; returns its id. */
static uint64_t check_ok(const struct call *c)
{
	if (c->status != ST_OK || (strcmp(c->method, "Resolve") == 0 && !c->value_ok))
		fail_msg("%s %" PRIu64 " after the restart: %s (%s)", c->method, c->id,
		    itconn_status_name(c->status), c->message);
	return c->id;
}

/* The audit rows of the agent's call id: "OK rows/all rows". */
static void audit_of(uint64_t id, char *buf, size_t size)
{
	itconn_sql_text(&env, buf, size,
	    "SELECT count(*) FILTER (WHERE status = 'OK') || '/' || count(*) FROM audit_log "
	    "WHERE instance_id = '%s' AND peer_uid = %d AND call_id = %" PRIu64,
	    env.instance, IT_AGENT_UID, id);
}

/* 1 once the daemon's log holds event=name, waiting up to ms for it. */
static int log_has(const char *name, unsigned ms)
{
	char needle[96];
	uint64_t end = wire_now_ms() + ms;

	snprintf(needle, sizeof(needle), "event=%s ", name);
	for (;;) {
		if (it_file_contains(D.log, needle, strlen(needle)) == 1)
			return 1;
		if (wire_now_ms() >= end)
			return 0;
		wire_sleep_ms(100);
	}
}

/* ---- set-up: a cluster of our own, a daemon on a database of it ---- */

static int setup(void **state)
{
	static char admin[256];
	static char wait[16];
	static const char *args[] = { "--db-wait-ms", wait, NULL };
	struct it_daemon_opts o = { .args = args };

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	snprintf(wait, sizeof(wait), "%d", DB_WAIT_MS);
	wire_resolve_init(&RES, "k", 1);
	if (RES.refs == NULL || harness("start") != 0)
		return -1;
	cluster_up = 1;
	/*
	 * it_database and the daemon's service role take the cluster from PCS_TEST_CONNINFO: this
	 * binary's cluster is its own, not the shared one ctest's pg fixture starts.
	 */
	snprintf(admin, sizeof(admin), "host=%s port=%d user=postgres dbname=postgres",
	    PCS_PGSTOP_DIR, PCS_PGSTOP_PORT);
	if (setenv("PCS_TEST_CONNINFO", admin, 1) != 0 ||
	    it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start_opts(&D, conninfo, NULL, &o) != 0)
		return -1;
	env.socket = D.socket;
	env.conninfo = conninfo;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	it_daemon_cleanup(&D);
	if (cluster_up && harness("stop") != 0)
		fprintf(stderr, "could not remove the cluster in %s\n", PCS_PGSTOP_DIR);
	cluster_up = 0;
	wire_resolve_free(&RES);
	return 0;
}

static void test_pg_stopped(void **state)
{
	struct wire open[NOPEN], fresh;
	struct call calls[NOPEN + 2];
	struct itconn adm;
	struct it_result r;
	uint64_t ok_ids[64], t0, first_refused, first_ok = 0;
	size_t n_ok = 0, rounds = 0;
	char uid[16], buf[64];
	int st;

	(void)state;
	snprintf(uid, sizeof(uid), "%d", IT_AGENT_UID);
	assert_int_equal(pcctl(NULL, "company", "create", "acme", NULL), 0);
	assert_int_equal(pcctl(VALUE, "secret", "create", "acme/k", NULL), 0);
	assert_int_equal(pcctl(NULL, "agent", "create", "acme/bot", "--uid", uid, NULL), 0);
	assert_int_equal(pcctl(NULL, "agent", "set-env", "acme/bot", "K", "pcs:acme/k", NULL), 0);
	itconn_open(&env, &adm, 0, 1); /* the daemon's instance id, for its audit rows */
	/* The cache serves only while the change feed listens. */
	assert_true(log_has("feed_listening", 10000));

	/* Warm: every connection resolves a few times; the replies carry the value. */
	for (size_t i = 0; i < NOPEN; i++) {
		agent_connect(&open[i]);
		send_call(&calls[0], &open[i], "Hello");
		collect(calls, 1);
		ok_ids[n_ok++] = check_ok(&calls[0]);
	}
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < NOPEN; i++)
			send_call(&calls[i], &open[i], "Resolve");
		collect(calls, NOPEN);
		for (size_t i = 0; i < NOPEN; i++) {
			ok_ids[n_ok++] = check_ok(&calls[i]);
			/* The byte search finds a value that is there. */
			assert_true(calls[i].leaked);
		}
	}
	agent_pcrun(&r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, VALUE);
	it_result_free(&r);
	assert_int_equal(log_has("db_connection_lost", 0), 0);

	/* PostgreSQL stops; for OUTAGE_MS the agent keeps calling, on old and new connections. */
	assert_int_equal(harness("halt"), 0);
	t0 = wire_now_ms();
	first_refused = next_id;
	fprintf(stderr, "PostgreSQL stopped\n");
	while (wire_now_ms() - t0 < OUTAGE_MS) {
		size_t n = 0;
		for (size_t i = 0; i < NOPEN; i++)
			send_call(&calls[n++], &open[i], "Resolve");
		/*
		 * A new connection: its Hello fails, and the Resolve pipelined behind it, refused
		 * FAILED_PRECONDITION once the Hello failed, is UNAVAILABLE too: that refusal's own
		 * audit row cannot be written either.
		 */
		agent_connect(&fresh);
		send_call(&calls[n++], &fresh, "Hello");
		send_call(&calls[n++], &fresh, "Resolve");
		collect(calls, n);
		for (size_t i = 0; i < n; i++)
			check_refused(&calls[i], ST_UNAVAILABLE);
		wire_close(&fresh);
		rounds++;
		if (rounds == 1) {
			/* pcrun as the agent fails and prints nothing of the value. */
			agent_pcrun(&r);
			fprintf(stderr, "pcrun during the outage: exit %d: %s", r.status, r.err);
			assert_int_not_equal(r.status, 0);
			assert_false(it_mem_contains(r.out, r.out_len, VALUE, strlen(VALUE)));
			assert_null(strstr(r.err, VALUE));
			assert_non_null(strstr(r.err, "UNAVAILABLE"));
			it_result_free(&r);
		}
	}
	assert_int_equal(waitpid(D.pid, &st, WNOHANG), 0); /* the daemon is still running */

	/* PostgreSQL is back: a resolve succeeds again within RECOVER_MS. */
	assert_int_equal(harness("resume"), 0);
	t0 = wire_now_ms();
	fprintf(stderr, "PostgreSQL started again after %zu rounds\n", rounds);
	while (first_ok == 0 && wire_now_ms() - t0 < RECOVER_MS) {
		send_call(&calls[0], &open[0], "Resolve");
		collect(calls, 1);
		if (calls[0].status < 0)
			fail_msg("Resolve %" PRIu64 ": no reply within its deadline + %d ms",
			    calls[0].id, DB_WAIT_MS + MARGIN_MS);
		if (calls[0].status == ST_OK) {
			first_ok = check_ok(&calls[0]);
			break;
		}
		assert_false(calls[0].leaked);
		wire_sleep_ms(200);
	}
	if (first_ok == 0)
		fail_msg("no resolve succeeded within %d ms of the restart", RECOVER_MS);
	fprintf(stderr, "resolves succeed again %" PRIu64 " ms after the restart\n",
	    wire_now_ms() - t0);
	ok_ids[n_ok++] = first_ok;
	/* Every connection opened before serves again, and so does a new one, and pcrun. */
	for (size_t i = 0; i < NOPEN; i++)
		send_call(&calls[i], &open[i], "Resolve");
	agent_connect(&fresh);
	send_call(&calls[NOPEN], &fresh, "Hello");
	send_call(&calls[NOPEN + 1], &fresh, "Resolve");
	collect(calls, NOPEN + 2);
	for (size_t i = 0; i < NOPEN + 2; i++)
		ok_ids[n_ok++] = check_ok(&calls[i]);
	wire_close(&fresh);
	agent_pcrun(&r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, VALUE);
	it_result_free(&r);

	/* Each OK has exactly one row, OK; nothing refused in between has an OK row. */
	for (size_t i = 0; i < n_ok; i++) {
		audit_of(ok_ids[i], buf, sizeof(buf));
		if (strcmp(buf, "1/1") != 0)
			fail_msg(
			    "call %" PRIu64 " was OK; its audit rows (OK/all): %s", ok_ids[i], buf);
	}
	itconn_sql_text(&env, buf, sizeof(buf),
	    "SELECT count(*) FROM audit_log WHERE instance_id = '%s' AND peer_uid = %d AND "
	    "call_id >= %" PRIu64 " AND call_id < %" PRIu64 " AND status = 'OK'",
	    env.instance, IT_AGENT_UID, first_refused, first_ok);
	assert_string_equal(buf, "0");

	/* The log says what happened to the pool and to the change feed. */
	assert_int_equal(log_has("db_connection_lost", 0), 1);
	assert_int_equal(log_has("db_reconnected", 10000), 1);
	assert_int_equal(log_has("feed_lost", 0), 1);
	assert_int_equal(log_has("feed_relistening", 10000), 1);
	assert_int_equal(waitpid(D.pid, &st, WNOHANG), 0);

	for (size_t i = 0; i < NOPEN; i++)
		wire_close(&open[i]);
	wire_close(&adm.w);
	/* It drains and exits cleanly (under ASan: nothing the outage left behind leaked). */
	assert_int_equal(it_daemon_stop(&D), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pg_stopped),
	};

	/* The agent runs as another uid, and the cluster as the postgres user. */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (an agent as another uid)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("pg_stopped", tests, setup, teardown);
}
