/* The unit's etcd member (etcd_member.h): validated initial-cluster lists, the command
 * line built from a typed spec, and the detached process found again by its pid file. */
#define _GNU_SOURCE
#include "etcd_member.h"

#include "errmsg.h"
#include "log.h"
#include "proc.h"
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool etcd_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= ETCD_NAME_MAX || name[0] == '-' || name[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* https://<ipv4>:2380 or https://[<ipv6>]:2380, and nothing else. */
static bool peer_url_valid(const char *url, size_t len)
{
    static const char scheme[] = "https://";
    static const char port[] = ":2380";
    size_t sl = sizeof scheme - 1, pl = sizeof port - 1;
    if (len <= sl + pl || len >= ETCD_URL_MAX || strncmp(url, scheme, sl) != 0 ||
        strncmp(url + len - pl, port, pl) != 0)
        return false;
    char host[ETCD_URL_MAX];
    size_t hl = len - sl - pl;
    memcpy(host, url + sl, hl);
    host[hl] = '\0';
    unsigned char addr[16];
    if (host[0] == '[') {
        if (hl < 3 || host[hl - 1] != ']')
            return false;
        host[hl - 1] = '\0';
        return inet_pton(AF_INET6, host + 1, addr) == 1;
    }
    return inet_pton(AF_INET, host, addr) == 1;
}

int etcd_cluster_parse(const char *text, struct etcd_cluster *out, char **err)
{
    out->n = 0;
    if (!text || !*text)
        return errmsg_set(err, -EINVAL, "the etcd member list is empty");
    const char *p = text;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return errmsg_set(err, -EINVAL, "etcd member entry %zu is not name=url", out->n + 1);
        if (out->n == ETCD_MAX_MEMBERS)
            return errmsg_set(err, -EINVAL, "more than %d etcd members", ETCD_MAX_MEMBERS);
        struct etcd_peer *m = &out->members[out->n];
        size_t nl = (size_t)(eq - p), ul = len - nl - 1;
        if (nl >= sizeof m->name || ul >= sizeof m->peer_url)
            return errmsg_set(err, -EINVAL, "etcd member entry %zu is too long", out->n + 1);
        memcpy(m->name, p, nl);
        m->name[nl] = '\0';
        memcpy(m->peer_url, eq + 1, ul);
        m->peer_url[ul] = '\0';
        if (!etcd_name_valid(m->name))
            return errmsg_set(err, -EINVAL, "etcd member entry %zu: invalid name", out->n + 1);
        if (!peer_url_valid(m->peer_url, ul))
            return errmsg_set(err, -EINVAL,
                              "etcd member %s: peer URL must be https://<ip>:2380", m->name);
        for (size_t i = 0; i < out->n; i++)
            if (strcmp(out->members[i].name, m->name) == 0 ||
                strcmp(out->members[i].peer_url, m->peer_url) == 0)
                return errmsg_set(err, -EINVAL, "etcd member %s is listed twice", m->name);
        out->n++;
        if (!end)
            return 0;
        p = end + 1;
    }
}

int etcd_cluster_format(const struct etcd_cluster *c, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return -ENOSPC;
    buf[0] = '\0';
    for (size_t i = 0; i < c->n; i++) {
        int n = snprintf(buf + used, size - used, "%s%s=%s", i ? "," : "", c->members[i].name,
                         c->members[i].peer_url);
        if (n < 0 || (size_t)n >= size - used)
            return -ENOSPC;
        used += (size_t)n;
    }
    return 0;
}

/* Append one argument (formatted) to out. */
static int arg(struct etcd_argv *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int arg(struct etcd_argv *out, const char *fmt, ...)
{
    size_t argc = 0;
    while (out->argv[argc])
        argc++;
    if (argc >= ETCD_ARGV_MAX)
        return -ENOSPC;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out->store + out->used, sizeof out->store - out->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof out->store - out->used)
        return -ENOSPC;
    out->argv[argc] = out->store + out->used;
    out->argv[argc + 1] = NULL;
    out->used += (size_t)n + 1;
    return 0;
}

static bool ip_valid(const char *ip, bool *v6)
{
    unsigned char addr[16];
    *v6 = ip && strchr(ip, ':');
    return ip && inet_pton(*v6 ? AF_INET6 : AF_INET, ip, addr) == 1;
}

static bool path_ok(const char *p)
{
    return p && p[0] == '/' && !strchr(p, '\n');
}

