/*
 * The client side of Watch against the real daemon: the SDK's pcs_watch and
 * `pcctl secret watch`.
 *  - SDK: the first reply's state; poll() on pcs_watch_fd becomes readable when a change
 *    commits; each kind (new_version, staged, promoted, rollback, disabled, enabled, deleted,
 *    restored, purged) with its version and latest through pcs_watch_wait; ordinary calls on
 *    the same client between events; an agent's environment watched, whose binding change
 *    is binding_changed then the end ABORTED; a daemon that
 *    stops ends it UNAVAILABLE; refusals; 1,000 start/close cycles leave no descriptor (and,
 *    under ASan, no leak).
 *  - pcctl: `pcctl --json secret watch acme/k` as a subprocess sees updates, rollback,
 *    disable-version and delete made by other pcctl runs, one JSON line each within seconds,
 *    and exits 0 on SIGINT; text lines and --count; a binding change makes it watch again; a
 *    stopped daemon makes it exit 1 naming UNAVAILABLE.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "it.h"
#include "itcli.h"
#include "itconn.h"
#include "pbwipe.h"
#include "pcsecret.h"
#include "rpc.h"
#include "wire.h"

#define DB "it_watch_client"

static struct it_daemon D;
static char conninfo[512];
static struct itconn_env E;
static struct itconn adm;

/* ---- the world: acme/k (the SDK's), acme/p (pcctl's), acme/gone (deleted) ---- */

static void create_secret(const char *name, const char *value)
{
	Pcsecret__V1__CreateSecretRequest q = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)(uintptr_t)value;
	q.value.len = strlen(value);
	itconn_admin_ok(&adm, "CreateSecret", &q.base);
}

static void update(const char *name, const char *value, int no_promote)
{
	Pcsecret__V1__UpdateSecretRequest q = PCSECRET__V1__UPDATE_SECRET_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.value.data = (uint8_t *)(uintptr_t)value;
	q.value.len = strlen(value);
	q.no_promote = no_promote;
	itconn_admin_ok(&adm, "UpdateSecret", &q.base);
}

static void version_action(const char *name, const char *method, uint32_t version)
{
	Pcsecret__V1__SecretVersionRequest q = PCSECRET__V1__SECRET_VERSION_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	q.version = version;
	itconn_admin_ok(&adm, method, &q.base);
}

static void name_action(const char *name, const char *method)
{
	Pcsecret__V1__SecretNameRequest q = PCSECRET__V1__SECRET_NAME_REQUEST__INIT;

	q.company = (char *)"acme";
	q.name = (char *)name;
	itconn_admin_ok(&adm, method, &q.base);
}

static void set_env(const char *env, const char *name)
{
	Pcsecret__V1__SetAgentEnvRequest q = PCSECRET__V1__SET_AGENT_ENV_REQUEST__INIT;
	Pcsecret__V1__SecretRef ref = PCSECRET__V1__SECRET_REF__INIT;

	ref.company = (char *)"acme";
	ref.name = (char *)name;
	q.company = (char *)"acme";
	q.agent = (char *)"bot";
	q.env_name = (char *)env;
	q.ref = &ref;
	itconn_admin_ok(&adm, "SetAgentEnv", &q.base);
}

/* ---- the SDK ---- */

static pcs_client *client_to(const char *socket)
{
	pcs_options o = { 0 };
	pcs_client *c = NULL;
	pcs_error err = { 0 };

	o.socket_path = socket;
	if (pcs_connect(&o, &c, &err) != 0)
		fail_msg("pcs_connect: %s: %s", pcs_status_name(err.code), err.message);
	return c;
}

/*
 * pcs_watch_start on c; a daemon just started may not listen to its feed yet (UNAVAILABLE):
 * tried again for a while. Returns the status; *out the watch on success.
 */
static int start(pcs_client *c, const char *const *refs, size_t n, const char *agent,
    pcs_watch **out, pcs_error *err)
{
	int r;

	for (int tries = 0;; tries++) {
		r = pcs_watch_start(c, refs, n, agent, out, err);
		if (r != -PCS_UNAVAILABLE || tries == 50)
			return r;
		wire_sleep_ms(100);
	}
}

