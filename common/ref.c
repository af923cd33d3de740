#include <stdio.h>
#include <string.h>

#include "ref.h"

#define REF_PREFIX_LEN (sizeof(PCS_REF_PREFIX) - 1)
#define REF_VERSION_MAX 2147483647u
#define REF_VERSION_DIGITS 10
/* The longest reference any valid parts can make: pcs:COMPANY/NAME@VERSION. */
#define REF_MAX_LEN (REF_PREFIX_LEN + PCS_NAME_MAX + 1 + PCS_NAME_MAX + 1 + REF_VERSION_DIGITS)
/* Room for a quoted excerpt of user input in a pcs_error message. */
#define REF_QUOTE_LEN 64

static int is_lower(char c) { return c >= 'a' && c <= 'z'; }

static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_name_char(char c)
{
	return is_lower(c) || is_digit(c) || c == '-' || c == '_' || c == '.';
}

static int is_hex(char c, int allow_upper)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (allow_upper && c >= 'A' && c <= 'F');
}

/*
 * Copies at most REF_QUOTE_LEN characters of s for an error message. Bytes that could break
 * a log line or the quoting (controls, quotes, non-ASCII) become '?'.
 */
static void quote(char dst[REF_QUOTE_LEN + 4], const char *s, size_t len)
{
	size_t i, n = len > REF_QUOTE_LEN ? REF_QUOTE_LEN : len;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
	}
	if (n < len) {
		memcpy(dst + n, "...", 3);
		n += 3;
	}
	dst[n] = '\0';
}

/* Returns 0 when s[0..len) is a valid name, else -1 with why saying what is wrong. */
static int name_check(const char *s, size_t len, char *why, size_t why_size)
{
	size_t i;

	if (len == 0) {
		(void)snprintf(why, why_size, "is empty");
		return -1;
	}
	if (len > PCS_NAME_MAX) {
		(void)snprintf(why, why_size, "is longer than %d characters", PCS_NAME_MAX);
		return -1;
	}
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.')) {
		(void)snprintf(why, why_size, "may not be \".\" or \"..\"");
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_name_char((char)c))
			continue;
		if (c > 0x20 && c < 0x7f && c != '\'' && c != '"' && c != '\\')
			(void)snprintf(why, why_size, "contains '%c'", c);
		else
			(void)snprintf(why, why_size, "contains byte 0x%02x", c);
		return -1;
	}
	return 0;
}

static int uuid_check(const char *s, size_t len, int allow_upper)
{
	size_t i;

	if (len != PCS_UUID_LEN)
		return -1;
	for (i = 0; i < len; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
		} else if (!is_hex(s[i], allow_upper)) {
			return -1;
		}
	}
	return 0;
}

int name_valid(const char *s)
{
	char why[64];

	if (s == NULL)
		return 0;
	/* Bounded: an over-long name is invalid whatever follows. */
	return name_check(s, strnlen(s, PCS_NAME_MAX + 1), why, sizeof(why)) == 0;
}

int env_name_valid(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || is_digit(s[0]))
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		if (i >= PCS_ENV_NAME_MAX)
			return 0;
		if (!is_lower(s[i]) && !is_upper(s[i]) && !is_digit(s[i]) && s[i] != '_')
			return 0;
	}
	return 1;
}

int uuid_valid(const char *s)
{
	if (s == NULL)
		return 0;
	return uuid_check(s, strnlen(s, PCS_UUID_LEN + 1), 0) == 0;
}

/* Parses the text after '@'. */
static int version_parse(const char *v, const char *q, uint32_t *out, pcs_error *err)
{
	char qv[REF_QUOTE_LEN + 4];
	uint64_t n = 0;
	size_t i, len = strlen(v);

	if (len == 0)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "reference \"%s\" ends with '@' but names no version", q);
	if (strcmp(v, "latest") == 0) {
		*out = 0;
		return 0;
	}
	quote(qv, v, len);
	/* At most ten digits, so the value fits in 64 bits before the range check. */
	if (len > REF_VERSION_DIGITS || v[0] == '0')
		goto bad;
	for (i = 0; i < len; i++) {
		if (!is_digit(v[i]))
			goto bad;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	if (n > REF_VERSION_MAX)
		goto bad;
	*out = (uint32_t)n;
	return 0;
bad:
	return pcs_fail(err, PCS_INVALID_ARGUMENT,
	    "version \"%s\" in reference \"%s\" is not \"latest\" or a number from 1 to %u", qv, q,
	    REF_VERSION_MAX);
}

