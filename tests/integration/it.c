#include "it.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keyfile.h"
#include "pgtest.h"

int it_is_root(void) { return geteuid() == 0; }

const char *it_path(const char *rel)
{
	static char bufs[4][1024];
	static unsigned next;
	char *b = bufs[next++ % 4];
	const char *build = getenv("PCS_BUILD_DIR");

	snprintf(b, sizeof(bufs[0]), "%s/%s", build ? build : ".", rel);
	return b;
}

/* sql/api.sql's api_version, read from the source tree (the tests do not link the daemon). */
static int api_version(void)
{
	const char *src = getenv("PCS_SOURCE_DIR");
	char path[1024], line[64];
	FILE *fp;
	int v = 0;

	snprintf(path, sizeof(path), "%s/sql/api.sql", src != NULL ? src : ".");
	if ((fp = fopen(path, "re")) == NULL)
		return 0;
	if (fgets(line, sizeof(line), fp) == NULL || sscanf(line, "-- api_version: %d", &v) != 1)
		v = 0;
	fclose(fp);
	return v;
}

int it_database(const char *name, char *conninfo_out, size_t size)
{
	size_t n;
	int v = api_version();

	if (v <= 0) {
		fprintf(stderr, "it: cannot read api_version from sql/api.sql (PCS_SOURCE_DIR)\n");
		return -1;
	}
	if (pgtest_create_db(name, conninfo_out, size) != 0)
		return -1;
	/*
	 * Tests call the SQL API as the daemon does, unqualified. The daemon pins its own
	 * search_path for migrations and adds its API schema's to its pool, so this changes
	 * nothing for it. No quotes or spaces: tests put the string in shell commands.
	 */
	n = strlen(conninfo_out);
	if ((size_t)snprintf(conninfo_out + n, size - n,
	    " options=--search_path=pcs_api_%d,public", v) >= size - n) {
		fprintf(stderr, "it: conninfo buffer too small\n");
		return -1;
	}
	return 0;
}

static int can_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return r == 0;
}

static pid_t spawn_daemon(struct it_daemon *d, const struct it_daemon_opts *opts)
{
	char group[16];
	const char *argv[64];
	size_t n = 0;
	pid_t pid;
	int fd;

	snprintf(group, sizeof(group), "%d", IT_GROUP);
	if ((pid = fork()) != 0)
		return pid;
	if ((fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0) {
		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (fd > STDERR_FILENO)
			close(fd); /* not one more descriptor in the daemon's count */
	}
	if (opts != NULL && opts->nofile != 0) {
		struct rlimit rl = { (rlim_t)opts->nofile, (rlim_t)opts->nofile };
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			/* Without root the hard limit cannot rise: take what is allowed. */
			if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < (rlim_t)opts->nofile) {
				rl.rlim_cur = rl.rlim_max;
				setrlimit(RLIMIT_NOFILE, &rl);
			} else {
				_exit(126);
			}
		}
	}
	argv[n++] = "pcsecretd";
	argv[n++] = "--socket";
	argv[n++] = d->socket;
	argv[n++] = "--database-url";
	argv[n++] = d->service_conninfo;
	argv[n++] = "--migrate-database-url";
	argv[n++] = d->conninfo;
	argv[n++] = "--master-key-file";
	argv[n++] = d->keyfile;
	argv[n++] = "--socket-group";
	argv[n++] = group;
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	for (size_t i = 0; opts != NULL && opts->args != NULL && opts->args[i] != NULL && n < 63; i++)
		argv[n++] = opts->args[i];
	argv[n] = NULL;
	execv(it_path("server/pcsecretd"), (char *const *)(uintptr_t)argv);
	_exit(127);
}

static int prepare(struct it_daemon *d, const char *conninfo, const char *keyfile,
    const char *socket)
{
	pcs_error err;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/pcs-it-XXXXXX");
	if (mkdtemp(d->dir) == NULL || chmod(d->dir, 0755) != 0)
		return -1;
	if (socket != NULL)
		snprintf(d->socket, sizeof(d->socket), "%s", socket);
	else
		snprintf(d->socket, sizeof(d->socket), "%s/pcsecretd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/pcsecretd.log", d->dir);
	snprintf(d->conninfo, sizeof(d->conninfo), "%s", conninfo);
	if (pgtest_login_role(IT_SERVICE_ROLE, conninfo, d->service_conninfo,
	    sizeof(d->service_conninfo)) != 0)
		return -1;
	if (keyfile != NULL) {
		snprintf(d->keyfile, sizeof(d->keyfile), "%s", keyfile);
		return 0;
	}
	snprintf(d->keyfile, sizeof(d->keyfile), "%s/master.key", d->dir);
	if (keyfile_create(d->keyfile, &err) != 0) {
		fprintf(stderr, "it: %s\n", err.message);
		return -1;
	}
	return 0;
}

int it_daemon_start(struct it_daemon *d, const char *conninfo, const char *keyfile)
{
	return it_daemon_start_opts(d, conninfo, keyfile, NULL);
}

