/* The REST API server (restapi.h): a strict HTTP/1.x request parser, the health table,
 * and a non-blocking OpenSSL server on sd-event with per-connection deadlines. */
/* _GNU_SOURCE is how glibc is asked for accept4 and memmem. */
#define _GNU_SOURCE
#include "restapi.h"

#include "errmsg.h"
#include "log.h"
#include "password.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sodium.h>

/* Accepts per wake-up, so that a flood cannot starve the connections being served. */
#define ACCEPT_BATCH 16
/* Pause before accepting again after running out of fds or memory. */
#define ACCEPT_RETRY_USEC ((uint64_t)1000000)
/* After the answer: how long the rest of what the client sends is read and dropped, so
 * that closing does not reset the connection before the client has read the answer. */
#define DRAIN_USEC ((uint64_t)1000000)
#define LISTEN_BACKLOG 64
#define USEC_PER_MSEC ((uint64_t)1000)
/* TLS 1.2 suites: forward secret AEAD only (TLS 1.3 suites are OpenSSL's defaults). */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
#define SESSION_CONTEXT "pg-agent-restapi"

/* ---- small helpers ---------------------------------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* Copy text for a log line: printable ASCII only, bounded. */
static void clean_text(const char *in, size_t len, char *out, size_t outsz)
{
    size_t j = 0;
    for (size_t i = 0; in && i < len && in[i] && j + 1 < outsz; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch >= 0x20 && ch < 0x7f)
            out[j++] = in[i];
        else
            out[j++] = '?';
    }
    out[j] = '\0';
}

/* The most recent OpenSSL error as text (and the queue emptied). */
static void ssl_errtext(char *buf, size_t n)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (last)
        ERR_error_string_n(last, buf, n);
    else
        (void)snprintf(buf, n, "no OpenSSL error recorded");
}

/* ---- request head ----------------------------------------------------------------------- */

static enum restapi_method method_of(const char *m, size_t len)
{
    static const struct {
        const char *name;
        enum restapi_method method;
    } methods[] = {
        {"GET", RESTAPI_GET},     {"HEAD", RESTAPI_HEAD},   {"OPTIONS", RESTAPI_OPTIONS},
        {"POST", RESTAPI_POST},   {"PUT", RESTAPI_PUT},     {"PATCH", RESTAPI_PATCH},
        {"DELETE", RESTAPI_DELETE},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (len == strlen(methods[i].name) && memcmp(m, methods[i].name, len) == 0)
            return methods[i].method;
    return RESTAPI_OTHER;
}

/* METHOD SP origin-form SP HTTP/1.x (len bytes, without the CRLF). */
static int parse_request_line(const char *line, size_t len, struct restapi_head *out)
{
    const char *sp1 = memchr(line, ' ', len);
    if (!sp1 || sp1 == line || sp1 - line > 16)
        return -EBADMSG;
    for (const char *p = line; p < sp1; p++)
        if (!is_tchar((unsigned char)*p))
            return -EBADMSG;
    out->method = method_of(line, (size_t)(sp1 - line));

    const char *target = sp1 + 1;
    size_t rest = len - (size_t)(target - line);
    const char *sp2 = memchr(target, ' ', rest);
    if (!sp2 || sp2 == target || *target != '/')
        return -EBADMSG;
    size_t tlen = (size_t)(sp2 - target);
    for (size_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)target[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '#')
            return -EBADMSG;
    }
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    size_t qlen = q ? tlen - plen - 1 : 0;
    if (plen >= sizeof(out->path) || qlen >= sizeof(out->query))
        return -ENAMETOOLONG;
    memcpy(out->path, target, plen);
    out->path[plen] = '\0';
    if (q)
        memcpy(out->query, q + 1, qlen);
    out->query[qlen] = '\0';

    const char *ver = sp2 + 1;
    size_t vlen = len - (size_t)(ver - line);
    if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0)
        out->http10 = false;
    else if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)
        out->http10 = true;
    else if (vlen == 8 && memcmp(ver, "HTTP/", 5) == 0 && ver[5] >= '0' && ver[5] <= '9' &&
             ver[6] == '.' && ver[7] >= '0' && ver[7] <= '9')
        return -EPROTONOSUPPORT;
    else
        return -EBADMSG;
    return 0;
}

static int parse_content_length(const char *v, size_t len, struct restapi_head *out)
{
    if (len == 0 || len > 19)
        return -EBADMSG;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EBADMSG;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if (out->has_length && out->content_length != n)
        return -EBADMSG;
    out->has_length = true;
    out->content_length = n;
    return 0;
}

/* One header line (len bytes, without the CRLF). */
static int parse_header(const char *line, size_t len, bool *seen_host, struct restapi_head *out)
{
    if (line[0] == ' ' || line[0] == '\t')
        return -EBADMSG; /* obs-fold */
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return -EBADMSG;
    size_t nlen = (size_t)(colon - line);
    for (size_t i = 0; i < nlen; i++)
        if (!is_tchar((unsigned char)line[i]))
            return -EBADMSG;
    const char *v = colon + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);

    if (name_is(line, nlen, "Content-Length"))
        return parse_content_length(v, vlen, out);
    if (name_is(line, nlen, "Transfer-Encoding"))
        return -ENOTSUP;
    if (name_is(line, nlen, "Authorization")) {
        if (out->authorization)
            return -EBADMSG;
        out->authorization = v;
        out->authorization_len = vlen;
        return 0;
    }
    if (name_is(line, nlen, "Host")) {
        if (*seen_host)
            return -EBADMSG;
        *seen_host = true;
    }
    return 0;
}

