"""The agent's etcd client (agent/etcd.c) against a real etcd 3.4 with mutual TLS.

Each test drives build/tests-int/etcd_probe (tests/etcd/etcd_probe.c), which runs one
client operation and prints its result as JSON. etcd runs from /usr/bin/etcd on free
loopback ports with certificates made here with the openssl CLI (a CA, a server
certificate with IP SAN 127.0.0.1, a client certificate) and --client-cert-auth; it is
stopped by PID and its temporary directory removed, also when a test fails.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import REPO

PROBE = REPO / "build" / "tests-int" / "etcd_probe"
ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


@pytest.fixture(autouse=True, scope="module")
def controller():
    """No local model needed here: override the session fixture."""
    yield None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d):
    """CA, server (IP SAN 127.0.0.1) and client certificates, plus an unrelated CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                "-subj", f"/CN={ca}", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    exts = {
        "server": "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
                  "keyUsage=critical,digitalSignature,keyEncipherment\n",
        "client": "subjectAltName=DNS:pg-agent\nextendedKeyUsage=clientAuth\n"
                  "keyUsage=critical,digitalSignature,keyEncipherment\n",
    }
    for name, ext in exts.items():
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
                "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)


class Etcd:
    """One etcd member on free loopback ports, TLS for clients, in its own temp dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="etcd-client-test-")
        self.proc = None
        self.log = None
        try:
            make_certs(self.dir)
            self.port = free_port()
            self.peer_port = free_port()
            self.url = f"https://127.0.0.1:{self.port}"
            self.start()
        except BaseException:
            self.close()
            raise

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self):
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [ETCD, "--name", "t", "--data-dir", self.path("data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"t={peer}", "--initial-cluster-token", "etcd-client-test",
                "--cert-file", self.path("server.pem"), "--key-file", self.path("server.key"),
                "--trusted-ca-file", self.path("ca.pem"), "--client-cert-auth"]
        self.log = open(self.path("etcd.log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"etcd exited {self.proc.returncode}:\n{self.tail()}")
            r = self.probe("status")
            if r["rc"] == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"etcd not ready in 30 s: {r}\n{self.tail()}")
            time.sleep(0.2)

    def tail(self):
        try:
            with open(self.path("etcd.log"), "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        """Stop etcd by its PID (continue it first if it was SIGSTOPped)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log:
            self.log.close()
            self.log = None

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def argv(self, *args, endpoints=None, cert=True, ca=None, timeout=None, prefix=None):
        argv = [str(PROBE), "--endpoints", endpoints or self.url,
                "--ca", ca or self.path("ca.pem")]
        if prefix:
            argv += ["--prefix", prefix]
        if cert:
            argv += ["--cert", self.path("client.pem"), "--key", self.path("client.key")]
        if timeout is not None:
            argv += ["--timeout", str(timeout)]
        return argv + [a if isinstance(a, bytes) else str(a) for a in args]

    def probe(self, *args, **kw):
        """Run one probe operation; its (last) JSON line as a dict."""
        out = subprocess.run(self.argv(*args, **kw), capture_output=True, timeout=60)
        lines = out.stdout.decode().strip().splitlines()
        assert out.returncode == 0 and lines, f"probe {args} failed: {out}"
        return json.loads(lines[-1])

    def ok(self, *args, **kw):
        r = self.probe(*args, **kw)
        assert r["rc"] == 0, f"{args}: {r}\n{self.tail()}"
        return r


@pytest.fixture(scope="module")
def etcd():
    assert PROBE.exists(), f"{PROBE} missing: run `make build`"
    server = Etcd()
    try:
        yield server
    finally:
        server.close()


def text(v):
    """A key or value from the probe: a string, or {"base64": ...} for non-UTF-8 bytes."""
    if isinstance(v, dict):
        return base64.b64decode(v["base64"])
    return v.encode()


def test_version_and_status(etcd):
    r = etcd.ok("version")
    assert r["version"].startswith("3.")
    s = etcd.ok("status")
    assert s["version"] == r["version"]
    assert s["leader"] == s["member_id"] != "0"
    assert s["raft_index"] > 0 and s["raft_term"] > 0 and s["errors"] == 0
    assert etcd.ok("status", "0")["member_id"] == s["member_id"]


