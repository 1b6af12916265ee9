/* Test driver for agent/etcd.c against a real etcd: one operation per run, its result as one
 * JSON line on stdout (watch: one line per event), for tests/integration/test_etcd_client.py. */
/* _GNU_SOURCE is how glibc is asked for strerrorname_np. */
#define _GNU_SOURCE
#include "errmsg.h"
#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: etcd_probe [--endpoints URL[,URL..]] [--ca F] [--cert F --key F]\n"
            "                  [--timeout MS] [--prefix /v3] COMMAND ARGS..\n"
            "commands: version | get K | prefix P | put K V [LEASE] | delete K |\n"
            "  create K V [LEASE] | cas K OLD NEW [LEASE] | casrev K MODREV V [LEASE] |\n"
            "  delif K OLD | owned K LEASE | grant TTL | keepalive ID |\n"
            "  keepalive-loop ID SECONDS INTERVAL_MS | revoke ID | members |\n"
            "  member-add PEER_URL LEARNER(0|1) | member-promote ID | member-remove ID |\n"
            "  status [INDEX] | watch PREFIX START_REV COUNT WAIT_MS\n");
    exit(2);
}

static int64_t num(const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        usage();
    return v;
}

static json_t *bytes_json(const char *p, size_t n)
{
    json_t *j = json_stringn(p, n);
    if (j)
        return j;
    char *b = etcd_b64_encode(p, n);
    j = json_pack("{ss}", "base64", b ? b : "");
    free(b);
    return j;
}

static json_t *kv_json(const struct etcd_kv *kv)
{
    char lease[24];
    snprintf(lease, sizeof(lease), "%" PRId64, kv->lease);
    return json_pack("{so so sI sI sI ss}", "key", bytes_json(kv->key, kv->key_len), "value",
                     bytes_json(kv->value, kv->value_len), "create_revision",
                     (json_int_t)kv->create_revision, "mod_revision",
                     (json_int_t)kv->mod_revision, "version", (json_int_t)kv->version, "lease",
                     lease);
}

static json_t *id_json(uint64_t id)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, id);
    return json_string(buf);
}

/* Print {"rc":..,"errno":..,"error":..,"elapsed_ms":..,"endpoint":..} merged with extra. */
static void emit(int rc, const char *err, long long elapsed, const struct etcd_client *c,
                 json_t *extra)
{
    json_t *o = extra ? extra : json_object();
    json_object_set_new(o, "rc", json_integer(rc));
    if (rc < 0) {
        const char *name = strerrorname_np(-rc);
        json_object_set_new(o, "errno", json_string(name ? name : "?"));
        json_object_set_new(o, "error", json_string(err ? err : "out of memory"));
    }
    json_object_set_new(o, "elapsed_ms", json_integer(elapsed));
    if (c)
        json_object_set_new(o, "endpoint", json_string(etcd_client_endpoint(c)));
    char *s = json_dumps(o, JSON_COMPACT);
    if (s)
        printf("%s\n", s);
    if (fflush(stdout) != 0)
        exit(3); /* the test reads these lines: nothing to report to otherwise */
    free(s);
    json_decref(o);
}

static json_t *range_json(const struct etcd_range *r)
{
    json_t *kvs = json_array();
    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(kvs, kv_json(&r->kvs[i]));
    return json_pack("{sI sI so}", "revision", (json_int_t)r->header.revision, "count",
                     (json_int_t)r->count, "kvs", kvs);
}

static json_t *txn_json(const struct etcd_txn_result *t)
{
    return json_pack("{sb sI sI so}", "succeeded", t->succeeded, "revision",
                     (json_int_t)t->header.revision, "deleted", (json_int_t)t->deleted, "holder",
                     t->have_kv ? kv_json(&t->kv) : json_null());
}

static json_t *members_json(const struct etcd_members *m)
{
    json_t *a = json_array();
    for (size_t i = 0; i < m->n; i++) {
        const struct etcd_member *mb = &m->members[i];
        json_t *peers = json_array(), *clients = json_array();
        for (size_t j = 0; j < mb->n_peer_urls; j++)
            json_array_append_new(peers, json_string(mb->peer_urls[j]));
        for (size_t j = 0; j < mb->n_client_urls; j++)
            json_array_append_new(clients, json_string(mb->client_urls[j]));
        json_array_append_new(a, json_pack("{so ss so so sb}", "id", id_json(mb->id), "name",
                                           mb->name, "peer_urls", peers, "client_urls",
                                           clients, "is_learner", mb->is_learner));
    }
    return json_pack("{so}", "members", a);
}

