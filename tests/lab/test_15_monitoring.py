"""Monitoring in the lab, right after the deploy and before any fault: Prometheus on the
monitoring host scrapes every exporter of the topology, the metrics tell the cluster as it
is, no alert was even pending since Prometheus started, and a stopped replica fires its
alerts, reaches the alert recorder through Alertmanager, and resolves once it is back.

Prometheus is read the way an operator reads it: its HTTP API on the monitoring host's
edge address (halite.view.prometheus_url), from the control machine; the dashboard in
headless Chromium, while a switchover happens."""
import json
import time

import pytest

from halite import config, view
from labkit import BIN, REPO, alert_firing, healthy_cluster, patroni_members, prometheus, run, salt_ssh, wait_for

DATA = config.load()
TOPO = DATA["topology"]
MON = view.monitoring_host_of(TOPO)
PROM = view.prometheus_url(DATA)
DB_HOSTS = config.hosts_with_role(TOPO, "db")
RECORDER_LOG = view.MONITORING_PATHS["recorder_dir"] + "/alerts.jsonl"
api = prometheus


def query(expr: str) -> list[dict]:
    return [{"labels": r["metric"], "value": float(r["value"][1])} for r in api("query", query=expr)["result"]]


def by_host(expr: str) -> dict[str, float]:
    return {r["labels"]["host"]: r["value"] for r in query(expr)}


def recorded() -> list[dict]:
    """Every notification the recorder on the monitoring host kept (one JSON line each)."""
    res = run([BIN / "halite", "lab", "ssh", MON, "cat", RECORDER_LOG], timeout=60)
    if res.returncode != 0:  # no notification yet: no file yet
        return []
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def notified(name: str, host: str, status: str, since: float) -> float | None:
    """When the recorder received ``name`` on ``host`` with ``status`` (after ``since``)."""
    for entry in recorded():
        if entry["received_at"] < since:
            continue
        for alert in entry["notification"].get("alerts", []):
            labels = alert.get("labels", {})
            if labels.get("alertname") == name and labels.get("host") == host and alert.get("status") == status:
                return entry["received_at"]
    return None


pytestmark = [pytest.mark.lab, pytest.mark.skipif(MON is None, reason="the topology has no monitoring host")]


def test_prometheus_scrapes_every_exporter_of_the_topology(deployed):
    expected = {(job["name"], t["host"]) for job in view.scrape_jobs(DATA) for t in job["targets"]}

    def all_up():
        seen = {(t["labels"]["job"], t["labels"]["host"]): t["health"] for t in api("targets")["activeTargets"]}
        return seen if set(seen) == expected and set(seen.values()) == {"up"} else False

    seen = wait_for(all_up, timeout=120, interval=2, what="every target of the topology up in Prometheus")
    jobs = sorted({job for job, _ in seen})
    assert jobs == ["etcd", "haproxy", "node", "patroni", "pgbouncer", "postgres"]
    # node-exporter on every host of the topology
    assert {h for job, h in seen if job == "node"} == set(TOPO["hosts"])


def test_the_metrics_tell_the_cluster_as_it_is(deployed):
    leader = wait_for(healthy_cluster, timeout=120, interval=2, what="a healthy cluster")
    # Patroni's own /metrics: one primary, the others replicas that stream
    wait_for(lambda: by_host('patroni_primary{job="patroni"}') == {h: float(h == leader) for h in DB_HOSTS},
             timeout=60, interval=2, what=f"patroni_primary naming {leader} alone")
    assert by_host('patroni_postgres_streaming{job="patroni"} == 1') == {h: 1.0 for h in DB_HOSTS if h != leader}
    # PostgreSQL's exporter logs in with the pg_monitor login on every member
    assert by_host('pg_up{job="postgres"}') == {h: 1.0 for h in DB_HOSTS}
    # PgBouncer's exporter reads the pools of every member (a stats user, over the unix socket)
    assert set(by_host('pgbouncer_used_clients{job="pgbouncer"}')) == set(DB_HOSTS)
    assert {r["labels"]["host"] for r in query('pgbouncer_waiting_clients{job="pgbouncer"}')} == set(DB_HOSTS)
    # etcd: every member sees a leader; HAProxy: one server takes writes
    assert by_host('etcd_server_has_leader{job="etcd"}') == {h: 1.0 for h in DB_HOSTS}
    writes = query(f'haproxy_backend_active_servers{{job="haproxy", proxy="{view.HAPROXY_WRITE_PROXY}"}}')
    assert [r["value"] for r in writes] == [1.0]
    # the backup host's textfile: the first full backup of the deploy, recent
    backups = query("halite_backup_last_success_timestamp_seconds")
    assert backups and {r["labels"]["type"] for r in backups} >= {"full"}
    assert time.time() - max(r["value"] for r in backups) < view.prom_seconds(
        DATA["monitoring"]["thresholds"]["backup_max_age"])
    assert [r["value"] for r in query("halite_backup_info_ok")] == [1.0]


