/* Unit tests for agent/x509.c: keys and the key policy, the internal CA, requests, issuing,
 * inspecting and verifying certificates; one issued chain is cross-checked with `openssl`. */
#define _GNU_SOURCE
#include "check.h"

#include "errmsg.h"
#include "password.h"
#include "x509.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define DAY 86400L

/* ---- fixtures made with OpenSSL directly ----------------------------------------------- */

static char *bio_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    BIO_free(b);
    return s;
}

enum form { PKCS8, PKCS8_ENCRYPTED, TRADITIONAL, TRADITIONAL_ENCRYPTED, PUBLIC, PARAMS_AND_KEY };

static char *pem_of(const EVP_PKEY *pk, enum form form)
{
    static const unsigned char pass[] = "correct horse";
    BIO *b = BIO_new(BIO_s_mem());
    int ok = 0;
    switch (form) {
    case PKCS8:
        ok = PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
        break;
    case PKCS8_ENCRYPTED:
        ok = PEM_write_bio_PrivateKey(b, pk, EVP_aes_256_cbc(), pass, (int)sizeof(pass) - 1, NULL,
                                      NULL);
        break;
    case TRADITIONAL:
        ok = PEM_write_bio_PrivateKey_traditional(b, pk, NULL, NULL, 0, NULL, NULL);
        break;
    case TRADITIONAL_ENCRYPTED:
        ok = PEM_write_bio_PrivateKey_traditional(b, pk, EVP_aes_256_cbc(), pass,
                                                  (int)sizeof(pass) - 1, NULL, NULL);
        break;
    case PUBLIC:
        ok = PEM_write_bio_PUBKEY(b, pk);
        break;
    case PARAMS_AND_KEY:
        ok = PEM_write_bio_Parameters(b, pk) &&
             PEM_write_bio_PrivateKey_traditional(b, pk, NULL, NULL, 0, NULL, NULL);
        break;
    }
    if (!ok) {
        BIO_free(b);
        return NULL;
    }
    return bio_string(b);
}

static EVP_PKEY *rsa_key(size_t bits)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
}

static EVP_PKEY *ec_key(const char *curve)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

static X509 *parse_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}

static EVP_PKEY *parse_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

/* A request made outside x509.c: subject CN=cn (none when NULL), subjectAltName from an
 * OpenSSL config string (none when NULL), signed with key_pem. */
static char *custom_csr(const char *key_pem, const char *cn, const char *san_conf)
{
    EVP_PKEY *pk = parse_key(key_pem);
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    char *out = NULL;
    if (!pk || !req || !exts || X509_REQ_set_pubkey(req, pk) != 1)
        goto done;
    if (cn && X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName,
                                         MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1)
        goto done;
    if (san_conf) {
        X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, san_conf);
        if (!ext || !sk_X509_EXTENSION_push(exts, ext) || X509_REQ_add_extensions(req, exts) != 1)
            goto done;
    }
    if (X509_REQ_sign(req, pk, EVP_sha256()) <= 0)
        goto done;
    BIO *b = BIO_new(BIO_s_mem());
    if (b && PEM_write_bio_X509_REQ(b, req) == 1)
        out = bio_string(b);
    else
        BIO_free(b);
done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    return out;
}

/* A self-signed certificate made outside x509.c with the given subjectAltName config. */
static char *custom_cert(const char *san_conf)
{
    EVP_PKEY *pk = ec_key("P-256");
    X509 *x = X509_new();
    char *out = NULL;
    X509V3_CTX ctx;
    if (!pk || !x || X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)"custom", -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 || X509_set_pubkey(x, pk) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) || !X509_gmtime_adj(X509_getm_notAfter(x), DAY))
        goto done;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_alt_name, san_conf);
    int added = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    if (!added || X509_sign(x, pk, EVP_sha256()) <= 0)
        goto done;
    BIO *b = BIO_new(BIO_s_mem());
    if (b && PEM_write_bio_X509(b, x) == 1)
        out = bio_string(b);
    else
        BIO_free(b);
done:
    X509_free(x);
    EVP_PKEY_free(pk);
    return out;
}

/* Flip one base64 character in the middle of the second-to-last body line: for an RSA
 * request that line lies inside the signature, so the PEM still parses. */
static char *tamper(const char *pem)
{
    char *s = strdup(pem);
    char *end = s ? strstr(s, "-----END") : NULL;
    if (!end || end - s < 3)
        goto fail;
    char *last_nl = end - 1; /* the newline ending the last body line */
    char *p = last_nl - 1;
    while (p > s && *p != '\n')
        p--; /* p: the newline ending the second-to-last line */
    char *line_end = p;
    p--;
    while (p > s && *p != '\n')
        p--;
    char *mid = p + 1 + (line_end - (p + 1)) / 2;
    *mid = *mid == 'A' ? 'B' : 'A';
    return s;
fail:
    free(s);
    return NULL;
}

/* A message exists and holds no PEM armour nor any 12-character run of input's base64. */
static bool msg_clean(const char *err, const char *input, size_t len)
{
    if (!err || strstr(err, "-----") || strstr(err, "BEGIN"))
        return false;
    if (!input)
        return true;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i + 12 <= len; i++) {
        bool run = true;
        for (size_t j = 0; j < 12 && run; j++)
            run = input[i + j] && strchr(b64, input[i + j]);
        if (run && memmem(err, strlen(err), input + i, 12))
            return false;
    }
    return true;
}

struct ca {
    char *cert;
    char *key; /* sodium */
};

static bool make_ca(struct ca *ca, const char *cn, int days)
{
    char *err = NULL;
    int rc = x509_ca_create(cn, days, &ca->cert, &ca->key, &err);
    if (rc != 0)
        fprintf(stderr, "  x509_ca_create: %s\n", ERRMSG(err));
    free(err);
    return rc == 0;
}

static void free_ca(struct ca *ca)
{
    free(ca->cert);
    password_free(ca->key);
    ca->cert = ca->key = NULL;
}

static const char *const unit_dns[] = {"postgresql-0", "pg0.example.internal", "10.1.2.3"};
static const char *const unit_ips[] = {"10.1.2.3", "fd00::1"};
static const struct x509_sans unit_sans = {unit_dns, 3, unit_ips, 2};

/* A unit key of the given type, a request and a certificate from ca (days). */
static bool make_leaf(const struct ca *ca, enum x509_key_type type, int days, char **key,
                      char **csr, char **cert)
{
    char *err = NULL;
    *key = *csr = *cert = NULL;
    int rc = x509_key_generate(type, key, &err);
    if (rc == 0)
        rc = x509_csr_create(*key, "postgresql-0", &unit_sans, csr, &err);
    if (rc == 0)
        rc = x509_issue(*csr, ca->cert, ca->key, days, X509_USAGE_SERVER_CLIENT, cert, &err);
    if (rc != 0)
        fprintf(stderr, "  make_leaf: %s\n", ERRMSG(err));
    free(err);
    return rc == 0;
}

static bool ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

static int serial_bits(const X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    int bits = bn ? BN_num_bits(bn) : -1;
    BN_free(bn);
    return bits;
}

