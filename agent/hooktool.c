/* Hook tools run on behalf of a waiting hook (hooktool.h): PATH lookup in the forwarded
 * environment, fork/exec with nothing inherited, bounded capture, timeout, JSON helpers. */
/* _GNU_SOURCE is how glibc is asked for asprintf, pipe2, close_range. */
#define _GNU_SOURCE
#include "hooktool.h"

#include "errmsg.h"
#include "proc.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 64
#define HOOKTOOL_MAX_SECRET_FIELDS 16
#define STDERR_EXCERPT 200
/* Poll interval when pidfd_open is not available (kernels before 5.3). */
#define FALLBACK_POLL_MS 20

void hooktool_set_keepalive(void (*fn)(void))
{
    proc_set_keepalive(fn);
}

struct capture {
    int fd;
    char *buf;
    size_t len, cap;
    bool truncated;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Find tool in the colon-separated dirs of path_env (absolute dirs only: an empty or
 * relative entry would resolve against whatever the cwd is). *out is malloc'd. */
static int find_on_path(const char *path_env, const char *tool, char **out)
{
    const char *p = path_env;
    while (p && *p) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen > 0 && p[0] == '/') {
            char *cand = NULL;
            if (asprintf(&cand, "%.*s/%s", (int)dlen, p, tool) < 0)
                return -ENOMEM;
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
                *out = cand;
                return 0;
            }
            free(cand);
        }
        p = end ? end + 1 : NULL;
    }
    return -ENOENT;
}

/* Read what is available on c->fd. Returns 1 at EOF, 0 when more may come, -errno. */
static int capture_read(struct capture *c)
{
    for (;;) {
        char scratch[16384];
        char *dst = scratch;
        size_t room = sizeof scratch;
        if (!c->truncated) {
            if (c->cap - c->len < 2 && c->cap <= HOOKTOOL_MAX_OUTPUT) {
                size_t ncap = c->cap ? c->cap * 2 : 4096;
                if (ncap > HOOKTOOL_MAX_OUTPUT + 1)
                    ncap = HOOKTOOL_MAX_OUTPUT + 1;
                char *nb = realloc(c->buf, ncap);
                if (!nb)
                    return -ENOMEM;
                c->buf = nb;
                c->cap = ncap;
            }
            if (c->cap - c->len >= 2) {
                dst = c->buf + c->len;
                room = c->cap - c->len - 1; /* keep one byte for the NUL */
            }
        }
        ssize_t r = read(c->fd, dst, room);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -errno;
        }
        if (r == 0)
            return 1;
        if (dst == scratch)
            c->truncated = true;
        else
            c->len += (size_t)r;
    }
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void __attribute__((noreturn))
child_exec(const char *path, const char *const argv[], char *const envp[], const char *dir,
           int in_fd, int out_fd, int err_fd)
{
    setpgid(0, 0);
    if (proc_child_stdio(in_fd, out_fd, err_fd) < 0)
        _exit(127);
    if (chdir(dir) < 0 && chdir("/") < 0)
        _exit(127);
    /* execve's prototype predates const: argv and envp are not modified. */
    execve(path, (char *const *)argv, envp);
    _exit(127);
}

void hooktool_result_free(struct hooktool_result *res)
{
    if (!res)
        return;
    /* stdout may be secret content (secret-get): wipe before freeing. */
    if (res->out)
        explicit_bzero(res->out, res->out_len);
    free(res->out);
    free(res->err);
    *res = (struct hooktool_result){0};
}

/* Wait for pid to exit, killing its process group at deadline. Drives the pipes while
 * waiting. Returns 0 with *status, or -ETIMEDOUT / -errno. */
static int supervise(pid_t pid, int pidfd, int *in_fd, const char *in, size_t in_len,
                     struct capture *out, struct capture *errc, long long deadline, int *status)
{
    size_t in_off = 0;
    bool exited = false;
    bool out_eof = false, err_eof = false;
    int rc = 0;

