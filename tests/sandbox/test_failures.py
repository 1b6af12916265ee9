"""Failures: failing and hanging hooks, failing actions, unknown targets,
controller restart.

Reference §3.2 (transactional vs immediate), §5.7 (failure and retry), §7
(juju exec commits regardless), §8, §9.3 (task JSON / `task failed`).
"""

import json
import types

import pytest

from conftest import all_active, all_agents_idle, any_error, poll, restart_controller

APP = "fl"
OTHER = "flb"


@pytest.fixture(scope="module")
def env(model):
    model.deploy("tool-tester", APP)
    model.deploy("tool-tester", OTHER)
    model.juju("integrate", f"{APP}:db", f"{OTHER}:db-client")
    model.wait(lambda s: all_active(s, APP, OTHER) and all_agents_idle(s, APP, OTHER),
               error=any_error, timeout=180)
    u, o = model.units(APP)[0], model.units(OTHER)[0]
    poll(lambda: model.sh(o, "relation-list -r $(relation-ids db-client)").strip() == u, 60,
         what="relation joined")
    rid = model.relation_id(u, "db")
    return types.SimpleNamespace(m=model, u=u, o=o, rid=rid, orid="db-client:" + rid.split(":")[1])


def workload(m, unit):
    st = m.status()
    app = unit.split("/")[0]
    return st["applications"][app]["units"][unit]


def in_error(m, unit, hook):
    def check(s):
        u = s["applications"][unit.split("/")[0]]["units"][unit]
        ws = u["workload-status"]
        return ws["current"] == "error" and ws.get("message") == f'hook failed: "{hook}"'
    return check


def not_in_error(unit):
    def check(s):
        u = s["applications"][unit.split("/")[0]]["units"][unit]
        return u["workload-status"]["current"] != "error" and u["juju-status"]["current"] == "idle"
    return check


FAILING_SCRIPT = r"""
v=$(config-get name)
relation-set -r "$(relation-ids db)" attempt="$v"
state-set attempt="$v"
open-port 4321
secret-add --owner unit --label "fail-$v" kkk=v >/dev/null
application-version-set "ver-$v"
status-set maintenance "inside config-changed $v"
if [ -e "$JUJU_CHARM_DIR/block" ]; then echo "blocked on purpose" >&2; exit 1; fi
exit 0
"""


def test_failing_hook_discards_writes_and_is_retried(env):
    m, u, o = env.m, env.u, env.o
    m.write_file(u, "block", "1")
    m.install_script(u, "config-changed", FAILING_SCRIPT)
    since = len(m.events(u))
    try:
        m.juju("config", APP, "name=try1")
        st = m.wait(in_error(m, u, "config-changed"), timeout=60)
        unit = st["applications"][APP]["units"][u]
        # §5.7: workload error with the hook name; the agent itself is idle
        assert unit["juju-status"]["current"] == "idle"
        # transactional writes of the failed hook are gone ...
        assert m.sh(o, f"relation-get -r {env.orid} attempt {u}") == ""
        assert m.sh(u, "state-get attempt") == ""
        assert "4321/tcp" not in json.loads(m.sh(u, "opened-ports --format json"))
        r = m.exec(u, "secret-get --label fail-try1")
        assert r.rc == 1 and "not found" in r.stderr
        # ... immediate ones stay (§3.2)
        assert st["applications"][APP]["version"] == "ver-try1"
        # the condition goes away: the retry succeeds and commits
        m.remove_file(u, "block")
        m.wait(not_in_error(u), timeout=120)
        assert m.sh(o, f"relation-get -r {env.orid} attempt {u}") == "try1\n"
        assert m.sh(u, "state-get attempt") == "try1\n"
        assert "4321/tcp" in json.loads(m.sh(u, "opened-ports --format json"))
        assert m.sh(u, "secret-get --label fail-try1 kkk") == "v\n"
        assert m.hooks(u, since).count("config-changed") >= 2
        ws = workload(m, u)["workload-status"]
        assert (ws["current"], ws["message"]) == ("maintenance", "inside config-changed try1")
    finally:
        m.remove_script(u, "config-changed")
        m.remove_file(u, "block")
        m.exec(u, "close-port 4321; state-delete attempt; "
                  f"relation-set -r {env.rid} attempt=; status-set active")


def test_fail_counter_and_error_blocks_hooks_not_actions(env):
    m, u, o = env.m, env.u, env.o
    m.write_file(u, "fail/config-changed", "1000")
    since = len(m.events(u))
    try:
        m.juju("config", APP, "name=try2")
        m.wait(in_error(m, u, "config-changed"), timeout=60)
        # while in error, actions run ...
        r = m.run(u, "echo", "message=in-error")
        assert r.status == "completed" and r.results["message"] == "in-error"
        # ... but other hooks do not: a remote write is held back
        m.sh(o, f"relation-set -r {env.orid} during-error=1")
        m.write_file(u, "fail/config-changed", "0")
        m.wait(not_in_error(u), timeout=120)
        m.wait_event(u, lambda e: e["event"] == "db-relation-changed", since=since, timeout=60)
        hooks = m.hooks(u, since)
        first_ok = max(i for i, h in enumerate(hooks) if h == "config-changed")
        # every config-changed before the successful one failed; no other hook ran in between
        assert set(hooks[:first_ok + 1]) == {"config-changed"}, hooks
        assert "db-relation-changed" in hooks[first_ok + 1:], hooks
    finally:
        m.remove_file(u, "fail/config-changed")
        m.sh(o, f"relation-set -r {env.orid} during-error=")


