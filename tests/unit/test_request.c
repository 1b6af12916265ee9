/* Unit tests for agent/request.c: every kind of request the relay can send, and every
 * way a request can be refused (with messages that never echo values). */
#include "check.h"

#include "proto.h"
#include "request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The variables every context has (juju.md 2.1), as JSON members. */
#define BASE                                                                                       \
    "\"JUJU_UNIT_NAME\":\"postgresql/0\",\"JUJU_MODEL_NAME\":\"dev\","                             \
    "\"JUJU_CHARM_DIR\":\"/var/lib/juju/agents/unit-postgresql-0/charm\","                         \
    "\"CHARM_DIR\":\"/var/lib/juju/agents/unit-postgresql-0/charm\","                              \
    "\"JUJU_AGENT_SOCKET_ADDRESS\":\"/var/lib/juju/agents/unit-postgresql-0/agent.socket\","       \
    "\"JUJU_AGENT_SOCKET_NETWORK\":\"unix\",\"PATH\":\"/var/lib/juju/tools/unit-postgresql-0:/"    \
    "usr/bin\""
#define CTX ",\"JUJU_CONTEXT_ID\":\"postgresql/0-install-1\""
#define BASE_CTX_N ((size_t)8) /* entries in BASE CTX */
#define REQ(members) "{\"v\":1,\"env\":{" members "}}"

static int parse(const char *json, struct hook_event *ev, char **err)
{
    *err = NULL;
    return request_parse(json, strlen(json), ev, err);
}

/* The request is refused and the message contains want (and not forbidden, if given). */
static void expect_refused(int *failed, const char *json, const char *want, const char *forbidden)
{
    struct hook_event ev;
    char *err = NULL;
    int rc = parse(json, &ev, &err);
    CHECK(rc == -EINVAL);
    CHECK(err != NULL);
    if (err && !strstr(err, want)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err, want);
        (*failed)++;
    }
    if (err && forbidden && strstr(err, forbidden)) {
        fprintf(stderr, "  message \"%s\" echoes \"%s\"\n", err, forbidden);
        (*failed)++;
    }
    CHECK(ev.env == NULL && ev.envp == NULL && ev.n_env == 0 && ev.relation == NULL);
    free(err);
    request_free(&ev);
}

TEST(hook_install)
{
    struct hook_event ev;
    char *err;
    CHECK(parse(REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/install\","
                             "\"JUJU_HOOK_NAME\":\"install\""),
                &ev, &err) == 0);
    CHECK(err == NULL);
    CHECK(ev.kind == EVENT_HOOK);
    CHECK_STR(ev.name, "install");
    CHECK_STR(ev.unit, "postgresql/0");
    CHECK_STR(ev.model, "dev");
    CHECK_STR(ev.charm_dir, "/var/lib/juju/agents/unit-postgresql-0/charm");
    CHECK(ev.has_context);
    CHECK_STR(ev.context_id, "postgresql/0-install-1");
    CHECK_STR(ev.socket_address, "/var/lib/juju/agents/unit-postgresql-0/agent.socket");
    CHECK(ev.relation_id == -1 && ev.relation == NULL);
    CHECK(ev.remote_unit == NULL && ev.remote_app == NULL);
    CHECK(ev.n_env == 10);
    CHECK_STR(request_env(&ev, "JUJU_MODEL_NAME"), "dev");
    CHECK(request_env(&ev, "JUJU_NOPE") == NULL);
    /* envp is NAME=VALUE, in request order, NULL-terminated. */
    CHECK_STR(ev.envp[0], "JUJU_UNIT_NAME=postgresql/0");
    CHECK_STR(ev.envp[9], "JUJU_HOOK_NAME=install");
    CHECK(ev.envp[10] == NULL);
    CHECK_STR(ev.env[0].name, "JUJU_UNIT_NAME");
    CHECK_STR(ev.env[0].value, "postgresql/0");
    request_free(&ev);
    CHECK(ev.env == NULL && ev.envp == NULL);
    request_free(&ev); /* twice is harmless */
    request_free(NULL);
}

