"""halite.webbench against a tiny local http.server on 127.0.0.1."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from halite import webbench

IDS = list(range(1, 11))   # /items/<id>: 500 when id % 5 == 0 -> 20 % of requests
MARGIN = 1.0               # s allowed beyond warm-up + duration (busy CI machines)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the benchmark expects
    disable_nagle_algorithm = True  # headers and body are separate writes

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
        if self.path == "/ok" or self.path == "/":
            self._send(200, b"ok" * 50)
        elif self.path == "/fail":
            self._send(500, b"boom")
        elif self.path.startswith("/items/"):
            n = int(self.path.rsplit("/", 1)[1])
            self._send(500 if n % 5 == 0 else 200, b"item %d" % n)
        elif self.path.startswith("/api/cars"):
            body = json.dumps({"total": 10, "cars": [{"id": i} for i in IDS]}).encode()
            self._send(200, body, "application/json")
        elif self.path == "/drop":  # no answer at all: a transport error
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._send(404, b"nope")


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.hits = Counter()
    srv.lock = threading.Lock()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _ordered(r):
    assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["p50_ms"] > 0


def test_run_each_page_counts_errors_and_stops_in_time(server):
    srv, base = server
    pages = {"ok": "/ok", "items": "/items/{id}", "fail": "/fail"}
    t0 = time.monotonic()
    res = webbench.run(base, pages, concurrency=4, duration_s=0.3, warmup_s=0.05,
                       car_ids=IDS)
    elapsed = time.monotonic() - t0
    assert elapsed < 3 * 0.35 + MARGIN, elapsed   # one window per page, then stop
    assert set(res) == set(pages)
    for name, r in res.items():
        assert r["requests"] == r["ok"] + r["non_2xx"] + r["errors"] > 10, (name, r)
        assert r["errors"] == 0
        assert r["concurrency"] == 4 and r["duration_s"] == 0.3
        assert 0.25 <= r["window_s"] <= 0.4
        _ordered(r)
    ok, items, fail = res["ok"], res["items"], res["fail"]
    assert ok["non_2xx"] == 0 and ok["status"] == {"200": ok["requests"]}
    assert ok["rps"] == pytest.approx(ok["ok"] / ok["window_s"], rel=0.01)
    assert fail["ok"] == 0 and fail["non_2xx"] == fail["requests"] and fail["rps"] == 0
    # ids rotate among all 10 cars; 2 of 10 answer 500
    assert abs(items["non_2xx"] - 0.2 * items["requests"]) <= 6, items  # +- the boundaries
    assert {f"/items/{i}" for i in IDS} <= set(srv.hits)


def test_run_mix_transport_errors_and_dead_target(server):
    _, base = server
    t0 = time.monotonic()
    res = webbench.run(base, ["/ok", "/drop"], concurrency=3, duration_s=0.5, warmup_s=0.1,
                       mode="mix")
    assert time.monotonic() - t0 < 0.6 + MARGIN
    assert res["/ok"]["errors"] == 0 and res["/ok"]["ok"] > 0
    assert res["/drop"]["errors"] == res["/drop"]["requests"] > 0
    assert res["/drop"]["p50_ms"] is None and res["/drop"]["error_kinds"]

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    t0 = time.monotonic()
    res = webbench.run(dead, ["/"], concurrency=2, duration_s=0.3, warmup_s=0)
    assert time.monotonic() - t0 < 0.3 + MARGIN
    r = res["/"]
    assert r["errors"] == r["requests"] > 0 and r["ok"] == 0 and r["rps"] == 0
    assert r["requests"] <= 2 * (0.3 / webbench.ERROR_BACKOFF_S + 1)  # backs off


def test_max_requests_bounds_the_run(server):
    srv, base = server
    t0 = time.monotonic()
    res = webbench.run(base, ["/ok"], concurrency=4, duration_s=5, warmup_s=0,
                       max_requests=40)
    assert time.monotonic() - t0 < 5 - MARGIN  # the cap, not the clock, stopped it
    assert res["/ok"]["requests"] == 40 == srv.hits["/ok"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        webbench.run("ftp://127.0.0.1/", ["/"])
    with pytest.raises(ValueError):
        webbench.run("http://127.0.0.1:1", ["/"], concurrency=0)
    with pytest.raises(ValueError):
        webbench.run("http://127.0.0.1:1", ["/"], duration_s=10_000)
    with pytest.raises(ValueError):
        webbench.run("http://127.0.0.1:1", ["/cars/{id}"])  # no ids
    with pytest.raises(ValueError):
        webbench.run("http://127.0.0.1:1", ["cars"])
    assert webbench.percentile([1, 2, 3, 4], 50) == 2
    assert webbench.percentile([1, 2, 3, 4], 99) == 4
    assert webbench.percentile([], 50) is None


def test_compare_and_write(server, tmp_path):
    _, base = server
    out = webbench.compare({"old": base, "cluster": base + "/"},
                           {"home": "/", "item": "/items/{id}"}, car_ids=IDS,
                           concurrency=2, duration_s=0.2, warmup_s=0)
    rows, ratios = out["rows"], out["ratios"]
    assert [(r["target"], r["page"]) for r in rows] == [
        ("old", "home"), ("old", "item"), ("cluster", "home"), ("cluster", "item")]
    for r in rows:
        for c in webbench.COLUMNS:
            assert c in r
        assert r["baseline"] == "old"
    assert rows[0]["rps_vs_baseline"] is None
    assert rows[2]["rps_vs_baseline"] == pytest.approx(rows[2]["rps"] / rows[0]["rps"], rel=0.01)
    assert [(x["target"], x["page"]) for x in ratios] == [("cluster", "home"),
                                                         ("cluster", "item")]
    assert set(ratios[0]) >= {"rps", "p50_ms", "p99_ms", "baseline"}

    paths = webbench.write(rows, out_dir=str(tmp_path))
    assert paths["json"] == tmp_path / "web.json" and paths["md"] == tmp_path / "web.md"
    data = json.loads(paths["json"].read_text())
    assert set(data) == {"generated", "machine", "columns", "rows"}
    assert data["columns"] == webbench.COLUMNS
    assert len(data["rows"]) == 4
    assert {"target", "page", "rps", "p50_ms", "p99_ms", "errors", "non_2xx",
            "requests", "status"} <= set(data["rows"][0])
    md = paths["md"].read_text()
    assert md.startswith("# Web benchmark")
    assert "| target | page | path |" in md and "| cluster | item | /items/{id} |" in md
    assert "÷ `old`" in md

    with pytest.raises(RuntimeError):  # a dead target is refused before any load
        webbench.compare({"old": base, "dead": "http://127.0.0.1:1"}, ["/"],
                         duration_s=0.1, warmup_s=0)


def test_cli(server, tmp_path, capsys):
    srv, base = server
    rc = webbench.main(["--target", f"old={base}", "--target", f"cluster={base}",
                        "--page", "home=/", "--page", "car=/items/{id}",
                        "--duration", "0.2", "--warmup", "0", "--concurrency", "2",
                        "--car-ids-from", f"{base}/api/cars?per_page=50",
                        "--car-id-count", "5", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr()
    assert "| cluster | car |" in out.out
    data = json.loads((tmp_path / "web.json").read_text())
    assert [(r["target"], r["page"]) for r in data["rows"]] == [
        ("old", "home"), ("old", "car"), ("cluster", "home"), ("cluster", "car")]
    assert (tmp_path / "web.md").exists()
    item_hits = {p for p in srv.hits if p.startswith("/items/")}
    assert 1 <= len(item_hits) <= 5   # only the 5 sampled ids
    assert webbench.main(["--target", "old=http://127.0.0.1:1", "--page", "home=/",
                          "--duration", "0.1", "--no-write"]) == 2
    with pytest.raises(SystemExit):
        webbench.main(["--target", "nourl"])
