/*
 * Searching, following, exporting and archiving the audit log (docs/audit.md):
 *  - rows made through two daemons; pcctl audit list with each filter alone and combined
 *    returns exactly the rows SQL finds (compared id for id, newest first), --secret finds a
 *    secret's refs under both ids it had (deleted, then created again) and its lifecycle rows;
 *  - paging with --limit 3 and the cursor sees every row once, in order;
 *  - an operator sees only its company's rows and is refused another company's secret;
 *  - pcctl audit tail -f shows a row made through the other daemon, and SIGINT ends it with 0;
 *  - pcctl audit export between two times writes exactly that window as JSON lines;
 *  - scripts/audit-archive.sh as the owner removes the old rows and their links whole,
 *    keeps a summary per chain whose last hash is where each chain now starts; pcctl audit
 *    verify passes after it and says what was archived, names a remaining row altered, and
 *    reports the first remaining link deleted as missing; the daemon's role may not archive;
 *    rows are written after it as before.
 *
 * Agents' and the operator's connections are opened as their uids. Needs root.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "it.h"
#include "itcli.h"
#include "itconn.h"
#include "pcsecret.pb-c.h"
#include "wire.h"

#define DB "it_audit_search"
#define AGENT_UID IT_AGENT_UID
#define OPERATOR_UID IT_OPERATOR_UID

enum { A, B };

static struct it_daemon D[2];
static char conninfo[512];
static struct itconn_env E[2];
static struct itconn adm[2], agent[2];

static void sql(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void sql(char *buf, size_t size, const char *fmt, ...)
{
	char q[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	itconn_sql_text(&E[A], buf, size, "%s", q);
}

static void admin(int d, const char *method, const ProtobufCMessage *q)
{
	itconn_admin_ok(&adm[d], method, q);
}

static void create_secret(int d, const char *company, const char *name)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)company;
	q.name = (char *)name;
	q.value.data = (uint8_t *)"audit-search-value";
	q.value.len = strlen("audit-search-value");
	admin(d, "CreateSecret", &q.base);
}

static void bind(const char *env, const char *name)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)name;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	admin(A, "SetAgentEnv", &q.base);
}

/* A Resolve of company/name through c; its status. */
static int resolve(struct itconn *c, const char *company, const char *name)
{
	Pcsecret__V1__ResolveRequest q = PCSECRET__V1__RESOLVE_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;
	Pcsecret__V1__SecretRef *refs[1] = { &ref };

	ref.company = (char *)company;
	ref.name = (char *)name;
	char msg[512];
	int st;

	q.refs = refs;
	q.n_refs = 1;
	st = itconn_call(c, "Resolve", &q.base, msg, sizeof(msg), NULL, NULL);
	if (st != PCSECRET__V1__STATUS_CODE__OK)
		fprintf(stderr, "resolve %s/%s: %s\n", company, name, msg);
	return st;
}

static void delete_secret(const char *name)
{
	Pcsecret__V1__DeleteSecretRequest q = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.force = 1;
	admin(B, "DeleteSecret", &q.base);
}

