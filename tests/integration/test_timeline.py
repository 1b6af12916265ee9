"""Timeline ancestry (agent/timeline.c) against real PostgreSQL 15 clusters.

Each test builds throwaway clusters as the OS user postgres in its own temporary
directory under /tmp (data directories, logs, and the Unix socket directory), on free
ports chosen at run time: a primary from initdb --data-checksums, standbys from
pg_basebackup, then promotions, forks, pg_rewind. The agent's code runs in
build/tests-int/timeline_probe (tests/timeline/timeline_probe.c): `local` reads a stopped
data directory (pg_controldata, pg_waldump, the history file), `identify` asks a server
over a replication connection (IDENTIFY_SYSTEM, TIMELINE_HISTORY), `decide` does both and
prints the decision. Authentication is trust over the Unix socket (test clusters only).
Every server is stopped (pg_ctl -m immediate, then SIGKILL by the postmaster's PID) and
the directory removed, also when a test fails.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import REPO

PROBE = REPO / "build" / "tests-int" / "timeline_probe"
PG_BIN = "/usr/lib/postgresql/15/bin"
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}


@pytest.fixture(autouse=True, scope="module")
def controller():
    """No local model needed here: override the session fixture."""
    yield None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_lsn(s):
    hi, lo = s.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


class Lab:
    """A temporary directory owned by postgres, holding clusters and their socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tl-", dir="/tmp")
        os.chmod(self.dir, 0o700)
        shutil.chown(self.dir, "postgres", "postgres")
        self.clusters = []

    def run(self, *argv, timeout=120, check=True):
        """Run a PostgreSQL program as postgres; the CompletedProcess (text)."""
        p = subprocess.run([str(a) for a in argv], user="postgres", group="postgres",
                           extra_groups=[], cwd=self.dir, env=ENV, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{argv} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    def cluster(self, name):
        c = Cluster(self, name)
        self.clusters.append(c)
        return c

    def close(self):
        try:
            for c in self.clusters:
                c.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    def __init__(self, lab, name):
        self.lab = lab
        self.name = name
        self.data = os.path.join(lab.dir, name)
        self.log = os.path.join(lab.dir, name + ".log")
        self.port = free_port()

    @property
    def conninfo(self):
        return f"host={self.lab.dir} port={self.port} user=postgres connect_timeout=5"

    def initdb(self):
        self.lab.run(f"{PG_BIN}/initdb", "-D", self.data, "--data-checksums", "-A", "trust",
                     "-U", "postgres", "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n"
                    "wal_keep_size = '128MB'\nlisten_addresses = '127.0.0.1'\n")
        return self

    def clone_from(self, src):
        """pg_basebackup from src, configured as its standby (-R)."""
        self.lab.run(f"{PG_BIN}/pg_basebackup", "-D", self.data, "-h", self.lab.dir,
                     "-p", src.port, "-U", "postgres", "-R", "-X", "stream", "-c", "fast",
                     "--no-sync")
        return self

    def start(self):
        opts = f"-p {self.port} -k {self.lab.dir}"
        self.lab.run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                     "-o", opts, "start")
        return self

    def stop(self, mode="fast"):
        self.lab.run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", mode,
                     "stop")

    def pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def kill(self):
        """Stop whatever runs, by pg_ctl and then by the postmaster's PID."""
        pid = self.pid()
        if pid is None:
            return
        self.lab.run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30",
                     "stop", check=False, timeout=60)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                mine = self.data.encode() in f.read()
        except OSError:
            mine = False
        if mine:
            os.kill(pid, signal.SIGKILL)

    def sql(self, query):
        p = self.lab.run(f"{PG_BIN}/psql", "-h", self.lab.dir, "-p", self.port, "-U", "postgres",
                         "-d", "postgres", "-XAtqc", query, timeout=60)
        return p.stdout.strip()

    def promote(self):
        self.lab.run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-w", "-t", "60", "promote")
        wait_for(lambda: self.sql("SELECT NOT pg_is_in_recovery()") == "t", 30, "promotion")
        # pg_rewind reads the source's timeline from its control file: checkpoint first
        self.sql("CHECKPOINT")

    def follow(self, leader):
        """Configure as a standby of leader (standby.signal, primary_conninfo)."""
        signal_file = os.path.join(self.data, "standby.signal")
        open(signal_file, "w").close()
        shutil.chown(signal_file, "postgres", "postgres")
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write(f"primary_conninfo = 'host={leader.lab.dir} port={leader.port} "
                    f"user=postgres application_name={self.name}'\n"
                    "recovery_target_timeline = 'latest'\n")

    def isolate(self):
        """No upstream: a standby that will be promoted on its own."""
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("primary_conninfo = ''\n")

    def controldata(self):
        out = self.lab.run(f"{PG_BIN}/pg_controldata", "-D", self.data).stdout
        return dict(re.findall(r"^([^:\n]+):\s*(.*)$", out, re.M))

    def checkpoint_location(self):
        return parse_lsn(self.controldata()["Latest checkpoint location"])

    def streaming(self):
        return self.sql("SELECT status FROM pg_stat_wal_receiver") == "streaming"

    def logtext(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


@pytest.fixture
def lab():
    assert PROBE.exists(), f"{PROBE} missing: run `make build`"
    assert os.path.exists(f"{PG_BIN}/postgres"), "PostgreSQL 15 is not installed"
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def probe(*args):
    p = subprocess.run([str(PROBE), *[str(a) for a in args]], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, f"probe {args}: {p}"
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["stderr"] = p.stderr
    r["stdout"] = p.stdout
    return r


def ok(*args):
    r = probe(*args)
    assert r["rc"] == 0, f"{args}: {r}"
    return r


def decide(node, leader):
    return ok("decide", PG_BIN, node.data, leader.conninfo)


def primary_and_standby(lab):
    p = lab.cluster("p").initdb().start()
    s = lab.cluster("s").clone_from(p).start()
    p.sql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)")
    lsn = p.sql("SELECT pg_current_wal_lsn()")
    wait_for(lambda: s.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t", 30,
             "the standby to catch up")
    return p, s


def switchover(p, s):
    """Stop the primary first (its walsender sends the shutdown checkpoint), let the
    standby replay it, promote the standby. Returns (checkpoint start, end, switch point)."""
    p.stop("fast")
    start = p.checkpoint_location()
    end = parse_lsn(ok("local", PG_BIN, p.data)["local"]["lsn"])
    wait_for(lambda: parse_lsn(s.sql("SELECT pg_last_wal_replay_lsn()")) >= end, 30,
             "the standby to replay the shutdown checkpoint")
    s.promote()
    leader = ok("identify", s.conninfo)["leader"]
    assert leader["timeline"] == 2 and len(leader["history"]) == 1
    assert leader["history"][0][0] == 1
    return start, end, parse_lsn(leader["history"][0][1])


def test_identify_and_local_of_a_primary_and_standby(lab):
    p, s = primary_and_standby(lab)
    r = ok("identify", p.conninfo)["leader"]
    cd = p.controldata()
    assert r["system_id"] == cd["Database system identifier"]
    assert r["timeline"] == 1 and r["history"] == []
    assert 0 < parse_lsn(r["lsn"]) <= parse_lsn(p.sql("SELECT pg_current_wal_flush_lsn()"))
    # a standby answers IDENTIFY_SYSTEM too, with the same system
    assert ok("identify", s.conninfo)["leader"]["system_id"] == r["system_id"]
    # only host and port are logged, at debug level
    r = probe("identify", p.conninfo)
    assert f"leader at {lab.dir}:{p.port}" in r["stderr"]
    # the stopped standby: a replica, clean, at its minimum recovery point
    s.stop("fast")
    local = ok("local", PG_BIN, s.data)["local"]
    cd = s.controldata()
    assert cd["Database cluster state"] == "shut down in recovery"
    assert local["was_primary"] is False and local["clean_shutdown"] is True
    assert local["timeline"] == 1 and local["history"] is None
    assert parse_lsn(local["lsn"]) >= parse_lsn(cd["Minimum recovery ending location"])
    assert local["system_id"] == r["leader"]["system_id"]
    # and it may stream from the primary again
    d = decide(s, p)
    assert d["outcome"] == "stream", d


def test_graceful_switchover_old_primary_streams(lab):
    p, s = primary_and_standby(lab)
    start, end, switch = switchover(p, s)
    local = ok("local", PG_BIN, p.data)["local"]
    assert local["was_primary"] is True and local["clean_shutdown"] is True
    assert local["lsn_lower_bound"] is False
    # observed: the standby promoted at the END of the old primary's shutdown checkpoint
    # record, not at its start ("Latest checkpoint location")
    assert switch == end, (hex(start), hex(end), hex(switch))
    assert start < switch
    assert end - start == 120, "a PostgreSQL 15 shutdown checkpoint: 114 bytes, MAXALIGNed"
    d = decide(p, s)
    assert d["outcome"] == "stream", d
    assert "exactly where" in d["reason"]
    # and it really streams from the new primary, without a rewind
    p.follow(s)
    p.start()
    s.sql("INSERT INTO t VALUES (-1)")
    wait_for(lambda: p.sql("SELECT count(*) FROM t WHERE x = -1") == "1", 30,
             "the old primary to replay the new primary's write")
    assert wait_for(p.streaming, 30, "the WAL receiver to stream")
    assert p.sql("SELECT received_tli FROM pg_stat_wal_receiver") == "2"


def test_write_after_promotion_forks_then_rewind_streams(lab):
    p, s = primary_and_standby(lab)
    _, _, switch = switchover(p, s)
    # the old primary comes back as a primary and takes writes: a fork
    p.start()
    p.sql("INSERT INTO t SELECT generate_series(1, 5000)")
    p.stop("fast")
    d = decide(p, s)
    assert d["outcome"] == "rewind", d
    assert parse_lsn(d["local"]["lsn"]) > switch
    assert "diverged" in d["reason"]
    # rewind it from the new primary, as the agent will
    r = lab.run(f"{PG_BIN}/pg_rewind", "--target-pgdata", p.data, "-R",
                "--source-server", f"host={lab.dir} port={s.port} user=postgres dbname=postgres")
    assert "servers diverged at WAL location" in r.stdout + r.stderr
    d = decide(p, s)
    assert d["outcome"] == "stream", d
    assert d["local"]["timeline"] == 2 and d["local"]["was_primary"] is False
    p.start()
    s.sql("INSERT INTO t VALUES (-2)")
    wait_for(lambda: p.sql("SELECT count(*) FROM t WHERE x = -2") == "1", 30,
             "the rewound node to replay the new primary's write")
    assert wait_for(p.streaming, 30, "the WAL receiver to stream")
    # the forked rows are gone
    assert p.sql("SELECT count(*) FROM t") == s.sql("SELECT count(*) FROM t") == "1001"


def test_missed_shutdown_checkpoint_needs_rewind(lab):
    """The standby stops before the primary: it never gets the shutdown checkpoint and
    promotes at (or before) its start. The checkpoint LOCATION is then not past the
    switch point, but the record is: streaming would never work."""
    p, s = primary_and_standby(lab)
    s.stop("fast")
    p.stop("fast")
    start = p.checkpoint_location()
    s.isolate()
    s.start()
    s.promote()
    leader = ok("identify", s.conninfo)["leader"]
    switch = parse_lsn(leader["history"][0][1])
    assert switch <= start, (hex(switch), hex(start))
    d = decide(p, s)
    assert d["outcome"] == "rewind", d
    assert parse_lsn(d["local"]["lsn"]) > switch
    # without a rewind it does not follow the new timeline
    p.follow(s)
    p.start()
    s.sql("INSERT INTO t VALUES (-3)")
    wait_for(lambda: "forked off current database system timeline" in p.logtext(), 30,
             "the old primary to refuse the new timeline")
    time.sleep(2)
    assert p.sql("SELECT count(*) FROM t WHERE x = -3") == "0"
    p.stop("fast")
    # still a rewind, now read as a standby that went past the switch point
    d = decide(p, s)
    assert d["outcome"] == "rewind", d
    assert d["local"]["was_primary"] is False
    lab.run(f"{PG_BIN}/pg_rewind", "--target-pgdata", p.data, "-R",
            "--source-server", f"host={lab.dir} port={s.port} user=postgres dbname=postgres")
    assert decide(p, s)["outcome"] == "stream"
    p.start()
    wait_for(lambda: p.sql("SELECT count(*) FROM t WHERE x = -3") == "1", 30,
             "the rewound node to replay the new primary's write")


def test_same_timeline_number_fork_needs_reclone(lab):
    """Two standbys promote on their own to timeline 2 at different points: pg_rewind sees
    equal timeline IDs and does nothing, so only a re-clone helps."""
    p, a = primary_and_standby(lab)
    b = lab.cluster("b").clone_from(p).start()
    a.stop("fast")
    p.sql("INSERT INTO t SELECT generate_series(1, 100)")
    lsn = p.sql("SELECT pg_current_wal_lsn()")
    wait_for(lambda: b.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t", 30,
             "b to catch up")
    p.stop("fast")
    a.isolate()
    a.start()
    a.promote()
    b.stop("fast")
    b.isolate()
    b.start()
    b.promote()
    ha = ok("identify", a.conninfo)["leader"]
    hb = ok("identify", b.conninfo)["leader"]
    assert ha["timeline"] == hb["timeline"] == 2
    assert ha["history"][0][1] != hb["history"][0][1]
    b.stop("fast")
    d = decide(b, a)
    assert d["outcome"] == "reclone", d
    assert "different histories" in d["reason"]
    assert d["local"]["history"] == hb["history"]
    # pg_rewind indeed cannot repair it
    r = lab.run(f"{PG_BIN}/pg_rewind", "--target-pgdata", b.data, "--source-server",
                f"host={lab.dir} port={a.port} user=postgres dbname=postgres")
    out = r.stdout + r.stderr
    assert "source and target cluster are on the same timeline" in out
    assert "no rewind required" in out


def test_other_cluster_needs_reclone(lab):
    p = lab.cluster("p").initdb().start()
    q = lab.cluster("q").initdb()
    d = decide(q, p)
    assert d["outcome"] == "reclone", d
    assert d["local"]["system_id"] != d["leader"]["system_id"]
    assert "another cluster" in d["reason"]


def test_errors_are_clean(lab):
    secret = "hunter2-not-logged"
    for conninfo, want in (
        ("this is not a conninfo", "not valid"),
        (f"password={secret} host='unterminated", "not valid"),
        (f"host=127.0.0.1 port={free_port()} user=x password={secret} connect_timeout=3",
         "Connection refused"),
        (f"host={lab.dir} port={free_port()} user=postgres password={secret}",
         "No such file or directory"),
    ):
        r = probe("identify", conninfo)
        assert r["rc"] < 0 and want in r["error"], (conninfo, r)
        assert secret not in r["stdout"] and secret not in r["stderr"]
        assert "\n" not in r["error"]
    r = probe("identify", f"host=127.0.0.1 port=1 password={secret} connect_timeout=3")
    assert "127.0.0.1:1" in r["error"] and secret not in r["error"]
    # a data directory that is not one, and paths that are refused
    empty = os.path.join(lab.dir, "empty")
    os.mkdir(empty)
    r = probe("local", PG_BIN, empty)
    assert r["rc"] < 0 and "pg_controldata exited with code 1" in r["error"], r
    r = probe("local", PG_BIN, "relative/dir")
    assert r["rc"] < 0 and "absolute" in r["error"]
    r = probe("local", "/nonexistent/bin", empty)
    assert r["rc"] < 0, r
    # a garbage history file in a data directory on timeline 2
    p, s = primary_and_standby(lab)
    p.stop("fast")
    s.promote()
    s.stop("fast")
    with open(os.path.join(s.data, "pg_wal", "00000002.history"), "w") as f:
        f.write("1\t0/3027B68\tok\n2\tnot-an-lsn\n")
    r = probe("local", PG_BIN, s.data)
    assert r["rc"] < 0 and "00000002.history: line 2" in r["error"], r
