/*
 * child: fork, supervise and reap PROGRAM for pcrun (--files, --mask).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
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
    const struct child_spec *spec, const struct saved_signals *saved, int out_w, int err_w)
{
	restore(saved);
	(void)sigprocmask(SIG_SETMASK, &saved->mask, NULL);
	if ((out_w != -1 && dup2(out_w, 1) == -1) || (err_w != -1 && dup2(err_w, 2) == -1))
		_exit(EXIT_NOEXEC);
	execvpe(spec->argv[0], spec->argv, spec->envp);
	/* Not printf: stdio state was copied from the parent. */
	{
		const char *e = strerror(errno);

		(void)!write(2, "pcrun: cannot execute ", 22);
		(void)!write(2, spec->argv[0], strlen(spec->argv[0]));
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

int child_run(const struct child_spec *spec, int *status, pcs_error *err)
{
	struct saved_signals saved;
	struct stream streams[2];
	struct pollfd pfd[3];
	sigset_t block;
	int sigp[2] = { -1, -1 }, outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	int r, installed = 0, reaped = 0, wstatus = 0, i, nfds;
	unsigned char sigs[64];
	pid_t pid = -1;
	ssize_t n;

	*status = 1;
	memset(streams, 0, sizeof(streams));
	streams[0].fd = streams[1].fd = -1;
	streams[0].out = 1;
	streams[1].out = 2;
	if (pipe2(sigp, O_CLOEXEC | O_NONBLOCK) != 0 ||
	    (spec->mask && (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0))) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "pipe: %s", strerror(errno));
		goto out;
	}
	if (spec->mask) {
		if ((r = mask_init(&streams[0].mask, spec->values, spec->nvalues, READ_CHUNK,
		         stream_write, &streams[0], err)) != 0 ||
		    (r = mask_init(&streams[1].mask, spec->values, spec->nvalues, READ_CHUNK,
		         stream_write, &streams[1], err)) != 0)
			goto out;
		streams[0].fd = outp[0];
		streams[1].fd = errp[0];
		outp[0] = errp[0] = -1;
		(void)fcntl(streams[0].fd, F_SETFL, O_NONBLOCK);
		(void)fcntl(streams[1].fd, F_SETFL, O_NONBLOCK);
	}
	sig_wfd = sigp[1];
	/*
	 * Blocked around fork, so that the child cannot run this process's handler (and write to
	 * its self-pipe) before it has put the old dispositions back.
	 */
	sigfillset(&block);
	if (sigprocmask(SIG_BLOCK, &block, &saved.mask) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "sigprocmask: %s", strerror(errno));
		goto out;
	}
	if ((r = install(&saved, err)) != 0) {
		(void)sigprocmask(SIG_SETMASK, &saved.mask, NULL);
		goto out;
	}
	installed = 1;
	if ((pid = fork()) == -1) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "fork: %s", strerror(errno));
		(void)sigprocmask(SIG_SETMASK, &saved.mask, NULL);
		goto out;
	}
	if (pid == 0)
		exec_child(spec, &saved, outp[1], errp[1]);
	(void)sigprocmask(SIG_SETMASK, &saved.mask, NULL);
	/* Only the child writes: EOF comes when it (and what it started) closes them. */
	if (outp[1] != -1)
		(void)close(outp[1]);
	if (errp[1] != -1)
		(void)close(errp[1]);
	outp[1] = errp[1] = -1;

	/*
	 * The loop: the self-pipe (signals to forward, SIGCHLD) and the output pipes. A watch
	 * descriptor (--on-change, to come) is added to this set; its events re-resolve and then
	 * restart or signal the child from here.
	 */
	while (!reaped) {
		nfds = 0;
		pfd[nfds].fd = sigp[0];
		pfd[nfds++].events = POLLIN;
		for (i = 0; i < 2; i++)
			if (streams[i].fd != -1) {
				pfd[nfds].fd = streams[i].fd;
				pfd[nfds++].events = POLLIN;
			}
		if (poll(pfd, (nfds_t)nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = pcs_fail(err, PCS_INTERNAL, "poll: %s", strerror(errno));
			goto out;
		}
		for (i = 1; i < nfds; i++)
			if (pfd[i].revents != 0)
				(void)stream_read(
				    pfd[i].fd == streams[0].fd ? &streams[0] : &streams[1]);
		if (pfd[0].revents == 0)
			continue;
		while ((n = read(sigp[0], sigs, sizeof(sigs))) > 0) {
			for (i = 0; i < (int)n; i++)
				if (sigs[i] != SIGCHLD)
					(void)kill(pid, sigs[i]);
		}
		if (waitpid(pid, &wstatus, WNOHANG) == pid)
			reaped = 1;
	}
	/*
	 * What the child wrote before it exited is in the pipes: take it (without waiting for
	 * programs it left running, which may hold the pipes open for ever).
	 */
	for (i = 0; i < 2; i++)
		if (streams[i].fd != -1) {
			(void)stream_read(&streams[i]);
			if (streams[i].fd != -1) {
				(void)mask_flush(&streams[i].mask);
				(void)close(streams[i].fd);
				streams[i].fd = -1;
			}
		}
	*status = shell_status(wstatus);
	r = 0;
out:
	if (pid > 0 && !reaped) {
		/* Supervision failed: the child must not outlive its values' clean-up. */
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
	}
	if (installed)
		restore(&saved);
	sig_wfd = -1;
	for (i = 0; i < 2; i++) {
		if (streams[i].fd != -1)
			(void)close(streams[i].fd);
		mask_free(&streams[i].mask);
	}
	for (i = 0; i < 2; i++) {
		if (sigp[i] != -1)
			(void)close(sigp[i]);
		if (outp[i] != -1)
			(void)close(outp[i]);
		if (errp[i] != -1)
			(void)close(errp[i]);
	}
	return r;
}
