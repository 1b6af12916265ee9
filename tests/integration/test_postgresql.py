"""The charm on one unit, driven only through `juju`: a secure PostgreSQL that reaches
active, whose passwords can be read and rotated (action and system-users secret) without
a restart, that refuses bad input without losing service, and survives upgrade-charm."""

import base64
import json
import struct
import time

import psycopg2
import pytest

from conftest import REPO, all_agents_idle, any_error

APP = "postgresql"
UNIT = f"{APP}/0"
CHARM = REPO / "build" / "postgresql.charm"


def unit_status(st, unit=UNIT):
    return st["applications"][APP]["units"][unit]["workload-status"]


def address(model, unit=UNIT):
    return model.status()["applications"][APP]["units"][unit]["public-address"]


def settled(st, message="Primary"):
    return (UNIT in st["applications"][APP].get("units", {}) and
            unit_status(st) == {**unit_status(st), "current": "active", "message": message}
            and all_agents_idle(st, APP))


def get_password(model, username="operator", unit=UNIT):
    r = model.run(unit, "get-password", f"username={username}")
    assert r.status == "completed", r.task
    return r.results["password"]


def connect(host, user, password, **kw):
    return psycopg2.connect(host=host, port=5432, user=user, password=password,
                            dbname="postgres", connect_timeout=10, sslmode="disable", **kw)


def psql_local(model, user, password, sql="SELECT 1"):
    """A TCP login to 127.0.0.1 inside the unit; the password goes through the
    environment of this one short-lived psql (never its command line)."""
    r = model.exec(UNIT, f"PGPASSWORD='{password}' psql -h 127.0.0.1 -U {user} -d postgres "
                         f"-XAtc \"{sql}\"")
    return r


def start_time(model):
    r = model.exec(UNIT, "su postgres -c \"psql -XAtc 'SELECT pg_postmaster_start_time()'\"")
    assert r.rc == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def deployed(model):
    assert CHARM.exists(), "run `make build` first"
    model.juju("deploy", str(CHARM), "--config", "profile=testing", timeout=180)
    model.wait(settled, error=any_error, timeout=240)
    return model


def test_deploy_one_unit_is_active_primary(deployed):
    st = deployed.status()
    app = st["applications"][APP]
    assert app["units"][UNIT]["workload-status"]["message"] == "Primary"
    assert app["version"].split(".")[0] in ("14", "15", "16", "17"), app["version"]
    assert "5432/tcp" in app["units"][UNIT].get("open-ports", []), app["units"][UNIT]


def test_cluster_is_secure_by_default(deployed):
    # cert (a peer's certificate from the internal CA) only on hostssl, with the peers' map
    sql = ("SELECT current_setting('data_checksums'), current_setting('password_encryption'),"
           " (SELECT count(*) FROM pg_hba_file_rules WHERE auth_method NOT IN "
           "('peer', 'scram-sha-256', 'reject') AND NOT (auth_method = 'cert' AND "
           "type = 'hostssl' AND options @> ARRAY['map=pg-agent-peers'])),"
           " (SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN "
           "('operator', 'replication', 'rewind', 'monitoring'))")
    r = deployed.exec(UNIT, f"su postgres -c \"psql -XAtc \\\"{sql}\\\"\"")
    assert r.rc == 0, r.stderr
    assert r.stdout.strip() == "on|scram-sha-256|0|monitoring,operator,replication,rewind"
    # every system role has a SCRAM verifier, no md5 or clear text
    r = deployed.exec(UNIT, "su postgres -c \"psql -XAtc \\\"SELECT rolname FROM pg_authid "
                            "WHERE rolname IN ('operator','replication','rewind','monitoring') "
                            "AND rolpassword NOT LIKE 'SCRAM-SHA-256\\$%'\\\"\"")
    assert r.rc == 0 and r.stdout.strip() == "", (r.stdout, r.stderr)
    # the distro's default cluster does not exist; ours does, outside /etc/postgresql
    r = deployed.exec(UNIT, "pg_lsclusters -h | wc -l; ls /var/lib/postgresql/*/charm/PG_VERSION")
    assert r.stdout.split()[0] == "0", r.stdout


