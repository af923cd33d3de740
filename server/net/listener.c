#include "listener.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "frame.h"
#include "log.h"
#include "peers.h"
#include "session.h"

struct listener {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct event *ev;
	struct event *backoff;
};

static int make_addr(const char *path, struct sockaddr_un *sa, pcs_error *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "socket path is longer than %zu bytes: %s", sizeof(sa->sun_path) - 1, path);
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

/* 1 when a daemon answers on path, 0 when the file is stale or absent, <0 on error. */
static int probe_existing(const char *path, const struct sockaddr_un *sa, pcs_error *err)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 :
		                         pcs_fail(err, PCS_FAILED_PRECONDITION,
		                             "cannot inspect %s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "%s exists and is not a socket; refusing to replace it", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return pcs_fail(err, PCS_INTERNAL, "socket: %s", strerror(errno));
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (r == 0)
		return 1;
	if (errno == ECONNREFUSED)
		return 0;
	return pcs_fail(err, PCS_FAILED_PRECONDITION, "cannot probe existing socket %s: %s", path,
	    strerror(errno));
}

static int parse_group(const char *group, gid_t *out, pcs_error *err)
{
	struct group *gr;
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(group, &end, 10);
	if (errno == 0 && end != group && *end == '\0') {
		*out = (gid_t)v;
		return 0;
	}
	if ((gr = getgrnam(group)) == NULL)
		return pcs_fail(err, PCS_INVALID_ARGUMENT, "socket group %s does not exist", group);
	*out = gr->gr_gid;
	return 0;
}

/* Answers RESOURCE_EXHAUSTED with msg, closes fd, and logs why (reason: a stable name). */
static void refuse(
    struct server *srv, int fd, const struct ucred *cred, const char *reason, const char *msg)
{
	uint8_t *frame = NULL;
	size_t len = 0;

	log_event(LOG_WARN, "conn_refused", "reason=%s uid=%u pid=%d connections=%zu", reason,
	    (unsigned)cred->uid, (int)cred->pid, srv->nconns);
	/* Best effort: the socket is fresh, so a small frame fits its buffer. */
	if (session_error_frame(PCS_RESOURCE_EXHAUSTED, msg, &frame, &len) == 0) {
		ssize_t n = send(fd, frame, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)n;
		frame_free(frame, len);
	}
	close(fd);
	srv->stats.connections_refused++;
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	if (srv->listener != NULL && !srv->draining)
		event_add(srv->listener->ev, NULL);
}

/*
 * 0 when the peer on fd may have a connection: its uid is under its own limit, and there is
 * a slot under max_connections, if need be one taken from a peer that has not completed
 * Hello. Otherwise fd is refused and closed.
 */
static int admit(struct server *srv, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	const char *reason = NULL;
	char msg[128];
	pcs_error err;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		/* conn_new treats such a peer as nobody; it is counted as that uid here too. */
		cred.uid = (uid_t)-1;
		cred.pid = 0;
	}
	if (peers_admit(srv->cfg, cred.uid, conn_now_ms(), &reason, &err) != 0) {
		refuse(srv, fd, &cred, reason, err.message);
		return -1;
	}
	if (srv->nconns >= (size_t)srv->cfg->max_connections && conn_evict_one(srv) != 0) {
		snprintf(msg, sizeof(msg), "too many connections (max_connections = %lld)",
		    (long long)srv->cfg->max_connections);
		refuse(srv, fd, &cred, "max_connections", msg);
		return -1;
	}
	return 0;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct server *srv = arg;
	struct listener *l = srv->listener;
	int fd, i;

	(void)what;
	/* Bounded batch per event so accepting cannot starve established connections. */
	for (i = 0; i < 64; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				struct timeval one = { 1, 0 };
				log_event(
				    LOG_WARN, "accept_backoff", "errno=%s", log_q(strerror(errno)));
				event_del(l->ev);
				evtimer_add(l->backoff, &one);
			}
			return;
		}
		if (admit(srv, fd) != 0)
			continue;
		session_new(srv, fd);
	}
}

