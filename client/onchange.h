/*
 * onchange: the decisions of pcrun --on-change without I/O (docs/cli.md, "Following changes"):
 * what the option says, which watch events can change what the child was given, and whether
 * a new resolution differs from the one the child has.
 */
#ifndef PCS_CLIENT_ONCHANGE_H
#define PCS_CLIENT_ONCHANGE_H

#include <stddef.h>

#include "runenv.h"

enum onchange_mode {
	ONCHANGE_NONE = 0, /* no --on-change: exec, or supervise without watching */
	ONCHANGE_RESTART,  /* stop the child, start it again with the new values */
	ONCHANGE_SIGNAL,   /* rewrite the --files, then send the child a signal */
	ONCHANGE_EXIT      /* stop the child and exit ONCHANGE_EXIT_STATUS */
};

/* pcrun's status after --on-change exit stopped the child: EX_TEMPFAIL of sysexits.h. */
#define ONCHANGE_EXIT_STATUS 75

/*
 * Parses "restart", "exit" or "signal:NAME" (NAME: HUP, INT, QUIT, TERM, USR1, USR2, ALRM,
 * WINCH, CONT, with or without "SIG", any case). 0, or -1 when arg is none of these.
 */
int onchange_parse(const char *arg, enum onchange_mode *mode, int *sig);

/*
 * Whether an event of this kind (enum pcs_watch_kind) can change what the child was given:
 * not a staged version (latest stays where it was) nor a version enabled again (the child
 * never got a disabled one). Every other kind, unknown ones included, is checked by
 * resolving again.
 */
int onchange_event_matters(int kind);

/*
 * Whether the variables delivered in b (runenv_delivered) differ from those in a: a name
 * only in one, or another version or value. *name (when not NULL) gets the first such name
 * and *va, *vb its versions (0 when absent).
 */
int onchange_differs(
    const struct runenv *a, const struct runenv *b, const char **name, unsigned *va, unsigned *vb);

#endif
