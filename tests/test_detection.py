"""Dead workers in seconds: the daemon line pages a webhook when the last worker is kill -9'd.

Real redis-server, a real prefork worker, the real `doorman-collect --interval 30 | doorman-analyze |
doorman-notify` and a real HTTP receiver on 127.0.0.1. Timing is the benchmark's business
(bench/bench_detection.py); here only what arrives is checked.
"""

from __future__ import annotations

import time

import pytest

from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.process import wait_for
from tests.support.receiver import Receiver
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e

HOOK = "/hooks/doorman"
WORKER = "busy@detect"


def test_kill9_of_the_last_worker_pages_once_and_a_busy_worker_never_does(redis_server, workers, tmp_path):
    url, client = redis_server.url, redis_server.client()
    receiver = Receiver()
    # The worker consumes only `busy`, so the 5 tasks in `celery` stay pending the whole time.
    worker = workers(url, WORKER, client, queues="busy", concurrency=1)
    enqueue(url, 1, task="demo.sleep", args=(120,), queue="busy")
    enqueue(url, 5, task="demo.add", args=(2, 3), queue="celery")
    pipe = DaemonPipeline(url, receiver.url(HOOK), interval=30, workdir=str(tmp_path)).start()
    try:
        pipe.wait_heartbeat(WORKER)
        wait_for(lambda: client.llen("busy") == 0, 10, "the worker to take the sleep task")

        # Busy, not dead: a prefork worker keeps heartbeating while its child sleeps. 5 s is more
        # than Celery's expiry window (2 x the 2 s heartbeat), so a false "overdue" would show.
        time.sleep(5)
        assert receiver.at(HOOK) == []
        pipe.check_running()
        assert all(w["alive"] for s in pipe.snapshots() for w in s["workers"] if w["name"] == WORKER)

        worker.kill9()
        got = wait_for(lambda: receiver.delivered(HOOK), 30, "the workers_down alert at the webhook")
    finally:
        pipe.stop()
        receiver.close()

    posts = [r.json for r in receiver.at(HOOK)]
    assert [(a["alert_type"], a["status"]) for a in posts] == [("workers_down", "firing")]
    alert = got[0].json
    assert alert["severity"] == "emergency"
    assert alert["subject"] == "cluster"
    assert alert["message"] == "No workers responding but 5 tasks are pending!"
    assert alert["details"]["pending_tasks"] == 5
    assert alert["details"]["queues"] == {"celery": 5}
    assert alert["details"]["alive_workers"] == 0
    assert WORKER in alert["details"]["known_workers"]
    assert got[0].headers["Idempotency-Key"].startswith(alert["fingerprint"])

    # It came from the extra snapshot collect writes when the worker's connections vanished from
    # Redis's connection table (confirmed by a ping), not from the 30 s interval tick.
    raised_by = [s for s in pipe.snapshots() if s["ts"] == alert["ts"]]
    assert [s["trigger"] for s in raised_by] == ["connection_lost"]
    assert [w["alive"] for w in raised_by[0]["workers"] if w["name"] == WORKER] == [False]

    delivered = [d for d in pipe.deliveries() if d.get("destination") == "webhook"]
    assert [d.get("result") for d in delivered] == ["delivered"]
