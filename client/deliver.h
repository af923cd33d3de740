/*
 * deliver: what pcrun gives PROGRAM from its resolved variables (runenv.h): the environment
 * (NAME=value, or NAME_FILE=path with --files, PCSECRET_VERSIONS, the inherited variables)
 * and the values --mask replaces. Used for the first start and after every change
 * (--on-change). Functions report their failures on stderr, naming variables, never values.
 */
#ifndef PCS_CLIENT_DELIVER_H
#define PCS_CLIENT_DELIVER_H

#include <stddef.h>

#include "mask.h"
#include "runenv.h"
#include "tmpfiles.h"

/* The child's environment: "NAME=value" strings in locked memory, wiped when freed. */
struct envlist {
	char **s; /* NULL-terminated once anything was added */
	size_t n;
	size_t cap;
};

/* What is inherited: everything, or with clean_env only the keep names. */
struct deliver_opts {
	int clean_env;
	char *const *keep;
	size_t nkeep;
};

void envlist_free(struct envlist *el);
/*
 * The child's environment: the variables, PCSECRET_VERSIONS, then what is inherited and not
 * set here. With files, each secret is (re)written there (atomically: a temporary file
 * renamed) and NAME_FILE set instead. 0 or -1 (reported).
 */
int deliver_env(const struct runenv *re, const struct deliver_opts *o, struct tmpfiles *files,
    struct envlist *el);
/*
 * The values to mask: every secret value of a (and of b, when not NULL) long enough; a
 * warning naming each of a's that is too short. *out is calloc'd (free it); it borrows the
 * values. 0 or -1 (out of memory).
 */
int deliver_mask_values(
    const struct runenv *a, const struct runenv *b, struct mask_value **out, size_t *n);

#endif
