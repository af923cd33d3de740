/*
 * The authorization matrix: every role x every rpc x own/other company x granted/not-granted
 * reference, against a spec table written independently of authz.c. Also: which reply types
 * can carry a value at all, and that admins and operators can never call those rpcs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "authz.h"
#include "pcsecret.pb-c.h"

/*
 * Per rpc, the rule for admin, operator, launcher and agent:
 *   A  allowed for any company        D  denied
 *   C  allowed for its own company only (for an agent: itself)
 *   G  allowed for its own company only, and only for a granted reference
 */
static const struct {
	const char *method;
	const char rule[5]; /* admin, operator, launcher, agent */
} spec[] = {
	{ "Hello", "AAAA" },
	{ "CreateCompany", "ADDD" },
	{ "ListCompanies", "AAAD" },
	{ "CreateSecret", "ACDD" },
	{ "UpdateSecret", "ACDD" },
	{ "DeleteSecret", "ACDD" },
	{ "PromoteSecret", "ACDD" },
	{ "RollbackSecret", "ACDD" },
	{ "DisableSecretVersion", "ACDD" },
	{ "EnableSecretVersion", "ACDD" },
	{ "RestoreSecret", "ACDD" },
	{ "PurgeSecret", "ACDD" },
	{ "SetSecretRetention", "ACDD" },
	{ "DestroySecretVersion", "ACDD" },
	{ "ListSecrets", "ACDD" },
	{ "DescribeSecret", "ACDD" },
	{ "Resolve", "DDGG" },
	{ "GetAgentEnv", "DDCC" },
	{ "CreateAgent", "ACDD" },
	{ "SetAgentEnv", "ACDD" },
	{ "UnsetAgentEnv", "ACDD" },
	{ "DeleteAgent", "ACDD" },
	{ "DescribeAgent", "ACCD" },
	{ "ListAgents", "ACCD" },
	{ "AddPrincipal", "ADDD" },
	{ "ListPrincipals", "ADDD" },
	{ "RemovePrincipal", "ADDD" },
	{ "ListAudit", "ACDD" },
	/* a launcher for an agent of its company, an agent for itself; both only
	 * for what the agent is bound to. */
	{ "Watch", "ACGG" },
	{ "VerifyAudit", "ADDD" },
};

static const enum role roles[] = { ROLE_ADMIN, ROLE_OPERATOR, ROLE_LAUNCHER, ROLE_AGENT };

static void make_principal(struct principal *p, enum role role)
{
	memset(p, 0, sizeof(*p));
	p->role = role;
	p->uid = 1000;
	if (role == ROLE_NONE || role == ROLE_ADMIN)
		return;
	snprintf(p->companies[0], sizeof(p->companies[0]), "acme");
	p->ncompanies = 1;
	if (role == ROLE_AGENT)
		snprintf(p->agent, sizeof(p->agent), "bot");
}

static int expected(char rule, int own, int granted, int is_resolve)
{
	switch (rule) {
	case 'A':
		return PCS_OK;
	case 'C':
		return own ? PCS_OK : PCS_PERMISSION_DENIED;
	case 'G':
		return own && (granted || !is_resolve) ? PCS_OK : PCS_PERMISSION_DENIED;
	default:
		return PCS_PERMISSION_DENIED;
	}
}

static int spec_index(const char *method)
{
	for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++)
		if (strcmp(spec[i].method, method) == 0)
			return (int)i;
	return -1;
}

static void test_matrix(void **state)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	size_t checked = 0;

	(void)state;
	/* Every rpc of the service has a policy and a row in the spec, and nothing more. */
	assert_int_equal(d->n_methods, sizeof(spec) / sizeof(spec[0]));
	for (unsigned m = 0; m < d->n_methods; m++) {
		const char *method = d->methods[m].name;
		int si = spec_index(method), action = authz_method_action(method);
		/* The rpcs whose decision also takes the reference's grant. */
		int is_resolve = strcmp(method, "Resolve") == 0 || strcmp(method, "Watch") == 0;

		if (si < 0 || action < 0)
			fail_msg("rpc %s has no %s", method, si < 0 ? "spec row" : "policy");
		for (size_t r = 0; r < 4; r++) {
			for (int own = 0; own <= 1; own++) {
				for (int granted = 0; granted <= 1; granted++) {
					struct principal p;
					struct authz_request rq;
					pcs_error err;
					int want = expected(
					    spec[si].rule[r], own, granted, is_resolve);
					int got;

					make_principal(&p, roles[r]);
					rq.action = (enum method_action)action;
					rq.company = own ? "acme" : "beta";
					rq.agent = "bot";
					rq.grant = is_resolve ?
					    (granted ? AUTHZ_GRANT_YES : AUTHZ_GRANT_NO) :
					    AUTHZ_GRANT_NA;
					got = -authz_check(&p, &rq, &err);
					if (got != want)
						fail_msg(
						    "%s as %s, %s company, %s: got %s, want %s (%s)",
						    method, authz_role_name(roles[r]),
						    own ? "own" : "other",
						    granted ? "granted" : "not granted",
						    pcs_status_name(got), pcs_status_name(want),
						    got ? err.message : "");
					if (got != PCS_OK)
						assert_true(strlen(err.message) > 0);
					checked++;
				}
			}
		}
	}
	assert_int_equal(checked, d->n_methods * 4 * 2 * 2);
}

