/*
 * pcs_resolve and pcs_get_env: turn references into values. Values leave the wire buffers
 * (wiped by pbwipe_allocator) only into locked memory (valbuf.c) that the *_free functions wipe.
 */
#include <stdlib.h>
#include <string.h>

#include "pbwipe.h"
#include "ref.h"
#include "rpc.h"
#include "status.h"

/* A value as the caller gets it: the bytes, then a NUL not counted in the length. */
static int value_copy(
    const ProtobufCBinaryData *src, unsigned char **out, size_t *len, pcs_error *err)
{
	unsigned char *v;
	int r;

	if ((r = pcs_value_buf_alloc(src->len, &v, err)) != 0)
		return r;
	if (src->len > 0)
		memcpy(v, src->data, src->len);
	v[src->len] = '\0';
	*out = v;
	*len = src->len;
	return 0;
}

static int dup_string(const char *s, char **out, pcs_error *err)
{
	if ((*out = strdup(s != NULL ? s : "")) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	return 0;
}

static int ref_equal(const Pcsecret__V1__SecretRef *a, const Pcsecret__V1__SecretRef *b)
{
	return strcmp(a->secret_id, b->secret_id) == 0 && strcmp(a->company, b->company) == 0 &&
	    strcmp(a->name, b->name) == 0 && a->version == b->version;
}

/*
 * Which request reference the reply's value j answers. A value that echoes its reference (as
 * the proto asks) is matched by it, so the order of the reply does not matter and no secret
 * can land where another was asked for; one without is taken to be in request order.
 */
static int reply_slot(const Pcsecret__V1__SecretRef *asked, size_t n, const unsigned char *used,
    const Pcsecret__V1__ResolvedValue *v, size_t j, size_t *slot)
{
	size_t i;

	if (v->ref == NULL) {
		if (j >= n || used[j])
			return -1;
		*slot = j;
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (!used[i] && ref_equal(&asked[i], v->ref)) {
			*slot = i;
			return 0;
		}
	}
	return -1;
}

/* "company/agent" or NULL/"" (the caller itself) into the two request fields. */
static int agent_split(
    const char *agent, char company[PCS_NAME_MAX + 1], char name[PCS_NAME_MAX + 1], pcs_error *err)
{
	pcs_error perr;

	company[0] = name[0] = '\0';
	if (agent == NULL || agent[0] == '\0')
		return 0;
	if (ref_parse_path(agent, company, name, &perr) != 0)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "invalid agent: %s", perr.message);
	return 0;
}

/*
 * Chunks of one resolve that may be on the wire at once. The daemon cuts off a connection with
 * more than max_output (4 MiB) of replies queued, and each reply may be a whole 1 MiB frame:
 * four keeps what a single-threaded caller (which reads nothing while it sends) can leave
 * queued at about that bound, the socket's own buffers taking the frame headers' excess.
 */
#define RESOLVE_WINDOW 4

struct chunk {
	size_t off; /* first reference of the chunk */
	size_t n;
	struct pcs_rpc_call *call; /* in flight */
};

/* Copies a chunk's reply into vals[off .. off + n), each value where its reference was asked. */
static int chunk_take(const struct chunk *ch, const Pcsecret__V1__SecretRef *srefs,
    const char *const *refs, const Pcsecret__V1__ResolveReply *rep, unsigned char *used,
    pcs_value *vals, pcs_error *err)
{
	const Pcsecret__V1__ResolvedValue *v;
	size_t i, j;
	int r;

	if (rep->n_values != ch->n)
		return pcs_fail(err, PCS_INTERNAL,
		    "pcsecretd returned %zu values for %zu "
		    "references",
		    rep->n_values, ch->n);
	for (j = 0; j < ch->n; j++) {
		v = rep->values[j];
		if (reply_slot(srefs + ch->off, ch->n, used + ch->off, v, j, &i) != 0)
			return pcs_fail(err, PCS_INTERNAL,
			    "pcsecretd answered with a value for a "
			    "reference that was not asked for");
		i += ch->off;
		used[i] = 1;
		if ((r = dup_string(refs[i], &vals[i].ref, err)) != 0 ||
		    (r = dup_string(v->secret_id, &vals[i].secret_id, err)) != 0 ||
		    (r = value_copy(&v->value, &vals[i].data, &vals[i].len, err)) != 0)
			return r;
		vals[i].version = v->version;
	}
	return 0;
}

