/* The reconcile pass (reconcile.h): model facts, then packages, cluster, configuration
 * files, the running server, passwords, ports and status, each converged in turn. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "reconcile.h"

#include "clients.h"
#include "cluster.h"
#include "cos.h"
#include "db.h"
#include "ha.h"
#include "peers.h"
#include "pki.h"
#include "tls.h"
#include "errmsg.h"
#include "exporter.h"
#include "hooktool.h"
#include "log.h"
#include "metrics.h"
#include "password.h"
#include "pgconf.h"
#include "version.h"
#include "x509.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define START_TIMEOUT_MS 120000
#define STOP_TIMEOUT_MS 120000
#define RELOAD_WAIT_MS 5000

/* What the last pass saw and did, in memory only. */
static struct {
    bool full_ok;      /* the last full pass converged (active) */
    int leader;        /* -1 unknown */
    char *config;      /* config-get, serialised (sorted keys) */
    bool status_known; /* status/message below were set successfully */
    char status[16];
    char message[512];
    char version[32]; /* application-version-set value */
    bool have_pg;      /* pg below is what the last full pass found installed */
    struct pg_install pg;
} last = {.leader = -1};

void reconcile_invalidate(void)
{
    last.full_ok = false;
    free(last.config);
    last.config = NULL;
    last.leader = -1;
}

void model_facts_free(struct model_facts *facts)
{
    if (!facts)
        return;
    json_decref(facts->config);
    *facts = (struct model_facts){0};
}

int model_facts_read(const struct hook_event *ev, struct model_facts *out, char **err)
{
    *out = (struct model_facts){0};

    const char *leader_argv[] = {"is-leader", NULL};
    json_t *leader = NULL;
    if (hooktool_json(ev, leader_argv, &leader, err) < 0)
        return -1;
    if (!json_is_boolean(leader)) {
        json_decref(leader);
        return errmsg_set(err, -1, "is-leader answered something other than true or false");
    }
    out->is_leader = json_is_true(leader);
    json_decref(leader);

    const char *config_argv[] = {"config-get", NULL};
    json_t *config = NULL;
    if (hooktool_json(ev, config_argv, &config, err) < 0)
        return -1;
    if (!json_is_object(config)) {
        json_decref(config);
        return errmsg_set(err, -1, "config-get answered something other than a JSON object");
    }
    out->config = config;
    return 0;
}

static void want(struct unit_status *st, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Set the wanted status unless a more important one is already wanted (blocked >
 * maintenance > waiting > active). */
static void want(struct unit_status *st, const char *status, const char *fmt, ...)
{
    static const char *const order[] = {"active", "waiting", "maintenance", "blocked"};
    int have = -1, now = -1;
    for (int i = 0; i < 4; i++) {
        if (st->status && strcmp(st->status, order[i]) == 0)
            have = i;
        if (strcmp(status, order[i]) == 0)
            now = i;
    }
    if (now < have)
        return;
    if (now == have && now > 0 && st->message[0]) {
        /* Several problems of the same weight: say them all. */
        size_t len = strlen(st->message);
        va_list ap;
        va_start(ap, fmt);
        if (len + 3 < sizeof st->message) {
            memcpy(st->message + len, "; ", 3);
            (void)vsnprintf(st->message + len + 2, sizeof st->message - len - 2, fmt, ap);
        }
        va_end(ap);
        return;
    }
    st->status = status;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
}

/* status-set, skipped when the unit already shows exactly this. */
static int set_status(const struct hook_event *ev, const struct unit_status *st, char **err)
{
    if (last.status_known && strcmp(last.status, st->status) == 0 &&
        strcmp(last.message, st->message) == 0)
        return 0;
    if (hooktool_status_set(ev, st->status, st->message, err) < 0) {
        last.status_known = false;
        return -1;
    }
    snprintf(last.status, sizeof last.status, "%s", st->status);
    snprintf(last.message, sizeof last.message, "%s", st->message);
    last.status_known = true;
    return 0;
}

/* Tell the operator (status) while a slow step runs. */
static void progress(const struct hook_event *ev, const char *message)
{
    struct unit_status st = {.status = "maintenance"};
    snprintf(st.message, sizeof st.message, "%s", message);
    char *err = NULL;
    if (set_status(ev, &st, &err) < 0)
        log_warning("%s", ERRMSG(err));
    free(err);
}

static long ram_mb(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || size <= 0)
        return 1024;
    long long mb = (long long)pages * size / (1024LL * 1024);
    return mb < 1 ? 1 : mb > PGCONF_MAX_RAM_MB ? PGCONF_MAX_RAM_MB : (long)mb;
}

