/* Unit tests for agent/pgconf.c: quoting, memory sizing per profile, the rendered
 * postgresql.conf (TLS, include), pg_hba.conf rule order, methods and peer rules, and
 * pg_ident.conf. */
#include "check.h"

#include "pgconf.h"
#include "settings.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- helpers ------------------------------------------------------------------------- */

#define GB_MB 1024L

/* Settings from a JSON config (the test's own; aborts the check on a typo). */
static void settings_from(int *failed, const char *json, struct pg_settings *s)
{
    json_error_t je;
    json_t *j = json_loads(json, 0, &je);
    char *err = NULL;
    CHECK(j != NULL);
    CHECK(settings_parse(j, s, &err) == 0);
    if (err)
        fprintf(stderr, "  %s: %s\n", json, err);
    free(err);
    json_decref(j);
}

static struct host_facts facts(long ram_mb, int cpus)
{
    return (struct host_facts){.ram_mb = ram_mb,
                               .cpus = cpus,
                               .major = 16,
                               .data_dir = "/var/lib/postgresql/16/main",
                               .socket_dir = "/var/run/postgresql",
                               .port = 5432};
}

static void size_ok(int *failed, const char *json, struct host_facts h, struct pg_sizing *z)
{
    struct pg_settings s;
    char *err = NULL;
    settings_from(failed, json, &s);
    CHECK(pgconf_size(&s, &h, z, &err) == 0);
    CHECK(err == NULL);
    free(err);
}

static void check_kb(int *failed, long long kb, const char *want)
{
    char buf[32];
    pgconf_format_kb(kb, buf, sizeof buf);
    CHECK_STR(buf, want);
}

/* Render postgresql.conf; NULL (counted as a failure) when refused. */
static char *render_conf(int *failed, const char *json, struct host_facts h)
{
    struct pg_settings s;
    char *out = NULL, *err = NULL;
    settings_from(failed, json, &s);
    CHECK(pgconf_render_conf(&s, &h, &out, &err) == 0);
    if (err)
        fprintf(stderr, "  refused: %s\n", err);
    free(err);
    return out;
}

