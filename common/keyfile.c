#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keyfile.h"

#define KEYFILE_HEX_LEN (2 * KEYFILE_KEY_LEN)

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The key is useless if a crash loses its directory entry after we reported success. */
static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd, r = -1;

	if (strlen(path) >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, path, strlen(path) + 1);
	if ((slash = strrchr(dir, '/')) == NULL)
		memcpy(dir, ".", 2);
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	/* Some file systems cannot sync a directory; the file itself is already synced. */
	if (fsync(fd) == 0 || errno == EINVAL)
		r = 0;
	(void)close(fd);
	return r;
}

int keyfile_create(const char *path, pcs_error *err)
{
	uint8_t key[KEYFILE_KEY_LEN];
	char hex[KEYFILE_HEX_LEN + 2];
	int fd = -1, created = 0, r;

	if (sodium_init() < 0) {
		r = pcs_fail(err, PCS_INTERNAL, "libsodium failed to initialise");
		goto out;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			r = pcs_fail(err, PCS_ALREADY_EXISTS,
			    "master key file %s already exists; refusing to overwrite it", path);
		else
			r = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "cannot create master key file %s: %s", path, strerror(errno));
		goto out;
	}
	created = 1;
	/* open's mode went through the umask: make the result independent of the caller's. */
	if (fchmod(fd, 0600) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "cannot set mode 0600 on master key file %s: %s",
		    path, strerror(errno));
		goto out;
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
	hex[KEYFILE_HEX_LEN] = '\n';
	if (write_all(fd, hex, KEYFILE_HEX_LEN + 1) != 0 || fsync(fd) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "cannot write master key file %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		r = pcs_fail(err, PCS_INTERNAL, "cannot write master key file %s: %s", path,
		    strerror(errno));
		goto out;
	}
	fd = -1;
	if (fsync_parent(path) != 0) {
		r = pcs_fail(err, PCS_INTERNAL,
		    "cannot sync the directory of master key file %s: %s", path, strerror(errno));
		goto out;
	}
	r = 0;
out:
	sodium_memzero(key, sizeof(key));
	sodium_memzero(hex, sizeof(hex));
	if (fd >= 0)
		(void)close(fd);
	/* We made it with O_EXCL, so it is ours to remove: never leave a half-written key. */
	if (r != 0 && created)
		(void)unlink(path);
	return r;
}

int keyfile_read(const char *path, uint8_t key[KEYFILE_KEY_LEN], pcs_error *err)
{
	/* Two spare bytes so that content longer than "64 hex + newline" is seen as such. */
	char buf[KEYFILE_HEX_LEN + 2];
	struct stat st;
	size_t len = 0, bin_len = 0;
	const char *end = NULL;
	int fd = -1, r;

	/* O_NONBLOCK: opening a FIFO planted at path must not hang start-up. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ELOOP)
			r = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "master key file %s is a symbolic link: refusing to follow it", path);
		else
			r = pcs_fail(err, PCS_FAILED_PRECONDITION, "master key file %s: %s", path,
			    strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		r = pcs_fail(
		    err, PCS_FAILED_PRECONDITION, "master key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = pcs_fail(
		    err, PCS_FAILED_PRECONDITION, "master key file %s is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "master key file %s has mode %04o: it must not be readable by group or others "
		    "(chmod 600 %s)",
		    path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	/* Its owner can read it and replace it, whatever the mode says: as bad as mode 0644. */
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "master key file %s is owned by uid %u: it must belong to root or to the uid "
		    "pcsecretd runs as (%u)",
		    path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "cannot read master key file %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len == KEYFILE_HEX_LEN + 1 && buf[KEYFILE_HEX_LEN] == '\n')
		len--;
	if (len != KEYFILE_HEX_LEN ||
	    sodium_hex2bin(key, KEYFILE_KEY_LEN, buf, len, NULL, &bin_len, &end) != 0 ||
	    bin_len != KEYFILE_KEY_LEN || end != buf + len) {
		/* Never say more about the content than its shape: it may be a near-miss key. */
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "master key file %s is malformed: expected 64 hex characters", path);
		goto out;
	}
	r = 0;
out:
	sodium_memzero(buf, sizeof(buf));
	if (r != 0)
		sodium_memzero(key, KEYFILE_KEY_LEN);
	if (fd >= 0)
		(void)close(fd);
	return r;
}
