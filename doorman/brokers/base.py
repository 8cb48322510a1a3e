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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypedDict

if TYPE_CHECKING:
    from doorman.settings import Config, Setting

# ---------------------------------------------------------------- names


def encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def decode(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")


def display(name: str) -> str:
    """A printable form of a raw name (bytes that are not UTF-8 shown as \\xNN)."""
    return encode(name).decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------- what a broker reports
# Parts of the snapshot (schema v1), as the broker builds them; fields from the wire that the broker
# cannot vouch for are `object`.


class MessageHead(TypedDict, total=False):
    """The next message out of one priority list. `unparseable` is there only when it is true."""

    priority: int
    task_id: str | None
    task_name: str | None
    unparseable: bool
    published_at: str | None
    age_seconds: float | None
    age_source: str | None  # only on a queue's `oldest`: "published_header", or None for a guess


class QueueState(TypedDict):
    pending: int
    by_priority: dict[str, int]
    oldest: MessageHead | None
    heads: list[MessageHead]


class ActiveTask(TypedDict):
    task_id: object
    task_name: object
    worker: str
    started_at: str | None
    runtime_seconds: float | None
    queue: object
    pid: object


class _EventHost(TypedDict):
    hostname: str


class WorkerEvent(_EventHost, total=False):
    """One of Celery's `worker-*` events (`worker-heartbeat`, `worker-online`, `worker-offline`)."""

    type: str
    freq: object
    active: object


@dataclass(frozen=True)
class Unacked:
    """Messages delivered to a worker and not acknowledged yet."""

    count: int
    oldest: float | None  # epoch seconds the oldest was delivered, when the broker knows
    visibility_timeout: float | None  # after which the broker redelivers it, if it does


@dataclass(frozen=True)
class Topology:
    """What the broker knows of its layout, read in one go."""

    queues: dict[str, str]  # queue -> how it was found (e.g. "binding"), in reading order
    workers: list[str]  # worker nodes the broker knows of, alive or not
    unacked: Unacked


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
