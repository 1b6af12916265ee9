/* Timeline ancestry (timeline.h): LSN, history, pg_controldata and pg_waldump parsers, the
 * stream/rewind/re-clone decision, and the libpq and pg_controldata readers feeding it. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "timeline.h"

#include "errmsg.h"
#include "log.h"
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* ---- small lexing helpers ------------------------------------------------------------ */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 1 to 8 hex digits at p (before end) into *out; returns the digits consumed, 0 if none
 * or too many. */
static size_t scan_hex32(const char *p, const char *end, uint32_t *out)
{
    size_t n = 0;
    uint32_t v = 0;
    while (p + n < end && hexval(p[n]) >= 0) {
        if (n == 8)
            return 0;
        v = (v << 4) | (uint32_t)hexval(p[n]);
        n++;
    }
    *out = v;
    return n;
}

/* An LSN "X/Y" at p (before end); returns the characters consumed, 0 if there is none. */
static size_t scan_lsn(const char *p, const char *end, uint64_t *out)
{
    uint32_t hi = 0, lo = 0;
    size_t a = scan_hex32(p, end, &hi);
    if (a == 0 || p + a >= end || p[a] != '/')
        return 0;
    size_t b = scan_hex32(p + a + 1, end, &lo);
    if (b == 0)
        return 0;
    *out = ((uint64_t)hi << 32) | lo;
    return a + 1 + b;
}

/* Decimal digits at p (before end) into *out, at most max; returns the digits consumed,
 * 0 when there are none or the value exceeds max. */
