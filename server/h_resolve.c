/*
 * Resolve and GetAgentEnv: the only rpcs that return values, and only to an agent (for itself)
 * or a launcher (for an agent of its companies). Which refs an agent may read is decided by
 * its env config, in the same statement that reads the ciphertext and writes the audit row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crypto.h"
#include "dispatch.h"
#include "handlers.h"
#include "ref.h"
#include "rows.h"
#include "server.h"

/* Which agent the values are for: the caller itself, or the one a launcher names. */
static int target_agent(struct call *c, const char *company_in, const char *agent_in,
    char company[PCS_NAME_MAX + 1], char agent[PCS_NAME_MAX + 1])
{
	const struct principal *p = call_principal(c);

	if (company_in[0] == '\0' && agent_in[0] == '\0') {
		if (p->role == ROLE_LAUNCHER) {
			call_fail(c, PCS_INVALID_ARGUMENT, "a launcher must name the agent "
			    "(company/agent) it resolves for");
			return -1;
		}
		if (p->role != ROLE_AGENT) {
			/* Admins and operators learn they may not at all. */
			call_authorize(c, NULL, NULL);
			return -1;
		}
		snprintf(company, PCS_NAME_MAX + 1, "%s", p->companies[0]);
		snprintf(agent, PCS_NAME_MAX + 1, "%s", p->agent);
	} else {
		if (!name_valid(company_in) || !name_valid(agent_in)) {
			call_fail(c, PCS_INVALID_ARGUMENT, "agent \"%.128s/%.128s\" is not a valid "
			    "company/agent name", company_in, agent_in);
			return -1;
		}
		snprintf(company, PCS_NAME_MAX + 1, "%s", company_in);
		snprintf(agent, PCS_NAME_MAX + 1, "%s", agent_in);
	}
	return call_authorize(c, company, agent);
}

