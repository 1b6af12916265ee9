/* The charm's `dispatch`: sends the hook's JUJU_* environment to the resident agent over
 * its Unix socket (proto.h), starting it if needed, prints its logs, exits with its verdict.
 *
 * See DESIGN.md section 3. libc and lib/proto.c only; replies are read by the small
 * strict parser in relay_reply.c (why it is hand-written is explained there).
 * Environment values may carry secrets: only variable names and errors are printed.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "relay_reply.h"

extern char **environ;

/* Budget for starting the agent (each child) and, separately, for the connect retries. */
#define START_WAIT_MS 10000
#define CONNECT_WAIT_MS 10000
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 200

/* Messages on stderr (Juju logs them at WARNING). Macros rather than va_list helpers:
 * the format is always a literal, checked by -Wformat, and clang-tidy 14's va_list
 * checker misfires on va_start when several files are analysed in one run. */
#define warnx_(fmt, ...) fprintf(stderr, "relay: " fmt "\n", ##__VA_ARGS__)
#define die(fmt, ...)                                                                              \
    do {                                                                                           \
        warnx_(fmt, ##__VA_ARGS__);                                                                \
        exit(1);                                                                                   \
    } while (0)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- request ---------------------------------------------------------------------- */

static int forwarded_name(const char *entry, size_t name_len)
{
    if (name_len >= 5 && strncmp(entry, "JUJU_", 5) == 0)
        return 1;
    return (name_len == 9 && strncmp(entry, "CHARM_DIR", 9) == 0) ||
           (name_len == 4 && strncmp(entry, "PATH", 4) == 0);
}

/* Build {"v":1,"env":{...}} from environ. The first occurrence of a name wins, as with
 * getenv(). Exits on error. */
static void build_request(struct proto_buf *b)
{
    const char *seen[PROTO_MAX_ENV];
    size_t seen_len[PROTO_MAX_ENV];
    size_t count = 0;
    int rc = proto_buf_append(b, "{\"v\":1,\"env\":{", 14);
    for (char **e = environ; e && *e && rc == 0; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        size_t name_len = (size_t)(eq - *e);
        if (!forwarded_name(*e, name_len))
            continue;
        int dup = 0;
        for (size_t i = 0; i < count && !dup; i++)
            dup = seen_len[i] == name_len && memcmp(seen[i], *e, name_len) == 0;
        if (dup)
            continue;
        if (count == PROTO_MAX_ENV)
            die("more than %u variables to forward (at %.*s)", PROTO_MAX_ENV, (int)name_len, *e);
        seen[count] = *e;
        seen_len[count] = name_len;
        char *name = strndup(*e, name_len);
        if (!name)
            die("out of memory");
        if (count)
            rc = proto_buf_append(b, ",", 1);
        if (rc == 0)
            rc = proto_buf_append_json_string(b, name);
        if (rc == 0)
            rc = proto_buf_append(b, ":", 1);
        if (rc == 0)
            rc = proto_buf_append_json_string(b, eq + 1);
        free(name);
        count++;
    }
    if (rc == 0)
        rc = proto_buf_append(b, "}}", 2);
    if (rc < 0)
        die("out of memory");
    if (b->len > PROTO_MAX_FRAME)
        die("request too large (%zu bytes > %u)", b->len, PROTO_MAX_FRAME);
}

/* ---- connecting and starting the agent ---------------------------------------------- */

/* One connect attempt. Returns the fd, or -errno. */
static int try_connect(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    for (;;) {
        if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0)
            return fd;
        if (errno != EINTR)
            break;
        /* An interrupted Unix connect may still complete: start over on a new socket. */
        close(fd);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
    }
    int err = errno;
    close(fd);
    return -err;
}

static int agent_absent(int err)
{
    return err == ENOENT || err == ECONNREFUSED || err == ENOTDIR;
}

/* Environment for the agent: ours minus JUJU_CONTEXT_ID (the agent outlives the hook). */
static char **agent_environ(void)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    if (!env)
        die("out of memory");
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, "JUJU_CONTEXT_ID=", 16) != 0)
            env[k++] = *e;
    env[k] = NULL;
    return env;
}

/* In the child: detach stdio (Juju waits for the hook's output pipes to close), close
 * every other fd, restore SIGPIPE (an ignored signal stays ignored across exec), exec. */
static void __attribute__((noreturn)) exec_agent(const char *bin, const char *arg, char **env)
{
    int nul = open("/dev/null", O_RDWR);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
        _exit(127);
    long closed = -1;
#ifdef SYS_close_range
    closed = syscall(SYS_close_range, 3U, ~0U, 0U);
#endif
    if (closed < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        if (max < 0 || max > 65536)
            max = 65536;
        for (int fd = 3; fd < max; fd++)
            close(fd);
    }
    (void)signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    char *const argv[] = {(char *)bin, (char *)arg, NULL};
    execve(bin, argv, env);
    _exit(127);
}

/* Run `<bin> <arg>` detached from our stdio and wait for it, at most START_WAIT_MS (then
 * SIGKILL it). Returns 0 when it exited 0; otherwise says why on stderr and returns -1.
 * (An exec failure shows as exit 127.) */
