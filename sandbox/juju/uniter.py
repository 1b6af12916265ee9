# One uniter per unit: picks the next operation in Juju's resolver order (juju.md 5.1, 5.3),
# runs it in the unit's machine with Juju's environment, and commits its buffered writes.
import os
import threading
import time

from . import host, secretstore
from .context import HookContext
from .flags import parse_go_duration
from .model import app_of, now, status, unit_tag

RETRY_FIRST = 5.0
RETRY_MAX = 300.0
SECRET_REFIRE = 300.0


def duration(model, key):
    try:
        return parse_go_duration(str(model.config_value(key)))
    except ValueError:
        return None


class Op(dict):
    """An operation: {"kind": hook|action|run, "hook": name, ... bookkeeping fields}."""

    def describe(self):
        if self["kind"] == "action":
            return f'action "{self["name"]}"'
        if self["kind"] == "run":
            return "commands"
        return f'"{self["hook"]}" hook'


class Uniter:
    def __init__(self, controller, model, unit):
        self.ctl = controller
        self.model = model
        self.unit = unit
        self.stopping = False
        self.thread = threading.Thread(target=self.loop, name=f"uniter-{unit}", daemon=True)
        self.exec_queue = []  # juju-exec requests from inside the machine (not persisted)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping = True
        with self.model.cond:
            self.model.cond.notify_all()

    def abandon(self):
        """The unit is gone: answer queued juju-exec commands and fail pending actions."""
        m = self.model
        with m.cond:
            while self.exec_queue:
                req = self.exec_queue.pop(0)
                req["result"] = host.Result(1, b"", f'ERROR unit "{self.unit}" not found\n'.encode())
                req["done"].set()
            for task in m.d["tasks"].values():
                if task["unit"] == self.unit and task["status"] in ("pending", "running"):
                    task.update(status="failed", message=f'unit "{self.unit}" was removed',
                                completed=now())
            m.cond.notify_all()

    # ---- main loop ---------------------------------------------------------------------
    def loop(self):
        m = self.model
        while not self.stopping:
            with m.cond:
                ud = m.unit(self.unit)
                if ud is None or ud["life"] == "dead":
                    self.abandon()
                    return
                op, wake = self.next_op(ud)
                if op is None:
                    timeout = None if wake is None else max(0.0, wake - now())
                    m.cond.wait(timeout if timeout is None else min(timeout, 60.0))
                    continue
                try:
                    ctx = self.prepare(ud, op)
                    prepared = True
                except Exception as e:  # likewise: log it and try again
                    m.log(unit_tag(self.unit), "ERROR", "juju.worker.uniter",
                          f"internal error preparing {op.describe()}: {e!r}")
                    prepared = False
            if not prepared:
                time.sleep(1)
                continue
            try:
                self.run(ctx, op)
            except Exception as e:  # a bug must not kill the unit's agent
                m.log(unit_tag(self.unit), "ERROR", "juju.worker.uniter",
                      f"internal error running {op.describe()}: {e!r}")
                time.sleep(1)

    # ---- resolver ----------------------------------------------------------------------
    def next_op(self, ud):
        """Return (op, wake_time). wake_time is when a timed item becomes due."""
        m = self.model
        unit = self.unit
        app = ud["app"]
        ad = m.app(app)
        t = now()
        wake = []

        machine = m.d["machines"].get(ud["machine"])
        if not machine or not machine.get("ready"):
            return None, t + 0.5
        if not host.init_alive(machine.get("pid"), machine.get("start_time")):
            self.ctl.machine_down(m, ud["machine"])  # crashed: reboot it
            return None, t + 0.5

        err = ud.get("error")
        if err:
            # actions and commands still run while the unit is in error (5.7)
            queued = self.queued_op(ud)
            if queued:
                return queued, None
            # `juju resolve` retries at once; otherwise back-off when retries are enabled
            if err.get("resolve"):
                return Op(err["op"], retry=True), None
            if not m.config_value("automatically-retry-hooks"):
                return None, None
            if t >= err["retry_at"]:
                return Op(err["op"], retry=True), None
            return None, err["retry_at"]

        if ud["life"] != "alive":
            return self.queued_op(ud) or self.next_dying_op(ud), None
        if ud["installed"]:
            # 3: relation-created for every live relation not yet announced
            for rel in sorted(m.relations_of(app), key=lambda r: r["id"]):
                rs = ud["relations"].get(str(rel["id"]))
                if rel["life"] == "alive" and rs is None:
                    return self.rel_op("relation-created", rel, None), None
            # 4: leadership
            if ad.get("leader") == unit and not ud["leader_seen"]:
                return Op(kind="hook", hook="leader-elected"), None
            if ad.get("leader") != unit and ud["leader_version_seen"] < ad["leader_version"]:
                return Op(kind="hook", hook="leader-settings-changed",
                          version=ad["leader_version"]), None
            # 6: secrets: expired, rotate, changed, obsolete
            sop, swake = secretstore.next_secret_op(m, unit, t)
            if sop:
                return Op(kind="hook", **sop), None
            if swake:
                wake.append(swake)
        # 7, 8: actions, then juju-exec commands
        queued = self.queued_op(ud)
        if queued:
            return queued, None
        # 10: queued hook (start after the first config-changed)
        if ud["start_queued"]:
            return Op(kind="hook", hook="start"), None
        # 11: install
        if not ud["installed"]:
            return Op(kind="hook", hook="install"), None
        # 12: upgrade-charm when the application's charm changed (juju refresh)
        if ud.get("charm_rev", 0) < ad["charm_rev"]:
            return Op(kind="hook", hook="upgrade-charm", charm_rev=ad["charm_rev"]), None
        # 13: config-changed
        if ud["config_version_seen"] < ad["config_version"]:
            return Op(kind="hook", hook="config-changed", version=ad["config_version"]), None
        # 14: relation hooks
        if ud["started"]:
            for rel in sorted(m.relations_of(app), key=lambda r: r["id"]):
                op = self.next_relation_op(ud, rel)
                if op:
                    return op, None
        # 15: update-status
        if ud["started"]:
            interval = duration(m, "update-status-hook-interval") or 300.0
            due = ud["last_update_status"] + interval
            if t >= due:
                return Op(kind="hook", hook="update-status"), None
            wake.append(due)
        return None, (min(wake) if wake else None)

    def queued_op(self, ud):
        if ud["installed"]:
            for tid in ud["task_queue"]:
                task = self.model.d["tasks"][tid]
                if task["status"] == "pending":
                    return Op(kind="action", name=task["name"], task=tid)
        if self.exec_queue:
            return Op(kind="run", req=self.exec_queue[0])
        return None

    def rel_op(self, suffix, rel, remote_unit, **extra):
        m = self.model
        ep = m.local_endpoint(rel, app_of(self.unit))
        remote = m.remote_endpoint(rel, app_of(self.unit))
        return Op(kind="hook", hook=f"{ep['name']}-{suffix}", rel=rel["id"], endpoint=ep["name"],
                  remote_app=remote["app"], remote_unit=remote_unit, **extra)

    def next_relation_op(self, ud, rel):
        m = self.model
        rs = ud["relations"].get(str(rel["id"]))
        if rs is None:
            return None
        unit = self.unit
        dying = rel["life"] != "alive"
        present = [] if dying else m.remote_units(rel, unit)
        # 1: the changed owed right after a joined
        if rs["changed_owed"] and rs["changed_owed"] in rs["joined"] and not dying:
            ru = rs["changed_owed"]
            return self.rel_op("relation-changed", rel, ru,
                               version=rel["unit_version"].get(ru, 0))
        # 2: departed for known units that are gone
        for ru in sorted(rs["joined"], key=_unit_sort):
            if ru not in present:
                return self.rel_op("relation-departed", rel, ru, departing=ru)
        # 3: broken when the relation is dying (never for peers)
        if dying:
            return self.rel_op("relation-broken", rel, None)
        # 4: remote application data changed
        remote_app = m.remote_endpoint(rel, ud["app"])["app"]
        av = rel["app_version"].get(remote_app, 0)
        if av > rs["app_version_seen"] and rel["app_data"].get(remote_app):
            return self.rel_op("relation-changed", rel, None, app_version=av)
        # 5: joined for new remote units
        for ru in present:
            if ru not in rs["joined"]:
                return self.rel_op("relation-joined", rel, ru,
                                   version=rel["unit_version"].get(ru, 0))
        # 6: changed for remote units whose settings changed
        for ru in present:
            v = rel["unit_version"].get(ru, 0)
            if v > rs["joined"][ru]:
                return self.rel_op("relation-changed", rel, ru, version=v)
        return None

    def next_dying_op(self, ud):
        """Dying unit: departed for every known unit, broken per relation, stop, remove."""
        m = self.model
        for rel in sorted(m.relations_of(ud["app"]), key=lambda r: r["id"]):
            rs = ud["relations"].get(str(rel["id"]))
            if rs is None:
                continue
            for ru in sorted(rs["joined"], key=_unit_sort):
                return self.rel_op("relation-departed", rel, ru, departing=self.unit)
            if not rel["peer"]:
                return self.rel_op("relation-broken", rel, None)
            return Op(kind="leave", rel=rel["id"])
        if ud["installed"] and not ud["stopped"]:
            return Op(kind="hook", hook="stop")
        return Op(kind="hook", hook="remove")

    # ---- running -----------------------------------------------------------------------
    def prepare(self, ud, op):
        """Called under the model lock: set statuses and build the context."""
        m = self.model
        hook = op.get("hook", "")
        if op["kind"] == "hook":
            if hook == "stop":
                m.set_unit_status(self.unit, "workload", "maintenance", "stopping charm software")
            elif hook == "remove":
                m.set_unit_status(self.unit, "workload", "maintenance",
                                  "cleaning up prior to charm deletion")
            if hook.endswith("-relation-created"):
                self.ctl.enter_relation(m, self.unit, m.relation(op["rel"]))
            elif hook == "upgrade-charm":
                self.ctl.install_charm(m, self.unit)
            msg = f"running {hook} hook"
            if op.get("remote_unit"):
                msg += f" for {op['remote_unit']}"
            if hook != "update-status":
                m.set_unit_status(self.unit, "agent", "executing", msg)
        elif op["kind"] == "action":
            task = m.d["tasks"][op["task"]]
            task["status"] = "running"
            task["started"] = now()
            m.set_unit_status(self.unit, "agent", "executing", f"running action {op['name']}")
        elif op["kind"] == "run":
            self.exec_queue.pop(0)
        if op["kind"] == "leave":
            return None
        m.changed()
        ctx = HookContext(self.ctl, m, self.unit, op)
        ctx.env = ctx.environ()
        machine = m.d["machines"][ud["machine"]]
        ctx.machine = (ud["machine"], machine["pid"])
        return ctx

    def run(self, ctx, op):
        m = self.model
        if op["kind"] == "leave":  # a dying unit leaving a peer relation: no hook to run
            with m.cond:
                ud = m.unit(self.unit)
                ud["relations"].pop(str(op["rel"]), None)
                self.ctl.maybe_drop_relation(m, op["rel"])
                m.changed()
            return
        ud = m.unit(self.unit)
        if op["kind"] == "run":
            self.run_commands(ctx, op["req"])
            return
        charm_dir = self.ctl.charm_dir(m, self.unit)
        host_charm = self.ctl.machine_root(m, ud["machine"]) + charm_dir
        if op["kind"] == "action":
            path_kind, name = "actions", op["name"]
        else:
            path_kind, name = "hooks", op["hook"]
        exe, problem = discover(host_charm, path_kind, name, charm_dir)
        self.ctl.register_context(ctx)
        timeout = duration(m, "sandbox-hook-timeout")
        try:
            if problem:
                result = host.Result(1, b"", problem.encode())
            elif exe is None:
                result = None
            else:
                mid, pid = ctx.machine
                with self.ctl.machine_lock(m, mid):
                    result = host.run_in(pid, [exe], ctx.env, cwd=charm_dir, timeout=timeout)
        finally:
            self.ctl.unregister_context(ctx)
        self.finish(ctx, op, result, exe)

    def finish(self, ctx, op, result, exe):
        m = self.model
        if self.ctl.stopping.is_set():
            return  # killed by the controller's shutdown: runs again after restart (1.3)
        dead = self.record(ctx, op, result, exe)
        if dead:
            self.ctl.unit_dead(m, self.unit)

    def record(self, ctx, op, result, exe):
        """Commit or record the failure under the lock; True when the unit is now dead."""
        m = self.model
        tag = unit_tag(self.unit)
        with m.cond:
            ud = m.unit(self.unit)
            if ud is None:
                return False
            if op["kind"] == "action":
                self.finish_action(ctx, op, result, exe)
                m.set_unit_status(self.unit, "agent", "idle")
                m.changed()
                return False
            hook = op["hook"]
            if result is not None:
                log_output(m, self.unit, hook, result)
            if result is None:
                m.log(tag, "INFO", "juju.worker.uniter.operation", f'skipped "{hook}" hook (missing)')
                ok, why = ctx.commit()
            elif result.code == 0:
                ok, why = ctx.commit()
                if ok:
                    via = "hook dispatching script: dispatch" if exe.endswith("/dispatch") else exe
                    m.log(tag, "INFO", "juju.worker.uniter.operation",
                          f'ran "{hook}" hook (via {via})')
            else:
                ok = False
                why = "timed out" if result.timed_out else f"exit status {result.code}"
            if ok:
                self.mark_done(ud, op)
                ud["error"] = None
                if ud["life"] != "dead":
                    m.set_unit_status(self.unit, "agent", "idle")
            elif ud["life"] != "alive" and ud.get("force"):
                m.log(tag, "WARNING", "juju.worker.uniter.operation",
                      f'hook "{hook}" failed ({why}); removal is forced, skipping it')
                ud["life"] = "dead"
            else:
                m.log(tag, "ERROR", "juju.worker.uniter.operation",
                      f'hook "{hook}" (via {exe}) failed: {why}')
                attempts = (ud["error"] or {}).get("attempts", 0) + 1 if op.get("retry") else 1
                delay = min(RETRY_FIRST * (2 ** (attempts - 1)), RETRY_MAX)
                clean = {k: v for k, v in op.items() if k != "retry"}
                ud["error"] = {"op": clean, "attempts": attempts, "retry_at": now() + delay,
                               "hook": hook, "since": now()}
                # juju status shows the error on the workload; the agent is idle (5.7)
                m.set_unit_status(self.unit, "agent", "idle")
            m.changed()
            return ud["life"] == "dead"

    def mark_done(self, ud, op):
        """Record that op ran (or was skipped): the resolver's bookkeeping."""
        m = self.model
        hook = op["hook"]
        rid = op.get("rel")
        rs = ud["relations"].get(str(rid)) if rid is not None else None
        if hook == "install":
            ud["installed"] = True
        elif hook == "leader-elected":
            ud["leader_seen"] = True
        elif hook == "leader-settings-changed":
            ud["leader_version_seen"] = op["version"]
        elif hook == "config-changed":
            ud["config_version_seen"] = op["version"]
            if not ud["started"]:
                ud["start_queued"] = True
        elif hook == "start":
            ud["started"] = True
            ud["start_queued"] = False
            ud["last_update_status"] = now()
            if not ud.get("workload_set"):
                ud["workload"] = status("unknown", "")
        elif hook == "upgrade-charm":
            # config-changed follows upgrade-charm (juju.md 5.2)
            ud["charm_rev"] = op["charm_rev"]
            ud["config_version_seen"] = -1
        elif hook == "update-status":
            ud["last_update_status"] = now()
        elif hook == "stop":
            ud["stopped"] = True
        elif hook == "remove":
            ud["life"] = "dead"
            ud["workload"] = status("terminated", "")
        elif hook.startswith("secret-"):
            secretstore.mark_secret_hook(m, self.unit, op)
        elif hook.endswith("-relation-created"):
            pass  # recorded when the context was prepared
        elif rs is not None:
            rel = m.relation(rid)
            if hook.endswith("-relation-joined"):
                rs["joined"][op["remote_unit"]] = op["version"]
                rs["changed_owed"] = op["remote_unit"]
            elif hook.endswith("-relation-changed"):
                if op.get("remote_unit"):
                    if op["remote_unit"] in rs["joined"]:
                        rs["joined"][op["remote_unit"]] = op["version"]
                    if rs["changed_owed"] == op["remote_unit"]:
                        rs["changed_owed"] = None
                else:
                    rs["app_version_seen"] = op["app_version"]
            elif hook.endswith("-relation-departed"):
                rs["joined"].pop(op["remote_unit"], None)
                if rs["changed_owed"] == op["remote_unit"]:
                    rs["changed_owed"] = None
            elif hook.endswith("-relation-broken"):
                ud["relations"].pop(str(rid), None)
                if rel is not None:
                    self.ctl.maybe_drop_relation(m, rid)

    def finish_action(self, ctx, op, result, exe):
        m = self.model
        task = m.d["tasks"][op["task"]]
        res = dict(ctx.action_results)
        if exe is None and result is None:
            task["status"] = "failed"
            task["message"] = f'action not implemented on unit "{self.unit}"'
        else:
            if result.code == 0:  # like hooks; action-set/log/fail are kept regardless
                ctx.commit()
            res["return-code"] = result.code
            for key, data in (("stdout", result.stdout), ("stderr", result.stderr)):
                if data:
                    try:
                        res[key] = data.decode("utf-8")
                    except UnicodeDecodeError:
                        import base64
                        res[key] = base64.b64encode(data).decode()
                        res[key + "-encoding"] = "base64"
            if ctx.action_failed is not None:
                task["status"] = "failed"
                task["message"] = ctx.action_failed
            elif result.code != 0:
                task["status"] = "failed"
                task["message"] = ("timed out" if result.timed_out
                                   else f"exit status {result.code}")
            else:
                task["status"] = "completed"
        task["results"] = res
        task["log"] = ctx.action_logs
        task["completed"] = now()
        ud = m.unit(self.unit)
        if op["task"] in ud["task_queue"]:
            ud["task_queue"].remove(op["task"])
        m.log(unit_tag(self.unit), "INFO", "juju.worker.uniter.operation",
              f'ran "{op["name"]}" action')

    def run_commands(self, ctx, req):
        """juju-exec / juju exec: bash -s in a hook context, committed whatever the exit code."""
        m = self.model
        mid, pid = ctx.machine
        self.ctl.register_context(ctx)
        try:
            with self.ctl.machine_lock(m, mid):
                result = host.run_in(pid, ["/bin/bash", "-s"],
                                     ctx.env, cwd=self.ctl.charm_dir(m, self.unit),
                                     stdin=req["commands"].encode(),
                                     timeout=req.get("timeout") or duration(m, "sandbox-hook-timeout"))
        finally:
            self.ctl.unregister_context(ctx)
        with m.cond:
            ok, why = ctx.commit()
            if not ok:
                result.stderr += f"ERROR {why}\n".encode()
            ud = m.unit(self.unit)
            if ud is not None:
                m.set_unit_status(self.unit, "agent", "idle")
            m.changed()
        req["result"] = result
        req["done"].set()


def discover(host_charm, kind, name, charm_dir):
    """Juju's discoverHookHandler: (path to run inside the unit, error message)."""
    if not os.path.exists(os.path.join(host_charm, "metadata.yaml")) and \
            not os.path.exists(os.path.join(host_charm, "charmcraft.yaml")):
        return None, "charm missing from disk"
    d = os.path.join(host_charm, "dispatch")
    if os.path.isfile(d) and os.access(d, os.X_OK):
        return charm_dir + "/dispatch", None
    legacy = os.path.join(host_charm, kind, name)
    if os.path.lexists(legacy):
        if not os.access(legacy, os.X_OK):
            return charm_dir + f"/{kind}/{name}", f"fork/exec {charm_dir}/{kind}/{name}: permission denied"
        return charm_dir + f"/{kind}/{name}", None
    return None, None


def log_output(m, unit, hook, result):
    tag = unit_tag(unit)
    for data, level in ((result.stdout, "DEBUG"), (result.stderr, "WARNING")):
        for line in data.decode("utf-8", "replace").splitlines():
            m.log(tag, level, f"unit.{unit}.{hook}", line)


def _unit_sort(u):
    a, n = u.rsplit("/", 1)
    return (a, int(n))
