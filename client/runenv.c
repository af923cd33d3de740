/*
 * runenv: pcrun's variables, their sources and their resolution.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envname.h"
#include "ref.h"
#include "rpc.h"
#include "runenv.h"
#include "status.h"

extern char **environ;

/* Quoting for messages: a reference came from the environment and may hold anything. */
static void put_safe(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

void runenv_report(const char *what, const pcs_error *err)
{
	fprintf(stderr, "pcrun: ");
	if (what != NULL) {
		put_safe(stderr, what);
		fprintf(stderr, ": ");
	}
	fprintf(stderr, "%s: ", pcs_status_name(err->code));
	put_safe(stderr, err->message);
	fputc('\n', stderr);
}

static void report_var(const struct runenv_var *v, const pcs_error *err)
{
	fprintf(stderr, "pcrun: cannot resolve %s=", v->name);
	put_safe(stderr, v->ref);
	fprintf(stderr, ": %s: ", pcs_status_name(err->code));
	put_safe(stderr, err->message);
	fputc('\n', stderr);
}

void runenv_free(struct runenv *re)
{
	size_t i;

	for (i = 0; i < re->n; i++) {
		free(re->v[i].name);
		free(re->v[i].ref);
		pcs_value_buf_free(re->v[i].value);
	}
	free(re->v);
	memset(re, 0, sizeof(*re));
}

/* A new entry for name; earlier ones of that name are overridden. */
static int add_entry(struct runenv *re, const char *name, struct runenv_var **added, pcs_error *err)
{
	struct runenv_var *nv;
	size_t i, ncap;

	*added = NULL;
	for (i = 0; i < re->n; i++)
		if (strcmp(re->v[i].name, name) == 0)
			re->v[i].overridden = 1;
	if (re->n == re->cap) {
		ncap = re->cap == 0 ? 16 : re->cap * 2;
		if ((nv = realloc(re->v, ncap * sizeof(*nv))) == NULL)
			goto oom;
		re->v = nv;
		re->cap = ncap;
	}
	memset(&re->v[re->n], 0, sizeof(re->v[re->n]));
	if ((re->v[re->n].name = strdup(name)) == NULL)
		goto oom;
	*added = &re->v[re->n++];
	return 0;
oom:
	(void)pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	return -PCS_RESOURCE_EXHAUSTED;
}

int runenv_add(struct runenv *re, const char *name, const char *ref, const char *value, size_t len,
    pcs_error *err)
{
	struct runenv_var *v;
	int r;

	if ((r = add_entry(re, name, &v, err)) != 0)
		return r;
	if (ref != NULL) {
		if ((v->ref = strdup(ref)) == NULL)
			return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		return 0;
	}
	/* The SDK's kind of buffer, so that runenv_free frees every value alike. */
	if ((r = pcs_value_buf_alloc(len, &v->value, err)) != 0)
		return r;
	if (len > 0)
		memcpy(v->value, value, len);
	v->value[len] = '\0';
	v->len = len;
	return 0;
}

int runenv_clone(const struct runenv *src, struct runenv *dst, pcs_error *err)
{
	size_t i;
	int r;

	for (i = 0; i < src->n; i++)
		if ((r = runenv_add(dst, src->v[i].name, src->v[i].ref,
		         (const char *)src->v[i].value, src->v[i].len, err)) != 0)
			return r;
	return 0;
}

int runenv_add_environment(struct runenv *re, pcs_error *err)
{
	const char *eq;
	char *name;
	char **e;
	int r;

	for (e = environ; *e != NULL; e++) {
		if ((eq = strchr(*e, '=')) == NULL ||
		    strncmp(eq + 1, PCS_REF_PREFIX, sizeof(PCS_REF_PREFIX) - 1) != 0)
			continue;
		if ((name = strndup(*e, (size_t)(eq - *e))) == NULL)
			return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		if ((r = envname_check(name, err)) == 0)
			r = runenv_add(re, name, eq + 1, NULL, 0, err);
		free(name);
		if (r != 0)
			return r;
	}
	return 0;
}

int runenv_add_agent(
    struct runenv *re, pcs_client *client, const char *agent, int *retry, pcs_error *uerr)
{
	pcs_env_entry *env = NULL;
	struct runenv_var *added;
	pcs_error err = { 0 };
	size_t n = 0, i;
	int r;

	*retry = 0;
	if ((r = pcs_get_env(client, agent, &env, &n, &err)) != 0) {
		if (err.code == PCS_UNAVAILABLE) {
			if (uerr != NULL)
				*uerr = err;
			*retry = 1;
			goto out;
		}
		fprintf(stderr, "pcrun: cannot fetch the environment of agent ");
		put_safe(stderr, agent);
		fprintf(stderr, ": %s: ", pcs_status_name(err.code));
		put_safe(stderr, err.message);
		fputc('\n', stderr);
		goto out;
	}
	/* All checked before any is used: a binding made before the daemon refused such names. */
	for (i = 0; env != NULL && i < n; i++) {
		if ((r = envname_check(env[i].name, &err)) != 0) {
			fprintf(stderr, "pcrun: refusing the environment of agent ");
			put_safe(stderr, agent);
			fprintf(stderr, ": %s: ", pcs_status_name(err.code));
			put_safe(stderr, err.message);
			/* The SDK refuses invalid names, so this one is safe to print. */
			if (env_name_valid(env[i].name)) {
				fprintf(stderr, " (remove the binding: pcctl agent unset-env ");
				put_safe(stderr, agent);
				fprintf(stderr, " %s)", env[i].name);
			}
			fputc('\n', stderr);
			goto out;
		}
	}
	for (i = 0; env != NULL && i < n; i++) {
		if ((r = add_entry(re, env[i].name, &added, &err)) != 0) {
			runenv_report(NULL, &err);
			goto out;
		}
		/* Hand the value over instead of copying it. */
		added->value = env[i].value;
		added->len = env[i].len;
		added->version = env[i].version;
		added->secret = 1;
		env[i].value = NULL;
	}
	r = 0;
out:
	pcs_env_free(env, n);
	return r;
}

static int pending(const struct runenv_var *v)
{
	return !v->overridden && v->ref != NULL && v->value == NULL;
}

int runenv_check_refs(const struct runenv *re)
{
	struct pcs_ref parsed;
	pcs_error err;
	size_t i;
	int r = 0;

	for (i = 0; i < re->n; i++)
		if (pending(&re->v[i]) && ref_parse(re->v[i].ref, &parsed, &err) != 0) {
			report_var(&re->v[i], &err);
			r = -PCS_INVALID_ARGUMENT;
		}
	return r;
}

/*
 * The batch failed: resolve each reference alone to say which ones fail and why. Returns the
 * number reported.
 */
static size_t diagnose(
    const struct runenv *re, pcs_client *client, const char *agent, const size_t *idx, size_t n)
{
	pcs_value *one = NULL;
	pcs_error err;
	const char *ref;
	size_t i, failed = 0;

	for (i = 0; i < n; i++) {
		ref = re->v[idx[i]].ref;
		memset(&err, 0, sizeof(err));
		if (pcs_resolve(client, agent, &ref, 1, &one, &err) != 0) {
			report_var(&re->v[idx[i]], &err);
			failed++;
		}
		pcs_values_free(one, one != NULL ? 1 : 0);
		one = NULL;
	}
	return failed;
}

int runenv_resolve(
    struct runenv *re, pcs_client *client, const char *agent, int *retry, pcs_error *err)
{
	const char **refs = NULL;
	pcs_value *values = NULL;
	size_t *idx = NULL, nrefs = 0, i;
	int r;

	*retry = 0;
	if ((refs = calloc(re->n + 1, sizeof(*refs))) == NULL ||
	    (idx = calloc(re->n + 1, sizeof(*idx))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		runenv_report(NULL, err);
		goto out;
	}
	for (i = 0; i < re->n; i++)
		if (pending(&re->v[i])) {
			refs[nrefs] = re->v[i].ref;
			idx[nrefs++] = i;
		}
	if (nrefs == 0) {
		r = 0;
		goto out;
	}
	if ((r = pcs_resolve(client, agent, refs, nrefs, &values, err)) != 0) {
		if (err->code == PCS_UNAVAILABLE) {
			*retry = 1;
			goto out;
		}
		/* One reference: its error is the batch's. Several: find every failing one. */
		if (nrefs == 1) {
			report_var(&re->v[idx[0]], err);
		} else if (diagnose(re, client, agent, idx, nrefs) == 0) {
			/* Each resolved alone (something changed meanwhile): say what the batch got. */
			fprintf(stderr, "pcrun: cannot resolve");
			for (i = 0; i < nrefs; i++) {
				fprintf(stderr, "%s %s=", i > 0 ? "," : "", re->v[idx[i]].name);
				put_safe(stderr, re->v[idx[i]].ref);
			}
			fprintf(stderr, ": %s: ", pcs_status_name(err->code));
			put_safe(stderr, err->message);
			fputc('\n', stderr);
		}
		goto out;
	}
	for (i = 0; i < nrefs; i++) {
		re->v[idx[i]].value = values[i].data;
		re->v[idx[i]].len = values[i].len;
		re->v[idx[i]].version = values[i].version;
		re->v[idx[i]].secret = 1;
		values[i].data = NULL;
	}
	r = 0;
out:
	pcs_values_free(values, nrefs);
	free(idx);
	free(refs);
	return r;
}

size_t runenv_pending(const struct runenv *re)
{
	size_t i, n = 0;

	for (i = 0; i < re->n; i++)
		n += pending(&re->v[i]) ? 1 : 0;
	return n;
}

int runenv_delivered(const struct runenv_var *v) { return !v->overridden && v->value != NULL; }
