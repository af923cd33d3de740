/*
 * The daemon's whole call path on fuzz input: a real session and conn over a socketpair on
 * a real event_base, the real dispatcher, handlers, authz, audit, principal, crypto, log and
 * config code, with a stub of the database layer (stub_store.c: db.h's typed operations, no
 * SQL) answering from the fuzz input.
 *
 * Input layout:
 *   byte 0   who the peer is: 0 = as we are (root or the daemon's own uid: bootstrap admin);
 *            otherwise another uid whose principal lookup returns an admin rule, an operator
 *            of acme and beta, a launcher of acme, agent acme/bot, a rule with an unknown
 *            role, or nothing (see stub_persona)
 *   byte 1   options: bit 0 no automatic Hello first; bit 1 write the stream in small chunks
 *            (size from bits 4-7), running the loop between them; bit 2 hang up abruptly
 *            (close, not shutdown) once everything is written; bit 3 do not wait for the
 *            automatic Hello's reply before sending the rest (as a careless client would)
 *   byte 2   L, then L bytes of store script (stub_store.h)
 *   then     records, each a kind byte and a 2-byte big-endian length, then that many bytes:
 *            kind % 3 == 0  a frame: header with the right length, then the bytes as body
 *                       1  the bytes as they are (bad headers, partial frames)
 *                       2  a Call built here: bytes[0] picks the method (by id, or by name
 *                          when bytes[0] >= 128), bytes[1] < 8 sets a deadline of that many
 *                          ms, the rest is the request
 *
 * After the stream is written the client shuts down its side; the loop runs until the
 * connection has closed and every store job has answered, then everything is freed (the
 * fuzzer's leak check sees what was not).
 *
 * Checked on every reply: it is a valid Reply; an OK reply has an OK audit row committed for
 * its call id before it left (fail-closed audit); the plaintext of the sealed value the stub
 * serves appears only in OK replies of Resolve or GetAgentEnv to an agent or a launcher, and
 * never in the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "audit.h"
#include "cache.h"
#include "config.h"
#include "conn.h"
#include "session.h"
#include "crypto.h"
#include "dispatch.h"
#include "frame.h"
#include "keyfile.h"
#include "log.h"
#include "pbwipe.h"
#include "pcsecret.pb-c.h"
#include "server.h"
#include "store.h"
#include "stub_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define COMPANY_ID "00000000-0000-4000-8000-0000000000c1"
#define SECRET_ID "00000000-0000-4000-8000-0000000000d1"
#define OTHER_UID 40001
#define OTHER_GID 40000
#define MAX_STREAM (256 * 1024)

/* Small limits so that the input reaches them. */
static const char config_text[] =
	"max_frame = 65536\n"
	"max_inflight = 4\n"
	"max_refs = 8\n"
	"max_output = 65536\n"
	"call_timeout_ms = 3600000\n"
	"idle_timeout_ms = 86400000\n"
	"read_timeout_ms = 3600000\n";

static struct config cfg;
static int verbose; /* PCS_FUZZ_VERBOSE=1: print every reply (to read what a seed does) */
static struct crypto_master *master;
static char tmpdir[256], logpath[280], plaintext[80];
/* The sealed value the stub's canned rows carry. */
static uint8_t sealed_ct[128], sealed_nonce[CRYPTO_NONCE_LEN], sealed_wrapped[CRYPTO_WRAPPED_KEY_LEN];
static char key_id[CRYPTO_KEY_ID_LEN + 1];

static void cleanup_tmp(void)
{
	unlink(logpath);
	rmdir(tmpdir);
}

