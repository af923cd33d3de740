/*
 * CreateSecret, UpdateSecret, ListSecrets, DescribeSecret, the version lifecycle:
 * PromoteSecret, RollbackSecret, DisableSecretVersion, EnableSecretVersion, and the secret's
 * own: DeleteSecret (soft, restorable), RestoreSecret, PurgeSecret; retention and destroying
 * one version: SetSecretRetention, DestroySecretVersion.
 * Writes take two round trips: the first learns the ids and the version number that the
 * value's associated data binds, the value is sealed here, the second stores it together with
 * the audit row. Values never reach the store unsealed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crypto.h"
#include "db.h"
#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "server.h"

#define DESCRIPTION_MAX 1024
/* A deletion's recovery window, in days (docs/lifecycle.md). */
#define RECOVERY_DAYS_DEFAULT 7
#define RECOVERY_DAYS_MAX 30
/* The largest retention limit (docs/lifecycle.md): above it, a typo rather than a policy. */
#define RETENTION_MAX 10000
/*
 * How many times an update without an expected version prepares, seals and stores when it
 * keeps losing the race to other updates of the same secret. Each loss means another update
 * was stored, so racing updates make progress, but which of n racers wins a round is near
 * chance: one loses k rounds in a row with odds of about ((n - 1) / n)^k, which at 8 racers is
 * 1 in 70 for k = 32 (seen in tests/integration/test_update_race.c) and 1 in 10^15 for 256.
 * The call's deadline is the real bound (an ended call runs no further statement); this one
 * only stops a call that would otherwise spin until then.
 */
#define UPDATE_ATTEMPTS 256
/*
 * How many times a create with an idempotency token prepares again after losing its name to a
 * create with the same token (racing daemons): the second preparation finds the winner and
 * answers from it, so more than one more is only for a winner deleted in between.
 */
#define CREATE_ATTEMPTS 3
#define TOKEN_MAX 128

static int check_value(struct call *c, const ProtobufCBinaryData *v)
{
	size_t max = (size_t)call_server(c)->cfg->max_value;

	if (v->len == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "value is empty");
		return -1;
	}
	if (v->len > max) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "value is %zu bytes; the maximum is %zu (max_value)", v->len, max);
		return -1;
	}
	return 0;
}

/*
 * A description, at create and at update: it is shown in one line of a table, so at most
 * DESCRIPTION_MAX bytes and no control character (the wire already guarantees UTF-8).
 */
static int check_description(struct call *c, const char *description)
{
	size_t len = strlen(description);

	if (len > DESCRIPTION_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "description is longer than %d bytes",
		    DESCRIPTION_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)description[i] < 0x20 || description[i] == 0x7f) {
			call_fail(c, PCS_INVALID_ARGUMENT,
			    "description has a control character at byte %zu: use one line of "
			    "printable text",
			    i);
			return -1;
		}
	return 0;
}

static int check_token(struct call *c, const char *token)
{
	if (strlen(token) > TOKEN_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "idempotency token is longer than %d bytes",
		    TOKEN_MAX);
		return -1;
	}
	return 0;
}

static int authorize_secret(struct call *c, const char *company, const char *name)
{
	if (h_company(c, company) != 0)
		return -1;
	if (!name_valid(name)) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "secret name \"%.128s\" is invalid: use 1 to 128 "
		    "lowercase letters, digits, '-', '_' or '.'",
		    name);
		return -1;
	}
	call_set_target(c, NULL, name, NULL);
	return 0;
}

static void secret_msg(const struct db_secret *row, Pcsecret__V1__SecretInfo *out)
{
	pcsecret__v1__secret_info__init(out);
	out->id = (char *)row->id;
	out->company = (char *)row->company;
	out->name = (char *)row->name;
	out->description = (char *)row->description;
	out->current_version = row->current_version;
	out->created_at = (char *)row->created_at;
	out->updated_at = (char *)row->updated_at;
	out->created_by = (char *)row->created_by;
	out->deleted_at = (char *)row->deleted_at;
	out->deleted_by = (char *)row->deleted_by;
	out->restore_until = (char *)row->restore_until;
	out->purged = row->purged;
	out->max_versions = row->max_versions;
}

