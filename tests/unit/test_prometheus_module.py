"""_modules/prometheus.py and _states/prometheus_health.py against a REAL Prometheus.

Debian's prometheus binary (``make deps`` unpacks it under .venv/prometheus, as
for promtool in tests/render/test_render_monitoring.py) runs on the loopback
with a temporary storage folder, scraping every second:

* job ``prometheus`` (host ``mon``): Prometheus itself, up;
* job ``missing`` (host ``gone``): a loopback port nobody listens on, down;

and a rule file with ``AlwaysFiring`` (``vector(1)``, ``for: 0s``) and
``NeverFiring`` (``vector(1) == 0``). A second Prometheus, scraping only itself,
is the healthy case of the state. Only the modules' dunders are filled in;
HTTP, Prometheus and the wait loop are real.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from unittest.mock import patch

import pytest
import yaml
from salt.exceptions import CommandExecutionError

import prometheus
import prometheus_health
from conftest import REPO, salt_utils
from localkit import free_port, stop

PROMETHEUS = shutil.which("prometheus") or shutil.which("prometheus", path=str(REPO / ".venv/prometheus/usr/bin"))
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy

RULES = {"groups": [{"name": "test", "interval": "1s", "rules": [
    {"alert": "AlwaysFiring", "expr": "vector(1)", "for": "0s", "labels": {"severity": "info"}},
    {"alert": "NeverFiring", "expr": "vector(1) == 0", "labels": {"severity": "info"}},
]}]}




def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``predicate`` (every 0.1 s) until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"prometheus exited ({proc.returncode}) while waiting for {what}:\n"
                        + (log.read_text()[-3000:] if log else ""))
        try:
            value = predicate()
        except (OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s" + (f"\n{log.read_text()[-3000:]}" if log else ""))
        time.sleep(0.1)


def api(url: str, path: str):
    """Prometheus's answer, read directly (not through the module under test)."""
    with DIRECT.open(url + path, timeout=5) as resp:
        return json.loads(resp.read())["data"]


def ready(url: str) -> bool:
    with DIRECT.open(url + "/-/ready", timeout=2) as resp:
        return resp.status == 200


@contextmanager
def running_prometheus(folder: Path, scrape: list[tuple[str, int, str]]):
    """A Prometheus on 127.0.0.1 scraping ``(job, port, host label)``; yields ``(url, port)``.

    Its own port is the one of the job whose port is 0.
    """
    assert PROMETHEUS, "prometheus not found: run `make deps` (it unpacks Debian's prometheus under .venv/prometheus)"
    folder.mkdir(parents=True)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / "rules.yml")],
        "scrape_configs": [{"job_name": job, "static_configs": [
            {"targets": [f"127.0.0.1:{target_port or port}"], "labels": {"host": host}}]}
            for job, target_port, host in scrape],
    }
    (folder / "rules.yml").write_text(yaml.safe_dump(RULES))
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={folder / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: ready(url), 30, f"{url}/-/ready", proc, log)
        yield url, port
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def dead_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def prom(tmp_path_factory, dead_port) -> str:
    """The Prometheus with one target up and one down, both scraped at least once."""
    with running_prometheus(tmp_path_factory.mktemp("prom") / "two-jobs",
                            [("prometheus", 0, "mon"), ("missing", dead_port, "gone")]) as (url, _):
        wait_for(lambda: sorted(t["health"] for t in api(url, "/api/v1/targets")["activeTargets"]) == ["down", "up"],
                 30, "both targets scraped once")
        wait_for(lambda: len(api(url, "/api/v1/query?query=up")["result"]) == 2, 30, "two series of up")
        yield url


@pytest.fixture(scope="module")
def healthy_prom(tmp_path_factory) -> str:
    """A Prometheus scraping only itself (not waited for beyond /-/ready)."""
    with running_prometheus(tmp_path_factory.mktemp("prom") / "self-only", [("prometheus", 0, "mon")]) as (url, _):
        yield url


@pytest.fixture
def configure_loader_modules():
    return {
        prometheus: {"__utils__": salt_utils()},
        prometheus_health: {"__salt__": {"prometheus.health": prometheus.health}, "__opts__": {"test": False},
                            "__utils__": salt_utils()},
    }


def dead_target_problem(dead_port: int) -> str:
    return f"missing on gone: down (Get \"http://127.0.0.1:{dead_port}/metrics\": dial tcp 127.0.0.1:{dead_port}: "


# --- the execution module --------------------------------------------------

