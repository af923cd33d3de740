/*
 * The rpc handlers, one per rpc of service pcsecret.v1.PcSecret, with the signatures
 * protoc-c generates; dispatch.c builds the service from them with the generated
 * PCSECRET__V1__PC_SECRET__INIT(handle_) so a missing or mistyped handler fails to compile.
 */
#ifndef PCS_SERVER_HANDLERS_H
#define PCS_SERVER_HANDLERS_H

#include "pcsecret.pb-c.h"

/* h_session.c */
void handle_hello(Pcsecret__V1__PcSecret_Service *svc, const Pcsecret__V1__HelloRequest *in,
    Pcsecret__V1__HelloReply_Closure closure, void *closure_data);
/* h_company.c */
void handle_create_company(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateCompanyRequest *in, Pcsecret__V1__CreateCompanyReply_Closure closure,
    void *closure_data);
void handle_list_companies(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListCompaniesRequest *in, Pcsecret__V1__ListCompaniesReply_Closure closure,
    void *closure_data);
/* h_secret.c */
void handle_create_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateSecretRequest *in, Pcsecret__V1__CreateSecretReply_Closure closure,
    void *closure_data);
void handle_update_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__UpdateSecretRequest *in, Pcsecret__V1__UpdateSecretReply_Closure closure,
    void *closure_data);
void handle_list_secrets(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListSecretsRequest *in, Pcsecret__V1__ListSecretsReply_Closure closure,
    void *closure_data);
void handle_describe_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DescribeSecretRequest *in,
    Pcsecret__V1__DescribeSecretReply_Closure closure, void *closure_data);
/* h_resolve.c */
void handle_resolve(Pcsecret__V1__PcSecret_Service *svc, const Pcsecret__V1__ResolveRequest *in,
    Pcsecret__V1__ResolveReply_Closure closure, void *closure_data);
void handle_get_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__GetAgentEnvRequest *in, Pcsecret__V1__GetAgentEnvReply_Closure closure,
    void *closure_data);
/* h_agent.c */
void handle_create_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateAgentRequest *in, Pcsecret__V1__CreateAgentReply_Closure closure,
    void *closure_data);
void handle_describe_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DescribeAgentRequest *in, Pcsecret__V1__DescribeAgentReply_Closure closure,
    void *closure_data);
void handle_set_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SetAgentEnvRequest *in, Pcsecret__V1__SetAgentEnvReply_Closure closure,
    void *closure_data);
void handle_unset_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__UnsetAgentEnvRequest *in, Pcsecret__V1__UnsetAgentEnvReply_Closure closure,
    void *closure_data);
/* h_principal.c */
void handle_add_principal(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__AddPrincipalRequest *in, Pcsecret__V1__AddPrincipalReply_Closure closure,
    void *closure_data);
void handle_list_principals(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListPrincipalsRequest *in,
    Pcsecret__V1__ListPrincipalsReply_Closure closure, void *closure_data);
void handle_remove_principal(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__RemovePrincipalRequest *in,
    Pcsecret__V1__RemovePrincipalReply_Closure closure, void *closure_data);
/* h_audit.c */
void handle_list_audit(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListAuditRequest *in, Pcsecret__V1__ListAuditReply_Closure closure,
    void *closure_data);
void handle_verify_audit(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__VerifyAuditRequest *in, Pcsecret__V1__VerifyAuditReply_Closure closure,
    void *closure_data);
/* h_agent.c */
void handle_list_agents(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListAgentsRequest *in, Pcsecret__V1__ListAgentsReply_Closure closure,
    void *closure_data);
void handle_delete_agent(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DeleteAgentRequest *in, Pcsecret__V1__DeleteAgentReply_Closure closure,
    void *closure_data);
/* h_secret.c */
void handle_delete_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DeleteSecretRequest *in, Pcsecret__V1__DeleteSecretReply_Closure closure,
    void *closure_data);
void handle_promote_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data);
void handle_rollback_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data);
void handle_disable_secret_version(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data);
void handle_enable_secret_version(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data);
void handle_restore_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretNameRequest *in, Pcsecret__V1__RestoreSecretReply_Closure closure,
    void *closure_data);
void handle_purge_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretNameRequest *in, Pcsecret__V1__PurgeSecretReply_Closure closure,
    void *closure_data);
void handle_set_secret_retention(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SetSecretRetentionRequest *in,
    Pcsecret__V1__SetSecretRetentionReply_Closure closure, void *closure_data);
void handle_destroy_secret_version(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data);

/* The start of every handler: the call, and no use of the generated service arguments. */
#define HANDLER_PROLOGUE(c) \
	struct call *c = closure_data; \
	(void)svc; \
	(void)closure

/* h_watch.c */
void handle_watch(Pcsecret__V1__PcSecret_Service *svc, const Pcsecret__V1__WatchRequest *in,
    Pcsecret__V1__WatchReply_Closure closure, void *closure_data);

#endif
