/* Unit tests for agent/etcd_member.c: the member list from peer data (validated), and
 * the etcd command line built from a spec. */
#include "check.h"

#include "etcd_member.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool has_arg(const struct etcd_argv *a, const char *want)
{
    for (size_t i = 0; a->argv[i]; i++)
        if (strcmp(a->argv[i], want) == 0)
            return true;
    return false;
}

TEST(names)
{
    CHECK(etcd_name_valid("postgresql-0"));
    CHECK(etcd_name_valid("a"));
    CHECK(!etcd_name_valid(""));
    CHECK(!etcd_name_valid(NULL));
    CHECK(!etcd_name_valid("-a"));
    CHECK(!etcd_name_valid("a-"));
    CHECK(!etcd_name_valid("Postgresql-0"));
    CHECK(!etcd_name_valid("postgresql/0"));
    CHECK(!etcd_name_valid("a=b"));
}

TEST(cluster_parse_and_format)
{
    struct etcd_cluster c;
    char *err = NULL;
    const char *text = "postgresql-0=https://10.1.2.10:2380,postgresql-1=https://[fd00::11]:2380";
    CHECK(etcd_cluster_parse(text, &c, &err) == 0);
    CHECK(c.n == 2);
    CHECK_STR(c.members[1].name, "postgresql-1");
    CHECK_STR(c.members[1].peer_url, "https://[fd00::11]:2380");
    char buf[512];
    CHECK(etcd_cluster_format(&c, buf, sizeof buf) == 0);
    CHECK_STR(buf, text);
    CHECK(etcd_cluster_format(&c, buf, 10) == -ENOSPC);
    free(err);
}

TEST(cluster_refusals)
{
    static const char *const bad[] = {
        "",
        "postgresql-0",
        "postgresql-0=http://10.1.2.10:2380",
        "postgresql-0=https://10.1.2.10:2379",
        "postgresql-0=https://host.example:2380",
        "postgresql-0=https://10.1.2.300:2380",
        "postgresql-0=https://[zz::1]:2380",
        "Bad=https://10.1.2.10:2380",
        "a=https://10.1.2.10:2380,a=https://10.1.2.11:2380",
        "a=https://10.1.2.10:2380,b=https://10.1.2.10:2380",
        "a=https://10.1.2.10:2380,",
        "a=https://10.1.2.10:2380;rm -rf /",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct etcd_cluster c;
        char *err = NULL;
        CHECK(etcd_cluster_parse(bad[i], &c, &err) == -EINVAL);
        CHECK(err != NULL);
        free(err);
    }
    /* too many members */
    char many[4096] = "";
    for (int i = 0; i <= ETCD_MAX_MEMBERS; i++) {
        char one[64];
        snprintf(one, sizeof one, "%sm%d=https://10.0.0.%d:2380", i ? "," : "", i, i + 1);
        strcat(many, one);
    }
    struct etcd_cluster c;
    char *err = NULL;
    CHECK(etcd_cluster_parse(many, &c, &err) == -EINVAL);
    free(err);
}

static struct etcd_spec spec(const struct etcd_cluster *c)
{
    return (struct etcd_spec){.name = "postgresql-1", .ip = "10.1.2.11", .scope = "postgresql",
                              .token = "0123-uuid-postgresql", .existing = true, .initial = c,
                              .cert = "/etc/etcd/peer.pem", .key = "/etc/etcd/peer.key",
                              .ca = "/etc/etcd/ca.pem"};
}

