/* Unit tests for agent/restapi.c and agent/peer_probe.c: the request parser, sizes, the
 * health table, write bodies, Basic credentials, /patroni validation, and a live server. */
#define _GNU_SOURCE
#include "check.h"

#include "errmsg.h"
#include "password.h"
#include "peer_probe.h"
#include "restapi.h"
#include "x509.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- request head ----------------------------------------------------------------------- */

static int parse(const char *s, struct restapi_head *h)
{
    return restapi_parse_head(s, strlen(s), h);
}

TEST(head_good_requests)
{
    struct restapi_head h;
    const char *r1 = "GET /patroni HTTP/1.1\r\nHost: 10.0.0.1:8008\r\nAccept: */*\r\n\r\n";
    CHECK(parse(r1, &h) == (int)strlen(r1));
    CHECK(h.method == RESTAPI_GET && !h.http10 && !h.has_length && !h.authorization);
    CHECK_STR(h.path, "/patroni");
    CHECK_STR(h.query, "");
    CHECK(h.head_len == strlen(r1));

    const char *r2 = "HEAD /replica?lag=16kB&replication_state=streaming HTTP/1.0\r\n\r\n";
    CHECK(parse(r2, &h) == (int)strlen(r2));
    CHECK(h.method == RESTAPI_HEAD && h.http10);
    CHECK_STR(h.path, "/replica");
    CHECK_STR(h.query, "lag=16kB&replication_state=streaming");

    /* body bytes after the head are not part of it */
    const char *r3 = "POST /switchover HTTP/1.1\r\ncontent-length:  12 \r\n"
                     "Authorization:\tBasic cGc6cHc=  \r\nContent-Length: 12\r\n\r\n{\"leader\":1}";
    int n = parse(r3, &h);
    CHECK(n > 0 && (size_t)n == strlen(r3) - 12);
    CHECK(h.method == RESTAPI_POST && h.has_length && h.content_length == 12);
    CHECK(h.authorization && h.authorization_len == 14 &&
          memcmp(h.authorization, "Basic cGc6cHc=", 14) == 0);

    CHECK(parse("OPTIONS / HTTP/1.1\r\n\r\n", &h) > 0 && h.method == RESTAPI_OPTIONS);
    CHECK_STR(h.path, "/");
    CHECK(parse("BREW /pot HTTP/1.1\r\n\r\n", &h) > 0 && h.method == RESTAPI_OTHER);
    CHECK(parse("DELETE /switchover HTTP/1.1\r\n\r\n", &h) > 0 && h.method == RESTAPI_DELETE);
    CHECK(parse("PUT /config HTTP/1.1\r\nX-Empty:\r\n\r\n", &h) > 0 && h.method == RESTAPI_PUT);
    CHECK(parse("GET /x? HTTP/1.1\r\n\r\n", &h) > 0 && h.query[0] == '\0');
    /* the largest body and head accepted */
    CHECK(parse("POST /failover HTTP/1.1\r\nContent-Length: 16384\r\n\r\n", &h) > 0 &&
          h.content_length == RESTAPI_BODY_MAX);
    char big[RESTAPI_HEAD_MAX + 1];
    const char *start = "GET / HTTP/1.1\r\nX-Pad: ";
    memset(big, 'a', sizeof(big));
    memcpy(big, start, strlen(start));
    memcpy(big + RESTAPI_HEAD_MAX - 4, "\r\n\r\n", 4);
    CHECK(restapi_parse_head(big, RESTAPI_HEAD_MAX, &h) == (int)RESTAPI_HEAD_MAX);
}

TEST(head_incomplete_needs_more)
{
    struct restapi_head h;
    static const char *const partial[] = {
        "", "G", "GET /patroni HTT", "GET /patroni HTTP/1.1\r", "GET /patroni HTTP/1.1\r\n",
        "GET /patroni HTTP/1.1\r\nHost: x\r\n", "GET /patroni HTTP/1.1\r\nHost: x\r\n\r",
    };
    for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
        int rc = parse(partial[i], &h);
        if (rc != 0)
            fprintf(stderr, "  partial %zu: %d\n", i, rc);
        CHECK(rc == 0);
    }
}

