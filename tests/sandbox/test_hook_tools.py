"""Hook tools: output formats, exit codes and exact error strings.

Reference §3 (hook commands). Most tools run through `juju exec --unit U`,
which gives a hook context (reference §7); tools that need an action context
run inside the tool-tester `run` action; those that need a relation hook use
a script installed for that hook.
"""

import json
import re
import types

import pytest
import yaml

from conftest import all_active, all_agents_idle, any_error, charm_dir, poll

APP = "tt"
OTHER = "other"


@pytest.fixture(scope="module")
def env(model):
    """tt (2 units) related tt:db <-> other:db-client; peers on tt."""
    model.deploy("tool-tester", APP, num_units=2)
    model.deploy("tool-tester", OTHER)
    model.juju("integrate", f"{APP}:db", f"{OTHER}:db-client")
    model.wait(
        lambda s: all_active(s, APP, OTHER) and all_agents_idle(s, APP, OTHER),
        error=any_error, timeout=180,
    )
    st = model.status()
    leader = model.leader(APP, st)
    follower = model.followers(APP, st)[0]
    other = model.units(OTHER, st)[0]
    # Both sides must have seen each other's units join before tests start.
    poll(lambda: model.sh(other, "relation-list -r $(relation-ids db-client) --format json")
         .strip() == json.dumps(sorted([leader, follower]), separators=(",", ":")),
         60, what="other/0 to see both tt units")
    for u in (leader, follower):
        poll(lambda u=u: json.loads(model.sh(u, "relation-list -r $(relation-ids db) --format json"))
             == [other], 60, what=f"{u} to see {other}")
    rid = model.relation_id(leader, "db")
    peer_rid = model.relation_id(leader, "peers")
    return types.SimpleNamespace(
        m=model, leader=leader, follower=follower, other=other,
        rid=rid, num=rid.split(":")[1], orid=f"db-client:{rid.split(':')[1]}",
        peer_rid=peer_rid,
    )


def err(r, message, code):
    """Assert an ExecResult is exactly a reference-style error."""
    assert (r.rc, r.stdout, r.stderr) == (code, "", f"ERROR {message}\n")


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


# --- generic CLI behaviour (§3.1) --------------------------------------------


def test_unknown_flag_exits_2(env):
    r = env.m.exec(env.leader, "is-leader --bogus")
    assert r.rc == 2
    assert r.stdout == ""
    # gnuflag as patched by Juju says "option provided but not defined".
    assert r.stderr.startswith("ERROR ")
    assert "provided but not defined: --bogus" in r.stderr


def test_unrecognized_args(env):
    err(env.m.exec(env.leader, "is-leader extra"), 'unrecognized args: ["extra"]', 2)


def test_context_id_required(env):
    r = env.m.exec(env.leader, "env -u JUJU_CONTEXT_ID is-leader")
    assert r.rc == 1
    assert "JUJU_CONTEXT_ID" in r.stderr
    r = env.m.exec(env.leader, "JUJU_CONTEXT_ID=tt/0-bogus-1 is-leader")
    assert r.rc != 0
    assert "expected context id" in r.stderr  # §3.1 "bad request: expected context id ..."


def test_exec_environment(env):
    unit = env.leader
    out = env.m.sh(unit, "env")
    envd = dict(kv.split("=", 1) for kv in out.splitlines() if "=" in kv)
    cd = charm_dir(unit)
    app, n = unit.split("/")
    assert envd["CHARM_DIR"] == cd
    assert envd["JUJU_CHARM_DIR"] == cd
    assert envd["JUJU_UNIT_NAME"] == unit
    assert envd["JUJU_MODEL_NAME"] == env.m.name
    assert envd["JUJU_MODEL_UUID"]
    assert envd["JUJU_AGENT_SOCKET_NETWORK"] == "unix"
    assert envd["JUJU_AGENT_SOCKET_ADDRESS"]
    assert envd["PATH"].startswith(f"/var/lib/juju/tools/unit-{app}-{n}:")
    assert re.fullmatch(rf"{re.escape(unit)}-run-commands-\d+", envd["JUJU_CONTEXT_ID"]), envd["JUJU_CONTEXT_ID"]
    # §2.1: JUJU_HOOK_NAME empty (but exported) and JUJU_DISPATCH_PATH unset for juju exec
    assert envd["JUJU_HOOK_NAME"] == ""
    assert "JUJU_DISPATCH_PATH" not in envd
    assert re.fullmatch(r"\d+\.\d+\.\d+", envd["JUJU_VERSION"]), envd["JUJU_VERSION"]
    for k in ("JUJU_MACHINE_ID", "JUJU_PRINCIPAL_UNIT", "JUJU_AVAILABILITY_ZONE",
              "JUJU_API_ADDRESSES"):
        assert k in envd, k
    assert envd["JUJU_PRINCIPAL_UNIT"] == ""
    # The agent's own environment is not inherited (§1.3).
    assert "JUJU_SANDBOX_DIR" not in envd


