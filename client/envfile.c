/*
 * envfile: dotenv and Paperclip JSON files of variables for pcrun.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "envfile.h"
#include "envname.h"
#include "ref.h"

/*
 * jansson's allocator: its lexer and its strings hold the file's literal values, and its free
 * gets no size, so each block keeps its size in front of it and is wiped when freed.
 */
static void *wipe_malloc(size_t size)
{
	unsigned char *p;

	if (size > SIZE_MAX - sizeof(max_align_t) ||
	    (p = malloc(sizeof(max_align_t) + size)) == NULL)
		return NULL;
	memcpy(p, &size, sizeof(size));
	return p + sizeof(max_align_t);
}

static void wipe_free(void *block)
{
	unsigned char *p;
	size_t size;

	if (block == NULL)
		return;
	p = (unsigned char *)block - sizeof(max_align_t);
	memcpy(&size, p, sizeof(size));
	sodium_memzero(p, sizeof(max_align_t) + size);
	free(p);
}

void envfile_init(void) { json_set_alloc_funcs(wipe_malloc, wipe_free); }

int envfile_read(const char *file, char **text, size_t *len, pcs_error *err)
{
	char *buf = NULL, *nb;
	size_t got = 0, cap = 0, ncap;
	ssize_t n;
	int fd, r;

	*text = NULL;
	*len = 0;
	if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: %s", file, strerror(errno));
		goto out;
	}
	for (;;) {
		/* One spare byte for the NUL. */
		if (got + 1 >= cap) {
			if (cap > ENVFILE_MAX) {
				r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: longer than %d bytes",
				    file, ENVFILE_MAX);
				goto out;
			}
			ncap = cap == 0 ? 4096 : cap * 2;
			/* Not realloc: the old block holds values and is wiped by sodium_free. */
			if ((nb = sodium_malloc(ncap)) == NULL) {
				r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of secure memory");
				goto out;
			}
			if (got > 0)
				memcpy(nb, buf, got);
			sodium_free(buf);
			buf = nb;
			cap = ncap;
		}
		n = read(fd, buf + got, cap - got - 1);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: %s", file, strerror(errno));
			goto out;
		}
		got += (size_t)n;
	}
	if (got > ENVFILE_MAX) {
		r = pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "%s: longer than %d bytes", file, ENVFILE_MAX);
		goto out;
	}
	buf[got] = '\0';
	*text = buf;
	*len = got;
	buf = NULL;
	r = 0;
out:
	sodium_free(buf);
	if (fd != -1)
		(void)close(fd);
	return r;
}

static int is_ref(const char *s, size_t len)
{
	return len >= sizeof(PCS_REF_PREFIX) - 1 &&
	    memcmp(s, PCS_REF_PREFIX, sizeof(PCS_REF_PREFIX) - 1) == 0;
}

/* Hands one variable on: a reference (copied to a string) or a literal. */
static int emit(const char *file, const char *name, const char *value, size_t len, int literal_only,
    envfile_add_fn add, void *ctx, pcs_error *err)
{
	pcs_error nerr;
	char *ref;
	int r;

	if (envname_check(name, &nerr) != 0)
		return pcs_fail(err, nerr.code, "%s: %s", file, nerr.message);
	if (literal_only || !is_ref(value, len))
		return add(ctx, name, NULL, value, len, err);
	/* A reference is a short printable string; ref_parse checks the rest later. */
	if (memchr(value, '\0', len) != NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "%s: the reference of %s contains a NUL byte", file, name);
	if ((ref = strndup(value, len)) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	r = add(ctx, name, ref, NULL, 0, err);
	free(ref);
	return r;
}

/* ---- dotenv ---- */

static int blank(char c) { return c == ' ' || c == '\t'; }

/*
 * One value from p (after '='), up to end (the end of the line), into out (secure memory of
 * at least end - p bytes); *outlen its length.
 */
static int dotenv_value(const char *file, size_t line, const char *p, const char *end, char *out,
    size_t *outlen, pcs_error *err)
{
	size_t n = 0;
	char q;

	while (p < end && blank(*p))
		p++;
	if (p < end && (*p == '\'' || *p == '"')) {
		q = *p++;
		for (;;) {
			if (p >= end)
				return pcs_fail(err, PCS_INVALID_ARGUMENT,
				    "%s:%zu: the quoted value does not end on its line", file,
				    line);
			if (*p == q)
				break;
			if (q == '"' && *p == '\\' && p + 1 < end) {
				p++;
				switch (*p) {
				case 'n':
					out[n++] = '\n';
					break;
				case 't':
					out[n++] = '\t';
					break;
				case 'r':
					out[n++] = '\r';
					break;
				case '\\':
				case '"':
				case '$':
					out[n++] = *p;
					break;
				default:
					return pcs_fail(err, PCS_INVALID_ARGUMENT,
					    "%s:%zu: unknown escape in a double-quoted value", file,
					    line);
				}
				p++;
				continue;
			}
			out[n++] = *p++;
		}
		p++;
		while (p < end && blank(*p))
			p++;
		if (p < end && *p != '#')
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "%s:%zu: text after the closing quote", file, line);
		*outlen = n;
		return 0;
	}
	/* Unquoted: up to a '#' that follows a blank, trailing blanks removed. */
	while (p < end) {
		if (*p == '#' && n > 0 && blank(out[n - 1]))
			break;
		out[n++] = *p++;
	}
	while (n > 0 && blank(out[n - 1]))
		n--;
	*outlen = n;
	return 0;
}

