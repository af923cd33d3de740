#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
/* Only to check the stored layout independently of crypto.c: the code under test is crypto.c. */
#include <sodium.h>

#include "crypto.h"
#include "keyfile.h"
#include "ref.h"
#include "tmpdir.h"

#define COMPANY "7f0c9a52-3b1e-4c55-9d7a-2a1f7c3e5b10"
#define SECRET "c2b6f1de-8a34-4e0f-b3c1-5d9e8f7a6b21"
#define KAT_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
/* BLAKE2b from Python's hashlib, keyed with KAT_HEX: an independent implementation. */
#define KAT_KEY_ID "28a59994246b5e28"
#define KAT_CHECK "ac3a07592450d4889dc67f196a0cb95c6a934f0c8e9ada51d03feb28ba9195c5"

struct fixture {
	char dir[64];
	char path1[256];
	char path2[256];
	struct crypto_master *m1;
	struct crypto_master *m2;
};

static int
setup(void **state)
{
	static struct fixture f;
	pcs_error err;

	memset(&f, 0, sizeof(f));
	if (crypto_init(&err) != 0 || tmpdir_make(f.dir, sizeof(f.dir)) != 0)
		return -1;
	tmpdir_path(f.path1, sizeof(f.path1), f.dir, "one.key");
	tmpdir_path(f.path2, sizeof(f.path2), f.dir, "two.key");
	if (keyfile_create(f.path1, &err) != 0 || keyfile_create(f.path2, &err) != 0 ||
	    crypto_master_load(f.path1, &f.m1, &err) != 0 ||
	    crypto_master_load(f.path2, &f.m2, &err) != 0) {
		print_error("setup: %s\n", err.message);
		return -1;
	}
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	crypto_master_free(f->m1);
	crypto_master_free(f->m2);
	return tmpdir_remove(f->dir);
}

static const struct crypto_ad the_ad = { COMPANY, SECRET, 3 };

static int
open_sealed(const struct crypto_master *m, const struct crypto_ad *ad,
    const struct crypto_sealed *s, struct crypto_plain *out, pcs_error *err)
{
	return crypto_open(m, ad, s->ciphertext, s->ciphertext_len, s->nonce, sizeof(s->nonce),
	    s->wrapped_key, sizeof(s->wrapped_key), s->key_id, out, err);
}

static void
round_trip(const struct crypto_master *m, const uint8_t *value, size_t len)
{
	struct crypto_sealed s;
	struct crypto_plain p;
	pcs_error err;

	assert_int_equal(crypto_seal(m, &the_ad, value, len, &s, &err), 0);
	assert_int_equal(s.ciphertext_len, len + 16);
	assert_string_equal(s.key_id, crypto_master_key_id(m));
	if (len >= 16)
		assert_memory_not_equal(s.ciphertext, value, 16);
	assert_int_equal(open_sealed(m, &the_ad, &s, &p, &err), 0);
	assert_non_null(p.data);
	assert_int_equal(p.len, len);
	if (len > 0)
		assert_memory_equal(p.data, value, len);
	assert_int_equal(p.data[len], '\0');
	crypto_plain_clear(&p);
	assert_null(p.data);
	assert_int_equal(p.len, 0);
	crypto_sealed_clear(&s);
	assert_null(s.ciphertext);
}

static void
test_round_trip(void **state)
{
	struct fixture *f = *state;
	static const char value[] = "sk-test-0123456789abcdef";
	uint8_t *big;
	size_t i;

	round_trip(f->m1, (const uint8_t *)value, sizeof(value) - 1);
	round_trip(f->m1, NULL, 0);
	round_trip(f->m1, (const uint8_t *)"", 0);
	big = malloc(64 * 1024);
	assert_non_null(big);
	for (i = 0; i < 64 * 1024; i++)
		big[i] = (uint8_t)(i * 131 + 7);
	round_trip(f->m1, big, 64 * 1024);
	round_trip(f->m2, big, 64 * 1024);
	free(big);
}

