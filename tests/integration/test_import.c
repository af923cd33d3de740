/*
 * pcctl secret import against the real pcsecretd and PostgreSQL: a file of 200 secrets (some
 * as value_base64, one of them binary) created with calls in flight, then resolved by the
 * agent through the SDK and pcrun; a malformed line stops the import at that line, keeping
 * the lines before it and sending nothing after it; a name that exists stops it with
 * ALREADY_EXISTS naming the line, unless --skip-existing counts it. No value, and no byte of
 * a malformed line, ever shows in pcctl's output or the daemon's log. Tests run in order and
 * share one daemon.
 */
#include <grp.h>
#include <setjmp.h>
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
#include "pcsecret.h"

#define NSECRETS 200
/* Every value holds it, so one search finds any of them; never in a name or a description. */
#define MARK "IMPVAL-7c1e"
/* The bytes of the malformed line, which no message may quote. */
#define BAD_MARK "BADLINE-SECRET-93ab"
/* The binary value of imp-200: NUL, 0xff and a newline among printable bytes. */
static const unsigned char BIN[] = { 'I', 'M', 'P', 0x00, 0xff, '\n', 'v', 0x01 };
#define BIN_B64 "SU1QAP8KdgE="

static struct it_daemon D;
static char conninfo[512];
static char path_main[160], path_bad[160];
/* Everything pcctl printed, searched for values at the end. */
static char *output;
static size_t output_len;

static void keep(const char *s)
{
	size_t n = strlen(s);
	char *p = realloc(output, output_len + n + 1);

	assert_non_null(p);
	output = p;
	memcpy(output + output_len, s, n + 1);
	output_len += n;
}

/* Runs pcctl as root with args; keeps its output for the search at the end. */
static int pcctl(const char *stdin_data, struct it_result *r, ...)
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
	assert_int_equal(it_run(0, D.socket, NULL, stdin_data, argv, r), 0);
	keep(r->out);
	keep(r->err);
	return r->status;
}

#define PCCTL_OK(in, ...) \
	do { \
		struct it_result r_; \
		if (pcctl(in, &r_, __VA_ARGS__, (char *)NULL) != 0) \
			fail_msg("pcctl failed (%d): %s", r_.status, r_.err); \
		it_result_free(&r_); \
	} while (0)

