/* The tls-certificates requirer on client-certificates and peer-certificates (tls.h): key
 * and request in a unit-owned secret, the request in the unit databag, the provider's answer
 * checked and installed, renewal at 90 % of the validity or on revocation, fall back to the
 * internal CA when a relation goes; for peer-certificates, the switch to a new CA agreed
 * with the peers. The wire format and the checks are tls_wire.c's. */
#define _GNU_SOURCE
#include "tls.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "password.h"
#include "tls_wire.h"
#include "x509.h"

#define RENEW_PERCENT 90
#define PEER_CAS_MAX 4 /* provider CAs taken from one peer's PEERS_KEY_TLS_CAS */

/* One requirer endpoint: its relation, its two secrets, the names it asks for. */
struct endpoint {
    const char *name;
    const char *label_key;  /* {private-key, csr} */
    const char *label_cert; /* {certificate, ca-certificate, chain, previous-ca} */
    bool peer;
};

static const struct endpoint EP_CLIENT = {TLS_CLIENT_ENDPOINT, "tls-client-private-key",
                                          "tls-client-certificate", false};
static const struct endpoint EP_PEER = {TLS_PEER_ENDPOINT, "tls-peer-private-key",
                                        "tls-peer-certificate", true};

/* What this unit asks for. Client: CN its address (Charmed PostgreSQL uses the database
 * endpoint's bind address), SANs its member name, host name, address (also as a DNS name,
 * as Charmed PostgreSQL does for pgBackRest) and the address as an IP. Peer: CN its member
 * name (what pg_ident.conf maps to the replication and rewind roles; Charmed PostgreSQL
 * uses the peer address, which is not a stable identity), SANs as the internal peer
 * certificate's: member name, host name, localhost, the address; IPs the address and
 * 127.0.0.1 (the local etcd client). */
struct names {
    char cn[64];
    const char *dns[5];
    size_t n_dns;
    const char *ips[2];
    size_t n_ips;
    char host[256];
};

static void names_of(const struct endpoint *ep, const struct peers_view *pv, struct names *n)
{
    *n = (struct names){0};
    snprintf(n->cn, sizeof n->cn, "%s",
             ep->peer || !pv->my_address[0] ? pv->me : pv->my_address);
    n->dns[n->n_dns++] = pv->me;
    if (gethostname(n->host, sizeof n->host) == 0 && n->host[0] && strcmp(n->host, pv->me) != 0 &&
        strcmp(n->host, "localhost") != 0)
        n->dns[n->n_dns++] = n->host;
    if (ep->peer)
        n->dns[n->n_dns++] = "localhost";
    if (pv->my_address[0]) {
        n->dns[n->n_dns++] = pv->my_address;
        n->ips[n->n_ips++] = pv->my_address;
    }
    if (ep->peer)
        n->ips[n->n_ips++] = "127.0.0.1";
}

/* Store fields under label (add the secret, or set a new revision). */
static int store(const struct hook_event *ev, const char *label, const struct secret_field *f,
                 size_t n, char **err)
{
    char uri[128];
    if (hooktool_secret_uri(ev, label, uri, sizeof uri) == 0)
        return hooktool_secret_set(ev, uri, f, n, err);
    char *new_uri = NULL;
    int rc = hooktool_secret_add(ev, "unit", label, f, n, &new_uri, err);
    free(new_uri);
    return rc;
}

static const char *field(json_t *content, const char *key)
{
    return json_string_value(json_object_get(content, key));
}

static enum x509_key_type key_type(const struct pg_settings *s)
{
    return s->tls_key_type == TLS_KEY_ECDSA_P256 ? X509_KEY_ECDSA_P256 : X509_KEY_RSA2048;
}

/* A new request for key (a fresh x500UniqueIdentifier: never equal to the previous one). */
static int new_request(const struct endpoint *ep, const struct peers_view *pv, const char *key,
                       char **csr, char **err)
{
    struct names n;
    names_of(ep, pv, &n);
    struct x509_sans sans = {.dns = n.dns, .n_dns = n.n_dns, .ips = n.ips, .n_ips = n.n_ips};
    return x509_csr_create_unique(key, n.cn, &sans, csr, err);
}

