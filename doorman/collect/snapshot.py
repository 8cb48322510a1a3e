"""One snapshot (schema v1) of a broker and the Celery workers behind it.

`Collector.snapshot()` never raises for broker trouble: a down or misbehaving broker becomes a
snapshot with `redis_connected: false` and the (redacted) reason, and the next call reconnects.
What is read comes from the `Broker` given (`doorman.brokers.base`); the assembly is the same for
every broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from doorman import SCHEMA_VERSION
from doorman.brokers.base import ActiveTask, Broker, display
from doorman.collect.heartbeats import HeartbeatTracker
from doorman.redact import Scrubber, redact_url
from doorman.settings import Config
from doorman.timefmt import iso

Snapshot = dict[str, Any]  # an NDJSON record, schema v1 (README: "Snapshot")


class Collector:
    def __init__(self, cfg: Config, broker: Broker, clock: Callable[[], float] = time.time,
                 heartbeats: HeartbeatTracker | None = None):
        self.cfg = cfg
        self.broker = broker
        self.clock = clock
        self.heartbeats = heartbeats
        self.scrub = Scrubber(cfg.secrets())
        self.seq = 0

    def close(self) -> None:
        self.broker.close()

    def snapshot(self, trigger: str = "check") -> Snapshot:
        self.seq += 1
        started = time.perf_counter()
        now = self.clock()
        snap: Snapshot = {
            "v": SCHEMA_VERSION,
            "kind": "snapshot",
            "ts": iso(now),
            "cluster": self.cfg.cluster,
            "broker": redact_url(self.cfg.broker_url),
            "seq": self.seq,
            "trigger": trigger,
            "redis_connected": True,
            "error": None,
        }
        try:
            snap.update(self._read(now))
        except Exception as e:  # noqa: BLE001 - odd data must never blind the monitor: report it
            failure = self.broker.failure(e)
            if failure is None:
                snap.update(_down(self.scrub(f"doorman-collect could not read the broker's data "
                                             f"({type(e).__name__}: {e})"), connected=True))
            else:
                snap.update(_down(self.scrub(f"{type(e).__name__}: {e}"), connected=failure == "refused"))
        snap["collect_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return snap

    def _read(self, now: float) -> dict[str, Any]:
        cfg = self.cfg
        topo = self.broker.topology()
        sources: dict[str, str] = {q: "config" for q in cfg.monitored_queues}
        for q, how in topo.queues.items():
            sources.setdefault(q, how)
        states = self.broker.queues(list(sources), now)
        queues = {display(q): {**states[q], "source": how} for q, how in sources.items()}
        asked = self.broker.active_tasks(cfg.inspect_timeout, now)

        replied = asked.replies
        beats = self.heartbeats.workers(now) if self.heartbeats else {}
        names = sorted(set(topo.workers) | set(replied) | set(beats))
        workers = []
        active: list[ActiveTask] = []
        for name in names:
            tasks = replied.get(name)
            beat = beats.get(name)
            alive = tasks is not None or bool(beat and beat["alive"])
            workers.append({
                "name": display(name),
                "alive": alive,
                "responded": tasks is not None,
                "active": len(tasks) if tasks is not None else (beat["active"] if beat else None),
                "last_heartbeat": beat["last_heartbeat"] if beat else None,
                "heartbeat_freq": beat["freq"] if beat else None,
            })
            active.extend(tasks or [])
        unacked = topo.unacked
        return {
            "pending_tasks": sum(q["pending"] for q in queues.values()),
            "queues": queues,
            "alive_workers": sum(1 for w in workers if w["alive"]),
            "workers": workers,
            "active_tasks": len(active),
            "active": active,
            "unacked": {
                "count": unacked.count,
                "oldest_delivered_at": iso(unacked.oldest) if unacked.oldest else None,
                "oldest_age_seconds": round(max(0.0, now - unacked.oldest), 3) if unacked.oldest else None,
                "visibility_timeout": unacked.visibility_timeout,
            },
            "workers_subscribed": asked.asked,
        }


def _down(reason: str, connected: bool = False) -> dict[str, Any]:
    return {
        "redis_connected": connected,
        "error": reason,
        "pending_tasks": None,
        "queues": {},
        "alive_workers": None,
        "workers": [],
        "active_tasks": None,
        "active": [],
        "unacked": None,
        "workers_subscribed": None,
    }
