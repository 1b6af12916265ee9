/* etcd v3 client over the JSON gateway (etcd.h): libcurl requests with a whole-operation
 * budget and endpoint failover, strict parsing of every answer, a non-blocking watch. */
/* _GNU_SOURCE is how glibc is asked for the epoll/timerfd declarations used here. */
#define _GNU_SOURCE
#include "etcd.h"

#include "errmsg.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEY_LEN 4096
#define MAX_VALUE_LEN 1048576
#define MAX_URL_LEN 1024
#define MAX_PEER_URLS 8
#define MAX_DEPTH 256
#define ETCD_TEXT_MAX 200

/* ---- small helpers -------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy text from etcd into out for a message: printable ASCII only, bounded. */
static void clean_text(const char *in, char *out, size_t outsz)
{
    size_t j = 0;
    for (size_t i = 0; in && in[i] && j + 1 < outsz; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch >= 0x20 && ch < 0x7f)
            out[j++] = in[i];
        else
            out[j++] = '?';
    }
    out[j] = '\0';
}

/* ---- base64 --------------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcd_b64_encode(const void *data, size_t n)
{
    const unsigned char *p = data;
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    size_t olen = (n + 2) / 3 * 4;
    char *out = malloc(olen + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[j++] = b64_alphabet[(v >> 18) & 63];
        out[j++] = b64_alphabet[(v >> 12) & 63];
        out[j++] = b64_alphabet[(v >> 6) & 63];
        out[j++] = b64_alphabet[v & 63];
        if (i + 2 >= n)
            out[j - 1] = '=';
        if (i + 1 >= n)
            out[j - 2] = '=';
    }
    out[j] = '\0';
    return out;
}

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

int etcd_b64_decode(const char *s, size_t len, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (len % 4 != 0)
        return -EPROTO;
    size_t pad = 0;
    if (len >= 4 && s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    size_t olen = len / 4 * 3 - pad;
    unsigned char *buf = malloc(olen + 1);
    if (!buf)
        return -ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        for (size_t k = 0; k < 4; k++) {
            bool is_pad = last && k >= 4 - pad;
            v[k] = is_pad ? 0 : b64_value(s[i + k]);
            if (v[k] < 0 || (is_pad && s[i + k] != '=')) {
                free(buf);
                return -EPROTO;
            }
        }
        unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
                     (unsigned)v[3];
        /* canonical form: the bits under the padding are zero */
        if (last && ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))) {
            free(buf);
            return -EPROTO;
        }
        size_t take = last ? 3 - pad : 3;
        unsigned char bytes[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8),
                                  (unsigned char)w};
        memcpy(buf + j, bytes, take);
        j += take;
    }
    buf[j] = '\0';
    *out = (char *)buf;
    *n = j;
    return 0;
}

/* ---- prefix ranges -------------------------------------------------------------------- */

size_t etcd_prefix_range_end(const void *prefix, size_t len, unsigned char *out)
{
    const unsigned char *p = prefix;
    size_t n = len;
    while (n > 0 && p[n - 1] == 0xff)
        n--;
    if (n == 0) {
        out[0] = 0;
        return 1;
    }
    memcpy(out, p, n);
    out[n - 1]++;
    return n;
}

/* ---- JSON field readers ------------------------------------------------------------------ */

/* Strict decimal: optional '-' when signed, 1 to 20 digits, nothing else. */
static int parse_dec(const char *s, bool is_signed, uint64_t *mag, bool *neg)
{
    *neg = false;
    if (is_signed && *s == '-') {
        *neg = true;
        s++;
    }
    if (!*s || strlen(s) > 20)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *mag = v;
    return 0;
}

/* An int64 field: a JSON string of digits (etcd's encoding) or a JSON integer; absent is 0
 * (proto3 omits defaults). */
static int get_i64(const json_t *obj, const char *name, int64_t *out, char **err)
{
    *out = 0;
    const json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    uint64_t mag;
    bool neg;
    if (json_is_string(v) && parse_dec(json_string_value(v), true, &mag, &neg) == 0 &&
        mag <= (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX)) {
        *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        return 0;
    }
    return errmsg_set(err, -EPROTO, "field \"%s\" is not an int64", name);
}

static int get_u64(const json_t *obj, const char *name, uint64_t *out, char **err)
{
    *out = 0;
    const json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    uint64_t mag;
    bool neg;
    if (json_is_string(v) && parse_dec(json_string_value(v), false, &mag, &neg) == 0) {
        *out = mag;
        return 0;
    }
    return errmsg_set(err, -EPROTO, "field \"%s\" is not a uint64", name);
}

/* A non-negative int64 (revisions, versions, lease IDs, counts). */
static int get_count(const json_t *obj, const char *name, int64_t *out, char **err)
{
    int rc = get_i64(obj, name, out, err);
    if (rc == 0 && *out < 0)
        return errmsg_set(err, -EPROTO, "field \"%s\" is negative", name);
    return rc;
}

/* An optional bool (absent: false). */
static int get_bool(const json_t *obj, const char *name, bool *out, char **err)
{
    *out = false;
    const json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return errmsg_set(err, -EPROTO, "field \"%s\" is not a boolean", name);
    *out = json_is_true(v);
    return 0;
}

/* An optional array (absent: NULL, fine); present but not an array is malformed. */
static int get_array(const json_t *obj, const char *name, const json_t **out, char **err)
{
    *out = json_object_get(obj, name);
    if (*out && !json_is_array(*out))
        return errmsg_set(err, -EPROTO, "field \"%s\" is not an array", name);
    return 0;
}

/* v (NULL: "") as a printable string of at most max bytes, copied (malloc'd). */
static int text_value(const json_t *v, const char *name, size_t max, char **out, char **err)
{
    *out = NULL;
    const char *s = "";
    if (v) {
        if (!json_is_string(v))
            return errmsg_set(err, -EPROTO, "field \"%s\" is not a string", name);
        s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n > max || strlen(s) != n)
            return errmsg_set(err, -EPROTO, "field \"%s\" is too long or has NUL bytes", name);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return errmsg_set(err, -EPROTO, "field \"%s\" has control characters", name);
    }
    *out = strdup(s);
    return *out ? 0 : errmsg_set(err, -ENOMEM, "out of memory");
}

static int get_text(const json_t *obj, const char *name, size_t max, char **out, char **err)
{
    return text_value(json_object_get(obj, name), name, max, out, err);
}

/* A base64 field decoded (malloc'd, NUL-terminated); absent → "" unless required. */
static int get_b64(const json_t *obj, const char *name, bool required, char **out, size_t *n,
                   char **err)
{
    *out = NULL;
    *n = 0;
    const json_t *v = json_object_get(obj, name);
    if (!v) {
        if (required)
            return errmsg_set(err, -EPROTO, "field \"%s\" is missing", name);
        *out = strdup("");
        return *out ? 0 : errmsg_set(err, -ENOMEM, "out of memory");
    }
    if (!json_is_string(v))
        return errmsg_set(err, -EPROTO, "field \"%s\" is not a string", name);
    int rc = etcd_b64_decode(json_string_value(v), json_string_length(v), out, n);
    if (rc == -ENOMEM)
        return errmsg_set(err, rc, "out of memory");
    if (rc < 0)
        return errmsg_set(err, rc, "field \"%s\" is not valid base64", name);
    return 0;
}

/* ---- answers ------------------------------------------------------------------------------ */

static int http_errno(long status)
{
    switch (status) {
    case 400:
        return -EINVAL;
    case 401:
    case 403:
        return -EACCES;
    case 404:
        return -ENOENT;
    case 412:
        return -EBUSY;
    case 503:
        return -EAGAIN;
    case 504:
        return -ETIMEDOUT;
    default:
        return -EREMOTEIO;
    }
}

static int grpc_errno(int64_t code, const char *msg)
{
    switch (code) {
    case 1:
        return -ECANCELED;
    case 3:
        return -EINVAL;
    case 4:
        return -ETIMEDOUT;
    case 5:
        return strstr(msg, "lease not found") ? -ENOKEY : -ENOENT;
    case 7:
    case 16:
        return -EACCES;
    case 8:
        return -ENOSPC;
    case 9:
        return -EBUSY;
    case 11:
        return -ESTALE;
    case 14:
        return -EAGAIN;
    default:
        return -EREMOTEIO;
    }
}

/* root has "error": the gateway's {"error":"..","message":"..","code":N} or a stream's
 * {"error":{"grpc_code":N,"http_code":N,"message":".."}}. */
