/*
 * The SDK's client side against a fake server thread that speaks the framing and answers
 * with scripted Replies; and pcctl, pcrun and the example program run as child processes
 * against the same fake server.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "frame.h"
#include "pbwipe.h"
#include "rpc.h"
#include "secbuf.h"
#include "status.h"

#define VALUE_LIMIT_TEST 65536

enum fake_mode {
	MODE_ECHO,         /* answer every call */
	MODE_ERROR,        /* answer with an error status */
	MODE_UNRELATED,    /* a reply for another call id first, then the right one */
	MODE_CONN_ERROR,   /* a call_id 0 error frame, then close */
	MODE_SILENT,       /* never answer */
	MODE_MID_FRAME,    /* half a frame, then close */
	MODE_CLOSE_IDLE,   /* close right after the Hello reply, as an idle timeout would */
	MODE_REVERSED,     /* Resolve values in reverse order, each echoing its reference */
	MODE_WRONG_REF,    /* a Resolve value for a reference that was not asked for */
	/*
	 * Batches: read calls until batch_target are in, or none came for batch_idle_ms; then
	 * act on the whole batch. Every call was on the wire before the first answer left.
	 */
	MODE_BATCH,            /* answer the batch in reverse order of arrival */
	MODE_BATCH_CONN_ERROR, /* a call_id 0 error frame, then close */
	MODE_BATCH_EOF,        /* close without a word */
	MODE_STALL             /* stop reading, until the mode changes; then close */
};

#define FAKE_BATCH_MAX 64
#define FAKE_LOG_MAX 1024
/* The daemon's default max_refs, which the fake enforces the same way. */
#define FAKE_MAX_REFS 256

struct fake {
	char dir[64];
	char path[128];
	int lfd;
	pthread_t thread;
	atomic_int stop;
	atomic_int mode;
	atomic_int connections;
	atomic_int hellos;
	atomic_int calls;          /* everything but Hello */
	atomic_int not_hello_first;
	atomic_int idle_closed;
	pthread_mutex_t lock;
	char last_method[64];
	uint8_t *last_req;
	size_t last_req_len;
	uint32_t last_timeout_ms;
	uint32_t hello_version;
	char hello_client[64];
	atomic_int batch_target;
	atomic_int batch_idle_ms;
	atomic_int max_batch;       /* the largest batch answered */
	atomic_int multi_batches;   /* batches of two or more, answered out of order */
	int batch_sizes[FAKE_LOG_MAX];    /* under lock */
	int nbatches;
	int resolve_sizes[FAKE_LOG_MAX];  /* refs per Resolve, in arrival order; under lock */
	int nresolves;
	/* A Resolve whose first reference is pcs:acme/late is held back (fake thread only). */
	Pcsecret__V1__Call *held;
	atomic_int held_seen;
	atomic_int release_held;    /* the held reply goes out before the next answer */
	atomic_int late_sent;
	atomic_int stalled;         /* MODE_STALL took effect */
};

