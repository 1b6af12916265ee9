/* The HA loop (ha.h): the DCS view, this member's PostgreSQL, the decision (ha_decide.c)
 * and its execution, lease renewal, the fencing thread, synchronous standbys. */
/* _GNU_SOURCE is how glibc is asked for asprintf and pthread naming. */
#define _GNU_SOURCE
#include "ha.h"

#include "cluster.h"
#include "db.h"
#include "errmsg.h"
#include "etcd.h"
#include "ha_decide.h"
#include "log.h"
#include "metrics.h"
#include "pgconf.h"
#include "peer_probe.h"
#include "pki.h"
#include "proc.h"
#include "restapi.h"
#include "settings.h"
#include "timeline.h"
#include "tls.h"
#include "watchdog.h"
#include "version.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#define MAX_MEMBERS 16
#define NAME_MAX_ 64
#define CYCLE_FALLBACK_MS 2000  /* a cycle at least this often, watch or not */
#define FAST_CYCLE_MS 200       /* ... and this often right after a role change */
#define FAST_WINDOW_MS 10000
#define STOP_TIMEOUT_MS 60000
#define START_TIMEOUT_MS 120000
#define SWITCHOVER_WAIT_MS 5000 /* old primary waits this long for the candidate's WAL */
#define FENCE_KILL_AFTER_MS 2000
#define RETRY_BACKOFF_US 5000000ull /* after a failed clone or rewind */
#define PROBE_TIMEOUT_MS 500  /* after a failed clone or rewind */

/* ---- shared state --------------------------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool have_params;
    struct ha_params p; /* conf[] point to conf_copy[] */
    char *conf_copy[3];
    uint64_t params_gen;
    struct ha_snapshot snap;
    bool leaving;
} shared;

static pthread_t ha_thread, fence_thread;
static bool thread_started;
static int wake_fd = -1;

/* Fencing (ha.md 13 #1): while armed, PostgreSQL must be stopped by the deadline unless a
 * renewal moved it. Monotonic microseconds. */
static _Atomic bool fence_armed;
static _Atomic uint64_t fence_deadline_us;
static _Atomic int fence_count;
static _Atomic int demotions;        /* this member stepped down as primary */
static _Atomic bool api_dcs_ok;      /* the last DCS read succeeded */
static _Atomic int api_etcd_quorum = -1; /* 1/0: the local etcd member sees a leader; -1: unknown */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void wake(void)
{
    if (wake_fd >= 0) {
        uint64_t one = 1;
        (void)!write(wake_fd, &one, sizeof one);
    }
}

/* ---- the loop's own state (HA thread only) -------------------------------------------- */

struct member_info {
    char name[NAME_MAX_];
    char host[PEERS_ADDR_MAX];
    char role[16];
    char state[24];
    uint64_t lsn;
    uint32_t tli;
    bool nofailover;
    bool streaming;
    bool pending_restart;
};

struct dcs_view {
    bool ok;
    int64_t revision;
    bool initialized;
    char initialize[32];
    bool leader_present;
    bool leader_valid;
    char leader[NAME_MAX_];
    int64_t leader_lease;
    struct member_info members[MAX_MEMBERS];
    size_t n;
    bool have_sync;
    int64_t sync_rev;
    char sync_leader[NAME_MAX_];
    char sync[MAX_MEMBERS][NAME_MAX_];
    size_t n_sync;
    bool have_failover;
    bool bad_failover; /* a failover key that is not a valid request */
    int64_t failover_rev;
    char fo_leader[NAME_MAX_];
    char fo_candidate[NAME_MAX_];
    uint64_t optime;
    uint32_t history_tli;
    char *history; /* the history key's JSON text, malloc'd */
    bool have_config;
};

struct local_pg {
    bool has_data;
    bool running;
    bool ready;
    bool primary;
    bool streaming;
    uint32_t tli;
    uint64_t lsn;
    uint64_t recv;
    uint64_t replay;
    char sysid[32];
    bool pending_restart; /* a changed setting waits for a restart */
    char roles[33];       /* md5 of the login role names (pg_hba.conf names them) */
    double start_time;    /* pg_postmaster_start_time(), UNIX seconds */
    long server_version;  /* server_version_num, e.g. 150010 */
    double replayed_ts;   /* a replica's last replayed commit, UNIX seconds (0: none) */
    bool paused;          /* a replica's WAL replay is paused */
};

static struct {
    sd_event *ev;
    struct ha_params p;
    uint64_t params_gen;
    struct etcd_client *etcd;
    char endpoints_key[1024]; /* what the client was made for */
    char roles[33];           /* the login roles last seen (local_pg.roles) */
    int64_t lease;
    struct etcd_watch *watch;
    sd_event_source *watch_src;
    sd_event_source *renew_src;
    sd_event_source *cycle_src;
    bool holding;           /* the leader key is mine and was confirmed */
    uint64_t last_renew_ok; /* us */
    bool renew_failed;
    char member_json[1024]; /* last member value written */
    int64_t member_lease;
    char prefix[160];
    /* long actions (clone, rewind) run as children */
    pid_t child;
    int child_kind; /* HA_CLONE / HA_REWIND */
    sd_event_source *child_src;
    bool child_done;
    int child_status;
    char last_rule[64];
    char last_leader[NAME_MAX_];
    enum ha_role last_role;
    uint64_t last_status_put;
    uint64_t last_optime;
    char ssn[1024]; /* synchronous_standby_names we last wrote */
    bool ha_conf_written;
    char cur_upstream[PEERS_ADDR_MAX];
    bool need_rewind;   /* this member ran as primary and stepped down */
    uint64_t supervise_at;
    uint64_t event_raised_at;
    uint64_t not_streaming_since;
    uint64_t retry_at;      /* no clone or rewind before this (us) */
    char last_ancestry[TL_REASON_MAX];
    bool lease_checked; /* looked for the previous agent's lease */
    unsigned etcd_check;
    uint64_t no_quorum_since; /* us; 0 while etcd has a leader */
    /* the REST API (runs on this thread's loop) and what it serves */
    struct restapi *api;
    struct timespec api_tls_mtime; /* the newest of its certificate files when loaded */
    struct local_pg api_local;   /* the last local reading */
    json_t *api_cluster;         /* /cluster document of the last DCS view */
    json_t *api_history;
    uint64_t api_optime;
    bool api_sync_standby;
    bool api_unlocked;           /* no leader key in the last DCS view */
    time_t dcs_last_seen;
    uint64_t last_cycle;         /* us */
    bool ticket_pending;
    struct restapi_ticket ticket;
    char ticket_from[NAME_MAX_];
    char ticket_to[NAME_MAX_];
    int failovers;
    uint64_t fast_until; /* us; cycles every FAST_CYCLE_MS until then */
    struct watchdog *wd; /* /dev/watchdog while this member leads (ha-watchdog) */
    uint64_t wd_retry_at;
    bool wd_absent_logged;
    char wd_problem[256]; /* ha-watchdog=required and no usable device */
    PGconn *ckpt;         /* the CHECKPOINT after a promotion, running (async) */
} L;

static void cycle_fast(void);
static bool watchdog_arm(void);

/* Set by the hook thread: raise an event at this time (us; 0 none), e.g. to retry an etcd
 * membership change that etcd refused for now. */
static _Atomic uint64_t poke_at;

static void arm_fence(uint64_t sent_us);
static void hold_key(uint64_t sent_us);
static int lease_owns_key(int64_t lease, uint64_t *sent_us, char **err);

/* ---- helpers -------------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    return s && etcd_name_valid(s);
}

static void key_of(char *buf, size_t size, const char *rest)
{
    snprintf(buf, size, "%s%s", L.prefix, rest);
}

static void slot_of(const char *member, char *buf, size_t size)
{
    snprintf(buf, size, "%s", member);
    for (char *c = buf; *c; c++)
        if (*c == '-')
            *c = '_';
}

static void set_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool problem_blocked;
static void set_problem(const char *fmt, ...)
{
    char buf[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&mu);
    snprintf(shared.snap.problem, sizeof shared.snap.problem, "%s", buf);
    shared.snap.blocked = problem_blocked && buf[0];
    pthread_mutex_unlock(&mu);
}

/* Raise an event in this unit's hook context (juju-exec, detached; never waited for:
 * it queues behind the machine lock). */
static void raise_event(const char *why)
{
    static const char *const tools[] = {"/usr/bin/juju-exec", "/var/lib/juju/tools/juju-exec",
                                        NULL};
    const char *tool = NULL;
    for (size_t i = 0; tools[i] && !tool; i++)
        if (access(tools[i], X_OK) == 0)
            tool = tools[i];
    if (!tool || !L.p.unit[0] || !L.p.charm_dir[0])
        return;
    char *cmd = NULL;
    if (asprintf(&cmd, "JUJU_DISPATCH_PATH=hooks/ha-changed %s/dispatch", L.p.charm_dir) < 0)
        return;
    const char *argv[] = {tool, L.p.unit, cmd, NULL};
    struct proc_opts o = {.cwd = "/"};
    char *err = NULL;
    if (proc_spawn(argv, &o, &err) < 0)
        log_warning("cannot raise an event (%s): %s", why, ERRMSG(err));
    else
        log_info("raised ha-changed: %s", why);
    free(err);
    free(cmd);
    L.event_raised_at = now_us();
}

/* ---- DCS ------------------------------------------------------------------------------ */

static void dcs_view_clear(struct dcs_view *v)
{
    free(v->history);
    *v = (struct dcs_view){0};
}

static int ensure_client(char **err)
{
    char key[1024] = "";
    size_t off = 0;
    for (int i = 0; i < L.p.n_peer_addrs && off < sizeof key - 80; i++)
        off += (size_t)snprintf(key + off, sizeof key - off, "%s,", L.p.peer_addrs[i]);
    if (L.etcd && strcmp(key, L.endpoints_key) == 0)
        return 0;
    etcd_client_free(L.etcd);
    L.etcd = NULL;
    char urls[ETCD_MAX_ENDPOINTS][80];
    struct etcd_config cfg = {.ca_file = pki_peer_agent.ca, .cert_file = pki_peer_agent.cert,
                              .key_file = pki_peer_agent.key,
                              .timeout_ms = SETTINGS_DCS_BUDGET_MS};
    snprintf(urls[0], sizeof urls[0], "https://127.0.0.1:%d", ETCD_CLIENT_PORT);
    cfg.endpoints[cfg.n_endpoints++] = urls[0];
    for (int i = 0; i < L.p.n_peer_addrs && cfg.n_endpoints < ETCD_MAX_ENDPOINTS; i++) {
        bool v6 = strchr(L.p.peer_addrs[i], ':') != NULL;
        snprintf(urls[cfg.n_endpoints], sizeof urls[0], v6 ? "https://[%s]:%d" : "https://%s:%d",
                 L.p.peer_addrs[i], ETCD_CLIENT_PORT);
        cfg.endpoints[cfg.n_endpoints] = urls[cfg.n_endpoints];
        cfg.n_endpoints++;
    }
    if (etcd_client_new(&cfg, &L.etcd, err) < 0)
        return -1;
    snprintf(L.endpoints_key, sizeof L.endpoints_key, "%s", key);
    return 0;
}

/* The lease ID survives an agent restart or upgrade (re-exec) in /run: the new agent
 * keeps renewing the same lease, so a primary keeps its leader key and PostgreSQL keeps
 * running (DESIGN.md 4: an agent restart never restarts PostgreSQL). */
#define LEASE_FILE "/run/pg-agent/ha-lease"

static int64_t lease_file_read(void)
{
    FILE *f = fopen(LEASE_FILE, "re");
    if (!f)
        return 0;
    char line[32] = "";
    char *end = NULL;
    long long id = fgets(line, sizeof line, f) ? strtoll(line, &end, 10) : 0;
    (void)fclose(f);
    return end && (*end == '\n' || *end == '\0') && id > 0 ? (int64_t)id : 0;
}

static void lease_file_write(int64_t id)
{
    char tmp[] = LEASE_FILE ".new";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    char text[32];
    int n = snprintf(text, sizeof text, "%lld\n", (long long)id);
    bool ok = n > 0 && write(fd, text, (size_t)n) == n;
    close(fd);
    if (!ok || rename(tmp, LEASE_FILE) < 0)
        (void)unlink(tmp);
}

/* The previous agent's lease, if it is still alive; with the leader key bound to it this
 * member goes on leading. */
static bool adopt_lease(void)
{
    int64_t old = lease_file_read();
    if (!old)
        return false;
    uint64_t sent = 0;
    int owns = lease_owns_key(old, &sent, NULL);
    if (owns < 0)
        return false;
    L.lease = old;
    if (owns) {
        hold_key(sent);
        log_info("adopted the previous agent's lease and leader key");
    } else {
        log_info("adopted the previous agent's lease");
    }
    return true;
}

static int ensure_lease(char **err)
{
    if (L.lease)
        return 0;
    if (!L.lease_checked) {
        L.lease_checked = true;
        if (adopt_lease())
            return 0;
    }
    int64_t id = 0, ttl = 0;
    if (etcd_lease_grant(L.etcd, L.p.ttl_s, &id, &ttl, err) < 0)
        return -1;
    L.lease = id;
    lease_file_write(id);
    L.member_json[0] = '\0'; /* re-attach the member key to the new lease */
    return 0;
}

static bool parse_host_from_url(const char *url, char *host, size_t size)
{
    /* postgres://<ip>:<port>/postgres, <ip> possibly [v6] */
    const char *p = strncmp(url, "postgres://", 11) == 0 ? url + 11 : NULL;
    if (!p)
        return false;
    const char *end;
    if (*p == '[') {
        p++;
        end = strchr(p, ']');
    } else {
        end = strrchr(p, ':');
    }
    if (!end || (size_t)(end - p) >= size)
        return false;
    snprintf(host, size, "%.*s", (int)(end - p), p);
    return peers_address_valid(host);
}