static void init_once(void)
{
	struct crypto_sealed sealed = { 0 };
	struct crypto_ad ad = { COMPANY_ID, SECRET_ID, 1 };
	struct stub_sealed ss;
	char keypath[sizeof(tmpdir) + 16], id1[37], id2[37];
	const char *tmp = getenv("TMPDIR");
	pcs_error err;

	signal(SIGPIPE, SIG_IGN);
	verbose = getenv("PCS_FUZZ_VERBOSE") != NULL;
	/* run.sh points TMPDIR into its scratch directory, which it removes. */
	snprintf(tmpdir, sizeof(tmpdir), "%s/pcs-fuzz-dispatch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(keypath, sizeof(keypath), "%s/master.key", tmpdir);
	snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
	atexit(cleanup_tmp);
	if (crypto_init(&err) != 0 || keyfile_create(keypath, &err) != 0 ||
	    crypto_master_load(keypath, &master, &err) != 0 ||
	    config_load_buffer(&cfg, config_text, sizeof(config_text) - 1, &err) != 0 ||
	    dispatch_init(&err) != 0) {
		fprintf(stderr, "fuzz_dispatch: %s\n", err.message);
		abort();
	}
	unlink(keypath); /* loaded: the file is not needed any more */
	/* Every call logs at debug level, into a file searched for the plaintext after each run. */
	log_set_level(LOG_DEBUG);
	if (log_open(logpath, &err) != 0)
		abort();
	/* Random per process, so no seed can carry it by accident. */
	crypto_uuid(id1);
	crypto_uuid(id2);
	snprintf(plaintext, sizeof(plaintext), "PLAINTEXT-%s-%s", id1, id2);
	if (crypto_seal(master, &ad, (const uint8_t *)plaintext, strlen(plaintext), &sealed,
	    &err) != 0 || sealed.ciphertext_len > sizeof(sealed_ct))
		abort();
	memcpy(sealed_ct, sealed.ciphertext, sealed.ciphertext_len);
	memcpy(sealed_nonce, sealed.nonce, sizeof(sealed_nonce));
	memcpy(sealed_wrapped, sealed.wrapped_key, sizeof(sealed_wrapped));
	snprintf(key_id, sizeof(key_id), "%s", sealed.key_id);
	ss.company_id = COMPANY_ID;
	ss.secret_id = SECRET_ID;
	ss.ciphertext = sealed_ct;
	ss.ciphertext_len = sealed.ciphertext_len;
	ss.nonce = sealed_nonce;
	ss.nonce_len = sizeof(sealed_nonce);
	ss.wrapped_key = sealed_wrapped;
	ss.wrapped_key_len = sizeof(sealed_wrapped);
	ss.key_id = key_id;
	crypto_sealed_clear(&sealed);
	stub_set_sealed(&ss);
}

/* A plain loop, not memmem: the fuzzer must not learn the plaintext from the comparison. */
static int contains(const uint8_t *buf, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; n <= len && i <= len - n; i++) {
		size_t j = 0;
		while (j < n && buf[i + j] == (uint8_t)needle[j])
			j++;
		if (j == n)
			return 1;
	}
	return 0;
}

struct stream {
	uint8_t *buf;
	size_t len, cap;
};

static void put(struct stream *s, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n)
			cap *= 2;
		if ((s->buf = realloc(s->buf, cap)) == NULL)
			abort();
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void put_frame(struct stream *s, const ProtobufCMessage *msg)
{
	uint8_t *frame;
	size_t len;
	pcs_error err;

	if (frame_pack(msg, FRAME_DEFAULT_MAX, &frame, &len, &err) != 0)
		abort();
	put(s, frame, len);
	frame_free(frame, len);
}

static void put_call(struct stream *s, uint64_t call_id, uint32_t method_id, const char *method,
    uint32_t timeout_ms, const uint8_t *req, size_t req_len)
{
	Pcsecret__V1__Call call = PCSECRET__V1__CALL__INIT;

	call.call_id = call_id;
	call.method_id = method_id;
	call.method = (char *)(method ? method : "");
	call.timeout_ms = timeout_ms;
	call.request.data = (uint8_t *)(uintptr_t)req;
	call.request.len = req_len;
	put_frame(s, &call.base);
}

static void put_hello(struct stream *s)
{
	Pcsecret__V1__HelloRequest h = PCSECRET__V1__HELLO_REQUEST__INIT;
	uint8_t buf[64];
	size_t n;

	h.protocol_version = PCS_PROTOCOL_VERSION;
	h.client = (char *)"fuzz";
	n = pcsecret__v1__hello_request__pack(&h, buf);
	put_call(s, 1, 1, NULL, 0, buf, n);
}

/* Turns the records into the byte stream the client sends. */
static void build_stream(struct stream *s, const uint8_t *p, size_t n)
{
	const ProtobufCServiceDescriptor *d = &pcsecret__v1__pc_secret__descriptor;
	uint64_t next_id = 2;
	char name[128];

	while (n >= 3 && s->len < MAX_STREAM) {
		unsigned kind = p[0] % 3;
		size_t len = (size_t)p[1] << 8 | p[2];
		uint8_t hdr[FRAME_HEADER_LEN];

		p += 3;
		n -= 3;
		if (len > n)
			len = n;
		switch (kind) {
		case 0:
			frame_put_n32(hdr, (uint32_t)len);
			put(s, hdr, sizeof(hdr));
			put(s, p, len);
			break;
		case 1:
			put(s, p, len);
			break;
		default: {
			unsigned sel = len > 0 ? p[0] : 0;
			uint32_t timeout = len > 1 && p[1] < 8 ? p[1] : 0;
			const uint8_t *req = len > 2 ? p + 2 : NULL;
			size_t req_len = len > 2 ? len - 2 : 0;
			if (sel < 128) {
				put_call(s, next_id++, sel % (d->n_methods + 1), NULL, timeout, req, req_len);
			} else {
				snprintf(name, sizeof(name), "%s/%s", d->name,
				    d->methods[(sel - 128) % d->n_methods].name);
				put_call(s, next_id++, 0, name, timeout, req, req_len);
			}
			break;
		}
		}
		p += len;
		n -= len;
	}
}

