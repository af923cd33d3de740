/*
 * child: pcrun's supervision of PROGRAM when it stays the parent (--files, --mask). Starts
 * the child, forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it, with --mask
 * pipes its stdout and stderr through one masker each (mask.h) to pcrun's own, and returns
 * its exit status the way a shell reports it (128 + signal when a signal ended it).
 *
 * Everything happens in one poll loop over a set of descriptors: the signal self-pipe and the
 * two output pipes. A later source of events (a watch on the references, to restart or signal
 * the child when a value changes) is one more descriptor in that set: see child_run.
 */
#ifndef PCS_CLIENT_CHILD_H
#define PCS_CLIENT_CHILD_H

#include <stddef.h>

#include "mask.h"
#include "status.h"

struct child_spec {
	char *const *argv; /* PROGRAM and its arguments; argv[0] is looked up in $PATH */
	char *const *envp; /* its whole environment */
	int mask;          /* pipe stdout and stderr through maskers of values */
	const struct mask_value *values; /* sorted (mask_values_sort); borrowed */
	size_t nvalues;
};

/*
 * Runs the child to its end. *status: its exit status, 128 + the signal that ended it, or
 * 127 when PROGRAM could not be executed (the child says why on stderr). Returns 0, or a
 * negative status when the child could not be started or supervised (err says why).
 * Installs its signal handlers for the call and restores the previous ones.
 */
int child_run(const struct child_spec *spec, int *status, pcs_error *err)
    __attribute__((warn_unused_result));

#endif
