"""Failure behaviour: 503 + Retry-After (never a 500 or a traceback), read
fallback between pools, and pools that heal by themselves after a "failover"."""
import select
import socket
import threading
import time

import psycopg
import psycopg.errors
import pytest

FAST = {"POOL_TIMEOUT": 0.6, "CONNECT_TIMEOUT": 1, "RETRY_AFTER": 7, "DB_WAIT_SECONDS": 1.0}


def dsn(port, extra=""):
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres {extra}".strip()


def assert_503_html(resp):
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "7"
    html = resp.get_data(as_text=True)
    assert "right back" in html and "try again" in html
    assert "Traceback" not in html and "psycopg" not in html and "Error" not in html


def sell_form(client, get_csrf):
    token = get_csrf(client, "/sell")
    return {"csrf_token": token, "make": "Skoda", "model": "Octavia", "condition": "used",
            "year": "2017", "mileage_km": "120000", "price": "11500", "fuel": "diesel",
            "transmission": "manual", "body_type": "estate", "color": "grey",
            "description": "Estate with tow bar, cambelt changed at 110k.",
            "seller_name": "Tom", "seller_email": "tom@example.com"}


def test_write_path_down(app_factory, db, sql, get_csrf, closed_port, replica_sync):
    replica_sync()
    app = app_factory(WRITE_DSN=dsn(closed_port), READ_DSN=db["replica_dsn"], **FAST)
    client = app.test_client()
    # browsing still works from the replica
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["X-Halite-Pool"] == "read"
    car_id = sql("SELECT id FROM cars WHERE status = 'available' ORDER BY id DESC LIMIT 1")[0][0]
    assert client.get(f"/cars/{car_id}").status_code == 200
    # writes: friendly 503
    before = sql("SELECT count(*) FROM cars")[0][0]
    assert_503_html(client.post("/sell", data=sell_form(client, get_csrf)))
    token = get_csrf(client, f"/cars/{car_id}")
    assert_503_html(client.post(f"/cars/{car_id}/buy", data={
        "csrf_token": token, "buyer_name": "Tom", "buyer_email": "tom@example.com"}))
    assert sql("SELECT count(*) FROM cars")[0][0] == before
    assert sql("SELECT status FROM cars WHERE id = %s", [car_id]) == [("available",)]
    # status: JSON 503 with what is known
    resp = client.get("/api/status")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"
    st = resp.get_json()
    assert {"primary", "replicas", "served_by"} <= st.keys()
    assert st["primary"] is None and st["served_by"]["port"] == 55433
    resp = client.get("/status")
    assert resp.status_code == 503 and "unavailable" in resp.get_data(as_text=True)


def test_everything_down(app_factory, closed_port):
    app = app_factory(WRITE_DSN=dsn(closed_port), READ_DSN=dsn(closed_port + 0) + " connect_timeout=1",
                      **FAST)
    client = app.test_client()
    assert_503_html(client.get("/"))
    assert_503_html(client.get("/cars/1"))
    assert_503_html(client.get("/sell"))
    resp = client.get("/api/cars")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"
    assert resp.get_json()["error"] == "service_unavailable"
    resp = client.get("/api/status")
    assert resp.status_code == 503
    st = resp.get_json()
    assert st["primary"] is None and st["served_by"] is None and st["replicas"] == []
    assert client.get("/healthz").status_code == 200          # liveness
    assert client.get("/healthz?db=1").status_code == 503     # readiness


def test_read_pool_down_falls_back_to_primary(app_factory, db, closed_port):
    app = app_factory(READ_DSN=dsn(closed_port), **FAST)
    client = app.test_client()
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.headers["X-Halite-Pool"] == "write" and resp.headers["X-Halite-Fallback"] == "1"
    # the dead read path is now tried last: no more waiting POOL_TIMEOUT per page
    t0 = time.monotonic()
    resp = client.get("/?sort=price_asc")
    assert resp.status_code == 200 and resp.headers["X-Halite-Pool"] == "write"
    assert time.monotonic() - t0 < 0.4
    st = client.get("/api/status").get_json()
    assert st["served_by"]["fallback"] is True and st["served_by"]["port"] == 55432


