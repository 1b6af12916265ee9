#!/usr/bin/python3
# Benchmark of the charm's hot path: the median cost of a no-op hook through relay and
# agent (inside a unit of the local model), and the agent's resident memory when idle.
import json
import os
import sys
import time

from localmodel import REPO, controller, juju

CHARM = os.path.join(REPO, "build", "postgresql.charm")


PROBE = r"""
import os, subprocess, time, statistics
env = dict(os.environ, JUJU_DISPATCH_PATH="hooks/update-status")
samples = []
for _ in range(N):
    t = time.perf_counter()
    subprocess.run([os.environ["JUJU_CHARM_DIR"] + "/dispatch"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    samples.append((time.perf_counter() - t) * 1000)
print(statistics.median(samples))
"""




def main():
    runs = int(os.environ.get("BENCH_HOOK_RUNS", "100"))
    with controller():
        juju("deploy", CHARM, "--config", "profile=testing")
        deadline = time.monotonic() + 120
        while True:
            st = json.loads(juju("status", "--format", "json").stdout)
            u = st["applications"]["postgresql"].get("units", {}).get("postgresql/0", {})
            if u.get("juju-status", {}).get("current") == "idle" and \
                    u.get("workload-status", {}).get("current") == "active":
                break
            if time.monotonic() > deadline:
                print("the charm did not settle within 120 s", file=sys.stderr)
                return 1
            time.sleep(0.2)
        probe = PROBE.replace("range(N)", f"range({runs})")
        r = juju("exec", "--unit", "postgresql/0", "--", "/usr/bin/python3", "-c", f"'{probe}'")
        print(f"no-op hook through relay and agent: median {float(r.stdout):.2f} ms over "
              f"{runs} runs (target < 5 ms)")
        mem = juju("exec", "--unit", "postgresql/0", "--",
                   "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = pg-agent ] && "
                   "grep -E '^(VmRSS|RssAnon|RssFile)' $p/status; done; true").stdout.split()
        kb = {mem[i].rstrip(":"): int(mem[i + 1]) for i in range(0, len(mem) - 2, 3)}
        print(f"pg-agent resident memory when idle: {kb['VmRSS'] / 1024:.1f} MiB "
              f"(target < 6 MB): {kb['RssAnon'] / 1024:.1f} MiB private, "
              f"{kb['RssFile'] / 1024:.1f} MiB of shared library pages")
        return 0


if __name__ == "__main__":
    sys.exit(main())
