#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "keyfile.h"
#include "tmpdir.h"

#define HEX64 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

struct fixture {
	char dir[64];
	char path[256];
};

static int
setup(void **state)
{
	static struct fixture f;

	if (sodium_init() < 0 || tmpdir_make(f.dir, sizeof(f.dir)) != 0)
		return -1;
	tmpdir_path(f.path, sizeof(f.path), f.dir, "master.key");
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	return tmpdir_remove(f->dir);
}

static void
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	/* Recreate rather than truncate: a previous case may have left it read-only. */
	if (unlink(path) != 0)
		assert_int_equal(errno, ENOENT);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static size_t
read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, size);
	assert_true(n >= 0);
	close(fd);
	return (size_t)n;
}

static void
test_create_then_read(void **state)
{
	struct fixture *f = *state;
	uint8_t key[KEYFILE_KEY_LEN], want[KEYFILE_KEY_LEN];
	char content[128];
	struct stat st;
	pcs_error err;
	size_t n;

	assert_int_equal(keyfile_create(f->path, &err), 0);
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	n = read_file(f->path, content, sizeof(content));
	assert_int_equal(n, 65);
	assert_int_equal(content[64], '\n');
	assert_int_equal(sodium_hex2bin(want, sizeof(want), content, 64, NULL, NULL, NULL), 0);

	memset(key, 0xee, sizeof(key));
	assert_int_equal(keyfile_read(f->path, key, &err), 0);
	assert_memory_equal(key, want, sizeof(key));
}

static void
test_create_is_random_and_ignores_umask(void **state)
{
	struct fixture *f = *state;
	uint8_t a[KEYFILE_KEY_LEN], b[KEYFILE_KEY_LEN];
	char second[256];
	struct stat st;
	pcs_error err;
	mode_t old;

	tmpdir_path(second, sizeof(second), f->dir, "second.key");
	old = umask(0);
	assert_int_equal(keyfile_create(f->path, &err), 0);
	umask(0277);
	assert_int_equal(keyfile_create(second, &err), 0);
	umask(old);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(second, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(keyfile_read(f->path, a, &err), 0);
	assert_int_equal(keyfile_read(second, b, &err), 0);
	assert_memory_not_equal(a, b, sizeof(a));
}

static void
test_refuses_overwrite(void **state)
{
	struct fixture *f = *state;
	char before[128], after[128], target[256];
	size_t n;
	pcs_error err;

	assert_int_equal(keyfile_create(f->path, &err), 0);
	n = read_file(f->path, before, sizeof(before));
	assert_int_equal(keyfile_create(f->path, &err), -PCS_ALREADY_EXISTS);
	assert_int_equal(err.code, PCS_ALREADY_EXISTS);
	assert_non_null(strstr(err.message, f->path));
	assert_int_equal(read_file(f->path, after, sizeof(after)), n);
	assert_memory_equal(before, after, n);

	/* A dangling symlink at the path is not followed to create its target. */
	tmpdir_path(target, sizeof(target), f->dir, "target");
	assert_int_equal(unlink(f->path), 0);
	assert_int_equal(symlink(target, f->path), 0);
	assert_int_equal(keyfile_create(f->path, &err), -PCS_ALREADY_EXISTS);
	assert_int_equal(access(target, F_OK), -1);
}

static void
test_create_in_missing_dir(void **state)
{
	struct fixture *f = *state;
	char path[256];
	pcs_error err;

	tmpdir_path(path, sizeof(path), f->dir, "nope/master.key");
	assert_int_equal(keyfile_create(path, &err), -PCS_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, path));
}

static void
check_mode_refused(const char *path, mode_t mode)
{
	uint8_t key[KEYFILE_KEY_LEN];
	char want[1024];
	pcs_error err;

	write_file(path, HEX64 "\n", 65, mode);
	memset(key, 0xee, sizeof(key));
	assert_int_equal(keyfile_read(path, key, &err), -PCS_FAILED_PRECONDITION);
	assert_int_equal(err.code, PCS_FAILED_PRECONDITION);
	snprintf(want, sizeof(want),
	    "master key file %s has mode %04o: it must not be readable by group or others "
	    "(chmod 600 %s)", path, (unsigned)mode, path);
	assert_string_equal(err.message, want);
	assert_null(strstr(err.message, HEX64));
	assert_memory_equal(key, (uint8_t[KEYFILE_KEY_LEN]){ 0 }, sizeof(key));
}

static void
test_modes(void **state)
{
	struct fixture *f = *state;
	static const mode_t refused[] = { 0640, 0604, 0644, 0660, 0610, 0601, 0602, 0620, 0666,
	    0700 | 0070 };
	static const mode_t accepted[] = { 0600, 0400, 0700, 0500 };
	uint8_t key[KEYFILE_KEY_LEN];
	pcs_error err;
	size_t i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		check_mode_refused(f->path, refused[i]);
	for (i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		write_file(f->path, HEX64 "\n", 65, accepted[i]);
		if (keyfile_read(f->path, key, &err) != 0)
			fail_msg("mode %04o refused: %s", (unsigned)accepted[i], err.message);
		assert_int_equal(key[0], 0x00);
		assert_int_equal(key[31], 0x1f);
	}
}

