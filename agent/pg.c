/* The PostgreSQL server as a workload (pg.h): packages, initdb, detached start,
 * adoption from postmaster.pid, stop, reload, and the cluster's files. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "pg.h"

#include "errmsg.h"
#include "log.h"
#include "proc.h"
#include "proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define PG_BASE "/usr/lib/postgresql"
#define DATA_BASE "/var/lib/postgresql"
#define CLUSTER_NAME "charm"
#define APT_TIMEOUT_MS (15 * 60 * 1000)
#define INITDB_TIMEOUT_MS (5 * 60 * 1000)

void pg_path(const struct pg_install *pg, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", pg->datadir, name);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int fill_install(int major, struct pg_install *out, char **err)
{
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
        return errmsg_set(err, -ENOENT, "the OS user postgres does not exist (is the "
                                        "postgresql package installed?)");
    *out = (struct pg_install){.major = major, .uid = pw->pw_uid, .gid = pw->pw_gid};
    snprintf(out->bindir, sizeof out->bindir, PG_BASE "/%d/bin", major);
    snprintf(out->datadir, sizeof out->datadir, DATA_BASE "/%d/" CLUSTER_NAME, major);
    return 0;
}

int pg_detect(struct pg_install *out, char **err)
{
    int best = 0, with_cluster = 0;
    for (int v = PG_MIN_MAJOR; v <= PG_MAX_MAJOR; v++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, PG_BASE "/%d/bin/postgres", v);
        if (!is_file(path))
            continue;
        best = v;
        snprintf(path, sizeof path, DATA_BASE "/%d/" CLUSTER_NAME "/PG_VERSION", v);
        if (is_file(path))
            with_cluster = v;
    }
    int major = with_cluster ? with_cluster : best;
    if (!major)
        return errmsg_set(err, -ENOENT, "no PostgreSQL %d to %d server is installed",
                          PG_MIN_MAJOR, PG_MAX_MAJOR);
    return fill_install(major, out, err);
}

static int write_dropin(char **err)
{
    if (mkdir("/etc/postgresql-common", 0755) < 0 && errno != EEXIST)
        return errmsg_set(err, -errno, "/etc/postgresql-common: %s", strerror(errno));
    if (mkdir("/etc/postgresql-common/createcluster.d", 0755) < 0 && errno != EEXIST)
        return errmsg_set(err, -errno, "/etc/postgresql-common/createcluster.d: %s",
                          strerror(errno));
    static const char text[] = "# written by pg-agent: the charm manages its own cluster\n"
                               "create_main_cluster = false\n";
    FILE *f = fopen(PG_CREATECLUSTER_DROPIN, "re");
    if (f) {
        char buf[sizeof text + 1];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        (void)fclose(f);
        if (strcmp(buf, text) == 0)
            return 0;
    }
    f = fopen(PG_CREATECLUSTER_DROPIN, "we");
    if (!f)
        return errmsg_set(err, -EIO, "cannot write " PG_CREATECLUSTER_DROPIN);
    bool written = fputs(text, f) >= 0;
    if (fclose(f) != 0 || !written) /* closed on every path */
        return errmsg_set(err, -EIO, "cannot write " PG_CREATECLUSTER_DROPIN);
    return 0;
}

/* apt-get install of pkgs (NULL-terminated, at most 4) with apt-get update when that
 * fails; under systemd as a transient unit (the agent's service cannot write /usr:
 * ProtectSystem=strict), then each service in off disabled and stopped. */
static int apt_install(const char *const pkgs[], bool recommends, const char *const off[],
                       char **err)
{
    static char *const env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                                "DEBIAN_FRONTEND=noninteractive", NULL};
    struct proc_opts o = {.timeout_ms = APT_TIMEOUT_MS, .env = env};
    bool systemd = sd_booted() > 0;
    const char *update[] = {"/usr/bin/systemd-run", "--wait", "--collect", "--quiet",
                            "--setenv=DEBIAN_FRONTEND=noninteractive", "/usr/bin/apt-get",
                            "update", "-qq", NULL};
    const char *install[16] = {"/usr/bin/systemd-run", "--wait", "--collect", "--quiet",
                               "--setenv=DEBIAN_FRONTEND=noninteractive", "/usr/bin/apt-get",
                               "install", "-y", "-qq"};
    size_t n = 9;
    if (!recommends)
        install[n++] = "--no-install-recommends";
    for (size_t k = 0; pkgs[k] && n < 15; k++)
        install[n++] = pkgs[k];
    install[n] = NULL;
    const char *const *u = systemd ? update : update + 5;
    const char *const *i = systemd ? install : install + 5;
    log_info("installing %s%s%s%s", pkgs[0], pkgs[1] ? " and more" : "",
             recommends ? "" : " (without recommends)", systemd ? " (systemd-run apt-get)" : "");
    int rc = proc_run(i, &o, NULL, NULL);
    /* Package lists may be missing or stale on a fresh machine. */
    if (rc < 0 && proc_run(u, &o, NULL, err) == 0)
        rc = proc_run(i, &o, NULL, err);
    else if (rc < 0)
        return -1;
    for (size_t k = 0; rc == 0 && systemd && off && off[k]; k++) {
        const char *cmd[] = {"/usr/bin/systemctl", "disable", "--now", off[k], NULL};
        (void)proc_run(cmd, &o, NULL, NULL);
    }
    return rc;
}

