"""The scripts of salt/monitoring/files, run as the hosts run them (a Python 3 process).

* alert-recorder.py: a real recorder on a loopback port, real HTTP POSTs.
* cert-metrics.py: real certificates from halite's own PKI (halite.pki), read by
  the real ``openssl``; the expected ends come from the ``cryptography`` library.

backup-metrics.py needs ``runuser`` and pgBackRest's repository: the lab runs it.
The templates (alertmanager.yml.jinja, alerts.yml.jinja, prometheus.yml.jinja) are
rendered and checked by tests/render/test_render_monitoring.py.
"""
from __future__ import annotations

import json
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from conftest import REPO
from halite import pki
from localkit import free_port, stop

FILES = REPO / "salt/monitoring/files"
RECORDER = FILES / "alert-recorder.py"
CERT_METRICS = FILES / "cert-metrics.py"
#: the interpreter of the hosts' ``/usr/bin/python3`` (Debian bookworm: 3.11, as this venv's)
PYTHON3 = sys.executable
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy
METRIC = "halite_tls_cert_expiry_timestamp_seconds"
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path=str(REPO / ".venv/prometheus/usr/bin"))




# --- alert-recorder.py -----------------------------------------------------

NOTIFICATION = {
    "receiver": "halite-recorder",
    "status": "firing",
    "alerts": [
        {"status": "firing",
         "labels": {"alertname": "PostgresDown", "host": "db-02", "job": "postgres", "severity": "critical"},
         "annotations": {"summary": "PostgreSQL on db-02 does not answer"},
         "startsAt": "2026-11-30T14:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://mon-01:9090/graph?g0.expr=pg_up+%3D%3D+0", "fingerprint": "5a3a1c0c0d3f0e2b"},
    ],
    "groupLabels": {"alertname": "PostgresDown"},
    "commonLabels": {"alertname": "PostgresDown", "host": "db-02", "job": "postgres", "severity": "critical"},
    "commonAnnotations": {"summary": "PostgreSQL on db-02 does not answer"},
    "externalURL": "http://mon-01:9093",
    "version": "4",
    "groupKey": '{}:{alertname="PostgresDown"}',
    "truncatedAlerts": 0,
}


