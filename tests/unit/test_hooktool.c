/* Unit tests for agent/hooktool.c against small fake tools in a temporary directory:
 * exact environment, argv, stdin, exit codes, capture limits, fds, errors, JSON helpers. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "check.h"

#include "hooktool.h"
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/test-hooktool-XXXXXX";
static int keepalives;

static void count_keepalive(void)
{
    keepalives++;
}

static void write_tool(const char *name, const char *body)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        abort();
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(path, 0755);
    free(path);
}

/* A hook event whose PATH and charm directory are the temporary directory. */
static int make_event(struct hook_event *ev, int with_context)
{
    char *json = NULL;
    if (asprintf(&json,
                 "{\"v\":1,\"env\":{\"JUJU_UNIT_NAME\":\"pg/0\",\"JUJU_MODEL_NAME\":\"m\","
                 "\"CHARM_DIR\":\"%s\",\"PATH\":\"relative:%s\",\"JUJU_VERSION\":\"3.6.4\"%s}}",
                 dir, dir,
                 with_context ? ",\"JUJU_CONTEXT_ID\":\"pg/0-install-1\","
                                "\"JUJU_AGENT_SOCKET_ADDRESS\":\"/x.sock\""
                              : "") < 0)
        abort();
    char *err = NULL;
    int rc = request_parse(json, strlen(json), ev, &err);
    if (rc)
        fprintf(stderr, "  request_parse: %s\n", err ? err : "?");
    free(err);
    free(json);
    return rc;
}

TEST(argv_exit_code_and_cwd)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    const char *argv[] = {"t-args", "a", "b c", "", NULL};
    struct hooktool_result res;
    char *err = NULL;
    CHECK(hooktool_run(&ev, argv, NULL, 0, &res, &err) == 0);
    char *want = NULL;
    if (asprintf(&want, "[a] [b c] [] cwd=%s\n", dir) < 0)
        abort();
    CHECK_STR(res.out, want);
    CHECK(res.exit_code == 7);
    CHECK_STR(res.err, "to stderr\n");
    CHECK(!res.truncated);
    free(want);
    hooktool_result_free(&res);
    request_free(&ev);
    free(err);
}

TEST(exact_environment)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    const char *argv[] = {"t-env", NULL};
    struct hooktool_result res;
    char *err = NULL;
    CHECK(hooktool_run(&ev, argv, NULL, 0, &res, &err) == 0);
    /* env(1) prints its environment in order: exactly the forwarded one. */
    size_t off = 0;
    for (size_t i = 0; i < ev.n_env; i++) {
        size_t n = strlen(ev.envp[i]);
        CHECK(off + n < res.out_len + 1 && strncmp(res.out + off, ev.envp[i], n) == 0 &&
              res.out[off + n] == '\n');
        off += n + 1;
    }
    CHECK(off == res.out_len);
    hooktool_result_free(&res);
    request_free(&ev);
    free(err);
}

TEST(stdin_binary_and_large)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    const char *argv[] = {"t-cat", NULL};
    struct hooktool_result res;
    char *err = NULL;
    static const char small[] = "he\0llo";
    CHECK(hooktool_run(&ev, argv, small, sizeof small - 1, &res, &err) == 0);
    CHECK(res.out_len == sizeof small - 1 && memcmp(res.out, small, sizeof small - 1) == 0);
    hooktool_result_free(&res);

    /* Bigger than any pipe buffer both ways: no deadlock between feeding and reading. */
    size_t big_len = 3u << 20;
    char *big = malloc(big_len);
    CHECK(big != NULL);
    if (big) {
        for (size_t i = 0; i < big_len; i++)
            big[i] = (char)('a' + i % 26);
        CHECK(hooktool_run(&ev, argv, big, big_len, &res, &err) == 0);
        CHECK(res.out_len == big_len && memcmp(res.out, big, big_len) == 0);
        hooktool_result_free(&res);
        free(big);
    }
    /* Empty stdin: EOF at once. */
    CHECK(hooktool_run(&ev, argv, "", 0, &res, &err) == 0);
    CHECK(res.out_len == 0 && res.exit_code == 0);
    hooktool_result_free(&res);
    request_free(&ev);
    free(err);
}

TEST(output_is_bounded)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    const char *argv[] = {"t-flood", NULL};
    struct hooktool_result res;
    char *err = NULL;
    CHECK(hooktool_run(&ev, argv, NULL, 0, &res, &err) == 0);
    CHECK(res.truncated);
    CHECK(res.out_len == HOOKTOOL_MAX_OUTPUT);
    CHECK(res.exit_code == 0);
    hooktool_result_free(&res);
    json_t *j = NULL;
    CHECK(hooktool_json(&ev, argv, &j, &err) == -1);
    CHECK(j == NULL);
    CHECK(err && strstr(err, "printed more than"));
    request_free(&ev);
    free(err);
}

TEST(no_inherited_fds_and_signals)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    int fd = dup2(2, 77); /* not close-on-exec */
    CHECK(fd == 77);
    const char *argv[] = {"t-fds", NULL};
    struct hooktool_result res;
    char *err = NULL;
    CHECK(hooktool_run(&ev, argv, NULL, 0, &res, &err) == 0);
    CHECK_STR(res.out, "clean\n");
    hooktool_result_free(&res);
    close(77);

    const char *kill_argv[] = {"t-killed", NULL};
    CHECK(hooktool_run(&ev, kill_argv, NULL, 0, &res, &err) == 0);
    CHECK(res.exit_code == 128 + 9);
    hooktool_result_free(&res);
    request_free(&ev);
    free(err);
}

