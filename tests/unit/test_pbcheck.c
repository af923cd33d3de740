/*
 * pbcheck: string fields checked on the wire bytes, before protobuf-c (which cuts a string at
 * its first NUL and keeps invalid UTF-8) unpacks them. Tables of byte sequences, then whole
 * messages: envelope, nested, repeated, unknown fields and truncated input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pbcheck.h"
#include "pcsecret.pb-c.h"

struct seq {
	const char *bytes;
	size_t len;
	int valid;
};

#define S(b, v) { b, sizeof(b) - 1, v }

static const struct seq seqs[] = {
	S("", 1),
	S("acme", 1),
	S("caf\xc3\xa9", 1),                 /* U+00E9 */
	S("\xe2\x82\xac", 1),                /* U+20AC */
	S("\xf0\x9f\x94\x91", 1),            /* U+1F511 */
	S("\xed\x9f\xbf", 1),                /* U+D7FF, just below the surrogates */
	S("\xee\x80\x80", 1),                /* U+E000, just above */
	S("\xf4\x8f\xbf\xbf", 1),            /* U+10FFFF, the last code point */
	S("\x7f", 1),                        /* DEL is valid UTF-8 (the log escapes it) */
	S("\x80", 0),                        /* lone continuation byte */
	S("\xbf", 0),
	S("\xc0\x80", 0),                    /* overlong NUL */
	S("\xc1\xbf", 0),                    /* overlong two-byte */
	S("\xe0\x80\xaf", 0),                /* overlong '/' */
	S("\xe0\x9f\xbf", 0),                /* overlong three-byte */
	S("\xf0\x80\x80\xaf", 0),            /* overlong four-byte */
	S("\xf0\x8f\xbf\xbf", 0),
	S("\xed\xa0\x80", 0),                /* U+D800, a surrogate */
	S("\xed\xbf\xbf", 0),                /* U+DFFF */
	S("\xf4\x90\x80\x80", 0),            /* U+110000 */
	S("\xf5\x80\x80\x80", 0),
	S("\xff", 0),
	S("\xfe", 0),
	S("\xc3", 0),                        /* truncated two-byte */
	S("\xe2\x82", 0),                    /* truncated three-byte */
	S("\xf0\x9f\x94", 0),                /* truncated four-byte */
	S("\xc3\x28", 0),                    /* bad continuation */
	S("ab\xe2\x28\xa1", 0),
	S("x\0../../beta", 0),               /* NUL: valid UTF-8, refused all the same */
};

static void test_utf8_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		int got = pbcheck_utf8_valid((const uint8_t *)seqs[i].bytes, seqs[i].len);
		if (got != seqs[i].valid)
			fail_msg("sequence %zu: got %d, want %d", i, got, seqs[i].valid);
	}
}

/* Packs msg into a new buffer. */
static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(msg);
	assert_non_null(buf = malloc(*len ? *len : 1));
	assert_int_equal(protobuf_c_message_pack(msg, buf), *len);
	return buf;
}

/*
 * protobuf-c's packer writes a string with strlen, so strings with a NUL are written by
 * hand: field `num` (wire type 2) with the given bytes, after the prefix message.
 */
static size_t put_string(uint8_t *out, unsigned num, const char *bytes, size_t len)
{
	size_t o = 0;

	out[o++] = (uint8_t)(num << 3 | 2);
	out[o++] = (uint8_t)len;    /* tests keep len < 128 */
	memcpy(out + o, bytes, len);
	return o + len;
}

static void test_envelope(void **state)
{
	char field[PBCHECK_FIELD_MAX];
	uint8_t buf[256];
	size_t n;

	(void)state;
	/* call_id = 1, method = "pcsecret.v1.PcSecret/Hello" */
	n = 0;
	buf[n++] = 0x08;
	buf[n++] = 0x01;
	n += put_string(buf + n, 2, "pcsecret.v1.PcSecret/Hello", 26);
	assert_int_equal(pbcheck_message(&pcsecret__v1__call__descriptor, buf, n, field), PBCHECK_OK);
	assert_string_equal(field, "");
	/* method with a byte that is not UTF-8 */
	n = 2;
	n += put_string(buf + n, 2, "Hel\xfflo", 6);
	assert_int_equal(pbcheck_message(&pcsecret__v1__call__descriptor, buf, n, field),
	    PBCHECK_BAD_UTF8);
	assert_string_equal(field, "Call.method");
	assert_string_equal(pbcheck_problem(PBCHECK_BAD_UTF8), "is not valid UTF-8");
	/* method with a NUL */
	n = 2;
	n += put_string(buf + n, 2, "He\0llo", 6);
	assert_int_equal(pbcheck_message(&pcsecret__v1__call__descriptor, buf, n, field), PBCHECK_NUL);
	assert_string_equal(field, "Call.method");
	assert_string_equal(pbcheck_problem(PBCHECK_NUL), "contains a NUL byte");
	/* bytes fields (request) are not strings: anything goes */
	n = 2;
	n += put_string(buf + n, 5, "\0\xff\xc0\x80", 4);
	assert_int_equal(pbcheck_message(&pcsecret__v1__call__descriptor, buf, n, field), PBCHECK_OK);
	/* an empty message is fine */
	assert_int_equal(pbcheck_message(&pcsecret__v1__call__descriptor, NULL, 0, field), PBCHECK_OK);
}