def test_virtual():
    assert prometheus.__virtual__() == "prometheus"


def test_targets_lists_both_jobs_with_their_health_and_the_error_of_the_dead_one(prom, dead_port):
    seen = sorted(prometheus.targets(url=prom), key=lambda t: t["job"])
    port = prom.rsplit(":", 1)[1]
    assert [(t["job"], t["host"], t["instance"], t["health"]) for t in seen] == [
        ("missing", "gone", f"127.0.0.1:{dead_port}", "down"),
        ("prometheus", "mon", f"127.0.0.1:{port}", "up"),
    ]
    assert seen[1]["error"] == ""
    assert "connection refused" in seen[0]["error"]
    assert f"127.0.0.1:{dead_port}" in seen[0]["error"]


def test_targets_accepts_a_url_with_a_trailing_slash(prom):
    assert len(prometheus.targets(url=prom + "/")) == 2


def test_health_is_unhealthy_naming_the_dead_target(prom, dead_port):
    seen = prometheus.health(url=prom)
    assert (seen["healthy"], seen["targets"], seen["up"]) == (False, 2, 1)
    assert len(seen["problems"]) == 1
    assert seen["problems"][0].startswith(dead_target_problem(dead_port))
    assert seen["problems"][0].endswith("connection refused)")


def test_health_reports_a_job_without_target(prom, dead_port):
    seen = prometheus.health(url=prom, jobs=["prometheus", "missing", "node"])
    assert seen["healthy"] is False
    assert seen["problems"][-1] == "job node: no target"
    assert not any(p.startswith(("job prometheus", "job missing")) for p in seen["problems"])
    assert seen["problems"][0].startswith(dead_target_problem(dead_port))


def test_query_up_gives_one_sample_per_target(prom):
    samples = prometheus.query("up", url=prom)
    assert len(samples) == 2
    by_host = {s["labels"]["host"]: s for s in samples}
    assert by_host["mon"]["value"] == 1.0 and by_host["gone"]["value"] == 0.0
    assert by_host["mon"]["labels"]["__name__"] == "up"
    assert {s["labels"]["job"] for s in samples} == {"prometheus", "missing"}
    assert all(isinstance(s["value"], float) for s in samples)


def test_query_with_a_selector_keeps_only_matching_series(prom):
    samples = prometheus.query('up{host="gone"} == 0', url=prom)
    assert [(s["labels"]["job"], s["value"]) for s in samples] == [("missing", 0.0)]
    assert prometheus.query('up{job="nosuchjob"}', url=prom) == []


@pytest.mark.parametrize("expr, kind", [("1", "scalar"), ("up[1m]", "matrix"), ('"text"', "string")])
def test_query_of_a_non_vector_is_refused(prom, expr, kind):
    with pytest.raises(CommandExecutionError, match=f"a {kind}, not an instant vector"):
        prometheus.query(expr, url=prom)


@pytest.mark.parametrize("expr", ["", "   "])
def test_query_of_an_empty_expression_is_refused(prom, expr):
    with pytest.raises(CommandExecutionError, match="give a PromQL expression"):
        prometheus.query(expr, url=prom)


def test_query_that_prometheus_cannot_parse_raises_with_its_answer(prom):
    with pytest.raises(CommandExecutionError) as info:
        prometheus.query("up{", url=prom)
    message = str(info.value)
    assert "HTTP 400" in message and "/api/v1/query?query=up%7B" in message
    assert "bad_data" in message


