#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { OPT_STR, OPT_INT };

struct opt {
	const char *key;
	enum opt_type type;
	size_t offset;
	const char *def;
	int64_t min, max;
	const char *help;
};

#define S(k, d, h) \
	{ \
#k, OPT_STR, offsetof(struct config, k), d, 0, 0, h \
	}
#define I(k, d, lo, hi, h) \
	{ \
#k, OPT_INT, offsetof(struct config, k), d, lo, hi, h \
	}

static const struct opt opts[] = {
	S(socket, "/run/pcsecret/pcsecretd.sock", "Unix socket path"),
	S(socket_group, "", "group owning the socket (name or gid)"),
	S(socket_mode, "0660", "socket file mode (octal)"),
	S(database_url, "", "PostgreSQL connection string or URI"),
	S(migrate_database_url, "",
	    "connection string of the role that applies migrations (default: database_url)"),
	S(master_key_file, "", "master key file (64 hex characters, mode 0600)"),
	S(log_file, "", "log file (default stderr); reopened on SIGHUP"),
	S(log_level, "info", "debug, info, warn or error"),
	I(pool_size, "4", 1, 64, "PostgreSQL connections"),
	I(max_frame, "1048576", 1024, 64 * 1024 * 1024, "maximum frame size in bytes"),
	I(max_connections, "1024", 1, 1000000, "maximum client connections"),
	I(max_inflight, "64", 1, 100000, "maximum calls in flight per connection"),
	I(max_calls, "4096", 16, 1000000,
	    "maximum calls in flight in the whole daemon; past it connections wait their turn"),
	I(max_refs, "256", 1, 100000, "maximum references per Resolve"),
	I(max_value, "65536", 1, 65536, "maximum bytes of a secret value"),
	I(max_output, "4194304", 65536, 1024 * 1024 * 1024,
	    "bytes queued to a slow reader before it is cut off"),
	I(idle_timeout_ms, "300000", 100, 86400000, "close connections idle this long"),
	I(read_timeout_ms, "10000", 100, 3600000, "a started frame must complete within this"),
	I(call_timeout_ms, "10000", 10, 3600000, "deadline of calls that set none"),
	I(drain_timeout_ms, "10000", 0, 3600000, "SIGTERM waits this long for calls in flight"),
	I(handshake_timeout_ms, "5000", 100, 600000,
	    "close a connection that has not completed Hello within this"),
	I(max_conns_per_uid, "128", 1, 1000000, "maximum connections of one uid"),
	I(max_conns_unknown_per_uid, "8", 1, 1000000,
	    "maximum connections of one uid without a principal"),
	I(max_frame_before_hello, "4096", 256, 1048576,
	    "largest frame accepted before Hello succeeded"),
	I(max_buffered_per_uid, "16777216", 65536, 1024LL * 1024 * 1024,
	    "bytes of unfinished input held for one uid"),
	I(max_calls_per_uid, "256", 1, 1000000,
	    "calls in flight for one uid over all its connections"),
	I(db_wait_ms, "1000", 10, 3600000,
	    "a call fails UNAVAILABLE after this long when no database connection is up"),
	I(cache_max_bytes, "67108864", 0, 64LL * 1024 * 1024 * 1024,
	    "bytes of sealed values, bindings and rules remembered between calls (0: none)"),
	I(purge_interval_ms, "60000", 100, 86400000,
	    "how often deleted secrets whose recovery window ended are purged"),
	/* ---- Watch ---- */
	I(max_watches_per_conn, "16", 1, 100000, "open Watch streams per connection"),
	I(max_watches_per_uid, "64", 1, 1000000, "open Watch streams of one uid"),
	I(heartbeat_interval_ms, "30000", 100, 86400000,
	    "how often the instance records last_seen and its audit chains' heads"),
};

static char **str_slot(struct config *cfg, const struct opt *o)
{
	return (char **)(void *)((char *)cfg + o->offset);
}

static int64_t *int_slot(struct config *cfg, const struct opt *o)
{
	return (int64_t *)(void *)((char *)cfg + o->offset);
}

static const struct opt *find_opt(const char *key)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

