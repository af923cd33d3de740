/*
 * The blocking client: one Unix-socket connection to pcsecretd, shared by every thread that
 * calls on the pcs_client; the Hello handshake; pipelined calls. This file is the API: making
 * and freeing the client, its accessors, and the entry points of a call. The work is done in
 * layers, each of which calls only those below it:
 *   mux.c        the calls: ids, the write and read roles, replies to their callers, deadlines
 *   session.c    the connection: connecting with Hello, failing, reconnecting
 *   transport.c  one descriptor: connecting it, the server's identity, frames out and in
 * They share the client object, struct pcs_client (client.h).
 *
 * The library starts no thread of its own, so the callers do all the I/O:
 *  - c->lock guards the client's state. No blocking I/O happens while it is held.
 *  - Calls take turns to write and to read the one connection (mux.c).
 *  - A connection that fails fails the calls on it and is replaced by the next call
 *    (session.c).
 *
 * pcs_close must not run while another thread uses the client (documented in pcsecret.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "client.h"
#include "mux.h"
#include "pbwipe.h"
#include "rpc.h"
#include "session.h"
#include "status.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 5000
#define CALL_TIMEOUT_DEFAULT_MS 10000

int pcs_rpc_start(pcs_client *c, const char *method, const ProtobufCMessage *req,
    struct pcs_rpc_call **out, pcs_error *err)
{
	const ProtobufCMethodDescriptor *m;
	uint32_t method_id;

	if (out != NULL)
		*out = NULL;
	if (c == NULL || method == NULL || req == NULL || out == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "pcs_rpc_start: a required argument "
		    "is NULL");
	if ((m = transport_method_find(method, &method_id)) == NULL)
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "pcsecret.v1.PcSecret has no method %s", method);
	if (req->descriptor != m->input)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "%s takes a %s, not a %s", method,
		    m->input->name, req->descriptor->name);
	return mux_start(c, m, method_id, req, out, err);
}

int pcs_rpc_finish(
    pcs_client *c, struct pcs_rpc_call *call, ProtobufCMessage **reply, pcs_error *err)
{
	int r;

	if (reply != NULL)
		*reply = NULL;
	if (c == NULL || call == NULL || reply == NULL) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "pcs_rpc_finish: a required argument is "
		    "NULL");
		goto out;
	}
	r = mux_finish(c, call, reply, err);
out:
	mux_call_free(call);
	return r;
}

void pcs_rpc_abandon(pcs_client *c, struct pcs_rpc_call *call)
{
	if (call == NULL)
		return;
	if (c != NULL)
		mux_forget(c, call);
	mux_call_free(call);
}

int pcs_rpc_call(pcs_client *c, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply, pcs_error *err)
{
	struct pcs_rpc_call *call = NULL;
	int r;

	if (reply != NULL)
		*reply = NULL;
	if (reply == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "pcs_rpc_call: a required argument "
		    "is NULL");
	if ((r = pcs_rpc_start(c, method, req, &call, err)) != 0)
		return r;
	return pcs_rpc_finish(c, call, reply, err);
}

const Pcsecret__V1__HelloReply *pcs_rpc_hello(const pcs_client *c)
{
	struct hello_node *node;

	if (c == NULL)
		return NULL;
	node = atomic_load(&((pcs_client *)c)->hellos);
	return node != NULL ? node->reply : NULL;
}

const char *pcs_rpc_socket_path(const pcs_client *c) { return c != NULL ? c->path : NULL; }

size_t pcs_rpc_max_refs(const pcs_client *c)
{
	size_t n = atomic_load(&((pcs_client *)c)->max_refs);

	return n != 0 ? n : PCS_MAX_REFS_PER_CALL;
}

PCS_EXPORT int pcs_set_max_refs_per_call(pcs_client *client, size_t max_refs, pcs_error *err)
{
	if (client == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "pcs_set_max_refs_per_call: client is "
		    "NULL");
	atomic_store(&client->max_refs, max_refs);
	return 0;
}

/* The synchronisation objects of a client; undone by pcs_close. */
static int client_sync_init(pcs_client *c, pcs_error *err)
{
	int r;

	if ((r = pthread_condattr_init(&c->condattr)) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot create the client's locks: error %d", r);
	/* Deadlines are CLOCK_MONOTONIC: a wall-clock jump must not stretch or cut a wait. */
	if ((r = pthread_condattr_setclock(&c->condattr, CLOCK_MONOTONIC)) != 0 ||
	    (r = pthread_mutex_init(&c->lock, NULL)) != 0) {
		(void)pthread_condattr_destroy(&c->condattr);
		return pcs_fail(err, PCS_INTERNAL, "cannot create the client's locks: error %d", r);
	}
	if ((r = pthread_cond_init(&c->state, &c->condattr)) != 0) {
		(void)pthread_mutex_destroy(&c->lock);
		(void)pthread_condattr_destroy(&c->condattr);
		return pcs_fail(err, PCS_INTERNAL, "cannot create the client's locks: error %d", r);
	}
	return 0;
}

PCS_EXPORT int pcs_connect(const pcs_options *opts, pcs_client **out, pcs_error *err)
{
	pcs_client *c = NULL;
	const char *path = NULL;
	size_t plen;
	int r;

	if (out == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "pcs_connect: out is NULL");
	*out = NULL;
	if (sodium_init() < 0)
		return pcs_fail(err, PCS_INTERNAL, "libsodium failed to initialise");
	if (opts != NULL && opts->socket_path != NULL)
		path = opts->socket_path;
	else if ((path = getenv("PCSECRET_SOCKET")) == NULL || path[0] == '\0')
		path = PCS_DEFAULT_SOCKET;
	plen = strlen(path);
	if (plen == 0)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "the socket path is empty");
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	c->fd = -1;
	if (plen >= sizeof(c->path)) {
		/* Sizes first: the message would cut a long path short. */
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "socket path is %zu bytes; the maximum is "
		    "%zu: %.80s...",
		    plen, sizeof(c->path) - 1, path);
		free(c);
		return r;
	}
	memcpy(c->path, path, plen + 1);
	if ((r = transport_server_uid_get(&c->server_uid, err)) != 0) {
		free(c);
		return r;
	}
	if ((r = client_sync_init(c, err)) != 0) {
		free(c);
		return r;
	}
	c->connect_timeout_ms = opts != NULL && opts->connect_timeout_ms > 0 ?
	    opts->connect_timeout_ms :
	    CONNECT_TIMEOUT_DEFAULT_MS;
	c->call_timeout_ms = opts != NULL && opts->call_timeout_ms > 0 ? opts->call_timeout_ms :
	                                                                 CALL_TIMEOUT_DEFAULT_MS;
	c->next_call_id = 1;
	atomic_init(&c->max_refs, 0);
	atomic_init(&c->hellos, NULL);
	(void)pthread_mutex_lock(&c->lock);
	r = session_ready(c, err);
	(void)pthread_mutex_unlock(&c->lock);
	if (r != 0)
		goto out;
	*out = c;
	c = NULL;
out:
	pcs_close(c);
	return r;
}

PCS_EXPORT void pcs_close(pcs_client *c)
{
	struct hello_node *node, *next;

	if (c == NULL)
		return;
	if (c->fd != -1)
		(void)close(c->fd);
	transport_rbuf_free(&c->rbuf);
	for (node = atomic_load(&c->hellos); node != NULL; node = next) {
		next = node->next;
		protobuf_c_message_free_unpacked(&node->reply->base, &pbwipe_allocator);
		free(node);
	}
	(void)pthread_cond_destroy(&c->state);
	(void)pthread_mutex_destroy(&c->lock);
	(void)pthread_condattr_destroy(&c->condattr);
	free(c);
}

PCS_EXPORT const char *pcs_client_role(const pcs_client *c)
{
	const Pcsecret__V1__HelloReply *h = pcs_rpc_hello(c);

	if (h == NULL || h->principal == NULL)
		return "";
	return h->principal->role;
}

PCS_EXPORT const char *pcs_client_instance(const pcs_client *c)
{
	const Pcsecret__V1__HelloReply *h = pcs_rpc_hello(c);

	return h != NULL ? h->instance_id : "";
}