/*
 * Seals value for (company_id, secret_id, version) into *sealed and *out (which points into
 * it). Returns 0, or <0 with the call failed; the caller clears sealed either way.
 */
static int seal(struct call *c, const ProtobufCBinaryData *value, const char *company_id,
    const char *secret_id, uint32_t version, struct crypto_sealed *sealed, struct db_sealed *out)
{
	struct crypto_ad ad = { company_id, secret_id, version };
	pcs_error err;
	int r;

	if ((r = crypto_seal(call_server(c)->master, &ad, value->data, value->len, sealed, &err)) !=
	    0) {
		call_fail_err(c, r, &err);
		return r;
	}
	out->ciphertext = sealed->ciphertext;
	out->ciphertext_len = sealed->ciphertext_len;
	out->nonce = sealed->nonce;
	out->nonce_len = CRYPTO_NONCE_LEN;
	out->wrapped_key = sealed->wrapped_key;
	out->wrapped_key_len = CRYPTO_WRAPPED_KEY_LEN;
	out->key_id = sealed->key_id;
	return 0;
}

static void reply_secret_create(struct call *c, const struct db_secret *row)
{
	Pcsecret__V1__CreateSecretReply rep = PCSECRET__V1__CREATE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	secret_msg(row, &info);
	rep.secret = &info;
	call_reply(c, &rep.base);
}

static int value_tag(struct call *c, const char *secret_id, const ProtobufCBinaryData *value,
    uint8_t tag[CRYPTO_VALUE_TAG_LEN], char hex[2 * CRYPTO_VALUE_TAG_LEN + 1]);
static void on_create_prepared(struct call *c, const struct db_secret_prepared *prep);

/*
 * The store's outcome. Only a create that lost its name to a create with the same token comes
 * here failed (ABORTED, nothing of it kept): prepared again, it finds the winner and gets the
 * winner's answer, or a refusal if the two requests differ.
 */
static void on_create_stored(
    struct call *c, uint32_t attempt, int status, const char *message, const struct db_secret *row)
{
	const Pcsecret__V1__CreateSecretRequest *in = (const Pcsecret__V1__CreateSecretRequest *)
	    call_request(c);

	if (status == 0) {
		reply_secret_create(c, row);
		return;
	}
	if (attempt >= CREATE_ATTEMPTS) {
		call_fail(c, PCS_ABORTED, "%s; try again", message);
		return;
	}
	db_secret_prepare_create_attempt(
	    c, in->company, in->name, in->idempotency_token, attempt + 1, on_create_prepared);
}

/*
 * A create's token already used for this name: the first call's answer stands only for the
 * same value and description (the token is the client's string: never echoed). 0, or <0 with
 * the call failed.
 */
static int create_retry_fits(struct call *c, const Pcsecret__V1__CreateSecretRequest *in,
    const struct db_secret_prepared *prep, const char *tag_hex)
{
	if (prep->token_tag[0] != '\0' &&
	    (strlen(prep->token_tag) != strlen(tag_hex) ||
	        !crypto_tag_equal(prep->token_tag, tag_hex, strlen(tag_hex)))) {
		call_fail(c, PCS_FAILED_PRECONDITION,
		    "this idempotency token created secret %s/%s with a different value",
		    in->company, in->name);
		return -PCS_FAILED_PRECONDITION;
	}
	if (strcmp(prep->token_description, in->description) != 0) {
		call_fail(c, PCS_FAILED_PRECONDITION,
		    "this idempotency token created secret %s/%s with a different description",
		    in->company, in->name);
		return -PCS_FAILED_PRECONDITION;
	}
	return 0;
}

