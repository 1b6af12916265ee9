/* Client relations: the `database` endpoint (postgresql_client v0, interfaces.md 2), as
 * Charmed PostgreSQL serves it, so that its clients and PgBouncer work unchanged.
 *
 * Who does what, every pass (nothing is deferred; each step waits for the one before it
 * through the peer relation):
 *   1. the Juju leader reads each relation's request (client_wire.c), keeps each client's
 *      password in an app-owned secret `database.<id>.user.secret` (readable by every unit
 *      of the application, never on disk) and publishes the list of client users in the
 *      peer app databag (PEERS_KEY_CLIENTS: relation id -> database, prefix, roles, secret);
 *   2. every unit renders pg_hba.conf from that list (rules naming each user, hostssl, SCRAM)
 *      plus the login roles its server has that a client made (a SUPERUSER or CREATEROLE
 *      client such as PgBouncer creates its own users: each gets a hostssl SCRAM rule; its
 *      md5 auth user pgbouncer_auth_relation_<id> gets the one md5 rule, hostssl), and
 *      says so with the list's digest (PEERS_KEY_CLIENTS_HBA);
 *   3. the unit running the primary creates the databases and roles (SCRAM verifiers
 *      computed in a SQL worker, sqlworker.h), grants, and drops the users of relations that
 *      are gone (their objects reassigned to postgres, their grants removed; the databases
 *      stay), and says so (PEERS_KEY_CLIENTS_ROLES);
 *   4. the leader publishes the credentials of a new relation once every unit admits its
 *      user and the primary created it; endpoints (the primary), read-only endpoints (the
 *      streaming replicas, else the primary), version and TLS follow on every pass, so a
 *      failover reaches the clients with the next ha-changed event.
 *
 * Every value from a relation is checked before use (client_wire.c for requests,
 * clients_parse for the peer list); identifiers reach SQL only through PQescapeIdentifier
 * or as parameters. A bad request blocks the leader with a message naming the relation and
 * the problem; nothing else about the cluster changes, and the next good request recovers.
 *
 * Ownership: struct clients_view owns its arrays (clients_view_clear); *err is malloc'd.
 * Hook thread only.
 */
#ifndef PG_AGENT_CLIENTS_H
#define PG_AGENT_CLIENTS_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "client_wire.h"
#include "ha.h"
#include "peers.h"
#include "pgconf.h"
#include "request.h"

#define CLIENTS_ENDPOINT "database"
#define CLIENTS_MAX 128
#define CLIENTS_URI_MAX 128
#define CLIENTS_MAX_LOGINS 1024 /* login roles named in pg_hba.conf besides the clients' */

struct client_entry {
    int id;                            /* the relation's id (database:<id>) */
    char user[32];                     /* relation-<id> */
    char auth_user[48];                /* pgbouncer_auth_relation_<id> */
    char database[CLIENT_DB_MAX + 1];  /* the name, or the prefix without `*` */
    bool prefix;
    unsigned roles;                    /* enum client_role */
    char secret[CLIENTS_URI_MAX];      /* the user secret's URI (holds the password) */
};

struct client_set {
    struct client_entry e[CLIENTS_MAX]; /* ordered by id */
    size_t n;
};

/* ---- pure: the peer list and the pg_hba rules ---- */

/* The peer app value -> set. Every entry is checked (id, database, roles, secret URI);
 * -EINVAL with *err on the first that is not acceptable (the whole list is then unknown). */
int clients_parse(const char *text, struct client_set *out, char **err);

/* The set as canonical JSON (sorted keys, compact), *out malloc'd; 0 or -ENOMEM. */
int clients_format(const struct client_set *set, char **out);

/* SHA-256 of text in lowercase hex (PEERS_DIGEST_MAX bytes with the NUL). */
void clients_digest(const char *text, char out[PEERS_DIGEST_MAX]);

/* Whether name can be a pg_hba.conf user token as it is: letters, digits, `_`, `-`, `.`,
 * `$`, at most 63 bytes, not a keyword (all, sameuser, samerole, samegroup, replication). */
bool clients_role_plain(const char *name);

/* The client rules for pg_hba.conf, in order: per entry `hostssl <database, or all for a
 * prefix or a SUPERUSER/CREATEDB/CREATEROLE user> <user> all scram-sha-256`, and for a
 * SUPERUSER entry `hostssl all pgbouncer_auth_relation_<id> all md5`; then per login role
 * (logins) that is not a system user, not postgres, not a pg_ role, not a client user of
 * this set or any other relation and plain (clients_role_plain): `hostssl all <role> all
 * scram-sha-256`. Strings point into set and logins. Returns the number of rules (at most
 * max; the rest is dropped with a warning). */
size_t clients_hba_rules(const struct client_set *set, const char *const *logins,
                         size_t n_logins, struct pg_hba_rule *out, size_t max);

/* ---- the pass ---- */

/* Hand clients_read a zeroed view (calloc); clients_view_clear releases it. */
struct clients_view {
    bool known;                       /* the set below is the cluster's (else: leave alone) */
    struct client_set set;
    char digest[PEERS_DIGEST_MAX];    /* of the set's canonical text */
    struct client_request req[CLIENTS_MAX]; /* leader: each entry's request, when read */
    bool have_req[CLIENTS_MAX];
    char remote[CLIENTS_MAX][64];     /* leader: each entry's remote application */
    char **logins;                    /* the local server's login roles (malloc'd) */
    size_t n_logins;
    struct pg_hba_rule *rules;        /* clients_hba_rules (malloc'd) */
    size_t n_rules;
    char message[512];                /* leader: what is wrong with which request ("") */
    bool waiting;                     /* leader: credentials wait for the other units */
    bool hba_done;                    /* this unit's pg_hba.conf admits the set */
    bool roles_done;                  /* this unit, the primary, created the set's users */
};

void clients_view_clear(struct clients_view *cv);

/* Steps 1 and 2: the set (the leader plans it from the relations, creating the user
 * secrets and writing the peer list; the others read the peer list) and the pg_hba rules
 * (conn: the local server when it runs, for its login roles; may be NULL). Returns 0 or -1
 * (a hook tool failed, *err). */
int clients_read(const struct hook_event *ev, const struct peers_view *pv, bool leader,
                 PGconn *conn, struct clients_view *cv, char **err);

/* Step 2's report and step 3: hba_loaded says pg_hba.conf with cv's rules is in place (the
 * server reloaded it, or will start with it); primary: this unit runs the primary. Returns
 * 0 or -1. */
int clients_converge_unit(const struct hook_event *ev, const struct peers_view *pv,
                          struct clients_view *cv, bool hba_loaded, bool primary,
                          uint64_t generation, char **err);

/* Step 4 (leader): publish to every relation. snap: the HA loop's view (primary, replicas);
 * tls_ca: PEM the clients verify the servers with; conn: the local server (version,
 * prefix databases; may be NULL). Returns 0 or -1. */
int clients_publish(const struct hook_event *ev, const struct peers_view *pv,
                    struct clients_view *cv, const struct ha_snapshot *snap, const char *tls_ca,
                    PGconn *conn, char **err);

#endif
