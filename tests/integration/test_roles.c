/*
 * Who may do what, end to end: real Unix users (useradd here, userdel after), one per role,
 * running pcctl, pcrun and the SDK example through runuser against the real daemon. Operators
 * are matched through a group rule, so supplementary groups are exercised. Every call's
 * outcome is checked, and then that the audit log holds a row with that outcome.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "accounts.h"
#include "it.h"
#include "pgtest.h"

#define VALUE_SHARED "ROLES-SHARED-9d1c3b7a"
#define VALUE_HIDDEN "ROLES-HIDDEN-5e8f2a61"

enum who { ADMIN, OPERATOR, LAUNCHER, AGENT, NOBODY, NWHO };
static struct acct_user accts[NWHO] = {
	{ .name = "pcsm-admin", .groups = "" },
	{ .name = "pcsm-op", .groups = "pcsm-operators" },
	{ .name = "pcsm-launch", .groups = "" },
	{ .name = "pcsm-agent", .groups = "" },
	{ .name = "pcsm-nobody", .groups = "" },
};
static const char *const own_groups[] = { "pcsm-operators", NULL };
static struct acct_set accounts = { accts, NWHO, own_groups, "pcsm-clients", 0 };
static gid_t operators_gid;
static struct it_daemon D;
static char conninfo[512], prefix[64], bin[128];

#define PREFIX_TEMPLATE "/tmp/pcs-roles-XXXXXX"

/* Runs bin/<prog> args... as user w (via runuser); returns the exit status. */
static int run_as(enum who w, const char *stdin_data, const char *const *env, struct it_result *r,
    const char *prog, ...)
{
	va_list ap;
	int rc;

	va_start(ap, prog);
	rc = acct_runv(
	    w == ADMIN + NWHO ? NULL : accts[w].name, bin, D.socket, env, stdin_data, r, prog, ap);
	va_end(ap);
	assert_int_equal(rc, 0);
	return r->status;
}

#define ROOT (ADMIN + NWHO)

