"""Event ordering and hook environments.

Reference §2 (environment), §5.1-§5.3 (decision loop, lifecycle sequences,
per-relation order). The tests in this module build on each other in file
order: deploy 3 units, relate a second app, change config, add a unit,
remove it, remove the relation.
"""

import json
import re
import types

import pytest

from conftest import all_active, all_agents_idle, any_error, charm_dir, poll

APP = "ord"
OTHER = "ordb"


@pytest.fixture(scope="module")
def env(model):
    model.deploy("tool-tester", APP, num_units=3)
    model.wait(lambda s: all_active(s, APP) and all_agents_idle(s, APP) and len(model.units(APP, s)) == 3,
               error=any_error, timeout=180)
    st = model.status()
    return types.SimpleNamespace(m=model, leader=model.leader(APP, st),
                                 units=model.units(APP, st), state={})


def upto_start(hooks):
    assert "start" in hooks, hooks
    return hooks[: hooks.index("start") + 1]


def rel_events(events, rid):
    return [e for e in events if e["kind"] == "hook" and e["env"].get("JUJU_RELATION_ID") == rid]


def check_relation_order(events, rid, expect_remote):
    """created first and once; each joined X is followed (for this relation
    id) by changed X; joined exactly for the expected remote units."""
    rev = rel_events(events, rid)
    names = [e["event"].rsplit("-relation-", 1)[1] for e in rev]
    assert names and names[0] == "created", names
    assert names.count("created") == 1, names
    joined = []
    for i, (n, e) in enumerate(zip(names, rev)):
        if n == "joined":
            ru = e["env"]["JUJU_REMOTE_UNIT"]
            joined.append(ru)
            assert i + 1 < len(rev), f"no changed after joined {ru}: {names}"
            nxt = rev[i + 1]
            assert names[i + 1] == "changed", names
            assert nxt["env"]["JUJU_REMOTE_UNIT"] == ru
    assert sorted(joined) == sorted(expect_remote)


def test_deploy_sequence(env):
    m = env.m
    for u in env.units:
        hooks = m.hooks(u)
        pre = upto_start(hooks)
        lead = "leader-elected" if u == env.leader else "leader-settings-changed"
        assert pre == ["install", "peers-relation-created", lead, "config-changed", "start"], (u, hooks)
    # exactly one leader-elected across the application
    assert sum(m.hooks(u).count("leader-elected") for u in env.units) == 1


def test_hook_environment(env):
    m, u = env.m, env.units[0]
    evs = m.events(u)
    cd = charm_dir(u)
    app, n = u.split("/")
    inst = [e for e in evs if e["event"] == "install"][0]
    e = inst["env"]
    assert inst["cwd"] == cd
    assert inst["argv0"] == f"{cd}/dispatch"
    assert e["JUJU_DISPATCH_PATH"] == "hooks/install"
    assert e["JUJU_HOOK_NAME"] == "install"
    assert e["CHARM_DIR"] == e["JUJU_CHARM_DIR"] == cd
    assert e["JUJU_UNIT_NAME"] == u
    assert e["JUJU_MODEL_NAME"] == m.name
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", e["JUJU_MODEL_UUID"])
    assert e["JUJU_AGENT_SOCKET_NETWORK"] == "unix"
    assert e["JUJU_AGENT_SOCKET_ADDRESS"]
    assert e["PATH"].startswith(f"/var/lib/juju/tools/unit-{app}-{n}:")
    assert e["JUJU_CONTEXT_ID"].startswith(f"{u}-install-")
    assert re.fullmatch(r"\d+\.\d+\.\d+", e["JUJU_VERSION"])
    for k in ("JUJU_MACHINE_ID", "JUJU_PRINCIPAL_UNIT", "JUJU_AVAILABILITY_ZONE", "JUJU_API_ADDRESSES"):
        assert k in e, k
    assert e.get("JUJU_RELATION", "") == "" and e.get("JUJU_REMOTE_UNIT", "") == ""
    assert "JUJU_SANDBOX_DIR" not in e  # agent env not inherited (§1.3)
    # context ids are unique per hook
    ids = [x["env"]["JUJU_CONTEXT_ID"] for x in evs if x["kind"] == "hook"]
    assert len(ids) == len(set(ids))
    # relation-created: remote app set, remote unit empty
    cr = [x for x in evs if x["event"] == "peers-relation-created"][0]["env"]
    assert cr["JUJU_RELATION"] == "peers"
    assert re.fullmatch(r"peers:\d+", cr["JUJU_RELATION_ID"])
    assert cr["JUJU_REMOTE_APP"] == APP
    assert cr["JUJU_REMOTE_UNIT"] == ""


