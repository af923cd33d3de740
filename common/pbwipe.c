#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <sodium.h>

#include "pbwipe.h"

/* The union keeps the block after the header aligned for any type protobuf-c stores. */
typedef union {
	max_align_t align;
	size_t size;
} pbwipe_header;

static void *pbwipe_alloc(void *allocator_data, size_t size)
{
	pbwipe_header *h;

	(void)allocator_data;
	if (size > SIZE_MAX - sizeof(*h))
		return NULL;
	if ((h = malloc(sizeof(*h) + size)) == NULL)
		return NULL;
	h->size = size;
	return h + 1;
}

static void pbwipe_free(void *allocator_data, void *p)
{
	pbwipe_header *h;

	(void)allocator_data;
	if (p == NULL)
		return;
	h = (pbwipe_header *)p - 1;
	sodium_memzero(h, sizeof(*h) + h->size);
	free(h);
}

ProtobufCAllocator pbwipe_allocator = {
	.alloc = pbwipe_alloc,
	.free = pbwipe_free,
	.allocator_data = NULL,
};
