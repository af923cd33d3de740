/*
 * pcrun: resolve secret references, then run the agent with them (docs/cli.md, "pcrun").
 *
 * Sources, later ones overriding earlier ones for the same variable: the inherited
 * environment's "pcs:" references; --env-file and --env-json files in the order given; the
 * configured environment of --agent (GetAgentEnv). Everything is resolved before PROGRAM
 * starts, or PROGRAM does not start. By default pcrun then execs PROGRAM with the values in
 * its environment; with --files, --mask or --on-change it stays PROGRAM's parent (child.c)
 * to clean up the value files, to mask the output, or to follow changes (follow.c). The
 * modules: runenv.c (variables and resolving), envfile.c (the files), deliver.c (the child's
 * environment), tmpfiles.c (--files), mask.c and child.c (--mask, supervision), onchange.c
 * and follow.c (--on-change).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "child.h"
#include "envfile.h"
#include "deliver.h"
#include "envname.h"
#include "follow.h"
#include "mask.h"
#include "onchange.h"
#include "ref.h"
#include "rpc.h"
#include "runenv.h"
#include "status.h"
#include "tmpfiles.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_NOEXEC 127
#define WAIT_MAX_S 86400
#define GRACE_MAX_S 3600
#define GRACE_DEFAULT_S 10
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000

extern char **environ;

struct source {
	int json; /* --env-json; else --env-file */
	const char *file;
};

struct settings {
	pcs_options opts;
	const char *agent;
	struct source *sources;
	size_t nsources;
	const char *files_dir; /* --files */
	int mask;
	int clean_env;
	char **keep; /* --keep names, each strdup'd */
	size_t nkeep;
	long wait_s;
	enum onchange_mode on_change; /* --on-change */
	int on_change_sig;
	long grace_s; /* --grace; -1 when not given */
};

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: pcrun [--socket PATH] [--agent COMPANY/AGENT] [--env-file FILE]\n"
	    "             [--env-json FILE] [--files DIR] [--mask] [--clean-env [--keep NAME]...]\n"
	    "             [--wait SECONDS] [--on-change restart|signal:NAME|exit [--grace SECONDS]]\n"
	    "             -- PROGRAM [ARGS...]\n\n"
	    "Replaces every environment variable whose value is a reference (pcs:COMPANY/NAME[@N]\n"
	    "or pcs:SECRET-ID[@N]) with the secret's value, then runs PROGRAM.\n"
	    "  --agent C/A       add the agent's configured environment; resolve on its behalf\n"
	    "  --env-file FILE   add NAME=value lines (dotenv); values may be pcs: references\n"
	    "  --env-json FILE   add a JSON object in Paperclip's agent env format\n"
	    "  --files DIR       write each secret to a file in a new private directory under DIR\n"
	    "                    (tmpfs/ramfs) and set NAME_FILE=path; removed when PROGRAM exits\n"
	    "  --mask            replace secret values in PROGRAM's stdout and stderr\n"
	    "  --clean-env       PROGRAM gets only the variables pcrun sets and --keep NAME[,NAME]\n"
	    "  --wait SECONDS    retry while the daemon is unreachable or UNAVAILABLE\n"
	    "  --on-change WHAT  stay PROGRAM's parent and watch what it was given; on a change\n"
	    "                    restart it, or (with --files) rewrite the files and send it\n"
	    "                    signal:NAME (HUP, USR1, ...), or stop it and exit 75\n"
	    "  --grace SECONDS   after SIGTERM, wait this long before SIGKILL (default 10)\n"
	    "PCSECRET_VERSIONS=NAME=N,... tells PROGRAM the version of each secret it got.\n");
}

