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


# ------------------------------------------------------------------ recovery targets (no pgBackRest)

FULL_STOP = 1796014042  # 2026-11-30 04:47:22+00, lsn 0/3000050; the incr stops at 04:47:24+00, lsn 0/5000100
WHERE = "pgbackrest check_target (stanza main): "


@pytest.fixture
def record():
    """The stanza record of info-ok: a full and an incr backup, archive up to segment ...05 (lsn 0/6000000)."""
    return pgbackrest.parse_info(json.loads(recorded("info-ok")), "main")[0]


def plan(record, target, **kwargs):
    kwargs.setdefault("now", INCR_STOP + 3600)
    return pgbackrest.plan_target(record, target, **kwargs)


def refused(record, target, **kwargs) -> str:
    with pytest.raises(CommandExecutionError) as err:
        plan(record, target, **kwargs)
    return str(err.value)


@pytest.mark.parametrize("text, utc", [
    ("2026-11-30T08:15:00+00:00", "2026-11-30 08:15:00+00"),
    ("2026-11-30 08:15:00+00", "2026-11-30 08:15:00+00"),
    ("2026-11-30 09:15:00.25+01", "2026-11-30 08:15:00.250000+00"),
    ("2026-11-30T03:45:00-0430", "2026-11-30 08:15:00+00"),
    ("2026-11-30T08:15:00Z", "2026-11-30 08:15:00+00"),
])
def test_time_formats(text, utc):
    assert pgbackrest._utc_text(pgbackrest.parse_time(text)) == utc


@pytest.mark.parametrize("text", ["2026-11-30 08:15:00", "2026-11-30", "30.11.2026 08:15+00", "2026-13-01 00:00:00+00",
                                  "2026-11-30 08:15+00", 1796014042, None])
def test_times_without_offset_or_malformed_are_refused(record, text):
    assert refused(record, {"time": text}) == (
        f"{WHERE}target time {text!r} is not ISO 8601 with an offset, e.g. 2026-11-30T08:15:00+00:00 "
        "or 2026-11-30 08:15:00+00")


def test_time_chooses_the_newest_backup_that_ended_by_then(record):
    assert plan(record, {"time": "2026-11-30 04:47:22+00"}) == {
        "type": "time", "target": "2026-11-30 04:47:22+00", "set": FULL_LABEL}
    assert plan(record, {"time": "2026-11-30T05:47:23+01:00"})["set"] == FULL_LABEL
    assert plan(record, {"time": "2026-11-30 04:47:24+00"})["set"] == INCR_LABEL


def test_time_bounds(record):
    assert refused(record, {"time": "2026-11-30 04:47:21.5+00"}) == (
        f"{WHERE}target time 2026-11-30 04:47:21.500000+00 is before the end of the oldest backup {FULL_LABEL}: "
        "the earliest time reachable is 2026-11-30 04:47:22+00")
    assert refused(record, {"time": "2026-11-30 06:00:00+00"}, now="2026-11-30 05:00:00+00") == (
        f"{WHERE}target time 2026-11-30 06:00:00+00 is in the future (now is 2026-11-30 05:00:00+00)")
    assert refused(record, {"time": "2026-11-30 04:50:00+00"}, archived_at=INCR_STOP + 60) == (
        f"{WHERE}target time 2026-11-30 04:50:00+00 is after the newest WAL in the archive "
        "(segment 000000010000000000000005, archived 2026-11-30 04:48:24+00), so recovery could not stop there; "
        "wait for archiving, or check it with pgbackrest.check")


def test_lsn_chooses_the_newest_backup_that_ended_before_it(record):
    assert plan(record, {"lsn": "0/3000050"}) == {"type": "lsn", "target": "0/3000050", "set": FULL_LABEL}
    assert plan(record, {"lsn": "0/50000ff"}) == {"type": "lsn", "target": "0/50000FF", "set": FULL_LABEL}
    assert plan(record, {"lsn": "0/5FFFFFF"})["set"] == INCR_LABEL


def test_lsn_bounds(record):
    assert refused(record, {"lsn": "0/300004F"}) == (
        f"{WHERE}target lsn 0/300004F is before the end of the oldest backup {FULL_LABEL} (lsn 0/3000050): "
        "the earliest lsn reachable is 0/3000050")
    assert refused(record, {"lsn": "0/6000000"}) == (
        f"{WHERE}target lsn 0/6000000 is beyond the newest WAL in the archive (segment 000000010000000000000005, "
        "which ends before lsn 0/6000000); wait for archiving, or check it with pgbackrest.check")
    assert refused(record, {"lsn": "3000050"}) == f"{WHERE}target lsn '3000050' is not an LSN such as 0/3000028"