int restapi_parse_head(const char *buf, size_t len, struct restapi_head *out)
{
    memset(out, 0, sizeof(*out));
    size_t scan = len < RESTAPI_HEAD_MAX ? len : RESTAPI_HEAD_MAX;
    /* Bytes that never belong in a head, and CR/LF not paired: refuse at once rather than
     * wait for more (binary garbage, a bare LF). */
    for (size_t i = 0; i < scan; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == '\n' && (i == 0 || buf[i - 1] != '\r'))
            return -EBADMSG;
        if (ch == '\r' && i + 1 < scan && buf[i + 1] != '\n')
            return -EBADMSG;
        if ((ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t') || ch == 0x7f)
            return -EBADMSG;
    }
    const char *eol = memmem(buf, scan, "\r\n", 2);
    const char *end = memmem(buf, scan, "\r\n\r\n", 4);
    if (!end) {
        if (len >= RESTAPI_HEAD_MAX)
            return -EMSGSIZE;
        if (eol) {
            int rc = parse_request_line(buf, (size_t)(eol - buf), out);
            memset(out, 0, sizeof(*out));
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    int rc = parse_request_line(buf, (size_t)(eol - buf), out);
    if (rc < 0)
        return rc;
    size_t head_len = (size_t)(end - buf) + 4;
    bool seen_host = false;
    size_t n_headers = 0;
    const char *line = eol + 2;
    while (line < end + 2) {
        const char *le = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        if (!le)
            return -EBADMSG;
        if (++n_headers > RESTAPI_MAX_HEADERS)
            return -EMSGSIZE;
        rc = parse_header(line, (size_t)(le - line), &seen_host, out);
        if (rc < 0)
            return rc;
        line = le + 2;
    }
    if (out->content_length > RESTAPI_BODY_MAX)
        return -EFBIG;
    out->head_len = head_len;
    return (int)head_len;
}

int restapi_head_error_status(int rc)
{
    switch (rc) {
    case -EMSGSIZE:
        return 431;
    case -ENAMETOOLONG:
        return 414;
    case -EFBIG:
        return 413;
    case -ENOTSUP:
        return 501;
    case -EPROTONOSUPPORT:
        return 505;
    default:
        return 400;
    }
}

/* ---- query, sizes, health --------------------------------------------------------------- */

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int url_decode(const char *in, size_t len, char *out, size_t outsz)
{
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= len)
                return -EBADMSG;
            int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -EBADMSG;
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        if (j + 1 >= outsz)
            return -EBADMSG;
        out[j++] = ch;
    }
    out[j] = '\0';
    return 0;
}

int restapi_query_get(const char *query, const char *name, char *out, size_t outsz)
{
    if (outsz == 0)
        return -EBADMSG;
    out[0] = '\0';
    size_t nlen = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        if (klen == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : p + plen;
            size_t vlen = eq ? plen - klen - 1 : 0;
            int rc = url_decode(v, vlen, out, outsz);
            if (rc < 0) {
                out[0] = '\0';
                return rc;
            }
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

int restapi_parse_size(const char *s, uint64_t *out)
{
    if (!s || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    uint64_t v = 0;
    bool overflow = false;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {{"", 0}, {"B", 0}, {"kB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}};
    for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
        if (strcmp(s + i, units[k].unit) != 0)
            continue;
        if (overflow || v > (UINT64_MAX >> units[k].shift))
            return -ERANGE;
        *out = v << units[k].shift;
        return 0;
    }
    return -EINVAL;
}

enum health_kind {
    H_PATRONI,
    H_HEALTH,
    H_LIVENESS,
    H_READINESS,
    H_PRIMARY,
    H_LEADER,
    H_STANDBY_LEADER,
    H_REPLICA,
    H_READ_ONLY,
    H_SYNC,
    H_ASYNC,
    H_READ_ONLY_SYNC,
};

static const struct {
    const char *path;
    enum health_kind kind;
} health_paths[] = {
    {"/patroni", H_PATRONI},
    {"/health", H_HEALTH},
    {"/liveness", H_LIVENESS},
    {"/readiness", H_READINESS},
    {"/", H_PRIMARY},
    {"/primary", H_PRIMARY},
    {"/read-write", H_PRIMARY},
    {"/master", H_PRIMARY},
    {"/leader", H_LEADER},
    {"/standby-leader", H_STANDBY_LEADER},
    {"/replica", H_REPLICA},
    {"/read-only", H_READ_ONLY},
    {"/sync", H_SYNC},
    {"/synchronous", H_SYNC},
    {"/async", H_ASYNC},
    {"/asynchronous", H_ASYNC},
    {"/read-only-sync", H_READ_ONLY_SYNC},
};

static int health_kind_of(const char *path)
{
    for (size_t i = 0; i < sizeof(health_paths) / sizeof(health_paths[0]); i++)
        if (strcmp(path, health_paths[i].path) == 0)
            return (int)health_paths[i].kind;
    return -1;
}

bool restapi_is_health_path(const char *path)
{
    return health_kind_of(path) >= 0;
}

/* The replica side with its filters: 1 passes, 0 fails, -1 a malformed filter. */
static int replica_ok(const char *query, const struct restapi_health *h)
{
    char v[64];
    bool ok = h->running && h->replica;
    int rc = restapi_query_get(query, "lag", v, sizeof(v));
    if (rc < 0)
        return -1;
    if (rc == 1) {
        uint64_t max;
        if (restapi_parse_size(v, &max) < 0)
            return -1;
        if (h->lag_bytes == UINT64_MAX || h->lag_bytes > max)
            ok = false;
    }
    rc = restapi_query_get(query, "replication_state", v, sizeof(v));
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (strcmp(v, "streaming") == 0)
            ok = ok && h->streaming;
        else if (strcmp(v, "in archive recovery") == 0)
            ok = ok && !h->streaming;
        else
            return -1;
    }
    return ok ? 1 : 0;
}

int restapi_health_status(const char *path, const char *query, const struct restapi_health *h)
{
    int kind = health_kind_of(path);
    if (kind < 0)
        return 404;
    bool primary = h->running && h->leader && h->primary;
    int replica = 0;
    switch ((enum health_kind)kind) {
    case H_READINESS: {
        char mode[16];
        int rc = restapi_query_get(query, "mode", mode, sizeof(mode));
        if (rc < 0 || (rc == 1 && strcmp(mode, "apply") != 0 && strcmp(mode, "write") != 0))
            return 400;
    }
        /* fall through */
    case H_REPLICA:
    case H_READ_ONLY:
    case H_SYNC:
    case H_ASYNC:
    case H_READ_ONLY_SYNC:
        replica = replica_ok(query, h);
        if (replica < 0)
            return 400;
        break;
    default:
        break;
    }
    bool ok = false;
    switch ((enum health_kind)kind) {
    case H_PATRONI:
        ok = true;
        break;
    case H_HEALTH:
        ok = h->running;
        break;
    case H_LIVENESS:
        ok = h->loop_recent;
        break;
    case H_READINESS:
        ok = (h->running && h->leader) || replica;
        break;
    case H_PRIMARY:
        ok = primary;
        break;
    case H_LEADER:
        ok = h->leader;
        break;
    case H_STANDBY_LEADER:
        ok = false;
        break;
    case H_REPLICA:
        ok = replica;
        break;
    case H_READ_ONLY:
        ok = primary || replica;
        break;
    case H_SYNC:
        ok = replica && h->sync_standby;
        break;
    case H_ASYNC:
        ok = replica && !h->sync_standby;
        break;
    case H_READ_ONLY_SYNC:
        ok = primary || (replica && h->sync_standby);
        break;
    }
    return ok ? 200 : 503;
}

/* ---- write requests --------------------------------------------------------------------- */

static bool valid_member_name(const char *s, size_t len)
{
    if (len == 0 || len >= RESTAPI_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return false;
    }
    return true;
}

/* A member-name field into out ("" when absent or null): NULL, or what is wrong. */
static const char *name_field(const json_t *root, const char *field, char out[RESTAPI_NAME_MAX])
{
    out[0] = '\0';
    const json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v))
        return "member names must be strings";
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len || !valid_member_name(s, len))
        return "invalid member name: 1 to 63 characters of a-z, 0-9 and -";
    memcpy(out, s, len + 1);
    return NULL;
}

int restapi_parse_switchover(const char *body, size_t len, bool failover,
                             struct restapi_switchover *out, const char **text)
{
    memset(out, 0, sizeof(*out));
    *text = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        *text = "the body must be a JSON object";
        return 400;
    }
    out->failover = failover;
    const char *why = name_field(root, "leader", out->leader);
    if (!why)
        why = name_field(root, "candidate", out->candidate);
    const json_t *at = json_object_get(root, "scheduled_at");
    if (!why && at && !json_is_null(at))
        why = "scheduled switchovers are not supported";
    if (!why && failover && !out->candidate[0])
        why = "Failover could be performed only to a specific candidate";
    if (!why && !failover && !out->leader[0])
        why = "Switchover could be performed only from a specific leader";
    json_decref(root);
    if (why) {
        *text = why;
        return 400;
    }
    return 0;
}

