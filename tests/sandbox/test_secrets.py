"""Secrets: hook tools (owner and consumer sides), revision tracking,
labels, grants, secret hooks, and the CLI (add/update/grant/show/secrets).

Reference §3.8, §4, §9.6. Tests run in file order and share one secret.
"""

import json
import random
import re
import types

import pytest
import yaml

from conftest import all_active, all_agents_idle, any_error, poll

OWNER = "sec"     # 2 units
CONSUMER = "cons"  # 1 unit
XID_RE = r"[0-9a-v]{20}"


def xid_of(uri):
    m = re.search(rf"({XID_RE})$", uri.strip())
    assert m, uri
    return m.group(1)


def fake_xid():
    # 20 base32hex chars; a final "0" keeps the unused low bits zero (valid xid)
    return "c" + "".join(random.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(18)) + "0"


@pytest.fixture(scope="module")
def env(model):
    model.deploy("tool-tester", OWNER, num_units=2)
    model.deploy("tool-tester", CONSUMER)
    model.juju("integrate", f"{OWNER}:db", f"{CONSUMER}:db-client")
    model.wait(lambda s: all_active(s, OWNER, CONSUMER) and all_agents_idle(s, OWNER, CONSUMER),
               error=any_error, timeout=180)
    st = model.status()
    L = model.leader(OWNER, st)
    F = model.followers(OWNER, st)[0]
    C = model.units(CONSUMER, st)[0]
    poll(lambda: model.sh(C, "relation-ids db-client").strip(), 60, what="relation on consumer")
    rid = model.relation_id(L, "db")
    # Handle secret-remove as charms should (§4.5).
    model.install_script(L, "secret-remove",
                         'secret-remove "$JUJU_SECRET_ID" --revision "$JUJU_SECRET_REVISION"\n')
    return types.SimpleNamespace(
        m=model, L=L, F=F, C=C, rid=rid, crid="db-client:" + rid.split(":")[1],
        uuid=model.sh(L, "echo $JUJU_MODEL_UUID").strip(), s={})


def err(r, message, code):
    assert (r.rc, r.stdout, r.stderr) == (code, "", f"ERROR {message}\n")


def info(env, unit, ref):
    """secret-info-get <ref> as JSON: the single entry (keyed by bare xid)."""
    out = json.loads(env.m.sh(unit, f"secret-info-get {ref} --format json"))
    assert len(out) == 1, out
    return next(iter(out.values()))


def test_secret_add_and_get(env):
    m, L, F = env.m, env.L, env.F
    uri = m.sh(L, "secret-add --label app-sec --description 'first secret' password=abc user=op").strip()
    # charm-created secrets get the long form secret://<model-uuid>/<xid> (§3.8)
    assert re.fullmatch(rf"secret://{env.uuid}/{XID_RE}", uri), uri
    xid = xid_of(uri)
    env.s.update(uri=uri, xid=xid)
    assert yaml.safe_load(m.sh(L, f"secret-get {uri}")) == {"password": "abc", "user": "op"}
    assert m.sh(L, f"secret-get {uri} --format json") == '{"password":"abc","user":"op"}\n'
    assert m.sh(L, f"secret-get {uri} password") == "abc\n"
    assert m.sh(L, "secret-get --label app-sec --format json") == '{"password":"abc","user":"op"}\n'
    # URI forms: short and bare xid are accepted too
    assert m.sh(L, f"secret-get secret:{xid} user") == "op\n"
    assert m.sh(L, f"secret-get {xid} user") == "op\n"
    # base64 key suffix
    assert m.sh(L, f"secret-get {uri} password#base64") == "YWJj\n"
    # every unit of the owning app reads it
    assert m.sh(F, f"secret-get {uri} --format json") == '{"password":"abc","user":"op"}\n'
    # secret-ids: bare xids owned by this unit and (leader) its app
    assert json.loads(m.sh(L, "secret-ids --format json")) == [xid]
    assert m.sh(L, "secret-ids") == f"{xid}\n"
    assert json.loads(m.sh(F, "secret-ids --format json")) == []
    # secret-info-get keyed by bare xid
    out = json.loads(m.sh(L, f"secret-info-get {uri} --format json"))
    assert list(out) == [xid]
    i = out[xid]
    assert i["revision"] == 1 and i["label"] == "app-sec" and i["owner"] == "application"
    assert i["description"] == "first secret"
    assert not i.get("access")
    assert "rotation" not in i and "expiry" not in i  # empty fields omitted
    assert json.loads(m.sh(L, "secret-info-get --label app-sec --format json")) == out
    r = m.exec(L, f"secret-info-get {uri} --label app-sec")
    assert r.rc != 0 and r.stderr.startswith("ERROR ")