/* Whether csr still asks for this unit's names. */
static bool request_current(const struct endpoint *ep, const struct peers_view *pv,
                            const char *csr)
{
    struct x509_csr_info info;
    char *e = NULL;
    bool ok = x509_csr_info(csr, &info, &e) == 0;
    free(e);
    if (!ok)
        return false;
    struct names n;
    names_of(ep, pv, &n);
    struct x509_sans want = {.dns = n.dns, .n_dns = n.n_dns, .ips = n.ips, .n_ips = n.n_ips};
    return strcmp(info.cn, n.cn) == 0 && x509_sans_equal(&info.sans, &want);
}

/* key and request from the secret; created (or replaced: new_key, renew) as needed.
 * *key is a sodium buffer, *csr malloc'd. */
static int key_and_request(const struct hook_event *ev, const struct endpoint *ep,
                           const struct peers_view *pv, const struct pg_settings *s,
                           const char *new_key, bool renew, char **key, char **csr, char **err)
{
    *key = NULL;
    *csr = NULL;
    json_t *content = NULL;
    int rc = hooktool_secret_get(ev, NULL, ep->label_key, &content, err);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    free(*err);
    *err = NULL;
    const char *k = content ? field(content, "private-key") : NULL;
    const char *c = content ? field(content, "csr") : NULL;
    char *why = NULL;
    bool dirty = false;
    if (new_key) {
        *key = password_dup(new_key, strlen(new_key));
        dirty = true;
    } else if (k && x509_key_check(k, strlen(k), &why) == 0) {
        *key = password_dup(k, strlen(k));
    } else {
        if (k)
            log_warning("the stored key for %s is unusable (%s): a new one", ep->name,
                        ERRMSG(why));
        rc = x509_key_generate(key_type(s), key, err);
        if (rc < 0)
            goto out;
        dirty = true;
    }
    if (!*key) {
        rc = errmsg_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (!dirty && !renew && c && request_current(ep, pv, c)) {
        *csr = strdup(c);
    } else {
        rc = new_request(ep, pv, *key, csr, err);
        if (rc < 0)
            goto out;
        dirty = true;
        log_info("new certificate request on %s (%s)", ep->name,
                 new_key ? "a new key was set" : renew ? "renewal" : "this unit's names");
    }
    if (dirty) {
        const struct secret_field f[] = {{"private-key", *key}, {"csr", *csr}};
        rc = store(ev, ep->label_key, f, 2, err);
    }
out:
    free(why);
    json_decref(content);
    if (rc < 0) {
        password_free(*key);
        *key = NULL;
        free(*csr);
        *csr = NULL;
    }
    return rc < 0 ? rc : 0;
}

/* relation-ids <endpoint>: the first id into rel ("" when none, or when it is the relation
 * being broken: during relation-broken the dying relation is still listed, juju.md). */
static int relation_id(const struct hook_event *ev, const struct endpoint *ep, char *rel,
                       size_t size, char **err)
{
    rel[0] = '\0';
    const char *argv[] = {"relation-ids", ep->name, NULL};
    json_t *ids = NULL;
    int rc = hooktool_json(ev, argv, &ids, err);
    if (rc < 0)
        return rc;
    if (json_is_array(ids) && json_array_size(ids) > 0 &&
        json_is_string(json_array_get(ids, 0)))
        snprintf(rel, size, "%s", json_string_value(json_array_get(ids, 0)));
    json_decref(ids);
    if (request_is_broken_relation(ev, ep->name, rel))
        rel[0] = '\0';
    return 0;
}

/* The provider's `certificates` value (NULL when it has not written one yet). */
static int provider_value(const struct hook_event *ev, const char *rel, char **value,
                          char **err)
{
    *value = NULL;
    /* the provider's app databag through one of its units: readable once a unit joined */
    const char *list_argv[] = {"relation-list", "-r", rel, NULL};
    json_t *units = NULL;
    int rc = hooktool_json(ev, list_argv, &units, err);
    if (rc < 0)
        return rc;
    const char *first = json_string_value(json_array_get(units, 0));
    char *remote = first ? strdup(first) : NULL;
    json_decref(units);
    if (!remote)
        return 0; /* no provider unit has joined yet */
    const char *get_argv[] = {"relation-get", "-r", rel, "--app", TLS_WIRE_KEY_CERTIFICATES,
                              remote, NULL};
    char *out = NULL;
    rc = hooktool_output(ev, get_argv, &out, err);
    free(remote);
    if (rc < 0)
        return rc;
    if (out && out[0])
        *value = out;
    else
        free(out);
    return 0;
}

/* The request in this unit's databag (only when it differs). */
static int publish(const struct hook_event *ev, const char *rel, const char *csr, char **err)
{
    char *json = NULL;
    int rc = tls_wire_requests(csr, false, &json, err);
    if (rc < 0)
        return rc;
    const char *get_argv[] = {"relation-get", "-r", rel, TLS_WIRE_KEY_REQUESTS, ev->unit, NULL};
    char *cur = NULL;
    bool same = hooktool_output(ev, get_argv, &cur, NULL) == 0 && cur && json &&
                strcmp(cur, json) == 0;
    free(cur);
    if (!same) {
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", TLS_WIRE_KEY_REQUESTS, json ? json : "") < 0) {
            free(json);
            return errmsg_set(err, -ENOMEM, "out of memory");
        }
        const char *set_argv[] = {"relation-set", "-r", rel, kv, NULL};
        rc = hooktool_check(ev, set_argv, err);
        free(kv);
        if (rc == -EACCES) {
            /* not in this unit's scope yet (its relation-created hook has not run, e.g. a
             * relation made at deploy time): that hook publishes */
            log_info("%s: not in scope yet; the request goes out in a later hook", rel);
            free(*err);
            *err = NULL;
            rc = 0;
        }
    }
    free(json);
    return rc;
}

