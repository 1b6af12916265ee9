"""Client relations (`database`, postgresql_client v0) with the db-client test charm
(tests/charms/db-client, like data-integrator): credentials in Juju secrets (or the databag
when no secrets are asked for), verify-full connections to the primary and read-only ones to
a replica, separate users per application that cannot reach each other's database, hostile
requests that block the leader and recover, endpoints that follow a failover, and a removed
relation's user dropped with no grant left. What the charm writes is validated against
schemas/postgresql_client_v0_generated_provider.json. Driven only through sandbox/bin/juju,
and psycopg2 from the host to the units' addresses."""
import json
import os
import re
import time

import psycopg2
import pytest

from conftest import any_error, poll
from test_ha import APP, CHARM, cluster_settled, primary_unit, settled_on, sql
from test_tls import addresses
from test_tls_provider import load_schema, validate_databag

SCHEMA = "postgresql_client_v0_generated_provider.json"


def client_active(app):
    def ready(st):
        a = st["applications"].get(app)
        if not a or not a.get("units"):
            return False
        return all(u["workload-status"]["current"] == "active"
                   for u in a["units"].values())
    return ready


def leader_status(model, app=APP):
    st = model.status()
    ldr = model.leader(app, st)
    return st["applications"][app]["units"][ldr]["workload-status"]


def credentials(model, app):
    r = model.run(f"{app}/0", "get-credentials")
    assert r.status == "completed", r.task
    return r.results


@pytest.fixture(scope="module")
def cluster(model, tmp_path_factory):
    assert CHARM.exists(), "run `make build` first"
    tmp = tmp_path_factory.mktemp("clients")
    model.juju("deploy", str(CHARM), "-n", "3", "--config", "profile=testing", timeout=180)
    model.deploy("db-client", app="app-a", config={"database-name": "appa"})
    model.deploy("db-client", app="app-b", config={"database-name": "appb",
                                                   "requested-secrets": "none"})
    model.wait(cluster_settled(3), error=any_error, timeout=300)
    model.juju("integrate", f"{APP}:database", "app-a:database")
    model.juju("integrate", f"{APP}:database", "app-b:database")
    model.wait(lambda st: client_active("app-a")(st) and client_active("app-b")(st),
               error=any_error, timeout=180)
    return {"tmp": tmp}


def ca_file(cluster, creds, name):
    path = cluster["tmp"] / f"{name}.pem"
    path.write_text(creds["tls-ca"])
    return str(path)


def host_port(endpoint):
    host, port = endpoint.rsplit(":", 1)
    return host.strip("[]"), int(port)


def connect(creds, endpoint, ca, dbname=None, **kw):
    host, port = host_port(endpoint)
    return psycopg2.connect(host=host, port=port, user=creds["username"],
                            password=creds["password"], dbname=dbname or creds["database"],
                            sslmode="verify-full", sslrootcert=ca, connect_timeout=5, **kw)


# ---- credentials and connections ---------------------------------------------------------

