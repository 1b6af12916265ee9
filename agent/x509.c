/* X.509 for the charm's TLS (x509.h): keys, the internal CA, requests, issuing, inspecting
 * and verifying certificates with OpenSSL 3, so that reconcile decides from typed facts. */
/* _GNU_SOURCE is how glibc is asked for timegm and memmem. */
#define _GNU_SOURCE
#include "x509.h"

#include "errmsg.h"
#include "password.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#define SKEW_SECONDS 3600L /* notBefore is this far in the past (clock skew) */
#define SERIAL_BITS 128
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define MAX_PEM_CERTS 64 /* certificates in a chain or a CA bundle */
#define DNS_MAX_LEN ((size_t)253)
#define DNS_MAX_LABEL 63
#define SHA256_LEN 32

typedef STACK_OF(X509) cert_list; /* named: clang-format breaks `STACK_OF(X509) **` */

/* ---- small helpers ------------------------------------------------------------------- */

/* The reason of OpenSSL's latest error (a fixed phrase from OpenSSL's tables, never data),
 * and an empty error queue afterwards. */
static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "no reason given";
}

/* Passphrase callback for every PEM read: never prompt (OpenSSL's default reads the
 * terminal); record that a passphrase was wanted, i.e. the PEM is encrypted. */
// NOLINTNEXTLINE(readability-non-const-parameter): the signature is pem_password_cb's
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (u)
        *(bool *)u = true;
    return -1;
}

/* Length of a NUL-terminated PEM input, within X509_PEM_MAX. */
static int pem_length(const char *pem, const char *what, size_t *len, char **err)
{
    if (!pem)
        return errmsg_set(err, -EINVAL, "no %s was given", what);
    size_t n = strnlen(pem, X509_PEM_MAX + 1);
    if (n == 0)
        return errmsg_set(err, -EINVAL, "the %s is empty", what);
    if (n > X509_PEM_MAX)
        return errmsg_set(err, -EINVAL, "the %s is larger than %zu bytes", what, X509_PEM_MAX);
    *len = n;
    return 0;
}

/* A read-only memory BIO over len (<= X509_PEM_MAX) bytes of the caller's. */
static BIO *bio_over(const char *s, size_t len)
{
    return BIO_new_mem_buf(s, (int)len);
}

/* Wipe what a memory BIO holds, then free it. NULL is a no-op. */
static void bio_wipe_free(BIO *b)
{
    if (!b)
        return;
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n > 0 && data)
        OPENSSL_cleanse(data, (size_t)n);
    BIO_free(b);
}

/* A NUL-terminated copy of what a memory BIO holds: sodium_malloc'd when secret (and the
 * BIO's copy is wiped), else malloc'd. */
static int bio_take(BIO *b, bool secret, char **out, char **err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n <= 0 || !data)
        return errmsg_set(err, -EIO, "OpenSSL produced no PEM output");
    char *copy = NULL;
    if (secret) {
        copy = password_dup(data, (size_t)n);
        OPENSSL_cleanse(data, (size_t)n);
    } else {
        copy = malloc((size_t)n + 1);
        if (copy) {
            memcpy(copy, data, (size_t)n);
            copy[n] = '\0';
        }
    }
    if (!copy)
        return errmsg_set(err, -ENOMEM, "out of memory for a PEM output");
    *out = copy;
    return 0;
}

static void hex_encode(const unsigned char *md, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int time_of(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -EINVAL;
    time_t v = timegm(&tm);
    if (v == (time_t)-1)
        return -EINVAL;
    *out = v;
    return 0;
}

static int check_days(int days, char **err)
{
    if (days < 1 || days > X509_MAX_DAYS)
        return errmsg_set(err, -EINVAL, "a validity of %d days is out of range (1 to %d)", days,
                          X509_MAX_DAYS);
    return 0;
}

static bool has_control(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

static int check_cn(const char *cn, char **err)
{
    if (!cn)
        return errmsg_set(err, -EINVAL, "no common name was given");
    size_t n = strnlen(cn, X509_CN_LEN + 1);
    if (n == 0)
        return errmsg_set(err, -EINVAL, "the common name is empty");
    if (n > X509_CN_LEN)
        return errmsg_set(err, -EINVAL, "the common name is longer than %d bytes", X509_CN_LEN);
    if (has_control((const unsigned char *)cn, n))
        return errmsg_set(err, -EINVAL, "the common name contains a control character");
    return 0;
}

/* The binary form of an IPv4 or IPv6 address in text: 4 or 16 (bytes written), else 0. */
static int ip_parse(const char *s, unsigned char out[16])
{
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) == 1)
        return 16;
    return 0;
}

static bool dns_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* A host name (optionally "*." first), or an IP address in text. s is NUL-terminated. */
static bool dns_name_ok(const char *s)
{
    size_t n = strnlen(s, DNS_MAX_LEN + 1);
    if (n == 0 || n > DNS_MAX_LEN)
        return false;
    unsigned char ip[16];
    if (ip_parse(s, ip))
        return true;
    const char *p = s;
    if (p[0] == '*' && p[1] == '.')
        p += 2;
    int label = 0;
    char prev = '.';
    for (; *p; prev = *p, p++) {
        if (*p == '.') {
            if (label == 0 || prev == '-')
                return false;
            label = 0;
            continue;
        }
        if (!dns_char(*p) || (label == 0 && *p == '-') || ++label > DNS_MAX_LABEL)
            return false;
    }
    return label > 0 && prev != '-';
}

/* Printable ASCII without space: what cert_info accepts in a DNS SAN it only reports. */
static bool printable_name(const char *s)
{
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e)
            return false;
    return true;
}

/* ---- keys -------------------------------------------------------------------------------- */

static int key_policy(const EVP_PKEY *pk, const char *what, char **err)
{
    if (EVP_PKEY_is_a(pk, "RSA")) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
            return errmsg_set(err, -EINVAL,
                              "%s is an RSA key of %d bits: %d to %d bits are accepted", what, bits,
                              RSA_MIN_BITS, RSA_MAX_BITS);
        return 0;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        char group[80] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1 || glen == 0) {
            ERR_clear_error();
            return errmsg_set(err, -EINVAL,
                              "%s is an EC key without a named curve: only P-256 and P-384 "
                              "are accepted",
                              what);
        }
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
            strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            return 0;
        return errmsg_set(err, -EINVAL,
                          "%s is an EC key on curve %s: only P-256 and P-384 are accepted", what,
                          group);
    }
    return errmsg_set(err, -EINVAL,
                      "%s is of an unsupported type: only RSA (2048 to %d bits) and EC "
                      "(P-256, P-384) keys are accepted",
                      what, RSA_MAX_BITS);
}

