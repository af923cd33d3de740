/*
 * pcctl's command table and what its handlers share.
 *
 * Each command group (cmd_*.c) exports one table of rows; pcctl.c's runner finds the row,
 * parses the options the row names, checks the number of arguments, runs the handler and
 * prints its error (or its usage), so a handler holds only what its command does: check its
 * arguments, make one call, print the reply for people or, with --json, as one document.
 *
 * The runner owns the connection and the reply and frees both, but does not connect up
 * front: a handler connects (ctl_call) after checking its arguments, so a bad argument is
 * reported as such even when no daemon runs, and `keys init` needs none.
 */
#ifndef PCS_CLIENT_PCCTL_CMD_H
#define PCS_CLIENT_PCCTL_CMD_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "output.h"
#include "ref.h"
#include "rpc.h"
#include "status.h"

/* Most positional arguments and options any command takes; raise them as commands need. */
#define CTL_ARGS_MAX 64
#define CTL_OPTS_MAX 12

struct ctl {
	const char *socket;
	int json;
	int help;                /* --help given to a command: print its usage and succeed */
	int usage;               /* the failure is a usage error: exit 2 with the usage text */
	pcs_client *client;      /* connected on first use; closed by the runner */
	ProtobufCMessage *reply; /* the last ctl_call's reply; freed by the next or the runner */
};

enum ctl_opt_kind {
	CTL_VALUE, /* --name VALUE or --name=VALUE */
	CTL_FLAG,  /* --name alone (--force) */
};

struct ctl_opt {
	const char *name; /* without the leading "--"; NULL ends the list */
	enum ctl_opt_kind kind;
};

#define CTL_NO_OPTS \
	{ \
		{ \
			NULL, CTL_VALUE \
		} \
	}

/* What the runner parsed for a handler; options are read by name with ctl_value/ctl_flag. */
struct ctl_args {
	const struct ctl_command *cmd;
	char *pos[CTL_ARGS_MAX];
	int npos;
	const char *value[CTL_OPTS_MAX]; /* by index in cmd->opts; NULL when not given */
};

/*
 * A row: "pcctl GROUP VERB ARGS" (VERB NULL: the group is the whole command, as `status`),
 * with ARGS and SUMMARY as printed by --help, between min_args and max_args positional
 * arguments, and the options in opts (--json, --socket and --help are everyone's).
 */
struct ctl_command {
	const char *group;
	const char *verb;
	const char *args;
	const char *summary;
	int min_args, max_args;
	struct ctl_opt opts[CTL_OPTS_MAX];
	int (*run)(struct ctl *ctl, const struct ctl_args *args, pcs_error *err);
};

/* The groups' tables, each ended by a row whose group is NULL; --help lists them in order. */
extern const struct ctl_command ctl_session_commands[];
extern const struct ctl_command ctl_company_commands[];
extern const struct ctl_command ctl_secret_commands[];
extern const struct ctl_command ctl_agent_commands[];
extern const struct ctl_command ctl_principal_commands[];
extern const struct ctl_command ctl_audit_commands[];
extern const struct ctl_command ctl_keys_commands[];

/* `secret import` (cmd_import.c), a row of the secret group's table. */
int ctl_secret_import(struct ctl *ctl, const struct ctl_args *args, pcs_error *err);
/* `secret watch` (cmd_watch.c), a row of the secret group's table. */
int ctl_secret_watch(struct ctl *ctl, const struct ctl_args *args, pcs_error *err);

/* The value of a CTL_VALUE option, or NULL when not given. name must be in the row. */
const char *ctl_value(const struct ctl_args *args, const char *name);
/* 1 when the CTL_FLAG option was given. name must be in the row. */
int ctl_flag(const struct ctl_args *args, const char *name);

/* A COMPANY/NAME argument, parsed. */
struct ctl_path {
	char company[PCS_NAME_MAX + 1];
	char name[PCS_NAME_MAX + 1];
};

/* Parses s into path and points *company and *name (a request's two fields) at its parts. */
int ctl_path_parse(const char *s, struct ctl_path *path, char **company, char **name,
    pcs_error *err) __attribute__((warn_unused_result));

/* Fails with a usage error (exit 2, the group's usage on stderr). */
int ctl_usage_fail(struct ctl *ctl, pcs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Decimal digits only, 0 to max; anything else is a usage error naming what. */
int ctl_parse_u64(struct ctl *ctl, const char *what, const char *s, uint64_t max, uint64_t *out,
    pcs_error *err) __attribute__((warn_unused_result));
int ctl_parse_u32(struct ctl *ctl, const char *what, const char *s, uint32_t *out, pcs_error *err)
    __attribute__((warn_unused_result));

/* Connects unless connected. Commands that read a value connect first (docs/cli.md). */
int ctl_connect(struct ctl *ctl, pcs_error *err) __attribute__((warn_unused_result));
/* Connects if needed and calls method; on success the reply is ctl->reply. */
int ctl_call(struct ctl *ctl, const char *method, const ProtobufCMessage *req, pcs_error *err)
    __attribute__((warn_unused_result));
/* Connects if needed; *hello is the handshake's reply, owned by the connection. */
int ctl_hello(struct ctl *ctl, const Pcsecret__V1__HelloReply **hello, pcs_error *err)
    __attribute__((warn_unused_result));
/* Frees the reply and closes the connection. */
void ctl_release(struct ctl *ctl);
/* A reply that lacks the message it exists to carry. */
int ctl_no_reply_field(const char *method, pcs_error *err);

/* Prints doc (consumed, NULL meaning out of memory) as the command's JSON document. */
int ctl_emit(json_t *doc, pcs_error *err);

/* Item i of a list reply's array (items), as JSON or as a table row. */
typedef json_t *ctl_item_json_fn(const void *items, size_t i);
typedef int ctl_item_row_fn(struct table *t, const void *items, size_t i);
/* The n items as a JSON array; NULL when out of memory. */
json_t *ctl_json_array(const void *items, size_t n, ctl_item_json_fn *json);
/* Emits the n items as the command's JSON document, an array. */
int ctl_emit_array(const void *items, size_t n, ctl_item_json_fn *json, pcs_error *err);
/* Adds the n items to t (consumed, NULL meaning out of memory) and prints it. */
int ctl_print_table(
    struct table *t, const void *items, size_t n, ctl_item_row_fn *row, pcs_error *err);

#endif
