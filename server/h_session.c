/* Hello: the handshake that establishes who the peer is. */
#include <stdio.h>

#include "conn.h"
#include "dispatch.h"
#include "handlers.h"
#include "principal.h"
#include "server.h"

static void hello_reply(struct call *c)
{
	struct conn *conn = call_conn(c);
	struct server *srv = call_server(c);
	Pcsecret__V1__HelloReply rep = PCSECRET__V1__HELLO_REPLY__INIT;
	struct principal_proto pp;

	conn->hello_state = 2;
	if (call_authorize(c, NULL, NULL) != 0)
		return;
	principal_to_proto(&conn->principal, &pp);
	rep.protocol_version = PCS_PROTOCOL_VERSION;
	rep.server_version = (char *)PCS_VERSION;
	rep.instance_id = srv->instance_id;
	rep.principal = &pp.msg;
	call_reply(c, &rep.base);
}

static void on_lookup(struct call *c, const struct store_result *res)
{
	struct conn *conn = call_conn(c);
	pcs_error err;
	int r;

	if ((r = principal_from_rows(&conn->principal, res, &err)) != 0) {
		conn->hello_state = 0;
		call_fail_err(c, r, &err);
		return;
	}
	hello_reply(c);
}

PCS_HANDLER(hello, HelloRequest, HelloReply)
{
	HANDLER_PROLOGUE(c);
	struct conn *conn = call_conn(c);
	char gids[CONN_MAX_GROUPS * 12 + 4], uid[16];
	const char *values[2];
	struct store_query q = { 0 };
	size_t o = 0;

	if (in->protocol_version != PCS_PROTOCOL_VERSION) {
		conn->hello_state = 0;
		call_fail(c, PCS_FAILED_PRECONDITION,
		    "protocol version %u is not supported; this server speaks version %d",
		    in->protocol_version, PCS_PROTOCOL_VERSION);
		return;
	}
	if (principal_bootstrap(&conn->principal, call_server(c)->self_uid)) {
		hello_reply(c);
		return;
	}
	gids[o++] = '{';
	for (size_t i = 0; i < conn->ngroups; i++)
		o += (size_t)snprintf(gids + o, sizeof(gids) - o, "%s%u", i ? "," : "",
		    (unsigned)conn->groups[i]);
	snprintf(gids + o, sizeof(gids) - o, "}");
	snprintf(uid, sizeof(uid), "%u", (unsigned)conn->uid);
	values[0] = uid;
	values[1] = gids;
	q.sql = "SELECT * FROM pcs_principal_lookup($1, $2)";
	q.nparams = 2;
	q.values = values;
	call_db(c, &q, 0, on_lookup);
}
