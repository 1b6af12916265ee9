# The hook tools (juju.md section 3) as the controller answers them: parsing with gnuflag rules,
# Juju's output formats, exit codes and exact error strings, over a HookContext.
import os
import re
import time
import traceback

from . import fmt, secretstore
from .flags import (Flag, HelpRequested, UsageError, format_unrecognized, parse,
                    parse_go_duration, yaml_map)
from .model import app_of, goal_since, new_xid, now, status, unit_tag
from .secretstore import SecretError


class ToolError(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class NeedStdin(Exception):
    pass


FORMAT = [Flag("format", default="smart"), Flag("o", "output")]
UNIT_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*/[0-9]+$")
APP_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*$")
ACTION_KEY_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
VALID_STATUS = ("maintenance", "blocked", "waiting", "active")


class Call:
    """One tool invocation: the context, its argv, the caller's cwd and stdin."""

    def __init__(self, ctl, ctx, name, args, cwd, stdin):
        self.ctl = ctl
        self.ctx = ctx
        self.m = ctx.model
        self.name = name
        self.args = args
        self.cwd = cwd
        self.stdin = stdin
        self.stderr = ""

    def parse(self, flags, fmt_default=None):
        fl = list(flags)
        if fmt_default is not None:
            fl += [Flag("format", default=fmt_default), Flag("o", "output")]
        try:
            opts, pos = parse(self.args, fl)
        except HelpRequested:
            raise
        if opts.get("format") is not None and opts["format"] not in fmt.FORMATS:
            raise ToolError(f'invalid value "{opts["format"]}" for option --format: '
                            f'unknown format "{opts["format"]}"', 2)
        return opts, pos

    def output(self, opts, value):
        text = fmt.format_output(value, opts.get("format", "smart"))
        if opts.get("output"):
            path = self.unit_path(opts["output"])
            with open(path, "w") as f:
                f.write(text)
            return ""
        return text

    def unit_path(self, path):
        """A path as the unit sees it, mapped to where it lives on the host."""
        if not os.path.isabs(path):
            path = os.path.join(self.cwd or "/", path)
        return self.ctl.host_path(self.m, self.ctx.unit, path)

    def read_file_arg(self, path):
        if path == "-":
            if self.stdin is None:
                raise NeedStdin()
            return self.stdin.decode("utf-8", "replace")
        try:
            with open(self.unit_path(path), encoding="utf-8") as f:
                return f.read()
        except OSError as e:
            raise ToolError(f"open {path}: {e.strerror.lower()}") from None


def run_tool(ctl, ctx, name, args, cwd, stdin):
    """Returns (exit code, stdout, stderr, need_stdin)."""
    call = Call(ctl, ctx, name, args, cwd, stdin)
    fn = TOOLS.get(name)
    if fn is None:
        return 1, "", f"ERROR unknown command: {name}\n", False
    try:
        with ctx.model.lock:
            out = fn(call) or ""
        return 0, out, call.stderr, False
    except NeedStdin:
        return 0, "", "", True
    except HelpRequested:
        return 0, f"Usage: {name} {USAGE.get(name, '[options]')}\n", "", False
    except UsageError as e:
        return 2, "", call.stderr + f"ERROR {e}\n", False
    except (ToolError, SecretError) as e:
        return e.code, "", call.stderr + f"ERROR {e}\n", False
    except ValueError as e:  # bad input files (UnicodeDecodeError is a ValueError)
        return 1, "", call.stderr + f"ERROR {e}\n", False
    except Exception as e:  # a bug: answer with one ERROR line, keep the trace
        traceback.print_exc()
        return 1, "", call.stderr + f"ERROR internal error: {e!r}\n", False


# ---- helpers ------------------------------------------------------------------------------------
def _file_map(call, path, what):
    try:
        return yaml_map(call.read_file_arg(path), what)
    except ValueError as e:
        raise ToolError(str(e)) from None


def no_more(pos):
    if pos:
        raise UsageError(format_unrecognized(pos))


def key_values(items):
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f'expected "key=value", got "{item}"')
        k, v = item.split("=", 1)
        out[k] = v
    return out


def relation_id(call, raw):
    """-r accepts 7, db:7 or anything:7 (juju.md 3.3)."""
    tail = raw.rsplit(":", 1)[-1]
    try:
        rid = int(tail)
    except ValueError:
        raise UsageError(f'invalid value "{raw}" for option -r: invalid relation id') from None
    rel = call.m.relation(rid)
    ud = call.m.unit(call.ctx.unit)
    visible = rel is not None and (str(rid) in ud["relations"] or rel["life"] == "alive") and \
        call.m.local_endpoint(rel, call.ctx.app) is not None
    if not visible:
        raise UsageError(f'invalid value "{raw}" for option -r: relation not found')
    return rid


