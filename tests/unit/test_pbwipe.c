#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pbwipe.h"
#include "pcsecret.pb-c.h"

static void
test_alloc_alignment(void **state)
{
	static const size_t sizes[] = { 0, 1, 7, 8, 15, 16, 17, 100, 4096, 65537 };
	void *p[sizeof(sizes) / sizeof(sizes[0])];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p[i] = pbwipe_allocator.alloc(pbwipe_allocator.allocator_data, sizes[i]);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % _Alignof(max_align_t), 0);
		/* The whole block is ours to write (AddressSanitizer checks the bounds). */
		memset(p[i], 0x5a, sizes[i]);
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		pbwipe_allocator.free(pbwipe_allocator.allocator_data, p[i]);
	pbwipe_allocator.free(pbwipe_allocator.allocator_data, NULL);
	assert_null(pbwipe_allocator.alloc(pbwipe_allocator.allocator_data, SIZE_MAX));
}

/* A message with nested, repeated and bytes fields makes protobuf-c allocate many blocks. */
static void
test_pack_unpack(void **state)
{
	static const uint8_t value[] = "sk-not-a-real-key";
	Pcsecret__V1__ResolveReply reply = PCSECRET__V1__RESOLVE_REPLY__INIT, *back;
	Pcsecret__V1__ResolvedValue v[3], *vp[3];
	Pcsecret__V1__SecretRef ref[3];
	uint8_t *buf;
	size_t len, i;

	(void)state;
	for (i = 0; i < 3; i++) {
		pcsecret__v1__resolved_value__init(&v[i]);
		pcsecret__v1__secret_ref__init(&ref[i]);
		ref[i].company = (char *)"acme";
		ref[i].name = (char *)"openai-key";
		ref[i].version = (uint32_t)i;
		v[i].ref = &ref[i];
		v[i].secret_id = (char *)"0123abcd-0000-4000-8000-00000000abcd";
		v[i].version = (uint32_t)(i + 1);
		v[i].value.data = (uint8_t *)value;
		v[i].value.len = sizeof(value) - 1;
		vp[i] = &v[i];
	}
	reply.n_values = 3;
	reply.values = vp;
	len = pcsecret__v1__resolve_reply__get_packed_size(&reply);
	buf = malloc(len);
	assert_non_null(buf);
	assert_int_equal(pcsecret__v1__resolve_reply__pack(&reply, buf), len);

	back = pcsecret__v1__resolve_reply__unpack(&pbwipe_allocator, len, buf);
	assert_non_null(back);
	assert_int_equal(back->n_values, 3);
	for (i = 0; i < 3; i++) {
		assert_string_equal(back->values[i]->ref->company, "acme");
		assert_string_equal(back->values[i]->ref->name, "openai-key");
		assert_int_equal(back->values[i]->ref->version, i);
		assert_int_equal(back->values[i]->version, i + 1);
		assert_int_equal(back->values[i]->value.len, sizeof(value) - 1);
		assert_memory_equal(back->values[i]->value.data, value, sizeof(value) - 1);
	}
	pcsecret__v1__resolve_reply__free_unpacked(back, &pbwipe_allocator);

	/* Every truncation fails cleanly: partial messages are freed through the allocator. */
	for (i = 1; i < len; i++) {
		back = pcsecret__v1__resolve_reply__unpack(&pbwipe_allocator, i, buf);
		if (back != NULL) {
			assert_true(back->n_values < 3);
			pcsecret__v1__resolve_reply__free_unpacked(back, &pbwipe_allocator);
		}
	}
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_alignment),
		cmocka_unit_test(test_pack_unpack),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
