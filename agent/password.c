/* Passwords (password.h): generation with libsodium, the operator policy, and SCRAM-SHA-256
 * verifier checks with OpenSSL, so that reconcile can tell whether PostgreSQL is up to date. */
#include "password.h"

#include "errmsg.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sodium.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#define SCRAM_PREFIX "SCRAM-SHA-256$"
#define SCRAM_KEY_LEN ((size_t)32)        /* SHA-256 output */
#define SCRAM_MAX_VERIFIER ((size_t)4096) /* far above any verifier within SCRAM_MAX_SALT */
#define SCRAM_MAX_ITER_DIGITS 8           /* strlen("10000000") */
#define BAD_VERIFIER "malformed SCRAM-SHA-256 verifier: "

int password_generate(char **out, char **err)
{
    if (!out)
        return errmsg_set(err, -EINVAL, "password_generate: no place for the password");
    *out = NULL;
    if (sodium_init() < 0)
        return errmsg_set(err, -EIO, "cannot initialise libsodium to generate a password");
    char *p = sodium_malloc(PASSWORD_LEN + 1);
    if (!p)
        return errmsg_set(err, -ENOMEM, "cannot allocate protected memory for a new password");
    const uint32_t n = (uint32_t)(sizeof(alphabet) - 1);
    for (size_t i = 0; i < PASSWORD_LEN; i++)
        p[i] = alphabet[randombytes_uniform(n)];
    p[PASSWORD_LEN] = '\0';
    *out = p;
    return 0;
}

void password_free(char *p)
{
    if (!p)
        return;
    sodium_memzero(p, strlen(p));
    sodium_free(p); /* zeroes the whole allocation too, past an embedded NUL */
}

char *password_dup(const char *src, size_t len)
{
    if (!src || len > PTRDIFF_MAX - 1)
        return NULL;
    if (sodium_init() < 0)
        return NULL;
    char *p = sodium_malloc(len + 1);
    if (!p)
        return NULL;
    memcpy(p, src, len);
    p[len] = '\0';
    return p;
}

int password_check_policy(const char *pw, size_t len, char **err)
{
    if (!pw)
        return errmsg_set(err, -EINVAL, "no password was given");
    if (len < PASSWORD_MIN_LEN)
        return errmsg_set(err, -EINVAL, "password too short: it must be at least %zu characters",
                          PASSWORD_MIN_LEN);
    if (len > PASSWORD_MAX_LEN)
        return errmsg_set(err, -EINVAL, "password too long: it must be at most %zu characters",
                          PASSWORD_MAX_LEN);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)pw[i];
        const char *what;
        if (c >= 0x21 && c <= 0x7e)
            continue;
        if (c == 0)
            what = "a NUL byte";
        else if (c == ' ')
            what = "a space";
        else if (c >= 0x80)
            what = "a non-ASCII byte";
        else
            what = "a control character";
        return errmsg_set(err, -EINVAL,
                          "password contains %s: only printable ASCII characters other than "
                          "space (0x21 to 0x7e) are allowed",
                          what);
    }
    return 0;
}

/* The 6-bit value of a standard base64 character, -1 for anything else (including '='). */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode the n characters at s as canonical standard base64 into out (cap bytes): a
 * non-zero multiple of 4 characters, '=' only as the one or two final padding characters,
 * unused bits zero. 0 with *outlen set; -1 if not such base64; -2 if it decodes to more
 * than cap bytes. */
static int b64_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
    *outlen = 0;
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t pad = 0;
    if (s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    size_t len = n / 4 * 3 - pad;
    if (len > cap)
        return -2;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        size_t valid = i + 4 == n ? 4 - pad : 4;
        uint32_t v[4] = {0, 0, 0, 0};
        for (size_t j = 0; j < valid; j++) {
            int x = b64_value((unsigned char)s[i + j]);
            if (x < 0)
                return -1;
            v[j] = (uint32_t)x;
        }
        if ((valid == 3 && (v[2] & 0x3)) || (valid == 2 && (v[1] & 0xf)))
            return -1; /* non-canonical: bits beyond the data are set */
        uint32_t w = v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (valid >= 3)
            out[o++] = (unsigned char)(w >> 8);
        if (valid == 4)
            out[o++] = (unsigned char)w;
    }
    *outlen = o;
    return 0;
}

/* One 32-byte key of the verifier, the n characters at s; what names it in messages. */
static int decode_key(const char *s, size_t n, unsigned char key[SCRAM_KEY_LEN], const char *what,
                      char **err)
{
    size_t got = 0;
    int rc = b64_decode(s, n, key, SCRAM_KEY_LEN, &got);
    if (rc == -1)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "the %s is not valid base64", what);
    if (rc < 0 || got != SCRAM_KEY_LEN)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "the %s is not %zu bytes long", what,
                          SCRAM_KEY_LEN);
    return 0;
}

struct scram_secret {
    long iterations;
    unsigned char salt[SCRAM_MAX_SALT];
    size_t salt_len;
    unsigned char stored_key[SCRAM_KEY_LEN];
    unsigned char server_key[SCRAM_KEY_LEN];
};

