/*
 * A UTF-8 validator of our own: the check must run on the raw wire bytes before protobuf-c
 * (which has none) and in the daemon's log and audit paths, and neither libsodium nor jansson
 * exposes one. It follows RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
 */
#include "pbcheck.h"

#include <stdio.h>
#include <string.h>

/* Our schema nests three deep; a bound keeps a hostile descriptor walk off the stack. */
#define PBCHECK_DEPTH_MAX 32

size_t pbcheck_utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t b0, lo = 0x80, hi = 0xbf;
	size_t need;

	if (n == 0)
		return 0;
	b0 = p[0];
	if (b0 < 0x80)
		return 1;
	if (b0 < 0xc2) /* continuation byte, or C0/C1: overlong two-byte forms */
		return 0;
	if (b0 < 0xe0) {
		need = 2;
	} else if (b0 < 0xf0) {
		need = 3;
		if (b0 == 0xe0)
			lo = 0xa0; /* overlong three-byte forms */
		else if (b0 == 0xed)
			hi = 0x9f; /* U+D800..U+DFFF: surrogates */
	} else if (b0 < 0xf5) {
		need = 4;
		if (b0 == 0xf0)
			lo = 0x90; /* overlong four-byte forms */
		else if (b0 == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return need;
}

/* PBCHECK_OK, PBCHECK_NUL or PBCHECK_BAD_UTF8, whichever comes first in the bytes. */
static enum pbcheck_result check_string(const uint8_t *p, size_t n)
{
	size_t i = 0, k;

	while (i < n) {
		if (p[i] == 0)
			return PBCHECK_NUL;
		if ((k = pbcheck_utf8_seq(p + i, n - i)) == 0)
			return PBCHECK_BAD_UTF8;
		i += k;
	}
	return PBCHECK_OK;
}

int pbcheck_utf8_valid(const uint8_t *p, size_t n) { return check_string(p, n) == PBCHECK_OK; }

/* Reads a varint of at most 10 bytes; 0, or -1 when truncated or too long. */
static int read_varint(const uint8_t *p, size_t n, size_t *used, uint64_t *out)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && i < 10; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0) {
			*used = i + 1;
			*out = v;
			return 0;
		}
	}
	return -1;
}

static void name_field(char *field, const ProtobufCMessageDescriptor *desc, const char *name)
{
	if (field != NULL)
		snprintf(field, PBCHECK_FIELD_MAX, "%s%s%s", desc->short_name, name ? "." : "",
		    name ? name : "");
}

/* Recursion follows the schema's nesting and stops at PBCHECK_DEPTH_MAX. */
static enum pbcheck_result walk( // NOLINT(misc-no-recursion): bounded by PBCHECK_DEPTH_MAX
    const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, char *field, int depth)
{
	size_t off = 0, used;
	uint64_t tag, n;
	enum pbcheck_result r;

	if (depth > PBCHECK_DEPTH_MAX) {
		name_field(field, desc, NULL);
		return PBCHECK_MALFORMED;
	}
	while (off < len) {
		const ProtobufCFieldDescriptor *f = NULL;

		if (read_varint(data + off, len - off, &used, &tag) != 0 || (tag >> 3) == 0 ||
		    (tag >> 3) > UINT32_MAX)
			goto malformed;
		off += used;
		/* Looked up only for the wire type that can carry a string or a message. */
		if ((tag & 7) == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
			f = protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
		switch (tag & 7) {
		case PROTOBUF_C_WIRE_TYPE_VARINT:
			if (read_varint(data + off, len - off, &used, &n) != 0)
				goto malformed;
			off += used;
			break;
		case PROTOBUF_C_WIRE_TYPE_64BIT:
			if (len - off < 8)
				goto malformed;
			off += 8;
			break;
		case PROTOBUF_C_WIRE_TYPE_32BIT:
			if (len - off < 4)
				goto malformed;
			off += 4;
			break;
		case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
			if (read_varint(data + off, len - off, &used, &n) != 0 ||
			    n > len - off - used)
				goto malformed;
			off += used;
			if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING &&
			    (r = check_string(data + off, (size_t)n)) != PBCHECK_OK) {
				name_field(field, desc, f->name);
				return r;
			}
			if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    f->descriptor != NULL &&
			    (r = walk(f->descriptor, data + off, (size_t)n, field, depth + 1)) !=
			        PBCHECK_OK)
				return r;
			off += (size_t)n;
			break;
		default:
			/* Groups (3, 4) are not proto3 and protobuf-c refuses them; so do we. */
			goto malformed;
		}
	}
	return PBCHECK_OK;
malformed:
	name_field(field, desc, NULL);
	return PBCHECK_MALFORMED;
}

enum pbcheck_result pbcheck_message(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
    size_t len, char field[PBCHECK_FIELD_MAX])
{
	if (field != NULL)
		field[0] = '\0';
	if (len > 0 && data == NULL) {
		name_field(field, desc, NULL);
		return PBCHECK_MALFORMED;
	}
	return walk(desc, data, len, field, 0);
}

const char *pbcheck_problem(enum pbcheck_result r)
{
	switch (r) {
	case PBCHECK_OK:
		return "is valid";
	case PBCHECK_BAD_UTF8:
		return "is not valid UTF-8";
	case PBCHECK_NUL:
		return "contains a NUL byte";
	case PBCHECK_MALFORMED:
		break;
	}
	return "is not well-formed";
}
