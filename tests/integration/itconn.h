/*
 * itconn: sessions to one daemon for the integration tests, as root or as another uid (the
 * connection opened by a child running as that uid and handed back, wire_connect_as), their
 * calls, SQL text queries on the daemon's database and the audit rows of the admin's calls.
 *
 * The test fills a struct itconn_env with its daemon's socket and its superuser conninfo;
 * the daemon's instance id is filled in by the Hello of the first root session.
 *
 * Unlike wire.h, these helpers assert (cmocka): call them from the test process only.
 */
#ifndef PCS_TESTS_ITCONN_H
#define PCS_TESTS_ITCONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pcsecret.pb-c.h"
#include "wire.h"

/* The daemon the sessions talk to. */
struct itconn_env {
	const char *socket;   /* the daemon's socket path */
	const char *conninfo; /* the superuser's conninfo of its database */
	char instance[64];    /* the daemon's, from a root session's Hello: its audit rows */
};

/* One session: its connection and the id of its next call. */
struct itconn {
	struct wire w;
	uint64_t next_id;
};

/* The name of a status code ("no reply" when st < 0). */
const char *itconn_status_name(int st);

/* The text of the first column of the first row of a query on env's database; fails else. */
void itconn_sql_text(const struct itconn_env *env, char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Opens c to env's daemon as uid (0: as root, from this process), its call ids from base,
 * and says Hello; a root session records the daemon's instance id in env. Fails on error.
 */
void itconn_open(struct itconn_env *env, struct itconn *c, uid_t uid, uint64_t base);

/* One call; its status, its message in msg (may be NULL), its reply in *out (may be NULL). */
int itconn_call(struct itconn *c, const char *method, const ProtobufCMessage *req, char *msg,
    size_t size, Pcsecret__V1__Reply **out, uint64_t *id);

/*
 * DescribeSecret of company/name on c, which must succeed with a secret in the reply. The
 * caller frees the reply with pcsecret__v1__describe_secret_reply__free_unpacked(rep, NULL).
 */
Pcsecret__V1__DescribeSecretReply *itconn_describe(
    struct itconn *c, const char *company, const char *name);

/* One call on adm that must succeed. */
void itconn_admin_ok(struct itconn *adm, const char *method, const ProtobufCMessage *req);

/*
 * The audit rows of a root session's call id, each the SQL expression row (on audit_log's
 * columns), joined by ',' in id order ("" when none).
 */
void itconn_audit_of(
    const struct itconn_env *env, const char *row, uint64_t id, char *buf, size_t size);

#endif
