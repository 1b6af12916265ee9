"""Subordinate applications: units follow their principals into a container-scoped
relation, share the principal's machine, see only their own principal, and leave with it."""

import json
import shutil

import yaml

from conftest import CHARMS_SRC, all_active, all_agents_idle, any_error, poll

PRIN = "prin"
SUB = "sub"


def sub_charm(tmp_path):
    """tool-tester made subordinate: requires juju-info with container scope."""
    d = tmp_path / "sub-tester"
    shutil.copytree(CHARMS_SRC / "tool-tester", d)
    meta = yaml.safe_load((d / "metadata.yaml").read_text())
    meta.update(name="sub-tester", subordinate=True,
                requires={"host": {"interface": "juju-info", "scope": "container"}},
                provides={})
    (d / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return str(d)


def subs_of(st, unit):
    return sorted(st["applications"][PRIN]["units"][unit].get("subordinates", {}))


def test_subordinate_lifecycle(model, tmp_path):
    m = model
    m.deploy("tool-tester", PRIN, num_units=2)
    m.juju("deploy", sub_charm(tmp_path), SUB)
    st = m.status()
    assert "units" not in st["applications"][SUB]
    m.juju("integrate", SUB, PRIN)
    m.wait(lambda s: all_active(s, PRIN, SUB) and all_agents_idle(s, PRIN, SUB)
           and all(len(subs_of(s, u)) == 1 for u in s["applications"][PRIN]["units"]),
           error=any_error, timeout=180)
    st = m.status()
    assert st["applications"][SUB]["subordinate-to"] == [PRIN]
    assert "units" not in st["applications"][SUB]
    prins = sorted(st["applications"][PRIN]["units"])
    pairs = {}
    for p in prins:
        (s,) = subs_of(st, p)
        pairs[p] = s
        # same machine: same address, and the hook sees its principal
        sd = st["applications"][PRIN]["units"][p]["subordinates"][s]
        assert sd["public-address"] == st["applications"][PRIN]["units"][p]["public-address"]
        env = [e for e in m.events(s) if e["kind"] == "hook"][0]["env"]
        assert env["JUJU_PRINCIPAL_UNIT"] == p
        assert env["JUJU_MACHINE_ID"] == st["applications"][PRIN]["units"][p]["machine"]
        # container scope: each subordinate sees only its own principal
        rid = m.relation_id(s, "host")
        assert json.loads(m.sh(s, f"relation-list -r {rid} --format=json")) == [p]
    assert len(set(pairs.values())) == len(prins)

    m.juju("add-unit", PRIN)
    m.wait(lambda s: len(s["applications"][PRIN]["units"]) == 3 and all(
        len(subs_of(s, u)) == 1 for u in s["applications"][PRIN]["units"])
        and all_active(s, PRIN, SUB), error=any_error, timeout=180)

    victim = sorted(m.status()["applications"][PRIN]["units"])[-1]
    m.juju("remove-unit", "--no-prompt", victim)
    m.wait(lambda s: victim not in s["applications"][PRIN]["units"] and
           len(s["machines"]) == 2, error=any_error, timeout=180)

    m.juju("remove-relation", SUB, PRIN)
    poll(lambda: all(not subs_of(m.status(), u) for u in prins) or None, 120,
         what="subordinate units gone after remove-relation")
    m.wait(lambda s: all_active(s, PRIN), error=any_error, timeout=60)
