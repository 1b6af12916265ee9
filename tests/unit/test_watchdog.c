/* Unit tests for agent/watchdog.c: mode names, the open checks, the timeout negotiation,
 * keepalive (ioctl and the write fallback) and the magic close on every way out.
 *
 * The test machine has no watchdog device (no softdog, no CUSE), so this file emulates the
 * kernel's side: it defines ioctl() and write(), which interpose libc's for the whole test
 * binary, and answers like a watchdog driver only for descriptors that refer to one temp
 * file the test created (matched by st_dev/st_ino through fstat). Every other descriptor
 * goes straight to the kernel with syscall(2), so the rest of the binary (stdio, the log,
 * the sanitizer runtime) is unaffected. Each case configures the emulated driver: which
 * WDIOF_* options it reports, a minimum timeout it rounds up to, KEEPALIVE not understood,
 * GETSUPPORT not understood (not a watchdog), one EINTR.
 */
#define _GNU_SOURCE
#include "check.h"

#include "log.h"
#include "watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- the emulated driver ------------------------------------------------------------ */

static struct emu {
    bool active;
    dev_t dev;
    ino_t ino;
    /* configuration */
    unsigned options;       /* WDIOC_GETSUPPORT options */
    bool getsupport_enotty; /* not a watchdog */
    bool keepalive_enotty;  /* WDIOC_KEEPALIVE not understood */
    bool settimeout_einval; /* WDIOC_SETTIMEOUT refuses the value */
    int min_timeout;        /* SETTIMEOUT rounds up to this */
    int eintr_getsupport;   /* fail GETSUPPORT with EINTR this many times first */
    /* state and record */
    int timeout;            /* current timeout (the driver's default before any set) */
    int fd;                 /* the descriptor last seen */
    bool cloexec, wronly;   /* how it was opened (checked at GETSUPPORT) */
    int getsupport_calls;
    int set_calls;
    int set_value;          /* the value asked for by the last SETTIMEOUT */
    int keepalive_ioctls;   /* WDIOC_KEEPALIVE calls, answered or not */
    int keepalives;         /* successful pings: KEEPALIVE ioctls and writes */
    int write_pings;        /* writes (each one pings, as in the kernel) */
    bool magic;             /* the last write contained 'V' (release allowed) */
    char last_byte;
} emu;

static bool emulated(int fd)
{
    if (!emu.active || fd < 0)
        return false;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    return st.st_dev == emu.dev && st.st_ino == emu.ino;
}

static int fail(int e)
{
    errno = e;
    return -1;
}

static int emu_ioctl(int fd, unsigned long req, void *arg)
{
    emu.fd = fd;
    switch (req) {
    case WDIOC_GETSUPPORT: {
        emu.getsupport_calls++;
        int fdflags = fcntl(fd, F_GETFD);
        int flflags = fcntl(fd, F_GETFL);
        emu.cloexec = fdflags >= 0 && (fdflags & FD_CLOEXEC);
        emu.wronly = flflags >= 0 && (flflags & O_ACCMODE) == O_WRONLY;
        if (emu.eintr_getsupport > 0) {
            emu.eintr_getsupport--;
            return fail(EINTR);
        }
        if (emu.getsupport_enotty)
            return fail(ENOTTY);
        struct watchdog_info *info = arg;
        memset(info, 0, sizeof *info);
        info->options = emu.options;
        info->firmware_version = 1;
        /* all 32 bytes used, no NUL: the module must bound it */
        memcpy(info->identity, "Emulated Watchdog 0123456789ABCD", sizeof info->identity);
        return 0;
    }
    case WDIOC_SETTIMEOUT: {
        if (!(emu.options & WDIOF_SETTIMEOUT))
            return fail(EOPNOTSUPP);
        int *t = arg;
        emu.set_calls++;
        emu.set_value = *t;
        if (emu.settimeout_einval)
            return fail(EINVAL);
        emu.timeout = *t < emu.min_timeout ? emu.min_timeout : *t;
        *t = emu.timeout;
        emu.keepalives++; /* the kernel pings after setting the timeout */
        return 0;
    }
    case WDIOC_GETTIMEOUT:
        *(int *)arg = emu.timeout;
        return 0;
    case WDIOC_KEEPALIVE:
        emu.keepalive_ioctls++;
        if (emu.keepalive_enotty)
            return fail(ENOTTY);
        emu.keepalives++;
        return 0;
    default:
        return fail(ENOTTY);
    }
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (emulated(fd))
        return emu_ioctl(fd, req, arg);
    return (int)syscall(SYS_ioctl, fd, req, arg);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (!emulated(fd))
        return (ssize_t)syscall(SYS_write, fd, buf, n);
    /* as the kernel's watchdog_write: any write pings; a 'V' anywhere allows release */
    emu.fd = fd;
    emu.magic = false;
    for (size_t i = 0; i < n; i++) {
        char c = ((const char *)buf)[i];
        if (c == 'V')
            emu.magic = true;
        emu.last_byte = c;
    }
    if (n) {
        emu.write_pings++;
        emu.keepalives++;
    }
    return (ssize_t)n;
}

