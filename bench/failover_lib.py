"""Failover and switchover measurements over any HA cluster, through a "cluster driver".

Used by `bench/failover.py` for Patroni (`bench/patroni_cluster.py`) and for the charm
(its driver comes later). Writes are recorded and checked with the shared
acknowledged-write history of the chaos tests (`tests/chaos/history.py`); every figure
is what a client saw, measured with `time.monotonic()` on this machine.

Cluster driver interface
------------------------
A driver is any object with these members (all blocking calls bounded by their own
timeouts; raise an exception rather than return a wrong answer):

  name: str                       row label in the table, e.g. "patroni-ttl10", "charm"
  sync: bool                      synchronous replication is on (changes what
                                  "re-streaming" waits for, see below)
  failover_timeout: float         seconds to wait for writes to resume after a crash
  hosts() -> list[str]            one libpq host (`addr` or `addr:port`) per node; the
                                  node names used everywhere below are these strings
  conn_params() -> dict           libpq keywords for the benchmark's client: user,
                                  dbname, port, sslmode (`require` for the charm),
                                  sslrootcert, ... never the password
  password() -> str | None        the client's password (called at each connect; never
                                  printed), or None to use PGPASSWORD/.pgpass
  primary() -> str | None         the host the HA manager calls primary now
  wait_healthy(timeout)           until one primary and every live replica streaming
                                  (and a synchronous standby when `sync`); raises
                                  TimeoutError otherwise
  crash_primary() -> Fault        kill the primary's node as a host death (SIGKILL of the
                                  HA agent, PostgreSQL and the co-located etcd member,
                                  its network gone); returns the fault's monotonic time
                                  and host, and notes (e.g. etcd_leader_on_crashed_node)
  restore(timeout)                bring crashed nodes back, wait until healthy again
  switchover(timeout) -> Fault    planned switchover to a healthy (sync) replica, as
                                  the product's API does it; returns the monotonic time
                                  of the request, the old primary and notes (candidate)
  agent_rss() -> dict[str, int]   resident bytes of the HA agent process on each live
                                  node (Patroni's Python process; the charm's pg-agent),
                                  not PostgreSQL's
  time_restream(host, since, timeout) -> float | None
                                  optional: replaces the default re-streaming probe
                                  below (`time_restream()` over the client's connection
                                  parameters) when the driver must look elsewhere

`Fault.notes` are printed with each round; `etcd_leader_on_crashed_node` (bool) is also
counted in the table, because a crash that takes the etcd leader with it delays the
lease expiry (reference ha.md section 15.1).

Measurements (per round)
------------------------
Crash round: healthy cluster, writer running (`history.Writer`, one INSERT every 20 ms),
`crash_primary()`, then
  - `downtime`: fault time -> first acknowledged write on another node;
  - `lost`: acknowledged writes missing from the new primary (final read before
    restore), and the dual-primary check of the history;
  - `restream`: first acknowledged write on the new primary -> first replica in the new
    primary's `pg_stat_replication` with `state = 'streaming'` (sync mode: `sync_state`
    in `sync`/`quorum`), polled every 20 ms from that first acknowledgement (an upper
    bound within one poll; 0 when a replica already streamed at the first poll);
  - `at_risk`: writes the new primary acknowledged before that moment (in async mode,
    and in Patroni's non-strict sync mode, they exist on one node only; the count
    scales with the writer's 50 writes/s);
then `restore()` with the writer still running:
  - `recover_gap`: the longest time without an acknowledged write while the crashed
    node came back and rejoined (should stay near the 20 ms write interval);
and the final read on the primary of the end of the round.
Switchover round: `switchover()`, then
  - `gap`: last acknowledged write before the first one on the new primary -> that
    first one (the write unavailability clients saw);
  - `downtime`: request -> first acknowledged write on the new primary;
  - `restream`, `at_risk`, `recover_gap` (old primary rejoining, `wait_healthy()`),
    `lost` and dual primary as above.
Results are medians and maxima over the rounds; the benchmark reports them and never
fails on a time.

When the crashed node or the old primary does not rejoin within the bound, the round's
figures are kept (they were measured before) and the round says so (`rejoin_failure`,
the table's "rejoin failed" column); a cluster that is not healthy before a round ends
the measurements on it. `measure_fresh()` then goes on with a freshly started cluster for
the remaining rounds (a bounded number of clusters), so that one node that cannot
rejoin does not cost every later figure.
"""
import contextlib
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from chaos import history  # noqa: E402

WARMUP_S = 2.0          # writes before the fault, to have an established primary
TAIL_S = 1.0            # writes after re-streaming, before the final read
RESTREAM_TIMEOUT_S = 90.0
RECOVER_TIMEOUT_S = 240.0
POLL_S = 0.02


