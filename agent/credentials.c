/* The system users' passwords (credentials.h): the internal app secret, the operator's
 * `system-users` secret, and their SCRAM verifiers in PostgreSQL. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "credentials.h"

#include "db.h"
#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "password.h"
#include "proc.h"
#include "proto.h"
#include "settings.h"
#include "sqlworker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const system_users[N_SYSTEM_USERS] = {"operator", "replication", "rewind",
                                                   "monitoring"};

/* Role attributes and grants: fixed SQL, no input. */
static const char *const role_attributes[N_SYSTEM_USERS] = {
    "LOGIN SUPERUSER",
    "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE",
    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION",
    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION",
};
static const char *const role_grants[N_SYSTEM_USERS] = {
    NULL,
    NULL,
    /* what pg_rewind needs, and nothing more */
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO rewind;"
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO rewind;"
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO rewind;"
    "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) "
    "TO rewind",
    "GRANT pg_monitor TO monitoring",
};

int creds_user_index(const char *name)
{
    for (int i = 0; i < N_SYSTEM_USERS; i++)
        if (name && strcmp(name, system_users[i]) == 0)
            return i;
    return -1;
}

const char *creds_user_list(void)
{
    return "operator, replication, rewind, monitoring";
}

void creds_clear(struct creds *c)
{
    for (int i = 0; i < N_SYSTEM_USERS; i++) {
        password_free(c->pw[i]);
        c->pw[i] = NULL;
    }
}

bool creds_complete(const struct creds *c)
{
    for (int i = 0; i < N_SYSTEM_USERS; i++)
        if (!c->pw[i])
            return false;
    return true;
}

int creds_set(struct creds *c, int i, const char *pw)
{
    char *copy = password_dup(pw, strlen(pw));
    if (!copy)
        return -ENOMEM;
    password_free(c->pw[i]);
    c->pw[i] = copy;
    return 0;
}