static int cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > PGCONF_MAX_CPUS ? PGCONF_MAX_CPUS : (int)n;
}

int reconcile_connect(struct pg_install *pg, PGconn **conn, char **err)
{
    *conn = NULL;
    if (pg_detect(pg, err) < 0)
        return -1;
    bool ready;
    if (!pg_initialised(pg) || pg_running(pg, &ready) <= 0 || !ready)
        return errmsg_set(err, -ESRCH, "PostgreSQL is not running on this unit");
    return db_connect(PG_SOCKET_DIR, PG_PORT, conn, err);
}

/* The packages exist (PostgreSQL and etcd) and no distro cluster runs. The charm's own
 * cluster is the HA loop's to create (bootstrap) or clone. */
static int ensure_packages(const struct hook_event *ev, struct pg_install *pg, char **err)
{
    int rc = pg_detect(pg, err);
    if (rc == -ENOENT || access(ETCD_BIN, X_OK) != 0) {
        progress(ev, "installing PostgreSQL and etcd");
        if (pg_install_packages(err) < 0)
            return -1;
        rc = pg_detect(pg, err);
    }
    if (rc < 0)
        return -1;
    if (pg_disable_distro_clusters(err) < 0)
        return -1;
    static bool exporter_tried; /* once per agent: a mirror without it costs no pass */
    if (access(EXPORTER_BIN, X_OK) != 0 && !exporter_tried) {
        exporter_tried = true;
        progress(ev, "installing the metrics exporter");
        char *e2 = NULL;
        if (pg_install_exporter(&e2) < 0)
            log_warning("no metrics exporter (PostgreSQL runs without it): %s", ERRMSG(e2));
        free(e2);
    }
    return 0;
}

/* One rendered file: write it, keeping the old content for a rollback. */
struct conf_file {
    const char *name;
    char *want;
    char *old;
    bool changed;
};

static void conf_files_free(struct conf_file *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].want);
        free(f[i].old);
    }
}

static void rollback(const struct pg_install *pg, struct conf_file *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!f[i].changed || !f[i].old)
            continue;
        char *err = NULL;
        if (pg_write_file(pg, f[i].name, f[i].old, &err) < 0)
            log_error("cannot restore %s: %s", f[i].name, ERRMSG(err));
        free(err);
    }
}

static bool tls_active; /* this pass: tls_converge installed the provider's certificate */

/* The expiry of the certificates in use, for /metrics: the peer identity, the one clients
 * see (the provider's when active, else the internal one) and the internal CA. */
static void note_cert_expiry(void)
{
    static const struct {
        enum metrics_cert which;
        const char *path;
    } certs[] = {{METRICS_CERT_PEER, NULL},
                 {METRICS_CERT_CLIENT, TLS_CLIENT_CERT},
                 {METRICS_CERT_CA, NULL}};
    for (size_t i = 0; i < sizeof certs / sizeof *certs; i++) {
        const char *path = certs[i].which == METRICS_CERT_PEER ? pki_peer_agent.cert
                           : certs[i].which == METRICS_CERT_CA ? pki_agent.ca
                           : tls_active ? certs[i].path : pki_pg.cert;
        char *pem = NULL, *e = NULL;
        struct x509_info info;
        time_t t = 0;
        if (pki_read_file(path, false, &pem, &e) == 0 && pem &&
            x509_cert_info(pem, &info, &e) == 0)
            t = info.not_after;
        metrics_set_cert_expiry(certs[i].which, t);
        free(pem);
        free(e);
    }
}

/* A replication connection reads its client certificate when it connects: after a new peer
 * identity the WAL receiver goes (SIGTERM, as an administrator's command) and the startup
 * process starts another within wal_retrieve_retry_interval, with the new certificate.
 * PostgreSQL itself keeps running. */