int listener_open(struct server *srv, const char *path, const char *mode, const char *group,
    int open_to_all, pcs_error *err)
{
	struct listener *l = NULL;
	struct sockaddr_un sa;
	mode_t old_umask, m;
	gid_t gid = (gid_t)-1;
	char *end;
	unsigned long mv;
	int r, fd = -1;

	errno = 0;
	mv = strtoul(mode, &end, 8);
	if (errno != 0 || end == mode || *end != '\0' || mv > 0777) {
		r = pcs_fail(
		    err, PCS_INVALID_ARGUMENT, "socket mode %s is not an octal mode", mode);
		goto out;
	}
	m = (mode_t)mv;
	if ((m & 0007) && !open_to_all) {
		r = pcs_fail(err, PCS_INVALID_ARGUMENT,
		    "socket mode %s gives access to every local user; use 0660 and a group", mode);
		goto out;
	}
	if (group != NULL && group[0] != '\0' && (r = parse_group(group, &gid, err)) != 0)
		goto out;
	if ((r = make_addr(path, &sa, err)) != 0)
		goto out;
	/*
	 * Whoever may create names in the socket's directory may bind the path while pcsecretd
	 * is down and receive what clients send, values included. So only the directory's owner,
	 * root or this daemon's user, may write to it: not the group, which would be the socket
	 * group whose members are the clients, and not others, sticky bit or not.
	 */
	{
		char dir[sizeof(sa.sun_path)];
		char *slash;
		struct stat dst;

		memcpy(dir, sa.sun_path, sizeof(dir));
		if ((slash = strrchr(dir, '/')) == NULL)
			memcpy(dir, ".", 2);
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		if (stat(dir, &dst) != 0) {
			r = pcs_fail(err, PCS_FAILED_PRECONDITION, "socket directory %s: %s", dir,
			    strerror(errno));
			goto out;
		}
		if ((dst.st_mode & 0022) != 0 || (dst.st_uid != 0 && dst.st_uid != geteuid())) {
			r = pcs_fail(err, PCS_FAILED_PRECONDITION,
			    "socket directory %s has mode %04o "
			    "and owner uid %u: others could serve %s in pcsecretd's place; only its "
			    "owner, root or pcsecretd's user, may write to it",
			    dir, (unsigned)(dst.st_mode & 07777), (unsigned)dst.st_uid, path);
			goto out;
		}
	}
	if ((r = probe_existing(path, &sa, err)) < 0)
		goto out;
	if (r == 1) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION,
		    "another pcsecretd is already serving %s; stop it first or choose another --socket",
		    path);
		goto out;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION, "cannot remove stale socket %s: %s",
		    path, strerror(errno));
		goto out;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		r = pcs_fail(err, PCS_INTERNAL, "socket: %s", strerror(errno));
		goto out;
	}
	/* No window in which the socket exists with a looser mode than configured. */
	old_umask = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (r != 0) {
		r = pcs_fail(
		    err, PCS_FAILED_PRECONDITION, "cannot bind %s: %s", path, strerror(errno));
		goto out;
	}
	if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) || chmod(path, m) != 0) {
		r = pcs_fail(err, PCS_FAILED_PRECONDITION, "cannot set owner/mode of %s: %s", path,
		    strerror(errno));
		unlink(path);
		goto out;
	}
	if (listen(fd, 1024) != 0) {
		r = pcs_fail(err, PCS_INTERNAL, "listen: %s", strerror(errno));
		unlink(path);
		goto out;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		unlink(path);
		goto out;
	}
	l->fd = fd;
	memcpy(l->path, sa.sun_path, sizeof(l->path));
	l->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_accept, srv);
	l->backoff = evtimer_new(srv->base, on_backoff, srv);
	if (l->ev == NULL || l->backoff == NULL) {
		r = pcs_fail(err, PCS_RESOURCE_EXHAUSTED, "out of memory");
		unlink(path);
		goto out;
	}
	event_add(l->ev, NULL);
	srv->listener = l;
	l = NULL;
	fd = -1;
	r = 0;
out:
	if (l != NULL) {
		if (l->ev)
			event_free(l->ev);
		if (l->backoff)
			event_free(l->backoff);
		free(l);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

void listener_stop(struct server *srv)
{
	struct listener *l = srv->listener;

	if (l == NULL)
		return;
	event_del(l->ev);
	event_del(l->backoff);
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
}

void listener_close(struct server *srv)
{
	struct listener *l = srv->listener;

	if (l == NULL)
		return;
	listener_stop(srv);
	unlink(l->path);
	event_free(l->ev);
	event_free(l->backoff);
	free(l);
	srv->listener = NULL;
}
