/*
 * Resolves the references given as arguments and says what came back, without the values:
 *
 *   $ PCSECRET_SOCKET=/run/pcsecret/pcsecretd.sock ./resolve pcs:acme/openai-key pcs:acme/db@2
 *   pcs:acme/openai-key: 51 bytes, version 4
 *   pcs:acme/db@2: 24 bytes, version 2
 *
 * Build against an installed SDK with: cc resolve.c $(pkg-config --cflags --libs pcsecret)
 */
#include <stdio.h>

#include <pcsecret.h>

int main(int argc, char **argv)
{
	pcs_client *client = NULL;
	pcs_value *values = NULL;
	pcs_error err = { 0 };
	size_t n, i;
	int status = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: %s REF...\n", argv[0]);
		return 2;
	}
	n = (size_t)(argc - 1);
	/* NULL options: the socket comes from $PCSECRET_SOCKET or the default path. */
	if (pcs_connect(NULL, &client, &err) != 0)
		goto out;
	if (pcs_resolve(client, NULL, (const char *const *)(argv + 1), n, &values, &err) != 0)
		goto out;
	for (i = 0; i < n; i++)
		printf("%s: %zu bytes, version %u\n", values[i].ref, values[i].len,
		    (unsigned)values[i].version);
	status = 0;
out:
	if (status != 0)
		fprintf(stderr, "resolve: %s: %s\n", pcs_status_name(err.code), err.message);
	pcs_values_free(values, n);
	pcs_close(client);
	return status;
}