/* ---- keys ------------------------------------------------------------------------------- */

TEST(key_generate_both_types)
{
    char *key = NULL, *err = NULL;
    CHECK(x509_key_generate(X509_KEY_RSA2048, &key, &err) == 0);
    CHECK(key && strncmp(key, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    CHECK(key && x509_key_check(key, strlen(key), &err) == 0);
    EVP_PKEY *pk = key ? parse_key(key) : NULL;
    CHECK(pk && EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) == 2048);
    EVP_PKEY_free(pk);
    password_free(key);

    key = NULL;
    CHECK(x509_key_generate(X509_KEY_ECDSA_P256, &key, &err) == 0);
    CHECK(key && x509_key_check(key, strlen(key), &err) == 0);
    pk = key ? parse_key(key) : NULL;
    char group[32] = "";
    CHECK(pk && EVP_PKEY_is_a(pk, "EC") &&
          EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) == 1);
    CHECK_STR(group, "prime256v1");
    EVP_PKEY_free(pk);
    password_free(key);
    CHECK(err == NULL);

    key = (char *)"sentinel";
    CHECK(x509_key_generate((enum x509_key_type)7, &key, &err) == -EINVAL);
    CHECK(key == NULL && err != NULL);
    CHECK(x509_key_generate(X509_KEY_RSA2048, NULL, &err) == -EINVAL);
    free(err);
}

/* One key-check case: the PEM (freed here), whether it is accepted, a word the refusal
 * message must contain. */
static void key_case(int *failed, char *pem, bool accept, const char *word)
{
    char *err = NULL;
    CHECK(pem != NULL);
    if (!pem)
        return;
    int rc = x509_key_check(pem, strlen(pem), &err);
    if (accept) {
        CHECK(rc == 0);
        if (rc != 0)
            fprintf(stderr, "  refused: %s\n", ERRMSG(err));
    } else {
        CHECK(rc == -EINVAL);
        CHECK(msg_clean(err, pem, strlen(pem)));
        CHECK(err && word && strstr(err, word));
        if (err && word && !strstr(err, word))
            fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err, word);
    }
    free(err);
    free(pem);
}

TEST(key_check_policy)
{
    EVP_PKEY *rsa1024 = rsa_key(1024), *rsa2048 = rsa_key(2048), *p256 = ec_key("P-256"),
             *p384 = ec_key("P-384"), *p521 = ec_key("P-521"),
             *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CHECK(rsa1024 && rsa2048 && p256 && p384 && p521 && ed);
    if (!rsa1024 || !rsa2048 || !p256 || !p384 || !p521 || !ed)
        goto out;
    key_case(failed, pem_of(rsa2048, PKCS8), true, NULL);
    key_case(failed, pem_of(rsa2048, TRADITIONAL), true, NULL); /* RSA PRIVATE KEY */
    key_case(failed, pem_of(p256, PKCS8), true, NULL);
    key_case(failed, pem_of(p256, TRADITIONAL), true, NULL);    /* EC PRIVATE KEY */
    key_case(failed, pem_of(p256, PARAMS_AND_KEY), true, NULL); /* `openssl ecparam -genkey` */
    key_case(failed, pem_of(p384, PKCS8), true, NULL);
    key_case(failed, pem_of(rsa1024, PKCS8), false, "1024 bits");
    key_case(failed, pem_of(p521, PKCS8), false, "P-256 and P-384");
    key_case(failed, pem_of(ed, PKCS8), false, "unsupported type");
    key_case(failed, pem_of(rsa2048, PKCS8_ENCRYPTED), false, "encrypted");
    key_case(failed, pem_of(p256, TRADITIONAL_ENCRYPTED), false, "encrypted");
    key_case(failed, pem_of(rsa2048, PUBLIC), false, "public key");
    key_case(failed, pem_of(p256, PUBLIC), false, "public key");

    /* two keys in one input */
    char *a = pem_of(p256, PKCS8), *b = pem_of(p384, PKCS8);
    char *both = NULL;
    CHECK(a && b && asprintf(&both, "%s%s", a, b) > 0);
    key_case(failed, both, false, "alone");
    /* truncated: the first half */
    if (a)
        a[strlen(a) / 2] = '\0';
    key_case(failed, a, false, "cannot be parsed");
    free(b);

    /* a certificate is not a key */
    struct ca ca = {0};
    CHECK(make_ca(&ca, "key-check-ca", 10));
    key_case(failed, ca.cert ? strdup(ca.cert) : NULL, false, "certificate");
    free_ca(&ca);

    /* random bytes (no NUL inside), and armour around garbage */
    unsigned char rnd[512];
    CHECK(RAND_bytes(rnd, sizeof(rnd)) == 1);
    for (size_t i = 0; i < sizeof(rnd); i++)
        if (!rnd[i])
            rnd[i] = 1;
    char *r = malloc(sizeof(rnd) + 1);
    if (r) {
        memcpy(r, rnd, sizeof(rnd));
        r[sizeof(rnd)] = '\0';
    }
    key_case(failed, r, false, "not PEM");
    key_case(failed,
             strdup("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n"
                    "-----END PRIVATE KEY-----\n"),
             false, "cannot be parsed");
    key_case(failed, strdup("-----BEGIN DH PARAMETERS-----\nMAA=\n-----END DH PARAMETERS-----\n"),
             false, "not a private key");

    /* empty, NULL, embedded NUL */
    char *err = NULL;
    CHECK(x509_key_check("", 0, &err) == -EINVAL && msg_clean(err, NULL, 0));
    CHECK(x509_key_check(NULL, 10, &err) == -EINVAL && msg_clean(err, NULL, 0));
    char *good = pem_of(p256, PKCS8);
    CHECK(good != NULL);
    if (good) {
        size_t n = strlen(good);
        good[40] = '\0';
        CHECK(x509_key_check(good, n, &err) == -EINVAL && err && strstr(err, "NUL"));
        free(good);
    }
    free(err);
out:
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(ed);
}

/* ---- the CA -------------------------------------------------------------------------------- */

