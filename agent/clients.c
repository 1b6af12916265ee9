/* Client relations (clients.h): the leader's plan from the requests, pg_hba rules on every
 * unit, roles and databases on the primary, and what each client application is told. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "clients.h"

#include "credentials.h"
#include "db.h"
#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "password.h"
#include "pg.h"
#include "settings.h"
#include "sqlworker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define PG_CLIENT_PORT 5432

/* ---- the peer list (pure) ------------------------------------------------------------- */

static const unsigned all_roles = CLIENT_ROLE_SUPERUSER | CLIENT_ROLE_CREATEDB |
                                  CLIENT_ROLE_CREATEROLE | CLIENT_ROLE_CHARMED_STATS |
                                  CLIENT_ROLE_CHARMED_READ | CLIENT_ROLE_CHARMED_DML |
                                  CLIENT_ROLE_CHARMED_ADMIN;

static void entry_names(struct client_entry *e)
{
    snprintf(e->user, sizeof e->user, "relation-%d", e->id);
    snprintf(e->auth_user, sizeof e->auth_user, "pgbouncer_auth_relation_%d", e->id);
}

/* "5" or "database:5" -> 5; -1 when it is not a relation id. */
static int parse_id(const char *s)
{
    const char *colon = strrchr(s, ':');
    const char *d = colon ? colon + 1 : s;
    if (!*d || strlen(d) > 9)
        return -1;
    int id = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9')
            return -1;
        id = id * 10 + (*d - '0');
    }
    return id;
}

static int by_id(const void *a, const void *b)
{
    const struct client_entry *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

int clients_parse(const char *text, struct client_set *out, char **err)
{
    *out = (struct client_set){0};
    json_error_t je;
    json_t *root = json_loads(text ? text : "", JSON_REJECT_DUPLICATES, &je);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = errmsg_set(err, -EINVAL, "the client list is not a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (out->n >= CLIENTS_MAX) {
            rc = errmsg_set(err, -EINVAL, "the client list has more than %d entries",
                            CLIENTS_MAX);
            goto out;
        }
        struct client_entry *e = &out->e[out->n];
        e->id = parse_id(key);
        const char *db = json_string_value(json_object_get(v, "database"));
        const json_t *prefix = json_object_get(v, "prefix");
        const json_t *roles = json_object_get(v, "roles");
        const char *secret = json_string_value(json_object_get(v, "secret"));
        char id[SETTINGS_SECRET_ID_LEN + 1];
        char *why = NULL;
        bool p = false;
        if (e->id < 0 || strchr(key, ':') || !json_is_object(v) || !db ||
            !json_is_boolean(prefix) || !json_is_integer(roles) ||
            json_integer_value(roles) < 0 || (json_integer_value(roles) & ~(json_int_t)all_roles) ||
            !secret || strlen(secret) >= sizeof e->secret || settings_secret_id(secret, id) < 0) {
            rc = errmsg_set(err, -EINVAL, "the client list's entry %.12s is not valid", key);
            goto out;
        }
        char full[CLIENT_DB_MAX + 2];
        snprintf(full, sizeof full, "%s%s", db, json_is_true(prefix) ? "*" : "");
        if (strlen(db) > CLIENT_DB_MAX ||
            client_wire_database(full, e->database, &p, &why) < 0) {
            free(why);
            rc = errmsg_set(err, -EINVAL, "the client list's entry %d has an invalid database",
                            e->id);
            goto out;
        }
        e->prefix = p;
        e->roles = (unsigned)json_integer_value(roles);
        snprintf(e->secret, sizeof e->secret, "%s", secret);
        entry_names(e);
        out->n++;
    }
    qsort(out->e, out->n, sizeof *out->e, by_id);
    for (size_t i = 1; i < out->n; i++)
        if (out->e[i].id == out->e[i - 1].id)
            rc = errmsg_set(err, -EINVAL, "the client list names relation %d twice",
                            out->e[i].id);
out:
    json_decref(root);
    if (rc < 0)
        *out = (struct client_set){0};
    return rc;
}

int clients_format(const struct client_set *set, char **out)
{
    *out = NULL;
    json_t *root = json_object();
    for (size_t i = 0; root && i < set->n; i++) {
        const struct client_entry *e = &set->e[i];
        char key[16];
        snprintf(key, sizeof key, "%d", e->id);
        if (json_object_set_new(root, key,
                                json_pack("{s:s, s:b, s:i, s:s}", "database", e->database,
                                          "prefix", e->prefix, "roles", (int)e->roles,
                                          "secret", e->secret)) < 0) {
            json_decref(root);
            return -ENOMEM;
        }
    }
    *out = root ? json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(root);
    return *out ? 0 : -ENOMEM;
}

void clients_digest(const char *text, char out[PEERS_DIGEST_MAX])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)text, strlen(text));
    sodium_bin2hex(out, PEERS_DIGEST_MAX, h, sizeof h);
}

bool clients_role_plain(const char *name)
{
    static const char *const keywords[] = {"all", "sameuser", "samerole", "samegroup",
                                           "replication", NULL};
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > 63)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || *p == '$'))
            return false;
    for (size_t i = 0; keywords[i]; i++)
        if (strcmp(name, keywords[i]) == 0)
            return false;
    return true;
}

/* relation-<n> and pgbouncer_auth_relation_<n>: the users the charm owns (any n). */
static bool client_user_name(const char *name)
{
    static const char *const prefixes[] = {"relation-", "pgbouncer_auth_relation_", NULL};
    for (size_t i = 0; prefixes[i]; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], n) == 0 && parse_id(name + n) >= 0 &&
            !strchr(name + n, ':'))
            return true;
    }
    return false;
}