@pytest.fixture
def recorder(tmp_path):
    """A running alert-recorder.py in ``tmp_path`` (its working directory): yields (url, folder)."""
    port = free_port()
    log = tmp_path.parent / f"{tmp_path.name}-recorder.log"  # outside its folder: only alerts.jsonl there
    with open(log, "wb") as out:
        proc = subprocess.Popen([PYTHON3, str(RECORDER), "127.0.0.1", str(port)], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"alert-recorder exited ({proc.returncode}): {log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"alert-recorder does not listen on {port}: {log.read_text()}"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/", tmp_path, log
    finally:
        stop(proc)


def post(url: str, body: bytes, content_type: str = "application/json") -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    with DIRECT.open(req, timeout=10) as resp:
        assert resp.read() == b""
        return resp.status


def test_recorder_appends_each_notification_as_one_json_line(recorder):
    url, folder, log = recorder
    before = time.time()
    assert post(url, json.dumps(NOTIFICATION).encode()) == 200
    after = time.time()
    lines = (folder / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert set(line) == {"received_at", "notification"}
    assert line["notification"] == NOTIFICATION
    assert before <= line["received_at"] <= after

    resolved = dict(NOTIFICATION, status="resolved",
                    alerts=[dict(NOTIFICATION["alerts"][0], status="resolved", endsAt="2026-11-30T14:05:00Z")])
    assert post(url + "api/v2/alerts", json.dumps(resolved).encode()) == 200  # any path is the webhook
    lines = (folder / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["notification"]["status"] for x in lines] == ["firing", "resolved"]
    assert json.loads(lines[1])["notification"] == resolved
    assert sorted(p.name for p in folder.iterdir()) == ["alerts.jsonl"]
    assert "alert-recorder: " in log.read_text()  # one line per request in the journal


def test_recorder_refuses_a_body_that_is_not_json_and_writes_nothing(recorder):
    url, folder, _ = recorder
    with pytest.raises(urllib.error.HTTPError) as info:
        post(url, b"PostgresDown on db-02 {", "text/plain")
    assert info.value.code == 400
    assert not (folder / "alerts.jsonl").exists()
    # and it still records the next one
    assert post(url, json.dumps(NOTIFICATION).encode()) == 200
    assert [json.loads(x)["notification"] for x in (folder / "alerts.jsonl").read_text().splitlines()] == [
        NOTIFICATION]


# --- cert-metrics.py --------------------------------------------------------

@pytest.fixture
def certificates(tmp_path, monkeypatch) -> dict[str, Path]:
    """halite's CA and two host certificates of different lifetimes, as files."""
    monkeypatch.setenv("HALITE_STATE_DIR", str(tmp_path / "state"))
    directory = pki.state_dir("test")
    pki.ensure_ca(directory, "test")
    pki.host_cert(directory, "db1", ["db1.test", "db1"], ["127.0.0.1"])
    pki.host_cert(directory, "mon1", ["mon1.test"], ["10.0.0.9"], days=40, renew_before_days=1)
    return {"ca": directory / "ca.crt", "db1": directory / "hosts/db1.crt", "mon1": directory / "hosts/mon1.crt",
            "key": directory / "hosts/db1.key"}


def not_after(path: Path) -> int:
    return int(x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp())


def cert_metrics(out: Path, *certs) -> subprocess.CompletedProcess:
    assert shutil.which("openssl"), "cert-metrics.py reads certificates with openssl"
    return subprocess.run([PYTHON3, str(CERT_METRICS), str(out), *map(str, certs)],
                          capture_output=True, text=True, timeout=60)


def test_cert_metrics_writes_the_end_of_every_readable_certificate(certificates, tmp_path):
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    out = textfile / "halite_tls.prom"
    res = cert_metrics(out, certificates["ca"], certificates["db1"], "/nonexistent", certificates["key"],
                       certificates["mon1"])
    assert res.returncode == 0, res.stderr
    ends = {name: not_after(path) for name, path in certificates.items() if name != "key"}
    assert len(set(ends.values())) == 3  # three different ends: each line is its own certificate's
    assert out.read_text() == "\n".join([
        f"# HELP {METRIC} When the certificate ends (notAfter)",
        f"# TYPE {METRIC} gauge",
        f'{METRIC}{{path="{certificates["ca"]}"}} {ends["ca"]}',
        f'{METRIC}{{path="{certificates["db1"]}"}} {ends["db1"]}',
        f'{METRIC}{{path="{certificates["mon1"]}"}} {ends["mon1"]}',
    ]) + "\n"
    assert 39 * 86400 < ends["mon1"] - time.time() <= 40 * 86400
    assert sorted(p.name for p in textfile.iterdir()) == ["halite_tls.prom"]  # no temporary file left
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # node-exporter (another user) reads it


def test_cert_metrics_replaces_the_previous_file(certificates, tmp_path):
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    out = textfile / "halite_tls.prom"
    out.write_text(f'{METRIC}{{path="/etc/old.crt"}} 1\n')
    old_inode = out.stat().st_ino
    res = cert_metrics(out, certificates["db1"])
    assert res.returncode == 0, res.stderr
    assert out.read_text().splitlines()[2:] == [f'{METRIC}{{path="{certificates["db1"]}"}} {not_after(certificates["db1"])}']
    assert out.stat().st_ino != old_inode  # renamed into place, never rewritten in place
    assert sorted(p.name for p in textfile.iterdir()) == ["halite_tls.prom"]


def test_cert_metrics_without_a_readable_certificate_writes_only_help_and_type(tmp_path):
    out = tmp_path / "halite_tls.prom"
    (tmp_path / "garbage.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    res = cert_metrics(out, "/nonexistent", tmp_path / "garbage.crt")
    assert res.returncode == 0, res.stderr
    assert out.read_text().splitlines() == [f"# HELP {METRIC} When the certificate ends (notAfter)",
                                           f"# TYPE {METRIC} gauge"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.crt", "halite_tls.prom"]


def test_cert_metrics_output_passes_promtool_check_metrics(certificates, tmp_path):
    """What node-exporter's textfile collector reads: the exposition format, as Debian's
    promtool (``make deps``, as in tests/render/test_render_monitoring.py) checks and lints it."""
    assert PROMTOOL, "promtool not found: run `make deps` (it unpacks Debian's prometheus under .venv/prometheus)"
    out = tmp_path / "halite_tls.prom"
    assert cert_metrics(out, certificates["ca"], certificates["db1"]).returncode == 0
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=out.read_text(), capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == res.stderr == ""  # not even a lint warning