static size_t scan_dec(const char *p, const char *end, uint64_t max, uint64_t *out)
{
    size_t n = 0;
    uint64_t v = 0;
    while (p + n < end && p[n] >= '0' && p[n] <= '9') {
        uint64_t d = (uint64_t)(p[n] - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
        n++;
    }
    *out = v;
    return n;
}

int tl_lsn_parse(const char *s, uint64_t *out)
{
    if (!s || !out)
        return -EINVAL;
    const char *end = s + strlen(s);
    uint64_t v = 0;
    size_t n = scan_lsn(s, end, &v);
    if (n == 0 || s + n != end)
        return -EINVAL;
    *out = v;
    return 0;
}

const char *tl_lsn_format(uint64_t lsn, char buf[TL_LSN_BUFSZ])
{
    snprintf(buf, TL_LSN_BUFSZ, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
    return buf;
}

/* A short, printable copy of an outside value for an error message. */
static void excerpt(const char *p, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < size; i++) {
        unsigned char c = (unsigned char)p[i];
        out[k++] = p[i];
        if (c < 0x20 || c == 0x7f)
            out[k - 1] = '?';
    }
    if (n > 0 && k < n && k + 4 <= size) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* ---- history files ----------------------------------------------------------------- */

static int history_line(const char *p, const char *end, size_t lineno, uint32_t tli,
                        struct tl_history *h, char **err)
{
    while (p < end && is_blank(*p))
        p++;
    if (p == end || *p == '#')
        return 0;
    for (const char *q = p; q < end; q++) {
        unsigned char c = (unsigned char)*q;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return errmsg_set(err, -EINVAL, "line %zu: control character 0x%02x", lineno, c);
    }
    uint64_t parent = 0;
    size_t n = scan_dec(p, end, UINT32_MAX, &parent);
    if (n == 0 || parent == 0)
        return errmsg_set(err, -EINVAL, "line %zu: expected a timeline ID from 1 to %" PRIu32,
                          lineno, UINT32_MAX);
    p += n;
    if (p == end || !is_blank(*p))
        return errmsg_set(err, -EINVAL, "line %zu: expected a blank after the timeline ID",
                          lineno);
    while (p < end && is_blank(*p))
        p++;
    uint64_t sw = 0;
    n = scan_lsn(p, end, &sw);
    if (n == 0)
        return errmsg_set(err, -EINVAL, "line %zu: expected a switch point LSN (X/Y)", lineno);
    p += n;
    if (p < end && !is_blank(*p))
        return errmsg_set(err, -EINVAL, "line %zu: garbage after the switch point LSN", lineno);
    if (h->n >= TL_HISTORY_MAX)
        return errmsg_set(err, -EINVAL, "line %zu: more than %d entries", lineno,
                          TL_HISTORY_MAX);
    if (h->n > 0 && parent <= h->tli[h->n - 1])
        return errmsg_set(err, -EINVAL,
                          "line %zu: timeline %" PRIu64 " does not increase (after %" PRIu32
                          ")",
                          lineno, parent, h->tli[h->n - 1]);
    if (h->n > 0 && sw < h->switchpoint[h->n - 1])
        return errmsg_set(err, -EINVAL, "line %zu: switch point goes backwards", lineno);
    if (tli != 0 && parent >= tli)
        return errmsg_set(err, -EINVAL,
                          "line %zu: parent timeline %" PRIu64
                          " is not below the history's timeline %" PRIu32,
                          lineno, parent, tli);
    h->tli[h->n] = (uint32_t)parent;
    h->switchpoint[h->n] = sw;
    h->n++;
    return 0;
}

int tl_history_parse(const char *text, size_t len, uint32_t tli, struct tl_history *out,
                     char **err)
{
    if (!out)
        return errmsg_set(err, -EINVAL, "tl_history_parse: no output");
    out->n = 0;
    if (!text && len > 0)
        return errmsg_set(err, -EINVAL, "tl_history_parse: no text");
    if (len > TL_HISTORY_TEXT_MAX)
        return errmsg_set(err, -EINVAL, "history is %zu bytes, more than %zu", len,
                          TL_HISTORY_TEXT_MAX);
    if (len > 0 && memchr(text, '\0', len)) {
        size_t at = (size_t)((const char *)memchr(text, '\0', len) - text), lineno = 1;
        for (size_t i = 0; i < at; i++)
            lineno += text[i] == '\n';
        return errmsg_set(err, -EINVAL, "line %zu: NUL byte", lineno);
    }
    const char *p = text ? text : "", *end = p + len;
    size_t lineno = 0;
    while (p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        int rc = history_line(p, eol, lineno, tli, out, err);
        if (rc < 0) {
            out->n = 0;
            return rc;
        }
        p = nl ? nl + 1 : end;
    }
    if (tli > 1 && out->n == 0)
        return errmsg_set(err, -EINVAL, "the history of timeline %" PRIu32 " has no entries",
                          tli);
    return 0;
}

/* ---- pg_controldata ------------------------------------------------------------------ */

static const struct {
    const char *text;
    enum tl_db_state state;
} db_states[] = {
    {"starting up", TL_DB_STARTING_UP},
    {"shut down", TL_DB_SHUT_DOWN},
    {"shut down in recovery", TL_DB_SHUT_DOWN_IN_RECOVERY},
    {"shutting down", TL_DB_SHUTTING_DOWN},
    {"in crash recovery", TL_DB_IN_CRASH_RECOVERY},
    {"in archive recovery", TL_DB_IN_ARCHIVE_RECOVERY},
    {"in production", TL_DB_IN_PRODUCTION},
};

const char *tl_db_state_name(enum tl_db_state state)
{
    for (size_t i = 0; i < sizeof db_states / sizeof db_states[0]; i++)
        if (db_states[i].state == state)
            return db_states[i].text;
    return "unknown";
}

enum cd_kind { CD_U64, CD_STATE, CD_LSN, CD_TLI, CD_TLI0, CD_BLOCK, CD_SEGMENT, CD_ALIGN,
               CD_CHECKSUM, CD_ONOFF };

enum cd_field {
    F_SYSID,
    F_STATE,
    F_CHECKPOINT,
    F_REDO,
    F_CHECKPOINT_TLI,
    F_MINREC,
    F_MINREC_TLI,
    F_BLOCK,
    F_SEGMENT,
    F_ALIGN,
    F_CHECKSUM,
    F_HINTS,
    F_COUNT
};

static const struct {
    const char *name;
    enum cd_kind kind;
} cd_fields[F_COUNT] = {
    [F_SYSID] = {"Database system identifier", CD_U64},
    [F_STATE] = {"Database cluster state", CD_STATE},
    [F_CHECKPOINT] = {"Latest checkpoint location", CD_LSN},
    [F_REDO] = {"Latest checkpoint's REDO location", CD_LSN},
    [F_CHECKPOINT_TLI] = {"Latest checkpoint's TimeLineID", CD_TLI},
    [F_MINREC] = {"Minimum recovery ending location", CD_LSN},
    [F_MINREC_TLI] = {"Min recovery ending loc's timeline", CD_TLI0},
    [F_BLOCK] = {"WAL block size", CD_BLOCK},
    [F_SEGMENT] = {"Bytes per WAL segment", CD_SEGMENT},
    [F_ALIGN] = {"Maximum data alignment", CD_ALIGN},
    [F_CHECKSUM] = {"Data page checksum version", CD_CHECKSUM},
    [F_HINTS] = {"wal_log_hints setting", CD_ONOFF},
};

static bool power_of_two(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

/* One value of a known field; false when it is not valid for its kind. */
static bool cd_value(enum cd_field f, const char *v, size_t n, struct tl_controldata *out)
{
    const char *end = v + n;
    uint64_t num = 0, lsn = 0;
    switch (cd_fields[f].kind) {
    case CD_STATE:
        for (size_t i = 0; i < sizeof db_states / sizeof db_states[0]; i++)
            if (strlen(db_states[i].text) == n && memcmp(db_states[i].text, v, n) == 0) {
                out->state = db_states[i].state;
                return true;
            }
        return false;
    case CD_LSN:
        if (scan_lsn(v, end, &lsn) != n)
            return false;
        if (f == F_CHECKPOINT)
            out->checkpoint = lsn;
        else if (f == F_REDO)
            out->redo = lsn;
        else
            out->min_recovery = lsn;
        return true;
    case CD_ONOFF:
        if (n == 2 && memcmp(v, "on", 2) == 0)
            out->wal_log_hints = true;
        else if (n == 3 && memcmp(v, "off", 3) == 0)
            out->wal_log_hints = false;
        else
            return false;
        return true;
    case CD_U64:
    case CD_TLI:
    case CD_TLI0:
    case CD_BLOCK:
    case CD_SEGMENT:
    case CD_ALIGN:
    case CD_CHECKSUM:
        break;
    }
    if (n == 0 || scan_dec(v, end, UINT64_MAX, &num) != n)
        return false;
    switch (cd_fields[f].kind) {
    case CD_U64:
        out->system_id = num;
        return num != 0;
    case CD_TLI:
        out->checkpoint_tli = (uint32_t)num;
        return num >= 1 && num <= UINT32_MAX;
    case CD_TLI0:
        out->min_recovery_tli = (uint32_t)num;
        return num <= UINT32_MAX;
    case CD_BLOCK:
        out->wal_block_size = (uint32_t)num;
        return power_of_two(num) && num >= 1024 && num <= 65536;
    case CD_SEGMENT:
        out->wal_segment_size = num;
        return power_of_two(num) && num >= 1048576 && num <= 1073741824;
    case CD_ALIGN:
        out->max_align = (uint32_t)num;
        return num == 4 || num == 8;
    case CD_CHECKSUM:
        out->data_checksums = num != 0;
        return num <= 255;
    case CD_STATE:
    case CD_LSN:
    case CD_ONOFF:
        break;
    }
    return false;
}

static int cd_line(const char *p, const char *end, size_t lineno, bool seen[F_COUNT],
                   struct tl_controldata *out, char **err)
{
    char shown[80];
    if (p == end)
        return 0;
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (!colon) {
        excerpt(p, (size_t)(end - p), shown, sizeof shown);
        return errmsg_set(err, -EINVAL, "line %zu: not a \"name: value\" line: \"%s\"", lineno,
                          shown);
    }
    size_t klen = (size_t)(colon - p);
    if ((klen == 7 && memcmp(p, "WARNING", 7) == 0) ||
        (klen >= 14 && memcmp(p, "pg_controldata", 14) == 0)) {
        excerpt(p, (size_t)(end - p), shown, sizeof shown);
        return errmsg_set(err, -EINVAL, "line %zu: pg_controldata says \"%s\"", lineno, shown);
    }
    const char *v = colon + 1, *vend = end;
    while (v < vend && is_blank(*v))
        v++;
    while (vend > v && is_blank(vend[-1]))
        vend--;
    for (int f = 0; f < F_COUNT; f++) {
        const char *name = cd_fields[f].name;
        if (strlen(name) != klen || memcmp(name, p, klen) != 0)
            continue;
        if (seen[f])
            return errmsg_set(err, -EINVAL, "line %zu: \"%s\" appears twice", lineno, name);
        seen[f] = true;
        if (!cd_value((enum cd_field)f, v, (size_t)(vend - v), out)) {
            excerpt(v, (size_t)(vend - v), shown, sizeof shown);
            return errmsg_set(err, -EINVAL, "line %zu: invalid \"%s\": \"%s\"", lineno, name,
                              shown);
        }
        return 0;
    }
    return 0; /* a field this module does not use */
}

int tl_controldata_parse(const char *text, size_t len, struct tl_controldata *out, char **err)
{
    if (!out)
        return errmsg_set(err, -EINVAL, "tl_controldata_parse: no output");
    *out = (struct tl_controldata){0};
    if (!text || len == 0)
        return errmsg_set(err, -EINVAL, "pg_controldata printed nothing");
    if (len > 65536)
        return errmsg_set(err, -EINVAL, "pg_controldata output is %zu bytes: too long", len);
    if (memchr(text, '\0', len))
        return errmsg_set(err, -EINVAL, "pg_controldata output contains a NUL byte");
    bool seen[F_COUNT] = {false};
    const char *p = text, *end = text + len;
    size_t lineno = 0;
    while (p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        int rc = cd_line(p, eol, lineno, seen, out, err);
        if (rc < 0) {
            *out = (struct tl_controldata){0};
            return rc;
        }
        p = nl ? nl + 1 : end;
    }
    for (int f = 0; f < F_COUNT; f++)
        if (!seen[f]) {
            *out = (struct tl_controldata){0};
            return errmsg_set(err, -EINVAL, "pg_controldata did not print \"%s\"",
                              cd_fields[f].name);
        }
    return 0;
}

/* ---- pg_waldump -------------------------------------------------------------------- */

/* Whether the text at p (before end) starts with s. */
static bool starts_with(const char *p, const char *end, const char *s)
{
    size_t k = strlen(s);
    return (size_t)(end - p) >= k && memcmp(p, s, k) == 0;
}

/* The text after `key` in line (before end), or NULL. */
static const char *after(const char *line, const char *end, const char *key)
{
    size_t k = strlen(key);
    for (const char *p = line; p + k <= end; p++)
        if (memcmp(p, key, k) == 0)
            return p + k;
    return NULL;
}

int tl_waldump_record_end(const char *output, uint64_t lsn, const struct tl_controldata *cd,
                          uint64_t *end_out, char **err)
{
    if (!output || !cd || !end_out)
        return errmsg_set(err, -EINVAL, "tl_waldump_record_end: missing argument");
    if (cd->wal_block_size == 0 || cd->wal_segment_size == 0 || cd->max_align == 0)
        return errmsg_set(err, -EINVAL, "WAL block, segment or alignment size unknown");
    size_t len = strlen(output);
    while (len > 0 && output[len - 1] == '\n')
        len--;
    const char *end = output + len;
    if (len == 0 || memchr(output, '\n', len))
        return errmsg_set(err, -EINVAL, "pg_waldump printed %s, not one record line",
                          len ? "several lines" : "nothing");
    if (!starts_with(output, end, "rmgr: "))
        return errmsg_set(err, -EINVAL, "pg_waldump printed no record");
    const char *p = output + 6;
    while (p < end && is_blank(*p))
        p++;
    if (!starts_with(p, end, "XLOG "))
        return errmsg_set(err, -EINVAL, "the record is not of resource manager XLOG");
    /* "len (rec/tot):    114/   114," */
    p = after(output, end, "len (rec/tot):");
    uint64_t rec = 0, tot = 0;
    size_t n = 0;
    if (p) {
        while (p < end && is_blank(*p))
            p++;
        n = scan_dec(p, end, UINT32_MAX, &rec);
    }
    if (!p || n == 0 || p + n >= end || p[n] != '/')
        return errmsg_set(err, -EINVAL, "no record length in pg_waldump's line");
    p += n + 1;
    while (p < end && is_blank(*p))
        p++;
    n = scan_dec(p, end, UINT32_MAX, &tot);
    if (n == 0 || p + n >= end || p[n] != ',' || tot < rec || tot < 24 || tot > 1073741824)
        return errmsg_set(err, -EINVAL, "invalid record length in pg_waldump's line");
    /* ", lsn: 0/03027AF0, prev" */
    p = after(output, end, ", lsn: ");
    uint64_t at = 0;
    n = p ? scan_lsn(p, end, &at) : 0;
    if (n == 0 || p + n >= end || p[n] != ',')
        return errmsg_set(err, -EINVAL, "no record LSN in pg_waldump's line");
    if (at != lsn) {
        char a[TL_LSN_BUFSZ], b[TL_LSN_BUFSZ];
        return errmsg_set(err, -EINVAL, "pg_waldump read the record at %s, not %s",
                          tl_lsn_format(at, a), tl_lsn_format(lsn, b));
    }
    p = after(output, end, ", desc: ");
    if (!p || !(starts_with(p, end, "CHECKPOINT_SHUTDOWN ") ||
                starts_with(p, end, "CHECKPOINT_ONLINE ")))
        return errmsg_set(err, -EINVAL, "the record at the checkpoint location is not a "
                                        "checkpoint record");
    /* Lay the record over the pages as the WAL reader does. */
    uint64_t blk = cd->wal_block_size, seg = cd->wal_segment_size, al = cd->max_align;
    uint64_t short_hdr = (20 + al - 1) / al * al, long_hdr = (36 + al - 1) / al * al;
    if (lsn % blk < short_hdr || lsn % al != 0)
        return errmsg_set(err, -EINVAL, "a record cannot start at that LSN");
    uint64_t pos = lsn, rem = tot;
    while (rem > 0) {
        if (pos % blk == 0)
            pos += (pos % seg == 0) ? long_hdr : short_hdr;
        uint64_t room = blk - pos % blk;
        uint64_t take = rem < room ? rem : room;
        if (pos > UINT64_MAX - take - al)
            return errmsg_set(err, -EINVAL, "record end past the end of the WAL space");
        pos += take;
        rem -= take;
    }
    *end_out = (pos + al - 1) / al * al;
    return 0;
}

/* ---- the decision ------------------------------------------------------------------ */

const char *tl_outcome_name(enum tl_outcome outcome)
{
    switch (outcome) {
    case TL_WAIT:
        return "wait";
    case TL_STREAM:
        return "stream";
    case TL_REWIND:
        return "rewind";
    case TL_RECLONE:
        return "reclone";
    }
    return "unknown";
}

static void decide(struct tl_decision *out, enum tl_outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void decide(struct tl_decision *out, enum tl_outcome outcome, const char *fmt, ...)
{
    out->outcome = outcome;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
    if (n <= 0)
        snprintf(out->reason, sizeof out->reason, "%s", tl_outcome_name(outcome));
}

/* Parents strictly increasing and below tli, switch points not decreasing and (when
 * max_lsn is not 0) not past max_lsn; a timeline above 1 has entries, timeline 1 none. */
static bool history_consistent(const struct tl_history *h, uint32_t tli, uint64_t max_lsn)
{
    if (h->n > TL_HISTORY_MAX || (tli > 1) != (h->n > 0))
        return false;
    for (size_t i = 0; i < h->n; i++) {
        if (h->tli[i] == 0 || h->tli[i] >= tli)
            return false;
        if (i > 0 && (h->tli[i] <= h->tli[i - 1] || h->switchpoint[i] < h->switchpoint[i - 1]))
            return false;
        if (max_lsn != 0 && h->switchpoint[i] > max_lsn)
            return false;
    }
    return true;
}

/* Where the history says timeline `tli` began: the parent and the switch point of the last
 * entry (false for timeline 1 or an empty history). */
static bool began(const struct tl_history *h, uint32_t *parent, uint64_t *at)
{
    if (h->n == 0)
        return false;
    *parent = h->tli[h->n - 1];
    *at = h->switchpoint[h->n - 1];
    return true;
}

/* First index where the first n entries of a and b differ, or n. */
static size_t first_difference(const struct tl_history *a, const struct tl_history *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a->tli[i] != b->tli[i] || a->switchpoint[i] != b->switchpoint[i])
            return i;
    return n;
}

static void same_timeline(const struct tl_local *l, const struct tl_leader *ld,
                          struct tl_decision *out)
{
    char a[TL_LSN_BUFSZ], b[TL_LSN_BUFSZ];
    uint32_t tli = l->timeline;
    if (tli > 1 && l->has_history && ld->has_history &&
        (l->history.n != ld->history.n ||
         first_difference(&l->history, &ld->history, l->history.n) != l->history.n)) {
        uint32_t lp = 0, rp = 0;
        uint64_t la = 0, ra = 0;
        began(&l->history, &lp, &la);
        began(&ld->history, &rp, &ra);
        char c[TL_LSN_BUFSZ], d[TL_LSN_BUFSZ];
        tl_lsn_format(la, a);
        tl_lsn_format(ra, b);
        tl_lsn_format(l->lsn, c);
        tl_lsn_format(ld->lsn, d);
        decide(out, TL_RECLONE,
               "this node and the leader are both on timeline %" PRIu32
               " but on different histories: here it began at %s from timeline %" PRIu32
               ", on the leader at %s from timeline %" PRIu32
               " (two promotions to the same timeline number); pg_rewind cannot repair that "
               "(it sees equal timeline IDs and rewinds nothing), so the node must be "
               "re-cloned",
               tli, a, lp, b, rp);
        return;
    }
    tl_lsn_format(l->lsn, a);
    tl_lsn_format(ld->lsn, b);
    if (l->was_primary && !l->clean_shutdown) {
        decide(out, TL_WAIT,
               "this former primary did not shut down cleanly (its WAL may extend past %s) and "
               "the leader is still on its timeline %" PRIu32
               " at %s: wait until the leader has promoted to a new timeline",
               a, tli, b);
        return;
    }
    bool fits = l->lsn_lower_bound ? l->lsn < ld->lsn : l->lsn <= ld->lsn;
    if (fits) {
        decide(out, TL_STREAM,
               "same timeline %" PRIu32 " as the leader and this node's WAL ends at %s%s, not "
               "past the leader's %s: it can stream",
               tli, l->lsn_lower_bound ? "or just after " : "", a, b);
        return;
    }
    decide(out, TL_WAIT,
           "same timeline %" PRIu32 " as the leader, but this node's WAL ends at %s%s, past the "
           "leader's %s: the leader has not got it (yet); wait until it has or has promoted "
           "to a new timeline",
           tli, l->lsn_lower_bound ? "or after " : "", a, b);
}

static void ancestor(const struct tl_local *l, const struct tl_leader *ld,
                     struct tl_decision *out)
{
    char a[TL_LSN_BUFSZ], b[TL_LSN_BUFSZ];
    uint32_t tli = l->timeline;
    const struct tl_history *h = &ld->history;
    if (!ld->has_history) {
        decide(out, TL_WAIT,
               "this node is on timeline %" PRIu32 ", the leader on %" PRIu32
               ", and the leader's timeline history is not known: cannot check ancestry",
               tli, ld->timeline);
        return;
    }
    size_t i = 0;
    while (i < h->n && h->tli[i] < tli)
        i++;
    if (i == h->n || h->tli[i] != tli) {
        decide(out, TL_REWIND,
               "this node's timeline %" PRIu32 " is not in the history of the leader's timeline "
               "%" PRIu32 ": it is a branch the leader never followed; rewind",
               tli, ld->timeline);
        return;
    }
    uint64_t sw = h->switchpoint[i];
    tl_lsn_format(sw, b);
    if (l->has_history && tli > 1) {
        size_t d = l->history.n != i ? 0 : first_difference(&l->history, h, i);
        if (l->history.n != i || d != i) {
            uint32_t lp = 0;
            uint64_t la = 0;
            began(&l->history, &lp, &la);
            char c[TL_LSN_BUFSZ];
            tl_lsn_format(la, a);
            tl_lsn_format(i > 0 ? h->switchpoint[i - 1] : 0, c);
            decide(out, TL_REWIND,
                   "this node's timeline %" PRIu32 " began at %s from timeline %" PRIu32
                   ", but in the leader's history timeline %" PRIu32
                   " began at %s from timeline %" PRIu32
                   ": same number, different history; rewind (pg_rewind compares both "
                   "histories)",
                   tli, a, lp, tli, c, i > 0 ? h->tli[i - 1] : 0);
            return;
        }
    }
    tl_lsn_format(l->lsn, a);
    if (!l->was_primary) {
        if (l->lsn > sw)
            decide(out, TL_REWIND,
                   "this replica's WAL on timeline %" PRIu32 " goes to %s, past %s where the "
                   "leader's timeline %" PRIu32 " left it: diverged; rewind",
                   tli, a, b, ld->timeline);
        else if (l->lsn_lower_bound)
            decide(out, TL_REWIND,
                   "this replica's WAL on timeline %" PRIu32 " goes at least to %s, and "
                   "whether it passes %s where the leader's timeline %" PRIu32
                   " left it is not known; rewind (pg_rewind reads the WAL and does nothing "
                   "if it did not diverge)",
                   tli, a, b, ld->timeline);
        else
            decide(out, TL_STREAM,
                   "this replica's timeline %" PRIu32 " is an ancestor of the leader's %" PRIu32
                   " and its WAL ends at %s, not past the switch point %s: it can stream",
                   tli, ld->timeline, a, b);
        return;
    }
    if (!l->clean_shutdown) {
        decide(out, TL_REWIND,
               "this former primary did not shut down cleanly on timeline %" PRIu32
               " (last checkpoint %s), which the leader's timeline %" PRIu32
               " left at %s; rewind (pg_rewind finishes crash recovery and finds the "
               "divergence)",
               tli, a, ld->timeline, b);
    } else if (l->lsn_lower_bound) {
        decide(out, TL_REWIND,
               "this former primary's shutdown checkpoint starts at %s on timeline %" PRIu32
               " and its end could not be read, so whether it ends at the switch point %s is "
               "not known; rewind (pg_rewind does nothing if it did not diverge)",
               a, tli, b);
    } else if (l->lsn == sw) {
        decide(out, TL_STREAM,
               "this former primary's shutdown checkpoint ends at %s, exactly where the "
               "leader's timeline %" PRIu32 " left timeline %" PRIu32
               " (a clean switchover): it can stream without a rewind",
               a, ld->timeline, tli);
    } else if (l->lsn > sw) {
        decide(out, TL_REWIND,
               "this former primary's WAL on timeline %" PRIu32 " ends at %s, past %s where "
               "the leader's timeline %" PRIu32 " left it: diverged; rewind",
               tli, a, b, ld->timeline);
    } else {
        decide(out, TL_REWIND,
               "this former primary's WAL on timeline %" PRIu32 " ends at %s, before %s where "
               "the leader's timeline %" PRIu32 " left it: the leader has WAL on this node's "
               "timeline that this node did not write; rewind",
               tli, a, b, ld->timeline);
    }
}

void tl_decide(const struct tl_local *local, const struct tl_leader *leader,
               struct tl_decision *out)
{
    const struct tl_local *l = local;
    const struct tl_leader *ld = leader;
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!l || !ld) {
        decide(out, TL_WAIT, "no local or leader state to compare");
        return;
    }
    if (ld->system_id == 0 || ld->timeline == 0) {
        decide(out, TL_WAIT, "the leader's system identifier or timeline is not known");
        return;
    }
    if (l->system_id == 0 || l->timeline == 0) {
        decide(out, TL_WAIT, "this node's system identifier or timeline is not known");
        return;
    }
    if (l->system_id != ld->system_id) {
        decide(out, TL_RECLONE,
               "this node's data belongs to another cluster (system identifier %" PRIu64
               ", the leader's %" PRIu64 "): it cannot follow or be rewound; re-clone",
               l->system_id, ld->system_id);
        return;
    }
    if (ld->has_history && !history_consistent(&ld->history, ld->timeline, ld->lsn)) {
        decide(out, TL_WAIT,
               "the leader's timeline history does not fit its timeline %" PRIu32
               " and position; not deciding on it",
               ld->timeline);
        return;
    }
    if (l->has_history && !history_consistent(&l->history, l->timeline, 0)) {
        decide(out, TL_WAIT,
               "this node's timeline history does not fit its timeline %" PRIu32
               "; not deciding on it",
               l->timeline);
        return;
    }
    if (l->timeline > ld->timeline) {
        char a[TL_LSN_BUFSZ], b[TL_LSN_BUFSZ];
        decide(out, TL_REWIND,
               "this node is on timeline %" PRIu32 " (WAL to %s), ahead of the leader's "
               "timeline %" PRIu32 " (at %s): it has history the leader does not; rewind",
               l->timeline, tl_lsn_format(l->lsn, a), ld->timeline, tl_lsn_format(ld->lsn, b));
        return;
    }
    if (l->timeline == ld->timeline)
        same_timeline(l, ld, out);
    else
        ancestor(l, ld, out);
}

void tl_local_from_controldata(const struct tl_controldata *cd, uint64_t checkpoint_end,
                               struct tl_local *out)
{
    if (!cd || !out)
        return;
    out->system_id = cd->system_id;
    out->timeline = cd->checkpoint_tli;
    /* checkpoint_end only counts when it is after the checkpoint's start */
    bool end_known = checkpoint_end > cd->checkpoint;
    uint64_t ckpt = end_known ? checkpoint_end : cd->checkpoint;
    bool in_recovery = cd->state == TL_DB_SHUT_DOWN_IN_RECOVERY ||
                       cd->state == TL_DB_IN_ARCHIVE_RECOVERY;
    if (in_recovery && cd->min_recovery != 0 && cd->min_recovery_tli != 0) {
        out->was_primary = false;
        out->clean_shutdown = cd->state == TL_DB_SHUT_DOWN_IN_RECOVERY;
        if (cd->min_recovery_tli > out->timeline)
            out->timeline = cd->min_recovery_tli;
        out->lsn = cd->min_recovery > ckpt ? cd->min_recovery : ckpt;
        out->lsn_lower_bound = !end_known && cd->min_recovery <= cd->checkpoint;
        return;
    }
    out->was_primary = true;
    out->clean_shutdown = cd->state == TL_DB_SHUT_DOWN || cd->state == TL_DB_SHUT_DOWN_IN_RECOVERY;
    out->lsn = ckpt;
    out->lsn_lower_bound = !out->clean_shutdown || !end_known;
}

/* ---- reading files ------------------------------------------------------------------ */

int tl_history_read_file(const char *data_dir, uint32_t tli, struct tl_history *out,
                         bool *found, char **err)
{
    if (!data_dir || !out || !found || tli == 0)
        return errmsg_set(err, -EINVAL, "tl_history_read_file: invalid argument");
    out->n = 0;
    *found = false;
    char path[PATH_MAX];
    int w = snprintf(path, sizeof path, "%s/pg_wal/%08" PRIX32 ".history", data_dir, tli);
    if (w < 0 || (size_t)w >= sizeof path)
        return errmsg_set(err, -ENAMETOOLONG, "data directory path too long");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return errmsg_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return errmsg_set(err, -EINVAL, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > TL_HISTORY_TEXT_MAX) {
        close(fd);
        return errmsg_set(err, -EFBIG, "%s: %lld bytes, more than %zu", path,
                          (long long)st.st_size, TL_HISTORY_TEXT_MAX);
    }
    char *buf = malloc(TL_HISTORY_TEXT_MAX + 1);
    if (!buf) {
        close(fd);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, TL_HISTORY_TEXT_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return errmsg_set(err, -e, "%s: %s", path, strerror(e));
        }
        if (r == 0 || len + (size_t)r > TL_HISTORY_TEXT_MAX) {
            len += (size_t)r;
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    char *perr = NULL;
    int rc = tl_history_parse(buf, len, tli, out, &perr);
    free(buf);
    if (rc < 0) {
        errmsg_format(err, "%s: %s", path, ERRMSG(perr));
        free(perr);
        return rc;
    }
    *found = true;
    return 0;
}

/* ---- running pg_controldata and pg_waldump ------------------------------------------ */

#define TOOL_TIMEOUT_MS 30000

static char *const tool_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "LANG=C",
                                 NULL};

static bool plain_path(const char *s)
{
    if (!s || s[0] != '/' || strlen(s) >= PATH_MAX - 64)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

static int run_tool(const char *const argv[], const struct proc_opts *o, char **output,
                    char **err)
{
    char *perr = NULL;
    int rc = proc_run(argv, o, output, &perr);
    if (rc < 0) {
        errmsg_format(err, "%s", ERRMSG(perr));
        free(perr);
        free(*output);
        *output = NULL;
        return rc;
    }
    if (!*output)
        return errmsg_set(err, -ENOMEM, "out of memory");
    if (strlen(*output) >= PROC_OUTPUT_TAIL) {
        free(*output);
        *output = NULL;
        return errmsg_set(err, -E2BIG, "%s printed more than %d bytes", argv[0],
                          PROC_OUTPUT_TAIL - 1);
    }
    return 0;
}

int tl_local_read(const char *pg_bindir, const char *data_dir, struct tl_local *out, char **err)
{
    if (!out)
        return errmsg_set(err, -EINVAL, "tl_local_read: no output");
    memset(out, 0, sizeof *out);
    if (!plain_path(pg_bindir) || !plain_path(data_dir))
        return errmsg_set(err, -EINVAL, "the binary and data directories must be absolute "
                                        "paths without control characters");
    struct proc_opts o = {.timeout_ms = TOOL_TIMEOUT_MS, .env = tool_env};
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw)
            return errmsg_set(err, -ENOENT, "the OS user postgres does not exist");
        o.as_user = true;
        o.uid = pw->pw_uid;
        o.gid = pw->pw_gid;
    }
    char controldata[PATH_MAX], waldump[PATH_MAX], waldir[PATH_MAX];
    snprintf(controldata, sizeof controldata, "%s/pg_controldata", pg_bindir);
    snprintf(waldump, sizeof waldump, "%s/pg_waldump", pg_bindir);
    snprintf(waldir, sizeof waldir, "%s/pg_wal", data_dir);

    const char *cd_argv[] = {controldata, "-D", data_dir, NULL};
    char *text = NULL;
    int rc = run_tool(cd_argv, &o, &text, err);
    if (rc < 0)
        return rc;
    struct tl_controldata cd;
    char *perr = NULL;
    rc = tl_controldata_parse(text, strlen(text), &cd, &perr);
    free(text);
    if (rc < 0) {
        errmsg_format(err, "%s: %s", data_dir, ERRMSG(perr));
        free(perr);
        return rc;
    }

    /* The end of the latest checkpoint record, where it decides the end of WAL. */
    bool in_recovery = cd.state == TL_DB_SHUT_DOWN_IN_RECOVERY ||
                       cd.state == TL_DB_IN_ARCHIVE_RECOVERY;
    bool need_end = cd.state == TL_DB_SHUT_DOWN ||
                    (in_recovery && (cd.min_recovery == 0 || cd.min_recovery <= cd.checkpoint));
    uint64_t ckpt_end = 0;
    if (need_end) {
        char lsn[TL_LSN_BUFSZ], tli[16];
        tl_lsn_format(cd.checkpoint, lsn);
        snprintf(tli, sizeof tli, "%" PRIu32, cd.checkpoint_tli);
        const char *wd_argv[] = {waldump, "-p", waldir, "-t", tli, "-s", lsn, "-n", "1", NULL};
        rc = run_tool(wd_argv, &o, &text, &perr);
        if (rc == 0) {
            rc = tl_waldump_record_end(text, cd.checkpoint, &cd, &ckpt_end, &perr);
            free(text);
        }
        if (rc < 0) {
            log_warning("cannot read the end of the checkpoint record at %s in %s: %s", lsn,
                        data_dir, ERRMSG(perr));
            ckpt_end = 0;
        }
        free(perr);
        perr = NULL;
    }
    tl_local_from_controldata(&cd, ckpt_end, out);

    if (out->timeline > 1) {
        bool found = false;
        rc = tl_history_read_file(data_dir, out->timeline, &out->history, &found, err);
        if (rc < 0)
            return rc;
        out->has_history = found;
        if (!found)
            log_debug("%s has no history file for its timeline %" PRIu32, data_dir,
                      out->timeline);
    }
    char a[TL_LSN_BUFSZ];
    log_debug("%s: %s, system %" PRIu64 ", timeline %" PRIu32 ", WAL to %s%s", data_dir,
              tl_db_state_name(cd.state), out->system_id, out->timeline,
              tl_lsn_format(out->lsn, a), out->lsn_lower_bound ? " or beyond" : "");
    return 0;
}

/* ---- the leader over a replication connection --------------------------------------- */

#define QUERY_TIMEOUT_MS 15000
#define TEXTOID 25
#define INT4OID 23
#define INT8OID 20
#define BYTEAOID 17

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libpq's message, lines joined with "; ", trailing newlines dropped, into out. */
static void pq_message(const char *msg, char *out, size_t size)
{
    size_t k = 0;
    for (const char *p = msg ? msg : ""; *p && k + 3 < size; p++) {
        if (*p == '\n') {
            if (p[1] != '\0' && k > 0) {
                out[k++] = ';';
                out[k++] = ' ';
            }
        } else {
            out[k++] = *p;
            if ((unsigned char)*p < 0x20)
                out[k - 1] = ' ';
        }
    }
    out[k] = '\0';
}

/* "host:port" of a conninfo for messages: never any other option. */
static void conninfo_where(const char *conninfo, char *out, size_t size)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (perr)
        PQfreemem(perr);
    const char *host = NULL, *hostaddr = NULL, *port = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    if (!host)
        host = hostaddr;
    snprintf(out, size, "%.200s:%.20s", host ? host : "(default host)",
             port ? port : "(default port)");
    if (opts)
        PQconninfoFree(opts);
}

