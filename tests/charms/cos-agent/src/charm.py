#!/usr/bin/python3
"""cos-agent: a subordinate cos_agent v0 requirer (like grafana-agent's machine charm).

Standard library only. On every hook (except stop / remove), on the
`cos-agent` relation (interfaces.md 3):

- the principal is the remote unit in relation-list (JUJU_PRINCIPAL_UNIT when
  several are listed);
- our own unit databag gets `receivers` = `[]` (no tracing backend; written
  only when it differs);
- the principal's unit databag key `config` is parsed as JSON and checked
  against the provider schema's inner model by hand (validate()): the five
  required keys and their types, `tracing_protocols` / `subordinate` when
  present, rule files (a `groups` list of named groups with unique names, each
  rule with `expr` and `alert` or `record`), scrape jobs (unique `job_name`,
  `static_configs` targets, or the legacy `{job_name, path, port}` form), and
  every dashboard decoded (strict base64 -> XZ -> UTF-8 JSON) and required to
  be an object with a unique 40-hex `uid`, a `charm: ` tag and a `panels` list.

Status: waiting "no cos-agent relation" / waiting "waiting for config" /
blocked "invalid config: <why>" / active "<n> jobs, <m> rule groups, <k>
dashboards" (m counts the groups of metrics_alert_rules and log_alert_rules).

Actions: get-config (config, dashboards, principal; error when invalid),
scrape (results; see scrape_all()). Response bodies and configs are never
logged.
"""

import base64
import binascii
import gzip
import http.client
import json
import lzma
import os
import re
import ssl
import subprocess
import time
import urllib.parse

from charmtools import fail, live_relations, log, run, status, tool, tool_json

ENDPOINT = "cos-agent"
DATA_DIR = "/var/lib/cos-agent-test"
PROMTOOL = "/usr/bin/promtool"
SCRAPE_TIMEOUT = 10.0
MAX_BODY = 64 << 20
PROMTOOL_OUTPUT_MAX = 2000
ACTION_VALUE_LIMIT = 120000  # bytes; one argv string is limited to 128 KiB (MAX_ARG_STRLEN)
REQUIRED = {
    "metrics_alert_rules": dict,
    "log_alert_rules": dict,
    "dashboards": list,
    "metrics_scrape_jobs": list,
    "log_slots": list,
}
XZ_MAGIC = b"\xfd7zXZ\x00"
UID_RE = re.compile(r"[0-9a-fA-F]{40}")
# Prometheus 2.42 with OpenMetrics not negotiated; promtool only reads this format
SCRAPE_HEADERS = {
    "Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "%g" % SCRAPE_TIMEOUT,
}


class ConfigError(Exception):
    pass


def type_name(v):
    if v is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "integer", float: "number"}.get(type(v), type(v).__name__)


