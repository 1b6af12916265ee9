/* The charm's actions (actions.h): get-password, set-password, get-primary, cluster-status,
 * promote-to-primary. Parameters
 * were validated against actions.yaml by Juju; they are checked again here (the edge). */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "actions.h"

#include "credentials.h"
#include "ha.h"
#include "db.h"
#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "password.h"
#include "pki.h"
#include "tls.h"
#include "reconcile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* action-fail -- message; the action fails, the hook process still exits 0. */
static int fail(const struct hook_event *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(const struct hook_event *ev, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_warning("action %s failed: %s", ev->name, msg);
    const char *argv[] = {"action-fail", "--", msg, NULL};
    char *err = NULL;
    int rc = hooktool_check(ev, argv, &err);
    if (rc < 0)
        log_error("%s", ERRMSG(err));
    free(err);
    return rc < 0 ? 1 : 0;
}

/* action-get --format=json: the params object (owned by the caller). */
static int params(const struct hook_event *ev, json_t **out, char **err)
{
    const char *argv[] = {"action-get", NULL};
    if (hooktool_json(ev, argv, out, err) < 0)
        return -1;
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return errmsg_set(err, -EINVAL, "action-get answered something other than an object");
    }
    return 0;
}

/* The action's parameters, or the action failed with the reason (returns -1). */
static int params_or_fail(const struct hook_event *ev, json_t **p)
{
    char *err = NULL;
    if (params(ev, p, &err) == 0)
        return 0;
    fail(ev, "%s", ERRMSG(err));
    free(err);
    return -1;
}

/* username parameter: a system user, else a failure message naming the allowed ones. */
static int username_param(const struct hook_event *ev, const json_t *p, int *index)
{
    const json_t *u = json_object_get(p, "username");
    const char *name = json_is_string(u) ? json_string_value(u) : "operator";
    *index = creds_user_index(name);
    if (*index < 0) {
        fail(ev, "username must be one of the system users: %s (not %.64s)", creds_user_list(),
             name);
        return -1;
    }
    return 0;
}

static int current_settings(const struct hook_event *ev, struct pg_settings *s, char **err)
{
    struct model_facts f;
    if (model_facts_read(ev, &f, err) < 0)
        return -1;
    int rc = settings_parse(f.config, s, err);
    model_facts_free(&f);
    return rc;
}

static int get_password(const struct hook_event *ev)
{
    json_t *p = NULL;
    char *err = NULL;
    int i, code = 0;
    struct creds_view v = {0};
    struct pg_settings s;
    if (params(ev, &p, &err) < 0 || username_param(ev, p, &i) < 0)
        goto out;
    bool have_settings = current_settings(ev, &s, &err) == 0;
    free(err);
    err = NULL;
    char *why = NULL;
    int rc = reconcile_read_creds(ev, have_settings ? &s : NULL, &v, &why, &err);
    if (why) {
        code = fail(ev, "%s", why);
        free(why);
        goto out;
    }
    if (rc == -ENOENT || (rc == 0 && !v.want.pw[i])) {
        code = fail(ev, "the passwords do not exist yet: the leader creates them once it has "
                        "set up the database");
        goto out;
    }
    if (rc < 0) {
        code = fail(ev, "%s", ERRMSG(err));
        goto out;
    }
    /* action-set takes key=value arguments only: the password is on this short-lived
     * tool's command line for the few milliseconds it runs (no file or stdin form). */
    char *kv = NULL;
    if (asprintf(&kv, "password=%s", v.want.pw[i]) < 0) {
        code = 1;
        goto out;
    }
    const char *argv[] = {"action-set", kv, NULL};
    if (hooktool_check(ev, argv, &err) < 0) {
        log_error("%s", ERRMSG(err));
        code = 1;
    }
    explicit_bzero(kv, strlen(kv));
    free(kv);
out:
    if (err && code)
        log_error("%s", err);
    creds_view_clear(&v);
    json_decref(p);
    free(err);
    return code;
}

