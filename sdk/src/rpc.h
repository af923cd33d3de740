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
 * Reconnects first (with a new Hello) when an earlier call left the connection broken.
 */
int pcs_rpc_call(pcs_client *c, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply, pcs_error *err) __attribute__((warn_unused_result));

/*
 * The handshake's reply. It stays valid until pcs_close, even when a later call reconnects
 * (each reconnect keeps its own reply; this returns the newest).
 */
const Pcsecret__V1__HelloReply *pcs_rpc_hello(const pcs_client *c);

/* The socket path the client connects to, as chosen by pcs_connect. */
const char *pcs_rpc_socket_path(const pcs_client *c);

#endif
