"""The connected RabbitMQ broker: `doorman.brokers.base.Broker` (and `HealthReading`,
`ConnectionReading`, `WorkerInfoReading`).

Per snapshot: one call to the management API (`/api/queues/<vhost>`, only the columns read) for
the queues, their unacked counts and head timestamps; AMQP passive declares, pipelined on one
channel, for every read queue's ready and consumer counts as they are now (the management API's
trail by its statistics interval); `/api/nodes` and `/api/overview` for the server's health; one
`active` broadcast over AMQP. Without the management API, depth still comes from the passive
declares (ready messages only). Each queue says where its figures came from and how old they may
be (`depth_source`, `depth_age_max_seconds`, `unacked_age_max_seconds`).

Liveness between snapshots (`ConnectionReading`): the workers' pidbox queues, which RabbitMQ
deletes the moment a worker's connection closes (`liveness.py`, docs/rabbitmq.md).
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
    ConnectionTable,
    Failure,
    MessageHead,
    QueueState,
    Topology,
    Unacked,
    WorkerEvent,
    WorkerEventListener,
    WorkerInfo,
    collect_say,
)
from doorman.brokers.rabbitmq import control, probe, urls, wire
from doorman.brokers.rabbitmq.events import PidboxEvents
from doorman.brokers.rabbitmq.liveness import MAX_PROBED, PIDBOX_SUFFIX, PidboxLiveness
from doorman.brokers.rabbitmq.management import Management, ManagementError, QueueRow
from doorman.config.settings import Config
from doorman.tasks import reader_rabbitmq
from doorman.timefmt import iso

MANAGEMENT = "management_api"
PASSIVE = "amqp_passive"
INTERNAL_PREFIXES = ("doorman.", "celeryev.", "amq.")
REPLY_SUFFIX = ".reply.celery.pidbox"  # a `celery inspect` client's reply queue, not a worker's
INTERNAL_SUFFIXES = (PIDBOX_SUFFIX, REPLY_SUFFIX)
MAX_WATCHED = 10_000


class RabbitQueueState(QueueState, total=False):
    """A queue as RabbitMQ shows it: the shared fields, plus what only it can tell."""

    consumers: int | None  # consumers RabbitMQ counts on the queue (live channels)
    unacked: int | None  # delivered, not acknowledged (null from AMQP: passive declares cannot tell)
    depth_source: str  # "management_api" or "amqp_passive"
    depth_age_max_seconds: float  # how old `pending` may be: 0 from AMQP, the statistics interval from the API
    unacked_age_max_seconds: float | None  # how old `unacked` may be; None when unknown
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
        self.stats_age = float(cfg.rabbitmq_statistics_interval_seconds)
        self._probe_ch: amqp.Channel | None = None  # passive declares: depth and pidbox probes
        self.live = PidboxLiveness(clock, self._probe, self._listing, self._subscribe)

    # ------------------------------------------------------------ AMQP connection

    def _amqp(self) -> amqp.Connection:
        if self._conn is None or not self._conn.connected:
            wire.abandon(self._conn)
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
        except Exception as e:
            self._drop(e)
            raise

    def _drop(self, error: BaseException | None = None) -> None:
        """Forget this thread's connection: after a transport failure (timeout, reset) without
        waiting for the broker (see `wire.abandon`), else with AMQP's close handshake."""
        lost = isinstance(error, (OSError, EOFError, amqp.exceptions.RecoverableConnectionError))
        (wire.abandon if lost else wire.close)(self._conn)
        self._conn = None
        self._probe_ch = None

    def _probe(self, names: Sequence[str]) -> dict[str, probe.Probe]:
        """Passive declares of `names` on this thread's connection, one reused channel."""
        try:
            conn = self._amqp()
            self._probe_ch = probe.channel(conn, self._probe_ch)
            return probe.probe(self._probe_ch, names)
        except Exception as e:
            self._drop(e)
            raise

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
        pidboxes = [r for r in rows if r.name.endswith(PIDBOX_SUFFIX) and not r.name.endswith(REPLY_SUFFIX)]
        # a pidbox queue is there while its worker's connection is (auto-delete, exclusive since
        # Celery 5.5); its consumer count is the statistics database's, seconds late, so not used
        self._listening = len(pidboxes)
        workers = [r.name[: -len(PIDBOX_SUFFIX)] for r in pidboxes]
        self.live.listed = workers[:MAX_PROBED]
        tasks = [r for r in rows if not internal(r.name)]
        oldest = self.held.update(tasks, self.clock())
        return Topology({r.name: "listing" for r in tasks}, workers,
                        Unacked(sum(r.unacked for r in tasks), oldest, None))

    def queues(self, names: Sequence[str], now: float) -> dict[str, QueueState]:
        """Ready and consumer counts from passive declares (exact now); unacked counts and head
        timestamps from this snapshot's listing (up to the statistics interval old), when read. A
        queue exclusive to another connection cannot be declared passively: the listing's figures."""
        found = self._probe(list(names))
        out: dict[str, QueueState] = {}
        for q in names:
            got = found.get(q)
            row = self._rows.get(q) if self._rows is not None else None
            unacked_age = self.stats_age if row is not None else None
            if got is None or got.state == "missing":
                out[q] = _state(0, None, 0, 0 if self._rows is not None else None, PASSIVE, 0.0, 0.0, exists=False)
            elif got.state == "ok" and got.ready is not None:
                head = (_head(row, now) if row is not None and row.head_timestamp is not None else _blank_head()
                        ) if got.ready else None
                out[q] = _state(got.ready, head, got.consumers, row.unacked if row is not None else None, PASSIVE,
                                0.0, unacked_age)
            elif row is not None:  # locked: exclusive to another connection
                out[q] = _state(row.ready, _head(row, now) if row.ready else None, row.consumers, row.unacked,
                                MANAGEMENT, self.stats_age, unacked_age)
            else:
                out[q] = _state(0, None, None, None, PASSIVE, 0.0, None)
        return out

    def active_tasks(self, timeout: float, now: float) -> ActiveTasks:
        try:
            return wire.active_tasks(self._amqp(), self._listening, timeout, now)
        except Exception as e:
            self._drop(e)
            raise

    def follow_worker_events(self, listener: WorkerEventListener, stop: threading.Event) -> None:
        conn = wire.connect(self.target, self.cfg.rabbitmq_timeout, self.ssl)
        self._events = conn
        try:
            reader_rabbitmq.follow(conn, _Noting(listener, self.live.heard_of), stop, getattr(listener, "tasks", None))
        finally:
            self._events = None
            wire.close(conn)

    # ConnectionReading and WorkerInfoReading (doorman.brokers.base), optional capabilities

    def _listing(self) -> set[str] | None:
        """The vhost's queue names, when the management API answered this snapshot."""
        if self._rows is None:
            return None
        try:
            return self.api.queue_names(self.target.vhost)
        except ManagementError:
            return None

    def _subscribe(self) -> PidboxEvents:
        return PidboxEvents(self.target, self.target.vhost, self.cfg.rabbitmq_timeout, self.ssl)

    def connections(self) -> ConnectionTable:
        """The workers whose connection is open, from their pidbox queues (`liveness.PidboxLiveness`)."""
        return self.live.connections()

    def ping(self, names: Sequence[str], timeout: float) -> set[str]:
        """The workers of `names` still there: their pidbox queue answers for them by name, so no
        broadcast is sent and nothing is waited for."""
        return self.live.ping(names)

    def worker_info(self, timeout: float) -> dict[str, WorkerInfo]:
        if not self.cfg.inspect:  # read-only: queues, pool size and counts stay unknown
            return {}
        consumers: dict[str, int] | None = None
        if self._rows is not None:
            try:
                consumers = control.task_consumers(self.api.consumers(self.target.vhost), internal)
            except ManagementError:
                consumers = None
        try:
            return control.worker_info(self._amqp(), self._listening, timeout, consumers)
        except Exception as e:
            self._drop(e)
            raise

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
        self.live.close()
        self.api.close()