/* Same value sealed twice: fresh data key and nonces each time. */
static void
test_seal_is_randomised(void **state)
{
	struct fixture *f = *state;
	struct crypto_sealed a, b;
	pcs_error err;

	assert_int_equal(crypto_seal(f->m1, &the_ad, (const uint8_t *)"same", 4, &a, &err), 0);
	assert_int_equal(crypto_seal(f->m1, &the_ad, (const uint8_t *)"same", 4, &b, &err), 0);
	assert_memory_not_equal(a.nonce, b.nonce, sizeof(a.nonce));
	assert_memory_not_equal(a.wrapped_key, b.wrapped_key, sizeof(a.wrapped_key));
	assert_memory_not_equal(a.ciphertext, b.ciphertext, a.ciphertext_len);
	crypto_sealed_clear(&a);
	crypto_sealed_clear(&b);
}

static void
expect_data_loss(const struct crypto_master *m, const struct crypto_ad *ad,
    const struct crypto_sealed *s, const char *what, size_t at)
{
	struct crypto_plain p = { (uint8_t *)&p, 99 };
	pcs_error err;

	pcs_error_clear(&err);
	if (open_sealed(m, ad, s, &p, &err) != -PCS_DATA_LOSS)
		fail_msg("tampered %s at byte %zu opened", what, at);
	assert_int_equal(err.code, PCS_DATA_LOSS);
	assert_string_equal(err.message, "stored value failed authentication");
	assert_null(p.data);
	assert_int_equal(p.len, 0);
}

static void
test_tampering(void **state)
{
	struct fixture *f = *state;
	static const char value[] = "a value worth protecting";
	struct crypto_sealed s;
	pcs_error err;
	size_t i;

	assert_int_equal(crypto_seal(f->m1, &the_ad, (const uint8_t *)value, sizeof(value) - 1,
	    &s, &err), 0);
	for (i = 0; i < s.ciphertext_len; i++) {
		s.ciphertext[i] ^= (uint8_t)(1u << (i % 8));
		expect_data_loss(f->m1, &the_ad, &s, "ciphertext", i);
		s.ciphertext[i] ^= (uint8_t)(1u << (i % 8));
	}
	for (i = 0; i < sizeof(s.nonce); i++) {
		s.nonce[i] ^= (uint8_t)(1u << (i % 8));
		expect_data_loss(f->m1, &the_ad, &s, "nonce", i);
		s.nonce[i] ^= (uint8_t)(1u << (i % 8));
	}
	for (i = 0; i < sizeof(s.wrapped_key); i++) {
		s.wrapped_key[i] ^= (uint8_t)(1u << (i % 8));
		expect_data_loss(f->m1, &the_ad, &s, "wrapped key", i);
		s.wrapped_key[i] ^= (uint8_t)(1u << (i % 8));
	}
	/* Everything restored: it opens again, so the failures above were the flips. */
	{
		struct crypto_plain p;

		assert_int_equal(open_sealed(f->m1, &the_ad, &s, &p, &err), 0);
		crypto_plain_clear(&p);
	}
	crypto_sealed_clear(&s);
}

