/* Unit tests for the relay<->agent protocol (lib/proto.c: frames, JSON string encoder)
 * and for the relay's reply parser (hooks/relay_reply.c). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "proto.h"
#include "relay_reply.h"

/* ---- helpers ------------------------------------------------------------------------ */

static void write_raw(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0)
            abort();
        c += w;
        n -= (size_t)w;
    }
}

static void put_header(int fd, uint32_t n)
{
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    write_raw(fd, h, 4);
}

static char *pattern(size_t n)
{
    char *p = malloc(n);
    if (!p)
        abort();
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + i % 26);
    return p;
}

/* Fork a child that writes one frame of n pattern bytes to fd, so that frames larger
 * than the socket buffer can be read concurrently. Returns the child's pid. */
static pid_t spawn_writer(int fd, int other, size_t n, int delay_ms)
{
    pid_t pid = fork();
    if (pid < 0)
        abort();
    if (pid == 0) {
        close(other);
        if (delay_ms)
            usleep((useconds_t)delay_ms * 1000);
        char *p = pattern(n);
        int rc = proto_write_frame(fd, p, n);
        free(p);
        _exit(rc == 0 ? 0 : 1);
    }
    return pid;
}

static int child_ok(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int nothing_to_read(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* ---- frames ------------------------------------------------------------------------- */

TEST(frame_round_trip_small)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(proto_write_frame(sv[0], "{\"exit\":0}", 10) == 0);
    CHECK(proto_write_frame(sv[0], "x", 1) == 0);
    char *out = NULL;
    size_t len = 0;
    CHECK(proto_read_frame(sv[1], &out, &len) == 0);
    CHECK(len == 10);
    CHECK_STR(out, "{\"exit\":0}");
    free(out);
    CHECK(proto_read_frame(sv[1], &out, &len) == 0);
    CHECK(len == 1);
    CHECK_STR(out, "x");
    free(out);
    close(sv[0]);
    CHECK(proto_read_frame(sv[1], &out, &len) == -ECONNRESET); /* clean EOF */
    CHECK(out == NULL);
    close(sv[1]);
}

TEST(frame_header_is_big_endian)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    char *p = pattern(0x0102);
    CHECK(proto_write_frame(sv[0], p, 0x0102) == 0);
    unsigned char h[4];
    CHECK(read(sv[1], h, 4) == 4);
    CHECK(h[0] == 0 && h[1] == 0 && h[2] == 1 && h[3] == 2);
    free(p);
    close(sv[0]);
    close(sv[1]);
}

static void max_frame_over(int rd, int wr, int *failed)
{
    pid_t pid = spawn_writer(wr, rd, PROTO_MAX_FRAME, 0);
    close(wr);
    char *out = NULL;
    size_t len = 0;
    CHECK(proto_read_frame(rd, &out, &len) == 0);
    CHECK(len == PROTO_MAX_FRAME);
    char *want = pattern(PROTO_MAX_FRAME);
    CHECK(out && memcmp(out, want, PROTO_MAX_FRAME) == 0);
    CHECK(out && out[PROTO_MAX_FRAME] == '\0');
    free(want);
    free(out);
    CHECK(child_ok(pid));
    close(rd);
}

TEST(frame_exactly_max_socket)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    max_frame_over(sv[1], sv[0], failed);
}

TEST(frame_exactly_max_pipe)
{
    /* A pipe is not a socket (writev path) and holds 64 KiB: many short writes. */
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    max_frame_over(pfd[0], pfd[1], failed);
}

TEST(frame_write_rejects_empty_and_oversize)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(proto_write_frame(sv[0], "", 0) == -EINVAL);
    CHECK(proto_write_frame(sv[0], NULL, 5) == -EINVAL);
    char *p = pattern(PROTO_MAX_FRAME + 1);
    CHECK(proto_write_frame(sv[0], p, PROTO_MAX_FRAME + 1) == -EMSGSIZE);
    free(p);
    CHECK(nothing_to_read(sv[1])); /* nothing was sent */
    close(sv[0]);
    close(sv[1]);
}

TEST(frame_read_rejects_bad_lengths)
{
    int sv[2];
    char *out = (char *)1;
    size_t len = 99;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    put_header(sv[0], PROTO_MAX_FRAME + 1);
    CHECK(proto_read_frame(sv[1], &out, &len) == -EPROTO);
    CHECK(out == NULL);
    close(sv[0]);
    close(sv[1]);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    put_header(sv[0], 0xffffffffu);
    CHECK(proto_read_frame(sv[1], &out, &len) == -EPROTO);
    close(sv[0]);
    close(sv[1]);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    put_header(sv[0], 0);
    CHECK(proto_read_frame(sv[1], &out, &len) == -EPROTO);
    CHECK(out == NULL);
    close(sv[0]);
    close(sv[1]);
}

