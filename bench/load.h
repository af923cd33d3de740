/*
 * load: what the load generators share. Forked workers each write one latency (microseconds,
 * a double) per call to a pipe; the parent collects them, times the whole run, adds up the CPU
 * time the workers and it used, and prints the figures every bench program prints alike.
 */
#ifndef PCS_BENCH_LOAD_H
#define PCS_BENCH_LOAD_H

#include <stddef.h>

double load_now_us(void);

/* Worker index (0..procs-1): runs its calls, writing each one's latency to fd; its exit status. */
typedef int (*load_worker_fn)(int fd, long index, void *arg);

struct load_result {
	double *lat; /* sorted ascending; free it */
	size_t n;
	double seconds; /* from the first fork to the last latency read */
	double cpu_us;  /* user + system time of the workers and the parent */
};

/*
 * Forks procs workers running fn(fd, index, arg) and collects up to procs * calls latencies.
 * 0, or -1 when a worker failed or nothing came back (said on stderr with prog's name).
 */
int load_run(const char *prog, long procs, long calls, load_worker_fn fn, void *arg,
    struct load_result *out);
/*
 * " seconds=S calls_per_sec=C p50_us=... p90_us=... p99_us=... max_us=... cpu_us=..." and a
 * newline.
 */
void load_print(const struct load_result *r);

#endif
