"""The charm as a cluster, driven only through `juju`: 3 units form one primary and two
streaming (synchronous) replicas over etcd; a write on the primary is read on every
replica; promote-to-primary moves the primary; Debian's patronictl reads the same cluster
as cluster-status; scaling 3 -> 5 -> 2 keeps every row, the primary's own unit included."""

import json
import time

from conftest import REPO, all_agents_idle, any_error

APP = "postgresql"
CHARM = REPO / "build" / "postgresql.charm"
ROLES = ("Primary", "Sync standby", "Replica")


def units(st):
    return st["applications"].get(APP, {}).get("units", {})


def cluster_settled(n, replica_role="Sync standby"):
    """n units active: exactly one Primary, the others replica_role; agents idle."""
    def ready(st):
        us = units(st)
        if len(us) != n or not all_agents_idle(st, APP):
            return False
        msgs = [u["workload-status"].get("message") for u in us.values()]
        states = {u["workload-status"].get("current") for u in us.values()}
        return (states == {"active"} and msgs.count("Primary") == 1 and
                msgs.count(replica_role) == n - 1)
    return ready


def primary_in(st):
    """The unit whose status says Primary in this status, or None."""
    for name, u in units(st).items():
        if u["workload-status"].get("message") == "Primary":
            return name
    return None


def primary_unit(model):
    name = primary_in(model.status())
    assert name, "no primary in status"
    return name


def settled_on(target, n=3):
    """cluster_settled(n) with target as the Primary, judged on one status (a second
    status read may fall in a switchover's gap, where no unit says Primary yet)."""
    return lambda st: cluster_settled(n)(st) and primary_in(st) == target


def sql(model, unit, query):
    r = model.exec(unit, f"runuser -u postgres -- psql -XAtc \"{query}\"")
    assert r.rc == 0, (unit, r.stderr)
    return r.stdout.strip()


def cluster_status(model, unit):
    r = model.run(unit, "cluster-status")
    assert r.status == "completed", r.task
    return json.loads(r.results["members"]), r.results["primary"]


def wait_rows(model, unit, table, want, timeout=30):
    def same():
        return sql(model, unit, f"SELECT count(*) FROM {table}") == str(want)
    model_poll(same, timeout, f"{want} rows of {table} on {unit}")


def model_poll(fn, timeout, what):
    from conftest import poll
    poll(fn, timeout, what=what)


def test_three_units_one_primary_two_streaming_replicas(model):
    assert CHARM.exists(), "run `make build` first"
    model.juju("deploy", str(CHARM), "-n", "3", "--config", "profile=testing", timeout=180)
    model.wait(cluster_settled(3), error=any_error, timeout=420)
    primary = primary_unit(model)
    rows = sql(model, primary, "SELECT application_name || ':' || state || ':' || sync_state "
                               "FROM pg_stat_replication ORDER BY 1").splitlines()
    assert len(rows) == 2, rows
    assert all(r.split(":")[1] == "streaming" for r in rows), rows
    assert all(r.split(":")[2] in ("sync", "quorum") for r in rows), rows
    # replication runs over TLS with the peers' certificates (no password)
    tls = sql(model, primary, "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s "
                              "USING (pid) WHERE s.ssl AND s.client_dn LIKE '%postgresql-%'")
    assert tls == "2", tls


def test_write_on_primary_is_read_on_both_replicas(model):
    primary = primary_unit(model)
    sql(model, primary, "CREATE TABLE ha_rows(id int PRIMARY KEY); "
                        "INSERT INTO ha_rows SELECT generate_series(1, 100)")
    for unit in units(model.status()):
        if unit != primary:
            # synchronous commit: the rows are there as soon as the INSERT returned
            wait_rows(model, unit, "ha_rows", 100, timeout=10)
            assert sql(model, unit, "SELECT pg_is_in_recovery()") == "t"


def test_cluster_status_and_patronictl_agree(model):
    members, primary = cluster_status(model, "postgresql/1")
    assert primary == primary_unit(model)
    leader = [m["name"] for m in members if m["role"] == "leader"]
    assert leader == [primary.replace("/", "-")], members
    r = model.exec("postgresql/2",
                   "patronictl -c /var/lib/pg-agent/patronictl.yaml list -f json")
    assert r.rc == 0, r.stderr
    listed = json.loads(r.stdout)
    assert sorted(m["Member"] for m in listed) == sorted(m["name"] for m in members)
    assert [m["Member"] for m in listed if m["Role"] == "Leader"] == leader
    for m in listed:
        assert m["TL"] == next(x["timeline"] for x in members if x["name"] == m["Member"])


def test_promote_to_primary_moves_the_primary(model):
    old = primary_unit(model)
    target = next(u for u in units(model.status()) if u != old)
    r = model.run(target, "promote-to-primary", "scope=unit", timeout=120)
    assert r.status == "completed", r.task
    model.wait(settled_on(target), error=any_error, timeout=120)
    sql(model, target, "INSERT INTO ha_rows SELECT generate_series(101, 150)")
    # the old primary rejoined as a replica and has every row
    wait_rows(model, old, "ha_rows", 150, timeout=30)
    assert sql(model, old, "SELECT pg_is_in_recovery()") == "t"
    # refused on the primary itself
    r = model.run(target, "promote-to-primary", "scope=unit")
    assert r.status == "failed"