static int setup(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;
	Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
	Pcsecret__V1__AddPrincipalRequest ap = PCSECRET__V1__ADD_PRINCIPAL_REQUEST__INIT;
	Pcsecret__V1__CreateSecretRequest dup = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	/* A purges ended recovery windows often: acme/k's name is soon free again. */
	static const char *const args[] = { "--purge-interval-ms", "200", NULL };
	const struct it_daemon_opts opts = { args, 0, NULL };
	char released[16] = "0";

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (!it_is_root())
		return -1;
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start_opts(&D[A], conninfo, NULL, &opts) != 0 ||
	    it_daemon_start(&D[B], conninfo, D[A].keyfile) != 0)
		return -1;
	for (int d = A; d <= B; d++) {
		E[d].socket = D[d].socket;
		E[d].conninfo = conninfo;
		itconn_open(&E[d], &adm[d], 0, 1000000 * (uint64_t)(d + 1));
	}
	cc.name = (char *)"acme";
	admin(A, "CreateCompany", &cc.base);
	cc.name = (char *)"beta";
	admin(B, "CreateCompany", &cc.base);
	create_secret(A, "acme", "k");
	create_secret(B, "acme", "j");
	create_secret(B, "beta", "x");
	ca.company = (char *)"acme";
	ca.name = (char *)"bot";
	ca.uid = AGENT_UID;
	admin(A, "CreateAgent", &ca.base);
	bind("K", "k");
	ap.match = (char *)"uid";
	ap.unix_id = OPERATOR_UID;
	ap.role = (char *)"operator";
	ap.company = (char *)"beta";
	admin(A, "AddPrincipal", &ap.base);
	for (int d = A; d <= B; d++)
		itconn_open(&E[d], &agent[d], AGENT_UID, 2000000 * (uint64_t)(d + 1));
	/* Served, refused and failed calls through both daemons. */
	assert_int_equal(resolve(&agent[A], "acme", "k"), PCSECRET__V1__STATUS_CODE__OK);
	assert_int_equal(resolve(&agent[B], "acme", "k"), PCSECRET__V1__STATUS_CODE__OK);
	assert_int_equal(resolve(&agent[B], "acme", "k"), PCSECRET__V1__STATUS_CODE__OK);
	assert_int_equal(
	    resolve(&agent[A], "acme", "j"), PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED);
	/* An admin may not read values: denied. Creating a name that exists: an error. */
	assert_int_equal(
	    resolve(&adm[B], "beta", "x"), PCSECRET__V1__STATUS_CODE__PERMISSION_DENIED);
	dup.company = (char *)"acme";
	dup.name = (char *)"j";
	dup.value.data = (uint8_t *)"audit-search-value";
	dup.value.len = strlen("audit-search-value");
	assert_int_equal(itconn_call(&adm[A], "CreateSecret", &dup.base, NULL, 0, NULL, NULL),
	    PCSECRET__V1__STATUS_CODE__ALREADY_EXISTS);
	/* acme/k deleted, then a new acme/k bound and served: --secret finds both ids. */
	delete_secret("k");
	sql(released, sizeof(released),
	    "WITH u AS (UPDATE secrets SET delete_after = now() WHERE name = 'k' RETURNING id) "
	    "SELECT count(*) FROM u");
	assert_string_equal(released, "1");
	released[0] = '0';
	for (int i = 0; i < 100 && strcmp(released, "1") != 0; i++) {
		usleep(100 * 1000);
		sql(released, sizeof(released),
		    "SELECT count(*) FROM secrets WHERE name = 'k' AND released_at IS NOT NULL");
	}
	assert_string_equal(released, "1");
	create_secret(A, "acme", "k");
	bind("K", "k");
	assert_int_equal(resolve(&agent[B], "acme", "k"), PCSECRET__V1__STATUS_CODE__OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int d = A; d <= B; d++) {
		wire_close(&agent[d].w);
		wire_close(&adm[d].w);
	}
	it_daemon_cleanup(&D[B]);
	it_daemon_cleanup(&D[A]);
	return 0;
}

/* The ids of a JSON array of entries (pcctl --json audit list), joined by ','. */
static void ids_of_array(const char *out, char *buf, size_t size)
{
	json_error_t jerr;
	json_t *a = json_loads(out, 0, &jerr), *e;
	size_t i, o = 0;

	assert_non_null(a);
	assert_true(json_is_array(a));
	buf[0] = '\0';
	json_array_foreach(a, i, e)
	{
		json_int_t id = json_integer_value(json_object_get(e, "id"));
		/* The keys docs/audit.md promises. */
		assert_non_null(json_object_get(e, "time"));
		assert_non_null(json_object_get(e, "instance"));
		assert_non_null(json_object_get(e, "outcome"));
		assert_non_null(json_object_get(e, "agent"));
		assert_true(json_is_array(json_object_get(e, "refs")));
		o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)id);
		assert_true(o < size);
	}
	json_decref(a);
}

