/*
 * accounts: real Unix accounts and programs run as them (accounts.h). Shared by test_roles,
 * test_hostile_roles and test_hostile_client, which used to carry copies of it.
 */
#include "accounts.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int acct_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* What is there to remove, whether this run made it or a crashed one did. */
static void remove_named(const struct acct_set *s, int clients)
{
	for (size_t i = 0; i < s->n; i++)
		acct_sh("userdel %s >/dev/null 2>&1", s->users[i].name);
	for (size_t i = 0; s->groups != NULL && s->groups[i] != NULL; i++)
		acct_sh("groupdel %s >/dev/null 2>&1", s->groups[i]);
	if (clients)
		acct_sh("groupdel %s >/dev/null 2>&1", s->clients);
}

int acct_make(struct acct_set *s)
{
	struct passwd *pw;
	struct group *gr;

	remove_named(s, 0);
	/*
	 * The daemon's socket belongs to IT_GROUP. Made under our name when missing; found under
	 * our name, it is what a crashed run of this test left, and goes at the end as well.
	 */
	s->made_clients = 0;
	if ((gr = getgrgid(IT_GROUP)) == NULL) {
		if (acct_sh("groupadd -g %d %s", IT_GROUP, s->clients) != 0)
			return -1;
		s->made_clients = 1;
	} else if (strcmp(gr->gr_name, s->clients) == 0) {
		s->made_clients = 1;
	}
	for (size_t i = 0; s->groups != NULL && s->groups[i] != NULL; i++)
		if (acct_sh("groupadd %s", s->groups[i]) != 0)
			return -1;
	for (size_t i = 0; i < s->n; i++) {
		struct acct_user *u = &s->users[i];
		char list[256];

		if (u->outside)
			snprintf(list, sizeof(list), "%s", u->groups);
		else
			snprintf(list, sizeof(list), "%d%s%s", IT_GROUP, u->groups[0] != '\0' ? "," : "",
			    u->groups);
		if (acct_sh("useradd --no-create-home --shell /bin/sh %s%s %s",
		    list[0] != '\0' ? "-G " : "", list, u->name) != 0)
			return -1;
		if ((pw = getpwnam(u->name)) == NULL)
			return -1;
		u->uid = pw->pw_uid;
		u->gid = pw->pw_gid;
	}
	return 0;
}

void acct_remove(struct acct_set *s)
{
	remove_named(s, s->made_clients);
	s->made_clients = 0;
}

gid_t acct_gid(const char *group)
{
	struct group *gr = getgrnam(group);

	return gr != NULL ? gr->gr_gid : (gid_t)-1;
}

int acct_install(const char *tmpl, char *prefix, size_t psize, char *bin, size_t bsize,
    int with_example)
{
	const char *build = getenv("PCS_BUILD_DIR");

	if (build == NULL || snprintf(prefix, psize, "%s", tmpl) >= (int)psize)
		return -1;
	if (mkdtemp(prefix) == NULL)
		return -1;
	if (chmod(prefix, 0755) != 0 ||
	    acct_sh("cmake --install '%s' --prefix '%s' >/dev/null", build, prefix) != 0)
		return -1;
	if (snprintf(bin, bsize, "%s/bin", prefix) >= (int)bsize)
		return -1;
	if (with_example && acct_sh("cp '%s' '%s/pcsecret-resolve' && chmod 755 "
	    "'%s/pcsecret-resolve'", it_path("sdk/examples/resolve"), bin, bin) != 0)
		return -1;
	return 0;
}

void acct_uninstall(const char *tmpl, const char *prefix)
{
	size_t fixed = strlen(tmpl) - strlen("XXXXXX");

	/* Only what acct_install made: a failed set-up may leave prefix empty or the template. */
	if (strlen(prefix) > fixed && strncmp(prefix, tmpl, fixed) == 0 &&
	    strcmp(prefix + fixed, "XXXXXX") != 0)
		acct_sh("rm -rf '%s'", prefix);
}

int acct_runv(const char *user, const char *bin, const char *socket, const char *const *env,
    const char *stdin_data, struct it_result *r, const char *prog, va_list ap)
{
	const char *argv[40];
	char path[192];
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/%s", bin, prog);
	if (user != NULL) {
		argv[n++] = "/usr/sbin/runuser";
		argv[n++] = "-u";
		argv[n++] = user;
		argv[n++] = "--";
	}
	argv[n++] = path;
	while (n < 38 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	argv[n] = NULL;
	return it_run(0, socket, env, stdin_data, argv, r);
}
