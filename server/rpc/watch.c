#include "watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "config.h"
#include "log.h"
#include "pcsecret.pb-c.h"
#include "ref.h"
#include "server.h"
#include "session.h"
#include "watch_event.h"

/* Changes held for a stream whose call is still running; past it the stream must start over. */
#define HELD_MAX 64

struct watched {
	char id[PCS_UUID_LEN + 1];
	char company[PCS_NAME_MAX + 1];
	char name[PCS_NAME_MAX + 1];
};

struct watch_stream {
	TAILQ_ENTRY(watch_stream) link; /* in the hub */
	struct watch_hub *hub;
	struct session *session; /* referenced while the stream lives */
	struct session_call sc;  /* in the session's streams once open */
	uint64_t call_id;
	uint32_t uid;
	int bootstrap;
	int open;
	int stale;     /* the rules changed while pending: ends as soon as it opens */
	int feed_lost; /* the feed stopped while pending: ends as soon as it opens */
	struct watched *w;
	size_t n, cap;
	char agent_id[PCS_UUID_LEN + 1];
	char agent[2 * PCS_NAME_MAX + 2];
	struct watch_event held[HELD_MAX];
	size_t nheld;
	int overflow;
};

struct watch_hub {
	struct server *srv;
	TAILQ_HEAD(, watch_stream) streams;
	size_t n;
	int live;
	uint64_t events;
};

int watch_hub_new(struct server *srv, struct watch_hub **out, pcs_error *err)
{
	struct watch_hub *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (h == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	h->srv = srv;
	TAILQ_INIT(&h->streams);
	*out = h;
	return 0;
}

static void stream_free(struct watch_stream *w)
{
	struct watch_hub *h = w->hub;

	TAILQ_REMOVE(&h->streams, w, link);
	h->n--;
	if (w->open)
		session_stream_closed(w->session, &w->sc);
	session_unref(w->session);
	free(w->w);
	free(w);
}

void watch_hub_free(struct watch_hub *h)
{
	struct watch_stream *w, *next;

	if (h == NULL)
		return;
	for (w = TAILQ_FIRST(&h->streams); w != NULL; w = next) {
		next = TAILQ_NEXT(w, link);
		stream_free(w);
	}
	free(h);
}

size_t watch_hub_streams(const struct watch_hub *h) { return h != NULL ? h->n : 0; }
uint64_t watch_hub_events(const struct watch_hub *h) { return h != NULL ? h->events : 0; }

/* An open stream ends: its last frame says why, then it is gone. */
static void stream_end(struct watch_stream *w, int status, const char *why)
{
	log_event(LOG_DEBUG, "watch_end", "conn=%llu call_id=%llu uid=%u status=%s msg=%s",
	    session_id(w->session), (unsigned long long)w->call_id, (unsigned)w->uid,
	    pcs_status_name(status), log_q(why));
	if (w->open)
		session_send_event(w->session, w->call_id, status, why, NULL, 0);
	stream_free(w);
}

static void on_stream_gone(struct session_call *sc)
{
	struct watch_stream *w = (struct watch_stream *)(void *)((char *)sc -
	    offsetof(struct watch_stream, sc));

	stream_free(w);
}

static void send_event(
    struct watch_stream *w, const struct watch_event *ev, const char *company, const char *name)
{
	Pcsecret__V1__WatchEvent msg = PCSECRET__V1__WATCH_EVENT__INIT;
	uint8_t buf[512];
	size_t len;

	msg.kind = (char *)watch_kind_name(ev->kind);
	msg.secret_id = (char *)(ev->kind == WATCH_BINDING_CHANGED ? "" : ev->id);
	msg.company = (char *)company;
	msg.name = (char *)name;
	msg.latest = ev->latest;
	msg.version = ev->version;
	/* Bounded by its fields: a kind, a uuid, two names of at most 128 bytes, two numbers. */
	if ((len = protobuf_c_message_get_packed_size(&msg.base)) > sizeof(buf))
		return;
	protobuf_c_message_pack(&msg.base, buf);
	session_send_event(w->session, w->call_id, PCS_OK, "", buf, len);
	w->hub->events++;
}

/* An open stream hears ev. Returns 1 when the stream ended (w is gone). */
static int stream_deliver(struct watch_stream *w, const struct watch_event *ev)
{
	if (ev->kind == WATCH_BINDING_CHANGED) {
		const char *slash;

		if (w->agent_id[0] == '\0' || strcmp(ev->id, w->agent_id) != 0)
			return 0;
		slash = strchr(w->agent, '/');
		if (slash != NULL) {
			char company[PCS_NAME_MAX + 1];
			snprintf(
			    company, sizeof(company), "%.*s", (int)(slash - w->agent), w->agent);
			send_event(w, ev, company, slash + 1);
		}
		/* What it covers and who may see it may both have moved: decided again. */
		stream_end(w, PCS_ABORTED, "the agent's environment changed; watch again");
		return 1;
	}
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->w[i].id, ev->id) == 0)
			send_event(w, ev, w->w[i].company, w->w[i].name);
	return 0;
}

