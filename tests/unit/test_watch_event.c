/*
 * The pcs_watch payloads (migrations/011_watch_events.sql) as the daemon takes them apart:
 * every kind the triggers send, and a table of payloads that must be refused whole (a newer
 * schema's kind, a cut or padded field, a number out of range, an uppercase uuid).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "watch_event.h"

#define ID "0b5c3a1e-9f7d-4c2b-8a6e-1d2f3a4b5c6d"

static void test_every_kind(void **state)
{
	char payload[96];
	struct watch_event ev;

	(void)state;
	for (int k = 0; k < WATCH_KIND_COUNT; k++) {
		const char *name = watch_kind_name((enum watch_kind)k);
		assert_non_null(name);
		snprintf(payload, sizeof(payload), "%s %s %d %d", name, ID, k + 1, k);
		assert_int_equal(watch_event_parse(payload, &ev), 0);
		assert_int_equal(ev.kind, k);
		assert_string_equal(ev.id, ID);
		assert_int_equal(ev.latest, (uint32_t)k + 1);
		assert_int_equal(ev.version, (uint32_t)k);
	}
	assert_null(watch_kind_name(WATCH_KIND_COUNT));
	assert_int_equal(watch_event_parse("rollback " ID " 2147483647 2147483647", &ev), 0);
	assert_int_equal(ev.kind, WATCH_ROLLBACK);
	assert_int_equal(ev.latest, 2147483647u);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"new_version",
		"new_version ",
		"renamed " ID " 1 0", /* a kind this build does not know */
		"New_version " ID " 1 0",
		"new_version  " ID " 1 0",  /* two spaces */
		"new_version " ID " 1",     /* a field missing */
		"new_version " ID " 1 0 ",  /* trailing space */
		"new_version " ID " 1 0 7", /* a field too many */
		"new_version " ID " 01 0",  /* leading zero */
		"new_version " ID " -1 0",
		"new_version " ID " +1 0",
		"new_version " ID " 2147483648 0", /* above a version's range */
		"new_version " ID " 99999999999 0",
		"new_version " ID " 1 x",
		"new_version 0B5C3A1E-9F7D-4C2B-8A6E-1D2F3A4B5C6D 1 0", /* uppercase */
		"new_version 0b5c3a1e-9f7d-4c2b-8a6e-1d2f3a4b5c6 1 0",  /* 35 characters */
		"new_version 0b5c3a1e-9f7d-4c2b-8a6e-1d2f3a4b5c6dd 1 0",
		"new_version 0b5c3a1e09f7d-4c2b-8a6e-1d2f3a4b5c6d 1 0", /* a dash missing */
		"s " ID,                                                /* the cache's channel */
		"p",
	};
	struct watch_event ev;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (watch_event_parse(bad[i], &ev) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	assert_int_equal(watch_event_parse(NULL, &ev), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests_name("watch_event", tests, NULL, NULL);
}
