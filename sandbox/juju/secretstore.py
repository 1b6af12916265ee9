# Juju secrets (juju.md section 4): owners and consumers, revision tracking, labels,
# relation-scoped grants, and when secret-changed/rotate/expired/remove hooks are owed.
import base64
import re

from .flags import yaml_map
from .model import app_of, now, rfc3339, unit_tag

ROTATE_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400,
                  "quarterly": 90 * 86400, "yearly": 365 * 86400}
REFIRE = 300.0
KEY_RE = re.compile(r"^([a-z](?:-?[a-z0-9]){2,})$")
MAX_CONTENT = 1024 * 1024


class SecretError(Exception):
    """message is what follows `ERROR `; code is the exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def parse_uri(s):
    """Accept secret:<xid>, secret://<model>/<xid> or a bare xid; return the xid."""
    if s.startswith("secret://"):
        xid = s[len("secret://"):].split("/")[-1]
    elif s.startswith("secret:"):
        xid = s[len("secret:"):]
    else:
        xid = s
    if len(xid) != 20 or not all(c in "0123456789abcdefghijklmnopqrstuv" for c in xid):
        raise SecretError(f'secret URI "{s}" not valid', 2)
    return xid


def file_pairs(text):
    """A --file YAML map of secret content, as key=value items (keys may carry #base64)."""
    try:
        data = yaml_map(text, "secret file")
    except ValueError as e:
        raise SecretError(str(e)) from None
    return [f"{k}={v}" for k, v in data.items()]


def parse_content(pairs, read_value_file):
    """key=value | key#base64=<b64> | key#file=<path> items -> {key: base64 value}.

    read_value_file(path) returns the bytes of a #file value. Usage errors exit 2.
    """
    content = {}
    for item in pairs:
        if "=" not in item:
            raise SecretError(f'key value "{item}" not valid', 2)
        k, v = item.split("=", 1)
        if k.endswith("#base64"):
            k = k[:-7]
            try:
                base64.b64decode(v, validate=True)
            except ValueError:
                raise SecretError(f'base64 value for key "{k}" not valid', 2) from None
        elif k.endswith("#file"):
            k = k[:-5]
            v = base64.b64encode(read_value_file(v)).decode()
        else:
            if v == "":
                raise SecretError("empty secret value", 2)
            v = base64.b64encode(v.encode()).decode()
        if not KEY_RE.match(k):
            raise SecretError(f'key "{k}" not valid', 2)
        content[k] = v
    if sum(len(v) for v in content.values()) > MAX_CONTENT:
        raise SecretError("secret content too large")
    return content


def access_list(m, rec):
    out = []
    for g in rec["grants"]:
        rel = m.relation(g["rel"]) if g.get("rel") is not None else None
        target = ("application-" + g["target"]) if g["kind"] == "app" else unit_tag(g["target"])
        scope = m.relation_tag(rel) if rel else f"model-{m.uuid}"
        out.append({"target": target, "scope": scope, "role": g["role"]})
    return out


def metadata(m, rec, expiry_key):
    """Fields shared by secret-info-get and juju show-secret (empty ones omitted)."""
    info = {}
    for key in ("label", "description"):
        if rec.get(key):
            info[key] = rec[key]
    if rec.get("rotate") and rec["rotate"] != "never":
        info["rotation"] = rec["rotate"]
        if rec.get("next_rotate"):
            info["rotates"] = rfc3339(rec["next_rotate"])
    exp = rec["revisions"].get(str(rec["latest"]), {}).get("expire")
    if exp:
        info[expiry_key] = rfc3339(exp)
    access = access_list(m, rec)
    if access:
        info["access"] = access
    return info


def long_uri(m, xid):
    return f"secret://{m.uuid}/{xid}"


def new_record(owner_kind, owner, content, label=None, description=None, rotate=None,
               expire=None, name=None):
    t = now()
    rec = {"owner_kind": owner_kind, "owner": owner, "label": label, "description": description,
           "rotate": rotate, "next_rotate": t + ROTATE_PERIODS[rotate] if rotate in ROTATE_PERIODS
           else None, "rotate_refire": None,
           "revisions": {"1": {"content": content, "created": t, "updated": t, "expire": expire,
                               "expired_fire": None, "remove_notified": False}},
           "latest": 1, "created": t, "updated": t, "consumers": {}, "grants": [],
           "peer_seen": {}, "name": name, "auto_prune": False}
    return rec


# ---- ownership and access ------------------------------------------------------------------
def owns(m, unit, rec):
    """The unit may read as owner (always latest)."""
    if rec["owner_kind"] == "unit":
        return rec["owner"] == unit
    if rec["owner_kind"] == "application":
        return rec["owner"] == app_of(unit)
    return False


