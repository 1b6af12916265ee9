"""No password and no private key anywhere on the unit: not in any file under the unit's
own host directories (data, logs, runtime, the charm), not in the agent's or PostgreSQL's
logs, not in the Juju log, and not in the argument list or environment of any process of
the unit. The passwords are exercised first (generated, rotated, set from a secret)."""

import json
import os
import grp
import pwd
from pathlib import Path

from conftest import REPO, all_agents_idle, any_error

APP = "postgresql"
UNIT = f"{APP}/0"
CHARM = REPO / "build" / "postgresql.charm"
USERS = ("operator", "replication", "rewind", "monitoring")
KEY_MARKERS = (b"PRIVATE KEY-----",)


def settled(st):
    u = st["applications"][APP].get("units", {}).get(UNIT, {})
    return (u.get("workload-status", {}).get("current") == "active"
            and all_agents_idle(st, APP))


def machine(model):
    """(host path of the unit's machine root, host pid of its init)."""
    uuid = json.loads(model.juju("show-model", model.name, "--format", "json").stdout)
    uuid = next(iter(uuid.values()))["model-uuid"]
    mdir = Path(os.environ["JUJU_SANDBOX_DIR"]) / "models" / uuid
    state = json.loads((mdir / "state.json").read_text())
    mid = state["units"][UNIT]["machine"]
    return mdir / "machines" / str(mid) / "fs", state["machines"][mid]["pid"]


def unit_pids(init_pid):
    ns = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if os.stat(f"/proc/{p}/ns/pid").st_ino == ns:
                pids.append(int(p))
        except OSError:
            pass
    return pids


# The private keys of the unit's internal certificate and of its peer identity (the internal
# one, or a peer-certificates provider's): on disk for the programs that read them.
TLS_KEYS = {"var/lib/pg-agent/tls/key.pem": "root",
            "var/lib/postgresql/pg-agent-tls/key.pem": "postgres",
            "var/lib/pg-agent/tls/peer-key.pem": "root",
            "var/lib/postgresql/pg-agent-tls/peer-key.pem": "postgres",
            # the key of a tls-certificates provider's certificate (tls.c), when integrated
            "var/lib/postgresql/pg-agent-tls/client-key.pem": "postgres",
            "var/lib/etcd/pg-agent-tls/key.pem": "etcd",
            # the metrics exporter's own server-only key (pki.c): root's, its group reads it
            "var/lib/pg-agent/exporter/key.pem": "root:prometheus"}


def test_no_secret_on_the_unit(model):
    model.juju("deploy", str(CHARM), "--config", "profile=testing", timeout=180)
    model.wait(settled, error=any_error, timeout=240)
    # rotate (generated and chosen), and take two from a user secret
    assert model.run(f"{APP}/leader", "set-password", "username=replication").status == \
        "completed"
    assert model.run(f"{APP}/leader", "set-password", "username=rewind",
                     "password=Rewind-Chosen-Passw0rd").status == "completed"
    uri = model.juju("add-secret", "users", "operator=Operator-Secret-Passw0rd").stdout.strip()
    model.juju("grant-secret", "users", APP)
    model.juju("config", APP, f"system-users={uri}")
    model.wait(lambda s: settled(s), timeout=120)
    passwords = {}
    for user in USERS:
        r = model.run(UNIT, "get-password", f"username={user}")
        assert r.status == "completed", r.task
        passwords[user] = r.results["password"].encode()
    assert passwords["operator"] == b"Operator-Secret-Passw0rd"
    needles = list(passwords.values()) + list(KEY_MARKERS)

    root, init_pid = machine(model)
    assert root.is_dir(), root
    # every file under the unit's own directories (data, logs, /run, /tmp, the charm)
    scanned, found = 0, []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        rel = str(path.relative_to(root))
        for n in needles:
            if n in data and not (n in KEY_MARKERS and rel in TLS_KEYS):
                found.append((rel, n[:4] + b"..."))
    assert scanned > 500, f"only {scanned} files under {root}"  # the cluster is there
    assert not found, found
    # the unit's peer key: only where its one reader (agent, PostgreSQL, etcd) needs it,
    # mode 0600, owned by that reader (DESIGN.md section 5)
    for rel, owner in TLS_KEYS.items():
        if rel.endswith("client-key.pem") and not (root / rel).exists():
            continue                      # only with a client-certificates provider
        st = (root / rel).stat()
        user, _, group = owner.partition(":")
        assert oct(st.st_mode & 0o777) == ("0o640" if group else "0o600"), (rel, oct(st.st_mode))
        assert pwd.getpwuid(st.st_uid).pw_name == user, (rel, st.st_uid)
        if group:
            assert grp.getgrgid(st.st_gid).gr_name == group, (rel, st.st_gid)
    # the logs the agent and PostgreSQL wrote are among them; check they are not empty
    assert (root / "var/log/pg-agent/agent.log").stat().st_size > 0
    assert (root / "var/log/pg-agent/exporter.log").exists()
    assert any(p.stat().st_size > 0 for p in (root / "var/log/postgresql").iterdir())
    # the Juju log of the unit
    log = model.juju("debug-log", "--limit", "0").stdout.encode()
    assert not [n for n in needles if n in log]
    # argv and environment of every process of the unit
    pids = unit_pids(init_pid)
    assert len(pids) >= 5, pids  # init, agent, postmaster and its workers
    leaks = []
    for pid in pids:
        for what in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{pid}/{what}").read_bytes()
            except OSError:
                continue
            leaks += [(pid, what) for n in needles if n in data]
    assert not leaks, leaks