static int answer_error(const json_t *root, const json_t *e, long status, char **err)
{
    if (!json_is_string(e) && !json_is_object(e))
        return errmsg_set(err, -EPROTO, "malformed error object (HTTP %ld)", status);
    const json_t *holder = json_is_object(e) ? e : root;
    const char *code_field = json_is_object(e) ? "grpc_code" : "code";
    const json_t *m = json_object_get(holder, "message");
    if (!json_is_string(m))
        m = json_is_string(e) ? e : NULL;
    char text[ETCD_TEXT_MAX];
    clean_text(m ? json_string_value(m) : "", text, sizeof(text));
    int64_t code = 0;
    char *ignored = NULL;
    bool have_code = json_object_get(holder, code_field) != NULL &&
                     get_i64(holder, code_field, &code, &ignored) == 0;
    free(ignored);
    int rc = have_code ? grpc_errno(code, text) : http_errno(status);
    if (have_code)
        return errmsg_set(err, rc, "etcd error (code %" PRId64 "): %s", code, text);
    return errmsg_set(err, rc, "etcd error (HTTP %ld): %s", status, text);
}

int etcd_parse_answer(long http_status, const char *body, size_t len, json_t **out, char **err)
{
    *out = NULL;
    if (len > ETCD_MAX_RESPONSE)
        return errmsg_set(err, -EMSGSIZE, "answer of %zu bytes is too large", len);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (http_status != 200)
            return errmsg_set(err, http_errno(http_status), "HTTP %ld", http_status);
        char text[ETCD_TEXT_MAX];
        clean_text(je.text, text, sizeof(text));
        return errmsg_set(err, -EPROTO, "answer is not JSON: %s", text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return errmsg_set(err, -EPROTO, "answer is not a JSON object");
    }
    const json_t *e = json_object_get(root, "error");
    if (e) {
        int rc = answer_error(root, e, http_status, err);
        json_decref(root);
        return rc;
    }
    if (http_status != 200) {
        json_decref(root);
        return errmsg_set(err, http_errno(http_status), "HTTP %ld without an error object",
                          http_status);
    }
    *out = root;
    return 0;
}

int etcd_parse_header(const json_t *root, bool need_revision, struct etcd_header *out,
                      char **err)
{
    memset(out, 0, sizeof(*out));
    const json_t *h = json_object_get(root, "header");
    if (!h) {
        if (need_revision)
            return errmsg_set(err, -EPROTO, "answer has no header");
        return 0;
    }
    if (!json_is_object(h))
        return errmsg_set(err, -EPROTO, "header is not an object");
    int rc;
    if ((rc = get_u64(h, "cluster_id", &out->cluster_id, err)) < 0 ||
        (rc = get_u64(h, "member_id", &out->member_id, err)) < 0 ||
        (rc = get_u64(h, "raft_term", &out->raft_term, err)) < 0 ||
        (rc = get_count(h, "revision", &out->revision, err)) < 0)
        return rc;
    if (need_revision && out->revision <= 0)
        return errmsg_set(err, -EPROTO, "header has no revision");
    return 0;
}

static int parse_kv(const json_t *o, struct etcd_kv *kv, char **err)
{
    memset(kv, 0, sizeof(*kv));
    if (!json_is_object(o))
        return errmsg_set(err, -EPROTO, "key-value is not an object");
    int rc;
    if ((rc = get_b64(o, "key", true, &kv->key, &kv->key_len, err)) < 0 ||
        (rc = get_b64(o, "value", false, &kv->value, &kv->value_len, err)) < 0 ||
        (rc = get_count(o, "create_revision", &kv->create_revision, err)) < 0 ||
        (rc = get_count(o, "mod_revision", &kv->mod_revision, err)) < 0 ||
        (rc = get_count(o, "version", &kv->version, err)) < 0 ||
        (rc = get_count(o, "lease", &kv->lease, err)) < 0) {
        etcd_kv_clear(kv);
        return rc;
    }
    if (kv->key_len == 0) {
        etcd_kv_clear(kv);
        return errmsg_set(err, -EPROTO, "key-value with an empty key");
    }
    return 0;
}

/* The "kvs", "count" and "more" of a range answer (root or a txn's response_range). */
static int parse_range_body(const json_t *o, struct etcd_range *out, char **err)
{
    const json_t *kvs;
    int rc;
    if ((rc = get_array(o, "kvs", &kvs, err)) < 0 ||
        (rc = get_count(o, "count", &out->count, err)) < 0 ||
        (rc = get_bool(o, "more", &out->more, err)) < 0)
        return rc;
    size_t n = kvs ? json_array_size(kvs) : 0;
    if (n == 0)
        return 0;
    out->kvs = calloc(n, sizeof(*out->kvs));
    if (!out->kvs)
        return errmsg_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if ((rc = parse_kv(json_array_get(kvs, i), &out->kvs[i], err)) < 0)
            return rc;
        out->n = i + 1;
    }
    if (out->count < (int64_t)out->n)
        out->count = (int64_t)out->n;
    return 0;
}

int etcd_parse_range(const json_t *root, struct etcd_range *out, char **err)
{
    memset(out, 0, sizeof(*out));
    int rc = etcd_parse_header(root, true, &out->header, err);
    if (rc == 0)
        rc = parse_range_body(root, out, err);
    if (rc < 0)
        etcd_range_clear(out);
    return rc;
}

int etcd_parse_put(const json_t *root, int64_t *revision, char **err)
{
    struct etcd_header h;
    int rc = etcd_parse_header(root, true, &h, err);
    *revision = rc == 0 ? h.revision : 0;
    return rc;
}

int etcd_parse_delete(const json_t *root, int64_t *deleted, char **err)
{
    struct etcd_header h;
    *deleted = 0;
    int rc = etcd_parse_header(root, true, &h, err);
    if (rc == 0)
        rc = get_count(root, "deleted", deleted, err);
    return rc;
}

int etcd_parse_txn(const json_t *root, struct etcd_txn_result *out, char **err)
{
    memset(out, 0, sizeof(*out));
    const json_t *responses;
    int rc;
    if ((rc = etcd_parse_header(root, true, &out->header, err)) < 0 ||
        (rc = get_bool(root, "succeeded", &out->succeeded, err)) < 0 ||
        (rc = get_array(root, "responses", &responses, err)) < 0)
        return rc;
    for (size_t i = 0; rc == 0 && responses && i < json_array_size(responses); i++) {
        const json_t *r = json_array_get(responses, i);
        if (!json_is_object(r) || json_object_size(r) != 1) {
            rc = errmsg_set(err, -EPROTO, "txn response %zu is not a one-key object", i);
            break;
        }
        const json_t *range = json_object_get(r, "response_range");
        const json_t *del = json_object_get(r, "response_delete_range");
        const json_t *put = json_object_get(r, "response_put");
        const json_t *txn = json_object_get(r, "response_txn");
        const json_t *any = range ? range : del ? del : put ? put : txn;
        if (!json_is_object(any)) {
            rc = errmsg_set(err, -EPROTO, "txn response %zu is of an unknown kind", i);
        } else if (range) {
            /* every range is checked; the first key found is the one reported */
            struct etcd_range rg = {0};
            rc = parse_range_body(range, &rg, err);
            if (rc == 0 && rg.n > 0 && !out->have_kv) {
                out->kv = rg.kvs[0];
                memset(&rg.kvs[0], 0, sizeof(rg.kvs[0]));
                out->have_kv = true;
            }
            etcd_range_clear(&rg);
        } else if (del) {
            rc = get_count(del, "deleted", &out->deleted, err);
        }
    }
    if (rc < 0)
        etcd_txn_result_clear(out);
    return rc;
}

int etcd_parse_lease_grant(const json_t *root, int64_t *id, int64_t *ttl, char **err)
{
    struct etcd_header h;
    int64_t i = 0, t = 0;
    *id = *ttl = 0;
    int rc;
    if ((rc = etcd_parse_header(root, false, &h, err)) < 0 ||
        (rc = get_count(root, "ID", &i, err)) < 0 || (rc = get_count(root, "TTL", &t, err)) < 0)
        return rc;
    if (i <= 0 || t <= 0)
        return errmsg_set(err, -EPROTO, "lease grant answer without ID or TTL");
    *id = i;
    *ttl = t;
    return 0;
}

