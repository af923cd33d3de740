#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

#define KV_WIDTH 13

struct table {
	size_t ncols;
	size_t nrows;
	size_t cap;
	char **cells; /* (nrows + 1) * ncols, row 0 the header */
};

static char *cell_dup(const char *s) { return strdup(s != NULL && s[0] != '\0' ? s : "-"); }

static int table_grow(struct table *t)
{
	char **nc;
	size_t ncap;

	if (t->nrows < t->cap)
		return 0;
	ncap = t->cap == 0 ? 16 : t->cap * 2;
	if ((nc = realloc(t->cells, ncap * t->ncols * sizeof(*nc))) == NULL)
		return -1;
	t->cells = nc;
	t->cap = ncap;
	return 0;
}

static int table_vadd(struct table *t, va_list ap)
{
	size_t i, base;

	if (table_grow(t) != 0)
		return -1;
	base = t->nrows * t->ncols;
	for (i = 0; i < t->ncols; i++) {
		if ((t->cells[base + i] = cell_dup(va_arg(ap, const char *))) == NULL) {
			while (i > 0)
				free(t->cells[base + --i]);
			return -1;
		}
	}
	t->nrows++;
	return 0;
}

struct table *table_new(size_t ncols, ...)
{
	struct table *t;
	va_list ap;
	int r;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->ncols = ncols;
	va_start(ap, ncols);
	r = table_vadd(t, ap);
	va_end(ap);
	if (r != 0) {
		table_free(t);
		return NULL;
	}
	return t;
}

int table_add(struct table *t, ...)
{
	va_list ap;
	int r;

	va_start(ap, t);
	r = table_vadd(t, ap);
	va_end(ap);
	return r;
}

void out_safe(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void table_print(const struct table *t, FILE *f)
{
	size_t *width, r, c, w;

	if ((width = calloc(t->ncols, sizeof(*width))) == NULL)
		return;
	for (r = 0; r < t->nrows; r++)
		for (c = 0; c < t->ncols; c++)
			if ((w = text_width(t->cells[r * t->ncols + c])) > width[c])
				width[c] = w;
	for (r = 0; r < t->nrows; r++) {
		for (c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];

			out_safe(f, cell);
			/* No trailing blanks after the last column. */
			if (c + 1 < t->ncols)
				fprintf(f, "%*s", (int)(width[c] - text_width(cell) + 2), "");
		}
		fputc('\n', f);
	}
	free(width);
}

void table_free(struct table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

void out_kv(FILE *f, const char *key, const char *value)
{
	fprintf(f, "%-*s", KV_WIDTH, key);
	out_safe(f, value != NULL && value[0] != '\0' ? value : "-");
	fputc('\n', f);
}

void out_kvf(FILE *f, const char *key, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	out_kv(f, key, buf);
}

json_t *json_text(const char *s)
{
	json_t *j;
	char *copy;
	size_t i;

	if (s == NULL)
		s = "";
	if ((j = json_string(s)) != NULL)
		return j;
	if ((copy = strdup(s)) == NULL)
		return NULL;
	for (i = 0; copy[i] != '\0'; i++)
		if ((unsigned char)copy[i] >= 0x80)
			copy[i] = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

int json_emit(json_t *doc)
{
	int r;

	if (doc == NULL)
		return -1;
	/* 15 digits: a rounded real (secret import's 0.25 s) prints as 0.25, not 0.2500000000000001. */
	r = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15));
	json_decref(doc);
	if (r != 0 || fputc('\n', stdout) == EOF)
		return -1;
	return 0;
}