TEST(relation_hook)
{
    struct hook_event ev;
    char *err;
    CHECK(parse(REQ(BASE CTX
                    ",\"JUJU_DISPATCH_PATH\":\"hooks/database-relation-changed\","
                    "\"JUJU_HOOK_NAME\":\"database-relation-changed\","
                    "\"JUJU_RELATION\":\"database\",\"JUJU_RELATION_ID\":\"database:17\","
                    "\"JUJU_REMOTE_UNIT\":\"pgbouncer/2\",\"JUJU_REMOTE_APP\":\"pgbouncer\""),
                &ev, &err) == 0);
    CHECK(ev.kind == EVENT_HOOK);
    CHECK_STR(ev.name, "database-relation-changed");
    CHECK(ev.relation_id == 17);
    CHECK_STR(ev.relation, "database");
    CHECK_STR(ev.remote_unit, "pgbouncer/2");
    CHECK_STR(ev.remote_app, "pgbouncer");
    request_free(&ev);

    /* App data changed / created / broken: empty JUJU_REMOTE_UNIT is "none". */
    CHECK(parse(REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/database-relation-broken\","
                             "\"JUJU_HOOK_NAME\":\"database-relation-broken\","
                             "\"JUJU_RELATION_ID\":\"database:0\",\"JUJU_REMOTE_UNIT\":\"\","
                             "\"JUJU_REMOTE_APP\":\"\""),
                &ev, &err) == 0);
    CHECK(ev.relation_id == 0);
    CHECK(ev.remote_unit == NULL && ev.remote_app == NULL);
    request_free(&ev);
}

TEST(action)
{
    struct hook_event ev;
    char *err;
    CHECK(parse(REQ(BASE ",\"JUJU_CONTEXT_ID\":\"postgresql/0-get-password-9\","
                         "\"JUJU_DISPATCH_PATH\":\"actions/get-password\","
                         "\"JUJU_ACTION_NAME\":\"get-password\",\"JUJU_ACTION_UUID\":\"42\","
                         "\"JUJU_HOOK_NAME\":\"\""),
                &ev, &err) == 0);
    CHECK(ev.kind == EVENT_ACTION);
    CHECK_STR(ev.name, "get-password");
    CHECK(ev.has_context);
    request_free(&ev);
}

TEST(custom_event)
{
    struct hook_event ev;
    char *err;
    CHECK(
        parse(REQ(BASE ",\"JUJU_CONTEXT_ID\":\"postgresql/0-run-commands-3\","
                       "\"JUJU_DISPATCH_PATH\":\"hooks/primary-changed\",\"JUJU_HOOK_NAME\":\"\""),
              &ev, &err) == 0);
    CHECK(ev.kind == EVENT_CUSTOM);
    CHECK_STR(ev.name, "primary-changed");
    request_free(&ev);
    /* JUJU_HOOK_NAME absent altogether is the same. */
    CHECK(parse(REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/primary-changed\""), &ev, &err) == 0);
    CHECK(ev.kind == EVENT_CUSTOM);
    request_free(&ev);
}

TEST(exec_reconcile)
{
    struct hook_event ev;
    char *err;
    CHECK(parse(REQ(BASE ",\"JUJU_CONTEXT_ID\":\"postgresql/0-run-commands-4\","
                         "\"JUJU_HOOK_NAME\":\"\""),
                &ev, &err) == 0);
    CHECK(ev.kind == EVENT_EXEC);
    CHECK_STR(ev.name, "reconcile");
    CHECK(ev.has_context);
    request_free(&ev);
    /* juju-exec -r db:3: relation variables in an exec context. */
    CHECK(parse(REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:3\",\"JUJU_REMOTE_APP\":\"app\""), &ev,
                &err) == 0);
    CHECK(ev.kind == EVENT_EXEC && ev.relation_id == 3);
    CHECK_STR(ev.relation, "db");
    request_free(&ev);
}

