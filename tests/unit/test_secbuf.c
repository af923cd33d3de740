/*
 * The locked buffer pool (common/secbuf.c) alone and under crypto_open: slots come back
 * wiped and are reused, sizes land in the right class at every boundary, exhaustion falls back
 * to sodium_malloc and still works, misuse aborts, threads allocating and freeing at once never
 * share a slot, a child after fork may free and allocate (even when another thread was inside
 * the pool as it forked), a region that cannot be locked is not used, the SDK's kind of pool
 * (locked on fault, kept across fork) does what it says, and opening a value makes no memory
 * system call at all (checked with seccomp, so the test fails the day the hot path maps memory
 * again).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include <cmocka.h>

#include "crypto.h"
#include "keyfile.h"
#include "secbuf.h"
#include "tmpdir.h"

#define COMPANY "7f0c9a52-3b1e-4c55-9d7a-2a1f7c3e5b10"
#define SECRET "c2b6f1de-8a34-4e0f-b3c1-5d9e8f7a6b21"
#define MAX_VALUE (64 * 1024) /* the largest max_value the daemon accepts (core/config.c) */

#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define TEST_ASAN 1
#elif defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

struct fixture {
	char dir[64];
	struct crypto_master *m;
};

static const struct crypto_ad the_ad = { COMPANY, SECRET, 1 };

static int setup(void **state)
{
	static struct fixture f;
	char path[256];
	pcs_error err;

	memset(&f, 0, sizeof(f));
	if (crypto_init(&err) != 0 || tmpdir_make(f.dir, sizeof(f.dir)) != 0)
		return -1;
	tmpdir_path(path, sizeof(path), f.dir, "master.key");
	if (keyfile_create(path, &err) != 0 || crypto_master_load(path, &f.m, &err) != 0) {
		print_error("setup: %s\n", err.message);
		return -1;
	}
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	crypto_master_free(f->m);
	return tmpdir_remove(f->dir);
}

/* Each test starts and ends with nothing handed out: a leak in one shows up in the next. */
static int pool_ready(void **state)
{
	struct secbuf_stats st;
	int c;

	(void)state;
	secbuf_stats(&st);
	for (c = 0; c < SECBUF_CLASSES; c++) {
		if (st.cls[c].in_use != 0) {
			print_error("class %d has %zu slots handed out\n", c, st.cls[c].in_use);
			return -1;
		}
	}
	return st.fallback_live == 0 ? 0 : -1;
}

static void need_pool(void)
{
	struct secbuf_stats st;

	secbuf_stats(&st);
	if (!st.pooled) {
		print_message(
		    "the region could not be locked (RLIMIT_MEMLOCK): pool tests skipped\n");
		skip();
	}
}

static void *take(size_t len)
{
	void *p = NULL;
	pcs_error err;

	assert_int_equal(secbuf_alloc(len, &p, &err), 0);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % 64, 0);
	return p;
}

static int class_taken(const struct secbuf_stats *before)
{
	struct secbuf_stats now;
	int c, which = -1;

	secbuf_stats(&now);
	for (c = 0; c < SECBUF_CLASSES; c++) {
		if (now.cls[c].in_use == before->cls[c].in_use + 1) {
			assert_int_equal(which, -1);
			which = c;
		} else {
			assert_int_equal(now.cls[c].in_use, before->cls[c].in_use);
		}
	}
	return which;
}

static int all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != 0)
			return 0;
	}
	return 1;
}