static bool has_option(const char *conninfo, const char *key)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (perr)
        PQfreemem(perr);
    bool found = false;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0 && o->val && *o->val)
            found = true;
    if (opts)
        PQconninfoFree(opts);
    return found;
}

/* Run one replication command with a deadline; the single result in *out. */
static int run_command(PGconn *conn, const char *cmd, const char *where, PGresult **out,
                       char **err)
{
    *out = NULL;
    char msg[512];
    if (PQsetnonblocking(conn, 1) != 0 || !PQsendQuery(conn, cmd)) {
        pq_message(PQerrorMessage(conn), msg, sizeof msg);
        return errmsg_set(err, -EIO, "%s: %s failed: %s", where, cmd, msg);
    }
    long long deadline = now_ms() + QUERY_TIMEOUT_MS;
    PGresult *first = NULL;
    for (;;) {
        int f = PQflush(conn);
        if (f < 0)
            break;
        if (f == 0 && !PQisBusy(conn)) {
            PGresult *r = PQgetResult(conn);
            if (!r)
                break;
            if (!first)
                first = r;
            else
                PQclear(r);
            continue;
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            PQclear(first);
            return errmsg_set(err, -ETIMEDOUT, "%s: %s got no answer within %d s", where, cmd,
                              QUERY_TIMEOUT_MS / 1000);
        }
        proc_keepalive();
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN | (f == 1 ? POLLOUT : 0)};
        int pr = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
        if (pr < 0 && errno != EINTR) {
            int e = errno;
            PQclear(first);
            return errmsg_set(err, -e, "%s: poll: %s", where, strerror(e));
        }
        if (pr > 0 && !PQconsumeInput(conn))
            break;
    }
    if (!first || PQresultStatus(first) != PGRES_TUPLES_OK) {
        pq_message(first ? PQresultErrorMessage(first) : PQerrorMessage(conn), msg, sizeof msg);
        PQclear(first);
        return errmsg_set(err, -EIO, "%s: %s failed: %s", where, cmd,
                          *msg ? msg : "no result");
    }
    *out = first;
    return 0;
}