static bool system_user(const char *name)
{
    if (strcmp(name, "postgres") == 0 || strncmp(name, "pg_", 3) == 0 ||
        strncmp(name, "charmed_", 8) == 0)
        return true;
    return creds_user_index(name) >= 0;
}

size_t clients_hba_rules(const struct client_set *set, const char *const *logins,
                         size_t n_logins, struct pg_hba_rule *out, size_t max)
{
    size_t n = 0;
    bool dropped = false;
    for (size_t i = 0; i < set->n; i++) {
        const struct client_entry *e = &set->e[i];
        bool any_db = e->prefix || (e->roles & (CLIENT_ROLE_SUPERUSER | CLIENT_ROLE_CREATEDB |
                                                CLIENT_ROLE_CREATEROLE));
        if (n < max)
            out[n++] = (struct pg_hba_rule){"hostssl", any_db ? "all" : e->database, e->user,
                                            "all", "scram-sha-256", NULL};
        else
            dropped = true;
        if (!(e->roles & CLIENT_ROLE_SUPERUSER))
            continue;
        /* PgBouncer's auth user keeps an md5 verifier (interfaces.md 2.7): this one user,
         * over TLS only; a SCRAM verifier still authenticates with SCRAM on this line */
        if (n < max)
            out[n++] = (struct pg_hba_rule){"hostssl", "all", e->auth_user, "all", "md5", NULL};
        else
            dropped = true;
    }
    for (size_t i = 0; i < n_logins; i++) {
        const char *r = logins[i];
        if (!r || system_user(r) || client_user_name(r))
            continue;
        if (!clients_role_plain(r)) {
            log_warning("login role of %zu bytes is not a plain name: not in pg_hba.conf "
                        "(rename it to letters, digits, _, - or .)", strlen(r));
            continue;
        }
        if (n < max)
            out[n++] = (struct pg_hba_rule){"hostssl", "all", r, "all", "scram-sha-256", NULL};
        else
            dropped = true;
    }
    if (dropped)
        log_warning("more than %zu client rules for pg_hba.conf: the rest is left out", max);
    return n;
}

/* ---- helpers over hook tools ----------------------------------------------------------- */

void clients_view_clear(struct clients_view *cv)
{
    for (size_t i = 0; i < cv->n_logins; i++)
        free(cv->logins[i]);
    free(cv->logins);
    free(cv->rules);
    cv->logins = NULL;
    cv->rules = NULL;
    cv->n_logins = cv->n_rules = 0;
}

