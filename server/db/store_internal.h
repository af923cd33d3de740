/*
 * What the store's own files share: store.c (the pool, the job queue, the results) and
 * store_sync.c (the blocking start-up API, the conninfo helpers). Every other module uses
 * store.h.
 */
#ifndef PCS_SERVER_STORE_INTERNAL_H
#define PCS_SERVER_STORE_INTERNAL_H

#include "store.h"

struct pg_result; /* libpq's PGresult (see pgconn.h) */

struct store_result {
	struct pg_result *pg; /* NULL for a synthesized error */
	int status;
	char message[256];
};

/*
 * Takes ownership of pg (which may be NULL: no result at all) and maps its status to r's;
 * conn_bad: the connection it came from is broken.
 */
void store_result_set(struct store_result *r, struct pg_result *pg, int conn_bad);
/* A statement's shape, checked before it is queued or run. */
int store_query_check(const struct store_query *q, pcs_error *err) PCS_WUR;

#endif
