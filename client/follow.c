/*
 * follow: pcrun --on-change, the watch and what a change does to the child.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "follow.h"
#include "rpc.h"

#define DEBOUNCE_MS 200      /* a burst of events (one rotation, several secrets) is one check */
#define DEBOUNCE_MAX_MS 1000 /* ... unless it goes on: then check anyway */
#define REWATCH_FIRST_MS 200
#define REWATCH_MAX_MS 10000
#define EVENTS 16

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* Never 0, which means "not planned". */
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
}

static void plan_check(struct follow *f, long now)
{
	if (f->check_due == 0)
		f->check_first = now;
	f->check_due = now + DEBOUNCE_MS;
	if (f->check_due > f->check_first + DEBOUNCE_MAX_MS)
		f->check_due = f->check_first + DEBOUNCE_MAX_MS;
}

static void plan_rewatch(struct follow *f, long now)
{
	f->rewatch_due = now + f->backoff_ms;
	f->backoff_ms = f->backoff_ms * 2 > REWATCH_MAX_MS ? REWATCH_MAX_MS : f->backoff_ms * 2;
}

/* Whether there is anything to watch: references, or the agent's environment. */
static int watched_refs(const struct follow *f, const char ***refs, size_t *n)
{
	size_t i;

	*refs = NULL;
	*n = 0;
	/* A launcher or the agent resolves only what the agent binds: the agent's watch covers it. */
	if (f->agent != NULL)
		return 1;
	if ((*refs = calloc(f->tmpl.n + 1, sizeof(**refs))) == NULL)
		return -1;
	for (i = 0; i < f->tmpl.n; i++)
		if (!f->tmpl.v[i].overridden && f->tmpl.v[i].ref != NULL)
			(*refs)[(*n)++] = f->tmpl.v[i].ref;
	return *n > 0;
}

/* Opens the watch. 0, or the negative status (err says why). */
static int open_watch(struct follow *f, pcs_error *err)
{
	const char **refs = NULL;
	size_t n = 0;
	int r;

	if ((r = watched_refs(f, &refs, &n)) <= 0) {
		free(refs);
		return r < 0 ? pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory") : 0;
	}
	if (f->client == NULL && (r = pcs_connect(f->opts, &f->client, err)) != 0)
		goto out;
	if ((r = pcs_watch_start(f->client, refs, n, f->agent, &f->watch, err)) != 0 &&
	    err->code == PCS_UNAVAILABLE) {
		/* The connection may be the stale one of a daemon that went away. */
		pcs_close(f->client);
		f->client = NULL;
	}
out:
	free(refs);
	return r;
}

int follow_start(struct follow *f)
{
	pcs_error err = { 0 };
	const char **refs = NULL;
	size_t n;
	int any;

	f->backoff_ms = REWATCH_FIRST_MS;
	any = watched_refs(f, &refs, &n);
	free(refs);
	if (any < 0) {
		fprintf(stderr, "pcrun: out of memory\n");
		return -1;
	}
	if (any == 0)
		return 0; /* nothing the child gets comes from pcsecret */
	if (open_watch(f, &err) == 0) {
		/* A change that committed between the resolution and the watch is not missed. */
		plan_check(f, now_ms());
		return 0;
	}
	if (err.code != PCS_UNAVAILABLE) {
		runenv_report("--on-change: cannot watch what the program is given", &err);
		return -1;
	}
	runenv_report(
	    "--on-change: cannot watch yet (the program starts; watching is tried again)", &err);
	f->watch_lost = 1;
	plan_rewatch(f, now_ms());
	return 0;
}

static void wait_on(void *ctx, int *fd, int *timeout_ms)
{
	struct follow *f = ctx;
	long due = 0, now = now_ms();

	*fd = f->watch != NULL ? pcs_watch_fd(f->watch) : -1;
	if (f->check_due != 0)
		due = f->check_due;
	if (f->rewatch_due != 0 && (due == 0 || f->rewatch_due < due))
		due = f->rewatch_due;
	*timeout_ms = due == 0 ? -1 : due <= now ? 0 : (int)(due - now);
}