static void reconnect_walreceiver(void)
{
    PGconn *c = NULL;
    char *err = NULL;
    long pid = 0;
    if (db_connect(PG_SOCKET_DIR, PG_PORT, &c, &err) == 0 &&
        db_walreceiver_pid(c, &pid, &err) == 0 && pid > 0) {
        if (kill((pid_t)pid, SIGTERM) == 0)
            log_info("replication reconnects with the new peer certificate (WAL receiver %ld "
                     "restarted)", pid);
        else
            log_warning("cannot restart the WAL receiver %ld: %s", pid, strerror(errno));
    } else if (err) {
        log_warning("cannot find the WAL receiver: %s", ERRMSG(err));
    }
    free(err);
    db_close(c);
}

static void host_facts_of(const struct pg_install *pg, bool tls, struct host_facts *h)
{
    *h = (struct host_facts){.ram_mb = ram_mb(), .cpus = cpus(), .major = pg->major,
                             .data_dir = pg->datadir, .socket_dir = PG_SOCKET_DIR,
                             .port = PG_PORT, .include = HA_CONF_FILE};
    if (tls) {
        /* the provider's certificate once tls.c installed it, else the internal one; the
         * trust bundle (internal CA + provider CAs) once written */
        bool provider = tls_active && access(TLS_CLIENT_CERT, R_OK) == 0 &&
                        access(TLS_CLIENT_KEY, R_OK) == 0;
        h->tls_cert = provider ? TLS_CLIENT_CERT : pki_pg.cert;
        h->tls_key = provider ? TLS_CLIENT_KEY : pki_pg.key;
        h->tls_ca = pki_peer_pg.ca; /* client certificates: the peers' (replication, rewind) */
    }
}

/* postgresql.conf, pg_hba.conf, pg_ident.conf as they should be (out[3], malloc'd).
 * Returns 0; 1 when a setting cannot work here (blocked, said in st); -1 on failure. */
static int render_conf(const struct pg_install *pg, const struct pg_settings *s,
                       const struct peers_view *pv, bool tls, const struct clients_view *cv,
                       char *out[3], struct unit_status *st, char **err)
{
    struct host_facts h;
    host_facts_of(pg, tls, &h);
    char *why = NULL;
    if (pgconf_render_conf(s, &h, &out[0], &why) < 0) {
        want(st, "blocked", "%s", ERRMSG(why));
        free(why);
        return 1;
    }
    const char *addrs[PEERS_MAX + 1];
    size_t n = 0;
    if (pv->my_address[0])
        addrs[n++] = pv->my_address;
    for (size_t i = 0; i < pv->n; i++)
        if (pv->units[i].address[0])
            addrs[n++] = pv->units[i].address;
    if (pgconf_render_hba(s, tls, addrs, n, cv->rules, cv->n_rules, &out[1], err) < 0 ||
        pgconf_render_ident(pv->app, &out[2], err) < 0)
        return -1;
    return 0;
}

/* Apply the rendered files. A running server is checked against the new files before it
 * reloads them; files it rejects are rolled back (status blocked, the server keeps
 * serving). Settings that need a restart are left to the HA loop's rolling restart
 * (*restart tells the caller). */
