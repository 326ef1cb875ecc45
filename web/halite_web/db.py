"""Two lazily created connection pools (write = primary, read = replicas).

* every connection handed out is checked first (one round trip, like
  ConnectionPool.check_connection) and the check also records which backend
  the connection is attached to; the write pool additionally refuses a
  backend in recovery (a demoted primary), so after a failover the pools heal
  themselves with no restart;
* reads go to the read pool and fall back to the write pool (or the other way
  round inside the read-your-writes window);
* a request whose database path is down waits for it (``DB_WAIT_SECONDS``, 5 s: a
  planned switchover is over by then) and tries again: a write whose transaction failed
  before its COMMIT was sent (nothing was recorded), or an idempotent write whatever
  happened (a purchase: a retry after an unknown COMMIT finds the buyer's own order), and
  any read;
* anything that still means "the database is not reachable right now" is turned into
  DatabaseUnavailable, which the app answers with 503 + Retry-After.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, asdict
from typing import Any, Callable, Iterator, TypeVar

import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout, PoolClosed, TooManyRequests

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors meaning "this backend / path is not usable right now".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,          # refused, timeout, admin shutdown, ...
    psycopg.InterfaceError,            # connection already closed
    psycopg.errors.ReadOnlySqlTransaction,   # we are talking to a demoted primary
    PoolTimeout, PoolClosed, TooManyRequests,
)
# Reads may also fail on a hot standby because of recovery conflicts.
READ_RETRY_ERRORS = UNAVAILABLE_ERRORS + (
    psycopg.errors.SerializationFailure,
    psycopg.errors.QueryCanceled,
)
# After these the connection is suspect: close it so the pool replaces it.
DISCARD_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError,
                  psycopg.errors.ReadOnlySqlTransaction)


class DatabaseUnavailable(Exception):
    """The write (or every read) path is down; answer 503."""

    def __init__(self, path: str, cause: BaseException | str | None = None):
        self.path = path
        self.cause = cause
        super().__init__(f"{path} path unavailable: {cause}")


class NotPrimary(psycopg.OperationalError):
    pass


class CommitOutcomeUnknown(Exception):
    """The connection failed while the COMMIT was on its way: the transaction may or may
    not have been recorded, so a write that is not idempotent is not tried again."""


@dataclass
class Backend:
    host: str | None
    port: int | None
    in_recovery: bool | None
    pool: str | None = None
    fallback: bool = False

    @property
    def address(self) -> str:
        if self.host is None:
            return "local socket"
        return f"{self.host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["address"] = self.address
        return d


class HaliteConnection(psycopg.Connection):
    """A connection that remembers which PostgreSQL server it reached."""
    backend: Backend | None = None


_PROBE = "SELECT host(inet_server_addr()), inet_server_port(), pg_is_in_recovery()"


def _probe(conn: HaliteConnection) -> Backend:
    prev = conn.autocommit
    conn.autocommit = True
    try:
        host, port, rec = conn.execute(_PROBE).fetchone()
    finally:
        if not conn.closed:
            try:
                conn.autocommit = prev
            except psycopg.Error:
                pass
    if host and "/" in host:
        host = host.split("/")[0]
    conn.backend = Backend(host, port, rec)
    return conn.backend


def check_any(conn: HaliteConnection) -> None:
    """Pool check for the read pool: ConnectionPool.check_connection + probe."""
    _probe(conn)


def check_primary(conn: HaliteConnection) -> None:
    """Pool check for the write pool: also reject a backend in recovery."""
    backend = _probe(conn)
    if backend.in_recovery:
        conn.close()          # closed -> the pool discards it and reconnects
        raise NotPrimary(f"backend {backend.address} is in recovery")


#: Each path's check of a connection before use (the pool's and a direct one's alike).
CHECKS = {"write": check_primary, "read": check_any}


class Database:
    def __init__(self, cfg: dict[str, Any]):
        self.write_dsn = cfg.get("WRITE_DSN")
        self.read_dsn = cfg.get("READ_DSN") or self.write_dsn
        self.min_size = int(cfg.get("POOL_MIN_SIZE", 1))
        self.max_size = max(int(cfg.get("POOL_MAX_SIZE", 5)), self.min_size, 1)
        self.timeout = float(cfg.get("POOL_TIMEOUT", 3.0))
        self.connect_timeout = int(cfg.get("CONNECT_TIMEOUT", 3))
        # bounds the pool's exponential reconnection backoff, so that a pool
        # which lost its server reconnects within seconds once it is back
        self.reconnect_timeout = float(cfg.get("POOL_RECONNECT_TIMEOUT", 10.0))
        # a path that failed recently is tried last (and briefly) for reads,
        # so a dead replica port does not add POOL_TIMEOUT to every page
        self.cooldown = float(cfg.get("POOL_COOLDOWN", 5.0))
        # how long one request waits for its path to come back (a switchover) before 503
        self.wait = float(cfg.get("DB_WAIT_SECONDS", 5.0))
        self.retry_interval = float(cfg.get("DB_RETRY_INTERVAL", 0.2))
        self._down_until: dict[str, float] = {}
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.Lock()

    @property
    def split(self) -> bool:
        """True when reads have their own path."""
        return bool(self.read_dsn) and self.read_dsn != self.write_dsn

    def _dsn(self, kind: str) -> str | None:
        return self.write_dsn if kind == "write" or not self.split else self.read_dsn

    def _connect_kwargs(self, key: str) -> dict[str, Any]:
        return {
            "connect_timeout": self.connect_timeout,
            "application_name": f"halite-web-{key}",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            # PgBouncer in transaction mode hands each transaction to
            # any server connection: no server-side prepared statements.
            "prepare_threshold": None,
        }

    def _key(self, kind: str) -> str:
        """The path a ``kind`` of work takes: reads share the write path when there is no read DSN."""
        return "write" if kind == "write" or not self.split else "read"

    def pool(self, kind: str) -> ConnectionPool:
        key = self._key(kind)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        dsn = self._dsn(key)
        if not dsn:
            raise DatabaseUnavailable(key, "no DSN configured")
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = ConnectionPool(
                    dsn,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=self.timeout,
                    name=f"halite-web-{key}",
                    connection_class=HaliteConnection,
                    check=CHECKS[key],
                    kwargs=self._connect_kwargs(key),
                    reconnect_timeout=self.reconnect_timeout,
                    max_idle=300,
                    open=False,
                )
                pool.open(wait=False)
                self._pools[key] = pool
        return pool

    def _mark(self, kind: str, ok: bool) -> None:
        if ok:
            self._down_until.pop(kind, None)
        else:
            self._down_until[kind] = time.monotonic() + self.cooldown

    def is_down(self, kind: str) -> bool:
        return self._down_until.get(kind, 0.0) > time.monotonic()

    @contextmanager
    def _connection(self, kind: str, timeout: float | None = None,
                    direct: bool = False) -> Iterator[HaliteConnection]:
        """A connection of the ``kind`` path: from its pool, or (``direct``, a request's
        second try while the path was down) a new one of its own, checked like the pool's and
        closed afterwards: the pool reconnects in the background with a growing back-off
        (1, 2, 4 s), which a request that waits at most a few seconds cannot sit out."""
        if direct:
            key = self._key(kind)
            dsn = self._dsn(key)
            if not dsn:
                raise DatabaseUnavailable(key, "no DSN configured")
            conn = HaliteConnection.connect(dsn, **self._connect_kwargs(key))
            try:
                CHECKS[key](conn)
                yield conn
            finally:
                conn.close()
            return
        with self.pool(kind).connection(timeout=timeout) as conn:
            try:
                yield conn
            except DISCARD_ERRORS:
                if not conn.closed:
                    conn.close()
                raise

    # -- writes -------------------------------------------------------------
    def _write_once(self, fn: Callable[[psycopg.Cursor], T], timeout: float,
                    direct: bool = False) -> tuple[T, Backend]:
        committing = False
        try:
            with self._connection("write", timeout, direct) as conn:
                with conn.transaction():
                    with conn.cursor(row_factory=dict_row) as cur:
                        result = fn(cur)
                    committing = True  # leaving the block sends the COMMIT
                b = conn.backend or Backend(None, None, None)
        except UNAVAILABLE_ERRORS as exc:
            if committing:
                raise CommitOutcomeUnknown(exc) from exc
            raise
        return result, Backend(b.host, b.port, b.in_recovery, "write")

    def write(self, fn: Callable[[psycopg.Cursor], T], *, idempotent: bool = False) -> tuple[T, Backend]:
        """Run fn(cursor) in one transaction on the primary.

        While the write path is down (a switchover, a failover) the transaction is tried
        again every ``retry_interval`` seconds for up to ``wait`` seconds: when it failed
        before its COMMIT was sent, or whatever happened when ``idempotent`` (running it
        twice records it once). Then DatabaseUnavailable (503).
        """
        deadline = time.monotonic() + self.wait
        attempt = 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            try:
                result, backend = self._write_once(fn, max(0.5, min(self.timeout, left)), direct=attempt > 1)
                self._mark("write", True)
                if attempt > 1:
                    log.info("write succeeded on attempt %d", attempt)
                return result, backend
            except CommitOutcomeUnknown as unknown:
                exc = unknown.__cause__ or unknown
                if not idempotent:
                    self._mark("write", False)
                    log.warning("write path failed during COMMIT (outcome unknown, not retried): %s", exc)
                    raise DatabaseUnavailable("write", exc) from exc
            except UNAVAILABLE_ERRORS as err:
                exc = err
            self._mark("write", False)
            if time.monotonic() + self.retry_interval >= deadline:
                log.warning("write path unavailable after %d attempts: %s", attempt, exc)
                raise DatabaseUnavailable("write", exc) from exc
            time.sleep(self.retry_interval)

    # -- reads --------------------------------------------------------------
    def read(self, fn: Callable[[psycopg.Cursor], T], *,
             prefer_write: bool = False) -> tuple[T, Backend]:
        """Run fn(cursor) in one transaction, read pool first (or write pool
        first inside the read-your-writes window), falling back to the other;
        with both down, again every ``retry_interval`` seconds for up to ``wait``."""
        deadline = time.monotonic() + self.wait
        direct = False
        while True:
            try:
                return self._read_once(fn, prefer_write, direct)
            except DatabaseUnavailable:
                if time.monotonic() + self.retry_interval >= deadline:
                    raise
            time.sleep(self.retry_interval)
            direct = True

    def _read_once(self, fn: Callable[[psycopg.Cursor], T], prefer_write: bool,
                   direct: bool = False) -> tuple[T, Backend]:
        order = ["write", "read"] if prefer_write else ["read", "write"]
        if not self.split:
            order = ["write"]
        first_choice = order[0]
        # paths that failed in the last few seconds go last, with a short wait
        order = ([k for k in order if not self.is_down(k)]
                 + [k for k in order if self.is_down(k)])
        last: BaseException | None = None
        for kind in order:
            timeout = self.timeout if not self.is_down(kind) else min(self.timeout, 0.5)
            try:
                with self._connection(kind, timeout, direct) as conn:
                    with conn.transaction():
                        with conn.cursor(row_factory=dict_row) as cur:
                            result = fn(cur)
                    b = conn.backend or Backend(None, None, None)
                self._mark(kind, True)
                return result, Backend(b.host, b.port, b.in_recovery, kind,
                                       fallback=kind != first_choice)
            except DatabaseUnavailable as exc:
                last = exc
            except READ_RETRY_ERRORS as exc:
                log.warning("read via %s pool failed: %s", kind, exc)
                if isinstance(exc, UNAVAILABLE_ERRORS):
                    self._mark(kind, False)
                last = exc
        raise DatabaseUnavailable("read", last)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            try:
                p.close(timeout=2)
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("closing pool")
