/* etcd membership that follows the peer relation, and the local etcd member as a
 * supervised workload (cluster.h). */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "cluster.h"

#include "errmsg.h"
#include "log.h"
#include "pki.h"
#include "proc.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_TIMEOUT_MS 3000
#define START_WAIT_MS 15000
#define TLS_RESTART_TTL_S 30  /* the restart token's lease: a holder that dies lets go */
#define TLS_RESTART_WAIT_S 20 /* without an answer from etcd, restart anyway after this */

/* The local member's command line, shared with the HA thread's supervisor. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool known; /* argv below is what the local member should run with */
    bool forcing; /* force-promote restarts it: the supervisor keeps off */
    struct etcd_argv argv;
    char data_dir[PATH_MAX];
} local;

void cluster_peer_url(const char *address, char *buf, size_t size)
{
    bool v6 = strchr(address, ':') != NULL;
    snprintf(buf, size, v6 ? "https://[%s]:%d" : "https://%s:%d", address, ETCD_PEER_PORT);
}

int cluster_client(int timeout_ms, struct etcd_client **out, char **err)
{
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", ETCD_CLIENT_PORT);
    struct etcd_config cfg = {.endpoints = {url}, .n_endpoints = 1,
                              .ca_file = pki_peer_agent.ca, .cert_file = pki_peer_agent.cert,
                              .key_file = pki_peer_agent.key, .timeout_ms = timeout_ms};
    return etcd_client_new(&cfg, out, err);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* /var/lib/etcd exists and belongs to etcd (the package makes it so on a real machine). */
static void ensure_data_base(void)
{
    const struct passwd *pw = getpwnam("etcd");
    if (mkdir(ETCD_DATA_BASE, 0700) < 0 && errno != EEXIST)
        return;
    if (pw && chown(ETCD_DATA_BASE, pw->pw_uid, pw->pw_gid) < 0)
        log_warning("cannot give %s to etcd: %s", ETCD_DATA_BASE, strerror(errno));
}

/* Start the local member if it does not run, then wait until it answers. */
static int start_local(char **err)
{
    pthread_mutex_lock(&lock);
    struct etcd_argv argv = local.argv;
    bool known = local.known;
    pthread_mutex_unlock(&lock);
    if (!known)
        return errmsg_set(err, -EINVAL, "the local etcd member is not configured");
    if (etcd_running(CLUSTER_PID_FILE) > 0)
        return 0;
    /* argv.argv points into argv.store of the copy's original: rebase the pointers. */
    for (size_t i = 0; i < ETCD_ARGV_MAX && argv.argv[i]; i++)
        argv.argv[i] = argv.store + (argv.argv[i] - local.argv.store);
    ensure_data_base();
    pid_t pid = etcd_start(&argv, CLUSTER_PID_FILE, CLUSTER_LOG_FILE, err);
    return pid < 0 ? (int)pid : 1;
}

/* Stop the local member: SIGTERM, SIGKILL after wait_ms. */
static void stop_local(int wait_ms)
{
    pid_t pid = etcd_running(CLUSTER_PID_FILE);
    if (pid <= 0)
        return;
    (void)kill(pid, SIGTERM);
    for (int w = 0; w < wait_ms / 100 && etcd_running(CLUSTER_PID_FILE) > 0; w++)
        proc_sleep_ms(100);
    if (etcd_running(CLUSTER_PID_FILE) > 0)
        (void)kill(pid, SIGKILL);
}

static bool local_healthy(int wait_ms)
{
    struct etcd_client *c = NULL;
    if (cluster_client(1000, &c, NULL) < 0)
        return false;
    bool ok = false;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct etcd_status s = {0};
        ok = etcd_status(c, 0, &s, NULL) == 0;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long waited = (t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L;
        /* a process started a moment ago may not have exec'd etcd yet (its /proc exe is
         * still ours): only a second later does "not etcd" mean it died */
        if (ok || waited >= wait_ms || (waited >= 1000 && etcd_running(CLUSTER_PID_FILE) <= 0))
            break;
        proc_sleep_ms(250);
    }
    etcd_client_free(c);
    return ok;
}

/* Configure the local member from the published list. */
static int configure_local(const struct peers_view *pv, char **err)
{
    bool alone = pv->cluster.n == 1 && strcmp(pv->cluster.members[0].name, pv->me) == 0;
    struct etcd_spec spec = {.name = pv->me, .ip = pv->my_address, .scope = pv->app,
                             .token = pv->token, .existing = !alone, .initial = &pv->cluster,
                             .cert = pki_etcd.cert, .key = pki_etcd.key, .ca = pki_etcd.ca};
    struct etcd_argv argv;
    if (etcd_argv_build(&spec, &argv, err) < 0)
        return -1;
    pthread_mutex_lock(&lock);
    local.argv = argv;
    for (size_t i = 0; i < ETCD_ARGV_MAX && argv.argv[i]; i++)
        local.argv.argv[i] = local.argv.store + (argv.argv[i] - argv.store);
    local.known = true;
    snprintf(local.data_dir, sizeof local.data_dir, "%s/%s", ETCD_DATA_BASE, pv->app);
    pthread_mutex_unlock(&lock);
    return 0;
}

/* The unit (this one or a peer) whose address gives this peer URL; NULL if none. */
static const char *member_for_url(const struct peers_view *pv, const char *url)
{
    char mine[ETCD_URL_MAX];
    cluster_peer_url(pv->my_address, mine, sizeof mine);
    if (pv->my_address[0] && strcmp(url, mine) == 0)
        return pv->me;
    for (size_t i = 0; i < pv->n; i++) {
        char u[ETCD_URL_MAX];
        if (!pv->units[i].address[0])
            continue;
        cluster_peer_url(pv->units[i].address, u, sizeof u);
        if (strcmp(u, url) == 0)
            return pv->units[i].member;
    }
    return NULL;
}

/* Leader: make the etcd membership follow the relation, one change at a time, and publish
 * the member list. */
static int manage_members(const struct hook_event *ev, const struct peers_view *pv,
                          struct cluster_state *st, char **err)
{
    struct etcd_client *c = NULL;
    if (cluster_client(CLIENT_TIMEOUT_MS, &c, err) < 0)
        return -1;
    struct etcd_members m = {0};
    int rc = etcd_member_list(c, &m, err);
    if (rc < 0) {
        snprintf(st->message, sizeof st->message, "etcd does not answer: %s", ERRMSG(*err));
        goto out;
    }
    bool learner = false;
    /* Departed units leave first. */
    for (size_t i = 0; i < m.n; i++) {
        const char *url = m.members[i].n_peer_urls ? m.members[i].peer_urls[0] : "";
        learner = learner || m.members[i].is_learner;
        if (member_for_url(pv, url))
            continue;
        char *why = NULL;
        if (etcd_member_remove(c, m.members[i].id, &why) == 0)
            log_info("removed etcd member %s (%s): its unit left", m.members[i].name, url);
        else
            log_warning("cannot remove etcd member %s: %s", url, ERRMSG(why));
        free(why);
        st->pending = true;
    }
    if (!st->pending) {
        for (size_t i = 0; i < pv->n; i++) {
            const struct peer_unit *u = &pv->units[i];
            if (!u->address[0])
                continue;
            char url[ETCD_URL_MAX];
            cluster_peer_url(u->address, url, sizeof url);
            bool present = false;
            for (size_t j = 0; j < m.n && !present; j++)
                present = m.members[j].n_peer_urls &&
                          strcmp(m.members[j].peer_urls[0], url) == 0;
            if (present)
                continue;
            st->pending = true;
            if (learner) {
                snprintf(st->message, sizeof st->message,
                         "adding %s to etcd after the current learner caught up", u->unit);
                break;
            }
            const char *urls[] = {url};
            uint64_t id = 0;
            struct etcd_members after = {0};
            char *why = NULL;
            rc = etcd_member_add(c, urls, 1, true, &id, &after, &why);
            etcd_members_clear(&after);
            if (rc < 0) {
                snprintf(st->message, sizeof st->message, "etcd refused to add %s (%s): retrying",
                         u->unit, ERRMSG(why));
                log_warning("%s", st->message);
                free(why);
                break;
            }
            log_info("added %s to etcd as a learner (%s)", u->unit, url);
            break;
        }
        etcd_members_clear(&m);
        rc = etcd_member_list(c, &m, err);
        if (rc < 0)
            goto out;
    }
    /* Publish the list: every member by its unit's name. */
    struct etcd_cluster list = {0};
    for (size_t i = 0; i < m.n && list.n < ETCD_MAX_MEMBERS; i++) {
        const char *url = m.members[i].n_peer_urls ? m.members[i].peer_urls[0] : "";
        const char *name = member_for_url(pv, url);
        if (!name)
            continue;
        snprintf(list.members[list.n].name, sizeof list.members[list.n].name, "%s", name);
        snprintf(list.members[list.n].peer_url, sizeof list.members[list.n].peer_url, "%s", url);
        list.n++;
    }
    char text[ETCD_MAX_MEMBERS * (ETCD_NAME_MAX + ETCD_URL_MAX + 2)];
    char now[sizeof text] = "";
    if (pv->have_cluster)
        (void)etcd_cluster_format(&pv->cluster, now, sizeof now);
    if (list.n && etcd_cluster_format(&list, text, sizeof text) == 0 && strcmp(text, now) != 0) {
        rc = peers_set(ev, pv, true, PEERS_KEY_ETCD_CLUSTER, text, err);
        if (rc == 0)
            log_info("published the etcd member list: %s", text);
    }
out:
    etcd_members_clear(&m);
    etcd_client_free(c);
    return rc < 0 ? -1 : 0;
}

static bool log_says_removed(void);
static void wipe_removed(const char *dir);
static void restart_for_tls(const struct peers_view *pv, struct cluster_state *st);

/* Join through any reachable peer: add this unit as a learner when it is not a member, and
 * take the current member list as the initial cluster (pv->cluster is replaced). */
static int self_join(struct peers_view *pv)
{
    char urls[PEERS_MAX][80];
    struct etcd_config cfg = {.ca_file = pki_peer_agent.ca, .cert_file = pki_peer_agent.cert,
                              .key_file = pki_peer_agent.key, .timeout_ms = CLIENT_TIMEOUT_MS};
    for (size_t i = 0; i < pv->n && cfg.n_endpoints < ETCD_MAX_ENDPOINTS; i++) {
        if (!pv->units[i].address[0])
            continue;
        bool v6 = strchr(pv->units[i].address, ':') != NULL;
        snprintf(urls[cfg.n_endpoints], sizeof urls[0], v6 ? "https://[%s]:%d" : "https://%s:%d",
                 pv->units[i].address, ETCD_CLIENT_PORT);
        cfg.endpoints[cfg.n_endpoints] = urls[cfg.n_endpoints];
        cfg.n_endpoints++;
    }
    struct etcd_client *c = NULL;
    char *err = NULL;
    if (cfg.n_endpoints == 0 || etcd_client_new(&cfg, &c, &err) < 0) {
        free(err);
        return -1;
    }
    char mine[ETCD_URL_MAX];
    cluster_peer_url(pv->my_address, mine, sizeof mine);
    struct etcd_members m = {0};
    int rc = etcd_member_list(c, &m, &err);
    bool present = false;
    for (size_t i = 0; rc == 0 && i < m.n; i++)
        present = present || (m.members[i].n_peer_urls &&
                               strcmp(m.members[i].peer_urls[0], mine) == 0);
    if (rc == 0 && !present) {
        const char *u[] = {mine};
        uint64_t id = 0;
        etcd_members_clear(&m);
        rc = etcd_member_add(c, u, 1, true, &id, &m, &err);
        if (rc == 0)
            log_info("joined the etcd cluster again as a learner (%s)", mine);
    }
    if (rc < 0) {
        log_warning("cannot join the etcd cluster through a peer: %s", ERRMSG(err));
    } else {
        struct etcd_cluster list = {0};
        for (size_t i = 0; i < m.n && list.n < ETCD_MAX_MEMBERS; i++) {
            const char *url = m.members[i].n_peer_urls ? m.members[i].peer_urls[0] : "";
            const char *name = member_for_url(pv, url);
            if (!name)
                continue;
            snprintf(list.members[list.n].name, sizeof list.members[0].name, "%s", name);
            snprintf(list.members[list.n].peer_url, sizeof list.members[0].peer_url, "%s", url);
            list.n++;
        }
        pv->cluster = list;
    }
    etcd_members_clear(&m);
    etcd_client_free(c);
    free(err);
    return rc < 0 ? -1 : 0;
}

/* The leader's first pass: a one-member cluster of itself. */
static int bootstrap(const struct hook_event *ev, struct peers_view *pv, char **err)
{
    const char *uuid = request_env(ev, "JUJU_MODEL_UUID");
    char token[65];
    snprintf(token, sizeof token, "%.8s-%.40s", uuid && *uuid ? uuid : "local", pv->app);
    for (char *p = token; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            *p = '-';
    struct etcd_cluster one = {.n = 1};
    snprintf(one.members[0].name, sizeof one.members[0].name, "%s", pv->me);
    cluster_peer_url(pv->my_address, one.members[0].peer_url, sizeof one.members[0].peer_url);
    char text[ETCD_NAME_MAX + ETCD_URL_MAX + 2];
    if (etcd_cluster_format(&one, text, sizeof text) < 0)
        return errmsg_set(err, -1, "cannot format the member list");
    if (peers_set(ev, pv, true, PEERS_KEY_ETCD_TOKEN, token, err) < 0 ||
        peers_set(ev, pv, true, PEERS_KEY_ETCD_CLUSTER, text, err) < 0)
        return -1;
    pv->cluster = one;
    pv->have_cluster = true;
    snprintf(pv->token, sizeof pv->token, "%s", token);
    log_info("bootstrapping the etcd cluster: %s", text);
    return 0;
}

int cluster_converge(const struct hook_event *ev, const struct peers_view *pv_in, bool leader,
                     struct cluster_state *st, char **err)
{
    *st = (struct cluster_state){0};
    struct peers_view pv = *pv_in;
    if (!pv.related || !pv.my_address[0]) {
        snprintf(st->message, sizeof st->message, "waiting for the peer relation");
        return 0;
    }
    if (!pv.have_cluster && leader && bootstrap(ev, &pv, err) < 0)
        return -1;
    if (!pv.have_cluster || !pv.token[0]) {
        snprintf(st->message, sizeof st->message, "waiting for the leader to start etcd");
        return 0;
    }
    for (size_t i = 0; i < pv.cluster.n; i++)
        st->member = st->member || strcmp(pv.cluster.members[i].name, pv.me) == 0;
    /* A unit whose member was removed (its data wiped, e.g. after a force-promote
     * elsewhere) joins again by itself through a reachable peer. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", ETCD_DATA_BASE, pv.app);
    if (etcd_running(CLUSTER_PID_FILE) <= 0 && log_says_removed())
        wipe_removed(dir);
    struct stat dst;
    bool fresh = stat(dir, &dst) < 0;
    if (fresh && st->member && pv.cluster.n > 1 && etcd_running(CLUSTER_PID_FILE) <= 0 &&
        self_join(&pv) < 0) {
        snprintf(st->message, sizeof st->message, "waiting to join the etcd cluster");
        return 0;
    }
    if (!st->member) {
        snprintf(st->message, sizeof st->message, "waiting to join the etcd cluster");
        return 0;
    }
    if (configure_local(&pv, err) < 0)
        return -1;
    int started = start_local(err);
    if (started < 0)
        return -1;
    /* A member without quorum answers nothing useful, but the HA loop must still run to
     * say so (blocked, force-promote): a live process is enough to go on. A member that
     * was already running gets a short look only. */
    bool healthy = local_healthy(started > 0 ? START_WAIT_MS : 2000);
    st->running = healthy || etcd_running(CLUSTER_PID_FILE) > 0;
    if (!st->running) {
        snprintf(st->message, sizeof st->message, "waiting for the local etcd member to start");
        return 0;
    }
    if (!healthy)
        return 0;
    restart_for_tls(&pv, st);
    if (leader && manage_members(ev, &pv, st, err) < 0)
        return -1;
    return 0;
}

/* Whether a certificate, key or CA file etcd serves with is newer than the running process
 * (etcd reads them when it starts; its pid file is written as it starts). */
static bool tls_stale(void)
{
    struct stat p;
    return stat(CLUSTER_PID_FILE, &p) == 0 && pki_time_after(pki_files_mtime(&pki_etcd), p.st_mtim);
}

/* etcd restarts to load new certificate files, one member at a time so that the cluster
 * keeps its quorum: the token is a key on a short lease (a member that dies while holding
 * it lets go). Without an answer from etcd for TLS_RESTART_WAIT_S (no quorum: nothing to
 * keep) it restarts anyway. A member that waits for its turn says so in st->tls_pending. */
static void restart_for_tls(const struct peers_view *pv, struct cluster_state *st)
{
    if (etcd_running(CLUSTER_PID_FILE) <= 0 || !tls_stale())
        return;
    char key[ETCD_NAME_MAX + 64];
    snprintf(key, sizeof key, "/pg-agent/%s/etcd-tls-restart", pv->app);
    struct etcd_client *c = NULL;
    char *e = NULL;
    int64_t lease = 0, ttl = 0;
    bool answered = false, token = false;
    struct etcd_txn_result r;
    if (cluster_client(CLIENT_TIMEOUT_MS, &c, &e) == 0 &&
        etcd_lease_grant(c, TLS_RESTART_TTL_S, &lease, &ttl, &e) == 0 &&
        etcd_create_if_absent(c, key, pv->me, strlen(pv->me), lease, &r, &e) == 0) {
        answered = true;
        token = r.succeeded;
    }
    /* no answer: most likely a peer's member is restarting right now (an election); wait
     * for an answer a while, and only then restart without it (no quorum: nothing kept) */
    static time_t unanswered_since;
    time_t now = time(NULL);
    if (answered)
        unanswered_since = 0;
    else if (!unanswered_since)
        unanswered_since = now;
    bool wait = answered ? !token : now - unanswered_since < TLS_RESTART_WAIT_S;
    if (wait) {
        if (answered) {
            (void)etcd_lease_revoke(c, lease, NULL);
            log_info("etcd restarts for its new certificates after the member restarting now");
        } else {
            log_info("etcd restarts for its new certificates once the cluster answers (%s)",
                     ERRMSG(e));
        }
        etcd_client_free(c);
        free(e);
        st->tls_pending = true;
        return;
    }
    if (answered)
        log_info("restarting etcd for its new certificates (one member at a time)");
    else
        log_warning("restarting etcd for its new certificates without the restart token (%s)",
                    ERRMSG(e));
    free(e);
    e = NULL;
    pthread_mutex_lock(&lock);
    local.forcing = true; /* the supervisor keeps off while it is down */
    pthread_mutex_unlock(&lock);
    stop_local(10000);
    if (start_local(&e) < 0)
        log_error("cannot start etcd again: %s", ERRMSG(e));
    free(e);
    e = NULL;
    bool healthy = local_healthy(START_WAIT_MS);
    pthread_mutex_lock(&lock);
    local.forcing = false;
    pthread_mutex_unlock(&lock);
    if (!healthy) {
        log_warning("etcd is not healthy after its restart for new certificates");
        st->tls_pending = true;
    }
    if (answered && etcd_lease_revoke(c, lease, &e) < 0)
        log_warning("cannot hand back the etcd restart token (it expires in %d s): %s",
                    TLS_RESTART_TTL_S, ERRMSG(e));
    free(e);
    etcd_client_free(c);
}

void cluster_leave(const struct peers_view *pv)
{
    struct etcd_client *c = NULL;
    char *err = NULL;
    if (pv->my_address[0] && cluster_client(CLIENT_TIMEOUT_MS, &c, &err) == 0) {
        struct etcd_members m = {0};
        char url[ETCD_URL_MAX];
        cluster_peer_url(pv->my_address, url, sizeof url);
        if (etcd_member_list(c, &m, &err) == 0 && m.n > 1) {
            for (size_t i = 0; i < m.n; i++)
                if (m.members[i].n_peer_urls && strcmp(m.members[i].peer_urls[0], url) == 0 &&
                    etcd_member_remove(c, m.members[i].id, &err) == 0)
                    log_info("left the etcd cluster");
        }
        etcd_members_clear(&m);
    }
    etcd_client_free(c);
    free(err);
    pthread_mutex_lock(&lock);
    local.known = false;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", ETCD_DATA_BASE, pv->app);
    pthread_mutex_unlock(&lock);
    stop_local(5000);
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        log_warning("cannot wipe %s: %s", dir, strerror(errno));
    else
        log_info("stopped the local etcd member and wiped its data");
}

/* The tail of etcd's log says it was removed from the cluster. */
static bool log_says_removed(void)
{
    FILE *f = fopen(CLUSTER_LOG_FILE, "re");
    if (!f)
        return false;
    char buf[8192];
    bool removed = false;
    if (fseek(f, -(long)sizeof buf + 1, SEEK_END) < 0)
        rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    removed = strstr(buf, "has been permanently removed from the cluster") != NULL;
    (void)fclose(f);
    return removed;
}

static int force_restart(const struct etcd_argv *argv, char **err);

/* ha.md 5.4 #11: a member removed from the cluster can never use its data again. */
static void wipe_removed(const char *dir)
{
    log_warning("this etcd member was removed from the cluster: wiping %s to join again", dir);
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        log_warning("cannot wipe %s: %s", dir, strerror(errno));
    if (truncate(CLUSTER_LOG_FILE, 0) < 0)
        log_warning("cannot truncate %s: %s", CLUSTER_LOG_FILE, strerror(errno));
}

int cluster_force_new(char **err)
{
    pthread_mutex_lock(&lock);
    struct etcd_argv argv = local.argv;
    bool known = local.known;
    pthread_mutex_unlock(&lock);
    if (!known)
        return errmsg_set(err, -EINVAL, "the local etcd member is not configured");
    size_t i = 0;
    for (; i < ETCD_ARGV_MAX && argv.argv[i]; i++)
        argv.argv[i] = argv.store + (argv.argv[i] - local.argv.store);
    if (i + 1 >= ETCD_ARGV_MAX)
        return errmsg_set(err, -ENOSPC, "the etcd command line is full");
    argv.argv[i] = "--force-new-cluster";
    argv.argv[i + 1] = NULL;
    pthread_mutex_lock(&lock);
    local.forcing = true;
    pthread_mutex_unlock(&lock);
    int rc = force_restart(&argv, err);
    pthread_mutex_lock(&lock);
    local.forcing = false;
    pthread_mutex_unlock(&lock);
    return rc;
}

static int force_restart(const struct etcd_argv *argv, char **err)
{
    stop_local(10000);
    log_warning("force-promote: restarting etcd with --force-new-cluster (this member alone)");
    pid_t pid = etcd_start(argv, CLUSTER_PID_FILE, CLUSTER_LOG_FILE, err);
    if (pid < 0)
        return (int)pid;
    if (!local_healthy(START_WAIT_MS))
        return errmsg_set(err, -ETIMEDOUT, "etcd did not come back as a new one-member cluster");
    return 0;
}

/* etcd logs a warning per JSON-gateway request when client certificates are verified
 * ("ignoring common name in gRPC-gateway proxy request", whatever the certificate: etcd
 * 3.4's AuthInfoFromTLS), a few per second: the log is capped here, copytruncate style (etcd
 * writes with O_APPEND, so it goes on at the new end): past CLUSTER_LOG_MAX bytes its last
 * CLUSTER_LOG_KEEP bytes go to etcd.log.1 and etcd.log starts again. */
#define CLUSTER_LOG_MAX (32L * 1024 * 1024)
#define CLUSTER_LOG_KEEP (4L * 1024 * 1024)

static void cap_log(void)
{
    struct stat st;
    if (stat(CLUSTER_LOG_FILE, &st) < 0 || st.st_size <= CLUSTER_LOG_MAX)
        return;
    FILE *in = fopen(CLUSTER_LOG_FILE, "re");
    FILE *out = in ? fopen(CLUSTER_LOG_FILE ".1", "we") : NULL;
    if (in && out && fseek(in, -CLUSTER_LOG_KEEP, SEEK_END) == 0) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0 && fwrite(buf, 1, n, out) == n)
            ;
    }
    if (out)
        (void)fclose(out);
    if (in)
        (void)fclose(in);
    if (truncate(CLUSTER_LOG_FILE, 0) < 0)
        log_warning("cannot truncate %s: %s", CLUSTER_LOG_FILE, strerror(errno));
    else
        log_info("%s reached %lld bytes: its end kept in %s.1", CLUSTER_LOG_FILE,
                 (long long)st.st_size, CLUSTER_LOG_FILE);
}

