/* The relay's request, validated at the edge: JSON from the socket becomes a typed
 * struct hook_event (which event, in which context, with which environment).
 *
 * Accepted shape (lib/proto.h): {"v": 1, "env": {"NAME": "value", ...}} and nothing else.
 *   - env names match ^[A-Z_][A-Z0-9_]*$ (at most 128 characters), values are strings of
 *     at most REQUEST_MAX_VALUE bytes without NUL, at most PROTO_MAX_ENV entries;
 *   - always required: JUJU_UNIT_NAME (<app>/<n>), JUJU_MODEL_NAME, and JUJU_CHARM_DIR or
 *     CHARM_DIR (an absolute path; JUJU_CHARM_DIR wins when both are set);
 *   - the event kind follows juju.md section 1.4:
 *       JUJU_DISPATCH_PATH=actions/<a>, JUJU_ACTION_NAME=<a>         -> EVENT_ACTION
 *       JUJU_DISPATCH_PATH=hooks/<h>,   JUJU_HOOK_NAME=<h>           -> EVENT_HOOK
 *       JUJU_DISPATCH_PATH=hooks/<h>,   JUJU_HOOK_NAME empty/absent  -> EVENT_CUSTOM
 *       JUJU_DISPATCH_PATH and JUJU_HOOK_NAME both empty/absent      -> EVENT_EXEC
 *     anything else (another prefix, a hook name that disagrees) is refused;
 *   - JUJU_CONTEXT_ID, JUJU_AGENT_SOCKET_ADDRESS and PATH are required, except for the
 *     one context-less call: EVENT_EXEC without JUJU_CONTEXT_ID (`juju-exec
 *     --no-context`), where has_context is false and no hook tool may be run;
 *   - JUJU_RELATION_ID, when set, is "<endpoint>:<n>" and is required in
 *     <endpoint>-relation-* hooks; JUJU_RELATION, when set, names the same endpoint;
 *     JUJU_REMOTE_UNIT is <app>/<n> and JUJU_REMOTE_APP an application name when set.
 * Variables that Juju exports as "" are treated as absent.
 *
 * Ownership: request_parse fills *out with memory it allocates; request_free releases
 * it. Every `const char *` in struct hook_event points into that memory (or is a string
 * literal) and stays valid until request_free. Error messages (*err) are malloc'd, owned
 * by the caller, and never contain environment values (they may be secrets); they may
 * name variables.
 */
#ifndef PG_AGENT_REQUEST_H
#define PG_AGENT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#define REQUEST_MAX_VALUE ((size_t)65536) /* 64 KiB */
#define REQUEST_MAX_NAME ((size_t)128)

enum event_kind {
    EVENT_HOOK = 1, /* a Juju hook */
    EVENT_ACTION,   /* an action */
    EVENT_CUSTOM,   /* an event the charm raised itself through juju-exec */
    EVENT_EXEC,     /* juju-exec / juju exec running dispatch without an event: reconcile */
};

struct env_var {
    const char *name;
    const char *value;
};

struct hook_event {
    enum event_kind kind;
    const char *name; /* hook, action or custom event name; "reconcile" for EVENT_EXEC */

    const char *unit;      /* JUJU_UNIT_NAME */
    const char *model;     /* JUJU_MODEL_NAME */
    const char *charm_dir; /* JUJU_CHARM_DIR, else CHARM_DIR */

    bool has_context;           /* hook tools may be run */
    const char *context_id;     /* JUJU_CONTEXT_ID, NULL without a context */
    const char *socket_address; /* JUJU_AGENT_SOCKET_ADDRESS, NULL without a context */

    int relation_id;         /* n of JUJU_RELATION_ID, -1 when not a relation context */
    const char *relation;    /* its endpoint, NULL when relation_id is -1 */
    const char *remote_unit; /* JUJU_REMOTE_UNIT, NULL when absent or empty */
    const char *remote_app;  /* JUJU_REMOTE_APP, NULL when absent or empty */

    /* The forwarded environment, exactly as received (including empty values), in
     * request order. envp holds the same as "NAME=VALUE" strings, NULL-terminated: it is
     * the whole environment a hook tool runs with. */
    struct env_var *env;
    size_t n_env;
    char **envp;
};

/* Parse and validate one request (json, len bytes; need not be NUL-terminated).
 * Returns 0 and fills *out, or -EINVAL (invalid request) / -ENOMEM with *err set and
 * *out left empty (safe to pass to request_free). */
int request_parse(const char *json, size_t len, struct hook_event *out, char **err);

/* Release what request_parse allocated and zero *ev. NULL and an empty struct are fine. */
void request_free(struct hook_event *ev);

/* The value of a forwarded variable, or NULL when it was not sent. */
const char *request_env(const struct hook_event *ev, const char *name);

/* The id of the relation of endpoint that this relation-broken hook is about, else -1.
 * During relation-broken the dying relation is still listed by relation-ids (juju.md):
 * callers walking the endpoint's relations skip it. */
int request_broken_relation(const struct hook_event *ev, const char *endpoint);

/* Whether rel ("<endpoint>:<id>") is the relation this relation-broken hook is about. */
bool request_is_broken_relation(const struct hook_event *ev, const char *endpoint,
                                const char *rel);

/* "hook", "action", "custom event", "exec". */
const char *event_kind_name(enum event_kind kind);

#endif
