/*
 * Hello: the handshake. The caller was identified like every call (dispatch looks the
 * principal up for each one); Hello checks the protocol version and tells the peer who it is.
 */
#include <stdio.h>

#include "dispatch.h"
#include "handlers.h"
#include "principal.h"
#include "server.h"

void handle_hello(Pcsecret__V1__PcSecret_Service *svc, const Pcsecret__V1__HelloRequest *in,
    Pcsecret__V1__HelloReply_Closure closure, void *closure_data)
{
	HANDLER_PROLOGUE(c);
	struct server *srv = call_server(c);
	Pcsecret__V1__HelloReply rep = PCSECRET__V1__HELLO_REPLY__INIT;
	struct principal_proto pp;

	if (in->protocol_version != PCS_PROTOCOL_VERSION) {
		call_fail(c, PCS_FAILED_PRECONDITION,
		    "protocol version %u is not supported; this server speaks version %d",
		    in->protocol_version, PCS_PROTOCOL_VERSION);
		return;
	}
	/* The session is established when this reply leaves with its audit row (dispatch). */
	if (call_authorize(c, NULL, NULL) != 0)
		return;
	principal_to_proto(call_principal(c), &pp);
	rep.protocol_version = PCS_PROTOCOL_VERSION;
	rep.server_version = (char *)PCS_VERSION;
	rep.instance_id = srv->instance_id;
	rep.principal = &pp.msg;
	call_reply(c, &rep.base);
}
