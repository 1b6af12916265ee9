/* Unit tests for agent/tls_wire.c: the request list's exact shape, reading provider
 * certificate lists (good, malformed, oversized), matching an entry to this unit's request,
 * and checking an entry, with real certificates from x509.c (and an intermediate CA built
 * with OpenSSL directly). */
#define _GNU_SOURCE
#include "check.h"

#include "errmsg.h"
#include "password.h"
#include "tls_wire.h"
#include "x509.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define DAY 86400L

/* ---- fixtures --------------------------------------------------------------------------- */

static const char *const dns[] = {"postgresql-0", "10.0.0.5"};
static const char *const ips[] = {"10.0.0.5"};
static const struct x509_sans sans = {dns, 2, ips, 1};

struct fx {
    char *ca, *ca_key;       /* root from x509_ca_create (ca_key: sodium) */
    char *other, *other_key; /* another root */
    char *key, *csr, *cert;  /* the unit: key (sodium), unique request, certificate from ca */
    char *key2, *csr2;       /* another unit */
};

static bool fx_make(struct fx *f)
{
    char *err = NULL;
    memset(f, 0, sizeof(*f));
    int rc = x509_ca_create("test-root", 30, &f->ca, &f->ca_key, &err);
    if (rc == 0)
        rc = x509_ca_create("other-root", 30, &f->other, &f->other_key, &err);
    if (rc == 0)
        rc = x509_key_generate(X509_KEY_ECDSA_P256, &f->key, &err);
    if (rc == 0)
        rc = x509_csr_create_unique(f->key, "postgresql-0", &sans, &f->csr, &err);
    if (rc == 0)
        rc = x509_issue(f->csr, f->ca, f->ca_key, 10, X509_USAGE_SERVER_CLIENT, &f->cert, &err);
    if (rc == 0)
        rc = x509_key_generate(X509_KEY_ECDSA_P256, &f->key2, &err);
    if (rc == 0)
        rc = x509_csr_create_unique(f->key2, "postgresql-1", &sans, &f->csr2, &err);
    if (rc != 0)
        fprintf(stderr, "  fixture: %s\n", ERRMSG(err));
    free(err);
    return rc == 0;
}

static void fx_free(struct fx *f)
{
    free(f->ca);
    password_free(f->ca_key);
    free(f->other);
    password_free(f->other_key);
    password_free(f->key);
    free(f->csr);
    free(f->cert);
    password_free(f->key2);
    free(f->csr2);
    memset(f, 0, sizeof(*f));
}

static char *pem_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = n > 0 ? strndup(data, (size_t)n) : NULL;
    BIO_free(b);
    return s;
}

/* A CA made with OpenSSL directly (no pathlen limit): self-signed when issuer is NULL, else
 * signed by issuer/issuer_key. *cert and *key are malloc'd PEM. */
static bool raw_ca(const char *cn, X509 *issuer, EVP_PKEY *issuer_key, X509 **cert_out,
                   EVP_PKEY **key_out, char **cert, char **key)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    bool ok = pk && x && X509_set_version(x, X509_VERSION_3) == 1 &&
              ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(time(NULL) & 0xffffff)) == 1 &&
              X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                                         (const unsigned char *)cn, -1, -1, 0) == 1 &&
              X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
                                             : X509_get_subject_name(x)) == 1 &&
              X509_set_pubkey(x, pk) == 1 && X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
              X509_gmtime_adj(X509_getm_notAfter(x), 30 * DAY);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    static const struct {
        int nid;
        const char *value;
    } exts[] = {{NID_basic_constraints, "critical,CA:TRUE"},
                {NID_key_usage, "critical,keyCertSign,cRLSign"},
                {NID_subject_key_identifier, "hash"},
                {NID_authority_key_identifier, "keyid:always"}};
    for (size_t i = 0; ok && i < sizeof(exts) / sizeof(exts[0]); i++) {
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        ok = e && X509_add_ext(x, e, -1) == 1;
        X509_EXTENSION_free(e);
    }
    ok = ok && X509_sign(x, issuer_key ? issuer_key : pk, EVP_sha256()) > 0;
    BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
    ok = ok && bc && bk && PEM_write_bio_X509(bc, x) == 1 &&
         PEM_write_bio_PrivateKey(bk, pk, NULL, NULL, 0, NULL, NULL) == 1;
    *cert = ok ? pem_string(bc) : NULL;
    *key = ok ? pem_string(bk) : NULL;
    if (!ok) {
        BIO_free(bc);
        BIO_free(bk);
    }
    *cert_out = x;
    *key_out = pk;
    return ok && *cert && *key;
}

