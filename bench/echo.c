/*
 * pcecho: the floor under pcbench's figures. A Unix-socket request/reply server that does
 * nothing but frame, and a client that measures it the way pcbench measures a Resolve.
 *
 *   pcecho server SOCKET
 *   pcecho client SOCKET [--clients C] [--calls N] [--req-bytes B] [--reply-bytes R]
 *
 * Frames are pcsecretd's: a 4-byte big-endian length, then that many bytes. The server is one
 * thread on epoll; for every whole frame it reads it answers with one frame whose body length
 * is the request body's first 4 bytes (big-endian), so the client picks both sizes and the
 * server never needs to be told them. The defaults are the sizes of a 1-reference Resolve call
 * and its reply as bench/run.sh makes them (measured with strace; docs/performance.md).
 *
 * The client forks C processes, each with one connection, each sending N frames one at a time
 * and waiting for the whole reply before the next, then prints a line shaped like pcbench's.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

#define HDR 4
/* Larger than any frame the bench sends; a bigger one is a client bug, so it is cut off. */
#define MAX_BODY (64u * 1024u)
#define DEFAULT_REQ 46
#define DEFAULT_REPLY 152

struct conn {
	int fd;
	uint8_t in[HDR + MAX_BODY];
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint32_t get_n32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_n32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int sock_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		fprintf(stderr, "pcecho: socket path too long: %s\n", path);
		return -1;
	}
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

static void conn_free(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	free(c);
}

/* Queues one reply frame of len body bytes. */
static int queue_reply(struct conn *c, uint32_t len)
{
	size_t need = c->out_len + HDR + len;

	if (need > c->out_cap) {
		uint8_t *p = realloc(c->out, need);
		if (p == NULL)
			return -1;
		c->out = p;
		c->out_cap = need;
	}
	put_n32(c->out + c->out_len, len);
	memset(c->out + c->out_len + HDR, 0x5a, len);
	c->out_len = need;
	return 0;
}

/* Writes what it can; returns 1 when output is left over (wait for EPOLLOUT), -1 on error. */
static int flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n <= 0)
			return -1;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* Reads, answers every whole frame, writes. Returns -1 when the connection is done. */
static int conn_io(int ep, struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return -1;
		c->in_len += (size_t)n;
		size_t off = 0;
		while (c->in_len - off >= HDR) {
			uint32_t body = get_n32(c->in + off);
			if (body < HDR || body > MAX_BODY)
				return -1;
			if (c->in_len - off < HDR + (size_t)body)
				break;
			uint32_t reply = get_n32(c->in + off + HDR);
			if (reply > MAX_BODY || queue_reply(c, reply) != 0)
				return -1;
			off += HDR + body;
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	int r = flush_out(c);
	if (r < 0)
		return -1;
	struct epoll_event ev = { .events = EPOLLIN | (r ? EPOLLOUT : 0u), .data.ptr = c };
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int run_server(const char *path)
{
	struct sockaddr_un sa;
	struct sigaction act;
	int lfd, ep;

	if (sock_addr(path, &sa) != 0)
		return 1;
	memset(&act, 0, sizeof(act));
	act.sa_handler = on_signal;
	sigaction(SIGINT, &act, NULL);
	sigaction(SIGTERM, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	unlink(path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 1024) != 0) {
		fprintf(stderr, "pcecho: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return 1;
	/* The listener's data.ptr is NULL; every connection's is its struct conn. */
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0)
		return 1;
	while (!stop) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c != NULL) {
				if ((evs[i].events & (EPOLLERR | EPOLLHUP)) || conn_io(ep, c) != 0)
					conn_free(ep, c);
				continue;
			}
			int fd;
			while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
				if ((c = calloc(1, sizeof(*c))) == NULL) {
					close(fd);
					continue;
				}
				c->fd = fd;
				struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
					close(fd);
					free(c);
				}
			}
		}
	}
	unlink(path);
	return 0;
}

