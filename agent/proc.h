/* Running a program for the agent (apt-get, initdb, systemd-run, pg_ctl-like steps):
 * fork/exec with a clean environment, optionally as another user, with a deadline.
 *
 * The child gets: stdin /dev/null, stdout and stderr into one pipe (the last
 * PROC_OUTPUT_TAIL bytes are kept for error messages), no other fd, default signals, its
 * own process group (killed whole at the deadline), the environment given (or a minimal
 * PATH/LANG one). While waiting, the keepalive set with proc_set_keepalive is called at
 * least every 5 s (the systemd watchdog). Never pass a secret in argv or env.
 *
 * Ownership: argv/env are borrowed; *output and *err are malloc'd for the caller.
 */
#ifndef PG_AGENT_PROC_H
#define PG_AGENT_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#define PROC_OUTPUT_TAIL 4096

struct proc_opts {
    int timeout_ms;          /* 0: 60 s */
    bool as_user;            /* switch to uid/gid (with that user's groups) before exec */
    uid_t uid;
    gid_t gid;
    const char *cwd;         /* NULL: "/" */
    char *const *env;        /* NULL: PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 */
    bool detach;             /* start it in a new session and do not wait (see proc_spawn) */
    const char *output_file; /* detach only: stdout/stderr appended there (else /dev/null) */
};

/* The one keepalive of the agent (main pings the systemd watchdog with it); every wait
 * on a child or a hook tool calls proc_keepalive() at least every 5 s. */
void proc_set_keepalive(void (*fn)(void));
void proc_keepalive(void);

/* Run argv[0] (an absolute path) to completion. Returns 0 when it exited 0; else -1
 * with *err "<name> exited with code N: <last line of output>" (or -ETIMEDOUT, -errno
 * when it could not run). *output (may be NULL) gets the tail of its output. */
int proc_run(const char *const argv[], const struct proc_opts *o, char **output, char **err);

/* Start argv[0] detached: double fork, setsid, so that it is not the agent's child and
 * outlives it. Returns the pid of the detached process (its parent is then init). */
pid_t proc_spawn(const char *const argv[], const struct proc_opts *o, char **err);

/* In a child between fork and exec (async-signal-safe): in/out/err become fds 0-2, every
 * other fd is closed, every signal is back to its default and none is blocked. Returns
 * 0, or -1 when dup2 failed (the caller _exits). */
int proc_child_stdio(int in_fd, int out_fd, int err_fd);

/* A process that exists and is not a zombie (our children's zombies and those an init
 * that reaps slowly keeps around count as dead). */
bool proc_alive(pid_t pid);

/* A detached service's pid file: "<pid>\n", 0600. 0, or a negative errno with *err. */
int proc_pidfile_write(const char *path, pid_t pid, char **err);

/* proc_spawn, then the pid into pid_file (the process is stopped again when that cannot be
 * written). Returns the pid or a negative errno with *err. */
pid_t proc_spawn_pidfile(const char *const argv[], const struct proc_opts *o,
                         const char *pid_file, char **err);

/* The pid in path when that process is alive and runs the executable exe (its
 * /proc/<pid>/exe, "exe (deleted)" after a package upgrade replaced it); 0 otherwise (no
 * file, a bad one, a dead or another process). */
pid_t proc_pidfile_running(const char *path, const char *exe);

/* Sleep ms milliseconds, calling the keepalive. */
void proc_sleep_ms(int ms);

#endif
