/* The agent's Patroni-compatible REST API (port 8008, TLS): health endpoints for load
 * balancers and peers, /cluster, /history, /config, /metrics, authenticated /switchover.
 *
 * Why a hand-written HTTP server: libmicrohttpd would bring GnuTLS as a second TLS stack
 * next to OpenSSL (which the agent already uses for its certificates) and its own threads,
 * while the HA loop wants everything on its sd-event loop. The API has a handful of
 * endpoints, one request per connection and bounded sizes, so a small strict parser over
 * non-blocking OpenSSL is less code to trust than an adapter around a general server.
 *
 * Protocol (ha.md section 11): HTTP/1.0 and 1.1, one request per connection, every answer
 * ends with `Connection: close`. Lines end with CRLF; no obs-fold, no Transfer-Encoding
 * (501), a request head of at most RESTAPI_HEAD_MAX bytes (else 431), a body of at most
 * RESTAPI_BODY_MAX bytes (else 413), a target of at most RESTAPI_PATH_MAX bytes of path and
 * RESTAPI_QUERY_MAX of query (else 414); anything else malformed is 400. An unknown path is
 * 404, a known path with a method it does not take is 405 (with Allow). `Expect:
 * 100-continue` gets no interim answer: such a client sends its body after its own wait
 * (curl: 1 s); peer_probe.h's POST disables it.
 *
 * TLS: TLS 1.2 or later, server certificate chain, key and CA bundle read from PEM files.
 * Client certificates are requested but optional; one that is presented must verify
 * against the CA file (else the handshake fails, as Patroni's `verify_client: optional`).
 * No session resumption. restapi_reload_tls re-reads the three files (certificate
 * rotation): new connections use them, open ones finish with what they started with, the
 * listener stays.
 *
 * Writes (POST /switchover, POST /failover, DELETE /switchover) need a verified client
 * certificate or HTTP Basic credentials that ops->auth_check accepts; else 401 with
 * `WWW-Authenticate: Basic realm="Patroni"`. The Authorization header and password are
 * never logged; the request buffer and the decoded credentials are wiped after use.
 *
 * Limits: RESTAPI_MAX_CONNS connections at once (more are closed at accept); each must
 * finish within the deadline (cfg.deadline_ms, default 5 s) or is closed; a pending
 * switchover answer has cfg.pending_deadline_ms (default 30 s), after which the client
 * gets 503 "Switchover status unknown".
 *
 * Threads: none. Everything runs on the caller's sd-event loop (the HA thread's) without
 * blocking: non-blocking accept, handshake, reads and writes, driven by io sources, one
 * deadline timer per connection. Every function here, and every callback, runs on the
 * thread that runs that loop. Callbacks must not block (they read state the HA loop
 * keeps) and must not call restapi_free.
 *
 * Ownership: restapi_start borrows the loop (which must outlive the server) and copies
 * ops and the file paths; the server owns its listening socket, TLS context and
 * connections, and restapi_free closes them all (pending tickets become invalid). Strings
 * passed to callbacks are borrowed for the call. Values callbacks return are taken over
 * (json_t references are released, malloc'd strings freed). Error messages (*err) are
 * malloc'd (errmsg.h).
 */
#ifndef PG_AGENT_RESTAPI_H
#define PG_AGENT_RESTAPI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#define RESTAPI_DEFAULT_PORT 8008
#define RESTAPI_MAX_CONNS 32
#define RESTAPI_HEAD_MAX ((size_t)8192)  /* request line and headers, CRLFCRLF included */
#define RESTAPI_BODY_MAX ((size_t)16384) /* request body */
#define RESTAPI_PATH_MAX 256             /* path buffer, NUL included */
#define RESTAPI_QUERY_MAX 1024           /* query buffer, NUL included */
#define RESTAPI_MAX_HEADERS 100
#define RESTAPI_NAME_MAX 64              /* member names: [a-z0-9-]{1,63} and a NUL */
#define RESTAPI_USER_MAX 128             /* Basic user name, bytes (longer: refused) */
#define RESTAPI_PASSWORD_MAX 1024        /* Basic password, bytes (longer: refused) */
#define RESTAPI_TEXT_MAX ((size_t)4096)  /* a write callback's answer text, bytes */
#define RESTAPI_DEADLINE_MS 5000
#define RESTAPI_PENDING_DEADLINE_MS 30000

/* ---- what the caller provides ---------------------------------------------------------- */

