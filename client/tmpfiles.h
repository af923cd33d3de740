/*
 * tmpfiles: pcrun --files' private directory of values. A new directory (mode 0700) under a
 * parent on a memory file system (tmpfs or ramfs: values never reach a disk), one file per
 * value (mode 0400, owned by the process, which is the uid the child runs as), removed with
 * everything in it when the child has exited.
 */
#ifndef PCS_CLIENT_TMPFILES_H
#define PCS_CLIENT_TMPFILES_H

#include <limits.h>
#include <stddef.h>

#include "status.h"

struct tmpfiles {
	char path[PATH_MAX]; /* the directory; "" when none was made */
	int dirfd;           /* -1 when none */
};

/* Makes parent/pcrun.XXXXXX. Refuses a parent that is not tmpfs or ramfs, naming it. */
int tmpfiles_open(struct tmpfiles *t, const char *parent, pcs_error *err)
    __attribute__((warn_unused_result));
/* Writes name (a variable name) with the value; out gets its path (size PATH_MAX). */
int tmpfiles_write(struct tmpfiles *t, const char *name, const unsigned char *data, size_t len,
    char *out, size_t size, pcs_error *err) __attribute__((warn_unused_result));
/*
 * Removes every file in the directory (the values, and what the child left there) and the
 * directory. 0, or -1 when something could not be removed (then err says what).
 */
int tmpfiles_remove(struct tmpfiles *t, pcs_error *err);

#endif