static void on_create_prepared(struct call *c, const struct db_secret_prepared *prep)
{
	const Pcsecret__V1__CreateSecretRequest *in = (const Pcsecret__V1__CreateSecretRequest *)
	    call_request(c);
	int token = in->idempotency_token[0] != '\0';
	struct crypto_sealed sealed = { 0 };
	struct db_sealed stored;
	uint8_t tag[CRYPTO_VALUE_TAG_LEN] = { 0 };
	char tag_hex[2 * CRYPTO_VALUE_TAG_LEN + 1] = "";
	char secret_id[37];

	call_set_target(c, NULL, NULL, "1");
	if (prep->token_secret[0] != '\0') {
		/* A retry of a create that already happened: report the secret, create nothing. */
		if (value_tag(c, prep->token_secret, &in->value, tag, tag_hex) == 0 &&
		    create_retry_fits(c, in, prep, tag_hex) == 0)
			db_secret_get(c, prep->token_secret, reply_secret_create);
		return;
	}
	crypto_uuid(secret_id);
	if (token && value_tag(c, secret_id, &in->value, tag, tag_hex) != 0)
		return;
	if (seal(c, &in->value, prep->company_id, secret_id, 1, &sealed, &stored) == 0)
		db_secret_create_attempt(c, prep->company_id, secret_id, in->name, in->description,
		    &stored, in->idempotency_token, tag, token ? sizeof(tag) : 0, prep->attempt,
		    on_create_stored);
	crypto_sealed_clear(&sealed);
}

void handle_create_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateSecretRequest *in, Pcsecret__V1__CreateSecretReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_secret(c, in->company, in->name) != 0 || check_value(c, &in->value) != 0 ||
	    check_description(c, in->description) != 0 ||
	    check_token(c, in->idempotency_token) != 0)
		return;
	db_secret_prepare_create_attempt(
	    c, in->company, in->name, in->idempotency_token, 1, on_create_prepared);
}

static void reply_secret_update(struct call *c, const struct db_secret *row)
{
	Pcsecret__V1__UpdateSecretReply rep = PCSECRET__V1__UPDATE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	secret_msg(row, &info);
	rep.secret = &info;
	call_reply(c, &rep.base);
}

static void on_update_prepared(struct call *c, const struct db_secret_prepared *prep);

/*
 * The store's outcome. A plain update that lost the race (another update took the version
 * number it was sealed for) is prepared and sealed again for the next number: users expect
 * concurrent updates to serialize, not to fail. With the client's own expected version the
 * loss is its answer, naming the current version.
 */
static void on_update_stored(
    struct call *c, uint32_t attempt, int status, const char *message, const struct db_secret *row)
{
	const Pcsecret__V1__UpdateSecretRequest *in = (const Pcsecret__V1__UpdateSecretRequest *)
	    call_request(c);

	if (status == 0) {
		reply_secret_update(c, row);
		return;
	}
	if (in->expected_version != 0) {
		call_fail(c, status, "%s", message);
		return;
	}
	if (attempt >= UPDATE_ATTEMPTS) {
		call_fail(c, PCS_ABORTED,
		    "other updates of the secret won the race %u times in a row (%s); try again",
		    attempt, message);
		return;
	}
	db_secret_prepare_update_attempt(
	    c, in->company, in->name, in->idempotency_token, attempt + 1, on_update_prepared);
}

/* The tag of the request's value for the secret, as bytes and as hex (crypto_value_tag). */
static int value_tag(struct call *c, const char *secret_id, const ProtobufCBinaryData *value,
    uint8_t tag[CRYPTO_VALUE_TAG_LEN], char hex[2 * CRYPTO_VALUE_TAG_LEN + 1])
{
	pcs_error err;
	int r;

	if ((r = crypto_value_tag(
	         call_server(c)->master, secret_id, value->data, value->len, tag, &err)) != 0) {
		call_fail_err(c, r, &err);
		return r;
	}
	crypto_hex(hex, tag, CRYPTO_VALUE_TAG_LEN);
	return 0;
}

/*
 * A token already used: its answer stands only for the same request. Answering another value
 * (or another expected version) with the first call's version would report a write that never
 * happened, so that is refused; a version stored without a tag (before migration 008, or by an
 * older daemon) cannot be compared and is answered as before. 0, or <0 with the call failed.
 */
