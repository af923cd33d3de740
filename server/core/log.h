/*
 * log: one line per event in logfmt on stderr (or a file reopened on SIGHUP).
 * Callers pass key=value pairs; string values that come from outside go through log_q().
 * Never pass payloads, values, keys, connection strings or PostgreSQL error details.
 */
#ifndef PCS_SERVER_LOG_H
#define PCS_SERVER_LOG_H

#include "status.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

void log_set_level(enum log_level level);
/*
 * At most per_second lines per event name in each second (0 = unlimited); the rest are
 * counted and reported later as one "log_suppressed event=NAME count=N" line, written before
 * the next line of any event once that second is over (or by log_flush_suppressed).
 */
#define LOG_RATE_DEFAULT 20
void log_set_rate(unsigned per_second);
/* Writes the pending log_suppressed lines now (before exit, or from a timer). */
void log_flush_suppressed(void);
/* Lines dropped by the rate limit since start-up. */
unsigned long log_suppressed_total(void);
/* For tests: the clock the limit counts seconds with (NULL = CLOCK_MONOTONIC). */
void log_set_clock(long (*now_seconds)(void));
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int log_level_from_name(const char *name) PCS_WUR;
/* Sends logs to path (appending), or back to stderr when path is NULL. */
int log_open(const char *path, pcs_error *err) PCS_WUR;
/* Reopens the current log file (after rotation). */
int log_reopen(pcs_error *err) PCS_WUR;
void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Quotes s for logfmt ("..." with \" escaped, and control characters and bytes that are not
 * UTF-8 as \xNN); rotating buffers.
 */
const char *log_q(const char *s);

#endif