def test_client_gets_credentials_and_connects_verify_full(model, cluster):
    creds = credentials(model, "app-a")
    addrs = addresses(model)
    primary = primary_unit(model)
    assert re.fullmatch(r"relation-\d+", creds["username"]), creds["username"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", creds["password"])
    assert creds["database"] == "appa"
    assert creds["endpoints"] == f"{addrs[primary]}:5432"
    replicas = sorted(f"{a}:5432" for u, a in addrs.items() if u != primary)
    assert sorted(creds["read-only-endpoints"].split(",")) == replicas
    assert creds["tls"] == "True" and "BEGIN CERTIFICATE" in creds["tls-ca"]
    server = sql(model, primary, "SHOW server_version").split()[0]
    assert creds["version"] == ".".join(server.split(".")[:2])
    assert creds["uris"] == (f"postgresql://{creds['username']}:{creds['password']}@"
                             f"{addrs[primary]}:5432/appa")
    assert set(creds["read-only-uris"].split("@", 1)[1].split("/")[0].split(",")) == \
        set(replicas)
    # credentials came in secrets: the databag holds only URIs of them
    bag = json.loads(creds["databag"])
    assert "password" not in bag and bag["secret-user"].startswith("secret:")
    assert bag["secret-tls"].startswith("secret:")

    ca = ca_file(cluster, creds, "a")
    with connect(creds, creds["endpoints"], ca) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS t (v int)")
        cur.execute("INSERT INTO t VALUES (1)")
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone()[0] is True
    c.close()

    def on_replica():
        with connect(creds, creds["read-only-endpoints"].split(",")[0], ca) as r, \
                r.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery(), count(*) FROM t")
            return cur.fetchone() == (True, 1)
    poll(on_replica, 30, what="the row on a replica")
    with connect(creds, creds["read-only-endpoints"].split(",")[0], ca) as r, r.cursor() as cur:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            cur.execute("INSERT INTO t VALUES (2)")


def test_plain_databag_when_no_secrets_are_requested(model, cluster):
    creds = credentials(model, "app-b")
    bag = json.loads(creds["databag"])
    assert bag["username"] == creds["username"] and bag["password"] == creds["password"]
    assert "secret-user" not in bag and bag["tls"] == "True"
    ca = ca_file(cluster, creds, "b")
    with connect(creds, creds["endpoints"], ca) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS secret_b (v text)")
        cur.execute("INSERT INTO secret_b VALUES ('b')")
    c.close()


def test_what_the_charm_writes_matches_the_schema(model, cluster):
    schema = load_schema(SCHEMA)
    for app in ("app-a", "app-b"):
        creds = credentials(model, app)
        bag = json.loads(creds["databag"])
        # as a requirer sees it: the databag with the secrets' fields in place of their URIs
        view = {k: v for k, v in bag.items() if not k.startswith("secret-")}
        for key in ("username", "password", "uris", "read-only-uris", "tls", "tls-ca"):
            if key in creds:
                view[key] = creds[key]
        validate_databag(schema, "app", view)
        if "secret-user" not in bag:
            validate_databag(schema, "app", bag)   # plain mode: the databag itself


def test_two_clients_cannot_reach_each_others_database(model, cluster):
    a, b = credentials(model, "app-a"), credentials(model, "app-b")
    assert a["username"] != b["username"]
    ca = ca_file(cluster, a, "a")
    for who, other_db in ((a, "appb"), (b, "appa")):
        with pytest.raises(psycopg2.OperationalError) as e:
            connect(who, who["endpoints"], ca, dbname=other_db).close()
        assert "pg_hba.conf rejects connection" in str(e.value), e.value
    with connect(a, a["endpoints"], ca) as c, c.cursor() as cur:
        with pytest.raises(psycopg2.errors.UndefinedTable):
            cur.execute("SELECT * FROM secret_b")
    c.close()


# ---- PgBouncer -----------------------------------------------------------------------------

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def pgbouncer_backend(model, database="pgbouncer_primary"):
    r = model.run("pgbouncer/0", "backend-tls", f"database={database}")
    assert r.status == "completed", r.task
    return r.results


def test_pgbench_through_pgbouncer_over_tls(model, cluster):
    model.deploy("pgbouncer")
    model.juju("integrate", f"{APP}:database", "pgbouncer:backend-database")
    model.wait(lambda st: client_active("pgbouncer")(st) and cluster_settled(3)(st),
               error=any_error, timeout=240)
    r = model.run("pgbouncer/0", "get-connection")
    assert r.status == "completed", r.task
    conn = r.results
    env = dict(os.environ, PGPASSWORD=conn["password"], PGSSLMODE="require",
               PGCONNECT_TIMEOUT="10")
    base = [PGBENCH, "-h", conn["host"], "-p", str(conn["port"]), "-U", conn["username"]]
    import subprocess
    init = subprocess.run(base + ["-i", "-s", "1", conn["database"]], env=env,
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    run = subprocess.run(base + ["-c", "4", "-j", "2", "-T", "10", conn["database"]], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    tps = re.search(r"tps = ([0-9.]+)", run.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", run.stdout)
    assert tps and float(tps.group(1)) > 0, run.stdout
    assert not failed or failed.group(1) == "0", run.stdout
    print(f"\npgbench through pgbouncer: {tps.group(1)} tps")
    # both legs encrypted: the client's to pgbouncer (PGSSLMODE=require above), and
    # pgbouncer's to PostgreSQL (verify-full with the published tls-ca)
    be = pgbouncer_backend(model)
    addrs = addresses(model)
    assert be["ssl"] == "true" and be["in-recovery"] == "false", be
    assert be["server-addr"].split("/")[0] == addrs[primary_unit(model)]
    ro = pgbouncer_backend(model, "pgbouncer_readonly")
    assert ro["ssl"] == "true" and ro["in-recovery"] == "true", ro
    # the md5 rule exists for PgBouncer's auth user only, and only over TLS
    primary = primary_unit(model)
    rules = sql(model, primary, "SELECT type || ' ' || array_to_string(user_name, ',') || ' ' "
                                "|| auth_method FROM pg_hba_file_rules WHERE auth_method = "
                                "'md5'").splitlines()
    assert len(rules) == 1 and re.fullmatch(r"hostssl pgbouncer_auth_relation_\d+ md5",
                                            rules[0]), rules


# ---- hostile requests -----------------------------------------------------------------------

HOSTILE = [
    # (raw config, raw-hex config, what the blocked message says)
    ({"database": 'x"; DROP TABLE y; --'}, None, "not a plain name"),
    ({"database": "template0"}, None, "reserved"),
    ({"database": "postgres"}, None, "reserved"),
    ({"database": "d" * 300}, None, "longer than 63 bytes"),
    # Juju stores no empty value (`database=` deletes the key): an empty name arrives as none
    ({"database": ""}, None, "no database requested"),
    (None, {"database": "61ff62"}, "not a plain name"),
    ({"extra-user-roles": "superuser; DROP ROLE operator"}, None, "invalid role"),
    ({"requested-secrets": "not json"}, None, "requested-secrets is not a JSON list"),
]


def test_hostile_requests_block_and_recover(model, cluster):
    model.deploy("db-client", app="app-h", config={"database-name": "apph"})
    model.juju("integrate", f"{APP}:database", "app-h:database")
    model.wait(client_active("app-h"), error=any_error, timeout=180)
    a = credentials(model, "app-a")
    ca = ca_file(cluster, a, "a")
    for raw, raw_hex, says in HOSTILE:
        cfg = [f"raw={json.dumps(raw) if raw else ''}",
               f"raw-hex={json.dumps(raw_hex) if raw_hex else ''}"]
        model.juju("config", "app-h", *cfg)

        def blocked():
            ws = leader_status(model)
            return ws["current"] == "blocked" and "database:" in ws["message"] and \
                says in ws["message"] and ws
        ws = poll(blocked, 60, what=f"blocked for {raw or raw_hex}")
        assert "(app-h)" in ws["message"], ws
        # the cluster is intact: the other client still writes, the operator still works
        with connect(a, a["endpoints"], ca) as c, c.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (3)")
        c.close()
        for u in model.units(APP):
            assert sql(model, u, "SELECT count(*) FROM pg_database WHERE datname IN "
                                 "('template0', 'postgres')") == "2"
        model.juju("config", "app-h", "raw=", "raw-hex=")
        model.wait(lambda st: cluster_settled(3)(st) and client_active("app-h")(st),
                   error=any_error, timeout=120)
    h = credentials(model, "app-h")
    with connect(h, h["endpoints"], ca_file(cluster, h, "h")) as c, c.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone()[0] == "apph"
    c.close()


# ---- failover -----------------------------------------------------------------------------

def test_endpoints_follow_a_failover_within_15_s(model, cluster):
    from chaos.cluster import CharmCluster
    cc = CharmCluster(model.juju, os.environ["JUJU_SANDBOX_DIR"], model.name, app=APP)
    # Only the Juju leader writes the endpoints: when the machine that dies runs both the
    # primary and the leader, the endpoints wait for Juju to elect another leader (its
    # lease, up to a minute on a real controller). The failover measured here is the one
    # the charm controls: the primary on a unit that is not the leader.
    ldr = model.leader(APP)
    if primary_unit(model) == ldr:
        target = next(u for u in model.units(APP) if u != ldr)
        r = model.run(target, "promote-to-primary", "scope=unit", timeout=120)
        assert r.status == "completed", r.task
        model.wait(settled_on(target), error=any_error, timeout=120)

    def endpoints_on_primary():
        c = credentials(model, "app-a")
        return c["endpoints"] == f"{addresses(model)[primary_unit(model)]}:5432" and c
    a = poll(endpoints_on_primary, 30, what="endpoints on the primary")
    ca = ca_file(cluster, a, "a")
    old = primary_unit(model)
    addrs = addresses(model)
    t_kill = cc.crash(old)
    try:
        promoted = None
        reached = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and reached is None:
            if promoted is None:
                for u, addr in addrs.items():
                    if u != old and cc.primaries([addr], timeout=0.5):
                        promoted = time.monotonic()
            creds = credentials(model, "app-a")
            if creds["endpoints"] != a["endpoints"]:
                try:
                    with connect(creds, creds["endpoints"], ca) as c, c.cursor() as cur:
                        cur.execute("INSERT INTO t VALUES (4) RETURNING pg_is_in_recovery()")
                        if cur.fetchone()[0] is False:
                            reached = time.monotonic()
                    c.close()
                except psycopg2.OperationalError:
                    pass
            time.sleep(0.3)
        assert reached, "the client never reached a new primary"
        # PgBouncer follows through the same endpoints
        new_primary = host_port(creds["endpoints"])[0]
        pgb = None
        while time.monotonic() < deadline and pgb is None:
            try:
                be = pgbouncer_backend(model)
                if be["in-recovery"] == "false" and \
                        be["server-addr"].split("/")[0] == new_primary:
                    pgb = time.monotonic()
            except AssertionError:
                pass
            if pgb is None:
                time.sleep(0.5)
        assert pgb, "PgBouncer never reached the new primary"
        promoted = promoted or reached
        print(f"\nfailover: promoted {promoted - t_kill:.1f} s after the kill, client on the "
              f"new primary {reached - t_kill:.1f} s after the kill "
              f"({reached - promoted:.1f} s after the promotion), PgBouncer "
              f"{pgb - promoted:.1f} s after the promotion")
        assert reached - promoted <= 15.0
        assert pgb - promoted <= 15.0
        assert old not in creds["read-only-endpoints"]
    finally:
        cc.power_cycle(old)
    # a hook the crash killed failed on that unit; Juju retries it once the machine is back
    model.wait(cluster_settled(3), timeout=300)


# ---- removal ------------------------------------------------------------------------------

def test_removal_drops_the_user_and_leaves_no_grant(model, cluster):
    b = credentials(model, "app-b")
    user = b["username"]
    primary = primary_unit(model)
    assert sql(model, primary, f"SELECT count(*) FROM pg_roles WHERE rolname = '{user}'") == "1"
    model.juju("remove-relation", f"{APP}:database", "app-b:database")

    def gone():
        return sql(model, primary, f"SELECT count(*) FROM pg_roles WHERE rolname = '{user}'") \
            == "0"
    poll(gone, 60, what=f"{user} dropped")
    model.wait(cluster_settled(3), error=any_error, timeout=120)
    # the database and its data stay, owned by postgres; no ACL names the user any more
    assert sql(model, primary, "SELECT count(*) FROM pg_database WHERE datname = 'appb'") == "1"
    r = model.exec(primary, "runuser -u postgres -- psql -XAt -d appb -c "
                            "\"SELECT tableowner FROM pg_tables WHERE tablename = 'secret_b'\"")
    assert r.stdout.strip() == "postgres", r.stderr
    for db in ("postgres", "appb"):
        q = ("SELECT count(*) FROM (SELECT datacl::text a FROM pg_database UNION ALL "
             "SELECT nspacl::text FROM pg_namespace UNION ALL SELECT relacl::text FROM "
             f"pg_class) x WHERE a LIKE '%{user}%'")
        r = model.exec(primary, f"runuser -u postgres -- psql -XAt -d {db} -c \"{q}\"")
        assert r.rc == 0 and r.stdout.strip() == "0", (db, r.stdout, r.stderr)
    # its secrets are gone with it
    out = model.juju("secrets", "--format", "json").stdout
    labels = [s.get("label") for s in (json.loads(out) or {}).values()]
    rel = user.split("-", 1)[1]
    assert f"database.{rel}.user.secret" not in labels and \
        f"database.{rel}.tls.secret" not in labels
