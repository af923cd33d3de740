/* What pcctl's command handlers share: options, numbers, the connection, the reply, output. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbwipe.h"
#include "pcctl_cmd.h"

static int opt_index(const struct ctl_args *args, const char *name, enum ctl_opt_kind kind)
{
	const struct ctl_opt *o;
	int i;

	for (i = 0; i < CTL_OPTS_MAX; i++) {
		o = &args->cmd->opts[i];
		if (o->name == NULL)
			break;
		if (strcmp(o->name, name) == 0 && o->kind == kind)
			return i;
	}
	/* A handler asking for an option its row lacks would silently ignore it: stop instead. */
	fprintf(stderr, "pcctl: internal error: %s %s has no option --%s\n", args->cmd->group,
	    args->cmd->verb != NULL ? args->cmd->verb : "", name);
	abort();
}

const char *ctl_value(const struct ctl_args *args, const char *name)
{
	return args->value[opt_index(args, name, CTL_VALUE)];
}

int ctl_flag(const struct ctl_args *args, const char *name)
{
	return args->value[opt_index(args, name, CTL_FLAG)] != NULL;
}

int ctl_path_parse(
    const char *s, struct ctl_path *path, char **company, char **name, pcs_error *err)
{
	int r;

	if ((r = ref_parse_path(s, path->company, path->name, err)) != 0)
		return r;
	*company = path->company;
	*name = path->name;
	return 0;
}

int ctl_usage_fail(struct ctl *ctl, pcs_error *err, const char *fmt, ...)
{
	va_list ap;

	ctl->usage = 1;
	if (err != NULL) {
		err->code = PCS_INVALID_ARGUMENT;
		va_start(ap, fmt);
		(void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return -PCS_INVALID_ARGUMENT;
}

int ctl_parse_u64(
    struct ctl *ctl, const char *what, const char *s, uint64_t max, uint64_t *out, pcs_error *err)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (s[0] < '0' || s[0] > '9' || (v = strtoull(s, &end, 10), errno != 0) || *end != '\0' ||
	    v > max)
		return ctl_usage_fail(
		    ctl, err, "%s \"%s\" is not a number from 0 to %" PRIu64, what, s, max);
	*out = (uint64_t)v;
	return 0;
}

int ctl_parse_u32(struct ctl *ctl, const char *what, const char *s, uint32_t *out, pcs_error *err)
{
	uint64_t v = 0;
	int r;

	if ((r = ctl_parse_u64(ctl, what, s, UINT32_MAX, &v, err)) != 0)
		return r;
	*out = (uint32_t)v;
	return 0;
}

int ctl_connect(struct ctl *ctl, pcs_error *err)
{
	pcs_options opts = { 0 };

	if (ctl->client != NULL)
		return 0;
	opts.socket_path = ctl->socket;
	return pcs_connect(&opts, &ctl->client, err);
}

static void reply_free(struct ctl *ctl)
{
	if (ctl->reply != NULL)
		protobuf_c_message_free_unpacked(ctl->reply, &pbwipe_allocator);
	ctl->reply = NULL;
}

int ctl_call(struct ctl *ctl, const char *method, const ProtobufCMessage *req, pcs_error *err)
{
	int r;

	reply_free(ctl);
	if ((r = ctl_connect(ctl, err)) != 0)
		return r;
	return pcs_rpc_call(ctl->client, method, req, &ctl->reply, err);
}

int ctl_hello(struct ctl *ctl, const Pcsecret__V1__HelloReply **hello, pcs_error *err)
{
	int r;

	if ((r = ctl_connect(ctl, err)) != 0)
		return r;
	if ((*hello = pcs_rpc_hello(ctl->client)) == NULL)
		return pcs_fail(err, PCS_INTERNAL, "no handshake reply");
	return 0;
}

void ctl_release(struct ctl *ctl)
{
	reply_free(ctl);
	pcs_close(ctl->client);
	ctl->client = NULL;
}

int ctl_no_reply_field(const char *method, pcs_error *err)
{
	return pcs_fail(err, PCS_INTERNAL, "pcsecretd sent a %s reply without its result", method);
}

int ctl_emit(json_t *doc, pcs_error *err)
{
	if (json_emit(doc) != 0)
		return pcs_fail(err, PCS_INTERNAL, "cannot write the JSON output");
	return 0;
}

json_t *ctl_json_array(const void *items, size_t n, ctl_item_json_fn *json)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		(void)json_array_append_new(a, json(items, i));
	return a;
}

int ctl_emit_array(const void *items, size_t n, ctl_item_json_fn *json, pcs_error *err)
{
	return ctl_emit(ctl_json_array(items, n, json), err);
}

int ctl_print_table(
    struct table *t, const void *items, size_t n, ctl_item_row_fn *row, pcs_error *err)
{
	size_t i;

	for (i = 0; t != NULL && i < n; i++) {
		if (row(t, items, i) != 0) {
			table_free(t);
			t = NULL;
		}
	}
	if (t == NULL)
		return pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
	table_print(t, stdout);
	table_free(t);
	return 0;
}
