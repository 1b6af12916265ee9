/* The agent's log: levelled lines to the journal (where systemd runs) or to a file, and,
 * while a hook is being handled, also to the relay that is waiting for it.
 *
 * Rule: NEVER pass a secret (password, key, token, secret content, or an environment
 * value that may carry one) to these functions, not even in a "debug" line. Log names,
 * counts, identifiers and error texts; if a value might be secret, leave it out. Lines
 * go to the journal or a file readable by root and, during a hook, to the Juju unit log
 * (the relay prints them), which operators share in bug reports.
 *
 * Target, chosen once by log_init():
 *   - $PG_AGENT_LOG set and non-empty: append to that file (tests use this);
 *   - else /run/systemd/journal/socket exists: sd_journal_send with PRIORITY and
 *     SYSLOG_IDENTIFIER=pg-agent;
 *   - else append to /var/log/pg-agent/agent.log.
 * A file's directory is created mode 0700 when missing, the file mode 0600.
 *
 * Ownership: the log keeps no pointer to the caller's strings. The sink's user data is
 * borrowed until log_set_sink(NULL, NULL) is called.
 */
#ifndef PG_AGENT_LOG_H
#define PG_AGENT_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARNING = 2,
    LOG_LEVEL_ERROR = 3,
};

#define PG_AGENT_LOG_DIR "/var/log/pg-agent"
#define PG_AGENT_LOG_FILE PG_AGENT_LOG_DIR "/agent.log"

/* Choose the target (see above) and check that a file target can be opened. Returns 0,
 * or a negative errno with *err set. Until it is called, lines go to stderr. */
int log_init(char **err);

/* Lines below this level are dropped everywhere. The default is INFO. */
void log_set_threshold(enum log_level level);

/* "DEBUG", "INFO", "WARNING", "ERROR". */
const char *log_level_name(enum log_level level);

/* Parse a level name (case-insensitive; "WARN" is accepted). Returns 0 or -EINVAL. */
int log_level_parse(const char *name, enum log_level *out);

/* Where lines also go while a request is handled (the relay's connection). The sink is
 * called with the formatted line; it must not block for long. Log calls made from inside
 * the sink are not sent to it again. Pass NULL to detach. */
typedef void (*log_sink_fn)(void *userdata, enum log_level level, const char *message);
void log_set_sink(log_sink_fn fn, void *userdata);

/* Capture: between log_capture_begin() and log_capture_end(), lines at INFO and above
 * are also collected, per level (newline-separated, at most LOG_CAPTURE_MAX bytes per
 * level; later lines are dropped with a note). log_capture_end hands over the text of
 * one level (malloc'd, caller frees; NULL when nothing was logged at that level) and
 * must be called for each level wanted before log_capture_begin starts afresh. The
 * handler uses it to send a hook's lines to juju-log, one call per level. */
#define LOG_CAPTURE_MAX ((size_t)65536)
void log_capture_begin(void);
char *log_capture_take(enum log_level level);

/* In a short-lived child of the agent: every line goes only to fn (the child sends it
 * to the parent, which logs it as its own), not to the file, journal, sink or capture.
 * NULL restores normal logging. */
void log_set_forward(log_sink_fn fn, void *userdata);

/* Log one line. Failures to write it are ignored: there is nowhere to report them. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
