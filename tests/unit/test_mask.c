/*
 * The streaming masker of pcrun --mask (client/mask.c): every value is replaced whatever the
 * split of the stream into feeds (every split point, and byte by byte), the longest value wins
 * where values overlap, text around values is kept as is, and nothing is held back at flush.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "mask.h"

struct sink {
	unsigned char buf[4096];
	size_t len;
};

static int sink_write(void *ctx, const unsigned char *b, size_t len)
{
	struct sink *s = ctx;

	assert_true(s->len + len <= sizeof(s->buf));
	memcpy(s->buf + s->len, b, len);
	s->len += len;
	return 0;
}

/* Masks in feeds of the given sizes (cycled), then flushes; out gets the result. */
static void run(const struct mask_value *vals, size_t nvals, const char *in, size_t inlen,
    const size_t *sizes, size_t nsizes, struct sink *out)
{
	struct mask_value sorted[8];
	struct mask m;
	size_t off = 0, k = 0, n;

	if (nvals > 0)
		memcpy(sorted, vals, nvals * sizeof(*vals));
	mask_values_sort(sorted, nvals);
	memset(out, 0, sizeof(*out));
	assert_int_equal(mask_init(&m, sorted, nvals, 1024, sink_write, out, NULL), 0);
	while (off < inlen) {
		n = sizes[k++ % nsizes];
		if (n > inlen - off)
			n = inlen - off;
		assert_int_equal(mask_feed(&m, (const unsigned char *)in + off, n), 0);
		off += n;
	}
	assert_int_equal(mask_flush(&m), 0);
	mask_free(&m);
}

static void expect(const struct sink *s, const char *want)
{
	if (s->len != strlen(want) || memcmp(s->buf, want, s->len) != 0)
		fail_msg("got \"%.*s\", want \"%s\"", (int)s->len, (const char *)s->buf, want);
}

#define M MASK_TEXT

static void test_whole_and_split_everywhere(void **state)
{
	static const struct mask_value v[] = { { (const unsigned char *)"sk-secret-42", 12 } };
	const char *in = "key=sk-secret-42; again sk-secret-42\nsk-secret-4 is not it";
	const char *want = "key=" M "; again " M "\nsk-secret-4 is not it";
	struct sink s;
	size_t split, sizes[2];

	(void)state;
	sizes[0] = strlen(in);
	run(v, 1, in, strlen(in), sizes, 1, &s);
	expect(&s, want);
	sizes[0] = 1;
	run(v, 1, in, strlen(in), sizes, 1, &s);
	expect(&s, want);
	/* Two feeds, split at every offset; then feeds of every size up to the value's. */
	for (split = 1; split < strlen(in); split++) {
		sizes[0] = split;
		sizes[1] = strlen(in);
		run(v, 1, in, strlen(in), sizes, 2, &s);
		expect(&s, want);
	}
	for (split = 2; split <= 13; split++) {
		sizes[0] = split;
		run(v, 1, in, strlen(in), sizes, 1, &s);
		expect(&s, want);
	}
}

static void test_value_at_the_end_is_flushed_masked(void **state)
{
	static const struct mask_value v[] = { { (const unsigned char *)"abcdef", 6 } };
	const size_t one = 1;
	struct sink s;

	(void)state;
	run(v, 1, "xxabcdef", 8, &one, 1, &s);
	expect(&s, "xx" M);
	/* A prefix of the value at the end is not the value: written as is. */
	run(v, 1, "xxabcde", 7, &one, 1, &s);
	expect(&s, "xxabcde");
	run(v, 1, "", 0, &one, 1, &s);
	expect(&s, "");
}

static void test_overlapping_values_longest_wins(void **state)
{
	static const struct mask_value v[] = {
		{ (const unsigned char *)"pass", 4 },
		{ (const unsigned char *)"password123", 11 },
		{ (const unsigned char *)"word", 4 },
	};
	const size_t sizes[] = { 3 };
	struct sink s;

	(void)state;
	run(v, 3, "a password123 b pass c word d", 29, sizes, 1, &s);
	expect(&s, "a " M " b " M " c " M " d");
	/* Adjacent values, and a value repeated back to back. */
	run(v, 3, "passpassword123wordword", 23, sizes, 1, &s);
	expect(&s, M M M M);
}

