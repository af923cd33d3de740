#include "peers.h"

#include <stdlib.h>

#include "config.h"

#define PEERS_BUCKETS 256
/*
 * How long a uid is remembered as having a principal after its last successful Hello, and how
 * many such uids without a connection are kept: only uids with a role get here, so the cap is
 * about memory, not about attackers.
 */
#define PEERS_REMEMBER_MS (60u * 60u * 1000u)
#define PEERS_REMEMBER_MAX 1024

static struct peer *buckets[PEERS_BUCKETS];
static size_t idle_entries; /* entries kept only because they are remembered */

static struct peer **slot_of(uid_t uid)
{
	return &buckets[(uint32_t)uid * 2654435761u % PEERS_BUCKETS];
}

static struct peer *find(uid_t uid)
{
	struct peer *p;

	for (p = *slot_of(uid); p != NULL; p = p->next)
		if (p->uid == uid)
			return p;
	return NULL;
}

static void unlink_free(struct peer *p)
{
	struct peer **pp;

	for (pp = slot_of(p->uid); *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	free(p);
}

/* Keeps the remembered-but-unused entries under the cap by dropping the oldest. */
static void trim_idle(void)
{
	struct peer *p, *oldest;

	while (idle_entries > PEERS_REMEMBER_MAX) {
		oldest = NULL;
		for (size_t i = 0; i < PEERS_BUCKETS; i++)
			for (p = buckets[i]; p != NULL; p = p->next)
				if (p->refs == 0 &&
				    (oldest == NULL || p->known_until_ms < oldest->known_until_ms))
					oldest = p;
		if (oldest == NULL)
			return;
		idle_entries--;
		unlink_free(oldest);
	}
}

int peers_known(const struct peer *p, uint64_t now_ms)
{
	return p->conns_principal > 0 || p->known_until_ms > now_ms;
}

int peers_admit(
    const struct config *cfg, uid_t uid, uint64_t now_ms, const char **reason, pcs_error *err)
{
	const struct peer *p = find(uid);
	size_t conns = p != NULL ? p->conns : 0;

	if (conns >= (size_t)cfg->max_conns_per_uid) {
		*reason = PEERS_REASON_PER_UID;
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "too many connections for uid %u "
		    "(max_conns_per_uid = %lld)",
		    (unsigned)uid, (long long)cfg->max_conns_per_uid);
	}
	if ((p == NULL || !peers_known(p, now_ms)) &&
	    conns >= (size_t)cfg->max_conns_unknown_per_uid) {
		*reason = PEERS_REASON_UNKNOWN;
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "too many connections for uid %u, which "
		    "has no principal (max_conns_unknown_per_uid = %lld)",
		    (unsigned)uid, (long long)cfg->max_conns_unknown_per_uid);
	}
	return 0;
}

struct peer *peers_get(uid_t uid)
{
	struct peer *p = find(uid), **slot;

	if (p == NULL) {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return NULL;
		p->uid = uid;
		TAILQ_INIT(&p->slot_wait);
		TAILQ_INIT(&p->turn_wait);
		slot = slot_of(uid);
		p->next = *slot;
		*slot = p;
	} else if (p->refs == 0) {
		idle_entries--;
	}
	p->refs++;
	return p;
}

void peers_put(struct peer *p, uint64_t now_ms)
{
	if (p == NULL || --p->refs > 0)
		return;
	if (p->known_until_ms > now_ms) {
		idle_entries++;
		trim_idle();
		return;
	}
	unlink_free(p);
}

void peers_remember(struct peer *p, uint64_t now_ms)
{
	p->known_until_ms = now_ms + PEERS_REMEMBER_MS;
}

void peers_forget(struct peer *p) { p->known_until_ms = 0; }

int peers_buffer(struct peer *p, const struct config *cfg, size_t add, pcs_error *err)
{
	if (add > (size_t)cfg->max_buffered_per_uid ||
	    p->buffered > (size_t)cfg->max_buffered_per_uid - add)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "uid %u holds %zu bytes of unfinished "
		    "input over its connections (max_buffered_per_uid = %lld)",
		    (unsigned)p->uid, p->buffered, (long long)cfg->max_buffered_per_uid);
	p->buffered += add;
	return 0;
}

void peers_unbuffer(struct peer *p, size_t bytes)
{
	p->buffered -= bytes < p->buffered ? bytes : p->buffered;
}

void peers_call_started(struct peer *p)
{
	if (++p->calls > p->calls_peak)
		p->calls_peak = p->calls;
}

void peers_call_done(struct peer *p) { p->calls--; }

int peers_calls_full(const struct peer *p, const struct config *cfg)
{
	return p->calls >= (size_t)cfg->max_calls_per_uid;
}
