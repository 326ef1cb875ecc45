"""_modules/pgbackrest.py against a real pgBackRest and a throwaway PostgreSQL 15 (no lab).

The fixture starts PostgreSQL on a free port with ``archive_command =
pgbackrest archive-push``, makes an encrypted local repository
(aes-256-cbc, a generated passphrase) in a temporary folder, runs
``stanza-create``, a full backup, some writes and a WAL switch, and an
incremental backup. The module's functions then read that repository. About
ten seconds; skipped where pgBackRest or the PostgreSQL 15 binaries are missing.

The second fixture, ``point``, adds a database with two tables, a full backup
by ``pgbackrest.backup``, a restore point between two batches of rows, a
dropped table and an incremental backup; the tests then check recovery
targets, restore into a fresh folder and run the restore drill (also on a
damaged copy of the repository). The whole file takes about half a minute.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

import pytest
from salt.exceptions import CommandExecutionError

import backup_health
import pg_move
import pgbackrest
from conftest import salt_utils

PG_BIN = Path(os.environ.get("HALITE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
STANZA = "halite"
#: pgbackrest and PostgreSQL run as postgres when the tests run as root.
RUNAS = "postgres" if os.geteuid() == 0 else None
#: In memory where there is a tmpfs: the backups, restores and drills write some hundred MB, which
#: took 2 s on an idle disk and over 10 s on a busy one.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else "/tmp"


def as_runas(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    if RUNAS:
        cmd = ("runuser", "-u", RUNAS, "--") + cmd
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr or res.stdout}")
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(base: Path, name: str, repo: Path, port: int, passphrase: str) -> Path:
    path = base / name
    path.write_text(
        "[global]\n"
        f"repo1-path={repo}\n"
        "repo1-cipher-type=aes-256-cbc\n"
        f"repo1-cipher-pass={passphrase}\n"
        "repo1-retention-full=2\n"
        "compress-type=lz4\n"
        "start-fast=y\n"
        "log-level-console=warn\n"
        "log-level-file=off\n"
        f"lock-path={base}/lock\n"
        f"spool-path={base}/spool\n"
        "\n"
        f"[{STANZA}]\n"
        f"pg1-path={base}/data\n"
        f"pg1-port={port}\n"
        f"pg1-socket-path={base}\n"
    )
    path.chmod(0o600)
    return path


def psql(base: Path, port: int, query: str, db: str = "postgres") -> str:
    return as_runas("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(base), "-p", str(port),
                    "-U", "postgres", "-d", db, "-c", query).stdout.strip()


def stop_postgres(data: Path) -> None:
    """Stop the server we started: the PID from its postmaster.pid, immediate shutdown."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    for _ in range(200):
        # the postmaster removes its pid file as it exits; its process may linger a while as a zombie
        if not (data / "postmaster.pid").exists():
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def repo():
    """A stanza with a full and an incremental backup: ``{"base", "config", "port", "passphrase"}``."""
    if shutil.which("pgbackrest") is None or not (PG_BIN / "initdb").exists() or shutil.which("psql") is None:
        pytest.skip(f"pgbackrest, psql or the PostgreSQL 15 server binaries ({PG_BIN}) not found")
    base = Path(tempfile.mkdtemp(prefix="halite-pgbackrest-", dir=SCRATCH))
    if RUNAS:
        pw = pwd.getpwnam(RUNAS)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o700)
    port, passphrase = free_port(), secrets.token_urlsafe(32)
    config = write_config(base, "pgbackrest.conf", base / "repo", port, passphrase)
    data = base / "data"
    try:
        if RUNAS:
            os.chown(config, pw.pw_uid, pw.pw_gid)
        as_runas(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                 "--locale=C", "--no-sync")
        with open(data / "postgresql.conf", "a") as fh:
            fh.write(f"\nlisten_addresses = ''\nport = {port}\nunix_socket_directories = '{base}'\n"
                     "fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\nwal_level = replica\n"
                     "archive_mode = on\n"
                     f"archive_command = 'pgbackrest --config={config} --stanza={STANZA} archive-push %p'\n")
        as_runas(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "postgresql.log"), "-w", "-t", "30",
                 "start")
        run = ("pgbackrest", f"--config={config}", f"--stanza={STANZA}")
        as_runas(*run, "stanza-create")
        as_runas(*run, "--type=full", "backup")
        psql(base, port, "CREATE TABLE cars AS SELECT g AS id, md5(g::text) AS plate FROM generate_series(1, 20000) g")
        psql(base, port, "SELECT pg_switch_wal()")
        as_runas(*run, "--type=incr", "backup")
        yield {"base": base, "config": str(config), "port": port, "passphrase": passphrase}
    finally:
        stop_postgres(data)
        shutil.rmtree(base, ignore_errors=True)


def lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def test_info_reads_the_real_repository(repo):
    (stanza,) = pgbackrest.info(STANZA, config=repo["config"], runas=RUNAS)
    assert stanza["name"] == STANZA
    assert stanza["status"] == {"code": 0, "message": "ok"} and stanza["ok"] is True
    assert stanza["cipher"] == "aes-256-cbc"
    assert stanza["backup_running"] is False
    assert [d["version"] for d in stanza["db"]] == ["15"]
    assert stanza["repos"] == [{"key": 1, "cipher": "aes-256-cbc", "status": {"code": 0, "message": "ok"}}]
    full, incr = stanza["backups"]
    assert (full["type"], incr["type"]) == ("full", "incr")
    assert full["label"].endswith("F") and incr["label"].startswith(full["label"] + "_") and incr["label"].endswith("I")
    assert incr["prior"] == full["label"] and incr["reference"] == [full["label"]]
    for backup in (full, incr):
        assert backup["database_size"] > 0 and backup["backup_size"] > 0
        assert backup["repo_size"] > 0 and backup["repo_backup_size"] > 0
        assert backup["stop"] >= backup["start"] and backup["duration"] == backup["stop"] - backup["start"]
        assert backup["error"] is False
        assert backup["pgbackrest_version"] == subprocess.run(
            ["pgbackrest", "version"], capture_output=True, text=True, check=True).stdout.split()[-1]
        assert backup["wal_start"] <= backup["wal_stop"]
    # a full backup copies the whole database; the incremental only what changed
    assert full["backup_size"] == full["database_size"]
    assert incr["backup_size"] < incr["database_size"]
    # an encrypted, compressed repository holds less than the database
    assert full["repo_size"] < full["database_size"]
    assert lsn(full["lsn_start"]) < lsn(full["lsn_stop"]) <= lsn(incr["lsn_start"]) < lsn(incr["lsn_stop"])
    assert pgbackrest.lsn(incr["lsn_stop"]) == lsn(incr["lsn_stop"])
    (archive,) = stanza["archive"]
    assert archive["id"] == "15-1"
    assert archive["min"] <= full["wal_start"] and incr["wal_stop"] <= archive["max"]


def test_info_of_every_stanza(repo):
    assert [s["name"] for s in pgbackrest.info(config=repo["config"], runas=RUNAS)] == [STANZA]


def test_last_backup_and_age(repo):
    last = pgbackrest.last_backup(STANZA, config=repo["config"], runas=RUNAS)
    assert last["type"] == "incr"
    seconds = pgbackrest.age(STANZA, config=repo["config"], runas=RUNAS)
    assert 0 <= seconds < 120


def test_check_passes(repo):
    assert pgbackrest.check(STANZA, config=repo["config"], runas=RUNAS) is True