static int watch(struct etcd_client *c, char **argv, int argc)
{
    if (argc != 4)
        usage();
    struct etcd_watch *w = NULL;
    char *err = NULL;
    long long t0 = now_ms();
    int64_t want = num(argv[2]), wait_ms = num(argv[3]);
    int rc = etcd_watch_start(c, argv[0], num(argv[1]), &w, &err);
    int64_t n = 0;
    bool said_created = false;
    while (rc == 0 && n < want) {
        struct etcd_watch_event ev;
        rc = etcd_watch_next(w, &ev, &err);
        if (!said_created && etcd_watch_created(w)) {
            emit(0, NULL, now_ms() - t0, NULL, json_pack("{ss}", "event", "created"));
            said_created = true;
        }
        if (rc > 0) {
            json_t *e = kv_json(&ev.kv);
            json_object_set_new(e, "type", json_string(ev.type == ETCD_EVENT_PUT ? "PUT"
                                                                                 : "DELETE"));
            json_object_set_new(e, "revision", json_integer(ev.revision));
            emit(0, NULL, now_ms() - t0, NULL, json_pack("{so}", "event", e));
            etcd_watch_event_clear(&ev);
            n++;
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        long long left = t0 + wait_ms - now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = etcd_watch_fd(w), .events = POLLIN};
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    json_t *extra = json_pack("{sI sI sb}", "events", (json_int_t)n, "compacted",
                              (json_int_t)(w ? etcd_watch_compacted(w) : 0), "created",
                              w ? etcd_watch_created(w) : 0);
    emit(rc, ERRMSG(err), now_ms() - t0, c, extra);
    etcd_watch_free(w);
    free(err);
    return 0;
}

static int keepalive_loop(struct etcd_client *c, char **argv, int argc)
{
    if (argc != 3)
        usage();
    int64_t id = num(argv[0]), secs = num(argv[1]), interval = num(argv[2]);
    long long t0 = now_ms(), max_call = 0;
    int64_t min_ttl = INT64_MAX, count = 0;
    int rc = 0;
    char *err = NULL;
    while (now_ms() - t0 < secs * 1000) {
        int64_t ttl = 0;
        long long t1 = now_ms();
        rc = etcd_lease_keepalive(c, id, &ttl, &err);
        if (now_ms() - t1 > max_call)
            max_call = now_ms() - t1;
        if (rc < 0)
            break;
        count++;
        if (ttl < min_ttl)
            min_ttl = ttl;
        usleep((useconds_t)interval * 1000);
    }
    emit(rc, ERRMSG(err), now_ms() - t0, c,
         json_pack("{sI sI sI}", "count", (json_int_t)count, "min_ttl",
                   (json_int_t)(count ? min_ttl : 0), "max_call_ms", (json_int_t)max_call));
    free(err);
    return 0;
}

int main(int argc, char **argv)
{
    struct etcd_config cfg = {0};
    char *eps = NULL;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--endpoints") == 0)
            eps = argv[i + 1];
        else if (strcmp(argv[i], "--ca") == 0)
            cfg.ca_file = argv[i + 1];
        else if (strcmp(argv[i], "--cert") == 0)
            cfg.cert_file = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            cfg.key_file = argv[i + 1];
        else if (strcmp(argv[i], "--timeout") == 0)
            cfg.timeout_ms = (int)num(argv[i + 1]);
        else if (strcmp(argv[i], "--prefix") == 0)
            cfg.api_prefix = argv[i + 1];
        else
            usage();
    }
    if (!eps || i >= argc)
        usage();
    for (char *save = NULL, *tok = strtok_r(eps, ",", &save); tok && cfg.n_endpoints < 8;
         tok = strtok_r(NULL, ",", &save))
        cfg.endpoints[cfg.n_endpoints++] = tok;
    const char *cmd = argv[i];
    char **a = argv + i + 1;
    int n = argc - i - 1;

    struct etcd_client *c = NULL;
    char *err = NULL;
    int rc = etcd_client_new(&cfg, &c, &err);
    if (rc < 0) {
        emit(rc, ERRMSG(err), 0, NULL, NULL);
        free(err);
        return 1;
    }
    if (strcmp(cmd, "watch") == 0) {
        watch(c, a, n);
        etcd_client_free(c);
        return 0;
    }
    if (strcmp(cmd, "keepalive-loop") == 0) {
        keepalive_loop(c, a, n);
        etcd_client_free(c);
        return 0;
    }

    json_t *extra = NULL;
    long long t0 = now_ms();
    if (strcmp(cmd, "version") == 0 && n == 0) {
        char version[32];
        rc = etcd_detect_version(c, version, &err);
        if (rc == 0)
            extra = json_pack("{ss}", "version", version);
    } else if ((strcmp(cmd, "get") == 0 || strcmp(cmd, "prefix") == 0) && n == 1) {
        struct etcd_range r;
        rc = cmd[0] == 'g' ? etcd_get(c, a[0], &r, &err) : etcd_get_prefix(c, a[0], &r, &err);
        if (rc == 0)
            extra = range_json(&r);
        etcd_range_clear(&r);
    } else if (strcmp(cmd, "put") == 0 && (n == 2 || n == 3)) {
        int64_t rev = 0;
        rc = etcd_put(c, a[0], a[1], strlen(a[1]), n == 3 ? num(a[2]) : 0, &rev, &err);
        if (rc == 0)
            extra = json_pack("{sI}", "revision", (json_int_t)rev);
    } else if (strcmp(cmd, "delete") == 0 && n == 1) {
        int64_t deleted = 0;
        rc = etcd_delete(c, a[0], &deleted, &err);
        if (rc == 0)
            extra = json_pack("{sI}", "deleted", (json_int_t)deleted);
    } else if (strcmp(cmd, "create") == 0 && (n == 2 || n == 3)) {
        struct etcd_txn_result t;
        rc = etcd_create_if_absent(c, a[0], a[1], strlen(a[1]), n == 3 ? num(a[2]) : 0, &t,
                                   &err);
        if (rc == 0)
            extra = txn_json(&t);
        etcd_txn_result_clear(&t);
    } else if (strcmp(cmd, "cas") == 0 && (n == 3 || n == 4)) {
        struct etcd_txn_result t;
        rc = etcd_cas_value(c, a[0], a[1], strlen(a[1]), a[2], strlen(a[2]),
                            n == 4 ? num(a[3]) : 0, &t, &err);
        if (rc == 0)
            extra = txn_json(&t);
        etcd_txn_result_clear(&t);
    } else if (strcmp(cmd, "casrev") == 0 && (n == 3 || n == 4)) {
        struct etcd_txn_result t;
        rc = etcd_cas_revision(c, a[0], num(a[1]), a[2], strlen(a[2]), n == 4 ? num(a[3]) : 0,
                               &t, &err);
        if (rc == 0)
            extra = txn_json(&t);
        etcd_txn_result_clear(&t);
    } else if (strcmp(cmd, "delif") == 0 && n == 2) {
        struct etcd_txn_result t;
        rc = etcd_delete_if_value(c, a[0], a[1], strlen(a[1]), &t, &err);
        if (rc == 0)
            extra = txn_json(&t);
        etcd_txn_result_clear(&t);
    } else if (strcmp(cmd, "owned") == 0 && n == 2) {
        bool owned = false;
        rc = etcd_key_has_lease(c, a[0], num(a[1]), &owned, &err);
        if (rc == 0)
            extra = json_pack("{sb}", "owned", owned);
    } else if (strcmp(cmd, "grant") == 0 && n == 1) {
        int64_t id = 0, ttl = 0;
        rc = etcd_lease_grant(c, num(a[0]), &id, &ttl, &err);
        if (rc == 0)
            extra = json_pack("{so sI}", "id", id_json((uint64_t)id), "ttl", (json_int_t)ttl);
    } else if (strcmp(cmd, "keepalive") == 0 && n == 1) {
        int64_t ttl = 0;
        rc = etcd_lease_keepalive(c, num(a[0]), &ttl, &err);
        if (rc == 0)
            extra = json_pack("{sI}", "ttl", (json_int_t)ttl);
    } else if (strcmp(cmd, "revoke") == 0 && n == 1) {
        rc = etcd_lease_revoke(c, num(a[0]), &err);
    } else if (strcmp(cmd, "members") == 0 && n == 0) {
        struct etcd_members m;
        rc = etcd_member_list(c, &m, &err);
        if (rc == 0)
            extra = members_json(&m);
        etcd_members_clear(&m);
    } else if (strcmp(cmd, "member-add") == 0 && n == 2) {
        uint64_t id = 0;
        struct etcd_members m;
        const char *urls[] = {a[0]};
        rc = etcd_member_add(c, urls, 1, num(a[1]) != 0, &id, &m, &err);
        if (rc == 0) {
            extra = members_json(&m);
            json_object_set_new(extra, "id", id_json(id));
        }
        etcd_members_clear(&m);
    } else if (strcmp(cmd, "member-promote") == 0 && n == 1) {
        rc = etcd_member_promote(c, strtoull(a[0], NULL, 10), &err);
    } else if (strcmp(cmd, "member-remove") == 0 && n == 1) {
        rc = etcd_member_remove(c, strtoull(a[0], NULL, 10), &err);
    } else if (strcmp(cmd, "status") == 0 && n <= 1) {
        struct etcd_status st;
        rc = etcd_status(c, n == 1 ? (int)num(a[0]) : -1, &st, &err);
        if (rc == 0)
            extra = json_pack("{ss so sI sI so sI}", "version", st.version, "leader",
                              id_json(st.leader), "raft_index", (json_int_t)st.raft_index,
                              "raft_term", (json_int_t)st.raft_term, "member_id",
                              id_json(st.header.member_id), "errors", (json_int_t)st.n_errors);
    } else {
        etcd_client_free(c);
        usage();
    }
    emit(rc, ERRMSG(err), now_ms() - t0, c, extra);
    free(err);
    etcd_client_free(c);
    return 0;
}