static int setup(void **state)
{
	struct it_result r;
	char gid[16];

	(void)state;
	if (!it_is_root())
		return 0;
	if (acct_make(&accounts) != 0 ||
	    (operators_gid = acct_gid("pcsm-operators")) == (gid_t)-1) {
		fprintf(stderr, "cannot create test accounts\n");
		return -1;
	}
	if (acct_install(PREFIX_TEMPLATE, prefix, sizeof(prefix), bin, sizeof(bin), 1) != 0)
		return -1;
	if (it_database("it_roles", conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	/* The world the matrix runs in, made by root (a bootstrap admin). */
	snprintf(gid, sizeof(gid), "%u", (unsigned)operators_gid);
	char uid_admin[16], uid_launch[16], uid_agent[16];
	snprintf(uid_admin, sizeof(uid_admin), "%u", (unsigned)accts[ADMIN].uid);
	snprintf(uid_launch, sizeof(uid_launch), "%u", (unsigned)accts[LAUNCHER].uid);
	snprintf(uid_agent, sizeof(uid_agent), "%u", (unsigned)accts[AGENT].uid);
	const char *setup_cmds[][9] = {
		{ "company", "create", "acme" },
		{ "company", "create", "beta" },
		{ "principal", "add", "--uid", uid_admin, "--role", "admin" },
		{ "principal", "add", "--gid", gid, "--role", "operator", "--company", "acme" },
		{ "principal", "add", "--uid", uid_launch, "--role", "launcher", "--company",
		    "acme" },
		{ "agent", "create", "acme/bot", "--uid", uid_agent },
		{ "agent", "create", "beta/bot2", "--uid", "40099" },
	};
	for (size_t i = 0; i < sizeof(setup_cmds) / sizeof(setup_cmds[0]); i++) {
		const char **a = setup_cmds[i];
		if (run_as(ROOT, NULL, NULL, &r, "pcctl", a[0], a[1], a[2], a[3], a[4], a[5], a[6],
		        a[7], a[8]) != 0) {
			fprintf(stderr, "setup %s %s failed: %s\n", a[0], a[1], r.err);
			return -1;
		}
		it_result_free(&r);
	}
	if (run_as(ROOT, VALUE_SHARED, NULL, &r, "pcctl", "secret", "create", "acme/shared",
	        (char *)NULL) != 0 ||
	    (it_result_free(&r),
	        run_as(ROOT, VALUE_HIDDEN, NULL, &r, "pcctl", "secret", "create", "acme/hidden",
	            (char *)NULL)) != 0 ||
	    (it_result_free(&r),
	        run_as(ROOT, "b", NULL, &r, "pcctl", "secret", "create", "beta/other",
	            (char *)NULL)) != 0 ||
	    (it_result_free(&r),
	        run_as(ROOT, NULL, NULL, &r, "pcctl", "agent", "set-env", "acme/bot", "SHARED",
	            "pcs:acme/shared", (char *)NULL)) != 0)
		return -1;
	it_result_free(&r);
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

/* Expected status names per caller: admin, operator, launcher, agent, nobody. */
struct op {
	const char *method;        /* the rpc the audit row must name */
	const char *denied_method; /* the rpc that records a refusal, when another one */
	const char *expect[NWHO];
	const char *prog;
	const char *stdin_data;
	const char *env; /* one NAME=value for pcrun, or NULL */
	const char *args[10];
};

#define OK "OK"
#define NO "PERMISSION_DENIED"
#define UN "UNAUTHENTICATED"
#define IA "INVALID_ARGUMENT"
#define FP "FAILED_PRECONDITION"

static const struct op ops[] = {
	{ "Hello", NULL, { OK, OK, OK, OK, UN }, "pcctl", NULL, NULL, { "whoami" } },
	{ "CreateCompany", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "company", "create", "new-%s" } },
	{ "ListCompanies", NULL, { OK, OK, OK, NO, UN }, "pcctl", NULL, NULL,
	    { "company", "list" } },
	{ "CreateSecret", NULL, { OK, OK, NO, NO, UN }, "pcctl", "v", NULL,
	    { "secret", "create", "acme/s-%s" } },
	{ "UpdateSecret", NULL, { OK, OK, NO, NO, UN }, "pcctl", "v2", NULL,
	    { "secret", "update", "acme/s-%s" } },
	{ "ListSecrets", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "list", "acme" } },
	{ "ListSecrets", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "list", "beta" } },
	{ "DescribeSecret", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "show", "acme/shared" } },
	{ "CreateAgent", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "agent", "create", "acme/a-%s", "--uid", "6%u" } },
	{ "ListAgents", NULL, { OK, OK, OK, NO, UN }, "pcctl", NULL, NULL,
	    { "agent", "list", "acme" } },
	{ "DescribeAgent", NULL, { OK, OK, OK, NO, UN }, "pcctl", NULL, NULL,
	    { "agent", "show", "acme/bot" } },
	{ "DescribeAgent", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "agent", "show", "beta/bot2" } },
	{ "SetAgentEnv", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "agent", "set-env", "acme/a-%s", "K", "pcs:acme/shared" } },
	{ "UnsetAgentEnv", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "agent", "unset-env", "acme/a-%s", "K" } },
	{ "DeleteAgent", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "agent", "delete", "acme/a-%s" } },
	{ "DeleteSecret", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "delete", "acme/s-%s" } },
	/* Soft delete: the row above deleted acme/s-<role>, restorable; then its values go. */
	{ "RestoreSecret", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "restore", "acme/s-%s" } },
	{ "PurgeSecret", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "purge", "acme/s-%s", "--yes" } },
	/* The version lifecycle: secret writes. acme/shared has one version, latest. */
	{ "PromoteSecret", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "promote", "acme/shared", "1" } },
	{ "RollbackSecret", NULL, { FP, FP, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "rollback", "acme/shared", "1" } },
	{ "DisableSecretVersion", NULL, { FP, FP, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "secret", "disable-version", "acme/shared", "1" } },
	{ "EnableSecretVersion", NULL, { FP, FP, NO, NO, UN }, "pcctl", NULL, NULL,
	  { "secret", "enable-version", "acme/shared", "1" } },
	/* Retention and destroying one version: secret writes too. Version 1 is latest. */
	{ "SetSecretRetention", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	  { "secret", "set-retention", "acme/shared", "0" } },
	{ "DestroySecretVersion", NULL, { FP, FP, NO, NO, UN }, "pcctl", NULL, NULL,
	  { "secret", "destroy-version", "acme/shared", "1", "--yes" } },
	/*
	 * Watch (pcctl secret watch --count 0: the stream's first reply, then exit): operators
	 * their company's secrets; a launcher only through an agent of its company; an agent only
	 * what it is bound to, or its own environment.
	 */
	{ "Watch", NULL, { OK, OK, NO, OK, UN }, "pcctl", NULL, NULL,
	  { "secret", "watch", "acme/shared", "--count", "0" } },
	{ "Watch", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	  { "secret", "watch", "acme/hidden", "--count", "0" } },
	{ "Watch", NULL, { OK, OK, OK, OK, UN }, "pcctl", NULL, NULL,
	  { "secret", "watch", "--agent", "acme/bot", "--count", "0" } },
	{ "Watch", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL,
	  { "secret", "watch", "--agent", "beta/bot2", "--count", "0" } },
	{ "ListPrincipals", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL, { "principal", "list" } },
	{ "AddPrincipal", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "principal", "add", "--uid", "5%u", "--role", "launcher", "--company", "beta" } },
	{ "RemovePrincipal", NULL, { "NOT_FOUND", NO, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "principal", "remove", "999999" } },
	{ "ListAudit", NULL, { OK, OK, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "audit", "list", "--company", "acme", "--limit", "3" } },
	{ "ListAudit", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL,
	    { "audit", "list", "--company", "beta" } },
	{ "VerifyAudit", NULL, { OK, NO, NO, NO, UN }, "pcctl", NULL, NULL, { "audit", "verify" } },
	/* Values: GetAgentEnv through pcrun --agent, Resolve through references. */
	{ "GetAgentEnv", NULL, { NO, NO, OK, OK, UN }, "pcrun", NULL, NULL,
	    { "--agent", "acme/bot", "--", "/bin/sh", "-c", "printf '%%s' \"$SHARED\"" } },
	{ "GetAgentEnv", NULL, { NO, NO, NO, NO, UN }, "pcrun", NULL, NULL,
	    { "--agent", "beta/bot2", "--", "/bin/true" } },
	{ "Resolve", "GetAgentEnv", { NO, NO, OK, OK, UN }, "pcrun", NULL, "X=pcs:acme/shared",
	    { "--agent", "acme/bot", "--", "/bin/sh", "-c", "printf '%%s' \"$X\"" } },
	{ "Resolve", "GetAgentEnv", { NO, NO, NO, NO, UN }, "pcrun", NULL, "X=pcs:acme/hidden",
	    { "--agent", "acme/bot", "--", "/bin/true" } },
	{ "Resolve", NULL, { NO, NO, IA, OK, UN }, "pcrun", NULL, "X=pcs:acme/shared",
	    { "--", "/bin/sh", "-c", "printf '%%s' \"$X\"" } },
	{ "Resolve", NULL, { NO, NO, IA, NO, UN }, "pcrun", NULL, "X=pcs:acme/hidden",
	    { "--", "/bin/true" } },
	{ "Resolve", NULL, { NO, NO, IA, OK, UN }, "pcsecret-resolve", NULL, NULL,
	    { "pcs:acme/shared" } },
};

