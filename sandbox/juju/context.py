# A hook, action or juju-exec context: Juju's environment for the process, the buffer of
# transactional writes (relation data, ports, state, secrets) and the commit that applies them.
import secrets as pysecrets

from . import host, secretstore
from .model import JUJU_VERSION, app_of, unit_tag


class HookContext:
    def __init__(self, controller, model, unit, op):
        self.ctl = controller
        self.model = model
        self.unit = unit
        self.app = app_of(unit)
        self.op = op
        self.kind = op["kind"]
        if self.kind == "action":
            task = model.d["tasks"][op["task"]]
            self.task = task
            name = task["name"]
        elif self.kind == "run":
            self.task = None
            name = "run-commands"
        else:
            self.task = None
            name = op["hook"]
        self.id = f"{unit}-{name}-{pysecrets.randbits(63)}"
        self.hook = op.get("hook", "") if self.kind == "hook" else ""
        req = op.get("req") or {}
        self.rel_id = op.get("rel", req.get("relation"))
        self.remote_unit = op.get("remote_unit", req.get("remote_unit")) or ""
        self.remote_app = op.get("remote_app", req.get("remote_app")) or ""
        if self.rel_id is not None and not self.remote_app:
            rel = model.relation(self.rel_id)
            if rel:
                self.remote_app = model.remote_endpoint(rel, self.app)["app"]
        self.departing = op.get("departing", "")
        # buffered writes
        self.rel_writes = {}      # rid -> {"unit": {k: v|None}, "app": {k: v|None}}
        self.port_ops = []        # ("open"|"close", port-dict)
        self.state_writes = {}    # key -> value|None
        self.secret_ops = []      # see secretstore.apply
        self.secret_added = {}    # xid -> pending secret record (visible in this context)
        self.cache = {}           # remote reads, consistent for the whole hook
        self.leader = None        # once seen non-leader, stays non-leader
        # actions
        self.action_results = {}
        self.action_logs = []
        self.action_failed = None

    # ---- environment (juju.md section 2) ---------------------------------------------------
    def environ(self):
        m = self.model
        ud = m.unit(self.unit)
        machine = m.d["machines"][ud["machine"]]
        tag = unit_tag(self.unit)
        charm_dir = self.ctl.charm_dir(m, self.unit)
        env = {
            "CHARM_DIR": charm_dir, "JUJU_CHARM_DIR": charm_dir,
            "JUJU_CONTEXT_ID": self.id,
            "JUJU_HOOK_NAME": self.hook,
            "JUJU_AGENT_SOCKET_ADDRESS": f"/var/lib/juju/agents/{tag}/agent.socket",
            "JUJU_AGENT_SOCKET_NETWORK": "unix",
            "JUJU_UNIT_NAME": self.unit,
            "JUJU_MODEL_UUID": m.uuid, "JUJU_MODEL_NAME": m.name,
            "JUJU_API_ADDRESSES": f"{machine['gateway']}:17070",
            "JUJU_MACHINE_ID": ud["machine"],
            "JUJU_PRINCIPAL_UNIT": ud.get("principal") or "",
            "JUJU_AVAILABILITY_ZONE": "",
            "JUJU_VERSION": JUJU_VERSION,
            "JUJU_SLA": "unsupported",
            "CLOUD_API_VERSION": "",
            "JUJU_CHARM_HTTP_PROXY": "", "JUJU_CHARM_HTTPS_PROXY": "",
            "JUJU_CHARM_FTP_PROXY": "", "JUJU_CHARM_NO_PROXY": "",
            "PATH": f"/var/lib/juju/tools/{tag}:{host.AGENT_PATH}",
            "APT_LISTCHANGES_FRONTEND": "none", "DEBIAN_FRONTEND": "noninteractive",
            "LANG": "C.UTF-8", "TERM": "tmux-256color",
        }
        if self.kind == "hook":
            env["JUJU_DISPATCH_PATH"] = f"hooks/{self.hook}"
        elif self.kind == "action":
            env["JUJU_DISPATCH_PATH"] = f"actions/{self.task['name']}"
            env["JUJU_ACTION_NAME"] = self.task["name"]
            env["JUJU_ACTION_UUID"] = self.task["id"]
            env["JUJU_ACTION_TAG"] = f"action-{self.task['id']}"
        if self.rel_id is not None:
            rel = m.relation(self.rel_id)
            ep = m.local_endpoint(rel, self.app)["name"] if rel else self.op.get("endpoint", "")
            env["JUJU_RELATION"] = ep
            env["JUJU_RELATION_ID"] = f"{ep}:{self.rel_id}"
            env["JUJU_REMOTE_APP"] = self.remote_app
            env["JUJU_REMOTE_UNIT"] = self.remote_unit
            if self.hook.endswith("-relation-departed"):
                env["JUJU_DEPARTING_UNIT"] = self.departing
        sec = self.op.get("secret")
        if sec:
            env["JUJU_SECRET_ID"] = sec["uri"]
            env["JUJU_SECRET_LABEL"] = sec.get("label") or ""
            if "revision" in sec:
                env["JUJU_SECRET_REVISION"] = str(sec["revision"])
        return env

    # ---- leadership ------------------------------------------------------------------------
    def is_leader(self):
        if self.leader is False:
            return False
        self.leader = self.model.is_leader(self.unit)
        return self.leader

    # ---- relation data ---------------------------------------------------------------------
    def own_unit_data(self, rid):
        return self._own_data(rid, "unit_data", self.unit, "unit")

    def own_app_data(self, rid):
        return self._own_data(rid, "app_data", self.app, "app")

    def _own_data(self, rid, bag, entity, kind):
        """Committed data overlaid with this context's pending writes (read-your-writes)."""
        rel = self.model.relation(rid)
        data = dict(rel[bag].get(entity, {})) if rel else {}
        for k, v in self.rel_writes.get(rid, {}).get(kind, {}).items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        return data

    def remote_data(self, rid, entity, is_app):
        key = (rid, entity, is_app)
        if key not in self.cache:
            rel = self.model.relation(rid)
            src = rel["app_data"] if is_app else rel["unit_data"]
            self.cache[key] = dict(src.get(entity, {}))
        return dict(self.cache[key])

    def set_relation(self, rid, is_app, values):
        w = self.rel_writes.setdefault(rid, {"unit": {}, "app": {}})
        w["app" if is_app else "unit"].update(values)

    # ---- commit ----------------------------------------------------------------------------
    def commit(self):
        """Apply buffered writes (called under the model lock). Returns (ok, reason)."""
        m = self.model
        ud = m.unit(self.unit)
        if ud is None:
            return True, ""
        ok, why = secretstore.validate(m, self, self.secret_ops)
        if not ok:
            return False, why
        for rid, w in self.rel_writes.items():
            rel = m.relation(rid)
            if rel is None:
                continue
            if w["unit"]:
                data = rel["unit_data"].setdefault(self.unit, {})
                if _apply(data, w["unit"]):
                    rel["unit_version"][self.unit] = rel["unit_version"].get(self.unit, 0) + 1
            if w["app"]:
                data = rel["app_data"].setdefault(self.app, {})
                if _apply(data, w["app"]):
                    v = rel["app_version"].get(self.app, 0) + 1
                    rel["app_version"][self.app] = v
                    if rel["peer"]:  # a unit never gets relation-changed for its own writes
                        rs = ud["relations"].get(str(rid))
                        if rs is not None:
                            rs["app_version_seen"] = v
        for action, port in self.port_ops:
            ports = ud["ports"]
            same = [p for p in ports if p["from"] == port["from"] and p["to"] == port["to"]
                    and p["proto"] == port["proto"]]
            if action == "open":
                if same:
                    same[0]["endpoints"] = port["endpoints"]
                else:
                    ports.append(port)
            else:
                for p in same:
                    ports.remove(p)
        for k, v in self.state_writes.items():
            if v is None:
                ud["state"].pop(k, None)
            else:
                ud["state"][k] = v
        secretstore.apply(m, self, self.secret_ops)
        return True, ""


def _apply(data, writes):
    changed = False
    for k, v in writes.items():
        if v is None or v == "":
            if k in data:
                del data[k]
                changed = True
        elif data.get(k) != v:
            data[k] = v
            changed = True
    return changed