int config_set(struct config *cfg, const char *key, const char *value, pcs_error *err)
{
	const struct opt *o = find_opt(key);
	char *end, *copy;
	long long v;

	if (o == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "unknown setting %s", key);
	if (o->type == OPT_INT) {
		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' || v < o->min || v > o->max)
			return pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "setting %s must be a whole number from %lld to %lld", key,
			    (long long)o->min, (long long)o->max);
		*int_slot(cfg, o) = v;
		return 0;
	}
	if ((copy = strdup(value)) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	free(*str_slot(cfg, o));
	*str_slot(cfg, o) = copy;
	return 0;
}

/* Reads a whole small file (a *_FILE secret), dropping one trailing newline. */
static int read_value_file(const char *path, char **out, pcs_error *err)
{
	FILE *fp = NULL;
	char *buf = NULL;
	size_t n;
	int r;

	if ((fp = fopen(path, "re")) == NULL) {
		r = pcs_fail(
		    err, PCS_FAILED_PRECONDITION, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if ((buf = calloc(1, 65537)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	n = fread(buf, 1, 65536, fp);
	if (!feof(fp)) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s is larger than 64 KiB", path);
		goto out;
	}
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	*out = buf;
	buf = NULL;
	r = 0;
out:
	if (buf != NULL) {
		explicit_bzero(buf, 65537);
		free(buf);
	}
	if (fp != NULL)
		fclose(fp);
	return r;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Longest line of a config file, newline excluded. */
#define CONFIG_LINE_MAX 4095
/* Largest config file read (settings are short lines; this is far more than any needs). */
#define CONFIG_FILE_MAX (1024 * 1024)

/*
 * Parses config-file text ("key = value" lines, '#' comments, values optionally in double
 * quotes) into cfg. name prefixes error messages ("name:line: ..."). A NUL byte ends its line's
 * content, as it always did for files read with fgets. The line buffer is wiped: a value (the
 * database URL) may hold a password.
 */
static int parse_text(
    struct config *cfg, const char *name, const char *text, size_t len, pcs_error *err)
{
	char line[CONFIG_LINE_MAX + 1];
	size_t off = 0;
	int lineno = 0, r = 0;

	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = (nl != NULL ? (size_t)(nl - text) : len) - off;

		lineno++;
		if (n > CONFIG_LINE_MAX) {
			r = pcs_fail(err, PCS_INVALID_ARGUMENT,
			    "%s:%d: line is longer than %d bytes", name, lineno, CONFIG_LINE_MAX);
			break;
		}
		memcpy(line, text + off, n);
		line[n] = '\0';
		off += n + (nl != NULL);

		char *s = trim(line), *eq;
		if (*s == '\0' || *s == '#')
			continue;
		if ((eq = strchr(s, '=')) == NULL) {
			r = pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "%s:%d: expected key = value", name, lineno);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		size_t vl = strlen(val);
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = '\0';
			val++;
		}
		if ((r = config_set(cfg, key, val, err)) != 0) {
			char msg[sizeof(err->message)];
			snprintf(msg, sizeof(msg), "%s", err ? err->message : "");
			r = pcs_fail(err, PCS_INVALID_ARGUMENT, "%s:%d: %s", name, lineno, msg);
			break;
		}
	}
	explicit_bzero(line, sizeof(line));
	return r;
}

static int load_file(struct config *cfg, const char *path, pcs_error *err)
{
	FILE *fp = NULL;
	char *buf = NULL;
	size_t n = 0;
	int r;

	if ((fp = fopen(path, "re")) == NULL)
		return pcs_fail(err, PCS_FAILED_PRECONDITION, "cannot read config file %s: %s",
		    path, strerror(errno));
	if ((buf = malloc(CONFIG_FILE_MAX + 1)) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION, "cannot read config file %s", path);
		goto out;
	}
	if (n > CONFIG_FILE_MAX) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "config file %s is larger than %d bytes",
		    path, CONFIG_FILE_MAX);
		goto out;
	}
	r = parse_text(cfg, path, buf, n, err);
out:
	if (buf != NULL) {
		explicit_bzero(buf, n);
		free(buf);
	}
	fclose(fp);
	return r;
}

static void env_name(char *buf, size_t size, const char *key, const char *suffix)
{
	size_t o = (size_t)snprintf(buf, size, "PCSECRET_");
	for (; *key && o + 1 < size; key++)
		buf[o++] = (char)toupper((unsigned char)*key);
	buf[o] = '\0';
	snprintf(buf + o, size - o, "%s", suffix);
}

