/*
 * onchange: pcrun --on-change's decisions (the mode, the events that matter, the comparison).
 */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "onchange.h"

static const struct {
	const char *name;
	int sig;
} signals[] = { { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "TERM", SIGTERM },
	{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "ALRM", SIGALRM }, { "WINCH", SIGWINCH },
	{ "CONT", SIGCONT } };

int onchange_parse(const char *arg, enum onchange_mode *mode, int *sig)
{
	const char *name;
	size_t i;

	*sig = 0;
	if (strcmp(arg, "restart") == 0) {
		*mode = ONCHANGE_RESTART;
		return 0;
	}
	if (strcmp(arg, "exit") == 0) {
		*mode = ONCHANGE_EXIT;
		return 0;
	}
	if (strncmp(arg, "signal:", 7) != 0)
		return -1;
	name = arg + 7;
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (strcasecmp(name, signals[i].name) == 0) {
			*mode = ONCHANGE_SIGNAL;
			*sig = signals[i].sig;
			return 0;
		}
	return -1;
}

int onchange_event_matters(int kind)
{
	return kind != PCS_WATCH_STAGED && kind != PCS_WATCH_ENABLED;
}

static int delivered(const struct runenv_var *v) { return !v->overridden && v->value != NULL; }

static const struct runenv_var *find(const struct runenv *re, const char *name)
{
	size_t i;

	for (i = 0; i < re->n; i++)
		if (delivered(&re->v[i]) && strcmp(re->v[i].name, name) == 0)
			return &re->v[i];
	return NULL;
}

/* The first variable of from that to lacks or has otherwise. */
static const struct runenv_var *first_change(const struct runenv *from, const struct runenv *to)
{
	const struct runenv_var *v, *w;
	size_t i;

	for (i = 0; i < from->n; i++) {
		v = &from->v[i];
		if (!delivered(v))
			continue;
		if ((w = find(to, v->name)) == NULL || w->version != v->version ||
		    w->len != v->len ||
		    (v->len > 0 && sodium_memcmp(w->value, v->value, v->len) != 0))
			return v;
	}
	return NULL;
}

int onchange_differs(
    const struct runenv *a, const struct runenv *b, const char **name, unsigned *va, unsigned *vb)
{
	const struct runenv_var *v, *w;

	/* Changed or removed in b, else added in b. */
	if ((v = first_change(a, b)) == NULL && (v = first_change(b, a)) == NULL)
		return 0;
	if (name != NULL)
		*name = v->name;
	if (va != NULL)
		*va = (w = find(a, v->name)) != NULL ? w->version : 0;
	if (vb != NULL)
		*vb = (w = find(b, v->name)) != NULL ? w->version : 0;
	return 1;
}
