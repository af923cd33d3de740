/*
 * Frame codec: a 4-byte big-endian length N, then N bytes of protobuf.
 * The length is checked against the maximum before anything is allocated.
 */
#ifndef PCS_COMMON_FRAME_H
#define PCS_COMMON_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "status.h"

#define FRAME_HEADER_LEN 4
#define FRAME_DEFAULT_MAX (1024u * 1024u)

/*
 * Looks at the first avail bytes of buf. Returns 1 and sets *body_len when a whole frame
 * (header + body) is there, 0 when more bytes are needed, or -PCS_INVALID_ARGUMENT (len 0)
 * / -PCS_RESOURCE_EXHAUSTED (len > max) with err naming the limit.
 */
int frame_peek(const uint8_t *buf, size_t avail, uint32_t max, uint32_t *body_len, pcs_error *err);
void frame_put_n32(uint8_t out[FRAME_HEADER_LEN], uint32_t len);

/*
 * Packs msg into a new heap buffer holding header + body. Fails with
 * -PCS_RESOURCE_EXHAUSTED when the body would exceed max. The caller frees *out
 * (with frame_free, which wipes it: frames may carry values).
 */
int frame_pack(
    const ProtobufCMessage *msg, uint32_t max, uint8_t **out, size_t *out_len, pcs_error *err);
void frame_free(uint8_t *frame, size_t len);

#endif
