/* hutil: what several rpc handlers do alike. */
#ifndef PCS_SERVER_HUTIL_H
#define PCS_SERVER_HUTIL_H

#include <stddef.h>
#include "status.h"

struct call;

/*
 * The start of a call about one company: authorizes the caller for it, checks the name, and
 * names the company in the audit row. Returns 0, or -1 with the call failed.
 */
int h_company(struct call *c, const char *company) PCS_WUR;
/*
 * Storage for a repeated message field of n elements of size bytes: zeroed *items and *ptrs
 * with ptrs[i] pointing at element i. Returns 0, or -1 with the call failed (out of memory).
 * Free both with free().
 */
int h_repeated(struct call *c, size_t n, size_t size, void *items, void *ptrs) PCS_WUR;

#endif
