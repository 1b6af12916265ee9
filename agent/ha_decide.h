/* The HA decision: a pure function from what this member knows (its PostgreSQL, the DCS
 * view, what its peers answered) to one action with a human reason, as a rule table.
 *
 * Modelled on Patroni's run cycle (../shared/reference/ha.md sections 2, 8, 12) and
 * pg_auto_failover's transition table: the rules are tried in order and the first that
 * matches decides; every decision carries the rule's reason, which the caller logs when
 * the action or the reason changes. No I/O, no clock: the caller passes everything in,
 * so the unit tests can walk every row.
 *
 * The promotion gate (ha.md section 8) is the set of "no leader" rules: a member only
 * races for the leader key when none of them holds it back; etcd's create-if-absent
 * transaction then picks one winner, and the winner promotes only after winning.
 *
 * Ownership: the structs hold fixed-size strings; nothing is allocated. The reason in a
 * decision is a string literal or points into the decision's own buffer.
 */
#ifndef PG_AGENT_HA_DECIDE_H
#define PG_AGENT_HA_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#define HA_NAME_MAX 64

/* This member's PostgreSQL, as read this cycle. */
struct ha_local {
    char name[HA_NAME_MAX]; /* member name (unit name with / as -) */
    bool has_data;          /* an initialised data directory */
    bool running;           /* a live postmaster */
    bool starting;          /* running but not accepting connections yet */
    bool primary;           /* running and not in recovery */
    bool streaming;         /* a replica whose WAL receiver streams */
    uint32_t timeline;
    uint64_t lsn;           /* primary: current WAL LSN; replica: max(receive, replay) */
    bool long_action;       /* promote, rewind, base backup or restart in progress */
    bool nofailover;        /* tag: never promote this member */
    bool watchdog_required; /* config: refuse the lock without a working watchdog */
    bool watchdog_ok;
};

/* The cluster as the DCS shows it this cycle. */
struct ha_dcs {
    bool reachable;            /* the read of the whole prefix succeeded */
    bool initialized;          /* the initialize key exists */
    bool leader_present;       /* the leader key exists */
    char leader[HA_NAME_MAX];  /* its value */
    bool renewed;              /* my lease keep-alive and ownership check succeeded */
    bool lease_valid;          /* I hold the key and my last confirmed renewal leaves time
                                  before the fencing deadline (a DCS outage can be ridden out) */
    uint32_t leader_timeline;  /* the leader's member timeline (0: unknown) */
    uint64_t optime;           /* status.optime: last known primary LSN (0: unknown) */
    uint32_t history_timeline; /* newest timeline in history (0: none) */
    bool sync_mode;            /* synchronous_mode on */
    bool in_sync;              /* I am listed in sync, or was its leader */
    bool failover_requested;   /* a failover/switchover key exists */
    char failover_candidate[HA_NAME_MAX]; /* its candidate ("" = any) */
    bool failover_manual;      /* POST /failover: skip lag, timeline and sync checks */
};

/* What the peer probe (parallel GET /patroni, short timeout) found. */
struct ha_peers {
    bool primary_alive;     /* a reachable peer reports it is not in recovery */
    bool better_candidate;  /* a reachable eligible peer is further ahead */
};

struct ha_config {
    uint64_t maximum_lag_on_failover; /* bytes */
    bool check_timeline;
};

enum ha_action {
    HA_WAIT = 0,           /* nothing to change this cycle */
    HA_BOOTSTRAP,          /* race for initialize, then initdb and start as primary */
    HA_CLONE,              /* build a replica from the leader (pg_basebackup) */
    HA_START,              /* start PostgreSQL (as it was: primary in place or replica) */
    HA_RENEW,              /* leader: keep the lock, publish status */
    HA_PROMOTE,            /* leader key is mine, server is a replica: promote */
    HA_ACQUIRE,            /* no leader and the gate passed: race for the key */
    HA_FOLLOW,             /* replica of the leader (point primary_conninfo at it) */
    HA_REWIND,             /* diverged from the leader: pg_rewind before following */
    HA_DEMOTE_OFFLINE,     /* DCS lost: fast stop, keep nothing, no DCS calls */
    HA_DEMOTE_IMMEDIATE,   /* another member leads: immediate stop, then follow */
    HA_DEMOTE_NOLOCK,      /* my renewal failed with the DCS reachable: stop now */
    HA_SWITCHOVER,         /* a switchover to another member is requested: graceful */
    HA_RECLAIM,            /* the key still names me on my live lease, I stepped down: lead
                              again if the lease is confirmed (Patroni: "had the session lock") */
};

struct ha_decision {
    enum ha_action action;
    const char *rule;   /* the rule's short name, stable for logs and tests */
    char reason[256];   /* a sentence for the log and the unit status */
};

/* Decide. Never fails: unknown or contradictory input falls to a safe rule (wait,
 * or demote when this member might otherwise be a second primary). */
void ha_decide(const struct ha_local *local, const struct ha_dcs *dcs,
               const struct ha_peers *peers, const struct ha_config *cfg,
               struct ha_decision *out);

/* "wait", "bootstrap", ... */
const char *ha_action_name(enum ha_action action);

#endif
