/* Running programs for the agent (proc.h): fork/exec with a clean environment, a user
 * switch, a deadline, the tail of the output for messages, and detached spawns. */
/* _GNU_SOURCE is how glibc is asked for asprintf, pipe2, close_range. */
#define _GNU_SOURCE
#include "proc.h"

#include "errmsg.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEEPALIVE_MS 5000
#define DEFAULT_TIMEOUT_MS 60000

static void (*keepalive)(void);

static char *const default_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", NULL};

void proc_set_keepalive(void (*fn)(void))
{
    keepalive = fn;
}

void proc_keepalive(void)
{
    if (keepalive)
        keepalive();
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void proc_sleep_ms(int ms)
{
    long long end = now_ms() + ms;
    for (;;) {
        if (keepalive)
            keepalive();
        long long left = end - now_ms();
        if (left <= 0)
            return;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)((left > 1000 ? 1000 : left) * 1000000)};
        nanosleep(&ts, NULL);
    }
}

int proc_child_stdio(int in_fd, int out_fd, int err_fd)
{
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        return -1;
    if (close_range(3, ~0U, 0) < 0) {
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    }
    struct sigaction sa = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return 0;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void __attribute__((noreturn))
child_exec(const char *const argv[], const struct proc_opts *o, int in_fd, int out_fd)
{
    if (proc_child_stdio(in_fd, out_fd, out_fd) < 0)
        _exit(127);
    if (o->as_user) {
        /* The target's supplementary groups: only its primary group (no NSS call here). */
        if (setgroups(1, &o->gid) < 0 || setgid(o->gid) < 0 || setuid(o->uid) < 0)
            _exit(126);
    }
    umask(0077);
    if (chdir(o->cwd ? o->cwd : "/") < 0)
        _exit(127);
    /* execve's prototype predates const: argv is not modified. */
    execve(argv[0], (char *const *)argv, o->env ? o->env : default_env);
    _exit(127);
}

/* Keep the last PROC_OUTPUT_TAIL bytes of what fd gives until EOF or the deadline. */
struct tail {
    char buf[PROC_OUTPUT_TAIL + 1];
    size_t len;
};

static void tail_add(struct tail *t, const char *data, size_t n)
{
    if (n >= PROC_OUTPUT_TAIL) {
        memcpy(t->buf, data + n - PROC_OUTPUT_TAIL, PROC_OUTPUT_TAIL);
        t->len = PROC_OUTPUT_TAIL;
    } else {
        if (t->len + n > PROC_OUTPUT_TAIL) {
            size_t drop = t->len + n - PROC_OUTPUT_TAIL;
            memmove(t->buf, t->buf + drop, t->len - drop);
            t->len -= drop;
        }
        memcpy(t->buf + t->len, data, n);
        t->len += n;
    }
    t->buf[t->len] = '\0';
}

/* The last non-empty line of the tail, for an error message (into out). */
static void last_line(const struct tail *t, char *out, size_t size)
{
    size_t end = t->len;
    while (end > 0 && (t->buf[end - 1] == '\n' || t->buf[end - 1] == ' '))
        end--;
    size_t start = end;
    while (start > 0 && t->buf[start - 1] != '\n')
        start--;
    size_t n = end - start;
    if (n >= size)
        n = size - 1;
    memcpy(out, t->buf + start, n);
    out[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20)
            out[i] = ' ';
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int proc_run(const char *const argv[], const struct proc_opts *o, char **output, char **err)
{
    if (output)
        *output = NULL;
    if (!argv || !argv[0] || argv[0][0] != '/')
        return errmsg_set(err, -EINVAL, "proc_run: argv[0] must be an absolute path");
    const char *name = base_name(argv[0]);
    int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in_fd < 0)
        return errmsg_set(err, -errno, "/dev/null: %s", strerror(errno));
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        int e = errno;
        close(in_fd);
        return errmsg_set(err, -e, "pipe: %s", strerror(e));
    }
    long long started = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(in_fd);
        close(p[0]);
        close(p[1]);
        return errmsg_set(err, -e, "%s: fork: %s", name, strerror(e));
    }
    if (pid == 0) {
        setpgid(0, 0);
        child_exec(argv, o, in_fd, p[1]);
    }
    close(in_fd);
    close(p[1]);

    struct tail *t = calloc(1, sizeof *t);
    long long deadline = started + (o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS);
    bool eof = false, timed_out = false;
    while (!eof) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (keepalive)
            keepalive();
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(left > KEEPALIVE_MS ? KEEPALIVE_MS : left));
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        char chunk[4096];
        ssize_t r = read(p[0], chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            eof = true;
            continue; /* to the loop test, which ends it */
        }
        if (t)
            tail_add(t, chunk, (size_t)r);
    }
    close(p[0]);
    int status = 0;
    if (timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    } else {
        /* Output closed: the process is exiting (or detached its output); give it the
         * rest of the deadline. */
        for (;;) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid || (w < 0 && errno != EINTR))
                break;
            if (now_ms() >= deadline) {
                timed_out = true;
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                break;
            }
            proc_sleep_ms(10);
        }
    }
    if (timed_out)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    int rc = 0;
    char line[256] = "";
    if (t)
        last_line(t, line, sizeof line);
    if (timed_out) {
        rc = errmsg_set(err, -ETIMEDOUT, "%s did not finish within %d s; killed", name,
                        (int)((deadline - started) / 1000));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        rc = errmsg_set(err, -1, "%s exited with code %d%s%s", name, code, *line ? ": " : "",
                        line);
    }
    log_debug("%s exited after %lld ms", name, now_ms() - started);
    if (output && t)
        *output = strdup(t->buf);
    free(t);
    return rc;
}

