#!/usr/bin/python3
"""Build the static part of the cos_agent `config` databag value.

    cos_bundle.py --root <charm source root> --charm-name postgresql --out <file>

writes one JSON object

    {"metrics_alert_rules": {"groups": [...]},
     "log_alert_rules": {...} or {},
     "dashboards": ["/Td6WFo...", ...]}

from src/prometheus_alert_rules/*.yaml, src/loki_alert_rules/*.yaml and
src/grafana_dashboards/*.json (see interfaces.md section 3.1).  The agent
completes it at run time: it prefixes group names with model, model-uuid and
application, suffixes them with `_alerts`, and replaces the placeholder
`%%juju_topology%%` with `juju_model="…",juju_model_uuid="…",juju_application="…"`.

Rules: every group of every file becomes `<file stem>_<group name>`, plus a
`generic` group (HostDown, HostMetricsMissing) like the reference library.
The placeholder is inserted as an extra label matcher into every vector
selector of every PromQL expression.  LogQL expressions are not rewritten:
they must already carry the placeholder in their stream selectors.

Dashboards: `uid` = shake_256("<charm>-<path relative to root>") as 40 hex
characters, tag `charm: <charm>` appended unless a `charm: ` tag exists, then
compact sorted JSON -> UTF-8 -> lzma (XZ container) -> base64.

The output is byte-for-byte reproducible (sorted files, sorted keys).

Why a hand-written PromQL tokenizer: the reference library shells out to
cos-tool (Go) to inject label matchers, and there is no PromQL parser for
Python in Debian.  Inserting a matcher only needs to know where the vector
selectors are, which a small tokenizer with a bracket stack can tell:
strings (with escapes), numbers, durations, identifiers, label-matcher
braces, range/subquery brackets, comments, and the keywords after which a
parenthesised list holds label names instead of expressions (`by`,
`without`, `on`, `ignoring`, `group_left`, `group_right`).  An identifier
followed by `(` is a function or aggregation; any other identifier that is
not a keyword is a metric name.  It does not check full PromQL grammar:
tests/cos/test_rules.py runs `promtool check rules` on the injected output,
so a wrong rewrite cannot go unnoticed.
"""

import argparse
import base64
import collections
import copy
import hashlib
import json
import lzma
import os
import re
import sys

PLACEHOLDER = "%%juju_topology%%"

METRICS_RULES_DIR = "src/prometheus_alert_rules"
LOG_RULES_DIR = "src/loki_alert_rules"
DASHBOARDS_DIR = "src/grafana_dashboards"


class BundleError(Exception):
    """Invalid input (YAML, JSON, rule structure, expression)."""


class PromQLError(BundleError):
    """An expression the tokenizer cannot handle."""


# --------------------------------------------------------------------------
# PromQL tokenizer

Token = collections.namedtuple("Token", "kind text pos")
# kinds: ws comment string number duration ident punct placeholder tmplvar

Selector = collections.namedtuple("Selector", "name matchers has_placeholder")
# name: metric identifier or None; matchers: tuple of (label, op, value)

AGGREGATORS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk "
    "quantile limitk limit_ratio".split())
GROUPING = frozenset("by without on ignoring group_left group_right".split())
BINARY_KEYWORDS = frozenset("and or unless atan2".split())
MODIFIERS = frozenset(["bool", "offset"])
NUMBER_WORDS = frozenset(["inf", "nan"])

_WS = re.compile(r"\s+")
_COMMENT = re.compile(r"#[^\n]*")
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_.])")
_NUMBER = re.compile(
    r"(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"(?![A-Za-z0-9_.])")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_:]*")
