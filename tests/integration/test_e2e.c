/*
 * End to end: the real pcsecretd on a real PostgreSQL database, driven through pcctl, pcrun
 * and the SDK, as different Unix users. Tests run in order and share one daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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

#include "it.h"
#include "pcsecret.h"
#include "pgtest.h"

#define PLAIN1 "PLAINTEXT-ONE-7f3a9c1e"
#define PLAIN2 "PLAINTEXT-TWO-b81d2e44"
#define PLAIN3 "PLAINTEXT-THREE-c0ffee99"

static struct it_daemon D;
static char conninfo[512];
/* Everything pcctl printed for non-resolving commands, searched for plaintext at the end. */
static char *admin_output;
static size_t admin_output_len;

static void keep_output(const struct it_result *r)
{
	size_t add = strlen(r->out) + strlen(r->err);
	char *p = realloc(admin_output, admin_output_len + add + 1);

	assert_non_null(p);
	admin_output = p;
	memcpy(admin_output + admin_output_len, r->out, strlen(r->out));
	admin_output_len += strlen(r->out);
	memcpy(admin_output + admin_output_len, r->err, strlen(r->err));
	admin_output_len += strlen(r->err);
	admin_output[admin_output_len] = '\0';
}

/* Runs pcctl as uid with args; its output is kept for the leak check. */
static int pcctl(uid_t uid, const char *stdin_data, struct it_result *r, ...)
{
	const char *argv[32];
	va_list ap;
	size_t n = 0;

	argv[n++] = it_path("client/pcctl");
	va_start(ap, r);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(it_run(uid, D.socket, NULL, stdin_data, argv, r), 0);
	keep_output(r);
	return r->status;
}

#define PCCTL_OK(uid, in, ...)                                                       \
	do {                                                                             \
		struct it_result r_;                                                         \
		if (pcctl(uid, in, &r_, __VA_ARGS__, (char *)NULL) != 0)                     \
			fail_msg("pcctl failed (%d): %s", r_.status, r_.err);                    \
		it_result_free(&r_);                                                         \
	} while (0)

/* pcrun as uid printing the named variables joined by '|'. */
static int pcrun_print(uid_t uid, const char *agent, const char *const *env, const char *vars,
    struct it_result *r)
{
	char script[256];
	const char *argv[12];
	size_t n = 0;

	snprintf(script, sizeof(script), "printf '%%s' \"%s\"", vars);
	argv[n++] = it_path("client/pcrun");
	if (agent != NULL) {
		argv[n++] = "--agent";
		argv[n++] = agent;
	}
	argv[n++] = "--";
	argv[n++] = "/bin/sh";
	argv[n++] = "-c";
	argv[n++] = script;
	argv[n] = NULL;
	assert_int_equal(it_run(uid, D.socket, env, NULL, argv, r), 0);
	return r->status;
}

static int need_root(void)
{
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root to run clients as other uids\n");
		return 0;
	}
	return 1;
}

static int setup(void **state)
{
	(void)state;
	if (it_database("it_e2e", conninfo, sizeof(conninfo)) != 0)
		return -1;
	return it_daemon_start(&D, conninfo, NULL);
}

static int teardown(void **state)
{
	(void)state;
	it_daemon_cleanup(&D);
	free(admin_output);
	return 0;
}

static void test_walkthrough_setup(void **state)
{
	(void)state;
	PCCTL_OK(0, NULL, "company", "create", "acme");
	PCCTL_OK(0, PLAIN1, "secret", "create", "acme/anthropic-api-key", "--description", "LLM key");
	PCCTL_OK(0, NULL, "agent", "create", "acme/bot", "--uid", "40010");
	PCCTL_OK(0, NULL, "agent", "set-env", "acme/bot", "ANTHROPIC_API_KEY",
	    "pcs:acme/anthropic-api-key");
	PCCTL_OK(0, NULL, "agent", "set-env", "acme/bot", "PINNED_KEY",
	    "pcs:acme/anthropic-api-key@1");
	PCCTL_OK(0, NULL, "secret", "list", "acme");
	PCCTL_OK(0, NULL, "agent", "show", "acme/bot");
}