/* The newest row's id now: rows after it are the test's own listings. */
static void newest(char *cursor, size_t size)
{
	sql(cursor, size, "SELECT max(id) + 1 FROM audit_log");
}

/* pcctl audit list (as root, through A) with the filters, up to cursor; its ids. */
#define LIST(buf, cursor, ...) list_ids(buf, sizeof(buf), cursor, __VA_ARGS__, (const char *)NULL)

static void list_ids(char *buf, size_t size, const char *cursor, ...)
{
	const char *argv[32];
	struct it_result r;
	va_list ap;
	size_t n = 0;

	argv[n++] = it_path("client/pcctl");
	argv[n++] = "--json";
	argv[n++] = "audit";
	argv[n++] = "list";
	argv[n++] = "--limit";
	argv[n++] = "1000";
	argv[n++] = "--cursor";
	argv[n++] = cursor;
	va_start(ap, cursor);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(it_run(0, D[A].socket, NULL, NULL, argv, &r), 0);
	if (r.status != 0)
		fprintf(stderr, "pcctl: %s\n", r.err);
	assert_int_equal(r.status, 0);
	ids_of_array(r.out, buf, size);
	it_result_free(&r);
}

/* The ids SQL finds for the condition on audit_log a, below cursor, newest first. */
static void sql_ids(char *buf, size_t size, const char *cursor, const char *cond)
{
	sql(buf, size,
	    "SELECT coalesce(string_agg(a.id::text, ',' ORDER BY a.id DESC), '') FROM audit_log a "
	    "WHERE a.id < %s AND (%s)",
	    cursor, cond);
}

#define K_IDS \
	"(SELECT array_agg(s.id) FROM secrets s JOIN companies c ON c.id = s.company_id " \
	"WHERE c.name = 'acme' AND s.name = 'k')"

