/* libFuzzer target for the relay's reply parser (hooks/relay_reply.c): arbitrary bytes as
 * one frame body; a parsed log message must survive an encode/parse round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "relay_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct relay_reply r;
    if (relay_reply_parse((const char *)data, size, &r) != 0)
        return 0;
    if (r.kind == RELAY_REPLY_EXIT) {
        if (r.exit_code < 0 || r.exit_code > 255 || r.log || r.level)
            abort();
    } else if (r.kind == RELAY_REPLY_LOG) {
        if (!r.log || r.log[r.log_len] != '\0' || r.log_len > size)
            abort();
        /* Re-encode with the writer's escaper and parse again: same bytes back. The
         * encoder takes C strings, so messages with \u0000 are skipped. */
        if (strlen(r.log) == r.log_len) {
            struct proto_buf b = {0};
            struct relay_reply again;
            if (proto_buf_append(&b, "{\"log\":", 7) < 0 ||
                proto_buf_append_json_string(&b, r.log) < 0 || proto_buf_append(&b, "}", 1) < 0)
                abort();
            if (relay_reply_parse(b.data, b.len, &again) != 0 || again.kind != RELAY_REPLY_LOG ||
                again.log_len != r.log_len || memcmp(again.log, r.log, r.log_len) != 0)
                abort();
            relay_reply_free(&again);
            proto_buf_free(&b);
        }
    } else {
        abort();
    }
    relay_reply_free(&r);
    return 0;
}