def context_relation(call, opts, required=True):
    if opts.get("relation") is not None:
        return relation_id(call, opts["relation"])
    if call.ctx.rel_id is not None and call.m.relation(call.ctx.rel_id) is not None:
        return call.ctx.rel_id
    if call.ctx.rel_id is not None:
        raise UsageError(f'invalid value "{call.ctx.rel_id}" for option -r: relation not found')
    if required:
        raise UsageError("no relation id specified")
    return None


def in_scope(call, rid):
    ud = call.m.unit(call.ctx.unit)
    return str(rid) in ud["relations"]


def members(call, rid):
    """Remote units this unit knows in the relation, as relation-list shows them."""
    ctx = call.ctx
    ud = call.m.unit(ctx.unit)
    rs = ud["relations"].get(str(rid))
    if rs is None:
        return []
    names = set(rs["joined"])
    if ctx.rel_id == rid:
        if ctx.hook.endswith("-relation-joined") and ctx.remote_unit:
            names.add(ctx.remote_unit)
        if ctx.hook.endswith("-relation-departed"):
            names.discard(ctx.remote_unit)
        if ctx.hook.endswith("-relation-broken"):
            names = set()
    return sorted(names, key=lambda u: (app_of(u), int(u.rsplit("/", 1)[1])))


# ---- relation tools -----------------------------------------------------------------------------
def relation_ids(call):
    opts, pos = call.parse([], "smart")
    ctx = call.ctx
    if len(pos) > 1:
        no_more(pos[1:])
    if pos:
        ep = pos[0]
    elif ctx.rel_id is not None:
        rel = call.m.relation(ctx.rel_id)
        ep = call.m.local_endpoint(rel, ctx.app)["name"] if rel else ""
    else:
        raise UsageError("no endpoint name specified")
    ud = call.m.unit(ctx.unit)
    ids = []
    for rel in call.m.relations_of(ctx.app):
        e = call.m.local_endpoint(rel, ctx.app)
        if e["name"] == ep and (rel["life"] == "alive" or str(rel["id"]) in ud["relations"]):
            ids.append(f"{ep}:{rel['id']}")
    return call.output(opts, sorted(ids))


def relation_list(call):
    opts, pos = call.parse([Flag("r", "relation"), Flag("app", kind="bool")], "smart")
    no_more(pos)
    rid = context_relation(call, opts)
    rel = call.m.relation(rid)
    if opts["app"]:
        return call.output(opts, call.m.remote_endpoint(rel, call.ctx.app)["app"])
    return call.output(opts, members(call, rid))


def relation_get(call):
    opts, pos = call.parse([Flag("r", "relation"), Flag("app", kind="bool")], "smart")
    ctx = call.ctx
    m = call.m
    rid = context_relation(call, opts)
    rel = m.relation(rid)
    key = None
    if pos:
        key = None if pos[0] == "-" else pos[0]
    if len(pos) > 2:
        no_more(pos[2:])
    is_app = opts["app"]
    if len(pos) > 1:
        target = pos[1]
    elif ctx.rel_id == rid and ctx.remote_unit:
        target = ctx.remote_unit
    elif ctx.rel_id == rid and ctx.remote_app:
        target = ctx.remote_app
        is_app = True
    else:
        raise UsageError("no unit or application specified")
    if "/" in target:
        if not UNIT_RE.match(target):
            raise UsageError(f'invalid unit name "{target}"')
        if is_app:
            target = app_of(target)
    elif not is_app:
        if not APP_RE.match(target):
            raise UsageError(f'invalid unit name "{target}"')
        raise UsageError(f'expected unit name, got application name "{target}"')
    if is_app:
        if target == ctx.app:
            if not rel["peer"] and not ctx.is_leader():
                raise ToolError("permission denied")
            if not in_scope(call, rid):
                raise ToolError("permission denied")
            data = ctx.own_app_data(rid)
        elif any(e["app"] == target for e in rel["endpoints"]):
            data = ctx.remote_data(rid, target, True)
        else:
            raise ToolError("permission denied")
    elif target == ctx.unit:
        if not in_scope(call, rid):
            raise ToolError("permission denied")
        data = ctx.own_unit_data(rid)
    else:
        if target not in rel["unit_data"] or not any(e["app"] == app_of(target)
                                                     for e in rel["endpoints"]):
            raise ToolError(f"unknown unit {target}")
        data = ctx.remote_data(rid, target, False)
    if key is not None:
        return call.output(opts, data.get(key))
    return call.output(opts, data)


def relation_set(call):
    opts, pos = call.parse([Flag("r", "relation"), Flag("app", kind="bool"), Flag("file"),
                            Flag("format")])
    ctx = call.ctx
    if opts.get("format") is not None:
        call.stderr += '--format flag deprecated for command "relation-set"'
    rid = context_relation(call, opts)
    values = {}
    if opts.get("file"):
        data = _file_map(call, opts["file"], "settings file")
        values.update({str(k): ("" if v is None else str(v)) for k, v in data.items()})
    values.update(key_values(pos))
    if opts["app"]:
        if not ctx.is_leader():
            raise ToolError("cannot write relation settings")
        if ctx.hook.endswith("-relation-broken") and ctx.rel_id == rid:
            raise ToolError("cannot read relation application settings: "
                            "permission denied (unauthorized access)")
    if not in_scope(call, rid):
        raise ToolError("permission denied")
    ctx.set_relation(rid, opts["app"], {k: (v if v != "" else None) for k, v in values.items()})
    return ""