struct client {
	struct server *srv;
	int fd;
	struct event *rev, *wev;
	struct stream out;
	size_t sent, chunk;
	size_t hold;              /* while waiting for Hello's reply, send only this much */
	int abrupt, write_done, eof;
	struct stream in;
	int check_plaintext;
};

/* The checks every reply must pass. */
static void check_reply(struct client *cl, const uint8_t *frame, size_t frame_len,
    const uint8_t *body, size_t body_len)
{
	Pcsecret__V1__Reply *r = pcsecret__v1__reply__unpack(&pbwipe_allocator, body_len, body);
	struct stub_audit a;
	int has_plain = cl->check_plaintext && contains(frame, frame_len, plaintext);

	if (r == NULL)
		abort(); /* the daemon sent something that is not a Reply */
	if (verbose)
		fprintf(stderr, "reply call_id=%llu status=%s len=%zu plaintext=%d msg=%s\n",
		    (unsigned long long)r->call_id, pcs_status_name((int)r->status), r->reply.len,
		    has_plain, r->message);
	if ((int)r->status < 0 || (int)r->status > PCS_UNAUTHENTICATED)
		abort();
	if (r->call_id == 0) {
		/* A connection-level error: never OK, never with a reply. */
		if (r->status == PCSECRET__V1__STATUS_CODE__OK || has_plain || r->reply.len != 0)
			abort();
	} else if (r->status == PCSECRET__V1__STATUS_CODE__OK) {
		/* Fail-closed: no OK reply leaves before its audit row committed. */
		if (!stub_take_audit(cl->srv->store, r->call_id, "OK", &a))
			abort();
		if (has_plain) {
			/* Values go only to an agent or a launcher, only through the two value rpcs. */
			if ((strcmp(a.method, "Resolve") != 0 && strcmp(a.method, "GetAgentEnv") != 0) ||
			    (strncmp(a.principal, "agent", 5) != 0 &&
			    strncmp(a.principal, "launcher", 8) != 0))
				abort();
		}
	} else if (has_plain || r->reply.len != 0) {
		abort(); /* a failed call carries no reply, let alone a value */
	}
	pcsecret__v1__reply__free_unpacked(r, &pbwipe_allocator);
	if (cl->hold != 0) {
		/* The handshake answered (either way): the rest of the stream may go. */
		cl->hold = 0;
		if (!cl->write_done)
			event_add(cl->wev, NULL);
	}
}

static void client_read(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	uint8_t buf[16384];
	uint32_t body_len;
	size_t off = 0;
	ssize_t n;
	pcs_error err;

	(void)what;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		put(&cl->in, buf, (size_t)n);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		cl->eof = 1;
		event_del(cl->rev);
	}
	if (cl->in.buf == NULL)
		return;
	while (frame_peek(cl->in.buf + off, cl->in.len - off, (uint32_t)cfg.max_frame, &body_len,
	    &err) == 1) {
		check_reply(cl, cl->in.buf + off, FRAME_HEADER_LEN + body_len,
		    cl->in.buf + off + FRAME_HEADER_LEN, body_len);
		off += FRAME_HEADER_LEN + body_len;
	}
	/* A frame the daemon sends is never empty nor over the maximum. */
	if (off < cl->in.len && frame_peek(cl->in.buf + off, cl->in.len - off,
	    (uint32_t)cfg.max_frame, &body_len, &err) < 0)
		abort();
	if (off > 0) {
		memmove(cl->in.buf, cl->in.buf + off, cl->in.len - off);
		cl->in.len -= off;
	}
}