static int postgres_ids(uid_t *uid, gid_t *gid)
{
    const struct passwd *pw = getpwnam("postgres");
    if (!pw)
        return -ENOENT;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

/* Bad data from the provider: said in the status and the log; the current files stay. */
static void problem(const struct endpoint *ep, struct tls_endpoint_state *st, const char *what,
                    const char *why)
{
    snprintf(st->message, sizeof st->message, "%s: %s (%s); keeping the current certificate",
             ep->name, what, why);
    log_warning("%s", st->message);
}

/* The provider's answer on an endpoint: the last one stored, and the one in the databag
 * when it passes every check (ck.certificate set; key is the key it is for). */
struct answer {
    json_t *old;
    const char *old_certificate, *old_ca, *old_previous_ca;
    struct tls_checked ck;
    char *key;             /* sodium buffer */
    const char *ca_now;    /* the provider's current CA (ck.ca, else the stored one) */
    const char *ca_before; /* the one before it (a CA change), or NULL */
};

static void answer_clear(struct answer *a)
{
    tls_checked_clear(&a->ck);
    password_free(a->key);
    json_decref(a->old);
    *a = (struct answer){0};
}

/* Request, read and check the provider's answer on rel, renew when due or revoked, keep a
 * good answer in the endpoint's certificate secret. */
static int obtain(const struct hook_event *ev, const struct endpoint *ep,
                  const struct peers_view *pv, const struct pg_settings *s, const char *rel,
                  struct tls_endpoint_state *st, struct answer *a, char **err)
{
    *a = (struct answer){0};
    if (hooktool_secret_get(ev, NULL, ep->label_cert, &a->old, NULL) == 0) {
        a->old_certificate = field(a->old, "certificate");
        a->old_ca = field(a->old, "ca-certificate");
        a->old_previous_ca = field(a->old, "previous-ca");
    }
    char *csr = NULL, *value = NULL;
    struct tls_provided *v = NULL;
    size_t n = 0;
    /* A new request when the answer to the current one is due for renewal or revoked;
     * while the provider has not answered the current request, nothing changes (the
     * certificate held serves until the new one arrives). */
    bool renew = false;
    int rc = key_and_request(ev, ep, pv, s, NULL, false, &a->key, &csr, err);
    if (rc < 0)
        goto out;
    rc = provider_value(ev, rel, &value, err);
    if (rc < 0)
        goto out;
    int at = -1;
    if (value) {
        char *problems = NULL, *perr = NULL;
        if (tls_wire_parse_provider(value, strlen(value), &v, &n, &problems, &perr) < 0) {
            problem(ep, st, "the provider's data is unusable", ERRMSG(perr));
        } else {
            if (problems)
                log_warning("%s: entries ignored: %s", ep->name, problems);
            at = tls_wire_find(v, n, csr);
        }
        free(problems);
        free(perr);
    }
    if (at >= 0) {
        char *why = NULL;
        int c = tls_wire_check(&v[at], a->key, false, time(NULL), &a->ck, &why);
        if (c == -ECANCELED) {
            renew = true;
            log_info("%s: the provider revoked this unit's certificate", ep->name);
        } else if (c < 0) {
            problem(ep, st, "the provider's certificate is not used", ERRMSG(why));
        } else {
            struct x509_info info;
            char *e = NULL;
            if (x509_cert_info(a->ck.certificate, &info, &e) == 0) {
                st->not_after = info.not_after;
                st->renew_at = info.not_before +
                               (info.not_after - info.not_before) * RENEW_PERCENT / 100;
                renew = x509_renew_due(&info, time(NULL), RENEW_PERCENT);
            }
            free(e);
        }
        free(why);
    }
    if (renew) {
        /* the certificate just checked stays usable with the key it is for (a->key) until
         * the provider answers the new request */
        char *new_key = NULL;
        free(csr);
        csr = NULL;
        rc = key_and_request(ev, ep, pv, s, NULL, true, &new_key, &csr, err);
        password_free(new_key);
        if (rc < 0)
            goto out;
        st->renew_at = 0;
    }
    rc = publish(ev, rel, csr, err);
    if (rc < 0)
        goto out;

    a->ca_now = a->old_ca;
    a->ca_before = a->old_previous_ca;
    if (a->ck.certificate) {
        bool new_cert = !a->old_certificate || strcmp(a->old_certificate, a->ck.certificate) != 0;
        bool new_ca = !a->old_ca || strcmp(a->old_ca, a->ck.ca) != 0;
        if (new_cert || new_ca) {
            const char *prev = new_ca && a->old_ca ? a->old_ca : a->old_previous_ca;
            const struct secret_field f[] = {{"certificate", a->ck.certificate},
                                             {"ca-certificate", a->ck.ca},
                                             {"chain", a->ck.fullchain},
                                             {"previous-ca", prev ? prev : ""}};
            rc = store(ev, ep->label_cert, f, 4, err);
            if (rc < 0)
                goto out;
            a->ca_before = prev;
        }
        a->ca_now = a->ck.ca;
    }
out:
    tls_provided_free(v, n);
    free(value);
    free(csr);
    return rc;
}

/* ---- client-certificates -------------------------------------------------------------- */

/* trust.pem: the peer trust bundle, then the client provider's CA and the one before it. */
static int write_trust(const char *peer_bundle, const char *ca, const char *previous,
                       bool *changed, char **err)
{
    uid_t uid;
    gid_t gid;
    if (postgres_ids(&uid, &gid) < 0 || !peer_bundle)
        return 0;
    char *bundle = NULL;
    bool prev = previous && previous[0] && (!ca || strcmp(previous, ca) != 0);
    if (asprintf(&bundle, "%s%s%s%s%s", peer_bundle, ca ? "\n" : "", ca ? ca : "",
                 prev ? "\n" : "", prev ? previous : "") < 0)
        return errmsg_set(err, -ENOMEM, "out of memory");
    int rc = pki_write_file(TLS_TRUST, bundle, uid, gid, err);
    free(bundle);
    if (rc > 0)
        *changed = true;
    return rc < 0 ? rc : 0;
}

/* The provider's certificate gone: PostgreSQL back on the internal one. */
static void drop_files(bool *changed)
{
    bool had = access(TLS_CLIENT_CERT, F_OK) == 0;
    (void)unlink(TLS_CLIENT_CERT);
    (void)unlink(TLS_CLIENT_KEY);
    if (had) {
        log_info("%s: back to the internal CA's certificate", TLS_CLIENT_ENDPOINT);
        *changed = true;
    }
}

static int converge_client(const struct hook_event *ev, const struct peers_view *pv,
                           const struct pg_settings *s, const char *peer_bundle,
                           struct tls_endpoint_state *st, bool *changed, char **err)
{
    char rel[64];
    int rc = relation_id(ev, &EP_CLIENT, rel, sizeof rel, err);
    if (rc < 0)
        return rc;
    if (!rel[0]) {
        drop_files(changed);
        return write_trust(peer_bundle, NULL, NULL, changed, err);
    }
    st->related = true;
    struct answer a;
    rc = obtain(ev, &EP_CLIENT, pv, s, rel, st, &a, err);
    if (rc < 0)
        goto out;
    if (a.ck.certificate) {
        uid_t uid;
        gid_t gid;
        if (postgres_ids(&uid, &gid) == 0) {
            int w1 = pki_write_file(TLS_CLIENT_CERT, a.ck.fullchain, uid, gid, err);
            int w2 = w1 < 0 ? w1 : pki_write_file(TLS_CLIENT_KEY, a.key, uid, gid, err);
            if (w2 < 0) {
                rc = w2;
                goto out;
            }
            if (w1 > 0 || w2 > 0) {
                *changed = true;
                log_info("%s: serving the provider's certificate (SHA-256 %.16s..., valid "
                         "until %ld)", TLS_CLIENT_ENDPOINT, a.ck.fingerprint,
                         (long)st->not_after);
            }
        }
        st->active = true;
    } else if (access(TLS_CLIENT_CERT, F_OK) == 0 && a.old_certificate) {
        st->active = true; /* keep serving what we had */
    }
    if (st->active && a.ca_now) {
        bool prev = a.ca_before && a.ca_before[0] && strcmp(a.ca_before, a.ca_now) != 0;
        if ((size_t)snprintf(st->ca, sizeof st->ca, "%s%s%s", a.ca_now, prev ? "\n" : "",
                             prev ? a.ca_before : "") >= sizeof st->ca)
            st->ca[0] = '\0';
    }
    rc = write_trust(peer_bundle, a.ca_now, a.ca_before, changed, err);
out:
    answer_clear(&a);
    return rc;
}

/* ---- peer-certificates ---------------------------------------------------------------- */

/* The provider CAs in the peer trust bundle (besides the internal CA), deduplicated. */
struct ca_set {
    char *pem[PEERS_MAX * PEER_CAS_MAX + 2];
    char fp[PEERS_MAX * PEER_CAS_MAX + 2][X509_SHA256_HEX];
    size_t n;
};

static void ca_set_clear(struct ca_set *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->pem[i]);
    c->n = 0;
}

