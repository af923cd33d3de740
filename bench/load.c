#include "load.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double load_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double rusage_us(int who)
{
	struct rusage ru;

	if (getrusage(who, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int load_run(
    const char *prog, long procs, long calls, load_worker_fn fn, void *arg, struct load_result *out)
{
	size_t total = (size_t)(procs * calls), got = 0;
	double *lat = NULL, t0;
	int fds[2], failed = 0, r = -1;

	out->lat = NULL;
	out->n = 0;
	out->cpu_us = 0;
	if (pipe(fds) != 0 || (lat = malloc((total ? total : 1) * sizeof(*lat))) == NULL) {
		fprintf(stderr, "%s: out of resources\n", prog);
		free(lat);
		return -1;
	}
	t0 = load_now_us();
	for (long p = 0; p < procs; p++) {
		pid_t pid = fork();
		if (pid < 0) {
			failed++;
			break;
		}
		if (pid == 0) {
			close(fds[0]);
			_exit(fn(fds[1], p, arg));
		}
	}
	close(fds[1]);
	while (got < total) {
		ssize_t n = read(
		    fds[0], (char *)lat + got * sizeof(*lat), (total - got) * sizeof(*lat));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n / sizeof(*lat);
	}
	out->seconds = (load_now_us() - t0) / 1e6;
	close(fds[0]);
	for (;;) {
		int st;
		pid_t w = wait(&st);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			break;
		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			failed++;
	}
	/* Every worker is waited for, so RUSAGE_CHILDREN holds all of them. */
	out->cpu_us = rusage_us(RUSAGE_SELF) + rusage_us(RUSAGE_CHILDREN);
	if (failed || got == 0) {
		fprintf(stderr, "%s: %d worker(s) failed\n", prog, failed);
		goto out;
	}
	qsort(lat, got, sizeof(*lat), cmp_double);
	out->lat = lat;
	out->n = got;
	lat = NULL;
	r = 0;
out:
	free(lat);
	return r;
}

void load_print(const struct load_result *r)
{
	size_t n = r->n;

	printf(" seconds=%.2f calls_per_sec=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f "
	       "cpu_us=%.0f\n",
	    r->seconds, (double)n / r->seconds, r->lat[n / 2], r->lat[n * 9 / 10],
	    r->lat[n * 99 / 100], r->lat[n - 1], r->cpu_us);
}
