#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ref.h"

#define UUID_L "0123abcd-0000-4000-8000-00000000abcd"
#define UUID_U "0123ABCD-0000-4000-8000-00000000ABCD"

struct valid_case {
	const char *in;
	const char *company;
	const char *name;
	const char *secret_id;
	uint32_t version;
	const char *canonical;
};

static const struct valid_case valid[] = {
	{ "pcs:acme/key", "acme", "key", "", 0, "pcs:acme/key" },
	{ "pcs:acme/key@3", "acme", "key", "", 3, "pcs:acme/key@3" },
	{ "pcs:acme/key@latest", "acme", "key", "", 0, "pcs:acme/key" },
	{ "pcs:acme/key@1", "acme", "key", "", 1, "pcs:acme/key@1" },
	{ "pcs:a/b@2147483647", "a", "b", "", 2147483647u, "pcs:a/b@2147483647" },
	{ "pcs:my-co_1.x/api.key-2_b", "my-co_1.x", "api.key-2_b", "", 0,
	    "pcs:my-co_1.x/api.key-2_b" },
	{ "pcs:.a/..b", ".a", "..b", "", 0, "pcs:.a/..b" },
	{ "pcs:0/9@10", "0", "9", "", 10, "pcs:0/9@10" },
	{ "pcs:" UUID_L, "", "", UUID_L, 0, "pcs:" UUID_L },
	{ "pcs:" UUID_L "@latest", "", "", UUID_L, 0, "pcs:" UUID_L },
	{ "pcs:" UUID_L "@42", "", "", UUID_L, 42, "pcs:" UUID_L "@42" },
	{ "pcs:" UUID_U "@7", "", "", UUID_L, 7, "pcs:" UUID_L "@7" },
	/* A company may be named like a uuid: the '/' decides which form it is. */
	{ "pcs:" UUID_L "/key", UUID_L, "key", "", 0, "pcs:" UUID_L "/key" },
};

struct invalid_case {
	const char *in;
	const char *message;  /* exact message, or NULL to only require one */
};

static const struct invalid_case invalid[] = {
	{ "", "reference is empty" },
	{ "acme/key", "reference \"acme/key\" does not start with \"pcs:\"" },
	{ "PCS:acme/key", NULL },
	{ " pcs:acme/key", NULL },
	{ "pcs:", "reference \"pcs:\" names no secret" },
	{ "pcs:@3", NULL },
	{ "pcs:acme", "reference \"pcs:acme\" has no secret name "
	    "(expected pcs:COMPANY/NAME or pcs:SECRET-ID)" },
	{ "pcs:acme@3", NULL },
	{ "pcs:acme/", "reference \"pcs:acme/\" has no secret name" },
	{ "pcs:/key", "reference \"pcs:/key\" has no company" },
	{ "pcs:/", NULL },
	{ "pcs:acme/key@", "reference \"pcs:acme/key@\" ends with '@' but names no version" },
	{ "pcs:acme/key@0", "version \"0\" in reference \"pcs:acme/key@0\" is not \"latest\" "
	    "or a number from 1 to 2147483647" },
	{ "pcs:acme/key@01", NULL },
	{ "pcs:acme/key@+1", NULL },
	{ "pcs:acme/key@-1", NULL },
	{ "pcs:acme/key@ 1", NULL },
	{ "pcs:acme/key@1 ", NULL },
	{ "pcs:acme/key@1x", NULL },
	{ "pcs:acme/key@2147483648", NULL },
	{ "pcs:acme/key@4294967296", NULL },
	{ "pcs:acme/key@4294967297", NULL },
	{ "pcs:acme/key@99999999999", NULL },
	{ "pcs:acme/key@LATEST", NULL },
	{ "pcs:acme/key@latest1", NULL },
	{ "pcs:acme/key@1@2", "reference \"pcs:acme/key@1@2\" has more than one '@'" },
	{ "pcs:acme/key/extra", "reference \"pcs:acme/key/extra\" has more than one '/'" },
	{ "pcs:acme//key", NULL },
	{ "pcs:acme/key/", NULL },
	{ "pcs:Acme/key", "company \"Acme\" in reference \"pcs:Acme/key\" contains 'A'" },
	{ "pcs:acme/Key", "secret name \"Key\" in reference \"pcs:acme/Key\" contains 'K'" },
	{ "pcs:acme/my key", "secret name \"my key\" in reference \"pcs:acme/my key\" "
	    "contains byte 0x20" },
	{ "pcs:acme/key ", NULL },
	{ "pcs:acme/ke\ny", "secret name \"ke?y\" in reference \"pcs:acme/ke?y\" "
	    "contains byte 0x0a" },
	{ "pcs:acme/k\xc3\xa9y", NULL },
	{ "pcs:acme/k\"y", NULL },
	{ "pcs:./key", "company \".\" in reference \"pcs:./key\" may not be \".\" or \"..\"" },
	{ "pcs:../key", NULL },
	{ "pcs:acme/.", NULL },
	{ "pcs:acme/..", NULL },
	{ "pcs:acme/key:1", NULL },
	{ "pcs:0123abcd-0000-4000-8000-00000000abc", NULL },
	{ "pcs:0123abcd-0000-4000-8000-00000000abcde", NULL },
	{ "pcs:0123abcd-0000-4000-8000-00000000abcg", NULL },
	{ "pcs:0123abcd00000-4000-8000-00000000abcd", NULL },
	{ "pcs:{0123abcd-0000-4000-8000-00000000abcd}", NULL },
};

