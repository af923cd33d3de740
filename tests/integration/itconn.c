/* itconn: sessions to one daemon for the integration tests (itconn.h). */
#include "itconn.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pgtest.h"

const char *itconn_status_name(int st)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
	    &pcsecret__v1__status_code__descriptor, st);

	return st < 0 ? "no reply" : v != NULL ? v->name : "?";
}

void itconn_sql_text(const struct itconn_env *env, char *buf, size_t size, const char *fmt, ...)
{
	char sql[1024], *v;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	if ((v = pgtest_query_text(env->conninfo, sql)) == NULL)
		fail_msg("no result from: %s", sql);
	snprintf(buf, size, "%s", v);
	free(v);
}

void itconn_open(struct itconn_env *env, struct itconn *c, uid_t uid, uint64_t base)
{
	memset(c, 0, sizeof(*c));
	c->w.fd = -1;
	c->next_id = base;
	if (uid == 0) {
		assert_int_equal(wire_open(&c->w, env->socket), 0);
	} else {
		char msg[2048];
		if ((c->w.fd = wire_connect_as(env->socket, uid, msg, sizeof(msg))) < 0)
			fail_msg("connecting as uid %u: %s", (unsigned)uid, msg);
	}
	if (wire_hello_instance(&c->w, c->next_id++, uid == 0 ? env->instance : NULL,
	        uid == 0 ? sizeof(env->instance) : 0) != PCSECRET__V1__STATUS_CODE__OK)
		fail_msg("uid %u: Hello failed", (unsigned)uid);
}

int itconn_call(struct itconn *c, const char *method, const ProtobufCMessage *req, char *msg,
    size_t size, Pcsecret__V1__Reply **out, uint64_t *id)
{
	Pcsecret__V1__Reply *r = NULL;
	int st;

	if (id != NULL)
		*id = c->next_id;
	st = wire_rpc(&c->w, c->next_id++, wire_mid(method), 0, req, &r, 15000);
	if (msg != NULL)
		snprintf(msg, size, "%s", r != NULL ? r->message : "");
	if (out != NULL)
		*out = r;
	else if (r != NULL)
		pcsecret__v1__reply__free_unpacked(r, NULL);
	return st;
}

void itconn_admin_ok(struct itconn *adm, const char *method, const ProtobufCMessage *req)
{
	char msg[256];
	int st = itconn_call(adm, method, req, msg, sizeof(msg), NULL, NULL);

	if (st != PCSECRET__V1__STATUS_CODE__OK)
		fail_msg("%s: %s %s", method, itconn_status_name(st), msg);
}

void itconn_audit_of(
    const struct itconn_env *env, const char *row, uint64_t id, char *buf, size_t size)
{
	itconn_sql_text(env, buf, size,
	    "SELECT coalesce(string_agg(%s, ',' ORDER BY id), '') FROM audit_log "
	    "WHERE instance_id = '%s' AND peer_uid = 0 AND call_id = %" PRIu64,
	    row, env->instance, id);
}

Pcsecret__V1__DescribeSecretReply *itconn_describe(
    struct itconn *c, const char *company, const char *name)
{
	Pcsecret__V1__DescribeSecretRequest q = PCSECRET__V1__DESCRIBE_SECRET_REQUEST__INIT;
	Pcsecret__V1__DescribeSecretReply *rep;
	Pcsecret__V1__Reply *r = NULL;

	q.company = (char *)company;
	q.name = (char *)name;
	assert_int_equal(itconn_call(c, "DescribeSecret", &q.base, NULL, 0, &r, NULL),
	    PCSECRET__V1__STATUS_CODE__OK);
	rep = pcsecret__v1__describe_secret_reply__unpack(NULL, r->reply.len, r->reply.data);
	pcsecret__v1__reply__free_unpacked(r, NULL);
	assert_non_null(rep);
	assert_non_null(rep->secret);
	return rep;
}
