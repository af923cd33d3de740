/*
 * envfile: the variables of pcrun's --env-file (dotenv) and --env-json (Paperclip's agent env
 * format) files. Parsing only: each variable goes to a callback as a reference to resolve or
 * a literal value. Names are checked (envname_check) before anything is handed on. Messages
 * name the file, the line or the variable and the problem, never a value or the file's text.
 */
#ifndef PCS_CLIENT_ENVFILE_H
#define PCS_CLIENT_ENVFILE_H

#include <stddef.h>

#include "status.h"

/* An --env-file or --env-json file is a handful of variables; anything this big is a mistake. */
#define ENVFILE_MAX (1024 * 1024)

/*
 * One variable: ref is a "pcs:" reference (value NULL), or value/len a literal (ref NULL; not
 * NUL-terminated, and only valid during the call). Returns 0 or a negative status.
 */
typedef int (*envfile_add_fn)(
    void *ctx, const char *name, const char *ref, const char *value, size_t len, pcs_error *err);

/*
 * Makes jansson allocate through a wiping allocator (the JSON text holds literal values).
 * Call once, before any other jansson use.
 */
void envfile_init(void);

/*
 * Reads file (a regular file or a pipe, at most ENVFILE_MAX bytes) into secure memory, through
 * a close-on-exec descriptor. *text is NUL-terminated; free it with sodium_free.
 */
int envfile_read(const char *file, char **text, size_t *len, pcs_error *err)
    __attribute__((warn_unused_result));

/*
 * NAME=value lines (blanks around the = allowed); blank lines and lines starting with '#' are skipped; "export " may come
 * first. A value is unquoted (trimmed; " #" starts a comment), 'single-quoted' (literal) or
 * "double-quoted" (\n \t \r \\ \" \$ escapes). A value starting with "pcs:" is a reference.
 * file is for messages only.
 */
int envfile_parse_dotenv(const char *file, const char *text, size_t len, envfile_add_fn add,
    void *ctx, pcs_error *err) __attribute__((warn_unused_result));

/*
 * A JSON object of NAME: value, where value is a string (a "pcs:" reference, or a literal),
 * {"type":"plain","value":"..."} (always a literal) or
 * {"type":"secret_ref","secretId":"<uuid>","version":"latest"|N|"N"} (version optional:
 * latest). No other members or types. file is for messages only.
 */
int envfile_parse_json(const char *file, const char *text, size_t len, envfile_add_fn add,
    void *ctx, pcs_error *err) __attribute__((warn_unused_result));

#endif
