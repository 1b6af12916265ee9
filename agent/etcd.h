/* A small etcd v3 client for the HA loop: the JSON gateway (POST /v3/...) over libcurl with
 * mutual TLS, typed results, strict validation of every answer, and a non-blocking watch.
 *
 * Scope: what a Patroni-style agent needs (ha.md sections 3 to 5): key reads and writes,
 * leases, the create-if-absent / compare-and-swap / compare-and-delete transactions,
 * membership, status, and a prefix watch.
 *
 * Threads: none. A client and its watches belong to one thread (the agent's loop). Every
 * call on a client blocks for at most the client's timeout (cfg.timeout_ms, whole
 * operation, all endpoints together); watch calls never block. The first etcd_client_new
 * runs curl_global_init, so make it before the process starts any other thread.
 *
 * Endpoints: tried round robin from the last one that answered. The next endpoint is tried
 * only when the request cannot have reached etcd (connect or TLS handshake failed, or timed
 * out before anything was sent) or when etcd answered gRPC Unavailable (code 14), and
 * never for member_add (a second add could add twice). Any other failure is returned.
 *
 * Errors (negative errno, message in *err, see errmsg.h; messages name keys and endpoints,
 * never values):
 *   -ETIMEDOUT      the budget ran out (no answer in time), or gRPC DeadlineExceeded (4)
 *   -ECONNREFUSED   connection refused (also: every other connect failure not below)
 *   -EHOSTUNREACH   host or network unreachable, name not resolved
 *   -ECONNABORTED   TLS handshake failed (certificate rejected either way) or the connection
 *                   broke after the request was sent: it may or may not have been applied
 *   -EPROTO         malformed answer: not JSON, wrong types, missing fields, bad base64
 *   -EMSGSIZE       answer larger than ETCD_MAX_RESPONSE
 *   -ENOKEY         lease not found or expired ("etcdserver: requested lease not found",
 *                   or a keep-alive answered without TTL, ha.md 5.4 #3): grant a new lease
 *   -ENOENT         other gRPC NotFound (5), e.g. unknown member ID
 *   -EBUSY          gRPC FailedPrecondition (9), e.g. promoting a learner not yet in sync
 *   -EACCES         gRPC PermissionDenied (7) or Unauthenticated (16)
 *   -EAGAIN         gRPC Unavailable (14) on every endpoint tried (e.g. "unhealthy cluster"
 *                   refusing a member add right after a restart, ha.md 5.4 #4): back off
 *   -EINVAL         gRPC InvalidArgument (3), or a bad argument to this API
 *   -ESTALE         gRPC OutOfRange (11): revision compacted or in the future
 *   -EREMOTEIO      any other gRPC or HTTP error
 *   -ENOMEM         out of memory
 * A failed comparison in a transaction is not an error: the call returns 0 with
 * succeeded == false (never retry it blindly; re-read and re-decide, ha.md 4.5).
 *
 * Ownership: strings passed in are borrowed for the call. Result structs are filled by the
 * call and own their memory: release them with the matching *_clear function (safe on a
 * zeroed struct and after a failed call). A watch borrows nothing from its client.
 */
#ifndef PG_AGENT_ETCD_H
#define PG_AGENT_ETCD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_MAX_ENDPOINTS 8
#define ETCD_MAX_ENDPOINT_LEN 255
#define ETCD_DEFAULT_TIMEOUT_MS 2000
/* Largest answer accepted from etcd (one response, or one object of a watch stream). */
#define ETCD_MAX_RESPONSE ((size_t)4 * 1024 * 1024)
/* Smallest lease TTL etcd grants (ha.md 5.4 #8). */
#define ETCD_MIN_TTL 2

struct etcd_config {
    /* "https://host:port" (or "http://" for tests), no path; 1 to ETCD_MAX_ENDPOINTS. */
    const char *endpoints[ETCD_MAX_ENDPOINTS];
    size_t n_endpoints;
    const char *ca_file;   /* CA bundle that signed the server certificates (https) */
    const char *cert_file; /* client certificate (mutual TLS); NULL: none */
    const char *key_file;  /* its private key */
    int timeout_ms;        /* budget for one whole operation; 0: ETCD_DEFAULT_TIMEOUT_MS */
    const char *api_prefix; /* "/v3" (NULL), "/v3beta" for etcd 3.3: see etcd_detect_version */
};

struct etcd_client;

/* Every response's header (ha.md 5.1); revision is 0 where etcd omits it (membership). */
struct etcd_header {
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t revision;
    uint64_t raft_term;
};

/* One key. key and value are malloc'd and NUL-terminated (the terminator is not counted
 * in the lengths; value may contain NUL bytes). lease 0: none. */