static int chunk_start(pcs_client *client, const char *agent, Pcsecret__V1__SecretRef **srefp,
    struct chunk *ch, pcs_error *err)
{
	Pcsecret__V1__ResolveRequest req = PCSECRET__V1__RESOLVE_REQUEST__INIT;

	req.n_refs = ch->n;
	req.refs = srefp + ch->off;
	req.agent = (char *)(agent != NULL ? agent : "");
	return pcs_rpc_start(client, "Resolve", &req.base, &ch->call, err);
}

PCS_EXPORT int pcs_resolve(pcs_client *client, const char *agent, const char *const *refs,
    size_t nrefs, pcs_value **out, pcs_error *err)
{
	Pcsecret__V1__SecretRef *srefs = NULL, **srefp = NULL;
	ProtobufCMessage *msg = NULL;
	struct pcs_ref *parsed = NULL;
	struct chunk *chunks = NULL;
	unsigned char *used = NULL;
	pcs_value *vals = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	size_t i, per, nchunks = 0, sent = 0, done = 0;
	int r;

	if (out != NULL)
		*out = NULL;
	if (client == NULL || out == NULL || (refs == NULL && nrefs > 0)) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_resolve: a required argument is NULL");
		goto out;
	}
	if (nrefs == 0) {
		r = 0;
		goto out;
	}
	/* Validate everything before any I/O: a bad reference costs no round trip. */
	if ((r = agent_split(agent, company, name, err)) != 0)
		goto out;
	per = pcs_rpc_max_refs(client);
	nchunks = nrefs / per + (nrefs % per != 0);
	if ((parsed = calloc(nrefs, sizeof(*parsed))) == NULL ||
	    (srefs = calloc(nrefs, sizeof(*srefs))) == NULL ||
	    (srefp = calloc(nrefs, sizeof(*srefp))) == NULL ||
	    (vals = calloc(nrefs, sizeof(*vals))) == NULL ||
	    (used = calloc(nrefs, sizeof(*used))) == NULL ||
	    (chunks = calloc(nchunks, sizeof(*chunks))) == NULL) {
		r = pcs_fail(
		    err, PCS_RESOURCE_EXHAUSTED, "out of memory for %zu references", nrefs);
		goto out;
	}
	for (i = 0; i < nrefs; i++) {
		if (refs[i] == NULL) {
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "reference %zu of %zu is NULL",
			    i + 1, nrefs);
			goto out;
		}
		/* ref_parse's message quotes the reference, which is what the caller needs. */
		if ((r = ref_parse(refs[i], &parsed[i], err)) != 0)
			goto out;
		pcsecret__v1__secret_ref__init(&srefs[i]);
		srefs[i].secret_id = parsed[i].secret_id;
		srefs[i].company = parsed[i].company;
		srefs[i].name = parsed[i].name;
		srefs[i].version = parsed[i].version;
		srefp[i] = &srefs[i];
	}
	for (i = 0; i < nchunks; i++) {
		chunks[i].off = i * per;
		chunks[i].n = nrefs - chunks[i].off < per ? nrefs - chunks[i].off : per;
	}
	/*
	 * Send ahead (up to the window), then take replies in request order, so the error
	 * reported is the first failing chunk's whatever order the daemon answers in.
	 */
	while (done < nchunks) {
		while (sent < nchunks && sent - done < RESOLVE_WINDOW) {
			if ((r = chunk_start(client, agent, srefp, &chunks[sent], err)) != 0)
				goto out;
			sent++;
		}
		r = pcs_rpc_finish(client, chunks[done].call, &msg, err);
		chunks[done].call = NULL;
		if (r != 0)
			goto out;
		if ((r = chunk_take(&chunks[done], srefs, refs,
		         (const Pcsecret__V1__ResolveReply *)msg, used, vals, err)) != 0)
			goto out;
		protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
		msg = NULL;
		done++;
	}
	*out = vals;
	vals = NULL;
	r = 0;
