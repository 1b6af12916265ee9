/* Daemonising with a readiness report (daemon.h): the parent waits on a pipe for the
 * detached agent to say "listening" or why it could not, and exits accordingly. */
/* _GNU_SOURCE is how glibc is asked for pipe2, close_range and asprintf. */
#define _GNU_SOURCE
#include "daemon.h"

#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

void daemon_report(int fd, enum daemon_report what, const char *message)
{
    if (fd < 0)
        return;
    char c = (char)what;
    write_all(fd, &c, 1);
    if (what == DAEMON_FAILED && message)
        write_all(fd, message, strnlen(message, 4096));
    close(fd);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The original process: read the report until the agent closes the pipe (it does right
 * after reporting, and the pipe is close-on-exec), then exit with what it says. */
static void __attribute__((noreturn)) wait_for_report(int fd, pid_t child)
{
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        ;
    char buf[4097];
    size_t len = 0;
    long long deadline = now_ms() + DAEMON_READY_TIMEOUT_SEC * 1000LL;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            fprintf(stderr, "pg-agent: the agent did not report readiness within %d s\n",
                    DAEMON_READY_TIMEOUT_SEC);
            _exit(1);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "pg-agent: poll: %s\n", strerror(errno));
            _exit(1);
        }
        if (pr <= 0)
            continue;
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "pg-agent: reading the readiness pipe: %s\n", strerror(errno));
            _exit(1);
        }
        len += (size_t)r;
        if (r == 0 || len == sizeof buf - 1)
            break;
    }
    buf[len] = '\0';
    if (len == 0) {
        fprintf(stderr, "pg-agent: the agent exited during start-up\n");
        _exit(1);
    }
    switch (buf[0]) {
    case DAEMON_READY:
        _exit(0);
    case DAEMON_ALREADY_RUNNING:
        printf("pg-agent: another agent is already running\n");
        (void)fflush(stdout);
        _exit(0);
    case DAEMON_FAILED:
        fprintf(stderr, "pg-agent: %s\n", len > 1 ? buf + 1 : "start-up failed");
        _exit(1);
    default:
        fprintf(stderr, "pg-agent: unexpected readiness report\n");
        _exit(1);
    }
}

/* In a child of daemon_start: report "<what>: <strerror(errnum)>" and exit 1. */
static void __attribute__((noreturn)) child_failed(int fd, const char *what, int errnum)
{
    char *msg = NULL;
    if (asprintf(&msg, "%s: %s", what, strerror(errnum)) < 0)
        msg = NULL;
    daemon_report(fd, DAEMON_FAILED, msg ? msg : what);
    free(msg);
    _exit(1);
}

static int redirect_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    for (int i = 0; i < 3; i++)
        if (dup2(fd, i) < 0)
            rc = -errno;
    if (fd > 2)
        close(fd);
    return rc;
}

int daemon_start(int *report_fd, char **err)
{
    *report_fd = -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return errmsg_set(err, -errno, "pipe: %s", strerror(errno));
    (void)fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return errmsg_set(err, -e, "fork: %s", strerror(e));
    }
    if (pid > 0) {
        close(p[1]);
        wait_for_report(p[0], pid);
    }

    /* Intermediate child: new session, then fork again so that the agent is not a
     * session leader and can never acquire a controlling terminal. */
    close(p[0]);
    if (setsid() < 0)
        child_failed(p[1], "setsid", errno);
    pid = fork();
    if (pid < 0)
        child_failed(p[1], "fork", errno);
    if (pid > 0)
        _exit(0);

    /* The agent: nothing inherited but stdio and the report pipe. */
    if (p[1] > 3)
        (void)close_range(3, (unsigned)p[1] - 1, 0);
    (void)close_range((unsigned)p[1] + 1, ~0U, 0);
    umask(077);
    if (chdir("/") < 0)
        child_failed(p[1], "chdir /", errno);
    int rc = redirect_stdio();
    if (rc < 0)
        child_failed(p[1], "cannot redirect stdio to /dev/null", -rc);
    *report_fd = p[1];
    return 0;
}
