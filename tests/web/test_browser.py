"""End-to-end test in a real browser: headless Debian Chromium driven by Selenium,
against halite-web served by gunicorn on 127.0.0.1 (test database from conftest).

Walks the catalogue, a filtered catalogue, the sell form (invalid, then valid), a
purchase, a second purchase attempt of the same car and the status page; saves
docs/screenshots/catalogue.png and docs/screenshots/status.png (for the README;
HALITE_SCREENSHOT_DIR overrides the directory).

Chromium is not optional here: CI installs it (Debian packages `chromium` and
`chromium-driver`), so a missing browser FAILS the test instead of skipping it.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"

SHOTS = Path(os.environ.get("HALITE_SCREENSHOT_DIR", ROOT / "docs" / "screenshots"))

from browserkit import WAIT, chromium

try:  # a missing selenium fails the test (browserkit.chromium) with a clear message
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover
    pass


# -- the app, served for real -----------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"gunicorn did not answer {url} in {timeout} s:\n"
                        f"{log.read_text()[-4000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def live_server(db, tmp_path_factory):
    """gunicorn (1 gthread worker) on 127.0.0.1:<free port>; yields the base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {**os.environ,
           "HALITE_WEB_WRITE_DSN": db["dsn"], "HALITE_WEB_READ_DSN": db["replica_dsn"],
           "HALITE_WEB_SECRET_KEY": "browser-test-secret",
           "HALITE_WEB_POOL_MAX_SIZE": "4", "HALITE_WEB_CONNECT_TIMEOUT": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(WEB), os.environ.get("PYTHONPATH")]))}
    env.pop("HALITE_WEB_PATRONI_URLS", None)
    cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(WEB),
           "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread",
           "--threads", "4", "--timeout", "30", "--graceful-timeout", "5",
           "--access-logfile", "-", "--error-logfile", "-", "halite_web.wsgi:app"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=str(WEB))
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/healthz", proc, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait(timeout=5)


# -- the browser: tests/browserkit.py -------------------------------------------------


def _wait(driver):
    return WebDriverWait(driver, WAIT)


def submit(driver, button) -> None:
    """Click a submit button and wait until the next page has replaced this one."""
    old = driver.find_element(By.TAG_NAME, "html")
    button.click()

    def replaced(_driver) -> bool:
        # Chromium sometimes reports a node of the old document as an inspector
        # error ("Node with given id does not belong to the document") instead
        # of a stale element: both mean the page was replaced.
        try:
            return EC.staleness_of(old)(_driver)
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
    _wait(driver).until(replaced)
    _wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")


def text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def screenshot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    assert driver.save_screenshot(str(path)), f"screenshot {path} failed"
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def fill(driver, values: dict[str, str]) -> None:
    form = driver.find_element(By.CSS_SELECTOR, "form.sell")
    for name, value in values.items():
        if name == "condition":
            form.find_element(By.CSS_SELECTOR, f'input[name="condition"][value="{value}"]').click()
            continue
        el = form.find_element(By.NAME, name)
        if el.tag_name == "select":
            if el.find_elements(By.CSS_SELECTOR, f'option[value="{value}"]'):
                Select(el).select_by_value(value)
            else:  # <option>Toyota</option>: no value attribute
                Select(el).select_by_visible_text(value)
        else:
            el.clear()
            el.send_keys(value)


CAR = {
    "make": "Toyota", "model": "Corolla", "condition": "used", "year": "2018",
    "mileage_km": "84500", "price": "12k", "fuel": "hybrid", "transmission": "automatic",
    "body_type": "hatchback", "color": "silver", "location": "Utrecht",
    "description": "Browser test: one owner, full service history, new tyres.",
    "seller_name": "Selenium Seller", "seller_email": "seller@example.com",
}


# -- the test -------------------------------------------------------------------------
def test_browser_journey(live_server, sql, tmp_path):
    with chromium(tmp_path) as d:
        try:
            journey(d, live_server, sql)
        except BaseException:
            # leave evidence next to the chromedriver log: what the browser showed
            with contextlib.suppress(Exception):
                d.save_screenshot(str(tmp_path / "failure.png"))
                (tmp_path / "failure.html").write_text(d.page_source)
                print(f"browser was at {d.current_url}; see {tmp_path}/failure.png, "
                      f"failure.html, chromedriver.log")
            raise