/* Add one CA certificate (normalised PEM) when it is a CA, valid now, and not the internal
 * CA or already there. from: who says so, for the log. */
static void ca_set_add(struct ca_set *c, const char *pem, const char *internal_fp,
                       const char *from)
{
    if (!pem || !pem[0] || c->n >= sizeof c->pem / sizeof *c->pem)
        return;
    char *norm = NULL, *e = NULL;
    size_t count = 0;
    struct x509_info info;
    time_t now = time(NULL);
    if (x509_certs_normalize(pem, &norm, &count, &e) < 0 || count != 1 ||
        x509_cert_info(norm, &info, &e) < 0 || !info.is_ca || info.not_after < now ||
        info.not_before > now) {
        log_warning("%s: a peer CA that is not one valid CA certificate is not trusted (%s)",
                    from, e ? e : "not a CA, or not valid now");
        free(norm);
        free(e);
        return;
    }
    free(e);
    bool dup = strcmp(info.fingerprint, internal_fp) == 0;
    for (size_t i = 0; !dup && i < c->n; i++)
        dup = strcmp(c->fp[i], info.fingerprint) == 0;
    if (dup) {
        free(norm);
        return;
    }
    c->pem[c->n] = norm;
    snprintf(c->fp[c->n], sizeof c->fp[c->n], "%s", info.fingerprint);
    c->n++;
}