TEST(head_malformed_requests)
{
    static const struct {
        const char *req;
        int status;
    } bad[] = {
        {"GET /patroni HTTP/1.1\nHost: x\n\n", 400},          /* bare LF */
        {"GET /patroni HTTP/1.1\r\rHost: x\r\n\r\n", 400},     /* bare CR */
        {"GET  /patroni HTTP/1.1\r\n\r\n", 400},               /* two spaces */
        {"GET patroni HTTP/1.1\r\n\r\n", 400},                 /* not origin-form */
        {"GET http://x/patroni HTTP/1.1\r\n\r\n", 400},        /* absolute-form */
        {"GET /pat roni HTTP/1.1\r\n\r\n", 400},
        {"GET /a#b HTTP/1.1\r\n\r\n", 400},
        {"GET /patroni\r\n\r\n", 400},                         /* HTTP/0.9 */
        {"GET /patroni HTTP/1.1 \r\n\r\n", 400},
        {"GET /patroni FTP/1.0\r\n\r\n", 400},
        {"G\"T /patroni HTTP/1.1\r\n\r\n", 400},
        {" GET /patroni HTTP/1.1\r\n\r\n", 400},
        {"GET /patroni HTTP/2.0\r\n\r\n", 505},
        {"GET /patroni HTTP/1.1\r\n Host: x\r\n\r\n", 400},   /* obs-fold */
        {"GET /patroni HTTP/1.1\r\nHost x\r\n\r\n", 400},
        {"GET /patroni HTTP/1.1\r\nHo st: x\r\n\r\n", 400},
        {"GET /patroni HTTP/1.1\r\nHost : x\r\n\r\n", 400},
        {"GET /patroni HTTP/1.1\r\n: x\r\n\r\n", 400},
        {"GET /patroni HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},
        {"POST /switchover HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST /switchover HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
        {"POST /switchover HTTP/1.1\r\nContent-Length: \r\n\r\n", 400},
        {"POST /switchover HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
        {"POST /switchover HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"POST /switchover HTTP/1.1\r\nContent-Length: 16385\r\n\r\n", 413},
        {"POST /switchover HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"POST /switchover HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400},
        {"GET /patroni HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400},
        {"GET /patroni HTTP/1.1\r\nX: a\x7fz\r\n\r\n", 400},
        /* rejected before the head is complete */
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400}, /* a TLS ClientHello */
        {"GET /x\x01", 400},
        {"GET /patroni HTTP/1.1\n", 400},
        {"GET x HTTP/1.1\r\nHost: y\r\n", 400},
        {"GET /patroni HTTP/3.0\r\nHost: y\r\n", 505},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct restapi_head h;
        int rc = parse(bad[i].req, &h);
        int status = rc < 0 ? restapi_head_error_status(rc) : rc;
        if (status != bad[i].status)
            fprintf(stderr, "  case %zu: rc %d, status %d, want %d\n", i, rc, status,
                    bad[i].status);
        CHECK(rc < 0 && status == bad[i].status);
    }
    /* a NUL byte */
    struct restapi_head h;
    static const char nul[] = "GET /pat\0roni HTTP/1.1\r\n\r\n";
    CHECK(restapi_parse_head(nul, sizeof(nul) - 1, &h) == -EBADMSG);
}

TEST(head_oversize)
{
    struct restapi_head h;
    char *buf = malloc(3 * RESTAPI_HEAD_MAX);
    if (!buf) {
        CHECK(buf != NULL);
        return;
    }
    /* no end of head within the limit: 431, whatever follows */
    const char *start = "GET / HTTP/1.1\r\nX-Pad: ";
    memset(buf, 'a', 3 * RESTAPI_HEAD_MAX);
    memcpy(buf, start, strlen(start));
    CHECK(restapi_parse_head(buf, RESTAPI_HEAD_MAX, &h) == -EMSGSIZE);
    CHECK(restapi_parse_head(buf, RESTAPI_HEAD_MAX - 1, &h) == 0);
    memcpy(buf + RESTAPI_HEAD_MAX - 3, "\r\n\r\n", 4); /* ends one byte too late */
    CHECK(restapi_parse_head(buf, RESTAPI_HEAD_MAX + 1, &h) == -EMSGSIZE);
    CHECK(restapi_head_error_status(-EMSGSIZE) == 431);

    /* too many header lines */
    size_t n = (size_t)snprintf(buf, 3 * RESTAPI_HEAD_MAX, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= RESTAPI_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, 3 * RESTAPI_HEAD_MAX - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(buf + n, 3 * RESTAPI_HEAD_MAX - n, "\r\n");
    CHECK(n < RESTAPI_HEAD_MAX && restapi_parse_head(buf, n, &h) == -EMSGSIZE);

    /* a path or a query too long: 414 */
    n = (size_t)snprintf(buf, 3 * RESTAPI_HEAD_MAX, "GET /%0300d HTTP/1.1\r\n\r\n", 0);
    CHECK(restapi_parse_head(buf, n, &h) == -ENAMETOOLONG);
    n = (size_t)snprintf(buf, 3 * RESTAPI_HEAD_MAX, "GET /replica?lag=%01100d HTTP/1.1\r\n\r\n", 0);
    CHECK(restapi_parse_head(buf, n, &h) == -ENAMETOOLONG);
    CHECK(restapi_head_error_status(-ENAMETOOLONG) == 414);
    free(buf);
}

/* ---- query and sizes -------------------------------------------------------------------- */

TEST(query_parameters)
{
    char v[32];
    const char *q = "lag=16kB&replication_state=in+archive%20recovery&flag&x=%41%62";
    CHECK(restapi_query_get(q, "lag", v, sizeof(v)) == 1);
    CHECK_STR(v, "16kB");
    CHECK(restapi_query_get(q, "replication_state", v, sizeof(v)) == 1);
    CHECK_STR(v, "in archive recovery");
    CHECK(restapi_query_get(q, "flag", v, sizeof(v)) == 1);
    CHECK_STR(v, "");
    CHECK(restapi_query_get(q, "x", v, sizeof(v)) == 1);
    CHECK_STR(v, "Ab");
    CHECK(restapi_query_get(q, "la", v, sizeof(v)) == 0);
    CHECK(restapi_query_get("", "lag", v, sizeof(v)) == 0);
    CHECK(restapi_query_get("lag=1&lag=2", "lag", v, sizeof(v)) == 1);
    CHECK_STR(v, "1");
    CHECK(restapi_query_get("lag=%4", "lag", v, sizeof(v)) == -EBADMSG);
    CHECK(restapi_query_get("lag=%", "lag", v, sizeof(v)) == -EBADMSG);
    CHECK(restapi_query_get("lag=%zz", "lag", v, sizeof(v)) == -EBADMSG);
    CHECK(restapi_query_get("lag=a%00b", "lag", v, sizeof(v)) == -EBADMSG);
    CHECK(restapi_query_get("lag=0123456789", "lag", v, 8) == -EBADMSG);
    CHECK(restapi_query_get("lag=0123456", "lag", v, 8) == 1);
}

TEST(size_parser)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"1048576", 1048576},
        {"5B", 5},
        {"16kB", 16384},
        {"64MB", 64ULL << 20},
        {"1GB", 1ULL << 30},
        {"2TB", 2ULL << 40},
        {"0016kB", 16384},
        {"18446744073709551615", UINT64_MAX},
        {"16777215TB", 16777215ULL << 40},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 1;
        CHECK(restapi_parse_size(good[i].s, &v) == 0 && v == good[i].v);
    }
    static const char *const bad[] = {"", "kB", "16 kB", "16kb", "16KB", "-1", "+1", "1.5MB",
                                      "0x10", "16kBB", " 16", "16 ", "1PB", "16k"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        CHECK(restapi_parse_size(bad[i], &v) == -EINVAL && v == 7);
    }
    uint64_t v = 7;
    CHECK(restapi_parse_size("18446744073709551616", &v) == -ERANGE);
    CHECK(restapi_parse_size("99999999999999999999999MB", &v) == -ERANGE);
    CHECK(restapi_parse_size("16777216TB", &v) == -ERANGE);
    CHECK(restapi_parse_size(NULL, &v) == -EINVAL && v == 7);
}

/* ---- health table ----------------------------------------------------------------------- */

enum who { PRIMARY, SYNC_REPLICA, ASYNC_ARCHIVE, LAG_UNKNOWN, STOPPED, LEADER_DOWN, STALE_LOOP,
           PROMOTING, N_WHO };

static const struct restapi_health who_state[N_WHO] = {
    [PRIMARY] = {.running = true, .leader = true, .primary = true, .lag_bytes = 0,
                 .loop_recent = true},
    [SYNC_REPLICA] = {.running = true, .replica = true, .streaming = true, .sync_standby = true,
                      .lag_bytes = 0, .loop_recent = true},
    [ASYNC_ARCHIVE] = {.running = true, .replica = true, .streaming = false,
                       .lag_bytes = 2u << 20, .loop_recent = true},
    [LAG_UNKNOWN] = {.running = true, .replica = true, .streaming = true,
                     .lag_bytes = UINT64_MAX, .loop_recent = true},
    [STOPPED] = {.lag_bytes = UINT64_MAX, .loop_recent = true},
    /* holds the key but PostgreSQL is down */
    [LEADER_DOWN] = {.leader = true, .lag_bytes = UINT64_MAX, .loop_recent = true},
    /* a primary whose HA loop is stuck: the lock is no longer renewed */
    [STALE_LOOP] = {.running = true, .primary = true, .lag_bytes = 0},
    /* holds the key, still in recovery (promotion under way) */
    [PROMOTING] = {.running = true, .leader = true, .replica = true, .streaming = false,
                   .lag_bytes = 0, .loop_recent = true},
};

TEST(health_table)
{
    /* expected status per state, in enum who order */
    static const struct {
        const char *path;
        const char *query;
        int want[N_WHO];
    } rows[] = {
        /*                                       PRI  SYNC ASYN LAGU STOP LDWN STAL PROM */
        {"/patroni", "", {200, 200, 200, 200, 200, 200, 200, 200}},
        {"/health", "", {200, 200, 200, 200, 503, 503, 200, 200}},
        {"/liveness", "", {200, 200, 200, 200, 200, 200, 503, 200}},
        {"/readiness", "", {200, 200, 200, 200, 503, 503, 503, 200}},
        {"/readiness", "lag=1MB", {200, 200, 503, 503, 503, 503, 503, 200}},
        {"/readiness", "mode=apply", {200, 200, 200, 200, 503, 503, 503, 200}},
        {"/readiness", "mode=bogus", {400, 400, 400, 400, 400, 400, 400, 400}},
        {"/", "", {200, 503, 503, 503, 503, 503, 503, 503}},
        {"/primary", "", {200, 503, 503, 503, 503, 503, 503, 503}},
        {"/primary", "lag=bogus", {200, 503, 503, 503, 503, 503, 503, 503}}, /* not a filter */
        {"/read-write", "", {200, 503, 503, 503, 503, 503, 503, 503}},
        {"/master", "", {200, 503, 503, 503, 503, 503, 503, 503}},
        {"/leader", "", {200, 503, 503, 503, 503, 200, 503, 200}},
        {"/standby-leader", "", {503, 503, 503, 503, 503, 503, 503, 503}},
        {"/replica", "", {503, 200, 200, 200, 503, 503, 503, 200}},
        {"/replica", "lag=1MB", {503, 200, 503, 503, 503, 503, 503, 200}},
        {"/replica", "lag=2MB", {503, 200, 200, 503, 503, 503, 503, 200}},
        {"/replica", "lag=2097152", {503, 200, 200, 503, 503, 503, 503, 200}},
        {"/replica", "lag=2097151", {503, 200, 503, 503, 503, 503, 503, 200}},
        {"/replica", "replication_state=streaming", {503, 200, 503, 200, 503, 503, 503, 503}},
        {"/replica", "replication_state=in%20archive%20recovery",
         {503, 503, 200, 503, 503, 503, 503, 200}},
        {"/replica", "lag=16MB&replication_state=streaming",
         {503, 200, 503, 503, 503, 503, 503, 503}},
        {"/replica", "lag=bogus", {400, 400, 400, 400, 400, 400, 400, 400}},
        {"/replica", "lag=%zz", {400, 400, 400, 400, 400, 400, 400, 400}},
        {"/replica", "replication_state=stopped", {400, 400, 400, 400, 400, 400, 400, 400}},
        {"/replica", "tag_foo=bar", {503, 200, 200, 200, 503, 503, 503, 200}},
        {"/read-only", "", {200, 200, 200, 200, 503, 503, 503, 200}},
        {"/read-only", "lag=1MB", {200, 200, 503, 503, 503, 503, 503, 200}},
        {"/sync", "", {503, 200, 503, 503, 503, 503, 503, 503}},
        {"/synchronous", "", {503, 200, 503, 503, 503, 503, 503, 503}},
        {"/async", "", {503, 503, 200, 200, 503, 503, 503, 200}},
        {"/asynchronous", "lag=1MB", {503, 503, 503, 503, 503, 503, 503, 200}},
        {"/read-only-sync", "", {200, 200, 503, 503, 503, 503, 503, 503}},
        {"/cluster", "", {404, 404, 404, 404, 404, 404, 404, 404}},
        {"/replica/", "", {404, 404, 404, 404, 404, 404, 404, 404}},
        {"/nope", "", {404, 404, 404, 404, 404, 404, 404, 404}},
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        for (int w = 0; w < N_WHO; w++) {
            int got = restapi_health_status(rows[r].path, rows[r].query, &who_state[w]);
            if (got != rows[r].want[w]) {
                fprintf(stderr, "  %s?%s state %d: %d, want %d\n", rows[r].path, rows[r].query,
                        w, got, rows[r].want[w]);
                (*failed)++;
            }
        }
    CHECK(restapi_is_health_path("/replica") && restapi_is_health_path("/") &&
          !restapi_is_health_path("/metrics") && !restapi_is_health_path("/switchover"));
}

/* ---- write bodies and credentials ------------------------------------------------------- */

static int parse_body(const char *body, bool failover, struct restapi_switchover *req,
                      const char **text)
{
    return restapi_parse_switchover(body, strlen(body), failover, req, text);
}

TEST(switchover_bodies)
{
    struct restapi_switchover req;
    const char *text = "x";
    CHECK(parse_body("{\"leader\":\"pg-0\",\"candidate\":\"pg-1\"}", false, &req, &text) == 0);
    CHECK(text == NULL && !req.failover);
    CHECK_STR(req.leader, "pg-0");
    CHECK_STR(req.candidate, "pg-1");
    CHECK(parse_body("{\"leader\":\"pg-0\",\"scheduled_at\":null,\"x\":[1]}", false, &req,
                     &text) == 0);
    CHECK_STR(req.candidate, "");
    CHECK(parse_body("{\"candidate\":\"postgresql-12\"}", true, &req, &text) == 0);
    CHECK(req.failover && req.leader[0] == '\0');
    CHECK_STR(req.candidate, "postgresql-12");
    char name63[80];
    memset(name63, 'a', 63);
    name63[63] = '\0';
    char body[200];
    (void)snprintf(body, sizeof(body), "{\"candidate\":\"%s\"}", name63);
    CHECK(parse_body(body, true, &req, &text) == 0);

    static const struct {
        const char *body;
        bool failover;
        const char *text;
    } bad[] = {
        {"", false, "the body must be a JSON object"},
        {"[]", false, "the body must be a JSON object"},
        {"{\"leader\":\"pg-0\"", false, "the body must be a JSON object"},
        {"{\"leader\":\"pg-0\",\"leader\":\"pg-1\"}", false, "the body must be a JSON object"},
        {"{\"leader\":\"pg-0\"} x", false, "the body must be a JSON object"},
        {"{\"candidate\":\"pg-1\"}", false,
         "Switchover could be performed only from a specific leader"},
        {"{\"leader\":\"pg-0\"}", true, "Failover could be performed only to a specific candidate"},
        {"{\"leader\":\"pg-0\",\"scheduled_at\":\"2025-03-01T12:00:00+00:00\"}", false,
         "scheduled switchovers are not supported"},
        {"{\"leader\":1}", false, "member names must be strings"},
        {"{\"leader\":\"pg-0\",\"candidate\":true}", false, "member names must be strings"},
        {"{\"leader\":\"PG-0\"}", false,
         "invalid member name: 1 to 63 characters of a-z, 0-9 and -"},
        {"{\"leader\":\"\"}", false, "invalid member name: 1 to 63 characters of a-z, 0-9 and -"},
        {"{\"leader\":\"pg/0\"}", false,
         "invalid member name: 1 to 63 characters of a-z, 0-9 and -"},
        {"{\"leader\":\"pg\\u00000\"}", false, "the body must be a JSON object"}, /* NUL */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        text = NULL;
        int st = parse_body(bad[i].body, bad[i].failover, &req, &text);
        if (st != 400 || !text || strcmp(text, bad[i].text) != 0)
            fprintf(stderr, "  case %zu: %d %s\n", i, st, text ? text : "(null)");
        CHECK(st == 400);
        CHECK_STR(text, bad[i].text);
    }
    (void)snprintf(body, sizeof(body), "{\"candidate\":\"%sa\"}", name63);
    CHECK(parse_body(body, true, &req, &text) == 400);
}

static char *basic_header(const char *userpass)
{
    static char out[2048];
    char b64[1600];
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)userpass, strlen(userpass),
                      sodium_base64_VARIANT_ORIGINAL);
    (void)snprintf(out, sizeof(out), "Basic %s", b64);
    return out;
}

TEST(basic_credentials)
{
    char *user = NULL, *pw = NULL;
    const char *h = basic_header("patroni:s3cret:with:colons");
    CHECK(restapi_basic_decode(h, strlen(h), &user, &pw) == 0);
    CHECK_STR(user, "patroni");
    CHECK_STR(pw, "s3cret:with:colons");
    free(user);
    password_free(pw);

    char lower[2048];
    (void)snprintf(lower, sizeof(lower), "basic %s", basic_header("u:")+6);
    CHECK(restapi_basic_decode(lower, strlen(lower), &user, &pw) == 0);
    CHECK_STR(user, "u");
    CHECK_STR(pw, "");
    free(user);
    password_free(pw);

    static const char *const bad_plain[] = {"nocolon", "a\x01:b", "a:b\x7f", "u:p\n"};
    for (size_t i = 0; i < sizeof(bad_plain) / sizeof(bad_plain[0]); i++) {
        h = basic_header(bad_plain[i]);
        user = pw = (char *)"sentinel";
        CHECK(restapi_basic_decode(h, strlen(h), &user, &pw) == -EINVAL);
        CHECK(user == NULL && pw == NULL);
    }
    static const char *const bad_header[] = {"Bearer abc", "Basic", "Basic ", "Basic ###",
                                             "Basic cGF0cm9uaTpz=", "Basicx cGc6cHc="};
    for (size_t i = 0; i < sizeof(bad_header) / sizeof(bad_header[0]); i++)
        CHECK(restapi_basic_decode(bad_header[i], strlen(bad_header[i]), &user, &pw) == -EINVAL);
    /* NUL inside the credentials */
    char b64[64], hdr[80];
    static const unsigned char nul[] = {'u', ':', 'p', 0, 'q'};
    sodium_bin2base64(b64, sizeof(b64), nul, sizeof(nul), sodium_base64_VARIANT_ORIGINAL);
    (void)snprintf(hdr, sizeof(hdr), "Basic %s", b64);
    CHECK(restapi_basic_decode(hdr, strlen(hdr), &user, &pw) == -EINVAL);
    /* a user name over the limit */
    char longuser[RESTAPI_USER_MAX + 8];
    memset(longuser, 'u', RESTAPI_USER_MAX + 1);
    memcpy(longuser + RESTAPI_USER_MAX + 1, ":pw", 4);
    h = basic_header(longuser);
    CHECK(restapi_basic_decode(h, strlen(h), &user, &pw) == -EINVAL);
}

/* ---- /patroni answers ------------------------------------------------------------------- */

static const char primary_json[] =
    "{\"state\":\"running\",\"postmaster_start_time\":\"2025-03-01 10:00:00.000000+00:00\","
    "\"role\":\"primary\",\"server_version\":160004,\"xlog\":{\"location\":67395656},"
    "\"timeline\":3,\"replication\":[{\"usename\":\"replication\",\"application_name\":\"pg-1\","
    "\"client_addr\":\"10.0.0.12\",\"state\":\"streaming\",\"sync_state\":\"sync\","
    "\"sync_priority\":1}],\"dcs_last_seen\":1740823200,\"tags\":{},"
    "\"database_system_identifier\":\"7268616322854375442\","
    "\"patroni\":{\"version\":\"4.1.4\",\"scope\":\"postgresql\",\"name\":\"pg-0\"}}";

static const char replica_json[] =
    "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":{\"received_location\":5000,"
    "\"replayed_location\":4000,\"replayed_timestamp\":null,\"paused\":false},"
    "\"replication_state\":\"streaming\",\"timeline\":3,\"tags\":{\"nofailover\":true},"
    "\"watchdog_failed\":true,\"patroni\":{\"name\":\"pg-1\"}}";

static void status_of(long code, const char *body, struct peer_status *st)
{
    memset(st, 0x5a, sizeof(*st)); /* nothing from before may survive */
    peer_status_parse(code, body, strlen(body), st);
}

TEST(patroni_answers)
{
    struct peer_status st;
    status_of(200, primary_json, &st);
    CHECK(st.reachable && st.valid && st.http_status == 200 && st.error[0] == '\0');
    CHECK_STR(st.name, "pg-0");
    CHECK_STR(st.state, "running");
    CHECK(st.role == PEER_ROLE_PRIMARY && !st.in_recovery && !st.streaming);
    CHECK(st.has_timeline && st.timeline == 3);
    CHECK(st.has_wal && st.xlog_location == 67395656 && st.wal_position == 67395656);
    CHECK(!st.nofailover && !st.watchdog_failed);

    status_of(200, replica_json, &st);
    CHECK(st.valid && st.role == PEER_ROLE_REPLICA && st.in_recovery && st.streaming);
    CHECK(st.xlog_received == 5000 && st.xlog_replayed == 4000 && st.wal_position == 5000);
    CHECK(st.nofailover && st.watchdog_failed);
    CHECK_STR(st.name, "pg-1");

    status_of(200,
              "{\"state\":\"stopped\",\"role\":\"master\",\"patroni\":{\"name\":\"a\"},"
              "\"timeline\":null,\"xlog\":null,\"tags\":null}",
              &st);
    CHECK(st.valid && st.role == PEER_ROLE_PRIMARY && !st.has_timeline && !st.has_wal);
    status_of(200, "{\"state\":\"running\",\"role\":\"standby_leader\",\"patroni\":{\"name\":\"b\"}}",
              &st);
    CHECK(st.valid && st.role == PEER_ROLE_STANDBY_LEADER && st.in_recovery);
    status_of(200, "{\"state\":\"stopped\",\"role\":\"uninitialized\",\"patroni\":{\"name\":\"c\"}}",
              &st);
    CHECK(st.valid && st.role == PEER_ROLE_UNKNOWN && st.in_recovery);

    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"}}",
        "{\"state\":1,\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"}}",
        "{\"state\":\"\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"}}",
        "{\"state\":\"run\\nning\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"}}",
        "{\"state\":\"running\",\"patroni\":{\"name\":\"pg-0\"}}",
        "{\"state\":\"running\",\"role\":\"leader\",\"patroni\":{\"name\":\"pg-0\"}}",
        "{\"state\":\"running\",\"role\":[],\"patroni\":{\"name\":\"pg-0\"}}",
        "{\"state\":\"running\",\"role\":\"primary\"}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":[]}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"PG-0\"}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"\"}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":7}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},\"timeline\":-1}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},"
        "\"timeline\":4294967296}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},\"timeline\":\"3\"}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},\"xlog\":5}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},"
        "\"xlog\":{\"location\":\"0/4000060\"}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},"
        "\"xlog\":{\"location\":-5}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},"
        "\"xlog\":{\"location\":1e9}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},\"tags\":[]}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},"
        "\"tags\":{\"nofailover\":\"true\"}}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},"
        "\"watchdog_failed\":1}",
        "{\"state\":\"running\",\"role\":\"primary\",\"patroni\":{\"name\":\"pg-0\"},"
        "\"replication_state\":1}",
        "{\"state\":\"running\",\"state\":\"running\",\"role\":\"primary\","
        "\"patroni\":{\"name\":\"pg-0\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        status_of(200, bad[i], &st);
        if (st.valid)
            fprintf(stderr, "  accepted case %zu\n", i);
        CHECK(st.reachable && !st.valid && st.error[0] != '\0' && st.name[0] == '\0');
        CHECK(st.role == PEER_ROLE_UNKNOWN && !st.nofailover && st.wal_position == 0);
    }
    status_of(503, primary_json, &st);
    CHECK(st.reachable && !st.valid && st.http_status == 503);
    CHECK_STR(st.error, "answered HTTP 503");
}