# --- relation-ids / relation-list (§3.3) -------------------------------------


def test_relation_ids(env):
    m = env.m
    assert m.sh(env.leader, "relation-ids db") == f"{env.rid}\n"
    assert m.sh(env.leader, "relation-ids db --format json") == f'["{env.rid}"]\n'
    assert m.sh(env.leader, "relation-ids --format=json peers") == f'["{env.peer_rid}"]\n'
    assert m.sh(env.other, "relation-ids db-client") == f"{env.orid}\n"
    # endpoint with no relations: empty list
    assert m.sh(env.leader, "relation-ids admin --format json") == "[]\n"
    assert m.sh(env.leader, "relation-ids admin") == ""
    # not in a relation hook and no endpoint given
    err(m.exec(env.leader, "relation-ids"), "no endpoint name specified", 2)


def test_relation_list(env):
    m, L, F = env.m, env.leader, env.follower
    assert m.sh(L, f"relation-list -r {env.rid}") == f"{env.other}\n"
    assert m.sh(L, f"relation-list -r {env.rid} --format json") == f'["{env.other}"]\n'
    # -r accepts N, ep:N and anything:N (§3.3)
    assert m.sh(L, f"relation-list -r {env.num}") == f"{env.other}\n"
    assert m.sh(L, f"relation-list -r anything:{env.num}") == f"{env.other}\n"
    assert m.sh(L, f"relation-list --relation={env.rid}") == f"{env.other}\n"
    # --app: remote application name
    assert m.sh(L, f"relation-list -r {env.rid} --app") == f"{OTHER}\n"
    assert m.sh(L, f"relation-list -r {env.rid} --app --format json") == f'"{OTHER}"\n'
    assert m.sh(L, f"relation-list -r {env.rid} --app=True") == f"{OTHER}\n"
    # other side: both units, sorted, one per line
    assert m.sh(env.other, f"relation-list -r {env.orid}") == "".join(
        f"{u}\n" for u in sorted([L, F]))
    # peers: the other peer, never self; --app is the own app
    assert m.sh(L, f"relation-list -r {env.peer_rid} --format json") == f'["{F}"]\n'
    assert m.sh(F, f"relation-list -r {env.peer_rid} --format json") == f'["{L}"]\n'
    assert m.sh(F, f"relation-list -r {env.peer_rid} --app") == f"{APP}\n"


def test_relation_id_errors(env):
    m, L = env.m, env.leader
    err(m.exec(L, "relation-list"), "no relation id specified", 2)
    err(m.exec(L, "relation-list -r one"), 'invalid value "one" for option -r: invalid relation id', 2)
    err(m.exec(L, "relation-list -r 999"), 'invalid value "999" for option -r: relation not found', 2)
    err(m.exec(L, "relation-get -r 999 - other/0"), 'invalid value "999" for option -r: relation not found', 2)
    err(m.exec(L, "relation-get"), "no relation id specified", 2)
    err(m.exec(L, "relation-set foo=bar"), "no relation id specified", 2)


# --- relation-get (§3.3) ------------------------------------------------------


