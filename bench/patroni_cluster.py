"""A throwaway 3-node Patroni 3 cluster (etcd3 DCS, PostgreSQL 15), the failover
benchmark's comparison point (`bench/failover.py`); also a `failover_lib` cluster driver.

Layout: one network namespace per node (`pfo<token>-<i>`), each with a veth into a
bridge `pfb<token>` created here, on a private /24 picked from 10.200-254.x.0/24 that
overlaps no existing address or route (the bridge, and so the benchmark's client, is
`.254`; node i is `.i+1`). Each node runs one etcd member (client :2379, peer :2380),
one Patroni (REST :8008) and the PostgreSQL it manages (:5432, socket in the node's
directory), all as the `postgres` user, all data in one temporary directory. etcd, the
REST API and PostgreSQL client traffic are plain (no TLS) on this private bridge: it is a
comparison of failover behaviour, not a deployment.

A node crash is a host death: the node's link goes down first (peers get no FIN or
RST, as when power is lost), then every process in the node's namespace gets SIGKILL
(etcd, Patroni, the postmaster and all its children: found by their network
namespace, so nothing else on the machine is touched), repeated until none is left.
`restore()` brings the link up and starts etcd and Patroni again on the same data.

Profiles (Patroni's bootstrap DCS settings):
  defaults  ttl 30, loop_wait 10, retry_timeout 10 (Patroni's defaults)
  ttl10     ttl 10, loop_wait 2, retry_timeout 3 (loop_wait + 2 * retry_timeout <= ttl)
and `sync=True` adds `synchronous_mode: true` to either.

This process becomes a child subreaper (the postmasters Patroni detaches would otherwise
be orphaned to PID 1, which may not reap them) and reaps them from the main thread.
`close()` (also on SIGTERM/SIGINT and at exit) kills everything it started, deletes the
namespaces, the bridge and the directory. A run that was SIGKILLed leaves a state file
in /run/pg-failover-bench; the next start removes what such a dead run left.

Stand-alone use: `/usr/bin/python3 bench/patroni_cluster.py [--profile ttl10] [--sync]`
starts a cluster, prints `patronictl list`, and tears it down.
"""
import atexit
import contextlib
import ctypes
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover_lib import Fault  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
STATE_DIR = "/run/pg-failover-bench"
PROFILES = {
    "defaults": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
    "ttl10": {"ttl": 10, "loop_wait": 2, "retry_timeout": 3},
}