TEST(run_errors)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    struct hooktool_result res;
    char *err = NULL;
    const char *missing[] = {"t-missing", NULL};
    CHECK(hooktool_run(&ev, missing, NULL, 0, &res, &err) == -ENOENT);
    CHECK(err && strstr(err, "t-missing: not found on the hook's PATH"));
    CHECK(res.out == NULL && res.err == NULL);
    const char *slash[] = {"/bin/true", NULL};
    CHECK(hooktool_run(&ev, slash, NULL, 0, &res, &err) == -EINVAL);
    const char *empty[] = {NULL};
    CHECK(hooktool_run(&ev, empty, NULL, 0, &res, &err) == -EINVAL);
    /* Not executable: skipped like a missing file. */
    CHECK(hooktool_run(&ev, (const char *[]){"t-noexec", NULL}, NULL, 0, &res, &err) == -ENOENT);
    request_free(&ev);

    CHECK(make_event(&ev, 0) == 0);
    const char *args[] = {"t-args", NULL};
    CHECK(hooktool_run(&ev, args, NULL, 0, &res, &err) == -EINVAL);
    CHECK(err && strstr(err, "no hook context"));
    request_free(&ev);
    free(err);
}

TEST(json_helper)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    char *err = NULL;
    json_t *j = NULL;
    const char *cfg[] = {"t-json", "key", NULL};
    CHECK(hooktool_json(&ev, cfg, &j, &err) == 0);
    CHECK(json_is_object(j) && json_integer_value(json_object_get(j, "argc")) == 2);
    json_decref(j);
    const char *scalar[] = {"t-true", NULL};
    CHECK(hooktool_json(&ev, scalar, &j, &err) == 0);
    CHECK(json_is_true(j));
    json_decref(j);
    const char *junk[] = {"t-args", NULL}; /* exits 7 */
    CHECK(hooktool_json(&ev, junk, &j, &err) == -1);
    CHECK_STR(err, "t-args exited with code 7: to stderr");
    const char *fail[] = {"t-fail", NULL};
    CHECK(hooktool_json(&ev, fail, &j, &err) == -1);
    CHECK_STR(err, "t-fail exited with code 2: ERROR invalid value \"x\"");
    const char *notjson[] = {"t-notjson", NULL};
    CHECK(hooktool_json(&ev, notjson, &j, &err) == -1);
    CHECK(err && strstr(err, "t-notjson printed invalid JSON"));
    CHECK(j == NULL);
    request_free(&ev);
    free(err);
}

TEST(status_and_log_helpers)
{
    struct hook_event ev;
    CHECK(make_event(&ev, 1) == 0);
    char *err = NULL;
    keepalives = 0;
    hooktool_set_keepalive(count_keepalive);
    CHECK(hooktool_status_set(&ev, "maintenance", "-starts with a dash", &err) == 0);
    CHECK(hooktool_log(&ev, LOG_LEVEL_WARNING, "hello world", &err) == 0);
    hooktool_set_keepalive(NULL);
    CHECK(keepalives >= 2);
    char *path = NULL, buf[256] = "";
    if (asprintf(&path, "%s/calls", dir) < 0)
        abort();
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    CHECK_STR(buf, "status-set [maintenance] [--] [-starts with a dash]\n"
                   "juju-log [--log-level] [WARNING] [--] [hello world]\n");
    free(path);
    request_free(&ev);
    free(err);
}

static void setup(void)
{
    if (!mkdtemp(dir))
        abort();
    write_tool("t-args", "for a in \"$@\"; do printf '[%s] ' \"$a\"; done; echo \"cwd=$(pwd)\"\n"
                         "echo to stderr >&2; exit 7");
    write_tool("t-cat", "exec /bin/cat"); /* the tool's PATH is the temporary directory only */
    write_tool("t-flood", "/usr/bin/head -c 5000000 /dev/zero");
    write_tool("t-fds", "if [ -e /proc/$$/fd/77 ]; then echo leaked; else echo clean; fi");
    write_tool("t-killed", "kill -9 $$");
    write_tool("t-json", "echo \"{\\\"argc\\\": $#}\"");
    write_tool("t-true", "echo true");
    write_tool("t-fail", "echo 'ERROR invalid value \"x\"' >&2; echo second line >&2; exit 2");
    write_tool("t-notjson", "echo 'not json'");
    write_tool("status-set",
               "printf 'status-set' >> \"$CHARM_DIR/calls\"\n"
               "for a in \"$@\"; do printf ' [%s]' \"$a\"; done >> \"$CHARM_DIR/calls\"\n"
               "echo >> \"$CHARM_DIR/calls\"");
    write_tool("juju-log",
               "printf 'juju-log' >> \"$CHARM_DIR/calls\"\n"
               "for a in \"$@\"; do printf ' [%s]' \"$a\"; done >> \"$CHARM_DIR/calls\"\n"
               "echo >> \"$CHARM_DIR/calls\"");
    write_tool("t-noexec", "exit 0");
    char *p = NULL;
    /* env(1) itself, not a shell script: a shell would add PWD to what it prints. */
    if (asprintf(&p, "%s/t-env", dir) < 0 || symlink("/usr/bin/env", p) < 0)
        abort();
    free(p);
    if (asprintf(&p, "%s/t-noexec", dir) < 0)
        abort();
    chmod(p, 0644);
    free(p);
}

static void teardown(void)
{
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0 && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    free(cmd);
}

TEST(setup_case)
{
    (void)failed;
    setup();
}

TEST(teardown_case)
{
    (void)failed;
    teardown();
}

CHECK_MAIN("hooktool", CASE(setup_case), CASE(argv_exit_code_and_cwd), CASE(exact_environment),
           CASE(stdin_binary_and_large), CASE(output_is_bounded),
           CASE(no_inherited_fds_and_signals), CASE(run_errors), CASE(json_helper),
           CASE(status_and_log_helpers), CASE(teardown_case))
