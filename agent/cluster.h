/* The etcd cluster follows the peer relation: the Juju leader bootstraps a one-member
 * cluster, adds each new unit as a learner (one at a time) and publishes the member list
 * the newcomer starts with, promotes learners once they caught up, and removes members
 * whose unit departed. Every unit runs its own member, supervised and adopted like
 * PostgreSQL (ha.md section 6).
 *
 * Threads: cluster_converge and cluster_leave run in hooks (main thread);
 * cluster_supervise runs on the HA thread. They share the local member's command line
 * under a mutex.
 *
 * Ownership: nothing is kept from the callers' structs; *err is malloc'd.
 */
#ifndef PG_AGENT_CLUSTER_H
#define PG_AGENT_CLUSTER_H

#include <stdbool.h>

#include "etcd.h"
#include "peers.h"
#include "request.h"

#define CLUSTER_PID_FILE "/run/pg-agent/etcd.pid"
#define CLUSTER_LOG_FILE "/var/log/pg-agent/etcd.log"

struct cluster_state {
    bool member;      /* this unit is in the published member list */
    bool running;     /* the local etcd runs */
    bool pending;     /* the leader has more units to add (a learner must catch up) */
    bool tls_pending; /* etcd's certificate files changed; it restarts when its turn comes */
    char message[256]; /* what it waits for, when it waits */
};

/* Converge membership and the local member. Returns 0 (see *st) or -1 (*err). */
int cluster_converge(const struct hook_event *ev, const struct peers_view *pv, bool leader,
                     struct cluster_state *st, char **err);

/* This unit leaves (its relation departed, or it stops): remove itself from the cluster
 * when it can, stop the local member and wipe its data directory (a removed member can
 * never start again with it, ha.md 5.4 #11). */
void cluster_leave(const struct peers_view *pv);

/* On the HA thread, about every second: restart the local member if it should run and
 * does not; with promote_learners, promote a learner that caught up. Returns 1 when a
 * learner was promoted (the caller raises an event so that the leader's next hook adds
 * the next unit), else 0. */
int cluster_supervise(struct etcd_client *c, bool promote_learners);

/* force-promote: restart the local member once with --force-new-cluster (it keeps its
 * data and becomes a one-member cluster; ha.md 6.4). The other members, once back, find
 * they were removed, wipe their data and are added again as learners. */
int cluster_force_new(char **err);

/* A client for the local member (the loopback endpoint, the agent's certificate). */
int cluster_client(int timeout_ms, struct etcd_client **out, char **err);

/* The peer URL of an address: https://ip:2380 or https://[v6]:2380. */
void cluster_peer_url(const char *address, char *buf, size_t size);

#endif
