/*
 * Secret exposure: a full scenario against the real daemon (debug logging), then a search for
 * the plaintexts everywhere they must not be. A plaintext may appear only in the output of the
 * client that resolved it. Searched: the daemon's log, PostgreSQL's server log, everything every
 * non-resolving command printed (and failed resolves), a pg_dump of the database (raw and as
 * hex), the audit_log rows, /proc/PID/cmdline and /proc/PID/environ of the daemon and of the
 * processes the test starts, sampled while they run (pcctl while it reads a value on stdin,
 * pcrun while it waits on its --env-json FIFO and again as the program it exec'd, the SDK client
 * while it holds resolved values). Also: no core files (RLIMIT_CORE 0, and a daemon killed by
 * SIGSEGV leaves none), the socket's mode and group, and the master key file checks (mode 0640
 * refused, 0600 and 0400 accepted, a symbolic link refused).
 *
 * The tests run in order and share one daemon. Switching users needs root; without it the
 * scenario parts that need other uids are skipped.
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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "pcsecret.h"
#include "pgtest.h"

enum { P_A, P_B, P_C, P_D, NPLAIN };
/*
 * P_A: acme/alpha v1, P_C: acme/alpha v2, P_B: acme/beta (from a file), P_D: acme/gamma
 * (never granted). Random per run: "EXPOSE-<tag>-<24 hex>".
 */
static char plain[NPLAIN][48];

static struct it_daemon D;
static char conninfo[512];
static char workdir[64];  /* FIFOs and files the test makes; removed at the end */
/* Everything printed by commands that do not resolve (and by resolves that failed). */
static char *quiet;
static size_t quiet_len;

/* ---- helpers ---- */

static int under_valgrind(void) { return getenv("PCS_UNDER_VALGRIND") != NULL; }

static int need_root(void)
{
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root to run clients as other uids\n");
		return 0;
	}
	return 1;
}

static void keep_quiet(const char *buf, size_t len)
{
	char *p = realloc(quiet, quiet_len + len + 1);

	assert_non_null(p);
	quiet = p;
	memcpy(quiet + quiet_len, buf, len);
	quiet_len += len;
	quiet[quiet_len] = '\0';
}

/* Index of the first plaintext in buf, or -1. */
static int find_plain(const char *buf, size_t len)
{
	for (int i = 0; i < NPLAIN; i++)
		if (it_mem_contains(buf, len, plain[i], strlen(plain[i])))
			return i;
	return -1;
}

