/* libFuzzer target for agent/client_wire.c and clients.c: any bytes as a postgresql_client
 * requirer's app databag (JSON text) go through client_wire_parse; a parsed request must hold
 * a database name within its bounds and alphabet, and a refusal must come with a message that
 * never repeats more than 40 bytes of the input. The same bytes as the peer relation's client
 * list (clients_parse): a list that parses must format and parse back to the same text, and
 * its pg_hba rules must pass pgconf_format_hba. Sanitizers catch memory errors and leaks. */
#include "client_wire.h"
#include "clients.h"
#include "pgconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void peer_list(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    static struct client_set set, again;
    char *err = NULL;
    if (clients_parse(text, &set, &err) == 0) {
        char *out = NULL, *out2 = NULL;
        if (err || clients_format(&set, &out) < 0 || clients_parse(out, &again, &err) < 0 ||
            clients_format(&again, &out2) < 0 || strcmp(out, out2) != 0)
            abort();
        static struct pg_hba_rule rules[2 * CLIENTS_MAX + 1];
        const char *logins[] = {"app_user", "relation-1", "pgbouncer_auth_relation_1"};
        size_t n = clients_hba_rules(&set, logins, 3, rules, sizeof rules / sizeof *rules);
        char *hba = NULL;
        if (pgconf_format_hba(rules, n, &hba, &err) < 0)
            abort();
        free(hba);
        free(out);
        free(out2);
    } else if (!err) {
        abort();
    }
    free(err);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    peer_list(data, size);
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
