"""The cluster dashboard of the monitoring host (salt/monitoring/files/dashboard and
dashboard-nginx.conf.jinja): the nginx configuration rendered as Salt renders it and
checked with ``nginx -t``, then the whole page for real, with no lab:

- Prometheus TSDB blocks built by ``promtool tsdb create-blocks-from openmetrics`` from an
  OpenMetrics file written here: 30 minutes of three members db-01..03 ending now, db-01
  the leader and a switchover to db-02 at minute 20;
- Debian's Prometheus (.venv/prometheus, `make deps`) on 127.0.0.1 over those blocks;
- the rendered nginx.conf run unprivileged in a sandbox (rendering.nginx_sandbox), serving
  the page and proxying /api/v1/ to that Prometheus;
- headless Debian Chromium through Selenium (as tests/web/test_browser.py: a missing
  browser FAILS the test), which loads the page and waits until every chart has drawn.

The screenshot goes to the test's tmp dir (never docs/).
"""
from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import rendering

REPO = rendering.REPO
DASHBOARD = REPO / "salt/monitoring/files/dashboard"
PROM_BIN = str(REPO / ".venv/prometheus/usr/bin")
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path=PROM_BIN)
PROMETHEUS = shutil.which("prometheus") or shutil.which("prometheus", path=PROM_BIN)

from browserkit import WAIT, chromium
from localkit import free_port, stop

try:  # a missing selenium fails the browser test (browserkit.chromium) with a clear message
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover
    pass

MEMBERS = ("db-01", "db-02", "db-03")
WINDOW = 30 * 60     # seconds of samples, ending about now
SWITCH_AT = 20 * 60  # db-01 -> db-02, seconds after the first sample
INTERVAL = 15        # seconds between samples




@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("render-dashboard")


def render(tmp: Path, dash: dict, tag: str) -> str:
    return rendering.render_template(tmp, "mon-01", "monitoring/files/dashboard-nginx.conf.jinja", tag=tag, dash=dash)


