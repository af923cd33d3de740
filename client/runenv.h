/*
 * runenv: the variables pcrun gives PROGRAM, from every source (its environment's references,
 * --env-file, --env-json, --agent), resolved, and the environment built from them. Functions
 * whose comment says so report their failures on stderr themselves, naming each failing
 * variable (never a value).
 */
#ifndef PCS_CLIENT_RUNENV_H
#define PCS_CLIENT_RUNENV_H

#include <stddef.h>
#include <stdint.h>

#include "pcsecret.h"

struct runenv_var {
	char *name;
	char *ref;            /* to resolve; NULL for a literal or an agent binding */
	unsigned char *value; /* pcs_value_buf_alloc'd or taken from the SDK; NUL-terminated */
	size_t len;
	uint32_t version; /* the version served; 0 for a literal */
	int secret;       /* a value from the daemon (resolved or a binding), not a literal */
	int overridden;   /* a later source set the same name */
};

struct runenv {
	struct runenv_var *v;
	size_t n;
	size_t cap;
};

void runenv_free(struct runenv *re);
/* Adds name with a reference (copied) or a literal value (copied into locked memory). */
int runenv_add(struct runenv *re, const char *name, const char *ref, const char *value, size_t len,
    pcs_error *err) __attribute__((warn_unused_result));
/*
 * A copy of src's variables as the sources gave them (references, literals), for resolving
 * again (pcrun --on-change). src must hold no agent binding yet.
 */
int runenv_clone(const struct runenv *src, struct runenv *dst, pcs_error *err)
    __attribute__((warn_unused_result));
/* Every inherited variable whose value starts with "pcs:". */
int runenv_add_environment(struct runenv *re, pcs_error *err) __attribute__((warn_unused_result));
/*
 * The agent's configured environment (GetAgentEnv). Reports its own failures, except
 * UNAVAILABLE, which is left to the caller (it may wait and retry): then *retry is 1 and err
 * holds it.
 */
int runenv_add_agent(struct runenv *re, pcs_client *client, const char *agent, int *retry,
    pcs_error *err) __attribute__((warn_unused_result));
/* How many references are still to resolve. */
size_t runenv_pending(const struct runenv *re);
/* Parses every reference still to resolve; reports every malformed one. */
int runenv_check_refs(const struct runenv *re) __attribute__((warn_unused_result));
/*
 * Resolves every reference still to resolve, in one pcs_resolve. When it fails with anything
 * but UNAVAILABLE, each reference is resolved alone to name every failing variable and why;
 * all are reported. UNAVAILABLE is left to the caller (*retry = 1; err holds it).
 */
int runenv_resolve(struct runenv *re, pcs_client *client, const char *agent, int *retry,
    pcs_error *err) __attribute__((warn_unused_result));
/* Whether a variable is given to the child (not overridden, has a value). */
int runenv_delivered(const struct runenv_var *v);
/* "pcrun: " + message with control characters replaced, for strings from outside. */
void runenv_report(const char *what, const pcs_error *err);

#endif