def compact(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------
# config validation (provider schema, inner model)
# ---------------------------------------------------------------------------

def decode_dashboard(i, s):
    """One `dashboards` entry -> the dashboard object (ConfigError when invalid)."""
    where = f"dashboards[{i}]"
    try:
        raw = base64.b64decode(s.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as e:
        raise ConfigError(f"{where}: not base64 ({e})") from None
    if not raw.startswith(XZ_MAGIC):
        raise ConfigError(f"{where}: not an XZ stream (no /Td6WFo magic)")
    try:
        data = lzma.decompress(raw, format=lzma.FORMAT_XZ)
    except lzma.LZMAError as e:
        raise ConfigError(f"{where}: bad XZ data ({e})") from None
    try:
        dash = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8") from None
    except ValueError as e:
        raise ConfigError(f"{where}: not JSON ({e})") from None
    if not isinstance(dash, dict):
        raise ConfigError(f"{where}: a JSON {type_name(dash)}, not an object")
    uid = dash.get("uid")
    if not isinstance(uid, str) or not UID_RE.fullmatch(uid):
        raise ConfigError(f"{where}: uid {uid!r} is not 40 hex characters")
    tags = dash.get("tags")
    if not isinstance(tags, list) or not any(
            isinstance(t, str) and t.startswith("charm: ") for t in tags):
        raise ConfigError(f"{where}: no 'charm: ' tag in tags {tags!r}")
    if not isinstance(dash.get("panels"), list):
        raise ConfigError(f"{where}: panels is {type_name(dash.get('panels'))}, not an array")
    return dash


def check_rules(key, rules):
    """Number of groups of one rule-file object ({} or {"groups": [...]})."""
    if not rules:
        return 0
    groups = rules.get("groups")
    if not isinstance(groups, list):
        raise ConfigError(f"{key}.groups is {type_name(groups)}, not an array")
    names = set()
    for gi, g in enumerate(groups):
        where = f"{key}.groups[{gi}]"
        if not isinstance(g, dict):
            raise ConfigError(f"{where} is {type_name(g)}, not an object")
        name = g.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name is missing or not a string")
        if name in names:
            raise ConfigError(f"{key}: duplicate group name {name!r}")
        names.add(name)
        if not isinstance(g.get("rules"), list):
            raise ConfigError(f"{where} ({name}).rules is {type_name(g.get('rules'))}, "
                              f"not an array")
        for ri, r in enumerate(g["rules"]):
            rw = f"{where} ({name}).rules[{ri}]"
            if not isinstance(r, dict):
                raise ConfigError(f"{rw} is {type_name(r)}, not an object")
            kinds = [k for k in ("alert", "record") if k in r]
            if len(kinds) != 1 or not isinstance(r[kinds[0]], str) or not r[kinds[0]]:
                raise ConfigError(f"{rw}: needs exactly one of alert/record as a string")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                raise ConfigError(f"{rw} ({r[kinds[0]]}): expr is missing or not a string")
            for sub in ("labels", "annotations"):
                if sub in r and not isinstance(r[sub], dict):
                    raise ConfigError(f"{rw} ({r[kinds[0]]}): {sub} is not an object")
    return len(groups)


def check_job(i, job):
    where = f"metrics_scrape_jobs[{i}]"
    if not isinstance(job, dict):
        raise ConfigError(f"{where} is {type_name(job)}, not an object")
    name = job.get("job_name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: job_name is missing or not a string")
    where = f"job {name}"
    if "static_configs" not in job:
        if "port" not in job:
            raise ConfigError(f"{where}: no static_configs (and not the legacy path/port form)")
        if isinstance(job["port"], bool) or not re.fullmatch(r"\d{1,5}", str(job["port"])):
            raise ConfigError(f"{where}: legacy port {job['port']!r} is not a port number")
        if "path" in job and not isinstance(job["path"], str):
            raise ConfigError(f"{where}: legacy path is not a string")
        return name
    sc = job["static_configs"]
    if not isinstance(sc, list) or not sc:
        raise ConfigError(f"{where}: static_configs is not a non-empty array")
    for si, entry in enumerate(sc):
        sw = f"{where}: static_configs[{si}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{sw} is {type_name(entry)}, not an object")
        targets = entry.get("targets")
        if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
            raise ConfigError(f"{sw}.targets is not an array of strings")
        labels = entry.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ConfigError(f"{sw}.labels is not an object of strings")
    if "metrics_path" in job and not isinstance(job["metrics_path"], str):
        raise ConfigError(f"{where}: metrics_path is not a string")
    if "scheme" in job and job["scheme"] not in ("http", "https"):
        raise ConfigError(f"{where}: scheme {job['scheme']!r} is not http or https")
    if "params" in job and not isinstance(job["params"], dict):
        raise ConfigError(f"{where}: params is not an object")
    tls = job.get("tls_config", {})
    if not isinstance(tls, dict):
        raise ConfigError(f"{where}: tls_config is not an object")
    if "insecure_skip_verify" in tls and not isinstance(tls["insecure_skip_verify"], bool):
        raise ConfigError(f"{where}: tls_config.insecure_skip_verify is not a boolean")
    for k in ("ca_file", "ca", "server_name", "cert_file", "key_file"):
        if k in tls and not isinstance(tls[k], str):
            raise ConfigError(f"{where}: tls_config.{k} is not a string")
    return name


def parse_config(text):
    """The config object (ConfigError when not a JSON object)."""
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"not JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"a JSON {type_name(cfg)}, not an object")
    return cfg


def validate(text):
    """(cfg, decoded dashboards, counts (jobs, rule groups, dashboards)); ConfigError
    with the reason when invalid."""
    cfg = parse_config(text)
    for key, typ in REQUIRED.items():
        if key not in cfg:
            raise ConfigError(f"missing key {key}")
        if not isinstance(cfg[key], typ):
            raise ConfigError(f"{key} is {type_name(cfg[key])}, not {type_name(typ())}")
    for key in ("dashboards", "log_slots"):
        for i, v in enumerate(cfg[key]):
            if not isinstance(v, str):
                raise ConfigError(f"{key}[{i}] is {type_name(v)}, not a string")
    for i, slot in enumerate(cfg["log_slots"]):
        if slot.count(":") != 1 or slot.startswith(":") or slot.endswith(":"):
            raise ConfigError(f"log_slots[{i}] {slot!r} is not <snap-name>:<slot>")
    tp = cfg.get("tracing_protocols")
    if tp is not None and (not isinstance(tp, list) or not all(isinstance(p, str) for p in tp)):
        raise ConfigError("tracing_protocols is not null or an array of strings")
    if cfg.get("subordinate") is not None and not isinstance(cfg["subordinate"], bool):
        raise ConfigError("subordinate is not null or a boolean")
    groups = check_rules("metrics_alert_rules", cfg["metrics_alert_rules"])
    groups += check_rules("log_alert_rules", cfg["log_alert_rules"])
    names = set()
    for i, job in enumerate(cfg["metrics_scrape_jobs"]):
        name = check_job(i, job)
        if name in names:
            raise ConfigError(f"duplicate job_name {name!r}")
        names.add(name)
    dashboards = [decode_dashboard(i, s) for i, s in enumerate(cfg["dashboards"])]
    uids = [d["uid"] for d in dashboards]
    for uid in uids:
        if uids.count(uid) > 1:
            raise ConfigError(f"duplicate dashboard uid {uid}")
    return cfg, dashboards, (len(cfg["metrics_scrape_jobs"]), groups, len(dashboards))


def decodable_dashboards(cfg):
    out = []
    entries = cfg.get("dashboards") if isinstance(cfg, dict) else None
    for i, s in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(s, str):
            try:
                out.append(decode_dashboard(i, s))
            except ConfigError:
                pass
    return out


# ---------------------------------------------------------------------------
# the Prometheus text exposition format (0.0.4), as expfmt's TextParser reads it
# ---------------------------------------------------------------------------

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT_RE = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)",
                      re.IGNORECASE)
