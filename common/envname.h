/*
 * Environment variable names a secret binding may not set.
 *
 * A binding lets whoever configures an agent (an operator) choose a variable's value, and
 * pcrun sets it in a process that runs as the launcher or the agent. For most names that is
 * data; for the names listed in envname.c it decides which code the process loads or runs,
 * which configuration an interpreter reads, which certificates it trusts or where it writes
 * what it should keep: an operator could take over the launcher's uid (LD_PRELOAD pointing at
 * their own library) or read back the secrets they may not read. Such names are refused by
 * the daemon (SetAgentEnv) and by pcrun for every source. The list is in docs/cli.md.
 */
#ifndef PCS_COMMON_ENVNAME_H
#define PCS_COMMON_ENVNAME_H

#include "status.h"

/*
 * 0 when name is a valid variable name ([A-Za-z_][A-Za-z0-9_]*, at most PCS_ENV_NAME_MAX)
 * that a binding may set. Otherwise -PCS_INVALID_ARGUMENT, and err says why: naming the
 * variable and the reason when the name is valid but refused, and never quoting an invalid
 * name (it may hold anything, even a value).
 */
int envname_check(const char *name, pcs_error *err) __attribute__((warn_unused_result));

/* Why name is refused ("the dynamic loader loads it as code", ...), or NULL when it is not. */
const char *envname_refused(const char *name);

#endif