static int token_reuse_fits(struct call *c, const Pcsecret__V1__UpdateSecretRequest *in,
    const struct db_secret_prepared *prep, const char *tag_hex)
{
	if (prep->token_tag[0] != '\0' &&
	    (strlen(prep->token_tag) != strlen(tag_hex) ||
	        !crypto_tag_equal(prep->token_tag, tag_hex, strlen(tag_hex)))) {
		/* The token is the client's own string: named by what it made, not echoed. */
		call_fail(c, PCS_FAILED_PRECONDITION,
		    "this idempotency token was used for a different value (version %u)",
		    prep->token_version);
		return -PCS_FAILED_PRECONDITION;
	}
	if (in->expected_version != 0 && prep->token_tag[0] != '\0' &&
	    in->expected_version != prep->token_expected) {
		call_fail(c, PCS_FAILED_PRECONDITION,
		    "this idempotency token was used with expected version %u (version %u), not %u",
		    prep->token_expected, prep->token_version, in->expected_version);
		return -PCS_FAILED_PRECONDITION;
	}
	if (prep->token_tag[0] != '\0' &&
	    ((in->set_description != 0) != (prep->token_described != 0) ||
	        (in->set_description && strcmp(in->description, prep->token_description) != 0))) {
		call_fail(c, PCS_FAILED_PRECONDITION,
		    "this idempotency token was used with a different description (version %u)",
		    prep->token_version);
		return -PCS_FAILED_PRECONDITION;
	}
	return 0;
}

static void on_update_prepared(struct call *c, const struct db_secret_prepared *prep)
{
	const Pcsecret__V1__UpdateSecretRequest *in = (const Pcsecret__V1__UpdateSecretRequest *)
	    call_request(c);
	struct crypto_sealed sealed = { 0 };
	struct db_sealed stored;
	uint8_t tag[CRYPTO_VALUE_TAG_LEN] = { 0 };
	char tag_hex[2 * CRYPTO_VALUE_TAG_LEN + 1] = "";
	char version[16];

	if (in->idempotency_token[0] != '\0' &&
	    value_tag(c, prep->secret_id, &in->value, tag, tag_hex) != 0)
		return;
	if (prep->token_version != 0) {
		/* A retry of an update that already happened: report it, make no new version. */
		snprintf(version, sizeof(version), "%u", prep->token_version);
		call_set_target(c, NULL, NULL, version);
		if (token_reuse_fits(c, in, prep, tag_hex) == 0)
			db_secret_get(c, prep->secret_id, reply_secret_update);
		return;
	}
	if (in->expected_version != 0 && in->expected_version != prep->current_version) {
		call_fail(c, PCS_ABORTED, "expected version %u but the current version is %u",
		    in->expected_version, prep->current_version);
		return;
	}
	snprintf(version, sizeof(version), "%u", prep->next_version);
	call_set_target(c, NULL, NULL, version);
	/* Sealed anew at every attempt: the AD binds the version number, which may have moved. */
	if (seal(c, &in->value, prep->company_id, prep->secret_id, prep->next_version, &sealed,
	        &stored) == 0)
		db_secret_add_version_attempt(c, prep->secret_id, prep->next_version,
		    prep->current_version, &stored, in->idempotency_token, tag,
		    in->idempotency_token[0] != '\0' ? sizeof(tag) : 0, !in->no_promote,
		    in->set_description ? in->description : NULL, prep->attempt, on_update_stored);
	crypto_sealed_clear(&sealed);
}

/*
 * No value, a description: the description changes and no version is made. The value's
 * options mean nothing here, and saying so beats ignoring them: a token would name a write
 * whose retry is harmless anyway (setting the same description twice changes nothing more).
 */
static void update_description_only(struct call *c, const Pcsecret__V1__UpdateSecretRequest *in)
{
	if (in->idempotency_token[0] != '\0' || in->expected_version != 0 || in->no_promote) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "an update of the description alone takes no expected version, idempotency "
		    "token or no-promote: those apply to a new value");
		return;
	}
	db_secret_set_description(c, in->company, in->name, in->description, reply_secret_update);
}

