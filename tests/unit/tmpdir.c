#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmpdir.h"

int
tmpdir_make(char *dir, size_t size)
{
	if (snprintf(dir, size, "/tmp/pcs-unit-XXXXXX") >= (int)size)
		return -1;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

int
tmpdir_remove(const char *dir)
{
	char path[4096];
	struct dirent *e;
	DIR *d;
	int r = 0;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		tmpdir_path(path, sizeof(path), dir, e->d_name);
		/* The tests only ever make flat directories, or empty ones inside them. */
		if (unlink(path) != 0 && rmdir(path) != 0)
			r = -1;
	}
	closedir(d);
	if (rmdir(dir) != 0)
		r = -1;
	return r;
}

void
tmpdir_path(char *out, size_t size, const char *dir, const char *name)
{
	int n = snprintf(out, size, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= size)
		fail_msg("path %s/%s is too long", dir, name);
}
