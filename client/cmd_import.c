/*
 * pcctl secret import: many secrets from a JSON-lines file, each created by the daemon's
 * CreateSecret call (so each is encrypted under its own data key and audited in its own
 * transaction, as `secret create` does), with up to --parallel calls in flight on the one
 * connection (pcs_rpc_start/pcs_rpc_finish), so the daemon's pool is kept busy instead of
 * waiting for one round trip and one commit at a time.
 *
 * Not a transaction: a line's secret exists once its reply says so. On the first failure
 * (a malformed line, or a call the daemon refuses) nothing more is sent, the calls already in
 * flight are waited for, and the summary counts exactly what was created, skipped and failed
 * before the error names the first failing line (docs/cli.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "import_input.h"
#include "pbwipe.h"
#include "pcctl_cmd.h"

#define PARALLEL_DEFAULT 32
#define PARALLEL_MAX 256

/* A call in flight and the line it came from. */
struct slot {
	struct pcs_rpc_call *call;
	unsigned long line;
	char secret[2 * PCS_NAME_MAX + 2]; /* "company/name", for the error message */
};

struct import {
	struct ctl *ctl;
	int skip_existing;
	struct slot *ring; /* the calls in flight, oldest at head */
	size_t cap, head, n;
	unsigned long created, skipped, failed;
	unsigned long last_sent; /* the line of the last call sent */
	unsigned long lines;     /* lines read */
	unsigned long err_line;  /* the first failing line, 0 while none failed */
	pcs_error first;         /* its error, prefixed with the line */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps the failure of the earliest line: the one the operator must fix first. */
static void note_error(
    struct import *im, unsigned long line, const char *secret, const pcs_error *e)
{
	const char *hint = "";

