/* The internal CA and this unit's peer certificate (pki.h): the CA from the app secret,
 * the unit's key and certificate on disk, one copy per OS user that reads them. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "pki.h"

#include "errmsg.h"
#include "hooktool.h"
#include "log.h"
#include "password.h"
#include "proto.h"
#include "x509.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CA_KEY_CERT "ca-certificate"
#define CA_KEY_KEY "ca-private-key"
#define RENEW_PERCENT 90

const struct pki_files pki_agent = {PKI_AGENT_DIR "/ca.pem", PKI_AGENT_DIR "/cert.pem",
                                    PKI_AGENT_DIR "/key.pem"};
const struct pki_files pki_pg = {PKI_PG_DIR "/ca.pem", PKI_PG_DIR "/cert.pem",
                                 PKI_PG_DIR "/key.pem"};
const struct pki_files pki_peer_agent = {PKI_AGENT_DIR "/peer-ca.pem",
                                         PKI_AGENT_DIR "/peer-cert.pem",
                                         PKI_AGENT_DIR "/peer-key.pem"};
const struct pki_files pki_peer_pg = {PKI_PG_DIR "/peer-ca.pem", PKI_PG_DIR "/peer-cert.pem",
                                      PKI_PG_DIR "/peer-key.pem"};
const struct pki_files pki_etcd = {PKI_ETCD_DIR "/ca.pem", PKI_ETCD_DIR "/cert.pem",
                                   PKI_ETCD_DIR "/key.pem"};
const struct pki_files pki_exporter = {PKI_EXPORTER_DIR "/ca.pem", PKI_EXPORTER_DIR "/cert.pem",
                                       PKI_EXPORTER_DIR "/key.pem"};

/* A whole small file (at most X509_PEM_MAX), NUL-terminated; *out NULL when it does not
 * exist. secret: read into a sodium buffer (password_free), else malloc. */
