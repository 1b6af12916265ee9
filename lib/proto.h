/* Relay <-> agent protocol: one framed JSON request from the relay (hooks/relay.c),
 * a stream of framed JSON replies from the agent (agent/server.c), then close.
 *
 * Transport: a Unix stream socket at PROTO_SOCKET_PATH, in a directory only
 * root can enter; the agent checks SO_PEERCRED (uid 0) before reading.
 *
 * Frame: u32 big-endian length n (1 <= n <= PROTO_MAX_FRAME), then n bytes of
 * UTF-8 JSON (one object). Anything else is a protocol error: the reader
 * closes the connection.
 *
 * Request (relay -> agent), exactly one per connection:
 *   {"v": 1, "env": {"JUJU_DISPATCH_PATH": "hooks/install", "JUJU_CONTEXT_ID": "...", ...}}
 *   env holds every JUJU_* variable of the hook process plus CHARM_DIR and PATH
 *   (hook tools are found through PATH). Values are strings. At most
 *   PROTO_MAX_ENV entries.
 *
 * Replies (agent -> relay), zero or more log frames then one final frame:
 *   {"log": "<message>", "level": "DEBUG|INFO|WARNING|ERROR"}
 *   {"exit": <int 0..255>}
 * The relay prints each log message on its stdout (Juju keeps hook stdout in
 * the unit log) and exits with the final code. A connection that closes
 * without a final frame makes the relay exit non-zero, so Juju retries.
 *
 * Ownership: proto_* functions never keep pointers to caller buffers; returned
 * buffers are malloc'd and owned by the caller.
 */
#ifndef PG_PROTO_H
#define PG_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define PROTO_VERSION 1
#define PROTO_SOCKET_DIR "/run/pg-agent"
#define PROTO_SOCKET_PATH PROTO_SOCKET_DIR "/agent.sock"
#define PROTO_MAX_FRAME 1048576u /* 1 MiB */
#define PROTO_MAX_ENV 256u

/* Write one frame (header + body) to fd, handling short writes and EINTR.
 * Returns 0, or -errno. len must be 1..PROTO_MAX_FRAME (else -EINVAL for 0, -EMSGSIZE
 * above). Sockets are written with MSG_NOSIGNAL: a closed peer gives -EPIPE, no SIGPIPE. */
int proto_write_frame(int fd, const char *body, size_t len);

/* Write every byte of iov to fd (a socket without SIGPIPE, or any fd), handling EINTR
 * and short writes; iov is advanced in place. Returns 0, or -errno (-EIO: zero write). */
int proto_write_all_iov(int fd, struct iovec *iov, int iovcnt);

/* Write the len bytes at buf to fd (proto_write_all_iov with one buffer). */
int proto_write_all(int fd, const void *buf, size_t len);

/* Read one frame from fd into a malloc'd NUL-terminated buffer (*out, *len).
 * Returns 0; -EPROTO for a bad length; -ECONNRESET on EOF before a whole
 * frame; -errno otherwise. On error *out is NULL. */
int proto_read_frame(int fd, char **out, size_t *len);

/* Append s to the buffer as a JSON string literal (quotes and escapes).
 * Used by the relay, which depends on libc only. Returns 0 or -ENOMEM. */
struct proto_buf {
    char *data;
    size_t len, cap;
};
int proto_buf_append(struct proto_buf *b, const char *s, size_t n);
int proto_buf_append_json_string(struct proto_buf *b, const char *s);
void proto_buf_free(struct proto_buf *b);

#endif
