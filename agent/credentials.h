/* The system users' passwords: where they live (an app-owned Juju secret created by the
 * leader, its URI also in the peer relation's app databag), where the operator may set
 * them (the `system-users` user secret, the `set-password` action), and how PostgreSQL
 * gets them (SCRAM verifiers, applied only when the stored verifier does not match).
 *
 * Internal secret: label "database-peers.<app>.app", keys "<user>-password" (as Charmed
 * PostgreSQL, so that its tooling and tests read it the same way); peer app databag key
 * "internal-secret" holds its URI.
 *
 * Ownership: struct creds owns its sodium buffers (creds_clear wipes them). Messages
 * never contain a password.
 */
#ifndef PG_AGENT_CREDENTIALS_H
#define PG_AGENT_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "request.h"

#define N_SYSTEM_USERS 4
#define PEER_ENDPOINT "database-peers"
#define INTERNAL_SECRET_KEY "internal-secret"

extern const char *const system_users[N_SYSTEM_USERS]; /* operator, replication, rewind,
                                                          monitoring */

struct creds {
    char *pw[N_SYSTEM_USERS]; /* sodium_malloc'd; NULL when unknown */
};

/* Index of a system user, or -1. */
int creds_user_index(const char *name);

/* "operator, replication, rewind, monitoring" */
const char *creds_user_list(void);

void creds_clear(struct creds *c);

/* true when every password is known. */
bool creds_complete(const struct creds *c);

/* Replace user i's password with a copy of pw. Returns 0 or -ENOMEM. */
int creds_set(struct creds *c, int i, const char *pw);

/* The internal secret's content -> creds. Missing keys stay NULL; values that are not
 * strings or fail the length rule are an error. */
int creds_from_internal(const json_t *content, struct creds *out, char **err);

/* The `system-users` secret's content -> creds (only the users it names). Keys are
 * "<user>" or "<user>-password"; any other key, or a password that fails the policy, is
 * an error that names the key (never the value). */
int creds_from_user_secret(const json_t *content, struct creds *out, char **err);

/* The peer relation id ("database-peers:N") into buf, or "" when there is none yet. */
int creds_peer_relation(const struct hook_event *ev, char *buf, size_t size, char **err);

/* Read the internal secret (URI from the peer databag, else the label). Returns 0; -ENOENT
 * when it does not exist yet; other negatives with *err. *uri (may be NULL) gets its URI. */
int creds_read_internal(const struct hook_event *ev, const char *peer_rel, struct creds *out,
                        char **uri, char **err);

/* Leader: make the internal secret hold exactly `want` (creating it when uri is NULL),
 * and the peer databag point at it. Writes nothing when it already does. */
int creds_write_internal(const struct hook_event *ev, const char *peer_rel, const char *uri,
                         const struct creds *have, const struct creds *want, char **err);

/* PostgreSQL: the system roles exist with their attributes and grants, and each password
 * that is known is the one PostgreSQL checks against. Returns the number of passwords
 * changed, or -1. */
int creds_apply(PGconn *conn, const struct creds *c, char **err);

/* creds_apply in a short-lived child process that connects by itself: the SCRAM and
 * OpenSSL work never runs in the agent's long-lived process (which then stays small:
 * its pages of libcrypto are never touched). The child's log lines are logged here.
 * Returns what creds_apply returns. */
int creds_apply_isolated(const char *socket_dir, int port, const struct creds *c, char **err);

#endif
