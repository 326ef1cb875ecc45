"""
The etcd cluster, through etcd's v3 API, from a database host.

etcd 3.4 serves its v3 API as JSON through the gRPC gateway on the client port
(``POST /v3/cluster/member/list``, ``POST /v3/maintenance/status``, ...) and
a health check at ``GET /health``. This module uses those only: never the v2
API, never raw keys. Only the Python standard library is used.

The gateway sends uint64 values (member ids, sizes, terms) as JSON strings;
this module turns them into integers, and shows member ids in hexadecimal as
``etcdctl member list`` does.

Connection settings; each can be overridden per call with a keyword argument:

============  ==========================  ==========
keyword       pillar key                  default
============  ==========================  ==========
host          (keyword only)              127.0.0.1
port          halite:etcd:client_port     2379
http_timeout  (keyword only)              5 seconds
============  ==========================  ==========

TLS (pillar only): with ``halite:tls_on:etcd`` (default true) the module speaks https,
verifies etcd against halite's CA and shows this host's certificate with root's key
(etcd asks every client for one): the files named by ``halite:tls_paths`` (``ca``,
``cert``, ``key``; defaults under /etc/halite/tls). halite's roster hands both keys
to direct salt-ssh calls.

Every failure (unreachable endpoint, HTTP error status, time-out, a body that
is not JSON) raises :class:`salt.exceptions.CommandExecutionError` naming the
method, the URL, the HTTP status and etcd's answer.
"""
from __future__ import annotations

import logging
import sys
import urllib.parse
import urllib.request
from collections import Counter

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "etcd_cluster"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2379
DEFAULT_HTTP_TIMEOUT = 5
#: Keywords every public function accepts to override the pillar.
CONNECTION_KEYS = ("host", "port", "http_timeout")
#: etcd's AlarmType enum, for a gateway that sends numbers instead of names.
ALARM_NAMES = {0: "NONE", 1: "NOSPACE", 2: "CORRUPT"}

#: halite's TLS files on the hosts (halite.view.TLS_PATHS), for calls whose pillar has none.
DEFAULT_TLS_PATHS = {"ca": "/etc/halite/tls/ca.crt", "cert": "/etc/halite/tls/host.crt",
                     "key": "/etc/halite/tls/host.key"}

# Talk to etcd directly, never through an http_proxy from the environment (plain http).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def __virtual__():
    """Load on any Python 3.8+ (standard library only)."""
    if sys.version_info < (3, 8):
        return (False, "the etcd_cluster module needs Python 3.8 or newer")
    return True


# ---------------------------------------------------------------------------
# HTTP boundary
# ---------------------------------------------------------------------------


def _connection(kwargs: dict) -> dict:
    """Connection settings: keyword arguments over pillar over defaults."""
    __utils__["halite_http.check_keywords"](kwargs, CONNECTION_KEYS)
    setting = __utils__["halite_http.setting"]
    port = kwargs.get("port")
    if port is None:
        port = setting(__salt__["config.get"], "halite:etcd:client_port", DEFAULT_PORT)
    tls = _tls_on()
    paths = dict(DEFAULT_TLS_PATHS, **(setting(__salt__["config.get"], "halite:tls_paths", {}) or {}))
    return {
        "url": __utils__["halite_http.base_url"](kwargs.get("host") or DEFAULT_HOST, port,
                                                 "https" if tls else "http"),
        "http_timeout": float(kwargs.get("http_timeout") or DEFAULT_HTTP_TIMEOUT),
        # halite's CA and the client certificate etcd asks for (None: plain http)
        "tls": {"ca_file": paths["ca"], "cert_file": paths["cert"], "key_file": paths["key"]} if tls else None,
    }


def _tls_on() -> bool:
    """``halite:tls_on:etcd`` (default true): etcd speaks https and asks for a client certificate."""
    value = __utils__["halite_http.setting"](__salt__["config.get"], "halite:tls_on:etcd", True)
    return str(value).lower() not in ("false", "0", "no", "off")


def _request(method: str, url: str, conn: dict, payload=None, accept=(200,)):
    """Send one request to etcd and return the parsed JSON answer (``halite_http.request``).

    :param accept: HTTP statuses whose body is an answer, not an error
        (``GET /health`` answers 503 with a JSON body when unhealthy).
    :raises CommandExecutionError: on any failure, naming method and URL.
    """
    opener = __utils__["halite_http.opener"](**conn["tls"]) if conn.get("tls") else _OPENER
    return __utils__["halite_http.request"](
        opener, "etcd", method, url, conn["http_timeout"], payload=payload, accept=accept,
        unreachable_hint="; is etcd running and listening there?",
    )


