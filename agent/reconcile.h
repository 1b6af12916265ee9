/* The reconcile pass: read the model (leadership, config, secrets), compare with the
 * unit (packages, cluster, configuration files, roles), converge, and say so in the unit
 * status. Every event leads here; there is no per-event state machine to defer.
 *
 * Two depths:
 *   - full: everything above (install, initdb, config files, credentials, ports);
 *   - quick (update-status and agent-raised checks): when the previous full pass
 *     succeeded and neither leadership nor config changed since, only the health of the
 *     running server is checked and the status refreshed (two hook tools, no secret read).
 * The agent remembers, in memory only, what the last pass saw and the status it set, so
 * that unchanged status is not set again. A restarted agent simply does a full pass.
 *
 * Ownership: nothing is kept from the event after the call.
 */
#ifndef PG_AGENT_RECONCILE_H
#define PG_AGENT_RECONCILE_H

#include <stdbool.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "credentials.h"
#include "pg.h"
#include "request.h"
#include "settings.h"

/* The model as one hook sees it. */
struct model_facts {
    bool is_leader;
    json_t *config; /* config-get's object (owned) */
};

/* What the unit status should be. */
struct unit_status {
    const char *status; /* maintenance, blocked, waiting, active */
    char message[512];
};

/* Read is-leader and config-get. */
int model_facts_read(const struct hook_event *ev, struct model_facts *out, char **err);
void model_facts_free(struct model_facts *facts);

/* Run the pass. Returns the hook's exit code (0, or 1 when something failed that a retry
 * may fix; blocked states are not failures). */
int reconcile_run(const struct hook_event *ev, bool full);

/* For actions: the installed server (detected), and a connection to it when it runs.
 * Returns 0, or -1 with *err saying what is missing. */
int reconcile_connect(struct pg_install *pg, PGconn **conn, char **err);

/* The passwords as the model holds them, read once: the internal secret (have, its uri,
 * the peer relation it hangs off), and what the unit should have (want: have with the
 * system-users secret applied when configured; managed[i] when that secret names user i).
 * Returns 0; -ENOENT when the internal secret does not exist yet (have and want then
 * hold only what system-users gives); -1 for other failures of the internal secret.
 * A system-users secret that cannot be used is not a failure: *user_err says why (the
 * reconcile pass goes blocked, actions fail) and want is left without it. */
struct creds_view {
    char peer[128];
    char *uri;
    struct creds have;
    struct creds want;
    bool managed[N_SYSTEM_USERS];
};
int reconcile_read_creds(const struct hook_event *ev, const struct pg_settings *s,
                         struct creds_view *v, char **user_err, char **err);
void creds_view_clear(struct creds_view *v);

/* Between hooks (a timer): restart PostgreSQL if it should run and does not. */
void reconcile_supervise(void);

/* Forget what the last pass saw (the next one is full). */
void reconcile_invalidate(void);

#endif
