/*
 * watch_event: the payloads of the pcs_watch channel (migrations/011_watch_events.sql), parsed
 * without trusting them: "<kind> <uuid> <latest> <version>". Pure; no I/O (unit-tested).
 */
#ifndef PCS_SERVER_WATCH_EVENT_H
#define PCS_SERVER_WATCH_EVENT_H

#include <stdint.h>

enum watch_kind {
	WATCH_NEW_VERSION,
	WATCH_STAGED,
	WATCH_PROMOTED,
	WATCH_ROLLBACK,
	WATCH_DISABLED,
	WATCH_ENABLED,
	WATCH_DELETED,
	WATCH_RESTORED,
	WATCH_PURGED,
	WATCH_BINDING_CHANGED, /* id is the agent's */
	WATCH_KIND_COUNT
};

struct watch_event {
	enum watch_kind kind;
	char id[37]; /* lowercase canonical uuid: the secret's, or the agent's */
	uint32_t latest, version;
};

/* 0, or -1 when payload is not exactly one well-formed event (out is then unspecified). */
int watch_event_parse(const char *payload, struct watch_event *out);
/* "new_version" etc.; NULL for a kind out of range. */
const char *watch_kind_name(enum watch_kind kind);

#endif