/* Takes the events the watch holds; at its end, plans watching again. */
static void read_events(struct follow *f, long now)
{
	pcs_watch_event ev[EVENTS];
	pcs_error err = { 0 };
	size_t n, i;

	do {
		if (pcs_watch_read(f->watch, ev, EVENTS, &n, &err) != 0) {
			pcs_watch_close(f->watch);
			f->watch = NULL;
			if (err.code == PCS_ABORTED) {
				/* Rules or bindings changed: a new watch is decided on them now. */
				f->backoff_ms = REWATCH_FIRST_MS;
				f->rewatch_due = now;
			} else {
				runenv_report(
				    "--on-change: the watch ended; the program keeps running, "
				    "watching again",
				    &err);
				f->watch_lost = 1;
				plan_rewatch(f, now);
			}
			return;
		}
		for (i = 0; i < n; i++)
			if (onchange_event_matters(ev[i].kind))
				plan_check(f, now);
	} while (n == EVENTS);
}

static void rewatch(struct follow *f, long now)
{
	pcs_error err = { 0 };

	f->rewatch_due = 0;
	if (open_watch(f, &err) != 0) {
		if (!f->watch_lost)
			runenv_report(
			    "--on-change: cannot watch; the program keeps running, trying "
			    "again",
			    &err);
		f->watch_lost = 1;
		plan_rewatch(f, now);
		return;
	}
	if (f->watch_lost)
		fprintf(stderr,
		    "pcrun: --on-change: watching again; resolving again in case a "
		    "change was missed\n");
	f->watch_lost = 0;
	f->backoff_ms = REWATCH_FIRST_MS;
	plan_check(f, now);
}

/*
 * Everything resolved again, as at the start: an ordinary, audited GetAgentEnv and Resolve.
 * 0; -1 (reported) with *unavailable set when the daemon could not be reached.
 */
static int resolve_again(struct follow *f, struct runenv *fresh, int *unavailable)
{
	pcs_error err = { 0 };
	int retry = 0;

	*unavailable = 0;
	if (runenv_clone(&f->tmpl, fresh, &err) != 0) {
		runenv_report(NULL, &err);
		return -1;
	}
	if (f->client == NULL && pcs_connect(f->opts, &f->client, &err) != 0) {
		retry = err.code == PCS_UNAVAILABLE;
		runenv_report(NULL, &err);
		goto fail;
	}
	if ((f->agent != NULL && runenv_add_agent(fresh, f->client, f->agent, &retry, &err) != 0) ||
	    runenv_resolve(fresh, f->client, f->agent, &retry, &err) != 0) {
		if (retry)
			runenv_report(NULL, &err);
		goto fail;
	}
	return 0;
fail:
	if (retry) {
		pcs_close(f->client);
		f->client = NULL;
		*unavailable = 1;
	}
	return -1;
}

/* Files of variables fresh no longer delivers as files: removed (the others are replaced). */
static void remove_stale_files(struct follow *f, const struct runenv *fresh)
{
	size_t i, j;
	int keep;

	for (i = 0; i < f->cur.n; i++) {
		if (!runenv_delivered(&f->cur.v[i]) || !f->cur.v[i].secret)
			continue;
		keep = 0;
		for (j = 0; j < fresh->n && !keep; j++)
			keep = runenv_delivered(&fresh->v[j]) && fresh->v[j].secret &&
			    strcmp(fresh->v[j].name, f->cur.v[i].name) == 0;
		if (!keep)
			(void)unlinkat(f->files->dirfd, f->cur.v[i].name, 0);
	}
}

/* fresh becomes cur, cur prev (still masked); el becomes cur's environment. */
static void swap_in(struct follow *f, struct runenv *fresh, struct envlist *el)
{
	runenv_free(&f->prev);
	f->prev = f->cur;
	f->cur = *fresh;
	memset(fresh, 0, sizeof(*fresh));
	envlist_free(&f->el);
	f->el = *el;
	memset(el, 0, sizeof(*el));
}