TEST(frame_truncated_header_and_body)
{
    int sv[2];
    char *out = NULL;
    size_t len = 0;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    write_raw(sv[0], "\0\0", 2);
    close(sv[0]);
    CHECK(proto_read_frame(sv[1], &out, &len) == -ECONNRESET);
    CHECK(out == NULL);
    close(sv[1]);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    put_header(sv[0], 10);
    write_raw(sv[0], "hello", 5);
    close(sv[0]);
    CHECK(proto_read_frame(sv[1], &out, &len) == -ECONNRESET);
    CHECK(out == NULL);
    CHECK(len == 0);
    close(sv[1]);
}

TEST(frame_read_assembles_short_reads)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[1]);
        const char frame[] = "\0\0\0\5hello";
        for (size_t i = 0; i < sizeof frame - 1; i++) {
            write_raw(sv[0], frame + i, 1);
            usleep(2000);
        }
        _exit(0);
    }
    close(sv[0]);
    char *out = NULL;
    size_t len = 0;
    CHECK(proto_read_frame(sv[1], &out, &len) == 0);
    CHECK(len == 5);
    CHECK_STR(out, "hello");
    free(out);
    CHECK(child_ok(pid));
    close(sv[1]);
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

TEST(frame_read_retries_eintr)
{
    struct sigaction sa = {.sa_handler = on_alarm}, old;
    sigemptyset(&sa.sa_mask); /* no SA_RESTART: read() fails with EINTR */
    CHECK(sigaction(SIGALRM, &sa, &old) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    pid_t pid = spawn_writer(sv[0], sv[1], 3000, 150);
    close(sv[0]);
    struct itimerval it = {.it_interval = {0, 20000}, .it_value = {0, 20000}};
    alarms = 0;
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    char *out = NULL;
    size_t len = 0;
    CHECK(proto_read_frame(sv[1], &out, &len) == 0);
    struct itimerval off = {0};
    setitimer(ITIMER_REAL, &off, NULL);
    CHECK(alarms > 0);
    CHECK(len == 3000);
    free(out);
    CHECK(child_ok(pid));
    sigaction(SIGALRM, &old, NULL);
    close(sv[1]);
}

TEST(frame_write_to_closed_peer_is_epipe)
{
    /* With SIGPIPE at its default (fatal) disposition, the write must still return. */
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    CHECK(proto_write_frame(sv[0], "{}", 2) == -EPIPE);
    close(sv[0]);
    signal(SIGPIPE, old);
}

/* ---- JSON string encoder ------------------------------------------------------------ */

static void check_json(const char *in, const char *want, int *failed)
{
    struct proto_buf b = {0};
    CHECK(proto_buf_append_json_string(&b, in) == 0);
    CHECK_STR(b.data, want);
    CHECK(b.len == strlen(want));
    proto_buf_free(&b);
}

TEST(json_escapes_quotes_and_backslash)
{
    check_json("", "\"\"", failed);
    check_json("plain", "\"plain\"", failed);
    check_json("a\"b", "\"a\\\"b\"", failed);
    check_json("a\\b", "\"a\\\\b\"", failed);
    check_json("\\\"", "\"\\\\\\\"\"", failed);
    check_json("/", "\"/\"", failed);
}

TEST(json_escapes_control_chars)
{
    check_json("\n\t\r\b\f", "\"\\n\\t\\r\\b\\f\"", failed);
    check_json("\x01", "\"\\u0001\"", failed);
    check_json("a\037b", "\"a\\u001fb\"", failed);
    check_json("\x1b[0m", "\"\\u001b[0m\"", failed);
    check_json("\x7f", "\"\x7f\"", failed); /* DEL is fine as-is */
    /* Every control character comes out as an escape, never raw. */
    char all[32];
    for (int i = 1; i < 32; i++)
        all[i - 1] = (char)i;
    all[31] = '\0';
    struct proto_buf b = {0};
    CHECK(proto_buf_append_json_string(&b, all) == 0);
    for (size_t i = 0; i < b.len; i++)
        CHECK((unsigned char)b.data[i] >= 0x20);
    proto_buf_free(&b);
}

TEST(json_passes_utf8_through)
{
    check_json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
               "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", failed);
    check_json("\xff\xfe", "\"\xff\xfe\"", failed); /* not validated: bytes as-is */
}