def test_relation_get_formats(env):
    m, L, O = env.m, env.leader, env.other
    addr = m.status()["applications"][OTHER]["units"][O]["public-address"]
    data = json.loads(m.sh(L, f"relation-get --format json -r {env.rid} - {O}"))
    assert data["private-address"] == addr
    assert data["ingress-address"] == addr
    assert data["egress-subnets"] == f"{addr}/32"
    assert all(isinstance(v, str) for v in data.values())
    # "-" = all keys
    assert json.loads(m.sh(L, f"relation-get -r {env.rid} --format=json - {O}")) == data
    # smart format of a map is YAML
    assert yaml.safe_load(m.sh(L, f"relation-get -r {env.rid} - {O}")) == data
    # one key: the string plus newline
    assert m.sh(L, f"relation-get -r {env.rid} private-address {O}") == f"{addr}\n"
    assert m.sh(L, f"relation-get -r {env.rid} --format json private-address {O}") == f'"{addr}"\n'
    # a missing key: nothing (smart) / null (json), not an error
    assert m.sh(L, f"relation-get -r {env.rid} no-such-key {O}") == ""
    assert m.sh(L, f"relation-get -r {env.rid} --format json no-such-key {O}") == "null\n"


def test_relation_get_errors(env):
    m, L, F, O = env.m, env.leader, env.follower, env.other
    r = env.rid
    err(m.exec(L, f"relation-get -r {r} -"), "no unit or application specified", 2)
    err(m.exec(L, f"relation-get -r {r} - {OTHER}"), f'expected unit name, got application name "{OTHER}"', 2)
    err(m.exec(L, f"relation-get -r {r} - unit//0"), 'invalid unit name "unit//0"', 2)
    err(m.exec(L, f"relation-get -r {r} - bad/0"), "unknown unit bad/0", 1)
    err(m.exec(L, f"relation-get -r {r} - {O} args"), 'unrecognized args: ["args"]', 2)
    # follower reading its own app databag on a non-peer relation (§6)
    err(m.exec(F, f"relation-get -r {r} --app - {APP}"), "permission denied", 1)
    # ... but the leader may, and a follower may on the peer relation
    assert m.exec(L, f"relation-get -r {r} --app --format json - {APP}").rc == 0
    assert m.exec(F, f"relation-get -r {env.peer_rid} --app --format json - {APP}").rc == 0


def test_relation_get_app_flag_converts_unit(env):
    m, L, O = env.m, env.leader, env.other
    m.sh(O, f"relation-set -r {env.orid} --app conv=1")
    # --app with a unit name reads that unit's application (§3.3)
    assert m.sh(L, f"relation-get -r {env.rid} --app conv {O}") == "1\n"
    assert m.sh(L, f"relation-get -r {env.rid} --app conv {OTHER}") == "1\n"
    m.sh(O, f"relation-set -r {env.orid} --app conv=")


# --- relation-set (§3.3) -------------------------------------------------------


def test_relation_set_unit_and_delete(env):
    m, L, O = env.m, env.leader, env.other
    m.sh(L, f"relation-set -r {env.rid} alpha=1 beta='two words'")
    got = json.loads(m.sh(O, f"relation-get --format json -r {env.orid} - {L}"))
    assert got["alpha"] == "1" and got["beta"] == "two words"
    m.sh(L, f"relation-set -r {env.rid} alpha=")  # empty value deletes
    got = json.loads(m.sh(O, f"relation-get --format json -r {env.orid} - {L}"))
    assert "alpha" not in got and got["beta"] == "two words"
    m.sh(L, f"relation-set -r {env.rid} beta=")


def test_relation_set_file_and_stdin(env):
    m, L, O = env.m, env.leader, env.other
    m.sh(L, f"""echo '{{"fa": "1", "fb": "2"}}' | relation-set -r {env.rid} --file - fb=override""")
    got = json.loads(m.sh(O, f"relation-get --format json -r {env.orid} - {L}"))
    assert got["fa"] == "1"
    assert got["fb"] == "override"  # command-line pairs override file entries
    m.sh(L, f"printf 'fc: yaml\\n' > /tmp/tt-rs.yaml && relation-set -r {env.rid} --file /tmp/tt-rs.yaml")
    assert m.sh(O, f"relation-get -r {env.orid} fc {L}") == "yaml\n"
    m.sh(L, f"relation-set -r {env.rid} fa= fb= fc=")