int creds_from_internal(const json_t *content, struct creds *out, char **err)
{
    for (int i = 0; i < N_SYSTEM_USERS; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s-password", system_users[i]);
        const json_t *v = json_object_get(content, key);
        if (!v)
            continue;
        if (!json_is_string(v) || password_check_policy(json_string_value(v),
                                                        json_string_length(v), NULL) < 0)
            return errmsg_set(err, -EINVAL,
                              "the internal secret's %s is not a valid password", key);
        if (creds_set(out, i, json_string_value(v)) < 0)
            return errmsg_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

int creds_from_user_secret(const json_t *content, struct creds *out, char **err)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)content, key, v) {
        char name[64];
        snprintf(name, sizeof name, "%s", key);
        size_t n = strlen(name);
        if (n > 9 && strcmp(name + n - 9, "-password") == 0)
            name[n - 9] = '\0';
        int i = creds_user_index(name);
        if (i < 0)
            return errmsg_set(err, -EINVAL, "key %.64s is not a system user (use %s)", key,
                              creds_user_list());
        if (!json_is_string(v))
            return errmsg_set(err, -EINVAL, "key %s: the value must be a string", key);
        char *why = NULL;
        if (password_check_policy(json_string_value(v), json_string_length(v), &why) < 0) {
            errmsg_format(err, "key %s: %s", key, ERRMSG(why));
            free(why);
            return -EINVAL;
        }
        if (creds_set(out, i, json_string_value(v)) < 0)
            return errmsg_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

int creds_peer_relation(const struct hook_event *ev, char *buf, size_t size, char **err)
{
    buf[0] = '\0';
    const char *argv[] = {"relation-ids", PEER_ENDPOINT, NULL};
    json_t *ids = NULL;
    if (hooktool_json(ev, argv, &ids, err) < 0)
        return -1;
    if (json_is_array(ids) && json_array_size(ids) > 0 && json_is_string(json_array_get(ids, 0)))
        snprintf(buf, size, "%s", json_string_value(json_array_get(ids, 0)));
    json_decref(ids);
    return 0;
}

/* "postgresql" of "postgresql/0" into buf. */
static void app_name(const struct hook_event *ev, char *buf, size_t size)
{
    snprintf(buf, size, "%.*s", (int)strcspn(ev->unit, "/"), ev->unit);
}

static void secret_label(const struct hook_event *ev, char *buf, size_t size)
{
    char app[128];
    app_name(ev, app, sizeof app);
    snprintf(buf, size, PEER_ENDPOINT ".%s.app", app);
}

/* The URI kept in the peer app databag, malloc'd into *uri, NULL when there is none. */
static int peer_secret_uri(const struct hook_event *ev, const char *peer_rel, char **uri,
                           char **err)
{
    *uri = NULL;
    if (!peer_rel || !*peer_rel)
        return 0;
    char app[128];
    app_name(ev, app, sizeof app);
    const char *argv[] = {"relation-get", "-r", peer_rel, "--app", INTERNAL_SECRET_KEY, app,
                          NULL};
    json_t *v = NULL;
    char *why = NULL;
    if (hooktool_json(ev, argv, &v, &why) < 0) {
        /* Before relation-created (install) the unit is not in the relation's scope yet:
         * no databag to read; the label is the way then. */
        log_debug("peer databag: %s", ERRMSG(why));
        free(why);
        return 0;
    }
    (void)err;
    /* Relation data is outside input: only a well-formed secret URI goes on. */
    char id[SETTINGS_SECRET_ID_LEN + 1];
    if (json_is_string(v) && settings_secret_id(json_string_value(v), id) == 0)
        *uri = strdup(json_string_value(v));
    else if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
        log_warning("peer databag: %s is not a secret URI: ignored", INTERNAL_SECRET_KEY);
    json_decref(v);
    return 0;
}

int creds_read_internal(const struct hook_event *ev, const char *peer_rel, struct creds *out,
                        char **uri, char **err)
{
    if (uri)
        *uri = NULL;
    char *known = NULL;
    if (peer_secret_uri(ev, peer_rel, &known, err) < 0)
        return -1;
    char label[256];
    secret_label(ev, label, sizeof label);
    json_t *content = NULL;
    /* By URI when the databag has one (label lookups of app secrets have regressed on
     * non-leaders before), else by the owner label. */
    int rc = hooktool_secret_get(ev, known, known ? NULL : label, &content, err);
    if (rc == -ENOENT && known) {
        free(known);
        known = NULL;
        rc = hooktool_secret_get(ev, NULL, label, &content, err);
    }
    if (rc < 0) {
        free(known);
        return rc;
    }
    rc = creds_from_internal(content, out, err);
    json_decref(content);
    if (rc == 0 && uri && !known) {
        /* Found by label: ask for its URI (owners only: the leader). */
        char found[128];
        if (hooktool_secret_uri(ev, label, found, sizeof found) == 0)
            known = strdup(found);
    }
    if (uri) {
        *uri = known;
        known = NULL;
    }
    free(known);
    return rc;
}

static bool same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

int creds_write_internal(const struct hook_event *ev, const char *peer_rel, const char *uri,
                         const struct creds *have, const struct creds *want, char **err)
{
    bool changed = !uri;
    for (int i = 0; i < N_SYSTEM_USERS; i++)
        if (!same(have->pw[i], want->pw[i]))
            changed = true;
    struct secret_field fields[N_SYSTEM_USERS];
    char keys[N_SYSTEM_USERS][64];
    size_t n = 0;
    for (int i = 0; i < N_SYSTEM_USERS; i++) {
        if (!want->pw[i])
            continue;
        snprintf(keys[n], sizeof keys[n], "%s-password", system_users[i]);
        fields[n] = (struct secret_field){.key = keys[n], .value = want->pw[i]};
        n++;
    }
    char *new_uri = NULL;
    if (changed && !uri) {
        char label[256];
        secret_label(ev, label, sizeof label);
        if (hooktool_secret_add(ev, "application", label, fields, n, &new_uri, err) < 0)
            return -1;
        log_info("created the internal secret %s (system users' passwords)", new_uri);
        uri = new_uri;
    } else if (changed) {
        if (hooktool_secret_set(ev, uri, fields, n, err) < 0)
            return -1;
        log_info("the internal secret has a new revision (a system user's password changed)");
    }
    int rc = 0;
    if (peer_rel && *peer_rel) {
        char *cur = NULL;
        if (peer_secret_uri(ev, peer_rel, &cur, err) < 0) {
            rc = -1;
        } else if (!same(cur, uri)) {
            char *kv = NULL;
            if (asprintf(&kv, INTERNAL_SECRET_KEY "=%s", uri) < 0) {
                rc = errmsg_set(err, -ENOMEM, "out of memory");
            } else {
                const char *argv[] = {"relation-set", "-r", peer_rel, "--app", kv, NULL};
                char *why = NULL;
                if (hooktool_check(ev, argv, &why) < 0)
                    log_debug("peer databag not written yet: %s", ERRMSG(why));
                free(why);
                free(kv);
            }
        }
        free(cur);
    }
    free(new_uri);
    return rc;
}

int creds_apply(PGconn *conn, const struct creds *c, char **err)
{
    int changed = 0;
    for (int i = 0; i < N_SYSTEM_USERS; i++) {
        if (db_ensure_role(conn, system_users[i], role_attributes[i], err) < 0)
            return -1;
        if (role_grants[i] && db_exec(conn, role_grants[i], err) < 0)
            return -1;
        if (!c->pw[i])
            continue;
        char *verifier = NULL;
        if (db_role_verifier(conn, system_users[i], &verifier, err) < 0)
            return -1;
        bool match = false;
        char *why = NULL;
        if (verifier && scram_verify(verifier, c->pw[i], &match, &why) < 0) {
            log_info("role %s: the stored password is not a SCRAM verifier (%s): replacing it",
                     system_users[i], ERRMSG(why));
            match = false;
        }
        free(why);
        free(verifier);
        if (match)
            continue;
        if (db_set_password(conn, system_users[i], c->pw[i], err) < 0)
            return -1;
        log_info("role %s: password set (SCRAM-SHA-256)", system_users[i]);
        changed++;
    }
    return changed;
}

/* creds_apply as a SQL worker job (sqlworker.h). */
static int apply_job(PGconn *conn, void *arg, char **err)
{
    return creds_apply(conn, arg, err);
}

int creds_apply_isolated(const char *socket_dir, int port, const struct creds *c, char **err)
{
    return sqlworker_run(socket_dir, port, apply_job, (void *)c, N_SYSTEM_USERS, err);
}
