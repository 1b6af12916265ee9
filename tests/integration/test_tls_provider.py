"""The tls-provider and tls-requirer test charms on the tls-certificates v1 interface.

tls-provider imitates Canonical's self-signed-certificates operator
(../shared/reference/interfaces.md 1.6), tls-requirer is a minimal unit-mode
requirer (1.2, 1.4). Checked here, only through sandbox/bin/juju: the wire
format against the CRI JSON schemas, the issued certificates (CA, SANs,
extensions, validity), a CA change (old entries revoked, every CSR re-signed),
rotate-private-key, certificate-validity, pruning on renewal, the `fault`
option and the non-leader status.
"""

import datetime
import json
import subprocess
import tempfile
import types
from pathlib import Path

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from conftest import REPO, all_active, all_agents_idle, any_error, poll

PROV = "tls-provider"
REQ = "tls-requirer"
SCHEMAS = REPO / "tests" / "schemas"     # copies of the reference's schemas (README there)
JUJU_KEYS = {"egress-subnets", "ingress-address", "private-address"}
ENTRY_KEYS = {"certificate_signing_request", "certificate", "ca", "chain"}


# ---------------------------------------------------------------------------
# reading the wire (juju show-unit: no hook context needed)
# ---------------------------------------------------------------------------

def rel_info(model, unit, endpoint="certificates"):
    out = json.loads(model.juju("show-unit", unit, "--format", "json").stdout)[unit]
    for info in out.get("relation-info") or []:
        if info["endpoint"] == endpoint:
            return info
    raise AssertionError(f"{unit} has no {endpoint} relation: {out}")


def provider_app_data(env):
    """The provider APP databag, as the requirer side sees it."""
    return rel_info(env.m, env.reqs[0])["application-data"]


def requirer_unit_data(env, unit):
    return rel_info(env.m, env.prov)["related-units"][unit]["data"]


def published(env):
    """The decoded `certificates` list of the provider app databag."""
    return json.loads(provider_app_data(env)["certificates"])


def current(entries):
    return [e for e in entries if not e.get("revoked")]


def revoked(entries):
    return [e for e in entries if e.get("revoked")]


def csr_of(env, unit):
    reqs = json.loads(requirer_unit_data(env, unit)["certificate_signing_requests"])
    assert len(reqs) == 1 and reqs[0]["ca"] is False, reqs
    return reqs[0]["certificate_signing_request"]


# ---------------------------------------------------------------------------
# schemas (interfaces.md 6: JSON-typed fields are strings on the wire)
# ---------------------------------------------------------------------------

def load_schema(name):
    path = SCHEMAS / name
    assert path.is_file(), f"{path} not found"
    return json.loads(path.read_text())


def _resolve(schema, node):
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node


# Listed as required but nullable by the generated provider schema, an artefact of the
# generator (interfaces.md 1.3): real v4 data omits them, so absent = null. Nothing else
# is filled in (a requirer entry without `ca` must fail, 1.2).
OMITTED_AS_NULL = ("revoked", "recommended_expiry_notification_time")


def _fill_omitted(items):
    for it in items:
        if isinstance(it, dict):
            for k in OMITTED_AS_NULL:
                it.setdefault(k, None)
    return items


def validate_databag(schema, side, data):
    """Validate one databag (str -> str) against schema.properties[side], then each
    JSON-typed field's decoded value against its contentSchema."""
    node = {"$defs": schema["$defs"], **schema["properties"][side]}
    jsonschema.Draft202012Validator(node).validate(data)
    model = _resolve(schema, schema["properties"][side])
    for key, prop in model["properties"].items():
        if key not in data or prop.get("contentMediaType") != "application/json":
            continue
        decoded = json.loads(data[key])
        cs = prop["contentSchema"]
        if side == "app" and isinstance(decoded, list):
            decoded = _fill_omitted(decoded)
        jsonschema.Draft202012Validator({"$defs": schema["$defs"], **cs}).validate(decoded)


# ---------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------

def load_cert(text):
    return x509.load_pem_x509_certificate(text.encode())


