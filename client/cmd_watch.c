/*
 * pcctl secret watch: the Watch stream (docs/cli.md, "Watching secrets") through the SDK's
 * pcs_watch, one line per event until interrupted. A stream that ends "watch again"
 * (ABORTED) is started again; any other end is the command's failure.
 *
 * SIGINT and SIGTERM are blocked except inside ppoll, so a signal is seen exactly where the
 * loop waits, never lost between a check and the wait: the command then closes the watch and
 * exits 0.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pcctl_cmd.h"

/* Events taken from the SDK per read. */
#define EVENTS_PER_READ 32

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

/* "2026-03-01T10:00:00.123Z": when pcctl received the line's news (UTC). */
static void now_text(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	if (gmtime_r(&ts.tv_sec, &tm) == NULL ||
	    strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		(void)snprintf(buf, size, "-");
		return;
	}
	(void)snprintf(buf, size, "%s.%03ldZ", sec, ts.tv_nsec / 1000000L);
}

/* One compact JSON object on its own line, flushed at once: a reader acts on each line. */
static int json_line(json_t *doc, pcs_error *err)
{
	int r;

	if (doc == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	r = json_dumpf(doc, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(doc);
	if (r != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot write the output: %s", strerror(errno));
	return 0;
}

static int text_done(pcs_error *err)
{
	if (fputc('\n', stdout) == EOF || fflush(stdout) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot write the output: %s", strerror(errno));
	return 0;
}

static int print_watched(const struct ctl *ctl, const pcs_watched_secret *s, pcs_error *err)
{
	char at[48];

	now_text(at, sizeof(at));
	if (ctl->json)
		return json_line(json_pack("{s:s, s:s, s:o, s:o, s:o, s:I, s:b}", "time", at,
		                     "kind", "watching", "secret_id", json_text(s->secret_id),
		                     "company", json_text(s->company), "name", json_text(s->name),
		                     "latest", (json_int_t)s->latest, "deleted", s->deleted),
		    err);
	printf("%s watching ", at);
	out_safe(stdout, s->company);
	fputc('/', stdout);
	out_safe(stdout, s->name);
	printf(" latest %u%s", s->latest, s->deleted ? " deleted" : "");
	return text_done(err);
}

static int print_event(const struct ctl *ctl, const pcs_watch_event *e, pcs_error *err)
{
	char at[48];

	now_text(at, sizeof(at));
	if (ctl->json)
		return json_line(
		    json_pack("{s:s, s:o, s:o, s:o, s:o, s:I, s:I}", "time", at, "kind",
		        json_text(e->kind_name), "secret_id", json_text(e->secret_id), "company",
		        json_text(e->company), "name", json_text(e->name), "version",
		        (json_int_t)e->version, "latest", (json_int_t)e->latest),
		    err);
	printf("%s ", at);
	out_safe(stdout, e->kind_name);
	fputc(' ', stdout);
	out_safe(stdout, e->company);
	fputc('/', stdout);
	out_safe(stdout, e->name);
	printf(" version %u latest %u", e->version, e->latest);
	return text_done(err);
}

/* The options, checked before anything is sent. */
struct watch_opts {
	const char *refs[CTL_ARGS_MAX];
	size_t nrefs;
	const char *agent;
	int events_only;
	int counted; /* --count given: stop after count events */
	uint64_t count;
};

static int opts_parse(
    struct ctl *ctl, const struct ctl_args *args, struct watch_opts *o, pcs_error *err)
{
	char company[PCS_NAME_MAX + 1], name[PCS_NAME_MAX + 1];
	const char *count = ctl_value(args, "count");
	int i, r;

	memset(o, 0, sizeof(*o));
	for (i = 0; i < args->npos; i++) {
		if (ref_parse_path(args->pos[i], company, name, err) != 0)
			return ctl_usage_fail(ctl, err, "\"%s\" is not COMPANY/NAME", args->pos[i]);
		o->refs[o->nrefs++] = args->pos[i];
	}
	if ((o->agent = ctl_value(args, "agent")) != NULL &&
	    ref_parse_path(o->agent, company, name, err) != 0)
		return ctl_usage_fail(ctl, err, "--agent \"%s\" is not COMPANY/AGENT", o->agent);
	if (count != NULL) {
		if ((r = ctl_parse_u64(ctl, "--count", count, UINT32_MAX, &o->count, err)) != 0)
			return r;
		o->counted = 1;
	}
	o->events_only = ctl_flag(args, "events-only");
	return 0;
}

/*
 * Waits for the watch's descriptor with the stop signals let through; 1 when it is readable,
 * 0 when a stop signal came.
 */
static int wait_readable(pcs_watch *w, const sigset_t *waitmask, pcs_error *err)
{
	struct pollfd pfd;

	for (;;) {
		if (stop_signal)
			return 0;
		pfd.fd = pcs_watch_fd(w);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (ppoll(&pfd, 1, NULL, waitmask) > 0)
			return 1;
		if (errno != EINTR)
			return pcs_fail(
			    err, PCS_INTERNAL, "cannot wait for the watch: %s", strerror(errno));
	}
}

/*
 * One stream, from its start to its end: 0 when stopped (a signal or --count), 1 when it
 * ended with "watch again", else the failure.
 */
static int watch_once(struct ctl *ctl, const struct watch_opts *o, uint64_t *seen,
    const sigset_t *waitmask, pcs_error *err)
{
	pcs_watch_event ev[EVENTS_PER_READ];
	const pcs_watched_secret *s;
	pcs_watch *w = NULL;
	size_t i, n, ns;
	int r;

	if ((r = pcs_watch_start(ctl->client, o->refs, o->nrefs, o->agent, &w, err)) != 0)
		goto out;
	s = pcs_watch_secrets(w, &ns);
	for (i = 0; !o->events_only && i < ns; i++)
		if ((r = print_watched(ctl, &s[i], err)) != 0)
			goto out;
	for (;;) {
		if (o->counted && *seen >= o->count) {
			r = 0;
			goto out;
		}
		if ((r = pcs_watch_read(w, ev, EVENTS_PER_READ, &n, err)) != 0)
			break;
		for (i = 0; i < n && !(o->counted && *seen >= o->count); i++) {
			if ((r = print_event(ctl, &ev[i], err)) != 0)
				goto out;
			(*seen)++;
		}
		if (o->counted && *seen >= o->count)
			continue;
		/* Fewer than asked for: nothing is left but what the socket will bring. */
		if (n < EVENTS_PER_READ && (r = wait_readable(w, waitmask, err)) <= 0)
			goto out;
	}
	if (r == -PCS_ABORTED) {
		fprintf(stderr, "pcctl: the watch ended (ABORTED: ");
		out_safe(stderr, err->message);
		fprintf(stderr, "); watching again\n");
		r = 1;
	}
out:
	pcs_watch_close(w);
	return r;
}

int ctl_secret_watch(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	struct sigaction sa, old_int, old_term;
	sigset_t block, saved, oldmask;
	struct watch_opts o;
	uint64_t seen = 0;
	int r, blocked = 0;

	if ((r = opts_parse(ctl, args, &o, err)) != 0)
		return r;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	(void)sigemptyset(&sa.sa_mask);
	(void)sigemptyset(&block);
	(void)sigaddset(&block, SIGINT);
	(void)sigaddset(&block, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &block, &saved) != 0 || sigaction(SIGINT, &sa, &old_int) != 0 ||
	    sigaction(SIGTERM, &sa, &old_term) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot set up the signal handlers");
	blocked = 1;
	/* ppoll lets them in: the mask the command started with, without the two. */
	oldmask = saved;
	(void)sigdelset(&oldmask, SIGINT);
	(void)sigdelset(&oldmask, SIGTERM);
	if ((r = ctl_connect(ctl, err)) != 0)
		goto out;
	while ((r = watch_once(ctl, &o, &seen, &oldmask, err)) == 1)
		;
out:
	if (blocked) {
		/* Unblocked first: a pending stop signal reaches on_stop, not the default action. */
		(void)sigprocmask(SIG_SETMASK, &saved, NULL);
		(void)sigaction(SIGINT, &old_int, NULL);
		(void)sigaction(SIGTERM, &old_term, NULL);
	}
	return r;
}