TEST(ca_create_and_inspect)
{
    struct ca ca = {0};
    time_t before = time(NULL);
    CHECK(make_ca(&ca, "postgresql-6f1c2a", 3650));
    time_t after = time(NULL);
    if (!ca.cert)
        return;
    CHECK(strncmp(ca.key, "-----BEGIN PRIVATE KEY-----", 27) == 0);

    struct x509_info info;
    char *err = NULL;
    CHECK(x509_cert_info(ca.cert, &info, &err) == 0);
    CHECK(info.is_ca);
    CHECK(!info.server_auth && !info.client_auth);
    CHECK_STR(info.cn, "postgresql-6f1c2a");
    CHECK(info.not_before >= before - 3600 && info.not_before <= after - 3600);
    CHECK(info.not_after >= before + 3650 * DAY && info.not_after <= after + 3650 * DAY);
    CHECK(strlen(info.fingerprint) == 64 && strspn(info.fingerprint, "0123456789abcdef") == 64);
    CHECK(strlen(info.pubkey_sha256) == 64);
    CHECK(info.sans.n_dns == 0 && info.sans.n_ips == 0 && info.n_other_sans == 0);

    bool match = false;
    CHECK(x509_key_matches_cert(ca.key, ca.cert, &match, &err) == 0 && match);
    CHECK(x509_verify_chain(ca.cert, ca.cert, time(NULL), &err) == 0);

    /* the extensions, through OpenSSL */
    X509 *x = parse_cert(ca.cert);
    CHECK(x != NULL);
    if (x) {
        CHECK(X509_get_version(x) == X509_VERSION_3);
        CHECK(X509_get_pathlen(x) == 0);
        CHECK(ext_critical(x, NID_basic_constraints));
        /* DER: cA TRUE is the byte 0xFF (Go, hence etcd, refuses anything else) */
        int bci = X509_get_ext_by_NID(x, NID_basic_constraints, -1);
        const ASN1_OCTET_STRING *bcv = X509_EXTENSION_get_data(X509_get_ext(x, bci));
        static const unsigned char der_true[] = {0x30, 0x06, 0x01, 0x01, 0xFF, 0x02, 0x01, 0x00};
        CHECK(bcv && ASN1_STRING_length(bcv) == (int)sizeof der_true &&
              memcmp(ASN1_STRING_get0_data(bcv), der_true, sizeof der_true) == 0);
        CHECK(ext_critical(x, NID_key_usage));
        CHECK(X509_get_key_usage(x) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
        CHECK((X509_get_extension_flags(x) & EXFLAG_SS) != 0);
        const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
        const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
        CHECK(ski && aki && ASN1_OCTET_STRING_cmp(ski, aki) == 0);
        int bits = serial_bits(x);
        CHECK(bits > 64 && bits <= 128);
        CHECK(X509_get_signature_nid(x) == NID_ecdsa_with_SHA256);
        EVP_PKEY *pub = X509_get0_pubkey(x);
        CHECK(pub && EVP_PKEY_is_a(pub, "EC"));
        X509_free(x);
    }

    /* a second CA differs */
    struct ca other = {0};
    CHECK(make_ca(&other, "postgresql-6f1c2a", 3650));
    struct x509_info info2;
    CHECK(other.cert && x509_cert_info(other.cert, &info2, &err) == 0);
    CHECK(strcmp(info.fingerprint, info2.fingerprint) != 0);
    CHECK(x509_key_matches_cert(other.key, ca.cert, &match, &err) == 0 && !match);
    free_ca(&other);
    free_ca(&ca);
    CHECK(err == NULL);
}

TEST(ca_create_bad_arguments)
{
    char *cert = (char *)"x", *key = (char *)"x", *err = NULL;
    CHECK(x509_ca_create("", 10, &cert, &key, &err) == -EINVAL && err);
    CHECK(cert == NULL && key == NULL);
    CHECK(x509_ca_create(NULL, 10, &cert, &key, &err) == -EINVAL);
    CHECK(x509_ca_create("ok", 0, &cert, &key, &err) == -EINVAL && strstr(err, "days"));
    CHECK(x509_ca_create("ok", X509_MAX_DAYS + 1, &cert, &key, &err) == -EINVAL);
    CHECK(x509_ca_create("bad\ncn", 10, &cert, &key, &err) == -EINVAL && strstr(err, "control"));
    char long_cn[X509_CN_LEN + 2];
    memset(long_cn, 'a', sizeof(long_cn) - 1);
    long_cn[sizeof(long_cn) - 1] = '\0';
    CHECK(x509_ca_create(long_cn, 10, &cert, &key, &err) == -EINVAL && strstr(err, "longer"));
    CHECK(x509_ca_create("\xff\xfe", 10, &cert, &key, &err) == -EINVAL && strstr(err, "UTF-8"));
    CHECK(x509_ca_create("ok", 10, NULL, &key, &err) == -EINVAL);
    CHECK(cert == NULL && key == NULL);
    free(err);
}

/* ---- requests and issuing ----------------------------------------------------------------- */

static void issue_roundtrip(int *failed, enum x509_key_type type)
{
    struct ca ca = {0}, other = {0};
    char *key = NULL, *csr = NULL, *cert = NULL, *err = NULL;
    CHECK(make_ca(&ca, "test-ca", 3650) && make_ca(&other, "test-ca", 3650));
    CHECK(make_leaf(&ca, type, 90, &key, &csr, &cert));
    if (!cert || !other.cert)
        goto out;
    CHECK(strncmp(csr, "-----BEGIN CERTIFICATE REQUEST-----", 35) == 0);

    struct x509_csr_info ci;
    CHECK(x509_csr_info(csr, &ci, &err) == 0);
    CHECK_STR(ci.cn, "postgresql-0");
    CHECK(ci.sans.n_dns == 3 && ci.sans.n_ips == 2);
    CHECK_STR(ci.sans.dns[1], "pg0.example.internal");
    CHECK_STR(ci.sans.ips[1], "fd00::1");

    struct x509_info info;
    time_t now = time(NULL);
    CHECK(x509_cert_info(cert, &info, &err) == 0);
    CHECK(!info.is_ca);
    CHECK(info.server_auth && info.client_auth);
    CHECK_STR(info.cn, "postgresql-0");
    CHECK(info.sans.n_dns == 3 && info.sans.n_ips == 2 && info.n_other_sans == 0);
    CHECK_STR(info.sans.dns[0], "postgresql-0");
    CHECK_STR(info.sans.dns[2], "10.1.2.3");
    CHECK_STR(info.sans.ips[0], "10.1.2.3");
    CHECK_STR(info.sans.ips[1], "fd00::1");
    CHECK_STR(info.pubkey_sha256, ci.pubkey_sha256);
    CHECK(info.not_before <= now - 3500 && info.not_before >= now - 3700);
    CHECK(info.not_after >= now + 90 * DAY - 100 && info.not_after <= now + 90 * DAY + 100);

    bool match = false;
    CHECK(x509_key_matches_cert(key, cert, &match, &err) == 0 && match);
    CHECK(x509_key_matches_cert(ca.key, cert, &match, &err) == 0 && !match);
    CHECK(x509_verify_chain(cert, ca.cert, now, &err) == 0);
    CHECK(x509_verify_chain(cert, other.cert, now, &err) == -EKEYREJECTED);
    CHECK(err && strstr(err, "issuer certificate"));
    /* a bundle of several CAs, the right one last */
    char *bundle = NULL;
    CHECK(asprintf(&bundle, "%s%s", other.cert, ca.cert) > 0);
    CHECK(bundle && x509_verify_chain(cert, bundle, now, &err) == 0);
    free(bundle);

    /* the extensions, through OpenSSL */
    X509 *x = parse_cert(cert), *cax = parse_cert(ca.cert);
    CHECK(x && cax);
    if (x && cax) {
        uint32_t want_ku = type == X509_KEY_RSA2048 ? (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT)
                                                    : KU_DIGITAL_SIGNATURE;
        CHECK(X509_get_key_usage(x) == want_ku);
        CHECK(ext_critical(x, NID_key_usage));
        CHECK(ext_critical(x, NID_basic_constraints));
        CHECK(!ext_critical(x, NID_subject_alt_name));
        CHECK(X509_get_extended_key_usage(x) == (XKU_SSL_SERVER | XKU_SSL_CLIENT));
        CHECK(X509_check_ca(x) == 0);
        const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
        const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(cax);
        CHECK(aki && ca_ski && ASN1_OCTET_STRING_cmp(aki, ca_ski) == 0);
        CHECK(X509_get0_subject_key_id(x) != NULL);
        CHECK(X509_check_issued(cax, x) == X509_V_OK);
        int bits = serial_bits(x);
        CHECK(bits > 64 && bits <= 128);
        CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(cax)) == 0);
    }
    X509_free(x);
    X509_free(cax);

    /* issuing twice gives different serials and fingerprints */
    char *cert2 = NULL;
    struct x509_info info2;
    CHECK(x509_issue(csr, ca.cert, ca.key, 90, X509_USAGE_SERVER_CLIENT, &cert2, &err) == 0);
    CHECK(cert2 && x509_cert_info(cert2, &info2, &err) == 0);
    CHECK(strcmp(info.fingerprint, info2.fingerprint) != 0);
    free(cert2);
