/* `pg-agent --daemon` where systemd does not run: detach, and let the original process
 * exit only once the agent listens (or with the agent's error), told through a pipe.
 *
 * Detaching: double fork, setsid, inherited fds closed, stdio to /dev/null, umask 077,
 * cwd /.
 *
 * Pipe protocol (one report, then the write end is closed): 'R' ready; 'A' another agent
 * already owns the socket; 'E' followed by an error message. The original process exits
 * 0 for R and A, 1 (printing the message on stderr) for E, for EOF without a report, or
 * after DAEMON_READY_TIMEOUT_SEC without one.
 *
 * Ownership: the message passed to daemon_report is borrowed.
 */
#ifndef PG_AGENT_DAEMON_H
#define PG_AGENT_DAEMON_H

#define DAEMON_READY_TIMEOUT_SEC 30

enum daemon_report {
    DAEMON_READY = 'R',
    DAEMON_ALREADY_RUNNING = 'A',
    DAEMON_FAILED = 'E',
};

/* Detach. Returns only in the detached agent: 0 with *report_fd the pipe's write end
 * (close-on-exec), or a negative errno with *err set when nothing was forked (the caller
 * reports it and exits 1). The original process and the intermediate child never
 * return. */
int daemon_start(int *report_fd, char **err);

/* Send the one report (message only for DAEMON_FAILED; may be NULL) and close fd.
 * Does nothing when fd < 0. */
void daemon_report(int fd, enum daemon_report what, const char *message);

#endif