static uint32_t
method_id(const char *name)
{
	const ProtobufCServiceDescriptor *svc = &pcsecret__v1__pc_secret__descriptor;
	const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(svc,
	    name);

	assert_non_null(m);
	return (uint32_t)(m - svc->methods) + 1;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0 when len bytes arrived; -1 on EOF, error, or when the test is shutting the fake down. */
static int
read_full(struct fake *f, int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	struct pollfd pfd;
	ssize_t n;

	while (len > 0) {
		if (atomic_load(&f->stop))
			return -1;
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
send_msg(int fd, const ProtobufCMessage *msg)
{
	uint8_t *frame = NULL;
	size_t len = 0;
	int r;

	if (frame_pack(msg, FRAME_DEFAULT_MAX, &frame, &len, NULL) != 0)
		return -1;
	r = write_all(fd, frame, len);
	frame_free(frame, len);
	return r;
}

static int
send_reply(int fd, uint64_t call_id, int status, const char *message,
    const ProtobufCMessage *body)
{
	Pcsecret__V1__Reply rep = PCSECRET__V1__REPLY__INIT;
	uint8_t *buf = NULL;
	int r;

	rep.call_id = call_id;
	rep.status = (Pcsecret__V1__StatusCode)status;
	rep.message = (char *)(message != NULL ? message : "");
	if (body != NULL) {
		rep.reply.len = protobuf_c_message_get_packed_size(body);
		buf = malloc(rep.reply.len + 1);
		assert_non_null(buf);
		(void)protobuf_c_message_pack(body, buf);
		rep.reply.data = buf;
	}
	r = send_msg(fd, &rep.base);
	free(buf);
	return r;
}

static int
send_hello(int fd, uint64_t call_id)
{
	Pcsecret__V1__HelloReply h = PCSECRET__V1__HELLO_REPLY__INIT;
	Pcsecret__V1__Principal p = PCSECRET__V1__PRINCIPAL__INIT;
	char *companies[] = { (char *)"acme" };

	p.role = (char *)"agent";
	p.n_companies = 1;
	p.companies = companies;
	p.agent = (char *)"acme/bot";
	p.rule = (char *)"uid 1000 (principal 7)";
	p.uid = 1000;
	p.gid = 1001;
	p.pid = 4242;
	h.protocol_version = PCS_PROTOCOL_VERSION;
	h.server_version = (char *)"fake/1.0";
	h.instance_id = (char *)"fake-instance";
	h.principal = &p;
	return send_reply(fd, call_id, PCS_OK, NULL, &h.base);
}

static void
echo_value(const Pcsecret__V1__SecretRef *ref, char *buf, size_t size)
{
	if (ref->secret_id[0] != '\0')
		(void)snprintf(buf, size, "value-of-%s", ref->secret_id);
	else
		(void)snprintf(buf, size, "value-of-%s/%s", ref->company, ref->name);
}

static int
answer_resolve(int fd, const Pcsecret__V1__Call *call, int mode)
{
	Pcsecret__V1__ResolveRequest *req;
	Pcsecret__V1__ResolveReply rep = PCSECRET__V1__RESOLVE_REPLY__INIT;
	Pcsecret__V1__ResolvedValue *vals, **valp;
	char (*text)[300], msg[600];
	size_t i;
	int r;

	req = pcsecret__v1__resolve_request__unpack(NULL, call->request.len, call->request.data);
	if (req == NULL)
		return send_reply(fd, call->call_id, PCS_INVALID_ARGUMENT, "bad request", NULL);
	/* As the daemon does: too many references, or one that does not exist, fails the call. */
	if (req->n_refs > FAKE_MAX_REFS) {
		(void)snprintf(msg, sizeof(msg), "Resolve has %zu references; the maximum is %d "
		    "(max_refs)", req->n_refs, FAKE_MAX_REFS);
		r = send_reply(fd, call->call_id, PCS_INVALID_ARGUMENT, msg, NULL);
		pcsecret__v1__resolve_request__free_unpacked(req, NULL);
		return r;
	}
	for (i = 0; i < req->n_refs; i++) {
		if (strncmp(req->refs[i]->name, "missing", 7) == 0) {
			(void)snprintf(msg, sizeof(msg), "secret pcs:%s/%s not found",
			    req->refs[i]->company, req->refs[i]->name);
			r = send_reply(fd, call->call_id, PCS_NOT_FOUND, msg, NULL);
			pcsecret__v1__resolve_request__free_unpacked(req, NULL);
			return r;
		}
	}
	vals = calloc(req->n_refs + 1, sizeof(*vals));
	valp = calloc(req->n_refs + 1, sizeof(*valp));
	text = calloc(req->n_refs + 1, sizeof(*text));
	assert_true(vals != NULL && valp != NULL && text != NULL);
	for (i = 0; i < req->n_refs; i++) {
		pcsecret__v1__resolved_value__init(&vals[i]);
		echo_value(req->refs[i], text[i], sizeof(text[i]));
		vals[i].ref = req->refs[i];
		vals[i].secret_id = (char *)"11111111-2222-3333-4444-555555555555";
		vals[i].version = req->refs[i]->version != 0 ? req->refs[i]->version : 7;
		vals[i].value.data = (uint8_t *)text[i];
		vals[i].value.len = strlen(text[i]);
		valp[i] = &vals[i];
	}
	if (mode == MODE_REVERSED) {
		for (i = 0; i < req->n_refs; i++)
			valp[i] = &vals[req->n_refs - 1 - i];
	}
	if (mode == MODE_WRONG_REF && req->n_refs > 0)
		vals[0].ref = req->refs[req->n_refs - 1];
	rep.n_values = req->n_refs;
	rep.values = valp;
	r = send_reply(fd, call->call_id, PCS_OK, NULL, &rep.base);
	free(text);
	free(valp);
	free(vals);
	pcsecret__v1__resolve_request__free_unpacked(req, NULL);
	return r;
}

static int
answer_get_env(int fd, const Pcsecret__V1__Call *call)
{
	Pcsecret__V1__GetAgentEnvReply rep = PCSECRET__V1__GET_AGENT_ENV_REPLY__INIT;
	Pcsecret__V1__EnvValue ev[2] = { PCSECRET__V1__ENV_VALUE__INIT,
	    PCSECRET__V1__ENV_VALUE__INIT };
	Pcsecret__V1__SecretRef refs[2] = { PCSECRET__V1__SECRET_REF__INIT,
	    PCSECRET__V1__SECRET_REF__INIT };
	Pcsecret__V1__EnvValue *evp[2] = { &ev[0], &ev[1] };

	refs[0].company = (char *)"acme";
	refs[0].name = (char *)"openai";
	refs[1].company = (char *)"acme";
	refs[1].name = (char *)"db";
	refs[1].version = 2;
	ev[0].env_name = (char *)"OPENAI_KEY";
	ev[0].ref = &refs[0];
	ev[0].version = 3;
	ev[0].value.data = (uint8_t *)"sk-test-openai";
	ev[0].value.len = strlen("sk-test-openai");
	ev[1].env_name = (char *)"DB_PASSWORD";
	ev[1].ref = &refs[1];
	ev[1].version = 2;
	ev[1].value.data = (uint8_t *)"db-pass";
	ev[1].value.len = strlen("db-pass");
	rep.agent = (char *)"acme/bot";
	rep.n_env = 2;
	rep.env = evp;
	return send_reply(fd, call->call_id, PCS_OK, NULL, &rep.base);
}

static int
answer_secret(int fd, const Pcsecret__V1__Call *call, int with_versions)
{
	Pcsecret__V1__DescribeSecretReply rep = PCSECRET__V1__DESCRIBE_SECRET_REPLY__INIT;
	Pcsecret__V1__SecretInfo s = PCSECRET__V1__SECRET_INFO__INIT;
	Pcsecret__V1__VersionInfo v[2] = { PCSECRET__V1__VERSION_INFO__INIT,
	    PCSECRET__V1__VERSION_INFO__INIT };
	Pcsecret__V1__VersionInfo *vp[2] = { &v[0], &v[1] };
	size_t i;

	s.id = (char *)"0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e";
	s.company = (char *)"acme";
	s.name = (char *)"key";
	s.description = (char *)"the key";
	s.current_version = 2;
	s.created_at = (char *)"2024-01-01T00:00:00Z";
	s.updated_at = (char *)"2024-01-02T00:00:00Z";
	s.created_by = (char *)"uid 0";
	for (i = 0; i < 2; i++) {
		v[i].version = (uint32_t)i + 1;
		v[i].state = (char *)(i == 0 ? "disabled" : "active");
		v[i].created_at = (char *)"2024-01-01T00:00:00Z";
		v[i].created_by = (char *)"uid 0";
		v[i].key_id = (char *)"k1";
	}
	if (with_versions) {
		s.n_versions = 2;
		s.versions = vp;
	}
	/* CreateSecretReply, UpdateSecretReply and DescribeSecretReply have the same shape. */
	rep.secret = &s;
	return send_reply(fd, call->call_id, PCS_OK, NULL, &rep.base);
}

/* Returns -1 to close the connection. */
static int
fake_answer(struct fake *f, int fd, const Pcsecret__V1__Call *call)
{
	static const uint8_t half[10] = { 0x08, 0x01 };
	uint8_t hdr[FRAME_HEADER_LEN];
	const char *name = pcsecret__v1__pc_secret__descriptor.methods[call->method_id - 1].name;

	switch (atomic_load(&f->mode)) {
	case MODE_ERROR:
		if (strcmp(name, "CreateSecret") == 0)
			return send_reply(fd, call->call_id, PCS_ALREADY_EXISTS,
			    "secret acme/key already exists", NULL);
		return send_reply(fd, call->call_id, PCS_NOT_FOUND,
		    "secret pcs:acme/missing not found", NULL);
	case MODE_UNRELATED:
		if (send_reply(fd, call->call_id + 1000, PCS_NOT_FOUND, "not yours", NULL) != 0)
			return -1;
		break;
	case MODE_CONN_ERROR:
		(void)send_reply(fd, 0, PCS_RESOURCE_EXHAUSTED,
		    "protocol violation: too many calls in flight", NULL);
		return -1;
	case MODE_SILENT:
		return 0;
	case MODE_MID_FRAME:
		frame_put_n32(hdr, 100);
		(void)write_all(fd, hdr, sizeof(hdr));
		(void)write_all(fd, half, sizeof(half));
		return -1;
	default:
		break;
	}
	if (strcmp(name, "Resolve") == 0)
		return answer_resolve(fd, call, atomic_load(&f->mode));
	if (strcmp(name, "GetAgentEnv") == 0)
		return answer_get_env(fd, call);
	if (strcmp(name, "CreateSecret") == 0 || strcmp(name, "UpdateSecret") == 0)
		return answer_secret(fd, call, 0);
	if (strcmp(name, "DescribeSecret") == 0)
		return answer_secret(fd, call, 1);
	return send_reply(fd, call->call_id, PCS_UNIMPLEMENTED, "the fake does not do that",
	    NULL);
}

/*
 * Reads one Call. wait_ms < 0: waits as long as it takes; otherwise gives up (returns 0) when
 * no byte of a call came within wait_ms. 1 with *out set, or -1 on EOF, error or shutdown.
 */
static int
fake_read_call(struct fake *f, int fd, int wait_ms, Pcsecret__V1__Call **out)
{
	Pcsecret__V1__Call *call;
	struct pollfd pfd;
	uint8_t hdr[FRAME_HEADER_LEN], *body;
	uint32_t len;

	*out = NULL;
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (wait_ms >= 0 && poll(&pfd, 1, wait_ms) == 0)
		return 0;
	while (wait_ms < 0) {
		if (atomic_load(&f->stop))
			return -1;
		if (atomic_load(&f->mode) == MODE_STALL) {
			/* Not reading: the client's sends back up until the test moves on. */
			atomic_store(&f->stalled, 1);
			while (atomic_load(&f->mode) == MODE_STALL && !atomic_load(&f->stop))
				usleep(10000);
			return -1;
		}
		if (poll(&pfd, 1, 50) > 0)
			break;
	}
	if (read_full(f, fd, hdr, sizeof(hdr)) != 0)
		return -1;
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (len == 0 || len > FRAME_DEFAULT_MAX || (body = malloc(len)) == NULL)
		return -1;
	if (read_full(f, fd, body, len) != 0) {
		free(body);
		return -1;
	}
	call = pcsecret__v1__call__unpack(NULL, len, body);
	free(body);
	if (call == NULL || call->call_id == 0 || call->method_id == 0 ||
	    call->method_id > pcsecret__v1__pc_secret__descriptor.n_methods) {
		if (call != NULL)
			pcsecret__v1__call__free_unpacked(call, NULL);
		return -1;
	}
	*out = call;
	return 1;
}

/* Bookkeeping for a call other than Hello: what the tests look at afterwards. */
static void
fake_note_call(struct fake *f, const Pcsecret__V1__Call *call)
{
	const char *name = pcsecret__v1__pc_secret__descriptor.methods[call->method_id - 1].name;
	Pcsecret__V1__ResolveRequest *req;

	pthread_mutex_lock(&f->lock);
	(void)snprintf(f->last_method, sizeof(f->last_method), "%s", name);
	free(f->last_req);
	f->last_req = malloc(call->request.len + 1);
	if (call->request.len > 0)
		memcpy(f->last_req, call->request.data, call->request.len);
	f->last_req_len = call->request.len;
	f->last_timeout_ms = call->timeout_ms;
	if (strcmp(name, "Resolve") == 0 && f->nresolves < FAKE_LOG_MAX) {
		req = pcsecret__v1__resolve_request__unpack(NULL, call->request.len,
		    call->request.data);
		f->resolve_sizes[f->nresolves++] = req != NULL ? (int)req->n_refs : -1;
		if (req != NULL)
			pcsecret__v1__resolve_request__free_unpacked(req, NULL);
	}
	pthread_mutex_unlock(&f->lock);
	atomic_fetch_add(&f->calls, 1);
}

static int
is_late(const Pcsecret__V1__Call *call)
{
	Pcsecret__V1__ResolveRequest *req;
	int late;

	if (call->method_id != method_id("Resolve"))
		return 0;
	req = pcsecret__v1__resolve_request__unpack(NULL, call->request.len, call->request.data);
	late = req != NULL && req->n_refs > 0 && strcmp(req->refs[0]->name, "late") == 0;
	if (req != NULL)
		pcsecret__v1__resolve_request__free_unpacked(req, NULL);
	return late;
}

/*
 * Answers *callp, or holds it back when it asks for pcs:acme/late (taking it: *callp becomes
 * NULL). A held call is answered, late, before the first answer after release_held is set.
 */
static int
fake_answer_or_hold(struct fake *f, int fd, Pcsecret__V1__Call **callp)
{
	int r;

	if (f->held != NULL && atomic_load(&f->release_held)) {
		r = fake_answer(f, fd, f->held);
		pcsecret__v1__call__free_unpacked(f->held, NULL);
		f->held = NULL;
		atomic_fetch_add(&f->late_sent, 1);
		if (r != 0)
			return r;
	}
	if (f->held == NULL && is_late(*callp)) {
		f->held = *callp;
		*callp = NULL;
		atomic_store(&f->held_seen, 1);
		return 0;
	}
	return fake_answer(f, fd, *callp);
}

static void
fake_hello(struct fake *f, int fd, const Pcsecret__V1__Call *call, int *r)
{
	Pcsecret__V1__HelloRequest *hello;

	hello = pcsecret__v1__hello_request__unpack(NULL, call->request.len, call->request.data);
	pthread_mutex_lock(&f->lock);
	if (hello != NULL) {
		f->hello_version = hello->protocol_version;
		(void)snprintf(f->hello_client, sizeof(f->hello_client), "%s", hello->client);
		pcsecret__v1__hello_request__free_unpacked(hello, NULL);
	}
	pthread_mutex_unlock(&f->lock);
	atomic_fetch_add(&f->hellos, 1);
	*r = send_hello(fd, call->call_id);
}

/* Reads more calls into batch[1 ..] as the batch mode says. Returns the count, or -1. */
static int
fake_collect(struct fake *f, int fd, Pcsecret__V1__Call **batch)
{
	int n = 1, target = atomic_load(&f->batch_target), idle = atomic_load(&f->batch_idle_ms);
	int got;

	if (target > FAKE_BATCH_MAX)
		target = FAKE_BATCH_MAX;
	while (n < target) {
		if ((got = fake_read_call(f, fd, idle, &batch[n])) == 0)
			break;
		if (got < 0)
			return -1;
		fake_note_call(f, batch[n]);
		n++;
	}
	pthread_mutex_lock(&f->lock);
	if (f->nbatches < FAKE_LOG_MAX)
		f->batch_sizes[f->nbatches++] = n;
	pthread_mutex_unlock(&f->lock);
	if (n > atomic_load(&f->max_batch))
		atomic_store(&f->max_batch, n);
	if (n > 1)
		atomic_fetch_add(&f->multi_batches, 1);
	return n;
}

static void
fake_serve(struct fake *f, int fd)
{
	Pcsecret__V1__Call *batch[FAKE_BATCH_MAX] = { NULL };
	int first = 1, mode, n, i, r;

	for (;;) {
		if (fake_read_call(f, fd, -1, &batch[0]) != 1)
			return;
		if (batch[0]->method_id == method_id("Hello")) {
			fake_hello(f, fd, batch[0], &r);
			pcsecret__v1__call__free_unpacked(batch[0], NULL);
			batch[0] = NULL;
			if (atomic_load(&f->mode) == MODE_CLOSE_IDLE) {
				atomic_store(&f->mode, MODE_ECHO);
				(void)shutdown(fd, SHUT_RDWR);
				atomic_store(&f->idle_closed, 1);
				return;
			}
			first = 0;
			if (r != 0)
				return;
			continue;
		}
		if (first)
			atomic_store(&f->not_hello_first, 1);
		first = 0;
		fake_note_call(f, batch[0]);
		n = 1;
		mode = atomic_load(&f->mode);
		if (mode == MODE_BATCH || mode == MODE_BATCH_CONN_ERROR || mode == MODE_BATCH_EOF)
			n = fake_collect(f, fd, batch);
		r = n < 0 ? -1 : 0;
		if (r == 0 && mode == MODE_BATCH_CONN_ERROR) {
			(void)send_reply(fd, 0, PCS_RESOURCE_EXHAUSTED,
			    "protocol violation: too many calls in flight", NULL);
			r = -1;
		} else if (r == 0 && mode == MODE_BATCH_EOF) {
			r = -1;
		}
		/* Last in, first answered. */
		for (i = n - 1; r == 0 && i >= 0; i--)
			r = fake_answer_or_hold(f, fd, &batch[i]);
		for (i = 0; i < FAKE_BATCH_MAX; i++) {
			if (batch[i] != NULL)
				pcsecret__v1__call__free_unpacked(batch[i], NULL);
			batch[i] = NULL;
		}
		if (r != 0)
			return;
	}
}

static void *
fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd pfd;
	int fd;

	while (!atomic_load(&f->stop)) {
		pfd.fd = f->lfd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if ((fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC)) == -1)
			continue;
		atomic_fetch_add(&f->connections, 1);
		fake_serve(f, fd);
		(void)close(fd);
	}
	return NULL;
}

static int
setup(void **state)
{
	struct sockaddr_un sa;
	struct fake *f;

	f = calloc(1, sizeof(*f));
	assert_non_null(f);
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/pcs-sdk-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	(void)snprintf(f->path, sizeof(f->path), "%s/fake.sock", f->dir);
	pthread_mutex_init(&f->lock, NULL);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 16), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	*state = f;
	return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
teardown(void **state)
{
	struct fake *f = *state;

	atomic_store(&f->stop, 1);
	pthread_join(f->thread, NULL);
	(void)close(f->lfd);
	(void)nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f->last_req);
	if (f->held != NULL)
		pcsecret__v1__call__free_unpacked(f->held, NULL);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

static pcs_client *
connect_fake(struct fake *f, int call_timeout_ms)
{
	pcs_options opts = { 0 };
	pcs_client *c = NULL;
	pcs_error err = { 0 };

	opts.socket_path = f->path;
	opts.call_timeout_ms = call_timeout_ms;
	if (pcs_connect(&opts, &c, &err) != 0)
		fail_msg("pcs_connect: %s: %s", pcs_status_name(err.code), err.message);
	return c;
}

/* The last request the fake saw, decoded with desc; free with protobuf_c_message_free_unpacked. */
static ProtobufCMessage *
last_request(struct fake *f, const char *method, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m;

	pthread_mutex_lock(&f->lock);
	assert_string_equal(f->last_method, method);
	m = protobuf_c_message_unpack(desc, NULL, f->last_req_len, f->last_req);
	pthread_mutex_unlock(&f->lock);
	assert_non_null(m);
	return m;
}

static void
test_hello_principal(void **state)
{
	struct fake *f = *state;
	const Pcsecret__V1__HelloReply *h;
	pcs_client *c = connect_fake(f, 0);

	assert_int_equal(atomic_load(&f->hellos), 1);
	assert_int_equal(atomic_load(&f->calls), 0);
	assert_int_equal(f->hello_version, PCS_PROTOCOL_VERSION);
	assert_string_equal(f->hello_client, "libpcsecret/" PCS_VERSION);
	assert_string_equal(pcs_client_role(c), "agent");
	assert_string_equal(pcs_client_instance(c), "fake-instance");
	h = pcs_rpc_hello(c);
	assert_non_null(h);
	assert_string_equal(h->server_version, "fake/1.0");
	assert_non_null(h->principal);
	assert_string_equal(h->principal->agent, "acme/bot");
	assert_string_equal(h->principal->rule, "uid 1000 (principal 7)");
	assert_int_equal(h->principal->n_companies, 1);
	assert_string_equal(h->principal->companies[0], "acme");
	assert_int_equal(h->principal->uid, 1000);
	assert_int_equal(h->principal->gid, 1001);
	assert_int_equal(h->principal->pid, 4242);
	assert_string_equal(pcs_rpc_socket_path(c), f->path);
	pcs_close(c);
	assert_int_equal(atomic_load(&f->not_hello_first), 0);
}

static void
test_resolve_request_and_order(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/b@3", "pcs:acme/a",
	    "pcs:0B7C4C9E-8A1F-4F61-9D1E-3F2A3B4C5D6E@latest" };
	Pcsecret__V1__ResolveRequest *req;
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 4321);
	int r;

	r = pcs_resolve(c, "acme/bot", refs, 3, &vals, &err);
	assert_int_equal(r, 0);
	assert_int_equal(atomic_load(&f->not_hello_first), 0);
	req = (Pcsecret__V1__ResolveRequest *)last_request(f, "Resolve",
	    &pcsecret__v1__resolve_request__descriptor);
	assert_int_equal(f->last_timeout_ms, 4321);
	assert_string_equal(req->agent, "acme/bot");
	assert_int_equal(req->n_refs, 3);
	assert_string_equal(req->refs[0]->company, "acme");
	assert_string_equal(req->refs[0]->name, "b");
	assert_int_equal(req->refs[0]->version, 3);
	assert_string_equal(req->refs[0]->secret_id, "");
	assert_string_equal(req->refs[1]->name, "a");
	assert_int_equal(req->refs[1]->version, 0);
	assert_string_equal(req->refs[2]->secret_id, "0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e");
	assert_string_equal(req->refs[2]->company, "");
	assert_int_equal(req->refs[2]->version, 0);
	protobuf_c_message_free_unpacked(&req->base, NULL);

	assert_string_equal(vals[0].ref, "pcs:acme/b@3");
	assert_string_equal((char *)vals[0].data, "value-of-acme/b");
	assert_int_equal(vals[0].len, strlen("value-of-acme/b"));
	assert_int_equal(vals[0].version, 3);
	assert_string_equal(vals[0].secret_id, "11111111-2222-3333-4444-555555555555");
	assert_string_equal((char *)vals[1].data, "value-of-acme/a");
	assert_int_equal(vals[1].version, 7);
	assert_string_equal(vals[2].ref, refs[2]);
	assert_string_equal((char *)vals[2].data,
	    "value-of-0b7c4c9e-8a1f-4f61-9d1e-3f2a3b4c5d6e");
	assert_int_equal(vals[2].data[vals[2].len], '\0');
	pcs_values_free(vals, 3);
	pcs_close(c);
}

