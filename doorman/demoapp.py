"""A tiny Celery app for `doorman-simulate` and the test-suite: real tasks, real workers.

The broker comes from $REDIS_URL. Importing it also installs Doorman's publish-time hook, so
queued messages carry the stamp that makes waiting times exact.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.worker.control import control_command

from doorman.hook import install

app = Celery("doorman_demo", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_acks_late=os.environ.get("DOORMAN_DEMO_ACKS_LATE") == "1",
    broker_transport_options={"global_keyprefix": os.environ.get("DOORMAN_DEMO_KEYPREFIX", "")}
    if os.environ.get("DOORMAN_DEMO_KEYPREFIX") else {},
)
if os.environ.get("DOORMAN_DEMO_VISIBILITY_TIMEOUT"):
    # a short visibility timeout, restored every second: reproduces a redelivery in seconds
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "visibility_timeout": float(os.environ["DOORMAN_DEMO_VISIBILITY_TIMEOUT"]),
        "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
    }
if os.environ.get("DOORMAN_DEMO_BEAT_EVERY"):
    # `celery beat -S redbeat.RedBeatScheduler`: the canary task every N seconds, RedBeat's lock
    # lapsing 3 periods after a crash (its default is 5 x beat_max_loop_interval = 25 minutes)
    every = float(os.environ["DOORMAN_DEMO_BEAT_EVERY"])
    app.conf.update(
        beat_schedule={"canary": {"task": "demo.canary", "schedule": every}},
        beat_max_loop_interval=every,
        # RedBeat's and the canary's Redis: the broker, or (a RabbitMQ broker) DOORMAN_DEMO_BEAT_REDIS_URL
        redbeat_redis_url=os.environ.get("DOORMAN_DEMO_BEAT_REDIS_URL") or app.conf.broker_url,
        redbeat_lock_timeout=int(max(3, 3 * every)),
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


@app.task(name="demo.mark")
def mark(path: str, seconds: float) -> float:
    """Append "<task id> <start time>" to `path`, then sleep: shows how often a task really ran."""
    with open(path, "a") as f:
        f.write(f"{mark.request.id} {time.time()}\n")
    time.sleep(seconds)
    return seconds


@app.task(name="demo.canary", ignore_result=True)
def canary() -> None:
    """The beat canary of docs/analyze.md: the current Unix time in a key Doorman reads."""
    import redis

    url = os.environ.get("DOORMAN_DEMO_BEAT_REDIS_URL") or app.conf.broker_url
    redis.Redis.from_url(url).set(os.environ.get("DOORMAN_BEAT_CANARY_KEY", "beat:canary"), int(time.time()))


class FlakyError(Exception):
    """What `flaky` raises: a class name the task rules report (`exceptions`)."""


@app.task(name="doorman.demoapp.flaky")
def flaky(i: int) -> int:
    """Fails for 3 of every 10 consecutive `i` (0, 1, 2 of each ten): 30 %, the same on every run."""
    if i % 10 < 3:
        raise FlakyError(f"run {i} fails on purpose")
    return i


@app.task(name="doorman.demoapp.healthy")
def healthy(i: int) -> int:
    return i


# Task outcomes for the task-event tests and scenarios (docs/tasks.md): each one outcome, exactly.
if os.environ.get("DOORMAN_DEMO_SENT_EVENTS") == "1":
    app.conf.task_send_sent_event = True  # retries re-published by the worker send `task-sent` too


@app.task(name="demo.fail_value")
def fail_value() -> None:
    raise ValueError("demo failure")


@app.task(name="demo.fail_key")
def fail_key() -> None:
    raise KeyError("demo")


@app.task(name="demo.retry_then_ok", bind=True, max_retries=5)
def retry_then_ok(self, tries: int = 3) -> int:  # noqa: ANN001 - Celery's bound task
    """Fails `tries - 1` times (each a retry), then succeeds."""
    if self.request.retries < tries - 1:
        raise self.retry(countdown=0)
    return self.request.retries


@app.task(name="demo.retry_give_up", bind=True, max_retries=2)
def retry_give_up(self) -> None:  # noqa: ANN001
    """Retries twice, then fails for good with ValueError (the last try)."""
    raise self.retry(exc=ValueError("still failing"), countdown=0)


@app.task(name="demo.reject")
def reject() -> None:
    from celery.exceptions import Reject

    raise Reject("not for me", requeue=False)


# What the ghost scenarios stage inside a worker (docs/simulate.md, "A ghost worker with no consumer")
@control_command()
def demo_drop_task_consumer(state: Any) -> dict[str, str]:
    """Cancel this worker's task consumers at the broker and tell Celery nothing: its `active_queues`
    still lists them. The state a reconnect that never re-consumed leaves (celery#8082, #8030): a
    worker alive on the control channel with no consumer on its task queues (`ghost_worker` case a).
    Only the demo app has it; Doorman never sends it."""
    consumer = state.consumer.task_consumer
    tags = list(getattr(consumer, "_active_tags", {}).values())  # kombu's consumer tags, per queue
    if not tags:
        return {"error": "no task consumer found to cancel (kombu's Consumer._active_tags is empty or gone)"}
    for tag in tags:
        consumer.channel.basic_cancel(tag)
    return {"ok": f"cancelled {len(tags)} task consumer(s) at the broker; active_queues unchanged"}