static void say(struct clients_view *cv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct clients_view *cv, const char *fmt, ...)
{
    size_t len = strlen(cv->message);
    if (len + 3 >= sizeof cv->message)
        return;
    if (len) {
        memcpy(cv->message + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(cv->message + len, sizeof cv->message - len, fmt, ap);
    va_end(ap);
}

static const char *field(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool app_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return false;
    return true;
}

/* The relation's remote application and its app databag. */
static int remote_request(const struct hook_event *ev, const char *rel, char app[64],
                          json_t **bag, char **err)
{
    *bag = NULL;
    const char *list_argv[] = {"relation-list", "-r", rel, "--app", NULL};
    json_t *name = NULL;
    if (hooktool_json(ev, list_argv, &name, err) < 0)
        return -1;
    const char *n = json_string_value(name);
    if (!app_name_ok(n)) {
        json_decref(name);
        return errmsg_set(err, -EINVAL, "%s: the remote application's name is not valid", rel);
    }
    snprintf(app, 64, "%s", n);
    json_decref(name);
    const char *get_argv[] = {"relation-get", "-r", rel, "--app", "-", app, NULL};
    return hooktool_json(ev, get_argv, bag, err);
}

/* relation-set [--app] --file - with a JSON object (values may be secret: never in argv).
 * -EACCES: the relation is not in this unit's scope yet. */
static int relation_set_json(const struct hook_event *ev, const char *rel, bool app,
                             const json_t *values, char **err)
{
    char *text = json_dumps(values, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return errmsg_set(err, -ENOMEM, "out of memory");
    const char *with_app[] = {"relation-set", "-r", rel, "--app", "--file", "-", NULL};
    const char *unit_only[] = {"relation-set", "-r", rel, "--file", "-", NULL};
    int rc = hooktool_check_input(ev, app ? with_app : unit_only, text, strlen(text), err);
    sodium_memzero(text, strlen(text));
    free(text);
    return rc;
}

static void user_label(int id, char *buf, size_t size)
{
    snprintf(buf, size, CLIENTS_ENDPOINT ".%d.user.secret", id);
}

static void tls_label(int id, char *buf, size_t size)
{
    snprintf(buf, size, CLIENTS_ENDPOINT ".%d.tls.secret", id);
}

/* The same secret, whatever form its URI has (secret:<xid>, secret://<model>/<xid>). */
static bool same_secret(const char *a, const char *b)
{
    char x[SETTINGS_SECRET_ID_LEN + 1], y[SETTINGS_SECRET_ID_LEN + 1];
    return a && b && settings_secret_id(a, x) == 0 && settings_secret_id(b, y) == 0 &&
           strcmp(x, y) == 0;
}

/* ---- step 1: the leader's plan ------------------------------------------------------ */

/* The user secret of relation id: the one the list names, else the one with its label,
 * else a new one with a new password. */
static int user_secret(const struct hook_event *ev, int id, const struct client_entry *old,
                       char uri[CLIENTS_URI_MAX], char **err)
{
    if (old) {
        snprintf(uri, CLIENTS_URI_MAX, "%s", old->secret);
        return 0;
    }
    char label[64];
    user_label(id, label, sizeof label);
    if (hooktool_secret_uri(ev, label, uri, CLIENTS_URI_MAX) == 0)
        return 0;
    char *pw = NULL;
    if (password_generate(&pw, err) < 0)
        return -1;
    char user[32];
    snprintf(user, sizeof user, "relation-%d", id);
    const struct secret_field f[] = {{"username", user}, {"password", pw}};
    char *new_uri = NULL;
    int rc = hooktool_secret_add(ev, "application", label, f, 2, &new_uri, err);
    password_free(pw);
    if (rc < 0)
        return -1;
    if (strlen(new_uri) >= CLIENTS_URI_MAX) {
        free(new_uri);
        return errmsg_set(err, -EINVAL, "secret-add answered an over-long URI");
    }
    snprintf(uri, CLIENTS_URI_MAX, "%s", new_uri);
    log_info("relation %d: created the user secret %s (label %s)", id, new_uri, label);
    free(new_uri);
    return 0;
}

/* The secrets of a relation that is gone. */
static void remove_secrets(const struct hook_event *ev, int id, const char *user_uri)
{
    char label[64], uri[CLIENTS_URI_MAX];
    for (int k = 0; k < 2; k++) {
        const char *which = NULL;
        if (k == 0) {
            user_label(id, label, sizeof label);
            which = user_uri && *user_uri ? user_uri : NULL;
        } else {
            tls_label(id, label, sizeof label);
        }
        if (!which && hooktool_secret_uri(ev, label, uri, sizeof uri) == 0)
            which = uri;
        if (!which)
            continue;
        const char *argv[] = {"secret-remove", which, NULL};
        char *err = NULL;
        if (hooktool_check(ev, argv, &err) == 0)
            log_info("relation %d is gone: removed its secret %s", id, label);
        else
            log_warning("relation %d: cannot remove its secret %s: %s", id, label, ERRMSG(err));
        free(err);
    }
}

static const struct client_entry *find(const struct client_set *s, int id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].id == id)
            return &s->e[i];
    return NULL;
}

/* The relation id the hook is breaking, or -1. */
static int plan(const struct hook_event *ev, const struct peers_view *pv,
                struct clients_view *cv, char **err)
{
    struct client_set *old = calloc(1, sizeof *old);
    if (!old)
        return errmsg_set(err, -ENOMEM, "out of memory");
    if (pv->clients_known) {
        char *why = NULL;
        if (clients_parse(pv->clients, old, &why) < 0)
            log_warning("peer app data %s: %s: planned again from the relations",
                        PEERS_KEY_CLIENTS, ERRMSG(why));
        free(why);
    }
    const char *ids_argv[] = {"relation-ids", CLIENTS_ENDPOINT, NULL};
    json_t *ids = NULL;
    int rc = -1;
    if (hooktool_json(ev, ids_argv, &ids, err) < 0)
        goto out;
    int broken = request_broken_relation(ev, CLIENTS_ENDPOINT);
    struct client_set *set = &cv->set;
    *set = (struct client_set){0};
    size_t i;
    json_t *idv;
    json_array_foreach(ids, i, idv) {
        const char *rel = json_string_value(idv);
        int id = rel ? parse_id(rel) : -1;
        if (id < 0 || id == broken)
            continue;
        if (set->n >= CLIENTS_MAX) {
            say(cv, "more than %d client relations: %s is not served", CLIENTS_MAX, rel);
            continue;
        }
        size_t k = set->n;
        const struct client_entry *was = find(old, id);
        json_t *bag = NULL;
        char *why = NULL;
        if (remote_request(ev, rel, cv->remote[k], &bag, &why) < 0) {
            log_warning("%s: %s", rel, ERRMSG(why));
            free(why);
            json_decref(bag);
            if (was)
                set->e[set->n++] = *was; /* keep its user while the request cannot be read */
            continue;
        }
        struct client_request req;
        int prc = client_wire_parse(bag, &req, &why);
        /* Juju cannot store an empty value (`key=` deletes the key): a request without a
         * database, when the requirer wrote its other keys, is an empty database */
        bool asked = json_object_size(bag) > (json_object_get(bag, "data") ? 1u : 0u);
        json_decref(bag);
        if (prc < 0) {
            say(cv, "%s (%s): %s", rel, cv->remote[k], ERRMSG(why));
            log_warning("%s (%s): %s", rel, cv->remote[k], ERRMSG(why));
            free(why);
            if (was)
                set->e[set->n++] = *was;
            continue;
        }
        if (!req.have_database) {
            if (asked)
                say(cv, "%s (%s): no database requested (the key is missing or empty); ask "
                        "for one", rel, cv->remote[k]);
            if (was)
                set->e[set->n++] = *was;
            continue; /* the requirer has not asked yet */
        }
        if (was && (strcmp(was->database, req.database) != 0 || was->prefix != req.prefix ||
                    was->roles != req.roles)) {
            say(cv, "%s (%s): database and extra-user-roles cannot change once served (%s%s "
                    "was served); ask for the served values, or remove and re-add the relation",
                rel, cv->remote[k], was->database, was->prefix ? "*" : "");
            set->e[set->n++] = *was;
            cv->req[k] = req;
            cv->have_req[k] = true;
            continue;
        }
        struct client_entry *e = &set->e[k];
        *e = (struct client_entry){.id = id, .prefix = req.prefix, .roles = req.roles};
        snprintf(e->database, sizeof e->database, "%s", req.database);
        entry_names(e);
        if (user_secret(ev, id, was, e->secret, err) < 0)
            goto out;
        if (!was)
            log_info("%s (%s): serving database %s%s to user %s", rel, cv->remote[k],
                     e->database, e->prefix ? "*" : "", e->user);
        cv->req[k] = req;
        cv->have_req[k] = true;
        set->n++;
    }
    /* relations that are gone: their secrets go (their users go on the primary) */
    for (size_t k = 0; k < old->n; k++)
        if (!find(set, old->e[k].id))
            remove_secrets(ev, old->e[k].id, old->e[k].secret);
    if (broken >= 0 && !find(old, broken))
        remove_secrets(ev, broken, NULL);

    /* the cluster's list, in the peer relation */
    char *text = NULL;
    if (clients_format(set, &text) < 0) {
        rc = errmsg_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (!pv->clients_known || strcmp(pv->clients, text) != 0) {
        if (strlen(text) >= PEERS_CLIENTS_MAX) {
            say(cv, "the client list is over %d bytes: remove client relations",
                PEERS_CLIENTS_MAX - 1);
        } else if (peers_set(ev, pv, true, PEERS_KEY_CLIENTS, text, err) < 0) {
            free(text);
            goto out;
        } else {
            log_info("client list: %zu relation(s)", set->n);
        }
    }
    clients_digest(text, cv->digest);
    free(text);
    cv->known = true;
    rc = 0;
out:
    json_decref(ids);
    free(old);
    return rc;
}

/* ---- step 2: the rules -------------------------------------------------------------- */

static int read_logins(PGconn *conn, struct clients_view *cv, char **err)
{
    PGresult *r = PQexec(conn, "SELECT rolname FROM pg_catalog.pg_roles WHERE rolcanlogin "
                               "ORDER BY rolname");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = errmsg_set(err, -EIO, "cannot list the login roles: %.200s",
                        PQerrorMessage(conn));
    } else {
        size_t n = (size_t)PQntuples(r);
        if (n > CLIENTS_MAX_LOGINS) {
            log_warning("%zu login roles: only the first %d are named in pg_hba.conf", n,
                        CLIENTS_MAX_LOGINS);
            n = CLIENTS_MAX_LOGINS;
        }
        cv->logins = calloc(n ? n : 1, sizeof *cv->logins);
        if (!cv->logins)
            rc = errmsg_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; rc == 0 && i < n; i++) {
            cv->logins[i] = strdup(PQgetvalue(r, (int)i, 0));
            if (!cv->logins[i])
                rc = errmsg_set(err, -ENOMEM, "out of memory");
            else
                cv->n_logins++;
        }
    }
    PQclear(r);
    return rc;
}

