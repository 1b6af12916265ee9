/* Unit tests for the pure parts of agent/credentials.c: reading the internal secret and
 * the operator's system-users secret (keys, spellings, policy, messages without values). */
#include "check.h"

#include "credentials.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *load(const char *text)
{
    json_error_t e;
    return json_loads(text, 0, &e);
}

TEST(user_index_and_list)
{
    CHECK(creds_user_index("operator") == 0);
    CHECK(creds_user_index("monitoring") == 3);
    CHECK(creds_user_index("postgres") == -1);
    CHECK(creds_user_index("") == -1);
    CHECK(creds_user_index(NULL) == -1);
    for (int i = 0; i < N_SYSTEM_USERS; i++)
        CHECK(strstr(creds_user_list(), system_users[i]) != NULL);
}

TEST(internal_secret_keys)
{
    json_t *c = load("{\"operator-password\":\"abcdefgh12345678\","
                     "\"monitoring-password\":\"Zyxwvuts98765432\",\"other\":\"x\"}");
    struct creds cr = {0};
    char *err = NULL;
    CHECK(creds_from_internal(c, &cr, &err) == 0);
    CHECK_STR(cr.pw[0], "abcdefgh12345678");
    CHECK(cr.pw[1] == NULL && cr.pw[2] == NULL);
    CHECK_STR(cr.pw[3], "Zyxwvuts98765432");
    CHECK(!creds_complete(&cr));
    creds_clear(&cr);
    CHECK(cr.pw[0] == NULL && cr.pw[3] == NULL);
    json_decref(c);
}

TEST(internal_secret_bad_value)
{
    json_t *c = load("{\"rewind-password\":\"short\"}");
    struct creds cr = {0};
    char *err = NULL;
    CHECK(creds_from_internal(c, &cr, &err) == -EINVAL);
    CHECK(err && strstr(err, "rewind-password") && !strstr(err, "short"));
    free(err);
    creds_clear(&cr);
    json_decref(c);
    c = load("{\"rewind-password\":42}");
    err = NULL;
    CHECK(creds_from_internal(c, &cr, &err) == -EINVAL);
    free(err);
    creds_clear(&cr);
    json_decref(c);
}

TEST(user_secret_both_spellings)
{
    json_t *c = load("{\"operator\":\"Passw0rd-Operator\",\"replication-password\":"
                     "\"Passw0rd-Replica\"}");
    struct creds cr = {0};
    char *err = NULL;
    CHECK(creds_from_user_secret(c, &cr, &err) == 0);
    CHECK_STR(cr.pw[0], "Passw0rd-Operator");
    CHECK_STR(cr.pw[1], "Passw0rd-Replica");
    CHECK(cr.pw[2] == NULL);
    creds_clear(&cr);
    json_decref(c);
}

TEST(user_secret_refusals_name_the_key_not_the_value)
{
    static const struct {
        const char *json, *key, *secret;
    } bad[] = {
        {"{\"admin\":\"Passw0rd-Admin1\"}", "admin", "Passw0rd-Admin1"},
        {"{\"operator\":\"abc\"}", "operator", "abc"},
        {"{\"operator\":\"has space in it\"}", "operator", "has space"},
        {"{\"monitoring-password\":7}", "monitoring-password", NULL},
        {"{\"postgres\":\"Passw0rd-Postgres\"}", "postgres", "Passw0rd-Postgres"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *c = load(bad[i].json);
        struct creds cr = {0};
        char *err = NULL;
        CHECK(creds_from_user_secret(c, &cr, &err) == -EINVAL);
        CHECK(err && strstr(err, bad[i].key));
        if (bad[i].secret)
            CHECK(err && !strstr(err, bad[i].secret));
        free(err);
        creds_clear(&cr);
        json_decref(c);
    }
}

TEST(set_replaces)
{
    struct creds cr = {0};
    for (int i = 0; i < N_SYSTEM_USERS; i++)
        CHECK(creds_set(&cr, i, "first-password") == 0);
    CHECK(creds_complete(&cr));
    CHECK(creds_set(&cr, 2, "second-password") == 0);
    CHECK_STR(cr.pw[2], "second-password");
    creds_clear(&cr);
}

int main(void)
{
    static const struct check_case cases[] = {
        {"user_index_and_list", user_index_and_list},
        {"internal_secret_keys", internal_secret_keys},
        {"internal_secret_bad_value", internal_secret_bad_value},
        {"user_secret_both_spellings", user_secret_both_spellings},
        {"user_secret_refusals_name_the_key_not_the_value",
         user_secret_refusals_name_the_key_not_the_value},
        {"set_replaces", set_replaces},
    };
    return check_run("credentials", cases, sizeof cases / sizeof cases[0]);
}