/* ---- fixtures ------------------------------------------------------------------------ */

static char dev_path[64];

/* A fresh emulated device with the usual driver options and a default timeout of 60 s. */
static void emu_reset(void)
{
    memset(&emu, 0, sizeof emu);
    snprintf(dev_path, sizeof dev_path, "/tmp/test-watchdog-XXXXXX");
    int fd = mkstemp(dev_path);
    if (fd < 0) {
        perror("mkstemp");
        exit(2);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        perror("fstat");
        exit(2);
    }
    close(fd);
    emu.dev = st.st_dev;
    emu.ino = st.st_ino;
    emu.options = WDIOF_KEEPALIVEPING | WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE;
    emu.timeout = 60;
    emu.min_timeout = 1;
    emu.fd = -1;
    emu.active = true;
}

static void emu_done(void)
{
    emu.active = false;
    unlink(dev_path);
}

/* Whether the descriptor the driver last saw has been closed. */
static bool emu_fd_closed(void)
{
    return emu.fd >= 0 && fcntl(emu.fd, F_GETFD) < 0 && errno == EBADF;
}

static bool contains(const char *s, const char *part)
{
    return s && strstr(s, part) != NULL;
}

/* ---- cases ------------------------------------------------------------------------------ */

TEST(modes)
{
    enum watchdog_mode m = WATCHDOG_REQUIRED;
    CHECK(watchdog_mode_parse("off", &m) == 0 && m == WATCHDOG_OFF);
    CHECK(watchdog_mode_parse("automatic", &m) == 0 && m == WATCHDOG_AUTOMATIC);
    CHECK(watchdog_mode_parse("required", &m) == 0 && m == WATCHDOG_REQUIRED);
    m = WATCHDOG_AUTOMATIC;
    CHECK(watchdog_mode_parse("", &m) == -EINVAL);
    CHECK(watchdog_mode_parse("Required", &m) == -EINVAL);
    CHECK(watchdog_mode_parse("auto", &m) == -EINVAL);
    CHECK(watchdog_mode_parse("off ", &m) == -EINVAL);
    CHECK(watchdog_mode_parse(NULL, &m) == -EINVAL);
    CHECK(m == WATCHDOG_AUTOMATIC); /* untouched on failure */
    CHECK_STR(watchdog_mode_name(WATCHDOG_OFF), "off");
    CHECK_STR(watchdog_mode_name(WATCHDOG_AUTOMATIC), "automatic");
    CHECK_STR(watchdog_mode_name(WATCHDOG_REQUIRED), "required");
    CHECK_STR(watchdog_mode_name((enum watchdog_mode)7), "unknown");
    for (int i = WATCHDOG_OFF; i <= WATCHDOG_REQUIRED; i++) {
        enum watchdog_mode back;
        CHECK(watchdog_mode_parse(watchdog_mode_name((enum watchdog_mode)i), &back) == 0);
        CHECK((int)back == i);
    }
}

