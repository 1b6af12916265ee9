/* The Linux hardware watchdog (watchdog.h): open and check the device, set and verify its
 * timeout, ping it, and disarm it with the magic close on every way out. */
/* _GNU_SOURCE, as in the rest of the agent (strdup, strnlen). */
#define _GNU_SOURCE
#include "watchdog.h"

#include "errmsg.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct watchdog {
    int fd;
    int timeout;        /* effective, seconds, as the device reports it */
    unsigned options;   /* WDIOF_* from WDIOC_GETSUPPORT */
    bool ping_by_write; /* WDIOC_KEEPALIVE is not understood: write instead */
    char identity[33];  /* watchdog_info.identity (32 bytes, maybe unterminated) + NUL */
    char *path;
};

_Static_assert(sizeof ((struct watchdog_info){0}).identity == 32,
               "identity buffer matches struct watchdog_info");

static const char *const mode_names[] = {
    [WATCHDOG_OFF] = "off",
    [WATCHDOG_AUTOMATIC] = "automatic",
    [WATCHDOG_REQUIRED] = "required",
};

int watchdog_mode_parse(const char *s, enum watchdog_mode *out)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++)
        if (strcmp(s, mode_names[i]) == 0) {
            *out = (enum watchdog_mode)i;
            return 0;
        }
    return -EINVAL;
}

const char *watchdog_mode_name(enum watchdog_mode m)
{
    if ((unsigned)m < sizeof mode_names / sizeof mode_names[0])
        return mode_names[m];
    return "unknown";
}

