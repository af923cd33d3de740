/*
 * mask: replaces secret values in a byte stream (a child's stdout or stderr) with
 * MASK_TEXT, also when a value is split across reads. Between feeds it keeps at most the
 * longest value's length minus one bytes, the only bytes that can still start a match; the
 * rest is written at once. One struct mask per stream; the values are shared and borrowed.
 */
#ifndef PCS_CLIENT_MASK_H
#define PCS_CLIENT_MASK_H

#include <stddef.h>

#include "status.h"

#define MASK_TEXT "<concealed by pcsecret>"
/* Values shorter than this are not masked: they would match ordinary output everywhere. */
#define MASK_MIN_LEN 4

struct mask_value {
	const unsigned char *data; /* borrowed: must outlive every mask using it */
	size_t len;
};

/* Where masked bytes go; returns 0 or a negative status. */
typedef int (*mask_write_fn)(void *ctx, const unsigned char *buf, size_t len);

struct mask {
	const struct mask_value *values; /* sorted longest first by mask_values_sort */
	size_t nvalues;
	size_t max_len;
	unsigned char *tail; /* secure memory: it may hold the start of a value */
	size_t tail_len;
	unsigned char *scratch; /* tail + one feed's chunk, secure memory */
	size_t scratch_cap;
	mask_write_fn write;
	void *ctx;
};

/* Orders values longest first, so that the longest value starting at a position wins. */
void mask_values_sort(struct mask_value *values, size_t n);
/*
 * Sets m up for values (each at least MASK_MIN_LEN bytes; sorted) and a chunk size: feeds of
 * at most chunk bytes. 0 or -PCS_RESOURCE_EXHAUSTED.
 */
int mask_init(struct mask *m, const struct mask_value *values, size_t n, size_t chunk,
    mask_write_fn write, void *ctx, pcs_error *err);
/*
 * Replaces the values (pcrun --on-change, after a rotation), keeping what is held back. The
 * bytes held back never shrink (max_len is the longest value ever set), so nothing that may
 * start an old or a new value is written early. 0 or -PCS_RESOURCE_EXHAUSTED (m unchanged).
 */
int mask_set_values(struct mask *m, const struct mask_value *values, size_t n, pcs_error *err);
/* Masks len (<= chunk) more bytes, writing what can no longer be part of a value. */
int mask_feed(struct mask *m, const unsigned char *buf, size_t len);
/* End of the stream: writes what is held back, masked. */
int mask_flush(struct mask *m);
/* Wipes and frees what mask_init allocated. */
void mask_free(struct mask *m);

#endif
