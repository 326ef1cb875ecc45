"""The Prometheus alert rules and prometheus.yml (salt/monitoring/files), rendered
as Salt renders them, then checked by Debian's promtool: `check rules`,
`check config`, and `test rules` with a fire and a resolve case for every rule.

Nothing here is deployed yet: no exporter, no Prometheus. `make deps` unpacks
Debian's prometheus package under .venv/prometheus for promtool.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import rendering
from halite import config, model, view

REPO = rendering.REPO
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path=str(REPO / ".venv/prometheus/usr/bin"))


def monitoring_view(extra: dict | None = None) -> dict:
    """halite.view.monitoring of the lab's settings, with ``extra`` merged over them."""
    return view.monitoring(model.dump(model.validate(config.deep_merge(config.raw(), extra or {}))))


def render(tmp: Path, source: str, **context) -> str:
    """Render a file template as file.managed would, with the context a state would pass."""
    dest = tmp / f"tpl-{abs(hash(json.dumps(context, sort_keys=True)))}-{Path(source).name}"
    args = [f"{k}={json.dumps(v)}" for k, v in context.items()]
    res = rendering.salt_call(tmp, "db-01", "Debian", "cp.get_template", f"salt://{source}", str(dest), *args)
    assert res.returncode == 0 and dest.exists(), res.stdout + res.stderr
    return dest.read_text()


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-monitoring")


@pytest.fixture(scope="module")
def mon():
    return monitoring_view()


@pytest.fixture(scope="module")
def rules_file(tmp, mon) -> Path:
    path = tmp / "alerts.yml"
    path.write_text(render(tmp, "monitoring/files/alerts.yml.jinja", mon=mon))
    return path


def alerts_of(path: Path) -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]}


# --------------------------------------------------------------------------
# the fire and the resolve case of every rule
#
# Every series is "bad" for 20 minutes (longer than any default `for:`), then
# "good" for 20 more: the alert must be firing at 20m and gone at 40m.

FIRE_AT, RESOLVE_AT = "20m", "40m"
ADDRESSES = {"db-01": "10.77.1.11", "db-02": "10.77.1.12", "db-03": "10.77.1.13", "app-01": "10.77.1.20"}


def target(job: str, host: str, port: int, roles: str = ",db,") -> dict:
    """The labels Prometheus gives a series scraped from ``host`` (prometheus.yml's static_configs)."""
    return {"job": job, "instance": f"{ADDRESSES[host]}:{port}", "host": host, "roles": roles}


def patroni(host: str, **more) -> dict:
    return {**target("patroni", host, 8008), "scope": "halite", "name": host, **more}


def series(name: str, labels: dict, bad, good) -> dict:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": f"{bad}x20 {good}x20"}