static void parse_member(struct dcs_view *v, const char *name, const char *value, size_t len)
{
    if (v->n >= MAX_MEMBERS || !name_ok(name))
        return;
    json_error_t je;
    json_t *j = json_loadb(value, len, 0, &je);
    struct member_info *m = &v->members[v->n];
    *m = (struct member_info){0};
    const char *url = json_string_value(json_object_get(j, "conn_url"));
    if (!json_is_object(j) || !url || !parse_host_from_url(url, m->host, sizeof m->host)) {
        log_warning("DCS member %s: not a member record we can use: ignored", name);
        json_decref(j);
        return;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    const char *role = json_string_value(json_object_get(j, "role"));
    const char *state = json_string_value(json_object_get(j, "state"));
    snprintf(m->role, sizeof m->role, "%s", role ? role : "");
    snprintf(m->state, sizeof m->state, "%s", state ? state : "");
    json_t *x = json_object_get(j, "xlog_location");
    if (json_is_integer(x) && json_integer_value(x) >= 0)
        m->lsn = (uint64_t)json_integer_value(x);
    json_t *t = json_object_get(j, "timeline");
    if (json_is_integer(t) && json_integer_value(t) > 0 && json_integer_value(t) < UINT32_MAX)
        m->tli = (uint32_t)json_integer_value(t);
    m->nofailover = json_is_true(json_object_get(json_object_get(j, "tags"), "nofailover"));
    const char *rs = json_string_value(json_object_get(j, "replication_state"));
    m->streaming = rs && strcmp(rs, "streaming") == 0;
    m->pending_restart = json_is_true(json_object_get(j, "pending_restart"));
    json_decref(j);
    v->n++;
}

static void parse_sync(struct dcs_view *v, const char *value, size_t len, int64_t rev)
{
    json_t *j = json_loadb(value, len, 0, NULL);
    const char *leader = json_string_value(json_object_get(j, "leader"));
    const char *list = json_string_value(json_object_get(j, "sync_standby"));
    v->have_sync = true;
    v->sync_rev = rev;
    if (!json_is_object(j) || (leader && !name_ok(leader))) {
        log_warning("DCS sync key is not valid: treated as naming no standby");
        json_decref(j);
        return;
    }
    snprintf(v->sync_leader, sizeof v->sync_leader, "%s", leader ? leader : "");
    char buf[MAX_MEMBERS * NAME_MAX_];
    snprintf(buf, sizeof buf, "%s", list ? list : "");
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && v->n_sync < MAX_MEMBERS;
         tok = strtok_r(NULL, ",", &save)) {
        if (name_ok(tok))
            snprintf(v->sync[v->n_sync++], NAME_MAX_, "%s", tok);
    }
    json_decref(j);
}

static void parse_failover(struct dcs_view *v, const char *value, size_t len, int64_t rev)
{
    json_t *j = json_loadb(value, len, 0, NULL);
    const char *leader = json_string_value(json_object_get(j, "leader"));
    const char *cand = json_string_value(json_object_get(j, "member"));
    if (!cand)
        cand = json_string_value(json_object_get(j, "candidate"));
    v->failover_rev = rev;
    /* Only a well-formed request counts: an object whose names are member names (an empty
     * candidate means "the best one"); anything else is refused and removed by the leader. */
    bool ok = json_is_object(j) && (!leader || name_ok(leader)) &&
              (!cand || !*cand || name_ok(cand));
    if (!ok) {
        log_warning("DCS failover key is not a valid request: ignored");
        v->bad_failover = true;
        json_decref(j);
        return;
    }
    v->have_failover = true;
    if (leader)
        snprintf(v->fo_leader, sizeof v->fo_leader, "%s", leader);
    if (cand)
        snprintf(v->fo_candidate, sizeof v->fo_candidate, "%s", cand);
    json_decref(j);
}

static void parse_history(struct dcs_view *v, const char *value, size_t len)
{
    json_t *j = json_loadb(value, len, 0, NULL);
    if (!json_is_array(j)) {
        log_warning("DCS history key is not a JSON list: ignored");
        json_decref(j);
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(j, i, e) {
        json_t *t = json_array_get(e, 0);
        if (json_is_integer(t) && json_integer_value(t) > 0 && json_integer_value(t) < UINT32_MAX &&
            (uint32_t)json_integer_value(t) + 1 > v->history_tli)
            v->history_tli = (uint32_t)json_integer_value(t) + 1; /* entries name the parent */
    }
    v->history = strndup(value, len);
    json_decref(j);
}

/* The whole prefix in one linearizable read, every value validated (any thread: the
 * client and prefix are the caller's). */
static int dcs_read_with(struct etcd_client *c, const char *prefix, struct dcs_view *v,
                         char **err)
{
    *v = (struct dcs_view){0};
    struct etcd_range r = {0};
    if (etcd_get_prefix(c, prefix, &r, err) < 0)
        return -1;
    v->ok = true;
    v->revision = r.header.revision;
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < r.n; i++) {
        const struct etcd_kv *kv = &r.kvs[i];
        if (kv->key_len <= plen)
            continue;
        const char *k = kv->key + plen;
        if (strcmp(k, "leader") == 0) {
            v->leader_present = true;
            v->leader_lease = kv->lease;
            v->leader_valid = kv->value_len < NAME_MAX_ && name_ok(kv->value);
            if (v->leader_valid)
                snprintf(v->leader, sizeof v->leader, "%s", kv->value);
            else
                log_warning("DCS leader key does not name a member: not following it, not "
                            "racing for it");
        } else if (strcmp(k, "initialize") == 0) {
            v->initialized = true;
            snprintf(v->initialize, sizeof v->initialize, "%.*s", (int)kv->value_len, kv->value);
        } else if (strncmp(k, "members/", 8) == 0) {
            parse_member(v, k + 8, kv->value, kv->value_len);
        } else if (strcmp(k, "sync") == 0) {
            parse_sync(v, kv->value, kv->value_len, kv->mod_revision);
        } else if (strcmp(k, "failover") == 0) {
            parse_failover(v, kv->value, kv->value_len, kv->mod_revision);
        } else if (strcmp(k, "history") == 0) {
            parse_history(v, kv->value, kv->value_len);
        } else if (strcmp(k, "config") == 0) {
            v->have_config = true;
        } else if (strcmp(k, "status") == 0) {
            json_t *j = json_loadb(kv->value, kv->value_len, 0, NULL);
            json_t *o = json_object_get(j, "optime");
            if (json_is_integer(o) && json_integer_value(o) > 0)
                v->optime = (uint64_t)json_integer_value(o);
            json_decref(j);
        }
    }
    etcd_range_clear(&r);
    if (v->have_failover && v->fo_leader[0] && v->leader_valid &&
        strcmp(v->fo_leader, v->leader) != 0) {
        log_warning("DCS failover request names %s as leader, not %s: ignored", v->fo_leader,
                    v->leader);
        v->have_failover = false;
        v->bad_failover = true;
    }
    return 0;
}

static int dcs_read(struct dcs_view *v, char **err)
{
    return dcs_read_with(L.etcd, L.prefix, v, err);
}

static const struct member_info *member_find(const struct dcs_view *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->members[i].name, name) == 0)
            return &v->members[i];
    return NULL;
}

static bool in_sync(const struct dcs_view *v, const char *name)
{
    for (size_t i = 0; i < v->n_sync; i++)
        if (strcmp(v->sync[i], name) == 0)
            return true;
    return false;
}

/* ---- this member's PostgreSQL ----------------------------------------------------------- */

static int pg_query_local(struct local_pg *l)
{
    PGconn *c = NULL;
    char *err = NULL;
    if (db_connect(PG_SOCKET_DIR, PG_PORT, &c, &err) < 0) {
        free(err);
        return -1;
    }
    PGresult *r = PQexec(c,
        "SELECT pg_is_in_recovery(), "
        "(CASE WHEN pg_is_in_recovery() THEN GREATEST(pg_last_wal_receive_lsn(), "
        "pg_last_wal_replay_lsn()) ELSE pg_current_wal_lsn() END - '0/0')::bigint, "
        "CASE WHEN pg_is_in_recovery() THEN COALESCE((SELECT received_tli FROM "
        "pg_stat_wal_receiver WHERE status = 'streaming'), (SELECT timeline_id FROM "
        "pg_control_checkpoint())) ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), "
        "1, 8))::bit(32)::int END, "
        "COALESCE((SELECT status FROM pg_stat_wal_receiver), ''), "
        "COALESCE((pg_last_wal_receive_lsn() - '0/0')::bigint, 0), "
        "COALESCE((pg_last_wal_replay_lsn() - '0/0')::bigint, 0), "
        "(SELECT system_identifier::text FROM pg_control_system()), "
        "(SELECT count(*) > 0 FROM pg_settings WHERE pending_restart), "
        "(SELECT COALESCE(md5(string_agg(rolname, ',' ORDER BY rolname)), '') FROM pg_roles "
        "WHERE rolcanlogin), "
        "extract(epoch FROM pg_postmaster_start_time()), "
        "current_setting('server_version_num'), "
        "CASE WHEN pg_is_in_recovery() THEN COALESCE(extract(epoch FROM "
        "pg_last_xact_replay_timestamp()), 0) ELSE 0 END");
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 12) {
        l->primary = strcmp(PQgetvalue(r, 0, 0), "f") == 0;
        l->lsn = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        l->tli = (uint32_t)strtoul(PQgetvalue(r, 0, 2), NULL, 10);
        l->streaming = strcmp(PQgetvalue(r, 0, 3), "streaming") == 0;
        l->recv = strtoull(PQgetvalue(r, 0, 4), NULL, 10);
        l->replay = strtoull(PQgetvalue(r, 0, 5), NULL, 10);
        snprintf(l->sysid, sizeof l->sysid, "%s", PQgetvalue(r, 0, 6));
        l->pending_restart = strcmp(PQgetvalue(r, 0, 7), "t") == 0;
        snprintf(l->roles, sizeof l->roles, "%s", PQgetvalue(r, 0, 8));
        l->start_time = strtod(PQgetvalue(r, 0, 9), NULL);
        l->server_version = strtol(PQgetvalue(r, 0, 10), NULL, 10);
        l->replayed_ts = strtod(PQgetvalue(r, 0, 11), NULL);
        rc = 0;
    }
    PQclear(r);
    if (rc == 0 && !l->primary) {
        /* for the metrics only: it errors once recovery has ended (a promotion between the
         * two queries), which must not make this server look unready */
        r = PQexec(c, "SELECT pg_is_wal_replay_paused()");
        l->paused = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                    strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
    }
    db_close(c);
    if (rc == 0 && !l->primary) {
        /* A replica's control file names the timeline of its last restartpoint, which
         * lags after a promotion upstream; its walsender knows the replayed one. */
        struct tl_leader *self = calloc(1, sizeof *self);
        char *e = NULL;
        if (self && tl_identify("host=" PG_SOCKET_DIR " port=5432 user=postgres "
                                "connect_timeout=2", self, &e) == 0 && self->timeline)
            l->tli = self->timeline;
        free(e);
        free(self);
    }
    return rc;
}

static void local_read(struct local_pg *l)
{
    *l = (struct local_pg){0};
    l->has_data = pg_initialised(&L.p.pg);
    if (!l->has_data)
        return;
    l->running = pg_running(&L.p.pg, &l->ready) > 0;
    if (l->running && l->ready && pg_query_local(l) < 0)
        l->ready = false;
}

/* One SQL statement on the local server; 0 or -1 (logged). */
static int local_exec(const char *sql)
{
    PGconn *c = NULL;
    char *err = NULL;
    int rc = db_connect(PG_SOCKET_DIR, PG_PORT, &c, &err);
    if (rc == 0)
        rc = db_exec(c, sql, &err);
    if (rc < 0)
        log_warning("%s", ERRMSG(err));
    free(err);
    db_close(c);
    return rc < 0 ? -1 : 0;
}

/* The replication conninfo to a member's address (certificate authentication). */
static void conninfo(char *buf, size_t size, const char *host, const char *user, bool repl)
{
    snprintf(buf, size,
             "host=%s port=%d user=%s%s application_name=%s sslmode=verify-full "
             "sslcert=%s sslkey=%s sslrootcert=%s connect_timeout=2 keepalives=1 "
             "keepalives_idle=2 keepalives_interval=1 keepalives_count=3",
             host, PG_PORT, user, repl ? "" : " dbname=postgres", L.p.name, pki_peer_pg.cert,
             pki_peer_pg.key, access(TLS_TRUST, R_OK) == 0 ? TLS_TRUST : pki_peer_pg.ca);
}

static int write_quoted(FILE *f, const char *name, const char *value)
{
    char *q = NULL;
    if (pgconf_quote(value, &q) < 0)
        return -1;
    fprintf(f, "%s = %s\n", name, q);
    free(q);
    return 0;
}

/* pg-agent-ha.conf: upstream (NULL on a primary) and synchronous_standby_names. Returns 1
 * when it changed. */
static int write_ha_conf(const char *upstream, const char *ssn)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -1;
    fprintf(f, "# %s: written by pg-agent's HA loop; overwritten on every change.\n",
            HA_CONF_FILE);
    if (upstream) {
        char ci[1024], slot[NAME_MAX_];
        conninfo(ci, sizeof ci, upstream, "replication", true);
        slot_of(L.p.name, slot, sizeof slot);
        write_quoted(f, "primary_conninfo", ci);
        write_quoted(f, "primary_slot_name", slot);
    } else {
        write_quoted(f, "primary_conninfo", "");
        write_quoted(f, "primary_slot_name", "");
    }
    write_quoted(f, "recovery_target_timeline", "latest");
    write_quoted(f, "synchronous_standby_names", ssn ? ssn : "");
    fprintf(f, "wal_receiver_timeout = '%ds'\n", L.p.ttl_s > 2 ? L.p.ttl_s : 2);
    fprintf(f, "wal_retrieve_retry_interval = '250ms'\n");
    fprintf(f, "wal_receiver_status_interval = '1s'\n");
    fprintf(f, "wal_keep_size = '256MB'\n");
    fprintf(f, "hot_standby_feedback = on\n");
    if (fclose(f) != 0) {
        free(text);
        return -1;
    }
    char *err = NULL;
    int rc = pg_write_file(&L.p.pg, HA_CONF_FILE, text, &err);
    if (rc < 0)
        log_error("cannot write %s: %s", HA_CONF_FILE, ERRMSG(err));
    free(err);
    free(text);
    if (rc >= 0) {
        snprintf(L.cur_upstream, sizeof L.cur_upstream, "%s", upstream ? upstream : "");
        snprintf(L.ssn, sizeof L.ssn, "%s", ssn ? ssn : "");
        L.ha_conf_written = true;
    }
    return rc;
}

static int set_standby_signal(bool on)
{
    char path[PATH_MAX + 32];
    pg_path(&L.p.pg, "standby.signal", path, sizeof path);
    if (!on)
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    int rc = fchown(fd, L.p.pg.uid, L.p.pg.gid);
    close(fd);
    return rc;
}

/* The rendered configuration files from the hook thread, where they differ. */
static void write_conf_files(void)
{
    static const char *const names[3] = {"postgresql.conf", "pg_hba.conf", "pg_ident.conf"};
    for (int i = 0; i < 3; i++) {
        if (!L.p.conf[i])
            continue;
        char *err = NULL;
        if (pg_write_file(&L.p.pg, names[i], L.p.conf[i], &err) < 0)
            log_error("cannot write %s: %s", names[i], ERRMSG(err));
        free(err);
    }
}

static int start_pg(bool as_primary, const char *upstream)
{
    write_conf_files();
    write_ha_conf(as_primary ? NULL : upstream, as_primary ? L.ssn : "");
    if (set_standby_signal(!as_primary) < 0)
        log_warning("cannot %s standby.signal", as_primary ? "remove" : "create");
    log_info("starting PostgreSQL as %s%s%s", as_primary ? "primary" : "replica",
             upstream && !as_primary ? " of " : "", upstream && !as_primary ? upstream : "");
    char *err = NULL;
    int rc = pg_start(&L.p.pg, START_TIMEOUT_MS, &err);
    if (rc < 0)
        log_error("cannot start PostgreSQL: %s", ERRMSG(err));
    free(err);
    return rc;
}

