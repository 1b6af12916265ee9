"""Acknowledged-write history for failover benchmarks and chaos tests: record, then check.

Shared by `bench/failover.py` (Patroni and the charm) and the chaos tests. Pure Python
and psycopg2; nothing here knows which HA manager runs the cluster.

Recording (`Writer`)
--------------------
A `Writer` thread inserts one unique id every `interval` seconds (20 ms by default)
into `chaos_writes(id bigint primary key, at timestamptz default now(), node text,
tli int)` on whichever node accepts writes, for at most `duration` seconds and at most
`max_attempts` attempts. Every statement runs in autocommit mode, so the answer to the
INSERT is the answer to its COMMIT. For every attempt it records (`Attempt`): the id,
the host it was sent to, the client's monotonic send time and answer time, whether the
server acknowledged the commit, the error otherwise, and the timeline the node wrote
the row on, read in the same statement as
`('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int`: in
PostgreSQL 15 `pg_walfile_name` names the segment with the WAL *insertion* timeline,
which changes at the moment of promotion (`pg_control_checkpoint()` only changes at the
next checkpoint, so it is not used).

Connections: one per host (`hosts`, each `name` or `name:port`), opened and re-opened
by one connector thread per host (libpq `connect_timeout` 1 s, keepalives and
`tcp_user_timeout` 2 s by default, so a dead host costs the writer at most ~2 s once and
never blocks it in `connect`). The writer sends to the host it believes is the primary;
after an error it drops that belief and asks every open connection
`pg_is_in_recovery()` (the same test as libpq's `target_session_attrs=read-write`),
taking the first host that answers false. Each id is sent once and never retried (a
retry would make "acknowledged" ambiguous). Extra libpq parameters (`sslmode=require`,
`sslrootcert`, `user`, `dbname`, ...) pass through `params`; the password comes from
`password`, a string or a callable evaluated at each connect, or from libpq's own
`PGPASSWORD`/`.pgpass`; it is never logged or put in an error text. An attempt that
has not finished after `attempt_timeout` seconds is cancelled from a watchdog thread,
which bounds a commit stuck waiting for a synchronous standby: with
`pg_cancel_backend(<its backend pid>)` over a fresh connection (libpq `connect_timeout`),
not with psycopg2's `connection.cancel()`, which holds Python's GIL while PQcancel waits
for the server: against a stopped (SIGSTOP) server that froze every thread of the
process, the test driving the fault included.

With `all_primaries=True` the writer instead writes, every tick, to every host that
currently says it is not in recovery (one id each): a cluster with two writable
primaries then shows up as interleaved acknowledgements from two nodes (the default,
sticky mode only notices the second primary when the first one fails).

The documented cancelled-sync-wait case (patroni/patroni#1412; reference ha.md section
17 #11): when the wait for a synchronous standby is cancelled, PostgreSQL has already
committed locally. On a query cancel the client receives a *successful* COMMIT with the
WARNING "canceling wait for synchronous replication ..."; on a termination it receives
that WARNING and then an error. The writer records the warning (`sync_cancelled`). An
attempt whose client saw an error is never counted as acknowledged (whatever the
final read says); an acknowledged attempt with `sync_cancelled` is counted as
acknowledged but, if missing at the end, is reported in `lost_sync_cancelled`, not in
`lost` (PostgreSQL documents that it may be lost).

Checking (`check`)
------------------
`check(attempts, final_ids, events, final_by_node)` takes the attempt log, the ids read
at the end from the surviving primary (`read_ids`), the fault events the test injected
(`Event`: monotonic time, kind such as "crash" or "switchover", the node it hit) and
optionally the ids read from every node, and returns a `Report`:

- `lost`: acknowledged ids (client saw a successful COMMIT without the cancelled-sync
  warning) that the final read does not contain. Must be empty in synchronous mode.
- `lost_sync_cancelled`: the same for acknowledgements that carried the warning.
- `committed_unacked`: ids whose client saw an error but which the final read contains
  (indeterminate commits: legal, reported for information).
- `errors`: attempts without an acknowledgement.
- `dual_primary` and `violations`: the single-writable-primary invariant, defined on
  the acknowledged attempts ordered by acknowledgement time and grouped into *runs*
  (maximal sequences of consecutive acknowledgements by the same node):
    1. timeline rule (when acknowledgements carry a timeline): within a run the
       timeline never decreases, and the first acknowledgement of every run has a
       timeline strictly greater than every timeline acknowledged before it by any
       node. A promotion always starts a new, higher timeline, so an acknowledgement on
       an older or equal timeline after another node acknowledged means two nodes
       accepted writes in overlapping intervals (an old primary still writable after a
       newer one was promoted), or two nodes promoted to the same timeline
       (patroni/patroni#890).
    2. node rule (when events are given): cut the acknowledgement sequence at every
       event time; in each window the writing node may change at most once (the
       failover or switchover that event caused) and never back to a node that already
       wrote earlier in that window ("switched back while the newer one still acks").
       A change of node in the window before the first event is reported as an
       unexpected failover (a violation too: nothing was injected).
  Without timelines and without events nothing can be concluded; `check` says so in
  `violations`-free `notes`.
- `events`: per event (`EventReport`), `downtime` = time from the event to the first
  acknowledgement after it by a node other than the one the event hit (or, if the
  event names no node, other than the node that acknowledged last before it); `gap` =
  time between that first new acknowledgement and the last acknowledgement before it
  (the write unavailability a client saw; for a switchover: last ack on the old
  primary to first ack on the new one); the acknowledgements the old node still gave
  after the event; the errors in between.

The unit tests of the checker are `tests/chaos/test_history.py` (synthetic logs).
"""
import dataclasses
import random
import re
import statistics
import threading
import time

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