def spki(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def openssl_verify(cert_pem, ca_pem):
    """(ok, output) of `openssl verify -CAfile ca cert` (partial chains refused)."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "ca.pem").write_text(ca_pem + "\n")
        Path(d, "leaf.pem").write_text(cert_pem + "\n")
        p = subprocess.run(["openssl", "verify", "-CAfile", f"{d}/ca.pem", f"{d}/leaf.pem"],
                           capture_output=True, text=True, timeout=30)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


def basic_ca(cert):
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def cn(cert):
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def get_ca(env):
    r = env.m.run(env.prov, "get-ca-certificate")
    assert r.status == "completed", (r.cli.stdout, r.cli.stderr)
    return r.results["ca-certificate"].strip()


def get_certificate(env, unit):
    """(results, message) of the requirer's get-certificate action."""
    r = env.m.run(unit, "get-certificate")
    if r.status == "completed":
        return r.results, None
    return None, r.task.get("message") or r.cli.stderr


def wait_published(env, pred, what, timeout=120):
    def check():
        try:
            entries = published(env)
        except (ValueError, KeyError):
            return None
        return entries if pred(entries) else None
    return poll(check, timeout, what=what)


def workload(status, app, unit):
    ws = status["applications"][app]["units"][unit]["workload-status"]
    return ws.get("current"), ws.get("message", "")


def set_config(env, **kv):
    env.m.juju("config", PROV, *(f"{k}={v}" for k, v in kv.items()))


def settled(env):
    env.m.wait(lambda s: all_active(s, PROV, REQ) and all_agents_idle(s, PROV, REQ),
               error=any_error, timeout=90, successes=2)


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(model):
    model.deploy(PROV)
    model.deploy(REQ, num_units=2)
    model.juju("integrate", f"{REQ}:certificates", f"{PROV}:certificates")
    try:
        model.wait(lambda s: all_active(s, PROV, REQ) and all_agents_idle(s, PROV, REQ),
                   error=any_error, timeout=150)
    except (AssertionError, TimeoutError) as e:    # setup errors get no saved logs
        raise AssertionError(f"{e}\n--- debug-log (tail) ---\n"
                             + model.debug_log()[-6000:]) from None
    st = model.status()
    return types.SimpleNamespace(
        m=model, prov=model.leader(PROV, st), reqs=model.units(REQ, st),
        addr={u: st["applications"][REQ]["units"][u]["public-address"]
              for u in model.units(REQ, st)},
        state={})


def test_wire_format_matches_the_schemas(env):
    app = provider_app_data(env)
    assert set(app) == {"certificates"}, app
    validate_databag(load_schema("tls_certificates_v1_generated_provider.json"), "app", app)
    # provider unit databag: nothing but what Juju writes
    local = rel_info(env.m, env.prov)["local-unit"]["data"]
    assert set(local) <= JUJU_KEYS, local
    req_schema = load_schema("tls_certificates_v1_generated_requirer.json")
    for u in env.reqs:
        data = requirer_unit_data(env, u)
        assert set(data) - JUJU_KEYS == {"certificate_signing_requests"}, data
        validate_databag(req_schema, "unit", {k: v for k, v in data.items()
                                             if k not in JUJU_KEYS})
        text = csr_of(env, u)
        assert text == text.strip() and text.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    entries = published(env)
    assert len(entries) == 2 and not revoked(entries), entries
    # the CSR is echoed exactly, one entry per requirer unit, chain = [leaf, ca]
    assert sorted(e["certificate_signing_request"] for e in entries) == \
        sorted(csr_of(env, u) for u in env.reqs)
    for e in entries:
        assert set(e) == ENTRY_KEYS, e
        assert e["chain"] == [e["certificate"], e["ca"]]
    # the requirer's key and the provider's CA live in secrets, never in the databags
    assert "PRIVATE KEY" not in json.dumps(app)
    info = json.loads(env.m.sh(env.prov, "secret-info-get --label active-ca-certificates "
                                         "--format json"))
    assert next(iter(info.values()))["owner"] == "application"


def test_ca_certificate(env):
    ca_pem = get_ca(env)
    ca = load_cert(ca_pem)
    assert cn(ca) == "self-signed-certificates-operator"
    assert ca.subject == ca.issuer and ca.public_key().key_size == 2048
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment \
        and ku.value.key_cert_sign
    ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ca.not_valid_after - ca.not_valid_before == datetime.timedelta(days=365)
    assert openssl_verify(ca_pem, ca_pem)[0]
    env.state["ca"] = ca_pem


def test_requirers_get_valid_certificates(env):
    ca_pem = env.state["ca"]
    ca = load_cert(ca_pem)
    now = datetime.datetime.utcnow()
    issued = {}
    for u in env.reqs:
        res, msg = get_certificate(env, u)
        assert res is not None, msg
        assert res["ca"].strip() == ca_pem
        assert json.loads(res["chain"]) == [res["certificate"], res["ca"]]
        ok, out = openssl_verify(res["certificate"], ca_pem)
        assert ok, out
        cert = load_cert(res["certificate"])
        csr = x509.load_pem_x509_csr(csr_of(env, u).encode())
        slug = u.replace("/", "-")
        assert cn(cert) == slug and cert.subject == csr.subject
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [slug]
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [env.addr[u]]
        assert spki(cert) == spki(csr)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca is False
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.KeyUsage)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert cert.signature_hash_algorithm.name == "sha256"
        assert cert.not_valid_after - cert.not_valid_before == \
            datetime.timedelta(days=90, minutes=1)
        assert abs((cert.not_valid_before - now).total_seconds() + 60) < 120
        issued[u] = res["certificate"]
    r = env.m.run(env.prov, "get-issued-certificates")
    assert r.status == "completed", r.cli.stderr
    assert json.loads(r.results["certificates"]) == published(env)
    env.state["issued"] = issued