/* The result has one row of exactly these columns (names and types). */
static int check_shape(const PGresult *r, const char *cmd, const char *where,
                       const char *const names[], const unsigned types[][2], int ncols,
                       char **err)
{
    if (PQntuples(r) != 1 || PQnfields(r) != ncols)
        return errmsg_set(err, -EPROTO, "%s: %s returned %d rows of %d columns, expected 1 of %d",
                          where, cmd, PQntuples(r), PQnfields(r), ncols);
    for (int i = 0; i < ncols; i++) {
        const char *name = PQfname(r, i);
        unsigned t = (unsigned)PQftype(r, i);
        if (!name || strcmp(name, names[i]) != 0 || PQfformat(r, i) != 0 ||
            (t != types[i][0] && t != types[i][1]))
            return errmsg_set(err, -EPROTO, "%s: %s column %d is not the expected %s", where,
                              cmd, i + 1, names[i]);
    }
    return 0;
}

static int parse_identify(const PGresult *r, const char *where, struct tl_leader *out,
                          char **err)
{
    static const char *const names[] = {"systemid", "timeline", "xlogpos", "dbname"};
    static const unsigned types[][2] = {
        {TEXTOID, TEXTOID}, {INT4OID, INT8OID}, {TEXTOID, TEXTOID}, {TEXTOID, TEXTOID}};
    int rc = check_shape(r, "IDENTIFY_SYSTEM", where, names, types, 4, err);
    if (rc < 0)
        return rc;
    for (int i = 0; i < 3; i++)
        if (PQgetisnull(r, 0, i))
            return errmsg_set(err, -EPROTO, "%s: IDENTIFY_SYSTEM returned a NULL %s", where,
                              names[i]);
    const char *sys = PQgetvalue(r, 0, 0), *tli = PQgetvalue(r, 0, 1), *pos = PQgetvalue(r, 0, 2);
    uint64_t v = 0;
    size_t n = strlen(sys);
    if (n == 0 || scan_dec(sys, sys + n, UINT64_MAX, &v) != n || v == 0)
        return errmsg_set(err, -EPROTO, "%s: IDENTIFY_SYSTEM returned an invalid systemid",
                          where);
    out->system_id = v;
    n = strlen(tli);
    if (n == 0 || scan_dec(tli, tli + n, UINT32_MAX, &v) != n || v == 0)
        return errmsg_set(err, -EPROTO, "%s: IDENTIFY_SYSTEM returned an invalid timeline",
                          where);
    out->timeline = (uint32_t)v;
    if (tl_lsn_parse(pos, &out->lsn) < 0)
        return errmsg_set(err, -EPROTO, "%s: IDENTIFY_SYSTEM returned an invalid xlogpos",
                          where);
    return 0;
}

