"""
Patroni, through its REST API, from a database host.

Every function talks to the Patroni REST API on this host, or (restart,
reload, reinit of another member) to that member's ``api_url`` as Patroni
publishes it in ``GET /cluster``. Only the Python standard library is used, so
the module runs wherever salt-ssh's thin runs.

Connection settings come from pillar; each one can be overridden per call
with a keyword argument of the same name:

============  ====================================  ==========
keyword       pillar key                            default
============  ====================================  ==========
host          halite:patroni:restapi:host           127.0.0.1
port          halite:patroni:restapi:port           8008
username      halite:patroni:restapi:username       (none)
password      halite:patroni:restapi:password       (none)
              (else restapi.authentication in patroni.yml,
              ``halite:paths:patroni_conf``: direct salt-ssh calls)
http_timeout  (keyword only)                        10 seconds
============  ====================================  ==========

TLS (pillar only): with ``halite:tls_on:patroni_api`` (default true) the module speaks
https and verifies Patroni against halite's CA, ``halite:tls_paths:ca`` (default
/etc/halite/tls/ca.crt), and shows the host's own certificate, ``halite:tls_paths:cert``
and ``key`` (root's): with ``verify_client: optional`` Patroni lets any TLS client read
but asks the unsafe methods for a client certificate from its CA (then the password).
halite's roster hands these keys to direct salt-ssh calls.

Basic authentication is sent with the unsafe methods (POST, PATCH, PUT,
DELETE) when a username and a password are set; Patroni asks for it on those
methods only.

Every failure (unreachable API, HTTP error status, time-out, a body that is
not JSON) raises :class:`salt.exceptions.CommandExecutionError` naming the
method, the URL, the HTTP status and Patroni's answer.
"""
from __future__ import annotations

import base64
import json
import logging
import sys
import time
import urllib.parse
import urllib.request

import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "patroni"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8008
DEFAULT_HTTP_TIMEOUT = 10
#: Keywords every public function accepts to override the pillar.
CONNECTION_KEYS = ("host", "port", "username", "password", "http_timeout")
#: Roles that hold the leader lock.
LEADER_ROLES = ("leader", "standby_leader")
#: Patroni's default ``maximum_lag_on_failover``, in bytes.
DEFAULT_MAX_LAG = 1048576
UNSAFE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
#: Seconds between two looks at /cluster while waiting for a new leader.
POLL_INTERVAL = 1

#: halite's CA on the hosts (halite.view.TLS_PATHS), for calls whose pillar names none.
DEFAULT_CONF = "/etc/patroni/patroni.yml"
DEFAULT_CA_FILE = "/etc/halite/tls/ca.crt"
DEFAULT_CERT_FILE = "/etc/halite/tls/host.crt"
DEFAULT_KEY_FILE = "/etc/halite/tls/host.key"

# Talk to Patroni directly, never through an http_proxy from the environment (plain http).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def __virtual__():
    """Load on any Python 3.8+ (standard library only)."""
    if sys.version_info < (3, 8):
        return (False, "the patroni module needs Python 3.8 or newer")
    return True


# ---------------------------------------------------------------------------
# HTTP boundary
# ---------------------------------------------------------------------------


def _pillar(key: str, default):
    """A setting from minion options, grains, then pillar (see ``halite_http.setting``)."""
    return __utils__["halite_http.setting"](__salt__["config.get"], key, default)


