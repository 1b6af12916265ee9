/* The tls-certificates v1 requirer (interfaces.md 1) on two endpoints:
 *
 * `client-certificates`: the certificate PostgreSQL serves to its clients. This unit's key
 * and request (kept in a unit-owned Juju secret), the request in its unit databag, the
 * provider's answer checked (tls_wire.c) and kept in a second unit-owned secret, and the
 * files PostgreSQL serves with. Without the relation, or until the provider answers with a
 * certificate that passes every check, PostgreSQL serves the internal CA's certificate
 * (pki.c); a removed relation falls back to it. Files change with a reload only.
 *
 * `peer-certificates`: the unit's peer identity, presented by etcd (client and peer ports),
 * the REST API, and replication and pg_rewind connections (client certificates). The
 * request and checks are the same; the certificate asks for CN <app>-<n> (the name the
 * replication and rewind roles map from, pg_ident.conf) with the unit's names and
 * addresses, localhost and 127.0.0.1. A certificate from a new CA is only presented once
 * every peer says it trusts that CA (PEERS_KEY_TLS_TRUST; at most TLS_PEER_SWITCH_WAIT_S
 * for a unit that never says so, e.g. one that is down), so no peer ever sees a certificate
 * it cannot verify. The peer trust bundle holds the internal CA, the provider CAs this unit
 * holds certificates from and those every peer publishes (PEERS_KEY_TLS_CAS): a CA leaves
 * it once no unit presents or awaits a certificate from it. A removed relation falls back
 * to the internal certificate (always trusted).
 *
 * Files (0600; the peer copies are pki.h's pki_peer_agent, pki_peer_pg, pki_etcd):
 *   PKI_PG_DIR/client-cert.pem  the provider's certificate and intermediates (ssl_cert_file)
 *   PKI_PG_DIR/client-key.pem   this unit's key for it (ssl_key_file)
 *   PKI_PG_DIR/trust.pem        what replication and rewind verify servers with: the peer
 *                               trust bundle, plus the client-certificates provider's CA and
 *                               the one before it (a CA change is trusted on both sides
 *                               while the units switch)
 *   PKI_AGENT_DIR/peer-issuer.pem  the provider CA of the presented peer certificate (absent
 *                               while the internal one is presented)
 *
 * Secrets (owner unit): `tls-client-private-key` and `tls-peer-private-key` {private-key,
 * csr}; `tls-client-certificate` and `tls-peer-certificate` {certificate, ca-certificate,
 * chain, previous-ca}. Nothing secret is logged.
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
#define TLS_PEER_ENDPOINT "peer-certificates"
#define TLS_CLIENT_CERT PKI_PG_DIR "/client-cert.pem"
#define TLS_CLIENT_KEY PKI_PG_DIR "/client-key.pem"
#define TLS_TRUST PKI_PG_DIR "/trust.pem"
#define TLS_PEER_ISSUER PKI_AGENT_DIR "/peer-issuer.pem"
#define TLS_PEER_SWITCH_WAIT_S 120
#define TLS_CA_BUNDLE_MAX 16384

struct tls_endpoint_state {
    bool related;       /* the relation exists */
    bool active;        /* the provider's certificate is in use */
    char message[256];  /* why the provider's answer is ignored ("" when it is not) */
    time_t not_after;   /* the provider certificate's end (0 when none) */
    time_t renew_at;    /* when a new request is due (0: not known / already requested) */
    char ca[TLS_CA_BUNDLE_MAX]; /* active: the provider's CA, and the one before it while a
                                 * CA change settles (PEM; "" when too long or none) */
};

struct tls_state {
    struct tls_endpoint_state client, peer;
    bool peer_waiting; /* a new peer certificate waits until every peer trusts its CA */
    bool peer_changed; /* this pass installed another peer certificate (replication
                        * connections pick it up when they reconnect) */
};

/* Converge both endpoints (after pki_converge; the peer identity first, its trust bundle is
 * part of trust.pem): request, take or drop the providers' certificates, write the files.
 * *changed when a file PostgreSQL reads changed (the caller reloads; the REST API and etcd
 * notice changed files themselves). Returns 0, or a negative errno when a hook tool or a
 * file write failed (*err). Bad data from a provider is not a failure: the endpoint's
 * message says what, the current files stay. */
int tls_converge(const struct hook_event *ev, const struct peers_view *pv,
                 const struct pg_settings *s, struct tls_state *st, bool *changed, char **err);

/* After the services loaded the peer trust bundle tls_converge wrote (loaded: etcd runs
 * with it; PostgreSQL was reloaded): publish which provider CAs this unit trusts
 * (PEERS_KEY_TLS_TRUST), so that peers may present certificates from them. Returns 0 or -1
 * (relation-set failed, *err). */
int tls_publish_trust(const struct hook_event *ev, const struct peers_view *pv, bool loaded,
                      char **err);

/* set-tls-private-key: key_pem (NULL: a new one of the configured type) replaces this unit's
 * key for client-certificates, with a new request, published at once when the relation
 * exists (*published). -EINVAL (with *err, no key text) for a key that does not pass
 * x509_key_check. */
int tls_set_private_key(const struct hook_event *ev, const struct peers_view *pv,
                        const struct pg_settings *s, const char *key_pem, bool *published,
                        char **err);

#endif