def _blank_head() -> MessageHead:
    return {"priority": 0, "task_id": None, "task_name": None, "published_at": None, "age_seconds": None}


def _state(pending: int, head: MessageHead | None, consumers: int | None, unacked: int | None, source: str,
           depth_age: float, unacked_age: float | None, exists: bool = True) -> RabbitQueueState:
    return {
        "pending": pending,
        "by_priority": {},
        "oldest": {**head, "age_source": "head_message_timestamp" if head.get("age_seconds") is not None
                   else None} if head else None,
        "heads": [head] if head else [],
        "consumers": consumers,
        "unacked": unacked,
        "depth_source": source,
        "depth_age_max_seconds": depth_age,
        "unacked_age_max_seconds": unacked_age if unacked is not None else None,
        "exists": exists,
    }


class _Noting:
    """A `WorkerEventListener` that notes each worker's name before passing the event on, so the
    pidbox probes follow workers as soon as they are heard of."""

    def __init__(self, listener: WorkerEventListener, note: Callable[[str], None]):
        self.listener, self.note = listener, note

    def subscribed(self) -> None:
        self.listener.subscribed()

    def received(self, event: WorkerEvent) -> None:
        if event.get("type") != "worker-offline":
            self.note(event["hostname"])
        self.listener.received(event)
