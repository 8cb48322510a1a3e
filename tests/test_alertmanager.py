"""HA pairs through Alertmanager (issue 16): two Doorman replicas, one real Alertmanager.

The test starts Debian's `prometheus-alertmanager` on a free loopback port (temp config and
storage, no gossip), runs the real `doorman-analyze | doorman-notify` pipeline twice, as two
replicas with their own state and spool would, on the same snapshot lines, and asks Alertmanager
itself (`/api/v2/alerts`) what it holds; its webhook receiver (tests/receiver.py) counts the
notifications it sends.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import orjson
import pytest

from doorman.timefmt import iso
from tests.support.notify import notify_env
from tests.support.process import BIN, free_port, records, require, wait_for

AM_SECRET = "AMPATHSECRET0042"  # an instance URL's path is a secret like any webhook's
GENERATOR = "http://127.0.0.1:8099/"

AM_CONFIG = """
route:
  receiver: hook
  group_by: ['alertname', 'cluster']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {hook}
        send_resolved: true
"""


@pytest.fixture
def hook(receiver):
    """Alertmanager's own webhook notifications arrive here."""
    return receiver


@pytest.fixture
def alertmanager(tmp_path, hook):
    binary = require("prometheus-alertmanager", "prometheus-alertmanager")
    port = free_port()
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(AM_CONFIG.format(hook=hook.url("/am")))
    (tmp_path / "am-data").mkdir()
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, f"--config.file={conf}", f"--storage.path={tmp_path / 'am-data'}",
                             f"--web.listen-address=127.0.0.1:{port}", f"--web.route-prefix=/{AM_SECRET}",
                             "--cluster.listen-address="],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/{AM_SECRET}"  # behind a path, as behind a proxy: a secret to keep

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
        try:
            return urllib.request.urlopen(f"{base}/-/ready", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 20, "alertmanager to be ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def am_alerts(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as resp:
        return json.load(resp)


def snapshot(ts: float, pending: int, alive: int) -> bytes:
    workers = [{"name": "w1@host", "alive": True, "responded": True, "active": 0, "last_heartbeat": None,
                "heartbeat_freq": None}] if alive else []
    return orjson.dumps({
        "v": 1, "kind": "snapshot", "ts": iso(ts), "cluster": "c1", "broker": "redis://h/0", "seq": 1,
        "trigger": "once", "redis_connected": True, "error": None, "pending_tasks": pending,
        "queues": {"celery": {"pending": pending, "by_priority": {"0": pending}, "oldest": None, "heads": [],
                              "source": "config"}},
        "alive_workers": alive, "workers": workers, "active_tasks": 0, "active": [], "unacked": None,
        "workers_subscribed": alive, "collect_ms": 1.0,
    }) + b"\n"


def replica(tmp_path, name: str, line: bytes, env: dict[str, str]) -> list[dict]:
    """One replica's cycle: the real `doorman-analyze | doorman-notify`, its own state and spool."""
    state, spool = tmp_path / f"{name}.state.json", tmp_path / f"{name}.spool.ndjson"
    cmd = f"set -o pipefail; '{BIN / 'doorman-analyze'}' --state '{state}' | '{BIN / 'doorman-notify'}' --spool '{spool}'"
    p = subprocess.run(["bash", "-c", cmd], input=line, capture_output=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert AM_SECRET not in (p.stdout + p.stderr).decode()
    return records(p.stdout)


@pytest.mark.e2e
def test_two_replicas_give_one_alert_in_alertmanager_and_it_resolves(tmp_path, alertmanager, hook):
    dead = f"http://127.0.0.1:{free_port()}"  # a second cluster member that is down: one accepting is enough
    env = {**os.environ, **notify_env(tmp_path), "ALERTMANAGER_URL": f"{alertmanager}, {dead}",
           "ALERTMANAGER_GENERATOR_URL": GENERATOR}
    now = time.time()
    firing = snapshot(now, pending=5, alive=0)
    for name in ("a", "b"):
        [rec] = replica(tmp_path, name, firing, env)
        assert (rec["destination"], rec["alert_type"], rec["status"], rec["result"]) == \
            ("alertmanager", "workers_down", "firing", "delivered")

    [alert] = am_alerts(alertmanager)  # the same labels from both replicas: one alert
    assert alert["labels"] == {"alertname": "workers_down", "severity": "emergency", "cluster": "c1",
                               "subject": "cluster"}
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["title"] == "Celery workers down"
    assert "5 tasks are pending" in alert["annotations"]["message"]
    assert json.loads(alert["annotations"]["details"])["pending_tasks"] == 5
    assert alert["generatorURL"] == GENERATOR
    notified = wait_for(lambda: hook.at("/am"), 15, "Alertmanager's notification")
    time.sleep(2.5)  # two more group intervals: a second replica's post must not notify again
    firing_notes = [r.json for r in hook.at("/am") if r.json["status"] == "firing"]
    assert len(firing_notes) == 1 and len(notified[0].json["alerts"]) == 1

    resolving = snapshot(time.time(), pending=0, alive=1)
    for name in ("a", "b"):
        [rec] = replica(tmp_path, name, resolving, env)
        assert (rec["alert_type"], rec["status"], rec["result"]) == ("workers_down", "resolved", "delivered")
    wait_for(lambda: am_alerts(alertmanager) == [], 15, "the alert to resolve in Alertmanager")
    resolved = wait_for(lambda: [r.json for r in hook.at("/am") if r.json["status"] == "resolved"], 15,
                        "Alertmanager's resolved notification")
    assert resolved[0]["alerts"][0]["labels"]["alertname"] == "workers_down"


def test_dry_run_shows_the_postable_alert_with_a_long_ends_at(tmp_path):
    from doorman.timefmt import parse_iso

    env = {**os.environ, **notify_env(tmp_path), "ALERTMANAGER_URL": f"https://am1.example:9093/{AM_SECRET}",
           "ALERT_COOLDOWN_SECONDS": "300", "CHECK_INTERVAL": "30"}
    alert = {"v": 1, "kind": "alert", "ts": "2026-11-28T01:00:00.000Z", "cluster": "c1",
             "alert_type": "workers_down", "severity": "emergency", "status": "firing", "title": "Workers down",
             "message": "m", "subject": "cluster", "fingerprint": "f" * 32, "details": {"n": 1},
             "started_at": "2026-11-28T00:59:00.000Z"}
    p = subprocess.run([str(BIN / "doorman-notify"), "--dry-run"], input=orjson.dumps(alert) + b"\n",
                       capture_output=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    [rec] = [r for r in records(p.stdout) if r["destination"] == "alertmanager"]
    assert rec["url"] == "https://am1.example:9093/***"
    [item] = rec["payload"]
    assert item["startsAt"] == "2026-11-28T00:59:00.000Z"
    assert parse_iso(item["endsAt"]) - parse_iso(alert["ts"]) == 2 * (300 + 30)
    assert AM_SECRET not in (p.stdout + p.stderr).decode()


def test_plain_http_to_another_host_is_refused_naming_the_key(tmp_path):
    env = {**os.environ, **notify_env(tmp_path), "ALERTMANAGER_URL": "http://127.0.0.1:9093,http://am2.example:9093"}
    p = subprocess.run([str(BIN / "doorman-notify")], input=b"", capture_output=True, env=env, timeout=60)
    assert p.returncode == 2
    err = p.stderr.decode()
    assert "alertmanager_url" in err and "https://" in err and "Traceback" not in err


def test_urls_endpoints_and_the_outcome_of_a_cluster():
    from doorman.sinks.alertmanager import combine, endpoint, split_urls, urls_problem
    from doorman.sinks.base import Result

    assert split_urls(" https://a:9093, ,https://b:9093/am ") == ["https://a:9093", "https://b:9093/am"]
    assert endpoint("https://b:9093/am/") == "https://b:9093/am/api/v2/alerts"
    assert endpoint("https://b:9093/api/v2/alerts") == "https://b:9093/api/v2/alerts"
    assert urls_problem("https://a:9093,https://b:9093") is None and urls_problem("") is None
    assert urls_problem("https://a:9093,ftp://b") == "URL 2 of 2: must be an http:// or https:// URL with a host"
    ok, refused, bad = Result("delivered", 200), Result("retry", error="down"), Result("permanent", 400, "bad")
    assert combine([refused, ok]) is ok
    assert combine([bad, refused]).outcome == "retry" and combine([bad, bad]).outcome == "permanent"


def test_odd_times_are_clamped_not_refused(session):
    from doorman.sinks.alertmanager import AlertmanagerSink

    sink = AlertmanagerSink([session], ["https://am.example"], 600.0)
    a = {"ts": "2026-11-28T01:00:00.318Z", "alert_type": "x", "severity": "info", "status": "resolved",
         "title": "t", "started_at": "2026-11-28T02:00:00.000Z", "subject": "s" * 5000}
    [item] = sink.body(a)
    assert item["endsAt"] == a["ts"] and item["startsAt"] <= item["endsAt"]
    assert len(item["labels"]["subject"]) == 1024 and item["labels"]["cluster"] == "default"
