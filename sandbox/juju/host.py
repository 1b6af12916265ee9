# Each unit's "machine": a network namespace on the model's bridge plus mount, UTS, IPC
# and PID namespaces held by build/sandbox/unit-init; commands run inside with nsenter.
import ipaddress
import json
import os
import selectors
import shutil
import signal
import subprocess
import time

# Directories private to each machine, bind-mounted from the machine's own tree.
# The single place to extend when a charm writes somewhere new. Order matters:
# /tmp and /var/tmp come last because the controller's own files may live in /tmp.
PRIVATE_DIRS = (
    "/var/lib/juju",
    "/var/log/juju",
    "/run",
    "/var/lib/postgresql",
    "/etc/postgresql",
    "/var/log/postgresql",
    "/etc/etcd",
    "/var/lib/etcd",
    "/var/log/etcd",
    "/etc/pgbouncer",
    "/var/lib/pgbouncer",
    "/var/log/pgbouncer",
    "/etc/prometheus-postgres-exporter",
    "/var/lib/prometheus",
    "/var/lib/cos-agent-test",
    "/var/lib/pg-agent",
    "/var/log/pg-agent",
    "/etc/pg-agent",
    "/var/lib/sandbox-charm",
    "/var/tmp",
    "/tmp",
)
# Files private to each machine (bind-mounted over the host's file).
PRIVATE_FILES = ("/etc/hosts", "/etc/hostname")

SANDBOX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(SANDBOX_DIR)
BIN_DIR = os.path.join(REPO_DIR, "build", "sandbox")
JUJUC = os.path.join(BIN_DIR, "jujuc")
UNIT_INIT = os.path.join(BIN_DIR, "unit-init")
JUJU_EXEC_LINK = "/usr/bin/juju-exec"
JUJU_EXEC_TARGET = "/var/lib/juju/tools/juju-exec"

HOOK_TOOLS = (
    "action-fail", "action-get", "action-log", "action-set", "application-version-set",
    "close-port", "config-get", "credential-get", "goal-state", "is-leader", "juju-log",
    "juju-reboot", "leader-get", "leader-set", "network-get", "open-port", "opened-ports",
    "relation-get", "relation-ids", "relation-list", "relation-model-get", "relation-set",
    "resource-get", "secret-add", "secret-get", "secret-grant", "secret-ids", "secret-info-get",
    "secret-remove", "secret-revoke", "secret-set", "state-delete", "state-get", "state-set",
    "status-get", "status-set", "storage-add", "storage-get", "storage-list", "unit-get",
)

RUNNING = set()  # process groups of hooks and commands being run, for shutdown

AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HostError(Exception):
    pass


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise HostError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def check_prerequisites():
    for path in (JUJUC, UNIT_INIT):
        if not os.access(path, os.X_OK):
            raise HostError(f"{path} is missing: run `make build` first")
    if os.geteuid() != 0:
        raise HostError("the local model needs root (network and mount namespaces)")
    for tool in ("ip", "nsenter"):
        if not shutil.which(tool):
            raise HostError(f"{tool} is missing: install iproute2 and util-linux")
    # Like a real machine: /usr/bin/juju-exec points into the machine's private
    # /var/lib/juju. On the host itself the link dangles; inside a unit it resolves.
    if not os.path.lexists(JUJU_EXEC_LINK):
        os.symlink(JUJU_EXEC_TARGET, JUJU_EXEC_LINK)


def used_networks():
    nets = []
    for line in json.loads(_ip("-j", "addr").stdout or "[]"):
        for a in line.get("addr_info", []):
            if a.get("family") == "inet":
                nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for r in json.loads(_ip("-j", "route").stdout or "[]"):
        dst = r.get("dst")
        if dst and dst != "default":
            try:
                nets.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
            except ValueError:
                pass
    return nets


def pick_subnet(taken):
    """A free /24 in 10.208.0.0/12 that no interface, route or other model uses."""
    used = used_networks()
    for second in range(208, 224):
        for third in range(0, 256):
            net = ipaddress.ip_network(f"10.{second}.{third}.0/24")
            if str(net) in taken or any(net.overlaps(u) for u in used):
                continue
            return str(net)
    raise HostError("no free /24 left in 10.208.0.0/12 for a new model")


def create_bridge(name, subnet):
    net = ipaddress.ip_network(subnet)
    gw = f"{net.network_address + 1}/{net.prefixlen}"
    if _ip("link", "show", name, check=False).returncode != 0:
        _ip("link", "add", name, "type", "bridge")
    _ip("addr", "replace", gw, "dev", name)
    _ip("link", "set", name, "up")


def delete_bridge(name):
    _ip("link", "del", name, check=False)


def netns_exists(name):
    return os.path.exists(f"/run/netns/{name}")


