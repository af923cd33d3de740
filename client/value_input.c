#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "value_input.h"

/* Counting stops here: past it the exact size of an over-long value is not worth reading. */
#define VALUE_COUNT_LIMIT (64u * 1024u * 1024u)
/* The value, a "\r\n" to strip, and one byte more to tell "too long" from "just fits". */
#define BUF_LEN (VALUE_MAX + 3)

/* Terminal state for the signal handler, which must put echo back before the process dies. */
static int tty_fd = -1;
static struct termios tty_saved;
static struct termios tty_hidden;
static const int tty_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP };
#define TTY_NSIGNALS (sizeof(tty_signals) / sizeof(tty_signals[0]))
static struct sigaction tty_old_actions[TTY_NSIGNALS];

static void tty_on_signal(int sig)
{
	struct sigaction dfl, mine;
	sigset_t set;
	int saved_errno = errno;

	(void)tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	/* Die (or stop) the way the signal would have done it, with the terminal restored. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	(void)sigemptyset(&dfl.sa_mask);
	(void)sigaction(sig, &dfl, &mine);
	(void)sigemptyset(&set);
	(void)sigaddset(&set, sig);
	(void)sigprocmask(SIG_UNBLOCK, &set, NULL);
	(void)raise(sig);
	/* Only a stop returns here, once the shell continues us: hide the input again. */
	(void)sigprocmask(SIG_BLOCK, &set, NULL);
	(void)sigaction(sig, &mine, NULL);
	(void)tcsetattr(tty_fd, TCSAFLUSH, &tty_hidden);
	errno = saved_errno;
}

static void tty_signals_set(void)
{
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tty_on_signal;
	(void)sigemptyset(&sa.sa_mask);
	for (i = 0; i < TTY_NSIGNALS; i++)
		(void)sigaction(tty_signals[i], &sa, &tty_old_actions[i]);
}

static void tty_signals_restore(void)
{
	size_t i;

	for (i = 0; i < TTY_NSIGNALS; i++)
		(void)sigaction(tty_signals[i], &tty_old_actions[i], NULL);
}

static int fail_too_long(size_t n, int more, pcs_error *err)
{
	return pcs_fail(err, PCS_INVALID_ARGUMENT, "value is %s%zu bytes; the maximum is %u",
	    more ? "more than " : "", n, VALUE_MAX);
}

/*
 * Reads fd to the end into buf (BUF_LEN bytes), accepting at most cap of them. Past cap it
 * goes on counting through a wiped scratch buffer, so the error can say how long it was.
 */
static int read_all(
    int fd, const char *what, unsigned char *buf, size_t cap, size_t *len, pcs_error *err)
{
	unsigned char scratch[4096];
	size_t total = 0;
	ssize_t n;
	int r;

	for (;;) {
		if (total <= cap)
			n = read(fd, buf + total, cap + 1 - total);
		else
			n = read(fd, scratch, sizeof(scratch));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "cannot read the value from %s: %s",
			    what, strerror(errno));
			goto out;
		}
		total += (size_t)n;
		if (total > VALUE_COUNT_LIMIT) {
			r = fail_too_long(VALUE_COUNT_LIMIT, 1, err);
			goto out;
		}
	}
	if (total > cap) {
		r = fail_too_long(total, 0, err);
		goto out;
	}
	*len = total;
	r = 0;
out:
	sodium_memzero(scratch, sizeof(scratch));
	return r;
}

static int read_file(const char *path, unsigned char *buf, size_t *len, pcs_error *err)
{
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
	r = read_all(fd, path, buf, VALUE_MAX, len, err);
	(void)close(fd);
	return r;
}

static void strip_newline(const unsigned char *buf, size_t *len)
{
	if (*len > 0 && buf[*len - 1] == '\n') {
		(*len)--;
		if (*len > 0 && buf[*len - 1] == '\r')
			(*len)--;
	}
}

static int read_tty(const char *prompt, unsigned char *buf, size_t *len, pcs_error *err)
{
	size_t total = 0;
	ssize_t n;
	int fd, r, hidden = 0;

	if ((fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY)) == -1 ||
	    tcgetattr(fd, &tty_saved) == -1) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "no value given: use --from-file FILE or "
		    "pipe the value to stdin");
		goto out;
	}
	tty_hidden = tty_saved;
	tty_hidden.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	tty_hidden.c_lflag |= ICANON;
	tty_fd = fd;
	tty_signals_set();
	hidden = 1;
	if (tcsetattr(fd, TCSAFLUSH, &tty_hidden) == -1) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "cannot turn off echo on the terminal: %s",
		    strerror(errno));
		goto out;
	}
	(void)!write(fd, prompt, strlen(prompt));
	/* One line; the terminal's line discipline bounds its length. */
	while (total < BUF_LEN) {
		n = read(fd, buf + total, BUF_LEN - total);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "cannot read from the terminal: %s",
			    strerror(errno));
			goto out;
		}
		total += (size_t)n;
		if (buf[total - 1] == '\n')
			break;
	}
	if (total == BUF_LEN && buf[total - 1] != '\n') {
		r = fail_too_long(VALUE_MAX, 1, err);
		goto out;
	}
	*len = total;
	r = 0;
out:
	if (hidden) {
		(void)tcsetattr(fd, TCSAFLUSH, &tty_saved);
		/* The Enter the user typed was not echoed. */
		(void)!write(fd, "\n", 1);
		tty_signals_restore();
		tty_fd = -1;
	}
	if (fd != -1)
		(void)close(fd);
	return r;
}

int value_read(
    const char *from_file, const char *prompt, unsigned char **out, size_t *len, pcs_error *err)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	int r;

	*out = NULL;
	*len = 0;
	if (sodium_init() < 0) {
		r = pcs_fail(err, PCS_INTERNAL, "libsodium failed to initialise");
		goto out;
	}
	if ((buf = sodium_malloc(BUF_LEN)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate secure memory for the "
		    "value");
		goto out;
	}
	if (from_file != NULL) {
		r = read_file(from_file, buf, &n, err);
	} else {
		/* Room for the line end that is stripped, so a value of exactly VALUE_MAX fits. */
		if (!isatty(STDIN_FILENO))
			r = read_all(STDIN_FILENO, "stdin", buf, VALUE_MAX + 2, &n, err);
		else
			r = read_tty(prompt, buf, &n, err);
		if (r == 0)
			strip_newline(buf, &n);
	}
	if (r != 0)
		goto out;
	if (n > VALUE_MAX) {
		r = fail_too_long(n, 0, err);
		goto out;
	}
	if (n == 0) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "value is empty");
		goto out;
	}
	*out = buf;
	*len = n;
	buf = NULL;
	r = 0;
out:
	value_free(buf);
	return r;
}

void value_free(unsigned char *value)
{
	/* sodium_free wipes the whole allocation before it unmaps it. */
	sodium_free(value);
}
