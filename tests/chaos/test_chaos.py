"""Chaos tests: faults injected into a 3-unit cluster of the charm while a writer records
every acknowledged commit (tests/chaos/history.py), driven only through `sandbox/bin/juju`
plus faults on the sandbox's own namespaces and processes (tests/chaos/cluster.py).

The cluster runs the charm's HA defaults: lease TTL 5 s (`ha-lease-ttl`), renewal 500 ms,
synchronous replication to every replica, strict. The writer inserts one id every 20 ms
into every node that says it is not in recovery (`all_primaries`), over TLS as `operator`
against the three unit addresses, so that two writable primaries would show up as
acknowledgements from two nodes.

Faults (`CHAOS_ROUNDS` rounds of every kind, in the order of `CHAOS_FAULTS`, default
kill,stop,etcd-leader,netcut; `reboot` is added by `make chaos`):
  kill         host death of the primary's machine: its link down, then SIGKILL of every
               process of the machine (agent, PostgreSQL, etcd); it stays dead 3 x TTL,
               then the sandbox reboots it (SIGKILL of its init)
  reboot       SIGKILL of the primary machine's init, which the sandbox reboots at once
               with its files and /run intact (make chaos only)
  stop         SIGSTOP of every process of the primary's PID namespace for 3 x TTL, then
               SIGCONT (a paused VM)
  netcut       the primary's link down on the host side for 3 x TTL, then up
  etcd-leader  SIGKILL of the etcd member that leads the raft group (the charm keeps that
               leadership off the primary's unit)

In a `stop` round the writer itself stalls while the old primary is frozen (its
session to the frozen server waits in the kernel's TCP buffers until SIGCONT), so that
round's `downtime_s` is the freeze, not the charm's: `promoted_after_s` (the first
`/primary` 200 on another unit, probed every 100 ms) is the charm's figure.

Every round checks, from the history of acknowledgements and timelines and from the
cluster: a new primary was elected (for etcd-leader with the leader elsewhere than on the
primary: no failover at all, and the primary writable again within a few seconds); the
old primary never acknowledged a write after the new one was (history.check's
dual-primary rules); no acknowledged commit is missing from the final read on the
primary (synchronous mode); the old primary rejoins as a replica that streams (juju
status `Replica`/`Sync standby`, and `pg_stat_replication` on the primary).

`test_write_load_causes_no_failover` runs pgbench against the primary for
`CHAOS_LOAD_SECONDS` (skipped when 0, the default; `make chaos` runs 600) and checks that
the primary and its timeline did not change.

A round starts on a healthy cluster: when the previous round left it broken (a charm
bug) and it does not heal within HEAL_S, the harness deploys a fresh cluster in a new
model (the broken one's logs are copied to /tmp/charm-logs-* first), so that every fault
kind is exercised. A failed round copies every unit's logs the same way and says where.

`CHAOS_KEEP_LOGS=1` copies every round's logs (not only a failed one's) and prints where.

Bounds: every wait has its own timeout; `CHAOS_TIME_CAP` seconds (default 1800) for the
rounds of the module, after which the remaining rounds are skipped. Every model the
harness made is destroyed at the end, also on failure, after the faults still applied
were undone; the controller is the conftest session's.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chaos import history  # noqa: E402
from chaos.cluster import CharmCluster, log_time, utc_now  # noqa: E402
from conftest import REPO, new_model  # noqa: E402

CHARM = os.environ.get("CHARM") or str(REPO / "build" / "postgresql.charm")
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "1"))
TIME_CAP = float(os.environ.get("CHAOS_TIME_CAP", "1800"))
LOAD_S = int(os.environ.get("CHAOS_LOAD_SECONDS", "0"))
KEEP_LOGS = os.environ.get("CHAOS_KEEP_LOGS", "") not in ("", "0")  # every round's logs
ALL_FAULTS = ("kill", "stop", "netcut", "etcd-leader", "reboot")
FAULTS = [f.strip() for f in os.environ.get(
    "CHAOS_FAULTS", "kill,stop,etcd-leader,netcut").split(",") if f.strip()]
TTL = 5                       # the charm's default ha-lease-ttl
HOLD_S = 3 * TTL              # how long a stop or a network cut lasts
FAILOVER_S = 60               # a new primary must be writable within this
REJOIN_S = 240                # the old primary streams again within this
HEALTHY_S = 300
DEPLOY_S = 600                # 3 units healthy after a deploy
HEAL_S = 120                  # a round's cluster healthy again, else a fresh deployment
NO_FAILOVER_WINDOW_S = 3 * TTL
WRITABLE_AGAIN_S = 5          # etcd-leader elsewhere: longest write gap allowed
ROUND_WRITER_S = 600          # the writer's own bound per round

assert ROUNDS >= 0 and ROUNDS <= 20, "CHAOS_ROUNDS: 0 to 20"
assert set(FAULTS) <= set(ALL_FAULTS), f"CHAOS_FAULTS: {FAULTS} not in {ALL_FAULTS}"

RESULTS = []                  # one dict per round, printed at the end of the session


class Harness:
    """The module's cluster: a model of its own with the charm deployed; deployed again in
    a fresh model when a round left it broken (so that one charm bug does not fail every
    later round). Every model it made is destroyed at the end, also on failure."""

    def __init__(self, charm):
        self.charm = charm
        self.model = None
        self.c = None
        self.deploys = []             # seconds each deployment took to become healthy
        self.t_start = time.monotonic()

    def deploy(self):
        self.drop()
        self.model = new_model("t-chaos")
        self.c = CharmCluster(self.model.juju, os.environ["JUJU_SANDBOX_DIR"], self.model.name,
                              log=lambda m: print(m, flush=True))
        t = time.monotonic()
        self.c.deploy(self.charm, 3)
        try:
            self.c.wait_healthy(DEPLOY_S, expect_units=3)
        except TimeoutError as e:
            pytest.fail(f"deploy: {e}\n{self.c.diagnostics(30)}", pytrace=False)
        self.deploys.append(round(time.monotonic() - t, 1))
        conn = self.c.connect(self.c.primary())
        try:
            history.ensure_table(conn)
        finally:
            conn.close()
        return self.c

    def healthy(self):
        """The cluster, healthy; a new deployment when the current one does not heal."""
        if self.c is not None:
            try:
                self.c.wait_healthy(HEAL_S, expect_units=3)
                return self.c
            except TimeoutError as e:
                print(f"the cluster did not heal ({e}): deploying a fresh one", flush=True)
                with contextlib.suppress(Exception):
                    print(f"its logs: {self.c.save_logs()}", flush=True)
        return self.deploy()

    def drop(self):
        if self.c is not None:
            self.c.release_all()
            self.c.close()
            self.c = None
        if self.model is not None:
            model, self.model = self.model, None
            model.destroy()


@pytest.fixture(scope="module")
def harness(controller):
    assert os.path.exists(CHARM), f"{CHARM} does not exist: run `make build` first"
    tmp = tempfile.mkdtemp(prefix="chaos-charm-")
    charm = os.path.join(tmp, "postgresql.charm")
    shutil.copy2(CHARM, charm)            # a rebuild during the run changes nothing
    h = Harness(charm)
    try:
        yield h
    finally:
        try:
            h.drop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"chaos: deployments took {h.deploys} s; rounds {time.monotonic() - h.t_start:.0f} s",
                  flush=True)


def rounds():
    out = []
    for r in range(1, ROUNDS + 1):
        for f in FAULTS:
            out.append(pytest.param(f, r, id=f"{f}-{r}"))
    return out


class Round:
    """The bookkeeping of one round: the writer, the fault, what was seen."""

    def __init__(self, c, kind, n):
        self.c, self.kind, self.n = c, kind, n
        self.since = utc_now()
        self.info = {"fault": kind, "round": n}
        self.writer = None

    def fail(self, msg):
        try:
            self.info["logs"] = self.c.save_logs()
            logs = f"every unit's logs copied to {self.info['logs']}"
        except Exception as e:
            logs = f"logs not copied: {e}"
        self.info["failure"] = msg.splitlines()[0][:300]
        pytest.fail(f"[{self.kind} round {self.n}] {msg}\n\n{json.dumps(self.info, default=str)}"
                    f"\n{logs}\n\n{self.c.diagnostics(60, self.since)}", pytrace=False)

    def start_writer(self):
        c = self.c
        self.writer = history.Writer(c.hosts(), params=c.conn_params(), password=c.password,
                                     interval=0.02, duration=ROUND_WRITER_S, all_primaries=True,
                                     attempt_timeout=5.0)
        self.writer.start()
        if self.writer.wait_ack(lambda a: True, 30) is None:
            self.fail(f"no write acknowledged before the fault: {self.writer.last_connect_error}")
        time.sleep(2.0)

    def check_history(self, final_primary):
        """Stop the writer, read every node, run the checker; returns the Report."""
        c, w = self.c, self.writer
        time.sleep(1.0)
        w.stop()
        assert not w.stuck, "the writer did not stop within its bound"
        by_node = {}
        for h in c.hosts():
            try:
                conn = w.connect(h)
                try:
                    by_node[h] = history.read_ids(conn, w.id_range)
                finally:
                    conn.close()
            except Exception as e:
                self.info.setdefault("read_errors", {})[h] = str(e).splitlines()[0]
        if final_primary not in by_node:
            self.fail(f"final read on the primary {final_primary} failed")
        rep = history.check(w.attempts, by_node[final_primary], w.events, by_node)
        ev = rep.events[0] if rep.events else None
        self.info.update({
            "attempts": rep.attempts, "acked": rep.acked, "errors": rep.errors,
            "lost": rep.lost[:20], "lost_where": {str(k): v for k, v in
                                                  list(rep.lost_where.items())[:20]},
            "lost_sync_cancelled": rep.lost_sync_cancelled[:20],
            "committed_unacked": len(rep.committed_unacked),
            "violations": rep.violations[:10],
            "downtime_s": None if ev is None or ev.downtime is None else round(ev.downtime, 2),
            "gap_s": None if ev is None or ev.gap is None else round(ev.gap, 2),
            "old_acks_after": None if ev is None else ev.old_acks_after,
        })
        return rep


def old_not_writable(c, host):
    """True when `host` does not run as a writable primary (REST and SQL)."""
    if c.rest(host, "primary") == 200:
        return False
    try:
        return c.sql(host, "SELECT pg_is_in_recovery()", timeout=1)[0][0]
    except Exception:
        return True                       # not answering: not writable either


@pytest.mark.parametrize("kind,n", rounds())
def test_fault(harness, kind, n):
    if time.monotonic() - harness.t_start > TIME_CAP:
        pytest.skip(f"CHAOS_TIME_CAP ({TIME_CAP:.0f} s) reached")
    c = harness.healthy()
    t_round = time.monotonic()
    r = Round(c, kind, n)
    try:
        old = c.primary()
        old_unit = c.unit_of(old)
        tli = c.timeline(old)
        r.info.update(old=old_unit, timeline_before=tli)
        r.start_writer()
        if kind == "etcd-leader":
            run_etcd_leader(c, r, old, old_unit, tli)
        else:
            run_failover(c, r, kind, old, old_unit, tli)
    finally:
        c.release_all()
        if r.writer is not None:
            r.writer.stop()
        r.info["round_s"] = round(time.monotonic() - t_round, 1)
        if KEEP_LOGS and "logs" not in r.info:
            with contextlib.suppress(Exception):
                r.info["logs"] = c.save_logs()
        RESULTS.append(r.info)
        print(f"chaos {kind} round {n}: {json.dumps(r.info, default=str)}", flush=True)


def run_failover(c, r, kind, old, old_unit, tli):
    w = r.writer
    others = [h for h in c.hosts() if h != old]
    # -- the fault
    if kind == "kill":
        t = c.crash(old_unit)
    elif kind == "reboot":
        t = c.crash(old_unit, kill_init=True)
    elif kind == "stop":
        t = c.freeze(old_unit)
    elif kind == "netcut":
        t = c.cut(old_unit)
    w.mark(kind, old, t=t)
    # -- a new primary (REST /primary 200 elsewhere), while the fault still holds
    new, t_new = None, None
    while time.monotonic() - t < max(HOLD_S, FAILOVER_S):
        if kind == "stop":
            c.refreeze(old_unit)
        if new is None:
            got = c.primaries(others, timeout=0.5)
            if got:
                new, t_new = got[0], time.monotonic()
                r.info["promoted_after_s"] = round(t_new - t, 2)
        if new is not None and (kind == "reboot" or time.monotonic() - t >= HOLD_S):
            break
        if kind == "reboot" and old_acked_again(w, old, t):
            break
        time.sleep(0.1)
    # -- undo the fault
    if kind == "kill":
        took, poked = c.power_cycle(old_unit)
        r.info["reboot_s"] = round(took, 1)
    elif kind == "stop":
        c.thaw(old_unit)
    elif kind == "netcut":
        c.heal(old_unit)
    elif kind == "reboot":
        c.crashed.pop(old_unit, None)
    r.info["fault_held_s"] = round(time.monotonic() - t, 1)
    if kind == "reboot" and new is None and old_acked_again(w, old, t):
        # the sandbox rebooted the machine at once; the old primary may keep its lease
        ack = w.wait_ack(lambda a: a.t_done > t, FAILOVER_S)
        r.info["outcome"] = "kept the primary" if ack is not None and ack.host == old else \
            f"writes resumed on {ack.host if ack else None}"
        if ack is None:
            r.fail(f"no write acknowledged within {FAILOVER_S} s after the reboot")
        c.wait_healthy(HEALTHY_S, expect_units=3)
        final = c.primary()
        rep = r.check_history(final)
        assert_history(r, rep)
        return
    if new is None:
        r.fail(f"no new primary within {FAILOVER_S} s of the {kind} "
               f"(REST /primary on {others})")
    # -- writes acknowledged by the new primary, on a newer timeline
    ack = w.wait_ack(lambda a: a.host == new and a.t_done > t, FAILOVER_S)
    if ack is None:
        r.fail(f"{new} answers /primary but acknowledged no write within {FAILOVER_S} s")
    r.info["new"] = c.unit_of(new)
    r.info["timeline_after"] = ack.tli
    r.info.update(acks_before_strict_sync(c, r, new))
    # -- the old primary: never writable again, rejoins as a streaming replica
    if not old_not_writable(c, old):
        time.sleep(1.0)
        if not old_not_writable(c, old):
            r.fail(f"the old primary {old} still runs as a writable primary after the fault "
                   f"was lifted, with {new} promoted")
    try:
        t_rej = time.monotonic()
        c.wait_rejoined(old_unit, REJOIN_S)
        r.info["rejoin_s"] = round(time.monotonic() - t_rej, 1)
    except TimeoutError as e:
        r.check_history(c.primary() or new)
        r.fail(str(e))
    final = c.primary() or new
    if final != new:
        r.info["primary_at_end"] = c.unit_of(final)
    rep = r.check_history(final)
    assert_history(r, rep)
    if ack.tli is None or ack.tli <= tli:
        r.fail(f"the new primary acknowledged on timeline {ack.tli}, not above {tli}")


def run_etcd_leader(c, r, old, old_unit, tli):
    w = r.writer
    members, leader = c.etcd_status()
    if leader is None:
        r.fail(f"no etcd leader: {members}")
    leader_unit = c.unit_of(leader)
    r.info["etcd_leader"] = leader_unit
    r.info["etcd_leader_on_primary"] = leader == old
    t = c.kill_etcd(leader_unit)
    w.mark("etcd-kill", leader, t=t)
    primaries_seen = set()
    while time.monotonic() - t < NO_FAILOVER_WINDOW_S:
        primaries_seen.update(c.primaries(timeout=0.5))
        time.sleep(0.25)
    r.info["rest_primaries_seen"] = sorted(primaries_seen)
    # the killed member is back (the agent supervises it) and the cluster healthy
    try:
        c.wait_healthy(HEALTHY_S, expect_units=3)
    except TimeoutError as e:
        r.fail(f"cluster not healthy after the etcd kill: {e}")
    final = c.primary()
    rep = r.check_history(final)
    assert_history(r, rep)
    acks = [a for a in w.attempts if a.ok]
    if leader != old:
        # no failover needed: same primary, same timeline, writable within a few seconds
        if final != old or primaries_seen - {old}:
            r.fail(f"failover after killing the etcd leader on {leader_unit} (not the "
                   f"primary): REST primaries seen {sorted(primaries_seen)}, now {final}")
        gap = _max_gap([a.t_done for a in acks if a.host == old], t, t + NO_FAILOVER_WINDOW_S)
        r.info["max_write_gap_s"] = round(gap, 2)
        if gap > WRITABLE_AGAIN_S:
            r.fail(f"the primary acknowledged no write for {gap:.1f} s after the etcd leader "
                   f"was killed (allowed {WRITABLE_AGAIN_S} s)")
        if c.timeline(final) != tli:
            r.fail(f"timeline changed from {tli} to {c.timeline(final)} without a failover")
    else:
        # the primary's own etcd member led: losing it may cost a failover (a new primary on
        # a newer timeline, the old one a streaming replica) or none (the agent renews
        # through the other members); either way writes resume within FAILOVER_S
        first = next((a for a in acks if a.t_done > t), None)
        if first is None or first.t_done - t > FAILOVER_S:
            r.fail(f"writes did not resume within {FAILOVER_S} s")
        r.info["outcome"] = "failover" if final != old else "kept the primary"
        if final != old:
            c.wait_rejoined(old_unit, REJOIN_S)


def old_acked_again(w, old, t):
    return any(a.ok and a.host == old and a.t_done > t for a in w.snapshot()[-500:])


def acks_before_strict_sync(c, r, new):
    """Writes the new primary acknowledged between its promotion and the moment its agent
    logged the first synchronous_standby_names it set after promoting (information: in
    strict mode it should acknowledge nothing before a synchronous standby is required)."""
    lines = c.agent_log(c.unit_of(new), 100000, r.since).splitlines()
    t_prom = t_ssn = None
    for ln in lines:
        if t_prom is None and ln.endswith("INFO promoting"):
            t_prom = log_time(ln)
        elif t_prom is not None and "synchronous_standby_names = " in ln:
            t_ssn = log_time(ln)
            break
    if t_prom is None or t_ssn is None:
        return {}
    offset = time.time() - time.monotonic()
    n = sum(1 for a in r.writer.snapshot() if a.ok and a.host == new
            and t_prom <= a.t_done + offset < t_ssn)
    return {"promote_to_sync_names_s": round(t_ssn - t_prom, 3), "acked_in_between": n}


def _max_gap(times, t0, t1):
    pts = [t0] + sorted(x for x in times if t0 <= x <= t1) + [t1]
    return max(b - a for a, b in zip(pts, pts[1:]))


def assert_history(r, rep):
    if rep.violations:
        r.fail("two writable primaries: " + "; ".join(rep.violations[:5]))
    if rep.lost:
        r.fail(f"{len(rep.lost)} acknowledged commits lost (synchronous mode): "
               f"{rep.lost[:10]}, held by {dict(list(rep.lost_where.items())[:10])}")


# ---- long write load ------------------------------------------------------------------------
@pytest.mark.skipif(LOAD_S <= 0, reason="CHAOS_LOAD_SECONDS is 0: the long pgbench load runs "
                                        "in `make chaos`")
def test_write_load_causes_no_failover(harness):
    c = harness.healthy()
    since = utc_now()
    p = c.primary()
    unit = c.unit_of(p)
    tli = c.timeline(p)
    conn = c.connect(p)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'chaos_bench'")
            if not cur.fetchall():
                cur.execute("CREATE DATABASE chaos_bench")
    finally:
        conn.close()
    env = dict(os.environ, PGPASSWORD=c.password(), PGSSLMODE="verify-full",
               PGSSLROOTCERT=c.ca_file(), PGCONNECT_TIMEOUT="5")
    base = ["pgbench", "-h", p, "-p", "5432", "-U", "operator"]
    init = subprocess.run(base + ["-i", "-s", "5", "-q", "chaos_bench"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr[-2000:]
    t0 = time.monotonic()
    bench = subprocess.Popen(base + ["-c", "8", "-j", "2", "-T", str(LOAD_S), "-P", "60",
                                     "chaos_bench"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        while bench.poll() is None and time.monotonic() - t0 < LOAD_S + 120:
            prim = c.primaries(timeout=2.0)
            if prim != [p]:
                seen.append((round(time.monotonic() - t0, 1), prim))
            time.sleep(5)
        out = bench.communicate(timeout=max(1, LOAD_S + 180 - (time.monotonic() - t0)))[0]
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)
    tps = [ln for ln in out.splitlines() if ln.startswith("tps") or "failed" in ln]
    print(f"pgbench {LOAD_S} s on {unit}: rc {bench.returncode}; {tps}", flush=True)
    RESULTS.append({"fault": "pgbench-load", "seconds": LOAD_S, "rc": bench.returncode,
                    "summary": tps, "primary_changes": seen[:10]})
    logs = "\n".join(f"--- {u}\n" + "\n".join(
        ln for ln in c.agent_log(u, 100000, since).splitlines()
        if any(k in ln for k in ("WARNING", "ERROR", "demoting", "FENCING", "won the leader")))
        for u in c.all_units())
    prim = c.primary()
    assert prim == p, f"the primary moved from {p} to {prim} under load\n{logs}"
    assert not seen, f"REST /primary was not {p} alone at times: {seen}\n{logs}"
    assert c.timeline(p) == tli, f"timeline changed under load from {tli}\n{logs}"
    assert bench.returncode == 0, f"pgbench exited {bench.returncode}:\n{out[-3000:]}\n{logs}"


def teardown_module(module):
    if RESULTS:
        print("\nchaos rounds:")
        for res in RESULTS:
            print("  " + json.dumps(res, default=str))