TEST(buf_append_grows_and_terminates)
{
    struct proto_buf b = {0};
    CHECK(proto_buf_append(&b, "", 0) == 0);
    CHECK(b.data && b.data[0] == '\0' && b.len == 0);
    for (int i = 0; i < 10000; i++)
        CHECK(proto_buf_append(&b, "0123456789", 10) == 0);
    CHECK(b.len == 100000);
    CHECK(b.cap > b.len && b.data[b.len] == '\0');
    CHECK(memcmp(b.data + 99990, "0123456789", 10) == 0);
    CHECK(proto_buf_append_json_string(&b, "x") == 0);
    CHECK(b.len == 100003);
    CHECK(strcmp(b.data + 100000, "\"x\"") == 0);
    proto_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    proto_buf_free(&b); /* idempotent */
}

/* ---- reply parser ------------------------------------------------------------------- */

static int parse(const char *s, struct relay_reply *r)
{
    return relay_reply_parse(s, strlen(s), r);
}

static int rejects(const char *s)
{
    struct relay_reply r;
    int rc = parse(s, &r);
    if (rc == 0)
        relay_reply_free(&r);
    return rc == -1;
}

static int exit_of(const char *s)
{
    struct relay_reply r;
    if (parse(s, &r) != 0)
        return -1000;
    int code = r.kind == RELAY_REPLY_EXIT ? r.exit_code : -2000;
    relay_reply_free(&r);
    return code;
}

TEST(reply_log_frame)
{
    struct relay_reply r;
    CHECK(parse("{\"log\":\"hello world\",\"level\":\"INFO\"}", &r) == 0);
    CHECK(r.kind == RELAY_REPLY_LOG);
    CHECK_STR(r.log, "hello world");
    CHECK(r.log_len == 11);
    CHECK_STR(r.level, "INFO");
    relay_reply_free(&r);

    CHECK(parse(" \n{ \"level\" : \"DEBUG\" ,\t\"log\" : \"\" }\r\n", &r) == 0);
    CHECK(r.kind == RELAY_REPLY_LOG);
    CHECK_STR(r.log, "");
    CHECK(r.log_len == 0);
    CHECK_STR(r.level, "DEBUG");
    relay_reply_free(&r);

    CHECK(parse("{\"log\":\"no level\"}", &r) == 0);
    CHECK(r.kind == RELAY_REPLY_LOG);
    CHECK(r.level == NULL);
    relay_reply_free(&r);
}

TEST(reply_exit_frame)
{
    CHECK(exit_of("{\"exit\":0}") == 0);
    CHECK(exit_of("{\"exit\":1}") == 1);
    CHECK(exit_of("{ \"exit\" : 42 }") == 42);
    CHECK(exit_of("{\"exit\":255}") == 255);
    CHECK(exit_of("{\"exit\":-0}") == 0);
    /* Out of range never becomes success. */
    CHECK(exit_of("{\"exit\":256}") == 255);
    CHECK(exit_of("{\"exit\":-1}") == 255);
    CHECK(exit_of("{\"exit\":2147483647}") == 255);
    CHECK(exit_of("{\"exit\":-2147483648}") == 255);
    /* A level on the exit frame is ignored. */
    CHECK(exit_of("{\"exit\":3,\"level\":\"INFO\"}") == 3);
}

TEST(reply_ignores_unknown_keys)
{
    CHECK(exit_of("{\"x\":[1,-2.5e+3,{\"a\":null,\"b\":[true,false]},\"s\\n\"],\"exit\":2,"
                  "\"y\":{},\"z\":[]}") == 2);
    struct relay_reply r;
    CHECK(parse("{\"ts\":1.25,\"log\":\"m\",\"level\":\"WARNING\",\"extra\":{\"k\":\"v\"}}", &r) ==
          0);
    CHECK(r.kind == RELAY_REPLY_LOG);
    CHECK_STR(r.log, "m");
    relay_reply_free(&r);
    /* 10 levels of nesting inside an unknown key are fine. */
    CHECK(exit_of("{\"n\":[[[[[[[[[[1]]]]]]]]]],\"exit\":0}") == 0);
}

