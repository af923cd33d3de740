/*
 * mask: the streaming replacement of secret values in a child's output (pcrun --mask).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mask.h"

static int by_length_desc(const void *a, const void *b)
{
	const struct mask_value *x = a, *y = b;

	return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

void mask_values_sort(struct mask_value *values, size_t n)
{
	if (n > 1)
		qsort(values, n, sizeof(*values), by_length_desc);
}

int mask_init(struct mask *m, const struct mask_value *values, size_t n, size_t chunk,
    mask_write_fn write, void *ctx, pcs_error *err)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	m->values = values;
	m->nvalues = n;
	m->write = write;
	m->ctx = ctx;
	for (i = 0; i < n; i++)
		if (values[i].len > m->max_len)
			m->max_len = values[i].len;
	m->scratch_cap = (m->max_len > 0 ? m->max_len - 1 : 0) + chunk;
	if ((m->scratch = sodium_malloc(m->scratch_cap + 1)) == NULL ||
	    (m->tail = sodium_malloc(m->max_len + 1)) == NULL) {
		mask_free(m);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of secure memory for masking");
	}
	return 0;
}

int mask_set_values(struct mask *m, const struct mask_value *values, size_t n, pcs_error *err)
{
	size_t i, max_len = m->max_len, chunk, cap;
	unsigned char *scratch = NULL, *tail = NULL;

	chunk = m->scratch_cap - (m->max_len > 0 ? m->max_len - 1 : 0);
	for (i = 0; i < n; i++)
		if (values[i].len > max_len)
			max_len = values[i].len;
	if (max_len > m->max_len) {
		cap = max_len - 1 + chunk;
		if ((scratch = sodium_malloc(cap + 1)) == NULL ||
		    (tail = sodium_malloc(max_len + 1)) == NULL) {
			sodium_free(scratch);
			return pcs_fail(
			    err, PCS_RESOURCE_EXHAUSTED, "out of secure memory for masking");
		}
		memcpy(tail, m->tail, m->tail_len);
		sodium_free(m->scratch);
		sodium_free(m->tail);
		m->scratch = scratch;
		m->tail = tail;
		m->scratch_cap = cap;
		m->max_len = max_len;
	}
	m->values = values;
	m->nvalues = n;
	return 0;
}

/* The length of the longest value that starts at buf[0] and ends within len bytes, or 0. */
static size_t match_at(const struct mask *m, const unsigned char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < m->nvalues; i++)
		if (m->values[i].len <= len && buf[0] == m->values[i].data[0] &&
		    memcmp(buf, m->values[i].data, m->values[i].len) == 0)
			return m->values[i].len;
	return 0;
}

/*
 * Masks buf[0 .. len): writes everything that starts before limit (a match there may end
 * past it, within len), and returns where it stopped.
 */
static int scan(struct mask *m, const unsigned char *buf, size_t len, size_t limit, size_t *stop)
{
	size_t i = 0, plain = 0, mlen;
	int r;

	while (i < limit) {
		if ((mlen = match_at(m, buf + i, len - i)) == 0) {
			i++;
			continue;
		}
		if ((i > plain && (r = m->write(m->ctx, buf + plain, i - plain)) != 0) ||
		    (r = m->write(
		         m->ctx, (const unsigned char *)MASK_TEXT, sizeof(MASK_TEXT) - 1)) != 0)
			return r;
		i += mlen;
		plain = i;
	}
	if (i > plain && (r = m->write(m->ctx, buf + plain, i - plain)) != 0)
		return r;
	*stop = i;
	return 0;
}

int mask_feed(struct mask *m, const unsigned char *buf, size_t len)
{
	size_t hold, limit, stop = 0, total;
	int r;

	if (m->nvalues == 0 && m->tail_len == 0)
		return len > 0 ? m->write(m->ctx, buf, len) : 0;
	if (m->tail_len + len > m->scratch_cap)
		return -PCS_INTERNAL;
	memcpy(m->scratch, m->tail, m->tail_len);
	memcpy(m->scratch + m->tail_len, buf, len);
	total = m->tail_len + len;
	/* A value may start in the last max_len - 1 bytes and end in the next feed. */
	hold = m->max_len - 1;
	limit = total > hold ? total - hold : 0;
	r = scan(m, m->scratch, total, limit, &stop);
	if (r == 0) {
		m->tail_len = total - stop;
		memcpy(m->tail, m->scratch + stop, m->tail_len);
	}
	sodium_memzero(m->scratch, total);
	return r;
}

int mask_flush(struct mask *m)
{
	size_t stop = 0;
	int r;

	if (m->tail_len == 0)
		return 0;
	r = scan(m, m->tail, m->tail_len, m->tail_len, &stop);
	sodium_memzero(m->tail, m->tail_len);
	m->tail_len = 0;
	return r;
}

void mask_free(struct mask *m)
{
	sodium_free(m->scratch);
	sodium_free(m->tail);
	m->scratch = m->tail = NULL;
	m->tail_len = 0;
}
