/*
 * db_heartbeat: each instance's periodic heartbeat (docs/audit.md, "Chain heads"). A timer
 * runs one statement, once at start and then every heartbeat_interval_ms: the instance's
 * last_seen, and the heads of its audit hash chains copied into its instances row
 * (pcs_instance_heartbeat, owner's rights), where a later check can compare them with the
 * chains. A failed round is logged and the next one tries again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <event2/event.h>

#include "db.h"
#include "log.h"
#include "store.h"

struct db_heartbeat {
	struct store *store;
	struct event *timer;
	struct timeval every;
	struct store_job *job; /* the round in flight, or NULL */
	char instance_id[37];
};

static const char heartbeat_sql[] = "SELECT public.pcs_instance_heartbeat($1::uuid)";

static void on_beat(const struct store_result *res, void *arg)
{
	struct db_heartbeat *h = arg;
	int status = store_result_status(res);

	h->job = NULL;
	evtimer_add(h->timer, &h->every);
	if (status != 0)
		log_event(LOG_WARN, "heartbeat_failed", "status=%s detail=%s",
		    pcs_status_name(-status), log_q(store_result_message(res)));
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct db_heartbeat *h = arg;
	const char *values[1] = { h->instance_id };
	struct store_query q = { heartbeat_sql, 1, values, NULL, NULL };
	pcs_error err;

	(void)fd;
	(void)what;
	if ((h->job = store_submit(h->store, &q, on_beat, h, &err)) == NULL) {
		log_event(LOG_WARN, "heartbeat_failed", "detail=%s", log_q(err.message));
		evtimer_add(h->timer, &h->every);
	}
}

int db_heartbeat_new(struct event_base *base, struct store *store, const char *instance_id,
    int64_t interval_ms, struct db_heartbeat **out, pcs_error *err)
{
	struct db_heartbeat *h = calloc(1, sizeof(*h));
	struct timeval now = { 0, 0 };

	*out = NULL;
	if (h == NULL || (h->timer = evtimer_new(base, on_tick, h)) == NULL) {
		free(h);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	}
	h->store = store;
	h->every.tv_sec = (time_t)(interval_ms / 1000);
	h->every.tv_usec = (suseconds_t)(interval_ms % 1000) * 1000;
	snprintf(h->instance_id, sizeof(h->instance_id), "%s", instance_id);
	evtimer_add(h->timer, &now);
	*out = h;
	return 0;
}

void db_heartbeat_free(struct db_heartbeat *h)
{
	if (h == NULL)
		return;
	if (h->job != NULL)
		store_cancel(h->job);
	event_free(h->timer);
	free(h);
}
