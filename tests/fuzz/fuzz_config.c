/*
 * The daemon's config-file parser (config_load_buffer, the same code --config files go
 * through) on arbitrary text. Whatever it accepts must be within every setting's bounds, and
 * writing the settings back out as a config file must parse to the same settings.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSTR 7
#define NINT 11

static const char *const str_keys[NSTR] = { "socket", "socket_group", "socket_mode",
	"database_url", "master_key_file", "log_file", "log_level" };
static const char *const int_keys[NINT] = { "pool_size", "max_frame", "max_connections",
	"max_inflight", "max_refs", "max_output", "idle_timeout_ms", "read_timeout_ms",
	"call_timeout_ms", "drain_timeout_ms", "max_calls" };

static void ints(const struct config *c, int64_t out[NINT])
{
	out[0] = c->pool_size;
	out[1] = c->max_frame;
	out[2] = c->max_connections;
	out[3] = c->max_inflight;
	out[4] = c->max_refs;
	out[5] = c->max_output;
	out[6] = c->idle_timeout_ms;
	out[7] = c->read_timeout_ms;
	out[8] = c->call_timeout_ms;
	out[9] = c->drain_timeout_ms;
	out[10] = c->max_calls;
}

/* The documented bounds (docs/configuration.md). */
static const int64_t lo[NINT] = { 1, 1024, 1, 1, 1, 65536, 100, 100, 10, 0, 16 };
static const int64_t hi[NINT] = { 64, 64 * 1024 * 1024, 1000000, 100000, 100000,
	1024 * 1024 * 1024, 86400000, 3600000, 3600000, 3600000, 1000000 };

static void str_values(const struct config *c, char *out[NSTR])
{
	out[0] = c->socket;
	out[1] = c->socket_group;
	out[2] = c->socket_mode;
	out[3] = c->database_url;
	out[4] = c->master_key_file;
	out[5] = c->log_file;
	out[6] = c->log_level;
}

/* Writes cfg as a config file; NULL when a line would be longer than the parser takes. */
static char *render(const struct config *cfg, size_t *len)
{
	char *sv[NSTR], *buf = NULL;
	int64_t iv[NINT];
	size_t cap = 256, off = 0;

	str_values(cfg, sv);
	ints(cfg, iv);
	for (int i = 0; i < NSTR; i++) {
		if (strlen(sv[i]) + strlen(str_keys[i]) + 3 > 4095)
			return NULL;
		cap += strlen(sv[i]) + 64;
	}
	if ((buf = malloc(cap)) == NULL)
		abort();
	/* Quoted, so values that start or end with blanks or quotes come back unchanged. */
	for (int i = 0; i < NSTR; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s=\"%s\"\n", str_keys[i], sv[i]);
	off += (size_t)snprintf(buf + off, cap - off, "# comment line\n\n");
	for (int i = 0; i < NINT; i++)
		off += (size_t)snprintf(buf + off, cap - off, "  %s = %lld\r\n", int_keys[i],
		    (long long)iv[i]);
	*len = off;
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg, again;
	pcs_error err;
	char *sv[NSTR], *sv2[NSTR], *text;
	int64_t iv[NINT], iv2[NINT];
	size_t len;
	int r;

	r = config_load_buffer(&cfg, (const char *)data, size, &err);
	if (r != 0) {
		/* A refusal says why, on one NUL-terminated line that names where. */
		if (r != -PCS_INVALID_ARGUMENT || err.code != PCS_INVALID_ARGUMENT ||
		    memchr(err.message, '\0', sizeof(err.message)) == NULL ||
		    strncmp(err.message, "config:", 7) != 0)
			abort();
		config_free(&cfg);
		return 0;
	}
	str_values(&cfg, sv);
	ints(&cfg, iv);
	for (int i = 0; i < NSTR; i++)
		if (sv[i] == NULL || strchr(sv[i], '\n') != NULL)
			abort();
	for (int i = 0; i < NINT; i++)
		if (iv[i] < lo[i] || iv[i] > hi[i])
			abort();
	if ((text = render(&cfg, &len)) != NULL) {
		if (config_load_buffer(&again, text, len, &err) != 0)
			abort();
		str_values(&again, sv2);
		ints(&again, iv2);
		for (int i = 0; i < NSTR; i++)
			if (strcmp(sv[i], sv2[i]) != 0)
				abort();
		if (memcmp(iv, iv2, sizeof(iv)) != 0)
			abort();
		config_free(&again);
		free(text);
	}
	config_free(&cfg);
	return 0;
}