int etcd_argv_build(const struct etcd_spec *s, struct etcd_argv *out, char **err)
{
    memset(out, 0, sizeof *out);
    bool v6;
    if (!etcd_name_valid(s->name))
        return errmsg_set(err, -EINVAL, "invalid etcd member name");
    if (!ip_valid(s->ip, &v6))
        return errmsg_set(err, -EINVAL, "invalid unit address for etcd");
    if (!etcd_name_valid(s->scope))
        return errmsg_set(err, -EINVAL, "invalid etcd scope");
    if (!s->token || !*s->token || strlen(s->token) > 128 || strpbrk(s->token, " ,=\n"))
        return errmsg_set(err, -EINVAL, "invalid etcd cluster token");
    if (!path_ok(s->cert) || !path_ok(s->key) || !path_ok(s->ca))
        return errmsg_set(err, -EINVAL, "etcd needs absolute certificate, key and CA paths");
    if (!s->initial || s->initial->n == 0)
        return errmsg_set(err, -EINVAL, "etcd needs an initial cluster");
    char host[64];
    snprintf(host, sizeof host, v6 ? "[%s]" : "%s", s->ip);
    char self_url[ETCD_URL_MAX];
    snprintf(self_url, sizeof self_url, "https://%s:%d", host, ETCD_PEER_PORT);
    bool listed = false;
    for (size_t i = 0; i < s->initial->n; i++)
        if (strcmp(s->initial->members[i].name, s->name) == 0)
            listed = strcmp(s->initial->members[i].peer_url, self_url) == 0;
    if (!listed)
        return errmsg_set(err, -EINVAL, "this member (%s at %s) is not in the initial cluster",
                          s->name, self_url);
    char cluster[ETCD_MAX_MEMBERS * (ETCD_NAME_MAX + ETCD_URL_MAX + 2)];
    if (etcd_cluster_format(s->initial, cluster, sizeof cluster) < 0)
        return errmsg_set(err, -ENOSPC, "the initial cluster list is too long");

    out->argv[0] = NULL;
    int rc = 0;
    rc = rc ?: arg(out, "%s", ETCD_BIN);
    rc = rc ?: arg(out, "--name=%s", s->name);
    rc = rc ?: arg(out, "--data-dir=%s/%s", ETCD_DATA_BASE, s->scope);
    rc = rc ?: arg(out, "--listen-peer-urls=%s", self_url);
    rc = rc ?: arg(out, "--initial-advertise-peer-urls=%s", self_url);
    rc = rc ?: arg(out, "--listen-client-urls=https://%s:%d,https://127.0.0.1:%d", host,
                   ETCD_CLIENT_PORT, ETCD_CLIENT_PORT);
    rc = rc ?: arg(out, "--advertise-client-urls=https://%s:%d", host, ETCD_CLIENT_PORT);
    rc = rc ?: arg(out, "--initial-cluster=%s", cluster);
    rc = rc ?: arg(out, "--initial-cluster-state=%s", s->existing ? "existing" : "new");
    rc = rc ?: arg(out, "--initial-cluster-token=%s", s->token);
    rc = rc ?: arg(out, "--cert-file=%s", s->cert);
    rc = rc ?: arg(out, "--key-file=%s", s->key);
    rc = rc ?: arg(out, "--trusted-ca-file=%s", s->ca);
    rc = rc ?: arg(out, "--client-cert-auth=true");
    rc = rc ?: arg(out, "--peer-cert-file=%s", s->cert);
    rc = rc ?: arg(out, "--peer-key-file=%s", s->key);
    rc = rc ?: arg(out, "--peer-trusted-ca-file=%s", s->ca);
    rc = rc ?: arg(out, "--peer-client-cert-auth=true");
    rc = rc ?: arg(out, "--strict-reconfig-check=true");
    /* A member cut off from the others keeps starting elections and raising its term; back
     * on the network, that term would depose a working leader (seen: 3 s without a leader,
     * and the primary demoted). Pre-vote asks first, so a lagging member cannot win. */
    rc = rc ?: arg(out, "--pre-vote=true");
    rc = rc ?: arg(out, "--logger=zap");
    rc = rc ?: arg(out, "--log-outputs=stderr");
    if (s->heartbeat_ms > 0)
        rc = rc ?: arg(out, "--heartbeat-interval=%d", s->heartbeat_ms);
    if (s->election_ms > 0)
        rc = rc ?: arg(out, "--election-timeout=%d", s->election_ms);
    if (rc < 0)
        return errmsg_set(err, rc, "the etcd command line does not fit");
    return 0;
}

/* The process is alive, not a zombie, and runs ETCD_BIN. */
pid_t etcd_running(const char *pid_file)
{
    return proc_pidfile_running(pid_file, ETCD_BIN);
}

pid_t etcd_start(const struct etcd_argv *argv, const char *pid_file, const char *log_file,
                 char **err)
{
    pid_t running = etcd_running(pid_file);
    if (running > 0)
        return running;
    struct proc_opts o = {.output_file = log_file, .cwd = "/"};
    struct passwd *pw = getpwnam("etcd");
    if (pw) {
        o.as_user = true;
        o.uid = pw->pw_uid;
        o.gid = pw->pw_gid;
    }
    pid_t pid = proc_spawn_pidfile(argv->argv, &o, pid_file, err);
    if (pid < 0)
        return pid;
    log_info("etcd member started (pid %ld)", (long)pid);
    return pid;
}
