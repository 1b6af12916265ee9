/* Unit tests for agent/password.c: generated passwords, the operator password policy, and
 * SCRAM-SHA-256 verifier checks against vectors from PostgreSQL's own client library. */
#include "check.h"

#include "password.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* Test vectors. A was made by libpq 15.20 (Debian 15.20-0+deb12u1) itself:
 * PQencryptPasswordConn(conn, PW_A, "postgres", "scram-sha-256") with conn from
 * PQconnectStart("host=/nonexistent dbname=x") (random 16-byte salt, 4096 iterations); B and
 * C were computed independently in /usr/bin/python3 (hashlib.pbkdf2_hmac, hmac, hashlib.sha256,
 * base64; random 18- and 17-byte salts, so no '=' and one '=' of salt padding), and the same
 * Python code recomputes A exactly from its salt. All three were then stored verbatim as role
 * passwords in a throwaway PostgreSQL 15.20 server (CREATE ROLE ... PASSWORD '<verifier>') and
 * each role logged in over TCP with scram-sha-256 and its password; a wrong password was
 * refused. */
#define PW_A "Zk3pQ9vX2mLr7TbW1nYc8HdF4sJg6AeU"
#define VER_A                                                                                      \
    "SCRAM-SHA-256$4096:QtEWnJKFIjJTpDYzQlm9HQ==$MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9LKQ=:"    \
    "V5bIz4QtV2DdNbAVkPuDB2DWsO8ESpmrLwjqnlgjqpY="
#define PW_B "s3cr3t-P@ss:word$x%y'z\""
#define VER_B                                                                                      \
    "SCRAM-SHA-256$10:3GezmHuSUVGw43mtR0whm/AT$NCqOx4uANyWelr2LDuR2C345wZQhqDE4eoMhS22eoFw=:"      \
    "VOpZFejn53PS1HGt+EbTCvaEGUmvIfiFD7z7jl9Xey4="
#define PW_C "~!#^&*()_+{}|<>?`=[]\\;,./"
#define VER_C                                                                                      \
    "SCRAM-SHA-256$1:4Zpl+EAoG/ImoKQXRgfhclQ=$mwKN5B1ep7LkBoRor3jKojY6TuBYYjDhL8Al7DVc6sQ=:"       \
    "O+Wd/3Or35/VrTvCdIGATfJnWXWJRRQkMWeoZ3U618A="

/* Pieces of VER_A, to build malformed verifiers from. */
#define SALT_A "QtEWnJKFIjJTpDYzQlm9HQ=="
#define STORED_A "MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9LKQ="
#define SERVER_A "V5bIz4QtV2DdNbAVkPuDB2DWsO8ESpmrLwjqnlgjqpY="
#define SERVER_B "VOpZFejn53PS1HGt+EbTCvaEGUmvIfiFD7z7jl9Xey4="

#define N_DRAWS 1000

