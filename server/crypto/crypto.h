/*
 * crypto: envelope encryption of secret values (the daemon's only user of sodium.h).
 *
 * Each version gets a random 32-byte data key; the value is sealed with
 * XChaCha20-Poly1305-IETF under it, with associated data binding company id, secret id and
 * version, so a row copied elsewhere fails to open. The data key is itself sealed under the
 * master key (associated data: the key id). The master key lives in sodium_malloc memory,
 * read-only; data keys and plaintext in secbuf slots (secbuf.h): locked, kept out of core dumps
 * and wiped when freed, without a system call per value.
 */
#ifndef PCS_SERVER_CRYPTO_H
#define PCS_SERVER_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

#define CRYPTO_NONCE_LEN 24
#define CRYPTO_WRAPPED_KEY_LEN (24 + 32 + 16) /* nonce + data key + tag */
#define CRYPTO_KEY_ID_LEN 16                  /* hex characters */
#define CRYPTO_CHECK_LEN 32

struct crypto_master;

struct crypto_ad {
	const char *company_id;
	const char *secret_id;
	uint32_t version;
};

struct crypto_sealed {
	uint8_t *ciphertext; /* malloc'd; value length + 16 */
	size_t ciphertext_len;
	uint8_t nonce[CRYPTO_NONCE_LEN];
	uint8_t wrapped_key[CRYPTO_WRAPPED_KEY_LEN];
	char key_id[CRYPTO_KEY_ID_LEN + 1];
};

/* Plaintext in locked memory (secbuf.h), NUL-terminated (the NUL is not counted in len). */
struct crypto_plain {
	uint8_t *data;
	size_t len;
};

/* sodium_init and the locked buffers (secbuf_init); call once before anything else. */
int crypto_init(pcs_error *err) PCS_WUR;
/* Loads and checks the master key file (see keyfile.h for the rules). */
int crypto_master_load(const char *path, struct crypto_master **out, pcs_error *err) PCS_WUR;
void crypto_master_free(struct crypto_master *m);
/* A public identifier of the key (not secret): 16 hex chars derived from it. */
const char *crypto_master_key_id(const struct crypto_master *m);
/* A check value stored in the database so that a wrong key is a clear start-up error. */
void crypto_master_check_value(const struct crypto_master *m, uint8_t out[CRYPTO_CHECK_LEN]);
/* Constant-time comparison with a stored check value: 0 when it matches. */
int crypto_master_verify(const struct crypto_master *m, const uint8_t *check, size_t len) PCS_WUR;

int crypto_seal(const struct crypto_master *m, const struct crypto_ad *ad, const uint8_t *value,
    size_t len, struct crypto_sealed *out, pcs_error *err) PCS_WUR;
/* Frees and wipes what crypto_seal allocated. */
void crypto_sealed_clear(struct crypto_sealed *s);
/*
 * Opens a sealed value. -PCS_DATA_LOSS when authentication fails (wrong row, tampered data,
 * wrong key); -PCS_FAILED_PRECONDITION when key_id is not the loaded master key.
 */
int crypto_open(const struct crypto_master *m, const struct crypto_ad *ad,
    const uint8_t *ciphertext, size_t ciphertext_len, const uint8_t *nonce, size_t nonce_len,
    const uint8_t *wrapped_key, size_t wrapped_key_len, const char *key_id,
    struct crypto_plain *out, pcs_error *err) PCS_WUR;
/* Allocates locked memory for len bytes plus a NUL, zeroed; crypto_plain_clear wipes it. */
int crypto_plain_alloc(size_t len, struct crypto_plain *out, pcs_error *err) PCS_WUR;
void crypto_plain_clear(struct crypto_plain *p);

#define CRYPTO_VALUE_TAG_LEN 32

/*
 * A tag of value for secret_id: BLAKE2b-256 keyed with a key derived from the master key, so
 * equal values of one secret give equal tags while a stored tag reveals nothing about the
 * value (no dictionary check without the key), nor links the same value across secrets.
 */
int crypto_value_tag(const struct crypto_master *m, const char *secret_id, const uint8_t *value,
    size_t len, uint8_t out[CRYPTO_VALUE_TAG_LEN], pcs_error *err) PCS_WUR;
/* Constant-time comparison of len bytes: 1 when equal, 0 otherwise. */
int crypto_tag_equal(const void *a, const void *b, size_t len) PCS_WUR;

/* Random UUIDv4, lowercase, into out[37]. */
void crypto_uuid(char out[37]);
void crypto_wipe(void *p, size_t len);
/* Hex for bytea parameters and logs of non-secret digests. out must hold 2*len+1. */
void crypto_hex(char *out, const uint8_t *in, size_t len);
/* BLAKE2b-256 of data as 64 lowercase hex characters (migration checksums). */
void crypto_checksum_hex(const void *data, size_t len, char out[65]);

#endif
