#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "pbwipe.h"
#include "pcsecret.pb-c.h"

static uint8_t request_bytes[] = { 0x08, 0x01, 0x12, 0x05, 'p', 'c', 'c', 't', 'l' };

static void
make_call(Pcsecret__V1__Call *call)
{
	pcsecret__v1__call__init(call);
	call->call_id = 0x1122334455667788ull;
	call->method = (char *)"pcsecret.v1.PcSecret/Hello";
	call->method_id = 1;
	call->timeout_ms = 2500;
	call->request.data = request_bytes;
	call->request.len = sizeof(request_bytes);
}

static void
test_put_n32(void **state)
{
	uint8_t hdr[FRAME_HEADER_LEN];

	(void)state;
	frame_put_n32(hdr, 0x01020304u);
	assert_int_equal(hdr[0], 0x01);
	assert_int_equal(hdr[1], 0x02);
	assert_int_equal(hdr[2], 0x03);
	assert_int_equal(hdr[3], 0x04);
}

/* Bytes arriving one at a time: need-more at every prefix, then exactly one whole frame. */
static void
test_split_every_offset(void **state)
{
	Pcsecret__V1__Call call;
	pcs_error err;
	uint8_t *frame = NULL, *buf;
	size_t len = 0, avail, split;
	uint32_t body_len;

	(void)state;
	make_call(&call);
	assert_int_equal(frame_pack(&call.base, FRAME_DEFAULT_MAX, &frame, &len, &err), 0);
	assert_true(len > FRAME_HEADER_LEN);
	for (avail = 0; avail <= len; avail++) {
		body_len = 0xdeadbeef;
		pcs_error_clear(&err);
		if (avail < len) {
			assert_int_equal(frame_peek(frame, avail, FRAME_DEFAULT_MAX, &body_len, &err), 0);
			assert_int_equal(err.code, PCS_OK);
		} else {
			assert_int_equal(frame_peek(frame, avail, FRAME_DEFAULT_MAX, &body_len, &err), 1);
			assert_int_equal(body_len, len - FRAME_HEADER_LEN);
		}
	}
	/* Two reads split at every offset into a receive buffer that grows between them. */
	buf = malloc(len);
	assert_non_null(buf);
	for (split = 0; split < len; split++) {
		memset(buf, 0xAA, len);
		memcpy(buf, frame, split);
		assert_int_equal(frame_peek(buf, split, FRAME_DEFAULT_MAX, &body_len, &err), 0);
		memcpy(buf + split, frame + split, len - split);
		assert_int_equal(frame_peek(buf, len, FRAME_DEFAULT_MAX, &body_len, &err), 1);
		assert_int_equal(body_len, len - FRAME_HEADER_LEN);
	}
	free(buf);
	frame_free(frame, len);
}

/* Pipelined frames: peeking the first must not depend on what follows it. */
static void
test_back_to_back(void **state)
{
	Pcsecret__V1__Call call;
	pcs_error err;
	uint8_t *frame = NULL, *two;
	size_t len = 0;
	uint32_t body_len = 0;

	(void)state;
	make_call(&call);
	assert_int_equal(frame_pack(&call.base, FRAME_DEFAULT_MAX, &frame, &len, &err), 0);
	two = malloc(2 * len);
	assert_non_null(two);
	memcpy(two, frame, len);
	memcpy(two + len, frame, len);
	assert_int_equal(frame_peek(two, 2 * len, FRAME_DEFAULT_MAX, &body_len, &err), 1);
	assert_int_equal(body_len, len - FRAME_HEADER_LEN);
	assert_int_equal(frame_peek(two + len, len, FRAME_DEFAULT_MAX, &body_len, &err), 1);
	assert_int_equal(frame_peek(two + len, len - 1, FRAME_DEFAULT_MAX, &body_len, &err), 0);
	free(two);
	frame_free(frame, len);
}

static void
test_zero_length(void **state)
{
	uint8_t buf[8] = { 0, 0, 0, 0, 1, 2, 3, 4 };
	pcs_error err;
	uint32_t body_len = 77;
	size_t avail;

	(void)state;
	for (avail = FRAME_HEADER_LEN; avail <= sizeof(buf); avail++) {
		pcs_error_clear(&err);
		assert_int_equal(frame_peek(buf, avail, FRAME_DEFAULT_MAX, &body_len, &err),
		    -PCS_INVALID_ARGUMENT);
		assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
		assert_string_equal(err.message, "frame length 0 is not allowed");
	}
	/* Fewer than four bytes say nothing about the length yet. */
	assert_int_equal(frame_peek(buf, 3, FRAME_DEFAULT_MAX, &body_len, &err), 0);
	assert_int_equal(body_len, 77);
}

