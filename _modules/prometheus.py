"""
Prometheus on the monitoring host, through its HTTP API (``/api/v1``): which
scrape targets answer, which alerts fire, and one query.

* :func:`targets`: every active target with its job, host and health.
* :func:`health`: the whole picture, and the problems (a target down).
* :func:`alerts`: the alerts Prometheus holds (pending and firing).
* :func:`query`: one PromQL expression, evaluated now.

Every function takes ``url``, Prometheus's address (default
``http://127.0.0.1:9090``, as halite lays it down: the module runs on the
monitoring host), and ``timeout`` in seconds. Only the Python standard
library is used (``_utils/halite_http``), so the module runs wherever
salt-ssh's thin runs. Every failure raises
:class:`salt.exceptions.CommandExecutionError` naming the URL and the answer.
"""
from __future__ import annotations

from urllib.parse import urlencode

from salt.exceptions import CommandExecutionError

__virtualname__ = "prometheus"

DEFAULT_URL = "http://127.0.0.1:9090"


def __virtual__():
    return __virtualname__


def _get(path: str, url: str, timeout: float, params: dict | None = None):
    http = __utils__["halite_http.opener"]()
    full = url.rstrip("/") + path + (("?" + urlencode(params)) if params else "")
    answer = __utils__["halite_http.request"](http, "Prometheus", "GET", full, timeout,
                                              unreachable_hint=" (is prometheus.service running?)")
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise CommandExecutionError(f"Prometheus GET {full} answered {str(answer)[:300]}")
    return answer["data"]


def targets(url: str = DEFAULT_URL, timeout: float = 10) -> list[dict]:
    """Every active scrape target: ``{"job", "host", "instance", "health", "error"}``.

    ``health`` is Prometheus's word (``up``, ``down``, ``unknown`` before the
    first scrape); ``error`` its last scrape error, if any.

    CLI Example::

        salt-ssh mon-01 prometheus.targets
    """
    data = _get("/api/v1/targets", url, timeout, {"state": "active"})
    return [{"job": t["labels"].get("job"), "host": t["labels"].get("host"),
             "instance": t["labels"].get("instance"), "health": t.get("health"),
             "error": t.get("lastError") or ""}
            for t in data.get("activeTargets", [])]


def alerts(url: str = DEFAULT_URL, timeout: float = 10) -> list[dict]:
    """The alerts Prometheus holds now: ``{"name", "state", "labels", "active_at"}``
    (``state`` is ``pending`` while its ``for:`` runs, then ``firing``).

    CLI Example::

        salt-ssh mon-01 prometheus.alerts
    """
    data = _get("/api/v1/alerts", url, timeout)
    return [{"name": a["labels"].get("alertname"), "state": a.get("state"), "labels": a.get("labels", {}),
             "active_at": a.get("activeAt")} for a in data.get("alerts", [])]


def query(expr: str, url: str = DEFAULT_URL, timeout: float = 10) -> list[dict]:
    """Evaluate the PromQL ``expr`` now: ``[{"labels", "value"}]`` (an instant vector).

    CLI Example::

        salt-ssh mon-01 prometheus.query 'up == 0'
    """
    if not str(expr).strip():
        raise CommandExecutionError("query: give a PromQL expression")
    data = _get("/api/v1/query", url, timeout, {"query": expr})
    if data.get("resultType") != "vector":
        raise CommandExecutionError(f"query {expr!r}: a {data.get('resultType')}, not an instant vector")
    return [{"labels": r["metric"], "value": float(r["value"][1])} for r in data["result"]]


def health(url: str = DEFAULT_URL, timeout: float = 10, jobs=None) -> dict:
    """Whether every scrape target answers: ``{"healthy", "targets", "up", "problems"}``.

    :param jobs: the jobs that must have at least one target (a job missing
        from prometheus.yml is a problem too), a list or a comma-separated
        string (``jobs=node,postgres`` on the command line); None: no such check.

    CLI Example::

        salt-ssh mon-01 prometheus.health
    """
    if isinstance(jobs, str):
        jobs = [j.strip() for j in jobs.split(",") if j.strip()]
    seen = targets(url, timeout)
    problems = [f"{t['job']} on {t['host'] or t['instance']}: {t['health']}"
                + (f" ({t['error']})" if t["error"] else "") for t in seen if t["health"] != "up"]
    for job in jobs or []:
        if not any(t["job"] == job for t in seen):
            problems.append(f"job {job}: no target")
    if not seen:
        problems.append("no scrape target at all")
    return {"healthy": not problems, "targets": len(seen), "up": sum(t["health"] == "up" for t in seen),
            "problems": problems}