def nginx_t(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([rendering.NGINX, "-t", "-c", str(conf), "-e", str(conf.parent / "log/error.log")],
                          capture_output=True, text=True, timeout=30)


# -- the configuration ------------------------------------------------------------------
@pytest.mark.parametrize("form", ["ADDRESS:PORT", "PORT"])
def test_dashboard_nginx_conf_passes_nginx_t(tmp, form):
    # nginx -t binds its listen addresses when run as root: a free port of this machine
    port = free_port()
    listen = f"127.0.0.1:{port}" if form == "ADDRESS:PORT" else str(port)
    dash = {"listen": listen, "root": "/usr/share/halite-dashboard", "prometheus": "127.0.0.1:9090"}
    text = render(tmp, dash, tag=listen.replace(":", "_"))
    assert text.startswith("# Managed by Salt") and "user www-data;" in text
    assert f"listen {listen};" in text and "root /usr/share/halite-dashboard;" in text
    assert "server 127.0.0.1:9090;" in text
    assert "location /api/v1/admin {\n            deny all;" in text
    assert "location /api/v1/ {\n            limit_except GET { deny all; }" in text
    # only /api/v1/ goes to Prometheus
    assert text.count("proxy_pass ") == 1 and "proxy_pass http://prometheus;" in text
    for header in ('Content-Security-Policy "default-src \'self\';', 'X-Content-Type-Options "nosniff"',
                   'Referrer-Policy "no-referrer"', 'X-Frame-Options "DENY"'):
        assert f"add_header {header}" in text, header
    conf = rendering.nginx_sandbox(text, tmp / f"nginx-t-{listen.replace(':', '_')}")
    res = nginx_t(conf)
    assert res.returncode == 0, res.stderr


def test_dashboard_files_are_self_contained():
    html = (DASHBOARD / "index.html").read_text()
    # no CDN, no inline script or style: CSP script-src 'self' holds
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "a resource from elsewhere"
    assert "<style" not in html and not re.search(r"\s(style|on[a-z]+)=", html), "inline style or handler"
    assert '<script src="vendor/uPlot.iife.min.js" defer></script>' in html
    assert '<script src="dashboard.js" defer></script>' in html
    assert html.count("<script") == 2
    js = (DASHBOARD / "dashboard.js").read_text()
    assert "api/v1/query_range" in js and '"api/v1/alerts"' in js and "eval(" not in js
    version = (DASHBOARD / "vendor/VERSION").read_text()
    assert "uPlot 1.6.32" in version
    head = (DASHBOARD / "vendor/uPlot.iife.min.js").read_text()[:80]
    assert "(v1.6.32)" in head
    assert "MIT License" in (DASHBOARD / "vendor/LICENSE").read_text()
    assert (DASHBOARD / "vendor/uPlot.min.css").stat().st_size > 1000


# -- Prometheus with 30 minutes of a cluster ------------------------------------------------
def openmetrics(start: int) -> tuple[str, int]:
    """30 minutes of samples every INTERVAL s from ``start``; returns the text and the time
    of the switchover (the first sample with db-02 as the leader)."""
    times = list(range(start, start + WINDOW + 1, INTERVAL))
    switch = start + SWITCH_AT
    lines: list[str] = []

    def leader_at(t: int) -> str:
        return "db-02" if t >= switch else "db-01"

    def family(name: str, kind: str, help_: str, rows) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value_at in rows:
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            for t in times:
                lines.append(f"{name}{{{text}}} {value_at(t)} {t}")

    def patroni(host: str) -> dict:
        return {"job": "patroni", "host": host, "scope": "halite", "name": host}

    def wal(t: int) -> int:  # the leader's WAL position: 200 kB/s from 1 GB
        return 1_000_000_000 + (t - start) * 200_000

    def lag(host: str, t: int) -> int:
        return int(30_000 + 20_000 * math.sin((t - start) / 120 + MEMBERS.index(host)))

    family("patroni_primary", "gauge", "1 if this member is the leader",
           [(patroni(h), lambda t, h=h: int(leader_at(t) == h)) for h in MEMBERS])
    family("patroni_replica", "gauge", "1 if this member is a replica",
           [(patroni(h), lambda t, h=h: int(leader_at(t) != h)) for h in MEMBERS])
    family("patroni_xlog_location", "gauge", "WAL position of the leader, 0 elsewhere",
           [(patroni(h), lambda t, h=h: wal(t) if leader_at(t) == h else 0) for h in MEMBERS])
    family("patroni_xlog_received_location", "gauge", "WAL received by a replica, 0 elsewhere",
           [(patroni(h), lambda t, h=h: wal(t) - lag(h, t) if leader_at(t) != h else 0) for h in MEMBERS])
    # counters as 'unknown' (OpenMetrics counters must end in _total; postgres_exporter's do not)
    def counter(per_second) -> dict:  # running total of a rate that follows the leader
        total, out = 0, {}
        for t in times:
            out[t] = total
            total += INTERVAL * per_second(t)
        return out

    for name, per_second in (("pg_stat_database_xact_commit", 50), ("pg_stat_database_xact_rollback", 2)):
        family(name, "unknown", "transactions", [
            ({"job": "postgres", "host": h, "datname": db},
             counter(lambda t, h=h, db=db, r=per_second: r * (3 if leader_at(t) == h else 1) * (2 if db == "carsale" else 1)).get)
            for h in MEMBERS for db in ("carsale", "postgres")])
    for name, base in (("pgbouncer_active_clients", 8), ("pgbouncer_waiting_clients", 1)):
        family(name, "gauge", "clients", [
            ({"job": "pgbouncer", "host": h, "database": "carsale", "user": "carsale"},
             lambda t, h=h, b=base: b * (4 if leader_at(t) == h else 1) + (t // INTERVAL) % 3)
            for h in MEMBERS])
    lines.append("# EOF")
    return "\n".join(lines) + "\n", switch


def query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


class Prometheus:
    """Debian's Prometheus on 127.0.0.1:<free port> over ``data``, stopped by its own PID."""

    def __init__(self, data: Path, run: Path):
        self.data, self.run, self.port = data, run, free_port()

    def __enter__(self):
        config = self.run / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        self.log = self.run / "prometheus.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.data}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d",
                 "--log.level=info"],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.run)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"prometheus not ready with the data: {self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200 and len(query(self.port, 'patroni_primary{job="patroni"}')) == 3:
                        return self
            except OSError:
                pass
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            stop(self.proc)

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture(scope="module")
def prometheus(tmp):
    assert PROMTOOL and PROMETHEUS, "promtool/prometheus not found: run `make deps` (it unpacks Debian's prometheus under .venv/prometheus)"
    start = (int(time.time()) - WINDOW - 30) // INTERVAL * INTERVAL
    text, switch = openmetrics(start)
    source = tmp / "cluster.om.txt"
    source.write_text(text)
    data = tmp / "tsdb"
    res = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with Prometheus(data, tmp) as prom:
        prom.switch = switch
        prom.start = start
        yield prom


class Nginx:
    """The rendered configuration in the sandbox, in the foreground, stopped by its own PID."""

    def __init__(self, conf: Path, port: int):
        self.conf, self.port = conf, port

    def __enter__(self):
        self.proc = subprocess.Popen([rendering.NGINX, "-c", str(self.conf), "-e", str(self.conf.parent / "log/error.log"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                assert time.monotonic() < deadline, f"nginx does not listen on {self.port}"
                time.sleep(0.05)

    def __exit__(self, *exc):
        stop(self.proc)


@pytest.fixture(scope="module")
def site(tmp, prometheus):
    """nginx with the rendered dashboard configuration on a free loopback port, the page from
    the repository, /api/v1/ to the test's Prometheus; yields the base URL."""
    port = free_port()
    dash = {"listen": f"127.0.0.1:{port}", "root": str(DASHBOARD), "prometheus": f"127.0.0.1:{prometheus.port}"}
    text = render(tmp, dash, tag="run")
    conf = rendering.nginx_sandbox(text, tmp / "nginx-run")
    res = nginx_t(conf)
    assert res.returncode == 0, res.stderr
    # the sandbox's folders are the test's own: workers as this user (www-data could not enter them)
    if os.geteuid() == 0:
        conf.write_text(conf.read_text().replace("user www-data;", "user root;"))
    with Nginx(conf, port):
        yield f"http://127.0.0.1:{port}"


def request(base: str, method: str, path: str) -> http.client.HTTPResponse:
    netloc = urllib.parse.urlsplit(base).netloc
    conn = http.client.HTTPConnection(netloc, timeout=10)
    conn.request(method, path)
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def test_nginx_serves_the_page_and_only_reads_prometheus(site):
    page = request(site, "GET", "/")
    assert page.status == 200 and b'<script src="dashboard.js" defer></script>' in page.body
    assert page.getheader("Content-Security-Policy").startswith("default-src 'self';")
    assert page.getheader("X-Content-Type-Options") == "nosniff"
    assert page.getheader("Referrer-Policy") == "no-referrer"
    assert page.getheader("X-Frame-Options") == "DENY"
    js = request(site, "GET", "/vendor/uPlot.iife.min.js")
    assert js.status == 200 and "javascript" in js.getheader("Content-Type")
    api = request(site, "GET", "/api/v1/query?query=" + urllib.parse.quote('patroni_primary{host="db-02"}'))
    assert api.status == 200 and json.loads(api.body)["data"]["result"][0]["value"][1] == "1"
    assert api.getheader("X-Frame-Options") == "DENY"  # the security headers on the API too
    assert request(site, "POST", "/api/v1/query?query=up").status == 403
    for path in ("/api/v1/admin/tsdb/snapshot", "/api/v1//admin/tsdb/snapshot", "/api/v1/%61dmin/tsdb/snapshot"):
        assert request(site, "GET", path).status == 403, path
    # nothing else of Prometheus: its UI, its lifecycle and its metrics are not proxied
    for path in ("/-/ready", "/metrics", "/graph", "/api/v2/status"):
        assert request(site, "GET", path).status == 404, path
    assert request(site, "GET", "/favicon.ico").status == 204


# -- the browser: tests/browserkit.py ----------------------------------------------------


def legend(d, panel: str) -> list[str]:
    return [e.text for e in d.find_elements(By.CSS_SELECTOR, f"#panel-{panel} .u-legend .u-series .u-label")]


def test_dashboard_in_chromium(site, prometheus, tmp_path):
    with chromium(tmp_path, console_log=True) as d:
        try:
            journey(d, site, prometheus, tmp_path)
        except BaseException:
            with contextlib.suppress(Exception):
                d.save_screenshot(str(tmp_path / "failure.png"))
                (tmp_path / "failure.html").write_text(d.page_source)
                print(f"see {tmp_path}/failure.png, failure.html, chromedriver.log; console:",
                      d.get_log("browser"))
            raise


def journey(d, base: str, prometheus: Prometheus, tmp_path: Path) -> None:
    wait = WebDriverWait(d, WAIT)
    d.get(base + "/")
    assert "halite" in d.title
    assert Select(d.find_element(By.ID, "window")).first_selected_option.get_attribute("value") == "30"
    wait.until(lambda _d: _d.execute_script("return document.body.dataset.ready") == "1")

    # four charts, series per member named from the host label
    assert len(d.find_elements(By.CSS_SELECTOR, "#panels canvas")) == 4
    titles = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#panels h2")]
    assert titles == ["Leader", "Replication lag (bytes)", "Transactions per second", "Clients per pooler"]
    for panel in ("leader", "lag", "tps", "clients"):
        assert set(legend(d, panel)) >= set(MEMBERS), (panel, legend(d, panel))
    assert legend(d, "leader")[1:] == list(MEMBERS)  # first: the time column

    # the switchover, found in the Leader panel's data: one change, at the first point
    # of the 30-minute window (step 6 s) at or after the first sample with db-02 leading
    assert d.execute_script("return document.body.dataset.events") == "1"
    events = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#events li")]
    assert len(events) == 1 and events[0].endswith("db-01 -> db-02"), events
    at = math.ceil(prometheus.switch / 6) * 6
    assert events[0].startswith(time.strftime("%H:%M:%S", time.localtime(at))), (events, at)
    assert d.find_element(By.ID, "leader").text == "db-02"
    assert d.find_element(By.ID, "alerts").text == "none"
    assert not d.find_element(By.ID, "error").is_displayed()
    refreshed = d.find_element(By.ID, "refreshed").text
    assert refreshed != "never"

    # the event line on the charts: the Leader canvas has the event colour (#d9480f) in
    # the column of the switchover
    hits = d.execute_script("""
        const canvas = document.querySelector('#panel-leader canvas');
        const ctx = canvas.getContext('2d');
        const img = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < img.length; i += 4)
          if (Math.abs(img[i] - 0xd9) < 8 && Math.abs(img[i + 1] - 0x48) < 8 && Math.abs(img[i + 2] - 0x0f) < 8) n++;
        return n;""")
    assert hits > 50, hits

    path = tmp_path / "dashboard.png"
    assert d.save_screenshot(str(path)) and path.stat().st_size > 10_000
    print(f"screenshot: {path}")

    severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe

    # it refreshes by itself every 10 s
    wait.until(lambda _d: _d.find_element(By.ID, "refreshed").text != refreshed)

    # another window: still the one switchover (10 minutes before the end)
    d.execute_script("document.body.dataset.events = ''")
    Select(d.find_element(By.ID, "window")).select_by_value("15")
    wait.until(lambda _d: _d.execute_script("return document.body.dataset.events") == "1")
    assert len(d.find_elements(By.CSS_SELECTOR, "#panels canvas")) == 4
    assert not [e for e in d.get_log("browser") if e["level"] == "SEVERE"]

    # Prometheus gone: the error shows, the page keeps trying
    prometheus.stop()
    wait.until(lambda _d: _d.find_element(By.ID, "error").is_displayed())
    assert "HTTP 502" in d.find_element(By.ID, "error").text
