"""juju refresh --path: upgrade-charm then config-changed on every unit (juju.md 5.2),
the new charm's files in place, files the charm wrote kept, and no other hooks."""

import json
import shutil

from conftest import all_active, all_agents_idle, any_error, charm_dir, CHARMS_SRC

APP = "rf"


def test_refresh_runs_upgrade_charm_then_config_changed(model, tmp_path):
    m = model
    m.deploy("tool-tester", APP, num_units=2)
    m.wait(lambda s: all_active(s, APP) and all_agents_idle(s, APP) and len(m.units(APP, s)) == 2,
           error=any_error, timeout=180)
    units = m.units(APP)
    before = {u: len(m.events(u)) for u in units}
    m.sh(units[0], f"echo kept > {charm_dir(units[0])}/written-by-charm")

    new = tmp_path / "tool-tester-v2"
    shutil.copytree(CHARMS_SRC / "tool-tester", new)
    (new / "shipped-v2").write_text("v2\n")
    m.juju("refresh", APP, "--path", str(new))

    def upgraded(s):
        app = s["applications"][APP]
        return app["charm-rev"] == 1 and all_agents_idle(s, APP) and all(
            [e["event"] for e in m.events(u)[before[u]:] if e["kind"] == "hook"][:2]
            == ["upgrade-charm", "config-changed"] for u in units)

    m.wait(upgraded, error=any_error, timeout=120)
    st = m.status()
    assert st["applications"][APP]["charm"] == "local:tool-tester-1"
    for u in units:
        hooks = [e["event"] for e in m.events(u)[before[u]:] if e["kind"] == "hook"]
        # no install, relation or start hooks on a refresh of a started unit
        assert not [h for h in hooks if h in ("install", "start") or "relation" in h], hooks
        assert m.read_file(u, "shipped-v2") == "v2\n"
    assert m.read_file(units[0], "written-by-charm") == "kept\n"
    show = json.loads(m.juju("show-unit", units[0], "--format", "json").stdout)
    assert show[units[0]]["charm"] == "local:tool-tester-1"


def test_refresh_errors(model):
    r = model.juju("refresh", "no-such-app", "--path", str(CHARMS_SRC / "tool-tester"),
                   check=False)
    assert r.returncode == 1 and 'application "no-such-app" not found' in r.stderr
    r = model.juju("refresh", APP, "--path", str(CHARMS_SRC / "noop"), check=False)
    assert r.returncode == 1 and "differs from" in r.stderr
