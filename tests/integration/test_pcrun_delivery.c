/*
 * pcrun's ways of delivering values (docs/cli.md, "pcrun"), run as the agent's uid against a
 * real daemon: --files with a binary value (NUL bytes) read back by the program, the file's
 * mode and owner and the directory gone after it exits; the same value refused without
 * --files, naming the variable; --mask on a program printing its key whole and byte by byte,
 * with stdout and stderr kept apart and its exit status passed through; --clean-env and
 * --keep; --env-json in each of Paperclip's forms, a secretId that is a pcsecret id, and
 * --env-file; several failing references all named; PCSECRET_VERSIONS; --wait while the
 * daemon starts two seconds after pcrun. Needs root (the agent's uid).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "it.h"
#include "pcsecret.h"
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "pgtest.h"
#include "wire.h"

#define DB "it_pcrun_delivery"
#define AGENT_UID IT_AGENT_UID /* acme/bot */

#define VKEY "sk-delivery-0123456789abcdef"
#define VTINY "ab"
static const uint8_t VBIN[] = { 0, 'a', 'b', 0, 0xff, 'c', 0, 'd', 0 };

static struct it_daemon D;
static char conninfo[512];
static char key_id[64];
static char workdir[64]; /* files the agent reads: 0755 */

static struct itconn_env E;
static struct itconn adm;

static void create_secret(const char *name, const uint8_t *value, size_t len)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)value;
	q.value.len = len;
	itconn_admin_ok(&adm, "CreateSecret", &q.base);
}

static void bind(const char *env, const char *name, uint32_t version)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)name;
	ref.version = version;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	itconn_admin_ok(&adm, "SetAgentEnv", &q.base);
}

/* pcrun as the agent with env (NULL-terminated) and its arguments (NULL-terminated). */
static int pcrun(const char *socket, const char *const *env, struct it_result *r, ...)
{
	const char *argv[32];
	va_list ap;
	size_t n = 0;

	argv[n++] = it_path("client/pcrun");
	va_start(ap, r);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(it_run(AGENT_UID, socket, env, NULL, argv, r), 0);
	return r->status;
}

static void has(const char *buf, size_t len, const char *needle, const char *what)
{
	if (!it_mem_contains(buf, len, needle, strlen(needle)))
		fail_msg("%s: \"%.*s\" does not contain \"%s\"", what, (int)len, buf, needle);
}

static void lacks(const char *buf, size_t len, const char *needle, size_t nlen, const char *what)
{
	if (it_mem_contains(buf, len, needle, nlen))
		fail_msg("%s: contains what it must not", what);
}

/* A file in workdir the agent can read. */
static void write_file(const char *name, const char *text, char *path, size_t size)
{
	FILE *f;

	snprintf(path, size, "%s/%s", workdir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0644), 0);
}

static int setup(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	snprintf(workdir, sizeof(workdir), "/tmp/pcs-delivery-XXXXXX");
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
	create_secret("key", (const uint8_t *)VKEY, strlen(VKEY));
	create_secret("bin", VBIN, sizeof(VBIN));
	create_secret("tiny", (const uint8_t *)VTINY, strlen(VTINY));
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = AGENT_UID;
	itconn_admin_ok(&adm, "CreateAgent", &ca.base);
	bind("K", "key", 0);
	bind("K1", "key", 1);
	bind("BIN", "bin", 0);
	bind("TINY", "tiny", 0);
	itconn_sql_text(&E, key_id, sizeof(key_id), "SELECT id FROM secrets WHERE name = 'key'");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_close(&adm.w);
	it_daemon_cleanup(&D);
	if (workdir[0] != '\0') {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
		(void)!system(cmd);
	}
	return 0;
}

/*
 * --files: the program reads the binary value back from BIN_FILE; the file is 0400 and the
 * directory 0700, both the agent's; BIN itself is not set; the directory is gone afterwards.
 * Without --files the same value is refused, naming BIN, and the program does not run.
 */
