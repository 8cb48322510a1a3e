"""The connected RabbitMQ broker: `doorman.brokers.base.Broker` (and `HealthReading`).

Per snapshot: one call to the management API (`/api/queues/<vhost>`, only the columns read) for
every queue's ready and unacked counts, consumers and head timestamp; `/api/nodes` and
`/api/overview` for the server's health; one `active` broadcast over AMQP. Without the management
API, depth comes from AMQP passive declares of the known queues (ready messages only), and each
queue says so (`depth_source`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypedDict

import amqp

from doorman.brokers.base import (
    ActiveTasks,
    BrokerHealth,
    Failure,
    MessageHead,
    QueueState,
    Topology,
    Unacked,
    WorkerEventListener,
    collect_say,
)
from doorman.brokers.rabbitmq import urls, wire
from doorman.brokers.rabbitmq.management import Management, ManagementError, QueueRow
from doorman.config.settings import Config
from doorman.timefmt import iso

MANAGEMENT = "management_api"
PASSIVE = "amqp_passive"
PIDBOX_SUFFIX = ".celery.pidbox"
INTERNAL_PREFIXES = ("doorman.", "celeryev.", "amq.")
INTERNAL_SUFFIXES = (PIDBOX_SUFFIX, ".reply.celery.pidbox")
MAX_WATCHED = 10_000


class RabbitQueueState(QueueState, total=False):
    """A queue as RabbitMQ shows it: the shared fields, plus what only it can tell."""

    consumers: int | None  # consumers RabbitMQ counts on the queue (live channels)
    unacked: int | None  # delivered, not acknowledged (null from AMQP: passive declares cannot tell)
    depth_source: str  # "management_api" or "amqp_passive"
    exists: bool  # false: the queue is not declared on the broker (a configured name, 0 pending)


def internal(name: str) -> bool:
    """Queues that are Celery's or Doorman's plumbing, not task queues."""
    return name.startswith(INTERNAL_PREFIXES) or name.endswith(INTERNAL_SUFFIXES)


class _Held(TypedDict):
    acked: int | None
    redelivered: int | None
    unacked: int
    since: float


class HeldUnacked:
    """A lower bound on how long a queue's unacked messages have been held, across snapshots.

    RabbitMQ shows no delivery time. But while a queue's acknowledgement and redelivery counters do
    not move and its unacked count does not drop, none of the messages unacked at the start has
    left: the oldest has been held at least since then. Any movement restarts the watch."""

    def __init__(self) -> None:
        self._seen: dict[str, _Held] = {}

    def update(self, rows: Sequence[QueueRow], now: float) -> float | None:
        """Record this listing; return the earliest time a still-unacked message was already held."""
        seen: dict[str, _Held] = {}
        for r in rows:
            if not r.unacked or len(seen) >= MAX_WATCHED:
                continue
            prev = self._seen.get(r.name)
            same = (prev is not None and r.acked is not None and prev["acked"] == r.acked
                    and prev["redelivered"] == r.redelivered and r.unacked >= prev["unacked"])
            seen[r.name] = {"acked": r.acked, "redelivered": r.redelivered,
                            "unacked": min(r.unacked, prev["unacked"]) if same and prev else r.unacked,
                            "since": prev["since"] if same and prev else now}
        self._seen = seen
        held = [h["since"] for h in seen.values() if h["since"] < now]
        return min(held) if held else None


def _head(row: QueueRow, now: float) -> MessageHead:
    ts = row.head_timestamp
    return {"priority": 0, "task_id": None, "task_name": None,
            "published_at": iso(ts) if ts is not None else None,
            "age_seconds": round(max(0.0, now - ts), 3) if ts is not None else None}


class RabbitConnection:
    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time, say: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.clock = clock
        self.say = say or collect_say(cfg.cluster)
        self._api_down = False  # said once when the management API stops answering, once when it is back
        self.target = urls.target(cfg.broker_url)
        self.ssl = urls.ssl_options(self.target, cfg.tls_ca_file, cfg.tls_insecure)
        base, auth = urls.management_base(cfg.rabbitmq_management_url, self.target)
        verify: bool | str = False if cfg.tls_insecure else (cfg.tls_ca_file or True)
        self.api = Management(base, auth, cfg.rabbitmq_timeout, verify)
        self.held = HeldUnacked()
        self._conn: amqp.Connection | None = None  # this thread's: broadcasts, passive declares
        self._events: amqp.Connection | None = None  # the heartbeat thread's
        self._rows: dict[str, QueueRow] | None = None  # this snapshot's listing; None: no management API
        self._listening: int | None = None  # workers' pidbox queues, when listed
        self.management_error: str | None = None  # why the last listing failed (no URL, no secret)

    # ------------------------------------------------------------ AMQP connection

    def _amqp(self) -> amqp.Connection:
        if self._conn is None or not self._conn.connected:
            wire.close(self._conn)
            self._conn = None
            self._conn = wire.connect(self.target, self.cfg.rabbitmq_timeout, self.ssl)
        return self._conn

    def _reach(self) -> None:
        """One round trip over AMQP, every snapshot: the broker must answer there, where Celery talks
        to it. The management API can answer while AMQP does not (its listener down, a vhost being
        deleted, a connection the server closed and the client has not read yet), and without this
        a listing with no worker in it read as a broker up with every worker gone."""
        try:
            self._amqp().channel().close()
        except Exception:
            self._drop()
            raise

    def _drop(self) -> None:
        wire.close(self._conn)
        self._conn = None

    # ------------------------------------------------------------ Broker

    def topology(self) -> Topology:
        # First a round trip over AMQP, so that a broker that accepts and does not answer (stalled)
        # fails the check within rabbitmq_timeout, as a Redis PING does: the management API's own
        # timeout, then the passive reads', each just under it, let a check wait twice as long and
        # call a 12 s stall answered (the RabbitMQ chaos soak's long pause). The round trip after
        # the listing stays: it catches a vhost being deleted between the two.
        self._reach()
        try:
            rows = self.api.queues(self.target.vhost)
        except ManagementError as e:
            self._rows, self._listening, self.management_error = None, None, str(e)
            self._amqp()  # connected; the passive reads that follow are this snapshot's round trip
            if not self._api_down:
                self._api_down = True
                self.say(f"{e}: reading monitored_queues over AMQP instead, without unacked counts, queue "
                         "discovery or broker health until it answers (docs/rabbitmq.md)")
            return Topology({}, [], Unacked(None, None, None))
        self.management_error = None
        self._reach()
        if self._api_down:
            self._api_down = False
            self.say("management API answers again")
        self._rows = {r.name: r for r in rows}
        pidboxes = [r for r in rows if r.name.endswith(PIDBOX_SUFFIX)]
        # a pidbox queue is there while its worker's connection is (auto-delete, exclusive since
        # Celery 5.5); its consumer count is the statistics database's, seconds late, so not used
        self._listening = len(pidboxes)
        workers = [r.name[: -len(PIDBOX_SUFFIX)] for r in pidboxes]
        tasks = [r for r in rows if not internal(r.name)]
        oldest = self.held.update(tasks, self.clock())
        return Topology({r.name: "listing" for r in tasks}, workers,
                        Unacked(sum(r.unacked for r in tasks), oldest, None))

    def queues(self, names: Sequence[str], now: float) -> dict[str, QueueState]:
        out: dict[str, QueueState] = {}
        if self._rows is not None:
            for q in names:
                row = self._rows.get(q)
                if row is None:
                    out[q] = _state(0, None, 0, 0, MANAGEMENT, exists=False)
                    continue
                state = _state(row.ready, _head(row, now) if row.ready else None, row.consumers, row.unacked,
                               MANAGEMENT)
                out[q] = state
            return out
        try:
            found = wire.passive_depth(self._amqp(), names)
        except Exception:
            self._drop()
            raise
        for q in names:
            got = found.get(q)
            out[q] = (_state(got[0], _blank_head() if got[0] else None, got[1], None, PASSIVE) if got
                      else _state(0, None, 0, None, PASSIVE, exists=False))
        return out

    def active_tasks(self, timeout: float, now: float) -> ActiveTasks:
        try:
            return wire.active_tasks(self._amqp(), self._listening, timeout, now)
        except Exception:
            self._drop()
            raise

    def follow_worker_events(self, listener: WorkerEventListener, stop: threading.Event) -> None:
        conn = wire.connect(self.target, self.cfg.rabbitmq_timeout, self.ssl)
        self._events = conn
        try:
            wire.follow(conn, listener, stop)
        finally:
            self._events = None
            wire.close(conn)

    def health(self) -> BrokerHealth:
        if self._rows is None:  # no management API this snapshot: the server's figures are unknown
            raise ManagementError(self.management_error or "management API not read")
        fields = self.api.health()
        return {
            "server": "rabbitmq", "version": fields["version"], "used_memory_bytes": fields["used_memory_bytes"],
            "max_memory_bytes": fields["max_memory_bytes"], "eviction_policy": None, "evicted_keys": None,
            "oom_errors": None, "connected_clients": fields["connected_clients"], "keyspace": None,
            "alarms": fields["alarms"],
        }

    def write_refused(self, error: Exception) -> bool:
        return False  # a RabbitMQ in alarm blocks publishers; the alarm is in broker_health

    def failure(self, error: Exception) -> Failure | None:
        if isinstance(error, ManagementError):
            return "refused"  # only health() raises it: an optional reading, left null
        if isinstance(error, (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed,
                              amqp.exceptions.ChannelError)):
            return "refused"
        if isinstance(error, (amqp.exceptions.AMQPError, OSError, EOFError)):
            return "unreachable"
        return None

    def close(self) -> None:
        self._drop()
        self.api.close()


def _blank_head() -> MessageHead:
    return {"priority": 0, "task_id": None, "task_name": None, "published_at": None, "age_seconds": None}


def _state(pending: int, head: MessageHead | None, consumers: int | None, unacked: int | None, source: str,
           exists: bool = True) -> RabbitQueueState:
    return {
        "pending": pending,
        "by_priority": {},
        "oldest": {**head, "age_source": "head_message_timestamp" if head.get("age_seconds") is not None
                   else None} if head else None,
        "heads": [head] if head else [],
        "consumers": consumers,
        "unacked": unacked,
        "depth_source": source,
        "exists": exists,
    }
