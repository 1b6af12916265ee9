/* unit-init: starts one unit's "machine" of the local Juju emulator: joins its network
 * namespace, creates mount/UTS/IPC/PID namespaces and runs a tiny PID 1 there. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOSTNAME_MAX 64
#define TERM_GRACE_NS (5LL * 1000 * 1000 * 1000)
#define KILL_REAP_NS (1LL * 1000 * 1000 * 1000)

struct bind {
    char *src;
    char *dst;
};

struct opts {
    const char *netns;
    const char *hostname;
    struct bind *binds;
    int nbinds;
    const char **rodirs;
    int nrodirs;
};

/* Write end of the status pipe, in the child. */
static int status_fd = -1;

__attribute__((noreturn)) static void usage(const char *why)
{
    if (why)
        fprintf(stderr, "unit-init: %s\n", why);
    fputs("usage: unit-init --netns /run/netns/NAME --hostname HOST [--bind SRC:DST]... "
          "[--readonly-dir DIR]...\n",
          stderr);
    exit(2);
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Parent-side failure before the fork: message on stderr. */
__attribute__((format(printf, 2, 3), noreturn)) static void die(int err, const char *fmt, ...)
{
    va_list ap;

    fputs("unit-init: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(err));
    exit(1);
}

/* Child-side failure during setup: one line on the status pipe, then _exit(1). */
__attribute__((format(printf, 2, 3), noreturn)) static void child_fail(int err, const char *fmt,
                                                                       ...)
{
    char msg[1024];
    int n = snprintf(msg, sizeof(msg), "unit-init: ");
    va_list ap;

    va_start(ap, fmt);
    n += vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < (int)sizeof(msg))
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s\n", strerror(err));
    if (n >= (int)sizeof(msg)) {
        n = (int)sizeof(msg) - 1;
        msg[n - 1] = '\n';
    }
    (void)write_all(status_fd, msg, (size_t)n);
    _exit(1);
}

static long long now_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc || !argv[*i + 1]) {
        fprintf(stderr, "unit-init: option %s needs a value\n", name);
        usage(NULL);
    }
    return argv[++*i];
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    int i;

    memset(o, 0, sizeof(*o));
    o->binds = calloc((size_t)argc, sizeof(*o->binds));
    o->rodirs = calloc((size_t)argc, sizeof(*o->rodirs));
    if (!o->binds || !o->rodirs)
        die(ENOMEM, "parsing arguments");
    for (i = 1; i < argc; i++) {
        const char *v;

        if ((v = opt_value(argc, argv, &i, "--netns")) != NULL) {
            o->netns = v;
        } else if ((v = opt_value(argc, argv, &i, "--hostname")) != NULL) {
            o->hostname = v;
        } else if ((v = opt_value(argc, argv, &i, "--bind")) != NULL) {
            const char *colon = strchr(v, ':');
            struct bind *b = &o->binds[o->nbinds];

            if (!colon || colon == v || colon[1] != '/')
                usage("--bind needs SRC:DST with SRC non-empty and DST absolute");
            b->src = strndup(v, (size_t)(colon - v));
            b->dst = strdup(colon + 1);
            if (!b->src || !b->dst)
                die(ENOMEM, "parsing arguments");
            o->nbinds++;
        } else if ((v = opt_value(argc, argv, &i, "--readonly-dir")) != NULL) {
            if (v[0] != '/')
                usage("--readonly-dir needs an absolute path");
            o->rodirs[o->nrodirs++] = v;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(NULL);
        } else {
            fprintf(stderr, "unit-init: unknown argument \"%s\"\n", argv[i]);
            usage(NULL);
        }
    }
    if (!o->netns || !*o->netns)
        usage("--netns is required");
    if (!o->hostname || !*o->hostname)
        usage("--hostname is required");
    if (strlen(o->hostname) > HOSTNAME_MAX)
        usage("hostname too long");
}