static void stop_pg(bool immediate)
{
    bool ready;
    pid_t pid = pg_running(&L.p.pg, &ready);
    if (pid <= 0)
        return;
    if (immediate) {
        (void)kill(pid, SIGQUIT);
        for (int i = 0; i < 100 && pg_running(&L.p.pg, &ready) > 0; i++)
            proc_sleep_ms(20);
        if (pg_running(&L.p.pg, &ready) > 0)
            (void)kill(pid, SIGKILL);
        return;
    }
    char *err = NULL;
    if (pg_stop(&L.p.pg, STOP_TIMEOUT_MS, &err) < 0)
        log_error("cannot stop PostgreSQL: %s", ERRMSG(err));
    free(err);
}

/* ---- member key, status --------------------------------------------------------------- */

static void publish_member(const struct local_pg *l, const struct dcs_view *v)
{
    json_t *j = json_object();
    char url[128];
    bool v6 = strchr(L.p.address, ':') != NULL;
    snprintf(url, sizeof url, v6 ? "postgres://[%s]:%d/postgres" : "postgres://%s:%d/postgres",
             L.p.address, PG_PORT);
    json_object_set_new(j, "conn_url", json_string(url));
    snprintf(url, sizeof url, v6 ? "https://[%s]:%d/patroni" : "https://%s:%d/patroni",
             L.p.address, HA_API_PORT);
    json_object_set_new(j, "api_url", json_string(url));
    const char *state = !l->has_data ? (L.child ? "creating replica" : "stopped")
                        : l->running && l->ready ? (L.child ? "rewinding" : "running")
                        : l->running ? "starting" : "stopped";
    json_object_set_new(j, "state", json_string(state));
    json_object_set_new(j, "role", json_string(l->running && l->ready && l->primary ? "primary"
                                                                                      : "replica"));
    json_object_set_new(j, "version", json_string("3.0.2"));
    if (l->running && l->ready) {
        json_object_set_new(j, "xlog_location", json_integer((json_int_t)l->lsn));
        json_object_set_new(j, "timeline", json_integer(l->tli));
        if (!l->primary) {
            json_object_set_new(j, "receive_lsn", json_integer((json_int_t)l->recv));
            json_object_set_new(j, "replay_lsn", json_integer((json_int_t)l->replay));
            json_object_set_new(j, "replication_state",
                                json_string(l->streaming ? "streaming" : "in archive recovery"));
        }
    }
    json_object_set_new(j, "tags", json_object());
    if (l->pending_restart)
        json_object_set_new(j, "pending_restart", json_true());
    json_object_set_new(j, "agent", json_string("pg-agent " PG_AGENT_VERSION));
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!text)
        return;
    bool present = member_find(v, L.p.name) != NULL;
    if (!present || strcmp(text, L.member_json) != 0 || L.member_lease != L.lease) {
        char key[256], *err = NULL;
        snprintf(key, sizeof key, "%smembers/%s", L.prefix, L.p.name);
        if (etcd_put(L.etcd, key, text, strlen(text), L.lease, NULL, &err) == 0) {
            snprintf(L.member_json, sizeof L.member_json, "%s", text);
            L.member_lease = L.lease;
        } else {
            if (strstr(ERRMSG(err), "lease"))
                L.lease = 0;
            log_warning("cannot publish this member: %s", ERRMSG(err));
        }
        free(err);
    }
    free(text);
}

static void put_plain(const char *rest, const char *value)
{
    char key[256], *err = NULL;
    key_of(key, sizeof key, rest);
    if (etcd_put(L.etcd, key, value, strlen(value), 0, NULL, &err) < 0)
        log_warning("cannot write %s: %s", rest, ERRMSG(err));
    free(err);
}

static void leader_bookkeeping(const struct local_pg *l, const struct dcs_view *v)
{
    char buf[256];
    if (!v->initialized || strcmp(v->initialize, l->sysid) != 0) {
        if (v->initialized && v->initialize[0] && strcmp(v->initialize, l->sysid) != 0)
            log_warning("DCS initialize key (%s) differs from this primary's system identifier "
                        "(%s): rewriting it", v->initialize, l->sysid);
        put_plain("initialize", l->sysid);
    }
    if (!v->have_config) {
        snprintf(buf, sizeof buf,
                 "{\"ttl\":%d,\"loop_wait\":%d,\"retry_timeout\":%d,"
                 "\"maximum_lag_on_failover\":1048576,\"synchronous_mode\":%s,"
                 "\"synchronous_mode_strict\":%s,\"synchronous_node_count\":%d,"
                 "\"postgresql\":{\"use_pg_rewind\":true,\"use_slots\":true}}",
                 L.p.ttl_s, 1, 1, L.p.sync_count > 0 ? "true" : "false",
                 L.p.sync_strict ? "true" : "false", L.p.sync_count > 0 ? L.p.sync_count : 1);
        put_plain("config", buf);
    }
    uint64_t now = now_us();
    if (l->lsn != L.last_optime && now - L.last_status_put > 1000000u) {
        snprintf(buf, sizeof buf, "{\"optime\":%" PRIu64 ",\"slots\":{},\"retain_slots\":[]}",
                 l->lsn);
        put_plain("status", buf);
        snprintf(buf, sizeof buf, "%" PRIu64, l->lsn);
        put_plain("optime/leader", buf);
        L.last_optime = l->lsn;
        L.last_status_put = now;
    }
}

/* Physical slots for every other member; drop ours for members that left the DCS. */
static void manage_slots(const struct dcs_view *v)
{
    PGconn *c = NULL;
    char *err = NULL;
    if (db_connect(PG_SOCKET_DIR, PG_PORT, &c, &err) < 0) {
        free(err);
        return;
    }
    PGresult *r = PQexec(c, "SELECT slot_name FROM pg_replication_slots WHERE slot_type = "
                            "'physical' AND NOT temporary");
    bool have[MAX_MEMBERS] = {false};
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(r); i++) {
            const char *s = PQgetvalue(r, i, 0);
            bool known = false;
            for (size_t m = 0; m < v->n; m++) {
                char slot[NAME_MAX_];
                slot_of(v->members[m].name, slot, sizeof slot);
                if (strcmp(slot, s) == 0) {
                    have[m] = true;
                    known = true;
                }
            }
            /* our own naming only: <app>_<n> */
            char prefix[NAME_MAX_ + 1];
            slot_of(L.p.scope, prefix, sizeof prefix);
            size_t pl = strlen(prefix);
            if (!known && strncmp(s, prefix, pl) == 0 && s[pl] == '_') {
                const char *params[1] = {s};
                PGresult *d = PQexecParams(c, "SELECT pg_drop_replication_slot($1)", 1, NULL,
                                           params, NULL, NULL, 0);
                if (PQresultStatus(d) == PGRES_TUPLES_OK)
                    log_info("dropped replication slot %s: its member left", s);
                PQclear(d);
            }
        }
    }
    PQclear(r);
    for (size_t m = 0; m < v->n; m++) {
        if (have[m] || strcmp(v->members[m].name, L.p.name) == 0)
            continue;
        char slot[NAME_MAX_];
        slot_of(v->members[m].name, slot, sizeof slot);
        const char *params[1] = {slot};
        PGresult *d = PQexecParams(c, "SELECT pg_create_physical_replication_slot($1, true)", 1,
                                   NULL, params, NULL, NULL, 0);
        if (PQresultStatus(d) == PGRES_TUPLES_OK)
            log_info("created replication slot %s", slot);
        PQclear(d);
    }
    db_close(c);
}

/* ---- synchronous standbys (ha.md 7.2) ---------------------------------------------------- */

static int sync_wanted_count(void)
{
    int others = L.p.planned_units - 1;
    if (L.p.sync_count <= 0 || others <= 0)
        return 0;
    return L.p.sync_count < others ? L.p.sync_count : others;
}

/* "ANY k (names...)"; k = n when k is 0; the strict placeholder (or "") without names. */
static void format_ssn_k(char *buf, size_t size, char names[][NAME_MAX_], size_t n, size_t k,
                         bool strict)
{
    if (n == 0) {
        snprintf(buf, size, "%s", strict ? "\"__patroni_strict_sync_replica_placeholder__\"" : "");
        return;
    }
    size_t off = (size_t)snprintf(buf, size, "ANY %zu (", k ? k : n);
    for (size_t i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s\"%s\"", i ? "," : "", names[i]);
    if (off < size)
        snprintf(buf + off, size - off, ")");
}

static void format_ssn(char *buf, size_t size, char names[][NAME_MAX_], size_t n, bool strict)
{
    format_ssn_k(buf, size, names, n, 0, strict);
}

static int cas_sync(const struct dcs_view *v, char names[][NAME_MAX_], size_t n)
{
    char list[MAX_MEMBERS * NAME_MAX_] = "";
    size_t off = 0;
    for (size_t i = 0; i < n && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? "," : "", names[i]);
    json_t *j = json_pack("{s:s,s:s}", "leader", L.p.name, "sync_standby", list);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -1;
    char key[256], *err = NULL;
    key_of(key, sizeof key, "sync");
    struct etcd_txn_result t = {0};
    int rc = etcd_cas_revision(L.etcd, key, v->have_sync ? v->sync_rev : 0, text, strlen(text),
                               0, &t, &err);
    if (rc == 0 && !t.succeeded)
        rc = -1;
    if (rc == 0)
        log_info("sync key: %s", list[0] ? list : "(no synchronous standby)");
    else
        log_warning("sync key not written (changed meanwhile or DCS error: %s)",
                    err ? err : "compare failed");
    etcd_txn_result_clear(&t);
    free(err);
    free(text);
    return rc;
}

static void manage_sync(const struct dcs_view *v)
{
    int want = sync_wanted_count();
    bool strict = L.p.sync_strict && L.p.planned_units > 1;
    /* streaming standbys as the primary sees them */
    char streaming[MAX_MEMBERS][NAME_MAX_], synced[MAX_MEMBERS][NAME_MAX_];
    size_t n_stream = 0, n_synced = 0;
    PGconn *c = NULL;
    char *err = NULL;
    if (db_connect(PG_SOCKET_DIR, PG_PORT, &c, &err) < 0) {
        free(err);
        return;
    }
    PGresult *r = PQexec(c, "SELECT application_name, sync_state FROM pg_stat_replication "
                            "WHERE state = 'streaming' ORDER BY application_name");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(r) && n_stream < MAX_MEMBERS; i++) {
            const char *app = PQgetvalue(r, i, 0);
            if (!name_ok(app) || !member_find(v, app))
                continue;
            snprintf(streaming[n_stream++], NAME_MAX_, "%s", app);
            const char *st = PQgetvalue(r, i, 1);
            if ((strcmp(st, "sync") == 0 || strcmp(st, "quorum") == 0) && n_synced < MAX_MEMBERS)
                snprintf(synced[n_synced++], NAME_MAX_, "%s", app);
        }
    }
    PQclear(r);
    db_close(c);

    /* desired: the first `want` streaming standbys, keeping current sync members first */
    char desired[MAX_MEMBERS][NAME_MAX_];
    size_t n_des = 0;
    for (size_t i = 0; i < v->n_sync && n_des < (size_t)want; i++)
        for (size_t s = 0; s < n_stream; s++)
            if (strcmp(v->sync[i], streaming[s]) == 0)
                snprintf(desired[n_des++], NAME_MAX_, "%.63s", streaming[s]);
    for (size_t s = 0; s < n_stream && n_des < (size_t)want; s++) {
        bool dup = false;
        for (size_t d = 0; d < n_des; d++)
            dup = dup || strcmp(desired[d], streaming[s]) == 0;
        if (!dup)
            snprintf(desired[n_des++], NAME_MAX_, "%.63s", streaming[s]);
    }

    /* 1. removals first: sync key shrinks to old ∩ desired before the server stops
     *    waiting for them */
    char keep[MAX_MEMBERS][NAME_MAX_];
    size_t n_keep = 0;
    for (size_t i = 0; i < v->n_sync; i++)
        for (size_t d = 0; d < n_des; d++)
            if (strcmp(v->sync[i], desired[d]) == 0)
                snprintf(keep[n_keep++], NAME_MAX_, "%.63s", desired[d]);
    bool key_mine = v->have_sync && strcmp(v->sync_leader, L.p.name) == 0;
    if (n_keep != v->n_sync || !key_mine) {
        if (cas_sync(v, keep, n_keep) < 0)
            return;
    }
    /* 2. the server waits for every desired standby */
    char ssn[1024];
    if (want == 0)
        ssn[0] = '\0';
    else
        format_ssn(ssn, sizeof ssn, n_des ? desired : keep, n_des ? n_des : n_keep, strict);
    if (strcmp(ssn, L.ssn) != 0) {
        if (write_ha_conf(NULL, ssn) >= 0 && local_exec("SELECT pg_reload_conf()") == 0)
            log_info("synchronous_standby_names = '%s'", ssn);
        return; /* the key grows once they show as sync */
    }
    /* 3. additions last: only standbys the server reports synchronous join the key */
    char grown[MAX_MEMBERS][NAME_MAX_];
    size_t n_grown = 0;
    for (size_t d = 0; d < n_des; d++)
        for (size_t s = 0; s < n_synced; s++)
            if (strcmp(desired[d], synced[s]) == 0)
                snprintf(grown[n_grown++], NAME_MAX_, "%.63s", desired[d]);
    if (n_grown > n_keep)
        (void)cas_sync(v, grown, n_grown);
}

/* Strict synchronous mode: the server must not acknowledge one commit between its promotion
 * and the first manage_sync (ha.md 7.2: a commit acknowledged by the primary alone is lost if
 * it dies next). A standby therefore carries, already, the synchronous_standby_names it will
 * need as primary: `want` of the other members (none of them streams from it yet, so commits
 * wait), or the placeholder when too few members are known (standbys ignore the setting).
 * manage_sync narrows it once standbys stream. "" when not strict. */
static void standby_ssn(const struct dcs_view *v, char *ssn, size_t size)
{
    ssn[0] = '\0';
    int want = sync_wanted_count();
    if (want <= 0 || !L.p.sync_strict || L.p.planned_units <= 1)
        return;
    char names[MAX_MEMBERS][NAME_MAX_];
    size_t n = 0;
    for (size_t i = 0; i < v->n && n < MAX_MEMBERS; i++)
        if (strcmp(v->members[i].name, L.p.name) != 0 && name_ok(v->members[i].name))
            snprintf(names[n++], NAME_MAX_, "%s", v->members[i].name);
    format_ssn_k(ssn, size, names, n < (size_t)want ? 0 : n, (size_t)want, true);
}

/* Right before pg_promote: the standby's setting is in force (normally written long before,
 * when it started following; otherwise now, with a moment for the checkpointer to publish it
 * to the backends before the first commit can happen). */
