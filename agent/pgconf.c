/* PostgreSQL's configuration files rendered from settings and host facts (pgconf.h):
 * memory sizing per profile, postgresql.conf lines, pg_hba rules and pg_ident. */
/* _GNU_SOURCE is how glibc is asked for vasprintf. */
#define _GNU_SOURCE
#include "pgconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"

#define KB_PER_MB 1024LL
#define KB_PER_PAGE 8LL

/* ---- a growing text buffer --------------------------------------------------------- */

struct text {
    char *p;
    size_t len;
    bool oom; /* an append failed: p is incomplete */
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
    char *piece = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = t->oom ? -1 : vasprintf(&piece, fmt, ap);
    va_end(ap);
    char *grown = n < 0 ? NULL : realloc(t->p, t->len + (size_t)n + 1);
    if (!grown) {
        free(piece);
        t->oom = true;
        return;
    }
    memcpy(grown + t->len, piece, (size_t)n + 1);
    t->p = grown;
    t->len += (size_t)n;
    free(piece);
}

/* Hand the text over as *out: 0, or -ENOMEM with *err. */
static int text_finish(struct text *t, char **out, char **err)
{
    if (t->oom || !t->p) {
        free(t->p);
        return errmsg_set(err, -ENOMEM, "out of memory rendering a configuration file");
    }
    *out = t->p;
    return 0;
}

/* ---- values -------------------------------------------------------------------------- */

int pgconf_quote(const char *s, char **out)
{
    size_t extra = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7F)
            return -EINVAL;
        extra += *c == '\'' || *c == '\\';
    }
    char *q = malloc(strlen(s) + extra + 3);
    if (!q)
        return -ENOMEM;
    size_t o = 0;
    q[o++] = '\'';
    for (const char *c = s; *c; c++) {
        if (*c == '\'' || *c == '\\')
            q[o++] = *c;
        q[o++] = *c;
    }
    q[o++] = '\'';
    q[o] = '\0';
    *out = q;
    return 0;
}

void pgconf_format_kb(long long kb, char *buf, size_t size)
{
    static const char *const units[] = {"kB", "MB", "GB", "TB"};
    size_t u = 0;
    while (u + 1 < sizeof units / sizeof *units && kb != 0 && kb % 1024 == 0) {
        kb /= 1024;
        u++;
    }
    snprintf(buf, size, "%lld%s", kb, units[u]);
}

/* name = 'value' (quoted); a value that cannot be quoted is recorded as an error. */
static void put_str(struct text *t, const char *name, const char *value, int *bad)
{
    char *q = NULL;
    int rc = pgconf_quote(value, &q);
    if (rc == -ENOMEM)
        t->oom = true;
    else if (rc < 0)
        *bad = -EINVAL;
    else
        text_add(t, "%s = %s\n", name, q);
    free(q);
}

static void put_raw(struct text *t, const char *name, const char *literal)
{
    text_add(t, "%s = %s\n", name, literal);
}

static void put_long(struct text *t, const char *name, long long value)
{
    text_add(t, "%s = %lld\n", name, value);
}

static void put_bool(struct text *t, const char *name, bool value)
{
    put_raw(t, name, value ? "on" : "off");
}

static void put_kb(struct text *t, const char *name, long long kb)
{
    char buf[32];
    pgconf_format_kb(kb, buf, sizeof buf);
    text_add(t, "%s = '%s'\n", name, buf);
}

/* ---- sizing ---------------------------------------------------------------------- */

static long long min_ll(long long a, long long b)
{
    return a < b ? a : b;
}

static long long max_ll(long long a, long long b)
{
    return a > b ? a : b;
}

static bool absolute_path(const char *p)
{
    return p && p[0] == '/';
}

/* One host fact and its allowed range, for the check below. */
struct fact_range {
    const char *name;
    long long value, min, max;
};

static int check_facts(const struct host_facts *h, char **err)
{
    const struct fact_range ranges[] = {
        {"ram_mb", h->ram_mb, 1, PGCONF_MAX_RAM_MB},
        {"cpus", h->cpus, 1, PGCONF_MAX_CPUS},
        {"major", h->major, 10, 99},
        {"port", h->port, 1, 65535},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
        const struct fact_range *r = &ranges[i];
        if (r->value < r->min || r->value > r->max)
            return errmsg_set(err, -EINVAL, "host fact %s=%lld is not between %lld and %lld",
                              r->name, r->value, r->min, r->max);
    }
    if (!absolute_path(h->data_dir) || !absolute_path(h->socket_dir))
        return errmsg_set(err, -EINVAL, "host facts: data_dir and socket_dir must be absolute");
    return 0;
}

