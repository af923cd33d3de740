/*
 * Privilege attacks, performed with real Unix users (useradd here, userdel after) against the
 * real daemon; each test fails if its attack works again:
 *  - an operator (matched by a group) gives itself, or an admin matched by a group, an agent
 *    identity, to read values or lock the admin out;
 *  - a uid that is an agent and also matches another rule is refused, not given either role;
 *  - a connection keeps the identity it had at Hello: an agent deleted and re-created for
 *    another uid, or a launcher whose rule was removed, must be refused on its next call on
 *    the connection it already has, and the refusal audited;
 *  - rules for root and agents for ids no process can have are refused.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "accounts.h"
#include "it.h"
#include "pcsecret.h"
#include "pgtest.h"

#define VALUE_ONE "HOSTILE-ONE-4b7e19c2"
#define VALUE_TWO "HOSTILE-TWO-a83d50f1"

enum who { ADMIN, OPERATOR, LAUNCHER, AGENT1, AGENT2, SPARE, NWHO };
static struct acct_user accts[NWHO] = {
	{ .name = "pcsr-admin", .groups = "pcsr-admins" },
	{ .name = "pcsr-op", .groups = "pcsr-ops" },
	{ .name = "pcsr-launch", .groups = "" },
	{ .name = "pcsr-agent1", .groups = "" },
	{ .name = "pcsr-agent2", .groups = "" },
	{ .name = "pcsr-spare", .groups = "" },
};
static const char *const own_groups[] = { "pcsr-admins", "pcsr-ops", NULL };
static struct acct_set accounts = { accts, NWHO, own_groups, "pcsr-clients", 0 };
static gid_t admins_gid, ops_gid;
static struct it_daemon D;
static char conninfo[512], prefix[64], bin[128];

#define ROOT NWHO
#define PREFIX_TEMPLATE "/tmp/pcs-hostile-XXXXXX"

/* Runs bin/<prog> args... as user w through runuser (ROOT: as root); returns the status. */
static int run_as(int w, const char *stdin_data, struct it_result *r, const char *prog, ...)
{
	va_list ap;
	int rc;

	va_start(ap, prog);
	rc = acct_runv(w == ROOT ? NULL : accts[w].name, bin, D.socket, NULL, stdin_data, r, prog,
	    ap);
	va_end(ap);
	assert_int_equal(rc, 0);
	return r->status;
}

