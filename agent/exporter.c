/* The metrics exporter as a supervised workload (see exporter.h). */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "exporter.h"

#include "errmsg.h"
#include "log.h"
#include "pki.h"
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WEB_CONFIG PKI_EXPORTER_DIR "/web.yml"
#define QUERIES_COPY PKI_EXPORTER_DIR "/queries.yaml"
#define DSN "DATA_SOURCE_NAME=host=/run/postgresql port=5432 user=monitoring dbname=postgres " \
            "sslmode=disable application_name=pg-agent-exporter connect_timeout=5"
#define BACKOFF_MIN_S 5
#define BACKOFF_MAX_S 300
#define YOUNG_S 30 /* dying sooner than this after a start doubles the backoff */

static struct {
    bool wanted;               /* converge started it: supervise it */
    char address[INET6_ADDRSTRLEN];
    time_t started;            /* of the last start */
    time_t next_try;           /* no restart before */
    int backoff_s;
} S = {.backoff_s = BACKOFF_MIN_S};

static int add(struct exporter_argv *a, size_t *n, const char *prefix, const char *v)
{
    if (*n >= EXPORTER_ARGV_MAX)
        return -ENOSPC;
    int len = snprintf(a->store + a->used, sizeof a->store - a->used, "%s%s", prefix, v);
    if (len < 0 || (size_t)len >= sizeof a->store - a->used)
        return -ENOSPC;
    a->argv[(*n)++] = a->store + a->used;
    a->used += (size_t)len + 1;
    return 0;
}

int exporter_argv_build(const char *address, struct exporter_argv *out, char **err)
{
    *out = (struct exporter_argv){0};
    unsigned char bin[16];
    bool v4 = address && inet_pton(AF_INET, address, bin) == 1;
    bool v6 = !v4 && address && inet_pton(AF_INET6, address, bin) == 1;
    if (!v4 && !v6)
        return errmsg_set(err, -EINVAL, "the exporter needs the unit's IP address, not '%s'",
                          address ? address : "");
    size_t n = 0;
    char listen[INET6_ADDRSTRLEN + 16];
    snprintf(listen, sizeof listen, v6 ? "[%s]:%d" : "%s:%d", address, EXPORTER_PORT);
    int rc = add(out, &n, "", EXPORTER_BIN);
    if (rc == 0)
        rc = add(out, &n, "--web.listen-address=", listen);
    if (rc == 0)
        rc = add(out, &n, "--web.config.file=", WEB_CONFIG);
    if (rc == 0)
        rc = add(out, &n, "--extend.query-path=", QUERIES_COPY);
    if (rc == 0)
        rc = add(out, &n, "", "--auto-discover-databases");
    if (rc == 0)
        rc = add(out, &n, "", "--exclude-databases=template0,template1");
    if (rc == 0)
        rc = add(out, &n, "", "--log.level=warn");
    if (rc < 0)
        return errmsg_set(err, rc, "the exporter's command line is too long");
    out->argv[n] = NULL;
    return 0;
}

int exporter_web_config(char **out, char **err)
{
    if (asprintf(out,
                 "# written by pg-agent: the exporter serves TLS only, with its own certificate\n"
                 "tls_server_config:\n"
                 "  cert_file: %s\n"
                 "  key_file: %s\n"
                 "  min_version: TLS12\n",
                 pki_exporter.cert, pki_exporter.key) < 0) {
        *out = NULL;
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static pid_t running_pid(void)
{
    return proc_pidfile_running(EXPORTER_PID_FILE, EXPORTER_BIN);
}

/* Whether the running process has exactly this command line. */
static bool same_cmdline(pid_t pid, const struct exporter_argv *a)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n <= 0)
        return false;
    size_t off = 0;
    for (size_t i = 0; a->argv[i]; i++) {
        size_t len = strlen(a->argv[i]) + 1;
        if (off + len > (size_t)n || memcmp(buf + off, a->argv[i], len) != 0)
            return false;
        off += len;
    }
    return off == (size_t)n;
}

/* The exporter appends to its log for ever (it logs every failed scrape while PostgreSQL
 * is down): past EXPORTER_LOG_MAX the file moves to .1 (the exporter's descriptor follows
 * it until its next start) and a new one is opened for the next start. */
static void trim_log(void)
{
    struct stat st;
    if (stat(EXPORTER_LOG_FILE, &st) == 0 && st.st_size > EXPORTER_LOG_MAX) {
        if (rename(EXPORTER_LOG_FILE, EXPORTER_LOG_FILE ".1") == 0)
            log_info("%s moved to %s.1 (over %d MiB)", EXPORTER_LOG_FILE, EXPORTER_LOG_FILE,
                     EXPORTER_LOG_MAX >> 20);
    }
}

