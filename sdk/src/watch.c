/*
 * Watch streams (pcsecret.h, "Watching"): each watch owns a connection of its own, so its
 * descriptor carries nothing but its Hello, its Watch call's reply and the stream's frames,
 * and the client's multiplexer (mux.c) never sees an event frame. Everything here runs in the
 * calling thread; a watch has no lock because one thread uses it at a time.
 *
 * Reading never blocks: transport_read_reply with a deadline already passed takes a frame
 * that is whole in the receive buffer, else reads what the socket holds, else returns
 * TRANSPORT_TIMEOUT. The receive buffer (bounded by the largest frame) and the kernel's socket
 * buffer are the watch's queue; when the caller stops reading, the daemon's output bound cuts
 * the connection, and that is reported as the end of the stream.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "frame.h"
#include "pbwipe.h"
#include "ref.h"
#include "rpc.h"
#include "status.h"
#include "transport.h"

_Static_assert(PCS_WATCH_NAME_MAX == PCS_NAME_MAX, "the public name bound is the protocol's");
_Static_assert(PCS_WATCH_ID_MAX == PCS_UUID_LEN, "the public id bound is the protocol's");

/* The watch's connection has ids of its own: its Hello, then its one Watch call. */
#define HELLO_CALL_ID 1
#define WATCH_CALL_ID 2

struct pcs_watch {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	struct transport_rbuf rbuf;
	pcs_watched_secret *secrets;
	size_t nsecrets;
	char agent[2 * PCS_NAME_MAX + 2];
	int ended;         /* the stream is over: end_err says why */
	pcs_error end_err; /* its status (code) and message */
};

static const char *const kind_names[] = {
	[PCS_WATCH_OTHER] = "other",
	[PCS_WATCH_NEW_VERSION] = "new_version",
	[PCS_WATCH_STAGED] = "staged",
	[PCS_WATCH_PROMOTED] = "promoted",
	[PCS_WATCH_ROLLBACK] = "rollback",
	[PCS_WATCH_DISABLED] = "disabled",
	[PCS_WATCH_ENABLED] = "enabled",
	[PCS_WATCH_DELETED] = "deleted",
	[PCS_WATCH_RESTORED] = "restored",
	[PCS_WATCH_PURGED] = "purged",
	[PCS_WATCH_BINDING_CHANGED] = "binding_changed",
};

#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

PCS_EXPORT const char *pcs_watch_kind_name(int kind)
{
	if (kind < 0 || (size_t)kind >= NKINDS)
		return kind_names[PCS_WATCH_OTHER];
	return kind_names[kind];
}

static int kind_from_name(const char *s)
{
	size_t i;

	for (i = 1; i < NKINDS; i++)
		if (strcmp(s, kind_names[i]) == 0)
			return (int)i;
	return PCS_WATCH_OTHER;
}

/* Copies s into dst[size] when it fits; -1 when it does not (the daemon broke its bounds). */
static int copy_bounded(char *dst, size_t size, const char *s)
{
	size_t len = strlen(s != NULL ? s : "");

	if (len >= size)
		return -1;
	memcpy(dst, s != NULL ? s : "", len + 1);
	return 0;
}

/*
 * Sends one call on the watch's connection and waits until deadline for its reply (an
 * ordinary one, not an event), opened into *msg. Nothing else is in flight on the connection
 * before the stream opens, so another frame is noise and is dropped.
 */
static int exchange(pcs_watch *w, const char *method, const ProtobufCMessage *req, uint64_t call_id,
    int64_t deadline, int timeout_ms, ProtobufCMessage **msg, pcs_error *err)
{
	const ProtobufCMethodDescriptor *m;
	Pcsecret__V1__Reply *rep = NULL;
	uint8_t *frame = NULL;
	size_t flen = 0, sent = 0;
	uint32_t method_id;
	int r;

	*msg = NULL;
	if ((m = transport_method_find(method, &method_id)) == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "the protocol has no %s method", method);
		goto out;
	}
	if ((r = transport_call_frame(
	         m, method_id, req, call_id, timeout_ms, &frame, &flen, err)) != 0)
		goto out;
	if ((r = transport_send_all(w->path, w->fd, frame, flen, deadline, &sent, err)) != 0) {
		if (r == TRANSPORT_TIMEOUT)
			r = transport_fail_timeout(method, timeout_ms, err);
		goto out;
	}
	for (;;) {
		r = transport_read_reply(&w->rbuf, w->path, w->fd, deadline, &rep, err);
		if (r == TRANSPORT_TIMEOUT)
			r = transport_fail_timeout(method, timeout_ms, err);
		if (r != 0)
			goto out;
		if (rep->call_id == 0) {
			r = transport_conn_error(rep, err);
			goto out;
		}
		if (rep->call_id == call_id && !rep->event)
			break;
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
		rep = NULL;
	}
	r = transport_reply_open(w->path, m, rep, msg, err);
	rep = NULL;
