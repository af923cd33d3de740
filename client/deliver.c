/*
 * deliver: PROGRAM's environment and the values to mask, from pcrun's resolved variables.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "envname.h"
#include "ref.h"
#include "rpc.h"

extern char **environ;

void envlist_free(struct envlist *el)
{
	size_t i;

	for (i = 0; i < el->n; i++)
		pcs_value_buf_free((unsigned char *)el->s[i]);
	free(el->s);
	memset(el, 0, sizeof(*el));
}

/* Adds "name=value" (value len bytes, no NUL byte in it). */
static int envlist_add(struct envlist *el, const char *name, size_t nlen, const char *value,
    size_t len, pcs_error *err)
{
	unsigned char *s;
	char **ns;
	size_t ncap;
	int r;

	if (el->n + 2 > el->cap) {
		ncap = el->cap == 0 ? 32 : el->cap * 2;
		if ((ns = realloc(el->s, ncap * sizeof(*ns))) == NULL)
			return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		el->s = ns;
		el->cap = ncap;
	}
	if ((r = pcs_value_buf_alloc(nlen + 1 + len, &s, err)) != 0)
		return r;
	memcpy(s, name, nlen);
	s[nlen] = '=';
	if (len > 0)
		memcpy(s + nlen + 1, value, len);
	s[nlen + 1 + len] = '\0';
	el->s[el->n++] = (char *)s;
	el->s[el->n] = NULL;
	return 0;
}

static int envlist_has(const struct envlist *el, const char *name, size_t nlen)
{
	size_t i;

	for (i = 0; i < el->n; i++)
		if (strncmp(el->s[i], name, nlen) == 0 && el->s[i][nlen] == '=')
			return 1;
	return 0;
}

static int runenv_has(const struct runenv *re, const char *name, size_t nlen)
{
	size_t i;

	for (i = 0; i < re->n; i++)
		if (strlen(re->v[i].name) == nlen && strncmp(re->v[i].name, name, nlen) == 0)
			return 1;
	return 0;
}

static int kept(const struct deliver_opts *o, const char *name, size_t nlen)
{
	size_t i;

	for (i = 0; i < o->nkeep; i++)
		if (strlen(o->keep[i]) == nlen && strncmp(o->keep[i], name, nlen) == 0)
			return 1;
	return 0;
}

#define VERSIONS_VAR "PCSECRET_VERSIONS"

/* NAME=value, or NAME_FILE=path with --files. Reports its own failures. */
static int deliver(struct envlist *el, const struct runenv_var *v, struct tmpfiles *files)
{
	char path[PATH_MAX], fname[PCS_ENV_NAME_MAX + 8];
	pcs_error err = { 0 };
	int r;

	if (files != NULL && v->secret) {
		(void)snprintf(fname, sizeof(fname), "%s_FILE", v->name);
		/* SSL_CERT + _FILE is a name no binding may set: check what is set. */
		if ((r = envname_check(fname, &err)) != 0 ||
		    (r = tmpfiles_write(
		         files, v->name, v->value, v->len, path, sizeof(path), &err)) != 0 ||
		    (r = envlist_add(el, fname, strlen(fname), path, strlen(path), &err)) != 0) {
			fprintf(stderr, "pcrun: cannot deliver %s as a file: ", v->name);
			runenv_report(NULL, &err);
		}
		return r;
	}
	if ((r = envlist_add(el, v->name, strlen(v->name), (const char *)v->value, v->len, &err)) !=
	    0)
		runenv_report(NULL, &err);
	return r;
}

int deliver_env(const struct runenv *re, const struct deliver_opts *o, struct tmpfiles *files,
    struct envlist *el)
{
	char *versions = NULL, *nv, item[PCS_ENV_NAME_MAX + 16];
	size_t i, vlen = 0, ilen;
	pcs_error err = { 0 };
	const char *eq;
	char **e;
	int r = -1, nul = 0;

	/* A value with a NUL byte cannot be an environment variable: name every one. */
	for (i = 0; i < re->n; i++)
		if (runenv_delivered(&re->v[i]) && !(files != NULL && re->v[i].secret) &&
		    memchr(re->v[i].value, '\0', re->v[i].len) != NULL) {
			fprintf(stderr,
			    "pcrun: cannot set %s: its value contains a NUL byte (--files delivers "
			    "such values)\n",
			    re->v[i].name);
			nul = 1;
		}
	if (nul)
		goto out;
	for (i = 0; i < re->n; i++) {
		if (!runenv_delivered(&re->v[i]))
			continue;
		if (deliver(el, &re->v[i], files) != 0)
			goto out;
		if (!re->v[i].secret || re->v[i].version == 0)
			continue;
		ilen = (size_t)snprintf(item, sizeof(item), "%s%s=%u", vlen > 0 ? "," : "",
		    re->v[i].name, re->v[i].version);
		if ((nv = realloc(versions, vlen + ilen + 1)) == NULL)
			goto oom;
		versions = nv;
		memcpy(versions + vlen, item, ilen + 1);
		vlen += ilen;
	}
	if (versions != NULL &&
	    envlist_add(el, VERSIONS_VAR, strlen(VERSIONS_VAR), versions, vlen, &err) != 0)
		goto oom;
	for (e = environ; *e != NULL; e++) {
		if ((eq = strchr(*e, '=')) == NULL)
			continue;
		if (runenv_has(re, *e, (size_t)(eq - *e)) ||
		    envlist_has(el, *e, (size_t)(eq - *e)) ||
		    ((size_t)(eq - *e) == strlen(VERSIONS_VAR) &&
		        strncmp(*e, VERSIONS_VAR, strlen(VERSIONS_VAR)) == 0))
			continue;
		if (o->clean_env && !kept(o, *e, (size_t)(eq - *e)))
			continue;
		if (envlist_add(el, *e, (size_t)(eq - *e), eq + 1, strlen(eq + 1), &err) != 0)
			goto oom;
	}
	r = 0;
	goto out;
oom:
	runenv_report(NULL, &err);
out:
	free(versions);
	return r;
}

/* Adds the secret values of re long enough to mask; warns about the others when warn. */
static void add_mask_values(const struct runenv *re, int warn, struct mask_value *mv, size_t *n)
{
	size_t i;

	for (i = 0; i < re->n; i++) {
		if (!runenv_delivered(&re->v[i]) || !re->v[i].secret || re->v[i].len == 0)
			continue;
		if (re->v[i].len < MASK_MIN_LEN) {
			if (warn)
				fprintf(stderr,
				    "pcrun: warning: the value of %s is shorter than %d bytes: not "
				    "masked\n",
				    re->v[i].name, MASK_MIN_LEN);
			continue;
		}
		mv[*n].data = re->v[i].value;
		mv[(*n)++].len = re->v[i].len;
	}
}

int deliver_mask_values(
    const struct runenv *a, const struct runenv *b, struct mask_value **out, size_t *n)
{
	struct mask_value *mv;

	*n = 0;
	if ((mv = calloc(a->n + (b != NULL ? b->n : 0) + 1, sizeof(*mv))) == NULL)
		return -1;
	add_mask_values(a, 1, mv, n);
	if (b != NULL)
		add_mask_values(b, 0, mv, n);
	mask_values_sort(mv, *n);
	*out = mv;
	return 0;
}
