"""Fixtures and helpers for the sandbox conformance suite.

The suite drives the local Juju emulator (sandbox/bin/juju) only through its
CLI, the way jubilant drives a real controller: `juju <cmd> --model M ...`.
The spec it checks is ../shared/reference/juju.md ("the reference"); where
the reference and real Juju 3.6 differ, real Juju wins.

Session: one controller in a fresh JUJU_SANDBOX_DIR (bootstrap at start,
kill-controller at the end, even on failure). Module: one model per test
module (add-model / destroy-model). Charms come from tests/charms and are
packed into .charm zip files (modes kept) before deploy.
"""

import base64
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JUJU_BIN = REPO / "sandbox" / "bin" / "juju"
CHARMS_SRC = REPO / "tests" / "charms"
DEFAULT_TIMEOUT = 120.0

# Set by the session fixture; where packed charms go.
_STATE = {"charm_dir": None, "packed": {}}


# ---------------------------------------------------------------------------
# Running the CLI
# ---------------------------------------------------------------------------


class JujuError(AssertionError):
    """A juju command exited non-zero while the caller expected success."""

    def __init__(self, proc):
        self.proc = proc
        super().__init__(
            f"`{shlex.join(proc.args)}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )


def juju(*args, check=True, input=None, timeout=DEFAULT_TIMEOUT, env=None):
    """Run sandbox/bin/juju with `args`; returns the CompletedProcess (text)."""
    argv = [str(JUJU_BIN), *(str(a) for a in args)]
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=str(REPO),
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"`{shlex.join(argv)}` did not finish within {timeout}s\n"
            f"--- stdout ---\n{e.stdout}\n--- stderr ---\n{e.stderr}"
        ) from None
    if check and proc.returncode != 0:
        raise JujuError(proc)
    return proc


def restart_controller():
    """Restart the sandbox controller process, keeping all models.

    NOTE for the lead: the command name is not decided yet. This calls
    `sandbox/bin/juju controller-restart`; align it with whatever the
    emulator grows (e.g. `bootstrap --restart-controller`). Real Juju has no
    such command: a controller restart there is `systemctl restart
    jujud-machine-0`; units must carry on as if nothing happened.
    """
    juju("controller-restart", timeout=120)


# ---------------------------------------------------------------------------
# Status predicates (jubilant semantics, reference §9.2)
# ---------------------------------------------------------------------------


def _units(app_status):
    for name, unit in (app_status.get("units") or {}).items():
        yield name, unit
        for sname, sub in (unit.get("subordinates") or {}).items():
            yield sname, sub


def _apps(status, apps):
    all_apps = status.get("applications") or {}
    names = apps or tuple(all_apps)
    return [(n, all_apps.get(n)) for n in names]


def all_active(status, *apps):
    """App status and every unit's workload (subordinates too) are active."""
    for _, app in _apps(status, apps):
        if app is None:
            return False
        if (app.get("application-status") or {}).get("current") != "active":
            return False
        for _, unit in _units(app):
            if (unit.get("workload-status") or {}).get("current") != "active":
                return False
    return True


def all_agents_idle(status, *apps):
    """Every unit's juju-status (agent) is idle."""
    for _, app in _apps(status, apps):
        if app is None:
            return False
        for _, unit in _units(app):
            if (unit.get("juju-status") or {}).get("current") != "idle":
                return False
    return True


def any_error(status, *apps):
    """Any application, unit workload or unit agent is in error."""
    for _, app in _apps(status, apps):
        if app is None:
            continue
        if (app.get("application-status") or {}).get("current") == "error":
            return True
        for _, unit in _units(app):
            if (unit.get("workload-status") or {}).get("current") == "error":
                return True
            if (unit.get("juju-status") or {}).get("current") == "error":
                return True
    return False


def unit_count(status, app):
    a = (status.get("applications") or {}).get(app) or {}
    return len(a.get("units") or {})


