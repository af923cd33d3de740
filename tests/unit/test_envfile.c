/*
 * pcrun's --env-file (dotenv) and --env-json (Paperclip's agent env format) parsers
 * (client/envfile.c): what each form gives, and hostile input refused with a message that
 * names the file, line or variable and never quotes a value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "envfile.h"

#define SECRET "s3cr3t-value-never-echoed"

struct got {
	char text[2048]; /* "NAME=ref:..." or "NAME=lit:..." lines joined by ';' */
	size_t n;
};

static int collect(void *ctx, const char *name, const char *ref, const char *value, size_t len,
    pcs_error *err)
{
	struct got *g = ctx;
	size_t used = strlen(g->text);

	(void)err;
	if (ref != NULL)
		snprintf(g->text + used, sizeof(g->text) - used, "%s=ref:%s;", name, ref);
	else
		snprintf(g->text + used, sizeof(g->text) - used, "%s=lit:%.*s;", name, (int)len,
		    value);
	g->n++;
	return 0;
}

static int dotenv(const char *text, struct got *g, pcs_error *err)
{
	memset(g, 0, sizeof(*g));
	memset(err, 0, sizeof(*err));
	return envfile_parse_dotenv("f.env", text, strlen(text), collect, g, err);
}

static int json(const char *text, struct got *g, pcs_error *err)
{
	memset(g, 0, sizeof(*g));
	memset(err, 0, sizeof(*err));
	return envfile_parse_json("f.json", text, strlen(text), collect, g, err);
}

static void test_dotenv_forms(void **state)
{
	struct got g;
	pcs_error err;

	(void)state;
	assert_int_equal(dotenv("# comment\n\n  \nA=plain\nexport B = spaced out  # note\r\n"
	                        "C='single $HOME \\n'\nD=\"dq \\\"x\\\" \\n\\t\\\\ \\$\"\n"
	                        "E=pcs:acme/key@3\nF=\"pcs:acme/q\"\nG=\nH=a#b\n",
	                     &g, &err),
	    0);
	assert_string_equal(g.text,
	    "A=lit:plain;B=lit:spaced out;C=lit:single $HOME \\n;"
	    "D=lit:dq \"x\" \n\t\\ $;E=ref:pcs:acme/key@3;F=ref:pcs:acme/q;G=lit:;H=lit:a#b;");
	/* Quoted or not, a value starting with pcs: is a reference. */
	assert_int_equal(dotenv("X='pcs:acme/k'", &g, &err), 0);
	assert_string_equal(g.text, "X=ref:pcs:acme/k;");
}

/* Each malformed line is refused, naming the file and line, never quoting the value. */
static void test_dotenv_hostile(void **state)
{
	static const char *const bad[] = {
		"A=\"" SECRET "\n",          /* unterminated */
		"A='" SECRET,                /* unterminated, no newline */
		"A=\"" SECRET "\" trailing", /* text after the quote */
		"A=\"\\q" SECRET "\"",       /* unknown escape */
		SECRET "\n",                 /* no '=' */
		"=" SECRET,                  /* no name */
		"1A=" SECRET,                /* invalid name */
		"A-B=" SECRET,               /* invalid name */
		"LD_PRELOAD=" SECRET,        /* refused name */
		"A=b\nexport\n",             /* no '=' on line 2 */
		"A\0B=" SECRET,              /* NUL in the name */
	};
	static const size_t lens[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4 + sizeof(SECRET) - 1 };
	struct got g;
	pcs_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&g, 0, sizeof(g));
		memset(&err, 0, sizeof(err));
		assert_int_equal(envfile_parse_dotenv("f.env", bad[i], lens[i] ? lens[i] : strlen(bad[i]),
		                     collect, &g, &err),
		    -PCS_INVALID_ARGUMENT);
		if (strstr(err.message, "f.env") == NULL || strstr(err.message, SECRET) != NULL)
			fail_msg("case %zu: \"%s\"", i, err.message);
	}
	assert_int_equal(dotenv("A=b\nexport\n", &g, &err), -PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "f.env:2"));
	/* The refused name is named; the invalid one is not quoted. */
	assert_int_equal(dotenv("LD_PRELOAD=x", &g, &err), -PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "LD_PRELOAD"));
}

