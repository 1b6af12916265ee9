#!/usr/bin/python3
"""tls-provider: a self-signed-certificates look-alike for the tls-certificates v1 interface.

Behaviour follows ../shared/reference/interfaces.md 1.3 and 1.6 (SSC): a
self-signed RSA-2048 CA kept in the app secret `active-ca-certificates`
(keys `private-key`, `ca-certificate`); for every CSR found in a requirer
UNIT databag (`certificate_signing_requests`) one entry in the provider APP
databag key `certificates` = JSON list of {certificate_signing_request (echo,
stripped), certificate, ca, chain: [certificate, ca]}.

State (leader only): `.tls-provider-state.json` in the charm directory, per
relation id: `issued` (sha256 of CSR text and requested ca flag -> the
published entry plus the fault it was made under and the CA fingerprint) and
`revoked` (entries of a former CA, published with "revoked": true ahead of the
current ones until their CSR goes away). When the file is missing (a new
leader) it is seeded from the published databag.

A CA change (ca-common-name, ca-organization, root-ca-validity; the
rotate-private-key action; the CA reaching root-ca-validity minus
certificate-validity) makes a new key and CA, turns every published entry into
a revoked one and re-signs every CSR with the new CA in the same write.

The `fault` option replaces every good entry by a broken one (see FAULTS).
"""

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from charmtools import (ToolError, fail, is_leader, live_relations, log, own_app, run,
                        status, tool, tool_json)

CHARM_DIR = os.environ.get("JUJU_CHARM_DIR") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
STATE_FILE = os.path.join(CHARM_DIR, ".tls-provider-state.json")
ENDPOINT = "certificates"
CA_LABEL = "active-ca-certificates"
SCALING_MSG = "Scaling is not implemented for this charm"

# fault -> what the published entry looks like instead of the good one
FAULTS = {
    "": "good entries",
    "invalid-pem": "the certificate field is not PEM",
    "wrong-key": "a valid certificate from the CA for another key, CSR subject and SANs",
    "expired": "validity already over",
    "bad-chain": "chain [leaf, another self-signed CA], ca = that other CA",
    "ca-flag-mismatch": "BasicConstraints CA flag opposite to the requested one",
    "not-json": "the certificates value is not JSON",
}
NOT_JSON_VALUE = "this is not JSON: [{certificates"
NOT_PEM_VALUE = "this is not a PEM certificate"

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


class ConfigError(Exception):
    pass


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------

def parse_duration(name, raw):
    m = re.fullmatch(r"\s*([0-9]+)\s*([mhdw])\s*", str(raw or ""))
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"invalid {name} {raw!r}: a positive number with m, h, d or w")
    return datetime.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def read_config():
    c = tool_json("config-get") or {}
    cfg = {
        "cn": str(c.get("ca-common-name") or ""),
        "org": str(c.get("ca-organization") or ""),
        "fault": str(c.get("fault") or "").strip(),
    }
    if not cfg["cn"]:
        raise ConfigError("ca-common-name must not be empty")
    cfg["cert_validity"] = parse_duration("certificate-validity", c.get("certificate-validity"))
    cfg["ca_validity"] = parse_duration("root-ca-validity", c.get("root-ca-validity"))
    if cfg["ca_validity"] < 2 * cfg["cert_validity"]:
        raise ConfigError("root-ca-validity must be at least twice certificate-validity")
    if cfg["fault"] not in FAULTS:
        raise ConfigError(f"invalid fault {cfg['fault']!r}: one of "
                          + ", ".join(repr(f) for f in FAULTS))
    return cfg


# ---------------------------------------------------------------------------
# crypto
# ---------------------------------------------------------------------------

def utcnow():
    return datetime.datetime.utcnow().replace(microsecond=0)


def pem(obj):
    return obj.public_bytes(serialization.Encoding.PEM).decode().strip()


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode().strip()


def spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(cert):
    return cert.fingerprint(hashes.SHA256()).hex()


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(cn, org, validity, key=None):
    key = key or new_key()
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=True, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=False,
                                     encipher_only=False, decipher_only=False),
                       critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def sign_leaf(csr, ca_key, ca_cert, *, is_ca, not_before, not_after, public_key=None):
    """A certificate for `csr` (subject and SANs copied) signed by the CA."""
    public_key = public_key or csr.public_key()
    b = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        b = b.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    if is_ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False),
                            critical=True)
    return b.sign(ca_key, hashes.SHA256())


