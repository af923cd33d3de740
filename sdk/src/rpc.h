/*
 * Internal SDK interface shared by the library's own files and the CLIs (pcctl, pcrun), which
 * link the static library. Not installed; not exported from libpcsecret.so.
 */
#ifndef PCS_SDK_RPC_H
#define PCS_SDK_RPC_H

#include <protobuf-c/protobuf-c.h>

#include "pcsecret.h"
#include "pcsecret.pb-c.h"

/* Marks the public API: the shared library is built with -fvisibility=hidden. */
#define PCS_EXPORT __attribute__((visibility("default")))

/*
 * Calls method ("Resolve", the rpc's name in service PcSecret) with req, whose type must be
 * the method's input. On success *reply holds the method's output, unpacked with
 * pbwipe_allocator: free it with protobuf_c_message_free_unpacked(*reply, &pbwipe_allocator).
 * On failure *reply is NULL and err holds the server's status and message, or the local one.
 * Reconnects first (with a new Hello) when an earlier failure took the connection down.
 * Thread-safe and pipelined: pcs_rpc_start then pcs_rpc_finish.
 */
int pcs_rpc_call(pcs_client *c, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply, pcs_error *err) __attribute__((warn_unused_result));

/* One call in flight, between pcs_rpc_start and pcs_rpc_finish or pcs_rpc_abandon. */
struct pcs_rpc_call;

/*
 * Sends the call and returns without waiting for its reply, so a caller can put several calls
 * on the wire before reading any (pipelining). On success *call must be passed to exactly one
 * of pcs_rpc_finish and pcs_rpc_abandon. The call's deadline (pcs_options.call_timeout_ms)
 * starts now. A call not a byte of which was sent is retried once on a new connection.
 */
int pcs_rpc_start(pcs_client *c, const char *method, const ProtobufCMessage *req,
    struct pcs_rpc_call **call, pcs_error *err) __attribute__((warn_unused_result));

/*
 * Waits for the call's reply (reading replies for other calls meanwhile, when no other
 * thread is) and frees call. *reply and the result are as for pcs_rpc_call.
 */
int pcs_rpc_finish(pcs_client *c, struct pcs_rpc_call *call, ProtobufCMessage **reply,
    pcs_error *err) __attribute__((warn_unused_result));

/* Forgets a started call and frees it; its reply, if one comes, is wiped and dropped. */
void pcs_rpc_abandon(pcs_client *c, struct pcs_rpc_call *call);

/* References per Resolve call: pcs_set_max_refs_per_call's value, or its default. */
size_t pcs_rpc_max_refs(const pcs_client *c);

/*
 * The handshake's reply. It stays valid until pcs_close, even when a later call reconnects
 * (each reconnect keeps its own reply; this returns the newest).
 */
const Pcsecret__V1__HelloReply *pcs_rpc_hello(const pcs_client *c);

/* The socket path the client connects to, as chosen by pcs_connect. */
const char *pcs_rpc_socket_path(const pcs_client *c);

/*
 * Memory for a value: len bytes, then a NUL, all zeroed; from the locked pool (valbuf.c), or
 * sodium_malloc when it is dry or cannot be locked. Any thread may free it, only with
 * pcs_value_buf_free (never sodium_free or free): that is what pcs_values_free and
 * pcs_env_free use, so a CLI that takes a value out of a result (pcrun) frees it so too.
 */
int pcs_value_buf_alloc(size_t len, unsigned char **out, pcs_error *err)
    __attribute__((warn_unused_result));
/* Wipes the value's whole buffer and releases it; NULL does nothing. */
void pcs_value_buf_free(unsigned char *v);

/*
 * The file behind pcs_resolve_to_file, for a value already resolved (pcrun --files): name in
 * dirfd, owned by uid (unless (uid_t)-1), mode 0400, written under a temporary name and
 * renamed into place; on failure nothing is left.
 */
int pcs_value_write_file(int dirfd, const char *name, const unsigned char *data, size_t len,
    uid_t uid, pcs_error *err) __attribute__((warn_unused_result));

#endif
