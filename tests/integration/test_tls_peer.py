"""Peer TLS from a provider (peer-certificates): with the test provider
(tests/charms/tls-provider) on `peer-certificates`, every unit requests a certificate for its
member name and, once every unit trusts the provider's CA, presents it on etcd's client and
peer ports (2379, 2380) and on the REST API (8008), and authenticates its replication
connection with it; PostgreSQL's own certificate for clients (5432) stays the internal CA's.
The switch and the relation's removal happen under a writer (one long-lived session on the
primary inserting every 0.5 s, a new verify-full connection to the primary every second)
with 0 failures, no PostgreSQL restart and the primary where it was; a switchover works on
the provider's certificates; garbage from the provider blocks every unit while the last good
certificate stays in use. Driven only through sandbox/bin/juju, and psycopg2 and openssl from
the host to the units' addresses."""
import json
import re
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import any_error, poll
from test_ha import APP, cluster_settled, settled_on
from test_tls import (CHARM, PROVIDER_FAULTS, addresses, all_verify, connect,
                      primary_by_action, start_times, streaming_over_tls, unit_states)
from test_tls_provider import (JUJU_KEYS, load_cert, load_schema, openssl_verify, rel_info,
                               validate_databag)
from test_tls_rotation import (BEGIN, END, Bundle, Writer, check_quiet, common_name,
                               provider_ca, served_cert, write_pem)

PEER_PORTS = (2379, 2380, 8008)           # etcd client, etcd peer, REST API
INTERNAL_CN = f"{APP} internal CA"
ENDPOINT = "peer-certificates"
RELATION = (f"{APP}:{ENDPOINT}", "tls-provider:certificates")
FAULTS = ("wrong-key", "expired")
FILES = {   # path -> owner (mode 600 each)
    "/var/lib/pg-agent/tls/peer-cert.pem": "root",
    "/var/lib/pg-agent/tls/peer-key.pem": "root",
    "/var/lib/postgresql/pg-agent-tls/peer-cert.pem": "postgres",
    "/var/lib/postgresql/pg-agent-tls/peer-key.pem": "postgres",
    "/var/lib/etcd/pg-agent-tls/key.pem": "etcd",
}


@pytest.fixture(scope="module")
def cluster(model, tmp_path_factory):
    """3 units and the (not yet integrated) provider; the internal and provider CA files."""
    assert CHARM.exists(), "run `make build` first"
    tmp = tmp_path_factory.mktemp("tls-peer")
    model.juju("deploy", str(CHARM), "-n", "3", "--config", "profile=testing",
               "--config", "superuser-remote-access=true", timeout=180)
    model.deploy("tls-provider", config={"certificate-validity": "1d"})
    model.wait(cluster_settled(3), error=any_error, timeout=300)
    model.wait(lambda st: st["applications"].get("tls-provider", {}).get("units") and
               all(u["workload-status"]["current"] == "active"
                   for u in st["applications"]["tls-provider"]["units"].values()),
               timeout=120)
    r = model.run(f"{APP}/0", "get-password", "username=operator")
    assert r.status == "completed", r.task
    r2 = model.run(f"{APP}/0", "get-ca-certificate")
    assert r2.status == "completed", r2.task
    internal = r2.results["ca-certificate"].strip()
    bundle = Bundle(tmp / "internal.pem")       # the clients trust the internal CA only
    bundle.add(internal)
    pca = provider_ca(model)
    return {"password": r.results["password"], "bundle": bundle, "trust": bundle.path,
            "internal": internal, "internal_file": bundle.path, "provider": pca,
            "provider_file": write_pem(tmp / "provider.pem", pca),
            "provider_cn": common_name(load_cert(pca).subject)}


# ---- what the units present -------------------------------------------------------------------

def member(unit):
    return unit.replace("/", "-")