/* This member's state, filled by ops->patroni for each health request. */
struct restapi_health {
    bool running;      /* postmaster up and accepting connections */
    bool leader;       /* holds the leader key, renewed this cycle */
    bool primary;      /* leader && not in recovery */
    bool replica;      /* running in recovery */
    bool streaming;    /* replica whose WAL receiver streams */
    bool sync_standby; /* listed in the sync key */
    uint64_t lag_bytes; /* replica lag behind the leader's optime; UINT64_MAX unknown */
    bool loop_recent;  /* the HA loop ran recently enough for /liveness (ttl / 2 x ttl) */
};

/* A pending write's handle, copied by value. It stays usable until restapi_complete or
 * until the connection ends (client gone, deadline, restapi_free): restapi_complete then
 * sees a stale generation and does nothing. */
struct restapi_ticket {
    struct restapi *api;
    unsigned slot;
    uint64_t gen;
};

/* A validated POST /switchover or /failover (DELETE /switchover never reaches the caller:
 * nothing is ever scheduled, so it is answered 404 "no switchover is scheduled"). */
struct restapi_switchover {
    bool failover;                     /* POST /failover */
    char leader[RESTAPI_NAME_MAX];     /* "" when not given (always given for a switchover) */
    char candidate[RESTAPI_NAME_MAX];  /* "" when not given (always given for a failover) */
    bool cert_auth;                    /* authenticated by a verified client certificate */
    char who[RESTAPI_USER_MAX + 1];    /* that certificate's CN, or the Basic user name
                                        * (printable ASCII, for the log) */
    struct restapi_ticket ticket;      /* for an asynchronous answer */
};

struct restapi_ops {
    void *data; /* passed to every callback */
    /* Required. The /patroni document (a new reference, or NULL on failure: 503) and the
     * health facts in *h (zeroed, lag_bytes UINT64_MAX, before the call). */
    json_t *(*patroni)(void *data, struct restapi_health *h);
    /* Optional (NULL: 404). New references; NULL on failure: 503. */
    json_t *(*cluster)(void *data);
    json_t *(*history)(void *data);
    json_t *(*config)(void *data);
    /* Optional (NULL: 404). Prometheus text (malloc'd, taken over); NULL on failure: 503. */
    char *(*metrics)(void *data);
    /* Required. Whether the Basic credentials are right; compare in constant time. The
     * password is in a sodium_malloc'd buffer wiped after the call: do not keep it. */
    bool (*auth_check)(void *data, const char *user, const char *password);
    /* Required. An authenticated, validated switchover or failover request. Returns an
     * HTTP status (200..599) with *text (malloc'd, taken over; NULL: empty), e.g. 200
     * `Successfully switched over to "pg-1"` or 412 `candidate name does not match with
     * sync_standby`; or 0: pending, answer later with restapi_complete(req->ticket, ...)
     * (also allowed from inside this call). */
    int (*switchover)(void *data, const struct restapi_switchover *req, char **text);
};

struct restapi_config {
    const char *bind_addr; /* an IPv4 or IPv6 literal; NULL or "": "0.0.0.0" */
    uint16_t port;         /* 0: an ephemeral port (tests), see restapi_port */
    const char *cert_file; /* server certificate, then any intermediates (PEM) */
    const char *key_file;  /* its private key (PEM) */
    const char *ca_file;   /* CA bundle that client certificates must chain to (PEM) */
    unsigned deadline_ms;         /* 0: RESTAPI_DEADLINE_MS */
    unsigned pending_deadline_ms; /* 0: RESTAPI_PENDING_DEADLINE_MS */
};

struct restapi;

/* ---- the server ------------------------------------------------------------------------ */

/* Load the TLS files, bind and listen, and serve on loop ev. Returns 0; -EINVAL (bad
 * argument, unusable TLS files), -EADDRINUSE and other bind errors, -ENOMEM. */
int restapi_start(sd_event *ev, const struct restapi_config *cfg, const struct restapi_ops *ops,
                  struct restapi **out, char **err);

/* Re-read the certificate, key and CA files given to restapi_start. On failure the old
 * context stays in use and -EINVAL is returned with the reason. */
int restapi_reload_tls(struct restapi *api, char **err);

/* The bound port (the ephemeral one when cfg.port was 0). */
uint16_t restapi_port(const struct restapi *api);

/* Answer a pending write: status 200..599 (else 500) and text (NULL: empty; copied).
 * 0 when the answer is on its way; -ESTALE when the request is no longer pending (client
 * gone, deadline passed, already answered): nothing happens; -ENOMEM (the connection is
 * closed). Never does I/O itself. A ticket must not be used after restapi_free of its
 * server. */
int restapi_complete(struct restapi_ticket ticket, int status, const char *text);

/* Close every connection and the listener. NULL is fine. */
void restapi_free(struct restapi *api);

