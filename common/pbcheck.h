/*
 * pbcheck: checks the string fields of a packed protobuf message before protobuf-c unpacks it.
 *
 * protobuf-c copies a string field up to its first NUL and does not check its encoding, so a
 * name "x\0../../beta" arrives as "x" and invalid UTF-8 reaches logs, replies and PostgreSQL
 * (which rejects it, with every row of the statement). The only place that still sees the
 * bytes as sent is the wire, so the check walks the packed message with its descriptor.
 */
#ifndef PCS_COMMON_PBCHECK_H
#define PCS_COMMON_PBCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

enum pbcheck_result {
	PBCHECK_OK = 0,
	PBCHECK_BAD_UTF8 = 1,  /* a string field is not valid UTF-8 */
	PBCHECK_NUL = 2,       /* a string field contains a NUL byte */
	PBCHECK_MALFORMED = 3, /* not a well-formed protobuf message (unpack would fail too) */
};

/* "Message.field" names of at most this many bytes, NUL included. */
#define PBCHECK_FIELD_MAX 96

/*
 * Walks the packed message len bytes at data as a desc, recursing into sub-messages, and
 * checks every occurrence of every field of type string (repeated ones included). Unknown
 * fields and other types are skipped by their wire type. Returns PBCHECK_OK, or the first
 * problem with field set to its "Message.field" (short message name), e.g. "Call.method";
 * for PBCHECK_MALFORMED field names the message being read. field may be NULL.
 */
enum pbcheck_result pbcheck_message(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
    size_t len, char field[PBCHECK_FIELD_MAX]);

/* "is not valid UTF-8", "contains a NUL byte" or "is not well-formed". */
const char *pbcheck_problem(enum pbcheck_result r);

/* Length (1..4) of the valid UTF-8 sequence at p (n bytes left), 0 when invalid or truncated. */
size_t pbcheck_utf8_seq(const uint8_t *p, size_t n);

/* 1 when the n bytes at p are valid UTF-8 with no NUL. */
int pbcheck_utf8_valid(const uint8_t *p, size_t n);

#endif
