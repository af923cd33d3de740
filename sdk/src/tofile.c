/*
 * Delivery of values into the caller's memory and into files: pcs_buf_alloc (locked, wiped
 * memory from valbuf.c's pool), pcs_resolve_into and pcs_resolve_to_file. A file is written
 * under a temporary name, made read-only and renamed into place, so a reader never sees a
 * partial value and a failure leaves nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rpc.h"
#include "status.h"

PCS_EXPORT int pcs_buf_alloc(size_t len, unsigned char **out, pcs_error *err)
{
	if (out == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_buf_alloc: out is NULL");
	return pcs_value_buf_alloc(len, out, err);
}

PCS_EXPORT void pcs_buf_free(unsigned char *buf) { pcs_value_buf_free(buf); }

/* Resolves one reference; *out is a one-element array for pcs_values_free. */
static int resolve_one(
    pcs_client *client, const char *agent, const char *ref, pcs_value **out, pcs_error *err)
{
	const char *refs[1];
	int r;

	*out = NULL;
	if (ref == NULL) {
		(void)pcs_fail(err, PCS_INVALID_ARGUMENT, "the reference is NULL");
		return -PCS_INVALID_ARGUMENT;
	}
	refs[0] = ref;
	if ((r = pcs_resolve(client, agent, refs, 1, out, err)) != 0)
		return r;
	if (*out == NULL) {
		(void)pcs_fail(err, PCS_INTERNAL, "no value for %s", ref);
		return -PCS_INTERNAL;
	}
	return 0;
}

PCS_EXPORT int pcs_resolve_into(pcs_client *client, const char *agent, const char *ref,
    unsigned char *buf, size_t cap, size_t *len, uint32_t *version, pcs_error *err)
{
	pcs_value *v = NULL;
	int r;

	if (len != NULL)
		*len = 0;
	if (version != NULL)
		*version = 0;
	if (buf == NULL || len == NULL) {
		r = pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "pcs_resolve_into: a required argument is NULL");
		goto out;
	}
	if ((r = resolve_one(client, agent, ref, &v, err)) != 0)
		goto out;
	/* The size is not secret; the caller needs it to retry with a larger buffer. */
	*len = v[0].len;
	if (v[0].len > cap) {
		r = pcs_fail(err, PCS_OUT_OF_RANGE,
		    "the value of %s is %zu bytes, the buffer holds %zu", ref, v[0].len, cap);
		goto out;
	}
	if (v[0].len > 0)
		memcpy(buf, v[0].data, v[0].len);
	if (version != NULL)
		*version = v[0].version;
	r = 0;
out:
	pcs_values_free(v, v != NULL ? 1 : 0);
	return r;
}

/* A file name in the directory itself: no '/', not empty, not starting with '.'. */
static int file_name_ok(const char *name)
{
	size_t n;

	if (name == NULL || (n = strlen(name)) == 0 || n > 200 || name[0] == '.')
		return 0;
	return strchr(name, '/') == NULL;
}

static int write_all(int fd, const unsigned char *data, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, data, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int pcs_value_write_file(
    int dirfd, const char *name, const unsigned char *data, size_t len, uid_t uid, pcs_error *err)
{
	static atomic_uint counter;
	char tmp[256];
	int fd = -1, tries, r, made = 0;

	if (!file_name_ok(name))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "invalid file name (1 to 200 bytes, no '/', not starting with '.')");
	/* Exclusive creation under a name of this process's: never through a planted link. */
	for (tries = 0; tries < 16 && fd == -1; tries++) {
		(void)snprintf(tmp, sizeof(tmp), ".%s.%ld.%u.tmp", name, (long)getpid(),
		    atomic_fetch_add(&counter, 1));
		fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd == -1 && errno != EEXIST)
			break;
	}
	if (fd == -1) {
		r = pcs_fail(
		    err, PCS_UNAVAILABLE, "cannot create a file for %s: %s", name, strerror(errno));
		goto out;
	}
	made = 1;
	if (write_all(fd, data, len) != 0) {
		r = pcs_fail(
		    err, PCS_UNAVAILABLE, "cannot write the file %s: %s", name, strerror(errno));
		goto out;
	}
	if ((uid != (uid_t)-1 && fchown(fd, uid, (gid_t)-1) != 0) || fchmod(fd, 0400) != 0) {
		r = pcs_fail(err, PCS_PERMISSION_DENIED, "cannot set the owner or mode of %s: %s",
		    name, strerror(errno));
		goto out;
	}
	if (renameat(dirfd, tmp, dirfd, name) != 0) {
		r = pcs_fail(err, PCS_UNAVAILABLE, "cannot rename the file into %s: %s", name,
		    strerror(errno));
		goto out;
	}
	made = 0;
	r = 0;
out:
	if (fd != -1)
		(void)close(fd);
	if (made)
		(void)unlinkat(dirfd, tmp, 0);
	return r;
}

PCS_EXPORT int pcs_resolve_to_file(pcs_client *client, const char *agent, const char *ref,
    int dirfd, const char *name, uid_t uid, uint32_t *version, pcs_error *err)
{
	pcs_value *v = NULL;
	int r;

	if (version != NULL)
		*version = 0;
	if (!file_name_ok(name)) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "invalid file name (1 to 200 bytes, no '/', not starting with '.')");
		goto out;
	}
	if ((r = resolve_one(client, agent, ref, &v, err)) != 0 ||
	    (r = pcs_value_write_file(dirfd, name, v[0].data, v[0].len, uid, err)) != 0)
		goto out;
	if (version != NULL)
		*version = v[0].version;
	r = 0;
out:
	pcs_values_free(v, v != NULL ? 1 : 0);
	return r;
}
