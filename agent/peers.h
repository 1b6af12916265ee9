/* The peer relation (database-peers) read once per pass into a typed view: the other
 * units and their addresses, this unit's address, and what the leader publishes in the
 * application databag (the etcd member list, the cluster token, the internal CA's secret),
 * and what each unit says of its peer-certificates CAs.
 *
 * Relation data is outside input: every value is validated here (addresses with
 * inet_pton, member lists with etcd_cluster_parse, secret URIs with settings_secret_id);
 * a bad value is dropped with a warning and the view says it is missing.
 *
 * Ownership: struct peers_view holds fixed-size buffers only; *err is malloc'd.
 */
#ifndef PG_AGENT_PEERS_H
#define PG_AGENT_PEERS_H

#include <stdbool.h>
#include <stddef.h>

#include "etcd_member.h"
#include "request.h"

#define PEERS_ENDPOINT "database-peers"
#define PEERS_MAX 16
#define PEERS_ADDR_MAX 64 /* an IPv4 or IPv6 address in text */

/* App databag keys (written by the leader). */
#define PEERS_KEY_ETCD_CLUSTER "etcd-cluster" /* name=https://ip:2380,... */
#define PEERS_KEY_ETCD_TOKEN "etcd-token"     /* --initial-cluster-token */
#define PEERS_KEY_CA "internal-ca"            /* URI of the internal CA secret */

/* Unit databag keys (each unit; tls.c): the CAs of the peer-certificates provider this unit
 * holds certificates from (PEM, public), and the SHA-256 fingerprints of the provider CAs
 * every peer-traffic service of this unit trusts (space-separated lowercase hex). */
#define PEERS_KEY_TLS_CAS "tls-peer-cas"
#define PEERS_KEY_TLS_TRUST "tls-peer-trust"
/* Client relations (clients.c): the leader's list of client users (app key, JSON, checked by
 * clients_parse), and what each unit has done with it (unit keys: the list's digest once
 * its pg_hba.conf admits those users; once, as the primary, it created them). */
#define PEERS_KEY_CLIENTS "clients"
#define PEERS_KEY_CLIENTS_HBA "clients-hba"
#define PEERS_KEY_CLIENTS_ROLES "clients-roles"
#define PEERS_CLIENTS_MAX 32768
#define PEERS_DIGEST_MAX 65 /* 64 lowercase hex digits */
#define PEERS_TLS_CAS_MAX 8192
#define PEERS_TLS_TRUST_MAX 272 /* four fingerprints */

struct peer_unit {
    char unit[ETCD_NAME_MAX];     /* postgresql/1 */
    char member[ETCD_NAME_MAX];   /* postgresql-1 */
    char address[PEERS_ADDR_MAX]; /* "" when not published or invalid */
    char tls_cas[PEERS_TLS_CAS_MAX];     /* PEERS_KEY_TLS_CAS, "" when absent or too long
                                          * (the PEM is checked where it is used) */
    char tls_trust[PEERS_TLS_TRUST_MAX]; /* PEERS_KEY_TLS_TRUST, "" when absent or invalid */
    bool tls_trust_known;                /* the unit published PEERS_KEY_TLS_TRUST */
    char clients_hba[PEERS_DIGEST_MAX];   /* PEERS_KEY_CLIENTS_HBA, "" when absent/invalid */
    char clients_roles[PEERS_DIGEST_MAX]; /* PEERS_KEY_CLIENTS_ROLES, likewise */
};

struct peers_view {
    bool related;             /* the peer relation exists (not before relation-created) */
    char rel[64];             /* its id, e.g. database-peers:0 */
    char app[ETCD_NAME_MAX];  /* postgresql */
    char me[ETCD_NAME_MAX];   /* this unit's member name, postgresql-0 */
    char my_address[PEERS_ADDR_MAX];
    struct peer_unit units[PEERS_MAX]; /* the other units, relation-list order */
    size_t n;
    bool have_cluster;        /* a valid etcd member list is published */
    struct etcd_cluster cluster;
    char token[65];
    char ca_uri[128];
    char my_clients_hba[PEERS_DIGEST_MAX];   /* this unit's own PEERS_KEY_CLIENTS_HBA */
    char my_clients_roles[PEERS_DIGEST_MAX]; /* and PEERS_KEY_CLIENTS_ROLES */
    bool clients_known;               /* the leader published PEERS_KEY_CLIENTS */
    char clients[PEERS_CLIENTS_MAX];  /* its value (too long: not known, warned) */
};

/* "postgresql/1" -> "postgresql-1" (a valid etcd member name), into buf. Returns 0 or
 * -EINVAL when the unit name cannot make one. */
int peers_member_name(const char *unit, char *buf, size_t size);

/* Whether s is an IPv4 or IPv6 address in text. */
bool peers_address_valid(const char *s);

/* Whether s is a digest as PEERS_KEY_CLIENTS_HBA holds it: 64 lowercase hex digits. */
bool peers_digest_valid(const char *s);

/* Whether s is a PEERS_KEY_TLS_TRUST value: up to four SHA-256 fingerprints (64 lowercase
 * hex digits each), separated by single or repeated spaces; "" is valid (none). */
bool peers_trust_valid(const char *s);

/* Read the relation (relation-ids, relation-list, relation-get of each unit and of the
 * app) and this unit's address (unit-get private-address). Returns 0 or -1. */
int peers_read(const struct hook_event *ev, struct peers_view *out, char **err);

/* relation-set on the app databag (leader only) or on this unit's databag. An empty value
 * deletes the key. Returns 0 or -1. */
int peers_set(const struct hook_event *ev, const struct peers_view *v, bool app, const char *key,
              const char *value, char **err);

/* The member names known in the relation (this unit included), for membership checks. */
bool peers_has_member(const struct peers_view *v, const char *member);

#endif
