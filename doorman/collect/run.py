"""`doorman-collect` as one library call: connect to the configured broker, take snapshots on
schedule (following worker heartbeats between ticks unless `once`), hand each to `emit`, tear down."""

from __future__ import annotations

import threading
from collections.abc import Callable

from doorman import brokers
from doorman.collect import schedule
from doorman.collect.heartbeats import HeartbeatTracker
from doorman.collect.liveness import ConnectionWatch, WorkerDirectory
from doorman.collect.schedule import SYSTEM_CLOCK, Clock, Wait, wait_event
from doorman.collect.snapshot import Collector
from doorman.config.settings import Config
from doorman.contract.snapshot import Snapshot
from doorman.ndjson import warn
from doorman.tasks.counts import TaskCounts


def broker_kind(url: str) -> str:
    """"rabbitmq" or "redis", for `tasks.reader.broker`."""
    return "rabbitmq" if url.split(":", 1)[0].lower() in ("amqp", "amqps", "pyamqp") else "redis"


def run(cfg: Config, emit: Callable[[Snapshot, int], None], *, once: bool = False, count: int | None = None,
            stopping: threading.Event | None = None, wake: threading.Event | None = None,
            clock: Clock = SYSTEM_CLOCK, wait: Wait = wait_event) -> int:
    """Snapshots of `cfg.broker_url`'s broker until `stopping` is set, `count` were taken, or one if
    `once`; `wake` set from elsewhere (a signal handler) ends a wait early. Returns how many."""
    stopping = stopping if stopping is not None else threading.Event()
    wake = wake if wake is not None else threading.Event()
    broker = brokers.connect(cfg)
    tasks = None if once or not cfg.task_events else TaskCounts.of(cfg, broker_kind(cfg.broker_url), clock.wall)
    if tasks is not None:
        tasks.say = lambda message: warn("doorman-collect", message)
    tracker = None if once else HeartbeatTracker(broker, wake, clock.wall, tasks=tasks).start()

    def believed_alive() -> list[str]:
        """Workers to ping when a consumer connection vanishes: alive by heartbeat, or silent but
        holding their connections."""
        beats = tracker.workers(clock.wall()) if tracker else {}
        return sorted(n for n, b in beats.items()
                      if b["alive"] or (not b["offline"] and watch.holds(b["last"])))

    watch = ConnectionWatch(broker, cfg.liveness_confirm_seconds, believed_alive,
                            lambda message: warn("doorman-collect", message), clock.wall,
                            departed=lambda: [n for n, b in (tracker.workers(clock.wall()) if tracker else {}).items()
                                              if b["offline"]])
    directory = WorkerDirectory(broker, cfg.inspect_timeout, max_age=0.0 if once else cfg.check_interval * 0.9,
                                clock=clock.wall)
    collector = Collector(cfg, broker, clock=clock.wall, heartbeats=tracker, watch=watch, directory=directory,
                          tasks=tasks)
    try:
        return schedule.run(collector.snapshot, emit, interval=cfg.check_interval, count=1 if once else count,
                   trigger="once" if once else "interval", wake=wake, stopping=stopping,
                   heartbeats=tracker, clock=clock, wait=wait,
                   liveness=None if once else watch, poll_every=cfg.liveness_poll_seconds)
    finally:
        if tracker:
            tracker.stop()
        collector.close()