static void test_pcrun_as_agent(void **state)
{
	struct it_result r;
	const char *env[] = { "K=pcs:acme/anthropic-api-key", "PLAIN=not-a-ref", NULL };

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pcrun_print(IT_AGENT_UID, NULL, env, "$K|$PLAIN", &r), 0);
	assert_string_equal(r.out, PLAIN1 "|not-a-ref");
	it_result_free(&r);
	/* The agent's own configured environment. */
	assert_int_equal(pcrun_print(IT_AGENT_UID, "acme/bot", NULL, "$ANTHROPIC_API_KEY|$PINNED_KEY",
	    &r), 0);
	assert_string_equal(r.out, PLAIN1 "|" PLAIN1);
	it_result_free(&r);
}

static void test_rotation_latest_and_pinned(void **state)
{
	struct it_result r;
	const char *env[] = { "NEW=pcs:acme/anthropic-api-key",
		"OLD=pcs:acme/anthropic-api-key@1", NULL };

	(void)state;
	PCCTL_OK(0, PLAIN2, "secret", "update", "acme/anthropic-api-key");
	if (!need_root())
		skip();
	assert_int_equal(pcrun_print(IT_AGENT_UID, NULL, env, "$NEW|$OLD", &r), 0);
	assert_string_equal(r.out, PLAIN2 "|" PLAIN1);
	it_result_free(&r);
	assert_int_equal(pcrun_print(IT_AGENT_UID, "acme/bot", NULL, "$ANTHROPIC_API_KEY|$PINNED_KEY",
	    &r), 0);
	assert_string_equal(r.out, PLAIN2 "|" PLAIN1);
	it_result_free(&r);
}

/* The SDK in a child running as the agent; results come back through a pipe. */
static void test_sdk_resolve_and_env(void **state)
{
	int fds[2], status;
	pid_t pid;
	char buf[512] = "";
	ssize_t n;

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		const char *refs[] = { "pcs:acme/anthropic-api-key", "pcs:acme/anthropic-api-key@1" };
		pcs_options opts = { D.socket, 2000, 5000 };
		pcs_client *c = NULL;
		pcs_value *v = NULL;
		pcs_env_entry *env = NULL;
		size_t count = 0;
		pcs_error err;
		FILE *out = fdopen(fds[1], "w");
		gid_t g = IT_GROUP;
		if (setgroups(1, &g) != 0 || setgid(IT_AGENT_UID) != 0 || setuid(IT_AGENT_UID) != 0)
			_exit(3);
		if (pcs_connect(&opts, &c, &err) != 0) {
			fprintf(out, "connect %s %s", pcs_status_name(err.code), err.message);
			_exit(1);
		}
		fprintf(out, "role=%s;", pcs_client_role(c));
		if (pcs_resolve(c, NULL, refs, 2, &v, &err) != 0) {
			fprintf(out, "resolve %s %s", pcs_status_name(err.code), err.message);
			_exit(1);
		}
		fprintf(out, "%s@%u|%s@%u;", v[0].data, v[0].version, v[1].data, v[1].version);
		pcs_values_free(v, 2);
		if (pcs_get_env(c, NULL, &env, &count, &err) != 0) {
			fprintf(out, "env %s %s", pcs_status_name(err.code), err.message);
			_exit(1);
		}
		for (size_t i = 0; i < count; i++)
			fprintf(out, "%s=%s@%u;", env[i].name, env[i].value, env[i].version);
		pcs_env_free(env, count);
		/* A bad reference fails before anything is sent. */
		const char *bad[] = { "pcs:Acme/x" };
		int r = pcs_resolve(c, NULL, bad, 1, &v, &err);
		fprintf(out, "bad=%s", r == -PCS_INVALID_ARGUMENT ? "INVALID_ARGUMENT" : "?");
		pcs_close(c);
		fclose(out);
		_exit(0);
	}
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	while (n > 0 && (size_t)n < sizeof(buf) - 1) {
		ssize_t m = read(fds[0], buf + n, sizeof(buf) - 1 - (size_t)n);
		if (m <= 0)
			break;
		n += m;
	}
	buf[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_string_equal(buf, "role=agent;" PLAIN2 "@2|" PLAIN1 "@1;ANTHROPIC_API_KEY=" PLAIN2
	    "@2;PINNED_KEY=" PLAIN1 "@1;bad=INVALID_ARGUMENT");
}

