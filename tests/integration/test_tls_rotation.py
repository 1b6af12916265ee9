"""TLS rotation under load (issue 5): with the test provider (tests/charms/tls-provider)
issuing 2-minute certificates on `client-certificates`, a client that trusts the cluster's
internal CA and every provider CA it has seen keeps one long-lived session writing and opens
a new verify-full connection every second, round-robin over the 3 units, while

1. the units renew their certificates over and over (TLS_ROTATION_SECONDS, default 240;
   the issue's acceptance run is TLS_ROTATION_SECONDS=600): every unit serves a new
   certificate each renewal and never an expired one;
2. the provider's CA changes (`ca-common-name`): the client learns the new CA at once and
   every unit ends up serving a certificate of the new CA;
3. the relation is removed: every unit goes back to the internal CA's certificate.

Each test asserts: the long-lived session never failed, no new connection failed, no unit's
PostgreSQL restarted (pg_postmaster_start_time), no certificate or key text in the debug log.
Driven only through sandbox/bin/juju, psycopg2 and openssl from the host."""
import calendar
import dataclasses
import os
import subprocess
import threading
import time

import psycopg2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from conftest import poll
from test_ha import APP, cluster_settled
from test_tls import (CHARM, addresses, all_verify, connect, primary_by_action, start_times,
                      streaming_over_tls)

SECONDS = int(os.environ.get("TLS_ROTATION_SECONDS", "240"))
VALIDITY = "2m"
SAMPLE_EVERY = 10.0
BEGIN = "-----BEGIN CERTIFICATE-----"
END = "-----END CERTIFICATE-----"


# ---- the client's trust bundle ----------------------------------------------------------------

class Bundle:
    """A CA bundle file the client updates while connections read it (atomic replace)."""

    def __init__(self, path):
        self.path = str(path)
        self.pems = []

    def add(self, pem):
        pem = pem.strip()
        if pem not in self.pems:
            self.pems.append(pem)
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write("\n".join(self.pems) + "\n")
            os.replace(tmp, self.path)


def write_pem(path, pem):
    with open(path, "w") as f:
        f.write(pem.strip() + "\n")
    return str(path)


def provider_ca(model):
    r = model.run("tls-provider/0", "get-ca-certificate")
    assert r.status == "completed", r.task
    pem = r.results["ca-certificate"].strip()
    assert pem.startswith(BEGIN), pem[:40]
    return pem


# ---- the writer -------------------------------------------------------------------------------

@dataclasses.dataclass
class Failure:
    started: float      # time.monotonic() when the attempt began
    at: float           # time.monotonic() when it failed
    kind: str           # "long" (the long-lived session) or "new" (a new connection)
    host: str
    error: str          # first line of the error text