static void
test_associated_data(void **state)
{
	struct fixture *f = *state;
	static const struct crypto_ad other[] = {
		{ "7f0c9a52-3b1e-4c55-9d7a-2a1f7c3e5b11", SECRET, 3 },
		{ COMPANY, "c2b6f1de-8a34-4e0f-b3c1-5d9e8f7a6b22", 3 },
		{ COMPANY, SECRET, 2 },
		{ COMPANY, SECRET, 4 },
		{ COMPANY, SECRET, 0 },
		{ SECRET, COMPANY, 3 },
	};
	struct crypto_sealed s;
	pcs_error err;
	size_t i;

	assert_int_equal(crypto_seal(f->m1, &the_ad, (const uint8_t *)"v", 1, &s, &err), 0);
	for (i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		expect_data_loss(f->m1, &other[i], &s, "associated data", i);
	crypto_sealed_clear(&s);

	/* Ids that could make two rows' associated data collide are refused outright. */
	{
		const struct crypto_ad bar = { "a|b", "c", 1 }, empty = { "", SECRET, 1 },
		    none = { NULL, SECRET, 1 };

		assert_int_equal(crypto_seal(f->m1, &bar, (const uint8_t *)"v", 1, &s, &err),
		    -PCS_INVALID_ARGUMENT);
		assert_null(s.ciphertext);
		assert_int_equal(crypto_seal(f->m1, &empty, (const uint8_t *)"v", 1, &s, &err),
		    -PCS_INVALID_ARGUMENT);
		assert_int_equal(crypto_seal(f->m1, &none, (const uint8_t *)"v", 1, &s, &err),
		    -PCS_INVALID_ARGUMENT);
		assert_int_equal(crypto_seal(f->m1, &the_ad, NULL, 1, &s, &err),
		    -PCS_INVALID_ARGUMENT);
	}
}

/* Equal for the same (key, secret, value); any change of one of them changes the tag. */
static void
test_value_tag(void **state)
{
	struct fixture *f = *state;
	const uint8_t v1[] = "hunter2", v2[] = "hunter3";
	uint8_t t1[CRYPTO_VALUE_TAG_LEN], t2[CRYPTO_VALUE_TAG_LEN];
	char hex[2 * CRYPTO_VALUE_TAG_LEN + 1], plain[65];
	pcs_error err;

	assert_int_equal(crypto_value_tag(f->m1, "s1", v1, sizeof(v1) - 1, t1, &err), 0);
	assert_int_equal(crypto_value_tag(f->m1, "s1", v1, sizeof(v1) - 1, t2, &err), 0);
	assert_true(crypto_tag_equal(t1, t2, sizeof(t1)));
	assert_int_equal(crypto_value_tag(f->m1, "s1", v2, sizeof(v2) - 1, t2, &err), 0);
	assert_false(crypto_tag_equal(t1, t2, sizeof(t1)));
	assert_int_equal(crypto_value_tag(f->m1, "s2", v1, sizeof(v1) - 1, t2, &err), 0);
	assert_false(crypto_tag_equal(t1, t2, sizeof(t1)));
	assert_int_equal(crypto_value_tag(f->m2, "s1", v1, sizeof(v1) - 1, t2, &err), 0);
	assert_false(crypto_tag_equal(t1, t2, sizeof(t1)));
	/* The id's end is bound: ("s1", "hunter2") is not ("s", "1hunter2"). */
	assert_int_equal(
	    crypto_value_tag(f->m1, "s", (const uint8_t *)"1hunter2", 8, t2, &err), 0);
	assert_false(crypto_tag_equal(t1, t2, sizeof(t1)));
	/* Keyed: not the plain BLAKE2b-256 of the value. */
	crypto_hex(hex, t1, sizeof(t1));
	crypto_checksum_hex(v1, sizeof(v1) - 1, plain);
	assert_string_not_equal(hex, plain);
}

static void
test_other_master_key(void **state)
{
	struct fixture *f = *state;
	struct crypto_sealed s;
	struct crypto_plain p;
	char want[256];
	pcs_error err;

	assert_string_not_equal(crypto_master_key_id(f->m1), crypto_master_key_id(f->m2));
	assert_int_equal(crypto_seal(f->m1, &the_ad, (const uint8_t *)"v", 1, &s, &err), 0);
	assert_int_equal(open_sealed(f->m2, &the_ad, &s, &p, &err), -PCS_FAILED_PRECONDITION);
	assert_int_equal(err.code, PCS_FAILED_PRECONDITION);
	snprintf(want, sizeof(want), "value was sealed under master key %s; the loaded key is %s",
	    crypto_master_key_id(f->m1), crypto_master_key_id(f->m2));
	assert_string_equal(err.message, want);
	assert_null(p.data);

	/* Relabelling the row with the other key's id does not get it opened either. */
	memcpy(s.key_id, crypto_master_key_id(f->m2), sizeof(s.key_id));
	expect_data_loss(f->m2, &the_ad, &s, "key id", 0);

	strcpy(s.key_id, "not-a-key-id");
	assert_int_equal(open_sealed(f->m1, &the_ad, &s, &p, &err), -PCS_DATA_LOSS);
	crypto_sealed_clear(&s);
}

static void
test_lengths(void **state)
{
	struct fixture *f = *state;
	struct crypto_sealed s;
	struct crypto_plain p;
	pcs_error err;
	const char *id;

	assert_int_equal(crypto_seal(f->m1, &the_ad, (const uint8_t *)"value", 5, &s, &err), 0);
	id = s.key_id;
	assert_int_equal(crypto_open(f->m1, &the_ad, s.ciphertext, 15, s.nonce, 24,
	    s.wrapped_key, CRYPTO_WRAPPED_KEY_LEN, id, &p, &err), -PCS_DATA_LOSS);
	assert_int_equal(crypto_open(f->m1, &the_ad, s.ciphertext, s.ciphertext_len - 1, s.nonce,
	    24, s.wrapped_key, CRYPTO_WRAPPED_KEY_LEN, id, &p, &err), -PCS_DATA_LOSS);
	assert_int_equal(crypto_open(f->m1, &the_ad, s.ciphertext, s.ciphertext_len, s.nonce, 23,
	    s.wrapped_key, CRYPTO_WRAPPED_KEY_LEN, id, &p, &err), -PCS_DATA_LOSS);
	assert_int_equal(crypto_open(f->m1, &the_ad, s.ciphertext, s.ciphertext_len, s.nonce, 25,
	    s.wrapped_key, CRYPTO_WRAPPED_KEY_LEN, id, &p, &err), -PCS_DATA_LOSS);
	assert_int_equal(crypto_open(f->m1, &the_ad, s.ciphertext, s.ciphertext_len, s.nonce, 24,
	    s.wrapped_key, CRYPTO_WRAPPED_KEY_LEN - 1, id, &p, &err), -PCS_DATA_LOSS);
	assert_int_equal(crypto_open(f->m1, &the_ad, s.ciphertext, s.ciphertext_len, s.nonce, 24,
	    NULL, 0, id, &p, &err), -PCS_DATA_LOSS);
	assert_null(p.data);
	assert_int_equal(crypto_open(f->m1, &the_ad, s.ciphertext, s.ciphertext_len, s.nonce, 24,
	    s.wrapped_key, CRYPTO_WRAPPED_KEY_LEN, id, &p, &err), 0);
	crypto_plain_clear(&p);
	crypto_sealed_clear(&s);
}

/* Pins the stored format, which outlives this code, against libsodium used directly. */
static void
test_layout_and_known_answers(void **state)
{
	struct fixture *f = *state;
	struct crypto_master *m = NULL;
	struct crypto_sealed s;
	uint8_t dk[32], check[CRYPTO_CHECK_LEN], want_check[CRYPTO_CHECK_LEN], pt[8];
	unsigned long long n = 0;
	char path[256], hex[65];
	const char *ad = "pcsecret.v1|" COMPANY "|" SECRET "|3";
	pcs_error err;
	int fd;

	tmpdir_path(path, sizeof(path), f->dir, "kat.key");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, KAT_HEX "\n", 65), 65);
	close(fd);
	assert_int_equal(crypto_master_load(path, &m, &err), 0);
	assert_string_equal(crypto_master_key_id(m), KAT_KEY_ID);
	crypto_master_check_value(m, check);
	crypto_hex(hex, check, sizeof(check));
	assert_string_equal(hex, KAT_CHECK);

	assert_int_equal(crypto_seal(m, &the_ad, (const uint8_t *)"value", 5, &s, &err), 0);
	assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(dk, &n, NULL,
	    s.wrapped_key + 24, 48, (const uint8_t *)KAT_KEY_ID, 16, s.wrapped_key,
	    (const uint8_t[32]){ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
	    18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 }), 0);
	assert_int_equal(n, 32);
	assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &n, NULL, s.ciphertext,
	    s.ciphertext_len, (const uint8_t *)ad, strlen(ad), s.nonce, dk), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(pt, "value", 5);
	crypto_sealed_clear(&s);
	crypto_master_free(m);

	assert_int_equal(sodium_hex2bin(want_check, sizeof(want_check), KAT_CHECK, 64, NULL, NULL,
	    NULL), 0);
	assert_int_equal(crypto_master_load(path, &m, &err), 0);
	assert_int_equal(crypto_master_verify(m, want_check, sizeof(want_check)), 0);
	crypto_master_free(m);
	sodium_memzero(dk, sizeof(dk));
}

