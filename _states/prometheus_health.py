"""
A gate on monitoring: every scrape target Prometheus knows answers.

It only asks the ``prometheus`` execution module (``prometheus.health``) and
waits; it never changes anything.

.. code-block:: yaml

    prometheus-targets-up:
      prometheus_health.targets_up:
        - url: http://127.0.0.1:9090
        - jobs: [node, postgres, pgbouncer, patroni, etcd, haproxy]
        - timeout: 180
"""
from __future__ import annotations

import time

__virtualname__ = "prometheus_health"


def __virtual__():
    """Load when the prometheus execution module is available."""
    if "prometheus.health" in __salt__:
        return __virtualname__
    return (False, "prometheus_health needs the prometheus execution module (_modules/prometheus.py)")


def targets_up(name, url="http://127.0.0.1:9090", jobs=None, timeout=180, interval=3):
    """Wait until every active target's health is ``up`` (and every job in ``jobs`` has one).

    A target is scraped every ``scrape_interval``, so after a (re)start this
    takes at least one interval. Under ``test=True`` it looks once and reports
    what it would wait for.

    :param name: state ID (free text).
    :param url: Prometheus's address.
    :param jobs: jobs that must have targets (a job left out of prometheus.yml).
    :param timeout: seconds to wait before giving up.
    :param interval: seconds between two looks.
    :returns: a state return; on time-out the comment lists the targets down.
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    dry_run = bool(__opts__.get("test"))

    def look():
        seen = __salt__["prometheus.health"](url=url, jobs=jobs)
        if seen["healthy"]:
            return True, f"{seen['up']}/{seen['targets']} targets up"
        return False, "; ".join(seen["problems"])

    done, last_seen, elapsed = __utils__["halite_wait.poll"](look, 0 if dry_run else timeout, interval, time)
    if done:
        ret["result"] = True
        ret["comment"] = f"Prometheus scrapes every target: {last_seen} (after {elapsed:.0f}s)"
        return ret
    if dry_run:
        ret["result"] = None
        ret["comment"] = f"Would wait up to {timeout}s for every target up (now: {last_seen})"
        return ret
    ret["comment"] = f"Timed out after {timeout}s waiting for every target up. Last seen: {last_seen}"
    return ret