/* memory-shared-buffers must not exceed 40 % of the RAM (in 8 kB pages). */
static int check_shared_buffers(const struct pg_settings *s, const struct host_facts *h, char **err)
{
    long long limit = (long long)h->ram_mb * (KB_PER_MB / KB_PER_PAGE) * 40 / 100;
    if (s->has_shared_buffers && s->shared_buffers_pages > limit)
        return errmsg_set(err, -EINVAL,
                          "config memory-shared-buffers=%ld: must be at most %lld pages of 8 kB "
                          "(40 %% of the unit's %ld MB of RAM)",
                          s->shared_buffers_pages, limit, h->ram_mb);
    return 0;
}

static void size_production(const struct pg_settings *s, const struct host_facts *h,
                            struct pg_sizing *z)
{
    long long base = h->ram_mb;
    if (s->profile_limit_memory_mb > 0)
        base = min_ll(base, s->profile_limit_memory_mb);
    z->base_mb = base;
    z->shared_buffers_kb = base * KB_PER_MB / 4;
    z->maintenance_work_mem_kb = max_ll(min_ll(base * KB_PER_MB / 16, 2048 * KB_PER_MB), 1024);
}

static void size_testing(const struct host_facts *h, struct pg_sizing *z)
{
    z->base_mb = h->ram_mb;
    z->shared_buffers_kb = 128 * KB_PER_MB;
    z->effective_cache_size_kb = min_ll(512 * KB_PER_MB, h->ram_mb * KB_PER_MB / 2);
    z->maintenance_work_mem_kb = 64 * KB_PER_MB;
}

int pgconf_size(const struct pg_settings *s, const struct host_facts *h, struct pg_sizing *out,
                char **err)
{
    memset(out, 0, sizeof *out);
    int rc = check_facts(h, err);
    if (rc == 0)
        rc = check_shared_buffers(s, h, err);
    if (rc < 0)
        return rc;
    if (s->profile == PROFILE_TESTING)
        size_testing(h, out);
    else
        size_production(s, h, out);
    if (s->has_shared_buffers)
        out->shared_buffers_kb = s->shared_buffers_pages * KB_PER_PAGE;
    if (s->profile != PROFILE_TESTING) /* what the OS cache may hold besides our buffers */
        out->effective_cache_size_kb =
            max_ll(out->base_mb * KB_PER_MB - out->shared_buffers_kb, KB_PER_PAGE);
    if (s->has_maintenance_work_mem)
        out->maintenance_work_mem_kb = s->maintenance_work_mem_kb;
    out->work_mem_kb = s->has_work_mem ? s->work_mem_kb : 4 * KB_PER_MB;
    out->temp_buffers_kb = (s->has_temp_buffers ? s->temp_buffers_pages : 1024) * KB_PER_PAGE;
    out->max_connections =
        s->has_max_connections ? s->max_connections : (long)max_ll(4LL * h->cpus, 100);
    return 0;
}

/* ---- postgresql.conf ---------------------------------------------------------------- */

/* Settings that do not depend on anything, in file order within their section. */
struct fixed_line {
    const char *name, *literal, *comment;
};

static const struct fixed_line replication_lines[] = {
    {"wal_level", "'logical'", NULL},
    {"max_wal_senders", "10", NULL},
    {"max_replication_slots", "10", NULL},
    {"hot_standby", "on", NULL},
    {"wal_log_hints", "on", "pg_rewind needs hint bits in the WAL (checksums may be off)"},
    {"archive_mode", "on", NULL},
    {"archive_command", "'/bin/true'",
     "no backup store yet: segments count as archived and are recycled (backups come later)"},
};