def test_action_environment(env):
    m, u = env.m, env.units[0]
    since = len(m.events(u))
    r = m.run(u, "echo", "message=env")
    assert r.status == "completed"
    ev = [e for e in m.events(u)[since:] if e["kind"] == "action"]
    assert len(ev) == 1
    e = ev[0]["env"]
    assert ev[0]["event"] == "echo"
    assert e["JUJU_ACTION_NAME"] == "echo"
    assert e["JUJU_DISPATCH_PATH"] == "actions/echo"
    assert e["JUJU_HOOK_NAME"] == ""
    assert e["JUJU_ACTION_UUID"] == r.task["id"]
    assert re.fullmatch(r"\d+", r.task["id"])
    assert e["JUJU_ACTION_TAG"] == f"action-{r.task['id']}"
    assert e["JUJU_CONTEXT_ID"].startswith(f"{u}-echo-")
    assert r.task["unit"] == u
    # task ids increase (§10.9)
    r2 = m.run(u, "echo", "message=env2")
    assert int(r2.task["id"]) > int(r.task["id"])


def test_peer_relation_order(env):
    m = env.m
    for u in env.units:
        evs = m.events(u)
        rid = m.relation_id(u, "peers")
        check_relation_order(evs, rid, [x for x in env.units if x != u])
        # created before start, joined after start (§5.1: start is queued
        # before relation hooks)
        hooks = [e["event"] for e in evs if e["kind"] == "hook"]
        assert hooks.index("peers-relation-created") < hooks.index("start") < hooks.index("peers-relation-joined")
    # juju-log in a relation hook is prefixed "<ep>:<id>: " (§3.4)
    u = env.units[0]
    rid = m.relation_id(u, "peers")
    log = m.debug_log()
    assert re.search(rf"^unit-{APP}-0: \d\d:\d\d:\d\d INFO unit\.{APP}/0\.juju-log {rid}: "
                     rf'TT-EVENT {{"event":"peers-relation-joined"', log, re.M), log[-2000:]
    assert re.search(rf"^unit-{APP}-0: \d\d:\d\d:\d\d INFO unit\.{APP}/0\.juju-log "
                     rf'TT-EVENT {{"event":"install"', log, re.M)


def test_cross_app_relation_order(env):
    m = env.m
    m.deploy("tool-tester", OTHER)
    m.juju("integrate", f"{APP}:db", f"{OTHER}:db-client")
    m.wait(lambda s: all_active(s, APP, OTHER) and all_agents_idle(s, APP, OTHER), error=any_error, timeout=180)
    ob = m.units(OTHER)[0]
    env.state["ob"] = ob

    def settled():
        brid = m.relation_id(ob, "db-client")
        names = [e["event"] for e in rel_events(m.events(ob), brid)]
        return brid if names.count("db-client-relation-changed") >= 3 else None
    brid = poll(settled, 60, what=f"{ob} to see all {APP} units")
    check_relation_order(m.events(ob), brid, env.units)
    n = brid.split(":")[1]
    env.state["rid"], env.state["brid"] = f"db:{n}", brid
    for u in env.units:
        poll(lambda u=u: [e["event"] for e in rel_events(m.events(u), f"db:{n}")][-1:] == ["db-relation-changed"],
             60, what=f"{u} db-relation-changed")
        check_relation_order(m.events(u), f"db:{n}", [ob])


def test_config_change_runs_config_changed_everywhere(env):
    m = env.m
    for u in env.units:
        m.install_script(u, "config-changed", 'config-get name >> "$JUJU_CHARM_DIR/config-seen"\n')
    since = {u: len(m.events(u)) for u in env.units}
    try:
        m.juju("config", APP, "name=changed-1")
        for u in env.units:
            m.wait_event(u, lambda e: e["event"] == "config-changed", since=since[u])
            # the hook saw the new value (events reflect state when they run)
            poll(lambda u=u: (m.read_file(u, "config-seen") or "").endswith("changed-1\n"), 30,
                 what=f"config-changed on {u} to see the new value")
        # setting the same value again is not a change
        m.juju("config", APP, "name=changed-1")
        m.juju("config", APP, "--reset", "name")
        for u in env.units:
            poll(lambda u=u: (m.read_file(u, "config-seen") or "").endswith("tester\n"), 30,
                 what=f"config reset seen on {u}")
            seen = m.read_file(u, "config-seen").splitlines()
            assert seen == ["changed-1", "tester"], seen
    finally:
        for u in env.units:
            m.remove_script(u, "config-changed")
            m.remove_file(u, "config-seen")


