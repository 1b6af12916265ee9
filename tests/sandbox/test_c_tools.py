# Tests of the local model's C tools without a controller: jujuc against a fake unit agent
# in a thread, unit-init in a throwaway netns (root); both the release and the ASan builds.
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sandbox"))
from juju import wire  # noqa: E402

BUILDS = {"release": REPO / "build" / "sandbox", "asan": REPO / "build" / "asan"}
# Sanitizer runtime settings; harmless for the release build, which ignores them.
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1",
}
SAN_MARKERS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:",
               b"Sanitizer has encountered a fatal error")
RUN_TIMEOUT = 20.0
# LeakSanitizer cannot check a process that has called unshare(CLONE_NEWPID): its tracer is
# cloned into the new PID namespace, where the TIDs it must ptrace do not exist (it hangs
# while the unit's init runs, and fails with "fatal error" once that init is gone). So
# unit-init runs that get past unshare() are checked by ASan and UBSan without leak checking.
NO_LEAKS_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}


def tool_binary(build, name):
    path = BUILDS[build] / name
    if not path.exists():
        if build == "asan":
            pytest.skip(f"{path} not built (make asan)")
        pytest.fail(f"{path} not built (make build)", pytrace=False)
    return path


@pytest.fixture(params=sorted(BUILDS))
def jujuc(request):
    return tool_binary(request.param, "jujuc")


@pytest.fixture(params=sorted(BUILDS))
def unit_init(request):
    return tool_binary(request.param, "unit-init")


def check_sanitizers(stderr):
    for marker in SAN_MARKERS:
        assert marker not in stderr, "sanitizer report:\n" + stderr.decode(errors="replace")


