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
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int log_level_from_name(const char *name);
/* Sends logs to path (appending), or back to stderr when path is NULL. */
int log_open(const char *path, pcs_error *err);
/* Reopens the current log file (after rotation). */
int log_reopen(pcs_error *err);
void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Quotes s for logfmt ("..." with \" and control characters escaped); rotating buffers. */
const char *log_q(const char *s);

#endif