def manages(m, unit, rec):
    """The unit may set/remove/grant/revoke (owner unit, or leader of owner app)."""
    if rec["owner_kind"] == "unit":
        return rec["owner"] == unit
    if rec["owner_kind"] == "application":
        return rec["owner"] == app_of(unit) and m.is_leader(unit)
    return False


def granted(m, unit, rec):
    app = app_of(unit)
    return any((g["kind"] == "app" and g["target"] == app) or
               (g["kind"] == "unit" and g["target"] == unit) for g in rec["grants"])


def owner_entity(rec):
    if rec["owner_kind"] == "application":
        return "application"
    return "unit"


def content_of(rec, rev):
    r = rec["revisions"].get(str(rev))
    return None if r is None else r["content"]


def decode_content(content):
    out = {}
    for k, v in content.items():
        try:
            out[k] = base64.b64decode(v).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            out[k] = v
    return out


# ---- hooks owed ------------------------------------------------------------------------------
def _hook_owner(m, rec):
    if rec["owner_kind"] == "unit":
        return rec["owner"]
    if rec["owner_kind"] == "application":
        return m.app(rec["owner"]).get("leader") if m.app(rec["owner"]) else None
    return None


def obsolete_revisions(rec):
    tracked = {c.get("tracked") for c in rec["consumers"].values()}
    return sorted(int(r) for r in rec["revisions"]
                  if int(r) != rec["latest"] and int(r) not in tracked)


def next_secret_op(m, unit, t):
    """(hook op fields or None, next wake time) for this unit: expired, rotate, changed, remove."""
    wake = []
    found = {"expired": None, "rotate": None, "changed": None, "remove": None}
    for xid, rec in sorted(m.d["secrets"].items()):
        uri = long_uri(m, xid)
        if _hook_owner(m, rec) == unit:
            for rev, r in sorted(rec["revisions"].items(), key=lambda kv: int(kv[0])):
                exp = r.get("expire")
                if exp is None:
                    continue
                due = max(exp, r.get("expired_fire") or 0)
                if t >= due and found["expired"] is None:
                    found["expired"] = {"hook": "secret-expired", "secret": {
                        "uri": uri, "xid": xid, "label": rec["label"], "revision": int(rev)}}
                elif t < due:
                    wake.append(due)
            if rec.get("next_rotate"):
                # rotation comes early when the latest revision expires sooner
                exp = rec["revisions"].get(str(rec["latest"]), {}).get("expire")
                first = min(rec["next_rotate"], exp) if exp else rec["next_rotate"]
                due = max(first, rec.get("rotate_refire") or 0)
                if t >= due and found["rotate"] is None:
                    found["rotate"] = {"hook": "secret-rotate", "secret": {
                        "uri": uri, "xid": xid, "label": rec["label"]}}
                elif t < due:
                    wake.append(due)
            if found["remove"] is None:
                for rev in obsolete_revisions(rec):
                    if not rec["revisions"][str(rev)]["remove_notified"]:
                        found["remove"] = {"hook": "secret-remove", "secret": {
                            "uri": uri, "xid": xid, "label": rec["label"], "revision": rev}}
                        break
        if found["changed"] is None:
            c = rec["consumers"].get(unit)
            if c and c.get("tracked") is not None and c["notified"] < rec["latest"]:
                found["changed"] = {"hook": "secret-changed", "secret": {
                    "uri": uri, "xid": xid, "label": c.get("label")}}
            elif (rec["owner_kind"] == "application" and rec["owner"] == app_of(unit)
                  and rec["peer_seen"].get(unit, rec["latest"]) < rec["latest"]
                  and not m.is_leader(unit)):
                found["changed"] = {"hook": "secret-changed", "secret": {
                    "uri": uri, "xid": xid, "label": rec["label"]}}
    for kind in ("expired", "rotate", "changed", "remove"):
        if found[kind]:
            return found[kind], None
    return None, (min(wake) if wake else None)


def mark_secret_hook(m, unit, op):
    sec = op["secret"]
    rec = m.d["secrets"].get(sec["xid"])
    if rec is None:
        return
    hook = op["hook"]
    if hook == "secret-expired":
        r = rec["revisions"].get(str(sec["revision"]))
        if r:
            r["expired_fire"] = now() + REFIRE
    elif hook == "secret-rotate":
        rec["rotate_refire"] = now() + REFIRE
    elif hook == "secret-changed":
        c = rec["consumers"].get(unit)
        if c:
            c["notified"] = rec["latest"]
        if rec["owner_kind"] == "application" and rec["owner"] == app_of(unit):
            rec["peer_seen"][unit] = rec["latest"]
    elif hook == "secret-remove":
        r = rec["revisions"].get(str(sec["revision"]))
        if r:
            r["remove_notified"] = True