def cases(mon: dict) -> dict[str, dict]:
    """Alert name -> input series, the labels of the alert that fires and its $value."""
    t = mon["thresholds"]
    db1, db2, db3 = patroni("db-01"), patroni("db-02"), patroni("db-03")
    etcd1 = target("etcd", "db-02", 2379)
    pgb = {**target("pgbouncer", "db-01", 9127), "database": "carsale", "user": "carsale"}
    node_db = {**target("node", "db-01", 9100), "device": "/dev/vda1", "fstype": "ext4", "mountpoint": "/var/lib"}
    node_app = target("node", "app-01", 9100, ",app,haproxy,legacy_db,")
    hap = {**target("haproxy", "app-01", 7000, ",app,haproxy,legacy_db,"), "proxy": mon["write_proxy"]}
    pg = target("postgres", "db-01", 9187)
    cert = {**target("node", "db-01", 9100), "path": "/etc/halite/tls/host.crt"}
    lag = t["replica_lag_bytes"]
    out = {
        # db-01 and db-02 replicas, db-03 neither: no leader; then db-01 leads
        "PatroniNoLeader": {"input": [series("patroni_primary", db1, 0, 1), series("patroni_primary", db2, 0, 0),
                                      series("patroni_primary", db3, 0, 0)],
                            "labels": {"scope": "halite"}, "value": 0},
        "PatroniMultipleLeaders": {"input": [series("patroni_primary", db1, 1, 1), series("patroni_primary", db2, 1, 0),
                                             series("patroni_primary", db3, 0, 0)],
                                   "labels": {"scope": "halite"}, "value": 2},
        "PatroniPostgresNotRunning": {"input": [series("patroni_postgres_running", db2, 0, 1)],
                                      "labels": db2, "value": 0},
        "PatroniReplicaNotStreaming": {"input": [series("patroni_replica", db2, 1, 1),
                                                 series("patroni_postgres_streaming", db2, 0, 1)],
                                       "labels": db2, "value": 1},
        # the leader at 10 x the limit; db-02 received nothing, then caught up; db-03 within the limit
        "PatroniReplicaLagging": {"input": [series("patroni_primary", db1, 1, 1), series("patroni_replica", db1, 0, 0),
                                            series("patroni_xlog_location", db1, 10 * lag, 10 * lag),
                                            series("patroni_replica", db2, 1, 1), series("patroni_primary", db2, 0, 0),
                                            series("patroni_xlog_received_location", db2, 0, 10 * lag),
                                            series("patroni_replica", db3, 1, 1), series("patroni_primary", db3, 0, 0),
                                            series("patroni_xlog_received_location", db3, 10 * lag - lag // 2,
                                                   10 * lag)],
                                  "labels": db2, "value": 10 * lag},
        "EtcdMemberDown": {"input": [series("up", etcd1, 0, 1)], "labels": etcd1, "value": 0},
        "EtcdNoLeader": {"input": [series("etcd_server_has_leader", etcd1, 0, 1)], "labels": etcd1, "value": 0},
        "EtcdDatabaseNearQuota": {"input": [series("etcd_mvcc_db_total_size_in_bytes", etcd1, 7 * 2**28, 2**28),
                                            series("etcd_server_quota_backend_bytes", etcd1, 2**31, 2**31)],
                                  "labels": etcd1, "value": 7 * 100 / 8},
        "PgBouncerClientsWaiting": {"input": [series("pgbouncer_waiting_clients", pgb,
                                                     t["pgbouncer_waiting_clients"] + 3, 0)],
                                    "labels": pgb, "value": t["pgbouncer_waiting_clients"] + 3},
        "PgBouncerClientConnectionsNearLimit": {
            "input": [series("pgbouncer_used_clients", target("pgbouncer", "db-01", 9127),
                             t["pgbouncer_client_limit"] + 1, 10)],
            "labels": target("pgbouncer", "db-01", 9127), "value": t["pgbouncer_client_limit"] + 1},
        "HAProxyNoWriteBackend": {"input": [series("haproxy_backend_active_servers", hap, 0, 1),
                                            series("haproxy_backend_backup_servers", hap, 0, 0),
                                            # the replicas' proxy has servers: it must not count
                                            series("haproxy_backend_active_servers", {**hap, "proxy": "replicas"},
                                                   2, 2)],
                                  "labels": hap, "value": 0},
        # a db host's filesystem 95% full, then 50%; an app host's full one does not count
        "DiskNearlyFull": {"input": [series("node_filesystem_avail_bytes", node_db, 5, 50),
                                     series("node_filesystem_size_bytes", node_db, 100, 100),
                                     series("node_filesystem_avail_bytes", {**node_app, "fstype": "ext4",
                                                                            "mountpoint": "/"}, 1, 1),
                                     series("node_filesystem_size_bytes", {**node_app, "fstype": "ext4",
                                                                           "mountpoint": "/"}, 100, 100)],
                           "labels": node_db, "value": 95},
        "ClockOffset": {"input": [series("node_timex_offset_seconds", node_app, -5 * t["clock_offset_seconds"], 0)],
                        "labels": node_app, "value": 5 * t["clock_offset_seconds"]},
        "ScrapeTargetDown": {"input": [series("up", pg, 0, 1)], "labels": pg, "value": 0},
        "PostgresDown": {"input": [series("pg_up", pg, 0, 1)], "labels": pg, "value": 0},
        # db-01 promoted at 18m (timeline 1 -> 2): firing at 20m, gone once the 5m window has passed
        "PatroniLeaderChanged": {"input": [{"series": series("patroni_postgres_timeline", db1, 0, 0)["series"],
                                            "values": "1x18 2x21"},
                                           series("patroni_primary", db1, 1, 1)],
                                 "labels": db1, "value": None},
        # the host's certificate ends a day after the fire case's time, then (renewed) far later
        "CertificateExpiresSoon": {"input": [series("halite_tls_cert_expiry_timestamp_seconds", cert, 1200 + 86400,
                                                    10**10)], "labels": cert, "value": None},
        # one more failure a minute for 20 minutes, then none
        "WalArchiveFailing": {"input": [{"series": series("pg_stat_archiver_failed_count", pg, 0, 0)["series"],
                                         "values": "0+1x20 20x20"}],
                              "labels": pg, "value": None},
        # the last backup 10 x the limit old at the start; a new one at 25m
        "BackupTooOld": {"input": [{"series": series("halite_backup_last_success_timestamp_seconds",
                                                     target("node", "db-01", 9100), 0, 0)["series"],
                                    "values": f"{-10 * t['backup_max_age_seconds']}x24 1500x16"}],
                         "labels": {}, "value": None},
    }
    if mon["synchronous_mode"]:
        out["PatroniSyncStandbyMissing"] = {
            "input": [series("patroni_primary", db1, 1, 1), series("patroni_sync_standby", db2, 0, 1),
                      series("patroni_sync_standby", db3, 0, 0)],
            "labels": {"scope": "halite"}, "value": 0}
    return out