static void
test_missing(void **state)
{
	struct fixture *f = *state;
	uint8_t key[KEYFILE_KEY_LEN];
	char want[1024];
	pcs_error err;

	assert_int_equal(keyfile_read(f->path, key, &err), -PCS_FAILED_PRECONDITION);
	snprintf(want, sizeof(want), "master key file %s: No such file or directory", f->path);
	assert_string_equal(err.message, want);
}

static void
test_malformed(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *content;
		size_t len;
	} bad[] = {
		{ HEX64, 63 },
		{ HEX64 "0", 65 },
		{ HEX64 "00", 66 },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g", 64 },
		{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n", 65 },
		{ HEX64 "\n\n", 66 },
		{ HEX64 "\r\n", 66 },
		{ HEX64 " ", 65 },
		{ " " HEX64, 65 },
		{ "\n" HEX64, 65 },
		{ "", 0 },
		{ "\n", 1 },
		{ "00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15", 64 },
		{ HEX64 "\0", 65 },
	};
	uint8_t key[KEYFILE_KEY_LEN];
	char want[1024];
	pcs_error err;
	size_t i;

	snprintf(want, sizeof(want),
	    "master key file %s is malformed: expected 64 hex characters", f->path);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(f->path, bad[i].content, bad[i].len, 0600);
		memset(key, 0xee, sizeof(key));
		if (keyfile_read(f->path, key, &err) != -PCS_INVALID_ARGUMENT)
			fail_msg("malformed key file %zu accepted", i);
		assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
		assert_string_equal(err.message, want);
		assert_memory_equal(key, (uint8_t[KEYFILE_KEY_LEN]){ 0 }, sizeof(key));
	}
	/* Without its newline, and in upper case, the same key is still well formed. */
	write_file(f->path, HEX64, 64, 0600);
	assert_int_equal(keyfile_read(f->path, key, &err), 0);
	write_file(f->path, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", 64,
	    0600);
	assert_int_equal(keyfile_read(f->path, key, &err), 0);
	assert_int_equal(key[31], 0x1f);
}

static void
test_symlink_and_not_regular(void **state)
{
	struct fixture *f = *state;
	uint8_t key[KEYFILE_KEY_LEN];
	char real[256], link[256], sub[256], fifo[256];
	pcs_error err;

	tmpdir_path(real, sizeof(real), f->dir, "real.key");
	tmpdir_path(link, sizeof(link), f->dir, "link.key");
	write_file(real, HEX64 "\n", 65, 0600);
	assert_int_equal(keyfile_read(real, key, &err), 0);
	assert_int_equal(symlink(real, link), 0);
	assert_int_equal(keyfile_read(link, key, &err), -PCS_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, "symbolic link"));
	assert_non_null(strstr(err.message, link));

	tmpdir_path(sub, sizeof(sub), f->dir, "dir.key");
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(keyfile_read(sub, key, &err), -PCS_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, "not a regular file"));

	/* A FIFO must be refused at once, not block start-up waiting for a writer. */
	tmpdir_path(fifo, sizeof(fifo), f->dir, "fifo.key");
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(keyfile_read(fifo, key, &err), -PCS_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, "not a regular file"));
}

/*
 * Whoever owns the key file can read and replace it whatever its mode: a key owned by another
 * user is refused like a loose mode. Root makes such a file with chown, so this needs root.
 */
static void
test_owned_by_another_user(void **state)
{
	struct fixture *f = *state;
	uint8_t key[KEYFILE_KEY_LEN];
	pcs_error err;

	if (geteuid() != 0)
		skip();
	write_file(f->path, HEX64 "\n", 65, 0600);
	assert_int_equal(chown(f->path, 40099, 40099), 0);
	assert_int_equal(keyfile_read(f->path, key, &err), -PCS_FAILED_PRECONDITION);
	assert_int_equal(err.code, PCS_FAILED_PRECONDITION);
	assert_non_null(strstr(err.message, f->path));
	assert_non_null(strstr(err.message, "owned by uid 40099"));
	assert_non_null(strstr(err.message, "must belong to root"));
	/* Refused before the content is read: nothing of the key is left behind. */
	for (size_t i = 0; i < sizeof(key); i++)
		assert_int_equal(key[i], 0);
	/* Back to root (the process's own uid here): the same file is accepted. */
	assert_int_equal(chown(f->path, 0, 0), 0);
	assert_int_equal(keyfile_read(f->path, key, &err), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_then_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_is_random_and_ignores_umask, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_refuses_overwrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_in_missing_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_and_not_regular, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owned_by_another_user, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
