/* SQL work the agent does on its own cluster, over libpq: peer authentication on the
 * Unix socket as the role postgres (pg_ident maps root to it), never a password.
 *
 * Identifiers and literals reach SQL only through PQescapeIdentifier/PQescapeLiteral or
 * parameters. Passwords go to PostgreSQL only as SCRAM verifiers computed here
 * (PQencryptPasswordConn), in a transaction with statement logging off, so that neither
 * the password nor its verifier is written to the server log.
 *
 * Ownership: the PGconn belongs to the caller (db_close); *err and *out strings are
 * malloc'd for the caller.
 */
#ifndef PG_AGENT_DB_H
#define PG_AGENT_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

/* Connect to database postgres over socket_dir:port as postgres. */
int db_connect(const char *socket_dir, int port, PGconn **out, char **err);
/* The same, to database dbname (a name as it is, not a connection string). */
int db_connect_to(const char *socket_dir, int port, const char *dbname, PGconn **out, char **err);
void db_close(PGconn *conn);

/* "15.20" from server_version (the distro suffix dropped), into buf. */
int db_server_version(PGconn *conn, char *buf, size_t size, char **err);

/* true when the server is a primary (not in recovery). */
int db_is_primary(PGconn *conn, bool *primary, char **err);

/* Make sure role exists and has exactly these attributes (e.g. "LOGIN SUPERUSER"; a
 * fixed string from the caller, never input), creating it NOLOGIN-less as needed. */
int db_ensure_role(PGconn *conn, const char *role, const char *attributes, char **err);

/* Run a fixed statement (no input in it). */
int db_exec(PGconn *conn, const char *sql, char **err);

/* The stored password verifier of role (pg_authid.rolpassword), NULL when it has none. */
int db_role_verifier(PGconn *conn, const char *role, char **verifier, char **err);

/* Set role's password as a SCRAM-SHA-256 verifier. */
int db_set_password(PGconn *conn, const char *role, const char *password, char **err);

/* Configuration files as the server reads them now: the first error in them, if any
 * ("<file>:<line>: <name>: <error>", malloc'd into *error, NULL when they are fine). */
int db_config_file_error(PGconn *conn, char **error, char **err);

/* Reload the configuration and wait (up to timeout_ms) until this session sees it; then
 * *restart_needed tells whether a changed setting needs a restart. */
int db_reload_and_check(PGconn *conn, int timeout_ms, bool *restart_needed, char **err);

/* The WAL receiver's process id (0 when none runs: a primary, or between connections). */
int db_walreceiver_pid(PGconn *conn, long *pid, char **err);

/* The postmaster's start time as text (pg_postmaster_start_time()), into buf. */
int db_start_time(PGconn *conn, char *buf, size_t size, char **err);

#endif
