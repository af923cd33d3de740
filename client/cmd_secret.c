/*
 * pcctl secret create, update, list, show, the version lifecycle (promote, rollback,
 * disable-version, enable-version; docs/lifecycle.md), delete (soft), restore and purge,
 * set-retention and destroy-version; import's and watch's rows (their handlers are in
 * cmd_import.c and cmd_watch.c). No command here prints a value.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pcctl_cmd.h"
#include "ref.h"
#include "render.h"
#include "value_input.h"

/*
 * Reads the value of the secret at path into *value (freed with value_free), prompting with
 * what ("Value", "New value") on a terminal. Connects first: a missing daemon should not
 * cost the operator typing the value.
 */
static int read_value(struct ctl *ctl, const struct ctl_args *args, const char *what,
    const struct ctl_path *path, ProtobufCBinaryData *value, pcs_error *err)
{
	char prompt[320];
	int r;

	(void)snprintf(prompt, sizeof(prompt), "%s for %s/%s (input hidden): ", what, path->company,
	    path->name);
	if ((r = ctl_connect(ctl, err)) != 0)
		return r;
	return value_read(ctl_value(args, "from-file"), prompt, &value->data, &value->len, err);
}

static int cmd_secret_create(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__CreateSecretRequest req = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	const char *description = ctl_value(args, "description");
	const char *token = ctl_value(args, "idempotency-token");
	const Pcsecret__V1__SecretInfo *s;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0 ||
	    (r = read_value(ctl, args, "Value", &path, &req.value, err)) != 0)
		goto out;
	req.description = (char *)(description != NULL ? description : "");
	req.idempotency_token = (char *)(token != NULL ? token : "");
	if ((r = ctl_call(ctl, "CreateSecret", &req.base, err)) != 0)
		goto out;
	if ((s = ((const Pcsecret__V1__CreateSecretReply *)ctl->reply)->secret) == NULL) {
		r = ctl_no_reply_field("CreateSecret", err);
		goto out;
	}
	if (ctl->json) {
		r = ctl_emit(j_secret(s, 0), err);
		goto out;
	}
	printf(
	    "created secret %s/%s (version %u, id ", path.company, path.name, s->current_version);
	out_safe(stdout, s->id);
	printf(")\n");
	r = 0;
out:
	value_free(req.value.data);
	return r;
}

/*
 * --description TEXT sets the description. Without --from-file it is all the update does: no
 * value is read (not even from a pipe on stdin), no version is made, and the value's options
 * are refused, so a description change can never turn into a value change by accident.
 * 1: description only; 0: a value is to be read too (or no description); <0: usage.
 */
static int update_description(struct ctl *ctl, const struct ctl_args *args,
    Pcsecret__V1__UpdateSecretRequest *req, pcs_error *err)
{
	const char *description = ctl_value(args, "description");

	if (description == NULL)
		return 0;
	req->description = (char *)description;
	req->set_description = 1;
	if (ctl_value(args, "from-file") != NULL)
		return 0;
	if (req->expected_version != 0 || req->idempotency_token[0] != '\0' || req->no_promote)
		return ctl_usage_fail(ctl, err,
		    "--description without --from-file changes only the description: "
		    "--expected-version, --idempotency-token and --no-promote need a value "
		    "(--from-file FILE, or --from-file /dev/stdin for a pipe)");
	return 1;
}

static int cmd_secret_update(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__UpdateSecretRequest req = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;
	const char *expected = ctl_value(args, "expected-version");
	const char *token = ctl_value(args, "idempotency-token");
	const Pcsecret__V1__SecretInfo *s;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		goto out;
	if (expected != NULL &&
	    (r = ctl_parse_u32(ctl, "--expected-version", expected, &req.expected_version, err)) !=
	        0)
		goto out;
	req.idempotency_token = (char *)(token != NULL ? token : "");
	req.no_promote = ctl_flag(args, "no-promote");
	if ((r = update_description(ctl, args, &req, err)) < 0 ||
	    (r == 0 && (r = read_value(ctl, args, "New value", &path, &req.value, err)) != 0))
		goto out;
	if ((r = ctl_call(ctl, "UpdateSecret", &req.base, err)) != 0)
		goto out;
	if ((s = ((const Pcsecret__V1__UpdateSecretReply *)ctl->reply)->secret) == NULL) {
		r = ctl_no_reply_field("UpdateSecret", err);
		goto out;
	}
	if (ctl->json) {
		r = ctl_emit(j_secret(s, 0), err);
		goto out;
	}
	if (req.value.len == 0)
		printf("updated the description of secret %s/%s; no new version (latest is version "
		       "%u)\n",
		    path.company, path.name, s->current_version);
	else if (req.no_promote)
		printf("updated secret %s/%s: new version staged, latest is still version %u "
		       "(pcctl secret show lists it; promote it with pcctl secret promote)\n",
		    path.company, path.name, s->current_version);
	else
		printf("updated secret %s/%s: version %u is current\n", path.company, path.name,
		    s->current_version);
	r = 0;
out:
	value_free(req.value.data);
	return r;
}

