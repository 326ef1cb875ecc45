"""/status, /api/status and /healthz."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def test_api_status_without_patroni(client, replica_sync):
    replica_sync()
    resp = client.get("/api/status")
    assert resp.status_code == 200
    st = resp.get_json()
    assert {"primary", "replicas", "served_by"} <= st.keys()
    assert st["primary"]["host"] == "127.0.0.1" and st["primary"]["port"] == 55432
    assert st["primary"]["in_recovery"] is False
    assert st["replicas_source"] == "pg_stat_replication"
    [rep] = st["replicas"]
    assert rep["name"] == "replica1" and rep["state"] == "streaming"
    assert isinstance(rep["lag_bytes"], int) and rep["lag_bytes"] >= 0
    sb = st["served_by"]
    assert (sb["host"], sb["port"], sb["pool"], sb["role"]) == ("127.0.0.1", 55433, "read", "replica")
    assert st["errors"] == []


def test_status_page(client):
    resp = client.get("/status")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "127.0.0.1:55432" in html and "127.0.0.1:55433" in html
    assert "replica1" in html and "streaming" in html


@pytest.fixture
def fake_patroni():
    members = {"scope": "halite", "members": [
        {"name": "pg1", "role": "leader", "state": "running", "host": "127.0.0.1",
         "port": 55432, "timeline": 3, "api_url": "http://127.0.0.1:8008/patroni"},
        {"name": "pg2", "role": "sync_standby", "state": "streaming", "host": "10.77.1.12",
         "port": 5432, "timeline": 3, "lag": 0},
        {"name": "pg3", "role": "replica", "state": "streaming", "host": "10.77.1.13",
         "port": 5432, "timeline": 3, "lag": 4096},
    ]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(members).encode()
            self.send_response(200 if self.path == "/cluster" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_api_status_with_patroni(app_factory, fake_patroni, closed_port):
    # the first URL is dead: the next one is asked
    app = app_factory(PATRONI_URLS=f"http://127.0.0.1:{closed_port}, {fake_patroni}")
    st = app.test_client().get("/api/status").get_json()
    assert st["replicas_source"] == "patroni"
    assert st["patroni"]["leader"] == "pg1"
    assert st["primary"]["patroni_leader"] == "pg1"
    assert [(r["name"], r["role"], r["lag_bytes"]) for r in st["replicas"]] == \
        [("pg2", "sync_standby", 0), ("pg3", "replica", 4096)]
    assert any(str(closed_port) in e for e in st["errors"])
    html = app.test_client().get("/status").get_data(as_text=True)
    assert "pg3" in html and "4.0 kB" in html and "sync_standby" in html


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/healthz?db=1").status_code == 200
