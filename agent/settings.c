/* The charm's Juju config turned into struct pg_settings (settings.h): one descriptor per
 * config.yaml option, each with its type, default, range or allowed values, and store. */
/* _GNU_SOURCE is how glibc is asked for asprintf. */
#define _GNU_SOURCE
#include "settings.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"

#define RULE_MAX 256

/* ---- enumerated values -------------------------------------------------------------- */

static const char *const profile_names[] = {
    [PROFILE_PRODUCTION] = "production", [PROFILE_TESTING] = "testing", NULL};
static const char *const sync_commit_names[] = {[SYNC_COMMIT_ON] = "on",
                                                [SYNC_COMMIT_REMOTE_APPLY] = "remote_apply",
                                                [SYNC_COMMIT_REMOTE_WRITE] = "remote_write",
                                                NULL};

static const char *const watchdog_names[] = {[WATCHDOG_OFF] = "off",
                                             [WATCHDOG_AUTOMATIC] = "automatic",
                                             [WATCHDOG_REQUIRED] = "required",
                                             NULL};

static const char *const tls_min_names[] = {[TLS_MIN_12] = "TLSv1.2", [TLS_MIN_13] = "TLSv1.3",
                                            NULL};
static const char *const tls_key_names[] = {[TLS_KEY_RSA2048] = "rsa-2048",
                                            [TLS_KEY_ECDSA_P256] = "ecdsa-p256", NULL};

static const char *name_of(const char *const *names, size_t n, int value)
{
    return value >= 0 && (size_t)value < n ? names[value] : NULL;
}

const char *settings_profile_name(enum pg_profile p)
{
    return name_of(profile_names, sizeof profile_names / sizeof *profile_names - 1, (int)p);
}

const char *settings_sync_commit_name(enum pg_sync_commit c)
{
    return name_of(sync_commit_names, sizeof sync_commit_names / sizeof *sync_commit_names - 1,
                   (int)c);
}

const char *settings_tls_min_version_name(enum tls_min_version v)
{
    return name_of(tls_min_names, sizeof tls_min_names / sizeof *tls_min_names - 1, (int)v);
}

/* Index of s in a NULL-terminated list, or -1. */
static int choice_index(const char *const *choices, const char *s)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], s) == 0)
            return i;
    return -1;
}

/* "must be one of a, b, c" into rule. */
static int reject_choice(const struct setting_desc *d, char *rule, size_t size)
{
    size_t used = (size_t)snprintf(rule, size, "must be one of");
    for (int i = 0; d->choices[i] && used < size; i++)
        used += (size_t)snprintf(rule + used, size - used, "%s %s", i ? "," : "", d->choices[i]);
    return -EINVAL;
}

/* ---- validators --------------------------------------------------------------------- */

static bool is_xid(const char *s)
{
    size_t n = strspn(s, "0123456789abcdefghijklmnopqrstuv");
    return n == SETTINGS_SECRET_ID_LEN && s[n] == '\0';
}

