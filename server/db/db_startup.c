/* db_startup: what pcsecretd asks the database once, on the blocking start-up connection. */
#include "db_internal.h"

#include <stdio.h>

enum { U_ROLE };
static const char *const user_cols[] = { [U_ROLE] = "role" };

static struct db_stmt current_user = {
	.name = "current_user",
	.sql = "SELECT current_user AS role",
	DB_COLS(user_cols),
};

/* key id, check value (hex) */
static struct db_stmt keyring_claim = {
	.name = "keyring claim",
	.sql = "INSERT INTO keyring (key_id, check_value, state) SELECT $1, decode($2, 'hex'), "
	       "'active' WHERE NOT EXISTS (SELECT 1 FROM keyring) AND NOT EXISTS "
	       "(SELECT 1 FROM secret_versions) ON CONFLICT DO NOTHING",
};

enum { K_KEY_ID, K_CHECK_VALUE };
static const char *const keyring_cols[] = {
	[K_KEY_ID] = "key_id",
	[K_CHECK_VALUE] = "check_value",
};

static struct db_stmt keyring_active = {
	.name = "keyring",
	DB_FROM("SELECT key_id, encode(check_value, 'hex') AS check_value",
	    "keyring WHERE state = 'active'"),
	DB_COLS(keyring_cols),
};

/* id, host, pid, version */
static struct db_stmt instance_register = {
	.name = "instances",
	.sql = "INSERT INTO instances (id, host, pid, version) VALUES ($1, $2, $3, $4)",
};

struct db_stmt *const db_startup_statements[] = { &current_user, &keyring_claim, &keyring_active,
	&instance_register, NULL };

int db_current_user(struct store_sync *db, char *out, size_t size, pcs_error *err)
{
	struct store_result *res = NULL;
	struct db_params p = { 0 };
	int r;

	if ((r = db_sync_run(db, &current_user, &p, &res, err)) != 0)
		return r;
	snprintf(out, size, "%s", db_col_str(res, 0, &current_user, U_ROLE));
	store_result_free(res);
	return 0;
}

int db_keyring_claim(
    struct store_sync *db, const char *key_id, const char *check_hex, pcs_error *err)
{
	struct store_result *res = NULL;
	struct db_params p = { 0 };
	int r;

	db_param_text(&p, key_id);
	db_param_text(&p, check_hex);
	r = db_sync_run(db, &keyring_claim, &p, &res, err);
	store_result_free(res);
	return r;
}

int db_keyring_active(struct store_sync *db, char *key_id, size_t key_id_size, char *check_hex,
    size_t check_hex_size, int *found, pcs_error *err)
{
	struct store_result *res = NULL;
	struct db_params p = { 0 };
	int r;

	*found = 0;
	if ((r = db_sync_run(db, &keyring_active, &p, &res, err)) != 0)
		return r;
	if (store_result_ntuples(res) > 0) {
		*found = 1;
		snprintf(key_id, key_id_size, "%s", db_col_str(res, 0, &keyring_active, K_KEY_ID));
		snprintf(check_hex, check_hex_size, "%s",
		    db_col_str(res, 0, &keyring_active, K_CHECK_VALUE));
	}
	store_result_free(res);
	return 0;
}

int db_instance_register(struct store_sync *db, const char *instance_id, const char *host, long pid,
    const char *version, pcs_error *err)
{
	struct store_result *res = NULL;
	struct db_params p = { 0 };
	char num[24];
	int r;

	snprintf(num, sizeof(num), "%ld", pid);
	db_param_text(&p, instance_id);
	db_param_text(&p, host);
	db_param_text(&p, num);
	db_param_text(&p, version);
	r = db_sync_run(db, &instance_register, &p, &res, err);
	store_result_free(res);
	return r;
}