def first_line(exc):
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class Writer(threading.Thread):
    """One long-lived verify-full session on the primary inserting a row every 0.5 s into a
    table of its own (autocommit), and a new verify-full connection every second to the
    units in turn (SELECT 1). Every failure is recorded; the first failure of the
    long-lived session ends it (the session broke). Stops by itself after duration +
    margin seconds; stop() ends it earlier and joins."""

    def __init__(self, password, bundle, primary, addrs, table, duration, margin=60.0):
        super().__init__(name=f"tls-writer-{table}", daemon=True)
        self.password = password
        self.bundle = bundle
        self.primary = primary
        self.addrs = list(addrs)
        self.table = table
        self.t0 = time.monotonic()
        self.deadline = self.t0 + duration + margin
        self.stopping = threading.Event()
        self.ready = threading.Event()      # the long session is up and the table exists
        self.lock = threading.Lock()
        self.failures = []
        self.ok = {"long": 0, "new": 0}
        self.inserted = 0                   # INSERTs that returned (sync-rep warnings too)
        self.max_insert = 0.0               # slowest INSERT, seconds

    def _fail(self, kind, host, started, exc):
        with self.lock:
            self.failures.append(Failure(started, time.monotonic(), kind, host,
                                         first_line(exc)))

    def _done(self):
        return self.stopping.is_set() or time.monotonic() >= self.deadline

    def run(self):
        helper = threading.Thread(target=self._new_connections, daemon=True,
                                  name=f"{self.name}-new")
        helper.start()
        try:
            self._long_session()
        finally:
            self.ready.set()
            helper.join(timeout=30)

    def _long_session(self):
        t0 = time.monotonic()
        try:
            conn = connect(self.primary, self.password, sslmode="verify-full",
                           sslrootcert=self.bundle, options="-c statement_timeout=10s",
                           keepalives=1, keepalives_idle=5, keepalives_interval=2,
                           keepalives_count=3)
        except psycopg2.Error as e:
            self._fail("long", self.primary, t0, e)
            return
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id bigserial PRIMARY "
                            "KEY, n bigint NOT NULL, at timestamptz NOT NULL DEFAULT now())")
                cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                assert cur.fetchone()[0], "the long-lived session is not encrypted"
            self.ready.set()
            n = 0
            nxt = time.monotonic()
            while not self._done():
                t0 = time.monotonic()
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"INSERT INTO {self.table} (n) VALUES (%s)", (n,))
                except psycopg2.Error as e:
                    self._fail("long", self.primary, t0, e)
                    return                              # the session broke
                took = time.monotonic() - t0
                self.max_insert = max(self.max_insert, took)
                n += 1
                self.inserted += 1
                # a commit that gave up waiting for the synchronous standby still returns
                warn = [m for m in conn.notices if "synchronous replication" in m]
                del conn.notices[:]
                if warn:
                    self._fail("long", self.primary, t0, warn[0])
                else:
                    with self.lock:
                        self.ok["long"] += 1
                nxt += 0.5
                self.stopping.wait(max(0.0, nxt - time.monotonic()))
        except (psycopg2.Error, AssertionError) as e:
            self._fail("long", self.primary, t0, e)
        finally:
            conn.close()

    def _new_connections(self):
        i = 0
        nxt = time.monotonic()
        while not self._done():
            addr = self.addrs[i % len(self.addrs)]
            i += 1
            t0 = time.monotonic()
            try:
                c = connect(addr, self.password, sslmode="verify-full",
                            sslrootcert=self.bundle)
                try:
                    with c.cursor() as cur:
                        cur.execute("SELECT 1")
                        assert cur.fetchone()[0] == 1
                finally:
                    c.close()
                with self.lock:
                    self.ok["new"] += 1
            except (psycopg2.Error, AssertionError) as e:
                self._fail("new", addr, t0, e)
            nxt = max(nxt + 1.0, time.monotonic())
            self.stopping.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.stopping.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the writer did not stop"

    def failures_of(self, kind, since=None):
        with self.lock:
            return [f for f in self.failures
                    if f.kind == kind and (since is None or f.started >= since)]

    def summary(self):
        t0 = self.t0
        with self.lock:
            lines = [f"writer {self.table}: long-lived session {self.ok['long']} inserts ok "
                     f"(slowest {self.max_insert:.2f} s), new connections {self.ok['new']} ok, "
                     f"{len(self.failures)} failure(s)"]
            lines += [f"  +{f.started - t0:6.1f}s {f.kind:4} {f.host}: {f.error}"
                      for f in self.failures]
        return "\n".join(lines)


def run_writer(model, cluster, table, duration):
    """A started Writer on the current primary, with its long-lived session up."""
    addrs = addresses(model)
    primary = addrs[primary_by_action(model)]
    w = Writer(cluster["password"], cluster["bundle"].path, primary,
               [addrs[u] for u in sorted(addrs)], table, duration)
    w.start()
    if not w.ready.wait(60) or w.failures_of("long"):
        w.stop()
        pytest.fail(w.summary())
    return w


def rows_written(model, cluster, table):
    addr = addresses(model)[primary_by_action(model)]
    conn = connect(addr, cluster["password"], sslmode="verify-full",
                   sslrootcert=cluster["bundle"].path)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            return cur.fetchone()[0]
    finally:
        conn.close()