struct etcd_kv {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
};

struct etcd_range {
    struct etcd_header header;
    struct etcd_kv *kvs; /* n entries, sorted by key (etcd's order) */
    size_t n;
    int64_t count; /* keys in the range (may exceed n with a limit) */
    bool more;
};

/* Outcome of a transaction. When the comparison failed, the key's current state was read
 * in the same transaction: have_kv says whether the key existed, kv is its state. */
struct etcd_txn_result {
    struct etcd_header header;
    bool succeeded;
    bool have_kv;
    struct etcd_kv kv;
    int64_t deleted; /* keys deleted (delete_if_value succeeded) */
};

struct etcd_member {
    uint64_t id;
    char *name;        /* "" until the member has started (ha.md 5.4 #9) */
    char **peer_urls;  /* n_peer_urls strings */
    size_t n_peer_urls;
    char **client_urls;
    size_t n_client_urls;
    bool is_learner;
};

struct etcd_members {
    struct etcd_header header;
    struct etcd_member *members;
    size_t n;
};

struct etcd_status {
    struct etcd_header header;
    char version[32]; /* server version, e.g. "3.4.23" */
    uint64_t leader;  /* member ID of the raft leader (0: none known) */
    uint64_t raft_index;
    uint64_t raft_term;
    uint64_t raft_applied_index;
    int64_t db_size;
    int64_t db_size_in_use;
    size_t n_errors; /* entries of "errors" (alarms such as NOSPACE); 0 when healthy */
};

/* ---- client ------------------------------------------------------------------------- */

/* Validate cfg (endpoints' form, timeout) and make a client; nothing is sent yet. Files
 * are read by libcurl at the first request. Returns 0, -EINVAL or -ENOMEM. */
int etcd_client_new(const struct etcd_config *cfg, struct etcd_client **out, char **err);
void etcd_client_free(struct etcd_client *c);
/* The endpoint that answered last (or will be tried first). Borrowed from c. */
const char *etcd_client_endpoint(const struct etcd_client *c);

/* GET /version on an endpoint and pick the API prefix for it (/v3 from 3.4, /v3beta for
 * 3.3; older is refused with -ENOTSUP). version (32 bytes) gets the server version. */
int etcd_detect_version(struct etcd_client *c, char version[32], char **err);

/* ---- keys --------------------------------------------------------------------------- */

/* Read one key: out->n is 1 (found) or 0 (absent). Linearizable. */
int etcd_get(struct etcd_client *c, const char *key, struct etcd_range *out, char **err);
/* Every key starting with prefix (non-empty), in key order. Linearizable; out->header
 * .revision is the revision to start a watch at (+1). */
int etcd_get_prefix(struct etcd_client *c, const char *prefix, struct etcd_range *out,
                    char **err);
/* Put value (value_len bytes) with lease (0: none). *revision (may be NULL) gets the new
 * revision. A lease etcd no longer knows gives -ENOKEY. */
int etcd_put(struct etcd_client *c, const char *key, const void *value, size_t value_len,
             int64_t lease, int64_t *revision, char **err);
/* Delete one key; *deleted (may be NULL) gets 0 or 1. */
int etcd_delete(struct etcd_client *c, const char *key, int64_t *deleted, char **err);

/* ---- transactions (0 = completed: look at out->succeeded) ---------------------------- */

/* Put key = value with lease only if the key does not exist (create_revision == 0). When
 * it exists: succeeded false, out->kv is the holder (e.g. the leader's name). */
int etcd_create_if_absent(struct etcd_client *c, const char *key, const void *value,
                          size_t value_len, int64_t lease, struct etcd_txn_result *out,
                          char **err);
/* Put key = value with lease only if its current value is expected (the key exists). */
int etcd_cas_value(struct etcd_client *c, const char *key, const void *expected,
                   size_t expected_len, const void *value, size_t value_len, int64_t lease,
                   struct etcd_txn_result *out, char **err);
/* Put key = value with lease only if its mod_revision is still mod_revision (ha.md 4.5;
 * mod_revision 0: only if absent). */
int etcd_cas_revision(struct etcd_client *c, const char *key, int64_t mod_revision,
                      const void *value, size_t value_len, int64_t lease,
                      struct etcd_txn_result *out, char **err);
/* Delete key only if its value is expected (releasing the leader key, ha.md 4.4). */
int etcd_delete_if_value(struct etcd_client *c, const char *key, const void *expected,
                         size_t expected_len, struct etcd_txn_result *out, char **err);
/* Linearizable check that key exists and is attached to lease (ha.md 4.3): *owned. */
int etcd_key_has_lease(struct etcd_client *c, const char *key, int64_t lease, bool *owned,
                       char **err);