def postgres_rows(model, sql):
    """Rows of one query run by the postgres OS user on the socket (fields split on |);
    sql must not hold double quotes, backslashes or $."""
    r = model.exec(UNIT, f"su postgres -c \"psql -XAtc \\\"{sql}\\\"\"")
    assert r.rc == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines() if line]


def test_rendered_files_are_accepted_by_the_server(deployed):
    """The server reads the agent's postgresql.conf, pg_hba.conf and pg_ident.conf without
    an error, and the peer rules it holds are the certificate rules for single hosts."""
    assert postgres_rows(deployed, "SELECT count(*) FROM pg_file_settings "
                                   "WHERE error IS NOT NULL") == [["0"]]
    assert postgres_rows(deployed, "SELECT count(*) FROM pg_hba_file_rules "
                                   "WHERE error IS NOT NULL") == [["0"]]
    peer_rules = postgres_rows(deployed, "SELECT type, database::text, user_name::text, address, "
                                         "netmask, auth_method, options::text FROM "
                                         "pg_hba_file_rules WHERE type = 'hostssl'")
    for _type, db, user, _address, mask, method, options in peer_rules:
        assert method == "cert" and options == "{map=pg-agent-peers,clientcert=verify-full}", \
            peer_rules
        assert (db, user) in (("{replication}", "{replication}"), ("{postgres}", "{rewind}")), \
            peer_rules
        assert mask in ("255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), peer_rules
    # pg_ident_file_mappings exists from PostgreSQL 15 on
    if int(postgres_rows(deployed, "SHOW server_version_num")[0][0]) >= 150000:
        maps = postgres_rows(deployed, "SELECT map_name, sys_name, pg_username, "
                                       "coalesce(error, '') FROM pg_ident_file_mappings "
                                       "ORDER BY line_number")
        assert maps == [["pg-agent", "root", "postgres", ""],
                        ["pg-agent", "postgres", "postgres", ""],
                        ["pg-exporter", "prometheus", "monitoring", ""],
                        ["pg-agent-peers", f"/^{APP}-[0-9]+$", "replication", ""],
                        ["pg-agent-peers", f"/^{APP}-[0-9]+$", "rewind", ""]], maps


def test_get_password_then_tcp_login(deployed):
    pw = get_password(deployed)
    assert len(pw) == 32 and pw.isalnum()
    r = psql_local(deployed, "operator", pw, "SELECT current_user")
    assert r.rc == 0 and r.stdout.strip() == "operator", r.stderr
    # monitoring may log in remotely with its password (SCRAM)
    mon = get_password(deployed, "monitoring")
    with connect(address(deployed), "monitoring", mon) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_has_role('monitoring', 'pg_monitor', 'member')")
            assert cur.fetchone()[0] is True
    conn.close()


def test_remote_superuser_login_is_refused_by_default(deployed):
    pw = get_password(deployed)
    with pytest.raises(psycopg2.OperationalError, match="pg_hba.conf rejects"):
        connect(address(deployed), "operator", pw)
    with pytest.raises(psycopg2.OperationalError, match="pg_hba.conf rejects"):
        connect(address(deployed), "postgres", "whatever")


def test_superuser_remote_access_opens_it(deployed):
    deployed.juju("config", APP, "superuser-remote-access=true")
    pw = get_password(deployed)

    def remote_ok():
        try:
            connect(address(deployed), "operator", pw).close()
            return True
        except psycopg2.OperationalError:
            return False
    deadline = time.monotonic() + 60
    while not remote_ok():
        assert time.monotonic() < deadline, "superuser-remote-access=true did not apply"
        time.sleep(0.5)
    deployed.juju("config", APP, "--reset", "superuser-remote-access")
    deadline = time.monotonic() + 60
    while remote_ok():
        assert time.monotonic() < deadline, "resetting superuser-remote-access did not apply"
        time.sleep(0.5)


def test_set_password_rotates_without_restart(deployed):
    before = start_time(deployed)
    old = get_password(deployed)
    r = deployed.run(f"{APP}/leader", "set-password", "username=operator")
    assert r.status == "completed", r.task
    new = get_password(deployed)
    assert new != old and len(new) == 32
    assert psql_local(deployed, "operator", new).rc == 0
    refused = psql_local(deployed, "operator", old)
    assert refused.rc != 0 and "password authentication failed" in refused.stderr
    # a chosen password, for another user
    r = deployed.run(f"{APP}/leader", "set-password", "username=rewind",
                     "password=Chosen-Passw0rd!")
    assert r.status == "completed", r.task
    assert get_password(deployed, "rewind") == "Chosen-Passw0rd!"
    assert psql_local(deployed, "rewind", "Chosen-Passw0rd!").rc == 0
    assert start_time(deployed) == before


def test_set_password_refuses_bad_input(deployed):
    for params, expect in ((["username=nobody"], "nobody"),
                           (["username=operator", "password=short"], "short"),
                           (["username=operator", "password=has space inside"], None),
                           (["username=operator", "extra=1"], "extra")):
        r = deployed.run(f"{APP}/leader", "set-password", *params)
        assert r.status != "completed", (params, r.task)
        text = (r.task.get("message") or "") + r.cli.stderr
        assert text, params
        if expect:
            assert expect in text, (params, text)
    # the database kept serving with the same password
    assert psql_local(deployed, "operator", get_password(deployed)).rc == 0


def test_obsolete_secret_revisions_are_removed(deployed):
    secrets = json.loads(deployed.juju("secrets", "--format", "json").stdout)
    ours = [s for s in secrets.values() if s.get("label") == f"database-peers.{APP}.app"]
    assert len(ours) == 1, secrets
    xid = next(k for k, v in secrets.items() if v is ours[0])
    shown = json.loads(deployed.juju("show-secret", xid, "--revisions",
                                     "--format", "json").stdout)
    revisions = [r["revision"] for r in shown[xid]["revisions"]]
    assert ours[0]["revision"] >= 3, ours  # created, then two set-password
    assert revisions == [ours[0]["revision"]], shown  # only the latest is left


def test_system_users_secret_drives_the_passwords(deployed):
    before = start_time(deployed)
    uri = deployed.juju("add-secret", "pgusers", "operator=Operator-From-Secret1",
                        "monitoring-password=Monitoring-From-Secret1").stdout.strip()
    deployed.juju("grant-secret", "pgusers", APP)
    deployed.juju("config", APP, f"system-users={uri}")
    deadline = time.monotonic() + 60
    while get_password(deployed) != "Operator-From-Secret1":
        assert time.monotonic() < deadline, "system-users was not applied"
        time.sleep(0.5)
    assert psql_local(deployed, "operator", "Operator-From-Secret1").rc == 0
    mon = connect(address(deployed), "monitoring", "Monitoring-From-Secret1")
    mon.close()
    # a managed user cannot be changed with the action
    r = deployed.run(f"{APP}/leader", "set-password", "username=operator")
    assert r.status == "failed" and "system-users" in r.task.get("message", ""), r.task
    # a new revision of the user secret is applied on secret-changed
    deployed.juju("update-secret", "pgusers", "operator=Operator-From-Secret2")
    deadline = time.monotonic() + 60
    while psql_local(deployed, "operator", "Operator-From-Secret2").rc != 0:
        assert time.monotonic() < deadline, "the new secret revision was not applied"
        time.sleep(0.5)
    assert psql_local(deployed, "operator", "Operator-From-Secret1").rc != 0
    assert get_password(deployed) == "Operator-From-Secret2"
    assert start_time(deployed) == before


def wait_blocked(model, needle):
    return model.wait(lambda s: unit_status(s)["current"] == "blocked" and
                      needle in unit_status(s)["message"] and all_agents_idle(s, APP),
                      timeout=90)


def test_system_users_secret_problems_block(deployed):
    # not granted
    uri = deployed.juju("add-secret", "notgranted", "operator=Whatever-Passw0rd").stdout.strip()
    deployed.juju("config", APP, f"system-users={uri}")
    st = wait_blocked(deployed, "not granted")
    assert "grant-secret" in unit_status(st)["message"]
    # granting fires no hook: the next update-status (or any hook) picks it up
    deployed.juju("grant-secret", "notgranted", APP)
    deployed.juju("config", APP, "profile=testing", "logging-log-lock-waits=true")
    deployed.wait(settled, timeout=90)
    assert get_password(deployed) == "Whatever-Passw0rd"
    # missing
    deployed.juju("config", APP, "system-users=secret:0123456789abcdefghij")
    wait_blocked(deployed, "not found")
    # a password too short in the secret
    uri = deployed.juju("add-secret", "tooshort", "operator=abc").stdout.strip()
    deployed.juju("grant-secret", "tooshort", APP)
    deployed.juju("config", APP, f"system-users={uri}")
    st = wait_blocked(deployed, "too short")
    assert "abc" not in unit_status(st)["message"]
    # still serving with the last good password
    assert psql_local(deployed, "operator", "Whatever-Passw0rd").rc == 0
    deployed.juju("config", APP, "--reset", "system-users")
    deployed.wait(settled, timeout=90)


def test_invalid_config_blocks_and_keeps_serving(deployed):
    before = start_time(deployed)
    pw = get_password(deployed)
    for key, value, needle in (("memory-work-mem", "12", "memory-work-mem=12"),
                               ("profile", "huge", "profile="),
                               ("durability-synchronous-commit", "off",
                                "durability-synchronous-commit="),
                               ("request-time-zone", "../etc/passwd", "request-time-zone"),
                               ("memory-shared-buffers", "1073741823", "memory-shared-buffers")):
        deployed.juju("config", APP, f"{key}={value}")
        wait_blocked(deployed, needle)
        assert psql_local(deployed, "operator", pw).rc == 0
        if key == "profile":
            deployed.juju("config", APP, "profile=testing")  # as deployed
        else:
            deployed.juju("config", APP, "--reset", key)
        deployed.wait(settled, timeout=90)
    # a good change that needs no restart is applied by a reload
    deployed.juju("config", APP, "memory-work-mem=8192")
    deployed.wait(settled, timeout=90)
    r = psql_local(deployed, "operator", pw, "SHOW work_mem")
    assert r.stdout.strip() == "8MB", r.stdout
    assert start_time(deployed) == before
    deployed.juju("config", APP, "--reset", "memory-work-mem")
    deployed.wait(settled, timeout=90)


def test_restart_only_for_settings_that_need_it(deployed):
    before = start_time(deployed)
    pw = get_password(deployed)
    deployed.juju("config", APP, "experimental-max-connections=120")
    deadline = time.monotonic() + 90
    while psql_local(deployed, "operator", pw, "SHOW max_connections").stdout.strip() != "120":
        assert time.monotonic() < deadline, "max_connections was not applied"
        time.sleep(0.5)
    assert start_time(deployed) != before
    deployed.juju("config", APP, "--reset", "experimental-max-connections")
    deployed.wait(settled, timeout=90)


def frame(body):
    return struct.pack(">I", len(body)) + body


def test_bad_relay_messages_leave_the_agent_serving(deployed):
    """Raw frames on the agent's socket (as root in the unit): truncated, oversized, not
    JSON, JSON of the wrong shape. Each is refused; the agent and PostgreSQL go on."""
    probe = r"""
import socket, struct
def send(data, read=True):
    s = socket.socket(socket.AF_UNIX); s.settimeout(15); s.connect("/run/pg-agent/agent.sock")
    s.sendall(data)
    if not read:
        s.close(); return "sent"
    out = b""
    try:
        s.shutdown(socket.SHUT_WR)
        while True:
            b = s.recv(65536)
            if not b: break
            out += b
    except ConnectionResetError:
        out += b"(reset)"
    return out.decode(errors="replace")
f = lambda b: struct.pack(">I", len(b)) + b
print("TRUNC", ascii(send(f(b'{"v":1,"env":{')[:-3])))
print("HUGE", ascii(send(struct.pack(">I", 1 << 30) + b"x")))
print("NOTJSON", ascii(send(f(b"\x00\xffnot json"))))
print("SHAPE", ascii(send(f(b'{"v":2,"env":[]}'))))
"""
    code = base64.b64encode(probe.encode()).decode()
    r = deployed.exec(UNIT, f"echo {code} | base64 -d | /usr/bin/python3 -", timeout=120)
    assert r.rc == 0, r.stderr
    out = r.stdout
    assert "exit" not in out.split("TRUNC", 1)[1].split("\n")[0], out  # closed, not handled
    assert "exit" not in out.split("HUGE", 1)[1].split("\n")[0], out
    assert "NOTJSON" in out and '"exit":1' in out.split("NOTJSON", 1)[1].split("\n")[0], out
    assert '"exit":1' in out.split("SHAPE", 1)[1], out
    # the agent still answers a hook and the database still serves
    r = deployed.exec(UNIT, 'JUJU_DISPATCH_PATH=hooks/update-status "$JUJU_CHARM_DIR/dispatch"')
    assert r.rc == 0, r.stderr
    assert psql_local(deployed, "operator", get_password(deployed)).rc == 0


def test_upgrade_charm_keeps_sessions(deployed, tmp_path):
    mon = get_password(deployed, "monitoring")
    session = connect(address(deployed), "monitoring", mon)
    session.autocommit = True
    cur = session.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    before = start_time(deployed)
    agent_before = deployed.sh(UNIT, "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = "
                                     "pg-agent ] && echo ${p#/proc/}; done; true").split()
    rebuilt = tmp_path / "postgresql.charm"
    rebuilt.write_bytes(CHARM.read_bytes())
    rev = deployed.status()["applications"][APP]["charm-rev"]
    deployed.juju("refresh", APP, "--path", str(rebuilt))
    deployed.wait(lambda s: s["applications"][APP]["charm-rev"] > rev and settled(s),
                  error=any_error, timeout=120)
    cur.execute("SELECT pg_backend_pid()")
    assert cur.fetchone()[0] == pid
    session.close()
    assert start_time(deployed) == before
    # the agent re-executed the new binary in place (same pid, not a deleted file)
    agent_after = deployed.sh(UNIT, "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = "
                                    "pg-agent ] && echo ${p#/proc/} $(readlink $p/exe); done; "
                                    "true").strip().split("\n")
    assert len(agent_after) == 1 and agent_after[0].split()[0] == agent_before[0], agent_after
    assert "deleted" not in agent_after[0], agent_after
    r = deployed.exec(UNIT, "grep -c 'upgrade-charm: handing over to' /var/log/pg-agent/agent.log")
    assert r.stdout.strip() == "1", (r.stdout, r.stderr)


def test_agent_restart_adopts_the_running_server(deployed):
    before = start_time(deployed)
    pids = deployed.sh(UNIT, "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = pg-agent ] "
                             "&& echo ${p#/proc/}; done; true").split()
    assert len(pids) == 1
    deployed.exec(UNIT, f"kill {pids[0]}; sleep 1")
    r = deployed.exec(UNIT, 'JUJU_DISPATCH_PATH=hooks/update-status "$JUJU_CHARM_DIR/dispatch"')
    assert r.rc == 0, r.stderr
    after = deployed.sh(UNIT, "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = pg-agent ] "
                              "&& echo ${p#/proc/}; done; true").split()
    assert len(after) == 1 and after != pids
    assert start_time(deployed) == before


def test_agent_restarts_a_stopped_server(deployed):
    before = start_time(deployed)
    deployed.exec(UNIT, "kill -INT $(head -1 /var/lib/postgresql/*/charm/postmaster.pid)")
    deadline = time.monotonic() + 60
    while True:
        r = deployed.exec(UNIT, "su postgres -c \"psql -XAtc 'SELECT pg_postmaster_start_time()'\"")
        if r.rc == 0 and r.stdout.strip() != before:
            break
        assert time.monotonic() < deadline, "the agent did not start PostgreSQL again"
        time.sleep(1)
    r = deployed.exec(UNIT, "grep -c 'PostgreSQL is not running' /var/log/pg-agent/agent.log")
    assert int(r.stdout.strip() or 0) >= 1, r.stdout


def test_set_password_on_a_non_leader_fails(deployed):
    deployed.juju("add-unit", APP)
    other = f"{APP}/1"
    deployed.wait(lambda s: other in s["applications"][APP].get("units", {}) and
                  unit_status(s, other)["current"] == "active" and all_agents_idle(s, APP),
                  error=any_error, timeout=240)
    pw = get_password(deployed)
    r = deployed.run(other, "set-password", "username=operator")
    assert r.status == "failed", r.task
    assert "leader" in r.task.get("message", ""), r.task
    assert get_password(deployed) == pw  # unchanged
    # the non-leader read the passwords the leader created (from the app secret)
    assert get_password(deployed, unit=other) == pw
    deployed.juju("remove-unit", other, "--no-prompt")
    deployed.wait(lambda s: other not in s["applications"][APP].get("units", {}), timeout=120)
