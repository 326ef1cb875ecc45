"""A throwaway PostgreSQL 15 on 127.0.0.1:55434 for the workload tests."""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("HALITE_PG_BIN", "/usr/lib/postgresql/15/bin"))
def _pick_port(preferred: int) -> int:
    """``preferred`` if it is free, else one the kernel picks (parallel runs must not collide)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _pick_port(55434)


def _as_postgres(argv: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    kw.setdefault("timeout", 60)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


class PgCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = PORT
        self.dsn = f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres"

    def _ctl(self, *args: str) -> None:
        r = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args])
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {r.stdout}{r.stderr}"
                               f"\n--- log ---\n{self.log.read_text() if self.log.exists() else ''}")

    def start(self) -> None:
        self._ctl("-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        r = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"])
        return r.returncode == 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def pg():
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {PG_BIN}")
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no postgres user to run the server as")
    if not _port_free(PORT):
        pytest.fail(f"port {PORT} on 127.0.0.1 is already in use")
    # /tmp, not $TMPDIR: the postgres user must reach the data and socket directories
    root = Path(tempfile.mkdtemp(prefix="halite-wl-pg-", dir=os.environ.get("HALITE_PG_TMP", "/tmp")))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    cluster = PgCluster(root)
    try:
        r = _as_postgres([str(PG_BIN / "initdb"), "-D", str(cluster.data), "-A", "trust",
                          "-U", "postgres", "--no-sync", "-E", "UTF8"])
        assert r.returncode == 0, r.stdout + r.stderr
        with open(cluster.data / "postgresql.conf", "a") as f:
            f.write(f"\nport = {PORT}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{root}'\nmax_connections = 50\n"
                    "shared_buffers = 32MB\n")
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            try:
                cluster.stop("fast")
            except Exception:
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ensure_up(pg):
    """The server is running before and after the test, whatever the test did."""
    if not pg.running():
        pg.start()
    yield pg
    if not pg.running():
        pg.start()