/* Values are placed by the reference they echo, whatever order the reply has. */
static void
test_resolve_reply_order(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/a", "pcs:acme/b@2", "pcs:acme/a@2" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 0);

	atomic_store(&f->mode, MODE_REVERSED);
	assert_int_equal(pcs_resolve(c, NULL, refs, 3, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/a");
	assert_int_equal(vals[0].version, 7);
	assert_string_equal((char *)vals[1].data, "value-of-acme/b");
	assert_int_equal(vals[1].version, 2);
	assert_string_equal(vals[2].ref, "pcs:acme/a@2");
	assert_int_equal(vals[2].version, 2);
	pcs_values_free(vals, 3);
	vals = NULL;

	atomic_store(&f->mode, MODE_WRONG_REF);
	assert_int_equal(pcs_resolve(c, NULL, refs, 3, &vals, &err), -PCS_INTERNAL);
	assert_null(vals);
	pcs_close(c);
}

static void
test_resolve_server_error(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/ok", "pcs:acme/missing" };
	pcs_value *vals = (pcs_value *)&vals;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 0);

	atomic_store(&f->mode, MODE_ERROR);
	assert_int_equal(pcs_resolve(c, NULL, refs, 2, &vals, &err), -PCS_NOT_FOUND);
	assert_int_equal(err.code, PCS_NOT_FOUND);
	assert_string_equal(err.message, "secret pcs:acme/missing not found");
	assert_null(vals);
	/* A call-level error leaves the connection usable. */
	atomic_store(&f->mode, MODE_ECHO);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
	pcs_values_free(vals, 1);
	assert_int_equal(atomic_load(&f->connections), 1);
	pcs_close(c);
}

static void
test_unrelated_reply_skipped(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/a" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 0);

	atomic_store(&f->mode, MODE_UNRELATED);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/a");
	pcs_values_free(vals, 1);
	pcs_close(c);
}

static void
test_connection_error_frame(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/a" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 0);

	atomic_store(&f->mode, MODE_CONN_ERROR);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), -PCS_RESOURCE_EXHAUSTED);
	assert_string_equal(err.message, "protocol violation: too many calls in flight");
	assert_null(vals);
	/* The next call reconnects, with a new Hello. */
	atomic_store(&f->mode, MODE_ECHO);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/a");
	pcs_values_free(vals, 1);
	assert_int_equal(atomic_load(&f->connections), 2);
	assert_int_equal(atomic_load(&f->hellos), 2);
	assert_int_equal(atomic_load(&f->not_hello_first), 0);
	pcs_close(c);
}

