/*
 * The client object, shared by the SDK's layers: client.c makes and frees it, session.c keeps
 * its connection, mux.c runs the calls on it. Not installed; only the SDK's own files see it.
 */
#ifndef PCS_SDK_CLIENT_H
#define PCS_SDK_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "rpc.h"
#include "transport.h"

struct hello_node {
	Pcsecret__V1__HelloReply *reply;
	struct hello_node *next;
};

/*
 * c->lock guards the client's state. No blocking I/O happens while it is held. Fields set by
 * pcs_connect and only read afterwards, and the atomic ones, need no lock.
 */
struct pcs_client {
	pthread_mutex_t lock;
	pthread_cond_t state;        /* write role released; connection up, failed or gone */
	pthread_condattr_t condattr; /* CLOCK_MONOTONIC, for every condition variable */

	/* Set by pcs_connect. */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uid_t server_uid; /* PCSECRET_SERVER_UID, or TRANSPORT_NO_UID */
	int connect_timeout_ms;
	int call_timeout_ms;

	/* The connection (session.c). */
	int fd;               /* -1: none; the next call connects */
	uint64_t gen;         /* counts connections, so a failure hits only its own */
	int broken;           /* failed; fd is closed once neither role is held */
	int connecting;       /* a caller is connecting; it owns rbuf */
	uint64_t connect_seq; /* counts finished connection attempts */
	int connect_status;   /* the last attempt's result, shared with its waiters */
	pcs_error connect_err;
	uint64_t next_call_id;      /* Hello's ids and the calls' come from one counter */
	struct transport_rbuf rbuf; /* owned by whoever reads or connects */
	/*
	 * Every handshake reply, newest first. Old ones are kept until pcs_close so pointers
	 * handed out by pcs_client_role and pcs_rpc_hello never dangle after a reconnect.
	 */
	struct hello_node *_Atomic hellos;

	/* The calls on it (mux.c). */
	int writing;                /* a caller is sending a frame on fd */
	int reading;                /* a caller is reading fd and owns rbuf */
	struct pcs_rpc_call *calls; /* registered: sent or being sent, reply not yet taken */

	atomic_size_t max_refs; /* 0: PCS_MAX_REFS_PER_CALL */
};

#endif