int etcd_parse_keepalive(const json_t *root, int64_t id, int64_t *ttl, char **err)
{
    *ttl = 0;
    const json_t *r = json_object_get(root, "result");
    if (r && !json_is_object(r))
        return errmsg_set(err, -EPROTO, "keep-alive \"result\" is not an object");
    if (!r)
        r = root;
    struct etcd_header h;
    int64_t got = 0, t = 0;
    int rc;
    if ((rc = etcd_parse_header(r, false, &h, err)) < 0 || (rc = get_count(r, "ID", &got, err)) < 0 ||
        (rc = get_i64(r, "TTL", &t, err)) < 0)
        return rc;
    if (got != id)
        return errmsg_set(err, -EPROTO, "keep-alive answer for lease %" PRId64 ", not %" PRId64,
                          got, id);
    if (t <= 0)
        return errmsg_set(err, -ENOKEY, "lease %" PRId64 " expired or unknown", id);
    *ttl = t;
    return 0;
}

static int parse_urls(const json_t *o, const char *name, char ***out, size_t *n, char **err)
{
    const json_t *a;
    int rc = get_array(o, name, &a, err);
    *out = NULL;
    *n = 0;
    if (rc < 0 || !a || json_array_size(a) == 0)
        return rc;
    size_t cnt = json_array_size(a);
    *out = calloc(cnt, sizeof(char *));
    if (!*out)
        return errmsg_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        const json_t *s = json_array_get(a, i);
        if (!json_is_string(s))
            return errmsg_set(err, -EPROTO, "field \"%s\" has a non-string entry", name);
        if ((rc = text_value(s, name, MAX_URL_LEN, &(*out)[i], err)) < 0)
            return rc;
        *n = i + 1;
    }
    return 0;
}

static void member_clear(struct etcd_member *m)
{
    free(m->name);
    for (size_t i = 0; i < m->n_peer_urls; i++)
        free(m->peer_urls[i]);
    free(m->peer_urls);
    for (size_t i = 0; i < m->n_client_urls; i++)
        free(m->client_urls[i]);
    free(m->client_urls);
    memset(m, 0, sizeof(*m));
}

static int parse_member(const json_t *o, struct etcd_member *m, char **err)
{
    memset(m, 0, sizeof(*m));
    if (!json_is_object(o))
        return errmsg_set(err, -EPROTO, "member is not an object");
    int rc;
    if ((rc = get_u64(o, "ID", &m->id, err)) < 0 || (rc = get_text(o, "name", 255, &m->name, err)) < 0 ||
        (rc = parse_urls(o, "peerURLs", &m->peer_urls, &m->n_peer_urls, err)) < 0 ||
        (rc = parse_urls(o, "clientURLs", &m->client_urls, &m->n_client_urls, err)) < 0 ||
        (rc = get_bool(o, "isLearner", &m->is_learner, err)) < 0) {
        member_clear(m);
        return rc;
    }
    if (m->id == 0) {
        member_clear(m);
        return errmsg_set(err, -EPROTO, "member without ID");
    }
    return 0;
}

int etcd_parse_members(const json_t *root, struct etcd_members *out, char **err)
{
    memset(out, 0, sizeof(*out));
    const json_t *a;
    int rc;
    if ((rc = etcd_parse_header(root, false, &out->header, err)) < 0 ||
        (rc = get_array(root, "members", &a, err)) < 0)
        return rc;
    size_t n = a ? json_array_size(a) : 0;
    if (n == 0)
        return 0;
    out->members = calloc(n, sizeof(*out->members));
    if (!out->members)
        return errmsg_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if ((rc = parse_member(json_array_get(a, i), &out->members[i], err)) < 0) {
            etcd_members_clear(out);
            return rc;
        }
        out->n = i + 1;
    }
    return 0;
}

int etcd_parse_member_add(const json_t *root, uint64_t *id, struct etcd_members *out,
                          char **err)
{
    *id = 0;
    memset(out, 0, sizeof(*out));
    const json_t *m = json_object_get(root, "member");
    if (!json_is_object(m))
        return errmsg_set(err, -EPROTO, "member add answer without \"member\"");
    int rc = get_u64(m, "ID", id, err);
    if (rc == 0 && *id == 0)
        rc = errmsg_set(err, -EPROTO, "member add answer without an ID");
    if (rc == 0)
        rc = etcd_parse_members(root, out, err);
    if (rc < 0)
        *id = 0;
    return rc;
}

int etcd_parse_status(const json_t *root, struct etcd_status *out, char **err)
{
    memset(out, 0, sizeof(*out));
    const json_t *v = json_object_get(root, "version");
    const json_t *errors;
    int rc;
    if ((rc = etcd_parse_header(root, false, &out->header, err)) < 0)
        return rc;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) >= sizeof(out->version) ||
        strspn(json_string_value(v), "0123456789.-+abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
            json_string_length(v))
        return errmsg_set(err, -EPROTO, "status answer without a valid version");
    memcpy(out->version, json_string_value(v), json_string_length(v) + 1);
    if ((rc = get_u64(root, "leader", &out->leader, err)) < 0 ||
        (rc = get_u64(root, "raftIndex", &out->raft_index, err)) < 0 ||
        (rc = get_u64(root, "raftTerm", &out->raft_term, err)) < 0 ||
        (rc = get_u64(root, "raftAppliedIndex", &out->raft_applied_index, err)) < 0 ||
        (rc = get_count(root, "dbSize", &out->db_size, err)) < 0 ||
        (rc = get_count(root, "dbSizeInUse", &out->db_size_in_use, err)) < 0 ||
        (rc = get_array(root, "errors", &errors, err)) < 0)
        return rc;
    out->n_errors = errors ? json_array_size(errors) : 0;
    return 0;
}

void etcd_watch_response_clear(struct etcd_watch_response *r)
{
    for (size_t i = 0; i < r->n_events; i++)
        etcd_watch_event_clear(&r->events[i]);
    free(r->events);
    memset(r, 0, sizeof(*r));
}

int etcd_parse_watch_response(const json_t *root, struct etcd_watch_response *out, char **err)
{
    memset(out, 0, sizeof(*out));
    const json_t *r = json_object_get(root, "result");
    if (!json_is_object(r))
        return errmsg_set(err, -EPROTO, "watch answer without \"result\" object");
    const json_t *events, *reason = json_object_get(r, "cancel_reason");
    int rc;
    if ((rc = etcd_parse_header(r, false, &out->header, err)) < 0 ||
        (rc = get_bool(r, "created", &out->created, err)) < 0 ||
        (rc = get_bool(r, "canceled", &out->canceled, err)) < 0 ||
        (rc = get_count(r, "compact_revision", &out->compact_revision, err)) < 0 ||
        (rc = get_array(r, "events", &events, err)) < 0)
        return rc;
    if (reason && !json_is_string(reason))
        return errmsg_set(err, -EPROTO, "watch \"cancel_reason\" is not a string");
    clean_text(reason ? json_string_value(reason) : "", out->cancel_reason,
               sizeof(out->cancel_reason));
    size_t n = events ? json_array_size(events) : 0;
    if (n == 0)
        return 0;
    out->events = calloc(n, sizeof(*out->events));
    if (!out->events)
        return errmsg_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(events, i);
        const json_t *type = json_is_object(e) ? json_object_get(e, "type") : NULL;
        struct etcd_watch_event *ev = &out->events[i];
        if (!json_is_object(e)) {
            rc = errmsg_set(err, -EPROTO, "watch event is not an object");
        } else if (!type || (json_is_string(type) && strcmp(json_string_value(type), "PUT") == 0)) {
            ev->type = ETCD_EVENT_PUT;
        } else if (json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0) {
            ev->type = ETCD_EVENT_DELETE;
        } else {
            rc = errmsg_set(err, -EPROTO, "watch event of unknown type");
        }
        if (rc == 0)
            rc = parse_kv(json_object_get(e, "kv"), &ev->kv, err);
        if (rc < 0) {
            etcd_watch_response_clear(out);
            return rc;
        }
        ev->revision = out->header.revision;
        out->n_events = i + 1;
    }
    return 0;
}

/* ---- stream splitter ------------------------------------------------------------------ */

void etcd_splitter_init(struct etcd_splitter *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max;
}

void etcd_splitter_free(struct etcd_splitter *s)
{
    free(s->buf);
    etcd_splitter_init(s, s->max);
}

int etcd_splitter_feed(struct etcd_splitter *s, const void *data, size_t n)
{
    if (s->start > 0) {
        memmove(s->buf, s->buf + s->start, s->len - s->start);
        s->len -= s->start;
        s->start = 0;
    }
    if (n > s->max - s->len)
        return -EMSGSIZE;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        if (cap > s->max + 1)
            cap = s->max + 1;
        char *nb = realloc(s->buf, cap);
        if (!nb)
            return -ENOMEM;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return 0;
}

