"""The `tasks` section of a snapshot (contract v1, additive): counts of Celery task events.

`snapshot["tasks"]` is null when the collector cannot see task events (`--once`, or
`task_events: false`); otherwise a `Tasks` object, cumulative since `since` like Prometheus counters.
The bucket bounds are fixed here so every reader (rules, serve, the exporter drop-in) agrees.
(Minimal version from the reader's branch; the contract branch holds the full one.)
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

# upper bounds in seconds; +Inf is implied as the last bucket
RUNTIME_BUCKETS: tuple[float, ...] = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (.05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                                         1800.0)
WAIT_BUCKETS: tuple[float, ...] = QUEUE_WAIT_BUCKETS

UNKNOWN = "(unknown)"  # a task name (or queue) the reader never saw or forgot
OTHER = "(other)"  # what a cap folds together
PLAIN_FIELDS = ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked")

Events = Literal["on", "off", "partial", "unknown"]


class Hist(TypedDict):
    counts: list[int]  # per bucket, len(bounds) + 1, not cumulative
    count: int
    sum: float


class Plain(TypedDict):
    sent: int
    received: int
    started: int
    succeeded: int
    failed: int
    retried: int
    rejected: int
    revoked: int


class Counts(Plain):
    exceptions: dict[str, int]
    final_failures: int
    runtime: Hist
    wait: Hist
    queue_wait: Hist


class Series(Plain):
    name: str
    hostname: str
    queue: str
    exceptions: dict[str, int]
    runtime: Hist
    queue_wait: Hist


class Lost(TypedDict):
    unsubscribed_seconds: float
    gaps: int
    by_worker: dict[str, int]
    total: int


class Reader(TypedDict):
    broker: str
    subscribed: bool
    events: int
    messages: int
    bad: int


class Buckets(TypedDict):
    runtime: list[float]
    queue_wait: list[float]
    wait: list[float]


class Omitted(TypedDict):
    names: int
    hostnames: int
    queues: int
    series: int
    exceptions: int


class Tasks(TypedDict):
    events: Events
    silent_workers: list[str]
    since: float
    reader: Reader
    buckets: Buckets
    by_name: dict[str, Counts]
    by_queue: dict[str, Plain]
    by_worker: dict[str, Plain]
    series: list[Series]
    lost: Lost
    omitted: Omitted


def tasks_problem(obj: Any) -> str | None:
    """Why `obj` is not a `tasks` section (None: it is, or it is null). A shallow check of the keys
    the rules read; the contract branch has the full one."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        return "tasks must be an object or null"
    if obj.get("events") not in ("on", "off", "partial", "unknown"):
        return "tasks.events must be on, off, partial or unknown"
    for key in ("by_name", "by_queue", "by_worker", "lost", "reader", "omitted", "buckets"):
        if not isinstance(obj.get(key), dict):
            return f"tasks.{key} must be an object"
    if not isinstance(obj.get("series"), list):
        return "tasks.series must be a list"
    if not isinstance(obj.get("since"), (int, float)) or isinstance(obj.get("since"), bool):
        return "tasks.since must be a number"
    return None
