"""The typed model (halite/model.py), backups: the ``backup`` section's defaults
and its schedules, checked as systemd OnCalendar expressions (and, where
systemd-analyze is installed, against systemd's own parser)."""
import copy
import shutil
import subprocess

import pytest

from halite import config, model


from conftest import good, problems  # noqa: E402,F401  (shared: the shipped description, its problems)


def test_backup_defaults(good):
    _, settings = good
    assert settings["backup"] == {
        "stanza": "halite", "repo_path": "/var/lib/pgbackrest", "cipher_type": "aes-256-cbc",
        "cipher_pass": None, "retention_full": 2, "retention_diff": 7,
        "schedule_full": "Sun *-*-* 01:00:00", "schedule_incr": "Mon..Sat *-*-* 01:00:00",
        "max_age": 93600, "tls_port": 8432, "archive_timeout": 60, "process_max": 2, "compress_type": "lz4",
        "drill_port": 5499,
    }


def test_every_backup_field_has_a_description():
    assert all(f.description for f in model.Backup.model_fields.values())


@pytest.mark.parametrize("key,value,words", [
    ("schedule_full", "Sun 25:00", "systemd OnCalendar expression"),
    ("schedule_incr", "every night", "'every night'"),
    ("cipher_type", "aes-128-cbc", "aes-256-cbc"),
    ("retention_full", 0, "is 0; must be at least 1"),
    ("repo_path", "var/lib/pgbackrest", "absolute path"),
    ("max_age", 30, "is 30; must be at least 60"),
    ("stanza", "my stanza", "a name is letters"),
])
def test_bad_backup_settings_are_refused(good, key, value, words):
    topo, settings = copy.deepcopy(good)
    settings["backup"][key] = value
    (found,) = problems(topo, settings)
    assert found[0] == f"backup.{key}"
    assert words in found[1]


VALID = ["Sun *-*-* 01:00:00", "Mon..Sat *-*-* 01:00:00", "daily", "Weekly", "mon 01:00", "Monday 01:00",
         "Mon,Wed..Fri 3:15", "*-*-* *:0/15", "*-*~01 02:00", "2027-*-* 01:00", "Sun 01:00 UTC",
         "Sun 01:00 Europe/Berlin", "01:00:30.5", "Sun", "*-*-01", "quarterly", "*:*", "Sun 1:2:3",
         "*-01,04,07,10-01 00:00", "Sat,Sun 02..04:00"]
INVALID = ["", " daily", "Sun 25:00", "Sun *-*-* 24:00", "*-*-*/2 01:00", "Sat..Mon 01:00", "1969-01-01",
           "*-13-01", "Sun,,Mon 01:00", "*-*-* 01:00 Mars/Base", "Mon .. Fri 01:00", "12:00 Sun", "Sun Mon",
           "01:00:00:00", "*-*-00", "0/0:00", "fortnightly", "Sun  01:00"]


@pytest.mark.parametrize("expr", VALID)
def test_on_calendar_accepts(expr):
    assert model._on_calendar(expr) == expr


@pytest.mark.parametrize("expr", INVALID)
def test_on_calendar_refuses(expr):
    with pytest.raises(ValueError, match="systemd OnCalendar expression"):
        model._on_calendar(expr)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_on_calendar_agrees_with_systemd():
    def systemd_accepts(expr):
        return subprocess.run(["systemd-analyze", "calendar", expr], capture_output=True, check=False).returncode == 0

    assert [e for e in VALID if not systemd_accepts(e)] == []
    # "Sun  01:00" (two spaces) is fine for systemd; the model keeps to single spaces
    assert [e for e in INVALID if systemd_accepts(e)] == ["Sun  01:00"]
