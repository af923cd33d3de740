#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "secbuf.h"

#if defined(__SANITIZE_ADDRESS__)
#define SECBUF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECBUF_ASAN 1
#endif
#endif
#ifdef SECBUF_ASAN
#include <sanitizer/asan_interface.h>
#define SECBUF_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SECBUF_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define SECBUF_NO_ASAN __attribute__((no_sanitize_address))
#else
#define SECBUF_POISON(p, n) ((void)(p), (void)(n))
#define SECBUF_UNPOISON(p, n) ((void)(p), (void)(n))
#define SECBUF_NO_ASAN
#endif

static const size_t class_size[SECBUF_CLASSES] = {
	64,         /* data keys (32 bytes), short values */
	1024,       /* most values */
	4096,       /* certificates, small key files */
	SECBUF_MAX, /* up to max_value and its NUL */
};

/*
 * Sized for the resolve path: a Resolve holds all its values at once (max_refs, 256 by
 * default) plus one data key. Most values are API keys and tokens well under 1 KiB; the large
 * class is for the rare certificate or key file up to max_value. About 1 MiB locked in all,
 * well under the usual 8 MiB RLIMIT_MEMLOCK, faulted in at start-up so the hot path takes no
 * page fault either.
 */
const struct secbuf_config secbuf_config_daemon = {
	{ 256, 256, 64, 8 },
	SECBUF_WIPE_ON_FORK,
};

_Static_assert(SECBUF_MAX % 64 == 0, "slots stay 64-byte aligned");
_Static_assert(SECBUF_MAX >= 64 * 1024 + 1, "a value of the largest max_value and its NUL fit");

struct secbuf_class {
	uint8_t *base;   /* first slot; NULL when the class has no slots */
	size_t slots;    /* slots of the class */
	size_t area;     /* bytes of its area: slots * size, rounded up to pages */
	uint32_t *stack; /* free slot indices, top at stack[nfree - 1] */
	uint8_t *live;   /* 1 for a slot handed out: catches a second free */
	size_t nfree;
	size_t high_water;
	uint64_t fallbacks;
};

/*
 * The bookkeeping lives outside the region, in ordinary memory: a write through a stale
 * pointer into a free slot cannot corrupt the free stacks, and nothing here is secret.
 * region, region_len and each class's base, slots and area are written once, by the
 * initialisation under the lock, before any slot exists, and never again: a thread holding a
 * slot got it from an allocation that took the lock after that, so they are read without it.
 * Everything else is read and written under the lock.
 */
static struct {
	pthread_mutex_t lock;
	int initialised; /* secbuf_init ran, whatever it found: never retried */
	int serving;     /* slots are handed out: the region is mapped and locked here */
	int relock;      /* in a child after fork: lock the region again before the next slot */
	unsigned flags;
	uint8_t *region; /* NULL when the region is not mapped */
	size_t region_len;
	struct secbuf_class cls[SECBUF_CLASSES];
	uint64_t oversize;
	size_t fallback_live;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER };

static _Noreturn void secbuf_misuse(const char *what)
{
	fprintf(stderr, "secbuf: %s\n", what);
	abort();
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* -1 (errno set) when the kernel refuses to lock len bytes at base. */
static int lock_area(uint8_t *base, size_t len)
{
#ifdef MLOCK_ONFAULT
	if (pool.flags & SECBUF_LOCK_ON_FAULT) {
		if (mlock2(base, len, MLOCK_ONFAULT) == 0)
			return 0;
		/* Only a kernel without MLOCK_ONFAULT says EINVAL or ENOSYS: lock it whole. */
		if (errno != EINVAL && errno != ENOSYS)
			return -1;
	}
#endif
	return mlock(base, len);
}

/*
 * Maps [guard][class 0][guard][class 1]...[guard], each class's area locked and not dumped,
 * and the bookkeeping. *locked is 0 when the kernel refused the lock or the exclusion from
 * dumps: then nothing is left mapped or allocated and the pool is not used.
 */
static int map_region(const struct secbuf_config *cfg, int *locked, pcs_error *err)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), off = page, total = 0, at = 0;
	size_t area[SECBUF_CLASSES], start[SECBUF_CLASSES];
	uint8_t *region = MAP_FAILED, *live = NULL;
	uint32_t *stack = NULL;
	int c, r;

	*locked = 0;
	for (c = 0; c < SECBUF_CLASSES; c++) {
		area[c] = round_up(class_size[c] * cfg->slots[c], page);
		start[c] = off;
		off += area[c] + page;
		total += cfg->slots[c];
	}
	if (total == 0)
		return 0;
	if ((stack = calloc(total, sizeof(*stack))) == NULL ||
	    (live = calloc(total, sizeof(*live))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory for %zu buffers", total);
		goto out;
	}
	/* PROT_NONE first: whatever is not opened up below is a guard page. */
	region = mmap(NULL, off, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		r = pcs_fail(
		    err, PCS_RESOURCE_EXHAUSTED, "cannot map %zu bytes for locked buffers", off);
		goto out;
	}
	for (c = 0; c < SECBUF_CLASSES; c++) {
		uint8_t *base = region + start[c];

		if (area[c] == 0)
			continue;
		if (mprotect(base, area[c], PROT_READ | PROT_WRITE) != 0) {
			r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
			    "cannot open up %zu bytes for locked buffers", area[c]);
			goto out;
		}
#ifdef MADV_DONTDUMP
		/* sodium_mlock does this too but ignores a failure; here it decides. */
		if (madvise(base, area[c], MADV_DONTDUMP) != 0) {
			r = 0;
			goto out;
		}
#endif
		/* Unlocked plaintext is what the pool must not hand out: no lock, no pool. */
		if (lock_area(base, area[c]) != 0) {
			r = 0;
			goto out;
		}
#ifdef MADV_WIPEONFORK
		/* Best effort: a child between fork and exec then holds no values. */
		if (cfg->flags & SECBUF_WIPE_ON_FORK)
			(void)madvise(base, area[c], MADV_WIPEONFORK);
#endif
		SECBUF_POISON(base, area[c]);
		pool.cls[c].base = base;
	}
	for (c = 0; c < SECBUF_CLASSES; c++) {
		pool.cls[c].slots = cfg->slots[c];
		pool.cls[c].area = area[c];
		pool.cls[c].stack = stack + at;
		pool.cls[c].live = live + at;
		at += cfg->slots[c];
	}
	pool.region = region;
	pool.region_len = off;
	region = MAP_FAILED;
	stack = NULL;
	live = NULL;
	*locked = 1;
	r = 0;
out:
	if (region != MAP_FAILED) {
		for (c = 0; c < SECBUF_CLASSES; c++) {
			if (pool.cls[c].base != NULL)
				SECBUF_UNPOISON(pool.cls[c].base, area[c]);
			pool.cls[c].base = NULL;
		}
		/* munmap drops the locks; the pages were never written. */
		(void)munmap(region, off);
	}
	free(stack);
	free(live);
	return r;
}

/*
 * Around fork(): the mutex is taken first, so no other thread is half-way through the free
 * stacks when the address space is copied, and the child gets it unlocked (by the thread that
 * took it, the one that forked).
 */
static void fork_prepare(void) { pthread_mutex_lock(&pool.lock); }

static void fork_parent(void) { pthread_mutex_unlock(&pool.lock); }

static void fork_child(void)
{
	/* mlock's locks are not inherited: no system call here, the next allocation does it. */
	if (pool.serving)
		pool.relock = 1;
	pthread_mutex_unlock(&pool.lock);
}