/* The edge: a verifier string becomes a struct scram_secret, or -EINVAL. */
static int scram_parse(const char *verifier, struct scram_secret *sec, char **err)
{
    if (!verifier)
        return errmsg_set(err, -EINVAL, "no SCRAM-SHA-256 verifier was given");
    size_t vlen = strnlen(verifier, SCRAM_MAX_VERIFIER + 1);
    if (vlen == 0)
        return errmsg_set(err, -EINVAL,
                          "the stored password hash is empty, not a "
                          "SCRAM-SHA-256 verifier");
    if (vlen > SCRAM_MAX_VERIFIER)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "longer than %zu bytes", SCRAM_MAX_VERIFIER);
    if (strncmp(verifier, "md5", 3) == 0)
        return errmsg_set(err, -EINVAL,
                          "the stored password hash is an md5 hash, not a "
                          "SCRAM-SHA-256 verifier");
    if (strncmp(verifier, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) != 0)
        return errmsg_set(err, -EINVAL,
                          "the stored password hash is not a SCRAM-SHA-256 "
                          "verifier (it does not start with \"" SCRAM_PREFIX "\")");
    const char *end = verifier + vlen;
    const char *p = verifier + strlen(SCRAM_PREFIX);

    /* <iterations>: */
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (!colon)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "no ':' after the iteration count");
    size_t ndig = (size_t)(colon - p);
    bool digits = ndig > 0 && ndig <= SCRAM_MAX_ITER_DIGITS && p[0] != '0';
    long it = 0;
    for (size_t i = 0; digits && i < ndig; i++) {
        if (p[i] < '0' || p[i] > '9')
            digits = false;
        else
            it = it * 10 + (p[i] - '0');
    }
    if (!digits || it < SCRAM_MIN_ITERATIONS || it > SCRAM_MAX_ITERATIONS)
        return errmsg_set(err, -EINVAL,
                          BAD_VERIFIER "the iteration count is not a decimal number from %ld "
                                       "to %ld",
                          SCRAM_MIN_ITERATIONS, SCRAM_MAX_ITERATIONS);
    sec->iterations = it;

    /* <salt>$ */
    const char *salt = colon + 1;
    const char *dollar = memchr(salt, '$', (size_t)(end - salt));
    if (!dollar)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "no '$' between the salt and the keys");
    int rc =
        b64_decode(salt, (size_t)(dollar - salt), sec->salt, sizeof(sec->salt), &sec->salt_len);
    if (rc == -1)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "the salt is not valid base64");
    if (rc < 0)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "the salt is longer than %zu bytes",
                          SCRAM_MAX_SALT);

    /* <StoredKey>:<ServerKey> */
    const char *stored = dollar + 1;
    const char *colon2 = memchr(stored, ':', (size_t)(end - stored));
    if (!colon2)
        return errmsg_set(err, -EINVAL, BAD_VERIFIER "no ':' between StoredKey and ServerKey");
    rc = decode_key(stored, (size_t)(colon2 - stored), sec->stored_key, "StoredKey", err);
    if (rc < 0)
        return rc;
    /* A further '$' or ':' is not base64: decode_key refuses it. */
    return decode_key(colon2 + 1, (size_t)(end - colon2 - 1), sec->server_key, "ServerKey", err);
}

int scram_verify(const char *verifier, const char *password, bool *match, char **err)
{
    if (!match)
        return errmsg_set(err, -EINVAL, "scram_verify: no place for the result");
    *match = false;
    if (!password)
        return errmsg_set(err, -EINVAL, "no password was given to check");
    size_t pwlen = strlen(password);
    for (size_t i = 0; i < pwlen; i++)
        if ((unsigned char)password[i] >= 0x80)
            return errmsg_set(err, -EINVAL,
                              "the password is not ASCII: only ASCII passwords can be checked "
                              "against a SCRAM verifier (SASLprep is not implemented)");
    if (pwlen > INT_MAX)
        return errmsg_set(err, -EINVAL, "the password is too long to check");

    struct scram_secret sec;
    int rc = scram_parse(verifier, &sec, err);
    if (rc < 0) {
        sodium_memzero(&sec, sizeof(sec));
        return rc;
    }

    unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    unsigned char stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    unsigned int len1 = 0, len2 = 0;
    rc = -EIO;
    if (PKCS5_PBKDF2_HMAC(password, (int)pwlen, sec.salt, (int)sec.salt_len, (int)sec.iterations,
                          EVP_sha256(), (int)SCRAM_KEY_LEN, salted) != 1) {
        errmsg_format(err, "cannot derive the SCRAM salted password (PBKDF2 failed)");
        goto out;
    }
    if (!HMAC(EVP_sha256(), salted, (int)SCRAM_KEY_LEN, (const unsigned char *)"Client Key",
              strlen("Client Key"), client_key, &len1) ||
        !HMAC(EVP_sha256(), salted, (int)SCRAM_KEY_LEN, (const unsigned char *)"Server Key",
              strlen("Server Key"), server_key, &len2) ||
        len1 != SCRAM_KEY_LEN || len2 != SCRAM_KEY_LEN) {
        errmsg_format(err, "cannot compute the SCRAM keys (HMAC-SHA-256 failed)");
        goto out;
    }
    if (!SHA256(client_key, SCRAM_KEY_LEN, stored_key)) {
        errmsg_format(err, "cannot compute the SCRAM StoredKey (SHA-256 failed)");
        goto out;
    }
    /* Both comparisons always run, each in constant time. */
    int diff = CRYPTO_memcmp(stored_key, sec.stored_key, SCRAM_KEY_LEN) |
               CRYPTO_memcmp(server_key, sec.server_key, SCRAM_KEY_LEN);
    *match = diff == 0;
    rc = 0;
out:
    sodium_memzero(salted, sizeof(salted));
    sodium_memzero(client_key, sizeof(client_key));
    sodium_memzero(stored_key, sizeof(stored_key));
    sodium_memzero(server_key, sizeof(server_key));
    sodium_memzero(&sec, sizeof(sec));
    return rc;
}