def _post(conn: dict, path: str, payload=None, base=None) -> dict:
    data = _request("POST", (base or conn["url"]) + path, conn, payload=payload or {})
    if not isinstance(data, dict):
        raise CommandExecutionError(f"etcd POST {base or conn['url']}{path} returned no mapping: {str(data)[:200]}")
    return data


# ---------------------------------------------------------------------------
# Values from the gateway
# ---------------------------------------------------------------------------


def _uint(value) -> int:
    """A uint64 from the gateway: a JSON string ("123"), a number, or absent (0)."""
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CommandExecutionError(f"etcd sent {value!r} where a number was expected") from None


def _hex(value: int) -> str:
    return format(value, "x")


def _field(data: dict, *names, default=None):
    """First present key among ``names`` (gateways differ on camelCase vs snake_case)."""
    for name in names:
        if name in data:
            return data[name]
    return default


def _member(raw: dict) -> dict:
    name = raw.get("name") or ""
    return {
        "id": _hex(_uint(_field(raw, "ID", "id"))),
        "name": name,
        "peer_urls": list(_field(raw, "peerURLs", "peer_urls", default=[]) or []),
        "client_urls": list(_field(raw, "clientURLs", "client_urls", default=[]) or []),
        "is_learner": bool(_field(raw, "isLearner", "is_learner", default=False)),
        # A member that was added but never started has no name yet.
        "started": bool(name),
    }


def _members(conn: dict) -> list[dict]:
    data = _post(conn, "/v3/cluster/member/list")
    return [_member(m) for m in data.get("members") or []]


def _status(conn: dict, base: str) -> dict:
    data = _post(conn, "/v3/maintenance/status", base=base)
    header = data.get("header") or {}
    return {
        "endpoint": base,
        "id": _hex(_uint(_field(header, "member_id", "memberId"))),
        "leader": _hex(_uint(data.get("leader"))),
        "version": data.get("version"),
        "db_size": _uint(_field(data, "dbSize", "db_size")),
        "raft_term": _uint(_field(data, "raftTerm", "raft_term")),
        "raft_index": _uint(_field(data, "raftIndex", "raft_index")),
        "is_learner": bool(_field(data, "isLearner", "is_learner", default=False)),
        "errors": list(data.get("errors") or []),
    }


def _name_of(members_: list[dict], member_id: str):
    for member in members_:
        if member["id"] == member_id:
            return member["name"] or None
    return None


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def members(**connection) -> list[dict]:
    """List the etcd members (``POST /v3/cluster/member/list``, HTTP 200).

    :param connection: host, port, http_timeout (see the module docstring).
    :returns: list of dicts with ``id`` (hex, as etcdctl shows it), ``name``
        (empty until the member first started), ``peer_urls``, ``client_urls``,
        ``is_learner`` and ``started``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.members
    """
    return _members(_connection(connection))


def status(endpoints=None, **connection) -> list[dict]:
    """Ask each endpoint for its status (``POST /v3/maintenance/status``, HTTP 200).

    An endpoint that does not answer is listed with an ``error`` key instead
    of failing the whole call.

    :param endpoints: list (or comma-separated string) of client URLs; default:
        the first client URL of every started member.
    :param connection: host, port, http_timeout (see the module docstring).
    :returns: list of dicts with ``endpoint``, ``id``, ``name``, ``leader`` (hex id),
        ``is_leader``, ``version``, ``db_size``, ``raft_term``, ``raft_index``,
        ``is_learner`` and ``errors``; or ``endpoint`` and ``error``.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.status
        salt-ssh db-01 etcd_cluster.status endpoints=https://127.0.0.1:2379
    """
    conn = _connection(connection)
    found = _members(conn)
    if endpoints is None:
        endpoints = [m["client_urls"][0] for m in found if m["client_urls"]]
    elif isinstance(endpoints, str):
        endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
    out = []
    for endpoint in endpoints:
        endpoint = endpoint.rstrip("/")
        try:
            entry = _status(conn, endpoint)
        except CommandExecutionError as exc:
            out.append({"endpoint": endpoint, "error": str(exc)})
            continue
        entry["name"] = _name_of(found, entry["id"])
        entry["is_leader"] = entry["id"] == entry["leader"]
        out.append(entry)
    return out