def test_put_get_prefix_delete(etcd):
    for k, v in (("/t/a/x", "1"), ("/t/a/y", "2"), ("/t/b", "3"), ("/t/a", "4")):
        assert etcd.ok("put", k, v)["revision"] > 0
    r = etcd.ok("get", "/t/a/x")
    assert [(kv["key"], kv["value"]) for kv in r["kvs"]] == [("/t/a/x", "1")]
    assert r["kvs"][0]["version"] == 1 and r["kvs"][0]["lease"] == "0"
    r = etcd.ok("prefix", "/t/a/")
    assert [kv["key"] for kv in r["kvs"]] == ["/t/a/x", "/t/a/y"] and r["count"] == 2
    r = etcd.ok("get", "/t/nothing")
    assert r["kvs"] == [] and r["count"] == 0 and r["revision"] > 0
    assert etcd.ok("prefix", "/t/none/")["kvs"] == []
    assert etcd.ok("delete", "/t/a/x")["deleted"] == 1
    assert etcd.ok("delete", "/t/a/x")["deleted"] == 0
    assert etcd.ok("get", "/t/a/x")["kvs"] == []


def test_prefix_with_0xff_bytes(etcd):
    keys = [b"/u/\xfe", b"/u/\xff", b"/u/\xff\xff", b"/u/\xff\xffz", b"/v"]
    for k in keys:
        etcd.ok("put", k, "x")
    # range end of "/u/\xff" is "/u0": every key that starts with it, and no other
    got = [text(kv["key"]) for kv in etcd.ok("prefix", b"/u/\xff")["kvs"]]
    assert got == [b"/u/\xff", b"/u/\xff\xff", b"/u/\xff\xffz"]
    got = [text(kv["key"]) for kv in etcd.ok("prefix", b"/u/")["kvs"]]
    assert got == keys[:4]


def test_create_if_absent_twice(etcd):
    first = etcd.ok("create", "/t/leader", "node1")
    assert first["succeeded"] is True and first["holder"] is None
    second = etcd.ok("create", "/t/leader", "node2")
    assert second["succeeded"] is False
    assert second["holder"]["value"] == "node1"
    assert second["holder"]["create_revision"] == first["revision"]
    assert etcd.ok("get", "/t/leader")["kvs"][0]["value"] == "node1"


def test_cas_and_delete_if_value(etcd):
    etcd.ok("put", "/t/cfg", "v1")
    r = etcd.ok("cas", "/t/cfg", "wrong", "v2")
    assert r["succeeded"] is False and r["holder"]["value"] == "v1"
    assert etcd.ok("get", "/t/cfg")["kvs"][0]["value"] == "v1"
    assert etcd.ok("cas", "/t/cfg", "v1", "v2")["succeeded"] is True
    assert etcd.ok("get", "/t/cfg")["kvs"][0]["value"] == "v2"
    # compare on a key that does not exist fails
    r = etcd.ok("cas", "/t/absent", "v1", "v2")
    assert r["succeeded"] is False and r["holder"] is None
    # mod_revision CAS (ha.md 4.5)
    mod = etcd.ok("get", "/t/cfg")["kvs"][0]["mod_revision"]
    assert etcd.ok("casrev", "/t/cfg", mod - 1, "v3")["succeeded"] is False
    assert etcd.ok("casrev", "/t/cfg", mod, "v3")["succeeded"] is True
    # release only when the value is still ours
    r = etcd.ok("delif", "/t/cfg", "v1")
    assert r["succeeded"] is False and r["holder"]["value"] == "v3"
    assert etcd.ok("get", "/t/cfg")["kvs"] != []
    r = etcd.ok("delif", "/t/cfg", "v3")
    assert r["succeeded"] is True and r["deleted"] == 1
    assert etcd.ok("get", "/t/cfg")["kvs"] == []


