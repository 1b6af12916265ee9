/* Unit tests for agent/ha_decide.c: every row of the HA rule table, from a healthy
 * baseline changed one fact at a time, and the safety properties across combinations. */
#include "check.h"

#include "ha_decide.h"

#include <stdio.h>
#include <string.h>

struct world {
    struct ha_local l;
    struct ha_dcs d;
    struct ha_peers p;
    struct ha_config c;
};

/* A healthy replica of pg-0, in sync, streaming, caught up. */
static struct world replica(void)
{
    struct world w = {0};
    snprintf(w.l.name, sizeof w.l.name, "pg-1");
    w.l.has_data = w.l.running = w.l.streaming = true;
    w.l.timeline = 3;
    w.l.lsn = 1000;
    w.d.reachable = w.d.initialized = w.d.leader_present = w.d.renewed = true;
    snprintf(w.d.leader, sizeof w.d.leader, "pg-0");
    w.d.leader_timeline = 3;
    w.d.optime = 1000;
    w.d.history_timeline = 3;
    w.d.sync_mode = true;
    w.d.in_sync = true;
    w.c.maximum_lag_on_failover = 1048576;
    return w;
}

/* The healthy primary holding the lock. */
static struct world primary(void)
{
    struct world w = replica();
    snprintf(w.l.name, sizeof w.l.name, "pg-0");
    w.l.primary = true;
    w.l.streaming = false;
    return w;
}

/* A replica whose leader just vanished. */
static struct world orphan(void)
{
    struct world w = replica();
    w.d.leader_present = false;
    w.d.leader[0] = '\0';
    return w;
}

static struct ha_decision decide(const struct world *w)
{
    struct ha_decision out;
    memset(&out, 0xAA, sizeof out);
    ha_decide(&w->l, &w->d, &w->p, &w->c, &out);
    return out;
}

#define EXPECT(w, act, rulename)                                                            \
    do {                                                                                    \
        struct ha_decision d_ = decide(&(w));                                               \
        CHECK(d_.action == (act));                                                          \
        CHECK_STR(d_.rule, rulename);                                                       \
        CHECK(d_.reason[0] != '\0' && strlen(d_.reason) < sizeof d_.reason);                \
    } while (0)

TEST(healthy_cluster)
{
    struct world w = primary();
    EXPECT(w, HA_RENEW, "mine-primary");
    w = replica();
    EXPECT(w, HA_FOLLOW, "other");
    struct ha_decision d = decide(&w);
    CHECK(strstr(d.reason, "pg-0") != NULL);
}

TEST(dcs_loss)
{
    struct world w = primary();
    w.d.reachable = false;
    EXPECT(w, HA_DEMOTE_OFFLINE, "dcs-lost-primary");
    w.d.lease_valid = true; /* a short etcd outage (an election) is ridden out */
    EXPECT(w, HA_WAIT, "dcs-lost-primary-leased");
    w.d.lease_valid = false;
    w = replica();
    w.d.reachable = false;
    EXPECT(w, HA_WAIT, "dcs-lost");
    w = orphan();
    w.d.reachable = false; /* never race without the DCS */
    EXPECT(w, HA_WAIT, "dcs-lost");
}

TEST(lease_loss_on_the_primary)
{
    struct world w = primary();
    w.d.renewed = false;
    EXPECT(w, HA_DEMOTE_NOLOCK, "mine-lost-lease");
    w.l.primary = false;
    EXPECT(w, HA_RECLAIM, "mine-lost-lease-replica");
}

TEST(another_leader_while_primary)
{
    struct world w = primary();
    snprintf(w.d.leader, sizeof w.d.leader, "pg-2");
    EXPECT(w, HA_DEMOTE_IMMEDIATE, "other-and-primary");
    struct ha_decision d = decide(&w);
    CHECK(strstr(d.reason, "pg-2") != NULL);
}