enum pem_kind { PEM_NONE, PEM_PRIVATE, PEM_ENCRYPTED, PEM_PUBLIC, PEM_CERT, PEM_OTHER };

/* What the PEM blocks in s are, judged by their labels ("EC PARAMETERS" blocks are
 * skipped): the first block's kind, and in *n_blocks how many there are. */
static enum pem_kind pem_classify(const char *s, size_t len, int *n_blocks)
{
    static const char begin[] = "-----BEGIN ";
    static const char dashes[] = "-----";
    enum pem_kind first = PEM_NONE;
    *n_blocks = 0;
    const char *end = s + len;
    const char *p = s;
    while (p < end) {
        const char *b = memmem(p, (size_t)(end - p), begin, sizeof(begin) - 1);
        if (!b)
            break;
        const char *label = b + sizeof(begin) - 1;
        const char *d = memmem(label, (size_t)(end - label), dashes, sizeof(dashes) - 1);
        if (!d)
            break;
        size_t n = (size_t)(d - label);
        p = d + sizeof(dashes) - 1;
#define LABEL_IS(lit) (n == sizeof(lit) - 1 && memcmp(label, lit, n) == 0)
        if (LABEL_IS("EC PARAMETERS"))
            continue;
        enum pem_kind k = PEM_OTHER;
        if (LABEL_IS("PRIVATE KEY") || LABEL_IS("RSA PRIVATE KEY") || LABEL_IS("EC PRIVATE KEY"))
            k = PEM_PRIVATE;
        else if (LABEL_IS("ENCRYPTED PRIVATE KEY"))
            k = PEM_ENCRYPTED;
        else if (LABEL_IS("PUBLIC KEY") || LABEL_IS("RSA PUBLIC KEY"))
            k = PEM_PUBLIC;
        else if (LABEL_IS("CERTIFICATE") || LABEL_IS("TRUSTED CERTIFICATE") ||
                 LABEL_IS("CERTIFICATE REQUEST") || LABEL_IS("NEW CERTIFICATE REQUEST"))
            k = PEM_CERT;
#undef LABEL_IS
        if (first == PEM_NONE)
            first = k;
        (*n_blocks)++;
    }
    return first;
}

/* Parse len bytes of private key PEM and hold it to the policy (x509_key_check's rules). */
static int key_load(const char *pem, size_t len, EVP_PKEY **out, char **err)
{
    *out = NULL;
    if (!pem)
        return errmsg_set(err, -EINVAL, "no private key was given");
    if (len == 0)
        return errmsg_set(err, -EINVAL, "the private key is empty");
    if (len > X509_PEM_MAX)
        return errmsg_set(err, -EINVAL, "the private key is larger than %zu bytes", X509_PEM_MAX);
    if (memchr(pem, '\0', len))
        return errmsg_set(err, -EINVAL, "the private key contains a NUL byte: it is not PEM text");
    int n_blocks = 0;
    switch (pem_classify(pem, len, &n_blocks)) {
    case PEM_NONE:
        return errmsg_set(err, -EINVAL, "the private key is not PEM text (no PEM header line)");
    case PEM_ENCRYPTED:
        return errmsg_set(err, -EINVAL,
                          "the private key is encrypted: give it without a passphrase");
    case PEM_PUBLIC:
        return errmsg_set(err, -EINVAL, "this is a public key, not a private key");
    case PEM_CERT:
        return errmsg_set(err, -EINVAL,
                          "this is a certificate or a certificate request, not a private key");
    case PEM_OTHER:
        return errmsg_set(err, -EINVAL,
                          "the PEM block is not a private key (expected PRIVATE KEY, RSA "
                          "PRIVATE KEY or EC PRIVATE KEY)");
    case PEM_PRIVATE:
        break;
    }
    if (n_blocks != 1)
        return errmsg_set(err, -EINVAL,
                          "the private key PEM holds %d blocks: give the private key alone",
                          n_blocks);
    BIO *b = bio_over(pem, len);
    if (!b)
        return errmsg_set(err, -ENOMEM, "out of memory reading a private key");
    bool asked = false;
    EVP_PKEY *pk = PEM_read_bio_PrivateKey_ex(b, NULL, no_passphrase, &asked, NULL, NULL);
    BIO_free(b);
    if (!pk) {
        if (asked) {
            ERR_clear_error();
            return errmsg_set(err, -EINVAL,
                              "the private key is encrypted: give it without a passphrase");
        }
        return errmsg_set(err, -EINVAL, "the private key cannot be parsed (%s)", ossl_reason());
    }
    int rc = key_policy(pk, "the private key", err);
    if (rc < 0) {
        EVP_PKEY_free(pk);
        return rc;
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (!ctx) {
        EVP_PKEY_free(pk);
        return errmsg_set(err, -ENOMEM, "out of memory checking a private key");
    }
    int ok = EVP_PKEY_pairwise_check(ctx);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    if (ok != 1) {
        EVP_PKEY_free(pk);
        return errmsg_set(err, -EINVAL,
                          "the private key is inconsistent: its public half does not match "
                          "its private half");
    }
    *out = pk;
    return 0;
}

static int key_load_str(const char *pem, EVP_PKEY **out, char **err)
{
    size_t len = 0;
    *out = NULL;
    int rc = pem_length(pem, "private key", &len, err);
    return rc < 0 ? rc : key_load(pem, len, out, err);
}

static int key_to_pem(const EVP_PKEY *pk, char **out, char **err)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return errmsg_set(err, -ENOMEM, "out of memory writing a private key");
    int rc = 0;
    if (PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL) != 1)
        rc = errmsg_set(err, -EIO, "cannot write the private key as PEM (%s)", ossl_reason());
    else
        rc = bio_take(b, true, out, err);
    bio_wipe_free(b);
    return rc;
}

static EVP_PKEY *key_new(enum x509_key_type type)
{
    switch (type) {
    case X509_KEY_RSA2048:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)RSA_MIN_BITS);
    case X509_KEY_ECDSA_P256:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    }
    return NULL;
}