int clients_read(const struct hook_event *ev, const struct peers_view *pv, bool leader,
                 PGconn *conn, struct clients_view *cv, char **err)
{
    *cv = (struct clients_view){0}; /* a fresh view: the caller cleared any earlier one */
    if (leader) {
        if (plan(ev, pv, cv, err) < 0)
            return -1;
    } else if (pv->clients_known) {
        char *why = NULL;
        if (clients_parse(pv->clients, &cv->set, &why) == 0) {
            cv->known = true;
            clients_digest(pv->clients, cv->digest);
        } else {
            log_warning("peer app data %s: %s: ignored", PEERS_KEY_CLIENTS, ERRMSG(why));
        }
        free(why);
    }
    if (conn && read_logins(conn, cv, err) < 0)
        return -1;
    size_t max = (size_t)2 * CLIENTS_MAX + cv->n_logins;
    cv->rules = calloc(max, sizeof *cv->rules);
    if (!cv->rules)
        return errmsg_set(err, -ENOMEM, "out of memory");
    cv->n_rules = clients_hba_rules(&cv->set, (const char *const *)cv->logins, cv->n_logins,
                                    cv->rules, max);
    return 0;
}

/* ---- step 3: roles and databases on the primary (in a SQL worker) ---------------- */

struct apply_job {
    const struct client_set *set;
    char *pw[CLIENTS_MAX]; /* sodium buffers; NULL: the password could not be read */
};

static int exec_fmt(PGconn *conn, char **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int exec_fmt(PGconn *conn, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = NULL;
    int n = vasprintf(&sql, fmt, ap);
    va_end(ap);
    if (n < 0)
        return errmsg_set(err, -ENOMEM, "out of memory");
    int rc = db_exec(conn, sql, err);
    free(sql);
    return rc;
}

/* A quoted identifier (PQescapeIdentifier) in a fixed buffer. */
static int ident(PGconn *conn, const char *name, char *buf, size_t size, char **err)
{
    char *q = PQescapeIdentifier(conn, name, strlen(name));
    if (!q)
        return errmsg_set(err, -EIO, "cannot quote an identifier: %.200s", PQerrorMessage(conn));
    int rc = 0;
    if ((size_t)snprintf(buf, size, "%s", q) >= size)
        rc = errmsg_set(err, -EINVAL, "an identifier is too long");
    PQfreemem(q);
    return rc;
}

static int one_param_query(PGconn *conn, const char *sql, const char *p, PGresult **out,
                           char **err)
{
    const char *params[1] = {p};
    *out = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(*out) != PGRES_TUPLES_OK) {
        int rc = errmsg_set(err, -EIO, "SQL failed: %.200s", PQerrorMessage(conn));
        PQclear(*out);
        *out = NULL;
        return rc;
    }
    return 0;
}

/* The predefined roles Charmed PostgreSQL 16 hands out, as groups of PostgreSQL's own. */
static const struct {
    unsigned flag;
    const char *name;
    const char *grants;
} charmed[] = {
    {CLIENT_ROLE_CHARMED_STATS, "charmed_stats", "GRANT pg_monitor TO charmed_stats"},
    {CLIENT_ROLE_CHARMED_READ, "charmed_read", "GRANT pg_read_all_data TO charmed_read"},
    {CLIENT_ROLE_CHARMED_DML, "charmed_dml",
     "GRANT pg_read_all_data, pg_write_all_data TO charmed_dml"},
    {CLIENT_ROLE_CHARMED_ADMIN, "charmed_admin",
     "GRANT pg_read_all_data, pg_write_all_data, pg_monitor, pg_signal_backend TO "
     "charmed_admin"},
};