def test_lease_keepalive_then_expiry(etcd):
    ttl = 3
    g = etcd.ok("grant", ttl)
    lease = g["id"]
    assert g["ttl"] == ttl
    etcd.ok("put", "/t/lease/member", "m", lease)
    etcd.ok("create", "/t/lease/leader", "me", lease)
    assert etcd.ok("owned", "/t/lease/leader", lease)["owned"] is True
    assert etcd.ok("owned", "/t/lease/member", "1")["owned"] is False
    # keep-alives for twice the TTL, over one connection
    r = etcd.ok("keepalive-loop", lease, 2 * ttl, 700)
    assert r["count"] >= 6 and r["min_ttl"] >= ttl - 1 and r["max_call_ms"] < 1000
    assert etcd.ok("get", "/t/lease/leader")["kvs"][0]["lease"] == lease
    assert etcd.ok("keepalive", lease)["ttl"] == ttl
    last = time.monotonic()
    # no more keep-alives: both keys go within TTL + 1 s
    while etcd.ok("get", "/t/lease/leader")["kvs"]:
        assert time.monotonic() - last < ttl + 1, "leader key outlived its lease"
        time.sleep(0.1)
    gone = time.monotonic() - last
    assert gone > ttl - 1, f"key vanished after {gone:.1f} s, before its TTL"
    assert etcd.ok("get", "/t/lease/member")["kvs"] == []
    # the lease is gone: keep-alive answers without TTL, a put with it is refused
    r = etcd.probe("keepalive", lease)
    assert r["rc"] != 0 and r["errno"] == "ENOKEY", r
    r = etcd.probe("put", "/t/lease/member", "m", lease)
    assert r["errno"] == "ENOKEY" and "lease not found" in r["error"], r


def test_revoke_deletes_attached_keys(etcd):
    lease = etcd.ok("grant", 30)["id"]
    etcd.ok("put", "/t/rv/a", "1", lease)
    etcd.ok("put", "/t/rv/b", "2", lease)
    assert len(etcd.ok("prefix", "/t/rv/")["kvs"]) == 2
    etcd.ok("revoke", lease)
    assert etcd.ok("prefix", "/t/rv/")["kvs"] == []
    assert etcd.probe("revoke", lease)["errno"] == "ENOKEY"


def watch_lines(proc, timeout):
    out, err = proc.communicate(timeout=timeout)
    return [json.loads(line) for line in out.decode().splitlines()], err


