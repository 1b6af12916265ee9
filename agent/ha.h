/* The HA loop: a thread of its own that keeps this unit's PostgreSQL in the role the DCS
 * gives it (Patroni-style, ../shared/reference/ha.md), with lease renewal on its own
 * timer and a fencing deadline on a second thread that nothing else can delay.
 *
 * The hook thread configures it (ha_configure: who we are, the rendered configuration
 * files, timings) and reads what it sees (ha_snapshot). Everything else - bootstrap, clone,
 * start, promote, follow, rewind, demote, switchover, synchronous standbys - happens here.
 *
 * DCS layout (ha.md section 3, namespace /db/ as Charmed PostgreSQL, scope = application):
 *   /db/<app>/leader, members/<member>, initialize, config, status, sync, failover, history
 *
 * Ownership: ha_configure copies what it is given; ha_snapshot fills a caller's struct.
 */
#ifndef PG_AGENT_HA_H
#define PG_AGENT_HA_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "pg.h"
#include "peers.h"

#define HA_NAMESPACE "/db/"
#define HA_CONF_FILE "pg-agent-ha.conf" /* in the data directory, included last */
#define HA_API_PORT 8008

struct ha_params {
    char name[64];    /* member name (postgresql-0) */
    char scope[64];   /* application */
    char unit[64];    /* Juju unit name, for juju-exec */
    char address[PEERS_ADDR_MAX];
    char charm_dir[PATH_MAX];
    struct pg_install pg;
    int ttl_s;              /* ha-lease-ttl */
    int renew_ms;           /* ha-renew-interval */
    int sync_count;         /* standbys that must confirm commits (resolved; 0: async) */
    bool sync_strict;       /* wait instead of degrading (with more than one unit) */
    int watchdog_mode;      /* enum watchdog_mode (ha-watchdog) */
    bool juju_leader;       /* promote etcd learners, and raise events for the leader */
    int planned_units;      /* this unit and its peers */
    char peer_addrs[PEERS_MAX][PEERS_ADDR_MAX]; /* etcd endpoints besides the local one */
    int n_peer_addrs;
    const char *conf[3];    /* postgresql.conf, pg_hba.conf, pg_ident.conf (copied) */
};

enum ha_role { HA_ROLE_NONE = 0, HA_ROLE_PRIMARY, HA_ROLE_REPLICA, HA_ROLE_SYNC_STANDBY };

struct ha_snapshot {
    bool started;        /* the loop runs */
    bool dcs_ok;         /* the last read of the DCS succeeded */
    enum ha_role role;   /* what this member is, as the DCS and PostgreSQL agree */
    bool pg_running;
    bool streaming;      /* replica: WAL receiver streaming */
    char leader[64];     /* member name of the leader, "" when none */
    char leader_address[PEERS_ADDR_MAX];
    uint32_t timeline;
    uint64_t lsn;
    bool restart_pending; /* PostgreSQL runs with a changed setting that needs a restart */
    char action[32];     /* the last decision's action and reason */
    char reason[256];
    char problem[256];   /* why the loop cannot do its job (blocked/waiting), "" when fine */
    bool blocked;        /* problem needs an operator (e.g. etcd lost its quorum) */
    uint64_t generation; /* bumps whenever role or leader changes */
    /* the other members that run and stream from the leader (their addresses, DCS order):
     * what clients get as read-only endpoints */
    char replicas[PEERS_MAX][PEERS_ADDR_MAX];
    int n_replicas;
};

/* Start the loop (first call) or hand it new parameters. Returns 0 or -1 (*err). */
int ha_configure(const struct ha_params *p, char **err);

void ha_snapshot_get(struct ha_snapshot *out);

/* At agent start: resume the loop with the parameters the previous agent (restart or
 * upgrade re-exec) saved, so that no lease lapses while waiting for a hook. Returns 1
 * when resumed, 0 when there was nothing (usable) to resume. */
int ha_resume(void);

/* Events the loop raises by itself (ha-changed, a full pass): this member's role or the
 * leader changed; the set of streaming replicas changed (the Juju leader's agent only: it
 * publishes the client endpoints); the login roles of the local server changed (a client
 * with CREATEROLE made one: pg_hba.conf names it). */

/* Raise an event (juju-exec) in about ms milliseconds: the hook thread's way to get a hook
 * context later (an etcd membership change etcd refused, a certificate due for renewal).
 * The earliest pending request wins. */
void ha_poke_later(int ms);

/* Ask for a switchover to candidate ("" = the best replica): writes the failover key and
 * waits until the leader changed (timeout_ms). Returns 0; -EINVAL with *msg (Patroni's
 * text) when the request is refused; -ETIMEDOUT. Runs on the caller's thread with its own
 * DCS client. */
int ha_switchover(const char *candidate, int timeout_ms, char **msg);

/* force-promote (ha.md 6.4): only when etcd has no quorum. Rebuilds the DCS from this
 * unit (etcd --force-new-cluster), makes this member the only one allowed to promote
 * (the sync key names it, the optime is forgotten) and lets it take the leader key once
 * the old one expired. Returns 0 with *msg, or a negative errno with *msg. */
int ha_force_promote(char **msg);

/* The unit is going away: hand the primary over (when it is this unit), stop the loop and
 * PostgreSQL, release the lease. Blocks up to timeout_ms. */
void ha_leave(int timeout_ms);

/* Members as the DCS shows them, as a JSON array for cluster-status (new reference), or
 * NULL with *err. */
struct json_t;
int ha_cluster_json(struct json_t **out, char **err);

#endif