static void
test_check_value(void **state)
{
	struct fixture *f = *state;
	uint8_t c1[CRYPTO_CHECK_LEN], c2[CRYPTO_CHECK_LEN];

	crypto_master_check_value(f->m1, c1);
	crypto_master_check_value(f->m2, c2);
	assert_memory_not_equal(c1, c2, sizeof(c1));
	assert_int_equal(crypto_master_verify(f->m1, c1, sizeof(c1)), 0);
	assert_int_equal(crypto_master_verify(f->m2, c2, sizeof(c2)), 0);
	assert_int_not_equal(crypto_master_verify(f->m1, c2, sizeof(c2)), 0);
	assert_int_not_equal(crypto_master_verify(f->m2, c1, sizeof(c1)), 0);
	assert_int_not_equal(crypto_master_verify(f->m1, c1, sizeof(c1) - 1), 0);
	assert_int_not_equal(crypto_master_verify(f->m1, NULL, 0), 0);
	c1[31] ^= 1;
	assert_int_not_equal(crypto_master_verify(f->m1, c1, sizeof(c1)), 0);
}

static void
test_key_id_stable(void **state)
{
	struct fixture *f = *state;
	struct crypto_master *again = NULL;
	pcs_error err;
	const char *id = crypto_master_key_id(f->m1);
	size_t i;

	assert_int_equal(strlen(id), CRYPTO_KEY_ID_LEN);
	for (i = 0; i < CRYPTO_KEY_ID_LEN; i++)
		assert_non_null(strchr("0123456789abcdef", id[i]));
	assert_int_equal(crypto_master_load(f->path1, &again, &err), 0);
	assert_string_equal(crypto_master_key_id(again), id);
	crypto_master_free(again);
	crypto_master_free(NULL);
}