def test_secret_add_in_same_context(env):
    m, L = env.m, env.L
    out = m.sh(L, "u=$(secret-add --label rw-sec val=one) && secret-get --label rw-sec val "
                  "&& secret-ids --format json && secret-info-get --label rw-sec --format json "
                  "&& echo $u")
    lines = out.splitlines()
    assert lines[0] == "one"
    xid = xid_of(lines[-1])
    assert xid in json.loads(lines[1])
    assert xid in json.loads(lines[2])
    m.sh(L, f"secret-remove {lines[-1]}")
    r = m.exec(L, f"secret-get {lines[-1]}")
    assert r.rc == 1 and "not found" in r.stderr


def test_secret_tool_errors(env):
    m, L, F = env.m, env.L, env.F
    uri = env.s["uri"]
    err(m.exec(L, "secret-add"), "missing secret value or filename", 2)
    for bad in ("X", "ab", "abc-", "a--bc", "1abc"):
        r = m.exec(L, f"secret-add {bad}=1")
        assert r.rc != 0 and f'key "{bad}" not valid' in r.stderr, (bad, r)
    r = m.exec(F, "secret-add foo=bar")  # app-owned from a non-leader
    assert r.rc != 0 and "this unit is not the leader" in r.stderr
    r = m.exec(L, "secret-add --label app-sec other=1")
    assert r.rc != 0 and "secret label already exists" in r.stderr
    err(m.exec(L, "secret-get"), "require either a secret URI or label", 2)
    err(m.exec(L, f"secret-get {uri} --peek --refresh"), "specify one of --peek or --refresh but not both", 2)
    missing = fake_xid()
    r = m.exec(L, f"secret-get secret:{missing}")
    assert r.rc == 1 and "not found" in r.stderr and r.stderr.startswith("ERROR ")
    r = m.exec(L, "secret-get --label no-such-label")
    assert r.rc == 1 and "not found" in r.stderr
    r = m.exec(L, f"secret-info-get secret:{missing}")
    assert r.rc == 1 and f'secret "{missing}" not found' in r.stderr
    r = m.exec(L, f"secret-revoke {uri}")
    assert r.rc != 0 and "missing relation or application or unit" in r.stderr
    # a follower cannot manage the app's secret
    r = m.exec(F, f"secret-set {uri} password=nope user=op")
    assert r.rc != 0
    assert "permission denied" in r.stderr or "not the leader" in r.stderr, r.stderr
    assert info(env, L, uri)["revision"] == 1


def test_secret_set_revisions(env):
    m, L = env.m, env.L
    uri = env.s["uri"]
    m.sh(L, f"secret-set {uri} password=def user=op")
    assert info(env, L, uri)["revision"] == 2
    # content identical to the current revision: no new revision (3.6)
    m.sh(L, f"secret-set {uri} password=def user=op")
    assert info(env, L, uri)["revision"] == 2
    # several secret-set in one context coalesce into one revision (3.6)
    m.sh(L, f"secret-set {uri} password=g1 user=op && secret-set {uri} password=g2 user=op")
    assert info(env, L, uri)["revision"] == 3
    assert m.sh(L, f"secret-get {uri} password") == "g2\n"
    # metadata-only update: no revision
    m.sh(L, f"secret-set {uri} --description 'second text'")
    i = info(env, L, uri)
    assert i["revision"] == 3 and i["description"] == "second text" and i["label"] == "app-sec"
    # followers (owner app) always read the latest revision
    assert m.sh(env.F, f"secret-get {uri} password") == "g2\n"


def test_obsolete_revisions_get_secret_remove(env):
    m, L = env.m, env.L
    xid = env.s["xid"]
    # nobody tracks revisions 1 and 2: the leader gets secret-remove for each
    seen = poll(lambda: (lambda revs: revs if {"1", "2"} <= set(revs) else None)(
        [e["env"].get("JUJU_SECRET_REVISION") for e in m.events(L) if e["event"] == "secret-remove"
         and xid_of(e["env"]["JUJU_SECRET_ID"]) == xid]), 60, what="secret-remove hooks for revisions 1, 2")
    assert sorted(seen) == ["1", "2"], seen  # once per obsolete revision
    ev = [e for e in m.events(L) if e["event"] == "secret-remove"][0]["env"]
    assert ev["JUJU_SECRET_LABEL"] == "app-sec"
    # the hook's `secret-remove --revision` took effect
    def revisions():
        out = json.loads(m.juju("show-secret", xid, "--revisions", "--format", "json").stdout)
        return [r["revision"] for r in out[xid]["revisions"]]
    poll(lambda: revisions() == [3], 30, what="only revision 3 left")


