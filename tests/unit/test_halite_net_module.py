"""Unit tests for _modules/halite_net.py: the SSH session found through a fake /proc tree
and through this test's own process tree; the firewall's verdict on the lab's real rules
(halite.view), a NAT'd control machine's, CIDR sources and destination addresses."""
from __future__ import annotations

import os
from unittest.mock import patch

import halite_net
import pytest
from salt.exceptions import CommandExecutionError

from halite import config, roster, view


class FakeProc:
    """A /proc tree with only what halite_net reads: ``<pid>/status`` (PPid) and ``<pid>/environ``."""

    def __init__(self, root):
        self.root = root

    def process(self, pid: int, ppid: int, env: dict | bytes | None = None, environ_readable: bool = True):
        d = self.root / str(pid)
        d.mkdir()
        (d / "status").write_text(f"Name:\tproc{pid}\nState:\tS (sleeping)\nPid:\t{pid}\nPPid:\t{ppid}\nUid:\t0\n")
        if environ_readable:
            raw = env if isinstance(env, bytes) else b"".join(f"{k}={v}".encode() + b"\0" for k, v in (env or {}).items())
            (d / "environ").write_bytes(raw)
        else:
            # reading a directory raises an OSError, as reading another user's environ does for non-root
            (d / "environ").mkdir()
        return self


@pytest.fixture
def proc(tmp_path):
    return FakeProc(tmp_path)


def test_salt_ssh_as_root_reads_the_session_from_its_own_environment(proc):
    # sshd -> sshd (session) -> sh -> python3 (salt-call): the shell's environment is inherited
    conn = {"SSH_CONNECTION": "10.77.0.1 51234 10.77.0.10 22", "PATH": "/usr/bin"}
    proc.process(1, 0).process(500, 1).process(600, 500).process(700, 600, conn).process(800, 700, conn)
    assert halite_net.ssh_session(proc_root=str(proc.root), pid=800) == {
        "source": "10.77.0.1", "source_port": 51234, "address": "10.77.0.10", "port": 22, "pid": 800}


def test_under_sudo_the_nearest_ancestor_with_a_session_wins(proc):
    # sudo's env_reset drops SSH_CONNECTION: python and sudo's child have none, the login shell has it
    proc.process(1, 0).process(500, 1, {"SSH_CONNECTION": "192.0.2.99 1 10.77.1.11 22"})
    proc.process(600, 500, {"SSH_CONNECTION": "10.77.1.10 40000 10.77.1.11 22"})
    proc.process(700, 600, {"SUDO_USER": "admin"}).process(800, 700, {"HOME": "/root"})
    seen = halite_net.ssh_session(proc_root=str(proc.root), pid=800)
    assert (seen["source"], seen["address"], seen["port"], seen["pid"]) == ("10.77.1.10", "10.77.1.11", 22, 600)


def test_unreadable_and_malformed_environments_are_passed_over(proc):
    proc.process(1, 0).process(600, 1, {"SSH_CONNECTION": "10.77.1.10 40000 10.77.1.11 22"})
    proc.process(650, 600, {"SSH_CONNECTION": "not a session"})
    proc.process(700, 650, environ_readable=False).process(800, 700)
    with patch.object(halite_net, "log") as log:
        assert halite_net.ssh_session(proc_root=str(proc.root), pid=800)["pid"] == 600
    assert log.warning.call_args.args[1:] == (650, "not a session")


def test_a_local_run_has_no_session(proc):
    proc.process(1, 0, {"PATH": "/usr/bin"}).process(300, 1).process(400, 300, {"TERM": "xterm"})
    assert halite_net.ssh_session(proc_root=str(proc.root), pid=400) is None


def test_a_vanished_parent_or_a_loop_ends_the_walk(proc):
    proc.process(400, 399)  # 399 is gone
    assert halite_net.ssh_session(proc_root=str(proc.root), pid=400) is None
    proc.process(10, 11).process(11, 10)
    assert halite_net.ssh_session(proc_root=str(proc.root), pid=10) is None


def test_no_proc_file_system_means_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    assert halite_net.ssh_session(proc_root=str(tmp_path / "absent")) is None


def test_this_process_is_read_from_its_live_environment(proc, monkeypatch):
    # setproctitle (Salt's process titles) writes the title over /proc/<pid>/environ: salt-call's
    # own reads "MainProcess" and zeros while os.environ still holds SSH_CONNECTION
    proc.process(1, 0).process(800, 1, {"": "MainProcess"})
    monkeypatch.setattr(halite_net.os, "getpid", lambda: 800)
    monkeypatch.setenv("SSH_CONNECTION", "10.77.0.1 51234 10.77.0.10 22")
    assert halite_net.ssh_session(proc_root=str(proc.root))["pid"] == 800
    # under sudo this process has none: its ancestors are walked from itself up
    monkeypatch.delenv("SSH_CONNECTION")
    assert halite_net.ssh_session(proc_root=str(proc.root)) is None
    proc.process(2, 1, {"SSH_CONNECTION": "10.77.1.10 40000 10.77.1.11 22"}).process(801, 2, {"SUDO_USER": "a"})
    monkeypatch.setattr(halite_net.os, "getpid", lambda: 801)
    assert halite_net.ssh_session(proc_root=str(proc.root))["pid"] == 2