def test_names(record):
    assert plan(record, {"name": "rp1"}) == {"type": "name", "target": "rp1", "set": INCR_LABEL}
    assert plan(record, {"name": "rp1"}, known_names=["rp0", "rp1"])["set"] == INCR_LABEL
    assert plan(record, {"name": "rp1"}, known_names={"rp1": "0/4000000"})["set"] == FULL_LABEL
    # as restore_points returns them: name -> point
    assert plan(record, {"name": "rp1"}, known_names={"rp1": {"name": "rp1", "lsn": "0/5000200"}})["set"] == INCR_LABEL
    assert refused(record, {"name": "rp2"}, known_names={"rp0": "0/3000100", "rp1": "0/4000000"}) == (
        f"{WHERE}restore point rp2 is not known; the known ones are rp0, rp1")
    assert refused(record, {"name": "rp2"}, known_names=[]) == (
        f"{WHERE}restore point rp2 is not known; the known ones are (none recorded)")
    assert refused(record, {"name": "rp0"}, known_names={"rp0": "0/2000000"}) == (
        f"{WHERE}restore point rp0 (lsn 0/2000000) is before the end of the oldest backup {FULL_LABEL} "
        "(lsn 0/3000050): the earliest lsn reachable is 0/3000050")
    assert refused(record, {"name": "rp0"}, known_names={"rp0": "0/7000000"}).startswith(
        f"{WHERE}restore point rp0 (lsn 0/7000000) is beyond the newest WAL in the archive")
    assert refused(record, {"name": "a b"}) == (
        f"{WHERE}restore point name 'a b' must be 1 to 63 letters, digits, '.', '_' or '-'")


def test_latest(record):
    assert plan(record, {"latest": True}) == {"type": "default", "target": None, "set": INCR_LABEL}
    assert refused(record, {"latest": "yes"}) == f"{WHERE}target latest must be true, not 'yes'"


@pytest.mark.parametrize("target, message", [
    ({}, "the target gives none; a target has exactly one of time, lsn, name, latest"),
    ({"time": "2026-11-30 04:47:23+00", "lsn": "0/3000050"},
     "the target gives time and lsn; a target has exactly one of time, lsn, name, latest"),
    ({"xid": "1234"}, "unknown target key xid; a target has exactly one of time, lsn, name, latest"),
    ("latest", "the target must be a dict with one of time, lsn, name, latest, not 'latest'"),
])
def test_malformed_targets(record, target, message):
    assert refused(record, target) == WHERE + message


def test_no_backup_no_target(record):
    record["backups"] = []
    assert refused(record, {"latest": True}) == f"{WHERE}the stanza has no backup yet, so nothing can be restored"


def test_a_forced_set_must_reach_the_target(record):
    assert plan(record, {"lsn": "0/5000100"}, set=FULL_LABEL)["set"] == FULL_LABEL
    assert refused(record, {"lsn": "0/4000000"}, set=INCR_LABEL) == (
        f"{WHERE}backup set {INCR_LABEL} ends after the target 0/4000000; sets that can reach it: {FULL_LABEL}")
    assert refused(record, {"latest": True}, set="20250101-000000F") == (
        f"{WHERE}backup set 20250101-000000F is not in the repository; the sets are {FULL_LABEL}, {INCR_LABEL}")


def test_check_target_lists_the_newest_segment_only_for_a_time(run, now):
    run.answers["repo-ls"] = (0, json.dumps({
        ".": {"type": "path"},
        "000000010000000000000005-fff751829656ca30bce24fda85e4a6f1729b5b25.lz4": {
            "type": "file", "size": 1, "time": INCR_STOP + 5}}), "")
    assert pgbackrest.check_target("main", {"lsn": "0/3000050"}, runas=None)["set"] == FULL_LABEL
    assert [c for c in run.calls if "repo-ls" in c] == []
    with pytest.raises(CommandExecutionError, match=r"is after the newest WAL in the archive \(segment "
                                                    r"000000010000000000000005, archived 2026-11-30 04:47:29\+00\)"):
        pgbackrest.check_target("main", {"time": "2026-11-30 04:47:30+00"}, runas=None)
    assert run.calls[-1] == ["pgbackrest", "--stanza=main", "--output=json", "repo-ls",
                             "archive/main/15-1/0000000100000000"]


def test_restore_arguments(run, tmp_path):
    run.answers["restore"] = (0, "", "")
    done = pgbackrest.restore("main", str(tmp_path / "data"), target={"lsn": "0/4000000"}, archive_mode="off",
                              options=["--process-max=2"], runas=None)
    assert done["set"] == FULL_LABEL and (done["type"], done["target"]) == ("lsn", "0/4000000")
    assert run.calls[-1] == ["pgbackrest", "--stanza=main", f"--pg1-path={tmp_path / 'data'}", f"--set={FULL_LABEL}",
                             "--type=lsn", "--target=0/4000000", "--target-action=promote", "--archive-mode=off",
                             "--process-max=2", "restore"]
    # latest: no target, no action; --delta only where there are files to compare
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PG_VERSION").write_text("15\n")
    pgbackrest.restore("main", str(tmp_path / "data"), runas=None)
    assert run.calls[-1] == ["pgbackrest", "--stanza=main", f"--pg1-path={tmp_path / 'data'}", "--delta",
                             f"--set={INCR_LABEL}", "--type=default", "restore"]