def test_write_dsn_on_a_replica_is_refused(app_factory, db, get_csrf, sql):
    """A demoted primary (in recovery) must never serve the write pool."""
    app = app_factory(WRITE_DSN=db["replica_dsn"], READ_DSN=db["replica_dsn"] + " ", **FAST)
    client = app.test_client()
    assert client.get("/").status_code == 200
    assert_503_html(client.post("/sell", data=sell_form(client, get_csrf)))


def test_read_only_transaction_error_is_503(app_factory, db, get_csrf, sql):
    ro = dsn(55432, "options='-c default_transaction_read_only=on'")
    app = app_factory(WRITE_DSN=ro, **FAST)
    client = app.test_client()
    before = sql("SELECT count(*) FROM cars")[0][0]
    assert_503_html(client.post("/sell", data=sell_form(client, get_csrf)))
    assert sql("SELECT count(*) FROM cars")[0][0] == before


class TcpProxy:
    """127.0.0.1:<port> -> target port; stop() drops every connection, like a
    node going away; retarget() sends new connections elsewhere (a failover)."""

    def __init__(self, target):
        self.target = target
        self.port = None
        self.conns = []
        self.lock = threading.Lock()
        self.listener = None

    def start(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port or 0))
        ls.listen(16)
        ls.settimeout(0.1)
        self.port = ls.getsockname()[1]
        self.listener = ls
        self.running = True
        self.thread = threading.Thread(target=self._accept, args=(ls,), daemon=True)
        self.thread.start()

    def _accept(self, ls):
        while self.running:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 1)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):  # ValueError: the other side's socket was closed (fd -1) by stop()
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def proxy():
    p = TcpProxy(55432)
    p.start()
    yield p
    try:
        p.stop()
    except OSError:
        pass


def eventually(fn, timeout=15.0):
    """What a browser honouring Retry-After does: retry until it works."""
    deadline = time.monotonic() + timeout
    while True:
        resp = fn()
        if resp.status_code != 503 or time.monotonic() > deadline:
            return resp
        time.sleep(0.3)


def test_pool_recovers_after_outage_and_failover_without_restart(app_factory, db, proxy,
                                                                 get_csrf, sql):
    app = app_factory(WRITE_DSN=dsn(proxy.port), READ_DSN=dsn(proxy.port, "sslmode=disable"),
                      POOL_TIMEOUT=1.0, RETRY_AFTER=7, DB_WAIT_SECONDS=1.0)
    client = app.test_client()
    assert client.get("/").status_code == 200
    form = sell_form(client, get_csrf)
    # the node goes away: every pooled connection is dead
    proxy.stop()
    assert_503_html(client.get("/"))
    assert_503_html(client.post("/sell", data=form))
    # "failover": the address now leads to a server in recovery (a demoted
    # primary): reads come back, writes are refused
    proxy.target = 55433
    proxy.start()
    resp = eventually(lambda: client.get("/"))
    assert resp.status_code == 200 and resp.headers["X-Halite-Backend"] == "127.0.0.1:55433"
    assert_503_html(client.post("/sell", data=form))
    # the new primary is reachable at the address: writes resume, same app object
    proxy.stop()
    proxy.target = 55432
    proxy.start()
    t0 = time.monotonic()
    resp = eventually(lambda: client.post("/sell", data=form))
    assert resp.status_code == 303
    assert time.monotonic() - t0 < 12
    car_id = int(resp.headers["Location"].split("/")[-1])
    assert sql("SELECT seller_name FROM cars WHERE id = %s", [car_id]) == [("Tom",)]


def test_a_purchase_waits_out_a_switchover_and_succeeds(app_factory, db, proxy, get_csrf, sql):
    """Issue 14 item 2: the write path is gone for 1.5 s (a planned switchover); the buyer
    waits and gets the car, no 503."""
    app = app_factory(WRITE_DSN=dsn(proxy.port), READ_DSN=db["replica_dsn"], POOL_TIMEOUT=1.0,
                      DB_WAIT_SECONDS=5.0)
    client = app.test_client()
    car_id = sql("SELECT id FROM cars WHERE status = 'available' ORDER BY id LIMIT 1")[0][0]
    token = get_csrf(client, f"/cars/{car_id}")
    proxy.stop()
    threading.Timer(1.5, proxy.start).start()
    t0 = time.monotonic()
    resp = client.post(f"/cars/{car_id}/buy", data={"csrf_token": token, "buyer_name": "Ann",
                                                    "buyer_email": "ann@example.com"})
    waited = time.monotonic() - t0
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    assert 1.4 < waited < 5.5
    assert sql("SELECT status, buyer_email FROM cars WHERE id = %s", [car_id]) == [("sold", "ann@example.com")]
    assert sql("SELECT count(*) FROM orders WHERE car_id = %s", [car_id]) == [(1,)]