static int init_locked(const struct secbuf_config *cfg, pcs_error *err)
{
	size_t i;
	int c, locked = 0, r;

	if (pool.initialised)
		return 0;
	/* sodium_malloc, the fallback, needs it; the SDK may get here before pcs_connect. */
	if (sodium_init() < 0)
		return pcs_fail(err, PCS_INTERNAL, "libsodium failed to initialise");
	/* Even without the pool: the mutex guards the counters, and must not be forked held. */
	if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "cannot register fork handlers");
	/* Either way not retried on every allocation: each try would be system calls. */
	pool.initialised = 1;
	if (cfg == NULL)
		cfg = &secbuf_config_daemon;
	pool.flags = cfg->flags;
	if ((r = map_region(cfg, &locked, err)) != 0 || !locked)
		return r;
	for (c = 0; c < SECBUF_CLASSES; c++) {
		/* Pushed in reverse so that slot 0 comes out first. */
		for (i = 0; i < pool.cls[c].slots; i++)
			pool.cls[c].stack[i] = (uint32_t)(pool.cls[c].slots - 1 - i);
		pool.cls[c].nfree = pool.cls[c].slots;
	}
	pool.serving = 1;
	return 0;
}

int secbuf_init(const struct secbuf_config *cfg, pcs_error *err)
{
	int r;

	pthread_mutex_lock(&pool.lock);
	r = init_locked(cfg, err);
	pthread_mutex_unlock(&pool.lock);
	return r;
}

/* In a child after fork, before its first slot: unlocked slots are not handed out. */
static void relock_locked(void)
{
	int c;

	pool.relock = 0;
	for (c = 0; c < SECBUF_CLASSES; c++) {
		if (pool.cls[c].area > 0 && lock_area(pool.cls[c].base, pool.cls[c].area) != 0) {
			/* Frees of slots still work; allocations use sodium_malloc from now on. */
			pool.serving = 0;
			return;
		}
	}
}

static size_t class_for(size_t len)
{
	size_t c = 0;

	while (c < SECBUF_CLASSES && len > class_size[c])
		c++;
	return c;
}

/* A free slot of class want or, that one empty, of the next class up that has one; or NULL. */
static uint8_t *pop_locked(size_t want)
{
	size_t c, in_use;
	uint32_t i;

	/* A larger slot beats a system call: spill upwards before falling back. */
	for (c = want; c < SECBUF_CLASSES; c++) {
		struct secbuf_class *k = &pool.cls[c];

		if (k->nfree == 0)
			continue;
		i = k->stack[--k->nfree];
		k->live[i] = 1;
		in_use = k->slots - k->nfree;
		if (in_use > k->high_water)
			k->high_water = in_use;
		return k->base + (size_t)i * class_size[c];
	}
	return NULL;
}

int secbuf_alloc(size_t len, void **out, pcs_error *err)
{
	size_t want = class_for(len), n;
	uint8_t *p = NULL;
	int r;

	*out = NULL;
	pthread_mutex_lock(&pool.lock);
	if (!pool.initialised && (r = init_locked(NULL, err)) != 0) {
		pthread_mutex_unlock(&pool.lock);
		return r;
	}
	if (pool.relock)
		relock_locked();
	if (pool.serving)
		p = pop_locked(want);
	if (p == NULL) {
		if (want == SECBUF_CLASSES)
			pool.oversize++;
		else
			pool.cls[want].fallbacks++;
		/* Counted now, so the system calls below run without the lock. */
		pool.fallback_live++;
	}
	pthread_mutex_unlock(&pool.lock);
	if (p != NULL) {
		/* Zero already: wiped when freed, or never written since the mmap. */
		SECBUF_UNPOISON(p, len);
		*out = p;
		return 0;
	}
	/*
	 * sodium_malloc puts the end of the buffer against its guard page, so only a size that is
	 * a multiple of 64 gives the same alignment as a slot.
	 */
	if (len > SIZE_MAX - 63 ||
	    (p = sodium_malloc(n = len == 0 ? 64 : round_up(len, 64))) == NULL) {
		pthread_mutex_lock(&pool.lock);
		pool.fallback_live--;
		pthread_mutex_unlock(&pool.lock);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate locked memory for %zu bytes", len);
	}
	/* sodium_malloc fills with 0xdb; callers get the same zeroed buffer either way. */
	sodium_memzero(p, n);
	*out = p;
	return 0;
}