def peer_leaf(addr, port):
    """The leaf certificate (PEM) addr:port presents, "" when none. 2379 and 2380 demand a
    client certificate: the server's is shown even when the handshake then fails."""
    try:
        p = subprocess.run(["openssl", "s_client", "-connect", f"{addr}:{port}", "-showcerts"],
                           input="", capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return ""
    i, j = p.stdout.find(BEGIN), p.stdout.find(END)
    return p.stdout[i:j + len(END)] if 0 <= i < j else ""


def peer_leaves(model):
    """{(unit, port): the leaf certificate (PEM) it presents}."""
    return {(unit, port): peer_leaf(addr, port)
            for unit, addr in sorted(addresses(model).items()) for port in PEER_PORTS}


def ports_on_files(model):
    """Whether every peer port presents the leaf in its unit's peer-cert.pem (no etcd
    restart for new files still waiting for its turn)."""
    leaves = peer_leaves(model)
    for unit in addresses(model):
        r = model.exec(unit, "cat /var/lib/pg-agent/tls/peer-cert.pem")
        if r.rc != 0 or BEGIN not in r.stdout:
            return False
        on_disk = fingerprint(r.stdout[r.stdout.index(BEGIN):r.stdout.index(END) + len(END)])
        if any(not leaves[(unit, p)] or fingerprint(leaves[(unit, p)]) != on_disk
               for p in PEER_PORTS):
            return False
    return True


def fingerprint(pem):
    return load_cert(pem).fingerprint(hashes.SHA256()).hex()


def provider_issued(model):
    """Fingerprints of the certificates the provider publishes now (revoked ones left out)."""
    r = model.run("tls-provider/0", "get-issued-certificates")
    assert r.status == "completed", r.task
    return {fingerprint(e["certificate"]) for e in json.loads(r.results["certificates"])
            if not e.get("revoked")}


def peer_misses(model, ca_pem, issued=None):
    """[(unit, port, what it presents)] of the peer ports not presenting a certificate for
    the unit's member name that verifies against ca_pem (and is one of `issued`, the
    fingerprints of the provider's current certificates, when given)."""
    out = []
    for unit, addr in sorted(addresses(model).items()):
        for port in PEER_PORTS:
            leaf = peer_leaf(addr, port)
            if not leaf:
                out.append((unit, port, "no certificate"))
                continue
            cert = load_cert(leaf)
            ok, why = openssl_verify(leaf, ca_pem)
            if not ok or common_name(cert.subject) != member(unit) or \
                    (issued is not None and fingerprint(leaf) not in issued):
                out.append((unit, port, f"CN={common_name(cert.subject)} "
                                        f"issuer CN={common_name(cert.issuer)} "
                                        f"SHA-256 {fingerprint(leaf)[:16]}"))
    return out


def wait_peer_ca(model, ca_pem, what, timeout=180, current=False):
    """Poll until every peer port presents a certificate of ca_pem (with current: one the
    provider publishes now); seconds it took."""
    t0 = time.monotonic()
    last = {}

    def done():
        issued = provider_issued(model) if current else None
        last["misses"] = peer_misses(model, ca_pem, issued)
        return not last["misses"]
    try:
        poll(done, timeout, delay=1, what=what)
    except TimeoutError as e:
        raise AssertionError(f"{e}\nstill: {last.get('misses')}") from None
    return time.monotonic() - t0


def replication(model, cluster, primary=None):
    """[(client_dn, issuer_dn)] of the streaming TLS replication connections on the
    primary (verified with the CA PostgreSQL serves clients with: "clients_ca")."""
    addr = addresses(model)[primary or primary_by_action(model)]
    conn = connect(addr, cluster["password"], sslmode="verify-full",
                   sslrootcert=cluster.get("clients_ca", cluster["internal_file"]))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT s.client_dn, s.issuer_dn FROM pg_stat_replication r "
                        "JOIN pg_stat_ssl s USING (pid) WHERE r.state = 'streaming' AND s.ssl")
            return cur.fetchall()
    finally:
        conn.close()


def dn_cn(dn):
    m = re.search(r"CN=([^/,]+)", dn or "")
    return m.group(1) if m else None


def replica_problem(model, cluster, ca_cn, primary=None):
    """None when both replicas stream over TLS, each with a certificate for its member name
    issued by the CA named ca_cn; else what the primary shows."""
    primary = primary or primary_by_action(model)
    rows = replication(model, cluster, primary)
    replicas = sorted(member(u) for u in addresses(model) if u != primary)
    if sorted(dn_cn(c) for c, _ in rows) == replicas and all(ca_cn in (i or "") for _, i in rows):
        return None
    return f"on {primary}, want {replicas} by {ca_cn!r}: (client_dn, issuer_dn) {rows}"


def wait_replicas_by(model, cluster, ca_cn, what, timeout=120, primary=None):
    last = {}

    def done():
        last["problem"] = replica_problem(model, cluster, ca_cn, primary)
        return last["problem"] is None
    try:
        poll(done, timeout, delay=1, what=what)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{last.get('problem')}") from None


