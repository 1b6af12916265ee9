/* SQL work in a short-lived child process (sqlworker.h): fork, connect, run the job, report
 * its log lines and its result over a pipe. */
/* _GNU_SOURCE is how glibc is asked for asprintf and pipe2. */
#define _GNU_SOURCE
#include "sqlworker.h"

#include "db.h"
#include "errmsg.h"
#include "log.h"
#include "proc.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKER_TIMEOUT_MS 120000

/* In the child: a log line becomes "L<level> <text>\n" on the pipe (newlines flattened). */
static void forward_line(void *userdata, enum log_level level, const char *message)
{
    int fd = *(int *)userdata;
    char *line = NULL;
    int n = asprintf(&line, "L%d %s\n", (int)level, message);
    if (n < 0)
        return;
    for (int i = 3; i < n - 1; i++)
        if (line[i] == '\n')
            line[i] = ' ';
    (void)proto_write_all(fd, line, (size_t)n);
    free(line);
}

static void __attribute__((noreturn))
worker_child(int fd, const char *socket_dir, int port, sqlworker_fn fn, void *arg)
{
    log_set_forward(forward_line, &fd);
    PGconn *conn = NULL;
    char *err = NULL;
    int rc = db_connect(socket_dir, port, &conn, &err);
    if (rc == 0)
        rc = fn(conn, arg, &err);
    db_close(conn);
    char *line = NULL;
    int n = rc >= 0 ? asprintf(&line, "R %d\n", rc) : asprintf(&line, "E %s\n", ERRMSG(err));
    if (n > 0) {
        for (int i = 2; i < n - 1; i++)
            if (line[i] == '\n')
                line[i] = ' ';
        (void)proto_write_all(fd, line, (size_t)n);
    }
    _exit(0);
}

/* One line from the child: log it, or take the verdict (*answered then). */
static void worker_line(char *line, int max_result, int *result, bool *answered, char **err)
{
    if (line[0] == 'R' || line[0] == 'E')
        *answered = true;
    if (line[0] == 'L' && line[1] >= '0' && line[1] <= '3' && line[2] == ' ') {
        log_msg((enum log_level)(line[1] - '0'), "%s", line + 3);
    } else if (line[0] == 'R' && line[1] == ' ') {
        char *end = NULL;
        long n = strtol(line + 2, &end, 10);
        *result = end && *end == '\0' && n >= 0 && n <= max_result
                      ? (int)n
                      : errmsg_set(err, -1, "the SQL worker answered nonsense");
    } else if (line[0] == 'E' && line[1] == ' ') {
        *result = errmsg_set(err, -1, "%s", line + 2);
    }
}

int sqlworker_run(const char *socket_dir, int port, sqlworker_fn fn, void *arg, int max_result,
                  char **err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return errmsg_set(err, -1, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return errmsg_set(err, -1, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(p[0]);
        worker_child(p[1], socket_dir, port, fn, arg);
    }
    close(p[1]);
    int result = -1;
    bool answered = false;
    char buf[8192];
    size_t len = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        proc_keepalive();
        int pr = poll(&pfd, 1, 1000);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 > WORKER_TIMEOUT_MS) {
            kill(pid, SIGKILL);
            result = errmsg_set(err, -1, "the SQL worker did not finish in %d s; killed",
                                WORKER_TIMEOUT_MS / 1000);
            answered = true;
            break;
        }
        if (pr <= 0)
            continue;
        ssize_t r = read(p[0], buf + len, sizeof buf - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = '\0';
            worker_line(buf, max_result, &result, &answered, err);
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
        if (len == sizeof buf - 1)
            len = 0; /* an over-long line: drop it */
    }
    close(p[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (!answered)
        result = errmsg_set(err, -1, "the SQL worker ended without an answer");
    return result;
}