/* The next event within 5 s through pcs_watch_wait, which must be kind/version/latest. */
static void expect(
    pcs_watch *w, const char *name, int kind, uint32_t version, uint32_t latest, const char *when)
{
	pcs_watch_event ev;
	pcs_error err = { 0 };
	size_t n = 0;
	int r = pcs_watch_wait(w, 5000, &ev, 1, &n, &err);

	if (r != 0)
		fail_msg(
		    "%s: the stream ended: %s: %s", when, pcs_status_name(err.code), err.message);
	if (n != 1)
		fail_msg("%s: no event within 5 s, want %s", when, pcs_watch_kind_name(kind));
	if (ev.kind != kind || strcmp(ev.kind_name, pcs_watch_kind_name(kind)) != 0 ||
	    ev.version != version || ev.latest != latest || strcmp(ev.company, "acme") != 0 ||
	    strcmp(ev.name, name) != 0 || strlen(ev.secret_id) != 36)
		fail_msg("%s: got %s %s/%s version %u latest %u, want %s acme/%s version %u "
		         "latest %u",
		    when, ev.kind_name, ev.company, ev.name, ev.version, ev.latest,
		    pcs_watch_kind_name(kind), name, version, latest);
}

/* An ordinary call on the watching client: DescribeSecret's latest of acme/name. */
static uint32_t describe_latest(pcs_client *c, const char *name)
{
	Pcsecret__V1__DescribeSecretRequest q = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	ProtobufCMessage *msg = NULL;
	pcs_error err = { 0 };
	uint32_t latest;

	q.company = (char *)"acme";
	q.name = (char *)name;
	if (pcs_rpc_call(c, "DescribeSecret", &q.base, &msg, &err) != 0)
		fail_msg("DescribeSecret: %s: %s", pcs_status_name(err.code), err.message);
	assert_non_null(((Pcsecret__V1__DescribeSecretReply *)msg)->secret);
	latest = ((Pcsecret__V1__DescribeSecretReply *)msg)->secret->current_version;
	protobuf_c_message_free_unpacked(msg, &pbwipe_allocator);
	return latest;
}

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN) != 0;
}