/* The class whose area holds p, or -1 (p in a guard page between areas, or not in the pool). */
static int class_of(const uint8_t *p)
{
	int c;

	if (pool.region == NULL || p < pool.region || p >= pool.region + pool.region_len)
		return -1;
	for (c = 0; c < SECBUF_CLASSES; c++) {
		const uint8_t *base = pool.cls[c].base;

		if (base != NULL && p >= base && p < base + class_size[c] * pool.cls[c].slots)
			return c;
	}
	return -1;
}

void secbuf_free(void *ptr)
{
	uint8_t *p = ptr;
	size_t off, i, size;
	int c;

	if (p == NULL)
		return;
	if ((c = class_of(p)) < 0) {
		if (pool.region != NULL && p >= pool.region && p < pool.region + pool.region_len)
			secbuf_misuse("free of a pointer into a guard page");
		/* sodium_free checks its canary: a stray pointer aborts there. */
		sodium_free(p);
		pthread_mutex_lock(&pool.lock);
		pool.fallback_live--;
		pthread_mutex_unlock(&pool.lock);
		return;
	}
	size = class_size[c];
	off = (size_t)(p - pool.cls[c].base);
	if (off % size != 0)
		secbuf_misuse("free of a pointer into the middle of a buffer");
	i = off / size;
	pthread_mutex_lock(&pool.lock);
	if (!pool.cls[c].live[i]) {
		pthread_mutex_unlock(&pool.lock);
		secbuf_misuse("buffer freed twice");
	}
	/*
	 * Neither live nor on the stack: the slot is this call's alone, so it is wiped without the
	 * lock (up to 64 KiB, which other threads need not wait for), and a second free of it
	 * meanwhile aborts as above.
	 */
	pool.cls[c].live[i] = 0;
	pthread_mutex_unlock(&pool.lock);
	/* The whole slot, not the requested length: a caller's overrun into the slack goes too. */
	SECBUF_UNPOISON(p, size);
	sodium_memzero(p, size);
	SECBUF_POISON(p, size);
	pthread_mutex_lock(&pool.lock);
	pool.cls[c].stack[pool.cls[c].nfree++] = (uint32_t)i;
	pthread_mutex_unlock(&pool.lock);
}

void secbuf_stats(struct secbuf_stats *out)
{
	int c;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&pool.lock);
	for (c = 0; c < SECBUF_CLASSES; c++) {
		struct secbuf_class_stats *s = &out->cls[c];

		s->size = class_size[c];
		if (pool.region != NULL) {
			s->slots = pool.cls[c].slots;
			s->in_use = pool.cls[c].slots - pool.cls[c].nfree;
		}
		s->high_water = pool.cls[c].high_water;
		s->fallbacks = pool.cls[c].fallbacks;
	}
	out->oversize = pool.oversize;
	out->fallback_live = pool.fallback_live;
	out->pooled = pool.serving;
	pthread_mutex_unlock(&pool.lock);
}

SECBUF_NO_ASAN int secbuf_slot_is_zero(const void *ptr)
{
	const uint8_t *p = ptr, *slot;
	size_t i, size;
	int c;

	if ((c = class_of(p)) < 0)
		return -1;
	size = class_size[c];
	slot = pool.cls[c].base + (size_t)(p - pool.cls[c].base) / size * size;
	/* A plain loop: memcmp and friends are intercepted by AddressSanitizer. */
	for (i = 0; i < size; i++) {
		if (slot[i] != 0)
			return 0;
	}
	return 1;
}
