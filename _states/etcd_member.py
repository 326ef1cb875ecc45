"""
Membership of the local host in a running etcd cluster.

The running cluster is reached through the other members (``peers``): the
local etcd may be stopped, new, or gone. Everything goes through the
``etcd_cluster`` execution module (etcd's v3 API); connection keywords
(port, http_timeout) are passed on to it.

.. code-block:: yaml

    etcd-member-registered:
      etcd_member.present:
        - name: db-03
        - peer_url: https://10.77.1.13:2380
        - peers: [10.77.1.11, 10.77.1.12]
        - data_dir: /var/lib/etcd/halite

    etcd-member-removed:
      etcd_member.absent:
        - name: db-03
        - peers: [10.77.1.11, 10.77.1.12]
"""
from __future__ import annotations

import os

from salt.exceptions import CommandExecutionError

__virtualname__ = "etcd_member"


def __virtual__():
    """Load when the etcd_cluster execution module is available."""
    if "etcd_cluster.member_add" in __salt__:
        return __virtualname__
    return (False, "etcd_member needs the etcd_cluster execution module (_modules/etcd_cluster.py)")


def _connection(kwargs: dict) -> dict:
    """Connection keywords for etcd_cluster; ``host`` is always one of the peers."""
    return {k: v for k, v in kwargs.items() if not k.startswith("__") and k != "host"}


def _ask_peers(peers, conn: dict):
    """(peer, members) from the first peer that answers; raises naming every failure."""
    if isinstance(peers, str):
        peers = [p.strip() for p in peers.split(",") if p.strip()]
    if not peers:
        raise CommandExecutionError("no peers given: name at least one running etcd member to ask")
    failures = []
    for peer in peers:
        try:
            return peer, __salt__["etcd_cluster.members"](host=peer, **conn)
        except CommandExecutionError as exc:
            failures.append(str(exc))
    raise CommandExecutionError("no running etcd member answered: " + "; ".join(failures))


def _begin(name, peers, connection: dict):
    """(ret, conn, peer, members); peer is None and ret says why when no peer answered."""
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    conn = _connection(connection)
    try:
        peer, members = _ask_peers(peers, conn)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret, conn, None, []
    return ret, conn, peer, members


def _describe(member: dict) -> str:
    return f"id {member['id']}, {'started' if member.get('started') else 'not started yet'}"


def present(name, peer_url, peers, data_dir=None, **connection):
    """Make sure the cluster lists this host as a member; add it when it does not.

    After a change, start the host's etcd with ``ETCD_INITIAL_CLUSTER_STATE=existing``
    (``etcd.join`` orders that after this state).

    :param name: the member's name (its ``ETCD_NAME``).
    :param peer_url: its peer URL, e.g. ``https://10.77.1.13:2380``.
    :param peers: addresses of running members to ask (list or comma-separated).
    :param data_dir: the host's etcd data directory. When the cluster does not
        list the host but this directory holds a member's data (the host was
        removed and its data kept), the state fails and changes nothing: that
        etcd would start as the removed member.
    :param connection: port, http_timeout for the etcd_cluster module.
    """
    ret, conn, peer, members = _begin(name, peers, connection)
    if peer is None:
        return ret
    for member in members:
        if peer_url in member["peer_urls"]:
            ret["result"] = True
            ret["comment"] = f"{name} ({peer_url}) is an etcd member already: {_describe(member)}"
            return ret
    if data_dir and os.path.isdir(os.path.join(data_dir, "member")):
        ret["comment"] = (
            f"{data_dir} holds the data of an etcd member that the cluster no longer lists; "
            f"move it aside before {name} joins (orch.etcd_member with replace: true does that). "
            "Nothing was changed."
        )
        return ret
    change = {"member": {"old": None, "new": {"name": name, "peer_url": peer_url}}}
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = change
        ret["comment"] = f"Would add {name} ({peer_url}) to the etcd cluster through {peer}"
        return ret
    try:
        added = __salt__["etcd_cluster.member_add"](peer_url, name=name, host=peer, **conn)
    except CommandExecutionError as exc:
        ret["comment"] = f"Adding {name} ({peer_url}) through {peer} failed: {exc}"
        return ret
    change["member"]["new"]["id"] = added["id"]
    ret["result"] = True
    ret["changes"] = change
    ret["comment"] = (
        f"Added {name} ({peer_url}) to the etcd cluster through {peer} as {added['id']}; "
        f"it starts with ETCD_INITIAL_CLUSTER={added['initial_cluster']} and state existing"
    )
    return ret


def absent(name, peers, **connection):
    """Make sure the cluster does not list a member of this name (remove it if it does).

    Stop that member's etcd first: a running member that is removed shuts down.

    :param name: the member's name (or hex id).
    :param peers: addresses of running members that stay (list or comma-separated).
    :param connection: port, http_timeout for the etcd_cluster module.
    """
    ret, conn, peer, members = _begin(name, peers, connection)
    if peer is None:
        return ret
    found = [m for m in members if name in (m["name"], m["id"])]
    if not found:
        ret["result"] = True
        ret["comment"] = f"etcd lists no member {name}"
        return ret
    member = found[0]
    change = {"member": {"old": {"name": member["name"], "id": member["id"]}, "new": None}}
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = change
        ret["comment"] = f"Would remove {name} ({_describe(member)}) from the etcd cluster through {peer}"
        return ret
    try:
        __salt__["etcd_cluster.member_remove"](member["id"], host=peer, **conn)
    except CommandExecutionError as exc:
        ret["comment"] = f"Removing {name} through {peer} failed: {exc}"
        return ret
    ret["result"] = True
    ret["changes"] = change
    ret["comment"] = f"Removed {name} ({member['id']}) from the etcd cluster through {peer}"
    return ret
