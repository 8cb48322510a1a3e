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
from tests.support.serve import XSS, Serve, alert, lines, snapshot, task_counts, tasks_section

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
        # snapshots without a tasks section: the page says so and the task table is empty, not broken
        notice = driver.find_element(By.ID, "task-notice")
        assert notice.is_displayed() and "Task outcomes are not read" in notice.text
        assert "No task outcome recorded in this range." in driver.find_element(By.ID, "task-table").text
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve-dashboard.png"))
    finally:
        if driver is not None:
            driver.quit()
        serve.stop()


def charts_of(driver: webdriver.Chrome) -> dict:
    return driver.execute_script(
        "const out = {}; for (const [k, u] of Object.entries(window.doormanCharts)) "
        "out[k] = {labels: u.series.map(s => s.label), data: u.data}; return out;")


def shoot(driver: webdriver.Chrome, fname: str) -> None:
    """The window scrolled to the task section (an element screenshot is cut at the viewport)."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("document.getElementById('tasks').scrollIntoView()")
    driver.save_screenshot(str(ARTIFACTS / fname))


def test_dashboard_charts_task_failures_and_runtime_and_says_when_task_events_are_off(tmp_path):
    now = time.time()
    t0 = now - 3000
    since = t0 - 600
    records = []
    for i in range(10):
        ts = t0 + i * 300
        by_name = {"app.healthy": task_counts(ok=20 * i, runtime={0.05: 20 * i}),
                   XSS: task_counts(ok=10 * i, failed=3 * i, retried=i, exceptions={"ValueError": 3 * i},
                                    runtime={0.5: 10 * i})}
        records.append({**snapshot(ts, {"celery": 1}, [("w1@host", True, 1)]), "tasks": tasks_section(by_name, since)})
        off = snapshot(ts, {"celery": 0}, [("w2@quiet", True, 1)], cluster="events-off")
        records.append({**off, "tasks": tasks_section({}, since, events="off")})
    stream = tmp_path / "stream.ndjson"
    stream.write_bytes(lines(*records))
    serve = Serve(tmp_path, str(stream)).wait_up()
    driver = None
    try:
        wait_for(lambda: len(serve.get("/api/v1/history?range=1h&cluster=events-off").json()["ts"]) == 10, 10,
                 "both clusters' history in SQLite")
        driver = chromium()
        driver.get(serve.url + "/")
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#task-table tbody tr[data-task]"))
        assert not driver.find_element(By.ID, "task-notice").is_displayed()  # events on: nothing to say
        rows = driver.find_elements(By.CSS_SELECTOR, "#task-table tbody tr")
        cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        # the first snapshot is a baseline: 9 snapshots' increments; the failing task first
        assert cells[0] == [XSS, "117", "27", "23.1 %", "9", "488 ms", "ValueError ×27"]
        assert cells[1] == ["app.healthy", "180", "0", "0.0 %", "0", "49 ms", "–"]
        assert "failing" in rows[0].get_attribute("class")
        charts = charts_of(driver)
        failures = charts["chart-task-failures"]
        assert failures["labels"][1:] == [XSS]
        assert failures["data"][1] == [0] + [3] * 9
        runtime = charts["chart-task-runtime"]
        assert runtime["labels"][1:] == ["app.healthy", XSS]
        assert runtime["data"][1][1:] == [0.04875] * 9 and runtime["data"][2][0] is None
        # hostile names are text: no element made of them, no dialog
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.accept()
        ARTIFACTS.mkdir(exist_ok=True)
        shoot(driver, "serve-dashboard-tasks.png")
        # the other cluster's workers send no task events: said plainly, nothing charted
        driver.execute_script("const s = document.getElementById('cluster'); s.value = 'events-off'; "
                              "s.dispatchEvent(new Event('change'));")
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "task-notice").is_displayed())
        notice = driver.find_element(By.ID, "task-notice")
        assert notice.text.startswith("Task events are off: workers run tasks but send no task events")
        assert "-E" in notice.text
        WebDriverWait(driver, 15).until(
            lambda d: "No task outcome recorded" in d.find_element(By.ID, "task-table").text)
        assert charts_of(driver)["chart-task-failures"]["labels"][1:] == []
        shoot(driver, "serve-dashboard-tasks-off.png")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        if driver is not None:
            driver.quit()
        serve.stop()