def signed_by(cert, ca_cert):
    try:
        ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                    padding.PKCS1v15(), cert.signature_hash_algorithm)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


# ---------------------------------------------------------------------------
# the CA in the app secret
# ---------------------------------------------------------------------------

def load_ca():
    """(key, cert) from the `active-ca-certificates` secret, or None."""
    p = tool("secret-get", "--label", CA_LABEL, "--format", "json", check=False)
    if p.returncode != 0:
        if "not found" in p.stderr:
            return None
        raise ToolError(f"secret-get {CA_LABEL}: {p.stderr.strip()}")
    d = json.loads(p.stdout)
    try:
        key = serialization.load_pem_private_key(d["private-key"].encode(), None)
        cert = x509.load_pem_x509_certificate(d["ca-certificate"].encode())
    except (KeyError, ValueError) as e:
        log(f"the {CA_LABEL} secret does not hold a usable CA ({type(e).__name__}); "
            "making a new one", "WARNING")
        return None
    return key, cert


def store_ca(key, cert, exists):
    tmp = tempfile.mkdtemp(prefix="tls-provider-", dir=CHARM_DIR)
    try:
        kf = os.path.join(tmp, "key")
        cf = os.path.join(tmp, "cert")
        fd = os.open(kf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem(key))
        with open(cf, "w") as f:
            f.write(pem(cert))
        content = [f"private-key#file={kf}", f"ca-certificate#file={cf}"]
        if exists:
            info = tool_json("secret-info-get", "--label", CA_LABEL) or {}
            xid = next(iter(info))
            tool("secret-set", xid, *content)
        else:
            tool("secret-add", "--label", CA_LABEL, "--description",
                 "tls-provider CA key and certificate", *content)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ca_mismatch(cert, cfg):
    """Why the stored CA no longer fits the config (None if it does)."""
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    org = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if cn != [cfg["cn"]]:
        return "ca-common-name changed"
    if org != ([cfg["org"]] if cfg["org"] else []):
        return "ca-organization changed"
    if cert.not_valid_after - cert.not_valid_before != cfg["ca_validity"]:
        return "root-ca-validity changed"
    if utcnow() >= cert.not_valid_before + cfg["ca_validity"] - cfg["cert_validity"]:
        return "the CA reached root-ca-validity minus certificate-validity"
    return None


# ---------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------

def load_state():
    try:
        with open(STATE_FILE) as f:
            st = json.load(f)
        if isinstance(st, dict) and isinstance(st.get("relations"), dict):
            return st
    except (OSError, ValueError):
        pass
    return {"relations": {}}


def save_state(st):
    tmp = STATE_FILE + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(st, f)
    os.replace(tmp, STATE_FILE)


def csr_key(text, is_ca):
    return hashlib.sha256((text + ("\0ca" if is_ca else "\0leaf")).encode()).hexdigest()


def published(rid):
    """The raw `certificates` value of our app databag on relation `rid`."""
    v = tool_json("relation-get", "-r", rid, "--app", "certificates", own_app())
    return v if isinstance(v, str) else ""


def seed_relation(rid):
    """Rebuild a relation's state from what is published (state file missing)."""
    rs = {"issued": {}, "revoked": []}
    try:
        entries = json.loads(published(rid) or "[]")
    except ValueError:
        return rs
    if not isinstance(entries, list):
        return rs
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("certificate_signing_request"), str):
            continue
        text = e["certificate_signing_request"]
        try:
            cert = x509.load_pem_x509_certificate(str(e.get("certificate")).encode())
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (ValueError, x509.ExtensionNotFound):
            cert, bc = None, False
        k = csr_key(text, bc)
        if e.get("revoked"):
            rs["revoked"].append({"key": k, "entry": e})
        elif cert is not None:
            rs["issued"][k] = {"fault": "unknown", "ca_fp": None, "is_ca": bc, "entry": e}
    return rs


# ---------------------------------------------------------------------------
# issuing
# ---------------------------------------------------------------------------