/* In database db: the user may use and create in schema public, and has every privilege on
 * what is there (a relation re-added later finds its data). */
static int grant_in_database(const char *db, const char *user, char **err)
{
    PGconn *c = NULL;
    if (db_connect_to(PG_SOCKET_DIR, PG_PORT, db, &c, err) < 0)
        return -1;
    char u[160];
    int rc = ident(c, user, u, sizeof u, err);
    if (rc == 0)
        rc = exec_fmt(c, err, "GRANT ALL ON SCHEMA public TO %s", u);
    if (rc == 0)
        rc = exec_fmt(c, err, "GRANT ALL ON ALL TABLES IN SCHEMA public TO %s", u);
    if (rc == 0)
        rc = exec_fmt(c, err, "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO %s", u);
    db_close(c);
    return rc;
}

static int grant_database(PGconn *conn, const char *db, const char *user, char **err)
{
    char d[160], u[160];
    if (ident(conn, db, d, sizeof d, err) < 0 || ident(conn, user, u, sizeof u, err) < 0)
        return -1;
    if (exec_fmt(conn, err, "REVOKE ALL ON DATABASE %s FROM PUBLIC", d) < 0 ||
        exec_fmt(conn, err, "GRANT ALL ON DATABASE %s TO %s", d, u) < 0 ||
        /* the metrics exporter (role monitoring, pg_monitor) visits every database */
        exec_fmt(conn, err, "GRANT CONNECT ON DATABASE %s TO monitoring", d) < 0)
        return -1;
    return grant_in_database(db, user, err);
}

static int apply_entry(PGconn *conn, const struct client_entry *e, const char *pw, char **err)
{
    char attrs[160];
    snprintf(attrs, sizeof attrs, "LOGIN INHERIT NOREPLICATION NOBYPASSRLS %s %s %s",
             e->roles & CLIENT_ROLE_SUPERUSER ? "SUPERUSER" : "NOSUPERUSER",
             e->roles & CLIENT_ROLE_CREATEDB ? "CREATEDB" : "NOCREATEDB",
             e->roles & CLIENT_ROLE_CREATEROLE ? "CREATEROLE" : "NOCREATEROLE");
    if (db_ensure_role(conn, e->user, attrs, err) < 0)
        return -1;
    char *verifier = NULL;
    if (db_role_verifier(conn, e->user, &verifier, err) < 0)
        return -1;
    bool match = false;
    char *why = NULL;
    if (verifier && scram_verify(verifier, pw, &match, &why) < 0)
        match = false;
    free(why);
    free(verifier);
    if (!match) {
        if (db_set_password(conn, e->user, pw, err) < 0)
            return -1;
        log_info("role %s: password set (SCRAM-SHA-256)", e->user);
    }
    char u[160];
    if (ident(conn, e->user, u, sizeof u, err) < 0)
        return -1;
    for (size_t k = 0; k < sizeof charmed / sizeof *charmed; k++) {
        if (!(e->roles & charmed[k].flag))
            continue;
        if (db_ensure_role(conn, charmed[k].name, "NOLOGIN", err) < 0 ||
            db_exec(conn, charmed[k].grants, err) < 0 ||
            exec_fmt(conn, err, "GRANT %s TO %s", charmed[k].name, u) < 0)
            return -1;
    }
    if (!e->prefix) {
        PGresult *r = NULL;
        if (one_param_query(conn, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
                            e->database, &r, err) < 0)
            return -1;
        bool exists = PQntuples(r) > 0;
        PQclear(r);
        if (!exists) {
            char d[160];
            if (ident(conn, e->database, d, sizeof d, err) < 0 ||
                exec_fmt(conn, err, "CREATE DATABASE %s", d) < 0)
                return -1;
            log_info("database %s created for %s", e->database, e->user);
        }
        return grant_database(conn, e->database, e->user, err);
    }
    PGresult *r = NULL;
    if (one_param_query(conn, "SELECT datname FROM pg_catalog.pg_database WHERE NOT "
                              "datistemplate AND datallowconn AND left(datname, length($1)) = "
                              "$1 ORDER BY 1", e->database, &r, err) < 0)
        return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        rc = grant_database(conn, PQgetvalue(r, i, 0), e->user, err);
    PQclear(r);
    return rc;
}

/* Drop a client user of a relation that is gone: no new sessions, the current ones ended,
 * its objects in every database reassigned to postgres (a relation user's data stays; the
 * auth user's function schema goes), its grants revoked, then the role. */