TEST(peer_urls)
{
    CHECK(peer_url_valid("https://10.0.0.12:8008/patroni"));
    CHECK(peer_url_valid("https://[fd00::1]:8008/patroni"));
    CHECK(!peer_url_valid("http://10.0.0.12:8008/patroni"));
    CHECK(!peer_url_valid("https://"));
    CHECK(!peer_url_valid("https://10.0.0.12:8008/pat roni"));
    CHECK(!peer_url_valid(NULL));
    char long_url[PEER_URL_MAX + 10];
    memset(long_url, 'a', sizeof(long_url));
    memcpy(long_url, "https://", 8);
    long_url[PEER_URL_MAX + 1] = '\0';
    CHECK(!peer_url_valid(long_url));
    long_url[PEER_URL_MAX] = '\0';
    CHECK(peer_url_valid(long_url));

    struct peer_status st[PEER_MAX_URLS + 1];
    struct peer_tls tls = {.ca_file = "/nonexistent"};
    const char *urls[PEER_MAX_URLS + 1] = {0};
    char *err = NULL;
    CHECK(peer_probe_run(urls, PEER_MAX_URLS + 1, &tls, 1000, st, &err) == -EINVAL);
    CHECK(peer_probe_run(urls, 0, &tls, 5, st, &err) == -EINVAL);
    struct peer_tls half = {.ca_file = "/x", .cert_file = "/y"};
    CHECK(peer_probe_run(urls, 0, &half, 1000, st, &err) == -EINVAL);
    long status;
    char *text = NULL;
    CHECK(peer_post_json("http://x/", "{}", &tls, 1000, &status, &text, &err) == -EINVAL);
    CHECK(text == NULL);
    free(err);
}