static void strict_before_promote(const struct dcs_view *v)
{
    char ssn[1024];
    standby_ssn(v, ssn, sizeof ssn);
    if (strcmp(ssn, L.ssn) == 0)
        return;
    /* any non-empty setting in force already makes commits wait for a standby: only from
     * "" does the checkpointer need a moment to publish the new one before the promotion */
    bool was_safe = L.ssn[0] != '\0';
    if (write_ha_conf(L.cur_upstream[0] ? L.cur_upstream : NULL, ssn) >= 0 &&
        local_exec("SELECT pg_reload_conf()") == 0) {
        log_info("before promoting: synchronous_standby_names = '%s'", ssn);
        if (!was_safe) {
            struct timespec ts = {0, 200L * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- leader key --------------------------------------------------------------------------- */

static void arm_fence(uint64_t sent_us)
{
    uint64_t deadline = sent_us + (uint64_t)L.p.ttl_s * 1000000u -
                        (uint64_t)SETTINGS_FENCE_MARGIN_MS * 1000u;
    atomic_store(&fence_deadline_us, deadline);
    atomic_store(&fence_armed, true);
}

/* This member holds the leader key on a lease confirmed by a request sent at sent_us: the
 * fence counts from there (acquire, adopt after a restart, reclaim after a DCS outage). */
static void hold_key(uint64_t sent_us)
{
    arm_fence(sent_us);
    L.holding = true;
    L.last_renew_ok = sent_us;
    L.renew_failed = false;
}

/* A keep-alive of lease (sent at *sent_us), then whether the leader key is bound to it:
 * 1 yes; 0 no, or not confirmed (the lease itself is alive); -1 the lease is gone or the
 * keep-alive got no answer (*err when given). */
static int lease_owns_key(int64_t lease, uint64_t *sent_us, char **err)
{
    *sent_us = now_us();
    int64_t ttl = 0;
    if (etcd_lease_keepalive(L.etcd, lease, &ttl, err) < 0 || ttl <= 0)
        return -1;
    char key[256];
    key_of(key, sizeof key, "leader");
    bool owned = false;
    return etcd_key_has_lease(L.etcd, key, lease, &owned, NULL) == 0 && owned ? 1 : 0;
}

static void disarm_fence(void)
{
    atomic_store(&fence_armed, false);
}

static bool acquire(void)
{
    char key[256], *err = NULL;
    key_of(key, sizeof key, "leader");
    struct etcd_txn_result t = {0};
    uint64_t sent = now_us();
    int rc = etcd_create_if_absent(L.etcd, key, L.p.name, strlen(L.p.name), L.lease, &t, &err);
    bool won = rc == 0 && t.succeeded;
    if (rc < 0) {
        log_warning("leader race: %s", ERRMSG(err));
        if (rc == -ENOKEY)
            L.lease = 0;
    }
    etcd_txn_result_clear(&t);
    free(err);
    if (won) {
        hold_key(sent);
        log_info("won the leader race");
    }
    return won;
}

/* The DCS came back after this member stepped down without it: its leader key may still be
 * bound to its lease (renewed all along by the keep-alive), in which case nobody else can
 * have been promoted: confirm the lease (a fresh keep-alive, then the key's lease) and lead
 * again; the next cycle promotes. Otherwise the key expires and the members race. */
static void reclaim_leader(void)
{
    if (!L.etcd || !L.lease)
        return;
    uint64_t sent = 0;
    char *err = NULL;
    int owns = lease_owns_key(L.lease, &sent, &err);
    if (owns < 0)
        log_warning("cannot confirm this member's lease to lead again: %s",
                    err ? err : "expired");
    else if (owns && watchdog_arm()) {
        hold_key(sent);
        log_info("the leader key is still bound to this member's lease: leading again");
        wake();
    }
    free(err);
}

static void release_leader(void)
{
    char key[256], *err = NULL;
    key_of(key, sizeof key, "leader");
    struct etcd_txn_result t = {0};
    if (etcd_delete_if_value(L.etcd, key, L.p.name, strlen(L.p.name), &t, &err) < 0)
        log_warning("cannot release the leader key: %s", ERRMSG(err));
    else if (t.succeeded)
        log_info("released the leader key");
    etcd_txn_result_clear(&t);
    free(err);
    L.holding = false;
}

/* ---- the hardware watchdog (ha.md 15.2, Patroni's watchdog.mode) -------------------------
 * While this member holds the leader key the renew timer pings /dev/watchdog before its
 * etcd requests; the device's timeout is ha-lease-ttl - 1 s (renew + one DCS budget < W <=
 * TTL - budget), so a frozen agent or machine is reset before the key can expire elsewhere.
 * Released (magic close) as soon as the key is not held; an agent that dies or re-execs
 * leaves it armed: its successor re-opens it within a renew interval, or the machine resets. */
static bool watchdog_arm(void)
{
    if (L.p.watchdog_mode == WATCHDOG_OFF || L.wd)
        return true;
    if (now_us() < L.wd_retry_at)
        return L.p.watchdog_mode != WATCHDOG_REQUIRED;
    int timeout = L.p.ttl_s - 1;
    char *err = NULL;
    int rc = watchdog_open(WATCHDOG_DEFAULT_PATH, timeout, &L.wd, &err);
    if (rc == 0) {
        log_info("watchdog %s (%s) armed: %d s", WATCHDOG_DEFAULT_PATH, watchdog_identity(L.wd),
                 watchdog_timeout(L.wd));
        L.wd_absent_logged = false;
        L.wd_problem[0] = '\0';
        return true;
    }
    L.wd_retry_at = now_us() + 10000000u;
    if (L.p.watchdog_mode == WATCHDOG_REQUIRED) {
        if (!L.wd_problem[0])
            log_warning("ha-watchdog=required: %s; not taking the leader key", ERRMSG(err));
        snprintf(L.wd_problem, sizeof L.wd_problem,
                 "ha-watchdog=required but %s: this unit cannot become the primary (load a "
                 "watchdog driver or set ha-watchdog=automatic)", ERRMSG(err));
        free(err);
        return false;
    }
    if (!L.wd_absent_logged)
        log_info("no usable watchdog (%s): leading without it (ha-watchdog=automatic)",
                 ERRMSG(err));
    L.wd_absent_logged = true;
    free(err);
    return true;
}

static void watchdog_disarm(void)
{
    if (!L.wd)
        return;
    watchdog_close(L.wd);
    L.wd = NULL;
    log_info("watchdog released");
}

static void watchdog_tick(void)
{
    if (!L.holding || L.p.watchdog_mode == WATCHDOG_OFF) {
        watchdog_disarm();
        return;
    }
    if (!L.wd) {
        (void)watchdog_arm();
        return;
    }
    char *err = NULL;
    if (watchdog_keepalive(L.wd, &err) < 0)
        log_error("watchdog keepalive failed: %s", ERRMSG(err));
    free(err);
}

/* The renew timer: keep-alive, then confirm the key is still bound to my lease. */
static void renew(void)
{
    watchdog_tick();
    if (!L.etcd || !L.lease)
        return;
    uint64_t sent = now_us();
    int64_t ttl = 0;
    char *err = NULL;
    int rc = etcd_lease_keepalive(L.etcd, L.lease, &ttl, &err);
    if (rc == -ENOKEY || (rc == 0 && ttl <= 0)) {
        log_warning("the lease expired");
        L.lease = 0;
        if (L.holding) {
            L.renew_failed = true;
            wake();
        }
    } else if (rc < 0) {
        log_warning("lease renewal failed: %s", ERRMSG(err));
    } else if (L.holding) {
        char key[256];
        key_of(key, sizeof key, "leader");
        bool owned = false;
        free(err);
        err = NULL;
        rc = etcd_key_has_lease(L.etcd, key, L.lease, &owned, &err);
        if (rc == 0 && owned) {
            arm_fence(sent);
            L.last_renew_ok = sent;
        } else if (rc == 0) {
            log_warning("I am the leader but not owner of the lease: stepping down");
            L.renew_failed = true;
            wake();
        } else {
            log_warning("cannot confirm the leader key: %s", ERRMSG(err));
        }
    }
    free(err);
}

/* ---- long actions (children watched through a pidfd) ----------------------------------- */

static int on_child(sd_event_source *s, int fd, uint32_t revents, void *u)
{
    (void)fd, (void)revents, (void)u;
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)L.child, &si, WEXITED | WNOHANG) == 0 && si.si_pid == L.child) {
        L.child_done = true;
        L.child_status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
        sd_event_source_disable_unref(s);
        L.child_src = NULL;
        wake();
    }
    return 0;
}

static int spawn_child(const char *const argv[], int kind, const char *logname)
{
    char logpath[PATH_MAX];
    snprintf(logpath, sizeof logpath, PG_LOG_DIR "/%s.log", logname);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (fchown(fd, L.p.pg.uid, L.p.pg.gid) < 0) {
                /* the log stays root's; the child still writes it (opened before setuid) */
            }
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        if (setgroups(0, NULL) < 0 || setgid(L.p.pg.gid) < 0 || setuid(L.p.pg.uid) < 0)
            _exit(126);
        if (chdir("/") < 0)
            _exit(126);
        char *const envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", "PGCONNECT_TIMEOUT=5", NULL};
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0) {
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        return -errno;
    }
    L.child = pid;
    L.child_kind = kind;
    L.child_done = false;
    if (sd_event_add_io(L.ev, &L.child_src, pfd, EPOLLIN, on_child, NULL) < 0) {
        close(pfd);
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        L.child = 0;
        return -EIO;
    }
    sd_event_source_set_io_fd_own(L.child_src, 1);
    return 0;
}

static void start_clone(const struct member_info *leader)
{
    char *perr = NULL;
    if (pg_prepare_dirs(&L.p.pg, &perr) < 0) {
        log_error("cannot prepare the data directory's parent: %s", ERRMSG(perr));
        free(perr);
        return;
    }
    char target[PATH_MAX + 16], bin[PATH_MAX + 32], ci[1024];
    snprintf(target, sizeof target, "%s.clone", L.p.pg.datadir);
    snprintf(bin, sizeof bin, "%s/pg_basebackup", L.p.pg.bindir);
    conninfo(ci, sizeof ci, leader->host, "replication", true);
    /* a leftover partial clone goes first */
    char rm[PATH_MAX + 64];
    snprintf(rm, sizeof rm, "%s", target);
    const char *rm_argv[] = {"/bin/rm", "-rf", rm, NULL};
    struct proc_opts o = {.timeout_ms = 60000};
    (void)proc_run(rm_argv, &o, NULL, NULL);
    /* the parent directory must be postgres's */
    const char *argv[] = {bin, "-D", target, "-d", ci, "-X", "stream", "-c", "fast",
                          "--no-password", "-w", NULL};
    int rc = spawn_child(argv, HA_CLONE, "pg-agent-basebackup");
    if (rc < 0)
        log_error("cannot start pg_basebackup: %s", strerror(-rc));
    else
        log_info("cloning from %s (%s) with pg_basebackup", leader->name, leader->host);
}

static void finish_clone(const struct member_info *leader)
{
    char target[PATH_MAX + 16];
    snprintf(target, sizeof target, "%s.clone", L.p.pg.datadir);
    if (L.child_status != 0) {
        log_error("pg_basebackup failed (exit %d; see %s/pg-agent-basebackup.log): retrying "
                  "in %d s", L.child_status, PG_LOG_DIR, (int)(RETRY_BACKOFF_US / 1000000u));
        L.retry_at = now_us() + RETRY_BACKOFF_US;
        return;
    }
    if (rename(target, L.p.pg.datadir) < 0) {
        log_error("cannot move the clone into place: %s", strerror(errno));
        return;
    }
    log_info("clone complete");
    (void)start_pg(false, leader ? leader->host : NULL);
    raise_event("this member became a replica");
}

/* pg_rewind takes the source's timeline from its control file, which a freshly promoted
 * server updates only at its first checkpoint on the new timeline: before that it rewinds
 * towards the old timeline and the result cannot follow the new one (seen: "requested
 * timeline 3 does not contain minimum recovery point ... on timeline 1"). Returns 1 when the
 * leader's last checkpoint is on its current timeline, 0 when not yet, -1 when unknown. */
