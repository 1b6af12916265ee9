/* postgresql_client v0, requirer side, read and validated (client_wire.h). */
#include "client_wire.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "errmsg.h"

/* Charmed PostgreSQL's reserved names, and pg_hba.conf's keywords for its database field
 * (a database named `all` would be every database in a rule that names it). */
static const char *const reserved_databases[] = {"databases", "postgres", "template0",
                                                 "template1", "all", "sameuser", "samerole",
                                                 "samegroup", "replication", NULL};

static const struct {
    const char *name;
    unsigned flag;
} roles[] = {
    {"superuser", CLIENT_ROLE_SUPERUSER},       {"createdb", CLIENT_ROLE_CREATEDB},
    {"createrole", CLIENT_ROLE_CREATEROLE},     {"charmed_stats", CLIENT_ROLE_CHARMED_STATS},
    {"charmed_read", CLIENT_ROLE_CHARMED_READ}, {"charmed_dml", CLIENT_ROLE_CHARMED_DML},
    {"charmed_admin", CLIENT_ROLE_CHARMED_ADMIN},
};

static const struct {
    const char *name;
    unsigned flag;
} secret_fields[] = {
    {"username", CLIENT_SECRET_USERNAME},
    {"password", CLIENT_SECRET_PASSWORD},
    {"tls", CLIENT_SECRET_TLS},
    {"tls-ca", CLIENT_SECRET_TLS_CA},
    {"uris", CLIENT_SECRET_URIS},
    {"read-only-uris", CLIENT_SECRET_READ_ONLY_URIS},
    {"entity-name", CLIENT_SECRET_ENTITY_NAME},
    {"entity-password", CLIENT_SECRET_ENTITY_PASSWORD},
};

/* The value for a message: itself when short and plain, else a description of it. */
static const char *shown(const char *v, size_t len, char *buf, size_t size)
{
    bool plain = len > 0 && len <= 40;
    for (size_t i = 0; plain && i < len; i++)
        plain = isalnum((unsigned char)v[i]) || v[i] == '_' || v[i] == '-' || v[i] == '*';
    if (plain)
        snprintf(buf, size, "\"%.*s\"", (int)len, v);
    else
        snprintf(buf, size, "a value of %zu bytes", len);
    return buf;
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && ((c >= '0' && c <= '9') || c == '-'));
}

static int parse_database(const char *v, size_t len, struct client_request *out, char **why)
{
    char b[64];
    bool prefix = len > 0 && v[len - 1] == '*';
    size_t n = prefix ? len - 1 : len;
    if (n == 0)
        return errmsg_set(why, -EINVAL, "relation data: database is empty; ask for a name");
    if (n > CLIENT_DB_MAX)
        return errmsg_set(why, -EINVAL, "relation data: database is %s, longer than %d bytes",
                          shown(v, len, b, sizeof b), CLIENT_DB_MAX);
    for (size_t i = 0; i < n; i++)
        if (!name_char(v[i], i == 0))
            return errmsg_set(why, -EINVAL,
                              "relation data: database %s is not a plain name (letters, "
                              "digits, _ and -, not starting with a digit or -)",
                              shown(v, len, b, sizeof b));
    if (prefix && n < CLIENT_PREFIX_MIN)
        return errmsg_set(why, -EINVAL,
                          "relation data: database prefix %s is too short (at least %d "
                          "characters before the *)", shown(v, len, b, sizeof b),
                          CLIENT_PREFIX_MIN);
    for (size_t i = 0; !prefix && reserved_databases[i]; i++)
        if (strlen(reserved_databases[i]) == n && strncmp(v, reserved_databases[i], n) == 0)
            return errmsg_set(why, -EINVAL,
                              "relation data: invalid database name %s (reserved); ask for "
                              "another one", shown(v, len, b, sizeof b));
    memcpy(out->database, v, n);
    out->database[n] = '\0';
    out->prefix = prefix;
    out->have_database = true;
    return 0;
}

