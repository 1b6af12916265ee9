/* Parser for the agent's reply frames as the relay sees them (proto.h): a log line
 * {"log":"...","level":"..."} or the final {"exit":N}; strict JSON, libc only. */
#ifndef PG_RELAY_REPLY_H
#define PG_RELAY_REPLY_H

#include <stddef.h>

enum relay_reply_kind {
    RELAY_REPLY_LOG = 1,
    RELAY_REPLY_EXIT = 2,
};

/* One parsed reply. log and level are malloc'd, NUL-terminated and owned by the
 * struct (free with relay_reply_free); log may contain NUL bytes (\u0000), so use
 * log_len. level is NULL when the frame has none. exit_code is the agent's code
 * mapped to 0..255 (out-of-range values become 255, never 0). */
struct relay_reply {
    enum relay_reply_kind kind;
    char *log;
    size_t log_len;
    char *level;
    int exit_code;
};

/* Parse one frame body (buf, len; need not be NUL-terminated). The frame must be a
 * single JSON object with either a string "log" (and optionally a string "level") or
 * an integer "exit", not both; other keys are skipped; duplicate known keys, trailing
 * bytes, invalid escapes, lone surrogates, raw control characters in strings and
 * integers beyond int range are rejected. Returns 0, or -1 for a malformed frame,
 * -2 when out of memory; on error *out holds nothing to free. */
int relay_reply_parse(const char *buf, size_t len, struct relay_reply *out);

void relay_reply_free(struct relay_reply *r);

#endif