/* Each certificate of a peer's PEERS_KEY_TLS_CAS (at most PEER_CAS_MAX). */
static void ca_set_add_published(struct ca_set *c, const char *pems, const char *internal_fp,
                                 const char *from)
{
    static const char end[] = "-----END CERTIFICATE-----";
    const char *p = pems;
    for (int i = 0; *p && i < PEER_CAS_MAX; i++) {
        const char *e = strstr(p, end);
        if (!e)
            break;
        e += sizeof end - 1;
        char *one = strndup(p, (size_t)(e - p));
        if (!one)
            return;
        ca_set_add(c, one, internal_fp, from);
        free(one);
        p = e;
    }
}

static void fingerprint_of(const char *pem, char out[X509_SHA256_HEX])
{
    struct x509_info info;
    char *e = NULL;
    out[0] = '\0';
    if (pem && x509_cert_info(pem, &info, &e) == 0)
        snprintf(out, X509_SHA256_HEX, "%s", info.fingerprint);
    free(e);
}

/* Whether every peer says it trusts the CA with this fingerprint; *who: one that does not. */
static bool trusted_by_all(const struct peers_view *pv, const char *fp, const char **who)
{
    for (size_t i = 0; i < pv->n; i++) {
        if (!pv->units[i].tls_trust_known || !strstr(pv->units[i].tls_trust, fp)) {
            *who = pv->units[i].unit;
            return false;
        }
    }
    return true;
}

