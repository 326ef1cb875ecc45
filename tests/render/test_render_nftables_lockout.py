"""base.nftables checks, before the new ruleset is laid down, that the SSH session the run came
in through will still be let in (issue 16 item 6, "no lockout"): the gate is in the SLS with the
rules the template prints, the config file requires it, and Salt's real loader runs it
(salt-call --local, a session given through SSH_CONNECTION in salt-call's own environment)."""
from __future__ import annotations

import json

import pytest

from halite import config, view

from rendering import arg, salt_call

GATE = "base-nftables-ssh-source-allowed"
DATA = config.load()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-lockout")


def show(tmp, host, family="Debian"):
    res = salt_call(tmp, host, family, "state.show_sls", "base.nftables")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(res.stdout)["local"]


@pytest.mark.parametrize("family", ["Debian", "RedHat"])
@pytest.mark.parametrize("host", ["jump-01", "db-01", "app-01"])
def test_the_gate_comes_before_the_ruleset_with_the_same_rules(tmp, host, family):
    states = show(tmp, host, family)
    assert "ssh_source_allowed" in states[GATE]["halite_net"]
    rules = arg(states, GATE, "rules")
    assert rules == arg(states, "base-nftables-config", "context")["rules"] == view.firewall_rules(DATA, host)
    assert arg(states, GATE, "host") == host
    assert arg(states, GATE, "roles") == DATA["topology"]["hosts"][host]["roles"]
    assert arg(states, GATE, "addresses") == DATA["topology"]["hosts"][host]["addresses"]
    assert {"halite_net": GATE} in arg(states, "base-nftables-config", "require")

    def order(sid):
        return next(a["order"] for a in states[sid][next(k for k in states[sid] if not k.startswith("__"))]
                    if isinstance(a, dict) and "order" in a)
    assert order(GATE) < order("base-nftables-config") < order("base-nftables-running")


def run_gate(tmp, monkeypatch, host, ssh_connection):
    """The gate as base.nftables passes it for ``host``, run by Salt's real loader in a
    salt-call whose own environment holds ``ssh_connection`` (found first: salt-call is where the walk starts)."""
    states = show(tmp, host)
    args = [f"{key}={json.dumps(arg(states, GATE, key))}" for key in ("host", "roles", "addresses", "rules")]
    monkeypatch.setenv("SSH_CONNECTION", ssh_connection)
    sync = salt_call(tmp, host, "Debian", "saltutil.sync_all")
    assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
    res = salt_call(tmp, host, "Debian", "state.single", "halite_net.ssh_source_allowed", f"name={GATE}", *args)
    (ret,) = json.loads(res.stdout)["local"].values()
    return res.returncode, ret


@pytest.mark.parametrize("host, conn", [("jump-01", "10.77.0.1 50022 10.77.0.10 22"),
                                        ("db-01", "10.77.1.10 50022 10.77.1.11 22")])
def test_the_lab_sessions_pass_through_the_real_loader(tmp, monkeypatch, host, conn):
    code, ret = run_gate(tmp, monkeypatch, host, conn)
    assert code == 0 and ret["result"] is True and ret["changes"] == {}, ret
    assert f"This run reaches {host} over SSH from {conn.split()[0]}" in ret["comment"]


def test_a_control_machine_behind_nat_is_refused_through_the_real_loader(tmp, monkeypatch):
    code, ret = run_gate(tmp, monkeypatch, "jump-01", "192.0.2.7 50022 10.77.0.10 22")
    assert code != 0 and ret["result"] is False and ret["changes"] == {}, ret
    assert "from 192.0.2.7 (to 10.77.0.10 port 22), which the new firewall would not let in" in ret["comment"]
    assert "set topology.networks.edge.control_address to 192.0.2.7" in ret["comment"]
