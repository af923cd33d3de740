/*
 * Attacks from the security issue, performed end to end with real Unix users (useradd here,
 * userdel after) against the real daemon, pcctl and pcrun. Each test fails if its attack works
 * again:
 *  - an operator binds LD_PRELOAD (or another name that decides what runs) to a secret, so the
 *    launcher's pcrun would load the operator's library: refused by the daemon and audited;
 *    refused by pcrun from its environment, from --env-json and from a binding already in the
 *    database, and the program never runs;
 *  - a user binds the socket path first in a directory others may write to: pcctl, pcrun and
 *    the SDK send it nothing, and pcsecretd refuses such a directory;
 *  - a master key file owned by another user: pcsecretd refuses to start, saying why;
 *  - descriptors: the program pcrun starts inherits no socket or file from it.
 * Needs root; skipped otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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

#include "accounts.h"
#include "it.h"
#include "keyfile.h"
#include "pgtest.h"

#define EVIL_PATH "/nonexistent/pcsh-evil.so"
#define PLAINTEXT "HOSTILE-PLAINTEXT-6b1f0e93"
#define OK_VALUE "HOSTILE-OK-2c7d"
#define RAN "CHILD-RAN"

enum who { OPERATOR, LAUNCHER, AGENT, IMPOSTOR, NWHO };
static struct acct_user accts[NWHO] = {
	{ .name = "pcsh-op", .groups = "pcsh-ops" },
	{ .name = "pcsh-launch", .groups = "" },
	{ .name = "pcsh-agent", .groups = "" },
	/* Not in IT_GROUP: every user here but the impostor may connect to the daemon. */
	{ .name = "pcsh-impostor", .groups = "", .outside = 1 },
};
static const char *const own_groups[] = { "pcsh-ops", NULL };
static struct acct_set accounts = { accts, NWHO, own_groups, "pcsh-clients", 0 };
static gid_t ops_gid;
static struct it_daemon D;
static char conninfo[512], prefix[64], bin[128], world[64];

#define PREFIX_TEMPLATE "/tmp/pcsh-XXXXXX"

/*
 * Runs bin/<prog> args... as user w through runuser (so its supplementary groups are its
 * own), or as root for w == NWHO, with socket as PCSECRET_SOCKET. Returns the exit status.
 */
static int run_as(int w, const char *socket, const char *stdin_data, const char *const *env,
    struct it_result *r, const char *prog, ...)
{
	va_list ap;
	int rc;

	va_start(ap, prog);
	rc = acct_runv(w == NWHO ? NULL : accts[w].name, bin, socket, env, stdin_data, r, prog,
	    ap);
	va_end(ap);
	assert_int_equal(rc, 0);
	return r->status;
}

#define ROOT NWHO

/*
 * Runs pcrun directly as uid (no runuser in between, whose own loader would act on an
 * LD_PRELOAD in the environment), with env and args.
 */
