/*
 * it: the integration-test harness. Starts the real pcsecretd on its own database of the
 * private cluster (the ctest "pg" fixture), and runs the real binaries as other Unix users
 * (fork + setuid; the kernel reports the numeric uid through SO_PEERCRED, so no accounts are
 * needed). Tests that switch users need root; they are skipped otherwise.
 */
#ifndef PCS_TESTS_IT_H
#define PCS_TESTS_IT_H

#include <stddef.h>
#include <sys/types.h>

#define IT_GROUP 40000        /* owns the daemon's socket */
#define IT_AGENT_UID 40010    /* in IT_GROUP */
#define IT_AGENT2_UID 40014   /* in IT_GROUP */
#define IT_STRANGER_UID 40011 /* in IT_GROUP, no principal */
#define IT_OUTSIDER_UID 40012 /* not in IT_GROUP: cannot open the socket */
#define IT_OPERATOR_UID 40013 /* in IT_GROUP */

/*
 * The database role the daemons run as (database_url); the role of the connection string a
 * test passes (the cluster's superuser) applies migrations (migrate_database_url), as the
 * owner does in production.
 */
#define IT_SERVICE_ROLE "pcs_it_service"

struct it_daemon {
	char dir[64];
	char socket[128];
	char keyfile[128];
	char log[128];
	char conninfo[512];          /* the owner's: migrate_database_url */
	char service_conninfo[600];  /* the same as IT_SERVICE_ROLE: database_url */
	pid_t pid;
};

/* Extra start-up options for it_daemon_start_opts; every field may be 0/NULL. */
struct it_daemon_opts {
	const char *const *args;  /* extra flags (NULL-terminated), after the defaults: they win */
	unsigned long nofile;     /* RLIMIT_NOFILE (soft and hard) set in the child before exec */
	const char *socket;       /* socket path; NULL = pcsecretd.sock in the daemon's directory */
};

struct it_result {
	int status;   /* exit status, or 128 + signal */
	char *out;    /* NUL-terminated */
	size_t out_len;
	char *err;
};

/* "$PCS_BUILD_DIR/rel" in a static buffer (one of four, rotating). */
const char *it_path(const char *rel);
/*
 * Makes a fresh database; conninfo_out gets its connection string, with the search_path of
 * the daemon's SQL API schema (pcs_api_<api_version of sql/api.sql>, public), so tests can call
 * its functions unqualified.
 */
int it_database(const char *name, char *conninfo_out, size_t size);
/*
 * Starts a daemon on conninfo with keyfile (NULL: a new key); waits until it accepts calls.
 * conninfo's role applies the migrations; the daemon runs as IT_SERVICE_ROLE.
 */
int it_daemon_start(struct it_daemon *d, const char *conninfo, const char *keyfile);
/* Same, with extra flags, a descriptor limit or a socket path of the caller's choosing. */
int it_daemon_start_opts(struct it_daemon *d, const char *conninfo, const char *keyfile,
    const struct it_daemon_opts *opts);
/* Same, but expects start-up to fail; returns its exit status, stderr into *err (free it). */
int it_daemon_start_fails(const char *conninfo, const char *keyfile, char **err);
/* SIGTERM and wait; returns the exit status. Keeps the log for inspection. */
int it_daemon_stop(struct it_daemon *d);
/* Sends sig (SIGTERM, SIGINT) and waits; returns the exit status. */
int it_daemon_stop_signal(struct it_daemon *d, int sig);
/* Removes the daemon's directory (log, key, socket). */
void it_daemon_cleanup(struct it_daemon *d);

/*
 * Runs argv[0] (a path) as uid (0 = as we are) with PCSECRET_SOCKET=socket and the extra
 * "NAME=value" strings in env (NULL-terminated, may be NULL), stdin_data on standard input.
 */
int it_run(uid_t uid, const char *socket, const char *const *env, const char *stdin_data,
    const char *const *argv, struct it_result *r);
void it_result_free(struct it_result *r);
/* 1 when the file contains needle (binary-safe), 0 when not, -1 when it cannot be read. */
int it_file_contains(const char *path, const char *needle, size_t len);
/* 1 when buf contains needle. */
int it_mem_contains(const char *buf, size_t len, const char *needle, size_t nlen);
int it_is_root(void);

#endif
