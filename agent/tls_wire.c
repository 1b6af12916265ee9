/* The tls-certificates v1 wire format, requirer side (tls_wire.h): the request list this
 * unit publishes, the provider's certificate list read defensively into typed entries, and
 * the checks an issued certificate passes before the charm uses it. */
/* _GNU_SOURCE is how glibc is asked for vasprintf. */
#define _GNU_SOURCE
#include "tls_wire.h"

#include "errmsg.h"
#include "x509.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define REASON_LEN 128

static bool ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ---- the requirer's request list ------------------------------------------------------ */

int tls_wire_requests(const char *csr_pem, bool ca, char **json, char **err)
{
    if (!json)
        return errmsg_set(err, -EINVAL, "tls_wire_requests: no place for the result");
    *json = NULL;
    if (!csr_pem)
        return 0; /* nothing outstanding: the caller removes the key */
    size_t n = strnlen(csr_pem, X509_PEM_MAX + 1);
    if (n > X509_PEM_MAX)
        return errmsg_set(err, -EINVAL, "the request is larger than %zu bytes", X509_PEM_MAX);
    const char *s = csr_pem;
    while (n > 0 && ws(*s)) {
        s++;
        n--;
    }
    while (n > 0 && ws(s[n - 1]))
        n--;
    static const char head[] = "-----BEGIN ", tail[] = "-----";
    if (n < sizeof(head) - 1 + sizeof(tail) - 1 || memcmp(s, head, sizeof(head) - 1) != 0 ||
        memcmp(s + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1) != 0)
        return errmsg_set(err, -EINVAL, "the request is not a PEM block alone");
    /* what is published, stripped, must be one request (x509_csr_same) whose signature,
     * key and names are valid (x509_csr_info) */
    char *e = NULL;
    bool same = false;
    char *stripped = strndup(s, n);
    struct x509_csr_info *info = malloc(sizeof(*info));
    int rc = !stripped || !info ? -ENOMEM : 0;
    if (rc == 0)
        rc = x509_csr_same(stripped, stripped, &same, &e);
    if (rc == 0)
        rc = x509_csr_info(stripped, info, &e);
    free(info);
    free(stripped);
    if (rc < 0) {
        rc = errmsg_set(err, rc == -ENOMEM ? -ENOMEM : -EINVAL, "the request is not valid: %s",
                        ERRMSG(e));
        free(e);
        return rc;
    }
    json_t *text = json_stringn(s, n);
    if (!text)
        return errmsg_set(err, -EINVAL, "the request is not UTF-8 text");
    json_t *entry = json_object();
    json_t *list = json_array();
    int bad = !entry || !list;
    bad = bad || json_object_set(entry, "certificate_signing_request", text) != 0;
    bad = bad || json_object_set_new(entry, "ca", json_boolean(ca)) != 0;
    bad = bad || json_array_append(list, entry) != 0;
    char *out = bad ? NULL : json_dumps(list, JSON_COMPACT);
    json_decref(text);
    json_decref(entry);
    json_decref(list);
    if (!out)
        return errmsg_set(err, -ENOMEM, "out of memory writing the request list");
    *json = out;
    return 0;
}

/* ---- the provider's certificate list ---------------------------------------------------- */

/* Append a reason to *problems ("; "-joined). -ENOMEM when it cannot. */
__attribute__((format(printf, 2, 3))) static int note(char **problems, const char *fmt, ...)
{
    if (!problems)
        return 0;
    char *add = NULL;
    va_list ap;
    va_start(ap, fmt);
    int k = vasprintf(&add, fmt, ap);
    va_end(ap);
    if (k < 0)
        return -ENOMEM;
    if (!*problems) {
        *problems = add;
        return 0;
    }
    char *joined = NULL;
    k = asprintf(&joined, "%s; %s", *problems, add);
    free(add);
    if (k < 0)
        return -ENOMEM;
    free(*problems);
    *problems = joined;
    return 0;
}

/* What is wrong with a value that should be PEM text, NULL when nothing. */
static const char *pem_value_problem(const json_t *v)
{
    if (!v)
        return "is missing";
    if (!json_is_string(v))
        return "is not a string";
    size_t n = json_string_length(v);
    if (n == 0)
        return "is empty";
    if (n > X509_PEM_MAX)
        return "is too large";
    if (memchr(json_string_value(v), '\0', n))
        return "holds a NUL byte";
    return NULL;
}

