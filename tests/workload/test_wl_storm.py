"""halite.stormbench against a throwaway PostgreSQL (max_connections 50): a storm that
fits is counted as connected, one beyond the server's limit is counted as failed with
PostgreSQL's own words."""
from __future__ import annotations

import pytest

from halite import stormbench


def test_a_storm_that_fits_connects_every_client_and_each_runs_its_query(ensure_up, monkeypatch):
    monkeypatch.setattr(stormbench, "CONNECT_TIMEOUT", 10)
    row = stormbench.storm(ensure_up.dsn, 30, procs=2, port="write")
    assert (row["clients"], row["connected"], row["failed"], row["queries_ok"]) == (30, 30, 0, 30)
    assert 0 < row["connect_p50_ms"] <= row["connect_p99_ms"] <= row["connect_max_ms"]
    assert row["client_cpu_ms_per_client"] > 0


def test_clients_beyond_the_servers_limit_are_counted_failed_with_the_servers_words(ensure_up, monkeypatch):
    monkeypatch.setattr(stormbench, "CONNECT_TIMEOUT", 10)
    row = stormbench.storm(ensure_up.dsn, 80, procs=2, port="read")
    assert row["connected"] + row["failed"] == 80 and 30 <= row["connected"] <= 50, row
    assert any("too many clients" in e or "remaining connection slots" in e for e in row["errors"]), row


def test_summary_of_answers():
    answers = [(0.010, None, True), (0.030, None, True), (0.020, None, False), (None, "refused", False),
               (None, "refused", False)]
    row = stormbench.summarize("read", 5, answers, 1.23, 0.05)
    assert row == {"port": "read", "clients": 5, "connected": 3, "failed": 2, "connect_p50_ms": 20.0,
                   "connect_p99_ms": 30.0, "connect_max_ms": 30.0, "queries_ok": 2, "wall_s": 1.2,
                   "client_cpu_ms_per_client": 10.0, "errors": {"refused": 2}}


@pytest.mark.parametrize("argv, message", [
    (["--clients", "many"], "whole numbers"), (["--clients", "0"], "from 1 to 20000"),
    (["--ports", "both"], "write and/or read"), (["--procs", "0"], "from 1 to 32")])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        stormbench.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
