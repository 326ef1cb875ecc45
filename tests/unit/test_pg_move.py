"""pg_move against two real, throwaway PostgreSQL 15 servers (no lab).

The source (127.0.0.1:55441, wal_level=logical) holds the car market's schema
and 200 seeded cars; the target (127.0.0.1:55442) holds the schema only, both
made by ``python -m halite_web migrate``. The module's functions are called
directly: it runs psql itself, so it needs no Salt loader.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from salt.exceptions import CommandExecutionError

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("HALITE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SOURCE_PORT, TARGET_PORT = 55441, 55442
ROLE = "carsale"
CARS = 200
#: the migration tool's bookkeeping, which ``migrate`` filled on the target too
EXPENDABLE = ["public.schema_migrations"]

psycopg = pytest.importorskip("psycopg")
import pg_move  # noqa: E402  (tests/unit/conftest.py puts _modules on sys.path)


def dsn(port: int, user: str = "postgres", db: str = "carsale") -> str:
    return f"host=127.0.0.1 port={port} dbname={db} user={user}"


SOURCE, TARGET = dsn(SOURCE_PORT), dsn(TARGET_PORT)


def as_postgres(*cmd: str) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", "postgres", "--") + cmd
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def sql(port: int, query: str, params=None, user: str = "postgres", db: str = "carsale"):
    """Run one statement with autocommit; rows, or None for statements without a result."""
    with psycopg.connect(dsn(port, user, db), autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


def halite_web(*args: str, port: int) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO / "web"), HALITE_WEB_WRITE_DSN=dsn(port, ROLE))
    res = subprocess.run([sys.executable, "-m", "halite_web", *args], env=env, capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def start_server(base: Path, name: str, port: int, extra: str) -> Path:
    data = base / name
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync")
    with open(data / "postgresql.conf", "a") as fh:
        fh.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{base}'\n"
                 f"fsync = off\nfull_page_writes = off\nmax_connections = 50\nshared_buffers = 32MB\n{extra}\n")
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / f"{name}.log"), "-w", "-t", "30", "start")
    return data


@pytest.fixture(scope="module")
def servers():
    if not (PG_BIN / "initdb").exists() or shutil.which("psql") is None:
        pytest.skip(f"PostgreSQL 15 server binaries ({PG_BIN}) or psql not found")
    for port in (SOURCE_PORT, TARGET_PORT):
        if port_busy(port):
            pytest.fail(f"port {port} is already in use (a stale test server?)")
    base = Path(tempfile.mkdtemp(prefix="halite-pg-move-", dir="/tmp"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o700)
    started = []
    try:
        started.append(start_server(base, "source", SOURCE_PORT,
                                    "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10"))
        started.append(start_server(base, "target", TARGET_PORT, "max_logical_replication_workers = 4"))
        for port in (SOURCE_PORT, TARGET_PORT):
            sql(port, f"CREATE ROLE {ROLE} LOGIN", db="postgres")
            sql(port, f"CREATE DATABASE carsale OWNER {ROLE}", db="postgres")
            halite_web("migrate", port=port)
        halite_web("seed", "--cars", str(CARS), "--seed", "7", port=SOURCE_PORT)
        yield base
    finally:
        for data in reversed(started):
            subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
                           + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


class Writer(threading.Thread):
    """The application, writing to the source as its role until writes are refused."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.written, self.refused, self.stop = port, 0, None, threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                with psycopg.connect(dsn(self.port, ROLE), autocommit=True, connect_timeout=3) as conn:
                    while not self.stop.is_set():
                        i += 1
                        conn.execute("INSERT INTO makes (name, country) VALUES (%s, 'Testland')", [f"writer-{i}"])
                        self.written += 1
                        time.sleep(0.01)
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                self.refused = str(exc)
                return
            except psycopg.OperationalError:
                time.sleep(0.05)  # our session was ended by the freeze: reconnect


SITE_CHECK = REPO / "salt/web/files/site_check.py"


def site_check(*args: str) -> subprocess.CompletedProcess:
    """salt/web/files/site_check.py (the web.switch guard and the web.check gate), as the app on the source."""
    env = dict(os.environ, LEGACY_DSN=dsn(SOURCE_PORT, ROLE))
    return subprocess.run([sys.executable, str(SITE_CHECK), *args], env=env, capture_output=True, text=True, timeout=60)


