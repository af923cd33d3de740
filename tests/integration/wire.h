/*
 * wire: a raw-protobuf client of pcsecretd for the integration tests that must choose every
 * byte (pipelining, partial and malformed frames, deadlines, floods), where the SDK would
 * hide what is under test. Around it, what those tests need to drive a daemon: clients forked
 * as other uids, a PostgreSQL table held locked, and the daemon's descriptors, memory and CPU
 * read from /proc.
 *
 * Return conventions follow the calls they wrap: 0 success and -1 failure unless a function
 * says otherwise; nothing here asserts, so children may use all of it.
 */
#ifndef PCS_TESTS_WIRE_H
#define PCS_TESTS_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "pcsecret.pb-c.h"

/* ---- clock ---- */

/* CLOCK_MONOTONIC in milliseconds: every deadline below is measured on it. */
uint64_t wire_now_ms(void);
/* Sleeps ms milliseconds, through signals. */
void wire_sleep_ms(unsigned ms);

/* ---- frames ---- */

/* The method id (1-based index in the service descriptor) of name; aborts when unknown. */
uint32_t wire_mid(const char *name);
/*
 * A Call frame (header + body) in a new buffer, free with frame_free; NULL on failure. method
 * (may be NULL) is the Call's method name, req (may be NULL) its request.
 */
uint8_t *wire_call_frame(uint64_t call_id, uint32_t method_id, const char *method,
    uint32_t timeout_ms, const ProtobufCMessage *req, size_t *len);
/* A Hello (protocol 1) frame; as wire_call_frame. */
uint8_t *wire_hello_frame(uint64_t call_id, uint32_t timeout_ms, size_t *len);
/* A frame header claiming len bytes, then blen bytes of body, into out; returns 4 + blen. */
size_t wire_raw_frame(uint8_t *out, uint32_t len, const void *body, size_t blen);
/*
 * A Call frame around raw request bytes into out (cap bytes; aborts when too small), with
 * the method given by id or, when method_id is 0, by mlen (< 128) raw bytes of method, NULs
 * and all: built by hand because protobuf-c packs strings with strlen. Returns its length.
 */
size_t wire_raw_call(uint8_t *out, size_t cap, uint64_t id, uint32_t method_id,
    const char *method, size_t mlen, uint32_t timeout_ms, const uint8_t *req, size_t rlen);
/*
 * Writes everything within 15 s (the daemon may legitimately stop reading: backpressure).
 * fd may be a pipe as well as a socket.
 */
int wire_write_all(int fd, const void *p, size_t n);

/* ---- a client connection with its own reply buffer ---- */

struct wire {
	int fd;
	uint8_t *buf;
	size_t len, cap;
	size_t received; /* bytes read in total */
};

/* A connected Unix socket (non-blocking when nonblock), or -1. */
int wire_connect(const char *path, int nonblock);
int wire_open(struct wire *w, const char *path);
/* Closes and frees; w is left with fd -1, so a second close is harmless. */
void wire_close(struct wire *w);
int wire_send_call(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
    const ProtobufCMessage *req);
/* Reads once (up to timeout). 1 got bytes, 0 EOF, -1 timeout, -2 error. */
int wire_fill(struct wire *w, int timeout_ms);
/* A whole buffered reply, if any: 1 and *out, 0 none, -2 malformed. */
int wire_take(struct wire *w, Pcsecret__V1__Reply **out);
/* Next reply: 1 (*out set), 0 EOF, -1 timeout, -2 error or a malformed frame. */
int wire_reply(struct wire *w, int timeout_ms, Pcsecret__V1__Reply **out);
/* Waits until the daemon hangs up, discarding data: 1 closed, 0 still open at timeout. */
int wire_wait_closed(struct wire *w, int timeout_ms);
/*
 * One call and its reply within wait_ms. Returns the status, or -1 when no reply came or it
 * was for another call. *out (when out is not NULL) keeps the reply: free it.
 */
int wire_rpc(struct wire *w, uint64_t id, uint32_t method_id, uint32_t timeout_ms,
    const ProtobufCMessage *req, Pcsecret__V1__Reply **out, int wait_ms);