def test_alerts_shows_always_firing_firing(prom):
    def firing():
        held = prometheus.alerts(url=prom)
        return held if any(a["name"] == "AlwaysFiring" and a["state"] == "firing" for a in held) else None

    held = wait_for(firing, 20, "AlwaysFiring firing")
    assert [a["name"] for a in held] == ["AlwaysFiring"]  # NeverFiring is never held
    alert = held[0]
    assert alert["labels"] == {"alertname": "AlwaysFiring", "severity": "info"}
    # RFC 3339 in UTC, at most a minute ago (Prometheus gives up to nine digits of a second)
    stamp = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", alert["active_at"])
    assert stamp, alert["active_at"]
    active = datetime.strptime(stamp.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert 0 <= (datetime.now(timezone.utc) - active).total_seconds() < 60


def test_an_unreachable_prometheus_raises_naming_the_url(dead_port):
    url = f"http://127.0.0.1:{dead_port}"
    for call in (lambda: prometheus.targets(url=url, timeout=2), lambda: prometheus.alerts(url=url, timeout=2),
                 lambda: prometheus.query("up", url=url, timeout=2), lambda: prometheus.health(url=url, timeout=2)):
        with pytest.raises(CommandExecutionError) as info:
            call()
        assert f"Prometheus GET {url}/api/v1/" in str(info.value)
        assert "is unreachable" in str(info.value) and "is prometheus.service running?" in str(info.value)


def test_a_server_that_is_not_prometheus_raises(prom):
    # /-/ready answers text, not the API's JSON
    with pytest.raises(CommandExecutionError, match="not JSON"):
        prometheus._get("/-/ready", prom, 5)  # pylint: disable=protected-access


# --- the state --------------------------------------------------------------

def test_state_virtual_needs_the_execution_module():
    assert prometheus_health.__virtual__() == "prometheus_health"
    with patch.dict(prometheus_health.__salt__, {}, clear=True):
        loaded, why = prometheus_health.__virtual__()
    assert loaded is False and "_modules/prometheus.py" in why


def test_targets_up_times_out_naming_the_dead_target(prom, dead_port):
    start = time.monotonic()
    ret = prometheus_health.targets_up("prometheus-targets-up", url=prom, timeout=3, interval=1)
    elapsed = time.monotonic() - start
    assert ret["result"] is False
    assert ret["changes"] == {}
    assert ret["name"] == "prometheus-targets-up"
    assert ret["comment"].startswith("Timed out after 3s waiting for every target up. Last seen: ")
    assert dead_target_problem(dead_port) in ret["comment"]
    assert 2.5 <= elapsed < 15


def test_targets_up_names_a_job_without_target(prom):
    ret = prometheus_health.targets_up("gate", url=prom, jobs=["prometheus", "node"], timeout=1, interval=1)
    assert ret["result"] is False
    assert "job node: no target" in ret["comment"]


def test_targets_up_under_test_looks_once_and_does_not_wait(prom, dead_port):
    start = time.monotonic()
    with patch.dict(prometheus_health.__opts__, {"test": True}):
        ret = prometheus_health.targets_up("gate", url=prom)  # timeout 180 s by default
    assert time.monotonic() - start < 5
    assert ret["result"] is None
    assert ret["changes"] == {}
    assert ret["comment"].startswith("Would wait up to 180s for every target up (now: ")
    assert dead_target_problem(dead_port) in ret["comment"]


def test_targets_up_against_an_unreachable_prometheus_times_out_with_the_error(dead_port):
    ret = prometheus_health.targets_up("gate", url=f"http://127.0.0.1:{dead_port}", timeout=2, interval=1)
    assert ret["result"] is False
    assert f"Prometheus GET http://127.0.0.1:{dead_port}/api/v1/targets" in ret["comment"]
    assert "is unreachable" in ret["comment"]


def test_targets_up_succeeds_once_every_target_answers(healthy_prom):
    ret = prometheus_health.targets_up("gate", url=healthy_prom, jobs=["prometheus"], timeout=30, interval=1)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == {}
    assert ret["comment"].startswith("Prometheus scrapes every target: 1/1 targets up (after ")
    assert prometheus.health(url=healthy_prom) == {"healthy": True, "targets": 1, "up": 1, "problems": []}
    with patch.dict(prometheus_health.__opts__, {"test": True}):
        assert prometheus_health.targets_up("gate", url=healthy_prom)["result"] is True


def test_health_takes_the_jobs_as_a_comma_separated_string_too(prom):
    seen = prometheus.health(url=prom, jobs="prometheus, nosuchjob")
    assert "job nosuchjob: no target" in seen["problems"]
    assert not any(p.startswith("job p:") for p in seen["problems"])


def test_the_failover_bench_s_alert_watch_records_when_an_alert_fired(prom):
    """halite.failover.AlertWatch against the same Prometheus: AlwaysFiring is seen firing,
    NeverFiring never; stop() ends the thread."""
    import time as clock

    from halite import failover

    watch = failover.AlertWatch(prom, t0=clock.monotonic(), interval=0.2).start()
    deadline = clock.monotonic() + 20
    while "AlwaysFiring" not in watch.seen and clock.monotonic() < deadline:
        clock.sleep(0.2)
    seen = watch.stop()
    assert not watch._thread.is_alive()
    assert set(seen) == {"AlwaysFiring"} and 0 <= seen["AlwaysFiring"]["firing_s"] < 20
    assert watch.errors == 0
    # no monitoring host: nothing is polled
    assert failover.AlertWatch(None, t0=clock.monotonic()).start().stop() == {}
