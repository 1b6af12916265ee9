/* The charm's Juju config, validated at the edge: the JSON object printed by
 * `config-get --format=json` becomes a typed struct pg_settings (see config.yaml).
 *
 * Rules: every option declared in config.yaml has a descriptor in settings_options[]
 * (name, type and default as there; tests/unit/test_settings.c cross-checks the two).
 * Absent keys and JSON null (what `config-get --all` prints for unset options) take the
 * declared default, or stay unset (has_* false) when there is none. A declared key with a
 * value of the wrong JSON type or out of its range is an error. Keys that are not
 * declared are ignored, so that a newer config.yaml does not break an older agent.
 * Config values are not secrets (system-users holds a secret's URI, not its content), so
 * messages quote them, cut to SETTINGS_ECHO_MAX characters.
 *
 * Ownership: settings_parse borrows config for the call and keeps no pointer into it;
 * struct pg_settings holds no pointers (fixed arrays only), so it can be copied freely
 * and needs no free. *err is malloc'd and owned by the caller. The descriptor table and
 * the strings returned by the *_name functions are static.
 */
#ifndef PG_AGENT_SETTINGS_H
#define PG_AGENT_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "watchdog.h"

enum tls_min_version { TLS_MIN_12 = 0, TLS_MIN_13 };
enum tls_key_type { TLS_KEY_RSA2048 = 0, TLS_KEY_ECDSA_P256 };

/* "TLSv1.2" / "TLSv1.3": PostgreSQL's ssl_min_protocol_version values. */
const char *settings_tls_min_version_name(enum tls_min_version v);

#define SETTINGS_TZ_MAX 64         /* request-time-zone, in characters */
#define SETTINGS_SECRET_ID_LEN 20  /* a Juju secret id (xid): [0-9a-v]{20} */
#define SETTINGS_SECRET_URI_MAX 66 /* secret://<36-char model uuid>/<id> */
#define SETTINGS_ECHO_MAX 64       /* characters of a value quoted in a message */

enum pg_profile {
    PROFILE_PRODUCTION = 0, /* size memory from the unit's RAM */
    PROFILE_TESTING,        /* small fixed footprint */
};

enum pg_sync_commit {
    SYNC_COMMIT_ON = 0,
    SYNC_COMMIT_REMOTE_APPLY,
    SYNC_COMMIT_REMOTE_WRITE,
};

/* One field per option; units are the option's own (as in config.yaml). Optional
 * options without a default have a has_* flag: when it is false the value is 0 and
 * means nothing (the renderer computes the value). */
struct pg_settings {
    enum pg_profile profile;                          /* profile */
    long profile_limit_memory_mb;                     /* profile-limit-memory, 0 = no cap */
    char system_users[SETTINGS_SECRET_URI_MAX + 1];   /* system-users as given, "" = unset */
    char system_users_id[SETTINGS_SECRET_ID_LEN + 1]; /* its bare secret id, "" = unset */
    bool superuser_remote_access;                     /* superuser-remote-access */
    bool has_max_connections;
    long max_connections; /* experimental-max-connections */
    bool has_shared_buffers;
    long shared_buffers_pages; /* memory-shared-buffers, 8 kB pages */
    bool has_work_mem;
    long work_mem_kb; /* memory-work-mem */
    bool has_maintenance_work_mem;
    long maintenance_work_mem_kb; /* memory-maintenance-work-mem */
    bool has_temp_buffers;
    long temp_buffers_pages;                /* memory-temp-buffers, 8 kB pages */
    long authentication_timeout_s;          /* connection-authentication-timeout */
    long statement_timeout_ms;              /* connection-statement-timeout, 0 = off */
    long idle_in_transaction_timeout_ms;    /* session-idle-in-transaction-..., 0 = off */
    long log_min_duration_statement_ms;     /* logging-log-min-duration-statement */
    bool log_lock_waits;                    /* logging-log-lock-waits */
    enum pg_sync_commit synchronous_commit; /* durability-synchronous-commit */
    char time_zone[SETTINGS_TZ_MAX + 1];    /* request-time-zone */
    long ha_lease_ttl_s;                    /* ha-lease-ttl */
    long ha_renew_ms;                       /* ha-renew-interval */
    int sync_node_count;                    /* synchronous-node-count: n, or one below */
    bool sync_strict;                       /* synchronous-mode-strict */
    enum watchdog_mode ha_watchdog;         /* ha-watchdog */
    bool tls_only;                          /* tls-only: every TCP rule hostssl */
    enum tls_min_version tls_min_version;   /* tls-min-version */
    enum tls_key_type tls_key_type;         /* tls-private-key-type */
};

