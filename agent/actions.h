/* The charm's actions (actions.yaml): get-password, set-password (leader), get-primary.
 * A refused input fails the action (action-fail) with what to fix; the hook itself exits
 * 0 then. Passwords never appear in logs or messages.
 */
#ifndef PG_AGENT_ACTIONS_H
#define PG_AGENT_ACTIONS_H

#include "request.h"

/* Run the action named by ev->name. Returns the exit code for the relay. */
int actions_run(const struct hook_event *ev);

#endif
