/* SQL work on the charm's own cluster (db.h): peer-authenticated libpq connection,
 * roles, SCRAM verifiers, configuration checks, reload. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "db.h"

#include "errmsg.h"
#include "log.h"
#include "proc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libpq's messages end with a newline; keep the first line. */
static int pq_fail(char **err, const char *what, const char *msg)
{
    size_t n = msg ? strcspn(msg, "\n") : 0;
    return errmsg_set(err, -EIO, "%s: %.*s", what, (int)n, msg ? msg : "");
}

int db_connect(const char *socket_dir, int port, PGconn **out, char **err)
{
    return db_connect_to(socket_dir, port, "postgres", out, err);
}

int db_connect_to(const char *socket_dir, int port, const char *dbname, PGconn **out, char **err)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    /* The agent's own writes (roles, passwords, slots) are idempotent and re-applied by
     * every pass: they must not wait for a synchronous standby, or a strict-mode primary
     * without one would hang the hook that could bring one (synchronous_commit=local). */
    const char *keys[] = {"host", "port", "dbname", "user", "connect_timeout",
                          "application_name", "options", NULL};
    const char *vals[] = {socket_dir, portbuf, dbname, "postgres", "10", "pg-agent",
                          "-c synchronous_commit=local", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 0);
    if (!conn)
        return errmsg_set(err, -ENOMEM, "out of memory");
    if (PQstatus(conn) != CONNECTION_OK) {
        int rc = pq_fail(err, "cannot connect to PostgreSQL", PQerrorMessage(conn));
        PQfinish(conn);
        return rc;
    }
    *out = conn;
    return 0;
}

void db_close(PGconn *conn)
{
    if (conn)
        PQfinish(conn);
}

int db_exec(PGconn *conn, const char *sql, char **err)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = pq_fail(err, "SQL failed", PQerrorMessage(conn));
    PQclear(r);
    return rc;
}

/* One text value from a one-row query with up to one parameter. *out malloc'd, NULL for
 * SQL NULL or no row. */
static int query_value(PGconn *conn, const char *sql, const char *param, char **out, char **err)
{
    *out = NULL;
    const char *params[1] = {param};
    PGresult *r = PQexecParams(conn, sql, param ? 1 : 0, NULL, param ? params : NULL, NULL,
                               NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pq_fail(err, "query failed", PQerrorMessage(conn));
    } else if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
        *out = strdup(PQgetvalue(r, 0, 0));
        if (!*out)
            rc = errmsg_set(err, -ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

int db_server_version(PGconn *conn, char *buf, size_t size, char **err)
{
    const char *v = PQparameterStatus(conn, "server_version");
    if (!v || !*v)
        return errmsg_set(err, -EIO, "the server did not report its version");
    size_t n = strcspn(v, " ");
    if (n >= size)
        n = size - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return 0;
}

int db_is_primary(PGconn *conn, bool *primary, char **err)
{
    char *v = NULL;
    if (query_value(conn, "SELECT pg_catalog.pg_is_in_recovery()", NULL, &v, err) < 0)
        return -1;
    *primary = v && strcmp(v, "f") == 0;
    free(v);
    return 0;
}

int db_ensure_role(PGconn *conn, const char *role, const char *attributes, char **err)
{
    if (!role || !*role)
        return errmsg_set(err, -EINVAL, "no role name");
    char *exists = NULL;
    if (query_value(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", role, &exists,
                    err) < 0)
        return -1;
    char *ident = PQescapeIdentifier(conn, role, strlen(role));
    if (!ident) {
        free(exists);
        return pq_fail(err, "cannot quote a role name", PQerrorMessage(conn));
    }
    char *sql = NULL;
    int n = asprintf(&sql, "%s ROLE %s WITH %s", exists ? "ALTER" : "CREATE", ident, attributes);
    PQfreemem(ident);
    int rc = -1;
    if (n < 0)
        rc = errmsg_set(err, -ENOMEM, "out of memory");
    else if (db_exec(conn, sql, err) == 0)
        rc = 0;
    if (rc == 0 && !exists)
        log_info("role %s created", role);
    free(sql);
    free(exists);
    return rc;
}

int db_role_verifier(PGconn *conn, const char *role, char **verifier, char **err)
{
    return query_value(conn, "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1",
                       role, verifier, err);
}

int db_set_password(PGconn *conn, const char *role, const char *password, char **err)
{
    char *verifier = PQencryptPasswordConn(conn, password, role, "scram-sha-256");
    if (!verifier)
        return pq_fail(err, "cannot compute a SCRAM verifier", PQerrorMessage(conn));
    char *ident = PQescapeIdentifier(conn, role, strlen(role));
    char *lit = PQescapeLiteral(conn, verifier, strlen(verifier));
    explicit_bzero(verifier, strlen(verifier));
    PQfreemem(verifier);
    char *sql = NULL;
    int rc = -1;
    if (!ident || !lit) {
        rc = pq_fail(err, "cannot quote", PQerrorMessage(conn));
    } else if (asprintf(&sql, "ALTER ROLE %s WITH PASSWORD %s", ident, lit) < 0) {
        sql = NULL;
        rc = errmsg_set(err, -ENOMEM, "out of memory");
    } else {
        /* Separate statements: the server decides whether to log a query string before
         * running any of it, so logging is turned off first, in its own statements. */
        static const char *const quiet[] = {
            "BEGIN", "SET LOCAL log_statement = 'none'",
            "SET LOCAL log_min_duration_statement = -1",
            "SET LOCAL log_min_error_statement = 'panic'", NULL};
        rc = 0;
        for (size_t i = 0; quiet[i] && rc == 0; i++)
            rc = db_exec(conn, quiet[i], err);
        if (rc == 0) {
            PGresult *r = PQexec(conn, sql);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                rc = pq_fail(err, "cannot set the password", PQerrorMessage(conn));
            PQclear(r);
        }
        if (rc == 0)
            rc = db_exec(conn, "COMMIT", err);
        else
            PQclear(PQexec(conn, "ROLLBACK"));
        explicit_bzero(sql, strlen(sql));
    }
    free(sql);
    if (lit) {
        explicit_bzero(lit, strlen(lit));
        PQfreemem(lit);
    }
    PQfreemem(ident);
    return rc;
}

int db_config_file_error(PGconn *conn, char **error, char **err)
{
    *error = NULL;
    /* "setting could not be applied" is a restart-only change, not an error. */
    PGresult *r = PQexec(conn, "SELECT coalesce(sourcefile, ''), coalesce(sourceline, 0), "
                               "coalesce(name, ''), error FROM pg_catalog.pg_file_settings "
                               "WHERE error IS NOT NULL AND error <> 'setting could not be "
                               "applied' ORDER BY seqno LIMIT 1");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = pq_fail(err, "cannot read pg_file_settings", PQerrorMessage(conn));
    } else if (PQntuples(r) > 0) {
        const char *file = strrchr(PQgetvalue(r, 0, 0), '/');
        if (asprintf(error, "%s:%s: %s: %s", file ? file + 1 : PQgetvalue(r, 0, 0),
                     PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3)) < 0) {
            *error = NULL;
            rc = errmsg_set(err, -ENOMEM, "out of memory");
        }
    }
    PQclear(r);
    return rc;
}

