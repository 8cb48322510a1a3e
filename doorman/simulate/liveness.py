"""`doorman-simulate --scenario NAME`: what heartbeats alone never show, staged with real parts and
watched by the real `doorman-collect | doorman-analyze` until its alert comes.

- `unconsumed`: tasks sent to `reports` while the workers consume only `celery`: `queue_unconsumed`.
- `cancelled-consumer`: `celery control cancel_consumer celery`, then tasks in `celery`:
  `queue_unconsumed`.
- `ghost`: the worker's pool process is stopped (SIGSTOP) while its main process heartbeats on;
  tasks wait in its queue, it has a free slot, its `processed` count is flat: `ghost_worker` (case b).
- `ghost-no-consumer`: the worker reaches Redis through a relay that then leaves its BRPOP
  connection half-open (doorman/simulate/partition.py): Redis drops the consumer, the worker never
  hears of it and heartbeats on: `ghost_worker` (case a). On RabbitMQ (where the task consumer and
  the pidbox share one connection, so a half-open one is a dead worker) the worker's task consumer
  is cancelled at the broker by the demo app's `demo_drop_task_consumer` while Celery still lists
  its queue, the state a reconnect that never re-consumed leaves: `ghost_worker` (case a), named
  by the broker.
- `kill9`: three workers; one is `kill -9`ed, then the other two: `worker_lost` and `workers_down`
  from the connection table, each a second or less after the kill (printed).

Each runs on its own redis-server (`--port`) with small thresholds (2 s), and everything is
stopped on exit (a stopped pool process is killed with its worker).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

from doorman.simulate import lost_tasks
from doorman.simulate.enqueue import Task, publish
from doorman.simulate.lost_tasks import Stage, wait
from doorman.simulate.partition import Partition
from doorman.simulate.procs import children_of
from doorman.simulate.rabbit import RabbitVhost
from doorman.simulate.workers import WorkerPool

SCENARIOS = ("unconsumed", "cancelled-consumer", "ghost", "ghost-no-consumer", "kill9")
CONFIG = "thresholds:\n  unconsumed_after_seconds: 2\n  ghost_after_seconds: 2\n"


def _expect(s: Stage, n: int, queue: str, why: str, alert_type: str) -> bool:
    """Send `n` tasks to `queue`, start the pipeline, and wait for its `alert_type` alert."""
    publish(s.url, [Task("demo.add", (2, 3), queue)] * n)
    s.say(f"{n} tasks sent to `{queue}`{why}")
    watch = s.pipeline(CONFIG)
    return bool(wait(lambda: watch.first(alert_type)))


def _unconsumed(s: Stage) -> bool:
    s.workers(1)
    return _expect(s, 3, "reports", "; the worker consumes only `celery`", "queue_unconsumed")


def _cancelled(s: Stage) -> bool:
    s.workers(1)
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "doorman.demoapp", "control", "cancel_consumer",
                           "celery"], env={**s.env, "REDIS_URL": s.url}, capture_output=True, timeout=60)
    s.say(f"celery control cancel_consumer celery: exit {done.returncode}")
    return _expect(s, 3, "celery", ", which nobody consumes any more", "queue_unconsumed")


def _ghost(s: Stage) -> bool:
    pool = s.workers(1)
    for pid in children_of(pool.workers[0].proc.pid):
        os.kill(pid, signal.SIGSTOP)
    s.say(f"the pool process of {pool.workers[0].name} is stopped; its main process heartbeats on")
    return _expect(s, 8, "celery", "", "ghost_worker")


def _ghost_no_consumer(s: Stage) -> bool:
    if isinstance(s.redis, RabbitVhost):
        return _ghost_no_consumer_rabbitmq(s)
    relay = Partition("127.0.0.1", s.redis.port)
    pool = WorkerPool(relay.url(), s.dir, s.env).add(1)
    s.pools.append(pool)
    try:
        pool.wait_ready()
        s.say(f"{pool.workers[0].name} ready, connected through a relay")
        cut = wait(relay.cut_consumers, 10)  # once its consumer has sent BRPOP
        s.say(f"{cut or 0} consumer connection(s) left half-open: Redis drops it, the worker waits for its "
              "BRPOP reply and heartbeats on")
        watch = s.pipeline(CONFIG)
        return bool(wait(lambda: watch.first("ghost_worker")))
    finally:
        if s.watch:
            s.watch.stop()  # before the relay goes: its end is not the alert this scenario is about
        pool.stop()
        relay.close()


def _ghost_no_consumer_rabbitmq(s: Stage) -> bool:
    pool = s.workers(1)
    name = pool.workers[0].name
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "doorman.demoapp", "control",
                           "demo_drop_task_consumer", "-d", name], env={**s.env, "REDIS_URL": s.url},
                          capture_output=True, timeout=60)
    if done.returncode != 0 or b"cancelled " not in done.stdout:
        s.say(f"demo_drop_task_consumer did not cancel {name}'s task consumer (exit {done.returncode}): "
              f"{(done.stdout + done.stderr).decode(errors='replace').strip()[-300:]}")
        return False
    s.say(f"{name}'s task consumer cancelled at the broker, Celery told nothing; it heartbeats on and still "
          "lists `celery`")
    watch = s.pipeline(CONFIG)
    return bool(wait(lambda: watch.first("ghost_worker")))


def _kill9(s: Stage) -> bool:
    pool = s.workers(3)
    publish(s.url, [Task("demo.add", (2, 3), "nobody")] * 5)
    watch = s.pipeline("monitored_queues: [celery, nobody]\n")
    time.sleep(3)  # the collector follows their heartbeats and connections
    at = time.monotonic()
    pool.workers[0].kill9()
    s.say(f"kill -9 {pool.workers[0].name}")
    lost = wait(lambda: watch.first("worker_lost"), 30)
    if lost:
        s.say(f"worker_lost {time.monotonic() - at:.2f} s after the kill")
    at = time.monotonic()
    for w in pool.workers[1:]:
        w.kill9()
    s.say("kill -9 the other two")
    down = wait(lambda: watch.first("workers_down"), 30)
    if down:
        s.say(f"workers_down {time.monotonic() - at:.2f} s after the kills")
    return bool(lost and down)


RUN: dict[str, Callable[[Stage], bool]] = {
    "unconsumed": _unconsumed, "cancelled-consumer": _cancelled, "ghost": _ghost,
    "ghost-no-consumer": _ghost_no_consumer, "kill9": _kill9,
}


def scenario(name: str, port: int, interval: float, alerts: IO[str], talk: IO[str], broker: str = "redis") -> int:
    """Stage `name`; 0 when its alert came as expected, 1 when not."""
    return lost_tasks.scenario(name, port, interval, alerts, talk, RUN, broker)