static void test_filters_alone_and_combined(void **state)
{
	static char got[65536], want[65536];
	char cursor[32], n[32], since[64], until[64];

	(void)state;
	newest(cursor, sizeof(cursor));
	/* Rows from both daemons exist. */
	sql(n, sizeof(n), "SELECT count(DISTINCT instance_id) FROM audit_log");
	assert_string_equal(n, "2");
	sql(n, sizeof(n), "SELECT count(*) FROM secrets WHERE name = 'k'");
	assert_string_equal(n, "2");

	LIST(got, cursor, "--company", "acme");
	sql_ids(want, sizeof(want), cursor, "a.company = 'acme'");
	assert_string_equal(got, want);

	LIST(got, cursor, "--secret", "acme/k");
	sql_ids(want, sizeof(want), cursor,
	    "a.ref_ids && " K_IDS " OR (a.company = 'acme' AND a.secret = 'k')");
	assert_string_equal(got, want);
	/* Served under both ids: 3 times, then once after it was created again. */
	LIST(got, cursor, "--secret", "acme/k", "--method", "Resolve", "--outcome", "ok");
	sql_ids(want, sizeof(want), cursor,
	    "a.method = 'Resolve' AND a.status = 'OK' AND a.ref_ids && " K_IDS);
	assert_string_equal(got, want);
	sql(n, sizeof(n),
	    "SELECT count(*) FROM audit_log a WHERE a.method = 'Resolve' AND a.status = 'OK' AND "
	    "a.ref_ids && " K_IDS);
	assert_string_equal(n, "4");
	/* Its lifecycle rows: created twice, deleted once. */
	LIST(got, cursor, "--secret", "acme/k", "--method", "DeleteSecret");
	assert_true(strlen(got) > 0 && strchr(got, ',') == NULL);

	LIST(got, cursor, "--agent", "acme/bot");
	sql_ids(want, sizeof(want), cursor,
	    "a.principal = 'agent acme/bot' OR (a.company = 'acme' AND a.secret = 'agent:bot')");
	assert_string_equal(got, want);

	LIST(got, cursor, "--principal", "admin");
	sql_ids(want, sizeof(want), cursor, "a.principal = 'admin'");
	assert_string_equal(got, want);

	LIST(got, cursor, "--method", "Resolve");
	sql_ids(want, sizeof(want), cursor, "a.method = 'Resolve'");
	assert_string_equal(got, want);

	LIST(got, cursor, "--outcome", "ok");
	sql_ids(want, sizeof(want), cursor, "a.status = 'OK'");
	assert_string_equal(got, want);
	LIST(got, cursor, "--outcome", "denied");
	sql_ids(want, sizeof(want), cursor, "a.status IN ('PERMISSION_DENIED', 'UNAUTHENTICATED')");
	assert_string_equal(got, want);
	assert_true(strlen(got) > 0);
	LIST(got, cursor, "--outcome", "error");
	sql_ids(want, sizeof(want), cursor,
	    "a.status NOT IN ('OK', 'PERMISSION_DENIED', 'UNAUTHENTICATED')");
	assert_string_equal(got, want);
	assert_true(strlen(got) > 0);

	/* A window between two rows' times. */
	sql(since, sizeof(since), "SELECT pcs_ts(at) FROM audit_log ORDER BY id OFFSET 5 LIMIT 1");
	sql(until, sizeof(until), "SELECT pcs_ts(at) FROM audit_log ORDER BY id OFFSET 20 LIMIT 1");
	LIST(got, cursor, "--since", since);
	sql_ids(want, sizeof(want), cursor,
	    "a.at >= (SELECT at FROM audit_log ORDER BY id OFFSET 5 LIMIT 1)");
	assert_string_equal(got, want);
	LIST(got, cursor, "--until", until);
	sql_ids(want, sizeof(want), cursor,
	    "a.at < (SELECT at FROM audit_log ORDER BY id OFFSET 20 LIMIT 1)");
	assert_string_equal(got, want);

	LIST(got, cursor, "--no-hello");
	sql_ids(want, sizeof(want), cursor, "a.method <> 'Hello'");
	assert_string_equal(got, want);
	sql(n, sizeof(n), "SELECT count(*) FROM audit_log WHERE method = 'Hello' AND id < %s",
	    cursor);
	assert_true(atoi(n) >= 4);

	/* Combined. */
	LIST(got, cursor, "--company", "acme", "--agent", "acme/bot", "--method", "Resolve",
	    "--outcome", "ok", "--no-hello", "--since", since);
	sql_ids(want, sizeof(want), cursor,
	    "a.company = 'acme' AND a.principal = 'agent acme/bot' AND a.method = 'Resolve' AND "
	    "a.status = 'OK' AND a.at >= (SELECT at FROM audit_log ORDER BY id OFFSET 5 LIMIT 1)");
	assert_string_equal(got, want);
	LIST(got, cursor, "--secret", "acme/k", "--principal", "agent acme/bot", "--outcome",
	    "denied");
	assert_string_equal(got, "");
}

/* Pages of 3 through every non-Hello row: each row once, newest first. */
static void test_paging(void **state)
{
	static char want[65536], got[65536];
	char cursor[32], page_cursor[64];
	size_t o = 0, pages = 0;
	int more = 1;

	(void)state;
	newest(cursor, sizeof(cursor));
	sql_ids(want, sizeof(want), cursor, "a.method <> 'Hello'");
	snprintf(page_cursor, sizeof(page_cursor), "%s", cursor);
	got[0] = '\0';
	while (more) {
		struct it_result r;
		char ids[256];
		assert_int_equal(
		    it_pcctl(0, D[B].socket, NULL, &r, "--json", "audit", "list", "--no-hello",
		        "--limit", "3", "--cursor", page_cursor, (char *)NULL),
		    0);
		ids_of_array(r.out, ids, sizeof(ids));
		/* The next cursor is on stderr while more rows match. */
		more = strstr(r.err, "--cursor ") != NULL;
		if (more)
			snprintf(page_cursor, sizeof(page_cursor), "%s",
			    strstr(r.err, "--cursor ") + strlen("--cursor "));
		page_cursor[strcspn(page_cursor, "\n")] = '\0';
		if (ids[0] != '\0')
			o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%s", o ? "," : "", ids);
		it_result_free(&r);
		pages++;
		assert_true(pages < 1000);
	}
	assert_string_equal(got, want);
	assert_true(pages > 3);
}

