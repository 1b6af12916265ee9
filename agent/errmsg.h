/* Error messages handed back to callers: functions that can fail return a negative code
 * and, through a `char **err` argument, a malloc'd sentence saying what went wrong.
 *
 * Ownership: *err is malloc'd and owned by the caller (free it). It may be NULL after a
 * failure when even the message could not be allocated: print ERRMSG(err) to cover that.
 * Messages never contain secret values (see log.h for the rule).
 */
#ifndef PG_AGENT_ERRMSG_H
#define PG_AGENT_ERRMSG_H

/* The message, or a fixed text when it could not be allocated. */
#define ERRMSG(e) ((e) ? (e) : "out of memory")

/* If err is not NULL, replace *err (freeing any previous message) with the formatted
 * text. errno is preserved. */
void errmsg_format(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Set the message and yield rc, so that `return errmsg_set(err, -EINVAL, "...")` reads
 * naturally. A macro rather than a function so that static analysers see that rc is what
 * comes back. rc is evaluated after the message is formatted, with errno preserved, so
 * `errmsg_set(err, -errno, "...: %s", strerror(errno))` reports the caller's errno. */
#define errmsg_set(err, rc, ...) (errmsg_format((err), __VA_ARGS__), (rc))

#endif