int x509_key_generate(enum x509_key_type type, char **key_pem, char **err)
{
    if (!key_pem)
        return errmsg_set(err, -EINVAL, "x509_key_generate: no place for the key");
    *key_pem = NULL;
    if (type != X509_KEY_RSA2048 && type != X509_KEY_ECDSA_P256)
        return errmsg_set(err, -EINVAL, "unknown key type %d", (int)type);
    EVP_PKEY *pk = key_new(type);
    if (!pk)
        return errmsg_set(err, -EIO, "cannot generate a key (%s)", ossl_reason());
    int rc = key_to_pem(pk, key_pem, err);
    EVP_PKEY_free(pk);
    return rc;
}

int x509_key_check(const char *key_pem, size_t len, char **err)
{
    EVP_PKEY *pk = NULL;
    int rc = key_load(key_pem, len, &pk, err);
    EVP_PKEY_free(pk);
    return rc;
}

/* ---- names ---------------------------------------------------------------------------- */

static int name_make(const char *cn, X509_NAME **out, char **err)
{
    X509_NAME *name = X509_NAME_new();
    if (!name)
        return errmsg_set(err, -ENOMEM, "out of memory for a subject name");
    if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                   -1, -1, 0) != 1) {
        X509_NAME_free(name);
        return errmsg_set(err, -EINVAL, "the common name is not valid UTF-8 (%s)", ossl_reason());
    }
    *out = name;
    return 0;
}

/* The subject CN (first and only) as UTF-8 in buf, "" when there is none. */
static int cn_read(const X509_NAME *name, char buf[X509_CN_BUF], char **err)
{
    buf[0] = '\0';
    if (!name)
        return 0;
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0)
        return 0;
    if (X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
        return errmsg_set(err, -EINVAL, "the subject has more than one common name");
    const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, idx);
    const ASN1_STRING *d = e ? X509_NAME_ENTRY_get_data(e) : NULL;
    unsigned char *u = NULL;
    int n = d ? ASN1_STRING_to_UTF8(&u, d) : -1;
    if (n < 0) {
        ERR_clear_error();
        return errmsg_set(err, -EINVAL, "the subject common name cannot be read as UTF-8");
    }
    bool bad = n >= X509_CN_BUF || memchr(u, '\0', (size_t)n) || has_control(u, (size_t)n);
    if (!bad) {
        memcpy(buf, u, (size_t)n);
        buf[n] = '\0';
    }
    OPENSSL_free(u);
    if (bad)
        return errmsg_set(err, -EINVAL,
                          "the subject common name is too long or contains a control character");
    return 0;
}

/* ---- subject alternative names ------------------------------------------------------- */

static int gens_add(GENERAL_NAMES *gens, int type, const unsigned char *data, int len)
{
    ASN1_STRING *s = type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (!s || !gn || ASN1_STRING_set(s, data, len) != 1) {
        ASN1_STRING_free(s);
        GENERAL_NAME_free(gn);
        return -ENOMEM;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
        GENERAL_NAME_free(gn);
        return -ENOMEM;
    }
    return 0;
}

/* Validated names -> a GENERAL_NAMES (DNS first, then IPs), at least one name. */
static int gens_build(const char *const *dns, size_t n_dns, const char *const *ips, size_t n_ips,
                      GENERAL_NAMES **out, char **err)
{
    *out = NULL;
    if ((n_dns && !dns) || (n_ips && !ips))
        return errmsg_set(err, -EINVAL, "a subject alternative name list is missing");
    if (n_dns > X509_MAX_SANS || n_ips > X509_MAX_SANS)
        return errmsg_set(err, -EINVAL,
                          "too many subject alternative names: at most %d DNS names and %d IP "
                          "addresses",
                          X509_MAX_SANS, X509_MAX_SANS);
    if (n_dns + n_ips == 0)
        return errmsg_set(err, -EINVAL,
                          "at least one DNS or IP subject alternative name is required");
    for (size_t i = 0; i < n_dns; i++)
        if (!dns[i] || !dns_name_ok(dns[i]))
            return errmsg_set(err, -EINVAL, "DNS name %zu is not a valid host name or IP address",
                              i + 1);
    for (size_t i = 0; i < n_ips; i++) {
        unsigned char ip[16];
        if (!ips[i] || !ip_parse(ips[i], ip))
            return errmsg_set(err, -EINVAL, "IP address %zu is not an IPv4 or IPv6 address", i + 1);
    }
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens)
        return errmsg_set(err, -ENOMEM, "out of memory for subject alternative names");
    int rc = 0;
    for (size_t i = 0; i < n_dns && rc == 0; i++)
        rc = gens_add(gens, GEN_DNS, (const unsigned char *)dns[i], (int)strlen(dns[i]));
    for (size_t i = 0; i < n_ips && rc == 0; i++) {
        unsigned char ip[16];
        int len = ip_parse(ips[i], ip);
        rc = gens_add(gens, GEN_IPADD, ip, len);
    }
    if (rc < 0) {
        GENERAL_NAMES_free(gens);
        return errmsg_set(err, rc, "out of memory for subject alternative names");
    }
    *out = gens;
    return 0;
}

/* GENERAL_NAMES -> out. strict: DNS names must be host names or IPs and every other kind
 * is refused; else DNS names need only be printable and other kinds are counted in
 * *n_other. */
