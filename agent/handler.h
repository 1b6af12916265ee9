/* What the agent does with one validated event from the relay: log it, mirror it into
 * the Juju unit log, run the reconcile pass, and decide the hook's exit code.
 *
 * Ownership: the event is borrowed for the call; nothing is kept.
 */
#ifndef PG_AGENT_HANDLER_H
#define PG_AGENT_HANDLER_H

#include "request.h"

/* Handle ev while its hook waits. Returns the exit code for the relay (0..255): 0 on
 * success, 1 when something failed (already logged), so that Juju retries. */
int handler_handle(const struct hook_event *ev);

#endif
