"""The charm in the local model: every hook goes through the relay to one resident
agent that answers with the hook tools; without an agent the relay fails so Juju retries."""

import json
import re

from conftest import REPO, all_agents_idle, any_error

APP = "postgresql"
CHARM = REPO / "build" / "postgresql.charm"
AGENT_PIDS = ("for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = pg-agent ] "
              "&& echo ${p#/proc/}; done; true")


def workload(st, unit):
    return st["applications"][APP]["units"][unit]["workload-status"]


def test_deploy_reaches_the_agent(model):
    assert CHARM.exists(), "run `make build` first"
    model.juju("deploy", str(CHARM), "--config", "profile=testing")
    unit = f"{APP}/0"
    model.wait(lambda s: unit in s["applications"][APP].get("units", {}) and
               workload(s, unit).get("current") == "active" and all_agents_idle(s, APP),
               error=any_error, timeout=240)
    pids = model.sh(unit, AGENT_PIDS).split()
    assert len(pids) == 1, pids
    # the agent mirrors hook-time messages to juju-log (a hook started its HA loop)
    log = model.juju("debug-log", "--limit", "0").stdout
    # one juju-log call per level carries every line of the hook, in any order
    entries = re.split(r"\n(?=unit-)", log)
    assert any("unit.postgresql/0.juju-log" in e and "HA loop started" in e for e in entries), \
        log[-2000:]


def test_agent_is_resident_across_hooks(model):
    unit = f"{APP}/0"
    before = model.sh(unit, AGENT_PIDS).split()
    r = model.exec(unit, 'JUJU_DISPATCH_PATH=hooks/update-status "$JUJU_CHARM_DIR/dispatch"')
    assert r.rc == 0, r.stderr
    assert model.sh(unit, AGENT_PIDS).split() == before


def test_relay_fails_when_no_agent_answers(model):
    unit = f"{APP}/0"
    r = model.exec(unit, "PG_AGENT_SOCKET=/run/no-agent/agent.sock PG_AGENT_BIN=/bin/false "
                         '"$JUJU_CHARM_DIR/dispatch"', timeout=60)
    assert r.rc != 0
    assert "cannot reach the agent" in r.stderr


def test_agent_socket_is_root_only(model):
    unit = f"{APP}/0"
    r = model.exec(unit, "stat -c '%a %U' /run/pg-agent; setpriv --reuid=65534 --regid=65534 "
                         "--clear-groups /usr/bin/python3 -c 'import socket; "
                         "s=socket.socket(socket.AF_UNIX); s.connect(\"/run/pg-agent/agent.sock\")'")
    assert r.stdout.startswith("700 root"), r.stdout
    assert r.rc != 0 and "Permission denied" in r.stderr


def test_status_json_shape(model):
    st = json.loads(model.juju("status", "--format", "json").stdout)
    assert st["applications"][APP]["charm-name"] == "postgresql"
    assert st["applications"][APP]["charm"] == "local:postgresql-0"
