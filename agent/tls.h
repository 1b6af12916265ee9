/* The tls-certificates v1 requirer on the `client-certificates` endpoint (interfaces.md 1):
 * this unit's key and request (kept in a unit-owned Juju secret), the request in its unit
 * databag, the provider's answer checked (tls_wire.c) and kept in a second unit-owned
 * secret, and the files PostgreSQL serves with. Without the relation, or until the provider
 * answers with a certificate that passes every check, PostgreSQL serves the internal CA's
 * certificate (pki.c); a removed relation falls back to it. Files change with a reload only.
 *
 * Files (postgres, 0600), next to pki.c's copies:
 *   PKI_PG_DIR/client-cert.pem  the provider's certificate and intermediates (ssl_cert_file)
 *   PKI_PG_DIR/client-key.pem   this unit's key for it (ssl_key_file)
 *   PKI_PG_DIR/trust.pem        what PostgreSQL trusts for client certificates (ssl_ca_file)
 *                               and what replication verifies servers with: the internal CA,
 *                               plus the provider's CA and the one before it (a CA change is
 *                               trusted on both sides while the units switch)
 *
 * Secrets (owner unit): `tls-client-private-key` {private-key, csr}; `tls-client-certificate`
 * {certificate, ca-certificate, chain, previous-ca}. Nothing secret is logged.
 *
 * Ownership: *err is malloc'd; struct tls_state is the caller's. Hook thread only.
 */
#ifndef PG_AGENT_TLS_H
#define PG_AGENT_TLS_H

#include <stdbool.h>
#include <time.h>

#include "peers.h"
#include "pki.h"
#include "request.h"
#include "settings.h"

#define TLS_CLIENT_ENDPOINT "client-certificates"
#define TLS_CLIENT_CERT PKI_PG_DIR "/client-cert.pem"
#define TLS_CLIENT_KEY PKI_PG_DIR "/client-key.pem"
#define TLS_TRUST PKI_PG_DIR "/trust.pem"

struct tls_state {
    bool related;       /* a client-certificates relation exists */
    bool active;        /* PostgreSQL serves the provider's certificate */
    char message[256];  /* why the provider's answer is ignored ("" when it is not) */
    time_t not_after;   /* the active certificate's end (0 when none) */
    time_t renew_at;    /* when a new request is due (0: not known / already requested) */
};

/* Converge (after pki_converge): request, take or drop the provider's certificate, write the
 * files. *changed when a file PostgreSQL reads changed (the caller reloads). Returns 0, or a
 * negative errno when a hook tool or a file write failed (*err). Bad data from the provider
 * is not a failure: st->message says what, the current files stay. */
int tls_converge(const struct hook_event *ev, const struct peers_view *pv,
                 const struct pg_settings *s, struct tls_state *st, bool *changed, char **err);

/* set-tls-private-key: key_pem (NULL: a new one of the configured type) replaces this unit's
 * key for client-certificates, with a new request, published at once when the relation
 * exists (*published). -EINVAL (with *err, no key text) for a key that does not pass
 * x509_key_check. */
int tls_set_private_key(const struct hook_event *ev, const struct peers_view *pv,
                        const struct pg_settings *s, const char *key_pem, bool *published,
                        char **err);

#endif
