/* Peer REST API client (peer_probe.h): parallel GET /patroni over libcurl multi with
 * mutual TLS and one overall deadline, strict validation of the answers, one POST. */
#include "peer_probe.h"

#include "errmsg.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers ---------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Printable ASCII copy of at most len bytes of in, bounded by outsz. */
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

struct body {
    char *buf;
    size_t len, cap;
    bool too_big, oom;
};

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body *b = userdata;
    size_t n = size * nmemb;
    if (n > PEER_MAX_RESPONSE - b->len) {
        b->too_big = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return 0;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, ptr, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return n;
}

bool peer_url_valid(const char *url)
{
    if (!url || strncmp(url, "https://", 8) != 0)
        return false;
    size_t n = strlen(url);
    if (n <= 8 || n > PEER_URL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return false;
    return true;
}

static int check_args(const struct peer_tls *tls, int timeout_ms, char **err)
{
    if (!tls || !tls->ca_file)
        return errmsg_set(err, -EINVAL, "peer API: a CA file is needed");
    if ((tls->cert_file == NULL) != (tls->key_file == NULL))
        return errmsg_set(err, -EINVAL, "peer API: a client certificate needs its key, and back");
    if (timeout_ms < PEER_MIN_TIMEOUT_MS || timeout_ms > PEER_MAX_TIMEOUT_MS)
        return errmsg_set(err, -EINVAL, "peer API: timeout %d ms out of range (%d to %d)",
                          timeout_ms, PEER_MIN_TIMEOUT_MS, PEER_MAX_TIMEOUT_MS);
    return 0;
}

int peer_probe_init(void)
{
    static bool curl_ready;
    if (curl_ready)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -ENOMEM;
    curl_ready = true;
    return 0;
}

/* Options shared by the probe's handles and the POST: HTTPS with verification against
 * the CA file only, client certificate, no proxy, no signals, no redirects, HTTP/1.1, the
 * deadline, the body cap. */
static int setup_handle(CURL *h, const char *url, const struct peer_tls *tls, int timeout_ms,
                        struct body *b, char *errbuf)
{
#define SET(opt, val)                                                                        \
    do {                                                                                     \
        if (curl_easy_setopt(h, opt, val) != CURLE_OK)                                       \
            return -1;                                                                       \
    } while (0)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_NOPROXY, "*");
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "https");
#else
    SET(CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_CAINFO, tls->ca_file);
    /* the CA file is a bundle that changes (peer-certificates): read it at every new
     * connection, not from libcurl's store cache (24 h by default since 7.87) */
#if LIBCURL_VERSION_NUM >= 0x075700
    SET(CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
    /* only the CA file: not the system's trust store as well */
    SET(CURLOPT_CAPATH, (const char *)NULL);
    if (tls->cert_file) {
        SET(CURLOPT_SSLCERT, tls->cert_file);
        SET(CURLOPT_SSLKEY, tls->key_file);
    }
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)PEER_MAX_RESPONSE);
    SET(CURLOPT_WRITEFUNCTION, body_write);
    SET(CURLOPT_WRITEDATA, b);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_URL, url);
#undef SET
    return 0;
}

/* ---- /patroni validation ---------------------------------------------------------------- */

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len >= PEER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return false;
    }
    return true;
}

/* An optional non-negative integer field: 1 present, 0 absent, -1 wrong type or range. */
static int get_uint(const json_t *obj, const char *field, uint64_t max, uint64_t *out)
{
    *out = 0;
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) > max)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* An optional boolean field: 0 with *out, -1 wrong type. */
static int get_bool(const json_t *obj, const char *field, bool *out)
{
    *out = false;
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return -1;
    *out = json_is_true(v);
    return 0;
}