TIMESTAMP_RE = re.compile(r"[+-]?\d+")
METRIC_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
BLANKS = " \t"


class ParseError(Exception):
    pass


def _unescape(s, allowed):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in allowed:
                raise ParseError(f"invalid escape sequence {s[i:i + 2]!r}")
            out.append("\n" if s[i + 1] == "n" else s[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _family(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            t = types.get(name[:-len(suffix)])
            if t == "histogram" or (t == "summary" and suffix != "_bucket"):
                return name[:-len(suffix)], t, suffix
    return name, types.get(name), ""


def _skip(line, i):
    while i < len(line) and line[i] in BLANKS:
        i += 1
    return i


def _comment(line, i, types, helps, sampled):
    """A `#` line: HELP / TYPE checked, anything else (or a HELP / TYPE line that stops
    before its text, as expfmt reads it) is a plain comment."""
    rest = line[i + 1:].lstrip(BLANKS)
    j = 0
    while j < len(rest) and rest[j] not in BLANKS:
        j += 1
    keyword, rest = rest[:j], rest[j:].lstrip(BLANKS)
    if keyword not in ("HELP", "TYPE") or not rest:
        return
    m = METRIC_NAME_RE.match(rest)
    if not m or (m.end() < len(rest) and rest[m.end()] not in BLANKS):
        raise ParseError(f"invalid metric name in {keyword} comment")
    name, rest = m.group(0), rest[m.end():].lstrip(BLANKS)
    if not rest:
        return
    family = _family(name, types)[0]
    if keyword == "HELP":
        if family in helps:
            raise ParseError(f"second HELP line for metric name {family!r}")
        helps.add(family)
        _unescape(rest, "\\n")
        return
    if rest.lower() not in METRIC_TYPES:  # the rest of the line, trailing blanks included
        raise ParseError(f"unknown metric type {rest!r}")
    if family in types or family in sampled:
        raise ParseError(f"second TYPE line for metric name {family!r}, "
                         f"or TYPE reported after samples")
    types[name] = rest.lower()


def _sample(line, i, types, sampled, names):
    m = METRIC_NAME_RE.match(line, i)
    if not m:
        raise ParseError("invalid metric name")
    name, i = m.group(0), _skip(line, m.end())
    labels = {}
    if i < len(line) and line[i] == "{":
        i += 1
        while True:
            i = _skip(line, i)
            if i < len(line) and line[i] == "}":
                i += 1
                break
            lm = LABEL_NAME_RE.match(line, i)
            if not lm:
                raise ParseError(f"invalid label name for metric {name!r}")
            lname, i = lm.group(0), _skip(line, lm.end())
            if lname == "__name__":
                raise ParseError("label name __name__ is reserved")
            if lname in labels:
                raise ParseError(f"duplicate label name {lname!r} for metric {name!r}")
            if i >= len(line) or line[i] != "=":
                raise ParseError(f"expected '=' after label name {lname!r}")
            i = _skip(line, i + 1)
            if i >= len(line) or line[i] != '"':
                raise ParseError(f"expected '\"' to start the value of label {lname!r}")
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if j >= len(line):
                raise ParseError(f"unterminated value of label {lname!r}")
            labels[lname] = _unescape(line[i + 1:j], '\\"n')
            i = _skip(line, j + 1)
            if i < len(line) and line[i] == ",":
                i += 1
            elif i < len(line) and line[i] == "}":
                i += 1
                break
            else:
                raise ParseError(f"expected ',' or '}}' after label {lname!r}")
        i = _skip(line, i)
    tokens = [t for t in re.split(r"[ \t]+", line[i:]) if t]  # a CR is not a blank
    if not tokens:
        raise ParseError(f"no value for metric {name!r}")
    if not FLOAT_RE.fullmatch(tokens[0]):
        raise ParseError(f"expected float as value, got {tokens[0][:40]!r}")
    if len(tokens) > 1 and not TIMESTAMP_RE.fullmatch(tokens[1]):
        raise ParseError(f"expected integer as timestamp, got {tokens[1][:40]!r}")
    if len(tokens) > 2:
        raise ParseError("spurious string after timestamp")
    family, t, suffix = _family(name, types)
    for special, applies in (("le", t == "histogram" and suffix == "_bucket"),
                             ("quantile", t == "summary" and suffix == "")):
        if applies and special in labels and not FLOAT_RE.fullmatch(labels[special]):
            raise ParseError(f"expected float as value for {special!r} label")
    sampled.add(family)
    names.add(name)


def parse_exposition(body):
    """(ok, error or None, sorted unique sample names)."""
    names = set()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        return False, f"not UTF-8 at byte {e.start}", []
    types, helps, sampled = {}, set(), set()
    for n, line in enumerate(text.split("\n"), 1):
        i = _skip(line, 0)
        try:
            if i == len(line):
                continue
            if line[i] == "#":
                _comment(line, i, types, helps, sampled)
            else:
                _sample(line, i, types, sampled, names)
        except ParseError as e:
            return False, f"line {n}: {e}", sorted(names)
    return True, None, sorted(names)


# ---------------------------------------------------------------------------
# scraping
# ---------------------------------------------------------------------------

class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS with an explicit SNI / verification name (tls_config.server_name)."""

    def __init__(self, host, server_hostname, context, timeout):
        super().__init__(host, timeout=timeout, context=context)
        self._server_hostname = server_hostname

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_hostname)


def tls_context(tls):
    if tls.get("insecure_skip_verify") is True:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif tls.get("ca_file") or tls.get("ca"):
        ctx = ssl.create_default_context(cafile=tls.get("ca_file") or None,
                                         cadata=tls.get("ca") or None)
    else:
        ctx = ssl.create_default_context()
    if tls.get("cert_file") and tls.get("key_file"):
        ctx.load_cert_chain(tls["cert_file"], tls["key_file"])
    return ctx


def scrape_url(scheme, target, path, params):
    if path and not path.startswith("/"):
        path = "/" + path
    query = urllib.parse.urlencode(
        [(k, v) for k, vs in sorted(params.items())
         for v in (vs if isinstance(vs, list) else [vs])])
    return f"{scheme}://{target}{path}" + (f"?{query}" if query else "")


def fetch(scheme, target, path_qs, tls, timeout=SCRAPE_TIMEOUT):
    """(status, body bytes, error): status None when no HTTP answer came."""
    deadline = time.monotonic() + timeout
    status_code, body = None, b""
    conn = None
    try:
        if scheme == "https":
            host = urllib.parse.urlsplit("//" + target).hostname or target
            conn = _HTTPSConnection(target, tls.get("server_name") or host,
                                    tls_context(tls), timeout)
        else:
            conn = http.client.HTTPConnection(target, timeout=timeout)
        conn.connect()
        sock = conn.sock  # kept: getresponse() drops conn.sock for "Connection: close"
        conn.request("GET", path_qs, headers=SCRAPE_HEADERS)
        resp = conn.getresponse()
        status_code = resp.status
        chunks, size = [], 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return status_code, b"", f"timeout: body not read within {timeout:g}s"
            try:
                sock.settimeout(left)
            except OSError:
                pass
            chunk = resp.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY:
                return status_code, b"", f"body larger than {MAX_BODY} bytes"
            chunks.append(chunk)
        body = b"".join(chunks)
        if (resp.getheader("Content-Encoding") or "").strip().lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as e:
                return status_code, b"", f"bad gzip body: {e}"
        if status_code != 200:
            return status_code, body, f"server returned HTTP status {status_code} {resp.reason}"
        return status_code, body, None
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
        what = "timeout" if isinstance(e, TimeoutError) else type(e).__name__
        return status_code, b"", f"{what}: {e}"
    finally:
        if conn is not None:
            conn.close()


def promtool_check(body):
    """(returncode or None, combined output)."""
    try:
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                           timeout=60)
    except FileNotFoundError:
        return None, f"{PROMTOOL} not found"
    except subprocess.TimeoutExpired:
        return None, "promtool timed out"
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    return p.returncode, out[:PROMTOOL_OUTPUT_MAX]


def save_body(out_dir, job, target, body):
    os.makedirs(out_dir, mode=0o755, exist_ok=True)
    name = f"{job}--{target.replace(':', '_')}.prom".replace("/", "_")
    path = os.path.join(out_dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(body)
    finally:
        os.close(fd)
    return path


def job_targets(job):
    """(scheme, metrics_path, params, tls_config, [(target, static labels)]); the legacy
    {job_name, path, port} form scrapes localhost:<port><path>, TLS unverified."""
    if "static_configs" not in job and "port" in job:
        return ("http", job.get("path") or "/metrics", {}, {"insecure_skip_verify": True},
                [(f"localhost:{job['port']}", {})])
    targets = []
    for entry in job.get("static_configs") or []:
        if isinstance(entry, dict):
            labels = entry.get("labels") if isinstance(entry.get("labels"), dict) else {}
            for t in entry.get("targets") or []:
                targets.append((t, labels))
    tls = job.get("tls_config") if isinstance(job.get("tls_config"), dict) else {}
    params = job.get("params") if isinstance(job.get("params"), dict) else {}
    return (job.get("scheme") or "http", job.get("metrics_path") or "/metrics", params, tls,
            targets)


def scrape_target(job_name, scheme, target, path, params, tls, labels, out_dir):
    url = scrape_url(scheme, target, path, params)
    res = {"job": job_name, "target": target, "url": url, "ok": False, "status": None,
           "error": None, "bytes": 0, "promtool_rc": None, "promtool_output": None,
           "parse_ok": None, "metric_names": [], "path": None, "labels": labels}
    if not isinstance(target, str) or not target:
        res["error"] = f"invalid target {target!r}"
        return res
    if scheme not in ("http", "https"):
        res["error"] = f"unsupported scheme {scheme!r}"
        return res
    split = urllib.parse.urlsplit(url)
    path_qs = (split.path or "/") + (f"?{split.query}" if split.query else "")
    res["status"], body, res["error"] = fetch(scheme, target, path_qs, tls)
    res["bytes"] = len(body)
    if res["status"] != 200 or res["error"]:
        return res
    res["path"] = save_body(out_dir, job_name, target, body)
    res["promtool_rc"], res["promtool_output"] = promtool_check(body)
    res["parse_ok"], perr, res["metric_names"] = parse_exposition(body)
    if perr:
        res["error"] = f"parse error: {perr}"
    res["ok"] = bool(res["parse_ok"])
    return res


def scrape_all(cfg, topology, out_dir=DATA_DIR):
    """One result per target of every job (see actions.yaml); never raises for a
    target or a malformed job."""
    results = []
    for i, job in enumerate(cfg["metrics_scrape_jobs"]):
        if not isinstance(job, dict):
            results.append({"job": None, "target": None, "url": None, "ok": False,
                            "status": None, "error": f"metrics_scrape_jobs[{i}] is not an object",
                            "bytes": 0, "promtool_rc": None, "promtool_output": None,
                            "parse_ok": None, "metric_names": [], "path": None, "labels": {}})
            continue
        name = job.get("job_name") if isinstance(job.get("job_name"), str) else f"job{i}"
        scheme, path, params, tls, targets = job_targets(job)
        for target, static_labels in targets:
            labels = dict(static_labels)
            labels.update(topology)
            results.append(scrape_target(name, scheme, target, path, params, tls, labels,
                                         out_dir))
    return results


def topology_labels(principal):
    return {"juju_model": os.environ.get("JUJU_MODEL_NAME", ""),
            "juju_model_uuid": os.environ.get("JUJU_MODEL_UUID", ""),
            "juju_application": principal.rsplit("/", 1)[0],
            "juju_unit": principal}


# ---------------------------------------------------------------------------
# relation
# ---------------------------------------------------------------------------

def principal_of(rid):
    units = tool_json("relation-list", "-r", rid) or []
    if not units:
        return None
    mine = os.environ.get("JUJU_PRINCIPAL_UNIT")
    return mine if mine in units else units[0]


def relation_state():
    """(rid, principal, config text): None for what is not there yet."""
    rids = list(live_relations(ENDPOINT))
    if not rids:
        return None, None, None
    rid = rids[0]
    principal = principal_of(rid)
    if not principal:
        return rid, None, None
    text = tool_json("relation-get", "-r", rid, "config", principal)
    return rid, principal, (text if isinstance(text, str) and text.strip() else None)


def publish_receivers(rid):
    mine = os.environ["JUJU_UNIT_NAME"]
    if tool_json("relation-get", "-r", rid, "receivers", mine) != "[]":
        tool("relation-set", "-r", rid, "receivers=[]")


def action_set(results):
    """action-set each key; a value too long for one argv string goes to a file,
    given as <key>-path."""
    for key, value in results.items():
        if len(value.encode("utf-8")) > ACTION_VALUE_LIMIT:
            os.makedirs(DATA_DIR, mode=0o755, exist_ok=True)
            path = os.path.join(DATA_DIR, f"action-{key}.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(value)
            os.chmod(path, 0o644)
            tool("action-set", f"{key}-path={path}")
        else:
            tool("action-set", f"{key}={value}")


# ---------------------------------------------------------------------------
# hooks and actions
# ---------------------------------------------------------------------------

def reconcile():
    rid, principal, text = relation_state()
    if rid is None:
        status("waiting", "no cos-agent relation")
        return
    publish_receivers(rid)
    if text is None:
        status("waiting", "waiting for config")
        return
    try:
        _, _, (jobs, groups, dashboards) = validate(text)
    except ConfigError as e:
        log(f"config from {principal} is invalid: {e}", "WARNING")
        status("blocked", f"invalid config: {e}")
        return
    status("active", f"{jobs} jobs, {groups} rule groups, {dashboards} dashboards")


def get_config():
    rid, principal, text = relation_state()
    if rid is None:
        return fail("no cos-agent relation")
    if text is None:
        return fail("no config yet")
    results = {"config": text, "principal": principal}
    try:
        _, dashboards, _ = validate(text)
    except ConfigError as e:
        results["error"] = str(e)
        try:
            dashboards = decodable_dashboards(parse_config(text))
        except ConfigError:
            dashboards = []
    results["dashboards"] = compact(dashboards)
    action_set(results)


def scrape():
    rid, principal, text = relation_state()
    if rid is None:
        return fail("no cos-agent relation")
    if text is None:
        return fail("no config yet")
    try:
        cfg = parse_config(text)
    except ConfigError as e:
        return fail(f"invalid config: {e}")
    if not isinstance(cfg.get("metrics_scrape_jobs"), list):
        return fail("invalid config: metrics_scrape_jobs is not an array")
    results = scrape_all(cfg, topology_labels(principal))
    for r in results:
        tool("action-log", "--", f"{r['job']} {r['target']}: ok={r['ok']} status={r['status']} "
             f"bytes={r['bytes']} promtool_rc={r['promtool_rc']} error={r['error']}",
             check=False)
    action_set({"results": compact(results)})


def hook(name):
    if name not in ("stop", "remove"):
        reconcile()


if __name__ == "__main__":
    run("cos-agent", {"get-config": get_config, "scrape": scrape}, hook)
