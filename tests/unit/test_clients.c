/* Unit tests for agent/clients.c's pure parts: the peer list of client users (parse,
 * canonical text, digest) and the pg_hba rules it gives, checked by pgconf's renderer. */
#include "check.h"

#include "clients.h"
#include "pgconf.h"
#include "settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "secret://0f5a1d3e-2b8c-4c3a-9d61-111111111111/cjqub6vubg2s77p3nio0"

TEST(list_round_trip)
{
    struct client_set set;
    char *err = NULL;
    const char *text = "{\"7\":{\"database\":\"app\",\"prefix\":true,\"roles\":0,\"secret\":\""
                       SECRET "\"},\"12\":{\"database\":\"pgbouncer\",\"prefix\":false,"
                       "\"roles\":1,\"secret\":\"" SECRET "\"}}";
    CHECK(clients_parse(text, &set, &err) == 0);
    CHECK(set.n == 2);
    CHECK(set.e[0].id == 7 && set.e[1].id == 12); /* ordered by id */
    CHECK_STR(set.e[0].user, "relation-7");
    CHECK_STR(set.e[1].auth_user, "pgbouncer_auth_relation_12");
    CHECK_STR(set.e[0].database, "app");
    CHECK(set.e[0].prefix && !set.e[1].prefix);
    CHECK(set.e[1].roles == CLIENT_ROLE_SUPERUSER);
    char *out = NULL;
    CHECK(clients_format(&set, &out) == 0);
    struct client_set again;
    CHECK(clients_parse(out, &again, &err) == 0 && again.n == 2);
    char *out2 = NULL;
    CHECK(clients_format(&again, &out2) == 0);
    CHECK_STR(out, out2); /* canonical: same set, same text */
    char d1[PEERS_DIGEST_MAX], d2[PEERS_DIGEST_MAX];
    clients_digest(out, d1);
    clients_digest(out2, d2);
    CHECK_STR(d1, d2);
    CHECK(peers_digest_valid(d1));
    clients_digest("{}", d2);
    CHECK(strcmp(d1, d2) != 0);
    free(out);
    free(out2);
    CHECK(clients_parse("{}", &set, &err) == 0 && set.n == 0);
}

TEST(list_refuses_bad_entries)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"x\":{\"database\":\"a\",\"prefix\":false,\"roles\":0,\"secret\":\"" SECRET "\"}}",
        "{\"-1\":{\"database\":\"a\",\"prefix\":false,\"roles\":0,\"secret\":\"" SECRET "\"}}",
        "{\"1\":{\"database\":\"a b\",\"prefix\":false,\"roles\":0,\"secret\":\"" SECRET "\"}}",
        "{\"1\":{\"database\":\"postgres\",\"prefix\":false,\"roles\":0,\"secret\":\"" SECRET
        "\"}}",
        "{\"1\":{\"database\":\"all\",\"prefix\":false,\"roles\":0,\"secret\":\"" SECRET "\"}}",
        "{\"1\":{\"database\":\"ab\",\"prefix\":true,\"roles\":0,\"secret\":\"" SECRET "\"}}",
        "{\"1\":{\"database\":\"a\",\"prefix\":false,\"roles\":1024,\"secret\":\"" SECRET "\"}}",
        "{\"1\":{\"database\":\"a\",\"prefix\":false,\"roles\":-1,\"secret\":\"" SECRET "\"}}",
        "{\"1\":{\"database\":\"a\",\"prefix\":\"no\",\"roles\":0,\"secret\":\"" SECRET "\"}}",
        "{\"1\":{\"database\":\"a\",\"prefix\":false,\"roles\":0,\"secret\":\"http://x\"}}",
        "{\"1\":{\"database\":\"a\",\"prefix\":false,\"roles\":0}}",
        "{\"1\":{\"database\":\"a\",\"prefix\":false,\"roles\":0,\"secret\":\"" SECRET "\"},"
        "\"01\":{\"database\":\"b\",\"prefix\":false,\"roles\":0,\"secret\":\"" SECRET "\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct client_set set;
        char *err = NULL;
        CHECK(clients_parse(bad[i], &set, &err) == -EINVAL);
        CHECK(err != NULL && set.n == 0);
        free(err);
    }
}