@pytest.mark.parametrize("kwargs, message", [
    ({"pg_path": "data"}, "pg_path must be an absolute path, not 'data'"),
    ({"target_action": "stop"}, "target_action must be one of promote, pause, shutdown, not 'stop'"),
    ({"archive_mode": "on"}, "archive_mode must be off or preserve, not 'on'"),
    ({"options": ["-x"]}, "options are pgbackrest options such as --process-max=4, not ['-x']"),
])
def test_restore_refuses_bad_arguments(run, kwargs, message):
    kwargs = dict({"pg_path": "/srv/pg"}, **kwargs)
    with pytest.raises(CommandExecutionError) as err:
        pgbackrest.restore("main", runas=None, **kwargs)
    assert str(err.value) == "pgbackrest restore (stanza main): " + message
    assert run.calls == []


# ------------------------------------------------------------------ restore points (no PostgreSQL)

@pytest.mark.parametrize("name", ["", "a" * 64, "a b", "rp/1", "rp'1", None])
def test_restore_point_names(name):
    with pytest.raises(CommandExecutionError, match=r"restore point name .* must be 1 to 63 letters, digits"):
        pgbackrest.restore_point(name, "carsale")


def test_restore_point_refuses_a_replica(monkeypatch):
    asked = []

    def fake_json(dsn, sql, **kwargs):
        asked.append((dsn, sql))
        return True  # pg_is_in_recovery()

    monkeypatch.setattr(pgbackrest.pg_move, "_json", fake_json)
    with pytest.raises(CommandExecutionError) as err:
        pgbackrest.restore_point("rp1", "carsale", runas="postgres", host="/run/postgresql", port=5433)
    assert str(err.value) == ("pgbackrest restore_point rp1: the server at /run/postgresql port 5433 is a replica "
                              "(in recovery); make restore points on the primary")
    assert asked == [("host=/run/postgresql port=5433 dbname=carsale user=postgres",
                      "SELECT to_json(pg_is_in_recovery());")]


def test_restore_point_lock_timeout_must_be_positive():
    with pytest.raises(CommandExecutionError, match=r"lock_timeout must be a positive number of seconds, not 0"):
        pgbackrest.restore_point("rp1", "carsale", lock_timeout=0)


# ------------------------------------------------------------------ the drill's pieces (no PostgreSQL)

def test_drill_settings_follow_the_control_file():
    control = {"max_connections setting": "300", "max_locks_per_xact setting": "128",
               "max_prepared_xacts setting": "0", "max_worker_processes setting": "8", "max_wal_senders setting": "10"}
    settings = pgbackrest._drill_settings("/var/lib/halite-drill/main", 5499, control)
    assert settings["listen_addresses"] == "" and settings["port"] == 5499
    assert settings["unix_socket_directories"] == "/var/lib/halite-drill/main"
    assert settings["archive_mode"] == "off" and settings["hot_standby"] == "off"
    assert (settings["max_connections"], settings["max_locks_per_transaction"], settings["max_prepared_transactions"],
            settings["max_worker_processes"], settings["max_wal_senders"]) == (300, 128, 0, 8, 10)
    assert set(pgbackrest._ISOLATION) <= set(settings)


def test_drill_compares_table_by_table():
    seen = {"public.a": {"rows": 1, "md5": "x"}, "public.b": {"rows": 2, "md5": "y"}, "public.c": {"rows": 3, "md5": "z"}}
    expected = {"public.a": {"rows": 1, "md5": "x"}, "public.b": {"rows": 2, "md5": "other"},
                "public.d": {"rows": 4, "md5": "w"}}
    tables, differences = pgbackrest._compare_tables(seen, expected)
    assert {t: v["ok"] for t, v in tables.items()} == {"public.a": True, "public.b": False, "public.c": False,
                                                         "public.d": False}
    assert differences == ["public.b: 2 rows as expected, but the contents differ (checksum)",
                           "public.c: in the restored database (3 rows) but not expected",
                           "public.d: missing from the restored database (4 rows expected)"]
    tables, differences = pgbackrest._compare_tables(seen, None)
    assert differences == [] and all(v["ok"] and v["expected"] is None for v in tables.values())


def test_drill_refuses_a_folder_it_did_not_make(run, tmp_path):
    foreign = tmp_path / "main"
    foreign.mkdir()
    (foreign / "PG_VERSION").write_text("15\n")
    with pytest.raises(CommandExecutionError) as err:
        pgbackrest.drill("main", scratch=str(tmp_path), runas=None)
    assert str(err.value) == (f"restore drill: {foreign} exists and is not a drill's copy (no halite-drill.conf in it): "
                              "remove it yourself, or give another scratch folder")
    assert (foreign / "PG_VERSION").exists()
    assert not [c for c in run.calls if "restore" in c]


def test_drill_needs_the_database_of_the_expected_checksums(run):
    with pytest.raises(CommandExecutionError, match=r"^restore drill: expected checksums need database="):
        pgbackrest.drill("main", expected={"public.cars": {"rows": 1, "md5": "x"}}, runas=None)
    assert run.calls == []
