/*
 * pcctl: the operators' command line for pcsecretd.
 *
 * Every command prints one result on stdout (a table or lines, or one JSON document with
 * --json). Failures print one line, "pcctl: STATUS: message", on stderr and exit 1; usage
 * errors exit 2. Secret values are read by value_input.c and never appear in argv or output.
 *
 * This file is the runner: global options, finding the command's row in the groups' tables
 * (pcctl_cmd.h), its options and arguments, usage and errors. The commands are in cmd_*.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "output.h"
#include "pcctl_cmd.h"
#include "status.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* In the order --help lists them. */
static const struct ctl_command *const groups[] = {
	ctl_session_commands,
	ctl_company_commands,
	ctl_secret_commands,
	ctl_agent_commands,
	ctl_principal_commands,
	ctl_audit_commands,
	ctl_keys_commands,
	NULL,
};

/*
 * Splits argv (after the command words) into the row's options and positional arguments,
 * with options allowed anywhere. --json, --socket and --help work after the command too.
 */
static int parse_args(struct ctl *ctl, const struct ctl_command *cmd, int argc, char **argv,
    struct ctl_args *args, pcs_error *err)
{
	const struct ctl_opt *o;
	const char *arg, *val, *eq;
	size_t nlen;
	int i, k, only_pos = 0;

	for (i = 0; i < argc; i++) {
		arg = argv[i];
		if (only_pos || arg[0] != '-' || arg[1] == '\0') {
			if (args->npos == cmd->max_args || args->npos == CTL_ARGS_MAX)
				return ctl_usage_fail(ctl, err, "unexpected argument \"%s\"", arg);
			args->pos[args->npos++] = argv[i];
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			ctl->help = 1;
			return 0;
		}
		if (strcmp(arg, "--json") == 0) {
			ctl->json = 1;
			continue;
		}
		/* -f is --follow's short form (tail -f), for the commands that have --follow. */
		if (strcmp(arg, "-f") == 0)
			arg = "--follow";
		if (strncmp(arg, "--", 2) != 0)
			return ctl_usage_fail(ctl, err, "unknown option %s", arg);
		eq = strchr(arg, '=');
		nlen = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		o = NULL;
		for (k = 0; k < CTL_OPTS_MAX && cmd->opts[k].name != NULL; k++) {
			if (strlen(cmd->opts[k].name) == nlen &&
			    strncmp(arg + 2, cmd->opts[k].name, nlen) == 0) {
				o = &cmd->opts[k];
				break;
			}
		}
		if (o == NULL && !(nlen == 6 && strncmp(arg + 2, "socket", 6) == 0))
			return ctl_usage_fail(ctl, err, "unknown option %.*s", (int)nlen + 2, arg);
		if (o != NULL && o->kind == CTL_FLAG) {
			if (eq != NULL)
				return ctl_usage_fail(
				    ctl, err, "option --%s takes no value", o->name);
			/* A flag's value is its own argument: given means not NULL. */
			args->value[k] = arg;
			continue;
		}
		if (eq != NULL)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return ctl_usage_fail(
			    ctl, err, "option --%.*s needs a value", (int)nlen, arg + 2);
		if (o == NULL)
			ctl->socket = val;
		else
			args->value[k] = val;
	}
	if (args->npos < cmd->min_args)
		return ctl_usage_fail(ctl, err, "missing arguments");
	return 0;
}

/* Usage for every command, or for one group's commands. */
static void usage(FILE *f, const char *group)
{
	const struct ctl_command *const *g;
	const struct ctl_command *c;

	fprintf(f, "usage: pcctl [--socket PATH] [--json] COMMAND [ARGS]\n\n");
	for (g = groups; *g != NULL; g++) {
		for (c = *g; c->group != NULL; c++) {
			if (group != NULL && strcmp(group, c->group) != 0)
				continue;
			fprintf(f, "  %s%s%s%s%s\n      %s\n", c->group, c->verb != NULL ? " " : "",
			    c->verb != NULL ? c->verb : "", c->args[0] != '\0' ? " " : "", c->args,
			    c->summary);
		}
	}
	if (group == NULL)
		fprintf(f,
		    "\nThe socket is --socket PATH, else $PCSECRET_SOCKET, else " PCS_DEFAULT_SOCKET
		    ".\nValues come from --from-file FILE (exact bytes), else "
		    "stdin when it is not a terminal\n(one trailing newline removed), else a prompt "
		    "that does not echo. Never from arguments.\n`secret import` reads them from its "
		    "JSON-lines FILE, or from stdin when FILE is - (never a terminal).\n");
}

