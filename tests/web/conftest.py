"""Fixtures for halite-web: a throwaway PostgreSQL 15 primary (127.0.0.1:55432)
plus a streaming replica (127.0.0.1:55433), migrated and seeded once per session."""
from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
if str(WEB) not in sys.path:
    sys.path.insert(0, str(WEB))

import psycopg  # noqa: E402

PG_BIN = Path(os.environ.get("HALITE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PRIMARY_PORT = 55432
REPLICA_PORT = 55433
SEED_CARS = 300


def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", "postgres", "--") + cmd
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres"


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(dsn: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_cluster():
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {PG_BIN}")
    for port in (PRIMARY_PORT, REPLICA_PORT):
        if _port_busy(port):
            pytest.fail(f"port {port} is already in use (a stale test cluster?)")
    base = Path(tempfile.mkdtemp(prefix="halite-web-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o700)
    sock = base / "sock"
    primary, replica = base / "primary", base / "replica"
    started: list[Path] = []
    try:
        _as_postgres("mkdir", str(sock))
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(primary), "-U", "postgres",
                     "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        with open(primary / "postgresql.conf", "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {PRIMARY_PORT}
unix_socket_directories = '{sock}'
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 5
hot_standby = on
max_connections = 100
shared_buffers = 32MB
cluster_name = 'halite-web-test'
""")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(primary), "-l",
                     str(base / "primary.log"), "-w", "-t", "30", "start")
        started.append(primary)
        _wait_ready(_dsn(PRIMARY_PORT))

        _as_postgres(str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p",
                     str(PRIMARY_PORT), "-U", "postgres", "-D", str(replica), "-R",
                     "-X", "stream", "--checkpoint=fast", "--no-sync")
        with open(replica / "postgresql.auto.conf", "a") as f:
            f.write(f"\nport = {REPLICA_PORT}\nprimary_conninfo = 'host=127.0.0.1 "
                    f"port={PRIMARY_PORT} user=postgres application_name=replica1'\n")
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(replica), "-l",
                     str(base / "replica.log"), "-w", "-t", "30", "start")
        started.append(replica)
        _wait_ready(_dsn(REPLICA_PORT))
        yield {"dsn": _dsn(PRIMARY_PORT), "replica_dsn": _dsn(REPLICA_PORT),
               "base": base, "primary": primary, "replica": replica}
    finally:
        for data in reversed(started):
            # pg_ctl stop finds the postmaster through data/postmaster.pid
            try:
                _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                             "-w", "-t", "30", "stop")
            except subprocess.CalledProcessError as exc:  # pragma: no cover
                print(f"pg_ctl stop {data} failed: {exc.stderr}", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)


def wait_replica_caught_up(cluster, timeout: float = 10) -> None:
    with psycopg.connect(cluster["dsn"], autocommit=True) as p:
        target = p.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with psycopg.connect(cluster["replica_dsn"], autocommit=True) as r:
        while True:
            ok = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                           [str(target)]).fetchone()[0]
            if ok:
                return
            if time.monotonic() > deadline:
                raise AssertionError("replica did not catch up")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def db(pg_cluster):
    """Migrated and seeded database (primary), replica caught up."""
    from halite_web.generator import seed
    from halite_web.migrate import migrate
    applied = migrate(pg_cluster["dsn"], log_fn=lambda *_: None)
    result = seed(pg_cluster["dsn"], SEED_CARS, 42, log_fn=lambda *_: None)
    wait_replica_caught_up(pg_cluster)
    return {**pg_cluster, "applied": applied, "seed": result}


@pytest.fixture
def sql(db):
    """Run a query on the primary: sql("SELECT ...", params) -> list of tuples."""
    conn = psycopg.connect(db["dsn"], autocommit=True)

    def run(query, params=None):
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None
    yield run
    conn.close()


def make_app(db, **overrides):
    from halite_web import create_app
    cfg = {"WRITE_DSN": db["dsn"], "READ_DSN": db["replica_dsn"], "TESTING": True,
           "SECRET_KEY": "test-secret", "POOL_TIMEOUT": 3.0, "POOL_MAX_SIZE": 8,
           "CONNECT_TIMEOUT": 2, "RYW_SECONDS": 5.0}
    cfg.update(overrides)
    return create_app(cfg)


@pytest.fixture(scope="session")
def app(db):
    app = make_app(db)
    yield app
    app.extensions["halite_db"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def app_factory(db):
    """Build extra apps (e.g. with a broken DSN); their pools are closed afterwards."""
    apps = []

    def factory(**overrides):
        a = make_app(db, **overrides)
        apps.append(a)
        return a
    yield factory
    for a in apps:
        a.extensions["halite_db"].close()


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client, url: str) -> str:
    resp = client.get(url)
    assert resp.status_code == 200, resp.status_code
    m = CSRF_RE.search(resp.get_data(as_text=True))
    assert m, "no csrf token in page"
    return m.group(1)


@pytest.fixture
def replica_sync(db):
    """Call to wait until the replica has replayed everything the primary wrote."""
    return lambda: wait_replica_caught_up(db)


@pytest.fixture
def get_csrf():
    """get_csrf(client, url) -> the CSRF token of the form on that page."""
    return csrf


@pytest.fixture
def closed_port():
    """A DSN port with nothing listening (connections are refused)."""
    return free_port()


class _CurrentStderr(logging.Handler):
    """Write to whatever sys.stderr is *now* (pytest swaps it per test)."""

    def emit(self, record):
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover
            pass


@pytest.fixture(scope="session", autouse=True)
def _quiet_pool_logs():
    """Keep the app's and the pool's (expected, noisy) connection warnings out of
    salt's deferred root log handler, which would dump them at interpreter exit;
    they still show in the captured stderr of a failing test."""
    handler = _CurrentStderr(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in ("psycopg.pool", "halite_web"):
        lg = logging.getLogger(name)
        saved.append((lg, lg.propagate))
        lg.propagate = False
        lg.addHandler(handler)
    yield
    for lg, prop in saved:
        lg.removeHandler(handler)
        lg.propagate = prop