def _connection(kwargs: dict) -> dict:
    """Connection settings: keyword arguments over pillar over defaults."""
    __utils__["halite_http.check_keywords"](kwargs, CONNECTION_KEYS)

    def pick(key, default):
        value = kwargs.get(key)
        if value is None:
            value = _pillar(f"halite:patroni:restapi:{key}", default)
        return value

    password = pick("password", None)
    username = pick("username", None)
    if password is None:
        # direct salt-ssh calls get no pillar, and halite's roster hands them no secret (salt-ssh
        # would leave it behind in its thin directory): the password patroni.yml holds on this host
        username, password = _conf_credentials(username)
    tls = str(_pillar("halite:tls_on:patroni_api", True)).lower() not in ("false", "0", "no", "off")
    paths = _pillar("halite:tls_paths", {}) or {}
    return {
        "scheme": "https" if tls else "http",
        # the CA Patroni's certificate is verified against (None: plain http), and the client
        # certificate shown (Patroni asks the unsafe methods for one)
        "ca_file": (paths.get("ca") or DEFAULT_CA_FILE) if tls else None,
        "cert_file": (paths.get("cert") or DEFAULT_CERT_FILE) if tls else None,
        "key_file": (paths.get("key") or DEFAULT_KEY_FILE) if tls else None,
        "host": pick("host", DEFAULT_HOST),
        "port": int(pick("port", DEFAULT_PORT)),
        "username": username,
        "password": password,
        "http_timeout": float(kwargs.get("http_timeout") or DEFAULT_HTTP_TIMEOUT),
    }


def _conf_credentials(username):
    """The REST API's username and password from this host's patroni.yml
    (``halite:paths:patroni_conf``, root's), or ``(username, None)`` without one."""
    path = _pillar("halite:paths:patroni_conf", DEFAULT_CONF)
    try:
        with open(path, encoding="utf-8") as fh:
            conf = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        return username, None
    except (OSError, yaml.YAMLError) as exc:
        raise CommandExecutionError(f"cannot read Patroni's credentials from {path}: {exc}") from None
    auth = (conf.get("restapi") or {}).get("authentication") or {}
    return username or auth.get("username"), auth.get("password")


def _base_url(conn: dict) -> str:
    return __utils__["halite_http.base_url"](conn["host"], conn["port"], conn["scheme"])


def _request(method: str, url: str, conn: dict, payload=None, timeout=None, expect_json=True):
    """Send one request to Patroni and return its answer (``halite_http.request``).

    :param method: HTTP method.
    :param url: full URL.
    :param conn: settings from :func:`_connection` (credentials, time-out).
    :param payload: JSON-serialisable request body, or None.
    :param timeout: seconds; defaults to ``conn["http_timeout"]``.
    :param expect_json: parse the body as JSON (else return it as stripped text).
    :returns: the parsed JSON body, or the body text.
    :raises CommandExecutionError: on any failure, naming method and URL.
    """
    headers = {}
    if method in UNSAFE_METHODS and conn.get("username") and conn.get("password"):
        token = base64.b64encode(f"{conn['username']}:{conn['password']}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    opener = (__utils__["halite_http.opener"](conn["ca_file"], conn.get("cert_file"), conn.get("key_file"))
              if conn.get("ca_file") else _OPENER)
    return __utils__["halite_http.request"](
        opener, "Patroni REST API", method, url, timeout or conn["http_timeout"], payload=payload,
        headers=headers, expect_json=expect_json,
        unreachable_hint="; is Patroni running and listening there?",
        status_hints={401: " (check halite:patroni:restapi:username and password)"},
    )


def _get(conn: dict, path: str):
    return _request("GET", _base_url(conn) + path, conn)


# ---------------------------------------------------------------------------
# Reading the cluster
# ---------------------------------------------------------------------------


def _cluster(conn: dict) -> dict:
    """``GET /cluster``, checked to hold a member list."""
    data = _get(conn, "/cluster")
    if not isinstance(data, dict) or not isinstance(data.get("members"), list):
        raise CommandExecutionError(
            f"Patroni REST API GET {_base_url(conn)}/cluster returned no member list: {str(data)[:200]}"
        )
    return data


