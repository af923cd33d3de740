#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;
static FILE *log_fp;
static char log_path[4096];

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(enum log_level level) { min_level = level; }

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

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
	char ts[40];
	struct timespec now;
	struct tm tm;
	va_list ap;
	FILE *fp = out();

	if (level < min_level)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line so concurrent writers to a shared file do not interleave. */
	char line[2048];
	int n = snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s event=%s", ts,
	    now.tv_nsec / 1000000, level_names[level], event);
	if (n > 0 && (size_t)n < sizeof(line) && fmt != NULL && fmt[0] != '\0') {
		line[n++] = ' ';
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	fprintf(fp, "%s\n", line);
	fflush(fp);
}

const char *log_q(const char *s)
{
	static char bufs[4][512];
	static unsigned next;
	char *b = bufs[next++ % 4];
	size_t o = 0;

	if (s == NULL)
		s = "";
	b[o++] = '"';
	for (; *s != '\0' && o < sizeof(bufs[0]) - 6; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			b[o++] = '\\';
			b[o++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			o += (size_t)snprintf(b + o, 5, "\\x%02x", ch);
		} else {
			b[o++] = (char)ch;
		}
	}
	b[o++] = '"';
	b[o] = '\0';
	return b;
}
