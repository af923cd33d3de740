/* Master key files: 64 hex characters (32 bytes), mode 0600 or stricter, owned by root or us. */
#ifndef PCS_COMMON_KEYFILE_H
#define PCS_COMMON_KEYFILE_H

#include <stdint.h>
#include "status.h"

#define KEYFILE_KEY_LEN 32

/* Creates path with a fresh random key, mode 0600; refuses to overwrite (-PCS_ALREADY_EXISTS). */
int keyfile_create(const char *path, pcs_error *err);
/*
 * Reads the key into key (which the caller allocated with sodium_malloc). Refuses, with a
 * message saying why, a missing file, a file that is not regular, a mode allowing group or
 * other any access, an owner other than root or the calling process's effective uid, or
 * content that is not exactly 64 hex characters (one trailing newline allowed). Returns
 * -PCS_FAILED_PRECONDITION or -PCS_INVALID_ARGUMENT. Wipes its buffers.
 */
int keyfile_read(const char *path, uint8_t key[KEYFILE_KEY_LEN], pcs_error *err);

#endif