/* A model UUID: 8-4-4-4-12 hexadecimal digits, followed by '/'. */
static bool is_uuid_slash(const char *s)
{
    static const char layout[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx/";
    for (size_t i = 0; layout[i]; i++) {
        if (layout[i] == 'x' ? !strchr("0123456789abcdefABCDEF", s[i]) || !s[i] : s[i] != layout[i])
            return false;
    }
    return true;
}

int settings_secret_id(const char *uri, char *id_out)
{
    static const char long_prefix[] = "secret://", short_prefix[] = "secret:";
    const char *id = uri;
    id_out[0] = '\0';
    if (strncmp(uri, long_prefix, sizeof long_prefix - 1) == 0) {
        const char *model = uri + sizeof long_prefix - 1;
        if (!is_uuid_slash(model))
            return -EINVAL;
        id = model + 37;
    } else if (strncmp(uri, short_prefix, sizeof short_prefix - 1) == 0) {
        id = uri + sizeof short_prefix - 1;
    }
    if (!is_xid(id))
        return -EINVAL;
    memcpy(id_out, id, SETTINGS_SECRET_ID_LEN + 1);
    return 0;
}

bool settings_time_zone_valid(const char *s)
{
    static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789_+-/";
    size_t n = strlen(s);
    if (n == 0 || n > SETTINGS_TZ_MAX || strspn(s, allowed) != n)
        return false;
    /* no absolute path, no parent directory, no empty component ("a//b", "a/") */
    return s[0] != '/' && !strstr(s, "..") && !strstr(s, "//") && s[n - 1] != '/';
}

/* ---- stores (one per kind of option) ------------------------------------------------ */

static void *member(struct pg_settings *out, size_t offset)
{
    return (char *)out + offset;
}

static int store_long(const struct setting_desc *d, const struct setting_value *v,
                      struct pg_settings *out, char *rule, size_t size)
{
    if (v->i < d->min || v->i > d->max) {
        snprintf(rule, size, "must be an integer between %ld and %ld (%s)", d->min, d->max,
                 d->unit);
        return -EINVAL;
    }
    *(long *)member(out, d->field) = v->i;
    if (d->has_field != SETTINGS_NO_FLAG)
        *(bool *)member(out, d->has_field) = true;
    return 0;
}

static int store_bool(const struct setting_desc *d, const struct setting_value *v,
                      // NOLINTNEXTLINE(readability-non-const-parameter): is a setting_store_fn
                      struct pg_settings *out, char *rule, size_t size)
{
    (void)rule;
    (void)size;
    *(bool *)member(out, d->field) = v->b;
    return 0;
}

/* An enumerated string: the index of the value among d->choices, stored into the enum
 * member at d->field (every such member is int-sized: checked below). */
static int store_enum(const struct setting_desc *d, const struct setting_value *v,
                      struct pg_settings *out, char *rule, size_t size)
{
    int i = choice_index(d->choices, v->s);
    if (i < 0)
        return reject_choice(d, rule, size);
    *(int *)member(out, d->field) = i;
    return 0;
}

#define ENUM_MEMBER_IS_INT(m)                                                                      \
    _Static_assert(sizeof(((struct pg_settings *)0)->m) == sizeof(int), #m " is not int-sized")
ENUM_MEMBER_IS_INT(profile);
ENUM_MEMBER_IS_INT(synchronous_commit);
ENUM_MEMBER_IS_INT(ha_watchdog);
ENUM_MEMBER_IS_INT(tls_min_version);
ENUM_MEMBER_IS_INT(tls_key_type);

static int store_time_zone(const struct setting_desc *d, const struct setting_value *v,
                           struct pg_settings *out, char *rule, size_t size)
{
    (void)d;
    if (!settings_time_zone_valid(v->s)) {
        snprintf(rule, size,
                 "must be a time zone name such as UTC or Europe/Paris: 1 to %d letters, "
                 "digits or _ + - /, not starting with /, without .. or empty components",
                 SETTINGS_TZ_MAX);
        return -EINVAL;
    }
    snprintf(out->time_zone, sizeof out->time_zone, "%s", v->s);
    return 0;
}

static int store_sync_count(const struct setting_desc *d, const struct setting_value *v,
                            struct pg_settings *out, char *rule, size_t size)
{
    (void)d;
    char *end = NULL;
    long n = 0;
    if (strcmp(v->s, "all") == 0) {
        out->sync_node_count = SETTINGS_SYNC_ALL;
        return 0;
    }
    if (strcmp(v->s, "majority") == 0) {
        out->sync_node_count = SETTINGS_SYNC_MAJORITY;
        return 0;
    }
    if (v->s[0] >= '1' && v->s[0] <= '9')
        n = strtol(v->s, &end, 10);
    if (!end || *end || n < 1 || n > SETTINGS_SYNC_MAX) {
        snprintf(rule, size, "must be all, majority or a number of standbys from 1 to %d",
                 SETTINGS_SYNC_MAX);
        return -EINVAL;
    }
    out->sync_node_count = (int)n;
    return 0;
}

/* "" is accepted as unset. */
static int store_secret(const struct setting_desc *d, const struct setting_value *v,
                        struct pg_settings *out, char *rule, size_t size)
{
    (void)d;
    out->system_users[0] = out->system_users_id[0] = '\0';
    if (v->s[0] == '\0')
        return 0;
    if (settings_secret_id(v->s, out->system_users_id) < 0) {
        snprintf(rule, size,
                 "must be a secret URI: secret:<id>, secret://<model-uuid>/<id> or <id>, "
                 "where <id> is %d characters of 0-9 and a-v (see juju secrets)",
                 SETTINGS_SECRET_ID_LEN);
        return -EINVAL;
    }
    snprintf(out->system_users, sizeof out->system_users, "%s", v->s);
    return 0;
}

/* ---- the table (mirrors config.yaml) ------------------------------------------------- */

#define AT(m) offsetof(struct pg_settings, m)
#define INT_OPT(name, def, lo, hi, unit, m)                                                        \
    {                                                                                              \
        name, SETTING_INT, def, lo, hi, unit, NULL, store_long, AT(m), SETTINGS_NO_FLAG            \
    }
#define INT_UNSET(name, lo, hi, unit, m, has)                                                      \
    {                                                                                              \
        name, SETTING_INT, NULL, lo, hi, unit, NULL, store_long, AT(m), AT(has)                    \
    }
#define BOOL_OPT(name, def, m)                                                                     \
    {                                                                                              \
        name, SETTING_BOOLEAN, def, 0, 0, NULL, NULL, store_bool, AT(m), SETTINGS_NO_FLAG          \
    }
#define ENUM_OPT(name, def, choices, m)                                                            \
    {                                                                                              \
        name, SETTING_STRING, def, 0, 0, NULL, choices, store_enum, AT(m), SETTINGS_NO_FLAG        \
    }
#define STR_OPT(name, def, choices, store)                                                         \
    {                                                                                              \
        name, SETTING_STRING, def, 0, 0, NULL, choices, store, 0, SETTINGS_NO_FLAG                 \
    }

const struct setting_desc settings_options[] = {
    ENUM_OPT("profile", "production", profile_names, profile),
    INT_OPT("profile-limit-memory", "0", 0, 2147483647L, "MB", profile_limit_memory_mb),
    {"system-users", SETTING_SECRET, NULL, 0, 0, NULL, NULL, store_secret, 0, SETTINGS_NO_FLAG},
    BOOL_OPT("superuser-remote-access", "false", superuser_remote_access),
    INT_UNSET("experimental-max-connections", 10, 10000, "connections", max_connections,
              has_max_connections),
    INT_UNSET("memory-shared-buffers", 16, 1073741823L, "8 kB pages", shared_buffers_pages,
              has_shared_buffers),
    INT_UNSET("memory-work-mem", 64, 2147483647L, "kB", work_mem_kb, has_work_mem),
    INT_UNSET("memory-maintenance-work-mem", 1024, 2147483647L, "kB", maintenance_work_mem_kb,
              has_maintenance_work_mem),
    INT_UNSET("memory-temp-buffers", 100, 1073741823L, "8 kB pages", temp_buffers_pages,
              has_temp_buffers),
    INT_OPT("connection-authentication-timeout", "60", 1, 600, "seconds", authentication_timeout_s),
    INT_OPT("connection-statement-timeout", "0", 0, 2147483647L, "ms", statement_timeout_ms),
    INT_OPT("session-idle-in-transaction-session-timeout", "0", 0, 2147483647L, "ms",
            idle_in_transaction_timeout_ms),
    INT_OPT("logging-log-min-duration-statement", "-1", -1, 2147483647L, "ms",
            log_min_duration_statement_ms),
    BOOL_OPT("logging-log-lock-waits", "false", log_lock_waits),
    ENUM_OPT("durability-synchronous-commit", "on", sync_commit_names, synchronous_commit),
    STR_OPT("request-time-zone", "UTC", NULL, store_time_zone),
    INT_OPT("ha-lease-ttl", "5", 4, 60, "seconds", ha_lease_ttl_s),
    INT_OPT("ha-renew-interval", "500", 100, 10000, "ms", ha_renew_ms),
    STR_OPT("synchronous-node-count", "all", NULL, store_sync_count),
    BOOL_OPT("synchronous-mode-strict", "true", sync_strict),
    ENUM_OPT("ha-watchdog", "automatic", watchdog_names, ha_watchdog),
    BOOL_OPT("tls-only", "false", tls_only),
    ENUM_OPT("tls-min-version", "TLSv1.2", tls_min_names, tls_min_version),
    ENUM_OPT("tls-private-key-type", "rsa-2048", tls_key_names, tls_key_type),
};
const size_t settings_n_options = sizeof settings_options / sizeof settings_options[0];

const struct setting_desc *settings_find(const char *name)
{
    for (size_t i = 0; i < settings_n_options; i++)
        if (strcmp(settings_options[i].name, name) == 0)
            return &settings_options[i];
    return NULL;
}

const char *settings_type_name(enum setting_type type)
{
    static const char *const names[] = {[SETTING_STRING] = "string",
                                        [SETTING_INT] = "int",
                                        [SETTING_BOOLEAN] = "boolean",
                                        [SETTING_SECRET] = "secret"};
    return (unsigned)type < sizeof names / sizeof *names ? names[type] : "?";
}

/* ---- values from JSON or from a default ------------------------------------------- */

/* Take the typed value out of j; false when j has another JSON type (or an integer out
 * of long's range, which no option allows anyway). */
static bool value_from_json(const struct setting_desc *d, const json_t *j, struct setting_value *v)
{
    switch (d->type) {
    case SETTING_INT:
        if (!json_is_integer(j) || json_integer_value(j) < LONG_MIN ||
            json_integer_value(j) > LONG_MAX)
            return false;
        v->i = (long)json_integer_value(j);
        return true;
    case SETTING_BOOLEAN:
        v->b = json_is_true(j);
        return json_is_boolean(j);
    case SETTING_STRING:
    case SETTING_SECRET:
        v->s = json_string_value(j);
        return v->s != NULL;
    }
    return false;
}

/* The default as written in config.yaml, typed. false when it does not parse (a bug in
 * the table, which the unit test catches). */
static bool value_from_default(const struct setting_desc *d, struct setting_value *v)
{
    char *end;
    switch (d->type) {
    case SETTING_INT:
        errno = 0;
        v->i = strtol(d->def, &end, 10);
        return errno == 0 && end != d->def && *end == '\0';
    case SETTING_BOOLEAN:
        v->b = strcmp(d->def, "true") == 0;
        return v->b || strcmp(d->def, "false") == 0;
    case SETTING_STRING:
    case SETTING_SECRET:
        v->s = d->def;
        return true;
    }
    return false;
}

/* ---- messages ---------------------------------------------------------------------- */

/* j as an operator would recognise it, at most SETTINGS_ECHO_MAX characters (strings in
 * double quotes, control characters and NUL as '?', "..." when cut). */
static void echo_json(const json_t *j, char *buf, size_t size)
{
    if (json_is_integer(j)) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(j));
    } else if (json_is_real(j)) {
        snprintf(buf, size, "%g", json_real_value(j));
    } else if (json_is_boolean(j)) {
        snprintf(buf, size, "%s", json_is_true(j) ? "true" : "false");
    } else if (json_is_string(j)) {
        const unsigned char *s = (const unsigned char *)json_string_value(j);
        size_t len = json_string_length(j), i = 0, o = 0, chars = 0;
        buf[o++] = '"';
        for (; i < len && o + 8 < size; i++) {
            bool starts_char = (s[i] & 0xC0) != 0x80;
            if (starts_char && chars++ == SETTINGS_ECHO_MAX)
                break;
            buf[o++] = (char)(s[i] < 0x20 || s[i] == 0x7F ? '?' : s[i]);
        }
        snprintf(buf + o, size - o, "%s\"", i < len ? "..." : "");
    } else {
        snprintf(buf, size, "%s", json_is_array(j) ? "[...]" : "{...}");
    }
}