TEST(reply_unescapes_strings)
{
    struct relay_reply r;
    CHECK(parse("{\"log\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"}", &r) == 0);
    CHECK_STR(r.log, "a\"b\\c/d\b\f\n\r\t");
    relay_reply_free(&r);

    CHECK(parse("{\"log\":\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\"}", &r) == 0);
    CHECK_STR(r.log, "A\xc3\xa9\xc3\xa9\xe2\x82\xac\xef\xbf\xbf");
    relay_reply_free(&r);

    /* Surrogate pairs: U+1F600 and U+10FFFF, U+10000. */
    CHECK(parse("{\"log\":\"\\ud83d\\ude00|\\uDBFF\\uDFFF|\\ud800\\udc00\"}", &r) == 0);
    CHECK_STR(r.log, "\xf0\x9f\x98\x80|\xf4\x8f\xbf\xbf|\xf0\x90\x80\x80");
    relay_reply_free(&r);

    /* Raw UTF-8 and DEL pass through. */
    CHECK(parse("{\"log\":\"caf\xc3\xa9\x7f\"}", &r) == 0);
    CHECK_STR(r.log, "caf\xc3\xa9\x7f");
    relay_reply_free(&r);

    /* \u0000 is valid JSON: kept, and counted in log_len. */
    CHECK(parse("{\"log\":\"a\\u0000b\"}", &r) == 0);
    CHECK(r.log_len == 3);
    CHECK(r.log && memcmp(r.log, "a\0b", 3) == 0);
    relay_reply_free(&r);

    /* An escaped key still names a known field. */
    CHECK(exit_of("{\"\\u0065xit\":7}") == 7);
}

TEST(reply_round_trips_the_encoder)
{
    const char *msgs[] = {
        "", "plain", "q\"b\\s", "\x01\x1f\n\t\r\b\f", "\xe2\x82\xac\x7f", "{\"log\":\"nested\"}"};
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        struct proto_buf b = {0};
        CHECK(proto_buf_append(&b, "{\"log\":", 7) == 0);
        CHECK(proto_buf_append_json_string(&b, msgs[i]) == 0);
        CHECK(proto_buf_append(&b, "}", 1) == 0);
        struct relay_reply r;
        CHECK(relay_reply_parse(b.data, b.len, &r) == 0);
        CHECK_STR(r.log, msgs[i]);
        CHECK(r.log_len == strlen(msgs[i]));
        relay_reply_free(&r);
        proto_buf_free(&b);
    }
}

TEST(reply_rejects_wrong_shapes)
{
    CHECK(rejects(""));
    CHECK(rejects("   "));
    CHECK(rejects("{}"));
    CHECK(rejects("[]"));
    CHECK(rejects("\"exit\""));
    CHECK(rejects("{\"level\":\"INFO\"}"));       /* missing exit and log */
    CHECK(rejects("{\"other\":1}"));              /* missing exit */
    CHECK(rejects("{\"log\":\"a\",\"exit\":0}")); /* both */
    CHECK(rejects("{\"exit\":0,\"exit\":1}"));    /* duplicate */
    CHECK(rejects("{\"log\":\"a\",\"log\":\"b\"}"));
    CHECK(rejects("{\"log\":\"a\",\"level\":\"I\",\"level\":\"E\"}"));
}

TEST(reply_rejects_wrong_types)
{
    CHECK(rejects("{\"exit\":\"0\"}"));
    CHECK(rejects("{\"exit\":1.5}"));
    CHECK(rejects("{\"exit\":1.0}"));
    CHECK(rejects("{\"exit\":1e2}"));
    CHECK(rejects("{\"exit\":true}"));
    CHECK(rejects("{\"exit\":null}"));
    CHECK(rejects("{\"exit\":[0]}"));
    CHECK(rejects("{\"log\":1}"));
    CHECK(rejects("{\"log\":null}"));
    CHECK(rejects("{\"log\":{}}"));
    CHECK(rejects("{\"log\":\"x\",\"level\":3}"));
}

