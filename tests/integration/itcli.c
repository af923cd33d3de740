/* itcli: helpers the integration tests share (itcli.h). */
#include "itcli.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "pgtest.h"

int it_pcctl(uid_t uid, const char *socket, const char *stdin_data, struct it_result *r, ...)
{
	const char *argv[32];
	va_list ap;
	size_t n = 0;

	argv[n++] = it_path("client/pcctl");
	va_start(ap, r);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(it_run(uid, socket, NULL, stdin_data, argv, r), 0);
	return r->status;
}

long long it_sql_count(const char *conninfo, const char *sql)
{
	char *t = pgtest_query_text(conninfo, sql);
	long long n;

	assert_non_null(t);
	n = atoll(t);
	free(t);
	return n;
}