static const char *json_kind(const json_t *j)
{
    static const char *const kinds[] = {
        [JSON_OBJECT] = "an object",   [JSON_ARRAY] = "an array",     [JSON_STRING] = "a string",
        [JSON_INTEGER] = "an integer", [JSON_REAL] = "a real number", [JSON_TRUE] = "a boolean",
        [JSON_FALSE] = "a boolean",    [JSON_NULL] = "null"};
    return kinds[json_typeof(j)];
}

/* The rule a value of the wrong JSON type broke. */
static void type_rule(const struct setting_desc *d, const json_t *j, char *rule, size_t size)
{
    static const char *const nouns[] = {[SETTING_STRING] = "a string",
                                        [SETTING_BOOLEAN] = "true or false",
                                        [SETTING_SECRET] = "a secret URI (a string)"};
    if (d->type == SETTING_INT)
        snprintf(rule, size, "must be an integer between %ld and %ld (%s), not %s", d->min, d->max,
                 d->unit, json_kind(j));
    else
        snprintf(rule, size, "must be %s, not %s", nouns[d->type], json_kind(j));
}

/* Append "config <name>=<value>: <rule>" to *msgs, joined with "; ". */
static int add_problem(char **msgs, const char *name, const char *value, const char *rule)
{
    char *joined = NULL;
    int n = *msgs ? asprintf(&joined, "%s; config %s=%s: %s", *msgs, name, value, rule)
                  : asprintf(&joined, "config %s=%s: %s", name, value, rule);
    if (n < 0)
        return -ENOMEM;
    free(*msgs);
    *msgs = joined;
    return 0;
}

