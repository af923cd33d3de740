#include "rows.h"

#include <stdlib.h>
#include <string.h>

const char *rows_str(const struct store_result *r, int row, int col)
{
	return store_result_value(r, row, col);
}

uint32_t rows_u32(const struct store_result *r, int row, int col)
{
	return (uint32_t)strtoul(store_result_value(r, row, col), NULL, 10);
}

uint64_t rows_u64(const struct store_result *r, int row, int col)
{
	return (uint64_t)strtoull(store_result_value(r, row, col), NULL, 10);
}

#define S(col) ((char *)rows_str(r, row, (col)))

void rows_company(const struct store_result *r, int row, Pcsecret__V1__Company *out)
{
	pcsecret__v1__company__init(out);
	out->id = S(0);
	out->name = S(1);
	out->created_at = S(2);
	out->created_by = S(3);
}

void rows_secret(const struct store_result *r, int row, Pcsecret__V1__SecretInfo *out)
{
	pcsecret__v1__secret_info__init(out);
	out->id = S(0);
	out->company = S(1);
	out->name = S(2);
	out->description = S(3);
	out->current_version = rows_u32(r, row, 4);
	out->created_at = S(5);
	out->updated_at = S(6);
	out->created_by = S(7);
}

void rows_principal(const struct store_result *r, int row, Pcsecret__V1__PrincipalRule *out)
{
	pcsecret__v1__principal_rule__init(out);
	out->id = rows_u64(r, row, 0);
	out->match = S(1);
	out->unix_id = rows_u32(r, row, 2);
	out->role = S(3);
	out->company = S(4);
	out->agent = S(5);
	out->created_at = S(6);
	out->created_by = S(7);
}

int rows_agent(const struct store_result *r, struct rows_agent *out)
{
	int n = store_result_ntuples(r), row = 0;
	size_t k = 0;

	memset(out, 0, sizeof(*out));
	pcsecret__v1__agent_info__init(&out->msg);
	if (n == 0)
		return 0;
	out->msg.id = S(0);
	out->msg.company = S(1);
	out->msg.name = S(2);
	out->msg.uid = rows_u32(r, 0, 3);
	out->msg.created_at = S(4);
	out->msg.created_by = S(5);
	out->bindings = calloc((size_t)n, sizeof(*out->bindings));
	out->refs = calloc((size_t)n, sizeof(*out->refs));
	out->ptrs = calloc((size_t)n, sizeof(*out->ptrs));
	if (out->bindings == NULL || out->refs == NULL || out->ptrs == NULL) {
		rows_agent_free(out);
		return -1;
	}
	for (row = 0; row < n; row++) {
		if (store_result_isnull(r, row, 6))
			continue; /* the agent has no bindings: one row of NULLs */
		pcsecret__v1__env_binding__init(&out->bindings[k]);
		pcsecret__v1__secret_ref__init(&out->refs[k]);
		out->bindings[k].env_name = S(6);
		out->refs[k].company = S(7);
		out->refs[k].name = S(8);
		out->refs[k].version = store_result_isnull(r, row, 9) ? 0 : rows_u32(r, row, 9);
		out->bindings[k].ref = &out->refs[k];
		out->ptrs[k] = &out->bindings[k];
		k++;
	}
	out->msg.env = out->ptrs;
	out->msg.n_env = k;
	return 0;
}

void rows_agent_free(struct rows_agent *a)
{
	free(a->bindings);
	free(a->refs);
	free(a->ptrs);
	memset(a, 0, sizeof(*a));
}

char *rows_text_array(const char *const *items, size_t n)
{
	size_t len = 3, o = 0;
	char *buf;

	for (size_t i = 0; i < n; i++)
		len += strlen(items[i]) + 3;
	if ((buf = malloc(len)) == NULL)
		return NULL;
	buf[o++] = '{';
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(items[i]);
		if (i)
			buf[o++] = ',';
		buf[o++] = '"';
		memcpy(buf + o, items[i], l);
		o += l;
		buf[o++] = '"';
	}
	buf[o++] = '}';
	buf[o] = '\0';
	return buf;
}
