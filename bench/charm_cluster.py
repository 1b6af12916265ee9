"""The charm's cluster driver for `bench/failover.py` (interface: `bench/failover_lib.py`).

A controller of its own (`JUJU_SANDBOX_DIR` in a fresh directory under /tmp), one model,
`juju deploy` of the charm with 3 units (`superuser-remote-access=true`,
`profile=testing`, every HA setting at the charm's defaults: lease TTL 5 s, renewal
500 ms, synchronous replication to every replica, strict), all through
`sandbox/bin/juju`. `close()` destroys the model and kills the controller, also after a
failure, SIGTERM or SIGINT.

The cluster and its faults are `tests/chaos/cluster.py` (`CharmCluster`), shared with the
chaos tests:
  crash_primary()  host death of the primary's machine: its link down on the host side,
                   then SIGKILL of every process of the machine (agent, PostgreSQL,
                   etcd); the machine's init is kept so that the sandbox does not reboot it
                   at once (it would, within about a second, with /run intact);
  restore()        SIGKILL of that init: the sandbox boots the machine again (fresh
                   network namespace, link up, `start` hook; its uniter is poked with a
                   `juju exec` when the controller has not noticed); then until healthy;
  switchover()     `juju run <sync standby> promote-to-primary scope=unit`;
  agent_rss()      VmRSS of each unit's resident `pg-agent` (found in the unit's PID
                   namespace), not PostgreSQL's nor etcd's;
  time_restream()  polls the new primary's pg_stat_replication on a connection opened
                   before the fault (a session survives its server's promotion), so the
                   figure carries no TLS + SCRAM connection set-up (~0.1 s here).
The etcd leader (`etcd_leader_on_crashed_node`) comes from `etcdctl endpoint status`
run with `juju exec` inside a unit, with the unit's certificates.
The client is `operator` over TLS (`sslmode=verify-full` against the internal CA read
from a unit) on each unit's address, port 5432. The charm file is `build/postgresql.charm`
(or `$CHARM`), copied first, so that a rebuild during the run changes nothing.

Stand-alone: `/usr/bin/python3 bench/charm_cluster.py` deploys, prints the cluster, the
agents' memory and the etcd leader, and tears down.
"""
import contextlib
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
from chaos import cluster as charm  # noqa: E402

DEFAULT_CHARM = os.path.join(REPO, "build", "postgresql.charm")
DEPLOY_TIMEOUT = 600


class CharmBench(charm.CharmCluster):
    """A 3-unit charm cluster on a throwaway controller; a failover_lib driver."""

    def __init__(self, units=3, config=None, charm_file=None, log=print):
        self.n_units = units
        self.config = dict(config or {})
        self.charm_src = charm_file or os.environ.get("CHARM") or DEFAULT_CHARM
        self.dir = None
        self._bootstrapped = False
        self._closed = False
        self._model_added = False
        self.keep_logs = True     # copy the units' logs before destroying the model
        # short: the controller's Unix sockets live under this directory (108-byte paths)
        self.dir = tempfile.mkdtemp(prefix="cfo", dir="/tmp")
        super().__init__(charm.cli_runner(self.dir, "bench"), self.dir, "bench", log=log)
        self.name = "charm" + "".join(f"-{k}={v}" for k, v in sorted(self.config.items()))

    def start(self):
        if not os.path.exists(self.charm_src):
            raise FileNotFoundError(f"{self.charm_src} does not exist: run `make build` first")
        charm_copy = os.path.join(self.dir, "postgresql.charm")
        shutil.copy2(self.charm_src, charm_copy)
        self.juju("bootstrap", timeout=300)
        self._bootstrapped = True
        self.juju("add-model", "bench", timeout=120)
        self._model_added = True
        t = time.monotonic()
        self.deploy(charm_copy, self.n_units, self.config)
        self.wait_healthy(DEPLOY_TIMEOUT, expect_units=self.n_units)
        self.log(f"{self.name}: {self.n_units} units healthy {time.monotonic() - t:.0f} s after "
                 f"deploy (controller in {self.dir}); primary {self.primary()}")
        return self

    def close(self):
        """Destroy the model, kill the controller, remove the directory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.release_all()
        if self.keep_logs and self._model_added:
            with contextlib.suppress(Exception):
                self.log(f"{self.name}: logs of the units kept in {self.save_logs()}")
        try:
            if self._model_added:
                p = self.juju("destroy-model", "bench", "--no-prompt", timeout=300, check=False)
                if p.returncode != 0:
                    self.juju("destroy-model", "bench", "--no-prompt", "--force", timeout=300,
                              check=False)
        except Exception as e:
            self.log(f"destroy-model: {e}")
        try:
            if self._bootstrapped:
                self.juju("kill-controller", "--no-prompt", timeout=180, check=False)
        except Exception as e:
            self.log(f"kill-controller: {e}")
        super().close()
        deadline = time.monotonic() + 30
        while self.dir and _used(self.dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        if self.dir and not _used(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir:
            self.log(f"NOT removing {self.dir}: processes or mounts still use it")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def _used(path):
    """Processes whose command line names `path`, or mounts under it (then keep it)."""
    needle = path.encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if needle in f.read():
                        return True
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].startswith(path) for line in f)


def main():
    sys.path.insert(0, HERE)
    import patroni_cluster
    patroni_cluster.term_as_exit()
    t = time.monotonic()
    with CharmBench() as c:
        print(f"healthy after {time.monotonic() - t:.1f} s, primary {c.primary()}")
        for unit, u in c.units().items():
            print(f"  {unit} {u['address']} {u['message']}")
        _, leader = c.etcd_status()
        print(f"etcd leader: {leader}")
        print({h: f"{v / 2**20:.1f} MiB" for h, v in c.agent_rss().items()})
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("needs root (the local model uses namespaces)", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())