static void test_request_name_with_nul(void **state)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	uint8_t *packed, buf[256];
	char field[PBCHECK_FIELD_MAX];
	size_t len, n;

	(void)state;
	q.company = (char *)"acme";
	q.name = (char *)"x";
	q.value.data = (uint8_t *)"\0\xff";
	q.value.len = 2;
	packed = pack(&q.base, &len);
	assert_int_equal(pbcheck_message(&pcsecret__v1__create_secret_request__descriptor, packed,
	    len, field), PBCHECK_OK);
	free(packed);
	n = put_string(buf, 1, "acme", 4);
	n += put_string(buf + n, 2, "x\0../../beta", 12);
	assert_int_equal(pbcheck_message(&pcsecret__v1__create_secret_request__descriptor, buf, n,
	    field), PBCHECK_NUL);
	assert_string_equal(field, "CreateSecretRequest.name");
	/* protobuf-c itself would have accepted it, as "x": why the check is on the wire */
	{
		Pcsecret__V1__CreateSecretRequest *u =
		    pcsecret__v1__create_secret_request__unpack(NULL, n, buf);
		assert_non_null(u);
		assert_string_equal(u->name, "x");
		pcsecret__v1__create_secret_request__free_unpacked(u, NULL);
	}
}

/* Nested and repeated: a bad name in the third SecretRef of a ResolveRequest. */
static void test_nested_repeated(void **state)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef refs[3], *ptrs[3];
	char field[PBCHECK_FIELD_MAX];
	uint8_t *packed;
	size_t len;

	(void)state;
	for (int i = 0; i < 3; i++) {
		pcsecret__v1__secret_ref__init(&refs[i]);
		refs[i].company = (char *)"acme";
		refs[i].name = (char *)"k1";
		refs[i].version = (uint32_t)i;
		ptrs[i] = &refs[i];
	}
	q.refs = ptrs;
	q.n_refs = 3;
	q.agent = (char *)"acme/bot";
	packed = pack(&q.base, &len);
	assert_int_equal(pbcheck_message(&pcsecret__v1__resolve_request__descriptor, packed, len,
	    field), PBCHECK_OK);
	free(packed);
	refs[2].name = (char *)"k\xed\xa0\x80";  /* a surrogate */
	packed = pack(&q.base, &len);
	assert_int_equal(pbcheck_message(&pcsecret__v1__resolve_request__descriptor, packed, len,
	    field), PBCHECK_BAD_UTF8);
	assert_string_equal(field, "SecretRef.name");
	free(packed);
	/* A repeated string field: DeleteSecretReply.unbound */
	{
		Pcsecret__V1__DeleteSecretReply r = PCSECRET__V1__DELETE_SECRET_REPLY__INIT;
		char *u[2] = { (char *)"acme/bot:K1", (char *)"acme/bot:\xc0\xafK2" };
		r.unbound = u;
		r.n_unbound = 2;
		packed = pack(&r.base, &len);
		assert_int_equal(pbcheck_message(&pcsecret__v1__delete_secret_reply__descriptor, packed,
		    len, field), PBCHECK_BAD_UTF8);
		assert_string_equal(field, "DeleteSecretReply.unbound");
		free(packed);
	}
}

/* Unknown fields of every wire type are skipped, whatever bytes they hold. */
static void test_unknown_fields(void **state)
{
	static const uint8_t msg[] = {
		0x08, 0x07,                               /* call_id = 7 */
		0xf8, 0x01, 0x96, 0x01,                   /* field 31 varint */
		0xf9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8,       /* field 31 fixed64 */
		0xfd, 0x01, 1, 2, 3, 4,                   /* field 31 fixed32 */
		0xfa, 0x01, 0x03, 0xff, 0x00, 0xc0,       /* field 31 length-delimited, not UTF-8 */
		0x12, 0x02, 'o', 'k',                     /* method = "ok" */
	};
	char field[PBCHECK_FIELD_MAX];

	(void)state;
	assert_int_equal(pbcheck_message(&pcsecret__v1__call__descriptor, msg, sizeof(msg), field),
	    PBCHECK_OK);
}

/* Every prefix of a valid message either checks OK (it ends on a field boundary) or is
 * reported malformed; never read past the end (AddressSanitizer in the fuzz build). */
static void test_truncated(void **state)
{
	static const uint8_t msg[] = {
		0x08, 0x96, 0x01,                         /* call_id = 150 */
		0x12, 0x05, 'H', 'e', 'l', 'l', 'o',      /* method */
		0x2a, 0x04, 0x10, 0x02, 0x08, 0x01,       /* request bytes */
	};
	static const size_t boundaries[] = { 0, 3, 10, 16 };
	char field[PBCHECK_FIELD_MAX];

	(void)state;
	for (size_t n = 0; n <= sizeof(msg); n++) {
		uint8_t *copy = malloc(n ? n : 1);
		int boundary = 0;
		enum pbcheck_result r;

		memcpy(copy, msg, n);
		for (size_t i = 0; i < sizeof(boundaries) / sizeof(boundaries[0]); i++)
			boundary |= boundaries[i] == n;
		r = pbcheck_message(&pcsecret__v1__call__descriptor, copy, n, field);
		if (boundary)
			assert_int_equal(r, PBCHECK_OK);
		else
			assert_int_equal(r, PBCHECK_MALFORMED);
		free(copy);
	}
	/* a length past the end, an 11-byte varint, a group, field number 0 */
	{
		static const uint8_t bad[][12] = {
			{ 0x12, 0x7f, 'a' },
			{ 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 },
			{ 0x0b, 0x0c },
			{ 0x00, 0x01 },
		};
		static const size_t lens[] = { 3, 12, 2, 2 };
		for (size_t i = 0; i < 4; i++)
			assert_int_equal(pbcheck_message(&pcsecret__v1__call__descriptor, bad[i], lens[i],
			    field), PBCHECK_MALFORMED);
		assert_string_equal(field, "Call");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_table),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_request_name_with_nul),
		cmocka_unit_test(test_nested_repeated),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_truncated),
	};
	return cmocka_run_group_tests_name("pbcheck", tests, NULL, NULL);
}
