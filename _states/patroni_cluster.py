"""
States for a Patroni cluster: a health gate and the dynamic configuration.

These states only decide. They ask the ``patroni`` execution module what is,
compare it with what should be, and call that module to act. Connection
keywords (host, port, username, password, http_timeout) are passed on to it;
by default it reads them from pillar (``halite:patroni:restapi:*``).

.. code-block:: yaml

    patroni-cluster-healthy:
      patroni_cluster.healthy:
        - members: 3
        - max_lag: 1048576
        - timeout: 300

    patroni-dynamic-config:
      patroni_cluster.dynamic_config:
        - config:
            ttl: 20
            loop_wait: 3
            postgresql:
              parameters:
                max_connections: 200
"""
from __future__ import annotations

import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "patroni_cluster"

#: Patroni's default ``maximum_lag_on_failover``, in bytes.
DEFAULT_MAX_LAG = 1048576
#: Upper bound, in seconds, for waiting on Patroni to notice a new configuration.
MAX_SETTLE = 30


def __virtual__():
    """Load when the patroni execution module is available."""
    if "patroni.health" in __salt__:
        return __virtualname__
    return (False, "patroni_cluster needs the patroni execution module (_modules/patroni.py)")


def _connection(kwargs: dict) -> dict:
    """The caller's connection keywords, without Salt's internal ones."""
    return {k: v for k, v in kwargs.items() if not k.startswith("__")}