int restapi_basic_decode(const char *value, size_t len, char **user, char **password)
{
    *user = NULL;
    *password = NULL;
    if (len < 6 || strncasecmp(value, "Basic ", 6) != 0)
        return -EINVAL;
    const char *b64 = value + 6;
    size_t blen = len - 6;
    while (blen > 0 && *b64 == ' ') {
        b64++;
        blen--;
    }
    size_t max_b64 = ((size_t)RESTAPI_USER_MAX + 1 + RESTAPI_PASSWORD_MAX + 2) / 3 * 4;
    if (blen == 0 || blen > max_b64)
        return -EINVAL;
    if (sodium_init() < 0)
        return -ENOMEM;
    size_t cap = blen / 4 * 3 + 3;
    unsigned char *bin = sodium_malloc(cap);
    if (!bin)
        return -ENOMEM;
    size_t n = 0;
    int rc = -EINVAL;
    if (sodium_base642bin(bin, cap, b64, blen, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) ==
        0) {
        const unsigned char *colon = memchr(bin, ':', n);
        size_t ulen = colon ? (size_t)(colon - bin) : 0;
        size_t plen = colon ? n - ulen - 1 : 0;
        bool ok = colon && ulen <= RESTAPI_USER_MAX && plen <= RESTAPI_PASSWORD_MAX;
        for (size_t i = 0; ok && i < n; i++)
            if (bin[i] < 0x20 || bin[i] == 0x7f)
                ok = false; /* no NUL (it would cut the strings) or other control */
        if (ok) {
            *user = strndup((const char *)bin, ulen);
            *password = password_dup((const char *)colon + 1, plen);
            rc = *user && *password ? 0 : -ENOMEM;
            if (rc < 0) {
                free(*user);
                password_free(*password);
                *user = NULL;
                *password = NULL;
            }
        }
    }
    sodium_free(bin); /* zeroes it */
    return rc;
}

/* ---- the server ------------------------------------------------------------------------- */

