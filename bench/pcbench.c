/*
 * pcbench: resolve load against a running pcsecretd through libpcsecret.
 *
 *   pcbench [--uid UID] [--procs P] [--conns C] [--calls N] [--refs K] [--hold S] REF...
 *
 * Forks P processes (each switching to UID first when given, so it resolves as that agent);
 * each opens C connections and makes N Resolve calls of K references (the REFs, repeated)
 * round-robin over them, one at a time per connection. Prints throughput and latency
 * percentiles. Needs the socket in PCSECRET_SOCKET.
 *
 * With --hold S, nothing is resolved: once every process has its C connections open (Hello
 * done), pcbench prints "held=P*C" and keeps them idle until SIGTERM or SIGINT, or S seconds,
 * so a script can read the daemon's memory with P*C idle connections.
 */
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "load.h"
#include "pcsecret.h"

/* One worker: writes one latency (µs, as double) per call to fd; exits non-zero on error. */
static int worker(
    int fd, uid_t uid, int conns, long calls, long hold, const char **refs, size_t nrefs)
{
	pcs_client **c = calloc((size_t)conns, sizeof(*c));
	pcs_error err;
	int status = 1;

	if (c == NULL)
		return 1;
	if (uid != 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid(uid) != 0)) {
		fprintf(
		    stderr, "pcbench: cannot become uid %u: %s\n", (unsigned)uid, strerror(errno));
		goto out;
	}
	for (int i = 0; i < conns; i++) {
		if (pcs_connect(NULL, &c[i], &err) != 0) {
			fprintf(stderr, "pcbench: connect: %s: %s\n", pcs_status_name(err.code),
			    err.message);
			goto out;
		}
	}
	if (hold > 0) {
		double ready = 0;
		/* Gone with the parent, so a killed script leaves no connections behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (write(fd, &ready, sizeof(ready)) != (ssize_t)sizeof(ready))
			goto out;
		sleep((unsigned)hold);
		status = 0;
		goto out;
	}
	for (long k = 0; k < calls; k++) {
		pcs_value *v = NULL;
		double t0 = load_now_us(), dt;
		if (pcs_resolve(c[k % conns], NULL, refs, nrefs, &v, &err) != 0) {
			fprintf(stderr, "pcbench: resolve: %s: %s\n", pcs_status_name(err.code),
			    err.message);
			goto out;
		}
		dt = load_now_us() - t0;
		pcs_values_free(v, nrefs);
		if (write(fd, &dt, sizeof(dt)) != (ssize_t)sizeof(dt))
			goto out;
	}
	status = 0;
out:
	for (int i = 0; i < conns; i++)
		pcs_close(c[i]);
	free(c);
	return status;
}

/* --hold: every worker reports once its connections are open, then idles until killed. */
static int hold_connections(
    int fds[2], uid_t uid, long procs, long conns, long hold, const char **refs, size_t nrefs)
{
	pid_t *pids = calloc((size_t)procs, sizeof(*pids));
	sigset_t set;
	long ready = 0;
	double d;
	int failed = 0;

	if (pids == NULL)
		return 1;
	/* Blocked before fork, so sigtimedwait below sees a signal sent at any time. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (long p = 0; p < procs; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			close(fds[0]);
			_exit(worker(fds[1], uid, (int)conns, 0, hold, refs, nrefs));
		}
	}
	close(fds[1]);
	while (ready < procs && read(fds[0], &d, sizeof(d)) == (ssize_t)sizeof(d))
		ready++;
	if (ready == procs) {
		struct timespec ts = { .tv_sec = hold, .tv_nsec = 0 };
		printf("held=%ld\n", procs * conns);
		fflush(stdout);
		sigtimedwait(&set, NULL, &ts);
	} else {
		fprintf(stderr,
		    "pcbench: %ld of %ld process(es) could not open their connections\n",
		    procs - ready, procs);
		failed = 1;
	}
	for (long p = 0; p < procs; p++)
		if (pids[p] > 0)
			kill(pids[p], SIGKILL);
	while (wait(NULL) > 0)
		;
	free(pids);
	return failed;
}

struct resolve_args {
	uid_t uid;
	int conns;
	long calls;
	const char **refs;
	size_t nrefs;
};

static int resolve_worker(int fd, void *arg)
{
	const struct resolve_args *a = arg;

	return worker(fd, a->uid, a->conns, a->calls, 0, a->refs, a->nrefs);
}

int main(int argc, char **argv)
{
	long procs = 4, conns = 1, calls = 2000, krefs = 1, hold = 0;
	uid_t uid = 0;
	const char **refs = NULL;
	size_t nuser = 0, nrefs;
	int fds[2], i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (i + 1 >= argc)
			goto usage;
		long v = strtol(argv[i + 1], NULL, 10);
		if (strcmp(argv[i], "--uid") == 0)
			uid = (uid_t)v;
		else if (strcmp(argv[i], "--procs") == 0)
			procs = v;
		else if (strcmp(argv[i], "--conns") == 0)
			conns = v;
		else if (strcmp(argv[i], "--calls") == 0)
			calls = v;
		else if (strcmp(argv[i], "--refs") == 0)
			krefs = v;
		else if (strcmp(argv[i], "--hold") == 0)
			hold = v;
		else
			goto usage;
	}
	nuser = (size_t)(argc - i);
	if (nuser == 0 || procs < 1 || conns < 1 || calls < 1 || krefs < 1)
		goto usage;
	nrefs = (size_t)krefs;
	if ((refs = calloc(nrefs, sizeof(*refs))) == NULL)
		return 1;
	for (size_t k = 0; k < nrefs; k++)
		refs[k] = argv[i + (int)(k % nuser)];
	if (hold > 0) {
		if (pipe(fds) != 0)
			return 1;
		return hold_connections(fds, uid, procs, conns, hold, refs, nrefs);
	}

	struct resolve_args a = { uid, (int)conns, calls, refs, nrefs };
	struct load_result res;

	if (load_run("pcbench", procs, calls, resolve_worker, &a, &res) != 0)
		return 1;
	printf("resolves=%zu refs_per_call=%zu procs=%ld conns_per_proc=%ld", res.n, nrefs, procs,
	    conns);
	load_print(&res);
	free(res.lat);
	free(refs);
	return 0;
usage:
	fprintf(stderr,
	    "usage: %s [--uid UID] [--procs P] [--conns C] [--calls N] [--refs K] "
	    "[--hold SECONDS] REF...\n",
	    argv[0]);
	return 2;
}