	if (im->err_line != 0 && im->err_line < line)
		return;
	if (e->code == PCS_ALREADY_EXISTS)
		hint = " (--skip-existing counts existing names and goes on)";
	im->err_line = line;
	/* A long name may cut the daemon's message short; the line number comes first. */
	if (secret != NULL)
		(void)pcs_fail(
		    &im->first, e->code, "line %lu (%s): %s%s", line, secret, e->message, hint);
	else
		(void)pcs_fail(&im->first, e->code, "line %lu: %s", line, e->message);
}

/* Waits for the oldest call in flight and counts its outcome. */
static void settle_oldest(struct import *im)
{
	struct slot *s = &im->ring[im->head];
	ProtobufCMessage *rep = NULL;
	pcs_error e = { 0 };
	int r;

	r = pcs_rpc_finish(im->ctl->client, s->call, &rep, &e);
	s->call = NULL;
	if (rep != NULL)
		protobuf_c_message_free_unpacked(rep, &pbwipe_allocator);
	if (r == 0) {
		im->created++;
	} else if (r == -PCS_ALREADY_EXISTS && im->skip_existing) {
		im->skipped++;
	} else {
		im->failed++;
		note_error(im, s->line, s->secret, &e);
	}
	im->head = (im->head + 1) % im->cap;
	im->n--;
}

/* Sends item's CreateSecret; its value is in the frame once this returns. */
static int send_item(struct import *im, unsigned long line, const struct import_item *item)
{
	Pcsecret__V1__CreateSecretRequest req = PCSECRET__V1__CREATE_SECRET_REQUEST__INIT;
	struct slot *s = &im->ring[(im->head + im->n) % im->cap];
	pcs_error e = { 0 };
	int r;

	req.company = (char *)item->company;
	req.name = (char *)item->name;
	req.description = (char *)item->description;
	req.value.data = (uint8_t *)item->value;
	req.value.len = item->value_len;
	(void)snprintf(s->secret, sizeof(s->secret), "%s/%s", item->company, item->name);
	s->line = line;
	if ((r = pcs_rpc_start(im->ctl->client, "CreateSecret", &req.base, &s->call, &e)) != 0) {
		im->failed++;
		note_error(im, line, s->secret, &e);
		return r;
	}
	im->n++;
	im->last_sent = line;
	return 0;
}

/* Reads, sends and settles until the input ends or something fails; then drains. */
static void import_run(struct import *im, struct import_input *in)
{
	struct import_item item;
	pcs_error e = { 0 };
	int r;

	while (im->err_line == 0) {
		if (im->n == im->cap) {
			settle_oldest(im);
			continue;
		}
		r = import_input_next(in, &item, &e);
		im->lines = import_input_line(in);
		if (r == 0)
			break;
		if (r < 0) {
			note_error(im, im->lines, NULL, &e);
			break;
		}
		if (send_item(im, im->lines, &item) != 0)
			break;
	}
	while (im->n > 0)
		settle_oldest(im);
}

/* Milliseconds are all a person or a script needs of a duration or a rate. */
static double round3(double x) { return (double)(long long)(x * 1000 + 0.5) / 1000; }

static int report(const struct import *im, double seconds, pcs_error *err)
{
	double rate = seconds > 0 ? (double)(im->created + im->skipped) / seconds : 0;
	json_t *doc;

	if (im->ctl->json) {
		doc = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:o, s:o}", "created",
		    (json_int_t)im->created, "skipped", (json_int_t)im->skipped, "failed",
		    (json_int_t)im->failed, "lines", (json_int_t)im->lines, "last_line_sent",
		    (json_int_t)im->last_sent, "elapsed_s", round3(seconds), "per_second",
		    round3(rate), "stopped_at_line",
		    im->err_line != 0 ? json_integer((json_int_t)im->err_line) : json_null(),
		    "error",
		    im->err_line != 0 ?
		        json_pack("{s:s, s:o}", "status", pcs_status_name(im->first.code),
		            "message", json_text(im->first.message)) :
		        json_null());
		return ctl_emit(doc, err);
	}
	printf("created %lu, skipped %lu, failed %lu in %.2f s (%.0f per second)\n", im->created,
	    im->skipped, im->failed, seconds, rate);
	if (im->err_line != 0 && im->last_sent > im->err_line)
		printf("stopped at line %lu: every line before it is done; lines %lu-%lu were "
		       "already sent and are counted above\n",
		    im->err_line, im->err_line + 1, im->last_sent);
	else if (im->err_line != 0)
		printf("stopped at line %lu: every line before it is done, nothing after it was "
		       "sent\n",
		    im->err_line);
	return 0;
}

int ctl_secret_import(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	const char *company = ctl_value(args, "company");
	const char *parallel = ctl_value(args, "parallel");
	struct import im = { .ctl = ctl, .skip_existing = ctl_flag(args, "skip-existing") };
	struct import_input *in = NULL;
	uint32_t cap = PARALLEL_DEFAULT;
	double t0;
	int r;

	if (parallel != NULL && (r = ctl_parse_u32(ctl, "--parallel", parallel, &cap, err)) != 0)
		goto out;
	if (cap < 1 || cap > PARALLEL_MAX) {
		r = ctl_usage_fail(ctl, err, "--parallel must be 1 to %d", PARALLEL_MAX);
		goto out;
	}
	if (company != NULL && !name_valid(company)) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "--company \"%s\" is not a valid name (1 to 128 of a-z, 0-9, '-', '_', '.')",
		    company);
		goto out;
	}
	im.cap = cap;
	if ((im.ring = calloc(im.cap, sizeof(*im.ring))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	/* Connected first: a missing daemon should fail before any value is read. */
	if ((r = ctl_connect(ctl, err)) != 0 ||
	    (r = import_input_open(args->pos[0], company, &in, err)) != 0)
		goto out;
	t0 = now_s();
	import_run(&im, in);
	if ((r = report(&im, now_s() - t0, err)) != 0)
		goto out;
	if (im.err_line != 0) {
		*err = im.first;
		r = -im.first.code;
		goto out;
	}
	r = 0;
out:
	import_input_close(in);
	free(im.ring);
	return r;
}