static const struct fixed_line logging_lines[] = {
    {"logging_collector", "on", NULL},
    {"log_directory", "'/var/log/postgresql'", NULL},
    {"log_file_mode", "0600", NULL},
    {"log_truncate_on_rotation", "on", "a week of daily files, each reused after 7 days"},
    {"log_rotation_age", "'1d'", NULL},
    {"log_rotation_size", "0", NULL},
    {"log_connections", "on", NULL},
    {"log_disconnections", "on", NULL},
    {"log_line_prefix", "'%m [%p] %q%u@%d '", NULL},
    {"log_statement", "'ddl'", NULL},
    {"log_timezone", "'UTC'", NULL},
};

static void put_fixed(struct text *t, const struct fixed_line *lines, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lines[i].comment)
            text_add(t, "# %s\n", lines[i].comment);
        put_raw(t, lines[i].name, lines[i].literal);
    }
}

static void put_connections(struct text *t, const struct pg_settings *s, const struct host_facts *h,
                            const struct pg_sizing *z, int *bad)
{
    text_add(t, "\n# connections and authentication\n");
    put_str(t, "listen_addresses", "*", bad);
    put_long(t, "port", h->port);
    put_str(t, "unix_socket_directories", h->socket_dir, bad);
    text_add(t, "# PostgreSQL's default: pg_hba.conf decides who may log in over the socket\n"
                "# (peer for the mapped OS users, SCRAM passwords for every other role).\n");
    put_raw(t, "unix_socket_permissions", "0777");
    put_long(t, "max_connections", z->max_connections);
    put_long(t, "authentication_timeout", s->authentication_timeout_s);
    put_str(t, "password_encryption", "scram-sha-256", bad);
    if (!h->tls_cert || !h->tls_key || !h->tls_ca) {
        text_add(t, "# TLS waits for this unit's certificate.\n");
        put_raw(t, "ssl", "off");
        return;
    }
    text_add(t, "# TLS: this unit's certificate from the internal CA (peers verify it)\n");
    put_raw(t, "ssl", "on");
    put_str(t, "ssl_cert_file", h->tls_cert, bad);
    put_str(t, "ssl_key_file", h->tls_key, bad);
    put_str(t, "ssl_ca_file", h->tls_ca, bad);
    put_str(t, "ssl_min_protocol_version", settings_tls_min_version_name(s->tls_min_version),
            bad);
}

static void put_memory(struct text *t, const struct pg_settings *s, const struct host_facts *h,
                       const struct pg_sizing *z)
{
    if (s->profile == PROFILE_TESTING)
        text_add(t, "\n# memory: profile testing (a small footprint; RAM %ld MB)\n", h->ram_mb);
    else
        text_add(t,
                 "\n# memory: profile production, sized from %lld MB (RAM %ld MB, "
                 "profile-limit-memory %ld)\n",
                 z->base_mb, h->ram_mb, s->profile_limit_memory_mb);
    text_add(t, "# memory-* options, when set, win over the profile\n");
    put_kb(t, "shared_buffers", z->shared_buffers_kb);
    put_kb(t, "effective_cache_size", z->effective_cache_size_kb);
    put_kb(t, "work_mem", z->work_mem_kb);
    put_kb(t, "maintenance_work_mem", z->maintenance_work_mem_kb);
    put_kb(t, "temp_buffers", z->temp_buffers_kb);
}

static void put_sessions(struct text *t, const struct pg_settings *s, int *bad)
{
    text_add(t, "\n# statements and sessions (times in ms)\n");
    put_long(t, "statement_timeout", s->statement_timeout_ms);
    put_long(t, "idle_in_transaction_session_timeout", s->idle_in_transaction_timeout_ms);
    put_str(t, "synchronous_commit", settings_sync_commit_name(s->synchronous_commit), bad);
    put_str(t, "timezone", s->time_zone, bad);
}

static void put_logging(struct text *t, const struct pg_settings *s, const struct host_facts *h,
                        int *bad)
{
    char name[64];
    text_add(t, "\n# logging\n");
    put_fixed(t, logging_lines, sizeof logging_lines / sizeof *logging_lines);
    snprintf(name, sizeof name, "postgresql-%d-charm-%%a.log", h->major);
    put_str(t, "log_filename", name, bad);
    put_long(t, "log_min_duration_statement", s->log_min_duration_statement_ms);
    put_bool(t, "log_lock_waits", s->log_lock_waits);
}