/* ---- pure parts, exposed for the unit tests -------------------------------------------- */

enum restapi_method {
    RESTAPI_OTHER = 0, /* a well-formed method token we do not serve (405) */
    RESTAPI_GET,
    RESTAPI_HEAD,
    RESTAPI_OPTIONS,
    RESTAPI_POST,
    RESTAPI_PUT,
    RESTAPI_PATCH,
    RESTAPI_DELETE,
};

/* A parsed request head. authorization points into the parsed buffer (not a copy, so the
 * credentials exist only where the caller wipes them). */
struct restapi_head {
    enum restapi_method method;
    char path[RESTAPI_PATH_MAX];   /* the target up to '?', as sent (no decoding) */
    char query[RESTAPI_QUERY_MAX]; /* after '?', still percent-encoded; "" when none */
    bool http10;                   /* HTTP/1.0 (else 1.1) */
    bool has_length;
    uint64_t content_length;       /* 0 without a Content-Length header */
    const char *authorization;     /* the value, OWS trimmed; NULL when absent */
    size_t authorization_len;
    size_t head_len;               /* bytes up to and including the empty line */
};

/* Parse the request head at the start of buf (len bytes; need not be NUL-terminated).
 * Returns the head's length (> 0) when it is complete and valid; 0 when more bytes are
 * needed (what is there so far is plausible); or an error: -EBADMSG (400), -EMSGSIZE (no
 * end of head within RESTAPI_HEAD_MAX bytes: 431), -ENAMETOOLONG (414), -EFBIG
 * (Content-Length over RESTAPI_BODY_MAX: 413), -ENOTSUP (Transfer-Encoding: 501),
 * -EPROTONOSUPPORT (not HTTP/1.0 or 1.1: 505). */
int restapi_parse_head(const char *buf, size_t len, struct restapi_head *out);

/* The HTTP status for one of restapi_parse_head's errors (400 for an unknown code). */
int restapi_head_error_status(int rc);

/* Query parameter `name` of query (percent-decoded, '+' is a space; the first occurrence)
 * into out (outsz bytes with the NUL). 1 found, 0 absent, -EBADMSG for a bad escape, an
 * encoded NUL or a value that does not fit. */
int restapi_query_get(const char *query, const char *name, char *out, size_t outsz);

/* A size as the ?lag= parameter takes it (PostgreSQL memory units, 1024-based,
 * case-sensitive): digits with an optional unit B, kB, MB, GB or TB ("1048576", "16kB",
 * "64MB"). 0; -EINVAL when malformed; -ERANGE when over UINT64_MAX. */
int restapi_parse_size(const char *s, uint64_t *out);

/* Whether path is one of the health endpoints (/patroni, /health, /primary...). */
bool restapi_is_health_path(const char *path);

/* The status of a health endpoint for this member: 200 or 503; 400 when a filter in the
 * query is malformed; 404 when path is not a health endpoint. The server answers
 * /liveness and /readiness with the status only (as Patroni), the others with the
 * /patroni document as well. Semantics (ha.md 11):
 *   /patroni                             200 always (the document is the answer)
 *   /health                              running
 *   /liveness                            loop_recent
 *   /readiness[?lag=&mode=apply|write]   (running && leader) || replica within lag
 *   /, /primary, /read-write, /master    running && leader && primary
 *   /leader                              leader
 *   /standby-leader                      never (no standby clusters)
 *   /replica                             running && replica, within the filters
 *   /read-only                           the /primary condition, or /replica's
 *   /sync, /synchronous                  /replica's && sync_standby
 *   /async, /asynchronous                /replica's && !sync_standby
 *   /read-only-sync                      the /primary condition, or /sync's
 * Filters (the replica side only): ?lag=<size> (lag_bytes <= size; an unknown lag fails
 * it), ?replication_state=streaming|in archive recovery. Other parameters are ignored. */
int restapi_health_status(const char *path, const char *query, const struct restapi_health *h);

/* Validate a switchover (failover false) or failover request body (len bytes of JSON) into
 * out (its auth fields and ticket are left zero). 0, or an HTTP status (400) with the
 * Patroni-style reason in *text (a string literal). */
int restapi_parse_switchover(const char *body, size_t len, bool failover,
                             struct restapi_switchover *out, const char **text);

/* Decode an Authorization header value "Basic <base64(user:password)>" (scheme
 * case-insensitive). On 0, *user is malloc'd and *password sodium_malloc'd (release with
 * password_free, password.h). -EINVAL when it is not Basic or malformed, or too long. */
int restapi_basic_decode(const char *value, size_t len, char **user, char **password);

#endif
