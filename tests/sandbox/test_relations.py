"""Relations: integrate/endpoint inference, data permissions, juju-maintained
keys, app-data change events and `show-unit` relation-info.

Reference §3.3, §5.3, §6, §9.1, §9.2, §9.4.
"""

import json
import re
import types

import pytest

from conftest import all_active, all_agents_idle, any_error, poll

A = "app-a"  # 2 units
B = "app-b"  # 1 unit


@pytest.fixture(scope="module")
def env(model):
    model.deploy("tool-tester", A, num_units=2)
    model.deploy("tool-tester", B)
    model.wait(lambda s: all_active(s, A, B) and all_agents_idle(s, A, B),
               error=any_error, timeout=180)
    st = model.status()
    return types.SimpleNamespace(
        m=model, leader=model.leader(A, st), follower=model.followers(A, st)[0],
        b=model.units(B, st)[0])


def test_integrate_ambiguous(env):
    m = env.m
    # db-client (tt_db) matches both app-b:db and app-b:admin; and without
    # endpoints there are several tt_db / tt_info pairs in both directions.
    for args in ((A, B), (f"{A}:db-client", B)):
        p = m.juju("integrate", *args, check=False)
        assert p.returncode != 0
        assert "ambiguous relation" in p.stderr, p.stderr
        assert p.stderr.startswith("ERROR ")
    # no match at all: peers endpoints cannot be related across apps
    p = m.juju("integrate", f"{A}:peers", B, check=False)
    assert p.returncode != 0 and p.stderr.startswith("ERROR ")
    st = m.status()["applications"][A].get("relations") or {}
    assert set(st) <= {"peers"}, st


