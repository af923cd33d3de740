/*
 * Secret values for pcctl: from --from-file (exact bytes), else stdin when it is not a
 * terminal (one trailing "\n" or "\r\n" stripped), else a no-echo prompt on /dev/tty.
 * Never from argv.
 */
#ifndef PCS_CLIENT_VALUE_INPUT_H
#define PCS_CLIENT_VALUE_INPUT_H

#include <stddef.h>

#include "status.h"

#define VALUE_MAX (64u * 1024u)

/*
 * Reads a value of 1..VALUE_MAX bytes into sodium_malloc'd memory (*out, freed with
 * value_free). prompt is shown on the terminal. Fails with -PCS_INVALID_ARGUMENT.
 */
int value_read(const char *from_file, const char *prompt, unsigned char **out, size_t *len,
    pcs_error *err) __attribute__((warn_unused_result));
void value_free(unsigned char *value);

#endif
