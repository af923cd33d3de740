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

/*
 * Watching secrets for changes (docs/sdk.md, "Watching"; the Watch rpc of docs/protocol.md).
 *
 * A watch has a connection of its own, opened by pcs_watch_start with the client's socket,
 * server check and timeouts, so its descriptor is readable only for the watch's frames and
 * the client stays free for ordinary calls from any thread meanwhile (e.g. a pcs_resolve
 * after an event). After pcs_watch_start the watch no longer uses the client: either may be
 * closed first. No thread is started: the caller polls pcs_watch_fd for POLLIN and then calls
 * pcs_watch_read (as with libpq's PQsocket and PQnotifies), or blocks in pcs_watch_wait.
 *
 * Threads: a pcs_watch is used by one thread at a time (it has no lock); different watches,
 * and the client they came from, may be used by different threads at once.
 */
typedef struct pcs_watch pcs_watch;

#define PCS_WATCH_NAME_MAX 128 /* longest company, secret or agent name */
#define PCS_WATCH_ID_MAX 36    /* a secret id: a lowercase uuid */
#define PCS_WATCH_KIND_MAX 31

/* What a change was; PCS_WATCH_OTHER for a kind this library does not know (see kind_name). */
enum pcs_watch_kind {
	PCS_WATCH_OTHER = 0,
	PCS_WATCH_NEW_VERSION,    /* an update made a new latest */
	PCS_WATCH_STAGED,         /* an update with no_promote: latest unchanged */
	PCS_WATCH_PROMOTED,       /* a staged or older version became latest */
	PCS_WATCH_ROLLBACK,       /* an older version became latest */
	PCS_WATCH_DISABLED,       /* a version was disabled */
	PCS_WATCH_ENABLED,        /* a version was enabled again */
	PCS_WATCH_DELETED,        /* the secret was deleted (soft) */
	PCS_WATCH_RESTORED,       /* the secret was restored */
	PCS_WATCH_PURGED,         /* every version's value was destroyed */
	PCS_WATCH_BINDING_CHANGED /* the watched agent's environment changed: the stream ends next */
};

/* A watched secret as it was when the watch started. */
typedef struct pcs_watched_secret {
	char secret_id[PCS_WATCH_ID_MAX + 1];
	char company[PCS_WATCH_NAME_MAX + 1];
	char name[PCS_WATCH_NAME_MAX + 1];
	uint32_t latest; /* its latest version */
	int deleted;     /* 1: deleted, still holding its name (it can be restored or purged) */
} pcs_watched_secret;

/* One change, as it committed. No values: re-resolve to get the new one. */
typedef struct pcs_watch_event {
	int kind;                               /* enum pcs_watch_kind */
	char kind_name[PCS_WATCH_KIND_MAX + 1]; /* the wire's word: "new_version", ... */
	char secret_id[PCS_WATCH_ID_MAX + 1];   /* empty for PCS_WATCH_BINDING_CHANGED */
	char company[PCS_WATCH_NAME_MAX + 1];
	char name[PCS_WATCH_NAME_MAX + 1]; /* the secret's; the agent's for binding_changed */
	uint32_t latest;                   /* the secret's latest version after the change */
	uint32_t version; /* the version the change is about; 0 for the whole secret */
} pcs_watch_event;

/*
 * Starts watching: nrefs references ("pcs:acme/key", "acme/key" or "pcs:<uuid>"; a version
 * suffix is ignored), all in one company, and/or agent ("company/agent": the secrets its
 * environment binds; NULL with no refs from an agent process: its own). Connects (a new
 * connection, with Hello), sends Watch and waits for its first reply, bounded by the client's
 * connect and call timeouts. On success *out is the watch; pcs_watch_secrets lists what it
 * watches. Fails with the daemon's status (PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT,
 * RESOURCE_EXHAUSTED past the daemon's watch limits, UNAVAILABLE while its change feed is
 * down, ...).
 */
int pcs_watch_start(pcs_client *client, const char *const *refs, size_t nrefs, const char *agent,
    pcs_watch **out, pcs_error *err);

/* The watched secrets, in the daemon's order, as of the start; valid until pcs_watch_close. */
const pcs_watched_secret *pcs_watch_secrets(const pcs_watch *watch, size_t *n);
/* "company/agent" when an agent's environment is watched, else "". */
const char *pcs_watch_agent(const pcs_watch *watch);

/*
 * The descriptor to poll for POLLIN; -1 for NULL. It stays open (and, once the stream has
 * ended, readable) until pcs_watch_close. Only read it through pcs_watch_read.
 */
int pcs_watch_fd(const pcs_watch *watch);

/*
 * Never blocks: reads what the socket holds and returns up to max events in events[0 ..
 * *n). Returns 0 while the stream is open (*n may be 0). Once the stream has ended and every
 * event before its end has been returned, returns its status, negative, with *n 0 and err
 * saying why, and keeps returning it: -PCS_ABORTED ("... watch again": start a new watch),
 * -PCS_UNAVAILABLE (the connection or the daemon's change feed was lost), or another.
 * Poll the descriptor again only after a call returned fewer than max events: frames already
 * read off the socket do not make it readable (as with PQnotifies).
 * Unread events wait in the kernel's socket buffer and in one receive buffer of at most
 * about 1 MiB; a watcher that stops reading is cut off by the daemon (max_output), which it
 * sees as the end of the stream (UNAVAILABLE).
 */
int pcs_watch_read(
    pcs_watch *watch, pcs_watch_event *events, size_t max, size_t *n, pcs_error *err);

/*
 * pcs_watch_read that waits up to timeout_ms (< 0: without limit) for at least one event or
 * the end. 0 with *n 0 when the time ran out. A signal does not cut the wait short.
 */
int pcs_watch_wait(pcs_watch *watch, int timeout_ms, pcs_watch_event *events, size_t max, size_t *n,
    pcs_error *err);

/* Closes the watch's connection (which ends its stream) and frees it. NULL is fine. */
void pcs_watch_close(pcs_watch *watch);

/* "new_version" for PCS_WATCH_NEW_VERSION; "other" outside the table. */
const char *pcs_watch_kind_name(int kind);

#ifdef __cplusplus
}
#endif
#endif
