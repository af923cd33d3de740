#include "methods.h"

#include <string.h>

#define V METHOD_RETURNS_VALUES
#define I METHOD_IDEMPOTENT
#define H METHOD_HANDSHAKE
#define C METHOD_CACHED
#define QUEUED METHOD_AUDIT_QUEUED
#define WORK METHOD_AUDIT_WITH_WORK

/* In wire-id order. Append only: an id, once given, names its rpc for ever. */
static const struct method table[] = {
	{ "Hello", 1, METHOD_ACTION_SESSION, H | I | C, QUEUED },
	{ "CreateCompany", 2, METHOD_ACTION_COMPANY_CREATE, 0, WORK },
	{ "ListCompanies", 3, METHOD_ACTION_COMPANY_LIST, I, WORK },
	{ "CreateSecret", 4, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	{ "UpdateSecret", 5, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	{ "ListSecrets", 6, METHOD_ACTION_SECRET_READ, I, WORK },
	{ "DescribeSecret", 7, METHOD_ACTION_SECRET_READ, I, WORK },
	/* Values: the audit row records authz's decision on the rows read, so it comes after. */
	{ "Resolve", 8, METHOD_ACTION_VALUE_READ, V | I | C, QUEUED },
	{ "CreateAgent", 9, METHOD_ACTION_AGENT_WRITE, 0, WORK },
	{ "DescribeAgent", 10, METHOD_ACTION_AGENT_READ, I, WORK },
	/* Setting a binding to what it already is changes nothing. */
	{ "SetAgentEnv", 11, METHOD_ACTION_AGENT_WRITE, I, WORK },
	{ "UnsetAgentEnv", 12, METHOD_ACTION_AGENT_WRITE, 0, WORK },
	{ "GetAgentEnv", 13, METHOD_ACTION_VALUE_READ, V | I, QUEUED },
	{ "AddPrincipal", 14, METHOD_ACTION_PRINCIPAL_ADMIN, 0, WORK },
	{ "ListPrincipals", 15, METHOD_ACTION_PRINCIPAL_ADMIN, I, WORK },
	{ "RemovePrincipal", 16, METHOD_ACTION_PRINCIPAL_ADMIN, 0, WORK },
	{ "ListAudit", 17, METHOD_ACTION_AUDIT_READ, I, WORK },
	{ "ListAgents", 18, METHOD_ACTION_AGENT_READ, I, WORK },
	{ "DeleteAgent", 19, METHOD_ACTION_AGENT_WRITE, 0, WORK },
	{ "DeleteSecret", 20, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	/* Not idempotent: each records who and when, and a repeat is refused, not a no-op. */
	{ "PromoteSecret", 21, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	{ "RollbackSecret", 22, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	{ "DisableSecretVersion", 23, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	{ "EnableSecretVersion", 24, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	/* Not idempotent either: a repeat is refused (not deleted, already purged). */
	{ "RestoreSecret", 25, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	{ "PurgeSecret", 26, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	/* Setting the limit it already has destroys nothing more: a retry changes nothing. */
	{ "SetSecretRetention", 27, METHOD_ACTION_SECRET_WRITE, I, WORK },
	/* A repeat is refused (already destroyed), like a second purge. */
	{ "DestroySecretVersion", 28, METHOD_ACTION_SECRET_WRITE, 0, WORK },
	/* ---- a stream; its row is group-committed when it starts ---- */
	{ "Watch", 29, METHOD_ACTION_WATCH, 0, QUEUED },
	/* Reads only; its row goes with the statement, like ListAudit's. */
	{ "VerifyAudit", 30, METHOD_ACTION_AUDIT_VERIFY, I, WORK },
};

#define NMETHODS (sizeof(table) / sizeof(table[0]))

const struct method *method_by_id(unsigned id)
{
	return id >= 1 && id <= NMETHODS ? &table[id - 1] : NULL;
}

const struct method *method_by_name(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < NMETHODS; i++)
		if (strcmp(table[i].name, name) == 0)
			return &table[i];
	return NULL;
}

size_t methods_count(void) { return NMETHODS; }

int methods_check(const ProtobufCServiceDescriptor *d, pcs_error *err)
{
	if (d->n_methods != NMETHODS)
		return pcs_fail(err, PCS_INTERNAL,
		    "the service has %u rpcs but the method table %zu", d->n_methods,
		    (size_t)NMETHODS);
	for (unsigned i = 0; i < d->n_methods; i++) {
		if (table[i].id != i + 1 || strcmp(table[i].name, d->methods[i].name) != 0)
			return pcs_fail(err, PCS_INTERNAL,
			    "rpc %u of the service is %s, but the method "
			    "table says %s",
			    i + 1, d->methods[i].name, table[i].name);
	}
	return 0;
}