/* pem's base64 body rewrapped at width columns, with "\r\n \n" after it. */
static char *rewrap(const char *pem, size_t width)
{
    const char *body = strchr(pem, '\n');
    const char *end = strstr(pem, "-----END");
    char *out = body && end ? malloc(strlen(pem) * 2 + 16) : NULL;
    if (!out)
        return NULL;
    size_t head = (size_t)(body - pem) + 1, k = head, col = 0;
    memcpy(out, pem, head);
    for (const char *p = body + 1; p < end; p++) {
        if (*p == '\n')
            continue;
        out[k++] = *p;
        if (++col == width) {
            out[k++] = '\n';
            col = 0;
        }
    }
    if (col)
        out[k++] = '\n';
    sprintf(out + k, "%s\r\n \n", end);
    return out;
}

/* No PEM armour, no base64 of a DER sequence, no key material in a message. */
static bool clean(const char *msg)
{
    return msg && !strstr(msg, "-----") && !strstr(msg, "BEGIN") && !strstr(msg, "MII") &&
           !strstr(msg, "MHc");
}

/* One provider entry: csr, certificate, ca, and chain (stolen; NULL: absent). */
static json_t *entry(const char *csr, const char *cert, const char *ca, json_t *chain)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "certificate_signing_request", csr, "certificate",
                          cert, "ca", ca);
    if (o && chain)
        json_object_set_new(o, "chain", chain);
    else
        json_decref(chain);
    return o;
}

/* The list's JSON text (steals list). */
static char *dump(json_t *list)
{
    char *s = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    return s;
}

struct parsed {
    struct tls_provided *v;
    size_t n;
    char *problems;
    char *err;
    int rc;
};

static void parse(struct parsed *p, const char *text, size_t len)
{
    memset(p, 0, sizeof(*p));
    p->n = 99;
    p->rc = tls_wire_parse_provider(text, len, &p->v, &p->n, &p->problems, &p->err);
}

static void parsed_free(struct parsed *p)
{
    tls_provided_free(p->v, p->n);
    free(p->problems);
    free(p->err);
    memset(p, 0, sizeof(*p));
}

/* ---- the request list ------------------------------------------------------------------- */