def _lag(raw: dict):
    """Replication lag in bytes, or None when Patroni does not know it.

    Patroni 4 gives ``lag`` (plus ``receive_lag`` and ``replay_lag``); each is
    bytes or the string ``"unknown"``. Older versions give only ``lag``.
    """
    for key in ("lag", "replay_lag", "receive_lag"):
        value = raw.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            return int(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
    return None


def _member(raw: dict) -> dict:
    return {
        "name": raw.get("name"),
        "host": raw.get("host"),
        "port": raw.get("port"),
        "role": raw.get("role"),
        "state": raw.get("state"),
        "timeline": raw.get("timeline"),
        "lag": _lag(raw),
        "pending_restart": bool(raw.get("pending_restart")),
        "api_url": raw.get("api_url"),
        "tags": raw.get("tags") or {},
    }


def _members(conn: dict) -> list[dict]:
    return [_member(m) for m in _cluster(conn)["members"]]


def _leader_of(members_: list[dict]):
    for member in members_:
        if member["role"] in LEADER_ROLES:
            return member["name"]
    return None


def _format_table(members_: list[dict]) -> str:
    header = ("Member", "Host", "Role", "State", "TL", "Lag")
    rows = [header]
    for m in members_:
        if m["role"] in LEADER_ROLES:
            lag = ""
        else:
            lag = "unknown" if m["lag"] is None else str(m["lag"])
        host = m["host"] or ""
        if host and m.get("port"):
            host = f"{host}:{m['port']}"
        flag = " *" if m.get("pending_restart") else ""
        rows.append(
            (
                str(m["name"]),
                host,
                str(m["role"] or ""),
                str(m["state"] or "") + flag,
                "" if m["timeline"] is None else str(m["timeline"]),
                lag,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    if any(m.get("pending_restart") for m in members_):
        lines.append("* pending restart")
    return "\n".join(lines)


def members(**connection) -> list[dict]:
    """List the cluster members as Patroni sees them (``GET /cluster``, HTTP 200).

    Each member is a dict with ``name``, ``host``, ``port``, ``role`` (leader,
    standby_leader, sync_standby, quorum_standby, replica), ``state`` (running,
    streaming, starting, stopped, ...), ``timeline``, ``lag`` (bytes, or None
    for the leader and when Patroni reports "unknown"), ``pending_restart``,
    ``api_url`` and ``tags``.

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: list of member dicts, sorted by name as Patroni sorts them.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.members
    """
    return _members(_connection(connection))


def leader(**connection):
    """Name of the member holding the leader lock (``GET /cluster``, HTTP 200).

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: the leader's name, or None when the cluster has no leader.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.leader
    """
    return _leader_of(_members(_connection(connection)))


def is_leader(**connection) -> bool:
    """True when the member on this host holds the leader lock (``GET /patroni``, HTTP 200).

    Used as an ``onlyif`` requisite, so that cluster-wide work (roles,
    databases) runs on the leader only.

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: True if this member's role is leader (or standby_leader), else False.
    :raises CommandExecutionError: when the local REST API does not answer.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.is_leader
    """
    data = _get(_connection(connection), "/patroni")
    role = str(data.get("role", "")).lower()
    return role in ("master", "primary", *LEADER_ROLES)


def _health(data: dict, expected_members, max_lag: int) -> dict:
    found = [_member(m) for m in data["members"]]
    leaders = [m for m in found if m["role"] in LEADER_ROLES]
    replicas = [m for m in found if m["role"] not in LEADER_ROLES]
    streaming = [m for m in replicas if m["state"] == "streaming"]
    known_lags = [m["lag"] for m in replicas if m["lag"] is not None]
    problems = []
    if len(leaders) != 1:
        names = ", ".join(m["name"] for m in leaders) or "none"
        problems.append(f"{len(leaders)} leaders ({names}), expected exactly one")
    elif leaders[0]["state"] != "running":
        problems.append(f"leader {leaders[0]['name']} is {leaders[0]['state']}, not running")
    if expected_members is not None and len(found) != int(expected_members):
        problems.append(f"{len(found)} members, expected {expected_members}")
    for m in replicas:
        if m["state"] != "streaming":
            problems.append(f"{m['name']} is {m['state']}, not streaming")
        elif m["lag"] is None:
            problems.append(f"{m['name']} has unknown lag")
        elif m["lag"] > max_lag:
            problems.append(f"{m['name']} lags {m['lag']} bytes, more than {max_lag}")
    return {
        "leader": leaders[0]["name"] if len(leaders) == 1 else None,
        "members": len(found),
        "member_names": [m["name"] for m in found],
        "replicas": len(replicas),
        "replicas_streaming": len(streaming),
        "max_lag": max(known_lags) if known_lags else None,
        "unknown_lag": [m["name"] for m in replicas if m["lag"] is None],
        "paused": bool(data.get("pause")),
        "pending_restart": [m["name"] for m in found if m["pending_restart"]],
        "problems": problems,
        "healthy": not problems,
    }


def health(members=None, max_lag=DEFAULT_MAX_LAG, **connection) -> dict:  # pylint: disable=redefined-outer-name
    """Summarise the cluster's health from ``GET /cluster`` (HTTP 200).

    Healthy means: exactly one leader, in state running; every other member
    streaming with a known lag of at most ``max_lag`` bytes; and, when
    ``members`` is given, exactly that many members.

    :param members: expected number of members, or None to not check the count.
    :param max_lag: largest acceptable replica lag, in bytes.
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: dict with ``healthy``, ``leader``, ``members`` (count), ``member_names``,
        ``replicas``, ``replicas_streaming``, ``max_lag`` (largest known lag seen),
        ``unknown_lag``, ``paused``, ``pending_restart`` and ``problems`` (sentences).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.health
        salt-ssh db-01 patroni.health members=3 max_lag=0
    """
    conn = _connection(connection)
    return _health(_cluster(conn), members, int(max_lag))


def table(**connection) -> str:
    """The member table, ready to print (``GET /cluster``, HTTP 200).

    Columns: member, host, role, state, timeline, lag (bytes). A star marks
    members pending a restart.

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: a multi-line string.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.table --out=txt
    """
    return _format_table(_members(_connection(connection)))


def pending_restart(**connection) -> list[str]:
    """Names of members whose PostgreSQL waits for a restart (``GET /cluster``, HTTP 200).

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: list of member names (empty when no restart is pending).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.pending_restart
    """
    return [m["name"] for m in _members(_connection(connection)) if m["pending_restart"]]


def history(**connection) -> list[dict]:
    """Timeline history: one entry per switchover or failover (``GET /history``, HTTP 200).

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: list of dicts with ``timeline``, ``lsn``, ``reason``, ``timestamp``
        and ``new_leader`` (None when this Patroni version does not record it).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.history
    """
    conn = _connection(connection)
    data = _get(conn, "/history")
    if not isinstance(data, list):
        raise CommandExecutionError(f"Patroni REST API GET {_base_url(conn)}/history returned no list: {str(data)[:200]}")
    keys = ("timeline", "lsn", "reason", "timestamp", "new_leader")
    out = []
    for entry in data:
        entry = list(entry) if isinstance(entry, (list, tuple)) else [entry]
        out.append({key: entry[i] if i < len(entry) else None for i, key in enumerate(keys)})
    return out


# ---------------------------------------------------------------------------
# Dynamic configuration
# ---------------------------------------------------------------------------


def config(**connection) -> dict:
    """The dynamic configuration stored in the DCS (``GET /config``, HTTP 200).

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: the configuration as a dict.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.config
    """
    conn = _connection(connection)
    data = _get(conn, "/config")
    if not isinstance(data, dict):
        raise CommandExecutionError(f"Patroni REST API GET {_base_url(conn)}/config returned no mapping: {str(data)[:200]}")
    return data


def patch_config(patch, **connection) -> dict:
    """Merge ``patch`` into the dynamic configuration (``PATCH /config``, HTTP 200; needs auth).

    Patroni merges recursively; a ``null`` value removes that key. Patroni
    answers 409 when the configuration changed under it and 400 on a bad body.

    :param patch: dict (or JSON string) of the keys to change.
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: the whole configuration after the change, as Patroni returns it.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.patch_config '{"loop_wait": 3, "ttl": 20}'
    """
    if isinstance(patch, str):
        try:
            patch = json.loads(patch)
        except ValueError as exc:
            raise SaltInvocationError(f"patch is not valid JSON: {exc}") from None
    if not isinstance(patch, dict) or not patch:
        raise SaltInvocationError("patch must be a non-empty mapping")
    conn = _connection(connection)
    return _request("PATCH", _base_url(conn) + "/config", conn, payload=patch)


def _set_pause(conn: dict, paused: bool) -> dict:
    new = _request("PATCH", _base_url(conn) + "/config", conn, payload={"pause": paused})
    return {"paused": bool(isinstance(new, dict) and new.get("pause"))}


def pause(**connection) -> dict:
    """Put the cluster in maintenance mode: no automatic failover (``PATCH /config`` ``{"pause": true}``, HTTP 200; needs auth).

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: ``{"paused": True}`` once Patroni stored the change.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.pause
    """
    return _set_pause(_connection(connection), True)


def resume(**connection) -> dict:
    """Leave maintenance mode (``PATCH /config`` ``{"pause": false}``, HTTP 200; needs auth).

    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: ``{"paused": False}`` once Patroni stored the change.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.resume
    """
    return _set_pause(_connection(connection), False)


# ---------------------------------------------------------------------------
# Switchover and failover
# ---------------------------------------------------------------------------


def _wait_for_leader(conn: dict, accept, timeout: float, expected: str) -> str:
    """Poll ``/cluster`` until a running leader satisfies ``accept(name)``."""
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while True:
        try:
            found = _members(conn)
            name = _leader_of(found)
            state = next((m["state"] for m in found if m["name"] == name), None)
            if name is not None and state == "running" and accept(name):
                return name
            seen = f"leader {name or 'none'} ({state or 'no state'})\n{_format_table(found)}"
        except CommandExecutionError as exc:
            seen = str(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandExecutionError(f"waited {timeout:g} seconds for {expected}; last seen: {seen}")
        time.sleep(min(POLL_INTERVAL, remaining))


def switchover(candidate=None, leader=None, timeout=60, **connection) -> dict:  # pylint: disable=redefined-outer-name
    """Hand the leader role to another member (``POST /switchover``; needs auth).

    Patroni answers 200 when the switchover completed, 412 when it refuses
    (e.g. the candidate is not eligible, or ``leader`` is not the leader) and
    503 when it failed. This function then polls ``GET /cluster`` until a new
    leader (the candidate, when one is named) is running.

    :param candidate: member to promote; None lets Patroni pick the healthiest replica.
    :param leader: the current leader; defaults to the leader seen in ``/cluster``.
    :param timeout: seconds to wait for the switchover and the new leader.
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: dict with ``old_leader``, ``new_leader`` and ``message`` (Patroni's answer).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.switchover
        salt-ssh db-01 patroni.switchover candidate=db-02 timeout=120
    """
    conn = _connection(connection)
    old = leader or _leader_of(_members(conn))
    if old is None:
        raise CommandExecutionError(
            "a switchover needs a leader and the cluster has none; use patroni.failover with a candidate"
        )
    payload = {"leader": old}
    if candidate:
        payload["candidate"] = candidate
    message = _request(
        "POST",
        _base_url(conn) + "/switchover",
        conn,
        payload=payload,
        timeout=max(float(timeout), conn["http_timeout"]),
        expect_json=False,
    )
    expected = f"{candidate} to lead" if candidate else f"a leader other than {old}"
    new = _wait_for_leader(
        conn,
        lambda name: name != old and (not candidate or name == candidate),
        float(timeout),
        expected,
    )
    return {"old_leader": old, "new_leader": new, "message": message}


def failover(candidate, timeout=60, **connection) -> dict:
    """Promote ``candidate``, with or without a healthy leader (``POST /failover``; needs auth).

    Prefer :func:`switchover` on a healthy cluster. Patroni answers 200 when
    the failover completed, 412 when it refuses and 503 when it failed. This
    function then polls ``GET /cluster`` until ``candidate`` leads.

    :param candidate: member to promote.
    :param timeout: seconds to wait for the candidate to lead.
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: dict with ``old_leader``, ``new_leader`` and ``message`` (Patroni's answer).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.failover candidate=db-02
    """
    if not candidate:
        raise SaltInvocationError("failover needs a candidate")
    conn = _connection(connection)
    try:
        old = _leader_of(_members(conn))
    except CommandExecutionError:
        old = None
    message = _request(
        "POST",
        _base_url(conn) + "/failover",
        conn,
        payload={"candidate": candidate},
        timeout=max(float(timeout), conn["http_timeout"]),
        expect_json=False,
    )
    new = _wait_for_leader(conn, lambda name: name == candidate, float(timeout), f"{candidate} to lead")
    return {"old_leader": old, "new_leader": new, "message": message}


# ---------------------------------------------------------------------------
# Per-member actions
# ---------------------------------------------------------------------------


def _member_url(conn: dict, member) -> str:
    """Base URL of ``member``'s REST API (this host's when ``member`` is None)."""
    if member is None:
        return _base_url(conn)
    found = _members(conn)
    for m in found:
        if m["name"] == member:
            if not m["api_url"]:
                raise CommandExecutionError(f"Patroni publishes no api_url for member {member}")
            parts = urllib.parse.urlsplit(m["api_url"])
            return f"{parts.scheme}://{parts.netloc}"
    names = ", ".join(m["name"] for m in found) or "none"
    raise CommandExecutionError(f"{member} is not a member of the Patroni cluster (members: {names})")


def restart(member=None, restart_pending=False, role=None, timeout=None, **connection) -> dict:
    """Restart PostgreSQL on one member (``POST /restart`` on its api_url; needs auth).

    Patroni answers 200 when PostgreSQL restarted, 202 when the restart was
    scheduled, 412 when a condition (``restart_pending``, ``role``) does not
    hold and 503 when the restart failed.

    :param member: member name; None restarts the member on this host.
    :param restart_pending: restart only when the member has a pending restart.
    :param role: restart only when the member has this role (primary or replica).
    :param timeout: seconds Patroni waits for PostgreSQL to accept connections.
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: dict with ``member`` and ``message`` (Patroni's answer).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.restart
        salt-ssh db-01 patroni.restart member=db-02 restart_pending=True
    """
    conn = _connection(connection)
    url = _member_url(conn, member) + "/restart"
    payload = {}
    if restart_pending:
        payload["restart_pending"] = True
    if role:
        payload["role"] = role
    if timeout is not None:
        payload["timeout"] = int(timeout)
    http_timeout = max(conn["http_timeout"], (float(timeout) if timeout is not None else 90.0) + 30)
    message = _request("POST", url, conn, payload=payload, timeout=http_timeout, expect_json=False)
    return {"member": member or "local", "message": message}


def reload(member=None, **connection) -> dict:
    """Make one member re-read its configuration file (``POST /reload``, HTTP 202; needs auth).

    :param member: member name; None reloads the member on this host.
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: dict with ``member`` and ``message`` (Patroni's answer).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.reload
        salt-ssh db-01 patroni.reload member=db-02
    """
    conn = _connection(connection)
    url = _member_url(conn, member) + "/reload"
    message = _request("POST", url, conn, payload={}, expect_json=False)
    return {"member": member or "local", "message": message}


def reinit(member, force=False, from_leader=False, **connection) -> dict:
    """Rebuild a replica's data directory from scratch (``POST /reinitialize``; needs auth).

    Patroni answers 200 when the rebuild started and 503 when it refuses
    (e.g. the member is the leader, or it is busy recovering: then use ``force``).

    :param member: member name (a replica).
    :param force: cancel a running recovery first.
    :param from_leader: take the base backup from the leader.
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: dict with ``member`` and ``message`` (Patroni's answer).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.reinit db-03
        salt-ssh db-01 patroni.reinit db-03 force=True
    """
    if not member:
        raise SaltInvocationError("reinit needs the name of the member to rebuild")
    conn = _connection(connection)
    url = _member_url(conn, member) + "/reinitialize"
    payload = {"force": bool(force)}
    if from_leader:
        payload["from-leader"] = True
    message = _request("POST", url, conn, payload=payload, expect_json=False)
    return {"member": member, "message": message}


def _wait_member(conn: dict, name: str, ok, timeout: float, expected: str) -> dict:
    """Poll /cluster until member ``name`` satisfies ``ok``; raise naming what was seen."""
    deadline = time.monotonic() + float(timeout)
    seen = "nothing yet"
    while True:
        try:
            for m in _members(conn):
                if m["name"] == name:
                    if ok(m):
                        return m
                    seen = f"role {m['role']}, state {m['state']}, pending_restart {m['pending_restart']}"
        except CommandExecutionError as exc:
            seen = str(exc)
        if time.monotonic() >= deadline:
            raise CommandExecutionError(f"{name} did not become {expected} within {timeout:g}s (last seen: {seen})")
        time.sleep(POLL_INTERVAL)


def rolling_restart(pending_only=True, timeout=300, **connection) -> dict:
    """Restart PostgreSQL member by member: replicas first, the leader last after a switchover.

    Each replica is restarted (``POST /restart``) and must stream again
    before the next one; then, if the leader needs a restart too, it hands
    over to the synchronous standby (or a streaming replica) with
    ``POST /switchover`` and is restarted as a replica. Writes see one
    switchover, never a restart of the primary.

    :param pending_only: restart only members flagged ``pending_restart``.
    :param timeout: seconds to wait for each member (and for the switchover).
    :param connection: host, port, username, password, http_timeout (see the module docstring).
    :returns: dict with ``restarted`` (names, in order), ``switchover`` (or None) and ``leader``.
    :raises CommandExecutionError: naming the member that did not come back.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 patroni.rolling_restart
        salt-ssh db-01 patroni.rolling_restart pending_only=False
    """
    conn = _connection(connection)
    members_ = _members(conn)
    leader_ = _leader_of(members_)
    if leader_ is None:
        raise CommandExecutionError("a rolling restart needs a leader and the cluster has none")
    todo = [m["name"] for m in members_ if m["pending_restart"] or not pending_only]
    restarted, handover = [], None

    def back_as_replica(m):
        return m["role"] not in LEADER_ROLES and m["state"] == "streaming" and not m["pending_restart"]

    for name in [n for n in todo if n != leader_]:
        restart(member=name, **connection)
        _wait_member(conn, name, back_as_replica, timeout, "a streaming replica without pending restart")
        restarted.append(name)
    if leader_ in todo:
        standbys = [m for m in _members(conn) if m["role"] not in LEADER_ROLES and m["state"] == "streaming"]
        sync = [m["name"] for m in standbys if m["role"] == "sync_standby"]
        candidate = sync[0] if sync else (standbys[0]["name"] if standbys else None)
        if candidate is None:
            raise CommandExecutionError(f"{leader_} needs a restart but no replica is streaming to take over")
        handover = switchover(candidate=candidate, leader=leader_, timeout=timeout, **connection)
        _wait_member(conn, leader_, lambda m: m["role"] not in LEADER_ROLES and m["state"] in ("streaming", "running"),
                     timeout, "a replica")
        still = [m for m in _members(conn) if m["name"] == leader_ and m["pending_restart"]]
        if still or not pending_only:
            restart(member=leader_, **connection)
        _wait_member(conn, leader_, back_as_replica, timeout, "a streaming replica without pending restart")
        restarted.append(leader_)
    return {"restarted": restarted, "switchover": handover, "leader": _leader_of(_members(conn))}
