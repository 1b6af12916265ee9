/* The agent's log (log.h): formats a line once, then writes it to the journal or the
 * log file and, during a request, hands it to the connection's sink. */
/* _GNU_SOURCE is how glibc is asked for asprintf, vasprintf. */
#define _GNU_SOURCE
#include "log.h"

#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

enum log_target {
    TARGET_STDERR, /* before log_init */
    TARGET_JOURNAL,
    TARGET_FILE,
};

static enum log_target target = TARGET_STDERR;
static char *file_path;
static enum log_level threshold = LOG_LEVEL_INFO;
static log_sink_fn sink;
static void *sink_data;
static bool in_sink;

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level > LOG_LEVEL_ERROR)
        return "ERROR";
    return level_names[level];
}

int log_level_parse(const char *name, enum log_level *out)
{
    if (!name)
        return -EINVAL;
    for (unsigned i = 0; i <= LOG_LEVEL_ERROR; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "WARN") == 0) {
        *out = LOG_LEVEL_WARNING;
        return 0;
    }
    return -EINVAL;
}

struct capture {
    char *buf;
    size_t len;
    bool full;
};
static bool capturing;
static struct capture captured[LOG_LEVEL_ERROR + 1];

/* Capture and the sink belong to the thread that handles hooks (the one that called
 * log_init); lines from other threads (the HA loop) only go to the target. */
static pthread_t hook_thread;
static bool hook_thread_known;

static bool on_hook_thread(void)
{
    return !hook_thread_known || pthread_equal(pthread_self(), hook_thread);
}

void log_capture_begin(void)
{
    for (size_t i = 0; i <= LOG_LEVEL_ERROR; i++) {
        free(captured[i].buf);
        captured[i] = (struct capture){0};
    }
    capturing = true;
}

char *log_capture_take(enum log_level level)
{
    if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
        return NULL;
    char *text = captured[level].buf;
    captured[level] = (struct capture){0};
    capturing = false;
    return text;
}

static void capture_line(enum log_level level, const char *msg)
{
    if (!capturing || level < LOG_LEVEL_INFO || level > LOG_LEVEL_ERROR)
        return;
    struct capture *c = &captured[level];
    if (c->full)
        return;
    size_t n = strlen(msg);
    static const char more[] = "(more lines in the agent's log)";
    const char *add = msg;
    if (c->len + n + 2 > LOG_CAPTURE_MAX) {
        add = more;
        n = sizeof more - 1;
        c->full = true;
    }
    char *nb = realloc(c->buf, c->len + n + 2);
    if (!nb)
        return;
    c->buf = nb;
    if (c->len)
        c->buf[c->len++] = '\n';
    memcpy(c->buf + c->len, add, n);
    c->len += n;
    c->buf[c->len] = '\0';
}

static log_sink_fn forward;
static void *forward_data;

void log_set_forward(log_sink_fn fn, void *userdata)
{
    forward = fn;
    forward_data = userdata;
}

void log_set_threshold(enum log_level level)
{
    threshold = level;
}

void log_set_sink(log_sink_fn fn, void *userdata)
{
    sink = fn;
    sink_data = userdata;
}

/* Create the last component of path's directory (mode 0700) if it is missing. */
static int ensure_parent_dir(const char *path, char **err)
{
    char *dir = strdup(path);
    if (!dir)
        return errmsg_set(err, -ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            rc =
                errmsg_set(err, -errno, "cannot create log directory %s: %s", dir, strerror(errno));
    }
    free(dir);
    return rc;
}

static int open_log_file(void)
{
    return open(file_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
}

int log_init(char **err)
{
    hook_thread = pthread_self();
    hook_thread_known = true;
    const char *env = getenv("PG_AGENT_LOG");
    const char *path = NULL;
    if (env && *env)
        path = env;
    else if (access(JOURNAL_SOCKET, F_OK) == 0)
        path = NULL;
    else
        path = PG_AGENT_LOG_FILE;

    free(file_path);
    file_path = NULL;
    if (!path) {
        target = TARGET_JOURNAL;
        return 0;
    }
    if (path[0] != '/')
        return errmsg_set(err, -EINVAL, "log file path must be absolute");
    file_path = strdup(path);
    if (!file_path)
        return errmsg_set(err, -ENOMEM, "out of memory");
    int rc = ensure_parent_dir(file_path, err);
    if (rc < 0)
        return rc;
    int fd = open_log_file();
    if (fd < 0)
        return errmsg_set(err, -errno, "cannot open log file %s: %s", file_path, strerror(errno));
    close(fd);
    target = TARGET_FILE;
    return 0;
}

static int journal_priority(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_DEBUG:
        return LOG_DEBUG;
    case LOG_LEVEL_INFO:
        return LOG_INFO;
    case LOG_LEVEL_WARNING:
        return LOG_WARNING;
    case LOG_LEVEL_ERROR:
    default:
        return LOG_ERR;
    }
}

/* "2025-06-09T11:14:50.123Z pg-agent[42]: INFO message\n", control characters in the
 * message replaced by spaces so that one call is one line. Written with one write(). */
static void write_line(int fd, enum log_level level, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char stamp[32] = "";
    long ms = 0;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm)) {
        (void)strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        ms = ts.tv_nsec / 1000000L;
    }
    char *line = NULL;
    int n = asprintf(&line, "%s.%03ldZ pg-agent[%ld]: %s %s\n", stamp, ms, (long)getpid(),
                     log_level_name(level), msg);
    if (n < 0)
        return;
    for (int i = 0; i < n - 1; i++)
        if ((unsigned char)line[i] < 0x20)
            line[i] = ' ';
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = write(fd, line + off, (size_t)n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < threshold)
        return;
    int saved_errno = errno;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        errno = saved_errno;
        return;
    }

    if (forward) {
        forward(forward_data, level, msg);
        free(msg);
        errno = saved_errno;
        return;
    }
    switch (target) {
    case TARGET_JOURNAL:
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", journal_priority(level),
                        "SYSLOG_IDENTIFIER=pg-agent", NULL);
        break;
    case TARGET_FILE: {
        int fd = open_log_file();
        if (fd >= 0) {
            write_line(fd, level, msg);
            close(fd);
        }
        break;
    }
    case TARGET_STDERR:
    default:
        write_line(STDERR_FILENO, level, msg);
        break;
    }

    if (!on_hook_thread()) {
        free(msg);
        errno = saved_errno;
        return;
    }
    capture_line(level, msg);
    if (sink && !in_sink) {
        in_sink = true;
        sink(sink_data, level, msg);
        in_sink = false;
    }
    free(msg);
    errno = saved_errno;
}
