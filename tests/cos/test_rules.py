"""COS artefacts: alert rules, promtool unit tests, the cos_agent bundle
(scripts/cos_bundle.py and its PromQL tokenizer), the Grafana dashboards and
the exporter's custom queries against a real throwaway PostgreSQL 15.

    /usr/bin/pytest-3 -q tests/cos

Fast and model-free; the exporter test starts a primary and a hot standby
in a temporary directory (needs root to run them as OS user postgres).
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import cos_bundle  # noqa: E402

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
EXPORTER = shutil.which("prometheus-postgres-exporter") or "/usr/bin/prometheus-postgres-exporter"
PGBIN = Path("/usr/lib/postgresql/15/bin")
PYTHON = "/usr/bin/python3"

RULES_DIR = ROOT / "src" / "prometheus_alert_rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yaml"))
LOG_RULE_FILES = sorted((ROOT / "src" / "loki_alert_rules").glob("*.yaml"))
PROMTOOL_TESTS = sorted((ROOT / "tests" / "cos" / "promtool").glob("*.yaml"))
DASHBOARD_FILES = sorted((ROOT / "src" / "grafana_dashboards").glob("*.json"))
QUERIES = ROOT / "src" / "postgres_exporter" / "queries.yaml"

TOPOLOGY = {
    "juju_model": "cos-test",
    "juju_model_uuid": "0f5a3c1e-6b7d-4e8f-9a0b-1c2d3e4f5a6b",
    "juju_application": "postgresql",
}
TOPOLOGY_MATCHERS = ",".join(f'{k}="{v}"' for k, v in TOPOLOGY.items())
TOPOLOGY_LABELS = ("juju_model", "juju_model_uuid", "juju_application")

# What the agent serves on its REST API /metrics (the lead's contract).
AGENT_METRICS = {
    "patroni_version", "patroni_postgres_running", "patroni_postmaster_start_time",
    "patroni_primary", "patroni_replica", "patroni_standby_leader", "patroni_sync_standby",
    "patroni_xlog_location", "patroni_xlog_received_location",
    "patroni_xlog_replayed_location", "patroni_xlog_replayed_timestamp", "patroni_xlog_paused",
    "patroni_postgres_streaming", "patroni_postgres_in_archive_recovery",
    "patroni_postgres_server_version", "patroni_postgres_timeline", "patroni_cluster_unlocked",
    "patroni_failsafe_mode_is_active", "patroni_dcs_last_seen", "patroni_pending_restart",
    "patroni_is_paused",
    "pg_agent_lease_remaining_seconds", "pg_agent_fencing_events_total",
    "pg_agent_promotions_total", "pg_agent_demotions_total", "pg_agent_dcs_reachable",
    "pg_agent_etcd_quorum", "pg_agent_certificate_expiry_timestamp_seconds",
    "pg_agent_hook_duration_seconds_bucket", "pg_agent_hook_duration_seconds_sum",
    "pg_agent_hook_duration_seconds_count",
}

# Alerts the brief asks for (Charmed PostgreSQL names where they exist).
REQUIRED_ALERTS = {
    "PostgresqlDown", "PostgresqlRestarted", "PostgresqlExporterError",
    "PostgresqlTooManyConnections", "PostgresqlDeadLocks", "PostgresqlHighRollbackRate",
    "PostgresqlUnusedReplicationSlot", "PostgresqlConfigurationChanged",
    "PostgresqlTableNotAutoVacuumed", "PostgresqlTableNotAutoAnalyzed",
    "PostgresqlTooManyDeadTuples", "PostgresqlInvalidIndex", "PostgresqlTooManyLocksAcquired",
    "PostgresqlReplicationLag", "PatroniPostgresqlDown", "PatroniHasNoLeader",
    "PatroniMultipleLeaders", "PgAgentFencing", "PgAgentEtcdNoQuorum", "PgAgentLeaseShort",
    "PgAgentFailover", "PgAgentCertificateExpiresSoon", "PgAgentHookSlow",
    "PgAgentDcsUnreachable",
}


def run(cmd, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def source_alerts():
    """[(file, group, rule)] of every alerting rule in src/prometheus_alert_rules."""
    out = []
    for path in RULE_FILES:
        for g in load_yaml(path)["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    out.append((path, g, r))
    return out


def dashboard_targets():
    """[(file, panel, target)] of every query of every dashboard panel."""
    out = []
    for path in DASHBOARD_FILES:
        d = json.loads(path.read_text(encoding="utf-8"))
        for p in all_panels(d):
            for t in p.get("targets", []):
                out.append((path, p, t))
    return out


def all_panels(d):
    for p in d.get("panels", []):
        yield p
        yield from p.get("panels", [])     # collapsed rows keep theirs inside


def used_metric_names():
    """(names, regex selectors) used by the rules and dashboards."""
    names, regexes = set(), []
    exprs = [r["expr"] for _, _, r in source_alerts()]
    exprs_g = [t["expr"] for _, _, t in dashboard_targets()]
    for e in exprs:
        names |= cos_bundle.metric_names(e)
        regexes += [s for s in cos_bundle.selectors(e) if s.name is None]
    for e in exprs_g:
        names |= cos_bundle.metric_names(e, grafana=True)
        regexes += [s for s in cos_bundle.selectors(e, grafana=True) if s.name is None]
    return names, regexes


# ---------------------------------------------------------------- rule files

def test_rule_files_exist():
    assert {p.name for p in RULE_FILES} >= {
        "postgresql_rules.yaml", "patroni_rules.yaml", "pg_agent_rules.yaml"}
    assert PROMTOOL_TESTS, "no promtool tests"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path):
    r = run([PROMTOOL, "check", "rules", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(path):
    r = run([PROMTOOL, "test", "rules", str(path)], cwd=path.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def test_required_alerts_present_and_unique():
    names = [r["alert"] for _, _, r in source_alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert REQUIRED_ALERTS <= set(names), REQUIRED_ALERTS - set(names)


@pytest.mark.parametrize("path,group,rule", source_alerts(),
                         ids=[r["alert"] for _, _, r in source_alerts()])
def test_alert_fields(path, group, rule):
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    for k in ("summary", "description"):
        assert isinstance(rule["annotations"].get(k), str) and rule["annotations"][k].strip()
    if "for" in rule:
        assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), rule["for"]
    # `by (...)` and `on (...)` keep the Juju topology so that rules and the
    # injected matchers agree across units and applications.
    tokens = [t for t in cos_bundle.tokenize(rule["expr"]) if t.kind not in ("ws", "comment")]
    for i, t in enumerate(tokens):
        if t.kind == "ident" and t.text.lower() in ("by", "on") and tokens[i + 1].text == "(":
            j = i + 2
            labels = set()
            while tokens[j].text != ")":
                if tokens[j].kind == "ident":
                    labels.add(tokens[j].text)
                j += 1
            assert set(TOPOLOGY_LABELS) <= labels, f"{t.text} ({', '.join(sorted(labels))})"


def _promtool_cases():
    """{alertname: {"fire": n, "silent": n}} from the promtool test files,
    each case attributed to the rule files the test file loads."""
    cases = {}
    for path in PROMTOOL_TESTS:
        doc = load_yaml(path)
        loaded = {(path.parent / f).resolve() for f in doc["rule_files"]}
        loaded_alerts = {r["alert"] for p, _, r in source_alerts() if p.resolve() in loaded}
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                name = case["alertname"]
                assert name in loaded_alerts, f"{path.name}: {name} is not in {sorted(loaded)}"
                c = cases.setdefault(name, {"fire": 0, "silent": 0})
                exp = case.get("exp_alerts") or []
                if exp:
                    for a in exp:
                        assert a["exp_labels"].get("severity"), f"{path.name}: {name} without severity"
                    c["fire"] += 1
                else:
                    c["silent"] += 1
    return cases


def test_every_alert_fires_and_stays_silent_in_promtool_tests():
    cases = _promtool_cases()
    missing = []
    for _, _, rule in source_alerts():
        c = cases.get(rule["alert"], {"fire": 0, "silent": 0})
        if not c["fire"]:
            missing.append(f"{rule['alert']}: no firing case")
        if not c["silent"]:
            missing.append(f"{rule['alert']}: no silent case")
    assert not missing, missing


def test_promtool_series_carry_topology():
    for path in PROMTOOL_TESTS:
        for test in load_yaml(path)["tests"]:
            for s in test["input_series"]:
                sel = cos_bundle.selectors(s["series"])
                assert len(sel) == 1
                labels = {m[0] for m in sel[0].matchers}
                assert labels >= {*TOPOLOGY_LABELS, "juju_unit"}, s["series"]


# ---------------------------------------------------------------- tokenizer

P = cos_bundle.PLACEHOLDER

INJECT_CASES = [
    ("m", f"m{{{P}}}"),
    ('m{a="b"}', f'm{{a="b",{P}}}'),
    ("m{}", f"m{{{P}}}"),
    ("m[5m]", f"m{{{P}}}[5m]"),
    ('{__name__="x"}', f'{{__name__="x",{P}}}'),
    ('m{a="b",}', f'm{{a="b",{P}}}'),
    (f"up{{{P}}} < 1", f"up{{{P}}} < 1"),
    (f'up{{a="b",{P}}}', f'up{{a="b",{P}}}'),
    ("sum by (x) (rate(m[5m]))", f"sum by (x) (rate(m{{{P}}}[5m]))"),
    ("sum(rate(m[5m])) by (x, y)", f"sum(rate(m{{{P}}}[5m])) by (x, y)"),
    ("absent(up)", f"absent(up{{{P}}})"),
    ("a / on(job, x) group_left(y) b", f"a{{{P}}} / on(job, x) group_left(y) b{{{P}}}"),
    ("a * ignoring(z) group_right b", f"a{{{P}}} * ignoring(z) group_right b{{{P}}}"),
    ("a > bool 1", f"a{{{P}}} > bool 1"),
    ("a and b or c unless d", f"a{{{P}}} and b{{{P}}} or c{{{P}}} unless d{{{P}}}"),
    ("m offset 5m", f"m{{{P}}} offset 5m"),
    ("rate(m[5m] offset -1h30m)", f"rate(m{{{P}}}[5m] offset -1h30m)"),
    ("m @ end()", f"m{{{P}}} @ end()"),
    ("m @ 1609746000", f"m{{{P}}} @ 1609746000"),
    ("max_over_time(rate(m[1m])[30m:1m])", f"max_over_time(rate(m{{{P}}}[1m])[30m:1m])"),
    ("deriv(m[5m:])", f"deriv(m{{{P}}}[5m:])"),
    ('m{a="}{\\"{"}', f'm{{a="}}{{\\"{{",{P}}}'),
    ("m{a='{'}", f"m{{a='{{',{P}}}"),
    ("m{a=`\\{`}", f"m{{a=`\\{{`,{P}}}"),
    ("m # comment with {braces} and n\n+ n", f"m{{{P}}} # comment with {{braces}} and n\n+ n{{{P}}}"),
    ('label_replace(up, "a", "$1", "b", "(.*)")', f'label_replace(up{{{P}}}, "a", "$1", "b", "(.*)")'),
    ('count_values("v", m)', f'count_values("v", m{{{P}}})'),
    ("topk(5, m) + quantile(0.9, n)", f"topk(5, m{{{P}}}) + quantile(0.9, n{{{P}}})"),
    ("record:name:rate5m", f"record:name:rate5m{{{P}}}"),
    ("-Inf < m * NaN + 1e3 - 0x1F + .5", f"-Inf < m{{{P}}} * NaN + 1e3 - 0x1F + .5"),
    ("time() - vector(1)", "time() - vector(1)"),
    ("SUM BY (x) (m)", f"SUM BY (x) (m{{{P}}})"),
    ("sum by (x,) (m)", f"sum by (x,) (m{{{P}}})"),
    ('{__name__=~"pg_settings_.+", __name__!~"pg_x"} offset 5m',
     f'{{__name__=~"pg_settings_.+", __name__!~"pg_x",{P}}} offset 5m'),
]


@pytest.mark.parametrize("expr,expected", INJECT_CASES)
def test_inject(expr, expected):
    assert cos_bundle.inject(expr) == expected
    assert cos_bundle.inject(expected) == expected      # idempotent


METRIC_NAME_CASES = [
    ("m", {"m"}),
    ("sum by (x) (rate(m[5m]))", {"m"}),
    ('{__name__="x"}', {"x"}),
    ('{__name__=~"x.*"}', set()),
    ("a / on(job) group_left(inst) b", {"a", "b"}),
    ('m{a="b"} and on() absent(n)', {"m", "n"}),
    ("time() - m offset 1h @ start()", {"m"}),
    ('label_replace(m, "x", "$1", "y", "(.*)")', {"m"}),
    ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
    ("1 + 2", set()),
]


@pytest.mark.parametrize("expr,names", METRIC_NAME_CASES)
def test_metric_names(expr, names):
    assert cos_bundle.metric_names(expr) == names


def test_selectors_unescape_matchers():
    (s,) = cos_bundle.selectors('m{a="x\\"y\\\\z\\n", b!~\'q\', c=~`r\\d`}')
    assert s.name == "m"
    assert s.matchers == (("a", "=", 'x"y\\z\n'), ("b", "!~", "q"), ("c", "=~", "r\\d"))
    assert cos_bundle.unquote('"\\x41\\u00e9\\101"') == "A\u00e9A"


def test_grafana_variables():
    e = 'sum(rate(m{juju_unit=~"$juju_unit"}[$__rate_interval])) / ${x}'
    assert cos_bundle.metric_names(e, grafana=True) == {"m"}
    with pytest.raises(cos_bundle.PromQLError):
        cos_bundle.tokenize(e)


@pytest.mark.parametrize("expr", [
    "rate(m[5m]", "m)", "m}", "m{a=\"b\"", 'm{a="b" c="d"}', "m{a}", 'm{a=b}',
    '"unterminated', "m ; n", "sum by (a b) (m)", "sum by (,a) (m)", "m{,}",
    f"{P} + m", "m[5m + 1]", "m = 1",
])
def test_tokenizer_rejects(expr):
    with pytest.raises(cos_bundle.PromQLError):
        cos_bundle.inject(expr)


def test_tokens_round_trip():
    e = 'sum by (a) (rate(m{x="}"}[5m] offset 1m)) # c {d}\n> bool 0x10'
    assert "".join(t.text for t in cos_bundle.tokenize(e)) == e


# ---------------------------------------------------------------- bundle

def build_bundle(root, out):
    return run([PYTHON, str(ROOT / "scripts" / "cos_bundle.py"), "--root", str(root),
                "--charm-name", "postgresql", "--out", str(out)])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundle")
    r = build_bundle(ROOT, d / "cos.json")
    assert r.returncode == 0, r.stderr
    text = (d / "cos.json").read_text()
    return {"dir": d, "text": text, "data": json.loads(text)}


def test_bundle_shape_and_reproducible(bundle, tmp_path):
    data = bundle["data"]
    assert set(data) == {"metrics_alert_rules", "log_alert_rules", "dashboards"}
    r = build_bundle(ROOT, tmp_path / "again.json")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again.json").read_text() == bundle["text"]
    assert cos_bundle.render(cos_bundle.build(str(ROOT), "postgresql")) == bundle["text"]


def test_bundle_groups(bundle):
    groups = bundle["data"]["metrics_alert_rules"]["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names))
    expected = [f"{p.stem}_{g['name']}" for p in RULE_FILES for g in load_yaml(p)["groups"]]
    assert names == expected + ["generic"]
    generic = {r["alert"]: r for r in groups[-1]["rules"]}
    assert generic["HostDown"]["expr"] == f"up{{{P}}} < 1"
    assert generic["HostMetricsMissing"]["expr"] == f"absent(up{{{P}}})"
    assert generic["HostDown"]["for"] == generic["HostMetricsMissing"]["for"] == "5m"
    alerts = {r["alert"] for g in groups for r in g["rules"]}
    assert alerts == {r["alert"] for _, _, r in source_alerts()} | set(generic)


def test_bundle_rules_pass_promtool_with_topology(bundle):
    text = json.dumps(bundle["data"]["metrics_alert_rules"]).replace(
        P, TOPOLOGY_MATCHERS.replace('"', '\\"'))
    path = bundle["dir"] / "substituted_rules.yaml"
    path.write_text(text)
    r = run([PROMTOOL, "check", "rules", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_bundle_every_selector_has_topology(bundle):
    source = {r["alert"]: r["expr"] for _, _, r in source_alerts()}
    for g in bundle["data"]["metrics_alert_rules"]["groups"]:
        for rule in g["rules"]:
            injected = rule["expr"]
            substituted = injected.replace(P, TOPOLOGY_MATCHERS)
            sels = cos_bundle.selectors(substituted)
            assert sels, injected
            assert injected.count(P) == len(sels), injected
            for s in sels:
                m = {(k, op): v for k, op, v in s.matchers}
                for label, value in TOPOLOGY.items():
                    assert m.get((label, "=")) == value, (rule["alert"], s)
            if rule["alert"] in source:
                assert cos_bundle.metric_names(substituted) == \
                    cos_bundle.metric_names(source[rule["alert"]])
                # only the placeholder was added
                assert re.sub(r"\{%%juju_topology%%\}|,?%%juju_topology%%", "", injected) \
                    == source[rule["alert"]]


def test_bundle_log_rules(bundle):
    logs = bundle["data"]["log_alert_rules"]
    if not LOG_RULE_FILES:
        assert logs == {}
        return
    names = [g["name"] for g in logs["groups"]]
    assert names == [f"{p.stem}_{g['name']}" for p in LOG_RULE_FILES for g in load_yaml(p)["groups"]]
    for g in logs["groups"]:
        for rule in g["rules"]:
            assert "{" + P + "}" in rule["expr"] or P + "," in rule["expr"]
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_bundle_dashboards(bundle):
    encoded = bundle["data"]["dashboards"]
    assert len(encoded) == len(DASHBOARD_FILES)
    for path, s in zip(DASHBOARD_FILES, encoded):
        assert s.startswith("/Td6WFo")
        d = cos_bundle.decode_dashboard(s)
        rel = path.relative_to(ROOT).as_posix()
        uid = hashlib.shake_256(f"postgresql-{rel}".encode()).hexdigest(20)
        assert re.fullmatch(r"[0-9a-f]{40}", d["uid"]) and d["uid"] == uid
        assert d["tags"].count("charm: postgresql") == 1
        src = json.loads(path.read_text(encoding="utf-8"))
        assert d["title"] == src["title"] and d["panels"] == src["panels"]


def _fake_root(tmp_path, rules=None, logs=None, dashboards=None):
    root = tmp_path / "charm"
    for sub, files in (("src/prometheus_alert_rules", rules), ("src/loki_alert_rules", logs),
                       ("src/grafana_dashboards", dashboards)):
        (root / sub).mkdir(parents=True)
        for name, text in (files or {}).items():
            (root / sub / name).write_text(text)
    return root


def test_bundle_keeps_existing_charm_tag_and_empty_log_rules(tmp_path):
    dash = json.dumps({"title": "x", "tags": ["charm: other", "db"], "panels": []})
    root = _fake_root(tmp_path, dashboards={"x.json": dash})
    r = build_bundle(root, tmp_path / "out.json")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["log_alert_rules"] == {}
    assert [g["name"] for g in data["metrics_alert_rules"]["groups"]] == ["generic"]
    d = cos_bundle.decode_dashboard(data["dashboards"][0])
    assert d["tags"] == ["charm: other", "db"]
    assert d["uid"] == hashlib.shake_256(b"postgresql-src/grafana_dashboards/x.json").hexdigest(20)


@pytest.mark.parametrize("kind,files,message", [
    ("rules", {"bad.yaml": "groups: [\n"}, "invalid YAML"),
    ("rules", {"bad.yaml": "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(m[5m]\n"},
     "unclosed"),
    ("rules", {"bad.yaml": "groups:\n  - rules: []\n"}, "needs a 'name'"),
    ("rules", {"a.yaml": "groups:\n  - name: b_c\n    rules: []\n",
               "a_b.yaml": "groups:\n  - name: c\n    rules: []\n"},
     "duplicate rule group name 'a_b_c'"),
    ("logs", {"l.yaml": "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'count_over_time({job=\"x\"}[5m]) > 1'\n"},
     "LogQL expression without"),
    ("dashboards", {"d.json": "{\"title\": "}, "invalid JSON"),
])
def test_bundle_cli_errors(tmp_path, kind, files, message):
    root = _fake_root(tmp_path, **{kind: files})
    out = tmp_path / "out.json"
    r = build_bundle(root, out)
    assert r.returncode == 1
    assert "cos_bundle.py: error:" in r.stderr and message in r.stderr, r.stderr
    assert not out.exists()


def test_bundle_cli_duplicate_group(tmp_path):
    rules = {"a.yaml": "groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n"}
    r = build_bundle(_fake_root(tmp_path, rules=rules), tmp_path / "out.json")
    assert r.returncode == 1 and "duplicate rule group name 'a_g'" in r.stderr


# ---------------------------------------------------------------- dashboards

@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path):
    d = json.loads(path.read_text(encoding="utf-8"))
    assert 36 <= d["schemaVersion"] < 40
    assert "uid" not in d or d["uid"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["prometheusds"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for name in ("juju_model", "juju_model_uuid", "juju_application", "juju_unit"):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"]["uid"] == "${prometheusds}"
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        assert re.fullmatch(rf"label_values\(.+,\s*{name}\)", q), q
    panels = list(all_panels(d))
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), "duplicate panel titles"
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["y"] >= 0
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${prometheusds}"
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${prometheusds}"
            assert cos_bundle.selectors(t["expr"], grafana=True), (p["title"], t["expr"])
            for s in cos_bundle.selectors(t["expr"], grafana=True):
                labels = {m[0] for m in s.matchers}
                assert {*TOPOLOGY_LABELS, "juju_unit"} & labels >= set(TOPOLOGY_LABELS), \
                    (p["title"], t["expr"])


def test_dashboard_exprs_pass_promtool(tmp_path):
    """Dashboard queries with Grafana's variables replaced are valid PromQL."""
    rules = []
    for i, (path, panel, t) in enumerate(dashboard_targets()):
        expr = t["expr"].replace("$__rate_interval", "5m").replace("$__range", "1h")
        expr = re.sub(r"\$\{?(\w+)\}?", r".*", expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboards.yaml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    r = run([PROMTOOL, "check", "rules", "--lint=none", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_used_metric_names_are_served():
    names, regexes = used_metric_names()
    agent = {n for n in names if n.startswith(("patroni_", "pg_agent_"))}
    assert agent <= AGENT_METRICS, agent - AGENT_METRICS
    others = names - agent
    assert all(n.startswith("pg_") for n in others), others   # checked live below


# ---------------------------------------------------------------- live exporter

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd, **kw):
    r = run(["runuser", "-u", "postgres", "--"] + [str(c) for c in cmd], **kw)
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r


def stop(proc, sig=signal.SIGTERM, timeout=30):
    """Stop a process this test started, by its PID."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def spawn(cmd, log, env=None):
    return subprocess.Popen([str(c) for c in cmd], user="postgres", group="postgres",
                            extra_groups=[], env=env or {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd="/")


class Server:
    def __init__(self, data, sock, port, proc, log):
        self.data, self.sock, self.port, self.proc, self.log = data, sock, port, proc, log

    def psql(self, sql, db="postgres", check=True):
        r = run([PGBIN / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                 "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql])
        if check:
            assert r.returncode == 0, f"{sql}: {r.stderr}"
        return r

    def wait_ready(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"postgres exited: {Path(self.log).read_text()}")
            r = run([PGBIN / "pg_isready", "-q", "-h", self.sock, "-p", str(self.port)])
            if r.returncode == 0:
                return
            time.sleep(0.2)
        pytest.fail(f"postgres not ready: {Path(self.log).read_text()}")


def wait_for(what, fn, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(request):
    """A PostgreSQL 15 primary and a streaming hot standby, Unix sockets only."""
    for b in ("initdb", "postgres", "pg_basebackup", "psql", "pg_isready"):
        if not (PGBIN / b).exists():
            pytest.skip(f"{PGBIN / b} missing")
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root to run PostgreSQL and the exporter as user postgres")
    base = Path(tempfile.mkdtemp(prefix="cos-pg-"))
    procs = []
    logs = []

    def cleanup():
        for p in reversed(procs):
            stop(p, signal.SIGINT)      # fast shutdown
        for f in logs:
            f.close()
        shutil.rmtree(base, ignore_errors=True)
    request.addfinalizer(cleanup)

    shutil.chown(base, "postgres", "postgres")
    sock = base / "sock"
    as_postgres(["mkdir", sock])
    as_postgres([PGBIN / "initdb", "-D", base / "primary", "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--locale=C", "--no-sync"])
    port1, port2 = free_port(), free_port()
    conf = (f"listen_addresses = ''\nunix_socket_directories = '{sock}'\nport = {port1}\n"
            "fsync = off\nshared_buffers = 16MB\nmax_connections = 30\n")
    with open(base / "primary" / "postgresql.conf", "a") as f:
        f.write(conf)

    def start(name, port):
        log = open(base / f"{name}.log", "w")
        shutil.chown(base / f"{name}.log", "postgres", "postgres")
        logs.append(log)
        proc = spawn([PGBIN / "postgres", "-D", base / name, "-p", port], log)
        procs.append(proc)
        srv = Server(base / name, str(sock), port, proc, base / f"{name}.log")
        srv.wait_ready()
        return srv

    primary = start("primary", port1)
    primary.psql("CREATE ROLE monitoring LOGIN IN ROLE pg_monitor")
    primary.psql("CREATE DATABASE app")
    for sql in ("CREATE TABLE items (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)",
                "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 1000) g",
                "DELETE FROM items WHERE id <= 400",
                "SELECT pg_create_physical_replication_slot('standby_slot', true)",
                "SELECT pg_create_physical_replication_slot('unused_slot', true)"):
        primary.psql(sql, db="app")
    # a failed CREATE INDEX CONCURRENTLY leaves an invalid index behind
    r = primary.psql("CREATE UNIQUE INDEX CONCURRENTLY items_v ON items (v)", db="app", check=False)
    assert r.returncode != 0
    assert primary.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid",
                        db="app").stdout.strip() == "1"
    as_postgres([PGBIN / "pg_basebackup", "-D", base / "standby", "-h", sock, "-p", port1,
                 "-U", "postgres", "-R", "-X", "stream", "-S", "standby_slot", "-c", "fast",
                 "--no-sync"])
    standby = start("standby", port2)
    wait_for("streaming replication", lambda: primary.psql(
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").stdout.strip() == "1")
    assert standby.psql("SELECT pg_is_in_recovery()").stdout.strip() == "t"
    # a slot on the standby runs the recovery branch of the slot query
    standby.psql("SELECT pg_create_physical_replication_slot('cascade_slot', true)")
    wait_for("table on the standby", lambda: standby.psql(
        "SELECT count(*) FROM items", db="app", check=False).stdout.strip() == "600")
    return {"base": base, "primary": primary, "standby": standby, "sock": str(sock)}


def parse_metrics(text):
    """{name: [(labels dict, value)]} from the Prometheus text format."""
    out = {}
    line_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        assert m, f"unparsable metrics line: {line}"
        labels = dict(label_re.findall(m.group(3) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return out


def value(metrics, name, **labels):
    vals = [v for lab, v in metrics.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(vals) == 1, f"{name}{labels}: {vals}"
    return vals[0]


@pytest.fixture(scope="module")
def scrapes(cluster, request):
    """/metrics of prometheus-postgres-exporter 0.11.1 against each server."""
    if not Path(EXPORTER).exists():
        pytest.skip("prometheus-postgres-exporter missing")
    base = cluster["base"]
    queries = base / "queries.yaml"
    shutil.copy(QUERIES, queries)
    os.chmod(queries, 0o644)
    out = {}
    for name in ("primary", "standby"):
        srv = cluster[name]
        port = free_port()
        log = open(base / f"exporter-{name}.log", "w")
        request.addfinalizer(log.close)
        env = {"PATH": "/usr/bin:/bin",
               "DATA_SOURCE_NAME": f"host={srv.sock} port={srv.port} user=monitoring "
                                   "dbname=postgres sslmode=disable"}
        proc = spawn([EXPORTER, f"--extend.query-path={queries}", "--auto-discover-databases",
                      "--exclude-databases=template0,template1",
                      f"--web.listen-address=127.0.0.1:{port}"], log, env=env)
        request.addfinalizer(lambda p=proc: stop(p))
        text = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (base / f"exporter-{name}.log").read_text()
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                    body = resp.read().decode()
                if re.search(r"^pg_up 1$", body, re.M):
                    if text is not None:
                        break           # second complete scrape: use it
                    text = body
            time.sleep(0.3)
        else:
            pytest.fail(f"exporter for {name} never reported pg_up 1: "
                        + (base / f"exporter-{name}.log").read_text())
        out[name] = {"text": body, "metrics": parse_metrics(body),
                     "log": base / f"exporter-{name}.log"}
    return out


@pytest.mark.parametrize("server", ["primary", "standby"])
def test_exporter_custom_queries_work(scrapes, server):
    s = scrapes[server]
    m = s["metrics"]
    assert value(m, "pg_up") == 1
    assert value(m, "pg_exporter_last_scrape_error") == 0, s["log"].read_text()
    assert value(m, "pg_replication_is_replica") == (1 if server == "standby" else 0)
    assert value(m, "pg_replication_lag") >= 0
    assert 0 < time.time() - value(m, "pg_postmaster_start_time_seconds") < 3600
    # per-database queries ran in the auto-discovered database app, once
    assert value(m, "pg_index_invalid_count", datname="app") == 1
    assert value(m, "pg_index_invalid_count", datname="postgres") == 0
    assert value(m, "pg_stat_user_tables_n_live_tup", datname="app", relname="items") >= 0
    assert value(m, "pg_stat_user_tables_last_autovacuum", datname="app", relname="items") >= 0
    assert value(m, "pg_database_wraparound_age_datfrozenxid", datname="app") > 0
    if server == "primary":
        assert value(m, "pg_replication_slots_active", slot_name="standby_slot") == 1
        assert value(m, "pg_replication_slots_active", slot_name="unused_slot") == 0
        assert value(m, "pg_stat_user_tables_n_live_tup", datname="app", relname="items") == 600
        assert value(m, "pg_stat_user_tables_n_dead_tup", datname="app", relname="items") == 400
        assert value(m, "pg_replication_slots_retained_wal_bytes", slot_name="unused_slot") > 0
    else:
        assert value(m, "pg_replication_slots_active", slot_name="cascade_slot",
                     slot_type="physical") == 0
        assert value(m, "pg_replication_slots_retained_wal_bytes", slot_name="cascade_slot") >= 0


@pytest.mark.parametrize("server", ["primary", "standby"])
def test_exporter_output_passes_promtool(scrapes, server):
    r = run([PROMTOOL, "check", "metrics"], input=scrapes[server]["text"])
    # 0: clean; 3: lint findings only (the exporter's built-in names break
    # naming conventions, e.g. counters without _total); 1 would be an error.
    assert r.returncode in (0, 3), r.stdout + r.stderr


def test_used_pg_metrics_exist_in_exporter_output(scrapes):
    names, regexes = used_metric_names()
    served = set(scrapes["primary"]["metrics"])
    wanted = {n for n in names if n.startswith("pg_") and not n.startswith("pg_agent_")}
    assert wanted, "no exporter metrics used?"
    assert not wanted - served, sorted(wanted - served)
    for sel in regexes:
        def ok(name):
            for label, op, val in sel.matchers:
                if label != "__name__":
                    continue
                hit = re.fullmatch(val, name) if op in ("=~", "!~") else name == val
                if (op in ("=", "=~")) != bool(hit):
                    return False
            return True
        assert any(ok(n) for n in served), sel
