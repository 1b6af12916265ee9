#!/usr/bin/python3
"""tls-requirer: a minimal tls-certificates v1 requirer (unit mode).

- An RSA-2048 key per unit, kept in a unit-owned secret labelled
  `private-key` (key `private-key`); never on disk, never logged.
- One CSR (CN and SAN DNS `<app>-<n>`, SAN IP the unit's ingress address on
  `certificates`, a fresh x500UniqueIdentifier), kept in
  `.tls-requirer-state.json` in the charm directory, published in the unit
  databag as `certificate_signing_requests` =
  '[{"certificate_signing_request": <PEM stripped>, "ca": false}]' (the only
  key the charm writes there).
- The matching certificate is the provider app databag entry whose CSR is
  DER-equal to ours, not revoked, whose certificate's public key is our key
  (interfaces.md 1.4).

Status: blocked without the relation, waiting until a matching certificate
is published, active "" then.
Actions: get-certificate (certificate, ca, chain as JSON text), renew (a new
CSR, optionally a new key, replacing the old one).
"""

import ipaddress
import json
import os
import shutil
import tempfile
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from charmtools import ToolError, fail, live_relations, log, run, tool, tool_json

CHARM_DIR = os.environ.get("JUJU_CHARM_DIR") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
STATE_FILE = os.path.join(CHARM_DIR, ".tls-requirer-state.json")
ENDPOINT = "certificates"
KEY_LABEL = "private-key"


def unit_slug():
    app, n = os.environ["JUJU_UNIT_NAME"].rsplit("/", 1)
    return f"{app}-{n}"


def spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------------------
# key (unit-owned secret) and CSR (state file)
# ---------------------------------------------------------------------------

def load_key():
    p = tool("secret-get", "--label", KEY_LABEL, KEY_LABEL, "--format", "json", check=False)
    if p.returncode != 0:
        if "not found" in p.stderr:
            return None
        raise ToolError(f"secret-get {KEY_LABEL}: {p.stderr.strip()}")
    return serialization.load_pem_private_key(json.loads(p.stdout).encode(), None)


def store_key(key, exists):
    tmp = tempfile.mkdtemp(prefix="tls-requirer-", dir=CHARM_DIR)
    try:
        kf = os.path.join(tmp, "key")
        fd = os.open(kf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode())
        if exists:
            xid = next(iter(tool_json("secret-info-get", "--label", KEY_LABEL) or {}))
            tool("secret-set", xid, f"{KEY_LABEL}#file={kf}")
        else:
            tool("secret-add", "--owner", "unit", "--label", KEY_LABEL,
                 "--description", "tls-requirer private key", f"{KEY_LABEL}#file={kf}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_key(renew=False):
    key = load_key()
    if key is None or renew:
        exists = key is not None
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        store_key(key, exists)
        log("generated a new private key")
    return key


def address():
    p = tool("network-get", ENDPOINT, "--ingress-address", check=False)
    addr = p.stdout.strip() if p.returncode == 0 else ""
    if not addr:
        addr = tool("unit-get", "private-address").stdout.strip()
    return addr


def make_csr(key):
    name = unit_slug()
    sans = [x509.DNSName(name)]
    addr = address()
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(addr)))
    except ValueError:
        if addr and addr != name:
            sans.append(x509.DNSName(addr))
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, name),
        x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, str(uuid.uuid4())),
    ])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode().strip()


def load_state():
    try:
        with open(STATE_FILE) as f:
            st = json.load(f)
        if isinstance(st, dict):
            return st
    except (OSError, ValueError):
        pass
    return {}


def save_state(st):
    tmp = STATE_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.replace(tmp, STATE_FILE)


def ensure_csr(key, renew=False):
    """The current CSR text; a new one when missing, for another key, or renew."""
    st = load_state()
    csr_text = st.get("csr")
    if csr_text and not renew:
        try:
            csr = x509.load_pem_x509_csr(csr_text.encode())
            if spki(csr.public_key()) == spki(key.public_key()):
                return csr_text
        except ValueError:
            pass
    csr_text = make_csr(key)
    st["csr"] = csr_text
    save_state(st)
    log("made a new CSR")
    return csr_text