def test_relation_set_app_leader_only(env):
    m, L, F, O = env.m, env.leader, env.follower, env.other
    err(m.exec(F, f"relation-set -r {env.rid} --app x=1"), "cannot write relation settings", 1)
    m.sh(L, f"relation-set -r {env.rid} --app x=1")
    assert m.sh(O, f"relation-get -r {env.orid} --app x {APP}") == "1\n"
    # leader reads its own app databag back
    assert m.sh(L, f"relation-get -r {env.rid} --app x {APP}") == "1\n"
    # peers: leader only, too
    err(m.exec(F, f"relation-set -r {env.peer_rid} --app y=1"), "cannot write relation settings", 1)
    m.sh(L, f"relation-set -r {env.rid} --app x=")
    assert m.sh(O, f"relation-get -r {env.orid} --app --format json x {APP}") == "null\n"


def test_relation_set_format_deprecated(env):
    m, L = env.m, env.leader
    r = m.exec(L, f"relation-set -r {env.rid} --format json dep=1")
    assert r.rc == 0
    assert '--format flag deprecated for command "relation-set"' in r.stderr
    m.sh(L, f"relation-set -r {env.rid} dep=")


def test_json_escaping_and_sorting(env):
    m, L, O = env.m, env.leader, env.other
    m.sh(L, f"relation-set -r {env.rid} 'zz=<a&b>' 'aa=x'")
    raw = m.sh(O, f"relation-get --format json -r {env.orid} - {L}")
    # Go json.Marshal: <, >, & escaped; keys sorted
    assert '"zz":"\\u003ca\\u0026b\\u003e"' in raw
    keys = list(json.loads(raw))
    assert keys == sorted(keys)
    assert raw.startswith('{"aa":"x",')
    m.sh(L, f"relation-set -r {env.rid} zz= aa=")


# --- relation tools inside a relation hook ---------------------------------


def test_relation_tools_default_to_hook_relation(env):
    m, L, O = env.m, env.leader, env.other
    m.install_script(O, "db-client-relation-changed", r"""
out="$JUJU_CHARM_DIR/out-changed.jsonl"
if [ -n "$JUJU_REMOTE_UNIT" ]; then
  printf '{"remote":"%s","ids":%s,"list":%s,"get":%s}\n' "$JUJU_REMOTE_UNIT" \
    "$(relation-ids --format json)" "$(relation-list --format json)" \
    "$(relation-get --format json)" >> "$out"
else
  printf '{"remote":"","app":"%s","get":%s}\n' "$JUJU_REMOTE_APP" \
    "$(relation-get --format json)" >> "$out"
fi
""")
    try:
        m.sh(L, f"relation-set -r {env.rid} marker=hook-default")
        rec = poll(lambda: [json.loads(x) for x in (m.read_file(O, "out-changed.jsonl") or "").splitlines()
                            if '"hook-default"' in x], 60, what="changed hook on other/0")[0]
        assert rec["remote"] == L
        assert rec["ids"] == [env.orid]
        assert rec["list"] == sorted([L, env.follower])
        assert rec["get"]["marker"] == "hook-default"
        # app data change: JUJU_REMOTE_UNIT empty; relation-get implies --app
        m.sh(L, f"relation-set -r {env.rid} --app appmarker=hook-app")
        rec = poll(lambda: [json.loads(x) for x in (m.read_file(O, "out-changed.jsonl") or "").splitlines()
                            if '"hook-app"' in x], 60, what="app changed hook on other/0")[0]
        assert rec["remote"] == "" and rec["app"] == APP
        assert rec["get"]["appmarker"] == "hook-app"
    finally:
        m.remove_script(O, "db-client-relation-changed")
        m.sh(L, f"relation-set -r {env.rid} marker= && relation-set -r {env.rid} --app appmarker=")


# --- config-get (§3.4) ---------------------------------------------------------