def run(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def _http(method, url, body=None, timeout=2.0):
    """(status, text) of one request; (None, error) when the node does not answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ValueError) as e:
        return None, str(e)


def _pick_subnet():
    used = []
    for cmd in (("ip", "-j", "addr"), ("ip", "-j", "route"), ("ip", "-j", "-4", "route", "show", "table", "all")):
        out = json.loads(run(*cmd).stdout or "[]")
        for item in out:
            for a in item.get("addr_info", []):
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
            dst = item.get("dst")
            if dst and dst != "default":
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network(dst, strict=False))
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return net
    raise RuntimeError("no free 10.x.y.0/24 found")


def _netns_pids(ns):
    """PIDs of the processes whose network namespace is `ns` (ours only have it)."""
    try:
        ino = os.stat(f"/run/netns/{ns}").st_ino
    except FileNotFoundError:
        return []
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}/ns/net").st_ino == ino:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def _kill_netns(ns, rounds=100):
    """SIGKILL every process in the namespace until none is left (bounded)."""
    for _ in range(rounds):
        pids = _netns_pids(ns)
        if not pids:
            return True
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        _reap()
        time.sleep(0.02)
    return not _netns_pids(ns)


def _reap():
    """Reap exited children, including orphans adopted as subreaper (main thread only)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _set_subreaper():
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cleanup_stale(log=print):
    """Remove what earlier runs left if they died without tearing down (SIGKILL)."""
    if not os.path.isdir(STATE_DIR):
        return
    for f in os.listdir(STATE_DIR):
        path = os.path.join(STATE_DIR, f)
        try:
            with open(path) as fh:
                st = json.load(fh)
        except (OSError, ValueError):
            continue
        if _pid_alive(st.get("pid", 0)):
            continue
        log(f"removing what a dead benchmark run (pid {st.get('pid')}) left: {f}")
        _teardown_resources(st)
        with contextlib.suppress(OSError):
            os.unlink(path)


def _teardown_resources(st):
    for ns in st.get("netns", []):
        _kill_netns(ns)
        run("ip", "netns", "del", ns, check=False)
    for link in st.get("links", []):
        run("ip", "link", "del", link, check=False)
    d = st.get("dir")
    if d and os.path.basename(d).startswith("pfo-") and os.path.isdir(d):
        shutil.rmtree(d, ignore_errors=True)


class PatroniCluster:
    """Three etcd + PostgreSQL 15 + Patroni nodes in network namespaces; a failover driver."""

    def __init__(self, profile="defaults", sync=False, nodes=3, log=print, pg_params=None):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}")
        self.profile = profile
        self.sync = sync
        self.n = nodes
        self.log = log
        self.name = f"patroni-{profile}" + ("-sync" if sync else "")
        self.dcs = PROFILES[profile]
        self.pg_params = dict(pg_params or {})   # extra PostgreSQL settings (experiments)
        t = self.dcs
        if t["loop_wait"] + 2 * t["retry_timeout"] > t["ttl"]:
            raise ValueError("Patroni needs loop_wait + 2 * retry_timeout <= ttl")
        # a failover should take about ttl + loop_wait; allow generously more
        self.failover_timeout = 3 * t["ttl"] + 30
        self.token = secrets.token_hex(2)
        self.scope = f"bench{self.token}"
        self.state = {"pid": os.getpid(), "netns": [], "links": [], "dir": None}
        self.procs = {}               # node index -> {"etcd": Popen, "patroni": Popen}
        self.crashed = []
        self._pw = {k: secrets.token_urlsafe(24) for k in ("superuser", "replication", "rewind")}
        self._closed = False
        self.net = None
        self.dir = None

    # ---- driver interface (see failover_lib) --------------------------------------------
    def hosts(self):
        return [self.ip(i) for i in range(self.n)]

    def conn_params(self):
        return {"user": "postgres", "dbname": "postgres", "port": 5432, "sslmode": "disable"}

    def password(self):
        return self._pw["superuser"]

    def primary(self):
        c = self.cluster()
        if c is None:
            return None
        for m in c.get("members", []):
            if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running":
                return m.get("host")
        return None

    def crash_primary(self):
        host = self.primary()
        if host is None:
            raise RuntimeError("no primary to crash")
        i = self.hosts().index(host)
        notes = {"etcd_leader_on_crashed_node": self._etcd_leader() == i}
        t = self.crash(i)
        return Fault(t, host, notes)

    def switchover(self, timeout=60):
        c = self.cluster() or {}
        members = c.get("members", [])
        leader = next((m for m in members if m.get("role") in ("leader", "master")), None)
        if leader is None:
            raise RuntimeError("no leader to switch over from")
        want = ("sync_standby",) if self.sync else ("replica", "sync_standby")
        cands = sorted((m for m in members if m.get("role") in want
                        and m.get("state") == "running"), key=lambda m: m["name"])
        if not cands:
            raise RuntimeError(f"no switchover candidate in {members}")
        cand = random.choice(cands)
        t = time.monotonic()
        status, text = _http("POST", f"http://{leader['host']}:8008/switchover",
                             {"leader": leader["name"], "candidate": cand["name"]}, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"switchover refused: {status} {text.strip()}")
        return Fault(t, leader["host"], {"candidate": cand["host"], "answer": text.strip(),
                                         "request_s": time.monotonic() - t})

    def restore(self, timeout=180):
        for i in list(self.crashed):
            run("ip", "link", "set", self._veth(i), "up")
            self._start_node(i)
            self.crashed.remove(i)
        self.wait_healthy(timeout)

    def agent_rss(self):
        """Resident memory (bytes) of each node's Patroni process (not PostgreSQL's)."""
        out = {}
        for i in range(self.n):
            total = 0
            for pid in _netns_pids(self._ns(i)):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = f.read().split(b"\0")
                    if not any(a.endswith(b"/patroni") for a in argv[:2]):
                        continue
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                total += int(line.split()[1]) * 1024
                except OSError:
                    pass
            if total:
                out[self.ip(i)] = total
        return out

    def wait_healthy(self, timeout=180):
        """One running leader, n-1 replicas streaming from it (a sync one in sync mode), all
        etcd members healthy. Raises TimeoutError with the last state seen."""
        deadline = time.monotonic() + timeout
        last = "nothing yet"
        while time.monotonic() < deadline:
            _reap()
            dead = [f"node {i} {what} exited {p.returncode}" for i, node in self.procs.items()
                    if i not in self.crashed for what, p in node.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{self.name}: {', '.join(dead)}")
            ok, last = self._healthy()
            if ok:
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not healthy after {timeout} s: {last}")

    # ---- cluster control --------------------------------------------------------------
    def ip(self, i):
        return str(self.net.network_address + i + 1)

    def _ns(self, i):
        return f"pfo{self.token}-{i}"

    def _veth(self, i):
        return f"pfv{self.token}{i}"

    def start(self, timeout=240):
        _set_subreaper()
        cleanup_stale(self.log)
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        self._state_file = os.path.join(STATE_DIR, f"{self.token}.json")
        atexit.register(self.close)
        self.dir = tempfile.mkdtemp(prefix="pfo-")
        os.chmod(self.dir, 0o755)
        self.state["dir"] = self.dir
        self._save_state()
        self.net = _pick_subnet()
        br = f"pfb{self.token}"
        bridge_ip = f"{self.net.network_address + 254}/{self.net.prefixlen}"
        run("ip", "link", "add", br, "type", "bridge")
        self.state["links"].append(br)
        self._save_state()
        run("ip", "addr", "add", bridge_ip, "dev", br)
        run("ip", "link", "set", br, "up")
        for i in range(self.n):
            ns, vh, vp = self._ns(i), self._veth(i), f"pfp{self.token}{i}"
            run("ip", "netns", "add", ns)
            self.state["netns"].append(ns)
            self._save_state()
            run("ip", "link", "add", vh, "type", "veth", "peer", "name", vp)
            self.state["links"].insert(0, vh)
            self._save_state()
            run("ip", "link", "set", vh, "master", br)
            run("ip", "link", "set", vh, "up")
            run("ip", "link", "set", vp, "netns", ns)
            run("ip", "-n", ns, "link", "set", vp, "name", "eth0")
            run("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/{self.net.prefixlen}", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            nd = self._node_dir(i)
            for sub in ("", "etcd", "sock", "pglog"):
                os.makedirs(os.path.join(nd, sub), exist_ok=True)
            os.chmod(os.path.join(nd, "etcd"), 0o700)
            with open(os.path.join(nd, "patroni.yml"), "w") as f:
                yaml.safe_dump(self._patroni_config(i), f, sort_keys=False)
            os.chmod(os.path.join(nd, "patroni.yml"), 0o600)
        run("chown", "-R", "postgres:postgres", self.dir)
        self.log(f"{self.name}: nodes {', '.join(self.hosts())} (netns pfo{self.token}-*, "
                 f"bridge {br}), data in {self.dir}")
        for i in range(self.n):
            self._start_etcd(i)
        for i in range(self.n):
            self._start_patroni(i)
        try:
            self.wait_healthy(timeout)
        except (TimeoutError, RuntimeError):
            self.log(self.diagnostics())
            raise
        return self

    def diagnostics(self, lines=15):
        """The last lines of every node's logs (for a failure report)."""
        out = []
        for i in range(self.n):
            nd = self._node_dir(i)
            for name in ("etcd.out", "patroni.out", "patroni.log"):
                try:
                    with open(os.path.join(nd, name), errors="replace") as f:
                        tail = f.readlines()[-lines:]
                except OSError:
                    continue
                out.append(f"--- node {i} {name}\n" + "".join(tail).rstrip())
        return "\n".join(out)

    def _node_dir(self, i):
        return os.path.join(self.dir, f"n{i}")

    def _save_state(self):
        tmp = self._state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.replace(tmp, self._state_file)

    def _spawn(self, i, what, argv):
        nd = self._node_dir(i)
        logf = open(os.path.join(nd, f"{what}.out"), "ab")
        env = {"PATH": f"{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "LC_ALL": "C.UTF-8", "HOME": nd, "PYTHONUNBUFFERED": "1"}
        p = subprocess.Popen(["ip", "netns", "exec", self._ns(i), "setpriv", "--reuid=postgres",
                              "--regid=postgres", "--init-groups", "--", *argv],
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             cwd=nd, env=env, start_new_session=True)
        logf.close()
        self.procs.setdefault(i, {})[what] = p
        return p

    def _start_etcd(self, i):
        ip = self.ip(i)
        cluster = ",".join(f"e{j}=http://{self.ip(j)}:2380" for j in range(self.n))
        self._spawn(i, "etcd", [
            "/usr/bin/etcd", "--name", f"e{i}", "--data-dir", os.path.join(self._node_dir(i), "etcd"),
            "--listen-client-urls", f"http://{ip}:2379,http://127.0.0.1:2379",
            "--advertise-client-urls", f"http://{ip}:2379",
            "--listen-peer-urls", f"http://{ip}:2380",
            "--initial-advertise-peer-urls", f"http://{ip}:2380",
            "--initial-cluster", cluster, "--initial-cluster-token", self.scope,
            "--initial-cluster-state", "new", "--enable-v2=false", "--logger=zap",
            "--log-level=warn"])

    def _start_patroni(self, i):
        self._spawn(i, "patroni", ["/usr/bin/patroni", os.path.join(self._node_dir(i), "patroni.yml")])

    def _start_node(self, i):
        self._start_etcd(i)
        self._start_patroni(i)

    def _patroni_config(self, i):
        ip, nd = self.ip(i), self._node_dir(i)
        dcs = dict(self.dcs)
        dcs.update({
            "maximum_lag_on_failover": 1048576,
            "synchronous_mode": bool(self.sync),
            "postgresql": {
                "use_pg_rewind": True,
                "parameters": {"wal_level": "replica", "hot_standby": "on",
                               "max_wal_senders": 10, "max_replication_slots": 10,
                               "wal_log_hints": "on", "wal_keep_size": "128MB",
                               **self.pg_params},
            },
        })
        subnet = str(self.net)
        return {
            "scope": self.scope,
            "namespace": "/service/",
            "name": f"pg{i}",
            "log": {"level": "INFO", "dir": nd, "file_size": 50_000_000, "file_num": 2},
            "restapi": {"listen": f"{ip}:8008", "connect_address": f"{ip}:8008"},
            "etcd3": {"hosts": [f"{self.ip(j)}:2379" for j in range(self.n)]},
            "bootstrap": {
                "dcs": dcs,
                "initdb": [{"encoding": "UTF8"}, "data-checksums"],
                "pg_hba": [
                    "local all all peer",
                    f"host replication replicator {subnet} scram-sha-256",
                    f"host all all {subnet} scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
            "postgresql": {
                "listen": f"{ip},127.0.0.1:5432",
                "connect_address": f"{ip}:5432",
                "data_dir": os.path.join(nd, "pg"),
                "bin_dir": PG_BIN,
                "pgpass": os.path.join(nd, "pgpass"),
                "use_unix_socket": True,
                "authentication": {
                    "superuser": {"username": "postgres", "password": self._pw["superuser"]},
                    "replication": {"username": "replicator", "password": self._pw["replication"]},
                    "rewind": {"username": "rewinder", "password": self._pw["rewind"]},
                },
                "parameters": {
                    "unix_socket_directories": os.path.join(nd, "sock"),
                    "password_encryption": "scram-sha-256",
                    "logging_collector": "on",
                    "log_directory": os.path.join(nd, "pglog"),
                    "shared_buffers": "64MB",
                },
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }

    def crash(self, i):
        """Host death of node i: link down, SIGKILL of every process in its namespace."""
        run("ip", "link", "set", self._veth(i), "down")
        pids = _netns_pids(self._ns(i))
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        t = time.monotonic()
        if not _kill_netns(self._ns(i)):
            raise RuntimeError(f"processes of node {i} survived SIGKILL")
        for p in self.procs.get(i, {}).values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        self.crashed.append(i)
        return t

    def cluster(self):
        """Patroni's /cluster from the first live node that answers, or None."""
        for i in range(self.n):
            if i in self.crashed:
                continue
            status, text = _http("GET", f"http://{self.ip(i)}:8008/cluster", timeout=1.0)
            if status == 200:
                with contextlib.suppress(ValueError):
                    return json.loads(text)
        return None

    def _etcd_leader(self):
        """Index of the node whose etcd member leads the raft group, or None."""
        ids = {}
        leader = None
        for i in range(self.n):
            if i in self.crashed:
                continue
            status, text = _http("POST", f"http://{self.ip(i)}:2379/v3/maintenance/status", {},
                                 timeout=1.0)
            if status == 200:
                with contextlib.suppress(ValueError, KeyError):
                    st = json.loads(text)
                    ids[st["header"]["member_id"]] = i
                    leader = st["leader"]
        return ids.get(leader)

    def _healthy(self):
        live = [i for i in range(self.n) if i not in self.crashed]
        for i in live:
            status, text = _http("GET", f"http://{self.ip(i)}:2379/health", timeout=1.0)
            if status != 200 or '"true"' not in text:
                return False, f"etcd on {self.ip(i)}: {status} {text[:100]}"
        c = self.cluster()
        if c is None:
            return False, "no Patroni REST API answers"
        members = c.get("members", [])
        leaders = [m for m in members if m.get("role") in ("leader", "master")]
        if len(leaders) != 1 or leaders[0].get("state") != "running":
            return False, f"leaders: {leaders}"
        others = [m for m in members if m not in leaders]
        if len(others) != len(live) - 1 or any(m.get("state") != "running" for m in others):
            return False, f"members: {[(m.get('name'), m.get('role'), m.get('state')) for m in members]}"
        try:
            import psycopg2
            conn = psycopg2.connect(host=leaders[0]["host"], port=5432, user="postgres",
                                    dbname="postgres", password=self.password(),
                                    connect_timeout=1, application_name="bench-health")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FILTER (WHERE state = 'streaming'), "
                                "count(*) FILTER (WHERE sync_state IN ('sync', 'quorum')) "
                                "FROM pg_stat_replication")
                    streaming, sync = cur.fetchone()
            finally:
                conn.close()
        except Exception as e:
            return False, f"leader {leaders[0]['host']}: {type(e).__name__}"
        if streaming != len(live) - 1:
            return False, f"{streaming} streaming replicas"
        if self.sync and sync < 1:
            return False, "no sync standby yet"
        return True, "healthy"

    def patronictl(self, *args):
        cfg = os.path.join(self.dir, "patronictl.yml")
        if not os.path.exists(cfg):
            with open(cfg, "w") as f:
                yaml.safe_dump({"scope": self.scope, "namespace": "/service/",
                                "etcd3": {"hosts": [f"{h}:2379" for h in self.hosts()]}}, f)
        return run("patronictl", "-c", cfg, *args, check=False).stdout

    def close(self):
        """Kill everything started here, delete namespaces, bridge and data (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            _teardown_resources(self.state)
            for node in self.procs.values():
                for p in node.values():
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(5)
            _reap()
        finally:
            with contextlib.suppress(OSError, AttributeError):
                os.unlink(self._state_file)
            with contextlib.suppress(OSError):
                os.rmdir(STATE_DIR)          # only when no other run uses it

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def term_as_exit():
    """Turn SIGTERM/SIGHUP into SystemExit so that `finally` blocks tear down."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="defaults")
    ap.add_argument("--sync", action="store_true")
    args = ap.parse_args()
    term_as_exit()
    t = time.monotonic()
    with PatroniCluster(args.profile, args.sync) as c:
        print(f"healthy after {time.monotonic() - t:.1f} s, primary {c.primary()}")
        print(c.patronictl("list"))
        print({h: f"{v / 2**20:.1f} MiB" for h, v in c.agent_rss().items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
