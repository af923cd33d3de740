/*
 * pcrun: resolve secret references into the environment, then exec the agent.
 *
 * Sources, later ones overriding earlier ones for the same variable:
 *   1. the inherited environment: every variable whose value starts with "pcs:";
 *   2. --env-json FILE: {"NAME": "literal or pcs:ref",
 *                        "NAME": {"type": "secret_ref", "secretId": "<uuid>", "version": "latest"}};
 *   3. --agent COMPANY/AGENT: that agent's configured environment (GetAgentEnv).
 * All references are resolved in one Resolve call (on behalf of --agent when given). Nothing
 * is exec'd unless every one resolved; errors name the variable and reference, never a value.
 * Names that decide what the program loads or runs (LD_PRELOAD, PATH, ...: common/envname.c)
 * are refused from every source, even when the daemon sends them.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "envname.h"
#include "ref.h"
#include "rpc.h"
#include "status.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_NOEXEC 127
/* An --env-json file is a handful of variables; anything this big is a mistake. */
#define ENV_JSON_MAX (1024 * 1024)

extern char **environ;

struct var {
	char *name;
	char *ref;            /* to resolve; NULL when value is already known */
	unsigned char *value; /* pcs_value_buf_alloc'd, or taken from a pcs_value / pcs_env_entry */
	size_t len;
	int overridden; /* a later source set the same name */
};

struct vars {
	struct var *v;
	size_t n;
	size_t cap;
};

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: pcrun [--socket PATH] [--agent COMPANY/AGENT] [--env-json FILE] "
	    "-- PROGRAM [ARGS...]\n\n"
	    "Replaces every environment variable whose value is a reference (pcs:COMPANY/NAME[@N]\n"
	    "or pcs:SECRET-ID[@N]) with the secret's value, then runs PROGRAM. With --agent, the\n"
	    "agent's configured environment is added first and references are resolved on its\n"
	    "behalf. --env-json adds variables from a JSON object whose values are strings or\n"
	    "{\"type\":\"secret_ref\",\"secretId\":\"...\",\"version\":\"latest\"}.\n");
}

/*
 * jansson's allocator: its lexer and its strings hold the --env-json file's literal values, and
 * its free gets no size, so each block keeps its size in front of it and is wiped when freed.
 */
static void *wipe_malloc(size_t size)
{
	unsigned char *p;

	if (size > SIZE_MAX - sizeof(max_align_t) ||
	    (p = malloc(sizeof(max_align_t) + size)) == NULL)
		return NULL;
	memcpy(p, &size, sizeof(size));
	return p + sizeof(max_align_t);
}

static void wipe_free(void *block)
{
	unsigned char *p;
	size_t size;

	if (block == NULL)
		return;
	p = (unsigned char *)block - sizeof(max_align_t);
	memcpy(&size, p, sizeof(size));
	sodium_memzero(p, sizeof(max_align_t) + size);
	free(p);
}