int ref_parse(const char *s, struct pcs_ref *out, pcs_error *err)
{
	struct pcs_ref ref;
	char q[REF_QUOTE_LEN + 4], qp[REF_QUOTE_LEN + 4], why[64];
	const char *body, *at, *slash;
	size_t len, body_len, i;
	int r;

	memset(&ref, 0, sizeof(ref));
	memset(out, 0, sizeof(*out));
	if (s == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "reference is missing");
		goto out;
	}
	len = strnlen(s, REF_MAX_LEN + 1);
	quote(q, s, len);
	if (len == 0) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "reference is empty");
		goto out;
	}
	if (len > REF_MAX_LEN) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "reference \"%s\" is longer than %zu characters", q, REF_MAX_LEN);
		goto out;
	}
	if (strncmp(s, PCS_REF_PREFIX, REF_PREFIX_LEN) != 0) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "reference \"%s\" does not start with \"" PCS_REF_PREFIX "\"", q);
		goto out;
	}
	body = s + REF_PREFIX_LEN;
	body_len = len - REF_PREFIX_LEN;
	if ((at = memchr(body, '@', body_len)) != NULL) {
		if (strchr(at + 1, '@') != NULL) {
			r = pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "reference \"%s\" has more than one '@'", q);
			goto out;
		}
		body_len = (size_t)(at - body);
		if ((r = version_parse(at + 1, q, &ref.version, err)) != 0)
			goto out;
	}
	if (body_len == 0) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "reference \"%s\" names no secret", q);
		goto out;
	}
	if ((slash = memchr(body, '/', body_len)) == NULL) {
		if (uuid_check(body, body_len, 1) != 0) {
			r = pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "reference \"%s\" has no secret name "
			    "(expected pcs:COMPANY/NAME or pcs:SECRET-ID)",
			    q);
			goto out;
		}
		/* Ids are compared as strings downstream, so store one spelling. */
		for (i = 0; i < body_len; i++) {
			char c = body[i];
			ref.secret_id[i] = is_upper(c) ? (char)(c - 'A' + 'a') : c;
		}
		ref.secret_id[body_len] = '\0';
		goto done;
	}
	{
		size_t company_len = (size_t)(slash - body);
		const char *name = slash + 1;
		size_t name_len = body_len - company_len - 1;

		if (memchr(name, '/', name_len) != NULL) {
			r = pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "reference \"%s\" has more than one '/'", q);
			goto out;
		}
		if (company_len == 0) {
			r = pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "reference \"%s\" has no company", q);
			goto out;
		}
		if (name_len == 0) {
			r = pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "reference \"%s\" has no secret name", q);
			goto out;
		}
		if (name_check(body, company_len, why, sizeof(why)) != 0) {
			quote(qp, body, company_len);
			r = pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "company \"%s\" in reference \"%s\" %s", qp, q, why);
			goto out;
		}
		if (name_check(name, name_len, why, sizeof(why)) != 0) {
			quote(qp, name, name_len);
			r = pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "secret name \"%s\" in reference \"%s\" %s", qp, q, why);
			goto out;
		}
		memcpy(ref.company, body, company_len);
		memcpy(ref.name, name, name_len);
	}
done:
	*out = ref;
	r = 0;
out:
	return r;
}

int ref_format(const struct pcs_ref *ref, char *buf, size_t size)
{
	char ver[16] = "";
	int n;

	if (buf == NULL || size == 0)
		return -PCS_INVALID_ARGUMENT;
	buf[0] = '\0';
	/* A string that would not parse back is worse than none. */
	if (ref == NULL || ref->version > REF_VERSION_MAX ||
	    memchr(ref->secret_id, '\0', sizeof(ref->secret_id)) == NULL ||
	    memchr(ref->company, '\0', sizeof(ref->company)) == NULL ||
	    memchr(ref->name, '\0', sizeof(ref->name)) == NULL)
		return -PCS_INVALID_ARGUMENT;
	if (ref->version != 0)
		(void)snprintf(ver, sizeof(ver), "@%u", ref->version);
	if (ref->secret_id[0] != '\0') {
		if (!uuid_valid(ref->secret_id))
			return -PCS_INVALID_ARGUMENT;
		n = snprintf(buf, size, PCS_REF_PREFIX "%s%s", ref->secret_id, ver);
	} else {
		if (!name_valid(ref->company) || !name_valid(ref->name))
			return -PCS_INVALID_ARGUMENT;
		n = snprintf(buf, size, PCS_REF_PREFIX "%s/%s%s", ref->company, ref->name, ver);
	}
	if (n < 0 || (size_t)n >= size) {
		buf[0] = '\0';
		return -PCS_INVALID_ARGUMENT;
	}
	return 0;
}

int ref_parse_path(
    const char *s, char company[PCS_NAME_MAX + 1], char name[PCS_NAME_MAX + 1], pcs_error *err)
{
	char q[REF_QUOTE_LEN + 4], qp[REF_QUOTE_LEN + 4], why[64];
	const char *slash, *n;
	size_t len, company_len, name_len;
	int r;

	company[0] = '\0';
	name[0] = '\0';
	if (s == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "COMPANY/NAME is missing");
		goto out;
	}
	len = strlen(s);
	quote(q, s, len);
	if ((slash = memchr(s, '/', len)) == NULL) {
		r = pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "\"%s\" is not COMPANY/NAME: it has no '/'", q);
		goto out;
	}
	company_len = (size_t)(slash - s);
	n = slash + 1;
	name_len = len - company_len - 1;
	if (memchr(n, '/', name_len) != NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "\"%s\" is not COMPANY/NAME: it has more than one '/'", q);
		goto out;
	}
	if (name_check(s, company_len, why, sizeof(why)) != 0) {
		quote(qp, s, company_len);
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "company \"%s\" in \"%s\" %s", qp, q, why);
		goto out;
	}
	if (name_check(n, name_len, why, sizeof(why)) != 0) {
		quote(qp, n, name_len);
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "name \"%s\" in \"%s\" %s", qp, q, why);
		goto out;
	}
	memcpy(company, s, company_len);
	company[company_len] = '\0';
	memcpy(name, n, name_len);
	name[name_len] = '\0';
	r = 0;
out:
	return r;
}
