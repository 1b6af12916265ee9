/* The unit's etcd member as a workload: its command line (pure, from a typed spec), the
 * initial-cluster list read from peer relation data (validated at the edge), and the
 * process itself (started detached like PostgreSQL, found again from a pid file).
 *
 * Flags follow ../shared/reference/ha.md section 6.1: mutual TLS for clients and peers,
 * a data directory per scope, a cluster token unique to the deployment, the loopback
 * client URL for the local agent. --initial-cluster* only matter on the first start (etcd
 * ignores them once the data directory exists).
 *
 * Ownership: struct etcd_spec borrows its strings; etcd_argv_build fills a caller-owned
 * struct etcd_argv (fixed storage, nothing to free). Messages (*err) are malloc'd.
 */
#ifndef PG_AGENT_ETCD_MEMBER_H
#define PG_AGENT_ETCD_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ETCD_BIN "/usr/bin/etcd"
#define ETCD_DATA_BASE "/var/lib/etcd"
#define ETCD_CLIENT_PORT 2379
#define ETCD_PEER_PORT 2380
#define ETCD_MAX_MEMBERS 16
#define ETCD_NAME_MAX 64
#define ETCD_URL_MAX 128

struct etcd_peer {
    char name[ETCD_NAME_MAX]; /* [a-z0-9-]+, e.g. postgresql-1 */
    char peer_url[ETCD_URL_MAX]; /* https://<ip>:2380 */
};

struct etcd_cluster {
    struct etcd_peer members[ETCD_MAX_MEMBERS];
    size_t n;
};

struct etcd_spec {
    const char *name;     /* this member */
    const char *ip;       /* this unit's address (v4 or v6) */
    const char *scope;    /* the application: data directory /var/lib/etcd/<scope> */
    const char *token;    /* unique per deployment (model uuid + app) */
    bool existing;        /* join an existing cluster (else create a new one) */
    const struct etcd_cluster *initial; /* must contain this member */
    const char *cert, *key, *ca;        /* PEM files (server+client cert, its key, the CA) */
    int heartbeat_ms;     /* 0: etcd's default 100 */
    int election_ms;      /* 0: etcd's default 1000 */
};

#define ETCD_ARGV_MAX 48
#define ETCD_ARGV_STORE 8192
struct etcd_argv {
    const char *argv[ETCD_ARGV_MAX + 1]; /* NULL-terminated; argv[0] = ETCD_BIN */
    char store[ETCD_ARGV_STORE];
    size_t used;
};

/* Validate a member name: 1..63 of [a-z0-9-], not starting or ending with '-'. */
bool etcd_name_valid(const char *name);

/* Parse "name1=https://ip1:2380,name2=https://[v6]:2380" (the form the leader publishes
 * in peer relation data, and etcd's --initial-cluster). Every name valid, every URL
 * https with an IP literal host and port 2380, no duplicate name or URL, at most
 * ETCD_MAX_MEMBERS. Returns 0 or -EINVAL with a message naming the bad entry. */
int etcd_cluster_parse(const char *text, struct etcd_cluster *out, char **err);

/* The same list formatted back (into buf). Returns 0 or -ENOSPC. */
int etcd_cluster_format(const struct etcd_cluster *c, char *buf, size_t size);

/* The command line for spec. Returns 0 or -EINVAL (a missing or invalid field, or the
 * member not in the initial cluster) / -ENOSPC. */
int etcd_argv_build(const struct etcd_spec *spec, struct etcd_argv *out, char **err);

/* The running member: the pid in pid_file when that process is alive and is etcd;
 * 0 otherwise. */
pid_t etcd_running(const char *pid_file);

/* Start etcd detached (as the etcd OS user when it exists, else root), output appended
 * to log_file, its pid written to pid_file. Returns the pid or a negative errno. */
pid_t etcd_start(const struct etcd_argv *argv, const char *pid_file, const char *log_file,
                 char **err);

#endif
