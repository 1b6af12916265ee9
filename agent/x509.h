/* X.509 for the charm's TLS: private keys, the internal CA, certificate signing requests,
 * issuing unit certificates, and inspecting/verifying certificates (pure OpenSSL 3, no I/O).
 *
 * Ownership: every private key PEM these functions return (*key_pem) is sodium_malloc'd,
 * NUL-terminated and owned by the caller, who releases it with password_free (password.h),
 * never free(). Every other PEM they return (*cert_pem, *csr_pem) is malloc'd and owned by
 * the caller (free). Outputs are set only on success (NULL on failure). Inputs are only read,
 * never kept; PEM inputs are NUL-terminated strings of at most X509_PEM_MAX bytes (except
 * x509_key_check, which takes a length). Error messages (*err) are malloc'd and owned by the
 * caller (errmsg.h); they never contain PEM text or key material, only what is wrong.
 *
 * Return codes: 0 on success; -EINVAL for a bad argument or input (malformed PEM, a bad
 * signature, a key or name that breaks a rule below); -ENOMEM; -EIO when OpenSSL fails at
 * something that should not fail (key generation, signing); x509_verify_chain,
 * x509_verify_anchored and x509_issue also use -EKEYEXPIRED (outside a validity period) and
 * -EKEYREJECTED (does not verify).
 *
 * Policy for every key read or put in a certificate: RSA of 2048 to 8192 bits, or EC on
 * P-256 or P-384. Names: a common name is 1 to X509_CN_LEN bytes of UTF-8 without control
 * characters; a DNS SAN is a host name (labels of letters, digits, '-' and '_', an optional
 * leading "*." label, at most 253 bytes) or an IP address in text (as Charmed PostgreSQL
 * also lists its IPs as DNS names); an IP SAN is an IPv4 or IPv6 address in text
 * (inet_pton; no zone). At most X509_MAX_SANS names of each kind.
 */
#ifndef PG_AGENT_X509_H
#define PG_AGENT_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define X509_PEM_MAX ((size_t)1 << 20) /* bytes of any PEM input (a CA bundle included) */
#define X509_MAX_DAYS 36525            /* validity given in days: 1 to 100 years */
#define X509_CN_LEN 64                 /* common names we write: bytes (RFC 5280 upper bound) */
#define X509_CN_BUF 256                /* common names we read (UTF-8, NUL-terminated) */
#define X509_MAX_SANS 32               /* per kind (DNS, IP) */
#define X509_SAN_BUF 256               /* one SAN as text, NUL-terminated */
#define X509_SHA256_HEX 65             /* 64 lowercase hex digits and a NUL */

enum x509_key_type {
    X509_KEY_RSA2048,    /* RSA, 2048 bits, e = 65537 */
    X509_KEY_ECDSA_P256, /* EC on P-256 (prime256v1) */
};

enum x509_usage {
    X509_USAGE_SERVER_CLIENT, /* a unit's certificate: TLS server and client */
    X509_USAGE_SERVER,        /* a server only (the metrics exporter): no clientAuth, so
                               * it cannot log in to etcd or PostgreSQL with it */
};

/* SANs wanted in a request (caller's arrays, only read). NULL arrays are allowed with a
 * zero count. */
struct x509_sans {
    const char *const *dns;
    size_t n_dns;
    const char *const *ips; /* text, IPv4 or IPv6 */
    size_t n_ips;
};

/* SANs read from a certificate or a request, in their order there. ips are canonical text
 * (inet_ntop: "10.0.0.1", "fd00::1"). */
struct x509_san_list {
    size_t n_dns;
    size_t n_ips;
    char dns[X509_MAX_SANS][X509_SAN_BUF];
    char ips[X509_MAX_SANS][X509_SAN_BUF];
};

struct x509_info {
    time_t not_before;
    time_t not_after;
    bool is_ca;           /* basicConstraints CA:TRUE */
    bool self_signed;     /* issuer = subject, and no authority key identifier or it names the
                           * certificate's own key (OpenSSL's EXFLAG_SS; signature not checked) */
    bool server_auth;     /* an extendedKeyUsage extension is present and lists serverAuth */
    bool client_auth;     /* ... and lists clientAuth */
    char cn[X509_CN_BUF]; /* subject CN, "" when there is none */
    char fingerprint[X509_SHA256_HEX];   /* SHA-256 of the certificate (DER) */
    char pubkey_sha256[X509_SHA256_HEX]; /* SHA-256 of its SubjectPublicKeyInfo (DER) */
    struct x509_san_list sans;           /* DNS and IP SANs */
    size_t n_other_sans;                 /* SANs of other kinds (email, URI...), not listed */
};

struct x509_csr_info {
    char cn[X509_CN_BUF];                /* subject CN, "" when there is none */
    char pubkey_sha256[X509_SHA256_HEX]; /* comparable with x509_info.pubkey_sha256 */
    struct x509_san_list sans;
};

/* A new private key as unencrypted PKCS#8 PEM ("PRIVATE KEY") in *key_pem (sodium_malloc'd,
 * release with password_free). */
int x509_key_generate(enum x509_key_type type, char **key_pem, char **err);

/* Whether the len bytes at key_pem are one usable private key: PEM (PKCS#8 or traditional
 * RSA/EC, an "EC PARAMETERS" block before it is allowed), unencrypted, within the key
 * policy, public and private halves consistent. 0, or -EINVAL with a message saying what is
 * wrong (not PEM, encrypted, a public key or certificate, weak or unsupported key...). */
int x509_key_check(const char *key_pem, size_t len, char **err);

