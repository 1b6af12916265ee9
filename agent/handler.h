/* What the agent does with one event: actions run their handler; secret-remove removes
 * the obsolete revision; upgrade-charm asks for a re-exec of the new agent; every event
 * then runs the reconcile pass (quick for update-status and juju-exec, full otherwise).
 * Lines logged at INFO and above while the event is handled are sent to juju-log in one
 * call at the end (a quiet hook makes no juju-log call).
 */
#ifndef PG_AGENT_HANDLER_H
#define PG_AGENT_HANDLER_H

#include "request.h"

/* Returns the exit code for the relay. */
int handler_handle(const struct hook_event *ev);

/* The new agent binary to re-execute once the current request is answered (after
 * upgrade-charm), or NULL. */
const char *handler_reexec_path(void);

#endif