class FakeSite(threading.Thread):
    """/api/status and /healthz of a site whose primary is ``primary``."""

    def __init__(self, primary: dict):
        import http.server

        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = {"primary": site.primary, "errors": []} if self.path == "/api/status" else {"status": "ok"}
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        super().__init__(daemon=True)
        self.primary = primary
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def run(self):
        self.server.serve_forever()


def subscriptions(port: int) -> list:
    return sql(port, "SELECT subname FROM pg_subscription")


def slots(port: int) -> list:
    return sql(port, "SELECT slot_name FROM pg_replication_slots")


def test_password_goes_to_the_environment_not_the_command_line():
    conn, password = pg_move._split_password("host=10.77.1.20 port=5433 user=mover password='it\\'s a \\\\ pass' dbname=carsale")
    assert conn == "host=10.77.1.20 port=5433 user=mover dbname=carsale"
    assert password == "it's a \\ pass"
    assert pg_move._split_password("postgresql://u:p@h/db") == ("postgresql://u:p@h/db", None)


def test_start_needs_the_schema_on_the_target(servers):
    sql(SOURCE_PORT, "CREATE TABLE only_here (id int PRIMARY KEY)")
    try:
        with pytest.raises(CommandExecutionError, match=r"target server .* lacks public.only_here"):
            pg_move.start(SOURCE, TARGET)
    finally:
        sql(SOURCE_PORT, "DROP TABLE only_here")
    assert subscriptions(TARGET_PORT) == []


def test_compare_names_the_differing_tables(servers):
    cmp = pg_move.compare(SOURCE, TARGET)
    assert not cmp["identical"]
    assert cmp["tables"]["public.cars"]["source"]["rows"] == CARS
    assert cmp["tables"]["public.cars"]["target"]["rows"] == 0
    assert any(d.startswith("public.cars: 200 rows on the source, 0 on the target") for d in cmp["differences"])


def test_checksums_are_the_numbers_compare_uses(servers):
    every = pg_move.checksums(SOURCE)
    assert every == {t: v["source"] for t, v in pg_move.compare(SOURCE, TARGET)["tables"].items()}
    assert every["public.cars"]["rows"] == CARS and len(every["public.cars"]["md5"]) == 32
    # named tables only, schema-qualified or bare (public)
    assert pg_move.checksums(SOURCE, tables=["public.cars", "makes"]) == {
        "public.cars": every["public.cars"], "public.makes": every["public.makes"]}
    assert pg_move.checksums(SOURCE, tables="cars") == {"public.cars": every["public.cars"]}
    # the target holds the schema only: same tables, no rows
    assert pg_move.checksums(TARGET, tables=["cars"])["public.cars"]["rows"] == 0


def test_checksums_of_an_unknown_table_names_the_known_ones(servers):
    with pytest.raises(CommandExecutionError, match=r"pg_move checksums: no table public.nope in the database; "
                                                    r"its tables are .*public.cars"):
        pg_move.checksums(SOURCE, tables=["public.nope"])


def test_failed_check_unfreezes_the_source_and_drops_the_subscription(servers, monkeypatch):
    real = pg_move.wait_caught_up

    def caught_up_then_lose_a_row(*args, **kwargs):
        out = real(*args, **kwargs)
        sql(TARGET_PORT, "DELETE FROM cars WHERE id = (SELECT max(id) FROM cars WHERE id NOT IN (SELECT car_id FROM orders))")
        return out

    monkeypatch.setattr(pg_move, "wait_caught_up", caught_up_then_lose_a_row)
    with pytest.raises(CommandExecutionError) as info:
        pg_move.move(SOURCE, TARGET, role=ROLE, sync_timeout=60, catchup_timeout=30, expendable=EXPENDABLE)
    msg = str(info.value)
    assert "failed at compare" in msg and "public.cars: 200 rows on the source, 199 on the target" in msg, msg
    assert "role carsale unfrozen" in msg and "subscription halite_move dropped" in msg, msg
    # the partial copy is gone: the next move starts from empty tables
    assert "the partial copy on the target emptied" in msg, msg
    assert sql(TARGET_PORT, "SELECT count(*) FROM cars")[0][0] == 0
    # the application writes to the source again; nothing is left replicating
    assert pg_move.frozen(SOURCE, ROLE)["read_only"] is False
    sql(SOURCE_PORT, "INSERT INTO makes (name) VALUES ('after-failed-move')", user=ROLE)
    assert subscriptions(TARGET_PORT) == []
    assert slots(SOURCE_PORT) == []


