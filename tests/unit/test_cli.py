"""halite/cli.py: the config commands and ``halite cluster --watch`` (with a
cluster stand-in; the lab test runs it against the real one)."""
import argparse

import pytest

from halite import cli


class Cluster:
    """Answers like failover.Cluster.members(): a table, then no answer, then a table."""

    def __init__(self, answers):
        self.answers = list(answers)

    def members(self):
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):  # KeyboardInterrupt too: Ctrl-C while asking
            raise answer
        return answer


MEMBERS = [{"name": "db-01", "host": "10.77.1.11", "role": "leader", "state": "running", "timeline": 1},
           {"name": "db-02", "host": "10.77.1.12", "role": "sync_standby", "state": "streaming", "timeline": 1,
            "lag": 0}]


@pytest.fixture
def watched(monkeypatch):
    """``halite cluster`` against a stand-in: set ``watched.answers``; sleeps are recorded, not slept."""
    from halite import failover

    state = argparse.Namespace(answers=[], sleeps=[], on_sleep=None)

    def sleep(seconds):
        state.sleeps.append(seconds)
        if len(state.sleeps) > 20:  # a watch that does not stop fails the test, not hangs it
            raise SystemExit("runaway watch")
        if state.on_sleep is not None and len(state.sleeps) >= state.on_sleep[0]:
            raise state.on_sleep[1]

    monkeypatch.setattr(failover, "Cluster", lambda: Cluster(state.answers))
    monkeypatch.setattr(cli.time, "sleep", sleep)
    return state


def test_watch_count_prints_that_many_tables_every_2_s_by_default(watched, capsys):
    watched.answers = [MEMBERS] * 3
    assert cli.main(["cluster", "--watch", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("(every 2 s; Ctrl-C ends)") == 3
    assert out.count("db-01") == 3 and out.count("sync_standby") == 3
    assert watched.sleeps == [2.0, 2.0]  # between the tables, none after the last
    assert "\033[2J" not in out  # not a terminal: no clearing, a blank line between two tables
    assert out.count("\n\n") == 2


def test_watch_seconds_sets_the_interval_and_interval_still_works(watched, capsys):
    watched.answers = [MEMBERS] * 4
    assert cli.main(["cluster", "--watch", "0.5", "--count", "2"]) == 0
    assert cli.main(["cluster", "-W", "--interval", "7", "--count", "2"]) == 0
    assert capsys.readouterr().out.count("Ctrl-C ends") == 4
    assert watched.sleeps == [0.5, 7.0]


def test_watch_on_a_terminal_clears_the_screen_before_each_table(watched, capsys, monkeypatch):
    watched.answers = [MEMBERS] * 2
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True)
    assert cli.main(["cluster", "-W", "1", "--count", "2"]) == 0
    assert capsys.readouterr().out.count("\033[H\033[2J") == 2


@pytest.mark.parametrize("argv", [["--watch", "0"], ["--watch", "-1"], ["-W", "-0.5"], ["--watch", "nan"],
                                  ["--watch", "soon"], ["--watch", "--interval", "0"], ["--watch", "--count", "-1"]])
def test_watch_rejects_an_interval_not_above_0(watched, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(["cluster", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "halite cluster: error: argument" in err
    assert "more than 0" in err or "not a number" in err or "0 (no limit) or more" in err
    assert watched.sleeps == []


def test_count_or_interval_without_watch_is_a_usage_error(watched, capsys):
    assert cli.main(["cluster", "--count", "3"]) == 2
    assert "--interval and --count go with --watch" in capsys.readouterr().err


def test_watch_prints_a_fetch_error_as_one_line_and_goes_on(watched, capsys):
    watched.answers = [MEMBERS, RuntimeError("no Patroni API answered:\nGET db-01/cluster: timed out"),
                       OSError("network is unreachable"), MEMBERS]
    assert cli.main(["cluster", "--watch", "--count", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("Ctrl-C ends") == 4 and out.count("db-01 ") == 2
    assert "no answer from the cluster: no Patroni API answered: GET db-01/cluster: timed out\n" in out
    assert "no answer from the cluster: network is unreachable\n" in out
    assert len(watched.sleeps) == 3


def test_ctrl_c_ends_the_watch_with_0_and_no_traceback(watched, capsys):
    watched.answers = [MEMBERS] * 5
    watched.on_sleep = (2, KeyboardInterrupt())  # Ctrl-C during the second wait
    assert cli.main(["cluster", "--watch"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("Ctrl-C ends") == 2
    assert "Traceback" not in captured.out + captured.err


def test_ctrl_c_while_the_cluster_is_asked_ends_with_0(watched, capsys):
    watched.answers = [MEMBERS, KeyboardInterrupt()]
    assert cli.main(["cluster", "-W", "3"]) == 0
    assert capsys.readouterr().out.count("Ctrl-C ends") == 1


def test_without_watch_one_table_and_a_silent_cluster_is_an_error(watched, capsys):
    watched.answers = [MEMBERS]
    assert cli.main(["cluster"]) == 0
    out = capsys.readouterr().out
    assert "Ctrl-C ends" not in out and out.count("db-01") == 1 and watched.sleeps == []
    watched.answers = [RuntimeError("no Patroni API answered")]
    assert cli.main(["cluster"]) == 1
    assert "halite: no Patroni API answered" in capsys.readouterr().err
    args = argparse.Namespace(watch=None, interval=None, count=0)
    with pytest.raises(RuntimeError):
        cli._cluster_tables(args, Cluster([RuntimeError("no Patroni API answered")]))


def test_config_check_exits_1_and_names_each_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("haproxy: {write_port: '5000'}\npgbouncr: {}\n")
    from halite import config
    rc = cli.main(["config", "check", "--settings", str(config.PILLAR_DIR / "lab.yaml"), str(bad)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "2 problem(s)" in err
    assert "  haproxy.write_port: is '5000' (a string); expected an integer" in err
    assert "  pgbouncr: unknown key; did you mean 'pgbouncer'?" in err


def test_config_check_passes_the_shipped_files(capsys):
    from halite import config
    hosts = len(config.load()["topology"]["hosts"])  # the shipped topology's own count, not a number kept here
    assert cli.main(["config", "check"]) == 0
    assert f"configuration OK ({hosts} hosts;" in capsys.readouterr().out


def test_config_show_masks_secrets(capsys):
    assert cli.main(["config", "show", "db-01"]) == 0
    out = capsys.readouterr().out
    assert "password: '********'" in out
    from halite import config
    assert config.load()["users"]["superuser"]["password"] not in out