static int drop_user(PGconn *conn, const char *role, char **err)
{
    char r[160];
    if (ident(conn, role, r, sizeof r, err) < 0)
        return -1;
    bool auth = strncmp(role, "pgbouncer_auth_", 15) == 0;
    if (exec_fmt(conn, err, "ALTER ROLE %s NOLOGIN", r) < 0)
        return -1;
    PGresult *t = NULL;
    if (one_param_query(conn, "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                              "WHERE usename = $1", role, &t, err) < 0)
        return -1;
    PQclear(t);
    PGresult *dbs = PQexec(conn, "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn "
                                 "ORDER BY 1");
    if (PQresultStatus(dbs) != PGRES_TUPLES_OK) {
        PQclear(dbs);
        return errmsg_set(err, -EIO, "cannot list the databases: %.200s", PQerrorMessage(conn));
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(dbs); i++) {
        PGconn *c = NULL;
        if (db_connect_to(PG_SOCKET_DIR, PG_PORT, PQgetvalue(dbs, i, 0), &c, err) < 0) {
            rc = -1;
            break;
        }
        if (!auth)
            rc = exec_fmt(c, err, "REASSIGN OWNED BY %s TO postgres", r);
        if (rc == 0)
            rc = exec_fmt(c, err, "DROP OWNED BY %s", r);
        db_close(c);
    }
    PQclear(dbs);
    if (rc == 0)
        rc = exec_fmt(conn, err, "DROP ROLE %s", r);
    if (rc == 0)
        log_info("role %s dropped (its relation is gone)", role);
    return rc;
}

static int apply_job(PGconn *conn, void *arg, char **err)
{
    const struct apply_job *job = arg;
    const struct client_set *set = job->set;
    int failed = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (!job->pw[i])
            continue;
        char *why = NULL;
        if (apply_entry(conn, &set->e[i], job->pw[i], &why) < 0) {
            log_error("relation %d (%s): %s", set->e[i].id, set->e[i].user, ERRMSG(why));
            failed++;
        }
        free(why);
    }
    PGresult *r = PQexec(conn, "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname ~ "
                               "'^(relation-|pgbouncer_auth_relation_)[0-9]+$' ORDER BY 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return errmsg_set(err, -EIO, "cannot list the client users: %.200s",
                          PQerrorMessage(conn));
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *role = PQgetvalue(r, i, 0);
        const char *digits = role + strlen(role);
        while (digits > role && digits[-1] >= '0' && digits[-1] <= '9')
            digits--;
        int id = parse_id(digits); /* the query matched ...[0-9]+$ */
        if (find(set, id))
            continue;
        char *why = NULL;
        if (drop_user(conn, role, &why) < 0) {
            log_error("cannot drop %s: %s", role, ERRMSG(why));
            failed++;
        }
        free(why);
    }
    PQclear(r);
    if (failed)
        return errmsg_set(err, -1, "%d client user(s) not converged (see the log)", failed);
    return 0;
}

/* What this agent last did, in memory only (a restarted agent does it again). */
static struct {
    bool ok;
    char digest[PEERS_DIGEST_MAX];
    uint64_t generation;
} applied;

static int apply_roles(const struct hook_event *ev, struct clients_view *cv, char **err)
{
    struct apply_job job = {.set = &cv->set};
    bool complete = true;
    for (size_t i = 0; i < cv->set.n; i++) {
        json_t *content = NULL;
        char *why = NULL;
        if (hooktool_secret_get(ev, cv->set.e[i].secret, NULL, &content, &why) == 0) {
            const char *pw = field(content, "password");
            if (pw && password_check_policy(pw, strlen(pw), NULL) == 0)
                job.pw[i] = password_dup(pw, strlen(pw));
        } else {
            log_warning("relation %d: cannot read its user secret: %s", cv->set.e[i].id,
                        ERRMSG(why));
        }
        free(why);
        json_decref(content);
        complete = complete && job.pw[i];
    }
    int rc = sqlworker_run(PG_SOCKET_DIR, PG_PORT, apply_job, &job, 0, err);
    for (size_t i = 0; i < cv->set.n; i++)
        password_free(job.pw[i]);
    if (rc == 0 && !complete)
        rc = errmsg_set(err, -1, "a client user's password could not be read");
    return rc;
}

int clients_converge_unit(const struct hook_event *ev, const struct peers_view *pv,
                          struct clients_view *cv, bool hba_loaded, bool primary,
                          uint64_t generation, char **err)
{
    if (!cv->known || !pv->related)
        return 0;
    if (hba_loaded && strcmp(pv->my_clients_hba, cv->digest) != 0 &&
        peers_set(ev, pv, false, PEERS_KEY_CLIENTS_HBA, cv->digest, err) < 0)
        return -1;
    cv->hba_done = hba_loaded;
    if (!primary) {
        applied.ok = false;
        return 0;
    }
    if (!applied.ok || strcmp(applied.digest, cv->digest) != 0 ||
        applied.generation != generation) {
        applied.ok = false;
        char *why = NULL;
        if (apply_roles(ev, cv, &why) < 0) {
            /* not a hook failure: the next pass tries again; clients wait */
            log_error("client users: %s", ERRMSG(why));
            free(why);
            ha_poke_later(10000);
            return 0;
        }
        applied.ok = true;
        snprintf(applied.digest, sizeof applied.digest, "%s", cv->digest);
        applied.generation = generation;
    }
    if (strcmp(pv->my_clients_roles, cv->digest) != 0 &&
        peers_set(ev, pv, false, PEERS_KEY_CLIENTS_ROLES, cv->digest, err) < 0)
        return -1;
    cv->roles_done = true;
    return 0;
}

/* ---- step 4: what each client is told ------------------------------------------------ */

/* Every unit admits the list's users and the primary created them. */
static bool converged(const struct peers_view *pv, const struct clients_view *cv,
                      const struct ha_snapshot *snap)
{
    if (!cv->hba_done || !snap->leader[0])
        return false;
    bool roles = strcmp(snap->leader, pv->me) == 0 && cv->roles_done;
    for (size_t i = 0; i < pv->n; i++) {
        if (strcmp(pv->units[i].clients_hba, cv->digest) != 0)
            return false;
        if (strcmp(pv->units[i].member, snap->leader) == 0)
            roles = strcmp(pv->units[i].clients_roles, cv->digest) == 0;
    }
    return roles;
}

/* Percent-encoding for a URI's user and password (RFC 3986 unreserved kept). */
static void uri_escape(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s && n + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c)) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

/* Set key to value in o (a copy), or remove it (value NULL). */
static int put(json_t *o, const char *key, const char *value)
{
    if (!value)
        return json_object_del(o, key), 0;
    return json_object_set_new(o, key, json_string(value));
}