@dataclasses.dataclass
class Fault:
    t: float                      # time.monotonic() of the fault or request
    node: str                     # host crashed / old primary
    notes: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Round:
    kind: str                     # "crash" or "switchover"
    old: str | None = None
    new: str | None = None
    downtime: float | None = None
    gap: float | None = None
    restream: float | None = None
    at_risk: int | None = None
    recover_gap: float | None = None  # longest write gap while the cluster recovered
    lost: int | None = None
    lost_sync_cancelled: int = 0
    dual_primary: bool = False
    errors: int = 0
    acked: int = 0
    notes: dict = dataclasses.field(default_factory=dict)
    failure: str | None = None    # the round could not be measured (why)
    rejoin_failure: str | None = None  # measured, but the cluster did not heal after it


def _writer(driver, duration):
    return history.Writer(driver.hosts(), params=driver.conn_params(),
                          password=driver.password, interval=0.02, duration=duration)


def prepare(driver):
    """Create the write table on the primary (once per cluster)."""
    deadline = time.monotonic() + 30
    while True:
        host = driver.primary()
        try:
            conn = history.connect(host, driver.conn_params(), driver.password)
            try:
                history.ensure_table(conn)
                return
            finally:
                conn.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def time_restream(connect, host, since, sync, timeout=RESTREAM_TIMEOUT_S):
    """Poll `host`'s pg_stat_replication every 20 ms until a replica streams (sync mode:
    is sync/quorum); return that monotonic time, or None after `timeout`."""
    cond = ("sync_state IN ('sync', 'quorum')" if sync else "state = 'streaming'")
    q = f"SELECT count(*) FROM pg_stat_replication WHERE {cond}"
    deadline = since + timeout
    conn = None
    try:
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = connect(host)
                with conn.cursor() as cur:
                    cur.execute(q)
                    if cur.fetchone()[0] > 0:
                        return time.monotonic()
            except Exception:
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(POLL_S)
        return None
    finally:
        if conn is not None:
            conn.close()


def _final_reads(driver, w, new):
    final = None
    by_node = {}
    for h in driver.hosts():
        try:
            c = w.connect(h)
            try:
                by_node[h] = history.read_ids(c, w.id_range)
            finally:
                c.close()
        except Exception:
            continue
    final = by_node.get(new)
    if final is None:
        raise RuntimeError(f"final read on the new primary {new} failed")
    return final, by_node


def _recover(driver, kind, fault):
    if kind == "crash" and fault is not None:
        driver.restore(RECOVER_TIMEOUT_S)
    else:
        driver.wait_healthy(RECOVER_TIMEOUT_S)


def _max_gap(acks, t0, t1):
    """Longest time without an acknowledgement within [t0, t1] (the edges count)."""
    times = [a.t_done for a in acks if t0 <= a.t_done <= t1]
    prev = [a.t_done for a in acks if a.t_done < t0]
    points = ([prev[-1]] if prev else [t0]) + times + [t1]
    return max(b - a for a, b in zip(points, points[1:]))