/* ---- parsing ---------------------------------------------------------------------- */

static int apply_default(const struct setting_desc *d, struct pg_settings *out, char **msgs)
{
    struct setting_value v = {0};
    char rule[RULE_MAX] = "";
    if (!d->def)
        return 0;
    if (!value_from_default(d, &v) || d->store(d, &v, out, rule, sizeof rule) < 0)
        return add_problem(msgs, d->name, d->def, "the charm's own default is invalid (a bug)");
    return 0;
}

/* Validate and store one option (j NULL when absent); a refused value is recorded in
 * *msgs and the default is stored instead. Returns 0 or -ENOMEM. */
static int apply_option(const struct setting_desc *d, const json_t *j, struct pg_settings *out,
                        char **msgs)
{
    struct setting_value v = {0};
    char rule[RULE_MAX] = "", echo[4 * SETTINGS_ECHO_MAX + 16];
    if (!j || json_is_null(j))
        return apply_default(d, out, msgs);
    if (!value_from_json(d, j, &v))
        type_rule(d, j, rule, sizeof rule);
    else if (v.s && strlen(v.s) != json_string_length(j))
        snprintf(rule, sizeof rule, "must not contain NUL characters");
    else if (d->store(d, &v, out, rule, sizeof rule) == 0)
        return 0;
    echo_json(j, echo, sizeof echo);
    if (add_problem(msgs, d->name, echo, rule) < 0)
        return -ENOMEM;
    return apply_default(d, out, msgs);
}