def test_ca_change_revokes_and_resigns(env):
    old_ca = env.state["ca"]
    old = published(env)
    set_config(env, **{"ca-common-name": "rotated-ca", "ca-organization": "Test Org"})
    entries = wait_published(env, lambda es: len(revoked(es)) == 2, "revoked entries")
    # the former entries first, unchanged apart from "revoked": true
    assert entries[:2] == [dict(e, revoked=True) for e in old], entries[:2]
    new = entries[2:]
    assert len(new) == 2 and not revoked(new)
    assert [e["certificate_signing_request"] for e in new] == \
        [e["certificate_signing_request"] for e in old]
    new_ca = get_ca(env)
    ca = load_cert(new_ca)
    assert cn(ca) == "rotated-ca" and new_ca != old_ca
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Test Org"
    for e in new:
        assert e["ca"] == new_ca and e["chain"] == [e["certificate"], new_ca]
        assert openssl_verify(e["certificate"], new_ca)[0]
        assert not openssl_verify(e["certificate"], old_ca)[0]
    validate_databag(load_schema("tls_certificates_v1_generated_provider.json"), "app",
                     provider_app_data(env))
    settled(env)
    # the requirers pick the re-signed, non-revoked certificate
    for u in env.reqs:
        res, msg = get_certificate(env, u)
        assert res is not None, msg
        assert res["certificate"] != env.state["issued"][u]
        assert openssl_verify(res["certificate"], new_ca)[0]
    # rotate-private-key: a new key and CA with the same subject; revoke and re-sign again
    r = env.m.run(env.prov, "rotate-private-key")
    assert r.status == "completed", (r.cli.stdout, r.cli.stderr)
    entries = wait_published(env, lambda es: len(revoked(es)) == 4, "second revocation")
    rotated = get_ca(env)
    assert cn(load_cert(rotated)) == "rotated-ca"
    assert spki(load_cert(rotated)) != spki(ca)
    assert entries[2:4] == [dict(e, revoked=True) for e in new]
    for e in current(entries):
        assert e["ca"] == rotated and openssl_verify(e["certificate"], rotated)[0]
    settled(env)
    env.state["ca"] = rotated


def test_validity_rules_and_prune_on_renew(env):
    m = env.m
    set_config(env, **{"certificate-validity": "200d"})     # 2 x 200d > 365d
    m.wait(lambda s: workload(s, PROV, env.prov) ==
           ("blocked", "root-ca-validity must be at least twice certificate-validity"),
           timeout=60, successes=1)
    before = published(env)
    set_config(env, **{"certificate-validity": "2m"})
    settled(env)
    assert published(env) == before          # unchanged CSRs keep their certificates
    u, other = env.reqs
    old_csr = csr_of(env, u)
    r = m.run(u, "renew")
    assert r.status == "completed", (r.cli.stdout, r.cli.stderr)
    new_csr = r.results["certificate-signing-request"].strip()
    assert new_csr != old_csr

    def renewed(es):
        csrs = [e["certificate_signing_request"] for e in es]
        return new_csr in csrs and old_csr not in csrs
    entries = wait_published(env, renewed, "the renewed CSR's entry and the old one pruned")
    # the other unit's entries (revoked ones included) are untouched
    assert [e for e in entries if e["certificate_signing_request"] != new_csr] == \
        [e for e in before if e["certificate_signing_request"] != old_csr]
    assert len([e for e in entries if e["certificate_signing_request"] == new_csr]) == 1
    assert csr_of(env, u) == new_csr
    settled(env)
    res, msg = get_certificate(env, u)
    assert res is not None, msg
    cert = load_cert(res["certificate"])
    assert cert.not_valid_after - cert.not_valid_before == datetime.timedelta(minutes=3)
    left = (cert.not_valid_after - datetime.datetime.utcnow()).total_seconds()
    assert 60 < left <= 120, left
    ok, out = openssl_verify(res["certificate"], env.state["ca"])
    assert ok, out
    assert get_certificate(env, other)[0] is not None