static const struct ctl_command *command_find(const char *group, const char *verb, int *group_known)
{
	const struct ctl_command *const *g;
	const struct ctl_command *c;

	*group_known = 0;
	for (g = groups; *g != NULL; g++) {
		for (c = *g; c->group != NULL; c++) {
			if (strcmp(c->group, group) != 0)
				continue;
			*group_known = 1;
			if (c->verb == NULL || (verb != NULL && strcmp(c->verb, verb) == 0))
				return c;
		}
	}
	return NULL;
}

/* Keeps the error on one line whatever the server put in its message. */
static void print_error(const pcs_error *err)
{
	fprintf(stderr, "pcctl: %s: ", pcs_status_name(err->code));
	out_safe(stderr, err->message);
	fputc('\n', stderr);
}

/* Runs cmd with the arguments after its words; returns the exit status. */
static int run(struct ctl *ctl, const struct ctl_command *cmd, int argc, char **argv)
{
	struct ctl_args args = { .cmd = cmd };
	pcs_error err = { 0 };
	int r;

	if ((r = parse_args(ctl, cmd, argc, argv, &args, &err)) == 0 && !ctl->help)
		r = cmd->run(ctl, &args, &err);
	if (ctl->help) {
		usage(stdout, cmd->group);
		r = 0;
	} else if (r != 0 && ctl->usage) {
		fprintf(stderr, "pcctl: %s\n", err.message);
		usage(stderr, cmd->group);
		r = EXIT_USAGE;
	} else if (r != 0) {
		print_error(&err);
		r = EXIT_FAILED;
	}
	ctl_release(ctl);
	return r;
}

int main(int argc, char **argv)
{
	struct ctl ctl = { 0 };
	const struct ctl_command *cmd;
	int i, r, known, words;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout, NULL);
			return 0;
		} else if (strcmp(argv[i], "--json") == 0) {
			ctl.json = 1;
		} else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			ctl.socket = argv[++i];
		} else if (strncmp(argv[i], "--socket=", 9) == 0) {
			ctl.socket = argv[i] + 9;
		} else {
			fprintf(stderr, "pcctl: unknown option %s\n", argv[i]);
			usage(stderr, NULL);
			return EXIT_USAGE;
		}
	}
	if (i == argc) {
		usage(stderr, NULL);
		return EXIT_USAGE;
	}
	cmd = command_find(argv[i], i + 1 < argc ? argv[i + 1] : NULL, &known);
	if (cmd == NULL) {
		if (!known)
			fprintf(stderr, "pcctl: unknown command \"%s\"\n", argv[i]);
		else if (i + 1 < argc && strcmp(argv[i + 1], "--help") != 0 &&
		    strcmp(argv[i + 1], "-h") != 0)
			fprintf(stderr, "pcctl: unknown command \"%s %s\"\n", argv[i], argv[i + 1]);
		else if (i + 1 < argc) {
			usage(stdout, argv[i]);
			return 0;
		}
		usage(stderr, known ? argv[i] : NULL);
		return EXIT_USAGE;
	}
	words = cmd->verb != NULL ? 2 : 1;
	r = run(&ctl, cmd, argc - i - words, argv + i + words);
	if (fflush(stdout) != 0 && r == 0) {
		fprintf(stderr, "pcctl: cannot write the output: %s\n", strerror(errno));
		r = EXIT_FAILED;
	}
	return r;
}
