"""One snapshot (schema v1) of a Redis broker and the Celery workers behind it.

`Collector.snapshot()` never raises for broker trouble: a down or misbehaving broker becomes a
snapshot with `redis_connected: false` and the (redacted) reason, and the next call reconnects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from doorman import SCHEMA_VERSION
from doorman.collect.connection import connect
from doorman.collect.keys import Keys, display
from doorman.collect.queues import discover_exchanges, read_queues, read_topology
from doorman.collect.workers import active_tasks
from doorman.config import Config
from doorman.redact import Scrubber, redact_url
from doorman.timefmt import iso


class Collector:
    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time, heartbeats: Any = None,
                 discovery_interval: float = 60.0):
        self.cfg = cfg
        self.clock = clock
        self.heartbeats = heartbeats
        self.scrub = Scrubber(cfg.secrets())
        self.client, db = connect(cfg)
        self.keys = Keys(cfg.broker_transport_options, db)
        self.seq = 0
        self.discovery_interval = discovery_interval
        self._exchanges: list[str] = []
        self._discovered_at: float | None = None

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not fail a shutdown
            pass

    def snapshot(self, trigger: str = "check") -> dict[str, Any]:
        self.seq += 1
        started = time.perf_counter()
        now = self.clock()
        snap: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "kind": "snapshot",
            "ts": iso(now),
            "cluster": self.cfg.cluster,
            "broker": redact_url(self.cfg.redis_url),
            "seq": self.seq,
            "trigger": trigger,
            "redis_connected": True,
            "error": None,
        }
        try:
            snap.update(self._read(now))
        except (redis.RedisError, OSError) as e:
            snap.update(_down(self.scrub(f"{type(e).__name__}: {e}"), connected=isinstance(e, redis.ResponseError)))
        except Exception as e:  # noqa: BLE001 - odd data must never blind the monitor: report it
            snap.update(_down(self.scrub(f"doorman-collect could not read the broker's data "
                                         f"({type(e).__name__}: {e})"), connected=True))
        snap["collect_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return snap

    def _read(self, now: float) -> dict[str, Any]:
        cfg = self.cfg
        mono = time.monotonic()
        if self._discovered_at is None or mono - self._discovered_at >= self.discovery_interval:
            self._exchanges = discover_exchanges(self.client, self.keys)
            self._discovered_at = mono
        topo = read_topology(self.client, self.keys, cfg, self._exchanges)
        queues = read_queues(self.client, self.keys, list(topo["queues"]), cfg, now)
        for name, source in topo["queues"].items():
            queues[display(name)]["source"] = source
        asked = active_tasks(self.client, self.keys, cfg.inspect_timeout, now,
                             block_max=min(1.0, cfg.redis_timeout * 0.8))

        replied = asked["workers"]
        beats = self.heartbeats.workers(now) if self.heartbeats else {}
        names = sorted(set(topo["nodes"]) | set(replied) | set(beats))
        workers = []
        active: list[dict[str, Any]] = []
        for name in names:
            tasks = replied.get(name)
            beat = beats.get(name, {})
            alive = tasks is not None or bool(beat.get("alive"))
            workers.append({
                "name": display(name),
                "alive": alive,
                "responded": tasks is not None,
                "active": len(tasks) if tasks is not None else beat.get("active"),
                "last_heartbeat": beat.get("last_heartbeat"),
                "heartbeat_freq": beat.get("freq"),
            })
            active.extend(tasks or [])
        unacked_oldest = topo["unacked_oldest"]
        return {
            "pending_tasks": sum(q["pending"] for q in queues.values()),
            "queues": queues,
            "alive_workers": sum(1 for w in workers if w["alive"]),
            "workers": workers,
            "active_tasks": len(active),
            "active": active,
            "unacked": {
                "count": topo["unacked_count"],
                "oldest_delivered_at": iso(unacked_oldest) if unacked_oldest else None,
                "oldest_age_seconds": round(max(0.0, now - unacked_oldest), 3) if unacked_oldest else None,
                "visibility_timeout": cfg.broker_transport_options.visibility_timeout,
            },
            "workers_subscribed": asked["subscribed"],
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