static int apply_config(const struct pg_install *pg, char *const rendered[3], bool *restart_needed,
                        bool *loaded, struct unit_status *st, char **err)
{
    *loaded = false;
    struct conf_file f[3] = {{.name = "postgresql.conf"}, {.name = "pg_hba.conf"},
                             {.name = "pg_ident.conf"}};
    int rc = -1;
    *restart_needed = false;
    for (int i = 0; i < 3; i++) {
        f[i].want = strdup(rendered[i]);
        if (!f[i].want) {
            errmsg_format(err, "out of memory");
            goto out;
        }
    }
    bool any = false;
    for (size_t i = 0; i < 3; i++) {
        if (pg_read_file(pg, f[i].name, &f[i].old, err) < 0)
            goto out;
        int w = pg_write_file(pg, f[i].name, f[i].want, err);
        if (w < 0) {
            rollback(pg, f, i);
            goto out;
        }
        f[i].changed = w > 0;
        any = any || f[i].changed;
    }
    bool ready;
    if (!any || pg_running(pg, &ready) <= 0) {
        rc = 0; /* not running: it starts with these files */
        *loaded = !any;
        goto out;
    }
    PGconn *conn = NULL;
    if (db_connect(PG_SOCKET_DIR, PG_PORT, &conn, err) < 0)
        goto out;
    char *bad = NULL;
    if (db_config_file_error(conn, &bad, err) < 0) {
        db_close(conn);
        goto out;
    }
    if (bad) {
        rollback(pg, f, 3);
        log_error("PostgreSQL rejects the new configuration (%s): kept the previous one", bad);
        want(st, "blocked", "configuration rejected by PostgreSQL: %s", bad);
        free(bad);
        db_close(conn);
        rc = 0;
        goto out;
    }
    rc = db_reload_and_check(conn, RELOAD_WAIT_MS, restart_needed, err);
    db_close(conn);
    if (rc == 0) {
        log_info("configuration reloaded");
        *loaded = true;
    }
out:
    conf_files_free(f, 3);
    return rc < 0 ? -1 : 0;
}

/* The version shown by `juju status`, set when it changes. */
static void set_version(const struct hook_event *ev, PGconn *conn)
{
    char version[32];
    char *err = NULL;
    if (db_server_version(conn, version, sizeof version, &err) == 0 &&
        strcmp(version, last.version) != 0) {
        const char *argv[] = {"application-version-set", "--", version, NULL};
        if (hooktool_check(ev, argv, &err) == 0)
            snprintf(last.version, sizeof last.version, "%s", version);
    }
    if (err)
        log_warning("application version: %s", err);
    free(err);
}

/* The system-users secret, when configured, read into out. */
static int read_user_secret(const struct hook_event *ev, const struct pg_settings *s,
                            struct creds *out, char **err)
{
    char uri[SETTINGS_SECRET_ID_LEN + 16];
    snprintf(uri, sizeof uri, "secret:%s", s->system_users_id);
    json_t *content = NULL;
    int rc = hooktool_secret_get(ev, uri, NULL, &content, NULL);
    if (rc == -ENOENT)
        return errmsg_set(err, -ENOENT, "system-users: secret %s not found (create it with "
                                        "`juju add-secret`)", s->system_users);
    if (rc == -EACCES)
        return errmsg_set(err, -EACCES, "system-users: secret %s is not granted to this "
                                        "application (run `juju grant-secret %s <app>`)",
                          s->system_users, s->system_users);
    if (rc < 0)
        return errmsg_set(err, -EIO, "system-users: secret %s cannot be read", s->system_users);
    char *why = NULL;
    rc = creds_from_user_secret(content, out, &why);
    json_decref(content);
    if (rc < 0) {
        errmsg_format(err, "system-users: secret %s: %s", s->system_users, ERRMSG(why));
        free(why);
        return rc;
    }
    return 0;
}

void creds_view_clear(struct creds_view *v)
{
    creds_clear(&v->have);
    creds_clear(&v->want);
    free(v->uri);
    *v = (struct creds_view){0};
}

int reconcile_read_creds(const struct hook_event *ev, const struct pg_settings *s,
                         struct creds_view *v, char **user_err, char **err)
{
    *v = (struct creds_view){0};
    if (creds_peer_relation(ev, v->peer, sizeof v->peer, err) < 0)
        return -1;
    int rc = creds_read_internal(ev, v->peer, &v->have, &v->uri, err);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    for (int i = 0; i < N_SYSTEM_USERS; i++)
        if (v->have.pw[i] && creds_set(&v->want, i, v->have.pw[i]) < 0)
            return errmsg_set(err, -ENOMEM, "out of memory");
    if (s && s->system_users_id[0]) {
        struct creds user = {0};
        if (read_user_secret(ev, s, &user, user_err) == 0) {
            for (int i = 0; i < N_SYSTEM_USERS; i++) {
                if (!user.pw[i])
                    continue;
                v->managed[i] = true;
                if (creds_set(&v->want, i, user.pw[i]) < 0) {
                    creds_clear(&user);
                    return errmsg_set(err, -ENOMEM, "out of memory");
                }
            }
        }
        creds_clear(&user);
    }
    return rc;
}