def run(argv, env=None, cwd=None, input=b"", timeout=RUN_TIMEOUT):
    """Runs a tool with a minimal environment (PATH, sanitizer options, env); bytes out."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SAN_ENV, **(env or {})}
    r = subprocess.run([os.fspath(a) if isinstance(a, Path) else a for a in argv],
                       env=full_env, cwd=cwd, input=input, capture_output=True,
                       timeout=timeout)
    check_sanitizers(r.stderr)
    return r


# ---------------------------------------------------------------------------
# A fake unit agent
# ---------------------------------------------------------------------------


def echo_handler(req, n):
    return wire.encode_response(0, stdout=b"ok\n")


class FakeAgent:
    """Serves wire requests on a Unix socket from a thread; handler(req, n) gives the raw
    reply bytes for the n-th request (1-based)."""

    def __init__(self, path, handler=echo_handler):
        self.path = path
        self.handler = handler
        self.requests = []
        self.errors = []
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    req = wire.read_request(conn)
                    self.requests.append(req)
                    conn.sendall(self.handler(req, len(self.requests)))
                except Exception as e:  # reported by the fixture
                    self.errors.append(e)

    def stop(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close()
        if not self.path.startswith("@"):
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        return not self.thread.is_alive()


@pytest.fixture
def sockdir():
    # short: sun_path is 108 bytes, pytest's tmp_path can be longer
    d = tempfile.mkdtemp(prefix="jct", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agents(sockdir):
    """agents(path=None, handler=...) starts a FakeAgent; all stopped at teardown."""
    started = []

    def start(path=None, handler=echo_handler):
        a = FakeAgent(path or os.path.join(sockdir, "agent.socket"), handler)
        started.append(a)
        return a

    yield start
    stuck = [a.path for a in started if not a.stop()]
    errors = [e for a in started for e in a.errors]
    assert not stuck, f"agent threads did not stop: {stuck}"
    assert not errors, f"fake agent errors: {errors}"


def hook_env(agent, **extra):
    return {"JUJU_CONTEXT_ID": "unit-x-0-ctx-42", "JUJU_AGENT_SOCKET_ADDRESS": agent.path,
            **extra}


# ---------------------------------------------------------------------------
# jujuc: hook tools
# ---------------------------------------------------------------------------


def test_symlink_round_trip(jujuc, agents, tmp_path):
    agent = agents()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "relation-get").symlink_to(jujuc)
    work = tmp_path / "work dir"
    work.mkdir()
    args = ["-r", "db:1", "--format=json", "", "key with spaces", "ünï", b"\xff\xfe-raw"]
    r = run([tools / "relation-get", *args], env=hook_env(agent), cwd=work)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"ok\n", b"")
    [req] = agent.requests
    assert req.context_id == "unit-x-0-ctx-42"
    assert req.cwd == os.path.realpath(work)
    assert req.command == "relation-get"
    assert (req.has_stdin, req.stdin) == (False, b"")
    assert req.args == [os.fsdecode(a) for a in args]


def test_symlink_found_on_path(jujuc, agents, tmp_path):
    agent = agents()
    (tmp_path / "config-get").symlink_to(jujuc)
    r = run(["config-get"], env={**hook_env(agent), "PATH": f"{tmp_path}:/usr/bin:/bin"},
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [req] = agent.requests
    assert (req.command, req.args) == ("config-get", [])


def test_jujuc_tool_form(jujuc, agents, tmp_path):
    agent = agents()
    r = run([jujuc, "config-get", "--all", "--format", "yaml"], env=hook_env(agent),
            cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr
    [req] = agent.requests
    assert req.command == "config-get"
    assert req.args == ["--all", "--format", "yaml"]
    assert req.cwd == os.path.realpath(tmp_path)


def test_jujuc_without_tool_is_usage_error(jujuc, agents):
    agent = agents()
    r = run([jujuc], env=hook_env(agent))
    assert r.returncode == 2
    assert b"usage: jujuc" in r.stderr
    assert agent.requests == []


@pytest.mark.parametrize("size", [0, 1, 300 * 1024 + 7])
def test_need_stdin_resend(jujuc, agents, size):
    data = (bytes(range(256)) * (size // 256 + 1))[:size]

    def handler(req, n):
        if not req.has_stdin:
            return wire.encode_response(0, flags=wire.NEED_STDIN)
        return wire.encode_response(3, stdout=req.stdin[::-1], stderr=b"got stdin\n")

    agent = agents(handler=handler)
    r = run([jujuc, "secret-set", "--file", "-", "id"], env=hook_env(agent), input=data)
    assert r.returncode == 3, r.stderr
    assert r.stdout == data[::-1]
    assert r.stderr == b"got stdin\n"
    first, second = agent.requests
    assert (first.has_stdin, first.stdin) == (False, b"")
    assert (second.has_stdin, second.stdin) == (True, data)
    for req in (first, second):
        assert (req.context_id, req.command) == ("unit-x-0-ctx-42", "secret-set")
        assert req.args == ["--file", "-", "id"]


def test_stdin_not_read_unless_asked(jujuc, agents):
    """A hook tool whose stdin never reaches EOF still finishes when stdin is not needed."""
    agent = agents()
    env = {"PATH": os.environ.get("PATH", ""), **SAN_ENV, **hook_env(agent)}
    q = subprocess.Popen([jujuc, "is-leader"], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rc = q.wait(timeout=RUN_TIMEOUT)  # our end of its stdin stays open
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()
        q.stdin.close()
        out, err = q.stdout.read(), q.stderr.read()
        q.stdout.close()
        q.stderr.close()
    check_sanitizers(err)
    assert (rc, out) == (0, b"ok\n"), err


def test_need_stdin_twice_is_an_error(jujuc, agents):
    agent = agents(handler=lambda req, n: wire.encode_response(0, flags=wire.NEED_STDIN))
    r = run([jujuc, "secret-set", "x"], env=hook_env(agent), input=b"data")
    assert r.returncode == 1
    assert b"asked for stdin twice" in r.stderr
    assert len(agent.requests) == 2


@pytest.mark.parametrize("code,expected", [(0, 0), (1, 1), (2, 2), (42, 42), (255, 255),
                                           (256, 255), (1000, 255), (0xFFFFFFFF, 255)])
def test_output_and_exit_code(jujuc, agents, code, expected):
    agent = agents(handler=lambda req, n: wire.encode_response(
        code, stdout=b"out\x00\xffput\n", stderr=b"ERROR something\n"))
    r = run([jujuc, "action-fail"], env=hook_env(agent))
    assert r.returncode == expected
    assert r.stdout == b"out\x00\xffput\n"
    assert r.stderr == b"ERROR something\n"


def test_large_output(jujuc, agents):
    out = os.urandom(3 * 1024 * 1024 + 1)
    err = os.urandom(1024 * 1024)
    agent = agents(handler=lambda req, n: wire.encode_response(0, stdout=out, stderr=err))
    r = run([jujuc, "state-get"], env=hook_env(agent))
    assert r.returncode == 0
    assert r.stdout == out
    assert r.stderr == err


@pytest.mark.parametrize("ctx", [None, ""])
def test_missing_context_id(jujuc, agents, ctx):
    agent = agents()
    env = hook_env(agent)
    if ctx is None:
        del env["JUJU_CONTEXT_ID"]
    else:
        env["JUJU_CONTEXT_ID"] = ctx
    r = run([jujuc, "relation-get"], env=env)
    assert r.returncode == 1
    assert b"JUJU_CONTEXT_ID not set" in r.stderr
    assert r.stdout == b""
    assert agent.requests == []


def test_missing_socket_address(jujuc, agents):
    agent = agents()
    env = hook_env(agent)
    del env["JUJU_AGENT_SOCKET_ADDRESS"]
    r = run([jujuc, "relation-get"], env=env)
    assert r.returncode == 1
    assert b"JUJU_AGENT_SOCKET_ADDRESS not set" in r.stderr


def test_tcp_network_refused(jujuc, agents):
    agent = agents()
    r = run([jujuc, "relation-get"], env=hook_env(agent, JUJU_AGENT_SOCKET_NETWORK="tcp"))
    assert r.returncode == 1
    assert b'unsupported JUJU_AGENT_SOCKET_NETWORK "tcp"' in r.stderr
    assert agent.requests == []
    r = run([jujuc, "relation-get"], env=hook_env(agent, JUJU_AGENT_SOCKET_NETWORK="unix"))
    assert r.returncode == 0, r.stderr
    assert len(agent.requests) == 1


def test_abstract_socket(jujuc, agents):
    agent = agents(path=f"@jstest-{secrets.token_hex(6)}")
    r = run([jujuc, "unit-get", "private-address"], env=hook_env(agent))
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr
    assert agent.requests[0].args == ["private-address"]


@pytest.mark.parametrize("reply,message", [
    (b"XXXX" + bytes(12), b"bad response"),
    (b"JJR1" + bytes(4), b"closed before the reply"),
    (b"JJR1" + struct.pack(">III", 0, 0, 5) + b"ab", b"closed before the reply"),
    (b"JJR1" + struct.pack(">III", 0, 0, wire.MAX_FIELD + 1), b"bad response"),
    (b"JJR1" + struct.pack(">IIII", 0, 0, 0, wire.MAX_FIELD + 1), b"bad response"),
])
def test_bad_reply(jujuc, agents, reply, message):
    agent = agents(handler=lambda req, n: reply)
    r = run([jujuc, "relation-list"], env=hook_env(agent))
    assert r.returncode == 1
    assert message in r.stderr


@pytest.mark.parametrize("kind", ["missing", "refused"])
def test_connect_failure(jujuc, sockdir, kind):
    path = os.path.join(sockdir, "dead.socket")
    s = None
    if kind == "refused":  # a socket file nobody listens on
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
    try:
        t0 = time.monotonic()
        r = run([jujuc, "relation-get"],
                env={"JUJU_CONTEXT_ID": "c", "JUJU_AGENT_SOCKET_ADDRESS": path})
        elapsed = time.monotonic() - t0
    finally:
        if s:
            s.close()
    assert r.returncode == 1
    assert b"cannot connect" in r.stderr
    assert 1.5 <= elapsed < 10, elapsed


def test_connect_retries_until_agent_listens(jujuc, agents, sockdir):
    path = os.path.join(sockdir, "late.socket")
    env = {"PATH": os.environ.get("PATH", ""), **SAN_ENV, "JUJU_CONTEXT_ID": "c",
           "JUJU_AGENT_SOCKET_ADDRESS": path}
    p = subprocess.Popen([jujuc, "is-leader"], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        agents(path=path)
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    check_sanitizers(err)
    assert (p.returncode, out) == (0, b"ok\n"), err


# ---------------------------------------------------------------------------
# jujuc: juju-exec
# ---------------------------------------------------------------------------


@pytest.fixture
def exec_agents(agents, sockdir):
    """Run sockets of units x/0 and y/1 under a private JUJU_EXEC_AGENTS_DIR."""
    found = {}
    for unit in ("x/0", "y/1"):
        d = os.path.join(sockdir, "unit-" + unit.replace("/", "-"))
        os.mkdir(d)
        found[unit] = agents(path=os.path.join(d, "run.socket"))
    os.mkdir(os.path.join(sockdir, "unit-z-2"))  # a unit dir without a socket
    return sockdir, found


def exec_argv(jujuc, form, tmp_path, args):
    if form == "jujuc":
        return [jujuc, "juju-exec", *args]
    link = tmp_path / "juju-exec"
    if not link.exists():
        link.symlink_to(jujuc)
    return [link, *args]


@pytest.mark.parametrize("form", ["symlink", "jujuc"])
@pytest.mark.parametrize("args,unit", [
    (["-u", "x/0", "hostname"], "x/0"),
    (["--unit=y/1", "hostname"], "y/1"),
    (["--unit", "y/1", "--", "ls", "-l"], "y/1"),
    (["-uy/1", "ls"], "y/1"),
    (["-u=x/0", "ls"], "x/0"),
    (["x/0", "hostname"], "x/0"),
    (["y/1", "hostname"], "y/1"),
    (["unit-y-1", "hostname"], "y/1"),
    (["-r", "3", "y/1", "cmd"], "y/1"),
    (["--relation=3", "x/0", "cmd"], "x/0"),
    (["--remote-unit", "z/2", "--remote-app", "z", "y/1", "cmd"], "y/1"),
    (["--no-context", "x/0", "cmd"], "x/0"),
    (["--operator", "-u", "y/1", "x/0"], "y/1"),
    (["--", "y/1", "cmd"], "y/1"),
])
def test_juju_exec_socket_selection(jujuc, exec_agents, tmp_path, form, args, unit):
    agents_dir, by_unit = exec_agents
    env = {"JUJU_EXEC_AGENTS_DIR": agents_dir, "JUJU_CONTEXT_ID": "must-not-be-sent"}
    r = run(exec_argv(jujuc, form, tmp_path, args), env=env, cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr
    for u, agent in by_unit.items():
        assert len(agent.requests) == (1 if u == unit else 0), u
    [req] = by_unit[unit].requests
    assert (req.command, req.context_id, req.args) == ("juju-exec", "", args)
    assert req.cwd == os.path.realpath(tmp_path)


def test_juju_exec_help_without_unit_uses_any_socket(jujuc, exec_agents, tmp_path):
    agents_dir, by_unit = exec_agents
    r = run([jujuc, "juju-exec", "--help"], env={"JUJU_EXEC_AGENTS_DIR": agents_dir})
    assert r.returncode == 0, r.stderr
    assert len(by_unit["x/0"].requests) + len(by_unit["y/1"].requests) == 1


@pytest.mark.parametrize("args", [[], ["-r", "3"], ["--unit"], ["-u", ""], ["--", ""]])
def test_juju_exec_missing_unit(jujuc, exec_agents, tmp_path, args):
    agents_dir, by_unit = exec_agents
    r = run([jujuc, "juju-exec", *args], env={"JUJU_EXEC_AGENTS_DIR": agents_dir})
    assert r.returncode == 2
    assert b"ERROR missing unit-name" in r.stderr
    assert all(a.requests == [] for a in by_unit.values())


@pytest.mark.parametrize("args,code,message", [
    (["X/0", "cmd"], 2, b'"X/0" is not a valid unit tag'),
    (["x/01", "cmd"], 2, b"is not a valid unit tag"),
    (["x/", "cmd"], 2, b"is not a valid unit tag"),
    (["unit-..", "cmd"], 2, b"is not a valid unit tag"),
    (["../x/0", "cmd"], 2, b"is not a valid unit tag"),
    (["q/9", "cmd"], 1, b'unit "q/9" not found on this machine'),
])
def test_juju_exec_bad_unit(jujuc, exec_agents, args, code, message):
    agents_dir, by_unit = exec_agents
    r = run([jujuc, "juju-exec", *args], env={"JUJU_EXEC_AGENTS_DIR": agents_dir})
    assert r.returncode == code
    assert message in r.stderr
    assert all(a.requests == [] for a in by_unit.values())


def test_juju_exec_unit_without_socket(jujuc, exec_agents):
    agents_dir, _ = exec_agents
    r = run([jujuc, "juju-exec", "z/2", "cmd"], env={"JUJU_EXEC_AGENTS_DIR": agents_dir})
    assert r.returncode == 1
    assert b'unit "z/2" not found on this machine' in r.stderr


# ---------------------------------------------------------------------------
# unit-init
# ---------------------------------------------------------------------------


def need_root():
    if os.geteuid() != 0:
        pytest.skip("unit-init tests need root (network namespaces, mounts)")
    for tool in ("ip", "nsenter", "setsid"):
        if shutil.which(tool) is None:
            pytest.skip(f"unit-init tests need `{tool}`")


def proc_state(pid):
    """(state, start time) of a process, or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def running(pid, start):
    """True while the process started at `start` exists and is not a zombie (the host's
    PID 1 may reap orphans slowly, so a dead init can linger as a zombie)."""
    s = proc_state(pid)
    return s is not None and s[1] == start and s[0] not in ("Z", "X")


