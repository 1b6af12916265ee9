"""TLS (issue 5): with no provider every unit serves PostgreSQL with a certificate of the
cluster's internal CA, which `get-ca-certificate` prints; clients verify it with
sslmode=verify-full against each unit's address; replication is encrypted; `tls-only`
refuses plain TCP connections; `tls-min-version` raises the protocol floor. With the test
provider (tests/charms/tls-provider) on `client-certificates`, every unit serves the
provider's certificate, replication keeps streaming over TLS, PostgreSQL is not restarted,
and removing the relation falls back to the internal CA, again without a restart. Driven
only through sandbox/bin/juju, and psycopg2 from the host to the units' addresses."""
import json
import os
import subprocess
import tempfile

import psycopg2
import pytest

from conftest import REPO, poll
from test_ha import APP, cluster_settled, primary_unit

CHARM = REPO / "build" / "postgresql.charm"


@pytest.fixture(scope="module")
def cluster(model):
    assert CHARM.exists(), "run `make build` first"
    model.juju("deploy", str(CHARM), "-n", "3", "--config", "profile=testing",
               "--config", "superuser-remote-access=true", timeout=180)
    model.wait(cluster_settled(3), timeout=300)
    r = model.run(f"{APP}/0", "get-password", "username=operator")
    assert r.status == "completed", r.task
    fd, ca = tempfile.mkstemp(prefix="tls-ca-", suffix=".pem")
    os.close(fd)
    try:
        yield {"password": r.results["password"], "ca": ca}
    finally:
        os.unlink(ca)


def addresses(model):
    st = model.status()
    return {u: d["public-address"] for u, d in st["applications"][APP]["units"].items()}


def connect(addr, password, **kw):
    return psycopg2.connect(host=addr, port=5432, user="operator", password=password,
                            dbname="postgres", connect_timeout=5, **kw)


def can_connect(addr, password, **kw):
    try:
        connect(addr, password, **kw).close()
        return True
    except psycopg2.OperationalError:
        return False


def settle_config(model, **cfg):
    model.juju("config", APP, *[f"{k}={v}" for k, v in cfg.items()])
    # the agent applies config with a reload: wait until every unit ran its hook
    model.wait(cluster_settled(3), timeout=120)


def test_get_ca_certificate_verifies_every_unit(model, cluster):
    cas = set()
    for unit in addresses(model):
        r = model.run(unit, "get-ca-certificate")
        assert r.status == "completed", r.task
        pem = r.results["ca-certificate"]
        assert pem.startswith("-----BEGIN CERTIFICATE-----"), pem[:40]
        assert "PRIVATE KEY" not in pem
        cas.add(pem.strip())
    assert len(cas) == 1, "every unit prints the same CA"
    with open(cluster["ca"], "w") as f:
        f.write(cas.pop() + "\n")
    for unit, addr in addresses(model).items():
        conn = connect(addr, cluster["password"], sslmode="verify-full",
                       sslrootcert=cluster["ca"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                ssl, version = cur.fetchone()
            assert ssl and version in ("TLSv1.2", "TLSv1.3"), (unit, ssl, version)
        finally:
            conn.close()


def test_a_foreign_ca_does_not_verify(model, cluster, tmp_path):
    # a self-signed certificate that is not the cluster's CA: verify-full must refuse
    other = tmp_path / "other.pem"
    key = tmp_path / "other.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(other),
                    "-days", "1", "-subj", "/CN=not-the-cluster-ca"],
                   check=True, capture_output=True)
    addr = next(iter(addresses(model).values()))
    with pytest.raises(psycopg2.OperationalError) as e:
        connect(addr, cluster["password"], sslmode="verify-full", sslrootcert=str(other))
    assert "certificate verify failed" in str(e.value), e.value