def test_config_get(env):
    m, L = env.m, env.leader
    assert m.sh(L, "config-get --format json") == (
        '{"count":3,"enabled":true,"name":"tester","ratio":0.5}\n')
    assert m.sh(L, "config-get name") == "tester\n"
    assert m.sh(L, "config-get count") == "3\n"
    assert m.sh(L, "config-get enabled") == "True\n"
    assert m.sh(L, "config-get ratio") == "0.5\n"
    assert m.sh(L, "config-get --format json count") == "3\n"
    assert m.sh(L, "config-get --format json enabled") == "true\n"
    # unknown key: nothing / null, never an error
    assert m.sh(L, "config-get no-such-option") == ""
    assert m.sh(L, "config-get --format json no-such-option") == "null\n"
    # unset option without default: not listed, but shown by --all as null
    assert m.sh(L, "config-get nodefault") == ""
    assert json.loads(m.sh(L, "config-get --all --format json")) == {
        "count": 3, "enabled": True, "name": "tester", "ratio": 0.5,
        "nodefault": None, "creds": None}
    assert json.loads(m.sh(L, "config-get -a --format=json"))["nodefault"] is None
    assert yaml.safe_load(m.sh(L, "config-get")) == {
        "count": 3, "enabled": True, "name": "tester", "ratio": 0.5}


def test_config_get_after_juju_config(env):
    m, L, F = env.m, env.leader, env.follower
    m.juju("config", APP, "nodefault=hello", "count=7", "enabled=false")
    try:
        for u in (L, F):
            got = poll(lambda u=u: (lambda d: d if d.get("count") == 7 else None)(
                json.loads(m.sh(u, "config-get --format json"))), 60, what="new config")
            assert got == {"count": 7, "enabled": False, "name": "tester",
                           "ratio": 0.5, "nodefault": "hello"}
        cfg = json.loads(m.juju("config", "--format", "json", APP).stdout)
        assert cfg["application"] == APP and cfg["charm"] == "tool-tester"
        s = cfg["settings"]
        assert s["count"]["value"] == 7 and s["count"]["type"] == "int"
        assert s["count"]["source"] == "user" and s["count"]["default"] == 3
        assert s["name"] == {**s["name"], "value": "tester", "type": "string",
                             "default": "tester", "source": "default"}
        assert s["ratio"]["type"] == "float" and s["enabled"]["type"] == "boolean"
        assert s["creds"]["type"] == "secret" and s["creds"]["source"] == "unset"
        assert "value" not in s["creds"]
    finally:
        m.juju("config", APP, "--reset", "nodefault,count,enabled")
    poll(lambda: m.sh(L, "config-get count") == "3\n", 60, what="config reset")


# --- leadership (§3.4) --------------------------------------------------------


def test_is_leader(env):
    m = env.m
    assert m.sh(env.leader, "is-leader") == "True\n"
    assert m.sh(env.follower, "is-leader") == "False\n"
    assert m.sh(env.leader, "is-leader --format json") == "true\n"
    assert m.sh(env.follower, "is-leader --format=json") == "false\n"


def test_leader_get_set(env):
    m, L, F = env.m, env.leader, env.follower
    m.sh(L, "leader-set lk=lv other=o")
    assert m.sh(L, "leader-get lk") == "lv\n"
    assert m.sh(F, "leader-get lk") == "lv\n"
    got = json.loads(m.sh(F, "leader-get --format json"))
    assert got["lk"] == "lv" and got["other"] == "o"
    assert json.loads(m.sh(F, "leader-get --format json -"))["lk"] == "lv"
    err(m.exec(F, "leader-set lk=x"),
        "cannot write leadership settings: cannot write settings: not the leader", 1)
    m.sh(L, "leader-set lk=")  # empty value deletes
    assert m.sh(F, "leader-get --format json lk") == "null\n"
    m.sh(L, "leader-set other=")


def test_leader_set_fires_leader_settings_changed(env):
    m, L, F = env.m, env.leader, env.follower
    since = len(m.events(F))
    m.sh(L, "leader-set ping=1")
    m.wait_event(F, lambda e: e["event"] == "leader-settings-changed", since=since)
    m.sh(L, "leader-set ping=")


# --- status (§3.4) ---------------------------------------------------------------


def test_status_set_get(env):
    m, F = env.m, env.follower
    try:
        m.sh(F, 'status-set maintenance "doing things"')
        assert m.sh(F, "status-get") == "maintenance\n"
        assert m.sh(F, "status-get --include-data --format json") == (
            '{"message":"doing things","status":"maintenance","status-data":{}}\n')
        assert m.sh(F, "status-get --include-data --format json --application=false") == (
            '{"message":"doing things","status":"maintenance","status-data":{}}\n')
        st = m.status()["applications"][APP]["units"][F]["workload-status"]
        assert st["current"] == "maintenance" and st["message"] == "doing things"
        # ops' argv form
        m.sh(F, 'status-set --application=False blocked -- "-dash message"')
        assert json.loads(m.sh(F, "status-get --include-data --format json"))["message"] == "-dash message"
    finally:
        m.sh(F, "status-set active")


