/* Unit tests for the observability pieces: agent/cos.c's `config` (topology, scrape jobs,
 * bad input), agent/metrics.c's histogram and gauges (Prometheus text), and
 * agent/exporter.c's command line and web configuration. */
#include "check.h"

#include "cos.h"
#include "exporter.h"
#include "metrics.h"
#include "pki.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *bundle(void)
{
    json_error_t je;
    return json_loads(
        "{\"metrics_alert_rules\":{\"groups\":[{\"name\":\"pg_agent_rules_ha\",\"rules\":["
        "{\"alert\":\"A\",\"expr\":\"sum(patroni_primary{%%juju_topology%%}) == 0\"},"
        "{\"alert\":\"B\",\"expr\":\"up{%%juju_topology%%} < 1 and x{a=\\\"b\\\","
        "%%juju_topology%%}\",\"labels\":{\"severity\":\"critical\",\"juju_charm\":\"keep\"}}"
        "]}]},\"log_alert_rules\":{},\"dashboards\":[\"/Td6WFoAAATm1rRG\"]}",
        0, &je);
}

static const struct cos_topology topo = {"prod", "0f5a1d3e-2b8c-4c3a-9d61-111111111111",
                                         "postgresql", "postgresql"};

TEST(config_has_topology_and_jobs)
{
    json_t *b = bundle(), *out = NULL;
    char *err = NULL;
    CHECK(b != NULL);
    struct cos_targets tg = {"10.1.2.3", true};
    CHECK(cos_config_build(b, &topo, &tg, &out, &err) == 0);
    const json_t *g = json_array_get(json_object_get(json_object_get(out, "metrics_alert_rules"),
                                                     "groups"), 0);
    CHECK_STR(json_string_value(json_object_get(g, "name")),
              "prod_0f5a1d3e_postgresql_pg_agent_rules_ha_alerts");
    const json_t *r0 = json_array_get(json_object_get(g, "rules"), 0);
    const json_t *r1 = json_array_get(json_object_get(g, "rules"), 1);
    CHECK_STR(json_string_value(json_object_get(r0, "expr")),
              "sum(patroni_primary{juju_model=\"prod\",juju_model_uuid=\"0f5a1d3e-2b8c-4c3a-"
              "9d61-111111111111\",juju_application=\"postgresql\"}) == 0");
    CHECK(strstr(json_string_value(json_object_get(r1, "expr")), "%%") == NULL);
    CHECK(strstr(json_string_value(json_object_get(r1, "expr")), "x{a=\"b\",juju_model=") != NULL);
    const json_t *l1 = json_object_get(r1, "labels");
    CHECK_STR(json_string_value(json_object_get(l1, "juju_charm")), "keep"); /* kept */
    CHECK_STR(json_string_value(json_object_get(l1, "severity")), "critical");
    CHECK_STR(json_string_value(json_object_get(l1, "juju_model")), "prod");
    CHECK_STR(json_string_value(json_object_get(json_object_get(r0, "labels"), "juju_charm")),
              "postgresql");
    /* jobs: the agent and the exporter, https, unique names */
    const json_t *jobs = json_object_get(out, "metrics_scrape_jobs");
    CHECK(json_array_size(jobs) == 2);
    const char *n0 = json_string_value(json_object_get(json_array_get(jobs, 0), "job_name"));
    const char *n1 = json_string_value(json_object_get(json_array_get(jobs, 1), "job_name"));
    CHECK(n0 && n1 && strcmp(n0, n1) != 0);
    CHECK(strncmp(n0, "postgresql_pg_agent_", 20) == 0 && strlen(n0) == 28);
    CHECK_STR(json_string_value(json_array_get(json_object_get(json_array_get(json_object_get(
                  json_array_get(jobs, 1), "static_configs"), 0), "targets"), 0)),
              "10.1.2.3:9187");
    CHECK(json_is_object(json_object_get(out, "log_alert_rules")));
    CHECK(json_object_size(json_object_get(out, "log_alert_rules")) == 0);
    CHECK(json_array_size(json_object_get(out, "log_slots")) == 0);
    CHECK(json_is_null(json_object_get(out, "subordinate")));
    CHECK(json_array_size(json_object_get(out, "dashboards")) == 1);
    json_decref(out);
    /* the same input gives the same text (the databag is only rewritten on change) */
    json_t *again = NULL;
    CHECK(cos_config_build(b, &topo, &tg, &again, &err) == 0);
    json_t *first = NULL;
    CHECK(cos_config_build(b, &topo, &tg, &first, &err) == 0);
    char *a = json_dumps(again, JSON_COMPACT | JSON_SORT_KEYS);
    char *f = json_dumps(first, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(a, f);
    free(a);
    free(f);
    json_decref(again);
    json_decref(first);
    /* no exporter: the agent's job only; IPv6 target in brackets */
    struct cos_targets v6 = {"fd00::5", false};
    CHECK(cos_config_build(b, &topo, &v6, &out, &err) == 0);
    jobs = json_object_get(out, "metrics_scrape_jobs");
    CHECK(json_array_size(jobs) == 1);
    CHECK_STR(json_string_value(json_array_get(json_object_get(json_array_get(json_object_get(
                  json_array_get(jobs, 0), "static_configs"), 0), "targets"), 0)),
              "[fd00::5]:8008");
    json_decref(out);
    json_decref(b);
}

TEST(config_refuses_bad_input)
{
    json_t *b = bundle(), *out = NULL;
    char *err = NULL;
    struct cos_targets tg = {"10.1.2.3", true};
    struct cos_topology bad = topo;
    bad.model = "Prod\"}";
    CHECK(cos_config_build(b, &bad, &tg, &out, &err) == -EINVAL && !out);
    free(err);
    err = NULL;
    bad = topo;
    bad.model_uuid = NULL;
    CHECK(cos_config_build(b, &bad, &tg, &out, &err) == -EINVAL);
    free(err);
    err = NULL;
    struct cos_targets noaddr = {"host.example", true};
    CHECK(cos_config_build(b, &topo, &noaddr, &out, &err) == -EINVAL);
    free(err);
    err = NULL;
    json_t *shapes[] = {
        json_loads("[]", 0, NULL),
        json_loads("{\"dashboards\":{}}", 0, NULL),
        json_loads("{\"dashboards\":[1]}", 0, NULL),
        json_loads("{\"dashboards\":[],\"metrics_alert_rules\":{\"groups\":{}}}", 0, NULL),
        json_loads("{\"dashboards\":[],\"metrics_alert_rules\":{\"groups\":[{\"rules\":[]}]}}", 0,
                   NULL),
        json_loads("{\"dashboards\":[],\"metrics_alert_rules\":{\"groups\":[{\"name\":\"g\","
                   "\"rules\":[{\"alert\":\"x\"}]}]}}", 0, NULL),
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        CHECK(shapes[i] != NULL);
        CHECK(cos_config_build(shapes[i], &topo, &tg, &out, &err) == -EINVAL && !out);
        CHECK(err != NULL);
        free(err);
        err = NULL;
        json_decref(shapes[i]);
    }
    json_decref(b);
}

static char *render(const char *labels)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    metrics_render(f, labels);
    fclose(f);
    return text;
}

