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
        if isinstance(answer, Exception):
            raise answer
        return answer


MEMBERS = [{"name": "db-01", "host": "10.77.1.11", "role": "leader", "state": "running", "timeline": 1},
           {"name": "db-02", "host": "10.77.1.12", "role": "sync_standby", "state": "streaming", "timeline": 1,
            "lag": 0}]


def test_watch_refreshes_until_its_count_and_survives_a_silent_cluster(capsys):
    args = argparse.Namespace(watch=True, interval=0, count=3)
    rc = cli._cluster_tables(args, Cluster([MEMBERS, RuntimeError("no Patroni API answered"), MEMBERS]))
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("(every 0 s; Ctrl-C ends)") == 3
    assert out.count("db-01") == 2 and "no answer from the cluster: no Patroni API answered" in out


def test_without_watch_one_table_and_a_silent_cluster_is_an_error():
    args = argparse.Namespace(watch=False, interval=0, count=0)
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
    assert cli.main(["config", "check"]) == 0
    assert "configuration OK (6 hosts;" in capsys.readouterr().out


def test_config_show_masks_secrets(capsys):
    assert cli.main(["config", "show", "db-01"]) == 0
    out = capsys.readouterr().out
    assert "password: '********'" in out
    from halite import config
    assert config.load()["users"]["superuser"]["password"] not in out