def test_status_set_errors(env):
    m, F = env.m, env.follower
    err(m.exec(F, "status-set error"),
        'invalid status "error", expected one of [maintenance blocked waiting active]', 2)
    r = m.exec(F, "status-set")
    assert r.rc == 2 and r.stdout == ""
    assert r.stderr.startswith("ERROR invalid args, require <status> [message]")
    err(m.exec(F, "status-set --application active"), "this unit is not the leader", 1)
    err(m.exec(F, "status-get --application"),
        "finding application status: this unit is not the leader", 1)


def test_application_status(env):
    m, L, F = env.m, env.leader, env.follower
    try:
        m.sh(L, 'status-set --application blocked "app message"')
        got = json.loads(m.sh(L, "status-get --application --include-data --format json"))
        assert list(got) == ["application-status"]
        a = got["application-status"]
        assert (a["status"], a["message"], a["status-data"]) == ("blocked", "app message", {})
        assert sorted(a["units"]) == sorted([L, F])  # units inside application-status
        for u in a["units"].values():
            assert set(u) == {"message", "status", "status-data"}
            assert u["status"] == "active"
        st = m.status()["applications"][APP]["application-status"]
        assert st["current"] == "blocked" and st["message"] == "app message"
    finally:
        m.sh(L, 'status-set --application active ""')


def test_application_version_set(env):
    m, L = env.m, env.leader
    m.sh(L, "application-version-set -- 1.2.3-tt")
    assert m.status()["applications"][APP]["version"] == "1.2.3-tt"
    su = json.loads(m.juju("show-unit", L, "--format", "json").stdout)
    assert su[L]["workload-version"] == "1.2.3-tt"


# --- juju-log --------------------------------------------------------------------


def test_juju_log(env):
    m, L = env.m, env.leader
    assert m.exec(L, "juju-log -l WARNING -- tt-log-marker-one").stdout == ""
    r = m.exec(L, "juju-log --log-level bogus tt-log-marker-two")  # falls back to INFO
    assert r.rc == 0 and r.stdout == ""
    app, n = L.split("/")
    pat1 = re.compile(rf"^unit-{app}-{n}: \d\d:\d\d:\d\d WARNING unit\.{re.escape(L)}\.juju-log tt-log-marker-one$", re.M)
    pat2 = re.compile(rf"^unit-{app}-{n}: \d\d:\d\d:\d\d INFO unit\.{re.escape(L)}\.juju-log tt-log-marker-two$", re.M)
    poll(lambda: pat1.search(m.debug_log()) and pat2.search(m.debug_log()), 30,
         what="juju-log lines in debug-log")


# --- ports (§3.5) ------------------------------------------------------------------


def test_ports(env):
    m, F = env.m, env.follower
    try:
        assert m.sh(F, "opened-ports") == ""
        assert m.sh(F, "opened-ports --format json") == "[]\n"
        # pending open-port is not shown by opened-ports in the same context
        assert m.sh(F, "open-port 5432 && opened-ports --format json") == "[]\n"
        assert m.sh(F, "opened-ports") == "5432/tcp\n"
        m.sh(F, "open-port 8000-8999/udp && open-port icmp")
        assert sorted(json.loads(m.sh(F, "opened-ports --format json"))) == sorted(
            ["5432/tcp", "8000-8999/udp", "icmp"])
        assert sorted(json.loads(m.sh(F, "opened-ports --endpoints --format json"))) == sorted(
            ["5432/tcp (*)", "8000-8999/udp (*)", "icmp (*)"])
        m.sh(F, "open-port --endpoints db,peers 9000/tcp")
        eps = json.loads(m.sh(F, "opened-ports --endpoints --format json"))
        assert "9000/tcp (db, peers)" in eps
        st = m.status()["applications"][APP]["units"][F]
        assert "5432/tcp" in st.get("open-ports", [])
        su = json.loads(m.juju("show-unit", F, "--format", "json").stdout)[F]
        assert "5432/tcp" in su["opened-ports"]
        m.sh(F, "close-port 8000-8999/udp && close-port icmp && close-port --endpoints db,peers 9000")
        assert m.sh(F, "opened-ports") == "5432/tcp\n"
    finally:
        m.exec(F, "close-port 5432; close-port 8000-8999/udp; close-port icmp; "
                  "close-port --endpoints db,peers 9000")
    assert m.sh(F, "opened-ports") == ""