TEST(reply_rejects_bad_syntax)
{
    CHECK(rejects("{\"exit\":0}x")); /* trailing garbage */
    CHECK(rejects("{\"exit\":0}{}"));
    CHECK(rejects("{\"exit\":0}}"));
    CHECK(rejects("{\"exit\":0,}")); /* trailing comma */
    CHECK(rejects("{,\"exit\":0}"));
    CHECK(rejects("{\"exit\" 0}"));
    CHECK(rejects("{exit:0}"));
    CHECK(rejects("{'exit':0}"));
    CHECK(rejects("{\"exit\":0"));   /* unterminated object */
    CHECK(rejects("{\"exit\":01}")); /* leading zero */
    CHECK(rejects("{\"exit\":-}"));
    CHECK(rejects("{\"exit\":+1}"));
    CHECK(rejects("{\"exit\":1.}"));
    CHECK(rejects("{\"exit\":1e}"));
    CHECK(rejects("{\"a\":tru,\"exit\":0}"));
    CHECK(rejects("{\"a\":[1,],\"exit\":0}"));
    CHECK(rejects("{\"a\":{\"k\"},\"exit\":0}"));
    CHECK(rejects("{\"a\":.5,\"exit\":0}"));
    CHECK(rejects("{\"a\":NaN,\"exit\":0}"));
    /* Nesting beyond the skipper's limit. */
    struct proto_buf deep = {0};
    CHECK(proto_buf_append(&deep, "{\"a\":", 5) == 0);
    for (int i = 0; i < 40; i++)
        CHECK(proto_buf_append(&deep, "[", 1) == 0);
    for (int i = 0; i < 40; i++)
        CHECK(proto_buf_append(&deep, "]", 1) == 0);
    CHECK(proto_buf_append(&deep, ",\"exit\":0}", 10) == 0);
    CHECK(deep.data && rejects(deep.data));
    proto_buf_free(&deep);
    /* An embedded NUL is not whitespace. */
    struct relay_reply r;
    CHECK(relay_reply_parse("{\"exit\":0}\0", 11, &r) == -1);
    /* The length is honoured: a prefix of a valid frame is not valid. */
    CHECK(relay_reply_parse("{\"exit\":12}", 9, &r) == -1);
    CHECK(relay_reply_parse(NULL, 0, &r) == -1);
}

TEST(reply_rejects_bad_strings)
{
    CHECK(rejects("{\"log\":\"abc}"));     /* unterminated */
    CHECK(rejects("{\"log\":\"abc\\\"}")); /* escaped closing quote */
    CHECK(rejects("{\"log\":\"abc\\"));    /* ends inside an escape */
    CHECK(rejects("{\"log\":\"\\x41\"}")); /* unknown escape */
    CHECK(rejects("{\"log\":\"\\'\"}"));
    CHECK(rejects("{\"log\":\"\\u12\"}"));   /* short \u */
    CHECK(rejects("{\"log\":\"\\u12G4\"}")); /* bad hex */
    CHECK(rejects("{\"log\":\"\\ud83d\"}")); /* lone high surrogate */
    CHECK(rejects("{\"log\":\"\\ud83dx\"}"));
    CHECK(rejects("{\"log\":\"\\ud83d\\u0041\"}")); /* high + non-low */
    CHECK(rejects("{\"log\":\"\\ud83d\\ud83d\"}")); /* high + high */
    CHECK(rejects("{\"log\":\"\\ude00\"}"));        /* lone low surrogate */
    CHECK(rejects("{\"log\":\"a\nb\"}"));           /* raw control characters */
    CHECK(rejects("{\"log\":\"a\tb\"}"));
    CHECK(rejects("{\"log\":\"a\x01z\"}"));
    CHECK(rejects("{\"a\":\"\\q\",\"exit\":0}")); /* also inside skipped values */
    CHECK(rejects("{\"a\\q\":1,\"exit\":0}"));    /* and in keys */
}

TEST(reply_rejects_huge_integers)
{
    CHECK(rejects("{\"exit\":2147483648}"));
    CHECK(rejects("{\"exit\":-2147483649}"));
    CHECK(rejects("{\"exit\":99999999999999999999}"));
    CHECK(rejects("{\"exit\":-99999999999999999999999999999999999999}"));
    CHECK(rejects("{\"exit\":18446744073709551616}"));
    /* Huge numbers in unknown keys are skipped, not evaluated. */
    CHECK(exit_of("{\"big\":123456789012345678901234567890e999,\"exit\":0}") == 0);
}

CHECK_MAIN("proto", CASE(frame_round_trip_small), CASE(frame_header_is_big_endian),
           CASE(frame_exactly_max_socket), CASE(frame_exactly_max_pipe),
           CASE(frame_write_rejects_empty_and_oversize), CASE(frame_read_rejects_bad_lengths),
           CASE(frame_truncated_header_and_body), CASE(frame_read_assembles_short_reads),
           CASE(frame_read_retries_eintr), CASE(frame_write_to_closed_peer_is_epipe),
           CASE(json_escapes_quotes_and_backslash), CASE(json_escapes_control_chars),
           CASE(json_passes_utf8_through), CASE(buf_append_grows_and_terminates),
           CASE(reply_log_frame), CASE(reply_exit_frame), CASE(reply_ignores_unknown_keys),
           CASE(reply_unescapes_strings), CASE(reply_round_trips_the_encoder),
           CASE(reply_rejects_wrong_shapes), CASE(reply_rejects_wrong_types),
           CASE(reply_rejects_bad_syntax), CASE(reply_rejects_bad_strings),
           CASE(reply_rejects_huge_integers))
