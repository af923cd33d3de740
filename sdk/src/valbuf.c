/*
 * valbuf: the memory values are returned in. A value is a slot of the locked pool the daemon
 * uses too (common/secbuf.h), so returning one costs no system call; pcs_values_free and
 * pcs_env_free wipe it and put it back.
 */
#include <pthread.h>

#include "rpc.h"
#include "secbuf.h"
#include "status.h"

/*
 * A client holds a resolve's values until its caller frees them, perhaps for the life of the
 * process, and several threads may each hold a resolve's worth: values past these slots come
 * from sodium_malloc (counted in secbuf_stats), as all of them did before. About 330 KiB of
 * RLIMIT_MEMLOCK (8 MiB by default), locked page by page as slots are first used, so a
 * process that resolves a few values (pcrun) locks and touches a few pages, not the pool. The
 * two large slots take values up to 64 KiB (the daemon's largest max_value) without a
 * system call. No SECBUF_WIPE_ON_FORK: a child of the caller's reads the values it inherited,
 * as it did when they were in sodium_malloc memory.
 */
static const struct secbuf_config valbuf_config = {
	{ 128, 128, 16, 2 },
	SECBUF_LOCK_ON_FAULT,
};

static pthread_once_t valbuf_once = PTHREAD_ONCE_INIT;

static void valbuf_init(void)
{
	pcs_error err;
	int r;

	/*
	 * Nothing to keep: a region that cannot be mapped leaves the pool unused (values then come
	 * from sodium_malloc), and a libsodium that cannot start fails every secbuf_alloc.
	 */
	r = secbuf_init(&valbuf_config, &err);
	(void)r;
}

int pcs_value_buf_alloc(size_t len, unsigned char **out, pcs_error *err)
{
	void *p = NULL;
	int r;

	*out = NULL;
	/* On the first value, not in pcs_connect: a client that resolves nothing maps nothing. */
	(void)pthread_once(&valbuf_once, valbuf_init);
	if (len == SIZE_MAX)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate memory for a value of %zu bytes", len);
	if ((r = secbuf_alloc(len + 1, &p, err)) != 0)
		return r;
	*out = p;
	return 0;
}

void pcs_value_buf_free(unsigned char *v) { secbuf_free(v); }