pid_t proc_spawn(const char *const argv[], const struct proc_opts *o, char **err)
{
    if (!argv || !argv[0] || argv[0][0] != '/')
        return errmsg_set(err, -EINVAL, "proc_spawn: argv[0] must be an absolute path");
    int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out_fd = -1;
    if (o->output_file)
        out_fd = open(o->output_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                      0600);
    else
        out_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (in_fd < 0 || out_fd < 0) {
        int e = errno;
        if (in_fd >= 0)
            close(in_fd);
        if (out_fd >= 0)
            close(out_fd);
        return errmsg_set(err, -e, "%s: %s", o->output_file ? o->output_file : "/dev/null",
                          strerror(e));
    }
    if (o->output_file && o->as_user && fchown(out_fd, o->uid, o->gid) < 0)
        log_warning("cannot chown %s: %s", o->output_file, strerror(errno));
    /* The grandchild's pid comes back through a pipe. */
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        int e = errno;
        close(in_fd);
        close(out_fd);
        return errmsg_set(err, -e, "pipe: %s", strerror(e));
    }
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(in_fd);
        close(out_fd);
        close(p[0]);
        close(p[1]);
        return errmsg_set(err, -e, "fork: %s", strerror(e));
    }
    if (child == 0) {
        setsid();
        pid_t grandchild = fork();
        if (grandchild < 0)
            _exit(1);
        if (grandchild > 0) {
            ssize_t w = write(p[1], &grandchild, sizeof grandchild);
            _exit(w == (ssize_t)sizeof grandchild ? 0 : 1);
        }
        child_exec(argv, o, in_fd, out_fd);
    }
    close(in_fd);
    close(out_fd);
    close(p[1]);
    pid_t spawned = -1;
    ssize_t r;
    do
        r = read(p[0], &spawned, sizeof spawned);
    while (r < 0 && errno == EINTR);
    close(p[0]);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (r != (ssize_t)sizeof spawned || spawned <= 0)
        return errmsg_set(err, -ECHILD, "%s: could not be started", base_name(argv[0]));
    return spawned;
}

/* A process that exists and is not a zombie. */
bool proc_alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    (void)fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

int proc_pidfile_write(const char *path, pid_t pid, char **err)
{
    /* a new file renamed over the old one: never an empty pid file after a crash */
    char text[32], tmp[4096];
    int n = snprintf(text, sizeof text, "%ld\n", (long)pid);
    snprintf(tmp, sizeof tmp, "%s.new", path);
    errno = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok = fd >= 0 && n > 0 && write(fd, text, (size_t)n) == n;
    int e = ok ? 0 : (errno ? errno : EIO);
    if (fd >= 0 && close(fd) < 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) < 0) {
        ok = false;
        e = errno;
    }
    if (!ok)
        unlink(tmp);
    return ok ? 0 : errmsg_set(err, -e, "cannot write %s: %s", path, strerror(e));
}

pid_t proc_pidfile_running(const char *path, const char *exe)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[32] = "";
    char *end = NULL;
    long pid = fgets(line, sizeof line, f) ? strtol(line, &end, 10) : 0;
    (void)fclose(f);
    if (!end || (*end != '\n' && *end != '\0') || pid <= 0 || pid > INT_MAX ||
        !proc_alive((pid_t)pid))
        return 0;
    char link[64], target[256];
    snprintf(link, sizeof link, "/proc/%ld/exe", pid);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = '\0';
    /* after a package upgrade the running binary is the replaced file: still ours */
    size_t len = strlen(exe);
    bool same = strcmp(target, exe) == 0 ||
                (strncmp(target, exe, len) == 0 && strcmp(target + len, " (deleted)") == 0);
    return same ? (pid_t)pid : 0;
}

pid_t proc_spawn_pidfile(const char *const argv[], const struct proc_opts *o,
                         const char *pid_file, char **err)
{
    pid_t pid = proc_spawn(argv, o, err);
    if (pid < 0)
        return pid;
    int rc = proc_pidfile_write(pid_file, pid, err);
    if (rc < 0) {
        kill(pid, SIGTERM);
        return rc;
    }
    return pid;
}