def test_replication_connections_are_encrypted(model, cluster):
    addr = addresses(model)[primary_unit(model)]
    conn = connect(addr, cluster["password"], sslmode="verify-full", sslrootcert=cluster["ca"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT r.application_name, r.state, s.ssl, s.version, s.client_dn "
                        "FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)")
            rows = cur.fetchall()
    finally:
        conn.close()
    assert len(rows) == 2, rows
    for name, state, ssl, version, dn in rows:
        assert state == "streaming" and ssl and version == "TLSv1.3", rows
        assert dn == f"/CN={name}", rows          # certificate authentication


def test_tls_only_refuses_plain_connections(model, cluster):
    addr = next(iter(addresses(model).values()))
    connect(addr, cluster["password"], sslmode="disable").close()   # allowed by default
    settle_config(model, **{"tls-only": "true"})

    poll(lambda: not can_connect(addr, cluster["password"], sslmode="disable"), 60,
         what="tls-only applied")
    with pytest.raises(psycopg2.OperationalError) as e:
        connect(addr, cluster["password"], sslmode="disable")
    assert "no encryption" in str(e.value), e.value
    for a in addresses(model).values():
        with pytest.raises(psycopg2.OperationalError):
            connect(a, cluster["password"], sslmode="disable")
        connect(a, cluster["password"], sslmode="verify-full",
                sslrootcert=cluster["ca"]).close()
    settle_config(model, **{"tls-only": "false"})
    poll(lambda: can_connect(addr, cluster["password"], sslmode="disable"), 60,
         what="tls-only removed")


def test_tls_min_version(model, cluster):
    addr = next(iter(addresses(model).values()))
    settle_config(model, **{"tls-min-version": "TLSv1.3"})

    poll(lambda: not can_connect(addr, cluster["password"], sslmode="verify-full",
                                 sslrootcert=cluster["ca"], ssl_max_protocol_version="TLSv1.2"),
         60, what="TLSv1.3 minimum applied")
    conn = connect(addr, cluster["password"], sslmode="verify-full", sslrootcert=cluster["ca"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone()[0] == "TLSv1.3"
    finally:
        conn.close()
    settle_config(model, **{"tls-min-version": "TLSv1.2"})
    poll(lambda: can_connect(addr, cluster["password"], sslmode="verify-full",
                             sslrootcert=cluster["ca"], ssl_max_protocol_version="TLSv1.2"),
         60, what="TLSv1.2 accepted again")


# ---- a tls-certificates provider on client-certificates -------------------------------------

def start_times(model, cluster):
    out = {}
    for unit, addr in addresses(model).items():
        conn = connect(addr, cluster["password"], sslmode="verify-full",
                       sslrootcert=cluster["trust"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_postmaster_start_time()")
                out[unit] = cur.fetchone()[0]
        finally:
            conn.close()
    return out


def all_verify(model, cluster, ca_file):
    return all(can_connect(a, cluster["password"], sslmode="verify-full", sslrootcert=ca_file)
               for a in addresses(model).values())


def primary_by_action(model):
    r = model.run(f"{APP}/0", "get-primary")
    assert r.status == "completed", r.task
    return r.results["primary"]


def streaming_over_tls(model, cluster, ca_file):
    addr = addresses(model)[primary_by_action(model)]
    conn = connect(addr, cluster["password"], sslmode="verify-full", sslrootcert=ca_file)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s "
                        "USING (pid) WHERE r.state = 'streaming' AND s.ssl")
            return cur.fetchone()[0] == 2
    finally:
        conn.close()


def test_provider_certificates_are_served_without_restart(model, cluster, tmp_path):
    # both CAs trusted by the test client while the units switch
    with open(cluster["ca"]) as f:
        internal = f.read()
    cluster["trust"] = str(tmp_path / "both.pem")
    with open(cluster["trust"], "w") as f:
        f.write(internal)
    before = start_times(model, cluster)
    model.deploy("tls-provider", config={"certificate-validity": "1d"})
    model.juju("integrate", f"{APP}:client-certificates", "tls-provider:certificates")
    model.wait(lambda st: st["applications"].get("tls-provider", {}).get("units") and
               all(u["workload-status"]["current"] == "active"
                   for u in st["applications"]["tls-provider"]["units"].values()), timeout=120)
    r = model.run("tls-provider/0", "get-ca-certificate")
    assert r.status == "completed", r.task
    provider_ca = str(tmp_path / "provider.pem")
    with open(provider_ca, "w") as f:
        f.write(r.results["ca-certificate"].strip() + "\n")
    with open(cluster["trust"], "w") as f:
        f.write(internal + r.results["ca-certificate"].strip() + "\n")
    poll(lambda: all_verify(model, cluster, provider_ca), 120,
         what="every unit serving the provider's certificate")
    poll(lambda: streaming_over_tls(model, cluster, provider_ca), 60,
         what="both replicas streaming over TLS")
    assert start_times(model, cluster) == before, "PostgreSQL restarted"
    for unit in addresses(model):
        r = model.exec(unit, "stat -c '%U %a' /var/lib/postgresql/pg-agent-tls/client-key.pem "
                             "/var/lib/postgresql/pg-agent-tls/client-cert.pem")
        assert r.rc == 0 and r.stdout.split() == ["postgres", "600", "postgres", "600"], r
    cluster["provider_ca"] = provider_ca


PROVIDER_FAULTS = ("invalid-pem", "wrong-key", "expired", "bad-chain", "ca-flag-mismatch",
                   "not-json")


def unit_states(model):
    st = model.status()
    return {u: (d["workload-status"]["current"], d["workload-status"].get("message", ""))
            for u, d in st["applications"][APP]["units"].items()}


def test_garbage_from_the_provider_is_ignored(model, cluster):
    assert "provider_ca" in cluster, "needs the previous test"
    before = start_times(model, cluster)
    for fault in PROVIDER_FAULTS:
        model.juju("config", "tls-provider", f"fault={fault}")

        def all_say_it():
            states = unit_states(model)
            return all(s == "blocked" and "client-certificates" in m for s, m in states.values())
        poll(all_say_it, 90, what=f"every unit blocked on the provider's {fault} data")
        # ... and still serving the provider's last good certificate, replication intact
        assert all_verify(model, cluster, cluster["provider_ca"]), fault
        assert streaming_over_tls(model, cluster, cluster["provider_ca"]), fault
        log = model.debug_log()
        assert "BEGIN CERTIFICATE" not in log and "PRIVATE KEY" not in log
    model.juju("config", "tls-provider", "--reset", "fault")
    model.wait(cluster_settled(3), timeout=120)
    assert all_verify(model, cluster, cluster["provider_ca"])
    assert start_times(model, cluster) == before, "PostgreSQL restarted"


def served_pubkey(addr):
    """The public key (PEM) of the certificate PostgreSQL at addr presents."""
    p = subprocess.run(["openssl", "s_client", "-starttls", "postgres", "-connect",
                        f"{addr}:5432"], input="", capture_output=True, text=True, timeout=20)
    cert = p.stdout[p.stdout.index("-----BEGIN CERTIFICATE-----"):
                    p.stdout.index("-----END CERTIFICATE-----") + 25]
    return subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=cert,
                          capture_output=True, text=True, check=True).stdout


def test_set_tls_private_key(model, cluster, tmp_path):
    assert "provider_ca" in cluster, "needs the provider test"
    unit = f"{APP}/1"
    addr = addresses(model)[unit]
    key = tmp_path / "unit.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(key)], check=True,
                   capture_output=True)
    want = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], check=True,
                          capture_output=True, text=True).stdout
    before = start_times(model, cluster)
    assert served_pubkey(addr) != want
    params = tmp_path / "params.yaml"
    pem = key.read_text()
    params.write_text("private-key: |\n" + "".join(f"  {ln}\n" for ln in pem.splitlines()))
    r = model.run(unit, "set-tls-private-key", extra=("--params", str(params)))
    assert r.status == "completed", r.task
    assert "published" in r.results["result"], r.results
    poll(lambda: served_pubkey(addr) == want, 90, what="the new key's certificate served")
    assert all_verify(model, cluster, cluster["provider_ca"])
    assert start_times(model, cluster) == before, "PostgreSQL restarted"
    # a key that is not one is refused, and the message does not repeat it
    bad = tmp_path / "bad.yaml"
    bad.write_text("private-key: |\n  -----BEGIN PRIVATE KEY-----\n  bm90IGEga2V5\n"
                   "  -----END PRIVATE KEY-----\n")
    r = model.run(unit, "set-tls-private-key", extra=("--params", str(bad)))
    assert r.status == "failed", r.task
    assert "bm90IGEga2V5" not in json.dumps(r.task), r.task
    assert served_pubkey(addr) == want


def test_relation_removal_falls_back_to_the_internal_ca(model, cluster):
    assert "provider_ca" in cluster, "needs the previous test"
    before = start_times(model, cluster)
    model.juju("remove-relation", f"{APP}:client-certificates", "tls-provider:certificates")
    poll(lambda: all_verify(model, cluster, cluster["ca"]), 120,
         what="every unit back on the internal CA's certificate")
    poll(lambda: streaming_over_tls(model, cluster, cluster["ca"]), 60,
         what="both replicas streaming over TLS")
    assert start_times(model, cluster) == before, "PostgreSQL restarted"