    while (!exited || !out_eof || !err_eof) {
        struct pollfd pfd[4];
        int n = 0, i_in = -1, i_out = -1, i_err = -1, i_pid = -1;
        if (*in_fd >= 0) {
            pfd[n] = (struct pollfd){.fd = *in_fd, .events = POLLOUT};
            i_in = n++;
        }
        if (!out_eof) {
            pfd[n] = (struct pollfd){.fd = out->fd, .events = POLLIN};
            i_out = n++;
        }
        if (!err_eof) {
            pfd[n] = (struct pollfd){.fd = errc->fd, .events = POLLIN};
            i_err = n++;
        }
        if (!exited && pidfd >= 0) {
            pfd[n] = (struct pollfd){.fd = pidfd, .events = POLLIN};
            i_pid = n++;
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            rc = -ETIMEDOUT;
            break;
        }
        proc_keepalive();
        int wait_ms = (int)(left > HOOKTOOL_KEEPALIVE_MS ? HOOKTOOL_KEEPALIVE_MS : left);
        if (!exited && pidfd < 0 && wait_ms > FALLBACK_POLL_MS)
            wait_ms = FALLBACK_POLL_MS;
        int pr = poll(pfd, (nfds_t)n, wait_ms);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (i_in >= 0 && pfd[i_in].revents) {
            if (pfd[i_in].revents & POLLOUT && in_off < in_len) {
                ssize_t w = write(*in_fd, in + in_off, in_len - in_off);
                if (w > 0)
                    in_off += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    in_off = in_len; /* EPIPE: the tool does not want the rest */
            } else {
                in_off = in_len; /* POLLERR/POLLHUP: the tool closed its stdin */
            }
            if (in_off >= in_len)
                close_fd(in_fd);
        }
        if (i_out >= 0 && pfd[i_out].revents) {
            int r = capture_read(out);
            if (r < 0) {
                rc = r;
                break;
            }
            out_eof = r == 1;
        }
        if (i_err >= 0 && pfd[i_err].revents) {
            int r = capture_read(errc);
            if (r < 0) {
                rc = r;
                break;
            }
            err_eof = r == 1;
        }
        if (!exited && (pidfd < 0 || (i_pid >= 0 && pfd[i_pid].revents))) {
            pid_t w = waitpid(pid, status, WNOHANG);
            if (w == pid) {
                exited = true;
                /* Everything the tool wrote is in the pipes now. Something it left
                 * behind may hold them open: take what is there and stop reading. */
                if (!out_eof)
                    (void)capture_read(out);
                if (!err_eof)
                    (void)capture_read(errc);
                out_eof = err_eof = true;
            } else if (w < 0 && errno != EINTR) {
                rc = -errno;
                break;
            }
        }
    }
    if (rc < 0 && !exited) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, status, 0) < 0 && errno == EINTR)
            ;
    }
    return rc;
}

