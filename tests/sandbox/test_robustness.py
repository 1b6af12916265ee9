"""Robustness: no hang on commands for removed units, one ERROR line for bad input,
the dying leader keeps its lease, forced removal, machine crashes, owner-only secret info."""

import json
import os
import signal
import subprocess
import time

from conftest import all_active, all_agents_idle, any_error, juju, poll

APP = "rb"


def init_pid(st, unit):
    """Host PID of the unit machine's init (PID 1 of its namespaces)."""
    mid = st["applications"][APP]["units"][unit]["machine"]
    ns = st["machines"][mid]["instance-id"]
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = [ln for ln in f if ln.startswith("NSpid:")][0].split()
            if nspid[-1] == "1":
                return int(pid)
        except (OSError, IndexError):
            continue
    raise AssertionError(f"no init found in {ns}: {pids}")


def test_setup(model):
    model.deploy("tool-tester", APP, num_units=3)
    model.wait(lambda s: all_active(s, APP) and all_agents_idle(s, APP), error=any_error,
               timeout=180)


def test_bad_input_is_one_error_line(model):
    m = model
    for args in (["expose"], ["exec", "--wait", "bogus", "--unit", f"{APP}/0", "--", "true"]):
        r = m.juju(*args, check=False)
        assert r.returncode in (1, 2), r
        assert r.stderr.startswith("ERROR ") and "Traceback" not in r.stderr, r.stderr
    u = f"{APP}/0"
    r = m.exec(u, "printf -- '- a\\n- b\\n' > /tmp/list.yaml; leader-set --file /tmp/list.yaml")
    assert r.rc == 1 and r.stderr.startswith("ERROR ") and "Traceback" not in r.stderr
    r = m.exec(u, "printf '\\xff\\xfe' > /tmp/bad; relation-set -r $(relation-ids peers) --file /tmp/bad")
    assert r.rc == 1 and r.stderr.startswith("ERROR "), r.stderr
    # relation-set with nothing to set is a no-op (jujuc Init parses pairs only)
    assert m.exec(u, "relation-set -r $(relation-ids peers)").rc == 0


def test_secret_info_get_is_for_owners_only(model):
    m = model
    owner, other = m.units(APP)[:2]
    uri = m.sh(owner, "secret-add --owner unit val=abc").strip()
    info = json.loads(m.sh(owner, f"secret-info-get {uri} --format=json"))
    (entry,) = info.values()
    assert entry["owner"] == "unit" and entry["label"] == ""
    r = m.exec(other, f"secret-info-get {uri}")
    assert r.rc == 1 and "not found" in r.stderr, r.stderr


def test_exec_machine_has_no_hook_context(model):
    st = model.status()
    mid = st["applications"][APP]["units"][f"{APP}/0"]["machine"]
    r = model.juju("exec", "--format", "json", "--machine", mid, "--",
                   "echo ctx=${JUJU_CONTEXT_ID:-none}")
    doc = json.loads(r.stdout)
    assert doc[mid]["results"]["stdout"] == "ctx=none\n"


def test_dying_leader_keeps_its_lease_until_gone(model):
    m = model
    leader = m.leader(APP)
    m.install_script(leader, "stop", "juju-log -- \"RB-STOP-LEADER=$(is-leader)\"")
    m.juju("remove-unit", "--no-prompt", leader)
    m.wait(lambda s: leader not in s["applications"][APP]["units"] and
           any(u.get("leader") for u in s["applications"][APP]["units"].values()),
           error=any_error, timeout=120)
    log = m.juju("debug-log", "--limit", "0").stdout
    assert "RB-STOP-LEADER=True" in log, [ln for ln in log.splitlines() if "RB-STOP" in ln]


def test_exec_on_removed_unit_does_not_hang(model):
    m = model
    victim = sorted(m.units(APP))[-1]
    m.install_script(victim, "remove", "sleep 3")
    m.juju("remove-unit", "--no-prompt", victim)
    t = time.monotonic()
    r = m.juju("exec", "--unit", victim, "--", "true", check=False, timeout=60)
    assert time.monotonic() - t < 30
    # either it ran before the unit went away, or it fails cleanly
    assert r.returncode == 0 or "not found" in r.stderr, r


def test_machine_crash_reboots_and_runs_start(model):
    m = model
    m.wait(lambda s: all_active(s, APP) and all_agents_idle(s, APP), error=any_error, timeout=120)
    st = m.status()
    unit = sorted(st["applications"][APP]["units"])[0]
    since = len(m.events(unit))
    os.kill(init_pid(st, unit), signal.SIGKILL)
    poll(lambda: [e for e in m.events(unit)[since:] if e["event"] == "start"] or None, 60,
         what="start after the machine crashed")
    m.wait(lambda s: all_active(s, APP) and
           all(mm["juju-status"]["current"] == "started" for mm in s["machines"].values()),
           error=any_error, timeout=60)


def test_forced_removal_skips_failing_hooks(model):
    m = model
    m.deploy("tool-tester", "rbf", num_units=1)
    m.wait(lambda s: all_active(s, "rbf"), error=any_error, timeout=120)
    m.install_script("rbf/0", "stop", "exit 1")
    m.juju("remove-application", "--no-prompt", "--force", "rbf")
    poll(lambda: "rbf" not in m.status()["applications"] or None, 60,
         what="forced removal of rbf")
    assert "skipping it" in juju("debug-log", "--model", m.name, "--limit", "0").stdout