def test_watch_sees_puts_and_deletes_in_order(etcd):
    rev = etcd.ok("prefix", "/t/w/")["revision"]
    proc = subprocess.Popen(etcd.argv("watch", "/t/w/", rev + 1, 3, 15000),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = json.loads(proc.stdout.readline())
        assert first.get("event") == "created", first
        t0 = time.monotonic()
        etcd.ok("put", "/t/w/a", "1")
        etcd.ok("put", "/t/w/b", "2")
        etcd.ok("put", "/t/outside", "x")
        etcd.ok("delete", "/t/w/a")
        lines, err = watch_lines(proc, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - t0 < 5, "events were not streamed promptly"
    events = [line["event"] for line in lines if isinstance(line.get("event"), dict)]
    assert [(e["type"], e["key"], e["value"]) for e in events] == [
        ("PUT", "/t/w/a", "1"), ("PUT", "/t/w/b", "2"), ("DELETE", "/t/w/a", "")], lines
    revs = [e["mod_revision"] for e in events]
    assert revs == sorted(revs) and len(set(revs)) == 3 and revs[0] > rev
    assert lines[-1]["rc"] == 0 and lines[-1]["events"] == 3, (lines, err)

    # the same history again from a start revision, at once
    r = etcd.probe("watch", "/t/w/", revs[0], 3, 5000)
    assert r["rc"] == 0 and r["events"] == 3 and r["elapsed_ms"] < 2000, r
    r = etcd.probe("watch", "/t/w/", revs[1], 3, 1000)
    assert r["events"] == 2, r


def test_watch_of_compacted_revision_is_refused(etcd):
    etcd.ok("put", "/t/c/a", "1")
    rev = etcd.ok("put", "/t/c/a", "2")["revision"]
    env = dict(os.environ, ETCDCTL_API="3")
    subprocess.run([ETCDCTL, "--endpoints", etcd.url, "--cacert", etcd.path("ca.pem"),
                    "--cert", etcd.path("client.pem"), "--key", etcd.path("client.key"),
                    "compact", str(rev)], check=True, capture_output=True, env=env, timeout=30)
    r = etcd.probe("watch", "/t/c/", 1, 1, 5000)
    assert r["rc"] != 0 and r["errno"] == "ESTALE" and r["compacted"] == rev, r


def test_member_list_add_promote_remove(etcd):
    m = etcd.ok("members")["members"]
    assert len(m) == 1 and m[0]["name"] == "t" and m[0]["client_urls"] == [etcd.url]
    assert m[0]["is_learner"] is False
    peer = f"http://127.0.0.1:{free_port()}"
    r = etcd.ok("member-add", peer, 1)
    new = [x for x in r["members"] if x["id"] == r["id"]]
    assert len(new) == 1 and new[0]["is_learner"] and new[0]["name"] == ""
    assert new[0]["peer_urls"] == [peer]
    # a learner that never started cannot be promoted: FailedPrecondition (ha.md 5.4 #12)
    p = etcd.probe("member-promote", r["id"])
    assert p["errno"] == "EBUSY" and "learner" in p["error"], p
    etcd.ok("member-remove", r["id"])
    assert [x["id"] for x in etcd.ok("members")["members"]] == [m[0]["id"]]
    assert etcd.probe("member-remove", r["id"])["errno"] == "ENOENT"


def test_mutual_tls_is_enforced(etcd):
    r = etcd.probe("get", "/t/a", cert=False)
    assert r["errno"] == "ECONNABORTED", r
    r = etcd.probe("get", "/t/a", ca=etcd.path("rogue-ca.pem"))
    assert r["errno"] == "ECONNABORTED", r


def test_wrong_api_prefix_is_a_clean_error(etcd):
    # 3.4 answers /v3alpha with a plain-text 404 (ha.md 5.1): not JSON, still an error
    r = etcd.probe("get", "/t/a", prefix="/v3alpha")
    assert r["errno"] == "ENOENT" and "HTTP 404" in r["error"], r
    r = etcd.probe("watch", "/t/", 0, 1, 3000, prefix="/v3alpha")
    assert r["errno"] == "ENOENT" and "HTTP 404" in r["error"], r
    assert etcd.ok("get", "/t/a", prefix="/v3beta")["revision"] > 0


def test_fails_over_to_the_next_endpoint(etcd):
    dead = f"https://127.0.0.1:{free_port()}"
    r = etcd.ok("put", "/t/fo", "1", endpoints=f"{dead},{etcd.url}")
    assert r["endpoint"] == etcd.url and r["elapsed_ms"] < 1000
    r = etcd.probe("watch", "/t/fo", r["revision"], 1, 3000, endpoints=f"{dead},{etcd.url}")
    assert r["rc"] == 0 and r["events"] == 1, r


def test_stopped_etcd_fails_within_the_timeout():
    assert PROBE.exists(), f"{PROBE} missing: run `make build`"
    server = Etcd()
    try:
        server.ok("put", "/t/s", "1")
        server.signal(signal.SIGSTOP)  # hung: accepts connections, never answers
        for args, timeout in ((("get", "/t/s"), None), (("put", "/t/s", "2"), 1000),
                              (("create", "/t/s", "x"), 1000), (("keepalive", "1"), 700)):
            budget = timeout or 2000  # the client's default
            t0 = time.monotonic()
            r = server.probe(*args, timeout=timeout)
            wall = (time.monotonic() - t0) * 1000
            assert r["errno"] == "ETIMEDOUT", r
            assert budget - 100 <= r["elapsed_ms"] < budget + 500, r
            assert wall < budget + 1500, f"{args}: {wall:.0f} ms"
        r = server.probe("watch", "/t/", 0, 1, 5000, timeout=1000)
        assert r["errno"] == "ETIMEDOUT" and r["elapsed_ms"] < 1500, r
        server.signal(signal.SIGCONT)
        server.ok("get", "/t/s")
        server.stop()  # gone: connection refused, at once
        r = server.probe("get", "/t/s")
        assert r["errno"] == "ECONNREFUSED" and r["elapsed_ms"] < 500, r
        r = server.probe("watch", "/t/", 0, 1, 3000)
        assert r["errno"] == "ECONNREFUSED" and r["elapsed_ms"] < 500, r
    finally:
        server.close()