int hooktool_run(const struct hook_event *ev, const char *const argv[], const char *stdin_data,
                 size_t stdin_len, struct hooktool_result *res, char **err)
{
    *res = (struct hooktool_result){0};
    if (!argv || !argv[0] || !*argv[0] || strchr(argv[0], '/'))
        return errmsg_set(err, -EINVAL, "hook tool name missing or not a bare name");
    const char *tool = argv[0];
    if (!ev->has_context)
        return errmsg_set(err, -EINVAL, "%s: no hook context to run it in", tool);

    char *path = NULL;
    int rc = find_on_path(request_env(ev, "PATH"), tool, &path);
    if (rc == -ENOMEM)
        return errmsg_set(err, rc, "out of memory");
    if (rc < 0)
        return errmsg_set(err, rc, "%s: not found on the hook's PATH", tool);

    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    int child_in = -1, pidfd = -1;
    struct capture out = {.fd = -1}, errc = {.fd = -1};
    long long started = now_ms();

    if (stdin_data) {
        if (pipe2(in_pipe, O_CLOEXEC) < 0) {
            rc = errmsg_set(err, -errno, "%s: pipe: %s", tool, strerror(errno));
            goto out;
        }
        child_in = in_pipe[0];
    } else {
        child_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (child_in < 0) {
            rc = errmsg_set(err, -errno, "%s: /dev/null: %s", tool, strerror(errno));
            goto out;
        }
        in_pipe[0] = child_in;
    }
    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
        rc = errmsg_set(err, -errno, "%s: pipe: %s", tool, strerror(errno));
        goto out;
    }

    pid_t pid = fork();
    if (pid < 0) {
        rc = errmsg_set(err, -errno, "%s: fork: %s", tool, strerror(errno));
        goto out;
    }
    if (pid == 0)
        child_exec(path, argv, ev->envp, ev->charm_dir, child_in, out_pipe[1], err_pipe[1]);

    close_fd(&in_pipe[0]);
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[1]);
    out.fd = out_pipe[0];
    errc.fd = err_pipe[0];
    if ((in_pipe[1] >= 0 && set_nonblock(in_pipe[1]) < 0) || set_nonblock(out.fd) < 0 ||
        set_nonblock(errc.fd) < 0) {
        /* Cannot happen on a fresh pipe; still, never leave the child behind. */
        rc = errmsg_set(err, -EIO, "%s: cannot set up its pipes", tool);
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        goto out;
    }
    /* Through syscall(): glibc's wrapper (2.36) is newer than some target systems'. A
     * failure (ENOSYS before Linux 5.3) falls back to polling waitpid. */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

    int status = 0;
    rc = supervise(pid, pidfd, &in_pipe[1], stdin_data, stdin_len, &out, &errc,
                   started + HOOKTOOL_TIMEOUT_MS, &status);
    if (rc == -ETIMEDOUT) {
        rc = errmsg_set(err, rc, "%s: no answer within %d s; killed", tool,
                        HOOKTOOL_TIMEOUT_MS / 1000);
        goto out;
    }
    if (rc < 0) {
        rc = errmsg_set(err, rc, "%s: %s", tool, strerror(-rc));
        goto out;
    }
    res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    res->truncated = out.truncated || errc.truncated;
    /* Hand the buffers over, NUL-terminated (capture keeps one byte free). */
    if (!out.buf)
        out.buf = calloc(1, 1);
    if (!errc.buf)
        errc.buf = calloc(1, 1);
    if (!out.buf || !errc.buf) {
        rc = errmsg_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    out.buf[out.len] = '\0';
    errc.buf[errc.len] = '\0';
    res->out = out.buf;
    res->out_len = out.len;
    res->err = errc.buf;
    res->err_len = errc.len;
    out.buf = errc.buf = NULL;
    log_debug("%s exited with code %d after %lld ms", tool, res->exit_code, now_ms() - started);
    rc = 0;
out:
    free(out.buf);
    free(errc.buf);
    close_fd(&in_pipe[0]);
    close_fd(&in_pipe[1]);
    close_fd(&out_pipe[0]);
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[0]);
    close_fd(&err_pipe[1]);
    close_fd(&pidfd);
    free(path);
    return rc;
}

/* "<tool> exited with code N: <first line of stderr>" */
static int tool_failed(const char *tool, const struct hooktool_result *res, char **err)
{
    char excerpt[STDERR_EXCERPT + 1];
    size_t n = 0;
    for (size_t i = 0; i < res->err_len && n < STDERR_EXCERPT; i++) {
        unsigned char c = (unsigned char)res->err[i];
        if (c == '\n') {
            if (n > 0)
                break;
            continue;
        }
        char ch = (char)c;
        if (c < 0x20 || c == 0x7f)
            ch = ' ';
        excerpt[n++] = ch;
    }
    while (n > 0 && excerpt[n - 1] == ' ')
        n--;
    excerpt[n] = '\0';
    /* juju.md 3.10: the controller's refusals say "permission denied" (a relation not in
     * this unit's scope yet, a secret not granted): callers may treat them apart */
    int code = strstr(excerpt, "permission denied") ? -EACCES : -1;
    return errmsg_set(err, code, "%s exited with code %d%s%s", tool, res->exit_code,
                      n ? ": " : "", excerpt);
}

/* Run argv; 0 when it exited 0, else -1 with *err. *res is filled either way when the
 * tool ran (free it). */