/* What tls_publish_trust says once the services loaded the bundle (hook thread only). */
static char trust_pending[PEERS_TLS_TRUST_MAX];
static bool trust_pending_set;
static char trust_published[PEERS_TLS_TRUST_MAX];
static bool trust_published_set;
static char *cas_published; /* PEERS_KEY_TLS_CAS as last set */
/* Since when the current candidate's CA waits for the peers' trust. */
static char waiting_fp[X509_SHA256_HEX];
static time_t waiting_since;

/* The peer identity to present: the internal certificate, the provider's certificate just
 * checked, or the one presented now (kept). */
enum peer_choice { PEER_INTERNAL, PEER_CANDIDATE, PEER_KEEP };

static enum peer_choice choose(const struct peers_view *pv, const struct answer *a,
                               const char *presented, const char *issuer, bool related,
                               struct tls_state *st)
{
    /* the presented provider certificate stays usable while it is valid */
    bool keepable = false;
    if (issuer && presented) {
        struct x509_info info;
        char *e = NULL;
        time_t now = time(NULL);
        keepable = x509_cert_info(presented, &info, &e) == 0 && info.not_after > now;
        free(e);
    }
    if (!related)
        return PEER_INTERNAL;
    if (!a->ck.certificate)
        return keepable ? PEER_KEEP : PEER_INTERNAL;
    if (presented && strcmp(presented, a->ck.fullchain) == 0)
        return PEER_CANDIDATE;
    if (issuer && strcmp(issuer, a->ck.ca) == 0)
        return PEER_CANDIDATE; /* a renewal from the same CA: every peer trusts it already */
    char fp[X509_SHA256_HEX];
    fingerprint_of(a->ck.ca, fp);
    const char *who = NULL;
    if (!trust_published_set || !strstr(trust_published, fp)) {
        /* this unit's own etcd has not loaded the CA yet (tls_publish_trust): its agent
         * would be refused by it */
        st->peer_waiting = true;
        return keepable ? PEER_KEEP : PEER_INTERNAL;
    }
    if (trusted_by_all(pv, fp, &who)) {
        waiting_fp[0] = '\0';
        return PEER_CANDIDATE;
    }
    time_t now = time(NULL);
    if (strcmp(waiting_fp, fp) != 0) {
        snprintf(waiting_fp, sizeof waiting_fp, "%s", fp);
        waiting_since = now;
        log_info("%s: the provider's CA (SHA-256 %.16s...) is presented once every peer "
                 "trusts it; waiting for %s", TLS_PEER_ENDPOINT, fp, who);
    }
    if (now - waiting_since >= TLS_PEER_SWITCH_WAIT_S) {
        log_warning("%s: %s has not said it trusts the provider's CA for %d s: presenting "
                    "its certificate anyway", TLS_PEER_ENDPOINT, who, TLS_PEER_SWITCH_WAIT_S);
        waiting_fp[0] = '\0';
        return PEER_CANDIDATE;
    }
    st->peer_waiting = true;
    return keepable ? PEER_KEEP : PEER_INTERNAL;
}