def relation_model_get(call):
    opts, pos = call.parse([Flag("r", "relation")], "smart")
    no_more(pos)
    context_relation(call, opts)
    return call.output(opts, {"uuid": call.m.uuid})


# ---- config, leadership, status, logging ------------------------------------------------------
def config_get(call):
    opts, pos = call.parse([Flag("a", "all", kind="bool")], "smart")
    if len(pos) > 1:
        no_more(pos[1:])
    ad = call.m.app(call.ctx.app)
    values = call.m.app_config(call.ctx.app)
    if opts["all"]:
        for name in ad["options"]:
            values.setdefault(name, None)
    if pos:
        return call.output(opts, values.get(pos[0]))
    return call.output(opts, values)


def is_leader(call):
    opts, pos = call.parse([], "smart")
    no_more(pos)
    return call.output(opts, call.ctx.is_leader())


def leader_get(call):
    opts, pos = call.parse([], "smart")
    if len(pos) > 1:
        no_more(pos[1:])
    data = dict(call.m.app(call.ctx.app)["leader_settings"])
    if pos and pos[0] != "-":
        return call.output(opts, data.get(pos[0]))
    return call.output(opts, data)


def leader_set(call):
    opts, pos = call.parse([Flag("file")])
    values = key_values(pos)
    if opts.get("file"):
        data = _file_map(call, opts["file"], "settings file")
        values = {**{str(k): str(v) for k, v in data.items()}, **values}
    if not call.ctx.is_leader():
        raise ToolError("cannot write leadership settings: cannot write settings: not the leader")
    ad = call.m.app(call.ctx.app)
    changed = False
    for k, v in values.items():
        if v == "":
            changed |= ad["leader_settings"].pop(k, None) is not None
        elif ad["leader_settings"].get(k) != v:
            ad["leader_settings"][k] = v
            changed = True
    if changed:
        ad["leader_version"] += 1
        ud = call.m.unit(call.ctx.unit)
        ud["leader_version_seen"] = ad["leader_version"]
        call.m.changed()
    return ""


def status_set(call):
    opts, pos = call.parse([Flag("application", kind="bool")])
    if not pos:
        raise UsageError("invalid args, require <status> [message] [data]")
    if len(pos) > 3:
        no_more(pos[3:])
    st = pos[0]
    if st not in VALID_STATUS:
        raise UsageError(f'invalid status "{st}", expected one of [{" ".join(VALID_STATUS)}]')
    msg = pos[1] if len(pos) > 1 else ""
    m = call.m
    if opts["application"]:
        if not call.ctx.is_leader():
            raise ToolError("this unit is not the leader")
        ad = m.app(call.ctx.app)
        if not ad.get("status") or ad["status"]["status"] != st or ad["status"]["message"] != msg:
            ad["status"] = status(st, msg)
    else:
        m.set_unit_status(call.ctx.unit, "workload", st, msg)
        m.unit(call.ctx.unit)["workload_set"] = True
    m.changed()
    return ""


def _status_map(s):
    return {"message": s["message"], "status": s["status"], "status-data": {}}


def status_get(call):
    opts, pos = call.parse([Flag("include-data", kind="bool"), Flag("application", kind="bool")],
                           "smart")
    no_more(pos)
    m = call.m
    ud = m.unit(call.ctx.unit)
    if opts["application"]:
        if not call.ctx.is_leader():
            raise ToolError("finding application status: this unit is not the leader")
        ad = m.app(call.ctx.app)
        app_st = ad.get("status") or status("unknown", "")
        units = {u: _status_map(m.unit(u)["workload"]) for u in m.units_of(call.ctx.app)}
        if not opts["include_data"]:
            return call.output(opts, app_st["status"])
        return call.output(opts, {"application-status": {**_status_map(app_st), "units": units}})
    if not opts["include_data"]:
        return call.output(opts, ud["workload"]["status"])
    return call.output(opts, _status_map(ud["workload"]))


def application_version_set(call):
    _, pos = call.parse([])
    if not pos:
        raise UsageError("no version specified")
    no_more(pos[1:])
    call.m.app(call.ctx.app)["version"] = pos[0]
    call.m.changed()
    return ""


LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def juju_log(call):
    opts, pos = call.parse([Flag("l", "log-level", default="INFO"), Flag("debug", kind="bool")])
    if not pos:
        raise UsageError("no message specified")
    level = "DEBUG" if opts["debug"] else opts["log_level"].upper()
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        call.m.log(unit_tag(call.ctx.unit), "WARNING", f"unit.{call.ctx.unit}.juju-log",
                   f'Specified log level of "{opts["log_level"]}" is not valid')
        level = "INFO"
    msg = " ".join(pos)
    if call.ctx.rel_id is not None and call.ctx.hook:
        rel = call.m.relation(call.ctx.rel_id)
        if rel:
            ep = call.m.local_endpoint(rel, call.ctx.app)["name"]
            msg = f"{ep}:{call.ctx.rel_id}: {msg}"
    call.m.log(unit_tag(call.ctx.unit), level, f"unit.{call.ctx.unit}.juju-log", msg)
    return ""


def unit_get(call):
    opts, pos = call.parse([], "smart")
    if not pos:
        raise UsageError("no setting specified")
    no_more(pos[1:])
    if pos[0] not in ("private-address", "public-address"):
        raise UsageError(f'unknown setting "{pos[0]}"')
    return call.output(opts, call.m.address_of(call.ctx.unit))


def goal_state(call):
    opts, pos = call.parse([], "yaml")
    no_more(pos)
    m = call.m
    app = call.ctx.app
    units = {}
    for u in m.units_of(app):
        ud = m.unit(u)
        units[u] = {"status": "dying" if ud["life"] != "alive" else "active",
                    "since": goal_since(ud["created"])}
    rels = {}
    for rel in sorted(m.relations_of(app), key=lambda r: r["id"]):
        ep = m.local_endpoint(rel, app)["name"]
        remote = m.remote_endpoint(rel, app)["app"]
        entry = rels.setdefault(ep, {})
        st = "joined" if rel["life"] == "alive" else "dying"
        if not rel["peer"]:
            entry[remote] = {"status": st, "since": goal_since(rel["created"])}
        for u in m.units_of(remote):
            if u == call.ctx.unit:
                continue
            ud = m.unit(u)
            entry[u] = {"status": "dying" if ud["life"] != "alive" else "active",
                        "since": goal_since(ud["created"])}
    return call.output(opts, {"units": units, "relations": rels})


# ---- ports and networking -----------------------------------------------------------------------
def parse_port(spec):
    proto = "tcp"
    body = spec
    if spec == "icmp":
        return {"from": None, "to": None, "proto": "icmp"}
    if "/" in spec:
        body, proto = spec.split("/", 1)
        proto = proto.lower()
    if proto not in ("tcp", "udp", "icmp"):
        raise UsageError(f'invalid protocol "{proto}", expected "tcp", "udp", or "icmp"')
    try:
        if "-" in body:
            a, b = body.split("-", 1)
            lo, hi = int(a), int(b)
        else:
            lo = hi = int(body)
    except ValueError:
        raise UsageError(f'invalid port "{body}"') from None
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or lo > hi:
        raise UsageError(f'port must be in the range [1, 65535]; got "{body}"')
    return {"from": lo, "to": hi, "proto": proto}


def port_str(p):
    if p["proto"] == "icmp":
        return "icmp"
    if p["from"] == p["to"]:
        return f"{p['from']}/{p['proto']}"
    return f"{p['from']}-{p['to']}/{p['proto']}"


def _port_change(call, action):
    opts, pos = call.parse([Flag("endpoints")])
    if not pos:
        raise UsageError("no port or range specified")
    no_more(pos[1:])
    port = parse_port(pos[0])
    eps = [e for e in (opts.get("endpoints") or "").split(",") if e]
    known = call.m.app(call.ctx.app)["meta"]["_endpoints"]
    for e in eps:
        if e not in known:
            raise ToolError(f'endpoint "{e}" not found')
    port["endpoints"] = eps
    call.ctx.port_ops.append((action, port))
    return ""


def open_port(call):
    return _port_change(call, "open")


def close_port(call):
    return _port_change(call, "close")


def opened_ports(call):
    opts, pos = call.parse([Flag("endpoints", kind="bool")], "smart")
    no_more(pos)
    out = []
    for p in sorted(call.m.unit(call.ctx.unit)["ports"],
                    key=lambda p: (p["proto"], p["from"] or 0, p["to"] or 0)):
        s = port_str(p)
        if opts["endpoints"]:
            s += " (" + (", ".join(p["endpoints"]) if p["endpoints"] else "*") + ")"
        out.append(s)
    return call.output(opts, out)