static json_t *secret_json(const void *items, size_t i)
{
	return j_secret(((Pcsecret__V1__SecretInfo *const *)items)[i], 0);
}

static int secret_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__SecretInfo *s = ((Pcsecret__V1__SecretInfo *const *)items)[i];
	char ver[16];

	(void)snprintf(ver, sizeof(ver), "%u", s->current_version);
	return table_add(t, s->name, ver, s->updated_at, s->created_by, s->description);
}

static int deleted_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__SecretInfo *s = ((Pcsecret__V1__SecretInfo *const *)items)[i];

	return table_add(
	    t, s->name, s->deleted_at, s->deleted_by, s->restore_until, s->purged ? "yes" : "no");
}

static int cmd_secret_list(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__ListSecretsRequest req = PCSECRET__V1__LIST_SECRETS_REQUEST__INIT;
	const Pcsecret__V1__ListSecretsReply *rep;
	int r;

	req.company = args->pos[0];
	req.deleted = ctl_flag(args, "deleted");
	if ((r = ctl_call(ctl, "ListSecrets", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__ListSecretsReply *)ctl->reply;
	if (ctl->json)
		return ctl_emit_array(rep->secrets, rep->n_secrets, secret_json, err);
	if (req.deleted)
		return ctl_print_table(
		    table_new(5, "NAME", "DELETED", "DELETED BY", "RESTORE UNTIL", "PURGED"),
		    rep->secrets, rep->n_secrets, deleted_row, err);
	return ctl_print_table(
	    table_new(5, "NAME", "VERSION", "UPDATED", "CREATED BY", "DESCRIPTION"), rep->secrets,
	    rep->n_secrets, secret_row, err);
}

static int version_row(struct table *t, const void *items, size_t i)
{
	const Pcsecret__V1__VersionInfo *v = ((Pcsecret__V1__VersionInfo *const *)items)[i];

	const char *mark = v->latest ? "latest" : v->staged ? "staged" : "";
	const char *changed = "";
	char ver[16], change[160];

	(void)snprintf(ver, sizeof(ver), "%u", v->version);
	/* The last lifecycle change of the version, so a disabled one says who and when. */
	if (strcmp(v->state, "destroyed") == 0 && v->destroyed_at[0] != '\0') {
		(void)snprintf(change, sizeof(change), "destroyed (%.16s) %.40s by %.80s",
		    v->destroyed_how, v->destroyed_at, v->destroyed_by);
		return table_add(
		    t, ver, mark, v->state, v->created_at, v->created_by, v->key_id, change);
	}
	if (strcmp(v->state, "disabled") == 0 && v->disabled_at[0] != '\0')
		changed = "disabled";
	else if (v->enabled_at[0] != '\0')
		changed = "enabled";
	if (changed[0] != '\0') {
		(void)snprintf(change, sizeof(change), "%s %.40s by %.80s", changed,
		    changed[0] == 'd' ? v->disabled_at : v->enabled_at,
		    changed[0] == 'd' ? v->disabled_by : v->enabled_by);
		changed = change;
	}
	return table_add(t, ver, mark, v->state, v->created_at, v->created_by, v->key_id, changed);
}

static int cmd_secret_show(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__DescribeSecretRequest req = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	const Pcsecret__V1__SecretInfo *s;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	if ((r = ctl_call(ctl, "DescribeSecret", &req.base, err)) != 0)
		return r;
	if ((s = ((const Pcsecret__V1__DescribeSecretReply *)ctl->reply)->secret) == NULL)
		return ctl_no_reply_field("DescribeSecret", err);
	if (ctl->json)
		return ctl_emit(j_secret(s, 1), err);
	out_kvf(stdout, "secret", "%s/%s", path.company, path.name);
	out_kv(stdout, "id", s->id);
	out_kv(stdout, "description", s->description);
	out_kvf(stdout, "current", "version %u", s->current_version);
	out_kv(stdout, "created", s->created_at);
	out_kv(stdout, "created by", s->created_by);
	out_kv(stdout, "updated", s->updated_at);
	if (s->max_versions != 0)
		out_kvf(stdout, "retention", "keep %u versions (and latest and staged ones)",
		    s->max_versions);
	else
		out_kv(stdout, "retention", "unlimited");
	printf("\n");
	return ctl_print_table(
	    table_new(7, "VERSION", "", "STATE", "CREATED", "CREATED BY", "KEY", "CHANGED"),
	    s->versions, s->n_versions, version_row, err);
}

/* The lifecycle verbs: COMPANY/NAME VERSION, one rpc each, the same reply. */
static int version_verb(struct ctl *ctl, const struct ctl_args *args, const char *method,
    const char *done, pcs_error *err)
{
	Pcsecret__V1__SecretVersionRequest req = PCSECRET__V1__SECRET_VERSION_REQUEST__INIT;
	const Pcsecret__V1__SecretInfo *s;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0 ||
	    (r = ctl_parse_u32(ctl, "VERSION", args->pos[1], &req.version, err)) != 0)
		return r;
	if (req.version == 0)
		return ctl_usage_fail(ctl, err, "VERSION must be 1 or more");
	if ((r = ctl_call(ctl, method, &req.base, err)) != 0)
		return r;
	if ((s = ((const Pcsecret__V1__SecretVersionReply *)ctl->reply)->secret) == NULL)
		return ctl_no_reply_field(method, err);
	if (ctl->json)
		return ctl_emit(j_secret(s, 0), err);
	printf("%s version %u of secret %s/%s; latest is version %u\n", done, req.version,
	    path.company, path.name, s->current_version);
	return 0;
}

static int cmd_secret_promote(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	return version_verb(ctl, args, "PromoteSecret", "promoted", err);
}

static int cmd_secret_rollback(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	return version_verb(ctl, args, "RollbackSecret", "rolled back to", err);
}

static int cmd_secret_disable_version(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	return version_verb(ctl, args, "DisableSecretVersion", "disabled", err);
}

static int cmd_secret_enable_version(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	return version_verb(ctl, args, "EnableSecretVersion", "enabled", err);
}

static json_t *bound_json(const void *items, size_t i)
{
	return json_text(((char *const *)items)[i]);
}

static int cmd_secret_delete(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__DeleteSecretRequest req = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;
	const Pcsecret__V1__DeleteSecretReply *rep;
	const char *days = ctl_value(args, "recovery-days");
	struct ctl_path path;
	size_t i;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	req.recovery_days = 7;
	if (days != NULL &&
	    (r = ctl_parse_u32(ctl, "--recovery-days", days, &req.recovery_days, err)) != 0)
		return r;
	if (req.recovery_days < 1 || req.recovery_days > 30)
		return ctl_usage_fail(ctl, err, "--recovery-days must be 1 to 30");
	req.force = ctl_flag(args, "force");
	if ((r = ctl_call(ctl, "DeleteSecret", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__DeleteSecretReply *)ctl->reply;
	if (ctl->json)
		return ctl_emit(json_pack("{s:s, s:s, s:o, s:o}", "deleted", args->pos[0], "status",
		                    "deleted", "restore_until", json_text(rep->restore_until),
		                    "bound", ctl_json_array(rep->bound, rep->n_bound, bound_json)),
		    err);
	printf("deleted secret %s/%s; it can be restored until ", path.company, path.name);
	out_safe(stdout, rep->restore_until);
	printf(" (pcctl secret restore %s/%s)\n", path.company, path.name);
	for (i = 0; i < rep->n_bound; i++) {
		printf("binding kept, failing until restored: ");
		out_safe(stdout, rep->bound[i]);
		printf("\n");
	}
	return 0;
}

static int cmd_secret_restore(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__SecretNameRequest req = PCSECRET__V1__SECRET_NAME_REQUEST__INIT;
	const Pcsecret__V1__SecretInfo *s;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	if ((r = ctl_call(ctl, "RestoreSecret", &req.base, err)) != 0)
		return r;
	if ((s = ((const Pcsecret__V1__RestoreSecretReply *)ctl->reply)->secret) == NULL)
		return ctl_no_reply_field("RestoreSecret", err);
	if (ctl->json)
		return ctl_emit(j_secret(s, 0), err);
	printf(
	    "restored secret %s/%s (version %u, id ", path.company, path.name, s->current_version);
	out_safe(stdout, s->id);
	printf(")\n");
	return 0;
}

static int cmd_secret_purge(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__SecretNameRequest req = PCSECRET__V1__SECRET_NAME_REQUEST__INIT;
	const Pcsecret__V1__PurgeSecretReply *rep;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	/* Irreversible: no value of any version survives it, so it is never the default. */
	if (!ctl_flag(args, "yes"))
		return ctl_usage_fail(ctl, err,
		    "purge destroys the value of every version and cannot be undone: add --yes");
	if ((r = ctl_call(ctl, "PurgeSecret", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__PurgeSecretReply *)ctl->reply;
	if (rep->secret == NULL)
		return ctl_no_reply_field("PurgeSecret", err);
	if (ctl->json)
		return ctl_emit(json_pack("{s:s, s:s, s:I}", "purged", args->pos[0], "status",
		                    "purged", "destroyed", (json_int_t)rep->destroyed),
		    err);
	printf("purged secret %s/%s: the values of %u version(s) are destroyed\n", path.company,
	    path.name, rep->destroyed);
	return 0;
}

/* ---- retention and destroying one version (docs/lifecycle.md) ---- */

static int cmd_secret_set_retention(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__SetSecretRetentionRequest req =
	    PCSECRET__V1__SET_SECRET_RETENTION_REQUEST__INIT;
	const Pcsecret__V1__SetSecretRetentionReply *rep;
	struct ctl_path path;
	long long max;
	char *end = NULL;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0)
		return r;
	/* Any integer goes to the daemon, which names what is wrong with it (and audits that). */
	errno = 0;
	max = strtoll(args->pos[1], &end, 10);
	if (args->pos[1][0] == '\0' || end == NULL || *end != '\0' || errno != 0)
		return ctl_usage_fail(
		    ctl, err, "MAX_VERSIONS must be a whole number (0 = unlimited)");
	req.max_versions = (int64_t)max;
	if ((r = ctl_call(ctl, "SetSecretRetention", &req.base, err)) != 0)
		return r;
	rep = (const Pcsecret__V1__SetSecretRetentionReply *)ctl->reply;
	if (rep->secret == NULL)
		return ctl_no_reply_field("SetSecretRetention", err);
	if (ctl->json)
		return ctl_emit(json_pack("{s:s, s:I, s:I}", "secret", args->pos[0], "max_versions",
		                    (json_int_t)rep->secret->max_versions, "destroyed",
		                    (json_int_t)rep->destroyed),
		    err);
	if (rep->secret->max_versions == 0)
		printf("secret %s/%s keeps every version", path.company, path.name);
	else
		printf("secret %s/%s keeps %u versions (and latest and staged ones)", path.company,
		    path.name, rep->secret->max_versions);
	printf("; %u version value(s) destroyed now\n", rep->destroyed);
	return 0;
}

static int cmd_secret_destroy_version(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	Pcsecret__V1__SecretVersionRequest req = PCSECRET__V1__SECRET_VERSION_REQUEST__INIT;
	const Pcsecret__V1__SecretInfo *s;
	struct ctl_path path;
	int r;

	if ((r = ctl_path_parse(args->pos[0], &path, &req.company, &req.name, err)) != 0 ||
	    (r = ctl_parse_u32(ctl, "VERSION", args->pos[1], &req.version, err)) != 0)
		return r;
	if (req.version == 0)
		return ctl_usage_fail(ctl, err, "VERSION must be 1 or more");
	/* Irreversible, like purge: never the default. */
	if (!ctl_flag(args, "yes"))
		return ctl_usage_fail(ctl, err,
		    "destroy-version destroys the value of version %u and cannot be undone: add --yes",
		    req.version);
	if ((r = ctl_call(ctl, "DestroySecretVersion", &req.base, err)) != 0)
		return r;
	if ((s = ((const Pcsecret__V1__SecretVersionReply *)ctl->reply)->secret) == NULL)
		return ctl_no_reply_field("DestroySecretVersion", err);
	if (ctl->json)
		return ctl_emit(json_pack("{s:s, s:I, s:s}", "secret", args->pos[0], "version",
		                    (json_int_t)req.version, "status", "destroyed"),
		    err);
	printf("destroyed the value of version %u of secret %s/%s; latest is version %u\n",
	    req.version, path.company, path.name, s->current_version);
	return 0;
}

const struct ctl_command ctl_secret_commands[] = {
	{ "secret", "create",
	    "COMPANY/NAME [--description TEXT] [--from-file FILE] [--idempotency-token T]",
	    "create a secret (version 1); a retry with the same token creates nothing", 1, 1,
	    { { "description", CTL_VALUE }, { "from-file", CTL_VALUE },
	        { "idempotency-token", CTL_VALUE } },
	    cmd_secret_create },
	{ "secret", "update",
	    "COMPANY/NAME [--from-file FILE] [--expected-version N] "
	    "[--idempotency-token T] [--no-promote] [--description TEXT]",
	    "add a version and make it current (--no-promote: stage it, latest stays); "
	    "--description TEXT alone changes only the description (no value read, no version)",
	    1, 1,
	    { { "from-file", CTL_VALUE }, { "expected-version", CTL_VALUE },
	        { "idempotency-token", CTL_VALUE }, { "no-promote", CTL_FLAG },
	        { "description", CTL_VALUE } },
	    cmd_secret_update },
	{ "secret", "promote", "COMPANY/NAME VERSION", "make VERSION (an active version) latest", 2,
	    2, CTL_NO_OPTS, cmd_secret_promote },
	{ "secret", "rollback", "COMPANY/NAME VERSION",
	    "make an earlier active VERSION latest again (writes no new version)", 2, 2,
	    CTL_NO_OPTS, cmd_secret_rollback },
	{ "secret", "disable-version", "COMPANY/NAME VERSION",
	    "disable VERSION: it no longer resolves (refused for latest)", 2, 2, CTL_NO_OPTS,
	    cmd_secret_disable_version },
	{ "secret", "enable-version", "COMPANY/NAME VERSION", "enable a disabled VERSION again", 2,
	    2, CTL_NO_OPTS, cmd_secret_enable_version },
	{ "secret", "list", "COMPANY [--deleted]",
	    "list a company's secrets (--deleted: the deleted ones that can still be restored)", 1,
	    1, { { "deleted", CTL_FLAG } }, cmd_secret_list },
	{ "secret", "show", "COMPANY/NAME", "a secret's metadata and versions", 1, 1, CTL_NO_OPTS,
	    cmd_secret_show },
	{ "secret", "delete", "COMPANY/NAME [--recovery-days D] [--force]",
	    "delete a secret, restorable for D days (default 7, 1 to 30); refused while agents "
	    "use it unless --force (their bindings are kept and fail until it is restored)",
	    1, 1, { { "recovery-days", CTL_VALUE }, { "force", CTL_FLAG } }, cmd_secret_delete },
	{ "secret", "restore", "COMPANY/NAME",
	    "bring a deleted secret back (same id, versions and bindings) within its window", 1, 1,
	    CTL_NO_OPTS, cmd_secret_restore },
	{ "secret", "purge", "COMPANY/NAME --yes",
	    "destroy the value of every version now, live or deleted (irreversible)", 1, 1,
	    { { "yes", CTL_FLAG } }, cmd_secret_purge },
	{ "secret", "set-retention", "COMPANY/NAME MAX_VERSIONS",
	    "keep the newest MAX_VERSIONS versions (and latest and staged ones); destroy the "
	    "others' values now and after every update (0 = unlimited)",
	    2, 2, CTL_NO_OPTS, cmd_secret_set_retention },
	{ "secret", "destroy-version", "COMPANY/NAME VERSION --yes",
	    "destroy the value of one VERSION now (not latest's; irreversible)", 2, 2,
	    { { "yes", CTL_FLAG } }, cmd_secret_destroy_version },
	{ "secret", "import", "FILE|- [--company C] [--skip-existing] [--parallel N]",
	    "create many secrets from JSON lines, {\"company\", \"name\", \"value\" or "
	    "\"value_base64\", \"description\"} per line, N calls in flight (default 32)",
	    1, 1,
	    { { "company", CTL_VALUE }, { "skip-existing", CTL_FLAG }, { "parallel", CTL_VALUE } },
	    ctl_secret_import },
	{ "secret", "watch", "[COMPANY/NAME...] [--agent C/A] [--count N] [--events-only]",
	    "print a line per change to the secrets (or the agent's environment) as it commits, "
	    "until interrupted or N events; watches again after \"watch again\"",
	    0, CTL_ARGS_MAX,
	    { { "agent", CTL_VALUE }, { "count", CTL_VALUE }, { "events-only", CTL_FLAG } },
	    ctl_secret_watch },
	{ .group = NULL },
};