def clients_on_internal(model, cluster):
    """5432 keeps the internal CA's certificate: issuer and verify-full on every unit."""
    for unit, addr in addresses(model).items():
        assert served_cert(addr)[2] == INTERNAL_CN, unit
    assert all_verify(model, cluster, cluster["internal_file"])


def start_writer(model, cluster, table):
    """A started Writer: long-lived session and new connections, both on the primary."""
    addr = addresses(model)[primary_by_action(model)]
    w = Writer(cluster["password"], cluster["bundle"].path, addr, [addr], table, 300)
    w.start()
    if not w.ready.wait(60) or w.failures_of("long"):
        w.stop()
        pytest.fail(w.summary())
    return w


def report(writer, step, which, took):
    print()
    print(f"{step} -> every peer port on {which}: "
          + (f"{took:.1f} s" if took is not None else "not reached"))
    print(writer.summary())


# ---- the tests --------------------------------------------------------------------------------

def test_baseline_peers_use_the_internal_ca(model, cluster):
    wait_peer_ca(model, cluster["internal"], "every peer port on the internal CA", timeout=60)
    problem = replica_problem(model, cluster, INTERNAL_CN)
    assert problem is None, problem
    clients_on_internal(model, cluster)
    cluster["start"] = start_times(model, cluster)


def switch_under_writer(model, cluster, command, ca_pem, ca_cn, which, table, before,
                        current=False):
    """Run `juju <command> RELATION` under a writer; wait until every peer port presents
    a certificate of ca_pem and replication authenticates with ca_cn's certificates; then
    the same primary, no restart (start times as `before`), 0 writer failures."""
    primary = primary_by_action(model)
    writer = start_writer(model, cluster, table)
    took = None
    try:
        time.sleep(3)
        model.juju(command, *RELATION)
        took = wait_peer_ca(model, ca_pem, f"every peer port presenting {which}",
                            current=current)
        wait_replicas_by(model, cluster, ca_cn, f"replication authenticated by {which}")
        time.sleep(10)
    finally:
        writer.stop()
        report(writer, command, which, took)
    assert primary_by_action(model) == primary, "the primary moved"
    check_quiet(model, cluster, writer, before, table)
    clients_on_internal(model, cluster)
    model.wait(cluster_settled(3), error=any_error, timeout=120)


def test_integrate_switches_peers_under_a_writer(model, cluster):
    assert "start" in cluster, "needs the baseline"
    switch_under_writer(model, cluster, "integrate", cluster["provider"],
                        cluster["provider_cn"], "the provider's certificate",
                        "tls_peer_switch", cluster["start"], current=True)
    cluster["switched"] = True


def test_requests_match_the_schema_and_member_names(model, cluster):
    assert cluster.get("switched"), "needs the switch"
    schema = load_schema("tls_certificates_v1_generated_requirer.json")
    keys = set()
    for unit, addr in sorted(addresses(model).items()):
        data = rel_info(model, unit, ENDPOINT)["local-unit"]["data"]
        data = {k: v for k, v in data.items() if k not in JUJU_KEYS}
        assert set(data) == {"certificate_signing_requests"}, data
        validate_databag(schema, "unit", data)
        reqs = json.loads(data["certificate_signing_requests"])
        assert len(reqs) == 1 and reqs[0]["ca"] is False, reqs
        csr = x509.load_pem_x509_csr(reqs[0]["certificate_signing_request"].encode())
        assert common_name(csr.subject) == member(unit), csr.subject
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        host = model.sh(unit, "hostname").strip()
        assert set(san.get_values_for_type(x509.DNSName)) == \
            {member(unit), host, "localhost", addr}, san
        assert sorted(str(a) for a in san.get_values_for_type(x509.IPAddress)) == \
            sorted([addr, "127.0.0.1"]), san
        key = csr.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
        keys.add(key.public_numbers().n)
    assert len(keys) == 3, "a key per unit"


def test_peer_files(model, cluster):
    assert cluster.get("switched"), "needs the switch"
    want = [w for owner in FILES.values() for w in (owner, "600")]
    for unit in sorted(addresses(model)):
        r = model.exec(unit, "stat -c '%U %a' " + " ".join(FILES))
        assert r.rc == 0 and r.stdout.split() == want, (unit, r.stdout, r.stderr)