static void assert_no_plain(const char *buf, size_t len, const char *where)
{
	int i = find_plain(buf, len);

	if (i >= 0)
		fail_msg("plaintext %d found in %s", i, where);
}

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 4096, n = 0;
	char *buf;
	ssize_t r;

	*len = 0;
	if (fd < 0)
		return NULL;
	if ((buf = malloc(cap + 1)) == NULL) {
		close(fd);
		return NULL;
	}
	while ((r = read(fd, buf + n, cap - n)) > 0) {
		n += (size_t)r;
		if (n == cap) {
			char *p = realloc(buf, 2 * cap + 1);
			if (p == NULL)
				break;
			buf = p;
			cap *= 2;
		}
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * Reads /proc/PID/environ and /proc/PID/cmdline and fails on a plaintext in either. Returns 1
 * when both had content (the process was alive), 0 otherwise. With program set, only a process
 * still running that program counts (pcrun becomes the program it runs, whose environment
 * holds values by design): environ is read first and kept only if cmdline, read after it,
 * still names program, since exec goes only one way. must_have, when set, must be in environ
 * (proof that the right process was sampled).
 */
static int sample_proc(pid_t pid, const char *who, const char *program, const char *must_have)
{
	char path[64], where[128];
	size_t env_len, cmd_len;
	char *env, *cmd;
	int alive;

	snprintf(path, sizeof(path), "/proc/%ld/environ", (long)pid);
	env = read_file(path, &env_len);
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	cmd = read_file(path, &cmd_len);
	alive = env != NULL && cmd != NULL && env_len > 0 && cmd_len > 0;
	if (alive && program != NULL && strcmp(cmd, program) != 0)
		alive = 0;
	if (alive) {
		snprintf(where, sizeof(where), "/proc/PID/environ of %s", who);
		assert_no_plain(env, env_len, where);
		snprintf(where, sizeof(where), "/proc/PID/cmdline of %s", who);
		assert_no_plain(cmd, cmd_len, where);
		if (must_have != NULL && !it_mem_contains(env, env_len, must_have, strlen(must_have)))
			fail_msg("%s: expected %s in its environment", who, must_have);
	}
	free(env);
	free(cmd);
	return alive;
}

/* Waits until pid has exec'd path (before that, /proc shows the test's own process). */
static void wait_exec(pid_t pid, const char *path)
{
	char file[64];

	snprintf(file, sizeof(file), "/proc/%ld/cmdline", (long)pid);
	for (int i = 0; i < 1000; i++) {
		size_t len;
		char *buf = read_file(file, &len);
		int done = buf != NULL && len > 0 && strcmp(buf, path) == 0;
		free(buf);
		if (done)
			return;
		usleep(10000);
	}
	fail_msg("%s did not start within 10 s", path);
}

static void sample_daemon(void)
{
	assert_true(sample_proc(D.pid, "pcsecretd", NULL, NULL));
}

/* A client process: stdin, and stdout+stderr together, on pipes. */
struct proc {
	pid_t pid;
	int in, out;
};

static void become(uid_t uid)
{
	gid_t groups[1] = { IT_GROUP };

	if (uid == 0)
		return;
	if (setgroups(1, groups) != 0 || setgid((gid_t)uid) != 0 || setuid(uid) != 0)
		_exit(126);
}

static void spawn(uid_t uid, const char *const *argv, const char *const *env, struct proc *p)
{
	int in[2], out[2];
	char sock_env[200];
	const char *envp[32];
	size_t n = 0;

	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	snprintf(sock_env, sizeof(sock_env), "PCSECRET_SOCKET=%s", D.socket);
	envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
	envp[n++] = sock_env;
	for (size_t i = 0; env != NULL && env[i] != NULL && n < 30; i++)
		envp[n++] = env[i];
	envp[n] = NULL;
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(out[1], STDERR_FILENO);
		become(uid);
		execve(argv[0], (char *const *)(uintptr_t)argv, (char *const *)(uintptr_t)envp);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = out[0];
}

/*
 * Closes stdin (after writing data), samples /proc of the process until it exits, collects
 * its output into *out (NUL-terminated) and returns its exit status.
 */
static int finish(struct proc *p, const char *data, const char *who, const char *program,
    char **out, size_t *out_len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	int status = 0, exited = 0, waited = 0;

	assert_non_null(buf);
	signal(SIGPIPE, SIG_IGN);
	if (data != NULL)
		assert_int_equal(write(p->in, data, strlen(data)), (ssize_t)strlen(data));
	close(p->in);
	fcntl(p->out, F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd pfd = { p->out, POLLIN, 0 };
		ssize_t r;
		if (!exited) {
			sample_proc(p->pid, who, program, NULL);
			if (waitpid(p->pid, &status, WNOHANG) == p->pid)
				exited = 1;
		}
		poll(&pfd, 1, exited ? 1000 : 5);
		while ((r = read(p->out, buf + n, cap - n)) > 0) {
			n += (size_t)r;
			if (n == cap) {
				char *q = realloc(buf, 2 * cap + 1);
				assert_non_null(q);
				buf = q;
				cap *= 2;
			}
		}
		if (r == 0 && exited)
			break;
		/* Something the process left behind holds its output open: give up after 30 s. */
		if (exited && ++waited > 30)
			fail_msg("%s: its output stayed open after it exited", who);
	}
	close(p->out);
	buf[n] = '\0';
	*out = buf;
	*out_len = n;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs pcctl as uid; its output is kept for the search. Returns the exit status. */
static int pcctl_v(uid_t uid, const char *stdin_data, va_list ap)
{
	const char *argv[32];
	struct proc p;
	char *out;
	size_t n = 0, len;
	int status;

	argv[n++] = it_path("client/pcctl");
	while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	argv[n] = NULL;
	/* By construction no plaintext is ever an argument: values go through stdin or a file. */
	for (size_t i = 0; i < n; i++)
		assert_true(find_plain(argv[i], strlen(argv[i])) < 0);
	spawn(uid, argv, NULL, &p);
	/* While pcctl waits for its value on stdin, and again until it exits. */
	if (stdin_data != NULL) {
		wait_exec(p.pid, argv[0]);
		assert_true(sample_proc(p.pid, "pcctl", argv[0], "PCSECRET_SOCKET="));
	}
	status = finish(&p, stdin_data, "pcctl", argv[0], &out, &len);
	keep_quiet(out, len);
	if (status != 0)
		fprintf(stderr, "pcctl %s %s: exit %d: %s\n", argv[1], n > 2 ? argv[2] : "", status,
		    out);
	free(out);
	return status;
}

static int pcctl(uid_t uid, const char *stdin_data, ...)
{
	va_list ap;
	int r;

	va_start(ap, stdin_data);
	r = pcctl_v(uid, stdin_data, ap);
	va_end(ap);
	return r;
}

#define PCCTL_OK(uid, in, ...) assert_int_equal(pcctl(uid, in, __VA_ARGS__, (char *)NULL), 0)

/* The program pcrun execs: prints its own argv and environment as the kernel has them. */
static const char dump_script[] =
	"cat /proc/$$/cmdline; printf '\\n--ENVIRON--\\n'; cat /proc/$$/environ";

/*
 * pcrun as uid, with env and (when not NULL) JSON fed through a FIFO given as --env-json, so
 * that pcrun can be sampled while it blocks opening it. *out: what the exec'd program printed.
 */
static int pcrun(uid_t uid, const char *agent, const char *const *env, const char *json,
    char **out, size_t *out_len)
{
	char fifo[128];
	const char *argv[16];
	struct proc p;
	size_t n = 0;
	int status, fd;

	argv[n++] = it_path("client/pcrun");
	if (agent != NULL) {
		argv[n++] = "--agent";
		argv[n++] = agent;
	}
	if (json != NULL) {
		snprintf(fifo, sizeof(fifo), "%s/env.%ld.json", workdir, (long)random());
		assert_int_equal(mkfifo(fifo, 0644), 0);
		argv[n++] = "--env-json";
		argv[n++] = fifo;
	}
	argv[n++] = "--";
	argv[n++] = "/bin/sh";
	argv[n++] = "-c";
	argv[n++] = dump_script;
	argv[n] = NULL;
	spawn(uid, argv, env, &p);
	if (json != NULL) {
		/* pcrun blocks opening the FIFO: nothing resolved yet, references only. */
		wait_exec(p.pid, argv[0]);
		assert_true(sample_proc(p.pid, "pcrun", argv[0], env != NULL ? env[0] : NULL));
		fd = open(fifo, O_WRONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
		close(fd);
	}
	status = finish(&p, NULL, "pcrun", argv[0], out, out_len);
	if (json != NULL)
		unlink(fifo);
	return status;
}

/*
 * Checks what the program pcrun exec'd printed: its argv holds no plaintext, and each
 * plaintext in its environment is exactly the value of the variable expected to hold it.
 */
static void check_exec_dump(const char *out, size_t len, const char *const *expect)
{
	const char *sep = memmem(out, len, "\n--ENVIRON--\n", 13);
	const char *env, *end = out + len;
	size_t found[NPLAIN] = { 0 }, want[NPLAIN] = { 0 };

	assert_non_null(sep);
	assert_no_plain(out, (size_t)(sep - out), "the exec'd program's /proc cmdline");
	for (size_t i = 0; expect[i] != NULL; i++) {
		const char *eq = strchr(expect[i], '=');
		int k = find_plain(eq + 1, strlen(eq + 1));
		assert_true(k >= 0);
		want[k]++;
	}
	for (env = sep + 13; env < end; env += strlen(env) + 1) {
		int k = find_plain(env, strlen(env));
		int ok = 0;
		if (k < 0)
			continue;
		for (size_t i = 0; expect[i] != NULL; i++)
			if (strcmp(env, expect[i]) == 0)
				ok = 1;
		if (!ok)
			fail_msg("a plaintext is in an unexpected environment entry of the exec'd program");
		found[k]++;
	}
	assert_memory_equal(found, want, sizeof(found));
}

static int random_hex(char *out, size_t nbytes)
{
	unsigned char b[32];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || nbytes > sizeof(b) || read(fd, b, nbytes) != (ssize_t)nbytes) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

/* ---- setup ---- */

static int setup(void **state)
{
	static const char *const tags[NPLAIN] = { "ALPHA1", "BETA", "ALPHA2", "GAMMA" };
	char hex[33];

	(void)state;
	for (int i = 0; i < NPLAIN; i++) {
		if (random_hex(hex, 12) != 0)
			return -1;
		snprintf(plain[i], sizeof(plain[i]), "EXPOSE-%s-%s", tags[i], hex);
	}
	snprintf(workdir, sizeof(workdir), "/tmp/pcs-exposure-XXXXXX");
	if (mkdtemp(workdir) == NULL || chmod(workdir, 0755) != 0)
		return -1;
	srandom((unsigned)getpid());
	if (it_database("it_exposure", conninfo, sizeof(conninfo)) != 0)
		return -1;
	return it_daemon_start(&D, conninfo, NULL);
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	it_daemon_cleanup(&D);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", workdir);
	free(quiet);
	return 0;
}

/* ---- the scenario ---- */

static void test_socket_mode_and_group(void **state)
{
	struct stat st;

	(void)state;
	assert_int_equal(stat(D.socket, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, IT_GROUP);
}

static void test_daemon_hardened(void **state)
{
	char path[64], *limits;
	size_t len;
	const char *line;
	unsigned long long soft, hard;

	(void)state;
	snprintf(path, sizeof(path), "/proc/%ld/limits", (long)D.pid);
	limits = read_file(path, &len);
	assert_non_null(limits);
	line = strstr(limits, "Max core file size");
	assert_non_null(line);
	assert_int_equal(sscanf(line, "Max core file size %llu %llu", &soft, &hard), 2);
	assert_int_equal(soft, 0);
	assert_int_equal(hard, 0);
	free(limits);
	sample_daemon();
}

static void test_values_in(void **state)
{
	char file[128];
	int fd;

	(void)state;
	PCCTL_OK(0, NULL, "company", "create", "acme");
	/* On stdin, sampled while pcctl waits for it. */
	PCCTL_OK(0, plain[P_A], "secret", "create", "acme/alpha", "--description", "exposure test");
	/* From a file: only its name is an argument. */
	snprintf(file, sizeof(file), "%s/beta.value", workdir);
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, plain[P_B], strlen(plain[P_B])), (ssize_t)strlen(plain[P_B]));
	close(fd);
	PCCTL_OK(0, NULL, "secret", "create", "acme/beta", "--from-file", file);
	unlink(file);
	PCCTL_OK(0, plain[P_C], "secret", "update", "acme/alpha", "--idempotency-token", "u-1");
	/* The retry with the same token makes no new version, and prints no value either. */
	PCCTL_OK(0, plain[P_C], "secret", "update", "acme/alpha", "--idempotency-token", "u-1");
	PCCTL_OK(0, plain[P_D], "secret", "create", "acme/gamma");
	sample_daemon();
}

static void test_agents_and_principals(void **state)
{
	char uid[16];

	(void)state;
	snprintf(uid, sizeof(uid), "%d", IT_AGENT_UID);
	PCCTL_OK(0, NULL, "agent", "create", "acme/bot", "--uid", uid);
	PCCTL_OK(0, NULL, "agent", "set-env", "acme/bot", "K", "pcs:acme/alpha");
	PCCTL_OK(0, NULL, "agent", "set-env", "acme/bot", "J", "pcs:acme/beta");
	PCCTL_OK(0, NULL, "agent", "set-env", "acme/bot", "OLD", "pcs:acme/alpha@1");
	PCCTL_OK(0, NULL, "agent", "set-env", "acme/bot", "GONE", "pcs:acme/gamma");
	PCCTL_OK(0, NULL, "agent", "unset-env", "acme/bot", "GONE");
	snprintf(uid, sizeof(uid), "%d", IT_AGENT2_UID);
	PCCTL_OK(0, NULL, "principal", "add", "--uid", uid, "--role", "launcher", "--company", "acme");
	snprintf(uid, sizeof(uid), "%d", IT_OPERATOR_UID);
	PCCTL_OK(0, NULL, "principal", "add", "--uid", uid, "--role", "operator", "--company", "acme");
}

/* Every listing and show command, with and without --json, as admin and as operator. */
static void test_listings(void **state)
{
	static const char *const cmds[][4] = {
		{ "status", NULL }, { "whoami", NULL }, { "company", "list", NULL },
		{ "secret", "list", "acme", NULL }, { "secret", "show", "acme/alpha", NULL },
		{ "secret", "show", "acme/beta", NULL }, { "agent", "list", "acme", NULL },
		{ "agent", "show", "acme/bot", NULL }, { "principal", "list", NULL },
		{ "audit", "list", NULL },
	};
	uid_t uids[2] = { 0, IT_OPERATOR_UID };

	(void)state;
	for (int u = 0; u < (it_is_root() ? 2 : 1); u++) {
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
			const char *const *c = cmds[i];
			int admin_only = strcmp(c[0], "principal") == 0;
			for (int json = 0; json < 2; json++) {
				int r = json ? pcctl(uids[u], NULL, "--json", c[0], c[1], c[2], c[3]) :
				    pcctl(uids[u], NULL, c[0], c[1], c[2], c[3]);
				/* The operator is refused the admin-only listing; that is output too. */
				assert_int_equal(r, u == 1 && admin_only ? 1 : 0);
			}
		}
	}
	assert_true(it_mem_contains(quiet, quiet_len, "alpha", 5));  /* the listings are real */
	assert_true(it_mem_contains(quiet, quiet_len, "\"current_version\": 2", 20));
	sample_daemon();
}

static void test_pcrun_resolves(void **state)
{
	const char *env[] = { "K=pcs:acme/alpha", "PLAIN=not-a-ref", NULL };
	char expect_k[80], expect_j[80], expect_old[80];
	char *out;
	size_t len;

	(void)state;
	if (!need_root())
		skip();
	snprintf(expect_k, sizeof(expect_k), "K=%s", plain[P_C]);
	snprintf(expect_j, sizeof(expect_j), "J=%s", plain[P_B]);
	snprintf(expect_old, sizeof(expect_old), "OLD=%s", plain[P_A]);
	/* The agent: refs in its environment and in a JSON file (a FIFO, sampled before). */
	assert_int_equal(pcrun(IT_AGENT_UID, NULL, env, "{\"J\": \"pcs:acme/beta\"}", &out, &len),
	    0);
	{
		const char *expect[] = { expect_k, expect_j, NULL };
		check_exec_dump(out, len, expect);
	}
	free(out);
	/* The agent's configured environment. */
	assert_int_equal(pcrun(IT_AGENT_UID, "acme/bot", NULL, NULL, &out, &len), 0);
	{
		const char *expect[] = { expect_k, expect_j, expect_old, NULL };
		check_exec_dump(out, len, expect);
	}
	free(out);
	/* A launcher, for the agent. */
	assert_int_equal(pcrun(IT_AGENT2_UID, "acme/bot", NULL, "{}", &out, &len), 0);
	{
		const char *expect[] = { expect_k, expect_j, expect_old, NULL };
		check_exec_dump(out, len, expect);
	}
	free(out);
	sample_daemon();
}

/* The SDK in a child running as the agent, sampled while it holds the values. */
static void test_sdk_resolves(void **state)
{
	int up[2], down[2], status;
	char buf[512] = "", go = 'g';
	ssize_t n;
	pid_t pid;

	(void)state;
	if (!need_root())
		skip();
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	if ((pid = fork()) == 0) {
		const char *refs[] = { "pcs:acme/alpha", "pcs:acme/alpha@1", "pcs:acme/beta" };
		pcs_options opts = { D.socket, 5000, 20000 };
		pcs_client *c = NULL;
		pcs_value *v = NULL;
		pcs_error err;
		char ok = 1;
		gid_t g = IT_GROUP;
		close(up[0]);
		close(down[1]);
		if (setgroups(1, &g) != 0 || setgid(IT_AGENT_UID) != 0 || setuid(IT_AGENT_UID) != 0)
			_exit(3);
		if (pcs_connect(&opts, &c, &err) != 0 || pcs_resolve(c, NULL, refs, 3, &v, &err) != 0)
			_exit(1);
		ok = strcmp((char *)v[0].data, plain[P_C]) == 0 &&
		    strcmp((char *)v[1].data, plain[P_A]) == 0 &&
		    strcmp((char *)v[2].data, plain[P_B]) == 0;
		/* Tell the parent the values are in memory; wait while it looks at /proc. */
		if (write(up[1], &ok, 1) != 1 || read(down[0], &ok, 1) != 1)
			_exit(4);
		pcs_values_free(v, 3);
		pcs_close(c);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	n = read(up[0], buf, 1);
	assert_int_equal(n, 1);
	assert_int_equal(buf[0], 1);
	assert_true(sample_proc(pid, "SDK client", NULL, NULL));
	sample_daemon();
	assert_int_equal(write(down[1], &go, 1), 1);
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(up[0]);
	close(down[1]);
}

/* Refused resolves print errors, never values: their output joins the search. */
static void test_failed_resolves(void **state)
{
	const char *ungranted[] = { "X=pcs:acme/gamma", NULL };
	const char *pinned[] = { "X=pcs:acme/beta@1", NULL };
	const char *granted[] = { "X=pcs:acme/alpha", NULL };
	char *out;
	size_t len;

	(void)state;
	/* Admin: never values. */
	assert_int_equal(pcrun(0, NULL, granted, NULL, &out, &len), 1);
	assert_true(it_mem_contains(out, len, "PERMISSION_DENIED", 17));
	keep_quiet(out, len);
	free(out);
	if (!need_root())
		skip();
	struct {
		uid_t uid;
		const char *agent;
		const char *const *env;
		const char *status;
	} cases[] = {
		{ IT_AGENT_UID, NULL, ungranted, "PERMISSION_DENIED" },
		{ IT_AGENT_UID, NULL, pinned, "PERMISSION_DENIED" },
		{ IT_AGENT_UID, "acme/someone-else", NULL, "PERMISSION_DENIED" },
		{ IT_OPERATOR_UID, NULL, granted, "PERMISSION_DENIED" },
		{ IT_OPERATOR_UID, "acme/bot", NULL, "PERMISSION_DENIED" },
		{ IT_STRANGER_UID, NULL, granted, "UNAUTHENTICATED" },
		{ IT_AGENT2_UID, NULL, granted, "INVALID_ARGUMENT" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(pcrun(cases[i].uid, cases[i].agent, cases[i].env, NULL, &out, &len), 1);
		if (!it_mem_contains(out, len, cases[i].status, strlen(cases[i].status)))
			fail_msg("case %zu: expected %s, got: %s", i, cases[i].status, out);
		keep_quiet(out, len);
		free(out);
	}
	sample_daemon();
}

static void test_audit_list(void **state)
{
	(void)state;
	PCCTL_OK(0, NULL, "audit", "list", "--limit", "1000");
	PCCTL_OK(0, NULL, "--json", "audit", "list", "--limit", "1000");
	PCCTL_OK(0, NULL, "--json", "audit", "list", "--company", "acme");
	/* The resolves are in it: the search below covers real audit content. */
	assert_true(it_mem_contains(quiet, quiet_len, "Resolve", 7));
}

/* ---- the search ---- */

static void search_file(const char *path, const char *what, int hex_too)
{
	size_t len;
	char *buf = read_file(path, &len), hex[2 * sizeof(plain[0]) + 1];

	if (buf == NULL)
		fail_msg("cannot read %s (%s)", path, what);
	assert_true(len > 0);
	assert_no_plain(buf, len, what);
	for (int i = 0; hex_too && i < NPLAIN; i++) {
		size_t n = strlen(plain[i]);
		for (size_t j = 0; j < n; j++)
			snprintf(hex + 2 * j, 3, "%02x", (unsigned char)plain[i][j]);
		if (it_mem_contains(buf, len, hex, 2 * n))
			fail_msg("plaintext %d found hex-encoded in %s", i, what);
	}
	free(buf);
}

static void test_no_plaintext_anywhere(void **state)
{
	char cmd[1024], dump[128], pglog[600];
	const char *host, *env = getenv("PCS_TEST_CONNINFO");
	char *rows;

	(void)state;
	/* Outputs of everything that did not resolve. */
	assert_true(quiet_len > 0);
	assert_no_plain(quiet, quiet_len, "the output of non-resolving commands");
	/* The daemon's log, at debug level: every call is in it. */
	assert_int_equal(it_file_contains(D.log, "level=debug", 11), 1);
	assert_int_equal(it_file_contains(D.log, "method=Resolve", 14), 1);
	search_file(D.log, "the daemon's log", 1);
	/* A dump of the database, raw and hex (bytea is dumped as hex). */
	snprintf(dump, sizeof(dump), "%s/dump.sql", workdir);
	snprintf(cmd, sizeof(cmd), "pg_dump -d '%s' > '%s'", conninfo, dump);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(it_file_contains(dump, "secret_versions", 15), 1);
	search_file(dump, "pg_dump", 1);
	/* The audit rows, every column. */
	rows = pgtest_query_text(conninfo, "SELECT count(*) || E'\\n' || "
	    "string_agg(row_to_json(a)::text, E'\\n') FROM audit_log a");
	assert_non_null(rows);
	assert_true(atoi(rows) > 50);
	assert_no_plain(rows, strlen(rows), "audit_log");
	free(rows);
	/* PostgreSQL's own log (statements that failed are logged there). */
	if (env != NULL && (host = strstr(env, "host=")) != NULL) {
		size_t n = strcspn(host + 5, " ");
		snprintf(pglog, sizeof(pglog), "%.*s/postgres.log", (int)n, host + 5);
		if (access(pglog, R_OK) == 0)
			search_file(pglog, "PostgreSQL's log", 1);
	}
	sample_daemon();
}

/* ---- the process and its files ---- */

static int core_files_in(const char *dir, pid_t pid)
{
	char path[512];
	struct stat st;

	/* A name that does not fit counts as a core found: the check must not pass blind. */
	if (snprintf(path, sizeof(path), "%s/core", dir) >= (int)sizeof(path))
		return 1;
	if (stat(path, &st) == 0)
		return 1;
	if (snprintf(path, sizeof(path), "%s/core.%ld", dir, (long)pid) >= (int)sizeof(path))
		return 1;
	return stat(path, &st) == 0;
}

static void test_crash_leaves_no_core(void **state)
{
	struct it_daemon d2;
	char pattern[256] = "", cwd[512], link[64];
	size_t len;
	char *p;
	ssize_t n;
	pid_t pid;
	int status;

	(void)state;
	p = read_file("/proc/sys/kernel/core_pattern", &len);
	if (p != NULL) {
		snprintf(pattern, sizeof(pattern), "%.*s", (int)strcspn(p, "\n"), p);
		free(p);
	}
	if (under_valgrind() || pattern[0] == '|' || strchr(pattern, '/') != NULL) {
		/* Valgrind writes its own vgcore files; piped or absolute patterns are not ours. */
		fprintf(stderr, "skipped: core_pattern \"%s\"%s\n", pattern,
		    under_valgrind() ? " under valgrind" : "");
		skip();
	}
	assert_int_equal(it_daemon_start(&d2, conninfo, D.keyfile), 0);
	pid = d2.pid;
	snprintf(link, sizeof(link), "/proc/%ld/cwd", (long)pid);
	n = readlink(link, cwd, sizeof(cwd) - 1);
	assert_true(n > 0);
	cwd[n] = '\0';
	assert_false(core_files_in(cwd, pid));
	/* A crash: the kernel would write a core file here, were it allowed. */
	assert_int_equal(kill(pid, SIGSEGV), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	d2.pid = 0;
	/* Killed by it (or, under ASan, by ASan's handler): either way, no core. */
	assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0));
	assert_false(WIFSIGNALED(status) && WCOREDUMP(status));
	assert_false(core_files_in(cwd, pid));
	it_daemon_cleanup(&d2);
}

static void copy_key(const char *to, mode_t mode)
{
	size_t len;
	char *key = read_file(D.keyfile, &len);
	int fd;

	assert_non_null(key);
	fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, key, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	free(key);
}

static void test_key_file_checks(void **state)
{
	char path[128], link[128], *err = NULL;
	struct it_daemon d2;

	(void)state;
	/* Readable by the group: refused, saying how to fix it. */
	snprintf(path, sizeof(path), "%s/group.key", workdir);
	copy_key(path, 0640);
	assert_int_equal(it_daemon_start_fails(conninfo, path, &err), 1);
	assert_non_null(err);
	assert_non_null(strstr(err, "chmod 600"));
	free(err);
	/* 0600 and 0400: accepted. */
	snprintf(path, sizeof(path), "%s/owner.key", workdir);
	copy_key(path, 0600);
	assert_int_equal(it_daemon_start(&d2, conninfo, path), 0);
	assert_int_equal(it_daemon_stop(&d2), 0);
	it_daemon_cleanup(&d2);
	snprintf(path, sizeof(path), "%s/readonly.key", workdir);
	copy_key(path, 0400);
	assert_int_equal(it_daemon_start(&d2, conninfo, path), 0);
	assert_int_equal(it_daemon_stop(&d2), 0);
	it_daemon_cleanup(&d2);
	/* A symbolic link to a good key: refused. */
	snprintf(link, sizeof(link), "%s/link.key", workdir);
	snprintf(path, sizeof(path), "%s/owner.key", workdir);
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(it_daemon_start_fails(conninfo, link, &err), 1);
	assert_non_null(err);
	assert_non_null(strstr(err, "symbolic link"));
	assert_no_plain(err, strlen(err), "a refused daemon's output");
	free(err);
}

static void test_daemon_exits_cleanly(void **state)
{
	(void)state;
	sample_daemon();
	/* Under valgrind, 99 here means memcheck found errors (the daemon's valgrind log says which). */
	assert_int_equal(it_daemon_stop(&D), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_socket_mode_and_group),
		cmocka_unit_test(test_daemon_hardened),
		cmocka_unit_test(test_values_in),
		cmocka_unit_test(test_agents_and_principals),
		cmocka_unit_test(test_listings),
		cmocka_unit_test(test_pcrun_resolves),
		cmocka_unit_test(test_sdk_resolves),
		cmocka_unit_test(test_failed_resolves),
		cmocka_unit_test(test_audit_list),
		cmocka_unit_test(test_no_plaintext_anywhere),
		cmocka_unit_test(test_crash_leaves_no_core),
		cmocka_unit_test(test_key_file_checks),
		cmocka_unit_test(test_daemon_exits_cleanly),
	};
	return cmocka_run_group_tests_name("exposure", tests, setup, teardown);
}
