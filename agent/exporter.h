/* The PostgreSQL metrics exporter (Debian's prometheus-postgres-exporter) as a workload
 * the agent supervises, the way it supervises etcd: started detached, found again from its
 * pid file after an agent restart (never restarted by one), restarted when it dies.
 *
 * It runs as the OS user prometheus (the package's) and logs in as the role monitoring
 * (pg_monitor) over the Unix socket with peer authentication (pg_ident map pg-exporter):
 * no password exists for it anywhere. It serves https://<unit address>:9187/metrics with
 * its own server-only certificate from the internal CA (pki.c), through the exporter's
 * web configuration file; the custom queries come from the charm
 * (src/postgres_exporter/queries.yaml, copied next to the certificate so that the
 * exporter's user needs no access to the charm directory). It visits every database
 * (--auto-discover-databases; clients.c grants monitoring CONNECT on the client ones).
 *
 * Files: /var/lib/pg-agent/exporter/{web.yml,queries.yaml} (root:prometheus 0640, next to
 * its certificate, see pki.h), /run/pg-agent/exporter.pid, /var/log/pg-agent/exporter.log
 * (moved to .1 past EXPORTER_LOG_MAX).
 *
 * Limits: under systemd the exporter is in the agent service's cgroup, so a restart of
 * the service (not a re-exec) stops it; the first hook after that starts it again.
 *
 * Ownership: strings are borrowed; *err is malloc'd. Hook thread only.
 */
#ifndef PG_AGENT_EXPORTER_H
#define PG_AGENT_EXPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define EXPORTER_BIN "/usr/bin/prometheus-postgres-exporter"
#define EXPORTER_USER "prometheus"
#define EXPORTER_PORT 9187
#define EXPORTER_PID_FILE "/run/pg-agent/exporter.pid"
#define EXPORTER_LOG_FILE "/var/log/pg-agent/exporter.log"
#define EXPORTER_LOG_MAX (8 << 20)
#define EXPORTER_QUERIES "src/postgres_exporter/queries.yaml" /* in the charm */
#define EXPORTER_QUERIES_MAX ((size_t)256 * 1024)
#define EXPORTER_ARGV_MAX 12

struct exporter_argv {
    const char *argv[EXPORTER_ARGV_MAX + 1];
    char store[2048];
    size_t used;
};

/* The command line for a unit address (v4 or v6 literal) and the files above. Pure.
 * Returns 0 or -EINVAL (no or a bad address) / -ENOSPC. */
int exporter_argv_build(const char *address, struct exporter_argv *out, char **err);

/* The web configuration (TLS 1.2+, the certificate and key files). Pure; *out malloc'd. */
int exporter_web_config(char **out, char **err);

/* Converge: when the package and its user exist and the exporter's certificate is in
 * place, the files are current and the exporter runs with the command line for address
 * (restarted when it differs). *running tells whether it serves. 0, or a negative errno
 * with *err (a file could not be written, it could not be started). */
int exporter_converge(const char *address, const char *charm_dir, bool *running, char **err);

/* Between hooks: restart the exporter converge last started when it died (at most once
 * per backoff period, which doubles from 5 s to 5 min while it keeps dying young). */
void exporter_supervise(void);

/* The unit leaves: stop it. */
void exporter_stop(void);

#endif