/* The operator of beta sees beta's rows only, and may not ask about acme's. */
static void test_operator_sees_its_companies(void **state)
{
	static char want[65536];
	char cursor[32];
	struct it_result r;
	json_t *a, *e;
	size_t i;
	static char got[65536];
	size_t o = 0;

	(void)state;
	newest(cursor, sizeof(cursor));
	assert_int_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "--json", "audit", "list",
	                     "--limit", "1000", "--cursor", cursor, (char *)NULL),
	    0);
	a = json_loads(r.out, 0, NULL);
	assert_non_null(a);
	json_array_foreach(a, i, e)
	{
		assert_string_equal(json_string_value(json_object_get(e, "company")), "beta");
		o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%lld", i ? "," : "",
		    (long long)json_integer_value(json_object_get(e, "id")));
	}
	json_decref(a);
	it_result_free(&r);
	sql_ids(want, sizeof(want), cursor, "a.company = 'beta'");
	assert_string_equal(got, want);
	assert_true(o > 0);
	assert_int_not_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "audit", "list",
	                         "--secret", "acme/k", (char *)NULL),
	    0);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
	assert_int_not_equal(it_pcctl(OPERATOR_UID, D[A].socket, NULL, &r, "audit", "list",
	                         "--company", "acme", (char *)NULL),
	    0);
	it_result_free(&r);
}

/* Reads what fd has within ms into buf (appending at *len) until needle shows. */
static int read_until(int fd, char *buf, size_t size, size_t *len, const char *needle, int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		long el;
		buf[*len] = '\0';
		if (strstr(buf, needle) != NULL)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &t);
		el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= ms || *len + 1 >= size)
			return -1;
		if (poll(&p, 1, (int)(ms - el)) > 0) {
			ssize_t n = read(fd, buf + *len, size - *len - 1);
			if (n <= 0)
				return -1;
			*len += (size_t)n;
		}
	}
}