int pg_install_packages(char **err)
{
    int rc = write_dropin(err);
    if (rc < 0)
        return rc;
    /* The package's own etcd (localhost:2379) would take the charm's client port. */
    static const char *const pkgs[] = {"postgresql", "etcd-server", NULL};
    static const char *const off[] = {"etcd.service", NULL};
    return apt_install(pkgs, true, off, err);
}

int pg_install_exporter(char **err)
{
    /* without recommends (no node exporter); the package's own service (all addresses, no
     * TLS, no database) stays off: the agent runs its own (exporter.c) */
    static const char *const pkgs[] = {"prometheus-postgres-exporter", NULL};
    static const char *const off[] = {"prometheus-postgres-exporter.service", NULL};
    return apt_install(pkgs, false, off, err);
}

int pg_disable_distro_clusters(char **err)
{
    (void)err;
    int disabled = 0;
    DIR *vd = opendir("/etc/postgresql");
    if (!vd)
        return 0;
    struct dirent *v;
    while ((v = readdir(vd))) {
        if (v->d_name[0] == '.')
            continue;
        char vpath[PATH_MAX];
        snprintf(vpath, sizeof vpath, "/etc/postgresql/%s", v->d_name);
        DIR *cd = opendir(vpath);
        if (!cd)
            continue;
        struct dirent *c;
        while ((c = readdir(cd))) {
            if (c->d_name[0] == '.')
                continue;
            char start[PATH_MAX + 300];
            snprintf(start, sizeof start, "%s/%s/start.conf", vpath, c->d_name);
            FILE *f = fopen(start, "re");
            if (!f)
                continue;
            char buf[512];
            bool is_disabled = false;
            while (fgets(buf, sizeof buf, f))
                if (strncmp(buf, "disabled", 8) == 0)
                    is_disabled = true;
            (void)fclose(f);
            if (is_disabled)
                continue;
            const char *stop[] = {"/usr/bin/pg_ctlcluster", v->d_name, c->d_name, "stop",
                                  "--mode", "fast", NULL};
            struct proc_opts o = {.timeout_ms = 120000};
            char *e = NULL;
            if (proc_run(stop, &o, NULL, &e) < 0)
                log_debug("distro cluster %s/%s: %s", v->d_name, c->d_name, ERRMSG(e));
            free(e);
            f = fopen(start, "we");
            bool written = false;
            if (f) {
                written =
                    fputs("# disabled by pg-agent: the charm runs its own cluster\ndisabled\n",
                          f) >= 0;
                written = fclose(f) == 0 && written;
            }
            if (written) {
                log_info("the distro's cluster %s/%s is stopped and disabled", v->d_name,
                         c->d_name);
                disabled++;
            }
        }
        closedir(cd);
    }
    closedir(vd);
    return disabled;
}

bool pg_initialised(const struct pg_install *pg)
{
    char path[PATH_MAX + 16];
    pg_path(pg, "PG_VERSION", path, sizeof path);
    return is_file(path);
}

/* mkdir -p for root-created directories handed to postgres (mode). */
static int ensure_dir(const char *path, mode_t mode, uid_t uid, gid_t gid, char **err)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return errmsg_set(err, -errno, "cannot create %s: %s", path, strerror(errno));
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return errmsg_set(err, -ENOTDIR, "%s is not a directory", path);
    if ((st.st_uid != uid || st.st_gid != gid) && chown(path, uid, gid) < 0)
        return errmsg_set(err, -errno, "cannot chown %s: %s", path, strerror(errno));
    if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0)
        return errmsg_set(err, -errno, "cannot chmod %s: %s", path, strerror(errno));
    return 0;
}

static int ensure_runtime_dirs(const struct pg_install *pg, char **err)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, DATA_BASE "/%d", pg->major);
    int rc = ensure_dir(DATA_BASE, 0755, pg->uid, pg->gid, err);
    if (rc == 0)
        rc = ensure_dir(parent, 0700, pg->uid, pg->gid, err);
    if (rc == 0)
        /* 0775, not Debian's 2775: the agent's unit forbids setting SGID bits
         * (RestrictSUIDSGID), and nothing here needs one. */
        rc = ensure_dir(PG_SOCKET_DIR, 0775, pg->uid, pg->gid, err);
    if (rc == 0)
        rc = ensure_dir(PG_LOG_DIR, 01775, 0, pg->gid, err);
    return rc;
}

