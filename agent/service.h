/* `pg-agent --install-service`: install the agent as a socket-activated systemd service,
 * pg-agent.socket + pg-agent.service rendered from the charm's src/systemd templates.
 *
 * Then `systemctl daemon-reload` and `systemctl enable --now pg-agent.socket`.
 *
 * Templates use two placeholders: @AGENT@ (absolute path of the pg-agent binary, for
 * ExecStart) and @SOCKET@ (the socket path, for ListenStream). Both values must be
 * absolute paths made of [A-Za-z0-9/._+@-] only, so that nothing in them is special to
 * systemd (no spaces, quotes, '%' specifiers or '$' expansion).
 *
 * Ownership: all strings are borrowed; *out and *err are malloc'd, owned by the caller.
 */
#ifndef PG_AGENT_SERVICE_H
#define PG_AGENT_SERVICE_H

#include <stddef.h>

#define SERVICE_UNIT_DIR "/etc/systemd/system"
#define SERVICE_SYSTEMCTL "/usr/bin/systemctl"
#define SERVICE_NAME "pg-agent.service"
#define SERVICE_SOCKET_NAME "pg-agent.socket"

struct service_paths {
    const char *agent;     /* the pg-agent binary, for ExecStart */
    const char *socket;    /* the socket path, for ListenStream */
    const char *templates; /* directory holding the two templates */
    const char *unit_dir;  /* where to write the units (SERVICE_UNIT_DIR) */
    const char *systemctl; /* SERVICE_SYSTEMCTL */
};

/* Pure: the template with every @AGENT@ and @SOCKET@ replaced. Returns 0 with *out
 * (NUL-terminated), or a negative errno with *err (a value is not a safe path). */
int service_render(const char *tmpl, const char *agent, const char *socket, char **out, char **err);

/* Render and write both units (atomically, mode 0644), reload systemd, enable and start
 * the socket. Returns 0, or a negative errno with *err saying which step failed (for
 * systemctl: the command, its exit code and the first line of its stderr). */
int service_install(const struct service_paths *paths, char **err);

#endif