static void test_reuse_without_leak(void **state)
{
	static const size_t sizes[] = { 32, 500, 3000, 40000 };
	struct secbuf_stats before, after;
	void *p, *q, *held[16];
	size_t i, k;

	(void)state;
	need_pool();
	secbuf_stats(&before);
	/* Last freed, first reused: the slot a value just left is hot in the cache. */
	for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		p = take(sizes[k]);
		secbuf_free(p);
		q = take(sizes[k]);
		assert_ptr_equal(p, q);
		secbuf_free(q);
	}
	/* Distinct live buffers never share a slot. */
	for (i = 0; i < 16; i++) {
		held[i] = take(sizes[i % 4]);
		memset(held[i], (int)i + 1, sizes[i % 4]);
	}
	for (i = 0; i < 16; i++) {
		for (k = 0; k < i; k++)
			assert_ptr_not_equal(held[i], held[k]);
		assert_true(((uint8_t *)held[i])[0] == (uint8_t)(i + 1));
		assert_true(((uint8_t *)held[i])[sizes[i % 4] - 1] == (uint8_t)(i + 1));
	}
	for (i = 0; i < 16; i++)
		secbuf_free(held[i]);
	/* A long run stays inside the pool and gives everything back. */
	for (i = 0; i < 20000; i++) {
		p = take(sizes[i % 4]);
		q = take(sizes[(i + 1) % 4]);
		secbuf_free(p);
		secbuf_free(q);
	}
	secbuf_stats(&after);
	for (k = 0; k < SECBUF_CLASSES; k++) {
		assert_int_equal(after.cls[k].in_use, 0);
		assert_int_equal(after.cls[k].fallbacks, before.cls[k].fallbacks);
	}
	assert_int_equal(after.oversize, before.oversize);
	assert_int_equal(after.fallback_live, 0);
	secbuf_free(NULL);
}

static void test_wiped_on_free(void **state)
{
	struct fixture *f = *state;
	static const size_t sizes[] = { 1, 64, 1000, 4096, 5000, SECBUF_MAX };
	static const char value[] = "sk-live-must-not-linger";
	struct crypto_sealed s;
	struct crypto_plain p;
	pcs_error err;
	uint8_t *b;
	void *dk;
	size_t k;

	need_pool();
	for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		b = take(sizes[k]);
		assert_true(all_zero(b, sizes[k]));
		memset(b, 0xa5, sizes[k]);
		assert_int_equal(secbuf_slot_is_zero(b), 0);
		secbuf_free(b);
		/* Looked at in place, before anything could reuse (and so rewrite) the slot. */
		assert_int_equal(secbuf_slot_is_zero(b), 1);
		/* The same slot handed out again starts from zero too. */
		assert_ptr_equal(take(sizes[k]), b);
		assert_true(all_zero(b, sizes[k]));
		secbuf_free(b);
	}

	/* Through crypto_open: the plaintext's slot, and the data key's (the last 64-byte free). */
	assert_int_equal(
	    crypto_seal(f->m, &the_ad, (const uint8_t *)value, sizeof(value) - 1, &s, &err), 0);
	assert_int_equal(
	    crypto_open(f->m, &the_ad, s.ciphertext, s.ciphertext_len, s.nonce, sizeof(s.nonce),
	        s.wrapped_key, sizeof(s.wrapped_key), s.key_id, &p, &err),
	    0);
	assert_memory_equal(p.data, value, sizeof(value));
	b = p.data;
	assert_int_equal(secbuf_slot_is_zero(b), 0);
	crypto_plain_clear(&p);
	assert_null(p.data);
	assert_int_equal(secbuf_slot_is_zero(b), 1);
	/* open freed the data key, then clear the plaintext: the two slots on top, in that order. */
	assert_ptr_equal(take(32), b);
	dk = take(32);
	assert_ptr_not_equal(dk, b);
	assert_int_equal(secbuf_slot_is_zero(dk), 1);
	secbuf_free(dk);
	secbuf_free(b);
	crypto_sealed_clear(&s);
}