def test_grant_and_consumer_tracking(env):
    m, L, C = env.m, env.L, env.C
    uri, xid = env.s["uri"], env.s["xid"]
    r = m.exec(C, f"secret-get {uri}")
    assert r.rc == 1 and "permission denied" in r.stderr  # not granted yet
    m.sh(L, f"secret-grant {uri} -r {env.rid}")
    acc = info(env, L, uri)["access"]
    assert len(acc) == 1
    assert acc[0]["target"] == f"application-{CONSUMER}" and acc[0]["role"] == "view"
    assert acc[0]["scope"].startswith("relation-")
    assert sorted(acc[0]["scope"][len("relation-"):].split("#")) == sorted(
        [f"{CONSUMER}.db-client", f"{OWNER}.db"])
    # first read starts tracking the latest revision (3)
    assert m.sh(C, f"secret-get {uri} password") == "g2\n"
    assert json.loads(m.sh(C, "secret-ids --format json")) == []  # consumers own nothing
    since = len(m.events(C))
    m.sh(L, f"secret-set {uri} password=h4 user=op")
    ev = m.wait_event(C, lambda e: e["event"] == "secret-changed", since=since)
    assert xid_of(ev["env"]["JUJU_SECRET_ID"]) == xid
    assert ev["env"].get("JUJU_SECRET_LABEL", "") == ""
    assert ev["env"].get("JUJU_SECRET_REVISION", "") == ""  # no revision for secret-changed
    assert m.sh(C, f"secret-get {uri} password") == "g2\n"            # still tracked rev 3
    assert m.sh(C, f"secret-get {uri} --peek password") == "h4\n"     # latest, no move
    assert m.sh(C, f"secret-get {uri} password") == "g2\n"
    assert m.sh(C, f"secret-get {uri} --refresh password") == "h4\n"  # latest, moves
    assert m.sh(C, f"secret-get {uri} password") == "h4\n"
    # the owner app's follower may hold a consumer record too (§4.1): a read
    # moves it to the latest revision
    assert m.sh(env.F, f"secret-get {uri} password") == "h4\n"
    # revision 3 is now obsolete: secret-remove for it on the leader
    m.wait_event(L, lambda e: e["event"] == "secret-remove" and e["env"].get("JUJU_SECRET_REVISION") == "3")
    # consumer label
    assert m.sh(C, f"secret-get {uri} --label cons-label password") == "h4\n"
    assert m.sh(C, "secret-get --label cons-label password") == "h4\n"
    since = len(m.events(C))
    m.sh(L, f"secret-set {uri} password=i5 user=op")
    ev = m.wait_event(C, lambda e: e["event"] == "secret-changed", since=since)
    assert ev["env"]["JUJU_SECRET_LABEL"] == "cons-label"
    assert m.sh(C, "secret-get --label cons-label --refresh password") == "i5\n"
    # the owner label is the owner's business: consumers do not see it
    r = m.exec(C, "secret-get --label app-sec")
    assert r.rc == 1 and "not found" in r.stderr
    # consumers cannot manage it
    r = m.exec(C, f"secret-set {uri} password=x user=op")
    assert r.rc != 0
    # owner reads are always latest; --peek/--refresh make no difference
    assert m.sh(L, f"secret-get {uri} --peek password") == "i5\n"


def test_grant_errors(env):
    m, L = env.m, env.L
    uri = env.s["uri"]
    r = m.exec(L, f"secret-grant {uri} -r {env.rid} --unit {env.F}")
    text = r.stderr + r.cli.stderr + (r.task.get("message") or "")
    assert f'cannot specify unit "{env.F}" in relation to application "{CONSUMER}"' in text, r


def test_revoke(env):
    m, L, C = env.m, env.L, env.C
    uri = env.s["uri"]
    m.sh(L, f"secret-revoke {uri} -r {env.rid}")
    assert not info(env, L, uri).get("access")
    r = m.exec(C, f"secret-get {uri} --peek")
    assert r.rc == 1 and "permission denied" in r.stderr
    m.sh(L, f"secret-grant {uri} --relation {env.rid.split(':')[1]}")  # ops' argv form
    assert m.sh(C, f"secret-get {uri} --peek password") == "i5\n"


def test_unit_owned_secret(env):
    m, L, F = env.m, env.L, env.F
    uri = m.sh(F, "secret-add --owner unit --label unit-sec kone=v1").strip()
    xid = xid_of(uri)
    assert info(env, F, uri)["owner"] == "unit"
    assert xid in json.loads(m.sh(F, "secret-ids --format json"))
    assert xid not in json.loads(m.sh(L, "secret-ids --format json"))
    assert m.sh(F, "secret-get --label unit-sec kone") == "v1\n"
    r = m.exec(L, f"secret-get {uri}")
    assert r.rc == 1 and ("permission denied" in r.stderr or "not found" in r.stderr)
    m.sh(F, f"secret-set {uri} kone=v2")
    assert info(env, F, uri)["revision"] == 2
    m.sh(F, f"secret-remove {uri}")
    r = m.exec(F, f"secret-get {uri}")
    assert r.rc == 1 and "not found" in r.stderr


