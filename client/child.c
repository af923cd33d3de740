/*
 * child: fork, supervise, stop, restart and reap PROGRAM for pcrun (--files, --mask,
 * --on-change).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "child.h"

#define EXIT_NOEXEC 127
#define READ_CHUNK 4096

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

/* The write end of the self-pipe, for the handler (one child_run at a time). */
static int sig_wfd = -1;

static void on_signal(int sig, siginfo_t *info, void *uctx)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;

	(void)uctx;
	/*
	 * A signal the terminal sent (^C) reached the whole foreground process group, the child
	 * included: forwarding it would deliver it twice.
	 */
	if (sig != SIGCHLD && info != NULL && info->si_code == SI_KERNEL) {
		errno = saved;
		return;
	}
	/* Non-blocking: a full pipe already holds a wake-up; a lost duplicate costs nothing. */
	(void)!write(sig_wfd, &b, 1);
	errno = saved;
}

/* One output stream of the child: its pipe, its masker, where it goes. */
struct stream {
	int fd;  /* read end; -1 at EOF */
	int out; /* 1 or 2 */
	struct mask mask;
	int dead; /* writing to out failed (closed): the rest is read and dropped */
};

static int stream_write(void *ctx, const unsigned char *buf, size_t len)
{
	struct stream *s = ctx;
	ssize_t n;

	while (len > 0 && !s->dead) {
		if ((n = write(s->out, buf, len)) < 0) {
			if (errno == EINTR)
				continue;
			/* Keep reading the child's output, so it never blocks on a full pipe. */
			s->dead = 1;
			break;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads what is there; at EOF flushes the masker and closes. 0, or -1 on a read error. */
static int stream_read(struct stream *s)
{
	unsigned char buf[READ_CHUNK];
	ssize_t n;
	int r = 0;

	for (;;) {
		n = read(s->fd, buf, sizeof(buf));
		if (n > 0) {
			(void)mask_feed(&s->mask, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* EOF or an error: the stream is over. */
		(void)mask_flush(&s->mask);
		(void)close(s->fd);
		s->fd = -1;
		r = n < 0 ? -1 : 0;
		break;
	}
	/* The child's output may hold values before masking. */
	sodium_memzero(buf, sizeof(buf));
	return r;
}

/* What each signal was doing before, restored for the child and after the run. */
struct saved_signals {
	struct sigaction act[NFORWARDED + 2]; /* forwarded..., SIGCHLD, SIGPIPE */
	sigset_t mask;
};

static const int *signal_at(size_t i, int *sig)
{
	*sig = i < NFORWARDED ? forwarded[i] : i == NFORWARDED ? SIGCHLD : SIGPIPE;
	return sig;
}

static int install(struct saved_signals *saved, pcs_error *err)
{
	struct sigaction sa;
	size_t i;
	int sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < NFORWARDED + 2; i++) {
		(void)signal_at(i, &sig);
		if (sig == SIGPIPE) {
			/* A closed stdout of pcrun's must not kill it while the child runs. */
			struct sigaction ign;

			memset(&ign, 0, sizeof(ign));
			ign.sa_handler = SIG_IGN;
			sigemptyset(&ign.sa_mask);
			if (sigaction(sig, &ign, &saved->act[i]) != 0)
				return pcs_fail(
				    err, PCS_INTERNAL, "sigaction: %s", strerror(errno));
			continue;
		}
		if (sigaction(sig, &sa, &saved->act[i]) != 0)
			return pcs_fail(err, PCS_INTERNAL, "sigaction: %s", strerror(errno));
	}
	return 0;
}

static void restore(const struct saved_signals *saved)
{
	size_t i;
	int sig;

	for (i = 0; i < NFORWARDED + 2; i++)
		(void)sigaction(*signal_at(i, &sig), &saved->act[i], NULL);
}

/* In the child, after fork: never returns. */
static void exec_child(
    char *const *argv, char *const *envp, const struct saved_signals *saved, int out_w, int err_w)
{
	restore(saved);
	(void)sigprocmask(SIG_SETMASK, &saved->mask, NULL);
	if ((out_w != -1 && dup2(out_w, 1) == -1) || (err_w != -1 && dup2(err_w, 2) == -1))
		_exit(EXIT_NOEXEC);
	execvpe(argv[0], argv, envp);
	/* Not printf: stdio state was copied from the parent. */
	{
		const char *e = strerror(errno);

		(void)!write(2, "pcrun: cannot execute ", 22);
		(void)!write(2, argv[0], strlen(argv[0]));
		(void)!write(2, ": ", 2);
		(void)!write(2, e, strlen(e));
		(void)!write(2, "\n", 1);
	}
	_exit(EXIT_NOEXEC);
}

static int shell_status(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 1;
}

struct child {
	const struct child_spec *spec;
	struct saved_signals saved;
	struct stream streams[2];
	int sigp[2];
	/*
	 * The write ends of the output pipes (--mask), kept for the children started after a
	 * restart; the loop ends when the child is reaped, not at EOF.
	 */
	int out_w, err_w;
	pid_t pid;
	int reaped;
	int wstatus;
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int spawn(struct child *c, char *const *envp, pcs_error *err)
{
	sigset_t block, old;

	/*
	 * Blocked around fork, so that the child cannot run this process's handler (and write to
	 * its self-pipe) before it has put the old dispositions back.
	 */
	sigfillset(&block);
	if (sigprocmask(SIG_BLOCK, &block, &old) != 0)
		return pcs_fail(err, PCS_INTERNAL, "sigprocmask: %s", strerror(errno));
	if ((c->pid = fork()) == -1) {
		(void)sigprocmask(SIG_SETMASK, &old, NULL);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "fork: %s", strerror(errno));
	}
	if (c->pid == 0)
		exec_child(c->spec->argv, envp, &c->saved, c->out_w, c->err_w);
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	c->reaped = 0;
	c->wstatus = 0;
	return 0;
}

/*
 * One wait of the loop: the self-pipe (signals to forward, SIGCHLD), the output pipes and
 * extra_fd (-1: none), up to timeout_ms (-1: no limit). *readable: whether extra_fd was.
 */
static int pump(struct child *c, int extra_fd, int timeout_ms, int *readable, pcs_error *err)
{
	struct pollfd pfd[4];
	unsigned char sigs[64];
	int i, nfds = 0, extra = -1;
	ssize_t n;

	*readable = 0;
	pfd[nfds].fd = c->sigp[0];
	pfd[nfds++].events = POLLIN;
	for (i = 0; i < 2; i++)
		if (c->streams[i].fd != -1) {
			pfd[nfds].fd = c->streams[i].fd;
			pfd[nfds++].events = POLLIN;
		}
	if (extra_fd != -1) {
		extra = nfds;
		pfd[nfds].fd = extra_fd;
		pfd[nfds++].events = POLLIN;
	}
	if (poll(pfd, (nfds_t)nfds, timeout_ms) < 0) {
		if (errno == EINTR)
			return 0;
		return pcs_fail(err, PCS_INTERNAL, "poll: %s", strerror(errno));
	}
	for (i = 1; i < nfds; i++) {
		if (pfd[i].revents == 0)
			continue;
		if (i == extra)
			*readable = 1;
		else
			(void)stream_read(
			    pfd[i].fd == c->streams[0].fd ? &c->streams[0] : &c->streams[1]);
	}
	if (pfd[0].revents == 0)
		return 0;
	while ((n = read(c->sigp[0], sigs, sizeof(sigs))) > 0) {
		for (i = 0; i < (int)n; i++)
			if (sigs[i] != SIGCHLD && c->pid > 0 && !c->reaped)
				(void)kill(c->pid, sigs[i]);
	}
	if (c->pid > 0 && !c->reaped && waitpid(c->pid, &c->wstatus, WNOHANG) == c->pid)
		c->reaped = 1;
	return 0;
}

/* Takes what the pipes hold now, without waiting for more. */
static void drain(struct child *c)
{
	int i;

	for (i = 0; i < 2; i++)
		if (c->streams[i].fd != -1)
			(void)stream_read(&c->streams[i]);
}

void child_signal(struct child *c, int sig)
{
	if (c->pid > 0 && !c->reaped)
		(void)kill(c->pid, sig);
}

int child_stop(struct child *c, int grace_ms, int *status)
{
	long deadline;
	int readable, left;

	if (!c->reaped && waitpid(c->pid, &c->wstatus, WNOHANG) == c->pid)
		c->reaped = 1;
	if (c->reaped) {
		*status = shell_status(c->wstatus);
		return 1;
	}
	(void)kill(c->pid, SIGTERM);
	deadline = now_ms() + grace_ms;
	while (!c->reaped && (left = (int)(deadline - now_ms())) > 0)
		if (pump(c, -1, left, &readable, NULL) != 0)
			break;
	if (!c->reaped) {
		(void)kill(c->pid, SIGKILL);
		while (waitpid(c->pid, &c->wstatus, 0) == -1 && errno == EINTR)
			;
		c->reaped = 1;
	}
	drain(c);
	*status = shell_status(c->wstatus);
	return 0;
}

int child_start(struct child *c, char *const *envp, pcs_error *err) { return spawn(c, envp, err); }

int child_set_values(struct child *c, const struct mask_value *values, size_t n, pcs_error *err)
{
	int i, r;

	if (!c->spec->mask)
		return 0;
	/* What the pipes hold was written with the old values: masked with the new set too. */
	for (i = 0; i < 2; i++)
		if ((r = mask_set_values(&c->streams[i].mask, values, n, err)) != 0)
			return r;
	return 0;
}

int child_run(const struct child_spec *spec, int *status, pcs_error *err)
{
	const struct child_hooks *h = spec->hooks;
	struct child c;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	int r, installed = 0, ended = 0, i, fd, timeout, readable;

	*status = 1;
	memset(&c, 0, sizeof(c));
	c.spec = spec;
	c.pid = -1;
	c.sigp[0] = c.sigp[1] = c.out_w = c.err_w = -1;
	c.streams[0].fd = c.streams[1].fd = -1;
	c.streams[0].out = 1;
	c.streams[1].out = 2;
	if (pipe2(c.sigp, O_CLOEXEC | O_NONBLOCK) != 0 ||
	    (spec->mask && (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0))) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "pipe: %s", strerror(errno));
		goto out;
	}
	if (spec->mask) {
		if ((r = mask_init(&c.streams[0].mask, spec->values, spec->nvalues, READ_CHUNK,
		         stream_write, &c.streams[0], err)) != 0 ||
		    (r = mask_init(&c.streams[1].mask, spec->values, spec->nvalues, READ_CHUNK,
		         stream_write, &c.streams[1], err)) != 0)
			goto out;
		c.streams[0].fd = outp[0];
		c.streams[1].fd = errp[0];
		c.out_w = outp[1];
		c.err_w = errp[1];
		outp[0] = errp[0] = outp[1] = errp[1] = -1;
		(void)fcntl(c.streams[0].fd, F_SETFL, O_NONBLOCK);
		(void)fcntl(c.streams[1].fd, F_SETFL, O_NONBLOCK);
	}
	sig_wfd = c.sigp[1];
	if ((r = install(&c.saved, err)) != 0)
		goto out;
	installed = 1;
	/* What the children get back: the signal mask pcrun started with. */
	if (sigprocmask(SIG_SETMASK, NULL, &c.saved.mask) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "sigprocmask: %s", strerror(errno));
		goto out;
	}
	if ((r = spawn(&c, spec->envp, err)) != 0)
		goto out;
	if (h == NULL) {
		/* Only the child writes: EOF comes when it (and what it started) closes them. */
		if (c.out_w != -1)
			(void)close(c.out_w);
		if (c.err_w != -1)
			(void)close(c.err_w);
		c.out_w = c.err_w = -1;
	}
	while (!c.reaped) {
		fd = timeout = -1;
		if (h != NULL)
			h->wait_on(h->ctx, &fd, &timeout);
		if ((r = pump(&c, fd, timeout, &readable, err)) != 0)
			goto out;
		/* The child's own end wins over anything a step would do. */
		if (c.reaped || h == NULL)
			continue;
		if ((r = h->step(h->ctx, &c, readable, status)) < 0)
			goto out;
		if (r == 1) {
			ended = 1;
			break;
		}
	}
	/*
	 * What the child wrote before it exited is in the pipes: take it (without waiting for
	 * programs it left running, which may hold the pipes open for ever).
	 */
	for (i = 0; i < 2; i++)
		if (c.streams[i].fd != -1) {
			(void)stream_read(&c.streams[i]);
			if (c.streams[i].fd != -1) {
				(void)mask_flush(&c.streams[i].mask);
				(void)close(c.streams[i].fd);
				c.streams[i].fd = -1;
			}
		}
	if (!ended)
		*status = shell_status(c.wstatus);
	r = 0;
out:
	if (c.pid > 0 && !c.reaped) {
		/* Supervision failed: the child must not outlive its values' clean-up. */
		(void)kill(c.pid, SIGKILL);
		(void)waitpid(c.pid, NULL, 0);
	}
	if (installed)
		restore(&c.saved);
	sig_wfd = -1;
	for (i = 0; i < 2; i++) {
		if (c.streams[i].fd != -1)
			(void)close(c.streams[i].fd);
		mask_free(&c.streams[i].mask);
		if (c.sigp[i] != -1)
			(void)close(c.sigp[i]);
		if (outp[i] != -1)
			(void)close(outp[i]);
		if (errp[i] != -1)
			(void)close(errp[i]);
	}
	if (c.out_w != -1)
		(void)close(c.out_w);
	if (c.err_w != -1)
		(void)close(c.err_w);
	return r;
}
