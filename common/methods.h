/*
 * methods: one row per rpc of service pcsecret.v1.PcSecret, everything the code needs to know
 * about an rpc besides its handler: its wire id and name, which authorization action governs
 * it, whether it can return values, whether sending it twice is harmless, and how its audit
 * row is written. The daemon (authz, dispatch), the SDK and pcctl read this table; nobody
 * keeps a list of rpc names of its own.
 *
 * Wire ids are the 1-based index of the rpc in the generated service descriptor, so rpcs are
 * only ever appended to the .proto and to this table; methods_check compares the two at
 * start-up and tests/unit/test_methods.c pins every id to its name.
 */
#ifndef PCS_COMMON_METHODS_H
#define PCS_COMMON_METHODS_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>
#include "status.h"

/* The policy that decides who may call an rpc (server/rpc/authz.c applies it). */
enum method_action {
	METHOD_ACTION_SESSION,        /* Hello: anyone (an unknown peer is refused by identity) */
	METHOD_ACTION_COMPANY_CREATE, /* admin */
	METHOD_ACTION_COMPANY_LIST,   /* admin, operator, launcher (the listing is filtered) */
	METHOD_ACTION_SECRET_WRITE,   /* admin, operator of the company */
	METHOD_ACTION_SECRET_READ,    /* metadata only: admin, operator of the company */
	METHOD_ACTION_AGENT_WRITE,    /* admin, operator of the company */
	METHOD_ACTION_AGENT_READ, /* metadata only: admin, operator or launcher of the company */
	METHOD_ACTION_VALUE_READ, /* values: the agent itself, or a launcher of its company */
	METHOD_ACTION_PRINCIPAL_ADMIN, /* admin */
	METHOD_ACTION_AUDIT_READ,      /* admin, operator of the company (or of every listed one) */
	/* Watch: admin, operator of the company; a launcher of it for a named agent; an agent for
	 * its own environment. Per secret, launchers and agents only what the agent is bound to. */
	METHOD_ACTION_WATCH,
	METHOD_ACTION_AUDIT_VERIFY /* admin: every instance's chains, all companies at once */
};

/* Its reply can carry secret values (only these may ever go to an agent or launcher). */
#define METHOD_RETURNS_VALUES 0x1u
/* Sending it again after a lost connection changes nothing the first one did not. */
#define METHOD_IDEMPOTENT 0x2u
/* The handshake: the one rpc allowed before a session is established, and only once. */
#define METHOD_HANDSHAKE 0x4u
/*
 * May be answered from the daemon's cache (its identity too): the audit row is queued and
 * its statement checks that what the answer was built from is still current.
 */
#define METHOD_CACHED 0x8u

/* How a call's audit row reaches the database. */
enum method_audit {
	/* Group-committed after the call's work, before its reply: reads of values and Hello. */
	METHOD_AUDIT_QUEUED,
	/* In the same statement as the call's work (so the same transaction): writes, listings. */
	METHOD_AUDIT_WITH_WORK
};

struct method {
	const char *name; /* "Resolve" */
	unsigned id;      /* wire id: 1-based index in the service descriptor */
	enum method_action action;
	unsigned flags; /* METHOD_* */
	enum method_audit audit;
};

/* NULL when id is not an rpc of the service. */
const struct method *method_by_id(unsigned id);
/* NULL when name ("Resolve", not the full "pcsecret.v1.PcSecret/Resolve") is not an rpc. */
const struct method *method_by_name(const char *name);
/* Number of rows (= rpcs of the service). */
size_t methods_count(void);
/*
 * 0 when the table and the generated service descriptor name the same rpcs in the same
 * order; otherwise -PCS_INTERNAL naming the first difference. Run at start-up.
 */
int methods_check(const ProtobufCServiceDescriptor *d, pcs_error *err);

#endif
