/* What the agent does with an event (handler.h): actions go to their handler, every
 * other event to the same holistic reconcile pass; a hook's log lines go to juju-log. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "handler.h"

#include "actions.h"
#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "reconcile.h"
#include "settings.h"
#include "version.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char reexec_path[PATH_MAX];

const char *handler_reexec_path(void)
{
    return reexec_path[0] ? reexec_path : NULL;
}

/* secret-remove: the revision Juju says nobody uses any more goes. */
static int remove_secret_revision(const struct hook_event *ev)
{
    const char *uri = request_env(ev, "JUJU_SECRET_ID");
    const char *rev = request_env(ev, "JUJU_SECRET_REVISION");
    char id[SETTINGS_SECRET_ID_LEN + 1];
    bool digits = rev && *rev && strlen(rev) < 10;
    for (const char *p = rev; digits && *p; p++)
        digits = isdigit((unsigned char)*p);
    if (!uri || settings_secret_id(uri, id) < 0 || !digits) {
        log_error("secret-remove without a valid JUJU_SECRET_ID and JUJU_SECRET_REVISION");
        return 1;
    }
    const char *argv[] = {"secret-remove", uri, "--revision", rev, NULL};
    char *err = NULL;
    int rc = hooktool_check(ev, argv, &err);
    if (rc < 0)
        log_error("%s", ERRMSG(err));
    else
        log_info("secret %s: obsolete revision %s removed", id, rev);
    free(err);
    return rc < 0 ? 1 : 0;
}

static int dispatch(const struct hook_event *ev)
{
    if (ev->kind == EVENT_ACTION)
        return actions_run(ev);
    if (ev->kind == EVENT_HOOK && strcmp(ev->name, "secret-remove") == 0) {
        int code = remove_secret_revision(ev);
        return code ? code : reconcile_run(ev, true);
    }
    if (ev->kind == EVENT_HOOK && strcmp(ev->name, "remove") == 0) {
        /* The unit left the cluster in its stop hook; nothing is left to converge. */
        log_info("the unit is being removed");
        return 0;
    }
    if (ev->kind == EVENT_HOOK && strcmp(ev->name, "upgrade-charm") == 0) {
        /* The charm directory holds the new agent: this one hands over to it once the
         * hook is answered (main re-executes it, keeping the socket and the server). */
        snprintf(reexec_path, sizeof reexec_path, "%s/bin/pg-agent", ev->charm_dir);
        reconcile_invalidate();
    }
    /* update-status from Juju, or raised through juju-exec (a custom event), and plain
     * juju-exec reconciles: a quick pass when nothing changed since the last full one. */
    /* ha-changed: the HA loop saw the primary move (a full pass: status, endpoints). */
    bool quick = ((ev->kind == EVENT_HOOK || ev->kind == EVENT_CUSTOM) &&
                  strcmp(ev->name, "update-status") == 0) ||
                 ev->kind == EVENT_EXEC;
    return reconcile_run(ev, !quick);
}

int handler_handle(const struct hook_event *ev)
{
    /* Kind and name only: the environment may carry secrets. */
    log_info("%s %s", event_kind_name(ev->kind), ev->name);

    if (!ev->has_context) {
        log_info("no hook context (juju-exec --no-context): nothing to reconcile");
        return 0;
    }
    log_capture_begin();
    int code = dispatch(ev);
    /* What the agent said during the hook, in the unit's Juju log: one call per level,
     * none for a quiet hook. */
    for (enum log_level level = LOG_LEVEL_INFO; level <= LOG_LEVEL_ERROR; level++) {
        char *lines = log_capture_take(level);
        if (!lines)
            continue;
        char *err = NULL;
        if (hooktool_log(ev, level, lines, &err) < 0)
            log_warning("juju-log: %s", ERRMSG(err));
        free(err);
        free(lines);
    }
    return code;
}
