/* The tls-certificates requirer on client-certificates (tls.h): key and request in a
 * unit-owned secret, the request in the unit databag, the provider's answer checked and
 * installed, renewal at 90 % of the validity or on revocation, fall back to the internal
 * CA when the relation goes. The wire format and the checks are tls_wire.c's. */
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

#define LABEL_KEY "tls-client-private-key"
#define LABEL_CERT "tls-client-certificate"
#define RENEW_PERCENT 90

/* What this unit asks for: CN its address (Charmed PostgreSQL uses the database endpoint's
 * bind address), SANs its member name, host name, address (also as a DNS name, as Charmed
 * PostgreSQL does for pgBackRest) and the address as an IP. */
struct names {
    char cn[64];
    const char *dns[4];
    size_t n_dns;
    const char *ips[1];
    size_t n_ips;
    char host[256];
};

static void names_of(const struct peers_view *pv, struct names *n)
{
    *n = (struct names){0};
    snprintf(n->cn, sizeof n->cn, "%s", pv->my_address[0] ? pv->my_address : pv->me);
    n->dns[n->n_dns++] = pv->me;
    if (gethostname(n->host, sizeof n->host) == 0 && n->host[0] && strcmp(n->host, pv->me) != 0)
        n->dns[n->n_dns++] = n->host;
    if (pv->my_address[0]) {
        n->dns[n->n_dns++] = pv->my_address;
        n->ips[n->n_ips++] = pv->my_address;
    }
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
static int new_request(const struct peers_view *pv, const char *key, char **csr, char **err)
{
    struct names n;
    names_of(pv, &n);
    struct x509_sans sans = {.dns = n.dns, .n_dns = n.n_dns, .ips = n.ips, .n_ips = n.n_ips};
    return x509_csr_create_unique(key, n.cn, &sans, csr, err);
}

/* Whether csr still asks for this unit's names. */
static bool request_current(const struct peers_view *pv, const char *csr)
{
    struct x509_csr_info info;
    char *e = NULL;
    bool ok = x509_csr_info(csr, &info, &e) == 0;
    free(e);
    if (!ok)
        return false;
    struct names n;
    names_of(pv, &n);
    struct x509_sans want = {.dns = n.dns, .n_dns = n.n_dns, .ips = n.ips, .n_ips = n.n_ips};
    return strcmp(info.cn, n.cn) == 0 && x509_sans_equal(&info.sans, &want);
}

/* key and request from the secret; created (or replaced: new_key, renew) as needed.
 * *key is a sodium buffer, *csr malloc'd. */
static int key_and_request(const struct hook_event *ev, const struct peers_view *pv,
                           const struct pg_settings *s, const char *new_key, bool renew,
                           char **key, char **csr, char **err)
{
    *key = NULL;
    *csr = NULL;
    json_t *content = NULL;
    int rc = hooktool_secret_get(ev, NULL, LABEL_KEY, &content, err);
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
            log_warning("the stored key for %s is unusable (%s): a new one", TLS_CLIENT_ENDPOINT,
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
    if (!dirty && !renew && c && request_current(pv, c)) {
        *csr = strdup(c);
    } else {
        rc = new_request(pv, *key, csr, err);
        if (rc < 0)
            goto out;
        dirty = true;
        log_info("new certificate request on %s (%s)", TLS_CLIENT_ENDPOINT,
                 new_key ? "a new key was set" : renew ? "renewal" : "this unit's names");
    }
    if (dirty) {
        const struct secret_field f[] = {{"private-key", *key}, {"csr", *csr}};
        rc = store(ev, LABEL_KEY, f, 2, err);
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

/* relation-ids client-certificates: the first id into rel ("" when none). */
static int relation_id(const struct hook_event *ev, char *rel, size_t size, char **err)
{
    rel[0] = '\0';
    const char *argv[] = {"relation-ids", TLS_CLIENT_ENDPOINT, NULL};
    json_t *ids = NULL;
    int rc = hooktool_json(ev, argv, &ids, err);
    if (rc < 0)
        return rc;
    if (json_is_array(ids) && json_array_size(ids) > 0 &&
        json_is_string(json_array_get(ids, 0)))
        snprintf(rel, size, "%s", json_string_value(json_array_get(ids, 0)));
    json_decref(ids);
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

/* trust.pem: the internal CA, then the provider's CA and the one before it. */
static int write_trust(const char *ca, const char *previous, bool *changed, char **err)
{
    uid_t uid;
    gid_t gid;
    if (postgres_ids(&uid, &gid) < 0)
        return 0;
    char *internal = NULL;
    int rc = pki_read_file(pki_pg.ca, false, &internal, err);
    if (rc < 0 || !internal) {
        free(internal);
        return rc;
    }
    char *bundle = NULL;
    bool prev = previous && previous[0] && (!ca || strcmp(previous, ca) != 0);
    if (asprintf(&bundle, "%s%s%s%s%s", internal, ca ? "\n" : "", ca ? ca : "",
                 prev ? "\n" : "", prev ? previous : "") < 0) {
        free(internal);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    free(internal);
    rc = pki_write_file(TLS_TRUST, bundle, uid, gid, err);
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

/* Bad data from the provider: said in the status and the log; the current files stay. */
static void problem(struct tls_state *st, const char *what, const char *why)
{
    snprintf(st->message, sizeof st->message,
             "%s: %s (%s); keeping the current certificate", TLS_CLIENT_ENDPOINT, what, why);
    log_warning("%s", st->message);
}

/* What was stored from the provider last time (certificate and CAs), for renewal timing and
 * the trust bundle. */
struct stored {
    json_t *content;
    const char *certificate, *ca, *previous_ca;
};

int tls_converge(const struct hook_event *ev, const struct peers_view *pv,
                 const struct pg_settings *s, struct tls_state *st, bool *changed, char **err)
{
    *st = (struct tls_state){0};
    char rel[64];
    int rc = relation_id(ev, rel, sizeof rel, err);
    if (rc < 0)
        return rc;
    /* during relation-broken the dying relation is still listed (juju.md): it is gone */
    if (rel[0] && ev->kind == EVENT_HOOK && ev->relation && ev->relation_id >= 0 &&
        strcmp(ev->relation, TLS_CLIENT_ENDPOINT) == 0 && strstr(ev->name, "-relation-broken")) {
        char dying[64];
        snprintf(dying, sizeof dying, "%s:%d", TLS_CLIENT_ENDPOINT, ev->relation_id);
        if (strcmp(dying, rel) == 0)
            rel[0] = '\0';
    }
    if (!rel[0]) {
        drop_files(changed);
        return write_trust(NULL, NULL, changed, err);
    }
    st->related = true;
    struct stored old = {0};
    if (hooktool_secret_get(ev, NULL, LABEL_CERT, &old.content, NULL) == 0) {
        old.certificate = field(old.content, "certificate");
        old.ca = field(old.content, "ca-certificate");
        old.previous_ca = field(old.content, "previous-ca");
    }
    char *key = NULL, *csr = NULL, *value = NULL;
    struct tls_provided *v = NULL;
    size_t n = 0;
    struct tls_checked ck = {0};
    /* A new request when the answer to the current one is due for renewal or revoked;
     * while the provider has not answered the current request, nothing changes (the
     * certificate held serves until the new one arrives). */
    bool renew = false;
    rc = key_and_request(ev, pv, s, NULL, false, &key, &csr, err);
    if (rc < 0)
        goto out;
    rc = provider_value(ev, rel, &value, err);
    if (rc < 0)
        goto out;
    int at = -1;
    if (value) {
        char *problems = NULL, *perr = NULL;
        if (tls_wire_parse_provider(value, strlen(value), &v, &n, &problems, &perr) < 0) {
            problem(st, "the provider's data is unusable", ERRMSG(perr));
        } else {
            if (problems)
                log_warning("client-certificates: entries ignored: %s", problems);
            at = tls_wire_find(v, n, csr);
        }
        free(problems);
        free(perr);
    }
    if (at >= 0) {
        char *why = NULL;
        int c = tls_wire_check(&v[at], key, false, time(NULL), &ck, &why);
        if (c == -ECANCELED) {
            renew = true;
            log_info("client-certificates: the provider revoked this unit's certificate");
        } else if (c < 0) {
            problem(st, "the provider's certificate is not used", ERRMSG(why));
        } else {
            struct x509_info info;
            char *e = NULL;
            if (x509_cert_info(ck.certificate, &info, &e) == 0) {
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
        password_free(key);
        free(csr);
        key = NULL;
        csr = NULL;
        rc = key_and_request(ev, pv, s, NULL, true, &key, &csr, err);
        if (rc < 0)
            goto out;
        st->renew_at = 0;
    }
    rc = publish(ev, rel, csr, err);
    if (rc < 0)
        goto out;

    const char *ca_now = old.ca, *ca_before = old.previous_ca;
    if (ck.certificate) {
        uid_t uid;
        gid_t gid;
        if (postgres_ids(&uid, &gid) == 0) {
            int a = pki_write_file(TLS_CLIENT_CERT, ck.fullchain, uid, gid, err);
            int b = a < 0 ? a : pki_write_file(TLS_CLIENT_KEY, key, uid, gid, err);
            if (b < 0) {
                rc = b;
                goto out;
            }
            if (a > 0 || b > 0) {
                *changed = true;
                log_info("client-certificates: serving the provider's certificate (SHA-256 "
                         "%.16s..., valid until %ld)", ck.fingerprint, (long)st->not_after);
            }
        }
        bool new_cert = !old.certificate || strcmp(old.certificate, ck.certificate) != 0;
        bool new_ca = !old.ca || strcmp(old.ca, ck.ca) != 0;
        if (new_cert || new_ca) {
            const char *prev = new_ca && old.ca ? old.ca : old.previous_ca;
            const struct secret_field f[] = {{"certificate", ck.certificate},
                                             {"ca-certificate", ck.ca},
                                             {"chain", ck.fullchain},
                                             {"previous-ca", prev ? prev : ""}};
            rc = store(ev, LABEL_CERT, f, 4, err);
            if (rc < 0)
                goto out;
            ca_before = prev;
        }
        ca_now = ck.ca;
        st->active = true;
    } else if (access(TLS_CLIENT_CERT, F_OK) == 0 && old.certificate) {
        st->active = true; /* keep serving what we had */
    }
    rc = write_trust(ca_now, ca_before, changed, err);

out:
    tls_checked_clear(&ck);
    tls_provided_free(v, n);
    free(value);
    password_free(key);
    free(csr);
    json_decref(old.content);
    return rc;
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
    rc = key_and_request(ev, pv, s, key_pem ? key_pem : generated, true, &key, &csr, err);
    password_free(generated);
    /* the request goes out now (a secret set in this hook is not read back in it) */
    char rel[64];
    if (rc == 0)
        rc = relation_id(ev, rel, sizeof rel, err);
    if (rc == 0 && rel[0]) {
        rc = publish(ev, rel, csr, err);
        *published = rc == 0;
    }
    password_free(key);
    free(csr);
    return rc;
}