static int pcrun_as(uid_t uid, const char *socket, const char *const *env, struct it_result *r,
    const char *const *args)
{
	const char *argv[24];
	char path[192];
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/pcrun", bin);
	argv[n++] = path;
	for (size_t i = 0; args[i] != NULL && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	assert_int_equal(it_run(uid, socket, env, NULL, argv, r), 0);
	return r->status;
}

static long audit_count(const char *where)
{
	char sql[768], *rows;
	long n;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_log WHERE %s", where);
	rows = pgtest_query_text(conninfo, sql);
	assert_non_null(rows);
	n = atol(rows);
	free(rows);
	return n;
}

static int setup(void **state)
{
	struct it_result r;
	char gid[16], uid_launch[16], uid_agent[16];

	(void)state;
	if (!it_is_root())
		return 0;
	if (acct_make(&accounts) != 0 || (ops_gid = acct_gid("pcsh-ops")) == (gid_t)-1) {
		fprintf(stderr, "cannot create test accounts\n");
		return -1;
	}
	if (acct_install(PREFIX_TEMPLATE, prefix, sizeof(prefix), bin, sizeof(bin), 1) != 0)
		return -1;
	/* What the attacks need: a directory every user may create names in. */
	snprintf(world, sizeof(world), "/tmp/pcsh-world-XXXXXX");
	if (mkdtemp(world) == NULL || chmod(world, 01777) != 0)
		return -1;
	if (it_database("it_hostile", conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	snprintf(gid, sizeof(gid), "%u", (unsigned)ops_gid);
	snprintf(uid_launch, sizeof(uid_launch), "%u", (unsigned)accts[LAUNCHER].uid);
	snprintf(uid_agent, sizeof(uid_agent), "%u", (unsigned)accts[AGENT].uid);
	const char *cmds[][9] = {
		{ "company", "create", "acme" },
		{ "principal", "add", "--gid", gid, "--role", "operator", "--company", "acme" },
		{ "principal", "add", "--uid", uid_launch, "--role", "launcher", "--company", "acme" },
		{ "agent", "create", "acme/bot", "--uid", uid_agent },
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char **a = cmds[i];
		if (run_as(ROOT, D.socket, NULL, NULL, &r, "pcctl", a[0], a[1], a[2], a[3], a[4],
		    a[5], a[6], a[7], a[8]) != 0) {
			fprintf(stderr, "setup %s %s failed: %s\n", a[0], a[1], r.err);
			return -1;
		}
		it_result_free(&r);
	}
	/* The operator's secret: the path of "their library". */
	if (run_as(OPERATOR, D.socket, EVIL_PATH, NULL, &r, "pcctl", "secret", "create", "acme/x",
	    (char *)NULL) != 0 ||
	    (it_result_free(&r), run_as(OPERATOR, D.socket, OK_VALUE, NULL, &r, "pcctl", "secret",
	    "create", "acme/ok", (char *)NULL)) != 0 ||
	    /* Granted under harmless names, so the references below would resolve if allowed. */
	    (it_result_free(&r), run_as(OPERATOR, D.socket, NULL, NULL, &r, "pcctl", "agent",
	    "set-env", "acme/bot", "SAFE_X", "pcs:acme/x", (char *)NULL)) != 0 ||
	    (it_result_free(&r), run_as(OPERATOR, D.socket, NULL, NULL, &r, "pcctl", "agent",
	    "set-env", "acme/bot", "SAFE_OK", "pcs:acme/ok", (char *)NULL)) != 0) {
		fprintf(stderr, "setup failed: %s\n", r.err);
		return -1;
	}
	it_result_free(&r);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!it_is_root())
		return 0;
	it_daemon_cleanup(&D);
	acct_uninstall(PREFIX_TEMPLATE, prefix);
	if (strncmp(world, "/tmp/pcsh-world-", 16) == 0)
		acct_sh("rm -rf '%s'", world);
	acct_remove(&accounts);
	return 0;
}

/* ---- 1. Code execution through a binding ---- */

static void test_daemon_refuses_loader_bindings(void **state)
{
	static const char *const names[] = { "LD_PRELOAD", "LD_LIBRARY_PATH", "ld_preload",
		"BASH_ENV", "PATH", "NODE_OPTIONS", "PYTHONSTARTUP", "GIT_SSH_COMMAND" };
	struct it_result r;
	char where[256], want[96];
	long before;

	(void)state;
	if (!it_is_root())
		skip();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(where, sizeof(where), "peer_uid = %u AND method = 'SetAgentEnv' AND "
		    "status = 'INVALID_ARGUMENT' AND message LIKE '%%%s%%'", (unsigned)accts[OPERATOR].uid,
		    names[i]);
		before = audit_count(where);
		/* The operator (by group) may bind: the same call with SAFE_X succeeded in setup. */
		assert_int_equal(run_as(OPERATOR, D.socket, NULL, NULL, &r, "pcctl", "agent",
		    "set-env", "acme/bot", names[i], "pcs:acme/x", (char *)NULL), 1);
		snprintf(want, sizeof(want), "environment variable %s may not be set from a secret",
		    names[i]);
		if (strstr(r.err, "INVALID_ARGUMENT") == NULL || strstr(r.err, want) == NULL)
			fail_msg("set-env %s: exit %d, stderr: %s", names[i], r.status, r.err);
		it_result_free(&r);
		/* Refused by the daemon, not by pcctl: the refusal has its audit row. */
		assert_int_equal(audit_count(where), before + 1);
	}
	/* Nothing was bound. */
	assert_int_equal(run_as(OPERATOR, D.socket, NULL, NULL, &r, "pcctl", "agent", "show",
	    "acme/bot", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "SAFE_X"));
	assert_null(strstr(r.out, "LD_PRELOAD"));
	assert_null(strstr(r.out, "ld_preload"));
	it_result_free(&r);
}

static void assert_refused_before_running(const struct it_result *r, const char *name)
{
	char want[96];

	snprintf(want, sizeof(want), "environment variable %s may not be set from a secret", name);
	if (r->status != 1 || strstr(r->err, want) == NULL || strstr(r->out, RAN) != NULL)
		fail_msg("exit %d, stdout: %s, stderr: %s", r->status, r->out, r->err);
	/* Never the value: the operator's path stays out of the message. */
	assert_null(strstr(r->err, EVIL_PATH));
}

static void test_pcrun_refuses_loader_references(void **state)
{
	const char *const run[] = { "--agent", "acme/bot", "--", "/bin/sh", "-c",
		"echo " RAN " \"$SAFE_OK\"", NULL };
	const char *const run_self[] = { "--", "/bin/sh", "-c", "echo " RAN, NULL };
	const char *const env_ld[] = { "LD_PRELOAD=pcs:acme/x", NULL };
	const char *const env_bash[] = { "BASH_ENV=pcs:acme/x", "X=pcs:acme/ok", NULL };
	const char *const env_ok[] = { "X=pcs:acme/x", NULL };
	struct it_result r;
	char where[128];
	long before;

	(void)state;
	if (!it_is_root())
		skip();
	/* The control: the same reference under another name resolves and the program runs. */
	assert_int_equal(pcrun_as(accts[LAUNCHER].uid, D.socket, env_ok, &r, run), 0);
	assert_non_null(strstr(r.out, RAN " " OK_VALUE));
	it_result_free(&r);

	snprintf(where, sizeof(where), "peer_uid IN (%u, %u)", (unsigned)accts[LAUNCHER].uid,
	    (unsigned)accts[AGENT].uid);
	before = audit_count(where);
	/* The launcher, for the agent, with the reference in its own environment. */
	pcrun_as(accts[LAUNCHER].uid, D.socket, env_ld, &r, run);
	assert_refused_before_running(&r, "LD_PRELOAD");
	it_result_free(&r);
	pcrun_as(accts[LAUNCHER].uid, D.socket, env_bash, &r, run);
	assert_refused_before_running(&r, "BASH_ENV");
	it_result_free(&r);
	/* The agent itself. */
	pcrun_as(accts[AGENT].uid, D.socket, env_ld, &r, run_self);
	assert_refused_before_running(&r, "LD_PRELOAD");
	it_result_free(&r);
	/* Refused before connecting: the daemon was not even asked. */
	assert_int_equal(audit_count(where), before);
}

static void write_json(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0644), 0);
}