TEST(lock_won_then_promote)
{
    struct world w = replica();
    snprintf(w.d.leader, sizeof w.d.leader, "pg-1");
    EXPECT(w, HA_PROMOTE, "mine-replica");
    w.l.starting = true;
    EXPECT(w, HA_WAIT, "mine-starting");
}

TEST(long_actions)
{
    struct world w = primary();
    w.l.long_action = true;
    EXPECT(w, HA_RENEW, "long-action-leader");
    w = replica();
    w.l.long_action = true;
    EXPECT(w, HA_WAIT, "long-action");
}

TEST(no_data)
{
    struct world w = replica();
    w.l.has_data = w.l.running = false;
    EXPECT(w, HA_CLONE, "no-data-clone");
    w.d.initialized = false;
    EXPECT(w, HA_BOOTSTRAP, "no-data-bootstrap");
    w = orphan();
    w.l.has_data = w.l.running = false;
    EXPECT(w, HA_WAIT, "no-data");
}

TEST(not_running)
{
    struct world w = replica();
    w.l.running = false;
    EXPECT(w, HA_START, "not-running");
    w = primary();
    w.l.running = w.l.primary = false;
    EXPECT(w, HA_START, "not-running");
}

TEST(diverged_replica_rewinds)
{
    struct world w = replica();
    w.l.timeline = 4; /* ahead of the leader's 3: a fork */
    EXPECT(w, HA_REWIND, "other-diverged");
    w.d.leader_timeline = 0; /* unknown: follow, the rejoin code checks ancestry */
    EXPECT(w, HA_FOLLOW, "other");
}

TEST(switchover_request)
{
    struct world w = primary();
    w.d.failover_requested = true;
    snprintf(w.d.failover_candidate, sizeof w.d.failover_candidate, "pg-1");
    EXPECT(w, HA_SWITCHOVER, "mine-switchover");
    snprintf(w.d.failover_candidate, sizeof w.d.failover_candidate, "pg-0"); /* to me */
    EXPECT(w, HA_RENEW, "mine-primary");
}

TEST(gate_passes_for_the_healthiest)
{
    struct world w = orphan();
    EXPECT(w, HA_ACQUIRE, "acquire");
}

TEST(gate_rows)
{
    struct world w;

    w = orphan();
    w.l.starting = true;
    EXPECT(w, HA_WAIT, "gate-starting");
    w = orphan();
    w.l.nofailover = true;
    EXPECT(w, HA_WAIT, "gate-nofailover");
    w = orphan();
    w.l.watchdog_required = true;
    EXPECT(w, HA_WAIT, "gate-watchdog");
    w.l.watchdog_ok = true;
    EXPECT(w, HA_ACQUIRE, "acquire");
    w = orphan();
    w.d.failover_requested = true;
    snprintf(w.d.failover_candidate, sizeof w.d.failover_candidate, "pg-2");
    EXPECT(w, HA_WAIT, "gate-candidate-elsewhere");
    w = orphan();
    w.d.in_sync = false;
    EXPECT(w, HA_WAIT, "gate-sync");
    w.d.sync_mode = false; /* async: lag decides */
    EXPECT(w, HA_ACQUIRE, "acquire");
    w = orphan();
    w.l.primary = true; /* a restarted ex-primary on an old timeline */
    w.l.timeline = 2;
    EXPECT(w, HA_WAIT, "gate-stale-primary");
    w = orphan();
    w.c.check_timeline = true;
    w.l.timeline = 2;
    EXPECT(w, HA_WAIT, "gate-timeline");
    w.c.check_timeline = false;
    EXPECT(w, HA_ACQUIRE, "acquire");
    w = orphan();
    w.d.optime = w.l.lsn + w.c.maximum_lag_on_failover + 1;
    EXPECT(w, HA_WAIT, "gate-lag");
    w.d.optime = w.l.lsn + w.c.maximum_lag_on_failover; /* exactly the limit: allowed */
    EXPECT(w, HA_ACQUIRE, "acquire");
    w = orphan();
    w.p.primary_alive = true;
    EXPECT(w, HA_WAIT, "gate-primary-alive");
    w = orphan();
    w.p.better_candidate = true;
    EXPECT(w, HA_WAIT, "gate-better");
}

