/* The internal PKI for peer traffic: the application's CA (created by the leader, kept in
 * an app-owned Juju secret) and this unit's peer certificate, issued by the unit itself
 * with its addresses and names as SANs and reissued when they change, when it nears its
 * end (90 % of its validity) or when the CA changes.
 *
 * Files (each private key 0600, owned by the one OS user that needs it):
 *   /var/lib/pg-agent/tls/{ca,cert,key}.pem            root: the internal CA and this unit's
 *   /var/lib/postgresql/pg-agent-tls/{ca,cert,key}.pem postgres    internal certificate
 * The peer identity (tls.c: the internal certificate, or the peer-certificates provider's)
 * and the peer trust bundle (the internal CA and the provider CAs every unit may present):
 *   /var/lib/pg-agent/tls/peer-{ca,cert,key}.pem          root (etcd client, REST API)
 *   /var/lib/postgresql/pg-agent-tls/peer-{ca,cert,key}.pem postgres (replication, rewind;
 *                                                          peer-ca.pem is ssl_ca_file)
 *   /var/lib/etcd/pg-agent-tls/{ca,cert,key}.pem          etcd (client and peer mutual TLS)
 * The metrics exporter's own server-only identity (its key is no client credential: a
 * compromised exporter cannot log in to etcd or PostgreSQL with it), when its OS user
 * exists; root's files in a root directory, readable by the group prometheus (0640, the
 * directory 0750; /var/lib/pg-agent becomes traversable, 0711, its contents stay 0700):
 *   /var/lib/pg-agent/exporter/{ca,cert,key}.pem          root:prometheus
 * The CA's private key never reaches a file: it lives in the secret and in memory for
 * the moment a certificate is signed.
 *
 * Ownership: struct pki_paths is static storage; *err is malloc'd.
 */
#ifndef PG_AGENT_PKI_H
#define PG_AGENT_PKI_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "peers.h"
#include "request.h"

#define PKI_AGENT_DIR "/var/lib/pg-agent/tls"
#define PKI_PG_DIR "/var/lib/postgresql/pg-agent-tls"
#define PKI_ETCD_DIR "/var/lib/etcd/pg-agent-tls"
#define PKI_STATE_DIR "/var/lib/pg-agent"
#define PKI_EXPORTER_DIR PKI_STATE_DIR "/exporter"
#define PKI_EXPORTER_USER "prometheus"
#define PKI_CA_DAYS 3650
#define PKI_CERT_DAYS 365

struct pki_files {
    const char *ca, *cert, *key;
};

/* A PEM file (at most X509_PEM_MAX bytes) into *out (malloc'd, or a sodium buffer to free
 * with password_free when secret); *out NULL when the file does not exist. 0 or -errno. */
int pki_read_file(const char *path, bool secret, char **out, char **err);

/* content into path atomically, this owner, mode 0600 (its directory 0700, created).
 * Returns 1 when the file changed, 0 when it already was that, -errno. */
int pki_write_file(const char *path, const char *content, uid_t uid, gid_t gid, char **err);

/* The same with the file's and its directory's modes (e.g. 0640 and 0750 for files a
 * service's group reads but cannot replace). */
int pki_write_file_mode(const char *path, const char *content, uid_t uid, gid_t gid,
                        mode_t file_mode, mode_t dir_mode, char **err);

/* ca, cert and key into f's three files, owned by user (NULL: root; a user that does not
 * exist: nothing is written, that service is not installed). *changed when one changed.
 * 0 or -errno. */
int pki_install_copy(const struct pki_files *f, const char *user, const char *ca,
                     const char *cert, const char *key, bool *changed, char **err);

/* The internal copies, and the peer identity's copies (see above). */
extern const struct pki_files pki_agent, pki_pg;
extern const struct pki_files pki_peer_agent, pki_peer_pg, pki_etcd, pki_exporter;

/* Converge: the CA exists (the leader creates it), this unit's key and certificate exist
 * and are current, and the internal copies are in place (tls.c installs the peer copies).
 * *changed tells whether a certificate or the CA changed on disk (PostgreSQL reloads).
 * Returns 0; -EAGAIN when a non-leader waits for the leader's CA (*err says so); another
 * negative errno on failure. */
int pki_converge(const struct hook_event *ev, const struct peers_view *pv, bool leader,
                 bool *changed, char **err);

/* The newest modification time of f's three files ({0, 0} when none exists): a service
 * that read them before then has to load them again. */
struct timespec pki_files_mtime(const struct pki_files *f);

/* Whether a is later than b. */
bool pki_time_after(struct timespec a, struct timespec b);

/* Whether this unit's peer identity files are all in place. */
bool pki_ready(void);

#endif
