/* The HA decision as a rule table (ha_decide.h): each row is a condition, an action and
 * a reason; the first row whose condition holds decides. */
#include "ha_decide.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct ha_input {
    const struct ha_local *l;
    const struct ha_dcs *d;
    const struct ha_peers *p;
    const struct ha_config *c;
};

static bool leader_is_me(const struct ha_input *in)
{
    return in->d->leader_present && strcmp(in->d->leader, in->l->name) == 0;
}

static bool other_leader(const struct ha_input *in)
{
    return in->d->leader_present && !leader_is_me(in);
}

static uint64_t lag(const struct ha_input *in)
{
    return in->d->optime > in->l->lsn ? in->d->optime - in->l->lsn : 0;
}

/* A failover or switchover request whose candidate is another member. */
static bool switchover_away(const struct ha_input *in)
{
    return in->d->failover_requested && in->d->failover_candidate[0] &&
           strcmp(in->d->failover_candidate, in->l->name) != 0;
}

static bool manual_failover_to_me(const struct ha_input *in)
{
    return in->d->failover_requested && in->d->failover_manual &&
           strcmp(in->d->failover_candidate, in->l->name) == 0;
}

/* ---- conditions, one per row ------------------------------------------------------ */

static bool c_dcs_lost_primary_leased(const struct ha_input *in)
{
    return !in->d->reachable && in->l->running && in->l->primary && in->d->lease_valid;
}
static bool c_dcs_lost_primary(const struct ha_input *in)
{
    return !in->d->reachable && in->l->running && in->l->primary;
}
static bool c_dcs_lost(const struct ha_input *in)
{
    return !in->d->reachable;
}
static bool c_long_action_leader(const struct ha_input *in)
{
    return in->l->long_action && leader_is_me(in);
}
static bool c_long_action(const struct ha_input *in)
{
    return in->l->long_action;
}
static bool c_no_data_bootstrap(const struct ha_input *in)
{
    return !in->l->has_data && !in->d->initialized;
}
static bool c_no_data_clone(const struct ha_input *in)
{
    return !in->l->has_data && other_leader(in);
}
static bool c_no_data(const struct ha_input *in)
{
    return !in->l->has_data;
}
static bool c_not_running(const struct ha_input *in)
{
    return !in->l->running;
}
static bool c_mine_lost_lease(const struct ha_input *in)
{
    return leader_is_me(in) && !in->d->renewed && in->l->primary;
}
static bool c_mine_lost_lease_replica(const struct ha_input *in)
{
    return leader_is_me(in) && !in->d->renewed;
}
/* For the leader, a request without a candidate also means "to the best other member". */
static bool c_mine_switchover(const struct ha_input *in)
{
    return leader_is_me(in) && in->l->primary && in->d->failover_requested &&
           (!in->d->failover_candidate[0] || switchover_away(in));
}
static bool c_mine_primary(const struct ha_input *in)
{
    return leader_is_me(in) && in->l->primary;
}
static bool c_mine_starting(const struct ha_input *in)
{
    return leader_is_me(in) && in->l->starting;
}
static bool c_mine_replica(const struct ha_input *in)
{
    return leader_is_me(in);
}
/* Checked before everything but the DCS rows: two primaries must never both run, whatever
 * else is going on (a long action, odd local facts). */
static bool c_other_and_primary(const struct ha_input *in)
{
    return other_leader(in) && in->l->running && in->l->primary;
}
static bool c_other_diverged(const struct ha_input *in)
{
    return other_leader(in) && in->d->leader_timeline &&
           in->l->timeline > in->d->leader_timeline;
}
static bool c_other(const struct ha_input *in)
{
    return other_leader(in);
}
/* No leader: the promotion gate, each row a reason not to race. */
static bool c_gate_starting(const struct ha_input *in)
{
    return in->l->starting;
}
static bool c_gate_nofailover(const struct ha_input *in)
{
    return in->l->nofailover;
}
static bool c_gate_watchdog(const struct ha_input *in)
{
    return in->l->watchdog_required && !in->l->watchdog_ok;
}
static bool c_gate_candidate_elsewhere(const struct ha_input *in)
{
    return switchover_away(in);
}
static bool c_gate_sync(const struct ha_input *in)
{
    return in->d->sync_mode && !in->d->in_sync && !manual_failover_to_me(in);
}
static bool c_gate_stale_primary(const struct ha_input *in)
{
    return in->l->primary && in->d->history_timeline &&
           in->l->timeline < in->d->history_timeline;
}
static bool c_gate_timeline(const struct ha_input *in)
{
    return in->c->check_timeline && in->d->history_timeline &&
           in->l->timeline < in->d->history_timeline && !manual_failover_to_me(in);
}
static bool c_gate_lag(const struct ha_input *in)
{
    return in->d->optime && lag(in) > in->c->maximum_lag_on_failover &&
           !manual_failover_to_me(in);
}
static bool c_gate_primary_alive(const struct ha_input *in)
{
    return in->p->primary_alive;
}
static bool c_gate_better(const struct ha_input *in)
{
    return in->p->better_candidate && !manual_failover_to_me(in);
}
static bool c_always(const struct ha_input *in)
{
    (void)in;
    return true;
}

/* ---- the table ------------------------------------------------------------------- */