TEST(requests_exact_shape)
{
    struct fx f;
    char *json = NULL, *err = NULL, *padded = NULL;
    if (!fx_make(&f)) {
        CHECK(false);
        goto out;
    }
    if (asprintf(&padded, " \n\t%s\r\n\n  ", f.csr) < 0)
        padded = NULL;
    for (int ca = 0; ca < 2; ca++) {
        free(json);
        json = NULL;
        CHECK(padded && tls_wire_requests(padded, ca == 1, &json, &err) == 0);
        if (!json)
            continue;
        /* exact text: the stripped PEM with its newlines escaped */
        size_t n = strlen(f.csr) - 1; /* OpenSSL ends the PEM with one newline */
        char *want = malloc(2 * n + 128);
        if (!want)
            continue;
        char *q = want + sprintf(want, "[{\"certificate_signing_request\":\"");
        for (size_t i = 0; i < n; i++) {
            if (f.csr[i] == '\n') {
                *q++ = '\\';
                *q++ = 'n';
            } else {
                *q++ = f.csr[i];
            }
        }
        sprintf(q, "\",\"ca\":%s}]", ca ? "true" : "false");
        CHECK_STR(json, want);
        free(want);
        /* the requirer schema's structure: a list of objects with exactly these two keys,
         * the request a string (raw PEM, stripped), ca a boolean */
        json_t *root = json_loads(json, 0, NULL);
        CHECK(json_is_array(root) && json_array_size(root) == 1);
        json_t *o = json_array_get(root, 0);
        CHECK(json_is_object(o) && json_object_size(o) == 2);
        json_t *r = json_object_get(o, "certificate_signing_request");
        json_t *c = json_object_get(o, "ca");
        CHECK(json_is_string(r) && json_is_boolean(c) && json_is_true(c) == (ca == 1));
        const char *text = json_string_value(r);
        CHECK(text && strncmp(text, "-----BEGIN CERTIFICATE REQUEST-----\n", 36) == 0);
        CHECK(text && strlen(text) == n && strncmp(text, f.csr, n) == 0);
        CHECK(text && strcmp(text + n - 33, "-----END CERTIFICATE REQUEST-----") == 0);
        json_decref(root);
    }
    /* no request outstanding: no value (the key is removed) */
    free(json);
    char sentinel = 'x';
    json = &sentinel; /* overwritten, not freed */
    CHECK(tls_wire_requests(NULL, false, &json, &err) == 0 && json == NULL);
    /* not a request: refused, nothing returned, no PEM in the message */
    CHECK(tls_wire_requests(f.cert, false, &json, &err) == -EINVAL && !json && clean(err));
    CHECK(tls_wire_requests("garbage", false, &json, &err) == -EINVAL && !json && clean(err));
    CHECK(tls_wire_requests(" \n ", false, &json, &err) == -EINVAL && !json);
    char *two = NULL;
    if (asprintf(&two, "%s%s", f.csr, f.csr2) < 0)
        two = NULL;
    CHECK(two && tls_wire_requests(two, false, &json, &err) == -EINVAL && !json && clean(err));
    free(two);
    CHECK(tls_wire_requests(f.csr, false, NULL, &err) == -EINVAL);
out:
    free(json);
    free(err);
    free(padded);
    fx_free(&f);
}

/* ---- reading the provider's list ------------------------------------------------------- */

TEST(parse_good_list)
{
    struct fx f;
    struct parsed p = {0};
    if (!fx_make(&f)) {
        CHECK(false);
        return;
    }
    json_t *list = json_array();
    /* v4: chain [certificate, ca], no revoked */
    json_array_append_new(list, entry(f.csr, f.cert, f.ca, json_pack("[s,s]", f.cert, f.ca)));
    /* v3: revoked null, chain null, recommended_expiry_notification_time, unknown keys */
    json_t *e = entry(f.csr2, f.cert, f.ca, json_null());
    json_object_set_new(e, "revoked", json_null());
    json_object_set_new(e, "recommended_expiry_notification_time", json_integer(168));
    json_object_set_new(e, "future", json_pack("{s:[i]}", "x", 1));
    json_array_append_new(list, e);
    /* revoked, chain absent */
    e = entry(f.csr, f.cert, f.ca, NULL);
    json_object_set_new(e, "revoked", json_true());
    json_array_append_new(list, e);
    /* revoked false */
    e = entry(f.csr2, f.cert, f.ca, json_array());
    json_object_set_new(e, "revoked", json_false());
    json_array_append_new(list, e);
    char *text = dump(list);
    parse(&p, text, text ? strlen(text) : 0);
    CHECK(p.rc == 0 && p.n == 4 && p.v && !p.problems && !p.err);
    if (p.rc == 0 && p.n == 4) {
        CHECK_STR(p.v[0].csr, f.csr);
        CHECK_STR(p.v[0].certificate, f.cert);
        CHECK_STR(p.v[0].ca, f.ca);
        CHECK(p.v[0].n_chain == 2 && !p.v[0].revoked);
        CHECK_STR(p.v[0].chain[0], f.cert);
        CHECK_STR(p.v[0].chain[1], f.ca);
        CHECK_STR(p.v[1].csr, f.csr2);
        CHECK(p.v[1].n_chain == 0 && !p.v[1].chain && !p.v[1].revoked);
        CHECK(p.v[2].n_chain == 0 && p.v[2].revoked);
        CHECK(p.v[3].n_chain == 0 && !p.v[3].revoked);
    }
    parsed_free(&p);
    free(text);
    /* an empty list: nothing, no problem */
    parse(&p, "[]", 2);
    CHECK(p.rc == 0 && p.n == 0 && !p.v && !p.problems);
    parsed_free(&p);
    /* the length is honoured: no NUL needed, trailing bytes not read */
    parse(&p, "[]xyz", 2);
    CHECK(p.rc == 0 && p.n == 0);
    parsed_free(&p);
    /* problems may be left out */
    struct tls_provided *v = NULL;
    size_t n = 0;
    char *err = NULL;
    CHECK(tls_wire_parse_provider("[1]", 3, &v, &n, NULL, &err) == 0 && n == 0 && !v);
    free(err);
    fx_free(&f);
}