static void test_files_binary_value(void **state)
{
	const char *env[] = { "BIN=pcs:acme/bin", "K=pcs:acme/key", NULL };
	char want[64], path[256], *nl, *rest;
	struct it_result r;
	struct stat st;

	(void)state;
	assert_int_equal(pcrun(D.socket, env, &r, "--files", "/dev/shm", "--", "/bin/sh", "-c",
	                     "cat \"$BIN_FILE\"; printf '\\n%s\\n' \"$BIN_FILE\";"
	                     " stat -c '%a %u' \"$BIN_FILE\" \"${BIN_FILE%/*}\" \"$K_FILE\";"
	                     " printf '%s|%s|%s' \"${BIN-unset}\" \"${K-unset}\" \"$PCSECRET_VERSIONS\"",
	                     NULL),
	    0);
	if (r.out_len < sizeof(VBIN) || memcmp(r.out, VBIN, sizeof(VBIN)) != 0)
		fail_msg("the program read another value back (%zu bytes; stderr %s)", r.out_len,
		    r.err);
	rest = r.out + sizeof(VBIN) + 1;
	assert_non_null(nl = strchr(rest, '\n'));
	snprintf(path, sizeof(path), "%.*s", (int)(nl - rest), rest);
	assert_true(strncmp(path, "/dev/shm/pcrun.", 15) == 0);
	snprintf(want, sizeof(want), "400 %d\n700 %d\n400 %d\n", AGENT_UID, AGENT_UID, AGENT_UID);
	has(nl + 1, strlen(nl + 1), want, "modes and owners");
	has(nl + 1, strlen(nl + 1), "unset|unset|BIN=1,K=1", "variables");
	/* Gone with the program. */
	assert_int_equal(stat(path, &st), -1);
	*strrchr(path, '/') = '\0';
	assert_int_equal(stat(path, &st), -1);
	it_result_free(&r);

	/* No memory file system, no files. */
	assert_int_equal(pcrun(D.socket, env, &r, "--files", workdir, "--", "/bin/echo", "RAN", NULL),
	    1);
	has(r.err, strlen(r.err), "not a memory file system", "--files on disk");
	lacks(r.out, r.out_len, "RAN", 3, "--files on disk");
	it_result_free(&r);

	/* Without --files: refused, naming the variable, never the value. */
	assert_int_equal(pcrun(D.socket, env, &r, "--", "/bin/echo", "RAN", NULL), 1);
	has(r.err, strlen(r.err), "cannot set BIN: its value contains a NUL byte", "no --files");
	lacks(r.out, r.out_len, "RAN", 3, "no --files");
	lacks(r.err, strlen(r.err), VKEY, strlen(VKEY), "no --files");
	it_result_free(&r);
}

/*
 * --mask: the key printed whole and byte by byte (a write per byte) on stdout and on stderr
 * shows only the mask; the streams stay apart; the exit status passes through; a value
 * shorter than the minimum is named in a warning.
 */
static void test_mask(void **state)
{
	const char *env[] = { "K=pcs:acme/key", "TINY=pcs:acme/tiny", NULL };
	const char *script =
	    "printf 'out:%s\\n' \"$K\"; printf 'err:%s\\n' \"$K\" >&2;"
	    " i=1; while [ $i -le ${#K} ]; do printf '%s' \"$(printf '%s' \"$K\" | cut -c$i)\";"
	    " i=$((i+1)); done; echo; echo tiny=$TINY; exit 7";
	struct it_result r;

	(void)state;
	assert_int_equal(pcrun(D.socket, env, &r, "--mask", "--", "/bin/sh", "-c", script, NULL), 7);
	lacks(r.out, r.out_len, VKEY, strlen(VKEY), "stdout");
	lacks(r.err, strlen(r.err), VKEY, strlen(VKEY), "stderr");
	has(r.out, r.out_len, "out:<concealed by pcsecret>\n<concealed by pcsecret>\ntiny=ab\n",
	    "stdout");
	lacks(r.out, r.out_len, "err:", 4, "stdout");
	has(r.err, strlen(r.err), "err:<concealed by pcsecret>\n", "stderr");
	lacks(r.err, strlen(r.err), "out:", 4, "stderr");
	has(r.err, strlen(r.err), "the value of TINY is shorter than 4 bytes: not masked",
	    "warning");
	it_result_free(&r);

	/* A signal sent to pcrun reaches the program (which sends it to its parent, pcrun). */
	assert_int_equal(pcrun(D.socket, env, &r, "--mask", "--", "/bin/sh", "-c",
	                     "trap 'echo got-usr1; exit 3' USR1; kill -USR1 $PPID;"
	                     " i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 9",
	                     NULL),
	    3);
	has(r.out, r.out_len, "got-usr1", "forwarded signal");
	it_result_free(&r);

	/* A signal that ends the program is reported as a shell does. */
	assert_int_equal(pcrun(D.socket, env, &r, "--mask", "--", "/bin/sh", "-c", "kill -TERM $$",
	                     NULL),
	    128 + SIGTERM);
	it_result_free(&r);
}