TABLE = "chaos_writes"
ID_BLOCK = 1 << 24          # ids of one writer: [id_base, id_base + ID_BLOCK)
SYNC_CANCEL_MARKERS = ("canceling wait for synchronous replication",
                       "canceling the wait for synchronous replication")
TIMELINE_SQL = "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
DEFAULT_PARAMS = {
    "connect_timeout": "1",
    "keepalives": "1",
    "keepalives_idle": "1",
    "keepalives_interval": "1",
    "keepalives_count": "2",
    "tcp_user_timeout": "2000",
    "application_name": "chaos-writer",
}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# ---- the log -----------------------------------------------------------------------------
@dataclasses.dataclass
class Attempt:
    id: int
    host: str                     # host the INSERT was sent to
    t_send: float                 # time.monotonic() just before sending
    t_done: float                 # time.monotonic() when the answer or error arrived
    ok: bool                      # the server acknowledged the COMMIT
    tli: int | None = None        # timeline of the acknowledging node (None if unknown)
    error: str | None = None      # error class and first line, when not ok
    sync_cancelled: bool = False  # the answer carried the cancelled-sync-wait WARNING

    @property
    def node(self):
        """The node that acknowledged the write (None when it was not acknowledged)."""
        return self.host if self.ok else None


@dataclasses.dataclass
class Event:
    t: float                      # time.monotonic() of the fault or request
    kind: str                     # "crash", "switchover", "partition", ...
    node: str | None = None       # the node it hit (crash: the crashed primary)
    detail: str = ""


def split_host(host):
    """'name' or 'name:port' (IPv4 or DNS name) -> (name, port or None)."""
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, port
    return host, None


def conninfo_params(host, params=None, password=None):
    """libpq keyword arguments for one host: defaults, then `params`, then the password."""
    kw = dict(DEFAULT_PARAMS)
    kw.update({k: str(v) for k, v in (params or {}).items()})
    name, port = split_host(host)
    kw["host"] = name
    if port:
        kw["port"] = port
    pw = password() if callable(password) else password
    if pw is not None:
        kw["password"] = pw
    return kw


def _redact(text, password):
    pw = password() if callable(password) else password
    if pw and text:
        text = text.replace(pw, "***")
    return text