def poll(fn, timeout, delay=0.5, what="condition"):
    """Call fn() until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except AssertionError as e:  # a juju call failed; retry until deadline
            last_exc = e
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f"\nlast error: {last_exc}"
            raise TimeoutError(msg)
        time.sleep(delay)


# ---------------------------------------------------------------------------
# Charms
# ---------------------------------------------------------------------------


def pack_charm(name):
    """Pack tests/charms/<name> into a .charm zip keeping Unix modes."""
    packed = _STATE["packed"]
    if name in packed:
        return packed[name]
    outdir = _STATE["charm_dir"] or tempfile.mkdtemp(prefix="tt-charms-")
    _STATE["charm_dir"] = outdir
    src = CHARMS_SRC / name
    assert (src / "metadata.yaml").is_file(), f"no charm at {src}"
    out = Path(outdir) / f"{name}_amd64.charm"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            # ZipFile.write records st_mode in external_attr (exec bits kept).
            zf.write(path, path.relative_to(src).as_posix())
        # A charm importing the shared hook-tool helpers gets tests/charms/_common/*.py
        # as src/<name> (a file of the charm's own at that path wins).
        charm_py = src / "src" / "charm.py"
        if charm_py.is_file() and "charmtools" in charm_py.read_text(errors="replace"):
            for path in sorted((CHARMS_SRC / "_common").glob("*.py")):
                if not (src / "src" / path.name).exists():
                    zf.write(path, f"src/{path.name}")
    packed[name] = str(out)
    return str(out)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ExecResult:
    rc: int
    stdout: str
    stderr: str
    task: dict
    cli: subprocess.CompletedProcess


@dataclasses.dataclass
class ActionResult:
    cli: subprocess.CompletedProcess
    task: dict  # the single task object ({} if the CLI printed no JSON)

    @property
    def status(self):
        return self.task.get("status")

    @property
    def results(self):
        return self.task.get("results") or {}


def charm_dir(unit):
    app, n = unit.rsplit("/", 1)
    return f"/var/lib/juju/agents/unit-{app}-{n}/charm"


class Model:
    def __init__(self, name):
        self.name = name

    # -- plumbing --------------------------------------------------------
    def juju(self, cmd, *args, **kw):
        """`juju <cmd> --model <name> args...` (jubilant's argv order)."""
        return juju(cmd, "--model", self.name, *args, **kw)

    def status(self):
        p = self.juju("status", "--format", "json")
        return json.loads(p.stdout)

    def wait(self, ready, error=None, timeout=120.0, delay=0.5, successes=3):
        """Poll status until ready(status) holds `successes` polls in a row.

        error(status) true at any poll fails at once (jubilant's wait)."""
        deadline = time.monotonic() + timeout
        count = 0
        status = None
        last_err = None
        while True:
            try:
                status = self.status()
            except AssertionError as e:
                last_err = e
                status = None
                count = 0
            if status is not None:
                if error is not None and error(status):
                    raise AssertionError(
                        "error condition while waiting:\n" + _summary(status)
                    )
                if ready(status):
                    count += 1
                    if count >= successes:
                        return status
                else:
                    count = 0
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"wait timed out after {timeout}s\n"
                    + (_summary(status) if status else f"last error: {last_err}")
                )
            time.sleep(delay)

    # -- deploy and friends -------------------------------------------------
    def deploy(self, charm, app=None, num_units=1, config=None, extra=()):
        args = [pack_charm(charm)]
        if app:
            args.append(app)
        if num_units != 1:
            args += ["--num-units", str(num_units)]
        for k, v in (config or {}).items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            args += ["--config", f"{k}={v}"]
        args += list(extra)
        return self.juju("deploy", *args, timeout=180)

    def units(self, app, status=None):
        status = status or self.status()
        return sorted(
            (status["applications"][app].get("units") or {}),
            key=lambda u: int(u.rsplit("/", 1)[1]),
        )

    def leader(self, app, status=None):
        status = status or self.status()
        for name, unit in (status["applications"][app].get("units") or {}).items():
            if unit.get("leader"):
                return name
        raise AssertionError(f"no leader for {app}:\n{_summary(status)}")

    def followers(self, app, status=None):
        status = status or self.status()
        ldr = self.leader(app, status)
        return [u for u in self.units(app, status) if u != ldr]

    # -- exec / run -------------------------------------------------------
    def exec(self, unit, command, timeout=90.0):
        """`juju exec --unit <unit> -- <command>`; returns ExecResult.

        `command` is one shell string (juju joins exec args with spaces and
        runs them with bash). A non-zero command exit is a result, not an
        error; a CLI failure with no task JSON raises."""
        p = self.juju(
            "exec", "--format", "json", "--unit", unit, "--", command,
            check=False, timeout=timeout,
        )
        try:
            out = json.loads(p.stdout)
        except ValueError:
            raise JujuError(p) from None
        assert isinstance(out, dict) and len(out) == 1, p.stdout
        task = out.get(unit) or next(iter(out.values()))
        res = task.get("results") or {}
        return ExecResult(
            rc=res.get("return-code"),
            stdout=res.get("stdout", ""),
            stderr=res.get("stderr", ""),
            task=task,
            cli=p,
        )

    def sh(self, unit, command, timeout=90.0):
        """exec and require return-code 0; returns stdout."""
        r = self.exec(unit, command, timeout=timeout)
        assert r.rc == 0, (
            f"`{command}` on {unit} returned {r.rc}\nstdout: {r.stdout!r}\n"
            f"stderr: {r.stderr!r}"
        )
        return r.stdout

    def run(self, unit, action, *params, timeout=90.0, extra=()):
        """`juju run --format json <unit> <action> k=v...`; returns ActionResult."""
        p = self.juju(
            "run", "--format", "json", unit, action, *params, *extra,
            check=False, timeout=timeout,
        )
        task = {}
        if p.stdout.strip():
            try:
                out = json.loads(p.stdout)
            except ValueError:
                raise JujuError(p) from None
            if out:
                task = next(iter(out.values()))
        return ActionResult(cli=p, task=task)

    def run_tool(self, unit, command, timeout=90.0):
        """Run `command` inside the tool-tester `run` action (action context).

        Returns (rc, out, err) of the command."""
        r = self.run(unit, "run", f"cmd={command}", timeout=timeout,
                     extra=("--string-args",))
        assert r.status == "completed", (r.cli.stdout, r.cli.stderr)
        res = r.results
        return int(res["rc"]), res.get("out", ""), res.get("err", "")

    # -- the tool-tester charm's files -------------------------------------
    def events(self, unit):
        """All events recorded by tool-tester on `unit` (events.jsonl)."""
        out = self.sh(unit, f"cat {charm_dir(unit)}/events.jsonl 2>/dev/null || true")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def hooks(self, unit, since=0):
        """Names of recorded hook events (not actions / exec), from index `since`."""
        return [e["event"] for e in self.events(unit)[since:] if e["kind"] == "hook"]

    def wait_event(self, unit, pred, timeout=60.0, since=0, what=None):
        """Poll events.jsonl on `unit` until an event from index `since`
        satisfies pred(event); returns that event."""
        def find():
            for e in self.events(unit)[since:]:
                if pred(e):
                    return e
            return None
        return poll(find, timeout, what=what or f"event on {unit}")

    def write_file(self, unit, relpath, content, mode=None):
        """Write `content` to <charm dir>/<relpath> on the unit."""
        b64 = base64.b64encode(content.encode()).decode()
        path = f"{charm_dir(unit)}/{relpath}"
        cmd = f"mkdir -p {shlex.quote(os.path.dirname(path))} && echo {b64} | base64 -d > {shlex.quote(path)}"
        if mode is not None:
            cmd += f" && chmod {mode:o} {shlex.quote(path)}"
        self.sh(unit, cmd)

    def read_file(self, unit, relpath):
        r = self.exec(unit, f"cat {shlex.quote(charm_dir(unit) + '/' + relpath)}")
        return r.stdout if r.rc == 0 else None

    def remove_file(self, unit, relpath):
        self.sh(unit, f"rm -f {shlex.quote(charm_dir(unit) + '/' + relpath)}")

    def install_script(self, unit, event, body):
        """Install scripts/<event> (a bash script body) on the unit."""
        self.write_file(unit, f"scripts/{event}", "#!/bin/bash\n" + body, mode=0o755)

    def remove_script(self, unit, event):
        self.remove_file(unit, f"scripts/{event}")

    # -- relations --------------------------------------------------------
    def relation_id(self, unit, endpoint):
        """The single relation id ("ep:N") of `endpoint` seen from `unit`."""
        ids = json.loads(self.sh(unit, f"relation-ids {endpoint} --format json"))
        assert len(ids) == 1, ids
        return ids[0]

    # -- logs -------------------------------------------------------------
    def debug_log(self):
        return self.juju("debug-log", "--limit", "0", timeout=60).stdout

    def tt_trace(self, unit=None):
        """TT-EVENT records logged by tool-tester (survive unit removal)."""
        out = []
        for line in self.debug_log().splitlines():
            i = line.find("TT-EVENT ")
            if i < 0:
                continue
            try:
                rec = json.loads(line[i + len("TT-EVENT "):])
            except ValueError:
                continue
            if unit is None or rec.get("unit") == unit:
                out.append(rec)
        return out

    def destroy(self):
        p = self.juju_raw("destroy-model", self.name, "--no-prompt", timeout=300)
        if p.returncode != 0:
            p2 = self.juju_raw("destroy-model", self.name, "--no-prompt", "--force",
                               timeout=300)
            if p2.returncode != 0:
                raise JujuError(p2)
            raise JujuError(p)

    @staticmethod
    def juju_raw(*args, **kw):
        return juju(*args, check=False, **kw)


