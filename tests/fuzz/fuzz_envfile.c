/*
 * pcrun's --env-file and --env-json parsers (client/envfile.c) on arbitrary bytes: each input
 * is refused or accepted, every variable handed on has a valid name, and a refusal's message
 * is a terminated string.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "envfile.h"
#include "ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(void *ctx, const char *name, const char *ref, const char *value, size_t len,
    pcs_error *err)
{
	(void)ctx;
	(void)err;
	if (!env_name_valid(name) || (ref == NULL) == (value == NULL) || (ref != NULL && len != 0))
		abort();
	if (ref != NULL && strncmp(ref, PCS_REF_PREFIX, sizeof(PCS_REF_PREFIX) - 1) != 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	pcs_error err;
	int r;

	if (!ready) {
		if (sodium_init() < 0)
			abort();
		envfile_init();
		ready = 1;
	}
	r = envfile_parse_dotenv("f", (const char *)data, size, check, NULL, &err);
	if (r != 0 && (r != -PCS_INVALID_ARGUMENT || memchr(err.message, '\0', sizeof(err.message)) == NULL))
		abort();
	r = envfile_parse_json("f", (const char *)data, size, check, NULL, &err);
	if (r != 0 && (r != -PCS_INVALID_ARGUMENT || memchr(err.message, '\0', sizeof(err.message)) == NULL))
		abort();
	return 0;
}