static void
test_load_failures(void **state)
{
	struct fixture *f = *state;
	struct crypto_master *m = (struct crypto_master *)f;
	char path[256];
	pcs_error err;

	tmpdir_path(path, sizeof(path), f->dir, "absent.key");
	assert_int_equal(crypto_master_load(path, &m, &err), -PCS_FAILED_PRECONDITION);
	assert_null(m);
	assert_int_equal(chmod(f->path1, 0640), 0);
	assert_int_equal(crypto_master_load(f->path1, &m, &err), -PCS_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, "chmod 600"));
	assert_null(m);
	assert_int_equal(chmod(f->path1, 0600), 0);
}

static int
cmp_uuid(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_uuid(void **state)
{
	enum { N = 2000 };
	char (*ids)[37];
	size_t i;

	(void)state;
	ids = calloc(N, sizeof(*ids));
	assert_non_null(ids);
	for (i = 0; i < N; i++) {
		crypto_uuid(ids[i]);
		assert_int_equal(strlen(ids[i]), 36);
		assert_true(uuid_valid(ids[i]));
		assert_int_equal(ids[i][14], '4');
		assert_non_null(strchr("89ab", ids[i][19]));
	}
	qsort(ids, N, sizeof(*ids), cmp_uuid);
	for (i = 1; i < N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	free(ids);
}

static void
test_hex_and_checksum(void **state)
{
	static const uint8_t bytes[] = { 0x00, 0x7f, 0x80, 0xff, 0x0a };
	char hex[11], sum[65];

	(void)state;
	crypto_hex(hex, bytes, sizeof(bytes));
	assert_string_equal(hex, "007f80ff0a");
	crypto_checksum_hex("abc", 3, sum);
	assert_string_equal(sum, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
	crypto_checksum_hex("", 0, sum);
	assert_string_equal(sum, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

static void
test_plain_alloc(void **state)
{
	struct crypto_plain p;
	pcs_error err;

	(void)state;
	assert_int_equal(crypto_plain_alloc(10, &p, &err), 0);
	assert_int_equal(p.len, 10);
	assert_int_equal(p.data[10], '\0');
	memset(p.data, 'x', 10);
	crypto_plain_clear(&p);
	crypto_plain_clear(&p);
	assert_int_equal(crypto_plain_alloc(SIZE_MAX, &p, &err), -PCS_RESOURCE_EXHAUSTED);
	assert_null(p.data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_seal_is_randomised),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_associated_data),
		cmocka_unit_test(test_other_master_key),
		cmocka_unit_test(test_value_tag),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_layout_and_known_answers),
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_key_id_stable),
		cmocka_unit_test(test_load_failures),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_hex_and_checksum),
		cmocka_unit_test(test_plain_alloc),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
