"""
Where this Salt run comes from on the network, and whether a firewall lets it in.

salt-ssh runs its Python under the login shell of an sshd session, possibly
under ``sudo`` (which drops ``SSH_CONNECTION`` from the environment it passes
on). :func:`ssh_session` therefore walks this process's ancestors through
``/proc/<pid>/status`` (``PPid:``) and reads ``SSH_CONNECTION`` from each one's
``/proc/<pid>/environ`` (root reads them all), nearest first.

:func:`firewall_allows` answers from halite's firewall rules as the host's view
gives them (``halite:host:firewall``, what ``base/files/nftables.conf.jinja``
prints): ``[{"name", "ports", "sources", "addresses"?}, ...]``, sources being
IPv4 addresses or CIDRs. The state ``halite_net.ssh_source_allowed`` puts the
two together before a new ruleset is laid down, so a run never locks itself out.

Every failure raises :class:`salt.exceptions.CommandExecutionError`.
"""
from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "halite_net"

#: more ancestors than any login shell, sudo and salt-ssh's thin stack add up to
_MAX_DEPTH = 64


def __virtual__():
    return __virtualname__


def _parent(proc: Path, pid: int) -> int | None:
    """``pid``'s parent from ``/proc/<pid>/status``, or None when it is gone or has none."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("PPid:"):
            try:
                return int(line.split(":", 1)[1].strip()) or None
            except ValueError:
                return None
    return None


def _ssh_connection(proc: Path, pid: int) -> str | None:
    """``SSH_CONNECTION`` from ``/proc/<pid>/environ``, or None (unset, unreadable, gone)."""
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError as exc:  # another user's process when not root, or one that just ended
        log.debug("halite_net: cannot read the environment of pid %s: %s", pid, exc)
        return None
    for entry in raw.split(b"\0"):
        if entry.startswith(b"SSH_CONNECTION="):
            return entry.split(b"=", 1)[1].decode(errors="replace")
    return None


def _parse(value: str) -> dict | None:
    """``"client_ip client_port server_ip server_port"`` as a dict, or None if malformed."""
    fields = value.split()
    if len(fields) != 4 or not fields[1].isdigit() or not fields[3].isdigit():
        return None
    try:
        source, address = (str(_address(fields[0])), str(_address(fields[2])))
    except CommandExecutionError:
        return None
    return {"source": source, "source_port": int(fields[1]), "address": address, "port": int(fields[3])}


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address; an IPv4-mapped IPv6 one (``::ffff:10.0.0.1``) as the IPv4 address it is."""
    try:
        addr = ipaddress.ip_address(str(text).strip())
    except ValueError as exc:
        raise CommandExecutionError(f"{text!r} is not an IP address") from exc
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def ssh_session(proc_root="/proc", pid=None):
    """The SSH session this run came in through: ``SSH_CONNECTION`` of the nearest ancestor that has it.

    Starts at ``pid`` itself (by default this process, whose own environment is
    read first) and walks up through each process's parent. A process whose
    environment cannot be read (not root, it just ended, or its title was set
    over it) is passed over; a malformed ``SSH_CONNECTION`` too (logged).

    :param proc_root: where the proc file system is mounted (tests give a fake tree).
    :param pid: the process to start from; default this one.
    :returns: ``{"source", "source_port", "address", "port", "pid"}`` (``address``/``port``:
        where the session landed on this host; ``pid``: the process it was read from),
        or None when no ancestor has an SSH session (a local run, ``salt-call --local``
        on the console) or ``proc_root`` does not exist.

    CLI Example:

    .. code-block:: bash

        salt-ssh jump-01 halite_net.ssh_session
    """
    if pid is None:
        # this process first, from its live environment: /proc/<pid>/environ is the memory the
        # environment started in, which setproctitle (Salt's process titles) overwrites: seen
        # empty for salt-call here, with SSH_CONNECTION still in os.environ
        session = _parse(os.environ.get("SSH_CONNECTION", ""))
        if session is not None:
            session["pid"] = os.getpid()
            return session
    proc = Path(proc_root)
    if not proc.is_dir():
        log.info("halite_net: %s does not exist, the SSH session cannot be found", proc)
        return None
    current = int(pid) if pid is not None else os.getpid()
    seen: set[int] = set()
    while current and current not in seen and len(seen) < _MAX_DEPTH:
        seen.add(current)
        value = _ssh_connection(proc, current)
        if value is not None:
            session = _parse(value)
            if session is not None:
                session["pid"] = current
                return session
            log.warning("halite_net: pid %s has a malformed SSH_CONNECTION %r, looking further up", current, value)
        current = _parent(proc, current)
    return None


def _networks(rule: dict) -> list:
    out = []
    for src in rule.get("sources") or []:
        try:
            out.append(ipaddress.ip_network(str(src).strip(), strict=False))
        except ValueError as exc:
            raise CommandExecutionError(f"firewall rule {rule.get('name')!r} has a source {src!r} "
                                        "that is neither an address nor a CIDR") from exc
    return out


def _opens(rule: dict, port: int, address) -> bool:
    """Whether ``rule`` opens ``port`` on ``address`` (a rule without ``addresses``: on every address)."""
    if int(port) not in {int(p) for p in rule.get("ports") or []}:
        return False
    if address is None or not rule.get("addresses"):
        return True
    return _address(address) in {_address(a) for a in rule["addresses"]}


def firewall_sources(rules, port=22, address=None):
    """Every source that ``rules`` let reach ``port`` (on ``address``, if given), in the rules' order.

    :param rules: halite's firewall rules (``halite:host:firewall``).
    :param port: the TCP port; 22 unless sshd listens elsewhere.
    :param address: the host's address the connection goes to; None: any.
    :returns: the sources as written in the rules (addresses or CIDRs), each once.
    :raises CommandExecutionError: a malformed rule.

    CLI Example:

    .. code-block:: bash

        salt-call --local halite_net.firewall_sources '[{"name": "ssh", "ports": [22], "sources": ["10.77.1.10"]}]'
        salt-call --local halite_net.firewall_sources '[...]' port=2222 address=10.77.1.11
    """
    out: list[str] = []
    for rule in rules or []:
        if _opens(rule, port, address):
            out.extend(str(s) for s in rule.get("sources") or [] if str(s) not in out)
    return out


def firewall_allows(rules, source, port=22, address=None):
    """Whether halite's firewall ``rules`` accept a new TCP connection from ``source`` to ``port``.

    Mirrors what the template prints: a rule accepts when the port is one of its
    ``ports``, the source is one of its ``sources`` (an address, or inside a CIDR)
    and, when the rule names ``addresses``, the destination is one of them. The
    ruleset matches ``ip saddr`` only, so an IPv6 source is never accepted (an
    IPv4-mapped one counts as its IPv4 address).

    :param rules: halite's firewall rules (``halite:host:firewall``).
    :param source: the connecting address.
    :param port: the TCP port; 22 unless sshd listens elsewhere.
    :param address: the host's address the connection goes to; None: any.
    :returns: True or False.
    :raises CommandExecutionError: ``source`` is not an address, or a rule is malformed.

    CLI Example:

    .. code-block:: bash

        salt-call --local halite_net.firewall_allows '[{"name": "ssh", "ports": [22], "sources": ["10.77.0.1"]}]' 10.77.0.1
    """
    src = _address(source)
    for rule in rules or []:
        if _opens(rule, port, address) and any(src in net for net in _networks(rule)):
            return True
    return False