/* 1 when pcctl secret show finds company/name. */
static int secret_exists(const char *path)
{
	struct it_result r;
	int st = pcctl(NULL, &r, "secret", "show", path, (char *)NULL);

	it_result_free(&r);
	return st == 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
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
	if (it_database("it_import", conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	snprintf(path_main, sizeof(path_main), "%s/main.jsonl", D.dir);
	snprintf(path_bad, sizeof(path_bad), "%s/bad.jsonl", D.dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	it_daemon_cleanup(&D);
	free(output);
	return 0;
}

/*
 * 200 lines: imp-001..imp-199 as "value" (every fifth as value_base64 of the same text, with
 * a blank line and a CRLF line among them), imp-200 binary; --company for the lines without
 * one.
 */
static void test_import_file(void **state)
{
	char *text = malloc(64 * 1024), b64[128];
	size_t off = 0;
	struct it_result r;

	(void)state;
	assert_non_null(text);
	PCCTL_OK(NULL, "company", "create", "acme");
	for (int i = 1; i < NSECRETS; i++) {
		char value[64];
		snprintf(value, sizeof(value), MARK "-%03d", i);
		if (i % 5 == 0) {
			/* base64 of the value, made the way an operator's script would. */
			FILE *p;
			char cmd[128];
			snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | base64 -w0", value);
			assert_non_null(p = popen(cmd, "r"));
			assert_non_null(fgets(b64, sizeof(b64), p));
			pclose(p);
			off += (size_t)snprintf(text + off, 64 * 1024 - off,
			    "{\"company\":\"acme\",\"name\":\"imp-%03d\",\"value_base64\":\"%s\"}\n",
			    i, b64);
		} else {
			off += (size_t)snprintf(text + off, 64 * 1024 - off,
			    "{\"name\":\"imp-%03d\",\"value\":\"%s\",\"description\":\"d %d\"}%s\n",
			    i, value, i, i == 7 ? "\r" : "");
		}
		if (i == 100)
			off += (size_t)snprintf(text + off, 64 * 1024 - off, "  \n");
	}
	snprintf(text + off, 64 * 1024 - off,
	    "{\"name\":\"imp-200\",\"value_base64\":\"" BIN_B64 "\"}\n");
	write_file(path_main, text);
	free(text);

	assert_int_equal(pcctl(NULL, &r, "--json", "secret", "import", path_main, "--company",
	                     "acme", "--parallel", "16", (char *)NULL),
	    0);
	assert_non_null(strstr(r.out, "\"created\": 200"));
	assert_non_null(strstr(r.out, "\"skipped\": 0"));
	assert_non_null(strstr(r.out, "\"failed\": 0"));
	assert_non_null(strstr(r.out, "\"lines\": 201")); /* the blank line counts */
	assert_non_null(strstr(r.out, "\"stopped_at_line\": null"));
	assert_non_null(strstr(r.out, "\"per_second\""));
	it_result_free(&r);
	assert_int_equal(
	    pcctl(NULL, &r, "--json", "secret", "show", "acme/imp-007", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "\"description\": \"d 7\""));
	assert_non_null(strstr(r.out, "\"current_version\": 1"));
	it_result_free(&r);
	/* The human summary. */
	write_file(path_bad, "{\"name\":\"imp-201\",\"value\":\"" MARK "-201\"}\n");
	assert_int_equal(
	    pcctl(NULL, &r, "secret", "import", path_bad, "--company", "acme", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "created 1, skipped 0, failed 0 in "));
	assert_non_null(strstr(r.out, " per second)"));
	it_result_free(&r);
}

/* The agent resolves imported values through the SDK (exact bytes) and pcrun. */
static void test_imported_values_resolve(void **state)
{
	const char *refs[] = { "pcs:acme/imp-001", "pcs:acme/imp-005", "pcs:acme/imp-199",
		"pcs:acme/imp-200" };
	struct it_result r;
	int status;
	pid_t pid;

	(void)state;
	PCCTL_OK(NULL, "agent", "create", "acme/bot", "--uid", "40010");
	PCCTL_OK(NULL, "agent", "set-env", "acme/bot", "K1", refs[0]);
	PCCTL_OK(NULL, "agent", "set-env", "acme/bot", "K5", refs[1]);
	PCCTL_OK(NULL, "agent", "set-env", "acme/bot", "K199", refs[2]);
	PCCTL_OK(NULL, "agent", "set-env", "acme/bot", "KBIN", refs[3]);
	if (!need_root())
		skip();
	if ((pid = fork()) == 0) {
		pcs_options opts = { D.socket, 2000, 5000 };
		pcs_client *c = NULL;
		pcs_value *v = NULL;
		pcs_error err;
		gid_t g = IT_GROUP;
		if (setgroups(1, &g) != 0 || setgid(IT_AGENT_UID) != 0 || setuid(IT_AGENT_UID) != 0)
			_exit(3);
		if (pcs_connect(&opts, &c, &err) != 0 ||
		    pcs_resolve(c, NULL, refs, 4, &v, &err) != 0) {
			fprintf(
			    stderr, "resolve: %s: %s\n", pcs_status_name(err.code), err.message);
			_exit(1);
		}
		if (v[0].len != strlen(MARK "-001") ||
		    memcmp(v[0].data, MARK "-001", v[0].len) != 0 ||
		    v[1].len != strlen(MARK "-005") ||
		    memcmp(v[1].data, MARK "-005", v[1].len) != 0 ||
		    v[2].len != strlen(MARK "-199") ||
		    memcmp(v[2].data, MARK "-199", v[2].len) != 0 || v[3].len != sizeof(BIN) ||
		    memcmp(v[3].data, BIN, sizeof(BIN)) != 0 || v[3].version != 1)
			_exit(2);
		pcs_values_free(v, 4);
		pcs_close(c);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	/*
	 * And pcrun, the way an agent starts, on references in its environment (not --agent:
	 * KBIN's NUL byte cannot go into an environment).
	 */
	const char *env[] = { "K1=pcs:acme/imp-001", "K199=pcs:acme/imp-199", NULL };
	const char *argv[] = { it_path("client/pcrun"), "--", "/bin/sh", "-c",
		"printf '%s|%s' \"$K1\" \"$K199\"", NULL };
	assert_int_equal(it_run(IT_AGENT_UID, D.socket, env, NULL, argv, &r), 0);
	if (r.status != 0)
		fail_msg("pcrun failed (%d): %s", r.status, r.err);
	assert_string_equal(r.out, MARK "-001|" MARK "-199");
	it_result_free(&r);
}

/*
 * Line 6 is malformed: the five before it are created, nothing after it is sent, and the
 * error names line 6 and what is wrong without a byte of the line.
 */
static void test_malformed_line_stops_there(void **state)
{
	struct it_result r;

	(void)state;
	write_file(path_bad,
	    "{\"name\":\"m-1\",\"value\":\"" MARK "-m1\"}\n"
	    "{\"name\":\"m-2\",\"value\":\"" MARK "-m2\"}\n"
	    "{\"name\":\"m-3\",\"value\":\"" MARK "-m3\"}\n"
	    "{\"name\":\"m-4\",\"value\":\"" MARK "-m4\"}\n"
	    "{\"name\":\"m-5\",\"value\":\"" MARK "-m5\"}\n"
	    "{\"name\":\"m-6\",\"value\":\"" BAD_MARK "\",}\n"
	    "{\"name\":\"m-7\",\"value\":\"" MARK "-m7\"}\n"
	    "{\"name\":\"m-8\",\"value\":\"" MARK "-m8\"}\n");
	assert_int_equal(
	    pcctl(NULL, &r, "secret", "import", path_bad, "--company", "acme", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "INVALID_ARGUMENT"));
	assert_non_null(strstr(r.err, "line 6: it is not valid JSON"));
	assert_non_null(strstr(r.out, "created 5, skipped 0, failed 0"));
	assert_non_null(strstr(r.out, "stopped at line 6"));
	assert_null(strstr(r.out, BAD_MARK));
	assert_null(strstr(r.err, BAD_MARK));
	it_result_free(&r);
	assert_true(secret_exists("acme/m-1"));
	assert_true(secret_exists("acme/m-5"));
	assert_false(secret_exists("acme/m-6"));
	assert_false(secret_exists("acme/m-7"));
	assert_false(secret_exists("acme/m-8"));

	/* Not an object, a key that is not ours, a value too long: each named, never quoted. */
	assert_int_equal(pcctl("{\"name\":\"m-9\",\"" BAD_MARK "\":\"x\",\"value\":\"v\"}\n", &r,
	                     "secret", "import", "-", "--company", "acme", (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "line 1: it has a key other than"));
	assert_null(strstr(r.err, BAD_MARK));
	it_result_free(&r);
	assert_int_equal(pcctl("\n[\"" BAD_MARK "\"]\n", &r, "secret", "import", "-", "--company",
	                     "acme", (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "line 2: it is not a JSON object"));
	assert_null(strstr(r.err, BAD_MARK));
	it_result_free(&r);
	assert_int_equal(pcctl("{\"name\":\"m-9\",\"value\":\"" MARK "\"}\n", &r, "secret",
	                     "import", "-", (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "line 1: it has no \"company\""));
	it_result_free(&r);
	assert_false(secret_exists("acme/m-9"));
}

/*
 * A name that exists stops the import at its line with ALREADY_EXISTS (one call in flight, so
 * the line after it is certainly not sent); --skip-existing counts it and goes on.
 */
static void test_existing_names(void **state)
{
	const char *lines = "{\"name\":\"d-1\",\"value\":\"" MARK "-d1\"}\n"
	                    "{\"name\":\"d-2\",\"value\":\"" MARK "-d2\"}\n"
	                    "{\"name\":\"imp-001\",\"value\":\"" MARK "-again\"}\n"
	                    "{\"name\":\"d-4\",\"value\":\"" MARK "-d4\"}\n";
	struct it_result r;

	(void)state;
	assert_int_equal(pcctl(lines, &r, "secret", "import", "-", "--company", "acme",
	                     "--parallel", "1", (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "ALREADY_EXISTS"));
	assert_non_null(strstr(r.err, "line 3 (acme/imp-001)"));
	assert_non_null(strstr(r.err, "--skip-existing"));
	assert_non_null(strstr(r.out, "created 2, skipped 0, failed 1"));
	assert_non_null(strstr(r.out, "stopped at line 3"));
	it_result_free(&r);
	assert_true(secret_exists("acme/d-2"));
	assert_false(secret_exists("acme/d-4"));

	/*
	 * Again with the default --parallel: all four lines are in flight before the first reply
	 * is read, so d-4 is created although line 1 fails, and the summary says so; the error
	 * is the first failing line's.
	 */
	assert_int_equal(
	    pcctl(lines, &r, "--json", "secret", "import", "-", "--company", "acme", (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "line 1 (acme/d-1)"));
	assert_non_null(strstr(r.out, "\"created\": 1"));
	assert_non_null(strstr(r.out, "\"failed\": 3"));
	assert_non_null(strstr(r.out, "\"last_line_sent\": 4"));
	assert_non_null(strstr(r.out, "\"stopped_at_line\": 1"));
	assert_non_null(strstr(r.out, "\"status\": \"ALREADY_EXISTS\""));
	it_result_free(&r);

	assert_int_equal(pcctl(lines, &r, "--json", "secret", "import", "-", "--company", "acme",
	                     "--skip-existing", (char *)NULL),
	    0);
	assert_non_null(strstr(r.out, "\"created\": 0"));
	assert_non_null(strstr(r.out, "\"skipped\": 4"));
	assert_non_null(strstr(r.out, "\"failed\": 0"));
	it_result_free(&r);
	assert_true(secret_exists("acme/d-4"));
	/* The existing secret was left alone: still version 1. */
	assert_int_equal(
	    pcctl(NULL, &r, "--json", "secret", "show", "acme/imp-001", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "\"current_version\": 1"));
	it_result_free(&r);
}

/* Values stay out of everything pcctl printed and out of the daemon's log (debug level). */
static void test_no_value_in_output_or_log(void **state)
{
	(void)state;
	assert_non_null(output);
	assert_false(it_mem_contains(output, output_len, MARK, strlen(MARK)));
	assert_false(it_mem_contains(output, output_len, BAD_MARK, strlen(BAD_MARK)));
	assert_false(it_mem_contains(output, output_len, BIN_B64, strlen(BIN_B64)));
	assert_int_equal(it_file_contains(D.log, MARK, strlen(MARK)), 0);
	assert_int_equal(it_file_contains(D.log, BAD_MARK, strlen(BAD_MARK)), 0);
	assert_int_equal(it_file_contains(D.log, BIN_B64, strlen(BIN_B64)), 0);
	assert_int_equal(it_file_contains(D.log, (const char *)BIN, sizeof(BIN)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_import_file),
		cmocka_unit_test(test_imported_values_resolve),
		cmocka_unit_test(test_malformed_line_stops_there),
		cmocka_unit_test(test_existing_names),
		cmocka_unit_test(test_no_value_in_output_or_log),
	};
	return cmocka_run_group_tests_name("import", tests, setup, teardown);
}
