/*
 * libpcsecret: resolve pcsecret references from an agent process.
 *
 * Every function returns 0 on success or a negative status code (-PCS_NOT_FOUND, ...) and fills
 * the pcs_error it is given. The library never exits, prints, or logs. Values are returned in
 * memory the library wipes when it is freed with the matching *_free function.
 *
 * Threads: a pcs_client may be shared by several threads; calls on it are serialised
 * internally (see docs/sdk.md).
 */
#ifndef PCSECRET_H
#define PCSECRET_H

#include <stddef.h>
#include <stdint.h>

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
	int code;           /* enum pcs_status; PCS_OK when nothing failed */
	char message[256];  /* names the problem; never contains a secret value */
} pcs_error;

/* "NOT_FOUND" for PCS_NOT_FOUND; "UNKNOWN" for codes outside the table. */
const char *pcs_status_name(int code);

typedef struct pcs_client pcs_client;

typedef struct pcs_options {
	const char *socket_path;  /* NULL: $PCSECRET_SOCKET, else PCS_DEFAULT_SOCKET */
	int connect_timeout_ms;   /* <= 0: 5000 */
	int call_timeout_ms;      /* <= 0: 10000; sent to the server as the call's deadline */
} pcs_options;

/* Connects and performs the Hello handshake. opts may be NULL. */
int pcs_connect(const pcs_options *opts, pcs_client **out, pcs_error *err);
/* Closes the connection and frees the client. NULL is allowed. */
void pcs_close(pcs_client *client);

/* The principal the server sees for this connection, from the handshake ("agent", ...). */
const char *pcs_client_role(const pcs_client *client);
const char *pcs_client_instance(const pcs_client *client);

typedef struct pcs_value {
	char *ref;            /* the reference as given */
	char *secret_id;
	uint32_t version;     /* the version the value came from */
	unsigned char *data;  /* the value; followed by a NUL byte not counted in len */
	size_t len;
} pcs_value;

/*
 * Resolves refs ("pcs:acme/key", "pcs:acme/key@3", "pcs:<uuid>@latest") in one call.
 * All or nothing: on failure no value is returned and err names the failing reference.
 * agent: NULL when the caller is the agent; "company/agent" when a launcher resolves for one.
 * On success *out is an array of nrefs values in the order of refs; free it with pcs_values_free.
 */
int pcs_resolve(pcs_client *client, const char *agent, const char *const *refs, size_t nrefs,
    pcs_value **out, pcs_error *err);
void pcs_values_free(pcs_value *values, size_t n);

typedef struct pcs_env_entry {
	char *name;           /* environment variable name */
	char *ref;            /* "pcs:company/name" or "pcs:company/name@N" */
	uint32_t version;
	unsigned char *value; /* NUL-terminated; len excludes the NUL */
	size_t len;
} pcs_env_entry;

/*
 * The configured environment of an agent, resolved. agent: NULL for the caller's own agent,
 * "company/agent" for a launcher. Free with pcs_env_free.
 */
int pcs_get_env(pcs_client *client, const char *agent, pcs_env_entry **out, size_t *count,
    pcs_error *err);
void pcs_env_free(pcs_env_entry *env, size_t count);

#ifdef __cplusplus
}
#endif
#endif