static void stop_pid(pid_t pid, const char *why)
{
    log_info("stopping the metrics exporter (pid %ld): %s", (long)pid, why);
    kill(pid, SIGTERM);
    for (int i = 0; i < 30 && proc_alive(pid); i++)
        proc_sleep_ms(100);
    if (proc_alive(pid))
        kill(pid, SIGKILL);
    unlink(EXPORTER_PID_FILE);
}

static int start(const struct exporter_argv *a, const struct passwd *pw, char **err)
{
    static char *const env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", DSN, NULL};
    struct proc_opts o = {.as_user = true, .uid = pw->pw_uid, .gid = pw->pw_gid, .cwd = "/",
                          .env = env, .output_file = EXPORTER_LOG_FILE};
    pid_t pid = proc_spawn_pidfile(a->argv, &o, EXPORTER_PID_FILE, err);
    if (pid < 0)
        return pid;
    S.started = time(NULL);
    log_info("metrics exporter started (pid %ld) on %s", (long)pid, a->argv[1]);
    return 0;
}

/* The charm's queries file, copied where the exporter's user reads it. 1 changed, 0 same,
 * negative errno. */
static int copy_queries(const char *charm_dir, const struct passwd *pw, char **err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", charm_dir, EXPORTER_QUERIES);
    char *buf = NULL;
    int rc = pki_read_file(path, false, &buf, err);
    if (rc < 0)
        return rc;
    if (!buf)
        return errmsg_set(err, -ENOENT, "%s: missing (the charm is incomplete)", path);
    if (strlen(buf) > EXPORTER_QUERIES_MAX) {
        free(buf);
        return errmsg_set(err, -EFBIG, "%s: larger than %zu bytes", path, EXPORTER_QUERIES_MAX);
    }
    rc = pki_write_file_mode(QUERIES_COPY, buf, 0, pw->pw_gid, 0640, 0750, err);
    free(buf);
    return rc;
}

int exporter_converge(const char *address, const char *charm_dir, bool *running, char **err)
{
    *running = false;
    const struct passwd *pw = getpwnam(EXPORTER_USER);
    if (access(EXPORTER_BIN, X_OK) != 0 || !pw)
        return 0; /* not installed (yet): the packages come with PostgreSQL's */
    struct passwd user = *pw; /* getpwnam's storage is static */
    if (access(pki_exporter.cert, F_OK) != 0 || access(pki_exporter.key, F_OK) != 0 ||
        !address || !address[0])
        return 0; /* pki_converge issues it; the address comes with the peer relation */
    trim_log();
    struct exporter_argv a;
    int rc = exporter_argv_build(address, &a, err);
    if (rc < 0)
        return rc;
    char *web = NULL;
    rc = exporter_web_config(&web, err);
    if (rc == 0)
        rc = pki_write_file_mode(WEB_CONFIG, web, 0, user.pw_gid, 0640, 0750, err);
    free(web);
    int queries = rc < 0 ? rc : copy_queries(charm_dir ? charm_dir : "", &user, err);
    if (queries < 0)
        return queries;
    snprintf(S.address, sizeof S.address, "%s", address);
    S.wanted = true;
    pid_t pid = running_pid();
    if (pid > 0 && queries == 0 && same_cmdline(pid, &a)) {
        *running = true;
        return 0;
    }
    if (pid > 0)
        stop_pid(pid, queries > 0 ? "the charm's queries changed" : "its command line changed");
    rc = start(&a, &user, err);
    if (rc == 0)
        *running = true;
    return rc;
}

void exporter_supervise(void)
{
    if (!S.wanted || running_pid() > 0)
        return;
    time_t now = time(NULL);
    if (now < S.next_try)
        return;
    const struct passwd *pw = getpwnam(EXPORTER_USER);
    struct exporter_argv a;
    char *err = NULL;
    if (!pw || exporter_argv_build(S.address, &a, &err) < 0) {
        free(err);
        return;
    }
    struct passwd user = *pw;
    bool young = S.started && now - S.started < YOUNG_S;
    S.backoff_s = young ? (S.backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : S.backoff_s * 2)
                        : BACKOFF_MIN_S;
    S.next_try = now + S.backoff_s;
    log_warning("the metrics exporter is not running%s: starting it (next attempt no sooner "
                "than in %d s; its log: %s)",
                young ? " (it died soon after its start)" : "", S.backoff_s, EXPORTER_LOG_FILE);
    if (start(&a, &user, &err) < 0)
        log_error("cannot start the metrics exporter: %s", ERRMSG(err));
    free(err);
}

void exporter_stop(void)
{
    S.wanted = false;
    pid_t pid = running_pid();
    if (pid > 0)
        stop_pid(pid, "the unit leaves");
}