def network_get(call):
    opts, pos = call.parse([Flag("r", "relation"), Flag("bind-address", kind="bool"),
                            Flag("ingress-address", kind="bool"),
                            Flag("egress-subnets", kind="bool"),
                            Flag("primary-address", kind="bool")], "smart")
    if not pos:
        raise UsageError("no arguments specified")
    no_more(pos[1:])
    if opts.get("relation") is not None:
        relation_id(call, opts["relation"])
    binding = pos[0]
    meta = call.m.app(call.ctx.app)["meta"]
    if binding not in meta["_endpoints"] and binding not in (meta.get("extra-bindings") or {}) \
            and binding != "juju-info":
        raise ToolError(f'no network config found for binding "{binding}"')
    ud = call.m.unit(call.ctx.unit)
    mach = call.m.d["machines"][ud["machine"]]
    addr = mach["address"]
    info = {"bind-addresses": [{"mac-address": mach["mac"], "interface-name": "eth0",
                                "addresses": [{"hostname": "", "value": addr,
                                               "cidr": call.m.d["subnet"]}]}],
            "egress-subnets": [f"{addr}/32"], "ingress-addresses": [addr]}
    single = [k for k in ("bind_address", "ingress_address", "egress_subnets", "primary_address")
              if opts[k]]
    if len(single) == 1:
        k = single[0]
        value = {"bind_address": addr, "primary_address": addr, "ingress_address": addr,
                 "egress_subnets": [f"{addr}/32"]}[k]
        return call.output(opts, value)
    if single:
        info = {k.replace("_", "-"): v for k, v in {
            "bind_address": addr, "primary_address": addr, "ingress_address": addr,
            "egress_subnets": [f"{addr}/32"]}.items() if k in single}
    return call.output(opts, info)


# ---- unit state ---------------------------------------------------------------------------------
def _state_view(call):
    data = dict(call.m.unit(call.ctx.unit)["state"])
    for k, v in call.ctx.state_writes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    return data


def state_get(call):
    opts, pos = call.parse([Flag("strict", kind="bool")], "smart")
    if len(pos) > 1:
        no_more(pos[1:])
    data = _state_view(call)
    if pos and pos[0] != "-":
        if pos[0] not in data:
            if opts["strict"]:
                raise ToolError(f'"{pos[0]}" not found')
            return call.output(opts, None)
        return call.output(opts, data[pos[0]])
    return call.output(opts, data)


def state_set(call):
    opts, pos = call.parse([Flag("file")])
    values = {}
    if opts.get("file"):
        data = _file_map(call, opts["file"], "state file")
        values.update({str(k): str(v) for k, v in data.items()})
    values.update(key_values(pos))
    for k, v in values.items():
        if len(k.encode()) > 256:
            raise ToolError(f"key too large: {len(k.encode())} bytes > 256")
        if len(v.encode()) > 64 * 1024:
            raise ToolError(f"value for key {k} too large: {len(v.encode())} bytes > 65536")
        call.ctx.state_writes[k] = v if v != "" else None
    return ""


def state_delete(call):
    _, pos = call.parse([])
    if not pos:
        raise UsageError("no key specified")
    no_more(pos[1:])
    call.ctx.state_writes[pos[0]] = None
    return ""


# ---- actions ------------------------------------------------------------------------------------
def _need_action(call):
    if call.ctx.kind != "action":
        raise ToolError("not running an action")


def action_get(call):
    opts, pos = call.parse([], "smart")
    _need_action(call)
    if len(pos) > 1:
        no_more(pos[1:])
    value = call.ctx.task["params"]
    if pos:
        for part in pos[0].split("."):
            if not isinstance(value, dict) or part not in value:
                return call.output(opts, None)
            value = value[part]
    return call.output(opts, value)


def action_set(call):
    _, pos = call.parse([])
    _need_action(call)
    if not pos:
        raise UsageError("no key=value pairs specified")
    for k, v in key_values(pos).items():
        parts = k.split(".")
        for p in parts:
            if not ACTION_KEY_RE.match(p):
                raise UsageError(f'key "{k}" must start and end with lowercase alphanumeric, '
                                 f'and contain only lowercase alphanumeric, hyphens and periods')
        if parts[0] in ("stdout", "stdout-encoding", "stderr", "stderr-encoding"):
            raise UsageError(f'cannot set reserved action key "{parts[0]}"')
        d = call.ctx.action_results
        for p in parts[:-1]:
            if not isinstance(d.get(p), dict):
                d[p] = {}
            d = d[p]
        d[parts[-1]] = v
    return ""


def action_log(call):
    _, pos = call.parse([])
    _need_action(call)
    if not pos:
        raise UsageError("no message specified")
    ts = time.strftime("%Y-%m-%d %H:%M:%S %z %Z")
    call.ctx.action_logs.append(f"{ts} {' '.join(pos)}")
    return ""


def action_fail(call):
    _, pos = call.parse([])
    _need_action(call)
    if len(pos) > 1:
        no_more(pos[1:])
    call.ctx.action_failed = pos[0] if pos else \
        "action failed without reason given, check action for errors"
    return ""


# ---- secrets ------------------------------------------------------------------------------------
def _secret_meta_flags():
    return [Flag("label"), Flag("description"), Flag("expire"), Flag("rotate"),
            Flag("owner", default=None), Flag("file")]