static void
test_exactly_max(void **state)
{
	enum { MAX = 16 };
	uint8_t buf[FRAME_HEADER_LEN + MAX];
	pcs_error err;
	uint32_t body_len = 0;

	(void)state;
	memset(buf, 0x5a, sizeof(buf));
	frame_put_n32(buf, MAX);
	assert_int_equal(frame_peek(buf, FRAME_HEADER_LEN, MAX, &body_len, &err), 0);
	assert_int_equal(frame_peek(buf, sizeof(buf) - 1, MAX, &body_len, &err), 0);
	assert_int_equal(frame_peek(buf, sizeof(buf), MAX, &body_len, &err), 1);
	assert_int_equal(body_len, MAX);

	frame_put_n32(buf, FRAME_DEFAULT_MAX);
	assert_int_equal(frame_peek(buf, FRAME_HEADER_LEN, FRAME_DEFAULT_MAX, &body_len, &err), 0);
}

static void
test_max_plus_one(void **state)
{
	uint8_t buf[FRAME_HEADER_LEN];
	pcs_error err;
	uint32_t body_len = 0;

	(void)state;
	/* Refused from the header alone, before any of the body has arrived. */
	frame_put_n32(buf, 17);
	assert_int_equal(frame_peek(buf, sizeof(buf), 16, &body_len, &err),
	    -PCS_RESOURCE_EXHAUSTED);
	assert_int_equal(err.code, PCS_RESOURCE_EXHAUSTED);
	assert_string_equal(err.message, "frame of 17 bytes exceeds the maximum of 16 bytes");

	frame_put_n32(buf, FRAME_DEFAULT_MAX + 1);
	assert_int_equal(frame_peek(buf, sizeof(buf), FRAME_DEFAULT_MAX, &body_len, &err),
	    -PCS_RESOURCE_EXHAUSTED);
	assert_string_equal(err.message,
	    "frame of 1048577 bytes exceeds the maximum of 1048576 bytes");
}

static void
test_all_ones(void **state)
{
	uint8_t buf[FRAME_HEADER_LEN] = { 0xff, 0xff, 0xff, 0xff };
	pcs_error err;
	uint32_t body_len = 0;

	(void)state;
	assert_int_equal(frame_peek(buf, sizeof(buf), FRAME_DEFAULT_MAX, &body_len, &err),
	    -PCS_RESOURCE_EXHAUSTED);
	assert_string_equal(err.message,
	    "frame of 4294967295 bytes exceeds the maximum of 1048576 bytes");
	/* Even the largest maximum must not wrap when adding the header. */
	assert_int_equal(frame_peek(buf, sizeof(buf), UINT32_MAX, &body_len, &err), 0);
}

static void
test_pack_round_trip(void **state)
{
	Pcsecret__V1__Call call, *back;
	pcs_error err;
	uint8_t *frame = NULL;
	size_t len = 0;
	uint32_t body_len = 0;

	(void)state;
	make_call(&call);
	assert_int_equal(frame_pack(&call.base, FRAME_DEFAULT_MAX, &frame, &len, &err), 0);
	assert_non_null(frame);
	assert_int_equal(len, FRAME_HEADER_LEN + protobuf_c_message_get_packed_size(&call.base));
	assert_int_equal(frame_peek(frame, len, FRAME_DEFAULT_MAX, &body_len, &err), 1);
	back = pcsecret__v1__call__unpack(&pbwipe_allocator, body_len, frame + FRAME_HEADER_LEN);
	assert_non_null(back);
	assert_true(back->call_id == call.call_id);
	assert_string_equal(back->method, call.method);
	assert_int_equal(back->method_id, call.method_id);
	assert_int_equal(back->timeout_ms, call.timeout_ms);
	assert_int_equal(back->request.len, sizeof(request_bytes));
	assert_memory_equal(back->request.data, request_bytes, sizeof(request_bytes));
	pcsecret__v1__call__free_unpacked(back, &pbwipe_allocator);
	frame_free(frame, len);
}

static void
test_pack_limits(void **state)
{
	Pcsecret__V1__Call call;
	pcs_error err;
	uint8_t *frame = (uint8_t *)&err;
	size_t len = 99, body;

	(void)state;
	make_call(&call);
	body = protobuf_c_message_get_packed_size(&call.base);
	assert_int_equal(frame_pack(&call.base, (uint32_t)body - 1, &frame, &len, &err),
	    -PCS_RESOURCE_EXHAUSTED);
	assert_int_equal(err.code, PCS_RESOURCE_EXHAUSTED);
	assert_null(frame);
	assert_int_equal(len, 0);

	assert_int_equal(frame_pack(&call.base, (uint32_t)body, &frame, &len, &err), 0);
	assert_int_equal(len, FRAME_HEADER_LEN + body);
	frame_free(frame, len);

	/* A default message packs to nothing, which the peer would take for a protocol error. */
	pcsecret__v1__call__init(&call);
	assert_int_equal(frame_pack(&call.base, FRAME_DEFAULT_MAX, &frame, &len, &err),
	    -PCS_INVALID_ARGUMENT);
	assert_null(frame);

	frame_free(NULL, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_n32),
		cmocka_unit_test(test_split_every_offset),
		cmocka_unit_test(test_back_to_back),
		cmocka_unit_test(test_zero_length),
		cmocka_unit_test(test_exactly_max),
		cmocka_unit_test(test_max_plus_one),
		cmocka_unit_test(test_all_ones),
		cmocka_unit_test(test_pack_round_trip),
		cmocka_unit_test(test_pack_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
