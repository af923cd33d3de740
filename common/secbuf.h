/*
 * secbuf: locked, wiped buffers for data keys and plaintext, without a system call each.
 * The daemon keeps data keys and opened values in it; the SDK the values it returns.
 *
 * sodium_malloc costs about ten system calls per buffer (mmap, three mprotect, madvise, mlock;
 * then mprotect, madvise, munlock, munmap to free it): on the daemon's resolve path, two
 * buffers per value, that was a third of its CPU; in a client, most of what a resolve costs.
 * secbuf maps one region once, locks it and keeps it out of core dumps, and carves it into
 * fixed-size slots of four size classes. A buffer is a slot popped from its class's free stack
 * (the next class up when that one is empty); freeing wipes the whole slot and pushes it back.
 * Nothing on that path enters the kernel.
 *
 * When every class that fits is exhausted, or the request is larger than the largest class,
 * the buffer comes from sodium_malloc instead and is counted: nothing fails under load, and
 * secbuf_stats says how often it happened. If the region cannot be locked (RLIMIT_MEMLOCK
 * without CAP_IPC_LOCK), the pool is not used at all and every buffer comes from sodium_malloc,
 * as before: speed is never bought with unlocked plaintext.
 *
 * What a slot lacks against sodium_malloc: a guard page and a canary of its own. Guard pages
 * bound each class's area, not each buffer (docs/security.md says why). Under AddressSanitizer
 * free slots and the tail of a slot past the requested length are poisoned, so the tests still
 * catch overruns and use after free.
 *
 * Threads: every function may be called from any thread. One mutex guards the free stacks and
 * the counters and is held only to pop or push an index; slots are wiped, and fallbacks mapped
 * and unmapped, outside it. A buffer may be freed by another thread than the one that got it.
 *
 * fork: handlers (pthread_atfork) take the mutex around fork(), so a child never inherits it
 * held, and the child's copy of the pool stays consistent: it may free what it inherited
 * (that slot becomes free in the child only) and allocate. Locks are not inherited, so the
 * child locks the region again before it hands out its first slot (if it cannot, it uses
 * sodium_malloc from then on). With SECBUF_WIPE_ON_FORK (MADV_WIPEONFORK, where the kernel has
 * it) the child sees every slot zeroed, the buffers it inherited included: still valid to free,
 * but their contents are gone. Without it the child reads them as the parent left them, as
 * with sodium_malloc. A raw clone() without fork's handlers must exec (or _exit) and never
 * call into secbuf.
 */
#ifndef PCS_COMMON_SECBUF_H
#define PCS_COMMON_SECBUF_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

#define SECBUF_CLASSES 4
/* The largest pooled request: a value of max_value (at most 64 KiB) and its NUL, rounded to 64. */
#define SECBUF_MAX (64 * 1024 + 64)

/* A child after fork finds every slot zeroed (the daemon: no values between fork and exec). */
#define SECBUF_WIPE_ON_FORK 0x1u
/*
 * Lock pages as they are first written (mlock2 MLOCK_ONFAULT) instead of faulting the whole
 * region in at initialisation: a client that resolves three values pays for three pages, not
 * for the pool. RLIMIT_MEMLOCK is charged for the whole region either way. Without kernel
 * support (before Linux 4.4) the region is locked whole.
 */
#define SECBUF_LOCK_ON_FAULT 0x2u

/* Slots per class (64 B, 1 KiB, 4 KiB, SECBUF_MAX) and SECBUF_* flags. */
struct secbuf_config {
	uint32_t slots[SECBUF_CLASSES];
	unsigned flags;
};

/*
 * The daemon's pool, and the one a secbuf_alloc before any secbuf_init sets up: sized for a
 * Resolve of max_refs (256) values and its data key, about 1 MiB locked at start-up.
 */
extern const struct secbuf_config secbuf_config_daemon;

struct secbuf_class_stats {
	size_t size;        /* bytes of one slot */
	size_t slots;       /* slots of this class in the pool (0 when the pool is not used) */
	size_t in_use;      /* slots handed out now */
	size_t high_water;  /* most slots handed out at once */
	uint64_t fallbacks; /* requests of this size served by sodium_malloc */
};

struct secbuf_stats {
	struct secbuf_class_stats cls[SECBUF_CLASSES];
	uint64_t oversize;    /* requests larger than SECBUF_MAX (always sodium_malloc) */
	size_t fallback_live; /* sodium_malloc buffers handed out and not freed yet */
	int pooled;           /* 1 when the region is mapped and locked and slots are handed out */
};

/*
 * Initialises libsodium, maps and locks the region as cfg says (NULL: secbuf_config_daemon).
 * The first call in a process decides; later ones, whatever their cfg, do nothing and return 0.
 * A region that cannot be locked is not an error (the pool is then not used); one that cannot
 * be mapped is -PCS_RESOURCE_EXHAUSTED, and libsodium failing -PCS_INTERNAL.
 */
int secbuf_init(const struct secbuf_config *cfg, pcs_error *err) PCS_WUR;
/*
 * len bytes (0 is allowed), zeroed, 64-byte aligned. Initialises with the daemon's
 * configuration if nothing did yet. -PCS_RESOURCE_EXHAUSTED if no memory at all.
 */
int secbuf_alloc(size_t len, void **out, pcs_error *err) PCS_WUR;
/*
 * Wipes and releases a buffer from secbuf_alloc; NULL does nothing. Freeing a slot twice, or a
 * pointer into the middle of one, aborts: the slot could otherwise be handed out twice.
 */
void secbuf_free(void *p);
void secbuf_stats(struct secbuf_stats *out);
/*
 * For tests: 1 when every byte of the slot holding p (handed out or free) is zero, 0 when not,
 * -1 when p is not in the pool. Reads through AddressSanitizer's poisoning of free slots; the
 * caller makes sure no other thread is using that slot meanwhile.
 */
int secbuf_slot_is_zero(const void *p);

#endif
