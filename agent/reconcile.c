/* The reconcile pass (reconcile.h): facts from is-leader and config-get, the desired unit
 * status from a pure function, then status-set. PostgreSQL management comes next. */
#include "reconcile.h"

#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "version.h"

#include <stdlib.h>
#include <string.h>

void model_facts_free(struct model_facts *facts)
{
    if (!facts)
        return;
    json_decref(facts->config);
    *facts = (struct model_facts){0};
}

int model_facts_read(const struct hook_event *ev, struct model_facts *out, char **err)
{
    *out = (struct model_facts){0};

    const char *leader_argv[] = {"is-leader", NULL};
    json_t *leader = NULL;
    if (hooktool_json(ev, leader_argv, &leader, err) < 0)
        return -1;
    if (!json_is_boolean(leader)) {
        json_decref(leader);
        return errmsg_set(err, -1, "is-leader answered something other than true or false");
    }
    out->is_leader = json_is_true(leader);
    json_decref(leader);

    const char *config_argv[] = {"config-get", NULL};
    json_t *config = NULL;
    if (hooktool_json(ev, config_argv, &config, err) < 0)
        return -1;
    if (!json_is_object(config)) {
        json_decref(config);
        return errmsg_set(err, -1, "config-get answered something other than a JSON object");
    }
    out->config = config;
    return 0;
}

void reconcile_desired_status(const struct model_facts *facts, struct unit_status *out)
{
    (void)facts; /* nothing is managed yet: say so, whatever the model holds */
    out->status = "maintenance";
    out->message = "pg-agent " PG_AGENT_VERSION ": PostgreSQL management not installed yet";
}

int reconcile_run(const struct hook_event *ev)
{
    struct model_facts facts;
    char *err = NULL;
    int code = 1;

    if (model_facts_read(ev, &facts, &err) < 0) {
        log_error("reconcile: %s", ERRMSG(err));
        goto out;
    }
    log_debug("reconcile: %s, %zu config options set", facts.is_leader ? "leader" : "not leader",
              json_object_size(facts.config));

    struct unit_status want;
    reconcile_desired_status(&facts, &want);
    if (hooktool_status_set(ev, want.status, want.message, &err) < 0) {
        log_error("reconcile: %s", ERRMSG(err));
        goto out;
    }
    code = 0;
out:
    model_facts_free(&facts);
    free(err);
    return code;
}
