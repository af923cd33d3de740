/*
 * log: per-event rate limiting (a peer that makes the daemon log one event in a loop must not
 * fill the disk) and log_q's escaping of what came from outside.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"

static long fake_now = 1000;

static long fake_clock(void) { return fake_now; }

/* Lines of path containing needle. */
static int count_lines(const char *path, const char *needle)
{
	char line[4096];
	FILE *fp = fopen(path, "r");
	int n = 0;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(fp);
	return n;
}

static void test_rate_limit(void **state)
{
	char path[] = "/tmp/pcs-test-log-XXXXXX";
	pcs_error err;
	int fd;

	(void)state;
	assert_true((fd = mkstemp(path)) >= 0);
	close(fd);
	assert_int_equal(log_open(path, &err), 0);
	log_set_clock(fake_clock);
	log_set_rate(LOG_RATE_DEFAULT);
	/* 100,000 lines of one event in one second: LOG_RATE_DEFAULT written. */
	for (int i = 0; i < 100000; i++)
		log_event(LOG_INFO, "protocol_error", "i=%d", i);
	/* Another event is not held back by the first one's flood. */
	log_event(LOG_INFO, "other", "x=1");
	assert_int_equal(count_lines(path, "event=protocol_error i="), LOG_RATE_DEFAULT);
	assert_int_equal(count_lines(path, "event=other"), 1);
	assert_int_equal(count_lines(path, "event=log_suppressed"), 0);
	assert_int_equal(log_suppressed_total(), 100000 - LOG_RATE_DEFAULT);
	/* The next second: the count is reported once, before the next line. */
	fake_now++;
	log_event(LOG_INFO, "other", "x=2");
	assert_int_equal(count_lines(path, "log_suppressed kind=\"protocol_error\" count=99980"), 1);
	for (int i = 0; i < 5; i++)
		log_event(LOG_INFO, "protocol_error", "i=%d", i);
	assert_int_equal(count_lines(path, "event=protocol_error i="), LOG_RATE_DEFAULT + 5);
	assert_int_equal(count_lines(path, "event=log_suppressed"), 1);
	/* Lines below the level are not counted against the limit. */
	log_set_level(LOG_WARN);
	for (int i = 0; i < 1000; i++)
		log_event(LOG_DEBUG, "quiet", "i=%d", i);
	log_set_level(LOG_INFO);
	log_event(LOG_INFO, "quiet", "i=last");
	assert_int_equal(count_lines(path, "event=quiet"), 1);
	/* log_flush_suppressed reports at once. */
	for (int i = 0; i < 30; i++)
		log_event(LOG_INFO, "burst", "i=%d", i);
	log_flush_suppressed();
	assert_int_equal(count_lines(path, "log_suppressed kind=\"burst\" count=10"), 1);
	/*
	 * Kinds: the same event with another method, status or reason is limited apart, so a
	 * flood of one refusal does not hide a different one; other fields do not make kinds.
	 */
	for (int i = 0; i < 100; i++)
		log_event(LOG_INFO, "conn_refused", "reason=unknown_per_uid_limit uid=%d", i);
	log_event(LOG_INFO, "conn_refused", "reason=per_uid_limit uid=7");
	for (int i = 0; i < 100; i++)
		log_event(LOG_INFO, "call", "conn=%d method=Hello status=OK", i);
	log_event(LOG_INFO, "call", "conn=1 method=Resolve status=OK");
	log_event(LOG_INFO, "call", "conn=1 method=Resolve status=UNAVAILABLE");
	assert_int_equal(count_lines(path, "reason=unknown_per_uid_limit"), LOG_RATE_DEFAULT);
	assert_int_equal(count_lines(path, "reason=per_uid_limit"), 1);
	assert_int_equal(count_lines(path, "method=Hello"), LOG_RATE_DEFAULT);
	assert_int_equal(count_lines(path, "method=Resolve status=OK"), 1);
	assert_int_equal(count_lines(path, "method=Resolve status=UNAVAILABLE"), 1);
	log_flush_suppressed();
	assert_int_equal(count_lines(path,
	    "log_suppressed kind=\"call method=Hello status=OK\" count=80"), 1);
	log_set_clock(NULL);
	assert_int_equal(log_open(NULL, &err), 0);
	unlink(path);
}

static void test_log_q_escapes(void **state)
{
	(void)state;
	assert_string_equal(log_q("plain"), "\"plain\"");
	assert_string_equal(log_q("a\"b\\c"), "\"a\\\"b\\\\c\"");
	assert_string_equal(log_q("x\n\x1b[31m\x7f"), "\"x\\x0a\\x1b[31m\\x7f\"");
	/* valid UTF-8 stays; bytes that are not UTF-8 never go out raw */
	assert_string_equal(log_q("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
	assert_string_equal(log_q("a\xff\xc0\x80\xed\xa0\x80"),
	    "\"a\\xff\\xc0\\x80\\xed\\xa0\\x80\"");
	assert_string_equal(log_q(NULL), "\"\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_log_q_escapes),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