TEST(bad_arguments)
{
    struct watchdog *w = (struct watchdog *)&w;
    char *err = NULL;
    CHECK(watchdog_open("", 10, &w, &err) == -EINVAL);
    CHECK(w == NULL);
    CHECK(err != NULL);
    CHECK(watchdog_open("/dev/null", 0, &w, &err) == -EINVAL);
    CHECK(contains(err, "/dev/null"));
    CHECK(w == NULL);
    free(err);
}

TEST(absent)
{
    struct watchdog *w = NULL;
    char *err = NULL;
    const char *path = "/nonexistent/test-watchdog/watchdog0";
    CHECK(watchdog_open(path, 10, &w, &err) == -ENOENT);
    CHECK(w == NULL);
    CHECK(contains(err, path));
    CHECK(contains(err, "absent"));
    free(err);
}

/* The real /dev/null, not emulated: the kernel answers WDIOC_GETSUPPORT with ENOTTY. */
TEST(dev_null_is_not_a_watchdog)
{
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open("/dev/null", 10, &w, &err) == -ENOTTY);
    CHECK(w == NULL);
    CHECK(contains(err, "/dev/null"));
    CHECK(contains(err, "not a watchdog"));
    free(err);
}

TEST(emulated_not_a_watchdog)
{
    emu_reset();
    emu.getsupport_enotty = true;
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open(dev_path, 10, &w, &err) == -ENOTTY);
    CHECK(w == NULL);
    CHECK(contains(err, dev_path));
    CHECK(contains(err, "not a watchdog"));
    CHECK(emu.magic);       /* disarmed before closing */
    CHECK(emu_fd_closed()); /* and not leaked */
    free(err);
    emu_done();
}

TEST(open_ping_close)
{
    emu_reset();
    emu.eintr_getsupport = 2; /* retried */
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open(dev_path, 10, &w, &err) == 0);
    CHECK(w != NULL);
    CHECK(err == NULL);
    CHECK(emu.getsupport_calls == 3);
    CHECK(emu.cloexec);
    CHECK(emu.wronly);
    CHECK(emu.set_calls == 1 && emu.set_value == 10);
    CHECK(emu.timeout == 10);
    CHECK(watchdog_timeout(w) == 10);
    CHECK_STR(watchdog_identity(w), "Emulated Watchdog 0123456789ABCD");
    CHECK(!emu.magic);
    int before = emu.keepalives;
    for (int i = 0; i < 3; i++)
        CHECK(watchdog_keepalive(w, &err) == 0);
    CHECK(emu.keepalive_ioctls == 3);
    CHECK(emu.keepalives == before + 3);
    CHECK(emu.write_pings == 0);
    CHECK(!emu.magic);
    CHECK(!emu_fd_closed());
    watchdog_close(w);
    CHECK(emu.magic);
    CHECK(emu.last_byte == 'V');
    CHECK(emu.write_pings == 1);
    CHECK(emu_fd_closed());
    free(err);
    emu_done();
}

/* The driver rounds the timeout up (hardware granularity, minimum): it would fire after
 * the lock has expired, so the open fails, and the device is disarmed. */
TEST(clamped_timeout_refused)
{
    emu_reset();
    emu.min_timeout = 30;
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open(dev_path, 10, &w, &err) == -ERANGE);
    CHECK(w == NULL);
    CHECK(emu.set_calls == 1 && emu.set_value == 10);
    CHECK(contains(err, dev_path));
    CHECK(contains(err, "cannot be set to 10 s"));
    CHECK(contains(err, "says 30 s"));
    CHECK(emu.magic);
    CHECK(emu.last_byte == 'V');
    CHECK(emu_fd_closed());
    free(err);
    emu_done();
}

TEST(settimeout_refused)
{
    emu_reset();
    emu.settimeout_einval = true;
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open(dev_path, 10, &w, &err) == -EINVAL);
    CHECK(w == NULL);
    CHECK(contains(err, dev_path));
    CHECK(contains(err, "cannot be set to 10 s"));
    CHECK(emu.magic);
    CHECK(emu_fd_closed());
    free(err);
    emu_done();
}