/* How many lines of text equal line exactly. */
static int count_line(const char *text, const char *line)
{
    int n = 0;
    size_t len = strlen(line);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        n += l == len && strncmp(p, line, len) == 0;
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

static void has_line(int *failed, const char *text, const char *line)
{
    int n = text ? count_line(text, line) : 0;
    if (n != 1) {
        fprintf(stderr, "  line \"%s\" appears %d times (want once)\n", line, n);
        (*failed)++;
    }
}

/* Lines that are neither blank nor comments. */
static size_t setting_lines(const char *text)
{
    size_t n = 0;
    for (const char *p = text; p && *p;) {
        n += *p != '#' && *p != '\n';
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return n;
}

/* ---- quoting and units ------------------------------------------------------------ */

TEST(quote)
{
    const struct {
        const char *in, *out;
    } cases[] = {
        {"abc", "'abc'"},       {"", "''"},           {"it's", "'it''s'"},
        {"''", "''''''"},       {"a\\b", "'a\\\\b'"}, {"%m [%p] %q%u@%d ", "'%m [%p] %q%u@%d '"},
        {"Zürich", "'Zürich'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *q = NULL;
        CHECK(pgconf_quote(cases[i].in, &q) == 0);
        CHECK_STR(q, cases[i].out);
        free(q);
    }
    const char *refused[] = {"a\nb", "a\rb", "tab\there", "\x7f"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char *q = NULL;
        CHECK(pgconf_quote(refused[i], &q) == -EINVAL);
        CHECK(q == NULL);
    }
}

TEST(units)
{
    check_kb(failed, 0, "0kB");
    check_kb(failed, 8, "8kB");
    check_kb(failed, 1000, "1000kB");
    check_kb(failed, 1024, "1MB");
    check_kb(failed, 131072, "128MB");
    check_kb(failed, 1536 * 1024, "1536MB");
    check_kb(failed, 4194304, "4GB");
    check_kb(failed, 1024LL * 1024 * 1024, "1TB");
    check_kb(failed, 4LL * 1024 * 1024 * 1024 * 1024, "4096TB");
    check_kb(failed, 1073741823LL * 8, "8589934584kB");
}

/* ---- sizing -------------------------------------------------------------------------- */

TEST(production_1gb)
{
    struct pg_sizing z;
    size_ok(failed, "{}", facts(1 * GB_MB, 2), &z);
    CHECK(z.base_mb == 1024);
    CHECK(z.shared_buffers_kb == 256 * 1024);
    CHECK(z.effective_cache_size_kb == 768 * 1024);
    CHECK(z.maintenance_work_mem_kb == 64 * 1024);
    CHECK(z.work_mem_kb == 4096);
    CHECK(z.temp_buffers_kb == 8192);
    CHECK(z.max_connections == 100);
}

TEST(production_16gb)
{
    struct pg_sizing z;
    size_ok(failed, "{\"profile\":\"production\"}", facts(16 * GB_MB, 64), &z);
    CHECK(z.shared_buffers_kb == 4LL * 1024 * 1024);
    CHECK(z.effective_cache_size_kb == 12LL * 1024 * 1024);
    CHECK(z.maintenance_work_mem_kb == 1024 * 1024);
    CHECK(z.max_connections == 256); /* 4 x 64 CPUs */

    /* a limit below the RAM sizes from the limit */
    size_ok(failed, "{\"profile-limit-memory\":8192}", facts(16 * GB_MB, 4), &z);
    CHECK(z.base_mb == 8192);
    CHECK(z.shared_buffers_kb == 2LL * 1024 * 1024);
    CHECK(z.effective_cache_size_kb == 6LL * 1024 * 1024);
    CHECK(z.maintenance_work_mem_kb == 512 * 1024);
    CHECK(z.max_connections == 100);

    /* a limit above the RAM changes nothing */
    size_ok(failed, "{\"profile-limit-memory\":32768}", facts(16 * GB_MB, 4), &z);
    CHECK(z.base_mb == 16384);
    CHECK(z.shared_buffers_kb == 4LL * 1024 * 1024);
}

TEST(production_limit_on_1gb_and_large_ram)
{
    struct pg_sizing z;
    size_ok(failed, "{\"profile-limit-memory\":512}", facts(1 * GB_MB, 1), &z);
    CHECK(z.shared_buffers_kb == 128 * 1024);
    CHECK(z.effective_cache_size_kb == 384 * 1024);
    CHECK(z.maintenance_work_mem_kb == 32 * 1024);
    /* maintenance_work_mem stops at 2 GB */
    size_ok(failed, "{}", facts(64 * GB_MB, 16), &z);
    CHECK(z.shared_buffers_kb == 16LL * 1024 * 1024);
    CHECK(z.effective_cache_size_kb == 48LL * 1024 * 1024);
    CHECK(z.maintenance_work_mem_kb == 2LL * 1024 * 1024);
    /* a tiny unit still gets PostgreSQL's minimum maintenance_work_mem */
    size_ok(failed, "{}", facts(8, 1), &z);
    CHECK(z.shared_buffers_kb == 2048);
    CHECK(z.maintenance_work_mem_kb == 1024);
}

TEST(testing_profile)
{
    struct pg_sizing z;
    size_ok(failed, "{\"profile\":\"testing\"}", facts(16 * GB_MB, 8), &z);
    CHECK(z.shared_buffers_kb == 128 * 1024);
    CHECK(z.effective_cache_size_kb == 512 * 1024);
    CHECK(z.maintenance_work_mem_kb == 64 * 1024);
    CHECK(z.max_connections == 100);
    /* the limit is a production matter */
    size_ok(failed, "{\"profile\":\"testing\",\"profile-limit-memory\":256}", facts(16 * GB_MB, 8),
            &z);
    CHECK(z.shared_buffers_kb == 128 * 1024 && z.effective_cache_size_kb == 512 * 1024);
    /* tiny RAM: effective_cache_size is at most half of it */
    size_ok(failed, "{\"profile\":\"testing\"}", facts(512, 1), &z);
    CHECK(z.effective_cache_size_kb == 256 * 1024);
}

TEST(explicit_options_override_the_profile)
{
    struct pg_sizing z;
    size_ok(failed,
            "{\"profile\":\"testing\",\"memory-shared-buffers\":32768,\"memory-work-mem\":8192,"
            "\"memory-maintenance-work-mem\":131072,\"memory-temp-buffers\":2048,"
            "\"experimental-max-connections\":42}",
            facts(16 * GB_MB, 8), &z);
    CHECK(z.shared_buffers_kb == 256 * 1024);
    CHECK(z.effective_cache_size_kb == 512 * 1024);
    CHECK(z.work_mem_kb == 8192);
    CHECK(z.maintenance_work_mem_kb == 131072);
    CHECK(z.temp_buffers_kb == 2048 * 8);
    CHECK(z.max_connections == 42);
    /* production: effective_cache_size is what remains beside the explicit buffers */
    size_ok(failed, "{\"memory-shared-buffers\":65536,\"memory-maintenance-work-mem\":2048}",
            facts(4 * GB_MB, 2), &z);
    CHECK(z.shared_buffers_kb == 512 * 1024);
    CHECK(z.effective_cache_size_kb == (4096 - 512) * 1024LL);
    CHECK(z.maintenance_work_mem_kb == 2048);
    /* max_connections: the option wins even below the CPU-based figure */
    size_ok(failed, "{\"experimental-max-connections\":10}", facts(16 * GB_MB, 256), &z);
    CHECK(z.max_connections == 10);
    size_ok(failed, "{}", facts(16 * GB_MB, 256), &z);
    CHECK(z.max_connections == 1024);
}

TEST(shared_buffers_limit)
{
    /* 1 GB of RAM = 131072 pages of 8 kB; 40 % of that is 52428 pages */
    struct pg_sizing z;
    size_ok(failed, "{\"memory-shared-buffers\":52428}", facts(1 * GB_MB, 2), &z);
    CHECK(z.shared_buffers_kb == 52428LL * 8);

    struct pg_settings s;
    char *err = NULL, *out = NULL;
    settings_from(failed, "{\"memory-shared-buffers\":52429}", &s);
    struct host_facts h = facts(1 * GB_MB, 2);
    CHECK(pgconf_size(&s, &h, &z, &err) == -EINVAL);
    CHECK_STR(err, "config memory-shared-buffers=52429: must be at most 52428 pages of 8 kB (40 % "
                   "of the unit's 1024 MB of RAM)");
    free(err);
    err = NULL;
    CHECK(pgconf_render_conf(&s, &h, &out, &err) == -EINVAL);
    CHECK(out == NULL);
    CHECK(err && strstr(err, "memory-shared-buffers=52429") && strstr(err, "52428 pages"));
    free(err);
    /* the limit follows the RAM, whatever the profile */
    settings_from(failed, "{\"profile\":\"testing\",\"memory-shared-buffers\":52429}", &s);
    err = NULL;
    CHECK(pgconf_size(&s, &h, &z, &err) == -EINVAL);
    free(err);
}

TEST(bad_host_facts)
{
    struct pg_settings s;
    settings_from(failed, "{}", &s);
    struct host_facts bad[] = {facts(0, 1),
                               facts(1024, 0),
                               facts(PGCONF_MAX_RAM_MB + 1, 1),
                               facts(1024, PGCONF_MAX_CPUS + 1),
                               facts(1024, 1),
                               facts(1024, 1),
                               facts(1024, 1),
                               facts(1024, 1),
                               facts(1024, 1)};
    bad[4].major = 9;
    bad[5].port = 0;
    bad[6].port = 65536;
    bad[7].data_dir = "var/lib/postgresql";
    bad[8].socket_dir = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = NULL, *err = NULL;
        CHECK(pgconf_render_conf(&s, &bad[i], &out, &err) == -EINVAL);
        CHECK(out == NULL);
        CHECK(err && strstr(err, "host fact"));
        free(err);
    }
    /* a path that cannot be written in the file */
    struct host_facts h = facts(1024, 1);
    h.data_dir = "/var/lib/pg\nssl = on";
    char *out = NULL, *err = NULL;
    CHECK(pgconf_render_conf(&s, &h, &out, &err) == -EINVAL);
    CHECK(out == NULL && err != NULL);
    free(err);
}

/* ---- postgresql.conf ------------------------------------------------------------------ */

TEST(conf_defaults_production_16gb)
{
    char *c = render_conf(failed, "{}", facts(16 * GB_MB, 8));
    CHECK(c && strncmp(c, "# postgresql.conf: generated by pg-agent", 40) == 0);
    CHECK(c && strstr(c, "overwritten"));
    const char *lines[] = {
        "listen_addresses = '*'",
        "port = 5432",
        "unix_socket_directories = '/var/run/postgresql'",
        "unix_socket_permissions = 0777",
        "password_encryption = 'scram-sha-256'",
        "ssl = off",
        "max_connections = 100",
        "shared_buffers = '4GB'",
        "effective_cache_size = '12GB'",
        "work_mem = '4MB'",
        "maintenance_work_mem = '1GB'",
        "temp_buffers = '8MB'",
        "authentication_timeout = 60",
        "statement_timeout = 0",
        "idle_in_transaction_session_timeout = 0",
        "log_min_duration_statement = -1",
        "log_lock_waits = off",
        "synchronous_commit = 'on'",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "wal_level = 'logical'",
        "max_wal_senders = 10",
        "max_replication_slots = 10",
        "hot_standby = on",
        "wal_log_hints = on",
        "archive_mode = on",
        "archive_command = '/bin/true'",
        "logging_collector = on",
        "log_directory = '/var/log/postgresql'",
        "log_filename = 'postgresql-16-charm-%a.log'",
        "log_file_mode = 0600",
        "log_truncate_on_rotation = on",
        "log_rotation_age = '1d'",
        "log_rotation_size = 0",
        "log_connections = on",
        "log_disconnections = on",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "log_statement = 'ddl'",
        "hba_file = '/var/lib/postgresql/16/main/pg_hba.conf'",
        "ident_file = '/var/lib/postgresql/16/main/pg_ident.conf'",
        "cluster_name = 'charm'",
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
        has_line(failed, c, lines[i]);
    /* nothing else: every other line is a comment or blank, and data_checksums is not a GUC */
    CHECK(setting_lines(c) == sizeof lines / sizeof *lines);
    CHECK(c && !strstr(c, "data_checksums"));
    CHECK(c && c[strlen(c) - 1] == '\n');
    free(c);
}

TEST(conf_from_options)
{
    struct host_facts h = facts(1 * GB_MB, 2);
    h.major = 14;
    h.port = 5433;
    h.data_dir = "/srv/pg data/";
    h.socket_dir = "/run/o'dir";
    char *c = render_conf(failed,
                          "{\"profile\":\"testing\",\"memory-work-mem\":1000,"
                          "\"memory-temp-buffers\":100,\"connection-authentication-timeout\":5,"
                          "\"connection-statement-timeout\":30000,"
                          "\"session-idle-in-transaction-session-timeout\":600000,"
                          "\"logging-log-min-duration-statement\":0,"
                          "\"logging-log-lock-waits\":true,"
                          "\"durability-synchronous-commit\":\"remote_write\","
                          "\"request-time-zone\":\"America/Argentina/Buenos_Aires\","
                          "\"experimental-max-connections\":250}",
                          h);
    has_line(failed, c, "port = 5433");
    has_line(failed, c, "unix_socket_directories = '/run/o''dir'");
    has_line(failed, c, "max_connections = 250");
    has_line(failed, c, "shared_buffers = '128MB'");
    has_line(failed, c, "effective_cache_size = '512MB'");
    has_line(failed, c, "maintenance_work_mem = '64MB'");
    has_line(failed, c, "work_mem = '1000kB'");
    has_line(failed, c, "temp_buffers = '800kB'");
    has_line(failed, c, "authentication_timeout = 5");
    has_line(failed, c, "statement_timeout = 30000");
    has_line(failed, c, "idle_in_transaction_session_timeout = 600000");
    has_line(failed, c, "log_min_duration_statement = 0");
    has_line(failed, c, "log_lock_waits = on");
    has_line(failed, c, "synchronous_commit = 'remote_write'");
    has_line(failed, c, "timezone = 'America/Argentina/Buenos_Aires'");
    has_line(failed, c, "log_timezone = 'UTC'");
    has_line(failed, c, "log_filename = 'postgresql-14-charm-%a.log'");
    has_line(failed, c, "hba_file = '/srv/pg data/pg_hba.conf'");
    has_line(failed, c, "ident_file = '/srv/pg data/pg_ident.conf'");
    free(c);
}

/* The facts of a unit whose certificate is in place. */
static struct host_facts tls_facts(void)
{
    struct host_facts h = facts(16 * GB_MB, 8);
    h.tls_cert = "/var/lib/postgresql/pg-agent-tls/cert.pem";
    h.tls_key = "/var/lib/postgresql/pg-agent-tls/key.pem";
    h.tls_ca = "/var/lib/postgresql/pg-agent-tls/ca.pem";
    return h;
}

TEST(conf_tls_on)
{
    char *c = render_conf(failed, "{}", tls_facts());
    has_line(failed, c, "ssl = on");
    has_line(failed, c, "ssl_cert_file = '/var/lib/postgresql/pg-agent-tls/cert.pem'");
    has_line(failed, c, "ssl_key_file = '/var/lib/postgresql/pg-agent-tls/key.pem'");
    has_line(failed, c, "ssl_ca_file = '/var/lib/postgresql/pg-agent-tls/ca.pem'");
    has_line(failed, c, "ssl_min_protocol_version = 'TLSv1.2'");
    CHECK(c && !strstr(c, "ssl = off"));
    /* the TLS lines are the only additions to the defaults */
    char *plain = render_conf(failed, "{}", facts(16 * GB_MB, 8));
    CHECK(c && plain && setting_lines(c) == setting_lines(plain) + 4);
    free(plain);
    free(c);
}

TEST(conf_tls_off_unless_all_three_files)
{
    for (int missing = 0; missing < 3; missing++) {
        struct host_facts h = tls_facts();
        if (missing == 0)
            h.tls_cert = NULL;
        else if (missing == 1)
            h.tls_key = NULL;
        else
            h.tls_ca = NULL;
        char *c = render_conf(failed, "{}", h);
        has_line(failed, c, "ssl = off");
        CHECK(c && !strstr(c, "ssl = on") && !strstr(c, "ssl_cert_file") &&
              !strstr(c, "ssl_key_file") && !strstr(c, "ssl_ca_file"));
        free(c);
    }
    /* a TLS path that cannot be written in the file is refused, not dropped */
    struct pg_settings s;
    settings_from(failed, "{}", &s);
    struct host_facts h = tls_facts();
    h.tls_key = "/tmp/key\nssl = off";
    char *out = NULL, *err = NULL;
    CHECK(pgconf_render_conf(&s, &h, &out, &err) == -EINVAL);
    CHECK(out == NULL && err != NULL);
    free(err);
}

TEST(conf_include_last)
{
    struct host_facts h = facts(16 * GB_MB, 8);
    h.include = "pg-agent-ha.conf";
    char *c = render_conf(failed, "{}", h);
    has_line(failed, c, "include_if_exists = 'pg-agent-ha.conf'");
    /* last: the HA loop's settings override everything above them */
    static const char last[] = "include_if_exists = 'pg-agent-ha.conf'\n";
    size_t n = c ? strlen(c) : 0;
    CHECK(c && n >= sizeof last - 1 && strcmp(c + n - (sizeof last - 1), last) == 0);
    /* quoted like any string; absent without an include */
    h.include = "/srv/it's.conf";
    free(c);
    c = render_conf(failed, "{}", h);
    has_line(failed, c, "include_if_exists = '/srv/it''s.conf'");
    free(c);
    c = render_conf(failed, "{}", facts(16 * GB_MB, 8));
    CHECK(c && !strstr(c, "include"));
    free(c);
}

TEST(conf_is_deterministic)
{
    char *a = render_conf(failed, "{\"profile\":\"testing\"}", facts(2 * GB_MB, 2));
    char *b = render_conf(failed, "{\"profile\":\"testing\"}", facts(2 * GB_MB, 2));
    CHECK_STR(a, b);
    free(a);
    free(b);
}

/* ---- pg_hba.conf --------------------------------------------------------------------- */

#define MAX_RULES 32

/* The rule lines of a pg_hba.conf (comments and blanks skipped), each split on blanks. */
struct hba_lines {
    int n;
    char fields[MAX_RULES][6][32];
    int nfields[MAX_RULES];
};

static void split_hba(int *failed, const char *text, struct hba_lines *out)
{
    memset(out, 0, sizeof *out);
    char *copy = strdup(text ? text : ""), *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        CHECK(out->n < MAX_RULES);
        if (out->n >= MAX_RULES)
            break;
        char *fsave = NULL;
        for (char *f = strtok_r(line, " ", &fsave); f; f = strtok_r(NULL, " ", &fsave)) {
            CHECK(out->nfields[out->n] < 6 && strlen(f) < 32);
            if (out->nfields[out->n] < 6)
                snprintf(out->fields[out->n][out->nfields[out->n]++], 32, "%s", f);
        }
        out->n++;
    }
    free(copy);
}

/* The index of the rule line equal (field by field) to want, or -1. */
static int find_rule(const struct hba_lines *h, const char *want)
{
    struct hba_lines w;
    int dummy = 0;
    split_hba(&dummy, want, &w);
    for (int i = 0; i < h->n; i++) {
        bool same = h->nfields[i] == w.nfields[0];
        for (int f = 0; same && f < h->nfields[i]; f++)
            same = strcmp(h->fields[i][f], w.fields[0][f]) == 0;
        if (same)
            return i;
    }
    return -1;
}

/* Render pg_hba.conf; NULL (counted as a failure) when refused. */
static char *render_hba_peers(int *failed, const char *json, bool tls, const char *const *peers,
                              size_t n_peers)
{
    struct pg_settings s;
    char *out = NULL, *err = NULL;
    settings_from(failed, json, &s);
    CHECK(pgconf_render_hba(&s, tls, peers, n_peers, NULL, 0, &out, &err) == 0);
    if (err)
        fprintf(stderr, "  refused: %s\n", err);
    CHECK(err == NULL);
    free(err);
    return out;
}

static char *render_hba(int *failed, const char *json)
{
    return render_hba_peers(failed, json, false, NULL, 0);
}

static const char *const default_rules[] = {
    "local all postgres peer map=pg-agent",
    "local replication postgres peer map=pg-agent",
    "local all monitoring peer map=pg-exporter",
    "local all all scram-sha-256",
    "host all postgres all reject",
    "host all operator 127.0.0.1/32 scram-sha-256",
    "host all operator ::1/128 scram-sha-256",
    "host all operator all reject",
    "host replication replication 127.0.0.1/32 scram-sha-256",
    "host replication replication ::1/128 scram-sha-256",
    "host replication all all reject",
    "host all rewind 127.0.0.1/32 scram-sha-256",
    "host all rewind ::1/128 scram-sha-256",
    "host all monitoring all scram-sha-256",
    "host all all all reject",
};
#define N_DEFAULT_RULES ((int)(sizeof default_rules / sizeof *default_rules))

/* Where rule is in default_rules (-1: not there). */
static int default_index(const char *rule)
{
    for (int i = 0; i < N_DEFAULT_RULES; i++)
        if (strcmp(default_rules[i], rule) == 0)
            return i;
    return -1;
}

/* The index of the first peer rule: right after the loopback replication rules. */
#define FIRST_PEER_RULE (default_index("host replication replication ::1/128 scram-sha-256") + 1)

TEST(hba_rules_in_order)
{
    char *text = render_hba(failed, "{}");
    struct hba_lines h;
    split_hba(failed, text, &h);
    CHECK(h.n == N_DEFAULT_RULES);
    for (int i = 0; i < N_DEFAULT_RULES; i++) {
        int at = find_rule(&h, default_rules[i]);
        if (at != i) {
            fprintf(stderr, "  rule \"%s\" at %d, want %d\n", default_rules[i], at, i);
            (*failed)++;
        }
    }
    int reject = find_rule(&h, "host all operator all reject");
    CHECK(reject > find_rule(&h, "host all operator 127.0.0.1/32 scram-sha-256"));
    CHECK(reject > find_rule(&h, "host all operator ::1/128 scram-sha-256"));
    CHECK(reject < find_rule(&h, "host all all all reject"));
    CHECK(find_rule(&h, "host all all all reject") == h.n - 1);
    CHECK(find_rule(&h, "host all operator all scram-sha-256") == -1);
    CHECK(text && strncmp(text, "# pg_hba.conf: generated by pg-agent", 36) == 0);
    free(text);
}

TEST(hba_superuser_remote_access)
{
    char *text = render_hba(failed, "{\"superuser-remote-access\":true}");
    struct hba_lines h;
    split_hba(failed, text, &h);
    CHECK(h.n == N_DEFAULT_RULES);
    CHECK(find_rule(&h, "host all operator all reject") == -1);
    /* the same place as the reject it replaces */
    CHECK(find_rule(&h, "host all operator all scram-sha-256") ==
          default_index("host all operator all reject"));
    /* postgres stays local-only */
    CHECK(find_rule(&h, "host all postgres all reject") ==
          default_index("host all postgres all reject"));
    CHECK(find_rule(&h, "host all all all reject") == h.n - 1);
    free(text);
}

/* Every rule's method is peer (local), scram-sha-256, reject or cert (hostssl, with the
 * peers' map); no weak method appears anywhere. */
static void check_methods(int *failed, const char *text)
{
    struct hba_lines h;
    split_hba(failed, text, &h);
    for (int i = 0; i < h.n; i++) {
        bool local = strcmp(h.fields[i][0], "local") == 0;
        bool hostssl = strcmp(h.fields[i][0], "hostssl") == 0;
        int m = local ? 3 : 4; /* local has no address column */
        CHECK(h.nfields[i] == m + 1 || h.nfields[i] == m + 2);
        const char *method = h.fields[i][m];
        bool cert = strcmp(method, "cert") == 0;
        CHECK(strcmp(method, "scram-sha-256") == 0 || strcmp(method, "reject") == 0 ||
              (local && strcmp(method, "peer") == 0) || (hostssl && cert));
        if (cert)
            CHECK(h.nfields[i] == m + 2 && strcmp(h.fields[i][m + 1], "map=pg-agent-peers") == 0);
    }
    CHECK(text && !strstr(text, "md5") && !strstr(text, "trust") && !strstr(text, "password") &&
          !strstr(text, "ident "));
}

TEST(hba_methods)
{
    static const char *const peers[] = {"10.0.0.1", "fd00::2"};
    char *a = render_hba(failed, "{}");
    char *b = render_hba(failed, "{\"superuser-remote-access\":true}");
    char *d = render_hba_peers(failed, "{}", true, peers, 2);
    check_methods(failed, a);
    check_methods(failed, b);
    check_methods(failed, d);
    char *c = render_hba(failed, "{}");
    CHECK_STR(a, c); /* deterministic */
    char *e = render_hba_peers(failed, "{}", true, peers, 2);
    CHECK_STR(d, e);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}

/* ---- pg_hba.conf: the peers' certificate rules -------------------------------------- */

/* How many lines of text start with prefix. */
static int count_prefix(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *p = text; p && *p;) {
        n += strncmp(p, prefix, strlen(prefix)) == 0;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return n;
}

TEST(hba_peer_rules_with_tls)
{
    static const char *const peers[] = {"10.0.0.1", "fd00::2", "192.168.1.20"};
    char *text = render_hba_peers(failed, "{}", true, peers, 3);
    struct hba_lines h;
    split_hba(failed, text, &h);
    CHECK(h.n == N_DEFAULT_RULES + 6);
    /* right after the loopback replication rules, before the replication reject */
    static const char *const want[] = {
        "hostssl replication replication 10.0.0.1/32 cert map=pg-agent-peers",
        "hostssl postgres rewind 10.0.0.1/32 cert map=pg-agent-peers",
        "hostssl replication replication fd00::2/128 cert map=pg-agent-peers",
        "hostssl postgres rewind fd00::2/128 cert map=pg-agent-peers",
        "hostssl replication replication 192.168.1.20/32 cert map=pg-agent-peers",
        "hostssl postgres rewind 192.168.1.20/32 cert map=pg-agent-peers",
    };
    int first = find_rule(&h, "host replication replication ::1/128 scram-sha-256") + 1;
    CHECK(first == FIRST_PEER_RULE && first > 0);
    for (int i = 0; i < 6; i++) {
        int at = find_rule(&h, want[i]);
        if (at != first + i) {
            fprintf(stderr, "  rule \"%s\" at %d, want %d\n", want[i], at, first + i);
            (*failed)++;
        }
    }
    CHECK(find_rule(&h, "host replication all all reject") == first + 6);
    /* every default rule is still there, in the same order */
    int prev = -1;
    for (int i = 0; i < N_DEFAULT_RULES; i++) {
        int at = find_rule(&h, default_rules[i]);
        CHECK(at > prev);
        prev = at;
    }
    CHECK(find_rule(&h, "host all all all reject") == h.n - 1);
    free(text);

    /* with superuser-remote-access too */
    text = render_hba_peers(failed, "{\"superuser-remote-access\":true}", true, peers, 1);
    split_hba(failed, text, &h);
    CHECK(h.n == N_DEFAULT_RULES + 2);
    CHECK(find_rule(&h, "host all operator all scram-sha-256") ==
          default_index("host all operator all reject"));
    CHECK(find_rule(&h, "hostssl postgres rewind 10.0.0.1/32 cert map=pg-agent-peers") ==
          FIRST_PEER_RULE + 1);
    free(text);
}

/* tls-only: a plain TCP connection is rejected first, every other TCP rule is hostssl, and
 * the order and the rules themselves are otherwise unchanged */
TEST(hba_tls_only)
{
    static const char *const peers[] = {"10.0.0.1"};
    char *plain = render_hba_peers(failed, "{}", true, peers, 1);
    char *text = render_hba_peers(failed, "{\"tls-only\":true}", true, peers, 1);
    struct hba_lines p, h;
    split_hba(failed, plain, &p);
    split_hba(failed, text, &h);
    CHECK(h.n == p.n + 1);
    int nossl = find_rule(&h, "hostnossl all all all reject");
    CHECK(nossl >= 0);
    for (int i = 0; i < nossl && i < h.n; i++)
        CHECK_STR(h.fields[i][0], "local"); /* only socket rules before it */
    for (int i = nossl + 1, j = nossl; i < h.n && j < p.n; i++, j++) {
        bool was_host = strcmp(p.fields[j][0], "host") == 0;
        CHECK_STR(h.fields[i][0], was_host ? "hostssl" : p.fields[j][0]);
        CHECK(h.nfields[i] == p.nfields[j]);
        for (int f = 1; f < h.nfields[i] && f < p.nfields[j]; f++)
            CHECK_STR(h.fields[i][f], p.fields[j][f]);
    }
    free(plain);
    free(text);
}

TEST(conf_tls_min_version)
{
    struct pg_settings s;
    char *out = NULL, *err = NULL;
    settings_from(failed, "{\"tls-min-version\":\"TLSv1.3\"}", &s);
    struct host_facts h = tls_facts();
    CHECK(pgconf_render_conf(&s, &h, &out, &err) == 0);
    has_line(failed, out, "ssl_min_protocol_version = 'TLSv1.3'");
    free(out);
    free(err);
}

TEST(hba_peer_rules_only_with_tls)
{
    static const char *const peers[] = {"10.0.0.1", "fd00::2"};
    char *plain = render_hba(failed, "{}");
    /* without TLS the peers get nothing: the file is the default one */
    char *no_tls = render_hba_peers(failed, "{}", false, peers, 2);
    CHECK_STR(no_tls, plain);
    CHECK(no_tls && !strstr(no_tls, "hostssl") && !strstr(no_tls, "cert"));
    /* TLS without peers: nothing to add either */
    char *no_peers = render_hba_peers(failed, "{}", true, NULL, 0);
    CHECK_STR(no_peers, plain);
    free(plain);
    free(no_tls);
    free(no_peers);
}

TEST(hba_peer_address_masks)
{
    const struct {
        const char *in, *rule;
    } cases[] = {
        {"10.1.2.3", "hostssl replication replication 10.1.2.3/32 cert map=pg-agent-peers"},
        {"0.0.0.0", "hostssl replication replication 0.0.0.0/32 cert map=pg-agent-peers"},
        {"::1", "hostssl replication replication ::1/128 cert map=pg-agent-peers"},
        {"fd00::2", "hostssl replication replication fd00::2/128 cert map=pg-agent-peers"},
        {"2001:db8:0:0:0:0:0:1",
         "hostssl replication replication 2001:db8:0:0:0:0:0:1/128 cert map=pg-agent-peers"},
        {"::ffff:10.0.0.1",
         "hostssl replication replication ::ffff:10.0.0.1/128 cert map=pg-agent-peers"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = render_hba_peers(failed, "{}", true, &cases[i].in, 1);
        struct hba_lines h;
        split_hba(failed, text, &h);
        if (find_rule(&h, cases[i].rule) != FIRST_PEER_RULE) {
            fprintf(stderr, "  %s: no rule \"%s\"\n", cases[i].in, cases[i].rule);
            (*failed)++;
        }
        free(text);
    }
}

TEST(hba_peer_address_refused)
{
    struct pg_settings s;
    settings_from(failed, "{}", &s);
    const char *bad[] = {"",
                         "db-0.example",
                         "postgresql-0",
                         "10.0.0.1/32",
                         "10.0.0.256",
                         "10.0.0",
                         " 10.0.0.1",
                         "10.0.0.1 ",
                         "10.0.0.1\nhost all all all trust",
                         "fe80::1%eth0",
                         "fd00::2/64",
                         "[fd00::2]",
                         "all",
                         "samenet",
                         NULL};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        /* the bad one second: its index is in the message */
        const char *peers[] = {"10.0.0.1", bad[i]};
        char *out = NULL, *err = NULL;
        CHECK(pgconf_render_hba(&s, true, peers, 2, NULL, 0, &out, &err) == -EINVAL);
        CHECK(out == NULL);
        if (!err || strcmp(err, "peer address 1 is not an IP address") != 0) {
            fprintf(stderr, "  \"%s\": %s\n", bad[i] ? bad[i] : "(null)", err ? err : "(null)");
            (*failed)++;
        }
        free(err);
    }
}

TEST(hba_peer_count_limit)
{
    struct pg_settings s;
    settings_from(failed, "{}", &s);
    static char addrs[65][32];
    const char *peers[65];
    for (int i = 0; i < 65; i++) {
        snprintf(addrs[i], sizeof addrs[i], "10.0.1.%d", i + 1);
        peers[i] = addrs[i];
    }
    char *out = NULL, *err = NULL;
    CHECK(pgconf_render_hba(&s, true, peers, 64, NULL, 0, &out, &err) == 0);
    CHECK(err == NULL);
    CHECK(count_prefix(out, "hostssl replication  replication  10.0.1.") == 64);
    CHECK(count_prefix(out, "hostssl postgres     rewind       10.0.1.") == 64);
    CHECK(out && strstr(out, " 10.0.1.64/32 ") && !strstr(out, "10.0.1.65"));
    free(out);
    out = NULL;
    CHECK(pgconf_render_hba(&s, true, peers, 65, NULL, 0, &out, &err) == -EINVAL);
    CHECK(out == NULL);
    CHECK_STR(err, "more than 64 peer addresses");
    free(err);
}

TEST(hba_format_refuses)
{
    const struct pg_hba_rule bad[] = {
        {"host", "all", "all", "all", "md5", NULL},
        {"host", "all", "all", "all", "trust", NULL},
        {"host", "all", "all", "all", "password", NULL},
        {"host", "all", "all", "all", "peer", NULL},
        {"local", "all", "all", "all", "peer", NULL},
        {"host", "all", "all", NULL, "reject", NULL},
        {"hostnossl", "all", "all", "all", "scram-sha-256", NULL},
        {"hostgssenc", "all", "all", "all", "scram-sha-256", NULL},
        {"HOST", "all", "all", "all", "reject", NULL},
        {"hostssl", "all", "all", NULL, "cert", NULL},
        {"hostssl", "all", "all", "all", "peer", NULL},
        {"hostssl", "all", "all", "all", "trust", NULL},
        {"hostssl", "all", "all", "all", "cert", "map=x y"},
        {NULL, "all", "all", "all", "reject", NULL},
        {"host", "all", "all", "all", NULL, NULL},
        {"host", "all", "a b", "all", "reject", NULL},
        {"host", "", "all", "all", "reject", NULL},
        {"host", "all", NULL, "all", "reject", NULL},
        {"host", "all", "all", "all", "reject", "map=x\nhost"},
        {"host", "all", "\"all\"", "all", "reject", NULL},
        {"host", "all", "x#y", "all", "reject", NULL},
        {"host", "db1,db2", "all", "all", "reject", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const struct pg_hba_rule rules[] = {{"local", "all", "postgres", NULL, "peer", NULL},
                                            bad[i]};
        char *out = NULL, *err = NULL;
        CHECK(pgconf_format_hba(rules, 2, &out, &err) == -EINVAL);
        CHECK(out == NULL);
        CHECK(err && strstr(err, "pg_hba rule 1:"));
        free(err);
    }
    const struct pg_hba_rule good[] = {
        {"host", "all", "app", "10.0.0.0/8", "scram-sha-256", NULL},
        {"hostssl", "all", "app", "10.0.0.0/8", "scram-sha-256", NULL},
        {"hostssl", "replication", "replication", "10.0.0.1/32", "cert", "map=pg-agent-peers"},
        {"hostssl", "all", "all", "all", "reject", NULL},
    };
    char *out = NULL, *err = NULL;
    CHECK(pgconf_format_hba(good, 4, &out, &err) == 0);
    CHECK(err == NULL);
    CHECK(out && strstr(out, "\nhost    all          app          10.0.0.0/8     scram-sha-256\n"));
    CHECK(out && strstr(out, "\nhostssl all          app          10.0.0.0/8     scram-sha-256\n"));
    CHECK(out && strstr(out, "\nhostssl replication  replication  10.0.0.1/32    cert "
                             "map=pg-agent-peers\n"));
    free(out);
}

/* cert is a certificate method: PostgreSQL only accepts it on hostssl lines. */
TEST(hba_cert_only_with_hostssl)
{
    const struct pg_hba_rule bad[] = {
        {"host", "replication", "replication", "10.0.0.1/32", "cert", "map=pg-agent-peers"},
        {"host", "all", "all", "all", "cert", NULL},
        {"local", "all", "all", NULL, "cert", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = NULL, *err = NULL;
        CHECK(pgconf_format_hba(&bad[i], 1, &out, &err) == -EINVAL);
        CHECK(out == NULL);
        CHECK_STR(err, "pg_hba rule 0: method is not peer (local only), scram-sha-256, cert "
                       "(hostssl only), md5 (hostssl and PgBouncer's auth user only) or "
                       "reject (the only one for hostnossl)");
        free(err);
    }
    const struct pg_hba_rule ok = {"hostssl", "all", "all", "all", "cert", NULL};
    char *out = NULL, *err = NULL;
    CHECK(pgconf_format_hba(&ok, 1, &out, &err) == 0);
    CHECK(out && strstr(out, "\nhostssl all          all          all            cert\n"));
    free(out);
    free(err);
    /* an unknown type is named as such */
    const struct pg_hba_rule typo = {"hostsl", "all", "all", "all", "cert", NULL};
    out = err = NULL;
    CHECK(pgconf_format_hba(&typo, 1, &out, &err) == -EINVAL);
    CHECK_STR(err, "pg_hba rule 0: type is not local, host, hostssl or hostnossl");
    free(err);
}

/* ---- pg_ident.conf --------------------------------------------------------------------- */

TEST(ident_map)
{
    char *text = NULL, *err = NULL;
    CHECK(pgconf_render_ident("postgresql", &text, &err) == 0);
    CHECK(err == NULL);
    struct hba_lines h;
    split_hba(failed, text, &h); /* same shape: blank-separated fields, # comments */
    CHECK(h.n == 5);
    CHECK(find_rule(&h, "pg-agent root postgres") == 0);
    CHECK(find_rule(&h, "pg-agent postgres postgres") == 1);
    /* the metrics exporter's OS user as monitoring, and only that */
    CHECK(find_rule(&h, "pg-exporter prometheus monitoring") == 2);
    /* the peers' certificates (CN <app>-<n>) as replication and rewind, nothing else */
    CHECK(find_rule(&h, "pg-agent-peers /^postgresql-[0-9]+$ replication") == 3);
    CHECK(find_rule(&h, "pg-agent-peers /^postgresql-[0-9]+$ rewind") == 4);
    CHECK(text && strncmp(text, "# pg_ident.conf: generated by pg-agent", 38) == 0);
    CHECK(text && text[strlen(text) - 1] == '\n');
    /* deterministic, and per application */
    char *again = NULL;
    CHECK(pgconf_render_ident("postgresql", &again, &err) == 0);
    CHECK_STR(text, again);
    free(again);
    free(text);
    text = NULL;
    CHECK(pgconf_render_ident("pg-2", &text, &err) == 0);
    split_hba(failed, text, &h);
    CHECK(find_rule(&h, "pg-agent-peers /^pg-2-[0-9]+$ replication") == 3);
    CHECK(find_rule(&h, "pg-agent-peers /^pg-2-[0-9]+$ rewind") == 4);
    CHECK(text && !strstr(text, "postgresql-"));
    free(text);
}

TEST(ident_app_names)
{
    char longest[64], too_long[65];
    memset(longest, 'a', 63);
    longest[63] = '\0';
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    const char *good[] = {"a", "0", "postgresql", "pg-k8s-2", longest};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char *text = NULL, *err = NULL;
        CHECK(pgconf_render_ident(good[i], &text, &err) == 0);
        CHECK(text != NULL && err == NULL);
        free(text);
        free(err);
    }
    /* anything that could break out of the regex or the line: refused */
    const char *bad[] = {NULL,     "",        too_long,   "PostgreSQL", "pg_sql", "pg.sql",
                         "pg sql", "pg\tsql", "pg\nroot", "a/b",        "a$",     "(a|b)",
                         ".*",     "a+",      "a#b",      "\"a\"",      "pg-é",   "a\\d"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *text = NULL, *err = NULL;
        CHECK(pgconf_render_ident(bad[i], &text, &err) == -EINVAL);
        CHECK(text == NULL);
        if (!err || strcmp(err, "the application name cannot be put in pg_ident.conf") != 0) {
            fprintf(stderr, "  \"%s\": %s\n", bad[i] ? bad[i] : "(null)", err ? err : "(null)");
            (*failed)++;
        }
        free(err);
    }
}

CHECK_MAIN("pgconf", CASE(quote), CASE(units), CASE(production_1gb), CASE(production_16gb),
           CASE(production_limit_on_1gb_and_large_ram), CASE(testing_profile),
           CASE(explicit_options_override_the_profile), CASE(shared_buffers_limit),
           CASE(bad_host_facts), CASE(conf_defaults_production_16gb), CASE(conf_from_options),
           CASE(conf_tls_on), CASE(conf_tls_off_unless_all_three_files), CASE(conf_include_last),
           CASE(conf_is_deterministic), CASE(hba_rules_in_order), CASE(hba_superuser_remote_access),
           CASE(hba_methods), CASE(hba_peer_rules_with_tls), CASE(hba_peer_rules_only_with_tls),
           CASE(hba_peer_address_masks), CASE(hba_peer_address_refused), CASE(hba_peer_count_limit),
           CASE(hba_format_refuses), CASE(hba_cert_only_with_hostssl), CASE(ident_map),
           CASE(ident_app_names), CASE(hba_tls_only), CASE(conf_tls_min_version))