static bool in_alphabet(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int cmp_pw(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

TEST(generate_shape)
{
    char *pw = NULL, *err = NULL;
    CHECK(password_generate(&pw, &err) == 0);
    CHECK(err == NULL);
    CHECK(pw != NULL);
    if (!pw)
        return;
    CHECK(strlen(pw) == PASSWORD_LEN);
    CHECK(PASSWORD_LEN == 32);
    for (size_t i = 0; i < PASSWORD_LEN; i++)
        CHECK(in_alphabet(pw[i]));
    /* A generated password satisfies the operator policy too. */
    CHECK(password_check_policy(pw, strlen(pw), &err) == 0);
    CHECK(err == NULL);
    password_free(pw);
}

TEST(generate_distinct_and_covering)
{
    static char all[N_DRAWS][PASSWORD_LEN + 1];
    size_t seen[256] = {0};
    for (size_t n = 0; n < N_DRAWS; n++) {
        char *pw = NULL, *err = NULL;
        CHECK(password_generate(&pw, &err) == 0);
        CHECK(err == NULL);
        if (!pw) {
            free(err);
            return;
        }
        CHECK(strlen(pw) == PASSWORD_LEN);
        for (size_t i = 0; i < PASSWORD_LEN && pw[i]; i++) {
            CHECK(in_alphabet(pw[i]));
            seen[(unsigned char)pw[i]]++;
        }
        memcpy(all[n], pw, PASSWORD_LEN + 1);
        password_free(pw);
    }
    qsort(all, N_DRAWS, sizeof(all[0]), cmp_pw);
    size_t dups = 0;
    for (size_t n = 1; n < N_DRAWS; n++)
        if (strcmp(all[n - 1], all[n]) == 0)
            dups++;
    CHECK(dups == 0);
    /* Every class, and every one of the 62 characters (32000 draws: each is expected about
     * 516 times, so a missing one means a broken draw, not bad luck). */
    size_t lower = 0, upper = 0, digit = 0, missing = 0;
    for (int c = 0; c < 256; c++) {
        if (c >= 'a' && c <= 'z')
            lower += seen[c];
        else if (c >= 'A' && c <= 'Z')
            upper += seen[c];
        else if (c >= '0' && c <= '9')
            digit += seen[c];
        else
            CHECK(seen[c] == 0);
        if (in_alphabet((char)c) && seen[c] == 0)
            missing++;
    }
    CHECK(lower > 0 && upper > 0 && digit > 0);
    CHECK(lower + upper + digit == (size_t)N_DRAWS * PASSWORD_LEN);
    CHECK(missing == 0);
    memset(all, 0, sizeof(all));
}

TEST(generate_bad_argument)
{
    char *err = NULL;
    CHECK(password_generate(NULL, &err) == -EINVAL);
    CHECK(err != NULL);
    free(err);
}

TEST(dup_and_free)
{
    char *p = password_dup("hunter22", 8);
    CHECK(p != NULL);
    CHECK_STR(p, "hunter22");
    password_free(p);

    /* Not NUL-terminated input: exactly len bytes are copied. */
    p = password_dup("abcdefXYZ", 6);
    CHECK_STR(p, "abcdef");
    password_free(p);

    /* An embedded NUL is kept (the policy refuses it later). */
    p = password_dup("ab\0cd", 5);
    CHECK(p != NULL && memcmp(p, "ab\0cd", 6) == 0);
    password_free(p);

    p = password_dup("", 0);
    CHECK_STR(p, "");
    password_free(p);

    CHECK(password_dup(NULL, 3) == NULL);
    password_free(NULL);
}

/* policy(pw, len) is refused with -EINVAL, a message containing want, and without pw. */
static void expect_policy_refused(int *failed, const char *pw, size_t len, const char *want)
{
    char *err = NULL;
    CHECK(password_check_policy(pw, len, &err) == -EINVAL);
    CHECK(err != NULL);
    if (err && !strstr(err, want)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err, want);
        (*failed)++;
    }
    /* Never the password, nor a long-enough piece of it. */
    if (err && pw && len >= 6) {
        char piece[7];
        memcpy(piece, pw, 6);
        piece[6] = '\0';
        if (strlen(piece) == 6 && strstr(err, piece)) {
            fprintf(stderr, "  message \"%s\" echoes the password\n", err);
            (*failed)++;
        }
    }
    free(err);
}

static void expect_policy_ok(int *failed, const char *pw, size_t len)
{
    char *err = NULL;
    CHECK(password_check_policy(pw, len, &err) == 0);
    CHECK(err == NULL);
    free(err);
}

TEST(policy_length)
{
    char buf[PASSWORD_MAX_LEN + 2];
    memset(buf, 'k', sizeof(buf));
    expect_policy_refused(failed, buf, 0, "too short");
    expect_policy_refused(failed, buf, 7, "password too short: it must be at least 8 characters");
    expect_policy_ok(failed, buf, 8);
    expect_policy_ok(failed, buf, 128);
    expect_policy_refused(failed, buf, 129, "password too long: it must be at most 128 characters");
    expect_policy_refused(failed, NULL, 10, "no password");
}

TEST(policy_characters)
{
    /* Every printable character but space is accepted: 0x21..0x7e is 94 bytes. */
    char all[94];
    for (int i = 0; i < 94; i++)
        all[i] = (char)(0x21 + i);
    expect_policy_ok(failed, all, sizeof(all));
    expect_policy_ok(failed, "!~\"'\\$:`", 8);

    expect_policy_refused(failed, "Secret pass1", 12, "a space");
    expect_policy_refused(failed, "Secret\tpass1", 12, "a control character");
    expect_policy_refused(failed, "Secret\npass1", 12, "a control character");
    expect_policy_refused(failed, "Secret\x7fpass1", 12, "a control character");
    expect_policy_refused(failed, "Secret\x01pass1", 12, "a control character");
    expect_policy_refused(failed, "Secret\x80pass1", 12, "a non-ASCII byte");
    expect_policy_refused(failed, "Secretpass\xc3\xa9", 12, "a non-ASCII byte");
    expect_policy_refused(failed, "Secretpass1\xff", 12, "a non-ASCII byte");
    /* NUL in the middle: len covers it, as when the value came with an explicit length. */
    expect_policy_refused(failed, "Secret\0pass1", 12, "a NUL byte");
    /* The rule is in the message. */
    expect_policy_refused(failed, "Secret pass1", 12, "0x21 to 0x7e");
}

static int verify(const char *verifier, const char *password, bool *match)
{
    char *err = NULL;
    *match = true; /* scram_verify must overwrite it */
    int rc = scram_verify(verifier, password, match, &err);
    if (rc == 0 && err) {
        fprintf(stderr, "  success with a message: %s\n", err);
        rc = -1000;
    }
    if (rc < 0 && rc != -1000 && !err)
        rc = -2000; /* a failure must say why */
    free(err);
    return rc;
}

TEST(scram_vectors_match)
{
    bool m;
    CHECK(verify(VER_A, PW_A, &m) == 0 && m);
    CHECK(verify(VER_B, PW_B, &m) == 0 && m);
    CHECK(verify(VER_C, PW_C, &m) == 0 && m);
}

TEST(scram_vectors_no_match)
{
    bool m;
    /* Wrong passwords, the other vectors' passwords, one-character changes, prefixes. */
    CHECK(verify(VER_A, "not the password", &m) == 0 && !m);
    CHECK(verify(VER_A, PW_B, &m) == 0 && !m);
    CHECK(verify(VER_B, PW_A, &m) == 0 && !m);
    CHECK(verify(VER_C, PW_A, &m) == 0 && !m);
    CHECK(verify(VER_A, "Zk3pQ9vX2mLr7TbW1nYc8HdF4sJg6AeV", &m) == 0 && !m); /* last */
    CHECK(verify(VER_A, "zk3pQ9vX2mLr7TbW1nYc8HdF4sJg6AeU", &m) == 0 && !m); /* first */
    CHECK(verify(VER_A, "Zk3pQ9vX2mLr7TbW1nYc8HdF4sJg6Ae", &m) == 0 && !m);  /* shorter */
    CHECK(verify(VER_A, PW_A "U", &m) == 0 && !m);                           /* longer */
    CHECK(verify(VER_B, "s3cr3t-P@ss:word$x%y'z'", &m) == 0 && !m);
    CHECK(verify(VER_C, "~!#^&*()_+{}|<>?`=[]\\;,.?", &m) == 0 && !m);
    CHECK(verify(VER_A, "", &m) == 0 && !m);
    /* Control characters are ASCII: computed as is (SASLprep leaves ASCII alone). */
    CHECK(verify(VER_A, PW_A "\t", &m) == 0 && !m);
    /* The right StoredKey with another ServerKey: both keys must agree. */
    CHECK(verify("SCRAM-SHA-256$4096:" SALT_A "$" STORED_A ":" SERVER_B, PW_A, &m) == 0 && !m);
    /* The right keys with another salt or iteration count. */
    CHECK(verify("SCRAM-SHA-256$4097:" SALT_A "$" STORED_A ":" SERVER_A, PW_A, &m) == 0 && !m);
    CHECK(verify("SCRAM-SHA-256$4096:QtEWnJKFIjJTpDYzQlm9HA==$" STORED_A ":" SERVER_A, PW_A, &m) ==
              0 &&
          !m);
}

/* Generated passwords against verifiers that libpq computes now (as the agent will). */
TEST(scram_libpq_roundtrip)
{
    PGconn *conn = PQconnectStart("host=/nonexistent/pg-agent-test dbname=x");
    CHECK(conn != NULL);
    if (!conn)
        return;
    char *prev = NULL;
    for (int i = 0; i < 3; i++) {
        char *pw = NULL, *err = NULL;
        CHECK(password_generate(&pw, &err) == 0);
        if (!pw) {
            free(err);
            break;
        }
        char *ver = PQencryptPasswordConn(conn, pw, "operator", "scram-sha-256");
        CHECK(ver != NULL);
        if (ver) {
            bool m;
            CHECK(strncmp(ver, "SCRAM-SHA-256$", 14) == 0);
            CHECK(verify(ver, pw, &m) == 0 && m);
            if (prev)
                CHECK(verify(ver, prev, &m) == 0 && !m);
            PQfreemem(ver);
        }
        password_free(prev);
        prev = pw;
    }
    password_free(prev);
    PQfinish(conn);
}

struct bad_verifier {
    const char *verifier;
    const char *want; /* in the message */
};

static const struct bad_verifier bad_verifiers[] = {
    {"", "empty"},
    {"md5a3556571e93b0d20722ba62be61e8c2d", "md5"},
    {"md5", "md5"},
    {"SCRAM-SHA-1$4096:" SALT_A "$" STORED_A ":" SERVER_A, "not a SCRAM-SHA-256"},
    {"scram-sha-256$4096:" SALT_A "$" STORED_A ":" SERVER_A, "not a SCRAM-SHA-256"},
    {"hunter22", "not a SCRAM-SHA-256"},
    /* missing parts */
    {"SCRAM-SHA-256$", "no ':' after the iteration count"},
    {"SCRAM-SHA-256$4096", "no ':' after the iteration count"},
    {"SCRAM-SHA-256$4096:" SALT_A, "no '$'"},
    {"SCRAM-SHA-256$4096:" SALT_A "$" STORED_A, "no ':' between"},
    {"SCRAM-SHA-256$4096:" SALT_A "$" STORED_A ":", "ServerKey is not valid base64"},
    {"SCRAM-SHA-256$4096:" SALT_A "$:" SERVER_A, "StoredKey is not valid base64"},
    {"SCRAM-SHA-256$4096:$" STORED_A ":" SERVER_A, "salt is not valid base64"},
    {"SCRAM-SHA-256$:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    /* iterations */
    {"SCRAM-SHA-256$0:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$10000001:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$99999999999:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$-1:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$+4096:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$04096:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$ 4096:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$4096 :" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    {"SCRAM-SHA-256$0x10:" SALT_A "$" STORED_A ":" SERVER_A, "iteration count"},
    /* bad base64 */
    {"SCRAM-SHA-256$4096:QtEWnJKFIjJTpDYzQlm9HQ=$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:QtEWnJKFIjJTpDYzQlm9HQ$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:QtEW*JKFIjJTpDYzQlm9HQ==$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:QtEW JKFIjJTpDYzQlm9HQ==$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:QtEW=JKFIjJTpDYzQlm9HQ==$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:QtEWnJKFIjJTpDYzQlm9HR==$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:====$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:QtEWnJKFIjJTpDYzQlm9HQ===$" STORED_A ":" SERVER_A, "salt is not valid"},
    {"SCRAM-SHA-256$4096:" SALT_A "$MN6zkuP9DNijBX-EzgXVIMQpUOLMc5KUlgs+p0P9LKQ=:" SERVER_A,
     "StoredKey is not valid base64"},
    {"SCRAM-SHA-256$4096:" SALT_A "$MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9LKR=:" SERVER_A,
     "StoredKey is not valid base64"}, /* unused bits set */
    {"SCRAM-SHA-256$4096:" SALT_A "$MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9LKQ:" SERVER_A,
     "StoredKey is not valid base64"}, /* padding missing */
    {"SCRAM-SHA-256$4096:" SALT_A "$" STORED_A ":V5bIz4QtV2DdNbAVkPuDB2DWsO8ESpmrLwjqnlgjqpY=\n",
     "ServerKey is not valid base64"},
    {"SCRAM-SHA-256$4096:" SALT_A "$" STORED_A ":" SERVER_A ":" SERVER_A,
     "ServerKey is not valid base64"},
    {"SCRAM-SHA-256$4096:" SALT_A "$" STORED_A ":" SERVER_A "$x", "ServerKey is not valid base64"},
    /* wrong key lengths: 31, 33, 30 and 36 bytes */
    {"SCRAM-SHA-256$4096:" SALT_A "$MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9LA==:" SERVER_A,
     "StoredKey is not 32 bytes"},
    {"SCRAM-SHA-256$4096:" SALT_A "$MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9LKQA:" SERVER_A,
     "StoredKey is not 32 bytes"},
    {"SCRAM-SHA-256$4096:" SALT_A "$" STORED_A ":MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9",
     "ServerKey is not 32 bytes"},
    {"SCRAM-SHA-256$4096:" SALT_A "$" STORED_A ":MN6zkuP9DNijBX+EzgXVIMQpUOLMc5KUlgs+p0P9LKQAAAAA",
     "ServerKey is not 32 bytes"},
};

TEST(scram_malformed)
{
    for (size_t i = 0; i < sizeof(bad_verifiers) / sizeof(bad_verifiers[0]); i++) {
        const struct bad_verifier *b = &bad_verifiers[i];
        char *err = NULL;
        bool m = true;
        int rc = scram_verify(b->verifier, PW_A, &m, &err);
        if (rc != -EINVAL || m || !err || !strstr(err, b->want)) {
            fprintf(stderr, "  case %zu: rc %d, match %d, message \"%s\" (want \"%s\")\n", i, rc,
                    (int)m, err ? err : "(null)", b->want);
            (*failed)++;
        }
        /* The message echoes neither the verifier's salt or keys nor the password. */
        if (err && (strstr(err, "QtEW") || strstr(err, "MN6z") || strstr(err, "V5bI") ||
                    strstr(err, "a3556571") || strstr(err, "Zk3p") ||
                    (strlen(b->verifier) > 16 && strstr(err, b->verifier)))) {
            fprintf(stderr, "  case %zu: message \"%s\" echoes its input\n", i, err);
            (*failed)++;
        }
        free(err);
    }
}

TEST(scram_bad_arguments)
{
    bool m = true;
    char *err = NULL;
    CHECK(scram_verify(NULL, PW_A, &m, &err) == -EINVAL && !m && err);
    free(err);
    err = NULL;
    m = true;
    CHECK(scram_verify(VER_A, NULL, &m, &err) == -EINVAL && !m && err);
    free(err);
    err = NULL;
    CHECK(scram_verify(VER_A, PW_A, NULL, &err) == -EINVAL && err);
    free(err);
    /* Non-ASCII passwords need SASLprep, which is not implemented. */
    err = NULL;
    m = true;
    CHECK(scram_verify(VER_A, "Zk3pQ9vX2mLr7TbW1nYc8HdF4sJg6Ae\xc3\xa9", &m, &err) == -EINVAL);
    CHECK(!m && err && strstr(err, "not ASCII") && !strstr(err, "Zk3p"));
    free(err);
    err = NULL;
    CHECK(scram_verify(VER_A, "\x80", &m, &err) == -EINVAL && !m && err);
    free(err);
    /* A NULL err is allowed. */
    CHECK(scram_verify("md5", PW_A, &m, NULL) == -EINVAL);
    CHECK(scram_verify(VER_A, PW_A, &m, NULL) == 0 && m);
}

CHECK_MAIN("password", CASE(generate_shape), CASE(generate_distinct_and_covering),
           CASE(generate_bad_argument), CASE(dup_and_free), CASE(policy_length),
           CASE(policy_characters), CASE(scram_vectors_match), CASE(scram_vectors_no_match),
           CASE(scram_libpq_roundtrip), CASE(scram_malformed), CASE(scram_bad_arguments))