static void test_pcrun_refuses_loader_names_in_env_json(void **state)
{
	static const char *const docs[] = {
		"{\"LD_PRELOAD\": \"pcs:acme/x\"}",
		"{\"OK\": \"pcs:acme/ok\", \"LD_PRELOAD\": {\"type\": \"secret_ref\", "
		"\"secretId\": \"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\"}}",
		/* A literal is refused too: the file may come from someone else. */
		"{\"LD_PRELOAD\": \"" EVIL_PATH "\"}",
	};
	char path[128];
	const char *const run[] = { "--env-json", path, "--agent", "acme/bot", "--", "/bin/sh",
		"-c", "echo " RAN, NULL };
	struct it_result r;

	(void)state;
	if (!it_is_root())
		skip();
	snprintf(path, sizeof(path), "%s/env.json", prefix);
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		write_json(path, docs[i]);
		pcrun_as(accts[LAUNCHER].uid, D.socket, NULL, &r, run);
		assert_refused_before_running(&r, "LD_PRELOAD");
		assert_non_null(strstr(r.err, path));
		it_result_free(&r);
	}
	/* The control: the same file without the loader variable runs the program. */
	write_json(path, "{\"OK\": \"pcs:acme/ok\"}");
	assert_int_equal(pcrun_as(accts[LAUNCHER].uid, D.socket, NULL, &r, run), 0);
	assert_non_null(strstr(r.out, RAN));
	it_result_free(&r);
}