int pki_read_file(const char *path, bool secret, char **out, char **err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : errmsg_set(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < 0 || (size_t)st.st_size > X509_PEM_MAX) {
        close(fd);
        return errmsg_set(err, -EFBIG, "%s: not a PEM file of a usable size", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    ssize_t got = read(fd, buf, n);
    close(fd);
    if (got != (ssize_t)n) {
        free(buf);
        return errmsg_set(err, -EIO, "%s: short read", path);
    }
    buf[n] = '\0';
    if (secret) {
        *out = password_dup(buf, n);
        explicit_bzero(buf, n);
        free(buf);
        return *out ? 0 : errmsg_set(err, -ENOMEM, "out of memory");
    }
    *out = buf;
    return 0;
}

/* Write content atomically with this owner and mode 0600; the directory is created 0700
 * with the same owner. Returns 1 when it changed, 0 when it already was that, -errno
 * (-EINVAL for a NULL content). */
int pki_write_file(const char *path, const char *content, uid_t uid, gid_t gid, char **err)
{
    return pki_write_file_mode(path, content, uid, gid, 0600, 0700, err);
}

int pki_write_file_mode(const char *path, const char *content, uid_t uid, gid_t gid,
                        mode_t file_mode, mode_t dir_mode, char **err)
{
    if (!content) /* a caller's bug: never replace a file with nothing */
        return errmsg_set(err, -EINVAL, "%s: no content to write", path);
    char *cur = NULL;
    if (pki_read_file(path, true, &cur, err) < 0)
        return -EIO;
    bool same = cur && strcmp(cur, content) == 0;
    password_free(cur);
    struct stat st;
    if (same && stat(path, &st) == 0 && st.st_uid == uid && st.st_gid == gid &&
        (st.st_mode & 0777) == file_mode)
        return 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    if (mkdir(dir, dir_mode) < 0 && errno != EEXIST)
        return errmsg_set(err, -errno, "%s: %s", dir, strerror(errno));
    if (chown(dir, uid, gid) < 0 || chmod(dir, dir_mode) < 0)
        return errmsg_set(err, -errno, "%s: %s", dir, strerror(errno));
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return errmsg_set(err, -errno, "%s: %s", tmp, strerror(errno));
    int rc = proto_write_all(fd, content, strlen(content));
    if (rc == 0 && (fchown(fd, uid, gid) < 0 || fchmod(fd, file_mode) < 0 || fsync(fd) < 0))
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return errmsg_set(err, rc, "%s: %s", path, strerror(-rc));
    }
    return 1;
}

/* The CA from the app secret (by URI, else by the owner label for the leader); the leader
 * creates it when there is none. *ca_key is a sodium buffer. */
static int ensure_ca(const struct hook_event *ev, const struct peers_view *pv, bool leader,
                     char **ca_cert, char **ca_key, char **err)
{
    *ca_cert = *ca_key = NULL;
    char label[160];
    snprintf(label, sizeof label, PEERS_ENDPOINT ".%s.ca", pv->app);
    json_t *content = NULL;
    int rc = -ENOENT;
    if (pv->ca_uri[0])
        rc = hooktool_secret_get(ev, pv->ca_uri, NULL, &content, err);
    if (rc == -ENOENT && leader)
        rc = hooktool_secret_get(ev, NULL, label, &content, err);
    if (rc == 0) {
        const char *cert = json_string_value(json_object_get(content, CA_KEY_CERT));
        const char *key = json_string_value(json_object_get(content, CA_KEY_KEY));
        struct x509_info info;
        bool match = false;
        char *why = NULL;
        if (!cert || !key || x509_cert_info(cert, &info, &why) < 0 || !info.is_ca ||
            x509_key_matches_cert(key, cert, &match, &why) < 0 || !match) {
            json_decref(content);
            rc = errmsg_set(err, -EINVAL, "the internal CA secret is not a CA certificate and "
                                          "its key (%s)", why ? why : "wrong content");
            free(why);
            return rc;
        }
        *ca_cert = strdup(cert);
        *ca_key = password_dup(key, strlen(key));
        json_decref(content);
        if (!*ca_cert || !*ca_key) {
            free(*ca_cert);
            password_free(*ca_key);
            *ca_cert = *ca_key = NULL;
            return errmsg_set(err, -ENOMEM, "out of memory");
        }
        if (leader && !pv->ca_uri[0]) {
            /* Found by label: publish its URI for the other units. */
            char uri[128];
            if (hooktool_secret_uri(ev, label, uri, sizeof uri) == 0 &&
                peers_set(ev, pv, true, PEERS_KEY_CA, uri, err) < 0)
                log_warning("cannot publish the CA secret: %s", ERRMSG(*err));
        }
        return 0;
    }
    if (rc != -ENOENT)
        return rc;
    if (!leader)
        return errmsg_set(err, -EAGAIN, "waiting for the leader to create the internal CA");
    if (!pv->related)
        return errmsg_set(err, -EAGAIN, "waiting for the peer relation");

    char cn[X509_CN_LEN + 1];
    snprintf(cn, sizeof cn, "%.40s internal CA", pv->app);
    char *cert = NULL, *key = NULL;
    if (x509_ca_create(cn, PKI_CA_DAYS, &cert, &key, err) < 0)
        return -EIO;
    struct secret_field f[] = {{CA_KEY_CERT, cert}, {CA_KEY_KEY, key}};
    char *uri = NULL;
    rc = hooktool_secret_add(ev, "application", label, f, 2, &uri, err);
    if (rc == 0) {
        rc = peers_set(ev, pv, true, PEERS_KEY_CA, uri, err);
        log_info("created the internal CA (secret %s)", uri);
    }
    free(uri);
    if (rc < 0) {
        free(cert);
        password_free(key);
        return -EIO;
    }
    *ca_cert = cert;
    *ca_key = key;
    return 0;
}

struct wanted_names {
    const char *dns[6];
    size_t n_dns;
    const char *ips[3];
    size_t n_ips;
    char host[256];
};

static void wanted(const struct peers_view *pv, struct wanted_names *w)
{
    *w = (struct wanted_names){0};
    w->dns[w->n_dns++] = pv->me;
    w->dns[w->n_dns++] = "localhost";
    if (gethostname(w->host, sizeof w->host) == 0 && w->host[0] &&
        strcmp(w->host, pv->me) != 0 && strcmp(w->host, "localhost") != 0)
        w->dns[w->n_dns++] = w->host;
    if (pv->my_address[0])
        w->ips[w->n_ips++] = pv->my_address;
    w->ips[w->n_ips++] = "127.0.0.1";
}

/* Whether cert (may be NULL) is current: matches the key, chains to the CA, has the
 * wanted names and is not due for renewal. why says what is not. */
static bool cert_current(const char *cert, const char *key, const char *ca,
                         const struct wanted_names *w, const char **why)
{
    struct x509_info info;
    bool match = false;
    char *e = NULL;
    bool ok = false;
    struct x509_sans want = {.dns = w->dns, .n_dns = w->n_dns, .ips = w->ips, .n_ips = w->n_ips};
    if (!cert)
        *why = "there is none";
    else if (x509_cert_info(cert, &info, &e) < 0)
        *why = "it cannot be read";
    else if (x509_key_matches_cert(key, cert, &match, &e) < 0 || !match)
        *why = "it is not for this unit's key";
    else if (x509_verify_chain(cert, ca, time(NULL), &e) < 0)
        *why = "it does not verify against the internal CA";
    else if (!x509_sans_equal(&info.sans, &want))
        *why = "this unit's addresses or names changed";
    else if (x509_renew_due(&info, time(NULL), RENEW_PERCENT))
        *why = "it is due for renewal";
    else
        ok = true;
    free(e);
    return ok;
}

int pki_install_copy(const struct pki_files *f, const char *user, const char *ca,
                     const char *cert, const char *key, bool *changed, char **err)
{
    uid_t uid = 0;
    gid_t gid = 0;
    if (user) {
        const struct passwd *pw = getpwnam(user);
        if (!pw)
            return 0; /* that service is not installed (yet) */
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    int a = pki_write_file(f->ca, ca, uid, gid, err);
    int b = a < 0 ? a : pki_write_file(f->cert, cert, uid, gid, err);
    int c = b < 0 ? b : pki_write_file(f->key, key, uid, gid, err);
    if (c < 0)
        return c;
    if (a > 0 || b > 0 || c > 0)
        *changed = true;
    return 0;
}

/* A key and a certificate from the internal CA, current for w: read from f (the key is
 * replaced when unusable, the certificate reissued when not current). *key (sodium
 * buffer) and *cert (malloc'd) for the caller. */
static int converge_identity(const struct pki_files *f, const char *what, const char *cn,
                             enum x509_usage usage, const char *ca_cert, const char *ca_key,
                             const struct wanted_names *w, char **key, char **cert, char **err)
{
    char *csr = NULL;
    int rc = pki_read_file(f->key, true, key, err);
    if (rc < 0)
        return rc;
    char *why_key = NULL;
    if (!*key || x509_key_check(*key, strlen(*key), &why_key) < 0) {
        if (*key)
            log_warning("the %s key is unusable (%s): a new one", what, ERRMSG(why_key));
        password_free(*key);
        *key = NULL;
        rc = x509_key_generate(X509_KEY_ECDSA_P256, key, err);
        if (rc < 0)
            goto out;
    }
    rc = pki_read_file(f->cert, false, cert, err);
    if (rc < 0)
        goto out;
    const char *why = NULL;
    if (!cert_current(*cert, *key, ca_cert, w, &why)) {
        log_info("issuing the %s certificate: %s", what, why);
        free(*cert);
        *cert = NULL;
        struct x509_sans sans = {.dns = w->dns, .n_dns = w->n_dns, .ips = w->ips,
                                 .n_ips = w->n_ips};
        rc = x509_csr_create(*key, cn, &sans, &csr, err);
        if (rc == 0)
            rc = x509_issue(csr, ca_cert, ca_key, PKI_CERT_DAYS, usage, cert, err);
    }
out:
    free(why_key);
    free(csr);
    return rc;
}

int pki_converge(const struct hook_event *ev, const struct peers_view *pv, bool leader,
                 bool *changed, char **err)
{
    *changed = false;
    char *ca_cert = NULL, *ca_key = NULL, *key = NULL, *cert = NULL;
    int rc = ensure_ca(ev, pv, leader, &ca_cert, &ca_key, err);
    if (rc < 0)
        return rc;
    struct wanted_names w;
    wanted(pv, &w);
    rc = converge_identity(&pki_agent, "unit's peer", pv->me, X509_USAGE_SERVER_CLIENT, ca_cert,
                           ca_key, &w, &key, &cert, err);
    if (rc == 0)
        rc = pki_install_copy(&pki_agent, NULL, ca_cert, cert, key, changed, err);
    if (rc == 0)
        rc = pki_install_copy(&pki_pg, "postgres", ca_cert, cert, key, changed, err);
    password_free(key);
    free(cert);
    key = cert = NULL;
    const struct passwd *pw = rc == 0 ? getpwnam(PKI_EXPORTER_USER) : NULL;
    if (pw) {
        /* its own server-only key; a change needs no restart (the exporter reads its web
         * configuration's files for every new connection). Owned by root, readable by its
         * group: the exporter's user cannot replace them (nor the directory). Metrics are
         * not worth failing the pass for: a problem here is a warning. */
        gid_t gid = pw->pw_gid;
        char cn[ETCD_NAME_MAX + 16];
        snprintf(cn, sizeof cn, "%s-metrics", pv->me);
        char *e2 = NULL;
        struct stat top;
        if (stat(PKI_STATE_DIR, &top) == 0 && (top.st_mode & 0111) != 0111)
            (void)chmod(PKI_STATE_DIR, (top.st_mode & 0777) | 0111); /* traverse only */
        int r2 = converge_identity(&pki_exporter, "metrics exporter", cn, X509_USAGE_SERVER,
                                   ca_cert, ca_key, &w, &key, &cert, &e2);
        const char *const files[3][2] = {{pki_exporter.ca, ca_cert},
                                         {pki_exporter.cert, cert},
                                         {pki_exporter.key, key}};
        for (int i = 0; r2 >= 0 && i < 3; i++)
            r2 = pki_write_file_mode(files[i][0], files[i][1], 0, gid, 0640, 0750, &e2);
        if (r2 < 0)
            log_warning("the metrics exporter's certificate: %s", ERRMSG(e2));
        free(e2);
    }
    free(ca_cert);
    password_free(ca_key);
    password_free(key);
    free(cert);
    return rc;
}

bool pki_time_after(struct timespec a, struct timespec b)
{
    return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

struct timespec pki_files_mtime(const struct pki_files *f)
{
    struct timespec newest = {0};
    const char *files[] = {f->ca, f->cert, f->key};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        struct stat st;
        if (stat(files[i], &st) == 0 && pki_time_after(st.st_mtim, newest))
            newest = st.st_mtim;
    }
    return newest;
}

bool pki_ready(void)
{
    return access(pki_peer_agent.ca, R_OK) == 0 && access(pki_peer_agent.cert, R_OK) == 0 &&
           access(pki_peer_agent.key, R_OK) == 0;
}
