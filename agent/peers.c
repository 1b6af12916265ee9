/* The peer relation read into a typed view (peers.h): other units, addresses, and the
 * leader's app data, each value validated before anything else sees it. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "peers.h"

#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "settings.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int peers_member_name(const char *unit, char *buf, size_t size)
{
    if (!unit || strlen(unit) >= size)
        return -EINVAL;
    size_t i = 0;
    for (; unit[i]; i++)
        buf[i] = (char)(unit[i] == '/' ? '-' : unit[i]);
    buf[i] = '\0';
    return etcd_name_valid(buf) ? 0 : -EINVAL;
}

bool peers_address_valid(const char *s)
{
    unsigned char b[16];
    return s && (inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1);
}

bool peers_has_member(const struct peers_view *v, const char *member)
{
    if (strcmp(v->me, member) == 0)
        return true;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->units[i].member, member) == 0)
            return true;
    return false;
}

/* A string field of a databag object, NULL when absent or not a string. */
static const char *field(const json_t *bag, const char *key)
{
    const json_t *v = json_object_get(bag, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool peers_trust_valid(const char *s)
{
    if (!s)
        return false;
    size_t run = 0, n = 0;
    for (const char *p = s;; p++) {
        if (*p == ' ' || *p == '\0') {
            if (run != 0 && run != 64)
                return false;
            n += run == 64;
            run = 0;
            if (!*p)
                return n <= 4;
        } else if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) {
            run++;
        } else {
            return false;
        }
    }
}

static void read_tls(struct peer_unit *p, const json_t *bag)
{
    const char *cas = field(bag, PEERS_KEY_TLS_CAS);
    if (cas && strlen(cas) < sizeof p->tls_cas)
        snprintf(p->tls_cas, sizeof p->tls_cas, "%s", cas);
    else if (cas)
        log_warning("peer %s: %s is too long: ignored", p->unit, PEERS_KEY_TLS_CAS);
    const char *trust = field(bag, PEERS_KEY_TLS_TRUST);
    if (trust && strlen(trust) < sizeof p->tls_trust && peers_trust_valid(trust)) {
        snprintf(p->tls_trust, sizeof p->tls_trust, "%s", trust);
        p->tls_trust_known = true;
    } else if (trust) {
        log_warning("peer %s: %s is not a list of fingerprints: ignored", p->unit,
                    PEERS_KEY_TLS_TRUST);
    }
}

static void read_app(struct peers_view *v, const json_t *bag)
{
    const char *cluster = field(bag, PEERS_KEY_ETCD_CLUSTER);
    if (cluster && *cluster) {
        char *why = NULL;
        if (etcd_cluster_parse(cluster, &v->cluster, &why) == 0)
            v->have_cluster = true;
        else
            log_warning("peer app data %s is not a valid member list (%s): ignored",
                        PEERS_KEY_ETCD_CLUSTER, ERRMSG(why));
        free(why);
    }
    const char *token = field(bag, PEERS_KEY_ETCD_TOKEN);
    if (token && *token) {
        bool ok = strlen(token) < sizeof v->token;
        for (const char *p = token; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-';
        if (ok)
            snprintf(v->token, sizeof v->token, "%s", token);
        else
            log_warning("peer app data %s is not a valid token: ignored", PEERS_KEY_ETCD_TOKEN);
    }
    const char *ca = field(bag, PEERS_KEY_CA);
    if (ca && *ca) {
        char id[SETTINGS_SECRET_ID_LEN + 1];
        if (strlen(ca) < sizeof v->ca_uri && settings_secret_id(ca, id) == 0)
            snprintf(v->ca_uri, sizeof v->ca_uri, "%s", ca);
        else
            log_warning("peer app data %s is not a secret URI: ignored", PEERS_KEY_CA);
    }
    const char *clients = field(bag, PEERS_KEY_CLIENTS);
    if (clients && strlen(clients) < sizeof v->clients) {
        snprintf(v->clients, sizeof v->clients, "%s", clients);
        v->clients_known = true;
    } else if (clients) {
        log_warning("peer app data %s is longer than %d bytes: ignored", PEERS_KEY_CLIENTS,
                    PEERS_CLIENTS_MAX - 1);
    }
}

bool peers_digest_valid(const char *s)
{
    if (!s || strlen(s) != PEERS_DIGEST_MAX - 1)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static void read_digest(const json_t *bag, const char *key, const char *unit, char *out)
{
    const char *d = field(bag, key);
    if (d && peers_digest_valid(d))
        snprintf(out, PEERS_DIGEST_MAX, "%s", d);
    else if (d && *d)
        log_warning("peer %s: %s is not a digest: ignored", unit, key);
}

int peers_read(const struct hook_event *ev, struct peers_view *out, char **err)
{
    *out = (struct peers_view){0};
    snprintf(out->app, sizeof out->app, "%.*s", (int)strcspn(ev->unit, "/"), ev->unit);
    if (peers_member_name(ev->unit, out->me, sizeof out->me) < 0)
        return errmsg_set(err, -1, "unit name %s cannot name an etcd member", ev->unit);

    const char *addr_argv[] = {"unit-get", "private-address", NULL};
    json_t *addr = NULL;
    if (hooktool_json(ev, addr_argv, &addr, err) < 0)
        return -1;
    if (json_is_string(addr) && peers_address_valid(json_string_value(addr)))
        snprintf(out->my_address, sizeof out->my_address, "%s", json_string_value(addr));
    else
        log_warning("unit-get private-address is not an IP address: ignored");
    json_decref(addr);

    const char *ids_argv[] = {"relation-ids", PEERS_ENDPOINT, NULL};
    json_t *ids = NULL;
    if (hooktool_json(ev, ids_argv, &ids, err) < 0)
        return -1;
    const json_t *id0 = json_array_get(ids, 0);
    if (json_is_string(id0) && json_string_length(id0) < sizeof out->rel) {
        snprintf(out->rel, sizeof out->rel, "%s", json_string_value(id0));
        out->related = true;
    }
    json_decref(ids);
    if (!out->related)
        return 0;

    const char *list_argv[] = {"relation-list", "-r", out->rel, NULL};
    json_t *list = NULL;
    if (hooktool_json(ev, list_argv, &list, err) < 0)
        return -1;
    size_t i;
    json_t *u;
    json_array_foreach(list, i, u) {
        if (!json_is_string(u) || out->n >= PEERS_MAX)
            continue;
        struct peer_unit *p = &out->units[out->n];
        const char *name = json_string_value(u);
        if (strlen(name) >= sizeof p->unit ||
            peers_member_name(name, p->member, sizeof p->member) < 0) {
            log_warning("peer unit name %s cannot name an etcd member: ignored", name);
            continue;
        }
        snprintf(p->unit, sizeof p->unit, "%s", name);
        const char *get_argv[] = {"relation-get", "-r", out->rel, "-", name, NULL};
        json_t *bag = NULL;
        char *why = NULL;
        if (hooktool_json(ev, get_argv, &bag, &why) == 0) {
            const char *a = field(bag, "ingress-address");
            if (!a)
                a = field(bag, "private-address");
            if (a && peers_address_valid(a))
                snprintf(p->address, sizeof p->address, "%s", a);
            else if (a)
                log_warning("peer %s: ingress-address is not an IP address: ignored", name);
            read_tls(p, bag);
            read_digest(bag, PEERS_KEY_CLIENTS_HBA, name, p->clients_hba);
            read_digest(bag, PEERS_KEY_CLIENTS_ROLES, name, p->clients_roles);
        } else {
            log_warning("peer %s: %s", name, ERRMSG(why));
        }
        free(why);
        json_decref(bag);
        out->n++;
    }
    json_decref(list);

    const char *own_argv[] = {"relation-get", "-r", out->rel, "-", ev->unit, NULL};
    json_t *own = NULL;
    char *own_why = NULL;
    if (hooktool_json(ev, own_argv, &own, &own_why) == 0 && json_is_object(own)) {
        read_digest(own, PEERS_KEY_CLIENTS_HBA, ev->unit, out->my_clients_hba);
        read_digest(own, PEERS_KEY_CLIENTS_ROLES, ev->unit, out->my_clients_roles);
    } else if (own_why) {
        log_debug("own peer data: %s", own_why);
    }
    free(own_why);
    json_decref(own);

    const char *app_argv[] = {"relation-get", "-r", out->rel, "--app", "-", ev->unit, NULL};
    json_t *bag = NULL;
    char *why = NULL;
    if (hooktool_json(ev, app_argv, &bag, &why) == 0 && json_is_object(bag))
        read_app(out, bag);
    else if (why)
        log_debug("peer app data: %s", why);
    free(why);
    json_decref(bag);
    return 0;
}

int peers_set(const struct hook_event *ev, const struct peers_view *v, bool app, const char *key,
              const char *value, char **err)
{
    if (!v->related)
        return errmsg_set(err, -1, "the %s relation does not exist yet", PEERS_ENDPOINT);
    char *kv = NULL;
    if (asprintf(&kv, "%s=%s", key, value) < 0)
        return errmsg_set(err, -1, "out of memory");
    const char *with_app[] = {"relation-set", "-r", v->rel, "--app", kv, NULL};
    const char *unit_only[] = {"relation-set", "-r", v->rel, kv, NULL};
    int rc = hooktool_check(ev, app ? with_app : unit_only, err);
    free(kv);
    return rc;
}