static int load_env(struct config *cfg, pcs_error *err)
{
	char name[128];
	const char *v;
	int r;

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		env_name(name, sizeof(name), opts[i].key, "_FILE");
		if ((v = getenv(name)) != NULL && *v != '\0') {
			char *val = NULL;
			if ((r = read_value_file(v, &val, err)) != 0)
				return r;
			if (val == NULL)
				return pcs_fail(err, PCS_INTERNAL, "cannot read %s", v);
			r = config_set(cfg, opts[i].key, val, err);
			explicit_bzero(val, strlen(val));
			free(val);
			if (r != 0)
				return r;
		}
		env_name(name, sizeof(name), opts[i].key, "");
		if ((v = getenv(name)) != NULL && *v != '\0' &&
		    (r = config_set(cfg, opts[i].key, v, err)) != 0)
			return r;
	}
	return 0;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		if (opts[i].type == OPT_STR) {
			char **slot = str_slot(cfg, &opts[i]);
			if (*slot != NULL)
				explicit_bzero(*slot,
				    strlen(*slot)); /* the database URL may hold a password */
			free(*slot);
			*slot = NULL;
		}
	}
}

void config_usage(const char *prog)
{
	fprintf(stderr,
	    "usage: %s [--dev] [--config FILE] [--KEY VALUE ...]\n"
	    "  --dev          private PostgreSQL, master key and socket in a temporary directory\n"
	    "  --config FILE  settings file (key = value); also PCSECRET_CONFIG\n"
	    "  --version      print the version\n"
	    "settings (flag --key-name, environment PCSECRET_KEY_NAME or PCSECRET_KEY_NAME_FILE):\n",
	    prog);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		char flag[64];
		size_t j;
		for (j = 0; j < sizeof(flag) - 1 && opts[i].key[j]; j++)
			flag[j] = opts[i].key[j] == '_' ? '-' : opts[i].key[j];
		flag[j] = '\0';
		fprintf(stderr, "  --%-20s %s (default: %s)\n", flag, opts[i].help,
		    opts[i].def[0] ? opts[i].def : "none");
	}
}

static int set_defaults(struct config *cfg, pcs_error *err)
{
	int r;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if ((r = config_set(cfg, opts[i].key, opts[i].def, err)) != 0)
			return r;
	return 0;
}

int config_load_buffer(struct config *cfg, const char *text, size_t len, pcs_error *err)
{
	int r;

	if ((r = set_defaults(cfg, err)) != 0)
		return r;
	return parse_text(cfg, "config", text, len, err);
}

int config_load(struct config *cfg, int argc, char **argv, pcs_error *err)
{
	const char *file = getenv("PCSECRET_CONFIG");
	int r;

	if ((r = set_defaults(cfg, err)) != 0)
		return r;
	/* Flags that change where settings come from are read first. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			file = argv[++i];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			file = argv[i] + 9;
	}
	if (file != NULL && *file != '\0' && (r = load_file(cfg, file, err)) != 0)
		return r;
	if ((r = load_env(cfg, err)) != 0)
		return r;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		char key[64];
		size_t k;

		if (strcmp(a, "--dev") == 0) {
			cfg->dev = 1;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cfg->help = 1;
			continue;
		}
		if (strcmp(a, "--version") == 0) {
			cfg->version = 1;
			continue;
		}
		if (strncmp(a, "--", 2) != 0)
			return pcs_fail(err, PCS_INVALID_ARGUMENT, "unexpected argument %s", a);
		a += 2;
		for (k = 0; a[k] && a[k] != '=' && k < sizeof(key) - 1; k++)
			key[k] = a[k] == '-' ? '_' : a[k];
		key[k] = '\0';
		if (a[k] == '=')
			val = a + k + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return pcs_fail(err, PCS_INVALID_ARGUMENT, "--%s needs a value", a);
		if (strcmp(key, "config") == 0)
			continue;
		if (find_opt(key) == NULL)
			return pcs_fail(
			    err, PCS_INVALID_ARGUMENT, "unknown option --%.*s", (int)k, a);
		if ((r = config_set(cfg, key, val, err)) != 0)
			return r;
	}
	return 0;
}