/* A copy of a string value that passed pem_value_problem. */
static char *pem_copy(const json_t *v)
{
    return strndup(json_string_value(v), json_string_length(v));
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "of an unknown type";
}

static void entry_clear(struct tls_provided *p)
{
    free(p->csr);
    free(p->certificate);
    free(p->ca);
    for (size_t i = 0; i < p->n_chain; i++)
        free(p->chain ? p->chain[i] : NULL);
    free(p->chain);
    memset(p, 0, sizeof(*p));
}

/* One list entry into *p: 0; 1 when it is skipped (reason in reason[]); -ENOMEM. */
static int entry_read(const json_t *o, struct tls_provided *p, char reason[REASON_LEN])
{
    static const char *const fields[] = {"certificate_signing_request", "certificate", "ca"};
    memset(p, 0, sizeof(*p));
    if (!json_is_object(o)) {
        (void)snprintf(reason, REASON_LEN, "is %s, not an object", json_kind(o));
        return 1;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *bad = pem_value_problem(json_object_get(o, fields[i]));
        if (bad) {
            (void)snprintf(reason, REASON_LEN, "%s %s", fields[i], bad);
            return 1;
        }
    }
    const json_t *chain = json_object_get(o, "chain");
    size_t n_chain = 0;
    if (chain && !json_is_null(chain)) {
        if (!json_is_array(chain)) {
            (void)snprintf(reason, REASON_LEN, "chain is %s, not a list", json_kind(chain));
            return 1;
        }
        n_chain = json_array_size(chain);
        if (n_chain > TLS_WIRE_MAX_CHAIN) {
            (void)snprintf(reason, REASON_LEN, "chain holds %zu certificates (at most %d)", n_chain,
                           TLS_WIRE_MAX_CHAIN);
            return 1;
        }
        for (size_t i = 0; i < n_chain; i++) {
            const char *bad = pem_value_problem(json_array_get(chain, i));
            if (bad) {
                (void)snprintf(reason, REASON_LEN, "chain[%zu] %s", i, bad);
                return 1;
            }
        }
    }
    const json_t *revoked = json_object_get(o, "revoked");
    if (revoked && !json_is_null(revoked) && !json_is_boolean(revoked)) {
        (void)snprintf(reason, REASON_LEN, "revoked is %s, not a boolean", json_kind(revoked));
        return 1;
    }
    p->revoked = json_is_true(revoked);
    p->csr = pem_copy(json_object_get(o, fields[0]));
    p->certificate = pem_copy(json_object_get(o, fields[1]));
    p->ca = pem_copy(json_object_get(o, fields[2]));
    bool ok = p->csr && p->certificate && p->ca;
    if (ok && n_chain > 0) {
        p->chain = calloc(n_chain, sizeof(*p->chain));
        ok = p->chain != NULL;
        for (size_t i = 0; ok && i < n_chain; i++) {
            p->chain[i] = pem_copy(json_array_get(chain, i));
            p->n_chain = i + 1;
            ok = p->chain[i] != NULL;
        }
    }
    if (!ok) {
        entry_clear(p);
        return -ENOMEM;
    }
    return 0;
}

void tls_provided_free(struct tls_provided *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        entry_clear(&v[i]);
    free(v);
}

