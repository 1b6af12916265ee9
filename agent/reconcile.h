/* The reconcile pass: read the model through the hook tools, compute the desired state,
 * converge. Today the desired state is only an honest unit status.
 *
 * Ownership: struct model_facts owns its JSON (model_facts_free). The pure functions
 * write into caller-provided structs and keep no pointers.
 */
#ifndef PG_AGENT_RECONCILE_H
#define PG_AGENT_RECONCILE_H

#include <stdbool.h>

#include <jansson.h>

#include "request.h"

/* What one pass knows about the model. */
struct model_facts {
    bool is_leader;
    json_t *config; /* config-get --format=json: an object, owned */
};

struct unit_status {
    const char *status;  /* maintenance, blocked, waiting, active */
    const char *message; /* string literals, or owned by the facts the status came from */
};

/* Read the facts with the hook tools. Returns 0, or -1 with *err naming the tool that
 * failed and how (its exit code), or why its answer was refused. */
int model_facts_read(const struct hook_event *ev, struct model_facts *out, char **err);
void model_facts_free(struct model_facts *facts);

/* Pure: the unit status the facts call for. */
void reconcile_desired_status(const struct model_facts *facts, struct unit_status *out);

/* One whole pass for ev (which must have a hook context). Returns the hook's exit code:
 * 0 on success, 1 when anything failed (logged here), so that Juju retries the hook. */
int reconcile_run(const struct hook_event *ev);

#endif
