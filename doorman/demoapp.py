"""A tiny Celery app for `doorman-simulate` and the test-suite: real tasks, real workers.

The broker comes from $REDIS_URL. Importing it also installs Doorman's publish-time hook, so
queued messages carry the stamp that makes waiting times exact.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from doorman.hook import install

app = Celery("doorman_demo", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_acks_late=os.environ.get("DOORMAN_DEMO_ACKS_LATE") == "1",
    broker_transport_options={"global_keyprefix": os.environ.get("DOORMAN_DEMO_KEYPREFIX", "")}
    if os.environ.get("DOORMAN_DEMO_KEYPREFIX") else {},
)
if os.environ.get("DOORMAN_DEMO_NO_STAMP") != "1":
    install(app)


@app.task(name="demo.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="demo.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