static int gens_read(const GENERAL_NAMES *gens, bool strict, struct x509_san_list *out,
                     size_t *n_other, char **err)
{
    int n = sk_GENERAL_NAME_num(gens);
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        int type = -1;
        const ASN1_STRING *s = gn ? GENERAL_NAME_get0_value(gn, &type) : NULL;
        if (type == GEN_DNS && s) {
            if (out->n_dns >= X509_MAX_SANS)
                return errmsg_set(err, -EINVAL, "more than %d DNS subject alternative names",
                                  X509_MAX_SANS);
            int len = ASN1_STRING_length(s);
            const unsigned char *d = ASN1_STRING_get0_data(s);
            if (len <= 0 || len >= X509_SAN_BUF || memchr(d, '\0', (size_t)len))
                return errmsg_set(err, -EINVAL,
                                  "a DNS subject alternative name is empty, too long or holds "
                                  "a NUL byte");
            char *dst = out->dns[out->n_dns];
            memcpy(dst, d, (size_t)len);
            dst[len] = '\0';
            if (strict ? !dns_name_ok(dst) : !printable_name(dst)) {
                dst[0] = '\0';
                return errmsg_set(err, -EINVAL,
                                  "a DNS subject alternative name is not a valid host name");
            }
            out->n_dns++;
        } else if (type == GEN_IPADD && s) {
            if (out->n_ips >= X509_MAX_SANS)
                return errmsg_set(err, -EINVAL, "more than %d IP subject alternative names",
                                  X509_MAX_SANS);
            int len = ASN1_STRING_length(s);
            int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
            if (!af || !inet_ntop(af, ASN1_STRING_get0_data(s), out->ips[out->n_ips], X509_SAN_BUF))
                return errmsg_set(err, -EINVAL,
                                  "an IP subject alternative name is %d bytes long (4 or 16 "
                                  "expected)",
                                  len);
            out->n_ips++;
        } else if (!strict && n_other) {
            (*n_other)++;
        } else {
            return errmsg_set(err, -EINVAL,
                              "a subject alternative name is of a kind other than DNS or IP "
                              "(type %d), which is not supported",
                              type);
        }
    }
    return 0;
}

/* ---- reading certificates and requests -------------------------------------------------- */

static int cert_read(const char *pem, const char *what, X509 **out, char **err)
{
    size_t len = 0;
    *out = NULL;
    int rc = pem_length(pem, what, &len, err);
    if (rc < 0)
        return rc;
    BIO *b = bio_over(pem, len);
    if (!b)
        return errmsg_set(err, -ENOMEM, "out of memory reading the %s", what);
    X509 *x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!x)
        return errmsg_set(err, -EINVAL, "the %s is not a PEM certificate (%s)", what,
                          ossl_reason());
    *out = x;
    return 0;
}

/* Every certificate in pem, in order (at least one, at most MAX_PEM_CERTS). */
static int certs_read(const char *pem, const char *what, cert_list **out, char **err)
{
    size_t len = 0;
    *out = NULL;
    int rc = pem_length(pem, what, &len, err);
    if (rc < 0)
        return rc;
    BIO *b = bio_over(pem, len);
    cert_list *sk = sk_X509_new_null();
    if (!b || !sk) {
        BIO_free(b);
        sk_X509_free(sk);
        return errmsg_set(err, -ENOMEM, "out of memory reading the %s", what);
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
        if (!x) {
            unsigned long e = ERR_peek_last_error();
            if (sk_X509_num(sk) > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM &&
                ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error(); /* the end of the input */
                break;
            }
            rc = errmsg_set(err, -EINVAL, "the %s holds no valid PEM certificate list (%s)", what,
                            ossl_reason());
            break;
        }
        if (sk_X509_num(sk) >= MAX_PEM_CERTS) {
            X509_free(x);
            rc = errmsg_set(err, -EINVAL, "the %s holds more than %d certificates", what,
                            MAX_PEM_CERTS);
            break;
        }
        if (sk_X509_push(sk, x) <= 0) {
            X509_free(x);
            rc = errmsg_set(err, -ENOMEM, "out of memory reading the %s", what);
            break;
        }
    }
    BIO_free(b);
    if (rc < 0) {
        sk_X509_pop_free(sk, X509_free);
        return rc;
    }
    *out = sk;
    return 0;
}

/* A request whose signature verifies and whose key follows the policy. */
/* The first request of the len bytes of PEM at pem (no checks beyond parsing). */
static int req_parse(const char *pem, size_t len, const char *what, X509_REQ **out, char **err)
{
    BIO *b = bio_over(pem, len);
    if (!b)
        return errmsg_set(err, -ENOMEM, "out of memory reading the %s", what);
    *out = PEM_read_bio_X509_REQ(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!*out)
        return errmsg_set(err, -EINVAL, "the %s is not a PEM request (%s)", what, ossl_reason());
    return 0;
}

static int csr_read(const char *pem, X509_REQ **out, char **err)
{
    static const char what[] = "certificate signing request";
    size_t len = 0;
    *out = NULL;
    int rc = pem_length(pem, what, &len, err);
    if (rc < 0)
        return rc;
    X509_REQ *req = NULL;
    rc = req_parse(pem, len, what, &req, err);
    if (rc < 0)
        return rc;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (!pub) {
        X509_REQ_free(req);
        return errmsg_set(err, -EINVAL, "the %s holds no usable public key (%s)", what,
                          ossl_reason());
    }
    if (X509_REQ_verify(req, pub) != 1) {
        X509_REQ_free(req);
        ERR_clear_error();
        return errmsg_set(err, -EINVAL, "the %s's signature does not verify", what);
    }
    rc = key_policy(pub, "the request's key", err);
    if (rc < 0) {
        X509_REQ_free(req);
        return rc;
    }
    *out = req;
    return 0;
}

/* The request's DNS and IP SANs into out (none is fine here); other kinds are refused. */
static int csr_sans(X509_REQ *req, struct x509_san_list *out, char **err)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    int crit = -1;
    GENERAL_NAMES *gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL) : NULL;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!gens) {
        ERR_clear_error();
        if (crit == -1)
            return 0;
        return errmsg_set(err, -EINVAL,
                          "the request's subjectAltName extension is malformed or repeated");
    }
    int rc = gens_read(gens, true, out, NULL, err);
    GENERAL_NAMES_free(gens);
    return rc;
}

static int pubkey_fingerprint(const EVP_PKEY *pk, char out[X509_SHA256_HEX], char **err)
{
    unsigned char *der = NULL;
    int n = pk ? i2d_PUBKEY(pk, &der) : -1;
    if (n <= 0)
        return errmsg_set(err, -EINVAL, "the public key cannot be encoded (%s)", ossl_reason());
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (ok != 1 || mdlen != SHA256_LEN)
        return errmsg_set(err, -EIO, "cannot hash the public key (%s)", ossl_reason());
    hex_encode(md, mdlen, out);
    return 0;
}

/* ---- building certificates ------------------------------------------------------------ */

static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn && BN_rand(bn, SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1;
    if (ok && BN_is_zero(bn))
        ok = BN_set_word(bn, 1);
    ok = ok && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -EIO;
}

static int set_validity(X509 *x, time_t now, int days)
{
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -SKEW_SECONDS, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now))
        return -EIO;
    return 0;
}