static void test_size_boundaries(void **state)
{
	static const struct {
		size_t len;
		int cls;
	} cases[] = {
		{ 0, 0 },
		{ 1, 0 },
		{ 64, 0 },
		{ 65, 1 },
		{ 1024, 1 },
		{ 1025, 2 },
		{ 4096, 2 },
		{ 4097, 3 },
		{ MAX_VALUE + 1, 3 },
		{ SECBUF_MAX, 3 },
		{ SECBUF_MAX + 1, -1 },
	};
	struct secbuf_stats before, after;
	struct crypto_plain p;
	pcs_error err;
	uint8_t *b;
	size_t k;

	(void)state;
	need_pool();
	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		secbuf_stats(&before);
		b = take(cases[k].len);
		if (cases[k].len > 0) {
			/* Every byte asked for is usable (AddressSanitizer guards the slack). */
			memset(b, 0x5a, cases[k].len);
			assert_int_equal(b[cases[k].len - 1], 0x5a);
		}
		assert_int_equal(class_taken(&before), cases[k].cls);
		secbuf_stats(&after);
		if (cases[k].cls < 0) {
			assert_int_equal(after.oversize, before.oversize + 1);
			assert_int_equal(after.fallback_live, 1);
			assert_int_equal(secbuf_slot_is_zero(b), -1);
		} else {
			assert_int_equal(after.oversize, before.oversize);
			assert_int_equal(after.fallback_live, 0);
			assert_int_equal(secbuf_slot_is_zero(b), 0 + (cases[k].len == 0));
		}
		secbuf_free(b);
		secbuf_stats(&after);
		assert_int_equal(after.fallback_live, 0);
	}

	/* crypto_plain adds its NUL: len 63 fills a 64-byte slot exactly, 64 needs the next. */
	{
		static const struct {
			size_t len;
			int cls;
		} plain[] = {
			{ 0, 0 },
			{ 63, 0 },
			{ 64, 1 },
			{ MAX_VALUE, 3 },
			{ SECBUF_MAX - 1, 3 },
			{ SECBUF_MAX, -1 },
		};

		for (k = 0; k < sizeof(plain) / sizeof(plain[0]); k++) {
			secbuf_stats(&before);
			assert_int_equal(crypto_plain_alloc(plain[k].len, &p, &err), 0);
			assert_int_equal(p.len, plain[k].len);
			assert_int_equal(p.data[plain[k].len], '\0');
			assert_true(all_zero(p.data, plain[k].len));
			assert_int_equal(class_taken(&before), plain[k].cls);
			crypto_plain_clear(&p);
			assert_null(p.data);
			assert_int_equal(p.len, 0);
		}
	}
	assert_int_equal(crypto_plain_alloc(SIZE_MAX, &p, &err), -PCS_RESOURCE_EXHAUSTED);
	assert_null(p.data);
}

/* Opens a sealed value and checks it; 0 when it came back intact. */
static int open_check(
    const struct crypto_master *m, const struct crypto_sealed *s, const uint8_t *value, size_t len)
{
	struct crypto_plain p;
	pcs_error err;
	int r;

	if (crypto_open(m, &the_ad, s->ciphertext, s->ciphertext_len, s->nonce, sizeof(s->nonce),
	        s->wrapped_key, sizeof(s->wrapped_key), s->key_id, &p, &err) != 0)
		return -1;
	r = p.len == len && memcmp(p.data, value, len) == 0 && p.data[len] == '\0' ? 0 : -1;
	crypto_plain_clear(&p);
	return r;
}

static void test_exhaustion_falls_back(void **state)
{
	struct fixture *f = *state;
	struct secbuf_stats before, st;
	static const char value[] = "opened while the pool is empty";
	struct crypto_sealed s;
	void **held;
	uint8_t *extra;
	size_t n = 0, i, total = 0;
	pcs_error err;
	int c;

	need_pool();
	secbuf_stats(&before);
	for (c = 0; c < SECBUF_CLASSES; c++)
		total += before.cls[c].slots;
	held = calloc(total, sizeof(*held));
	assert_non_null(held);

	/* A class that runs out spills into the next one up before any fallback. */
	for (i = 0; i < before.cls[2].slots; i++)
		held[n++] = take(4096);
	held[n++] = take(4096);
	secbuf_stats(&st);
	assert_int_equal(st.cls[2].in_use, st.cls[2].slots);
	assert_int_equal(st.cls[2].high_water, st.cls[2].slots);
	assert_int_equal(st.cls[3].in_use, 1);
	assert_int_equal(st.cls[2].fallbacks, before.cls[2].fallbacks);
	assert_int_equal(st.fallback_live, 0);

	/* The largest class is the last: past it, sodium_malloc, counted, zeroed and usable. */
	for (i = 1; i < before.cls[3].slots; i++)
		held[n++] = take(SECBUF_MAX);
	extra = take(SECBUF_MAX);
	assert_int_equal(secbuf_slot_is_zero(extra), -1);
	assert_true(all_zero(extra, SECBUF_MAX));
	memset(extra, 0x77, SECBUF_MAX);
	assert_int_equal(extra[SECBUF_MAX - 1], 0x77);
	secbuf_stats(&st);
	assert_int_equal(st.cls[3].fallbacks, before.cls[3].fallbacks + 1);
	assert_int_equal(st.fallback_live, 1);
	secbuf_free(extra);
	extra = take(4096);
	assert_int_equal(secbuf_slot_is_zero(extra), -1);
	secbuf_stats(&st);
	assert_int_equal(st.cls[2].fallbacks, before.cls[2].fallbacks + 1);
	secbuf_free(extra);
	secbuf_stats(&st);
	assert_int_equal(st.fallback_live, 0);

	/* Everything else taken: crypto_open still works, from sodium_malloc. */
	for (i = 0; i < before.cls[1].slots; i++)
		held[n++] = take(1024);
	for (i = 0; i < before.cls[0].slots; i++)
		held[n++] = take(64);
	assert_int_equal(n, total);
	assert_int_equal(
	    crypto_seal(f->m, &the_ad, (const uint8_t *)value, sizeof(value) - 1, &s, &err), 0);
	assert_int_equal(open_check(f->m, &s, (const uint8_t *)value, sizeof(value) - 1), 0);
	secbuf_stats(&st);
	/* seal's data key, open's data key and the plaintext: all three fell back. */
	assert_int_equal(st.cls[0].fallbacks, before.cls[0].fallbacks + 3);
	assert_int_equal(st.fallback_live, 0);

	for (i = 0; i < n; i++)
		secbuf_free(held[i]);
	free(held);
	/* Back to normal: the next open is served by the pool again. */
	assert_int_equal(open_check(f->m, &s, (const uint8_t *)value, sizeof(value) - 1), 0);
	secbuf_stats(&st);
	assert_int_equal(st.cls[0].fallbacks, before.cls[0].fallbacks + 3);
	for (c = 0; c < SECBUF_CLASSES; c++)
		assert_int_equal(st.cls[c].in_use, 0);
	crypto_sealed_clear(&s);
}