/* ---- the live server -------------------------------------------------------------------- */

enum cmd { CMD_NONE, CMD_RELOAD, CMD_QUIT };

struct delayed {
    struct restapi_ticket ticket;
    int status;
    char text[128];
    bool fired;
    int rc;
};

static struct fixture {
    bool up;
    char dir[64];
    char ca[128], srv_cert[128], srv_key[128], cli_cert[128], cli_key[128];
    char other_cert[128], other_key[128];
    char *ca_pem, *ca_key_pem;
    uint16_t port;
    pthread_t thread;
    sd_event *ev;
    struct restapi *api;
    int efd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;
    int start_rc;
    enum cmd cmd;
    bool cmd_done;
    int cmd_rc;
    /* what the callbacks read and record (under mu) */
    struct restapi_health health;
    int switchovers;
    struct restapi_switchover last;
    struct delayed soon, late, inside;
} fx = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .efd = -1};

static json_t *cb_patroni(void *data, struct restapi_health *h)
{
    struct fixture *f = data;
    pthread_mutex_lock(&f->mu);
    *h = f->health;
    pthread_mutex_unlock(&f->mu);
    return json_pack("{s:s, s:s, s:{s:I, s:I}, s:s, s:i, s:{}, s:{s:s, s:s}}", "state", "running",
                     "role", "replica", "xlog", "received_location", (json_int_t)5000,
                     "replayed_location", (json_int_t)4000, "replication_state", "streaming",
                     "timeline", 3, "tags", "patroni", "scope", "postgresql", "name", "pg-0");
}

static json_t *cb_cluster(void *data)
{
    (void)data;
    return json_pack("{s:[{s:s, s:s}], s:s}", "members", "name", "pg-0", "role", "leader", "scope",
                     "postgresql");
}

static json_t *cb_history(void *data)
{
    (void)data;
    return json_pack("[[i, I, s]]", 1, (json_int_t)25165984, "no recovery target specified");
}

static char *cb_metrics(void *data)
{
    (void)data;
    return strdup("# TYPE patroni_primary gauge\npatroni_primary{scope=\"postgresql\","
                  "name=\"pg-0\"} 0\n");
}

static bool cb_auth(void *data, const char *user, const char *password)
{
    (void)data;
    static const char want[] = "s3cret-pw";
    size_t n = strlen(password);
    bool same = n == sizeof(want) - 1 && sodium_memcmp(password, want, n) == 0;
    return strcmp(user, "patroni") == 0 && same;
}

static int on_delayed(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)src;
    (void)usec;
    struct delayed *d = userdata;
    int rc = restapi_complete(d->ticket, d->status, d->text);
    pthread_mutex_lock(&fx.mu);
    d->rc = rc;
    d->fired = true;
    pthread_cond_broadcast(&fx.cv);
    pthread_mutex_unlock(&fx.mu);
    return 0;
}

static void schedule(struct delayed *d, const struct restapi_switchover *req, uint64_t ms,
                     int status, const char *text)
{
    pthread_mutex_lock(&fx.mu);
    d->ticket = req->ticket;
    d->status = status;
    (void)snprintf(d->text, sizeof(d->text), "%s", text);
    d->fired = false;
    d->rc = 1;
    pthread_mutex_unlock(&fx.mu);
    if (sd_event_add_time_relative(fx.ev, NULL, CLOCK_MONOTONIC, ms * 1000, 0, on_delayed, d) < 0)
        fprintf(stderr, "  cannot schedule a completion\n");
}

