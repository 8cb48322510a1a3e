"""One snapshot (schema v1) of a broker and the Celery workers behind it.

`Collector.snapshot()` never raises for broker trouble: a down or misbehaving broker becomes a
snapshot with `redis_connected: false` and the (redacted) reason, and the next call reconnects.
What is read comes from the `Broker` given (`doorman.brokers.base`); the assembly is the same for
every broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from doorman.bounds import bound_snapshot, cap_queues
from doorman.brokers.base import (
    ActiveTask,
    ActiveTasks,
    BeatReading,
    Broker,
    HealthReading,
    collect_say,
    display,
)
from doorman.collect.beat import BeatRedis
from doorman.collect.heartbeats import HeartbeatTracker
from doorman.collect.liveness import ConnectionWatch, WorkerDirectory, annotate
from doorman.config.settings import Config
from doorman.contract.snapshot import Snapshot
from doorman.contract.version import SCHEMA_VERSION
from doorman.redact import Scrubber, redact_url
from doorman.tasks.counts import TaskCounts
from doorman.timefmt import iso


class Collector:
    def __init__(self, cfg: Config, broker: Broker, clock: Callable[[], float] = time.time,
                 heartbeats: HeartbeatTracker | None = None, watch: ConnectionWatch | None = None,
                 directory: WorkerDirectory | None = None, tasks: TaskCounts | None = None):
        self.cfg = cfg
        self.broker = broker
        self.clock = clock
        self.heartbeats = heartbeats
        self.watch, self.directory = watch, directory  # liveness from the connection table (optional)
        self.tasks = tasks  # None: --once or task_events: false (the snapshot's `tasks` is null)
        self.scrub = Scrubber(cfg.secrets())
        self.seq = 0
        # beat.redis_url: beat's keys from a Redis of their own (any broker), else from the broker
        self.beat_redis = BeatRedis(cfg, collect_say(cfg.cluster)) if cfg.beat.redis_url else None

    def close(self) -> None:
        if self.beat_redis is not None:
            self.beat_redis.close()
        self.broker.close()

    def snapshot(self, trigger: str = "check") -> Snapshot:
        self.seq += 1
        started = time.perf_counter()
        now = self.clock()
        snap: dict[str, Any] = {  # assembled from parts, bounded, then a Snapshot
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
            data = self._read(now)
            if self.watch is not None or self.directory is not None:
                beats = self.heartbeats.workers(now) if self.heartbeats else {}
                annotate(data, beats, self.watch, self.directory, now)
            snap.update(data)
        except Exception as e:  # noqa: BLE001 - odd data must never blind the monitor: report it
            failure = self.broker.failure(e)
            if failure is None:
                snap.update(_down(self.scrub(f"doorman-collect could not read the broker's data "
                                             f"({type(e).__name__}: {e})"), connected=True))
            else:
                snap.update(_down(self.scrub(f"{type(e).__name__}: {e}"), connected=failure == "refused"))
        # counted by the reader thread; a copy under its short lock. Cumulative: there even when
        # the broker is down now (docs/tasks.md)
        snap["tasks"] = self.tasks.section(now) if self.tasks is not None else None
        snap = bound_snapshot(snap)  # whatever the broker holds, the line stays small and flat (doorman.bounds)
        snap["collect_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return cast(Snapshot, snap)

    def _optional(self, read: Callable[[], Any]) -> Any:
        """An optional reading, or None when the broker refuses it (an ACL without INFO): a missing
        extra must not blind the core checks. A broker that does not answer still fails the snapshot."""
        try:
            return read()
        except Exception as e:
            if self.broker.failure(e) != "refused":
                raise
            return None

    def _beat(self, now: float) -> dict[str, Any] | None:
        """The `beat` section: from beat.redis_url when set (its failure is never the broker's), else
        from the broker when it can read beat's keys (a Redis broker)."""
        if self.beat_redis is not None:
            got = self.beat_redis.read(now)
            return dict(got) if got is not None else None
        broker = self.broker
        beat = self._optional(lambda: broker.beat(now)) if isinstance(broker, BeatReading) else None
        return {**beat, "source": "broker", "redis": None} if beat is not None else None

    def _read(self, now: float) -> dict[str, Any]:
        cfg = self.cfg
        topo = self.broker.topology()
        sources: dict[str, str] = {q: "config" for q in cfg.monitored_queues}
        for q, how in topo.queues.items():
            sources.setdefault(q, how)
        sources, unread = cap_queues(sources)  # any client can bind queues: read a bounded number
        states = self.broker.queues(list(sources), now)
        queues = {display(q): {**states[q], "source": how} for q, how in sources.items()}
        broker = self.broker
        health = self._optional(broker.health) if isinstance(broker, HealthReading) else None
        beat = self._beat(now)
        asked: ActiveTasks | None = None
        inspect_error = None
        try:  # inspect: false (read-only): never ask; liveness from heartbeats (daemon) or unknown
            asked = self.broker.active_tasks(cfg.inspect_timeout, now) if cfg.inspect else None
        except Exception as e:
            # a full broker (OOM) refuses the request's write but still answers reads: what was
            # read stands, liveness comes from heartbeats (daemon) or is unknown (null)
            if not (isinstance(self.broker, HealthReading) and self.broker.write_refused(e)):
                raise
            inspect_error = self.scrub(f"{type(e).__name__}: {e}")[:300]

        replied = asked.replies if asked else {}
        beats = self.heartbeats.workers(now) if self.heartbeats else {}
        names = sorted(set(topo.workers) | set(replied) | set(beats))
        workers = []
        active: list[ActiveTask] = []
        for name in names:
            tasks = replied.get(name)
            hb = beats.get(name)
            alive: bool | None = tasks is not None or bool(hb and hb["alive"])
            if asked is None and not hb:
                alive = None  # not asked (the broker refused the request's write), no heartbeat seen
            workers.append({
                "name": display(name),
                "alive": alive,
                "responded": tasks is not None,
                "active": len(tasks) if tasks is not None else (hb["active"] if hb else None),
                "last_heartbeat": hb["last_heartbeat"] if hb else None,
                "heartbeat_freq": hb["freq"] if hb else None,
            })
            active.extend(tasks or [])
        unacked = topo.unacked
        unknown = asked is None and any(w["alive"] is None for w in workers)
        return {
            "pending_tasks": sum(q["pending"] for q in queues.values()),
            "queues": queues,
            "alive_workers": None if unknown else sum(1 for w in workers if w["alive"]),
            "workers": workers,
            "active_tasks": len(active),
            "active": active,
            "unacked": {
                "count": unacked.count,
                "oldest_delivered_at": iso(unacked.oldest) if unacked.oldest else None,
                "oldest_age_seconds": round(max(0.0, now - unacked.oldest), 3) if unacked.oldest else None,
                "visibility_timeout": unacked.visibility_timeout,
                "overdue": unacked.overdue,
                "oldest": [{"task_id": m["task_id"], "task_name": m["task_name"],
                            "delivered_at": iso(m["delivered_at"]),
                            "age_seconds": round(max(0.0, now - m["delivered_at"]), 3)}
                           for m in unacked.messages],
            },
            "workers_subscribed": asked.asked if asked else None,
            "inspect_error": inspect_error,
            "broker_health": dict(health) if health is not None else None,
            "beat": beat,
            "discovery": dict(topo.discovery) if topo.discovery is not None else None,
            "truncated": unread,
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
        "inspect_error": None,
        "broker_health": None,
        "beat": None,
        "discovery": None,
        "connections": None,
    }
