"""The connected Redis broker: `doorman.brokers.base.Broker` on kombu's Redis transport."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import redis

from doorman.brokers.base import (
    ActiveTasks,
    BeatState,
    BrokerHealth,
    ConnectionTable,
    Failure,
    QueueState,
    Topology,
    WorkerEventListener,
    WorkerInfo,
)
from doorman.brokers.redis import beat, client, events, health, liveness, pidbox, queues, unacked
from doorman.brokers.redis.keys import Keys
from doorman.settings import Config

DISCOVERY_INTERVAL = 60.0  # seconds a SCAN for binding sets is reused


class RedisConnection:
    def __init__(self, cfg: Config, discovery_interval: float = DISCOVERY_INTERVAL,
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.client, db = client.connect(cfg)
        self.keys = Keys.of(cfg.broker_transport_options, db)
        self.discovery_interval = discovery_interval
        self.monotonic = monotonic
        self.clock = clock
        self._unacked_names = unacked.Names()
        self._exchanges: list[str] = []
        self._discovered_at: float | None = None

    def topology(self) -> Topology:
        mono = self.monotonic()
        if self._discovered_at is None or mono - self._discovered_at >= self.discovery_interval:
            self._exchanges = queues.discover_exchanges(self.client, self.keys)
            self._discovered_at = mono
        exchanges = list(dict.fromkeys([*self.cfg.exchanges, *self._exchanges]))
        return queues.read_topology(self.client, self.keys, exchanges,
                                    self.cfg.broker_transport_options.visibility_timeout,
                                    self.clock(), self._unacked_names)

    def health(self) -> BrokerHealth:
        return health.read(self.client)

    def write_refused(self, error: Exception) -> bool:
        return health.is_oom(error)

    def beat(self, now: float) -> BeatState | None:
        b = self.cfg.beat
        prefix = b.redbeat_key_prefix if b.redbeat else None
        if not (b.canary_key or prefix):
            return None
        return beat.read(self.client, now, b.canary_key, prefix, b.grace_seconds)

    def queues(self, names: Sequence[str], now: float) -> dict[str, QueueState]:
        return queues.read_queues(self.client, self.keys, names, self.cfg.publish_time_header, now)

    def active_tasks(self, timeout: float, now: float) -> ActiveTasks:
        if not self.cfg.inspect:  # read-only mode: the Collector never asks; nothing here may publish
            raise PermissionError("inspect: false (read-only mode): no control requests")
        # each BRPOP stays well under the socket timeout (half of it, leaving room for a busy
        # machine's scheduling delay): a slow worker is not a dead broker
        return pidbox.active_tasks(self.client, self.keys, timeout, now,
                                   block_max=min(1.0, self.cfg.redis_timeout * 0.5))

    # ConnectionReading and WorkerInfoReading (doorman.brokers.base), optional capabilities
    def connections(self) -> ConnectionTable:
        return liveness.read_connections(self.client)

    def ping(self, names: Sequence[str], timeout: float) -> set[str]:
        if not self.cfg.inspect:  # read-only: a vanished connection cannot be confirmed; heartbeats decide
            return set(names)
        return liveness.ping(self.client, self.keys, names, timeout, block_max=min(1.0, self.cfg.redis_timeout * 0.5))

    def worker_info(self, timeout: float) -> dict[str, WorkerInfo]:
        if not self.cfg.inspect:  # read-only: queues, pool size and counts stay unknown
            return {}
        return liveness.worker_info(self.client, self.keys, timeout, block_max=min(1.0, self.cfg.redis_timeout * 0.5))

    def follow_worker_events(self, listener: WorkerEventListener, stop: threading.Event) -> None:
        events.follow(self.client, self.keys, listener, stop)

    def failure(self, error: Exception) -> Failure | None:
        if isinstance(error, redis.ResponseError):
            return "refused"  # it answered: an ACL without a command, OOM, LOADING...
        if isinstance(error, (redis.RedisError, OSError)):
            return "unreachable"
        return None

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not fail a shutdown
            pass
