/* Unit tests for agent/client_wire.c: the requirer's postgresql_client request, including
 * the hostile values the acceptance lists. */
#include "check.h"

#include "client_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parse a databag given as JSON text; returns the rc, *why freed unless kept. */
static int parse(const char *json, struct client_request *r, char **why)
{
    json_t *bag = json_loads(json, 0, NULL);
    *why = NULL;
    int rc = client_wire_parse(bag, r, why);
    json_decref(bag);
    return rc;
}

static bool refused(const char *json, const char *says)
{
    struct client_request r;
    char *why = NULL;
    bool ok = parse(json, &r, &why) == -EINVAL && why && strstr(why, says) && !r.have_database;
    free(why);
    return ok;
}

TEST(plain_requests)
{
    struct client_request r;
    char *why = NULL;
    CHECK(parse("{}", &r, &why) == 0 && !r.have_database && !why);
    CHECK(parse("{\"database\":\"myapp\"}", &r, &why) == 0);
    CHECK(r.have_database && !r.prefix && !r.secrets_requested && r.roles == 0);
    CHECK_STR(r.database, "myapp");
    CHECK(parse("{\"database\":\"app*\",\"extra-user-roles\":\"CREATEDB, charmed_read\","
                "\"requested-secrets\":\"[\\\"username\\\",\\\"password\\\",\\\"tls-ca\\\","
                "\\\"mtls-cert\\\"]\"}",
                &r, &why) == 0);
    CHECK(r.prefix);
    CHECK_STR(r.database, "app");
    CHECK(r.roles == (CLIENT_ROLE_CREATEDB | CLIENT_ROLE_CHARMED_READ));
    CHECK(r.secrets_requested);
    CHECK(r.secrets == (CLIENT_SECRET_USERNAME | CLIENT_SECRET_PASSWORD | CLIENT_SECRET_TLS_CA));
    char name[64];
    memset(name, 'a', 63);
    name[63] = '\0';
    char json[128];
    snprintf(json, sizeof json, "{\"database\":\"%s\"}", name);
    CHECK(parse(json, &r, &why) == 0 && strlen(r.database) == 63);
}

TEST(hostile_requests)
{
    CHECK(refused("{\"database\":\"x\\\"; DROP TABLE y; --\"}", "not a plain name"));
    CHECK(refused("{\"database\":\"template0\"}", "reserved"));
    CHECK(refused("{\"database\":\"postgres\"}", "reserved"));
    CHECK(refused("{\"database\":\"\"}", "empty"));
    CHECK(refused("{\"database\":\"ab*\"}", "too short"));
    CHECK(refused("{\"database\":\"1abc\"}", "not a plain name"));
    CHECK(refused("{\"database\":\"caf\\u00e9\"}", "not a plain name"));
    CHECK(refused("{\"database\":42}", "not a string"));
    char json[400];
    char name[301];
    memset(name, 'b', 300);
    name[300] = '\0';
    snprintf(json, sizeof json, "{\"database\":\"%s\"}", name);
    CHECK(refused(json, "longer than 63"));
    CHECK(refused("{\"database\":\"ok\",\"extra-user-roles\":\"superuser; DROP ROLE x\"}",
                  "extra user roles"));
    CHECK(refused("{\"database\":\"ok\",\"extra-user-roles\":\"pg_read_server_files\"}",
                  "extra user roles"));
    CHECK(refused("{\"database\":\"ok\",\"requested-secrets\":\"not json\"}", "JSON list"));
    CHECK(refused("{\"database\":\"ok\",\"requested-secrets\":\"[1]\"}", "not a string"));
    CHECK(refused("[]", "not an object"));
    /* the message never repeats a hostile value */
    struct client_request r;
    char *why = NULL;
    CHECK(parse("{\"database\":\"x\\\"; DROP TABLE y; --\"}", &r, &why) < 0);
    CHECK(why && !strstr(why, "DROP"));
    free(why);
}

int main(void)
{
    static const struct check_case cases[] = {
        {"plain_requests", plain_requests},
        {"hostile_requests", hostile_requests},
    };
    return check_run("client_wire", cases, sizeof cases / sizeof cases[0]);
}
