#include "watch_event.h"

#include <string.h>

#include "ref.h"

static const char *const kind_names[WATCH_KIND_COUNT] = {
	[WATCH_NEW_VERSION] = "new_version",
	[WATCH_STAGED] = "staged",
	[WATCH_PROMOTED] = "promoted",
	[WATCH_ROLLBACK] = "rollback",
	[WATCH_DISABLED] = "disabled",
	[WATCH_ENABLED] = "enabled",
	[WATCH_DELETED] = "deleted",
	[WATCH_RESTORED] = "restored",
	[WATCH_PURGED] = "purged",
	[WATCH_BINDING_CHANGED] = "binding_changed",
};

const char *watch_kind_name(enum watch_kind kind)
{
	return (unsigned)kind < WATCH_KIND_COUNT ? kind_names[kind] : NULL;
}

/* A version number as the triggers print it: 0 or 1..2147483647, no sign, no leading zero. */
static const char *parse_u31(const char *p, uint32_t *out)
{
	uint64_t v = 0;
	size_t n = 0;

	while (p[n] >= '0' && p[n] <= '9') {
		v = v * 10 + (uint64_t)(p[n] - '0');
		if (++n > 10 || v > INT32_MAX)
			return NULL;
	}
	if (n == 0 || (n > 1 && p[0] == '0'))
		return NULL;
	*out = (uint32_t)v;
	return p + n;
}

int watch_event_parse(const char *payload, struct watch_event *out)
{
	const char *sp, *p;
	size_t klen;
	unsigned k;

	if (payload == NULL || (sp = strchr(payload, ' ')) == NULL)
		return -1;
	klen = (size_t)(sp - payload);
	for (k = 0; k < WATCH_KIND_COUNT; k++)
		if (strlen(kind_names[k]) == klen && memcmp(kind_names[k], payload, klen) == 0)
			break;
	if (k == WATCH_KIND_COUNT)
		return -1;
	out->kind = (enum watch_kind)k;
	p = sp + 1;
	if (strlen(p) < 36 || p[36] != ' ')
		return -1;
	memcpy(out->id, p, 36);
	out->id[36] = '\0';
	/* Lowercase only, as PostgreSQL prints them: the streams compare them as text. */
	if (!uuid_valid(out->id))
		return -1;
	if ((p = parse_u31(p + 37, &out->latest)) == NULL || *p != ' ' ||
	    (p = parse_u31(p + 1, &out->version)) == NULL || *p != '\0')
		return -1;
	return 0;
}