/* Passwords: the leader keeps the internal secret complete and in line with the
 * system-users secret; every unit running a primary applies them. */
static int converge_credentials(const struct hook_event *ev, bool leader,
                                const struct pg_settings *s, bool primary,
                                struct unit_status *st, char **err)
{
    struct creds_view v;
    char *why = NULL;
    int rc = reconcile_read_creds(ev, s, &v, &why, err);
    if (why)
        want(st, "blocked", "%s", why);
    free(why);
    if (rc < 0 && rc != -ENOENT)
        goto out;
    if (rc == -ENOENT && !leader) {
        want(st, "waiting", "waiting for the leader to create the system users' passwords");
        rc = 0;
        goto out;
    }
    if (leader) {
        for (int i = 0; i < N_SYSTEM_USERS; i++) {
            if (v.want.pw[i])
                continue;
            if (password_generate(&v.want.pw[i], err) < 0) {
                rc = -1;
                goto out;
            }
        }
        rc = creds_write_internal(ev, v.peer, v.uri, &v.have, &v.want, err);
        if (rc < 0)
            goto out;
    }
    rc = 0;
    if (primary && creds_apply_isolated(PG_SOCKET_DIR, PG_PORT, &v.want, err) < 0)
        rc = -1;
out:
    creds_view_clear(&v);
    return rc;
}

/* What a client verifies the servers with (tls-ca): the client-certificates provider's CAs
 * while its certificate is in use, and the internal CA (the certificate of any unit that has
 * not switched yet, or of all of them without a provider). malloc'd; NULL when unknown. */
static char *client_ca_bundle(const struct tls_state *tst)
{
    char *internal = NULL;
    char *e = NULL;
    if (pki_read_file(pki_pg.ca, false, &internal, &e) < 0)
        log_warning("internal CA: %s", ERRMSG(e));
    free(e);
    const char *provider = tst->client.active ? tst->client.ca : "";
    char *out = NULL;
    if (asprintf(&out, "%s%s%s", provider, provider[0] && internal ? "\n" : "",
                 internal ? internal : "") < 0)
        out = NULL;
    free(internal);
    return out;
}

/* This unit left the cluster (its removal started): no pass restarts anything. */
static bool has_left;

/* The quick pass: nothing changed in the model since a good full pass. */
static bool quick_pass_possible(const struct model_facts *f, const char *config)
{
    return last.full_ok && last.leader == (int)f->is_leader && last.config &&
           strcmp(last.config, config) == 0;
}

/* Status from what the HA loop sees; restart_pending: this pass's reload left a setting
 * waiting for a restart (the HA loop may not have read it yet). */
static void ha_status(struct unit_status *st, bool restart_pending)
{
    struct ha_snapshot snap;
    ha_snapshot_get(&snap);
    const char *role = snap.role == HA_ROLE_PRIMARY        ? "Primary"
                       : snap.role == HA_ROLE_SYNC_STANDBY ? "Sync standby"
                       : snap.role == HA_ROLE_REPLICA      ? "Replica"
                                                           : NULL;
    if (snap.problem[0])
        want(st, snap.blocked ? "blocked" : "waiting", "%s", snap.problem);
    else if (!role)
        want(st, "waiting", "%s", snap.reason[0] ? snap.reason : "waiting for the HA loop");
    else if (snap.role != HA_ROLE_PRIMARY && !snap.streaming)
        want(st, "waiting", "%s, not streaming from %s yet", role,
             snap.leader[0] ? snap.leader : "a primary");
    else if (restart_pending || snap.restart_pending)
        want(st, "active", "%s (restart pending for a changed setting)", role);
    else
        want(st, "active", "%s", role);
}

/* A patronictl configuration for operators (and the tests): Patroni's own tool reads the
 * cluster from etcd with the agent's client certificate. Root only. */