/* Hello, as this program; the status, or -1. */
int wire_hello(struct wire *w, uint64_t id);
/* The same; when it succeeds, the daemon's instance id goes to instance_id. */
int wire_hello_instance(struct wire *w, uint64_t id, char *instance_id, size_t size);
/* Connects and says Hello: 0 when the daemon answered OK, else -1 (and w closed). */
int wire_session(struct wire *w, const char *path);

/* ---- Resolve requests ---- */

/* A Resolve of n references to acme/<name>, latest version. */
struct wire_resolve {
	Pcsecret__V1__ResolveRequest req;
	Pcsecret__V1__SecretRef ref;
	Pcsecret__V1__SecretRef **refs;
};

void wire_resolve_init(struct wire_resolve *m, const char *name, size_t n);
void wire_resolve_free(struct wire_resolve *m);
/* 1 when r is an OK Resolve reply with n values equal to want. */
int wire_resolve_ok(const Pcsecret__V1__Reply *r, size_t n, const uint8_t *want, size_t wlen);

/* ---- clients forked as other uids ---- */

/*
 * A client process: fn runs as uid (0 = as we are; otherwise with IT_GROUP as its only
 * group) with a raised descriptor limit and returns 0 on success; what it writes to out is
 * the failure reason the parent prints.
 */
typedef int (*wire_child_fn)(void *arg, FILE *out);

struct wire_child {
	pid_t pid;
	int fd; /* read end of the child's report */
};

int wire_child_start(struct wire_child *ch, uid_t uid, wire_child_fn fn, void *arg);
/* Waits for the child; returns its exit status (-1 on a signal), its report in msg. */
int wire_child_wait(struct wire_child *ch, char *msg, size_t size);
/* Writes a line to a child's report; returns 1, the child's failure, for `return` chains. */
int wire_child_report(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A connection to the socket at path made by a child running as uid and handed back over a
 * socket pair (SCM_RIGHTS): the daemon took the uid from the kernel at accept, so it stays
 * that uid's connection while this process drives it. The descriptor, or -1 with msg (the
 * child's report or the reason) filled.
 */
int wire_connect_as(const char *path, uid_t uid, char *msg, size_t size);

/* In a cmocka test: the child must exit 0, or the test fails with its report. */
#define WIRE_CHILD_OK(ch)                                                              \
	do {                                                                               \
		char msg_[2048];                                                               \
		int st_ = wire_child_wait(ch, msg_, sizeof(msg_));                             \
		if (st_ != 0)                                                                  \
			fail_msg("client process failed (%d): %s", st_, msg_);                     \
	} while (0)

/* ---- a PostgreSQL table held locked ---- */

/* A table lock held by psql in an open transaction until wire_lock_release. */
struct wire_lock {
	pid_t pid;
	int in; /* psql's standard input: the transaction stays open until COMMIT */
};

/* Locks table of conninfo's database ACCESS EXCLUSIVE; returns once PostgreSQL granted it. */
int wire_lock_table(struct wire_lock *l, const char *conninfo, const char *table);
/* Commits (the lock goes) and waits for psql. */
int wire_lock_release(struct wire_lock *l);
/*
 * Drops a lock a failed test still holds (psql killed: rollback), so that it cannot block
 * the next test; for a cmocka teardown.
 */
void wire_lock_drop(void);

/* ---- the daemon seen from /proc ---- */

/* VmRSS of pid in KiB, -1 when unknown. */
long wire_proc_rss_kb(pid_t pid);
/* Open descriptors of pid, -1 when unknown. */
int wire_proc_fd_count(pid_t pid);
/* User + system CPU time of pid in milliseconds, -1 when unknown. */
long wire_proc_cpu_ms(pid_t pid);
/* Waits until pid's descriptor count is at most want; returns the last count. */
int wire_fd_count_settles(pid_t pid, int want, unsigned timeout_ms);
/* The descriptor count once connections that are closing have gone (equal 100 ms apart). */
int wire_fd_count_stable(pid_t pid);

#endif