def _summary(status):
    """A compact one-line-per-unit view of a status, for failure messages."""
    if not status:
        return "<no status>"
    lines = []
    for app, a in (status.get("applications") or {}).items():
        st = a.get("application-status") or {}
        lines.append(f"{app}: {st.get('current')} {st.get('message', '')!r}")
        for name, u in _units(a):
            ws = u.get("workload-status") or {}
            js = u.get("juju-status") or {}
            lines.append(
                f"  {name}: {ws.get('current')} {ws.get('message', '')!r} / "
                f"{js.get('current')} {js.get('message', '')!r}"
                f"{' leader' if u.get('leader') else ''}"
            )
    return "\n".join(lines)


def new_model(prefix):
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    juju("add-model", name, timeout=120)
    return Model(name)


def _model_prefix(module_name):
    base = module_name.rsplit(".", 1)[-1].lower()
    base = re.sub(r"^test_", "", base)
    return "t-" + re.sub(r"[^a-z0-9]+", "-", base).strip("-")


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


def _processes_using(path):
    """PIDs whose command line mentions `path` (the controller, unit inits)."""
    needle = path.encode()
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def poll_quiet(fn, timeout, delay=0.5):
    """poll() that returns False instead of raising on timeout."""
    try:
        return poll(fn, timeout, delay)
    except TimeoutError:
        return False