enum conn_state { C_FREE = 0, C_HANDSHAKE, C_READ, C_PENDING, C_WRITE, C_DRAIN };

struct conn {
    struct restapi *api;
    unsigned slot;
    uint64_t gen; /* 0 while free; tickets carry it */
    enum conn_state state;
    int fd;
    SSL *ssl;
    sd_event_source *io, *timer;
    char *in; /* request bytes; wiped before it is freed (credentials) */
    size_t in_len, in_cap;
    bool head_done;
    struct restapi_head head;
    size_t need; /* head and body bytes */
    char *out;
    size_t out_len, out_off;
    bool cert_auth;
    char cert_cn[RESTAPI_USER_MAX + 1];
    char peer[INET6_ADDRSTRLEN + 8];
};

struct restapi {
    sd_event *ev;
    int fd;
    uint16_t port;
    sd_event_source *listen_src, *retry_src;
    SSL_CTX *ctx;
    char *cert_file, *key_file, *ca_file;
    struct restapi_ops ops;
    uint64_t deadline_usec, pending_usec;
    struct conn conns[RESTAPI_MAX_CONNS];
    unsigned n_conns;
    uint64_t next_gen;
    bool refusing; /* the "too many connections" warning was logged for this burst */
};

union sockaddr_any {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_storage ss;
};

static void conn_close(struct conn *c)
{
    struct restapi *api = c->api;
    sd_event_source_disable_unref(c->io);
    sd_event_source_disable_unref(c->timer);
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    if (c->in) {
        sodium_memzero(c->in, c->in_cap);
        free(c->in);
    }
    free(c->out);
    unsigned slot = c->slot;
    memset(c, 0, sizeof(*c));
    c->api = api;
    c->slot = slot;
    c->fd = -1;
    c->state = C_FREE;
    api->n_conns--;
    api->refusing = false;
}

/* Re-arm the connection's deadline usec from now. */
static void conn_arm(struct conn *c, uint64_t usec)
{
    if (sd_event_source_set_time_relative(c->timer, usec) < 0 ||
        sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
        log_warning("REST API: cannot re-arm the deadline of a connection from %s", c->peer);
}

static void conn_events(struct conn *c, uint32_t events)
{
    if (sd_event_source_set_io_events(c->io, events) < 0)
        log_warning("REST API: cannot change the events watched for %s", c->peer);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

/* Queue an answer and switch to writing (no I/O here). extra: more header lines, each
 * ending with CRLF, or NULL. Returns 0, or -1 when the connection was closed (no
 * memory). */
static int conn_respond(struct conn *c, int status, const char *ctype, const char *body,
                        size_t body_len, const char *extra)
{
    enum restapi_method m = c->head_done ? c->head.method : RESTAPI_GET;
    bool send_body = m != RESTAPI_HEAD && m != RESTAPI_OPTIONS;
    size_t length = m == RESTAPI_OPTIONS ? 0 : body_len;
    char date[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (now != (time_t)-1 && gmtime_r(&now, &tm) &&
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        date[0] = '\0';
    char *hdr = NULL;
    int hn = asprintf(&hdr,
                      "HTTP/1.1 %d %s\r\n"
                      "Date: %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "Cache-Control: no-store\r\n"
                      "Connection: close\r\n"
                      "%s\r\n",
                      status, reason_phrase(status), date, ctype, length, extra ? extra : "");
    if (hn < 0) {
        log_error("REST API: out of memory for an answer to %s", c->peer);
        conn_close(c);
        return -1;
    }
    size_t total = (size_t)hn + (send_body ? body_len : 0);
    char *out = malloc(total);
    if (!out) {
        free(hdr);
        log_error("REST API: out of memory for an answer to %s", c->peer);
        conn_close(c);
        return -1;
    }
    memcpy(out, hdr, (size_t)hn);
    if (send_body && body_len)
        memcpy(out + hn, body, body_len);
    free(hdr);
    free(c->out);
    c->out = out;
    c->out_len = total;
    c->out_off = 0;
    c->state = C_WRITE;
    conn_events(c, EPOLLOUT);
    return 0;
}

static int conn_text(struct conn *c, int status, const char *text, const char *extra)
{
    if (status < 200 || status > 599)
        status = 500;
    const char *t = text ? text : "";
    return conn_respond(c, status, "text/plain; charset=utf-8", t,
                        strnlen(t, RESTAPI_TEXT_MAX), extra);
}

/* A JSON answer (root is taken over; NULL: the callback failed, 503). */
static int conn_json(struct conn *c, int status, json_t *root, bool with_body)
{
    if (!root)
        return conn_text(c, 503, "status unavailable", NULL);
    char *text = with_body ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (with_body && !text)
        return conn_text(c, 500, "cannot encode the answer", NULL);
    int rc = conn_respond(c, status, "application/json", text ? text : "",
                          text ? strlen(text) : 0, NULL);
    free(text);
    return rc;
}

/* The ssl call returned r <= 0: wait for the socket (0), or close (-1). */
static int conn_ssl_wait(struct conn *c, int r, const char *what)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        conn_events(c, EPOLLIN);
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        conn_events(c, EPOLLOUT);
        return 0;
    }
    char reason[160];
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
        (void)snprintf(reason, sizeof(reason), "connection closed");
    else
        ssl_errtext(reason, sizeof(reason));
    ERR_clear_error();
    log_debug("REST API: %s %s: %s", what, c->peer, reason);
    conn_close(c);
    return -1;
}

static int conn_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1)
        return conn_ssl_wait(c, r, "TLS handshake with");
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    c->cert_auth = peer && SSL_get_verify_result(c->ssl) == X509_V_OK;
    if (c->cert_auth) {
        char cn[RESTAPI_USER_MAX + 1];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                          (int)sizeof(cn));
        clean_text(n > 0 ? cn : "(no CN)", sizeof(cn), c->cert_cn, sizeof(c->cert_cn));
    }
    c->state = C_READ;
    return 1;
}

