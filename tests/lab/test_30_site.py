"""The car market in the lab: served on the edge network from the legacy
server, moved onto the cluster by orch.migrate while clients keep browsing,
then kept working (no 500, no car sold twice) through a switchover."""
import functools
import http.cookiejar
import json
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg
import pytest

from halite import config, formats, lab as labmod, view
from halite.webbench import percentile
from labkit import BIN, run, salt_ssh, wait_for

pytestmark = pytest.mark.lab
DATA = config.load()
URL = labmod.site_url()
# https, verified with halite's CA (made by the lab's deploy: read when a test runs, not when
# pytest collects, since a fresh clone has no CA yet)
SITE_TLS = view.tls_on(DATA)["site"]
APP = DATA["users"]["app"]
TOPO = DATA["topology"]
PROXY_EDGE = TOPO["hosts"][config.hosts_with_role(TOPO, "haproxy")[0]]["addresses"]["edge"]
DB_ADDRS = {config.cluster_address(TOPO, h) for h in config.hosts_with_role(TOPO, "db")}
WRITE_DSN = formats.conninfo(*formats.cluster_options(DATA, PROXY_EDGE, DATA["haproxy"]["write_port"],
                                                      ca=view.control_ca(DATA)), ("dbname", APP["database"]),
                             ("user", APP["username"]), ("password", APP["password"]), ("connect_timeout", 3))
TABLES = ["makes", "models", "cars", "orders"]


@functools.cache
def tls():
    """The site's clients' ``ssl.SSLContext`` (halite's CA), or None for plain HTTP."""
    return view.site_ssl_context(DATA)