void handle_update_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__UpdateSecretRequest *in, Pcsecret__V1__UpdateSecretReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_secret(c, in->company, in->name) != 0 ||
	    (in->set_description && check_description(c, in->description) != 0))
		return;
	if (in->value.len == 0 && in->set_description) {
		update_description_only(c, in);
		return;
	}
	if (in->value.len == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "nothing to update: give a new value, a new description, or both");
		return;
	}
	if (check_value(c, &in->value) != 0 || check_token(c, in->idempotency_token) != 0)
		return;
	db_secret_prepare_update_attempt(
	    c, in->company, in->name, in->idempotency_token, 1, on_update_prepared);
}

static void on_listed(struct call *c, const struct db_secret *rows, size_t n)
{
	Pcsecret__V1__ListSecretsReply rep = PCSECRET__V1__LIST_SECRETS_REPLY__INIT;
	Pcsecret__V1__SecretInfo *items = NULL;
	Pcsecret__V1__SecretInfo **ptrs = NULL;

	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (size_t i = 0; i < n; i++)
		secret_msg(&rows[i], &items[i]);
	rep.secrets = ptrs;
	rep.n_secrets = n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_secrets(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListSecretsRequest *in, Pcsecret__V1__ListSecretsReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (h_company(c, in->company) != 0)
		return;
	db_secret_list(c, in->company, in->deleted, on_listed);
}

static void on_described(
    struct call *c, const struct db_secret *secret, const struct db_version *versions, size_t n)
{
	Pcsecret__V1__DescribeSecretReply rep = PCSECRET__V1__DESCRIBE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;
	Pcsecret__V1__VersionInfo *items = NULL;
	Pcsecret__V1__VersionInfo **ptrs = NULL;

	if (h_repeated(c, n, sizeof(*items), &items, &ptrs) != 0)
		return;
	secret_msg(secret, &info);
	for (size_t i = 0; i < n; i++) {
		pcsecret__v1__version_info__init(&items[i]);
		items[i].version = versions[i].version;
		items[i].state = (char *)versions[i].state;
		items[i].created_at = (char *)versions[i].created_at;
		items[i].created_by = (char *)versions[i].created_by;
		items[i].key_id = (char *)versions[i].key_id;
		items[i].disabled_at = (char *)versions[i].disabled_at;
		items[i].disabled_by = (char *)versions[i].disabled_by;
		items[i].enabled_at = (char *)versions[i].enabled_at;
		items[i].enabled_by = (char *)versions[i].enabled_by;
		items[i].promoted_at = (char *)versions[i].promoted_at;
		items[i].promoted_by = (char *)versions[i].promoted_by;
		items[i].destroyed_at = (char *)versions[i].destroyed_at;
		items[i].destroyed_by = (char *)versions[i].destroyed_by;
		items[i].destroyed_how = (char *)versions[i].destroyed_how;
		/* Derived here from the same snapshot, so clients need not work it out. */
		items[i].latest = versions[i].version == secret->current_version;
		items[i].staged = versions[i].version > secret->current_version &&
		    strcmp(versions[i].state, "active") == 0;
	}
	info.versions = ptrs;
	info.n_versions = n;
	rep.secret = &info;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_describe_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DescribeSecretRequest *in,
    Pcsecret__V1__DescribeSecretReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	db_secret_describe(c, in->company, in->name, on_described);
}

static void on_deleted(
    struct call *c, const char *const *bound, size_t n, const char *restore_until)
{
	Pcsecret__V1__DeleteSecretReply rep = PCSECRET__V1__DELETE_SECRET_REPLY__INIT;

	/* protobuf-c's char ** for a repeated string: the reply only reads them. */
	rep.bound = (char **)(uintptr_t)bound;
	rep.n_bound = n;
	rep.restore_until = (char *)(uintptr_t)restore_until;
	call_reply(c, &rep.base);
}

void handle_delete_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DeleteSecretRequest *in, Pcsecret__V1__DeleteSecretReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	uint32_t days = in->recovery_days != 0 ? in->recovery_days : RECOVERY_DAYS_DEFAULT;

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	if (days > RECOVERY_DAYS_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "recovery days %u is out of range: 1 to %d",
		    days, RECOVERY_DAYS_MAX);
		return;
	}
	db_secret_delete(c, in->company, in->name, in->force, days, on_deleted);
}

