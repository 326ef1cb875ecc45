"""Unit tests for _modules/pgbackrest.py on recorded pgBackRest 2.45 output.

The JSON files in ``data/pgbackrest-2.45/`` were recorded from a real
pgBackRest 2.45 (Debian 12) and an encrypted repository: a full and an
incremental backup (``info-ok``), a stanza with no backup yet, an unknown
stanza ("missing stanza path"), a stanza whose info files are gone ("missing
stanza data"), a wrong passphrase (status 99 "other"; the decrypted garbage it
quotes is shortened) and the archive listing (``repo-ls``). ``subprocess.run``
is replaced, so these tests need no pgBackRest; test_pgbackrest_real.py runs
the real one.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from unittest.mock import patch

import pgbackrest
import pytest
from salt.exceptions import CommandExecutionError

DATA = Path(__file__).parent / "data" / "pgbackrest-2.45"
#: ``timestamp.stop`` of the incremental backup in info-ok.json.
INCR_STOP = 1796014044
FULL_LABEL, INCR_LABEL = "20261130-044719F", "20261130-044719F_20261130-044723I"


def recorded(name: str) -> str:
    return (DATA / f"{name}.json").read_text()


class FakePgBackRest:
    """Stands in for ``subprocess.run``: answers by pgbackrest command, records argv."""

    def __init__(self, **answers):
        self.answers = answers  # command -> (returncode, stdout, stderr) or an exception
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        assert isinstance(argv, list) and "shell" not in kwargs
        command = next(a for a in argv[argv.index("pgbackrest") + 1:] if not a.startswith("--"))
        answer = self.answers[command]
        if isinstance(answer, BaseException):
            raise answer
        code, out, err = answer
        return subprocess.CompletedProcess(argv, code, out, err)


@pytest.fixture
def run():
    """A fake pgbackrest (ok repository) on PATH; ``run.answers`` can be changed per test."""
    fake = FakePgBackRest(info=(0, recorded("info-ok"), ""), **{"repo-ls": (0, recorded("repo-ls-archive"), "")},
                          check=(0, "", ""))
    with patch.object(pgbackrest.subprocess, "run", fake), \
            patch.object(pgbackrest.shutil, "which", lambda name: f"/usr/bin/{name}"):
        yield fake


@pytest.fixture
def now():
    """The clock, 100 seconds after the incremental backup stopped."""
    class Clock:
        value = INCR_STOP + 100

        def time(self):
            return self.value

    clock = Clock()
    with patch.object(pgbackrest, "time", clock):
        yield clock


def test_virtual():
    assert pgbackrest.__virtual__() == "pgbackrest"


# ------------------------------------------------------------------ parsing


def test_info_parses_the_backups(run):
    (stanza,) = pgbackrest.info("main", runas=None)
    assert stanza["name"] == "main"
    assert stanza["status"] == {"code": 0, "message": "ok"} and stanza["ok"] is True
    assert stanza["backup_running"] is False
    assert stanza["cipher"] == "aes-256-cbc"
    assert stanza["db"] == [{"id": 1, "version": "15", "system_id": 7713821549282195970, "repo": 1}]
    assert stanza["repos"] == [{"key": 1, "cipher": "aes-256-cbc", "status": {"code": 0, "message": "ok"}}]
    assert stanza["archive"] == [{"id": "15-1", "db_id": 1, "repo": 1,
                                  "min": "000000010000000000000001", "max": "000000010000000000000005"}]
    full, incr = stanza["backups"]
    assert full == {
        "label": FULL_LABEL, "type": "full", "start": 1796014039, "stop": 1796014042, "duration": 3,
        "database_size": 23213919, "backup_size": 23213919, "repo_size": 4572720, "repo_backup_size": 4572720,
        "wal_start": "000000010000000000000002", "wal_stop": "000000010000000000000003",
        "lsn_start": "0/2000028", "lsn_stop": "0/3000050", "prior": None, "reference": [], "error": False,
        "db_id": 1, "repo": 1, "pgbackrest_version": "2.45",
    }
    assert (incr["label"], incr["type"], incr["prior"], incr["reference"]) == (INCR_LABEL, "incr", FULL_LABEL, [FULL_LABEL])
    assert (incr["backup_size"], incr["repo_backup_size"], incr["repo_size"]) == (1851658, 362976, 4660384)
    assert run.calls == [["pgbackrest", "--stanza=main", "--output=json", "info"]]


def test_lsn_without_lsns_before_2_37():
    raw = json.loads(recorded("info-ok"))
    for backup in raw[0]["backup"]:
        del backup["lsn"], backup["error"]
    full = pgbackrest.parse_info(raw, "main")[0]["backups"][0]
    assert (full["lsn_start"], full["lsn_stop"], full["error"]) == (None, None, False)
    assert pgbackrest.lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert pgbackrest.lsn(None) is None and pgbackrest.lsn("garbage") is None


def test_last_backup_and_age(run, now):
    assert pgbackrest.last_backup("main", runas=None)["label"] == INCR_LABEL
    assert pgbackrest.age("main", runas=None) == 100


def test_no_backup_yet(run, now):
    run.answers["info"] = (0, recorded("info-no-backup"), "")
    (stanza,) = pgbackrest.info("main", runas=None)
    assert stanza["status"] == {"code": 2, "message": "no valid backups"} and stanza["ok"] is False
    assert stanza["backups"] == []
    assert stanza["archive"][0]["min"] is None and stanza["archive"][0]["max"] is None
    assert pgbackrest.last_backup("main", runas=None) is None
    assert pgbackrest.age("main", runas=None) is None
    seen = pgbackrest.health("main", max_age=3600, check=True, runas=None)
    assert seen["healthy"] is False
    assert seen["problems"] == ["stanza main: no valid backups (pgBackRest status 2)",
                                "WAL archive 15-1 holds no segment yet"]
    assert seen["last_backup"] is None and seen["age"] is None and seen["checked"] is False
    # nothing to list, and no check while something else is wrong
    assert [c[-1] for c in run.calls if "info" not in c] == []


def test_unknown_stanza_raises_with_pgbackrest_message(run):
    run.answers["info"] = (0, recorded("info-missing-stanza-path"), "")
    with pytest.raises(CommandExecutionError, match=r"stanza 'nope': missing stanza path \(unknown stanza"):
        pgbackrest.info("nope", runas=None)


def test_stanza_not_in_the_answer(run):
    with pytest.raises(CommandExecutionError, match="stanza 'other' is not in pgBackRest's answer"):
        pgbackrest.info("other", runas=None)


def test_status_error_is_reported_with_the_repository_reason(run):
    run.answers["info"] = (0, recorded("info-wrong-passphrase"), "")
    seen = pgbackrest.health("main", runas=None)
    assert seen["healthy"] is False
    assert seen["status"] == {"code": 99, "message": "other"}
    assert seen["problems"][0] == "stanza main: other (pgBackRest status 99)"
    assert seen["problems"][1].startswith("repo1: [FormatError] unable to load info file "
                                          "'/var/lib/pgbackrest/backup/main/backup.info'")
    assert "HINT: has a stanza-create been performed?" in seen["problems"][1]


def test_missing_stanza_data(run):
    run.answers["info"] = (0, recorded("info-missing-stanza-data"), "")
    seen = pgbackrest.health("main", runas=None)
    assert seen["problems"] == ["stanza main: missing stanza data (pgBackRest status 3)", "no backup yet",
                                "WAL archive (none) holds no segment yet"]


def test_control_characters_in_the_json_are_tolerated(run):
    # a wrong passphrase: pgBackRest 2.45 quotes decrypted bytes, unescaped
    text = recorded("info-wrong-passphrase").replace("line 1: ...", "line 1: c\x02\x1b\ufffdR$)")
    run.answers["info"] = (0, text, "")
    (stanza,) = pgbackrest.info("main", runas=None)
    assert "c\x02\x1b" in stanza["repos"][0]["status"]["message"]


# ------------------------------------------------------------------ errors


def test_missing_binary():
    with patch.object(pgbackrest.shutil, "which", lambda name: None):
        with pytest.raises(CommandExecutionError, match="pgbackrest info .stanza main.: pgBackRest is not installed here"):
            pgbackrest.info("main")


def test_non_zero_exit_passes_on_pgbackrest_message(run):
    run.answers["info"] = (55, "", "ERROR: [055]: unable to open missing file '/etc/pgbackrest/x.conf' for read\n")
    with pytest.raises(CommandExecutionError) as err:
        pgbackrest.info("main", config="/etc/pgbackrest/x.conf", runas=None)
    assert str(err.value) == ("pgbackrest info (stanza main) failed (exit 55): "
                              "ERROR: [055]: unable to open missing file '/etc/pgbackrest/x.conf' for read")


def test_bad_json(run):
    run.answers["info"] = (0, "stanza: main\n    status: ok\n", "")
    with pytest.raises(CommandExecutionError, match=r"pgbackrest info: the output is not JSON .*'stanza: main"):
        pgbackrest.info("main", runas=None)


def test_json_of_the_wrong_shape(run):
    run.answers["info"] = (0, '{"name": "main"}', "")
    with pytest.raises(CommandExecutionError, match="the JSON is not a list of stanzas"):
        pgbackrest.info("main", runas=None)


def test_timeout(run):
    run.answers["info"] = subprocess.TimeoutExpired(["pgbackrest"], 5)
    with pytest.raises(CommandExecutionError, match=r"pgbackrest info \(stanza main\): no answer within 5 s"):
        pgbackrest.info("main", runas=None, timeout=5)


def test_check_failure_raises_its_message(run):
    run.answers["check"] = (82, "", "ERROR: [082]: WAL segment 000000010000000000000007 was not archived before the "
                                    "60000ms timeout\n       HINT: check the archive_command to ensure that all options "
                                    "are correct (especially --stanza).")
    with pytest.raises(CommandExecutionError, match=r"pgbackrest check \(stanza main\) failed \(exit 82\): "
                                                    r"ERROR: \[082\]: WAL segment .* was not archived"):
        pgbackrest.check("main", runas=None)


def test_relative_config_is_refused(run):
    with pytest.raises(CommandExecutionError, match="config must be an absolute path"):
        pgbackrest.info("main", config="pgbackrest.conf", runas=None)
    assert run.calls == []


def test_argv_runs_as_postgres_without_a_shell(run):
    with patch.object(pgbackrest.os, "geteuid", lambda: 0), \
            patch.object(pgbackrest.pwd, "getpwuid", lambda uid: type("pw", (), {"pw_name": "root"})):
        pgbackrest.check("halite", config="/etc/pgbackrest/pgbackrest.conf")
    assert run.calls == [["runuser", "-u", "postgres", "--", "pgbackrest", "--config=/etc/pgbackrest/pgbackrest.conf",
                          "--stanza=halite", "check"]]


# ------------------------------------------------------------------ archive


def test_archive_status_from_the_recorded_listing(run, now):
    status = pgbackrest.archive_status("main", runas=None)
    assert status == {
        "archive_id": "15-1", "min": "000000010000000000000001", "max": "000000010000000000000005",
        # from the oldest backup's WAL start, not from the oldest segment
        "checked_from": "000000010000000000000002", "segments": 4, "last": "000000010000000000000005",
        "last_age": 100, "gaps": [], "continuous": True,
    }
    assert run.calls[-1] == ["pgbackrest", "--stanza=main", "--output=json", "--recurse", "repo-ls",
                             "archive/main/15-1"]


def test_archive_gap(run, now):
    listing = {k: v for k, v in json.loads(recorded("repo-ls-archive")).items()
               if "/000000010000000000000004-" not in k}
    run.answers["repo-ls"] = (0, json.dumps(listing), "")
    seen = pgbackrest.health("main", max_age=3600, runas=None)
    assert seen["archive"]["gaps"] == [{"from": "000000010000000000000004", "to": "000000010000000000000004", "count": 1}]
    assert seen["problems"] == ["WAL archive 15-1 misses 1 segment(s): 000000010000000000000004"]


def seg(tli: int, number: int, suffix: str = ".lz4") -> str:
    return f"{pgbackrest.segment_name(tli, number)}-{'a' * 40}{suffix}"


def test_gaps_across_a_timeline_switch_and_a_log_boundary():
    # segments 0xFE, 0xFF of log 0 and 0x00 of log 1 are consecutive (16 MiB segments)
    files = [seg(1, 0xFD), seg(1, 0xFE), seg(2, 0xFF), seg(2, 0x100), "00000002.history",
             f"{pgbackrest.segment_name(1, 0xFF)}.partial-{'b' * 40}.lz4"]
    found = pgbackrest.gaps_in(files)
    assert found["gaps"] == [] and found["segments"] == 4
    assert (found["first"], found["last"]) == ("0000000100000000000000FD", "000000020000000100000000")
    assert pgbackrest.segment_number("000000020000000100000000") == 0x100


def test_gaps_are_ranges():
    files = [seg(1, n, "") for n in (3, 4, 8, 9, 11)]
    found = pgbackrest.gaps_in(files, start=pgbackrest.segment_name(1, 2))
    assert found["gaps"] == [
        {"from": "000000010000000000000002", "to": "000000010000000000000002", "count": 1},
        {"from": "000000010000000000000005", "to": "000000010000000000000007", "count": 3},
        {"from": "00000001000000000000000A", "to": "00000001000000000000000A", "count": 1},
    ]


def test_gaps_with_64_mib_segments():
    size = 64 * 1024 * 1024  # 64 segments per log
    files = [f"{pgbackrest.segment_name(1, n, size)}-{'c' * 40}.gz" for n in (62, 63, 64)]
    assert files[2].startswith("000000010000000100000000-")
    assert pgbackrest.gaps_in(files, wal_segment_size=size)["gaps"] == []


# ------------------------------------------------------------------ health


def test_health_ok(run, now):
    seen = pgbackrest.health("main", max_age=3600, check=True, runas=None)
    assert seen["healthy"] is True and seen["problems"] == [] and seen["checked"] is True
    assert (seen["backups"], seen["last_backup"], seen["last_type"], seen["age"]) == (2, INCR_LABEL, "incr", 100)
    assert run.calls[-1] == ["pgbackrest", "--stanza=main", "check"]


def test_health_stale(run, now):
    now.value = INCR_STOP + 3 * 86400
    seen = pgbackrest.health("main", max_age=93600, check=True, runas=None)
    assert seen["problems"] == [f"last backup {INCR_LABEL} (incr) finished 72.0h ago, more than 26.0h"]
    assert not any(c[-1] == "check" for c in run.calls)


def test_health_checksum_errors(run, now):
    raw = json.loads(recorded("info-ok"))
    raw[0]["backup"][-1]["error"] = True
    run.answers["info"] = (0, json.dumps(raw), "")
    seen = pgbackrest.health("main", runas=None)
    assert seen["problems"] == [f"last backup {INCR_LABEL} found page checksum errors (pgbackrest info --set={INCR_LABEL})"]


def test_health_check_failure_is_a_problem(run, now):
    run.answers["check"] = (82, "", "ERROR: [082]: WAL segment 000000010000000000000007 was not archived")
    seen = pgbackrest.health("main", max_age=3600, check=True, runas=None)
    assert seen["healthy"] is False and seen["checked"] is False
    assert seen["problems"] == ["pgbackrest check (stanza main) failed (exit 82): "
                                "ERROR: [082]: WAL segment 000000010000000000000007 was not archived"]