/* No WDIOF_SETTIMEOUT: the timeout is not touched; the device's own one decides. */
TEST(fixed_timeout)
{
    emu_reset();
    emu.options &= ~(unsigned)WDIOF_SETTIMEOUT;
    emu.timeout = 60;
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open(dev_path, 10, &w, &err) == -ERANGE);
    CHECK(w == NULL);
    CHECK(emu.set_calls == 0);
    CHECK(contains(err, "cannot be set to 10 s"));
    CHECK(contains(err, "says 60 s"));
    CHECK(emu.magic);
    CHECK(emu_fd_closed());
    free(err);
    emu_done();

    /* a fixed timeout shorter than asked for is fine: it fires earlier */
    emu_reset();
    emu.options &= ~(unsigned)WDIOF_SETTIMEOUT;
    emu.timeout = 8;
    err = NULL;
    CHECK(watchdog_open(dev_path, 10, &w, &err) == 0);
    CHECK(emu.set_calls == 0);
    CHECK(watchdog_timeout(w) == 8);
    watchdog_close(w);
    CHECK(emu.magic);
    CHECK(emu_fd_closed());
    free(err);
    emu_done();
}

TEST(no_keepalive_ping)
{
    emu_reset();
    emu.options = WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE;
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open(dev_path, 10, &w, &err) == -EOPNOTSUPP);
    CHECK(w == NULL);
    CHECK(contains(err, dev_path));
    CHECK(contains(err, "keepalive"));
    CHECK(emu.magic);
    CHECK(emu_fd_closed());
    free(err);
    emu_done();
}

/* WDIOC_KEEPALIVE answered with ENOTTY: ping by writing, and keep doing so. */
TEST(keepalive_write_fallback)
{
    emu_reset();
    emu.keepalive_enotty = true;
    struct watchdog *w = NULL;
    char *err = NULL;
    CHECK(watchdog_open(dev_path, 15, &w, &err) == 0);
    CHECK(watchdog_timeout(w) == 15);
    CHECK(watchdog_keepalive(w, &err) == 0);
    CHECK(emu.keepalive_ioctls == 1);
    CHECK(emu.write_pings == 1);
    CHECK(emu.last_byte == '1');
    CHECK(!emu.magic); /* a ping is not a release */
    CHECK(watchdog_keepalive(w, &err) == 0);
    CHECK(emu.keepalive_ioctls == 1); /* remembered */
    CHECK(emu.write_pings == 2);
    CHECK(err == NULL);
    watchdog_close(w);
    CHECK(emu.magic);
    CHECK(emu.last_byte == 'V');
    CHECK(emu_fd_closed());
    emu_done();
}

TEST(null_close)
{
    watchdog_close(NULL);
    CHECK(watchdog_timeout(NULL) == 0);
    CHECK_STR(watchdog_identity(NULL), "");
    char *err = NULL;
    CHECK(watchdog_keepalive(NULL, &err) == -EINVAL);
    CHECK(err != NULL);
    free(err);
}

int main(void)
{
    log_set_threshold(LOG_LEVEL_ERROR); /* the module's info lines are not test output */
    static const struct check_case cases[] = {
        {"modes", modes},
        {"bad_arguments", bad_arguments},
        {"absent", absent},
        {"dev_null_is_not_a_watchdog", dev_null_is_not_a_watchdog},
        {"emulated_not_a_watchdog", emulated_not_a_watchdog},
        {"open_ping_close", open_ping_close},
        {"clamped_timeout_refused", clamped_timeout_refused},
        {"settimeout_refused", settimeout_refused},
        {"fixed_timeout", fixed_timeout},
        {"no_keepalive_ping", no_keepalive_ping},
        {"keepalive_write_fallback", keepalive_write_fallback},
        {"null_close", null_close},
    };
    return check_run("watchdog", cases, sizeof cases / sizeof cases[0]);
}