static void
check_empty(const struct pcs_ref *r)
{
	assert_string_equal(r->company, "");
	assert_string_equal(r->name, "");
	assert_string_equal(r->secret_id, "");
	assert_int_equal(r->version, 0);
}

static void
test_valid(void **state)
{
	struct pcs_ref r, again;
	pcs_error err;
	char buf[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const struct valid_case *c = &valid[i];

		pcs_error_clear(&err);
		if (ref_parse(c->in, &r, &err) != 0)
			fail_msg("%s: %s", c->in, err.message);
		assert_string_equal(r.company, c->company);
		assert_string_equal(r.name, c->name);
		assert_string_equal(r.secret_id, c->secret_id);
		assert_int_equal(r.version, c->version);

		assert_int_equal(ref_format(&r, buf, sizeof(buf)), 0);
		assert_string_equal(buf, c->canonical);
		assert_int_equal(ref_parse(buf, &again, &err), 0);
		assert_memory_equal(&r, &again, sizeof(r));
	}
}

static void
test_invalid(void **state)
{
	struct pcs_ref r;
	pcs_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		const struct invalid_case *c = &invalid[i];

		pcs_error_clear(&err);
		memset(&r, 0x41, sizeof(r));
		if (ref_parse(c->in, &r, &err) != -PCS_INVALID_ARGUMENT)
			fail_msg("accepted invalid reference \"%s\"", c->in);
		assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
		assert_true(err.message[0] != '\0');
		assert_null(strchr(err.message, '\n'));
		if (c->message != NULL)
			assert_string_equal(err.message, c->message);
		check_empty(&r);
	}
	assert_int_equal(ref_parse(NULL, &r, &err), -PCS_INVALID_ARGUMENT);
}