out:
	if (rep != NULL)
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
	frame_free(frame, flen);
	return r;
}

static int hello(pcs_watch *w, int64_t deadline, int timeout_ms, pcs_error *err)
{
	Pcsecret__V1__HelloRequest req = PCSECRET__V1__HELLO_REQUEST__INIT;
	ProtobufCMessage *msg = NULL;
	const Pcsecret__V1__HelloReply *rep;
	int r;

	req.protocol_version = PCS_PROTOCOL_VERSION;
	req.client = (char *)"libpcsecret/" PCS_VERSION " watch";
	if ((r = exchange(w, "Hello", &req.base, HELLO_CALL_ID, deadline, timeout_ms, &msg, err)) !=
	    0)
		goto out;
	if ((rep = (const Pcsecret__V1__HelloReply *)msg) == NULL) {
		r = pcs_fail(err, PCS_INTERNAL, "Hello returned no reply");
		goto out;
	}
	if (rep->protocol_version != PCS_PROTOCOL_VERSION) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "pcsecretd at %s speaks protocol version %u; this library speaks %d", w->path,
		    rep->protocol_version, PCS_PROTOCOL_VERSION);
		goto out;
	}
	r = 0;
out:
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
	return r;
}

/* The references as SecretRefs: "pcs:..." as pcs_resolve takes them, or "company/name". */
static int refs_parse(const char *const *refs, size_t nrefs, struct pcs_ref *parsed,
    Pcsecret__V1__SecretRef *srefs, Pcsecret__V1__SecretRef **srefp, pcs_error *err)
{
	size_t i;
	int r;

	for (i = 0; i < nrefs; i++) {
		if (refs[i] == NULL)
			return pcs_fail(err, PCS_INVALID_ARGUMENT, "reference %zu of %zu is NULL",
			    i + 1, nrefs);
		memset(&parsed[i], 0, sizeof(parsed[i]));
		if (strncmp(refs[i], PCS_REF_PREFIX, strlen(PCS_REF_PREFIX)) == 0)
			r = ref_parse(refs[i], &parsed[i], err);
		else
			r = ref_parse_path(refs[i], parsed[i].company, parsed[i].name, err);
		if (r != 0)
			return r;
		pcsecret__v1__secret_ref__init(&srefs[i]);
		srefs[i].secret_id = parsed[i].secret_id;
		srefs[i].company = parsed[i].company;
		srefs[i].name = parsed[i].name;
		srefp[i] = &srefs[i];
	}
	return 0;
}

static int secrets_take(pcs_watch *w, const Pcsecret__V1__WatchReply *rep, pcs_error *err)
{
	size_t i;

	if (rep == NULL)
		return pcs_fail(err, PCS_INTERNAL, "Watch returned no reply");
	/* One spare entry: calloc(0) may return NULL, and an empty watch is still a watch. */
	if ((w->secrets = calloc(rep->n_secrets + 1, sizeof(*w->secrets))) == NULL)
		return pcs_fail(
		    err, PCS_RESOURCE_EXHAUSTED, "out of memory for %zu secrets", rep->n_secrets);
	for (i = 0; i < rep->n_secrets; i++) {
		const Pcsecret__V1__WatchedSecret *s = rep->secrets[i];
		pcs_watched_secret *d = &w->secrets[i];

		if (copy_bounded(d->secret_id, sizeof(d->secret_id), s->secret_id) != 0 ||
		    copy_bounded(d->company, sizeof(d->company), s->company) != 0 ||
		    copy_bounded(d->name, sizeof(d->name), s->name) != 0)
			return pcs_fail(err, PCS_INTERNAL,
			    "pcsecretd named a watched secret (%zu of %zu) beyond the protocol's "
			    "bounds",
			    i + 1, rep->n_secrets);
		d->latest = s->latest;
		d->deleted = s->deleted ? 1 : 0;
	}
	w->nsecrets = rep->n_secrets;
	if (copy_bounded(w->agent, sizeof(w->agent), rep->agent) != 0)
		return pcs_fail(err, PCS_INTERNAL,
		    "pcsecretd named the watched agent beyond the "
		    "protocol's bounds");
	return 0;
}