static int settings_keep(struct settings *st, const char *arg)
{
	char *copy, *tok, *save = NULL, **nk;
	int r = 0;

	if ((copy = strdup(arg)) == NULL)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (!env_name_valid(tok)) {
			fprintf(stderr, "pcrun: --keep: not a valid variable name\n");
			r = -1;
			break;
		}
		if ((nk = realloc(st->keep, (st->nkeep + 1) * sizeof(*nk))) == NULL ||
		    (nk[st->nkeep] = strdup(tok)) == NULL) {
			if (nk != NULL)
				st->keep = nk;
			r = -1;
			break;
		}
		st->keep = nk;
		st->nkeep++;
	}
	free(copy);
	return r;
}

static void settings_free(struct settings *st)
{
	size_t i;

	for (i = 0; i < st->nkeep; i++)
		free(st->keep[i]);
	free(st->keep);
	free(st->sources);
}

/* Parses the options; 0, or the exit status to leave with. *prog: PROGRAM's index. */
static int parse_options(int argc, char **argv, struct settings *st, int *prog)
{
	static const struct option longopts[] = { { "socket", required_argument, NULL, 's' },
		{ "agent", required_argument, NULL, 'a' },
		{ "env-json", required_argument, NULL, 'j' },
		{ "env-file", required_argument, NULL, 'e' },
		{ "files", required_argument, NULL, 'f' }, { "mask", no_argument, NULL, 'm' },
		{ "clean-env", no_argument, NULL, 'c' }, { "keep", required_argument, NULL, 'k' },
		{ "wait", required_argument, NULL, 'w' }, { "help", no_argument, NULL, 'h' },
		{ "on-change", required_argument, NULL, 'o' },
		{ "grace", required_argument, NULL, 'g' }, { NULL, 0, NULL, 0 } };
	struct source *ns;
	char *end;
	int ch;

	/* "+": stop at PROGRAM, so its own options are left alone. */
	while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			st->opts.socket_path = optarg;
			break;
		case 'a':
			st->agent = optarg;
			break;
		case 'j':
		case 'e':
			if ((ns = realloc(st->sources, (st->nsources + 1) * sizeof(*ns))) == NULL) {
				fprintf(stderr, "pcrun: out of memory\n");
				return EXIT_FAILED;
			}
			st->sources = ns;
			st->sources[st->nsources].json = ch == 'j';
			st->sources[st->nsources++].file = optarg;
			break;
		case 'f':
			st->files_dir = optarg;
			break;
		case 'm':
			st->mask = 1;
			break;
		case 'c':
			st->clean_env = 1;
			break;
		case 'k':
			if (settings_keep(st, optarg) != 0)
				return EXIT_USAGE;
			break;
		case 'w':
			errno = 0;
			st->wait_s = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || st->wait_s < 0 ||
			    st->wait_s > WAIT_MAX_S) {
				fprintf(stderr, "pcrun: --wait: a number of seconds, 0 to %d\n",
				    WAIT_MAX_S);
				return EXIT_USAGE;
			}
			break;
		case 'o':
			if (onchange_parse(optarg, &st->on_change, &st->on_change_sig) != 0) {
				fprintf(stderr,
				    "pcrun: --on-change: restart, exit or signal:NAME (HUP, INT, "
				    "QUIT, TERM, USR1, USR2, ALRM, WINCH, CONT)\n");
				return EXIT_USAGE;
			}
			break;
		case 'g':
			errno = 0;
			st->grace_s = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || st->grace_s < 0 ||
			    st->grace_s > GRACE_MAX_S) {
				fprintf(stderr, "pcrun: --grace: a number of seconds, 0 to %d\n",
				    GRACE_MAX_S);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (st->nkeep > 0 && !st->clean_env) {
		fprintf(stderr, "pcrun: --keep only makes sense with --clean-env\n");
		return EXIT_USAGE;
	}
	if (st->grace_s >= 0 && st->on_change == ONCHANGE_NONE) {
		fprintf(stderr, "pcrun: --grace only makes sense with --on-change\n");
		return EXIT_USAGE;
	}
	if (st->on_change == ONCHANGE_SIGNAL && st->files_dir == NULL) {
		/* A running process's environment cannot change: only files can be replaced. */
		fprintf(stderr,
		    "pcrun: --on-change signal:NAME needs --files DIR: the environment "
		    "of a running program cannot change, its files can\n");
		return EXIT_USAGE;
	}
	if (optind >= argc) {
		fprintf(stderr, "pcrun: no PROGRAM given\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	*prog = optind;
	return 0;
}

/* ---- sources ---- */

static int add_from_file(
    void *ctx, const char *name, const char *ref, const char *value, size_t len, pcs_error *err)
{
	return runenv_add(ctx, name, ref, value, len, err);
}

static int add_sources(struct runenv *re, const struct settings *st, pcs_error *err)
{
	char *text = NULL;
	size_t len = 0, i;
	int r;

	if ((r = runenv_add_environment(re, err)) != 0)
		return r;
	for (i = 0; i < st->nsources; i++) {
		if ((r = envfile_read(st->sources[i].file, &text, &len, err)) != 0)
			return r;
		r = st->sources[i].json ?
		    envfile_parse_json(st->sources[i].file, text, len, add_from_file, re, err) :
		    envfile_parse_dotenv(st->sources[i].file, text, len, add_from_file, re, err);
		sodium_free(text);
		text = NULL;
		if (r != 0)
			return r;
	}
	return 0;
}

/* ---- talking to the daemon, waiting for it with --wait ---- */

struct waiter {
	struct timespec deadline;
	long backoff_ms;
};

static void waiter_start(struct waiter *w, long seconds)
{
	clock_gettime(CLOCK_MONOTONIC, &w->deadline);
	w->deadline.tv_sec += seconds;
	w->backoff_ms = BACKOFF_FIRST_MS;
}

/* Whether to try again; if so, drops the connection and sleeps first. */
static int waiter_again(struct waiter *w, pcs_client **client)
{
	struct timespec now, nap;
	long left_ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left_ms = (w->deadline.tv_sec - now.tv_sec) * 1000 +
	    (w->deadline.tv_nsec - now.tv_nsec) / 1000000;
	if (left_ms <= 0)
		return 0;
	pcs_close(*client);
	*client = NULL;
	if (left_ms > w->backoff_ms)
		left_ms = w->backoff_ms;
	nap.tv_sec = left_ms / 1000;
	nap.tv_nsec = (left_ms % 1000) * 1000000;
	while (nanosleep(&nap, &nap) != 0 && errno == EINTR)
		;
	w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
	return 1;
}

/* The agent's environment, then every reference. Reports its own failures. */
static int fetch(struct runenv *re, const struct settings *st, pcs_client **client)
{
	struct waiter w;
	pcs_error err = { 0 };
	int retry = 0, agent_done = st->agent == NULL, checked = 0;

	waiter_start(&w, st->wait_s);
	for (;;) {
		if (agent_done && !checked) {
			/* After the agent's environment, which may override some. */
			if (runenv_check_refs(re) != 0)
				return -1;
			checked = 1;
		}
		if (agent_done && runenv_pending(re) == 0)
			return 0;
		retry = 0;
		if (*client == NULL && pcs_connect(&st->opts, client, &err) != 0) {
			if (err.code != PCS_UNAVAILABLE)
				goto fail;
			retry = 1;
		} else if (!agent_done) {
			if (runenv_add_agent(re, *client, st->agent, &retry, &err) != 0 && !retry)
				return -1;
			agent_done = !retry;
		} else {
			if (runenv_resolve(re, *client, st->agent, &retry, &err) == 0)
				return 0;
			if (!retry)
				return -1;
		}
		if (retry && waiter_again(&w, client))
			continue;
		if (retry)
			goto fail;
	}
fail:
	runenv_report(retry && st->wait_s > 0 ? "gave up waiting for pcsecretd" : NULL, &err);
	return -1;
}

int main(int argc, char **argv)
{
	struct settings st = { 0 };
	struct tmpfiles files = { "", -1 };
	struct deliver_opts dopts;
	struct child_hooks hooks;
	struct follow follow;
	struct mask_value *mv = NULL;
	struct child_spec spec;
	struct envlist el = { 0 };
	struct runenv re = { 0 };
	pcs_client *client = NULL;
	pcs_error err = { 0 };
	size_t nmv = 0;
	int prog = 0, r, status = EXIT_FAILED, following;

	memset(&follow, 0, sizeof(follow));
	st.grace_s = -1;
	if ((r = parse_options(argc, argv, &st, &prog)) != 0) {
		status = r < 0 ? 0 : r;
		goto out;
	}
	following = st.on_change != ONCHANGE_NONE;
	if (sodium_init() < 0) {
		fprintf(stderr, "pcrun: libsodium failed to initialise\n");
		goto out;
	}
	envfile_init();
	if (add_sources(&re, &st, &err) != 0 ||
	    (following && runenv_clone(&re, &follow.tmpl, &err) != 0)) {
		runenv_report(NULL, &err);
		goto out;
	}
	if (fetch(&re, &st, &client) != 0)
		goto out;
	if (!following) {
		/* Everything is resolved: the child inherits no connection (close-on-exec too). */
		pcs_close(client);
		client = NULL;
	}
	if (st.files_dir != NULL && tmpfiles_open(&files, st.files_dir, &err) != 0) {
		runenv_report(NULL, &err);
		goto out;
	}
	dopts.clean_env = st.clean_env;
	dopts.keep = st.keep;
	dopts.nkeep = st.nkeep;
	if (deliver_env(&re, &dopts, st.files_dir != NULL ? &files : NULL, &el) != 0)
		goto out;
	if (st.files_dir == NULL && !st.mask && !following) {
		/* Nothing to do after PROGRAM: become it. */
		runenv_free(&re);
		execvpe(argv[prog], argv + prog, el.s != NULL ? el.s : (char *[]){ NULL });
		fprintf(stderr, "pcrun: cannot execute %s: %s\n", argv[prog], strerror(errno));
		status = EXIT_NOEXEC;
		goto out;
	}
	if (st.mask && deliver_mask_values(&re, NULL, &mv, &nmv) != 0) {
		fprintf(stderr, "pcrun: out of memory\n");
		goto out;
	}
	if (!st.mask && !following) {
		/* The values are in the files: nothing of them needs to stay in this process. */
		runenv_free(&re);
	}
	memset(&spec, 0, sizeof(spec));
	spec.argv = argv + prog;
	spec.envp = el.s != NULL ? el.s : (char *[]){ NULL };
	spec.mask = st.mask;
	spec.values = mv;
	spec.nvalues = nmv;
	if (following) {
		/* The follower owns what the child was given from here on (follow_free). */
		follow.mode = st.on_change;
		follow.sig = st.on_change_sig;
		follow.grace_ms = (int)(st.grace_s >= 0 ? st.grace_s : GRACE_DEFAULT_S) * 1000;
		follow.agent = st.agent;
		follow.opts = &st.opts;
		follow.dopts = &dopts;
		follow.files = st.files_dir != NULL ? &files : NULL;
		follow.mask = st.mask;
		follow.cur = re;
		follow.el = el;
		follow.mv = mv;
		follow.nmv = nmv;
		follow.client = client;
		memset(&re, 0, sizeof(re));
		memset(&el, 0, sizeof(el));
		mv = NULL;
		client = NULL;
		if (follow_start(&follow) != 0)
			goto out;
		follow_hooks(&follow, &hooks);
		spec.hooks = &hooks;
	}
	if (child_run(&spec, &status, &err) != 0) {
		runenv_report(NULL, &err);
		status = EXIT_FAILED;
	}
out:
	follow_free(&follow);
	if (tmpfiles_remove(&files, &err) != 0) {
		runenv_report(NULL, &err);
		if (status == 0)
			status = EXIT_FAILED;
	}
	free(mv);
	envlist_free(&el);
	runenv_free(&re);
	pcs_close(client);
	settings_free(&st);
	return status;
}