static void test_json_paperclip_forms(void **state)
{
	struct got g;
	pcs_error err;

	(void)state;
	assert_int_equal(
	    json("{\"A\": \"literal\", \"B\": \"pcs:acme/k@2\","
	         " \"C\": {\"type\": \"plain\", \"value\": \"pcs:not-a-ref\"},"
	         " \"D\": {\"type\": \"secret_ref\", \"secretId\": "
	         "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": \"latest\"},"
	         " \"E\": {\"type\": \"secret_ref\", \"secretId\": "
	         "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": 7},"
	         " \"F\": {\"type\": \"secret_ref\", \"secretId\": "
	         "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": \"12\"},"
	         " \"G\": {\"secretId\": \"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\","
	         " \"type\": \"secret_ref\"}}",
	        &g, &err),
	    0);
	assert_string_equal(g.text,
	    "A=lit:literal;B=ref:pcs:acme/k@2;C=lit:pcs:not-a-ref;"
	    "D=ref:pcs:0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e;"
	    "E=ref:pcs:0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e@7;"
	    "F=ref:pcs:0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e@12;"
	    "G=ref:pcs:0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e;");
}

static void test_json_hostile(void **state)
{
	static const struct {
		const char *text;
		const char *says;
	} bad[] = {
		{ "[\"" SECRET "\"]", "not a JSON object" },
		{ "{\"A\": \"" SECRET "\"", "not a JSON document" },
		{ "{\"A\": \"x\", \"A\": \"" SECRET "\"}", "not a JSON document" },
		{ "{\"A\": 5}", "A: not a string or an object" },
		{ "{\"A\": null}", "A: not a string or an object" },
		{ "{\"A\": [\"" SECRET "\"]}", "A: not a string or an object" },
		{ "{\"A\": {\"value\": \"" SECRET "\"}}", "A: no \"type\"" },
		{ "{\"A\": {\"type\": \"env\", \"value\": \"" SECRET "\"}}", "A: unknown type" },
		{ "{\"A\": {\"type\": \"plain\"}}", "A: a plain entry needs" },
		{ "{\"A\": {\"type\": \"plain\", \"value\": 3}}", "A: a plain entry needs" },
		{ "{\"A\": {\"type\": \"plain\", \"value\": \"" SECRET "\", \"x\": 1}}",
		    "A: unexpected member" },
		{ "{\"A\": {\"type\": \"secret_ref\"}}", "A: secretId" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": \"acme/k\"}}", "A: secretId" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		  "\"0B7C4C9E-8A1F-4F61-9D1E-3F2A3B4C5D6E\"}}",
		    "A: secretId" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		  "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": \"3x\"}}",
		    "A: version" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		  "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": 0}}",
		    "A: version" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		  "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": \"99999999999\"}}",
		    "A: version" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		  "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": 1.5}}",
		    "A: version" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		  "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": \"\"}}",
		    "A: version" },
		{ "{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		  "\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": \"latest\", \"v\": 1}}",
		    "A: unexpected member" },
		{ "{\"LD_PRELOAD\": \"" SECRET "\"}", "LD_PRELOAD" },
		{ "{\"" SECRET " x\": \"y\"}", "f.json" },
		{ "{\"A\": \"pcs:\\u0000" SECRET "\"}", "not a JSON document" },
	};
	struct got g;
	pcs_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(json(bad[i].text, &g, &err), -PCS_INVALID_ARGUMENT);
		if (strstr(err.message, bad[i].says) == NULL || strstr(err.message, SECRET) != NULL ||
		    strstr(err.message, "f.json") == NULL)
			fail_msg("case %zu: \"%s\", want \"%s\"", i, err.message, bad[i].says);
		assert_int_equal(g.n, 0);
	}
}

/* Random bytes and random mutations of valid files: refused or accepted, never a crash. */
static void test_random_input(void **state)
{
	static const char *const seeds[] = {
		"A=1\nexport B='x'\nC=\"y\\n\"\n",
		"{\"A\": {\"type\": \"secret_ref\", \"secretId\": "
		"\"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e\", \"version\": 3}}",
	};
	char buf[256];
	struct got g;
	pcs_error err;
	size_t len, i, k;
	int round, r;

	(void)state;
	for (round = 0; round < 2000; round++) {
		k = (size_t)round % 2;
		len = strlen(seeds[k]);
		memcpy(buf, seeds[k], len);
		for (i = 0; i < 1 + randombytes_uniform(4); i++)
			buf[randombytes_uniform((uint32_t)len)] = (char)randombytes_uniform(256);
		memset(&g, 0, sizeof(g));
		r = envfile_parse_dotenv("f", buf, len, collect, &g, &err);
		assert_true(r == 0 || r == -PCS_INVALID_ARGUMENT);
		memset(&g, 0, sizeof(g));
		r = envfile_parse_json("f", buf, len, collect, &g, &err);
		assert_true(r == 0 || r == -PCS_INVALID_ARGUMENT);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dotenv_forms),
		cmocka_unit_test(test_dotenv_hostile),
		cmocka_unit_test(test_json_paperclip_forms),
		cmocka_unit_test(test_json_hostile),
		cmocka_unit_test(test_random_input),
	};

	if (sodium_init() < 0)
		return 1;
	envfile_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