/* The longest names fit; one character more in either part is refused. */
static void
test_lengths(void **state)
{
	char n128[PCS_NAME_MAX + 1], n129[PCS_NAME_MAX + 2], s[400], buf[300];
	struct pcs_ref r, again;
	pcs_error err;

	(void)state;
	memset(n128, 'a', PCS_NAME_MAX);
	n128[PCS_NAME_MAX] = '\0';
	memset(n129, 'b', PCS_NAME_MAX + 1);
	n129[PCS_NAME_MAX + 1] = '\0';

	snprintf(s, sizeof(s), "pcs:%s/%s@2147483647", n128, n128);
	assert_int_equal(ref_parse(s, &r, &err), 0);
	assert_int_equal(strlen(r.company), PCS_NAME_MAX);
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), 0);
	assert_string_equal(buf, s);
	assert_int_equal(ref_parse(buf, &again, &err), 0);
	assert_memory_equal(&r, &again, sizeof(r));
	/* One byte short of room for the NUL is refused, not truncated. */
	assert_int_equal(ref_format(&r, buf, strlen(s)), -PCS_INVALID_ARGUMENT);
	assert_string_equal(buf, "");

	snprintf(s, sizeof(s), "pcs:%s/key", n129);
	assert_int_equal(ref_parse(s, &r, &err), -PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "is longer than 128 characters"));
	snprintf(s, sizeof(s), "pcs:acme/%s", n129);
	assert_int_equal(ref_parse(s, &r, &err), -PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "is longer than 128 characters"));
	snprintf(s, sizeof(s), "pcs:%s/%s@1%s", n128, n128, "0000000000");
	assert_int_equal(ref_parse(s, &r, &err), -PCS_INVALID_ARGUMENT);
	assert_true(strlen(err.message) < sizeof(err.message));
}

static void
test_format_refuses(void **state)
{
	struct pcs_ref r;
	char buf[64];

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), -PCS_INVALID_ARGUMENT);
	strcpy(r.company, "acme");
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), -PCS_INVALID_ARGUMENT);
	strcpy(r.name, "Bad");
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), -PCS_INVALID_ARGUMENT);
	strcpy(r.name, "key");
	r.version = 2147483648u;
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), -PCS_INVALID_ARGUMENT);
	r.version = 5;
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "pcs:acme/key@5");
	assert_int_equal(ref_format(&r, buf, 0), -PCS_INVALID_ARGUMENT);
	assert_int_equal(ref_format(&r, NULL, 10), -PCS_INVALID_ARGUMENT);
	strcpy(r.secret_id, UUID_U);
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), -PCS_INVALID_ARGUMENT);
	strcpy(r.secret_id, UUID_L);
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "pcs:" UUID_L "@5");
}

static void
test_name_valid(void **state)
{
	static const char *const good[] = { "a", "acme", "0", "a.b", "a-b_c", "..a", "...",
	    ".x", "openai-api-key", "9.9" };
	static const char *const bad[] = { "", ".", "..", "A", "aB", "a b", "a/b", "a@b",
	    "a:b", "a\n", "caf\xc3\xa9", "-\t", "a+b" };
	char n[PCS_NAME_MAX + 2];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!name_valid(good[i]))
			fail_msg("name \"%s\" refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (name_valid(bad[i]))
			fail_msg("name \"%s\" accepted", bad[i]);
	assert_false(name_valid(NULL));
	memset(n, 'z', sizeof(n));
	n[PCS_NAME_MAX] = '\0';
	assert_true(name_valid(n));
	n[PCS_NAME_MAX] = 'z';
	n[PCS_NAME_MAX + 1] = '\0';
	assert_false(name_valid(n));
}

static void
test_env_name_valid(void **state)
{
	static const char *const good[] = { "A", "_", "OPENAI_API_KEY", "path", "_9", "a1B2",
	    "__" };
	static const char *const bad[] = { "", "1A", "A-B", "A B", "A=B", "A.B", "\xc3\xa9",
	    "A\n" };
	char n[PCS_ENV_NAME_MAX + 2];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!env_name_valid(good[i]))
			fail_msg("env name \"%s\" refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (env_name_valid(bad[i]))
			fail_msg("env name \"%s\" accepted", bad[i]);
	assert_false(env_name_valid(NULL));
	memset(n, 'X', sizeof(n));
	n[PCS_ENV_NAME_MAX] = '\0';
	assert_true(env_name_valid(n));
	n[PCS_ENV_NAME_MAX] = 'X';
	n[PCS_ENV_NAME_MAX + 1] = '\0';
	assert_false(env_name_valid(n));
}

