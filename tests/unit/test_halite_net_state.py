"""Unit tests for _states/halite_net.py: the SSH-source gate before a firewall change, with
``halite_net.ssh_session`` faked through ``__salt__`` and the firewall's verdict from the
module's own functions on the lab's real rules (halite.view)."""
from __future__ import annotations

import importlib.util
from unittest.mock import MagicMock, patch

import halite_net as net_module  # _modules/halite_net.py: _modules comes before _states on sys.path (conftest)
import pytest
from salt.exceptions import CommandExecutionError
from conftest import REPO

from halite import config, view

# the state module has the execution module's name: load it from its file under a name of its own
_spec = importlib.util.spec_from_file_location("halite_net_state", REPO / "_states" / "halite_net.py")
net_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(net_state)

DATA = config.load()
TOPO = DATA["topology"]


def session(source, address, port=22):
    return {"source": source, "source_port": 50000, "address": address, "port": port, "pid": 4242}


def salt_funcs(seen):
    return {"halite_net.ssh_session": MagicMock(return_value=seen),
            "halite_net.firewall_allows": net_module.firewall_allows,
            "halite_net.firewall_sources": net_module.firewall_sources}


@pytest.fixture
def configure_loader_modules():
    return {net_state: {"__salt__": salt_funcs(None), "__opts__": {"test": False, "id": "jump-01"}}}


def gate(host, seen, test=False, **over):
    kwargs = {"host": host, "roles": TOPO["hosts"][host]["roles"], "addresses": TOPO["hosts"][host]["addresses"],
              "rules": view.firewall_rules(DATA, host)}
    kwargs.update(over)
    with patch.dict(net_state.__salt__, salt_funcs(seen)), patch.dict(net_state.__opts__, {"test": test}):
        return net_state.ssh_source_allowed("base-nftables-ssh-source-allowed", **kwargs)


def test_virtual():
    assert net_state.__virtual__() == "halite_net"


@pytest.mark.parametrize("test", [False, True])
@pytest.mark.parametrize("host, source, address", [("jump-01", "10.77.0.1", "10.77.0.10"),
                                                   ("db-01", "10.77.1.10", "10.77.1.11"),
                                                   ("app-01", "10.77.1.10", "10.77.1.20")])
def test_the_lab_sessions_pass_with_no_changes(host, source, address, test):
    ret = gate(host, session(source, address), test=test)
    assert ret["result"] is True, ret
    assert ret["changes"] == {}
    assert ret["comment"].startswith(f"This run reaches {host} over SSH from {source} (to {address} port 22); "
                                     "the new firewall allows it")


@pytest.mark.parametrize("test", [False, True])
def test_a_control_machine_behind_nat_is_stopped_before_it_locks_itself_out(test):
    ret = gate("jump-01", session("192.0.2.7", "10.77.0.10"), test=test)
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert ret["comment"] == (
        "This run reaches jump-01 over SSH from 192.0.2.7 (to 10.77.0.10 port 22), which the new firewall would "
        "not let in: it allows SSH there from 10.77.0.1 only. The firewall is left as it is, so the next run can "
        "still get in. If 192.0.2.7 is the control machine as jump-01 sees it (behind NAT, say), set "
        "topology.networks.edge.control_address to 192.0.2.7 and run again; SSH to the jump host is allowed "
        "from the control machine's addresses only.")


def test_a_db_host_reached_from_elsewhere_names_the_jump_host():
    ret = gate("db-01", session("10.77.1.99", "10.77.1.11"))
    assert ret["result"] is False
    assert "it allows SSH there from 10.77.0.10, 10.77.1.10 only" in ret["comment"]
    assert "db-01 takes SSH from the jump host's own addresses only" in ret["comment"]
    assert "changing the source to 10.77.1.99?" in ret["comment"]


def test_an_sshd_port_the_firewall_does_not_open():
    ret = gate("db-01", session("10.77.1.10", "10.77.1.11", port=2222))
    assert ret["result"] is False
    assert "which the new firewall would not let in: it opens port 2222 on 10.77.1.11 to no one." in ret["comment"]
    assert ret["comment"].endswith("halite's firewall opens SSH on port 22 only: let sshd listen there, "
                                   "or reach the host there.")


def test_jump_host_reached_on_an_address_the_topology_does_not_list():
    ret = gate("jump-01", session("192.0.2.7", "172.17.0.5"))
    assert ret["result"] is False
    assert "topology.networks.<the network the control machine reaches the jump host on>.control_address" \
        in ret["comment"]


@pytest.mark.parametrize("test", [False, True])
def test_a_local_run_passes_and_says_it_could_not_check(test):
    ret = gate("jump-01", None, test=test)
    assert ret["result"] is True
    assert ret["changes"] == {}
    assert ret["comment"] == (
        "No SSH session among this run's processes on jump-01 (a local run, such as salt-call --local): its "
        "source cannot be checked, so nothing stops the firewall change; the new firewall allows SSH on port 22 "
        "from 10.77.0.1")


def test_the_rules_passed_are_the_rules_checked():
    allows, sources = MagicMock(return_value=True), MagicMock(return_value=["10.77.0.1"])
    rules = [{"name": "ssh", "ports": [22], "sources": ["10.77.0.1"]}]
    funcs = {"halite_net.ssh_session": MagicMock(return_value=session("10.77.0.1", "10.77.0.10")),
             "halite_net.firewall_allows": allows, "halite_net.firewall_sources": sources}
    with patch.dict(net_state.__salt__, funcs):
        ret = net_state.ssh_source_allowed("gate", rules=rules)
    assert ret["result"] is True
    assert "This run reaches jump-01 over SSH" in ret["comment"]  # host defaults to the minion id
    allows.assert_called_once_with(rules, "10.77.0.1", port=22, address="10.77.0.10")
    sources.assert_called_once_with(rules, port=22, address="10.77.0.10")


def test_a_module_error_fails_the_gate():
    funcs = salt_funcs(session("10.77.0.1", "10.77.0.10"))
    funcs["halite_net.firewall_allows"] = MagicMock(side_effect=CommandExecutionError("rule 'ssh' is broken"))
    with patch.dict(net_state.__salt__, funcs):
        ret = net_state.ssh_source_allowed("gate", rules=[])
    assert ret == {"name": "gate", "changes": {}, "result": False,
                   "comment": "Cannot check this run's SSH source against the new firewall: rule 'ssh' is broken"}