TEST(histogram_and_gauges)
{
    metrics_reset();
    metrics_hook_observe("config-changed", 0.004);
    metrics_hook_observe("config-changed", 0.2);
    metrics_hook_observe("config-changed", 99);
    metrics_hook_observe("BAD name\"}", 0.001); /* counted as "other" */
    metrics_set_cert_expiry(METRICS_CERT_CA, 2000000000);
    char *t = render("scope=\"s\",name=\"n\"");
    CHECK(strstr(t, "# TYPE pg_agent_hook_duration_seconds histogram\n") != NULL);
    CHECK(strstr(t, "pg_agent_hook_duration_seconds_bucket{scope=\"s\",name=\"n\","
                    "hook=\"config-changed\",le=\"0.005\"} 1\n") != NULL);
    CHECK(strstr(t, "hook=\"config-changed\",le=\"0.25\"} 2\n") != NULL); /* cumulative */
    CHECK(strstr(t, "hook=\"config-changed\",le=\"30\"} 2\n") != NULL);
    CHECK(strstr(t, "hook=\"config-changed\",le=\"+Inf\"} 3\n") != NULL);
    CHECK(strstr(t, "pg_agent_hook_duration_seconds_count{scope=\"s\",name=\"n\","
                    "hook=\"config-changed\"} 3\n") != NULL);
    CHECK(strstr(t, "pg_agent_hook_duration_seconds_sum{scope=\"s\",name=\"n\","
                    "hook=\"config-changed\"} 99.204000\n") != NULL);
    CHECK(strstr(t, "hook=\"other\",le=\"+Inf\"} 1\n") != NULL);
    CHECK(strstr(t, "BAD") == NULL);
    CHECK(strstr(t, "pg_agent_certificate_expiry_timestamp_seconds{scope=\"s\",name=\"n\","
                    "certificate=\"ca\"} 2000000000\n") != NULL);
    CHECK(strstr(t, "certificate=\"peer\"") == NULL); /* unknown: left out */
    free(t);
    /* the label set stays bounded whatever the hooks are called */
    for (int i = 0; i < 3 * METRICS_MAX_HOOKS; i++) {
        char name[32];
        snprintf(name, sizeof name, "hook-%d", i);
        metrics_hook_observe(name, 0.01);
    }
    t = render("");
    size_t series = 0;
    for (const char *p = t; (p = strstr(p, "_count{")); p++)
        series++;
    CHECK(series <= METRICS_MAX_HOOKS + 1);
    CHECK(strstr(t, "pg_agent_hook_duration_seconds_count{hook=\"other\"}") != NULL);
    free(t);
    metrics_reset();
}