static void test_tail_follows_the_other_daemon(void **state)
{
	static char out[65536];
	char needle[128], id[32];
	int fds[2], st;
	size_t len = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		setenv("PCSECRET_SOCKET", D[A].socket, 1);
		execl(it_path("client/pcctl"), "pcctl", "--json", "audit", "tail", "-f", "--lines",
		    "0", "--method", "Resolve", "--secret", "acme/k", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	/* Let it start following, then a row through B. */
	usleep(1500 * 1000);
	assert_int_equal(resolve(&agent[B], "acme", "k"), PCSECRET__V1__STATUS_CODE__OK);
	sql(id, sizeof(id),
	    "SELECT max(id) FROM audit_log WHERE method = 'Resolve' AND "
	    "instance_id = '%s'",
	    E[B].instance);
	/* Compact JSON, one entry a line. */
	snprintf(needle, sizeof(needle), "\"id\":%s,", id);
	if (read_until(fds[0], out, sizeof(out), &len, needle, 8000) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		fail_msg("tail -f did not show row %s; it printed: %s", id, out);
	}
	assert_null(strstr(out, "\"method\":\"Hello\""));
	assert_int_equal(kill(pid, SIGINT), 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(fds[0]);
}

static void test_export_window(void **state)
{
	static char want[65536], got[65536];
	char since[64], until[64];
	struct it_result r;
	size_t o = 0, lines = 0;
	char *line, *save = NULL;

	(void)state;
	sql(since, sizeof(since), "SELECT pcs_ts(at) FROM audit_log ORDER BY id OFFSET 3 LIMIT 1");
	sql(until, sizeof(until), "SELECT pcs_ts(at) FROM audit_log ORDER BY id OFFSET 30 LIMIT 1");
	assert_int_equal(it_pcctl(0, D[B].socket, NULL, &r, "audit", "export", "--since", since,
	                     "--until", until, (char *)NULL),
	    0);
	for (line = strtok_r(r.out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		json_error_t jerr;
		json_t *e = json_loads(line, 0, &jerr);
		assert_non_null(e);
		assert_non_null(json_object_get(e, "refs"));
		assert_non_null(json_object_get(e, "peer_pid"));
		o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%lld", o ? "," : "",
		    (long long)json_integer_value(json_object_get(e, "id")));
		json_decref(e);
		lines++;
	}
	/* No terminal: no progress line. */
	assert_string_equal(r.err, "");
	it_result_free(&r);
	sql(want, sizeof(want),
	    "SELECT string_agg(id::text, ',' ORDER BY id) FROM audit_log WHERE at >= '%s' AND "
	    "at < '%s'",
	    since, until);
	assert_string_equal(got, want);
	assert_true(lines >= 20);
}

static void test_archive_as_owner(void **state)
{
	char cut[64], n[64], before[32], removed[32], sum[64], out[256], cmd[1024], first[32];
	char maxid[32], chain[128], id[32], want[256];
	struct it_result r;
	const char *argv[8];

	(void)state;
	/* The chains are intact before, so whatever verify says after is the archive's doing. */
	assert_int_equal(it_pcctl(0, D[A].socket, NULL, &r, "audit", "verify", NULL), 0);
	it_result_free(&r);
	sql(cut, sizeof(cut), "SELECT pcs_ts(at) FROM audit_log ORDER BY id OFFSET 25 LIMIT 1");
	sql(maxid, sizeof(maxid), "SELECT max(id) FROM audit_log");
	sql(before, sizeof(before), "SELECT count(*) FROM audit_log WHERE id <= %s", maxid);
	sql(first, sizeof(first), "SELECT min(id) FROM audit_log");
	/* What goes: whole links of each chain's prefix, so a statement whose rows straddle the
	 * cut keeps its older rows; never fewer than the rows of the first 20 ids. */
	sql(removed, sizeof(removed), "SELECT count(*) FROM pcs_audit_archivable('%s')", cut);
	/* The daemon's role may not archive. */
	argv[0] = "/bin/sh";
	argv[1] = "-c";
	snprintf(cmd, sizeof(cmd),
	    "psql -X -q '%s' -c \"SELECT * FROM public.pcs_audit_archive('%s', 1)\"",
	    D[A].service_conninfo, cut);
	argv[2] = cmd;
	argv[3] = NULL;
	assert_int_equal(it_run(0, D[A].socket, NULL, NULL, argv, &r), 0);
	assert_int_not_equal(r.status, 0);
	assert_non_null(strstr(r.err, "permission denied"));
	it_result_free(&r);
	sql(n, sizeof(n), "SELECT count(*) FROM audit_log");
	assert_true(atoi(n) >= atoi(before));

	/* The owner archives. */
	snprintf(out, sizeof(out), "%s/archive.jsonl", D[A].dir);
	assert_non_null(getenv("PCS_SOURCE_DIR"));
	snprintf(cmd, sizeof(cmd), "%s/scripts/audit-archive.sh", getenv("PCS_SOURCE_DIR"));
	argv[0] = cmd;
	argv[1] = "--before";
	argv[2] = cut;
	argv[3] = "--out";
	argv[4] = out;
	argv[5] = "--database";
	argv[6] = conninfo;
	argv[7] = NULL;
	assert_int_equal(it_run(0, D[A].socket, NULL, NULL, argv, &r), 0);
	if (r.status != 0)
		fprintf(stderr, "audit-archive.sh: %s\n", r.err);
	assert_int_equal(r.status, 0);
	it_result_free(&r);
	sql(n, sizeof(n), "SELECT count(*) FROM pcs_audit_archivable('%s')", cut);
	assert_string_equal(n, "0");
	sql(n, sizeof(n), "SELECT count(*) FROM audit_log WHERE id < %ld", atol(first) + 20);
	assert_string_equal(n, "0");
	sql(n, sizeof(n), "SELECT %ld - count(*) FROM audit_log WHERE id <= %s", atol(before),
	    maxid);
	assert_string_equal(n, removed);
	sql(sum, sizeof(sum), "SELECT sum(nrows) FROM audit_archive_summaries");
	assert_string_equal(sum, removed);
	assert_true(atoi(removed) >= 20);
	/* The links of what was archived went with their rows, never part of one. */
	sql(n, sizeof(n),
	    "SELECT count(*) FROM audit_chain_links l JOIN audit_archive_summaries s ON "
	    "s.instance_id = l.instance_id AND s.lane = l.lane AND l.seq <= s.last_seq");
	assert_string_equal(n, "0");
	sql(n, sizeof(n),
	    "SELECT count(*) FROM audit_chain_links l WHERE EXISTS (SELECT 1 FROM unnest(l.ids) "
	    "u(id) LEFT JOIN audit_log a ON a.id = u.id WHERE a.id IS NULL)");
	assert_string_equal(n, "0");
	/* The file holds the rows removed, one JSON object a line. */
	{
		FILE *f = fopen(out, "r");
		char line[8192];
		long lines = 0;
		assert_non_null(f);
		while (fgets(line, sizeof(line), f) != NULL) {
			json_t *e = json_loads(line, 0, NULL);
			assert_non_null(e);
			assert_non_null(json_object_get(e, "chain_hash"));
			json_decref(e);
			lines++;
		}
		fclose(f);
		assert_int_equal(lines, atol(removed));
	}
	/* Each chain that still has elements starts where its summary's last element ends. */
	sql(n, sizeof(n),
	    "SELECT count(*) FROM audit_archive_summaries s WHERE s.lane IS NOT NULL AND "
	    "EXISTS (SELECT 1 FROM audit_chain_links l WHERE l.instance_id = s.instance_id AND "
	    "l.lane = s.lane)");
	assert_true(atoi(n) >= 1);
	sql(n, sizeof(n),
	    "SELECT count(*) FROM audit_archive_summaries s JOIN LATERAL (SELECT l.seq, "
	    "l.prev_hash FROM audit_chain_links l WHERE l.instance_id = s.instance_id AND "
	    "l.lane = s.lane ORDER BY l.seq LIMIT 1) f ON true "
	    "WHERE f.seq <> s.last_seq + 1 OR f.prev_hash <> s.last_hash");
	assert_string_equal(n, "0");
	/* verify passes, and says what was archived rather than missing. */
	assert_int_equal(it_pcctl(0, D[A].socket, NULL, &r, "audit", "verify", NULL), 0);
	assert_non_null(strstr(r.out, " archived, "));
	assert_null(strstr(r.out, "missing"));
	it_result_free(&r);
	/* Summaries are the owner's too. */
	snprintf(cmd, sizeof(cmd), "psql -X -q '%s' -c \"DELETE FROM audit_archive_summaries\"",
	    D[A].service_conninfo);
	argv[0] = "/bin/sh";
	argv[1] = "-c";
	argv[2] = cmd;
	argv[3] = NULL;
	assert_int_equal(it_run(0, D[A].socket, NULL, NULL, argv, &r), 0);
	assert_int_not_equal(r.status, 0);
	it_result_free(&r);
	/* Rows keep being written, by both daemons, and the chains still verify. */
	sql(before, sizeof(before), "SELECT max(id) FROM audit_log");
	assert_int_equal(resolve(&agent[A], "acme", "k"), PCSECRET__V1__STATUS_CODE__OK);
	assert_int_equal(resolve(&agent[B], "acme", "k"), PCSECRET__V1__STATUS_CODE__OK);
	sql(n, sizeof(n),
	    "SELECT count(*) FROM audit_log WHERE id > %s AND method = 'Resolve' AND status = 'OK'",
	    before);
	assert_string_equal(n, "2");
	assert_int_equal(it_pcctl(0, D[A].socket, NULL, &r, "audit", "verify", NULL), 0);
	it_result_free(&r);

	/* A remaining row altered: named, archive or not. */
	sql(chain, sizeof(chain),
	    "SELECT s.instance_id || ' ' || s.lane || ' ' || (s.last_seq + 1) FROM "
	    "audit_archive_summaries s JOIN audit_chain_links l ON l.instance_id = s.instance_id "
	    "AND l.lane = s.lane AND l.seq = s.last_seq + 1 WHERE EXISTS (SELECT 1 FROM "
	    "audit_chain_links m WHERE m.instance_id = s.instance_id AND m.lane = s.lane AND "
	    "m.seq = s.last_seq + 2) ORDER BY s.id LIMIT 1");
	assert_true(strlen(chain) > 36);
	chain[36] = '\0';
	sql(id, sizeof(id),
	    "SELECT l.ids[1] FROM audit_chain_links l WHERE l.instance_id = '%s' AND "
	    "l.lane || ' ' || l.seq = '%s'",
	    chain, chain + 37);
	sql(n, sizeof(n),
	    "UPDATE audit_log SET principal = principal || 'x' WHERE id = %s RETURNING id", id);
	assert_string_equal(n, id);
	assert_int_not_equal(
	    it_pcctl(0, D[A].socket, NULL, &r, "audit", "verify", "--instance", chain, NULL), 0);
	snprintf(
	    want, sizeof(want), "row id %s (seq %s, row 1 of ", id, strchr(chain + 37, ' ') + 1);
	if (strstr(r.out, want) == NULL || strstr(r.out, "was altered") == NULL)
		fail_msg("verify said \"%s\", not \"%s ... was altered\"", r.out, want);
	it_result_free(&r);
	sql(n, sizeof(n),
	    "UPDATE audit_log SET principal = left(principal, -1) WHERE id = %s "
	    "RETURNING id",
	    id);
	assert_int_equal(
	    it_pcctl(0, D[A].socket, NULL, &r, "audit", "verify", "--instance", chain, NULL), 0);
	it_result_free(&r);

	/* The first remaining link and its rows deleted without a summary: missing, since the
	 * summary pins where the chain must start. */
	sql(n, sizeof(n),
	    "WITH l AS (DELETE FROM audit_chain_links l WHERE l.instance_id = '%s' AND "
	    "l.lane || ' ' || l.seq = '%s' RETURNING l.ids) "
	    ", d AS (DELETE FROM audit_log a USING l WHERE a.id = ANY (l.ids) RETURNING a.id) "
	    "SELECT count(*) FROM d",
	    chain, chain + 37);
	assert_true(atoi(n) >= 1);
	assert_int_not_equal(
	    it_pcctl(0, D[A].socket, NULL, &r, "audit", "verify", "--instance", chain, NULL), 0);
	snprintf(want, sizeof(want), "seq %s is missing: ", strchr(chain + 37, ' ') + 1);
	if (strstr(r.out, want) == NULL || strstr(r.out, "follows the archived seq") == NULL)
		fail_msg("verify said \"%s\", not \"%s... follows the archived seq\"", r.out, want);
	it_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filters_alone_and_combined),
		cmocka_unit_test(test_paging),
		cmocka_unit_test(test_operator_sees_its_companies),
		cmocka_unit_test(test_tail_follows_the_other_daemon),
		cmocka_unit_test(test_export_window),
		cmocka_unit_test(test_archive_as_owner),
	};

	if (!it_is_root()) {
		fprintf(stderr, "test_audit_search: needs root (skipped)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
