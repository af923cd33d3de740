/* pcctl keys init: a new master key file. The only command that needs no daemon. */
#include <stdio.h>

#include "keyfile.h"
#include "pcctl_cmd.h"

static int cmd_keys_init(struct ctl *ctl, const struct ctl_args *args, pcs_error *err)
{
	const char *path = ctl_value(args, "out");
	int r;

	if (path == NULL)
		return ctl_usage_fail(ctl, err, "keys init needs --out FILE");
	if ((r = keyfile_create(path, err)) != 0)
		return r;
	if (ctl->json)
		return ctl_emit(
		    json_pack("{s:o, s:s}", "path", json_text(path), "mode", "0600"), err);
	printf("wrote a new master key to %s (mode 0600)\n", path);
	return 0;
}

const struct ctl_command ctl_keys_commands[] = {
	{ "keys", "init", "--out FILE",
	    "write a new master key file (mode 0600); needs no "
	    "daemon",
	    0, 0, { { "out", CTL_VALUE } }, cmd_keys_init },
	{ .group = NULL },
};
