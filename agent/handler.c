/* What the agent does with an event today (handler.h): every event, whatever its kind,
 * leads to the same holistic reconcile pass; there is no per-event logic to defer. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE // NOLINT(bugprone-reserved-identifier)
#include "handler.h"

#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "reconcile.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>

int handler_handle(const struct hook_event *ev)
{
    /* Kind and name only: the environment may carry secrets. */
    log_info("%s %s", event_kind_name(ev->kind), ev->name);

    if (!ev->has_context) {
        log_info("no hook context (juju-exec --no-context): nothing to reconcile");
        return 0;
    }

    char *line = NULL;
    if (asprintf(&line, "pg-agent " PG_AGENT_VERSION ": %s %s", event_kind_name(ev->kind),
                 ev->name) < 0) {
        log_error("out of memory");
        return 1;
    }
    char *err = NULL;
    int rc = hooktool_log(ev, LOG_LEVEL_INFO, line, &err);
    free(line);
    if (rc < 0) {
        log_error("%s", ERRMSG(err));
        free(err);
        return 1;
    }
    return reconcile_run(ev);
}
