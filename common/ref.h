/* Secret references ("pcs:acme/key@3") and the name rules shared by server and clients. */
#ifndef PCS_COMMON_REF_H
#define PCS_COMMON_REF_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

#define PCS_NAME_MAX 128
#define PCS_UUID_LEN 36
#define PCS_ENV_NAME_MAX 255
#define PCS_REF_PREFIX "pcs:"

struct pcs_ref {
	char company[PCS_NAME_MAX + 1]; /* empty when secret_id is set */
	char name[PCS_NAME_MAX + 1];
	char secret_id[PCS_UUID_LEN + 1]; /* lowercase canonical uuid, or empty */
	uint32_t version;                 /* 0 = latest */
};

/*
 * Parses pcs:<company>/<name>[@<version>|@latest] or pcs:<uuid>[@version]. Versions are
 * 1..2^31-1. Returns 0 or -PCS_INVALID_ARGUMENT with err naming what is wrong.
 */
int ref_parse(const char *s, struct pcs_ref *out, pcs_error *err);
/* Writes the canonical string form; returns 0 or -PCS_INVALID_ARGUMENT if it does not fit. */
int ref_format(const struct pcs_ref *ref, char *buf, size_t size);
/* "COMPANY/NAME" (no prefix, no version), used by the CLIs for secrets and agents. */
int ref_parse_path(
    const char *s, char company[PCS_NAME_MAX + 1], char name[PCS_NAME_MAX + 1], pcs_error *err);

/* Lowercase letters, digits, '-', '_', '.'; 1..128 characters; not "." or "..". */
int name_valid(const char *s);
/* [A-Za-z_][A-Za-z0-9_]*, at most 255 characters. */
int env_name_valid(const char *s);
/* 8-4-4-4-12 lowercase hex. */
int uuid_valid(const char *s);

#endif