static int run_checked(const struct hook_event *ev, const char *const argv[], const char *in,
                       size_t in_len, struct hooktool_result *res, char **err)
{
    if (hooktool_run(ev, argv, in, in_len, res, err) < 0)
        return -1;
    if (res->exit_code != 0)
        return tool_failed(argv[0], res, err);
    return 0;
}

int hooktool_json(const struct hook_event *ev, const char *const argv[], json_t **out, char **err)
{
    *out = NULL;
    const char *args[MAX_ARGS + 2];
    size_t argc = 0;
    while (argv && argv[argc]) {
        if (argc == MAX_ARGS)
            return errmsg_set(err, -1, "%s: too many arguments", argv[0]);
        args[argc] = argv[argc];
        argc++;
    }
    if (argc == 0)
        return errmsg_set(err, -1, "hook tool name missing");
    args[argc++] = "--format=json";
    args[argc] = NULL;

    struct hooktool_result res;
    if (run_checked(ev, args, NULL, 0, &res, err) < 0) {
        hooktool_result_free(&res);
        return -1;
    }
    int rc = 0;
    if (res.truncated) {
        rc = errmsg_set(err, -1, "%s printed more than %zu bytes", args[0], HOOKTOOL_MAX_OUTPUT);
    } else {
        json_error_t jerr;
        *out = json_loadb(res.out, res.out_len, JSON_DECODE_ANY, &jerr);
        if (!*out)
            rc = errmsg_set(err, -1, "%s printed invalid JSON (error at byte %d)", args[0],
                            jerr.position);
    }
    hooktool_result_free(&res);
    return rc;
}

int hooktool_status_set(const struct hook_event *ev, const char *status, const char *message,
                        char **err)
{
    const char *argv[] = {"status-set", status, "--", message ? message : "", NULL};
    struct hooktool_result res;
    int rc = run_checked(ev, argv, NULL, 0, &res, err);
    hooktool_result_free(&res);
    return rc;
}

int hooktool_log(const struct hook_event *ev, enum log_level level, const char *message, char **err)
{
    const char *argv[] = {"juju-log", "--log-level", log_level_name(level), "--", message, NULL};
    struct hooktool_result res;
    int rc = run_checked(ev, argv, NULL, 0, &res, err);
    hooktool_result_free(&res);
    return rc;
}

int hooktool_check(const struct hook_event *ev, const char *const argv[], char **err)
{
    return hooktool_check_input(ev, argv, NULL, 0, err);
}

int hooktool_check_input(const struct hook_event *ev, const char *const argv[],
                         const char *stdin_data, size_t stdin_len, char **err)
{
    struct hooktool_result res;
    int rc = run_checked(ev, argv, stdin_data, stdin_len, &res, err);
    hooktool_result_free(&res);
    return rc;
}

int hooktool_output(const struct hook_event *ev, const char *const argv[], char **out,
                    char **err)
{
    *out = NULL;
    struct hooktool_result res;
    if (run_checked(ev, argv, NULL, 0, &res, err) < 0) {
        hooktool_result_free(&res);
        return -1;
    }
    while (res.out_len > 0 && res.out[res.out_len - 1] == '\n')
        res.out[--res.out_len] = '\0';
    *out = res.out;
    res.out = NULL;
    hooktool_result_free(&res);
    return 0;
}

/* Secret fields as "key#file=/proc/<pid>/fd/<n>" arguments, one memfd per value. */
struct secret_args {
    int fds[HOOKTOOL_MAX_SECRET_FIELDS];
    char *args[HOOKTOOL_MAX_SECRET_FIELDS];
    size_t n;
};

static void secret_args_free(struct secret_args *sa)
{
    for (size_t i = 0; i < sa->n; i++) {
        if (sa->fds[i] >= 0)
            close(sa->fds[i]);
        free(sa->args[i]);
    }
    sa->n = 0;
}