out:
    free(err);
    free(cert);
    free(csr);
    password_free(key);
    free_ca(&ca);
    free_ca(&other);
}

TEST(issue_ecdsa_unit)
{
    issue_roundtrip(failed, X509_KEY_ECDSA_P256);
}

TEST(issue_rsa_unit)
{
    issue_roundtrip(failed, X509_KEY_RSA2048);
    /* RSA requests are signed sha256WithRSAEncryption */
    char *key = NULL, *csr = NULL, *err = NULL;
    CHECK(x509_key_generate(X509_KEY_RSA2048, &key, &err) == 0);
    CHECK(x509_csr_create(key, "u", &unit_sans, &csr, &err) == 0);
    BIO *b = csr ? BIO_new_mem_buf(csr, -1) : NULL;
    X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    CHECK(req && X509_REQ_get_signature_nid(req) == NID_sha256WithRSAEncryption);
    X509_REQ_free(req);
    BIO_free(b);
    free(csr);
    password_free(key);
    free(err);
}

TEST(expiry_and_cap)
{
    struct ca ca = {0};
    char *key = NULL, *csr = NULL, *cert = NULL, *err = NULL;
    CHECK(make_ca(&ca, "short-ca", 30));
    CHECK(make_leaf(&ca, X509_KEY_ECDSA_P256, 365, &key, &csr, &cert));
    if (!cert)
        goto out;
    struct x509_info ca_info, info;
    CHECK(x509_cert_info(ca.cert, &ca_info, &err) == 0);
    CHECK(x509_cert_info(cert, &info, &err) == 0);
    /* asked for 365 days from a 30-day CA: capped at the CA's notAfter */
    CHECK(info.not_after == ca_info.not_after);

    /* verification at chosen times */
    CHECK(x509_verify_chain(cert, ca.cert, info.not_after - 1, &err) == 0);
    CHECK(x509_verify_chain(cert, ca.cert, info.not_after + 1, &err) == -EKEYEXPIRED);
    CHECK(err && strstr(err, "expired"));
    CHECK(x509_verify_chain(cert, ca.cert, info.not_before - 10, &err) == -EKEYEXPIRED);
    CHECK(err && strstr(err, "not yet valid"));

    /* a shorter request than the CA: not capped */
    char *cert10 = NULL;
    time_t now = time(NULL);
    CHECK(x509_issue(csr, ca.cert, ca.key, 10, X509_USAGE_SERVER_CLIENT, &cert10, &err) == 0);
    CHECK(cert10 && x509_cert_info(cert10, &info, &err) == 0);
    CHECK(info.not_after >= now + 10 * DAY - 100 && info.not_after <= now + 10 * DAY + 100);
    CHECK(x509_verify_chain(cert10, ca.cert, now + 20 * DAY, &err) == -EKEYEXPIRED);
    CHECK(x509_verify_chain(cert10, ca.cert, now + 5 * DAY, &err) == 0);
    /* the CA itself expires: after the CA's end the chain fails even for a valid leaf */
    CHECK(x509_verify_chain(ca.cert, ca.cert, ca_info.not_after + 1, &err) == -EKEYEXPIRED);
    free(cert10);
out:
    free(err);
    free(cert);
    free(csr);
    password_free(key);
    free_ca(&ca);
}

TEST(key_matches_cert_cases)
{
    struct ca ca = {0};
    char *key = NULL, *csr = NULL, *cert = NULL, *other_key = NULL, *err = NULL;
    CHECK(make_ca(&ca, "match-ca", 10));
    CHECK(make_leaf(&ca, X509_KEY_RSA2048, 5, &key, &csr, &cert));
    CHECK(x509_key_generate(X509_KEY_RSA2048, &other_key, &err) == 0);
    if (!cert || !other_key)
        goto out;
    bool match = false;
    CHECK(x509_key_matches_cert(key, cert, &match, &err) == 0 && match);
    match = true;
    CHECK(x509_key_matches_cert(other_key, cert, &match, &err) == 0 && !match);
    match = true;
    CHECK(x509_key_matches_cert(ca.key, cert, &match, &err) == 0 && !match); /* EC vs RSA */
    match = true;
    CHECK(x509_key_matches_cert(key, "garbage", &match, &err) == -EINVAL && !match);
    CHECK(msg_clean(err, NULL, 0));
    CHECK(x509_key_matches_cert("", cert, &match, &err) == -EINVAL && !match);
    CHECK(x509_key_matches_cert(key, cert, NULL, &err) == -EINVAL);
out:
    free(err);
    free(cert);
    free(csr);
    password_free(key);
    password_free(other_key);
    free_ca(&ca);
}

/* ---- SAN comparison and renewal ----------------------------------------------------------- */

