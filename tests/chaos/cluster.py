"""The charm's cluster on the local model, driven from the host: `sandbox/bin/juju` for
everything Juju does, plus faults injected on the sandbox's own namespaces and processes.

Shared by the chaos tests (`tests/chaos/test_chaos.py`, on the conftest `model` fixture)
and the failover benchmark's charm driver (`bench/charm_cluster.py`, on a controller of its
own). `CharmCluster` is also a `bench/failover_lib.py` cluster driver.

What the sandbox gives (sandbox/README.md, sandbox/juju/host.py, controller.py):
- every unit is a machine: a network namespace with `eth0` on the model's bridge (the
  host reaches each unit at its address), and mount/UTS/IPC/PID namespaces whose PID 1 is
  `unit-init`; `models/<uuid>/state.json` has `machines[<mid>]["pid"]`, that init's host
  PID, and its files live under `models/<uuid>/machines/<mid>/fs`;
- the host side of the unit's veth pair is a port of the bridge: taking it down cuts the
  unit off the network (peers, clients and the host alike), nothing else changes;
- a SIGKILL of the init kills every process of the machine (the kernel ends a PID
  namespace with its init): a machine crash. The controller notices it when the unit's
  uniter next wakes up (any model change, e.g. the survivors' `ha-changed` events, or an
  operation for that unit) and restarts the machine with the same address, a fresh network
  namespace and the same files; `start` then runs again. `poke()` (a `juju exec` on the
  unit) wakes its uniter when nothing else does.

Faults (all on the host, all bounded):
  crash(unit, link_down=True)  host death: the link goes down first (peers get no FIN),
                               then SIGKILL of the machine's init (agent, PostgreSQL, etcd)
  freeze(unit) / thaw(unit)    SIGSTOP / SIGCONT of every process of the machine's PID
                               namespace and of the controller's nsenter wrappers that
                               run hooks in it (a paused VM); thaw() is idempotent
  cut(unit) / heal(unit)       the host side of the unit's link down / up
  kill_etcd(unit)              SIGKILL of the unit's etcd member only

Nothing here prints or logs a password.
"""
import contextlib
import datetime
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg2

from chaos.history import TIMELINE_SQL

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JUJU_BIN = os.path.join(REPO, "sandbox", "bin", "juju")
APP = "postgresql"
TLS_DIR = "/var/lib/pg-agent/tls"
AGENT_LOG = "var/log/pg-agent/agent.log"
REPLICA_MESSAGES = ("Sync standby", "Replica")
# agent.log lines that say a member gave up rejoining (repeated: it will not heal by itself)
STUCK_MARKERS = ("this member stays stopped",)
STUCK_REPEATS = 3
NO_PRIMARY_S = 60         # wait_rejoined() gives up when no unit is primary for this long
ETCDCTL = ("ETCDCTL_API=3 etcdctl --cacert={d}/ca.pem --cert={d}/cert.pem --key={d}/key.pem "
           "--dial-timeout=1s --command-timeout=2s").format(d=TLS_DIR)


# commands that take no --model (the controller's own)
CONTROLLER_COMMANDS = {"bootstrap", "kill-controller", "add-model", "destroy-model", "models",
                       "controllers", "controller-restart", "version"}


class ClusterError(AssertionError):
    """The cluster did not reach a state within its bound, or a command failed."""


def cli_runner(sandbox_dir, model, juju_bin=JUJU_BIN):
    """A `juju(cmd, *args, check=True, timeout=120)` bound to a controller directory and a
    model (the same call shape as the conftest Model.juju)."""
    env = dict(os.environ, JUJU_SANDBOX_DIR=sandbox_dir)

    def juju(cmd, *args, check=True, timeout=120.0):
        scoped = model and cmd not in CONTROLLER_COMMANDS
        argv = [juju_bin, cmd] + (["--model", model] if scoped else []) + [str(a) for a in args]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                               cwd=REPO, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"`juju {cmd} {' '.join(map(str, args))}` did not finish within "
                               f"{timeout} s") from None
        if check and p.returncode != 0:
            raise ClusterError(f"`juju {cmd} {' '.join(map(str, args))}` exited {p.returncode}: "
                               f"{p.stderr.strip()[-2000:]}")
        return p
    return juju