int it_daemon_start_opts(struct it_daemon *d, const char *conninfo, const char *keyfile,
    const struct it_daemon_opts *opts)
{
	int status;

	if (prepare(d, conninfo, keyfile, opts != NULL ? opts->socket : NULL) != 0)
		return -1;
	if ((d->pid = spawn_daemon(d, opts)) < 0)
		return -1;
	for (int i = 0; i < 300; i++) {
		if (can_connect(d->socket))
			return 0;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			fprintf(stderr, "it: pcsecretd exited during start-up; log %s\n", d->log);
			d->pid = 0;
			return -1;
		}
		usleep(50000);
	}
	fprintf(stderr, "it: pcsecretd did not accept calls within 15 s; log %s\n", d->log);
	return -1;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "re");
	char *buf = NULL;
	size_t cap = 0, n = 0, got;

	if (fp == NULL)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			char *p = realloc(buf, cap = (cap ? cap * 2 : 8192));
			if (p == NULL) {
				free(buf);
				fclose(fp);
				return NULL;
			}
			buf = p;
		}
		got = fread(buf + n, 1, 4096, fp);
		n += got;
	} while (got > 0);
	fclose(fp);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int it_daemon_start_fails(const char *conninfo, const char *keyfile, char **err)
{
	struct it_daemon d;
	int status = -1;

	*err = NULL;
	if (prepare(&d, conninfo, keyfile, NULL) != 0 || (d.pid = spawn_daemon(&d, NULL)) < 0)
		goto out;
	for (int i = 0; i < 300; i++) {
		if (waitpid(d.pid, &status, WNOHANG) == d.pid) {
			status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			*err = slurp(d.log, NULL);
			goto out;
		}
		usleep(50000);
	}
	kill(d.pid, SIGKILL);
	waitpid(d.pid, NULL, 0);
	status = 0; /* it kept running: that is not a failure to start */
out:
	it_daemon_cleanup(&d);
	return status;
}

int it_daemon_stop(struct it_daemon *d)
{
	return it_daemon_stop_signal(d, SIGTERM);
}

int it_daemon_stop_signal(struct it_daemon *d, int sig)
{
	int status;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, sig);
	if (waitpid(d->pid, &status, 0) != d->pid)
		return -1;
	d->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void it_daemon_cleanup(struct it_daemon *d)
{
	char cmd[128];

	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	if (d->dir[0] != '\0' && strncmp(d->dir, "/tmp/pcs-it-", 12) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "it: could not remove %s\n", d->dir);
	}
	d->dir[0] = '\0';
}

static void drain_into(int fd, char **buf, size_t *len, size_t *cap)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n <= 0)
		return;
	if (*len + (size_t)n + 1 > *cap) {
		size_t ncap = (*cap ? *cap : 4096);
		while (ncap < *len + (size_t)n + 1)
			ncap *= 2;
		char *p = realloc(*buf, ncap);
		if (p == NULL)
			return;
		*buf = p;
		*cap = ncap;
	}
	memcpy(*buf + *len, tmp, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
}

static void become(uid_t uid)
{
	gid_t groups[1] = { IT_GROUP };

	if (uid == 0)
		return;
	if (setgroups(uid == IT_OUTSIDER_UID ? 0 : 1, groups) != 0 || setgid((gid_t)uid) != 0 ||
	    setuid(uid) != 0)
		_exit(126);
}

int it_run(uid_t uid, const char *socket, const char *const *env, const char *stdin_data,
    const char *const *argv, struct it_result *r)
{
	int in[2], out[2], err[2], status;
	size_t out_cap = 0, err_cap = 0, err_len = 0, off = 0, slen;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		char sock_env[200];
		const char *envp[64];
		size_t n = 0;
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		become(uid);
		snprintf(sock_env, sizeof(sock_env), "PCSECRET_SOCKET=%s", socket ? socket : "");
		envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
		envp[n++] = sock_env;
		if (getenv("ASAN_OPTIONS"))
			envp[n++] = "ASAN_OPTIONS=detect_leaks=1";
		for (size_t i = 0; env != NULL && env[i] != NULL && n < 62; i++)
			envp[n++] = env[i];
		envp[n] = NULL;
		execve(argv[0], (char *const *)(uintptr_t)argv, (char *const *)(uintptr_t)envp);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	slen = stdin_data ? strlen(stdin_data) : 0;
	signal(SIGPIPE, SIG_IGN);
	while (off < slen) {
		ssize_t w = write(in[1], stdin_data + off, slen - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(in[1]);
	struct pollfd p[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
	int open_fds = 2;
	while (open_fds > 0 && poll(p, 2, 30000) > 0) {
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			size_t before = i == 0 ? r->out_len : err_len;
			if (i == 0)
				drain_into(p[i].fd, &r->out, &r->out_len, &out_cap);
			else
				drain_into(p[i].fd, &r->err, &err_len, &err_cap);
			if ((i == 0 ? r->out_len : err_len) == before) {
				close(p[i].fd);
				p[i].fd = -1;
				open_fds--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	waitpid(pid, &status, 0);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (r->out == NULL)
		r->out = calloc(1, 1);
	if (r->err == NULL)
		r->err = calloc(1, 1);
	return 0;
}

void it_result_free(struct it_result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

int it_mem_contains(const char *buf, size_t len, const char *needle, size_t nlen)
{
	return buf != NULL && nlen > 0 && memmem(buf, len, needle, nlen) != NULL;
}

int it_file_contains(const char *path, const char *needle, size_t len)
{
	size_t n;
	char *buf = slurp(path, &n);
	int r;

	if (buf == NULL)
		return -1;
	r = it_mem_contains(buf, n, needle, len);
	free(buf);
	return r;
}
