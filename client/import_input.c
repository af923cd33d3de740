#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "import_input.h"
#include "pbwipe.h"
#include "ref.h"
#include "value_input.h"

/* A whole line and its "\n": a buffer full without one holds a line that is too long. */
#define BUF_LEN (IMPORT_LINE_MAX + 1)

struct import_input {
	int fd;
	int own_fd;
	const char *company; /* for lines without one; may be NULL */
	unsigned char *buf;  /* sodium_malloc'd: the bytes read and not yet consumed */
	size_t start, end;   /* the unread bytes are buf[start, end) */
	int eof;
	unsigned long line;
	char *last;         /* the last line read, wiped when the next is asked for */
	size_t last_len;    /* its length with its line end */
	json_t *doc;        /* the last line, parsed */
	unsigned char *bin; /* sodium_malloc'd: the last value_base64, decoded */
	size_t bin_len;
};

/*
 * jansson's allocator: its lexer and its strings hold values, and its free gets no size, so
 * the wiping protobuf allocator (which keeps each block's size) serves it too.
 */
static void *jwipe_malloc(size_t size) { return pbwipe_allocator.alloc(NULL, size); }

static void jwipe_free(void *p) { pbwipe_allocator.free(NULL, p); }

int import_input_open(
    const char *path, const char *company, struct import_input **out, pcs_error *err)
{
	struct import_input *in = NULL;
	int r;

	*out = NULL;
	if (sodium_init() < 0)
		return pcs_fail(err, PCS_INTERNAL, "libsodium failed to initialise");
	json_set_alloc_funcs(jwipe_malloc, jwipe_free);
	if ((in = calloc(1, sizeof(*in))) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	in->fd = -1;
	in->company = company;
	if ((in->buf = sodium_malloc(BUF_LEN)) == NULL ||
	    (in->bin = sodium_malloc(VALUE_MAX)) == NULL) {
		r = pcs_fail(
		    err, PCS_RESOURCE_EXHAUSTED, "cannot allocate secure memory for the input");
		goto out;
	}
	if (strcmp(path, "-") == 0) {
		/* Typed lines would echo their values on the screen. */
		if (isatty(STDIN_FILENO)) {
			r = pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "refusing to read values from a terminal: redirect or pipe the file");
			goto out;
		}
		in->fd = STDIN_FILENO;
	} else {
		if ((in->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
			r = pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
			goto out;
		}
		in->own_fd = 1;
	}
	*out = in;
	in = NULL;
	r = 0;
out:
	import_input_close(in);
	return r;
}

/*
 * The next line, in place in in->buf, without its "\n" or "\r\n": 1, 0 at the end, or an
 * error. The unread rest moves to the front of the buffer when more must be read.
 */
static int line_read(struct import_input *in, char **line, size_t *len, pcs_error *err)
{
	unsigned char *nl;
	size_t n = 0, rest;
	ssize_t got;

	for (;;) {
		nl = memchr(in->buf + in->start, '\n', in->end - in->start);
		if (nl != NULL || (in->eof && in->end > in->start)) {
			n = nl != NULL ? (size_t)(nl - (in->buf + in->start)) : in->end - in->start;
			*line = (char *)in->buf + in->start;
			in->last = *line;
			in->last_len = n + (nl != NULL);
			in->start += in->last_len;
			if (n > 0 && (*line)[n - 1] == '\r')
				n--;
			*len = n;
			in->line++;
			return 1;
		}
		if (in->eof)
			return 0;
		if (in->start > 0) {
			rest = in->end - in->start;
			memmove(in->buf, in->buf + in->start, rest);
			sodium_memzero(in->buf + rest, in->end - rest);
			in->start = 0;
			in->end = rest;
		}
		if (in->end == BUF_LEN) {
			in->line++;
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "the line is longer than %u bytes", IMPORT_LINE_MAX);
		}
		got = read(in->fd, in->buf + in->end, BUF_LEN - in->end);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return pcs_fail(err, PCS_INVALID_ARGUMENT, "cannot read the input: %s",
			    strerror(errno));
		if (got == 0)
			in->eof = 1;
		in->end += (size_t)got;
	}
}

static int blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return 0;
	return 1;
}

/* What jansson found wrong, in words of our own: its text quotes the line. */
static const char *json_problem(const json_error_t *e)
{
	switch (json_error_code(e)) {
	case json_error_invalid_utf8:
		return "it is not valid UTF-8";
	case json_error_premature_end_of_input:
		return "its JSON object is cut short";
	case json_error_end_of_input_expected:
		return "something follows its JSON value";
	case json_error_duplicate_key:
		return "a key appears twice";
	case json_error_null_byte_in_key:
		return "a key holds a NUL character";
	case json_error_stack_overflow:
		return "it is nested too deeply";
	case json_error_out_of_memory:
		return "out of memory";
	default:
		return "it is not valid JSON";
	}
}

