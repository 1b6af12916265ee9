/* The agent's listening socket: taken from systemd (socket activation) or bound in a
 * root-only directory; and the probe that tells whether an agent already listens.
 *
 * When the agent binds it: the socket's directory is created if missing and forced to
 * mode 0700 owned by root; an exclusive flock on "<dir>/agent.lock" (held for the life of
 * the process) makes sure only one agent owns the path; a stale socket left by a dead
 * agent is unlinked (anything else at the path is refused); the socket is mode 0600.
 *
 * Ownership: struct listener owns its fds and path copy; listener_close releases them
 * and unlinks the socket if it is still the one this process bound.
 */
#ifndef PG_AGENT_LISTENER_H
#define PG_AGENT_LISTENER_H

#include <stdbool.h>
#include <sys/types.h>

struct listener {
    int fd;      /* listening, non-blocking, close-on-exec */
    int lock_fd; /* -1 when the socket came from systemd */
    bool from_systemd;
    char *path; /* NULL when the socket came from systemd */
    dev_t dev;  /* identity of the socket file we bound */
    ino_t ino;
};

/* 1 when something accepts connections at path, 0 when nothing does. */
int listener_probe(const char *path);

/* Take the socket passed by systemd, if any. Returns 1 with *out filled, 0 when systemd
 * passed none, or a negative errno with *err set (more than one fd, or not a listening
 * Unix stream socket). Unsets LISTEN_FDS / LISTEN_PID. */
int listener_from_systemd(struct listener *out, char **err);

/* Bind and listen at path. Returns 0; -EALREADY when another agent holds the lock (a
 * normal outcome: it is running or about to listen); other negative errnos with *err. */
int listener_open(const char *path, struct listener *out, char **err);

void listener_close(struct listener *l);

#endif