class Issuer:
    def __init__(self, cfg, ca_key, ca_cert):
        self.cfg = cfg
        self.ca_key = ca_key
        self.ca_cert = ca_cert
        self.ca_pem = pem(ca_cert)
        self.ca_fp = fingerprint(ca_cert)
        self._other_ca = None

    def other_ca(self):
        if self._other_ca is None:
            self._other_ca = make_ca("tls-provider bad-chain CA", "", self.cfg["ca_validity"])
        return self._other_ca

    def reusable(self, rec, csr, is_ca):
        if not rec or rec.get("is_ca") != is_ca:
            return False
        if rec.get("fault") == "unknown":          # seeded from the databag
            if self.cfg["fault"] != "":
                return False
            e = rec["entry"]
            try:
                cert = x509.load_pem_x509_certificate(e["certificate"].encode())
            except (KeyError, ValueError):
                return False
            ok = (e.get("ca") == self.ca_pem and signed_by(cert, self.ca_cert)
                  and spki(cert.public_key()) == spki(csr.public_key())
                  and e.get("chain") == [e["certificate"], self.ca_pem])
            if ok:
                rec["fault"], rec["ca_fp"] = "", self.ca_fp
            return ok
        return rec.get("fault") == self.cfg["fault"] and rec.get("ca_fp") == self.ca_fp

    def issue(self, text, csr, is_ca):
        fault = self.cfg["fault"]
        now = utcnow()
        nb = now - datetime.timedelta(minutes=1)
        na = now + self.cfg["cert_validity"]
        kw = {"is_ca": is_ca, "not_before": nb, "not_after": na}
        ca_pem = self.ca_pem
        if fault == "wrong-key":
            kw["public_key"] = new_key().public_key()
        elif fault == "expired":
            kw["not_before"] = now - self.cfg["cert_validity"] - datetime.timedelta(hours=1)
            kw["not_after"] = now - datetime.timedelta(hours=1)
        elif fault == "ca-flag-mismatch":
            kw["is_ca"] = not is_ca
        cert_pem = pem(sign_leaf(csr, self.ca_key, self.ca_cert, **kw))
        if fault == "invalid-pem":
            cert_pem = NOT_PEM_VALUE
        elif fault == "bad-chain":
            ca_pem = pem(self.other_ca()[1])
        entry = {
            "certificate_signing_request": text,
            "certificate": cert_pem,
            "ca": ca_pem,
            "chain": [cert_pem, ca_pem],
        }
        return {"fault": fault, "ca_fp": self.ca_fp, "is_ca": is_ca, "entry": entry}


def requested(rid):
    """Ordered list of (key, text, is_ca, csr) from every requirer unit databag."""
    out = []
    seen = set()
    for unit in tool_json("relation-list", "-r", rid) or []:
        data = tool_json("relation-get", "-r", rid, "-", unit) or {}
        raw = data.get("certificate_signing_requests")
        if raw is None:
            continue
        try:
            reqs = json.loads(raw)
        except ValueError:
            log(f"{rid}: {unit}: certificate_signing_requests is not JSON; ignored", "WARNING")
            continue
        if not isinstance(reqs, list):
            log(f"{rid}: {unit}: certificate_signing_requests is not a list; ignored", "WARNING")
            continue
        for i, r in enumerate(reqs):
            where = f"{rid}: {unit}: entry {i}"
            if not isinstance(r, dict) or not isinstance(r.get("certificate_signing_request"), str):
                log(f"{where}: no certificate_signing_request string; ignored", "WARNING")
                continue
            if "ca" not in r or r["ca"] not in (True, False, None):
                log(f"{where}: `ca` missing or not a boolean; ignored", "WARNING")
                continue
            text = r["certificate_signing_request"].strip()
            try:
                csr = x509.load_pem_x509_csr(text.encode())
                if not csr.is_signature_valid:
                    raise ValueError("bad signature")
            except ValueError as e:
                log(f"{where}: not a valid CSR ({e}); ignored", "WARNING")
                continue
            is_ca = bool(r["ca"])
            k = csr_key(text, is_ca)
            if k in seen:
                continue
            seen.add(k)
            out.append((k, text, is_ca, csr))
    return out