void watch_feed_event(struct watch_hub *h, const char *payload)
{
	struct watch_stream *w, *next;
	struct watch_event ev;

	if (h == NULL)
		return;
	if (watch_event_parse(payload, &ev) != 0) {
		/* From a newer schema, or not ours: never quoted, it came from the database. */
		log_event(LOG_WARN, "watch_payload_ignored", "len=%zu", strlen(payload));
		return;
	}
	for (w = TAILQ_FIRST(&h->streams); w != NULL; w = next) {
		next = TAILQ_NEXT(w, link);
		if (w->open) {
			(void)stream_deliver(w, &ev);
		} else if (w->nheld < HELD_MAX) {
			w->held[w->nheld++] = ev;
		} else {
			w->overflow = 1;
		}
	}
}

void watch_feed_changed(struct watch_hub *h, const char *payload)
{
	struct watch_stream *w, *next;

	if (h == NULL || strcmp(payload, "p") != 0)
		return;
	for (w = TAILQ_FIRST(&h->streams); w != NULL; w = next) {
		next = TAILQ_NEXT(w, link);
		if (w->bootstrap)
			continue;
		if (w->open)
			stream_end(w, PCS_ABORTED, "the principal rules changed; watch again");
		else
			w->stale = 1;
	}
}

void watch_feed_live(struct watch_hub *h, int up)
{
	struct watch_stream *w, *next;

	if (h == NULL)
		return;
	h->live = up;
	if (up)
		return;
	/* Changes may now go unheard: no stream may look as if nothing happened. */
	for (w = TAILQ_FIRST(&h->streams); w != NULL; w = next) {
		next = TAILQ_NEXT(w, link);
		if (w->open)
			stream_end(
			    w, PCS_UNAVAILABLE, "the daemon lost its change feed; watch again");
		else
			w->feed_lost = 1;
	}
}

int watch_stream_new(struct watch_hub *h, struct session *s, uint64_t call_id, uint32_t uid,
    int bootstrap, struct watch_stream **out, pcs_error *err)
{
	const struct config *cfg;
	struct watch_stream *w;
	size_t conn_n = 0, uid_n = 0;

	*out = NULL;
	if (h == NULL || !h->live)
		return pcs_fail(err, PCS_UNAVAILABLE,
		    "the daemon's change feed is not listening; try again later");
	cfg = h->srv->cfg;
	TAILQ_FOREACH(w, &h->streams, link)
	{
		conn_n += w->session == s;
		uid_n += w->uid == uid;
	}
	if (conn_n >= (size_t)cfg->max_watches_per_conn)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "this connection has %zu watches open, the most allowed (max_watches_per_conn)",
		    conn_n);
	if (uid_n >= (size_t)cfg->max_watches_per_uid)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED,
		    "uid %u has %zu watches open, the most allowed (max_watches_per_uid)",
		    (unsigned)uid, uid_n);
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	w->hub = h;
	w->session = s;
	session_ref(s);
	w->sc.gone = on_stream_gone;
	w->call_id = call_id;
	w->uid = uid;
	w->bootstrap = bootstrap;
	TAILQ_INSERT_TAIL(&h->streams, w, link);
	h->n++;
	*out = w;
	return 0;
}

struct watch_stream *watch_stream_find(struct watch_hub *h, struct session *s, uint64_t call_id)
{
	struct watch_stream *w;

	TAILQ_FOREACH(w, &h->streams, link)
	if (w->session == s && w->call_id == call_id && !w->open)
		return w;
	return NULL;
}

int watch_stream_add(
    struct watch_stream *w, const char *secret_id, const char *company, const char *name)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 8;
		struct watched *nw = realloc(w->w, cap * sizeof(*nw));
		if (nw == NULL)
			return -PCS_RESOURCE_EXHAUSTED;
		w->w = nw;
		w->cap = cap;
	}
	snprintf(w->w[w->n].id, sizeof(w->w[w->n].id), "%s", secret_id);
	snprintf(w->w[w->n].company, sizeof(w->w[w->n].company), "%s", company);
	snprintf(w->w[w->n].name, sizeof(w->w[w->n].name), "%s", name);
	w->n++;
	return 0;
}

void watch_stream_set_agent(
    struct watch_stream *w, const char *agent_id, const char *company, const char *agent)
{
	snprintf(w->agent_id, sizeof(w->agent_id), "%s", agent_id);
	snprintf(w->agent, sizeof(w->agent), "%s/%s", company, agent);
}

void watch_stream_opened(int status, void *arg)
{
	struct watch_stream *w = arg;

	if (status != PCS_OK) {
		stream_free(w);
		return;
	}
	w->open = 1;
	session_stream_opened(w->session, &w->sc);
	log_event(LOG_DEBUG, "watch_open", "conn=%llu call_id=%llu uid=%u secrets=%zu",
	    session_id(w->session), (unsigned long long)w->call_id, (unsigned)w->uid, w->n);
	if (w->feed_lost) {
		stream_end(w, PCS_UNAVAILABLE, "the daemon lost its change feed; watch again");
		return;
	}
	if (w->stale) {
		stream_end(w, PCS_ABORTED, "the principal rules changed; watch again");
		return;
	}
	for (size_t i = 0; i < w->nheld; i++)
		if (stream_deliver(w, &w->held[i]))
			return;
	w->nheld = 0;
	if (w->overflow)
		stream_end(w, PCS_ABORTED, "too many changes while the watch started; watch again");
}
