"""doorman-serve beside the real daemon (bin/doorman-run with DOORMAN_STREAMS_DIR), never in its way.

A stopped (SIGSTOP) or killed (SIGKILL) serve must not delay one alert at a real webhook; and a
real Prometheus server scraping serve sees the broker's queue length.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.process import BIN, ROOT, free_port, require, wait_for
from tests.support.receiver import Receiver
from tests.support.serve import Serve
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e

RUN = ROOT / "bin" / "doorman-run"


def start_daemon(tmp_path: Path, redis_url: str, hook: str, **extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_", "SLACK_", "PAGERDUTY_", "GENERIC_",
                                "MAX_", "CHECK_INTERVAL"))}
    env.update(PATH=f"{BIN}:/usr/bin:/bin", HOME=str(tmp_path), REDIS_URL=redis_url, GENERIC_WEBHOOK_URL=hook,
               DOORMAN_STATE_DIR=str(tmp_path / "state"), DOORMAN_STREAMS_DIR=str(tmp_path / "state" / "streams"),
               DOORMAN_INTERVAL="0.5", CHECK_INTERVAL="0.5", DOORMAN_CONFIG="", **extra)
    return subprocess.Popen([str(RUN)], stdout=subprocess.DEVNULL, stderr=open(tmp_path / "run.err", "wb"), env=env)


def delivered_types(receiver: Receiver) -> list[tuple[str, str]]:
    return [(r.json["alert_type"], r.json["status"]) for r in receiver.delivered("/hook")]


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_stopped_or_killed_serve_delays_no_alert(own_redis, tmp_path):
    receiver = Receiver()
    daemon = start_daemon(tmp_path, own_redis.url, receiver.url("/hook"))
    streams = tmp_path / "state" / "streams"
    serve = Serve(tmp_path, str(streams / "snapshots.ndjson"), str(streams / "alerts.ndjson"))
    try:
        serve.wait_up()
        # no worker, no task: celery_disconnected fires at the first check; serve sees it through the files
        wait_for(lambda: ("celery_disconnected", "firing") in delivered_types(receiver), 20, "the first alert")
        wait_for(lambda: "alert_type=\"celery_disconnected\"" in serve.get("/metrics").text, 20, "serve reading the files")

        os.kill(serve.proc.pid, signal.SIGSTOP)  # serve frozen: the pipeline goes on as if it were not there
        wait_for(lambda: proc_state(serve.proc.pid) == "T", 5, "serve stopped")
        enqueue(own_redis.url, 5)  # tasks pending, no worker: workers_down
        wait_for(lambda: ("workers_down", "firing") in delivered_types(receiver), 20,
                 "workers_down delivered while serve is stopped")
        assert proc_state(serve.proc.pid) == "T"

        os.kill(serve.proc.pid, signal.SIGKILL)  # serve gone for good: still nothing waits for it
        serve.proc.wait(5)
        own_redis.stop()
        wait_for(lambda: ("redis_down", "firing") in delivered_types(receiver), 20, "redis_down with serve dead")
        assert daemon.poll() is None
        alerts_file = (streams / "alerts.ndjson").read_text()
        assert "workers_down" in alerts_file and "redis_down" in alerts_file  # tee kept writing
        assert stat_mode(streams) == 0o700 and stat_mode(streams / "alerts.ndjson") == 0o600
    finally:
        if serve.proc.poll() is None:
            os.kill(serve.proc.pid, signal.SIGCONT)
        serve.stop()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        receiver.close()


def stat_mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_simulate_serve_shows_the_run_and_a_real_prometheus_scrapes_it(tmp_path):
    """`doorman-simulate --serve`: the demo live in serve; Prometheus' query API sees the demo queue."""
    prometheus = require("prometheus", "prometheus")
    serve_port, prom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORMAN_", "REDIS_URL", "MAX_", "CHECK_"))}
    env.update(XDG_STATE_HOME=str(tmp_path / "xdg"), DOORMAN_CONFIG="")
    sim = subprocess.Popen([str(BIN / "doorman-simulate"), "--workers", "0", "--enqueue", "4", "--forever",
                            "--interval", "0.5", "--port", str(free_port()), "--serve", f"127.0.0.1:{serve_port}"],
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "simulate.err", "wb"), env=env)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ROOT / 'deploy' / 'prometheus' / 'doorman-rules.yml'}']\n"
        "scrape_configs:\n"
        f"  - job_name: doorman\n    static_configs: [{{targets: ['127.0.0.1:{serve_port}']}}]\n")
    prom = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.err", "wb"))
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(q: str) -> list:
        try:
            r = requests.get(f"{api}/query", params={"query": q}, timeout=2)
        except requests.ConnectionError:
            return []
        return r.json()["data"]["result"] if r.ok else []

    try:
        [series] = wait_for(lambda: query('celery_queue_length{queue_name="celery"}'), 60,
                            "Prometheus to scrape celery_queue_length from the simulated run")
        assert series["metric"]["cluster"] and series["metric"]["job"] == "doorman"
        assert float(series["value"][1]) == 4.0
        firing = wait_for(lambda: query('doorman_alerts_firing{alert_type="workers_down"} > 0'), 30,
                          "workers_down firing in Prometheus")
        assert firing[0]["metric"]["severity"] == "emergency"
        status = requests.get(f"http://127.0.0.1:{serve_port}/api/v1/status", timeout=2).json()
        assert status["clusters"][0]["pending"] == 4
        rules = requests.get(f"{api}/rules", timeout=2).json()["data"]["groups"]
        assert rules and all(r["health"] != "err" for g in rules for r in g["rules"])
    finally:
        prom.terminate()
        prom.wait(20)
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    assert "doorman-serve (pid" in (tmp_path / "simulate.err").read_text()


def test_doorman_run_caps_its_streams_and_serve_reads_on_after_the_truncation(own_redis, tmp_path):
    receiver = Receiver()
    daemon = start_daemon(tmp_path, own_redis.url, receiver.url("/hook"), DOORMAN_STREAMS_MAX_BYTES="3000")
    streams = tmp_path / "state" / "streams"
    serve = Serve(tmp_path, str(streams / "snapshots.ndjson"), args=("--history", "none"))
    try:
        serve.wait_up()
        wait_for(lambda: "snapshots.ndjson: truncated" in serve.stderr, 30, "doorman-run to truncate the file")
        seen = serve.get("/api/v1/status").json()["clusters"][0]["ts"]
        wait_for(lambda: serve.get("/api/v1/status").json()["clusters"][0]["ts"] > seen, 10,
                 "serve to read snapshots written after the truncation")
        assert (streams / "snapshots.ndjson").stat().st_size < 3000 + 20 * 2000
    finally:
        serve.stop()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        receiver.close()