def test_archive_is_continuous(repo):
    status = pgbackrest.archive_status(STANZA, config=repo["config"], runas=RUNAS)
    full = pgbackrest.info(STANZA, config=repo["config"], runas=RUNAS)[0]["backups"][0]
    assert status["archive_id"] == "15-1"
    assert status["continuous"] is True and status["gaps"] == []
    assert status["checked_from"] == full["wal_start"]
    assert status["segments"] >= 3
    assert status["last"] >= status["max"] or status["last"] == status["max"]
    assert 0 <= status["last_age"] < 300


def test_health_with_check(repo):
    seen = pgbackrest.health(STANZA, max_age=600, check=True, config=repo["config"], runas=RUNAS)
    assert seen["problems"] == []
    assert seen["healthy"] is True and seen["checked"] is True
    assert seen["backups"] == 2 and seen["last_type"] == "incr"


def test_a_missing_segment_is_a_gap(repo):
    """A copy of the repository without one archived segment between the two backups."""
    base = repo["base"]
    copy = base / "repo-gap"
    as_runas("cp", "-a", str(base / "repo"), str(copy))
    config = write_config(base, "gap.conf", copy, repo["port"], repo["passphrase"])
    if RUNAS:
        shutil.chown(config, RUNAS, RUNAS)
    stanza = pgbackrest.info(STANZA, config=str(config), runas=RUNAS)[0]
    full, incr = stanza["backups"]
    victim = pgbackrest.segment_name(1, pgbackrest.segment_number(full["wal_stop"]) + 1)
    assert victim < incr["wal_start"]
    (path,) = (copy / "archive" / STANZA / "15-1" / victim[:16]).glob(victim + "-*")
    path.unlink()

    status = pgbackrest.archive_status(STANZA, config=str(config), runas=RUNAS)
    assert status["continuous"] is False
    assert status["gaps"] == [{"from": victim, "to": victim, "count": 1}]
    seen = pgbackrest.health(STANZA, max_age=600, config=str(config), runas=RUNAS)
    assert seen["healthy"] is False
    assert seen["problems"] == [f"WAL archive 15-1 misses 1 segment(s): {victim}"]


def test_unknown_stanza(repo):
    with pytest.raises(CommandExecutionError, match=r"stanza 'nope': missing stanza path"):
        pgbackrest.info("nope", config=repo["config"], runas=RUNAS)


def test_pgbackrest_error_message_is_passed_on(repo):
    missing = str(repo["base"] / "no-such.conf")
    with pytest.raises(CommandExecutionError) as err:
        pgbackrest.info(STANZA, config=missing, runas=RUNAS)
    assert "pgbackrest info (stanza halite) failed (exit 55)" in str(err.value)
    assert f"ERROR: [055]: unable to open missing file '{missing}' for read" in str(err.value)


def test_the_gate_passes_on_the_real_repository(repo):
    salt = {"pgbackrest.health": pgbackrest.health}
    with patch.object(backup_health, "__salt__", salt, create=True), \
            patch.object(backup_health, "__opts__", {"test": False}, create=True), \
            patch.object(backup_health, "__utils__", salt_utils(), create=True):
        ret = backup_health.fresh("backup-fresh", STANZA, max_age=600, timeout=0, config=repo["config"], runas=RUNAS)
    assert ret["result"] is True, ret["comment"]
    assert "pgbackrest check ok" in ret["comment"]


# ---------------------------------------------------------------- restore points, restore, the drill

SHOP = "shop"


