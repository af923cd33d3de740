/*
 * audit: the audit row every call makes. Mutations and resolves carry their row in the same
 * statement as their work (audit_wrap_sql), so it commits with them; everything else gets a
 * separate insert before its reply leaves. Rows never hold values.
 */
#ifndef PCS_SERVER_AUDIT_H
#define PCS_SERVER_AUDIT_H

#include <stddef.h>

#define AUDIT_NPARAMS 12

struct audit_row {
	const char *instance_id;
	unsigned long long call_id;
	unsigned long uid, gid;
	long pid;
	const char *principal, *method, *company, *secret, *version, *status, *message;
};

/* Room for the numbers audit_params formats. */
struct audit_buf {
	char call_id[24], uid[24], gid[24], pid[24];
};

/* Fills values[AUDIT_NPARAMS] (pointing into row and buf) in audit_insert_sql's order. */
void audit_params(const struct audit_row *row, struct audit_buf *buf,
    const char *values[AUDIT_NPARAMS]);
/* INSERT INTO audit_log ... VALUES ($1..$12). */
extern const char audit_insert_sql[];
/*
 * "WITH r AS (<inner>), a AS (INSERT INTO audit_log ... VALUES ($first..)) SELECT * FROM r".
 * Returns 0, or -1 when buf is too small.
 */
int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param);

#endif