def _mounts_under(path):
    """Mount points (host mount namespace) at or under `path`."""
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == path or mp.startswith(path + "/"):
                    found.append(mp)
    except OSError:
        pass
    return found


@pytest.fixture(scope="session")
def controller(tmp_path_factory):
    """A controller of our own: fresh JUJU_SANDBOX_DIR, bootstrap, kill."""
    # Short: the emulator puts Unix sockets under this dir (sun_path is 108 bytes).
    sandbox_dir = tempfile.mkdtemp(prefix="jt", dir="/tmp")
    _STATE["charm_dir"] = str(tmp_path_factory.mktemp("charms"))
    saved = os.environ.get("JUJU_SANDBOX_DIR")
    os.environ["JUJU_SANDBOX_DIR"] = sandbox_dir
    try:
        assert JUJU_BIN.exists(), f"{JUJU_BIN} does not exist"
        p = juju("bootstrap", check=False, timeout=300)
        if p.returncode != 0:
            pytest.fail(
                f"juju bootstrap failed ({p.returncode})\n{p.stdout}\n{p.stderr}",
                pytrace=False,
            )
        yield sandbox_dir
    finally:
        killed = False
        for flag in ("--no-prompt", "-y"):
            try:
                p = juju("kill-controller", flag, check=False, timeout=180)
            except AssertionError as e:  # timed out
                print(f"kill-controller {flag}: {e}", file=sys.stderr)
                break
            if p.returncode == 0:
                killed = True
                break
            print(f"kill-controller {flag} failed: {p.stderr}", file=sys.stderr)
        gone = poll_quiet(lambda: not _processes_using(sandbox_dir), 30)
        users = [] if gone else _processes_using(sandbox_dir)
        left = _mounts_under(sandbox_dir)
        if not killed or users or left:
            # Never delete the state of a controller that may still run, nor
            # rmtree through a mount (it could be a bind of host files).
            print(f"NOT removing {sandbox_dir}: killed={killed} processes={users} "
                  f"mounts={left}", file=sys.stderr)
        else:
            shutil.rmtree(sandbox_dir, ignore_errors=True)
        if saved is None:
            os.environ.pop("JUJU_SANDBOX_DIR", None)
        else:
            os.environ["JUJU_SANDBOX_DIR"] = saved


