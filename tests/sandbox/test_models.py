"""Models: isolation between models and clean destruction.

Two models side by side must not see each other's applications or secrets;
`destroy-model` must leave no process, network namespace, link (bridge or
veth) or mount behind. The emulator names its namespaces and bridges with a
`js` prefix and reports each unit host's network namespace as the machine's
`instance-id` (lead's design note).
"""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import (all_active, all_agents_idle, any_error, juju, new_model, poll)


def netns_names():
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in p.stdout.splitlines() if line.strip()}


def link_names():
    p = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    return {line.split()[0].split("@")[0] for line in p.stdout.splitlines() if line.strip()}


def mounts_mentioning(tokens):
    """(root, mount point) of every mount, in any process's mount namespace,
    whose source root or mount point has a path component in `tokens`."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            root, mp = fields[3].replace("\\040", " "), fields[4].replace("\\040", " ")
            if tokens & (set(root.split("/")) | set(mp.split("/"))):
                found.add((root, mp))
    return found


def host_mounts_under(path):
    """Mount points of the host (this process's) namespace under `path`."""
    path = os.path.realpath(path)
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                out.add(mp)
    return out


def pid_starttime(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def netns_pids(name):
    p = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return {int(x) for x in p.stdout.split()} if p.returncode == 0 else set()


@pytest.fixture(scope="module")
def two_models(model):
    other = new_model("t-models-b")
    try:
        yield model, other
    finally:
        other.destroy()


def test_models_are_isolated(two_models):
    a, b = two_models
    a.deploy("noop", "only-in-a")
    b.deploy("noop", "only-in-b")
    a.wait(lambda s: all_active(s, "only-in-a"), error=any_error, timeout=120)
    b.wait(lambda s: all_active(s, "only-in-b"), error=any_error, timeout=120)
    sa, sb = a.status(), b.status()
    assert sa["model"]["name"] == a.name and sb["model"]["name"] == b.name
    assert set(sa["applications"]) == {"only-in-a"}
    assert set(sb["applications"]) == {"only-in-b"}
    # machines are per model
    ma = {m["instance-id"] for m in sa["machines"].values()}
    mb = {m["instance-id"] for m in sb["machines"].values()}
    assert ma and mb and not (ma & mb)
    # secrets are per model
    p = a.juju("add-secret", "iso-secret", "k1k=v")
    xid = re.search(r"[0-9a-v]{20}", p.stdout).group(0)
    assert xid in json.loads(a.juju("secrets", "--format", "json").stdout)
    assert xid not in json.loads(b.juju("secrets", "--format", "json").stdout or "{}")
    r = b.juju("show-secret", xid, "--format", "json", check=False)
    assert r.returncode != 0 and "not found" in r.stderr
    a.juju("remove-secret", "iso-secret")
    # the unit agents know their own model
    ua = a.units("only-in-a")[0]
    assert a.sh(ua, "echo $JUJU_MODEL_NAME").strip() == a.name
    # a unit name of model A is unknown in model B
    p = b.juju("exec", "--format", "json", "--unit", ua, "--", "true", check=False)
    assert p.returncode != 0


def test_status_shape(two_models):
    a, _ = two_models
    st = a.status()
    m = st["model"]
    for k in ("name", "type", "controller", "cloud", "version"):
        assert k in m, k
    assert m["type"] == "iaas"
    app = st["applications"]["only-in-a"]
    for k in ("charm", "charm-origin", "charm-name", "charm-rev", "exposed"):
        assert k in app, k
    assert app["charm-name"] == "noop" and app["charm-origin"] == "local"
    assert re.fullmatch(r"local:noop-\d+", app["charm"])
    assert app["exposed"] is False
    unit = next(iter(app["units"].values()))
    assert unit["machine"] in st["machines"]
    mach = st["machines"][unit["machine"]]
    assert mach["instance-id"].startswith("js")
    assert unit["public-address"] in mach.get("ip-addresses", [unit["public-address"]])
    assert re.fullmatch(r"\d\d \w{3} \d{4} \d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)",
                        unit["workload-status"]["since"]), unit["workload-status"]["since"]


def test_noop_three_units_all_active(two_models):
    a, _ = two_models
    t0 = time.monotonic()
    a.deploy("noop", "bench", num_units=3)
    st = a.wait(lambda s: len(a.units("bench", s)) == 3 and all_active(s, "bench")
                and all_agents_idle(s, "bench"), error=any_error, timeout=120)
    elapsed = time.monotonic() - t0
    print(f"noop x3 all active+idle in {elapsed:.1f}s")
    leaders = [u for u, d in st["applications"]["bench"]["units"].items() if d.get("leader")]
    assert len(leaders) == 1


def test_destroy_model_leaves_nothing(controller):
    sandbox = os.environ["JUJU_SANDBOX_DIR"]
    netns0, links0 = netns_names(), link_names()
    host0 = host_mounts_under(sandbox)
    m = new_model("t-models-gone")
    destroyed = False
    try:
        m.deploy("noop", "gone", num_units=2)
        st = m.wait(lambda s: len(m.units("gone", s)) == 2 and all_active(s, "gone"),
                    error=any_error, timeout=120)
        uuid = m.sh(m.units("gone", st)[0], "echo $JUJU_MODEL_UUID").strip()
        tokens = {uuid, m.name}
        inst = {mm["instance-id"] for mm in st["machines"].values()}
        new_ns = netns_names() - netns0
        new_links = {x for x in link_names() - links0 if x.startswith("js")}
        assert inst, st["machines"]
        assert all(i.startswith("js") for i in inst), inst
        assert inst <= new_ns, (inst, new_ns)  # instance-id names the unit host's netns
        pids = {}
        for ns in inst:
            for pid in netns_pids(ns):
                pids[pid] = pid_starttime(pid)
        assert pids, "no process found in the model's network namespaces"

        m.destroy()
        destroyed = True

        def leftovers():
            return {
                "netns": netns_names() & new_ns,
                "links": link_names() & new_links,
                "pids": {p for p, t in pids.items() if t is not None and pid_starttime(p) == t},
                "mounts naming the model": mounts_mentioning(tokens),
                "new host mounts under the sandbox dir": host_mounts_under(sandbox) - host0,
            }
        try:
            poll(lambda: not any(leftovers().values()), 30, what="model resources to go")
        except TimeoutError:
            pytest.fail(f"left behind after destroy-model: {leftovers()}")
        p = juju("status", "--model", m.name, "--format", "json", check=False)
        assert p.returncode != 0
    finally:
        if not destroyed:
            m.destroy()