def test_resolve(env):
    m, u = env.m, env.u
    m.juju("model-config", "automatically-retry-hooks=false")
    m.write_file(u, "fail/config-changed", "1000")
    since = len(m.events(u))
    try:
        m.juju("config", APP, "name=resolve1")
        m.wait(in_error(m, u, "config-changed"), timeout=60)
        # --no-retry: the failed hook is skipped, the unit carries on
        m.juju("resolve", "--no-retry", u)
        m.wait(not_in_error(u), timeout=60)
        assert m.hooks(u, since).count("config-changed") == 1
        assert m.read_file(u, "fail/config-changed").strip() == "999"
        # plain resolve re-runs the hook now (no automatic retry is configured)
        m.write_file(u, "fail/config-changed", "1")
        since = len(m.events(u))
        m.juju("config", APP, "name=resolve2")
        m.wait(in_error(m, u, "config-changed"), timeout=60)
        m.juju("resolve", u)
        m.wait(not_in_error(u), timeout=60)
        assert m.hooks(u, since).count("config-changed") == 2
        p = m.juju("resolve", u, check=False)  # not in error any more
        assert p.returncode != 0 and p.stderr.startswith("ERROR ")
    finally:
        m.remove_file(u, "fail/config-changed")
        m.juju("model-config", "--reset", "automatically-retry-hooks")
        m.juju("config", APP, "--reset", "name")


def test_hanging_hook_times_out(env):
    m, u, o = env.m, env.u, env.o
    # sandbox-only model key; real Juju has no hook timeout.
    m.juju("model-config", "sandbox-hook-timeout=5s")
    m.sh(u, f"relation-set -r {env.rid} before-hang=kept")
    m.write_file(u, "hang", "1")
    m.install_script(u, "config-changed", r"""
if [ -e "$JUJU_CHARM_DIR/hang" ]; then
  relation-set -r "$(relation-ids db)" during-hang=1
  sleep 1000 &
  wait
fi
exit 0
""")
    try:
        m.juju("config", APP, "name=hang1")
        m.wait(in_error(m, u, "config-changed"), timeout=90)
        # the hook's process tree is gone
        r = m.exec(u, "pgrep -f 'sleep 1000'")
        assert r.rc == 1, r.stdout
        m.remove_file(u, "hang")
        m.wait(not_in_error(u), timeout=120)
        # model state intact; the killed hook's writes were discarded
        assert m.sh(o, f"relation-get -r {env.orid} before-hang {u}") == "kept\n"
        assert m.sh(o, f"relation-get -r {env.orid} during-hang {u}") == ""
        st = m.status()
        assert set(st["applications"]) >= {APP, OTHER}
    finally:
        m.remove_script(u, "config-changed")
        m.remove_file(u, "hang")
        m.juju("model-config", "--reset", "sandbox-hook-timeout")
        m.sh(u, f"relation-set -r {env.rid} before-hang=")


def test_model_config_shape(env):
    cfg = json.loads(env.m.juju("model-config", "--format", "json").stdout)
    ush = cfg["update-status-hook-interval"]
    assert set(ush) >= {"Value", "Source"}  # capitalised (§9.5)
    assert cfg["automatically-retry-hooks"]["Value"] is True


# --- actions and exec that fail (§8.2, §9.3) -----------------------------------


def test_action_nonzero_exit(env):
    m, u = env.m, env.u
    r = m.run(u, "crash")
    assert r.cli.returncode == 1
    assert "task failed" in r.cli.stderr
    assert r.status == "failed"
    assert r.task["message"] == "exit status 3"
    assert r.results["return-code"] == 3
    assert "crash: exiting 3 on purpose" in r.results["stderr"]
    assert "crash: some stdout" in r.results["stdout"]
    assert r.task["unit"] == u


def test_action_nonzero_exit_discards_writes(env):
    # juju.md 3.2: transactional writes apply only on exit 0; action-set is kept (8.2)
    m, u = env.m, env.u
    m.install_script(u, "crash", "state-set act-key=written\naction-set noted=yes\nexit 5")
    try:
        r = m.run(u, "crash")
        assert r.status == "failed" and r.results["return-code"] == 5
        assert r.results.get("noted") == "yes"
        assert m.sh(u, "state-get act-key") == ""
    finally:
        m.remove_script(u, "crash")
    m.install_script(u, "crash", "state-set act-key=written")
    try:
        r = m.run(u, "crash")
        assert r.status == "completed"
        assert m.sh(u, "state-get act-key") == "written\n"
    finally:
        m.remove_script(u, "crash")
        m.sh(u, "state-delete act-key")