static int leader_checkpointed(const char *ci, char *why, size_t size)
{
    PGconn *c = PQconnectdb(ci);
    int rc = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(why, size, "%s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    PGresult *r = PQexec(c, "SELECT timeline_id, pg_walfile_name(pg_current_wal_lsn()) "
                            "FROM pg_control_checkpoint()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        char tli_hex[9] = "";
        snprintf(tli_hex, sizeof tli_hex, "%s", PQgetvalue(r, 0, 1));
        char *end = NULL;
        unsigned long cur = strtoul(tli_hex, &end, 16);
        unsigned long ck = strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        if (end && *end == '\0' && strlen(tli_hex) == 8 && cur > 0) {
            rc = ck >= cur ? 1 : 0;
            snprintf(why, size, "its last checkpoint is on timeline %lu, it runs on %lu", ck,
                     cur);
        } else {
            snprintf(why, size, "unexpected answer");
        }
    } else {
        snprintf(why, size, "%s", PQresultErrorMessage(r));
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

static void start_rewind(const struct member_info *leader)
{
    if (now_us() < L.retry_at)
        return;
    char bin[PATH_MAX + 32], ci[1024], src[1100], why[256] = "";
    snprintf(bin, sizeof bin, "%s/pg_rewind", L.p.pg.bindir);
    conninfo(ci, sizeof ci, leader->host, "rewind", false);
    int ck = leader_checkpointed(ci, why, sizeof why);
    if (ck <= 0) {
        log_info("pg_rewind waits for %s's first checkpoint on its timeline (%s)", leader->name,
                 why);
        L.retry_at = now_us() + 500000u;
        cycle_fast();
        return;
    }
    /* pg_rewind finishes an unclean shutdown with a single-user server, which refuses to run
     * with standby.signal ("standby mode is not supported by single-user servers") */
    char sig[PATH_MAX + 32];
    pg_path(&L.p.pg, "recovery.signal", sig, sizeof sig);
    (void)unlink(sig);
    if (set_standby_signal(false) < 0)
        log_warning("cannot remove standby.signal before pg_rewind");
    snprintf(src, sizeof src, "--source-server=%s", ci);
    const char *argv[] = {bin, "-D", L.p.pg.datadir, src, NULL};
    int rc = spawn_child(argv, HA_REWIND, "pg-agent-rewind");
    if (rc < 0)
        log_error("cannot start pg_rewind: %s", strerror(-rc));
    else
        log_info("rewinding against %s (%s) before following it", leader->name, leader->host);
}

/* After a promotion: an immediate CHECKPOINT, sent without waiting (a large one must not
 * hold up the lease renewals of this thread), so that the old primary can be rewound
 * against this timeline soon (leader_checkpointed, Patroni's checkpoint after promote). */
static void checkpoint_after_promote(void)
{
    if (L.ckpt)
        return;
    PGconn *c = NULL;
    char *err = NULL;
    if (db_connect(PG_SOCKET_DIR, PG_PORT, &c, &err) < 0 || !PQsendQuery(c, "CHECKPOINT")) {
        log_warning("cannot request the checkpoint after promotion: %s",
                    err ? err : PQerrorMessage(c));
        free(err);
        db_close(c);
        return;
    }
    L.ckpt = c;
}

static void checkpoint_poll(void)
{
    if (!L.ckpt)
        return;
    if (PQconsumeInput(L.ckpt) && PQisBusy(L.ckpt))
        return;
    PGresult *r;
    bool ok = true;
    while ((r = PQgetResult(L.ckpt)) != NULL) {
        ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            log_warning("checkpoint after promotion: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    if (ok)
        log_info("checkpoint after promotion done");
    db_close(L.ckpt);
    L.ckpt = NULL;
}

/* ---- timeline ancestry (ha.md 9): stream, rewind, re-clone or wait ---------------------- */

static enum tl_outcome ancestry(const struct member_info *lm, const struct local_pg *l)
{
    struct tl_leader *ld = calloc(1, sizeof *ld);
    struct tl_local *lo = calloc(1, sizeof *lo);
    struct tl_decision dec = {.outcome = TL_WAIT};
    char *err = NULL;
    char ci[1024];
    if (!ld || !lo)
        goto out;
    conninfo(ci, sizeof ci, lm->host, "replication", true);
    if (tl_identify(ci, ld, &err) < 0) {
        snprintf(dec.reason, sizeof dec.reason, "cannot identify %s: %s", lm->name, ERRMSG(err));
        goto out;
    }
    if (l->running && l->ready) {
        struct tl_leader self = {0};
        if (tl_identify("host=" PG_SOCKET_DIR " port=5432 user=postgres connect_timeout=2",
                        &self, &err) < 0) {
            snprintf(dec.reason, sizeof dec.reason, "cannot identify this server: %s",
                     ERRMSG(err));
            goto out;
        }
        lo->system_id = self.system_id;
        lo->timeline = self.timeline;
        lo->lsn = l->recv > l->replay ? l->recv : l->replay;
        bool found = false;
        if (lo->timeline > 1 &&
            tl_history_read_file(L.p.pg.datadir, lo->timeline, &lo->history, &found, NULL) == 0)
            lo->has_history = found;
    } else if (tl_local_read(L.p.pg.bindir, L.p.pg.datadir, lo, &err) < 0) {
        snprintf(dec.reason, sizeof dec.reason, "cannot read this data directory: %s",
                 ERRMSG(err));
        goto out;
    }
    tl_decide(lo, ld, &dec);
out:
    if (strcmp(dec.reason, L.last_ancestry) != 0) {
        log_info("timeline check against %s: %s (%s)", lm->name, tl_outcome_name(dec.outcome),
                 dec.reason);
        snprintf(L.last_ancestry, sizeof L.last_ancestry, "%s", dec.reason);
    }
    free(err);
    free(ld);
    free(lo);
    return dec.outcome;
}

/* Start as a replica of lm, rewinding first when the timelines say so. */
static void rejoin(const struct member_info *lm, const struct local_pg *l)
{
    switch (ancestry(lm, l)) {
    case TL_STREAM:
        if (!l->running)
            (void)start_pg(false, lm->host);
        L.need_rewind = false;
        break;
    case TL_REWIND:
        if (l->running)
            stop_pg(false);
        start_rewind(lm);
        break;
    case TL_RECLONE:
        set_problem("this member's data forked from %s's beyond what pg_rewind can repair: "
                    "remove this unit and add a new one", lm->name);
        L.retry_at = now_us() + RETRY_BACKOFF_US;
        break;
    case TL_WAIT:
    default:
        L.retry_at = now_us() + 1000000u;
        break;
    }
}


/* ---- the REST API (ha.md 11), served from this thread's own state -------------------- */

static json_t *api_patroni(void *data, struct restapi_health *h)
{
    (void)data;
    const struct local_pg *l = &L.api_local;
    bool running = l->running && l->ready;
    json_t *j = json_object();
    json_object_set_new(j, "state", json_string(running ? "running" : l->running ? "starting"
                                                                                 : "stopped"));
    json_object_set_new(j, "role", json_string(running && l->primary ? "primary" : "replica"));
    if (running && l->primary) {
        json_object_set_new(j, "xlog", json_pack("{s:I}", "location", (json_int_t)l->lsn));
    } else if (running) {
        json_object_set_new(j, "xlog", json_pack("{s:I,s:I,s:n,s:b}", "received_location",
                                                 (json_int_t)l->recv, "replayed_location",
                                                 (json_int_t)l->replay, "replayed_timestamp",
                                                 "paused", 0));
        json_object_set_new(j, "replication_state",
                            json_string(l->streaming ? "streaming" : "in archive recovery"));
    }
    if (running)
        json_object_set_new(j, "timeline", json_integer(l->tli));
    json_object_set_new(j, "server_version", json_integer((json_int_t)L.p.pg.major * 10000));
    json_object_set_new(j, "dcs_last_seen", json_integer((json_int_t)L.dcs_last_seen));
    json_object_set_new(j, "tags", json_object());
    json_object_set_new(j, "database_system_identifier", json_string(l->sysid));
    if (l->pending_restart)
        json_object_set_new(j, "pending_restart", json_true());
    if (L.api_unlocked)
        json_object_set_new(j, "cluster_unlocked", json_true());
    json_object_set_new(j, "patroni", json_pack("{s:s,s:s,s:s}", "version", "3.0.2", "scope",
                                                L.p.scope, "name", L.p.name));
    h->running = running;
    h->leader = L.holding && !L.renew_failed;
    h->primary = h->leader && running && l->primary;
    h->replica = running && !l->primary;
    h->streaming = l->streaming;
    h->sync_standby = L.api_sync_standby;
    h->lag_bytes = !h->replica ? 0 : L.api_optime > l->lsn ? L.api_optime - l->lsn : 0;
    h->loop_recent = now_us() - L.last_cycle < (uint64_t)L.p.ttl_s * 1000000u;
    return j;
}

static json_t *api_cluster(void *data)
{
    (void)data;
    json_t *j = json_object();
    json_object_set_new(j, "members", L.api_cluster ? json_incref(L.api_cluster) : json_array());
    json_object_set_new(j, "scope", json_string(L.p.scope));
    return j;
}

static json_t *api_history(void *data)
{
    (void)data;
    return L.api_history ? json_incref(L.api_history) : json_array();
}

static json_t *api_config(void *data)
{
    (void)data;
    return json_pack("{s:i,s:i,s:b,s:b,s:i}", "ttl", L.p.ttl_s, "loop_wait", 1,
                     "synchronous_mode", L.p.sync_count > 0, "synchronous_mode_strict",
                     L.p.sync_strict, "synchronous_node_count",
                     L.p.sync_count > 0 ? L.p.sync_count : 1);
}

static char *api_metrics(void *data)
{
    (void)data;
    const struct local_pg *l = &L.api_local;
    bool running = l->running && l->ready;
    bool primary = running && l->primary && L.holding;
    char inner[160];
    snprintf(inner, sizeof inner, "scope=\"%s\",name=\"%s\"", L.p.scope, L.p.name);
    char labels[170];
    snprintf(labels, sizeof labels, "{%s}", inner);
    uint64_t now = now_us();
    uint64_t deadline = atomic_load(&fence_deadline_us);
    double left = atomic_load(&fence_armed) && deadline > now ? (double)(deadline - now) / 1e6
                                                             : 0.0;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
#define FAMILY(name, type, help, fmt, value)                                                     \
    fprintf(f, "# HELP " name " " help "\n# TYPE " name " " type "\n" name "%s " fmt "\n", labels, \
            value)
#define GAUGE(name, help, fmt, value) FAMILY(name, "gauge", help, fmt, value)
    /* Patroni's names and meanings (its api.py metrics), so its dashboards and rules work */
    GAUGE("patroni_version", "Patroni version the agent is compatible with.", "%d", 30002);
    GAUGE("patroni_postgres_running", "Value is 1 if Postgres is running, 0 otherwise.", "%d",
          running ? 1 : 0);
    GAUGE("patroni_postmaster_start_time", "Epoch seconds since Postgres started.", "%.3f",
          running ? l->start_time : 0.0);
    GAUGE("patroni_primary", "Value is 1 if this node is the leader, 0 otherwise.", "%d",
          primary ? 1 : 0);
    GAUGE("patroni_xlog_location", "Current location of the Postgres transaction log, 0 if "
          "this node is not the leader.", "%" PRIu64, primary ? l->lsn : (uint64_t)0);
    GAUGE("patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 "
          "otherwise.", "%d", 0);
    GAUGE("patroni_replica", "Value is 1 if this node is a replica, 0 otherwise.", "%d",
          running && !l->primary ? 1 : 0);
    GAUGE("patroni_sync_standby", "Value is 1 if this node is a sync standby, 0 otherwise.",
          "%d", L.api_sync_standby ? 1 : 0);
    GAUGE("patroni_xlog_received_location", "Current location of the received Postgres "
          "transaction log, 0 if this node is not a replica.", "%" PRIu64,
          running && !l->primary ? l->recv : (uint64_t)0);
    GAUGE("patroni_xlog_replayed_location", "Current location of the replayed Postgres "
          "transaction log, 0 if this node is not a replica.", "%" PRIu64,
          running && !l->primary ? l->replay : (uint64_t)0);
    GAUGE("patroni_xlog_replayed_timestamp", "Current timestamp of the replayed Postgres "
          "transaction log, 0 if null.", "%.3f", running && !l->primary ? l->replayed_ts : 0.0);
    GAUGE("patroni_xlog_paused", "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
          "%d", running && l->paused ? 1 : 0);
    GAUGE("patroni_postgres_streaming", "Value is 1 if Postgres is streaming, 0 otherwise.",
          "%d", running && l->streaming ? 1 : 0);
    GAUGE("patroni_postgres_in_archive_recovery", "Value is 1 if Postgres is replicating from "
          "archive, 0 otherwise.", "%d", running && !l->primary && !l->streaming ? 1 : 0);
    GAUGE("patroni_postgres_server_version", "Version of Postgres (if running), 0 otherwise.",
          "%ld", running ? l->server_version : 0L);
    GAUGE("patroni_cluster_unlocked", "Value is 1 if the cluster is unlocked, 0 if locked.",
          "%d", L.api_unlocked ? 1 : 0);
    GAUGE("patroni_failsafe_mode_is_active", "Value is 1 if failsafe mode is active, 0 if "
          "inactive.", "%d", 0);
    GAUGE("patroni_postgres_timeline", "Postgres timeline of this node (if running), 0 "
          "otherwise.", "%u", running ? l->tli : 0u);
    GAUGE("patroni_dcs_last_seen", "Epoch timestamp when DCS was last contacted "
          "successfully.", "%lld", (long long)L.dcs_last_seen);
    GAUGE("patroni_pending_restart", "Value is 1 if the node needs a restart, 0 otherwise.",
          "%d", l->pending_restart ? 1 : 0);
    GAUGE("patroni_is_paused", "Value is 1 if auto failover is disabled, 0 otherwise.", "%d",
          0);
    /* the agent's own */
    GAUGE("pg_agent_lease_remaining_seconds",
          "Seconds before this primary fences itself without a renewal (0: not leading).",
          "%.3f", left);
    GAUGE("pg_agent_dcs_reachable", "Value is 1 if the last read of the DCS (etcd) succeeded, "
          "0 otherwise.", "%d", atomic_load(&api_dcs_ok) ? 1 : 0);
    int quorum = atomic_load(&api_etcd_quorum);
    if (quorum >= 0) /* left out while the local member cannot be asked */
        GAUGE("pg_agent_etcd_quorum", "Value is 1 if the local etcd member sees a leader (its "
              "cluster has a quorum), 0 if it has none.", "%d", quorum);
    FAMILY("pg_agent_fencing_events_total", "counter",
           "Times the fencing deadline stopped PostgreSQL.", "%d", atomic_load(&fence_count));
    FAMILY("pg_agent_promotions_total", "counter", "Times this member was promoted.", "%d",
           L.failovers);
    FAMILY("pg_agent_demotions_total", "counter", "Times this member stepped down as primary.",
           "%d", atomic_load(&demotions));
#undef GAUGE
#undef FAMILY
    metrics_render(f, inner);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Writes are authenticated by a client certificate of the internal CA (the peers and the
 * agent itself); HTTP Basic is not offered. */
static bool api_auth(void *data, const char *user, const char *password)
{
    (void)data, (void)user, (void)password;
    return false;
}

static int api_switchover(void *data, const struct restapi_switchover *req, char **text)
{
    (void)data;
    struct dcs_view v;
    char *err = NULL;
    if (!L.etcd || dcs_read(&v, &err) < 0) {
        free(err);
        *text = strdup("Switchover status unknown");
        return 503;
    }
    int status = 0;
    const struct member_info *cand = req->candidate[0] ? member_find(&v, req->candidate) : NULL;
    if (!req->failover && (!v.leader_present || strcmp(req->leader, v.leader) != 0)) {
        status = 412;
        *text = strdup("leader name does not match");
    } else if (req->candidate[0] && !cand) {
        status = 412;
        *text = strdup("candidate does not exists");
    } else if (cand && v.n_sync && !in_sync(&v, cand->name)) {
        status = 412;
        *text = strdup("candidate name does not match with sync_standby");
    } else if (v.n < 2) {
        status = 412;
        *text = strdup("switchover is not possible: cluster does not have members except "
                       "leader");
    } else if (L.ticket_pending) {
        status = 503;
        *text = strdup("Switchover status unknown");
    }
    if (status) {
        dcs_view_clear(&v);
        return status;
    }
    json_t *j = json_pack("{s:s,s:s}", "leader", v.leader, "member", req->candidate);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (body)
        put_plain("failover", body);
    free(body);
    log_info("REST API: switchover from %s to %s requested by %s", v.leader,
             req->candidate[0] ? req->candidate : "the best candidate", req->who);
    L.ticket_pending = true;
    L.ticket = req->ticket;
    snprintf(L.ticket_from, sizeof L.ticket_from, "%s", v.leader);
    snprintf(L.ticket_to, sizeof L.ticket_to, "%s", req->candidate);
    dcs_view_clear(&v);
    wake();
    return 0;
}

static const struct restapi_ops api_ops = {
    .patroni = api_patroni, .cluster = api_cluster, .history = api_history,
    .config = api_config, .metrics = api_metrics, .auth_check = api_auth,
    .switchover = api_switchover,
};

static void api_ensure(void)
{
    if (L.api) {
        /* new peer certificates (tls.c) are served from the next connection on */
        struct timespec m = pki_files_mtime(&pki_peer_agent);
        if (!pki_time_after(m, L.api_tls_mtime))
            return;
        char *err = NULL;
        if (restapi_reload_tls(L.api, &err) < 0)
            log_warning("REST API: cannot load the new certificates (%s): keeping the current "
                        "ones", ERRMSG(err));
        free(err);
        L.api_tls_mtime = m; /* tried once per change */
        return;
    }
    if (!L.p.address[0] || !pki_ready())
        return;
    L.api_tls_mtime = pki_files_mtime(&pki_peer_agent);
    struct restapi_config cfg = {.bind_addr = strchr(L.p.address, ':') ? "::" : "0.0.0.0",
                                 .port = HA_API_PORT, .cert_file = pki_peer_agent.cert,
                                 .key_file = pki_peer_agent.key, .ca_file = pki_peer_agent.ca};
    char *err = NULL;
    if (restapi_start(L.ev, &cfg, &api_ops, &L.api, &err) < 0)
        log_warning("REST API on port %d: %s", HA_API_PORT, ERRMSG(err));
    else
        log_info("REST API listening on port %d (TLS)", HA_API_PORT);
    free(err);
}

/* After each cycle: what the API serves, and a pending switchover answered. */
static void api_update(const struct local_pg *l, const struct dcs_view *v)
{
    L.api_local = *l;
    L.last_cycle = now_us();
    if (!v->ok)
        return;
    L.dcs_last_seen = time(NULL);
    L.api_optime = v->optime;
    L.api_sync_standby = in_sync(v, L.p.name);
    L.api_unlocked = !v->leader_present;
    json_t *members = json_array();
    const struct member_info *lm = v->leader_valid ? member_find(v, v->leader) : NULL;
    uint64_t top = lm ? lm->lsn : v->optime;
    for (size_t i = 0; i < v->n; i++) {
        const struct member_info *m = &v->members[i];
        bool leader = v->leader_valid && strcmp(m->name, v->leader) == 0;
        char api_url[160];
        bool v6 = strchr(m->host, ':') != NULL;
        snprintf(api_url, sizeof api_url, v6 ? "https://[%s]:%d/patroni" : "https://%s:%d/patroni",
                 m->host, HA_API_PORT);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:o}", "name", m->name, "role",
                              leader ? "leader" : in_sync(v, m->name) ? "sync_standby" : "replica",
                              "state", !leader && m->streaming ? "streaming" : m->state,
                              "api_url", api_url, "host", m->host, "port", PG_PORT, "timeline",
                              (int)m->tli, "tags", json_object());
        if (o && !leader)
            json_object_set_new(o, "lag", json_integer(top > m->lsn ? (json_int_t)(top - m->lsn)
                                                                    : 0));
        json_array_append_new(members, o);
    }
    json_decref(L.api_cluster);
    L.api_cluster = members;
    json_decref(L.api_history);
    L.api_history = v->history ? json_loads(v->history, 0, NULL) : NULL;
    if (L.ticket_pending && v->leader_present && strcmp(v->leader, L.ticket_from) != 0 &&
        (!L.ticket_to[0] || strcmp(v->leader, L.ticket_to) == 0)) {
        char msg[128];
        snprintf(msg, sizeof msg, "Successfully switched over to \"%s\"", v->leader);
        (void)restapi_complete(L.ticket, 200, msg);
        L.ticket_pending = false;
    }
}

/* The promotion gate's peer probe (ha.md 8 #8): a reachable member that answers it runs
 * as primary holds this member back. Parallel, PROBE_TIMEOUT_MS in all. */
static bool peer_primary_alive(const struct dcs_view *v)
{
    const char *urls[MAX_MEMBERS];
    char buf[MAX_MEMBERS][160];
    size_t n = 0;
    for (size_t i = 0; i < v->n && n < MAX_MEMBERS; i++) {
        if (strcmp(v->members[i].name, L.p.name) == 0)
            continue;
        bool v6 = strchr(v->members[i].host, ':') != NULL;
        snprintf(buf[n], sizeof buf[n], v6 ? "https://[%s]:%d/patroni" : "https://%s:%d/patroni",
                 v->members[i].host, HA_API_PORT);
        urls[n] = buf[n];
        n++;
    }
    if (n == 0)
        return false;
    struct peer_status res[MAX_MEMBERS];
    struct peer_tls tls = {.ca_file = pki_peer_agent.ca, .cert_file = pki_peer_agent.cert,
                           .key_file = pki_peer_agent.key};
    char *err = NULL;
    bool alive = false;
    if (peer_probe_run(urls, n, &tls, PROBE_TIMEOUT_MS, res, &err) == 0) {
        for (size_t i = 0; i < n; i++)
            if (res[i].reachable && res[i].valid && !res[i].in_recovery &&
                res[i].role == PEER_ROLE_PRIMARY) {
                log_warning("no leader key, but %s still runs as primary: not racing",
                            res[i].name[0] ? res[i].name : urls[i]);
                alive = true;
            }
    }
    free(err);
    return alive;
}

/* The primary's unit should not also lead etcd: a crash of both costs an etcd election
 * plus a lease re-armed at full TTL on the new etcd leader (ha.md 5.4 #5, 15.1) before the
 * leader key can expire. The primary hands the raft leadership to another voter. */
static void keep_etcd_leadership_away(void)
{
    struct etcd_status st = {0};
    if (!L.etcd || etcd_status(L.etcd, 0, &st, NULL) < 0 || !st.leader ||
        st.leader != st.header.member_id)
        return;
    struct etcd_members m = {0};
    if (etcd_member_list(L.etcd, &m, NULL) == 0) {
        for (size_t i = 0; i < m.n; i++) {
            if (m.members[i].id == st.header.member_id || m.members[i].is_learner ||
                !m.members[i].name || !m.members[i].name[0])
                continue;
            char *err = NULL;
            if (etcd_move_leader(L.etcd, 0, m.members[i].id, &err) == 0)
                log_info("moved the etcd leadership to %s (away from the primary)",
                         m.members[i].name);
            else
                log_warning("cannot move the etcd leadership: %s", ERRMSG(err));
            free(err);
            break;
        }
    }
    etcd_members_clear(&m);
}

/* ---- the cycle -------------------------------------------------------------------------- */

/* restarted: this cycle restarted PostgreSQL for a changed setting (the status said
 * "restart pending" and no hook follows a restart by itself). */
static void snapshot_update(const struct local_pg *l, const struct dcs_view *v,
                            const struct ha_decision *d, bool restarted)
{
    enum ha_role role = HA_ROLE_NONE;
    const struct member_info *lm = v->leader_valid ? member_find(v, v->leader) : NULL;
    if (l->running && l->ready && l->primary && L.holding)
        role = HA_ROLE_PRIMARY;
    else if (l->running && l->ready && !l->primary)
        role = in_sync(v, L.p.name) ? HA_ROLE_SYNC_STANDBY : HA_ROLE_REPLICA;
    pthread_mutex_lock(&mu);
    struct ha_snapshot *s = &shared.snap;
    bool changed = s->role != role || strcmp(s->leader, v->leader) != 0;
    /* the streaming replicas, as the DCS shows them (read-only endpoints for clients) */
    char replicas[PEERS_MAX][PEERS_ADDR_MAX] = {{0}};
    int n_replicas = 0;
    for (size_t i = 0; v->ok && i < v->n && n_replicas < PEERS_MAX; i++) {
        const struct member_info *m = &v->members[i];
        if (strcmp(m->name, v->leader) == 0 || !m->host[0] || !m->streaming ||
            strcmp(m->state, "running") != 0)
            continue;
        snprintf(replicas[n_replicas++], PEERS_ADDR_MAX, "%s", m->host);
    }
    bool replicas_changed = v->ok && (n_replicas != s->n_replicas ||
                                      memcmp(replicas, s->replicas, sizeof replicas) != 0);
    if (v->ok) {
        memcpy(s->replicas, replicas, sizeof replicas);
        s->n_replicas = n_replicas;
    }
    s->started = true;
    s->dcs_ok = v->ok;
    s->role = role;
    s->pg_running = l->running && l->ready;
    s->streaming = l->streaming;
    snprintf(s->leader, sizeof s->leader, "%s", v->ok ? v->leader : s->leader);
    snprintf(s->leader_address, sizeof s->leader_address, "%s", lm ? lm->host : "");
    s->timeline = l->tli;
    s->lsn = l->lsn;
    s->restart_pending = l->running && l->ready && l->pending_restart;
    if (d) {
        snprintf(s->action, sizeof s->action, "%s", ha_action_name(d->action));
        snprintf(s->reason, sizeof s->reason, "%s", d->reason);
    }
    if (changed)
        s->generation++;
    pthread_mutex_unlock(&mu);
    if (changed && v->ok) {
        char why[160];
        snprintf(why, sizeof why, "role %s, leader %s",
                 role == HA_ROLE_PRIMARY ? "primary" : role == HA_ROLE_NONE ? "none" : "replica",
                 v->leader[0] ? v->leader : "none");
        raise_event(why);
    } else if (replicas_changed && L.p.juju_leader) {
        raise_event("the streaming replicas changed");
    } else if (restarted) {
        raise_event("restarted for a changed setting");
    }
    if (l->running && l->ready && l->roles[0]) {
        if (L.roles[0] && strcmp(L.roles, l->roles) != 0 && !changed)
            raise_event("the login roles changed");
        snprintf(L.roles, sizeof L.roles, "%s", l->roles);
    }
}

static void restart_watch(int64_t revision);

static void demote(bool immediate, bool release)
{
    log_warning("demoting: %s stop%s", immediate ? "immediate" : "fast",
                release ? ", then release the leader key" : "");
    atomic_fetch_add(&demotions, 1);
    stop_pg(immediate);
    disarm_fence();
    if (release && L.etcd)
        release_leader();
    L.holding = false;
    L.need_rewind = true;
}

/* The member a switchover without a named candidate goes to: a running replica (a
 * synchronous standby in sync mode), the most advanced one. */
static const struct member_info *best_candidate(const struct dcs_view *v)
{
    const struct member_info *best = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const struct member_info *m = &v->members[i];
        if (strcmp(m->name, L.p.name) == 0 || m->nofailover || strcmp(m->state, "running") != 0)
            continue;
        if (v->n_sync && !in_sync(v, m->name))
            continue;
        if (!best || m->lsn > best->lsn)
            best = m;
    }
    return best;
}

static void graceful_switchover(const struct local_pg *l, const struct dcs_view *v)
{
    const struct member_info *cand = v->fo_candidate[0] ? member_find(v, v->fo_candidate)
                                                        : best_candidate(v);
    if (!cand) {
        log_warning("switchover to %s: no such member; request dropped",
                    v->fo_candidate[0] ? v->fo_candidate : "any member");
        char key[256], *err = NULL;
        key_of(key, sizeof key, "failover");
        (void)etcd_delete(L.etcd, key, NULL, &err);
        free(err);
        return;
    }
    log_info("switchover to %s: checkpoint, fast shutdown, wait for its WAL", cand->name);
    (void)local_exec("CHECKPOINT");
    uint64_t my_lsn = l->lsn;
    stop_pg(false);
    /* The shutdown checkpoint is the last record: the candidate must have received it. */
    char *err = NULL;
    struct local_pg after = {0};
    after.has_data = true;
    (void)after;
    for (int waited = 0; waited < SWITCHOVER_WAIT_MS; waited += 50) {
        struct dcs_view nv;
        if (dcs_read(&nv, &err) == 0) {
            const struct member_info *m = member_find(&nv, cand->name);
            bool caught = m && m->lsn > my_lsn;
            dcs_view_clear(&nv);
            if (caught)
                break;
        }
        free(err);
        err = NULL;
        proc_sleep_ms(50);
    }
    free(err);
    disarm_fence();
    release_leader();
    L.need_rewind = true;
}

/* A changed setting needs a restart (issue 4 item 8): replicas restart at once; the
 * primary waits until no replica still has one pending, then hands over (switchover) and
 * restarts as a replica; alone, it restarts in place. True when it restarted here. */
static bool rolling_restart(struct local_pg *l, const struct dcs_view *v,
                            const struct member_info *lm)
{
    if (!l->primary) {
        if (!lm)
            return false;
        log_info("restarting this replica for a changed setting");
        stop_pg(false);
        (void)start_pg(false, lm->host);
        local_read(l);
        return true;
    }
    if (!L.holding)
        return false;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->members[i].name, L.p.name) != 0 && v->members[i].pending_restart)
            return false; /* replicas first */
    const struct member_info *cand = best_candidate(v);
    if (cand) {
        log_info("a changed setting needs a restart: switching over to %s first", cand->name);
        json_t *j = json_pack("{s:s,s:s}", "leader", L.p.name, "member", cand->name);
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (text)
            put_plain("failover", text);
        free(text);
        return false;
    }
    log_info("restarting the primary in place for a changed setting (no replica to hand over to)");
    stop_pg(false);
    renew(); /* keep the lock while it restarts */
    (void)start_pg(true, NULL);
    local_read(l);
    return true;
}