static int parse_history_result(const PGresult *r, const char *where, uint32_t tli,
                                 struct tl_history *out, char **err)
{
    static const char *const names[] = {"filename", "content"};
    static const unsigned types[][2] = {{TEXTOID, TEXTOID}, {TEXTOID, BYTEAOID}};
    int rc = check_shape(r, "TIMELINE_HISTORY", where, names, types, 2, err);
    if (rc < 0)
        return rc;
    if (PQgetisnull(r, 0, 0) || PQgetisnull(r, 0, 1))
        return errmsg_set(err, -EPROTO, "%s: TIMELINE_HISTORY returned NULL", where);
    char want[32];
    snprintf(want, sizeof want, "%08" PRIX32 ".history", tli);
    if (strcmp(PQgetvalue(r, 0, 0), want) != 0)
        return errmsg_set(err, -EPROTO, "%s: TIMELINE_HISTORY %" PRIu32
                                        " returned another file than %s",
                          where, tli, want);
    const char *content = PQgetvalue(r, 0, 1);
    size_t len = (size_t)PQgetlength(r, 0, 1);
    unsigned char *bytes = NULL;
    if ((unsigned)PQftype(r, 1) == BYTEAOID) {
        bytes = PQunescapeBytea((const unsigned char *)content, &len);
        if (!bytes)
            return errmsg_set(err, -EPROTO, "%s: TIMELINE_HISTORY content is not bytea", where);
        content = (const char *)bytes;
    }
    char *perr = NULL;
    rc = tl_history_parse(content, len, tli, out, &perr);
    if (bytes)
        PQfreemem(bytes);
    if (rc < 0) {
        errmsg_format(err, "%s: the history of timeline %" PRIu32 ": %s", where, tli,
                      ERRMSG(perr));
        free(perr);
    }
    return rc;
}

