/* libFuzzer target for agent/request.c: any bytes the relay socket could deliver go
 * through request_parse and request_free (sanitizers catch leaks and memory errors). */
#include "request.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hook_event ev;
    char *err = NULL;
    if (request_parse((const char *)data, size, &ev, &err) == 0) {
        /* Touch what a handler would use. */
        size_t n = 0;
        for (size_t i = 0; i < ev.n_env; i++)
            n += strlen(ev.envp[i]) + strlen(ev.env[i].name) + strlen(ev.env[i].value);
        if (ev.envp[ev.n_env] != NULL || !ev.unit || !ev.model || !ev.charm_dir || !ev.name)
            abort();
        if (ev.relation_id >= 0 && !ev.relation)
            abort();
        (void)n;
    } else if (!err || ev.env || ev.envp) {
        abort();
    }
    free(err);
    request_free(&ev);
    return 0;
}