TEST(parse_not_a_list)
{
    static const char *const docs[] = {"{}",
                                       "\"[]\"",
                                       "5",
                                       "null",
                                       "true",
                                       "",
                                       "[",
                                       "[1,]",
                                       "[\"\xff\xfe\"]",
                                       "[\"ok\"] [",
                                       "{\"certificates\":[]}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct parsed p;
        parse(&p, docs[i], strlen(docs[i]));
        CHECK(p.rc == -EINVAL && !p.v && p.n == 0 && !p.problems && p.err);
        CHECK(p.err && (strstr(p.err, "not a JSON list") || strstr(p.err, "not valid JSON")));
        parsed_free(&p);
    }
    /* an error message never quotes the input */
    static const char leak[] = "[\"-----BEGIN CERTIFICATE-----\\nMIIB\" oops";
    struct parsed p;
    parse(&p, leak, sizeof(leak) - 1);
    CHECK(p.rc == -EINVAL && clean(p.err));
    parsed_free(&p);
    char *err = NULL;
    size_t n = 3;
    struct tls_provided *v = NULL;
    CHECK(tls_wire_parse_provider(NULL, 0, &v, &n, NULL, &err) == -EINVAL && !v && n == 0);
    CHECK(tls_wire_parse_provider("[]", 2, NULL, &n, NULL, &err) == -EINVAL);
    free(err);
}