/* dir + "/" + file, without doubling a trailing slash of dir. */
static void put_path(struct text *t, const char *name, const char *dir, const char *file, int *bad)
{
    char *path = NULL;
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (asprintf(&path, "%.*s/%s", (int)n, dir, file) < 0) {
        t->oom = true;
        return;
    }
    put_str(t, name, path, bad);
    free(path);
}

int pgconf_render_conf(const struct pg_settings *s, const struct host_facts *h, char **out,
                       char **err)
{
    struct pg_sizing z;
    struct text t = {0};
    int bad = 0;
    int rc = pgconf_size(s, h, &z, err);
    if (rc < 0)
        return rc;
    text_add(&t, "# postgresql.conf: generated by pg-agent from the charm's config and\n"
                 "# overwritten on every change. Use `juju config` instead of editing it.\n");
    put_connections(&t, s, h, &z, &bad);
    put_memory(&t, s, h, &z);
    put_sessions(&t, s, &bad);
    text_add(&t, "\n# replication and WAL\n");
    put_fixed(&t, replication_lines, sizeof replication_lines / sizeof *replication_lines);
    put_logging(&t, s, h, &bad);
    text_add(&t, "\n# files\n");
    put_path(&t, "hba_file", h->data_dir, "pg_hba.conf", &bad);
    put_path(&t, "ident_file", h->data_dir, "pg_ident.conf", &bad);
    put_str(&t, "cluster_name", "charm", &bad);
    if (h->include) {
        text_add(&t, "\n# the HA loop's settings (primary_conninfo, synchronous_standby_names)\n");
        put_str(&t, "include_if_exists", h->include, &bad);
    }
    if (bad && !t.oom) {
        free(t.p);
        return errmsg_set(err, -EINVAL,
                          "host facts: a path or the time zone holds a control character");
    }
    return text_finish(&t, out, err);
}

/* ---- pg_hba.conf ------------------------------------------------------------------ */

static const char *const hba_types[] = {"local", "host", "hostssl", "hostnossl", NULL};
static const char *const hba_methods[] = {"peer", "scram-sha-256", "cert", "reject", "md5", NULL};

/* md5 is admitted for one user pattern only: the auth user PgBouncer's charm creates with an
 * md5 verifier (pgbouncer_auth_relation_<id>), and only over TLS. */