/* Runs fn in a child and returns its wait status. */
static int in_child(void (*fn)(void *), void *arg)
{
	pid_t pid;
	int status = 0;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child's verdict is its exit status or signal, never a return into cmocka. */
		signal(SIGABRT, SIG_DFL);
		fn(arg);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void assert_aborted(int status, const char *what)
{
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
		fail_msg("%s did not abort (status %#x)", what, status);
}

static void double_free(void *arg)
{
	void *p = NULL;

	(void)arg;
	if (secbuf_alloc(100, &p, NULL) != 0)
		_exit(3);
	secbuf_free(p);
	secbuf_free(p);
}

static void interior_free(void *arg)
{
	void *p = NULL;

	(void)arg;
	if (secbuf_alloc(100, &p, NULL) != 0)
		_exit(3);
	secbuf_free((uint8_t *)p + 8);
}

static void test_misuse_aborts(void **state)
{
	(void)state;
	need_pool();
	assert_aborted(in_child(double_free, NULL), "a second free of the same slot");
	assert_aborted(in_child(interior_free, NULL), "a free into the middle of a slot");
}

#define THREADS 8
#define ROUNDS 10000
#define HELD 8 /* buffers each thread holds at once: 64 in all, past the largest class's 8 */

/* Every buffer handed out and not freed yet, by anyone: no two may overlap. */
static struct {
	pthread_mutex_t lock;
	const uint8_t *p[THREADS * HELD];
	size_t len[THREADS * HELD];
} live = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* 0 when [p, p + len) overlaps no live buffer (it is then recorded), -1 when it does. */
static int live_add(const uint8_t *p, size_t len)
{
	size_t i, free_at = THREADS * HELD;
	int r = 0;

	pthread_mutex_lock(&live.lock);
	for (i = 0; i < THREADS * HELD; i++) {
		if (live.p[i] == NULL) {
			free_at = i;
			continue;
		}
		/* A zero-length request still owns its slot's first byte. */
		if (p < live.p[i] + (live.len[i] ? live.len[i] : 1) &&
		    live.p[i] < p + (len ? len : 1))
			r = -1;
	}
	if (r == 0 && free_at < THREADS * HELD) {
		live.p[free_at] = p;
		live.len[free_at] = len;
	}
	pthread_mutex_unlock(&live.lock);
	return r;
}

/* Before the free, never after: the slot may be someone else's as soon as it is freed. */
static void live_remove(const uint8_t *p)
{
	size_t i;

	pthread_mutex_lock(&live.lock);
	for (i = 0; i < THREADS * HELD; i++) {
		if (live.p[i] == p) {
			live.p[i] = NULL;
			break;
		}
	}
	pthread_mutex_unlock(&live.lock);
}

/* Sizes and slots only need to vary between threads and rounds: a plain LCG. */
static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/* Mostly small values, some of every class, and the largest slot filled whole. */
static size_t pick_len(uint32_t r)
{
	switch (r % 16) {
	case 0:
		return SECBUF_MAX;
	case 1:
		return 4097 + r % (SECBUF_MAX - 4097);
	case 2:
	case 3:
		return 1025 + r % 3072;
	default:
		return r % 2 ? r % 65 : 65 + r % 960;
	}
}

static int filled_with(const uint8_t *p, size_t len, uint8_t fill)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != fill)
			return 0;
	}
	return 1;
}