/* Quoting for messages: a reference came from the environment and may hold anything. */
static void put_safe(FILE *f, const char *s)
{
	for (; *s != '\0'; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

static void report(const char *name, const char *ref, const pcs_error *err)
{
	fprintf(stderr, "pcrun: ");
	if (name != NULL) {
		fprintf(stderr, "cannot resolve %s=", name);
		put_safe(stderr, ref);
		fprintf(stderr, ": ");
	}
	fprintf(stderr, "%s: ", pcs_status_name(err->code));
	put_safe(stderr, err->message);
	fputc('\n', stderr);
}

static void vars_free(struct vars *vs)
{
	size_t i;

	for (i = 0; i < vs->n; i++) {
		free(vs->v[i].name);
		free(vs->v[i].ref);
		pcs_value_buf_free(vs->v[i].value);
	}
	free(vs->v);
	memset(vs, 0, sizeof(*vs));
}

/* Adds NAME; an earlier entry with the same name is marked overridden. Takes ref. */
static int vars_add(struct vars *vs, const char *name, size_t name_len, char *ref,
    struct var **added, pcs_error *err)
{
	struct var *nv;
	size_t i, ncap;

	for (i = 0; i < vs->n; i++)
		if (strlen(vs->v[i].name) == name_len &&
		    strncmp(vs->v[i].name, name, name_len) == 0)
			vs->v[i].overridden = 1;
	if (vs->n == vs->cap) {
		ncap = vs->cap == 0 ? 16 : vs->cap * 2;
		if ((nv = realloc(vs->v, ncap * sizeof(*nv))) == NULL)
			goto oom;
		vs->v = nv;
		vs->cap = ncap;
	}
	memset(&vs->v[vs->n], 0, sizeof(vs->v[vs->n]));
	if ((vs->v[vs->n].name = strndup(name, name_len)) == NULL)
		goto oom;
	vs->v[vs->n].ref = ref;
	if (added != NULL)
		*added = &vs->v[vs->n];
	vs->n++;
	return 0;
oom:
	free(ref);
	(void)pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	return -PCS_RESOURCE_EXHAUSTED;
}

static int add_environment(struct vars *vs, pcs_error *err)
{
	const char *eq;
	char *ref, *name;
	char **e;
	int r;

	for (e = environ; *e != NULL; e++) {
		if ((eq = strchr(*e, '=')) == NULL ||
		    strncmp(eq + 1, PCS_REF_PREFIX, sizeof(PCS_REF_PREFIX) - 1) != 0)
			continue;
		if ((name = strndup(*e, (size_t)(eq - *e))) == NULL)
			return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		r = envname_check(name, err);
		free(name);
		if (r != 0)
			return r;
		if ((ref = strdup(eq + 1)) == NULL)
			return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		if ((r = vars_add(vs, *e, (size_t)(eq - *e), ref, NULL, err)) != 0)
			return r;
	}
	return 0;
}

static int literal_value(struct var *v, const char *s, size_t len, pcs_error *err)
{
	int r;

	/* The SDK's kind of buffer, so that vars_free frees every value alike. */
	if ((r = pcs_value_buf_alloc(len, &v->value, err)) != 0)
		return r;
	memcpy(v->value, s, len);
	v->value[len] = '\0';
	v->len = len;
	return 0;
}

/* {"type":"secret_ref","secretId":"...","version":"latest"|N|"N"} as a pcs: reference. */
static int json_ref(const char *file, const char *name, json_t *o, char **out, pcs_error *err)
{
	json_t *type = json_object_get(o, "type"), *id = json_object_get(o, "secretId");
	json_t *ver = json_object_get(o, "version");
	char vbuf[24] = "";

	if (!json_is_string(type) || strcmp(json_string_value(type), "secret_ref") != 0 ||
	    !json_is_string(id))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "%s: %s is not a string or a "
		    "{\"type\":\"secret_ref\",\"secretId\":...} object",
		    file, name);
	if (json_is_integer(ver))
		(void)snprintf(vbuf, sizeof(vbuf), "@%lld", (long long)json_integer_value(ver));
	else if (json_is_string(ver))
		(void)snprintf(vbuf, sizeof(vbuf), "@%.20s", json_string_value(ver));
	else if (ver != NULL && !json_is_null(ver))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "%s: the version of %s is not "
		    "\"latest\" or a number",
		    file, name);
	if (asprintf(out, PCS_REF_PREFIX "%s%s", json_string_value(id), vbuf) < 0) {
		*out = NULL;
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	}
	return 0;
}

/*
 * The whole file (a pipe too: --env-json <(...)) into secure memory, wiped by sodium_free,
 * read through a close-on-exec descriptor: json_load_file's stdio buffer would be freed with
 * the file's literal values still in it.
 */