TEST(parse_skips_bad_entries)
{
    static const char *const pem =
        "-----BEGIN CERTIFICATE-----\\nMIIBxyz\\n-----END CERTIFICATE-----";
    /* {C} is replaced by a good PEM-looking string */
    static const struct {
        const char *json;
        const char *reason;
    } cases[] = {
        {"5", "certificates[1]: is a number, not an object"},
        {"[]", "certificates[1]: is a list, not an object"},
        {"{\"certificate\":\"{C}\",\"ca\":\"{C}\"}",
         "certificates[1]: certificate_signing_request is missing"},
        {"{\"certificate_signing_request\":7,\"certificate\":\"{C}\",\"ca\":\"{C}\"}",
         "certificates[1]: certificate_signing_request is not a string"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":null,\"ca\":\"{C}\"}",
         "certificates[1]: certificate is not a string"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"\",\"ca\":\"{C}\"}",
         "certificates[1]: certificate is empty"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"{C}\",\"ca\":{}}",
         "certificates[1]: ca is not a string"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"{C}\",\"ca\":\"a\\u0000b\"}",
         "certificates[1]: ca holds a NUL byte"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"{C}\",\"ca\":\"{C}\","
         "\"chain\":\"{C}\"}",
         "certificates[1]: chain is a string, not a list"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"{C}\",\"ca\":\"{C}\","
         "\"chain\":[\"{C}\",null]}",
         "certificates[1]: chain[1] is not a string"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"{C}\",\"ca\":\"{C}\","
         "\"chain\":[1]}",
         "certificates[1]: chain[0] is not a string"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"{C}\",\"ca\":\"{C}\","
         "\"revoked\":\"true\"}",
         "certificates[1]: revoked is a string, not a boolean"},
        {"{\"certificate_signing_request\":\"{C}\",\"certificate\":\"{C}\",\"ca\":\"{C}\","
         "\"revoked\":1}",
         "certificates[1]: revoked is a number, not a boolean"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* [good, bad, good]: the bad one is skipped, the good ones kept in order */
        char *bad = strdup(cases[i].json), *doc = NULL;
        for (char *c; bad && (c = strstr(bad, "{C}"));) {
            char *next = NULL;
            *c = '\0';
            if (asprintf(&next, "%s%s%s", bad, pem, c + 3) < 0)
                next = NULL;
            free(bad);
            bad = next;
        }
        if (bad && asprintf(&doc,
                            "[{\"certificate_signing_request\":\"a\",\"certificate\":\"b\","
                            "\"ca\":\"c\"},%s,{\"certificate_signing_request\":\"d\","
                            "\"certificate\":\"e\",\"ca\":\"f\",\"revoked\":true}]",
                            bad) < 0)
            doc = NULL;
        struct parsed p;
        parse(&p, doc, doc ? strlen(doc) : 0);
        CHECK(p.rc == 0 && p.n == 2);
        if (p.rc == 0 && p.n == 2) {
            CHECK_STR(p.v[0].csr, "a");
            CHECK_STR(p.v[1].ca, "f");
            CHECK(!p.v[0].revoked && p.v[1].revoked);
        }
        CHECK_STR(p.problems, cases[i].reason);
        CHECK(clean(p.problems));
        parsed_free(&p);
        free(doc);
        free(bad);
    }
    /* several problems are "; "-joined */
    struct parsed p;
    static const char two[] = "[1, {\"ca\": \"x\"}]";
    parse(&p, two, sizeof(two) - 1);
    CHECK(p.rc == 0 && p.n == 0 && !p.v);
    CHECK_STR(p.problems, "certificates[0]: is a number, not an object; certificates[1]: "
                          "certificate_signing_request is missing");
    parsed_free(&p);
}

TEST(parse_limits)
{
    /* 257 entries: the first 256 are read */
    json_t *list = json_array();
    for (int i = 0; i < 257; i++) {
        char csr[16];
        snprintf(csr, sizeof(csr), "csr%d", i);
        json_array_append_new(list, entry(csr, "c", "a", NULL));
    }
    char *text = dump(list);
    struct parsed p;
    parse(&p, text, text ? strlen(text) : 0);
    CHECK(p.rc == 0 && p.n == 256);
    if (p.rc == 0 && p.n == 256)
        CHECK_STR(p.v[255].csr, "csr255");
    CHECK_STR(p.problems, "1 more entries were ignored (at most 256 are read)");
    parsed_free(&p);
    free(text);

    /* a string larger than X509_PEM_MAX, a chain of 17 */
    char *big = malloc(X509_PEM_MAX + 2);
    if (!big) {
        CHECK(false);
        return;
    }
    memset(big, 'A', X509_PEM_MAX + 1);
    big[X509_PEM_MAX + 1] = '\0';
    list = json_array();
    json_array_append_new(list, entry("r", big, "a", NULL));
    big[X509_PEM_MAX] = '\0'; /* exactly the limit: accepted */
    json_array_append_new(list, entry("r", big, "a", NULL));
    json_t *chain = json_array();
    for (int i = 0; i < TLS_WIRE_MAX_CHAIN + 1; i++)
        json_array_append_new(chain, json_string("x"));
    json_array_append_new(list, entry("r", "c", "a", chain));
    chain = json_array();
    for (int i = 0; i < TLS_WIRE_MAX_CHAIN; i++)
        json_array_append_new(chain, json_string("x"));
    json_array_append_new(list, entry("r", "c", "a", chain));
    text = dump(list);
    parse(&p, text, text ? strlen(text) : 0);
    CHECK(p.rc == 0 && p.n == 2);
    if (p.rc == 0 && p.n == 2) {
        CHECK(strlen(p.v[0].certificate) == X509_PEM_MAX);
        CHECK(p.v[1].n_chain == TLS_WIRE_MAX_CHAIN);
    }
    CHECK_STR(p.problems, "certificates[0]: certificate is too large; certificates[2]: chain "
                          "holds 17 certificates (at most 16)");
    parsed_free(&p);
    free(text);
    free(big);
}

/* ---- matching -------------------------------------------------------------------------- */

TEST(find_matches_same_request)
{
    struct fx f;
    if (!fx_make(&f)) {
        CHECK(false);
        return;
    }
    char *wrapped = rewrap(f.csr, 76);
    char *narrow = rewrap(f.csr, 20);
    CHECK(wrapped && narrow && strcmp(wrapped, f.csr) != 0);
    struct tls_provided v[4];
    memset(v, 0, sizeof(v));
    v[0].csr = f.csr2;
    v[1].csr = wrapped;
    v[2].csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----";
    v[3].csr = f.cert;
    CHECK(tls_wire_find(v, 4, f.csr) == 1);
    CHECK(tls_wire_find(v, 4, narrow) == 1); /* both sides normalised */
    CHECK(tls_wire_find(v, 4, f.csr2) == 0);
    CHECK(tls_wire_find(v, 1, f.csr) == -1);
    CHECK(tls_wire_find(v, 4, "junk") == -1);
    CHECK(tls_wire_find(v, 4, f.cert) == -1); /* a certificate is not a request */
    CHECK(tls_wire_find(NULL, 0, f.csr) == -1);
    CHECK(tls_wire_find(v, 4, NULL) == -1);
    /* several matches: the last not revoked, else the last */
    v[0].csr = f.csr;
    v[0].revoked = false;
    v[1].revoked = true;
    v[2].csr = narrow;
    v[2].revoked = true;
    CHECK(tls_wire_find(v, 3, f.csr) == 0);
    v[0].revoked = true;
    CHECK(tls_wire_find(v, 3, f.csr) == 2);
    v[1].revoked = false;
    CHECK(tls_wire_find(v, 3, f.csr) == 1);
    free(wrapped);
    free(narrow);
    fx_free(&f);
}

/* ---- checking -------------------------------------------------------------------------- */

static struct tls_provided provided(char *csr, char *cert, char *ca, char **chain, size_t n)
{
    struct tls_provided e = {csr, cert, ca, chain, n, false};
    return e;
}

/* tls_wire_check fails with rc and a clean message holding `words`, out zeroed. */
static void check_fails(int *failed, const struct tls_provided *e, const char *key, bool want_ca,
                        time_t now, int rc, const char *words)
{
    struct tls_checked out;
    memset(&out, 0x5a, sizeof(out));
    char *why = NULL;
    int got = tls_wire_check(e, key, want_ca, now, &out, &why);
    if (got != rc)
        fprintf(stderr, "  want %d, got %d (%s)\n", rc, got, ERRMSG(why));
    CHECK(got == rc);
    CHECK(why && strstr(why, words));
    CHECK(clean(why));
    CHECK(!out.certificate && !out.fullchain && !out.ca && out.not_after == 0 &&
          out.fingerprint[0] == '\0');
    free(why);
}

TEST(check_good_entries)
{
    struct fx f;
    if (!fx_make(&f)) {
        CHECK(false);
        return;
    }
    time_t now = time(NULL);
    struct x509_info info;
    char *err = NULL;
    CHECK(x509_cert_info(f.cert, &info, &err) == 0);
    /* v4: chain [certificate, ca]: fullchain is the certificate alone (the root dropped) */
    char *chain[] = {f.cert, f.ca};
    struct tls_provided e = provided(f.csr, f.cert, f.ca, chain, 2);
    struct tls_checked out;
    char *why = NULL;
    CHECK(tls_wire_check(&e, f.key, false, now, &out, &why) == 0);
    CHECK_STR(out.certificate, f.cert);
    CHECK_STR(out.fullchain, f.cert);
    CHECK_STR(out.ca, f.ca);
    CHECK_STR(out.fingerprint, info.fingerprint);
    CHECK(out.not_before == info.not_before && out.not_after == info.not_after);
    tls_checked_clear(&out);
    CHECK(!out.fullchain && !out.ca && !out.certificate);
    tls_checked_clear(&out); /* twice is harmless */
    tls_checked_clear(NULL);
    /* no chain; reformatted PEM: normalised on the way out */
    char *cert_wrapped = rewrap(f.cert, 40), *ca_wrapped = rewrap(f.ca, 70);
    e = provided(f.csr, cert_wrapped, ca_wrapped, NULL, 0);
    CHECK(tls_wire_check(&e, f.key, false, now, &out, &why) == 0);
    CHECK_STR(out.fullchain, f.cert);
    CHECK_STR(out.ca, f.ca);
    tls_checked_clear(&out);
    free(cert_wrapped);
    free(ca_wrapped);

    /* an intermediate: root -> inter -> leaf */
    X509 *root = NULL, *inter = NULL;
    EVP_PKEY *root_key = NULL, *inter_key = NULL;
    char *root_pem = NULL, *root_key_pem = NULL, *inter_pem = NULL, *inter_key_pem = NULL;
    char *leaf = NULL, *want = NULL;
    CHECK(raw_ca("raw-root", NULL, NULL, &root, &root_key, &root_pem, &root_key_pem));
    CHECK(raw_ca("raw-inter", root, root_key, &inter, &inter_key, &inter_pem, &inter_key_pem));
    CHECK(inter_pem && x509_issue(f.csr, inter_pem, inter_key_pem, 5, X509_USAGE_SERVER_CLIENT,
                                  &leaf, &err) == 0);
    if (!leaf || asprintf(&want, "%s%s", leaf, inter_pem) < 0) {
        want = NULL;
        goto out;
    }
    /* ca = the root, chain [leaf, inter, root]: fullchain leaf + inter */
    char *chain3[] = {leaf, inter_pem, root_pem};
    e = provided(f.csr, leaf, root_pem, chain3, 3);
    CHECK(tls_wire_check(&e, f.key, false, now, &out, &why) == 0);
    CHECK_STR(out.fullchain, want);
    CHECK_STR(out.ca, root_pem);
    tls_checked_clear(&out);
    /* ca = the intermediate (a Vault-style issuing CA), chain [leaf, inter] */
    e = provided(f.csr, leaf, inter_pem, chain3, 2);
    CHECK(tls_wire_check(&e, f.key, false, now, &out, &why) == 0);
    CHECK_STR(out.fullchain, want);
    CHECK_STR(out.ca, inter_pem);
    tls_checked_clear(&out);
    /* ca = the root but the intermediate missing from the chain: does not verify */
    e = provided(f.csr, leaf, root_pem, chain3, 1);
    check_fails(failed, &e, f.key, false, now, -EKEYREJECTED, "does not verify against its CA");
out:
    free(want);
    free(leaf);
    free(root_pem);
    free(root_key_pem);
    free(inter_pem);
    free(inter_key_pem);
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
    free(why);
    free(err);
    fx_free(&f);
}

TEST(check_bad_entries)
{
    struct fx f;
    if (!fx_make(&f)) {
        CHECK(false);
        return;
    }
    time_t now = time(NULL);
    char *err = NULL, *foreign = NULL, *two = NULL;
    struct x509_info info;
    CHECK(x509_cert_info(f.cert, &info, &err) == 0);
    char *chain[] = {f.cert, f.ca};

    struct tls_provided e = provided(f.csr, f.cert, f.ca, chain, 2);
    e.revoked = true;
    check_fails(failed, &e, f.key, false, now, -ECANCELED, "revoked by the provider");
    e.revoked = false;
    check_fails(failed, &e, f.key2, false, now, -EKEYREJECTED, "another key");
    check_fails(failed, &e, "not a key", false, now, -EINVAL, "private key");
    check_fails(failed, &e, f.key, true, now, -EINVAL, "CA flag mismatch");
    check_fails(failed, &e, f.key, false, info.not_after + 1, -EKEYEXPIRED, "expired");
    check_fails(failed, &e, f.key, false, now + 1000 * DAY, -EKEYEXPIRED, "expired");
    check_fails(failed, &e, f.key, false, info.not_before - 60, -EKEYEXPIRED, "not valid yet");

    /* chain[0] is not the certificate */
    char *swapped[] = {f.ca, f.cert};
    e = provided(f.csr, f.cert, f.ca, swapped, 2);
    check_fails(failed, &e, f.key, false, now, -EKEYREJECTED,
                "chain does not start with the certificate");
    /* ca from another CA: the certificate does not verify against it */
    char *other_chain[] = {f.cert, f.other};
    e = provided(f.csr, f.cert, f.other, other_chain, 2);
    check_fails(failed, &e, f.key, false, now, -EKEYREJECTED, "does not verify against its CA");
    /* a certificate from another CA for this key, with the right ca named */
    CHECK(x509_issue(f.csr, f.other, f.other_key, 5, X509_USAGE_SERVER_CLIENT, &foreign, &err) ==
          0);
    char *foreign_chain[] = {foreign, f.ca};
    e = provided(f.csr, foreign, f.ca, foreign_chain, 2);
    check_fails(failed, &e, f.key, false, now, -EKEYREJECTED, "does not verify against its CA");
    /* ca is not a CA */
    e = provided(f.csr, f.cert, f.cert, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "not a CA");

    /* garbage */
    e = provided(f.csr, "-----BEGIN CERTIFICATE-----\nMIIBnotreally\n-----END CERTIFICATE-----\n",
                 f.ca, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "certificate");
    e = provided(f.csr, "hello", f.ca, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "certificate");
    e = provided(f.csr, f.csr, f.ca, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "certificate");
    e = provided(f.csr, f.cert, "garbage", NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "CA certificate");
    e = provided(f.csr, NULL, f.ca, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "certificate");
    char *junk_chain[] = {f.cert, "junk"};
    e = provided(f.csr, f.cert, f.ca, junk_chain, 2);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "chain");
    /* two certificates where one is expected */
    if (asprintf(&two, "%s%s", f.cert, f.ca) < 0)
        two = NULL;
    e = provided(f.csr, two, f.ca, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "holds 2 certificates");
    e = provided(f.csr, f.cert, two, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "holds 2 certificates");
    /* a private key glued to the certificate */
    char *with_key = NULL;
    if (asprintf(&with_key, "%s%s", f.cert, f.key) < 0)
        with_key = NULL;
    e = provided(f.csr, with_key, f.ca, NULL, 0);
    check_fails(failed, &e, f.key, false, now, -EINVAL, "only certificates");
    free(with_key);

    /* arguments */
    struct tls_checked out;
    char *why = NULL;
    CHECK(tls_wire_check(NULL, f.key, false, now, &out, &why) == -EINVAL);
    CHECK(tls_wire_check(&e, f.key, false, now, NULL, &why) == -EINVAL);
    free(why);
    free(two);
    free(foreign);
    free(err);
    fx_free(&f);
}