def leader(**connection):
    """Name of the etcd leader, as the members' ``POST /v3/maintenance/status`` report it (HTTP 200).

    Every started member's endpoint is asked; the leader most of them name wins.

    :param connection: host, port, http_timeout (see the module docstring).
    :returns: the leader's member name, or None when no reachable member knows a leader.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.leader
    """
    conn = _connection(connection)
    found = _members(conn)
    votes = Counter()
    for member in found:
        if not member["client_urls"]:
            continue
        try:
            seen = _status(conn, member["client_urls"][0].rstrip("/"))
        except CommandExecutionError as exc:
            log.debug("etcd member %s gave no status: %s", member["name"], exc)
            continue
        if seen["leader"] != "0":
            votes[seen["leader"]] += 1
    if not votes:
        return None
    return _name_of(found, votes.most_common(1)[0][0])


def health(**connection) -> dict:
    """Health of etcd as seen from this host (``GET /health``, HTTP 200 healthy, 503 not).

    Also reads the member list (``POST /v3/cluster/member/list``) and the local
    member's view of the leader (``POST /v3/maintenance/status``). etcd's
    ``/health`` is false without quorum or with an active alarm.

    :param connection: host, port, http_timeout (see the module docstring).
    :returns: dict with ``healthy`` (``/health`` true and a leader known),
        ``endpoint``, ``reason``, ``leader`` (name), ``leader_id``, ``member_id``
        (the local member), ``version``, ``members`` (list, as :func:`members`),
        ``started`` (number of started voting members) and ``problems`` (sentences).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.health
    """
    conn = _connection(connection)
    answer = _request("GET", conn["url"] + "/health", conn, accept=(200, 503))
    flag = str(answer.get("health", "")).lower() == "true" if isinstance(answer, dict) else False
    reason = (answer.get("reason") or "") if isinstance(answer, dict) else ""
    found = _members(conn)
    problems = []
    if not flag:
        problems.append(f"{conn['url']}/health says unhealthy" + (f": {reason}" if reason else ""))
    local = None
    try:
        local = _status(conn, conn["url"])
    except CommandExecutionError as exc:
        problems.append(str(exc))
    leader_id = local["leader"] if local and local["leader"] != "0" else None
    leader_name = _name_of(found, leader_id) if leader_id else None
    if local and leader_id is None:
        problems.append("the local member knows no leader")
    started = [m for m in found if m["started"] and not m["is_learner"]]
    return {
        "healthy": flag and leader_id is not None,
        "endpoint": conn["url"],
        "reason": reason,
        "leader": leader_name,
        "leader_id": leader_id,
        "member_id": local["id"] if local else None,
        "version": local["version"] if local else None,
        "members": found,
        "started": len(started),
        "problems": problems,
    }


def alarms(**connection) -> list[dict]:
    """Active alarms such as NOSPACE or CORRUPT (``POST /v3/maintenance/alarm`` ``{"action": "GET"}``, HTTP 200).

    :param connection: host, port, http_timeout (see the module docstring).
    :returns: list of dicts with ``member_id`` (hex), ``member`` (name) and ``alarm``;
        empty when there is none.

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.alarms
    """
    conn = _connection(connection)
    data = _post(conn, "/v3/maintenance/alarm", {"action": "GET"})
    raised = data.get("alarms") or []
    if not raised:
        return []
    found = _members(conn)
    out = []
    for entry in raised:
        member_id = _hex(_uint(_field(entry, "memberID", "member_id")))
        alarm = entry.get("alarm", "NONE")
        if isinstance(alarm, int):
            alarm = ALARM_NAMES.get(alarm, str(alarm))
        out.append({"member_id": member_id, "member": _name_of(found, member_id), "alarm": alarm})
    return out


def _initial_cluster(members_: list[dict], new_id: str, new_name: str) -> str:
    """ETCD_INITIAL_CLUSTER for a new member, built as ``etcdctl member add`` builds it."""
    pairs = []
    for member in members_:
        name = new_name if member["id"] == new_id else member["name"]
        for url in member["peer_urls"]:
            pairs.append(f"{name}={url}")
    return ",".join(pairs)