@pytest.fixture(scope="module")
def model(request, controller):
    """A model of this test module's own, destroyed at module teardown."""
    m = new_model(_model_prefix(request.module.__name__))
    yield m
    m.destroy()


# ---------------------------------------------------------------------------
# Logs of a failed test
# ---------------------------------------------------------------------------

LOG_DIRS = ("var/log/pg-agent", "var/log/postgresql")


def save_model_logs(model):
    """Copy every machine's charm logs and the model's debug log of `model` to a new
    /tmp/charm-logs-<model>-* directory; returns (directory, tails of the agent logs)."""
    sandbox = os.environ.get("JUJU_SANDBOX_DIR")
    if not sandbox:
        return None, ""
    p = model.juju_raw("show-model", model.name, "--format", "json", timeout=30)
    if p.returncode != 0:
        return None, ""
    uuid_ = next(iter(json.loads(p.stdout).values()))["model-uuid"]
    mdir = Path(sandbox) / "models" / uuid_
    dest = Path(tempfile.mkdtemp(prefix=f"charm-logs-{model.name}-", dir="/tmp"))
    tails = []
    for fs in sorted((mdir / "machines").glob("*/fs")):
        mid = fs.parent.name
        for rel in LOG_DIRS:
            src = fs / rel
            if src.is_dir():
                shutil.copytree(src, dest / f"machine-{mid}" / src.name, dirs_exist_ok=True,
                                ignore_dangling_symlinks=True)
        agent = fs / "var/log/pg-agent/agent.log"
        if agent.is_file():
            lines = agent.read_text(errors="replace").splitlines()[-40:]
            tails.append(f"--- machine {mid}: agent.log (last {len(lines)} lines)\n"
                         + "\n".join(lines))
    if (mdir / "debug.log").is_file():
        shutil.copy2(mdir / "debug.log", dest)
    return dest, "\n".join(tails)


_SETUP_LOGS_SAVED = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test that uses the module's `model` fails, keep its units' logs (the model is
    destroyed at module teardown) and show the agent logs' last lines in the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when not in ("setup", "call") or not rep.failed:
        return
    model = item.funcargs.get("model") if hasattr(item, "funcargs") else None
    if not isinstance(model, Model):
        return
    # a module fixture that fails errors every test of the module: its logs once
    if rep.when == "setup":
        if model.name in _SETUP_LOGS_SAVED:
            return
        _SETUP_LOGS_SAVED.add(model.name)
    try:
        dest, tails = save_model_logs(model)
    except Exception as e:                      # the report must not fail on this
        rep.sections.append(("charm logs", f"not saved: {e}"))
        return
    if dest is not None:
        rep.sections.append(("charm logs", f"saved to {dest}\n{tails}"))