struct worker {
	int id;
	const char *failed; /* the first thing that went wrong, or NULL */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct {
		uint8_t *p;
		size_t len;
		uint8_t fill;
	} held[HELD];
	uint32_t seed = 0x9e3779b9u * (uint32_t)(w->id + 1);
	size_t k, round;
	void *p;

	memset(held, 0, sizeof(held));
	for (round = 0; round < ROUNDS && w->failed == NULL; round++) {
		k = lcg(&seed) % HELD;
		if (held[k].p != NULL) {
			if (!filled_with(held[k].p, held[k].len, held[k].fill))
				w->failed = "a buffer changed while its holder had it";
			live_remove(held[k].p);
			secbuf_free(held[k].p);
			held[k].p = NULL;
		}
		held[k].len = pick_len(lcg(&seed));
		if (secbuf_alloc(held[k].len, &p, NULL) != 0) {
			w->failed = "secbuf_alloc failed";
			break;
		}
		held[k].p = p;
		/* Odd, so never 0: a wipe or another holder's pattern shows. */
		held[k].fill = (uint8_t)((size_t)w->id * 32 + round * 2 + 1);
		if ((uintptr_t)p % 64 != 0)
			w->failed = "a buffer not 64-byte aligned";
		else if (!all_zero(p, held[k].len))
			w->failed = "a buffer handed out not wiped";
		else if (live_add(p, held[k].len) != 0)
			w->failed = "a buffer overlapping one another thread holds";
		memset(p, held[k].fill, held[k].len);
	}
	for (k = 0; k < HELD; k++) {
		if (held[k].p == NULL)
			continue;
		if (!filled_with(held[k].p, held[k].len, held[k].fill) && w->failed == NULL)
			w->failed = "a buffer changed while its holder had it";
		live_remove(held[k].p);
		secbuf_free(held[k].p);
	}
	return NULL;
}

static void test_threads_share_the_pool(void **state)
{
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct secbuf_stats before, after;
	void **all;
	size_t total = 0, n = 0, i;
	int c;

	(void)state;
	need_pool();
	secbuf_stats(&before);
	for (c = 0; c < THREADS; c++) {
		w[c].id = c;
		w[c].failed = NULL;
		assert_int_equal(pthread_create(&t[c], NULL, worker_main, &w[c]), 0);
	}
	for (c = 0; c < THREADS; c++)
		assert_int_equal(pthread_join(t[c], NULL), 0);
	for (c = 0; c < THREADS; c++) {
		if (w[c].failed != NULL)
			fail_msg("thread %d: %s", c, w[c].failed);
	}
	secbuf_stats(&after);
	for (c = 0; c < SECBUF_CLASSES; c++) {
		assert_int_equal(after.cls[c].in_use, 0);
		print_message("class %d: %zu slots, high water %zu, %llu fell back\n", c,
		    after.cls[c].slots, after.cls[c].high_water,
		    (unsigned long long)(after.cls[c].fallbacks - before.cls[c].fallbacks));
	}
	assert_int_equal(after.fallback_live, 0);

	/* Every slot is back on its stack, and wiped: take them all, smallest class first. */
	for (c = 0; c < SECBUF_CLASSES; c++)
		total += after.cls[c].slots;
	all = calloc(total, sizeof(*all));
	assert_non_null(all);
	for (c = 0; c < SECBUF_CLASSES; c++) {
		for (i = 0; i < after.cls[c].slots; i++) {
			all[n] = take(after.cls[c].size);
			assert_int_equal(secbuf_slot_is_zero(all[n]), 1);
			n++;
		}
	}
	secbuf_stats(&after);
	for (c = 0; c < SECBUF_CLASSES; c++)
		assert_int_equal(after.cls[c].in_use, after.cls[c].slots);
	assert_int_equal(after.fallback_live, 0);
	for (i = 0; i < n; i++)
		secbuf_free(all[i]);
	free(all);
}