def connect(host, params=None, password=None, autocommit=True):
    """Open a psycopg2 connection to one host (errors never contain the password)."""
    try:
        conn = psycopg2.connect(**conninfo_params(host, params, password))
    except psycopg2.Error as e:
        raise psycopg2.OperationalError(_redact(str(e).strip(), password)) from None
    conn.autocommit = autocommit
    return conn


def ensure_table(conn, table=TABLE):
    """Create the write table if it does not exist (on the primary)."""
    _check_ident(table)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, "
                            "at timestamptz NOT NULL DEFAULT now(), node text, tli int)")
                    .format(sql.Identifier(table)))


def read_ids(conn, id_range=None, table=TABLE):
    """The set of ids in the table (restricted to [lo, hi) when id_range is given)."""
    _check_ident(table)
    with conn.cursor() as cur:
        if id_range is None:
            cur.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(table)))
        else:
            cur.execute(sql.SQL("SELECT id FROM {} WHERE id >= %s AND id < %s")
                        .format(sql.Identifier(table)), tuple(id_range))
        return {r[0] for r in cur.fetchall()}


def _check_ident(table):
    if not _IDENT.match(table):
        raise ValueError(f"bad table name {table!r}")


def _first_line(e):
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


# ---- the writer -------------------------------------------------------------------------
class Writer:
    """Insert one unique id every `interval` s on the writable node, in a thread.

    Bounded: stops after `duration` seconds, `max_attempts` attempts or `stop()`,
    whichever comes first. Use as a context manager or start()/stop().
    """

    def __init__(self, hosts, params=None, password=None, interval=0.02, duration=60.0,
                 max_attempts=100_000, attempt_timeout=5.0, all_primaries=False,
                 id_base=None, table=TABLE, reconnect_interval=0.2):
        if not hosts:
            raise ValueError("no hosts")
        _check_ident(table)
        self.hosts = list(hosts)
        self.params = dict(params or {})
        self._password = password
        self.interval = interval
        self.duration = duration
        self.max_attempts = min(max_attempts, ID_BLOCK)
        self.attempt_timeout = attempt_timeout
        self.all_primaries = all_primaries
        self.table = table
        self.reconnect_interval = reconnect_interval
        self.id_base = id_base if id_base is not None else random.getrandbits(38) * ID_BLOCK
        self.id_range = (self.id_base, self.id_base + ID_BLOCK)
        self.attempts = []            # appended by the writer thread only
        self.events = []
        self.no_primary_ticks = 0     # ticks with no writable host known
        self.connect_errors = {h: 0 for h in self.hosts}
        self.last_connect_error = {}
        self.stuck = False            # the writer thread did not end within its bound
        self._insert = sql.SQL("INSERT INTO {} (id, node, tli) VALUES (%s, %s, "
                               + TIMELINE_SQL + ") RETURNING tli").format(
                                   sql.Identifier(table))
        self._lock = threading.Lock()
        self._acked = threading.Condition(self._lock)
        self._slots = {h: None for h in self.hosts}
        self._stop = threading.Event()
        self._primary = None
        self._last_primary = None
        self._inflight = None         # (host, backend pid, t_send, cancelled flag list)
        self._next_id = self.id_base
        self._threads = []
        self._writer = None
        self.t_start = None

    # -- lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.t_start = time.monotonic()
        self._threads = [threading.Thread(target=self._connector, args=(h,), daemon=True,
                                          name=f"chaos-connect-{h}") for h in self.hosts]
        self._threads.append(threading.Thread(target=self._watchdog, daemon=True,
                                              name="chaos-watchdog"))
        self._writer = threading.Thread(target=self._run, daemon=True, name="chaos-writer")
        for t in self._threads:
            t.start()
        self._writer.start()
        return self

    def stop(self, timeout=None):
        """Stop writing, wait for the threads (bounded), close every connection."""
        self._stop.set()
        if self._writer is None:
            return self
        limit = timeout if timeout is not None else self.attempt_timeout + 5
        self._writer.join(limit)
        self.stuck = self._writer.is_alive()
        for t in self._threads:
            t.join(float(self.params.get("connect_timeout", DEFAULT_PARAMS["connect_timeout"])) + 2)
        with self._lock:
            conns, self._slots = list(self._slots.values()), {h: None for h in self.hosts}
            self._acked.notify_all()
        for c in conns:
            if c is not None and not self.stuck:
                c.close()
        return self

    @property
    def running(self):
        return self._writer is not None and self._writer.is_alive()

    def mark(self, kind, node=None, detail="", t=None):
        """Record a fault event (time.monotonic() now unless given); returns its time."""
        ev = Event(time.monotonic() if t is None else t, kind, node, detail)
        with self._lock:
            self.events.append(ev)
        return ev.t

    # -- queries for the driver of the test (thread-safe snapshots)
    def snapshot(self):
        with self._lock:
            return list(self.attempts)

    def acks(self):
        return [a for a in self.snapshot() if a.ok]

    def wait_ack(self, predicate, timeout):
        """Wait (bounded) for an acknowledged attempt satisfying predicate; return it or None."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lock:
            while True:
                for a in self.attempts[seen:]:
                    if a.ok and predicate(a):
                        return a
                seen = len(self.attempts)
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or not self._writer.is_alive():
                    return None
                self._acked.wait(min(left, 0.5))

    def connect(self, host, autocommit=True):
        """A fresh connection with the writer's parameters (for checks and final reads)."""
        return connect(host, self.params, self._password, autocommit)

    # -- threads
    def _connector(self, host):
        """Keep one open connection to `host` in its slot; never blocks the writer."""
        while not self._stop.is_set():
            with self._lock:
                have = self._slots.get(host) is not None
            if not have:
                try:
                    conn = connect(host, self.params, self._password)
                except psycopg2.Error as e:
                    self.connect_errors[host] += 1
                    self.last_connect_error[host] = _first_line(e)
                    self._stop.wait(self.reconnect_interval)
                    continue
                with self._lock:
                    if self._stop.is_set() or self._slots.get(host) is not None:
                        conn.close()
                    else:
                        self._slots[host] = conn
            self._stop.wait(0.02)

    def _watchdog(self):
        """Cancel an attempt that takes longer than attempt_timeout (e.g. a stuck sync wait)."""
        while not self._stop.is_set() or self._writer.is_alive():
            inflight = self._inflight
            if inflight is not None:
                host, pid, t_send, flag = inflight
                if not flag and pid and time.monotonic() - t_send > self.attempt_timeout:
                    flag.append(True)
                    threading.Thread(target=self._cancel, args=(host, pid), daemon=True).start()
            if self._stop.wait(0.05) and not self._writer.is_alive():
                break

    def _cancel(self, host, pid):
        """pg_cancel_backend() of the attempt's backend over a new connection: libpq's
        connect and query release the GIL (PQcancel under psycopg2 does not)."""
        try:
            c = connect(host, self.params, self._password)
            try:
                with c.cursor() as cur:
                    cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
            finally:
                c.close()
        except Exception:       # best effort: the attempt fails on its own otherwise
            pass

    def _drop(self, host, conn):
        with self._lock:
            if self._slots.get(host) is conn:
                self._slots[host] = None
        try:
            conn.close()
        except Exception:
            pass

    def _live(self):
        with self._lock:
            return [(h, c) for h, c in self._slots.items() if c is not None]

    def _is_primary(self, host, conn):
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                return not cur.fetchone()[0]
        except psycopg2.Error:
            self._drop(host, conn)
            return False

    def _targets(self):
        live = self._live()
        if self.all_primaries:
            return [(h, c) for h, c in live if self._is_primary(h, c)]
        slots = dict(live)
        if self._primary is not None and slots.get(self._primary) is not None:
            return [(self._primary, slots[self._primary])]
        self._primary = None
        # start after the last primary so that a stale one is asked last
        order = self.hosts
        if self._last_primary in order:
            i = order.index(self._last_primary)
            order = order[i + 1:] + order[:i + 1]
        for h in order:
            c = slots.get(h)
            if c is not None and self._is_primary(h, c):
                self._primary = self._last_primary = h
                return [(h, c)]
        return []

    def _attempt(self, host, conn):
        ident = self._next_id
        self._next_id += 1
        del conn.notices[:]
        flag = []
        try:
            pid = conn.get_backend_pid()
        except psycopg2.Error:
            pid = None
        t_send = time.monotonic()
        self._inflight = (host, pid, t_send, flag)
        try:
            with conn.cursor() as cur:
                cur.execute(self._insert, (ident, host))
                tli = cur.fetchone()[0]
            a = Attempt(ident, host, t_send, time.monotonic(), True, tli)
        except psycopg2.Error as e:
            a = Attempt(ident, host, t_send, time.monotonic(), False,
                        error=_redact(_first_line(e), self._password))
            if self._primary == host:
                self._primary = None
            ro = isinstance(e, psycopg2.errors.ReadOnlySqlTransaction)
            if conn.closed or not ro:
                self._drop(host, conn)
        finally:
            self._inflight = None
        a.sync_cancelled = any(m in n for n in conn.notices for m in SYNC_CANCEL_MARKERS)
        with self._lock:
            self.attempts.append(a)
            self._acked.notify_all()

    def _run(self):
        deadline = self.t_start + self.duration
        next_t = self.t_start
        while not self._stop.is_set() and len(self.attempts) < self.max_attempts:
            now = time.monotonic()
            if now >= deadline:
                break
            targets = self._targets()
            if not targets:
                self.no_primary_ticks += 1
            for h, c in targets:
                if len(self.attempts) >= self.max_attempts:
                    break
                self._attempt(h, c)
            next_t += self.interval
            now = time.monotonic()
            if next_t < now:
                next_t = now          # behind (e.g. a slow failing attempt): no burst
            self._stop.wait(max(0.0, min(next_t, deadline) - now))
        with self._lock:
            self._acked.notify_all()