/* Write the three copies of the peer identity and bundle, and the issuer file. */
static int install_peer(const char *bundle, const char *cert, const char *key,
                        const char *issuer, bool *changed, char **err)
{
    bool any = false;
    int rc = pki_install_copy(&pki_peer_agent, NULL, bundle, cert, key, &any, err);
    if (rc == 0)
        rc = pki_install_copy(&pki_peer_pg, "postgres", bundle, cert, key, &any, err);
    if (rc == 0)
        rc = pki_install_copy(&pki_etcd, "etcd", bundle, cert, key, &any, err);
    if (rc < 0)
        return rc;
    if (issuer) {
        rc = pki_write_file(TLS_PEER_ISSUER, issuer, 0, 0, err);
        if (rc < 0)
            return rc;
    } else {
        (void)unlink(TLS_PEER_ISSUER);
    }
    if (any)
        *changed = true;
    return 0;
}

/* PEERS_KEY_TLS_CAS: the provider CAs of this unit's presented and awaited certificates. */
static int publish_cas(const struct hook_event *ev, const struct peers_view *pv,
                       const char *issuer, const char *candidate_ca, char **err)
{
    bool two = issuer && candidate_ca && strcmp(issuer, candidate_ca) != 0;
    const char *one = issuer ? issuer : candidate_ca;
    char *value = NULL;
    if (asprintf(&value, "%s%s%s", one ? one : "", two ? "\n" : "", two ? candidate_ca : "") <
        0)
        return errmsg_set(err, -ENOMEM, "out of memory");
    if (cas_published && strcmp(cas_published, value) == 0) {
        free(value);
        return 0;
    }
    int rc = peers_set(ev, pv, false, PEERS_KEY_TLS_CAS, value, err);
    if (rc < 0) {
        free(value);
        return rc;
    }
    free(cas_published);
    cas_published = value;
    return 0;
}

