# juju-exec inside a unit (run.socket) and `juju exec` from the CLI: queue commands on the
# unit's operation loop (priority 8) and run them with bash -s in a hook context.
import threading

from . import host
from .flags import Flag, HelpRequested, UsageError, parse

EXEC_FLAGS = [Flag("u", "unit"), Flag("r", "relation"), Flag("remote-unit"), Flag("remote-app"),
              Flag("force-remote-unit", kind="bool"), Flag("no-context", kind="bool"),
              Flag("operator", kind="bool")]
USAGE = "Usage: juju-exec [options] <unit-name> <commands>\n"


def run_no_context(ctl, m, mid, commands, user=None):
    """Run commands on a machine outside any hook context (juju-exec --no-context,
    juju exec --machine), as root or as the given user when it exists."""
    import pwd
    argv = ["/bin/bash", "-s"]
    env = {"PATH": host.AGENT_PATH, "LANG": "C.UTF-8"}
    if user:
        try:
            pw = pwd.getpwnam(user)
            argv = ["/usr/sbin/runuser", "-u", user, "--"] + argv
            env.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)
        except KeyError:
            pass  # no such user on this host: root, as on a machine without it
    return host.run_in(ctl.machine_pid(m, mid), argv, env, cwd="/", stdin=commands.encode())


def queue_commands(ctl, m, unit, commands, relation=None, remote_unit=None, remote_app=None,
                   timeout=None):
    """Queue on the unit's uniter; returns the request whose 'done' event is set when run."""
    req = {"commands": commands, "relation": relation, "remote_unit": remote_unit,
           "remote_app": remote_app, "timeout": timeout, "done": threading.Event(),
           "result": None}
    with m.cond:
        u = ctl.uniters.get((m.uuid, unit))
        if u is None:
            raise KeyError(unit)
        u.exec_queue.append(req)
        m.cond.notify_all()
    return req


def juju_exec(ctl, m, unit, req):
    try:
        opts, pos = parse(req.args, EXEC_FLAGS, allow_interspersed=False)
    except HelpRequested:
        return 0, USAGE.encode(), b"", 0
    except UsageError as e:
        return 2, b"", f"ERROR {e}\n".encode(), 0
    target = opts.get("unit")
    if target is None:
        if not pos:
            return 2, b"", b"ERROR missing unit-name\n", 0
        target = pos.pop(0)
    if target.startswith("unit-"):
        target = target[5:].rsplit("-", 1)
        target = "/".join(target)
    if not pos:
        return 2, b"", b"ERROR missing commands\n", 0
    commands = " ".join(pos)
    if target != unit:
        return 1, b"", f'ERROR unit "{target}" not found on this machine\n'.encode(), 0
    if opts["no_context"]:
        with m.lock:
            mid = m.unit(unit)["machine"]
        r = run_no_context(ctl, m, mid, commands)
        return r.code, r.stdout, r.stderr, 0
    relation = None
    remote_unit = opts.get("remote_unit")
    remote_app = opts.get("remote_app")
    with m.lock:
        if opts.get("relation") is not None:
            raw = opts["relation"]
            try:
                relation = int(raw.rsplit(":", 1)[-1])
            except ValueError:
                return 2, b"", f'ERROR invalid relation id "{raw}"\n'.encode(), 0
            rel = m.relation(relation)
            rs = m.unit(unit)["relations"].get(str(relation))
            if rel is None or rs is None:
                return 1, b"", f'ERROR unable to find relation id "{raw}"\n'.encode(), 0
            if remote_unit is None:
                known = sorted(rs["joined"])
                if len(known) == 1:
                    remote_unit = known[0]
                elif len(known) > 1 and not opts["force_remote_unit"]:
                    return 1, b"", (f'ERROR unable to determine remote-unit, please disambiguate: '
                                    f'{known}\n').encode(), 0
    try:
        q = queue_commands(ctl, m, unit, commands, relation, remote_unit, remote_app)
    except KeyError:
        return 1, b"", f'ERROR unit "{unit}" has no agent running\n'.encode(), 0
    q["done"].wait()
    r = q["result"]
    return r.code, r.stdout, r.stderr, 0

