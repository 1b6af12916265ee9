/* The cos-agent endpoint (interface cos_agent v0, ../shared/reference/interfaces.md 3):
 * every unit writes its unit databag key `config`, one JSON object with
 *   metrics_alert_rules, log_alert_rules  the charm's rule files (built into
 *                                         src/cos/bundle.json by scripts/cos_bundle.py)
 *                                         with the Juju topology: group names
 *                                         <model>_<uuid8>_<app>_<group>_alerts, labels
 *                                         juju_model/_model_uuid/_application/_charm on
 *                                         every rule, the %%juju_topology%% placeholder
 *                                         the bundle put in every selector replaced by
 *                                         the matchers;
 *   dashboards                            base64(xz(JSON)) from the bundle;
 *   metrics_scrape_jobs                   https://<unit address>:8008/metrics (the agent)
 *                                         and, while it runs, :9187/metrics (the exporter);
 *   log_slots []                          (no snap: logs go through the journal and files)
 *   tracing_protocols [], subordinate null.
 * Written only when it differs from what the databag holds.
 *
 * Ownership: strings are borrowed; results are malloc'd / new jansson references.
 */
#ifndef PG_AGENT_COS_H
#define PG_AGENT_COS_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "request.h"

#define COS_ENDPOINT "cos-agent"
#define COS_KEY "config"
#define COS_BUNDLE "src/cos/bundle.json" /* in the charm directory */
#define COS_BUNDLE_MAX ((off_t)4 * 1024 * 1024)
#define COS_CHARM "postgresql"
#define COS_PLACEHOLDER "%%juju_topology%%"

struct cos_topology {
    const char *model;      /* [a-z0-9-]+ */
    const char *model_uuid; /* [0-9a-f-]+ */
    const char *app;        /* [a-z0-9-]+ */
    const char *charm;      /* [a-z0-9-]+ */
};

struct cos_targets {
    const char *address; /* this unit's IP */
    bool exporter;       /* the exporter serves */
};

/* Pure: the `config` object from the bundle (parsed JSON), topology and targets.
 * -EINVAL with *err for a bad topology value, address or bundle shape. */
int cos_config_build(const json_t *bundle, const struct cos_topology *t,
                     const struct cos_targets *targets, json_t **out, char **err);

/* Publish on every cos-agent relation of this unit (none: nothing to do). The bundle is
 * read from the charm directory. 0, or a negative errno with *err. */
int cos_publish(const struct hook_event *ev, const char *app, const char *address,
                bool exporter, char **err);

#endif