static int read_env_json(const char *file, char **out, size_t *len, pcs_error *err)
{
	char *buf = NULL, *nb;
	size_t got = 0, cap = 0, ncap;
	ssize_t n;
	int fd, r;

	*out = NULL;
	*len = 0;
	if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: %s", file, strerror(errno));
		goto out;
	}
	for (;;) {
		if (got == cap) {
			if (cap >= ENV_JSON_MAX) {
				r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: longer than %d bytes",
				    file, ENV_JSON_MAX);
				goto out;
			}
			ncap = cap == 0 ? 4096 : cap * 2;
			/* Not realloc: the old block holds values and is wiped by sodium_free. */
			if ((nb = sodium_malloc(ncap)) == NULL) {
				r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of secure memory");
				goto out;
			}
			if (got > 0)
				memcpy(nb, buf, got);
			sodium_free(buf);
			buf = nb;
			cap = ncap;
		}
		n = read(fd, buf + got, cap - got);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: %s", file, strerror(errno));
			goto out;
		}
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	buf = NULL;
	r = 0;
out:
	sodium_free(buf);
	if (fd != -1)
		(void)close(fd);
	return r;
}

static int add_env_json(struct vars *vs, const char *file, pcs_error *err)
{
	json_error_t jerr;
	json_t *doc = NULL, *val;
	const char *name, *s;
	struct var *added;
	pcs_error nerr;
	char *ref = NULL, *text = NULL;
	size_t text_len = 0;
	int r;

	if ((r = read_env_json(file, &text, &text_len, err)) != 0)
		goto out;
	/* The file may hold literal values: never quote its text back in an error. */
	if ((doc = json_loadb(text, text_len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: not a JSON document (line %d)", file,
		    jerr.line);
		goto out;
	}
	if (!json_is_object(doc)) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s: not a JSON object", file);
		goto out;
	}
	json_object_foreach(doc, name, val)
	{
		/* Literal values too: the file may be written by someone other than its user. */
		if ((r = envname_check(name, &nerr)) != 0) {
			(void)pcs_fail(err, nerr.code, "%s: %s", file, nerr.message);
			goto out;
		}
		if (json_is_string(val)) {
			if ((s = json_string_value(val)) == NULL)
				s = "";
			if (strncmp(s, PCS_REF_PREFIX, sizeof(PCS_REF_PREFIX) - 1) == 0 &&
			    (ref = strdup(s)) == NULL) {
				r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
				goto out;
			}
			r = vars_add(vs, name, strlen(name), ref, &added, err);
			ref = NULL; /* vars_add owns it now, and frees it when it fails */
			if (r != 0)
				goto out;
			if (added->ref == NULL &&
			    (r = literal_value(added, s, json_string_length(val), err)) != 0)
				goto out;
			continue;
		}
		if (!json_is_object(val)) {
			r = pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "%s: %s is not a string or a "
			    "{\"type\":\"secret_ref\",\"secretId\":...} object",
			    file, name);
			goto out;
		}
		if ((r = json_ref(file, name, val, &ref, err)) != 0)
			goto out;
		r = vars_add(vs, name, strlen(name), ref, NULL, err);
		ref = NULL;
		if (r != 0)
			goto out;
	}
	r = 0;
out:
	free(ref);
	if (doc != NULL) {
		/* Literal values were in the document; jansson frees without wiping. */
		json_object_foreach(doc, name, val) if (json_is_string(val))
		    sodium_memzero((void *)json_string_value(val), json_string_length(val));
		json_decref(doc);
	}
	sodium_free(text);
	return r;
}

