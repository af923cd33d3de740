#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto.h"
#include "keyfile.h"
#include "secbuf.h"

#define CRYPTO_KEY_LEN crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define CRYPTO_TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define CRYPTO_KEY_ID_CONTEXT "pcsecret key id v1"
#define CRYPTO_TAG_CONTEXT "pcsecret.v1.idempotency-tag"
#define CRYPTO_CHECK_CONTEXT "pcsecret key check v1"
#define CRYPTO_AD_PREFIX "pcsecret.v1"
/* Two ids (uuids in practice) and a version, with room to spare. */
#define CRYPTO_AD_MAX 512

_Static_assert(KEYFILE_KEY_LEN == CRYPTO_KEY_LEN, "master key size is the AEAD key size");
_Static_assert(CRYPTO_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(CRYPTO_WRAPPED_KEY_LEN == CRYPTO_NONCE_LEN + CRYPTO_KEY_LEN + CRYPTO_TAG_LEN,
    "wrapped key layout");
_Static_assert(CRYPTO_CHECK_LEN >= crypto_generichash_BYTES_MIN &&
        CRYPTO_CHECK_LEN <= crypto_generichash_BYTES_MAX,
    "check value size");

struct crypto_master {
	uint8_t *key; /* sodium_malloc, read-only once loaded */
	char key_id[CRYPTO_KEY_ID_LEN + 1];
};

int crypto_init(pcs_error *err)
{
	if (sodium_init() < 0)
		return pcs_fail(err, PCS_INTERNAL, "libsodium failed to initialise");
	/* Now rather than on the first value: start-up pays the mmap and mlock, not a call. */
	return secbuf_init(&secbuf_config_daemon, err);
}

int crypto_master_load(const char *path, struct crypto_master **out, pcs_error *err)
{
	struct crypto_master *m = NULL;
	uint8_t id[16];
	int r;

	*out = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->key = sodium_malloc(CRYPTO_KEY_LEN)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate guarded memory for the master key");
		goto out;
	}
	if ((r = keyfile_read(path, m->key, err)) != 0)
		goto out;
	if (crypto_generichash(id, sizeof(id), (const uint8_t *)CRYPTO_KEY_ID_CONTEXT,
	        strlen(CRYPTO_KEY_ID_CONTEXT), m->key, CRYPTO_KEY_LEN) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "cannot derive the master key id");
		goto out;
	}
	sodium_bin2hex(m->key_id, sizeof(m->key_id), id, CRYPTO_KEY_ID_LEN / 2);
	/* Nothing writes the key after this: a stray write now faults instead of corrupting. */
	if (sodium_mprotect_readonly(m->key) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "cannot make the master key read-only");
		goto out;
	}
	*out = m;
	m = NULL;
	r = 0;
out:
	sodium_memzero(id, sizeof(id));
	crypto_master_free(m);
	return r;
}

void crypto_master_free(struct crypto_master *m)
{
	if (m == NULL)
		return;
	/* sodium_free makes the region writable again before it wipes it. */
	sodium_free(m->key);
	free(m);
}

const char *crypto_master_key_id(const struct crypto_master *m) { return m->key_id; }

void crypto_master_check_value(const struct crypto_master *m, uint8_t out[CRYPTO_CHECK_LEN])
{
	(void)crypto_generichash(out, CRYPTO_CHECK_LEN, (const uint8_t *)CRYPTO_CHECK_CONTEXT,
	    strlen(CRYPTO_CHECK_CONTEXT), m->key, CRYPTO_KEY_LEN);
}

int crypto_master_verify(const struct crypto_master *m, const uint8_t *check, size_t len)
{
	uint8_t mine[CRYPTO_CHECK_LEN];
	int r;

	if (check == NULL || len != CRYPTO_CHECK_LEN)
		return -PCS_FAILED_PRECONDITION;
	crypto_master_check_value(m, mine);
	r = sodium_memcmp(mine, check, CRYPTO_CHECK_LEN) == 0 ? 0 : -PCS_FAILED_PRECONDITION;
	sodium_memzero(mine, sizeof(mine));
	return r;
}

/*
 * The tag key is derived (keyed BLAKE2b of a fixed context) rather than the master key used
 * directly, so tags and the check value can never be confused with each other.
 */
int crypto_value_tag(const struct crypto_master *m, const char *secret_id, const uint8_t *value,
    size_t len, uint8_t out[CRYPTO_VALUE_TAG_LEN], pcs_error *err)
{
	uint8_t key[crypto_generichash_KEYBYTES];
	crypto_generichash_state st;
	int ret = 0;

	(void)crypto_generichash(key, sizeof(key), (const uint8_t *)CRYPTO_TAG_CONTEXT,
	    strlen(CRYPTO_TAG_CONTEXT), m->key, CRYPTO_KEY_LEN);
	/* The id's NUL ends it, so no (id, value) pair can run into another. */
	if (crypto_generichash_init(&st, key, sizeof(key), CRYPTO_VALUE_TAG_LEN) != 0 ||
	    crypto_generichash_update(&st, (const uint8_t *)secret_id, strlen(secret_id) + 1) !=
	        0 ||
	    crypto_generichash_update(&st, value, len) != 0 ||
	    crypto_generichash_final(&st, out, CRYPTO_VALUE_TAG_LEN) != 0)
		ret = pcs_fail(err, PCS_INTERNAL, "cannot compute the value tag");
	sodium_memzero(key, sizeof(key));
	sodium_memzero(&st, sizeof(st));
	return ret;
}