/* A string field without NUL: its value, or NULL (absent or wrong type: *bad). */
static const char *get_string(const json_t *obj, const char *field, bool required, bool *bad)
{
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (required)
            *bad = true;
        return NULL;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

static const char *parse_role(const char *role, enum peer_role *out)
{
    static const struct {
        const char *name;
        enum peer_role role;
    } roles[] = {
        {"primary", PEER_ROLE_PRIMARY},        {"master", PEER_ROLE_PRIMARY},
        {"replica", PEER_ROLE_REPLICA},        {"standby_leader", PEER_ROLE_STANDBY_LEADER},
        {"uninitialized", PEER_ROLE_UNKNOWN},  {"demoted", PEER_ROLE_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(role, roles[i].name) == 0) {
            *out = roles[i].role;
            return NULL;
        }
    return "unknown role";
}

/* The fields of a decoded /patroni object; NULL, or what is wrong. */
static const char *parse_patroni(const json_t *root, struct peer_status *out)
{
    bool bad = false;
    const char *state = get_string(root, "state", true, &bad);
    if (bad)
        return "state missing or not a string";
    size_t slen = strlen(state);
    if (slen == 0 || slen >= PEER_STATE_MAX)
        return "state empty or too long";
    for (size_t i = 0; i < slen; i++)
        if ((unsigned char)state[i] < 0x20 || (unsigned char)state[i] >= 0x7f)
            return "state is not printable ASCII";
    memcpy(out->state, state, slen + 1);

    const char *role = get_string(root, "role", true, &bad);
    if (bad)
        return "role missing or not a string";
    const char *why = parse_role(role, &out->role);
    if (why)
        return why;
    out->in_recovery = out->role != PEER_ROLE_PRIMARY;

    const char *rs = get_string(root, "replication_state", false, &bad);
    if (bad)
        return "replication_state is not a string";
    out->streaming = rs && strcmp(rs, "streaming") == 0;

    uint64_t tl;
    int rc = get_uint(root, "timeline", UINT32_MAX, &tl);
    if (rc < 0)
        return "timeline is not an integer from 0 to 2^32-1";
    out->has_timeline = rc == 1;
    out->timeline = (uint32_t)tl;

    const json_t *xlog = json_object_get(root, "xlog");
    if (xlog && !json_is_null(xlog)) {
        if (!json_is_object(xlog))
            return "xlog is not an object";
        int r1 = get_uint(xlog, "location", UINT64_MAX, &out->xlog_location);
        int r2 = get_uint(xlog, "received_location", UINT64_MAX, &out->xlog_received);
        int r3 = get_uint(xlog, "replayed_location", UINT64_MAX, &out->xlog_replayed);
        if (r1 < 0 || r2 < 0 || r3 < 0)
            return "an xlog location is not a non-negative integer";
        out->has_wal = r1 == 1 || r2 == 1 || r3 == 1;
        if (r1 == 1)
            out->wal_position = out->xlog_location;
        else
            out->wal_position =
                out->xlog_received > out->xlog_replayed ? out->xlog_received : out->xlog_replayed;
    }

    const json_t *patroni = json_object_get(root, "patroni");
    if (!json_is_object(patroni))
        return "patroni missing or not an object";
    const char *name = get_string(patroni, "name", true, &bad);
    if (bad)
        return "patroni.name missing or not a string";
    if (!valid_name(name, strlen(name)))
        return "patroni.name is not 1 to 63 characters of a-z, 0-9 and -";
    memcpy(out->name, name, strlen(name) + 1);

    const json_t *tags = json_object_get(root, "tags");
    if (tags && !json_is_null(tags)) {
        if (!json_is_object(tags))
            return "tags is not an object";
        if (get_bool(tags, "nofailover", &out->nofailover) < 0)
            return "tags.nofailover is not a boolean";
    }
    if (get_bool(root, "watchdog_failed", &out->watchdog_failed) < 0)
        return "watchdog_failed is not a boolean";
    return NULL;
}

void peer_status_parse(long http_status, const char *body, size_t len, struct peer_status *out)
{
    /* keep nothing from an earlier answer */
    memset(out, 0, sizeof(*out));
    out->reachable = true;
    out->http_status = http_status;
    if (http_status != 200) {
        (void)snprintf(out->error, sizeof(out->error), "answered HTTP %ld", http_status);
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        (void)snprintf(out->error, sizeof(out->error), "answer is not a JSON object");
        return;
    }
    const char *why = parse_patroni(root, out);
    json_decref(root);
    if (why) {
        struct peer_status keep = {.reachable = true, .http_status = http_status};
        *out = keep;
        (void)snprintf(out->error, sizeof(out->error), "invalid /patroni answer: %s", why);
        return;
    }
    out->valid = true;
}

/* ---- the probe -------------------------------------------------------------------------- */

struct probe {
    CURL *easy;
    struct body b;
    char errbuf[CURL_ERROR_SIZE];
    bool done;
    CURLcode code;
};

static void probe_result(struct probe *p, int timeout_ms, struct peer_status *out)
{
    long status = 0;
    if (curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    if (p->done && p->code == CURLE_OK && status > 0) {
        peer_status_parse(status, p->b.buf, p->b.len, out);
        return;
    }
    memset(out, 0, sizeof(*out));
    char detail[PEER_ERROR_MAX];
    if (!p->done)
        (void)snprintf(detail, sizeof(detail), "no answer within %d ms", timeout_ms);
    else if (p->b.too_big || p->code == CURLE_FILESIZE_EXCEEDED)
        (void)snprintf(detail, sizeof(detail), "answer larger than %zu bytes", PEER_MAX_RESPONSE);
    else
        clean_text(p->errbuf[0] ? p->errbuf : curl_easy_strerror(p->code), PEER_ERROR_MAX,
                   detail, sizeof(detail));
    /* a status line came back but the body did not: reachable, not valid */
    out->reachable = status > 0;
    out->http_status = status;
    (void)snprintf(out->error, sizeof(out->error), "%s", detail);
}

int peer_probe_run(const char *const *urls, size_t n, const struct peer_tls *tls, int timeout_ms,
                   struct peer_status *results, char **err)
{
    if (n > PEER_MAX_URLS)
        return errmsg_set(err, -EINVAL, "peer API: at most %d peers, got %zu", PEER_MAX_URLS, n);
    int rc = check_args(tls, timeout_ms, err);
    if (rc < 0)
        return rc;
    if (n == 0)
        return 0;
    if (peer_probe_init() < 0)
        return errmsg_set(err, -ENOMEM, "peer API: libcurl initialisation failed");
    struct probe *probes = calloc(n, sizeof(*probes));
    CURLM *multi = curl_multi_init();
    if (!probes || !multi) {
        free(probes);
        if (multi)
            (void)curl_multi_cleanup(multi);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        memset(&results[i], 0, sizeof(results[i]));
        if (!peer_url_valid(urls[i])) {
            (void)snprintf(results[i].error, sizeof(results[i].error), "invalid peer URL");
            continue;
        }
        struct probe *p = &probes[i];
        if (!(p->easy = curl_easy_init()) ||
            setup_handle(p->easy, urls[i], tls, timeout_ms, &p->b, p->errbuf) < 0 ||
            curl_easy_setopt(p->easy, CURLOPT_HTTPGET, 1L) != CURLE_OK ||
            curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p) != CURLE_OK ||
            curl_multi_add_handle(multi, p->easy) != CURLM_OK)
            rc = -ENOMEM;
    }

    long long deadline = now_ms() + timeout_ms;
    int running = 0;
    while (rc == 0) {
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            rc = -ENOMEM;
            break;
        }
        CURLMsg *m;
        int queued;
        while ((m = curl_multi_info_read(multi, &queued)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct probe *p = NULL;
            if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &p) == CURLE_OK && p) {
                p->done = true;
                p->code = m->data.result;
            }
        }
        long long left = deadline - now_ms();
        if (running == 0 || left <= 0)
            break;
        if (curl_multi_poll(multi, NULL, 0, (int)left, NULL) != CURLM_OK) {
            rc = -ENOMEM;
            break;
        }
    }

    for (size_t i = 0; i < n; i++) {
        struct probe *p = &probes[i];
        if (!p->easy)
            continue;
        if (rc == 0)
            probe_result(p, timeout_ms, &results[i]);
        (void)curl_multi_remove_handle(multi, p->easy);
        curl_easy_cleanup(p->easy);
        free(p->b.buf);
    }
    (void)curl_multi_cleanup(multi);
    free(probes);
    if (rc < 0)
        return errmsg_set(err, rc, "peer API: cannot run the probe (out of memory)");
    return 0;
}