def run_round(driver, kind, log=print):
    """One crash or switchover round; returns a Round (failure set if unmeasurable).

    The writer keeps running while the cluster recovers (restore of the crashed node,
    or the old primary rejoining), so `recover_gap` shows whether a node rejoining
    disturbs the clients of the primary; the final read is then done on the primary of
    the end of the round."""
    r = Round(kind)
    try:
        driver.wait_healthy(RECOVER_TIMEOUT_S)
    except Exception as e:
        r.failure = f"cluster not healthy before the round: {type(e).__name__}: {e}"
        r.notes["unhealthy"] = True
        log(_round_line(r))
        return r
    budget = (WARMUP_S + driver.failover_timeout + RESTREAM_TIMEOUT_S + RECOVER_TIMEOUT_S
              + TAIL_S + 30)
    w = _writer(driver, budget)
    fault = None
    recovered = False
    try:
        w.start()
        first = w.wait_ack(lambda a: True, 30)
        if first is None:
            raise RuntimeError(f"no write acknowledged before the fault ({_why(w)})")
        time.sleep(WARMUP_S)
        fault = driver.crash_primary() if kind == "crash" else driver.switchover()
        w.mark(kind, fault.node, t=fault.t)
        r.old, r.notes = fault.node, dict(fault.notes)
        timeout = driver.failover_timeout if kind == "crash" else 60
        new_ack = w.wait_ack(lambda a: a.t_done > fault.t and a.host != fault.node, timeout)
        if new_ack is None:
            raise RuntimeError(f"no write on another node within {timeout} s ({_why(w)})")
        r.new = new_ack.host
        before = [a for a in w.snapshot() if a.ok and a.t_done <= fault.t]
        r.notes["timelines"] = f"{before[-1].tli if before else '?'}->{new_ack.tli}"
        hook = getattr(driver, "time_restream", None)
        if hook is not None:
            t_stream = hook(r.new, new_ack.t_done, RESTREAM_TIMEOUT_S)
        else:
            t_stream = time_restream(w.connect, r.new, new_ack.t_done, driver.sync)
        if t_stream is not None:
            r.restream = max(0.0, t_stream - new_ack.t_done)
        t_rec = w.mark("recover")
        recovered = True
        try:
            _recover(driver, kind, fault)
        except Exception as e:
            r.rejoin_failure = f"{type(e).__name__}: {e}"
        t_rec_end = time.monotonic()
        r.notes["recover_s"] = round(t_rec_end - t_rec, 1)
        time.sleep(TAIL_S)
        w.stop()
        r.recover_gap = _max_gap([a for a in w.attempts if a.ok], t_rec, t_rec_end)
        survivor = driver.primary() or r.new
        if survivor != r.new:
            r.notes["primary_after_recovery"] = survivor
        final, by_node = _final_reads(driver, w, survivor)
        rep = history.check(w.attempts, final, w.events, by_node)
        ev = rep.events[0]
        r.downtime, r.gap = ev.downtime, ev.gap
        r.lost, r.lost_sync_cancelled = len(rep.lost), len(rep.lost_sync_cancelled)
        r.dual_primary, r.errors, r.acked = rep.dual_primary, rep.errors, rep.acked
        if rep.violations:
            r.notes["violations"] = rep.violations[:5]
        if t_stream is not None:
            r.at_risk = sum(1 for a in w.attempts if a.ok and a.host == r.new
                            and new_ack.t_done <= a.t_done < t_stream)
    except Exception as e:
        r.failure = f"{type(e).__name__}: {e}"
    finally:
        w.stop()
        if w.stuck:
            r.notes["writer_stuck"] = True
    if not recovered or r.failure:
        try:
            _recover(driver, kind, fault)
        except Exception as e:
            r.failure = (r.failure + "; " if r.failure else "") + \
                f"recovery: {type(e).__name__}: {e}"
    log(_round_line(r))
    return r


def _why(w):
    errs = [a.error for a in w.snapshot() if not a.ok][-1:]
    conn = {h: e for h, e in w.last_connect_error.items()}
    return f"last error {errs}, connect errors {conn}"


def _round_line(r):
    def f(v, unit="s"):
        return "-" if v is None else (f"{v:.2f} {unit}" if isinstance(v, float) else str(v))
    s = (f"  {r.kind:10} {str(r.old):>15} -> {str(r.new):<15} downtime {f(r.downtime)}, "
         f"gap {f(r.gap)}, restream {f(r.restream)}, at risk {f(r.at_risk, '')}, "
         f"recovery gap {f(r.recover_gap)}, "
         f"lost {f(r.lost, '')}, dual primary {r.dual_primary}, errors {r.errors}")
    if r.notes:
        s += f", {r.notes}"
    if r.rejoin_failure:
        s += f"\n    REJOIN FAILED: {r.rejoin_failure}"
    if r.failure:
        s += f"\n    NOT MEASURED: {r.failure}"
    return s


def measure(driver, rounds, switchovers, log=print):
    """Crash rounds then switchover rounds on a started driver; returns a result dict."""
    prepare(driver)
    rss_before = driver.agent_rss()
    crashes, sws = [], []
    plan = [("crash", i, rounds) for i in range(rounds)] + \
        [("switchover", i, switchovers) for i in range(switchovers)]
    for kind, i, n in plan:
        log(f"{driver.name}: {kind} round {i + 1}/{n}")
        r = run_round(driver, kind, log)
        (crashes if kind == "crash" else sws).append(r)
        if r.notes.get("unhealthy"):
            log(f"{driver.name}: the cluster is not healthy: remaining rounds not run")
            break
    rss_after = driver.agent_rss()
    return {"name": driver.name, "crash": crashes, "switchover": sws,
            "rss_before": rss_before, "rss_after": rss_after}


