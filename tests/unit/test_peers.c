/* Unit tests for the pure parts of agent/peers.c: member names from unit names and the
 * address check applied to relation data. */
#include "check.h"

#include "peers.h"

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

int main(void)
{
    static const struct check_case cases[] = {
        {"member_names", member_names},
        {"addresses", addresses},
    };
    return check_run("peers", cases, sizeof cases / sizeof cases[0]);
}
