/*
 * pcrun: resolve secret references, then run the agent with them (docs/cli.md, "pcrun").
 *
 * Sources, later ones overriding earlier ones for the same variable: the inherited
 * environment's "pcs:" references; --env-file and --env-json files in the order given; the
 * configured environment of --agent (GetAgentEnv). Everything is resolved before PROGRAM
 * starts, or PROGRAM does not start. By default pcrun then execs PROGRAM with the values in
 * its environment; with --files or --mask it stays PROGRAM's parent (child.c) to clean up
 * the value files or to mask the output. The modules: runenv.c (variables and resolving),
 * envfile.c (the files), tmpfiles.c (--files), mask.c and child.c (--mask, supervision).
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
#include "envname.h"
#include "mask.h"
#include "ref.h"
#include "rpc.h"
#include "runenv.h"
#include "status.h"
#include "tmpfiles.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_NOEXEC 127
#define WAIT_MAX_S 86400
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
};

/* The child's environment: "NAME=value" strings in locked memory, wiped when freed. */
struct envlist {
	char **s;
	size_t n;
	size_t cap;
};

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: pcrun [--socket PATH] [--agent COMPANY/AGENT] [--env-file FILE]\n"
	    "             [--env-json FILE] [--files DIR] [--mask] [--clean-env [--keep NAME]...]\n"
	    "             [--wait SECONDS] -- PROGRAM [ARGS...]\n\n"
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
		{ NULL, 0, NULL, 0 } };
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

/* ---- the child's environment ---- */

static void envlist_free(struct envlist *el)
{
	size_t i;

	for (i = 0; i < el->n; i++)
		pcs_value_buf_free((unsigned char *)el->s[i]);
	free(el->s);
	memset(el, 0, sizeof(*el));
}

/* Adds "name=value" (value len bytes, no NUL byte in it). */
static int envlist_add(struct envlist *el, const char *name, size_t nlen, const char *value,
    size_t len, pcs_error *err)
{
	unsigned char *s;
	char **ns;
	size_t ncap;
	int r;

	if (el->n + 2 > el->cap) {
		ncap = el->cap == 0 ? 32 : el->cap * 2;
		if ((ns = realloc(el->s, ncap * sizeof(*ns))) == NULL)
			return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		el->s = ns;
		el->cap = ncap;
	}
	if ((r = pcs_value_buf_alloc(nlen + 1 + len, &s, err)) != 0)
		return r;
	memcpy(s, name, nlen);
	s[nlen] = '=';
	if (len > 0)
		memcpy(s + nlen + 1, value, len);
	s[nlen + 1 + len] = '\0';
	el->s[el->n++] = (char *)s;
	el->s[el->n] = NULL;
	return 0;
}

static int envlist_has(const struct envlist *el, const char *name, size_t nlen)
{
	size_t i;

	for (i = 0; i < el->n; i++)
		if (strncmp(el->s[i], name, nlen) == 0 && el->s[i][nlen] == '=')
			return 1;
	return 0;
}

static int runenv_has(const struct runenv *re, const char *name, size_t nlen)
{
	size_t i;

	for (i = 0; i < re->n; i++)
		if (strlen(re->v[i].name) == nlen && strncmp(re->v[i].name, name, nlen) == 0)
			return 1;
	return 0;
}

static int kept(const struct settings *st, const char *name, size_t nlen)
{
	size_t i;

	for (i = 0; i < st->nkeep; i++)
		if (strlen(st->keep[i]) == nlen && strncmp(st->keep[i], name, nlen) == 0)
			return 1;
	return 0;
}

#define VERSIONS_VAR "PCSECRET_VERSIONS"

/* NAME=value, or NAME_FILE=path with --files. Reports its own failures. */
static int deliver(struct envlist *el, const struct runenv_var *v, struct tmpfiles *files)
{
	char path[PATH_MAX], fname[PCS_ENV_NAME_MAX + 8];
	pcs_error err = { 0 };
	int r;

	if (files != NULL && v->secret) {
		(void)snprintf(fname, sizeof(fname), "%s_FILE", v->name);
		/* SSL_CERT + _FILE is a name no binding may set: check what is set. */
		if ((r = envname_check(fname, &err)) != 0 ||
		    (r = tmpfiles_write(
		         files, v->name, v->value, v->len, path, sizeof(path), &err)) != 0 ||
		    (r = envlist_add(el, fname, strlen(fname), path, strlen(path), &err)) != 0) {
			fprintf(stderr, "pcrun: cannot deliver %s as a file: ", v->name);
			runenv_report(NULL, &err);
		}
		return r;
	}
	if ((r = envlist_add(el, v->name, strlen(v->name), (const char *)v->value, v->len, &err)) !=
	    0)
		runenv_report(NULL, &err);
	return r;
}

/*
 * The child's environment: the variables, PCSECRET_VERSIONS, then what is inherited (all of
 * it, or with --clean-env only --keep's names) and not set here. Reports its own failures.
 */