static int add_basic_constraints(X509 *x, bool ca)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    if (!bc)
        return -ENOMEM;
    int ok = 1;
    if (ca) {
        /* DER encodes TRUE as 0xFF only; OpenSSL writes the int as given, and Go's parser
         * (etcd) refuses 0x01 ("x509: invalid basic constraints b"). */
        bc->ca = 0xFF;
        bc->pathlen = ASN1_INTEGER_new();
        ok = bc->pathlen && ASN1_INTEGER_set(bc->pathlen, 0) == 1;
    }
    ok = ok && X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) == 1;
    BASIC_CONSTRAINTS_free(bc);
    return ok ? 0 : -EIO;
}

/* keyUsage (critical) with the given bits: 0 digitalSignature, 2 keyEncipherment,
 * 5 keyCertSign, 6 cRLSign. */
static int add_key_usage(X509 *x, const int *bits, size_t n)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int ok = ku != NULL;
    for (size_t i = 0; i < n && ok; i++)
        ok = ASN1_BIT_STRING_set_bit(ku, bits[i], 1) == 1;
    ok = ok && X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) == 1;
    ASN1_BIT_STRING_free(ku);
    return ok ? 0 : -EIO;
}

static int add_server_client_eku(X509 *x, bool client)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    int ok = eku && sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) > 0 &&
             (!client || sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) > 0) &&
             X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) == 1;
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free); /* built-in objects: freeing is a no-op */
    return ok ? 0 : -EIO;
}

/* The key identifier of a certificate's public key (RFC 5280 4.2.1.2 method 1: SHA-1 of
 * the subjectPublicKey bits). */
static int key_id(const X509 *x, unsigned char id[EVP_MAX_MD_SIZE], unsigned int *len)
{
    return X509_pubkey_digest(x, EVP_sha1(), id, len) == 1 ? 0 : -EIO;
}

static int add_key_ids(X509 *x, const unsigned char *issuer_id, int issuer_len)
{
    unsigned char id[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (key_id(x, id, &len) < 0)
        return -EIO;
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    int ok = ski && ASN1_OCTET_STRING_set(ski, id, (int)len) == 1 &&
             X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) == 1;
    ASN1_OCTET_STRING_free(ski);
    if (!ok)
        return -EIO;
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    if (!akid)
        return -ENOMEM;
    akid->keyid = ASN1_OCTET_STRING_new();
    /* self-signed (issuer_id NULL): the authority is the subject's own key */
    ok = akid->keyid &&
         (issuer_id ? ASN1_OCTET_STRING_set(akid->keyid, issuer_id, issuer_len)
                    : ASN1_OCTET_STRING_set(akid->keyid, id, (int)len)) == 1 &&
         X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1;
    AUTHORITY_KEYID_free(akid);
    return ok ? 0 : -EIO;
}

static int cert_to_pem(X509 *x, char **out, char **err)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return errmsg_set(err, -ENOMEM, "out of memory writing a certificate");
    int rc = 0;
    if (PEM_write_bio_X509(b, x) != 1)
        rc = errmsg_set(err, -EIO, "cannot write the certificate as PEM (%s)", ossl_reason());
    else
        rc = bio_take(b, false, out, err);
    BIO_free(b);
    return rc;
}

int x509_ca_create(const char *common_name, int days, char **cert_pem, char **key_pem, char **err)
{
    if (!cert_pem || !key_pem)
        return errmsg_set(err, -EINVAL, "x509_ca_create: no place for the CA");
    *cert_pem = NULL;
    *key_pem = NULL;
    int rc = check_cn(common_name, err);
    if (rc == 0)
        rc = check_days(days, err);
    if (rc < 0)
        return rc;

    EVP_PKEY *pk = key_new(X509_KEY_ECDSA_P256);
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    char *cert = NULL;
    if (!pk || !x) {
        rc = errmsg_set(err, -EIO, "cannot create the CA key (%s)", ossl_reason());
        goto out;
    }
    rc = name_make(common_name, &name, err);
    if (rc < 0)
        goto out;
    static const int ca_usage[] = {5, 6}; /* keyCertSign, cRLSign */
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, pk) != 1 || set_serial(x) < 0 ||
        set_validity(x, time(NULL), days) < 0 || add_basic_constraints(x, true) < 0 ||
        add_key_usage(x, ca_usage, 2) < 0 || add_key_ids(x, NULL, 0) < 0) {
        rc = errmsg_set(err, -EIO, "cannot build the CA certificate (%s)", ossl_reason());
        goto out;
    }
    if (X509_sign(x, pk, EVP_sha256()) <= 0) {
        rc = errmsg_set(err, -EIO, "cannot sign the CA certificate (%s)", ossl_reason());
        goto out;
    }
    rc = cert_to_pem(x, &cert, err);
    if (rc == 0)
        rc = key_to_pem(pk, key_pem, err);
    if (rc == 0) {
        *cert_pem = cert;
        cert = NULL;
    }
out:
    free(cert);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* A fresh random UUID4 in text (RFC 9562: version 4, variant 10), 36 characters. */
static int uuid4_text(char out[37])
{
    unsigned char u[16];
    if (RAND_bytes(u, (int)sizeof(u)) != 1)
        return -EIO;
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    char hex[33];
    hex_encode(u, sizeof(u), hex);
    int n =
        snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    OPENSSL_cleanse(u, sizeof(u));
    return n == 36 ? 0 : -EIO;
}