int etcd_splitter_next(struct etcd_splitter *s, const char **obj, size_t *len)
{
    *obj = NULL;
    *len = 0;
    size_t i = s->start + s->scan;
    while (i < s->len) {
        char ch = s->buf[i];
        if (s->depth == 0) {
            /* between objects: whitespace, or the start of the next object */
            if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') {
                s->start = ++i;
                continue;
            }
            if (ch != '{')
                return -EPROTO;
            s->depth = 1;
        } else if (s->in_string) {
            if (s->escape)
                s->escape = false;
            else if (ch == '\\')
                s->escape = true;
            else if (ch == '"')
                s->in_string = false;
        } else if (ch == '"') {
            s->in_string = true;
        } else if (ch == '{' || ch == '[') {
            if (++s->depth > MAX_DEPTH)
                return -EPROTO;
        } else if (ch == '}' || ch == ']') {
            if (--s->depth == 0) {
                *obj = s->buf + s->start;
                *len = i + 1 - s->start;
                s->start = i + 1;
                s->scan = 0;
                return 1;
            }
        }
        i++;
    }
    s->scan = i - s->start;
    return 0;
}

/* ---- results -------------------------------------------------------------------------- */

void etcd_kv_clear(struct etcd_kv *kv)
{
    free(kv->key);
    free(kv->value);
    memset(kv, 0, sizeof(*kv));
}

void etcd_range_clear(struct etcd_range *r)
{
    for (size_t i = 0; i < r->n; i++)
        etcd_kv_clear(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof(*r));
}

void etcd_txn_result_clear(struct etcd_txn_result *t)
{
    etcd_kv_clear(&t->kv);
    memset(t, 0, sizeof(*t));
}

void etcd_members_clear(struct etcd_members *m)
{
    for (size_t i = 0; i < m->n; i++)
        member_clear(&m->members[i]);
    free(m->members);
    memset(m, 0, sizeof(*m));
}

void etcd_watch_event_clear(struct etcd_watch_event *ev)
{
    etcd_kv_clear(&ev->kv);
    memset(ev, 0, sizeof(*ev));
}

/* ---- the client ------------------------------------------------------------------------ */

struct body {
    char *buf;
    size_t len, cap;
    bool too_big, oom;
};

struct etcd_client {
    char *endpoints[ETCD_MAX_ENDPOINTS];
    size_t n_endpoints;
    size_t current;
    char *ca_file, *cert_file, *key_file;
    char api_prefix[16];
    int timeout_ms;
    CURL *curl;
    struct curl_slist *headers;
    struct body resp;
    char errbuf[CURL_ERROR_SIZE];
};

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body *b = userdata;
    size_t n = size * nmemb;
    if (n > ETCD_MAX_RESPONSE - b->len) {
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

static bool valid_endpoint(const char *ep)
{
    const char *host;
    if (!ep || strlen(ep) > ETCD_MAX_ENDPOINT_LEN)
        return false;
    if (strncmp(ep, "https://", 8) == 0)
        host = ep + 8;
    else if (strncmp(ep, "http://", 7) == 0)
        host = ep + 7;
    else
        return false;
    size_t n = strlen(host);
    return n > 0 && host[n - 1] != ':' &&
           strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
               n;
}

static bool valid_prefix(const char *p)
{
    return strcmp(p, "/v3") == 0 || strcmp(p, "/v3beta") == 0 || strcmp(p, "/v3alpha") == 0;
}

/* Options shared by the client's handle and a watch's: TLS with verification, no proxy,
 * no signals, HTTP/1.1, TCP keep-alive, the body cap. */
static int setup_handle(CURL *h, const struct etcd_client *c, struct curl_slist *headers,
                        char *errbuf)
{
#define SET(opt, val)                                                                        \
    do {                                                                                     \
        if (curl_easy_setopt(h, opt, val) != CURLE_OK)                                       \
            return -1;                                                                       \
    } while (0)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, "");
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
    /* the CA file is a bundle that changes (peer-certificates): read it at every new
     * connection, not from libcurl's store cache (24 h by default since 7.87) */
#if LIBCURL_VERSION_NUM >= 0x075700
    SET(CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
    if (c->cert_file)
        SET(CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file)
        SET(CURLOPT_SSLKEY, c->key_file);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 10L);
    SET(CURLOPT_TCP_KEEPINTVL, 5L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ETCD_MAX_RESPONSE);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_ERRORBUFFER, errbuf);
#undef SET
    return 0;
}

static struct curl_slist *json_headers(void)
{
    /* "Expect:" stops curl from waiting for 100-continue before sending a large body */
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
    if (!h2)
        curl_slist_free_all(h);
    return h2;
}

void etcd_client_free(struct etcd_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->resp.buf);
    free(c);
}

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (!s)
        return 0;
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

int etcd_client_new(const struct etcd_config *cfg, struct etcd_client **out, char **err)
{
    static bool curl_ready;
    *out = NULL;
    if (cfg->n_endpoints == 0 || cfg->n_endpoints > ETCD_MAX_ENDPOINTS)
        return errmsg_set(err, -EINVAL, "etcd: 1 to %d endpoints needed, got %zu",
                          ETCD_MAX_ENDPOINTS, cfg->n_endpoints);
    for (size_t i = 0; i < cfg->n_endpoints; i++)
        if (!valid_endpoint(cfg->endpoints[i]))
            return errmsg_set(err, -EINVAL,
                              "etcd: endpoint %zu is not http(s)://host[:port] (no path)", i);
    if (cfg->timeout_ms < 0 || cfg->timeout_ms > 600000)
        return errmsg_set(err, -EINVAL, "etcd: timeout %d ms out of range", cfg->timeout_ms);
    if (cfg->api_prefix && !valid_prefix(cfg->api_prefix))
        return errmsg_set(err, -EINVAL, "etcd: API prefix must be /v3, /v3beta or /v3alpha");
    if ((cfg->cert_file == NULL) != (cfg->key_file == NULL))
        return errmsg_set(err, -EINVAL, "etcd: a client certificate needs its key, and back");
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return errmsg_set(err, -ENOMEM, "etcd: libcurl initialisation failed");
        curl_ready = true;
    }
    struct etcd_client *c = calloc(1, sizeof(*c));
    if (!c)
        return errmsg_set(err, -ENOMEM, "out of memory");
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : ETCD_DEFAULT_TIMEOUT_MS;
    snprintf(c->api_prefix, sizeof(c->api_prefix), "%s",
             cfg->api_prefix ? cfg->api_prefix : "/v3");
    int rc = 0;
    for (size_t i = 0; i < cfg->n_endpoints && rc == 0; i++) {
        rc = dup_opt(cfg->endpoints[i], &c->endpoints[i]);
        if (rc == 0)
            c->n_endpoints = i + 1;
    }
    if (rc == 0)
        rc = dup_opt(cfg->ca_file, &c->ca_file);
    if (rc == 0)
        rc = dup_opt(cfg->cert_file, &c->cert_file);
    if (rc == 0)
        rc = dup_opt(cfg->key_file, &c->key_file);
    if (rc == 0 && !(c->headers = json_headers()))
        rc = -ENOMEM;
    if (rc == 0 && !(c->curl = curl_easy_init()))
        rc = -ENOMEM;
    if (rc == 0 && (setup_handle(c->curl, c, c->headers, c->errbuf) < 0 ||
                    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, body_write) != CURLE_OK ||
                    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &c->resp) != CURLE_OK))
        rc = -ENOMEM;
    if (rc < 0) {
        etcd_client_free(c);
        return errmsg_set(err, rc, "etcd: cannot set up the client (out of memory)");
    }
    *out = c;
    return 0;
}

const char *etcd_client_endpoint(const struct etcd_client *c)
{
    return c->endpoints[c->current];
}

/* Map a libcurl failure; *retry when the request cannot have reached etcd. */
static int curl_failure(struct etcd_client *c, CURLcode cc, bool *retry)
{
    long os_errno = 0, request_size = 0;
    if (curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK)
        os_errno = 0;
    if (curl_easy_getinfo(c->curl, CURLINFO_REQUEST_SIZE, &request_size) != CURLE_OK)
        request_size = 1;
    bool unsent = request_size == 0;
    *retry = false;
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        *retry = true;
        return -EHOSTUNREACH;
    case CURLE_COULDNT_CONNECT:
        *retry = true;
        return os_errno == EHOSTUNREACH || os_errno == ENETUNREACH ? -EHOSTUNREACH
                                                                   : -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        *retry = unsent;
        return -ETIMEDOUT;
    case CURLE_WRITE_ERROR:
        if (c->resp.too_big)
            return -EMSGSIZE;
        return c->resp.oom ? -ENOMEM : -ECONNABORTED;
    case CURLE_FILESIZE_EXCEEDED:
        return -EMSGSIZE;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
        *retry = true;
        return -ECONNABORTED;
    default:
        *retry = unsent;
        return -ECONNABORTED;
    }
}