# --- unit-get / network-get (§3.4, §3.5) ----------------------------------------


def test_unit_get(env):
    m, L = env.m, env.leader
    addr = m.status()["applications"][APP]["units"][L]["public-address"]
    assert m.sh(L, "unit-get private-address") == f"{addr}\n"
    assert m.sh(L, "unit-get public-address") == f"{addr}\n"
    assert m.sh(L, "unit-get --format json private-address") == f'"{addr}"\n'
    err(m.exec(L, "unit-get foo"), 'unknown setting "foo"', 2)


def test_network_get(env):
    m, L = env.m, env.leader
    addr = m.status()["applications"][APP]["units"][L]["public-address"]
    got = json.loads(m.sh(L, "network-get --format json db"))
    assert set(got) == {"bind-addresses", "egress-subnets", "ingress-addresses"}
    assert got["ingress-addresses"][0] == addr
    assert got["egress-subnets"] == [f"{addr}/32"]
    ba = got["bind-addresses"][0]
    assert set(ba) == {"mac-address", "interface-name", "addresses"}
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", ba["mac-address"])
    assert ba["interface-name"]
    a0 = ba["addresses"][0]
    assert set(a0) == {"hostname", "value", "cidr"}
    assert a0["value"] == addr and "/" in a0["cidr"]
    # with -r, and for the peer endpoint
    assert json.loads(m.sh(L, f"network-get --format json -r {env.rid} db"))["ingress-addresses"] == [addr]
    assert m.exec(L, "network-get --format json peers").rc == 0
    # one address flag: that single value
    assert m.sh(L, "network-get db --ingress-address") == f"{addr}\n"
    assert m.sh(L, "network-get db --bind-address") == f"{addr}\n"
    assert m.sh(L, "network-get --format json db --egress-subnets") == f'["{addr}/32"]\n'
    err(m.exec(L, "network-get bogus"), 'no network config found for binding "bogus"', 1)


# --- action tools (§3.9) -------------------------------------------------------


@pytest.mark.parametrize("cmd", ["action-get", "action-set a=b", "action-log hello",
                                 "action-fail"])
def test_action_tools_outside_action(env, cmd):
    err(env.m.exec(env.leader, cmd), "not running an action", 1)


def test_action_get_inside_action(env):
    m, L = env.m, env.leader
    rc, out, e = m.run_tool(L, "action-get --format json")
    assert (rc, e) == (0, "")
    assert json.loads(out) == {"cmd": "action-get --format json"}
    rc, out, _ = m.run_tool(L, "action-get cmd")
    assert out == "action-get cmd\n"
    rc, out, _ = m.run_tool(L, "action-get --format json nosuch")
    assert out == "null\n"


def test_action_get_defaults_and_types(env):
    m, L = env.m, env.leader
    r = m.run(L, "echo", "message=hi")
    assert r.status == "completed", r.cli
    assert r.results["message"] == "hi"
    assert r.results["count"] == "1"  # schema default inserted; action-set values are strings
    assert r.results["return-code"] == 0
    log = r.task["log"]
    assert len(log) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+ echo: hi", log[0]), log
    r = m.run(L, "echo", "message=x", "count=3")
    assert r.results["count"] == "3"


def test_run_params_file(env, tmp_path):
    m, L = env.m, env.leader
    f = tmp_path / "params.yaml"
    f.write_text("message: from-file\ncount: 5\n")
    r = m.run(L, "echo", extra=("--params", str(f)))
    assert r.status == "completed", (r.cli.stdout, r.cli.stderr)
    assert (r.results["message"], r.results["count"]) == ("from-file", "5")
    # --string-args keeps k=v values as strings: "5" is not an integer
    r = m.run(L, "echo", "message=x", "count=5", extra=("--string-args",))
    assert r.cli.returncode != 0 and "task failed" not in r.cli.stderr


