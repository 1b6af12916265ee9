/* Passwords: generation from libsodium's CSPRNG, the policy for operator-supplied ones,
 * and checking a password against a PostgreSQL SCRAM-SHA-256 verifier (pg_authid).
 *
 * Ownership: every password buffer these functions return (password_generate,
 * password_dup) is sodium_malloc'd, NUL-terminated and owned by the caller, who releases it
 * with password_free (which wipes it); never free() it. Inputs are only read, never kept.
 * Error messages (*err) are malloc'd and owned by the caller (errmsg.h); they never contain
 * a password or a verifier, only which rule failed.
 */
#ifndef PG_AGENT_PASSWORD_H
#define PG_AGENT_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_LEN ((size_t)32)    /* generated passwords: characters, without the NUL */
#define PASSWORD_MIN_LEN ((size_t)8) /* operator-supplied passwords: bytes */
#define PASSWORD_MAX_LEN ((size_t)128)

#define SCRAM_MIN_ITERATIONS 1L
#define SCRAM_MAX_ITERATIONS 10000000L
#define SCRAM_MAX_SALT ((size_t)1024) /* decoded salt bytes (PostgreSQL writes 16) */

/* A new password of exactly PASSWORD_LEN characters, each drawn uniformly (libsodium's
 * randombytes_uniform, no modulo bias) from [A-Za-z0-9]. On success *out is a
 * sodium_malloc'd NUL-terminated buffer and 0 is returned; on failure *out is NULL and the
 * code is -EIO (libsodium could not be initialised) or -ENOMEM. */
int password_generate(char **out, char **err);

/* Wipe the buffer (up to its first NUL; sodium_free then also zeroes the whole allocation)
 * and release it. p must come from password_generate or password_dup; NULL is a no-op. */
void password_free(char *p);

/* A sodium_malloc'd copy of the len bytes at src, followed by a NUL (src need not be
 * NUL-terminated and may contain NUL bytes, which password_check_policy refuses). NULL if
 * src is NULL, libsodium cannot be initialised or memory runs out. Release with
 * password_free. */
char *password_dup(const char *src, size_t len);

/* Whether an operator-supplied password (action `set-password password=...`, the
 * `system-users` secret) is acceptable: PASSWORD_MIN_LEN to PASSWORD_MAX_LEN bytes, every
 * byte printable ASCII other than space (0x21 to 0x7e: no space, tab, other control
 * character, NUL or byte >= 0x80). 0 if it is, else -EINVAL with a message naming the rule
 * that failed (never the password, its length or the offending byte's position). */
int password_check_policy(const char *pw, size_t len, char **err);

/* Whether password matches verifier, a SCRAM-SHA-256 secret as PostgreSQL stores it in
 * pg_authid.rolpassword:
 *     SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
 * iterations: decimal without sign or leading zero, SCRAM_MIN_ITERATIONS to
 * SCRAM_MAX_ITERATIONS; salt: 1 to SCRAM_MAX_SALT bytes; keys: exactly 32 bytes each; all
 * three in canonical standard base64 (RFC 4648 alphabet, '=' padding required, no
 * whitespace, unused bits zero). Per RFC 5802/7677, SaltedPassword =
 * PBKDF2-HMAC-SHA-256(password, salt, iterations), ClientKey = HMAC(SaltedPassword,
 * "Client Key"), ServerKey = HMAC(SaltedPassword, "Server Key"); *match is true when both
 * SHA-256(ClientKey) equals StoredKey and ServerKey equals the stored ServerKey (compared in
 * constant time). Intermediate key material is wiped.
 *
 * Passwords: PostgreSQL runs SASLprep on the password, which leaves pure-ASCII input
 * unchanged (it is used as is), so the result is exact for any ASCII password (the charm
 * only uses printable ASCII ones, see password_check_policy). SASLprep of non-ASCII input
 * is not implemented: a password with a byte >= 0x80 gives -EINVAL.
 *
 * Returns 0 with *match set; -EINVAL for a NULL argument, a non-ASCII password or a
 * malformed verifier (also empty, an md5 hash or any other format), with a message that
 * echoes neither; -EIO if OpenSSL fails. *match is false on every failure. */
int scram_verify(const char *verifier, const char *password, bool *match, char **err);

#endif
