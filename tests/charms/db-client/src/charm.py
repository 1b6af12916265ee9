#!/usr/bin/python3
"""db-client: a minimal postgresql_client v0 requirer (like data-integrator).

On every hook the leader makes its app databag on the `database` relation
equal to the wanted request (interfaces.md 2.1), built from config:

- `database` = database-name (when non-empty);
- `requested-secrets` = requested-secrets verbatim (`none` or "": no key);
- `extra-user-roles` = extra-user-roles (when non-empty);
- then `raw` (JSON object; string values verbatim, "" or null deletes, other
  JSON values as their JSON text), overriding the keys above;
- then `raw-hex` (JSON object key -> hex; bytes on relation-set's argv, so
  invalid UTF-8 can be sent; "" deletes).

Keys in the databag that are not wanted are deleted; nothing is written when
the databag already matches. Normal keys go with `relation-set --app
--file -` (JSON on stdin), raw-hex keys with a second relation-set whose
argv is built as bytes.

Status: blocked "invalid raw: ..." / "invalid raw-hex: ..." (databag left
alone), blocked "set database-name", blocked "no database relation", waiting
"waiting for credentials" until the provider app databag has `secret-user` or
`username`, then active "received credentials for <database>".

Actions: get-credentials (credentials from the provider's databag and the
`secret-user` / `secret-tls` secrets, plus `databag`), get-request (own app
databag, leader only).

Passwords and secret contents are never logged.
"""

import json
import os

from charmtools import (fail, is_leader, live_relations, log, own_app, run, status, tool,
                        tool_json)

ENDPOINT = "database"
DEFAULT_REQUESTED_SECRETS = '["username","password","tls","tls-ca","uris","read-only-uris"]'
CREDENTIAL_FIELDS = ("username", "password", "endpoints", "read-only-endpoints", "database",
                     "version", "tls", "tls-ca", "uris", "read-only-uris", "prefix-databases")
SECRET_KEYS = ("secret-user", "secret-tls")


def yaml_safe_json(obj):
    """JSON text that YAML parsers (relation-set --file reads YAML) load to the same
    strings: characters YAML treats as line breaks or refuses as non-printable are
    written as \\u escapes; everything else (non-BMP included) stays literal."""
    out = []
    for c in json.dumps(obj, ensure_ascii=False, sort_keys=True):
        o = ord(c)
        if o <= 0xFFFF and (c in "\x85\u2028\u2029\ufeff" or 0x7F <= o <= 0x9F
                            or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF)):
            out.append("\\u%04x" % o)
        else:
            out.append(c)
    return "".join(out)


# ---------------------------------------------------------------------------
# the wanted request
# ---------------------------------------------------------------------------

def wanted(cfg):
    """(want, want_hex, error): normal keys -> str, raw-hex keys -> non-empty bytes."""
    want = {}
    db = cfg.get("database-name") or ""
    if db:
        want["database"] = db
    rs = cfg.get("requested-secrets")
    if rs is None:
        rs = DEFAULT_REQUESTED_SECRETS
    if rs not in ("none", ""):
        want["requested-secrets"] = rs
    roles = cfg.get("extra-user-roles") or ""
    if roles:
        want["extra-user-roles"] = roles

    raw_text = cfg.get("raw") or ""
    if raw_text.strip():
        try:
            raw = json.loads(raw_text)
        except ValueError as e:
            return None, None, f"invalid raw: not JSON ({e})"
        if not isinstance(raw, dict):
            return None, None, "invalid raw: not a JSON object"
        for k, v in raw.items():
            if v is None or v == "":
                want.pop(k, None)
            elif isinstance(v, str):
                want[k] = v
            else:
                want[k] = json.dumps(v)

    want_hex = {}
    hex_text = cfg.get("raw-hex") or ""
    if hex_text.strip():
        try:
            raw_hex = json.loads(hex_text)
        except ValueError as e:
            return None, None, f"invalid raw-hex: not JSON ({e})"
        if not isinstance(raw_hex, dict):
            return None, None, "invalid raw-hex: not a JSON object"
        for k, v in raw_hex.items():
            if not isinstance(v, str):
                return None, None, f"invalid raw-hex: value of {k!r} is not a string"
            try:
                value = bytes.fromhex(v)
            except ValueError:
                return None, None, f"invalid raw-hex: value of {k!r} is not hex"
            if "=" in k or not k:
                return None, None, f"invalid raw-hex: key {k!r} is empty or has '='"
            try:
                os.fsencode(k)
            except UnicodeError:
                return None, None, f"invalid raw-hex: key {k!r} is not encodable"
            want.pop(k, None)
            if value:
                want_hex[k] = value
            else:
                want_hex.pop(k, None)
    return want, want_hex, None


