/*
 * The rpc handlers, one per rpc of service pcsecret.v1.PcSecret, with the signatures
 * protoc-c generates; dispatch.c builds the service from them with the generated
 * PCSECRET__V1__PC_SECRET__INIT(handle_) so a missing or mistyped handler fails to compile.
 */
#ifndef PCS_SERVER_HANDLERS_H
#define PCS_SERVER_HANDLERS_H

#include "pcsecret.pb-c.h"

#define PCS_HANDLER(fn, Req, Rep)                                                        \
	void handle_##fn(Pcsecret__V1__PcSecret_Service *svc, const Pcsecret__V1__##Req *in, \
	    Pcsecret__V1__##Rep##_Closure closure, void *closure_data)

PCS_HANDLER(hello, HelloRequest, HelloReply);                          /* h_session.c */
PCS_HANDLER(create_company, CreateCompanyRequest, CreateCompanyReply); /* h_company.c */
PCS_HANDLER(list_companies, ListCompaniesRequest, ListCompaniesReply);
PCS_HANDLER(create_secret, CreateSecretRequest, CreateSecretReply);    /* h_secret.c */
PCS_HANDLER(update_secret, UpdateSecretRequest, UpdateSecretReply);
PCS_HANDLER(list_secrets, ListSecretsRequest, ListSecretsReply);
PCS_HANDLER(describe_secret, DescribeSecretRequest, DescribeSecretReply);
PCS_HANDLER(resolve, ResolveRequest, ResolveReply);                    /* h_resolve.c */
PCS_HANDLER(get_agent_env, GetAgentEnvRequest, GetAgentEnvReply);
PCS_HANDLER(create_agent, CreateAgentRequest, CreateAgentReply);       /* h_agent.c */
PCS_HANDLER(describe_agent, DescribeAgentRequest, DescribeAgentReply);
PCS_HANDLER(set_agent_env, SetAgentEnvRequest, SetAgentEnvReply);
PCS_HANDLER(unset_agent_env, UnsetAgentEnvRequest, UnsetAgentEnvReply);
PCS_HANDLER(add_principal, AddPrincipalRequest, AddPrincipalReply);    /* h_principal.c */
PCS_HANDLER(list_principals, ListPrincipalsRequest, ListPrincipalsReply);
PCS_HANDLER(remove_principal, RemovePrincipalRequest, RemovePrincipalReply);
PCS_HANDLER(list_audit, ListAuditRequest, ListAuditReply);             /* h_audit.c */
PCS_HANDLER(list_agents, ListAgentsRequest, ListAgentsReply);          /* h_agent.c */
PCS_HANDLER(delete_agent, DeleteAgentRequest, DeleteAgentReply);
PCS_HANDLER(delete_secret, DeleteSecretRequest, DeleteSecretReply);    /* h_secret.c */

/* The start of every handler: the call, and no use of the generated service arguments. */
#define HANDLER_PROLOGUE(c)            \
	struct call *c = closure_data; \
	(void)svc;                     \
	(void)closure

#endif
