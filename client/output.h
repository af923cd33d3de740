/* pcctl's output: aligned tables and key/value lines for people, jansson documents for --json. */
#ifndef PCS_CLIENT_OUTPUT_H
#define PCS_CLIENT_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

struct table;

/* A table with ncols columns headed by the given names (ncols strings follow). */
struct table *table_new(size_t ncols, ...);
/* Adds a row of ncols strings (copied; NULL prints as "-"). Returns 0 or -1 out of memory. */
int table_add(struct table *t, ...);
/* Prints the table to f with columns aligned; control characters print as '?'. */
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);

/* "key         value", aligned; value is made printable as in table_print. */
void out_kv(FILE *f, const char *key, const char *value);
void out_kvf(FILE *f, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Writes s to f with control characters as '?': server-supplied text must not drive the tty. */
void out_safe(FILE *f, const char *s);

/* A JSON string even from bytes that are not UTF-8 (those print as '?'). Never NULL unless out of memory. */
json_t *json_text(const char *s);
/* Prints doc as the command's one JSON document and frees it. Returns 0 or -1. */
int json_emit(json_t *doc);

#endif