static void test_pcrun_refuses_an_old_binding(void **state)
{
	const char *const run[] = { "--agent", "acme/bot", "--", "/bin/sh", "-c",
		"echo " RAN " \"$LD_PRELOAD\"", NULL };
	struct it_result r;

	(void)state;
	if (!it_is_root())
		skip();
	/* A row written before the daemon refused such names, straight into the database. */
	assert_int_equal(pgtest_exec(conninfo, "SELECT pcs_set_agent_env('acme', 'bot', "
	    "'LD_PRELOAD', NULL, 'acme', 'x', NULL, 'uid 0 (before the fix)')"), 0);
	pcrun_as(accts[LAUNCHER].uid, D.socket, NULL, &r, run);
	assert_refused_before_running(&r, "LD_PRELOAD");
	assert_non_null(strstr(r.err, "acme/bot"));
	assert_non_null(strstr(r.err, "unset-env"));
	it_result_free(&r);
	pcrun_as(accts[AGENT].uid, D.socket, NULL, &r, run);
	assert_refused_before_running(&r, "LD_PRELOAD");
	it_result_free(&r);
	/* The operator can still remove it, and then the agent runs again. */
	assert_int_equal(run_as(OPERATOR, D.socket, NULL, NULL, &r, "pcctl", "agent", "unset-env",
	    "acme/bot", "LD_PRELOAD", (char *)NULL), 0);
	it_result_free(&r);
	assert_int_equal(pcrun_as(accts[LAUNCHER].uid, D.socket, NULL, &r, run), 0);
	assert_non_null(strstr(r.out, RAN));
	it_result_free(&r);
}

/* ---- 2. A user serving the socket path ---- */

struct impostor {
	pid_t pid;
	int stop;    /* closing it tells the impostor to report and exit */
	int result;  /* "connections bytes\n" */
};

/* Accepts every connection on fd and counts what arrives until stop is closed. */
static void impostor_serve(int fd, int stop, int result)
{
	struct pollfd p[2] = { { fd, POLLIN, 0 }, { stop, POLLIN, 0 } };
	struct pollfd cp;
	unsigned long conns = 0, bytes = 0;
	char buf[4096], line[64];
	ssize_t n;
	int cfd;

	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		/* Connections still queued are taken before stopping. */
		if (!(p[0].revents & POLLIN)) {
			if (p[1].revents != 0)
				break;
			continue;
		}
		if ((cfd = accept(fd, NULL, NULL)) < 0)
			continue;
		conns++;
		/* Whatever the client sends at once, without ever answering it. */
		cp.fd = cfd;
		cp.events = POLLIN;
		while (poll(&cp, 1, 500) > 0 && (n = read(cfd, buf, sizeof(buf))) > 0)
			bytes += (unsigned long)n;
		close(cfd);
	}
	n = snprintf(line, sizeof(line), "%lu %lu\n", conns, bytes);
	if (write(result, line, (size_t)n) != n)
		_exit(1);
}