/* The DCS cannot be read: is it etcd's quorum that is gone? Then only an operator can
 * help (ha.md 6.4): blocked, naming the action. */
static void check_quorum(const char *why)
{
    struct etcd_status st = {0};
    bool answered = L.etcd && etcd_status(L.etcd, 0, &st, NULL) == 0;
    bool leaderless = answered && st.leader == 0;
    atomic_store(&api_etcd_quorum, answered ? (leaderless ? 0 : 1) : -1);
    if (!leaderless) {
        L.no_quorum_since = 0;
        problem_blocked = false;
        set_problem("etcd: %s", ERRMSG(why));
        return;
    }
    uint64_t now = now_us();
    if (!L.no_quorum_since)
        L.no_quorum_since = now;
    if (now - L.no_quorum_since > 2u * (uint64_t)L.p.ttl_s * 1000000u) {
        if (!problem_blocked) {
            log_error("etcd lost its quorum: this unit waits for an operator "
                      "(force-promote on the survivor with the most recent data)");
            problem_blocked = true;
            raise_event("etcd lost its quorum"); /* the status says so */
        }
        set_problem("etcd lost its quorum (no leader for %d s): if the other units are gone for "
                    "good, run `juju run %s force-promote` on the unit with the most recent data",
                    (int)((now - L.no_quorum_since) / 1000000u), L.p.unit);
    } else {
        problem_blocked = false;
        set_problem("etcd has no leader: waiting for an election");
    }
}

