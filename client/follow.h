/*
 * follow: pcrun --on-change (docs/cli.md, "Following changes"). Watches what the child was
 * given (its references, and with --agent the agent's environment), and on a change that
 * matters resolves everything again, compares it with what the child has, and restarts the
 * child, rewrites its --files and signals it, or stops it and ends pcrun. Runs inside
 * child_run's loop through its hooks (child.h). Reports on stderr, naming variables and
 * versions, never values.
 */
#ifndef PCS_CLIENT_FOLLOW_H
#define PCS_CLIENT_FOLLOW_H

#include "child.h"
#include "deliver.h"
#include "onchange.h"
#include "runenv.h"
#include "tmpfiles.h"

struct follow {
	/* Set by the caller before follow_start; borrowed. */
	enum onchange_mode mode;
	int sig;      /* ONCHANGE_SIGNAL's */
	int grace_ms; /* SIGTERM to SIGKILL */
	const char *agent;
	const pcs_options *opts;
	const struct deliver_opts *dopts;
	struct tmpfiles *files; /* NULL without --files */
	int mask;

	/* Owned; the caller fills tmpl, cur, el and client, follow_free frees them. */
	struct runenv tmpl; /* the sources' variables, unresolved */
	struct runenv cur;  /* what the running child was given */
	struct runenv prev; /* what the child before had: still masked */
	struct envlist el;  /* cur's environment */
	struct mask_value *mv;
	size_t nmv;
	pcs_client *client;

	/* Internal. */
	pcs_watch *watch;
	long check_due;   /* when to resolve again (monotonic ms); 0: not planned */
	long check_first; /* the first event of the burst being waited out */
	long rewatch_due; /* when to start watching again; 0: not planned */
	long backoff_ms;
	int watch_lost; /* a "watching again" is owed on stderr */
};

/*
 * Starts the watch (before the child starts). 0; -1 when the daemon refuses it (reported:
 * --on-change cannot work, nothing should run). UNAVAILABLE is not a failure: watching is
 * tried again in the background.
 */
int follow_start(struct follow *f) __attribute__((warn_unused_result));
/* The hooks for child_spec. */
void follow_hooks(struct follow *f, struct child_hooks *h);
void follow_free(struct follow *f);

#endif
