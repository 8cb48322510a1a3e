"""What a broker must offer Doorman: the plugin object (`BrokerPlugin`) and, once connected, the
`Broker` the collector reads.

A broker is one module (or package) exposing a `BrokerPlugin`; it is picked by the scheme of
`broker_url`. `doorman.collect` holds everything that does not depend on the broker (the snapshot,
the schedule, the heartbeat liveness rule) and calls only what is declared here, so a new broker
needs no change there.

Names (queues, workers) are `str`. A broker whose names are bytes decodes them with
`surrogateescape` (`decode`), so they round-trip exactly; the snapshot shows them with `display`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypedDict, runtime_checkable

from doorman.contract.snapshot import ActiveTask, BeatState, BrokerHealth, MessageHead, QueueState

if TYPE_CHECKING:
    from doorman.config.settings import Config, Setting

__all__ = ["ActiveTask", "BeatState", "BrokerHealth", "MessageHead", "QueueState"]  # the contract's, for brokers

# ---------------------------------------------------------------- talk


def collect_say(cluster: str) -> Callable[[str], None]:
    """A broker's stderr lines; a named cluster's say its name: in a fleet, fifty brokers share one stderr."""
    from doorman.ndjson import warn

    label = "" if cluster == "default" else f"cluster {cluster}: "
    return lambda message: warn("doorman-collect", label + message)


# ---------------------------------------------------------------- names


def encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def decode(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")


def display(name: str) -> str:
    """A printable form of a raw name (bytes that are not UTF-8 shown as \\xNN)."""
    return encode(name).decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------- what a broker reports
# Parts of the snapshot (schema v1) a broker builds are the contract's types (doorman.contract.snapshot):
# MessageHead, QueueState, ActiveTask, BrokerHealth, BeatState (imported here for brokers).


class _EventHost(TypedDict):
    hostname: str


class WorkerEvent(_EventHost, total=False):
    """One of Celery's `worker-*` events (`worker-heartbeat`, `worker-online`, `worker-offline`)."""

    type: str
    freq: object
    active: object
    processed: object


class UnackedMessage(TypedDict):
    """One of the oldest unacknowledged messages: who it is and when it was delivered."""

    task_id: str | None
    task_name: str | None
    delivered_at: float  # epoch seconds


@dataclass(frozen=True)
class Unacked:
    """Messages delivered to a worker and not acknowledged yet."""

    count: int | None  # None when the broker cannot tell (RabbitMQ without its management API)
    oldest: float | None  # epoch seconds the oldest was delivered, when the broker knows
    visibility_timeout: float | None  # after which the broker redelivers it, if it does
    overdue: int | None = None  # how many are older than the visibility timeout, when known
    messages: tuple[UnackedMessage, ...] = ()  # the oldest few, oldest first, when known


@dataclass(frozen=True)
class Topology:
    """What the broker knows of its layout, read in one go."""

    queues: dict[str, str]  # queue -> how it was found (e.g. "binding"), in reading order
    workers: list[str]  # worker nodes the broker knows of, alive or not
    unacked: Unacked
    discovery: dict[str, object] | None = None  # how queues were discovered (the snapshot's `discovery`)


@dataclass(frozen=True)
class ActiveTasks:
    asked: int  # workers the request reached: as many replies are waited for, no more
    replies: dict[str, list[ActiveTask]]  # per worker that answered


Failure = Literal["unreachable", "refused"]


# ---------------------------------------------------------------- the interface


class WorkerEventListener(Protocol):
    """Where a broker's worker-event subscription reports to (the heartbeat tracker)."""

    def subscribed(self) -> None: ...

    def received(self, event: WorkerEvent) -> None: ...