def serve_relation(rid, rs, issuer):
    wanted = requested(rid)
    keys = {w[0] for w in wanted}
    pruned = [k for k in rs["issued"] if k not in keys]
    for k in pruned:
        del rs["issued"][k]
    before = len(rs["revoked"])
    rs["revoked"] = [r for r in rs["revoked"] if r["key"] in keys]
    if pruned or len(rs["revoked"]) != before:
        log(f"{rid}: pruned {len(pruned)} certificate(s) and "
            f"{before - len(rs['revoked'])} revoked one(s) whose CSR is gone")
    current = []
    made = 0
    for k, text, is_ca, csr in wanted:
        rec = rs["issued"].get(k)
        if not issuer.reusable(rec, csr, is_ca):
            rec = issuer.issue(text, csr, is_ca)
            rs["issued"][k] = rec
            made += 1
            log(f"{rid}: issued a certificate for subject {csr.subject.rfc4514_string()!r} "
                f"ca={is_ca} fault={issuer.cfg['fault'] or 'none'}")
        current.append(rec["entry"])
    # keep `issued` in publishing order: a later revocation lists them the same way
    rs["issued"] = {w[0]: rs["issued"][w[0]] for w in wanted}
    entries = [r["entry"] for r in rs["revoked"]] + current
    value = NOT_JSON_VALUE if issuer.cfg["fault"] == "not-json" else json.dumps(entries)
    if published(rid) != value:
        tool("relation-set", "-r", rid, "--app", "--file", "-",
             input=json.dumps({"certificates": value}))
        log(f"{rid}: published {len(current)} certificate(s), {len(rs['revoked'])} revoked"
            f" ({made} new)")


def revoke_all(st, reason):
    n = 0
    for rs in st["relations"].values():
        for k, rec in rs["issued"].items():
            e = dict(rec["entry"])
            e["revoked"] = True
            rs["revoked"].append({"key": k, "entry": e})
            n += 1
        rs["issued"] = {}
    log(f"new CA ({reason}): {n} certificate(s) revoked, every CSR re-signed")


def reconcile(force_rotate=None):
    """The whole issuing pass. Returns True when it ran (leader, valid config)."""
    if not is_leader():
        status("blocked", SCALING_MSG)
        return False
    try:
        cfg = read_config()
    except ConfigError as e:
        status("blocked", str(e))
        log(f"blocked: {e}", "WARNING")
        return False
    st = load_state()
    rids = list(live_relations(ENDPOINT))  # without one being broken
    for rid in list(st["relations"]):
        if rid not in rids:
            del st["relations"][rid]
    for rid in rids:
        if rid not in st["relations"]:
            st["relations"][rid] = seed_relation(rid)
    loaded = load_ca()
    if loaded is None:
        ca_key, ca_cert = make_ca(cfg["cn"], cfg["org"], cfg["ca_validity"])
        store_ca(ca_key, ca_cert, exists=False)
        log(f"created the CA {ca_cert.subject.rfc4514_string()!r}")
        if any(rs["issued"] for rs in st["relations"].values()):
            revoke_all(st, "no CA in the secret")
    else:
        ca_key, ca_cert = loaded
        reason = force_rotate or ca_mismatch(ca_cert, cfg)
        if reason:
            ca_key, ca_cert = make_ca(cfg["cn"], cfg["org"], cfg["ca_validity"])
            store_ca(ca_key, ca_cert, exists=True)
            revoke_all(st, reason)
    issuer = Issuer(cfg, ca_key, ca_cert)
    for rid in rids:
        serve_relation(rid, st["relations"][rid], issuer)
    save_state(st)
    status("active", "")
    return True


# ---------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------

def action_get_ca_certificate():
    loaded = load_ca()
    if loaded is None:
        return fail("the CA certificate is not yet generated")
    tool("action-set", f"ca-certificate={pem(loaded[1])}")


def action_get_issued_certificates():
    entries = []
    for rid in live_relations(ENDPOINT):
        raw = published(rid)
        if not raw:
            continue
        try:
            entries.extend(json.loads(raw))
        except ValueError:
            tool("action-log", "--", f"{rid}: the published value is not JSON (fault?)")
    tool("action-set", f"certificates={json.dumps(entries)}")


def action_rotate_private_key():
    if not is_leader():
        return fail("only the leader can rotate the CA key")
    if load_ca() is None:
        return fail("the CA certificate is not yet generated")
    if not reconcile(force_rotate="rotate-private-key"):
        return fail("not rotated: the charm is blocked")


ACTIONS = {
    "get-ca-certificate": action_get_ca_certificate,
    "get-issued-certificates": action_get_issued_certificates,
    "rotate-private-key": action_rotate_private_key,
}


def hook(name):
    if name in ("stop", "remove"):
        return
    if name == "secret-remove" and os.environ.get("JUJU_SECRET_ID"):
        # an obsolete revision of the CA secret: drop it (juju.md 4.5)
        tool("secret-remove", os.environ["JUJU_SECRET_ID"], "--revision",
             os.environ.get("JUJU_SECRET_REVISION", ""), check=False)
    reconcile()


if __name__ == "__main__":
    run("tls-provider", ACTIONS, hook)