int envfile_parse_dotenv(
    const char *file, const char *text, size_t len, envfile_add_fn add, void *ctx, pcs_error *err)
{
	const char *p = text, *end = text + len, *eol, *s, *eq;
	char name[PCS_ENV_NAME_MAX + 2], *val = NULL;
	size_t line = 0, vlen = 0, nlen;
	int r = 0;

	if ((val = sodium_malloc(len + 1)) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of secure memory");
	for (; p < end; p = eol + 1) {
		line++;
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		s = p;
		while (s < eol && blank(*s))
			s++;
		if (s == eol || *s == '#' || (*s == '\r' && s + 1 == eol))
			continue;
		if ((size_t)(eol - s) > 7 && memcmp(s, "export", 6) == 0 && blank(s[6])) {
			s += 7;
			while (s < eol && blank(*s))
				s++;
		}
		if ((eq = memchr(s, '=', (size_t)(eol - s))) == NULL) {
			r = pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "%s:%zu: not NAME=value", file, line);
			goto out;
		}
		nlen = (size_t)(eq - s);
		while (nlen > 0 && blank(s[nlen - 1]))
			nlen--;
		if (nlen == 0 || nlen > PCS_ENV_NAME_MAX || memchr(s, '\0', nlen) != NULL) {
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s:%zu: not a valid variable name",
			    file, line);
			goto out;
		}
		memcpy(name, s, nlen);
		name[nlen] = '\0';
		/* Never quote an invalid name: it may be a value on a malformed line. */
		if (!env_name_valid(name)) {
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s:%zu: not a valid variable name",
			    file, line);
			goto out;
		}
		/* A Windows line end is not part of the value. */
		if ((r = dotenv_value(file, line, eq + 1,
		         eol > eq + 1 && eol[-1] == '\r' ? eol - 1 : eol, val, &vlen, err)) != 0 ||
		    (r = emit(file, name, val, vlen, 0, add, ctx, err)) != 0)
			goto out;
		sodium_memzero(val, vlen);
	}
	r = 0;
out:
	sodium_free(val);
	return r;
}

/* ---- Paperclip JSON ---- */

static int bad_shape(const char *file, const char *name, const char *what, pcs_error *err)
{
	return pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: %s: %s", file, name, what);
}

/* The members of an object other than the allowed ones are refused by name (a JSON key). */
static int only_members(const char *file, const char *name, json_t *o, const char *kind,
    const char *const *allowed, pcs_error *err)
{
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach(o, key, v)
	{
		for (i = 0; allowed[i] != NULL && strcmp(allowed[i], key) != 0; i++)
			;
		if (allowed[i] == NULL)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "%s: %s: unexpected member in a %s object", file, name, kind);
	}
	return 0;
}