/* ioctl with EINTR retried. Returns 0 or -errno. */
static int xioctl(int fd, unsigned long req, void *arg)
{
    for (;;) {
        if (ioctl(fd, req, arg) >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Write one byte, EINTR retried. Returns 0 or -errno (-EIO when nothing was written). */
static int write_byte(int fd, char c)
{
    for (;;) {
        ssize_t n = write(fd, &c, 1);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : -EIO;
    }
}

/* The magic close: 'V' then close. The descriptor is gone afterwards whatever happens
 * (close is not retried on EINTR: on Linux the descriptor is released regardless). */
static void disarm_close(int fd, const char *path)
{
    int rc = write_byte(fd, 'V');
    if (rc < 0)
        log_warning("watchdog %s: magic close failed (%s): the device may still reset the "
                    "machine",
                    path, strerror(-rc));
    if (close(fd) < 0 && errno != EINTR)
        log_warning("watchdog %s: close: %s", path, strerror(errno));
}

static int open_error(const char *path, int e, char **err)
{
    switch (e) {
    case ENOENT:
        return errmsg_set(err, -ENOENT,
                          "watchdog device %s is absent (no watchdog driver loaded?)", path);
    case EACCES:
    case EPERM:
        return errmsg_set(err, -e, "watchdog device %s: permission denied (%s)", path,
                          strerror(e));
    case EBUSY:
        return errmsg_set(err, -EBUSY,
                          "watchdog device %s is busy (another process holds it open)", path);
    default:
        return errmsg_set(err, -e, "watchdog device %s cannot be opened: %s", path,
                          strerror(e));
    }
}

/* Query and configure an open device; on failure the caller disarms and closes it. */
static int setup(struct watchdog *w, int timeout_s, char **err)
{
    struct watchdog_info info;
    memset(&info, 0, sizeof info);
    int rc = xioctl(w->fd, WDIOC_GETSUPPORT, &info);
    if (rc == -ENOTTY || rc == -EINVAL)
        return errmsg_set(err, -ENOTTY, "%s is not a watchdog device (WDIOC_GETSUPPORT: %s)",
                          w->path, strerror(-rc));
    if (rc < 0)
        return errmsg_set(err, rc, "watchdog device %s: WDIOC_GETSUPPORT failed: %s", w->path,
                          strerror(-rc));
    w->options = info.options;
    size_t len = strnlen((const char *)info.identity, sizeof info.identity);
    memcpy(w->identity, info.identity, len);
    w->identity[len] = '\0';
    if (!(info.options & WDIOF_KEEPALIVEPING))
        return errmsg_set(err, -EOPNOTSUPP,
                          "watchdog device %s (%s) does not support keepalive pings", w->path,
                          w->identity);

    bool settable = (info.options & WDIOF_SETTIMEOUT) != 0;
    if (settable) {
        int t = timeout_s;
        rc = xioctl(w->fd, WDIOC_SETTIMEOUT, &t);
        if (rc < 0)
            return errmsg_set(err, rc, "watchdog device %s (%s): the timeout cannot be set to "
                              "%d s: %s", w->path, w->identity, timeout_s, strerror(-rc));
    }
    int t = 0;
    rc = xioctl(w->fd, WDIOC_GETTIMEOUT, &t);
    if (rc < 0)
        return errmsg_set(err, rc, "watchdog device %s (%s): its timeout cannot be read "
                          "(WDIOC_GETTIMEOUT: %s)", w->path, w->identity, strerror(-rc));
    if (t <= 0)
        return errmsg_set(err, -ERANGE, "watchdog device %s (%s): the device says its "
                          "timeout is %d s", w->path, w->identity, t);
    if (t > timeout_s)
        return errmsg_set(err, -ERANGE, "watchdog device %s (%s): the timeout cannot be set "
                          "to %d s%s; the device says %d s, too late to fence", w->path,
                          w->identity, timeout_s,
                          settable ? "" : " (the driver cannot change it)", t);
    w->timeout = t;
    return 0;
}

int watchdog_open(const char *path, int timeout_s, struct watchdog **out, char **err)
{
    *out = NULL;
    if (!path || !*path)
        return errmsg_set(err, -EINVAL, "watchdog: no device path");
    if (timeout_s < 1)
        return errmsg_set(err, -EINVAL, "watchdog %s: invalid timeout %d s", path, timeout_s);
    struct watchdog *w = calloc(1, sizeof *w);
    if (!w)
        return errmsg_set(err, -ENOMEM, "watchdog %s: out of memory", path);
    w->path = strdup(path);
    if (!w->path) {
        free(w);
        return errmsg_set(err, -ENOMEM, "watchdog %s: out of memory", path);
    }
    for (;;) {
        w->fd = open(path, O_WRONLY | O_CLOEXEC);
        if (w->fd >= 0 || errno != EINTR)
            break;
    }
    if (w->fd < 0) {
        int rc = open_error(path, errno, err);
        free(w->path);
        free(w);
        return rc;
    }
    int rc = setup(w, timeout_s, err);
    if (rc < 0) {
        disarm_close(w->fd, w->path);
        free(w->path);
        free(w);
        return rc;
    }
    log_info("watchdog %s (%s) armed, timeout %d s", w->path, w->identity, w->timeout);
    *out = w;
    return 0;
}

int watchdog_keepalive(struct watchdog *w, char **err)
{
    if (!w)
        return errmsg_set(err, -EINVAL, "watchdog: not open");
    if (!w->ping_by_write) {
        int dummy = 0;
        int rc = xioctl(w->fd, WDIOC_KEEPALIVE, &dummy);
        if (rc == 0)
            return 0;
        if (rc != -ENOTTY && rc != -EINVAL)
            return errmsg_set(err, rc, "watchdog %s: keepalive failed: %s", w->path,
                              strerror(-rc));
        log_info("watchdog %s: WDIOC_KEEPALIVE not supported (%s), pinging by write",
                 w->path, strerror(-rc));
        w->ping_by_write = true;
    }
    int rc = write_byte(w->fd, '1');
    if (rc < 0)
        return errmsg_set(err, rc, "watchdog %s: keepalive write failed: %s", w->path,
                          strerror(-rc));
    return 0;
}

int watchdog_timeout(const struct watchdog *w)
{
    return w ? w->timeout : 0;
}

const char *watchdog_identity(const struct watchdog *w)
{
    return w ? w->identity : "";
}

void watchdog_close(struct watchdog *w)
{
    if (!w)
        return;
    disarm_close(w->fd, w->path);
    log_info("watchdog %s released", w->path);
    free(w->path);
    free(w);
}