def test_added_unit_sequence(env):
    m = env.m
    ob = env.state["ob"]
    m.juju("add-unit", APP)
    st = m.wait(lambda s: len(m.units(APP, s)) == 4 and all_active(s, APP) and all_agents_idle(s, APP, OTHER),
                error=any_error, timeout=180)
    new = [u for u in m.units(APP, st) if u not in env.units]
    assert len(new) == 1
    nu = new[0]
    env.state["new"] = nu
    assert not st["applications"][APP]["units"][nu].get("leader")
    hooks = m.hooks(nu)
    pre = upto_start(hooks)
    assert pre[0] == "install"
    # relation-created for every existing relation right after install, then
    # leadership, then config-changed, start (§5.2)
    assert sorted(pre[1:3]) == ["db-relation-created", "peers-relation-created"], pre
    assert pre[3:] == ["leader-settings-changed", "config-changed", "start"], pre
    poll(lambda: len([e for e in rel_events(m.events(nu), env.state["rid"])
                      if e["event"] == "db-relation-changed"]) >= 1, 60, what=f"{nu} db changed")
    check_relation_order(m.events(nu), env.state["rid"], [ob])
    poll(lambda: len([e for e in m.events(nu) if e["event"] == "peers-relation-changed"]) >= 3, 60,
         what=f"{nu} peers changed")
    check_relation_order(m.events(nu), m.relation_id(nu, "peers"), env.units)
    # the other side saw joined then changed for the new unit
    evs = rel_events(m.events(ob), env.state["brid"])
    j = [i for i, e in enumerate(evs) if e["event"] == "db-client-relation-joined"
         and e["env"]["JUJU_REMOTE_UNIT"] == nu]
    assert len(j) == 1
    poll(lambda: len(rel_events(m.events(ob), env.state["brid"])) > j[0] + 1, 30, what="changed after joined")
    evs = rel_events(m.events(ob), env.state["brid"])
    assert evs[j[0] + 1]["event"] == "db-client-relation-changed"
    assert evs[j[0] + 1]["env"]["JUJU_REMOTE_UNIT"] == nu


def test_unit_removal_order(env):
    m = env.m
    ob, nu = env.state["ob"], env.state["new"]
    probe = r"""
printf '{"hook":"%s","remote":"%s","departing":"%s","list":%s,"get_rc":%s}\n' \
  "$JUJU_HOOK_NAME" "$JUJU_REMOTE_UNIT" "$JUJU_DEPARTING_UNIT" "$(relation-list --format json)" \
  "$(relation-get --format json - "$JUJU_REMOTE_UNIT" >/dev/null 2>&1; echo $?)" >> "$JUJU_CHARM_DIR/departed.jsonl"
"""
    m.install_script(ob, "db-client-relation-departed", probe)
    m.install_script(env.units[0], "peers-relation-departed", probe)
    try:
        m.juju("remove-unit", "--no-prompt", nu)
        m.wait(lambda s: nu not in (s["applications"][APP].get("units") or {})
               and all_agents_idle(s, APP, OTHER), timeout=180)
        # the removed unit's disk is gone: read its trace from the model log
        trace = poll(lambda: (lambda t: t if t and t[-1]["event"] == "remove" else None)(m.tt_trace(nu)),
                     30, what=f"{nu} remove hook in debug-log")
        names = [t["event"] for t in trace]
        first = min(i for i, n in enumerate(names) if n.endswith("-relation-departed"))
        tail = trace[first:]
        tnames = [t["event"] for t in tail]
        assert tnames[-2:] == ["stop", "remove"], tnames
        rel = tail[:-2]
        assert all(n.endswith(("-relation-departed", "-relation-broken")) for n in tnames[:-2]), tnames
        # peers: departed for each peer, never broken
        assert "peers-relation-broken" not in names
        assert sorted(t["remote-unit"] for t in rel if t["event"] == "peers-relation-departed") == sorted(env.units)
        # db: departed ordb/0, then broken, last for that relation
        db = [t for t in rel if t["relation-id"] == env.state["rid"]]
        assert [t["event"] for t in db] == ["db-relation-departed", "db-relation-broken"], db
        assert db[0]["remote-unit"] == ob
        # the local unit is the one going away (§2.2)
        for t in rel:
            if t["event"].endswith("-departed"):
                assert t["departing-unit"] == nu, t
        assert db[1]["remote-unit"] == "" and db[1]["remote-app"] == OTHER

        # the other side: departed for the removed unit, with it already gone
        # from relation-list but its data still readable (§5.3)
        recs = poll(lambda: [json.loads(x) for x in (m.read_file(ob, "departed.jsonl") or "").splitlines()], 30,
                    what=f"departed on {ob}")
        assert len(recs) == 1, recs
        r = recs[0]
        assert (r["hook"], r["remote"], r["departing"]) == ("db-client-relation-departed", nu, nu)
        assert nu not in r["list"] and sorted(r["list"]) == sorted(env.units)
        assert r["get_rc"] == 0
        recs = poll(lambda: [json.loads(x) for x in (m.read_file(env.units[0], "departed.jsonl") or "").splitlines()],
                    30, what=f"peers departed on {env.units[0]}")
        assert [(x["remote"], x["departing"]) for x in recs] == [(nu, nu)]
        assert nu not in recs[0]["list"]
        assert m.hooks(ob).count("db-client-relation-broken") == 0
    finally:
        m.remove_script(ob, "db-client-relation-departed")
        m.remove_script(env.units[0], "peers-relation-departed")
        m.remove_file(ob, "departed.jsonl")
        m.remove_file(env.units[0], "departed.jsonl")