TEST(context_less_exec)
{
    struct hook_event ev;
    char *err;
    /* juju-exec --no-context: no JUJU_CONTEXT_ID, and then neither socket nor PATH. */
    CHECK(parse(REQ("\"JUJU_UNIT_NAME\":\"postgresql/0\",\"JUJU_MODEL_NAME\":\"dev\","
                    "\"CHARM_DIR\":\"/srv/charm\""),
                &ev, &err) == 0);
    CHECK(ev.kind == EVENT_EXEC);
    CHECK(!ev.has_context);
    CHECK(ev.context_id == NULL && ev.socket_address == NULL);
    CHECK_STR(ev.charm_dir, "/srv/charm");
    request_free(&ev);
    /* An empty JUJU_CONTEXT_ID is no context either. */
    CHECK(parse(REQ(BASE ",\"JUJU_CONTEXT_ID\":\"\""), &ev, &err) == 0);
    CHECK(!ev.has_context);
    request_free(&ev);
}

TEST(charm_dir_choice)
{
    struct hook_event ev;
    char *err;
    CHECK(parse(REQ("\"JUJU_UNIT_NAME\":\"a/1\",\"JUJU_MODEL_NAME\":\"m\","
                    "\"CHARM_DIR\":\"/old\",\"JUJU_CHARM_DIR\":\"/new\""),
                &ev, &err) == 0);
    CHECK_STR(ev.charm_dir, "/new");
    request_free(&ev);
    CHECK(parse(REQ("\"JUJU_UNIT_NAME\":\"a/1\",\"JUJU_MODEL_NAME\":\"m\","
                    "\"CHARM_DIR\":\"/old\",\"JUJU_CHARM_DIR\":\"\""),
                &ev, &err) == 0);
    CHECK_STR(ev.charm_dir, "/old");
    request_free(&ev);
}

/* A request built piece by piece (open_memstream: no fixed-size buffers to get wrong). */
struct builder {
    FILE *f;
    char *buf;
    size_t len;
};

static void build_start(struct builder *b, const char *head)
{
    b->buf = NULL;
    b->len = 0;
    b->f = open_memstream(&b->buf, &b->len);
    if (b->f)
        fputs(head, b->f);
}

static void build_repeat(struct builder *b, char c, size_t n)
{
    for (size_t i = 0; b->f && i < n; i++)
        fputc(c, b->f);
}

/* Entries JUJU_X<from> .. JUJU_X<to - 1>, each with an empty value. */
static void build_entries(struct builder *b, size_t from, size_t to)
{
    for (size_t i = from; b->f && i < to; i++)
        fprintf(b->f, ",\"JUJU_X%zu\":\"\"", i);
}

/* Finish; returns the text (free it) or NULL. */
static char *build_end(struct builder *b, const char *tail)
{
    if (!b->f)
        return NULL;
    fputs(tail, b->f);
    if (fclose(b->f) != 0) {
        free(b->buf);
        return NULL;
    }
    return b->buf;
}

TEST(limits_accepted)
{
    /* Exactly PROTO_MAX_ENV entries and a value of exactly REQUEST_MAX_VALUE bytes. */
    struct builder b;
    build_start(&b, "{\"v\":1,\"env\":{" BASE CTX ",\"BIG\":\"");
    build_repeat(&b, 'x', REQUEST_MAX_VALUE);
    if (b.f)
        fputc('"', b.f);
    build_entries(&b, BASE_CTX_N + 1, PROTO_MAX_ENV);
    char *json = build_end(&b, "}}");
    CHECK(json != NULL);
    if (!json)
        return;
    struct hook_event ev;
    char *err;
    int rc = parse(json, &ev, &err);
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "  %s\n", err ? err : "?");
    CHECK(ev.n_env == PROTO_MAX_ENV);
    CHECK(request_env(&ev, "BIG") && strlen(request_env(&ev, "BIG")) == REQUEST_MAX_VALUE);
    request_free(&ev);
    free(err);
    free(json);
}

