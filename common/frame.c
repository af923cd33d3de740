#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "frame.h"

static uint32_t frame_get_n32(const uint8_t in[FRAME_HEADER_LEN])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 |
	    (uint32_t)in[3];
}

void frame_put_n32(uint8_t out[FRAME_HEADER_LEN], uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

int frame_peek(const uint8_t *buf, size_t avail, uint32_t max, uint32_t *body_len, pcs_error *err)
{
	uint32_t len;

	if (avail < FRAME_HEADER_LEN)
		return 0;
	len = frame_get_n32(buf);
	/* Judge the length from the header alone, so a hostile peer cannot make us buffer. */
	if (len == 0)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "frame length 0 is not allowed");
	if (len > max)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "frame of %u bytes exceeds the maximum of %u bytes", len, max);
	if (avail - FRAME_HEADER_LEN < len)
		return 0;
	*body_len = len;
	return 1;
}

int frame_pack(
    const ProtobufCMessage *msg, uint32_t max, uint8_t **out, size_t *out_len, pcs_error *err)
{
	uint8_t *frame = NULL;
	size_t body, packed, total = 0;
	int r;

	*out = NULL;
	*out_len = 0;
	body = protobuf_c_message_get_packed_size(msg);
	/* The peer would reject an empty frame as a protocol error: never send one. */
	if (body == 0) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "message packs to 0 bytes and a frame length 0 is not allowed");
		goto out;
	}
	if (body > max) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "message of %zu bytes exceeds the maximum frame of %u bytes", body, max);
		goto out;
	}
	total = FRAME_HEADER_LEN + body;
	if ((frame = malloc(total)) == NULL) {
		r = pcs_fail(
		    err, PCS_RESOURCE_EXHAUSTED, "cannot allocate a frame of %zu bytes", total);
		goto out;
	}
	frame_put_n32(frame, (uint32_t)body);
	packed = protobuf_c_message_pack(msg, frame + FRAME_HEADER_LEN);
	if (packed != body) {
		r = pcs_fail(
		    err, PCS_INTERNAL, "message packed to %zu bytes, expected %zu", packed, body);
		goto out;
	}
	*out = frame;
	*out_len = total;
	frame = NULL;
	r = 0;
out:
	frame_free(frame, total);
	return r;
}

void frame_free(uint8_t *frame, size_t len)
{
	if (frame == NULL)
		return;
	sodium_memzero(frame, len);
	free(frame);
}