out:
	/* All or nothing: chunks still in flight are forgotten and their replies wiped. */
	for (i = done; i < sent; i++)
		pcs_rpc_abandon(client, chunks[i].call);
	pcs_values_free(vals, nrefs);
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
	free(chunks);
	free(used);
	free(srefp);
	free(srefs);
	free(parsed);
	return r;
}

PCS_EXPORT void pcs_values_free(pcs_value *values, size_t n)
{
	size_t i;

	if (values == NULL)
		return;
	for (i = 0; i < n; i++) {
		free(values[i].ref);
		free(values[i].secret_id);
		pcs_value_buf_free(values[i].data);
	}
	free(values);
}

static int env_ref_string(const Pcsecret__V1__SecretRef *sref, char **out, pcs_error *err)
{
	struct pcs_ref ref;
	char buf[sizeof(PCS_REF_PREFIX) + 2 * PCS_NAME_MAX + 16];
	size_t clen, nlen, ilen;

	memset(&ref, 0, sizeof(ref));
	if (sref == NULL)
		return pcs_fail(err, PCS_INTERNAL,
		    "pcsecretd returned an environment entry "
		    "without its reference");
	clen = strlen(sref->company);
	nlen = strlen(sref->name);
	ilen = strlen(sref->secret_id);
	if (clen > PCS_NAME_MAX || nlen > PCS_NAME_MAX || ilen > PCS_UUID_LEN)
		return pcs_fail(err, PCS_INTERNAL,
		    "pcsecretd returned a reference with an "
		    "over-long name");
	memcpy(ref.company, sref->company, clen + 1);
	memcpy(ref.name, sref->name, nlen + 1);
	memcpy(ref.secret_id, sref->secret_id, ilen + 1);
	ref.version = sref->version;
	if (ref_format(&ref, buf, sizeof(buf)) != 0)
		return pcs_fail(err, PCS_INTERNAL,
		    "pcsecretd returned a reference that cannot "
		    "be formatted");
	return dup_string(buf, out, err);
}

PCS_EXPORT int pcs_get_env(
    pcs_client *client, const char *agent, pcs_env_entry **out, size_t *count, pcs_error *err)
{
	Pcsecret__V1__GetAgentEnvRequest req = PCSECRET__V1__GET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__GetAgentEnvReply *rep;
	Pcsecret__V1__EnvValue *ev;
	ProtobufCMessage *msg = NULL;
	pcs_env_entry *env = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	size_t i, n = 0;
	int r;

	if (out != NULL)
		*out = NULL;
	if (count != NULL)
		*count = 0;
	if (client == NULL || out == NULL || count == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_get_env: a required argument is NULL");
		goto out;
	}
	if ((r = agent_split(agent, company, name, err)) != 0)
		goto out;
	req.company = company;
	req.agent = name;
	if ((r = pcs_rpc_call(client, "GetAgentEnv", &req.base, &msg, err)) != 0)
		goto out;
	rep = (Pcsecret__V1__GetAgentEnvReply *)msg;
	n = rep->n_env;
	/* calloc(0) may return NULL; one spare entry keeps success distinct from failure. */
	if ((env = calloc(n + 1, sizeof(*env))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory for %zu entries", n);
		goto out;
	}
	for (i = 0; i < n; i++) {
		ev = rep->env[i];
		/* Launchers pass these names to setenv: never let the server smuggle in '='. */
		if (!env_name_valid(ev->env_name)) {
			/* Not quoted: whatever it holds would reach the caller's terminal. */
			r = pcs_fail(err, PCS_INTERNAL,
			    "pcsecretd returned an invalid environment "
			    "variable name (entry %zu of %zu)",
			    i + 1, n);
			goto out;
		}
		if ((r = dup_string(ev->env_name, &env[i].name, err)) != 0 ||
		    (r = env_ref_string(ev->ref, &env[i].ref, err)) != 0 ||
		    (r = value_copy(&ev->value, &env[i].value, &env[i].len, err)) != 0)
			goto out;
		env[i].version = ev->version;
	}
	*out = env;
	*count = n;
	env = NULL;
	r = 0;
out:
	pcs_env_free(env, n);
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
	return r;
}

PCS_EXPORT void pcs_env_free(pcs_env_entry *env, size_t count)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < count; i++) {
		free(env[i].name);
		free(env[i].ref);
		pcs_value_buf_free(env[i].value);
	}
	free(env);
}
