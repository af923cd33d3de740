#include "feed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgconn.h"
#include "store.h"

struct feed {
	struct pgconn *pc;
	char *conninfo; /* the pgconn borrows it */
	const struct feed_ops *ops;
	void *arg;
	int listening;
	int was_up;
	int listened; /* LISTENs that succeeded on this session (of 2) */
};

static void set_live(struct feed *f, int up)
{
	if (f->listening == up)
		return;
	f->listening = up;
	f->ops->live(up, f->arg);
}

static int on_ready(struct pgconn *pc, void *arg)
{
	struct feed *f = arg;
	int r;

	f->listened = 0;
	r = pgconn_send(pc, "LISTEN " FEED_CHANNEL, 0, NULL, NULL, NULL, 0);
	if (r == PGCONN_GONE)
		return r;
	if (r != 0 && f->ops->log != NULL)
		f->ops->log(1, "feed_listen_failed", "LISTEN could not be sent", f->arg);
	return 0;
}

static int on_result(struct pgconn *pc, struct pg_result *res, void *arg)
{
	struct feed *f = arg;
	char state[8];
	int ok = pgconn_result_ok(res);

	snprintf(state, sizeof(state), "%s", pgconn_sqlstate(res) ? pgconn_sqlstate(res) : "none");
	pgconn_result_free(res);
	if (ok && ++f->listened == 1) {
		/* The second channel, on the same session: live only once both listen. */
		int r = pgconn_send(pc, "LISTEN " FEED_WATCH_CHANNEL, 0, NULL, NULL, NULL, 0);
		if (r == PGCONN_GONE)
			return r;
		if (r == 0)
			return 0;
		ok = 0;
	}
	if (!ok) {
		/* Not listening: the cache stays off; the next reconnection tries again. */
		if (f->ops->log != NULL)
			f->ops->log(2, "feed_listen_failed", state, f->arg);
		return 0;
	}
	if (f->ops->log != NULL)
		f->ops->log(
		    0, f->was_up ? "feed_relistening" : "feed_listening", FEED_CHANNEL, f->arg);
	f->was_up = 1;
	set_live(f, 1);
	return 0;
}

static int on_lost(struct pgconn *pc, enum pgconn_loss why, const char *detail, void *arg)
{
	struct feed *f = arg;

	(void)pc;
	if (f->ops->log != NULL)
		f->ops->log(why == PGCONN_CONNECT_FAILED ? 1 : 2, "feed_lost", detail, f->arg);
	set_live(f, 0);
	return 0;
}

static int on_notify(struct pgconn *pc, const char *channel, const char *payload, void *arg)
{
	struct feed *f = arg;

	(void)pc;
	if (strcmp(channel, FEED_CHANNEL) == 0 && f->listening)
		f->ops->changed(payload, f->arg);
	else if (strcmp(channel, FEED_WATCH_CHANNEL) == 0 && f->listening && f->ops->watch != NULL)
		f->ops->watch(payload, f->arg);
	return 0;
}

static const struct pgconn_cbs feed_cbs = { on_ready, on_result, on_lost, on_notify };

int feed_new(struct event_base *base, const char *conninfo, const struct feed_ops *ops, void *arg,
    struct feed **out, pcs_error *err)
{
	struct feed *f = calloc(1, sizeof(*f));
	size_t len = strlen(conninfo) + sizeof(" application_name=" FEED_APPLICATION_NAME);
	int r;

	*out = NULL;
	if (f == NULL || (f->conninfo = malloc(len)) == NULL) {
		free(f);
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	}
	/* A later keyword wins in libpq's key=value form. */
	snprintf(f->conninfo, len, "%s application_name=" FEED_APPLICATION_NAME, conninfo);
	f->ops = ops;
	f->arg = arg;
	if ((r = pgconn_new(base, f->conninfo, &feed_cbs, f, &f->pc, err)) != 0) {
		feed_free(f);
		return r;
	}
	*out = f;
	return 0;
}

void feed_free(struct feed *f)
{
	if (f == NULL)
		return;
	pgconn_free(f->pc);
	if (f->conninfo != NULL) {
		explicit_bzero(f->conninfo, strlen(f->conninfo));
		free(f->conninfo);
	}
	free(f);
}

int feed_listening(const struct feed *f) { return f->listening; }
