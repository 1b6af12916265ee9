/* The agent's own metrics that are not the HA loop's state (ha.c renders those): hook
 * durations as a Prometheus histogram and certificate expiry times. Written by the hook
 * thread, rendered by the REST API's thread: every function takes the module's lock.
 *
 * Names (Prometheus text format 0.0.4, appended to /metrics by ha.c):
 *   pg_agent_hook_duration_seconds{hook=...}        histogram (buckets METRICS_BUCKETS)
 *   pg_agent_certificate_expiry_timestamp_seconds{certificate="peer"|"client"|"ca"}
 * Hook names are validated ([a-z0-9-], at most 63 characters; anything else counts as
 * "other") and at most METRICS_MAX_HOOKS distinct ones are kept (then "other"): the
 * label's cardinality is bounded whatever the events are called.
 *
 * Ownership: strings are borrowed; nothing to free.
 */
#ifndef PG_AGENT_METRICS_H
#define PG_AGENT_METRICS_H

#include <stdio.h>
#include <time.h>

#define METRICS_MAX_HOOKS 64
#define METRICS_N_BUCKETS 12 /* plus +Inf */

enum metrics_cert { METRICS_CERT_PEER, METRICS_CERT_CLIENT, METRICS_CERT_CA, METRICS_N_CERTS };

/* One handled hook (or custom event) that took seconds. */
void metrics_hook_observe(const char *hook, double seconds);

/* The notAfter of a certificate in use (0: none, the series is left out). */
void metrics_set_cert_expiry(enum metrics_cert which, time_t not_after);

/* Append the families above to f, each series with the extra labels given (the text
 * between the braces, e.g. scope="x",name="y"; may be ""). */
void metrics_render(FILE *f, const char *labels);

/* Forget everything (tests). */
void metrics_reset(void);

#endif
