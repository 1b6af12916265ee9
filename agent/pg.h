/* The PostgreSQL server as a workload: find or install the distro's packages, create the
 * cluster with initdb, start it outside the agent's process tree, adopt, stop, reload.
 *
 * Layout (Debian/Ubuntu packages, the charm's own cluster next to the distro's):
 *   binaries   /usr/lib/postgresql/<major>/bin
 *   data       /var/lib/postgresql/<major>/charm   (postgresql.conf, pg_hba.conf in it)
 *   socket     /run/postgresql (the distro's, owned by postgres)
 *   logs       /var/log/postgresql/postgresql-<major>-charm-*.log
 * The distro's default cluster is never created (a createcluster.d drop-in written before
 * the packages are installed) and one created anyway is stopped and disabled.
 *
 * The server never lives in the agent's process tree: where systemd runs it is a
 * transient unit of its own (pg-agent-postgresql.service), elsewhere a double-forked,
 * setsid'd process. An agent restart or upgrade therefore never stops it; the agent finds
 * it again from postmaster.pid (adoption).
 *
 * Slow steps (apt, initdb, start) run in child processes with a deadline; the caller's
 * keepalive is pinged while it waits (proc_set_keepalive's).
 *
 * Ownership: struct pg_install holds fixed-size buffers; nothing is allocated except
 * *err messages (caller frees).
 */
#ifndef PG_AGENT_PG_H
#define PG_AGENT_PG_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#define PG_MIN_MAJOR 14
#define PG_MAX_MAJOR 17
#define PG_PORT 5432
#define PG_SOCKET_DIR "/run/postgresql"
#define PG_LOG_DIR "/var/log/postgresql"
#define PG_SYSTEMD_UNIT "pg-agent-postgresql.service"
#define PG_CREATECLUSTER_DROPIN "/etc/postgresql-common/createcluster.d/pg-agent.conf"

struct pg_install {
    int major;
    char bindir[PATH_MAX];
    char datadir[PATH_MAX];
    uid_t uid; /* the postgres OS user */
    gid_t gid;
};

/* The newest installed major version in PG_MIN_MAJOR..PG_MAX_MAJOR, preferring one that
 * already has the charm's cluster. Returns 0, or -ENOENT when none is installed. */
int pg_detect(struct pg_install *out, char **err);

/* Install the distro's `postgresql` package (the drop-in first). Runs apt-get through
 * systemd-run where systemd runs (the agent's own service cannot write /usr). */
/* The metrics exporter's package (prometheus-postgres-exporter), without recommends, its
 * own service disabled. 0 or -1 with *err. */
int pg_install_exporter(char **err);

int pg_install_packages(char **err);

/* Stop and disable every distro cluster (/etc/postgresql/<v>/<name>) that is not
 * disabled yet. Returns the number it disabled, or a negative errno. */
int pg_disable_distro_clusters(char **err);

/* The directories around the data directory (its parent, the socket and log
 * directories) exist with the right owners: before initdb or a clone. */
int pg_prepare_dirs(const struct pg_install *pg, char **err);

/* true when datadir holds an initialised cluster (PG_VERSION). */
bool pg_initialised(const struct pg_install *pg);

/* initdb with data checksums, UTF-8, peer auth locally and SCRAM for TCP, as postgres,
 * into a scratch directory renamed into place only when it succeeded. */
int pg_initdb(const struct pg_install *pg, char **err);

/* Write a file of the cluster atomically (temp file + rename), owned by postgres, mode
 * 0600. Returns 1 when the content changed, 0 when it was already that, or -errno. */
int pg_write_file(const struct pg_install *pg, const char *name, const char *content,
                  char **err);

/* Read a file of the cluster (malloc'd into *out; NULL and 0 when it does not exist). */
int pg_read_file(const struct pg_install *pg, const char *name, char **out, char **err);

/* The running postmaster's pid from postmaster.pid, checked alive (not a zombie) and
 * really a postgres of this data directory; 0 when none runs. *ready tells whether it
 * reported "ready" (accepting connections). */
pid_t pg_running(const struct pg_install *pg, bool *ready);

/* Start the server (detached, see above) and wait until it accepts connections
 * (timeout_ms). Returns 0 or a negative errno with the reason (and the tail of the
 * startup log when it died). */
int pg_start(const struct pg_install *pg, int timeout_ms, char **err);

/* Fast shutdown (SIGINT) and wait until it is gone (then SIGQUIT). */
int pg_stop(const struct pg_install *pg, int timeout_ms, char **err);

/* SIGHUP to the postmaster. */
int pg_reload(const struct pg_install *pg, char **err);

/* The path of a file of the cluster ("<datadir>/<name>"), into buf. */
void pg_path(const struct pg_install *pg, const char *name, char *buf, size_t size);

#endif