FAULT_CHECKS = {}


def _fault(name):
    def deco(fn):
        FAULT_CHECKS[name] = fn
        return fn
    return deco


@_fault("wrong-key")
def _wrong_key(env, e, csr, ca_pem):
    cert = load_cert(e["certificate"])
    assert openssl_verify(e["certificate"], ca_pem)[0]        # a real certificate of the CA
    assert cert.subject == csr.subject
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return spki(cert) != spki(csr)


@_fault("expired")
def _expired(env, e, csr, ca_pem):
    cert = load_cert(e["certificate"])
    ok, out = openssl_verify(e["certificate"], ca_pem)
    return cert.not_valid_after < datetime.datetime.utcnow() and not ok and "expired" in out


@_fault("bad-chain")
def _bad_chain(env, e, csr, ca_pem):
    other = e["ca"]
    return (other != ca_pem and e["chain"] == [e["certificate"], other]
            and load_cert(other).subject == load_cert(other).issuer
            and not openssl_verify(e["certificate"], other)[0]
            and openssl_verify(e["certificate"], ca_pem)[0])


@_fault("ca-flag-mismatch")
def _ca_flag(env, e, csr, ca_pem):
    return basic_ca(load_cert(e["certificate"])) is True


@_fault("invalid-pem")
def _invalid_pem(env, e, csr, ca_pem):
    try:
        load_cert(e["certificate"])
    except ValueError:
        return "BEGIN CERTIFICATE" not in e["certificate"]
    return False


def test_faults(env):
    ca_pem = env.state["ca"]
    good = current(published(env))
    csrs = {e["certificate_signing_request"] for e in good}
    for fault, check in FAULT_CHECKS.items():
        set_config(env, fault=fault)

        def broken(es, check=check):
            cur = current(es)
            if {e["certificate_signing_request"] for e in cur} != csrs or \
                    any(e in good for e in cur):
                return False
            try:                # an entry of the previous fault may still be there
                return all(check(env, e, x509.load_pem_x509_csr(
                    e["certificate_signing_request"].encode()), ca_pem) for e in cur)
            except (ValueError, KeyError, AssertionError, x509.ExtensionNotFound):
                return False
        wait_published(env, broken, f"fault={fault} entries", timeout=120)
        if fault == "wrong-key":
            res, msg = get_certificate(env, env.reqs[1])
            assert res is None and "public key does not match" in msg, msg
        elif fault == "ca-flag-mismatch":
            res, msg = get_certificate(env, env.reqs[1])
            assert res is None and "CA flag" in msg, msg
    set_config(env, fault="not-json")

    def not_json():
        raw = provider_app_data(env).get("certificates", "")
        try:
            json.loads(raw)
            return False
        except ValueError:
            return raw
    poll(not_json, 120, what="a certificates value that is not JSON")
    res, msg = get_certificate(env, env.reqs[0])
    assert res is None and "not valid JSON" in msg, msg
    # back to good entries: re-issued by the CA, requirers active again
    set_config(env, fault="")
    entries = wait_published(
        env, lambda es: {e["certificate_signing_request"] for e in current(es)} == csrs
        and all(openssl_verify(e["certificate"], ca_pem)[0] for e in current(es)),
        "good entries again", timeout=120)
    validate_databag(load_schema("tls_certificates_v1_generated_provider.json"), "app",
                     provider_app_data(env))
    assert len(current(entries)) == 2
    settled(env)
    for u in env.reqs:
        assert get_certificate(env, u)[0] is not None


def test_non_leader_is_blocked(env):
    env.m.juju("add-unit", PROV)

    def blocked(s):
        units = s["applications"][PROV].get("units") or {}
        return any(not d.get("leader") and workload(s, PROV, u) ==
                   ("blocked", "Scaling is not implemented for this charm")
                   for u, d in units.items())
    env.m.wait(blocked, error=any_error, timeout=90, successes=1)