def create_netns(ns, bridge, veth, address, subnet, mac):
    """Create the unit's network namespace wired to the model bridge as eth0."""
    net = ipaddress.ip_network(subnet)
    if netns_exists(ns):  # left by a machine that crashed: start from a clean one
        _ip("netns", "del", ns, check=False)
    _ip("netns", "add", ns)
    peer = "t" + veth[1:]
    if _ip("link", "show", veth, check=False).returncode == 0:
        _ip("link", "del", veth, check=False)
    _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
    _ip("link", "set", peer, "netns", ns)
    _ip("link", "set", veth, "master", bridge)
    _ip("link", "set", veth, "up")
    _ip("-n", ns, "link", "set", peer, "name", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "address", mac)
    _ip("-n", ns, "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "route", "add", "default", "via", str(net.network_address + 1))


def delete_netns(ns, veth):
    _ip("link", "del", veth, check=False)
    if netns_exists(ns):
        _ip("netns", "del", ns, check=False)


def prepare_fs(root, unit_tags, hostname, hosts_text):
    """Create the machine's private tree and install the hook tools for each unit tag."""
    for d in PRIVATE_DIRS:
        os.makedirs(root + d, exist_ok=True)
    os.chmod(root + "/tmp", 0o1777)
    os.chmod(root + "/var/tmp", 0o1777)
    os.makedirs(root + "/etc", exist_ok=True)
    with open(root + "/etc/hostname", "w") as f:
        f.write(hostname + "\n")
    write_hosts(root, hosts_text)
    tools = root + "/var/lib/juju/tools"
    os.makedirs(tools, exist_ok=True)
    jujuc = os.path.join(tools, "jujuc")
    tmp = jujuc + ".new"
    shutil.copy2(JUJUC, tmp)
    os.replace(tmp, jujuc)
    if not os.path.lexists(os.path.join(tools, "juju-exec")):
        os.symlink("jujuc", os.path.join(tools, "juju-exec"))
    for tag in unit_tags:
        add_unit_tools(root, tag)


def add_unit_tools(root, tag):
    d = f"{root}/var/lib/juju/tools/{tag}"
    os.makedirs(d, exist_ok=True)
    for t in HOOK_TOOLS + ("juju-exec",):
        p = os.path.join(d, t)
        if not os.path.lexists(p):
            os.symlink("../jujuc", p)
    os.makedirs(f"{root}/var/lib/juju/agents/{tag}", exist_ok=True)


def write_hosts(root, text):
    # written in place: the file is bind-mounted into the unit, a rename would detach it
    with open(root + "/etc/hosts", "a+") as f:
        f.seek(0)
        if f.read() != text:
            f.seek(0)
            f.truncate()
            f.write(text)


def start_init(ns, hostname, root):
    # files first: their sources may sit under /tmp, which the directory binds then hide
    binds = [f"--bind={root}{p}:{p}" for p in PRIVATE_FILES if os.path.exists(p)]
    binds += [f"--bind={root}{d}:{d}" for d in PRIVATE_DIRS]
    r = subprocess.run([UNIT_INIT, "--netns", f"/run/netns/{ns}", "--hostname", hostname, *binds],
                       capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise HostError(f"unit-init failed: {r.stderr.strip()}")
    pid = int(r.stdout.strip())
    return pid, proc_start_time(pid)


def proc_start_time(pid):
    """Start time of a live process; None when gone or a zombie (the host's PID 1 may reap
    slowly, so a dead init can linger as a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def init_alive(pid, start_time):
    return pid is not None and start_time is not None and proc_start_time(pid) == start_time


def stop_init(pid, start_time, grace=8.0):
    """End the machine: SIGTERM its init (which stops everything inside), then SIGKILL."""
    if not init_alive(pid, start_time):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not init_alive(pid, start_time):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and init_alive(pid, start_time):
        time.sleep(0.05)


def remove_tree(root):
    shutil.rmtree(root, ignore_errors=True)


class Result:
    __slots__ = ("code", "stdout", "stderr", "timed_out")

    def __init__(self, code, stdout, stderr, timed_out=False):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out


def run_in(pid, argv, env, cwd="/", stdin=None, timeout=None):
    """Run argv inside the machine whose init has host PID pid; capture its output.

    The command is in the unit's PID namespace, so daemons it leaves behind stay in
    the unit. We stop reading 1 s after it exits: a daemon that kept our pipes open
    does not hold the hook (the same rule a careful charm follows anyway).
    """
    # nsenter resolves --wd in the caller's mount namespace, so change directory inside
    cmd = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--",
           "/usr/bin/env", "-C", cwd, "--", *argv]
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE if stdin is not None else
                         subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    RUNNING.add(p.pid)
    try:
        return _collect(p, stdin, timeout)
    finally:
        RUNNING.discard(p.pid)


def kill_running():
    """Controller shutdown: end every hook still running (Juju re-queues them)."""
    for pgid in list(RUNNING):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _collect(p, stdin, timeout):
    if stdin is not None:
        try:
            p.stdin.write(stdin)
        except BrokenPipeError:
            pass
        p.stdin.close()
    bufs = {p.stdout.fileno(): [], p.stderr.fileno(): []}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    start = time.monotonic()
    deadline = start + timeout if timeout else None
    exited_at = None
    timed_out = False
    code = None
    while sel.get_map():
        now = time.monotonic()
        if code is None:
            code = p.poll()
            if code is not None:
                exited_at = now
        if exited_at is not None and now - exited_at > 1.0:
            break
        if deadline is not None and now > deadline and code is None:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = p.wait()
            exited_at = time.monotonic()
        for key, _ in sel.select(0.05):
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if chunk:
                bufs[key.fd].append(chunk)
            else:
                sel.unregister(key.fd)
    sel.close()
    if code is None:
        code = p.wait()
    out, err = b"".join(bufs[p.stdout.fileno()]), b"".join(bufs[p.stderr.fileno()])
    p.stdout.close()
    p.stderr.close()
    if code < 0:
        code = 128 - code
    return Result(code, out, err, timed_out)
