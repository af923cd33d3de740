#include "devmode.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keyfile.h"
#include "log.h"
#include "store.h"

#define DEV_PG_PORT "5432"
#define DEV_DATABASE "pcsecret"
#define DEV_OWNER "pcsecret_owner"
#define DEV_SERVICE "pcsecret"

/* The newest installed PostgreSQL's bin directory, or "" to rely on PATH. */
static void find_bindir(char *out, size_t size)
{
	DIR *d = opendir("/usr/lib/postgresql");
	struct dirent *e;
	long best = -1;

	out[0] = '\0';
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		long v = strtol(e->d_name, NULL, 10);
		if (strlen(e->d_name) > 64)
			continue;
		snprintf(path, sizeof(path), "/usr/lib/postgresql/%.64s/bin/initdb", e->d_name);
		if (v > best && access(path, X_OK) == 0) {
			best = v;
			snprintf(out, size, "/usr/lib/postgresql/%.64s/bin", e->d_name);
		}
	}
	closedir(d);
}

/* Runs bindir/prog with args as the cluster's owner, output to logfile. Returns exit status. */
static int run_pg(struct devmode *d, const char *prog, char *const args[], const char *logfile)
{
	char path[PATH_MAX];
	pid_t pid;
	int status, fd;

	if (d->bindir[0] != '\0')
		snprintf(path, sizeof(path), "%s/%s", d->bindir, prog);
	else
		snprintf(path, sizeof(path), "%s", prog);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		if (getuid() != d->pg_uid &&
		    (setgroups(0, NULL) != 0 || setgid(d->pg_gid) != 0 || setuid(d->pg_uid) != 0))
			_exit(126);
		/* Opened as the cluster's owner, so PostgreSQL can append to the same file. */
		if ((fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (d->bindir[0] != '\0')
			execv(path, args);
		else
			execvp(path, args);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The directory is removed on failure, so show what PostgreSQL said first. */
static void print_tail(const char *path)
{
	char buf[2048];
	FILE *fp = fopen(path, "re");
	size_t n;

	if (fp == NULL)
		return;
	if (fseek(fp, -(long)(sizeof(buf) - 1), SEEK_END) != 0)
		rewind(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	fprintf(stderr, "--- %s ---\n%s\n---\n", path, buf);
}

/*
 * The two roles of docs/security.md: the owner applies migrations, the daemon runs as the
 * service role, so --dev works the way a production set-up does (audit rows append-only).
 */
static int make_roles(const char *sockdir, pcs_error *err)
{
	static const char *const steps[] = {
		"CREATE ROLE " DEV_OWNER " LOGIN",
		"CREATE ROLE " DEV_SERVICE " LOGIN",
		"CREATE DATABASE " DEV_DATABASE " OWNER " DEV_OWNER,
		"REVOKE ALL ON DATABASE " DEV_DATABASE " FROM PUBLIC",
		"GRANT CONNECT ON DATABASE " DEV_DATABASE " TO " DEV_SERVICE,
	};
	struct store_sync *db = NULL;
	char url[PATH_MAX + 64];
	size_t i;
	int r;

	snprintf(url, sizeof(url), "host=%s port=" DEV_PG_PORT " user=postgres dbname=postgres",
	    sockdir);
	if ((r = store_sync_connect(url, &db, err)) != 0)
		goto out;
	/* One at a time: CREATE DATABASE refuses to run inside a transaction block. */
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if ((r = store_sync_exec_script(db, steps[i], err)) != 0)
			goto out;
out:
	store_sync_close(db);
	return r;
}

int devmode_start(struct devmode *d, struct config *cfg, pcs_error *err)
{
	char data[PATH_MAX], sockdir[PATH_MAX], log[PATH_MAX], path[PATH_MAX], url[PATH_MAX + 64];
	char opts[PATH_MAX + 64], owner[PATH_MAX + 64];
	struct passwd *pw;
	int r;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/pcsecret-dev-XXXXXX");
	if (mkdtemp(d->dir) == NULL) {
		d->dir[0] = '\0';
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "cannot create a temporary directory: %s", strerror(errno));
	}
	d->pg_uid = getuid();
	d->pg_gid = getgid();
	if (geteuid() == 0) {
		/* PostgreSQL refuses to run as root. */
		if ((pw = getpwnam("postgres")) == NULL)
			return pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "running as root needs a postgres user to run PostgreSQL (apt-get install postgresql)");
		d->pg_uid = pw->pw_uid;
		d->pg_gid = pw->pw_gid;
	}
	find_bindir(d->bindir, sizeof(d->bindir));
	snprintf(sockdir, sizeof(sockdir), "%s/pg", d->dir);
	snprintf(data, sizeof(data), "%s/pg/data", d->dir);
	snprintf(log, sizeof(log), "%s/pg/postgres.log", d->dir);
	if (chmod(d->dir, 0711) != 0 || mkdir(sockdir, 0700) != 0 ||
	    chown(sockdir, d->pg_uid, d->pg_gid) != 0)
		return pcs_fail(err, PCS_FAILED_PRECONDITION, "cannot prepare %s: %s", sockdir,
		    strerror(errno));

	char *initdb[] = { "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E",
		"UTF8", NULL };
	if ((r = run_pg(d, "initdb", initdb, log)) != 0 && (print_tail(log), 1))
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "initdb failed (exit %d) (is the postgresql package installed?)", r);
	snprintf(opts, sizeof(opts), "-k %s -p " DEV_PG_PORT " -c listen_addresses=''", sockdir);
	char *start[] = { "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", opts, "start",
		NULL };
	if ((r = run_pg(d, "pg_ctl", start, log)) != 0 && (print_tail(log), 1))
		return pcs_fail(
		    err, PCS_FAILED_PRECONDITION, "PostgreSQL did not start (exit %d)", r);
	d->cluster_started = 1;

	snprintf(path, sizeof(path), "%s/master.key", d->dir);
	if ((r = keyfile_create(path, err)) != 0 || (r = make_roles(sockdir, err)) != 0)
		return r;
	snprintf(url, sizeof(url),
	    "host=%s port=" DEV_PG_PORT " user=" DEV_SERVICE " dbname=" DEV_DATABASE, sockdir);
	snprintf(owner, sizeof(owner),
	    "host=%s port=" DEV_PG_PORT " user=" DEV_OWNER " dbname=" DEV_DATABASE, sockdir);
	if ((r = config_set(cfg, "database_url", url, err)) != 0 ||
	    (r = config_set(cfg, "migrate_database_url", owner, err)) != 0 ||
	    (r = config_set(cfg, "master_key_file", path, err)) != 0)
		return r;
	snprintf(path, sizeof(path), "%s/pcsecretd.sock", d->dir);
	return config_set(cfg, "socket", path, err);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	/* Best effort: whatever cannot be removed stays, and the walk goes on. */
	if (flag == FTW_DP || flag == FTW_D)
		(void)rmdir(path);
	else
		(void)unlink(path);
	return 0;
}

void devmode_stop(struct devmode *d)
{
	char data[PATH_MAX], log[PATH_MAX];

	if (d->dir[0] == '\0')
		return;
	if (d->cluster_started) {
		snprintf(data, sizeof(data), "%s/pg/data", d->dir);
		snprintf(log, sizeof(log), "%s/pg/pg_ctl-stop.log", d->dir);
		char *stop[] = { "pg_ctl", "-D", data, "-m", "fast", "-w", "stop", NULL };
		if (run_pg(d, "pg_ctl", stop, log) != 0) {
			char *kill[] = { "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop",
				NULL };
			run_pg(d, "pg_ctl", kill, log);
		}
		d->cluster_started = 0;
	}
	nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	d->dir[0] = '\0';
}
