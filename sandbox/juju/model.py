# A model's state (applications, units, relations, secrets, tasks, machines), kept as one
# JSON document on disk and rewritten atomically after every change; plus time helpers.
import hashlib
import json
import os
import secrets as pysecrets
import threading
import time

JUJU_VERSION = "3.6.11"
XID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"


def now():
    return time.time()


def go_since(ts):
    """Go layout 02 Jan 2006 15:04:05Z07:00 in local time (juju status `since`)."""
    lt = time.localtime(ts)
    off = lt.tm_gmtoff
    tz = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    return time.strftime("%d %b %Y %H:%M:%S", lt) + tz


def rfc3339(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def goal_since(ts):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def new_xid():
    """A 20-character xid-like id (base32hex, as Juju's secret ids look)."""
    raw = int(time.time()).to_bytes(4, "big") + pysecrets.token_bytes(8)
    n = int.from_bytes(raw, "big")
    out = []
    for _ in range(20):
        out.append(XID_ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(out))


def unit_tag(unit):
    return "unit-" + unit.replace("/", "-")


def app_of(unit):
    return unit.rsplit("/", 1)[0]


def status(st, msg="", ts=None):
    return {"status": st, "message": msg, "since": ts if ts is not None else now()}


class Model:
    """One model. All access goes through `lock`; `changed()` wakes the uniters."""

    def __init__(self, path, data):
        self.path = path
        self.d = data
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.log_lock = threading.Lock()

    # ---- persistence -------------------------------------------------------------------
    @classmethod
    def create(cls, root, name, uuid, index, subnet, owner="admin"):
        d = {
            "name": name, "uuid": uuid, "index": index, "subnet": subnet, "owner": owner,
            "created": now(), "life": "alive",
            "config": {},
            "next": {"machine": 0, "relation": 0, "task": 0},
            "apps": {}, "units": {}, "relations": {}, "secrets": {}, "tasks": {},
            "machines": {}, "exec_queue": [],
        }
        path = os.path.join(root, "models", uuid)
        os.makedirs(path, exist_ok=True)
        m = cls(path, d)
        m.save()
        return m

    @classmethod
    def load(cls, path):
        with open(os.path.join(path, "state.json")) as f:
            return cls(path, json.load(f))

    def save(self):
        with self.lock:
            tmp = os.path.join(self.path, "state.json.tmp")
            with open(tmp, "w") as f:
                json.dump(self.d, f, separators=(",", ":"), sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(self.path, "state.json"))

    def changed(self):
        """Persist and wake every uniter of the model."""
        with self.lock:
            self.save()
            self.cond.notify_all()

    # ---- logging -----------------------------------------------------------------------
    def log(self, entity, level, module, message):
        line = f"{entity}: {time.strftime('%H:%M:%S')} {level} {module} {message}"
        with self.log_lock:
            with open(os.path.join(self.path, "debug.log"), "a", encoding="utf-8",
                      errors="replace") as f:
                f.write(line.rstrip("\n").replace("\n", "\n  ") + "\n")

    # ---- lookups -----------------------------------------------------------------------
    @property
    def name(self):
        return self.d["name"]

    @property
    def uuid(self):
        return self.d["uuid"]

    def config_value(self, key, default=None):
        return self.d["config"].get(key, MODEL_CONFIG_DEFAULTS.get(key, default))

    def next_id(self, kind):
        n = self.d["next"][kind]
        self.d["next"][kind] = n + 1
        return n

    def app(self, name):
        return self.d["apps"].get(name)

    def unit(self, name):
        return self.d["units"].get(name)

    def units_of(self, app, alive_only=False):
        out = [u for u, ud in self.d["units"].items() if ud["app"] == app and
               (not alive_only or ud["life"] == "alive")]
        return sorted(out, key=lambda u: int(u.rsplit("/", 1)[1]))

    def relation(self, rid):
        return self.d["relations"].get(str(rid))

    def relations_of(self, app):
        return [r for r in self.d["relations"].values() if any(e["app"] == app for e in r["endpoints"])]

    def local_endpoint(self, rel, app):
        for e in rel["endpoints"]:
            if e["app"] == app:
                return e
        return None

    def remote_endpoint(self, rel, app):
        if rel["peer"]:
            return rel["endpoints"][0]
        for e in rel["endpoints"]:
            if e["app"] != app:
                return e
        return None

    def remote_units(self, rel, unit):
        """Units of the other side currently in scope (for a peer relation: the other peers)."""
        app = app_of(unit)
        remote_app = self.remote_endpoint(rel, app)["app"]
        same_machine = rel.get("container")
        mine = self.d["units"][unit]["machine"] if same_machine else None
        return sorted((u for u in rel["scope"] if app_of(u) == remote_app and u != unit
                       and (not same_machine or self.d["units"][u]["machine"] == mine)),
                      key=lambda u: (app_of(u), int(u.rsplit("/", 1)[1])))

    def address_of(self, unit):
        ud = self.unit(unit)
        if not ud:
            return None
        return self.d["machines"][ud["machine"]]["address"]

    def app_config(self, app):
        """Effective typed config: user settings over defaults (options with a value only)."""
        ad = self.app(app)
        out = {}
        for name, opt in ad["options"].items():
            if name in ad["settings"]:
                out[name] = ad["settings"][name]
            elif opt.get("default") is not None:
                from .charm import default_value
                out[name] = default_value(opt)
        return out

    def relation_key(self, rel):
        eps = sorted(f"{e['app']}:{e['name']}" for e in rel["endpoints"])
        return " ".join(eps)

    def relation_tag(self, rel):
        return "relation-" + self.relation_key(rel).replace(":", ".").replace(" ", "#")

    def is_leader(self, unit):
        ud = self.unit(unit)
        return bool(ud) and self.d["apps"][ud["app"]].get("leader") == unit

    def set_unit_status(self, unit, kind, st, msg=""):
        ud = self.unit(unit)
        cur = ud[kind]
        if cur["status"] != st or cur["message"] != msg:
            ud[kind] = status(st, msg)

    def elect_leader(self, app):
        """Give the app a leader if it has none (lowest-numbered alive unit)."""
        ad = self.app(app)
        leader = ad.get("leader")
        if leader and self.unit(leader) and self.unit(leader)["life"] != "dead":
            return
        alive = self.units_of(app, alive_only=True)
        ad["leader"] = alive[0] if alive else None
        ad["leader_version"] += 1
        if ad["leader"]:
            ud = self.unit(ad["leader"])
            ud["leader_seen"] = False
            ud["leader_version_seen"] = ad["leader_version"]
            self.log(unit_tag(ad["leader"]), "INFO", "juju.worker.leadership",
                     f"{ad['leader']} promoted to leadership of {app}")


MODEL_CONFIG_DEFAULTS = {
    "update-status-hook-interval": "5m",
    "automatically-retry-hooks": True,
    "sandbox-hook-timeout": "30m",
    "default-base": "ubuntu@24.04",
    "logging-config": "<root>=INFO",
}


def config_hash(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
