#!/usr/bin/python3
"""`make bench-failover`: failover and switchover figures, Patroni 3 next to the charm.

    /usr/bin/python3 bench/failover.py [--only patroni|charm] [--rounds N]
                                       [--switchovers N] [--profiles LIST] [--json FILE]

Prints one table, a row per system/profile: `patroni-defaults` (ttl 30, loop_wait 10,
retry_timeout 10), `patroni-ttl10` (ttl 10, loop_wait 2, retry_timeout 3),
`patroni-ttl10-sync` (the same with synchronous_mode) and `charm`. Each Patroni profile
runs on a fresh 3-node cluster (`bench/patroni_cluster.py`: network namespaces, etcd3,
PostgreSQL 15); the measurements and the driver interface are in
`bench/failover_lib.py`. Figures only: nothing here passes or fails on a time.

Rounds: `--rounds N`, else `FAILOVER_ROUNDS`, else 3 for `patroni-defaults` (a
failover takes ~30 s there) and 5 for the others; switchover rounds: `--switchovers N`,
else `FAILOVER_SWITCHOVERS`, else the same number. Profiles: `--profiles`, else
`FAILOVER_PROFILES`, else `defaults,ttl10,ttl10-sync` (also `defaults-sync`).

The charm's row (`charm`) runs on a 3-unit deployment of `build/postgresql.charm` (or
`$CHARM`) on a local model of its own, at the charm's defaults (lease TTL 5 s, renewal
500 ms, synchronous replication to every replica, strict): `bench/charm_cluster.py`.
Its rounds: `--rounds N`, else `FAILOVER_ROUNDS`, else 5 (switchovers likewise).
"""
import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import failover_lib  # noqa: E402
import patroni_cluster  # noqa: E402

CHARM_UNAVAILABLE = ("charm driver not available: bench/charm_cluster.py could not be imported")
DEFAULT_PROFILES = "defaults,ttl10,ttl10-sync"


def charm_driver():
    """The charm's cluster driver module (bench/charm_cluster.py), or None."""
    try:
        import charm_cluster
    except ImportError as e:
        print(f"bench/charm_cluster.py: {e}", file=sys.stderr)
        return None
    return charm_cluster


def rounds_for(profile, args):
    if args.rounds is not None:
        return args.rounds
    if os.environ.get("FAILOVER_ROUNDS"):
        return int(os.environ["FAILOVER_ROUNDS"])
    return 3 if profile.startswith("defaults") else 5


def switchovers_for(profile, args, rounds):
    if args.switchovers is not None:
        return args.switchovers
    if os.environ.get("FAILOVER_SWITCHOVERS"):
        return int(os.environ["FAILOVER_SWITCHOVERS"])
    return rounds


def run_patroni(profile, args, log):
    base, _, sync = profile.partition("-")
    rounds = rounds_for(profile, args)
    switchovers = switchovers_for(profile, args, rounds)
    cluster = patroni_cluster.PatroniCluster(base, sync=(sync == "sync"), log=log)
    try:
        t = time.monotonic()
        cluster.start()
        log(f"{cluster.name}: healthy after {time.monotonic() - t:.1f} s; {rounds} crash and "
            f"{switchovers} switchover rounds")
        res = failover_lib.measure(cluster, rounds, switchovers, log)
        if any(r.failure for r in res["crash"] + res["switchover"]):
            log(cluster.diagnostics())
        return res
    except Exception:
        if cluster.dir:
            log(cluster.diagnostics())
        raise
    finally:
        cluster.close()


def run_charm(args, log):
    """The charm's rounds, on fresh 3-unit clusters as needed (failover_lib.measure_fresh:
    a cluster a node could not rejoin is replaced for the remaining rounds)."""
    rounds = rounds_for("charm", args)
    switchovers = switchovers_for("charm", args, rounds)
    mod = charm_driver()

    def start():
        cluster = mod.CharmBench(log=log)
        try:
            t = time.monotonic()
            cluster.start()
        except BaseException:         # SIGINT/SIGTERM during a deploy too: no leftovers
            with contextlib.suppress(Exception):
                log(cluster.diagnostics())
            cluster.close()
            raise
        log(f"{cluster.name}: healthy after {time.monotonic() - t:.1f} s")
        return cluster

    log(f"charm: {rounds} crash and {switchovers} switchover rounds")
    return failover_lib.measure_fresh(start, rounds, switchovers, log,
                                      max_clusters=max(2, (rounds + switchovers + 1) // 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("patroni", "charm"))
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--switchovers", type=int)
    ap.add_argument("--profiles", default=os.environ.get("FAILOVER_PROFILES", DEFAULT_PROFILES))
    ap.add_argument("--json", help="also write every round's figures to this file")
    args = ap.parse_args()
    for n in (args.rounds, args.switchovers):
        if n is not None and not 0 <= n <= 50:
            ap.error("rounds are bounded: 0 to 50")
    if os.geteuid() != 0:
        print("needs root (network namespaces, a bridge, running as postgres)", file=sys.stderr)
        return 2
    patroni_cluster.term_as_exit()

    def log(msg):
        print(msg, flush=True)

    summaries, results = [], []
    if args.only in (None, "charm") and charm_driver() is None:
        if args.only == "charm":
            print(CHARM_UNAVAILABLE, file=sys.stderr)
            return 2
    if args.only in (None, "patroni"):
        profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
        for p in profiles:
            if p.partition("-")[0] not in patroni_cluster.PROFILES or \
                    p.partition("-")[2] not in ("", "sync"):
                ap.error(f"unknown profile {p!r}")
        for p in profiles:
            try:
                res = run_patroni(p, args, log)
            except Exception as e:
                log(f"patroni-{p}: FAILED: {type(e).__name__}: {e}")
                summaries.append({"name": f"patroni-{p}", "unavailable": f"failed: {type(e).__name__}"})
                continue
            results.append(res)
            summaries.append(failover_lib.summarize(res))
    if args.only in (None, "charm"):
        if charm_driver() is None:
            summaries.append({"name": "charm", "unavailable": "driver not available"})
        else:
            try:
                res = run_charm(args, log)
            except Exception as e:
                log(f"charm: FAILED: {type(e).__name__}: {e}")
                summaries.append({"name": "charm", "unavailable": f"failed: {type(e).__name__}"})
            else:
                results.append(res)
                summaries.append(failover_lib.summarize(res))
    print()
    print(failover_lib.table(summaries))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: ([dataclasses.asdict(r) for r in v] if k in ("crash", "switchover") else v)
                        for k, v in res.items()} for res in results], f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