int tl_identify(const char *conninfo, struct tl_leader *out, char **err)
{
    if (!out)
        return errmsg_set(err, -EINVAL, "tl_identify: no output");
    memset(out, 0, sizeof *out);
    if (!conninfo)
        return errmsg_set(err, -EINVAL, "no connection string");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (perr)
        PQfreemem(perr); /* it may quote part of the string: not repeated */
    if (!opts)
        return errmsg_set(err, -EINVAL, "the leader's connection string is not valid");
    PQconninfoFree(opts);
    char where[240];
    conninfo_where(conninfo, where, sizeof where);

    /* Later keywords override the expanded conninfo; connect_timeout only fills a gap. */
    bool timeout = has_option(conninfo, "connect_timeout");
    const char *keys[] = {"connect_timeout", "dbname", "replication",
                          "fallback_application_name", NULL};
    const char *vals[] = {"10", conninfo, "true", "pg-agent", NULL};
    PGconn *conn = PQconnectdbParams(timeout ? keys + 1 : keys, timeout ? vals + 1 : vals, 1);
    if (!conn)
        return errmsg_set(err, -ENOMEM, "out of memory");
    char msg[512];
    if (PQstatus(conn) != CONNECTION_OK) {
        pq_message(PQerrorMessage(conn), msg, sizeof msg);
        PQfinish(conn);
        return errmsg_set(err, -ECONNREFUSED, "cannot connect to the leader at %s: %s", where,
                          msg);
    }
    PGresult *r = NULL;
    int rc = run_command(conn, "IDENTIFY_SYSTEM", where, &r, err);
    if (rc == 0) {
        rc = parse_identify(r, where, out, err);
        PQclear(r);
    }
    if (rc == 0 && out->timeline > 1) {
        char cmd[40];
        snprintf(cmd, sizeof cmd, "TIMELINE_HISTORY %" PRIu32, out->timeline);
        rc = run_command(conn, cmd, where, &r, err);
        if (rc == 0) {
            rc = parse_history_result(r, where, out->timeline, &out->history, err);
            PQclear(r);
        }
    }
    PQfinish(conn);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->has_history = true;
    char a[TL_LSN_BUFSZ];
    log_debug("leader at %s: system %" PRIu64 ", timeline %" PRIu32 " at %s, %zu history "
              "entries",
              where, out->system_id, out->timeline, tl_lsn_format(out->lsn, a),
              out->history.n);
    return 0;
}