int cluster_supervise(struct etcd_client *c, bool promote_learners)
{
    pthread_mutex_lock(&lock);
    bool known = local.known && !local.forcing;
    pthread_mutex_unlock(&lock);
    if (!known)
        return 0;
    cap_log();
    if (etcd_running(CLUSTER_PID_FILE) <= 0 && log_says_removed()) {
        /* ha.md 5.4 #11: removed from the cluster (e.g. a force-promote elsewhere): its data
         * can never be used again; wipe it, the leader adds this unit back as a learner. */
        char dir[PATH_MAX];
        pthread_mutex_lock(&lock);
        snprintf(dir, sizeof dir, "%s", local.data_dir);
        local.known = false;
        pthread_mutex_unlock(&lock);
        wipe_removed(dir);
        return 0;
    }
    if (etcd_running(CLUSTER_PID_FILE) <= 0) {
        char *err = NULL;
        log_warning("the local etcd member is not running: starting it");
        if (start_local(&err) < 0)
            log_error("cannot start etcd: %s", ERRMSG(err));
        free(err);
        return 0;
    }
    if (!promote_learners || !c)
        return 0;
    struct etcd_members m = {0};
    int promoted = 0;
    if (etcd_member_list(c, &m, NULL) == 0) {
        for (size_t i = 0; i < m.n; i++) {
            if (!m.members[i].is_learner)
                continue;
            char *err = NULL;
            int rc = etcd_member_promote(c, m.members[i].id, &err);
            if (rc == 0) {
                log_info("promoted etcd learner %s to voter", m.members[i].name);
                promoted = 1;
            } else if (rc != -EBUSY) {
                log_warning("cannot promote etcd learner %s: %s", m.members[i].name,
                            ERRMSG(err));
            }
            free(err);
        }
    }
    etcd_members_clear(&m);
    return promoted;
}