def journey(d, base: str, sql) -> None:

    # 1. catalogue
    d.get(base + "/")
    assert "Halite Motors" in d.title
    cards = d.find_elements(By.CSS_SELECTOR, "li.card")
    available = sql("SELECT count(*) FROM cars WHERE status = 'available'")[0][0]
    assert len(cards) == min(24, available) and cards, "the catalogue lists no car"
    assert f"{available:,}" in text(d, "p.count")
    assert "served by" in text(d, "footer")
    screenshot(d, "catalogue.png")

    # 2. filter through the form: used cars of the make of the first used car
    Select(d.find_element(By.NAME, "condition")).select_by_value("used")
    submit(d, d.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    assert "condition=used" in d.current_url
    first = text(d, "li.card h3")
    makes = [o.text for o in Select(d.find_element(By.NAME, "make")).options][1:]
    make = max((m for m in makes if first.startswith(m + " ")), key=len)
    Select(d.find_element(By.NAME, "make")).select_by_visible_text(make)
    Select(d.find_element(By.NAME, "sort")).select_by_value("price_asc")
    submit(d, d.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    assert "condition=used" in d.current_url and "sort=price_asc" in d.current_url
    expected = sql("""SELECT count(*) FROM cars c JOIN models md ON md.id = c.model_id
                      JOIN makes mk ON mk.id = md.make_id
                      WHERE c.status = 'available' AND c.condition = 'used'
                        AND mk.name = %s""", [make])[0][0]
    cards = d.find_elements(By.CSS_SELECTOR, "li.card")
    assert cards and len(cards) == min(24, expected)
    prices = []
    for card in cards:
        assert card.find_element(By.TAG_NAME, "h3").text.startswith(make + " "), card.text
        assert card.find_element(By.CSS_SELECTOR, ".badge").text.strip().lower() == "used"
        prices.append(int(re.sub(r"\D", "", card.find_element(By.CSS_SELECTOR, ".price").text)))
    assert prices == sorted(prices)

    # 3. sell a car: an invalid price first, then a valid one
    d.find_element(By.LINK_TEXT, "Sell your car").click()
    _wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "form.sell")))
    fill(d, CAR)
    before = sql("SELECT count(*) FROM cars")[0][0]
    submit(d, d.find_element(By.CSS_SELECTOR, "form.sell button[type=submit]"))
    assert "Please correct 1 field" in text(d, ".flash.error")
    assert "Enter the price as a number" in text(d, "#err-price")
    assert d.find_element(By.NAME, "model").get_attribute("value") == "Corolla"  # kept
    assert sql("SELECT count(*) FROM cars")[0][0] == before
    fill(d, {"price": "12500"})
    submit(d, d.find_element(By.CSS_SELECTOR, "form.sell button[type=submit]"))
    m = re.search(r"/cars/(\d+)$", d.current_url)
    assert m, d.current_url
    car_id = int(m.group(1))
    assert "Your car is listed" in text(d, ".flash.success")
    assert text(d, "article.car h1").startswith("Toyota Corolla")
    assert sql("SELECT seller_name, price::int FROM cars WHERE id = %s",
               [car_id]) == [("Selenium Seller", 12500)]

    # 4. a second tab opens the same car (another buyer, same form)
    first_tab = d.current_window_handle
    d.switch_to.new_window("tab")
    d.get(f"{base}/cars/{car_id}")
    second_tab = d.current_window_handle
    d.switch_to.window(first_tab)

    # 5. buy it
    buy = d.find_element(By.CSS_SELECTOR, "aside.buybox form")
    buy.find_element(By.NAME, "buyer_name").send_keys("Browser Buyer")
    buy.find_element(By.NAME, "buyer_email").send_keys("buyer@example.com")
    submit(d, buy.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert d.current_url.endswith(f"/cars/{car_id}")
    assert re.search(r"Order #\d+ is confirmed", text(d, ".flash.success"))
    assert d.find_element(By.CSS_SELECTOR, "article.car").get_attribute("data-status") == "sold"
    assert "Sold" in text(d, "aside.buybox h2")
    assert d.find_elements(By.CSS_SELECTOR, "aside.buybox form") == []

    # 6. buy it again from the stale tab: a clear "already sold" answer, no second order
    d.switch_to.window(second_tab)
    buy = d.find_element(By.CSS_SELECTOR, "aside.buybox form")
    buy.find_element(By.NAME, "buyer_name").send_keys("Late Buyer")
    buy.find_element(By.NAME, "buyer_email").send_keys("late@example.com")
    submit(d, buy.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "has just been sold to another buyer" in text(d, ".flash.error")
    assert d.find_element(By.CSS_SELECTOR, "article.car").get_attribute("data-status") == "sold"
    assert sql("SELECT buyer_email FROM orders WHERE car_id = %s",
               [car_id]) == [("buyer@example.com",)]
    d.close()
    d.switch_to.window(first_tab)

    # 7. the sold car left the catalogue
    d.get(f"{base}/?make=Toyota&model=Corolla&per_page=100&sort=newest")
    ids = {c.get_attribute("data-car-id") for c in d.find_elements(By.CSS_SELECTOR, "li.card")}
    assert str(car_id) not in ids

    # 8. status: primary, replicas, served_by -- as a new visitor (no session cookie,
    #    so outside the read-your-writes window: the read pool, i.e. the replica, serves)
    d.delete_all_cookies()
    d.get(base + "/status")
    primary = text(d, "#primary")
    assert "127.0.0.1:55432" in primary and "In recovery\nno" in primary
    served = text(d, "#served-by")
    assert "127.0.0.1:55433" in served and "Role\nreplica" in served, served
    rows = d.find_elements(By.CSS_SELECTOR, "table.replicas tbody tr")
    assert rows, "no replica listed on /status"
    assert any("replica1" in r.text and "streaming" in r.text for r in rows), \
        [r.text for r in rows]
    screenshot(d, "status.png")