def _parse_expire(raw):
    if raw is None:
        return None
    try:
        d = parse_go_duration(raw)
        if d < 0:
            raise ToolError("negative expiry duration not valid")
        return now() + d
    except ValueError:
        pass
    for layout in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            import calendar
            return calendar.timegm(time.strptime(raw, layout))
        except ValueError:
            continue
    raise UsageError(f'expire time or duration "{raw}" not valid')


def _secret_content(call, pos, file_opt):
    pairs = list(pos)
    if file_opt:
        pairs = secretstore.file_pairs(call.read_file_arg(file_opt)) + pairs

    def read_value(path):
        try:
            with open(call.unit_path(path), "rb") as f:
                return f.read()
        except OSError as e:
            raise ToolError(f"cannot read secret value file {path}: {e.strerror}") from None

    return secretstore.parse_content(pairs, read_value)


def _rotate(raw):
    if raw is None:
        return None
    if raw not in ("never", *secretstore.ROTATE_PERIODS):
        raise UsageError(f'rotate policy "{raw}" not valid')
    return raw


def _visible_secrets(call):
    """Committed secrets merged with ones added in this context."""
    merged = dict(call.m.d["secrets"])
    merged.update(call.ctx.secret_added)
    return merged


def _find_owned_label(call, label):
    for xid, rec in _visible_secrets(call).items():
        if rec["label"] == label and secretstore.owns(call.m, call.ctx.unit, rec):
            return xid, rec
    return None, None


def _find_consumer_label(call, label):
    for xid, rec in call.m.d["secrets"].items():
        c = rec["consumers"].get(call.ctx.unit)
        pending = _pending_consumer(call, xid)
        lab = pending.get("label") if pending.get("label") is not None else (c or {}).get("label")
        if lab == label:
            return xid, rec
    return None, None


def _pending_consumer(call, xid):
    out = {}
    for op in call.ctx.secret_ops:
        if op[0] == "consume" and op[1] == xid:
            if op[3] is not None:
                out["tracked"] = op[3]
            if op[4] is not None:
                out["label"] = op[4]
    return out


def _resolve(call, uri, label, owner_only=False):
    if uri:
        xid = secretstore.parse_uri(uri)
        rec = _visible_secrets(call).get(xid)
        if rec is None:
            raise SecretError(f'secret "{xid}" not found')
        return xid, rec
    xid, rec = _find_owned_label(call, label)
    if rec is None and not owner_only:
        xid, rec = _find_consumer_label(call, label)
        if rec is None:
            raise SecretError(f'consumer label "{label}" not found')
    if rec is None:
        raise SecretError(f'secret with label "{label}" not found')
    return xid, rec


def secret_add(call):
    opts, pos = call.parse(_secret_meta_flags())
    owner = opts.get("owner") or "application"
    if owner not in ("application", "unit"):
        raise UsageError(f'secret owner "{owner}" not valid')
    if not pos and not opts.get("file"):
        raise UsageError("missing secret value or filename")
    content = _secret_content(call, pos, opts.get("file"))
    m = call.m
    ctx = call.ctx
    if owner == "application" and not ctx.is_leader():
        raise ToolError("this unit is not the leader")
    label = opts.get("label")
    if label is not None:
        xid_l, _ = _find_owned_label(call, label)
        if xid_l:
            raise ToolError("secret label already exists")
    rec = secretstore.new_record("application" if owner == "application" else "unit",
                                 ctx.app if owner == "application" else ctx.unit, content,
                                 label=label, description=opts.get("description"),
                                 rotate=_rotate(opts.get("rotate")),
                                 expire=_parse_expire(opts.get("expire")))
    xid = new_xid()
    ctx.secret_added[xid] = rec
    ctx.secret_ops.append(("add", xid, rec))
    return secretstore.long_uri(m, xid) + "\n"


def secret_get(call):
    opts, pos = call.parse([Flag("label"), Flag("peek", kind="bool"), Flag("refresh", kind="bool")],
                           "yaml")
    uri = None
    key = None
    rest = list(pos)
    if rest and (rest[0].startswith("secret:") or (len(rest[0]) == 20 and "=" not in rest[0]
                                                   and _looks_xid(rest[0]))):
        uri = rest.pop(0)
    if rest:
        key = rest.pop(0)
    no_more(rest)
    if opts["peek"] and opts["refresh"]:
        raise UsageError("specify one of --peek or --refresh but not both")
    label = opts.get("label")
    if uri is None and label is None:
        raise UsageError("require either a secret URI or label")
    ctx = call.ctx
    m = call.m
    xid, rec = _resolve(call, uri, None if uri else label)
    ops = ctx.secret_ops
    if secretstore.owns(m, ctx.unit, rec):
        rev = rec["latest"]
        if uri and label is not None and secretstore.manages(m, ctx.unit, rec):
            _set_pending_label(call, xid, rec, label)
        elif uri and label is not None:
            ops.append(("consume", xid, ctx.unit, None, label))
        content = _latest_pending_content(call, xid, rec)
    else:
        if not secretstore.granted(m, ctx.unit, rec) and rec["owner_kind"] != "model":
            raise SecretError("permission denied")
        if rec["owner_kind"] == "model" and not secretstore.granted(m, ctx.unit, rec):
            raise SecretError("permission denied")
        c = rec["consumers"].get(ctx.unit) or {}
        tracked = _pending_consumer(call, xid).get("tracked", c.get("tracked"))
        if tracked is None or opts["refresh"]:
            new_tracked = rec["latest"]
            rev = new_tracked
        elif opts["peek"]:
            new_tracked = None
            rev = rec["latest"]
        else:
            new_tracked = None
            rev = tracked
        if new_tracked is not None or (uri and label is not None):
            ops.append(("consume", xid, ctx.unit, new_tracked,
                        label if uri and label is not None else None))
        content = secretstore.content_of(rec, rev)
        if content is None:
            raise SecretError(f'secret "{xid}" revision {rev} not found')
    data = secretstore.decode_content(content)
    if key is not None:
        if key.endswith("#base64"):
            k = key[:-7]
            if k not in content:
                raise SecretError(f'secret key "{k}" not found')
            return call.output(opts, content[k])
        if key not in data:
            raise SecretError(f'secret key "{key}" not found')
        return call.output(opts, data[key])
    return call.output(opts, data)