def test_remove_relation_order(env):
    m = env.m
    ob = env.state["ob"]
    m.install_script(ob, "db-client-relation-broken", r"""
appw=$(relation-set --app bk=1 2>&1; echo "rc=$?")
unitw=$(relation-set bk=1 2>&1; echo "rc=$?")
printf '{"ids":%s,"list":%s}\n' "$(relation-ids --format json)" "$(relation-list --format json)" \
  > "$JUJU_CHARM_DIR/broken.json"
printf '%s\n' "$appw" > "$JUJU_CHARM_DIR/broken-appw"
printf '%s\n' "$unitw" > "$JUJU_CHARM_DIR/broken-unitw"
""")
    since = {u: len(m.events(u)) for u in env.units + [ob]}
    m.juju("remove-relation", f"{APP}:db", f"{OTHER}:db-client")
    ev = m.wait_event(ob, lambda e: e["event"] == "db-client-relation-broken", since=since[ob], timeout=90)
    assert ev["env"]["JUJU_REMOTE_UNIT"] == ""
    assert ev["env"]["JUJU_REMOTE_APP"] == APP
    assert ev["env"]["JUJU_RELATION_ID"] == env.state["brid"]
    hooks = [e for e in m.events(ob)[since[ob]:] if e["env"].get("JUJU_RELATION_ID") == env.state["brid"]]
    names = [e["event"] for e in hooks]
    assert names == ["db-client-relation-departed"] * len(env.units) + ["db-client-relation-broken"], names
    # departed in unit-name order (§5.3 "sorted by name")
    departed = [e["env"]["JUJU_REMOTE_UNIT"] for e in hooks[:-1]]
    assert departed == sorted(env.units)
    broken = json.loads(poll(lambda: m.read_file(ob, "broken.json"), 30))
    assert broken["ids"] == [env.state["brid"]]  # still listed during broken
    assert broken["list"] == []
    # in relation-broken, own unit data is still writable; app data is not (§5.3, §3.3)
    assert m.read_file(ob, "broken-unitw") == "rc=0\n"
    assert m.read_file(ob, "broken-appw") == (
        "ERROR cannot read relation application settings: permission denied (unauthorized access)\n"
        "rc=1\n")
    for u in env.units:
        ev = m.wait_event(u, lambda e: e["event"] == "db-relation-broken", since=since[u], timeout=60)
        names = [e["event"] for e in m.events(u)[since[u]:] if e["env"].get("JUJU_RELATION_ID") == env.state["rid"]]
        assert names == ["db-relation-departed", "db-relation-broken"], (u, names)
    m.remove_script(ob, "db-client-relation-broken")
    # gone for good
    assert m.sh(ob, "relation-ids db-client") == ""
    assert "db" not in (m.status()["applications"][APP].get("relations") or {})


def test_leader_removal(env):
    m = env.m
    old = m.leader(APP)
    rest = [u for u in env.units if u != old]
    since = {u: len(m.events(u)) for u in rest}
    m.juju("remove-unit", "--no-prompt", old)
    st = m.wait(lambda s: old not in (s["applications"][APP].get("units") or {})
                and all_agents_idle(s, APP) and any(d.get("leader") for d in s["applications"][APP]["units"].values()),
                timeout=180)
    new = m.leader(APP, st)
    assert new in rest
    assert [u for u, d in st["applications"][APP]["units"].items() if d.get("leader")] == [new]
    # the new leader gets leader-elected; the others leader-settings-changed (§5.2)
    ev = m.wait_event(new, lambda e: e["event"] == "leader-elected", since=since[new])
    assert ev["env"]["JUJU_UNIT_NAME"] == new
    assert m.sh(new, "is-leader") == "True\n"
    for u in rest:
        if u != new:
            assert "leader-elected" not in m.hooks(u, since[u])
            m.wait_event(u, lambda e: e["event"] == "leader-settings-changed", since=since[u])
            assert m.sh(u, "is-leader") == "False\n"
