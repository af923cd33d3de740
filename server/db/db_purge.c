/*
 * db_purge: the daemon's purge of deleted secrets whose recovery window ended
 * (docs/lifecycle.md). A timer runs one statement, once at start and then every
 * purge_interval_ms; the statement destroys their values, releases their names and writes one
 * audit row per secret, all in its own transaction. Daemons sharing a database take turns
 * through an advisory lock inside it: one that finds the lock taken skips the round, so a
 * secret is never purged twice and the rounds never wait on each other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <event2/event.h>

#include "db.h"
#include "log.h"
#include "store.h"

struct db_purger {
	struct store *store;
	struct event *timer;
	struct timeval every;
	struct store_job *job; /* the round in flight, or NULL */
	char instance_id[37], uid[24], gid[24], pid[24];
};

static const char purge_sql[] = "SELECT purged, skipped FROM pcs_purge_expired($1, $2, $3, $4)";

static void on_purged(const struct store_result *res, void *arg)
{
	struct db_purger *p = arg;
	int status = store_result_status(res);
	long n;

	p->job = NULL;
	evtimer_add(p->timer, &p->every);
	if (status != 0) {
		/* The next round tries again; the message is ours or a SQLSTATE, never a value. */
		log_event(LOG_WARN, "purge_failed", "status=%s detail=%s", pcs_status_name(-status),
		    log_q(store_result_message(res)));
		return;
	}
	/* A count only: the audit rows say which secrets. */
	if (store_result_ntuples(res) == 1 &&
	    (n = strtol(store_result_value(res, 0, 0), NULL, 10)) > 0)
		log_event(LOG_INFO, "purged_expired", "secrets=%ld", n);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct db_purger *p = arg;
	const char *values[4] = { p->instance_id, p->uid, p->gid, p->pid };
	struct store_query q = { purge_sql, 4, values, NULL, NULL };
	pcs_error err;

	(void)fd;
	(void)what;
	if ((p->job = store_submit(p->store, &q, on_purged, p, &err)) == NULL) {
		log_event(LOG_WARN, "purge_failed", "detail=%s", log_q(err.message));
		evtimer_add(p->timer, &p->every);
	}
}

int db_purger_new(struct event_base *base, struct store *store, const char *instance_id,
    int64_t interval_ms, struct db_purger **out, pcs_error *err)
{
	struct db_purger *p = calloc(1, sizeof(*p));
	struct timeval now = { 0, 0 };

	*out = NULL;
	if (p == NULL || (p->timer = evtimer_new(base, on_tick, p)) == NULL) {
		free(p);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	}
	p->store = store;
	p->every.tv_sec = (time_t)(interval_ms / 1000);
	p->every.tv_usec = (suseconds_t)(interval_ms % 1000) * 1000;
	snprintf(p->instance_id, sizeof(p->instance_id), "%s", instance_id);
	snprintf(p->uid, sizeof(p->uid), "%lu", (unsigned long)geteuid());
	snprintf(p->gid, sizeof(p->gid), "%lu", (unsigned long)getegid());
	snprintf(p->pid, sizeof(p->pid), "%ld", (long)getpid());
	/* Once at start: a daemon that was down past a deadline purges without waiting. */
	evtimer_add(p->timer, &now);
	*out = p;
	return 0;
}

void db_purger_free(struct db_purger *p)
{
	if (p == NULL)
		return;
	if (p->job != NULL)
		store_cancel(p->job);
	event_free(p->timer);
	free(p);
}