/* pg-1: answered at once; pg-2: pending, answered after 200 ms; pg-3: pending, answered
 * after 1 s (the client gives up before); pg-4: answered from inside the callback;
 * pg-5: never answered (the pending deadline answers). */
static int cb_switchover(void *data, const struct restapi_switchover *req, char **text)
{
    struct fixture *f = data;
    pthread_mutex_lock(&f->mu);
    f->switchovers++;
    f->last = *req;
    pthread_mutex_unlock(&f->mu);
    const char *verb = req->failover ? "failed" : "switched";
    if (strcmp(req->candidate, "pg-2") == 0) {
        schedule(&f->soon, req, 200, 200, "Successfully switched over to \"pg-2\"");
        return 0;
    }
    if (strcmp(req->candidate, "pg-3") == 0) {
        schedule(&f->late, req, 1000, 200, "too late");
        return 0;
    }
    if (strcmp(req->candidate, "pg-4") == 0) {
        f->inside.rc = restapi_complete(req->ticket, 412,
                                        "candidate name does not match with sync_standby");
        return 0;
    }
    if (strcmp(req->candidate, "pg-5") == 0)
        return 0;
    if (asprintf(text, "Successfully %s over to \"%s\"", verb, req->candidate) < 0)
        *text = NULL;
    return 200;
}

static int on_cmd(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    (void)src;
    (void)revents;
    struct fixture *f = userdata;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return 0;
    pthread_mutex_lock(&f->mu);
    enum cmd c = f->cmd;
    pthread_mutex_unlock(&f->mu);
    int rc = 0;
    if (c == CMD_RELOAD) {
        char *err = NULL;
        rc = restapi_reload_tls(f->api, &err);
        free(err); /* the test checks rc */
    } else if (c == CMD_QUIT) {
        rc = sd_event_exit(f->ev, 0);
    }
    pthread_mutex_lock(&f->mu);
    f->cmd_rc = rc;
    f->cmd_done = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static const struct restapi_ops fixture_ops = {
    .data = &fx,
    .patroni = cb_patroni,
    .cluster = cb_cluster,
    .history = cb_history,
    .config = NULL,
    .metrics = cb_metrics,
    .auth_check = cb_auth,
    .switchover = cb_switchover,
};

static void *loop_main(void *arg)
{
    struct fixture *f = arg;
    char *err = NULL;
    struct restapi_config cfg = {
        .bind_addr = "127.0.0.1",
        .port = 0,
        .cert_file = f->srv_cert,
        .key_file = f->srv_key,
        .ca_file = f->ca,
        .deadline_ms = 700,
        .pending_deadline_ms = 2000,
    };
    int rc = sd_event_new(&f->ev);
    if (rc >= 0)
        rc = restapi_start(f->ev, &cfg, &fixture_ops, &f->api, &err);
    if (rc >= 0)
        rc = sd_event_add_io(f->ev, NULL, f->efd, EPOLLIN, on_cmd, f);
    if (rc < 0)
        fprintf(stderr, "  server start: %s\n", ERRMSG(err));
    free(err);
    pthread_mutex_lock(&f->mu);
    f->start_rc = rc;
    f->port = rc >= 0 ? restapi_port(f->api) : 0;
    f->ready = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (rc >= 0)
        (void)sd_event_loop(f->ev);
    restapi_free(f->api);
    f->api = NULL;
    sd_event_unref(f->ev);
    return NULL;
}

static int send_cmd(enum cmd c)
{
    pthread_mutex_lock(&fx.mu);
    fx.cmd = c;
    fx.cmd_done = false;
    pthread_mutex_unlock(&fx.mu);
    uint64_t one = 1;
    if (write(fx.efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        return -EIO;
    pthread_mutex_lock(&fx.mu);
    while (!fx.cmd_done)
        pthread_cond_wait(&fx.cv, &fx.mu);
    int rc = fx.cmd_rc;
    pthread_mutex_unlock(&fx.mu);
    return rc;
}

static bool write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return false;
    bool ok = fputs(text, fp) >= 0;
    return fclose(fp) == 0 && ok;
}

/* A key and a certificate for cn (SAN IP 127.0.0.1, DNS localhost), signed by the CA. */
static bool make_leaf(const char *ca_pem, const char *ca_key, const char *cn, char **cert,
                      char **key)
{
    static const char *const ips[] = {"127.0.0.1"};
    static const char *const dns[] = {"localhost"};
    const struct x509_sans sans = {dns, 1, ips, 1};
    char *err = NULL, *csr = NULL;
    *cert = *key = NULL;
    int rc = x509_key_generate(X509_KEY_ECDSA_P256, key, &err);
    if (rc == 0)
        rc = x509_csr_create(*key, cn, &sans, &csr, &err);
    if (rc == 0)
        rc = x509_issue(csr, ca_pem, ca_key, 30, X509_USAGE_SERVER_CLIENT, cert, &err);
    if (rc != 0)
        fprintf(stderr, "  make_leaf: %s\n", ERRMSG(err));
    free(err);
    free(csr);
    return rc == 0;
}

static bool write_leaf(const char *ca_pem, const char *ca_key, const char *cn,
                       const char *cert_path, const char *key_path)
{
    char *cert = NULL, *key = NULL;
    bool ok = make_leaf(ca_pem, ca_key, cn, &cert, &key) && write_file(cert_path, cert) &&
              write_file(key_path, key);
    free(cert);
    password_free(key);
    return ok;
}

static bool fixture_up(void)
{
    if (fx.up)
        return true;
    char *err = NULL, *other_ca = NULL, *other_ca_key = NULL;
    (void)snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_restapi.XXXXXX");
    if (!mkdtemp(fx.dir))
        return false;
#define P(field, name) (void)snprintf(fx.field, sizeof(fx.field), "%s/" name, fx.dir)
    P(ca, "ca.pem");
    P(srv_cert, "server.pem");
    P(srv_key, "server.key");
    P(cli_cert, "client.pem");
    P(cli_key, "client.key");
    P(other_cert, "other.pem");
    P(other_key, "other.key");
#undef P
    bool ok = x509_ca_create("test-ca", 30, &fx.ca_pem, &fx.ca_key_pem, &err) == 0 &&
              x509_ca_create("other-ca", 30, &other_ca, &other_ca_key, &err) == 0 &&
              write_file(fx.ca, fx.ca_pem) &&
              write_leaf(fx.ca_pem, fx.ca_key_pem, "pg-0", fx.srv_cert, fx.srv_key) &&
              write_leaf(fx.ca_pem, fx.ca_key_pem, "pg-1", fx.cli_cert, fx.cli_key) &&
              write_leaf(other_ca, other_ca_key, "intruder", fx.other_cert, fx.other_key);
    if (err)
        fprintf(stderr, "  fixture: %s\n", err);
    free(err);
    free(other_ca);
    password_free(other_ca_key);
    if (!ok)
        return false;
    fx.health = who_state[ASYNC_ARCHIVE];
    fx.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fx.efd < 0 || pthread_create(&fx.thread, NULL, loop_main, &fx) != 0)
        return false;
    pthread_mutex_lock(&fx.mu);
    while (!fx.ready)
        pthread_cond_wait(&fx.cv, &fx.mu);
    pthread_mutex_unlock(&fx.mu);
    if (fx.start_rc < 0) {
        (void)pthread_join(fx.thread, NULL);
        return false;
    }
    fx.up = true;
    return true;
}

/* ---- an HTTPS client (libcurl) ---------------------------------------------------------- */

enum { USE_CERT = 1, USE_OTHER_CERT = 2, BASIC_GOOD = 4, BASIC_BAD = 8, CERTINFO = 16 };

struct resp {
    CURLcode cc;
    long status;
    char body[8192];
    size_t len;
    char headers[4096];
    size_t hlen;
    char certinfo[8192];
    long long ms;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t len = size * n;
    size_t take = len < sizeof(r->body) - 1 - r->len ? len : sizeof(r->body) - 1 - r->len;
    memcpy(r->body + r->len, p, take);
    r->len += take;
    r->body[r->len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    size_t len = size * n;
    size_t take = len < sizeof(r->headers) - 1 - r->hlen ? len : sizeof(r->headers) - 1 - r->hlen;
    memcpy(r->headers + r->hlen, p, take);
    r->hlen += take;
    r->headers[r->hlen] = '\0';
    return len;
}

static void http(const char *method, const char *path, const char *body, int flags,
                 long timeout_ms, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    char url[256];
    (void)snprintf(url, sizeof(url), "https://127.0.0.1:%u%s", (unsigned)fx.port, path);
    CURL *h = curl_easy_init();
    if (!h) {
        r->cc = CURLE_OUT_OF_MEMORY;
        return;
    }
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_CAINFO, fx.ca);
    curl_easy_setopt(h, CURLOPT_CAPATH, (const char *)NULL);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (flags & USE_CERT) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, fx.cli_cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, fx.cli_key);
    }
    if (flags & USE_OTHER_CERT) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, fx.other_cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, fx.other_key);
    }
    if (flags & (BASIC_GOOD | BASIC_BAD)) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERPWD,
                         flags & BASIC_GOOD ? "patroni:s3cret-pw" : "patroni:wrong-pw");
    }
    if (flags & CERTINFO)
        curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    long long t0 = now_ms();
    r->cc = curl_easy_perform(h);
    r->ms = now_ms() - t0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (flags & CERTINFO) {
        struct curl_certinfo *ci = NULL;
        if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci)
            for (int i = 0; i < ci->num_of_certs; i++)
                for (struct curl_slist *s = ci->certinfo[i]; s; s = s->next) {
                    size_t have = strlen(r->certinfo);
                    (void)snprintf(r->certinfo + have, sizeof(r->certinfo) - have, "%s\n",
                                   s->data);
                }
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
}