def exists(pid, start):
    s = proc_state(pid)
    return s is not None and s[1] == start


def wait_until(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def host_mount_points():
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4].replace("\\040", " ") for line in f}


def processes_with(token):
    """PIDs of live processes whose command line mentions token."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


def pid_ns_members(init_pid):
    """Host PIDs of the processes in init_pid's PID namespace, other than init_pid."""
    st = os.stat(f"/proc/{init_pid}/ns/pid")
    members = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != init_pid:
            try:
                s = os.stat(f"/proc/{d}/ns/pid")
            except OSError:
                continue
            if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                members.append(int(d))
    return members


def comm_and_args(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return []


class Machine:
    """A netns named jstest-<random>, /var/lib/jstest-<random> as a bind target and the
    unit-init processes started on them; close() undoes all of it, by PID."""

    def __init__(self, binary, tmp_path):
        self.binary = binary
        self.name = f"jstest-{secrets.token_hex(5)}"
        self.netns_path = f"/run/netns/{self.name}"
        self.target = f"/var/lib/{self.name}"
        self.src = tmp_path / "bindsrc"
        self.marker = secrets.token_hex(8)
        self.procs = []  # (pid, start time) to end at close
        self.netns_made = False
        self.target_made = False

    def setup(self):
        r = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True,
                           timeout=15)
        assert r.returncode == 0, f"ip netns add: {r.stderr}"
        self.netns_made = True
        os.mkdir(self.target, 0o755)
        self.target_made = True
        self.src.mkdir()
        (self.src / "marker.txt").write_text(self.marker)

    def track(self, pid):
        s = proc_state(pid)
        if s is not None:
            self.procs.append((pid, s[1]))
        return s

    def start(self, *extra, hostname=None):
        hostname = hostname or self.name
        r = run([self.binary, "--netns", self.netns_path, "--hostname", hostname,
                 f"--bind={self.src}:{self.target}", *extra], env=NO_LEAKS_ENV, timeout=30)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        pid = int(r.stdout.decode().strip())
        assert r.stdout == f"{pid}\n".encode()
        assert self.track(pid) is not None, "unit-init's PID 1 is not running"
        return pid

    def inside(self, pid, *argv, check=True, detach=False):
        """Runs argv in the machine; detach: for daemons, which would hold our pipes."""
        out = subprocess.DEVNULL if detach else subprocess.PIPE
        r = subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--",
                            *argv], stdout=out, stderr=out, text=True, timeout=15,
                           stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, f"{argv}: {r.stderr}"
        return r

    def netns_pids(self):
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True,
                           timeout=15)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def close(self):
        problems = []
        # also what a failed test never got to track: everything in our own netns
        if self.netns_made:
            for pid in self.netns_pids():
                self.track(pid)
        for pid, start in reversed(self.procs):
            if running(pid, start):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid, start in self.procs:
            if not wait_until(lambda: not running(pid, start), 5):
                problems.append(f"process {pid} survived SIGKILL")
        if self.netns_made:
            r = subprocess.run(["ip", "netns", "del", self.name], capture_output=True,
                               text=True, timeout=15)
            if r.returncode != 0:
                problems.append(f"ip netns del {self.name}: {r.stderr.strip()}")
        if self.target_made:
            if self.target in host_mount_points():
                problems.append(f"{self.target} is mounted on the host; left in place")
            else:
                try:
                    os.rmdir(self.target)
                except OSError as e:
                    problems.append(f"rmdir {self.target}: {e}")
        return problems


