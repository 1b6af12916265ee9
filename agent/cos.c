/* The cos-agent provider (cos.h): the unit's `config` from the charm's bundle, with the
 * Juju topology, and its scrape jobs. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "cos.h"

#include "errmsg.h"
#include "exporter.h"
#include "hooktool.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define AGENT_API_PORT 8008

static bool token_ok(const char *s, const char *extra, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              strchr(extra, s[i])))
            return false;
    return true;
}

/* s with every COS_PLACEHOLDER replaced by with (malloc'd). */
static char *replace_all(const char *s, const char *with)
{
    size_t plen = strlen(COS_PLACEHOLDER), wlen = strlen(with), n = 0;
    for (const char *p = strstr(s, COS_PLACEHOLDER); p; p = strstr(p + plen, COS_PLACEHOLDER))
        n++;
    size_t len = strlen(s) + n * wlen + 1;
    char *out = malloc(len), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s;;) {
        const char *q = strstr(p, COS_PLACEHOLDER);
        if (!q) {
            memcpy(o, p, strlen(p) + 1);
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, with, wlen);
        o += wlen;
        p = q + plen;
    }
    return out;
}

/* A rule file object ({"groups": [...]}, or {} for none) with the topology applied. */
static int topology_rules(const json_t *src, const struct cos_topology *t, const char *matchers,
                          const char *what, json_t **out, char **err)
{
    *out = NULL;
    if (!json_is_object(src))
        return errmsg_set(err, -EINVAL, "bundle: %s is not an object", what);
    const json_t *groups = json_object_get(src, "groups");
    if (!groups) {
        *out = json_object();
        return *out ? 0 : errmsg_set(err, -ENOMEM, "out of memory");
    }
    if (!json_is_array(groups))
        return errmsg_set(err, -EINVAL, "bundle: %s.groups is not a list", what);
    json_t *res = json_array();
    size_t i;
    const json_t *g;
    json_array_foreach(groups, i, g) {
        const char *name = json_string_value(json_object_get(g, "name"));
        const json_t *rules = json_object_get(g, "rules");
        if (!json_is_object(g) || !name || !json_is_array(rules)) {
            json_decref(res);
            return errmsg_set(err, -EINVAL, "bundle: %s group %zu has no name or rules", what, i);
        }
        json_t *ng = json_deep_copy(g);
        char *gname = NULL;
        if (!ng || asprintf(&gname, "%s_%.8s_%s_%s_alerts", t->model, t->model_uuid, t->app,
                            name) < 0) {
            json_decref(ng);
            json_decref(res);
            return errmsg_set(err, -ENOMEM, "out of memory");
        }
        json_object_set_new(ng, "name", json_string(gname));
        free(gname);
        json_t *nrules = json_object_get(ng, "rules");
        size_t k;
        json_t *r;
        json_array_foreach(nrules, k, r) {
            const char *expr = json_string_value(json_object_get(r, "expr"));
            if (!json_is_object(r) || !expr) {
                json_decref(ng);
                json_decref(res);
                return errmsg_set(err, -EINVAL, "bundle: %s group %s rule %zu has no expr", what,
                                  name, k);
            }
            char *e2 = replace_all(expr, matchers);
            json_t *labels = json_object_get(r, "labels");
            if (!json_is_object(labels)) {
                labels = json_object();
                json_object_set_new(r, "labels", labels);
            }
            const char *const kv[][2] = {{"juju_model", t->model},
                                         {"juju_model_uuid", t->model_uuid},
                                         {"juju_application", t->app},
                                         {"juju_charm", t->charm}};
            for (size_t l = 0; l < 4; l++)
                if (!json_object_get(labels, kv[l][0])) /* existing labels are kept */
                    json_object_set_new(labels, kv[l][0], json_string(kv[l][1]));
            if (!e2 || json_object_set_new(r, "expr", json_string(e2)) < 0) {
                free(e2);
                json_decref(ng);
                json_decref(res);
                return errmsg_set(err, -ENOMEM, "out of memory");
            }
            free(e2);
        }
        json_array_append_new(res, ng);
    }
    *out = json_pack("{s:o}", "groups", res);
    return *out ? 0 : errmsg_set(err, -ENOMEM, "out of memory");
}

/* One scrape job: named <app>_<name>_<8 hex of the SHA-256 of the job without its name>
 * (unique per target and settings, as the reference library's names are). */
static int scrape_job(const char *app, const char *name, const char *address, int port,
                      json_t *jobs, char **err)
{
    unsigned char bin[16];
    bool v6 = inet_pton(AF_INET6, address, bin) == 1;
    char target[80];
    snprintf(target, sizeof target, v6 ? "[%s]:%d" : "%s:%d", address, port);
    /* TLS always; the requirer runs on this machine (a subordinate) and scrapes by address,
     * as Charmed PostgreSQL's Patroni job: it does not verify (it has no way to get the
     * internal CA) */
    json_t *job = json_pack("{s:s,s:[{s:[s]}],s:s,s:{s:b}}", "metrics_path", "/metrics",
                            "static_configs", "targets", target, "scheme", "https",
                            "tls_config", "insecure_skip_verify", 1);
    char *text = job ? json_dumps(job, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!text) {
        json_decref(job);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)text, strlen(text));
    free(text);
    char job_name[160];
    snprintf(job_name, sizeof job_name, "%s_%s_%02x%02x%02x%02x", app, name, h[0], h[1], h[2],
             h[3]);
    json_object_set_new(job, "job_name", json_string(job_name));
    json_array_append_new(jobs, job);
    return 0;
}

