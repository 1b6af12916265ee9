/* The agent's version string, printed by `pg-agent --version` and shown in the unit status.
 * Bump it with every release of the charm that changes the agent. */
#ifndef PG_AGENT_VERSION_H
#define PG_AGENT_VERSION_H

#define PG_AGENT_VERSION "0.1.0"

#endif