static void impostor_start(struct impostor *im, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ready[2], stop[2], result[2], fd;
	char c = 'e';

	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(stop, O_CLOEXEC), 0);
	assert_int_equal(pipe2(result, O_CLOEXEC), 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	im->pid = fork();
	assert_true(im->pid >= 0);
	if (im->pid == 0) {
		close(ready[0]);
		close(stop[1]);
		close(result[0]);
		/* A plain user: not root, not in the socket's group. */
		if (setgroups(0, NULL) != 0 || setgid(accts[IMPOSTOR].gid) != 0 ||
		    setuid(accts[IMPOSTOR].uid) != 0)
			_exit(126);
		umask(0);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0 &&
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 16) == 0)
			c = 'r';
		if (write(ready[1], &c, 1) != 1 || c != 'r')
			_exit(1);
		impostor_serve(fd, stop[0], result[1]);
		_exit(0);
	}
	close(ready[1]);
	close(stop[0]);
	close(result[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	assert_int_equal(c, 'r');
	im->stop = stop[1];
	im->result = result[0];
}

static void impostor_stop(struct impostor *im, unsigned long *conns, unsigned long *bytes)
{
	char line[64] = "";
	ssize_t n;
	int status;

	close(im->stop);
	n = read(im->result, line, sizeof(line) - 1);
	close(im->result);
	assert_int_equal(waitpid(im->pid, &status, 0), im->pid);
	assert_true(n > 0);
	line[n] = '\0';
	assert_int_equal(sscanf(line, "%lu %lu", conns, bytes), 2);
}

static void assert_refused_impostor(const struct it_result *r, const char *path)
{
	char want[64];

	snprintf(want, sizeof(want), "served by uid %u", (unsigned)accts[IMPOSTOR].uid);
	if (r->status != 1 || strstr(r->err, "PERMISSION_DENIED") == NULL ||
	    strstr(r->err, path) == NULL || strstr(r->err, want) == NULL)
		fail_msg("exit %d, stderr: %s", r->status, r->err);
	assert_null(strstr(r->err, PLAINTEXT));
	assert_null(strstr(r->out, PLAINTEXT));
}

static void test_clients_send_nothing_to_an_impostor(void **state)
{
	const char *const run[] = { "--", "/bin/sh", "-c", "echo " RAN, NULL };
	const char *const env_ref[] = { "X=pcs:acme/ok", NULL };
	const char *const env_trust[] = { "PCSECRET_SERVER_UID=pcsh-impostor", NULL };
	struct impostor im;
	struct it_result r;
	unsigned long conns, bytes;
	char path[128];

	(void)state;
	if (!it_is_root())
		skip();
	/* The path clients will use, taken first by pcsh-impostor in a 1777 directory. */
	snprintf(path, sizeof(path), "%s/pcsecretd.sock", world);
	(void)unlink(path);
	impostor_start(&im, path);
	/* root creating a secret: the plaintext is on pcctl's stdin, ready to go. */
	run_as(ROOT, path, PLAINTEXT, NULL, &r, "pcctl", "secret", "create", "acme/k",
	    (char *)NULL);
	assert_refused_impostor(&r, path);
	it_result_free(&r);
	/* The same with --socket, and for an operator (its own uid is not the impostor's). */
	run_as(ROOT, NULL, PLAINTEXT, NULL, &r, "pcctl", "--socket", path, "secret", "create",
	    "acme/k", (char *)NULL);
	assert_refused_impostor(&r, path);
	it_result_free(&r);
	run_as(OPERATOR, path, PLAINTEXT, NULL, &r, "pcctl", "secret", "update", "acme/ok",
	    (char *)NULL);
	assert_refused_impostor(&r, path);
	it_result_free(&r);
	/* pcrun and the SDK's example: nothing asked, nothing run. */
	pcrun_as(accts[LAUNCHER].uid, path, env_ref, &r, run);
	assert_refused_impostor(&r, path);
	assert_null(strstr(r.out, RAN));
	it_result_free(&r);
	run_as(ROOT, path, NULL, NULL, &r, "pcsecret-resolve", "pcs:acme/ok", (char *)NULL);
	assert_int_not_equal(r.status, 0);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
	impostor_stop(&im, &conns, &bytes);
	/* The clients did reach the impostor, and told it nothing at all. */
	assert_true(conns >= 5);
	assert_int_equal(bytes, 0);
	assert_int_equal(unlink(path), 0);

	/*
	 * The control: trusting the impostor's uid by name (PCSECRET_SERVER_UID) gets the
	 * handshake sent, so the zero above is the check at work, not a broken impostor.
	 */
	impostor_start(&im, path);
	run_as(ROOT, path, NULL, env_trust, &r, "pcctl", "status", (char *)NULL);
	assert_int_not_equal(r.status, 0);
	assert_null(strstr(r.err, "served by uid"));
	it_result_free(&r);
	impostor_stop(&im, &conns, &bytes);
	assert_int_equal(conns, 1);
	assert_true(bytes > 0);
	unlink(path);
}

static void test_daemon_refuses_a_socket_directory_others_may_write(void **state)
{
	static const struct {
		mode_t mode;
		int impostor_owns;
		const char *want;
	} cases[] = {
		{ 01777, 0, "mode 1777" },   /* /tmp-like: sticky does not help */
		{ 0777, 0, "mode 0777" },
		{ 0775, 0, "mode 0775" },    /* the group would be the clients */
		{ 0755, 1, "owner uid" },    /* its owner could replace the socket */
	};
	struct it_daemon_opts o = { 0 };
	struct it_daemon d;
	char dir[64], sock[128], want[64];

	(void)state;
	if (!it_is_root())
		skip();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(dir, sizeof(dir), "/tmp/pcsh-dir-XXXXXX");
		assert_non_null(mkdtemp(dir));
		assert_int_equal(chmod(dir, cases[i].mode), 0);
		if (cases[i].impostor_owns)
			assert_int_equal(chown(dir, accts[IMPOSTOR].uid, accts[IMPOSTOR].gid), 0);
		snprintf(sock, sizeof(sock), "%s/pcsecretd.sock", dir);
		o.socket = sock;
		assert_int_not_equal(it_daemon_start_opts(&d, conninfo, D.keyfile, &o), 0);
		assert_int_equal(it_file_contains(d.log, "socket directory", 16), 1);
		assert_int_equal(it_file_contains(d.log, dir, strlen(dir)), 1);
		assert_int_equal(it_file_contains(d.log, cases[i].want, strlen(cases[i].want)), 1);
		if (cases[i].impostor_owns) {
			snprintf(want, sizeof(want), "owner uid %u", (unsigned)accts[IMPOSTOR].uid);
			assert_int_equal(it_file_contains(d.log, want, strlen(want)), 1);
		}
		it_daemon_cleanup(&d);
		/* The control: the same directory, root's and 0755, is fine. */
		assert_int_equal(chown(dir, 0, 0), 0);
		assert_int_equal(chmod(dir, 0755), 0);
		assert_int_equal(it_daemon_start_opts(&d, conninfo, D.keyfile, &o), 0);
		assert_int_equal(it_daemon_stop(&d), 0);
		it_daemon_cleanup(&d);
		assert_int_equal(acct_sh("rm -rf '%s'", dir), 0);
	}
}

