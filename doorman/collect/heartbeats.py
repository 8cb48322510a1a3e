"""Follow workers' heartbeats (daemon mode) so a dead worker is noticed in seconds, not at the next tick.

Workers publish `worker-heartbeat` every `freq` seconds (2 s by default, even without `-E`) on the
`celeryev` fanout channel; nothing is stored, so only a live subscriber sees them. The liveness
rule is Celery's own (`celery.events.state.Worker.alive`): alive while
`now < last heartbeat received + 2 × freq`. A prefork worker keeps heartbeating while its pool runs
tasks; a *solo* pool does not while it runs a task, so Celery (and Doorman) will call a solo
worker busy with a task longer than 2 × freq dead — run solo workers with a longer
`--heartbeat-interval` or use prefork.

The tracker sets `wake` when a worker appears, says goodbye (`worker-offline`) or becomes overdue,
so the collector writes a snapshot at once instead of waiting for the next interval.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from doorman.collect.keys import Keys
from doorman.timefmt import iso

EXPIRE_FACTOR = 2.0  # Celery's HEARTBEAT_EXPIRE_WINDOW of 200 %
MAX_WORKERS = 10_000  # bound memory whatever arrives on the channel
FORGET_AFTER = 600.0  # a worker silent this long is dropped (rolling deploys bring new names)


def parse_event(raw: bytes) -> dict[str, Any] | None:
    """The event dict inside a kombu envelope, or None for anything unreadable."""
    try:
        msg = orjson.loads(raw)
        body = msg["body"]
        if (msg.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        event = orjson.loads(body)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return event if isinstance(event, dict) and isinstance(event.get("hostname"), str) else None


class HeartbeatTracker:
    def __init__(self, client: Any, keys: Keys, wake: threading.Event,
                 clock: Callable[[], float] = time.time):
        self.client, self.keys, self.wake, self.clock = client, keys, wake, clock
        self._lock = threading.Lock()
        self._workers: dict[str, dict[str, Any]] = {}
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
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(self.keys.worker_events_pattern)
                self.connected = True
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg and msg.get("type") == "pmessage":
                        event = parse_event(msg["data"])
                        if event:
                            self.observe(event, self.clock())
            except Exception:  # noqa: BLE001 - broker down: the snapshot reports it; retry quietly
                self.connected = False
                with self._lock:
                    self._workers.clear()  # stale after a gap; replies rebuild the picture
                self._stop.wait(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass

    def observe(self, event: dict[str, Any], received: float) -> None:
        """Record one worker event; wake the collector when the picture changes."""
        name, kind = event["hostname"], event.get("type", "")
        freq = event.get("freq")
        freq = float(freq) if isinstance(freq, (int, float)) and not isinstance(freq, bool) and freq > 0 else 2.0
        with self._lock:
            known = name in self._workers and not self._workers[name]["offline"]
            if kind == "worker-offline":
                if name in self._workers:
                    self._workers[name]["offline"] = True
                self.wake.set()
                return
            if name not in self._workers and len(self._workers) >= MAX_WORKERS:
                self._forget(received)
                if len(self._workers) >= MAX_WORKERS:  # all recent: drop the stalest
                    stalest = min(self._workers, key=lambda n: self._workers[n]["last"])
                    del self._workers[stalest]
                    self._reported_dead.discard(stalest)
            active = event.get("active")
            self._workers[name] = {"last": received, "freq": freq, "offline": False,
                                   "active": active if isinstance(active, int) else None}
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

    def workers(self, now: float) -> dict[str, dict[str, Any]]:
        with self._lock:
            self._forget(now)
            return {
                n: {"alive": not w["offline"] and now < w["last"] + EXPIRE_FACTOR * w["freq"],
                    "last_heartbeat": iso(w["last"]), "freq": w["freq"], "active": w["active"]}
                for n, w in self._workers.items()
            }