/* Grow the request buffer to at least want bytes (zeroed); the old one is wiped. */
static int conn_grow(struct conn *c, size_t want)
{
    if (c->in_cap >= want)
        return 0;
    char *nb = calloc(1, want);
    if (!nb)
        return -ENOMEM;
    if (c->in) {
        memcpy(nb, c->in, c->in_len);
        sodium_memzero(c->in, c->in_cap);
        free(c->in);
    }
    c->in = nb;
    c->in_cap = want;
    return 0;
}

static int dispatch(struct conn *c);

/* Read until the request is complete. 1: moved on (answer queued), 0: waiting, -1: closed. */
static int conn_read(struct conn *c)
{
    if (conn_grow(c, RESTAPI_HEAD_MAX) < 0) {
        log_error("REST API: out of memory for a request from %s", c->peer);
        conn_close(c);
        return -1;
    }
    for (;;) {
        size_t cap = c->head_done ? c->need : RESTAPI_HEAD_MAX;
        if (c->in_len < cap) {
            ERR_clear_error();
            size_t want = cap - c->in_len;
            int r = SSL_read(c->ssl, c->in + c->in_len, want > INT_MAX ? INT_MAX : (int)want);
            if (r <= 0)
                return conn_ssl_wait(c, r, "reading a request from");
            c->in_len += (size_t)r;
        }
        if (!c->head_done) {
            int rc = restapi_parse_head(c->in, c->in_len, &c->head);
            if (rc < 0) {
                log_debug("REST API: malformed request from %s (%s)", c->peer, strerror(-rc));
                return conn_text(c, restapi_head_error_status(rc), "bad request", NULL) < 0 ? -1
                                                                                          : 1;
            }
            if (rc == 0)
                continue;
            c->head_done = true;
            c->need = (size_t)rc + (size_t)c->head.content_length;
            if (conn_grow(c, c->need) < 0) {
                log_error("REST API: out of memory for a request from %s", c->peer);
                conn_close(c);
                return -1;
            }
            /* parse again: head.authorization must point into the (maybe new) buffer */
            (void)restapi_parse_head(c->in, c->in_len, &c->head);
        }
        if (c->in_len >= c->need)
            return dispatch(c) < 0 ? -1 : 1;
    }
}

static int conn_write(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ERR_clear_error();
        size_t left = c->out_len - c->out_off;
        int r = SSL_write(c->ssl, c->out + c->out_off, left > INT_MAX ? INT_MAX : (int)left);
        if (r <= 0)
            return conn_ssl_wait(c, r, "sending an answer to");
        c->out_off += (size_t)r;
    }
    /* Send close_notify without waiting for the client's, stop sending, then read and
     * drop whatever else comes until the client closes (or DRAIN_USEC). */
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
    (void)shutdown(c->fd, SHUT_WR);
    c->state = C_DRAIN;
    conn_events(c, EPOLLIN);
    conn_arm(c, DRAIN_USEC < c->api->deadline_usec ? DRAIN_USEC : c->api->deadline_usec);
    return 0;
}

static int conn_drain(struct conn *c)
{
    char buf[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t r = read(c->fd, buf, sizeof(buf));
        if (r > 0)
            continue;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Run the connection's state machine as far as it goes without waiting. */
static void conn_step(struct conn *c)
{
    for (;;) {
        int rc;
        switch (c->state) {
        case C_HANDSHAKE:
            rc = conn_handshake(c);
            break;
        case C_READ:
            rc = conn_read(c);
            break;
        case C_WRITE:
            rc = conn_write(c);
            break;
        case C_DRAIN:
            (void)conn_drain(c);
            return;
        default: /* C_PENDING waits for restapi_complete; C_FREE is gone */
            return;
        }
        if (rc <= 0)
            return;
    }
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    (void)src;
    (void)fd;
    struct conn *c = userdata;
    if (c->state == C_PENDING) {
        if (revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            log_info("REST API: %s closed the connection before the switchover answer", c->peer);
            conn_close(c);
        }
        return 0;
    }
    conn_step(c);
    return 0;
}

static int on_conn_deadline(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)src;
    (void)usec;
    struct conn *c = userdata;
    switch (c->state) {
    case C_PENDING:
        log_warning("REST API: no switchover answer within %llu s for %s: 503",
                    (unsigned long long)(c->api->pending_usec / 1000000), c->peer);
        if (conn_text(c, 503, "Switchover status unknown", NULL) < 0)
            return 0;
        conn_arm(c, c->api->deadline_usec);
        conn_step(c);
        return 0;
    case C_HANDSHAKE:
    case C_READ:
        log_debug("REST API: no complete request from %s in time: closing", c->peer);
        break;
    case C_WRITE:
        log_debug("REST API: %s did not read its answer in time: closing", c->peer);
        break;
    default:
        break;
    }
    if (c->state != C_FREE)
        conn_close(c);
    return 0;
}

/* ---- routing ---------------------------------------------------------------------------- */

#define ALLOW_READ "Allow: GET, HEAD, OPTIONS\r\n"

static bool method_read(enum restapi_method m)
{
    return m == RESTAPI_GET || m == RESTAPI_HEAD || m == RESTAPI_OPTIONS;
}

static int dispatch_health(struct conn *c)
{
    struct restapi *api = c->api;
    if (!method_read(c->head.method))
        return conn_text(c, 405, "method not allowed", ALLOW_READ);
    struct restapi_health h;
    memset(&h, 0, sizeof(h));
    h.lag_bytes = UINT64_MAX;
    json_t *doc = api->ops.patroni(api->ops.data, &h);
    int status = restapi_health_status(c->head.path, c->head.query, &h);
    if (status == 400) {
        json_decref(doc);
        return conn_text(c, 400, "invalid query parameter", NULL);
    }
    /* Patroni answers these two with the status only. */
    bool body = strcmp(c->head.path, "/liveness") != 0 && strcmp(c->head.path, "/readiness") != 0;
    if (!doc)
        return conn_text(c, 503, "status unavailable", NULL);
    return conn_json(c, status, doc, body);
}

static int dispatch_read(struct conn *c, json_t *(*fn)(void *))
{
    if (!method_read(c->head.method))
        return conn_text(c, 405, "method not allowed", ALLOW_READ);
    return conn_json(c, 200, fn(c->api->ops.data), true);
}

static int dispatch_metrics(struct conn *c)
{
    if (!method_read(c->head.method))
        return conn_text(c, 405, "method not allowed", ALLOW_READ);
    char *text = c->api->ops.metrics(c->api->ops.data);
    if (!text)
        return conn_text(c, 503, "metrics unavailable", NULL);
    int rc = conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text),
                          NULL);
    free(text);
    return rc;
}