enum { REQ_NO_RETRY = 1 };

/* One attempt at endpoint ep with ms_left of budget. */
static int attempt(struct etcd_client *c, size_t ep, const char *path, const char *text,
                   long long ms_left, long long connect_ms, json_t **out, bool *retry,
                   bool *answered, char **err)
{
    char url[ETCD_MAX_ENDPOINT_LEN + 64];
    const char *ep_url = c->endpoints[ep];
    *retry = false;
    *answered = false;
    int n = snprintf(url, sizeof(url), "%s%s", ep_url, path);
    if (n < 0 || (size_t)n >= sizeof(url))
        return errmsg_set(err, -EINVAL, "etcd: URL too long");
    c->resp.len = 0;
    c->resp.too_big = c->resp.oom = false;
    c->errbuf[0] = '\0';
    CURLcode cc = curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)ms_left);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    if (cc == CURLE_OK && text) {
        cc = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text);
        if (cc == CURLE_OK)
            cc = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    } else if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    }
    if (cc != CURLE_OK)
        return errmsg_set(err, -ENOMEM, "etcd: cannot set up the request: %s",
                          curl_easy_strerror(cc));
    cc = curl_easy_perform(c->curl);
    if (cc != CURLE_OK) {
        int rc = curl_failure(c, cc, retry);
        char text_err[ETCD_TEXT_MAX];
        clean_text(c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc), text_err,
                   sizeof(text_err));
        if (rc == -EMSGSIZE)
            return errmsg_set(err, rc, "etcd %s%s: answer larger than %zu bytes", ep_url, path,
                              ETCD_MAX_RESPONSE);
        return errmsg_set(err, rc, "etcd %s%s: %s", ep_url, path, text_err);
    }
    long status = 0;
    if (curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    *answered = true;
    char *perr = NULL;
    int rc = etcd_parse_answer(status, c->resp.buf ? c->resp.buf : "", c->resp.len, out, &perr);
    if (rc == -EAGAIN)
        *retry = true;
    if (rc < 0)
        errmsg_format(err, "etcd %s%s: %s", ep_url, path, ERRMSG(perr));
    free(perr);
    /* keep the buffer from growing for good after one large answer */
    if (c->resp.cap > 65536) {
        free(c->resp.buf);
        c->resp.buf = NULL;
        c->resp.cap = 0;
    }
    return rc;
}

/* POST body (consumed; NULL: GET) to path under the API prefix (or the root when raw),
 * within the client's budget, failing over as etcd.h says. endpoint < 0: any. */
static int request_at(struct etcd_client *c, const char *path, bool raw, json_t *body,
                      unsigned flags, int endpoint, json_t **out, char **err)
{
    *out = NULL;
    char full[64];
    snprintf(full, sizeof(full), "%s%s", raw ? "" : c->api_prefix, path);
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!text)
            return errmsg_set(err, -ENOMEM, "out of memory");
    }
    if (endpoint >= (int)c->n_endpoints) {
        free(text);
        return errmsg_set(err, -EINVAL, "etcd: no endpoint %d", endpoint);
    }
    long long deadline = now_ms() + c->timeout_ms;
    size_t tries = endpoint >= 0 ? 1 : c->n_endpoints;
    int rc = errmsg_set(err, -ETIMEDOUT, "etcd %s: no answer within %d ms", full, c->timeout_ms);
    for (size_t i = 0; i < tries; i++) {
        size_t ep = endpoint >= 0 ? (size_t)endpoint : (c->current + i) % c->n_endpoints;
        long long left = deadline - now_ms();
        if (left <= 0) {
            rc = errmsg_set(err, -ETIMEDOUT, "etcd %s: no answer within %d ms", full,
                            c->timeout_ms);
            break;
        }
        /* a dead endpoint may only eat its share of what is left */
        long long connect_ms = left / (long long)(tries - i);
        if (connect_ms < 1)
            connect_ms = 1;
        bool retry = false, answered = false;
        rc = attempt(c, ep, full, text, left, connect_ms, out, &retry, &answered, err);
        /* gRPC Unavailable was answered: the request reached etcd, and member add must
         * not be sent twice */
        if (rc == -EAGAIN && (flags & REQ_NO_RETRY))
            retry = false;
        /* remember an endpoint that answers (even with an error) */
        if (answered && rc != -EAGAIN)
            c->current = ep;
        if (!retry)
            break;
    }
    free(text);
    return rc;
}

static int request(struct etcd_client *c, const char *path, json_t *body, unsigned flags,
                   json_t **out, char **err)
{
    if (!body)
        return errmsg_set(err, -ENOMEM, "out of memory");
    return request_at(c, path, false, body, flags, -1, out, err);
}

