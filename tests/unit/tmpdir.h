/* Scratch directories for tests that touch the file system. */
#ifndef PCS_TESTS_UNIT_TMPDIR_H
#define PCS_TESTS_UNIT_TMPDIR_H

#include <stddef.h>

/* mkdtemp under /tmp into dir (at least 64 bytes); returns 0 or -1. */
int tmpdir_make(char *dir, size_t size);
/* Removes every entry of dir (files, symlinks, empty directories) and dir itself. */
int tmpdir_remove(const char *dir);
/* dir + "/" + name into out; aborts the test when it does not fit. */
void tmpdir_path(char *out, size_t size, const char *dir, const char *name);

#endif
