/*
 * libpcsecret: resolve pcsecret references from an agent process.
 *
 * Every function returns 0 on success or a negative status code (-PCS_NOT_FOUND, ...) and fills
 * the pcs_error it is given (which may be NULL). The library never exits, prints, logs, or
 * starts a thread. Values are returned in memory the library wipes when it is freed with the
 * matching *_free function.
 *
 * Threads (see docs/sdk.md):
 *  - One pcs_client may be used by any number of threads at once. Their calls are pipelined on
 *    the client's one connection: each is sent whole as soon as the socket is free, replies are
 *    matched to callers by call id in whatever order the daemon sends them, and each call has
 *    its own deadline (pcs_options.call_timeout_ms). A calling thread may spend part of its
 *    wait reading replies on behalf of the others.
 *  - pcs_close must not be called while any other thread is inside a call on that client, or
 *    could start one; as with close(2), the caller orders this (e.g. join the threads first).
 *  - Results (pcs_value arrays, pcs_env_entry arrays, pcs_error) belong to the thread that got
 *    them. The strings returned by pcs_client_role and pcs_client_instance stay valid until
 *    pcs_close, even across reconnections.
 *  - A pcs_error is written only by the call it is passed to: give each thread its own.
 */
#ifndef PCSECRET_H
#define PCSECRET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PCS_PROTOCOL_VERSION 1
/* Where clients look when neither an argument nor PCSECRET_SOCKET names the socket. */
#define PCS_DEFAULT_SOCKET "/run/pcsecret/pcsecretd.sock"

/* gRPC canonical status codes, identical to pcsecret.v1.StatusCode on the wire. */
enum pcs_status {
	PCS_OK = 0,
	PCS_CANCELLED = 1,
	PCS_UNKNOWN = 2,
	PCS_INVALID_ARGUMENT = 3,
	PCS_DEADLINE_EXCEEDED = 4,
	PCS_NOT_FOUND = 5,
	PCS_ALREADY_EXISTS = 6,
	PCS_PERMISSION_DENIED = 7,
	PCS_RESOURCE_EXHAUSTED = 8,
	PCS_FAILED_PRECONDITION = 9,
	PCS_ABORTED = 10,
	PCS_OUT_OF_RANGE = 11,
	PCS_UNIMPLEMENTED = 12,
	PCS_INTERNAL = 13,
	PCS_UNAVAILABLE = 14,
	PCS_DATA_LOSS = 15,
	PCS_UNAUTHENTICATED = 16
};

typedef struct pcs_error {
	int code;          /* enum pcs_status; PCS_OK when nothing failed */
	char message[256]; /* names the problem; never contains a secret value */
} pcs_error;

/* "NOT_FOUND" for PCS_NOT_FOUND; "UNKNOWN" for codes outside the table. */
const char *pcs_status_name(int code);

typedef struct pcs_client pcs_client;

/*
 * Zero-initialise it (pcs_options o = { 0 };) and set what you need: zero means the default
 * for every field. Its layout is fixed for the life of this soname: a program built against
 * an older header passes the struct it knows, so new settings come as functions on the client
 * (pcs_set_max_refs_per_call), never as new fields here.
 */
typedef struct pcs_options {
	const char *socket_path; /* NULL: $PCSECRET_SOCKET, else PCS_DEFAULT_SOCKET */
	int connect_timeout_ms;  /* <= 0: 5000; bounds connect + Hello, also on reconnection */
	int call_timeout_ms;     /* <= 0: 10000; per call, and sent as the call's deadline */
} pcs_options;

/*
 * Connects and performs the Hello handshake. opts may be NULL. Before sending anything it
 * checks who listens on the socket (SO_PEERCRED): root, this process's effective uid, or the
 * uid $PCSECRET_SERVER_UID names (a number or a user name); anyone else is PERMISSION_DENIED.
 */
int pcs_connect(const pcs_options *opts, pcs_client **out, pcs_error *err);
/*
 * Closes the connection and frees the client. NULL is allowed. No other thread may be using
 * the client, or start to, during or after this call.
 */