def _looks_xid(s):
    return all(c in "0123456789abcdefghijklmnopqrstuv" for c in s)


def _latest_pending_content(call, xid, rec):
    content = secretstore.content_of(rec, rec["latest"])
    for op in call.ctx.secret_ops:
        if op[0] == "set" and op[1] == xid and op[2].get("content") is not None:
            content = op[2]["content"]
    return content


def _set_pending_label(call, xid, rec, label):
    for other_xid, other in _visible_secrets(call).items():
        if other_xid != xid and other["label"] == label and \
                secretstore.owns(call.m, call.ctx.unit, other):
            raise ToolError("secret label already exists")
    call.ctx.secret_ops.append(("owner-label", xid, label))
    if xid in call.ctx.secret_added:
        call.ctx.secret_added[xid]["label"] = label


def _manage(call, uri, label=None):
    xid, rec = _resolve(call, uri, label, owner_only=True)
    if not secretstore.manages(call.m, call.ctx.unit, rec):
        raise SecretError("permission denied")
    return xid, rec


def secret_set(call):
    opts, pos = call.parse(_secret_meta_flags())
    if not pos:
        raise UsageError("missing secret URI")
    uri = pos[0]
    xid, rec = _manage(call, uri)
    content = _secret_content(call, pos[1:], opts.get("file")) if (pos[1:] or opts.get("file")) \
        else None
    if opts.get("label") is not None:
        _set_pending_label(call, xid, rec, opts["label"])
    changes = {"content": content, "label": opts.get("label"),
               "description": opts.get("description"), "rotate": _rotate(opts.get("rotate")),
               "expire": _parse_expire(opts.get("expire"))}
    # several secret-set calls in one hook coalesce into one revision (3.6)
    for op in call.ctx.secret_ops:
        if op[0] == "set" and op[1] == xid:
            for k, v in changes.items():
                if v is not None:
                    op[2][k] = v
            break
    else:
        call.ctx.secret_ops.append(("set", xid, changes))
    if xid in call.ctx.secret_added and content is not None:
        call.ctx.secret_added[xid]["revisions"]["1"]["content"] = content
    return ""


def secret_remove(call):
    opts, pos = call.parse([Flag("revision", kind="int")])
    if not pos:
        raise UsageError("missing secret URI")
    no_more(pos[1:])
    xid, rec = _manage(call, pos[0])
    rev = opts.get("revision")
    if rev is not None and str(rev) not in rec["revisions"]:
        raise SecretError(f'secret revision "{rev}" not found')
    call.ctx.secret_ops.append(("remove", xid, rev))
    return ""


def secret_grant(call):
    opts, pos = call.parse([Flag("r", "relation"), Flag("unit")])
    if not pos:
        raise UsageError("missing secret URI")
    no_more(pos[1:])
    if opts.get("relation") is None:
        raise UsageError("missing relation")
    rid = relation_id(call, opts["relation"])
    xid, rec = _manage(call, pos[0])
    rel = call.m.relation(rid)
    remote_app = call.m.remote_endpoint(rel, call.ctx.app)["app"]
    unit = opts.get("unit")
    if unit:
        if app_of(unit) != remote_app:
            raise ToolError(f'cannot specify unit "{unit}" in relation to application '
                            f'"{remote_app}"')
    else:
        if any(g["kind"] == "unit" and app_of(g["target"]) == remote_app for g in rec["grants"]):
            raise ToolError("any unit level grants need to be revoked before granting access to "
                            "the corresponding application")
    call.ctx.secret_ops.append(("grant", xid, rid, unit))
    return ""