def humanize(v: float) -> str:
    """Prometheus's ``humanize`` template function (template/template.go)."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return f"{v:.4g}"
    prefix = ""
    if abs(v) >= 1:
        for p in "kMGTPEZY":
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in "munpfazy":
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return f"{v:.4g}{prefix}"


def expand(text: str, labels: dict, value) -> str:
    """The annotation Prometheus would send: its template filled with the alert's labels and value."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    assert value is not None or "$value" not in text, text
    return text.replace("{{ $value | humanize }}", humanize(value) if value is not None else "")


def promtool_tests(path: Path, rules: Path, mon: dict, only: set[str] | None = None) -> dict:
    """promtool's test file: for every alert, its fire case (at 20m) and its resolve case (at 40m)."""
    alerts = alerts_of(rules)
    tests = []
    for name, case in cases(mon).items():
        if only is not None and name not in only:
            continue
        rule = alerts[name]
        labels = {**case["labels"], "severity": rule["labels"]["severity"]}
        value = case["value"]
        if name == "WalArchiveFailing":  # increase over the window: the extrapolated count of failures
            value = None if "$value" not in rule["annotations"]["summary"] else 5
        annotations = {k: expand(v, case["labels"], value) for k, v in rule["annotations"].items()}
        tests.append({"name": name, "interval": "1m", "input_series": case["input"], "alert_rule_test": [
            {"eval_time": FIRE_AT, "alertname": name,
             "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]},
            {"eval_time": RESOLVE_AT, "alertname": name, "exp_alerts": []},
        ]})
    path.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests},
                                   sort_keys=False, width=200))
    return {t["name"] for t in tests}


# --------------------------------------------------------------------------


def test_promtool_is_there():
    assert PROMTOOL, "promtool not found: run `make deps` (it unpacks Debian's prometheus under .venv/prometheus)"


def test_rules_pass_promtool_check_rules(rules_file):
    res = promtool("check", "rules", str(rules_file))
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_rule_has_a_summary_a_runbook_and_a_severity(rules_file):
    for name, rule in alerts_of(rules_file).items():
        assert set(rule["annotations"]) == {"summary", "runbook"}, name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert "\n" not in rule["annotations"]["runbook"], name


