"""halite.faults's process faults, with the host's commands recorded (no lab)."""
from __future__ import annotations

import types

import pytest

from halite import faults


@pytest.fixture
def commands(monkeypatch):
    seen = []

    def nsenter(host, cmd, namespaces="-a", check=True):
        seen.append((host, cmd))
        pid = "" if cmd[-1] == "stopped-unit" else "4242\n"
        return types.SimpleNamespace(stdout=pid if cmd[0] == "systemctl" else "")

    monkeypatch.setattr(faults, "_nsenter", nsenter)
    return seen


@pytest.mark.parametrize("action, unit", [("patroni-kill", "patroni"), ("pgbouncer-kill", "pgbouncer")])
def test_a_kill_sends_sigkill_to_the_units_main_process(commands, action, unit):
    assert faults.ACTIONS[action]("db-01") == f"db-01: {unit} 4242 killed (SIGKILL); systemd restarts it"
    assert commands == [("db-01", ["systemctl", "show", "-p", "MainPID", "--value", unit]),
                        ("db-01", ["kill", "-KILL", "4242"])]


def test_freeze_of_the_pooler_stops_pgbouncer_only(commands):
    assert faults.freeze("db-02", "pgbouncer") == "db-02: pgbouncer frozen (pids 4242)"
    assert commands[-1] == ("db-02", ["kill", "-STOP", "4242"])
    with pytest.raises(RuntimeError, match="patroni, postgres, pgbouncer or host"):
        faults.freeze("db-02", "etcd")


def test_a_unit_that_is_not_running_is_named(commands):
    with pytest.raises(RuntimeError, match="db-01: stopped-unit is not running"):
        faults.unit_pid("db-01", "stopped-unit")


def test_haproxy_kill_kills_every_process_of_its_unit(commands):
    assert faults.ACTIONS["haproxy-kill"]("app-01").startswith("app-01: haproxy killed (SIGKILL)")
    assert commands == [("app-01", ["systemctl", "kill", "--signal=KILL", "haproxy"])]
