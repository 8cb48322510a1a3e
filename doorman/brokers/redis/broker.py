"""The connected Redis broker: `doorman.brokers.base.Broker` on kombu's Redis transport.

Queues are found through kombu's binding sets, one per exchange (docs/discovery.md). Read every
snapshot: the configured exchanges, the sets named after configured queues and after the queues
the workers consume (a queue's default exchange is its own name), the exchanges the workers say
their queues are bound to, and whatever the incremental SCAN (`doorman.brokers.redis.discovery`)
has found. The workers are asked at the start of the first snapshot (`topology`: every `--once`
run), and liveness's own `worker_info` call later in that snapshot gets those answers rather than
asking again; after that, liveness's asking (when the set of workers changes, and about every
check) keeps them current, so a daemon sees a newly consumed queue from the next snapshot on.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence

import redis

from doorman.bounds import MAX_QUEUES
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
    collect_say,
)
from doorman.brokers.redis import beat, client, health, liveness, pidbox, queues, unacked
from doorman.brokers.redis.discovery import MAX_DISCOVERED_NAME, Scanner, State
from doorman.brokers.redis.discovery_cache import Cache, default_path, identity
from doorman.brokers.redis.keys import Keys
from doorman.config.settings import Config
from doorman.tasks import reader_redis

SAVE_EVERY = 300.0  # seconds: a daemon killed with -9 loses at most this much SCAN progress

TRANSIENT = ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")  # replies that pass by themselves


class RedisConnection:
    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.perf_counter, say: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.client, db = client.connect(cfg)
        self.keys = Keys.of(cfg.broker_transport_options, db)
        self.clock, self.timer = clock, timer
        self.say = say or collect_say(cfg.cluster)
        self._unacked_names = unacked.Names()
        self._scanner: Scanner | None = None
        self._cache: Cache | None = None
        self._saved_at = 0.0
        self._worker_exchanges: list[str] = []  # the workers' queues and their exchanges, newest first
        self._answers: dict[str, WorkerInfo] | None = None  # the workers' answers of this snapshot
        self._asked = False  # the workers said which queues they consume, at least once

    def _discovery(self) -> Scanner:
        if self._scanner is None:
            cfg = self.cfg
            ident = identity(cfg.broker_url, self.keys.db, self.keys.prefix,
                             cfg.broker_transport_options.master_name or "")
            path = default_path(ident) if cfg.discovery_cache is None else cfg.discovery_cache
            self._cache = Cache(path, ident, cfg.discovery_cache_ttl, self.say)
            self._saved_at = self.clock()
            state, self._worker_exchanges = self._cache.load(self._saved_at)
            self._scanner = Scanner(self.client, self.keys, cfg.discovery_interval, cfg.discovery_budget_ms,
                                    cfg.discovery_max_ms_per_minute, cfg.check_interval, self.clock, self.timer,
                                    self.say, state)
        return self._scanner

    def topology(self) -> Topology:
        scanner = self._discovery()
        self._answers = None
        if self.cfg.inspect and not self._asked:  # later, liveness's own asking keeps them current
            self._answers = self._ask_workers()
        try:
            scanner.step()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            raise  # the broker is unreachable: the snapshot says so
        except Exception as e:  # noqa: BLE001 - discovery's progress must never cost a snapshot
            self.say(f"queue discovery: its saved progress could not be used ({type(e).__name__}); "
                     f"starting a fresh pass")
            scanner.state = State()
        cfg = self.cfg
        wanted = [*cfg.exchanges, *cfg.monitored_queues]
        exchanges = list(dict.fromkeys([*wanted, *self._worker_exchanges, *scanner.exchanges()]))
        topo = queues.read_topology(self.client, self.keys, exchanges[:max(MAX_QUEUES, len(wanted))],
                                    cfg.broker_transport_options.visibility_timeout,
                                    self.clock(), self._unacked_names)
        if self.clock() - self._saved_at >= SAVE_EVERY:  # a daemon's; `--once` saves at close
            self._save()
        return dataclasses.replace(topo, discovery=scanner.report())

    def _ask_workers(self) -> dict[str, WorkerInfo] | None:
        """The workers' queues, for discovery now and for liveness later in this snapshot."""
        try:
            return self._worker_info(self.cfg.inspect_timeout)
        except Exception as e:  # noqa: BLE001 - odd answers or a full broker: discovery does without
            if self.failure(e) == "unreachable":
                raise
            return None

    def _save(self) -> None:
        if self._cache is not None and self._scanner is not None:
            self._saved_at = self.clock()
            self._cache.save(self._scanner.state, self._worker_exchanges, self._saved_at)

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
        try:
            return liveness.read_connections(self.client)
        except redis.ResponseError as e:
            # a Redis loading its data set or busy with a script answers every command so, for now:
            # unreadable this once, not a refusal (which turns the connection table off for the run)
            if str(e).startswith(TRANSIENT):
                raise redis.ConnectionError(f"CLIENT LIST: {str(e)[:80]}") from e
            raise

    def ping(self, names: Sequence[str], timeout: float) -> set[str]:
        if not self.cfg.inspect:  # read-only: a vanished connection cannot be confirmed; heartbeats decide
            return set(names)
        return liveness.ping(self.client, self.keys, names, timeout, block_max=min(1.0, self.cfg.redis_timeout * 0.5))

    def worker_info(self, timeout: float) -> dict[str, WorkerInfo]:
        if not self.cfg.inspect:  # read-only: queues, pool size and counts stay unknown
            return {}
        answers, self._answers = self._answers, None
        return answers if answers is not None else self._worker_info(timeout)

    def _worker_info(self, timeout: float) -> dict[str, WorkerInfo]:
        answers = liveness.worker_info(self.client, self.keys, timeout,
                                       block_max=min(1.0, self.cfg.redis_timeout * 0.5))
        self._asked = True
        said = [x for info in answers.values() for x in (*(info.queues or ()), *info.exchanges)
                if isinstance(x, str) and len(x) <= MAX_DISCOVERED_NAME]  # any client can answer: a giant name is dropped
        self._worker_exchanges = list(dict.fromkeys([*said, *self._worker_exchanges]))[:MAX_QUEUES]
        return answers

    def follow_worker_events(self, listener: WorkerEventListener, stop: threading.Event) -> None:
        reader_redis.follow(self.client, self.keys, listener, stop, getattr(listener, "tasks", None))

    def failure(self, error: Exception) -> Failure | None:
        if isinstance(error, redis.ResponseError):
            return "refused"  # it answered: an ACL without a command, OOM, LOADING...
        if isinstance(error, (redis.RedisError, OSError)):
            return "unreachable"
        return None

    def close(self) -> None:
        self._save()
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not fail a shutdown
            pass