int db_reload_and_check(PGconn *conn, int timeout_ms, bool *restart_needed, char **err)
{
    *restart_needed = false;
    char *before = NULL;
    if (query_value(conn, "SELECT pg_catalog.pg_conf_load_time()::text", NULL, &before, err) < 0)
        return -1;
    if (db_exec(conn, "SELECT pg_catalog.pg_reload_conf()", err) < 0) {
        free(before);
        return -1;
    }
    int rc = 0;
    for (int waited = 0;; waited += 20) {
        char *now = NULL;
        if (query_value(conn, "SELECT pg_catalog.pg_conf_load_time()::text", NULL, &now, err) <
            0) {
            rc = -1;
            break;
        }
        bool changed = now && before && strcmp(now, before) != 0;
        free(now);
        if (changed)
            break;
        if (waited >= timeout_ms) {
            log_warning("the configuration reload was not seen within %d ms", timeout_ms);
            break;
        }
        proc_sleep_ms(20);
    }
    free(before);
    if (rc < 0)
        return rc;
    char *pending = NULL;
    if (query_value(conn, "SELECT string_agg(name, ', ' ORDER BY name) FROM pg_catalog.pg_settings "
                          "WHERE pending_restart",
                    NULL, &pending, err) < 0)
        return -1;
    if (pending) {
        log_info("settings that need a restart changed: %s", pending);
        *restart_needed = true;
    }
    free(pending);
    return 0;
}

int db_start_time(PGconn *conn, char *buf, size_t size, char **err)
{
    char *v = NULL;
    if (query_value(conn, "SELECT pg_catalog.pg_postmaster_start_time()::text", NULL, &v, err) < 0)
        return -1;
    snprintf(buf, size, "%s", v ? v : "");
    free(v);
    return 0;
}

int db_walreceiver_pid(PGconn *conn, long *pid, char **err)
{
    char *v = NULL;
    *pid = 0;
    if (query_value(conn, "SELECT pid::text FROM pg_catalog.pg_stat_wal_receiver", NULL, &v,
                    err) < 0)
        return -1;
    char *end = NULL;
    long n = v ? strtol(v, &end, 10) : 0;
    if (v && end && *end == '\0' && n > 0)
        *pid = n;
    free(v);
    return 0;
}
