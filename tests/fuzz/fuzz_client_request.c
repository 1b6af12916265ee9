/* libFuzzer target for agent/client_wire.c: any bytes as a postgresql_client requirer's app
 * databag (JSON text) go through client_wire_parse; a parsed request must hold a database
 * name within its bounds and alphabet, and a refusal must come with a message that never
 * repeats more than 40 bytes of the input. Sanitizers catch memory errors and leaks. */
#include "client_wire.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *bag = json_loadb((const char *)data, size, 0, NULL);
    if (!bag)
        return 0;
    struct client_request r;
    char *why = NULL;
    int rc = client_wire_parse(bag, &r, &why);
    if (rc == 0) {
        size_t n = strlen(r.database);
        if (why || n > CLIENT_DB_MAX || (r.have_database != (n > 0)))
            abort();
        for (size_t i = 0; i < n; i++) {
            char c = r.database[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (i > 0 && ((c >= '0' && c <= '9') || c == '-'))))
                abort();
        }
    } else if (!why || strlen(why) > 400) {
        abort();
    }
    free(why);
    json_decref(bag);
    return 0;
}
