"""The backup role's states and the backup orchestrations, rendered without a host:
which states each host gets, pgBackRest's file, and the orchestrations' order
and their refusals of bad input."""
import json

import pytest
from jinja2 import Environment, FileSystemLoader

from halite import config, view

from rendering import REPO, salt_call
from test_render import orch_steps, step_args


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-backup")


def highstate(tmp, host):
    res = salt_call(tmp, host, "Debian", "state.show_highstate")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)["local"]


def test_the_backup_host_gets_the_repository_the_drill_file_and_the_timers(tmp):
    ids = set(highstate(tmp, "backup-01"))
    assert {"pgbackrest-config-file", "pgbackrest-tls-key", "pgbackrest-server-running", "backup-repo-dir",
            "backup-drill-config-file", "backup-timer-full-active", "backup-timer-incr-active",
            "postgresql-packages"} <= ids
    # no cluster member's states there
    assert not any(i.startswith(("patroni-", "etcd-", "pgbouncer-")) for i in ids)


def test_a_db_host_gets_pgbackrest_before_patroni(tmp):
    res = salt_call(tmp, "db-01", "Debian", "state.show_lowstate")
    assert res.returncode == 0, res.stdout + res.stderr
    chunks = json.loads(res.stdout)["local"]
    order = {c["__id__"]: c["order"] for c in chunks}
    assert {"pgbackrest-config-file", "pgbackrest-server-running"} <= set(order)
    # the archive_command's binary is there before Patroni starts PostgreSQL
    assert order["pgbackrest-config-file"] < order["patroni-service-running"]
    assert "backup-repo-dir" not in order


def test_hosts_without_a_backup_role_get_no_pgbackrest(tmp):
    for host in ("jump-01", "app-01"):
        assert not any(i.startswith(("pgbackrest-", "backup-")) for i in highstate(tmp, host)), host


def render_conf(host: str) -> str:
    env = Environment(loader=FileSystemLoader(str(REPO / "salt/pgbackrest/files")))
    pillar = view.pillar_for(host, config.load())["halite"]
    return env.get_template("pgbackrest.conf.jinja").render(conf=pillar["host"]["pgbackrest"]["conf"], host=host)


def test_pgbackrest_conf_of_a_member_points_at_the_repository_over_tls():
    text = render_conf("db-02")
    assert "repo1-host=backup-01\nrepo1-host-type=tls\n" in text
    assert "tls-server-address=10.77.1.12\n" in text and "tls-server-auth=backup-01=halite\n" in text
    assert "[halite]\npg1-path=/var/lib/postgresql/15/halite\n" in text
    assert "cipher-pass" not in text  # the passphrase stays where the repository is


def test_pgbackrest_conf_of_the_backup_host_reaches_every_member():
    text = render_conf("backup-01")
    for i in (1, 2, 3):
        assert f"pg{i}-host=db-0{i}\npg{i}-host-type=tls\n" in text
        assert f"tls-server-auth=db-0{i}=halite\n" in text
    assert "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=" in text
    assert "backup-standby=y\n" in text


@pytest.mark.parametrize("sls, pillar, words", [
    ("backup", {"type": "weekly"}, "type is weekly; full, diff or incr"),
    ("restore_point", {}, "give pillar name"),
    ("restore_point", {"name": "a b"}, "give pillar name"),
    ("restore", {}, "give pillar target"),
    ("restore", {"target": {"name": "x"}, "member": "app-01"}, "member app-01 is not a db host"),
    ("restore_drill", {"target": "latest"}, "target must be a mapping"),
])
def test_orchestrations_refuse_bad_pillar(tmp, sls, pillar, words):
    res, steps = orch_steps(tmp, sls, pillar)
    assert steps is None and words in res.stdout + res.stderr, res.stdout + res.stderr


def test_restore_checks_first_stops_replicas_before_the_leader_and_restores_the_member(tmp):
    res, steps = orch_steps(tmp, "restore", {"target": {"time": "2026-11-30 08:00:00+00"}, "member": "db-02"})
    assert steps, res.stdout + res.stderr
    def after(sid):
        return [list(r.values())[0] for r in step_args(steps[sid]).get("require", [])]

    # each step waits for the one before: nothing stops before the target is checked
    assert after("restore-stop-replicas") == ["restore-plan"]
    assert after("restore-stop-leader") == ["restore-stop-replicas"]
    assert after("restore-remove-cluster") == ["restore-stop-leader"]
    assert after("restore-data") == ["restore-remove-cluster"]
    assert after("restore-recover") == ["restore-data"]
    assert after("restore-leader-start") == ["restore-recover"]
    assert after("restore-replicas-wipe") == ["restore-leader-up"]
    assert step_args(steps["restore-stop-replicas"])["kwarg"] == {
        "role": "replica", "pg_path": "/var/lib/postgresql/15/halite", "bin_dir": "/usr/lib/postgresql/15/bin",
        "api_port": 8008, "api_ca_file": "/etc/halite/tls/ca.crt"}  # Patroni's API over https (TLS by default)
    assert step_args(steps["restore-plan"])["tgt"] == "db-02"
    # as JSON text: salt-ssh hands keyword values to the host as text
    assert json.loads(step_args(steps["restore-plan"])["kwarg"]["target"]) == {"time": "2026-11-30 08:00:00+00"}
    assert step_args(steps["restore-data"])["tgt"] == "db-02"
    assert step_args(steps["restore-replicas-wipe"])["tgt"] == "db-01,db-03"
    assert after("restore-roundtrip") == ["restore-cluster-healthy"]


def test_the_drill_makes_its_own_restore_point_unless_given_a_target(tmp):
    _, steps = orch_steps(tmp, "restore_drill", {})
    point = step_args(steps["restore-drill-point"])["kwarg"]["name"]
    assert point.startswith("drill-")
    assert json.loads(step_args(steps["restore-drill"])["kwarg"]["target"]) == {"name": point}
    _, steps = orch_steps(tmp, "restore_drill", {"target": {"name": "before-42"}})
    assert set(steps) == {"restore-drill"}


def test_orch_deploys_backup_states_bring_halites_ca(tmp):
    """orch.deploy applies `backup` (not the highstate) to the backup host: that must lay down
    halite's CA, which the restore points' service verifies the members with."""
    res = salt_call(tmp, "backup-01", "Debian", "state.show_sls", "backup")
    assert res.returncode == 0, res.stdout + res.stderr
    ids = set(json.loads(res.stdout)["local"])
    assert {"halite-tls-ca", "halite-tls-cert-fresh"} <= ids