def test_exec_commits_secret_add_on_nonzero_exit(env):
    # A non-zero `juju exec` still commits its context (§7); a failing *hook*
    # does not (test_failures.py).
    m, L = env.m, env.L
    r = m.exec(L, "secret-add --label exec-fail zzz=one; exit 3")
    assert r.rc == 3
    uri = r.stdout.strip()
    assert m.sh(L, "secret-get --label exec-fail zzz") == "one\n"
    m.sh(L, f"secret-remove {uri}")


def test_cli_user_secret(env, tmp_path):
    m, L = env.m, env.L
    f1 = tmp_path / "s1.yaml"
    f1.write_text("username: admin\npassword: pw1\n")
    p = m.juju("add-secret", "mysecret", "--info", "user secret", "--file", str(f1))
    assert re.fullmatch(rf"secret:{XID_RE}\n", p.stdout), p.stdout
    xid = xid_of(p.stdout)
    listed = json.loads(m.juju("secrets", "--format", "json").stdout)
    u = listed[xid]
    assert u["owner"] == "<model>" and u["name"] == "mysecret" and u["revision"] == 1
    assert u["description"] == "user secret"
    for k in ("created", "updated"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", u[k]), u[k]
    # the charm's secret is listed too, owned by the application
    c = listed[env.s["xid"]]
    assert c["owner"] == OWNER and c["label"] == "app-sec"
    # show-secret --reveal
    shown = json.loads(m.juju("show-secret", "mysecret", "--format", "json", "--reveal").stdout)
    assert list(shown) == [xid]
    assert shown[xid]["content"] == {"Data": {"username": "admin", "password": "pw1"}}
    assert re.fullmatch(r"[0-9a-f]{64}", shown[xid]["checksum"])
    plain = json.loads(m.juju("show-secret", xid, "--format", "json").stdout)
    assert "content" not in plain[xid]
    # not granted: the app cannot read it
    r = m.exec(L, f"secret-get secret:{xid}")
    assert r.rc == 1 and "permission denied" in r.stderr
    m.juju("grant-secret", "mysecret", OWNER)
    acc = json.loads(m.juju("show-secret", xid, "--format", "json").stdout)[xid]["access"]
    assert {"target": f"application-{OWNER}", "scope": f"model-{env.uuid}", "role": "view"} in acc
    assert m.sh(L, f"secret-get secret:{xid} password") == "pw1\n"
    # handed over through a secret config option
    since = len(m.events(L))
    m.juju("config", OWNER, f"creds=secret:{xid}")
    m.wait_event(L, lambda e: e["event"] == "config-changed", since=since)
    assert m.sh(L, "config-get creds") == f"secret:{xid}\n"
    # update-secret: new revision, secret-changed for the tracking unit
    since = len(m.events(L))
    f2 = tmp_path / "s2.yaml"
    f2.write_text("username: admin\npassword: pw2\n")
    m.juju("update-secret", "mysecret", "--file", str(f2))
    assert json.loads(m.juju("secrets", "--format", "json").stdout)[xid]["revision"] == 2
    ev = m.wait_event(L, lambda e: e["event"] == "secret-changed", since=since)
    assert xid_of(ev["env"]["JUJU_SECRET_ID"]) == xid
    assert m.sh(L, f"secret-get secret:{xid} password") == "pw1\n"
    assert m.sh(L, f"secret-get secret:{xid} --refresh password") == "pw2\n"
    revs = json.loads(m.juju("show-secret", "mysecret", "--revisions", "--format", "json").stdout)[xid]["revisions"]
    assert [r["revision"] for r in revs][-1] == 2
    m.juju("config", OWNER, "--reset", "creds")
    m.juju("remove-secret", "mysecret")
    assert xid not in json.loads(m.juju("secrets", "--format", "json").stdout)


def test_grants_removed_with_relation(env):
    m, L, C = env.m, env.L, env.C
    uri = env.s["uri"]
    assert info(env, L, uri).get("access")
    m.juju("remove-relation", f"{OWNER}:db", f"{CONSUMER}:db-client")
    poll(lambda: not info(env, L, uri).get("access"), 60, what="grant removed with the relation")
    r = m.exec(C, f"secret-get {uri} --peek")
    assert r.rc == 1 and "permission denied" in r.stderr