#define SETTINGS_SYNC_ALL (-1)      /* synchronous-node-count=all: every other unit */
#define SETTINGS_SYNC_MAJORITY (-2) /* majority: planned units / 2 */
#define SETTINGS_SYNC_MAX 15

/* The HA timing rule (ha.md 15.2): renew + 2 x budget + fence margin <= TTL, where the
 * budget of one DCS request is SETTINGS_DCS_BUDGET_MS and the fencing deadline leaves
 * SETTINGS_FENCE_MARGIN_MS before the lease can expire. */
#define SETTINGS_DCS_BUDGET_MS 1000
#define SETTINGS_FENCE_MARGIN_MS 1000

/* Option types, as spelled in config.yaml. */
enum setting_type {
    SETTING_STRING = 0,
    SETTING_INT,
    SETTING_BOOLEAN,
    SETTING_SECRET,
};

/* A value taken from JSON (or from a descriptor's default): the member of its type. */
struct setting_value {
    long i;        /* SETTING_INT */
    bool b;        /* SETTING_BOOLEAN */
    const char *s; /* SETTING_STRING, SETTING_SECRET (borrowed) */
};

struct setting_desc;

/* Check v against the option's rule and store it into *out. Returns 0, or -EINVAL with
 * the rule written into rule (rule_size bytes, NUL-terminated), e.g. "must be one of on,
 * remote_apply, remote_write". */
typedef int setting_store_fn(const struct setting_desc *d, const struct setting_value *v,
                             struct pg_settings *out, char *rule, size_t rule_size);

/* One option declared in config.yaml. */
struct setting_desc {
    const char *name;           /* config.yaml key */
    enum setting_type type;     /* config.yaml type */
    const char *def;            /* config.yaml default as written there (unquoted); NULL: none */
    long min, max;              /* SETTING_INT: allowed range, inclusive */
    const char *unit;           /* SETTING_INT: unit named in messages ("kB", "ms", ...) */
    const char *const *choices; /* enumerated strings: the allowed values, NULL-terminated */
    setting_store_fn *store;    /* validates and stores a value (used by settings.c) */
    size_t field;               /* offsetof the member that store writes (used by store) */
    size_t has_field;           /* offsetof its has_* flag, or SETTINGS_NO_FLAG */
};

#define SETTINGS_NO_FLAG ((size_t)-1)

extern const struct setting_desc settings_options[];
extern const size_t settings_n_options;

/* The descriptor of a declared option, or NULL. */
const struct setting_desc *settings_find(const char *name);

/* "string", "int", "boolean", "secret" (config.yaml spelling); "?" when out of range. */
const char *settings_type_name(enum setting_type type);

/* Fill *out from config (a JSON object; see the rules above). Returns 0; -EINVAL with
 * *err naming every invalid option (joined with "; "), its value and its rule, e.g.
 * "config memory-work-mem=12: must be an integer between 64 and 2147483647 (kB)"; or
 * -ENOMEM. *out is fully written either way (defaults where a value was refused), but
 * must not be used after a failure. */
int settings_parse(const json_t *config, struct pg_settings *out, char **err);

/* Parse a Juju secret URI: secret:<id>, secret://<model-uuid>/<id> or a bare <id>, where
 * <id> is SETTINGS_SECRET_ID_LEN characters of [0-9a-v]. Writes the bare id (NUL-
 * terminated) into id_out, which has room for SETTINGS_SECRET_ID_LEN + 1 bytes. Returns
 * 0 or -EINVAL. */
int settings_secret_id(const char *uri, char *id_out);

/* Whether s is an acceptable time zone name: 1 to SETTINGS_TZ_MAX characters of
 * [A-Za-z0-9_+-/], not starting with '/', without "..", without an empty component. */
bool settings_time_zone_valid(const char *s);

/* The config.yaml spelling of an enum value ("production", "remote_apply", ...);
 * NULL when out of range. synchronous_commit values are also PostgreSQL's. */
const char *settings_profile_name(enum pg_profile p);
const char *settings_sync_commit_name(enum pg_sync_commit c);

#endif
