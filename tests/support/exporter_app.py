"""The known task mix of the exporter drop-in's end-to-end test and bench: run by real workers (-E).

Successes, failures of two exception classes, a task that retries twice then succeeds, and
running tasks the test revokes (terminate).
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("doorman_exporter_mix", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(worker_hijack_root_logger=False, task_send_sent_event=True, worker_send_task_events=True)


@app.task(name="mix.ok")
def ok(x: int) -> int:
    return x


@app.task(name="mix.fail")
def fail(kind: str) -> None:
    if kind == "value":
        raise ValueError("bad value")
    raise KeyError("missing")


@app.task(name="mix.flaky", bind=True, max_retries=2, default_retry_delay=0)
def flaky(self, key: str) -> str:
    if self.request.retries < 2:
        raise self.retry(countdown=0)
    return key


@app.task(name="mix.slow")
def slow(seconds: float) -> None:
    """Revoked with terminate=True while it runs: the worker sends task-revoked at once (a revoked
    countdown task would send it only when its ETA comes)."""
    time.sleep(seconds)