/* secret-set when content differs from what the secret holds (cur, may be NULL). */
static int secret_update(const struct hook_event *ev, const char *uri, const json_t *cur,
                         const struct secret_field *f, size_t n, bool *changed, char **err)
{
    bool same = json_is_object(cur) && json_object_size(cur) == n;
    for (size_t i = 0; same && i < n; i++) {
        const char *v = field(cur, f[i].key);
        same = v && strcmp(v, f[i].value) == 0;
    }
    *changed = !same;
    return same ? 0 : hooktool_secret_set(ev, uri, f, n, err);
}

struct published {
    char endpoints[PEERS_ADDR_MAX + 8];               /* primary:5432 */
    char ro[(PEERS_MAX + 1) * (PEERS_ADDR_MAX + 8)];  /* h1:5432,h2:5432 (the URI hosts too) */
    char version[32];
};

static int prefix_databases(PGconn *conn, const char *prefix, char **out, char **err)
{
    *out = NULL;
    PGresult *r = NULL;
    if (one_param_query(conn, "SELECT COALESCE(string_agg(datname, ',' ORDER BY datname), '') "
                              "FROM pg_catalog.pg_database WHERE NOT datistemplate AND "
                              "left(datname, length($1)) = $1", prefix, &r, err) < 0)
        return -1;
    *out = strdup(PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return *out ? 0 : errmsg_set(err, -ENOMEM, "out of memory");
}

/* A relation this unit's relation-created hook has not run for yet refuses relation-get
 * and relation-set with "permission denied" (juju.md 3.3, 6): not an error, the next pass
 * (that relation's own hooks) publishes. Returns 0. */
static int not_in_scope_yet(const char *rel, struct clients_view *cv, char **err)
{
    log_info("%s: not in this unit's scope yet; publishing in a later hook", rel);
    free(*err);
    *err = NULL;
    cv->waiting = true;
    return 0;
}

static int publish_one(const struct hook_event *ev, const struct peers_view *pv,
                       struct clients_view *cv, size_t k, const struct published *p,
                       const char *tls_ca, PGconn *conn, bool converged_now, char **err)
{
    const struct client_entry *e = &cv->set.e[k];
    const struct client_request *req = &cv->req[k];
    char rel[32];
    snprintf(rel, sizeof rel, CLIENTS_ENDPOINT ":%d", e->id);
    const char *own_argv[] = {"relation-get", "-r", rel, "--app", "-", pv->app, NULL};
    json_t *own = NULL, *user_content = NULL, *tls_content = NULL, *want = NULL, *delta = NULL;
    char *prefixes = NULL, *uris = NULL, *ro_uris = NULL;
    int rc = -1;
    int grc = hooktool_json(ev, own_argv, &own, err);
    if (grc < 0) {
        if (grc == -EACCES)
            rc = not_in_scope_yet(rel, cv, err);
        goto out;
    }
    if (!json_is_object(own)) {
        json_decref(own);
        own = json_object();
    }
    bool published = field(own, "secret-user") || field(own, "username");
    if (!published && !converged_now) {
        cv->waiting = true;
        rc = 0;
        goto out;
    }
    if (hooktool_secret_get(ev, e->secret, NULL, &user_content, err) < 0)
        goto out;
    const char *pw = field(user_content, "password");
    if (!pw || password_check_policy(pw, strlen(pw), NULL) < 0) {
        rc = errmsg_set(err, -EINVAL, "relation %d: the user secret holds no usable password",
                        e->id);
        goto out;
    }
    char db[CLIENT_DB_MAX + 2];
    snprintf(db, sizeof db, "%s%s", e->database, e->prefix ? "*" : "");
    char upw[3 * PASSWORD_MAX_LEN + 1];
    uri_escape(pw, upw, sizeof upw);
    if (!e->prefix &&
        (asprintf(&uris, "postgresql://%s:%s@%s/%s", e->user, upw, p->endpoints, e->database) < 0 ||
         asprintf(&ro_uris, "postgresql://%s:%s@%s/%s", e->user, upw, p->ro,
                  e->database) < 0)) {
        rc = errmsg_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    sodium_memzero(upw, sizeof upw);
    const unsigned user_group = CLIENT_SECRET_USERNAME | CLIENT_SECRET_PASSWORD |
                                CLIENT_SECRET_URIS | CLIENT_SECRET_READ_ONLY_URIS;
    bool user_secret = req->secrets_requested && (req->secrets & user_group);
    bool tls_secret = req->secrets_requested &&
                      (req->secrets & (CLIENT_SECRET_TLS | CLIENT_SECRET_TLS_CA));

    want = json_object();
    if (!want)
        goto oom;
    if (put(want, "database", db) < 0 || put(want, "endpoints", p->endpoints) < 0 ||
        put(want, "read-only-endpoints", p->ro) < 0 ||
        put(want, "version", p->version[0] ? p->version : field(own, "version")) < 0)
        goto oom;
    if (e->prefix) {
        if (!conn)
            put(want, "prefix-databases", field(own, "prefix-databases"));
        else if (prefix_databases(conn, e->database, &prefixes, err) < 0 ||
                 put(want, "prefix-databases", prefixes) < 0)
            goto out;
    }
    /* user group: in the secret when asked, else plain (read-only-uris only when asked) */
    struct secret_field uf[4] = {{"username", e->user}, {"password", pw}};
    size_t nuf = 2;
    if (user_secret) {
        if (uris && (req->secrets & CLIENT_SECRET_URIS))
            uf[nuf++] = (struct secret_field){"uris", uris};
        if (ro_uris && (req->secrets & CLIENT_SECRET_READ_ONLY_URIS))
            uf[nuf++] = (struct secret_field){"read-only-uris", ro_uris};
        if (put(want, "secret-user", e->secret) < 0)
            goto oom;
    } else if (put(want, "username", e->user) < 0 || put(want, "password", pw) < 0 ||
               put(want, "uris", uris) < 0) {
        goto oom;
    }
    bool changed = false;
    if (secret_update(ev, e->secret, user_content, uf, nuf, &changed, err) < 0)
        goto out;
    if (changed)
        log_info("relation %d: its user secret has a new revision", e->id);
    /* tls group */
    const char *tls_value = "True";
    if (tls_secret) {
        char label[64], uri[CLIENTS_URI_MAX];
        tls_label(e->id, label, sizeof label);
        const struct secret_field tf[] = {{"tls", tls_value}, {"tls-ca", tls_ca}};
        if (hooktool_secret_uri(ev, label, uri, sizeof uri) == 0) {
            if (hooktool_secret_get(ev, uri, NULL, &tls_content, err) < 0 ||
                secret_update(ev, uri, tls_content, tf, 2, &changed, err) < 0)
                goto out;
            const char *cur = field(own, "secret-tls");
            if (put(want, "secret-tls", cur && same_secret(cur, uri) ? cur : uri) < 0)
                goto oom;
        } else {
            char *new_uri = NULL;
            if (hooktool_secret_add(ev, "application", label, tf, 2, &new_uri, err) < 0)
                goto out;
            int prc = put(want, "secret-tls", new_uri);
            free(new_uri);
            if (prc < 0)
                goto oom;
        }
    } else if (put(want, "tls", tls_value) < 0 || put(want, "tls-ca", tls_ca) < 0) {
        goto oom;
    }
    /* the keys that changed, and the managed keys no longer wanted */
    static const char *const managed[] = {
        "database", "endpoints", "read-only-endpoints", "version", "prefix-databases",
        "secret-user", "username", "password", "uris", "read-only-uris", "secret-tls", "tls",
        "tls-ca", NULL};
    delta = json_object();
    if (!delta)
        goto oom;
    for (size_t i = 0; managed[i]; i++) {
        const char *w = field(want, managed[i]);
        const char *h = field(own, managed[i]);
        if (w && (!h || strcmp(w, h) != 0)) {
            if (put(delta, managed[i], w) < 0)
                goto oom;
        } else if (!w && h && put(delta, managed[i], "") < 0) {
            goto oom;
        }
    }
    if (json_object_size(delta) > 0) {
        int src = relation_set_json(ev, rel, true, delta, err);
        if (src < 0) {
            if (src == -EACCES)
                rc = not_in_scope_yet(rel, cv, err);
            goto out;
        }
        const char *keys[] = {"secret-user", "secret-tls"};
        for (size_t i = 0; i < 2; i++) {
            const char *uri = field(delta, keys[i]);
            if (!uri || !*uri)
                continue;
            const char *argv[] = {"secret-grant", uri, "-r", rel, NULL};
            if (hooktool_check(ev, argv, err) < 0)
                goto out;
        }
        log_info("%s (%s): published %s%s (endpoints %s, read-only %s)", rel, cv->remote[k],
                 published ? "an update" : "the credentials",
                 published ? "" : (user_secret ? " in secret-user" : " in the databag"),
                 p->endpoints, p->ro);
    }
    rc = 0;
    goto out;
oom:
    rc = errmsg_set(err, -ENOMEM, "out of memory");
out:
    if (uris) {
        sodium_memzero(uris, strlen(uris));
        free(uris);
    }
    if (ro_uris) {
        sodium_memzero(ro_uris, strlen(ro_uris));
        free(ro_uris);
    }
    free(prefixes);
    json_decref(own);
    json_decref(user_content);
    json_decref(tls_content);
    json_decref(want);
    json_decref(delta);
    return rc;
}

int clients_publish(const struct hook_event *ev, const struct peers_view *pv,
                    struct clients_view *cv, const struct ha_snapshot *snap, const char *tls_ca,
                    PGconn *conn, char **err)
{
    if (!cv->known || cv->set.n == 0)
        return 0;
    if (!snap->leader[0] || !snap->leader_address[0]) {
        cv->waiting = true; /* between primaries: the endpoints stay as they were */
        return 0;
    }
    struct published p = {0};
    bool v6 = strchr(snap->leader_address, ':') != NULL;
    snprintf(p.endpoints, sizeof p.endpoints, "%s%s%s:%d", v6 ? "[" : "", snap->leader_address,
             v6 ? "]" : "", PG_CLIENT_PORT);
    size_t len = 0;
    for (int i = 0; i < snap->n_replicas; i++) {
        bool r6 = strchr(snap->replicas[i], ':') != NULL;
        len += (size_t)snprintf(p.ro + len, sizeof p.ro - len, "%s%s%s%s:%d", len ? "," : "",
                                r6 ? "[" : "", snap->replicas[i], r6 ? "]" : "", PG_CLIENT_PORT);
        if (len >= sizeof p.ro)
            break;
    }
    if (!p.ro[0])
        snprintf(p.ro, sizeof p.ro, "%s", p.endpoints);
    if (conn) {
        char *why = NULL;
        if (db_server_version(conn, p.version, sizeof p.version, &why) < 0)
            log_warning("client relations: no version: %s", ERRMSG(why));
        free(why);
    }
    bool ok = converged(pv, cv, snap);
    for (size_t k = 0; k < cv->set.n; k++) {
        if (!cv->have_req[k])
            continue;
        if (publish_one(ev, pv, cv, k, &p, tls_ca ? tls_ca : "", conn, ok, err) < 0)
            return -1;
    }
    if (cv->waiting)
        ha_poke_later(3000); /* the units' reports come with their hooks; look again */
    return 0;
}