PCS_EXPORT int pcs_watch_start(pcs_client *client, const char *const *refs, size_t nrefs,
    const char *agent, pcs_watch **out, pcs_error *err)
{
	Pcsecret__V1__WatchRequest req = PCSECRET__V1__WATCH_REQUEST__INIT;
	Pcsecret__V1__SecretRef *srefs = NULL, **srefp = NULL;
	struct pcs_ref *parsed = NULL;
	ProtobufCMessage *msg = NULL;
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	pcs_error perr;
	pcs_watch *w = NULL;
	int64_t deadline;
	int r;

	if (out != NULL)
		*out = NULL;
	if (client == NULL || out == NULL || (refs == NULL && nrefs > 0)) {
		r = pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "pcs_watch_start: a required argument is NULL");
		goto out;
	}
	/* Everything checked before any I/O: a bad reference costs no connection. */
	if (agent != NULL && agent[0] != '\0' && ref_parse_path(agent, company, name, &perr) != 0) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT, "invalid agent: %s", perr.message);
		goto out;
	}
	if ((parsed = calloc(nrefs + 1, sizeof(*parsed))) == NULL ||
	    (srefs = calloc(nrefs + 1, sizeof(*srefs))) == NULL ||
	    (srefp = calloc(nrefs + 1, sizeof(*srefp))) == NULL ||
	    (w = calloc(1, sizeof(*w))) == NULL) {
		r = pcs_fail(
		    err, PCS_RESOURCE_EXHAUSTED, "out of memory for %zu references", nrefs);
		goto out;
	}
	w->fd = -1;
	if ((r = refs_parse(refs, nrefs, parsed, srefs, srefp, err)) != 0)
		goto out;
	/* The client's settings, copied: the watch never touches the client after this. */
	memcpy(w->path, client->path, sizeof(w->path));
	deadline = transport_now_ms() + client->connect_timeout_ms;
	if ((r = transport_open(w->path, client->server_uid, deadline, client->connect_timeout_ms,
	         &w->fd, err)) != 0 ||
	    (r = hello(w, deadline, client->connect_timeout_ms, err)) != 0)
		goto out;
	req.refs = srefp;
	req.n_refs = nrefs;
	req.agent = (char *)(agent != NULL ? agent : "");
	deadline = transport_now_ms() + client->call_timeout_ms;
	if ((r = exchange(w, "Watch", &req.base, WATCH_CALL_ID, deadline, client->call_timeout_ms,
	         &msg, err)) != 0 ||
	    (r = secrets_take(w, (const Pcsecret__V1__WatchReply *)msg, err)) != 0)
		goto out;
	*out = w;
	w = NULL;
	r = 0;
out:
	if (msg != NULL)
		protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
	pcs_watch_close(w);
	free(srefp);
	free(srefs);
	free(parsed);
	return r;
}

PCS_EXPORT const pcs_watched_secret *pcs_watch_secrets(const pcs_watch *w, size_t *n)
{
	if (n != NULL)
		*n = w != NULL ? w->nsecrets : 0;
	return w != NULL ? w->secrets : NULL;
}

PCS_EXPORT const char *pcs_watch_agent(const pcs_watch *w) { return w != NULL ? w->agent : ""; }

PCS_EXPORT int pcs_watch_fd(const pcs_watch *w) { return w != NULL ? w->fd : -1; }

/*
 * The stream is over with why. The socket is shut down, not closed: the caller may be about
 * to poll its number, which must stay ours (and readable, so the end is read) until close.
 */
static void stream_end(pcs_watch *w, const pcs_error *why)
{
	w->ended = 1;
	w->end_err = *why;
	(void)shutdown(w->fd, SHUT_RDWR);
	transport_rbuf_clear(&w->rbuf);
}