/* Whether the client may write; fills who. */
static bool authenticated(struct conn *c, char *who, size_t whosz)
{
    if (c->cert_auth) {
        (void)snprintf(who, whosz, "%s", c->cert_cn);
        return true;
    }
    if (!c->head.authorization)
        return false;
    char *user = NULL, *password = NULL;
    int rc = restapi_basic_decode(c->head.authorization, c->head.authorization_len, &user,
                                  &password);
    if (rc < 0)
        return false;
    clean_text(user, strlen(user), who, whosz);
    bool ok = c->api->ops.auth_check(c->api->ops.data, user, password);
    password_free(password);
    free(user);
    return ok;
}

static int dispatch_write(struct conn *c, bool failover)
{
    struct restapi *api = c->api;
    enum restapi_method m = c->head.method;
    const char *what = failover ? "failover" : "switchover";
    const char *allow = failover ? "Allow: POST, OPTIONS\r\n" : "Allow: POST, DELETE, OPTIONS\r\n";
    if (m == RESTAPI_OPTIONS)
        return conn_text(c, 200, "", allow);
    if (m != RESTAPI_POST && (failover || m != RESTAPI_DELETE))
        return conn_text(c, 405, "method not allowed", allow);
    char who[RESTAPI_USER_MAX + 1] = "";
    if (!authenticated(c, who, sizeof(who))) {
        log_warning("REST API: unauthenticated %s /%s from %s refused%s%s%s",
                    m == RESTAPI_POST ? "POST" : "DELETE", what, c->peer,
                    who[0] ? " (user \"" : "", who, who[0] ? "\")" : "");
        return conn_text(c, 401, "no valid credentials",
                         "WWW-Authenticate: Basic realm=\"Patroni\"\r\n");
    }
    if (m == RESTAPI_DELETE)
        return conn_text(c, 404, "no switchover is scheduled", NULL);
    if (!c->head.has_length)
        return conn_text(c, 411, "Content-Length required", NULL);

    struct restapi_switchover req;
    const char *why = NULL;
    int st = restapi_parse_switchover(c->in + c->head.head_len, (size_t)c->head.content_length,
                                      failover, &req, &why);
    if (st != 0) {
        log_info("REST API: %s request from %s (%s) refused: %s", what, c->peer, who, why);
        return conn_text(c, st, why, NULL);
    }
    req.cert_auth = c->cert_auth;
    (void)snprintf(req.who, sizeof(req.who), "%s", who);
    req.ticket = (struct restapi_ticket){.api = api, .slot = c->slot, .gen = c->gen};
    log_info("REST API: %s requested by %s (%s) from %s: leader \"%s\", candidate \"%s\"", what,
             who, c->cert_auth ? "client certificate" : "password", c->peer, req.leader,
             req.candidate);

    c->state = C_PENDING;
    conn_events(c, EPOLLRDHUP);
    char *text = NULL;
    st = api->ops.switchover(api->ops.data, &req, &text);
    if (c->state != C_PENDING) { /* restapi_complete was called from inside */
        free(text);
        return 0;
    }
    if (st == 0) {
        free(text);
        conn_arm(c, api->pending_usec);
        return 0;
    }
    int rc = conn_text(c, st, text, NULL);
    free(text);
    return rc;
}

/* The request is complete: answer it (or park it pending). 0, or -1 when closed. */
static int dispatch(struct conn *c)
{
    struct restapi *api = c->api;
    const char *path = c->head.path;
    if (restapi_is_health_path(path))
        return dispatch_health(c);
    if (strcmp(path, "/cluster") == 0 && api->ops.cluster)
        return dispatch_read(c, api->ops.cluster);
    if (strcmp(path, "/history") == 0 && api->ops.history)
        return dispatch_read(c, api->ops.history);
    if (strcmp(path, "/config") == 0 && api->ops.config)
        return dispatch_read(c, api->ops.config);
    if (strcmp(path, "/metrics") == 0 && api->ops.metrics)
        return dispatch_metrics(c);
    if (strcmp(path, "/switchover") == 0)
        return dispatch_write(c, false);
    if (strcmp(path, "/failover") == 0)
        return dispatch_write(c, true);
    return conn_text(c, 404, "not found", NULL);
}