TEST(too_many_entries)
{
    struct builder b;
    build_start(&b, "{\"v\":1,\"env\":{" BASE CTX);
    build_entries(&b, BASE_CTX_N, PROTO_MAX_ENV + 1); /* one more than allowed */
    char *json = build_end(&b, "}}");
    CHECK(json != NULL);
    if (!json)
        return;
    expect_refused(failed, json, "more than the limit", NULL);
    free(json);
}

TEST(oversize_value)
{
    struct builder b;
    build_start(&b, "{\"v\":1,\"env\":{" BASE CTX ",\"BIG\":\"");
    build_repeat(&b, 'y', REQUEST_MAX_VALUE + 1);
    char *json = build_end(&b, "\"}}");
    CHECK(json != NULL);
    if (!json)
        return;
    expect_refused(failed, json, "env value of BIG is longer than", "yyyy");
    free(json);
}

TEST(not_json_or_not_object)
{
    expect_refused(failed, "", "not valid JSON", NULL);
    expect_refused(failed, "{\"v\":1,\"env\":{\"SECRET\":\"hunter2", "not valid JSON", "hunter2");
    expect_refused(failed, "nonsense-hunter2", "not valid JSON", "hunter2");
    expect_refused(failed, "[1,2]", "not a JSON object", NULL);
    expect_refused(failed, "\"str\"", "not valid JSON", NULL); /* jansson: objects/arrays only */
    expect_refused(failed, "{\"v\":1,\"env\":{}} trailing", "not valid JSON", NULL);
    /* Duplicate keys are refused, not silently merged. */
    expect_refused(failed, REQ(BASE CTX ",\"PATH\":\"/x\""), "not valid JSON", NULL);

    struct hook_event ev;
    char *err = NULL;
    CHECK(request_parse(NULL, 0, &ev, &err) == -EINVAL);
    free(err);
}

TEST(version_and_shape)
{
    expect_refused(failed, "{\"env\":{" BASE CTX "}}", "no protocol version", NULL);
    expect_refused(failed, "{\"v\":2,\"env\":{" BASE CTX "}}", "unsupported protocol version",
                   NULL);
    expect_refused(failed, "{\"v\":\"1\",\"env\":{" BASE CTX "}}", "unsupported protocol version",
                   NULL);
    expect_refused(failed, "{\"v\":1.0,\"env\":{" BASE CTX "}}", "unsupported protocol version",
                   NULL);
    expect_refused(failed, "{\"v\":1}", "no \"env\" object", NULL);
    expect_refused(failed, "{\"v\":1,\"env\":[]}", "no \"env\" object", NULL);
    expect_refused(failed, "{\"v\":1,\"env\":{" BASE CTX "},\"x\":1}", "members other than", NULL);
}

TEST(bad_names)
{
    expect_refused(failed, REQ(BASE CTX ",\"lower_case\":\"v\""), "invalid name", "lower_case");
    expect_refused(failed, REQ(BASE CTX ",\"1ABC\":\"v\""), "invalid name", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"A-B\":\"v\""), "invalid name", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"\":\"v\""), "invalid name", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"A B\":\"v\""), "invalid name", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"\\u00c9T\":\"v\""), "invalid name", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"A\\u0000B\":\"v\""), "not valid JSON", NULL);
    struct builder b;
    build_start(&b, "{\"v\":1,\"env\":{" BASE CTX ",\"");
    build_repeat(&b, 'N', REQUEST_MAX_NAME + 1); /* one character too long */
    char *json = build_end(&b, "\":\"v\"}}");
    CHECK(json != NULL);
    if (json)
        expect_refused(failed, json, "invalid name", NULL);
    free(json);
    /* _ leading and digits after the first character are fine. */
    struct hook_event ev;
    char *err;
    CHECK(parse(REQ(BASE CTX ",\"_X9\":\"v\""), &ev, &err) == 0);
    request_free(&ev);
}