# ---- the checker --------------------------------------------------------------------------
@dataclasses.dataclass
class EventReport:
    event: Event
    old_node: str | None          # node that acknowledged last before the event
    new_node: str | None          # node of the first acknowledgement by another node
    first_new_ack: float | None   # its time
    downtime: float | None        # first_new_ack - event.t
    gap: float | None             # first_new_ack - last acknowledgement before it
    last_ack_before_new: float | None
    old_acks_after: int           # acknowledgements by old_node after the event
    errors_until_new: int         # failed attempts between the event and first_new_ack


@dataclasses.dataclass
class Report:
    attempts: int
    acked: int
    errors: int
    lost: list
    lost_sync_cancelled: list
    committed_unacked: list
    dual_primary: bool
    violations: list
    events: list
    notes: list
    lost_where: dict              # lost id -> nodes holding it (with final_by_node)

    def summary(self):
        ev = "; ".join(
            f"{r.event.kind}@{r.event.node}: downtime "
            + (f"{r.downtime:.3f}s" if r.downtime is not None else "none")
            + (f", gap {r.gap:.3f}s" if r.gap is not None else "")
            for r in self.events)
        return (f"{self.attempts} attempts, {self.acked} acked, {self.errors} errors, "
                f"{len(self.lost)} lost, {len(self.lost_sync_cancelled)} lost after a "
                f"cancelled sync wait, dual primary: {self.dual_primary}"
                + (f"; {ev}" if ev else ""))