# ---- buffered operations ---------------------------------------------------------------------
def validate(m, ctx, ops):
    for op in ops:
        if op[0] == "grant":
            _, xid, rid, _unit = op
            if m.relation(rid) is None:
                return False, f"cannot grant access to secret {xid}: relation not found"
    return True, ""


def new_revision(m, rec, content, by_unit):
    t = now()
    prev = rec["latest"]
    rec["latest"] = prev + 1
    rec["revisions"][str(rec["latest"])] = {"content": content, "created": t, "updated": t,
                                            "expire": None, "expired_fire": None,
                                            "remove_notified": False}
    rec["updated"] = t
    if rec.get("rotate") in ROTATE_PERIODS:
        rec["next_rotate"] = t + ROTATE_PERIODS[rec["rotate"]]
        rec["rotate_refire"] = None
    if rec["owner_kind"] == "application" and m.app(rec["owner"]):
        for u in m.units_of(rec["owner"], alive_only=True):
            if u == by_unit:
                rec["peer_seen"][u] = rec["latest"]
            else:
                rec["peer_seen"].setdefault(u, prev)
    if rec["owner_kind"] == "model" and rec.get("auto_prune"):
        prune(rec)


def prune(rec):
    for rev in obsolete_revisions(rec):
        rec["revisions"].pop(str(rev), None)


def apply(m, ctx, ops):
    secrets = m.d["secrets"]
    for op in ops:
        kind = op[0]
        if kind == "add":
            _, xid, rec = op
            secrets[xid] = rec
            if rec["owner_kind"] == "application":
                for u in m.units_of(rec["owner"]):
                    rec["peer_seen"][u] = 1
        elif kind == "set":
            _, xid, changes = op
            rec = secrets.get(xid)
            if rec is None:
                continue
            for key in ("label", "description"):
                if changes.get(key) is not None:
                    rec[key] = changes[key]
            if changes.get("rotate") is not None:
                rec["rotate"] = changes["rotate"]
                rec["next_rotate"] = (now() + ROTATE_PERIODS[changes["rotate"]]
                                      if changes["rotate"] in ROTATE_PERIODS else None)
            content = changes.get("content")
            if content is not None and content != content_of(rec, rec["latest"]):
                new_revision(m, rec, content, ctx.unit)
            if changes.get("expire") is not None:
                rec["revisions"][str(rec["latest"])]["expire"] = changes["expire"]
            rec["updated"] = now()
        elif kind == "remove":
            _, xid, rev = op
            rec = secrets.get(xid)
            if rec is None:
                continue
            if rev is None:
                del secrets[xid]
            else:
                rec["revisions"].pop(str(rev), None)
                if not rec["revisions"]:
                    del secrets[xid]
        elif kind == "grant":
            _, xid, rid, unit = op
            rec = secrets.get(xid)
            rel = m.relation(rid)
            if rec is None or rel is None:
                continue
            remote_app = m.remote_endpoint(rel, ctx.app)["app"]
            g = {"kind": "unit" if unit else "app", "target": unit or remote_app,
                 "rel": int(rid), "role": "view"}
            if g not in rec["grants"]:
                rec["grants"].append(g)
        elif kind == "revoke":
            _, xid, target = op
            rec = secrets.get(xid)
            if rec is None:
                continue
            rec["grants"] = [g for g in rec["grants"] if not _revoke_match(m, g, target)]
            _drop_consumers_without_access(m, rec)
        elif kind == "consume":
            _, xid, unit, tracked, label = op
            rec = secrets.get(xid)
            if rec is None:
                continue
            c = rec["consumers"].setdefault(unit, {"label": None, "tracked": None, "notified": 0})
            if tracked is not None:
                if c["tracked"] is None:
                    c["notified"] = tracked
                c["tracked"] = tracked
                c["notified"] = max(c["notified"], tracked)
            if label is not None:
                c["label"] = label
        elif kind == "owner-label":
            _, xid, label = op
            rec = secrets.get(xid)
            if rec is not None:
                rec["label"] = label


def _revoke_match(m, g, target):
    kind, value = target
    if kind == "rel":
        return g.get("rel") == int(value)
    if kind == "app":
        return g["kind"] == "app" and g["target"] == value
    return g["kind"] == "unit" and g["target"] == value


def _drop_consumers_without_access(m, rec):
    for unit in list(rec["consumers"]):
        if not owns(m, unit, rec) and not granted(m, unit, rec):
            del rec["consumers"][unit]


def relation_removed(m, rid):
    """Grants are scoped to their relation and disappear with it."""
    for rec in m.d["secrets"].values():
        before = len(rec["grants"])
        rec["grants"] = [g for g in rec["grants"] if g.get("rel") != int(rid)]
        if len(rec["grants"]) != before:
            _drop_consumers_without_access(m, rec)