static bool has_header(const struct resp *r, const char *line)
{
    return strcasestr(r->headers, line) != NULL;
}

/* A plain TCP connection to the server (blocking). */
static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Milliseconds until the server closes fd (reads and drops data), or -1 after limit_ms. */
static long long ms_until_closed(int fd, long long limit_ms)
{
    long long t0 = now_ms();
    for (;;) {
        long long left = limit_ms - (now_ms() - t0);
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            return now_ms() - t0;
    }
}

/* One raw request over TLS (no client certificate): the answer's first bytes in out. */
static bool tls_raw(const void *req, size_t len, char *out, size_t outsz)
{
    out[0] = '\0';
    int fd = tcp_connect(fx.port);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    bool ok = fd >= 0 && ssl && SSL_CTX_load_verify_locations(ctx, fx.ca, NULL) == 1;
    if (ok) {
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        ok = SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1 &&
             (len == 0 || SSL_write(ssl, req, (int)len) == (int)len);
    }
    size_t got = 0;
    while (ok && got + 1 < outsz) {
        int n = SSL_read(ssl, out + got, (int)(outsz - 1 - got));
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    return ok;
}

/* ---- live tests ------------------------------------------------------------------------- */

TEST(live_server_starts)
{
    CHECK(fixture_up());
    CHECK(fx.port != 0);
    /* a bad configuration is refused with a reason */
    sd_event *ev = NULL;
    CHECK(sd_event_new(&ev) >= 0);
    struct restapi *api = NULL;
    char *err = NULL;
    struct restapi_config cfg = {.bind_addr = "127.0.0.1", .cert_file = fx.srv_cert,
                                 .key_file = fx.cli_key, .ca_file = fx.ca};
    CHECK(restapi_start(ev, &cfg, &fixture_ops, &api, &err) == -EINVAL && !api && err);
    CHECK(err && strstr(err, "server key") != NULL);
    free(err);
    err = NULL;
    cfg.key_file = fx.srv_key;
    cfg.bind_addr = "localhost";
    CHECK(restapi_start(ev, &cfg, &fixture_ops, &api, &err) == -EINVAL && !api);
    free(err);
    err = NULL;
    cfg.bind_addr = "127.0.0.1";
    cfg.port = fx.port;
    CHECK(restapi_start(ev, &cfg, &fixture_ops, &api, &err) == -EADDRINUSE && !api);
    free(err);
    err = NULL;
    struct restapi_ops no_auth = fixture_ops;
    no_auth.auth_check = NULL;
    cfg.port = 0;
    CHECK(restapi_start(ev, &cfg, &no_auth, &api, &err) == -EINVAL && !api);
    free(err);
    sd_event_unref(ev);
}

TEST(live_health_endpoints)
{
    if (!fx.up)
        return;
    struct resp r;
    http("GET", "/patroni", NULL, USE_CERT, 5000, &r);
    CHECK(r.cc == CURLE_OK && r.status == 200);
    CHECK(has_header(&r, "Content-Type: application/json"));
    CHECK(has_header(&r, "Connection: close"));
    json_error_t jerr;
    json_t *doc = json_loads(r.body, 0, &jerr);
    CHECK(doc && json_is_object(doc));
    CHECK(doc && json_is_string(json_object_get(doc, "state")));
    json_decref(doc);

    http("GET", "/patroni", NULL, 0, 5000, &r); /* no client certificate: reads are open */
    CHECK(r.cc == CURLE_OK && r.status == 200);
    http("GET", "/health", NULL, 0, 5000, &r);
    CHECK(r.status == 200 && r.body[0] == '{');
    http("GET", "/primary", NULL, 0, 5000, &r);
    CHECK(r.status == 503 && r.body[0] == '{');
    http("GET", "/", NULL, 0, 5000, &r);
    CHECK(r.status == 503);
    http("GET", "/replica", NULL, 0, 5000, &r);
    CHECK(r.status == 200);
    http("GET", "/replica?lag=1MB", NULL, 0, 5000, &r);
    CHECK(r.status == 503);
    http("GET", "/replica?lag=16MB", NULL, 0, 5000, &r);
    CHECK(r.status == 200);
    http("GET", "/replica?lag=16MB&replication_state=streaming", NULL, 0, 5000, &r);
    CHECK(r.status == 503);
    http("GET", "/replica?lag=lots", NULL, 0, 5000, &r);
    CHECK(r.status == 400);
    http("GET", "/async", NULL, 0, 5000, &r);
    CHECK(r.status == 200);
    http("GET", "/liveness", NULL, 0, 5000, &r);
    CHECK(r.status == 200 && r.len == 0);
    http("HEAD", "/replica", NULL, 0, 5000, &r);
    CHECK(r.cc == CURLE_OK && r.status == 200 && r.len == 0);
    http("OPTIONS", "/primary", NULL, 0, 5000, &r);
    CHECK(r.cc == CURLE_OK && r.status == 503 && r.len == 0);

    pthread_mutex_lock(&fx.mu);
    fx.health = who_state[PRIMARY];
    pthread_mutex_unlock(&fx.mu);
    http("GET", "/primary", NULL, 0, 5000, &r);
    CHECK(r.status == 200);
    http("GET", "/replica", NULL, 0, 5000, &r);
    CHECK(r.status == 503);
    pthread_mutex_lock(&fx.mu);
    fx.health = who_state[ASYNC_ARCHIVE];
    pthread_mutex_unlock(&fx.mu);
}

TEST(live_other_reads)
{
    if (!fx.up)
        return;
    struct resp r;
    http("GET", "/metrics", NULL, 0, 5000, &r);
    CHECK(r.status == 200 && has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    CHECK(strstr(r.body, "patroni_primary{scope=\"postgresql\",name=\"pg-0\"} 0\n") != NULL);
    http("GET", "/cluster", NULL, 0, 5000, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"members\"") != NULL);
    http("GET", "/history", NULL, 0, 5000, &r);
    CHECK(r.status == 200 && r.body[0] == '[');
    http("GET", "/config", NULL, 0, 5000, &r); /* no callback: not offered */
    CHECK(r.status == 404);
    http("GET", "/nope", NULL, 0, 5000, &r);
    CHECK(r.status == 404);
    http("POST", "/patroni", "{}", 0, 5000, &r);
    CHECK(r.status == 405 && has_header(&r, "Allow: GET, HEAD, OPTIONS"));
    http("DELETE", "/cluster", NULL, 0, 5000, &r);
    CHECK(r.status == 405);
    http("GET", "/switchover", NULL, USE_CERT, 5000, &r);
    CHECK(r.status == 405);
}

TEST(live_switchover_auth)
{
    if (!fx.up)
        return;
    struct resp r;
    const char *body = "{\"leader\":\"pg-0\",\"candidate\":\"pg-1\"}";
    int before = fx.switchovers;
    http("POST", "/switchover", body, 0, 5000, &r);
    CHECK(r.status == 401 && has_header(&r, "WWW-Authenticate: Basic realm=\"Patroni\""));
    http("POST", "/switchover", body, BASIC_BAD, 5000, &r);
    CHECK(r.status == 401);
    pthread_mutex_lock(&fx.mu);
    CHECK(fx.switchovers == before);
    pthread_mutex_unlock(&fx.mu);

    http("POST", "/switchover", body, USE_CERT, 5000, &r);
    CHECK(r.status == 200);
    CHECK_STR(r.body, "Successfully switched over to \"pg-1\"");
    pthread_mutex_lock(&fx.mu);
    CHECK(fx.switchovers == before + 1 && fx.last.cert_auth && !fx.last.failover);
    CHECK_STR(fx.last.who, "pg-1");
    CHECK_STR(fx.last.leader, "pg-0");
    pthread_mutex_unlock(&fx.mu);

    http("POST", "/switchover", body, BASIC_GOOD, 5000, &r);
    CHECK(r.status == 200);
    pthread_mutex_lock(&fx.mu);
    CHECK(fx.switchovers == before + 2 && !fx.last.cert_auth);
    CHECK_STR(fx.last.who, "patroni");
    pthread_mutex_unlock(&fx.mu);

    http("POST", "/failover", "{\"candidate\":\"pg-1\"}", BASIC_GOOD, 5000, &r);
    CHECK(r.status == 200);
    CHECK_STR(r.body, "Successfully failed over to \"pg-1\"");
    pthread_mutex_lock(&fx.mu);
    CHECK(fx.last.failover && fx.last.leader[0] == '\0');
    pthread_mutex_unlock(&fx.mu);

    /* validation happens after authentication */
    http("POST", "/failover", "{\"leader\":\"pg-0\"}", USE_CERT, 5000, &r);
    CHECK(r.status == 400);
    CHECK_STR(r.body, "Failover could be performed only to a specific candidate");
    http("POST", "/switchover", "{\"leader\":\"pg-0\",\"scheduled_at\":\"2030-01-01T00:00:00Z\"}",
         USE_CERT, 5000, &r);
    CHECK(r.status == 400);
    CHECK_STR(r.body, "scheduled switchovers are not supported");
    http("POST", "/switchover", "not json", USE_CERT, 5000, &r);
    CHECK(r.status == 400);
    http("POST", "/failover", "{\"candidate\":\"pg-1\"}", 0, 5000, &r);
    CHECK(r.status == 401);
    http("DELETE", "/switchover", NULL, 0, 5000, &r);
    CHECK(r.status == 401);
    http("DELETE", "/switchover", NULL, USE_CERT, 5000, &r);
    CHECK(r.status == 404);
    CHECK_STR(r.body, "no switchover is scheduled");
    /* a certificate from another CA: the handshake fails */
    http("GET", "/patroni", NULL, USE_OTHER_CERT, 5000, &r);
    CHECK(r.cc != CURLE_OK && r.status == 0);
}

TEST(live_switchover_pending)
{
    if (!fx.up)
        return;
    struct resp r;
    /* answered 200 ms later through restapi_complete */
    http("POST", "/switchover", "{\"leader\":\"pg-0\",\"candidate\":\"pg-2\"}", USE_CERT, 5000, &r);
    CHECK(r.status == 200 && r.ms >= 150);
    CHECK_STR(r.body, "Successfully switched over to \"pg-2\"");
    pthread_mutex_lock(&fx.mu);
    CHECK(fx.soon.fired && fx.soon.rc == 0);
    pthread_mutex_unlock(&fx.mu);

    /* answered from inside the callback */
    http("POST", "/switchover", "{\"leader\":\"pg-0\",\"candidate\":\"pg-4\"}", USE_CERT, 5000, &r);
    CHECK(r.status == 412);
    CHECK_STR(r.body, "candidate name does not match with sync_standby");
    CHECK(fx.inside.rc == 0);

    /* the client gives up after 300 ms; the answer at 1 s finds the ticket stale */
    http("POST", "/switchover", "{\"leader\":\"pg-0\",\"candidate\":\"pg-3\"}", USE_CERT, 300, &r);
    CHECK(r.cc == CURLE_OPERATION_TIMEDOUT);
    pthread_mutex_lock(&fx.mu);
    long long t0 = now_ms();
    while (!fx.late.fired && now_ms() - t0 < 3000) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        (void)pthread_cond_timedwait(&fx.cv, &fx.mu, &ts);
    }
    CHECK(fx.late.fired && fx.late.rc == -ESTALE);
    pthread_mutex_unlock(&fx.mu);

    /* never answered: the pending deadline (2 s in this fixture) answers 503 */
    http("POST", "/switchover", "{\"leader\":\"pg-0\",\"candidate\":\"pg-5\"}", USE_CERT, 5000, &r);
    CHECK(r.status == 503 && r.ms >= 1800);
    CHECK_STR(r.body, "Switchover status unknown");
    struct restapi_ticket bogus = {.api = NULL};
    CHECK(restapi_complete(bogus, 200, "x") == -ESTALE);
}

