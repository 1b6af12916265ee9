/* The requirer's side of postgresql_client v0 (interfaces.md 2.1), read and validated: what
 * a client application asks for in its app databag, turned into a typed request before any
 * of it reaches SQL or a status message. Pure: no hook tools, no database.
 *
 * Relation data is outside input: a value that is not acceptable is refused with a sentence
 * that names the field and, when it is short and printable, the value (never anything else
 * from the databag). Database names are held to a conservative alphabet (letters, digits,
 * `_` and `-`, not starting with a digit or `-`, at most 63 bytes) so that a name also
 * reaches SQL quoted (PQescapeIdentifier) but never needs to be.
 *
 * Ownership: struct client_request holds fixed-size buffers only; *why is malloc'd.
 */
#ifndef PG_AGENT_CLIENT_WIRE_H
#define PG_AGENT_CLIENT_WIRE_H

#include <stdbool.h>

#include <jansson.h>

#define CLIENT_DB_MAX 63 /* NAMEDATALEN - 1 */
#define CLIENT_PREFIX_MIN 3

/* extra-user-roles the charm grants (Charmed PostgreSQL 16's list, case-insensitive). */
enum client_role {
    CLIENT_ROLE_SUPERUSER = 1u << 0,
    CLIENT_ROLE_CREATEDB = 1u << 1,
    CLIENT_ROLE_CREATEROLE = 1u << 2,
    CLIENT_ROLE_CHARMED_STATS = 1u << 3,
    CLIENT_ROLE_CHARMED_READ = 1u << 4,
    CLIENT_ROLE_CHARMED_DML = 1u << 5,
    CLIENT_ROLE_CHARMED_ADMIN = 1u << 6,
};

/* Fields the requirer wants in Juju secrets (requested-secrets). */
enum client_secret_field {
    CLIENT_SECRET_USERNAME = 1u << 0,
    CLIENT_SECRET_PASSWORD = 1u << 1,
    CLIENT_SECRET_TLS = 1u << 2,
    CLIENT_SECRET_TLS_CA = 1u << 3,
    CLIENT_SECRET_URIS = 1u << 4,
    CLIENT_SECRET_READ_ONLY_URIS = 1u << 5,
    CLIENT_SECRET_ENTITY_NAME = 1u << 6,
    CLIENT_SECRET_ENTITY_PASSWORD = 1u << 7,
};

struct client_request {
    bool have_database;             /* false: the requirer has not asked yet (not an error) */
    char database[CLIENT_DB_MAX + 1]; /* the name, or the prefix without its `*` */
    bool prefix;                    /* `database` ended in `*` */
    unsigned roles;                 /* enum client_role */
    bool secrets_requested;         /* requested-secrets is present: secrets, not the databag */
    unsigned secrets;               /* enum client_secret_field (unknown names are ignored) */
};

/* Read the requirer's app databag (v1 multi-request data and custom entities are refused
 * with a message saying so) (a JSON object of strings, as relation-get --format json
 * gives it) into *out. Returns 0 (out->have_database false while `database` is absent), or
 * -EINVAL with *why saying which field is wrong and how to fix it. */
int client_wire_parse(const json_t *bag, struct client_request *out, char **why);

/* One database value (a name, or a prefix ending in `*`) under the rules above: 0 with the
 * name (without `*`) in name and *prefix set, or -EINVAL with *why. */
int client_wire_database(const char *value, char name[CLIENT_DB_MAX + 1], bool *prefix,
                         char **why);

#endif
