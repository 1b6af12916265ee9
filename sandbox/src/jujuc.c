/* jujuc: multi-call hook-tool client of the local Juju emulator (one symlink per tool and
 * juju-exec); forwards argv, cwd and stdin to the controller over a Unix socket (wire.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define CONNECT_RETRY_NS (2LL * 1000 * 1000 * 1000)
#define DEFAULT_AGENTS_DIR "/var/lib/juju/agents"

struct response {
    uint32_t flags;
    uint32_t code;
    unsigned char *out;
    size_t out_len;
    unsigned char *err;
    size_t err_len;
};

__attribute__((format(printf, 2, 3), noreturn)) static void die(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("ERROR ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        die(1, "out of memory");
    return p;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Appends one length-prefixed field; the caller sized the buffer. */
static unsigned char *put_field(unsigned char *p, const void *data, size_t len)
{
    put_u32(p, (uint32_t)len);
    if (len)
        memcpy(p + 4, data, len);
    return p + 4 + len;
}

static long long now_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(long long ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Writes everything to fd (a pipe, file or tty), coping with EINTR, short writes and a
 * non-blocking descriptor inherited from the caller. Returns 0 or -1 with errno set. */
static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};

                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                    return -1;
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends the whole iovec array on a socket without raising SIGPIPE. Modifies iov. */
static int send_iov_all(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        size_t left;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (unsigned char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Reads exactly len bytes. Returns 0, 1 on premature EOF, -1 on error (errno set). */
static int read_full(int fd, unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads all of stdin, at most WIRE_MAX_FIELD bytes. */
static unsigned char *read_stdin(size_t *len_out)
{
    size_t cap = (size_t)64 * 1024, len = 0;
    unsigned char *buf = xmalloc(cap);

    for (;;) {
        ssize_t n;

        if (len == cap) {
            unsigned char *nb;

            if (cap >= WIRE_MAX_FIELD)
                die(1, "stdin too large (limit %u bytes)", WIRE_MAX_FIELD);
            cap = cap * 2 > WIRE_MAX_FIELD ? WIRE_MAX_FIELD : cap * 2;
            nb = realloc(buf, cap);
            if (!nb)
                die(1, "out of memory");
            buf = nb;
        }
        n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};

                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                    die(1, "cannot read stdin: %s", strerror(errno));
                continue;
            }
            die(1, "cannot read stdin: %s", strerror(errno));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *len_out = len;
    return buf;
}

/* Fills a sockaddr_un for path; a leading '@' names an abstract socket (as real Juju's
 * JUJU_AGENT_SOCKET_ADDRESS does on Linux). Returns the address length. */
static socklen_t make_addr(struct sockaddr_un *sa, const char *path)
{
    size_t len = strlen(path);

    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (len == 0 || len >= sizeof(sa->sun_path))
        die(1, "invalid unit agent socket path \"%s\"", path);
    memcpy(sa->sun_path, path, len);
    if (path[0] == '@') {
        sa->sun_path[0] = '\0';
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/* Connects, retrying for ~2 s while the controller is (re)starting. */
static int connect_agent(const char *path)
{
    struct sockaddr_un sa;
    socklen_t salen = make_addr(&sa, path);
    long long deadline = now_ns() + CONNECT_RETRY_NS;
    long long pause = 2LL * 1000 * 1000;

    for (;;) {
        int err;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
            die(1, "cannot create socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, salen) == 0)
            return fd;
        err = errno;
        close(fd);
        if (err == EINTR)
            continue;
        if ((err == ECONNREFUSED || err == ENOENT || err == EAGAIN) && now_ns() < deadline) {
            sleep_ns(pause);
            if (pause < 100LL * 1000 * 1000)
                pause *= 2;
            continue;
        }
        die(1, "cannot connect to the unit agent at %s: %s", path, strerror(err));
    }
}

static void read_response(int fd, const char *path, struct response *r)
{
    unsigned char hdr[16], lenb[4];
    int rc;

    memset(r, 0, sizeof(*r));
    rc = read_full(fd, hdr, sizeof(hdr));
    if (rc == 0 && memcmp(hdr, WIRE_RESP_MAGIC, 4) != 0)
        die(1, "bad response from the unit agent at %s", path);
    if (rc == 0) {
        r->flags = get_u32(hdr + 4);
        r->code = get_u32(hdr + 8);
        r->out_len = get_u32(hdr + 12);
        if (r->out_len > WIRE_MAX_FIELD)
            die(1, "bad response from the unit agent at %s", path);
        r->out = xmalloc(r->out_len);
        rc = read_full(fd, r->out, r->out_len);
    }
    if (rc == 0)
        rc = read_full(fd, lenb, sizeof(lenb));
    if (rc == 0) {
        r->err_len = get_u32(lenb);
        if (r->err_len > WIRE_MAX_FIELD)
            die(1, "bad response from the unit agent at %s", path);
        r->err = xmalloc(r->err_len);
        rc = read_full(fd, r->err, r->err_len);
    }
    if (rc < 0)
        die(1, "cannot read from the unit agent at %s: %s", path, strerror(errno));
    if (rc > 0)
        die(1, "connection to the unit agent at %s closed before the reply", path);
}

/* One request/response exchange on a fresh connection. */
static void call(const char *path, unsigned char *head, size_t head_len, const unsigned char *in,
                 size_t in_len, unsigned char *tail, size_t tail_len, struct response *r)
{
    struct iovec iov[3] = {
        {.iov_base = head, .iov_len = head_len},
        {.iov_base = (void *)in, .iov_len = in_len},
        {.iov_base = tail, .iov_len = tail_len},
    };
    int fd = connect_agent(path);

    if (send_iov_all(fd, iov, 3) != 0)
        die(1, "cannot send to the unit agent at %s: %s", path, strerror(errno));
    read_response(fd, path, r);
    close(fd);
}

static int valid_app_name(const char *s, size_t len)
{
    /* names.IsValidApplication: [a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)* */
    size_t i = 0;

    if (len == 0 || s[0] < 'a' || s[0] > 'z')
        return 0;
    while (i < len) {
        int letter = 0;

        if (s[i] == '-')
            i++;
        if (i == len)
            return 0;
        while (i < len && s[i] != '-') {
            if (s[i] >= 'a' && s[i] <= 'z')
                letter = 1;
            else if (s[i] < '0' || s[i] > '9')
                return 0;
            i++;
        }
        if (!letter)
            return 0;
    }
    return 1;
}

static int valid_unit_name(const char *u)
{
    const char *slash = strchr(u, '/');
    const char *d;

    if (!slash || !valid_app_name(u, (size_t)(slash - u)) || slash[1] == '\0')
        return 0;
    if (slash[1] == '0' && slash[2] != '\0')
        return 0;
    for (d = slash + 1; *d; d++)
        if (*d < '0' || *d > '9')
            return 0;
    return 1;
}

static int is_opt(const char *a, const char *name, const char **value)
{
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '\0') {
        *value = NULL;
        return 1;
    }
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    return 0;
}

/* Any unit's run socket, for `juju-exec --help` given without a unit. */
static char *any_run_socket(const char *dir)
{
    struct dirent **ents;
    char *found = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    int i;

    if (n < 0)
        return NULL;
    for (i = 0; i < n; i++) {
        struct stat st;
        char *path;

        if (!found && strncmp(ents[i]->d_name, "unit-", 5) == 0 &&
            asprintf(&path, "%s/%s/run.socket", dir, ents[i]->d_name) >= 0) {
            if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                found = path;
            else
                free(path);
        }
        free(ents[i]);
    }
    free(ents);
    return found;
}

/* The unit juju-exec talks to: -u/--unit if given, else the first positional argument.
 * Sets *help when -h/--help is present. Options that take a value are skipped with it. */
static const char *exec_unit(int argc, char **argv, int *help)
{
    static const struct {
        const char *name;
        int is_unit;
    } valued[] = {{"--unit", 1},        {"-u", 1},          {"--relation", 0}, {"-r", 0},
                  {"--remote-unit", 0}, {"--remote-app", 0}};
    const char *unit = NULL, *first = NULL;
    int i;

    *help = 0;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        size_t k;

        if (strcmp(a, "--") == 0) {
            if (!first && i + 1 < argc)
                first = argv[i + 1];
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (!first)
                first = a;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *help = 1;
            continue;
        }
        for (k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
            if (!is_opt(a, valued[k].name, &v))
                continue;
            if (!v && i + 1 < argc)
                v = argv[++i];
            if (valued[k].is_unit && v)
                unit = v;
            break;
        }
        if (k == sizeof(valued) / sizeof(valued[0]) && a[1] == 'u')
            unit = a + 2; /* -uapp/0 */
        /* anything else is a boolean flag (or one the controller will reject) */
    }
    return unit ? unit : first;
}

static char *exec_socket_path(int argc, char **argv)
{
    const char *dir = getenv("JUJU_EXEC_AGENTS_DIR");
    const char *unit;
    char *tag, *path, *p;
    struct stat st;
    int help;

    if (!dir || !*dir)
        dir = DEFAULT_AGENTS_DIR;
    unit = exec_unit(argc, argv, &help);
    if (!unit || !*unit) {
        if (help && (path = any_run_socket(dir)) != NULL)
            return path;
        die(2, "missing unit-name");
    }
    if (valid_unit_name(unit)) {
        if (asprintf(&tag, "unit-%s", unit) < 0)
            die(1, "out of memory");
        for (p = tag; *p; p++)
            if (*p == '/')
                *p = '-';
    } else if (strncmp(unit, "unit-", 5) == 0 && !strchr(unit, '/') &&
               strcmp(unit + 5, "..") != 0 && strcmp(unit + 5, ".") != 0) {
        tag = strdup(unit);
        if (!tag)
            die(1, "out of memory");
    } else {
        die(2, "\"%s\" is not a valid unit tag", unit);
    }
    if (asprintf(&path, "%s/%s/run.socket", dir, tag) < 0)
        die(1, "out of memory");
    free(tag);
    if (stat(path, &st) != 0 && errno == ENOENT)
        die(1, "unit \"%s\" not found on this machine", unit);
    return path;
}

int main(int argc, char **argv)
{
    const char *cmd, *ctx, *path_env;
    char *path, *cwd;
    char **args;
    int nargs, i, is_exec, write_failed = 0;
    size_t cmd_len, ctx_len, cwd_len, head_len, tail_len = 0;
    unsigned char *head, *tail, *p, *in = NULL;
    size_t in_len = 0;
    struct response r;

    if (argc < 1 || !argv[0])
        die(2, "no command name");
    cmd = strrchr(argv[0], '/');
    cmd = cmd ? cmd + 1 : argv[0];
    args = argv + 1;
    nargs = argc - 1;
    if (strcmp(cmd, "jujuc") == 0) {
        if (nargs < 1) {
            fputs("usage: jujuc <hook-tool> [args...]\n", stderr);
            return 2;
        }
        cmd = args[0];
        args++;
        nargs--;
    }
    is_exec = strcmp(cmd, "juju-exec") == 0;

    if (is_exec) {
        ctx = "";
        path = exec_socket_path(nargs, args);
    } else {
        const char *net = getenv("JUJU_AGENT_SOCKET_NETWORK");

        ctx = getenv("JUJU_CONTEXT_ID");
        if (!ctx || !*ctx)
            die(1, "JUJU_CONTEXT_ID not set");
        path_env = getenv("JUJU_AGENT_SOCKET_ADDRESS");
        if (!path_env || !*path_env)
            die(1, "JUJU_AGENT_SOCKET_ADDRESS not set");
        if (net && *net && strcmp(net, "unix") != 0)
            die(1, "unsupported JUJU_AGENT_SOCKET_NETWORK \"%s\" (only \"unix\")", net);
        path = strdup(path_env);
        if (!path)
            die(1, "out of memory");
    }

    if ((unsigned)nargs > WIRE_MAX_FIELDS - 5)
        die(2, "too many arguments");
    cwd = getcwd(NULL, 0);
    if (!cwd)
        cwd = strdup("");
    if (!cwd)
        die(1, "out of memory");
    cmd_len = strlen(cmd);
    ctx_len = strlen(ctx);
    cwd_len = strlen(cwd);
    if (cmd_len > WIRE_MAX_FIELD || ctx_len > WIRE_MAX_FIELD || cwd_len > WIRE_MAX_FIELD)
        die(2, "argument too long");

    /* head: magic, nfields, fields 0-3 and field 4's length; tail: fields 5.. */
    head_len = 8 + 4 + ctx_len + 4 + cwd_len + 4 + cmd_len + 4 + 1 + 4;
    for (i = 0; i < nargs; i++) {
        size_t l = strlen(args[i]);

        if (l > WIRE_MAX_FIELD)
            die(2, "argument too long");
        tail_len += 4 + l;
    }
    head = xmalloc(head_len);
    tail = xmalloc(tail_len);
    p = head;
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result): the wire magic is 4 bytes, no NUL
    memcpy(p, WIRE_REQ_MAGIC, 4);
    put_u32(p + 4, (uint32_t)(5 + nargs));
    p = put_field(p + 8, ctx, ctx_len);
    p = put_field(p, cwd, cwd_len);
    p = put_field(p, cmd, cmd_len);
    p = put_field(p, "0", 1);
    put_u32(p, 0);
    for (p = tail, i = 0; i < nargs; i++)
        p = put_field(p, args[i], strlen(args[i]));

    call(path, head, head_len, NULL, 0, tail, tail_len, &r);
    if (r.flags & WIRE_NEED_STDIN) {
        free(r.out);
        free(r.err);
        in = read_stdin(&in_len);
        head[head_len - 5] = '1';
        put_u32(head + head_len - 4, (uint32_t)in_len);
        call(path, head, head_len, in, in_len, tail, tail_len, &r);
        if (r.flags & WIRE_NEED_STDIN)
            die(1, "the unit agent at %s asked for stdin twice", path);
    }

    if (write_all(STDOUT_FILENO, r.out, r.out_len) != 0)
        write_failed = 1;
    (void)write_all(STDERR_FILENO, r.err, r.err_len);
    /* freed so that LeakSanitizer (make asan) sees a clean exit */
    free(r.out);
    free(r.err);
    free(in);
    free(head);
    free(tail);
    free(cwd);
    free(path);
    if (write_failed && r.code == 0)
        return 1;
    return r.code > 255 ? 255 : (int)r.code;
}