int pg_prepare_dirs(const struct pg_install *pg, char **err)
{
    return ensure_runtime_dirs(pg, err);
}

static int remove_tree(const char *path)
{
    const char *rm[] = {"/bin/rm", "-rf", "--one-file-system", "--", path, NULL};
    struct proc_opts o = {.timeout_ms = 120000};
    return proc_run(rm, &o, NULL, NULL);
}

int pg_initdb(const struct pg_install *pg, char **err)
{
    int rc = ensure_runtime_dirs(pg, err);
    if (rc < 0)
        return rc;
    char scratch[PATH_MAX + 16], initdb[PATH_MAX + 16];
    snprintf(scratch, sizeof scratch, "%s.initdb", pg->datadir);
    snprintf(initdb, sizeof initdb, "%s/initdb", pg->bindir);
    remove_tree(scratch); /* a previous attempt that died half-way */
    const char *argv[] = {initdb,
                          "--pgdata", scratch,
                          "--username", "postgres",
                          "--data-checksums",
                          "--encoding", "UTF8",
                          "--locale", "C.UTF-8",
                          "--auth-local", "peer",
                          "--auth-host", "scram-sha-256",
                          "--no-instructions",
                          NULL};
    struct proc_opts o = {.timeout_ms = INITDB_TIMEOUT_MS, .as_user = true, .uid = pg->uid,
                          .gid = pg->gid, .cwd = "/tmp"};
    log_info("initdb: creating the cluster in %s (data checksums, SCRAM)", pg->datadir);
    if (proc_run(argv, &o, NULL, err) < 0) {
        remove_tree(scratch);
        return -1;
    }
    if (rename(scratch, pg->datadir) < 0) {
        int e = errno;
        remove_tree(scratch);
        return errmsg_set(err, -e, "cannot move the new cluster to %s: %s", pg->datadir,
                          strerror(e));
    }
    return 0;
}