static void cycle(void)
{
    char *err = NULL;
    checkpoint_poll();
    if (L.child && !L.child_done) {
        /* a long action runs: keep the member key alive, nothing else */
    }
    if (ensure_client(&err) < 0) {
        set_problem("cannot reach etcd: %s", ERRMSG(err));
        free(err);
        atomic_store(&api_dcs_ok, false);
        atomic_store(&api_etcd_quorum, -1);
        return;
    }
    struct dcs_view v;
    struct local_pg l;
    local_read(&l);
    bool dcs_ok = ensure_lease(&err) == 0 && dcs_read(&v, &err) == 0;
    atomic_store(&api_dcs_ok, dcs_ok);
    if (dcs_ok)
        atomic_store(&api_etcd_quorum, 1);
    if (!dcs_ok) {
        check_quorum(err);
        free(err);
        err = NULL;
        v = (struct dcs_view){0};
    } else {
        L.no_quorum_since = 0;
        if (L.p.watchdog_mode != WATCHDOG_REQUIRED)
            L.wd_problem[0] = '\0';
        problem_blocked = L.wd_problem[0] != '\0';
        if (problem_blocked)
            set_problem("%s", L.wd_problem);
        else
            set_problem(NULL);
    }
    if (v.ok && !L.watch)
        restart_watch(v.revision + 1);

    /* a child finished */
    if (L.child && L.child_done) {
        int kind = L.child_kind;
        L.child = 0;
        const struct member_info *lm = v.leader_valid ? member_find(&v, v.leader) : NULL;
        if (kind == HA_CLONE)
            finish_clone(lm);
        else if (L.child_status == 0) {
            log_info("pg_rewind done");
            L.need_rewind = false;
            (void)start_pg(false, lm ? lm->host : NULL);
        } else {
            log_error("pg_rewind failed (exit %d; see %s/pg-agent-rewind.log): this member "
                      "stays stopped; re-clone it by removing and adding the unit",
                      L.child_status, PG_LOG_DIR);
            set_problem("pg_rewind failed: this replica needs an operator");
            L.retry_at = now_us() + RETRY_BACKOFF_US;
        }
        local_read(&l);
    }

    /* fencing layer 2: my key vanished or names someone else while I run as primary */
    if (v.ok && L.holding && (!v.leader_present || strcmp(v.leader, L.p.name) != 0)) {
        log_warning("my leader key is gone (%s): demoting at once",
                    v.leader_present ? v.leader : "deleted");
        demote(true, false);
        local_read(&l);
    }
    if (L.renew_failed && L.holding) {
        log_warning("renewal failed with the DCS reachable: immediate demotion");
        demote(true, false);
        L.renew_failed = false;
        local_read(&l);
    }

    struct ha_local hl = {0};
    snprintf(hl.name, sizeof hl.name, "%s", L.p.name);
    hl.has_data = l.has_data;
    hl.running = l.running;
    hl.starting = l.running && !l.ready;
    hl.primary = l.running && l.ready && l.primary;
    hl.streaming = l.streaming;
    hl.timeline = l.tli;
    hl.lsn = l.lsn;
    hl.long_action = L.child != 0;
    struct ha_dcs hd = {0};
    hd.reachable = v.ok;
    hd.initialized = v.initialized;
    hd.leader_present = v.leader_present;
    snprintf(hd.leader, sizeof hd.leader, "%s", v.leader_valid ? v.leader : "?");
    hd.renewed = L.holding && !L.renew_failed;
    /* the loop steps down (fast stop) 1 s before the fence would (SIGQUIT at last confirmed
     * send + TTL - 1 s), and rides out shorter DCS outages (an etcd election) */
    hd.lease_valid = L.holding && !L.renew_failed && L.last_renew_ok &&
                     now_us() + 2000000u < L.last_renew_ok + (uint64_t)L.p.ttl_s * 1000000u;
    if (!v.ok && L.holding)
        cycle_fast(); /* the step-down must not wait for the 2 s fallback cycle */
    const struct member_info *lm = v.leader_valid ? member_find(&v, v.leader) : NULL;
    /* members' published timelines may lag: divergence is decided by the timeline check
     * against the leader itself (rejoin), not by this rule */
    hd.leader_timeline = 0;
    hd.optime = v.optime;
    hd.history_timeline = v.history_tli;
    hd.sync_mode = sync_wanted_count() > 0 && v.have_sync;
    hd.in_sync = in_sync(&v, L.p.name) || strcmp(v.sync_leader, L.p.name) == 0;
    hd.failover_requested = v.have_failover;
    snprintf(hd.failover_candidate, sizeof hd.failover_candidate, "%s", v.fo_candidate);
    struct ha_peers peers = {0};
    /* Peer probe: the DCS member records say who runs as primary; a member that still
     * publishes role primary with a live lease is taken as alive. */
    for (size_t i = 0; i < v.n; i++) {
        const struct member_info *m = &v.members[i];
        if (strcmp(m->name, L.p.name) == 0)
            continue;
        if (strcmp(m->role, "primary") == 0 && strcmp(m->state, "running") == 0)
            peers.primary_alive = true;
        bool eligible = !m->nofailover && (!hd.sync_mode || in_sync(&v, m->name));
        if (eligible && strcmp(m->state, "running") == 0 && m->lsn > l.lsn)
            peers.better_candidate = true;
    }
    struct ha_config hc = {.maximum_lag_on_failover = 1048576, .check_timeline = true};
    struct ha_decision d;
    ha_decide(&hl, &hd, &peers, &hc, &d);
    if (strcmp(d.rule, L.last_rule) != 0) {
        log_info("HA: %s (%s): %s", ha_action_name(d.action), d.rule, d.reason);
        snprintf(L.last_rule, sizeof L.last_rule, "%s", d.rule);
    }

    switch (d.action) {
    case HA_BOOTSTRAP: {
        char key[256];
        key_of(key, sizeof key, "initialize");
        struct etcd_txn_result t = {0};
        if (etcd_create_if_absent(L.etcd, key, "", 0, 0, &t, &err) == 0 && t.succeeded) {
            log_info("won the bootstrap race: initdb");
            if (pg_initdb(&L.p.pg, &err) < 0) {
                log_error("initdb failed: %s", ERRMSG(err));
                char *e2 = NULL;
                (void)etcd_delete(L.etcd, key, NULL, &e2);
                free(e2);
            } else if (acquire()) {
                (void)start_pg(true, NULL);
            }
        }
        etcd_txn_result_clear(&t);
        break;
    }
    case HA_CLONE:
        if (lm && strcmp(lm->state, "running") == 0 && now_us() >= L.retry_at)
            start_clone(lm);
        break;
    case HA_START: {
        bool mine = L.holding && v.leader_present && strcmp(v.leader, L.p.name) == 0;
        if (!mine && lm && strcmp(lm->state, "running") == 0) {
            if (now_us() >= L.retry_at)
                rejoin(lm, &l);
            break;
        }
        (void)start_pg(mine, mine ? NULL : lm ? lm->host : NULL);
        break;
    }
    case HA_ACQUIRE:
        if (peer_primary_alive(&v) || !watchdog_arm() || !acquire())
            break;
        /* fall through: promote at once */
        // fall through
    case HA_PROMOTE:
        if (sync_wanted_count() > 0 && v.have_sync) {
            /* pre-promote: the sync key names me as leader first (ha.md 7.2) */
            char none[1][NAME_MAX_];
            struct dcs_view nv;
            if (dcs_read(&nv, &err) == 0) {
                size_t keep = 0;
                for (size_t i = 0; i < nv.n_sync; i++)
                    if (strcmp(nv.sync[i], L.p.name) != 0 && keep < 1)
                        snprintf(none[keep++], NAME_MAX_, "%s", nv.sync[i]);
                if (cas_sync(&nv, none, 0) < 0) {
                    log_warning("pre-promote sync write failed: releasing the key");
                    release_leader();
                    disarm_fence();
                    dcs_view_clear(&nv);
                    break;
                }
                dcs_view_clear(&nv);
            }
        }
        if (l.running && l.ready && !l.primary) {
            strict_before_promote(&v);
            log_info("promoting");
            if (local_exec("SELECT pg_promote(true, 60)") == 0) {
                cycle_fast();
                checkpoint_after_promote();
                L.need_rewind = false;
                L.failovers++;
                /* history: the timeline we left and where */
                json_t *h = v.history ? json_loads(v.history, 0, NULL) : json_array();
                if (!json_is_array(h)) {
                    json_decref(h);
                    h = json_array();
                }
                char ts[64];
                time_t t = time(NULL);
                struct tm tm;
                gmtime_r(&t, &tm);
                if (strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S+00:00", &tm) == 0)
                    ts[0] = '\0';
                json_array_append_new(h, json_pack("[I,I,s,s,s]", (json_int_t)l.tli,
                                                   (json_int_t)l.lsn, "no recovery target "
                                                   "specified", ts, L.p.name));
                char *text = json_dumps(h, JSON_COMPACT);
                if (text)
                    put_plain("history", text);
                free(text);
                json_decref(h);
                if (v.have_failover) {
                    char key[256];
                    key_of(key, sizeof key, "failover");
                    (void)etcd_delete(L.etcd, key, NULL, &err);
                }
            }
        } else if (!l.running) {
            (void)start_pg(true, NULL);
        }
        local_read(&l);
        break;
    case HA_RENEW:
        leader_bookkeeping(&l, &v);
        manage_slots(&v);
        if (sync_wanted_count() > 0 || v.have_sync)
            manage_sync(&v);
        if ((v.have_failover && strcmp(v.fo_candidate, L.p.name) == 0) || v.bad_failover) {
            char key[256];
            key_of(key, sizeof key, "failover");
            (void)etcd_delete(L.etcd, key, NULL, &err);
        }
        break;
    case HA_FOLLOW:
        if (lm && l.running) {
            char ssn[1024];
            standby_ssn(&v, ssn, sizeof ssn);
            bool moved = strcmp(L.cur_upstream, lm->host) != 0;
            if (moved) {
                log_info("following %s at %s", lm->name, lm->host);
                cycle_fast();
            }
            if ((moved || strcmp(ssn, L.ssn) != 0) && write_ha_conf(lm->host, ssn) >= 0)
                (void)local_exec("SELECT pg_reload_conf()");
        }
        /* running but not streaming for a while: check the timelines (ha.md 9, 17 #5) */
        if (l.streaming || !l.running) {
            L.not_streaming_since = 0;
        } else if (!L.not_streaming_since) {
            L.not_streaming_since = now_us();
        } else if (lm && now_us() - L.not_streaming_since > 2000000u && now_us() >= L.retry_at) {
            rejoin(lm, &l);
            L.not_streaming_since = 0;
        }
        break;
    case HA_REWIND:
        if (lm) {
            stop_pg(false);
            start_rewind(lm);
        }
        break;
    case HA_DEMOTE_OFFLINE:
        demote(false, false);
        break;
    case HA_RECLAIM:
        reclaim_leader();
        break;
    case HA_DEMOTE_IMMEDIATE: /* another member leads: stop now, follow it next cycle */
    case HA_DEMOTE_NOLOCK:    /* the lock is lost: stop now, keep nothing */
        demote(true, false);
        break;
    case HA_SWITCHOVER:
        graceful_switchover(&l, &v);
        local_read(&l);
        break;
    case HA_WAIT:
    default:
        break;
    }
    free(err);
    err = NULL;
    bool restarted = (d.action == HA_FOLLOW || d.action == HA_RENEW) && l.pending_restart &&
                     !L.child && rolling_restart(&l, &v, lm);
    if (v.ok && L.lease)
        publish_member(&l, &v);
    api_ensure();
    api_update(&l, &v);
    snapshot_update(&l, &v, &d, restarted);

    /* the Juju leader's agent promotes etcd learners and restarts a dead local member */
    uint64_t now = now_us();
    uint64_t poke = atomic_load(&poke_at);
    if (poke && now >= poke) {
        atomic_store(&poke_at, 0);
        raise_event("a hook the agent asked for (a retry, or work falling due)");
    }
    if (now >= L.supervise_at) {
        L.supervise_at = now + 1000000u;
        if (L.holding && ++L.etcd_check % 5 == 0)
            keep_etcd_leadership_away();
        if (cluster_supervise(L.etcd, L.p.juju_leader || L.holding) > 0)
            raise_event("an etcd learner was promoted");
    }
    dcs_view_clear(&v);
}

/* ---- event sources ------------------------------------------------------------------------- */

static int on_watch(sd_event_source *s, int fd, uint32_t revents, void *u)
{
    (void)s, (void)fd, (void)revents, (void)u;
    bool any = false, broken = false;
    for (;;) {
        struct etcd_watch_event e = {0};
        char *err = NULL;
        int rc = etcd_watch_next(L.watch, &e, &err);
        etcd_watch_event_clear(&e);
        free(err);
        if (rc > 0) {
            any = true;
            continue;
        }
        if (rc < 0)
            broken = true;
        break;
    }
    if (broken) {
        sd_event_source_disable_unref(L.watch_src);
        L.watch_src = NULL;
        etcd_watch_free(L.watch);
        L.watch = NULL;
        any = true;
    }
    if (any)
        cycle();
    return 0;
}

static void restart_watch(int64_t revision)
{
    if (L.watch_src) {
        sd_event_source_disable_unref(L.watch_src);
        L.watch_src = NULL;
    }
    etcd_watch_free(L.watch);
    L.watch = NULL;
    char *err = NULL;
    if (etcd_watch_start(L.etcd, L.prefix, revision, &L.watch, &err) < 0) {
        log_warning("cannot watch the DCS: %s", ERRMSG(err));
        free(err);
        return;
    }
    if (sd_event_add_io(L.ev, &L.watch_src, etcd_watch_fd(L.watch), EPOLLIN, on_watch, NULL) < 0) {
        etcd_watch_free(L.watch);
        L.watch = NULL;
    }
}

/* Re-arm a periodic timer (time sources are one-shot). */
static int rearm(sd_event_source *s, uint64_t usec, uint64_t period_us)
{
    int rc = sd_event_source_set_time(s, usec + period_us);
    return rc < 0 ? rc : sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static int on_renew(sd_event_source *s, uint64_t usec, void *u)
{
    (void)u;
    renew();
    uint64_t period = L.p.renew_ms > 0 ? (uint64_t)L.p.renew_ms * 1000u : 500000u;
    /* from now, not from the planned time: a late renewal must not cause a burst */
    uint64_t now = usec;
    sd_event_now(L.ev, CLOCK_MONOTONIC, &now);
    return rearm(s, now > usec ? now : usec, period);
}

static int on_cycle_timer(sd_event_source *s, uint64_t usec, void *u)
{
    (void)u;
    cycle();
    bool fast = now_us() < L.fast_until;
    return rearm(s, usec, (uint64_t)(fast ? FAST_CYCLE_MS : CYCLE_FALLBACK_MS) * 1000u);
}

/* Right after a promotion or a new upstream, what the cycle waits for (a standby streaming
 * from the new primary, so that strict synchronous commits resume; this member streaming
 * again) shows in no DCS key the watch would report: cycle every FAST_CYCLE_MS for a while. */
static void cycle_fast(void)
{
    L.fast_until = now_us() + (uint64_t)FAST_WINDOW_MS * 1000u;
    uint64_t now = 0;
    if (L.cycle_src && sd_event_now(L.ev, CLOCK_MONOTONIC, &now) >= 0) {
        uint64_t at = 0;
        if (sd_event_source_get_time(L.cycle_src, &at) < 0 ||
            at > now + (uint64_t)FAST_CYCLE_MS * 1000u)
            (void)rearm(L.cycle_src, now, (uint64_t)FAST_CYCLE_MS * 1000u);
    }
}

/* New parameters from the hook thread, or a wake-up. */
static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *u)
{
    (void)s, (void)revents, (void)u;
    uint64_t n;
    (void)!read(fd, &n, sizeof n);
    pthread_mutex_lock(&mu);
    bool leaving = shared.leaving;
    if (shared.params_gen != L.params_gen) {
        for (int i = 0; i < 3; i++)
            free((char *)L.p.conf[i]);
        L.p = shared.p;
        for (int i = 0; i < 3; i++)
            L.p.conf[i] = shared.conf_copy[i] ? strdup(shared.conf_copy[i]) : NULL;
        L.params_gen = shared.params_gen;
        snprintf(L.prefix, sizeof L.prefix, HA_NAMESPACE "%s/", L.p.scope);
    }
    pthread_mutex_unlock(&mu);
    if (leaving) {
        sd_event_exit(L.ev, 0);
        return 0;
    }
    cycle();
    return 0;
}

static void *fence_main(void *arg)
{
    (void)arg;
    (void)pthread_setname_np(pthread_self(), "pg-agent-fence");
    for (;;) {
        struct timespec ts = {0, 20L * 1000 * 1000};
        clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        if (!atomic_load(&fence_armed) || now_us() < atomic_load(&fence_deadline_us))
            continue;
        /* The lease may expire elsewhere soon: stop PostgreSQL now, whatever the loop does. */
        atomic_store(&fence_armed, false);
        atomic_fetch_add(&fence_count, 1);
        pthread_mutex_lock(&mu);
        struct pg_install pg = shared.p.pg;
        pthread_mutex_unlock(&mu);
        bool ready;
        pid_t pid = pg_running(&pg, &ready);
        log_error("FENCING: no confirmed lease renewal before the deadline: stopping "
                  "PostgreSQL (pid %ld) at once", (long)pid);
        if (pid > 0) {
            (void)kill(pid, SIGQUIT);
            struct timespec grace = {FENCE_KILL_AFTER_MS / 1000, 0};
            clock_nanosleep(CLOCK_MONOTONIC, 0, &grace, NULL);
            if (pg_running(&pg, &ready) == pid)
                (void)kill(pid, SIGKILL);
        }
    }
    return NULL;
}

static void *ha_main(void *arg)
{
    (void)arg;
    (void)pthread_setname_np(pthread_self(), "pg-agent-ha");
    if (sd_event_new(&L.ev) < 0)
        return NULL;
    sd_event_add_io(L.ev, NULL, wake_fd, EPOLLIN, on_wake, NULL);
    uint64_t now = 0;
    sd_event_now(L.ev, CLOCK_MONOTONIC, &now);
    sd_event_add_time(L.ev, &L.renew_src, CLOCK_MONOTONIC, now + 100000u, 10000u, on_renew,
                      NULL);
    sd_event_add_time(L.ev, &L.cycle_src, CLOCK_MONOTONIC, now + 200000u, 100000u,
                      on_cycle_timer, NULL);
    wake();
    (void)sd_event_loop(L.ev);
    watchdog_disarm(); /* the loop ends only when this unit leaves */
    return NULL;
}

/* ---- public -------------------------------------------------------------------------------- */

/* The parameters survive an agent restart or upgrade (re-exec) in /run (root 0600): the
 * new agent resumes the loop at once, adopts the lease and keeps the primary, instead of
 * waiting for the next hook. Configuration text only: no secret is in there. */
#define PARAMS_FILE "/run/pg-agent/ha-params"
#define PARAMS_MAGIC 0x70676861u /* "pgha" */

struct params_header {
    uint32_t magic;
    uint32_t size; /* sizeof(struct ha_params): a changed layout is not read */
    uint32_t conf_len[3];
};

static void params_save(const struct ha_params *p)
{
    struct ha_params copy = *p;
    struct params_header h = {.magic = PARAMS_MAGIC, .size = (uint32_t)sizeof copy};
    for (int i = 0; i < 3; i++) {
        copy.conf[i] = NULL;
        h.conf_len[i] = p->conf[i] ? (uint32_t)strlen(p->conf[i]) : 0;
    }
    char tmp[] = PARAMS_FILE ".new";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h &&
              write(fd, &copy, sizeof copy) == (ssize_t)sizeof copy;
    for (int i = 0; ok && i < 3; i++)
        ok = !h.conf_len[i] || write(fd, p->conf[i], h.conf_len[i]) == (ssize_t)h.conf_len[i];
    close(fd);
    if (!ok || rename(tmp, PARAMS_FILE) < 0)
        (void)unlink(tmp);
}

int ha_resume(void)
{
    int fd = open(PARAMS_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    struct params_header h;
    struct ha_params p;
    char *conf[3] = {NULL, NULL, NULL};
    int rc = 0;
    if (read(fd, &h, sizeof h) != (ssize_t)sizeof h || h.magic != PARAMS_MAGIC ||
        h.size != sizeof p || read(fd, &p, sizeof p) != (ssize_t)sizeof p)
        goto out;
    for (int i = 0; i < 3; i++) {
        if (h.conf_len[i] > (1u << 20))
            goto out;
        conf[i] = calloc(1, (size_t)h.conf_len[i] + 1);
        if (!conf[i] || (h.conf_len[i] &&
                         read(fd, conf[i], h.conf_len[i]) != (ssize_t)h.conf_len[i]))
            goto out;
        p.conf[i] = conf[i];
    }
    p.name[sizeof p.name - 1] = p.scope[sizeof p.scope - 1] = '\0';
    p.unit[sizeof p.unit - 1] = p.address[sizeof p.address - 1] = '\0';
    p.charm_dir[sizeof p.charm_dir - 1] = '\0';
    if (!etcd_name_valid(p.name) || !etcd_name_valid(p.scope) || p.ttl_s < 3 ||
        p.renew_ms < 100 || p.n_peer_addrs < 0 || p.n_peer_addrs > PEERS_MAX)
        goto out;
    char *err = NULL;
    if (ha_configure(&p, &err) == 0) {
        log_info("HA loop resumed from the previous agent's parameters");
        rc = 1;
    }
    free(err);
out:
    close(fd);
    for (int i = 0; i < 3; i++)
        free(conf[i]);
    return rc;
}

int ha_configure(const struct ha_params *p, char **err)
{
    params_save(p);
    pthread_mutex_lock(&mu);
    shared.p = *p;
    for (int i = 0; i < 3; i++) {
        free(shared.conf_copy[i]);
        shared.conf_copy[i] = p->conf[i] ? strdup(p->conf[i]) : NULL;
        shared.p.conf[i] = NULL;
    }
    shared.params_gen++;
    shared.have_params = true;
    pthread_mutex_unlock(&mu);
    if (!thread_started) {
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd < 0)
            return errmsg_set(err, -1, "eventfd: %s", strerror(errno));
        if (pthread_create(&fence_thread, NULL, fence_main, NULL) != 0 ||
            pthread_create(&ha_thread, NULL, ha_main, NULL) != 0)
            return errmsg_set(err, -1, "cannot start the HA threads");
        thread_started = true;
        log_info("HA loop started (lease %d s, renewal every %d ms)", p->ttl_s, p->renew_ms);
    }
    wake();
    return 0;
}

void ha_poke_later(int ms)
{
    uint64_t at = now_us() + (uint64_t)ms * 1000u;
    uint64_t cur = atomic_load(&poke_at);
    if (!cur || at < cur)
        atomic_store(&poke_at, at);
}

void ha_snapshot_get(struct ha_snapshot *out)
{
    pthread_mutex_lock(&mu);
    *out = shared.snap;
    pthread_mutex_unlock(&mu);
}

/* ---- from the hook thread: switchover, leave, cluster view ------------------------------- */

static int hook_view(struct etcd_client **c, struct dcs_view *v, char *prefix, size_t psize,
                     char **err)
{
    pthread_mutex_lock(&mu);
    char scope[64];
    snprintf(scope, sizeof scope, "%s", shared.p.scope);
    bool have = shared.have_params;
    pthread_mutex_unlock(&mu);
    if (!have)
        return errmsg_set(err, -ENOENT, "the HA loop is not running on this unit yet");
    snprintf(prefix, psize, HA_NAMESPACE "%s/", scope);
    if (cluster_client(2000, c, err) < 0)
        return -EIO;
    if (dcs_read_with(*c, prefix, v, err) < 0) {
        etcd_client_free(*c);
        *c = NULL;
        return -EIO;
    }
    return 0;
}

int ha_switchover(const char *candidate, int timeout_ms, char **msg)
{
    struct etcd_client *c = NULL;
    struct dcs_view v;
    char prefix[160];
    int rc = hook_view(&c, &v, prefix, sizeof prefix, msg);
    if (rc < 0)
        return rc;
    char old[NAME_MAX_];
    snprintf(old, sizeof old, "%s", v.leader);
    rc = 0;
    if (!v.leader_present) {
        rc = errmsg_set(msg, -EINVAL, "switchover is not possible: there is no leader");
    } else if (candidate && *candidate && !member_find(&v, candidate)) {
        rc = errmsg_set(msg, -EINVAL, "candidate does not exists");
    } else if (candidate && *candidate && strcmp(candidate, v.leader) == 0) {
        rc = errmsg_set(msg, -EINVAL, "%s is already the primary", candidate);
    } else if (candidate && *candidate && v.have_sync && v.n_sync && !in_sync(&v, candidate)) {
        rc = errmsg_set(msg, -EINVAL, "candidate name does not match with sync_standby");
    } else if (v.n < 2) {
        rc = errmsg_set(msg, -EINVAL, "switchover is not possible: cluster does not have "
                                      "members except leader");
    }
    if (rc == 0) {
        json_t *j = json_pack("{s:s,s:s}", "leader", v.leader, "member",
                              candidate ? candidate : "");
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        char key[256];
        snprintf(key, sizeof key, "%sfailover", prefix);
        rc = text ? etcd_put(c, key, text, strlen(text), 0, NULL, msg) : -ENOMEM;
        free(text);
    }
    dcs_view_clear(&v);
    for (int waited = 0; rc == 0; waited += 100) {
        struct dcs_view nv;
        struct etcd_client *c2 = NULL;
        char p2[160];
        char *e = NULL;
        if (hook_view(&c2, &nv, p2, sizeof p2, &e) == 0) {
            bool done = nv.leader_present && strcmp(nv.leader, old) != 0 &&
                        (!candidate || !*candidate || strcmp(nv.leader, candidate) == 0);
            if (done)
                errmsg_format(msg, "Successfully switched over to \"%s\"", nv.leader);
            dcs_view_clear(&nv);
            etcd_client_free(c2);
            free(e);
            if (done)
                break;
        } else {
            free(e);
        }
        if (waited >= timeout_ms) {
            rc = errmsg_set(msg, -ETIMEDOUT, "Switchover status unknown");
            break;
        }
        proc_sleep_ms(100);
    }
    etcd_client_free(c);
    return rc;
}

int ha_cluster_json(json_t **out, char **err)
{
    struct etcd_client *c = NULL;
    struct dcs_view v;
    char prefix[160];
    int rc = hook_view(&c, &v, prefix, sizeof prefix, err);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    const struct member_info *lm = v.leader_valid ? member_find(&v, v.leader) : NULL;
    uint64_t top = lm ? lm->lsn : v.optime;
    for (size_t i = 0; i < v.n; i++) {
        const struct member_info *m = &v.members[i];
        bool leader = v.leader_valid && strcmp(m->name, v.leader) == 0;
        const char *role = leader ? "leader" : in_sync(&v, m->name) ? "sync_standby" : "replica";
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:I}", "name", m->name, "role", role,
                              "state", leader ? m->state : m->streaming ? "streaming" : m->state,
                              "host", m->host, "timeline", (int)m->tli, "lsn", (json_int_t)m->lsn);
        if (!leader && o)
            json_object_set_new(o, "lag", json_integer(top > m->lsn ? (json_int_t)(top - m->lsn)
                                                                    : 0));
        json_array_append_new(arr, o);
    }
    dcs_view_clear(&v);
    etcd_client_free(c);
    *out = arr;
    return 0;
}