/* --clean-env: only the resolved variables, PCSECRET_VERSIONS and what --keep names. */
static void test_clean_env(void **state)
{
	const char *env[] = { "K=pcs:acme/key", "FOO=bar", "OTHER=x", NULL };
	struct it_result r;
	char want[128];

	(void)state;
	assert_int_equal(
	    pcrun(D.socket, env, &r, "--clean-env", "--", "/usr/bin/env", NULL), 0);
	snprintf(want, sizeof(want), "K=%s\nPCSECRET_VERSIONS=K=1\n", VKEY);
	if (r.out_len != strlen(want) || memcmp(r.out, want, r.out_len) != 0)
		fail_msg("--clean-env gave \"%s\"", r.out);
	it_result_free(&r);
	assert_int_equal(pcrun(D.socket, env, &r, "--clean-env", "--keep", "FOO,PATH", "--keep",
	                     "NOPE", "--", "/usr/bin/env", NULL),
	    0);
	has(r.out, r.out_len, "FOO=bar\n", "--keep");
	has(r.out, r.out_len, "PATH=", "--keep");
	lacks(r.out, r.out_len, "OTHER", 5, "--keep");
	lacks(r.out, r.out_len, "PCSECRET_SOCKET", 15, "--keep");
	it_result_free(&r);
	/* Without --clean-env, everything is inherited except the references themselves. */
	assert_int_equal(pcrun(D.socket, env, &r, "--", "/usr/bin/env", NULL), 0);
	has(r.out, r.out_len, "OTHER=x\n", "default");
	has(r.out, r.out_len, "PCSECRET_SOCKET=", "default");
	lacks(r.out, r.out_len, "pcs:acme/key", 12, "default");
	it_result_free(&r);
}

/* --env-json in Paperclip's three forms, by secretId; --env-file; later files win. */
static void test_env_files(void **state)
{
	char json[1024], jpath[256], dpath[256], want[512];
	struct it_result r;

	(void)state;
	snprintf(json, sizeof(json),
	    "{\"PLAIN\": \"just text\","
	    " \"PLAIN_OBJ\": {\"type\": \"plain\", \"value\": \"pcs:literal\"},"
	    " \"REF_LATEST\": {\"type\": \"secret_ref\", \"secretId\": \"%s\", \"version\": "
	    "\"latest\"},"
	    " \"K1\": {\"type\": \"secret_ref\", \"secretId\": \"%s\", \"version\": 1},"
	    " \"K1S\": {\"type\": \"secret_ref\", \"secretId\": \"%s\", \"version\": \"1\"},"
	    " \"OVER\": \"from json\"}",
	    key_id, key_id, key_id);
	write_file("env.json", json, jpath, sizeof(jpath));
	write_file("env.dotenv",
	    "# a dotenv file\nexport OVER='from dotenv'\nDOT=\"pcs:acme/key\"\nLIT=a b  # c\n", dpath,
	    sizeof(dpath));
	assert_int_equal(pcrun(D.socket, NULL, &r, "--env-json", jpath, "--env-file", dpath, "--",
	                     "/bin/sh", "-c",
	                     "printf '%s|%s|%s|%s|%s|%s|%s|%s|%s' \"$PLAIN\" \"$PLAIN_OBJ\""
	                     " \"$REF_LATEST\" \"$K1\" \"$K1S\" \"$OVER\" \"$DOT\" \"$LIT\""
	                     " \"$PCSECRET_VERSIONS\"",
	                     NULL),
	    0);
	snprintf(want, sizeof(want),
	    "just text|pcs:literal|%s|%s|%s|from dotenv|%s|a b|REF_LATEST=1,K1=1,K1S=1,DOT=1", VKEY,
	    VKEY, VKEY, VKEY);
	if (strcmp(r.out, want) != 0)
		fail_msg("got \"%s\" (stderr %s), want \"%s\"", r.out, r.err, want);
	it_result_free(&r);

	/* A bad shape is refused naming the variable and the problem; nothing runs. */
	write_file("bad.json", "{\"X\": {\"type\": \"secret_ref\", \"secretId\": \"acme/key\"}}",
	    jpath, sizeof(jpath));
	assert_int_equal(pcrun(D.socket, NULL, &r, "--env-json", jpath, "--", "/bin/echo", "RAN",
	                     NULL),
	    1);
	has(r.err, strlen(r.err), "X: secretId is not a lowercase uuid", "bad shape");
	lacks(r.out, r.out_len, "RAN", 3, "bad shape");
	it_result_free(&r);
}

