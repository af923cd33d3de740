/*
 * stub_store: the database layer (server/db/db.h) without PostgreSQL, for fuzz_dispatch, and the
 * few store.h functions dispatch itself calls. No SQL is parsed: every db_* operation records
 * what it was asked (its typed callback, the references of a resolve) and runs through
 * dispatch's call_db / call_db_step as the real layer does, so dispatch still owns the audit
 * row, the deadline and cancellation. Jobs queue like the real pool's and complete on the
 * event loop, never inside the submit, in an order the fuzz input's script picks; each job's
 * outcome comes from the script too: an error status, a refused submit, a slow answer, no
 * rows, rows whose fields are fuzz bytes, or (the default once the script has run out)
 * plausible rows, with sealed values that open under the harness's master key, so every
 * handler's success path runs.
 *
 * The stub also plays the audit table: a statement carrying a call's audit row (dispatch's
 * audit_wrap_sql, stubbed here) or a group-commit insert that succeeds "commits" its rows,
 * which the harness then looks up by call id.
 */
#ifndef PCS_TESTS_FUZZ_STUB_STORE_H
#define PCS_TESTS_FUZZ_STUB_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* Who the principal lookup says the peer is. */
enum stub_persona {
	STUB_ADMIN_RULE,
	STUB_OPERATOR,
	STUB_LAUNCHER,
	STUB_AGENT,
	STUB_UNKNOWN_ROLE,
	STUB_NO_RULE,
	STUB_NPERSONAS
};

/* What resolves read: a value sealed for (company_id, secret_id, version 1). */
struct stub_sealed {
	const char *company_id, *secret_id;
	const uint8_t *ciphertext, *nonce, *wrapped_key;
	size_t ciphertext_len, nonce_len, wrapped_key_len;
	const char *key_id;
};

/* Process-wide: the sealed value every canned value row carries (not copied). */
void stub_set_sealed(const struct stub_sealed *sealed);
/* Per store: the script bytes (not copied; must outlive the store) and the persona. */
void stub_configure(struct store *s, const uint8_t *script, size_t len,
    enum stub_persona persona);
/* Jobs queued, running or waiting to answer slowly. */
size_t stub_outstanding(const struct store *s);

/* A committed audit row, as the stub received it. */
struct stub_audit {
	uint64_t call_id;
	char method[64];
	char principal[160];
	char status[32];
};
/*
 * Takes (and forgets) the oldest committed audit row for call_id whose status is status.
 * Returns 1 and fills out, or 0 when there is none.
 */
int stub_take_audit(struct store *s, uint64_t call_id, const char *status,
    struct stub_audit *out);

#endif
