# The local controller daemon: owns every model, provisions unit machines, runs one uniter
# per unit and answers the juju CLI, hook tools (agent.socket) and juju-exec (run.socket).
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid as uuidlib

from . import host, hooktools, wire
from .model import Model, app_of, now, status, unit_tag
from .uniter import Uniter


def ctl_id(root):
    return hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:4]


class Controller:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.id = ctl_id(self.root)
        self.lock = threading.RLock()
        self.models = {}        # uuid -> Model
        self.uniters = {}       # (uuid, unit) -> Uniter
        self.contexts = {}      # context id -> HookContext
        self.machine_locks = {}
        self.servers = {}       # socket path -> listening socket
        self.stopping = threading.Event()
        self.meta_path = os.path.join(self.root, "controller.json")
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                self.meta = json.load(f)
        else:
            self.meta = {"models": {}, "current": None, "next_index": 0,
                         "uuid": str(uuidlib.uuid4()), "created": now()}
            self.save_meta()

    def save_meta(self):
        with self.lock:
            tmp = self.meta_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.meta, f, indent=1, sort_keys=True)
            os.replace(tmp, self.meta_path)

    # ---- start-up -----------------------------------------------------------------------------
    def start(self):
        host.check_prerequisites()
        for name, uuid in sorted(self.meta["models"].items()):
            path = os.path.join(self.root, "models", uuid)
            try:
                m = Model.load(path)
            except (OSError, ValueError) as e:
                print(f"cannot load model {name}: {e}", file=sys.stderr)
                continue
            self.models[uuid] = m
            self.resume_model(m)
        self.listen(os.path.join(self.root, "controller.sock"), self.handle_cli)

    def resume_model(self, m):
        """After a controller restart: keep live machines, reboot dead ones, restart uniters."""
        with m.lock:
            host.create_bridge(self.bridge_name(m), m.d["subnet"])
            for mid, mach in m.d["machines"].items():
                if host.init_alive(mach.get("pid"), mach.get("start_time")):
                    self.listen_machine(m, mid)
                else:
                    mach["ready"] = False
                    threading.Thread(target=self.provision, args=(m, mid), daemon=True).start()
            for unit, ud in m.d["units"].items():
                if ud["life"] == "dead":
                    threading.Thread(target=self.unit_dead, args=(m, unit), daemon=True).start()
                    continue
                if ud["agent"]["status"] == "executing":
                    ud["agent"] = status("idle", "")
                for tid in ud["task_queue"]:
                    task = m.d["tasks"][tid]
                    if task["status"] == "running":  # interrupted: run it again
                        task["status"] = "pending"
                self.start_uniter(m, unit)
            m.changed()

    # ---- naming -------------------------------------------------------------------------------
    def bridge_name(self, m):
        return f"js{self.id}b{m.d['index']}"

    def netns_name(self, m, mid):
        return f"js{self.id}-{m.d['index']}-{mid}"

    def veth_name(self, m, mid):
        return f"js{self.id}{m.d['index']}v{mid}"

    def machine_root(self, m, mid):
        return os.path.join(m.path, "machines", str(mid), "fs")

    def charm_dir(self, m, unit):
        return f"/var/lib/juju/agents/{unit_tag(unit)}/charm"

    def host_path(self, m, unit, path):
        path = os.path.normpath(path)
        ud = m.unit(unit)
        if path == "/proc" or path.startswith("/proc/"):
            # The unit's own /proc (its PID namespace), as a real unit agent on the same
            # machine sees it: /proc/<pid>/fd/<n> of a unit process is a file path too.
            return f"/proc/{self.machine_pid(m, ud['machine'])}/root{path}"
        for d in host.PRIVATE_DIRS:
            if path == d or path.startswith(d + "/"):
                return self.machine_root(m, ud["machine"]) + path
        return path

    def machine_pid(self, m, mid):
        return m.d["machines"][mid]["pid"]

    def machine_lock(self, m, mid):
        with self.lock:
            key = (m.uuid, mid)
            if key not in self.machine_locks:
                self.machine_locks[key] = threading.Lock()
            return self.machine_locks[key]

    # ---- machines -----------------------------------------------------------------------------
    def add_machine(self, m, unit):
        """Allocate a machine record for a new unit (under the model lock) and provision it."""
        mid = str(m.next_id("machine"))
        net = m.d["subnet"]
        base = net.rsplit(".", 1)[0]
        octet = 10 + int(mid)
        if octet > 254:
            raise ValueError("the local model supports at most 245 machines per model")
        digest = hashlib.sha256(f"{m.uuid}/{mid}".encode()).digest()
        mac = "00:16:3e:" + ":".join(f"{b:02x}" for b in digest[:3])
        m.d["machines"][mid] = {
            "id": mid, "units": [unit], "address": f"{base}.{octet}", "gateway": f"{base}.1",
            "mac": mac, "hostname": f"juju-{m.uuid[-6:]}-{mid}", "ready": False, "pid": None,
            "start_time": None, "created": now(), "status": status("pending", ""),
        }
        threading.Thread(target=self.provision, args=(m, mid), daemon=True).start()
        return mid

    def machine_down(self, m, mid):
        """The machine's init died (a crash): reboot it, as a cloud would restart it."""
        mach = m.d["machines"].get(mid)
        if not mach or not mach.get("ready"):
            return
        mach["ready"] = False
        mach["status"] = status("down", "agent is not communicating with the server")
        m.log(f"machine-{mid}", "WARNING", "juju.worker.provisioner",
              f"machine {mid} is down; restarting it")
        for unit in mach["units"]:
            ud = m.unit(unit)
            if ud and ud["started"]:
                ud["start_queued"] = True  # start runs again after a reboot
        m.changed()
        threading.Thread(target=self.provision, args=(m, mid), daemon=True).start()

    def hosts_text(self, m):
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        for mach in m.d["machines"].values():
            lines.append(f"{mach['address']} {mach['hostname']}")
        return "\n".join(lines) + "\n"

    def refresh_hosts(self, m):
        text = self.hosts_text(m)
        for mid in m.d["machines"]:
            root = self.machine_root(m, mid)
            if os.path.exists(root + "/etc"):
                host.write_hosts(root, text)

    def provision(self, m, mid):
        try:
            with m.lock:
                mach = m.d["machines"][mid]
                tags = [unit_tag(u) for u in mach["units"]]
                root = self.machine_root(m, mid)
                host.prepare_fs(root, tags, mach["hostname"], self.hosts_text(m))
                self.refresh_hosts(m)
                for u in mach["units"]:
                    self.install_charm(m, u)
            host.create_netns(self.netns_name(m, mid), self.bridge_name(m),
                              self.veth_name(m, mid), mach["address"], m.d["subnet"], mach["mac"])
            pid, start = host.start_init(self.netns_name(m, mid), mach["hostname"], root)
            with m.lock:
                mach = m.d["machines"].get(mid)
                if mach is None:  # removed while we were provisioning
                    host.stop_init(pid, start)
                    return
                mach.update(pid=pid, start_time=start, ready=True,
                            status=status("running", "Running"))
                self.listen_machine(m, mid)
                m.changed()
        except Exception as e:
            traceback.print_exc()
            with m.lock:
                mach = m.d["machines"].get(mid)
                if mach:
                    mach["status"] = status("provisioning error", str(e))
                    m.changed()

    def install_charm(self, m, unit):
        """Copy the application's charm into the unit's charm directory (keeps modes)."""
        import shutil
        ud = m.unit(unit)
        ad = m.app(ud["app"])
        dest = self.machine_root(m, ud["machine"]) + self.charm_dir(m, unit)
        if os.path.exists(os.path.join(dest, ".sandbox-charm-rev")):
            with open(os.path.join(dest, ".sandbox-charm-rev")) as f:
                if f.read().strip() == str(ad["charm_rev"]):
                    return
        os.makedirs(os.path.dirname(dest), exist_ok=True)

        def replace_file(src, dst):
            # Like Juju's deployer: a new file is renamed over the old one, so a program
            # running from the charm directory keeps its (old) file and nothing is busy.
            tmp = dst + ".sandbox-new"
            shutil.copy2(src, tmp, follow_symlinks=False)
            os.replace(tmp, dst)
        shutil.copytree(ad["charm_store"], dest, symlinks=True, dirs_exist_ok=True,
                        copy_function=replace_file)
        with open(os.path.join(dest, ".sandbox-charm-rev"), "w") as f:
            f.write(str(ad["charm_rev"]))

    def listen_machine(self, m, mid):
        root = self.machine_root(m, mid)
        for unit in m.d["machines"][mid]["units"]:
            tag = unit_tag(unit)
            d = f"{root}/var/lib/juju/agents/{tag}"
            os.makedirs(d, exist_ok=True)
            self.listen(f"{d}/agent.socket", self.handle_tool, m, unit)
            self.listen(f"{d}/run.socket", self.handle_exec, m, unit)

    def destroy_machine(self, m, mid):
        mach = m.d["machines"].get(mid)
        if not mach:
            return
        root = self.machine_root(m, mid)
        for unit in mach["units"]:
            d = f"{root}/var/lib/juju/agents/{unit_tag(unit)}"
            self.unlisten(f"{d}/agent.socket")
            self.unlisten(f"{d}/run.socket")
        host.stop_init(mach.get("pid"), mach.get("start_time"))
        host.delete_netns(self.netns_name(m, mid), self.veth_name(m, mid))
        host.remove_tree(os.path.dirname(root))
        with m.lock:
            m.d["machines"].pop(mid, None)
            self.refresh_hosts(m)
            m.changed()

    # ---- units --------------------------------------------------------------------------------
    def new_unit_record(self, m, app, n, mid):
        t = now()
        return {
            "app": app, "n": n, "machine": mid, "life": "alive", "created": t,
            "installed": False, "started": False, "stopped": False, "start_queued": False,
            "workload": status("waiting", "agent initialising", t),
            "agent": status("allocating", "", t), "workload_set": False,
            "ports": [], "state": {}, "leader_seen": False, "leader_version_seen": -1,
            "config_version_seen": -1, "relations": {}, "error": None,
            "last_update_status": t, "task_queue": [], "charm_rev": m.app(app)["charm_rev"],
        }

    def start_uniter(self, m, unit):
        key = (m.uuid, unit)
        with self.lock:
            if key in self.uniters and self.uniters[key].thread.is_alive():
                return
            u = Uniter(self, m, unit)
            self.uniters[key] = u
        u.start()

    def enter_relation(self, m, unit, rel):
        """The unit enters the relation's scope (as it starts relation-created)."""
        ud = m.unit(unit)
        rid = str(rel["id"])
        if rid not in ud["relations"]:
            ud["relations"][rid] = {"joined": {}, "app_version_seen": 0, "changed_owed": None}
        addr = m.address_of(unit)
        data = rel["unit_data"].setdefault(unit, {})
        data.update({"private-address": addr, "ingress-address": addr,
                     "egress-subnets": f"{addr}/32"})
        rel["unit_version"].setdefault(unit, 0)
        if unit not in rel["scope"] and ud["life"] == "alive":
            rel["scope"].append(unit)
            if rel.get("container") and not ud.get("principal"):
                self.ensure_subordinate(m, unit, rel)

    def ensure_subordinate(self, m, principal, rel):
        """A principal entering a container-scoped relation gets a unit of the subordinate."""
        sub_app = m.remote_endpoint(rel, app_of(principal))["app"]
        sad = m.app(sub_app)
        if sad is None or not sad["subordinate"] or sad["life"] != "alive":
            return
        pud = m.unit(principal)
        if any(m.unit(u)["machine"] == pud["machine"] for u in m.units_of(sub_app)):
            return
        n = sad["next_unit"]
        sad["next_unit"] += 1
        unit = f"{sub_app}/{n}"
        ud = self.new_unit_record(m, sub_app, n, pud["machine"])
        ud["principal"] = principal
        m.d["units"][unit] = ud
        mach = m.d["machines"][pud["machine"]]
        mach["units"].append(unit)
        if mach.get("ready"):
            root = self.machine_root(m, pud["machine"])
            host.add_unit_tools(root, unit_tag(unit))
            self.install_charm(m, unit)
            self.listen_machine(m, pud["machine"])
        m.elect_leader(sub_app)
        self.start_uniter(m, unit)

    def subordinates_of(self, m, principal):
        return [u for u, ud in m.d["units"].items() if ud.get("principal") == principal]

    def leave_scope(self, m, unit):
        for rel in m.d["relations"].values():
            if unit in rel["scope"]:
                rel["scope"].remove(unit)

    def maybe_drop_relation(self, m, rid):
        from . import secretstore
        rel = m.relation(rid)
        if rel is None or rel["life"] == "alive":
            return
        for ud in m.d["units"].values():
            if str(rid) in ud["relations"]:
                return
        del m.d["relations"][str(rid)]
        secretstore.relation_removed(m, rid)

    def unit_dead(self, m, unit):
        key = (m.uuid, unit)
        with self.lock:
            u = self.uniters.pop(key, None)
        if u:
            u.stop()
            u.abandon()
        with m.lock:
            ud = m.unit(unit)
            if ud is None:
                return
            mid = ud["machine"]
            mach = m.d["machines"].get(mid)
            others = [x for x in (mach or {}).get("units", []) if x != unit]
            if others:
                root = self.machine_root(m, mid)
                d = f"{root}/var/lib/juju/agents/{unit_tag(unit)}"
                self.unlisten(f"{d}/agent.socket")
                self.unlisten(f"{d}/run.socket")
        if not others:
            self.destroy_machine(m, mid)
        with m.lock:
            m.d["units"].pop(unit, None)
            if mach and others:
                mach["units"] = others
            for rel in m.d["relations"].values():
                if unit in rel["scope"]:
                    rel["scope"].remove(unit)
            for rec in m.d["secrets"].values():
                rec["consumers"].pop(unit, None)
                rec["peer_seen"].pop(unit, None)
            app = app_of(unit)
            ad = m.app(app)
            if ad and ad["life"] != "alive" and not m.units_of(app):
                self.drop_app(m, app)
            elif ad:
                # the lease stays with a dying leader until its unit is gone (5.5)
                m.elect_leader(app)
            m.changed()

    def drop_app(self, m, app):
        import shutil
        ad = m.d["apps"].pop(app, None)
        for rid, rel in list(m.d["relations"].items()):
            if any(e["app"] == app for e in rel["endpoints"]):
                rel["life"] = "dying"
                self.maybe_drop_relation(m, rid)
        for xid, rec in list(m.d["secrets"].items()):
            if (rec["owner_kind"] == "application" and rec["owner"] == app) or \
                    (rec["owner_kind"] == "unit" and app_of(rec["owner"]) == app):
                del m.d["secrets"][xid]
        if ad:
            shutil.rmtree(ad["charm_store"], ignore_errors=True)

    # ---- contexts -----------------------------------------------------------------------------
    def register_context(self, ctx):
        with self.lock:
            self.contexts[ctx.id] = ctx

    def unregister_context(self, ctx):
        with self.lock:
            self.contexts.pop(ctx.id, None)

    # ---- sockets ------------------------------------------------------------------------------
    def listen(self, path, handler, *extra):
        with self.lock:
            if path in self.servers:
                return
            if os.path.lexists(path):
                os.unlink(path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # sun_path holds 108 bytes; state paths can be longer, so bind through a
            # directory descriptor: /proc/self/fd/N/<name> is always short
            dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
            try:
                s.bind(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
            finally:
                os.close(dfd)
            os.chmod(path, 0o600)
            s.listen(64)
            self.servers[path] = s
        threading.Thread(target=self.accept_loop, args=(s, handler, extra), daemon=True).start()

    def unlisten(self, path):
        with self.lock:
            s = self.servers.pop(path, None)
        if s:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            try:
                os.unlink(path)
            except OSError:
                pass

    def accept_loop(self, s, handler, extra):
        while not self.stopping.is_set():
            try:
                conn, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self.serve_conn, args=(conn, handler, extra),
                             daemon=True).start()

    def serve_conn(self, conn, handler, extra):
        try:
            with conn:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                uid = int.from_bytes(creds[4:8], "little")
                if uid != 0:
                    conn.sendall(wire.encode_response(1, b"", b"ERROR permission denied\n"))
                    return
                req = wire.read_request(conn)
                code, out, err, flags = handler(req, conn, *extra)
                conn.sendall(wire.encode_response(code, out, err, flags))
        except (wire.WireError, OSError):
            pass
        except Exception:
            traceback.print_exc()

    def handle_tool(self, req, conn, m, unit):
        with self.lock:
            ctx = self.contexts.get(req.context_id)
        if ctx is None or ctx.unit != unit or ctx.model is not m:
            return 1, b"", (f'ERROR bad request: expected context id for unit {unit}, '
                            f'got "{req.context_id}"\n').encode(), 0
        code, out, err, need = hooktools.run_tool(self, ctx, req.command, req.args, req.cwd,
                                                  req.stdin if req.has_stdin else None)
        if need:
            return 0, b"", b"", wire.NEED_STDIN
        return code, out.encode("utf-8", "surrogateescape"), err.encode(), 0

    def handle_exec(self, req, conn, m, unit):
        from . import execrun
        return execrun.juju_exec(self, m, unit, req)

    def handle_cli(self, req, conn):
        from . import cli
        return cli.dispatch(self, req)

    # ---- models -------------------------------------------------------------------------------
    def model_by_name(self, name):
        uuid = self.meta["models"].get(name)
        return self.models.get(uuid) if uuid else None

    def add_model(self, name):
        with self.lock:
            index = self.meta["next_index"]
            self.meta["next_index"] += 1
            taken = {mm.d["subnet"] for mm in self.models.values()}
            subnet = host.pick_subnet(taken)
            m = Model.create(self.root, name, str(uuidlib.uuid4()), index, subnet)
            host.create_bridge(self.bridge_name(m), subnet)
            self.models[m.uuid] = m
            self.meta["models"][name] = m.uuid
            self.meta["current"] = name
            self.save_meta()
            return m

    def destroy_model(self, m, timeout=120.0):
        """Remove every application (hooks run), then force what is left, then the bridge."""
        import shutil
        with m.lock:
            m.d["life"] = "dying"
            for app in list(m.d["apps"]):
                self.remove_application(m, app, force=True)
            m.changed()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with m.lock:
                if not m.d["units"]:
                    break
            time.sleep(0.1)
        with self.lock:
            for key in [k for k in self.uniters if k[0] == m.uuid]:
                self.uniters.pop(key).stop()
        for mid in list(m.d["machines"]):
            self.destroy_machine(m, mid)
        host.delete_bridge(self.bridge_name(m))
        with self.lock:
            self.models.pop(m.uuid, None)
            self.meta["models"].pop(m.name, None)
            if self.meta["current"] == m.name:
                self.meta["current"] = None
            self.save_meta()
        shutil.rmtree(m.path, ignore_errors=True)

    def remove_application(self, m, app, force=False):
        ad = m.app(app)
        ad["life"] = "dying"
        for rel in m.relations_of(app):
            rel["life"] = "dying"
        for unit in m.units_of(app):
            self.remove_unit(m, unit, force)
        if not m.units_of(app):
            self.drop_app(m, app)

    def remove_unit(self, m, unit, force=False):
        ud = m.unit(unit)
        if force:
            ud["force"] = True
        if ud["life"] == "dead":
            return
        for sub in self.subordinates_of(m, unit):  # subordinates go with their principal
            self.remove_unit(m, sub, force)
        if ud["life"] == "alive":
            ud["life"] = "dying"
            self.leave_scope(m, unit)
        stuck = force and ud.get("error")
        never_ran = not m.d["machines"].get(ud["machine"], {}).get("ready") and not ud["installed"]
        if stuck or never_ran:
            ud["life"] = "dead"
            threading.Thread(target=self.unit_dead, args=(m, unit), daemon=True).start()

    # ---- shutdown -----------------------------------------------------------------------------
    def shutdown(self):
        self.stopping.set()
        for u in list(self.uniters.values()):
            u.stop()
        host.kill_running()
        for path in list(self.servers):
            self.unlisten(path)


def main():
    root = sys.argv[1]
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o700)  # model state holds secret content, like Juju's database
    ctl = Controller(root)
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ctl.start()
    except host.HostError as e:
        print(f"ERROR {e}", file=sys.stderr)
        sys.exit(1)
    with open(os.path.join(root, "controller.pid"), "w") as f:
        f.write(str(os.getpid()))
    print("ready", flush=True)
    ctl.kill_requested = done
    while not done.wait(1.0):
        pass
    ctl.shutdown()
    try:
        os.unlink(os.path.join(root, "controller.pid"))
    except OSError:
        pass


if __name__ == "__main__":
    main()