def secret_revoke(call):
    opts, pos = call.parse([Flag("r", "relation"), Flag("app"), Flag("unit")])
    if not pos:
        raise UsageError("missing secret URI")
    no_more(pos[1:])
    xid, _ = _manage(call, pos[0])
    if opts.get("relation") is not None:
        target = ("rel", relation_id(call, opts["relation"]))
    elif opts.get("app"):
        target = ("app", opts["app"])
    elif opts.get("unit"):
        target = ("unit", opts["unit"])
    else:
        raise UsageError("missing relation or application or unit")
    call.ctx.secret_ops.append(("revoke", xid, target))
    return ""


def secret_ids(call):
    opts, pos = call.parse([], "smart")
    no_more(pos)
    ids = []
    for xid, rec in _visible_secrets(call).items():
        if rec["owner_kind"] == "unit" and rec["owner"] == call.ctx.unit:
            ids.append(xid)
        elif rec["owner_kind"] == "application" and rec["owner"] == call.ctx.app and \
                call.ctx.is_leader():
            ids.append(xid)
    return call.output(opts, sorted(ids))


def secret_info_get(call):
    opts, pos = call.parse([Flag("label")], "yaml")
    if pos and opts.get("label") is not None:
        raise UsageError("specify either a secret URI or label but not both")
    if not pos and opts.get("label") is None:
        raise UsageError("require either a secret URI or label")
    no_more(pos[1:])
    xid, rec = _resolve(call, pos[0] if pos else None, opts.get("label"), owner_only=True)
    if not secretstore.owns(call.m, call.ctx.unit, rec):
        raise SecretError(f'secret "{pos[0] if pos else opts["label"]}" not found')
    return call.output(opts, {xid: secret_info(call.m, rec)})


def secret_info(m, rec):
    # label has no omitempty in Juju's secret-info-get output
    return {"revision": rec["latest"], "owner": rec["owner_kind"], "label": rec.get("label") or "",
            **secretstore.metadata(m, rec, "expiry")}


# ---- the rest -------------------------------------------------------------------------------------
def storage_list(call):
    opts, pos = call.parse([], "smart")
    if len(pos) > 1:
        no_more(pos[1:])
    return call.output(opts, [])


def storage_get(call):
    opts, pos = call.parse([Flag("s")], "smart")
    if opts.get("s") is None:
        raise UsageError("no storage instance specified")
    raise ToolError(f'storage "{opts["s"]}" not found')


def storage_add(call):
    _, pos = call.parse([])
    if not pos:
        raise UsageError("storage add requires a storage directive")
    raise ToolError(f'storage "{pos[0].split("=")[0]}" not found')


def credential_get(call):
    call.parse([], "smart")
    raise ToolError("cannot access cloud credentials: the local model has no cloud credentials")


def juju_reboot(call):
    call.parse([Flag("now", kind="bool")])
    if call.ctx.kind == "action":
        raise ToolError("juju-reboot is not supported when running an action.")
    raise ToolError("juju-reboot is not supported by the local model")


def resource_get(call):
    _, pos = call.parse([])
    if not pos:
        raise UsageError("missing required resource name")
    raise ToolError(f'could not download resource: resource "{pos[0]}" not found')


TOOLS = {
    "relation-ids": relation_ids, "relation-list": relation_list, "relation-get": relation_get,
    "relation-set": relation_set, "relation-model-get": relation_model_get,
    "config-get": config_get, "is-leader": is_leader, "leader-get": leader_get,
    "leader-set": leader_set, "status-set": status_set, "status-get": status_get,
    "application-version-set": application_version_set, "juju-log": juju_log,
    "unit-get": unit_get, "goal-state": goal_state, "open-port": open_port,
    "close-port": close_port, "opened-ports": opened_ports, "network-get": network_get,
    "state-get": state_get, "state-set": state_set, "state-delete": state_delete,
    "action-get": action_get, "action-set": action_set, "action-log": action_log,
    "action-fail": action_fail, "secret-add": secret_add, "secret-get": secret_get,
    "secret-set": secret_set, "secret-remove": secret_remove, "secret-grant": secret_grant,
    "secret-revoke": secret_revoke, "secret-ids": secret_ids, "secret-info-get": secret_info_get,
    "storage-list": storage_list, "storage-get": storage_get, "storage-add": storage_add,
    "credential-get": credential_get, "juju-reboot": juju_reboot, "resource-get": resource_get,
}

USAGE = {
    "relation-get": "[options] <key> <unit id>",
    "relation-set": "[options] key=value [key=value ...]",
    "relation-ids": "[options] <name>",
    "relation-list": "[options]",
    "config-get": "[options] [<key>]",
    "status-set": "[options] <maintenance | blocked | waiting | active> [message] [data]",
    "secret-add": "[options] [key[#base64|#file]=value...]",
    "secret-get": "[options] <ID> [key[#base64]]",
    "juju-log": "[options] <message>",
    "open-port": "[options] <port>[/<protocol>] or <from>-<to>[/<protocol>] or icmp",
}
