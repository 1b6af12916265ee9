/* The Linux hardware watchdog of the HA loop (Patroni's watchdog feature): while this unit
 * holds the leader lock, the loop pings /dev/watchdog; if the agent hangs or dies without
 * releasing it, the device resets the machine before the lock's TTL runs out, so a stale
 * primary cannot keep accepting writes after another unit has been promoted (fencing).
 *
 * The device is the kernel's watchdog API (<linux/watchdog.h>): opening it arms it, every
 * WDIOC_KEEPALIVE (or any write) restarts the countdown, and writing the magic character
 * 'V' just before closing disarms it (a clean release). A device opened here is never
 * closed without that 'V', error paths included, so a failed open does not leave a
 * reboot pending. Drivers opened with nowayout=1 ignore the 'V': that is the operator's
 * choice and not detectable from here.
 *
 * Modes (config): off (never open it), automatic (use it when it works, run without it
 * otherwise), required (refuse the leader lock without a working watchdog).
 *
 * Ownership: struct watchdog is malloc'd by watchdog_open and freed by watchdog_close; it
 * owns the descriptor. *err is malloc'd (errmsg.h). Not thread-safe; one user at a time.
 */
#ifndef PG_AGENT_WATCHDOG_H
#define PG_AGENT_WATCHDOG_H

#define WATCHDOG_DEFAULT_PATH "/dev/watchdog"

enum watchdog_mode {
    WATCHDOG_OFF,
    WATCHDOG_AUTOMATIC,
    WATCHDOG_REQUIRED,
};

/* "off", "automatic", "required" (exactly, lower case). Returns 0 or -EINVAL (out is
 * left unchanged). */
int watchdog_mode_parse(const char *s, enum watchdog_mode *out);

/* The name watchdog_mode_parse accepts; "unknown" for a value outside the enum. */
const char *watchdog_mode_name(enum watchdog_mode m);

struct watchdog;

/* Open `path` (e.g. WATCHDOG_DEFAULT_PATH) write-only, close-on-exec, which arms it.
 * Checks that it is a watchdog (WDIOC_GETSUPPORT; options must include
 * WDIOF_KEEPALIVEPING), sets the timeout to timeout_s when the driver supports it
 * (WDIOF_SETTIMEOUT), reads the effective timeout back (WDIOC_GETTIMEOUT) and refuses a
 * device whose timeout is longer than timeout_s: it would fire too late to fence. A
 * shorter effective timeout is accepted (the caller must ping within watchdog_timeout()).
 * On any failure after the open the device is disarmed ('V') and closed.
 * Returns 0 with *out set, or a negative errno with *err naming the path and the problem:
 * -ENOENT absent, -EACCES/-EPERM permission, -EBUSY held by another process, -ENOTTY not a
 * watchdog device, -EOPNOTSUPP no keepalive ping, -ERANGE timeout longer than timeout_s,
 * -EINVAL timeout_s < 1 or path NULL/empty, -ENOMEM, or the errno of a failed ioctl. */
int watchdog_open(const char *path, int timeout_s, struct watchdog **out, char **err);

/* Restart the countdown: WDIOC_KEEPALIVE, or, when the driver answers that with ENOTTY or
 * EINVAL, write(fd, "1", 1) (remembered for later pings). Returns 0 or a negative errno
 * with *err set. */
int watchdog_keepalive(struct watchdog *w, char **err);

/* The effective timeout in seconds (as read back from the device). */
int watchdog_timeout(const struct watchdog *w);

/* The driver's identity string (WDIOC_GETSUPPORT), e.g. "Software Watchdog"; may be "". */
const char *watchdog_identity(const struct watchdog *w);

/* Disarm (write the magic 'V') and close: a clean release, the device stops counting.
 * A failed 'V' is logged as a warning (the machine may be reset). NULL is fine. */
void watchdog_close(struct watchdog *w);

#endif