TEST(manual_failover_skips_lag_sync_timeline)
{
    struct world w = orphan();
    w.d.failover_requested = w.d.failover_manual = true;
    snprintf(w.d.failover_candidate, sizeof w.d.failover_candidate, "pg-1");
    w.d.in_sync = false;
    w.d.optime = w.l.lsn + 10 * w.c.maximum_lag_on_failover;
    w.c.check_timeline = true;
    w.l.timeline = 2;
    EXPECT(w, HA_ACQUIRE, "acquire");
    /* but never while a peer still runs as primary */
    w.p.primary_alive = true;
    EXPECT(w, HA_WAIT, "gate-primary-alive");
}

/* Safety across every combination of the boolean facts: a member only acquires with
 * the DCS reachable and no leader key; it only promotes or renews while holding the key;
 * it never keeps running as primary while the key names another member. */
TEST(safety_properties)
{
    int combos = 0;
    for (unsigned bits = 0; bits < (1u << 12); bits++) {
        struct world w = orphan();
        w.l.has_data = bits & 1;
        w.l.running = bits & 2;
        w.l.primary = bits & 4;
        w.l.starting = bits & 8;
        w.d.reachable = bits & 16;
        w.d.leader_present = bits & 32;
        snprintf(w.d.leader, sizeof w.d.leader, "%s", (bits & 64) ? "pg-1" : "pg-0");
        w.d.renewed = bits & 128;
        w.d.sync_mode = bits & 256;
        w.d.in_sync = bits & 512;
        w.p.primary_alive = bits & 1024;
        w.l.long_action = bits & 2048;
        struct ha_decision d = decide(&w);
        bool mine = w.d.leader_present && strcmp(w.d.leader, w.l.name) == 0;
        if (d.action == HA_ACQUIRE) {
            CHECK(w.d.reachable && !w.d.leader_present && !w.p.primary_alive);
            CHECK(!w.d.sync_mode || w.d.in_sync);
        }
        if (d.action == HA_PROMOTE || d.action == HA_RENEW)
            CHECK(mine);
        if (d.action == HA_PROMOTE)
            CHECK(w.d.reachable && w.d.renewed);
        if (w.l.running && w.l.primary && w.d.reachable && w.d.leader_present && !mine)
            CHECK(d.action == HA_DEMOTE_IMMEDIATE);
        if (w.l.running && w.l.primary && !w.d.reachable)
            CHECK(d.action == HA_DEMOTE_OFFLINE);
        CHECK(strcmp(ha_action_name(d.action), "?") != 0);
        combos++;
    }
    CHECK(combos == 4096);
}

int main(void)
{
    static const struct check_case cases[] = {
        {"healthy_cluster", healthy_cluster},
        {"dcs_loss", dcs_loss},
        {"lease_loss_on_the_primary", lease_loss_on_the_primary},
        {"another_leader_while_primary", another_leader_while_primary},
        {"lock_won_then_promote", lock_won_then_promote},
        {"long_actions", long_actions},
        {"no_data", no_data},
        {"not_running", not_running},
        {"diverged_replica_rewinds", diverged_replica_rewinds},
        {"switchover_request", switchover_request},
        {"gate_passes_for_the_healthiest", gate_passes_for_the_healthiest},
        {"gate_rows", gate_rows},
        {"manual_failover_skips_lag_sync_timeline", manual_failover_skips_lag_sync_timeline},
        {"safety_properties", safety_properties},
    };
    return check_run("ha_decide", cases, sizeof cases / sizeof cases[0]);
}