static void
test_call_timeout(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/a" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 200);

	atomic_store(&f->mode, MODE_SILENT);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), -PCS_DEADLINE_EXCEEDED);
	assert_string_equal(err.message, "call Resolve timed out after 200 ms");
	/* Only that call failed: the connection stays, and the late reply is never read as ours. */
	atomic_store(&f->mode, MODE_ECHO);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/a");
	pcs_values_free(vals, 1);
	assert_int_equal(atomic_load(&f->connections), 1);
	pcs_close(c);
}

static void
test_close_mid_frame(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/a" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 0);

	atomic_store(&f->mode, MODE_MID_FRAME);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), -PCS_UNAVAILABLE);
	assert_non_null(strstr(err.message, "in the middle of a frame"));
	assert_null(vals);
	pcs_close(c);
}

static void
test_idle_close_reconnects(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/a" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c;
	int i;

	atomic_store(&f->mode, MODE_CLOSE_IDLE);
	c = connect_fake(f, 0);
	for (i = 0; i < 200 && !atomic_load(&f->idle_closed); i++)
		usleep(10000);
	assert_true(atomic_load(&f->idle_closed));
	/* Nothing of the call was sent on the dead connection, so it is retried once. */
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/a");
	pcs_values_free(vals, 1);
	assert_int_equal(atomic_load(&f->connections), 2);
	assert_int_equal(atomic_load(&f->calls), 1);
	pcs_close(c);
}

static void
test_bad_ref_no_traffic(void **state)
{
	struct fake *f = *state;
	const char *refs[] = { "pcs:acme/ok", "acme/no-prefix" };
	const char *bad_agent[] = { "pcs:acme/ok" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 0);

	assert_int_equal(pcs_resolve(c, NULL, refs, 2, &vals, &err), -PCS_INVALID_ARGUMENT);
	assert_int_equal(err.code, PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "acme/no-prefix"));
	assert_null(vals);
	assert_int_equal(pcs_resolve(c, "not-an-agent", bad_agent, 1, &vals, &err),
	    -PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "not-an-agent"));
	assert_int_equal(atomic_load(&f->calls), 0);
	pcs_close(c);
}

static void
test_missing_socket(void **state)
{
	struct fake *f = *state;
	pcs_options opts = { 0 };
	pcs_client *c = (pcs_client *)&opts;
	pcs_error err = { 0 };
	char path[160], longpath[300];

	(void)snprintf(path, sizeof(path), "%s/nope.sock", f->dir);
	opts.socket_path = path;
	assert_int_equal(pcs_connect(&opts, &c, &err), -PCS_UNAVAILABLE);
	assert_null(c);
	assert_non_null(strstr(err.message, "cannot connect to pcsecretd at "));
	assert_non_null(strstr(err.message, path));

	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	opts.socket_path = longpath;
	assert_int_equal(pcs_connect(&opts, &c, &err), -PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "the maximum is 107"));
}

static void
test_env_socket(void **state)
{
	struct fake *f = *state;
	pcs_client *c = NULL;
	pcs_error err = { 0 };

	assert_int_equal(setenv("PCSECRET_SOCKET", f->path, 1), 0);
	assert_int_equal(pcs_connect(NULL, &c, &err), 0);
	assert_int_equal(atomic_load(&f->connections), 1);
	assert_string_equal(pcs_rpc_socket_path(c), f->path);
	pcs_close(c);
	unsetenv("PCSECRET_SOCKET");
}

static void
test_get_env(void **state)
{
	struct fake *f = *state;
	Pcsecret__V1__GetAgentEnvRequest *req;
	pcs_env_entry *env = NULL;
	pcs_error err = { 0 };
	size_t n = 0;
	pcs_client *c = connect_fake(f, 0);

	assert_int_equal(pcs_get_env(c, "acme/bot", &env, &n, &err), 0);
	req = (Pcsecret__V1__GetAgentEnvRequest *)last_request(f, "GetAgentEnv",
	    &pcsecret__v1__get_agent_env_request__descriptor);
	assert_string_equal(req->company, "acme");
	assert_string_equal(req->agent, "bot");
	protobuf_c_message_free_unpacked(&req->base, NULL);
	assert_int_equal(n, 2);
	assert_string_equal(env[0].name, "OPENAI_KEY");
	assert_string_equal(env[0].ref, "pcs:acme/openai");
	assert_int_equal(env[0].version, 3);
	assert_string_equal((char *)env[0].value, "sk-test-openai");
	assert_string_equal(env[1].ref, "pcs:acme/db@2");
	assert_int_equal(env[1].len, 7);
	pcs_env_free(env, n);

	/* NULL: the caller's own environment, with empty company and agent. */
	assert_int_equal(pcs_get_env(c, NULL, &env, &n, &err), 0);
	req = (Pcsecret__V1__GetAgentEnvRequest *)last_request(f, "GetAgentEnv",
	    &pcsecret__v1__get_agent_env_request__descriptor);
	assert_string_equal(req->company, "");
	assert_string_equal(req->agent, "");
	protobuf_c_message_free_unpacked(&req->base, NULL);
	pcs_env_free(env, n);
	pcs_close(c);
}

#define NTHREADS 8
#define NCALLS 200

struct worker {
	pcs_client *c;
	int id;
	int ncalls;
	int failures;
	pcs_error first_err;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char r0[64], r1[64], want0[80], want1[80];
	const char *refs[2] = { r0, r1 };
	pcs_value *vals;
	pcs_error err;
	int i, r;

	for (i = 0; i < w->ncalls; i++) {
		(void)snprintf(r0, sizeof(r0), "pcs:acme/t%d-%d", w->id, i);
		(void)snprintf(r1, sizeof(r1), "pcs:w%d/n%d@%d", w->id, i, i + 1);
		(void)snprintf(want0, sizeof(want0), "value-of-acme/t%d-%d", w->id, i);
		(void)snprintf(want1, sizeof(want1), "value-of-w%d/n%d", w->id, i);
		vals = NULL;
		memset(&err, 0, sizeof(err));
		r = pcs_resolve(w->c, NULL, refs, 2, &vals, &err);
		if (r != 0 || strcmp((char *)vals[0].data, want0) != 0 ||
		    strcmp((char *)vals[1].data, want1) != 0 ||
		    vals[1].version != (uint32_t)i + 1 || strcmp(vals[0].ref, r0) != 0) {
			if (w->failures++ == 0)
				w->first_err = err;
		}
		pcs_values_free(vals, 2);
	}
	return NULL;
}

/*
 * 8 threads x 200 calls on one client while the fake answers each batch of calls in reverse:
 * every caller still gets its own values.
 */