/* As root; the test fails with pcctl's stderr if the command does. */
static void root_ok(const char *stdin_data, ...)
{
	const char *a[12];
	struct it_result r;
	va_list ap;
	size_t n = 0;

	va_start(ap, stdin_data);
	while (n < 11 && (a[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	a[n] = NULL;
	if (run_as(ROOT, stdin_data, &r, "pcctl", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
	    a[8], a[9], a[10]) != 0)
		fail_msg("pcctl %s %s %s failed: %s", a[0], a[1], a[2] ? a[2] : "", r.err);
	it_result_free(&r);
}

static const char *num(unsigned v)
{
	static char bufs[8][16];
	static int k;

	k = (k + 1) % 8;
	snprintf(bufs[k], sizeof(bufs[k]), "%u", v);
	return bufs[k];
}

static long audit_count(const char *where)
{
	char sql[512], *v;
	long n;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_log WHERE %s", where);
	if ((v = pgtest_query_text(conninfo, sql)) == NULL)
		return -1;
	n = strtol(v, NULL, 10);
	free(v);
	return n;
}

static int setup(void **state)
{
	(void)state;
	if (!it_is_root())
		return 0;
	if (acct_make(&accounts) != 0 || (admins_gid = acct_gid("pcsr-admins")) == (gid_t)-1 ||
	    (ops_gid = acct_gid("pcsr-ops")) == (gid_t)-1) {
		fprintf(stderr, "cannot create test accounts\n");
		return -1;
	}
	if (acct_install(PREFIX_TEMPLATE, prefix, sizeof(prefix), bin, sizeof(bin), 0) != 0)
		return -1;
	if (it_database("it_hostile_roles", conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!it_is_root())
		return 0;
	it_daemon_cleanup(&D);
	acct_uninstall(PREFIX_TEMPLATE, prefix);
	acct_remove(&accounts);
	return 0;
}

/* The world: acme, two secrets, an admin and an operator by group, a launcher by uid. */
static void world(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	root_ok(NULL, "company", "create", "acme", NULL);
	root_ok(NULL, "principal", "add", "--gid", num(admins_gid), "--role", "admin", NULL);
	root_ok(NULL, "principal", "add", "--gid", num(ops_gid), "--role", "operator", "--company",
	    "acme", NULL);
	root_ok(NULL, "principal", "add", "--uid", num(accts[LAUNCHER].uid), "--role", "launcher",
	    "--company", "acme", NULL);
	root_ok(VALUE_ONE, "secret", "create", "acme/one", NULL);
	root_ok(VALUE_TWO, "secret", "create", "acme/two", NULL);
}

/* 1: an operator matched by a group gives itself, or a group-matched admin, an agent identity. */
static void test_operator_cannot_make_itself_or_an_admin_an_agent(void **state)
{
	struct it_result r;

	(void)state;
	if (!it_is_root())
		skip();
	world();
	assert_int_not_equal(run_as(OPERATOR, NULL, &r, "pcctl", "agent", "create", "acme/mine",
	    "--uid", num(accts[OPERATOR].uid), (char *)NULL), 0);
	assert_non_null(strstr(r.err, "own uid"));
	it_result_free(&r);
	/* Had it worked, binding a secret and starting as that agent would hand over the value. */
	run_as(OPERATOR, NULL, &r, "pcctl", "agent", "set-env", "acme/mine", "K", "pcs:acme/one",
	    (char *)NULL);
	it_result_free(&r);
	assert_int_not_equal(run_as(OPERATOR, NULL, &r, "pcrun", "--agent", "acme/mine", "--",
	    "/bin/sh", "-c", "printf '%s' \"$K\"", (char *)NULL), 0);
	assert_null(strstr(r.out, VALUE_ONE));
	it_result_free(&r);

	/* The takeover: the admin (by group) made an agent and so locked out. */
	assert_int_not_equal(run_as(OPERATOR, NULL, &r, "pcctl", "agent", "create",
	    "acme/takeover", "--uid", num(accts[ADMIN].uid), (char *)NULL), 0);
	assert_non_null(strstr(r.err, "belongs to group"));
	it_result_free(&r);
	assert_int_equal(run_as(ADMIN, NULL, &r, "pcctl", "whoami", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "admin"));
	it_result_free(&r);
	assert_true(audit_count("method = 'CreateAgent' AND status <> 'OK'") >= 2);
}

/*
 * 1, structurally: an agent's uid that later matches another rule (here it joins the
 * operators' group) is refused outright, as agent and as operator alike.
 */
static void test_agent_uid_matching_another_rule_is_refused(void **state)
{
	struct it_result r;
	char where[128];

	(void)state;
	if (!it_is_root())
		skip();
	world();
	root_ok(NULL, "agent", "create", "acme/spare", "--uid", num(accts[SPARE].uid), NULL);
	root_ok(NULL, "agent", "set-env", "acme/spare", "K", "pcs:acme/one", NULL);
	assert_int_equal(run_as(SPARE, NULL, &r, "pcrun", "--agent", "acme/spare", "--", "/bin/sh",
	    "-c", "printf '%s' \"$K\"", (char *)NULL), 0);
	assert_string_equal(r.out, VALUE_ONE);
	it_result_free(&r);

	assert_int_equal(acct_sh("usermod -aG pcsr-ops %s", accts[SPARE].name), 0);
	assert_int_not_equal(run_as(SPARE, NULL, &r, "pcrun", "--agent", "acme/spare", "--",
	    "/bin/sh", "-c", "printf '%s' \"$K\"", (char *)NULL), 0);
	assert_null(strstr(r.out, VALUE_ONE));
	assert_non_null(strstr(r.err, "may match no other rule"));
	it_result_free(&r);
	assert_int_not_equal(run_as(SPARE, NULL, &r, "pcctl", "secret", "list", "acme",
	    (char *)NULL), 0);
	it_result_free(&r);
	snprintf(where, sizeof(where), "peer_uid = %u AND status = 'UNAUTHENTICATED'",
	    (unsigned)accts[SPARE].uid);
	assert_true(audit_count(where) >= 2);
	assert_int_equal(acct_sh("gpasswd -d %s pcsr-ops >/dev/null", accts[SPARE].name), 0);
}

/*
 * A process of user w that keeps one SDK connection and makes a call each time the parent
 * says so (a byte on go), reporting the call's status code as one byte on done. kind 'r':
 * Resolve ref as the agent itself; kind 'e': GetAgentEnv of agent (a launcher's call).
 */
struct holder {
	pid_t pid;
	int go, done;
};

static void holder_child(int w, char kind, const char *what, int go, int done)
{
	struct passwd *pw = getpwuid(accts[w].uid);
	pcs_options o = { 0 };
	pcs_client *client = NULL;
	pcs_error err;
	char b;

	o.socket_path = D.socket;
	if (pw == NULL || initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0)
		_exit(120);
	if (pcs_connect(&o, &client, &err) != 0)
		_exit(121);
	while (read(go, &b, 1) == 1) {
		unsigned char code;
		int rc;

		if (kind == 'r') {
			pcs_value *v = NULL;
			const char *refs[1] = { what };

			rc = pcs_resolve(client, NULL, refs, 1, &v, &err);
			if (rc == 0)
				pcs_values_free(v, 1);
		} else {
			pcs_env_entry *env = NULL;
			size_t n = 0;

			rc = pcs_get_env(client, what, &env, &n, &err);
			if (rc == 0)
				pcs_env_free(env, n);
		}
		code = (unsigned char)(rc == 0 ? 0 : (rc < 0 ? -rc : rc));
		if (write(done, &code, 1) != 1)
			break;
	}
	pcs_close(client);
	_exit(0);
}

static void holder_start(struct holder *h, int w, char kind, const char *what)
{
	int go[2], done[2];

	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	h->pid = fork();
	assert_true(h->pid >= 0);
	if (h->pid == 0) {
		close(go[1]);
		close(done[0]);
		holder_child(w, kind, what, go[0], done[1]);
	}
	close(go[0]);
	close(done[1]);
	h->go = go[1];
	h->done = done[0];
}

/* One call on the held connection; its status code (0 = OK). */
static int holder_call(struct holder *h)
{
	unsigned char code;

	assert_int_equal(write(h->go, "x", 1), 1);
	assert_int_equal(read(h->done, &code, 1), 1);
	return code;
}

static void holder_stop(struct holder *h)
{
	int status;

	close(h->go);
	close(h->done);
	assert_int_equal(waitpid(h->pid, &status, 0), h->pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* 3: an agent's open connection after its agent was deleted and re-created for another uid. */
static void test_recreated_agent_refused_on_open_connection(void **state)
{
	struct holder h;
	char where[160];
	int code;

	(void)state;
	if (!it_is_root())
		skip();
	world();
	root_ok(NULL, "agent", "create", "acme/bot", "--uid", num(accts[AGENT1].uid), NULL);
	root_ok(NULL, "agent", "set-env", "acme/bot", "ONE", "pcs:acme/one", NULL);
	holder_start(&h, AGENT1, 'r', "pcs:acme/two");
	/* Not granted yet: the connection is up and its calls are decided. */
	assert_int_equal(holder_call(&h), PCS_PERMISSION_DENIED);

	root_ok(NULL, "agent", "delete", "acme/bot", NULL);
	root_ok(NULL, "agent", "create", "acme/bot", "--uid", num(accts[AGENT2].uid), NULL);
	root_ok(NULL, "agent", "set-env", "acme/bot", "TWO", "pcs:acme/two", NULL);
	/* The old uid's open connection must not act as the new acme/bot. */
	code = holder_call(&h);
	assert_true(code == PCS_UNAUTHENTICATED || code == PCS_PERMISSION_DENIED);
	holder_stop(&h);
	snprintf(where, sizeof(where), "peer_uid = %u AND method = 'Resolve' AND status IN "
	    "('UNAUTHENTICATED', 'PERMISSION_DENIED')", (unsigned)accts[AGENT1].uid);
	assert_int_equal(audit_count(where), 2);
	snprintf(where, sizeof(where), "peer_uid = %u AND method = 'Resolve' AND status = 'OK'",
	    (unsigned)accts[AGENT1].uid);
	assert_int_equal(audit_count(where), 0);
}

/* 3: a launcher whose rule was removed keeps resolving on the connection it has. */
static void test_removed_launcher_refused_on_open_connection(void **state)
{
	struct holder h;
	char where[160], *id, sql[160];
	int code;

	(void)state;
	if (!it_is_root())
		skip();
	world();
	root_ok(NULL, "agent", "create", "acme/worker", "--uid", "61234", NULL);
	root_ok(NULL, "agent", "set-env", "acme/worker", "ONE", "pcs:acme/one", NULL);
	holder_start(&h, LAUNCHER, 'e', "acme/worker");
	assert_int_equal(holder_call(&h), 0);

	snprintf(sql, sizeof(sql), "SELECT id FROM principals WHERE match = 'uid' AND unix_id = %u",
	    (unsigned)accts[LAUNCHER].uid);
	id = pgtest_query_text(conninfo, sql);
	assert_non_null(id);
	root_ok(NULL, "principal", "remove", id, NULL);
	free(id);
	code = holder_call(&h);
	assert_true(code == PCS_UNAUTHENTICATED || code == PCS_PERMISSION_DENIED);
	holder_stop(&h);
	snprintf(where, sizeof(where), "peer_uid = %u AND method = 'GetAgentEnv' AND status IN "
	    "('UNAUTHENTICATED', 'PERMISSION_DENIED')", (unsigned)accts[LAUNCHER].uid);
	assert_int_equal(audit_count(where), 1);
	root_ok(NULL, "principal", "add", "--uid", num(accts[LAUNCHER].uid), "--role", "launcher",
	    "--company", "acme", NULL);
}

/* 4: rules for root, agents for ids no process can have, agents for the daemon's uid. */
static void test_impossible_ids_refused(void **state)
{
	struct it_result r;

	(void)state;
	if (!it_is_root())
		skip();
	world();
	assert_int_not_equal(run_as(ROOT, NULL, &r, "pcctl", "principal", "add", "--uid", "0",
	    "--role", "launcher", "--company", "acme", (char *)NULL), 0);
	assert_non_null(strstr(r.err, "always an admin"));
	it_result_free(&r);
	assert_int_not_equal(run_as(ROOT, NULL, &r, "pcctl", "agent", "create", "acme/minus-one",
	    "--uid", "4294967295", (char *)NULL), 0);
	assert_non_null(strstr(r.err, "no process"));
	it_result_free(&r);
	assert_int_not_equal(run_as(ROOT, NULL, &r, "pcctl", "agent", "create", "acme/root",
	    "--uid", "0", (char *)NULL), 0);
	it_result_free(&r);
	assert_int_equal(audit_count("method = 'CreateAgent' AND status = 'INVALID_ARGUMENT'"), 2);
	assert_null(pgtest_query_text(conninfo,
	    "SELECT name FROM agents WHERE name IN ('minus-one', 'root')"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_operator_cannot_make_itself_or_an_admin_an_agent),
		cmocka_unit_test(test_agent_uid_matching_another_rule_is_refused),
		cmocka_unit_test(test_recreated_agent_refused_on_open_connection),
		cmocka_unit_test(test_removed_launcher_refused_on_open_connection),
		cmocka_unit_test(test_impossible_ids_refused),
	};

	/* Every test here needs root: ctest reports the binary skipped (SKIP_RETURN_CODE). */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (real Unix accounts)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