def test_no_alert_fired_on_the_healthy_cluster(deployed):
    """From Prometheus's start (the end of the deploy) to now, before any fault: no rule
    fired, so no rule is noisy on a healthy cluster. A rule may turn pending for an
    evaluation or two (seen: PatroniReplicaLagging while a WAL switch of the deploy's
    `pgbackrest check` lies between the leader's and the replica's scrapes); its `for:`
    is what keeps it from firing, and the pending ones are printed."""
    started = api("status/runtimeinfo")["startTime"]
    from datetime import datetime
    window = int(time.time() - datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp())
    assert window > 60, f"Prometheus started {window}s ago: too short a window to say anything"
    def named(rows):
        return [f"{r['labels']['alertname']} on {r['labels'].get('host', '-')}" for r in rows]

    fired = query(f'max_over_time(ALERTS{{alertstate="firing"}}[{window}s])')
    assert fired == [], named(fired)
    pending = query(f'max_over_time(ALERTS{{alertstate="pending"}}[{window}s])')
    print(f"no alert fired for {window}s since Prometheus started; pending meanwhile: {named(pending) or 'none'}")


def test_a_stopped_replica_fires_its_alerts_reaches_the_recorder_and_resolves(deployed):
    leader = wait_for(healthy_cluster, timeout=120, interval=2, what="a healthy cluster")
    replica = next(m["name"] for m in patroni_members() if m["name"] != leader)
    names = ("PostgresDown", "ScrapeTargetDown")
    t0 = time.time()
    res = run([BIN / "halite", "lab", "ssh", replica, "systemctl", "stop", "patroni"], timeout=120)
    assert res.returncode == 0, res.stderr
    try:
        # PostgreSQL stops with Patroni: its exporter's pg_up drops, Patroni's /metrics goes away
        wait_for(lambda: all(alert_firing(n, replica) for n in names), timeout=300, interval=2,
                 what=f"{', '.join(names)} firing for {replica}")
        fired = time.time() - t0
        got = wait_for(lambda: notified("PostgresDown", replica, "firing", t0), timeout=120, interval=3,
                       what="the recorder's copy of PostgresDown")
    finally:
        run([BIN / "halite", "lab", "ssh", replica, "systemctl", "start", "patroni"], timeout=120)
    t1 = time.time()
    wait_for(healthy_cluster, timeout=300, interval=3, what="the replica streaming again")
    wait_for(lambda: not any(alert_firing(n, replica) for n in names), timeout=300, interval=2,
             what="the alerts resolved")
    resolved = wait_for(lambda: notified("PostgresDown", replica, "resolved", t1), timeout=300, interval=3,
                        what="the recorder's resolved notification")
    f = DATA["monitoring"]["for"]
    print(f"{replica} stopped: firing in Prometheus after {fired:.0f}s (for: {f['replication']}/{f['scrape']}, "
          f"scrape every {DATA['monitoring']['scrape_interval']}), recorded after {got - t0:.0f}s; "
          f"resolved and recorded {resolved - t1:.0f}s after the restart")
    # neither the leader nor another replica alerted meanwhile
    others = [a for a in api("alerts")["alerts"] if a["state"] == "firing" and a["labels"].get("host") != replica]
    assert others == [], others


def test_the_dashboard_shows_a_switchover_as_it_happens(deployed, tmp_path):
    """The dashboard on the monitoring host, in headless Chromium from the control machine:
    drawn from Prometheus's data, then a switchover marked on it as it happens. Its
    screenshot, taken then, is docs/screenshots/dashboard.png."""
    from browserkit import chromium
    from selenium.webdriver.common.by import By

    old = wait_for(healthy_cluster, timeout=120, interval=2, what="a healthy cluster")
    # with synchronous_mode Patroni hands over to the synchronous standby only
    candidate = next(m["name"] for m in patroni_members() if m["role"] == "sync_standby")

    def dataset(key: str):
        return driver.execute_script(f"return document.body.dataset.{key} || null")

    with chromium(tmp_path, console_log=True, window="1280,1300") as driver:
        driver.get(view.dashboard_url(DATA))
        wait_for(lambda: dataset("ready") == "1", timeout=90, interval=1, what="the dashboard drawn")
        before = int(dataset("events") or 0)
        rc, data = salt_ssh(DB_HOSTS[0], "patroni.switchover", f"candidate={candidate}")
        assert rc == 0, data
        t0 = time.monotonic()
        wait_for(lambda: int(dataset("events") or 0) > before, timeout=120, interval=1,
                 what="the switchover marked on the dashboard")
        shown = time.monotonic() - t0
        body = driver.find_element(By.TAG_NAME, "body").text
        assert f"{old} -> {candidate}" in body, body[-2000:]
        assert not [e for e in driver.find_elements(By.ID, "error") if e.is_displayed() and e.text.strip()]
        shots = REPO / "docs" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shots / "dashboard.png"))
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], severe
    print(f"switchover {old} -> {candidate} marked on the dashboard {shown:.0f}s after it was asked")
    wait_for(healthy_cluster, timeout=180, interval=2, what="the old leader streaming again")