/* "MAJOR.MINOR[...]" */
static bool parse_version(const char *s, unsigned long *major, unsigned long *minor)
{
    char *end = NULL;
    if (*s < '0' || *s > '9')
        return false;
    *major = strtoul(s, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9')
        return false;
    *minor = strtoul(end + 1, &end, 10);
    return true;
}

int etcd_detect_version(struct etcd_client *c, char version[32], char **err)
{
    json_t *root = NULL;
    version[0] = '\0';
    int rc = request_at(c, "/version", true, NULL, 0, -1, &root, err);
    if (rc < 0)
        return rc;
    const json_t *v = json_object_get(root, "etcdserver");
    unsigned long major = 0, minor = 0;
    if (!json_is_string(v) || json_string_length(v) >= 32 ||
        !parse_version(json_string_value(v), &major, &minor)) {
        json_decref(root);
        return errmsg_set(err, -EPROTO, "etcd /version: no \"etcdserver\" version");
    }
    clean_text(json_string_value(v), version, 32);
    json_decref(root);
    if (major != 3 || minor < 3)
        return errmsg_set(err, -ENOTSUP, "etcd %s is not supported (3.3 or later needed)",
                          version);
    snprintf(c->api_prefix, sizeof(c->api_prefix), "%s", minor == 3 ? "/v3beta" : "/v3");
    return 0;
}

/* ---- request bodies -------------------------------------------------------------------- */

static json_t *b64_json(const void *data, size_t n)
{
    char *s = etcd_b64_encode(data, n);
    json_t *j = s ? json_string(s) : NULL;
    free(s);
    return j;
}

static json_t *i64_json(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_string(buf);
}

static json_t *u64_json(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return json_string(buf);
}

static int check_key(const char *key, char **err)
{
    if (!key || !*key || strlen(key) > MAX_KEY_LEN)
        return errmsg_set(err, -EINVAL, "etcd: key empty or longer than %d bytes", MAX_KEY_LEN);
    return 0;
}

static int check_value(const void *value, size_t len, char **err)
{
    if ((!value && len) || len > MAX_VALUE_LEN)
        return errmsg_set(err, -EINVAL, "etcd: value missing or larger than %d bytes",
                          MAX_VALUE_LEN);
    return 0;
}

/* {"key":..,"value":..,"lease":..?} */
static json_t *put_body(const char *key, const void *value, size_t len, int64_t lease)
{
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "key", b64_json(key, strlen(key))) != 0 ||
        json_object_set_new(o, "value", b64_json(value ? value : "", len)) != 0 ||
        (lease != 0 && json_object_set_new(o, "lease", i64_json(lease)) != 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *key_body(const char *key)
{
    return json_pack("{so}", "key", b64_json(key, strlen(key)));
}

/* A one-comparison txn: compare and success op (both stolen; success NULL only when
 * !want_success: a NULL from a failed allocation must not become an empty branch), and a
 * range of key on failure when read_on_failure. */
static json_t *txn_body(const char *key, json_t *compare, json_t *success, bool want_success,
                        bool read_on_failure)
{
    if (!compare || (want_success && !success)) {
        json_decref(compare);
        json_decref(success);
        return NULL;
    }
    json_t *t = json_pack("{s[o]}", "compare", compare);
    if (!t) {
        json_decref(success);
        return NULL;
    }
    if (success && json_object_set_new(t, "success", json_pack("[o]", success)) != 0) {
        json_decref(t);
        return NULL;
    }
    if (read_on_failure &&
        json_object_set_new(t, "failure", json_pack("[{so}]", "request_range", key_body(key))) !=
            0) {
        json_decref(t);
        return NULL;
    }
    return t;
}

static json_t *compare_body(const char *key, const char *target, const char *field,
                            json_t *value)
{
    return json_pack("{so ss so ss}", "key", b64_json(key, strlen(key)), "target", target, field,
                     value, "result", "EQUAL");
}

static int run_txn(struct etcd_client *c, json_t *body, struct etcd_txn_result *out, char **err)
{
    json_t *root = NULL;
    memset(out, 0, sizeof(*out));
    int rc = request(c, "/kv/txn", body, 0, &root, err);
    if (rc < 0)
        return rc;
    rc = etcd_parse_txn(root, out, err);
    json_decref(root);
    if (rc < 0)
        errmsg_format(err, "etcd txn: malformed answer: %s", ERRMSG(*err));
    return rc;
}

/* Wrap a parser's message: "etcd <what>: malformed answer: ...". */
static int malformed(int rc, const char *what, char **err)
{
    if (rc < 0 && err)
        errmsg_format(err, "etcd %s: malformed answer: %s", what, ERRMSG(*err));
    return rc;
}

/* ---- keys --------------------------------------------------------------------------------- */

static int range(struct etcd_client *c, const char *key, bool prefix, struct etcd_range *out,
                 char **err)
{
    memset(out, 0, sizeof(*out));
    int rc = check_key(key, err);
    if (rc < 0)
        return rc;
    json_t *body = key_body(key);
    if (body && prefix) {
        size_t len = strlen(key);
        unsigned char *end = malloc(len + 1);
        size_t n = end ? etcd_prefix_range_end(key, len, end) : 0;
        if (!end || json_object_set_new(body, "range_end", b64_json(end, n)) != 0) {
            json_decref(body);
            body = NULL;
        }
        free(end);
    }
    json_t *root = NULL;
    rc = request(c, "/kv/range", body, 0, &root, err);
    if (rc < 0)
        return rc;
    rc = etcd_parse_range(root, out, err);
    json_decref(root);
    return malformed(rc, "range", err);
}

int etcd_get(struct etcd_client *c, const char *key, struct etcd_range *out, char **err)
{
    int rc = range(c, key, false, out, err);
    if (rc == 0 && out->n > 1) {
        etcd_range_clear(out);
        return errmsg_set(err, -EPROTO, "etcd range: several keys for one key");
    }
    return rc;
}

int etcd_get_prefix(struct etcd_client *c, const char *prefix, struct etcd_range *out,
                    char **err)
{
    return range(c, prefix, true, out, err);
}

int etcd_put(struct etcd_client *c, const char *key, const void *value, size_t value_len,
             int64_t lease, int64_t *revision, char **err)
{
    int64_t rev = 0;
    int rc;
    if (revision)
        *revision = 0;
    if ((rc = check_key(key, err)) < 0 || (rc = check_value(value, value_len, err)) < 0)
        return rc;
    if (lease < 0)
        return errmsg_set(err, -EINVAL, "etcd put: negative lease");
    json_t *root = NULL;
    rc = request(c, "/kv/put", put_body(key, value, value_len, lease), 0, &root, err);
    if (rc < 0)
        return rc;
    rc = malformed(etcd_parse_put(root, &rev, err), "put", err);
    json_decref(root);
    if (rc == 0 && revision)
        *revision = rev;
    return rc;
}

int etcd_delete(struct etcd_client *c, const char *key, int64_t *deleted, char **err)
{
    int64_t n = 0;
    if (deleted)
        *deleted = 0;
    int rc = check_key(key, err);
    if (rc < 0)
        return rc;
    json_t *root = NULL;
    rc = request(c, "/kv/deleterange", key_body(key), 0, &root, err);
    if (rc < 0)
        return rc;
    rc = malformed(etcd_parse_delete(root, &n, err), "deleterange", err);
    json_decref(root);
    if (rc == 0 && deleted)
        *deleted = n;
    return rc;
}

/* ---- transactions ------------------------------------------------------------------------ */

int etcd_create_if_absent(struct etcd_client *c, const char *key, const void *value,
                          size_t value_len, int64_t lease, struct etcd_txn_result *out,
                          char **err)
{
    memset(out, 0, sizeof(*out));
    int rc;
    if ((rc = check_key(key, err)) < 0 || (rc = check_value(value, value_len, err)) < 0)
        return rc;
    if (lease < 0)
        return errmsg_set(err, -EINVAL, "etcd txn: negative lease");
    json_t *put = json_pack("{so}", "request_put", put_body(key, value, value_len, lease));
    json_t *cmp = compare_body(key, "CREATE", "create_revision", json_string("0"));
    return run_txn(c, txn_body(key, cmp, put, true, true), out, err);
}

int etcd_cas_value(struct etcd_client *c, const char *key, const void *expected,
                   size_t expected_len, const void *value, size_t value_len, int64_t lease,
                   struct etcd_txn_result *out, char **err)
{
    memset(out, 0, sizeof(*out));
    int rc;
    if ((rc = check_key(key, err)) < 0 || (rc = check_value(value, value_len, err)) < 0 ||
        (rc = check_value(expected, expected_len, err)) < 0)
        return rc;
    if (lease < 0)
        return errmsg_set(err, -EINVAL, "etcd txn: negative lease");
    json_t *put = json_pack("{so}", "request_put", put_body(key, value, value_len, lease));
    json_t *cmp =
        compare_body(key, "VALUE", "value", b64_json(expected ? expected : "", expected_len));
    return run_txn(c, txn_body(key, cmp, put, true, true), out, err);
}

int etcd_cas_revision(struct etcd_client *c, const char *key, int64_t mod_revision,
                      const void *value, size_t value_len, int64_t lease,
                      struct etcd_txn_result *out, char **err)
{
    memset(out, 0, sizeof(*out));
    int rc;
    if ((rc = check_key(key, err)) < 0 || (rc = check_value(value, value_len, err)) < 0)
        return rc;
    if (lease < 0 || mod_revision < 0)
        return errmsg_set(err, -EINVAL, "etcd txn: negative lease or revision");
    json_t *put = json_pack("{so}", "request_put", put_body(key, value, value_len, lease));
    json_t *cmp = compare_body(key, "MOD", "mod_revision", i64_json(mod_revision));
    return run_txn(c, txn_body(key, cmp, put, true, true), out, err);
}

int etcd_delete_if_value(struct etcd_client *c, const char *key, const void *expected,
                         size_t expected_len, struct etcd_txn_result *out, char **err)
{
    memset(out, 0, sizeof(*out));
    int rc;
    if ((rc = check_key(key, err)) < 0 || (rc = check_value(expected, expected_len, err)) < 0)
        return rc;
    json_t *del = json_pack("{so}", "request_delete_range", key_body(key));
    json_t *cmp =
        compare_body(key, "VALUE", "value", b64_json(expected ? expected : "", expected_len));
    return run_txn(c, txn_body(key, cmp, del, true, true), out, err);
}

int etcd_key_has_lease(struct etcd_client *c, const char *key, int64_t lease, bool *owned,
                       char **err)
{
    *owned = false;
    int rc = check_key(key, err);
    if (rc < 0)
        return rc;
    if (lease <= 0)
        return errmsg_set(err, -EINVAL, "etcd txn: lease must be positive");
    struct etcd_txn_result t;
    json_t *cmp = compare_body(key, "LEASE", "lease", i64_json(lease));
    rc = run_txn(c, txn_body(key, cmp, NULL, false, false), &t, err);
    if (rc == 0)
        *owned = t.succeeded;
    etcd_txn_result_clear(&t);
    return rc;
}

/* ---- leases -------------------------------------------------------------------------------- */

int etcd_lease_grant(struct etcd_client *c, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
                     char **err)
{
    int64_t lid = 0, ttl = 0;
    *id = 0;
    if (granted_ttl)
        *granted_ttl = 0;
    if (ttl_s < ETCD_MIN_TTL || ttl_s > 1000000000)
        return errmsg_set(err, -EINVAL, "etcd lease: TTL %" PRId64 " s out of range (min %d)",
                          ttl_s, ETCD_MIN_TTL);
    json_t *root = NULL;
    int rc = request(c, "/lease/grant", json_pack("{so}", "TTL", i64_json(ttl_s)), 0, &root, err);
    if (rc < 0)
        return rc;
    rc = malformed(etcd_parse_lease_grant(root, &lid, &ttl, err), "lease grant", err);
    json_decref(root);
    if (rc == 0) {
        *id = lid;
        if (granted_ttl)
            *granted_ttl = ttl;
    }
    return rc;
}

int etcd_lease_keepalive(struct etcd_client *c, int64_t id, int64_t *ttl, char **err)
{
    *ttl = 0;
    if (id <= 0)
        return errmsg_set(err, -EINVAL, "etcd lease: ID must be positive");
    json_t *root = NULL;
    int rc = request(c, "/lease/keepalive", json_pack("{so}", "ID", i64_json(id)), 0, &root, err);
    if (rc < 0)
        return rc;
    rc = etcd_parse_keepalive(root, id, ttl, err);
    json_decref(root);
    return rc == -ENOKEY ? rc : malformed(rc, "lease keepalive", err);
}

int etcd_lease_revoke(struct etcd_client *c, int64_t id, char **err)
{
    struct etcd_header h;
    if (id <= 0)
        return errmsg_set(err, -EINVAL, "etcd lease: ID must be positive");
    json_t *root = NULL;
    int rc = request(c, "/lease/revoke", json_pack("{so}", "ID", i64_json(id)), 0, &root, err);
    if (rc < 0)
        return rc;
    rc = malformed(etcd_parse_header(root, false, &h, err), "lease revoke", err);
    json_decref(root);
    return rc;
}

/* ---- cluster -------------------------------------------------------------------------------- */

int etcd_member_list(struct etcd_client *c, struct etcd_members *out, char **err)
{
    memset(out, 0, sizeof(*out));
    json_t *root = NULL;
    int rc = request(c, "/cluster/member/list", json_object(), 0, &root, err);
    if (rc < 0)
        return rc;
    rc = malformed(etcd_parse_members(root, out, err), "member list", err);
    json_decref(root);
    return rc;
}

int etcd_member_add(struct etcd_client *c, const char *const *peer_urls, size_t n_peer_urls,
                    bool is_learner, uint64_t *id, struct etcd_members *members, char **err)
{
    *id = 0;
    if (members)
        memset(members, 0, sizeof(*members));
    if (n_peer_urls == 0 || n_peer_urls > MAX_PEER_URLS)
        return errmsg_set(err, -EINVAL, "etcd member add: 1 to %d peer URLs", MAX_PEER_URLS);
    json_t *urls = json_array();
    for (size_t i = 0; urls && i < n_peer_urls; i++) {
        if (!valid_endpoint(peer_urls[i])) {
            json_decref(urls);
            return errmsg_set(err, -EINVAL, "etcd member add: peer URL %zu is malformed", i);
        }
        if (json_array_append_new(urls, json_string(peer_urls[i])) != 0) {
            json_decref(urls);
            urls = NULL;
        }
    }
    json_t *root = NULL;
    int rc = request(c, "/cluster/member/add",
                     json_pack("{so sb}", "peerURLs", urls, "isLearner", is_learner),
                     REQ_NO_RETRY, &root, err);
    if (rc < 0)
        return rc;
    struct etcd_members m;
    rc = malformed(etcd_parse_member_add(root, id, &m, err), "member add", err);
    json_decref(root);
    if (rc == 0 && members)
        *members = m;
    else
        etcd_members_clear(&m);
    return rc;
}

static int member_call(struct etcd_client *c, const char *path, uint64_t id, char **err)
{
    if (id == 0)
        return errmsg_set(err, -EINVAL, "etcd %s: member ID 0", path);
    json_t *root = NULL;
    int rc = request(c, path, json_pack("{so}", "ID", u64_json(id)), 0, &root, err);
    if (rc < 0)
        return rc;
    struct etcd_members m;
    rc = malformed(etcd_parse_members(root, &m, err), path, err);
    etcd_members_clear(&m);
    json_decref(root);
    return rc;
}

int etcd_member_promote(struct etcd_client *c, uint64_t id, char **err)
{
    return member_call(c, "/cluster/member/promote", id, err);
}

int etcd_member_remove(struct etcd_client *c, uint64_t id, char **err)
{
    return member_call(c, "/cluster/member/remove", id, err);
}

int etcd_status(struct etcd_client *c, int endpoint, struct etcd_status *out, char **err)
{
    memset(out, 0, sizeof(*out));
    json_t *root = NULL;
    json_t *body = json_object();
    if (!body)
        return errmsg_set(err, -ENOMEM, "out of memory");
    int rc = request_at(c, "/maintenance/status", false, body, 0, endpoint < 0 ? -1 : endpoint,
                        &root, err);
    if (rc < 0)
        return rc;
    rc = malformed(etcd_parse_status(root, out, err), "status", err);
    json_decref(root);
    return rc;
}

int etcd_move_leader(struct etcd_client *c, int endpoint, uint64_t target, char **err)
{
    json_t *root = NULL;
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, target);
    json_t *body = json_pack("{s:s}", "targetID", id);
    if (!body)
        return errmsg_set(err, -ENOMEM, "out of memory");
    int rc = request_at(c, "/maintenance/transfer-leadership", false, body, 0,
                        endpoint < 0 ? -1 : endpoint, &root, err);
    json_decref(root);
    return rc;
}

/* ---- watch ---------------------------------------------------------------------------------- */

struct etcd_watch {
    CURLM *multi;
    CURL *easy;
    int epfd, tfd;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    char *urls[ETCD_MAX_ENDPOINTS]; /* the watch URL on each endpoint, current one first */
    size_t n_urls, url_index;
    bool got_data; /* bytes arrived: no more failing over */
    struct etcd_splitter sp;
    int feed_rc; /* the splitter refused bytes: -EMSGSIZE / -ENOMEM */
    struct etcd_watch_response resp;
    size_t next_event;
    bool created, done;
    CURLcode done_code;
    int end_rc; /* sticky, once the stream is over */
    char *end_msg;
    int64_t revision, compacted;
};

static size_t watch_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct etcd_watch *w = userdata;
    size_t n = size * nmemb;
    w->got_data = true;
    int rc = etcd_splitter_feed(&w->sp, ptr, n);
    if (rc < 0) {
        w->feed_rc = rc;
        return 0;
    }
    return n;
}

