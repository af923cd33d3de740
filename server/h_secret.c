/*
 * CreateSecret, UpdateSecret, ListSecrets, DescribeSecret.
 * Writes take two round trips: the first learns the ids and the version number that the
 * value's associated data binds, the value is sealed here, the second stores it together with
 * the audit row. Values never reach the store unsealed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crypto.h"
#include "dispatch.h"
#include "handlers.h"
#include "hutil.h"
#include "ref.h"
#include "rows.h"
#include "server.h"

#define DESCRIPTION_MAX 1024

static int check_value(struct call *c, const ProtobufCBinaryData *v)
{
	size_t max = (size_t)call_server(c)->cfg->max_value;

	if (v->len == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "value is empty");
		return -1;
	}
	if (v->len > max) {
		call_fail(c, PCS_INVALID_ARGUMENT, "value is %zu bytes; the maximum is %zu (max_value)",
		    v->len, max);
		return -1;
	}
	return 0;
}

static int authorize_secret(struct call *c, const char *company, const char *name)
{
	if (h_company(c, company) != 0)
		return -1;
	if (!name_valid(name)) {
		call_fail(c, PCS_INVALID_ARGUMENT, "secret name \"%.128s\" is invalid: use 1 to 128 "
		    "lowercase letters, digits, '-', '_' or '.'", name);
		return -1;
	}
	call_set_target(c, NULL, name, NULL);
	return 0;
}

/*
 * Seals value for (company_id, secret_id, version) and runs sql with parameters
 * [prefix..., ciphertext, nonce, wrapped key, key id, suffix...] binary where bytea.
 */
static void store_sealed(struct call *c, const ProtobufCBinaryData *value, const char *company_id,
    const char *secret_id, uint32_t version, const char *sql, const char *const *prefix,
    int nprefix, const char *const *suffix, int nsuffix, call_db_cb cb)
{
	struct crypto_sealed sealed = { 0 };
	struct crypto_ad ad = { company_id, secret_id, version };
	const char *values[STORE_MAX_PARAMS];
	int lengths[STORE_MAX_PARAMS] = { 0 }, formats[STORE_MAX_PARAMS] = { 0 }, n = 0, r;
	struct store_query q;
	pcs_error err;

	if ((r = crypto_seal(call_server(c)->master, &ad, value->data, value->len, &sealed,
	    &err)) != 0) {
		call_fail_err(c, r, &err);
		return;
	}
	for (int i = 0; i < nprefix; i++)
		values[n++] = prefix[i];
	values[n] = (const char *)sealed.ciphertext;
	lengths[n] = (int)sealed.ciphertext_len;
	formats[n++] = 1;
	values[n] = (const char *)sealed.nonce;
	lengths[n] = CRYPTO_NONCE_LEN;
	formats[n++] = 1;
	values[n] = (const char *)sealed.wrapped_key;
	lengths[n] = CRYPTO_WRAPPED_KEY_LEN;
	formats[n++] = 1;
	values[n++] = sealed.key_id;
	for (int i = 0; i < nsuffix; i++)
		values[n++] = suffix[i];
	q.sql = sql;
	q.nparams = n;
	q.values = values;
	q.lengths = lengths;
	q.formats = formats;
	call_db(c, &q, cb);
	crypto_sealed_clear(&sealed);
}

static void reply_secret_create(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__CreateSecretReply rep = PCSECRET__V1__CREATE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	rows_secret(res, 0, &info);
	rep.secret = &info;
	call_reply(c, &rep.base);
}

static void on_create_prepared(struct call *c, const struct store_result *res)
{
	const Pcsecret__V1__CreateSecretRequest *in =
	    (const Pcsecret__V1__CreateSecretRequest *)call_request(c);
	char secret_id[37];
	const char *prefix[4], *suffix[1];

	crypto_uuid(secret_id);
	prefix[0] = rows_str(res, 0, 0);
	prefix[1] = secret_id;
	prefix[2] = in->name;
	prefix[3] = in->description;
	suffix[0] = call_actor(c);
	call_set_target(c, NULL, NULL, "1");
	store_sealed(c, &in->value, rows_str(res, 0, 0), secret_id, 1,
	    "SELECT " ROWS_SECRET_COLS " FROM pcs_create_secret($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	    prefix, 4, suffix, 1, reply_secret_create);
}

void handle_create_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__CreateSecretRequest *in,
    Pcsecret__V1__CreateSecretReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[2];

	if (authorize_secret(c, in->company, in->name) != 0 ||
	    check_value(c, &in->value) != 0)
		return;
	if (strlen(in->description) > DESCRIPTION_MAX) {
		call_fail(c, PCS_INVALID_ARGUMENT, "description is longer than %d bytes",
		    DESCRIPTION_MAX);
		return;
	}
	values[0] = in->company;
	values[1] = in->name;
	call_db_text_step(c, "SELECT company_id FROM pcs_secret_prepare_create($1, $2)", values, 2,
	    on_create_prepared);
}

static void reply_secret_update(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__UpdateSecretReply rep = PCSECRET__V1__UPDATE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;

	rows_secret(res, 0, &info);
	rep.secret = &info;
	call_reply(c, &rep.base);
}