/* Copies template t into out, with %s as the user's short name, %u its uid, %% as %. */
static void fill(const char *t, enum who w, char *out, size_t size)
{
	size_t o = 0;

	for (; *t != '\0' && o + 1 < size; t++) {
		if (t[0] == '%' && (t[1] == 's' || t[1] == 'u' || t[1] == '%')) {
			char tmp[32];
			if (t[1] == 's')
				snprintf(tmp, sizeof(tmp), "%s", accts[w].name + 5);
			else if (t[1] == 'u')
				snprintf(tmp, sizeof(tmp), "%u", (unsigned)accts[w].uid);
			else
				snprintf(tmp, sizeof(tmp), "%%");
			o += (size_t)snprintf(out + o, size - o, "%s", tmp);
			t++;
			continue;
		}
		out[o++] = *t;
	}
	out[o < size ? o : size - 1] = '\0';
}

static void expand(const struct op *op, enum who w, char buf[10][96], const char **argv)
{
	size_t n = 0;

	for (; n < 10 && op->args[n] != NULL; n++) {
		fill(op->args[n], w, buf[n], sizeof(buf[n]));
		argv[n] = buf[n];
	}
	argv[n] = NULL;
}

static void test_matrix(void **state)
{
	char sql[512], buf[10][96];
	const char *a[11];

	(void)state;
	if (!it_is_root())
		skip();
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const struct op *op = &ops[i];
		for (int w = 0; w < NWHO; w++) {
			const char *env[2] = { op->env, NULL };
			struct it_result r;
			const char *want = op->expect[w];
			int ok = strcmp(want, OK) == 0;
			char *rows;

			expand(op, (enum who)w, buf, a);
			run_as((enum who)w, op->stdin_data, op->env ? env : NULL, &r, op->prog,
			    a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
			    (char *)NULL);
			if (ok != (r.status == 0) || (!ok && strstr(r.err, want) == NULL))
				fail_msg("%s %s %s as %s: exit %d, want %s; stderr: %s", op->prog,
				    a[0], a[1] ? a[1] : "", accts[w].name, r.status, want, r.err);
			/* Values only ever reach the resolving agent or launcher. */
			if (w == ADMIN || w == OPERATOR || w == NOBODY)
				assert_null(strstr(r.out, VALUE_SHARED));
			assert_null(strstr(r.out, VALUE_HIDDEN));
			assert_null(strstr(r.err, VALUE_HIDDEN));
			for (size_t k = 0; ok && strcmp(op->prog, "pcrun") == 0 && a[k] != NULL;
			     k++)
				if (strstr(a[k], "printf") != NULL)
					assert_string_equal(r.out, VALUE_SHARED);
			it_result_free(&r);

			/* Unknown peers are refused at Hello; some refusals come from an earlier rpc. */
			const char *method = strcmp(want, UN) == 0 ? "Hello" :
			    (!ok && op->denied_method && strcmp(want, IA) != 0) ?
			                                             op->denied_method :
			                                             op->method;
			snprintf(sql, sizeof(sql),
			    "SELECT count(*) FROM audit_log WHERE peer_uid = %u "
			    "AND method = '%s' AND status = '%s'",
			    (unsigned)accts[w].uid, method, want);
			rows = pgtest_query_text(conninfo, sql);
			if (rows == NULL || atoi(rows) < 1)
				fail_msg("no audit row for %s as %s with status %s", method,
				    accts[w].name, want);
			free(rows);
		}
	}
}