/*
 * One frame off the stream: 1 when it filled *ev, 0 when it was the end or noise, or ended
 * the stream because it was malformed.
 */
static int frame_take(pcs_watch *w, Pcsecret__V1__Reply *rep, pcs_watch_event *ev)
{
	static const uint8_t empty[1];
	Pcsecret__V1__WatchEvent *e;
	pcs_error why;
	int got = 0;

	if (rep->call_id == 0) {
		/* The daemon is about to close the connection (shutting down, a limit). */
		(void)transport_conn_error(rep, &why);
		stream_end(w, &why);
		return 0;
	}
	if (rep->call_id != WATCH_CALL_ID || !rep->event)
		return 0;
	if (rep->status != PCSECRET__V1__STATUS_CODE__OK) {
		(void)transport_conn_error(rep, &why);
		stream_end(w, &why);
		return 0;
	}
	e = pcsecret__v1__watch_event__unpack(
	    &pbwipe_allocator, rep->reply.len, rep->reply.data != NULL ? rep->reply.data : empty);
	memset(ev, 0, sizeof(*ev));
	if (e == NULL || copy_bounded(ev->kind_name, sizeof(ev->kind_name), e->kind) != 0 ||
	    copy_bounded(ev->secret_id, sizeof(ev->secret_id), e->secret_id) != 0 ||
	    copy_bounded(ev->company, sizeof(ev->company), e->company) != 0 ||
	    copy_bounded(ev->name, sizeof(ev->name), e->name) != 0) {
		(void)pcs_fail(&why, PCS_INTERNAL,
		    "pcsecretd at %s sent a watch event that is not a valid WatchEvent", w->path);
		stream_end(w, &why);
		goto out;
	}
	ev->kind = kind_from_name(ev->kind_name);
	ev->latest = e->latest;
	ev->version = e->version;
	got = 1;
out:
	if (e != NULL)
		protobuf_c_message_free_unpacked(&e->base, &pbwipe_allocator);
	return got;
}

PCS_EXPORT int pcs_watch_read(
    pcs_watch *w, pcs_watch_event *events, size_t max, size_t *n, pcs_error *err)
{
	Pcsecret__V1__Reply *rep;
	pcs_error rerr;
	int r;

	if (n != NULL)
		*n = 0;
	if (w == NULL || n == NULL || (events == NULL && max > 0))
		return pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "pcs_watch_read: a required argument is NULL");
	while (!w->ended && *n < max) {
		/* A deadline already passed: whatever is whole now, never a wait. */
		r = transport_read_reply(&w->rbuf, w->path, w->fd, 0, &rep, &rerr);
		if (r == TRANSPORT_TIMEOUT)
			break;
		if (r < 0) {
			stream_end(w, &rerr);
			break;
		}
		if (frame_take(w, rep, &events[*n]))
			(*n)++;
		protobuf_c_message_free_unpacked(&rep->base, &pbwipe_allocator);
	}
	if (*n > 0 || !w->ended)
		return 0;
	if (err != NULL)
		*err = w->end_err;
	return -w->end_err.code;
}

PCS_EXPORT int pcs_watch_wait(
    pcs_watch *w, int timeout_ms, pcs_watch_event *events, size_t max, size_t *n, pcs_error *err)
{
	struct pollfd pfd;
	int64_t deadline = timeout_ms >= 0 ? transport_now_ms() + timeout_ms : 0;
	int r, p;

	for (;;) {
		if ((r = pcs_watch_read(w, events, max, n, err)) != 0 || *n > 0 || max == 0)
			return r;
		if (timeout_ms >= 0 && transport_remaining_ms(deadline) == 0)
			return 0;
		pfd.fd = w->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		p = poll(&pfd, 1, timeout_ms >= 0 ? transport_remaining_ms(deadline) : -1);
		if (p < 0 && errno != EINTR)
			return pcs_fail(
			    err, PCS_INTERNAL, "cannot wait for the watch's descriptor");
	}
}

PCS_EXPORT void pcs_watch_close(pcs_watch *w)
{
	if (w == NULL)
		return;
	if (w->fd != -1)
		(void)close(w->fd);
	transport_rbuf_free(&w->rbuf);
	free(w->secrets);
	free(w);
}