/* Columns: company_id, secret_id, current_version, next_version, token_version. */
static void on_update_prepared(struct call *c, const struct store_result *res)
{
	const Pcsecret__V1__UpdateSecretRequest *in =
	    (const Pcsecret__V1__UpdateSecretRequest *)call_request(c);
	uint32_t current = rows_u32(res, 0, 2), next = rows_u32(res, 0, 3);
	uint32_t token_version = rows_u32(res, 0, 4);
	const char *prefix[3], *suffix[2];
	char version[16];

	if (token_version != 0) {
		/* A retry of an update that already happened: report it, make no new version. */
		prefix[0] = rows_str(res, 0, 1);
		snprintf(version, sizeof(version), "%u", token_version);
		call_set_target(c, NULL, NULL, version);
		call_db_text(c, "SELECT " ROWS_SECRET_COLS " FROM pcs_secret_row($1)", prefix, 1,
		    reply_secret_update);
		return;
	}
	if (in->expected_version != 0 && in->expected_version != current) {
		call_fail(c, PCS_ABORTED, "expected version %u but the current version is %u",
		    in->expected_version, current);
		return;
	}
	snprintf(version, sizeof(version), "%u", next);
	call_set_target(c, NULL, NULL, version);
	prefix[0] = rows_str(res, 0, 1);
	prefix[1] = version;
	prefix[2] = rows_str(res, 0, 2);
	suffix[0] = in->idempotency_token;
	suffix[1] = call_actor(c);
	store_sealed(c, &in->value, rows_str(res, 0, 0), rows_str(res, 0, 1), next,
	    "SELECT " ROWS_SECRET_COLS " FROM pcs_add_version($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	    prefix, 3, suffix, 2, reply_secret_update);
}

void handle_update_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__UpdateSecretRequest *in,
    Pcsecret__V1__UpdateSecretReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[3];

	if (authorize_secret(c, in->company, in->name) != 0 ||
	    check_value(c, &in->value) != 0)
		return;
	if (strlen(in->idempotency_token) > 128) {
		call_fail(c, PCS_INVALID_ARGUMENT, "idempotency token is longer than 128 bytes");
		return;
	}
	values[0] = in->company;
	values[1] = in->name;
	values[2] = in->idempotency_token;
	call_db_text_step(c, "SELECT company_id, secret_id, current_version, next_version, token_version "
	    "FROM pcs_secret_prepare_update($1, $2, $3)", values, 3, on_update_prepared);
}

static void on_listed(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__ListSecretsReply rep = PCSECRET__V1__LIST_SECRETS_REPLY__INIT;
	int n = store_result_ntuples(res);
	Pcsecret__V1__SecretInfo *items = NULL;
	Pcsecret__V1__SecretInfo **ptrs = NULL;

	if (h_repeated(c, (size_t)n, sizeof(*items), &items, &ptrs) != 0)
		return;
	for (int i = 0; i < n; i++)
		rows_secret(res, i, &items[i]);
	rep.secrets = ptrs;
	rep.n_secrets = (size_t)n;
	call_reply(c, &rep.base);
	free(items);
	free(ptrs);
}

void handle_list_secrets(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ListSecretsRequest *in,
    Pcsecret__V1__ListSecretsReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[1];

	if (h_company(c, in->company) != 0)
		return;
	values[0] = in->company;
	call_db_text(c, "SELECT " ROWS_SECRET_COLS " FROM pcs_list_secrets($1)", values, 1,
	    on_listed);
}

static void on_described(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__DescribeSecretReply rep = PCSECRET__V1__DESCRIBE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo info;
	int n = store_result_ntuples(res);
	Pcsecret__V1__VersionInfo *items = NULL;
	Pcsecret__V1__VersionInfo **ptrs = NULL;

	if (h_repeated(c, (size_t)n, sizeof(*items), &items, &ptrs) != 0)
		return;
	rows_secret(res, 0, &info);
	for (int i = 0; i < n; i++) {
		pcsecret__v1__version_info__init(&items[i]);
		items[i].version = rows_u32(res, i, 8);
		items[i].state = (char *)rows_str(res, i, 9);
		items[i].created_at = (char *)rows_str(res, i, 10);
		items[i].created_by = (char *)rows_str(res, i, 11);
		items[i].key_id = (char *)rows_str(res, i, 12);
	}
	info.versions = ptrs;
	info.n_versions = (size_t)n;
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
	const char *values[2];

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	values[0] = in->company;
	values[1] = in->name;
	call_db_text(c, "SELECT " ROWS_SECRET_COLS ", version, state, pcs_ts(version_created_at), "
	    "version_created_by, key_id FROM pcs_describe_secret($1, $2)", values, 2,
	    on_described);
}

static void on_deleted(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__DeleteSecretReply rep = PCSECRET__V1__DELETE_SECRET_REPLY__INIT;
	int n = store_result_ntuples(res);
	char **unbound = calloc((size_t)n + 1, sizeof(*unbound));

	if (unbound == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++)
		unbound[i] = (char *)rows_str(res, i, 0);
	rep.unbound = unbound;
	rep.n_unbound = (size_t)n;
	call_reply(c, &rep.base);
	free(unbound);
}

void handle_delete_secret(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__DeleteSecretRequest *in,
    Pcsecret__V1__DeleteSecretReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	const char *values[3];

	if (authorize_secret(c, in->company, in->name) != 0)
		return;
	values[0] = in->company;
	values[1] = in->name;
	values[2] = in->force ? "true" : "false";
	call_db_text(c, "SELECT unbound FROM pcs_delete_secret($1, $2, $3)", values, 3,
	    on_deleted);
}