static int full_io(int fd, uint8_t *buf, size_t len, int writing)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = writing ? write(fd, buf + done, len - done) :
		                      read(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/* One client: writes one latency (µs, as double) per call to out; exits non-zero on error. */
static int client_worker(int out, const char *path, long calls, uint32_t req, uint32_t reply)
{
	struct sockaddr_un sa;
	uint8_t *sendbuf = calloc(1, HDR + (size_t)req), *recvbuf = malloc(HDR + (size_t)reply);
	int fd = -1, status = 1;

	if (sendbuf == NULL || recvbuf == NULL || sock_addr(path, &sa) != 0)
		goto out;
	put_n32(sendbuf, req);
	put_n32(sendbuf + HDR, reply);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "pcecho: connect %s: %s\n", path, strerror(errno));
		goto out;
	}
	for (long k = 0; k < calls; k++) {
		double t0 = load_now_us(), dt;
		/* Header and body in one write, as the SDK sends a frame. */
		if (full_io(fd, sendbuf, HDR + (size_t)req, 1) != 0 ||
		    full_io(fd, recvbuf, HDR, 0) != 0 || get_n32(recvbuf) != reply ||
		    full_io(fd, recvbuf + HDR, reply, 0) != 0) {
			fprintf(stderr, "pcecho: call failed: %s\n", strerror(errno));
			goto out;
		}
		dt = load_now_us() - t0;
		if (write(out, &dt, sizeof(dt)) != (ssize_t)sizeof(dt))
			goto out;
	}
	status = 0;
out:
	if (fd >= 0)
		close(fd);
	free(sendbuf);
	free(recvbuf);
	return status;
}

struct echo_args {
	const char *path;
	long calls;
	uint32_t req, reply;
};

static int echo_worker(int fd, long index, void *arg)
{
	const struct echo_args *a = arg;

	(void)index;
	return client_worker(fd, a->path, a->calls, a->req, a->reply);
}

static int run_client(const char *path, int argc, char **argv)
{
	long clients = 1, calls = 2000, req = DEFAULT_REQ, reply = DEFAULT_REPLY;
	for (int i = 0; i < argc; i += 2) {
		if (i + 1 >= argc)
			return 2;
		long v = strtol(argv[i + 1], NULL, 10);
		if (strcmp(argv[i], "--clients") == 0)
			clients = v;
		else if (strcmp(argv[i], "--calls") == 0)
			calls = v;
		else if (strcmp(argv[i], "--req-bytes") == 0)
			req = v;
		else if (strcmp(argv[i], "--reply-bytes") == 0)
			reply = v;
		else
			return 2;
	}
	/* The request carries the reply size in its first 4 bytes, so it is at least that big. */
	if (clients < 1 || calls < 1 || req < HDR || req > (long)MAX_BODY || reply < 0 ||
	    reply > (long)MAX_BODY)
		return 2;
	struct echo_args a = { path, calls, (uint32_t)req, (uint32_t)reply };
	struct load_result res;

	if (load_run("pcecho", clients, calls, echo_worker, &a, &res) != 0)
		return 1;
	printf("calls=%zu req_bytes=%ld reply_bytes=%ld clients=%ld", res.n, req, reply, clients);
	load_print(&res);
	free(res.lat);
	return 0;
}

int main(int argc, char **argv)
{
	int r = 2;

	if (argc >= 3 && strcmp(argv[1], "server") == 0 && argc == 3)
		r = run_server(argv[2]);
	else if (argc >= 3 && strcmp(argv[1], "client") == 0)
		r = run_client(argv[2], argc - 3, argv + 3);
	if (r == 2)
		fprintf(stderr,
		    "usage: %s server SOCKET\n"
		    "       %s client SOCKET [--clients C] [--calls N] [--req-bytes B] "
		    "[--reply-bytes R]\n",
		    argv[0], argv[0]);
	return r;
}