/* kB of locked memory, from /proc/self/status; -1 when it cannot be read. */
static long vm_locked_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmLck: %ld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib;
}

static atomic_int churn_stop;

/*
 * Keeps the pool's lock busy while the main thread forks: small buffers, so that much of the
 * time goes to taking and giving back the lock, and a fork often finds it held.
 */
static void *churn_main(void *arg)
{
	void *p[4];
	int i;

	(void)arg;
	while (!atomic_load(&churn_stop)) {
		for (i = 0; i < 4; i++) {
			if (secbuf_alloc(10, &p[i], NULL) != 0)
				abort();
			memset(p[i], 0x11, 10);
		}
		for (i = 0; i < 4; i++)
			secbuf_free(p[i]);
	}
	return NULL;
}

/* In a child forked while the churn thread ran; the exit status says which step failed. */
static int forked_child(uint8_t *inherited, long region_kib)
{
	long locked;
	void *p = NULL;

	/* Whatever the other thread was doing, the lock is free here (else SIGALRM). */
	alarm(5);
#ifdef MADV_WIPEONFORK
	/* The daemon's pool: a child sees none of the values its parent held. */
	if (!all_zero(inherited, 100))
		return 30;
#endif
	secbuf_free(inherited);
	if (secbuf_slot_is_zero(inherited) != 1)
		return 31;
	/* Only this thread here, so the slot just freed is the one on top. */
	if (secbuf_alloc(100, &p, NULL) != 0 || p != inherited || !all_zero(p, 100))
		return 32;
	memset(p, 0x33, 100);
	secbuf_free(p);
	locked = vm_locked_kib();
#ifndef TEST_ASAN
	/* Locks are not inherited: the first allocation locked the region again. */
	if (locked >= 0 && locked < region_kib)
		return 33;
#else
	/* AddressSanitizer's mlock locks nothing. */
	(void)locked;
	(void)region_kib;
#endif
	if (secbuf_alloc(SECBUF_MAX, &p, NULL) != 0 || secbuf_slot_is_zero(p) != 1)
		return 34;
	secbuf_free(p);
	return 0;
}

static void test_fork_while_threads_allocate(void **state)
{
	struct secbuf_stats st;
	uint8_t *b;
	pthread_t t;
	long region_kib = 0;
	pid_t pid;
	int i, c, status;

	(void)state;
	need_pool();
	secbuf_stats(&st);
	for (c = 0; c < SECBUF_CLASSES; c++)
		region_kib += (long)(st.cls[c].slots * st.cls[c].size / 1024);
	b = take(100);
	memset(b, 0x5a, 100);
	atomic_store(&churn_stop, 0);
	assert_int_equal(pthread_create(&t, NULL, churn_main, NULL), 0);
	for (i = 0; i < 50; i++) {
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(forked_child(b, region_kib));
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg(
			    "child %d: status %#x (see forked_child; SIGALRM: it hung on the lock)",
			    i, status);
	}
	atomic_store(&churn_stop, 1);
	assert_int_equal(pthread_join(t, NULL), 0);
	/* What the children freed is still the parent's, untouched. */
	assert_true(filled_with(b, 100, 0x5a));
	secbuf_free(b);
}

/*
 * Run as "test_secbuf --sdk-child", in a fresh process: the SDK's kind of pool (locked as pages
 * are first used, values kept across fork). The exit status says which step failed.
 */
