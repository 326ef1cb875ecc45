"""
A health gate for the etcd cluster.

It only asks the ``etcd_cluster`` execution module and waits; it never
changes anything. Connection keywords (host, port, http_timeout) are passed
on to that module, which reads ``halite:etcd:client_port`` by default.

.. code-block:: yaml

    etcd-cluster-healthy:
      etcd_health.healthy:
        - members: 3
        - timeout: 180
"""
from __future__ import annotations

import time

__virtualname__ = "etcd_health"


def __virtual__():
    """Load when the etcd_cluster execution module is available."""
    if "etcd_cluster.health" in __salt__:
        return __virtualname__
    return (False, "etcd_health needs the etcd_cluster execution module (_modules/etcd_cluster.py)")


def _connection(kwargs: dict) -> dict:
    """The caller's connection keywords, without Salt's internal ones."""
    return {k: v for k, v in kwargs.items() if not k.startswith("__")}


def _member_lines(members: list[dict]) -> str:
    if not members:
        return "(no members listed)"
    lines = []
    for member in members:
        kind = "learner" if member.get("is_learner") else ("started" if member.get("started") else "unstarted")
        lines.append(
            f"  {member.get('name') or '(no name)'} id={member.get('id')} {kind} "
            f"peer={','.join(member.get('peer_urls') or []) or '-'} "
            f"client={','.join(member.get('client_urls') or []) or '-'}"
        )
    return "\n".join(lines)


def _problems(seen: dict, members: int) -> list[str]:
    problems = list(seen.get("problems") or [])
    if not seen.get("healthy") and not problems:
        problems.append("etcd reports unhealthy")
    if seen.get("started") != members:
        problems.append(f"{seen.get('started')} started voting members, expected {members}")
    if not seen.get("leader"):
        problems.append("no leader")
    return problems


def healthy(name, members=3, timeout=180, interval=2, **connection):
    """Wait until etcd is healthy, with ``members`` started members and a leader.

    An etcd that does not answer yet counts as "not yet", not as a failure.

    :param name: state ID (free text).
    :param members: expected number of started voting members.
    :param timeout: seconds to wait before giving up.
    :param interval: seconds between two looks.
    :param connection: host, port, http_timeout for the etcd_cluster module.
    :returns: a state return; on time-out the comment shows the member list last seen.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    members = int(members)
    want = f"etcd healthy with {members} started members and a leader"
    # A dry run looks once: a healthy cluster has nothing to wait for.
    dry_run = bool(__opts__.get("test"))
    full_timeout = timeout
    if dry_run:
        timeout = 0

    conn = _connection(connection)
    last_members = []

    def look():
        seen = __salt__["etcd_cluster.health"](**conn)
        last_members[:] = seen.get("members") or []
        problems = _problems(seen, members)
        if problems:
            return False, "; ".join(problems)
        return True, f"leader {seen['leader']}"

    done, last_seen, elapsed = __utils__["halite_wait.poll"](look, timeout, interval, time)
    if done:
        ret["result"] = True
        ret["comment"] = f"{want}: {last_seen} (after {elapsed:.0f}s)"
        return ret
    if dry_run:
        ret["result"] = None
        ret["comment"] = f"Would wait up to {full_timeout}s for {want} (now: {last_seen})"
        return ret
    ret["comment"] = (
        f"Timed out after {timeout}s waiting for {want}. Last seen: {last_seen}\n"
        f"Members:\n{_member_lines(last_members)}"
    )
    return ret