TEST(argv_for_a_joining_member)
{
    struct etcd_cluster c;
    char *err = NULL;
    CHECK(etcd_cluster_parse("postgresql-0=https://10.1.2.10:2380,"
                             "postgresql-1=https://10.1.2.11:2380", &c, &err) == 0);
    struct etcd_spec s = spec(&c);
    struct etcd_argv a;
    CHECK(etcd_argv_build(&s, &a, &err) == 0);
    CHECK_STR(a.argv[0], ETCD_BIN);
    CHECK(has_arg(&a, "--name=postgresql-1"));
    CHECK(has_arg(&a, "--data-dir=/var/lib/etcd/postgresql"));
    CHECK(has_arg(&a, "--listen-peer-urls=https://10.1.2.11:2380"));
    CHECK(has_arg(&a, "--listen-client-urls=https://10.1.2.11:2379,https://127.0.0.1:2379"));
    CHECK(has_arg(&a, "--initial-cluster-state=existing"));
    CHECK(has_arg(&a, "--initial-cluster=postgresql-0=https://10.1.2.10:2380,"
                      "postgresql-1=https://10.1.2.11:2380"));
    CHECK(has_arg(&a, "--client-cert-auth=true"));
    CHECK(has_arg(&a, "--peer-client-cert-auth=true"));
    CHECK(has_arg(&a, "--trusted-ca-file=/etc/etcd/ca.pem"));
    s.existing = false;
    s.heartbeat_ms = 50;
    s.election_ms = 500;
    CHECK(etcd_argv_build(&s, &a, &err) == 0);
    CHECK(has_arg(&a, "--initial-cluster-state=new"));
    CHECK(has_arg(&a, "--heartbeat-interval=50"));
    CHECK(has_arg(&a, "--election-timeout=500"));
    free(err);
}

TEST(argv_ipv6)
{
    struct etcd_cluster c;
    char *err = NULL;
    CHECK(etcd_cluster_parse("postgresql-1=https://[fd00::11]:2380", &c, &err) == 0);
    struct etcd_spec s = spec(&c);
    s.ip = "fd00::11";
    struct etcd_argv a;
    CHECK(etcd_argv_build(&s, &a, &err) == 0);
    CHECK(has_arg(&a, "--advertise-client-urls=https://[fd00::11]:2379"));
    free(err);
}

TEST(argv_refusals)
{
    struct etcd_cluster c;
    char *err = NULL;
    CHECK(etcd_cluster_parse("postgresql-0=https://10.1.2.10:2380", &c, &err) == 0);
    struct etcd_argv a;
    struct etcd_spec s = spec(&c);
    CHECK(etcd_argv_build(&s, &a, &err) == -EINVAL); /* not in the initial cluster */
    CHECK(err && strstr(err, "not in the initial cluster"));
    CHECK(etcd_cluster_parse("postgresql-1=https://10.1.2.99:2380", &c, &err) == 0);
    CHECK(etcd_argv_build(&s, &a, &err) == -EINVAL); /* listed with another address */
    CHECK(etcd_cluster_parse("postgresql-1=https://10.1.2.11:2380", &c, &err) == 0);
    CHECK(etcd_argv_build(&s, &a, &err) == 0);
    s.ip = "10.1.2";
    CHECK(etcd_argv_build(&s, &a, &err) == -EINVAL);
    s = spec(&c);
    s.token = "has space";
    CHECK(etcd_argv_build(&s, &a, &err) == -EINVAL);
    s = spec(&c);
    s.cert = "relative.pem";
    CHECK(etcd_argv_build(&s, &a, &err) == -EINVAL);
    s = spec(&c);
    s.scope = "Bad Scope";
    CHECK(etcd_argv_build(&s, &a, &err) == -EINVAL);
    s = spec(NULL);
    CHECK(etcd_argv_build(&s, &a, &err) == -EINVAL);
    free(err);
}

TEST(not_running_without_pid_file)
{
    CHECK(etcd_running("/nonexistent/etcd.pid") == 0);
}

int main(void)
{
    static const struct check_case cases[] = {
        {"names", names},
        {"cluster_parse_and_format", cluster_parse_and_format},
        {"cluster_refusals", cluster_refusals},
        {"argv_for_a_joining_member", argv_for_a_joining_member},
        {"argv_ipv6", argv_ipv6},
        {"argv_refusals", argv_refusals},
        {"not_running_without_pid_file", not_running_without_pid_file},
    };
    return check_run("etcd_member", cases, sizeof cases / sizeof cases[0]);
}