TEST(sans_equal_sets)
{
    struct ca ca = {0};
    char *key = NULL, *csr = NULL, *cert = NULL, *err = NULL;
    struct x509_info info;
    CHECK(make_ca(&ca, "sans-ca", 10));
    CHECK(make_leaf(&ca, X509_KEY_ECDSA_P256, 5, &key, &csr, &cert));
    CHECK(cert && x509_cert_info(cert, &info, &err) == 0);
    if (!cert)
        goto out;
    const struct x509_san_list *have = &info.sans;

    CHECK(x509_sans_equal(have, &unit_sans));
    /* reordered, other letter case, IPv6 written differently */
    static const char *const d1[] = {"10.1.2.3", "PG0.Example.Internal", "postgresql-0"};
    static const char *const i1[] = {"fd00:0:0::1", "10.1.2.3"};
    const struct x509_sans reordered = {d1, 3, i1, 2};
    CHECK(x509_sans_equal(have, &reordered));
    /* duplicates do not matter */
    static const char *const d2[] = {"postgresql-0", "pg0.example.internal", "10.1.2.3",
                                     "postgresql-0"};
    const struct x509_sans dup = {d2, 4, unit_ips, 2};
    CHECK(x509_sans_equal(have, &dup));
    /* a changed IP */
    static const char *const i3[] = {"10.1.2.4", "fd00::1"};
    const struct x509_sans changed = {unit_dns, 3, i3, 2};
    CHECK(!x509_sans_equal(have, &changed));
    /* a missing name, an extra name */
    const struct x509_sans fewer = {unit_dns, 2, unit_ips, 2};
    CHECK(!x509_sans_equal(have, &fewer));
    static const char *const i4[] = {"10.1.2.3", "fd00::1", "192.168.0.1"};
    const struct x509_sans more = {unit_dns, 3, i4, 3};
    CHECK(!x509_sans_equal(have, &more));
    /* an IP that does not parse never matches */
    static const char *const i5[] = {"10.1.2.3", "fd00::1x"};
    const struct x509_sans bad = {unit_dns, 3, i5, 2};
    CHECK(!x509_sans_equal(have, &bad));
    /* IPs are not DNS names even when the text is equal */
    static const char *const d6[] = {"postgresql-0", "pg0.example.internal"};
    static const char *const i6[] = {"10.1.2.3", "fd00::1"};
    const struct x509_sans moved = {d6, 2, i6, 2};
    CHECK(!x509_sans_equal(have, &moved));
    CHECK(!x509_sans_equal(NULL, &unit_sans));
    CHECK(!x509_sans_equal(have, NULL));
    const struct x509_sans null_list = {NULL, 3, unit_ips, 2};
    CHECK(!x509_sans_equal(have, &null_list));
out:
    free(err);
    free(cert);
    free(csr);
    password_free(key);
    free_ca(&ca);
}

TEST(renew_due_thresholds)
{
    struct x509_info info;
    memset(&info, 0, sizeof(info));
    info.not_before = 1700000000;
    info.not_after = info.not_before + 1000000;
    CHECK(!x509_renew_due(&info, info.not_before + 890000, 90)); /* 89 % */
    CHECK(!x509_renew_due(&info, info.not_before + 899999, 90));
    CHECK(x509_renew_due(&info, info.not_before + 900000, 90)); /* 90 % */
    CHECK(x509_renew_due(&info, info.not_after + 5, 90));
    CHECK(!x509_renew_due(&info, info.not_before - 5, 90));
    CHECK(!x509_renew_due(&info, info.not_before + 490000, 50));
    CHECK(x509_renew_due(&info, info.not_before + 500000, 50));
    CHECK(x509_renew_due(&info, info.not_before + 20000, -3));    /* clamped to 1 % */
    CHECK(!x509_renew_due(&info, info.not_before + 999999, 250)); /* clamped to 100 % */
    CHECK(x509_renew_due(&info, info.not_after, 250));
    info.not_after = info.not_before; /* empty period */
    CHECK(x509_renew_due(&info, info.not_before - 100, 90));
    CHECK(x509_renew_due(NULL, 0, 90));

    /* a real certificate: 90 days, renewal due at 81 days after notBefore */
    struct ca ca = {0};
    char *key = NULL, *csr = NULL, *cert = NULL, *err = NULL;
    CHECK(make_ca(&ca, "renew-ca", 365));
    CHECK(make_leaf(&ca, X509_KEY_ECDSA_P256, 90, &key, &csr, &cert));
    CHECK(cert && x509_cert_info(cert, &info, &err) == 0);
    time_t now = time(NULL);
    CHECK(!x509_renew_due(&info, now, 90));
    time_t span = info.not_after - info.not_before;
    CHECK(!x509_renew_due(&info, info.not_before + span * 89 / 100, 90));
    CHECK(x509_renew_due(&info, info.not_before + span * 90 / 100, 90));
    free(err);
    free(cert);
    free(csr);
    password_free(key);
    free_ca(&ca);
}

/* ---- bad inputs ---------------------------------------------------------------------------- */

