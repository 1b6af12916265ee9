/* Validation of the relay's request (request.h): JSON in, struct hook_event out, with
 * the event kind decided by juju.md's dispatch table and every field checked. */
#include "request.h"

#include "errmsg.h"
#include "proto.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *const relation_hook_suffixes[] = {
    "-relation-created",  "-relation-joined", "-relation-changed",
    "-relation-departed", "-relation-broken",
};

const char *event_kind_name(enum event_kind kind)
{
    switch (kind) {
    case EVENT_HOOK:
        return "hook";
    case EVENT_ACTION:
        return "action";
    case EVENT_CUSTOM:
        return "custom event";
    case EVENT_EXEC:
        return "exec";
    default:
        return "unknown";
    }
}

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ^[A-Z_][A-Z0-9_]*$, at most REQUEST_MAX_NAME characters. */
static bool valid_env_name(const char *s, size_t len)
{
    if (len == 0 || len > REQUEST_MAX_NAME || !(is_upper(s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(is_upper(s[i]) || is_digit(s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* Hook, action, custom event and endpoint names: ^[a-z][a-z0-9_-]*$, at most 128. */
static bool valid_event_name(const char *s, size_t len)
{
    if (len == 0 || len > 128 || !is_lower(s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(is_lower(s[i]) || is_digit(s[i]) || s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

/* Application names: ^[a-z][a-z0-9-]*$, at most 128. */
static bool valid_app_name(const char *s, size_t len)
{
    if (len == 0 || len > 128 || !is_lower(s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(is_lower(s[i]) || is_digit(s[i]) || s[i] == '-'))
            return false;
    return true;
}

/* Decimal digits only, no sign, fits an int. */
static bool parse_uint(const char *s, size_t len, int *out)
{
    if (len == 0)
        return false;
    long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
        if (v > INT_MAX)
            return false;
    }
    *out = (int)v;
    return true;
}

/* <app>/<n> */
static bool valid_unit_name(const char *s)
{
    const char *slash = strchr(s, '/');
    int n;
    return slash && valid_app_name(s, (size_t)(slash - s)) &&
           parse_uint(slash + 1, strlen(slash + 1), &n);
}

const char *request_env(const struct hook_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_env; i++) {
        const struct env_var *e = &ev->env[i];
        if (e->name && strcmp(e->name, name) == 0)
            return e->value;
    }
    return NULL;
}

int request_broken_relation(const struct hook_event *ev, const char *endpoint)
{
    if (ev->kind != EVENT_HOOK || !ev->relation || ev->relation_id < 0 ||
        strcmp(ev->relation, endpoint) != 0 || !strstr(ev->name, "-relation-broken"))
        return -1;
    return ev->relation_id;
}

bool request_is_broken_relation(const struct hook_event *ev, const char *endpoint,
                                const char *rel)
{
    int id = request_broken_relation(ev, endpoint);
    if (id < 0 || !rel)
        return false;
    char dying[128];
    snprintf(dying, sizeof dying, "%s:%d", endpoint, id);
    return strcmp(dying, rel) == 0;
}

/* The value when it was sent and is not empty, else NULL. */
static const char *env_nonempty(const struct hook_event *ev, const char *name)
{
    const char *v = request_env(ev, name);
    return v && *v ? v : NULL;
}

void request_free(struct hook_event *ev)
{
    if (!ev)
        return;
    if (ev->envp) {
        for (char **p = ev->envp; *p; p++) /* NULL-terminated, also when half filled */
            free(*p);
        free(ev->envp);
    }
    free(ev->env);
    /* relation is the only field that owns a separate allocation. */
    free((char *)ev->relation);
    *ev = (struct hook_event){.relation_id = -1};
}

/* Copy the env object into ev->env / ev->envp. Each entry is one allocation laid out as
 * "NAME=VALUE\0NAME\0": envp[i] points at its start, env[i].value and env[i].name into it. */
static int copy_env(json_t *env, struct hook_event *ev, char **err)
{
    size_t n = json_object_size(env);
    if (n > PROTO_MAX_ENV)
        return errmsg_set(err, -EINVAL, "env has %zu entries, more than the limit of %u", n,
                          PROTO_MAX_ENV);
    ev->env = calloc(n ? n : 1, sizeof *ev->env);
    ev->envp = calloc(n + 1, sizeof *ev->envp);
    if (!ev->env || !ev->envp)
        return errmsg_set(err, -ENOMEM, "out of memory");

    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach(env, key, val)
    {
        size_t klen = strlen(key); /* jansson refuses \u0000 in keys without JSON_ALLOW_NUL */
        if (!valid_env_name(key, klen))
            return errmsg_set(err, -EINVAL,
                              "env entry %zu has an invalid name (want ^[A-Z_][A-Z0-9_]*$, "
                              "at most %zu characters)",
                              i + 1, REQUEST_MAX_NAME);
        if (!json_is_string(val))
            return errmsg_set(err, -EINVAL, "env value of %s is not a string", key);
        size_t vlen = json_string_length(val);
        if (vlen > REQUEST_MAX_VALUE)
            return errmsg_set(err, -EINVAL, "env value of %s is longer than %zu bytes", key,
                              REQUEST_MAX_VALUE);
        const char *v = json_string_value(val);
        if (memchr(v, '\0', vlen))
            return errmsg_set(err, -EINVAL, "env value of %s contains a NUL byte", key);
        char *entry = malloc(klen + 1 + vlen + 1 + klen + 1);
        if (!entry)
            return errmsg_set(err, -ENOMEM, "out of memory");
        ev->envp[i] = entry; /* owned by ev from here on (request_free) */
        /* Every copy is bounded by the allocation just above. */
        char *p = entry;
        memcpy(p, key, klen);
        p += klen;
        *p++ = '=';
        memcpy(p, v, vlen);
        p[vlen] = '\0';
        ev->env[i].value = p;
        p += vlen + 1;
        memcpy(p, key, klen + 1);
        ev->env[i].name = p;
        ev->n_env = ++i;
    }
    return 0;
}

static bool is_relation_hook(const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof relation_hook_suffixes / sizeof relation_hook_suffixes[0]; i++) {
        size_t sl = strlen(relation_hook_suffixes[i]);
        if (len > sl && strcmp(name + len - sl, relation_hook_suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* Event kind and name from JUJU_DISPATCH_PATH, JUJU_HOOK_NAME, JUJU_ACTION_NAME. */
static int classify(struct hook_event *ev, char **err)
{
    const char *path = env_nonempty(ev, "JUJU_DISPATCH_PATH");
    const char *hook = env_nonempty(ev, "JUJU_HOOK_NAME");

    if (!path) {
        if (hook)
            return errmsg_set(err, -EINVAL, "JUJU_HOOK_NAME is set but JUJU_DISPATCH_PATH is not");
        ev->kind = EVENT_EXEC;
        ev->name = "reconcile";
        return 0;
    }
    if (strncmp(path, "actions/", 8) == 0) {
        const char *name = path + 8;
        if (!valid_event_name(name, strlen(name)))
            return errmsg_set(err, -EINVAL, "JUJU_DISPATCH_PATH names an invalid action");
        const char *action = env_nonempty(ev, "JUJU_ACTION_NAME");
        if (!action)
            return errmsg_set(err, -EINVAL, "JUJU_ACTION_NAME is missing for an action");
        if (strcmp(action, name) != 0)
            return errmsg_set(err, -EINVAL, "JUJU_ACTION_NAME does not match JUJU_DISPATCH_PATH");
        ev->kind = EVENT_ACTION;
        ev->name = name;
        return 0;
    }
    if (strncmp(path, "hooks/", 6) == 0) {
        const char *name = path + 6;
        if (!valid_event_name(name, strlen(name)))
            return errmsg_set(err, -EINVAL, "JUJU_DISPATCH_PATH names an invalid hook");
        if (hook && strcmp(hook, name) != 0)
            return errmsg_set(err, -EINVAL, "JUJU_HOOK_NAME does not match JUJU_DISPATCH_PATH");
        ev->kind = hook ? EVENT_HOOK : EVENT_CUSTOM;
        ev->name = name;
        return 0;
    }
    return errmsg_set(err, -EINVAL,
                      "JUJU_DISPATCH_PATH is neither hooks/<name> nor actions/<name>");
}

/* relation_id, relation, remote_unit, remote_app. */
static int parse_relation(struct hook_event *ev, char **err)
{
    ev->relation_id = -1;
    const char *rid = env_nonempty(ev, "JUJU_RELATION_ID");
    if (rid) {
        const char *colon = strchr(rid, ':');
        int id;
        if (!colon || !valid_event_name(rid, (size_t)(colon - rid)) ||
            !parse_uint(colon + 1, strlen(colon + 1), &id))
            return errmsg_set(err, -EINVAL, "JUJU_RELATION_ID is not <endpoint>:<number>");
        char *ep = strndup(rid, (size_t)(colon - rid));
        if (!ep)
            return errmsg_set(err, -ENOMEM, "out of memory");
        ev->relation = ep;
        ev->relation_id = id;
        const char *endpoint = env_nonempty(ev, "JUJU_RELATION");
        if (endpoint && strcmp(endpoint, ep) != 0)
            return errmsg_set(err, -EINVAL, "JUJU_RELATION does not match JUJU_RELATION_ID");
    } else if (ev->kind == EVENT_HOOK && is_relation_hook(ev->name)) {
        return errmsg_set(err, -EINVAL, "JUJU_RELATION_ID is missing for a relation hook");
    }

    ev->remote_unit = env_nonempty(ev, "JUJU_REMOTE_UNIT");
    if (ev->remote_unit && !valid_unit_name(ev->remote_unit))
        return errmsg_set(err, -EINVAL, "JUJU_REMOTE_UNIT is not <application>/<number>");
    ev->remote_app = env_nonempty(ev, "JUJU_REMOTE_APP");
    if (ev->remote_app && !valid_app_name(ev->remote_app, strlen(ev->remote_app)))
        return errmsg_set(err, -EINVAL, "JUJU_REMOTE_APP is not an application name");
    return 0;
}

/* Everything after the env copy: required variables, kind, context, relation. */
static int validate(struct hook_event *ev, char **err)
{
    ev->unit = env_nonempty(ev, "JUJU_UNIT_NAME");
    if (!ev->unit)
        return errmsg_set(err, -EINVAL, "JUJU_UNIT_NAME is missing");
    if (!valid_unit_name(ev->unit))
        return errmsg_set(err, -EINVAL, "JUJU_UNIT_NAME is not <application>/<number>");
    ev->model = env_nonempty(ev, "JUJU_MODEL_NAME");
    if (!ev->model)
        return errmsg_set(err, -EINVAL, "JUJU_MODEL_NAME is missing");
    ev->charm_dir = env_nonempty(ev, "JUJU_CHARM_DIR");
    if (!ev->charm_dir)
        ev->charm_dir = env_nonempty(ev, "CHARM_DIR");
    if (!ev->charm_dir)
        return errmsg_set(err, -EINVAL, "JUJU_CHARM_DIR and CHARM_DIR are both missing");
    if (ev->charm_dir[0] != '/')
        return errmsg_set(err, -EINVAL, "the charm directory is not an absolute path");

    int rc = classify(ev, err);
    if (rc < 0)
        return rc;

    ev->context_id = env_nonempty(ev, "JUJU_CONTEXT_ID");
    ev->has_context = ev->context_id != NULL;
    if (!ev->has_context && ev->kind != EVENT_EXEC)
        return errmsg_set(err, -EINVAL, "JUJU_CONTEXT_ID is missing for this %s",
                          event_kind_name(ev->kind));
    if (ev->has_context) {
        ev->socket_address = env_nonempty(ev, "JUJU_AGENT_SOCKET_ADDRESS");
        if (!ev->socket_address)
            return errmsg_set(err, -EINVAL, "JUJU_AGENT_SOCKET_ADDRESS is missing");
        if (!env_nonempty(ev, "PATH"))
            return errmsg_set(err, -EINVAL, "PATH is missing (hook tools are found through it)");
    }
    return parse_relation(ev, err);
}

int request_parse(const char *json, size_t len, struct hook_event *out, char **err)
{
    *out = (struct hook_event){.relation_id = -1};
    if (!json)
        return errmsg_set(err, -EINVAL, "empty request");

    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        /* jerr.text can quote the input ("near '...'"): report the position only. */
        return errmsg_set(err, -EINVAL, "request is not valid JSON (error at byte %d)",
                          jerr.position);

    int rc = -EINVAL;
    if (!json_is_object(root)) {
        rc = errmsg_set(err, -EINVAL, "request is not a JSON object");
        goto out;
    }
    json_t *v = json_object_get(root, "v");
    json_t *env = json_object_get(root, "env");
    if (json_object_size(root) != (size_t)(v != NULL) + (size_t)(env != NULL)) {
        rc = errmsg_set(err, -EINVAL, "request has members other than \"v\" and \"env\"");
        goto out;
    }
    if (!v) {
        rc = errmsg_set(err, -EINVAL, "request has no protocol version \"v\"");
        goto out;
    }
    if (!json_is_integer(v) || json_integer_value(v) != PROTO_VERSION) {
        rc = errmsg_set(err, -EINVAL, "unsupported protocol version (this agent speaks %d)",
                        PROTO_VERSION);
        goto out;
    }
    if (!json_is_object(env)) {
        rc = errmsg_set(err, -EINVAL, "request has no \"env\" object");
        goto out;
    }
    rc = copy_env(env, out, err);
    if (rc == 0)
        rc = validate(out, err);
out:
    json_decref(root);
    if (rc < 0)
        request_free(out);
    return rc;
}