static int run_agent_cmd(const char *bin, const char *arg, char **env)
{
    pid_t pid = fork();
    if (pid < 0) {
        warnx_("cannot fork to run the agent: %s", strerror(errno));
        return -1;
    }
    if (pid == 0)
        exec_agent(bin, arg, env);

    long long deadline = now_ms() + START_WAIT_MS;
    long nap = 1;
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
            if (WIFEXITED(status))
                warnx_("%s %s failed (exit %d)", bin, arg, WEXITSTATUS(status));
            else
                warnx_("%s %s failed (signal %d)", bin, arg, WTERMSIG(status));
            return -1;
        }
        if (w < 0 && errno != EINTR) {
            warnx_("waitpid: %s", strerror(errno));
            return -1;
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            warnx_("%s %s did not finish within %d ms; killed", bin, arg, START_WAIT_MS);
            return -1;
        }
        sleep_ms(nap < left ? nap : (long)left);
        if (nap < 50)
            nap *= 2;
    }
}

static int systemd_booted(void)
{
    struct stat st;
    return lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

static void start_agent(void)
{
    struct proto_buf path = {0};
    const char *bin = getenv("PG_AGENT_BIN");
    if (!bin || !*bin) {
        const char *dir = getenv("CHARM_DIR");
        if (!dir || !*dir) {
            warnx_("CHARM_DIR is not set; cannot locate the agent");
            return;
        }
        if (proto_buf_append(&path, dir, strlen(dir)) < 0 ||
            proto_buf_append(&path, "/bin/pg-agent", 13) < 0)
            die("out of memory");
        bin = path.data;
    }
    char **env = agent_environ();
    /* Failures are reported by run_agent_cmd; the connect retries decide the outcome
     * (another hook may have started the agent meanwhile). */
    if (!systemd_booted() || run_agent_cmd(bin, "--install-service", env) != 0)
        (void)run_agent_cmd(bin, "--daemon", env);
    free(env);
    proto_buf_free(&path);
}

/* Connect, starting the agent once if nobody listens. Exits when unreachable. */
static int connect_agent(const char *sock_path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t path_len = strlen(sock_path);
    if (path_len >= sizeof addr.sun_path)
        die("socket path too long: %s", sock_path);
    /* Bounded by the check above. */
    memcpy(addr.sun_path, sock_path, path_len + 1);

    int fd = try_connect(&addr);
    if (fd >= 0)
        return fd;
    if (!agent_absent(-fd))
        die("cannot reach the agent at %s: %s", sock_path, strerror(-fd));

    start_agent();
    long long deadline = now_ms() + CONNECT_WAIT_MS;
    long nap = BACKOFF_FIRST_MS;
    for (;;) {
        fd = try_connect(&addr);
        if (fd >= 0)
            return fd;
        int err = -fd;
        long long left = deadline - now_ms();
        if ((!agent_absent(err) && err != EAGAIN) || left <= 0)
            die("cannot reach the agent at %s: %s", sock_path, strerror(err));
        sleep_ms(nap < left ? nap : (long)left);
        nap = nap * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : nap * 2;
    }
}

/* ---- replies ---------------------------------------------------------------------- */

/* Write a log line to stdout. Failures are reported once and otherwise ignored: the
 * exit code must stay the agent's verdict. */
static void print_line(const char *msg, size_t len)
{
    static int failed;
    if (failed)
        return;
    struct iovec iov[2] = {{.iov_base = (void *)msg, .iov_len = len},
                           {.iov_base = "\n", .iov_len = 1}};
    int rc = proto_write_all_iov(STDOUT_FILENO, iov, 2);
    if (rc < 0) {
        warnx_("cannot write to stdout: %s", strerror(-rc));
        failed = 1;
    }
}

int main(void)
{
    /* If started with fd 0, 1 or 2 closed, keep the socket off them: log lines written
     * to "stdout" must not go into the agent's socket. */
    for (;;) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return 1;
        if (fd > 2) {
            close(fd);
            break;
        }
    }
    (void)signal(SIGPIPE, SIG_IGN);

    const char *sock_path = getenv("PG_AGENT_SOCKET");
    if (!sock_path || !*sock_path)
        sock_path = PROTO_SOCKET_PATH;

    struct proto_buf req = {0};
    build_request(&req);

    int fd = connect_agent(sock_path);
    int rc = proto_write_frame(fd, req.data, req.len);
    proto_buf_free(&req);
    if (rc < 0)
        die("cannot send the request to the agent: %s", strerror(-rc));

    const char *action = getenv("JUJU_ACTION_NAME");
    bool in_action = action && *action;
    for (;;) {
        char *body;
        size_t len;
        rc = proto_read_frame(fd, &body, &len);
        if (rc == -ECONNRESET)
            die("the agent closed the connection before the final exit frame");
        if (rc == -EPROTO)
            die("protocol error: bad frame length from the agent");
        if (rc < 0)
            die("cannot read from the agent: %s", strerror(-rc));
        struct relay_reply reply;
        int prc = relay_reply_parse(body, len, &reply);
        free(body);
        if (prc == -2)
            die("out of memory");
        if (prc < 0)
            die("protocol error: malformed reply frame from the agent (%zu bytes)", len);
        if (reply.kind == RELAY_REPLY_LOG) {
            /* An action's stdout is part of its results: keep its informational lines
             * out of them (they are in the agent's log and juju-log already). */
            bool quiet = in_action && reply.level && (strcmp(reply.level, "INFO") == 0 ||
                                                       strcmp(reply.level, "DEBUG") == 0);
            if (!quiet)
                print_line(reply.log, reply.log_len);
            relay_reply_free(&reply);
            continue;
        }
        int code = reply.exit_code;
        relay_reply_free(&reply);
        close(fd);
        return code;
    }
}