TEST(role_names_for_pg_hba)
{
    CHECK(clients_role_plain("pgbouncer_stats_pgb"));
    CHECK(clients_role_plain("app.user-1$"));
    CHECK(!clients_role_plain(""));
    CHECK(!clients_role_plain("all"));
    CHECK(!clients_role_plain("replication"));
    CHECK(!clients_role_plain("+group"));
    CHECK(!clients_role_plain("@file"));
    CHECK(!clients_role_plain("/regex"));
    CHECK(!clients_role_plain("a b"));
    CHECK(!clients_role_plain("a,b"));
    CHECK(!clients_role_plain("a\"b"));
    char longname[80];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(!clients_role_plain(longname));
}

static bool has_line(const char *text, const char *type, const char *db, const char *user,
                     const char *method)
{
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        char t[32], d[80], u[80], a[80], m[32];
        if (sscanf(line, "%31s %79s %79s %79s %31s", t, d, u, a, m) == 5 &&
            strcmp(t, type) == 0 && strcmp(d, db) == 0 && strcmp(u, user) == 0 &&
            strcmp(m, method) == 0)
            return true;
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

TEST(rules_render_and_stay_narrow)
{
    struct client_set set;
    char *err = NULL;
    CHECK(clients_parse("{\"3\":{\"database\":\"pgbouncer\",\"prefix\":false,\"roles\":1,"
                        "\"secret\":\"" SECRET "\"},\"4\":{\"database\":\"appa\",\"prefix\":"
                        "false,\"roles\":0,\"secret\":\"" SECRET "\"},\"5\":{\"database\":"
                        "\"shop\",\"prefix\":true,\"roles\":16,\"secret\":\"" SECRET "\"}}",
                        &set, &err) == 0);
    const char *logins[] = {"postgres", "operator", "replication", "rewind", "monitoring",
                            "relation-3", "relation-99", "pgbouncer_auth_relation_3",
                            "pgbouncer_auth_relation_99", "pgbouncer_stats_pgb", "bad name",
                            "all", "pg_signal_backend", "charmed_read", "app_user"};
    struct pg_hba_rule rules[64];
    size_t n = clients_hba_rules(&set, logins, sizeof logins / sizeof *logins, rules, 64);
    CHECK(n == 6);
    struct pg_settings s;
    char *why = NULL;
    json_t *cfg = json_object();
    CHECK(settings_parse(cfg, &s, &why) == 0);
    json_decref(cfg);
    char *text = NULL;
    const char *peers[] = {"10.0.0.1"};
    CHECK(pgconf_render_hba(&s, true, peers, 1, rules, n, &text, &err) == 0);
    CHECK(has_line(text, "hostssl", "all", "relation-3", "scram-sha-256")); /* SUPERUSER */
    CHECK(has_line(text, "hostssl", "all", "pgbouncer_auth_relation_3", "md5"));
    CHECK(has_line(text, "hostssl", "appa", "relation-4", "scram-sha-256"));
    CHECK(has_line(text, "hostssl", "all", "relation-5", "scram-sha-256")); /* prefix */
    CHECK(has_line(text, "hostssl", "all", "pgbouncer_stats_pgb", "scram-sha-256"));
    CHECK(has_line(text, "hostssl", "all", "app_user", "scram-sha-256"));
    CHECK(!strstr(text, "relation-99"));               /* a gone relation's user */
    CHECK(!strstr(text, "pgbouncer_auth_relation_99"));
    CHECK(!strstr(text, "bad name") && !strstr(text, "charmed_read"));
    CHECK(!has_line(text, "hostssl", "all", "relation-4", "md5"));
    /* the client rules come before the final reject */
    const char *last = strstr(text, "relation-4");
    const char *reject = strstr(text, "host     all          all");
    CHECK(last && (!reject || reject > last));
    free(text);

    /* md5 for anyone else, or without TLS, is refused by the renderer itself */
    struct pg_hba_rule md5_other = {"hostssl", "all", "relation-4", "all", "md5", NULL};
    CHECK(pgconf_render_hba(&s, true, peers, 1, &md5_other, 1, &text, &err) == -EINVAL);
    free(err);
    err = NULL;
    struct pg_hba_rule md5_plain = {"host", "all", "pgbouncer_auth_relation_3", "all", "md5",
                                    NULL};
    CHECK(pgconf_render_hba(&s, true, peers, 1, &md5_plain, 1, &text, &err) == -EINVAL);
    free(err);
}

int main(void)
{
    static const struct check_case cases[] = {
        {"list_round_trip", list_round_trip},
        {"list_refuses_bad_entries", list_refuses_bad_entries},
        {"role_names_for_pg_hba", role_names_for_pg_hba},
        {"rules_render_and_stay_narrow", rules_render_and_stay_narrow},
    };
    return check_run("clients", cases, sizeof cases / sizeof cases[0]);
}
