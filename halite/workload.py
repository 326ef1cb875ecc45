"""Failover workload checker: many small writes and reads, and what they prove.

A :class:`Workload` runs ``writers`` threads that each insert uniquely numbered
rows (``id = writer * 10**9 + seq``), one row per autocommit statement, through
the write DSN, and ``readers`` threads that read ``count(*)``/``max(id)``
through the read DSN.  Every acknowledged commit is kept; after the run
:meth:`Workload.analyze` says, with numbers:

* ``lost_writes`` -- acknowledged ids that are not in the table when it is read
  through ``verify_dsn`` (the new primary) afterwards;
* ``write_unavailable_s`` / ``read_unavailable_s`` -- the longest time without a
  successful write (read) around the fault (precise definition in
  :func:`longest_gap` and :meth:`Workload.analyze`);
* ``dual_primary`` -- whether two primaries acknowledged writes interleaved in
  time (see :func:`detect_dual_primary`);
* a per-0.1 s ``timeline`` of successful writes and reads, for plotting
  (``halite.report`` draws it).

Everything is bounded: each thread checks a stop :class:`threading.Event` on
every loop, every statement has a server-side ``statement_timeout`` and the
connections use TCP keepalives, the run stops by itself after ``max_seconds``,
and the records kept are capped at ``max_records``.  Only the DSNs given are
contacted.

Example::

    wl = Workload("host=10.0.0.10 port=5000 user=app dbname=app",
                  "host=10.0.0.10 port=5001 user=app dbname=app")
    wl.setup(truncate=True)
    wl.start(); time.sleep(5)
    t_fault = wl.mark_fault(); kill_the_primary(); time.sleep(20)
    wl.stop()
    res = wl.analyze(verify_dsn="host=10.0.0.10 port=5000 user=app dbname=app")

All times are ``time.monotonic()`` seconds unless named ``wall`` (epoch seconds).
"""
from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

import psycopg
from psycopg import sql

from halite import formats

ID_STRIDE = 10**9
BUCKET_S = 0.1
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Ack(NamedTuple):
    """One acknowledged commit (the INSERT returned successfully)."""

    id: int
    writer: int
    t: float  # monotonic time the acknowledgement was received
    wall: float  # wall clock (epoch seconds) at the same moment
    server: str | None  # server identity (host(inet_server_addr()) by default)
    timeline: int | None  # the primary's current WAL timeline at commit
    t_sent: float  # monotonic time the statement was sent


class Unknown(NamedTuple):
    """A write whose outcome is unknown: the connection broke after it was sent."""

    id: int
    writer: int
    t_sent: float
    t: float
    wall: float
    error: str


class Failure(NamedTuple):
    """A failed attempt (connect or statement) of a writer or a reader."""

    worker: int
    t: float
    wall: float
    kind: str  # "connect", "write", "read"
    error: str


class Read(NamedTuple):
    """One successful read."""

    reader: int
    t: float
    wall: float
    server: str | None
    count: int
    max_id: int | None
    in_recovery: bool


@dataclass
class _Worker:
    thread: threading.Thread
    index: int