_IDENT_COLON = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_STRINGS = {
    '"': re.compile(r'"(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"'(?:[^'\\\n]|\\.)*'"),
    "`": re.compile(r"`[^`]*`"),
}
_TMPLVAR = re.compile(r"\$(?:\{[^}\s]+\}|[A-Za-z_][A-Za-z0-9_]*)")
_PUNCT = ("==", "!=", ">=", "<=", "=~", "!~",
          "+", "-", "*", "/", "%", "^", ">", "<", "=",
          "(", ")", "{", "}", "[", "]", ",", "@", ":")
_MATCH_OPS = frozenset(["=", "!=", "=~", "!~"])
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def tokenize(expr, grafana=False):
    """Split a PromQL expression into tokens (whitespace and comments kept,
    so that joining the texts gives back the expression).  With grafana=True
    Grafana template variables ($var, ${var}) are accepted as tokens."""
    if not isinstance(expr, str):
        raise PromQLError(f"expression is not a string: {expr!r}")
    tokens = []
    pos = 0
    brackets = 0  # inside [...] a ':' separates subquery range and step
    n = len(expr)
    while pos < n:
        c = expr[pos]
        m = None
        kind = None
        if c.isspace():
            m, kind = _WS.match(expr, pos), "ws"
        elif c == "#":
            m, kind = _COMMENT.match(expr, pos), "comment"
        elif c in _STRINGS:
            m, kind = _STRINGS[c].match(expr, pos), "string"
            if m is None:
                raise PromQLError(f"unterminated string at offset {pos}: {expr!r}")
        elif expr.startswith(PLACEHOLDER, pos):
            tokens.append(Token("placeholder", PLACEHOLDER, pos))
            pos += len(PLACEHOLDER)
            continue
        elif c.isdigit() or (c == "." and pos + 1 < n and expr[pos + 1].isdigit()):
            m, kind = _DURATION.match(expr, pos), "duration"
            if m is None:
                m, kind = _NUMBER.match(expr, pos), "number"
            if m is None:
                raise PromQLError(f"bad number or duration at offset {pos}: {expr!r}")
        elif c.isalpha() or c == "_" or (c == ":" and brackets == 0):
            m = (_IDENT_COLON if brackets == 0 else _IDENT).match(expr, pos)
            kind = "ident"
        elif c == "$" and grafana:
            m, kind = _TMPLVAR.match(expr, pos), "tmplvar"
            if m is None:
                raise PromQLError(f"bad template variable at offset {pos}: {expr!r}")
        else:
            for p in _PUNCT:
                if expr.startswith(p, pos):
                    tokens.append(Token("punct", p, pos))
                    pos += len(p)
                    if p == "[":
                        brackets += 1
                    elif p == "]":
                        brackets -= 1
                    break
            else:
                raise PromQLError(f"unexpected character {c!r} at offset {pos}: {expr!r}")
            continue
        tokens.append(Token(kind, m.group(0), pos))
        pos = m.end()
    return tokens


def unquote(text):
    """Value of a PromQL string literal (Go escapes; backquotes are raw)."""
    if text[0] == "`":
        return text[1:-1]
    body = text[1:-1]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise PromQLError(f"bad escape in string {text}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif e in "01234567":
            digits = body[i + 1:i + 4]
            if not re.fullmatch(r"[0-7]{3}", digits):
                raise PromQLError(f"bad escape in string {text}")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise PromQLError(f"unknown escape \\{e} in string {text}")
    return "".join(out)


def _analyse(expr, grafana=False):
    """Tokenize and locate the vector selectors.  Returns (tokens, inserts,
    selectors): inserts maps a token index to the text that goes right after
    that token (`{placeholder}` after a bare metric name, `,placeholder` after
    the last matcher, `placeholder` after `{` or a trailing comma)."""
    tokens = tokenize(expr, grafana)
    sig = [i for i, t in enumerate(tokens) if t.kind not in ("ws", "comment")]
    stack = []          # '(' expression, 'L' label list, '[' range or subquery
    selectors = []
    inserts = {}        # token index -> text to insert after it
    pending_list = False
    k = 0
    while k < len(sig):
        i = sig[k]
        t = tokens[i]
        nxt = tokens[sig[k + 1]] if k + 1 < len(sig) else None
        ctx = stack[-1] if stack else None
        if pending_list:
            pending_list = False
            if t.text == "(" and t.kind == "punct":
                stack.append("L")
                k += 1
                continue
        if ctx == "L":
            prev = tokens[sig[k - 1]]
            after_item = prev.kind == "ident"
            if t.kind == "ident" and not after_item:
                k += 1
                continue
            if t.kind == "punct" and t.text == ")":
                stack.pop()             # also after a trailing comma, like Prometheus
                k += 1
                continue
            if t.kind == "punct" and t.text == "," and after_item:
                k += 1
                continue
            raise PromQLError(f"unexpected {t.text!r} in a label list at offset {t.pos}: {expr!r}")
        if ctx == "[":
            if t.kind in ("duration", "number", "tmplvar") or t.text == ":":
                k += 1
                continue
            if t.text == "]":
                stack.pop()
                k += 1
                continue
            raise PromQLError(f"unexpected {t.text!r} in a range at offset {t.pos}: {expr!r}")
        if t.kind == "ident":
            low = t.text.lower()
            if low in GROUPING:
                pending_list = True
            elif low in AGGREGATORS or low in BINARY_KEYWORDS or low in MODIFIERS \
                    or low in NUMBER_WORDS:
                pass
            elif nxt is not None and nxt.text == "(" and nxt.kind == "punct":
                pass    # function call
            elif nxt is not None and nxt.text == "{" and nxt.kind == "punct":
                k = _matchers(expr, tokens, sig, k + 1, t.text, selectors, inserts)
                continue
            else:
                selectors.append(Selector(t.text, (), False))
                inserts[i] = "{" + PLACEHOLDER + "}"
            k += 1
            continue
        if t.kind == "punct":
            if t.text == "{":
                k = _matchers(expr, tokens, sig, k, None, selectors, inserts)
                continue
            if t.text in ("(", "["):
                stack.append(t.text)
            elif t.text == ")":
                if ctx != "(":
                    raise PromQLError(f"unbalanced ')' at offset {t.pos}: {expr!r}")
                stack.pop()
            elif t.text in ("]", "}"):
                raise PromQLError(f"unbalanced {t.text!r} at offset {t.pos}: {expr!r}")
            elif t.text in ("=", ":"):
                raise PromQLError(f"unexpected {t.text!r} at offset {t.pos}: {expr!r}")
        elif t.kind == "placeholder":
            raise PromQLError(f"{PLACEHOLDER} outside label matchers at offset {t.pos}: {expr!r}")
        k += 1
    if stack:
        raise PromQLError(f"unclosed {stack[-1].replace('L', '(')!r}: {expr!r}")
    return tokens, inserts, selectors


def _matchers(expr, tokens, sig, k, name, selectors, inserts):
    """Parse `{ matcher, ... }` with sig[k] the '{'.  Records the selector
    and where the placeholder goes; returns the sig index after the '}'."""
    open_index = sig[k]
    where = open_index          # token after which the placeholder goes
    prefix = ""
    matchers = []
    has_placeholder = False
    expect_item = True
    k += 1
    while True:
        if k >= len(sig):
            raise PromQLError(f"unclosed '{{' at offset {tokens[open_index].pos}: {expr!r}")
        i = sig[k]
        t = tokens[i]
        if t.kind == "punct" and t.text == "}":
            break
        if not expect_item:
            if t.text != ",":
                raise PromQLError(f"expected ',' or '}}' at offset {t.pos}: {expr!r}")
            expect_item = True
            where, prefix = i, ""
            k += 1
            continue
        if t.kind == "placeholder":
            has_placeholder = True
            k += 1
        elif t.kind == "ident" and k + 2 < len(sig):
            op, val = tokens[sig[k + 1]], tokens[sig[k + 2]]
            if op.kind != "punct" or op.text not in _MATCH_OPS:
                raise PromQLError(f"expected a matcher operator at offset {op.pos}: {expr!r}")
            if val.kind != "string":
                raise PromQLError(f"expected a string at offset {val.pos}: {expr!r}")
            matchers.append((t.text, op.text, unquote(val.text)))
            where, prefix = sig[k + 2], ","
            k += 3
        else:
            raise PromQLError(f"unexpected {t.text!r} in label matchers at offset {t.pos}: {expr!r}")
        expect_item = False
    if not has_placeholder:
        inserts[where] = prefix + PLACEHOLDER
    if name is None:
        for label, op, value in matchers:
            if label == "__name__" and op == "=":
                name = value
    selectors.append(Selector(name, tuple(matchers), has_placeholder))
    return k + 1


def inject(expr, grafana=False):
    """Return expr with %%juju_topology%% added to every vector selector
    (selectors that already carry it are left alone)."""
    tokens, inserts, _ = _analyse(expr, grafana)
    out = []
    for i, t in enumerate(tokens):
        out.append(t.text)
        if i in inserts:
            out.append(inserts[i])
    return "".join(out)


def selectors(expr, grafana=False):
    """The vector selectors of expr, as Selector(name, matchers, has_placeholder)
    tuples in order; name is None for `{...}` without a metric name or
    __name__ equality matcher (e.g. a __name__ regex)."""
    return _analyse(expr, grafana)[2]


def metric_names(expr, grafana=False):
    """Set of metric names expr selects by name (identifier or __name__="x").
    Selectors by __name__ regex contribute nothing: see selectors()."""
    return {s.name for s in selectors(expr, grafana) if s.name is not None}


# --------------------------------------------------------------------------
# Bundle


def _load_yaml(path):
    import yaml  # Debian python3-yaml; imported late so the tokenizer needs nothing
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: invalid YAML: {e}") from None


def _files(root, subdir, suffixes):
    d = os.path.join(root, subdir)
    if not os.path.isdir(d):
        return []
    return [os.path.join(d, f) for f in sorted(os.listdir(d))
            if f.endswith(suffixes) and os.path.isfile(os.path.join(d, f))]


def _rule_groups(root, subdir, query_type):
    groups = []
    for path in _files(root, subdir, (".yaml", ".yml")):
        stem = os.path.splitext(os.path.basename(path))[0]
        doc = _load_yaml(path)
        if doc is None:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
            raise BundleError(f"{path}: expected a rule file with a 'groups' list")
        for g in doc["groups"]:
            if not isinstance(g, dict) or not isinstance(g.get("name"), str) \
                    or not isinstance(g.get("rules"), list):
                raise BundleError(f"{path}: every group needs a 'name' and a 'rules' list")
            group = copy.deepcopy(g)
            group["name"] = f"{stem}_{g['name']}"
            for rule in group["rules"]:
                _check_rule(path, rule)
                try:
                    if query_type == "promql":
                        rule["expr"] = inject(rule["expr"])
                    elif PLACEHOLDER not in rule["expr"]:
                        raise BundleError(
                            f"LogQL expression without {PLACEHOLDER} in its stream selector")
                except BundleError as e:
                    raise BundleError(f"{path}: rule {_rule_name(rule)}: {e}") from None
            groups.append(group)
    return groups


def _rule_name(rule):
    return rule.get("alert") or rule.get("record") or "?"


def _check_rule(path, rule):
    if not isinstance(rule, dict):
        raise BundleError(f"{path}: a rule is not a mapping: {rule!r}")
    if ("alert" in rule) == ("record" in rule):
        raise BundleError(f"{path}: a rule needs exactly one of 'alert' and 'record': {rule!r}")
    if not isinstance(rule.get("expr"), str):
        raise BundleError(f"{path}: rule {_rule_name(rule)}: 'expr' must be a string")


GENERIC_GROUP = {
    "name": "generic",
    "rules": [
        {
            "alert": "HostDown",
            "expr": "up < 1",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Host '{{ $labels.instance }}' is down.",
                "description": "Host '{{ $labels.instance }}' is down, failed to scrape.\n"
                               "  VALUE = {{ $value }}\n  LABELS = {{ $labels }}",
            },
        },
        {
            "alert": "HostMetricsMissing",
            "expr": "absent(up)",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Metrics not received from host '{{ $labels.instance }}'.",
                "description": "The metrics of host '{{ $labels.instance }}' have been "
                               "missing for 5 minutes.\n  VALUE = {{ $value }}\n"
                               "  LABELS = {{ $labels }}",
            },
        },
    ],
}


def metrics_alert_rules(root):
    groups = _rule_groups(root, METRICS_RULES_DIR, "promql")
    generic = copy.deepcopy(GENERIC_GROUP)
    for rule in generic["rules"]:
        rule["expr"] = inject(rule["expr"])
    groups.append(generic)
    _check_unique(groups)
    return {"groups": groups}


def log_alert_rules(root):
    groups = _rule_groups(root, LOG_RULES_DIR, "logql")
    _check_unique(groups)
    return {"groups": groups} if groups else {}


def _check_unique(groups):
    seen = set()
    for g in groups:
        if g["name"] in seen:
            raise BundleError(f"duplicate rule group name {g['name']!r}")
        seen.add(g["name"])


def decode_dashboard(s):
    """Inverse of the dashboard encoding: base64 -> xz -> UTF-8 JSON -> dict."""
    return json.loads(lzma.decompress(base64.b64decode(s)).decode("utf-8"))


def encode_dashboard(dashboard):
    data = json.dumps(dashboard, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    return base64.b64encode(lzma.compress(data)).decode("ascii")


def dashboards(root, charm_name):
    out = []
    for path in _files(root, DASHBOARDS_DIR, (".json",)):
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise BundleError(f"{path}: invalid JSON: {e}") from None
        if not isinstance(d, dict):
            raise BundleError(f"{path}: a dashboard must be a JSON object")
        rel = os.path.relpath(path, root)
        d["uid"] = hashlib.shake_256(f"{charm_name}-{rel}".encode()).hexdigest(20)
        tags = d.get("tags")
        if not isinstance(tags, list):
            tags = []
        if not any(isinstance(t, str) and t.startswith("charm: ") for t in tags):
            tags = tags + [f"charm: {charm_name}"]
        d["tags"] = tags
        out.append(encode_dashboard(d))
    return out


def build(root, charm_name):
    if not os.path.isdir(root):
        raise BundleError(f"{root}: not a directory")
    return {
        "metrics_alert_rules": metrics_alert_rules(root),
        "log_alert_rules": log_alert_rules(root),
        "dashboards": dashboards(root, charm_name),
    }


def render(bundle):
    return json.dumps(bundle, sort_keys=True, separators=(",", ":")) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="charm source root")
    ap.add_argument("--charm-name", required=True)
    ap.add_argument("--out", required=True, help="output JSON file")
    args = ap.parse_args(argv)
    try:
        text = render(build(args.root, args.charm_name))
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(text)
        os.replace(tmp, args.out)
    except (BundleError, OSError) as e:
        print(f"cos_bundle.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
