/* Unit tests for the pure parts of agent/peers.c: member names from unit names and the
 * address check applied to relation data, the fingerprint lists units publish. */
#include "check.h"

#include "peers.h"

#include <stdio.h>
#include <string.h>

TEST(member_names)
{
    char buf[ETCD_NAME_MAX];
    CHECK(peers_member_name("postgresql/0", buf, sizeof buf) == 0);
    CHECK_STR(buf, "postgresql-0");
    CHECK(peers_member_name("pg-main/12", buf, sizeof buf) == 0);
    CHECK_STR(buf, "pg-main-12");
    /* not a valid etcd member name once converted */
    CHECK(peers_member_name("Postgres/0", buf, sizeof buf) < 0);
    CHECK(peers_member_name("pg_x/0", buf, sizeof buf) < 0);
    CHECK(peers_member_name("", buf, sizeof buf) < 0);
    CHECK(peers_member_name(NULL, buf, sizeof buf) < 0);
    char small[8];
    CHECK(peers_member_name("postgresql/0", small, sizeof small) < 0);
    char longname[100];
    memset(longname, 'a', sizeof longname - 3);
    memcpy(longname + sizeof longname - 3, "/1", 3);
    CHECK(peers_member_name(longname, buf, sizeof buf) < 0);
}

TEST(addresses)
{
    CHECK(peers_address_valid("10.0.0.1"));
    CHECK(peers_address_valid("fd00::1"));
    CHECK(peers_address_valid("::ffff:10.1.2.3"));
    CHECK(!peers_address_valid("10.0.0.256"));
    CHECK(!peers_address_valid("host.example"));
    CHECK(!peers_address_valid("10.0.0.1/24"));
    CHECK(!peers_address_valid("10.0.0.1 "));
    CHECK(!peers_address_valid(""));
    CHECK(!peers_address_valid("fe80::1%eth0"));
    CHECK(!peers_address_valid(NULL));
}

TEST(trust_lists)
{
    char fp[65], two[140], five[400];
    memset(fp, 'a', 64);
    fp[64] = '\0';
    CHECK(peers_trust_valid(""));
    CHECK(peers_trust_valid(fp));
    snprintf(two, sizeof two, "%s %s", fp, fp);
    CHECK(peers_trust_valid(two));
    snprintf(five, sizeof five, "%s %s %s %s %s", fp, fp, fp, fp, fp);
    CHECK(!peers_trust_valid(five)); /* more than four */
    two[3] = 'A';                    /* uppercase */
    CHECK(!peers_trust_valid(two));
    fp[63] = '\0'; /* 63 digits */
    CHECK(!peers_trust_valid(fp));
    CHECK(!peers_trust_valid("zz"));
    CHECK(!peers_trust_valid("-----BEGIN CERTIFICATE-----"));
    CHECK(!peers_trust_valid(NULL));
}

int main(void)
{
    static const struct check_case cases[] = {
        {"member_names", member_names},
        {"addresses", addresses},
        {"trust_lists", trust_lists},
    };
    return check_run("peers", cases, sizeof cases / sizeof cases[0]);
}