def test_every_rule_fires_and_resolves_under_promtool(tmp, rules_file, mon):
    path = tmp / "alerts_test.yml"
    tested = promtool_tests(path, rules_file, mon)
    assert tested == set(alerts_of(rules_file)), "a rule without its fire and resolve case"
    res = promtool("test", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_thresholds_and_durations_come_from_the_pillar(tmp):
    # the lag limit follows Patroni's maximum_lag_on_failover unless monitoring sets its own
    mon = monitoring_view({"patroni": {"dcs": {"maximum_lag_on_failover": 4194304}},
                           "monitoring": {"for": {"replication": "7m"}, "thresholds": {"disk_used_percent": 70}}})
    assert mon["thresholds"]["replica_lag_bytes"] == 4194304
    rules = tmp / "alerts-custom.yml"
    rules.write_text(render(tmp, "monitoring/files/alerts.yml.jinja", mon=mon))
    alerts = alerts_of(rules)
    assert alerts["PatroniReplicaLagging"]["expr"].rstrip().endswith("> 4194304")
    assert alerts["PatroniReplicaLagging"]["for"] == "7m" and alerts["DiskNearlyFull"]["expr"].endswith("> 70")
    # and promtool agrees: the lagging replica fires at the new limit, not below it
    path = tmp / "alerts-custom_test.yml"
    promtool_tests(path, rules, mon, only={"PatroniReplicaLagging", "DiskNearlyFull"})
    res = promtool("test", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert monitoring_view({"monitoring": {"thresholds": {"replica_lag_bytes": 123}}})[
        "thresholds"]["replica_lag_bytes"] == 123


def test_no_synchronous_standby_rule_without_synchronous_mode(tmp):
    mon = monitoring_view({"patroni": {"dcs": {"synchronous_mode": False}}})
    rules = tmp / "alerts-async.yml"
    rules.write_text(render(tmp, "monitoring/files/alerts.yml.jinja", mon=mon))
    assert "PatroniSyncStandbyMissing" not in alerts_of(rules)
    assert promtool("check", "rules", str(rules)).returncode == 0


def test_the_write_proxy_is_haproxys_listen_for_writes():
    text = (REPO / "salt/haproxy/files/haproxy.cfg.jinja").read_text()
    assert f"\nlisten {view.HAPROXY_WRITE_PROXY}\n    bind *:{{{{ h.write_port }}}}" in text


def test_prometheus_yml_scrapes_every_exporter_of_the_topology_and_passes_promtool(tmp, rules_file, mon):
    text = render(tmp, "monitoring/files/prometheus.yml.jinja", mon=mon, rules_file=str(rules_file))
    # promtool checks that the TLS files exist: halite's, as a host of the topology holds them
    # (salt/tls), stand in for them in a folder of the test's
    tls = tmp / "tls"
    tls.mkdir(exist_ok=True)
    for name in ("ca.crt", "host.crt", "host.key", "prometheus.key"):
        (tls / name).write_text("")
    path = tmp / "prometheus.yml"
    path.write_text(text.replace(view.TLS_PATHS["dir"] + "/", f"{tls}/"))
    res = promtool("check", "config", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    # Patroni's API and etcd over https, checked against halite's CA; etcd asks for a client certificate
    assert jobs["patroni"]["scheme"] == "https" and jobs["patroni"]["tls_config"] == {"ca_file": view.TLS_PATHS["ca"]}
    assert jobs["etcd"]["scheme"] == "https" and jobs["etcd"]["tls_config"] == {
        "ca_file": view.TLS_PATHS["ca"], "cert_file": view.TLS_PATHS["cert"],
        "key_file": view.TLS_PATHS["keys"]["prometheus"]}  # Prometheus's own copy (salt/monitoring/server.sls)
    assert jobs["node"]["scheme"] == "http" and "tls_config" not in jobs["node"]
    assert set(jobs) == {"node", "postgres", "pgbouncer", "patroni", "etcd", "haproxy"}

    def targets(job):
        return {sc["labels"]["host"]: sc["targets"][0] for sc in jobs[job]["static_configs"]}

    assert targets("node") == {"jump-01": "10.77.1.10:9100", "db-01": "10.77.1.11:9100", "db-02": "10.77.1.12:9100",
                               "db-03": "10.77.1.13:9100", "app-01": "10.77.1.20:9100",
                               "backup-01": "10.77.1.30:9100", "mon-01": "10.77.1.40:9100"}
    assert targets("patroni") == {f"db-0{i}": f"10.77.1.1{i}:8008" for i in (1, 2, 3)}
    assert targets("etcd") == {f"db-0{i}": f"10.77.1.1{i}:2379" for i in (1, 2, 3)}
    assert targets("postgres") == {f"db-0{i}": f"10.77.1.1{i}:9187" for i in (1, 2, 3)}
    assert targets("pgbouncer") == {f"db-0{i}": f"10.77.1.1{i}:9127" for i in (1, 2, 3)}
    assert targets("haproxy") == {"app-01": "10.77.1.20:7000"}
    assert jobs["node"]["static_configs"][4]["labels"]["roles"] == ",app,haproxy,legacy_db,"


def test_the_readme_lists_every_alert(rules_file):
    text = (REPO / "README.md").read_text().split("\n### Monitoring and alerts\n", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("|")[1].strip() for line in text.splitlines()
              if line.startswith("| ") and not line.startswith(("| alert ", "|---"))}
    assert listed == set(alerts_of(rules_file))


def test_no_write_backend_alert_while_a_backup_takes_the_writes(tmp, rules_file):
    """The primary's PgBouncer down: HAProxy writes straight to its PostgreSQL (a backup server),
    so the writes have a server and HAProxyNoWriteBackend stays quiet."""
    hap = target("haproxy", "app-01", 7000, ",app,haproxy,legacy_db,")
    hap = {**hap, "proxy": "primary"}
    path = tmp / "backup_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": [{
        "name": "backup", "interval": "1m",
        "input_series": [{"series": series("haproxy_backend_active_servers", hap, 0, 0)["series"], "values": "0x40"},
                         {"series": series("haproxy_backend_backup_servers", hap, 0, 0)["series"], "values": "1x40"}],
        "alert_rule_test": [{"eval_time": FIRE_AT, "alertname": "HAProxyNoWriteBackend", "exp_alerts": []}]}]},
        sort_keys=False, width=200))
    res = promtool("test", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_postgres_exporter_is_reset_before_its_first_start(tmp):
    """Debian's package starts the exporter with an empty DSN: it fails until systemd's start
    limit refuses further starts for 10 s, which failed orch.deploy in CI. Right after the install
    (only then: a converged host has nothing to do) the loop is stopped and its count cleared
    before the service state starts it."""
    states = rendering.answer(tmp, "db-01", "state.show_sls", "monitoring.exporters")
    reset = "monitoring-postgres-exporter-reset"
    assert rendering.arg(states, reset, "name") == ("systemctl stop prometheus-postgres-exporter; "
                                                    "systemctl reset-failed prometheus-postgres-exporter")
    assert rendering.arg(states, reset, "onchanges") == [{"pkg": "monitoring-postgres-exporter-pkg"}]
    assert {"cmd": reset} in rendering.arg(states, "monitoring-postgres-exporter-service", "require")


def test_the_certificates_are_read_once_at_deploy_by_the_units_own_command(tmp):
    """After a certificate changes, the deploy runs the service's command itself (its error in
    the state output if it fails) and tries it three times; the unit runs the same command."""
    states = rendering.answer(tmp, "app-01", "state.show_sls", "monitoring.exporters")
    now = "monitoring-cert-metrics-now"
    command = rendering.arg(states, now, "name")
    assert command == ("/usr/local/libexec/halite/cert-metrics /var/lib/prometheus/node-exporter/halite_tls.prom "
                       "/etc/halite/tls/host.crt /etc/halite/tls/ca.crt")
    unit = rendering.arg(states, "monitoring-cert-metrics-service", "contents")
    assert f"ExecStart={command}\n" in unit
    assert rendering.arg(states, now, "retry") == {"attempts": 3, "interval": 2}
    assert {"file": "halite-tls-cert"} in rendering.arg(states, now, "onchanges")
