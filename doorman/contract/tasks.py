"""The `tasks` section of a daemon snapshot (contract v1, additive): what the task-event reader
counts, cumulative since `since`, so a lost or skipped snapshot line loses nothing.

`snapshot["tasks"]` is null when the collector cannot see task events (`--once`, or the reader
disabled). Every name in it is broker data: bounded and kept free of control characters by the
reader, and escaped again by every human output.
"""

from __future__ import annotations

from typing import Literal, TypedDict

# Upper bounds in seconds; +Inf is implied as the last bucket (len(bounds) + 1 counts).
RUNTIME_BUCKETS: tuple[float, ...] = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (.05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                                         600.0, 1800.0)
WAIT_BUCKETS: tuple[float, ...] = QUEUE_WAIT_BUCKETS

OTHER = "(other)"  # overflow of any capped map
UNKNOWN = "(unknown)"  # a task whose name the reader never saw (or forgot), or an unknown queue


class Hist(TypedDict):
    counts: list[int]  # one per bucket, len(bounds) + 1, NOT cumulative
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
    exceptions: dict[str, int]  # class name -> failures; capped per name, overflow "(other)"
    final_failures: int  # failures not followed by a retry (the last try)
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
    broker: Literal["redis", "rabbitmq"]
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
    events: Literal["on", "off", "partial", "unknown"]
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