static void
test_uuid_valid(void **state)
{
	static const char *const good[] = { UUID_L, "00000000-0000-0000-0000-000000000000",
	    "ffffffff-ffff-ffff-ffff-ffffffffffff" };
	static const char *const bad[] = { "", UUID_U, "0123abcd-0000-4000-8000-00000000abc",
	    "0123abcd-0000-4000-8000-00000000abcde", "0123abcd-0000-4000-8000-00000000abcg",
	    "0123abcd00000-4000-8000-00000000abcd", "0123abcd-0000-4000-8000_00000000abcd",
	    "0123abcd000004000800000000000abcd", " 0123abcd-0000-4000-8000-00000000abc" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!uuid_valid(good[i]))
			fail_msg("uuid \"%s\" refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (uuid_valid(bad[i]))
			fail_msg("uuid \"%s\" accepted", bad[i]);
	assert_false(uuid_valid(NULL));
}

static void
test_parse_path(void **state)
{
	static const struct {
		const char *in;
		const char *company;  /* NULL: must be refused */
		const char *name;
	} cases[] = {
		{ "acme/key", "acme", "key" },
		{ "a/b", "a", "b" },
		{ "my-co.1/agent_x", "my-co.1", "agent_x" },
		{ "acme", NULL, NULL },
		{ "acme/", NULL, NULL },
		{ "/key", NULL, NULL },
		{ "/", NULL, NULL },
		{ "", NULL, NULL },
		{ "acme/key/x", NULL, NULL },
		{ "Acme/key", NULL, NULL },
		{ "acme/Key", NULL, NULL },
		{ "acme/..", NULL, NULL },
		{ "./key", NULL, NULL },
		{ "pcs:acme/key", NULL, NULL },
		{ "acme/key@3", NULL, NULL },
		{ "acme /key", NULL, NULL },
	};
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1], s[400], n129[PCS_NAME_MAX + 2];
	pcs_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = ref_parse_path(cases[i].in, company, name, &err);

		if (cases[i].company == NULL) {
			if (r != -PCS_INVALID_ARGUMENT)
				fail_msg("path \"%s\" accepted", cases[i].in);
			assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
			assert_string_equal(company, "");
			assert_string_equal(name, "");
			continue;
		}
		if (r != 0)
			fail_msg("path \"%s\" refused: %s", cases[i].in, err.message);
		assert_string_equal(company, cases[i].company);
		assert_string_equal(name, cases[i].name);
	}
	assert_int_equal(ref_parse_path("acme", company, name, &err), -PCS_INVALID_ARGUMENT);
	assert_string_equal(err.message, "\"acme\" is not COMPANY/NAME: it has no '/'");
	assert_int_equal(ref_parse_path(NULL, company, name, &err), -PCS_INVALID_ARGUMENT);

	memset(n129, 'q', sizeof(n129));
	n129[PCS_NAME_MAX + 1] = '\0';
	snprintf(s, sizeof(s), "acme/%s", n129);
	assert_int_equal(ref_parse_path(s, company, name, &err), -PCS_INVALID_ARGUMENT);
	snprintf(s, sizeof(s), "%s/key", n129);
	assert_int_equal(ref_parse_path(s, company, name, &err), -PCS_INVALID_ARGUMENT);
	n129[PCS_NAME_MAX] = '\0';
	snprintf(s, sizeof(s), "%s/%s", n129, n129);
	assert_int_equal(ref_parse_path(s, company, name, &err), 0);
	assert_string_equal(company, n129);
	assert_string_equal(name, n129);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_format_refuses),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_env_name_valid),
		cmocka_unit_test(test_uuid_valid),
		cmocka_unit_test(test_parse_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