int ha_force_promote(char **msg)
{
    struct etcd_client *c = NULL;
    char *err = NULL;
    int rc = cluster_client(2000, &c, &err);
    if (rc == 0) {
        struct etcd_status st = {0};
        if (etcd_status(c, 0, &st, NULL) == 0 && st.leader != 0) {
            etcd_client_free(c);
            free(err);
            return errmsg_set(msg, -EINVAL, "etcd has a quorum: use promote-to-primary for a "
                                            "switchover instead");
        }
    }
    etcd_client_free(c);
    c = NULL;
    free(err);
    err = NULL;
    pthread_mutex_lock(&mu);
    char scope[64], name[64];
    snprintf(scope, sizeof scope, "%s", shared.p.scope);
    snprintf(name, sizeof name, "%s", shared.p.name);
    pthread_mutex_unlock(&mu);
    if (!scope[0])
        return errmsg_set(msg, -ENOENT, "the HA loop is not configured on this unit");
    if (cluster_force_new(&err) < 0 || cluster_client(2000, &c, &err) < 0) {
        rc = errmsg_set(msg, -EIO, "cannot rebuild etcd from this unit: %s", ERRMSG(err));
        free(err);
        return rc;
    }
    /* This member alone may promote: the sync key names it, the last optime is forgotten
     * (the lag gate would measure against data that is gone). */
    char key[256], value[160];
    snprintf(value, sizeof value, "{\"leader\":\"%s\",\"sync_standby\":\"\"}", name);
    snprintf(key, sizeof key, HA_NAMESPACE "%s/sync", scope);
    rc = etcd_put(c, key, value, strlen(value), 0, NULL, &err);
    snprintf(key, sizeof key, HA_NAMESPACE "%s/status", scope);
    if (rc == 0)
        rc = etcd_delete(c, key, NULL, &err);
    etcd_client_free(c);
    if (rc < 0) {
        rc = errmsg_set(msg, -EIO, "etcd was rebuilt but the DCS keys could not be reset: %s",
                        ERRMSG(err));
        free(err);
        return rc;
    }
    free(err);
    problem_blocked = false;
    ha_poke_later(1000); /* a hook: the leader republishes the etcd member list */
    wake();
    log_warning("force-promote: etcd rebuilt from this unit; it takes the leader key once the "
                "old one expires; the other units rejoin etcd as learners when they return");
    errmsg_format(msg, "etcd rebuilt from %s; it becomes the primary within %d s", name,
                  2 * shared.p.ttl_s + 2);
    return 0;
}

void ha_leave(int timeout_ms)
{
    if (!thread_started)
        return;
    struct ha_snapshot s;
    ha_snapshot_get(&s);
    if (s.role == HA_ROLE_PRIMARY) {
        char *msg = NULL;
        log_info("this unit leaves while primary: switching over first");
        if (ha_switchover("", timeout_ms, &msg) < 0)
            log_warning("switchover before leaving: %s", ERRMSG(msg));
        free(msg);
    }
    pthread_mutex_lock(&mu);
    shared.leaving = true;
    pthread_mutex_unlock(&mu);
    wake();
    pthread_join(ha_thread, NULL);
    thread_started = false;
    disarm_fence();
    stop_pg(false);
    if (L.etcd && L.lease) {
        char *err = NULL;
        (void)etcd_lease_revoke(L.etcd, L.lease, &err);
        free(err);
    }
    log_info("HA loop stopped: this unit left the cluster");
}