TEST(exporter_command_line)
{
    struct exporter_argv a;
    char *err = NULL;
    CHECK(exporter_argv_build("10.0.0.7", &a, &err) == 0);
    CHECK_STR(a.argv[0], EXPORTER_BIN);
    CHECK_STR(a.argv[1], "--web.listen-address=10.0.0.7:9187");
    bool web = false, disc = false;
    for (size_t i = 0; a.argv[i]; i++) {
        web = web || strncmp(a.argv[i], "--web.config.file=", 18) == 0;
        disc = disc || strcmp(a.argv[i], "--auto-discover-databases") == 0;
        CHECK(strstr(a.argv[i], "password") == NULL);
    }
    CHECK(web && disc);
    CHECK(exporter_argv_build("fd00::7", &a, &err) == 0);
    CHECK_STR(a.argv[1], "--web.listen-address=[fd00::7]:9187");
    CHECK(exporter_argv_build("0.0.0.0; rm", &a, &err) == -EINVAL);
    free(err);
    err = NULL;
    CHECK(exporter_argv_build(NULL, &a, &err) == -EINVAL);
    free(err);
    err = NULL;
    char *web_cfg = NULL;
    CHECK(exporter_web_config(&web_cfg, &err) == 0);
    CHECK(strstr(web_cfg, "tls_server_config:\n") != NULL);
    CHECK(strstr(web_cfg, "min_version: TLS12") != NULL);
    CHECK(strstr(web_cfg, PKI_EXPORTER_DIR "/key.pem") != NULL);
    free(web_cfg);
}

int main(void)
{
    static const struct check_case cases[] = {
        {"config_has_topology_and_jobs", config_has_topology_and_jobs},
        {"config_refuses_bad_input", config_refuses_bad_input},
        {"histogram_and_gauges", histogram_and_gauges},
        {"exporter_command_line", exporter_command_line},
    };
    return check_run("cos", cases, sizeof cases / sizeof cases[0]);
}