/* mkdir -p with mode 0755; the final path must end up a directory. */
static int mkdir_p(const char *path)
{
    char *buf = strdup(path);
    char *p;
    struct stat st;
    int rc = 0;

    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    for (p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;

            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                rc = -1;
                break;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    if (rc == 0 && stat(path, &st) != 0)
        rc = -1;
    else if (rc == 0 && !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        rc = -1;
    }
    free(buf);
    return rc;
}

static void do_binds(const struct opts *o)
{
    int i;

    for (i = 0; i < o->nbinds; i++) {
        const struct bind *b = &o->binds[i];
        struct stat st, dst;

        if (stat(b->src, &st) != 0)
            child_fail(errno, "bind source %s", b->src);
        if (S_ISDIR(st.st_mode)) {
            if (mkdir_p(b->dst) != 0)
                child_fail(errno, "creating mountpoint %s", b->dst);
        } else if (stat(b->dst, &dst) != 0) {
            if (errno != ENOENT)
                child_fail(errno, "bind target %s", b->dst);
            fprintf(stderr, "unit-init: skipping bind of %s: %s does not exist\n", b->src, b->dst);
            continue;
        }
        if (mount(b->src, b->dst, NULL, MS_BIND | MS_REC, NULL) != 0)
            child_fail(errno, "bind-mounting %s on %s", b->src, b->dst);
    }
}

/* Each DIR becomes a read-only bind of itself; mounts below it stay as they are. */
static void do_readonly(const struct opts *o)
{
    int i;

    for (i = 0; i < o->nrodirs; i++) {
        const char *d = o->rodirs[i];
        unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;
        struct statvfs sv;
        struct stat st;

        if (stat(d, &st) != 0 && errno == ENOENT) {
            fprintf(stderr, "unit-init: skipping read-only %s: it does not exist\n", d);
            continue;
        }
        if (mount(d, d, NULL, MS_BIND | MS_REC, NULL) != 0)
            child_fail(errno, "bind-mounting %s on itself", d);
        if (statvfs(d, &sv) != 0)
            child_fail(errno, "statvfs %s", d);
        /* a bind remount must keep the locked per-mount flags */
        if (sv.f_flag & ST_NOSUID)
            flags |= MS_NOSUID;
        if (sv.f_flag & ST_NODEV)
            flags |= MS_NODEV;
        if (sv.f_flag & ST_NOEXEC)
            flags |= MS_NOEXEC;
        if (sv.f_flag & ST_NOATIME)
            flags |= MS_NOATIME;
        if (sv.f_flag & ST_NODIRATIME)
            flags |= MS_NODIRATIME;
        if (sv.f_flag & ST_RELATIME)
            flags |= MS_RELATIME;
        if (mount(NULL, d, NULL, flags, NULL) != 0)
            child_fail(errno, "remounting %s read-only", d);
    }
}

static void reap_all(void)
{
    for (;;) {
        pid_t p = waitpid(-1, NULL, WNOHANG);

        if (p > 0)
            continue;
        if (p < 0 && errno == EINTR)
            continue;
        return;
    }
}

/* Nothing but PID 1 left in the namespace (zombies of our own are reaped first). */
static int namespace_empty(void)
{
    return kill(-1, 0) != 0 && errno == ESRCH;
}

/* Waits for SIGCHLD for at most ms milliseconds. */
static void wait_chld(const sigset_t *chld, long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    (void)sigtimedwait(chld, NULL, &ts);
}

__attribute__((noreturn)) static void shutdown_namespace(void)
{
    sigset_t chld;
    long long deadline = now_ns() + TERM_GRACE_NS;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    (void)kill(-1, SIGTERM);
    for (;;) {
        reap_all();
        if (namespace_empty() || now_ns() >= deadline)
            break;
        wait_chld(&chld, 10);
    }
    (void)kill(-1, SIGKILL);
    deadline = now_ns() + KILL_REAP_NS;
    for (;;) {
        reap_all();
        if (namespace_empty() || now_ns() >= deadline)
            break;
        wait_chld(&chld, 20);
    }
    /* the kernel kills whatever is left when PID 1 exits */
    _exit(0);
}

__attribute__((noreturn)) static void run_init(const sigset_t *set)
{
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(set, &si);

        if (sig < 0)
            continue; /* EINTR */
        if (sig == SIGCHLD)
            reap_all();
        else if (sig == SIGTERM || sig == SIGINT)
            shutdown_namespace();
        /* SIGHUP: nothing to reload */
    }
}