/* ---- leases ------------------------------------------------------------------------- */

/* Grant a lease of ttl_s seconds (>= ETCD_MIN_TTL). *granted_ttl (may be NULL) gets the
 * TTL etcd granted. */
int etcd_lease_grant(struct etcd_client *c, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
                     char **err);
/* One keep-alive; *ttl gets the remaining TTL (> 0). -ENOKEY: the lease is gone. */
int etcd_lease_keepalive(struct etcd_client *c, int64_t id, int64_t *ttl, char **err);
/* Revoke: deletes every key attached to the lease. -ENOKEY when it was already gone. */
int etcd_lease_revoke(struct etcd_client *c, int64_t id, char **err);

/* ---- cluster ------------------------------------------------------------------------ */

int etcd_member_list(struct etcd_client *c, struct etcd_members *out, char **err);
/* Add a member with the given peer URLs (1 to 8); *id gets its ID; members (may be NULL)
 * gets the new list. Not retried on another endpoint: on -EAGAIN back off and retry. */
int etcd_member_add(struct etcd_client *c, const char *const *peer_urls, size_t n_peer_urls,
                    bool is_learner, uint64_t *id, struct etcd_members *members, char **err);
/* Promote a learner: -EBUSY while it has not caught up (poll-retry). */
int etcd_member_promote(struct etcd_client *c, uint64_t id, char **err);
int etcd_member_remove(struct etcd_client *c, uint64_t id, char **err);
/* Status of one member: endpoint is an index into cfg.endpoints, or -1 for whichever
 * answers (round robin). Used for health: leader, raft index, version. */
int etcd_status(struct etcd_client *c, int endpoint, struct etcd_status *out, char **err);

/* Hand the raft leadership to member target (/v3/maintenance/transfer-leadership); it must
 * be sent to the current leader (endpoint: an index into cfg.endpoints, -1 any). */
int etcd_move_leader(struct etcd_client *c, int endpoint, uint64_t target, char **err);

/* ---- watch -------------------------------------------------------------------------- */

/* A watch on a prefix, driven by the caller's event loop without threads or blocking: a
 * curl multi handle whose sockets and timer (a timerfd) are gathered in one epoll fd.
 *
 *   rc = etcd_watch_start(c, "/db/pg/", rev + 1, &w, &err);
 *   sd_event_add_io(loop, NULL, etcd_watch_fd(w), EPOLLIN, on_watch, w);
 *   on_watch: while ((rc = etcd_watch_next(w, &ev, &err)) > 0)
 *                 { use ev; etcd_watch_event_clear(&ev); }
 *             rc < 0: the stream is over: free it, re-read the prefix, start a new watch.
 *
 * Why not a thread: the loop already multiplexes fds, curl's multi interface does the
 * connect, TLS handshake and reads without blocking, and so a stalled stream can delay
 * nothing; there is no locking, no queue shared between threads, and stopping is a plain
 * free. Each etcd_watch_next does bounded work (what is readable now).
 *
 * The watch connects to the client's current endpoint (etcd_client_endpoint) first; while
 * nothing has been received it moves on to the next endpoint when connecting fails (each
 * gets its share of cfg.timeout_ms). Once the stream has started it never reconnects: it
 * ends, and the caller re-reads and starts a new watch. TCP keep-alive (10 s idle, 5 s
 * interval) detects a dead peer; the HA loop's own deadlines must not rely on the watch. */
enum etcd_event_type { ETCD_EVENT_PUT = 0, ETCD_EVENT_DELETE = 1 };

struct etcd_watch_event {
    enum etcd_event_type type;
    struct etcd_kv kv;    /* a DELETE carries key and mod_revision only */
    int64_t revision;     /* header revision of the response that carried it */
};

struct etcd_watch;

/* Start watching every key under prefix from start_revision (0: from now). Non-blocking:
 * connection errors surface later, from etcd_watch_next. */
int etcd_watch_start(struct etcd_client *c, const char *prefix, int64_t start_revision,
                     struct etcd_watch **out, char **err);
/* An fd to poll for input (never changes during the watch's life). */
int etcd_watch_fd(const struct etcd_watch *w);
/* Next event: 1 with *ev filled (clear it), 0 when none is available now (wait for the
 * fd), negative when the stream is over, after every event before the end was returned:
 *   -ESTALE     start revision compacted (*compact_revision from etcd_watch_compacted)
 *   -ECANCELED  etcd cancelled the watch for another reason
 *   -ECONNRESET the stream ended, plus the connection errors listed at the top.
 * The same error is returned again on later calls. */
