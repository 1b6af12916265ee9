/* SQL work that computes SCRAM verifiers (libpq's OpenSSL code) runs in a short-lived child
 * process that connects by itself, so that the agent's long-lived process never touches
 * those pages of libcrypto and stays small. The child's log lines are logged here, with
 * the level it gave them; its result comes back as a number.
 *
 * Ownership: fn and arg are used in the child only (a copy of the parent's memory: arg may
 * point at sodium buffers); *err is malloc'd for the caller.
 */
#ifndef PG_AGENT_SQLWORKER_H
#define PG_AGENT_SQLWORKER_H

#include <libpq-fe.h>

/* A job: returns 0..max_result on success, -1 with *err on failure. */
typedef int (*sqlworker_fn)(PGconn *conn, void *arg, char **err);

/* Fork, connect to socket_dir:port as postgres (db_connect), run fn(conn, arg), and wait
 * (at most 120 s, then the child is killed). Returns what fn returned (a result outside
 * 0..max_result is an error), or -1 with *err. Blocks the calling thread, keeping the
 * watchdog fed (proc_keepalive). */
int sqlworker_run(const char *socket_dir, int port, sqlworker_fn fn, void *arg, int max_result,
                  char **err);

#endif