def check_quiet(model, cluster, writer, before, table, new_failures=None):
    """The assertions every test here ends with."""
    longs = writer.failures_of("long")
    news = writer.failures_of("new") if new_failures is None else new_failures
    assert not longs, "the long-lived session failed:\n" + writer.summary()
    assert not news, "new connections failed:\n" + writer.summary()
    assert writer.ok["long"] > 0 and writer.ok["new"] > 0, writer.summary()
    assert rows_written(model, cluster, table) == writer.inserted
    assert start_times(model, cluster) == before, "PostgreSQL restarted"
    log = model.debug_log()
    assert "BEGIN CERTIFICATE" not in log and "PRIVATE KEY" not in log


# ---- the served certificate -------------------------------------------------------------------

def served_cert(addr):
    """(SHA-256 fingerprint, notAfter as a Unix time, issuer CN) of the certificate
    PostgreSQL at addr presents."""
    p = subprocess.run(["openssl", "s_client", "-starttls", "postgres", "-connect",
                        f"{addr}:5432"], input="", capture_output=True, text=True, timeout=20)
    i, j = p.stdout.find(BEGIN), p.stdout.find(END)
    if i < 0 or j < 0:
        err = p.stderr.strip().splitlines()
        raise RuntimeError(f"no certificate from {addr}: {err[-1] if err else p.returncode}")
    cert = x509.load_pem_x509_certificate(p.stdout[i:j + len(END)].encode())
    return (cert.fingerprint(hashes.SHA256()).hex(),
            calendar.timegm(cert.not_valid_after.utctimetuple()), common_name(cert.issuer))


def common_name(name):
    return ",".join(a.value for a in name.get_attributes_for_oid(NameOID.COMMON_NAME))


# ---- the cluster ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(model, tmp_path_factory):
    assert CHARM.exists(), "run `make build` first"
    tmp = tmp_path_factory.mktemp("tls-rotation")
    model.juju("deploy", str(CHARM), "-n", "3", "--config", "profile=testing",
               "--config", "superuser-remote-access=true", timeout=180)
    model.wait(cluster_settled(3), timeout=300)
    r = model.run(f"{APP}/0", "get-password", "username=operator")
    assert r.status == "completed", r.task
    password = r.results["password"]
    r = model.run(f"{APP}/0", "get-ca-certificate")
    assert r.status == "completed", r.task
    internal = r.results["ca-certificate"].strip()
    assert internal.startswith(BEGIN), internal[:40]
    bundle = Bundle(tmp / "bundle.pem")
    bundle.add(internal)

    model.deploy("tls-provider", config={"certificate-validity": VALIDITY})
    model.juju("integrate", f"{APP}:client-certificates", "tls-provider:certificates")
    model.wait(lambda st: st["applications"].get("tls-provider", {}).get("units") and
               all(u["workload-status"]["current"] == "active"
                   for u in st["applications"]["tls-provider"]["units"].values()), timeout=120)
    pca = provider_ca(model)
    bundle.add(pca)
    c = {"password": password, "bundle": bundle, "trust": bundle.path,
         "internal": write_pem(tmp / "internal.pem", internal),
         "provider": write_pem(tmp / "provider.pem", pca), "tmp": tmp}
    poll(lambda: all_verify(model, c, c["provider"]), 180,
         what="every unit serving the provider's certificate")
    poll(lambda: streaming_over_tls(model, c, c["provider"]), 60,
         what="both replicas streaming over TLS")
    return c


# ---- the tests --------------------------------------------------------------------------------

