"""_modules/pgbackrest.py against a real pgBackRest and a throwaway PostgreSQL 15 (no lab).

The fixture starts PostgreSQL on a free port with ``archive_command =
pgbackrest archive-push``, makes an encrypted local repository
(aes-256-cbc, a generated passphrase) in a temporary folder, runs
``stanza-create``, a full backup, some writes and a WAL switch, and an
incremental backup. The module's functions then read that repository. About
ten seconds; skipped where pgBackRest or the PostgreSQL 15 binaries are missing.
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
import pgbackrest
from conftest import salt_utils

PG_BIN = Path(os.environ.get("HALITE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
STANZA = "halite"
#: pgbackrest and PostgreSQL run as postgres when the tests run as root.
RUNAS = "postgres" if os.geteuid() == 0 else None


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


def psql(base: Path, port: int, query: str) -> str:
    return as_runas("psql", "-X", "-q", "-A", "-t", "-h", str(base), "-p", str(port), "-U", "postgres",
                    "-d", "postgres", "-c", query).stdout.strip()


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
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def repo():
    """A stanza with a full and an incremental backup: ``{"base", "config", "port", "passphrase"}``."""
    if shutil.which("pgbackrest") is None or not (PG_BIN / "initdb").exists() or shutil.which("psql") is None:
        pytest.skip(f"pgbackrest, psql or the PostgreSQL 15 server binaries ({PG_BIN}) not found")
    base = Path(tempfile.mkdtemp(prefix="halite-pgbackrest-", dir="/tmp"))
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