static void
test_threads_pipelined(void **state)
{
	struct fake *f = *state;
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	pcs_client *c = connect_fake(f, 0);
	int i;

	atomic_store(&f->batch_target, NTHREADS);
	atomic_store(&f->batch_idle_ms, 20);
	atomic_store(&f->mode, MODE_BATCH);
	for (i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].c = c;
		w[i].id = i;
		w[i].ncalls = NCALLS;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (i = 0; i < NTHREADS; i++)
		if (w[i].failures != 0)
			fail_msg("thread %d: %d of %d calls wrong; first: %s: %s", i, w[i].failures,
			    NCALLS, pcs_status_name(w[i].first_err.code), w[i].first_err.message);
	assert_int_equal(atomic_load(&f->calls), NTHREADS * NCALLS);
	assert_int_equal(atomic_load(&f->connections), 1);
	/* Calls really were in flight together, and answered out of order. */
	assert_true(atomic_load(&f->max_batch) >= 2);
	assert_true(atomic_load(&f->multi_batches) >= 10);
	pcs_close(c);
}

struct late_call {
	pcs_client *c;
	int r;
	pcs_value *vals;
	pcs_error err;
	atomic_int done;
};

static void *
late_main(void *arg)
{
	struct late_call *l = arg;
	const char *refs[] = { "pcs:acme/late" };

	l->r = pcs_resolve(l->c, NULL, refs, 1, &l->vals, &l->err);
	atomic_store(&l->done, 1);
	return NULL;
}

/* One call times out while others on the client succeed; its late reply is dropped. */
static void
test_timeout_while_others_succeed(void **state)
{
	struct fake *f = *state;
	struct late_call l;
	pthread_t t;
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	char ref[32], want[48];
	const char *refs[] = { ref };
	pcs_client *c = connect_fake(f, 1000);
	int i;

	memset(&l, 0, sizeof(l));
	l.c = c;
	assert_int_equal(pthread_create(&t, NULL, late_main, &l), 0);
	for (i = 0; i < 500 && !atomic_load(&f->held_seen); i++)
		usleep(10000);
	assert_true(atomic_load(&f->held_seen));
	for (i = 0; i < 20; i++) {
		(void)snprintf(ref, sizeof(ref), "pcs:acme/m%d", i);
		(void)snprintf(want, sizeof(want), "value-of-acme/m%d", i);
		assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
		assert_string_equal((char *)vals[0].data, want);
		pcs_values_free(vals, 1);
		vals = NULL;
	}
	/* All of those finished while the held call was still waiting. */
	assert_int_equal(atomic_load(&l.done), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(l.r, -PCS_DEADLINE_EXCEEDED);
	assert_int_equal(l.err.code, PCS_DEADLINE_EXCEEDED);
	assert_string_equal(l.err.message, "call Resolve timed out after 1000 ms");
	assert_null(l.vals);

	/* Now the late reply goes out just before the next one; only the right one is taken. */
	atomic_store(&f->release_held, 1);
	(void)snprintf(ref, sizeof(ref), "pcs:acme/after");
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/after");
	pcs_values_free(vals, 1);
	assert_int_equal(atomic_load(&f->late_sent), 1);
	assert_int_equal(atomic_load(&f->connections), 1);
	assert_int_equal(atomic_load(&f->hellos), 1);
	pcs_close(c);
}

#define INFLIGHT 4

struct one_call {
	pcs_client *c;
	int id;
	int r;
	pcs_value *vals;
	pcs_error err;
};

static void *
one_call_main(void *arg)
{
	struct one_call *o = arg;
	char ref[32];
	const char *refs[] = { ref };

	(void)snprintf(ref, sizeof(ref), "pcs:acme/c%d", o->id);
	o->r = pcs_resolve(o->c, NULL, refs, 1, &o->vals, &o->err);
	return NULL;
}

/*
 * With four calls in flight the connection fails (an error frame with call_id 0, or a bare
 * close): all four fail with that status, and the next call reconnects with a new Hello.
 */
static void
test_connection_error_fails_in_flight(void **state)
{
	static const struct {
		int mode;
		int status;
		const char *message;  /* a part of it */
	} cases[] = {
		{ MODE_BATCH_CONN_ERROR, PCS_RESOURCE_EXHAUSTED,
		    "protocol violation: too many calls in flight" },
		{ MODE_BATCH_EOF, PCS_UNAVAILABLE, "closed the connection" },
	};
	struct fake *f = *state;
	struct one_call o[INFLIGHT];
	pthread_t t[INFLIGHT];
	const char *refs[] = { "pcs:acme/again" };
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	pcs_client *c = connect_fake(f, 5000);
	size_t k;
	int i;

	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		atomic_store(&f->batch_target, INFLIGHT);
		atomic_store(&f->batch_idle_ms, 3000);
		atomic_store(&f->mode, cases[k].mode);
		for (i = 0; i < INFLIGHT; i++) {
			memset(&o[i], 0, sizeof(o[i]));
			o[i].c = c;
			o[i].id = i;
			assert_int_equal(pthread_create(&t[i], NULL, one_call_main, &o[i]), 0);
		}
		for (i = 0; i < INFLIGHT; i++)
			assert_int_equal(pthread_join(t[i], NULL), 0);
		for (i = 0; i < INFLIGHT; i++) {
			assert_int_equal(o[i].r, -cases[k].status);
			assert_int_equal(o[i].err.code, cases[k].status);
			assert_non_null(strstr(o[i].err.message, cases[k].message));
			assert_null(o[i].vals);
		}
		/* All four were in one batch: in flight together when the connection died. */
		pthread_mutex_lock(&f->lock);
		assert_int_equal(f->batch_sizes[f->nbatches - 1], INFLIGHT);
		pthread_mutex_unlock(&f->lock);

		atomic_store(&f->mode, MODE_ECHO);
		if (pcs_resolve(c, NULL, refs, 1, &vals, &err) != 0)
			fail_msg("case %zu: %s: %s", k, pcs_status_name(err.code), err.message);
		assert_string_equal((char *)vals[0].data, "value-of-acme/again");
		pcs_values_free(vals, 1);
		vals = NULL;
		assert_int_equal(atomic_load(&f->connections), (int)k + 2);
		assert_int_equal(atomic_load(&f->hellos), (int)k + 2);
	}
	assert_int_equal(atomic_load(&f->not_hello_first), 0);
	pcs_close(c);
}

