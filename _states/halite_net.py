"""
A gate before a firewall change: the SSH session this run came in through
must still be let in by the new rules, or the run stops and changes nothing.

The case it is for: a control machine behind NAT, whose address as the jump host
sees it is not the topology's ``control_address``; without this gate its first
run lays down a ruleset that shuts the next run out of the jump host.

It only asks the ``halite_net`` execution module (where the session comes from,
what the rules allow) and never changes anything. The rules are the ones the
nftables template prints, passed as data.

.. code-block:: yaml

    base-nftables-ssh-source-allowed:
      halite_net.ssh_source_allowed:
        - host: {{ hl.host.name }}
        - roles: {{ hl.host.roles|json }}
        - addresses: {{ hl.topology.hosts[hl.host.name].addresses|json }}
        - rules: {{ hl.host.firewall|json }}
"""
from __future__ import annotations

from salt.exceptions import CommandExecutionError

__virtualname__ = "halite_net"


def __virtual__():
    if "halite_net.ssh_session" in __salt__:
        return __virtualname__
    return (False, "the halite_net state needs the halite_net execution module (_modules/halite_net.py)")


def _listed(items: list[str]) -> str:
    return ", ".join(items) if items else "nowhere"


def _network_of(address: str, addresses: dict | None) -> str | None:
    """The topology network on which ``address`` is this host's, if any."""
    for network, addr in (addresses or {}).items():
        if str(addr) == address:
            return network
    return None


def _remedy(host: str, session: dict, allowed: list[str], roles: list, addresses: dict | None) -> str:
    """What to change in the topology, for the jump host or any other host."""
    source, port = session["source"], session["port"]
    if not allowed:
        return ("halite's firewall opens SSH on port 22 only: let sshd listen there, or reach the host there.")
    if "jump" in (roles or []):
        network = _network_of(session["address"], addresses)
        key = (f"topology.networks.{network}.control_address" if network else
               "topology.networks.<the network the control machine reaches the jump host on>.control_address")
        return (f"If {source} is the control machine as {host} sees it (behind NAT, say), set {key} to {source} "
                "and run again; SSH to the jump host is allowed from the control machine's addresses only.")
    return (f"{host} takes SSH from the jump host's own addresses only (topology.hosts.<jump host>.addresses), "
            f"as the roster reaches it through the jump host (ProxyCommand ssh -W): is something between the "
            f"jump host and {host} (NAT, another proxy) changing the source to {source}?")


def ssh_source_allowed(name, rules, host=None, roles=None, addresses=None):
    """Pass when the new firewall ``rules`` still let in the SSH session this run came in through.

    Fails, with no changes, when they would not; passes with no changes when they
    would, or when the run has no SSH session (a local run: nothing to check,
    the comment says so). ``test=True`` gives the same answer (a dry run shows the
    lockout before any run would cause it): the gate only looks.

    :param name: state ID (free text).
    :param rules: the host's new firewall rules (``halite:host:firewall``, what the nftables template prints).
    :param host: the host's name, for the message (default: the minion id).
    :param roles: the host's roles: the jump host's advice names ``control_address``.
    :param addresses: the host's addresses by network (``topology.hosts.<host>.addresses``):
        which network's ``control_address`` to name.
    :returns: a state result with no changes.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    host = host or __opts__.get("id") or "this host"
    try:
        session = __salt__["halite_net.ssh_session"]()
        if session is None:
            sources = __salt__["halite_net.firewall_sources"](rules)
            ret["comment"] = (f"No SSH session among this run's processes on {host} (a local run, such as "
                              "salt-call --local): its source cannot be checked, so nothing stops the firewall "
                              f"change; the new firewall allows SSH on port 22 from {_listed(sources)}")
            return ret
        source, address, port = session["source"], session["address"], session["port"]
        allowed = __salt__["halite_net.firewall_sources"](rules, port=port, address=address)
        ok = __salt__["halite_net.firewall_allows"](rules, source, port=port, address=address)
    except CommandExecutionError as exc:
        ret.update(result=False, comment=f"Cannot check this run's SSH source against the new firewall: {exc}")
        return ret
    reach = f"This run reaches {host} over SSH from {source} (to {address} port {port})"
    if ok:
        ret["comment"] = f"{reach}; the new firewall allows it (SSH there from {_listed(allowed)})"
        return ret
    ret["result"] = False
    ret["comment"] = (
        f"{reach}, which the new firewall would not let in: "
        + (f"it allows SSH there from {', '.join(allowed)} only. " if allowed else
           f"it opens port {port} on {address} to no one. ")
        + "The firewall is left as it is, so the next run can still get in. "
        + _remedy(host, session, allowed, roles or [], addresses)
    )
    return ret