/* A company or secret name: a string without NULs that name_valid accepts. */
static int name_ok(const json_t *s)
{
	return strlen(json_string_value(s)) == json_string_length(s) &&
	    name_valid(json_string_value(s));
}

/* Points item at the line's value, decoding value_base64 into in->bin. */
static int value_get(struct import_input *in, const json_t *value, const json_t *b64,
    struct import_item *item, pcs_error *err)
{
	const char *text;
	size_t n;

	if (value != NULL && b64 != NULL)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "it has both \"value\" and \"value_base64\"");
	if (value == NULL && b64 == NULL)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "it has no \"value\" or \"value_base64\"");
	if (value != NULL) {
		item->value = (const unsigned char *)json_string_value(value);
		item->value_len = json_string_length(value);
	} else {
		text = json_string_value(b64);
		n = json_string_length(b64);
		if (n > sodium_base64_ENCODED_LEN(VALUE_MAX, sodium_base64_VARIANT_ORIGINAL) - 1)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "its value is more than %u bytes, the maximum", VALUE_MAX);
		if (sodium_base642bin(in->bin, VALUE_MAX, text, n, NULL, &in->bin_len, NULL,
		        sodium_base64_VARIANT_ORIGINAL) != 0)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "its \"value_base64\" is not base64 (A-Z a-z 0-9 + /, padded with =)");
		item->value = in->bin;
		item->value_len = in->bin_len;
	}
	if (item->value_len == 0)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "its value is empty");
	if (item->value_len > VALUE_MAX)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "its value is %zu bytes; the maximum is %u", item->value_len, VALUE_MAX);
	return 0;
}

/* Fills item from the line's object (in->doc). */
static int item_get(struct import_input *in, struct import_item *item, pcs_error *err)
{
	const json_t *company = NULL, *name = NULL, *value = NULL, *b64 = NULL, *desc = NULL;
	const char *key;
	json_t *v;

	if (!json_is_object(in->doc))
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "it is not a JSON object");
	json_object_foreach(in->doc, key, v)
	{
		const json_t **slot = strcmp(key, "company") == 0 ? &company :
		    strcmp(key, "name") == 0                      ? &name :
		    strcmp(key, "value") == 0                     ? &value :
		    strcmp(key, "value_base64") == 0              ? &b64 :
		    strcmp(key, "description") == 0               ? &desc :
		                                                    NULL;
		/* Not named: a key may be a value pasted in the wrong place. */
		if (slot == NULL)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "it has a key other than company, name, value, value_base64 and "
			    "description");
		if (!json_is_string(v))
			return pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "its \"%s\" is not a string", key);
		*slot = v;
	}
	if (company != NULL && !name_ok(company))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "its \"company\" is not a valid name (1 to 128 of a-z, 0-9, '-', '_', '.')");
	if (company != NULL && in->company != NULL &&
	    strcmp(json_string_value(company), in->company) != 0)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "its \"company\" is not --company's");
	if (company == NULL && in->company == NULL)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "it has no \"company\" and no --company was given");
	if (name == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "it has no \"name\"");
	if (!name_ok(name))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "its \"name\" is not a valid name (1 to 128 of a-z, 0-9, '-', '_', '.')");
	if (desc != NULL && strlen(json_string_value(desc)) != json_string_length(desc))
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "its \"description\" holds a NUL character");
	item->company = company != NULL ? json_string_value(company) : in->company;
	item->name = json_string_value(name);
	item->description = desc != NULL ? json_string_value(desc) : "";
	return value_get(in, value, b64, item, err);
}

/* Wipes what the last line left: its bytes, its parse (the allocator wipes), its value. */
static void last_wipe(struct import_input *in)
{
	if (in->last != NULL)
		sodium_memzero(in->last, in->last_len);
	in->last = NULL;
	json_decref(in->doc);
	in->doc = NULL;
	if (in->bin_len > 0)
		sodium_memzero(in->bin, in->bin_len);
	in->bin_len = 0;
}

int import_input_next(struct import_input *in, struct import_item *item, pcs_error *err)
{
	json_error_t jerr;
	char *line = NULL;
	size_t len = 0;
	int r;

	memset(item, 0, sizeof(*item));
	for (;;) {
		last_wipe(in);
		if ((r = line_read(in, &line, &len, err)) != 1)
			return r;
		if (!blank(line, len))
			break;
	}
	in->doc = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (in->doc == NULL)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "%s (column %d)", json_problem(&jerr), jerr.column);
	if ((r = item_get(in, item, err)) != 0)
		return r;
	return 1;
}

unsigned long import_input_line(const struct import_input *in) { return in->line; }

void import_input_close(struct import_input *in)
{
	if (in == NULL)
		return;
	last_wipe(in);
	if (in->own_fd && in->fd != -1)
		(void)close(in->fd);
	/* sodium_free wipes the whole allocation before it unmaps it. */
	sodium_free(in->buf);
	sodium_free(in->bin);
	free(in);
}