def test_rest_api_health_endpoints_over_tls(model):
    st = model.status()
    primary = primary_unit(model)
    tls = ("--cacert /var/lib/pg-agent/tls/ca.pem --cert /var/lib/pg-agent/tls/cert.pem "
           "--key /var/lib/pg-agent/tls/key.pem")
    for name, u in units(st).items():
        addr = u["public-address"]
        codes = {}
        for path in ("primary", "replica", "health", "replica?lag=1MB"):
            r = model.exec(primary, f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 "
                                    f"--cacert /var/lib/pg-agent/tls/ca.pem "
                                    f"'https://{addr}:8008/{path}'")
            codes[path] = r.stdout.strip()
        is_primary = name == primary
        assert codes["primary"] == ("200" if is_primary else "503"), (name, codes)
        assert codes["replica"] == ("503" if is_primary else "200"), (name, codes)
        assert codes["health"] == "200", (name, codes)
        r = model.exec(primary, f"curl -s --max-time 5 --cacert /var/lib/pg-agent/tls/ca.pem "
                                f"https://{addr}:8008/metrics")
        assert f"patroni_primary{{scope=\"{APP}\",name=\"{name.replace('/', '-')}\"}} " \
               f"{1 if is_primary else 0}" in r.stdout, r.stdout
    r = model.exec(primary, f"curl -s --max-time 5 {tls} https://127.0.0.1:8008/cluster")
    cluster = json.loads(r.stdout)
    assert sorted(m["name"] for m in cluster["members"]) == sorted(
        u.replace("/", "-") for u in units(st))
    # writes need a client certificate of the cluster's CA
    r = model.exec(primary, "curl -s -o /dev/null -w '%{http_code}' --max-time 5 "
                            "--cacert /var/lib/pg-agent/tls/ca.pem -X POST "
                            "-d '{\"leader\":\"x\"}' https://127.0.0.1:8008/switchover")
    assert r.stdout.strip() == "401", r.stdout


ETCDCTL = ("ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 "
           "--cacert=/var/lib/pg-agent/tls/ca.pem --cert=/var/lib/pg-agent/tls/cert.pem "
           "--key=/var/lib/pg-agent/tls/key.pem")


def test_garbage_in_the_dcs_is_refused_and_the_cluster_keeps_serving(model):
    primary = primary_unit(model)
    replica = next(u for u in units(model.status()) if u != primary)
    before = sql(model, primary, "SELECT count(*) FROM ha_rows")
    garbage = {
        f"/db/{APP}/members/intruder": "not json at all",
        f"/db/{APP}/members/Bad_Name!": '{"conn_url":"postgres://10.0.0.1:5432/postgres"}',
        f"/db/{APP}/members/faker": '{"conn_url":"postgres://not-an-ip:5432/x","role":"primary"}',
        f"/db/{APP}/history": "[[",
        f"/db/{APP}/status": '{"optime":"lots"}',
        f"/db/{APP}/failover": "{",
    }
    for key, value in garbage.items():
        r = model.exec(replica, f"{ETCDCTL} put '{key}' '{value}'")
        assert r.rc == 0, r.stderr
    try:
        # the agents keep running and the primary stays where it was, writable
        time.sleep(5)
        assert primary_unit(model) == primary
        sql(model, primary, "INSERT INTO ha_rows VALUES (1000)")
        for unit in units(model.status()):
            wait_rows(model, unit, "ha_rows", int(before) + 1, timeout=15)
        model.wait(cluster_settled(3), error=any_error, timeout=60)
        # and say what they refused
        log = model.exec(replica, "cat /var/log/pg-agent/agent.log").stdout
        assert "DCS member intruder: not a member record we can use: ignored" in log
        assert "DCS member faker: not a member record we can use: ignored" in log
        assert "DCS history key is not a JSON list: ignored" in log
        # a bad failover key is removed at once by the member that reads it first: that one
        # says so, the others may never see it
        logs = "".join(model.exec(u, "cat /var/log/pg-agent/agent.log").stdout
                       for u in units(model.status()))
        assert "DCS failover key is not a valid request: ignored" in logs
    finally:
        for key in garbage:
            model.exec(replica, f"{ETCDCTL} del '{key}'")
        sql(model, primary, "DELETE FROM ha_rows WHERE id = 1000")


def test_scale_up_to_five_and_down_to_two_keeps_every_row(model):
    model.juju("add-unit", APP, "-n", "2", timeout=120)
    model.wait(cluster_settled(5), error=any_error, timeout=600)
    primary = primary_unit(model)
    sql(model, primary, "INSERT INTO ha_rows SELECT generate_series(151, 200)")
    for unit in units(model.status()):
        wait_rows(model, unit, "ha_rows", 200, timeout=30)
    members, _ = cluster_status(model, primary)
    assert len(members) == 5, members

    # remove three units, the primary's among them: it hands the primary over first
    others = [u for u in units(model.status()) if u != primary]
    gone = [primary] + others[:2]
    model.juju("remove-unit", *gone, timeout=120)
    model.wait(cluster_settled(2), error=any_error, timeout=600)
    new_primary = primary_unit(model)
    assert new_primary not in gone
    for unit in units(model.status()):
        wait_rows(model, unit, "ha_rows", 200, timeout=30)
    members, _ = cluster_status(model, new_primary)
    assert sorted(m["name"] for m in members) == sorted(
        u.replace("/", "-") for u in units(model.status()))
    r = model.exec(new_primary, f"{ETCDCTL} member list")
    assert r.rc == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 2, r.stdout
