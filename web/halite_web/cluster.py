"""The cluster as the site sees it: primary (write pool), replicas (Patroni
REST /cluster, or pg_stat_replication on the primary) and the backend that
served the read."""
from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import urllib.error
import urllib.request
from typing import Any

from .db import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

PRIMARY_SQL = """
SELECT host(inet_server_addr()) AS host, inet_server_port() AS port,
       pg_is_in_recovery() AS in_recovery,
       current_setting('server_version') AS version,
       current_setting('cluster_name') AS cluster_name,
       pg_postmaster_start_time() AS started_at,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS wal_lsn
"""
REPLICATION_SQL = """
SELECT application_name AS name, host(client_addr) AS host, state, sync_state,
       CASE WHEN replay_lsn IS NULL THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS lag_bytes,
       EXTRACT(epoch FROM replay_lag)::float AS replay_lag_s
FROM pg_stat_replication ORDER BY application_name
"""
SERVED_SQL = """
SELECT host(inet_server_addr()) AS host, inet_server_port() AS port,
       pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery()
            THEN EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float
       END AS replay_delay_s
"""


def _host(h: str | None) -> str | None:
    return h.split("/")[0] if h else h


def fetch_patroni(urls: list[str], timeout: float,
                  ca_file: str | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """GET /cluster from the first Patroni REST API that answers.

    :param ca_file: the CA that https APIs are verified against (halite's CA,
        ``PATRONI_CA_FILE``); None: the system's trust store.
    """
    errors = []
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    except (OSError, ssl.SSLError) as exc:
        return None, [f"Patroni CA file {ca_file}: {exc}"]
    for base in urls:
        url = base.rstrip("/") + "/cluster"
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
                data = json.loads(resp.read().decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("members"), list):
                raise ValueError("unexpected answer")
            data["_url"] = base
            return data, errors
        except (OSError, ValueError, urllib.error.URLError) as exc:
            errors.append(f"Patroni {base}: {exc}")
    return None, errors


def _lag(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def gather(db: Database, patroni_urls: list[str], patroni_timeout: float,
           prefer_write: bool, patroni_ca_file: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "primary": None, "replicas": [], "replicas_source": None,
        "served_by": None, "patroni": None, "errors": [],
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }

    def on_primary(cur):
        cur.execute(PRIMARY_SQL)
        primary = cur.fetchone()
        replication = []
        if not patroni_urls:
            cur.execute(REPLICATION_SQL)
            replication = cur.fetchall()
        return primary, replication

    try:
        (primary, replication), _backend = db.write(on_primary)
        primary["host"] = _host(primary["host"])
        primary["started_at"] = primary["started_at"].isoformat(timespec="seconds")
        status["primary"] = primary
        if not patroni_urls:
            status["replicas_source"] = "pg_stat_replication"
            status["replicas"] = [{
                "name": r["name"], "host": r["host"], "port": None, "role": "replica",
                "state": r["state"], "sync_state": r["sync_state"],
                "lag_bytes": r["lag_bytes"], "replay_lag_s": r["replay_lag_s"],
            } for r in replication]
    except DatabaseUnavailable as exc:
        status["errors"].append(f"primary (write path) unavailable: {exc.cause}")

    if patroni_urls:
        data, errors = fetch_patroni(patroni_urls, patroni_timeout, patroni_ca_file)
        status["errors"].extend(errors)
        if data:
            status["replicas_source"] = "patroni"
            members = data["members"]
            leader = next((m for m in members if m.get("role") in ("leader", "standby_leader")), None)
            status["patroni"] = {
                "url": data["_url"], "scope": data.get("scope"),
                "leader": leader.get("name") if leader else None,
                "members": [{
                    "name": m.get("name"), "role": m.get("role"), "state": m.get("state"),
                    "host": m.get("host"), "port": m.get("port"),
                    "timeline": m.get("timeline"), "lag_bytes": _lag(m.get("lag")),
                } for m in members],
            }
            status["replicas"] = [{
                "name": m.get("name"), "host": m.get("host"), "port": m.get("port"),
                "role": m.get("role"), "state": m.get("state"), "sync_state": None,
                "lag_bytes": _lag(m.get("lag")), "replay_lag_s": None,
                "timeline": m.get("timeline"),
            } for m in members if m is not leader]
            if status["primary"] is not None and leader:
                status["primary"]["patroni_leader"] = leader.get("name")
                status["primary"]["patroni_leader_host"] = leader.get("host")

    try:
        served, backend = db.read(lambda cur: cur.execute(SERVED_SQL).fetchone(),
                                  prefer_write=prefer_write)
        status["served_by"] = {
            "host": _host(served["host"]), "port": served["port"],
            "in_recovery": served["in_recovery"],
            "role": "replica" if served["in_recovery"] else "primary",
            "replay_delay_s": served["replay_delay_s"],
            "pool": backend.pool, "fallback": backend.fallback,
            "read_your_writes": prefer_write,
        }
        if status["patroni"]:
            for m in status["patroni"]["members"]:
                if m["host"] == status["served_by"]["host"]:
                    status["served_by"]["member"] = m["name"]
    except DatabaseUnavailable as exc:
        status["errors"].append(f"read path unavailable: {exc.cause}")
    return status
