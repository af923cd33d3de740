/*
 * accounts: real Unix accounts for the integration tests that need them (needs root), made
 * with groupadd/useradd and removed with userdel/groupdel, and programs run as them through
 * runuser so that their supplementary groups are their own: the daemon reads those to match
 * group rules, which numeric uids alone (it.h) cannot show.
 *
 * Each test names its users and groups with a prefix of its own (pcsm-, pcsr-, pcsh-), so the
 * leftovers of a crashed run are found by name and removed before the next. useradd locks
 * /etc/passwd: ctest runs these tests under RESOURCE_LOCK unix_accounts.
 */
#ifndef PCS_TESTS_ACCOUNTS_H
#define PCS_TESTS_ACCOUNTS_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#include "it.h"

struct acct_user {
	const char *name;
	const char *groups; /* supplementary groups besides IT_GROUP, comma-separated; "" none */
	int outside;        /* 1: not in IT_GROUP, so the daemon's socket is closed to it */
	uid_t uid;          /* set by acct_make */
	gid_t gid;          /* its primary group, set by acct_make */
};

struct acct_set {
	struct acct_user *users;
	size_t n;
	const char *const *groups; /* the test's own groups, made first; NULL-terminated */
	const char *clients;       /* the name IT_GROUP gets when it has to be made */
	int made_clients;          /* set by acct_make: acct_remove removes IT_GROUP too */
};

/* system() of a formatted command line; its status. */
int acct_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Removes what an earlier run left, then makes the groups and the users; 0 or -1. */
int acct_make(struct acct_set *s);
/* Removes the users and the groups acct_make made. */
void acct_remove(struct acct_set *s);
/* The id of a group, (gid_t)-1 when there is none. */
gid_t acct_gid(const char *group);

/*
 * Installs the build (cmake --install of $PCS_BUILD_DIR) in a new directory made from tmpl
 * ("/tmp/NAME-XXXXXX"), mode 0755 so that the accounts may run what is in it; with_example,
 * the SDK's example program goes in as bin/pcsecret-resolve. prefix and bin get the paths.
 */
int acct_install(const char *tmpl, char *prefix, size_t psize, char *bin, size_t bsize,
    int with_example);
/* Removes prefix if acct_install made it from tmpl. */
void acct_uninstall(const char *tmpl, const char *prefix);

/*
 * Runs bin/prog with the NULL-terminated arguments in ap as user (NULL: as root, without
 * runuser), with PCSECRET_SOCKET=socket, env and stdin_data as it_run takes them. Returns
 * it_run's result (0 when the program ran); r holds its status and output.
 */
int acct_runv(const char *user, const char *bin, const char *socket, const char *const *env,
    const char *stdin_data, struct it_result *r, const char *prog, va_list ap);

#endif
