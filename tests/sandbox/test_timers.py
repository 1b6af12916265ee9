"""Timed events: update-status at the model's interval (juju.md 5.1 item 15) and the
secret-expired / secret-rotate hooks of the owner (4.5), with their variables."""

from conftest import all_active, all_agents_idle, any_error, poll

APP = "tm"


def hook_events(m, unit, name, since=0):
    return [e for e in m.events(unit)[since:] if e["kind"] == "hook" and e["event"] == name]


def test_update_status_follows_model_interval(model):
    m = model
    m.deploy("tool-tester", APP, num_units=2)
    m.wait(lambda s: all_active(s, APP) and all_agents_idle(s, APP), error=any_error, timeout=180)
    units = m.units(APP)
    assert not any(hook_events(m, u, "update-status") for u in units)  # default 5m
    m.juju("model-config", "update-status-hook-interval=1s")
    try:
        poll(lambda: all(len(hook_events(m, u, "update-status")) >= 2 for u in units) or None,
             30, what="update-status twice on every unit")
    finally:
        m.juju("model-config", "--reset", "update-status-hook-interval")
    r = m.juju("model-config", "update-status-hook-interval=soon", check=False)
    assert r.returncode != 0 and 'invalid duration "soon"' in r.stderr


def test_secret_expired_then_rotate_for_the_owner(model):
    m = model
    leader = m.leader(APP)
    since = len(m.events(leader))
    uri = m.sh(leader, "secret-add --label tmr --rotate hourly --expire 2s pass=word").strip()
    xid = uri.rsplit("/", 1)[-1]
    exp = poll(lambda: hook_events(m, leader, "secret-expired", since) or None, 30,
               what="secret-expired")[0]
    assert exp["env"]["JUJU_SECRET_ID"].endswith(xid)
    assert exp["env"]["JUJU_SECRET_REVISION"] == "1"
    assert exp["env"]["JUJU_SECRET_LABEL"] == "tmr"
    # rotation is due at the expiry when that comes before the hourly rotation
    rot = poll(lambda: hook_events(m, leader, "secret-rotate", since) or None, 30,
               what="secret-rotate")[0]
    assert rot["env"]["JUJU_SECRET_ID"].endswith(xid)
    assert "JUJU_SECRET_REVISION" not in rot["env"]
    order = [e["event"] for e in m.events(leader)[since:] if e["event"].startswith("secret-")]
    assert order.index("secret-expired") < order.index("secret-rotate")
    # followers never get owner hooks
    for u in m.units(APP):
        if u != leader:
            assert not hook_events(m, u, "secret-expired") and not hook_events(m, u, "secret-rotate")
    m.sh(leader, f"secret-remove {uri}")