static void client_write(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	size_t want = (cl->hold != 0 ? cl->hold : cl->out.len) - cl->sent;
	ssize_t n;

	(void)what;
	if (cl->chunk != 0 && want > cl->chunk)
		want = cl->chunk;
	if (want > 0) {
		n = write(fd, cl->out.buf + cl->sent, want);
		if (n > 0)
			cl->sent += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			cl->sent = cl->out.len; /* the daemon hung up: nothing more to say */
	}
	if (cl->hold != 0 && cl->sent >= cl->hold)
		return; /* resumed by the Hello reply */
	if (cl->sent < cl->out.len) {
		event_add(cl->wev, NULL);
		return;
	}
	cl->write_done = 1;
	if (cl->abrupt) {
		event_del(cl->rev);
		close(cl->fd);
		cl->fd = -1;
		cl->eof = 1;
	} else {
		shutdown(fd, SHUT_WR);
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The log must never hold the plaintext; it is emptied for the next run. */
static void check_log(int check_plaintext)
{
	FILE *fp = fopen(logpath, "re");
	static uint8_t buf[1 << 20];
	size_t n;

	if (fp == NULL)
		abort();
	n = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	if (verbose)
		fprintf(stderr, "%.*s", (int)n, (const char *)buf);
	if (check_plaintext && contains(buf, n, plaintext))
		abort();
	if (truncate(logpath, 0) != 0)
		abort();
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct server srv;
	struct client cl;
	struct session *session;
	struct event *tick;
	struct timeval tick_tv = { 0, 100000 };
	unsigned persona, opts;
	size_t script_len;
	int sv[2];
	uint64_t start;
	pcs_error err;

	if (!ready) {
		init_once();
		ready = 1;
	}
	if (size < 3)
		return 0;
	persona = data[0] % (STUB_NPERSONAS + 1);
	opts = data[1];
	script_len = data[2];
	if (script_len > size - 3)
		script_len = size - 3;

	memset(&srv, 0, sizeof(srv));
	memset(&cl, 0, sizeof(cl));
	if ((srv.base = event_base_new()) == NULL)
		abort();
	srv.cfg = &cfg;
	srv.master = master;
	snprintf(srv.instance_id, sizeof(srv.instance_id), "00000000-0000-4000-8000-0000000000f1");
	srv.self_uid = geteuid();
	TAILQ_INIT(&srv.conns);
	TAILQ_INIT(&srv.waitq);
	if (store_open(srv.base, "stub", 1, &srv.store, &err) != 0)
		abort();
	stub_configure(srv.store, data + 3, script_len,
	    persona == 0 ? STUB_NO_RULE : (enum stub_persona)(persona - 1));
	/* A live cache, as behind a listening feed, so identities and resolves go through it. */
	if (cache_new(1 << 20, &srv.cache, &err) != 0)
		abort();
	cache_set_live(srv.cache, 1);
	if ((srv.audit = audit_queue_new(srv.base, srv.store)) == NULL)
		abort();

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	if ((session = session_new(&srv, sv[0])) == NULL)
		abort();
	if (persona != 0) {
		/* Someone who is neither root nor the daemon: the principal comes from the rules. */
		struct conn *conn = session_conn(session);

		conn->cred.uid = OTHER_UID;
		conn->cred.gid = OTHER_GID;
		conn->cred.groups[0] = OTHER_GID;
		conn->cred.ngroups = 1;
	}

	cl.srv = &srv;
	cl.fd = sv[1];
	cl.abrupt = (opts & 4) != 0;
	cl.chunk = (opts & 2) ? 1 + (opts >> 4) : 0;
	cl.check_plaintext = !contains(data, size, plaintext);
	if (!(opts & 1)) {
		put_hello(&cl.out);
		if (!(opts & 8))
			cl.hold = cl.out.len;
	}
	build_stream(&cl.out, data + 3 + script_len, size - 3 - script_len);
	cl.rev = event_new(srv.base, cl.fd, EV_READ | EV_PERSIST, client_read, &cl);
	cl.wev = event_new(srv.base, cl.fd, EV_WRITE, client_write, &cl);
	if (cl.rev == NULL || cl.wev == NULL)
		abort();
	event_add(cl.rev, NULL);
	event_add(cl.wev, NULL);

	/* Wakes the loop when nothing else would, so a stranded call ends in the abort below. */
	if ((tick = event_new(srv.base, -1, EV_PERSIST, on_tick, NULL)) == NULL ||
	    event_add(tick, &tick_tv) != 0)
		abort();
	start = now_ms();
	/* Every call must end too: one left waiting (on an audit row, say) is a stranded call. */
	while (!(cl.write_done && cl.eof && srv.nconns == 0 && srv.calls_in_flight == 0 &&
	    stub_outstanding(srv.store) == 0)) {
		event_base_loop(srv.base, EVLOOP_ONCE);
		if (now_ms() - start > 10000) {
			fprintf(stderr, "fuzz_dispatch: the connection did not finish within 10 s "
			    "(write_done=%d eof=%d conns=%zu calls=%zu jobs=%zu)\n", cl.write_done,
			    cl.eof, srv.nconns, srv.calls_in_flight, stub_outstanding(srv.store));
			abort();
		}
	}

	event_free(tick);
	event_free(cl.rev);
	event_free(cl.wev);
	if (cl.fd >= 0)
		close(cl.fd);
	free(cl.out.buf);
	free(cl.in.buf);
	audit_queue_free(srv.audit);
	cache_free(srv.cache);
	store_close(srv.store);
	event_base_free(srv.base);
	check_log(cl.check_plaintext);
	return 0;
}