@pytest.fixture
def machine(unit_init, tmp_path):
    need_root()
    m = Machine(unit_init, tmp_path)
    try:
        m.setup()
        yield m
    finally:
        problems = m.close()
    assert not problems, problems


def test_unit_init_machine(machine):
    pid = machine.start(hostname="jstest-host")
    # the right namespaces
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(machine.netns_path).st_ino
    for ns in ("mnt", "uts", "ipc", "pid"):
        assert os.stat(f"/proc/{pid}/ns/{ns}").st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino
    assert machine.inside(pid, "uname", "-n").stdout == "jstest-host\n"
    assert os.uname().nodename != "jstest-host"
    # the bind is visible inside only
    assert machine.inside(pid, "cat", f"{machine.target}/marker.txt").stdout == machine.marker
    assert not os.path.exists(f"{machine.target}/marker.txt")
    assert machine.target not in host_mount_points()
    inner = machine.inside(pid, "cat", "/proc/self/mountinfo").stdout
    assert f" {machine.target} " in inner
    # a PID namespace of its own with unit-init as PID 1, and its own /proc
    assert machine.inside(pid, "cat", "/proc/1/comm").stdout == "unit-init\n"
    pids = [int(p) for p in machine.inside(pid, "ls", "/proc").stdout.split() if p.isdigit()]
    assert 1 in pids
    assert len(pids) < 10, pids  # init, nsenter's child; nothing of the host
    # the network namespace is the fresh one: loopback only
    links = machine.inside(pid, "ip", "-o", "link").stdout.splitlines()
    assert [ln.split(":")[1].strip() for ln in links] == ["lo"]


