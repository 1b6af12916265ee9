"""Hook-tool helpers shared by the test charms (db-client, pgbouncer, tls-provider, tls-requirer).
tests/conftest.py pack_charm copies this file into each charm's src/ when it packs it."""

import json
import os
import subprocess
import sys


class ToolError(Exception):
    pass


class Result:
    """A finished hook tool: returncode, stdout_bytes (as printed), stdout (UTF-8,
    undecodable bytes kept as surrogates) and stderr (UTF-8, undecodable bytes
    replaced)."""

    def __init__(self, p):
        self.returncode = p.returncode
        self.stdout_bytes = p.stdout
        self.stdout = p.stdout.decode("utf-8", "surrogateescape")
        self.stderr = p.stderr.decode("utf-8", "replace")


def _arg(a):
    if isinstance(a, bytes):
        return a
    try:
        return os.fsencode(str(a))
    except UnicodeError:
        return str(a).encode("utf-8", "replace")


def tool(*args, input=None, check=True):
    """Run a hook tool; args and input may be str or bytes (bytes pass as they are,
    so invalid UTF-8 can be sent). Errors name the tool only (never argv, which may
    hold credentials, e.g. action-set)."""
    argv = [_arg(a) for a in args]
    if isinstance(input, str):
        input = input.encode("utf-8")
    p = Result(subprocess.run(argv, input=input, capture_output=True))
    if check and p.returncode != 0:
        raise ToolError(f"{os.fsdecode(argv[0])} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def tool_json(*args):
    out = tool(*args, "--format", "json").stdout.strip()
    return json.loads(out) if out else None


def log(msg, level="INFO"):
    tool("juju-log", "--log-level", level, "--", msg, check=False)


def status(state, msg):
    tool("status-set", state, "--", msg)


def event():
    """(kind, name): ("action", action), ("hook", hook) or ("exec", "reconcile")."""
    dp = os.environ.get("JUJU_DISPATCH_PATH", "")
    if dp.startswith("actions/"):
        return "action", os.environ.get("JUJU_ACTION_NAME") or dp[len("actions/"):]
    if os.environ.get("JUJU_HOOK_NAME"):
        return "hook", os.environ["JUJU_HOOK_NAME"]
    if dp.startswith("hooks/"):
        return "hook", dp[len("hooks/"):]
    return "exec", "reconcile"


def is_leader():
    return tool_json("is-leader") is True


def own_app():
    return os.environ["JUJU_UNIT_NAME"].rsplit("/", 1)[0]


def live_relations(endpoint):
    """Yield (lazily) the relation ids of `endpoint` this unit is in scope of, except
    one being broken (a relation can be listed before relation-created/joined while
    its data still says `permission denied`)."""
    broken = event()[1] == f"{endpoint}-relation-broken"
    for rid in tool_json("relation-ids", endpoint) or []:
        if broken and rid == os.environ.get("JUJU_RELATION_ID"):
            continue
        p = tool("relation-get", "-r", rid, "-", os.environ["JUJU_UNIT_NAME"], check=False)
        if p.returncode == 0:
            yield rid
        elif "permission denied" not in p.stderr:
            raise ToolError(f"relation-get -r {rid}: {p.stderr.strip()}")


def fail(msg):
    tool("action-fail", "--", msg)


def run(charm, actions, hook, errors=()):
    """Handle this dispatch and exit: actions[name]() for an action (action-fail when
    unknown), hook(name) otherwise. A ToolError, or one of `errors`, fails the hook:
    "<charm>: <error>" on stderr, logged at ERROR, exit 1."""
    try:
        kind, name = event()
        if kind == "action":
            if name in actions:
                actions[name]()
            else:
                fail(f"unknown action {name!r}")
        else:
            hook(name)
    except (ToolError, *errors) as e:
        print(f"{charm}: {e}", file=sys.stderr)
        log(f"hook failed: {e}", "ERROR")
        sys.exit(1)
    sys.exit(0)
