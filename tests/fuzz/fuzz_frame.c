/*
 * The daemon's input path: a byte stream cut into frames, each a Call whose request is
 * unpacked with the method's input type, all with the wiping allocator.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "pbcheck.h"
#include "pbwipe.h"
#include "pcsecret.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-packing what was unpacked must give a frame that peeks back to its own length. */
static void
check_repack(const Pcsecret__V1__Call *call, uint32_t max)
{
	pcs_error err;
	uint8_t *frame = NULL;
	size_t len = 0;
	uint32_t body_len = 0;
	int r;

	r = frame_pack(&call->base, max, &frame, &len, &err);
	if (protobuf_c_message_get_packed_size(&call->base) == 0) {
		if (r != -PCS_INVALID_ARGUMENT)
			abort();
		return;
	}
	if (r != 0 || frame_peek(frame, len, max, &body_len, &err) != 1 ||
	    (size_t)body_len + FRAME_HEADER_LEN != len)
		abort();
	frame_free(frame, len);
}

/*
 * pbcheck against protobuf-c: a message pbcheck passes as OK and protobuf-c unpacks must have
 * valid UTF-8 strings without a NUL cut (the string unpacked is the whole field), checked on
 * the repacked bytes; and pbcheck never reads out of bounds (ASan) on any input.
 */
static void
check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
    const ProtobufCMessage *unpacked)
{
	char field[PBCHECK_FIELD_MAX];
	enum pbcheck_result r = pbcheck_message(desc, data, len, field);
	size_t n;
	uint8_t *re;

	if (r != PBCHECK_OK || unpacked == NULL)
		return;
	n = protobuf_c_message_get_packed_size(unpacked);
	if ((re = malloc(n ? n : 1)) == NULL)
		return;
	protobuf_c_message_pack(unpacked, re);
	if (pbcheck_message(desc, re, n, field) != PBCHECK_OK)
		abort();
	free(re);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Small enough that the fuzzer reaches the limit, large enough for real calls. */
	const uint32_t max = 64 * 1024;
	const ProtobufCServiceDescriptor *svc = &pcsecret__v1__pc_secret__descriptor;
	pcs_error err;
	uint32_t body_len;
	size_t off = 0;

	while (frame_peek(data + off, size - off, max, &body_len, &err) == 1) {
		const uint8_t *body = data + off + FRAME_HEADER_LEN;
		Pcsecret__V1__Call *call;

		off += FRAME_HEADER_LEN + body_len;
		call = pcsecret__v1__call__unpack(&pbwipe_allocator, body_len, body);
		check_strings(&pcsecret__v1__call__descriptor, body, body_len,
		    call != NULL ? &call->base : NULL);
		if (call == NULL)
			continue;
		if (call->method_id >= 1 && call->method_id <= svc->n_methods) {
			const ProtobufCMessageDescriptor *in = svc->methods[call->method_id - 1].input;
			ProtobufCMessage *req;

			req = protobuf_c_message_unpack(in, &pbwipe_allocator, call->request.len,
			    call->request.data);
			check_strings(in, call->request.data, call->request.len, req);
			if (req != NULL)
				protobuf_c_message_free_unpacked(req, &pbwipe_allocator);
		}
		check_repack(call, max);
		pcsecret__v1__call__free_unpacked(call, &pbwipe_allocator);
	}
	return 0;
}