/* ---- 3. A key file owned by another user ---- */

static void test_daemon_refuses_a_key_owned_by_another_user(void **state)
{
	char key[128], *err = NULL, want[64];
	pcs_error kerr;

	(void)state;
	if (!it_is_root())
		skip();
	snprintf(key, sizeof(key), "%s/other.key", prefix);
	assert_int_equal(keyfile_create(key, &kerr), 0);
	assert_int_equal(chown(key, accts[IMPOSTOR].uid, accts[IMPOSTOR].gid), 0);
	assert_int_equal(it_daemon_start_fails(conninfo, key, &err), 1);
	assert_non_null(err);
	snprintf(want, sizeof(want), "owned by uid %u", (unsigned)accts[IMPOSTOR].uid);
	if (strstr(err, key) == NULL || strstr(err, want) == NULL)
		fail_msg("start-up said: %s", err);
	free(err);
	unlink(key);
}

/* ---- 4. Descriptors ---- */

/* The descriptor numbers in a LIST_FDS output, "3 4 10 " (the same order as listed). */
static void fd_numbers(const char *out, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (const char *line = out; *line != '\0' && o + 16 < size; ) {
		o += (size_t)snprintf(buf + o, size - o, "%ld ", strtol(line, NULL, 10));
		if ((line = strchr(line, '\n')) == NULL)
			break;
		line++;
	}
}

/* Lists the shell's descriptors above 2 with what they are, one "N TARGET" a line. */
#define LIST_FDS "for f in /proc/$$/fd/*; do n=${f##*/}; [ \"$n\" -gt 2 ] && " \
	"echo \"$n $(readlink \"$f\")\"; done; true"

static void test_the_program_inherits_no_descriptor(void **state)
{
	char path[128];
	const char *const run[] = { "--env-json", path, "--agent", "acme/bot", "--", "/bin/sh",
		"-c", LIST_FDS, NULL };
	const char *const direct[] = { "/bin/sh", "-c", LIST_FDS, NULL };
	const char *const env_ok[] = { "X=pcs:acme/ok", NULL };
	struct it_result base, r;
	char want[256], got[256];

	(void)state;
	if (!it_is_root())
		skip();
	snprintf(path, sizeof(path), "%s/env.json", prefix);
	write_json(path, "{\"OK\": \"pcs:acme/ok\", \"LIT\": \"literal\"}");
	/* What the test harness itself hands down, without pcrun in between. */
	assert_int_equal(it_run(accts[LAUNCHER].uid, D.socket, env_ok, NULL, direct, &base), 0);
	assert_int_equal(base.status, 0);
	/* pcrun opened the JSON file and a connection, and the program got neither. */
	assert_int_equal(pcrun_as(accts[LAUNCHER].uid, D.socket, env_ok, &r, run), 0);
	fd_numbers(base.out, want, sizeof(want));
	fd_numbers(r.out, got, sizeof(got));
	if (strstr(r.out, "socket:") != NULL || strstr(r.out, "env.json") != NULL ||
	    strcmp(got, want) != 0)
		fail_msg("pcrun's program has descriptors:\n%s\nwithout pcrun:\n%s", r.out,
		    base.out);
	it_result_free(&r);
	it_result_free(&base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_daemon_refuses_loader_bindings),
		cmocka_unit_test(test_pcrun_refuses_loader_references),
		cmocka_unit_test(test_pcrun_refuses_loader_names_in_env_json),
		cmocka_unit_test(test_pcrun_refuses_an_old_binding),
		cmocka_unit_test(test_clients_send_nothing_to_an_impostor),
		cmocka_unit_test(test_daemon_refuses_a_socket_directory_others_may_write),
		cmocka_unit_test(test_daemon_refuses_a_key_owned_by_another_user),
		cmocka_unit_test(test_the_program_inherits_no_descriptor),
	};
	/* Every test here needs root: ctest reports the binary skipped (SKIP_RETURN_CODE). */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (real Unix accounts)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("hostile_client", tests, setup, teardown);
}