/* Several failing references: every one named with its status; the good one is not. */
static void test_every_failure_named(void **state)
{
	const char *bad_syntax[] = { "A=pcs:acme/", "B=pcs:acme/key", "C=pcs:Bad/x", NULL };
	const char *denied[] = { "A=pcs:acme/missing-1", "B=pcs:acme/key", "C=pcs:acme/missing-2",
		"D=pcs:acme/key@99", NULL };
	struct it_result r;

	(void)state;
	assert_int_equal(pcrun(D.socket, bad_syntax, &r, "--", "/bin/echo", "RAN", NULL), 1);
	has(r.err, strlen(r.err), "cannot resolve A=pcs:acme/: INVALID_ARGUMENT", "syntax");
	has(r.err, strlen(r.err), "cannot resolve C=pcs:Bad/x: INVALID_ARGUMENT", "syntax");
	lacks(r.err, strlen(r.err), "B=", 2, "syntax");
	lacks(r.out, r.out_len, "RAN", 3, "syntax");
	it_result_free(&r);
	assert_int_equal(pcrun(D.socket, denied, &r, "--", "/bin/echo", "RAN", NULL), 1);
	has(r.err, strlen(r.err), "cannot resolve A=pcs:acme/missing-1: PERMISSION_DENIED",
	    "denied");
	has(r.err, strlen(r.err), "cannot resolve C=pcs:acme/missing-2: PERMISSION_DENIED",
	    "denied");
	has(r.err, strlen(r.err), "cannot resolve D=pcs:acme/key@99: ", "denied");
	lacks(r.err, strlen(r.err), "B=", 2, "denied");
	lacks(r.err, strlen(r.err), VKEY, strlen(VKEY), "denied");
	lacks(r.out, r.out_len, "RAN", 3, "denied");
	it_result_free(&r);
}

/*
 * --wait: pcrun starts before the daemon (no socket yet) and resolves once a daemon, started
 * two seconds later on that socket, answers. Without --wait it fails at once.
 */
static void test_wait(void **state)
{
	const char *env[] = { "K=pcs:acme/key", NULL };
	struct it_daemon_opts opts = { NULL, 0, NULL };
	struct it_daemon late;
	struct it_result r;
	char sock[128], buf[256];
	int fds[2], status;
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/late.sock", workdir);
	assert_int_equal(pcrun(sock, env, &r, "--", "/bin/echo", "RAN", NULL), 1);
	has(r.err, strlen(r.err), "UNAVAILABLE", "no --wait");
	it_result_free(&r);

	assert_int_equal(pipe(fds), 0);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		const char *argv[] = { it_path("client/pcrun"), "--wait", "30", "--", "/bin/sh", "-c",
			"printf 'got:%s' \"$K\"", NULL };

		close(fds[0]);
		if (it_run(AGENT_UID, sock, env, NULL, argv, &r) != 0)
			_exit(99);
		(void)!write(fds[1], r.out, r.out_len);
		_exit(r.status);
	}
	close(fds[1]);
	wire_sleep_ms(2000);
	opts.socket = sock;
	assert_int_equal(it_daemon_start_opts(&late, conninfo, D.keyfile, &opts), 0);
	while (got < sizeof(buf) - 1 && (n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	(void)it_daemon_stop(&late);
	it_daemon_cleanup(&late);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0 || strcmp(buf, "got:" VKEY) != 0)
		fail_msg("pcrun --wait: status %d, output \"%s\"", WEXITSTATUS(status), buf);
}

