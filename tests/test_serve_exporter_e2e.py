"""The exporter drop-in end to end: real workers with -E run a known mix, doorman-collect (daemon,
task events on) writes snapshots, doorman-serve follows them, a real Prometheus scrapes serve.

Needs the task-event reader (issue 24) filling the snapshot's `tasks` section: on a branch without
it, this test fails at its first wait (no `celery_task_*` series), as it should.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.exporter import JOB, MIXIN, Prometheus, fill, queries
from tests.support.process import BIN, ROOT, wait_for
from tests.support.serve import Serve

pytestmark = pytest.mark.e2e  # real workers, brokers or whole pipelines

OK, VALUE, KEY, FLAKY, REVOKED = 12, 4, 2, 3, 2


def start_worker(url: str, name: str, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "celery"), "-A", "tests.support.exporter_app", "worker", "-E", "-n", name, "-c", "2",
                             "-l", "WARNING", "--without-mingle"], cwd=ROOT, env={**os.environ, "REDIS_URL": url},
                            stdout=open(tmp / f"{name}.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def test_real_workers_mix_counted_and_every_row_answered(own_redis, tmp_path):
    url = own_redis.url
    stream = tmp_path / "snapshots.ndjson"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORMAN_", "REDIS_URL", "CHECK_", "MAX_"))}
    env.update(REDIS_URL=url, DOORMAN_CONFIG="", XDG_STATE_HOME=str(tmp_path / "xdg"))
    collect = subprocess.Popen([str(BIN / "doorman-collect"), "--interval", "1"], env=env,
                               stdout=open(stream, "wb"), stderr=open(tmp_path / "collect.err", "wb"))
    workers = [start_worker(url, f"celery@e2e-{i}", tmp_path) for i in (1, 2)]
    serve = Serve(tmp_path, str(stream), args=("--history", "none")).wait_up()
    prom = Prometheus(tmp_path, f"127.0.0.1:{serve.port}", [MIXIN / "prometheus_alerts.yaml"])
    try:
        wait_for(lambda: prom.query('sum(celery_worker_up{job="celery"}) == 2'), 90, "both workers up in Prometheus")
        sys.path.insert(0, str(ROOT))
        from tests.support.exporter_app import app

        app.conf.broker_url = url
        app.send_task("mix.ok", args=(0,))  # the first event of each label set makes it appear (pre-zeroed)
        wait_for(lambda: prom.query('celery_task_succeeded_total{name="mix.ok"}'), 90, "the task series in Prometheus")
        time.sleep(3)
        for i in range(OK):
            app.send_task("mix.ok", args=(i,))
        for _ in range(VALUE):
            app.send_task("mix.fail", args=("value",))
        for _ in range(KEY):
            app.send_task("mix.fail", args=("key",))
        for i in range(FLAKY):
            app.send_task("mix.flaky", args=(str(i),))
        time.sleep(5)  # the rest done: the slow ones start at once
        slow = [app.send_task("mix.slow", args=(60,)) for _ in range(REVOKED)]
        time.sleep(3)
        for r in slow:
            app.control.revoke(r.id, terminate=True)
        want = {"succeeded": OK + 1 + FLAKY, "failed": VALUE + KEY, "retried": 2 * FLAKY}
        for outcome, n in want.items():
            q = f"sum(celery_task_{outcome}_total) == {n}"
            wait_for(lambda q=q: prom.query(q), 120, f"{n} {outcome} in Prometheus")  # type: ignore[misc]
        wait_for(lambda: prom.query(f"sum(celery_task_revoked_total) == {REVOKED}"), 120, "the revocations")
        by_exc = {r["metric"].get("exception", ""): float(r["value"][1])  # "" is no label in Prometheus
                  for r in prom.query('sum by (exception) (celery_task_failed_total{name="mix.fail"})')}
        assert by_exc == {"": 0, "ValueError": VALUE, "KeyError": KEY}
        hosts = {r["metric"]["hostname"] for r in prom.query("celery_worker_up")}
        assert hosts == {"e2e-1", "e2e-2"}  # the exporter's hostname: after the '@'
        os.killpg(workers[1].pid, signal.SIGTERM)  # a warm stop: worker-offline, then up 0 (kept 30 min)
        workers[1].wait(60)
        wait_for(lambda: prom.query('celery_worker_up{job="celery", hostname="e2e-2"} == 0'), 90, "e2e-2 down")
        time.sleep(3)
        empty = []
        for row in queries():
            expr = fill(row["expr"])
            if expr.startswith("label_values("):
                continue
            # celery_task_rejected_total: this workload rejects nothing (Celery 5.7 counts a Reject as a
            # failure first, so a rejected task would itself trip CeleryTaskHighFailRate, checked below
            # to return only mix.fail); the crafted-stream test fills that row
            if not prom.query(expr) and "celery_queue_length" not in expr and "namespace)" not in expr \
                    and "celery_task_rejected_total" not in expr:
                empty.append(expr)
        assert not empty, "\n".join(empty)
        fail_rate = next(r for r in queries() if r["panel_or_alert_title"] == "CeleryTaskHighFailRate")
        assert {r["metric"]["name"] for r in prom.query(fail_rate["expr"])} == {"mix.fail"}
        assert JOB == "celery"
    finally:
        prom.stop()
        serve.stop()
        for w in workers:
            try:
                os.killpg(w.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            w.wait(30)
        collect.terminate()
        collect.wait(30)