static int set_password(const struct hook_event *ev)
{
    json_t *p = NULL;
    char *err = NULL, *pw = NULL;
    int i, code = 0;
    struct creds_view v = {0};
    struct pg_settings s;
    PGconn *conn = NULL;

    struct model_facts f;
    if (model_facts_read(ev, &f, &err) < 0) {
        code = fail(ev, "%s", ERRMSG(err));
        goto out;
    }
    bool leader = f.is_leader;
    int src = settings_parse(f.config, &s, NULL);
    model_facts_free(&f);
    if (!leader) {
        code = fail(ev, "set-password runs on the leader only: juju run <app>/leader "
                        "set-password ...");
        goto out;
    }
    if (params(ev, &p, &err) < 0 || username_param(ev, p, &i) < 0)
        goto out;
    const json_t *given = json_object_get(p, "password");
    if (given) {
        char *why = NULL;
        if (!json_is_string(given) || password_check_policy(json_string_value(given),
                                                            json_string_length(given),
                                                            &why) < 0) {
            code = fail(ev, "%s", why ? why : "password must be a string");
            free(why);
            goto out;
        }
        pw = password_dup(json_string_value(given), json_string_length(given));
    } else if (password_generate(&pw, &err) < 0) {
        code = fail(ev, "%s", ERRMSG(err));
        goto out;
    }
    if (!pw) {
        code = 1;
        goto out;
    }
    char *why = NULL;
    int rc = reconcile_read_creds(ev, src == 0 ? &s : NULL, &v, &why, &err);
    if (why) {
        code = fail(ev, "%s", why);
        free(why);
        goto out;
    }
    if (rc == -ENOENT) {
        code = fail(ev, "the passwords do not exist yet: try again once the unit is active");
        goto out;
    }
    if (rc < 0) {
        code = fail(ev, "%s", ERRMSG(err));
        goto out;
    }
    if (v.managed[i]) {
        code = fail(ev, "the %s password is managed by the system-users secret %s: change it "
                        "there (juju update-secret)",
                    system_users[i], s.system_users);
        goto out;
    }
    if (creds_set(&v.want, i, pw) < 0) {
        code = 1;
        goto out;
    }
    /* PostgreSQL first when this unit runs the primary: if it refuses, the secret still
     * holds the password it checks. Otherwise the primary's unit applies the new secret
     * revision in its secret-changed hook. */
    struct ha_snapshot snap;
    ha_snapshot_get(&snap);
    bool here = snap.role == HA_ROLE_PRIMARY;
    struct pg_install pg;
    if ((here && (reconcile_connect(&pg, &conn, &err) < 0 ||
                  creds_apply_isolated(PG_SOCKET_DIR, PG_PORT, &v.want, &err) < 0)) ||
        creds_write_internal(ev, v.peer, v.uri, &v.have, &v.want, &err) < 0) {
        code = fail(ev, "%s", ERRMSG(err));
        goto out;
    }
    log_info("set-password: the %s password was changed", system_users[i]);
    reconcile_invalidate();
out:
    db_close(conn);
    password_free(pw);
    creds_view_clear(&v);
    json_decref(p);
    free(err);
    return code;
}

/* "postgresql-1" -> "postgresql/1" (the last '-' separates the unit number). */
static void unit_of_member(const char *member, char *buf, size_t size)
{
    snprintf(buf, size, "%s", member);
    char *dash = strrchr(buf, '-');
    if (dash)
        *dash = '/';
}

static int set_result(const struct hook_event *ev, const char *key, const char *value)
{
    char *kv = NULL, *err = NULL;
    if (asprintf(&kv, "%s=%s", key, value) < 0)
        return 1;
    const char *argv[] = {"action-set", kv, NULL};
    int code = hooktool_check(ev, argv, &err) < 0 ? 1 : 0;
    if (code)
        log_error("%s", ERRMSG(err));
    free(kv);
    free(err);
    return code;
}

static int get_primary(const struct hook_event *ev)
{
    struct ha_snapshot snap;
    ha_snapshot_get(&snap);
    if (!snap.started || !snap.leader[0])
        return fail(ev, "no primary known: %s",
                    snap.problem[0] ? snap.problem : "the cluster has no leader right now");
    char unit[80];
    unit_of_member(snap.leader, unit, sizeof unit);
    return set_result(ev, "primary", unit);
}

static int cluster_status(const struct hook_event *ev)
{
    json_t *members = NULL;
    char *err = NULL;
    if (ha_cluster_json(&members, &err) < 0) {
        int code = fail(ev, "cannot read the cluster: %s", ERRMSG(err));
        free(err);
        return code;
    }
    struct ha_snapshot snap;
    ha_snapshot_get(&snap);
    char unit[80] = "";
    if (snap.leader[0])
        unit_of_member(snap.leader, unit, sizeof unit);
    char *text = json_dumps(members, JSON_COMPACT);
    json_decref(members);
    int code = text ? set_result(ev, "members", text) : 1;
    free(text);
    if (code == 0)
        code = set_result(ev, "primary", unit[0] ? unit : "none");
    return code;
}

