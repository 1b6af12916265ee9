/* Running Juju hook tools (status-set, config-get, juju-log, ...) on behalf of the hook
 * that is waiting on the relay, with exactly that hook's forwarded environment.
 *
 * The tool is looked up in the PATH of the forwarded environment (never the agent's
 * own), run with that environment only (it carries JUJU_CONTEXT_ID and the agent socket
 * address: that is what ties the call to the hook), in the charm directory, with no fd
 * other than stdin/stdout/stderr, in a process group of its own, unblocked signals and
 * default SIGPIPE. Output is captured up to HOOKTOOL_MAX_OUTPUT bytes per stream. After
 * HOOKTOOL_TIMEOUT_MS the process group is killed.
 *
 * These calls block the caller until the tool exits (they run inline in the event loop
 * for now; hook tools answer in milliseconds). The process must ignore SIGPIPE (main
 * does): feeding stdin to a tool that has already exited would otherwise kill it.
 *
 * Secrets: never put a secret in argv (it shows in ps and may be echoed in a tool's
 * error); pass it on stdin. Error messages (*err) include the tool name, its exit code
 * and the first line of its stderr (bounded), never its stdin or stdout.
 *
 * Ownership: argv and stdin are borrowed for the call. struct hooktool_result buffers
 * and *out / *err are malloc'd and owned by the caller (hooktool_result_free, json_decref,
 * free).
 */
#ifndef PG_AGENT_HOOKTOOL_H
#define PG_AGENT_HOOKTOOL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "log.h"
#include "request.h"

#define HOOKTOOL_MAX_OUTPUT ((size_t)4194304) /* 4 MiB */
#define HOOKTOOL_TIMEOUT_MS 30000

struct hooktool_result {
    int exit_code;  /* 0..255, or 128 + signal number when killed by a signal */
    bool truncated; /* a stream went over HOOKTOOL_MAX_OUTPUT; the rest was dropped */
    char *out;      /* stdout, NUL-terminated (may hold NULs: use out_len) */
    size_t out_len;
    char *err; /* stderr, likewise */
    size_t err_len;
};

/* Run argv (argv[0] is the tool name, no slash; NULL-terminated) with ev's environment,
 * feeding stdin_data (may be NULL: the tool's stdin is then /dev/null). Returns 0 once
 * the tool ran to completion, whatever its exit code (look at res->exit_code); or a
 * negative errno with *err set and *res empty: -EINVAL (no context, bad argv), -ENOENT
 * (not on the hook's PATH), -ETIMEDOUT (killed after HOOKTOOL_TIMEOUT_MS), others when
 * it could not be started. */
int hooktool_run(const struct hook_event *ev, const char *const argv[], const char *stdin_data,
                 size_t stdin_len, struct hooktool_result *res, char **err);

void hooktool_result_free(struct hooktool_result *res);

/* Called at least every HOOKTOOL_KEEPALIVE_MS while a tool runs (the systemd watchdog:
 * the loop is busy, not hung, while it waits on a tool with a deadline). It is the
 * agent's one keepalive, the same as proc_set_keepalive's. NULL, the default, means
 * nothing to call. */
#define HOOKTOOL_KEEPALIVE_MS 5000
void hooktool_set_keepalive(void (*fn)(void));

/* The helpers below return 0 on success and a negative value when the tool could not be
 * run, exited non-zero, or (hooktool_json) printed something that is not JSON; *err then
 * says which tool failed and how (its exit code when it ran). The value is -EACCES when the
 * tool exited non-zero saying "permission denied" (e.g. relation-set on a relation whose
 * relation-created hook has not run on this unit yet), -1 otherwise. */

/* Run argv with "--format=json" appended and parse its stdout into *out (a new
 * reference). */
int hooktool_json(const struct hook_event *ev, const char *const argv[], json_t **out, char **err);

/* status-set <status> -- <message>  (status: maintenance, blocked, waiting, active). */
int hooktool_status_set(const struct hook_event *ev, const char *status, const char *message,
                        char **err);

/* juju-log --log-level <LEVEL> -- <message>: a line in the Juju unit log. */
int hooktool_log(const struct hook_event *ev, enum log_level level, const char *message,
                 char **err);

/* Run argv and require exit 0. */
int hooktool_check(const struct hook_event *ev, const char *const argv[], char **err);

/* The same, feeding stdin_data to the tool (never in argv: it may be secret). */
int hooktool_check_input(const struct hook_event *ev, const char *const argv[],
                         const char *stdin_data, size_t stdin_len, char **err);

/* Run argv, require exit 0 and hand over its stdout with trailing newlines removed
 * (*out malloc'd; wiped and freed by the caller when it may be secret). */
int hooktool_output(const struct hook_event *ev, const char *const argv[], char **out,
                    char **err);

/* One key of a secret's content, for secret-add / secret-set. */
struct secret_field {
    const char *key;   /* ^[a-z](-?[a-z0-9]){2,}$ */
    const char *value; /* may be a password: it never goes on a command line */
};

/* secret-add / secret-set. Values never appear in argv: each goes through a memfd that
 * the tool reads as key#file=/proc/<agent pid>/fd/<n> (the unit agent runs on the same
 * machine as root; the memfd exists only in memory and only for the call).
 * hooktool_secret_add: owner is "application" or "unit"; label may be NULL; *uri is the
 * new secret's URI (malloc'd). */
int hooktool_secret_add(const struct hook_event *ev, const char *owner, const char *label,
                        const struct secret_field *fields, size_t n, char **uri, char **err);
int hooktool_secret_set(const struct hook_event *ev, const char *uri,
                        const struct secret_field *fields, size_t n, char **err);

/* secret-get [<uri>] [--label L] --refresh --format=json: the content as a JSON object
 * (*out, a new reference; its strings are secret). uri or label may be NULL, not both.
 * Returns 0; -ENOENT when the secret (or label) does not exist; -EACCES when this unit
 * may not read it; -1 for other failures; *err says which. */
int hooktool_secret_get(const struct hook_event *ev, const char *uri, const char *label,
                        json_t **out, char **err);

/* secret-info-get --label L --format=json (owners only): the secret's URI ("secret:<xid>")
 * into uri. Returns 0, or -ENOENT when this unit owns no secret with that label (or the
 * tool failed: the caller treats it as not found). */
int hooktool_secret_uri(const struct hook_event *ev, const char *label, char *uri, size_t size);

#endif