static int sdk_child(void)
{
	static const struct secbuf_config cfg = { { 4, 4, 2, 1 }, SECBUF_LOCK_ON_FAULT };
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char resident[32];
	struct secbuf_stats st;
	pcs_error err;
	void *p = NULL, *big = NULL;
	pid_t pid;
	int status = 0;

	if (secbuf_init(&cfg, &err) != 0)
		return 40;
	/* The first configuration stays: the daemon's would have 256 slots of 64 bytes. */
	if (secbuf_init(NULL, &err) != 0)
		return 41;
	secbuf_stats(&st);
	if (!st.pooled)
		return 77; /* RLIMIT_MEMLOCK: nothing to check here */
	if (st.cls[0].slots != 4 || st.cls[3].slots != 1)
		return 42;
	if (secbuf_alloc(SECBUF_MAX, &big, &err) != 0)
		return 43;
#ifdef MLOCK_ONFAULT
	/* Locked, yet not one page of the large slot is in memory until it is written. */
	if (mincore(big, 16 * page, resident) != 0)
		return 44;
	for (int i = 0; i < 16; i++) {
		if (resident[i] & 1)
			return 45;
	}
#else
	(void)page;
	(void)resident;
#endif
	if (secbuf_slot_is_zero(big) != 1)
		return 43;
	secbuf_free(big);
	if (secbuf_alloc(100, &p, &err) != 0)
		return 46;
	memset(p, 0x5a, 100);
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) < 0)
		return 47;
	if (pid == 0) {
		void *q = NULL;

		alarm(10);
		/* Not wiped on fork: the child reads what it inherited, as with sodium_malloc. */
		if (!filled_with(p, 100, 0x5a))
			_exit(1);
		secbuf_free(p);
		if (secbuf_alloc(100, &q, &err) != 0 || q != p || !all_zero(q, 100))
			_exit(2);
		memset(q, 0x66, 100);
		secbuf_free(q);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 48;
	/* The child's frees and writes were its own. */
	if (!filled_with(p, 100, 0x5a))
		return 49;
	secbuf_free(p);
	secbuf_stats(&st);
	return st.cls[0].in_use == 0 && st.fallback_live == 0 ? 0 : 50;
}