static void reply_restored(struct call *c, const struct db_secret *row)
{
	Pcsecret__V1__RestoreSecretReply rep = PCSECRET__V1__RESTORE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	secret_msg(row, &info);
	rep.secret = &info;
	call_reply(c, &rep.base);
}

void handle_restore_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretNameRequest *in, Pcsecret__V1__RestoreSecretReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	db_secret_restore(c, in->company, in->name, reply_restored);
}

static void reply_purged(struct call *c, const struct db_secret *row)
{
	Pcsecret__V1__PurgeSecretReply rep = PCSECRET__V1__PURGE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	secret_msg(row, &info);
	rep.secret = &info;
	rep.destroyed = row->destroyed;
	call_reply(c, &rep.base);
}

void handle_purge_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretNameRequest *in, Pcsecret__V1__PurgeSecretReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	db_secret_purge(c, in->company, in->name, reply_purged);
}

static void reply_version_action(struct call *c, const struct db_secret *row)
{
	Pcsecret__V1__SecretVersionReply rep = PCSECRET__V1__SECRET_VERSION_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	secret_msg(row, &info);
	rep.secret = &info;
	call_reply(c, &rep.base);
}

/* The four lifecycle rpcs differ only in what the database does to the version. */
static void version_action(
    struct call *c, const Pcsecret__V1__SecretVersionRequest *in, enum db_version_action action)
{
	char version[16];

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	if (in->version == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "version is 0: name a version, 1 or more");
		return;
	}
	snprintf(version, sizeof(version), "%u", in->version);
	call_set_target(c, NULL, NULL, version);
	db_secret_version_action(
	    c, in->company, in->name, in->version, action, reply_version_action);
}

void handle_promote_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	version_action(c, in, DB_VERSION_PROMOTE);
}

void handle_rollback_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	version_action(c, in, DB_VERSION_ROLLBACK);
}

void handle_disable_secret_version(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	version_action(c, in, DB_VERSION_DISABLE);
}

void handle_enable_secret_version(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	version_action(c, in, DB_VERSION_ENABLE);
}

/* ---- retention and destroying one version (docs/lifecycle.md) ---- */

static void reply_retention(struct call *c, const struct db_secret *row)
{
	Pcsecret__V1__SetSecretRetentionReply rep = PCSECRET__V1__SET_SECRET_RETENTION_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	secret_msg(row, &info);
	rep.secret = &info;
	rep.destroyed = row->destroyed;
	call_reply(c, &rep.base);
}

void handle_set_secret_retention(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SetSecretRetentionRequest *in,
    Pcsecret__V1__SetSecretRetentionReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	if (in->max_versions < 0) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "max versions %lld is negative: give 0 (unlimited) to %d",
		    (long long)in->max_versions, RETENTION_MAX);
		return;
	}
	if (in->max_versions > RETENTION_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT,
		    "max versions %lld is too large: give 0 (unlimited) to %d",
		    (long long)in->max_versions, RETENTION_MAX);
		return;
	}
	db_secret_set_retention(
	    c, in->company, in->name, (uint32_t)in->max_versions, reply_retention);
}

void handle_destroy_secret_version(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__SecretVersionRequest *in, Pcsecret__V1__SecretVersionReply_Closure closure,
    void *closure_data)
{
	HANDLER_PROLOGUE(c);

	char version[16];

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	if (in->version == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "version is 0: name a version, 1 or more");
		return;
	}
	snprintf(version, sizeof(version), "%u", in->version);
	call_set_target(c, NULL, NULL, version);
	db_secret_destroy_version(c, in->company, in->name, in->version, reply_version_action);
}
