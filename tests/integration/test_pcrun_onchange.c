/*
 * pcrun --on-change (docs/cli.md, "Following changes"), run as the agent's uid
 * against a real daemon, with the changes made by an admin connection meanwhile:
 *  - restart: a program printing its key at each start is started again exactly once after
 *    an update, with the new value and PCSECRET_VERSIONS; a staged update (no_promote) starts
 *    nothing; SIGUSR1 sent to pcrun reaches the program; a deleted secret is named on stderr
 *    and the program keeps running; a program that exits by itself with 3 makes pcrun exit 3;
 *  - signal:HUP with --files: the program's HUP handler reads NAME_FILE and finds the new
 *    value; it is not started again;
 *  - exit: after an update pcrun stops the program and exits 75;
 *  - --grace: a program ignoring SIGTERM is killed after the grace period, then restarted;
 *  - usage errors (signal: without --files, a bad mode or signal, --grace alone): exit 2.
 * Needs root (the agent's uid).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "wire.h"

#define DB "it_pcrun_onchange"
#define AGENT_UID IT_AGENT_UID /* acme/bot */
#define WAIT_MS 15000

static struct it_daemon D;
static char conninfo[512];
static char workdir[64]; /* the programs' output: root's files */
static struct itconn_env E;
static struct itconn adm;

static void create_secret(const char *name, const char *value)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)(uintptr_t)value;
	q.value.len = strlen(value);
	itconn_admin_ok(&adm, "CreateSecret", &q.base);
}

static void update(const char *name, const char *value, int no_promote)
{
	Pcsecret__V1__UpdateSecretRequest q = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)(uintptr_t)value;
	q.value.len = strlen(value);
	q.no_promote = no_promote;
	itconn_admin_ok(&adm, "UpdateSecret", &q.base);
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

/* A running pcrun: its pid and where its stdout and stderr go. */
struct run {
	pid_t pid;
	char out[128];
	char err[128];
};