static void test_agent_cannot_resolve_ungranted(void **state)
{
	struct it_result r;
	const char *other[] = { "X=pcs:acme/other", NULL };
	const char *v2[] = { "X=pcs:acme/anthropic-api-key@2", NULL };
	const char *missing[] = { "X=pcs:acme/does-not-exist", NULL };

	(void)state;
	PCCTL_OK(0, PLAIN3, "secret", "create", "acme/other");
	if (!need_root())
		skip();
	assert_int_equal(pcrun_print(IT_AGENT_UID, NULL, other, "$X", &r), 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	assert_non_null(strstr(r.err, "X=pcs:acme/other"));
	assert_null(strstr(r.err, PLAIN3));
	it_result_free(&r);
	/* Bound at latest, so a pinned version is a different grant. */
	assert_int_equal(pcrun_print(IT_AGENT_UID, NULL, v2, "$X", &r), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
	/* No probing: a missing secret looks the same as one not granted. */
	assert_int_equal(pcrun_print(IT_AGENT_UID, NULL, missing, "$X", &r), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
	/* Another agent's environment. */
	assert_int_equal(pcrun_print(IT_AGENT_UID, "acme/someone-else", NULL, "", &r), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
}

static void test_other_users_refused(void **state)
{
	struct it_result r;

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pcctl(IT_STRANGER_UID, NULL, &r, "whoami", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "UNAUTHENTICATED"));
	it_result_free(&r);
	assert_int_equal(pcctl(IT_STRANGER_UID, NULL, &r, "secret", "list", "acme", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "UNAUTHENTICATED"));
	it_result_free(&r);
	/* Not in the socket's group: the kernel refuses the connection. */
	assert_int_equal(pcctl(IT_OUTSIDER_UID, NULL, &r, "whoami", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
}

static void test_admin_and_operator_get_no_values(void **state)
{
	struct it_result r;
	const char *env[] = { "X=pcs:acme/anthropic-api-key", NULL };

	(void)state;
	assert_int_equal(pcrun_print(0, NULL, env, "$X", &r), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	assert_null(strstr(r.out, PLAIN2));
	it_result_free(&r);
	if (!need_root())
		skip();
	PCCTL_OK(0, NULL, "principal", "add", "--uid", "40013", "--role", "operator", "--company",
	    "acme");
	PCCTL_OK(IT_OPERATOR_UID, NULL, "secret", "show", "acme/anthropic-api-key");
	assert_int_equal(pcrun_print(IT_OPERATOR_UID, NULL, env, "$X", &r), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
	assert_int_equal(pcctl(IT_OPERATOR_UID, NULL, &r, "company", "create", "evil", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
}

static void test_launcher_resolves_for_agent(void **state)
{
	struct it_result r;

	(void)state;
	if (!need_root())
		skip();
	PCCTL_OK(0, NULL, "principal", "add", "--uid", "40014", "--role", "launcher", "--company",
	    "acme");
	assert_int_equal(pcrun_print(IT_AGENT2_UID, "acme/bot", NULL, "$ANTHROPIC_API_KEY", &r), 0);
	assert_string_equal(r.out, PLAIN2);
	it_result_free(&r);
	/* Without naming an agent a launcher has nothing to resolve for. */
	const char *env[] = { "X=pcs:acme/anthropic-api-key", NULL };
	assert_int_equal(pcrun_print(IT_AGENT2_UID, NULL, env, "$X", &r), 1);
	assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
	it_result_free(&r);
}

static void test_bad_input_gets_clear_errors(void **state)
{
	struct it_result r;
	char *big = malloc(70000);

	(void)state;
	assert_non_null(big);
	memset(big, 'a', 69999);
	big[69999] = '\0';
	assert_int_equal(pcctl(0, "v", &r, "secret", "create", "acme/Bad Name", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
	it_result_free(&r);
	assert_int_equal(pcctl(0, big, &r, "secret", "create", "acme/too-big", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
	assert_non_null(strstr(r.err, "65536"));
	it_result_free(&r);
	free(big);
	assert_int_equal(pcctl(0, "v", &r, "secret", "create", "nope/x", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "NOT_FOUND"));
	it_result_free(&r);
	assert_int_equal(pcctl(0, "v", &r, "secret", "create", "acme/other", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "ALREADY_EXISTS"));
	it_result_free(&r);
	assert_int_equal(pcctl(0, "v3", &r, "secret", "update", "acme/other", "--expected-version",
	    "7", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "ABORTED"));
	it_result_free(&r);
	assert_int_equal(pcctl(0, NULL, &r, "agent", "set-env", "acme/bot", "1BAD",
	    "pcs:acme/other", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
	it_result_free(&r);
	assert_int_equal(pcctl(0, NULL, &r, "agent", "create", "acme/root-agent", "--uid", "0",
	    (char *)NULL), 1);
	assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
	it_result_free(&r);
}

static void test_idempotent_update(void **state)
{
	struct it_result r;
	char *versions;
	char sql[256];

	(void)state;
	PCCTL_OK(0, "idem-value-1", "secret", "update", "acme/other", "--idempotency-token", "t-1");
	PCCTL_OK(0, "idem-value-1", "secret", "update", "acme/other", "--idempotency-token", "t-1");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM secret_versions v JOIN secrets s ON "
	    "s.id = v.secret_id WHERE s.name = 'other'");
	versions = pgtest_query_text(conninfo, sql);
	assert_non_null(versions);
	assert_string_equal(versions, "2");
	free(versions);
	assert_int_equal(pcctl(0, NULL, &r, "--json", "secret", "show", "acme/other", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "\"current_version\": 2"));
	it_result_free(&r);
}

static void test_every_call_audited(void **state)
{
	char *before, *after, *rows;
	struct it_result r;

	(void)state;
	before = pgtest_query_text(conninfo, "SELECT count(*) FROM audit_log");
	assert_int_equal(pcctl(0, NULL, &r, "secret", "list", "acme", (char *)NULL), 0);
	it_result_free(&r);
	assert_int_equal(pcctl(0, NULL, &r, "company", "create", "Bad!", (char *)NULL), 1);
	it_result_free(&r);
	after = pgtest_query_text(conninfo, "SELECT count(*) FROM audit_log");
	assert_non_null(before);
	assert_non_null(after);
	/* Hello + ListSecrets, Hello + a refused CreateCompany. */
	assert_int_equal(atoi(after) - atoi(before), 4);
	free(before);
	free(after);
	rows = pgtest_query_text(conninfo, "SELECT count(*) FROM audit_log WHERE method = "
	    "'CreateCompany' AND status = 'INVALID_ARGUMENT'");
	assert_string_equal(rows, "1");
	free(rows);
	if (!it_is_root())
		return;
	rows = pgtest_query_text(conninfo, "SELECT count(*) FROM audit_log WHERE method = 'Resolve' "
	    "AND peer_uid = 40010 AND status = 'PERMISSION_DENIED'");
	assert_true(atoi(rows) >= 3);
	free(rows);
	rows = pgtest_query_text(conninfo, "SELECT count(*) FROM audit_log WHERE method = 'Resolve' "
	    "AND peer_uid = 40010 AND status = 'OK' AND principal = 'agent acme/bot'");
	assert_true(atoi(rows) >= 2);
	free(rows);
	rows = pgtest_query_text(conninfo, "SELECT count(*) FROM audit_log WHERE method = 'Hello' "
	    "AND peer_uid = 40011 AND status = 'UNAUTHENTICATED'");
	assert_true(atoi(rows) >= 1);
	free(rows);
	assert_int_equal(pcctl(0, NULL, &r, "--json", "audit", "list", "--limit", "5", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "\"method\""));
	it_result_free(&r);
}

static void test_protocol_garbage_closes_only_that_connection(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	unsigned char zero[4] = { 0, 0, 0, 0 }, buf[256];
	struct it_result r;
	ssize_t n, total = 0;
	int fd;

	(void)state;
	memcpy(sa.sun_path, D.socket, strlen(D.socket) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, zero, 4), 4);
	while ((n = read(fd, buf + total, sizeof(buf) - (size_t)total)) > 0)
		total += n;
	close(fd);
	/* One error frame (header + a Reply naming the problem), then the daemon hung up. */
	assert_true(total > 4);
	assert_true(it_mem_contains((char *)buf, (size_t)total, "frame length 0", 14));
	assert_int_equal(pcctl(0, NULL, &r, "status", (char *)NULL), 0);
	it_result_free(&r);
}

static void test_second_instance_shares_database(void **state)
{
	struct it_daemon d2;
	struct it_result r;
	char *live = NULL;

	(void)state;
	assert_int_equal(it_daemon_start(&d2, conninfo, D.keyfile), 0);
	if (it_is_root()) {
		const char *argv[] = { it_path("client/pcrun"), "--", "/bin/sh", "-c",
			"printf '%s' \"$K\"", NULL };
		const char *env[] = { "K=pcs:acme/anthropic-api-key", NULL };
		assert_int_equal(it_run(IT_AGENT_UID, d2.socket, env, NULL, argv, &r), 0);
		assert_int_equal(r.status, 0);
		assert_string_equal(r.out, PLAIN2);
		it_result_free(&r);
	}
	live = pgtest_query_text(conninfo, "SELECT count(DISTINCT instance_id) FROM audit_log");
	assert_true(atoi(live) >= 2);
	free(live);
	assert_int_equal(it_daemon_stop(&d2), 0);
	it_daemon_cleanup(&d2);
}

static void test_wrong_or_unsafe_master_key_refused(void **state)
{
	char *err = NULL, key[160];

	(void)state;
	/* A different key for a database that already has secrets. */
	assert_int_equal(it_daemon_start_fails(conninfo, NULL, &err), 1);
	assert_non_null(err);
	assert_non_null(strstr(err, "not the key this database was initialised with"));
	free(err);
	/* The right key, readable by others. */
	snprintf(key, sizeof(key), "%s/loose.key", D.dir);
	{
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "cp '%.128s' '%.160s' && chmod 0644 '%.160s'", D.keyfile,
		    key, key);
		assert_int_equal(system(cmd), 0);
	}
	assert_int_equal(it_daemon_start_fails(conninfo, key, &err), 1);
	assert_non_null(strstr(err, "chmod 600"));
	free(err);
	/* Missing key file. */
	assert_int_equal(it_daemon_start_fails(conninfo, "/nonexistent/master.key", &err), 1);
	assert_non_null(strstr(err, "master key"));
	free(err);
}

static void test_live_socket_not_stolen(void **state)
{
	pid_t pid;
	int status, fd;
	char log[200];

	(void)state;
	snprintf(log, sizeof(log), "%s/steal.log", D.dir);
	if ((pid = fork()) == 0) {
		if ((fd = open(log, O_WRONLY | O_CREAT, 0600)) >= 0)
			dup2(fd, STDERR_FILENO);
		execl(it_path("server/pcsecretd"), "pcsecretd", "--socket", D.socket, "--database-url",
		    conninfo, "--master-key-file", D.keyfile, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
	assert_int_equal(it_file_contains(log, "already serving", 15), 1);
}

static void test_no_plaintext_in_dump_log_or_outputs(void **state)
{
	const char *plains[] = { PLAIN1, PLAIN2, PLAIN3 };
	char cmd[1024], dump[200], hex[128];

	(void)state;
	snprintf(dump, sizeof(dump), "%s/dump.sql", D.dir);
	snprintf(cmd, sizeof(cmd), "pg_dump -d '%s' > '%s'", conninfo, dump);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(it_file_contains(dump, "audit_log", 9), 1); /* the dump is real */
	for (size_t i = 0; i < 3; i++) {
		size_t len = strlen(plains[i]);
		for (size_t j = 0; j < len; j++)
			snprintf(hex + 2 * j, 3, "%02x", (unsigned char)plains[i][j]);
		assert_int_equal(it_file_contains(dump, plains[i], len), 0);
		assert_int_equal(it_file_contains(dump, hex, 2 * len), 0);
		assert_int_equal(it_file_contains(D.log, plains[i], len), 0);
		assert_false(it_mem_contains(admin_output, admin_output_len, plains[i], len));
	}
	/* The log is real too, and at debug level. */
	assert_int_equal(it_file_contains(D.log, "event=call", 10), 1);
}

static void test_sigterm_exits_cleanly(void **state)
{
	struct stat st;

	(void)state;
	assert_int_equal(it_daemon_stop(&D), 0);
	assert_int_equal(stat(D.socket, &st), -1);
	assert_int_equal(errno, ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walkthrough_setup),
		cmocka_unit_test(test_pcrun_as_agent),
		cmocka_unit_test(test_rotation_latest_and_pinned),
		cmocka_unit_test(test_sdk_resolve_and_env),
		cmocka_unit_test(test_agent_cannot_resolve_ungranted),
		cmocka_unit_test(test_other_users_refused),
		cmocka_unit_test(test_admin_and_operator_get_no_values),
		cmocka_unit_test(test_launcher_resolves_for_agent),
		cmocka_unit_test(test_bad_input_gets_clear_errors),
		cmocka_unit_test(test_idempotent_update),
		cmocka_unit_test(test_every_call_audited),
		cmocka_unit_test(test_protocol_garbage_closes_only_that_connection),
		cmocka_unit_test(test_second_instance_shares_database),
		cmocka_unit_test(test_wrong_or_unsafe_master_key_refused),
		cmocka_unit_test(test_live_socket_not_stolen),
		cmocka_unit_test(test_no_plaintext_in_dump_log_or_outputs),
		cmocka_unit_test(test_sigterm_exits_cleanly),
	};
	return cmocka_run_group_tests_name("e2e", tests, setup, teardown);
}