#define PATRONICTL_CONF "/var/lib/pg-agent/patronictl.yaml"
static void write_patronictl_conf(const struct peers_view *pv)
{
    char *text = NULL;
    if (asprintf(&text,
                 "# written by pg-agent: patronictl -c %s list\n"
                 "scope: %s\nnamespace: %s\n"
                 "etcd3:\n  hosts: ['127.0.0.1:%d']\n  protocol: https\n"
                 "  cacert: %s\n  cert: %s\n  key: %s\n",
                 PATRONICTL_CONF, pv->app, HA_NAMESPACE, ETCD_CLIENT_PORT, pki_peer_agent.ca,
                 pki_peer_agent.cert, pki_peer_agent.key) < 0)
        return;
    char tmp[] = PATRONICTL_CONF ".new";
    FILE *f = fopen(tmp, "we");
    if (f) {
        bool ok = fputs(text, f) >= 0;
        ok = fclose(f) == 0 && ok;
        if (!ok || chmod(tmp, 0600) < 0 || rename(tmp, PATRONICTL_CONF) < 0)
            (void)unlink(tmp);
    }
    free(text);
}

static int planned_units(const struct peers_view *pv)
{
    return (int)pv->n + 1;
}

/* This unit is leaving (its peer relation departs, or it stops). */
static bool leaving(const struct hook_event *ev)
{
    if (ev->kind != EVENT_HOOK)
        return false;
    if (strcmp(ev->name, "stop") == 0)
        return true;
    const char *departing = request_env(ev, "JUJU_DEPARTING_UNIT");
    return strcmp(ev->name, PEERS_ENDPOINT "-relation-departed") == 0 && departing &&
           strcmp(departing, ev->unit) == 0;
}