/* "latest", a positive integer, or a string of decimal digits, into "@..." (or "" for latest). */
static int json_version(
    const char *file, const char *name, json_t *ver, char *buf, size_t size, pcs_error *err)
{
	const char *s;
	size_t i, n;

	buf[0] = '\0';
	if (ver == NULL)
		return 0;
	if (json_is_integer(ver)) {
		if (json_integer_value(ver) < 1 || json_integer_value(ver) > INT32_MAX)
			return bad_shape(file, name, "version out of range", err);
		(void)snprintf(buf, size, "@%lld", (long long)json_integer_value(ver));
		return 0;
	}
	if (!json_is_string(ver))
		return bad_shape(file, name, "version is not \"latest\" or a number", err);
	s = json_string_value(ver);
	n = json_string_length(ver);
	if (n == 6 && strcmp(s, "latest") == 0)
		return 0;
	if (n == 0 || n > 10 || s[0] == '0')
		return bad_shape(file, name, "version is not \"latest\" or a number", err);
	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return bad_shape(file, name, "version is not \"latest\" or a number", err);
	if (strtoll(s, NULL, 10) > INT32_MAX)
		return bad_shape(file, name, "version out of range", err);
	(void)snprintf(buf, size, "@%s", s);
	return 0;
}

static int json_entry(
    const char *file, const char *name, json_t *val, envfile_add_fn add, void *ctx, pcs_error *err)
{
	static const char *const plain_members[] = { "value", "type", NULL };
	static const char *const ref_members[] = { "secretId", "type", "version", NULL };
	char ref[sizeof(PCS_REF_PREFIX) + PCS_UUID_LEN + 16], vbuf[16];
	const char *type;
	json_t *v;
	int r;

	if (json_is_string(val))
		return emit(
		    file, name, json_string_value(val), json_string_length(val), 0, add, ctx, err);
	if (!json_is_object(val))
		return bad_shape(file, name, "not a string or an object", err);
	v = json_object_get(val, "type");
	if (!json_is_string(v))
		return bad_shape(file, name, "no \"type\" string", err);
	type = json_string_value(v);
	if (strcmp(type, "plain") == 0) {
		if ((r = only_members(file, name, val, "plain", plain_members, err)) != 0)
			return r;
		v = json_object_get(val, "value");
		if (!json_is_string(v))
			return bad_shape(file, name, "a plain entry needs a \"value\" string", err);
		return emit(
		    file, name, json_string_value(v), json_string_length(v), 1, add, ctx, err);
	}
	if (strcmp(type, "secret_ref") != 0)
		return bad_shape(file, name, "unknown type (not \"plain\" or \"secret_ref\")", err);
	if ((r = only_members(file, name, val, "secret_ref", ref_members, err)) != 0)
		return r;
	v = json_object_get(val, "secretId");
	if (!json_is_string(v) || !uuid_valid(json_string_value(v)))
		return bad_shape(file, name, "secretId is not a lowercase uuid", err);
	if ((r = json_version(
	         file, name, json_object_get(val, "version"), vbuf, sizeof(vbuf), err)) != 0)
		return r;
	(void)snprintf(ref, sizeof(ref), PCS_REF_PREFIX "%s%s", json_string_value(v), vbuf);
	return emit(file, name, ref, strlen(ref), 0, add, ctx, err);
}

/*
 * jansson frees without wiping the strings' contents: wipe every string in doc. The depth is
 * bounded by jansson's parser (JSON_PARSER_MAX_DEPTH, 2048).
 */
static void wipe_strings(json_t *j) // NOLINT(misc-no-recursion): depth bounded by the parser
{
	void *it;
	size_t i;

	if (json_is_string(j))
		sodium_memzero((void *)json_string_value(j), json_string_length(j));
	for (it = json_object_iter(j); it != NULL; it = json_object_iter_next(j, it))
		wipe_strings(json_object_iter_value(it));
	for (i = 0; i < json_array_size(j); i++)
		wipe_strings(json_array_get(j, i));
}

int envfile_parse_json(
    const char *file, const char *text, size_t len, envfile_add_fn add, void *ctx, pcs_error *err)
{
	json_error_t jerr;
	json_t *doc = NULL, *val;
	const char *name;
	pcs_error nerr;
	int r;

	/* The file may hold literal values: never quote its text back in an error. */
	if ((doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: not a JSON document (line %d)", file,
		    jerr.line);
		goto out;
	}
	if (!json_is_object(doc)) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: not a JSON object", file);
		goto out;
	}
	json_object_foreach(doc, name, val)
	{
		/* Checked first: the messages below quote the name. */
		if ((r = envname_check(name, &nerr)) != 0) {
			(void)pcs_fail(err, nerr.code, "%s: %s", file, nerr.message);
			goto out;
		}
		if ((r = json_entry(file, name, val, add, ctx, err)) != 0)
			goto out;
	}
	r = 0;
out:
	if (doc != NULL) {
		wipe_strings(doc);
		json_decref(doc);
	}
	return r;
}
