#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pbcheck.h"

/*
 * Rate limit per kind of line: a peer that makes the daemon log the same event in a loop (a
 * refused call, a failing audit batch) must not fill the disk. A kind is the event name with
 * its method=, status= and reason= values (words from fixed sets), so a flood of one refusal
 * does not hide a different one. Fixed one-second windows.
 */
#define LOG_EVENTS_TRACKED 128
#define LOG_KIND_MAX 96

struct log_rate {
	char event[LOG_KIND_MAX];
	long window;              /* monotonic second the counts belong to */
	unsigned lines;           /* written in the window */
	unsigned long suppressed; /* dropped since the last log_suppressed line */
};

static enum log_level min_level = LOG_INFO;
static unsigned rate_max = LOG_RATE_DEFAULT;
static struct log_rate rates[LOG_EVENTS_TRACKED];
static size_t nrates;
static unsigned long suppressed_total;
static long (*clock_fn)(void);
static FILE *log_fp;
static char log_path[4096];

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(enum log_level level) { min_level = level; }

void log_set_rate(unsigned per_second) { rate_max = per_second; }

void log_set_clock(long (*now_seconds)(void)) { clock_fn = now_seconds; }

unsigned long log_suppressed_total(void) { return suppressed_total; }

int log_level_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

static FILE *out(void) { return log_fp ? log_fp : stderr; }

int log_open(const char *path, pcs_error *err)
{
	FILE *fp = NULL;

	if (path == NULL) {
		if (log_fp)
			fclose(log_fp);
		log_fp = NULL;
		log_path[0] = '\0';
		return 0;
	}
	if (strlen(path) >= sizeof(log_path))
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "log file path is too long");
	if ((fp = fopen(path, "ae")) == NULL)
		return pcs_fail(err, PCS_FAILED_PRECONDITION, "cannot open log file %s: %s", path,
		    strerror(errno));
	setvbuf(fp, NULL, _IOLBF, 0);
	if (log_fp)
		fclose(log_fp);
	log_fp = fp;
	if (log_path != path)
		snprintf(log_path, sizeof(log_path), "%s", path);
	return 0;
}

int log_reopen(pcs_error *err)
{
	char path[sizeof(log_path)];

	if (log_path[0] == '\0')
		return 0;
	memcpy(path, log_path, sizeof(path));
	return log_open(path, err);
}

static long now_second(void)
{
	struct timespec ts;

	if (clock_fn != NULL)
		return clock_fn();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec;
}

static void write_line(enum log_level level, const char *event, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void write_line(enum log_level level, const char *event, const char *fmt, va_list ap)
{
	char ts[40], line[2048];
	struct timespec now;
	struct tm tm;
	FILE *fp = out();
	int n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line so concurrent writers to a shared file do not interleave. */
	n = snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s event=%s", ts,
	    now.tv_nsec / 1000000, level_names[level], event);
	if (n > 0 && (size_t)n < sizeof(line) && fmt != NULL && fmt[0] != '\0') {
		line[n++] = ' ';
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	}
	fprintf(fp, "%s\n", line);
	fflush(fp);
}

static void put_line(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_line(enum log_level level, const char *event, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	write_line(level, event, fmt, ap);
	va_end(ap);
}

/* Reports what the windows that have ended dropped, one line per event. */
static void report_suppressed(long second)
{
	for (size_t i = 0; i < nrates; i++) {
		struct log_rate *r = &rates[i];
		if (r->suppressed == 0 || r->window == second)
			continue;
		put_line(LOG_WARN, "log_suppressed", "kind=%s count=%lu", log_q(r->event),
		    r->suppressed);
		r->suppressed = 0;
	}
}

/* 1 when a line of event may be written now; counts the ones that may not. */
static int rate_allows(const char *event, long second)
{
	struct log_rate *r = NULL;

	if (rate_max == 0)
		return 1;
	for (size_t i = 0; i < nrates; i++)
		if (strcmp(rates[i].event, event) == 0) {
			r = &rates[i];
			break;
		}
	for (size_t i = 0; r == NULL && nrates == LOG_EVENTS_TRACKED && i < nrates; i++)
		if (rates[i].window != second && rates[i].suppressed == 0)
			r = &rates[i]; /* a kind idle since an earlier second gives its slot up */
	if (r == NULL && nrates == LOG_EVENTS_TRACKED)
		r = &rates[LOG_EVENTS_TRACKED - 1]; /* full of live kinds: the rest share one */
	else if (r == NULL)
		r = &rates[nrates++];
	if (strcmp(r->event, event) != 0 && r->suppressed == 0) {
		snprintf(r->event, sizeof(r->event), "%s", event);
		r->window = second - 1;
	}
	if (r->window != second) {
		r->window = second;
		r->lines = 0;
	}
	if (r->lines < rate_max) {
		r->lines++;
		return 1;
	}
	r->suppressed++;
	suppressed_total++;
	return 0;
}

/* Appends " key=value" from line to kind when line has that key (value cut at a space). */
static void kind_add(char *kind, size_t size, const char *line, const char *key)
{
	size_t klen = strlen(key), o = strlen(kind);
	const char *p = line;

	while ((p = strstr(p, key)) != NULL && p != line && p[-1] != ' ')
		p += klen;
	if (p == NULL || o + klen + 2 >= size)
		return;
	kind[o++] = ' ';
	for (size_t i = 0; p[i] != '\0' && p[i] != ' ' && o + 1 < size; i++)
		kind[o++] = p[i];
	kind[o] = '\0';
}

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
	char msg[1900] = "", kind[LOG_KIND_MAX];
	va_list ap;
	long second;

	if (level < min_level)
		return;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	snprintf(kind, sizeof(kind), "%s", event);
	kind_add(kind, sizeof(kind), msg, "method=");
	kind_add(kind, sizeof(kind), msg, "status=");
	kind_add(kind, sizeof(kind), msg, "reason=");
	second = now_second();
	report_suppressed(second);
	if (!rate_allows(kind, second))
		return;
	if (msg[0] != '\0')
		put_line(level, event, "%s", msg);
	else
		put_line(level, event, NULL);
}

void log_flush_suppressed(void) { report_suppressed(now_second() + 1); }

const char *log_q(const char *s)
{
	static char bufs[4][512];
	static unsigned next;
	char *b = bufs[next++ % 4];
	size_t o = 0, n, k;

	if (s == NULL)
		s = "";
	n = strlen(s);
	b[o++] = '"';
	for (size_t i = 0; i < n && o < sizeof(bufs[0]) - 6; i += k) {
		unsigned char ch = (unsigned char)s[i];
		k = pbcheck_utf8_seq((const uint8_t *)s + i, n - i);
		if (k > 1) {
			/* A whole valid character, or nothing of it. */
			if (o + k >= sizeof(bufs[0]) - 6)
				break;
			memcpy(b + o, s + i, k);
			o += k;
			continue;
		}
		k = 1;
		if (ch == '"' || ch == '\\') {
			b[o++] = '\\';
			b[o++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			/* Control characters and bytes that are not UTF-8 are never written raw. */
			o += (size_t)snprintf(b + o, 5, "\\x%02x", ch);
		} else {
			b[o++] = (char)ch;
		}
	}
	b[o++] = '"';
	b[o] = '\0';
	return b;
}