int settings_parse(const json_t *config, struct pg_settings *out, char **err)
{
    char *msgs = NULL;
    memset(out, 0, sizeof *out);
    if (!json_is_object(config))
        return errmsg_set(err, -EINVAL, "config is not a JSON object");
    for (size_t i = 0; i < settings_n_options; i++) {
        if (apply_option(&settings_options[i], json_object_get(config, settings_options[i].name),
                         out, &msgs) < 0) {
            free(msgs);
            return errmsg_set(err, -ENOMEM, "out of memory reading the config");
        }
    }
    /* The HA timing rule across two options (settings.h). */
    long need = out->ha_renew_ms + 2L * SETTINGS_DCS_BUDGET_MS + SETTINGS_FENCE_MARGIN_MS;
    if (need > out->ha_lease_ttl_s * 1000L) {
        char rule[RULE_MAX], echo[32];
        snprintf(echo, sizeof echo, "%ld", out->ha_lease_ttl_s);
        snprintf(rule, sizeof rule,
                 "must leave room for the renew interval (%ld ms), two DCS requests (%d ms "
                 "each) and the fencing margin (%d ms): at least %ld s with "
                 "ha-renew-interval=%ld",
                 out->ha_renew_ms, SETTINGS_DCS_BUDGET_MS, SETTINGS_FENCE_MARGIN_MS,
                 (need + 999) / 1000, out->ha_renew_ms);
        if (add_problem(&msgs, "ha-lease-ttl", echo, rule) < 0) {
            free(msgs);
            return errmsg_set(err, -ENOMEM, "out of memory reading the config");
        }
    }
    if (!msgs)
        return 0;
    errmsg_format(err, "%s", msgs);
    free(msgs);
    return -EINVAL;
}