def test_an_ipv4_mapped_source_is_its_ipv4_address(proc):
    proc.process(1, 0, {"SSH_CONNECTION": "::ffff:10.77.0.1 5000 ::ffff:10.77.0.10 22"})
    seen = halite_net.ssh_session(proc_root=str(proc.root), pid=1)
    assert (seen["source"], seen["address"]) == ("10.77.0.1", "10.77.0.10")


def _sessions_above(pid: int) -> list[int]:
    """The processes from ``pid`` up to init whose environment (as far as readable) has SSH_CONNECTION."""
    out, seen = [], set()
    while pid and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if any(e.startswith(b"SSH_CONNECTION=") for e in f.read().split(b"\0")):
                    out.append(pid)
        except OSError:
            pass
        with open(f"/proc/{pid}/status") as f:
            pid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_this_test_process_tree():
    """The real /proc: run over ssh, the session is this process's own SSH_CONNECTION; run
    without (CI, a local shell) None, unless a login shell above sudo/su had one."""
    seen = halite_net.ssh_session()
    if "SSH_CONNECTION" in os.environ:
        _, client_port, _, server_port = os.environ["SSH_CONNECTION"].split()
        assert seen is not None
        assert (seen["source_port"], seen["port"], seen["pid"]) == (int(client_port), int(server_port), os.getpid())
        return
    above = _sessions_above(os.getpid())
    if above:
        assert seen is not None and seen["pid"] == above[0]
    else:
        assert seen is None


# --- the firewall's verdict, on the rules halite.view computes for the lab ---

DATA = config.load()
TOPO = DATA["topology"]
JUMP = view.hosts_with_role(TOPO, "jump")[0]


def rules(host: str) -> list[dict]:
    return view.firewall_rules(DATA, host)


def lab_session(host: str) -> tuple[str, str]:
    """(source, address) of the session salt-ssh opens to ``host`` in the lab: it dials the
    roster's address; the jump host straight from the control machine (its address on that
    network), every other host through the jump host (``ssh -W``: from the jump host's
    address on that network)."""
    address = roster.roster(TOPO)[host]["host"]
    network = next(n for n, a in TOPO["hosts"][host]["addresses"].items() if a == address)
    if host == JUMP:
        return TOPO["networks"][network]["control_address"], address
    return TOPO["hosts"][JUMP]["addresses"][network], address


def test_lab_sessions_are_what_the_lab_topology_says():
    assert lab_session("jump-01") == ("10.77.0.1", "10.77.0.10")
    assert lab_session("db-01") == ("10.77.1.10", "10.77.1.11")


@pytest.mark.parametrize("host", list(TOPO["hosts"]))
def test_every_lab_host_lets_in_the_session_salt_ssh_opens_to_it(host):
    source, address = lab_session(host)
    assert halite_net.firewall_allows(rules(host), source, port=22, address=address)
    assert source in halite_net.firewall_sources(rules(host), port=22, address=address)


def test_jump_host_takes_ssh_from_the_control_machine_only():
    assert halite_net.firewall_sources(rules("jump-01")) == ["10.77.0.1"]
    assert halite_net.firewall_allows(rules("jump-01"), "10.77.0.1")
    # a control machine behind NAT: the jump host sees another address
    assert not halite_net.firewall_allows(rules("jump-01"), "192.0.2.7", port=22, address="10.77.0.10")
    # another host of the edge network is no control machine
    assert not halite_net.firewall_allows(rules("jump-01"), "10.77.0.20")


def test_db_host_takes_ssh_from_the_jump_host_only():
    assert halite_net.firewall_sources(rules("db-01")) == ["10.77.0.10", "10.77.1.10"]
    assert halite_net.firewall_allows(rules("db-01"), "10.77.1.10", address="10.77.1.11")
    assert not halite_net.firewall_allows(rules("db-01"), "10.77.0.1")  # not straight from the control machine
    assert not halite_net.firewall_allows(rules("db-01"), "10.77.1.12")  # nor from another member
    assert not halite_net.firewall_allows(rules("db-01"), "10.77.1.10", port=2222)  # a port no rule opens


def test_destination_addresses_and_cidrs():
    # node-exporter is opened on the private address only
    assert halite_net.firewall_allows(rules("app-01"), "10.77.1.40", port=9100, address="10.77.1.20")
    assert not halite_net.firewall_allows(rules("app-01"), "10.77.1.40", port=9100, address="10.77.0.20")
    assert halite_net.firewall_sources(rules("app-01"), port=9100, address="10.77.0.20") == []
    cidr = [{"name": "ssh", "ports": [22], "sources": ["192.0.2.0/24", "10.77.0.1"]}]
    assert halite_net.firewall_allows(cidr, "192.0.2.7")
    assert not halite_net.firewall_allows(cidr, "192.0.3.7")


def test_ipv6_never_passes_an_ip_saddr_ruleset():
    assert not halite_net.firewall_allows(rules("jump-01"), "2001:db8::1")
    assert halite_net.firewall_allows(rules("jump-01"), "::ffff:10.77.0.1")


def test_malformed_input_is_one_error():
    with pytest.raises(CommandExecutionError, match="'nonsense' is not an IP address"):
        halite_net.firewall_allows(rules("jump-01"), "nonsense")
    bad = [{"name": "ssh", "ports": [22], "sources": ["10.77.0.300"]}]
    with pytest.raises(CommandExecutionError, match="rule 'ssh' has a source '10.77.0.300'"):
        halite_net.firewall_allows(bad, "10.77.0.1")
