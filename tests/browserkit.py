"""Headless Debian Chromium through Selenium, for the browser tests (the site's, the
dashboard's, in the lab and off it).

Chromium is not optional: the Makefile installs it (Debian packages `chromium` and
`chromium-driver`), so a missing browser FAILS a test instead of skipping it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("HALITE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("HALITE_CHROMEDRIVER", "/usr/bin/chromedriver"))
WAIT = 30  # seconds for any page or element (generous: CI machines can be busy)

try:  # a missing selenium fails the test (below) with a clear message
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
except ImportError as exc:  # pragma: no cover
    webdriver = None
    _SELENIUM_ERROR = exc


@contextlib.contextmanager
def chromium(tmp: Path, console_log: bool = False, window: str = "1280,900"):
    """Headless Debian Chromium through chromedriver. Used inside a test (not as a
    fixture) so that a missing browser is a test FAILURE, not a setup error.

    :param console_log: keep the page's console messages (``driver.get_log("browser")``).
    """
    if webdriver is None:
        pytest.fail(f"selenium is not installed ({_SELENIUM_ERROR}): pip install selenium")
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (path.exists() and os.access(path, os.X_OK)):
            pytest.fail(f"{path} not found: the browser test needs Debian's Chromium "
                        f"(apt-get install -y chromium chromium-driver; missing: {pkg})")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-extensions",
                "--disable-default-apps", "--hide-scrollbars", f"--window-size={window}",
                "--force-device-scale-factor=1", "--lang=en-US", "--no-proxy-server",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    if console_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager is never asked to download anything
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=opts)
    except WebDriverException as exc:
        pytest.fail(f"could not start {CHROMIUM} through {CHROMEDRIVER}: {exc.msg}")
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
