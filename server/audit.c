#include "audit.h"

#include <stdio.h>

#define AUDIT_COLUMNS "instance_id, call_id, peer_uid, peer_gid, peer_pid, principal, method, " \
	"company, secret, version, status, message"

const char audit_insert_sql[] = "INSERT INTO audit_log (" AUDIT_COLUMNS ") VALUES "
	"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

void audit_params(const struct audit_row *row, struct audit_buf *buf,
    const char *values[AUDIT_NPARAMS])
{
	snprintf(buf->call_id, sizeof(buf->call_id), "%llu", row->call_id);
	snprintf(buf->uid, sizeof(buf->uid), "%lu", row->uid);
	snprintf(buf->gid, sizeof(buf->gid), "%lu", row->gid);
	snprintf(buf->pid, sizeof(buf->pid), "%ld", row->pid);
	values[0] = row->instance_id;
	values[1] = buf->call_id;
	values[2] = buf->uid;
	values[3] = buf->gid;
	values[4] = buf->pid;
	values[5] = row->principal;
	values[6] = row->method;
	values[7] = row->company;
	values[8] = row->secret;
	values[9] = row->version;
	values[10] = row->status;
	values[11] = row->message;
}

int audit_wrap_sql(char *buf, size_t size, const char *inner, int first_param)
{
	int n = snprintf(buf, size, "WITH r AS (%s), a AS (INSERT INTO audit_log (" AUDIT_COLUMNS
	    ") VALUES ($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)) SELECT * FROM r",
	    inner, first_param, first_param + 1, first_param + 2, first_param + 3, first_param + 4,
	    first_param + 5, first_param + 6, first_param + 7, first_param + 8, first_param + 9,
	    first_param + 10, first_param + 11);
	return (n < 0 || (size_t)n >= size) ? -1 : 0;
}
