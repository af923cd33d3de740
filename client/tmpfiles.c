/*
 * tmpfiles: the private directory of pcrun --files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#include "rpc.h"
#include "tmpfiles.h"

/* From linux/magic.h, which not every libc's headers pull in. */
#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6

static int in_memory(const struct statfs *st)
{
	return (unsigned long)st->f_type == TMPFS_MAGIC_ ||
	    (unsigned long)st->f_type == RAMFS_MAGIC_;
}

int tmpfiles_open(struct tmpfiles *t, const char *parent, pcs_error *err)
{
	struct statfs st;
	int r;

	t->path[0] = '\0';
	t->dirfd = -1;
	if (statfs(parent, &st) != 0)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "--files %s: %s", parent, strerror(errno));
	if (!in_memory(&st))
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "--files %s: not a memory file system (tmpfs or ramfs): values written there "
		    "could reach a disk; use e.g. /dev/shm or $XDG_RUNTIME_DIR",
		    parent);
	if ((size_t)snprintf(t->path, sizeof(t->path), "%s/pcrun.XXXXXX", parent) >=
	    sizeof(t->path)) {
		t->path[0] = '\0';
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "--files: the directory name is too long");
	}
	/* mkdtemp makes it 0700, under a name nobody could have planted. */
	if (mkdtemp(t->path) == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "--files %s: cannot make a directory: %s",
		    parent, strerror(errno));
		t->path[0] = '\0';
		return r;
	}
	if ((t->dirfd = open(t->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: %s", t->path, strerror(errno));
		goto fail;
	}
	/* The parent may have been replaced meanwhile: what counts is where the directory is. */
	if (fstatfs(t->dirfd, &st) != 0 || !in_memory(&st)) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "--files %s: the directory made is not on a memory file system", parent);
		goto fail;
	}
	if (fchmod(t->dirfd, 0700) != 0) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: %s", t->path, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	(void)tmpfiles_remove(t, NULL);
	return r;
}

int tmpfiles_write(struct tmpfiles *t, const char *name, const unsigned char *data, size_t len,
    char *out, size_t size, pcs_error *err)
{
	int r;

	if ((size_t)snprintf(out, size, "%s/%s", t->path, name) >= size)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "the path of the file for %s is too long", name);
	if ((r = pcs_value_write_file(t->dirfd, name, data, len, (uid_t)-1, err)) != 0)
		return r;
	return 0;
}

int tmpfiles_remove(struct tmpfiles *t, pcs_error *err)
{
	struct dirent *de;
	DIR *d = NULL;
	int fd, r = 0;

	if (t->path[0] == '\0')
		return 0;
	/* Files only: the child may have left its own there too. Subdirectories are its own. */
	if (t->dirfd != -1 && (fd = dup(t->dirfd)) != -1) {
		if ((d = fdopendir(fd)) == NULL) {
			(void)close(fd);
		} else {
			rewinddir(d);
			while ((de = readdir(d)) != NULL) {
				if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
					continue;
				(void)unlinkat(t->dirfd, de->d_name, 0);
			}
			(void)closedir(d);
		}
	}
	if (rmdir(t->path) != 0)
		r = pcs_fail(err, PCS_INTERNAL, "cannot remove %s: %s", t->path, strerror(errno));
	if (t->dirfd != -1)
		(void)close(t->dirfd);
	t->dirfd = -1;
	t->path[0] = '\0';
	return r;
}
