/* The wire format of the tls-certificates relation (specification v1, as Canonical's
 * tls_certificates v4 library writes and reads it), requirer side, pure: the value this unit
 * publishes (`certificate_signing_requests`), the provider's `certificates` value read into
 * typed entries, finding the entry for this unit's request, and checking an entry before
 * the charm uses it. No hook tools, files or secrets here.
 *
 * Relation data is outside input: tls_wire_parse_provider never trusts a shape, a type or a
 * size, and nothing here ever puts PEM or key text in a message (*err, *why, *problems).
 *
 * Ownership: every string returned is malloc'd and owned by the caller (free); struct
 * tls_provided arrays are released with tls_provided_free, struct tls_checked with
 * tls_checked_clear. Inputs are only read, never kept. Outputs are set only on success
 * (NULL / zeroed on failure). *err and *why are malloc'd sentences (errmsg.h).
 */
#ifndef PG_AGENT_TLS_WIRE_H
#define PG_AGENT_TLS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "x509.h"

#define TLS_WIRE_KEY_REQUESTS "certificate_signing_requests" /* requirer unit databag */
#define TLS_WIRE_KEY_CERTIFICATES "certificates"             /* provider app databag */
#define TLS_WIRE_MAX_ENTRIES 256 /* provider entries read; the rest are skipped */
#define TLS_WIRE_MAX_CHAIN 16    /* certificates in one entry's chain */

/* The value of certificate_signing_requests for one outstanding request: a JSON list with
 * one object {"certificate_signing_request": <csr_pem without surrounding whitespace>,
 * "ca": <ca>} (ca is always written: a v4 provider refuses an entry without it). The CSR
 * must be a valid request (x509_csr_info), else -EINVAL. csr_pem NULL means no request is
 * outstanding: 0 with *json NULL, and the caller removes the key from its databag (the v4
 * library leaves out empty values; an empty list is not written). */
int tls_wire_requests(const char *csr_pem, bool ca, char **json, char **err);

/* One entry of the provider's certificates list, as given (not checked: tls_wire_check). */
struct tls_provided {
    char *csr;         /* certificate_signing_request: the echo of a requirer's CSR */
    char *certificate; /* the issued certificate (PEM) */
    char *ca;          /* the issuing CA (PEM) */
    char **chain;      /* chain[0..n_chain): the certificate first, then intermediates/CA */
    size_t n_chain;    /* 0 when chain is absent or null */
    bool revoked;      /* "revoked": true; absent, null or false: false */
};

/* Read the provider app databag's certificates value (json_text, len bytes, need not be
 * NUL-terminated) into *out (n entries; *out NULL when n is 0). Entries are kept in their
 * order. An entry is skipped, with a short reason appended to *problems, when it is not an
 * object; when certificate_signing_request, certificate or ca is missing, not a string,
 * empty, larger than X509_PEM_MAX bytes or holds a NUL byte; when chain is present and not
 * null but is not a list of such strings or holds more than TLS_WIRE_MAX_CHAIN; when
 * revoked is present and neither a boolean nor null. Entries past TLS_WIRE_MAX_ENTRIES are
 * skipped (one reason for all). recommended_expiry_notification_time and unknown keys are
 * ignored. *problems is malloc'd ("; "-joined reasons naming entries by index,
 * "certificates[3]: ..."), NULL when there are none; it never holds values from the input.
 * -EINVAL (with *err) when the text is not JSON or not a JSON list; -ENOMEM. problems may be
 * NULL when the caller does not want the reasons. */
int tls_wire_parse_provider(const char *json_text, size_t len, struct tls_provided **out, size_t *n,
                            char **problems, char **err);

/* Free n entries and the array. NULL is a no-op. */
void tls_provided_free(struct tls_provided *v, size_t n);

/* The index of the entry whose CSR is the same request as my_csr_pem (x509_csr_same: DER
 * equality; an entry whose CSR does not parse never matches), or -1 (also when my_csr_pem
 * does not parse). When several match: the last one that is not revoked, else the last. */
int tls_wire_find(const struct tls_provided *v, size_t n, const char *my_csr_pem);

/* What tls_wire_check found in a good entry. Strings are malloc'd: tls_checked_clear. */
struct tls_checked {
    time_t not_before; /* of the certificate */
    time_t not_after;
    char *certificate; /* the certificate, normalised PEM (x509_certs_normalize) */
    char *fullchain;   /* the certificate then the intermediates (chain[1..] less self-signed
                        * roots), normalised PEM: what ssl_cert_file should hold */
    char *ca;          /* the provider's CA, normalised PEM: the trust anchor */
    char fingerprint[X509_SHA256_HEX]; /* SHA-256 of the certificate (DER), lowercase hex */
};

/* Check an entry before the charm uses it with its private key key_pem, for a request with
 * ca = want_ca, at time now. In this order:
 *   -ECANCELED     revoked by the provider;
 *   -EINVAL        certificate is not PEM holding exactly one certificate;
 *   -EKEYREJECTED  the certificate is not for key_pem (x509_key_matches_cert; a key_pem
 *                  that is not a usable key: -EINVAL);
 *   -EINVAL        its basicConstraints CA flag is not want_ca;
 *   -EKEYEXPIRED   now is before its notBefore or after its notAfter;
 *   -EINVAL        ca is not PEM holding exactly one certificate, or that is not a CA;
 *                  a chain entry is not PEM holding exactly one certificate;
 *   -EKEYREJECTED  chain is not empty and chain[0] is not the certificate (DER);
 *   -EKEYREJECTED  the certificate with the intermediates does not verify against ca as
 *                  the trust anchor at now (x509_verify_anchored: ca may be an
 *                  intermediate); -EKEYEXPIRED when an intermediate or ca is not valid then;
 *   -ENOMEM.
 * On success *out is filled (on failure it is zeroed); *why is a sentence saying what is
 * wrong, without PEM text. */
int tls_wire_check(const struct tls_provided *e, const char *key_pem, bool want_ca, time_t now,
                   struct tls_checked *out, char **why);

/* Free what *c holds and zero it. NULL is a no-op. */
void tls_checked_clear(struct tls_checked *c);

#endif