/* A call whose frame is half sent when its deadline passes takes the connection down. */
static void
test_partial_write_timeout(void **state)
{
	struct fake *f = *state;
	Pcsecret__V1__CreateSecretRequest req = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	const char *refs[] = { "pcs:acme/a" };
	ProtobufCMessage *msg = (ProtobufCMessage *)&msg;
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	uint8_t *big;
	pcs_client *c = connect_fake(f, 300);
	int i;

	/* More than any socket buffer holds, so send() must wait for a reader that never comes. */
	big = calloc(1, 900 * 1024);
	assert_non_null(big);
	req.company = (char *)"acme";
	req.name = (char *)"big";
	req.value.data = big;
	req.value.len = 900 * 1024;
	atomic_store(&f->mode, MODE_STALL);
	for (i = 0; i < 500 && !atomic_load(&f->stalled); i++)
		usleep(10000);
	assert_true(atomic_load(&f->stalled));
	assert_int_equal(pcs_rpc_call(c, "CreateSecret", &req.base, &msg, &err),
	    -PCS_DEADLINE_EXCEEDED);
	assert_null(msg);
	assert_string_equal(err.message, "call CreateSecret timed out after 300 ms");
	free(big);
	atomic_store(&f->mode, MODE_ECHO);
	assert_int_equal(pcs_resolve(c, NULL, refs, 1, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/a");
	pcs_values_free(vals, 1);
	assert_int_equal(atomic_load(&f->connections), 2);
	assert_int_equal(atomic_load(&f->hellos), 2);
	pcs_close(c);
}

/* refs[i] = "pcs:acme/rNNNN", with every seventh pinned to a version. */
static char **
make_refs(size_t n)
{
	char **refs = calloc(n, sizeof(*refs));
	unsigned i;

	assert_non_null(refs);
	assert_true(n < 10000);
	for (i = 0; i < n; i++) {
		refs[i] = malloc(32);
		assert_non_null(refs[i]);
		if (i % 7 == 3)
			(void)snprintf(refs[i], 32, "pcs:acme/r%04u@%u", i % 10000, i + 1);
		else
			(void)snprintf(refs[i], 32, "pcs:acme/r%04u", i % 10000);
	}
	return refs;
}

static void
free_refs(char **refs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(refs[i]);
	free(refs);
}

/*
 * More references than one Resolve may carry: split into chunks of at most the limit, all
 * sent (up to the window of 4) before any reply is read, values in request order whatever
 * order the replies come in.
 */
static void
test_resolve_chunked(void **state)
{
	static const struct {
		size_t nrefs;
		size_t per;        /* pcs_set_max_refs_per_call; 0: the default */
		int batch;         /* the fake waits for this many calls before answering */
		int idle_ms;
		int sizes[12];     /* refs per Resolve, in the order sent; 0 ends */
		int max_batch;
	} cases[] = {
		{ 1, 0, 1, 0, { 1 }, 1 },
		{ 256, 0, 1, 0, { 256 }, 1 },
		{ 257, 0, 2, 3000, { 256, 1 }, 2 },
		{ 1000, 0, 4, 3000, { 256, 256, 256, 232 }, 4 },
		{ 1000, 250, 4, 3000, { 250, 250, 250, 250 }, 4 },
		/* Ten chunks: never more than the window of four on the wire. */
		{ 100, 10, 8, 100, { 10, 10, 10, 10, 10, 10, 10, 10, 10, 10 }, 4 },
	};
	struct fake *f = *state;
	Pcsecret__V1__ResolveRequest *req;
	pcs_value *vals = NULL;
	pcs_error err = { 0 };
	char **refs, want[48];
	pcs_client *c = connect_fake(f, 10000);
	size_t k, i;
	int n;

	assert_int_equal(pcs_set_max_refs_per_call(NULL, 10, &err), -PCS_INVALID_ARGUMENT);
	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		refs = make_refs(cases[k].nrefs);
		pthread_mutex_lock(&f->lock);
		f->nresolves = 0;
		f->nbatches = 0;
		pthread_mutex_unlock(&f->lock);
		atomic_store(&f->max_batch, 0);
		atomic_store(&f->batch_target, cases[k].batch);
		atomic_store(&f->batch_idle_ms, cases[k].idle_ms);
		atomic_store(&f->mode, MODE_BATCH);
		assert_int_equal(pcs_set_max_refs_per_call(c, cases[k].per, &err), 0);
		if (pcs_resolve(c, "acme/bot", (const char *const *)refs, cases[k].nrefs, &vals,
		    &err) != 0)
			fail_msg("case %zu: %s: %s", k, pcs_status_name(err.code), err.message);
		for (i = 0; i < cases[k].nrefs; i++) {
			(void)snprintf(want, sizeof(want), "value-of-acme/r%04zu", i);
			assert_string_equal(vals[i].ref, refs[i]);
			assert_string_equal((char *)vals[i].data, want);
			assert_int_equal(vals[i].version, i % 7 == 3 ? i + 1 : 7);
		}
		pcs_values_free(vals, cases[k].nrefs);
		vals = NULL;
		pthread_mutex_lock(&f->lock);
		for (n = 0; n < 12 && cases[k].sizes[n] != 0; n++) {
			assert_true(n < f->nresolves);
			assert_int_equal(f->resolve_sizes[n], cases[k].sizes[n]);
		}
		assert_int_equal(f->nresolves, n);
		/* The first batch: every chunk the window allows arrived before any answer. */
		assert_int_equal(f->batch_sizes[0], cases[k].max_batch);
		pthread_mutex_unlock(&f->lock);
		assert_int_equal(atomic_load(&f->max_batch), cases[k].max_batch);
		req = (Pcsecret__V1__ResolveRequest *)last_request(f, "Resolve",
		    &pcsecret__v1__resolve_request__descriptor);
		assert_string_equal(req->agent, "acme/bot");
		protobuf_c_message_free_unpacked(&req->base, NULL);
		free_refs(refs, cases[k].nrefs);
	}
	assert_int_equal(atomic_load(&f->connections), 1);
	pcs_close(c);
}

/*
 * Values live in the SDK's locked pool (common/secbuf.h, sized in sdk/src/valbuf.c): each is
 * a slot that pcs_values_free and pcs_env_free wipe in place. A resolve of more values than
 * the pool has slots gets the rest from sodium_malloc, counted, every value still right. A
 * child after fork reads the values it inherited and may free them; the parent's stay.
 */
static void
test_values_in_locked_memory(void **state)
{
	struct fake *f = *state;
	const char *two[] = { "pcs:acme/a", "pcs:acme/b" };
	struct secbuf_stats before, st;
	pcs_value *vals = NULL;
	pcs_env_entry *env = NULL;
	pcs_error err = { 0 };
	unsigned char *held[2];
	char **refs, want[48];
	pcs_client *c = connect_fake(f, 10000);
	size_t i, n = 0, slots = 0, count, in_use = 0;
	uint64_t fell_back = 0;
	pid_t pid;
	int k, status;

	assert_int_equal(pcs_resolve(c, NULL, two, 2, &vals, &err), 0);
	secbuf_stats(&st);
	if (!st.pooled) {
		pcs_values_free(vals, 2);
		pcs_close(c);
		print_message("the pool could not be locked (RLIMIT_MEMLOCK): skipped\n");
		skip();
	}
	for (i = 0; i < 2; i++) {
		assert_int_equal(secbuf_slot_is_zero(vals[i].data), 0);
		held[i] = vals[i].data;
	}
	pcs_values_free(vals, 2);
	for (i = 0; i < 2; i++)
		assert_int_equal(secbuf_slot_is_zero(held[i]), 1);

	assert_int_equal(pcs_get_env(c, "acme/bot", &env, &n, &err), 0);
	assert_int_equal(n, 2);
	for (i = 0; i < 2; i++) {
		assert_int_equal(secbuf_slot_is_zero(env[i].value), 0);
		held[i] = env[i].value;
	}
	pcs_env_free(env, n);
	for (i = 0; i < 2; i++)
		assert_int_equal(secbuf_slot_is_zero(held[i]), 1);

	secbuf_stats(&before);
	for (k = 0; k < SECBUF_CLASSES; k++) {
		assert_int_equal(before.cls[k].in_use, 0);
		slots += before.cls[k].slots;
	}
	count = slots + 100;
	refs = make_refs(count);
	if (pcs_resolve(c, NULL, (const char *const *)refs, count, &vals, &err) != 0)
		fail_msg("%s: %s", pcs_status_name(err.code), err.message);
	for (i = 0; i < count; i++) {
		(void)snprintf(want, sizeof(want), "value-of-acme/r%04zu", i);
		assert_string_equal((char *)vals[i].data, want);
	}
	secbuf_stats(&st);
	for (k = 0; k < SECBUF_CLASSES; k++) {
		in_use += st.cls[k].in_use;
		fell_back += st.cls[k].fallbacks - before.cls[k].fallbacks;
	}
	assert_int_equal(in_use, slots);
	assert_int_equal(fell_back, 100);
	assert_int_equal(st.fallback_live, 100);
	pcs_values_free(vals, count);
	vals = NULL;
	free_refs(refs, count);
	secbuf_stats(&st);
	for (k = 0; k < SECBUF_CLASSES; k++)
		assert_int_equal(st.cls[k].in_use, 0);
	assert_int_equal(st.fallback_live, 0);

	assert_int_equal(pcs_resolve(c, NULL, two, 2, &vals, &err), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(10);
		if (strcmp((char *)vals[0].data, "value-of-acme/a") != 0 ||
		    strcmp((char *)vals[1].data, "value-of-acme/b") != 0)
			_exit(1);
		pcs_values_free(vals, 2);
		if (pcs_resolve(NULL, NULL, two, 2, &vals, &err) != -PCS_INVALID_ARGUMENT)
			_exit(2);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child that freed inherited values: status %#x", status);
	assert_string_equal((char *)vals[0].data, "value-of-acme/a");
	assert_string_equal((char *)vals[1].data, "value-of-acme/b");
	pcs_values_free(vals, 2);
	pcs_close(c);
}

/*
 * One failing chunk fails the whole resolve, with the error of the first failing chunk in
 * request order although the fake answers the last chunk first; the connection stays usable.
 */
static void
test_resolve_chunk_fails_whole(void **state)
{
	struct fake *f = *state;
	const char *one[] = { "pcs:acme/next" };
	pcs_value *vals = (pcs_value *)&vals;
	pcs_error err = { 0 };
	char **refs = make_refs(1000);
	pcs_client *c = connect_fake(f, 10000);

	(void)snprintf(refs[300], 32, "pcs:acme/missing-a");
	(void)snprintf(refs[900], 32, "pcs:acme/missing-b");
	atomic_store(&f->batch_target, 4);
	atomic_store(&f->batch_idle_ms, 3000);
	atomic_store(&f->mode, MODE_BATCH);
	assert_int_equal(pcs_resolve(c, NULL, (const char *const *)refs, 1000, &vals, &err),
	    -PCS_NOT_FOUND);
	assert_null(vals);
	assert_int_equal(err.code, PCS_NOT_FOUND);
	assert_string_equal(err.message, "secret pcs:acme/missing-a not found");
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->nresolves, 4);
	assert_int_equal(f->batch_sizes[0], 4);
	pthread_mutex_unlock(&f->lock);

	/* Without chunking the daemon would refuse the lot. */
	atomic_store(&f->batch_target, 1);
	assert_int_equal(pcs_set_max_refs_per_call(c, 1000, &err), 0);
	assert_int_equal(pcs_resolve(c, NULL, (const char *const *)refs, 1000, &vals, &err),
	    -PCS_INVALID_ARGUMENT);
	assert_string_equal(err.message, "Resolve has 1000 references; the maximum is 256 "
	    "(max_refs)");
	assert_null(vals);

	atomic_store(&f->mode, MODE_ECHO);
	assert_int_equal(pcs_resolve(c, NULL, one, 1, &vals, &err), 0);
	assert_string_equal((char *)vals[0].data, "value-of-acme/next");
	pcs_values_free(vals, 1);
	assert_int_equal(atomic_load(&f->connections), 1);
	free_refs(refs, 1000);
	pcs_close(c);
}

static void
test_shared_library_exports(void **state)
{
	const char *build = getenv("PCS_BUILD_DIR");
	char path[512];
	void *h;

	(void)state;
	if (build == NULL)
		skip();
	(void)snprintf(path, sizeof(path), "%s/sdk/libpcsecret.so.0", build);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		fail_msg("dlopen %s: %s", path, dlerror());
	assert_non_null(dlsym(h, "pcs_connect"));
	assert_non_null(dlsym(h, "pcs_resolve"));
	assert_non_null(dlsym(h, "pcs_status_name"));
	assert_non_null(dlsym(h, "pcs_env_free"));
	assert_non_null(dlsym(h, "pcs_set_max_refs_per_call"));
	assert_non_null(dlsym(h, "pcs_watch_start"));
	assert_non_null(dlsym(h, "pcs_watch_read"));
	assert_non_null(dlsym(h, "pcs_watch_close"));
	/* Internal code, including pcscommon's, stays inside the library. */
	assert_null(dlsym(h, "pcs_rpc_call"));
	assert_null(dlsym(h, "pcs_rpc_start"));
	assert_null(dlsym(h, "pcs_fail"));
	assert_null(dlsym(h, "ref_parse"));
	assert_null(dlsym(h, "frame_pack"));
	assert_null(dlsym(h, "pbwipe_allocator"));
	assert_null(dlsym(h, "pcsecret__v1__call__descriptor"));
	dlclose(h);
}

/* Child processes: pcctl, pcrun and the example, with output captured in files. */

struct run {
	int status;     /* exit code, or 128 + signal */
	char *out;
	char *err;
};

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	if (n > 0)
		assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return buf;
}

