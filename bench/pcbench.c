/*
 * pcbench: load against a running pcsecretd through libpcsecret.
 *
 *   pcbench [--uid UID] [--procs P] [--conns C] [--calls N] [--refs K] [--hold S] REF...
 *   pcbench --update [--uid UID] [--procs P] [--calls N] [--value-bytes B] COMPANY/NAME...
 *
 * Forks P processes (each switching to UID first when given, so it resolves as that agent);
 * each opens C connections and makes N Resolve calls of K references (the REFs, repeated)
 * round-robin over them, one at a time per connection. Prints throughput, latency
 * percentiles and the CPU time pcbench and its processes used. Needs the socket in
 * PCSECRET_SOCKET.
 *
 * With --update, process p makes N UpdateSecret calls one at a time on one connection, each
 * adding a version to the secret named p-th (round-robin) among the COMPANY/NAMEs, so that
 * with as many names as processes no update waits for another's row lock. The values, B
 * bytes (default 64), come from a buffer generated at start, with the call's number written
 * in front so that every version differs. UID must be an admin's or an operator's.
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
#include "pbwipe.h"
#include "pcsecret.h"
#include "ref.h"
#include "rpc.h"

/* Switches to uid (and its gid, no supplementary groups) unless it is 0. */
static int become(uid_t uid)
{
	if (uid != 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid(uid) != 0)) {
		fprintf(
		    stderr, "pcbench: cannot become uid %u: %s\n", (unsigned)uid, strerror(errno));
		return -1;
	}
	return 0;
}

/* One worker: writes one latency (µs, as double) per call to fd; exits non-zero on error. */
static int worker(
    int fd, uid_t uid, int conns, long calls, long hold, const char **refs, size_t nrefs)
{
	pcs_client **c = calloc((size_t)conns, sizeof(*c));
	pcs_error err;
	int status = 1;

	if (c == NULL)
		return 1;
	if (become(uid) != 0)
		goto out;
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

static int resolve_worker(int fd, long index, void *arg)
{
	const struct resolve_args *a = arg;

	(void)index;
	return worker(fd, a->uid, a->conns, a->calls, 0, a->refs, a->nrefs);
}

struct update_args {
	uid_t uid;
	long calls;
	size_t value_bytes;
	char *const *paths; /* COMPANY/NAME */
	size_t npaths;
};

/* Fills buf with printable bytes that differ from one process to the next. */
static void value_generate(unsigned char *buf, size_t n, long index)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(index + 1) ^ (uint64_t)getpid();

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)alphabet[x % 64];
	}
}

/* One process of --update: its secret gets calls new versions, one call at a time. */
static int update_worker(int fd, long index, void *arg)
{
	Pcsecret__V1__UpdateSecretRequest req = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	const struct update_args *a = arg;
	const char *path = a->paths[(size_t)index % a->npaths];
	const char *slash = strchr(path, '/');
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1], mark[24];
	unsigned char *value = NULL;
	pcs_client *c = NULL;
	pcs_error err;
	int status = 1;

	if (slash == NULL || (size_t)(slash - path) > PCS_NAME_MAX ||
	    strlen(slash + 1) > PCS_NAME_MAX) {
		fprintf(stderr, "pcbench: --update takes COMPANY/NAME, not %s\n", path);
		return 1;
	}
	(void)snprintf(company, sizeof(company), "%.*s", (int)(slash - path), path);
	(void)snprintf(name, sizeof(name), "%s", slash + 1);
	if ((value = malloc(a->value_bytes)) == NULL || become(a->uid) != 0)
		goto out;
	value_generate(value, a->value_bytes, index);
	if (pcs_connect(NULL, &c, &err) != 0) {
		fprintf(
		    stderr, "pcbench: connect: %s: %s\n", pcs_status_name(err.code), err.message);
		goto out;
	}
	req.company = company;
	req.name = name;
	req.idempotency_token = (char *)"";
	req.value.data = value;
	req.value.len = a->value_bytes;
	for (long k = 0; k < a->calls; k++) {
		ProtobufCMessage *rep = NULL;
		double t0, dt;
		int n = snprintf(mark, sizeof(mark), "%ld-", k);
		memcpy(value, mark, (size_t)n < a->value_bytes ? (size_t)n : a->value_bytes);
		t0 = load_now_us();
		if (pcs_rpc_call(c, "UpdateSecret", &req.base, &rep, &err) != 0) {
			fprintf(stderr, "pcbench: update %s: %s: %s\n", path,
			    pcs_status_name(err.code), err.message);
			goto out;
		}
		dt = load_now_us() - t0;
		protobuf_c_message_free_unpacked(rep, &pbwipe_allocator);
		if (write(fd, &dt, sizeof(dt)) != (ssize_t)sizeof(dt))
			goto out;
	}
	status = 0;
out:
	pcs_close(c);
	free(value);
	return status;
}

int main(int argc, char **argv)
{
	long procs = 4, conns = 1, calls = 2000, krefs = 1, hold = 0, value_bytes = 64;
	int update = 0;
	uid_t uid = 0;
	const char **refs = NULL;
	size_t nuser = 0, nrefs;
	int fds[2], i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--update") == 0) {
			update = 1;
			i--; /* a flag: no value follows */
			continue;
		}
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
		else if (strcmp(argv[i], "--value-bytes") == 0)
			value_bytes = v;
		else
			goto usage;
	}
	nuser = (size_t)(argc - i);
	if (nuser == 0 || procs < 1 || conns < 1 || calls < 1 || krefs < 1 || value_bytes < 1 ||
	    value_bytes > 65536 || (update && hold > 0))
		goto usage;
	if (update) {
		struct update_args u = { uid, calls, (size_t)value_bytes, argv + i, nuser };
		struct load_result res;

		if (load_run("pcbench", procs, calls, update_worker, &u, &res) != 0)
			return 1;
		printf("updates=%zu value_bytes=%ld procs=%ld secrets=%zu", res.n, value_bytes,
		    procs, nuser < (size_t)procs ? nuser : (size_t)procs);
		load_print(&res);
		free(res.lat);
		return 0;
	}
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
	    "[--hold SECONDS] REF...\n"
	    "       %s --update [--uid UID] [--procs P] [--calls N] [--value-bytes B] "
	    "COMPANY/NAME...\n",
	    argv[0], argv[0]);
	return 2;
}