int cos_config_build(const json_t *bundle, const struct cos_topology *t,
                     const struct cos_targets *targets, json_t **out, char **err)
{
    *out = NULL;
    if (!token_ok(t->model, "-", 63) || !token_ok(t->model_uuid, "-", 64) ||
        !token_ok(t->app, "-", 63) || !token_ok(t->charm, "-", 63))
        return errmsg_set(err, -EINVAL, "the model name, model uuid, application or charm name "
                                        "is missing or not made of [a-z0-9-]");
    unsigned char bin[16];
    if (!targets->address || (inet_pton(AF_INET, targets->address, bin) != 1 &&
                              inet_pton(AF_INET6, targets->address, bin) != 1))
        return errmsg_set(err, -EINVAL, "no IP address for the scrape targets");
    if (!json_is_object(bundle))
        return errmsg_set(err, -EINVAL, "bundle: not a JSON object");
    const json_t *dash = json_object_get(bundle, "dashboards");
    if (!json_is_array(dash))
        return errmsg_set(err, -EINVAL, "bundle: dashboards is not a list");
    size_t i;
    const json_t *d;
    json_array_foreach(dash, i, d) {
        if (!json_is_string(d))
            return errmsg_set(err, -EINVAL, "bundle: dashboard %zu is not a string", i);
    }
    char matchers[512];
    snprintf(matchers, sizeof matchers,
             "juju_model=\"%s\",juju_model_uuid=\"%s\",juju_application=\"%s\"", t->model,
             t->model_uuid, t->app);
    json_t *metrics = NULL, *logs = NULL;
    const json_t *m = json_object_get(bundle, "metrics_alert_rules");
    const json_t *l = json_object_get(bundle, "log_alert_rules");
    json_t *empty = json_object();
    int rc = topology_rules(m ? m : empty, t, matchers, "metrics_alert_rules", &metrics, err);
    if (rc == 0)
        rc = topology_rules(l ? l : empty, t, matchers, "log_alert_rules", &logs, err);
    json_decref(empty);
    json_t *jobs = json_array();
    if (rc == 0)
        rc = scrape_job(t->app, "pg_agent", targets->address, AGENT_API_PORT, jobs, err);
    if (rc == 0 && targets->exporter)
        rc = scrape_job(t->app, "postgres_exporter", targets->address, EXPORTER_PORT, jobs, err);
    if (rc < 0) {
        json_decref(metrics);
        json_decref(logs);
        json_decref(jobs);
        return rc;
    }
    *out = json_pack("{s:o,s:o,s:O,s:o,s:[],s:[],s:n}", "metrics_alert_rules", metrics,
                     "log_alert_rules", logs, "dashboards", dash, "metrics_scrape_jobs", jobs,
                     "log_slots", "tracing_protocols", "subordinate");
    return *out ? 0 : errmsg_set(err, -ENOMEM, "out of memory");
}

static int load_bundle(const char *charm_dir, json_t **out, char **err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", charm_dir ? charm_dir : "", COS_BUNDLE);
    struct stat st;
    if (stat(path, &st) < 0)
        return errmsg_set(err, -errno, "%s: %s (the charm is incomplete)", path, strerror(errno));
    if (st.st_size > COS_BUNDLE_MAX)
        return errmsg_set(err, -EFBIG, "%s: larger than %lld bytes", path, (long long)COS_BUNDLE_MAX);
    json_error_t je;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!*out)
        return errmsg_set(err, -EINVAL, "%s: %s (line %d)", path, je.text, je.line);
    return 0;
}

int cos_publish(const struct hook_event *ev, const char *app, const char *address,
                bool exporter, char **err)
{
    const char *ids_argv[] = {"relation-ids", COS_ENDPOINT, NULL};
    json_t *ids = NULL, *bundle = NULL, *config = NULL;
    char *text = NULL;
    int rc = hooktool_json(ev, ids_argv, &ids, err);
    if (rc < 0)
        return rc;
    size_t i;
    json_t *idv;
    json_array_foreach(ids, i, idv) {
        const char *rel = json_string_value(idv);
        if (!rel || request_is_broken_relation(ev, COS_ENDPOINT, rel))
            continue;
        if (!text) {
            struct cos_topology t = {.model = ev->model,
                                     .model_uuid = request_env(ev, "JUJU_MODEL_UUID"),
                                     .app = app, .charm = COS_CHARM};
            struct cos_targets tg = {.address = address, .exporter = exporter};
            rc = load_bundle(ev->charm_dir, &bundle, err);
            if (rc == 0)
                rc = cos_config_build(bundle, &t, &tg, &config, err);
            if (rc == 0 && !(text = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS)))
                rc = errmsg_set(err, -ENOMEM, "out of memory");
            if (rc < 0)
                break;
        }
        const char *get_argv[] = {"relation-get", "-r", rel, COS_KEY, ev->unit, NULL};
        char *cur = NULL;
        bool same = hooktool_output(ev, get_argv, &cur, NULL) == 0 && cur && text &&
                    strcmp(cur, text) == 0;
        free(cur);
        if (same)
            continue;
        json_t *values = json_pack("{s:s}", COS_KEY, text);
        char *file = values ? json_dumps(values, JSON_COMPACT) : NULL;
        json_decref(values);
        if (!file) {
            rc = errmsg_set(err, -ENOMEM, "out of memory");
            break;
        }
        const char *set_argv[] = {"relation-set", "-r", rel, "--file", "-", NULL};
        rc = hooktool_check_input(ev, set_argv, file, strlen(file), err);
        free(file);
        if (rc == -EACCES) {
            log_info("%s: not in scope yet; the metrics configuration goes out in a later hook",
                     rel);
            free(*err);
            *err = NULL;
            rc = 0;
        } else if (rc < 0) {
            break;
        } else {
            log_info("%s: published the metrics, alert rules and dashboards configuration", rel);
        }
    }
    json_decref(ids);
    json_decref(bundle);
    json_decref(config);
    free(text);
    return rc;
}
