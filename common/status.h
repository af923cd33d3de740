/* Status codes and the error struct shared by the daemon, the SDK and the CLIs. */
#ifndef PCS_COMMON_STATUS_H
#define PCS_COMMON_STATUS_H

#include "pcsecret.h"

/*
 * On a function whose result must be looked at (a status, or a fact the caller acts on):
 * ignoring it fails the build.
 */
#define PCS_WUR __attribute__((warn_unused_result))

/* Fills err (when not NULL) and returns -code, so callers can `return pcs_fail(...)`. */
int pcs_fail(pcs_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void pcs_error_clear(pcs_error *err);
/* Parses "NOT_FOUND" back to its code; -1 when unknown. */
int pcs_status_from_name(const char *name);

#endif