static int secret_args_build(const struct secret_field *fields, size_t n, struct secret_args *sa,
                             char **err)
{
    sa->n = 0;
    if (n == 0 || n > HOOKTOOL_MAX_SECRET_FIELDS)
        return errmsg_set(err, -EINVAL, "a secret needs 1 to %d fields",
                          HOOKTOOL_MAX_SECRET_FIELDS);
    for (size_t i = 0; i < n; i++) {
        int fd = memfd_create("pg-agent-secret", MFD_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            secret_args_free(sa);
            return errmsg_set(err, -e, "memfd_create: %s", strerror(e));
        }
        sa->fds[i] = fd;
        sa->args[i] = NULL;
        sa->n = i + 1;
        int wr = proto_write_all(fd, fields[i].value, strlen(fields[i].value));
        if (wr < 0) {
            secret_args_free(sa);
            return errmsg_set(err, wr, "writing a secret value to its memfd: %s",
                              strerror(-wr));
        }
        if (asprintf(&sa->args[i], "%s#file=/proc/%ld/fd/%d", fields[i].key, (long)getpid(),
                     fd) < 0) {
            sa->args[i] = NULL;
            secret_args_free(sa);
            return errmsg_set(err, -ENOMEM, "out of memory");
        }
    }
    return 0;
}

/* argv = head..., then the secret args; run, require exit 0, hand over stdout. */
static int run_secret_tool(const struct hook_event *ev, const char *const head[], size_t n_head,
                           const struct secret_field *fields, size_t n, char **out, char **err)
{
    struct secret_args sa;
    int rc = secret_args_build(fields, n, &sa, err);
    if (rc < 0)
        return -1;
    const char *argv[16 + HOOKTOOL_MAX_SECRET_FIELDS];
    size_t argc = 0;
    for (size_t i = 0; i < n_head && argc < 16; i++)
        argv[argc++] = head[i];
    for (size_t i = 0; i < sa.n; i++)
        argv[argc++] = sa.args[i];
    argv[argc] = NULL;
    rc = out ? hooktool_output(ev, argv, out, err) : hooktool_check(ev, argv, err);
    secret_args_free(&sa);
    return rc;
}

int hooktool_secret_add(const struct hook_event *ev, const char *owner, const char *label,
                        const struct secret_field *fields, size_t n, char **uri, char **err)
{
    const char *head[] = {"secret-add", "--owner", owner, label ? "--label" : NULL, label};
    return run_secret_tool(ev, head, label ? 5 : 3, fields, n, uri, err);
}

int hooktool_secret_set(const struct hook_event *ev, const char *uri,
                        const struct secret_field *fields, size_t n, char **err)
{
    const char *head[] = {"secret-set", uri};
    return run_secret_tool(ev, head, 2, fields, n, NULL, err);
}

int hooktool_secret_uri(const struct hook_event *ev, const char *label, char *uri, size_t size)
{
    const char *argv[] = {"secret-info-get", "--label", label, NULL};
    json_t *info = NULL;
    int rc = -ENOENT;
    if (hooktool_json(ev, argv, &info, NULL) == 0 && json_is_object(info)) {
        const char *xid = json_object_iter_key(json_object_iter(info));
        if (xid && (size_t)snprintf(uri, size, "secret:%s", xid) < size)
            rc = 0;
    }
    json_decref(info);
    return rc;
}

int hooktool_secret_get(const struct hook_event *ev, const char *uri, const char *label,
                        json_t **out, char **err)
{
    *out = NULL;
    const char *argv[8];
    size_t argc = 0;
    argv[argc++] = "secret-get";
    if (uri)
        argv[argc++] = uri;
    if (label) {
        argv[argc++] = "--label";
        argv[argc++] = label;
    }
    argv[argc++] = "--refresh";
    argv[argc++] = "--format=json";
    argv[argc] = NULL;
    struct hooktool_result res;
    if (hooktool_run(ev, argv, NULL, 0, &res, err) < 0)
        return -1;
    int rc = 0;
    if (res.exit_code != 0) {
        rc = strstr(res.err, "not found")           ? -ENOENT
             : strstr(res.err, "permission denied") ? -EACCES
                                                    : -1;
        tool_failed("secret-get", &res, err);
    } else {
        json_error_t jerr;
        *out = json_loadb(res.out, res.out_len, 0, &jerr);
        if (!*out || !json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
            rc = errmsg_set(err, -1, "secret-get printed something other than a JSON object");
        }
    }
    hooktool_result_free(&res);
    return rc;
}