/* A self-signed CA: a new EC P-256 key, subject and issuer CN=common_name, basicConstraints
 * critical CA:TRUE pathlen:0, keyUsage critical keyCertSign+cRLSign, subject and authority
 * key identifiers, a random 128-bit serial, notBefore now - 1 h (clock skew), notAfter now
 * + days (1 to X509_MAX_DAYS); ECDSA-SHA256. *cert_pem is malloc'd, *key_pem is
 * sodium_malloc'd (password_free). */
int x509_ca_create(const char *common_name, int days, char **cert_pem, char **key_pem, char **err);

/* A PKCS#10 request signed (SHA-256) with key_pem, subject CN=common_name, with a
 * subjectAltName extension holding sans (at least one name). *csr_pem is malloc'd. */
int x509_csr_create(const char *key_pem, const char *common_name, const struct x509_sans *sans,
                    char **csr_pem, char **err);

/* x509_csr_create, plus a subject attribute x500UniqueIdentifier (after the CN) holding a
 * fresh random UUID4 in text, as Canonical's tls_certificates v4 library does: two requests
 * for the same key and names differ (RSA PKCS#1 v1.5 signatures are deterministic), so a
 * renewal is a new request to the provider. x509_issue copies the CN alone, ignoring it. */
int x509_csr_create_unique(const char *key_pem, const char *common_name,
                           const struct x509_sans *sans, char **csr_pem, char **err);

/* *same = whether a_pem and b_pem are the same request: each must be exactly one PEM block
 * holding a certificate request, and their DER encodings are compared byte for byte (so line
 * wrapping, CRLF line ends, text around the block and the "NEW CERTIFICATE REQUEST" label do
 * not matter).
 * Signatures are not checked. -EINVAL when either does not parse; *same is false on
 * failure. */
int x509_csr_same(const char *a_pem, const char *b_pem, bool *same, char **err);

/* A certificate for the request, signed by the CA (SHA-256): the request's signature must
 * verify and its key follow the policy; the subject is its CN (required) alone; its DNS and
 * IP SANs are copied (at least one; any other kind is refused); other requested extensions
 * are ignored. Sets basicConstraints critical CA:FALSE, keyUsage critical digitalSignature
 * (+ keyEncipherment for an RSA key: it means nothing for an EC key), extendedKeyUsage
 * serverAuth+clientAuth (serverAuth alone for X509_USAGE_SERVER), subject and authority key identifiers, a random 128-bit serial,
 * notBefore now - 1 h, notAfter min(now + days, the CA's notAfter). The CA certificate must
 * be a CA (basicConstraints) matching ca_key_pem, and not expired (-EKEYEXPIRED).
 * *cert_pem is malloc'd. */
int x509_issue(const char *csr_pem, const char *ca_cert_pem, const char *ca_key_pem, int days,
               enum x509_usage usage, char **cert_pem, char **err);

/* What the first certificate in cert_pem says. On failure *out is zeroed. -EINVAL also when
 * a SAN is malformed or there are more than X509_MAX_SANS of a kind. */
int x509_cert_info(const char *cert_pem, struct x509_info *out, char **err);

/* What the request says, after checking its signature and its key against the policy; its
 * SANs must all be DNS or IP (others: -EINVAL). On failure *out is zeroed. */
int x509_csr_info(const char *csr_pem, struct x509_csr_info *out, char **err);

/* *match = whether the private key's public half is the first certificate's public key.
 * The key must pass x509_key_check. *match is false on failure. */
int x509_key_matches_cert(const char *key_pem, const char *cert_pem, bool *match, char **err);

/* Whether the first certificate in cert_pem (any further certificates in it are
 * intermediates, untrusted) chains to one of the certificates in ca_bundle_pem (one or
 * more, the trust anchors) with valid signatures, every certificate valid at time `at`.
 * No purpose or host name check. 0 when it verifies; -EKEYEXPIRED when a certificate is
 * expired or not yet valid at `at`; -EKEYREJECTED for any other verification failure (the
 * message says which, in OpenSSL's words); -EINVAL for malformed input. */
int x509_verify_chain(const char *cert_pem, const char *ca_bundle_pem, time_t at, char **err);

/* x509_verify_chain, except that every certificate of anchors_pem is a trust anchor even
 * when it is not self-signed (OpenSSL's X509_V_FLAG_PARTIAL_CHAIN): to check a certificate
 * against the issuing CA a provider names, which may be an intermediate. */
int x509_verify_anchored(const char *cert_pem, const char *anchors_pem, time_t at, char **err);

/* The certificates in pem (1 to 64, and no PEM block of another kind; text around the
 * blocks is ignored) written again as PEM from their DER, in order, into *out (malloc'd):
 * a canonical text, to compare certificates as strings and to write files. *n = how many.
 * -EINVAL for malformed input or a block that is not a certificate. */
int x509_certs_normalize(const char *pem, char **out, size_t *n, char **err);

/* Whether have (from a certificate) and want hold the same sets of names: order and
 * duplicates do not matter, DNS names compare case-insensitively, IPs as addresses
 * ("fd00::1" equals "fd00:0::1"). A wanted IP that does not parse never matches (so the
 * caller reissues and x509_csr_create reports it). NULL arguments: false. */
bool x509_sans_equal(const struct x509_san_list *have, const struct x509_sans *want);

/* Whether at least `percent` % (clamped to 1..100) of the certificate's validity period has
 * elapsed at `now`: true from not_before + percent % of (not_after - not_before), and for a
 * period that is empty or inverted. The caller's default is 90. NULL info: true. */
bool x509_renew_due(const struct x509_info *info, time_t now, int percent);

#endif