static int converge_peer(const struct hook_event *ev, const struct peers_view *pv,
                         const struct pg_settings *s, struct tls_state *st, char **bundle_out,
                         bool *changed, char **err)
{
    *bundle_out = NULL;
    struct tls_endpoint_state *est = &st->peer;
    char rel[64];
    int rc = relation_id(ev, &EP_PEER, rel, sizeof rel, err);
    if (rc < 0)
        return rc;
    est->related = rel[0] != '\0';
    char *internal_ca = NULL, *internal_cert = NULL, *internal_key = NULL;
    char *presented = NULL, *presented_key = NULL, *issuer = NULL, *bundle = NULL;
    struct answer a = {0};
    struct ca_set cas = {0};
    rc = pki_read_file(pki_agent.ca, false, &internal_ca, err);
    if (rc == 0)
        rc = pki_read_file(pki_agent.cert, false, &internal_cert, err);
    if (rc == 0)
        rc = pki_read_file(pki_agent.key, true, &internal_key, err);
    if (rc == 0)
        rc = pki_read_file(pki_peer_agent.cert, false, &presented, err);
    if (rc == 0)
        rc = pki_read_file(pki_peer_agent.key, true, &presented_key, err);
    if (rc == 0)
        rc = pki_read_file(TLS_PEER_ISSUER, false, &issuer, err);
    if (rc < 0)
        goto out;
    if (!internal_ca || !internal_cert || !internal_key) {
        rc = errmsg_set(err, -ENOENT, "the internal certificate is not in place yet");
        goto out;
    }
    if (issuer && !issuer[0]) {
        free(issuer);
        issuer = NULL;
    }
    if (!presented_key) {
        free(presented);
        presented = NULL;
    }
    if (est->related) {
        rc = obtain(ev, &EP_PEER, pv, s, rel, est, &a, err);
        if (rc < 0)
            goto out;
    }
    enum peer_choice c = choose(pv, &a, presented, issuer, est->related, st);
    const char *cert = internal_cert, *key = internal_key, *use_issuer = NULL;
    if (c == PEER_CANDIDATE) {
        cert = a.ck.fullchain;
        key = a.key;
        use_issuer = a.ck.ca;
    } else if (c == PEER_KEEP) {
        cert = presented;
        key = presented_key;
        use_issuer = issuer;
    }
    est->active = c != PEER_INTERNAL;
    st->peer_changed = presented && strcmp(presented, cert) != 0;
    if (!presented || strcmp(presented, cert) != 0)
        log_info("%s: presenting %s", TLS_PEER_ENDPOINT,
                 c == PEER_INTERNAL ? "the internal CA's certificate"
                                    : "the provider's certificate");

    char internal_fp[X509_SHA256_HEX];
    fingerprint_of(internal_ca, internal_fp);
    ca_set_add(&cas, use_issuer, internal_fp, "this unit");
    if (est->related && a.ck.certificate)
        ca_set_add(&cas, a.ck.ca, internal_fp, "this unit");
    for (size_t i = 0; i < pv->n; i++)
        if (pv->units[i].tls_cas[0])
            ca_set_add_published(&cas, pv->units[i].tls_cas, internal_fp, pv->units[i].unit);
    size_t len = strlen(internal_ca) + 1;
    for (size_t i = 0; i < cas.n; i++)
        len += strlen(cas.pem[i]) + 1;
    bundle = malloc(len);
    if (!bundle) {
        rc = errmsg_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    char *w = stpcpy(bundle, internal_ca);
    for (size_t i = 0; i < cas.n; i++)
        w = stpcpy(w, cas.pem[i]);
    rc = install_peer(bundle, cert, key, use_issuer, changed, err);
    if (rc < 0)
        goto out;
    if (pv->related) {
        rc = publish_cas(ev, pv, use_issuer, est->related ? a.ck.ca : NULL, err);
        if (rc < 0)
            goto out;
    }
    trust_pending[0] = '\0';
    for (size_t i = 0; i < cas.n && i < 4; i++) {
        size_t at = strlen(trust_pending);
        snprintf(trust_pending + at, sizeof trust_pending - at, "%s%s", at ? " " : "",
                 cas.fp[i]);
    }
    trust_pending_set = true;
    *bundle_out = bundle;
    bundle = NULL;
out:
    ca_set_clear(&cas);
    answer_clear(&a);
    free(internal_ca);
    free(internal_cert);
    password_free(internal_key);
    free(presented);
    password_free(presented_key);
    free(issuer);
    free(bundle);
    return rc;
}

int tls_converge(const struct hook_event *ev, const struct peers_view *pv,
                 const struct pg_settings *s, struct tls_state *st, bool *changed, char **err)
{
    *st = (struct tls_state){0};
    char *bundle = NULL;
    int rc = converge_peer(ev, pv, s, st, &bundle, changed, err);
    if (rc == 0)
        rc = converge_client(ev, pv, s, bundle, &st->client, changed, err);
    free(bundle);
    return rc;
}

int tls_publish_trust(const struct hook_event *ev, const struct peers_view *pv, bool loaded,
                      char **err)
{
    if (!loaded || !trust_pending_set || !pv->related)
        return 0;
    if (trust_published_set && strcmp(trust_pending, trust_published) == 0)
        return 0;
    if (peers_set(ev, pv, false, PEERS_KEY_TLS_TRUST, trust_pending, err) < 0)
        return -1;
    snprintf(trust_published, sizeof trust_published, "%s", trust_pending);
    trust_published_set = true;
    if (trust_pending[0])
        log_info("%s: every peer service of this unit trusts the provider CAs %s",
                 TLS_PEER_ENDPOINT, trust_pending);
    return 0;
}

int tls_set_private_key(const struct hook_event *ev, const struct peers_view *pv,
                        const struct pg_settings *s, const char *key_pem, bool *published,
                        char **err)
{
    *published = false;
    char *generated = NULL;
    int rc = 0;
    if (key_pem) {
        rc = x509_key_check(key_pem, strlen(key_pem), err);
        if (rc < 0)
            return rc;
    } else {
        rc = x509_key_generate(key_type(s), &generated, err);
        if (rc < 0)
            return rc;
    }
    char *key = NULL, *csr = NULL;
    rc = key_and_request(ev, &EP_CLIENT, pv, s, key_pem ? key_pem : generated, true, &key, &csr,
                         err);
    password_free(generated);
    /* the request goes out now (a secret set in this hook is not read back in it) */
    char rel[64];
    if (rc == 0)
        rc = relation_id(ev, &EP_CLIENT, rel, sizeof rel, err);
    if (rc == 0 && rel[0]) {
        rc = publish(ev, rel, csr, err);
        *published = rc == 0;
    }
    password_free(key);
    free(csr);
    return rc;
}
