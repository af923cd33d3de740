/*
 * srv: the fixture of the test_server_* executables (the server core under real load and bad
 * input, over raw frames; see wire.h). Each executable gets its own database and its own main
 * daemon, started with limits raised for the load tests, and runs srv_test_setup_data first:
 * acme, acme/k1 (SRV_VAL1) and acme/big (srv_big_value), agent acme/bot (IT_AGENT_UID) granted
 * both. Split by concern so that ctest runs them side by side; within one executable the
 * tests run in order and share the daemon.
 *
 * Clients that must be an agent are forked and setuid to IT_AGENT_UID (needs root, like the
 * end-to-end test; skipped otherwise). Under AddressSanitizer the load is scaled down
 * (srv.scale; PCS_SERVER_TEST_SCALE overrides it).
 */
#ifndef PCS_TESTS_SRV_H
#define PCS_TESTS_SRV_H

#include <stddef.h>
#include <stdint.h>

#include "it.h"
#include "wire.h"

#if defined(__SANITIZE_ADDRESS__)
#define SRV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SRV_ASAN 1
#endif
#endif
#ifndef SRV_ASAN
#define SRV_ASAN 0
#endif

#define SRV_VAL1 "server-test-value-1"
#define SRV_BIG_LEN 60000

struct srv {
	struct it_daemon d;   /* the main daemon */
	char conninfo[512];   /* its database */
	char scratch[64];     /* a directory for the test's own files, mode 0777 */
	char instance_id[64]; /* the main daemon's, from srv_test_setup_data's Hello */
	unsigned scale;       /* load divisor: 1 normally, more under ASan */
};

extern struct srv srv;
extern uint8_t srv_big_value[SRV_BIG_LEN];

/* Group set-up: database db, the scratch directory, the main daemon. */
int srv_setup(const char *db);
/* The same with extra daemon flags (NULL-terminated; they come last, so they win). */
int srv_setup_args(const char *db, const char *const *extra);
/* Group teardown: the main daemon and the scratch directory go. */
void srv_teardown(void);
/* Per-test teardown: a table lock a failed test still holds is dropped. */
int srv_after_test(void **state);
/* The first test of each executable: the data above, over raw frames. */
void srv_test_setup_data(void **state);

int srv_need_root(void);
int srv_file_has(const char *path, const char *needle);
int srv_create_secret(struct wire *w, uint64_t id, const char *name, const uint8_t *v,
    size_t len);
int srv_list_companies(struct wire *w, uint64_t id);
/* A fresh admin connection: Hello and one call work. */
int srv_serves(const char *path);

/*
 * A second daemon t on the same database and key with tight limits (idle_timeout 3 s,
 * read_timeout 0.8 s, max_connections 8, max_inflight 1, max_value 1024), logging to log
 * (made in srv.scratch).
 */
int srv_start_tight(struct it_daemon *t, char *log, size_t size);

enum srv_bad {
	SRV_BAD_LEN0,
	SRV_BAD_TOO_LONG,
	SRV_BAD_GARBAGE,
	SRV_BAD_CALL_ID0,
	SRV_BAD_UNKNOWN_ID,
	SRV_BAD_UNKNOWN_NAME,
	SRV_BAD_WRONG_MESSAGE,
	SRV_BAD_BEFORE_HELLO,
	SRV_BAD_SECOND_HELLO,
	SRV_BAD_TRUNCATED, /* half a frame, then the peer hangs up */
	SRV_BAD_KINDS
};

/*
 * Sends one kind of bad input on a fresh connection and checks the documented answer:
 * the status, a message naming the problem, and whether the daemon closes. Returns NULL on
 * success or what went wrong (no assertions: forked clients call it too).
 */
const char *srv_bad_input(const char *path, enum srv_bad kind);

#endif