int crypto_tag_equal(const void *a, const void *b, size_t len)
{
	return sodium_memcmp(a, b, len) == 0;
}

/*
 * "pcsecret.v1|COMPANY|SECRET|VERSION". '|' is refused inside the ids so that no two
 * different rows can produce the same associated data.
 */
static int crypto_ad_format(
    const struct crypto_ad *ad, char out[CRYPTO_AD_MAX], size_t *len, pcs_error *err)
{
	int n;

	if (ad == NULL || ad->company_id == NULL || ad->secret_id == NULL ||
	    ad->company_id[0] == '\0' || ad->secret_id[0] == '\0')
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "associated data needs a company id and a secret id");
	if (strchr(ad->company_id, '|') != NULL || strchr(ad->secret_id, '|') != NULL)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "company and secret ids may not contain '|'");
	n = snprintf(out, CRYPTO_AD_MAX, CRYPTO_AD_PREFIX "|%s|%s|%u", ad->company_id,
	    ad->secret_id, ad->version);
	if (n < 0 || n >= CRYPTO_AD_MAX)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "company and secret ids are too long for the associated data");
	*len = (size_t)n;
	return 0;
}

int crypto_seal(const struct crypto_master *m, const struct crypto_ad *ad, const uint8_t *value,
    size_t len, struct crypto_sealed *out, pcs_error *err)
{
	struct crypto_sealed s;
	char ad_str[CRYPTO_AD_MAX];
	size_t ad_len = 0;
	unsigned long long ct_len = 0, wk_len = 0;
	void *dkp = NULL;
	uint8_t *dk;
	int r;

	memset(&s, 0, sizeof(s));
	memset(out, 0, sizeof(*out));
	if ((r = crypto_ad_format(ad, ad_str, &ad_len, err)) != 0)
		goto out;
	if ((value == NULL && len != 0) ||
	    len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "value to seal is missing or too large");
		goto out;
	}
	if ((r = secbuf_alloc(CRYPTO_KEY_LEN, &dkp, err)) != 0)
		goto out;
	dk = dkp;
	if ((s.ciphertext = malloc(len + CRYPTO_TAG_LEN)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "cannot allocate memory to seal a value");
		goto out;
	}
	randombytes_buf(dk, CRYPTO_KEY_LEN);
	randombytes_buf(s.nonce, sizeof(s.nonce));
	if (crypto_aead_xchacha20poly1305_ietf_encrypt(s.ciphertext, &ct_len, value, len,
	        (const uint8_t *)ad_str, ad_len, NULL, s.nonce, dk) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "cannot seal the value");
		goto out;
	}
	s.ciphertext_len = (size_t)ct_len;
	memcpy(s.key_id, m->key_id, sizeof(s.key_id));
	randombytes_buf(s.wrapped_key, CRYPTO_NONCE_LEN);
	if (crypto_aead_xchacha20poly1305_ietf_encrypt(s.wrapped_key + CRYPTO_NONCE_LEN, &wk_len,
	        dk, CRYPTO_KEY_LEN, (const uint8_t *)m->key_id, CRYPTO_KEY_ID_LEN, NULL,
	        s.wrapped_key, m->key) != 0 ||
	    wk_len != CRYPTO_KEY_LEN + CRYPTO_TAG_LEN) {
		r = pcs_fail(err, PCS_INTERNAL, "cannot wrap the data key");
		goto out;
	}
	*out = s;
	memset(&s, 0, sizeof(s));
	r = 0;
out:
	secbuf_free(dkp);
	crypto_sealed_clear(&s);
	return r;
}

void crypto_sealed_clear(struct crypto_sealed *s)
{
	if (s == NULL)
		return;
	if (s->ciphertext != NULL) {
		sodium_memzero(s->ciphertext, s->ciphertext_len);
		free(s->ciphertext);
	}
	sodium_memzero(s, sizeof(*s));
}

static int key_id_well_formed(const char *id)
{
	size_t i;

	for (i = 0; i < CRYPTO_KEY_ID_LEN; i++) {
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	}
	return id[CRYPTO_KEY_ID_LEN] == '\0';
}