/* Resolves again and acts on a difference. 0 to go on, 1 to end the run with *status. */
static int check(struct follow *f, struct child *c, long now, int *status)
{
	struct runenv fresh = { 0 };
	struct envlist el = { 0 };
	struct mask_value *mv = NULL;
	const char *name = NULL;
	unsigned va = 0, vb = 0;
	pcs_error err = { 0 };
	size_t nmv = 0;
	int unavailable, r = 0;

	f->check_due = 0;
	if (resolve_again(f, &fresh, &unavailable) != 0) {
		if (unavailable) {
			fprintf(stderr,
			    "pcrun: --on-change: the program keeps running; resolving "
			    "again later\n");
			f->check_first = 0;
			f->check_due = now + REWATCH_MAX_MS / 2;
		} else {
			fprintf(stderr,
			    "pcrun: --on-change: a change cannot be delivered; the "
			    "program keeps running with what it has\n");
		}
		goto out;
	}
	if (!onchange_differs(&f->cur, &fresh, &name, &va, &vb))
		goto out;
	fprintf(stderr, "pcrun: %s changed (version %u -> %u): %s\n", name, va, vb,
	    f->mode == ONCHANGE_RESTART    ? "restarting the program" :
	        f->mode == ONCHANGE_SIGNAL ? "rewriting its files and signalling the program" :
	                                     "stopping the program and exiting");
	if (f->mode == ONCHANGE_EXIT) {
		if (child_stop(c, f->grace_ms, status) == 0)
			*status = ONCHANGE_EXIT_STATUS;
		r = 1;
		goto out;
	}
	/* The new environment (and files) first: if they cannot be made, nothing is stopped. */
	if (deliver_env(&fresh, f->dopts, f->files, &el) != 0) {
		fprintf(stderr, "pcrun: --on-change: the program keeps running with what it has\n");
		goto out;
	}
	if (f->files != NULL)
		remove_stale_files(f, &fresh);
	/* The old values stay masked too: the program may still print what it had. */
	if (f->mask) {
		if (deliver_mask_values(&fresh, &f->cur, &mv, &nmv) != 0 ||
		    child_set_values(c, mv, nmv, &err) != 0) {
			if (err.code == 0)
				(void)pcs_fail(&err, PCS_RESOURCE_EXHAUSTED, "out of memory");
			runenv_report(NULL, &err);
			r = -1;
			goto out;
		}
		free(f->mv);
		f->mv = mv;
		f->nmv = nmv;
		mv = NULL;
	}
	if (f->mode == ONCHANGE_SIGNAL) {
		child_signal(c, f->sig);
		swap_in(f, &fresh, &el);
		goto out;
	}
	if (child_stop(c, f->grace_ms, status) == 1) {
		/* It ended by itself meanwhile: pcrun ends with it, as it would have. */
		r = 1;
		goto out;
	}
	swap_in(f, &fresh, &el);
	if (child_start(c, f->el.s != NULL ? f->el.s : (char *[]){ NULL }, &err) != 0) {
		runenv_report("cannot start the program again", &err);
		r = -1;
	}
out:
	free(mv);
	envlist_free(&el);
	runenv_free(&fresh);
	return r;
}

static int step(void *ctx, struct child *c, int readable, int *status)
{
	struct follow *f = ctx;
	long now = now_ms();

	if (readable && f->watch != NULL)
		read_events(f, now);
	if (f->rewatch_due != 0 && now >= f->rewatch_due)
		rewatch(f, now);
	if (f->check_due != 0 && now_ms() >= f->check_due)
		return check(f, c, now, status);
	return 0;
}

void follow_hooks(struct follow *f, struct child_hooks *h)
{
	h->ctx = f;
	h->wait_on = wait_on;
	h->step = step;
}

void follow_free(struct follow *f)
{
	pcs_watch_close(f->watch);
	f->watch = NULL;
	pcs_close(f->client);
	f->client = NULL;
	free(f->mv);
	f->mv = NULL;
	envlist_free(&f->el);
	runenv_free(&f->tmpl);
	runenv_free(&f->cur);
	runenv_free(&f->prev);
}