int pg_read_file(const struct pg_install *pg, const char *name, char **out, char **err)
{
    *out = NULL;
    char path[PATH_MAX + 64];
    pg_path(pg, name, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return errmsg_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            close(fd);
            return errmsg_set(err, -ENOMEM, "out of memory");
        }
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                free(buf);
            buf = nb;
            cap *= 2;
            continue;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return errmsg_set(err, -e, "%s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    return 0;
}

int pg_write_file(const struct pg_install *pg, const char *name, const char *content,
                  char **err)
{
    char *cur = NULL;
    int rc = pg_read_file(pg, name, &cur, err);
    if (rc < 0)
        return rc;
    bool same = cur && strcmp(cur, content) == 0;
    free(cur);
    if (same)
        return 0;
    char path[PATH_MAX + 64], tmp[PATH_MAX + 80];
    pg_path(pg, name, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.pg-agent-new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return errmsg_set(err, -errno, "%s: %s", tmp, strerror(errno));
    int wr = proto_write_all(fd, content, strlen(content));
    if (wr < 0) {
        close(fd);
        unlink(tmp);
        return errmsg_set(err, wr, "%s: %s", tmp, strerror(-wr));
    }
    if (fchown(fd, pg->uid, pg->gid) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return errmsg_set(err, -e, "%s: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return errmsg_set(err, -e, "%s: %s", path, strerror(e));
    }
    return 1;
}

pid_t pg_running(const struct pg_install *pg, bool *ready)
{
    *ready = false;
    char path[PATH_MAX + 32];
    pg_path(pg, "postmaster.pid", path, sizeof path);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    /* Lines: pid, datadir, start time, port, socket dir, listen addr, shmem key, status. */
    char line[PATH_MAX + 32];
    long pid = 0;
    bool same_dir = false;
    for (int i = 1; fgets(line, sizeof line, f); i++) {
        line[strcspn(line, "\n")] = '\0';
        if (i == 1)
            pid = strtol(line, NULL, 10);
        else if (i == 2)
            same_dir = strcmp(line, pg->datadir) == 0;
        else if (i == 8)
            *ready = strncmp(line, "ready", 5) == 0;
    }
    (void)fclose(f);
    if (!same_dir || !proc_alive((pid_t)pid)) {
        *ready = false;
        return 0;
    }
    /* A reused pid would not be a postgres whose cwd is this data directory. */
    char cwd_link[64], cwd[PATH_MAX];
    snprintf(cwd_link, sizeof cwd_link, "/proc/%ld/cwd", pid);
    ssize_t n = readlink(cwd_link, cwd, sizeof cwd - 1);
    if (n > 0) {
        cwd[n] = '\0';
        if (strcmp(cwd, pg->datadir) != 0) {
            *ready = false;
            return 0;
        }
    }
    return (pid_t)pid;
}

/* The last lines of the startup log, for a failed start's message. */
static void startup_log_tail(const char *path, char *out, size_t size)
{
    out[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[512], last[512] = "";
    while (fgets(line, sizeof line, f))
        if (line[0] != '\n')
            snprintf(last, sizeof last, "%s", line);
    (void)fclose(f);
    last[strcspn(last, "\n")] = '\0';
    size_t n = strlen(last);
    if (n >= size)
        n = size - 1;
    memcpy(out, last, n);
    out[n] = '\0';
}

int pg_start(const struct pg_install *pg, int timeout_ms, char **err)
{
    bool ready;
    if (pg_running(pg, &ready) > 0 && ready)
        return 0;
    int rc = ensure_runtime_dirs(pg, err);
    if (rc < 0)
        return rc;
    char postgres[PATH_MAX + 16], logfile[PATH_MAX];
    snprintf(postgres, sizeof postgres, "%s/postgres", pg->bindir);
    snprintf(logfile, sizeof logfile, PG_LOG_DIR "/postgresql-%d-charm-startup.log", pg->major);

    if (!pg_running(pg, &ready)) {
        if (sd_booted() > 0) {
            /* A transient unit: outside the agent's cgroup, stopped only on purpose. */
            char user[64];
            snprintf(user, sizeof user, "--uid=%ld", (long)pg->uid);
            // NOLINTNEXTLINE(bugprone-suspicious-missing-comma): deliberate "--unit=" concatenation
            const char *argv[] = {"/usr/bin/systemd-run", "--unit=" PG_SYSTEMD_UNIT,
                                  "--collect", "--quiet", "--property=Type=notify",
                                  "--property=KillMode=mixed", "--property=KillSignal=SIGINT",
                                  "--property=TimeoutStopSec=300", user, postgres, "-D",
                                  pg->datadir, NULL};
            struct proc_opts o = {.timeout_ms = timeout_ms};
            const char *reset[] = {"/usr/bin/systemctl", "reset-failed", PG_SYSTEMD_UNIT, NULL};
            proc_run(reset, &o, NULL, NULL);
            if (proc_run(argv, &o, NULL, err) < 0)
                return -1;
        } else {
            const char *argv[] = {postgres, "-D", pg->datadir, NULL};
            struct proc_opts o = {.as_user = true, .uid = pg->uid, .gid = pg->gid,
                                  .cwd = pg->datadir, .output_file = logfile};
            pid_t pid = proc_spawn(argv, &o, err);
            if (pid < 0)
                return pid;
            log_info("PostgreSQL %d started (pid %ld)", pg->major, (long)pid);
        }
    }
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        pid_t pid = pg_running(pg, &ready);
        if (pid > 0 && ready)
            return 0;
        if (waited > 2000 && pid == 0) {
            char tail[400];
            startup_log_tail(logfile, tail, sizeof tail);
            return errmsg_set(err, -ESRCH, "PostgreSQL exited during start-up%s%s",
                              *tail ? ": " : "", tail);
        }
        proc_sleep_ms(100);
    }
    return errmsg_set(err, -ETIMEDOUT, "PostgreSQL did not accept connections within %d s",
                      timeout_ms / 1000);
}

int pg_stop(const struct pg_install *pg, int timeout_ms, char **err)
{
    bool ready;
    pid_t pid = pg_running(pg, &ready);
    if (pid <= 0)
        return 0;
    log_info("stopping PostgreSQL (fast shutdown, pid %ld)", (long)pid);
    kill(pid, SIGINT);
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (!proc_alive(pid))
            return 0;
        proc_sleep_ms(100);
    }
    log_warning("PostgreSQL did not stop within %d s: immediate shutdown", timeout_ms / 1000);
    kill(pid, SIGQUIT);
    for (int waited = 0; waited < 10000; waited += 100) {
        if (!proc_alive(pid))
            return 0;
        proc_sleep_ms(100);
    }
    return errmsg_set(err, -ETIMEDOUT, "PostgreSQL (pid %ld) does not stop", (long)pid);
}

int pg_reload(const struct pg_install *pg, char **err)
{
    bool ready;
    pid_t pid = pg_running(pg, &ready);
    if (pid <= 0)
        return errmsg_set(err, -ESRCH, "PostgreSQL is not running");
    if (kill(pid, SIGHUP) < 0)
        return errmsg_set(err, -errno, "cannot signal PostgreSQL: %s", strerror(errno));
    return 0;
}