static void test_unknown_peer_is_unauthenticated(void **state)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	struct principal p;
	pcs_error err;

	(void)state;
	make_principal(&p, ROLE_NONE);
	for (unsigned m = 0; m < d->n_methods; m++) {
		struct authz_request rq = { (enum method_action)authz_method_action(
			                        d->methods[m].name),
			"acme", "bot", AUTHZ_GRANT_YES };
		assert_int_equal(authz_check(&p, &rq, &err), -PCS_UNAUTHENTICATED);
		assert_non_null(strstr(err.message, "matches no principal"));
	}
	assert_int_equal(
	    authz_check(NULL,
	        &(struct authz_request){ METHOD_ACTION_SESSION, NULL, NULL, AUTHZ_GRANT_NA }, &err),
	    -PCS_UNAUTHENTICATED);
}

static void test_agent_without_company_is_itself(void **state)
{
	struct principal p;
	struct authz_request rq = { METHOD_ACTION_VALUE_READ, NULL, NULL, AUTHZ_GRANT_NA };
	pcs_error err;

	(void)state;
	make_principal(&p, ROLE_AGENT);
	assert_int_equal(authz_check(&p, &rq, &err), 0);
	rq.company = "acme";
	rq.agent = "other-bot";
	assert_int_equal(authz_check(&p, &rq, &err), -PCS_PERMISSION_DENIED);
	assert_non_null(strstr(err.message, "another agent"));
}

/* 1 when a message type can carry a "value" bytes field, directly or in a submessage. */
static int carries_value(const ProtobufCMessageDescriptor *m, int depth)
{
	if (depth > 8)
		return 0;
	for (unsigned i = 0; i < m->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &m->fields[i];
		if (f->type == PROTOBUF_C_TYPE_BYTES && strcmp(f->name, "value") == 0)
			return 1;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    carries_value((const ProtobufCMessageDescriptor *)f->descriptor, depth + 1))
			return 1;
	}
	return 0;
}

static void test_values_only_in_two_replies_never_to_admins(void **state)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	const enum role managers[] = { ROLE_ADMIN, ROLE_OPERATOR };
	size_t with_values = 0;

	(void)state;
	for (unsigned m = 0; m < d->n_methods; m++) {
		const char *method = d->methods[m].name;
		if (!carries_value(d->methods[m].output, 0))
			continue;
		with_values++;
		/* A new reply type that can hold a value must be reviewed here and in authz. */
		if (strcmp(method, "Resolve") != 0 && strcmp(method, "GetAgentEnv") != 0)
			fail_msg("reply of %s can carry a value", method);
		for (size_t r = 0; r < 2; r++) {
			for (int own = 0; own <= 1; own++) {
				struct principal p;
				struct authz_request rq = { (enum method_action)authz_method_action(
					                        method),
					own ? "acme" : "beta", "bot", AUTHZ_GRANT_YES };
				pcs_error err;
				make_principal(&p, managers[r]);
				assert_int_equal(
				    authz_check(&p, &rq, &err), -PCS_PERMISSION_DENIED);
			}
		}
	}
	assert_int_equal(with_values, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matrix),
		cmocka_unit_test(test_unknown_peer_is_unauthenticated),
		cmocka_unit_test(test_agent_without_company_is_itself),
		cmocka_unit_test(test_values_only_in_two_replies_never_to_admins),
	};
	return cmocka_run_group_tests_name("authz", tests, NULL, NULL);
}