def test_action_set_nesting_and_reserved(env):
    m, L = env.m, env.leader
    r = m.run(L, "run", "cmd=action-set a.b=1 a.c=2 top=t", extra=("--string-args",))
    assert r.status == "completed"
    assert r.results["a"] == {"b": "1", "c": "2"}
    assert r.results["top"] == "t"
    for key in ("stdout", "stdout-encoding", "stderr", "stderr-encoding"):
        rc, out, e = m.run_tool(L, f"action-set {key}=x")
        # an Init (argument validation) error in Juju's action-set: exit 2
        assert (rc, out, e) == (2, "", f'ERROR cannot set reserved action key "{key}"\n')
    rc, out, e = m.run_tool(L, "action-set Bad_Key=1")
    assert (rc, out) == (2, "")
    assert e == ('ERROR key "Bad_Key" must start and end with lowercase alphanumeric, '
                 'and contain only lowercase alphanumeric, hyphens and periods\n')


def test_action_log_and_fail_inside_action(env):
    m, L = env.m, env.leader
    r = m.run(L, "run", "cmd=action-log step-one && action-log step-two && action-fail 'went wrong'",
              extra=("--string-args",))
    assert r.status == "failed"
    assert r.task["message"] == "went wrong"
    assert r.results["rc"] == "0"
    assert [line.split(" ", 4)[-1] for line in r.task["log"]] == ["step-one", "step-two"]
    if r.cli.returncode != 0:
        assert "task failed" in r.cli.stderr
    r = m.run(L, "run", "cmd=action-fail", extra=("--string-args",))
    assert r.status == "failed"
    assert r.task["message"] == "action failed without reason given, check action for errors"


# --- unit state (§3.6) --------------------------------------------------------------


def test_state_tools(env):
    m, L, F = env.m, env.leader, env.follower
    assert m.sh(L, "state-get --format json") == "{}\n"
    m.sh(L, "state-set sa=1 sb='two words'")
    assert m.sh(L, "state-get sa") == "1\n"
    assert m.sh(L, "state-get --format json") == '{"sa":"1","sb":"two words"}\n'
    assert m.sh(L, "state-get --format json -") == '{"sa":"1","sb":"two words"}\n'
    # read-your-writes within one context
    assert m.sh(L, "state-set sc=3 && state-get sc") == "3\n"
    # missing key: nothing / null; --strict makes it an error
    assert m.sh(L, "state-get nosuch") == ""
    assert m.sh(L, "state-get --format json nosuch") == "null\n"
    r = m.exec(L, "state-get --strict nosuch")
    assert r.rc != 0 and r.stderr.startswith("ERROR ")
    # --file - with JSON on stdin (ops' form)
    m.sh(L, """echo '{"sd": "4"}' | state-set --file -""")
    assert m.sh(L, "state-get sd") == "4\n"
    # not visible to other units
    assert m.sh(F, "state-get --format json") == "{}\n"
    m.sh(L, "state-delete sa && state-delete sb && state-delete sc && state-delete sd")
    assert m.sh(L, "state-get --format json") == "{}\n"


# --- goal-state (§3.4) ------------------------------------------------------------


def test_goal_state(env):
    m, L, F, O = env.m, env.leader, env.follower, env.other
    since_re = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
    gs = json.loads(m.sh(L, "goal-state --format json"))
    assert sorted(gs["units"]) == sorted([L, F])
    for u in gs["units"].values():
        assert u["status"] == "active"
        assert since_re.fullmatch(u["since"]), u["since"]
    db = gs["relations"]["db"]
    assert db[OTHER]["status"] == "joined"
    assert O in db
    assert since_re.fullmatch(db[OTHER]["since"])
    # default format is YAML. `since` is printed plain (yaml.v2 does not take
    # "2006-01-02 15:04:05Z" for a timestamp), so load everything as strings.
    def strs(x):
        return {k: strs(v) for k, v in x.items()} if isinstance(x, dict) else str(x)
    assert yaml.load(m.sh(L, "goal-state"), Loader=yaml.BaseLoader) == strs(gs)
