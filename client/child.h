/*
 * child: pcrun's supervision of PROGRAM when it stays the parent (--files, --mask,
 * --on-change). Starts the child, forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
 * SIGUSR2 to it, with --mask pipes its stdout and stderr through one masker each (mask.h) to
 * pcrun's own, and returns its exit status the way a shell reports it (128 + signal when a
 * signal ended it).
 *
 * Everything happens in one poll loop over a set of descriptors: the signal self-pipe, the
 * two output pipes and, with hooks (--on-change), one descriptor of the caller's (the watch)
 * with a timeout of its choosing. After each wake-up the hook's step runs; it may signal,
 * stop and start the child again, or change the values masked, through the functions below.
 */
#ifndef PCS_CLIENT_CHILD_H
#define PCS_CLIENT_CHILD_H

#include <stddef.h>

#include "mask.h"
#include "status.h"

struct child; /* the supervised child; only valid inside a step */

struct child_hooks {
	void *ctx;
	/* The descriptor to poll for POLLIN too (-1: none) and the longest sleep (-1: no limit). */
	void (*wait_on)(void *ctx, int *fd, int *timeout_ms);
	/*
	 * After every wake-up while the child runs; readable: whether the descriptor was. 0 to
	 * go on; 1 to end the run with *status (the child has been stopped); negative to fail.
	 */
	int (*step)(void *ctx, struct child *c, int readable, int *status);
};

struct child_spec {
	char *const *argv; /* PROGRAM and its arguments; argv[0] is looked up in $PATH */
	char *const *envp; /* its whole environment */
	int mask;          /* pipe stdout and stderr through maskers of values */
	const struct mask_value *values; /* sorted (mask_values_sort); borrowed */
	size_t nvalues;
	const struct child_hooks *hooks; /* NULL: supervise only */
};

/*
 * Runs the child to its end. *status: its exit status, 128 + the signal that ended it, or
 * 127 when PROGRAM could not be executed (the child says why on stderr), or what a hook's
 * step ended the run with. Returns 0, or a negative status when the child could not be
 * started or supervised (err says why). Installs its signal handlers for the call and
 * restores the previous ones.
 */
int child_run(const struct child_spec *spec, int *status, pcs_error *err)
    __attribute__((warn_unused_result));

/* Sends sig to the running child. */
void child_signal(struct child *c, int sig);
/*
 * Ends the child: SIGTERM, up to grace_ms for it to exit (its output still read and masked,
 * signals to pcrun still forwarded), then SIGKILL. Returns 1 when it had already exited by
 * itself before (then *status is its status, as child_run reports it), 0 when stopped here.
 */
int child_stop(struct child *c, int grace_ms, int *status);
/* Starts the child again with another environment (after child_stop). */
int child_start(struct child *c, char *const *envp, pcs_error *err)
    __attribute__((warn_unused_result));
/* The values masked from now on (sorted; borrowed until the next call or the run's end). */
int child_set_values(struct child *c, const struct mask_value *values, size_t n, pcs_error *err)
    __attribute__((warn_unused_result));

#endif
