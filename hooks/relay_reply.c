/* Parser for the agent's reply frames as the relay sees them: a log line or the final
 * exit code (relay_reply.h), with JSON string unescaping and a skipper for unknown keys.
 *
 * Hand-written on purpose: the relay is the charm's `dispatch` and links libc and
 * lib/proto.c only (no JSON library, nothing to load before the agent is reached), and
 * it only ever has to read two fixed shapes. A small strict recursive-descent parser
 * over a length-delimited buffer is easier to audit and fuzz (tests/fuzz) than a
 * general one. Bytes >= 0x80 inside strings are passed through unvalidated, matching
 * proto_buf_append_json_string on the writing side.
 */
#include "relay_reply.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Nesting allowed inside skipped unknown values; bounds the recursion. */
#define MAX_DEPTH 32

struct parser {
    const unsigned char *s;
    size_t len, pos;
    int oom;
};

static int peek(const struct parser *p)
{
    return p->pos < p->len ? p->s[p->pos] : -1;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static int expect_char(struct parser *p, char c)
{
    if (peek(p) != (unsigned char)c)
        return -1;
    p->pos++;
    return 0;
}

static int hex4(const unsigned char *h, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = h[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        v = (v << 4) | d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parse a JSON string at p->pos (which must be '"'). With out != NULL the decoded bytes
 * are returned in a malloc'd NUL-terminated buffer (*out, *out_len); with out == NULL the
 * string is only validated. The decoded form is never longer than the escaped one, so
 * the buffer is sized from the raw span. Returns 0 or -1 (sets p->oom on ENOMEM). */
static int parse_string(struct parser *p, char **out, size_t *out_len)
{
    if (expect_char(p, '"') < 0)
        return -1;
    size_t start = p->pos, end = start;
    /* Pass 1: find the closing quote, rejecting raw control characters. */
    for (;;) {
        if (end >= p->len)
            return -1;
        unsigned char c = p->s[end];
        if (c == '"')
            break;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (end + 1 >= p->len)
                return -1;
            end += 2;
        } else {
            end++;
        }
    }
    unsigned char *buf = NULL;
    if (out) {
        buf = malloc(end - start + 1);
        if (!buf) {
            p->oom = 1;
            return -1;
        }
    }
    /* Pass 2: decode (or just validate) the escapes. */
    size_t o = 0;
    unsigned char tmp[4];
    for (size_t i = start; i < end;) {
        unsigned char c = p->s[i];
        if (c != '\\') {
            if (buf)
                buf[o] = c;
            o++;
            i++;
            continue;
        }
        unsigned char e = p->s[i + 1];
        unsigned char ch;
        i += 2;
        switch (e) {
        case '"':
            ch = '"';
            break;
        case '\\':
            ch = '\\';
            break;
        case '/':
            ch = '/';
            break;
        case 'b':
            ch = '\b';
            break;
        case 'f':
            ch = '\f';
            break;
        case 'n':
            ch = '\n';
            break;
        case 'r':
            ch = '\r';
            break;
        case 't':
            ch = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (end - i < 4 || hex4(p->s + i, &cp) < 0)
                goto bad;
            i += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                goto bad; /* lone low surrogate */
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - i < 6 || p->s[i] != '\\' || p->s[i + 1] != 'u' ||
                    hex4(p->s + i + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                    goto bad; /* high surrogate without its low half */
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            o += put_utf8(buf ? buf + o : tmp, cp);
            continue;
        }
        default:
            goto bad;
        }
        if (buf)
            buf[o] = ch;
        o++;
    }
    p->pos = end + 1;
    if (out) {
        buf[o] = '\0';
        *out = (char *)buf;
        *out_len = o;
    }
    return 0;
bad:
    free(buf);
    return -1;
}

/* Parse a JSON number; with val != NULL it must be an integer within int range. */
static int parse_number(struct parser *p, int *val)
{
    int neg = 0;
    long long v = 0;
    if (peek(p) == '-') {
        neg = 1;
        p->pos++;
    }
    int c = peek(p);
    if (c < '0' || c > '9')
        return -1;
    if (c == '0') {
        p->pos++;
    } else {
        while ((c = peek(p)) >= '0' && c <= '9') {
            if (v <= (long long)INT_MAX + 1)
                v = v * 10 + (c - '0');
            p->pos++;
        }
    }
    int is_int = 1;
    if (peek(p) == '.') {
        is_int = 0;
        p->pos++;
        if ((c = peek(p)) < '0' || c > '9')
            return -1;
        while ((c = peek(p)) >= '0' && c <= '9')
            p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        is_int = 0;
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-')
            p->pos++;
        if ((c = peek(p)) < '0' || c > '9')
            return -1;
        while ((c = peek(p)) >= '0' && c <= '9')
            p->pos++;
    }
    if (!val)
        return 0;
    if (!is_int)
        return -1;
    if (neg)
        v = -v;
    if (v < INT_MIN || v > INT_MAX)
        return -1;
    *val = (int)v;
    return 0;
}

static int match_literal(struct parser *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0)
        return -1;
    p->pos += n;
    return 0;
}

/* Validate and skip any JSON value (the value of an unknown key). */
// NOLINTNEXTLINE(misc-no-recursion): bounded, it fails past depth MAX_DEPTH (32)
static int skip_value(struct parser *p, int depth)
{
    if (depth > MAX_DEPTH)
        return -1;
    skip_ws(p);
    int c = peek(p);
    switch (c) {
    case '"':
        return parse_string(p, NULL, NULL);
    case 't':
        return match_literal(p, "true");
    case 'f':
        return match_literal(p, "false");
    case 'n':
        return match_literal(p, "null");
    case '{':
    case '[': {
        int obj = c == '{';
        char close = obj ? '}' : ']';
        p->pos++;
        skip_ws(p);
        if (peek(p) == (unsigned char)close) {
            p->pos++;
            return 0;
        }
        for (;;) {
            if (obj) {
                skip_ws(p);
                if (parse_string(p, NULL, NULL) < 0)
                    return -1;
                skip_ws(p);
                if (expect_char(p, ':') < 0)
                    return -1;
            }
            if (skip_value(p, depth + 1) < 0)
                return -1;
            skip_ws(p);
            if (peek(p) == ',') {
                p->pos++;
                continue;
            }
            return expect_char(p, close);
        }
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return parse_number(p, NULL);
        return -1;
    }
}

static int key_is(const char *key, size_t key_len, const char *name)
{
    return key_len == strlen(name) && memcmp(key, name, key_len) == 0;
}

void relay_reply_free(struct relay_reply *r)
{
    if (!r)
        return;
    free(r->log);
    free(r->level);
    *r = (struct relay_reply){0};
}

int relay_reply_parse(const char *buf, size_t len, struct relay_reply *out)
{
    struct parser p = {.s = (const unsigned char *)buf, .len = buf ? len : 0};
    struct relay_reply r = {0};
    int have_log = 0, have_level = 0, have_exit = 0, code = 0;

    *out = (struct relay_reply){0};
    skip_ws(&p);
    if (expect_char(&p, '{') < 0)
        goto bad;
    skip_ws(&p);
    if (peek(&p) == '}')
        goto bad; /* neither log nor exit */
    for (;;) {
        char *key = NULL;
        size_t key_len = 0;
        skip_ws(&p);
        if (parse_string(&p, &key, &key_len) < 0)
            goto bad;
        skip_ws(&p);
        if (expect_char(&p, ':') < 0) {
            free(key);
            goto bad;
        }
        skip_ws(&p);
        int rc;
        if (key_is(key, key_len, "log")) {
            rc = have_log ? -1 : parse_string(&p, &r.log, &r.log_len);
            have_log = 1;
        } else if (key_is(key, key_len, "level")) {
            size_t level_len;
            rc = have_level ? -1 : parse_string(&p, &r.level, &level_len);
            have_level = 1;
        } else if (key_is(key, key_len, "exit")) {
            rc = have_exit ? -1 : parse_number(&p, &code);
            have_exit = 1;
        } else {
            rc = skip_value(&p, 1);
        }
        free(key);
        if (rc < 0)
            goto bad;
        skip_ws(&p);
        if (peek(&p) == ',') {
            p.pos++;
            continue;
        }
        if (expect_char(&p, '}') < 0)
            goto bad;
        break;
    }
    skip_ws(&p);
    if (p.pos != p.len || have_log == have_exit)
        goto bad;
    if (have_exit) {
        free(r.level);
        r.level = NULL;
        r.kind = RELAY_REPLY_EXIT;
        r.exit_code = (code >= 0 && code <= 255) ? code : 255;
    } else {
        r.kind = RELAY_REPLY_LOG;
    }
    *out = r;
    return 0;
bad:
    relay_reply_free(&r);
    return p.oom ? -2 : -1;
}
