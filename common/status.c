#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "status.h"
#include "pcsecret.pb-c.h"

/* The SDK's codes travel on the wire as StatusCode: they must never drift apart. */
#define PCS_SAME_CODE(x) \
	_Static_assert((int)PCS_##x == (int)PCSECRET__V1__STATUS_CODE__##x, \
	    "PCS_" #x " differs from pcsecret.v1.StatusCode." #x)
PCS_SAME_CODE(OK);
PCS_SAME_CODE(CANCELLED);
PCS_SAME_CODE(UNKNOWN);
PCS_SAME_CODE(INVALID_ARGUMENT);
PCS_SAME_CODE(DEADLINE_EXCEEDED);
PCS_SAME_CODE(NOT_FOUND);
PCS_SAME_CODE(ALREADY_EXISTS);
PCS_SAME_CODE(PERMISSION_DENIED);
PCS_SAME_CODE(RESOURCE_EXHAUSTED);
PCS_SAME_CODE(FAILED_PRECONDITION);
PCS_SAME_CODE(ABORTED);
PCS_SAME_CODE(OUT_OF_RANGE);
PCS_SAME_CODE(UNIMPLEMENTED);
PCS_SAME_CODE(INTERNAL);
PCS_SAME_CODE(UNAVAILABLE);
PCS_SAME_CODE(DATA_LOSS);
PCS_SAME_CODE(UNAUTHENTICATED);
#undef PCS_SAME_CODE

static const char *const status_names[] = {
	[PCS_OK] = "OK",
	[PCS_CANCELLED] = "CANCELLED",
	[PCS_UNKNOWN] = "UNKNOWN",
	[PCS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
	[PCS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
	[PCS_NOT_FOUND] = "NOT_FOUND",
	[PCS_ALREADY_EXISTS] = "ALREADY_EXISTS",
	[PCS_PERMISSION_DENIED] = "PERMISSION_DENIED",
	[PCS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
	[PCS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[PCS_ABORTED] = "ABORTED",
	[PCS_OUT_OF_RANGE] = "OUT_OF_RANGE",
	[PCS_UNIMPLEMENTED] = "UNIMPLEMENTED",
	[PCS_INTERNAL] = "INTERNAL",
	[PCS_UNAVAILABLE] = "UNAVAILABLE",
	[PCS_DATA_LOSS] = "DATA_LOSS",
	[PCS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};
#define STATUS_COUNT ((int)(sizeof(status_names) / sizeof(status_names[0])))

const char *pcs_status_name(int code)
{
	if (code < 0 || code >= STATUS_COUNT)
		return "UNKNOWN";
	return status_names[code];
}

int pcs_status_from_name(const char *name)
{
	int code;

	if (name == NULL)
		return -1;
	for (code = 0; code < STATUS_COUNT; code++) {
		if (strcmp(status_names[code], name) == 0)
			return code;
	}
	return -1;
}

int pcs_fail(pcs_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	/* Callers pass on a negative status as often as a positive one: accept both. */
	if (code < 0)
		code = -code;
	/* A failure reported as OK would read as success to every caller up the chain. */
	if (code == PCS_OK)
		code = PCS_UNKNOWN;
	if (err != NULL) {
		err->code = code;
		va_start(ap, fmt);
		(void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return -code;
}

void pcs_error_clear(pcs_error *err)
{
	if (err == NULL)
		return;
	err->code = PCS_OK;
	memset(err->message, 0, sizeof(err->message));
}