static int build_env(
    const struct runenv *re, const struct settings *st, struct tmpfiles *files, struct envlist *el)
{
	char *versions = NULL, *nv, item[PCS_ENV_NAME_MAX + 16];
	size_t i, vlen = 0, ilen;
	pcs_error err = { 0 };
	const char *eq;
	char **e;
	int r = -1, nul = 0;

	/* A value with a NUL byte cannot be an environment variable: name every one. */
	for (i = 0; i < re->n; i++)
		if (runenv_delivered(&re->v[i]) && !(files != NULL && re->v[i].secret) &&
		    memchr(re->v[i].value, '\0', re->v[i].len) != NULL) {
			fprintf(stderr,
			    "pcrun: cannot set %s: its value contains a NUL byte (--files delivers "
			    "such values)\n",
			    re->v[i].name);
			nul = 1;
		}
	if (nul)
		goto out;
	for (i = 0; i < re->n; i++) {
		if (!runenv_delivered(&re->v[i]))
			continue;
		if (deliver(el, &re->v[i], files) != 0)
			goto out;
		if (!re->v[i].secret || re->v[i].version == 0)
			continue;
		ilen = (size_t)snprintf(item, sizeof(item), "%s%s=%u", vlen > 0 ? "," : "",
		    re->v[i].name, re->v[i].version);
		if ((nv = realloc(versions, vlen + ilen + 1)) == NULL)
			goto oom;
		versions = nv;
		memcpy(versions + vlen, item, ilen + 1);
		vlen += ilen;
	}
	if (versions != NULL &&
	    envlist_add(el, VERSIONS_VAR, strlen(VERSIONS_VAR), versions, vlen, &err) != 0)
		goto oom;
	for (e = environ; *e != NULL; e++) {
		if ((eq = strchr(*e, '=')) == NULL)
			continue;
		if (runenv_has(re, *e, (size_t)(eq - *e)) ||
		    envlist_has(el, *e, (size_t)(eq - *e)) ||
		    ((size_t)(eq - *e) == strlen(VERSIONS_VAR) &&
		        strncmp(*e, VERSIONS_VAR, strlen(VERSIONS_VAR)) == 0))
			continue;
		if (st->clean_env && !kept(st, *e, (size_t)(eq - *e)))
			continue;
		if (envlist_add(el, *e, (size_t)(eq - *e), eq + 1, strlen(eq + 1), &err) != 0)
			goto oom;
	}
	r = 0;
	goto out;
oom:
	runenv_report(NULL, &err);
out:
	free(versions);
	return r;
}

/* The values to mask in the output: every secret one long enough; a warning for the others. */
static int mask_values(const struct runenv *re, struct mask_value **out, size_t *n)
{
	struct mask_value *mv;
	size_t i;

	*n = 0;
	if ((mv = calloc(re->n + 1, sizeof(*mv))) == NULL)
		return -1;
	for (i = 0; i < re->n; i++) {
		if (!runenv_delivered(&re->v[i]) || !re->v[i].secret || re->v[i].len == 0)
			continue;
		if (re->v[i].len < MASK_MIN_LEN) {
			fprintf(stderr,
			    "pcrun: warning: the value of %s is shorter than %d bytes: not masked\n",
			    re->v[i].name, MASK_MIN_LEN);
			continue;
		}
		mv[*n].data = re->v[i].value;
		mv[(*n)++].len = re->v[i].len;
	}
	mask_values_sort(mv, *n);
	*out = mv;
	return 0;
}

int main(int argc, char **argv)
{
	struct settings st = { 0 };
	struct tmpfiles files = { "", -1 };
	struct mask_value *mv = NULL;
	struct child_spec spec;
	struct envlist el = { 0 };
	struct runenv re = { 0 };
	pcs_client *client = NULL;
	pcs_error err = { 0 };
	size_t nmv = 0;
	int prog = 0, r, status = EXIT_FAILED;

	if ((r = parse_options(argc, argv, &st, &prog)) != 0) {
		status = r < 0 ? 0 : r;
		goto out;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "pcrun: libsodium failed to initialise\n");
		goto out;
	}
	envfile_init();
	if (add_sources(&re, &st, &err) != 0) {
		runenv_report(NULL, &err);
		goto out;
	}
	if (fetch(&re, &st, &client) != 0)
		goto out;
	/* Everything is resolved: the child inherits no connection (it is close-on-exec too). */
	pcs_close(client);
	client = NULL;
	if (st.files_dir != NULL && tmpfiles_open(&files, st.files_dir, &err) != 0) {
		runenv_report(NULL, &err);
		goto out;
	}
	if (build_env(&re, &st, st.files_dir != NULL ? &files : NULL, &el) != 0)
		goto out;
	if (st.files_dir == NULL && !st.mask) {
		/* Nothing to do after PROGRAM: become it. */
		runenv_free(&re);
		execvpe(argv[prog], argv + prog, el.s != NULL ? el.s : (char *[]){ NULL });
		fprintf(stderr, "pcrun: cannot execute %s: %s\n", argv[prog], strerror(errno));
		status = EXIT_NOEXEC;
		goto out;
	}
	if (st.mask && mask_values(&re, &mv, &nmv) != 0) {
		fprintf(stderr, "pcrun: out of memory\n");
		goto out;
	}
	if (!st.mask) {
		/* The values are in the files: nothing of them needs to stay in this process. */
		runenv_free(&re);
	}
	memset(&spec, 0, sizeof(spec));
	spec.argv = argv + prog;
	spec.envp = el.s != NULL ? el.s : (char *[]){ NULL };
	spec.mask = st.mask;
	spec.values = mv;
	spec.nvalues = nmv;
	if (child_run(&spec, &status, &err) != 0) {
		runenv_report(NULL, &err);
		status = EXIT_FAILED;
	}
out:
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
