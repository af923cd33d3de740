/*
 * The SDK's transport: one descriptor to pcsecretd. Connecting it (with the server-identity
 * check), putting a frame on it and reading a Reply off it, each bounded by a deadline, and
 * the envelope around a call (Call out, Reply in). Knows nothing of the client, its lock or
 * its threads: the caller says which descriptor, which read buffer and which socket path (for
 * messages), and makes sure nobody else uses them meanwhile.
 */
#ifndef PCS_SDK_TRANSPORT_H
#define PCS_SDK_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "pcsecret.h"
#include "pcsecret.pb-c.h"

/* Returned (err untouched) when a wait on the descriptor reached its deadline. */
#define TRANSPORT_TIMEOUT 1
/* No uid is named by PCSECRET_SERVER_UID. */
#define TRANSPORT_NO_UID ((uid_t)-1)

/* Received bytes not yet consumed; wiped as they are consumed. */
struct transport_rbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

/* CLOCK_MONOTONIC in ms: every deadline in the SDK is on this clock. */
int64_t transport_now_ms(void);
/* Milliseconds until deadline, 0 once it has passed. */
int transport_remaining_ms(int64_t deadline);

/* PCSECRET_SERVER_UID: a uid in decimal or a user name; TRANSPORT_NO_UID when unset or empty. */
int transport_server_uid_get(uid_t *out, pcs_error *err) __attribute__((warn_unused_result));

/*
 * Connects to the socket at path (which fits sun_path: pcs_connect checked) by deadline and
 * checks who serves it: root, this process's uid or server_uid. timeout_ms is what the
 * deadline was set from, for the messages. On success *fdp is a non-blocking, close-on-exec
 * descriptor nothing has been sent on.
 */
int transport_open(const char *path, uid_t server_uid, int64_t deadline, int timeout_ms, int *fdp,
    pcs_error *err) __attribute__((warn_unused_result));

/*
 * Sends the whole frame. Returns 0, TRANSPORT_TIMEOUT (err untouched), or a negative status;
 * *sent says how many bytes left either way, so a caller knows whether the daemon saw anything.
 */
int transport_send_all(const char *path, int fd, const uint8_t *buf, size_t len, int64_t deadline,
    size_t *sent, pcs_error *err) __attribute__((warn_unused_result));

/*
 * Reads until rb starts with a whole frame, then unpacks it as a Reply and consumes it.
 * Returns 0 with *rep set, TRANSPORT_TIMEOUT (a partial frame stays in rb for the next
 * reader), or a negative status: the connection is unusable.
 */
int transport_read_reply(struct transport_rbuf *rb, const char *path, int fd, int64_t deadline,
    Pcsecret__V1__Reply **rep, pcs_error *err) __attribute__((warn_unused_result));

/* Whatever a dead connection left buffered may hold values. */
void transport_rbuf_clear(struct transport_rbuf *rb);
/* Wipes and frees the buffer; rb is empty afterwards. */
void transport_rbuf_free(struct transport_rbuf *rb);

/* The rpc called name in service PcSecret and its wire id, or NULL. */
const ProtobufCMethodDescriptor *transport_method_find(const char *name, uint32_t *method_id);

/* One Call frame: the envelope around req. Free *frame with frame_free (it may hold values). */
int transport_call_frame(const ProtobufCMethodDescriptor *m, uint32_t method_id,
    const ProtobufCMessage *req, uint64_t call_id, int timeout_ms, uint8_t **frame, size_t *flen,
    pcs_error *err) __attribute__((warn_unused_result));

/* A call's Reply into the method's output message. Frees rep. */
int transport_reply_open(const char *path, const ProtobufCMethodDescriptor *m,
    Pcsecret__V1__Reply *rep, ProtobufCMessage **reply, pcs_error *err)
    __attribute__((warn_unused_result));

/* The error a Reply with call_id 0 reports for the whole connection. */
int transport_conn_error(const Pcsecret__V1__Reply *rep, pcs_error *err);

/* DEADLINE_EXCEEDED: "call METHOD timed out after N ms". */
int transport_fail_timeout(const char *method, int timeout_ms, pcs_error *err);

#endif