/* x509_csr_create, and with `unique` an x500UniqueIdentifier (a fresh UUID4) after the CN. */
static int csr_make(const char *key_pem, const char *common_name, const struct x509_sans *sans,
                    bool unique, char **csr_pem, char **err)
{
    if (!csr_pem)
        return errmsg_set(err, -EINVAL, "x509_csr_create: no place for the request");
    *csr_pem = NULL;
    if (!sans)
        return errmsg_set(err, -EINVAL, "no subject alternative names were given");
    int rc = check_cn(common_name, err);
    if (rc < 0)
        return rc;
    GENERAL_NAMES *gens = NULL;
    rc = gens_build(sans->dns, sans->n_dns, sans->ips, sans->n_ips, &gens, err);
    if (rc < 0)
        return rc;

    EVP_PKEY *pk = NULL;
    X509_REQ *req = NULL;
    X509_NAME *name = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    BIO *b = NULL;
    rc = key_load_str(key_pem, &pk, err);
    if (rc == 0)
        rc = name_make(common_name, &name, err);
    if (rc < 0)
        goto out;
    if (unique) {
        char uuid[37];
        if (uuid4_text(uuid) < 0 ||
            X509_NAME_add_entry_by_NID(name, NID_x500UniqueIdentifier, MBSTRING_ASC,
                                       (const unsigned char *)uuid, -1, -1, 0) != 1) {
            rc = errmsg_set(err, -EIO, "cannot add a unique identifier to the request (%s)",
                            ossl_reason());
            goto out;
        }
    }
    req = X509_REQ_new();
    exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    if (!req || !exts || !ext) {
        X509_EXTENSION_free(ext);
        rc = errmsg_set(err, -ENOMEM, "out of memory building the request (%s)", ossl_reason());
        goto out;
    }
    if (sk_X509_EXTENSION_push(exts, ext) <= 0) {
        X509_EXTENSION_free(ext);
        rc = errmsg_set(err, -ENOMEM, "out of memory building the request");
        goto out;
    }
    if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
        X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, pk) != 1 ||
        X509_REQ_add_extensions(req, exts) != 1) {
        rc = errmsg_set(err, -EIO, "cannot build the request (%s)", ossl_reason());
        goto out;
    }
    if (X509_REQ_sign(req, pk, EVP_sha256()) <= 0) {
        rc = errmsg_set(err, -EIO, "cannot sign the request (%s)", ossl_reason());
        goto out;
    }
    b = BIO_new(BIO_s_mem());
    if (!b) {
        rc = errmsg_set(err, -ENOMEM, "out of memory writing the request");
        goto out;
    }
    if (PEM_write_bio_X509_REQ(b, req) != 1) {
        rc = errmsg_set(err, -EIO, "cannot write the request as PEM (%s)", ossl_reason());
        goto out;
    }
    rc = bio_take(b, false, csr_pem, err);
out:
    BIO_free(b);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    GENERAL_NAMES_free(gens);
    return rc;
}

int x509_csr_create(const char *key_pem, const char *common_name, const struct x509_sans *sans,
                    char **csr_pem, char **err)
{
    return csr_make(key_pem, common_name, sans, false, csr_pem, err);
}

int x509_csr_create_unique(const char *key_pem, const char *common_name,
                           const struct x509_sans *sans, char **csr_pem, char **err)
{
    return csr_make(key_pem, common_name, sans, true, csr_pem, err);
}

/* The DER of the one certificate request that pem holds (exactly one PEM block). */
static int csr_der(const char *pem, const char *what, unsigned char **der, int *len, char **err)
{
    size_t n = 0;
    *der = NULL;
    *len = 0;
    int rc = pem_length(pem, what, &n, err);
    if (rc < 0)
        return rc;
    int n_blocks = 0;
    (void)pem_classify(pem, n, &n_blocks);
    if (n_blocks != 1)
        return errmsg_set(err, -EINVAL, "the %s holds %d PEM blocks: one request was expected",
                          what, n_blocks);
    X509_REQ *req = NULL;
    rc = req_parse(pem, n, what, &req, err);
    if (rc < 0)
        return rc;
    int k = i2d_X509_REQ(req, der);
    X509_REQ_free(req);
    if (k <= 0) {
        *der = NULL;
        return errmsg_set(err, -EINVAL, "the %s cannot be encoded (%s)", what, ossl_reason());
    }
    *len = k;
    return 0;
}

int x509_csr_same(const char *a_pem, const char *b_pem, bool *same, char **err)
{
    if (!same)
        return errmsg_set(err, -EINVAL, "x509_csr_same: no place for the result");
    *same = false;
    unsigned char *a = NULL, *b = NULL;
    int la = 0, lb = 0;
    int rc = csr_der(a_pem, "first request", &a, &la, err);
    if (rc == 0)
        rc = csr_der(b_pem, "second request", &b, &lb, err);
    if (rc == 0)
        *same = la == lb && memcmp(a, b, (size_t)la) == 0;
    OPENSSL_free(a);
    OPENSSL_free(b);
    return rc;
}