int restapi_complete(struct restapi_ticket t, int status, const char *text)
{
    struct restapi *api = t.api;
    if (!api || t.slot >= RESTAPI_MAX_CONNS || t.gen == 0)
        return -ESTALE;
    struct conn *c = &api->conns[t.slot];
    if (c->state != C_PENDING || c->gen != t.gen)
        return -ESTALE;
    if (conn_text(c, status, text, NULL) < 0)
        return -ENOMEM;
    conn_arm(c, api->deadline_usec);
    return 0;
}

/* ---- accepting -------------------------------------------------------------------------- */

static void peer_text(const union sockaddr_any *a, char *out, size_t outsz)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->sa.sa_family == AF_INET) {
        (void)inet_ntop(AF_INET, &a->in4.sin_addr, host, sizeof(host));
        port = ntohs(a->in4.sin_port);
    } else if (a->sa.sa_family == AF_INET6) {
        (void)inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof(host));
        port = ntohs(a->in6.sin6_port);
    }
    (void)snprintf(out, outsz, "%s:%u", host, port);
}

static void conn_open(struct restapi *api, int fd, const union sockaddr_any *peer)
{
    struct conn *c = NULL;
    for (unsigned i = 0; i < RESTAPI_MAX_CONNS && !c; i++)
        if (api->conns[i].state == C_FREE)
            c = &api->conns[i];
    if (!c) {
        if (!api->refusing)
            log_warning("REST API: %d connections open: refusing more", RESTAPI_MAX_CONNS);
        api->refusing = true;
        close(fd);
        return;
    }
    api->n_conns++;
    c->fd = fd;
    c->gen = ++api->next_gen;
    c->state = C_HANDSHAKE;
    peer_text(peer, c->peer, sizeof(c->peer));
    ERR_clear_error();
    c->ssl = SSL_new(api->ctx);
    int rc = c->ssl && SSL_set_fd(c->ssl, fd) == 1 ? 0 : -ENOMEM;
    if (rc == 0) {
        SSL_set_accept_state(c->ssl);
        rc = sd_event_add_io(api->ev, &c->io, fd, EPOLLIN, on_conn_io, c);
    }
    if (rc >= 0)
        rc = sd_event_add_time_relative(api->ev, &c->timer, CLOCK_MONOTONIC, api->deadline_usec,
                                        10 * USEC_PER_MSEC, on_conn_deadline, c);
    if (rc < 0) {
        ERR_clear_error();
        log_error("REST API: cannot set up a connection from %s: %s", c->peer, strerror(-rc));
        conn_close(c);
    }
}

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)usec;
    struct restapi *api = userdata;
    api->retry_src = sd_event_source_disable_unref(src);
    if (sd_event_source_set_enabled(api->listen_src, SD_EVENT_ON) < 0)
        log_error("REST API: cannot resume accepting connections");
    return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    (void)revents;
    struct restapi *api = userdata;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        union sockaddr_any peer;
        socklen_t plen = sizeof(peer);
        memset(&peer, 0, sizeof(peer));
        int cfd = accept4(fd, &peer.sa, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            conn_open(api, cfd, &peer);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the socket stays readable, so pause rather
         * than spin. */
        log_error("REST API: cannot accept connections: %s; pausing for a second",
                  strerror(errno));
        if (!api->retry_src &&
            sd_event_add_time_relative(api->ev, &api->retry_src, CLOCK_MONOTONIC,
                                       ACCEPT_RETRY_USEC, 0, on_accept_retry, api) >= 0)
            (void)sd_event_source_set_enabled(src, SD_EVENT_OFF);
        return 0;
    }
    return 0;
}

/* ---- TLS and the listener --------------------------------------------------------------- */