static void
write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	if (len > 0)
		assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Runs argv with stdin from stdin_path (NULL: /dev/null) and envp (NULL: ours). */
static struct run
run(struct fake *f, char *const argv[], const char *stdin_path, char *const envp[])
{
	char out_path[160], err_path[160];
	struct run res;
	pid_t pid;
	int st, fd;

	(void)snprintf(out_path, sizeof(out_path), "%s/stdout", f->dir);
	(void)snprintf(err_path, sizeof(err_path), "%s/stderr", f->dir);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if ((fd = open(stdin_path != NULL ? stdin_path : "/dev/null", O_RDONLY)) < 0 ||
		    dup2(fd, 0) < 0)
			_exit(99);
		if ((fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
		    dup2(fd, 1) < 0)
			_exit(99);
		if ((fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
		    dup2(fd, 2) < 0)
			_exit(99);
		if (envp != NULL)
			execve(argv[0], argv, envp);
		else
			execv(argv[0], argv);
		_exit(98);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	res.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	res.out = slurp(out_path);
	res.err = slurp(err_path);
	return res;
}

static void
run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static int
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		if (*s == '\n')
			n++;
	return n;
}

static void
binary(char *buf, size_t size, const char *rel)
{
	const char *build = getenv("PCS_BUILD_DIR");

	if (build == NULL) {
		skip();
		return;
	}
	(void)snprintf(buf, size, "%s/%s", build, rel);
	if (access(buf, X_OK) != 0)
		fail_msg("%s is not built", buf);
}

static void
test_pcctl_keys_init_and_errors(void **state)
{
	struct fake *f = *state;
	char pcctl[512], key[160], nope[160], content[128];
	struct stat st;
	struct run r;
	FILE *fp;

	binary(pcctl, sizeof(pcctl), "client/pcctl");
	(void)snprintf(key, sizeof(key), "%s/master.key", f->dir);
	(void)snprintf(nope, sizeof(nope), "%s/nope.sock", f->dir);

	r = run(f, (char *[]){ pcctl, (char *)"keys", (char *)"init", (char *)"--out", key,
	    NULL }, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	fp = fopen(key, "r");
	assert_non_null(fp);
	assert_non_null(fgets(content, sizeof(content), fp));
	fclose(fp);
	content[64] = '\0';
	assert_int_equal(strlen(content), 64);
	assert_null(strstr(r.out, content));
	assert_string_equal(r.err, "");
	assert_non_null(strstr(r.out, "wrote a new master key to "));
	assert_non_null(strstr(r.out, "(mode 0600)"));
	run_free(&r);

	/* Refuses to overwrite: one line on stderr, nothing on stdout. */
	r = run(f, (char *[]){ pcctl, (char *)"keys", (char *)"init", (char *)"--out", key,
	    NULL }, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_int_equal(count_lines(r.err), 1);
	assert_true(starts_with(r.err, "pcctl: ALREADY_EXISTS: "));
	run_free(&r);

	r = run(f, (char *[]){ pcctl, (char *)"--socket", nope, (char *)"status", NULL }, NULL,
	    NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_int_equal(count_lines(r.err), 1);
	assert_true(starts_with(r.err, "pcctl: UNAVAILABLE: cannot connect to pcsecretd at "));
	assert_non_null(strstr(r.err, nope));
	run_free(&r);

	r = run(f, (char *[]){ pcctl, (char *)"secret", (char *)"frobnicate", NULL }, NULL,
	    NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "usage: pcctl"));
	run_free(&r);

	r = run(f, (char *[]){ pcctl, (char *)"--help", NULL }, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "usage: pcctl"));
	run_free(&r);

	r = run(f, (char *[]){ pcctl, (char *)"secret", (char *)"show", (char *)"--help", NULL },
	    NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "secret show COMPANY/NAME"));
	run_free(&r);
}

/* The value the fake received in the last CreateSecret. */
static void
assert_created_value(struct fake *f, const void *want, size_t len)
{
	Pcsecret__V1__CreateSecretRequest *req;

	req = (Pcsecret__V1__CreateSecretRequest *)last_request(f, "CreateSecret",
	    &pcsecret__v1__create_secret_request__descriptor);
	assert_string_equal(req->company, "acme");
	assert_string_equal(req->name, "key");
	assert_int_equal(req->value.len, len);
	assert_memory_equal(req->value.data, want, len);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static struct run
create_secret(struct fake *f, const char *pcctl, const char *from_file, const char *stdin_path)
{
	if (from_file != NULL)
		return run(f, (char *[]){ (char *)pcctl, (char *)"--socket", f->path,
		    (char *)"secret", (char *)"create", (char *)"acme/key", (char *)"--from-file",
		    (char *)from_file, NULL }, stdin_path, NULL);
	return run(f, (char *[]){ (char *)pcctl, (char *)"--socket", f->path, (char *)"secret",
	    (char *)"create", (char *)"acme/key", NULL }, stdin_path, NULL);
}

static void
test_pcctl_value_input(void **state)
{
	struct fake *f = *state;
	static const char file_value[] = "line one\nline two\n";
	char pcctl[512], vfile[160], in[160], *big;
	struct run r;

	binary(pcctl, sizeof(pcctl), "client/pcctl");
	(void)snprintf(vfile, sizeof(vfile), "%s/value", f->dir);
	(void)snprintf(in, sizeof(in), "%s/stdin", f->dir);

	/* --from-file: exact bytes, trailing newline and all. */
	write_file(vfile, file_value, strlen(file_value));
	r = create_secret(f, pcctl, vfile, NULL);
	assert_int_equal(r.status, 0);
	assert_created_value(f, file_value, strlen(file_value));
	assert_null(strstr(r.out, "line one"));
	assert_non_null(strstr(r.out, "created secret acme/key"));
	run_free(&r);

	/* stdin: one "\r\n" stripped, and only one line end. */
	write_file(in, "hunter2\r\n", 9);
	r = create_secret(f, pcctl, NULL, in);
	assert_int_equal(r.status, 0);
	assert_created_value(f, "hunter2", 7);
	assert_null(strstr(r.out, "hunter2"));
	run_free(&r);
	write_file(in, "two\n\n", 5);
	r = create_secret(f, pcctl, NULL, in);
	assert_int_equal(r.status, 0);
	assert_created_value(f, "two\n", 4);
	run_free(&r);

	/* Empty: refused before anything is sent. */
	atomic_store(&f->calls, 0);
	write_file(in, "\n", 1);
	r = create_secret(f, pcctl, NULL, in);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "pcctl: INVALID_ARGUMENT: value is empty\n");
	assert_int_equal(atomic_load(&f->calls), 0);
	run_free(&r);

	/* 64 KiB is the limit, exactly. */
	big = malloc(VALUE_LIMIT_TEST + 1);
	assert_non_null(big);
	memset(big, 'v', VALUE_LIMIT_TEST + 1);
	write_file(vfile, big, VALUE_LIMIT_TEST + 1);
	r = create_secret(f, pcctl, vfile, NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.err, "pcctl: INVALID_ARGUMENT: value is 65537 bytes; the maximum "
	    "is 65536\n");
	assert_int_equal(atomic_load(&f->calls), 0);
	run_free(&r);
	write_file(vfile, big, VALUE_LIMIT_TEST);
	r = create_secret(f, pcctl, vfile, NULL);
	assert_int_equal(r.status, 0);
	assert_created_value(f, big, VALUE_LIMIT_TEST);
	run_free(&r);
	free(big);

	/* The server's error, as one line. */
	atomic_store(&f->mode, MODE_ERROR);
	write_file(in, "hunter2\n", 8);
	r = create_secret(f, pcctl, NULL, in);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_string_equal(r.err, "pcctl: ALREADY_EXISTS: secret acme/key already exists\n");
	run_free(&r);
}

static void
test_pcctl_json_show(void **state)
{
	struct fake *f = *state;
	char pcctl[512];
	json_error_t jerr;
	json_t *doc, *vs, *v;
	struct run r;

	binary(pcctl, sizeof(pcctl), "client/pcctl");
	r = run(f, (char *[]){ pcctl, (char *)"--socket", f->path, (char *)"--json",
	    (char *)"secret", (char *)"show", (char *)"acme/key", NULL }, NULL, NULL);
	assert_int_equal(r.status, 0);
	doc = json_loads(r.out, 0, &jerr);
	if (doc == NULL)
		fail_msg("not JSON: %s: %s", jerr.text, r.out);
	assert_string_equal(json_string_value(json_object_get(doc, "name")), "key");
	assert_int_equal(json_integer_value(json_object_get(doc, "current_version")), 2);
	vs = json_object_get(doc, "versions");
	assert_true(json_is_array(vs));
	assert_int_equal(json_array_size(vs), 2);
	v = json_array_get(vs, 1);
	assert_int_equal(json_integer_value(json_object_get(v, "version")), 2);
	assert_string_equal(json_string_value(json_object_get(v, "state")), "active");
	assert_non_null(json_string_value(json_object_get(v, "created_at")));
	assert_non_null(json_string_value(json_object_get(v, "created_by")));
	assert_string_equal(json_string_value(json_object_get(v, "key_id")), "k1");
	json_decref(doc);
	run_free(&r);

	r = run(f, (char *[]){ pcctl, (char *)"--socket", f->path, (char *)"whoami",
	    (char *)"--json", NULL }, NULL, NULL);
	assert_int_equal(r.status, 0);
	doc = json_loads(r.out, 0, &jerr);
	assert_non_null(doc);
	assert_string_equal(json_string_value(json_object_get(doc, "role")), "agent");
	assert_int_equal(json_integer_value(json_object_get(doc, "pid")), 4242);
	json_decref(doc);
	run_free(&r);
}

#define COUNT_SOCKETS \
	"for fd in /proc/$$/fd/*; do readlink $fd; done | grep -c socket: || true"

static void
test_pcrun(void **state)
{
	struct fake *f = *state;
	char pcrun[512], sock[200], marker[160], script[300], want[128];
	Pcsecret__V1__ResolveRequest *req;
	struct run r;

	binary(pcrun, sizeof(pcrun), "client/pcrun");
	(void)snprintf(sock, sizeof(sock), "%s", f->path);
	(void)snprintf(marker, sizeof(marker), "%s/ran", f->dir);

	/* The same script run directly gives the number of sockets the child inherits anyway. */
	r = run(f, (char *[]){ (char *)"/bin/sh", (char *)"-c", (char *)COUNT_SOCKETS, NULL },
	    NULL, (char *[]){ (char *)"PATH=/usr/bin:/bin", NULL });
	assert_int_equal(r.status, 0);
	(void)snprintf(want, sizeof(want), "value-of-acme/foo|plain|%s", r.out);
	run_free(&r);
	r = run(f, (char *[]){ pcrun, (char *)"--socket", sock, (char *)"--", (char *)"/bin/sh",
	    (char *)"-c", (char *)"printf '%s|%s|' \"$FOO\" \"$PLAIN\"; " COUNT_SOCKETS, NULL },
	    NULL, (char *[]){ (char *)"FOO=pcs:acme/foo", (char *)"PLAIN=plain",
	    (char *)"PATH=/usr/bin:/bin", NULL });
	assert_int_equal(r.status, 0);
	/* No more sockets than that: the connection to the daemon did not survive the exec. */
	assert_string_equal(r.out, want);
	assert_string_equal(r.err, "");
	run_free(&r);
	req = (Pcsecret__V1__ResolveRequest *)last_request(f, "Resolve",
	    &pcsecret__v1__resolve_request__descriptor);
	assert_int_equal(req->n_refs, 1);
	assert_string_equal(req->agent, "");
	protobuf_c_message_free_unpacked(&req->base, NULL);

	/* --agent: the agent's env, plus the references, resolved on its behalf. */
	r = run(f, (char *[]){ pcrun, (char *)"--socket", sock, (char *)"--agent",
	    (char *)"acme/bot", (char *)"--", (char *)"/bin/sh", (char *)"-c",
	    (char *)"printf '%s|%s|%s' \"$OPENAI_KEY\" \"$DB_PASSWORD\" \"$FOO\"", NULL }, NULL,
	    (char *[]){ (char *)"FOO=pcs:acme/foo@4", (char *)"OPENAI_KEY=pcs:acme/other",
	    NULL });
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "sk-test-openai|db-pass|value-of-acme/foo");
	run_free(&r);
	req = (Pcsecret__V1__ResolveRequest *)last_request(f, "Resolve",
	    &pcsecret__v1__resolve_request__descriptor);
	assert_int_equal(req->n_refs, 1);
	assert_string_equal(req->agent, "acme/bot");
	assert_int_equal(req->refs[0]->version, 4);
	protobuf_c_message_free_unpacked(&req->base, NULL);

	/*
	 * A failure execs nothing and names every failing variable and reference (the fake, as
	 * the daemon, fails a Resolve naming a "missing..." reference; pcrun then asks for each
	 * reference alone), and not the one that resolves.
	 */
	(void)snprintf(script, sizeof(script), "touch %s", marker);
	r = run(f, (char *[]){ pcrun, (char *)"--socket", sock, (char *)"--", (char *)"/bin/sh",
	    (char *)"-c", script, NULL }, NULL, (char *[]){ (char *)"A=pcs:acme/ok",
	    (char *)"MISSING=pcs:acme/missing", (char *)"MISSING2=pcs:acme/missing-2", NULL });
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "pcrun: cannot resolve MISSING=pcs:acme/missing: NOT_FOUND: "
	    "secret pcs:acme/missing not found\n"));
	assert_non_null(strstr(r.err, "pcrun: cannot resolve MISSING2=pcs:acme/missing-2: "
	    "NOT_FOUND: secret pcs:acme/missing-2 not found\n"));
	assert_null(strstr(r.err, "A="));
	assert_int_not_equal(access(marker, F_OK), 0);
	run_free(&r);

	r = run(f, (char *[]){ pcrun, (char *)"--socket", sock, (char *)"--", (char *)"/bin/sh",
	    NULL }, NULL, (char *[]){ (char *)"BAD=pcs:Acme/x", NULL });
	assert_int_equal(r.status, 1);
	assert_true(starts_with(r.err,
	    "pcrun: cannot resolve BAD=pcs:Acme/x: INVALID_ARGUMENT: "));
	run_free(&r);

	r = run(f, (char *[]){ pcrun, (char *)"--", (char *)"/nonexistent/program", NULL }, NULL,
	    (char *[]){ NULL });
	assert_int_equal(r.status, 127);
	assert_non_null(strstr(r.err, "/nonexistent/program"));
	run_free(&r);
}