class Client:
    """A browser-like client: cookies, CSRF tokens, every answer recorded."""

    def __init__(self):
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  urllib.request.HTTPSHandler(context=tls()))
        self.log: list[tuple[float, str, int, float]] = []

    def get(self, path: str) -> tuple[int, str]:
        return self._send(urllib.request.Request(URL.rstrip("/") + path))

    def post(self, path: str, form: dict) -> tuple[int, str]:
        body = urllib.parse.urlencode(form).encode()
        return self._send(urllib.request.Request(URL.rstrip("/") + path, data=body, method="POST"))

    def _send(self, req) -> tuple[int, str]:
        t0 = time.time()
        try:
            with self.opener.open(req, timeout=15) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            status, text = 0, str(exc)
        self.log.append((time.time(), req.full_url, status, time.time() - t0))
        return status, text

    def buy(self, car_id: int, who: str) -> tuple[int, str]:
        status, page = self.get(f"/cars/{car_id}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if status != 200 or not token:
            return status, page
        return self.post(f"/cars/{car_id}/buy", {"csrf_token": token.group(1), "buyer_name": who,
                                                  "buyer_email": f"{who}@example.org"})


def api_status() -> dict:
    with urllib.request.urlopen(URL + "api/status", timeout=10, context=tls()) as resp:
        return json.loads(resp.read())


def browse(stop: threading.Event, client: Client, ids: list[int]) -> None:
    deadline = time.time() + 900  # bounded even if the test dies
    while not stop.is_set() and time.time() < deadline:
        client.get("/?condition=used&sort=price_asc")
        client.get(f"/cars/{random.choice(ids)}")
        time.sleep(0.1)


def available_ids(n: int = 60) -> list[int]:
    with urllib.request.urlopen(URL + f"api/cars?per_page={n}", timeout=10, context=tls()) as resp:
        return [c["id"] for c in json.loads(resp.read())["cars"]]


def legacy_counts() -> dict:
    port = DATA["legacy"]["port"]
    sql = "; ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
    res = run([BIN / "halite", "lab", "ssh", config.hosts_with_role(TOPO, "legacy_db")[0],
               f"runuser -u postgres -- psql -p {port} -d {APP['database']} -qAtX -F ' ' -c \"{sql}\""], check=True)
    return {line.split()[0]: int(line.split()[1]) for line in res.stdout.split("\n") if line.strip()}


def cluster_counts() -> dict:
    with psycopg.connect(WRITE_DSN, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_site_is_served_on_the_edge_network(deployed):
    status, page = Client().get("/")
    assert status == 200 and "cars for sale" in page
    res = run([BIN / "halite", "lab", "url"], check=True)
    assert res.stdout.strip() == URL


@pytest.mark.skipif(not SITE_TLS, reason="tls.unsafe_plaintext names site")
def test_plain_http_redirects_to_https_with_hsts_and_security_headers(deployed):
    """Plain HTTP answers 301 to the same host and path over https; the https answer
    carries HSTS, the CSP and the other security headers."""
    import http.client

    site = view.site_view(DATA, config.hosts_with_role(TOPO, "app")[0])
    conn = http.client.HTTPConnection(site["address"], site["http_port"], timeout=10)
    conn.request("GET", "/cars?sort=price_asc")
    resp = conn.getresponse()
    assert resp.status == 301 and resp.getheader("Location") == URL + "cars?sort=price_asc", resp.getheaders()
    assert resp.getheader("Strict-Transport-Security") is None
    conn.close()
    with urllib.request.urlopen(URL, timeout=10, context=tls()) as resp:
        assert resp.headers["Strict-Transport-Security"] == view.SITE_HSTS
        assert resp.headers["Content-Security-Policy"] == view.site_csp()
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["X-Content-Type-Options"] == "nosniff"


def test_migration_moves_every_row_while_the_site_answers(deployed):
    primary = api_status().get("primary") or {}
    assert primary.get("host") not in DB_ADDRS, f"the site should start on the legacy server: {primary}"
    counts_before = legacy_counts()
    assert counts_before["cars"] >= 1000, counts_before
    ids = available_ids()
    stop = threading.Event()
    clients = [Client() for _ in range(3)]
    threads = [threading.Thread(target=browse, args=(stop, c, ids), daemon=True) for c in clients]
    for t in threads:
        t.start()
    try:
        t0 = time.time()
        res = run([BIN / "salt-run", "state.orchestrate", "orch.migrate", "--out=json"], timeout=1800)
        t1 = time.time()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    text = res.stdout
    downtime = re.search(r"write downtime[^0-9]*([0-9.]+) ?s", text)
    assert downtime, text[-3000:]
    print(f"orch.migrate took {t1 - t0:.0f}s, reported write downtime {downtime.group(1)}s")
    # every row arrived: the legacy server is frozen after the move, so its counts are final
    assert cluster_counts() == legacy_counts()
    status = api_status()
    assert status["primary"]["host"] in DB_ADDRS, status
    answers = [entry for c in clients for entry in c.log]
    assert len(answers) > 50
    assert not [a for a in answers if a[2] >= 500 and a[2] != 503], "the site answered with a server error"
    failed = [a for a in answers if a[2] != 200]
    # browsing only reads: it keeps working from the old server until the switch
    assert len(failed) <= max(3, len(answers) // 20), failed[:10]


def test_switchover_while_clients_browse_and_buy(deployed):
    assert api_status()["primary"]["host"] in DB_ADDRS
    ids = available_ids(40)
    stop = threading.Event()
    browsers = [Client() for _ in range(2)]
    buyers = [Client() for _ in range(4)]
    results: list[tuple[int, int, str]] = []

    def buy_loop(client: Client, n: int):
        for car in ids:  # every buyer wants every car: each car has 4 buyers at once
            if stop.is_set():
                return
            status, page = client.buy(car, f"buyer{n}")
            results.append((car, status, "confirmed" if "is confirmed" in page else ""))

    threads = [threading.Thread(target=browse, args=(stop, c, ids), daemon=True) for c in browsers]
    threads += [threading.Thread(target=buy_loop, args=(c, i), daemon=True) for i, c in enumerate(buyers)]
    for t in threads:
        t.start()
    time.sleep(3)
    t_switch = time.time()
    rc, data = salt_ssh(config.hosts_with_role(TOPO, "db")[0], "patroni.switchover")
    t_switched = time.time()
    assert rc == 0, data
    for t in threads[2:]:
        t.join(300)
    stop.set()
    for t in threads[:2]:
        t.join(30)
    answers = [e for c in browsers + buyers for e in c.log]
    # Issue 14 item 2: no request fails; those that need the primary wait (the site tries
    # again for up to 5 s, halite_web.db) and then succeed
    failed = [a for a in answers if a[2] >= 500 or a[2] in (0, 429)]
    during = sorted(a[3] for a in answers if a[0] - a[3] <= t_switched + 5 and a[0] >= t_switch)
    pct = lambda q: percentile(during, q * 100)  # noqa: E731
    print(f"\nswitchover under load: {len(answers)} requests, {len(failed)} failed; the {len(during)} during it "
          f"(salt-ssh's {t_switched - t_switch:.1f} s and 5 s after): latency p50 {pct(0.5) * 1000:.0f} ms, "
          f"p99 {pct(0.99) * 1000:.0f} ms, max {during[-1] * 1000:.0f} ms")
    assert failed == [], f"{len(failed)} requests failed during the switchover: {failed[:5]}"
    assert [a for a in answers if a[2] == 200], "nothing was served"
    # the buyers may finish inside the switchover's write gap: wait for the write path
    conn = wait_for(lambda: psycopg.connect(WRITE_DSN, autocommit=True), 60, 0.5, "the write path after the switchover")
    with conn:
        twice = conn.execute("SELECT car_id, count(*) FROM orders WHERE car_id = ANY(%s) GROUP BY car_id "
                             "HAVING count(*) > 1", (ids,)).fetchall()
        sold = conn.execute("SELECT count(*) FROM cars WHERE id = ANY(%s) AND status = 'sold'", (ids,)).fetchone()[0]
    assert twice == [], f"cars sold twice: {twice}"
    confirmed = {car for car, status, ok in results if ok}
    assert sold >= len(confirmed) > 0


def test_a_second_move_after_an_unfreeze_leaves_the_clusters_orders_alone(deployed):
    """Unfreeze the old server (which clears its mark of the finished move) and run orch.migrate
    again: the cluster's tables hold the orders the site took since the move, so the move
    refuses, naming them with their row counts, and the cluster keeps every row."""
    legacy = config.hosts_with_role(TOPO, "legacy_db")[0]
    port, role = DATA["legacy"]["port"], APP["username"]
    local = f"source_dsn=host=/var/run/postgresql port={port} dbname={APP['database']} user=postgres"
    # an order the site takes on the cluster after the move (right after the switchover above
    # the site may still answer 503 for a few seconds: nothing is recorded then, try again)
    car = available_ids(1)[0]
    wait_for(lambda: "is confirmed" in Client().buy(car, "after-the-move")[1], 60, 1, "an order on the cluster")
    before = cluster_counts()
    rc, data = salt_ssh(legacy, "pg_move.unfreeze", local, f"role={role}", "runas=postgres")
    assert rc == 0 and data[legacy]["read_only"] is False, data
    try:
        rc, data = salt_ssh(legacy, "pg_move.frozen", local, f"role={role}", "runas=postgres")
        assert data[legacy]["moved_at"] is None, data  # the only guard a second move had before
        res = run([BIN / "salt-run", "state.orchestrate", "orch.migrate", "--out=json"], timeout=900)
        assert res.returncode != 0, res.stdout[-3000:]
        listed = re.search(r"already holds rows in ([^:]*): the initial copy would replace them, so nothing "
                           r"was changed", res.stdout)
        assert listed, res.stdout[-4000:]
        named = dict(re.findall(r"public\.(\w+) \((\d+) rows?\)", listed.group(1)))
        assert {t: int(named.get(t, 0)) for t in TABLES} == before, listed.group(1)
        assert cluster_counts() == before
        assert api_status()["primary"]["host"] in DB_ADDRS  # the site stays on the cluster
    finally:
        # the old server as the move left it: the app's writes frozen there, the move recorded
        rc, data = salt_ssh(legacy, "pg_move.freeze", local, f"role={role}", "runas=postgres")
        assert rc == 0, data
        run([BIN / "halite", "lab", "ssh", legacy, f"runuser -u postgres -- psql -p {port} -d {APP['database']} "
             f"-qAtX -c \"ALTER ROLE {role} SET halite.moved_at = '{time.time():.3f}'\""], check=True)
    rc, data = salt_ssh(legacy, "pg_move.frozen", local, f"role={role}", "runas=postgres")
    assert data[legacy]["read_only"] is True and data[legacy]["moved_at"], data