static void test_whoami_names_the_rule(void **state)
{
	struct it_result r;
	char rule[64];

	(void)state;
	if (!it_is_root())
		skip();
	assert_int_equal(run_as(OPERATOR, NULL, NULL, &r, "pcctl", "whoami", (char *)NULL), 0);
	snprintf(rule, sizeof(rule), "gid %u", (unsigned)operators_gid);
	assert_non_null(strstr(r.out, "operator"));
	assert_non_null(strstr(r.out, rule));
	it_result_free(&r);
	assert_int_equal(
	    run_as(AGENT, NULL, NULL, &r, "pcctl", "--json", "whoami", (char *)NULL), 0);
	assert_non_null(strstr(r.out, "\"acme/bot\""));
	it_result_free(&r);
}

static void test_agent_lifecycle_rules(void **state)
{
	struct it_result r;

	(void)state;
	if (!it_is_root())
		skip();
	/* A secret still bound is not deleted; the error names who uses it. */
	assert_int_equal(run_as(OPERATOR, NULL, NULL, &r, "pcctl", "secret", "delete",
	                     "acme/shared", (char *)NULL),
	    1);
	assert_non_null(strstr(r.err, "FAILED_PRECONDITION"));
	assert_non_null(strstr(r.err, "acme/bot:SHARED"));
	it_result_free(&r);
	/* No inheritance: a new agent resolves nothing until configured. */
	assert_int_equal(
	    run_as(ROOT, NULL, NULL, &r, "pcctl", "agent", "delete", "acme/bot", (char *)NULL), 0);
	it_result_free(&r);
	char uid[16];
	snprintf(uid, sizeof(uid), "%u", (unsigned)accts[AGENT].uid);
	assert_int_equal(run_as(ROOT, NULL, NULL, &r, "pcctl", "agent", "create", "acme/bot",
	                     "--uid", uid, (char *)NULL),
	    0);
	it_result_free(&r);
	const char *env[] = { "X=pcs:acme/shared", NULL };
	assert_int_equal(run_as(AGENT, NULL, env, &r, "pcrun", "--", "/bin/true", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
	it_result_free(&r);
	/* Deleting the agent removed its bindings, so the secret can go without force now. */
	assert_int_equal(run_as(OPERATOR, NULL, NULL, &r, "pcctl", "secret", "delete",
	                     "acme/shared", (char *)NULL),
	    0);
	it_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matrix),
		cmocka_unit_test(test_whoami_names_the_rule),
		cmocka_unit_test(test_agent_lifecycle_rules),
	};
	/* Every test here needs root: ctest reports the binary skipped (SKIP_RETURN_CODE). */
	if (!it_is_root()) {
		fprintf(stderr, "skipped: needs root (real Unix accounts)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("roles", tests, setup, teardown);
}
