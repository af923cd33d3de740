/*
 * pcctl's JSON shapes of the protocol's messages (fields named as in the .proto), and the
 * text forms shared by its human output.
 */
#ifndef PCS_CLIENT_RENDER_H
#define PCS_CLIENT_RENDER_H

#include <stddef.h>

#include <jansson.h>

#include "output.h"
#include "pcsecret.pb-c.h"

/* Room for "pcs:COMPANY/NAME@VERSION". */
#define REF_TEXT_MAX 300

/* "pcs:company/name[@N]" for a structured reference; "-" when it cannot be written. */
void ref_text(const Pcsecret__V1__SecretRef *sref, char *buf, size_t size);
/* "a, b, c"; NULL when out of memory. The caller frees it. */
char *join_strings(char **v, size_t n);

json_t *j_principal(const Pcsecret__V1__Principal *p);
json_t *j_company(const Pcsecret__V1__Company *c);
json_t *j_secret(const Pcsecret__V1__SecretInfo *s, int with_versions);
json_t *j_agent(const Pcsecret__V1__AgentInfo *a);
json_t *j_rule(const Pcsecret__V1__PrincipalRule *p);
json_t *j_audit(const Pcsecret__V1__AuditEntry *e);
/* One chain of VerifyAudit's reply. */
json_t *j_audit_chain(const Pcsecret__V1__AuditChain *k);

#endif
