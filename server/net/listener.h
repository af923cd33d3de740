/*
 * listener: the Unix socket. Created under a tight umask with the configured mode and group.
 * A stale socket file (nobody accepting) is replaced; a live daemon on the same path is
 * detected and start-up fails instead of stealing its socket. accept() failing with
 * EMFILE/ENFILE pauses accepting for a second instead of spinning. The socket's directory
 * must be owned by root or the daemon's user and writable by nobody else, or nobody could
 * tell the daemon from a peer that bound the path first. At accept, a peer over its uid's
 * connection limits (max_conns_per_uid, max_conns_unknown_per_uid) is refused; at
 * max_connections the oldest connection without a completed Hello makes room, and only when
 * there is none is the new one refused. Refusals get a RESOURCE_EXHAUSTED frame and are logged.
 */
#ifndef PCS_SERVER_LISTENER_H
#define PCS_SERVER_LISTENER_H

#include "server.h"
#include "status.h"

/* open_to_all: --dev only; allows a mode with bits for others (peers are still identified). */
int listener_open(struct server *srv, const char *path, const char *mode, const char *group,
    int open_to_all, pcs_error *err) PCS_WUR;
/* Stops accepting (drain). */
void listener_stop(struct server *srv);
/* Stops accepting and removes the socket file. */
void listener_close(struct server *srv);

#endif
