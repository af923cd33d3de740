/*
 * itcli: the one-line helpers the integration tests share: pcctl as a uid on a socket, and a
 * count from a SQL query. Like itconn.h, these assert (cmocka): call them from the test process.
 */
#ifndef PCS_TESTS_ITCLI_H
#define PCS_TESTS_ITCLI_H

#include <sys/types.h>

#include "it.h"

/*
 * Runs client/pcctl as uid (0 = as we are) on socket with the arguments that follow r (at
 * most 30, NULL-terminated), stdin_data (may be NULL) on standard input; returns its exit
 * status, its output in r (it_result_free it). Fails the test when it cannot be run.
 */
int it_pcctl(uid_t uid, const char *socket, const char *stdin_data, struct it_result *r, ...);

/* The number the query (one row, one column) returns on conninfo's database; fails else. */
long long it_sql_count(const char *conninfo, const char *sql);

#endif
