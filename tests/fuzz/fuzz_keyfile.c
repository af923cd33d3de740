/*
 * keyfile_read, the master key loader, on a real file holding the fuzz bytes. The first byte
 * picks the file's mode (0600, 0400, 0640, 0604); the rest is the content. Checked against an
 * independent statement of the rules: exactly 64 hex digits with at most one trailing newline,
 * and no group or other bits. A refusal must never quote the content (it may be a near-miss
 * key): its message may hold no run of 8 or more hex digits.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], path[300];

static void remove_dir(void)
{
	unlink(path);
	rmdir(dir);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	/* run.sh points TMPDIR into its scratch directory, which it removes. */
	snprintf(dir, sizeof(dir), "%s/pcs-fuzz-keyfile-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/master.key", dir);
	atexit(remove_dir);
}

static int hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The rules, restated: 1 and key filled when content is a valid key. */
static int expect_key(const uint8_t *s, size_t n, uint8_t key[KEYFILE_KEY_LEN])
{
	if (n == 2 * KEYFILE_KEY_LEN + 1 && s[n - 1] == '\n')
		n--;
	if (n != 2 * KEYFILE_KEY_LEN)
		return 0;
	for (size_t i = 0; i < KEYFILE_KEY_LEN; i++) {
		int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
		if (h < 0 || l < 0)
			return 0;
		key[i] = (uint8_t)(h << 4 | l);
	}
	return 1;
}

/* A run of min or more hex digits in msg, the file's path (which may have some) left out. */
static int has_hex_run(const char *msg, size_t min)
{
	size_t run = 0, plen = strlen(path);

	while (*msg != '\0') {
		if (strncmp(msg, path, plen) == 0) {
			msg += plen;
			run = 0;
			continue;
		}
		run = hexval((uint8_t)*msg) >= 0 ? run + 1 : 0;
		if (run >= min)
			return 1;
		msg++;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const mode_t modes[4] = { 0600, 0400, 0640, 0604 };
	uint8_t key[KEYFILE_KEY_LEN], want[KEYFILE_KEY_LEN];
	pcs_error err;
	mode_t mode;
	int fd, r, valid;

	if (dir[0] == '\0')
		setup();
	if (size == 0)
		return 0;
	mode = modes[data[0] & 3];
	data++;
	size--;
	unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
		abort();
	if ((size > 0 && write(fd, data, size) != (ssize_t)size) || fchmod(fd, mode) != 0)
		abort();
	close(fd);

	valid = expect_key(data, size, want);
	memset(key, 0xa5, sizeof(key));
	r = keyfile_read(path, key, &err);
	if ((mode & 077) != 0) {
		if (r != -PCS_FAILED_PRECONDITION || strstr(err.message, "chmod 600") == NULL)
			abort();
	} else if (valid) {
		if (r != 0 || memcmp(key, want, sizeof(key)) != 0)
			abort();
	} else if (r != -PCS_INVALID_ARGUMENT || err.code != PCS_INVALID_ARGUMENT) {
		abort();
	}
	if (r != 0) {
		/* A refused key is wiped, and the message never repeats the content. */
		for (size_t i = 0; i < sizeof(key); i++)
			if (key[i] != 0)
				abort();
		if (memchr(err.message, '\0', sizeof(err.message)) == NULL ||
		    has_hex_run(err.message, 8))
			abort();
	}
	return 0;
}
