"""COS (cos-agent, interface cos_agent v0) with the cos-agent test charm
(tests/charms/cos-agent, a subordinate that reads the databag like grafana-agent): every
unit's `config` validates against schemas/cos_agent_v0_generated_provider.json and carries
the Juju topology; the test charm scrapes every job of every unit (the agent's REST API and
the PostgreSQL exporter, both over TLS) and `promtool check metrics` accepts each body;
patroni_primary is 1 on exactly one unit and follows a switchover within one scrape
interval; every metric the dashboards and alert rules query is served; the exporter logs
in with no password and comes back when it dies. Driven only through sandbox/bin/juju."""
import importlib.util
import json
import re
import ssl
import time
import urllib.request

import jsonschema
import pytest

from conftest import REPO, any_error, poll
from test_ha import APP, CHARM, cluster_settled, primary_unit, sql

SCHEMAS = REPO / "tests" / "schemas"  # copies of the reference schemas (README there)
SCRAPE_INTERVAL_S = 60  # grafana-agent's and Prometheus' default scrape interval


def bundle_lib():
    spec = importlib.util.spec_from_file_location("cos_bundle", REPO / "scripts" / "cos_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cos_units(st):
    """principal unit -> its cos-agent subordinate unit (from status)."""
    out = {}
    for name, u in st["applications"][APP].get("units", {}).items():
        for sub in (u.get("subordinates") or {}):
            if sub.startswith("cos-agent/"):
                out[name] = sub
    return out


def cos_ready(n):
    def ready(st):
        if not cluster_settled(n)(st):
            return False
        subs = st["applications"].get("cos-agent", {})
        units = {}
        for u in st["applications"][APP]["units"].values():
            units.update({k: v for k, v in (u.get("subordinates") or {}).items()
                          if k.startswith("cos-agent/")})
        return len(units) == n and all(
            v["workload-status"]["current"] == "active" and
            v["juju-status"]["current"] == "idle" for v in units.values()) and subs
    return ready


@pytest.fixture(scope="module")
def cluster(model):
    assert CHARM.exists(), "run `make build` first"
    model.juju("deploy", str(CHARM), "-n", "3", "--config", "profile=testing", timeout=180)
    model.deploy("cos-agent")
    model.wait(cluster_settled(3), error=any_error, timeout=300)
    model.juju("integrate", f"{APP}:cos-agent", "cos-agent:cos-agent")
    model.wait(cos_ready(3), error=any_error, timeout=180)
    # per-table series exist only for tables: a database with one, as any real one has
    sql(model, primary_unit(model), "CREATE TABLE cos_probe (id int PRIMARY KEY); "
                                    "INSERT INTO cos_probe SELECT generate_series(1, 100)")
    return {"subs": cos_units(model.status())}


def get_config(model, sub):
    r = model.run(sub, "get-config")
    assert r.status == "completed", r.task
    return r.results


def scrape(model, sub):
    r = model.run(sub, "scrape", timeout=120)
    assert r.status == "completed", r.task
    return json.loads(r.results["results"])


def model_uuid(model):
    shown = json.loads(model.juju("show-model", model.name, "--format", "json").stdout)
    return next(iter(shown.values()))["model-uuid"]


def test_databag_validates_and_has_topology(model, cluster):
    schema = json.loads((SCHEMAS / "cos_agent_v0_generated_provider.json").read_text())
    nested = dict(schema["$defs"]["NestedDataModel"], **{"$defs": schema["$defs"]})
    uuid = model_uuid(model)
    matchers = (f'juju_model="{model.name}",juju_model_uuid="{uuid}",'
                f'juju_application="{APP}"')
    lib = bundle_lib()
    for unit, sub in cluster["subs"].items():
        got = get_config(model, sub)
        assert got["principal"] == unit
        jsonschema.validate({"unit": {"config": got["config"]}}, schema)
        config = json.loads(got["config"])
        jsonschema.validate(config, nested)  # contentSchema is not checked by validate()
        assert config["log_slots"] == [] and config["subordinate"] is None
        jobs = config["metrics_scrape_jobs"]
        names = [j["job_name"] for j in jobs]
        assert len(set(names)) == len(names) == 2, names
        addr = model.status()["applications"][APP]["units"][unit]["public-address"]
        assert sorted(t for j in jobs for s in j["static_configs"] for t in s["targets"]) == \
            sorted([f"{addr}:8008", f"{addr}:9187"])
        assert all(j["scheme"] == "https" for j in jobs)
        groups = config["metrics_alert_rules"]["groups"]
        assert len({g["name"] for g in groups}) == len(groups) >= 3
        for g in groups:
            assert g["name"].startswith(f"{model.name}_{uuid[:8]}_{APP}_"), g["name"]
            assert g["name"].endswith("_alerts")
            for rule in g["rules"]:
                assert "%%juju_topology%%" not in rule["expr"]
                assert rule["labels"]["juju_model"] == model.name
                assert rule["labels"]["juju_model_uuid"] == uuid
                assert rule["labels"]["juju_application"] == APP
                assert rule["labels"]["juju_charm"] == "postgresql"
                # every selector carries the topology matchers
                assert rule["expr"].count(matchers) >= len(lib.metric_names(rule["expr"])), \
                    rule["expr"]
        dashboards = json.loads(got["dashboards"])
        assert len(dashboards) == len(config["dashboards"]) >= 2
        for d in dashboards:
            assert re.fullmatch(r"[0-9a-f]{40}", d["uid"]), d.get("uid")
            assert "charm: postgresql" in d["tags"]
            assert d["panels"]


def scrape_all(model, cluster):
    results = {}
    for unit, sub in cluster["subs"].items():
        results[unit] = scrape(model, sub)
    return results


def value(text, name):
    """Sum of the samples of a metric family in an exposition text."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def bodies(model, unit, sub, results):
    out = {}
    for r in results:
        out[r["job"]] = model.exec(sub, f"cat {r['path']}").stdout if r["path"] else ""
    return out


def test_every_job_scrapes_and_promtool_accepts(model, cluster):
    results = scrape_all(model, cluster)
    served = set()
    primaries = 0
    for unit, rs in results.items():
        assert len(rs) == 2, rs
        for r in rs:
            assert r["ok"] and r["status"] == 200 and r["parse_ok"], r
            # 0: clean; 3: lint findings only (e.g. a HELP text style): the text parses
            assert r["promtool_rc"] in (0, 3), r["promtool_output"]
            assert r["labels"]["juju_unit"] == unit
            served.update(r["metric_names"])
        texts = bodies(model, unit, cluster["subs"][unit], rs)
        agent = next(t for j, t in texts.items() if "pg_agent" in j)
        exporter = next(t for j, t in texts.items() if "postgres_exporter" in j)
        assert value(exporter, "pg_up") == 1.0
        assert value(exporter, "pg_exporter_last_scrape_error") == 0.0
        primaries += int(value(agent, "patroni_primary"))
        assert value(agent, "pg_agent_certificate_expiry_timestamp_seconds") > time.time()
        assert value(agent, "pg_agent_hook_duration_seconds_count") > 0
    assert primaries == 1
    # the agent's own job is clean for promtool (no lint finding either)
    for rs in results.values():
        for r in rs:
            if "pg_agent" in r["job"]:
                assert r["promtool_rc"] == 0, r["promtool_output"]


def test_dashboards_and_rules_query_served_metrics(model, cluster):
    lib = bundle_lib()
    served = set()
    for rs in scrape_all(model, cluster).values():
        for r in rs:
            served.update(r["metric_names"])
    served.add("up")  # Prometheus' own per target
    sub = next(iter(cluster["subs"].values()))
    got = get_config(model, sub)
    config = json.loads(got["config"])
    wanted = {}
    for g in config["metrics_alert_rules"]["groups"]:
        for rule in g["rules"]:
            for m in lib.metric_names(rule["expr"]):
                wanted.setdefault(m, f"rule {rule.get('alert')}")
    for d in json.loads(got["dashboards"]):
        for panel in d["panels"]:
            for t in panel.get("targets", []):
                for m in lib.metric_names(t.get("expr", ""), grafana=True):
                    wanted.setdefault(m, f"dashboard {d['title']} panel {panel.get('title')}")
    missing = {m: where for m, where in wanted.items() if m not in served}
    assert not missing, missing
    print(f"\ncos: {len(wanted)} metric names queried by rules and dashboards, all served "
          f"({len(served)} names scraped)")


def test_switchover_shows_in_metrics(model, cluster):
    old = primary_unit(model)
    new = next(u for u in cluster["subs"] if u != old)
    r = model.run(new, "promote-to-primary", "scope=unit", timeout=120)
    assert r.status == "completed", r.task
    t0 = time.monotonic()

    st = model.status()
    addrs = {u: st["applications"][APP]["units"][u]["public-address"] for u in cluster["subs"]}
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # as the scrape job says

    def primary_by_metrics():
        # what a scrape sees now: the agent job of every unit, fetched from the host
        ones = []
        for unit, addr in addrs.items():
            with urllib.request.urlopen(f"https://{addr}:8008/metrics", context=ctx,
                                        timeout=5) as resp:
                if value(resp.read().decode(), "patroni_primary") == 1.0:
                    ones.append(unit)
        return ones == [new]

    poll(primary_by_metrics, timeout=SCRAPE_INTERVAL_S, delay=1,
         what=f"patroni_primary 1 on {new} only")
    took = time.monotonic() - t0
    print(f"\ncos: after the switchover to {new}, the metrics showed it {took:.1f} s later "
          f"(scrape interval {SCRAPE_INTERVAL_S} s)")
    model.wait(cluster_settled(3), error=any_error, timeout=180)


def test_exporter_passwordless_and_supervised(model, cluster):
    unit = primary_unit(model)
    # the exporter's sessions: role monitoring over the socket (peer), no password anywhere
    rows = sql(model, unit, "SELECT DISTINCT usename, client_addr IS NULL FROM pg_stat_activity "
                            "WHERE application_name = 'pg-agent-exporter'")
    assert rows in ("", "monitoring|t"), rows
    r = model.exec(unit, "cat /run/pg-agent/exporter.pid")
    assert r.rc == 0, r.stderr
    pid = int(r.stdout.strip())
    env = model.exec(unit, f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
    assert "DATA_SOURCE_NAME=" in env and "password" not in env.lower()
    user = model.exec(unit, f"stat -c %U /proc/{pid}").stdout.strip()
    assert user == "prometheus"
    # it dies: the agent starts it again (supervision between hooks)
    assert model.exec(unit, f"kill -9 {pid}").rc == 0
    t0 = time.monotonic()

    def back():
        r = model.exec(unit, "cat /run/pg-agent/exporter.pid")
        return r.rc == 0 and r.stdout.strip() and int(r.stdout.strip()) != pid and \
            model.exec(unit, f"test -d /proc/{int(r.stdout.strip())}").rc == 0

    poll(back, timeout=60, delay=1, what="the exporter restarted")
    sub = cluster["subs"][unit]
    poll(lambda: all(r["ok"] for r in scrape(model, sub)), timeout=30, delay=1,
         what="the restarted exporter serving")
    print(f"\ncos: the exporter was back {time.monotonic() - t0:.1f} s after a SIGKILL")
