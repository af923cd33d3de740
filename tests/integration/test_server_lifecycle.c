/*
 * The server core's life cycle over raw frames (srv.h): SIGHUP reopens the log, SIGINT
 * drains (on a second daemon with max_inflight 1), a stale socket file is replaced, and
 * SIGTERM under load loses no audit row of an OK reply (the main daemon: last).
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "frame.h"
#include "it.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "srv.h"
#include "wire.h"

#define ST_OK PCSECRET__V1__STATUS_CODE__OK

static struct it_daemon T, S;
static char tlog[128];

/* T, with the tight settings, for the signal tests. */
static int setup(void **state)
{
	(void)state;
	if (srv_setup("it_server_lifecycle") != 0)
		return -1;
	return srv_start_tight(&T, tlog, sizeof(tlog));
}

static int teardown(void **state)
{
	(void)state;
	it_daemon_cleanup(&T);
	it_daemon_cleanup(&S);
	srv_teardown();
	return 0;
}

/* ---- signals, on the daemon with tight limits (T) ---- */

static void test_sighup_reopens_log(void **state)
{
	char rotated[160];
	struct stat st;
	struct wire w;
	int ok = 0;

	(void)state;
	snprintf(rotated, sizeof(rotated), "%s.1", tlog);
	assert_int_equal(rename(tlog, rotated), 0);
	assert_int_equal(kill(T.pid, SIGHUP), 0);
	for (int i = 0; i < 100 && !ok; i++) {
		wire_sleep_ms(20);
		ok = stat(tlog, &st) == 0 && srv_file_has(tlog, "event=log_reopened");
	}
	assert_true(ok);
	assert_int_equal(wire_session(&w, T.socket), 0);
	assert_int_equal(srv_list_companies(&w, 987654321), ST_OK);
	wire_close(&w);
	assert_true(srv_file_has(tlog, "call_id=987654321"));
	assert_false(srv_file_has(rotated, "call_id=987654321"));
	assert_true(srv_file_has(rotated, "event=listening"));
}

/*
 * SIGINT drains like SIGTERM: a call in flight (waiting for a lock) finishes and gets its
 * reply; a call sent after the drain began is not taken on; exit 0, socket removed.
 */
