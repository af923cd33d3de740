/*
 * The input of `pcctl secret import`: a JSON-lines file (or stdin), one secret per line,
 * {"company": C, "name": N, "value": V | "value_base64": B, "description": D}, read and parsed
 * one line at a time so that a million lines never sit in memory together.
 *
 * Lines hold values: they are read into locked memory that is wiped, parsed with jansson
 * (whose allocator the caller sets to one that wipes, import_input_open says which), and no
 * error message ever quotes a line's bytes; errors name what is wrong, and the caller names
 * the line (import_input_line).
 */
#ifndef PCS_CLIENT_IMPORT_INPUT_H
#define PCS_CLIENT_IMPORT_INPUT_H

#include <stddef.h>

#include "status.h"

/* Longest line accepted: a 64 KiB value fits even written entirely as \u00XX escapes. */
#define IMPORT_LINE_MAX (1024u * 1024u)

/* One line, parsed. Everything points into the reader's memory, valid until the next call. */
struct import_item {
	const char *company; /* the line's, else the default company */
	const char *name;
	const char *description; /* "" when the line has none */
	const unsigned char *value;
	size_t value_len; /* 1..VALUE_MAX */
};

struct import_input;

/*
 * Opens path ("-": stdin, refused when it is a terminal, which would echo the values).
 * company: the company of lines that name none, or NULL (then every line must). Sets
 * jansson's allocator to one that wipes what it frees: call it before any other use of jansson
 * in the process.
 */
int import_input_open(const char *path, const char *company, struct import_input **out,
    pcs_error *err) __attribute__((warn_unused_result));
/*
 * Reads the next line that is not blank into *item: 1, 0 at the end of the input, or a
 * negative status with err saying what is wrong with the line (never quoting it).
 */
int import_input_next(struct import_input *in, struct import_item *item, pcs_error *err)
    __attribute__((warn_unused_result));
/* The number (from 1) of the line import_input_next last read. */
unsigned long import_input_line(const struct import_input *in);
/* Wipes what is left of the input and frees it. NULL is fine. */
void import_input_close(struct import_input *in);

#endif