TEST(csr_create_bad_inputs)
{
    char *key = NULL, *csr = (char *)"x", *err = NULL;
    CHECK(x509_key_generate(X509_KEY_ECDSA_P256, &key, &err) == 0);
    if (!key)
        return;
    static const char *const bad_ip4[] = {"10.0.0.256"};
    static const char *const zone[] = {"fe80::1%eth0"};
    static const char *const bad_dns1[] = {"bad name"};
    static const char *const bad_dns2[] = {"-lead.example"};
    static const char *const bad_dns3[] = {"a..b"};
    static const char *const null_entry[] = {NULL};
    const struct x509_sans cases[] = {
        {NULL, 0, bad_ip4, 1},    {NULL, 0, zone, 1},     {bad_dns1, 1, NULL, 0},
        {bad_dns2, 1, NULL, 0},   {bad_dns3, 1, NULL, 0}, {NULL, 0, NULL, 0},
        {null_entry, 1, NULL, 0}, {NULL, 1, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(x509_csr_create(key, "u", &cases[i], &csr, &err) == -EINVAL);
        CHECK(csr == NULL && msg_clean(err, key, strlen(key)));
    }
    const char *many[X509_MAX_SANS + 1];
    for (size_t i = 0; i <= X509_MAX_SANS; i++)
        many[i] = "host.example";
    const struct x509_sans too_many = {many, X509_MAX_SANS + 1, NULL, 0};
    CHECK(x509_csr_create(key, "u", &too_many, &csr, &err) == -EINVAL && strstr(err, "too many"));
    const struct x509_sans max = {many, X509_MAX_SANS, NULL, 0};
    CHECK(x509_csr_create(key, "u", &max, &csr, &err) == 0);
    free(csr);
    /* wildcards and underscores are host names */
    static const char *const odd[] = {"*.pg.example", "_pg._tcp.example", "UPPER-case.Example"};
    const struct x509_sans odd_sans = {odd, 3, NULL, 0};
    CHECK(x509_csr_create(key, "u", &odd_sans, &csr, &err) == 0);
    free(csr);
    CHECK(x509_csr_create(key, "", &unit_sans, &csr, &err) == -EINVAL);
    CHECK(x509_csr_create(key, "u", NULL, &csr, &err) == -EINVAL);
    CHECK(x509_csr_create("", "u", &unit_sans, &csr, &err) == -EINVAL);
    CHECK(x509_csr_create(NULL, "u", &unit_sans, &csr, &err) == -EINVAL);
    /* a weak key cannot make a request */
    EVP_PKEY *weak = rsa_key(1024);
    char *weak_pem = weak ? pem_of(weak, PKCS8) : NULL;
    CHECK(weak_pem && x509_csr_create(weak_pem, "u", &unit_sans, &csr, &err) == -EINVAL);
    CHECK(csr == NULL && msg_clean(err, weak_pem, weak_pem ? strlen(weak_pem) : 0));
    free(weak_pem);
    EVP_PKEY_free(weak);
    password_free(key);
    free(err);
}

TEST(issue_and_info_bad_inputs)
{
    struct ca ca = {0};
    char *key = NULL, *csr = NULL, *cert = NULL, *out = (char *)"x", *err = NULL;
    CHECK(make_ca(&ca, "bad-input-ca", 10));
    CHECK(make_leaf(&ca, X509_KEY_RSA2048, 5, &key, &csr, &cert));
    if (!cert)
        goto out;
    struct x509_info info;
    struct x509_csr_info ci;

    /* empty, truncated, garbage */
    size_t n = strlen(csr);
    char *half = strndup(csr, n / 2);
    const char *bad_pems[] = {"", "garbage", half, "-----BEGIN CERTIFICATE REQUEST-----\n"};
    for (size_t i = 0; i < sizeof(bad_pems) / sizeof(bad_pems[0]); i++) {
        CHECK(x509_issue(bad_pems[i], ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) ==
              -EINVAL);
        CHECK(out == NULL && msg_clean(err, csr, n));
        CHECK(x509_csr_info(bad_pems[i], &ci, &err) == -EINVAL && msg_clean(err, csr, n));
    }
    free(half);
    CHECK(x509_issue(NULL, ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);

    /* a tampered signature: still a well-formed request, refused */
    char *t = tamper(csr);
    CHECK(t && strcmp(t, csr) != 0);
    BIO *b = t ? BIO_new_mem_buf(t, -1) : NULL;
    X509_REQ *parsed = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    CHECK(parsed != NULL); /* the flip hit the signature, not the structure */
    X509_REQ_free(parsed);
    BIO_free(b);
    ERR_clear_error();
    if (t) {
        CHECK(x509_csr_info(t, &ci, &err) == -EINVAL && err && strstr(err, "signature"));
        CHECK(msg_clean(err, t, strlen(t)));
        CHECK(ci.cn[0] == '\0' && ci.sans.n_dns == 0);
        CHECK(x509_issue(t, ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
        CHECK(out == NULL && err && strstr(err, "signature") && msg_clean(err, t, strlen(t)));
    }
    free(t);

    /* certificate inputs */
    char *half_cert = strndup(cert, strlen(cert) / 2);
    const char *bad_certs[] = {"", "garbage", half_cert};
    for (size_t i = 0; i < sizeof(bad_certs) / sizeof(bad_certs[0]); i++) {
        CHECK(x509_cert_info(bad_certs[i], &info, &err) == -EINVAL);
        CHECK(msg_clean(err, cert, strlen(cert)));
        CHECK(info.cn[0] == '\0' && info.not_after == 0);
        CHECK(x509_verify_chain(bad_certs[i], ca.cert, time(NULL), &err) == -EINVAL);
        CHECK(x509_verify_chain(cert, bad_certs[i], time(NULL), &err) == -EINVAL);
        CHECK(msg_clean(err, cert, strlen(cert)));
        CHECK(x509_issue(csr, bad_certs[i], ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) ==
              -EINVAL);
    }
    /* a bundle whose second certificate is cut short */
    char *bundle = NULL;
    CHECK(asprintf(&bundle, "%s%s", ca.cert, half_cert) > 0);
    CHECK(bundle && x509_verify_chain(cert, bundle, time(NULL), &err) == -EINVAL);
    free(bundle);
    free(half_cert);
    CHECK(x509_cert_info(NULL, &info, &err) == -EINVAL);
    CHECK(x509_cert_info(cert, NULL, &err) == -EINVAL);

    /* the CA side: a leaf is not a CA; a key that is not the CA's; a bad CA key */
    CHECK(x509_issue(csr, cert, key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    CHECK(err && strstr(err, "not a CA"));
    struct ca other = {0};
    CHECK(make_ca(&other, "other", 10));
    CHECK(x509_issue(csr, ca.cert, other.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    CHECK(err && strstr(err, "does not match") && msg_clean(err, other.key, strlen(other.key)));
    free_ca(&other);
    CHECK(x509_issue(csr, ca.cert, "", 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    CHECK(x509_issue(csr, ca.cert, ca.key, 0, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    CHECK(x509_issue(csr, ca.cert, ca.key, 5, (enum x509_usage)9, &out, &err) == -EINVAL);
    CHECK(x509_issue(csr, ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, NULL, &err) == -EINVAL);
    CHECK(out == NULL);
out:
    free(err);
    free(cert);
    free(csr);
    password_free(key);
    free_ca(&ca);
}

TEST(foreign_requests_and_certs)
{
    struct ca ca = {0};
    char *key = NULL, *out = NULL, *err = NULL;
    CHECK(make_ca(&ca, "foreign-ca", 10));
    CHECK(x509_key_generate(X509_KEY_ECDSA_P256, &key, &err) == 0);
    if (!key || !ca.cert)
        goto out;
    struct x509_csr_info ci;

    /* a URI SAN: refused on the issuing side */
    char *csr = custom_csr(key, "u", "DNS:a.example,URI:spiffe://pg/u");
    CHECK(csr && x509_csr_info(csr, &ci, &err) == -EINVAL && strstr(err, "DNS or IP"));
    CHECK(csr &&
          x509_issue(csr, ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    free(csr);

    /* more than X509_MAX_SANS DNS names */
    char conf[2048] = "";
    size_t used = 0;
    for (int i = 0; i <= X509_MAX_SANS; i++)
        used += (size_t)snprintf(conf + used, sizeof(conf) - used, "%sDNS:h%d.example",
                                 i ? "," : "", i);
    csr = custom_csr(key, "u", conf);
    CHECK(csr && x509_csr_info(csr, &ci, &err) == -EINVAL && strstr(err, "more than"));
    free(csr);

    /* no CN: readable, but not issued; no SAN: not issued */
    csr = custom_csr(key, NULL, "DNS:a.example");
    CHECK(csr && x509_csr_info(csr, &ci, &err) == 0 && ci.cn[0] == '\0' && ci.sans.n_dns == 1);
    CHECK(csr &&
          x509_issue(csr, ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    CHECK(err && strstr(err, "common name"));
    free(csr);
    csr = custom_csr(key, "u", NULL);
    CHECK(csr && x509_csr_info(csr, &ci, &err) == 0 && ci.sans.n_dns == 0);
    CHECK(csr &&
          x509_issue(csr, ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    CHECK(err && strstr(err, "at least one"));
    free(csr);

    /* a weak key in a correctly signed request */
    EVP_PKEY *weak = rsa_key(1024);
    char *weak_pem = weak ? pem_of(weak, PKCS8) : NULL;
    csr = weak_pem ? custom_csr(weak_pem, "u", "DNS:a.example") : NULL;
    CHECK(csr && x509_csr_info(csr, &ci, &err) == -EINVAL && strstr(err, "1024"));
    CHECK(csr &&
          x509_issue(csr, ca.cert, ca.key, 5, X509_USAGE_SERVER_CLIENT, &out, &err) == -EINVAL);
    free(csr);
    free(weak_pem);
    EVP_PKEY_free(weak);

    /* a certificate with an email SAN: reported, other kinds counted */
    struct x509_info info;
    char *cert = custom_cert("DNS:x.example,email:dba@example.com,IP:192.0.2.7");
    CHECK(cert && x509_cert_info(cert, &info, &err) == 0);
    CHECK(info.sans.n_dns == 1 && info.sans.n_ips == 1 && info.n_other_sans == 1);
    CHECK_STR(info.sans.ips[0], "192.0.2.7");
    CHECK(!info.is_ca && !info.server_auth);
    free(cert);
    cert = custom_cert(conf); /* 33 DNS names */
    CHECK(cert && x509_cert_info(cert, &info, &err) == -EINVAL && strstr(err, "more than"));
    free(cert);
    CHECK(out == NULL);
out:
    free(err);
    password_free(key);
    free_ca(&ca);
}

/* ---- the openssl command-line tool agrees ------------------------------------------------ */

static bool write_file(const char *dir, const char *name, const char *text, char *path, size_t size)
{
    if (snprintf(path, size, "%s/%s", dir, name) >= (int)size)
        return false;
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* Runs cmd (stderr merged), returns its exit status and whether its output has `want`. */
static int run(const char *cmd, const char *want, bool *found)
{
    char *full = NULL;
    *found = false;
    if (asprintf(&full, "%s 2>&1", cmd) < 0)
        return -1;
    FILE *p = popen(full, "r");
    free(full);
    if (!p)
        return -1;
    char line[1024];
    while (fgets(line, sizeof(line), p))
        if (want && strstr(line, want))
            *found = true;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(openssl_cli_cross_check)
{
    if (access("/usr/bin/openssl", X_OK) != 0) {
        printf("  note: /usr/bin/openssl is missing: the command-line cross-check is skipped\n");
        return;
    }
    struct ca ca = {0}, other = {0};
    char *key = NULL, *csr = NULL, *cert = NULL;
    char dir[] = "/tmp/test_x509.XXXXXX";
    char ca_path[256], other_path[256], leaf_path[256], csr_path[256], cmd[1024];
    bool have_dir = mkdtemp(dir) != NULL, found = false;
    CHECK(have_dir);
    CHECK(make_ca(&ca, "cli-ca", 100) && make_ca(&other, "cli-ca", 100));
    CHECK(make_leaf(&ca, X509_KEY_ECDSA_P256, 30, &key, &csr, &cert));
    if (!have_dir || !cert || !other.cert)
        goto out;
    CHECK(write_file(dir, "ca.pem", ca.cert, ca_path, sizeof(ca_path)));
    CHECK(write_file(dir, "other.pem", other.cert, other_path, sizeof(other_path)));
    CHECK(write_file(dir, "leaf.pem", cert, leaf_path, sizeof(leaf_path)));
    CHECK(write_file(dir, "req.pem", csr, csr_path, sizeof(csr_path)));

    static const char *const purposes[] = {"sslserver", "sslclient"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd), "/usr/bin/openssl verify -x509_strict -purpose %s -CAfile %s %s",
                 purposes[i], ca_path, leaf_path);
        CHECK(run(cmd, ": OK", &found) == 0 && found);
    }
    snprintf(cmd, sizeof(cmd), "/usr/bin/openssl verify -x509_strict -CAfile %s %s", ca_path,
             ca_path);
    CHECK(run(cmd, ": OK", &found) == 0 && found);
    snprintf(cmd, sizeof(cmd), "/usr/bin/openssl verify -CAfile %s %s", other_path, leaf_path);
    CHECK(run(cmd, ": OK", &found) != 0 && !found);
    snprintf(cmd, sizeof(cmd), "/usr/bin/openssl req -verify -noout -in %s", csr_path);
    CHECK(run(cmd, "verify OK", &found) == 0 && found);
    snprintf(cmd, sizeof(cmd), "/usr/bin/openssl x509 -noout -ext subjectAltName -in %s",
             leaf_path);
    CHECK(run(cmd,
              "DNS:postgresql-0, DNS:pg0.example.internal, DNS:10.1.2.3, "
              "IP Address:10.1.2.3, IP Address:FD00:0:0:0:0:0:0:1",
              &found) == 0 &&
          found);
out:
    if (have_dir) {
        static const char *const names[] = {"ca.pem", "other.pem", "leaf.pem", "req.pem"};
        for (size_t i = 0; i < 4; i++) {
            char path[256];
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
            unlink(path);
        }
        CHECK(rmdir(dir) == 0);
    }
    free(cert);
    free(csr);
    password_free(key);
    free_ca(&ca);
    free_ca(&other);
}

/* ---- unique requests, request and certificate comparison, anchored verification -------- */

/* pem with CRLF line ends, text before it and spaces after it. */
static char *crlf_variant(const char *pem)
{
    size_t n = strlen(pem);
    char *s = malloc(2 * n + 32);
    if (!s)
        return NULL;
    char *q = s + sprintf(s, "note\r\n");
    for (const char *p = pem; *p; p++) {
        if (*p == '\n')
            *q++ = '\r';
        *q++ = *p;
    }
    strcpy(q, "  \t\r\n");
    return s;
}

/* The x500UniqueIdentifier of a request as text, "" when there is none (buf of 64). */
static void unique_id_of(const char *csr, char *buf)
{
    buf[0] = '\0';
    BIO *b = BIO_new_mem_buf(csr, -1);
    X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    const X509_NAME *name = req ? X509_REQ_get_subject_name(req) : NULL;
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_x500UniqueIdentifier, -1) : -1;
    const X509_NAME_ENTRY *e = idx >= 0 ? X509_NAME_get_entry(name, idx) : NULL;
    const ASN1_STRING *d = e ? X509_NAME_ENTRY_get_data(e) : NULL;
    if (d && ASN1_STRING_length(d) < 64) {
        memcpy(buf, ASN1_STRING_get0_data(d), (size_t)ASN1_STRING_length(d));
        buf[ASN1_STRING_length(d)] = '\0';
    }
    X509_REQ_free(req);
    BIO_free(b);
}

static bool uuid4_shaped(const char *u)
{
    if (strlen(u) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !strchr("0123456789abcdef", u[i]))
            return false;
    }
    return u[14] == '4' && strchr("89ab", u[19]) != NULL;
}

TEST(csr_unique_and_same)
{
    struct ca ca = {0};
    char *key = NULL, *a = NULL, *b = NULL, *p1 = NULL, *p2 = NULL, *cert = NULL, *err = NULL;
    char *variant = NULL, *two = NULL;
    CHECK(make_ca(&ca, "unique-ca", 30));
    CHECK(x509_key_generate(X509_KEY_RSA2048, &key, &err) == 0);
    if (!key || !ca.cert)
        goto out;
    /* plain RSA requests are deterministic: the same bytes twice */
    CHECK(x509_csr_create(key, "postgresql-0", &unit_sans, &p1, &err) == 0);
    CHECK(x509_csr_create(key, "postgresql-0", &unit_sans, &p2, &err) == 0);
    CHECK(p1 && p2 && strcmp(p1, p2) == 0);
    char uid[64];
    unique_id_of(p1, uid);
    CHECK(uid[0] == '\0');
    /* unique requests differ, carry a UUID4, and are otherwise the same request */
    CHECK(x509_csr_create_unique(key, "postgresql-0", &unit_sans, &a, &err) == 0);
    CHECK(x509_csr_create_unique(key, "postgresql-0", &unit_sans, &b, &err) == 0);
    if (!a || !b || !p1)
        goto out;
    CHECK(strcmp(a, b) != 0);
    char ua[64], ub[64];
    unique_id_of(a, ua);
    unique_id_of(b, ub);
    CHECK(uuid4_shaped(ua) && uuid4_shaped(ub) && strcmp(ua, ub) != 0);
    struct x509_csr_info ia, ip;
    CHECK(x509_csr_info(a, &ia, &err) == 0 && x509_csr_info(p1, &ip, &err) == 0);
    CHECK_STR(ia.cn, "postgresql-0");
    CHECK_STR(ia.pubkey_sha256, ip.pubkey_sha256);
    CHECK(x509_sans_equal(&ia.sans, &unit_sans));
    /* x509_issue copies the CN alone */
    CHECK(x509_issue(a, ca.cert, ca.key, 10, X509_USAGE_SERVER_CLIENT, &cert, &err) == 0);
    struct x509_info info;
    CHECK(cert && x509_cert_info(cert, &info, &err) == 0);
    CHECK_STR(info.cn, "postgresql-0");
    X509 *x = cert ? parse_cert(cert) : NULL;
    CHECK(x && X509_NAME_entry_count(X509_get_subject_name(x)) == 1);
    X509_free(x);
    /* bad arguments are x509_csr_create's */
    char *none = NULL;
    CHECK(x509_csr_create_unique(key, "", &unit_sans, &none, &err) == -EINVAL && !none);
    CHECK(x509_csr_create_unique(key, "u", NULL, &none, &err) == -EINVAL && !none);
    CHECK(x509_csr_create_unique(key, "u", &unit_sans, NULL, &err) == -EINVAL);

    /* same: DER equality, formatting aside */
    bool same = true;
    CHECK(x509_csr_same(a, a, &same, &err) == 0 && same);
    CHECK(x509_csr_same(a, b, &same, &err) == 0 && !same);
    CHECK(x509_csr_same(p1, p2, &same, &err) == 0 && same);
    variant = crlf_variant(a);
    CHECK(variant && x509_csr_same(variant, a, &same, &err) == 0 && same);
    CHECK(variant && x509_csr_same(b, variant, &same, &err) == 0 && !same);
    /* two requests, a certificate, garbage, NULL: -EINVAL and not the same */
    if (asprintf(&two, "%s%s", a, b) < 0)
        two = NULL;
    same = true;
    CHECK(two && x509_csr_same(two, a, &same, &err) == -EINVAL && !same);
    CHECK(msg_clean(err, two, two ? strlen(two) : 0));
    same = true;
    CHECK(x509_csr_same(a, cert, &same, &err) == -EINVAL && !same);
    CHECK(msg_clean(err, cert, strlen(cert)));
    CHECK(x509_csr_same("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                        "REQUEST-----\n",
                        a, &same, &err) == -EINVAL);
    CHECK(x509_csr_same(NULL, a, &same, &err) == -EINVAL && !same);
    CHECK(x509_csr_same(a, "", &same, &err) == -EINVAL && !same);
    CHECK(x509_csr_same(a, a, NULL, &err) == -EINVAL);
out:
    free(two);
    free(variant);
    free(cert);
    free(a);
    free(b);
    free(p1);
    free(p2);
    free(err);
    password_free(key);
    free_ca(&ca);
}

TEST(certs_normalize_and_anchored)
{
    struct ca ca = {0}, other = {0};
    char *key = NULL, *csr = NULL, *cert = NULL, *err = NULL, *norm = NULL, *variant = NULL;
    char *pair = NULL, *mixed = NULL;
    CHECK(make_ca(&ca, "norm-ca", 30));
    CHECK(make_ca(&other, "other-ca", 30));
    CHECK(make_leaf(&ca, X509_KEY_ECDSA_P256, 10, &key, &csr, &cert));
    if (!cert || !other.cert)
        goto out;
    struct x509_info info;
    CHECK(x509_cert_info(ca.cert, &info, &err) == 0 && info.self_signed && info.is_ca);
    CHECK(x509_cert_info(cert, &info, &err) == 0 && !info.self_signed && !info.is_ca);

    size_t n = 0;
    CHECK(x509_certs_normalize(cert, &norm, &n, &err) == 0 && n == 1);
    CHECK(norm && strcmp(norm, cert) == 0); /* OpenSSL's own PEM is already canonical */
    free(norm);
    norm = NULL;
    variant = crlf_variant(cert);
    CHECK(variant && x509_certs_normalize(variant, &norm, &n, &err) == 0 && n == 1);
    CHECK(norm && strcmp(norm, cert) == 0);
    free(norm);
    norm = NULL;
    if (asprintf(&pair, "%s\n%s", cert, ca.cert) < 0)
        pair = NULL;
    CHECK(pair && x509_certs_normalize(pair, &norm, &n, &err) == 0 && n == 2);
    CHECK(norm && strncmp(norm, cert, strlen(cert)) == 0 &&
          strcmp(norm + strlen(cert), ca.cert) == 0);
    free(norm);
    norm = NULL;
    /* a block of another kind, a request, garbage: refused, nothing returned */
    if (asprintf(&mixed, "%s%s", cert, ca.key) < 0)
        mixed = NULL;
    n = 9;
    CHECK(mixed && x509_certs_normalize(mixed, &norm, &n, &err) == -EINVAL && !norm && n == 0);
    CHECK(msg_clean(err, mixed, mixed ? strlen(mixed) : 0));
    CHECK(x509_certs_normalize(csr, &norm, &n, &err) == -EINVAL && !norm);
    CHECK(x509_certs_normalize("hello", &norm, &n, &err) == -EINVAL && !norm);
    CHECK(x509_certs_normalize(NULL, &norm, &n, &err) == -EINVAL && !norm);
    CHECK(x509_certs_normalize(cert, NULL, &n, &err) == -EINVAL);

    /* anchored: any certificate of the bundle is a trust anchor */
    time_t now = time(NULL);
    CHECK(x509_verify_anchored(cert, ca.cert, now, &err) == 0);
    CHECK(x509_verify_anchored(cert, other.cert, now, &err) == -EKEYREJECTED);
    CHECK(x509_verify_anchored(cert, cert, now, &err) == 0);
    CHECK(x509_verify_chain(cert, cert, now, &err) == -EKEYREJECTED);
    CHECK(x509_verify_anchored(cert, ca.cert, now + 400 * DAY, &err) == -EKEYEXPIRED);
    CHECK(x509_verify_anchored(cert, "junk", now, &err) == -EINVAL);
out:
    free(mixed);
    free(pair);
    free(variant);
    free(norm);
    free(err);
    free(cert);
    free(csr);
    password_free(key);
    free_ca(&ca);
    free_ca(&other);
}

CHECK_MAIN("x509", CASE(key_generate_both_types), CASE(key_check_policy),
           CASE(ca_create_and_inspect), CASE(ca_create_bad_arguments), CASE(issue_ecdsa_unit),
           CASE(issue_rsa_unit), CASE(expiry_and_cap), CASE(key_matches_cert_cases),
           CASE(sans_equal_sets), CASE(renew_due_thresholds), CASE(csr_create_bad_inputs),
           CASE(issue_and_info_bad_inputs), CASE(foreign_requests_and_certs),
           CASE(openssl_cli_cross_check), CASE(csr_unique_and_same),
           CASE(certs_normalize_and_anchored))