void pcs_close(pcs_client *client);

/* The daemon's default limit on references in one Resolve call (its max_refs setting). */
#define PCS_MAX_REFS_PER_CALL 256

/*
 * How many references pcs_resolve puts in one Resolve call; a larger resolve is split into
 * calls of at most this many, sent pipelined. 0 restores PCS_MAX_REFS_PER_CALL. Set it to the
 * daemon's max_refs when that was configured lower. Safe to call from any thread at any time;
 * resolves that start afterwards use the new value.
 */
int pcs_set_max_refs_per_call(pcs_client *client, size_t max_refs, pcs_error *err);

/* The principal the server sees for this connection, from the handshake ("agent", ...). */
const char *pcs_client_role(const pcs_client *client);
const char *pcs_client_instance(const pcs_client *client);

typedef struct pcs_value {
	char *ref; /* the reference as given */
	char *secret_id;
	uint32_t version;    /* the version the value came from */
	unsigned char *data; /* the value; followed by a NUL byte not counted in len */
	size_t len;
} pcs_value;

/*
 * Resolves refs ("pcs:acme/key", "pcs:acme/key@3", "pcs:<uuid>@latest"): in one Resolve call,
 * or, beyond pcs_set_max_refs_per_call's limit (256), in several pipelined ones.
 * All or nothing: on failure no value is returned and err names the failing reference (with
 * several calls, the first failing one in request order).
 * agent: NULL when the caller is the agent; "company/agent" when a launcher resolves for one.
 * On success *out is an array of nrefs values in the order of refs; free it with pcs_values_free.
 */
int pcs_resolve(pcs_client *client, const char *agent, const char *const *refs, size_t nrefs,
    pcs_value **out, pcs_error *err);
void pcs_values_free(pcs_value *values, size_t n);

typedef struct pcs_env_entry {
	char *name; /* environment variable name */
	char *ref;  /* "pcs:company/name" or "pcs:company/name@N" */
	uint32_t version;
	unsigned char *value; /* NUL-terminated; len excludes the NUL */
	size_t len;
} pcs_env_entry;

/*
 * The configured environment of an agent, resolved. agent: NULL for the caller's own agent,
 * "company/agent" for a launcher. Free with pcs_env_free.
 */
int pcs_get_env(
    pcs_client *client, const char *agent, pcs_env_entry **out, size_t *count, pcs_error *err);
void pcs_env_free(pcs_env_entry *env, size_t count);

/*
 * Delivery into the caller's memory and into files (docs/sdk.md, "Delivering values").
 *
 * pcs_buf_alloc: len bytes plus a NUL, zeroed, in locked memory kept out of core dumps (the
 * pool pcs_resolve's values use); free it with pcs_buf_free, which wipes it.
 *
 * pcs_resolve_into: resolves one reference into buf (cap bytes, the caller's: lock it, e.g.
 * with pcs_buf_alloc or mlock, and wipe it after use). *len gets the value's size, also when
 * it does not fit (then OUT_OF_RANGE and nothing is copied); *version the version served
 * (version may be NULL). No NUL is added: values may contain NUL bytes.
 *
 * pcs_resolve_to_file: resolves one reference into the file name (no '/', not starting with
 * '.') in the directory dirfd: written under a temporary name, owned by uid (unless
 * (uid_t)-1: the caller's), mode 0400, then renamed over name, so a reader sees the whole
 * value or none. Put dirfd on a memory file system (tmpfs) with mode 0700.
 */
int pcs_buf_alloc(size_t len, unsigned char **out, pcs_error *err);
void pcs_buf_free(unsigned char *buf);
int pcs_resolve_into(pcs_client *client, const char *agent, const char *ref, unsigned char *buf,
    size_t cap, size_t *len, uint32_t *version, pcs_error *err);
int pcs_resolve_to_file(pcs_client *client, const char *agent, const char *ref, int dirfd,
    const char *name, uid_t uid, uint32_t *version, pcs_error *err);

#ifdef __cplusplus
}
#endif
#endif