def test_renewal_under_a_writer(model, cluster):
    before = start_times(model, cluster)
    addrs = addresses(model)
    want = max(2, SECONDS // 130)
    samples = {u: [] for u in addrs}          # unit -> [(time, fingerprint, notAfter, CA)]
    errors = []
    with open(cluster["provider"]) as f:
        issuer = common_name(x509.load_pem_x509_certificate(f.read().encode()).subject)
    writer = run_writer(model, cluster, "tls_writer_renewal", SECONDS + 30)
    t0 = time.monotonic()
    try:
        end = t0 + SECONDS
        while time.monotonic() < end:
            nxt = time.monotonic() + SAMPLE_EVERY
            for unit in sorted(addrs):
                now = time.time()
                try:
                    fp, not_after, ca = served_cert(addrs[unit])
                except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                    errors.append((unit, round(time.monotonic() - t0, 1), first_line(e)))
                    continue
                samples[unit].append((now, fp, not_after, ca))
            time.sleep(max(0.0, min(nxt, end) - time.monotonic()))
    finally:
        writer.stop()
    print()
    print(writer.summary())
    distinct = {}
    for unit in sorted(samples):
        fps = []
        for _, fp, _, _ in samples[unit]:
            if fp not in fps:
                fps.append(fp)
        distinct[unit] = len(fps)
        print(f"{unit}: {len(samples[unit])} samples, {len(fps)} distinct certificates: "
              + " ".join(f[:12] for f in fps))
    expired = [(u, time.strftime("%H:%M:%S", time.gmtime(t)), fp[:16],
                time.strftime("%H:%M:%S", time.gmtime(na)))
               for u, s in samples.items() for t, fp, na, _ in s if na <= t]
    foreign = {(u, ca) for u, s in samples.items() for _, _, _, ca in s if ca != issuer}
    assert not errors, f"samples failed: {errors}"
    assert not expired, f"expired certificates served (unit, at, cert, notAfter): {expired}"
    assert not foreign, f"certificates not of the provider's CA: {foreign}"
    assert all(n >= want for n in distinct.values()), \
        f"at least {want} distinct certificates per unit over {SECONDS} s: {distinct}"
    check_quiet(model, cluster, writer, before, "tls_writer_renewal")


def test_ca_change_under_a_writer(model, cluster):
    before = start_times(model, cluster)
    old = provider_ca(model)
    cn = f"rotated-ca-{int(time.time())}"
    writer = run_writer(model, cluster, "tls_writer_ca_change", 300)
    t0 = writer.t0
    try:
        time.sleep(5)
        model.juju("config", "tls-provider", f"ca-common-name={cn}")

        def changed():
            pem = provider_ca(model)
            return pem if pem != old else None
        new = poll(changed, 60, delay=0.5, what="the provider's new CA")
        cluster["bundle"].add(new)              # the client has the current CA from now on
        known = time.monotonic()
        new_only = write_pem(cluster["tmp"] / "provider-new.pem", new)
        poll(lambda: all_verify(model, cluster, new_only), 180,
             what="every unit serving a certificate of the new CA")
        switched = time.monotonic()
        time.sleep(30)
    finally:
        writer.stop()
    print()
    print(writer.summary())
    print(f"new CA known to the client at +{known - t0:.1f}s, every unit on it at "
          f"+{switched - t0:.1f}s")
    # before the client knew the new CA, only a verification failure is excused (a unit
    # that already serves a certificate of a CA the client cannot know yet)
    early = [f for f in writer.failures_of("new") if f.started < known]
    excused = [f for f in early if "certificate verify failed" in f.error]
    print(f"new connections refused before the client knew the new CA: {len(excused)}")
    failed = [f for f in writer.failures_of("new") if f not in excused]
    assert streaming_over_tls(model, cluster, new_only), "replication not streaming over TLS"
    cluster["provider"] = new_only
    check_quiet(model, cluster, writer, before, "tls_writer_ca_change", new_failures=failed)


def test_relation_removal_under_a_writer(model, cluster):
    before = start_times(model, cluster)
    writer = run_writer(model, cluster, "tls_writer_removal", 210)
    t0 = writer.t0
    try:
        time.sleep(5)
        model.juju("remove-relation", f"{APP}:client-certificates", "tls-provider:certificates")
        poll(lambda: all_verify(model, cluster, cluster["internal"]), 150,
             what="every unit back on the internal CA's certificate")
        switched = time.monotonic()
        time.sleep(30)
    finally:
        writer.stop()
    print()
    print(writer.summary())
    print(f"every unit on the internal CA at +{switched - t0:.1f}s")
    assert streaming_over_tls(model, cluster, cluster["internal"]), \
        "replication not streaming over TLS"
    check_quiet(model, cluster, writer, before, "tls_writer_removal")