/* Opens the sealed value in columns [first .. first+3] (ciphertext, nonce, wrapped, key id). */
static int open_row(struct call *c, const struct store_result *res, int row, int first,
    const char *company_id, const char *secret_id, uint32_t version, struct crypto_plain *out)
{
	struct crypto_ad ad = { company_id, secret_id, version };
	uint8_t *ct = NULL, *nonce = NULL, *wrapped = NULL;
	size_t ct_len = 0, nonce_len = 0, wrapped_len = 0;
	pcs_error err;
	int r;

	if (store_result_bytea(res, row, first, &ct, &ct_len) != 0 ||
	    store_result_bytea(res, row, first + 1, &nonce, &nonce_len) != 0 ||
	    store_result_bytea(res, row, first + 2, &wrapped, &wrapped_len) != 0) {
		r = pcs_fail(&err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	r = crypto_open(call_server(c)->master, &ad, ct, ct_len, nonce, nonce_len, wrapped,
	    wrapped_len, rows_str(res, row, first + 3), out, &err);
out:
	free(ct);
	free(nonce);
	free(wrapped);
	if (r != 0)
		call_fail(c, r, "secret %s version %u: %s", secret_id, version, err.message);
	return r;
}

struct opened {
	struct crypto_plain *plain;
	size_t n;
};

static void opened_free(struct opened *o)
{
	for (size_t i = 0; i < o->n; i++)
		crypto_plain_clear(&o->plain[i]);
	free(o->plain);
}

/* Company and agent of the call's target, kept for the per-reference checks. */
struct target {
	char company[PCS_NAME_MAX + 1];
	char agent[PCS_NAME_MAX + 1];
};

/* How a reference is named in messages: as the caller wrote it. */
static void ref_label(const Pcsecret__V1__SecretRef *r, char *buf, size_t size)
{
	struct pcs_ref ref;

	memset(&ref, 0, sizeof(ref));
	snprintf(ref.secret_id, sizeof(ref.secret_id), "%s", r->secret_id);
	snprintf(ref.company, sizeof(ref.company), "%s", r->secret_id[0] ? "" : r->company);
	snprintf(ref.name, sizeof(ref.name), "%s", r->secret_id[0] ? "" : r->name);
	ref.version = r->version;
	if (ref_format(&ref, buf, size) != 0)
		snprintf(buf, size, "reference");
}

/*
 * Rows: idx, granted, company_id, secret_id, version, state, ciphertext, nonce, wrapped_key,
 * key_id. Every ref must be granted (authz decides from the row) and its version active.
 */
static void on_resolved(struct call *c, const struct store_result *res)
{
	const Pcsecret__V1__ResolveRequest *in =
	    (const Pcsecret__V1__ResolveRequest *)call_request(c);
	const struct target *t = call_state(c);
	Pcsecret__V1__ResolveReply rep = PCSECRET__V1__RESOLVE_REPLY__INIT;
	int n = store_result_ntuples(res);
	Pcsecret__V1__ResolvedValue *items = calloc((size_t)n + 1, sizeof(*items));
	Pcsecret__V1__ResolvedValue **ptrs = calloc((size_t)n + 1, sizeof(*ptrs));
	struct opened o = { calloc((size_t)n + 1, sizeof(struct crypto_plain)), 0 };
	char label[2 * PCS_NAME_MAX + 64];
	pcs_error err;

	if (items == NULL || ptrs == NULL || o.plain == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if ((size_t)n != in->n_refs) {
		call_fail(c, PCS_INTERNAL, "resolved %d of %zu references", n, in->n_refs);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		size_t idx = (size_t)rows_u32(res, i, 0) - 1;
		struct authz_request rq = { METHOD_ACTION_VALUE_READ, t->company, t->agent,
			strcmp(rows_str(res, i, 1), "t") == 0 ? AUTHZ_GRANT_YES : AUTHZ_GRANT_NO };
		uint32_t version = rows_u32(res, i, 4);
		int r;

		if (idx >= in->n_refs) {
			call_fail(c, PCS_INTERNAL, "resolve returned an unknown reference");
			goto out;
		}
		if ((r = authz_check(call_principal(c), &rq, &err)) != 0) {
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(c, r, "%s: %s", label, err.message);
			goto out;
		}
		if (store_result_isnull(res, i, 5)) {
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(c, PCS_NOT_FOUND, "%s: version %u does not exist", label, version);
			goto out;
		}
		if (strcmp(rows_str(res, i, 5), "active") != 0) {
			ref_label(in->refs[idx], label, sizeof(label));
			call_fail(c, PCS_FAILED_PRECONDITION, "%s: version %u is %s", label, version,
			    rows_str(res, i, 5));
			goto out;
		}
		if (open_row(c, res, i, 6, rows_str(res, i, 2), rows_str(res, i, 3), version,
		    &o.plain[o.n]) != 0)
			goto out;
		pcsecret__v1__resolved_value__init(&items[i]);
		items[i].ref = in->refs[idx];
		items[i].secret_id = (char *)rows_str(res, i, 3);
		items[i].version = version;
		items[i].value.data = o.plain[o.n].data;
		items[i].value.len = o.plain[o.n].len;
		o.n++;
		ptrs[i] = &items[i];
	}
	rep.values = ptrs;
	rep.n_values = (size_t)n;
	call_reply(c, &rep.base);
out:
	opened_free(&o);
	free(items);
	free(ptrs);
}

void handle_resolve(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__ResolveRequest *in,
    Pcsecret__V1__ResolveReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	char company[PCS_NAME_MAX + 1], agent[PCS_NAME_MAX + 1], acompany[PCS_NAME_MAX + 1] = "";
	char aname[PCS_NAME_MAX + 1] = "", first[2 * PCS_NAME_MAX + 40], version[16];
	size_t n = in->n_refs, max = (size_t)call_server(c)->cfg->max_refs;
	const char **ids = NULL, **companies = NULL, **names = NULL, **versions = NULL;
	char (*vbuf)[12] = NULL, *arrays[4] = { NULL, NULL, NULL, NULL };
	const char *values[6];
	struct target *t = NULL;
	pcs_error err;

	if (in->agent[0] != '\0' &&
	    ref_parse_path(in->agent, acompany, aname, &err) != 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "agent: %s", err.message);
		return;
	}
	if (target_agent(c, acompany, aname, company, agent) != 0)
		return;
	if (n == 0) {
		call_fail(c, PCS_INVALID_ARGUMENT, "Resolve needs at least one reference");
		return;
	}
	if (n > max) {
		call_fail(c, PCS_INVALID_ARGUMENT, "Resolve has %zu references; the maximum is %zu "
		    "(max_refs)", n, max);
		return;
	}
	ids = calloc(n, sizeof(*ids));
	companies = calloc(n, sizeof(*companies));
	names = calloc(n, sizeof(*names));
	versions = calloc(n, sizeof(*versions));
	vbuf = calloc(n, sizeof(*vbuf));
	if (ids == NULL || companies == NULL || names == NULL || versions == NULL || vbuf == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const Pcsecret__V1__SecretRef *r = in->refs[i];
		int by_id = r->secret_id[0] != '\0';
		if (by_id ? !uuid_valid(r->secret_id) :
		    (!name_valid(r->company) || !name_valid(r->name))) {
			call_fail(c, PCS_INVALID_ARGUMENT, "reference %zu names no valid secret (give a "
			    "secret id, or a company and a name)", i + 1);
			goto out;
		}
		if (r->version > INT32_MAX) {
			call_fail(c, PCS_INVALID_ARGUMENT, "reference %zu: version %u is out of range",
			    i + 1, r->version);
			goto out;
		}
		ids[i] = by_id ? r->secret_id : "";
		companies[i] = by_id ? "" : r->company;
		names[i] = by_id ? "" : r->name;
		snprintf(vbuf[i], sizeof(vbuf[i]), "%u", r->version);
		versions[i] = vbuf[i];
	}
	if ((arrays[0] = rows_text_array(ids, n)) == NULL ||
	    (arrays[1] = rows_text_array(companies, n)) == NULL ||
	    (arrays[2] = rows_text_array(names, n)) == NULL ||
	    (arrays[3] = rows_text_array(versions, n)) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	/* The audit row names the first reference and how many more there were. */
	snprintf(first, sizeof(first), "%s%s%s%s", ids[0], companies[0], ids[0][0] ? "" : "/",
	    names[0]);
	if (n > 1)
		snprintf(first + strlen(first), sizeof(first) - strlen(first), " (+%zu more)", n - 1);
	snprintf(version, sizeof(version), "%s", in->refs[0]->version ? vbuf[0] : "latest");
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	snprintf(t->company, sizeof(t->company), "%s", company);
	snprintf(t->agent, sizeof(t->agent), "%s", agent);
	call_set_state(c, t, free);
	call_set_target(c, company, first, version);
	values[0] = company;
	values[1] = agent;
	values[2] = arrays[0];
	values[3] = arrays[1];
	values[4] = arrays[2];
	values[5] = arrays[3];
	/*
	 * Resolve's audit row is queued (common/methods.h), not part of this statement: authz
	 * decides from its rows, and the row (written before the reply leaves) carries that.
	 */
	call_db_text(c, "SELECT idx, granted, company_id, secret_id, version, state, ciphertext, "
	    "nonce, wrapped_key, key_id FROM pcs_resolve($1, $2, $3, $4, $5, $6)", values, 6,
	    on_resolved);
out:
	for (int i = 0; i < 4; i++)
		free(arrays[i]);
	free(ids);
	free(companies);
	free(names);
	free(versions);
	free(vbuf);
}

/*
 * Rows: env_name, ref_company, ref_name, selector, company_id, secret_id, version,
 * ciphertext, nonce, wrapped_key, key_id.
 */
static void on_env(struct call *c, const struct store_result *res)
{
	Pcsecret__V1__GetAgentEnvReply rep = PCSECRET__V1__GET_AGENT_ENV_REPLY__INIT;
	int n = store_result_ntuples(res);
	Pcsecret__V1__EnvValue *items = calloc((size_t)n + 1, sizeof(*items));
	Pcsecret__V1__SecretRef *refs = calloc((size_t)n + 1, sizeof(*refs));
	Pcsecret__V1__EnvValue **ptrs = calloc((size_t)n + 1, sizeof(*ptrs));
	struct opened o = { calloc((size_t)n + 1, sizeof(struct crypto_plain)), 0 };
	char agent[2 * PCS_NAME_MAX + 2];

	if (items == NULL || refs == NULL || ptrs == NULL || o.plain == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		uint32_t version = rows_u32(res, i, 6);
		if (open_row(c, res, i, 7, rows_str(res, i, 4), rows_str(res, i, 5), version,
		    &o.plain[o.n]) != 0)
			goto out;
		pcsecret__v1__secret_ref__init(&refs[i]);
		refs[i].company = (char *)rows_str(res, i, 1);
		refs[i].name = (char *)rows_str(res, i, 2);
		refs[i].version = store_result_isnull(res, i, 3) ? 0 : rows_u32(res, i, 3);
		pcsecret__v1__env_value__init(&items[i]);
		items[i].env_name = (char *)rows_str(res, i, 0);
		items[i].ref = &refs[i];
		items[i].version = version;
		items[i].value.data = o.plain[o.n].data;
		items[i].value.len = o.plain[o.n].len;
		o.n++;
		ptrs[i] = &items[i];
	}
	snprintf(agent, sizeof(agent), "%s", call_state(c) ? (const char *)call_state(c) : "");
	rep.agent = agent;
	rep.env = ptrs;
	rep.n_env = (size_t)n;
	call_reply(c, &rep.base);
out:
	opened_free(&o);
	free(items);
	free(refs);
	free(ptrs);
}

void handle_get_agent_env(Pcsecret__V1__PcSecret_Service *svc,
    const Pcsecret__V1__GetAgentEnvRequest *in,
    Pcsecret__V1__GetAgentEnvReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	char company[PCS_NAME_MAX + 1], agent[PCS_NAME_MAX + 1], *label;
	const char *values[2];
	size_t len;

	if (target_agent(c, in->company, in->agent, company, agent) != 0)
		return;
	len = strlen(company) + strlen(agent) + 2;
	if ((label = malloc(len)) == NULL) {
		call_fail(c, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	snprintf(label, len, "%s/%s", company, agent);
	call_set_state(c, label, free);
	call_set_target(c, company, label, NULL);
	values[0] = company;
	values[1] = agent;
	/* Audited after opening the values, so a DATA_LOSS is the call's one row, not a second. */
	call_db_text(c, "SELECT env_name, ref_company, ref_name, selector, company_id, secret_id, "
	    "version, ciphertext, nonce, wrapped_key, key_id FROM pcs_agent_env($1, $2)", values, 2,
	    on_env);
}