class Broker(Protocol):
    """A connected broker. Every method may raise; `failure` tells broker trouble from odd data."""

    def topology(self) -> Topology:
        """Queues found on the broker (the configured ones are added by the collector), worker
        nodes, unacked messages. May cache what is costly to discover."""
        ...

    def queues(self, names: Sequence[str], now: float) -> dict[str, QueueState]:
        """Depth and waiting heads of each queue of `names`, keyed by those names."""
        ...

    def active_tasks(self, timeout: float, now: float) -> ActiveTasks:
        """Ask every live worker what it runs; wait at most `timeout` seconds for the replies."""
        ...

    def follow_worker_events(self, listener: WorkerEventListener, stop: threading.Event) -> None:
        """Subscribe to the workers' events and report each to `listener` until `stop` is set (then
        return). Raise when the subscription breaks: the caller retries."""
        ...

    def failure(self, error: Exception) -> Failure | None:
        """What `error` says of the broker: "unreachable", "refused" (it answered with an error),
        or None when it is not the broker's (odd data)."""
        ...

    def close(self) -> None:
        """Release the connections; never raises."""
        ...


@runtime_checkable
class HealthReading(Protocol):
    """Optional: a broker that can read its server's health (memory, eviction, OOM) and can tell a
    write refused for a full memory, so a full broker still reports what its reads see."""

    def health(self) -> BrokerHealth: ...

    def write_refused(self, error: Exception) -> bool:
        """Whether `error` is a write the broker refused while its reads still work (OOM)."""
        ...


@runtime_checkable
class BeatReading(Protocol):
    """Optional: a broker that can read celery beat's traces (a canary key, RedBeat's keys)."""

    def beat(self, now: float) -> BeatState | None: ...


@dataclass(frozen=True)
class ConnectionTable:
    """The broker's own table of client connections, as far as it shows Celery's (issue 12)."""

    clients: int  # every connection listed
    consumers: frozenset[int]  # ids of connections consuming tasks (a blocking pop on Redis)
    subscribers: frozenset[int]  # ids of connections subscribed to a channel (pidbox, events)
    by_host: dict[str, dict[str, int]]  # client host -> {"consumers": n, "subscribers": n}, bounded
    hosts_truncated: bool = False
    source: str = "client_list"  # how it was read: Redis's CLIENT LIST, RabbitMQ's "pidbox_probe"


@runtime_checkable
class ConnectionReading(Protocol):
    """Optional: a broker that can read its connection table and ping chosen workers, so a dead
    worker is noticed when its connections vanish (the kernel closes them at once on kill -9)."""

    def connections(self) -> ConnectionTable:
        """The table now; raises like any read (`failure` says "refused" when it is not allowed)."""
        ...

    def ping(self, names: Sequence[str], timeout: float) -> set[str]:
        """Which of `names` answer a pidbox ping within `timeout` seconds."""
        ...


@dataclass(frozen=True)
class WorkerInfo:
    """What one worker says of itself over the control channel; None when it did not say."""

    queues: tuple[str, ...] | None  # its `active_queues`
    concurrency: int | None  # its pool size
    processed: int | None  # tasks it has run since it started
    exchanges: tuple[str, ...] = ()  # the exchanges its queues are bound to, when it said
    task_consumers: int | None = None  # consumers of task queues on its own connection, when the broker shows them


@runtime_checkable
class WorkerInfoReading(Protocol):
    """Optional: a broker that can ask every worker which queues it consumes and its pool size."""

    def worker_info(self, timeout: float) -> dict[str, WorkerInfo]:
        """{worker: info} of the workers that answered within `timeout` seconds."""
        ...


class BrokerPlugin(Protocol):
    """The object a broker module exposes (`BROKER`), listed in the entry-point group `doorman.brokers`."""

    name: str
    schemes: tuple[str, ...]  # URL schemes of `broker_url` it serves
    settings: tuple[Setting, ...]  # its configuration keys

    def url_problem(self, url: str) -> str | None:
        """What is wrong with a URL of one of its schemes, or None."""
        ...

    def config_problem(self, cfg: Config) -> tuple[str, str] | None:
        """(key, problem) of a loaded configuration this broker cannot work with, or None."""
        ...

    def connect(self, cfg: Config) -> Broker:
        """A `Broker` for `cfg.broker_url`. Must not fail on a down broker: the first read does."""
        ...