int tls_wire_parse_provider(const char *json_text, size_t len, struct tls_provided **out, size_t *n,
                            char **problems, char **err)
{
    if (problems)
        *problems = NULL;
    if (!out || !n)
        return errmsg_set(err, -EINVAL, "tls_wire_parse_provider: no place for the result");
    *out = NULL;
    *n = 0;
    if (!json_text)
        return errmsg_set(err, -EINVAL, "no certificates value was given");
    json_error_t je;
    /* JSON_ALLOW_NUL: a \u0000 costs one entry (pem_value_problem), not the whole list */
    json_t *root = json_loadb(json_text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!root) /* je.text may quote the input: only the position is reported */
        return errmsg_set(err, -EINVAL,
                          "the certificates value is not valid JSON (line %d, column %d)", je.line,
                          je.column);
    if (!json_is_array(root)) {
        int rc = errmsg_set(err, -EINVAL, "the certificates value is %s, not a JSON list",
                            json_kind(root));
        json_decref(root);
        return rc;
    }
    size_t total = json_array_size(root);
    if (total == 0) {
        json_decref(root);
        return 0;
    }
    size_t cap = total < TLS_WIRE_MAX_ENTRIES ? total : TLS_WIRE_MAX_ENTRIES;
    struct tls_provided *v = calloc(cap, sizeof(*v));
    if (!v) {
        json_decref(root);
        return errmsg_set(err, -ENOMEM, "out of memory reading the certificates value");
    }
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < cap && rc == 0; i++) {
        char reason[REASON_LEN] = "";
        int r = entry_read(json_array_get(root, i), &v[k], reason);
        if (r == 0)
            k++;
        else if (r > 0)
            rc = note(problems, "certificates[%zu]: %s", i, reason);
        else
            rc = r;
    }
    if (rc == 0 && total > cap)
        rc = note(problems, "%zu more entries were ignored (at most %d are read)", total - cap,
                  TLS_WIRE_MAX_ENTRIES);
    json_decref(root);
    if (rc < 0) {
        tls_provided_free(v, k);
        if (problems) {
            free(*problems);
            *problems = NULL;
        }
        return errmsg_set(err, -ENOMEM, "out of memory reading the certificates value");
    }
    if (k == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    *n = k;
    return 0;
}

/* ---- matching and checking ---------------------------------------------------------------- */

int tls_wire_find(const struct tls_provided *v, size_t n, const char *my_csr_pem)
{
    if (!v || !my_csr_pem)
        return -1;
    int last = -1, last_valid = -1;
    for (size_t i = 0; i < n && i <= (size_t)INT_MAX; i++) {
        bool same = false;
        if (!v[i].csr || x509_csr_same(v[i].csr, my_csr_pem, &same, NULL) < 0 || !same)
            continue;
        last = (int)i;
        if (!v[i].revoked)
            last_valid = (int)i;
    }
    return last_valid >= 0 ? last_valid : last;
}

void tls_checked_clear(struct tls_checked *c)
{
    if (!c)
        return;
    free(c->certificate);
    free(c->fullchain);
    free(c->ca);
    memset(c, 0, sizeof(*c));
}

/* pem normalised into *out, which must hold exactly one certificate. */
static int one_cert(const char *pem, const char *what, char **out, char **why)
{
    char *e = NULL;
    size_t k = 0;
    int rc = x509_certs_normalize(pem, out, &k, &e);
    if (rc < 0) {
        rc = errmsg_set(why, rc == -ENOMEM ? -ENOMEM : -EINVAL, "the %s is not usable: %s", what,
                        ERRMSG(e));
        free(e);
        return rc;
    }
    if (k != 1) {
        free(*out);
        *out = NULL;
        return errmsg_set(why, -EINVAL, "the %s holds %zu certificates: one was expected", what, k);
    }
    return 0;
}

/* Append b to the malloc'd string *a. */
static int append(char **a, const char *b)
{
    size_t la = strlen(*a), lb = strlen(b);
    char *grown = realloc(*a, la + lb + 1);
    if (!grown)
        return -ENOMEM;
    memcpy(grown + la, b, lb + 1);
    *a = grown;
    return 0;
}