/* The SDK's delivery as the agent (in a child with its uid): what went wrong, or NULL. */
static const char *sdk_delivery(const char *dir)
{
	pcs_options o = { 0 };
	pcs_client *c = NULL;
	pcs_error err;
	unsigned char *buf = NULL, small[4], back[64];
	uint32_t version = 0;
	size_t len = 0;
	ssize_t n;
	int dfd, fd;

	o.socket_path = D.socket;
	if (pcs_connect(&o, &c, &err) != 0)
		return "connect";
	if (pcs_resolve_into(c, NULL, "pcs:acme/key", small, sizeof(small), &len, &version, &err) !=
	        -PCS_OUT_OF_RANGE ||
	    len != strlen(VKEY) || strstr(err.message, VKEY) != NULL)
		return "a small buffer is not OUT_OF_RANGE with the size";
	if (pcs_buf_alloc(len, &buf, &err) != 0 ||
	    pcs_resolve_into(c, NULL, "pcs:acme/key", buf, len, &len, &version, &err) != 0 ||
	    len != strlen(VKEY) || memcmp(buf, VKEY, len) != 0 || version != 1)
		return "pcs_resolve_into";
	pcs_buf_free(buf);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return "open dir";
	if (pcs_resolve_to_file(c, NULL, "pcs:acme/bin", dfd, "../x", (uid_t)-1, NULL, &err) !=
	    -PCS_INVALID_ARGUMENT)
		return "a name with a slash accepted";
	if (pcs_resolve_to_file(c, NULL, "pcs:acme/bin", dfd, "bin", (uid_t)-1, &version, &err) !=
	        0 ||
	    version != 1)
		return "pcs_resolve_to_file";
	/* Again: replaced atomically (the old file is read-only, the rename replaces it). */
	if (pcs_resolve_to_file(c, NULL, "pcs:acme/bin", dfd, "bin", (uid_t)-1, NULL, &err) != 0)
		return "pcs_resolve_to_file over an existing file";
	if ((fd = openat(dfd, "bin", O_RDONLY | O_CLOEXEC)) < 0 ||
	    (n = read(fd, back, sizeof(back))) != (ssize_t)sizeof(VBIN) ||
	    memcmp(back, VBIN, sizeof(VBIN)) != 0)
		return "the file holds another value";
	pcs_close(c);
	return NULL;
}

static void test_sdk_delivery(void **state)
{
	char dir[] = "/dev/shm/pcs-sdk-XXXXXX", path[64];
	const char *what;
	struct stat st;
	int fds[2], status;
	char msg[128] = "";
	ssize_t n;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chown(dir, AGENT_UID, AGENT_UID), 0);
	assert_int_equal(pipe(fds), 0);
	assert_true((pid = fork()) >= 0);
	if (pid == 0) {
		gid_t g[1] = { IT_GROUP };

		close(fds[0]);
		if (setgroups(1, g) != 0 || setgid(AGENT_UID) != 0 || setuid(AGENT_UID) != 0)
			_exit(2);
		what = sdk_delivery(dir);
		if (what != NULL)
			(void)!write(fds[1], what, strlen(what));
		_exit(what != NULL);
	}
	close(fds[1]);
	n = read(fds[0], msg, sizeof(msg) - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("SDK delivery: %s", msg);
	snprintf(path, sizeof(path), "%s/bin", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0400);
	assert_int_equal(st.st_uid, AGENT_UID);
	assert_int_equal(st.st_size, sizeof(VBIN));
	/* No temporary file left behind. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files_binary_value),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_clean_env),
		cmocka_unit_test(test_env_files),
		cmocka_unit_test(test_every_failure_named),
		cmocka_unit_test(test_wait),
		cmocka_unit_test(test_sdk_delivery),
	};

	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (pcrun as the agent's uid)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("pcrun_delivery", tests, setup, teardown);
}
