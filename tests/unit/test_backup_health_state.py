"""Unit tests for _states/backup_health.py, against a mocked ``pgbackrest.health``.

test_pgbackrest_real.py runs the same state once against a real repository.
"""
from unittest.mock import MagicMock, patch

import backup_health
import pytest
from salt.exceptions import CommandExecutionError
from conftest import salt_utils

LABEL = "20261130-044719F_20261130-044723I"


def seen(**over):
    """``pgbackrest.health`` of a stanza whose incremental backup is 100 s old."""
    out = {
        "healthy": True, "problems": [], "stanza": "halite", "status": {"code": 0, "message": "ok"},
        "backups": 2, "backup_running": False, "last_backup": LABEL, "last_type": "incr", "age": 100,
        "archive": {"archive_id": "15-1", "checked_from": "000000010000000000000002",
                    "last": "000000010000000000000005", "gaps": [], "continuous": True},
        "checked": True,
    }
    out.update(over)
    return out


STALE = seen(healthy=False, age=200000, checked=False,
             problems=[f"last backup {LABEL} (incr) finished 55.6h ago, more than 26.0h"])
GAP = seen(healthy=False, checked=False,
           problems=["WAL archive 15-1 misses 1 segment(s): 000000010000000000000004"])


@pytest.fixture
def configure_loader_modules():
    return {
        backup_health: {
            "__salt__": {"pgbackrest.health": MagicMock()},
            "__opts__": {"test": False},
            "__utils__": salt_utils(),
        },
    }


@pytest.fixture
def clock(clock):  # pylint: disable=redefined-outer-name
    """conftest's fake clock, as ``time`` in the state."""
    with patch.object(backup_health, "time", clock):
        yield clock


def fresh_with(health, test=False, **kwargs):
    with patch.dict(backup_health.__salt__, {"pgbackrest.health": health}), \
            patch.dict(backup_health.__opts__, {"test": test}):
        return backup_health.fresh("backup-fresh", "halite", **kwargs)


def test_virtual():
    assert backup_health.__virtual__() == "backup_health"


def test_fresh_at_once(clock):
    health = MagicMock(return_value=seen())
    ret = fresh_with(health, max_age=3600, config="/etc/pgbackrest/pgbackrest.conf", runas="postgres")
    assert ret["result"] is True and ret["changes"] == {}
    assert ret["comment"] == (f"Backups are fresh: last backup {LABEL} (incr) 100s old, 2 backup(s), WAL archive 15-1 "
                              "continuous 000000010000000000000002..000000010000000000000005, pgbackrest check ok "
                              "(after 0s)")
    health.assert_called_once_with("halite", max_age=3600, check=True, config="/etc/pgbackrest/pgbackrest.conf",
                                   runas="postgres")
    assert clock.sleeps == []


def test_waits_through_a_stale_backup_and_errors(clock):
    health = MagicMock(side_effect=[
        STALE,
        CommandExecutionError("pgbackrest info (stanza halite) failed (exit 50): ERROR: [050]: unable to acquire lock"),
        seen(),
    ])
    ret = fresh_with(health, max_age=93600, timeout=600, interval=30)
    assert ret["result"] is True and ret["changes"] == {}
    assert health.call_count == 3
    assert clock.sleeps == [30, 30]
    assert "(after 60s)" in ret["comment"]


def test_stale_times_out_with_what_it_saw(clock):
    health = MagicMock(return_value=STALE)
    ret = fresh_with(health, max_age=93600, timeout=25, interval=10)
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"] == (
        "Timed out after 25s waiting for a backup of stanza halite younger than 93600s, a continuous WAL archive "
        f"and nothing failing. Last seen: last backup {LABEL} (incr) finished 55.6h ago, more than 26.0h")
    # looks at 0, 10, 20 and a last one at the deadline (25)
    assert clock.sleeps == [10, 10, 5] and health.call_count == 4


def test_archive_gap_fails_the_gate(clock):
    health = MagicMock(return_value=GAP)
    ret = fresh_with(health, timeout=0)
    assert ret["result"] is False
    assert "Last seen: WAL archive 15-1 misses 1 segment(s): 000000010000000000000004" in ret["comment"]


def test_timeout_when_pgbackrest_keeps_failing(clock):
    health = MagicMock(side_effect=CommandExecutionError(
        "pgbackrest info (stanza halite): pgBackRest is not installed here (no pgbackrest in PATH /usr/bin); "
        "install the pgbackrest package"))
    ret = fresh_with(health, timeout=20, interval=10)
    assert ret["result"] is False
    assert ret["comment"].endswith("Last seen: pgbackrest info (stanza halite): pgBackRest is not installed here "
                                   "(no pgbackrest in PATH /usr/bin); install the pgbackrest package")
    assert health.call_count == 3


def test_test_mode_looks_once_without_check_and_does_not_wait(clock):
    health = MagicMock(return_value=STALE)
    ret = fresh_with(health, test=True, max_age=93600, timeout=600)
    assert ret["result"] is None and ret["changes"] == {}
    assert ret["comment"].startswith("Would wait up to 600s for a backup of stanza halite younger than 93600s")
    assert f"(now: last backup {LABEL} (incr) finished 55.6h ago" in ret["comment"]
    health.assert_called_once_with("halite", max_age=93600, check=False)
    assert clock.sleeps == []


def test_test_mode_on_fresh_backups_has_nothing_to_do(clock):
    health = MagicMock(return_value=seen(checked=False))
    ret = fresh_with(health, test=True, timeout=600)
    assert ret["result"] is True and ret["changes"] == {}
    assert ret["comment"].endswith("(pgbackrest check not run under test=True)")
    health.assert_called_once_with("halite", max_age=backup_health.DEFAULT_MAX_AGE, check=False)


def test_check_can_be_left_out(clock):
    health = MagicMock(return_value=seen(checked=False))
    ret = fresh_with(health, check=False)
    assert ret["result"] is True and "pgbackrest check" not in ret["comment"]
    assert health.call_args.kwargs["check"] is False


def test_unknown_keyword_is_refused(clock):
    health = MagicMock()
    ret = fresh_with(health, repo_path="/var/lib/pgbackrest")
    assert ret["result"] is False
    assert ret["comment"] == "Unknown keyword(s) repo_path; allowed: config, runas, wal_segment_size"
    health.assert_not_called()