/* chain[1..] less self-signed roots, after the certificate, into c->fullchain. */
static int build_fullchain(const struct tls_provided *e, struct tls_checked *c,
                           struct x509_info *info, char **why)
{
    c->fullchain = strdup(c->certificate);
    if (!c->fullchain)
        return errmsg_set(why, -ENOMEM, "out of memory building the certificate chain");
    if (e->n_chain == 0)
        return 0;
    if (!e->chain)
        return errmsg_set(why, -EINVAL, "the chain is missing");
    char *first = NULL;
    int rc = one_cert(e->chain[0], "first certificate of the chain", &first, why);
    if (rc < 0)
        return rc;
    bool same = strcmp(first, c->certificate) == 0;
    free(first);
    if (!same)
        return errmsg_set(why, -EKEYREJECTED, "the chain does not start with the certificate");
    for (size_t i = 1; i < e->n_chain; i++) {
        char *pem = NULL, *x = NULL;
        rc = one_cert(e->chain[i], "chain", &pem, why);
        if (rc < 0)
            return rc;
        rc = x509_cert_info(pem, info, &x);
        if (rc < 0) {
            rc = errmsg_set(why, rc == -ENOMEM ? -ENOMEM : -EINVAL,
                            "certificate %zu of the chain cannot be read: %s", i, ERRMSG(x));
            free(x);
        } else if (!info->self_signed && append(&c->fullchain, pem) < 0) {
            rc = errmsg_set(why, -ENOMEM, "out of memory building the certificate chain");
        }
        free(pem);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The checks of tls_wire_check after `revoked`, filling c; info is scratch space. */
static int check_entry(const struct tls_provided *e, const char *key_pem, bool want_ca, time_t now,
                       struct tls_checked *c, struct x509_info *info, char **why)
{
    char *x = NULL;
    int rc = one_cert(e->certificate, "certificate", &c->certificate, why);
    if (rc < 0)
        return rc;
    bool match = false;
    rc = x509_key_matches_cert(key_pem, c->certificate, &match, &x);
    if (rc < 0) {
        rc = errmsg_set(why, rc, "cannot compare the certificate with the private key: %s",
                        ERRMSG(x));
        free(x);
        return rc;
    }
    if (!match)
        return errmsg_set(why, -EKEYREJECTED,
                          "the certificate is for another key than this unit's private key");
    rc = x509_cert_info(c->certificate, info, &x);
    if (rc < 0) {
        rc = errmsg_set(why, rc == -ENOMEM ? -ENOMEM : -EINVAL,
                        "the certificate cannot be read: %s", ERRMSG(x));
        free(x);
        return rc;
    }
    if (info->is_ca != want_ca)
        return errmsg_set(why, -EINVAL,
                          "CA flag mismatch: the certificate is %s (basicConstraints) but %s was "
                          "requested",
                          info->is_ca ? "a CA" : "not a CA",
                          want_ca ? "a CA certificate" : "a certificate that is not a CA");
    if (now < info->not_before)
        return errmsg_set(why, -EKEYEXPIRED, "the certificate is not valid yet (for %lld s more)",
                          (long long)(info->not_before - now));
    if (now > info->not_after)
        return errmsg_set(why, -EKEYEXPIRED, "the certificate expired %lld s ago",
                          (long long)(now - info->not_after));
    c->not_before = info->not_before;
    c->not_after = info->not_after;
    memcpy(c->fingerprint, info->fingerprint, sizeof(c->fingerprint));

    rc = one_cert(e->ca, "CA certificate", &c->ca, why);
    if (rc < 0)
        return rc;
    rc = x509_cert_info(c->ca, info, &x);
    if (rc < 0) {
        rc = errmsg_set(why, rc == -ENOMEM ? -ENOMEM : -EINVAL,
                        "the CA certificate cannot be read: %s", ERRMSG(x));
        free(x);
        return rc;
    }
    if (!info->is_ca)
        return errmsg_set(why, -EINVAL, "the CA certificate is not a CA (basicConstraints)");

    rc = build_fullchain(e, c, info, why);
    if (rc < 0)
        return rc;
    rc = x509_verify_anchored(c->fullchain, c->ca, now, &x);
    if (rc < 0) {
        if (rc != -EKEYEXPIRED && rc != -ENOMEM)
            rc = -EKEYREJECTED;
        rc = errmsg_set(why, rc, "the certificate does not verify against its CA (%s)", ERRMSG(x));
        free(x);
    }
    return rc;
}

int tls_wire_check(const struct tls_provided *e, const char *key_pem, bool want_ca, time_t now,
                   struct tls_checked *out, char **why)
{
    if (!out)
        return errmsg_set(why, -EINVAL, "tls_wire_check: no place for the result");
    memset(out, 0, sizeof(*out));
    if (!e)
        return errmsg_set(why, -EINVAL, "no certificate entry was given");
    if (e->revoked)
        return errmsg_set(why, -ECANCELED, "the certificate was revoked by the provider");
    struct x509_info *info = malloc(sizeof(*info));
    if (!info)
        return errmsg_set(why, -ENOMEM, "out of memory checking a certificate");
    struct tls_checked c;
    memset(&c, 0, sizeof(c));
    int rc = check_entry(e, key_pem, want_ca, now, &c, info, why);
    free(info);
    if (rc < 0) {
        tls_checked_clear(&c);
        return rc;
    }
    *out = c;
    return 0;
}