/* Starts pcrun as the agent with env (NULL-terminated) and its arguments (NULL-terminated). */
static void start(struct run *p, const char *tag, const char *const *env, ...)
{
	const char *argv[32], *envp[16];
	char sock[200];
	va_list ap;
	size_t n = 0, m = 0;
	int fd;

	snprintf(p->out, sizeof(p->out), "%s/%s.out", workdir, tag);
	snprintf(p->err, sizeof(p->err), "%s/%s.err", workdir, tag);
	argv[n++] = it_path("client/pcrun");
	va_start(ap, env);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	snprintf(sock, sizeof(sock), "PCSECRET_SOCKET=%s", D.socket);
	envp[m++] = "PATH=/usr/local/bin:/usr/bin:/bin";
	envp[m++] = sock;
	if (getenv("ASAN_OPTIONS") != NULL)
		envp[m++] = "ASAN_OPTIONS=detect_leaks=1";
	for (n = 0; env != NULL && env[n] != NULL && m < 15; n++)
		envp[m++] = env[n];
	envp[m] = NULL;
	assert_true((p->pid = fork()) >= 0);
	if (p->pid == 0) {
		gid_t g[1] = { IT_GROUP };

		if ((fd = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0 ||
		    dup2(fd, 1) < 0 ||
		    (fd = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		/* Its own process group: signals sent to the test's group do not reach it. */
		(void)setpgid(0, 0);
		if (setgroups(1, g) != 0 || setgid(AGENT_UID) != 0 || setuid(AGENT_UID) != 0)
			_exit(126);
		execve(argv[0], (char *const *)(uintptr_t)argv, (char *const *)(uintptr_t)envp);
		_exit(127);
	}
}

static char *slurp(const char *path)
{
	static char buf[65536];
	ssize_t n = 0;
	int fd;

	buf[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return buf;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int count(const char *path, const char *needle)
{
	const char *s = slurp(path);
	int c = 0;

	while ((s = strstr(s, needle)) != NULL) {
		c++;
		s += strlen(needle);
	}
	return c;
}

/* Waits until path holds needle n times; fails naming both files' text otherwise. */
static void wait_for(const struct run *p, const char *path, const char *needle, int n)
{
	int ms;

	for (ms = 0; ms < WAIT_MS; ms += 50) {
		if (count(path, needle) >= n)
			return;
		wire_sleep_ms(50);
	}
	fail_msg("waited for \"%s\" x%d in %s: out \"%s\"", needle, n, path, slurp(p->out));
}

/* pcrun's exit status within WAIT_MS (128 + signal when a signal ended it). */
static int finish(struct run *p)
{
	int status, ms;
	pid_t r;

	for (ms = 0; ms < WAIT_MS; ms += 50) {
		if ((r = waitpid(p->pid, &status, WNOHANG)) == p->pid) {
			p->pid = -1;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		wire_sleep_ms(50);
	}
	(void)kill(p->pid, SIGKILL);
	(void)waitpid(p->pid, &status, 0);
	p->pid = -1;
	fail_msg("pcrun did not exit; stderr \"%s\"", slurp(p->err));
	return -1;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	snprintf(workdir, sizeof(workdir), "/tmp/pcs-onchange-XXXXXX");
	if (mkdtemp(workdir) == NULL || chmod(workdir, 0755) != 0)
		return -1;
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	E.socket = D.socket;
	E.conninfo = conninfo;
	itconn_open(&E, &adm, 0, 1000000);
	cc.name = (char *)"acme";
	itconn_admin_ok(&adm, "CreateCompany", &cc.base);
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = AGENT_UID;
	itconn_admin_ok(&adm, "CreateAgent", &ca.base);
	create_secret("key", "restart-value-1");
	create_secret("hkey", "hup-value-1");
	create_secret("xkey", "exit-value-1");
	create_secret("gkey", "grace-value-1");
	create_secret("dkey", "deleted-value-1");
	bind("K", "key");
	bind("H", "hkey");
	bind("X", "xkey");
	bind("G", "gkey");
	bind("DK", "dkey");
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	wire_close(&adm.w);
	it_daemon_cleanup(&D);
	if (workdir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
		(void)!system(cmd);
	}
	return 0;
}

/* The daemon's feed needs a moment after the first watch; give every watch that moment. */
static void settle(void) { wire_sleep_ms(700); }

/*
 * restart: one start per real change, the new value and version; a staged version changes
 * nothing; SIGUSR1 reaches the program; SIGTERM ends both, reported as a shell does.
 */
static void test_restart(void **state)
{
	const char *env[] = { "K=pcs:acme/key", NULL };
	struct run p;
	const char *err;

	(void)state;
	start(&p, "restart", env, "--on-change", "restart", "--", "/bin/sh", "-c",
	    "echo \"start:$K:$PCSECRET_VERSIONS\"; trap 'echo got-usr1' USR1;"
	    " while :; do sleep 0.1; done",
	    NULL);
	wait_for(&p, p.out, "start:restart-value-1:K=1\n", 1);
	settle();

	update("key", "restart-value-staged", 1);
	wire_sleep_ms(1500);
	assert_int_equal(count(p.out, "start:"), 1);

	update("key", "restart-value-3", 0);
	wait_for(&p, p.out, "start:restart-value-3:K=3\n", 1);
	/* Exactly once, also after the debounce window and any late event. */
	wire_sleep_ms(1500);
	assert_int_equal(count(p.out, "start:"), 2);

	assert_int_equal(kill(p.pid, SIGUSR1), 0);
	wait_for(&p, p.out, "got-usr1", 1);

	assert_int_equal(kill(p.pid, SIGTERM), 0);
	assert_int_equal(finish(&p), 128 + SIGTERM);
	err = slurp(p.err);
	if (strstr(err, "K changed (version 1 -> 3): restarting the program") == NULL)
		fail_msg("stderr: \"%s\"", err);
	assert_null(strstr(err, "restart-value"));
}

/*
 * A change that cannot be delivered (the secret deleted) is named and the program keeps
 * running with what it has; a program that exits by itself ends pcrun with its status.
 */
static void test_failed_change_and_own_exit(void **state)
{
	Pcsecret__V1__DeleteSecretRequest q = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;
	const char *env[] = { "DK=pcs:acme/dkey", NULL };
	struct run p;
	const char *err;

	(void)state;
	start(&p, "deleted", env, "--on-change", "restart", "--", "/bin/sh", "-c",
	    "echo start; while :; do sleep 0.1; done", NULL);
	wait_for(&p, p.out, "start", 1);
	settle();
	q.company = (char *)"acme";
	q.name = (char *)"dkey";
	q.force = 1;
	itconn_admin_ok(&adm, "DeleteSecret", &q.base);
	wait_for(&p, p.err, "keeps running with what it has", 1);
	err = slurp(p.err);
	if (strstr(err, "cannot resolve DK=pcs:acme/dkey") == NULL)
		fail_msg("stderr: \"%s\"", err);
	assert_null(strstr(err, "deleted-value"));
	assert_int_equal(count(p.out, "start"), 1);
	assert_int_equal(kill(p.pid, 0), 0);
	assert_int_equal(kill(p.pid, SIGTERM), 0);
	assert_int_equal(finish(&p), 128 + SIGTERM);

	/* Its own exit: no restart, its status. */
	start(&p, "own-exit", env + 1, "--on-change", "restart", "--", "/bin/sh", "-c",
	    "echo start; sleep 0.5; exit 3", NULL);
	assert_int_equal(finish(&p), 3);
	assert_int_equal(count(p.out, "start"), 1);
}

/* signal:HUP with --files: the file holds the new value when HUP arrives; no restart. */
static void test_signal_files(void **state)
{
	const char *env[] = { "H=pcs:acme/hkey", NULL };
	struct run p;

	(void)state;
	start(&p, "hup", env, "--on-change", "signal:HUP", "--files", "/dev/shm", "--", "/bin/sh",
	    "-c",
	    "trap 'echo \"hup:$(cat \"$H_FILE\")\"' HUP; echo \"start:$(cat \"$H_FILE\")\";"
	    " while :; do sleep 0.1; done",
	    NULL);
	wait_for(&p, p.out, "start:hup-value-1\n", 1);
	settle();
	update("hkey", "hup-value-2", 0);
	wait_for(&p, p.out, "hup:hup-value-2\n", 1);
	wire_sleep_ms(1000);
	assert_int_equal(count(p.out, "start:"), 1);
	assert_int_equal(count(p.out, "hup:"), 1);
	assert_int_equal(kill(p.pid, SIGTERM), 0);
	assert_int_equal(finish(&p), 128 + SIGTERM);
	assert_null(strstr(slurp(p.err), "hup-value"));
}

/* exit: the program is stopped and pcrun exits 75 for its supervisor to start it again. */
static void test_exit(void **state)
{
	const char *env[] = { "X=pcs:acme/xkey", NULL };
	struct run p;

	(void)state;
	start(&p, "exit", env, "--on-change", "exit", "--", "/bin/sh", "-c",
	    "echo start; while :; do sleep 0.1; done", NULL);
	wait_for(&p, p.out, "start", 1);
	settle();
	update("xkey", "exit-value-2", 0);
	assert_int_equal(finish(&p), 75);
	assert_non_null(strstr(slurp(p.err), "X changed (version 1 -> 2): stopping the program"));
	assert_int_equal(count(p.out, "start"), 1);
}

/* --grace: a program ignoring SIGTERM is killed after the grace period, then started again. */
static void test_grace(void **state)
{
	const char *env[] = { "G=pcs:acme/gkey", NULL };
	struct run p;
	long t0;

	(void)state;
	start(&p, "grace", env, "--on-change", "restart", "--grace", "2", "--", "/bin/sh", "-c",
	    "trap '' TERM; echo \"start:$PCSECRET_VERSIONS\"; while :; do sleep 0.1; done", NULL);
	wait_for(&p, p.out, "start:G=1", 1);
	settle();
	t0 = now_ms();
	update("gkey", "grace-value-2", 0);
	wait_for(&p, p.out, "start:G=2", 1);
	/* Not before the grace period: the program ignored SIGTERM and had to be killed. */
	if (now_ms() - t0 < 2000)
		fail_msg("restarted after %ld ms, within the 2 s grace", now_ms() - t0);
	assert_int_equal(kill(p.pid, SIGKILL), 0);
	(void)finish(&p);
}

static int run_sync(struct it_result *r, ...)
{
	const char *argv[16];
	va_list ap;
	size_t n = 0;

	argv[n++] = it_path("client/pcrun");
	va_start(ap, r);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(it_run(AGENT_UID, D.socket, NULL, NULL, argv, r), 0);
	return r->status;
}

static void test_usage(void **state)
{
	struct it_result r;

	(void)state;
	assert_int_equal(run_sync(&r, "--on-change", "signal:HUP", "--", "/bin/true", NULL), 2);
	assert_non_null(strstr(r.err, "needs --files"));
	it_result_free(&r);
	assert_int_equal(run_sync(&r, "--on-change", "reload", "--", "/bin/true", NULL), 2);
	it_result_free(&r);
	assert_int_equal(run_sync(&r, "--on-change", "signal:KILL", "--files", "/dev/shm", "--",
	                     "/bin/true", NULL),
	    2);
	it_result_free(&r);
	assert_int_equal(run_sync(&r, "--grace", "5", "--", "/bin/true", NULL), 2);
	assert_non_null(strstr(r.err, "--grace only makes sense with --on-change"));
	it_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_failed_change_and_own_exit),
		cmocka_unit_test(test_signal_files),
		cmocka_unit_test(test_exit),
		cmocka_unit_test(test_grace),
	};

	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (pcrun as the agent's uid)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("pcrun_onchange", tests, setup, teardown);
}