def utc_now():
    """Now as the agent's log stamps it (UTC, milliseconds), for comparing log lines."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]


def log_time(line):
    """time.time() of an agent.log line's stamp (None if it has none)."""
    try:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


# ---- host-side process helpers ------------------------------------------------------------
def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def proc_status(pid):
    """{field: value} of /proc/<pid>/status, {} when gone."""
    try:
        return dict(line.split(":", 1) for line in _read(f"/proc/{pid}/status").splitlines()
                    if ":" in line)
    except OSError:
        return {}


def proc_argv(pid):
    try:
        return [a.decode(errors="replace") for a in _read(f"/proc/{pid}/cmdline", "rb").split(b"\0")
                if a]
    except OSError:
        return []


def proc_state(pid):
    """One-letter state (R, S, T, Z, ...) or None when gone."""
    try:
        return _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pidns_pids(init_pid):
    """Host PIDs of every process in the PID namespace of `init_pid` (init included)."""
    try:
        ino = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
    except OSError:
        return []
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}/ns/pid").st_ino == ino:
                    out.append(int(d))
            except OSError:
                pass
    return out


def nsenter_wrappers(init_pid):
    """Host PIDs of the sandbox controller's `nsenter -t <init_pid> ...` wrappers (hooks,
    actions, juju exec running in that machine). They live in the host PID namespace, so
    pidns_pids() misses them; and util-linux's nsenter stops itself when its child stops
    and waits for a SIGCONT of its own before it resumes the child's wait: a freeze that
    stops a running hook must continue the wrapper too, or the controller waits on the
    hook for ever (the unit stays 'executing')."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            argv = proc_argv(int(d))
            if argv and os.path.basename(argv[0]) == "nsenter" and \
                    any(a == "-t" and i + 1 < len(argv) and argv[i + 1] == str(init_pid)
                        for i, a in enumerate(argv)):
                out.append(int(d))
    return out


def _signal_all(pids, sig):
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


# ---- the cluster --------------------------------------------------------------------------
class CharmCluster:
    """The charm's units in one model; faults, probes, and the failover_lib driver API."""

    name = "charm"
    sync = True                 # synchronous-node-count=all, strict (the charm's defaults)

    def __init__(self, juju, sandbox_dir, model, app=APP, log=print, lease_ttl=5):
        self.juju = juju
        self.sandbox_dir = os.path.realpath(sandbox_dir)
        self.model = model
        self.app = app
        self.log = log
        self.lease_ttl = lease_ttl
        self.failover_timeout = 60.0
        self._uuid = None
        self._pw = None
        self._ca = None
        self._tmp = tempfile.mkdtemp(prefix="chaos-ca-")
        self.crashed = {}        # unit -> init pid it had when it was crashed
        self.frozen = {}         # unit -> init pid
        self.cut_links = {}      # unit -> host link name
        self._probes = {}        # host -> connection opened before a fault (time_restream)
        self.watch_units = []    # units wait_healthy() checks for a rejoin given up
        self.watch_since = None

    # -- model and machines
    def deploy(self, charm, n=3, config=None):
        cfg = {"superuser-remote-access": "true", "profile": "testing"}
        cfg.update(config or {})
        args = [charm, self.app, "-n", str(n)]
        for k, v in cfg.items():
            args += ["--config", f"{k}={v}"]
        self.juju("deploy", *args, timeout=180)
        self.lease_ttl = int(cfg.get("ha-lease-ttl", self.lease_ttl))

    def status(self):
        return json.loads(self.juju("status", "--format", "json", timeout=60).stdout)

    def units(self, st=None):
        """{unit: {"address", "machine", "workload", "message", "agent"}} from juju status."""
        st = st or self.status()
        out = {}
        for name, u in ((st.get("applications") or {}).get(self.app, {}).get("units") or {}).items():
            ws = u.get("workload-status") or {}
            out[name] = {"address": u.get("public-address"), "machine": u.get("machine"),
                         "workload": ws.get("current"), "message": ws.get("message", ""),
                         "agent": (u.get("juju-status") or {}).get("current")}
        return dict(sorted(out.items(), key=lambda kv: int(kv[0].rsplit("/", 1)[1])))

    @property
    def uuid(self):
        if self._uuid is None:
            out = json.loads(self.juju("show-model", self.model, "--format", "json").stdout)
            self._uuid = next(iter(out.values()))["model-uuid"]
        return self._uuid

    def model_dir(self):
        return os.path.join(self.sandbox_dir, "models", self.uuid)

    def state(self):
        with open(os.path.join(self.model_dir(), "state.json")) as f:
            return json.load(f)

    def machine(self, unit, state=None):
        st = state or self.state()
        mid = st["units"][unit]["machine"]
        m = st["machines"][mid]
        return {"id": mid, "pid": m.get("pid"), "start_time": m.get("start_time"),
                "ready": m.get("ready"), "address": m.get("address")}

    def machine_root(self, unit):
        return os.path.join(self.model_dir(), "machines", str(self.machine(unit)["id"]), "fs")

    def init_alive(self, unit, state=None):
        m = self.machine(unit, state)
        if not m["pid"] or proc_state(m["pid"]) in (None, "Z", "X"):
            return False
        try:
            start = int(_read(f"/proc/{m['pid']}/stat").rsplit(")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            return False
        return start == m["start_time"]

    def unit_pids(self, unit):
        m = self.machine(unit)
        return pidns_pids(m["pid"]) if self.init_alive(unit) else []

    def address(self, unit):
        return self.machine(unit)["address"]

    def unit_of(self, host):
        st = self.state()
        for unit, ud in st["units"].items():
            if ud.get("app") == self.app and st["machines"][ud["machine"]]["address"] == host:
                return unit
        return None

    def all_units(self):
        st = self.state()
        return sorted((u for u, ud in st["units"].items()
                       if ud.get("app") == self.app and ud.get("life") == "alive"),
                      key=lambda u: int(u.rsplit("/", 1)[1]))

    def agent_log(self, unit, lines=40, since=None):
        """The last `lines` lines of the unit's agent.log (from `since`, an ISO prefix)."""
        try:
            with open(os.path.join(self.machine_root(unit), AGENT_LOG), errors="replace") as f:
                text = f.readlines()
        except OSError as e:
            return f"<no agent.log: {e}>"
        if since:
            text = [t for t in text if t[:23] >= since]
        return "".join(text[-lines:]).rstrip()

    def stuck(self, unit, since):
        """The agent.log lines (since `since`) saying `unit` gave up rejoining, when they
        repeat STUCK_REPEATS times or more; None otherwise."""
        log = self.agent_log(unit, 100000, since).splitlines()
        hits = [i for i, ln in enumerate(log) if any(m in ln for m in STUCK_MARKERS)]
        if len(hits) < STUCK_REPEATS:
            return None
        first = max(0, hits[0] - 12)
        return "\n".join(log[first:hits[0] + 2] + ["..."] + log[hits[-1] - 1:hits[-1] + 1])

    def save_logs(self, dest=None):
        """Copy every unit's agent, etcd and PostgreSQL logs (and its juju debug log) to
        `dest` (default: a new /tmp/charm-logs-* directory); returns the directory."""
        dest = dest or tempfile.mkdtemp(prefix="charm-logs-", dir="/tmp")
        for unit in self.all_units():
            root = self.machine_root(unit)
            for rel in ("var/log/pg-agent", "var/log/postgresql"):
                src = os.path.join(root, rel)
                if os.path.isdir(src):
                    with contextlib.suppress(OSError, shutil.Error):
                        shutil.copytree(src, os.path.join(dest, unit.replace("/", "-"),
                                                          os.path.basename(rel)),
                                        dirs_exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy2(os.path.join(self.model_dir(), "debug.log"), dest)
        return dest

    def diagnostics(self, lines=40, since=None):
        out = []
        try:
            for unit, u in self.units().items():
                out.append(f"{unit}: {u['workload']} {u['message']!r} / {u['agent']}")
        except Exception as e:
            out.append(f"status: {e}")
        for unit in self.all_units():
            out.append(f"--- {unit} agent.log\n" + self.agent_log(unit, lines, since))
        return "\n".join(out)

    # -- credentials (never printed)
    def password(self):
        if self._pw is None:
            p = self.juju("run", "--format", "json", f"{self.app}/leader", "get-password",
                          "username=operator", timeout=90)
            task = next(iter(json.loads(p.stdout).values()))
            self._pw = task["results"]["password"]
        return self._pw

    def ca_file(self):
        if self._ca is None:
            unit = self.all_units()[0]
            out = self.exec(unit, f"cat {TLS_DIR}/ca.pem")
            path = os.path.join(self._tmp, "ca.pem")
            with open(path, "w") as f:
                f.write(out)
            self._ca = path
        return self._ca

    def conn_params(self):
        return {"user": "operator", "dbname": "postgres", "port": 5432,
                "sslmode": "verify-full", "sslrootcert": self.ca_file()}

    def connect(self, host, timeout=2):
        kw = dict(self.conn_params(), host=host, connect_timeout=str(timeout),
                  password=self.password(), application_name="chaos-check")
        conn = psycopg2.connect(**kw)
        conn.autocommit = True
        return conn

    def sql(self, host, query, args=None, timeout=2):
        """Rows of one query on `host` (a fresh connection)."""
        conn = self.connect(host, timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def exec(self, unit, command, timeout=60, check=True):
        """stdout of `juju exec --unit <unit> -- <command>` (rc 0 required when check)."""
        p = self.juju("exec", "--format", "json", "--unit", unit, "--", command,
                      timeout=timeout, check=False)
        try:
            task = next(iter(json.loads(p.stdout).values()))
        except (ValueError, StopIteration):
            raise ClusterError(f"juju exec on {unit} failed: {p.stderr.strip()[-500:]}") from None
        res = task.get("results") or {}
        if check and res.get("return-code") != 0:
            raise ClusterError(f"`{command}` on {unit} returned {res.get('return-code')}: "
                               f"{res.get('stderr', '')[-500:]}")
        return res.get("stdout", "")

    def poke(self, unit, timeout=120):
        """Wake the unit's uniter (a crashed machine is restarted before it runs anything)."""
        return self.juju("exec", "--unit", unit, "--", "true", timeout=timeout, check=False)

    # -- the HA view
    def rest(self, host, path, timeout=1.0):
        """HTTP status of GET https://<host>:8008/<path> (None when it does not answer)."""
        ctx = ssl.create_default_context(cafile=self.ca_file())
        try:
            with urllib.request.urlopen(f"https://{host}:8008/{path}", timeout=timeout,
                                        context=ctx) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, ValueError, ssl.SSLError):
            return None

    def primaries(self, hosts=None, timeout=1.0):
        """Hosts whose REST API answers 200 on /primary now (probed in parallel)."""
        hosts = list(hosts) if hosts is not None else self.hosts()
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as ex:
            codes = list(ex.map(lambda h: self.rest(h, "primary", timeout), hosts))
        return [h for h, c in zip(hosts, codes) if c == 200]

    def cluster_status(self, unit=None):
        unit = unit or next(u for u in self.all_units() if u not in self.down_units())
        p = self.juju("run", "--format", "json", unit, "cluster-status", timeout=90)
        task = next(iter(json.loads(p.stdout).values()))
        return json.loads(task["results"]["members"]), task["results"].get("primary")

    def timeline(self, host):
        """The WAL insertion timeline of the primary at `host` (as history.py reads it)."""
        return self.sql(host, f"SELECT {TIMELINE_SQL}")[0][0]

    def replication(self, host):
        """[(client_addr, state, sync_state)] of the primary at `host`."""
        return [(str(a), s, ss) for a, s, ss in self.sql(
            host, "SELECT client_addr, state, sync_state FROM pg_stat_replication")]

    def etcd_status(self, via=None):
        """{host: {"member_id", "leader", "raft_term"}} for the members that answer, from
        `etcdctl endpoint status` inside a live unit; and the leader's host (or None)."""
        live = [u for u in self.all_units() if u not in self.down_units()]
        via = via or live[0]
        eps = ",".join(f"https://{self.address(u)}:2379" for u in self.all_units())
        out = self.exec(via, f"{ETCDCTL} --endpoints={eps} endpoint status -w json", check=False)
        members = {}
        for item in json.loads(out or "[]"):
            host = item["Endpoint"].split("//", 1)[1].rsplit(":", 1)[0]
            s = item["Status"]
            members[host] = {"member_id": s["header"]["member_id"], "leader": s["leader"],
                             "raft_term": s["header"].get("raft_term")}
        leader = None
        for host, s in members.items():
            if s["member_id"] == s["leader"]:
                leader = host
        return members, leader

    def down_units(self):
        return set(self.crashed) | set(self.frozen) | set(self.cut_links)

    # -- waiting
    def health(self, expect_units=None):
        """(ok, what is missing): one REST primary; every unit active in juju status as
        Primary or a replica; every replica streaming from the primary (synchronous ones:
        `sync`/`quorum`); every etcd member answering. Never raises."""
        try:
            units = self.units()
            n = expect_units or len(units)
            if len(units) != n:
                return False, f"{len(units)} units"
            prim = self.primaries([u["address"] for u in units.values()])
            if len(prim) != 1:
                return False, f"REST /primary 200 on {prim}"
            p = prim[0]
            bad = {name: (u["workload"], u["message"]) for name, u in units.items()
                   if u["workload"] != "active" or
                   u["message"] != ("Primary" if u["address"] == p else u["message"]) or
                   (u["address"] != p and u["message"] not in REPLICA_MESSAGES)}
            if bad:
                return False, f"status {bad}"
            if next(u for u in units.values() if u["address"] == p)["message"] != "Primary":
                return False, "juju status lags the REST primary"
            rep = self.replication(p)
            streaming = {a for a, s, _ in rep if s == "streaming"}
            want = {u["address"] for u in units.values() if u["address"] != p}
            if not want <= streaming:
                return False, f"streaming from {p}: {sorted(streaming)}, want {sorted(want)}"
            if self.sync and want and not any(ss in ("sync", "quorum") for _, _, ss in rep):
                return False, "no synchronous standby"
            members, leader = self.etcd_status()
            if len(members) != n or leader is None:
                return False, f"etcd members answering: {sorted(members)}, leader {leader}"
            return True, f"primary {p}"
        except Exception as e:
            return False, f"{type(e).__name__}: {str(e).strip()[:300]}"

    def wait_healthy(self, timeout=300, expect_units=None, watch=None, since=None):
        """Until health() is ok; raises TimeoutError, or ClusterError at once when a unit
        of `watch` logs since `since` that it gave up rejoining (see stuck())."""
        deadline = time.monotonic() + timeout
        last = "nothing yet"
        if watch is None:
            watch, since = self.watch_units, self.watch_since
        while time.monotonic() < deadline:
            ok, last = self.health(expect_units)
            if ok:
                self.watch_units, self.watch_since = [], None
                return last
            for unit in watch or ():
                why = self.stuck(unit, since)
                if why:
                    raise ClusterError(f"{unit} does not rejoin (its agent gave up):\n{why}")
            time.sleep(1.0)
        raise TimeoutError(f"cluster not healthy after {timeout} s: {last}")

    def wait_new_primary(self, old, timeout, hosts=None):
        """(host, monotonic time) of the first REST /primary 200 on another host than `old`,
        polled every 100 ms; (None, None) after `timeout`."""
        hosts = [h for h in (hosts or self.hosts()) if h != old]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.primaries(hosts, timeout=0.5)
            if got:
                return got[0], time.monotonic()
            time.sleep(0.1)
        return None, None

    def wait_rejoined(self, unit, timeout=240):
        """Until `unit` is a replica in juju status (Replica / Sync standby) and streams from
        the primary; returns the primary's host. Raises TimeoutError with what was seen."""
        deadline = time.monotonic() + timeout
        host = self.address(unit)
        last = "nothing yet"
        since = utc_now()
        seen_primary = time.monotonic()
        while time.monotonic() < deadline:
            why = self.stuck(unit, since)
            if why:
                raise ClusterError(f"{unit} does not rejoin (its agent gave up):\n{why}")
            if time.monotonic() - seen_primary > NO_PRIMARY_S:
                raise ClusterError(f"no unit answered /primary for {NO_PRIMARY_S} s while "
                                   f"{unit} rejoined: {last}")
            try:
                u = self.units().get(unit, {})
                prim = self.primaries()
                if prim:
                    seen_primary = time.monotonic()
                if len(prim) == 1 and prim[0] != host:
                    rep = {a: s for a, s, _ in self.replication(prim[0])}
                    if u.get("message") in REPLICA_MESSAGES and rep.get(host) == "streaming":
                        return prim[0]
                    last = f"status {u.get('workload')} {u.get('message')!r}, replication " \
                           f"on {prim[0]}: {rep}"
                else:
                    last = f"REST primaries {prim}; status {u.get('message')!r}"
            except Exception as e:
                last = f"{type(e).__name__}: {str(e).strip()[:200]}"
            time.sleep(1.0)
        raise TimeoutError(f"{unit} did not rejoin as a streaming replica within {timeout} s: "
                           f"{last}")

    # -- faults
    def host_link(self, unit):
        """Name of the host side of the unit's veth pair (found through its eth0's peer)."""
        pid = self.machine(unit)["pid"]
        out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", "link", "show", "eth0"],
                             capture_output=True, text=True, timeout=10)
        peer = json.loads(out.stdout or "[{}]")[0].get("link_index")
        links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                                          timeout=10).stdout or "[]")
        for link in links:
            if link.get("ifindex") == peer:
                return link["ifname"]
        raise ClusterError(f"no host link found for {unit} (peer ifindex {peer})")

    def _link(self, name, state):
        r = subprocess.run(["ip", "link", "set", name, state], capture_output=True, text=True,
                           timeout=10)
        if r.returncode != 0:
            raise ClusterError(f"ip link set {name} {state}: {r.stderr.strip()}")

    def cut(self, unit):
        """The unit's link down on the host side; returns the monotonic time."""
        name = self.host_link(unit)
        self.cut_links[unit] = name
        self._link(name, "down")
        return time.monotonic()

    def heal(self, unit):
        name = self.cut_links.pop(unit, None)
        if name is None:
            return
        with contextlib.suppress(ClusterError):   # gone with a restarted machine
            self._link(name, "up")

    def crash(self, unit, kill_init=False):
        """Host death, as the Patroni benchmark does it: the unit's link goes down first (its
        peers get no FIN or RST), then SIGKILL of every process of the machine (agent,
        PostgreSQL and all its children, etcd, hooks). Returns the monotonic time of the kill.

        By default the machine's init (its PID 1, which runs nothing of the charm) is left
        alive, so that the machine stays dead until restore(): the sandbox reboots a machine
        whose init died as soon as the unit's uniter wakes up (within about a second when
        the survivors' events change the model), with its files, /run included, intact.
        kill_init=True kills the init too: a crash followed by that instant reboot."""
        m = self.machine(unit)
        if not self.init_alive(unit):
            raise ClusterError(f"{unit}'s machine is not running")
        link = self.host_link(unit)
        self._link(link, "down")
        self.crashed[unit] = m["pid"]
        if kill_init:
            os.kill(m["pid"], signal.SIGKILL)
            t = time.monotonic()
            deadline = t + 10
            while time.monotonic() < deadline and proc_state(m["pid"]) not in (None, "Z", "X"):
                time.sleep(0.01)
            return t
        self.cut_links[unit] = link
        t = None
        for _ in range(50):                 # until none is left (bounded): forks race us
            pids = [p for p in pidns_pids(m["pid"]) if p != m["pid"]]
            if not pids:
                break
            _signal_all(pids, signal.SIGKILL)
            t = t or time.monotonic()
            time.sleep(0.02)
        return t or time.monotonic()

    def crashed_leftovers(self, unit):
        """Processes that started in a crashed (init kept) machine since the crash."""
        pid = self.crashed.get(unit)
        return [p for p in pidns_pids(pid) if p != pid] if pid else []

    def power_cycle(self, unit, timeout=180):
        """Bring a crashed machine back: SIGKILL its init (the sandbox then boots it again
        with a fresh network namespace, link up, and runs `start`); poke its uniter if the
        controller has not noticed after a few seconds. Returns seconds until it ran."""
        old = self.crashed.get(unit) or self.machine(unit)["pid"]
        self.cut_links.pop(unit, None)    # the reboot replaces the link
        with contextlib.suppress(ProcessLookupError):
            if self.init_alive(unit) and self.machine(unit)["pid"] == old:
                os.kill(old, signal.SIGKILL)
        took, poked = self.wait_machine_back(unit, old, timeout=timeout, poke_after=0.5)
        self.crashed.pop(unit, None)
        return took, poked

    def freeze(self, unit, sweeps=10):
        """SIGSTOP every process of the unit's PID namespace (again until none is left
        running, bounded); returns the monotonic time of the first sweep."""
        m = self.machine(unit)
        self.frozen[unit] = m["pid"]
        t = None
        for _ in range(sweeps):
            pids = [p for p in pidns_pids(m["pid"]) if proc_state(p) not in ("T", "t", "Z")]
            if not pids:
                break
            _signal_all(pids, signal.SIGSTOP)
            if t is None:
                t = time.monotonic()
            time.sleep(0.02)
        return t if t is not None else time.monotonic()

    def refreeze(self, unit):
        """Stop processes that appeared in a frozen unit (hooks the controller started)."""
        pid = self.frozen.get(unit)
        if pid:
            _signal_all([p for p in pidns_pids(pid) if proc_state(p) not in ("T", "t", "Z")],
                        signal.SIGSTOP)

    def thaw(self, unit):
        pid = self.frozen.pop(unit, None)
        if pid:
            _signal_all(pidns_pids(pid), signal.SIGCONT)
            _signal_all(nsenter_wrappers(pid), signal.SIGCONT)  # see nsenter_wrappers()
            return time.monotonic()
        return None

    def etcd_pid(self, unit):
        for p in self.unit_pids(unit):
            argv = proc_argv(p)
            if argv and argv[0].endswith("/etcd"):
                return p
        return None

    def kill_etcd(self, unit):
        pid = self.etcd_pid(unit)
        if pid is None:
            raise ClusterError(f"no etcd process on {unit}")
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()

    def wait_machine_back(self, unit, old_pid, timeout=180, poke_after=20):
        """Until the machine of `unit` runs a new init; pokes its uniter if it did not come
        back by itself after `poke_after` s. Returns (seconds, poked)."""
        t0 = time.monotonic()
        poked = False
        while time.monotonic() - t0 < timeout:
            st = self.state()
            m = self.machine(unit, st)
            if m["pid"] and m["pid"] != old_pid and m["ready"] and self.init_alive(unit, st):
                return time.monotonic() - t0, poked
            if not poked and time.monotonic() - t0 > poke_after:
                poked = True
                threading.Thread(target=self.poke, args=(unit,), daemon=True).start()
            time.sleep(0.2)
        raise TimeoutError(f"{unit}'s machine did not come back within {timeout} s")

    def release_all(self):
        """Undo every fault still applied: thaw, heal, and boot crashed machines again
        (bounded). Safe to call more than once, never raises."""
        for unit in list(self.frozen):
            with contextlib.suppress(Exception):
                self.thaw(unit)
        for unit in list(self.crashed):
            with contextlib.suppress(Exception):
                self.power_cycle(unit, timeout=60)
            self.crashed.pop(unit, None)
        for unit in list(self.cut_links):
            with contextlib.suppress(Exception):
                self.heal(unit)

    def agent_pid(self, unit):
        """Host PID of the unit's resident pg-agent (the child of the machine's init)."""
        m = self.machine(unit)
        for p in self.unit_pids(unit):
            argv = proc_argv(p)
            if argv and argv[0].endswith("/pg-agent") and \
                    proc_status(p).get("PPid", "").strip() == str(m["pid"]):
                return p
        return None

    # -- failover_lib driver interface
    def hosts(self):
        return [self.address(u) for u in self.all_units()]

    def primary(self):
        prim = self.primaries()
        return prim[0] if len(prim) == 1 else None

    def crash_primary(self):
        host = self.primary()
        if host is None:
            raise ClusterError("no primary to crash")
        unit = self.unit_of(host)
        notes = {"unit": unit}
        try:
            _, leader = self.etcd_status()
            notes["etcd_leader_on_crashed_node"] = leader == host
        except Exception as e:
            notes["etcd_leader"] = f"unknown: {type(e).__name__}"
        self._open_probes(exclude=host)
        t = self.crash(unit)
        return _fault(t, host, notes)

    def restore(self, timeout=240):
        t0 = time.monotonic()
        since = utc_now()
        back = list(self.crashed)
        for unit in list(self.crashed):
            left = self.crashed_leftovers(unit)
            if left:
                self.log(f"  {unit}: {len(left)} processes started in the dead machine: "
                         f"{[proc_argv(p)[:2] for p in left[:5]]}")
            back_s, poked = self.power_cycle(unit, timeout=timeout)
            self.log(f"  {unit}: machine rebooted in {back_s:.1f} s"
                     + (" (uniter poked)" if poked else ""))
        self.release_all()
        self.wait_healthy(max(30.0, timeout - (time.monotonic() - t0)), watch=back, since=since)

    def switchover(self, timeout=60):
        host = self.primary()
        if host is None:
            raise ClusterError("no primary to switch over from")
        members, _ = self.cluster_status(self.unit_of(host))
        want = ("sync_standby",) if self.sync else ("sync_standby", "replica")
        cands = sorted(m["host"] for m in members if m.get("role") in want
                       and m.get("state") in ("streaming", "running"))
        if not cands:
            raise ClusterError(f"no switchover candidate in {members}")
        cand = cands[int(time.monotonic() * 1000) % len(cands)]
        unit = self.unit_of(cand)
        self.watch_units, self.watch_since = [self.unit_of(host)], utc_now()
        self._open_probes(exclude=host)
        t = time.monotonic()
        p = self.juju("run", "--format", "json", unit, "promote-to-primary", "scope=unit",
                      timeout=timeout + 30, check=False)
        took = time.monotonic() - t
        try:
            task = next(iter(json.loads(p.stdout).values()))
        except (ValueError, StopIteration):
            raise ClusterError(f"promote-to-primary on {unit}: {p.stderr.strip()[-300:]}") from None
        if task.get("status") != "completed":
            raise ClusterError(f"promote-to-primary on {unit}: {task.get('status')} "
                               f"{task.get('message', '')} {task.get('results', {})}")
        return _fault(t, host, {"candidate": cand, "action_s": round(took, 2)})

    def _open_probes(self, exclude):
        """Connections to every other node, opened before a fault so that time_restream()
        polls the new primary at once (a session survives its server's promotion)."""
        self._close_probes()
        for h in self.hosts():
            if h != exclude:
                with contextlib.suppress(Exception):
                    self._probes[h] = self.connect(h, timeout=2)

    def _close_probes(self):
        probes, self._probes = self._probes, {}
        for conn in probes.values():
            with contextlib.suppress(Exception):
                conn.close()

    def time_restream(self, host, since, timeout):
        """failover_lib hook: poll the new primary's pg_stat_replication every 20 ms, on a
        connection opened before the fault, until a replica streams (sync mode: is
        sync/quorum); that monotonic time, or None after `timeout`."""
        cond = "sync_state IN ('sync', 'quorum')" if self.sync else "state = 'streaming'"
        query = f"SELECT count(*) FROM pg_stat_replication WHERE {cond}"
        conn = self._probes.pop(host, None)
        deadline = since + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    if conn is None:
                        conn = self.connect(host, timeout=2)
                    with conn.cursor() as cur:
                        cur.execute(query)
                        if cur.fetchone()[0] > 0:
                            return time.monotonic()
                except psycopg2.Error:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                time.sleep(0.02)
            return None
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._close_probes()

    def agent_rss(self):
        out = {}
        for unit in self.all_units():
            if unit in self.crashed:
                continue
            pid = self.agent_pid(unit)
            if pid is None:
                continue
            rss = proc_status(pid).get("VmRSS", "").split()
            if rss:
                out[self.address(unit)] = int(rss[0]) * 1024
        return out

    def close(self):
        self.release_all()
        self._close_probes()
        with contextlib.suppress(OSError):
            for f in os.listdir(self._tmp):
                os.unlink(os.path.join(self._tmp, f))
            os.rmdir(self._tmp)


def _fault(t, node, notes):
    # failover_lib.Fault, imported late: bench/ is not on the tests' path
    try:
        from failover_lib import Fault
    except ImportError:
        import collections
        Fault = collections.namedtuple("Fault", "t node notes")
    return Fault(t, node, notes)