TEST(live_malformed_and_oversize)
{
    if (!fx.up)
        return;
    char out[1024];
    static const char lf[] = "GET /patroni HTTP/1.1\nHost: x\n\n";
    CHECK(tls_raw(lf, sizeof(lf) - 1, out, sizeof(out)));
    CHECK(strncmp(out, "HTTP/1.1 400 ", 13) == 0 && strstr(out, "Connection: close\r\n"));
    static const char v2[] = "GET /patroni HTTP/2.0\r\n\r\n";
    CHECK(tls_raw(v2, sizeof(v2) - 1, out, sizeof(out)));
    CHECK(strncmp(out, "HTTP/1.1 505 ", 13) == 0);
    static const char te[] = "POST /switchover HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    CHECK(tls_raw(te, sizeof(te) - 1, out, sizeof(out)));
    CHECK(strncmp(out, "HTTP/1.1 501 ", 13) == 0);
    static const char nolen[] = "POST /switchover HTTP/1.1\r\nHost: x\r\n\r\n";
    /* the length check comes after authentication: without credentials, 401 */
    CHECK(tls_raw(nolen, sizeof(nolen) - 1, out, sizeof(out)));
    CHECK(strncmp(out, "HTTP/1.1 401 ", 13) == 0);
    static const char ok10[] = "GET /health HTTP/1.0\r\n\r\n";
    CHECK(tls_raw(ok10, sizeof(ok10) - 1, out, sizeof(out)));
    CHECK(strncmp(out, "HTTP/1.1 200 ", 13) == 0 && strstr(out, "\r\n\r\n{"));

    /* a head over 8 KiB: 431; a body over 16 KiB: 413 */
    struct resp r;
    char *pad = malloc(9000 + 16);
    if (pad) {
        memcpy(pad, "X-Pad: ", 7);
        memset(pad + 7, 'a', 9000);
        pad[9007] = '\0';
        CURL *h = curl_easy_init();
        struct curl_slist *hdrs = curl_slist_append(NULL, pad);
        char url[128];
        (void)snprintf(url, sizeof(url), "https://127.0.0.1:%u/patroni", (unsigned)fx.port);
        memset(&r, 0, sizeof(r));
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CAINFO, fx.ca);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
        r.cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        CHECK(r.cc == CURLE_OK && r.status == 431);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
        free(pad);
    }
    char *big = malloc(20001);
    if (big) {
        memset(big, ' ', 20000);
        big[0] = '{';
        big[19999] = '}';
        big[20000] = '\0';
        http("POST", "/switchover", big, USE_CERT, 5000, &r);
        CHECK(r.cc == CURLE_OK && r.status == 413);
        free(big);
    }
}

TEST(live_idle_client_is_closed)
{
    if (!fx.up)
        return;
    int fd = tcp_connect(fx.port);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    long long ms = ms_until_closed(fd, 4000);
    close(fd);
    /* the fixture's deadline is 700 ms */
    if (ms < 600 || ms > 2000)
        fprintf(stderr, "  closed after %lld ms\n", ms);
    CHECK(ms >= 600 && ms <= 2000);
}

TEST(live_garbage_instead_of_tls)
{
    if (!fx.up)
        return;
    static const char plain[] = "GET /patroni HTTP/1.1\r\nHost: x\r\n\r\n";
    int fd = tcp_connect(fx.port);
    CHECK(fd >= 0 && write(fd, plain, sizeof(plain) - 1) == (ssize_t)(sizeof(plain) - 1));
    long long ms = fd >= 0 ? ms_until_closed(fd, 2000) : -1;
    CHECK(ms >= 0 && ms < 500);
    if (fd >= 0)
        close(fd);

    /* a whole TLS handshake record of nonsense */
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    static const unsigned char rec[] = {0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc};
    memcpy(junk, rec, sizeof(rec));
    fd = tcp_connect(fx.port);
    CHECK(fd >= 0 && write(fd, junk, sizeof(junk)) > 0);
    ms = fd >= 0 ? ms_until_closed(fd, 2000) : -1;
    CHECK(ms >= 0 && ms < 1500);
    if (fd >= 0)
        close(fd);

    /* a TLS session that sends binary garbage as the request */
    char out[512];
    CHECK(tls_raw(junk + 16, 200, out, sizeof(out)));
    CHECK(strncmp(out, "HTTP/1.1 400 ", 13) == 0);

    struct resp r;
    http("GET", "/health", NULL, 0, 5000, &r);
    CHECK(r.status == 200);
}