@pytest.fixture(scope="module")
def point(repo):
    """After the backups above: a database ``shop``, a full backup by ``pgbackrest.backup``, 500 more
    cars (in the WAL only), the restore point rp1, 500 more cars, table ``sold`` dropped, an incremental
    backup (after rp1, so not the set for it).

    ``{"full", "incr", "point"}``.
    """
    base, port, config = repo["base"], repo["port"], repo["config"]

    def shop(query):
        return psql(base, port, query, db=SHOP)

    psql(base, port, f"CREATE DATABASE {SHOP}")
    shop("CREATE TABLE cars (id int PRIMARY KEY, plate text NOT NULL, added timestamptz DEFAULT now());"
         "CREATE TABLE sold (id int PRIMARY KEY, car int NOT NULL, price numeric(10, 2));"
         "INSERT INTO cars (id, plate) SELECT g, 'HL-' || g FROM generate_series(1, 1000) g;"
         "INSERT INTO sold SELECT g, g, g * 10.5 FROM generate_series(1, 100) g")
    full = pgbackrest.backup(STANZA, "full", config=config, runas=RUNAS)
    shop("INSERT INTO cars (id, plate) SELECT g, 'HL-' || g FROM generate_series(1001, 1500) g")
    rp1 = pgbackrest.restore_point("rp1", SHOP, runas="postgres", host=str(base), port=port)
    shop("INSERT INTO cars (id, plate) SELECT g, 'HL-' || g FROM generate_series(1501, 2000) g")
    shop("DROP TABLE sold")
    incr = pgbackrest.backup(STANZA, "incr", config=config, runas=RUNAS)
    return {"full": full, "incr": incr, "point": rp1}


def known(point) -> dict:
    return {"rp1": point["point"]["lsn"]}


def start_copy(data: Path, socket_dir: Path, port: int) -> None:
    """Start a restored data directory on its own socket (its postgresql.conf is the fixture's)."""
    as_runas(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(socket_dir / "copy.log"), "-w", "-t", "60", "-o",
             f"-c port={port} -c unix_socket_directories={socket_dir} -c archive_mode=off", "start")
    for _ in range(300):
        if psql(socket_dir, port, "SELECT pg_is_in_recovery()") == "f":
            return
        time.sleep(0.1)
    raise AssertionError(f"{data} did not leave recovery: {(socket_dir / 'copy.log').read_text()[-2000:]}")


def test_backup_returns_the_new_backup(repo, point):
    full, incr = point["full"], point["incr"]
    assert full["type"] == "full" and full["label"].endswith("F") and full["seconds"] > 0
    assert incr["type"] == "incr" and incr["prior"] == full["label"] and incr["seconds"] > 0
    newest = pgbackrest.last_backup(STANZA, config=repo["config"], runas=RUNAS)
    assert {k: v for k, v in incr.items() if k != "seconds"} == newest
    with pytest.raises(CommandExecutionError, match=r"pgbackrest backup: type must be one of full, diff, incr, not 'weekly'"):
        pgbackrest.backup(STANZA, "weekly", config=repo["config"], runas=RUNAS)


def test_stanza_create_is_idempotent(repo):
    assert pgbackrest.stanza_create(STANZA, config=repo["config"], runas=RUNAS) is True


def test_restore_point_holds_the_checksums_at_the_point(point):
    rp1, full, incr = point["point"], point["full"], point["incr"]
    assert set(rp1) == {"name", "lsn", "time", "database", "tables"}
    assert rp1["name"] == "rp1" and rp1["database"] == SHOP
    assert lsn(full["lsn_stop"]) < lsn(rp1["lsn"]) < lsn(incr["lsn_start"])
    stamp = pgbackrest.parse_time(rp1["time"])
    assert rp1["time"].endswith("+00:00") and full["stop"] - 1 <= stamp.timestamp() <= incr["start"] + 1
    assert set(rp1["tables"]) == {"public.cars", "public.sold"}
    assert rp1["tables"]["public.cars"]["rows"] == 1500 and rp1["tables"]["public.sold"]["rows"] == 100
    assert all(len(t["md5"]) == 32 for t in rp1["tables"].values())


