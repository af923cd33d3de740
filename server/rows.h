/*
 * rows: result rows to reply messages. The messages point into the result (valid during the
 * store callback), so a handler builds and sends its reply inside that callback.
 */
#ifndef PCS_SERVER_ROWS_H
#define PCS_SERVER_ROWS_H

#include <stddef.h>
#include "pcsecret.pb-c.h"
#include "store.h"

/* Column lists for the SELECTs whose rows these read. */
#define ROWS_SECRET_COLS "id, company, name, description, current_version, pcs_ts(created_at), " \
	"pcs_ts(updated_at), created_by"
#define ROWS_AGENT_COLS "id, company, name, uid, pcs_ts(created_at), created_by, env_name, " \
	"ref_company, ref_name, ref_version"
#define ROWS_PRINCIPAL_COLS "id, match, unix_id, role, company, agent, pcs_ts(created_at), created_by"
#define ROWS_COMPANY_COLS "id, name, pcs_ts(created_at), created_by"

const char *rows_str(const struct store_result *r, int row, int col);
uint32_t rows_u32(const struct store_result *r, int row, int col);
uint64_t rows_u64(const struct store_result *r, int row, int col);

void rows_company(const struct store_result *r, int row, Pcsecret__V1__Company *out);
/* Columns from col onwards as ROWS_SECRET_COLS. */
void rows_secret(const struct store_result *r, int row, Pcsecret__V1__SecretInfo *out);
void rows_principal(const struct store_result *r, int row, Pcsecret__V1__PrincipalRule *out);

/* An AgentInfo from pcs_describe_agent rows; env points into storage the caller frees. */
struct rows_agent {
	Pcsecret__V1__AgentInfo msg;
	Pcsecret__V1__EnvBinding *bindings;
	Pcsecret__V1__SecretRef *refs;
	Pcsecret__V1__EnvBinding **ptrs;
};
int rows_agent(const struct store_result *r, struct rows_agent *out);
void rows_agent_free(struct rows_agent *a);

/*
 * A PostgreSQL array literal of already-validated names ({"a","b"}). Names never contain
 * quotes or backslashes (name_valid/uuid_valid), which is what makes this safe.
 */
char *rows_text_array(const char *const *items, size_t n);

#endif