/* ---- one POST --------------------------------------------------------------------------- */

static int post_failure(CURL *h, CURLcode cc, const struct body *b)
{
    long os_errno = 0;
    if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK)
        os_errno = 0;
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    case CURLE_COULDNT_CONNECT:
        return os_errno == EHOSTUNREACH || os_errno == ENETUNREACH ? -EHOSTUNREACH
                                                                   : -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return -EMSGSIZE;
    case CURLE_WRITE_ERROR:
        if (b->too_big)
            return -EMSGSIZE;
        return b->oom ? -ENOMEM : -ECONNABORTED;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -ECONNABORTED;
    }
}

int peer_post_json(const char *url, const char *body, const struct peer_tls *tls, int timeout_ms,
                   long *status, char **text, char **err)
{
    *status = 0;
    *text = NULL;
    if (!peer_url_valid(url))
        return errmsg_set(err, -EINVAL, "peer API: invalid URL");
    if (!body)
        return errmsg_set(err, -EINVAL, "peer API: no body to post");
    int rc = check_args(tls, timeout_ms, err);
    if (rc < 0)
        return rc;
    if (peer_probe_init() < 0)
        return errmsg_set(err, -ENOMEM, "peer API: libcurl initialisation failed");
    struct body b = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    /* "Expect:" stops curl from waiting for 100-continue before sending the body */
    struct curl_slist *h1 = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *headers = h1 ? curl_slist_append(h1, "Expect:") : NULL;
    if (!headers)
        curl_slist_free_all(h1);
    CURL *h = headers ? curl_easy_init() : NULL;
    if (!h || setup_handle(h, url, tls, timeout_ms, &b, errbuf) < 0 ||
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body)) != CURLE_OK) {
        if (h)
            curl_easy_cleanup(h);
        curl_slist_free_all(headers);
        return errmsg_set(err, -ENOMEM, "peer API: cannot set up the request (out of memory)");
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        rc = post_failure(h, cc, &b);
        char detail[PEER_ERROR_MAX];
        clean_text(errbuf[0] ? errbuf : curl_easy_strerror(cc), PEER_ERROR_MAX, detail,
                   sizeof(detail));
        errmsg_format(err, "peer API %s: %s", url, detail);
    } else {
        if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status) != CURLE_OK)
            *status = 0;
        size_t len = b.len < PEER_TEXT_MAX ? b.len : PEER_TEXT_MAX;
        char *t = malloc(len + 1);
        if (!t) {
            rc = errmsg_set(err, -ENOMEM, "out of memory");
        } else {
            /* the peer's text is untrusted: printable ASCII only */
            for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)b.buf[i];
                if (ch >= 0x20 && ch < 0x7f)
                    t[i] = b.buf[i];
                else
                    t[i] = '?';
            }
            t[len] = '\0';
            *text = t;
        }
    }
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    free(b.buf);
    return rc;
}