static int watch_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    struct etcd_watch *w = userp;
    if (what == CURL_POLL_REMOVE) {
        /* curl may already have closed it: nothing to do then */
        (void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = ((what & CURL_POLL_IN) ? (uint32_t)EPOLLIN : 0u) |
                ((what & CURL_POLL_OUT) ? (uint32_t)EPOLLOUT : 0u);
    ev.data.fd = s;
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev) != 0 &&
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev) != 0)
        return -1;
    return 0;
}

static int watch_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct etcd_watch *w = userp;
    struct itimerspec its = {0};
    if (timeout_ms == 0) {
        its.it_value.tv_nsec = 1; /* as soon as possible (0 would disarm) */
    } else if (timeout_ms > 0) {
        its.it_value.tv_sec = timeout_ms / 1000;
        its.it_value.tv_nsec = (timeout_ms % 1000) * 1000000L;
    }
    return timerfd_settime(w->tfd, 0, &its, NULL) == 0 ? 0 : -1;
}

/* Sticky end of the stream. */
static void watch_end(struct etcd_watch *w, int rc, const char *msg)
{
    if (w->end_rc)
        return;
    w->end_rc = rc;
    if (asprintf(&w->end_msg, "etcd watch %s: %s", w->urls[w->url_index], msg) < 0)
        w->end_msg = NULL;
}

/* What is readable now, without blocking. */
static void watch_drive(struct etcd_watch *w)
{
    struct epoll_event evs[8];
    int running = 0;
    int n = epoll_wait(w->epfd, evs, 8, 0);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd == w->tfd) {
            uint64_t ticks;
            if (read(w->tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                continue;
            (void)curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        } else {
            int flags = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                        ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                        ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
            (void)curl_multi_socket_action(w->multi, evs[i].data.fd, flags, &running);
        }
    }
    CURLMsg *m;
    int queued;
    while ((m = curl_multi_info_read(w->multi, &queued)) != NULL)
        if (m->msg == CURLMSG_DONE) {
            w->done = true;
            w->done_code = m->data.result;
        }
}

/* The stream could not reach etcd at all (so trying the next endpoint is safe). */
static bool watch_connect_failed(CURLcode cc)
{
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
           cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_SSL_CONNECT_ERROR ||
           cc == CURLE_PEER_FAILED_VERIFICATION;
}

/* Restart the transfer on the next endpoint (non-blocking, like the first). */
static int watch_next_endpoint(struct etcd_watch *w)
{
    w->url_index++;
    w->done = false;
    w->errbuf[0] = '\0';
    (void)curl_multi_remove_handle(w->multi, w->easy);
    if (curl_easy_setopt(w->easy, CURLOPT_URL, w->urls[w->url_index]) != CURLE_OK ||
        curl_multi_add_handle(w->multi, w->easy) != CURLM_OK) {
        watch_end(w, -ENOMEM, "cannot restart the transfer");
        return -1;
    }
    return 0;
}