def _runs(acks):
    """Group acknowledgements (sorted by t_done) into runs of the same node."""
    runs = []
    for a in acks:
        if runs and runs[-1][0] == a.host:
            runs[-1][1].append(a)
        else:
            runs.append((a.host, [a]))
    return runs


def _timeline_violations(runs):
    out = []
    max_tli = None
    for i, (node, acks) in enumerate(runs):
        tlis = [a.tli for a in acks if a.tli is not None]
        if not tlis:
            continue
        if i > 0 and max_tli is not None and tlis[0] <= max_tli:
            out.append(f"{node} acknowledged id {acks[0].id} on timeline {tlis[0]} at "
                       f"{acks[0].t_done:.3f} after timeline {max_tli} had been "
                       "acknowledged: two writable primaries")
        for prev, cur in zip(tlis, tlis[1:]):
            if cur < prev:
                out.append(f"{node}'s timeline went back from {prev} to {cur}")
                break
        max_tli = max(tlis) if max_tli is None else max(max_tli, max(tlis))
    return out


def _node_violations(runs, events):
    out = []
    cuts = sorted(e.t for e in events)
    windows = {}
    for k in range(1, len(runs)):
        t = runs[k][1][0].t_done
        w = sum(1 for c in cuts if c <= t)        # window index: events before this switch
        windows.setdefault(w, []).append(k)
    for w, ks in sorted(windows.items()):
        if w == 0:
            for k in ks:
                out.append(f"write node changed from {runs[k - 1][0]} to {runs[k][0]} at "
                           f"{runs[k][1][0].t_done:.3f} before any injected event")
            continue
        seen = {runs[ks[0] - 1][0]}
        for n, k in enumerate(ks):
            node = runs[k][0]
            if node in seen:
                out.append(f"write node switched back to {node} at "
                           f"{runs[k][1][0].t_done:.3f} after another node acknowledged "
                           f"(window after event {w})")
            elif n > 0:
                out.append(f"write node changed a second time ({runs[k - 1][0]} -> {node}) "
                           f"after event {w}")
            seen.add(node)
    return out