static int promote_to_primary(const struct hook_event *ev)
{
    json_t *p = NULL;
    if (params_or_fail(ev, &p) < 0)
        return 1;
    const char *scope = json_string_value(json_object_get(p, "scope"));
    if (!scope || strcmp(scope, "unit") != 0) {
        json_decref(p);
        return fail(ev, "scope must be unit (this charm has no cross-cluster replication)");
    }
    json_decref(p);
    struct ha_snapshot snap;
    ha_snapshot_get(&snap);
    char me[80];
    snprintf(me, sizeof me, "%s", ev->unit);
    char *slash = strchr(me, '/');
    if (slash)
        *slash = '-';
    if (snap.role == HA_ROLE_PRIMARY)
        return fail(ev, "%s is already the primary", ev->unit);
    char *msg = NULL;
    int rc = ha_switchover(me, 60000, &msg);
    int code;
    if (rc == 0) {
        log_info("promote-to-primary: %s", ERRMSG(msg));
        code = set_result(ev, "result", ERRMSG(msg));
    } else if (msg && strstr(msg, "sync_standby")) {
        code = fail(ev, "Unit is not sync standby");
    } else {
        code = fail(ev, "Switchover failed or timed out: %s", ERRMSG(msg));
    }
    free(msg);
    return code;
}

static int force_promote(const struct hook_event *ev)
{
    char *msg = NULL;
    int rc = ha_force_promote(&msg);
    int code = rc == 0 ? set_result(ev, "result", ERRMSG(msg)) : fail(ev, "%s", ERRMSG(msg));
    free(msg);
    return code;
}

/* The CA a client needs for verify-full: the internal CA's certificate (public), as this
 * unit installed it. */
static int get_ca_certificate(const struct hook_event *ev)
{
    FILE *f = fopen(pki_agent.ca, "re");
    if (!f)
        return fail(ev, "this unit has no CA certificate yet (%s): the leader creates the "
                        "internal CA once the peer relation exists; try again shortly",
                    strerror(errno));
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    bool too_long = !feof(f);
    (void)fclose(f);
    buf[n] = '\0';
    if (too_long || !strstr(buf, "-----BEGIN CERTIFICATE-----"))
        return fail(ev, "%s does not hold one CA certificate", pki_agent.ca);
    return set_result(ev, "ca-certificate", buf);
}

static int set_tls_private_key(const struct hook_event *ev)
{
    json_t *p = NULL;
    char *err = NULL;
    if (params_or_fail(ev, &p) < 0)
        return 1;
    json_t *k = json_object_get(p, "private-key");
    int code = 0;
    struct pg_settings s;
    struct peers_view pv;
    if (k && !json_is_string(k)) {
        code = fail(ev, "private-key must be a string holding the key in PEM");
        goto out;
    }
    if (current_settings(ev, &s, &err) < 0) {
        code = fail(ev, "the configuration is not valid (%s): fix it first", ERRMSG(err));
        goto out;
    }
    if (peers_read(ev, &pv, &err) < 0) {
        code = fail(ev, "%s", ERRMSG(err));
        goto out;
    }
    bool published = false;
    if (tls_set_private_key(ev, &pv, &s, k ? json_string_value(k) : NULL, &published,
                            &err) < 0) {
        code = fail(ev, "the key was not set: %s", ERRMSG(err)); /* no key text in err */
        goto out;
    }
    code = set_result(ev, "result",
                      published ? "a new key is set and a new certificate request was "
                                  "published on " TLS_CLIENT_ENDPOINT
                                : "a new key is set; it is used once " TLS_CLIENT_ENDPOINT
                                  " is integrated");
out:
    if (json_is_string(k)) /* the PEM lived in this buffer: wipe it */
        explicit_bzero((char *)json_string_value(k), json_string_length(k));
    json_decref(p);
    free(err);
    return code;
}

int actions_run(const struct hook_event *ev)
{
    if (strcmp(ev->name, "set-tls-private-key") == 0)
        return set_tls_private_key(ev);
    if (strcmp(ev->name, "get-ca-certificate") == 0)
        return get_ca_certificate(ev);
    if (strcmp(ev->name, "get-password") == 0)
        return get_password(ev);
    if (strcmp(ev->name, "set-password") == 0)
        return set_password(ev);
    if (strcmp(ev->name, "get-primary") == 0)
        return get_primary(ev);
    if (strcmp(ev->name, "cluster-status") == 0)
        return cluster_status(ev);
    if (strcmp(ev->name, "promote-to-primary") == 0)
        return promote_to_primary(ev);
    if (strcmp(ev->name, "force-promote") == 0)
        return force_promote(ev);
    return fail(ev, "unknown action %.64s", ev->name);
}
