/* Hook-duration histogram and certificate expiry gauges (see metrics.h). */
#include "metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

static const double buckets[METRICS_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                  0.5,   1,    2.5,   5,    10,  30};
static const char *const cert_names[METRICS_N_CERTS] = {"peer", "client", "ca"};

struct hook_hist {
    char name[64];
    unsigned long long counts[METRICS_N_BUCKETS]; /* per bucket, not cumulative */
    unsigned long long count;
    double sum;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct hook_hist hooks[METRICS_MAX_HOOKS + 1]; /* + "other" */
static size_t n_hooks;
static time_t certs[METRICS_N_CERTS];

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static struct hook_hist *lookup(const char *key)
{
    for (size_t i = 0; i < n_hooks; i++)
        if (strcmp(hooks[i].name, key) == 0)
            return &hooks[i];
    return NULL;
}

/* The histogram of a hook, made on first use; "other" once METRICS_MAX_HOOKS names are
 * taken (one slot beyond them is kept for it). */
static struct hook_hist *find(const char *name)
{
    const char *key = name_ok(name) ? name : "other";
    struct hook_hist *h = lookup(key);
    if (h)
        return h;
    if (n_hooks >= METRICS_MAX_HOOKS && strcmp(key, "other") != 0) {
        key = "other";
        if ((h = lookup(key)))
            return h;
    }
    h = &hooks[n_hooks++];
    memset(h, 0, sizeof *h);
    snprintf(h->name, sizeof h->name, "%s", key);
    return h;
}

void metrics_hook_observe(const char *hook, double seconds)
{
    if (!(seconds >= 0)) /* NaN, negative: a clock problem, not a hook */
        seconds = 0;
    pthread_mutex_lock(&lock);
    struct hook_hist *h = find(hook);
    size_t b = 0;
    while (b < METRICS_N_BUCKETS && seconds > buckets[b])
        b++;
    if (b < METRICS_N_BUCKETS)
        h->counts[b]++;
    h->count++;
    h->sum += seconds;
    pthread_mutex_unlock(&lock);
}

void metrics_set_cert_expiry(enum metrics_cert which, time_t not_after)
{
    if ((int)which < 0 || which >= METRICS_N_CERTS)
        return;
    pthread_mutex_lock(&lock);
    certs[which] = not_after > 0 ? not_after : 0;
    pthread_mutex_unlock(&lock);
}

void metrics_render(FILE *f, const char *labels)
{
    const char *sep = labels && labels[0] ? "," : "";
    labels = labels ? labels : "";
    pthread_mutex_lock(&lock);
    fputs("# HELP pg_agent_hook_duration_seconds Time the agent took to handle a hook or "
          "custom event.\n# TYPE pg_agent_hook_duration_seconds histogram\n",
          f);
    for (size_t i = 0; i < n_hooks; i++) {
        const struct hook_hist *h = &hooks[i];
        unsigned long long cum = 0;
        for (size_t b = 0; b < METRICS_N_BUCKETS; b++) {
            cum += h->counts[b];
            fprintf(f, "pg_agent_hook_duration_seconds_bucket{%s%shook=\"%s\",le=\"%g\"} %llu\n",
                    labels, sep, h->name, buckets[b], cum);
        }
        fprintf(f, "pg_agent_hook_duration_seconds_bucket{%s%shook=\"%s\",le=\"+Inf\"} %llu\n",
                labels, sep, h->name, h->count);
        fprintf(f, "pg_agent_hook_duration_seconds_sum{%s%shook=\"%s\"} %.6f\n", labels, sep,
                h->name, h->sum);
        fprintf(f, "pg_agent_hook_duration_seconds_count{%s%shook=\"%s\"} %llu\n", labels, sep,
                h->name, h->count);
    }
    fputs("# HELP pg_agent_certificate_expiry_timestamp_seconds When a certificate in use "
          "expires (UNIX time).\n# TYPE pg_agent_certificate_expiry_timestamp_seconds gauge\n",
          f);
    for (int c = 0; c < METRICS_N_CERTS; c++)
        if (certs[c])
            fprintf(f,
                    "pg_agent_certificate_expiry_timestamp_seconds{%s%scertificate=\"%s\"} "
                    "%lld\n",
                    labels, sep, cert_names[c], (long long)certs[c]);
    pthread_mutex_unlock(&lock);
}

void metrics_reset(void)
{
    pthread_mutex_lock(&lock);
    memset(hooks, 0, sizeof hooks);
    n_hooks = 0;
    memset(certs, 0, sizeof certs);
    pthread_mutex_unlock(&lock);
}
