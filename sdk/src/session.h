/*
 * The client's connection: connecting with the Hello handshake, failing it, closing it once
 * nobody is inside send() or poll() on it, and reconnecting. Every function here is called
 * with c->lock held.
 */
#ifndef PCS_SDK_SESSION_H
#define PCS_SDK_SESSION_H

#include <pthread.h>
#include <stdint.h>

#include "client.h"

/* Waits on cond until signalled or until deadline (CLOCK_MONOTONIC ms); 0 or ETIMEDOUT. */
int session_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t deadline);

/*
 * Makes sure there is a connection, connecting (with a new Hello) when there is none. Only one
 * caller connects; the others wait for it and share its failure rather than each waiting out
 * a timeout of its own. The lock is released while connecting.
 */
int session_ready(pcs_client *c, pcs_error *err) __attribute__((warn_unused_result));

/*
 * Takes connection gen down: marks it broken and shuts the socket down, so a writer blocked
 * in send() and a reader blocked in poll() return at once. Returns 1 when this did it, and
 * the caller then fails every call registered on it; 0 when gen had already failed (its
 * reader seeing the EOF a writer's error caused) or is not the current connection.
 */
int session_fail(pcs_client *c, uint64_t gen);

/* Closes a failed connection once no caller is inside send() or poll() on it. */
void session_settle(pcs_client *c);

#endif