static int tls_ctx_new(const char *cert, const char *key, const char *ca, SSL_CTX **out,
                       char **err)
{
    char why[200];
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return errmsg_set(err, -ENOMEM, "REST API: cannot create a TLS context");
    const char *step = NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_num_tickets(ctx, 0) != 1 ||
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_CONTEXT,
                                       (unsigned)strlen(SESSION_CONTEXT)) != 1)
        step = "cannot configure TLS";
    if (!step) {
        (void)SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                           SSL_OP_CIPHER_SERVER_PREFERENCE |
                                           SSL_OP_NO_COMPRESSION);
        (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        (void)SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                        SSL_MODE_RELEASE_BUFFERS);
    }
    if (!step && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        step = "cannot load the server certificate";
    if (!step && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        step = "cannot load the server key";
    if (!step && SSL_CTX_check_private_key(ctx) != 1)
        step = "the server key does not match its certificate";
    if (!step && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        step = "cannot load the CA file";
    if (!step) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (!names)
            step = "cannot read the CA names";
        else
            SSL_CTX_set_client_CA_list(ctx, names); /* takes the stack */
    }
    if (step) {
        ssl_errtext(why, sizeof(why));
        SSL_CTX_free(ctx);
        return errmsg_set(err, -EINVAL, "REST API: %s: %s", step, why);
    }
    /* Client certificates are optional; one that is sent must verify (else the
     * handshake fails). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, NULL);
    SSL_CTX_set_verify_depth(ctx, 4);
    *out = ctx;
    return 0;
}

static int listen_on(const char *addr, uint16_t port, int *fd_out, uint16_t *port_out,
                     char **err)
{
    union sockaddr_any sa;
    socklen_t slen;
    memset(&sa, 0, sizeof(sa));
    if (inet_pton(AF_INET, addr, &sa.in4.sin_addr) == 1) {
        sa.in4.sin_family = AF_INET;
        sa.in4.sin_port = htons(port);
        slen = sizeof(sa.in4);
    } else if (inet_pton(AF_INET6, addr, &sa.in6.sin6_addr) == 1) {
        sa.in6.sin6_family = AF_INET6;
        sa.in6.sin6_port = htons(port);
        slen = sizeof(sa.in6);
    } else {
        return errmsg_set(err, -EINVAL, "REST API: bind address is not an IP address");
    }
    int fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errmsg_set(err, -errno, "REST API: socket: %s", strerror(errno));
    int one = 1, zero = 0;
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        rc = errmsg_set(err, -errno, "REST API: SO_REUSEADDR: %s", strerror(errno));
    if (rc == 0 && sa.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&sa.in6.sin6_addr) &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
        rc = errmsg_set(err, -errno, "REST API: IPV6_V6ONLY: %s", strerror(errno));
    if (rc == 0 && bind(fd, &sa.sa, slen) < 0)
        rc = errmsg_set(err, -errno, "REST API: cannot bind %s port %u: %s", addr,
                        (unsigned)port, strerror(errno));
    if (rc == 0 && listen(fd, LISTEN_BACKLOG) < 0)
        rc = errmsg_set(err, -errno, "REST API: listen: %s", strerror(errno));
    union sockaddr_any bound;
    socklen_t blen = sizeof(bound);
    memset(&bound, 0, sizeof(bound));
    if (rc == 0 && getsockname(fd, &bound.sa, &blen) < 0)
        rc = errmsg_set(err, -errno, "REST API: getsockname: %s", strerror(errno));
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *port_out = ntohs(bound.sa.sa_family == AF_INET ? bound.in4.sin_port : bound.in6.sin6_port);
    *fd_out = fd;
    return 0;
}

int restapi_start(sd_event *ev, const struct restapi_config *cfg, const struct restapi_ops *ops,
                  struct restapi **out, char **err)
{
    *out = NULL;
    if (!ev || !cfg || !ops || !cfg->cert_file || !cfg->key_file || !cfg->ca_file)
        return errmsg_set(err, -EINVAL, "REST API: loop, certificate, key and CA files needed");
    if (!ops->patroni || !ops->auth_check || !ops->switchover)
        return errmsg_set(err, -EINVAL, "REST API: the patroni, auth_check and switchover "
                                        "callbacks are required");
    if (sodium_init() < 0)
        return errmsg_set(err, -EIO, "REST API: cannot initialise libsodium");
    struct restapi *api = calloc(1, sizeof(*api));
    if (!api)
        return errmsg_set(err, -ENOMEM, "out of memory");
    api->ev = ev;
    api->fd = -1;
    api->ops = *ops;
    api->deadline_usec =
        (uint64_t)(cfg->deadline_ms ? cfg->deadline_ms : RESTAPI_DEADLINE_MS) * USEC_PER_MSEC;
    api->pending_usec = (uint64_t)(cfg->pending_deadline_ms ? cfg->pending_deadline_ms
                                                            : RESTAPI_PENDING_DEADLINE_MS) *
                        USEC_PER_MSEC;
    for (unsigned i = 0; i < RESTAPI_MAX_CONNS; i++) {
        api->conns[i].api = api;
        api->conns[i].slot = i;
        api->conns[i].fd = -1;
    }
    api->cert_file = strdup(cfg->cert_file);
    api->key_file = strdup(cfg->key_file);
    api->ca_file = strdup(cfg->ca_file);
    if (!api->cert_file || !api->key_file || !api->ca_file) {
        restapi_free(api);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    int rc = tls_ctx_new(api->cert_file, api->key_file, api->ca_file, &api->ctx, err);
    const char *addr = cfg->bind_addr && cfg->bind_addr[0] ? cfg->bind_addr : "0.0.0.0";
    if (rc == 0)
        rc = listen_on(addr, cfg->port, &api->fd, &api->port, err);
    if (rc == 0) {
        rc = sd_event_add_io(ev, &api->listen_src, api->fd, EPOLLIN, on_accept, api);
        if (rc < 0)
            errmsg_format(err, "REST API: cannot watch the listening socket: %s", strerror(-rc));
    }
    if (rc < 0) {
        restapi_free(api);
        return rc;
    }
    log_info("REST API listening on %s port %u", addr, (unsigned)api->port);
    *out = api;
    return 0;
}

int restapi_reload_tls(struct restapi *api, char **err)
{
    SSL_CTX *ctx = NULL;
    int rc = tls_ctx_new(api->cert_file, api->key_file, api->ca_file, &ctx, err);
    if (rc < 0)
        return rc;
    SSL_CTX_free(api->ctx); /* open connections hold their own reference */
    api->ctx = ctx;
    log_info("REST API: TLS certificate, key and CA reloaded");
    return 0;
}

uint16_t restapi_port(const struct restapi *api)
{
    return api->port;
}

void restapi_free(struct restapi *api)
{
    if (!api)
        return;
    for (unsigned i = 0; i < RESTAPI_MAX_CONNS; i++)
        if (api->conns[i].state != C_FREE)
            conn_close(&api->conns[i]);
    sd_event_source_disable_unref(api->listen_src);
    sd_event_source_disable_unref(api->retry_src);
    if (api->fd >= 0)
        close(api->fd);
    SSL_CTX_free(api->ctx);
    free(api->cert_file);
    free(api->key_file);
    free(api->ca_file);
    free(api);
}