int x509_csr_info(const char *csr_pem, struct x509_csr_info *out, char **err)
{
    if (!out)
        return errmsg_set(err, -EINVAL, "x509_csr_info: no place for the result");
    memset(out, 0, sizeof(*out));
    X509_REQ *req = NULL;
    int rc = csr_read(csr_pem, &req, err);
    if (rc < 0)
        return rc;
    rc = cn_read(X509_REQ_get_subject_name(req), out->cn, err);
    if (rc == 0)
        rc = csr_sans(req, &out->sans, err);
    if (rc == 0)
        rc = pubkey_fingerprint(X509_REQ_get0_pubkey(req), out->pubkey_sha256, err);
    X509_REQ_free(req);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- issuing -------------------------------------------------------------------------- */

int x509_issue(const char *csr_pem, const char *ca_cert_pem, const char *ca_key_pem, int days,
               enum x509_usage usage, char **cert_pem, char **err)
{
    if (!cert_pem)
        return errmsg_set(err, -EINVAL, "x509_issue: no place for the certificate");
    *cert_pem = NULL;
    if (usage != X509_USAGE_SERVER_CLIENT && usage != X509_USAGE_SERVER)
        return errmsg_set(err, -EINVAL, "unknown certificate usage %d", (int)usage);
    int rc = check_days(days, err);
    if (rc < 0)
        return rc;

    X509_REQ *req = NULL;
    X509 *ca = NULL, *x = NULL;
    EVP_PKEY *ca_key = NULL;
    X509_NAME *name = NULL;
    GENERAL_NAMES *gens = NULL;
    char cn[X509_CN_BUF];
    struct x509_san_list *sl = calloc(1, sizeof(*sl));
    if (!sl)
        return errmsg_set(err, -ENOMEM, "out of memory issuing a certificate");

    rc = csr_read(csr_pem, &req, err);
    if (rc == 0)
        rc = cn_read(X509_REQ_get_subject_name(req), cn, err);
    if (rc == 0 && cn[0] == '\0')
        rc = errmsg_set(err, -EINVAL, "the request has no subject common name");
    if (rc == 0)
        rc = check_cn(cn, err);
    if (rc == 0)
        rc = csr_sans(req, sl, err);
    if (rc < 0)
        goto out;
    const char *dns[X509_MAX_SANS], *ips[X509_MAX_SANS];
    for (size_t i = 0; i < sl->n_dns; i++)
        dns[i] = sl->dns[i];
    for (size_t i = 0; i < sl->n_ips; i++)
        ips[i] = sl->ips[i];
    rc = gens_build(dns, sl->n_dns, ips, sl->n_ips, &gens, err);
    if (rc < 0)
        goto out;

    rc = cert_read(ca_cert_pem, "CA certificate", &ca, err);
    if (rc < 0)
        goto out;
    if (!(X509_get_extension_flags(ca) & EXFLAG_CA)) {
        rc = errmsg_set(err, -EINVAL, "the CA certificate is not a CA (basicConstraints)");
        goto out;
    }
    rc = key_load_str(ca_key_pem, &ca_key, err);
    if (rc < 0)
        goto out;
    if (X509_check_private_key(ca, ca_key) != 1) {
        ERR_clear_error();
        rc = errmsg_set(err, -EINVAL, "the CA key does not match the CA certificate");
        goto out;
    }
    time_t now = time(NULL), ca_end = 0;
    if (time_of(X509_get0_notAfter(ca), &ca_end) < 0) {
        rc = errmsg_set(err, -EINVAL, "the CA certificate's notAfter cannot be read");
        goto out;
    }
    if (ca_end <= now) {
        rc = errmsg_set(err, -EKEYEXPIRED, "the CA certificate has expired");
        goto out;
    }
    unsigned char ca_id[EVP_MAX_MD_SIZE];
    unsigned int ca_id_len = 0;
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(ca);
    if (ca_ski && ASN1_STRING_length(ca_ski) > 0 &&
        ASN1_STRING_length(ca_ski) <= (int)sizeof(ca_id)) {
        ca_id_len = (unsigned int)ASN1_STRING_length(ca_ski);
        memcpy(ca_id, ASN1_STRING_get0_data(ca_ski), ca_id_len);
    } else if (key_id(ca, ca_id, &ca_id_len) < 0) {
        rc = errmsg_set(err, -EIO, "cannot compute the CA's key identifier (%s)", ossl_reason());
        goto out;
    }

    rc = name_make(cn, &name, err);
    if (rc < 0)
        goto out;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    /* keyEncipherment only for RSA: an EC key cannot encipher (RFC 5480 3, RFC 8813) */
    static const int rsa_usage[] = {0, 2}, ec_usage[] = {0};
    bool rsa = EVP_PKEY_is_a(pub, "RSA");
    x = X509_new();
    if (!x || X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_pubkey(x, pub) != 1 || set_serial(x) < 0 ||
        set_validity(x, now, days) < 0) {
        rc = errmsg_set(err, -EIO, "cannot build the certificate (%s)", ossl_reason());
        goto out;
    }
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0 &&
        X509_set1_notAfter(x, X509_get0_notAfter(ca)) != 1) {
        rc = errmsg_set(err, -EIO, "cannot cap the certificate's validity (%s)", ossl_reason());
        goto out;
    }
    if (add_basic_constraints(x, false) < 0 ||
        add_key_usage(x, rsa ? rsa_usage : ec_usage, rsa ? 2 : 1) < 0 ||
        add_server_client_eku(x, usage == X509_USAGE_SERVER_CLIENT) < 0 || add_key_ids(x, ca_id, (int)ca_id_len) < 0 ||
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = errmsg_set(err, -EIO, "cannot add the certificate's extensions (%s)", ossl_reason());
        goto out;
    }
    if (X509_sign(x, ca_key, EVP_sha256()) <= 0) {
        rc = errmsg_set(err, -EIO, "cannot sign the certificate (%s)", ossl_reason());
        goto out;
    }
    rc = cert_to_pem(x, cert_pem, err);
out:
    GENERAL_NAMES_free(gens);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
    X509_REQ_free(req);
    free(sl);
    return rc;
}

/* ---- inspecting and verifying ------------------------------------------------------------ */

int x509_cert_info(const char *cert_pem, struct x509_info *out, char **err)
{
    if (!out)
        return errmsg_set(err, -EINVAL, "x509_cert_info: no place for the result");
    memset(out, 0, sizeof(*out));
    X509 *x = NULL;
    GENERAL_NAMES *gens = NULL;
    int rc = cert_read(cert_pem, "certificate", &x, err);
    if (rc < 0)
        return rc;
    if (time_of(X509_get0_notBefore(x), &out->not_before) < 0 ||
        time_of(X509_get0_notAfter(x), &out->not_after) < 0) {
        rc = errmsg_set(err, -EINVAL, "the certificate's validity dates cannot be read");
        goto out;
    }
    uint32_t flags = X509_get_extension_flags(x);
    if (flags & EXFLAG_INVALID) {
        ERR_clear_error();
        rc = errmsg_set(err, -EINVAL, "the certificate's extensions are malformed or repeated");
        goto out;
    }
    out->is_ca = (flags & EXFLAG_CA) != 0;
    out->self_signed = (flags & EXFLAG_SS) != 0;
    if (flags & EXFLAG_XKUSAGE) {
        uint32_t xku = X509_get_extended_key_usage(x);
        out->server_auth = (xku & XKU_SSL_SERVER) != 0;
        out->client_auth = (xku & XKU_SSL_CLIENT) != 0;
    }
    rc = cn_read(X509_get_subject_name(x), out->cn, err);
    if (rc < 0)
        goto out;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != SHA256_LEN) {
        rc = errmsg_set(err, -EIO, "cannot hash the certificate (%s)", ossl_reason());
        goto out;
    }
    hex_encode(md, mdlen, out->fingerprint);
    rc = pubkey_fingerprint(X509_get0_pubkey(x), out->pubkey_sha256, err);
    if (rc < 0)
        goto out;
    int crit = -1;
    gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (!gens && crit != -1) {
        ERR_clear_error();
        rc = errmsg_set(err, -EINVAL,
                        "the certificate's subjectAltName extension is malformed or repeated");
        goto out;
    }
    if (gens)
        rc = gens_read(gens, false, &out->sans, &out->n_other_sans, err);