def measure_fresh(start_driver, rounds, switchovers, log=print, max_clusters=None):
    """Like measure(), but after a round the cluster did not heal from (rejoin failure, or
    unhealthy before a round) the remaining rounds run on a new cluster:
    `start_driver()` returns a started driver, closed here (`close()`). At most
    `max_clusters` clusters (default: rounds + switchovers, at least 1)."""
    max_clusters = max_clusters or max(1, rounds + switchovers)
    plan = [("crash", i, rounds) for i in range(rounds)] + \
        [("switchover", i, switchovers) for i in range(switchovers)]
    res = {"name": None, "crash": [], "switchover": [], "rss_before": {}, "rss_after": {},
           "clusters": 0}
    k = 0
    while k < len(plan) and res["clusters"] < max_clusters:
        res["clusters"] += 1
        driver = start_driver()
        try:
            res["name"] = driver.name
            prepare(driver)
            if not res["rss_before"]:
                res["rss_before"] = driver.agent_rss()
            while k < len(plan):
                kind, i, n = plan[k]
                log(f"{driver.name}: {kind} round {i + 1}/{n} (cluster {res['clusters']})")
                r = run_round(driver, kind, log)
                if r.notes.get("unhealthy"):
                    break                     # not counted: run it again on a new cluster
                res[kind].append(r)
                k += 1
                if r.rejoin_failure:
                    break
            with contextlib.suppress(Exception):
                res["rss_after"] = driver.agent_rss() or res["rss_after"]
            if k < len(plan):
                log(f"{driver.name}: the cluster did not heal; the remaining "
                    f"{len(plan) - k} rounds run on a new one")
                with contextlib.suppress(Exception):
                    log(driver.diagnostics())
        finally:
            driver.close()
    if k < len(plan):
        log(f"{res['name']}: {len(plan) - k} rounds not run (at most {max_clusters} clusters)")
    return res



def summarize(res):
    """Medians and maxima of one driver's results (measured rounds only)."""
    def mm(rounds, field):
        return history.median_max([getattr(r, field) for r in rounds if r.failure is None])
    c = list(res["crash"])
    s = list(res["switchover"])
    ok_c = [r for r in c if r.failure is None]
    ok_s = [r for r in s if r.failure is None]
    rss = list(res["rss_after"].values()) or list(res["rss_before"].values())
    return {
        "name": res["name"],
        "crash_rounds": f"{len(ok_c)}/{len(c)}",
        "downtime": mm(c, "downtime"),
        "crash_lost": (sum(r.lost or 0 for r in ok_c), max([r.lost or 0 for r in ok_c], default=None)),
        "restream": mm(c, "restream"),
        "at_risk": mm(c, "at_risk"),
        "switch_rounds": f"{len(ok_s)}/{len(s)}",
        "gap": mm(s, "gap"),
        "recover_gap": history.median_max([r.recover_gap for r in ok_c + ok_s]),
        "switch_lost": (sum(r.lost or 0 for r in ok_s), max([r.lost or 0 for r in ok_s], default=None)),
        "dual_primary": any(r.dual_primary for r in ok_c + ok_s),
        "rejoin_failed": sum(1 for r in ok_c + ok_s if r.rejoin_failure),
        "etcd_leader_hit": sum(1 for r in ok_c if r.notes.get("etcd_leader_on_crashed_node")),
        "cancelled": sum(r.lost_sync_cancelled for r in ok_c + ok_s),
        "rss": history.median_max(rss),
    }


def table(summaries):
    """One text table, a row per system/profile."""
    def mm(p, unit="s", scale=1.0, digits=1):
        if p[0] is None:
            return "-"
        return f"{p[0] * scale:.{digits}f} / {p[1] * scale:.{digits}f}"

    def cnt(p):
        return "-" if p[1] is None else f"{p[0]} / {p[1]}"

    head = ["system", "crash rounds", "etcd leader hit", "crash->write s", "lost (sum/max)",
            "re-stream s",
            "acked before re-stream", "switchovers", "switchover gap s", "lost (sum/max)",
            "rejoin write gap s", "rejoin failed", "dual primary", "agent RSS MiB"]
    rows = [head]
    for s in summaries:
        if "unavailable" in s:
            rows.append([s["name"], s["unavailable"]] + [""] * (len(head) - 2))
            continue
        lost = cnt(s["crash_lost"]) + (f" (+{s['cancelled']} cancelled sync)" if s["cancelled"] else "")
        rows.append([s["name"], s["crash_rounds"], str(s["etcd_leader_hit"]), mm(s["downtime"]), lost,
                     mm(s["restream"], digits=2), mm(s["at_risk"], digits=0),
                     s["switch_rounds"], mm(s["gap"], digits=2), cnt(s["switch_lost"]),
                     mm(s["recover_gap"], digits=2), str(s["rejoin_failed"]),
                     "yes" if s["dual_primary"] else "no",
                     mm(s["rss"], scale=1 / 2**20)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + ("\n(median / max over the measured rounds; RSS: over the nodes; "
                               "etcd leader hit: crash rounds whose crashed node led etcd; "
                               "rejoin failed: rounds after which a node did not rejoin)")