def test_integrate_inferred(env):
    m = env.m
    m.juju("integrate", f"{A}:db", B)          # -> app-b:db-client (only tt_db requirer)
    m.juju("integrate", f"{A}:info", B)        # -> app-b:info-client
    # the same relation again is an error ("already exists" in Juju)
    p = m.juju("integrate", f"{A}:db", f"{B}:db-client", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr
    m.wait(lambda s: all_agents_idle(s, A, B) and all_active(s, A, B),
           error=any_error, timeout=120)
    rels = m.status()["applications"][A]["relations"]
    assert rels["db"] == [{"related-application": B, "interface": "tt_db", "scope": "global"}]
    assert rels["info"] == [{"related-application": B, "interface": "tt_info", "scope": "global"}]
    assert rels["peers"] == [{"related-application": A, "interface": "tt_peers", "scope": "global"}]
    brels = m.status()["applications"][B]["relations"]
    assert brels["db-client"][0]["related-application"] == A
    assert brels["info-client"][0]["related-application"] == A
    # wait until every unit sees the other side
    for u in (env.leader, env.follower):
        poll(lambda u=u: json.loads(m.sh(u, "relation-list -r $(relation-ids db) --format json")) == [env.b],
             60, what=f"{u} joined")
    poll(lambda: json.loads(m.sh(env.b, "relation-list -r $(relation-ids db-client) --format json"))
         == sorted([env.leader, env.follower]), 60, what="app-b/0 joined")


@pytest.fixture(scope="module")
def rel(env):
    m = env.m
    rid = m.relation_id(env.leader, "db")
    n = rid.split(":")[1]
    return types.SimpleNamespace(rid=rid, brid=f"db-client:{n}",
                                 prid=m.relation_id(env.leader, "peers"))


def test_juju_maintained_keys(env, rel):
    m = env.m
    st = m.status()
    for unit, app, reader, rid, own_rid in ((env.leader, A, env.b, rel.brid, rel.rid),
                                            (env.follower, A, env.b, rel.brid, rel.rid),
                                            (env.b, B, env.leader, rel.rid, rel.brid)):
        addr = st["applications"][app]["units"][unit]["public-address"]
        data = json.loads(m.sh(reader, f"relation-get --format json -r {rid} - {unit}"))
        assert data["private-address"] == addr
        assert data["ingress-address"] == addr
        assert data["egress-subnets"] == f"{addr}/32"
        # and the unit sees the same in its own databag
        own = json.loads(m.sh(unit, f"relation-get --format json -r {own_rid} - {unit}"))
        assert own["private-address"] == addr
    # peers relation too
    addr = st["applications"][A]["units"][env.follower]["public-address"]
    data = json.loads(m.sh(env.leader, f"relation-get --format json -r {rel.prid} - {env.follower}"))
    assert data["ingress-address"] == addr


def test_non_leader_app_write_refused(env, rel):
    m = env.m
    for rid in (rel.rid, rel.prid):
        r = m.exec(env.follower, f"relation-set -r {rid} --app k=v")
        assert (r.rc, r.stderr) == (1, "ERROR cannot write relation settings\n")
    # nothing was written
    assert m.sh(env.b, f"relation-get -r {rel.brid} --app --format json k {A}") == "null\n"


def test_follower_reads_own_app_databag(env, rel):
    m = env.m
    m.sh(env.leader, f"relation-set -r {rel.rid} --app regular=1")
    m.sh(env.leader, f"relation-set -r {rel.prid} --app peer=1")
    try:
        # regular relation: refused (§6)
        r = m.exec(env.follower, f"relation-get -r {rel.rid} --app - {A}")
        assert (r.rc, r.stdout, r.stderr) == (1, "", "ERROR permission denied\n")
        # peer relation: allowed, sees the leader's write
        assert m.sh(env.follower, f"relation-get -r {rel.prid} --app peer {A}") == "1\n"
        # the remote side reads it; the leader reads it back
        assert m.sh(env.b, f"relation-get -r {rel.brid} --app regular {A}") == "1\n"
        assert m.sh(env.leader, f"relation-get -r {rel.rid} --app regular {A}") == "1\n"
        # every unit reads the remote app's databag
        m.sh(env.b, f"relation-set -r {rel.brid} --app fromb=x")
        for u in (env.leader, env.follower):
            assert m.sh(u, f"relation-get -r {rel.rid} --app fromb {B}") == "x\n"
    finally:
        m.sh(env.leader, f"relation-set -r {rel.rid} --app regular= && "
                         f"relation-set -r {rel.prid} --app peer=")
        m.sh(env.b, f"relation-set -r {rel.brid} --app fromb=")


def test_remote_app_changed_has_empty_remote_unit(env, rel):
    m = env.m
    m.wait(lambda s: all_agents_idle(s, A, B), timeout=60)
    since_b = len(m.events(env.b))
    since_f = len(m.events(env.follower))
    since_l = len(m.events(env.leader))
    m.sh(env.leader, f"relation-set -r {rel.rid} --app appkey=1")
    ev = m.wait_event(env.b, lambda e: e["event"] == "db-client-relation-changed"
                      and e["env"].get("JUJU_REMOTE_UNIT") == "", since=since_b)
    e = ev["env"]
    assert e["JUJU_REMOTE_APP"] == A
    assert e["JUJU_RELATION"] == "db-client"
    assert e["JUJU_RELATION_ID"] == rel.brid
    # peers: a leader write to the peer app databag reaches the followers
    m.sh(env.leader, f"relation-set -r {rel.prid} --app peerkey=1")
    ev = m.wait_event(env.follower, lambda e: e["event"] == "peers-relation-changed"
                      and e["env"].get("JUJU_REMOTE_UNIT") == "", since=since_f)
    assert ev["env"]["JUJU_REMOTE_APP"] == A
    # unit data change: JUJU_REMOTE_UNIT set
    m.sh(env.follower, f"relation-set -r {rel.rid} unitkey=1")
    ev = m.wait_event(env.b, lambda e: e["event"] == "db-client-relation-changed"
                      and e["env"].get("JUJU_REMOTE_UNIT") == env.follower, since=since_b)
    assert ev["env"]["JUJU_REMOTE_APP"] == A
    # A unit never gets relation-changed for its own writes (§5.3): once the
    # others have seen them, the writers have nothing new.
    m.wait(lambda s: all_agents_idle(s, A, B), timeout=60)
    own_l = [x for x in m.events(env.leader)[since_l:]
             if x["event"] in ("db-relation-changed", "peers-relation-changed")]
    assert own_l == [], own_l
    own_f = [x for x in m.events(env.follower)[since_f:]
             if x["event"] == "db-relation-changed"]
    assert own_f == [], own_f
    m.sh(env.leader, f"relation-set -r {rel.rid} --app appkey= && relation-set -r {rel.prid} --app peerkey=")
    m.sh(env.follower, f"relation-set -r {rel.rid} unitkey=")


def test_no_app_changed_before_remote_app_writes(env, rel):
    # app-b never wrote app data on db-client: app-a got no app-changed for it
    # (§5.3: "App-databag changed is not sent until the remote app has written data").
    m = env.m
    m.wait(lambda s: all_agents_idle(s, A, B), timeout=60)
    for u in (env.leader, env.follower):
        app_changed = [e for e in m.events(u) if e["event"] == "info-relation-changed"
                       and e["env"].get("JUJU_REMOTE_UNIT") == ""]
        assert app_changed == []


def test_relation_hook_env(env, rel):
    m = env.m
    evs = m.events(env.b)
    created = [e for e in evs if e["event"] == "db-client-relation-created"]
    assert len(created) == 1
    c = created[0]["env"]
    assert (c["JUJU_RELATION"], c["JUJU_RELATION_ID"], c["JUJU_REMOTE_APP"], c["JUJU_REMOTE_UNIT"]) == \
        ("db-client", rel.brid, A, "")
    joined = [e["env"] for e in evs if e["event"] == "db-client-relation-joined"]
    assert sorted(j["JUJU_REMOTE_UNIT"] for j in joined) == sorted([env.leader, env.follower])
    for j in joined:
        assert j["JUJU_REMOTE_APP"] == A and j["JUJU_RELATION_ID"] == rel.brid
        assert j["JUJU_DISPATCH_PATH"] == "hooks/db-client-relation-joined"
        assert j["JUJU_HOOK_NAME"] == "db-client-relation-joined"


def test_show_unit_relation_info(env, rel):
    m = env.m
    m.sh(env.leader, f"relation-set -r {rel.rid} --app from-a=1")
    m.sh(env.b, f"relation-set -r {rel.brid} --app from-b=2 && relation-set -r {rel.brid} bunit=3")
    try:
        def shown():
            su = json.loads(m.juju("show-unit", env.b, "--format", "json").stdout)
            info = [r for r in su[env.b]["relation-info"] if r["endpoint"] == "db-client"]
            return su if info and info[0].get("application-data", {}).get("from-a") == "1" else None
        su = poll(shown, 30, what="show-unit with app data")
        u = su[env.b]
        assert re.fullmatch(r"local:tool-tester-\d+", u["charm"]), u["charm"]
        assert u["leader"] is True
        assert u["life"] == "alive"
        assert "opened-ports" in u
        addr = u["public-address"]
        ri = [r for r in u["relation-info"] if r["endpoint"] == "db-client"][0]
        assert ri["relation-id"] == int(rel.brid.split(":")[1])
        assert ri["related-endpoint"] == "db"
        assert ri["cross-model"] is False
        # application-data is the *related* application's databag (§9.4)
        assert ri["application-data"] == {"from-a": "1"}
        lu = ri["local-unit"]
        assert lu["in-scope"] is True
        assert lu["data"]["private-address"] == addr
        assert lu["data"]["bunit"] == "3"
        assert sorted(ri["related-units"]) == sorted([env.leader, env.follower])
        for name, ru in ri["related-units"].items():
            assert ru["in-scope"] is True
            assert "ingress-address" in ru["data"]
        # the peer relation exists (and the unit is in its scope) even with no peers
        eps = sorted(r["endpoint"] for r in u["relation-info"])
        assert eps == ["db-client", "info-client", "peers"]
        # on app-a, the peer relation is listed too
        sa = json.loads(m.juju("show-unit", env.leader, "--format", "json").stdout)[env.leader]
        peer = [r for r in sa["relation-info"] if r["endpoint"] == "peers"][0]
        assert peer["related-endpoint"] == "peers"
        assert list(peer["related-units"]) == [env.follower]
    finally:
        m.sh(env.leader, f"relation-set -r {rel.rid} --app from-a=")
        m.sh(env.b, f"relation-set -r {rel.brid} --app from-b= && relation-set -r {rel.brid} bunit=")


def test_remove_relation(env, rel):
    m = env.m
    since = len(m.events(env.b))
    m.juju("remove-relation", f"{A}:info", f"{B}:info-client")
    ev = m.wait_event(env.b, lambda e: e["event"] == "info-client-relation-broken", since=since)
    assert ev["env"]["JUJU_REMOTE_UNIT"] == ""
    assert ev["env"]["JUJU_REMOTE_APP"] == A
    poll(lambda: "info" not in (m.status()["applications"][A].get("relations") or {}), 60,
         what="info relation gone from status")
    assert m.sh(env.b, "relation-ids info-client") == ""
    assert m.sh(env.b, "relation-ids db-client") == f"{rel.brid}\n"


def test_application_status_derived_from_units(env):
    # app-b's leader never set an application status: it follows the units
    # by severity (§9.2)
    m = env.m
    try:
        m.sh(env.b, 'status-set blocked "needs something"')
        st = m.status()["applications"][B]["application-status"]
        assert (st["current"], st.get("message")) == ("blocked", "needs something")
        m.sh(env.b, "status-set waiting")
        assert m.status()["applications"][B]["application-status"]["current"] == "waiting"
    finally:
        m.sh(env.b, "status-set active")
    assert m.status()["applications"][B]["application-status"]["current"] == "active"
