"""The snapshot's `tasks` section (docs/contract.md#tasks): task outcomes counted from Celery's
task events, its types, its histogram bounds and its check.

`tasks` is null when the collector cannot see task events (`--once`, or `task_events: false`).
Counts are cumulative since `since` (the collector's start), as Prometheus counters are. Every
name is broker data: bounded and capped by the writer, overflow summed under "(other)".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict

from doorman.contract.shapes import is_count, is_num

# Upper bounds (seconds) of the histogram buckets; +Inf is implied as the last bucket.
RUNTIME_BUCKETS: tuple[float, ...] = (  # prometheus_client's DEFAULT_BUCKETS
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (  # celery-exporter's
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
WAIT_BUCKETS: tuple[float, ...] = QUEUE_WAIT_BUCKETS

OTHER = "(other)"  # the key overflow is summed under
UNKNOWN = "(unknown)"  # a task whose name (or queue) was never seen
EVENT_STATES = ("on", "off", "partial", "unknown")
Events = Literal["on", "off", "partial", "unknown"]
PLAIN_FIELDS = ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked")
# the eight counters in celery-exporter's order (its celery_task_<outcome>_total series)
OUTCOMES: tuple[str, ...] = ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked", "retried")


class Hist(TypedDict):
    """A histogram over one bucket list: `counts` per bucket (len(bounds) + 1, NOT cumulative)."""

    counts: list[int]
    count: int
    sum: float


class Plain(TypedDict):
    """Task events counted by type."""

    sent: int
    received: int
    started: int
    succeeded: int
    failed: int
    retried: int
    rejected: int
    revoked: int


# A task's last failure as Celery reported it (`by_name.<name>.last_exception`), kept only when
# `task_exception_messages` is on (the message can hold users' data): the class, as in `exceptions`;
# task-failed's `exception` (its repr) with URL passwords and secrets masked, at most 200 characters;
# when it failed (the event's timestamp). Functional form: `class` is a Python keyword.
LastException = TypedDict("LastException", {"class": str, "message": str, "at": "str | None"})


class Counts(Plain):
    """One task name's counts (`by_name.<name>`)."""

    exceptions: dict[str, int]  # exception class -> failures (capped per name, overflow "(other)")
    final_failures: int  # failures not followed by a retry
    runtime: Hist  # task-succeeded `runtime`
    wait: Hist  # received -> started
    queue_wait: Hist  # sent -> started, ETA delay taken off
    last_exception: NotRequired[LastException]  # only with task_exception_messages


class Series(Plain):
    """One (name, hostname, queue) row (`series[]`)."""

    name: str
    hostname: str
    queue: str
    exceptions: dict[str, int]
    runtime: Hist
    queue_wait: Hist


class Reader(TypedDict):
    """The task-event reader's own figures (`reader`)."""

    broker: str  # "redis" | "rabbitmq"
    subscribed: bool
    events: int
    messages: int
    bad: int


class Buckets(TypedDict):
    """The histograms' upper bounds (`buckets`), +Inf implied."""

    runtime: list[float]
    queue_wait: list[float]
    wait: list[float]


class Lost(TypedDict):
    """Tasks run that no event accounts for (`lost`)."""

    unsubscribed_seconds: float
    gaps: int
    by_worker: dict[str, int]
    total: int


class Omitted(TypedDict):
    """Distinct keys folded into "(other)" since `since` (`omitted`)."""

    names: int
    hostnames: int
    queues: int
    series: int
    exceptions: int


class Tasks(TypedDict):
    """The `tasks` section of a snapshot."""

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


# ---------------------------------------------------------------- the check


def _counts_problem(obj: Mapping[str, object], where: str, fields: tuple[str, ...]) -> str | None:
    for f in fields:
        if not is_count(obj.get(f)):
            return f"{where}.{f} must be a non-negative integer"
    return None


def _int_map_problem(v: object, where: str) -> str | None:
    if not isinstance(v, dict):
        return f"{where} must be an object"
    for k, n in v.items():
        if not isinstance(k, str) or not is_count(n):
            return f"{where}.{k} must be a non-negative integer"
    return None


def _hist_problem(h: object, bounds: int, where: str) -> str | None:
    if not isinstance(h, dict):
        return f"{where} must be an object"
    counts = h.get("counts")
    if not isinstance(counts, list) or len(counts) != bounds + 1 or not all(is_count(c) for c in counts):
        return f"{where}.counts must be {bounds + 1} non-negative integers (one per bucket, +Inf last)"
    if not is_count(h.get("count")):
        return f"{where}.count must be a non-negative integer"
    if not is_num(h.get("sum")):
        return f"{where}.sum must be a number"
    return None