def check(attempts, final_ids, events=(), final_by_node=None):
    """Check a write history; see the module docstring for every definition."""
    final_ids = set(final_ids)
    acks = sorted((a for a in attempts if a.ok), key=lambda a: (a.t_done, a.id))
    failed = [a for a in attempts if not a.ok]
    lost = sorted(a.id for a in acks if a.id not in final_ids and not a.sync_cancelled)
    lost_c = sorted(a.id for a in acks if a.id not in final_ids and a.sync_cancelled)
    unacked = sorted(a.id for a in failed if a.id in final_ids)
    runs = _runs(acks)
    events = sorted(events, key=lambda e: e.t)
    notes = []
    violations = []
    if any(a.tli is not None for a in acks):
        violations += _timeline_violations(runs)
    if events:
        violations += _node_violations(runs, events)
    if not events and not any(a.tli is not None for a in acks):
        notes.append("no timelines and no events: the single-primary invariant was not checked")
    reports = [_event_report(e, acks, failed) for e in events]
    where = {}
    if final_by_node:
        for i in lost + lost_c:
            where[i] = sorted(n for n, ids in final_by_node.items() if i in ids)
    return Report(len(attempts), len(acks), len(failed), lost, lost_c, unacked,
                  bool(violations), violations, reports, notes, where)


def _event_report(ev, acks, failed):
    before = [a for a in acks if a.t_done <= ev.t]
    old = ev.node if ev.node is not None else (before[-1].host if before else None)
    new = next((a for a in acks if a.t_done > ev.t and a.host != old), None)
    if new is None:
        return EventReport(ev, old, None, None, None, None, None,
                           sum(1 for a in acks if a.t_done > ev.t and a.host == old),
                           sum(1 for a in failed if a.t_done > ev.t))
    prior = [a for a in acks if a.t_done < new.t_done]
    last = prior[-1].t_done if prior else None
    return EventReport(
        ev, old, new.host, new.t_done, new.t_done - ev.t,
        (new.t_done - last) if last is not None else None, last,
        sum(1 for a in acks if a.t_done > ev.t and a.host == old),
        sum(1 for a in failed if ev.t < a.t_done <= new.t_done))


def median_max(values):
    """(median, max) of the non-None values, or (None, None)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.median(vals), max(vals)
