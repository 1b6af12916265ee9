"""The charm built with ASan and UBSan (make charm-asan) through a whole life on one
unit: deploy, actions, a config change, hooks; the sanitizers must report nothing."""

import subprocess

from conftest import REPO, all_agents_idle, any_error

APP = "postgresql"
UNIT = f"{APP}/0"
CHARM = REPO / "build" / "postgresql-asan.charm"


def settled(st):
    u = st["applications"][APP].get("units", {}).get(UNIT, {})
    return (u.get("workload-status", {}) .get("message") == "Primary"
            and all_agents_idle(st, APP))


def test_sanitized_charm_runs_clean(model):
    assert CHARM.exists(), "run `make asan` first"
    for binary in ("dispatch", "bin/pg-agent"):
        syms = subprocess.run(["nm", "-D", str(REPO / "build/asan-charm" / binary)],
                              capture_output=True, text=True, check=True).stdout
        assert "__asan_init" in syms, binary
    model.juju("deploy", str(CHARM), "--config", "profile=testing", timeout=180)
    model.wait(settled, error=any_error, timeout=300)
    r = model.run(UNIT, "get-password", "username=monitoring")
    assert r.status == "completed" and len(r.results["password"]) == 32, r.task
    r = model.run(f"{APP}/leader", "set-password", "username=operator")
    assert r.status == "completed", r.task
    r = model.run(UNIT, "get-primary")
    assert r.results.get("primary") == UNIT, r.task
    model.juju("config", APP, "memory-work-mem=12")  # refused: blocked
    model.wait(lambda s: s["applications"][APP]["units"][UNIT]["workload-status"]["current"]
               == "blocked", timeout=120)
    model.juju("config", APP, "--reset", "memory-work-mem")
    model.wait(settled, timeout=120)
    for _ in range(5):
        r = model.exec(UNIT, 'JUJU_DISPATCH_PATH=hooks/update-status "$JUJU_CHARM_DIR/dispatch"')
        assert r.rc == 0, r.stderr
    r = model.exec(UNIT, "ls /var/log/pg-agent; cat /var/log/pg-agent/asan* "
                         "/var/log/pg-agent/ubsan* 2>/dev/null; true")
    assert "asan" not in r.stdout and "ubsan" not in r.stdout, r.stdout