static int parse_roles(const char *v, struct client_request *out, char **why)
{
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && end[-1] == ' ')
            end--;
        size_t len = (size_t)(end - start);
        if (len == 0)
            continue;
        bool found = false;
        for (size_t i = 0; i < sizeof roles / sizeof *roles && !found; i++)
            if (strlen(roles[i].name) == len && strncasecmp(start, roles[i].name, len) == 0) {
                out->roles |= roles[i].flag;
                found = true;
            }
        if (!found) {
            char b[64];
            return errmsg_set(why, -EINVAL,
                              "relation data: invalid role(s) for extra user roles: %s (one of "
                              "superuser, createdb, createrole, charmed_stats, charmed_read, "
                              "charmed_dml, charmed_admin)", shown(start, len, b, sizeof b));
        }
    }
    return 0;
}

static int parse_secrets(const char *v, struct client_request *out, char **why)
{
    json_error_t e;
    json_t *list = json_loads(v, 0, &e);
    int rc = 0;
    if (!json_is_array(list)) {
        rc = errmsg_set(why, -EINVAL,
                        "relation data: requested-secrets is not a JSON list of field names");
        goto out;
    }
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        if (!json_is_string(item)) {
            rc = errmsg_set(why, -EINVAL, "relation data: requested-secrets item %zu is not a "
                                          "string", i);
            goto out;
        }
        for (size_t k = 0; k < sizeof secret_fields / sizeof *secret_fields; k++)
            if (strcmp(json_string_value(item), secret_fields[k].name) == 0)
                out->secrets |= secret_fields[k].flag;
    }
    out->secrets_requested = true;
out:
    json_decref(list);
    return rc;
}

int client_wire_database(const char *value, char name[CLIENT_DB_MAX + 1], bool *prefix,
                         char **why)
{
    struct client_request r;
    int rc = parse_database(value ? value : "", value ? strlen(value) : 0, &r, why);
    if (rc < 0)
        return rc;
    memcpy(name, r.database, sizeof r.database);
    *prefix = r.prefix;
    return 0;
}

int client_wire_parse(const json_t *bag, struct client_request *out, char **why)
{
    *out = (struct client_request){0};
    if (!json_is_object(bag))
        return errmsg_set(why, -EINVAL, "relation data: the requirer's data is not an object");
    const json_t *version = json_object_get(bag, "version");
    if (json_object_get(bag, "requests") ||
        (json_is_string(version) && strcmp(json_string_value(version), "v0") != 0))
        return errmsg_set(why, -EINVAL, "relation data: only postgresql_client v0 requests are "
                                        "served (data_interfaces v0); this one is v1");
    if (json_object_get(bag, "entity-type") || json_object_get(bag, "requested-entity-secret"))
        return errmsg_set(why, -EINVAL, "relation data: custom entities (entity-type, "
                                        "requested-entity-secret) are not supported; ask for a "
                                        "database");
    const json_t *db = json_object_get(bag, "database");
    if (db && !json_is_string(db))
        return errmsg_set(why, -EINVAL, "relation data: database is not a string");
    int rc = 0;
    if (db)
        rc = parse_database(json_string_value(db), json_string_length(db), out, why);
    const json_t *r = json_object_get(bag, "extra-user-roles");
    if (rc == 0 && r)
        rc = json_is_string(r) ? parse_roles(json_string_value(r), out, why)
                               : errmsg_set(why, -EINVAL,
                                            "relation data: extra-user-roles is not a string");
    const json_t *s = json_object_get(bag, "requested-secrets");
    if (rc == 0 && s)
        rc = json_is_string(s) ? parse_secrets(json_string_value(s), out, why)
                               : errmsg_set(why, -EINVAL,
                                            "relation data: requested-secrets is not a string");
    if (rc < 0) {
        *out = (struct client_request){0};
        return rc;
    }
    return 0;
}
