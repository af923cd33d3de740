/*
 * feed: the change feed. One PostgreSQL connection per daemon that LISTENs on pcs_change, on
 * which every change that can alter a resolve (or who may make it) is notified by its own
 * transaction (migrations/005_change_feed.sql). Its owner (the daemon's cache) learns:
 *   live(1)     the connection listens: from now on every change will be told.
 *   live(0)     it was lost (or could not listen): changes may go untold until live(1).
 *   changed(p)  a change committed; p is its payload ("s <secret id>", "a <agent id>", "p",
 *               "k", "c").
 * It also LISTENs on pcs_watch (migrations/011_watch_events.sql): what a change was, for
 * Watch streams; those payloads go to watch(p), never to changed(p). live(1) comes once both
 * LISTENs succeeded.
 * It reconnects with pgconn's backoff. Its sessions are named application_name
 * pcsecretd-feed, so an operator (and the tests) can find them in pg_stat_activity.
 */
#ifndef PCS_SERVER_FEED_H
#define PCS_SERVER_FEED_H

#include "status.h"

struct event_base;
struct feed;

struct feed_ops {
	void (*live)(int up, void *arg);
	void (*changed)(const char *payload, void *arg);
	/* Optional (NULL: not told): a pcs_watch payload, "<kind> <id> <latest> <version>". */
	void (*watch)(const char *payload, void *arg);
	/* For the daemon's log: an event name and a detail that is never a statement's text. */
	void (*log)(int level /* 0 info, 1 warn, 2 error */, const char *event, const char *detail,
	    void *arg);
};

#define FEED_CHANNEL "pcs_change"
#define FEED_WATCH_CHANNEL "pcs_watch"
#define FEED_APPLICATION_NAME "pcsecretd-feed"

/*
 * conninfo: the daemon's (key=value form, as store_conninfo_add_options makes it); the feed
 * keeps a copy with its application_name added. ops is borrowed.
 */
int feed_new(struct event_base *base, const char *conninfo, const struct feed_ops *ops, void *arg,
    struct feed **out, pcs_error *err) PCS_WUR;
void feed_free(struct feed *f);
/* 1 while listening. */
int feed_listening(const struct feed *f);

#endif