struct ha_rule {
    const char *name;
    bool (*when)(const struct ha_input *in);
    enum ha_action action;
    const char *reason; /* may use %s once: the leader's name */
};

static const struct ha_rule rules[] = {
    {"dcs-lost-primary-leased", c_dcs_lost_primary_leased, HA_WAIT,
     "the DCS cannot be read but this member's lease is still valid: keep serving (the fence "
     "stops PostgreSQL before the lease can expire elsewhere)"},
    {"dcs-lost-primary", c_dcs_lost_primary, HA_DEMOTE_OFFLINE,
     "the DCS cannot be read: a primary that cannot prove its lease steps down"},
    {"dcs-lost", c_dcs_lost, HA_WAIT, "the DCS cannot be read: not racing, not changing"},
    {"other-and-primary", c_other_and_primary, HA_DEMOTE_IMMEDIATE,
     "%s holds the leader lock but this member runs as primary: demote"},
    {"long-action-leader", c_long_action_leader, HA_RENEW,
     "a long action is running: only keeping the leader lock"},
    {"long-action", c_long_action, HA_WAIT, "a long action is running"},
    {"no-data-bootstrap", c_no_data_bootstrap, HA_BOOTSTRAP,
     "no data directory and the cluster is not initialised: bootstrap"},
    {"no-data-clone", c_no_data_clone, HA_CLONE, "no data directory: clone from %s"},
    {"no-data", c_no_data, HA_WAIT, "no data directory and no leader to clone from"},
    {"not-running", c_not_running, HA_START, "PostgreSQL is not running: start it"},
    {"mine-lost-lease", c_mine_lost_lease, HA_DEMOTE_NOLOCK,
     "the leader lock could not be renewed: stop at once (another member may take it)"},
    {"mine-lost-lease-replica", c_mine_lost_lease_replica, HA_RECLAIM,
     "the leader key still names this member, which stepped down: lead again if its lease "
     "is confirmed (nobody else can have been promoted meanwhile)"},
    {"mine-switchover", c_mine_switchover, HA_SWITCHOVER,
     "a switchover away from this member is requested"},
    {"mine-primary", c_mine_primary, HA_RENEW, "this member holds the leader lock"},
    {"mine-starting", c_mine_starting, HA_WAIT,
     "this member holds the leader lock and PostgreSQL is still starting"},
    {"mine-replica", c_mine_replica, HA_PROMOTE,
     "this member holds the leader lock but runs as a replica: promote"},
    {"other-diverged", c_other_diverged, HA_REWIND,
     "this member's timeline is ahead of %s's: rewind before following"},
    {"other", c_other, HA_FOLLOW, "following %s"},
    {"gate-starting", c_gate_starting, HA_WAIT, "no leader; PostgreSQL is still starting"},
    {"gate-nofailover", c_gate_nofailover, HA_WAIT, "no leader; this member is tagged nofailover"},
    {"gate-watchdog", c_gate_watchdog, HA_WAIT,
     "no leader; the required watchdog is not working"},
    {"gate-candidate-elsewhere", c_gate_candidate_elsewhere, HA_WAIT,
     "no leader; a failover to another member is requested"},
    {"gate-sync", c_gate_sync, HA_WAIT,
     "no leader; this member is not a synchronous standby and may not promote"},
    {"gate-stale-primary", c_gate_stale_primary, HA_WAIT,
     "no leader; this former primary's timeline is behind the cluster's"},
    {"gate-timeline", c_gate_timeline, HA_WAIT,
     "no leader; this member's timeline is behind the cluster history"},
    {"gate-lag", c_gate_lag, HA_WAIT,
     "no leader; this member lags more than maximum_lag_on_failover"},
    {"gate-primary-alive", c_gate_primary_alive, HA_WAIT,
     "no leader key, but a peer still runs as primary"},
    {"gate-better", c_gate_better, HA_WAIT, "no leader; a healthier member exists"},
    {"acquire", c_always, HA_ACQUIRE, "no leader and this member is the healthiest: race"},
};

void ha_decide(const struct ha_local *local, const struct ha_dcs *dcs,
               const struct ha_peers *peers, const struct ha_config *cfg,
               struct ha_decision *out)
{
    const struct ha_input in = {.l = local, .d = dcs, .p = peers, .c = cfg};
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (!rules[i].when(&in))
            continue;
        out->action = rules[i].action;
        out->rule = rules[i].name;
        /* The reasons are the table's own literals with at most one %s: the leader. */
        const char *r = rules[i].reason;
        const char *at = strstr(r, "%s");
        if (at)
            (void)snprintf(out->reason, sizeof out->reason, "%.*s%s%s", (int)(at - r), r,
                           dcs->leader, at + 2);
        else
            (void)snprintf(out->reason, sizeof out->reason, "%s", r);
        return;
    }
    /* Unreachable: the last row always matches. */
    out->action = HA_WAIT;
    out->rule = "none";
    (void)snprintf(out->reason, sizeof out->reason, "no rule matched");
}

const char *ha_action_name(enum ha_action action)
{
    static const char *const names[] = {
        "wait",   "bootstrap", "clone",  "start",           "renew",
        "promote", "acquire",  "follow", "rewind",          "demote-offline",
        "demote-immediate", "demote-nolock", "switchover", "reclaim",
    };
    if ((unsigned)action < sizeof names / sizeof names[0])
        return names[action];
    return "?";
}