out:
    GENERAL_NAMES_free(gens);
    X509_free(x);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int x509_key_matches_cert(const char *key_pem, const char *cert_pem, bool *match, char **err)
{
    if (!match)
        return errmsg_set(err, -EINVAL, "x509_key_matches_cert: no place for the result");
    *match = false;
    EVP_PKEY *pk = NULL;
    X509 *x = NULL;
    int rc = key_load_str(key_pem, &pk, err);
    if (rc == 0)
        rc = cert_read(cert_pem, "certificate", &x, err);
    if (rc == 0) {
        const EVP_PKEY *pub = X509_get0_pubkey(x);
        int eq = pub ? EVP_PKEY_eq(pub, pk) : -2;
        ERR_clear_error();
        if (eq == -2)
            rc = errmsg_set(err, -EINVAL, "the certificate's public key cannot be compared");
        else
            *match = eq == 1;
    }
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

/* x509_verify_chain; partial: every certificate of the bundle is a trust anchor. */
static int verify(const char *cert_pem, const char *ca_bundle_pem, time_t at, bool partial,
                  char **err)
{
    cert_list *chain = NULL, *anchors = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    X509 *leaf = NULL;
    int rc = certs_read(cert_pem, "certificate", &chain, err);
    if (rc == 0)
        rc = certs_read(ca_bundle_pem, "CA bundle", &anchors, err);
    if (rc < 0)
        goto out;
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    if (!store || !ctx) {
        rc = errmsg_set(err, -ENOMEM, "out of memory verifying a certificate");
        goto out;
    }
    for (int i = 0; i < sk_X509_num(anchors); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(anchors, i)) != 1) {
            rc = errmsg_set(err, -EIO, "cannot use a CA certificate (%s)", ossl_reason());
            goto out;
        }
    leaf = sk_X509_shift(chain); /* the rest, if any, are untrusted intermediates */
    if (X509_STORE_CTX_init(ctx, store, leaf, chain) != 1) {
        rc = errmsg_set(err, -EIO, "cannot set up verification (%s)", ossl_reason());
        goto out;
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), at);
    if (partial)
        X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);
        bool expired = e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID;
        rc = errmsg_set(err, expired ? -EKEYEXPIRED : -EKEYREJECTED,
                        "the certificate does not verify against the CA bundle: %s (at chain "
                        "depth %d)",
                        X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(ctx));
    }
    ERR_clear_error();
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(anchors, X509_free);
    return rc;
}

int x509_verify_chain(const char *cert_pem, const char *ca_bundle_pem, time_t at, char **err)
{
    return verify(cert_pem, ca_bundle_pem, at, false, err);
}

int x509_verify_anchored(const char *cert_pem, const char *anchors_pem, time_t at, char **err)
{
    return verify(cert_pem, anchors_pem, at, true, err);
}

int x509_certs_normalize(const char *pem, char **out, size_t *n, char **err)
{
    if (!out || !n)
        return errmsg_set(err, -EINVAL, "x509_certs_normalize: no place for the result");
    *out = NULL;
    *n = 0;
    cert_list *sk = NULL;
    int rc = certs_read(pem, "certificate list", &sk, err);
    if (rc < 0)
        return rc;
    int n_blocks = 0;
    (void)pem_classify(pem, strlen(pem), &n_blocks);
    int count = sk_X509_num(sk);
    BIO *b = NULL;
    if (n_blocks != count) {
        rc = errmsg_set(err, -EINVAL,
                        "the certificate list holds %d PEM blocks of which %d are certificates: "
                        "only certificates were expected",
                        n_blocks, count);
        goto out;
    }
    b = BIO_new(BIO_s_mem());
    if (!b) {
        rc = errmsg_set(err, -ENOMEM, "out of memory writing certificates");
        goto out;
    }
    for (int i = 0; i < count; i++)
        if (PEM_write_bio_X509(b, sk_X509_value(sk, i)) != 1) {
            rc = errmsg_set(err, -EIO, "cannot write a certificate as PEM (%s)", ossl_reason());
            goto out;
        }
    rc = bio_take(b, false, out, err);
    if (rc == 0)
        *n = (size_t)count;
out:
    BIO_free(b);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

/* ---- decisions -------------------------------------------------------------------------- */

static bool ip_equal(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    int la = ip_parse(a, x), lb = ip_parse(b, y);
    return la != 0 && la == lb && memcmp(x, y, (size_t)la) == 0;
}

bool x509_sans_equal(const struct x509_san_list *have, const struct x509_sans *want)
{
    if (!have || !want || (want->n_dns && !want->dns) || (want->n_ips && !want->ips) ||
        have->n_dns > X509_MAX_SANS || have->n_ips > X509_MAX_SANS)
        return false;
    for (size_t i = 0; i < want->n_dns; i++)
        if (!want->dns[i])
            return false;
    for (size_t i = 0; i < want->n_ips; i++)
        if (!want->ips[i])
            return false;
    /* every wanted name is held, and every held name is wanted */
    for (size_t i = 0; i < want->n_dns; i++) {
        bool found = false;
        for (size_t j = 0; j < have->n_dns && !found; j++)
            found = strcasecmp(want->dns[i], have->dns[j]) == 0;
        if (!found)
            return false;
    }
    for (size_t j = 0; j < have->n_dns; j++) {
        bool found = false;
        for (size_t i = 0; i < want->n_dns && !found; i++)
            found = strcasecmp(want->dns[i], have->dns[j]) == 0;
        if (!found)
            return false;
    }
    for (size_t i = 0; i < want->n_ips; i++) {
        bool found = false;
        for (size_t j = 0; j < have->n_ips && !found; j++)
            found = ip_equal(want->ips[i], have->ips[j]);
        if (!found)
            return false;
    }
    for (size_t j = 0; j < have->n_ips; j++) {
        bool found = false;
        for (size_t i = 0; i < want->n_ips && !found; i++)
            found = ip_equal(want->ips[i], have->ips[j]);
        if (!found)
            return false;
    }
    return true;
}

bool x509_renew_due(const struct x509_info *info, time_t now, int percent)
{
    if (!info)
        return true;
    if (percent < 1)
        percent = 1;
    if (percent > 100)
        percent = 100;
    int64_t start = info->not_before, end = info->not_after, t = now;
    if (end <= start || t >= end)
        return true;
    if (t <= start)
        return false;
    return (t - start) * 100 >= (end - start) * (int64_t)percent;
}