TEST(non_string_values)
{
    expect_refused(failed, REQ(BASE CTX ",\"N\":1"), "env value of N is not a string", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"N\":null"), "not a string", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"N\":true"), "not a string", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"N\":[\"a\"]"), "not a string", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"N\":{\"a\":\"b\"}"), "not a string", NULL);
    /* NUL inside a value: jansson refuses it before we see it. */
    expect_refused(failed, REQ(BASE CTX ",\"N\":\"a\\u0000secret\""), "not valid JSON", "secret");
}

TEST(missing_required)
{
    expect_refused(failed,
                   REQ("\"JUJU_MODEL_NAME\":\"dev\",\"CHARM_DIR\":\"/c\"" CTX
                       ",\"JUJU_AGENT_SOCKET_ADDRESS\":\"/s\",\"PATH\":\"/p\""),
                   "JUJU_UNIT_NAME is missing", NULL);
    expect_refused(failed,
                   REQ("\"JUJU_UNIT_NAME\":\"\",\"JUJU_MODEL_NAME\":\"dev\",\"CHARM_DIR\":\"/c\""),
                   "JUJU_UNIT_NAME is missing", NULL);
    expect_refused(failed, REQ("\"JUJU_UNIT_NAME\":\"a/0\",\"CHARM_DIR\":\"/c\""),
                   "JUJU_MODEL_NAME is missing", NULL);
    expect_refused(failed, REQ("\"JUJU_UNIT_NAME\":\"a/0\",\"JUJU_MODEL_NAME\":\"m\""),
                   "JUJU_CHARM_DIR and CHARM_DIR are both missing", NULL);
    expect_refused(
        failed, REQ("\"JUJU_UNIT_NAME\":\"a/0\",\"JUJU_MODEL_NAME\":\"m\",\"CHARM_DIR\":\"rel\""),
        "not an absolute path", "rel");
    /* Context required for hooks, actions and custom events. */
    expect_refused(
        failed,
        REQ(BASE ",\"JUJU_DISPATCH_PATH\":\"hooks/install\",\"JUJU_HOOK_NAME\":\"install\""),
        "JUJU_CONTEXT_ID is missing for this hook", NULL);
    expect_refused(failed,
                   REQ(BASE ",\"JUJU_DISPATCH_PATH\":\"actions/a\",\"JUJU_ACTION_NAME\":\"a\""),
                   "JUJU_CONTEXT_ID is missing for this action", NULL);
    expect_refused(failed, REQ(BASE ",\"JUJU_DISPATCH_PATH\":\"hooks/custom\""),
                   "JUJU_CONTEXT_ID is missing for this custom event", NULL);
    expect_refused(
        failed,
        REQ("\"JUJU_UNIT_NAME\":\"a/0\",\"JUJU_MODEL_NAME\":\"m\",\"CHARM_DIR\":\"/c\"" CTX
            ",\"PATH\":\"/p\""),
        "JUJU_AGENT_SOCKET_ADDRESS is missing", NULL);
    expect_refused(
        failed,
        REQ("\"JUJU_UNIT_NAME\":\"a/0\",\"JUJU_MODEL_NAME\":\"m\",\"CHARM_DIR\":\"/c\"" CTX
            ",\"JUJU_AGENT_SOCKET_ADDRESS\":\"/s\""),
        "PATH is missing", NULL);
}