def test_start_refuses_a_target_that_holds_rows(servers):
    sql(TARGET_PORT, "INSERT INTO makes (name, country) VALUES ('only-on-the-target', 'Testland')")
    migrations = sql(TARGET_PORT, "SELECT count(*) FROM schema_migrations")[0][0]
    assert migrations >= 1
    try:
        with pytest.raises(CommandExecutionError, match=r"already holds rows in public.makes \(1 row\): .*"
                                                        r"nothing was changed.*overwrite=True") as info:
            pg_move.start(SOURCE, TARGET, expendable=EXPENDABLE)
        assert "schema_migrations" not in str(info.value)
        # without the bookkeeping named expendable, it is named too, with its count
        with pytest.raises(CommandExecutionError,
                           match=rf"public.makes \(1 row\), public.schema_migrations \({migrations} rows\)"):
            pg_move.start(SOURCE, TARGET)
        # nothing changed on the target
        assert subscriptions(TARGET_PORT) == []
        assert sql(TARGET_PORT, "SELECT count(*) FROM schema_migrations")[0][0] == migrations
        assert sql(TARGET_PORT, "SELECT name FROM makes") == [("only-on-the-target",)]
    finally:
        sql(TARGET_PORT, "DELETE FROM makes WHERE name = 'only-on-the-target'")


def test_switch_guard_refuses_before_a_move(servers):
    res = site_check("moved")
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1].startswith("changed=no comment=")
    assert "records no finished move" in res.stdout


def test_move_while_the_application_writes(servers):
    writer = Writer(SOURCE_PORT)
    writer.start()
    time.sleep(0.3)
    try:
        # a row only on the target: overwrite=True lets the move replace it
        sql(TARGET_PORT, "INSERT INTO makes (name, country) VALUES ('only-on-the-target', 'Testland')")
        report = pg_move.move(SOURCE, TARGET, source_conninfo_for_target=SOURCE, role=ROLE,
                              sync_timeout=120, catchup_timeout=60, overwrite=True, expendable=EXPENDABLE)
    finally:
        writer.join(timeout=10)
        writer.stop.set()
    assert report["ok"] is True and report["already_moved"] is False
    assert report["start"]["truncated"] == ["public.makes", "public.schema_migrations"]
    assert sql(TARGET_PORT, "SELECT count(*) FROM makes WHERE name = 'only-on-the-target'")[0][0] == 0
    # writes went on during the copy and stopped at the freeze, with the read-only error
    assert writer.written > 0 and writer.refused and "read-only" in writer.refused
    assert 0 < report["downtime_s"] < 30
    assert report["write_freeze_started"] <= report["ready_at"]

    # identical data, also when compared again now
    cmp = pg_move.compare(SOURCE, TARGET)
    assert cmp["identical"], cmp["differences"]
    assert report["tables"]["public.cars"]["rows"] == CARS
    makes = sql(SOURCE_PORT, "SELECT count(*) FROM makes")[0][0]
    assert report["tables"]["public.makes"] == cmp["tables"]["public.makes"]["target"]
    assert cmp["tables"]["public.makes"]["target"]["rows"] == makes
    assert sql(TARGET_PORT, "SELECT count(*) FROM makes WHERE name LIKE 'writer-%'")[0][0] == writer.written

    # nothing replicates any more
    assert subscriptions(TARGET_PORT) == []
    assert slots(SOURCE_PORT) == []

    # the source stays frozen for the application; the move is recorded
    state = pg_move.frozen(SOURCE, ROLE)
    assert state["read_only"] is True and state["moved_at"] and state["write_freeze_started"]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        sql(SOURCE_PORT, "INSERT INTO makes (name) VALUES ('late')", user=ROLE)

    # sequences follow: new ids on the target come after the source's last ones
    src_car = sql(SOURCE_PORT, "SELECT max(id) FROM cars")[0][0]
    src_make = sql(SOURCE_PORT, "SELECT max(id) FROM makes")[0][0]
    new_make = sql(TARGET_PORT, "INSERT INTO makes (name) VALUES ('on-the-cluster') RETURNING id", user=ROLE)[0][0]
    new_car = sql(TARGET_PORT, """
        INSERT INTO cars (model_id, condition, year, price, mileage_km, color, fuel, transmission, body_type,
                          seller_name, seller_email)
        SELECT model_id, condition, year, price, mileage_km, color, fuel, transmission, body_type, seller_name, seller_email
          FROM cars ORDER BY id LIMIT 1 RETURNING id""", user=ROLE)[0][0]
    assert new_make > src_make and new_car > src_car