# ---------------------------------------------------------------------------
# relation
# ---------------------------------------------------------------------------

def own_databag(rid):
    return tool_json("relation-get", "-r", rid, "--app", "-", own_app()) or {}


def remote_app(rid):
    return tool_json("relation-list", "-r", rid, "--app") or None


def provider_databag(rid):
    app = remote_app(rid)
    if not app:
        return {}
    return tool_json("relation-get", "-r", rid, "--app", "-", app) or {}


def current_bytes(rid, key):
    """The raw bytes of one key of our app databag (None when it cannot be read
    individually)."""
    if key == "-":
        return None
    out = tool("relation-get", "-r", rid, "--app", "--", key, own_app()).stdout_bytes
    return out[:-1] if out.endswith(b"\n") else out


def sync(rid, want, want_hex):
    current = own_databag(rid)
    changes = {k: v for k, v in want.items() if current.get(k) != v}
    deleted = sorted(k for k in current if k not in want and k not in want_hex)
    for k in deleted:
        changes[k] = ""
    if changes:
        tool("relation-set", "-r", rid, "--app", "--file", "-", input=yaml_safe_json(changes))
    hex_changes = [k for k, v in want_hex.items() if current_bytes(rid, k) != v]
    if hex_changes:
        argv = [b"relation-set", b"-r", rid.encode(), b"--app", b"--"]
        argv += [os.fsencode(k) + b"=" + want_hex[k] for k in hex_changes]
        tool(*argv)
    written = sorted(k for k in changes if changes[k] != "")
    if changes or hex_changes:
        db = want.get("database")
        if "database" in want_hex:
            db = want_hex["database"].decode("utf-8", "backslashreplace")
        log(f"{rid}: wrote {written}, raw-hex {sorted(hex_changes)}, deleted {deleted}; "
            f"database={db!r}")


# ---------------------------------------------------------------------------
# hooks and actions
# ---------------------------------------------------------------------------

def reconcile():
    cfg = tool_json("config-get") or {}
    want, want_hex, err = wanted(cfg)
    if err:
        status("blocked", err)
        return
    rids = list(live_relations(ENDPOINT))
    if rids and is_leader():
        for rid in rids:
            sync(rid, want, want_hex)
    if "database" not in want and "database" not in want_hex:
        status("blocked", "set database-name")
        return
    if not rids:
        status("blocked", "no database relation")
        return
    data = provider_databag(rids[0])
    if "secret-user" not in data and "username" not in data:
        status("waiting", "waiting for credentials")
        return
    db = data.get("database", want.get("database", ""))
    status("active", f"received credentials for {db}")


def get_credentials():
    rids = list(live_relations(ENDPOINT))
    if not rids:
        return fail("no database relation")
    data = provider_databag(rids[0])
    if "secret-user" not in data and "username" not in data:
        return fail("no credentials yet")
    results = {f: data[f] for f in CREDENTIAL_FIELDS if isinstance(data.get(f), str)}
    for key in SECRET_KEYS:
        uri = data.get(key)
        if not uri:
            continue
        p = tool("secret-get", uri, "--refresh", "--format", "json", check=False)
        if p.returncode != 0:
            return fail(f"cannot read {key}: {p.stderr.strip()}")
        try:
            content = json.loads(p.stdout)
        except ValueError:
            return fail(f"cannot read {key}: secret-get printed no JSON")
        if not isinstance(content, dict):
            return fail(f"cannot read {key}: content is not a map")
        for f in CREDENTIAL_FIELDS:
            if isinstance(content.get(f), str):
                results[f] = content[f]
    results["databag"] = json.dumps(data, sort_keys=True)
    tool("action-set", *[f"{k}={v}" for k, v in sorted(results.items())])


def get_request():
    if not is_leader():
        return fail("not the leader")
    rids = list(live_relations(ENDPOINT))
    if not rids:
        return fail("no database relation")
    tool("action-set", "databag=" + json.dumps(own_databag(rids[0]), sort_keys=True))


def hook(name):
    if name not in ("stop", "remove"):
        reconcile()


if __name__ == "__main__":
    run("db-client", {"get-credentials": get_credentials, "get-request": get_request}, hook)