int reconcile_run(const struct hook_event *ev, bool full)
{
    struct model_facts facts;
    struct unit_status st = {.status = "active"};
    struct pg_install pg;
    struct pg_settings settings;
    struct peers_view pv;
    bool settings_ok = false;
    PGconn *conn = NULL;
    struct clients_view *cv = NULL;
    char *config = NULL;
    char *rendered[3] = {NULL, NULL, NULL};
    char *err = NULL;
    int code = 1;

    if (model_facts_read(ev, &facts, &err) < 0) {
        log_error("reconcile: %s", ERRMSG(err));
        goto out;
    }
    config = json_dumps(facts.config, JSON_SORT_KEYS | JSON_COMPACT);
    if (!config) {
        log_error("out of memory");
        goto out;
    }
    if (!full && quick_pass_possible(&facts, config)) {
        ha_status(&st, false);
        if (strcmp(st.status, "active") == 0) {
            code = set_status(ev, &st, &err) < 0 ? 1 : 0;
            if (code)
                log_error("reconcile: %s", ERRMSG(err));
            goto out;
        }
        st = (struct unit_status){.status = "active"};
    }
    last.full_ok = false;

    char *why = NULL;
    if (settings_parse(facts.config, &settings, &why) < 0) {
        want(&st, "blocked", "%s", ERRMSG(why));
        log_warning("%s", ERRMSG(why));
    } else {
        settings_ok = true;
    }
    free(why);

    if (ensure_packages(ev, &pg, &err) < 0)
        goto failed;
    last.pg = pg;
    last.have_pg = true;
    if (peers_read(ev, &pv, &err) < 0)
        goto failed;
    if (leaving(ev) || has_left) {
        if (!has_left) {
            progress(ev, "leaving the cluster");
            ha_leave(30000);
            cluster_leave(&pv);
            exporter_stop();
            has_left = true; /* nothing restarts here any more: the unit is going away */
        }
        want(&st, "maintenance", "left the cluster; the unit is being removed");
        goto done;
    }

    if (ev->kind == EVENT_HOOK && strcmp(ev->name, "install") == 0) {
        /* Before relation-created the unit cannot write the peer databags yet: the
         * cluster forms from the next hook on. */
        want(&st, "waiting", "waiting for the peer relation");
        goto done;
    }
    bool changed = false;
    int rc = pki_converge(ev, &pv, facts.is_leader, &changed, &err);
    if (rc == -EAGAIN) {
        want(&st, "waiting", "%s", ERRMSG(err));
        goto done;
    }
    if (rc < 0)
        goto failed;
    struct tls_state tst;
    rc = tls_converge(ev, &pv, &settings, &tst, &changed, &err);
    if (rc < 0)
        goto failed;
    tls_active = tst.client.active;
    if (tst.peer.message[0])
        want(&st, "blocked", "%s", tst.peer.message);
    else if (tst.client.message[0])
        want(&st, "blocked", "%s", tst.client.message);
    time_t renew_at = tst.client.renew_at;
    if (tst.peer.renew_at > 0 && (renew_at == 0 || tst.peer.renew_at < renew_at))
        renew_at = tst.peer.renew_at;
    if (renew_at > 0) {
        time_t now = time(NULL);
        long long ms = renew_at > now ? (long long)(renew_at - now) * 1000 + 1000 : 1000;
        ha_poke_later(ms > 12LL * 3600 * 1000 ? 12 * 3600 * 1000 : (int)ms);
    }
    if (tst.peer_waiting)
        ha_poke_later(3000); /* the peers' trust comes with their hooks; the wait has an end */
    struct cluster_state cs;
    if (cluster_converge(ev, &pv, facts.is_leader, &cs, &err) < 0)
        goto failed;
    if (!cs.running) {
        want(&st, "waiting", "%s", cs.message);
        ha_poke_later(5000); /* try again soon, not at the next update-status */
        goto done;
    }
    if (cs.pending)
        ha_poke_later(3000); /* the next unit joins etcd once the learner caught up */
    write_patronictl_conf(&pv);
    bool exporting = false;
    {
        /* metrics: not worth failing the pass for (PostgreSQL does not need them) */
        char *e2 = NULL;
        if (exporter_converge(pv.my_address, ev->charm_dir, &exporting, &e2) < 0)
            log_warning("metrics exporter: %s", ERRMSG(e2));
        free(e2);
        note_cert_expiry();
    }
    if (!settings_ok) {
        want(&st, "blocked", "not changing PostgreSQL until the configuration is valid");
        goto done;
    }
    /* the local server, when it runs: its login roles (pg_hba.conf), its version */
    bool ready = false;
    if (pg_initialised(&pg) && pg_running(&pg, &ready) > 0 && ready) {
        char *e2 = NULL;
        if (db_connect(PG_SOCKET_DIR, PG_PORT, &conn, &e2) < 0)
            log_warning("%s", ERRMSG(e2));
        free(e2);
    }
    cv = calloc(1, sizeof *cv);
    if (!cv) {
        errmsg_format(&err, "out of memory");
        goto failed;
    }
    if (clients_read(ev, &pv, facts.is_leader, conn, cv, &err) < 0)
        goto failed;
    if (cv->message[0])
        want(&st, "blocked", "%s", cv->message);
    rc = render_conf(&pg, &settings, &pv, true, cv, rendered, &st, &err);
    if (rc < 0)
        goto failed;
    if (rc > 0)
        goto done;

    struct ha_params hp = {0};
    snprintf(hp.name, sizeof hp.name, "%s", pv.me);
    snprintf(hp.scope, sizeof hp.scope, "%s", pv.app);
    snprintf(hp.unit, sizeof hp.unit, "%s", ev->unit);
    snprintf(hp.address, sizeof hp.address, "%s", pv.my_address);
    snprintf(hp.charm_dir, sizeof hp.charm_dir, "%s", ev->charm_dir ? ev->charm_dir : "");
    hp.pg = pg;
    hp.ttl_s = (int)settings.ha_lease_ttl_s;
    hp.renew_ms = (int)settings.ha_renew_ms;
    hp.planned_units = planned_units(&pv);
    hp.sync_count = settings.sync_node_count == SETTINGS_SYNC_ALL        ? hp.planned_units - 1
                    : settings.sync_node_count == SETTINGS_SYNC_MAJORITY ? hp.planned_units / 2
                                                                         : settings.sync_node_count;
    hp.sync_strict = settings.sync_strict;
    hp.watchdog_mode = (int)settings.ha_watchdog;
    hp.juju_leader = facts.is_leader;
    for (size_t i = 0; i < pv.n && hp.n_peer_addrs < PEERS_MAX; i++)
        if (pv.units[i].address[0])
            snprintf(hp.peer_addrs[hp.n_peer_addrs++], PEERS_ADDR_MAX, "%s", pv.units[i].address);
    for (int i = 0; i < 3; i++)
        hp.conf[i] = rendered[i];
    if (ha_configure(&hp, &err) < 0)
        goto failed;

    bool restart_pending = false;
    bool hba_loaded = false;
    if (conn) {
        if (apply_config(&pg, rendered, &restart_pending, &hba_loaded, &st, &err) < 0)
            goto failed;
        if (changed) {
            char *e2 = NULL;
            if (pg_reload(&pg, &e2) < 0)
                log_warning("reload for the new certificate: %s", ERRMSG(e2));
            free(e2);
        }
    }
    if (cs.tls_pending)
        ha_poke_later(3000); /* etcd restarts for its new certificates once its turn comes */
    if (tls_publish_trust(ev, &pv, !cs.tls_pending, &err) < 0)
        goto failed;
    struct ha_snapshot snap;
    ha_snapshot_get(&snap);
    bool primary = snap.role == HA_ROLE_PRIMARY;
    if (tst.peer_changed && snap.pg_running && !primary) {
        reconnect_walreceiver();
        ha_poke_later(2000); /* the status again once it streams */
    }
    if (primary && conn)
        set_version(ev, conn);
    if (snap.pg_running) {
        const char *port_argv[] = {"open-port", "5432/tcp", NULL};
        if (hooktool_check(ev, port_argv, &err) < 0)
            goto failed;
    }
    if (converge_credentials(ev, facts.is_leader, &settings, primary, &st, &err) < 0)
        goto failed;
    if (clients_converge_unit(ev, &pv, cv, hba_loaded, primary && conn, snap.generation,
                              &err) < 0)
        goto failed;
    if (facts.is_leader) {
        char *ca = client_ca_bundle(&tst);
        int prc = clients_publish(ev, &pv, cv, &snap, ca, conn, &err);
        free(ca);
        if (prc < 0)
            goto failed;
    }
    {
        /* the COS agent's view: not worth failing the pass for either; tried again soon */
        static int cos_retry_ms = 30000; /* doubles to 30 min while it keeps failing */
        char *e2 = NULL;
        if (cos_publish(ev, pv.app, pv.my_address, exporting, &e2) < 0) {
            log_warning("cos-agent: %s (again in %d s)", ERRMSG(e2), cos_retry_ms / 1000);
            ha_poke_later(cos_retry_ms);
            cos_retry_ms = cos_retry_ms >= 900000 ? 1800000 : cos_retry_ms * 2;
        } else {
            cos_retry_ms = 30000;
        }
        free(e2);
    }
    ha_status(&st, restart_pending);

done:
    if (set_status(ev, &st, &err) < 0)
        goto failed;
    code = 0;
    if (strcmp(st.status, "active") == 0) {
        last.full_ok = true;
        last.leader = facts.is_leader;
        free(last.config);
        last.config = config;
        config = NULL;
    }
    goto out;

failed:
    log_error("reconcile: %s", ERRMSG(err));
    /* Juju retries a failed hook, but nothing retries a failed agent-raised event
     * (juju-exec): ask for another pass, as the status promises */
    ha_poke_later(5000);
    {
        /* Say what failed; the hook fails too, so Juju retries it. */
        struct unit_status bad = {.status = "maintenance"};
        snprintf(bad.message, sizeof bad.message, "retrying: %s", ERRMSG(err));
        char *e2 = NULL;
        if (set_status(ev, &bad, &e2) < 0)
            log_warning("%s", ERRMSG(e2));
        free(e2);
    }
out:
    db_close(conn);
    if (cv)
        clients_view_clear(cv);
    free(cv);
    model_facts_free(&facts);
    for (int i = 0; i < 3; i++)
        free(rendered[i]);
    free(config);
    free(err);
    return code;
}

void reconcile_supervise(void)
{
    /* PostgreSQL and etcd are the HA loop's to supervise (ha.c, cluster.c); the metrics
     * exporter is this loop's */
    exporter_supervise();
}