static bool md5_user(const char *user)
{
    static const char prefix[] = "pgbouncer_auth_relation_";
    if (!user || strncmp(user, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *d = user + sizeof prefix - 1;
    if (!*d || strlen(d) > 9)
        return false;
    for (; *d; d++)
        if (*d < '0' || *d > '9')
            return false;
    return true;
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* A single pg_hba token: printable ASCII, no space, no comment, quote or list separator. */
static bool hba_token(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~' || strchr("#\",", *s))
            return false;
    return true;
}

static int check_rule(const struct pg_hba_rule *r, size_t i, char **err)
{
    bool local = r->type && strcmp(r->type, "local") == 0;
    if (!r->type || !in_list(hba_types, r->type))
        return errmsg_set(err, -EINVAL, "pg_hba rule %zu: type is not local, host, hostssl or hostnossl", i);
    if (!r->method || !in_list(hba_methods, r->method) ||
        (!local && strcmp(r->method, "peer") == 0) ||
        (strcmp(r->method, "cert") == 0 && strcmp(r->type, "hostssl") != 0) ||
        (strcmp(r->method, "md5") == 0 &&
         (strcmp(r->type, "hostssl") != 0 || !md5_user(r->user))) ||
        (strcmp(r->type, "hostnossl") == 0 && strcmp(r->method, "reject") != 0))
        return errmsg_set(err, -EINVAL,
                          "pg_hba rule %zu: method is not peer (local only), scram-sha-256, cert "
                          "(hostssl only), md5 (hostssl and PgBouncer's auth user only) or "
                          "reject (the only one for hostnossl)",
                          i);
    if (local != (r->address == NULL))
        return errmsg_set(err, -EINVAL, "pg_hba rule %zu: %s", i,
                          local ? "a local rule has no address" : "a host rule needs an address");
    if (!hba_token(r->database) || !hba_token(r->user) || (r->address && !hba_token(r->address)) ||
        (r->options && !hba_token(r->options)))
        return errmsg_set(err, -EINVAL, "pg_hba rule %zu: a field is not a single token", i);
    return 0;
}

int pgconf_format_hba(const struct pg_hba_rule *rules, size_t n, char **out, char **err)
{
    struct text t = {0};
    for (size_t i = 0; i < n; i++) {
        int rc = check_rule(&rules[i], i, err);
        if (rc < 0)
            return rc;
    }
    text_add(&t,
             "# pg_hba.conf: generated by pg-agent and overwritten on every change.\n"
             "# The first line that matches a connection decides; the last one rejects the "
             "rest.\n"
             "# %-5s %-12s %-12s %-14s %s\n",
             "TYPE", "DATABASE", "USER", "ADDRESS", "METHOD");
    for (size_t i = 0; i < n; i++) {
        const struct pg_hba_rule *r = &rules[i];
        text_add(&t, "%-7s %-12s %-12s %-14s %s%s%s\n", r->type, r->database, r->user,
                 r->address ? r->address : "", r->method, r->options ? " " : "",
                 r->options ? r->options : "");
    }
    return text_finish(&t, out, err);
}

/* When a base rule applies. */
enum hba_when {
    HBA_ALWAYS = 0,
    HBA_REMOTE_SUPERUSER,   /* only with superuser-remote-access */
    HBA_NO_REMOTE_SUPERUSER, /* only without it */
    HBA_PEERS,               /* where the peer rules go */
    HBA_CLIENTS              /* where the client relations' rules go */
};

static const struct {
    enum hba_when when;
    struct pg_hba_rule rule;
} hba_base[] = {
    /* the agent (root) and the postgres OS user, as postgres, on the socket only */
    {HBA_ALWAYS, {"local", "all", "postgres", NULL, "peer", "map=pg-agent"}},
    /* the agent asks its own server for its timeline (IDENTIFY_SYSTEM) */
    {HBA_ALWAYS, {"local", "replication", "postgres", NULL, "peer", "map=pg-agent"}},
    /* the metrics exporter (OS user prometheus) as monitoring, on the socket only, no
       password (exporter.c) */
    {HBA_ALWAYS, {"local", "all", "monitoring", NULL, "peer", "map=pg-exporter"}},
    {HBA_ALWAYS, {"local", "all", "all", NULL, "scram-sha-256", NULL}},
    {HBA_ALWAYS, {"host", "all", "postgres", "all", "reject", NULL}},
    {HBA_ALWAYS, {"host", "all", "operator", "127.0.0.1/32", "scram-sha-256", NULL}},
    {HBA_ALWAYS, {"host", "all", "operator", "::1/128", "scram-sha-256", NULL}},
    {HBA_NO_REMOTE_SUPERUSER, {"host", "all", "operator", "all", "reject", NULL}},
    {HBA_REMOTE_SUPERUSER, {"host", "all", "operator", "all", "scram-sha-256", NULL}},
    /* replication and rewind: loopback with SCRAM; the peers with their certificates
       (rules added after this line by pgconf_render_hba) */
    {HBA_ALWAYS, {"host", "replication", "replication", "127.0.0.1/32", "scram-sha-256", NULL}},
    {HBA_ALWAYS, {"host", "replication", "replication", "::1/128", "scram-sha-256", NULL}},
    {HBA_PEERS, {NULL, NULL, NULL, NULL, NULL, NULL}},
    {HBA_ALWAYS, {"host", "replication", "all", "all", "reject", NULL}},
    {HBA_ALWAYS, {"host", "all", "rewind", "127.0.0.1/32", "scram-sha-256", NULL}},
    {HBA_ALWAYS, {"host", "all", "rewind", "::1/128", "scram-sha-256", NULL}},
    {HBA_ALWAYS, {"host", "all", "monitoring", "all", "scram-sha-256", NULL}},
    /* the client relations' users (clients.c), before the final reject */
    {HBA_CLIENTS, {NULL, NULL, NULL, NULL, NULL, NULL}},
    {HBA_ALWAYS, {"host", "all", "all", "all", "reject", NULL}},
};

static bool hba_applies(enum hba_when when, const struct pg_settings *s)
{
    return when == HBA_ALWAYS || (when == HBA_REMOTE_SUPERUSER) == s->superuser_remote_access;
}

#define HBA_MAX_PEERS ((size_t)64)

int pgconf_render_hba(const struct pg_settings *s, bool tls, const char *const *peers,
                      size_t n_peers, const struct pg_hba_rule *clients, size_t n_clients,
                      char **out, char **err)
{
    if (n_peers > HBA_MAX_PEERS)
        return errmsg_set(err, -EINVAL, "more than %zu peer addresses", HBA_MAX_PEERS);
    if (n_clients > PGCONF_MAX_CLIENT_RULES)
        return errmsg_set(err, -EINVAL, "more than %d client rules", PGCONF_MAX_CLIENT_RULES);
    size_t max = sizeof hba_base / sizeof *hba_base + 2 * HBA_MAX_PEERS + n_clients + 1;
    struct pg_hba_rule *rules = calloc(max, sizeof *rules);
    if (!rules)
        return errmsg_set(err, -ENOMEM, "out of memory");
    char addrs[HBA_MAX_PEERS][INET6_ADDRSTRLEN + 8];
    size_t n = 0;
    bool nossl_rejected = false;
    for (size_t i = 0; i < sizeof hba_base / sizeof *hba_base; i++) {
        if (hba_base[i].when == HBA_CLIENTS) {
            for (size_t c = 0; c < n_clients; c++)
                rules[n++] = clients[c];
            continue;
        }
        if (hba_base[i].when != HBA_PEERS) {
            if (!hba_applies(hba_base[i].when, s))
                continue;
            struct pg_hba_rule r = hba_base[i].rule;
            if (s->tls_only && strcmp(r.type, "host") == 0) {
                /* tls-only: a plain TCP connection is refused before any other rule, and
                 * every TCP rule asks for TLS */
                if (!nossl_rejected) {
                    rules[n++] = (struct pg_hba_rule){"hostnossl", "all", "all", "all", "reject",
                                                      NULL};
                    nossl_rejected = true;
                }
                r.type = "hostssl";
            }
            rules[n++] = r;
            continue;
        }
        for (size_t p = 0; tls && p < n_peers; p++) {
            unsigned char bin[16];
            bool v4 = peers[p] && inet_pton(AF_INET, peers[p], bin) == 1;
            if (!v4 && !(peers[p] && inet_pton(AF_INET6, peers[p], bin) == 1)) {
                free(rules);
                return errmsg_set(err, -EINVAL, "peer address %zu is not an IP address", p);
            }
            snprintf(addrs[p], sizeof addrs[p], "%s/%d", peers[p], v4 ? 32 : 128);
            rules[n++] = (struct pg_hba_rule){"hostssl", "replication", "replication", addrs[p],
                                              "cert", "map=pg-agent-peers"};
            rules[n++] = (struct pg_hba_rule){"hostssl", "postgres", "rewind", addrs[p], "cert",
                                              "map=pg-agent-peers"};
        }
    }
    int rc = pgconf_format_hba(rules, n, out, err);
    free(rules);
    return rc;
}

/* ---- pg_ident.conf ---------------------------------------------------------------- */

int pgconf_render_ident(const char *app, char **out, char **err)
{
    size_t len = app ? strlen(app) : 0;
    bool ok = len >= 1 && len <= 63;
    for (size_t i = 0; ok && i < len; i++)
        ok = (app[i] >= 'a' && app[i] <= 'z') || (app[i] >= '0' && app[i] <= '9') ||
             app[i] == '-';
    if (!ok)
        return errmsg_set(err, -EINVAL, "the application name cannot be put in pg_ident.conf");
    struct text t = {0};
    text_add(&t, "# pg_ident.conf: generated by pg-agent and overwritten on every change.\n"
                 "# The agent runs as root and connects as postgres with peer authentication,\n"
                 "# the metrics exporter runs as prometheus and connects as monitoring;\n"
                 "# the peers' certificates (CN <app>-<n>, internal CA) replicate and rewind.\n"
                 "# MAPNAME       SYSTEM-USERNAME  PG-USERNAME\n"
                 "pg-agent        root             postgres\n"
                 "pg-agent        postgres         postgres\n"
                 "pg-exporter     prometheus       monitoring\n"
                 "pg-agent-peers  /^%s-[0-9]+$   replication\n"
                 "pg-agent-peers  /^%s-[0-9]+$   rewind\n",
             app, app);
    return text_finish(&t, out, err);
}