__attribute__((noreturn)) static void child_main(const struct opts *o)
{
    static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
    sigset_t set;
    size_t i;
    int null_fd;
    struct stat st;

    sigemptyset(&set);
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&set, sigs[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        child_fail(errno, "sigprocmask");
    /* dispositions inherited as SIG_IGN would make SIGCHLD auto-reap and hide signals */
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (signal(sigs[i], SIG_DFL) == SIG_ERR)
            child_fail(errno, "signal");

    if (setsid() < 0)
        child_fail(errno, "setsid");
    if (sethostname(o->hostname, strlen(o->hostname)) != 0)
        child_fail(errno, "sethostname %s", o->hostname);
    do_binds(o);
    do_readonly(o);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        child_fail(errno, "mounting /proc");
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
        (void)mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    if (chdir("/") != 0)
        child_fail(errno, "chdir /");

    /* Let go of the caller's stdio before reporting, so that a caller reading our parent's
     * stdout to EOF is not held up by this long-lived process. */
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0)
        child_fail(errno, "opening /dev/null");
    for (i = 0; i < 3; i++)
        if (dup2(null_fd, (int)i) < 0)
            child_fail(errno, "redirecting stdio");
    if (null_fd > 2)
        close(null_fd);
    if (write_all(status_fd, "ok\n", 3) != 0)
        _exit(1);
    close(status_fd);
    (void)close_range(3, ~0U, 0);
    run_init(&set);
}

int main(int argc, char **argv)
{
    struct opts o;
    int fd, pfd[2];
    pid_t pid;
    char buf[4096];
    size_t len = 0;

    parse_args(argc, argv, &o);

    fd = open(o.netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(errno, "opening %s", o.netns);
    if (setns(fd, CLONE_NEWNET) != 0)
        die(errno, "joining network namespace %s", o.netns);
    close(fd);
    if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID) != 0)
        die(errno, "unshare");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        die(errno, "making / private");
    if (pipe2(pfd, O_CLOEXEC) != 0)
        die(errno, "pipe");
    (void)fflush(NULL);

    pid = fork();
    if (pid < 0)
        die(errno, "fork");
    if (pid == 0) {
        close(pfd[0]);
        status_fd = pfd[1];
        child_main(&o);
    }

    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): o's arrays live until the process exits
    close(pfd[1]);
    for (;;) {
        char tmp[512];
        ssize_t n = read(pfd[0], tmp, sizeof(tmp));

        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (n == 0)
            break;
        if (len < sizeof(buf)) {
            size_t take = (size_t)n < sizeof(buf) - len ? (size_t)n : sizeof(buf) - len;

            memcpy(buf + len, tmp, take);
            len += take;
        }
    }
    close(pfd[0]);

    if (len == 3 && memcmp(buf, "ok\n", 3) == 0) {
        if (printf("%d\n", (int)pid) >= 0 && fflush(stdout) == 0)
            return 0;
        fprintf(stderr, "unit-init: cannot report the PID: %s\n", strerror(errno));
    } else if (len > 0) {
        (void)write_all(STDERR_FILENO, buf, len);
        if (buf[len - 1] != '\n')
            (void)write_all(STDERR_FILENO, "\n", 1);
    } else {
        fputs("unit-init: the unit's PID 1 exited during setup\n", stderr);
    }
    (void)kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return 1;
}