def test_a_second_move_reports_the_first(servers):
    report = pg_move.move(SOURCE, TARGET, role=ROLE)
    assert report["ok"] is True and report["already_moved"] is True
    assert subscriptions(TARGET_PORT) == []


def test_switch_guard_and_gate_after_the_move(servers):
    res = site_check("moved")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "records a finished move" in res.stdout and "writes there are frozen" in res.stdout
    site = FakeSite({"host": "10.77.1.11", "port": 5432})
    site.start()
    try:
        res = site_check("serving", "--url", site.url, "--target", "cluster", "--expect-hosts", "10.77.1.11,10.77.1.12",
                         "--expect-port", "5432", "--timeout", "5", "--downtime")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "answers from the cluster database: primary 10.77.1.11:5432" in res.stdout
        assert "write downtime" in res.stdout and "writes frozen on the legacy server at" in res.stdout
        site.primary = {"host": "127.0.0.1", "port": 5433}
        res = site_check("serving", "--url", site.url, "--target", "cluster", "--expect-hosts", "10.77.1.11",
                         "--expect-port", "5432", "--timeout", "1")
        assert res.returncode == 1 and "primary 127.0.0.1:5433" in res.stdout, res.stdout + res.stderr
    finally:
        site.server.shutdown()


def test_unfreeze_lets_the_application_write_again(servers):
    pg_move.unfreeze(SOURCE, ROLE)
    state = pg_move.frozen(SOURCE, ROLE)
    assert state == {"role": ROLE, "read_only": False, "write_freeze_started": None, "moved_at": None}
    sql(SOURCE_PORT, "INSERT INTO makes (name) VALUES ('writable-again')", user=ROLE)


def test_a_move_after_an_unfreeze_refuses_to_replace_what_the_target_holds(servers):
    """The orders the application took on the target since the move are never truncated by a
    second move: the unfreeze above cleared the source's mark of the finished move."""
    before = pg_move.checksums(TARGET)
    with pytest.raises(CommandExecutionError, match=r"failed at start: .*already holds rows in .*"
                                                    r"public.cars \(\d+ rows\), .*public.orders \(\d+ rows\).*nothing was changed") as info:
        pg_move.move(SOURCE, TARGET, role=ROLE, sync_timeout=60, catchup_timeout=30, expendable=EXPENDABLE)
    assert "partial copy" not in str(info.value) and "dropped" not in str(info.value)
    assert pg_move.checksums(TARGET) == before
    assert subscriptions(TARGET_PORT) == [] and slots(SOURCE_PORT) == []
    assert pg_move.frozen(SOURCE, ROLE)["read_only"] is False


def test_errors_name_the_server_and_the_step(servers):
    with pytest.raises(CommandExecutionError, match=r"pg_move tables: database server \(host=127.0.0.1 port=1 .*\)"):
        pg_move.tables("host=127.0.0.1 port=1 dbname=carsale user=postgres password=secret")
    try:
        pg_move.tables("host=127.0.0.1 port=1 dbname=carsale user=postgres password=secret")
    except CommandExecutionError as exc:
        assert "secret" not in str(exc)


def test_runas_reaches_a_local_socket_as_that_user(servers):
    """As on a db host: the target over its socket, psql run as the postgres user."""
    local = f"host={servers} port={TARGET_PORT} dbname=carsale user=postgres"
    names = [t["table"] for t in pg_move.tables(local, runas="postgres")]
    assert "public.cars" in names and "public.schema_migrations" in names