int etcd_watch_next(struct etcd_watch *w, struct etcd_watch_event *ev, char **err);
/* Whether etcd confirmed the watch ("created"), the last header revision seen on the
 * stream (progress), and the compaction revision after -ESTALE (0 otherwise). */
bool etcd_watch_created(const struct etcd_watch *w);
int64_t etcd_watch_revision(const struct etcd_watch *w);
int64_t etcd_watch_compacted(const struct etcd_watch *w);
void etcd_watch_free(struct etcd_watch *w);

/* ---- results ------------------------------------------------------------------------ */

void etcd_kv_clear(struct etcd_kv *kv);
void etcd_range_clear(struct etcd_range *r);
void etcd_txn_result_clear(struct etcd_txn_result *t);
void etcd_members_clear(struct etcd_members *m);
void etcd_watch_event_clear(struct etcd_watch_event *ev);

/* ---- pure parts, exposed for the unit tests ------------------------------------------ */

/* Standard base64 with padding (what the gateway sends and expects). encode: malloc'd,
 * NUL-terminated. decode: strict (alphabet, padding, canonical trailing bits), *out
 * malloc'd with n bytes plus a NUL; -EPROTO on bad input. */
char *etcd_b64_encode(const void *data, size_t n);
int etcd_b64_decode(const char *s, size_t len, char **out, size_t *n);

/* range_end for "every key with this prefix": the prefix with trailing 0xff bytes dropped
 * and its last byte incremented; "\0" (every key from prefix on) when nothing remains.
 * out must hold len bytes (1 when len is 0); returns the length written. */
size_t etcd_prefix_range_end(const void *prefix, size_t len, unsigned char *out);

/* Turn an HTTP answer into JSON: 200 with a JSON object → *out (a reference for the
 * caller); an error object {"error","message","code"} (any status, also a stream's
 * {"error":{"grpc_code","message"}}) → the mapped errno above; anything else → -EPROTO. */
int etcd_parse_answer(long http_status, const char *body, size_t len, json_t **out,
                      char **err);

/* Parsers of one decoded answer (root is borrowed). */
int etcd_parse_header(const json_t *root, bool need_revision, struct etcd_header *out,
                      char **err);
int etcd_parse_range(const json_t *root, struct etcd_range *out, char **err);
int etcd_parse_put(const json_t *root, int64_t *revision, char **err);
int etcd_parse_delete(const json_t *root, int64_t *deleted, char **err);
int etcd_parse_txn(const json_t *root, struct etcd_txn_result *out, char **err);
int etcd_parse_lease_grant(const json_t *root, int64_t *id, int64_t *ttl, char **err);
/* The keep-alive answer, {"result":{...}} (also accepted unwrapped): -ENOKEY when the TTL
 * is missing or 0 (ha.md 5.4 #3); -EPROTO when the ID is not the one asked for. */
int etcd_parse_keepalive(const json_t *root, int64_t id, int64_t *ttl, char **err);
int etcd_parse_members(const json_t *root, struct etcd_members *out, char **err);
int etcd_parse_member_add(const json_t *root, uint64_t *id, struct etcd_members *out,
                          char **err);
int etcd_parse_status(const json_t *root, struct etcd_status *out, char **err);

/* One object of the watch stream, {"result":{...}}: its events (malloc'd array, each
 * cleared with etcd_watch_event_clear, then free the array). */
struct etcd_watch_response {
    struct etcd_header header;
    bool created;
    bool canceled;
    int64_t compact_revision;
    char cancel_reason[128];
    struct etcd_watch_event *events;
    size_t n_events;
};
int etcd_parse_watch_response(const json_t *root, struct etcd_watch_response *out,
                              char **err);
void etcd_watch_response_clear(struct etcd_watch_response *r);

/* Splits a byte stream into complete top-level JSON objects (the watch stream), whatever
 * the chunk boundaries: brace counting that skips strings and their escapes. Whitespace
 * between objects is skipped; anything else there is -EPROTO; more than max bytes
 * buffered without a complete object is -EMSGSIZE. */
struct etcd_splitter {
    char *buf;
    size_t len, cap, max;
    size_t start; /* where the current object starts (after consumed ones) */
    size_t scan;  /* bytes of it already scanned */
    int depth;
    bool in_string, escape;
};
void etcd_splitter_init(struct etcd_splitter *s, size_t max);
int etcd_splitter_feed(struct etcd_splitter *s, const void *data, size_t n);
/* 1 with *obj and *len (valid until the next feed/next call), 0 when no complete object is
 * buffered, -EPROTO / -EMSGSIZE on a broken stream. */
int etcd_splitter_next(struct etcd_splitter *s, const char **obj, size_t *len);
void etcd_splitter_free(struct etcd_splitter *s);

#endif
