/*
 * The method table (common/methods.c): wire ids are append-only, so every id is pinned here
 * to its rpc's name; the table must match the generated service descriptor; and the flags
 * that decide who may receive values and how rows are audited hold their invariants.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "methods.h"
#include "pcsecret.pb-c.h"

/* Never edit a line of this list: only append. A changed id breaks every deployed client. */
static const char *const wire_ids[] = {
	NULL, "Hello", "CreateCompany", "ListCompanies", "CreateSecret", "UpdateSecret",
	"ListSecrets", "DescribeSecret", "Resolve", "CreateAgent", "DescribeAgent", "SetAgentEnv",
	"UnsetAgentEnv", "GetAgentEnv", "AddPrincipal", "ListPrincipals", "RemovePrincipal",
	"ListAudit", "ListAgents", "DeleteAgent", "DeleteSecret", "PromoteSecret", "RollbackSecret",
	"DisableSecretVersion", "EnableSecretVersion", "RestoreSecret", "PurgeSecret",
	"SetSecretRetention", "DestroySecretVersion",
	/* Watch */
	"Watch",
	"VerifyAudit",
};

static void test_ids_pinned(void **state)
{
	size_t n = sizeof(wire_ids) / sizeof(wire_ids[0]) - 1;

	(void)state;
	assert_true(methods_count() >= n);
	for (unsigned id = 1; id <= n; id++) {
		const struct method *m = method_by_id(id);

		assert_non_null(m);
		assert_int_equal(m->id, id);
		assert_string_equal(m->name, wire_ids[id]);
		assert_ptr_equal(method_by_name(wire_ids[id]), m);
	}
	assert_null(method_by_id(0));
	assert_null(method_by_id((unsigned)methods_count() + 1));
	assert_null(method_by_name("NoSuchRpc"));
	assert_null(method_by_name(NULL));
	/* A new rpc appended to the .proto must be appended here too. */
	assert_int_equal(methods_count(), n);
}

static void test_matches_descriptor(void **state)
{
	ProtobufCServiceDescriptor d = pcsecret__v1__pc_secret__descriptor;
	ProtobufCMethodDescriptor swapped[64];
	pcs_error err;

	(void)state;
	assert_int_equal(methods_check(&pcsecret__v1__pc_secret__descriptor, &err), 0);
	/* A reordered or missing rpc is found and named. */
	assert_true(d.n_methods <= 64);
	memcpy(swapped, d.methods, d.n_methods * sizeof(swapped[0]));
	swapped[1] = d.methods[2];
	swapped[2] = d.methods[1];
	d.methods = swapped;
	assert_int_equal(methods_check(&d, &err), -PCS_INTERNAL);
	assert_non_null(strstr(err.message, "CreateCompany"));
	d.n_methods--;
	assert_int_equal(methods_check(&d, &err), -PCS_INTERNAL);
}

static void test_flags(void **state)
{
	static const char *const lifecycle[] = { "PromoteSecret", "RollbackSecret",
		"DisableSecretVersion", "EnableSecretVersion", "RestoreSecret", "PurgeSecret",
		"DestroySecretVersion" };
	unsigned values = 0, handshakes = 0;

	(void)state;
	for (unsigned id = 1; id <= methods_count(); id++) {
		const struct method *m = method_by_id(id);

		if (m->flags & METHOD_RETURNS_VALUES) {
			values++;
			/* Values go only where the value policy decides, and their row comes after. */
			assert_int_equal(m->action, METHOD_ACTION_VALUE_READ);
			assert_int_equal(m->audit, METHOD_AUDIT_QUEUED);
		} else {
			assert_int_not_equal(m->action, METHOD_ACTION_VALUE_READ);
		}
		/* A cached answer is checked by its queued audit row: no other kind may be cached. */
		if (m->flags & METHOD_CACHED)
			assert_int_equal(m->audit, METHOD_AUDIT_QUEUED);
		if (m->flags & METHOD_HANDSHAKE) {
			handshakes++;
			assert_string_equal(m->name, "Hello");
			assert_int_equal(m->action, METHOD_ACTION_SESSION);
		}
	}
	assert_int_equal(values, 2);
	assert_true(method_by_name("Resolve")->flags & METHOD_RETURNS_VALUES);
	assert_true(method_by_name("GetAgentEnv")->flags & METHOD_RETURNS_VALUES);
	assert_int_equal(handshakes, 1);
	assert_true(method_by_name("Resolve")->flags & METHOD_CACHED);
	/* What makes a second version or a second row is never retried blindly. */
	assert_false(method_by_name("UpdateSecret")->flags & METHOD_IDEMPOTENT);
	assert_false(method_by_name("CreateSecret")->flags & METHOD_IDEMPOTENT);
	assert_true(method_by_name("Resolve")->flags & METHOD_IDEMPOTENT);
	/* The version lifecycle: secret writes, audited with their work, never retried blindly. */
	for (size_t i = 0; i < sizeof(lifecycle) / sizeof(lifecycle[0]); i++) {
		const struct method *m = method_by_name(lifecycle[i]);

		assert_non_null(m);
		assert_int_equal(m->action, METHOD_ACTION_SECRET_WRITE);
		assert_int_equal(m->audit, METHOD_AUDIT_WITH_WORK);
		assert_false(m->flags & (METHOD_IDEMPOTENT | METHOD_CACHED));
	}
	/* Retention: a secret write with its row; the same limit again destroys nothing more. */
	assert_int_equal(method_by_name("SetSecretRetention")->action, METHOD_ACTION_SECRET_WRITE);
	assert_int_equal(method_by_name("SetSecretRetention")->audit, METHOD_AUDIT_WITH_WORK);
	assert_true(method_by_name("SetSecretRetention")->flags & METHOD_IDEMPOTENT);
	assert_false(method_by_name("SetSecretRetention")->flags & METHOD_CACHED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids_pinned),
		cmocka_unit_test(test_matches_descriptor),
		cmocka_unit_test(test_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