def start_daemon(machine, pid, *argv, shows_as=None, timeout=5.0):
    """Starts argv detached inside the machine; returns the host PID of the process whose
    command line is shows_as (default argv)."""
    machine.inside(pid, "setsid", "-f", *argv, detach=True)
    want = [a.encode() for a in shows_as or argv]
    found = []

    def look():
        found[:] = [p for p in pid_ns_members(pid) if comm_and_args(p) == want]
        return bool(found)

    assert wait_until(look, timeout), f"{argv} did not show up in the unit"
    [dpid] = found
    assert machine.track(dpid) is not None
    with open(f"/proc/{dpid}/status") as f:
        nspid = [ln.split()[1:] for ln in f if ln.startswith("NSpid:")][0]
    assert nspid[0] == str(dpid) and len(nspid) == 2  # host PID, PID in the unit
    return dpid


def sigterm_and_wait(machine, pid, daemon, limit):
    init_start = machine.procs[0][1]
    daemon_start = proc_state(daemon)[1]
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not running(pid, init_start), limit), "init did not exit"
    elapsed = time.monotonic() - t0
    assert not exists(daemon, daemon_start), "the daemon inside survived"
    assert machine.netns_pids() == []
    return elapsed


def test_unit_init_sigterm_stops_everything(machine):
    pid = machine.start()
    daemon = start_daemon(machine, pid, "sleep", "1000")
    elapsed = sigterm_and_wait(machine, pid, daemon, 6.0)
    assert elapsed < 6.0