def _close_quietly(conn: "psycopg.Connection | None") -> None:
    """Close a connection that may already be broken; a failover breaks many."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close
        pass


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:200]


def _timeline_of(walfile: str | None) -> int | None:
    if not walfile or len(walfile) < 8:
        return None
    try:
        return int(walfile[:8], 16)
    except ValueError:
        return None


def _ambiguous(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    """True when a statement that was sent may or may not have committed.

    A clean error reported by a server that keeps the session (a SQLSTATE
    outside classes 08 "connection exception" and 57P "operator intervention:
    shutdown") means the statement was rolled back.  (A statement timeout
    while a commit waits for a synchronous standby does not raise: the server
    commits locally with a WARNING, so such a write counts as acknowledged --
    and shows up in ``lost_writes`` if the failover then loses it.)  Anything else -- the
    connection broke, the server was shut down or crashed while the statement
    (and so its commit) was in progress -- leaves the outcome unknown.
    """
    state = getattr(exc, "sqlstate", None)
    if conn is None or conn.closed or conn.broken:
        return True
    if not state:
        return True
    return state.startswith("08") or state.startswith("57P")


# --------------------------------------------------------------------------
# pure analysis functions (unit-tested on synthetic data)
# --------------------------------------------------------------------------


def longest_gap(
    times: Iterable[float], start: float | None = None, end: float | None = None
) -> tuple[float, float, float]:
    """The longest interval without an event, as ``(length, gap_start, gap_end)``.

    ``times`` are event times (any order).  The sequence examined is
    ``[start] + sorted(t for t in times if start < t <= end) + [end]``;
    ``start`` defaults to the first event and ``end`` to the last one, so with
    both omitted this is the largest difference between consecutive events.
    With no event in the window the whole window is the gap.  An empty window
    (no events, no bounds) gives ``(0.0, nan, nan)``.
    """
    ts = sorted(times)
    if start is None:
        if not ts:
            if end is None:
                return (0.0, float("nan"), float("nan"))
            start = end
        else:
            start = ts[0]
    if end is None:
        end = ts[-1] if ts else start
    seq = [start] + [t for t in ts if start < t <= end] + ([end] if end > start else [])
    best = (0.0, start, start)
    for a, b in zip(seq, seq[1:]):
        if b - a > best[0]:
            best = (b - a, a, b)
    return best


def detect_dual_primary(acks: Sequence[Any], limit: int = 10) -> dict:
    """Find acknowledgements proving two primaries accepted writes at once.

    ``acks`` are :class:`Ack` records (or objects/tuples with ``t``,
    ``server`` and optionally ``timeline`` and ``t_sent``).  They are walked
    in order of ``t``.  An *epoch* is a ``(server, timeline)`` pair (just the
    server when the timeline is unknown).  When an epoch acknowledges its
    first write, every epoch seen before it is *retired*: the primary moved.
    Evidence of a dual primary is then either

    * an ack from a retired epoch after the first ack of a newer one
      (``kind="interleave"``): the old primary A still acknowledged a write
      after server B had acknowledged one.  ``certain`` is true when that
      statement was even *sent* after B's first ack, so A's commit happened
      strictly after B accepted writes; otherwise the two commits may merely
      have overlapped in flight (still reported: none is allowed);
    * an ack on a lower timeline than one already acknowledged
      (``kind="timeline"``): timelines only go up, so a write on the older
      timeline after one on the newer means the old primary was still
      accepting writes.

    Returns ``{"dual_primary": bool, "count": n, "evidence": [... first
    ``limit`` ...]}``; times in the evidence are the ones given.
    """
    def get(a: Any, name: str, idx: int) -> Any:
        if hasattr(a, name):
            return getattr(a, name)
        if isinstance(a, dict):
            return a.get(name)
        return a[idx] if idx < len(a) else None

    norm = []
    for a in acks:
        t = get(a, "t", 2)
        server = get(a, "server", 4)
        tl = get(a, "timeline", 5)
        sent = get(a, "t_sent", 6)
        norm.append((t, server, tl, t if sent is None else sent, get(a, "id", 0)))
    norm.sort(key=lambda x: x[0])

    first_ack: dict[tuple, float] = {}
    order: list[tuple] = []  # epochs by first ack
    retired_at: dict[tuple, tuple[tuple, float]] = {}  # epoch -> (successor, its first ack)
    max_tl: tuple[int, float, Any] | None = None
    evidence: list[dict] = []
    count = 0
    for t, server, tl, sent, ident in norm:
        epoch = (server, tl)
        if epoch not in first_ack:
            first_ack[epoch] = t
            for old in order:
                retired_at.setdefault(old, (epoch, t))
            order.append(epoch)
        elif epoch in retired_at:
            succ, succ_t = retired_at[epoch]
            count += 1
            if len(evidence) < limit:
                evidence.append({
                    "kind": "interleave", "id": ident,
                    "old_server": server, "old_timeline": tl, "ack_t": t, "sent_t": sent,
                    "new_server": succ[0], "new_timeline": succ[1], "new_first_ack_t": succ_t,
                    "certain": sent > succ_t,
                })
            continue
        if tl is not None:
            if max_tl is not None and tl < max_tl[0]:
                count += 1
                if len(evidence) < limit:
                    evidence.append({
                        "kind": "timeline", "id": ident, "server": server, "timeline": tl,
                        "ack_t": t, "newer_timeline": max_tl[0], "newer_first_ack_t": max_tl[1],
                        "newer_server": max_tl[2], "certain": sent > max_tl[1],
                    })
            elif max_tl is None or tl > max_tl[0]:
                max_tl = (tl, t, server)
    return {"dual_primary": count > 0, "count": count, "evidence": evidence}


def servers_seen(acks: Sequence[Any], ref: float = 0.0) -> list[tuple[str | None, float, float]]:
    """``[(server, first_ack, last_ack), ...]`` ordered by first ack, times minus ``ref``."""
    first: dict[Any, float] = {}
    last: dict[Any, float] = {}
    for a in acks:
        s, t = a.server, a.t
        if s not in first or t < first[s]:
            first[s] = t
        if s not in last or t > last[s]:
            last[s] = t
    return [(s, round(first[s] - ref, 4), round(last[s] - ref, 4))
            for s in sorted(first, key=first.__getitem__)]


def bucketize(times: Iterable[float], start: float, end: float, ref: float,
              bucket_s: float = BUCKET_S) -> tuple[list[float], list[int]]:
    """Count ``times`` in ``bucket_s`` buckets covering ``[start, end)``.

    Returns ``(t, counts)`` where ``t[i]`` is the start of bucket ``i`` in
    seconds relative to ``ref`` (so with ``ref`` = fault time: seconds since
    the fault, negative before it).
    """
    n = max(0, int((end - start) / bucket_s + 0.999999))
    counts = [0] * n
    for x in times:
        i = int((x - start) / bucket_s)
        if 0 <= i < n:
            counts[i] += 1
    return [round(start - ref + i * bucket_s, 4) for i in range(n)], counts


# --------------------------------------------------------------------------
# the workload
# --------------------------------------------------------------------------


class Workload:
    """Writers and readers against a (possibly failing over) PostgreSQL service.

    ``write_dsn``/``read_dsn``: libpq connection strings or URIs.  Only these
    two (and ``verify_dsn`` given to :meth:`analyze`) are ever contacted.
    ``server_expr`` is the SQL expression that names the server which answered
    (default ``host(inet_server_addr())``; NULL over a Unix socket).  The
    ``timeline`` of each write is the primary's *current* WAL timeline
    (from ``pg_walfile_name(pg_current_wal_lsn())``, exact on a primary,
    unlike ``pg_control_checkpoint()`` which lags until the next checkpoint).
    """

    def __init__(
        self,
        write_dsn: str,
        read_dsn: str | None = None,
        writers: int = 4,
        readers: int = 2,
        table: str = "halite_probe",
        connect_timeout: int = 2,
        statement_timeout_ms: int = 3000,
        max_seconds: float = 300.0,
        max_records: int = 2_000_000,
        backoff_s: tuple[float, float] = (0.1, 0.2),
        read_interval_s: float = 0.0,
        server_expr: str = "host(inet_server_addr())",
        application_name: str = "halite-workload",
    ) -> None:
        if not _IDENT.match(table):
            raise ValueError(f"table must be a plain identifier, not {table!r}")
        if not (0 <= writers <= 64 and 0 <= readers <= 64):
            raise ValueError("writers and readers must be between 0 and 64")
        self.write_dsn = write_dsn
        self.read_dsn = read_dsn or write_dsn
        self.writers = writers
        self.readers = readers
        self.table = table
        self.connect_timeout = max(1, int(connect_timeout))
        self.statement_timeout_ms = int(statement_timeout_ms)
        self.max_seconds = float(max_seconds)
        self.max_records = int(max_records)
        self.backoff_s = backoff_s
        self.read_interval_s = read_interval_s
        self.server_expr = server_expr
        self.application_name = application_name

        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[_Worker] = []
        self._seq_base: dict[int, int] = {}
        self.acks: list[Ack] = []
        self.unknown: list[Unknown] = []
        self.failures: list[Failure] = []
        self.reads: list[Read] = []
        self.attempts = 0
        self.truncated = False  # record cap reached: the run was cut short
        self.t_start: float | None = None
        self.wall_start: float | None = None
        self.t_stop: float | None = None
        self.t_fault: float | None = None
        self._deadline = 0.0

    # ---- connections ----------------------------------------------------
    def _connect(self, dsn: str) -> psycopg.Connection:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=self.connect_timeout,
            application_name=self.application_name,
            keepalives=1,
            keepalives_idle=1,
            keepalives_interval=1,
            keepalives_count=2,
            tcp_user_timeout=max(1000, self.statement_timeout_ms),
            prepare_threshold=None,  # no server-side prepared statements (PgBouncer)
        )
        try:
            # SET rather than the "options" startup parameter: PgBouncer refuses that one.
            conn.execute(sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(self.statement_timeout_ms)))
        except Exception:
            conn.close()
            raise
        return conn

    def setup(self, truncate: bool = False) -> None:
        """Create the probe table if missing (through the write DSN); optionally empty it.

        Without ``truncate``, each writer continues after the highest ``seq``
        it already has in the table, so ids stay unique across runs.
        """
        t = sql.Identifier(self.table)
        with self._connect(self.write_dsn) as conn:
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, writer int NOT NULL, "
                "seq int NOT NULL, server inet, ts timestamptz DEFAULT clock_timestamp())"
            ).format(t))
            if truncate:
                conn.execute(sql.SQL("TRUNCATE {}").format(t))
                self._seq_base = {}
            else:
                rows = conn.execute(sql.SQL(
                    "SELECT writer, max(seq) FROM {} GROUP BY writer").format(t)).fetchall()
                self._seq_base = {int(w): int(s) for w, s in rows}

    # ---- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Start the writer and reader threads (daemon threads)."""
        if self._threads:
            raise RuntimeError("workload already started")
        self._stop.clear()
        self.t_start = time.monotonic()
        self.wall_start = time.time()
        self._deadline = self.t_start + self.max_seconds
        for w in range(self.writers):
            th = threading.Thread(target=self._writer, args=(w,), name=f"halite-writer-{w}",
                                  daemon=True)
            self._threads.append(_Worker(th, w))
        for r in range(self.readers):
            th = threading.Thread(target=self._reader, args=(r,), name=f"halite-reader-{r}",
                                  daemon=True)
            self._threads.append(_Worker(th, r))
        for w in self._threads:
            w.thread.start()

    def mark_fault(self, t: float | None = None) -> float:
        """Remember the fault time (now by default) for :meth:`analyze`; returns it."""
        self.t_fault = time.monotonic() if t is None else t
        return self.t_fault

    def running(self) -> bool:
        return any(w.thread.is_alive() for w in self._threads)

    def stop(self, timeout: float | None = None) -> None:
        """Signal the threads to stop and wait for them (bounded)."""
        if self.t_start is None:
            return
        if self.t_stop is None:
            self.t_stop = min(time.monotonic(), self._deadline)
        self._stop.set()
        wait = timeout if timeout is not None else (
            self.connect_timeout + self.statement_timeout_ms / 1000 + 3)
        end = time.monotonic() + wait
        for w in self._threads:
            w.thread.join(max(0.0, end - time.monotonic()))

    def __enter__(self) -> "Workload":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _should_run(self) -> bool:
        if self._stop.is_set():
            return False
        if time.monotonic() >= self._deadline:
            with self._lock:
                if self.t_stop is None:
                    self.t_stop = self._deadline
            self._stop.set()
            return False
        return True

    def _record(self, lst: list, item: Any) -> None:
        with self._lock:
            if len(lst) >= self.max_records:
                self.truncated = True
                self._stop.set()
                return
            lst.append(item)

    def _backoff(self) -> None:
        lo, hi = self.backoff_s
        self._stop.wait(random.uniform(lo, hi))

    # ---- threads -------------------------------------------------------------
    def _writer(self, w: int) -> None:
        insert = sql.SQL(
            "INSERT INTO {} (id, writer, seq, server) VALUES (%s, %s, %s, inet_server_addr()) "
            "RETURNING {}, pg_walfile_name(pg_current_wal_lsn())"
        ).format(sql.Identifier(self.table), sql.SQL(self.server_expr))
        seq = self._seq_base.get(w, 0)
        conn: psycopg.Connection | None = None
        try:
            while self._should_run():
                if conn is None:
                    try:
                        conn = self._connect(self.write_dsn)
                    except Exception as e:
                        self._record(self.failures, Failure(w, time.monotonic(), time.time(),
                                                            "connect", _short(e)))
                        self._backoff()
                        continue
                seq += 1
                if seq >= ID_STRIDE:
                    break
                ident = w * ID_STRIDE + seq
                t_sent = time.monotonic()
                with self._lock:
                    self.attempts += 1
                try:
                    row = conn.execute(insert, (ident, w, seq)).fetchone()
                except Exception as e:
                    now, wall = time.monotonic(), time.time()
                    if _ambiguous(e, conn):
                        self._record(self.unknown, Unknown(ident, w, t_sent, now, wall, _short(e)))
                    self._record(self.failures, Failure(w, now, wall, "write", _short(e)))
                    _close_quietly(conn)
                    conn = None
                    self._backoff()
                    continue
                now, wall = time.monotonic(), time.time()
                server, walfile = (row or (None, None))[:2]
                self._record(self.acks, Ack(ident, w, now, wall,
                                            None if server is None else str(server),
                                            _timeline_of(walfile), t_sent))
        finally:
            _close_quietly(conn)

    def _reader(self, r: int) -> None:
        query = sql.SQL(
            "SELECT count(*), max(id), {}, pg_is_in_recovery() FROM {}"
        ).format(sql.SQL(self.server_expr), sql.Identifier(self.table))
        conn: psycopg.Connection | None = None
        try:
            while self._should_run():
                if conn is None:
                    try:
                        conn = self._connect(self.read_dsn)
                    except Exception as e:
                        self._record(self.failures, Failure(self.writers + r, time.monotonic(),
                                                            time.time(), "connect", _short(e)))
                        self._backoff()
                        continue
                try:
                    cnt, mx, server, rec = conn.execute(query).fetchone()
                except Exception as e:
                    self._record(self.failures, Failure(self.writers + r, time.monotonic(),
                                                        time.time(), "read", _short(e)))
                    _close_quietly(conn)
                    conn = None
                    self._backoff()
                    continue
                self._record(self.reads, Read(r, time.monotonic(), time.time(),
                                              None if server is None else str(server),
                                              int(cnt), mx, bool(rec)))
                if self.read_interval_s:
                    self._stop.wait(self.read_interval_s)
        finally:
            _close_quietly(conn)

    # ---- results -------------------------------------------------------------
    def _to_mono(self, t: float) -> float:
        """Accept a monotonic time, or a wall-clock epoch time (> 1e9) and convert it."""
        if t > 1e9 and self.wall_start is not None and self.t_start is not None:
            return self.t_start + (t - self.wall_start)
        return t

    def _verify(self, dsn: str, ids: list[int], timeout_s: float) -> tuple[set[int], str | None]:
        """Which of ``ids`` exist in the table, read through ``dsn`` (retries connecting)."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while True:
            try:
                found: set[int] = set()
                with self._connect(dsn) as conn:
                    conn.execute("SET statement_timeout = 60000")
                    server = conn.execute(sql.SQL("SELECT {}").format(
                        sql.SQL(self.server_expr))).fetchone()[0]
                    q = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(
                        sql.Identifier(self.table))
                    for i in range(0, len(ids), 20000):
                        chunk = ids[i:i + 20000]
                        found.update(r[0] for r in conn.execute(q, (chunk,)))
                return found, None if server is None else str(server)
            except Exception as e:  # the new primary may still be coming up
                last = e
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"cannot verify through {formats.without_password(dsn)!r}: {_short(last)}") from e
                time.sleep(0.5)

    def results(self) -> dict:
        """A snapshot of the raw records (lists of named tuples) and counters."""
        with self._lock:
            return {
                "acks": list(self.acks), "unknown": list(self.unknown),
                "failures": list(self.failures), "reads": list(self.reads),
                "attempts": self.attempts, "truncated": self.truncated,
                "t_start": self.t_start, "t_stop": self.t_stop, "wall_start": self.wall_start,
            }

    def analyze(
        self,
        fault_time: float | None = None,
        verify_dsn: str | None = None,
        window_s: float | None = None,
        verify: bool = True,
        verify_timeout_s: float = 30.0,
        max_listed: int = 20,
    ) -> dict:
        """What the run proves.  Stops the workload first if it still runs.

        ``fault_time``: when the fault was injected -- a ``time.monotonic()``
        value, or a wall-clock epoch time (any value > 1e9 is taken as one).
        Defaults to :meth:`mark_fault`'s time, else no fault.  Reported times
        (``servers_seen``, gaps, ``timeline``) are seconds relative to the fault,
        or to the run start without one.

        ``write_unavailable_s``: with a fault at F, the longest interval in
        ``[p] + [ack times in (F, E]] + [E]`` between consecutive entries, where
        the ack times are those of all writers merged, ``p`` is the last ack at
        or before F (F itself if there is none), and ``E`` is the end of the
        window, ``min(stop time, F + window_s)`` (``window_s`` None = up to
        the stop time).  So it is the longest
        stretch, overlapping the time after the fault, in which no writer had
        a commit acknowledged; when writes never came back it runs to ``E``.
        Without a fault: the longest gap between consecutive acks over the
        whole run, plus the tail from the last ack to the stop time (from the
        run start if there were none).  ``read_unavailable_s`` is the same over
        successful reads.

        ``lost_writes``: acknowledged ids not found when the table is read via
        ``verify_dsn`` (default: the write DSN) -- first ``max_listed`` of them
        in ``lost_ids``.  Writes with an unknown outcome are not counted as
        acknowledged; ``unknown_committed`` says how many of them are there.
        """
        if self.t_start is None:
            raise RuntimeError("the workload was never started")
        if self._threads and (self.running() or not self._stop.is_set()):
            self.stop()
        snap = self.results()
        acks: list[Ack] = snap["acks"]
        reads: list[Read] = snap["reads"]
        t_start = self.t_start
        t_stop = self.t_stop if self.t_stop is not None else time.monotonic()
        fault = fault_time if fault_time is not None else self.t_fault
        fault = None if fault is None else self._to_mono(fault)
        ref = fault if fault is not None else t_start

        def unavailability(times: list[float]) -> tuple[float, float, float]:
            if fault is None:
                if not times:
                    return (t_stop - t_start, t_start, t_stop)
                return longest_gap(times, None, t_stop)
            end = t_stop if window_s is None else min(t_stop, fault + window_s)
            before = [t for t in times if t <= fault]
            p = max(before) if before else fault
            return longest_gap([t for t in times if t > fault], p, max(end, p))

        w_times = [a.t for a in acks]
        r_times = [r.t for r in reads]
        wg = unavailability(w_times)
        rg = unavailability(r_times)
        dual = detect_dual_primary(acks)
        for ev in dual["evidence"]:
            for k in ("ack_t", "sent_t", "new_first_ack_t", "newer_first_ack_t"):
                if ev.get(k) is not None:
                    ev[k] = round(ev[k] - ref, 4)

        lost_ids: list[int] = []
        lost = None
        unknown_committed = None
        verify_server = None
        if verify:
            ids = sorted({a.id for a in acks} | {u.id for u in snap["unknown"]})
            found, verify_server = self._verify(verify_dsn or self.write_dsn, ids,
                                                verify_timeout_s)
            missing = sorted(a.id for a in acks if a.id not in found)
            lost = len(missing)
            lost_ids = missing[:max_listed]
            unknown_committed = sum(1 for u in snap["unknown"] if u.id in found)

        lo = min(t_start, fault) if fault is not None else t_start
        bt, wcounts = bucketize(w_times, lo, t_stop, ref)
        _, rcounts = bucketize(r_times, lo, t_stop, ref)
        fails = snap["failures"]
        kinds = Counter(f.kind for f in fails)
        r3 = lambda x: round(x, 4)  # noqa: E731
        return {
            "acked_writes": len(acks),
            "lost_writes": lost,
            "lost_ids": lost_ids,
            "write_unavailable_s": r3(wg[0]),
            "write_gap": [r3(wg[1] - ref), r3(wg[2] - ref)],
            "read_unavailable_s": r3(rg[0]),
            "read_gap": [r3(rg[1] - ref), r3(rg[2] - ref)],
            "dual_primary": dual["dual_primary"],
            "dual_primary_evidence": dual["evidence"],
            "dual_primary_count": dual["count"],
            "servers_seen": servers_seen(acks, ref),
            "timelines_seen": sorted({a.timeline for a in acks if a.timeline is not None}),
            "read_servers_seen": servers_seen(reads, ref),
            "unknown_outcome": len(snap["unknown"]),
            "unknown_committed": unknown_committed,
            "write_attempts": snap["attempts"],
            "write_errors": kinds.get("write", 0),
            "connect_errors": kinds.get("connect", 0),
            "successful_reads": len(reads),
            "read_errors": kinds.get("read", 0),
            "first_errors": [f"{r3(f.t - ref)}s {f.kind}#{f.worker}: {f.error}"
                             for f in fails[:max_listed]],
            "verify_server": verify_server,
            "fault_at_s": None if fault is None else r3(fault - t_start),
            "run_s": r3(t_stop - t_start),
            "truncated": snap["truncated"],
            "writers": self.writers,
            "readers": self.readers,
            "timeline": {"bucket_s": BUCKET_S, "t": bt, "writes": wcounts, "reads": rcounts},
        }