def test_switchover_on_provider_certificates(model, cluster):
    assert cluster.get("switched"), "needs the switch"
    old = primary_by_action(model)
    target = next(u for u in sorted(addresses(model)) if u != old)
    r = model.run(target, "promote-to-primary", "scope=unit", timeout=120)
    assert r.status == "completed", r.task
    model.wait(settled_on(target), error=any_error, timeout=180)
    assert primary_by_action(model) == target
    wait_replicas_by(model, cluster, cluster["provider_cn"],
                     "the new primary's replicas on provider certificates", primary=target)
    misses = peer_misses(model, cluster["provider"], provider_issued(model))
    assert not misses, misses
    clients_on_internal(model, cluster)
    cluster["start"] = start_times(model, cluster)     # the old primary was demoted


def unencrypted_tcp_sessions(model, cluster):
    """Per unit, the TCP sessions (clients and replication) that are not encrypted."""
    out = {}
    for unit, addr in addresses(model).items():
        conn = connect(addr, cluster["password"], sslmode="verify-full",
                       sslrootcert=cluster["provider_file"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT a.backend_type, a.usename FROM pg_stat_activity a "
                            "JOIN pg_stat_ssl s USING (pid) "
                            "WHERE a.client_addr IS NOT NULL AND NOT s.ssl")
                out[unit] = cur.fetchall()
        finally:
            conn.close()
    return {u: rows for u, rows in out.items() if rows}


def test_both_endpoints_on_the_provider(model, cluster):
    """client-certificates too: clients verify the provider's CA on every unit, every TCP
    session is encrypted, replicas stream on provider certificates; then client-certificates
    goes again (PostgreSQL back on the internal certificate for clients)."""
    assert cluster.get("switched"), "needs the switch"
    before = start_times(model, cluster)
    client_rel = (f"{APP}:client-certificates", "tls-provider:certificates")
    model.juju("integrate", *client_rel)
    cluster["clients_ca"] = cluster["provider_file"]
    try:
        poll(lambda: all_verify(model, cluster, cluster["provider_file"]), 120,
             what="every unit serving clients the provider's certificate")
        wait_replicas_by(model, cluster, cluster["provider_cn"],
                         "replicas on provider certificates with both endpoints")
        assert streaming_over_tls(model, cluster, cluster["provider_file"])
        assert not unencrypted_tcp_sessions(model, cluster)
        misses = peer_misses(model, cluster["provider"])
        assert not misses, misses
    finally:
        model.juju("remove-relation", *client_rel)
        cluster.pop("clients_ca")
    poll(lambda: all_verify(model, cluster, cluster["internal_file"]), 120,
         what="every unit serving clients the internal certificate again")
    model.wait(cluster_settled(3), error=any_error, timeout=120)
    assert start_times(model, cluster) == before, "PostgreSQL restarted"


@pytest.mark.parametrize("fault", FAULTS)
def test_garbage_from_the_provider_keeps_the_last_good_certificate(model, cluster, fault):
    assert cluster.get("switched"), "needs the switch"
    assert fault in PROVIDER_FAULTS
    wait_peer_ca(model, cluster["provider"], "the provider's certificate before the fault",
                 timeout=60, current=True)
    poll(lambda: ports_on_files(model), 90, delay=1,
         what="every peer port presenting its unit's current certificate file")
    good = peer_leaves(model)
    model.juju("config", "tls-provider", f"fault={fault}")
    try:
        def all_blocked():
            return all(s == "blocked" and ENDPOINT in m for s, m in unit_states(model).values())
        poll(all_blocked, 150, delay=1, what=f"every unit blocked on the provider's {fault}")
        misses = peer_misses(model, cluster["provider"])
        assert not misses, f"not on a certificate of the provider: {misses}"
        now = peer_leaves(model)
        assert now == good, [k for k in good if now[k] != good[k]]
        problem = replica_problem(model, cluster, cluster["provider_cn"])
        assert problem is None, problem
        log = model.debug_log()
        assert "BEGIN CERTIFICATE" not in log and "PRIVATE KEY" not in log
    finally:
        model.juju("config", "tls-provider", "--reset", "fault")
    model.wait(cluster_settled(3), error=any_error, timeout=180)
    wait_peer_ca(model, cluster["provider"], "the provider's new certificate after the fault",
                 timeout=120, current=True)
    wait_replicas_by(model, cluster, cluster["provider_cn"], "replication after the fault")
    assert start_times(model, cluster) == cluster["start"], "PostgreSQL restarted"


def test_removal_falls_back_to_the_internal_ca_under_a_writer(model, cluster):
    assert cluster.get("switched"), "needs the switch"
    switch_under_writer(model, cluster, "remove-relation", cluster["internal"], INTERNAL_CN,
                        "the internal CA's certificate", "tls_peer_removal",
                        start_times(model, cluster))