def test_unit_init_sigkills_after_grace(machine):
    pid = machine.start()
    # ignores SIGTERM (ignored dispositions survive exec)
    daemon = start_daemon(machine, pid, "sh", "-c", "trap '' TERM; exec sleep 1001",
                          shows_as=["sleep", "1001"])
    with open(f"/proc/{daemon}/status") as f:
        [ignored] = [int(ln.split()[1], 16) for ln in f if ln.startswith("SigIgn:")]
    assert ignored & (1 << (signal.SIGTERM - 1))
    elapsed = sigterm_and_wait(machine, pid, daemon, 8.0)
    assert 4.0 <= elapsed < 8.0, elapsed


def test_unit_init_setup_failure(machine):
    missing = f"/nonexistent-{machine.name}"
    r = run([machine.binary, "--netns", machine.netns_path, "--hostname", "h",
             f"--bind={missing}:{machine.target}"], env=NO_LEAKS_ENV, timeout=30)
    assert r.returncode == 1
    assert f"unit-init: bind source {missing}: No such file".encode() in r.stderr
    assert r.stdout == b""
    assert processes_with(missing) == []
    assert machine.netns_pids() == []


@pytest.mark.parametrize("args", [
    [],
    ["--netns"],
    ["--netns", "/run/netns/x"],
    ["--hostname", "h"],
    ["--netns=/run/netns/x", "--hostname="],
    ["--netns=", "--hostname=h"],
    ["--netns=/run/netns/x", "--hostname", "h" * 65],
    ["--netns=/run/netns/x", "--hostname=h", "--bind", "nocolon"],
    ["--netns=/run/netns/x", "--hostname=h", "--bind", ":/dst"],
    ["--netns=/run/netns/x", "--hostname=h", "--bind", "src:relative"],
    ["--netns=/run/netns/x", "--hostname=h", "--readonly-dir", "relative"],
    ["--netns=/run/netns/x", "--hostname=h", "--readonly-dir"],
    ["--netns=/run/netns/x", "--hostname=h", "--bogus"],
    ["--netnsx=/run/netns/x", "--hostname=h"],
])
def test_unit_init_invalid_args(unit_init, args):
    r = run([unit_init, *args])
    assert r.returncode == 2, r.stderr
    assert b"usage: unit-init" in r.stderr
    assert r.stdout == b""


def test_unit_init_missing_netns(unit_init):
    path = f"/run/netns/jstest-missing-{secrets.token_hex(5)}"
    r = run([unit_init, "--netns", path, "--hostname", "h"])
    assert r.returncode == 1
    assert f"unit-init: opening {path}: No such file or directory".encode() in r.stderr
    assert r.stdout == b""
    assert processes_with(path) == []


def test_unit_init_not_a_netns(unit_init, tmp_path):
    need_root()
    f = tmp_path / f"jstest-notns-{secrets.token_hex(5)}"
    f.write_text("")
    r = run([unit_init, "--netns", f, "--hostname", "h"])
    assert r.returncode == 1
    assert f"unit-init: joining network namespace {f}:".encode() in r.stderr
    assert processes_with(str(f)) == []
