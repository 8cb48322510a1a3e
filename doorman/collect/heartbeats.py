"""Follow workers' heartbeats (daemon mode) so a dead worker is noticed in seconds, not at the next tick.

Workers publish `worker-heartbeat` every `freq` seconds (2 s by default, even without `-E`); the
broker (`Broker.follow_worker_events`) hands them over as they pass. The liveness rule is
Celery's own (`celery.events.state.Worker.alive`): alive while
`now < last heartbeat received + 2 × freq`. A prefork worker keeps heartbeating while its pool runs
tasks; a *solo* pool does not while it runs a task, so Celery (and Doorman) will call a solo
worker busy with a task longer than 2 × freq dead — run solo workers with a longer
`--heartbeat-interval` or use prefork.

The tracker sets `wake` when a worker appears, says goodbye (`worker-offline`) or becomes overdue,
so the collector writes a snapshot at once instead of waiting for the next interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

from doorman.brokers.base import Broker, WorkerEvent
from doorman.timefmt import iso

if TYPE_CHECKING:
    from doorman.tasks.counts import TaskCounts

EXPIRE_FACTOR = 2.0  # Celery's HEARTBEAT_EXPIRE_WINDOW of 200 %
MAX_WORKERS = 10_000  # bound memory whatever arrives on the channel
FORGET_AFTER = 600.0  # a worker silent this long is dropped (rolling deploys bring new names)
RETRY_AFTER = 1.0  # seconds between subscription attempts while the broker is down, at most
RETRY_FIRST = 0.1  # the first retry after a break: events are lost until the subscription is back


class _Seen(TypedDict):
    last: float
    freq: float
    offline: bool
    active: int | None
    processed: int | None


class Beat(TypedDict):
    """What the heartbeats say of one worker, for the snapshot."""

    alive: bool
    last_heartbeat: str
    freq: float
    active: int | None
    processed: int | None  # tasks it has run since it started (the heartbeat's `processed`)
    offline: bool  # it said goodbye (`worker-offline`): a clean departure
    last: float  # epoch seconds the last heartbeat was received


class HeartbeatTracker:
    """Liveness of every worker heard of; `Broker.follow_worker_events` reports to it (in a thread).

    With `tasks` (a `doorman.tasks.counts.TaskCounts`), the same subscription also carries the task
    events, which the broker hands to `tasks` directly: one subscription for both."""

    def __init__(self, broker: Broker, wake: threading.Event, clock: Callable[[], float] = time.time,
                 tasks: TaskCounts | None = None):
        self.broker, self.wake, self.clock = broker, wake, clock
        self.tasks = tasks
        self._lock = threading.Lock()
        self._workers: dict[str, _Seen] = {}
        self._reported_dead: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="doorman-heartbeats", daemon=True)
        self.connected = False

    def start(self) -> HeartbeatTracker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        delay = RETRY_FIRST
        while not self._stop.is_set():
            try:
                self.broker.follow_worker_events(self, self._stop)
            except Exception:  # noqa: BLE001 - broker down: the snapshot reports it; retry quietly
                if self.connected:
                    delay = RETRY_FIRST  # it was up: try again soon, each second lost is lost events
                self.connected = False
                with self._lock:
                    self._workers.clear()  # stale after a gap; replies rebuild the picture
            if self.tasks is not None and not self._stop.is_set():
                self.tasks.unsubscribed()
            self._stop.wait(delay)  # at once when stopping
            delay = min(RETRY_AFTER, delay * 2)

    # WorkerEventListener, called from the broker's subscription
    def subscribed(self) -> None:
        self.connected = True

    def received(self, event: WorkerEvent) -> None:
        self.observe(event, self.clock())

    def observe(self, event: WorkerEvent, received: float) -> None:
        """Record one worker event; wake the collector when the picture changes."""
        name, kind = event["hostname"], event.get("type", "")
        if self.tasks is not None and kind in ("worker-heartbeat", "worker-online"):  # online: processed 0
            self.tasks.heartbeat(name, event.get("processed"))
        beat = event.get("freq")
        freq = float(beat) if isinstance(beat, (int, float)) and not isinstance(beat, bool) and beat > 0 else 2.0
        with self._lock:
            known = name in self._workers and not self._workers[name]["offline"]
            if kind == "worker-offline":
                if name in self._workers:
                    self._workers[name]["offline"] = True
                self.wake.set()
                return
            if name not in self._workers and len(self._workers) >= MAX_WORKERS:
                self._forget(received)
                if len(self._workers) >= MAX_WORKERS:  # all recent: drop the stalest tenth at once, so
                    # a flood of spoofed names costs O(1) per event, not a scan of 10,000 each
                    by_age = sorted(self._workers, key=lambda n: self._workers[n]["last"])
                    for stalest in by_age[: max(1, MAX_WORKERS // 10)]:
                        del self._workers[stalest]
                        self._reported_dead.discard(stalest)
            active, processed = event.get("active"), event.get("processed")
            self._workers[name] = {"last": received, "freq": freq, "offline": False,
                                   "active": active if isinstance(active, int) else None,
                                   "processed": processed if isinstance(processed, int) else None}
            self._reported_dead.discard(name)
        if not known:
            self.wake.set()

    def _forget(self, now: float) -> None:
        """Drop workers gone for FORGET_AFTER (caller holds the lock); the snapshot still lists a
        dead worker whose pidbox binding remains, from the binding."""
        gone = [n for n, w in self._workers.items() if now - w["last"] > max(FORGET_AFTER, 10 * w["freq"])]
        for n in gone:
            del self._workers[n]
            self._reported_dead.discard(n)

    def next_expiry(self) -> float | None:
        """Epoch time at which the next live worker becomes overdue."""
        with self._lock:
            times = [w["last"] + EXPIRE_FACTOR * w["freq"] for n, w in self._workers.items()
                     if not w["offline"] and n not in self._reported_dead]
        return min(times) if times else None

    def pop_overdue(self, now: float) -> list[str]:
        """Workers that went overdue since last asked (each reported once until it beats again)."""
        with self._lock:
            due = [n for n, w in self._workers.items()
                   if not w["offline"] and n not in self._reported_dead
                   and now >= w["last"] + EXPIRE_FACTOR * w["freq"]]
            self._reported_dead.update(due)
        return due

    def workers(self, now: float) -> dict[str, Beat]:
        with self._lock:
            self._forget(now)
            return {
                n: {"alive": not w["offline"] and now < w["last"] + EXPIRE_FACTOR * w["freq"],
                    "last_heartbeat": iso(w["last"]), "freq": w["freq"], "active": w["active"],
                    "processed": w.get("processed"), "offline": w["offline"], "last": w["last"]}
                for n, w in self._workers.items()
            }
