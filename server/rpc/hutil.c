#include "hutil.h"

#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "ref.h"

int h_company(struct call *c, const char *company)
{
	if (call_authorize(c, company, NULL) != 0)
		return -1;
	if (!name_valid(company)) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "company name \"%.128s\" is invalid: use 1 to 128 "
		    "lowercase letters, digits, '-', '_' or '.'",
		    company);
		return -1;
	}
	call_set_target(c, company, NULL, NULL);
	return 0;
}

int h_repeated(struct call *c, size_t n, size_t size, void *items, void *ptrs)
{
	char *block = calloc(n + 1, size);
	void **p = calloc(n + 1, sizeof(*p));

	if (block == NULL || p == NULL) {
		free(block);
		free(p);
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		p[i] = block + i * size;
	memcpy(items, &block, sizeof(block));
	memcpy(ptrs, &p, sizeof(p));
	return 0;
}