/* Runs this binary again with arg, so the pool starts from nothing; returns the exit status. */
static int in_fresh_process(const char *arg)
{
	char *const args[] = { "test_secbuf", (char *)arg, NULL };
	pid_t pid;
	int status = 0;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execv("/proc/self/exe", args);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void test_sdk_kind_of_pool(void **state)
{
	int status;

	(void)state;
	status = in_fresh_process("--sdk-child");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		skip();
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("child with the SDK's kind of pool: status %#x (see sdk_child)", status);
}

#if defined(__x86_64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS SECCOMP_RET_KILL
#endif

struct hot_path {
	const struct crypto_master *m;
	const struct crypto_sealed *small, *large;
	const uint8_t *small_value, *large_value;
	size_t small_len, large_len;
};

#ifdef TEST_AUDIT_ARCH
#define KILL_ON(nr) \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)

/* In the child: any call that maps, protects, locks or advises memory kills it (SIGSYS). */
static void open_under_seccomp(void *arg)
{
	const struct hot_path *h = arg;
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TEST_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		KILL_ON(__NR_mmap),
		KILL_ON(__NR_munmap),
		KILL_ON(__NR_mprotect),
		KILL_ON(__NR_mlock),
		KILL_ON(__NR_munlock),
		KILL_ON(__NR_madvise),
		KILL_ON(__NR_mremap),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { (unsigned short)(sizeof(filter) / sizeof(filter[0])), filter };
	int i;

	/*
	 * Once before the filter: a forked child locks the region again on its first allocation
	 * (locks are not inherited), one mlock per class that the daemon, which does not fork
	 * while it serves, never pays on this path.
	 */
	if (open_check(h->m, h->small, h->small_value, h->small_len) != 0)
		_exit(8);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		_exit(6);
	for (i = 0; i < 1000; i++) {
		if (open_check(h->m, h->small, h->small_value, h->small_len) != 0 ||
		    open_check(h->m, h->large, h->large_value, h->large_len) != 0)
			_exit(7);
	}
}
#endif

static void test_open_makes_no_memory_syscall(void **state)
{
#ifdef TEST_AUDIT_ARCH
	struct fixture *f = *state;
	static const char small[] = "sk-ant-0123456789";
	struct crypto_sealed s1, s2;
	struct hot_path h;
	uint8_t *large;
	pcs_error err;
	int status;

	need_pool();
	large = malloc(MAX_VALUE);
	assert_non_null(large);
	for (size_t i = 0; i < MAX_VALUE; i++)
		large[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(
	    crypto_seal(f->m, &the_ad, (const uint8_t *)small, sizeof(small) - 1, &s1, &err), 0);
	assert_int_equal(crypto_seal(f->m, &the_ad, large, MAX_VALUE, &s2, &err), 0);
	h = (struct hot_path){ f->m, &s1, &s2, (const uint8_t *)small, large, sizeof(small) - 1,
		MAX_VALUE };
	status = in_child(open_under_seccomp, &h);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
		fail_msg("opening a value made a memory system call (mmap, mprotect, mlock, ...)");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child failed (status %#x)", status);
	crypto_sealed_clear(&s1);
	crypto_sealed_clear(&s2);
	free(large);
#else
	(void)state;
	skip();
#endif
}

/*
 * Run as "test_secbuf --memlock-child" (the daemon's pool, through crypto_init) or
 * "--memlock-child-sdk" (the SDK's kind, locked on fault), in a fresh process whose pool is not
 * started yet: with RLIMIT_MEMLOCK far below the region and no CAP_IPC_LOCK, the pool must stay
 * unused and every buffer come from sodium_malloc. The exit status says which step failed.
 */
static int memlock_child(int sdk_kind)
{
	/* As sdk/src/valbuf.c sizes it: about 330 KiB, charged whole even when locked on fault. */
	static const struct secbuf_config sdk_cfg = { { 128, 128, 16, 2 }, SECBUF_LOCK_ON_FAULT };
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
	struct rlimit rl = { 64 * 1024, 64 * 1024 };
	struct secbuf_stats st;
	pcs_error err;
	uint8_t *b;
	void *p = NULL;

	/* Root could lock past the limit; a non-root run has no CAP_IPC_LOCK to drop. */
	if (syscall(SYS_capget, &h, caps) != 0)
		return 10;
	caps[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &h, caps) != 0 || setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return 11;
	if (sdk_kind ? secbuf_init(&sdk_cfg, &err) != 0 : crypto_init(&err) != 0)
		return 12;
	secbuf_stats(&st);
	if (st.pooled || st.cls[1].slots != 0)
		return 13;
	if (secbuf_alloc(100, &p, &err) != 0)
		return 14;
	b = p;
	if (!all_zero(b, 100) || secbuf_slot_is_zero(b) != -1)
		return 15;
	memset(b, 0x42, 100);
	secbuf_stats(&st);
	if (st.cls[1].fallbacks != 1 || st.fallback_live != 1)
		return 16;
	secbuf_free(p);
	secbuf_stats(&st);
	return st.fallback_live == 0 ? 0 : 17;
}

static void test_unlockable_region_is_not_used(void **state)
{
	int status;

	(void)state;
	/* mlock2, which locking on fault uses, is a plain system call under AddressSanitizer. */
	status = in_fresh_process("--memlock-child-sdk");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("child under a 64 KiB RLIMIT_MEMLOCK, the SDK's kind of pool: status %#x "
		         "(see memlock_child)",
		    status);
#ifdef TEST_ASAN
	/* AddressSanitizer intercepts mlock and makes it succeed without locking anything. */
	skip();
#endif
	status = in_fresh_process("--memlock-child");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg(
		    "child under a 64 KiB RLIMIT_MEMLOCK: status %#x (see memlock_child)", status);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reuse_without_leak, pool_ready, pool_ready),
		cmocka_unit_test_setup_teardown(test_wiped_on_free, pool_ready, pool_ready),
		cmocka_unit_test_setup_teardown(test_size_boundaries, pool_ready, pool_ready),
		cmocka_unit_test_setup_teardown(test_exhaustion_falls_back, pool_ready, pool_ready),
		cmocka_unit_test_setup_teardown(test_misuse_aborts, pool_ready, pool_ready),
		cmocka_unit_test_setup_teardown(
		    test_threads_share_the_pool, pool_ready, pool_ready),
		cmocka_unit_test_setup_teardown(
		    test_fork_while_threads_allocate, pool_ready, pool_ready),
		cmocka_unit_test_setup_teardown(
		    test_open_makes_no_memory_syscall, pool_ready, pool_ready),
		cmocka_unit_test(test_unlockable_region_is_not_used),
		cmocka_unit_test(test_sdk_kind_of_pool),
	};

	if (argc == 2 && strcmp(argv[1], "--memlock-child") == 0)
		return memlock_child(0);
	if (argc == 2 && strcmp(argv[1], "--memlock-child-sdk") == 0)
		return memlock_child(1);
	if (argc == 2 && strcmp(argv[1], "--sdk-child") == 0)
		return sdk_child();

	return cmocka_run_group_tests(tests, setup, teardown);
}
