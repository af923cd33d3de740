/*
 * pcrun --on-change's decisions (client/onchange.c): the option's modes and signal names,
 * which watch events are checked, and when a new resolution differs from the child's.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "onchange.h"

static void test_parse(void **state)
{
	static const struct {
		const char *arg;
		int ok;
		enum onchange_mode mode;
		int sig;
	} cases[] = {
		{ "restart", 1, ONCHANGE_RESTART, 0 },
		{ "exit", 1, ONCHANGE_EXIT, 0 },
		{ "signal:HUP", 1, ONCHANGE_SIGNAL, SIGHUP },
		{ "signal:SIGHUP", 1, ONCHANGE_SIGNAL, SIGHUP },
		{ "signal:usr1", 1, ONCHANGE_SIGNAL, SIGUSR1 },
		{ "signal:USR2", 1, ONCHANGE_SIGNAL, SIGUSR2 },
		{ "signal:TERM", 1, ONCHANGE_SIGNAL, SIGTERM },
		{ "signal:KILL", 0, ONCHANGE_NONE, 0 },
		{ "signal:STOP", 0, ONCHANGE_NONE, 0 },
		{ "signal:", 0, ONCHANGE_NONE, 0 },
		{ "signal:1", 0, ONCHANGE_NONE, 0 },
		{ "signal", 0, ONCHANGE_NONE, 0 },
		{ "Restart", 0, ONCHANGE_NONE, 0 },
		{ "", 0, ONCHANGE_NONE, 0 },
	};
	enum onchange_mode mode;
	size_t i;
	int sig;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mode = ONCHANGE_NONE;
		if (onchange_parse(cases[i].arg, &mode, &sig) != (cases[i].ok ? 0 : -1))
			fail_msg("\"%s\": accepted %d", cases[i].arg, !cases[i].ok);
		if (cases[i].ok && (mode != cases[i].mode || sig != cases[i].sig))
			fail_msg("\"%s\": mode %d sig %d", cases[i].arg, mode, sig);
	}
}

static void test_events(void **state)
{
	(void)state;
	assert_false(onchange_event_matters(PCS_WATCH_STAGED));
	assert_false(onchange_event_matters(PCS_WATCH_ENABLED));
	assert_true(onchange_event_matters(PCS_WATCH_NEW_VERSION));
	assert_true(onchange_event_matters(PCS_WATCH_PROMOTED));
	assert_true(onchange_event_matters(PCS_WATCH_ROLLBACK));
	assert_true(onchange_event_matters(PCS_WATCH_DISABLED));
	assert_true(onchange_event_matters(PCS_WATCH_DELETED));
	assert_true(onchange_event_matters(PCS_WATCH_RESTORED));
	assert_true(onchange_event_matters(PCS_WATCH_PURGED));
	assert_true(onchange_event_matters(PCS_WATCH_BINDING_CHANGED));
	/* A kind this pcrun does not know is checked, not ignored. */
	assert_true(onchange_event_matters(PCS_WATCH_OTHER));
}

static struct runenv_var var(const char *name, const char *value, uint32_t version)
{
	struct runenv_var v;

	memset(&v, 0, sizeof(v));
	v.name = (char *)(uintptr_t)name;
	v.value = (unsigned char *)(uintptr_t)value;
	v.len = value != NULL ? strlen(value) : 0;
	v.version = version;
	v.secret = version != 0;
	return v;
}

static void test_differs(void **state)
{
	struct runenv_var a[3], b[4];
	struct runenv ra = { a, 3, 3 }, rb = { b, 3, 4 };
	const char *name = NULL;
	unsigned va = 0, vb = 0;

	(void)state;
	a[0] = var("K", "value-1", 1);
	a[1] = var("LIT", "text", 0);
	a[2] = var("D", "db-2", 2);
	memcpy(b, a, sizeof(a));
	assert_false(onchange_differs(&ra, &rb, &name, &va, &vb));

	/* A new version. */
	b[0] = var("K", "value-3", 3);
	assert_true(onchange_differs(&ra, &rb, &name, &va, &vb));
	assert_string_equal(name, "K");
	assert_int_equal(va, 1);
	assert_int_equal(vb, 3);

	/* The same version of another secret (a binding moved): the value tells. */
	b[0] = var("K", "other-1", 1);
	assert_true(onchange_differs(&ra, &rb, &name, &va, &vb));
	assert_string_equal(name, "K");

	/* A variable gone, and one added. */
	b[0] = a[0];
	rb.n = 2;
	assert_true(onchange_differs(&ra, &rb, &name, &va, &vb));
	assert_string_equal(name, "D");
	assert_int_equal(vb, 0);
	rb.n = 4;
	b[3] = var("NEW", "n-1", 1);
	assert_true(onchange_differs(&ra, &rb, &name, &va, &vb));
	assert_string_equal(name, "NEW");
	assert_int_equal(va, 0);

	/* An overridden variable is not delivered: its difference does not count. */
	b[3].overridden = 1;
	assert_false(onchange_differs(&ra, &rb, NULL, NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_differs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
