/*
 * stub_store: server/store.h without PostgreSQL, for fuzz_dispatch. Jobs queue like the real
 * pool's and complete on the event loop, never inside store_submit, with a result the fuzz
 * input chooses (the "script"): an error status, zero rows, rows made of fuzz bytes, a slow
 * answer, a refused submit, or, when the script has run out, plausible rows built from the
 * statement's own column list (sealed values open under the harness's master key), so every
 * handler's success path runs too. Jobs complete in an order the script picks, as the real
 * pool's connections answer out of order.
 *
 * The stub also plays the audit table: a statement that inserts into audit_log and succeeds
 * "commits" its row, which the harness can then look up by call id.
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

/* What resolves read: a value sealed for (company_id, secret_id, version 1), hex-encoded. */
struct stub_sealed {
	const char *company_id, *secret_id;
	const char *ciphertext_hex, *nonce_hex, *wrapped_hex, *key_id;
};

/* Process-wide: the sealed value every canned resolve row carries. */
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