/* Reports its own failures. */
static int add_agent_env(struct vars *vs, pcs_client *client, const char *agent, pcs_error *err)
{
	pcs_env_entry *env = NULL;
	struct var *added;
	size_t n = 0, i;
	int r;

	if ((r = pcs_get_env(client, agent, &env, &n, err)) != 0) {
		fprintf(stderr, "pcrun: cannot fetch the environment of agent ");
		put_safe(stderr, agent);
		fprintf(stderr, ": %s: ", pcs_status_name(err->code));
		put_safe(stderr, err->message);
		fputc('\n', stderr);
		goto out;
	}
	/* All checked before any is used: a binding made before the daemon refused such names. */
	for (i = 0; env != NULL && i < n; i++) {
		if ((r = envname_check(env[i].name, err)) != 0) {
			fprintf(stderr, "pcrun: refusing the environment of agent ");
			put_safe(stderr, agent);
			fprintf(stderr, ": %s: ", pcs_status_name(err->code));
			put_safe(stderr, err->message);
			/* The SDK refuses invalid names, so this one is safe to print. */
			if (env_name_valid(env[i].name)) {
				fprintf(stderr, " (remove the binding: pcctl agent unset-env ");
				put_safe(stderr, agent);
				fprintf(stderr, " %s)", env[i].name);
			}
			fputc('\n', stderr);
			goto out;
		}
	}
	for (i = 0; env != NULL && i < n; i++) {
		if ((r = vars_add(vs, env[i].name, strlen(env[i].name), NULL, &added, err)) != 0) {
			report(NULL, NULL, err);
			goto out;
		}
		/* Hand the value over instead of copying it. */
		added->value = env[i].value;
		added->len = env[i].len;
		env[i].value = NULL;
	}
	r = 0;
out:
	pcs_env_free(env, n);
	return r;
}

/* Whether message mentions ref as a whole reference, not as the start of a longer one. */
static int mentions(const char *message, const char *ref)
{
	const char *p = message, *end;
	size_t len = strlen(ref);

	while ((p = strstr(p, ref)) != NULL) {
		end = p + len;
		if (!((*end >= 'a' && *end <= 'z') || (*end >= '0' && *end <= '9') || *end == '-' ||
		        *end == '_' || *end == '.' || *end == '@' || *end == '/'))
			return 1;
		p++;
	}
	return 0;
}

/*
 * The server names the failing reference in its message; find whose it was so the error can
 * say which variable. Returns the index or -1.
 */
static long find_failed(const struct vars *vs, const size_t *idx, size_t nrefs, const char *message)
{
	struct pcs_ref ref;
	char canon[sizeof(PCS_REF_PREFIX) + 2 * PCS_NAME_MAX + 16];
	size_t i;

	if (nrefs == 1)
		return (long)idx[0];
	for (i = 0; i < nrefs; i++)
		if (mentions(message, vs->v[idx[i]].ref))
			return (long)idx[i];
	for (i = 0; i < nrefs; i++)
		if (ref_parse(vs->v[idx[i]].ref, &ref, NULL) == 0 &&
		    ref_format(&ref, canon, sizeof(canon)) == 0 && mentions(message, canon))
			return (long)idx[i];
	return -1;
}