static void test_binary_values(void **state)
{
	static const unsigned char bin[] = { 0, 1, 0, 255, 0 };
	static const struct mask_value v[] = { { bin, sizeof(bin) } };
	const unsigned char in[] = { 'x', 0, 1, 0, 255, 0, 'y', 0 };
	const size_t sizes[] = { 2 };
	struct sink s;

	(void)state;
	run(v, 1, (const char *)in, sizeof(in), sizes, 1, &s);
	assert_int_equal(s.len, 1 + strlen(M) + 2);
	assert_memory_equal(s.buf, "x" M "y", 1 + strlen(M) + 1);
	assert_int_equal(s.buf[s.len - 1], 0);
}

static void test_no_values_passes_through(void **state)
{
	const size_t sizes[] = { 5 };
	struct sink s;

	(void)state;
	run(NULL, 0, "anything at all", 15, sizes, 1, &s);
	expect(&s, "anything at all");
}

/*
 * New values mid-stream (pcrun --on-change): a value split across the change, held back under
 * the old set, is still masked; a longer new value and the old one are both masked after it.
 */
static void test_set_values_mid_stream(void **state)
{
	struct mask_value old[1] = { { (const unsigned char *)"old-secret", 10 } };
	struct mask_value both[2] = { { (const unsigned char *)"new-much-longer-secret", 22 },
		{ (const unsigned char *)"old-secret", 10 } };
	struct sink s;
	struct mask m;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(mask_init(&m, old, 1, 16, sink_write, &s, NULL), 0);
	assert_int_equal(mask_feed(&m, (const unsigned char *)"a old-sec", 9), 0);
	assert_int_equal(mask_set_values(&m, both, 2, NULL), 0);
	assert_int_equal(mask_feed(&m, (const unsigned char *)"ret b new-much-", 15), 0);
	assert_int_equal(mask_feed(&m, (const unsigned char *)"longer-secret c", 15), 0);
	assert_int_equal(mask_flush(&m), 0);
	mask_free(&m);
	expect(&s, "a " M " b " M " c");
}

/* Random streams of values and noise, in random feed sizes, against a one-shot reference. */
static void test_random_streams(void **state)
{
	static const struct mask_value v[] = {
		{ (const unsigned char *)"aaab", 4 },
		{ (const unsigned char *)"abab", 4 },
		{ (const unsigned char *)"bbbbbbb", 7 },
	};
	char in[600];
	struct sink whole, parts;
	size_t sizes[16], i, n;
	int round;

	(void)state;
	for (round = 0; round < 300; round++) {
		n = randombytes_uniform(sizeof(in));
		/* A small alphabet, so values and near-misses occur all the time. */
		for (i = 0; i < n; i++)
			in[i] = "ab\n"[randombytes_uniform(3)];
		for (i = 0; i < 16; i++)
			sizes[i] = 1 + randombytes_uniform(64);
		i = n;
		run(v, 3, in, n, &i, 1, &whole);
		run(v, 3, in, n, sizes, 16, &parts);
		assert_int_equal(whole.len, parts.len);
		assert_memory_equal(whole.buf, parts.buf, whole.len);
		/* No value survives in the output (the mask text holds none of them). */
		for (i = 0; i < 3; i++)
			assert_null(memmem(parts.buf, parts.len, v[i].data, v[i].len));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_and_split_everywhere),
		cmocka_unit_test(test_value_at_the_end_is_flushed_masked),
		cmocka_unit_test(test_overlapping_values_longest_wins),
		cmocka_unit_test(test_binary_values),
		cmocka_unit_test(test_no_values_passes_through),
		cmocka_unit_test(test_random_streams),
		cmocka_unit_test(test_set_values_mid_stream),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