/* The whole path: parse a provider list, find this unit's entry, check it. */
TEST(parse_find_check_together)
{
    struct fx f;
    if (!fx_make(&f)) {
        CHECK(false);
        return;
    }
    char *json = NULL, *err = NULL, *why = NULL;
    CHECK(tls_wire_requests(f.csr, false, &json, &err) == 0);
    /* the provider echoes the stripped request */
    json_t *req = json ? json_loads(json, 0, NULL) : NULL;
    const char *echo =
        json_string_value(json_object_get(json_array_get(req, 0), "certificate_signing_request"));
    json_t *list = json_array();
    json_array_append_new(list, entry(f.csr2, f.cert, f.ca, NULL));
    json_array_append_new(list,
                          entry(echo ? echo : "", f.cert, f.ca, json_pack("[s,s]", f.cert, f.ca)));
    char *text = dump(list);
    json_decref(req);
    struct parsed p;
    parse(&p, text, text ? strlen(text) : 0);
    CHECK(p.rc == 0 && p.n == 2);
    int i = tls_wire_find(p.v, p.n, f.csr);
    CHECK(i == 1);
    struct tls_checked out;
    if (i >= 0) {
        CHECK(tls_wire_check(&p.v[i], f.key, false, time(NULL), &out, &why) == 0);
        CHECK_STR(out.fullchain, f.cert);
        tls_checked_clear(&out);
    }
    parsed_free(&p);
    free(text);
    free(json);
    free(err);
    free(why);
    fx_free(&f);
}

CHECK_MAIN("tls_wire", CASE(requests_exact_shape), CASE(parse_good_list), CASE(parse_not_a_list),
           CASE(parse_skips_bad_entries), CASE(parse_limits), CASE(find_matches_same_request),
           CASE(check_good_entries), CASE(check_bad_entries), CASE(parse_find_check_together))
