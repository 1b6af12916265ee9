/* Installing the agent as a systemd service (service.h): template rendering, atomic unit
 * file writes, and the two systemctl calls with their failures reported clearly. */
/* _GNU_SOURCE is how glibc is asked for asprintf, pipe2, close_range, open_memstream. */
#define _GNU_SOURCE
#include "service.h"

#include "errmsg.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TEMPLATE ((size_t)65536)
#define MAX_STDERR ((size_t)4096)

static bool safe_path(const char *s)
{
    if (!s || s[0] != '/' || strlen(s) > 4096)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '.' || c == '_' || c == '+' || c == '@' || c == '-'))
            return false;
    }
    return true;
}

int service_render(const char *tmpl, const char *agent, const char *socket, char **out, char **err)
{
    *out = NULL;
    if (!tmpl)
        return errmsg_set(err, -EINVAL, "no template");
    if (!safe_path(agent))
        return errmsg_set(err, -EINVAL, "agent path is not an absolute path of [A-Za-z0-9/._+@-]");
    if (!safe_path(socket))
        return errmsg_set(err, -EINVAL, "socket path is not an absolute path of [A-Za-z0-9/._+@-]");
    static const struct {
        const char *key;
        size_t len;
    } keys[] = {{"@AGENT@", 7}, {"@SOCKET@", 8}};
    const char *vals[] = {agent, socket};

    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return errmsg_set(err, -ENOMEM, "out of memory");
    for (const char *p = tmpl; *p;) {
        bool hit = false;
        for (size_t k = 0; k < 2 && !hit; k++) {
            if (strncmp(p, keys[k].key, keys[k].len) == 0) {
                fputs(vals[k], f);
                p += keys[k].len;
                hit = true;
            }
        }
        if (!hit)
            fputc(*p++, f);
    }
    bool failed = ferror(f) != 0; /* before fclose: `ferror(f) | fclose(f)` is unordered */
    if (fclose(f) != 0 || failed) {
        free(buf);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    *out = buf;
    return 0;
}

static int read_template(const char *dir, const char *name, char **out, char **err)
{
    *out = NULL;
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return errmsg_set(err, -ENOMEM, "out of memory");
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errmsg_set(err, -errno, "cannot open the template %s: %s", path, strerror(errno));
        goto out;
    }
    char *buf = malloc(MAX_TEMPLATE + 1);
    if (!buf) {
        rc = errmsg_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, MAX_TEMPLATE + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = errmsg_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > MAX_TEMPLATE) {
            rc = errmsg_set(err, -EFBIG, "%s is larger than %zu bytes", path, MAX_TEMPLATE);
            break;
        }
    }
    if (rc == 0 && memchr(buf, '\0', len))
        rc = errmsg_set(err, -EINVAL, "%s contains a NUL byte", path);
    if (rc < 0) {
        free(buf);
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* Write dir/name atomically: a temporary file in the same directory, fsync, rename. */
static int write_unit(const char *dir, const char *name, const char *text, char **err)
{
    char *path = NULL, *tmp = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0 || asprintf(&tmp, "%s/.%s.tmp", dir, name) < 0) {
        free(path);
        return errmsg_set(err, -ENOMEM, "out of memory");
    }
    int rc = 0;
    (void)unlink(tmp); /* a leftover of an interrupted install */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = errmsg_set(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    int wr = proto_write_all(fd, text, strlen(text));
    if (wr < 0)
        rc = errmsg_set(err, wr, "cannot write %s: %s", tmp, strerror(-wr));
    if (rc == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
        rc = errmsg_set(err, -errno, "cannot finish %s: %s", tmp, strerror(errno));
    if (close(fd) < 0 && rc == 0)
        rc = errmsg_set(err, -errno, "cannot close %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) < 0)
        rc = errmsg_set(err, -errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc < 0)
        (void)unlink(tmp);
out:
    free(path);
    free(tmp);
    return rc;
}

/* Run systemctl with args; 0 when it exits 0, else -1 with *err quoting its stderr. */
static int run_systemctl(const char *systemctl, const char *const args[], const char *what,
                         char **err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return errmsg_set(err, -errno, "%s: pipe: %s", what, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return errmsg_set(err, -e, "%s: fork: %s", what, strerror(e));
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(p[1], 2) < 0)
            _exit(127);
        if (close_range(3, ~0U, 0) < 0)
            for (int fd = 3; fd < 65536; fd++)
                close(fd);
        execv(systemctl, (char *const *)args);
        static const char msg[] = "cannot execute systemctl\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(127);
    }
    close(p[1]);
    /* The first MAX_STDERR bytes of stderr are kept; the rest is read and dropped. */
    char buf[MAX_STDERR + 1];
    size_t len = 0;
    for (;;) {
        char scratch[1024];
        bool keep = len < MAX_STDERR;
        ssize_t r =
            keep ? read(p[0], buf + len, MAX_STDERR - len) : read(p[0], scratch, sizeof scratch);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (keep)
            len += (size_t)r;
    }
    close(p[0]);
    buf[len] = '\0';
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return errmsg_set(err, -errno, "%s: waitpid: %s", what, strerror(errno));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return errmsg_set(err, -1, "%s failed with exit code %d%s%s (is systemd running?)", what, code,
                      buf[0] ? ": " : "", buf);
}

int service_install(const struct service_paths *paths, char **err)
{
    static const char *const names[] = {SERVICE_SOCKET_NAME, SERVICE_NAME};
    char *text[2] = {NULL, NULL};
    int rc = 0;
    /* Render both before writing either: a bad template changes nothing. */
    for (int i = 0; i < 2 && rc == 0; i++) {
        char *tmpl = NULL;
        rc = read_template(paths->templates, names[i], &tmpl, err);
        if (rc == 0)
            rc = service_render(tmpl, paths->agent, paths->socket, &text[i], err);
        free(tmpl);
    }
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = write_unit(paths->unit_dir, names[i], text[i], err);
    free(text[0]);
    free(text[1]);
    if (rc < 0)
        return rc;

    const char *reload[] = {paths->systemctl, "daemon-reload", NULL};
    rc = run_systemctl(paths->systemctl, reload, "systemctl daemon-reload", err);
    if (rc < 0)
        return rc;
    const char *enable[] = {paths->systemctl, "enable", "--now", SERVICE_SOCKET_NAME, NULL};
    return run_systemctl(paths->systemctl, enable, "systemctl enable --now " SERVICE_SOCKET_NAME,
                         err);
}