/* The transfer is over and every complete object was handled: say why it ended. */
static void watch_finish(struct etcd_watch *w)
{
    long status = 0;
    if (curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    char text[ETCD_TEXT_MAX + 64];
    if (w->done_code == CURLE_OK) {
        if (status != 200 && status != 0) {
            snprintf(text, sizeof(text), "HTTP %ld", status);
            watch_end(w, http_errno(status), text);
        } else {
            watch_end(w, -ECONNRESET, "stream ended");
        }
        return;
    }
    if (w->done_code == CURLE_WRITE_ERROR && w->feed_rc) {
        watch_end(w, w->feed_rc,
                  w->feed_rc == -EMSGSIZE ? "object larger than the limit" : "out of memory");
        return;
    }
    if (!w->got_data && w->url_index + 1 < w->n_urls && watch_connect_failed(w->done_code) &&
        watch_next_endpoint(w) == 0)
        return;
    long os_errno = 0;
    if (curl_easy_getinfo(w->easy, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK)
        os_errno = 0;
    int rc;
    switch (w->done_code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        rc = -EHOSTUNREACH;
        break;
    case CURLE_COULDNT_CONNECT:
        rc = os_errno == EHOSTUNREACH || os_errno == ENETUNREACH ? -EHOSTUNREACH : -ECONNREFUSED;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        rc = -ETIMEDOUT;
        break;
    default:
        rc = -ECONNABORTED;
        break;
    }
    char detail[ETCD_TEXT_MAX];
    clean_text(w->errbuf[0] ? w->errbuf : curl_easy_strerror(w->done_code), detail,
               sizeof(detail));
    watch_end(w, rc, detail);
}

/* One complete object of the stream. */
static void watch_object(struct etcd_watch *w, const char *obj, size_t len)
{
    json_t *root = NULL;
    char *e = NULL;
    int rc = etcd_parse_answer(200, obj, len, &root, &e);
    if (rc == 0) {
        rc = etcd_parse_watch_response(root, &w->resp, &e);
        json_decref(root);
    }
    if (rc < 0) {
        watch_end(w, rc, ERRMSG(e));
        free(e);
        return;
    }
    w->next_event = 0;
    if (w->resp.header.revision > w->revision)
        w->revision = w->resp.header.revision;
    if (w->resp.created)
        w->created = true;
    if (w->resp.canceled) {
        char text[ETCD_TEXT_MAX + 64];
        if (w->resp.compact_revision > 0) {
            w->compacted = w->resp.compact_revision;
            snprintf(text, sizeof(text), "start revision compacted (compact revision %" PRId64 ")",
                     w->compacted);
            watch_end(w, -ESTALE, text);
        } else {
            snprintf(text, sizeof(text), "cancelled by etcd: %s", w->resp.cancel_reason);
            watch_end(w, -ECANCELED, text);
        }
    }
}

int etcd_watch_next(struct etcd_watch *w, struct etcd_watch_event *ev, char **err)
{
    memset(ev, 0, sizeof(*ev));
    bool drove = false;
    for (;;) {
        if (w->next_event < w->resp.n_events) {
            *ev = w->resp.events[w->next_event];
            memset(&w->resp.events[w->next_event], 0, sizeof(*ev));
            w->next_event++;
            return 1;
        }
        if (w->end_rc)
            return errmsg_set(err, w->end_rc, "%s", ERRMSG(w->end_msg));
        etcd_watch_response_clear(&w->resp);
        w->next_event = 0;
        const char *obj;
        size_t len;
        int rc = etcd_splitter_next(&w->sp, &obj, &len);
        if (rc < 0) {
            long status = 0;
            if (curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
                status = 0;
            char text[64];
            snprintf(text, sizeof(text), "HTTP %ld", status);
            if (status != 200 && status != 0)
                watch_end(w, http_errno(status), text);
            else
                watch_end(w, rc, "malformed stream (not a sequence of JSON objects)");
            continue;
        }
        if (rc == 1) {
            watch_object(w, obj, len);
            continue;
        }
        if (w->done) {
            watch_finish(w);
            continue;
        }
        if (drove)
            return 0;
        watch_drive(w);
        drove = true;
    }
}

void etcd_watch_free(struct etcd_watch *w)
{
    if (!w)
        return;
    if (w->multi && w->easy)
        (void)curl_multi_remove_handle(w->multi, w->easy);
    if (w->easy)
        curl_easy_cleanup(w->easy);
    if (w->multi)
        (void)curl_multi_cleanup(w->multi);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->tfd >= 0)
        close(w->tfd);
    curl_slist_free_all(w->headers);
    for (size_t i = 0; i < w->n_urls; i++)
        free(w->urls[i]);
    etcd_splitter_free(&w->sp);
    etcd_watch_response_clear(&w->resp);
    free(w->end_msg);
    free(w);
}

static json_t *watch_body(const char *prefix, int64_t start_revision)
{
    size_t len = strlen(prefix);
    unsigned char *end = malloc(len + 1);
    if (!end)
        return NULL;
    size_t n = etcd_prefix_range_end(prefix, len, end);
    json_t *cr = json_pack("{so so sb}", "key", b64_json(prefix, len), "range_end",
                           b64_json(end, n), "progress_notify", 1);
    free(end);
    if (cr && start_revision > 0 &&
        json_object_set_new(cr, "start_revision", i64_json(start_revision)) != 0) {
        json_decref(cr);
        return NULL;
    }
    return cr ? json_pack("{so}", "create_request", cr) : NULL;
}

/* Everything etcd_watch_start needs beyond the allocation; w is freed by the caller on error. */
static int watch_setup(struct etcd_watch *w, const struct etcd_client *c, const char *text,
                       char **err)
{
    for (size_t i = 0; i < c->n_endpoints; i++) {
        const char *ep = c->endpoints[(c->current + i) % c->n_endpoints];
        if (asprintf(&w->urls[i], "%s%s/watch", ep, c->api_prefix) < 0) {
            w->urls[i] = NULL;
            return errmsg_set(err, -ENOMEM, "out of memory");
        }
        w->n_urls = i + 1;
    }
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        return errmsg_set(err, -errno, "etcd watch: epoll_create1: %s", strerror(errno));
    w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (w->tfd < 0)
        return errmsg_set(err, -errno, "etcd watch: timerfd_create: %s", strerror(errno));
    struct epoll_event tev = {.events = EPOLLIN, .data.fd = w->tfd};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &tev) != 0)
        return errmsg_set(err, -errno, "etcd watch: epoll_ctl: %s", strerror(errno));
    /* a dead endpoint may only eat its share of the budget before the next is tried */
    long connect_ms = c->timeout_ms / (long)c->n_endpoints;
    if (!(w->headers = json_headers()) || !(w->easy = curl_easy_init()) ||
        !(w->multi = curl_multi_init()) || setup_handle(w->easy, c, w->headers, w->errbuf) < 0 ||
        curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, watch_write) != CURLE_OK ||
        curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, w) != CURLE_OK ||
        curl_easy_setopt(w->easy, CURLOPT_URL, w->urls[0]) != CURLE_OK ||
        curl_easy_setopt(w->easy, CURLOPT_COPYPOSTFIELDS, text) != CURLE_OK ||
        curl_easy_setopt(w->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms > 0 ? connect_ms : 1L) !=
            CURLE_OK ||
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, watch_socket) != CURLM_OK ||
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w) != CURLM_OK ||
        curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, watch_timer) != CURLM_OK ||
        curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w) != CURLM_OK ||
        curl_multi_add_handle(w->multi, w->easy) != CURLM_OK)
        return errmsg_set(err, -ENOMEM, "etcd watch: cannot set up the transfer");
    return 0;
}

int etcd_watch_start(struct etcd_client *c, const char *prefix, int64_t start_revision,
                     struct etcd_watch **out, char **err)
{
    *out = NULL;
    int rc = check_key(prefix, err);
    if (rc < 0)
        return rc;
    if (start_revision < 0)
        return errmsg_set(err, -EINVAL, "etcd watch: negative start revision");
    json_t *body = watch_body(prefix, start_revision);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct etcd_watch *w = text ? calloc(1, sizeof(*w)) : NULL;
    if (!w) {
        free(text);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    w->epfd = w->tfd = -1;
    etcd_splitter_init(&w->sp, ETCD_MAX_RESPONSE);
    rc = watch_setup(w, c, text, err);
    free(text);
    if (rc < 0) {
        etcd_watch_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int etcd_watch_fd(const struct etcd_watch *w)
{
    return w->epfd;
}

bool etcd_watch_created(const struct etcd_watch *w)
{
    return w->created;
}

int64_t etcd_watch_revision(const struct etcd_watch *w)
{
    return w->revision;
}

int64_t etcd_watch_compacted(const struct etcd_watch *w)
{
    return w->compacted;
}
