"""The dashboard in a real headless Chromium (Debian chromium + chromium-driver, driven by Selenium).

serve follows a file holding a known hour of history and one alert episode; the page must chart
exactly those points, show the alert on the timeline, render a hostile queue name as text, and log
no console error (a CSP violation would be one). A screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import tempfile
import time

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.process import ROOT, require, wait_for
from tests.support.serve import XSS, Serve, alert, lines, snapshot

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"


def chromium() -> webdriver.Chrome:
    browser, driver = require("chromium", "chromium"), require("chromedriver", "chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1100",
                f"--user-data-dir={tempfile.mkdtemp(prefix='doorman-chromium-')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


def test_dashboard_charts_known_history_shows_the_alert_and_renders_names_as_text(tmp_path):
    now = time.time()
    t0 = now - 3000
    celery = [0, 3, 8, 13, 21, 34, 21, 13, 5, 2]
    hostile = [1, 1, 2, 2, 3, 3, 2, 2, 1, 1]
    records = [snapshot(t0 + i * 300, {"celery": c, XSS: h}, [("w1@host", True, 1)], oldest={"celery": 10.0 * i})
               for i, (c, h) in enumerate(zip(celery, hostile, strict=True))]
    records.insert(5, alert(t0 + 1200, started_at=t0 + 1200, title="Backlog over 10"))
    records.insert(8, alert(t0 + 1800, status="resolved", started_at=t0 + 1200, title="Resolved: Backlog"))
    stream = tmp_path / "stream.ndjson"
    stream.write_bytes(lines(*records))
    serve = Serve(tmp_path, str(stream)).wait_up()
    driver = None
    try:
        wait_for(lambda: len(serve.get("/api/v1/history?range=1h").json()["ts"]) == 10, 10, "the history in SQLite")
        driver = chromium()
        driver.get(serve.url + "/")
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        charts = driver.execute_script(
            "const out = {}; for (const [k, u] of Object.entries(window.doormanCharts)) "
            "out[k] = {labels: u.series.map(s => s.label), data: u.data}; return out;")
        pending = charts["chart-pending"]
        series = dict(zip(pending["labels"][1:], pending["data"][1:], strict=True))
        assert series == {"celery": celery, XSS: hostile}
        xs = pending["data"][0]  # each point at the start of its 6 s bucket (1 h / 600 points)
        assert len(xs) == 10 and all(0 <= t0 + i * 300 - x < 6.01 for i, x in enumerate(xs))
        assert charts["chart-workers"]["data"][1] == [1] * 10
        spans = driver.find_elements(By.CSS_SELECTOR, '#timeline .span[data-alert-type="backlog_explosion"]')
        assert len(spans) == 1
        assert "sev-critical" in spans[0].get_attribute("class")
        assert "Backlog over 10" in spans[0].get_attribute("title")
        assert driver.find_element(By.CSS_SELECTOR, "#timeline .lane .name").text == "backlog_explosion cluster"
        # the hostile queue name is text in the legend, never an element
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        assert XSS in driver.find_element(By.CSS_SELECTOR, "#chart-pending").text
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.accept()
        card = driver.find_element(By.CSS_SELECTOR, "#status .card").text
        assert "pending\n3\n" in card and "workers alive / known\n1 / 1" in card
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve-dashboard.png"))
    finally:
        if driver is not None:
            driver.quit()
        serve.stop()