TEST(bad_event)
{
    expect_refused(
        failed,
        REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/install\",\"JUJU_HOOK_NAME\":\"start\""),
        "JUJU_HOOK_NAME does not match", "start");
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_HOOK_NAME\":\"install\""),
                   "JUJU_DISPATCH_PATH is not", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"bin/sh\""),
                   "neither hooks/<name> nor actions/<name>", "bin/sh");
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/../../x\""),
                   "invalid hook", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/\""), "invalid hook",
                   NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/Install\""),
                   "invalid hook", NULL);
    expect_refused(
        failed,
        REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"actions/a b\",\"JUJU_ACTION_NAME\":\"a b\""),
        "invalid action", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"actions/backup\""),
                   "JUJU_ACTION_NAME is missing", NULL);
    expect_refused(
        failed,
        REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"actions/backup\",\"JUJU_ACTION_NAME\":\"restore\""),
        "JUJU_ACTION_NAME does not match", "restore");
}

TEST(bad_units_and_relations)
{
    expect_refused(
        failed,
        REQ("\"JUJU_UNIT_NAME\":\"postgresql\",\"JUJU_MODEL_NAME\":\"m\",\"CHARM_DIR\":\"/c\""),
        "JUJU_UNIT_NAME is not", "postgresql");
    expect_refused(
        failed, REQ("\"JUJU_UNIT_NAME\":\"pg/x\",\"JUJU_MODEL_NAME\":\"m\",\"CHARM_DIR\":\"/c\""),
        "JUJU_UNIT_NAME is not", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"17\""),
                   "JUJU_RELATION_ID is not <endpoint>:<number>", "17");
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:\""), "JUJU_RELATION_ID is not",
                   NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\":3\""), "JUJU_RELATION_ID is not",
                   NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:-3\""),
                   "JUJU_RELATION_ID is not", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:+3\""),
                   "JUJU_RELATION_ID is not", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:3x\""),
                   "JUJU_RELATION_ID is not", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:1:2\""),
                   "JUJU_RELATION_ID is not", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:2147483648\""),
                   "JUJU_RELATION_ID is not", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"Db:1\""),
                   "JUJU_RELATION_ID is not", NULL);
    expect_refused(failed,
                   REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:1\",\"JUJU_RELATION\":\"other\""),
                   "JUJU_RELATION does not match", "other");
    expect_refused(failed,
                   REQ(BASE CTX ",\"JUJU_DISPATCH_PATH\":\"hooks/db-relation-joined\","
                                "\"JUJU_HOOK_NAME\":\"db-relation-joined\""),
                   "JUJU_RELATION_ID is missing for a relation hook", NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_REMOTE_UNIT\":\"app\""), "JUJU_REMOTE_UNIT is not",
                   NULL);
    expect_refused(failed, REQ(BASE CTX ",\"JUJU_REMOTE_APP\":\"App/0\""), "JUJU_REMOTE_APP is not",
                   NULL);

    struct hook_event ev;
    char *err;
    CHECK(parse(REQ(BASE CTX ",\"JUJU_RELATION_ID\":\"db:2147483647\""), &ev, &err) == 0);
    CHECK(ev.relation_id == 2147483647);
    request_free(&ev);
}

TEST(kind_names)
{
    CHECK_STR(event_kind_name(EVENT_HOOK), "hook");
    CHECK_STR(event_kind_name(EVENT_ACTION), "action");
    CHECK_STR(event_kind_name(EVENT_CUSTOM), "custom event");
    CHECK_STR(event_kind_name(EVENT_EXEC), "exec");
    CHECK_STR(event_kind_name((enum event_kind)99), "unknown");
}

CHECK_MAIN("request", CASE(hook_install), CASE(relation_hook), CASE(action), CASE(custom_event),
           CASE(exec_reconcile), CASE(context_less_exec), CASE(charm_dir_choice),
           CASE(limits_accepted), CASE(too_many_entries), CASE(oversize_value),
           CASE(not_json_or_not_object), CASE(version_and_shape), CASE(bad_names),
           CASE(non_string_values), CASE(missing_required), CASE(bad_event),
           CASE(bad_units_and_relations), CASE(kind_names))
