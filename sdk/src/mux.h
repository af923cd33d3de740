/*
 * The call multiplexer: many threads' calls on the client's one connection. Gives each call
 * its id and deadline, its turn to write its frame and, while it waits, a turn to read replies
 * for everyone. pcs_rpc_start, pcs_rpc_finish and pcs_rpc_abandon (client.c) check their
 * arguments and come here; nothing here needs c->lock on entry.
 */
#ifndef PCS_SDK_MUX_H
#define PCS_SDK_MUX_H

#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "client.h"

/*
 * pcs_rpc_start once the arguments are checked: m is the method (method_id its wire id) and
 * req one of its inputs. On success *out is the call, sent; hand it to mux_finish or
 * mux_forget, then mux_call_free.
 */
int mux_start(pcs_client *c, const ProtobufCMethodDescriptor *m, uint32_t method_id,
    const ProtobufCMessage *req, struct pcs_rpc_call **out, pcs_error *err)
    __attribute__((warn_unused_result));

/* Waits for call's reply and opens it into *reply (NULL on failure). Does not free call. */
int mux_finish(pcs_client *c, struct pcs_rpc_call *call, ProtobufCMessage **reply, pcs_error *err)
    __attribute__((warn_unused_result));

/* Stops waiting for call: its reply, if one comes, is wiped and dropped. */
void mux_forget(pcs_client *c, struct pcs_rpc_call *call);

/* Frees call (NULL is fine) and any reply it holds; it must not be registered any more. */
void mux_call_free(struct pcs_rpc_call *call);

#endif
