/* The client side of the REST API: a parallel GET /patroni to every peer (the HA loop's
 * view of its peers for the promotion gate, ha.md 8) and one POST for switchover requests.
 *
 * Transport: libcurl (multi interface for the probe), HTTPS only, mutual TLS (client
 * certificate and key, CA bundle; the peer's certificate and host name are verified, and
 * peers are addressed by IP literals that their certificates list as IP SANs), no proxy
 * (CURLOPT_NOPROXY "*"), no redirects, no retries, HTTP/1.1, answers capped at
 * PEER_MAX_RESPONSE bytes.
 *
 * Threads: none of its own. Each call blocks the calling thread (the HA thread) for at most
 * timeout_ms. The first call runs curl_global_init (see peer_probe_init): make it, or call
 * peer_probe_init, before the process starts other threads.
 *
 * Validation: every answer is checked at the edge and turned into struct peer_status; a
 * field with the wrong type or an out-of-range value makes the whole answer invalid
 * (valid = false with the reason in error), never a guess.
 *
 * Ownership: arguments are borrowed for the call. peer_status is a plain struct with
 * fixed-size strings (nothing to free). peer_post_json's *text is malloc'd (caller frees).
 * Error messages (*err) are malloc'd (errmsg.h) and never contain key material.
 */
#ifndef PG_AGENT_PEER_PROBE_H
#define PG_AGENT_PEER_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_MAX_URLS 16
#define PEER_URL_MAX 255                      /* bytes of a URL */
#define PEER_MAX_RESPONSE ((size_t)64 * 1024) /* bytes of an answer body */
#define PEER_NAME_MAX 64                      /* [a-z0-9-]{1,63} and a NUL */
#define PEER_STATE_MAX 48                     /* Patroni state text and a NUL */
#define PEER_ERROR_MAX 160
#define PEER_TEXT_MAX ((size_t)4096)          /* peer_post_json's *text, bytes */
#define PEER_MIN_TIMEOUT_MS 10
#define PEER_MAX_TIMEOUT_MS 60000

enum peer_role {
    PEER_ROLE_UNKNOWN = 0, /* not valid, or "uninitialized"/"demoted" */
    PEER_ROLE_PRIMARY,     /* "primary" or "master" */
    PEER_ROLE_REPLICA,     /* "replica" */
    PEER_ROLE_STANDBY_LEADER,
};

/* One peer's GET /patroni. Fields below `valid` mean something only when valid. */
struct peer_status {
    bool reachable;    /* an HTTP answer came back (any status) */
    long http_status;  /* 0 when not reachable */
    bool valid;        /* a 200 whose body passed validation */
    char error[PEER_ERROR_MAX]; /* why not reachable or not valid ("" otherwise) */

    char name[PEER_NAME_MAX];   /* patroni.name, [a-z0-9-]{1,63} */
    char state[PEER_STATE_MAX]; /* "running", "starting", "stopped", ... (printable) */
    enum peer_role role;
    bool in_recovery;           /* role is not primary */
    bool streaming;             /* replication_state == "streaming" */
    bool has_timeline;
    uint32_t timeline;
    bool has_wal;               /* an xlog position was reported */
    uint64_t xlog_location;         /* primary: xlog.location */
    uint64_t xlog_received;         /* replica: xlog.received_location (0: absent) */
    uint64_t xlog_replayed;         /* replica: xlog.replayed_location (0: absent) */
    uint64_t wal_position;          /* location, or max(received, replayed) (Patroni's) */
    bool nofailover;            /* tags.nofailover */
    bool watchdog_failed;       /* watchdog_failed */
};

/* TLS material for both calls. cert/key may be NULL (no client certificate), not one
 * alone; ca_file is required. */
struct peer_tls {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
};

/* curl_global_init, once per process. 0 or -ENOMEM. */
int peer_probe_init(void);

/* GET every URL (https://<ip>:<port>/patroni) in parallel within timeout_ms in all
 * (PEER_MIN_TIMEOUT_MS to PEER_MAX_TIMEOUT_MS); results[i] answers urls[i]. An invalid
 * URL only fails its own result. Returns 0 (look at each result), or -EINVAL (bad
 * arguments: n over PEER_MAX_URLS, timeout, TLS files) / -ENOMEM with *err. */
int peer_probe_run(const char *const *urls, size_t n, const struct peer_tls *tls, int timeout_ms,
                   struct peer_status *results, char **err);

/* POST body (JSON text) to url with Content-Type application/json, within timeout_ms.
 * 0 when an HTTP answer came back: *status and *text (the body, malloc'd, at most
 * PEER_TEXT_MAX bytes, control characters and non-ASCII replaced by '?'); else
 * -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -ECONNABORTED (TLS or connection broke),
 * -EMSGSIZE (answer over PEER_MAX_RESPONSE), -EINVAL, -ENOMEM, with *err. */
int peer_post_json(const char *url, const char *body, const struct peer_tls *tls, int timeout_ms,
                   long *status, char **text, char **err);

/* ---- pure parts, exposed for the unit tests -------------------------------------------- */

/* Whether url is one the probe takes: https://, at most PEER_URL_MAX bytes, printable
 * ASCII without spaces. */
bool peer_url_valid(const char *url);

/* Fill out from one answer (http_status and body of len bytes): out is reset, then
 * reachable = true, http_status, and either valid = true with the fields or error. */
void peer_status_parse(long http_status, const char *body, size_t len, struct peer_status *out);

#endif