def member_add(peer_url, name=None, learner=False, **connection) -> dict:
    """Announce a new member to the running cluster (``POST /v3/cluster/member/add``, HTTP 200).

    Start the new member afterwards with ``ETCD_INITIAL_CLUSTER`` set to the
    returned ``initial_cluster`` and ``ETCD_INITIAL_CLUSTER_STATE=existing``.
    When a member with this peer URL exists already, nothing is added and
    the same settings are returned with ``added: False``.

    :param peer_url: the new member's peer URL, e.g. ``https://10.0.0.14:2380`` (``http://`` with etcd in clear text).
    :param name: the new member's name (its ``ETCD_NAME``); default: the peer URL's host.
    :param learner: add it as a non-voting learner.
    :param connection: host, port, http_timeout (see the module docstring).
    :returns: dict with ``added``, ``id`` (hex), ``name``, ``peer_urls``, ``members``,
        ``initial_cluster``, ``initial_cluster_state`` and ``reply`` (etcd's answer).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.member_add https://10.0.0.14:2380 name=db-04
    """
    parts = urllib.parse.urlsplit(str(peer_url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SaltInvocationError(f"peer_url must look like https://host:2380, not {peer_url!r}")
    name = name or parts.hostname
    conn = _connection(connection)
    found = _members(conn)
    for member in found:
        if peer_url in member["peer_urls"]:
            return {
                "added": False,
                "id": member["id"],
                "name": member["name"] or name,
                "peer_urls": member["peer_urls"],
                "members": found,
                "initial_cluster": _initial_cluster(found, member["id"], member["name"] or name),
                "initial_cluster_state": "existing",
                "reply": None,
            }
    payload = {"peerURLs": [peer_url]}
    if learner:
        payload["isLearner"] = True
    reply = _post(conn, "/v3/cluster/member/add", payload)
    new = _member(reply.get("member") or {})
    everyone = [_member(m) for m in reply.get("members") or []]
    return {
        "added": True,
        "id": new["id"],
        "name": name,
        "peer_urls": new["peer_urls"],
        "members": everyone,
        "initial_cluster": _initial_cluster(everyone, new["id"], name),
        "initial_cluster_state": "existing",
        "reply": reply,
    }


def _find(members_: list[dict], name_or_id: str) -> dict:
    wanted = str(name_or_id)
    for member in members_:
        if wanted in (member["name"], member["id"]):
            return member
    known = ", ".join(f"{m['name'] or '(unstarted)'}={m['id']}" for m in members_) or "none"
    raise CommandExecutionError(f"etcd has no member named or numbered {wanted!r}; members: {known}")


def member_remove(name, **connection) -> dict:
    """Remove a member from the cluster (``POST /v3/cluster/member/remove``, HTTP 200).

    Stop the member's etcd first and move its data directory aside before it
    joins again (``orch.etcd_member`` with ``replace: true`` does all of it).
    etcd refuses a removal that would leave the cluster without quorum.

    :param name: the member's name, or its id in hexadecimal as :func:`members` shows it.
    :param connection: host, port, http_timeout (see the module docstring); ask
        a member that stays.
    :returns: dict with ``removed`` (True), ``id``, ``name`` and ``members`` (those left).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.member_remove db-03
    """
    conn = _connection(connection)
    member = _find(_members(conn), name)
    reply = _post(conn, "/v3/cluster/member/remove", {"ID": str(int(member["id"], 16))})
    return {
        "removed": True,
        "id": member["id"],
        "name": member["name"],
        "members": [_member(m) for m in reply.get("members") or []],
    }


def move_leader(target=None, **connection) -> dict:
    """Hand etcd's leadership to another member (``POST /v3/maintenance/transfer-leadership``, HTTP 200).

    The request goes to the current leader's client URL, as etcd requires.

    :param target: the new leader's name or hex id; default: the first other
        started voting member by name.
    :param connection: host, port, http_timeout (see the module docstring).
    :returns: dict with ``moved`` (False when ``target`` already leads), ``from`` and ``to`` (names).

    CLI Example:

    .. code-block:: bash

        salt-ssh db-01 etcd_cluster.move_leader
        salt-ssh db-01 etcd_cluster.move_leader target=db-02
    """
    conn = _connection(connection)
    found = _members(conn)
    current = leader(**connection)
    if current is None:
        raise CommandExecutionError("etcd has no leader to move: no reachable member knows one")
    old = _find(found, current)
    if target is None:
        others = sorted((m for m in found if m["id"] != old["id"] and m["started"] and not m["is_learner"]),
                        key=lambda m: m["name"])
        if not others:
            raise CommandExecutionError(f"etcd leader {current} has no started voting member to hand over to")
        new = others[0]
    else:
        new = _find(found, target)
    if new["id"] == old["id"]:
        return {"moved": False, "from": old["name"], "to": new["name"]}
    if not old["client_urls"]:
        raise CommandExecutionError(f"etcd leader {old['name']} advertises no client URL")
    _post(conn, "/v3/maintenance/transfer-leadership", {"targetID": str(int(new["id"], 16))},
          base=old["client_urls"][0].rstrip("/"))
    return {"moved": True, "from": old["name"], "to": new["name"]}