def test_action_fail_exit_zero(env):
    m, u = env.m, env.u
    r = m.run(u, "fail", "message=boom")
    assert r.status == "failed"
    assert r.task["message"] == "boom"
    assert r.results["return-code"] == 0
    assert r.cli.returncode in (0, 1)
    if r.cli.returncode:
        assert "task failed" in r.cli.stderr


def test_exec_nonzero_exit(env):
    m, u = env.m, env.u
    r = m.exec(u, "echo out; echo err >&2; exit 4")
    assert r.cli.returncode == 1 and "task failed" in r.cli.stderr
    assert r.task["status"] == "completed"
    assert (r.rc, r.stdout, r.stderr) == (4, "out\n", "err\n")


def test_action_params_rejected(env):
    m, u = env.m, env.u
    since = len(m.events(u))
    for params in ((), ("message=x", "bogus=1"), ("message=x", "count=notanint")):
        r = m.run(u, "echo", *params)
        assert r.cli.returncode != 0, params
        assert "task failed" not in r.cli.stderr
        assert r.cli.stderr.startswith("ERROR ") or "ERROR" in r.cli.stderr
    # nothing ran
    assert [e for e in m.events(u)[since:] if e["kind"] == "action"] == []


def test_undefined_action(env):
    r = env.m.run(env.u, "no-such-action")
    assert r.cli.returncode != 0
    assert r.cli.stdout == ""
    assert "task failed" not in r.cli.stderr


def test_leader_target(env):
    r = env.m.run(f"{APP}/leader", "echo", "message=ldr")
    assert r.status == "completed"
    out = json.loads(r.cli.stdout)
    assert list(out) == [env.u]  # keyed by the resolved unit


# --- unknown things -------------------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (("run", "--format", "json", "nope/0", "echo", "message=x"), "nope"),
    (("exec", "--format", "json", "--unit", "nope/0", "--", "true"), "nope/0"),
    (("config", "--format", "json", "nope"), 'application "nope" not found'),
    (("config", "nope", "name=x"), 'application "nope" not found'),
    (("show-unit", "nope/0", "--format", "json"), "nope/0"),
    (("integrate", APP, "nope"), 'application "nope" not found'),
    (("remove-relation", APP, "nope"), "nope"),
    (("remove-unit", "--no-prompt", "nope/0"), "nope/0"),
    (("remove-application", "--no-prompt", "nope"), "nope"),
    (("add-unit", "nope"), 'application "nope" not found'),
    (("show-secret", "nosuch", "--format", "json"), 'secret "nosuch" not found'),
    (("grant-secret", "nosuch", APP), "nosuch"),
])
def test_unknown_targets(env, args, needle):
    cmd, rest = args[0], args[1:]
    p = env.m.juju(cmd, *rest, check=False)
    assert p.returncode != 0, p
    assert p.stderr.startswith("ERROR "), p.stderr
    assert needle in p.stderr, p.stderr
    assert "task failed" not in p.stderr


def test_unknown_relation_in_remove_relation(env):
    p = env.m.juju("remove-relation", f"{APP}:info", f"{OTHER}:info-client", check=False)
    assert p.returncode != 0 and p.stderr.startswith("ERROR ")


def test_unknown_model(env):
    from conftest import juju
    p = juju("status", "--model", "no-such-model-xyz", "--format", "json", check=False)
    assert p.returncode != 0
    assert "no-such-model-xyz" in p.stderr and "not found" in p.stderr


# --- controller restart ----------------------------------------------------------


def test_model_survives_controller_restart(env):
    m, u, o = env.m, env.u, env.o
    m.sh(u, f"relation-set -r {env.rid} survive=1 && state-set survive=2 && leader-set survive=3")
    before = m.status()
    restart_controller()
    st = m.wait(lambda s: all_agents_idle(s, APP, OTHER), timeout=120)
    assert set(st["applications"]) == set(before["applications"])
    for app in (APP, OTHER):
        assert set(st["applications"][app]["units"]) == set(before["applications"][app]["units"])
        for name, unit in st["applications"][app]["units"].items():
            b = before["applications"][app]["units"][name]
            assert unit.get("leader") == b.get("leader")
            assert unit["public-address"] == b["public-address"]
            assert unit["workload-status"]["current"] == b["workload-status"]["current"]
    assert m.sh(o, f"relation-get -r {env.orid} survive {u}") == "1\n"
    assert m.sh(u, "state-get survive") == "2\n"
    assert m.sh(u, "leader-get survive") == "3\n"
    # hooks still run
    since = len(m.events(u))
    m.juju("config", APP, "name=after-restart")
    m.wait_event(u, lambda e: e["event"] == "config-changed", since=since)
    m.juju("config", APP, "--reset", "name")
    m.sh(u, f"relation-set -r {env.rid} survive= && state-delete survive && leader-set survive=")