static void
test_example_program(void **state)
{
	struct fake *f = *state;
	char prog[512], envsock[200];
	struct run r;

	binary(prog, sizeof(prog), "sdk/examples/resolve");
	(void)snprintf(envsock, sizeof(envsock), "PCSECRET_SOCKET=%s", f->path);
	r = run(f, (char *[]){ prog, (char *)"pcs:acme/a", (char *)"pcs:acme/b@2", NULL }, NULL,
	    (char *[]){ envsock, NULL });
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "pcs:acme/a: 15 bytes, version 7\n"
	    "pcs:acme/b@2: 15 bytes, version 2\n");
	assert_null(strstr(r.out, "value-of"));
	run_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_hello_principal),
		T(test_resolve_request_and_order),
		T(test_resolve_reply_order),
		T(test_resolve_server_error),
		T(test_unrelated_reply_skipped),
		T(test_connection_error_frame),
		T(test_call_timeout),
		T(test_close_mid_frame),
		T(test_idle_close_reconnects),
		T(test_bad_ref_no_traffic),
		T(test_missing_socket),
		T(test_env_socket),
		T(test_get_env),
		T(test_threads_pipelined),
		T(test_timeout_while_others_succeed),
		T(test_connection_error_fails_in_flight),
		T(test_partial_write_timeout),
		T(test_resolve_chunked),
		T(test_resolve_chunk_fails_whole),
		T(test_values_in_locked_memory),
		T(test_shared_library_exports),
		T(test_pcctl_keys_init_and_errors),
		T(test_pcctl_value_input),
		T(test_pcctl_json_show),
		T(test_pcrun),
		T(test_example_program),
#undef T
	};

	unsetenv("PCSECRET_SOCKET");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