def test_restore_point_gives_up_on_a_held_lock(repo, point):
    base, port = repo["base"], repo["port"]
    holder = subprocess.Popen(
        (("runuser", "-u", RUNAS, "--") if RUNAS else ()) + (
            "psql", "-X", "-q", "-h", str(base), "-p", str(port), "-U", "postgres", "-d",
            f"dbname={SHOP} application_name=halite-lock-holder", "-c",
            "BEGIN; INSERT INTO cars (id, plate) VALUES (-1, 'held'); SELECT pg_sleep(30)"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if psql(base, port, "SELECT count(*) FROM pg_locks WHERE relation = 'cars'::regclass "
                                "AND mode = 'RowExclusiveLock'", db=SHOP) != "0":
                break
            time.sleep(0.05)
        with pytest.raises(CommandExecutionError) as err:
            pgbackrest.restore_point("rp-locked", SHOP, runas="postgres", host=str(base), port=port, lock_timeout=0.3)
        assert str(err.value).startswith(
            f"pgbackrest restore_point rp-locked: could not lock the tables of {SHOP} within 0.3 s: another session "
            "holds a conflicting lock"), err.value
    finally:
        # the server side sleeps on after its client is gone: end it, so that its lock goes now
        psql(base, port, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'halite-lock-holder'", db=SHOP)
        holder.kill()
        holder.wait()


def test_restore_points_are_kept_with_the_cluster_once(repo, point):
    """restore_point records the point (same transaction) in halite.restore_points, left out of checksums."""
    rp1 = point["point"]
    dsn = f"host={repo['base']} port={repo['port']} dbname={SHOP} user=postgres"
    kept = pgbackrest.restore_points(dsn, runas=RUNAS)
    assert list(kept) == ["rp1"]
    assert kept["rp1"]["lsn"] == rp1["lsn"] and kept["rp1"]["tables"] == rp1["tables"]
    assert kept["rp1"]["time"][:19] == rp1["time"][:19]
    assert not any(t.startswith("halite.") for t in rp1["tables"]), rp1["tables"]
    # a name already kept is refused before any point is written
    with pytest.raises(CommandExecutionError, match=r"a restore point named rp1 exists already"):
        pgbackrest.restore_point("rp1", SHOP, runas="postgres", host=str(repo["base"]), port=repo["port"])
    assert list(pgbackrest.restore_points(dsn, runas=RUNAS)) == ["rp1"]
    # a database where none was ever made has none
    assert pgbackrest.restore_points(dsn.replace(f"dbname={SHOP}", "dbname=postgres"), runas=RUNAS) == {}


def test_check_target_chooses_the_set(repo, point):
    full, incr = point["full"]["label"], point["incr"]["label"]

    def check(target, names=None):
        return pgbackrest.check_target(STANZA, target, known_names=names, config=repo["config"], runas=RUNAS)

    # rp1 lies between the full and the incremental backup: only the full one reaches it
    assert check({"name": "rp1"}, known(point)) == {"type": "name", "target": "rp1", "set": full}
    dsn = f"host={repo['base']} port={repo['port']} dbname={SHOP} user=postgres"
    assert check({"name": "rp1"}, pgbackrest.restore_points(dsn, runas=RUNAS))["set"] == full
    # without its lsn, the newest set
    assert check({"name": "rp1"}, ["rp1"]) == {"type": "name", "target": "rp1", "set": incr}
    assert check({"latest": True}) == {"type": "default", "target": None, "set": incr}
    assert check({"lsn": point["point"]["lsn"]}) == {"type": "lsn", "target": point["point"]["lsn"], "set": full}
    stop = point["full"]["stop"]
    assert check({"time": pgbackrest._utc_text(stop)})["set"] == full


def test_check_target_refuses_unreachable_targets(repo, point):
    stanza = pgbackrest.info(STANZA, config=repo["config"], runas=RUNAS)[0]
    oldest = stanza["backups"][0]
    earliest = pgbackrest._utc_text(oldest["stop"])

    def refused(target, names=None):
        with pytest.raises(CommandExecutionError) as err:
            pgbackrest.check_target(STANZA, target, known_names=names, config=repo["config"], runas=RUNAS)
        return str(err.value)

    where = "pgbackrest check_target (stanza halite): "
    assert refused({"time": "2020-01-01T00:00:00+00:00"}) == (
        f"{where}target time 2020-01-01 00:00:00+00 is before the end of the oldest backup {oldest['label']}: "
        f"the earliest time reachable is {earliest}")
    assert refused({"time": "2099-06-01 12:00:00+02"}).startswith(
        f"{where}target time 2099-06-01 10:00:00+00 is in the future (now is ")
    # after the newest archived segment: no commit after it to stop at
    msg = refused({"time": pgbackrest._utc_text(time.time())})
    assert msg.startswith(f"{where}target time ") and "is after the newest WAL in the archive (segment " in msg
    assert refused({"name": "rp9"}, known(point)) == (
        f"{where}restore point rp9 is not known; the known ones are rp1")
    assert refused({"name": "rp1", "latest": True}) == (
        f"{where}the target gives name and latest; a target has exactly one of time, lsn, name, latest")
    assert refused({"lsn": "0/XYZ"}) == f"{where}target lsn '0/XYZ' is not an LSN such as 0/3000028"
    assert refused({"lsn": "0/10"}) == (
        f"{where}target lsn 0/10 is before the end of the oldest backup {oldest['label']} "
        f"(lsn {oldest['lsn_stop']}): the earliest lsn reachable is {oldest['lsn_stop']}")
    assert refused({"lsn": "FF/0"}).startswith(f"{where}target lsn FF/0 is beyond the newest WAL in the archive")


def test_drill_restores_the_restore_point(repo, point):
    scratch = repo["base"] / "drill"
    rp1 = point["point"]
    seen = pgbackrest.drill(STANZA, target={"name": "rp1"}, known_names=known(point), expected=rp1["tables"],
                            database=SHOP, scratch=str(scratch), config=repo["config"], runas=RUNAS, timeout=120)
    assert seen["differences"] == [] and seen["ok"] is True, seen
    assert (seen["set"], seen["type"], seen["target"]) == (point["full"]["label"], "name", "rp1")
    # the rows added before the point (after the backup, so from the WAL) are there; those after it are not;
    # the table dropped after the point is there
    assert seen["tables"]["public.cars"] == {"rows": 1500, "md5": rp1["tables"]["public.cars"]["md5"],
                                             "expected": rp1["tables"]["public.cars"], "ok": True}
    assert seen["tables"]["public.sold"]["rows"] == 100 and seen["tables"]["public.sold"]["ok"] is True
    assert lsn(seen["replayed_lsn"]) >= lsn(rp1["lsn"]) and lsn(seen["restored_lsn"]) > lsn(rp1["lsn"])
    assert seen["size_bytes"] > 10 * 1024 * 1024
    assert all(seen["seconds"][k] > 0 for k in ("restore", "recovery", "check", "total"))
    assert seen["kept"] is None
    # the copy is gone, its server stopped; the scratch folder stays
    assert scratch.is_dir() and list(scratch.iterdir()) == []
    assert psql(repo["base"], repo["port"], "SELECT count(*) FROM cars", db=SHOP) == "2000"


def test_drill_of_a_set_newer_than_the_point_fails_with_the_servers_reason(repo, point):
    """Given only the name, the newest set is restored: it ends after rp1, so recovery never reaches it."""
    scratch = repo["base"] / "drill"
    with pytest.raises(CommandExecutionError) as err:
        pgbackrest.drill(STANZA, target={"name": "rp1"}, known_names=["rp1"], database=SHOP, scratch=str(scratch),
                         config=repo["config"], runas=RUNAS, timeout=120)
    msg = str(err.value)
    assert msg.startswith("restore drill: PostgreSQL stopped during recovery (exit 1): "), msg
    assert msg.endswith("FATAL:  recovery ended before configured recovery target was reached"), msg
    assert list(scratch.iterdir()) == []


def test_restore_into_a_fresh_directory(repo, point):
    base = repo["base"]
    home = base / "restored"
    home.mkdir()
    if RUNAS:
        shutil.chown(home, RUNAS, RUNAS)
    data = home / "data"
    done = pgbackrest.restore(STANZA, str(data), target={"name": "rp1"}, known_names=known(point),
                              archive_mode="off", config=repo["config"], runas=RUNAS)
    assert (done["set"], done["type"], done["target"]) == (point["full"]["label"], "name", "rp1")
    assert done["seconds"] > 0
    auto = (data / "postgresql.auto.conf").read_text()
    assert "recovery_target_name = 'rp1'" in auto and "recovery_target_action = 'promote'" in auto
    assert "archive_mode = 'off'" in auto
    port = free_port()
    try:
        start_copy(data, home, port)
        assert psql(home, port, "SELECT count(*) FROM cars", db=SHOP) == "1500"
        assert psql(home, port, "SELECT count(*) FROM sold", db=SHOP) == "100"
        dsn = f"host={home} port={port} dbname={SHOP} user=postgres"
        assert pg_move.checksums(dsn, runas=RUNAS) == point["point"]["tables"]
    finally:
        stop_postgres(data)
        shutil.rmtree(home, ignore_errors=True)


def test_restore_refuses_before_changing_anything(repo, point):
    target = repo["base"] / "never"
    with pytest.raises(CommandExecutionError, match="restore point rp9 is not known"):
        pgbackrest.restore(STANZA, str(target), target={"name": "rp9"}, known_names=known(point),
                           config=repo["config"], runas=RUNAS)
    assert not target.exists()


def test_drill_of_a_damaged_backup_fails_with_pgbackrests_error(repo, point):
    """A copy of the repository where a file of the newest backup has 64 bytes overwritten."""
    base = repo["base"]
    copy = base / "repo-damaged"
    as_runas("cp", "-a", str(base / "repo"), str(copy))
    config = write_config(base, "damaged.conf", copy, repo["port"], repo["passphrase"])
    with open(config, "a") as fh:
        fh.write("job-retry=0\n")  # pgBackRest would try the file again after 15 s
    if RUNAS:
        shutil.chown(config, RUNAS, RUNAS)
    files = [p for p in (copy / "backup" / STANZA / point["incr"]["label"] / "pg_data").rglob("*") if p.is_file()]
    victim = max(files, key=lambda p: p.stat().st_size)
    size = victim.stat().st_size
    assert size > 1024
    with open(victim, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\0" * 64)
    scratch = base / "drill"
    with pytest.raises(CommandExecutionError) as err:
        pgbackrest.drill(STANZA, scratch=str(scratch), config=str(config), runas=RUNAS, timeout=120)
    msg = str(err.value)
    assert msg.startswith("restore drill: pgbackrest restore (stanza halite) failed (exit "), msg
    assert "ERROR: [" in msg, msg
    assert list(scratch.iterdir()) == []


def test_a_restore_point_not_yet_archived_is_waited_for_then_refused(repo, point):
    """archive_wait: a point whose WAL is not in the repository (asynchronous archiving) is
    waited for, up to the bound, then refused with a sentence saying what is missing."""
    far = {"rp-future": "F/0"}
    started = time.monotonic()
    with pytest.raises(CommandExecutionError, match=r"the WAL of restore point rp-future \(lsn F/0\) has not "
                                                    r"reached the repository within 3s"):
        pgbackrest.check_target(STANZA, {"name": "rp-future"}, known_names=far, config=repo["config"],
                                runas=RUNAS, archive_wait=3)
    assert time.monotonic() - started >= 3
    # an archived point passes at once
    assert pgbackrest.check_target(STANZA, {"name": "rp1"}, known_names=known(point), config=repo["config"],
                                   runas=RUNAS, archive_wait=3)["type"] == "name"