int crypto_open(const struct crypto_master *m, const struct crypto_ad *ad,
    const uint8_t *ciphertext, size_t ciphertext_len, const uint8_t *nonce, size_t nonce_len,
    const uint8_t *wrapped_key, size_t wrapped_key_len, const char *key_id,
    struct crypto_plain *out, pcs_error *err)
{
	char ad_str[CRYPTO_AD_MAX];
	size_t ad_len = 0;
	unsigned long long dk_len = 0, pt_len = 0;
	void *dkp = NULL;
	uint8_t *dk;
	int r;

	out->data = NULL;
	out->len = 0;
	if ((r = crypto_ad_format(ad, ad_str, &ad_len, err)) != 0)
		goto out;
	/* Checked first: with another master key loaded, the clear error is the useful one. */
	if (key_id == NULL || !key_id_well_formed(key_id)) {
		r = pcs_fail(err, PCS_DATA_LOSS, "stored value has a malformed master key id");
		goto out;
	}
	if (strcmp(key_id, m->key_id) != 0) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "value was sealed under master key %s; the loaded key is %s", key_id,
		    m->key_id);
		goto out;
	}
	if (ciphertext == NULL || ciphertext_len < CRYPTO_TAG_LEN) {
		r = pcs_fail(err, PCS_DATA_LOSS,
		    "stored value is malformed: ciphertext of %zu bytes is shorter than its tag",
		    ciphertext_len);
		goto out;
	}
	if (nonce == NULL || nonce_len != CRYPTO_NONCE_LEN) {
		r = pcs_fail(err, PCS_DATA_LOSS,
		    "stored value is malformed: nonce of %zu bytes, expected %d", nonce_len,
		    CRYPTO_NONCE_LEN);
		goto out;
	}
	if (wrapped_key == NULL || wrapped_key_len != CRYPTO_WRAPPED_KEY_LEN) {
		r = pcs_fail(err, PCS_DATA_LOSS,
		    "stored value is malformed: wrapped key of %zu bytes, expected %d",
		    wrapped_key_len, CRYPTO_WRAPPED_KEY_LEN);
		goto out;
	}
	if ((r = secbuf_alloc(CRYPTO_KEY_LEN, &dkp, err)) != 0)
		goto out;
	dk = dkp;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(dk, &dk_len, NULL,
	        wrapped_key + CRYPTO_NONCE_LEN, CRYPTO_WRAPPED_KEY_LEN - CRYPTO_NONCE_LEN,
	        (const uint8_t *)m->key_id, CRYPTO_KEY_ID_LEN, wrapped_key, m->key) != 0 ||
	    dk_len != CRYPTO_KEY_LEN) {
		r = pcs_fail(err, PCS_DATA_LOSS, "stored value failed authentication");
		goto out;
	}
	if ((r = crypto_plain_alloc(ciphertext_len - CRYPTO_TAG_LEN, out, err)) != 0)
		goto out;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out->data, &pt_len, NULL, ciphertext,
	        ciphertext_len, (const uint8_t *)ad_str, ad_len, nonce, dk) != 0 ||
	    pt_len != out->len) {
		r = pcs_fail(err, PCS_DATA_LOSS, "stored value failed authentication");
		goto out;
	}
	r = 0;
out:
	secbuf_free(dkp);
	if (r != 0)
		crypto_plain_clear(out);
	return r;
}

int crypto_plain_alloc(size_t len, struct crypto_plain *out, pcs_error *err)
{
	void *p = NULL;
	int r;

	out->data = NULL;
	out->len = 0;
	if (len == SIZE_MAX)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "cannot allocate locked memory for %zu bytes", len);
	if ((r = secbuf_alloc(len + 1, &p, err)) != 0)
		return r;
	out->data = p;
	out->data[len] = '\0';
	out->len = len;
	return 0;
}

void crypto_plain_clear(struct crypto_plain *p)
{
	if (p == NULL)
		return;
	/* secbuf wipes the whole slot, whatever len says now. */
	secbuf_free(p->data);
	p->data = NULL;
	p->len = 0;
}

void crypto_uuid(char out[37])
{
	static const size_t group[] = { 4, 2, 2, 2, 6 };
	uint8_t b[16];
	size_t i, in = 0, at = 0;

	randombytes_buf(b, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	for (i = 0; i < sizeof(group) / sizeof(group[0]); i++) {
		if (i > 0)
			out[at++] = '-';
		sodium_bin2hex(out + at, 2 * group[i] + 1, b + in, group[i]);
		in += group[i];
		at += 2 * group[i];
	}
	out[at] = '\0';
}

void crypto_wipe(void *p, size_t len)
{
	if (p != NULL)
		sodium_memzero(p, len);
}

void crypto_hex(char *out, const uint8_t *in, size_t len)
{
	sodium_bin2hex(out, 2 * len + 1, in, len);
}

void crypto_checksum_hex(const void *data, size_t len, char out[65])
{
	uint8_t h[32];

	(void)crypto_generichash(h, sizeof(h), data, len, NULL, 0);
	sodium_bin2hex(out, 65, h, sizeof(h));
}