# ---------------------------------------------------------------------------
# relation
# ---------------------------------------------------------------------------

def publish(rid, csr_text):
    value = json.dumps([{"certificate_signing_request": csr_text, "ca": False}])
    mine = tool_json("relation-get", "-r", rid, "certificate_signing_requests",
                     os.environ["JUJU_UNIT_NAME"])
    if mine != value:
        tool("relation-set", "-r", rid, "--file", "-",
             input=json.dumps({"certificate_signing_requests": value}))
        log(f"{rid}: published the CSR")


def provider_entries(rid):
    """(entries, error) from the provider app databag of `rid`."""
    app = tool_json("relation-list", "-r", rid, "--app")
    if not app:
        return None, "the provider application is not known yet"
    raw = tool_json("relation-get", "-r", rid, "--app", "certificates", app)
    if raw is None:
        return None, "the provider published no certificates"
    try:
        entries = json.loads(raw)
    except ValueError:
        return None, "the provider's certificates value is not valid JSON"
    if not isinstance(entries, list):
        return None, "the provider's certificates value is not a list"
    return entries, None


def find_certificate(rid, csr_text, key):
    """(entry, error): the non-revoked entry for our CSR that matches our key."""
    entries, err = provider_entries(rid)
    if entries is None:
        return None, err
    mine = x509.load_pem_x509_csr(csr_text.encode()).public_bytes(serialization.Encoding.DER)
    err = "no certificate for the current CSR"
    for e in entries:
        if not isinstance(e, dict):
            continue
        try:
            theirs = x509.load_pem_x509_csr(str(e.get("certificate_signing_request")).encode())
        except ValueError:
            continue
        if theirs.public_bytes(serialization.Encoding.DER) != mine:
            continue
        if e.get("revoked"):
            err = "the certificate for the current CSR is revoked"
            continue
        try:
            cert = x509.load_pem_x509_certificate(str(e.get("certificate")).encode())
        except ValueError:
            err = "the certificate for the current CSR is not a valid PEM certificate"
            continue
        if spki(cert.public_key()) != spki(key.public_key()):
            err = "the certificate's public key does not match the private key"
            continue
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if is_ca:                      # we always ask for ca=false (interfaces.md 1.4)
            err = "the certificate's CA flag does not match the request (ca=false)"
            continue
        return e, None
    return None, err


def reconcile(key, csr_text):
    rids = list(live_relations(ENDPOINT))
    for rid in rids:
        publish(rid, csr_text)
    if not rids:
        tool("status-set", "blocked", "--", f"Missing relation: {ENDPOINT}")
        return
    entry, err = find_certificate(rids[0], csr_text, key)
    if entry is None:
        tool("status-set", "waiting", "--", f"Waiting for a certificate: {err}")
    else:
        tool("status-set", "active", "--", "")


def action_get_certificate():
    key = load_key()
    csr_text = load_state().get("csr")
    if key is None or not csr_text:
        return fail("no private key or CSR yet")
    rids = list(live_relations(ENDPOINT))
    if not rids:
        return fail(f"no {ENDPOINT} relation")
    entry, err = find_certificate(rids[0], csr_text, key)
    if entry is None:
        return fail(err)
    tool("action-set", f"certificate={entry['certificate']}", f"ca={entry.get('ca', '')}",
         f"chain={json.dumps(entry.get('chain'))}")


def action_renew():
    params = tool_json("action-get") or {}
    key = ensure_key(renew=bool(params.get("new-key")))
    csr_text = ensure_csr(key, renew=True)
    reconcile(key, csr_text)
    tool("action-set", f"certificate-signing-request={csr_text}")


ACTIONS = {"get-certificate": action_get_certificate, "renew": action_renew}


def hook(name):
    if name in ("stop", "remove"):
        return
    key = ensure_key()
    reconcile(key, ensure_csr(key))


if __name__ == "__main__":
    run("tls-requirer", ACTIONS, hook)