static void test_sdk_events_each_kind(void **state)
{
	static const char *const refs[] = { "pcs:acme/k" };
	const pcs_watched_secret *s;
	pcs_watch_event evs[4];
	pcs_client *c = client_to(D.socket);
	pcs_watch *w = NULL;
	pcs_error err = { 0 };
	size_t n = 9, ns = 0;
	uint32_t v;

	(void)state;
	if (start(c, refs, 1, NULL, &w, &err) != 0)
		fail_msg("pcs_watch_start: %s: %s", pcs_status_name(err.code), err.message);
	s = pcs_watch_secrets(w, &ns);
	assert_int_equal(ns, 1);
	assert_string_equal(s[0].company, "acme");
	assert_string_equal(s[0].name, "k");
	assert_int_equal(s[0].deleted, 0);
	assert_string_equal(pcs_watch_agent(w), "");
	v = s[0].latest;
	assert_int_equal(v, describe_latest(c, "k"));
	/* Nothing pending: not readable, and a read returns nothing without blocking. */
	assert_true(pcs_watch_fd(w) >= 0);
	assert_false(readable(pcs_watch_fd(w), 200));
	assert_int_equal(pcs_watch_read(w, evs, 4, &n, &err), 0);
	assert_int_equal(n, 0);

	/* An update: poll() says readable, pcs_watch_read has the event. */
	update("k", "v-next", 0);
	assert_true(readable(pcs_watch_fd(w), 5000));
	/* Readable may mean part of the frame so far: read until it is whole. */
	for (int i = 0; i < 50; i++) {
		assert_int_equal(pcs_watch_read(w, evs, 4, &n, &err), 0);
		if (n > 0)
			break;
		(void)readable(pcs_watch_fd(w), 100);
	}
	assert_int_equal(n, 1);
	assert_int_equal(evs[0].kind, PCS_WATCH_NEW_VERSION);
	assert_int_equal(evs[0].version, v + 1);
	assert_int_equal(evs[0].latest, v + 1);
	assert_string_equal(evs[0].secret_id, s[0].secret_id);
	v++;
	/* An ordinary call on the same client while the watch is open. */
	assert_int_equal(describe_latest(c, "k"), v);

	update("k", "v-staged", 1);
	expect(w, "k", PCS_WATCH_STAGED, v + 1, v, "update --no-promote");
	version_action("k", "PromoteSecret", v + 1);
	expect(w, "k", PCS_WATCH_PROMOTED, v + 1, v + 1, "promote");
	version_action("k", "RollbackSecret", v);
	expect(w, "k", PCS_WATCH_ROLLBACK, v, v, "rollback");
	assert_int_equal(describe_latest(c, "k"), v);
	version_action("k", "DisableSecretVersion", v + 1);
	expect(w, "k", PCS_WATCH_DISABLED, v + 1, v, "disable-version");
	version_action("k", "EnableSecretVersion", v + 1);
	expect(w, "k", PCS_WATCH_ENABLED, v + 1, v, "enable-version");
	{
		Pcsecret__V1__DeleteSecretRequest q = PCSECRET__V1__DELETE_SECRET_REQUEST__INIT;
		q.company = (char *)"acme";
		q.name = (char *)"k";
		q.force = 1;
		itconn_admin_ok(&adm, "DeleteSecret", &q.base);
	}
	expect(w, "k", PCS_WATCH_DELETED, 0, v, "delete");
	name_action("k", "RestoreSecret");
	expect(w, "k", PCS_WATCH_RESTORED, 0, v, "restore");
	assert_int_equal(describe_latest(c, "k"), v);
	/* Several events in one read, in commit order. */
	update("k", "a", 0);
	update("k", "b", 0);
	update("k", "c", 0);
	n = 0;
	for (size_t got = 0; got < 3;) {
		assert_int_equal(pcs_watch_wait(w, 5000, evs + got, 4 - got, &n, &err), 0);
		assert_true(n > 0);
		got += n;
	}
	/* Versions v+1 (enabled again) exists: the new ones come after it. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(evs[i].kind, PCS_WATCH_NEW_VERSION);
		assert_int_equal(evs[i].latest, v + 2 + (uint32_t)i);
		assert_int_equal(evs[i].version, v + 2 + (uint32_t)i);
	}
	v += 4;
	name_action("k", "PurgeSecret");
	expect(w, "k", PCS_WATCH_PURGED, 0, v, "purge");
	/* Nothing more: a wait runs out with no event and the stream still open. */
	assert_int_equal(pcs_watch_wait(w, 300, evs, 4, &n, &err), 0);
	assert_int_equal(n, 0);
	pcs_watch_close(w);
	pcs_close(c);
}

static void test_sdk_refusals(void **state)
{
	static const char *const missing[] = { "acme/nothing" }, *const bad[] = { "pcs:ACME" },
	                         *const two[] = { "acme/p", "other/x" };
	pcs_client *c = client_to(D.socket);
	pcs_watch *w = (pcs_watch *)1;
	pcs_error err = { 0 };

	(void)state;
	assert_int_equal(start(c, missing, 1, NULL, &w, &err), -PCS_NOT_FOUND);
	assert_null(w);
	assert_non_null(strstr(err.message, "acme/nothing"));
	assert_int_equal(pcs_watch_start(c, bad, 1, NULL, &w, &err), -PCS_INVALID_ARGUMENT);
	assert_int_equal(pcs_watch_start(c, two, 2, NULL, &w, &err), -PCS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, "one company"));
	assert_int_equal(pcs_watch_start(c, NULL, 0, "bad agent", &w, &err), -PCS_INVALID_ARGUMENT);
	assert_int_equal(pcs_watch_start(c, NULL, 0, NULL, &w, &err), -PCS_INVALID_ARGUMENT);
	assert_int_equal(pcs_watch_start(NULL, missing, 1, NULL, &w, &err), -PCS_INVALID_ARGUMENT);
	assert_int_equal(pcs_watch_read(NULL, NULL, 0, NULL, &err), -PCS_INVALID_ARGUMENT);
	assert_int_equal(pcs_watch_fd(NULL), -1);
	pcs_watch_close(NULL);
	pcs_close(c);
}

/*
 * An agent's environment, watched by root (an admin): a binding change is a binding_changed
 * event, then the end ABORTED "watch again". (Rules changes do not end root's streams: root
 * is an admin whatever the rules say.)
 */