TEST(live_connection_limit)
{
    if (!fx.up)
        return;
    sleep_ms(300); /* let the earlier tests' connections finish */
    enum { N = RESTAPI_MAX_CONNS + 8 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = tcp_connect(fx.port);
    sleep_ms(300);
    int closed = 0;
    for (int i = 0; i < N; i++) {
        CHECK(fds[i] >= 0);
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        char b;
        if (fds[i] >= 0 && poll(&p, 1, 0) == 1 && read(fds[i], &b, 1) == 0)
            closed++;
    }
    if (closed != N - RESTAPI_MAX_CONNS)
        fprintf(stderr, "  %d of %d closed at once\n", closed, N);
    CHECK(closed == N - RESTAPI_MAX_CONNS);
    /* while full, a request is refused; after the others go, it is served */
    struct resp r;
    http("GET", "/health", NULL, 0, 2000, &r);
    CHECK(r.cc != CURLE_OK);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    bool served = false;
    for (int i = 0; i < 20 && !served; i++) {
        http("GET", "/health", NULL, 0, 2000, &r);
        served = r.status == 200;
        if (!served)
            sleep_ms(100);
    }
    CHECK(served);
}

TEST(live_reload_tls)
{
    if (!fx.up)
        return;
    struct resp r;
    http("GET", "/health", NULL, CERTINFO, 5000, &r);
    CHECK(r.status == 200 && strstr(r.certinfo, "CN = pg-0") != NULL);
    if (!strstr(r.certinfo, "CN = pg-0"))
        fprintf(stderr, "  certinfo: %.300s\n", r.certinfo);
    /* a new certificate and key in the same files */
    CHECK(write_leaf(fx.ca_pem, fx.ca_key_pem, "rotated", fx.srv_cert, fx.srv_key));
    CHECK(send_cmd(CMD_RELOAD) == 0);
    http("GET", "/health", NULL, CERTINFO, 5000, &r);
    CHECK(r.status == 200 && strstr(r.certinfo, "CN = rotated") != NULL);
    /* a broken key: refused, the rotated context stays */
    CHECK(write_file(fx.srv_key, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"));
    CHECK(send_cmd(CMD_RELOAD) == -EINVAL);
    http("GET", "/health", NULL, CERTINFO, 5000, &r);
    CHECK(r.status == 200 && strstr(r.certinfo, "CN = rotated") != NULL);
    CHECK(write_leaf(fx.ca_pem, fx.ca_key_pem, "pg-0", fx.srv_cert, fx.srv_key));
    CHECK(send_cmd(CMD_RELOAD) == 0);
}

TEST(live_peer_probe)
{
    if (!fx.up)
        return;
    /* a port that refuses, and a listener that never answers the handshake */
    int s1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int s2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    struct sockaddr_in a1 = sa, a2 = sa;
    CHECK(s1 >= 0 && s2 >= 0);
    CHECK(bind(s1, (struct sockaddr *)&a1, sizeof(a1)) == 0 &&
          getsockname(s1, (struct sockaddr *)&a1, &sl) == 0);
    close(s1); /* nothing listens there now */
    sl = sizeof(a2);
    CHECK(bind(s2, (struct sockaddr *)&a2, sizeof(a2)) == 0 && listen(s2, 4) == 0 &&
          getsockname(s2, (struct sockaddr *)&a2, &sl) == 0);

    char good[128], notfound[128], refused[128], silent[128];
    (void)snprintf(good, sizeof(good), "https://127.0.0.1:%u/patroni", (unsigned)fx.port);
    (void)snprintf(notfound, sizeof(notfound), "https://127.0.0.1:%u/nope", (unsigned)fx.port);
    (void)snprintf(refused, sizeof(refused), "https://127.0.0.1:%u/patroni",
                   (unsigned)ntohs(a1.sin_port));
    (void)snprintf(silent, sizeof(silent), "https://127.0.0.1:%u/patroni",
                   (unsigned)ntohs(a2.sin_port));
    const char *urls[] = {good, refused, silent, notfound, "http://127.0.0.1:1/patroni"};
    struct peer_status st[5];
    struct peer_tls tls = {.ca_file = fx.ca, .cert_file = fx.cli_cert, .key_file = fx.cli_key};
    char *err = NULL;
    long long t0 = now_ms();
    CHECK(peer_probe_run(urls, 5, &tls, 1000, st, &err) == 0);
    long long ms = now_ms() - t0;
    if (err)
        fprintf(stderr, "  probe: %s\n", err);
    free(err);
    err = NULL;
    CHECK(ms >= 900 && ms < 1500);
    CHECK(st[0].reachable && st[0].valid && st[0].http_status == 200);
    CHECK_STR(st[0].name, "pg-0");
    CHECK(st[0].role == PEER_ROLE_REPLICA && st[0].in_recovery && st[0].streaming);
    CHECK(st[0].timeline == 3 && st[0].wal_position == 5000);
    CHECK(!st[1].reachable && !st[1].valid && st[1].error[0]);
    CHECK(!st[2].reachable && !st[2].valid);
    /* our deadline or curl's, whichever notices first */
    CHECK(strstr(st[2].error, "no answer within 1000 ms") || strstr(st[2].error, "timed out"));
    CHECK(st[3].reachable && !st[3].valid && st[3].http_status == 404);
    CHECK(!st[4].reachable);
    CHECK_STR(st[4].error, "invalid peer URL");

    /* without the silent one, the probe ends as soon as every answer is in */
    const char *fast[] = {good, refused};
    t0 = now_ms();
    CHECK(peer_probe_run(fast, 2, &tls, 1000, st, &err) == 0);
    CHECK(now_ms() - t0 < 500 && st[0].valid && !st[1].reachable);
    close(s2);

    /* one POST, with and without the client certificate */
    char url[128];
    (void)snprintf(url, sizeof(url), "https://127.0.0.1:%u/switchover", (unsigned)fx.port);
    long status = 0;
    char *text = NULL;
    CHECK(peer_post_json(url, "{\"leader\":\"pg-0\",\"candidate\":\"pg-1\"}", &tls, 2000, &status,
                         &text, &err) == 0);
    CHECK(status == 200);
    CHECK_STR(text, "Successfully switched over to \"pg-1\"");
    free(text);
    struct peer_tls anon = {.ca_file = fx.ca};
    CHECK(peer_post_json(url, "{}", &anon, 2000, &status, &text, &err) == 0 && status == 401);
    free(text);
    CHECK(peer_post_json(refused, "{}", &tls, 2000, &status, &text, &err) == -ECONNREFUSED);
    CHECK(text == NULL && err != NULL);
    /* the server's certificate must chain to the CA given */
    struct peer_tls wrong_ca = {.ca_file = fx.other_cert};
    CHECK(peer_post_json(url, "{}", &wrong_ca, 2000, &status, &text, &err) == -ECONNABORTED);
    free(err);
}

TEST(live_server_stops)
{
    if (!fx.up)
        return;
    CHECK(send_cmd(CMD_QUIT) >= 0);
    CHECK(pthread_join(fx.thread, NULL) == 0);
    close(fx.efd);
    fx.up = false;
    free(fx.ca_pem);
    password_free(fx.ca_key_pem);
    const char *files[] = {fx.ca, fx.srv_cert, fx.srv_key, fx.cli_cert, fx.cli_key,
                           fx.other_cert, fx.other_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        (void)unlink(files[i]);
    CHECK(rmdir(fx.dir) == 0);
    curl_global_cleanup();
}

CHECK_MAIN("restapi", CASE(head_good_requests), CASE(head_incomplete_needs_more),
           CASE(head_malformed_requests), CASE(head_oversize), CASE(query_parameters),
           CASE(size_parser), CASE(health_table), CASE(switchover_bodies),
           CASE(basic_credentials), CASE(patroni_answers), CASE(peer_urls),
           CASE(live_server_starts), CASE(live_health_endpoints), CASE(live_other_reads),
           CASE(live_switchover_auth), CASE(live_switchover_pending),
           CASE(live_malformed_and_oversize), CASE(live_idle_client_is_closed),
           CASE(live_garbage_instead_of_tls), CASE(live_connection_limit), CASE(live_reload_tls),
           CASE(live_peer_probe), CASE(live_server_stops))