def test_a_write_that_failed_before_its_commit_is_tried_again(db, proxy):
    from halite_web.db import Database

    d = Database({"WRITE_DSN": dsn(proxy.port), "POOL_TIMEOUT": 1.0, "DB_WAIT_SECONDS": 5.0})
    calls = []

    def fn(cur):
        calls.append(1)
        if len(calls) == 1:  # the session is cut mid-transaction (a demotion, a pooler restart)
            cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        cur.execute("SELECT 1")
        return len(calls)

    try:
        result, backend = d.write(fn)
    finally:
        d.close()
    assert (result, len(calls), backend.pool) == (2, 2, "write")


def test_a_write_cut_during_its_commit_is_tried_again_only_when_idempotent(db, proxy):
    from halite_web.db import Database, DatabaseUnavailable

    d = Database({"WRITE_DSN": dsn(proxy.port), "POOL_TIMEOUT": 1.0, "DB_WAIT_SECONDS": 5.0})
    calls = []

    def fn(cur):
        calls.append(1)
        cur.execute("SELECT 1")
        if len(calls) == 1:  # the connection goes away with the COMMIT on its way
            proxy.stop()
            threading.Timer(0.5, proxy.start).start()
        return len(calls)

    try:
        with pytest.raises(DatabaseUnavailable):
            d.write(fn)  # not idempotent: the outcome is unknown, so it is not run again
        assert len(calls) == 1
        time.sleep(1.0)  # the proxy is back
        calls.clear()
        result, _ = d.write(fn, idempotent=True)
        assert (result, len(calls)) == (2, 2)
    finally:
        d.close()


URLS = ["/", "/?year_min=abc&price_max=-5&page=-1&sort=x&make=%00", "/?price_min=1e400",
        "/?price_min=NaN&year_max=99999999999", "/cars/1", "/cars/999999999",
        "/cars/99999999999999999999999", "/sell", "/status", "/api/status", "/api/cars",
        "/api/cars?per_page=abc", "/api/nope", "/healthz", "/static/style.css",
        "/cars/1/buy"]


@pytest.mark.parametrize("broken", ["none", "write", "read", "both"])
def test_no_500_anywhere(app_factory, db, get_csrf, closed_port, broken):
    dead = dsn(closed_port)
    cfg = {"none": {}, "write": {"WRITE_DSN": dead}, "read": {"READ_DSN": dead},
           "both": {"WRITE_DSN": dead, "READ_DSN": dead}}[broken]
    app = app_factory(**cfg, **FAST)
    client = app.test_client()
    for url in URLS:
        resp = client.get(url)
        assert resp.status_code < 500 or resp.status_code == 503, (url, resp.status_code)
        assert "Traceback" not in resp.get_data(as_text=True)
    # hostile POSTs
    client.get("/sell")
    with client.session_transaction() as s:
        token = s.get("csrf", "")
    posts = [("/sell", {"csrf_token": token, "price": "\x00", "year": "9" * 40,
                        "make": "A" * 10000, "description": "x\x00y" * 10}),
             ("/sell", {}),
             ("/cars/1/buy", {"csrf_token": token, "buyer_name": "\x00\x00",
                              "buyer_email": "a@b.cc"}),
             ("/cars/99999999999999999999/buy", {"csrf_token": token}),
             ("/api/status", {})]
    for url, data in posts:
        resp = client.post(url, data=data)
        assert resp.status_code < 500 or resp.status_code == 503, (url, resp.status_code)
        assert "Traceback" not in resp.get_data(as_text=True)



@pytest.mark.parametrize("error", [
    psycopg.errors.SerializationFailure("canceling statement due to conflict with recovery"),
    psycopg.errors.InternalError_("server conn crashed?"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
])
def test_transient_database_errors_answer_503_not_500(app_factory, error):
    app = app_factory()

    @app.get("/boom")
    def boom():
        raise error

    resp = app.test_client().get("/boom")
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert b"Traceback" not in resp.data
