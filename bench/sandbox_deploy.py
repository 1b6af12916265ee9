#!/usr/bin/python3
# Benchmark of the local model: time for a 3-unit deploy of the noop charm to reach
# all-active, and the median cost of one hook-tool call made from inside a unit.
import json
import os
import statistics
import sys
import time

from localmodel import REPO, controller, juju


# Runs inside the unit, in a juju exec hook context: times each call on its own.

PROBE = r"""
import subprocess, time, json, statistics
out = {}
for argv in (["is-leader"], ["config-get", "--format=json"],
             ["relation-get", "-r", "peers:0", "-", "noop/1"], ["status-get"]):
    samples = []
    for _ in range(N):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        samples.append((time.perf_counter() - t) * 1000)
    out[" ".join(argv[:1])] = statistics.median(samples)
print(json.dumps(out))
"""




def all_active(app):
    st = json.loads(juju("status", "--format", "json").stdout)
    a = st["applications"].get(app)
    if not a or a["application-status"]["current"] != "active" or len(a["units"]) < 3:
        return False
    return all(u["workload-status"]["current"] == "active" and
               u["juju-status"]["current"] == "idle" for u in a["units"].values())


def main():
    calls = int(os.environ.get("BENCH_TOOL_CALLS", "200"))
    with controller():
        t0 = time.monotonic()
        juju("deploy", os.path.join(REPO, "tests", "charms", "noop"), "-n", "3")
        deadline = t0 + 120
        while not all_active("noop"):
            if time.monotonic() > deadline:
                print("deploy did not reach all-active within 120 s", file=sys.stderr)
                return 1
            time.sleep(0.05)
        deploy_s = time.monotonic() - t0
        probe = PROBE.replace("N)", f"{calls})")
        r = juju("exec", "--unit", "noop/0", "--", "/usr/bin/python3", "-c",
                 f"'{probe}'")
        medians = json.loads(r.stdout)
        print(f"deploy noop -n 3 to all-active: {deploy_s:.2f} s (target < 5 s)")
        for name, ms in medians.items():
            print(f"hook tool {name}: median {ms:.2f} ms over {calls} calls (target < 5 ms)")
        print(f"hook tool median over all: {statistics.median(medians.values()):.2f} ms")
        return 0


if __name__ == "__main__":
    sys.exit(main())