def healthy(name, members=3, max_lag=DEFAULT_MAX_LAG, timeout=300, interval=3, **connection):
    """Wait until Patroni shows one running leader and ``members - 1`` streaming replicas.

    A gate: it never changes anything. Each replica must be in state
    ``streaming`` with a known lag of at most ``max_lag`` bytes. A REST API
    that does not answer yet counts as "not yet", not as a failure.

    :param name: state ID (free text).
    :param members: expected number of Patroni members.
    :param max_lag: largest acceptable replica lag, in bytes.
    :param timeout: seconds to wait before giving up.
    :param interval: seconds between two looks.
    :param connection: host, port, username, password, http_timeout for the patroni module.
    :returns: a state return; on time-out the comment shows what was seen and the member table.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    members = int(members)
    max_lag = int(max_lag)
    want = f"one running leader and {members - 1} streaming replica(s) with lag <= {max_lag} bytes"
    # A dry run looks once: a healthy cluster has nothing to wait for.
    dry_run = bool(__opts__.get("test"))
    full_timeout = timeout
    if dry_run:
        timeout = 0

    conn = _connection(connection)

    def look():
        seen = __salt__["patroni.health"](members=members, max_lag=max_lag, **conn)
        if seen["healthy"]:
            return True, (f"leader {seen['leader']}, {seen['replicas_streaming']} streaming, "
                          f"largest lag {seen['max_lag']} bytes")
        return False, "; ".join(seen["problems"])

    done, last_seen, elapsed = __utils__["halite_wait.poll"](look, timeout, interval, time)
    if done:
        ret["result"] = True
        ret["comment"] = f"Patroni shows {want}: {last_seen} (after {elapsed:.0f}s)"
        return ret
    if dry_run:
        ret["result"] = None
        ret["comment"] = f"Would wait up to {full_timeout}s for Patroni to show {want} (now: {last_seen})"
        return ret
    try:
        member_table = __salt__["patroni.table"](**conn)
    except CommandExecutionError as exc:
        member_table = f"(no member table: {exc})"
    ret["comment"] = f"Timed out after {timeout}s waiting for {want}. Last seen: {last_seen}\n{member_table}"
    return ret


def _same(want, have) -> bool:
    """Whether a desired value matches what Patroni stores.

    Patroni may hand back PostgreSQL parameters as strings ("200" for 200),
    so numbers and strings compare by their text. Booleans compare only with
    booleans or with the strings "true"/"false" (never with 1/0 or "True").
    """
    if isinstance(want, bool) or isinstance(have, bool):
        if isinstance(want, bool) and isinstance(have, bool):
            return want == have
        other, flag = (have, want) if isinstance(want, bool) else (want, have)
        return isinstance(other, str) and other.strip().lower() == ("true" if flag else "false")
    if want == have:
        return True
    scalar = (int, float, str)
    if isinstance(want, scalar) and isinstance(have, scalar):
        return str(want).strip() == str(have).strip()
    return False


def _differences(desired: dict, current, prefix: str = ""):
    """Compare only the keys in ``desired``, recursively.

    :returns: ``(changes, patch)``: changes keyed by dotted path
        (``{"postgresql.parameters.max_connections": {"old": "100", "new": 200}}``)
        and the nested subset of ``desired`` that differs, ready for ``PATCH /config``.
    """
    current = current if isinstance(current, dict) else {}
    changes, patch = {}, {}
    for key, want in desired.items():
        path = f"{prefix}{key}"
        have = current.get(key)
        if isinstance(want, dict) and want:
            sub_changes, sub_patch = _differences(want, have, f"{path}.")
            if sub_patch:
                changes.update(sub_changes)
                patch[key] = sub_patch
        elif not _same(want, have):
            changes[path] = {"old": have, "new": want}
            patch[key] = want
    return changes, patch


def _settle_seconds(settle, config: dict) -> float:
    """How long Patroni needs to notice a new configuration: one HA loop, plus a second."""
    if settle is not None:
        return float(settle)
    try:
        loop_wait = float(config.get("loop_wait", 10))
    except (TypeError, ValueError):
        loop_wait = 10.0
    return min(loop_wait + 1, MAX_SETTLE)


def dynamic_config(name, config, settle=None, **connection):
    """Make Patroni's dynamic configuration hold ``config`` (a subset; other keys stay).

    Reads ``GET /config``, compares only the keys given (recursively; "200"
    equals 200), and patches only those that differ. A ``None`` value asks
    for the key to be removed. After patching it re-reads the configuration
    to verify it, and lists the members that then wait for a PostgreSQL
    restart, so an orchestration can restart them.

    :param name: state ID (free text).
    :param config: desired subset, e.g. ``{"ttl": 20, "postgresql": {"parameters": {"max_connections": 200}}}``.
    :param settle: seconds to let Patroni notice a PostgreSQL change before asking
        which members are pending a restart; default: ``loop_wait + 1`` (at most 30).
    :param connection: host, port, username, password, http_timeout for the patroni module.
    :returns: a state return; ``changes`` keyed by dotted path with ``old`` and ``new``.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    if not isinstance(config, dict) or not config:
        ret["comment"] = "config must be a non-empty mapping of Patroni dynamic configuration keys"
        return ret
    conn = _connection(connection)
    try:
        current = __salt__["patroni.config"](**conn)
    except CommandExecutionError as exc:
        ret["comment"] = f"Cannot read Patroni's dynamic configuration: {exc}"
        return ret

    changes, patch = _differences(config, current)
    if not changes:
        ret["result"] = True
        ret["comment"] = "Patroni dynamic configuration is already as desired"
        return ret
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = changes
        ret["comment"] = f"Would change Patroni dynamic configuration: {', '.join(sorted(changes))}"
        return ret

    try:
        # PATCH answers with the configuration now in the DCS; a GET right
        # after may still show the member's cached copy until its next loop.
        after = __salt__["patroni.patch_config"](patch, **conn)
        if not isinstance(after, dict) or not after:
            after = __salt__["patroni.config"](**conn)
    except CommandExecutionError as exc:
        ret["comment"] = f"Patching Patroni's dynamic configuration ({', '.join(sorted(changes))}) failed: {exc}"
        return ret

    left, _ = _differences(config, after)
    ret["changes"] = {key: value for key, value in changes.items() if key not in left}
    if left:
        seen = ", ".join(f"{key}={value['old']!r}" for key, value in sorted(left.items()))
        ret["comment"] = f"PATCH /config was accepted, but Patroni still shows {seen}"
        return ret

    ret["result"] = True
    comment = [f"Changed Patroni dynamic configuration: {', '.join(sorted(changes))}."]
    if "postgresql" in patch:
        time.sleep(_settle_seconds(settle, after))
    try:
        pending = __salt__["patroni.pending_restart"](**conn)
    except CommandExecutionError as exc:
        comment.append(f"Could not list members pending a restart: {exc}")
    else:
        if pending:
            comment.append(f"Members pending restart: {', '.join(pending)}.")
        else:
            comment.append("No member is pending a restart.")
    ret["comment"] = " ".join(comment)
    return ret