static void test_sdk_binding_change_ends_aborted(void **state)
{
	const pcs_watched_secret *s;
	pcs_watch_event ev;
	pcs_client *c = client_to(D.socket);
	pcs_watch *w = NULL;
	pcs_error err = { 0 };
	size_t n = 0, ns = 0, ns0 = 0, i;
	int r;

	(void)state;
	if (start(c, NULL, 0, "acme/bot", &w, &err) != 0)
		fail_msg("pcs_watch_start: %s: %s", pcs_status_name(err.code), err.message);
	assert_string_equal(pcs_watch_agent(w), "acme/bot");
	/* acme/b, and acme/p when pcctl's test bound it too. */
	s = pcs_watch_secrets(w, &ns0);
	for (i = 0; i < ns0 && strcmp(s[i].name, "b") != 0; i++)
		;
	assert_true(i < ns0);
	update("b", "b-next", 0);
	expect(w, "b", PCS_WATCH_NEW_VERSION, s[i].latest + 1, s[i].latest + 1,
	    "update of a bound secret");
	set_env("X", "x");
	assert_int_equal(pcs_watch_wait(w, 5000, &ev, 1, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ev.kind, PCS_WATCH_BINDING_CHANGED);
	assert_string_equal(ev.kind_name, "binding_changed");
	assert_string_equal(ev.secret_id, "");
	assert_string_equal(ev.company, "acme");
	assert_string_equal(ev.name, "bot");
	r = pcs_watch_wait(w, 5000, &ev, 1, &n, &err);
	if (r != -PCS_ABORTED)
		fail_msg("want the end ABORTED, got %d with %zu events", r, n);
	assert_int_equal(n, 0);
	assert_int_equal(err.code, PCS_ABORTED);
	assert_non_null(strstr(err.message, "watch again"));
	/* The end is kept, and the descriptor stays readable so a poller sees it. */
	memset(&err, 0, sizeof(err));
	assert_true(readable(pcs_watch_fd(w), 0));
	assert_int_equal(pcs_watch_read(w, &ev, 1, &n, &err), -PCS_ABORTED);
	assert_int_equal(err.code, PCS_ABORTED);
	pcs_watch_close(w);
	/* Watching again covers the new binding too. */
	assert_int_equal(start(c, NULL, 0, "acme/bot", &w, &err), 0);
	(void)pcs_watch_secrets(w, &ns);
	assert_int_equal(ns, ns0 + 1);
	pcs_watch_close(w);
	pcs_close(c);
}

static void test_sdk_cycles_leave_nothing(void **state)
{
	static const char *const refs[] = { "acme/p" };
	pcs_client *c = client_to(D.socket);
	pcs_watch *w = NULL;
	pcs_error err = { 0 };
	int fds0, fds1;

	(void)state;
	/* Warm: the feed is up. */
	assert_int_equal(start(c, refs, 1, NULL, &w, &err), 0);
	pcs_watch_close(w);
	fds0 = wire_proc_fd_count(getpid());
	for (int i = 0; i < 1000; i++) {
		w = NULL;
		if (pcs_watch_start(c, refs, 1, NULL, &w, &err) != 0)
			fail_msg("cycle %d: %s: %s", i, pcs_status_name(err.code), err.message);
		pcs_watch_close(w);
	}
	fds1 = wire_proc_fd_count(getpid());
	assert_int_equal(fds0, fds1);
	/* The daemon has no stream left either. */
	assert_true(wire_fd_count_settles(D.pid, 64, 5000) <= 64);
	pcs_close(c);
}

/* ---- pcctl ---- */

static void pcctl_ok(const char *stdin_data, ...)
{
	const char *argv[16];
	struct it_result r;
	va_list ap;
	size_t n = 0;

	argv[n++] = it_path("client/pcctl");
	va_start(ap, stdin_data);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	assert_int_equal(it_run(0, D.socket, NULL, stdin_data, argv, &r), 0);
	if (r.status != 0)
		fail_msg("pcctl %s %s: exit %d: %s", argv[1], argv[2], r.status, r.err);
	it_result_free(&r);
}

/* A pcctl running in the background, its stdout and stderr read line by line. */
struct bg {
	pid_t pid;
	int out, err;
	char buf[8192];
	size_t len;
	char errbuf[4096];
	size_t errlen;
};

static void bg_start(struct bg *b, const char *socket, const char *const *args)
{
	const char *argv[16];
	int po[2], pe[2];
	size_t n = 0;

	memset(b, 0, sizeof(*b));
	argv[n++] = it_path("client/pcctl");
	for (; args[n - 1] != NULL && n < 15; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	assert_int_equal(pipe(po), 0);
	assert_int_equal(pipe(pe), 0);
	b->pid = fork();
	assert_true(b->pid >= 0);
	if (b->pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		(void)dup2(devnull, 0);
		(void)dup2(po[1], 1);
		(void)dup2(pe[1], 2);
		(void)setenv("PCSECRET_SOCKET", socket, 1);
		(void)signal(SIGINT, SIG_DFL);
		(void)signal(SIGTERM, SIG_DFL);
		(void)signal(SIGPIPE, SIG_DFL);
		execv(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	b->out = po[0];
	b->err = pe[0];
	(void)fcntl(b->err, F_SETFL, O_NONBLOCK);
}

static void bg_drain_err(struct bg *b)
{
	ssize_t k;

	while (b->errlen + 1 < sizeof(b->errbuf) &&
	    (k = read(b->err, b->errbuf + b->errlen, sizeof(b->errbuf) - 1 - b->errlen)) > 0)
		b->errlen += (size_t)k;
	b->errbuf[b->errlen] = '\0';
}

/* The next line of its stdout within ms, into line; 0 when none came (EOF or time). */
static int bg_line(struct bg *b, int ms, char *line, size_t size)
{
	uint64_t until = wire_now_ms() + (uint64_t)ms;
	char *nl;
	ssize_t k;

	for (;;) {
		if ((nl = memchr(b->buf, '\n', b->len)) != NULL) {
			size_t l = (size_t)(nl - b->buf);

			assert_true(l < size);
			memcpy(line, b->buf, l);
			line[l] = '\0';
			memmove(b->buf, nl + 1, b->len - l - 1);
			b->len -= l + 1;
			return 1;
		}
		uint64_t now = wire_now_ms();
		if (now >= until || !readable(b->out, (int)(until - now)))
			return 0;
		k = read(b->out, b->buf + b->len, sizeof(b->buf) - b->len);
		if (k <= 0)
			return 0;
		b->len += (size_t)k;
	}
}

/* Signals it (0: none) and waits up to 10 s; its exit status, or 128 + signal. */
static int bg_stop(struct bg *b, int sig)
{
	int st = 0;

	if (sig != 0)
		(void)kill(b->pid, sig);
	for (int i = 0; i < 1000; i++) {
		if (waitpid(b->pid, &st, WNOHANG) == b->pid)
			break;
		if (i == 999) {
			(void)kill(b->pid, SIGKILL);
			(void)waitpid(b->pid, &st, 0);
			bg_drain_err(b);
			fail_msg("pcctl did not exit within 10 s: %s", b->errbuf);
		}
		wire_sleep_ms(10);
	}
	bg_drain_err(b);
	close(b->out);
	close(b->err);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A JSON line of pcctl secret watch --json, checked: kind, company/name, version, latest. */
static void expect_json(struct bg *b, const char *kind, const char *name, long long version,
    long long latest, const char *when)
{
	json_error_t jerr;
	json_t *j;
	char line[2048];

	if (!bg_line(b, 5000, line, sizeof(line))) {
		bg_drain_err(b);
		fail_msg("%s: no line within 5 s (stderr: %s)", when, b->errbuf);
	}
	if ((j = json_loads(line, 0, &jerr)) == NULL)
		fail_msg("%s: not JSON: %s", when, line);
	if (strcmp(json_string_value(json_object_get(j, "kind")), kind) != 0 ||
	    strcmp(json_string_value(json_object_get(j, "company")), "acme") != 0 ||
	    strcmp(json_string_value(json_object_get(j, "name")), name) != 0 ||
	    strlen(json_string_value(json_object_get(j, "secret_id"))) != 36 ||
	    json_string_value(json_object_get(j, "time")) == NULL ||
	    (version >= 0 && json_integer_value(json_object_get(j, "version")) != version) ||
	    json_integer_value(json_object_get(j, "latest")) != latest)
		fail_msg("%s: got %s, want kind %s acme/%s version %lld latest %lld", when, line,
		    kind, name, version, latest);
	json_decref(j);
}

/* The watcher is connected and its stream open once it printed the initial state. */
static void test_pcctl_json_events_and_sigint(void **state)
{
	static const char *const args[] = { "--json", "secret", "watch", "acme/p", NULL };
	struct it_result r;
	struct bg b;
	char line[2048];

	(void)state;
	bg_start(&b, D.socket, args);
	/* Version 1; the initial state line has no version key. */
	expect_json(&b, "watching", "p", -1, 1, "initial state");
	pcctl_ok("p-two", "secret", "update", "acme/p", (char *)NULL);
	expect_json(&b, "new_version", "p", 2, 2, "pcctl secret update");
	pcctl_ok(NULL, "secret", "rollback", "acme/p", "1", (char *)NULL);
	expect_json(&b, "rollback", "p", 1, 1, "pcctl secret rollback");
	pcctl_ok(NULL, "secret", "disable-version", "acme/p", "2", (char *)NULL);
	expect_json(&b, "disabled", "p", 2, 1, "pcctl secret disable-version");
	pcctl_ok(NULL, "secret", "delete", "acme/p", "--force", (char *)NULL);
	expect_json(&b, "deleted", "p", 0, 1, "pcctl secret delete");
	pcctl_ok(NULL, "secret", "restore", "acme/p", (char *)NULL);
	expect_json(&b, "restored", "p", 0, 1, "pcctl secret restore");
	assert_int_equal(bg_stop(&b, SIGINT), 0);
	assert_false(bg_line(&b, 0, line, sizeof(line)));
	/* A secret that does not exist: exit 1 naming the status. */
	assert_int_equal(
	    it_pcctl(0, D.socket, NULL, &r, "secret", "watch", "acme/none", (char *)NULL), 1);
	assert_non_null(strstr(r.err, "NOT_FOUND"));
	it_result_free(&r);
	/* Usage: a bad name, a bad count. */
	assert_int_equal(
	    it_pcctl(0, D.socket, NULL, &r, "secret", "watch", "nope", (char *)NULL), 2);
	it_result_free(&r);
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "secret", "watch", "acme/p", "--count",
	                     "x", (char *)NULL),
	    2);
	it_result_free(&r);
}

static void test_pcctl_text_count_rewatch_sigterm(void **state)
{
	static const char *const count[] = { "secret", "watch", "acme/p", "--count", "1", NULL };
	static const char *const forever[] = { "secret", "watch", "--agent", "acme/bot",
		"--events-only", NULL };
	struct it_result r;
	struct bg b;
	char line[2048];

	(void)state;
	/* --count 0: the initial state, then exit 0. */
	assert_int_equal(it_pcctl(0, D.socket, NULL, &r, "secret", "watch", "acme/p", "--count",
	                     "0", (char *)NULL),
	    0);
	assert_non_null(strstr(r.out, " watching acme/p latest 1"));
	it_result_free(&r);
	/* --count 1: one event, then exit 0 by itself. */
	bg_start(&b, D.socket, count);
	assert_true(bg_line(&b, 5000, line, sizeof(line)));
	assert_non_null(strstr(line, " watching acme/p latest 1"));
	pcctl_ok("p-three", "secret", "update", "acme/p", (char *)NULL);
	assert_true(bg_line(&b, 5000, line, sizeof(line)));
	assert_non_null(strstr(line, " new_version acme/p version 3 latest 3"));
	assert_int_equal(bg_stop(&b, 0), 0);

	/* A binding change ends the stream "watch again": pcctl watches again by itself. */
	bg_start(&b, D.socket, forever);
	/* --events-only prints nothing until a change; an update shows the stream is open. */
	for (int i = 0;; i++) {
		char v[16];
		snprintf(v, sizeof(v), "b-%d", i);
		pcctl_ok(v, "secret", "update", "acme/b", (char *)NULL);
		if (bg_line(&b, 2000, line, sizeof(line)))
			break;
		assert_true(i < 5);
	}
	assert_non_null(strstr(line, " new_version acme/b "));
	pcctl_ok(NULL, "agent", "set-env", "acme/bot", "Y", "pcs:acme/p", (char *)NULL);
	assert_true(bg_line(&b, 5000, line, sizeof(line)));
	assert_non_null(strstr(line, " binding_changed acme/bot version 0 latest 0"));
	/* The note on stderr, then events again, now of the new binding's secret too. */
	for (int i = 0; i < 500; i++) {
		bg_drain_err(&b);
		if (strstr(b.errbuf, "watching again") != NULL)
			break;
		wire_sleep_ms(10);
	}
	assert_non_null(strstr(b.errbuf, "pcctl: the watch ended (ABORTED: "));
	assert_non_null(strstr(b.errbuf, "watching again"));
	for (int i = 0;; i++) {
		char v[16];
		snprintf(v, sizeof(v), "q-%d", i);
		pcctl_ok(v, "secret", "update", "acme/p", (char *)NULL);
		if (bg_line(&b, 2000, line, sizeof(line)))
			break;
		assert_true(i < 5);
	}
	assert_non_null(strstr(line, " new_version acme/p "));
	assert_int_equal(bg_stop(&b, SIGTERM), 0);
}

/* Last: stops the daemon. Both the SDK and pcctl see the end of their streams. */
static void test_daemon_stop_ends_streams(void **state)
{
	static const char *const refs[] = { "acme/p" };
	static const char *const args[] = { "secret", "watch", "acme/p", NULL };
	pcs_watch_event ev;
	pcs_client *c = client_to(D.socket);
	pcs_watch *w = NULL;
	pcs_error err = { 0 };
	struct bg b;
	char line[2048];
	size_t n = 0;
	int r;

	(void)state;
	assert_int_equal(start(c, refs, 1, NULL, &w, &err), 0);
	bg_start(&b, D.socket, args);
	assert_true(bg_line(&b, 5000, line, sizeof(line)));
	wire_close(&adm.w);
	assert_int_equal(it_daemon_stop(&D), 0);
	r = pcs_watch_wait(w, 5000, &ev, 1, &n, &err);
	assert_int_equal(r, -PCS_UNAVAILABLE);
	assert_int_equal(err.code, PCS_UNAVAILABLE);
	assert_true(readable(pcs_watch_fd(w), 0));
	pcs_watch_close(w);
	pcs_close(c);
	assert_int_equal(bg_stop(&b, 0), 1);
	assert_non_null(strstr(b.errbuf, "pcctl: UNAVAILABLE: "));
}

static int setup(void **state)
{
	Pcsecret__V1__CreateCompanyRequest cc = PCSECRET__V1__CREATE_COMPANY_REQUEST__INIT;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (it_database(DB, conninfo, sizeof(conninfo)) != 0 ||
	    it_daemon_start(&D, conninfo, NULL) != 0)
		return -1;
	E.socket = D.socket;
	E.conninfo = conninfo;
	itconn_open(&E, &adm, 0, 1u << 20);
	cc.name = (char *)"acme";
	itconn_admin_ok(&adm, "CreateCompany", &cc.base);
	cc.name = (char *)"other";
	itconn_admin_ok(&adm, "CreateCompany", &cc.base);
	create_secret("k", "v1");
	create_secret("p", "p1");
	create_secret("b", "b1");
	create_secret("x", "x1");
	{
		Pcsecret__V1__CreateAgentRequest ca = PCSECRET__V1__CREATE_AGENT_REQUEST__INIT;
		ca.company = (char *)"acme";
		ca.name = (char *)"bot";
		ca.uid = IT_AGENT_UID;
		itconn_admin_ok(&adm, "CreateAgent", &ca.base);
	}
	set_env("B", "b");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	wire_close(&adm.w);
	it_daemon_cleanup(&D);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sdk_events_each_kind),
		cmocka_unit_test(test_sdk_refusals),
		cmocka_unit_test(test_pcctl_json_events_and_sigint),
		cmocka_unit_test(test_pcctl_text_count_rewatch_sigterm),
		cmocka_unit_test(test_sdk_binding_change_ends_aborted),
		cmocka_unit_test(test_sdk_cycles_leave_nothing),
		/* Last: it stops the daemon. */
		cmocka_unit_test(test_daemon_stop_ends_streams),
	};

	return cmocka_run_group_tests_name("watch_client", tests, setup, teardown);
}