def _plain_problem(obj: object, where: str) -> str | None:
    if not isinstance(obj, dict):
        return f"{where}: expected an object"
    return _counts_problem(obj, where, PLAIN_FIELDS)


def _with_hists(obj: dict[str, object], where: str, hists: dict[str, int]) -> str | None:
    problem = _int_map_problem(obj.get("exceptions"), f"{where}.exceptions")
    if problem:
        return problem
    for kind, bounds in hists.items():
        problem = _hist_problem(obj.get(kind), bounds, f"{where}.{kind}")
        if problem:
            return problem
    return None


def _map_problem(v: object, where: str) -> dict[str, object] | str:
    if not isinstance(v, dict):
        return f"{where} must be an object"
    return v


def tasks_problem(tasks: object) -> str | None:
    """Why a snapshot's `tasks` is not the section docs/contract.md describes (None: it is, or is null)."""
    if tasks is None:
        return None
    if not isinstance(tasks, dict):
        return "tasks must be an object or null"
    if tasks.get("events") not in EVENT_STATES:
        return f"tasks.events must be one of {', '.join(EVENT_STATES)}"
    silent = tasks.get("silent_workers")
    if not isinstance(silent, list) or not all(isinstance(w, str) for w in silent):
        return "tasks.silent_workers must be a list of strings"
    if not is_num(tasks.get("since")):
        return "tasks.since must be a number"
    reader = tasks.get("reader")
    if not isinstance(reader, dict):
        return "tasks.reader must be an object"
    if not isinstance(reader.get("broker"), str) or type(reader.get("subscribed")) is not bool:
        return "tasks.reader: broker must be a string and subscribed true or false"
    problem = _counts_problem(reader, "tasks.reader", ("events", "messages", "bad"))
    if problem:
        return problem
    buckets = tasks.get("buckets")
    if not isinstance(buckets, dict):
        return "tasks.buckets must be an object"
    sizes: dict[str, int] = {}
    for kind in ("runtime", "queue_wait", "wait"):
        b = buckets.get(kind)
        if not isinstance(b, list) or not all(is_num(x) for x in b):
            return f"tasks.buckets.{kind} must be a list of numbers"
        sizes[kind] = len(b)
    by_name = _map_problem(tasks.get("by_name"), "tasks.by_name")
    if isinstance(by_name, str):
        return by_name
    for name, c in by_name.items():
        where = f"tasks.by_name.{name}"
        problem = _plain_problem(c, where)
        if problem:
            return problem
        assert isinstance(c, dict)
        problem = _counts_problem(c, where, ("final_failures",)) or _with_hists(c, where, sizes)
        if problem:
            return problem
    for section in ("by_queue", "by_worker"):
        m = _map_problem(tasks.get(section), f"tasks.{section}")
        if isinstance(m, str):
            return m
        for key, c in m.items():
            problem = _plain_problem(c, f"tasks.{section}.{key}")
            if problem:
                return problem
    series = tasks.get("series")
    if not isinstance(series, list):
        return "tasks.series must be a list"
    row_hists = {"runtime": sizes["runtime"], "queue_wait": sizes["queue_wait"]}
    for i, row in enumerate(series):
        where = f"tasks.series[{i}]"
        problem = _plain_problem(row, where)
        if problem:
            return problem
        assert isinstance(row, dict)
        for f in ("name", "hostname", "queue"):
            if not isinstance(row.get(f), str):
                return f"{where}.{f} must be a string"
        problem = _with_hists(row, where, row_hists)
        if problem:
            return problem
    lost = tasks.get("lost")
    if not isinstance(lost, dict):
        return "tasks.lost must be an object"
    if not is_num(lost.get("unsubscribed_seconds")):
        return "tasks.lost.unsubscribed_seconds must be a number"
    problem = (_counts_problem(lost, "tasks.lost", ("gaps", "total"))
               or _int_map_problem(lost.get("by_worker"), "tasks.lost.by_worker"))
    if problem:
        return problem
    omitted = tasks.get("omitted")
    if not isinstance(omitted, dict):
        return "tasks.omitted must be an object"
    return _counts_problem(omitted, "tasks.omitted", ("names", "hostnames", "queues", "series", "exceptions"))


def quantile(q: float, counts: list[float], bounds: tuple[float, ...]) -> float | None:
    """The q-quantile of a bucketed histogram, interpolated linearly within its bucket like
    Prometheus' histogram_quantile (0 is the first bucket's lower edge; a rank in the +Inf bucket
    gives the highest finite bound). None when the histogram is empty."""
    n = sum(counts)
    if n <= 0:
        return None
    rank = q * n
    seen = 0.0
    for i, c in enumerate(counts):
        if c <= 0:
            continue
        if seen + c >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / c
        seen += c
    return bounds[-1]