/* Reports its own failures, naming the variable when it can. */
static int resolve_all(struct vars *vs, pcs_client **client, const pcs_options *opts,
    const char *agent, pcs_error *err)
{
	struct pcs_ref parsed;
	const char **refs = NULL;
	pcs_value *values = NULL;
	size_t *idx = NULL, nrefs = 0, i;
	long failed;
	int r;

	if ((refs = calloc(vs->n + 1, sizeof(*refs))) == NULL ||
	    (idx = calloc(vs->n + 1, sizeof(*idx))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		report(NULL, NULL, err);
		goto out;
	}
	for (i = 0; i < vs->n; i++) {
		if (vs->v[i].overridden || vs->v[i].ref == NULL)
			continue;
		/* Checked here too, so the message can name the variable. */
		if ((r = ref_parse(vs->v[i].ref, &parsed, err)) != 0) {
			report(vs->v[i].name, vs->v[i].ref, err);
			goto out;
		}
		refs[nrefs] = vs->v[i].ref;
		idx[nrefs++] = i;
	}
	if (nrefs == 0) {
		r = 0;
		goto out;
	}
	if ((*client == NULL && (r = pcs_connect(opts, client, err)) != 0) ||
	    (r = pcs_resolve(*client, agent, refs, nrefs, &values, err)) != 0) {
		if ((failed = find_failed(vs, idx, nrefs, err->message)) >= 0) {
			report(vs->v[failed].name, vs->v[failed].ref, err);
		} else {
			fprintf(stderr, "pcrun: cannot resolve");
			for (i = 0; i < nrefs; i++) {
				fprintf(stderr, "%s %s=", i > 0 ? "," : "", vs->v[idx[i]].name);
				put_safe(stderr, vs->v[idx[i]].ref);
			}
			fprintf(stderr, ": %s: ", pcs_status_name(err->code));
			put_safe(stderr, err->message);
			fputc('\n', stderr);
		}
		goto out;
	}
	for (i = 0; i < nrefs; i++) {
		vs->v[idx[i]].value = values[i].data;
		vs->v[idx[i]].len = values[i].len;
		values[i].data = NULL;
	}
	r = 0;
out:
	pcs_values_free(values, nrefs);
	free(idx);
	free(refs);
	return r;
}

static int apply(const struct vars *vs)
{
	size_t i;

	for (i = 0; i < vs->n; i++) {
		if (vs->v[i].overridden || vs->v[i].value == NULL)
			continue;
		/* The environment is C strings: a value with a NUL byte would arrive cut short. */
		if (memchr(vs->v[i].value, '\0', vs->v[i].len) != NULL) {
			fprintf(stderr, "pcrun: cannot set %s: its value contains a NUL byte\n",
			    vs->v[i].name);
			return -PCS_INVALID_ARGUMENT;
		}
		if (setenv(vs->v[i].name, (const char *)vs->v[i].value, 1) != 0) {
			fprintf(
			    stderr, "pcrun: cannot set %s: %s\n", vs->v[i].name, strerror(errno));
			return -PCS_RESOURCE_EXHAUSTED;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = { { "socket", required_argument, NULL, 's' },
		{ "agent", required_argument, NULL, 'a' },
		{ "env-json", required_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	pcs_options opts = { 0 };
	pcs_client *client = NULL;
	pcs_error err = { 0 };
	struct vars vs = { 0 };
	const char *agent = NULL, *env_json = NULL;
	int ch, r = EXIT_FAILED;

	/* "+": stop at PROGRAM, so its own options are left alone. */
	while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			opts.socket_path = optarg;
			break;
		case 'a':
			agent = optarg;
			break;
		case 'j':
			env_json = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "pcrun: no PROGRAM given\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "pcrun: libsodium failed to initialise\n");
		return EXIT_FAILED;
	}
	json_set_alloc_funcs(wipe_malloc, wipe_free);
	if (add_environment(&vs, &err) != 0) {
		report(NULL, NULL, &err);
		goto out;
	}
	if (env_json != NULL && add_env_json(&vs, env_json, &err) != 0) {
		report(NULL, NULL, &err);
		goto out;
	}
	if (agent != NULL) {
		if (pcs_connect(&opts, &client, &err) != 0) {
			report(NULL, NULL, &err);
			goto out;
		}
		if (add_agent_env(&vs, client, agent, &err) != 0)
			goto out;
	}
	if (resolve_all(&vs, &client, &opts, agent, &err) != 0 || apply(&vs) != 0)
		goto out;
	/* The socket is close-on-exec as well; closing says goodbye to the daemon properly. */
	pcs_close(client);
	client = NULL;
	vars_free(&vs);
	execvp(argv[optind], argv + optind);
	fprintf(stderr, "pcrun: cannot execute %s: %s\n", argv[optind], strerror(errno));
	r = EXIT_NOEXEC;
out:
	pcs_close(client);
	vars_free(&vs);
	return r;
}