static void test_sigint_drains(void **state)
{
	Pcsecret__V1__DescribeSecretRequest ds = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__Reply *r;
	struct wire_lock lock;
	struct wire a, b;
	struct stat st;
	int status, ok = 0;

	(void)state;
	ds.company = (char *)"acme";
	ds.name = (char *)"k1";
	wire_sleep_ms(200);
	assert_int_equal(wire_session(&a, T.socket), 0);
	assert_int_equal(wire_session(&b, T.socket), 0);
	assert_int_equal(wire_lock_table(&lock, srv.conninfo, "secrets"), 0);
	assert_int_equal(wire_send_call(&a, 21, wire_mid("DescribeSecret"), 0, &ds.base), 0);
	wire_sleep_ms(100);
	assert_int_equal(kill(T.pid, SIGINT), 0);
	for (int i = 0; i < 100 && !ok; i++) {
		wire_sleep_ms(20);
		ok = srv_file_has(tlog, "event=draining");
	}
	assert_true(ok);
	/* Draining: new connections are refused... */
	assert_int_equal(wire_connect(T.socket, 0), -1);
	/* ...and a new call on an open one is not started. */
	assert_int_equal(srv_list_companies(&b, 22), -1);
	assert_int_equal(wire_lock_release(&lock), 0);
	assert_int_equal(wire_reply(&a, 5000, &r), 1);
	assert_int_equal(r->call_id, 21);
	assert_int_equal(r->status, ST_OK);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_int_equal(wire_wait_closed(&a, 5000), 1);
	assert_int_equal(wire_wait_closed(&b, 5000), 1);
	wire_close(&a);
	wire_close(&b);
	assert_int_equal(waitpid(T.pid, &status, 0), T.pid);
	T.pid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(stat(T.socket, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_true(srv_file_has(tlog, "event=stopped"));
	assert_false(srv_file_has(tlog, "event=drain_timeout"));
}

/* ---- a stale socket file ---- */

static void test_stale_socket_replaced(void **state)
{
	struct it_daemon_opts o = { 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[128];
	struct stat st;
	int fd;

	(void)state;
	/*
	 * What a crashed daemon leaves: a socket file nobody listens on, in a directory only its
	 * owner may write (the daemon refuses one that others could bind in first).
	 */
	snprintf(path, sizeof(path), "%s/stale", srv.scratch);
	assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
	snprintf(path, sizeof(path), "%s/stale/stale.sock", srv.scratch);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(wire_connect(path, 0), -1);
	o.socket = path;
	assert_int_equal(it_daemon_start_opts(&S, srv.conninfo, srv.d.keyfile, &o), 0);
	assert_true(srv_serves(path));
	assert_int_equal(it_daemon_stop(&S), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

/* ---- SIGTERM under load: every OK reply has its audit row ---- */

struct load_arg {
	const char *socket;
	int conns;
	int depth;      /* calls in flight per connection */
	int started;    /* write end: told after the first replies */
	char okfile[160];
};

static int child_load(void *a, FILE *out)
{
	struct load_arg *la = a;
	struct wire_resolve rm;
	struct wire w[16];
	struct pollfd pf[16];
	FILE *ok = NULL;
	uint64_t next_id = 1000, oks = 0, end;
	int open_conns = 0, told = 0, rc = 1;

	wire_resolve_init(&rm, "k1", 1);
	if (la->conns > 16 || (ok = fopen(la->okfile, "we")) == NULL) {
		wire_resolve_free(&rm);
		return wire_child_report(out, "cannot write %s", la->okfile);
	}
	for (int i = 0; i < la->conns; i++) {
		if (wire_session(&w[i], la->socket) != 0) {
			wire_child_report(out, "load: Hello failed");
			la->conns = i;
			goto out;
		}
		pf[i].fd = w[i].fd;
		pf[i].events = POLLIN;
		open_conns++;
		for (int k = 0; k < la->depth; k++)
			if (wire_send_call(&w[i], next_id++, wire_mid("Resolve"), 0, &rm.req.base) != 0)
				break;
	}
	end = wire_now_ms() + 30000;
	while (open_conns > 0 && wire_now_ms() < end) {
		if (poll(pf, (nfds_t)la->conns, 500) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < la->conns; i++) {
			Pcsecret__V1__Reply *r;
			int t, f;
			if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			f = wire_fill(&w[i], 0);
			while ((t = wire_take(&w[i], &r)) == 1) {
				if (!wire_resolve_ok(r, 1, (const uint8_t *)SRV_VAL1, strlen(SRV_VAL1))) {
					wire_child_report(out, "load: call %" PRIu64 " got status %d (%s)",
					    (uint64_t)r->call_id, (int)r->status, r->message);
					pcsecret__v1__reply__free_unpacked(r, NULL);
					goto out;
				}
				fprintf(ok, "%" PRIu64 "\n", (uint64_t)r->call_id);
				oks++;
				pcsecret__v1__reply__free_unpacked(r, NULL);
				/* Keep the pipeline full; after the drain began this is not read. */
				wire_send_call(&w[i], next_id++, wire_mid("Resolve"), 0, &rm.req.base);
			}
			if (f <= 0 && f != -1) {
				pf[i].fd = -1;
				open_conns--;
			}
		}
		if (!told && oks >= 100) {
			told = 1;
			if (write(la->started, "s", 1) != 1)
				goto out;
		}
	}
	if (open_conns > 0) {
		wire_child_report(out, "load: %d connections still open after 30 s", open_conns);
		goto out;
	}
	if (!told) {
		wire_child_report(out, "load: only %" PRIu64 " replies before the end", oks);
		goto out;
	}
	rc = 0;
out:
	if (ok != NULL)
		fclose(ok);
	for (int i = 0; i < la->conns; i++)
		wire_close(&w[i]);
	wire_resolve_free(&rm);
	return rc;
}

static void test_sigterm_during_load(void **state)
{
	enum { PROCS = 4 };
	struct load_arg a[PROCS];
	struct wire_child ch[PROCS];
	int started[2], status;
	struct stat st;
	uint64_t t0, took;
	size_t total = 0, cap = 1 << 20, len = 0;
	char *sql, *rows, c, line[64];

	(void)state;
	if (!srv_need_root())
		skip();
	assert_int_equal(pipe2(started, O_CLOEXEC), 0);
	for (int i = 0; i < PROCS; i++) {
		a[i].socket = srv.d.socket;
		a[i].conns = 8;
		a[i].depth = 16;
		a[i].started = started[1];
		snprintf(a[i].okfile, sizeof(a[i].okfile), "%s/ok.%d", srv.scratch, i);
		assert_int_equal(wire_child_start(&ch[i], IT_AGENT_UID, child_load, &a[i]), 0);
	}
	close(started[1]);
	for (int i = 0; i < PROCS; i++)
		if (read(started[0], &c, 1) != 1)
			break;
	close(started[0]);
	wire_sleep_ms(200);
	t0 = wire_now_ms();
	assert_int_equal(kill(srv.d.pid, SIGTERM), 0);
	assert_int_equal(waitpid(srv.d.pid, &status, 0), srv.d.pid);
	took = wire_now_ms() - t0;
	srv.d.pid = 0;
	for (int i = 0; i < PROCS; i++)
		WIRE_CHILD_OK(&ch[i]);
	fprintf(stderr, "SIGTERM under load: exited after %" PRIu64 " ms\n", took);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(took < 5000);
	assert_int_equal(stat(srv.d.socket, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_true(srv_file_has(srv.d.log, "event=draining"));
	assert_true(srv_file_has(srv.d.log, "event=stopped"));
	assert_false(srv_file_has(srv.d.log, "event=drain_timeout"));
	/* Every OK the clients saw is in audit_log as OK for that peer pid and call id. */
	sql = malloc(cap);
	assert_non_null(sql);
	len = (size_t)snprintf(sql, cap, "SELECT count(DISTINCT (peer_pid, call_id)) FROM audit_log "
	    "WHERE instance_id = '%s' AND method = 'Resolve' AND status = 'OK' AND "
	    "(peer_pid, call_id) IN (VALUES (0, 0)", srv.instance_id);
	for (int i = 0; i < PROCS; i++) {
		FILE *fp = fopen(a[i].okfile, "re");
		assert_non_null(fp);
		while (fgets(line, sizeof(line), fp) != NULL) {
			if (len + 64 > cap) {
				char *p = realloc(sql, cap *= 2);
				assert_non_null(p);
				sql = p;
			}
			len += (size_t)snprintf(sql + len, cap - len, ",(%d,%llu)", (int)ch[i].pid,
			    strtoull(line, NULL, 10));
			total++;
		}
		fclose(fp);
	}
	snprintf(sql + len, cap - len, ")");
	rows = pgtest_query_text(srv.conninfo, sql);
	free(sql);
	assert_non_null(rows);
	fprintf(stderr, "%zu OK replies, %s with their audit row\n", total, rows);
	assert_true(total >= 400);
	assert_int_equal(strtoull(rows, NULL, 10), total);
	free(rows);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(srv_test_setup_data, srv_after_test),
		cmocka_unit_test_teardown(test_sighup_reopens_log, srv_after_test),
		cmocka_unit_test_teardown(test_sigint_drains, srv_after_test),
		cmocka_unit_test_teardown(test_stale_socket_replaced, srv_after_test),
		cmocka_unit_test_teardown(test_sigterm_during_load, srv_after_test),
	};

	return cmocka_run_group_tests_name("server_lifecycle", tests, setup, teardown);
}
