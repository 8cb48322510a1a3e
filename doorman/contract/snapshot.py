"""The snapshot record (`kind: snapshot`, docs/contract.md#snapshot): its types and its check.

The types are what doorman-collect writes; `snapshot_problem` is the check every reader (analyze,
serve, scale) makes of a line before it reads it, covering every field the rules use. A line that
fails is reported with its line number and skipped; the stream goes on. Fields past the check come
from a pipe, so readers still look at their shapes (`doorman.contract.shapes`) before using them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, TypedDict

from doorman.contract.compat import NotRequired
from doorman.contract.shapes import is_count, is_num
from doorman.contract.tasks import Tasks, tasks_problem
from doorman.contract.version import version_problem
from doorman.timefmt import parse_iso

# ---------------------------------------------------------------- queues (a broker's reading)


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
    """One queue as a broker reads it (`Broker.queues`)."""

    pending: int
    by_priority: dict[str, int]
    oldest: MessageHead | None
    heads: list[MessageHead]


class Queue(QueueState, total=False):
    """One queue of the snapshot (`queues.<name>`): the broker's reading and what collect adds."""

    source: str  # "config", "binding", "listing"
    consumers: int | None
    consumed_by: list[str] | None
    unacked: int | None  # RabbitMQ only
    depth_source: str  # RabbitMQ only: "management_api" or "amqp_passive"
    depth_age_max_seconds: float  # RabbitMQ only: how old `pending` may be (0: read over AMQP now)
    unacked_age_max_seconds: float | None  # RabbitMQ only: how old `unacked` may be
    exists: bool  # RabbitMQ only


# ---------------------------------------------------------------- workers and their tasks


class ActiveTask(TypedDict):
    """One running task (`active[]`); fields from the wire that the broker cannot vouch for are `object`."""

    task_id: object
    task_name: object
    worker: str
    started_at: str | None
    runtime_seconds: float | None
    queue: object
    pid: object


class Worker(TypedDict):
    """One worker (`workers[]`)."""

    name: str
    alive: bool | None  # None: unknown (the broker refused the check's request, no heartbeat seen)
    responded: NotRequired[bool]
    active: NotRequired[int | None]
    last_heartbeat: NotRequired[str | None]
    heartbeat_freq: NotRequired[float | None]
    processed: NotRequired[int | None]
    concurrency: NotRequired[int | None]
    queues: NotRequired[list[str] | None]
    departed: NotRequired[bool]
    task_consumers: NotRequired[int]  # RabbitMQ: consumers of task queues on its own connection


class UnackedOldest(TypedDict):
    """One of the oldest unacknowledged messages (`unacked.oldest[]`)."""

    task_id: str | None
    task_name: str | None
    delivered_at: str
    age_seconds: float


class UnackedSummary(TypedDict):
    """Delivered-but-unacknowledged messages (`unacked`)."""

    count: int | None
    oldest_delivered_at: str | None
    oldest_age_seconds: float | None
    visibility_timeout: float | None
    overdue: int | None
    oldest: list[UnackedOldest]


# ---------------------------------------------------------------- the broker server


class BrokerHealth(TypedDict):
    """The broker server's own figures (`broker_health`); null when unknown."""

    server: str  # "redis" | "rabbitmq"
    version: str | None
    used_memory_bytes: int | None
    max_memory_bytes: int | None  # None or 0: no limit
    eviction_policy: str | None
    evicted_keys: int | None  # since the server started
    oom_errors: int | None  # writes refused for lack of memory, since the server started
    connected_clients: int | None
    keyspace: dict[str, dict[str, int]] | None  # {"db0": {"keys": n, "expires": m}}
    alarms: list[str] | None


class Canary(TypedDict):
    """A canary key some periodic task refreshes (`beat.canary`)."""

    key: str
    present: bool
    readable: bool
    value_at: float | None  # epoch seconds
    age_seconds: float | None


class LateEntry(TypedDict):
    name: str
    due_at: float
    late_seconds: float


class RedBeat(TypedDict):
    """RedBeat's own keys (`beat.redbeat`)."""

    prefix: str
    lock_present: bool
    lock_ttl_seconds: float | None
    entries: int
    late_count: int
    late: list[LateEntry]


class BeatState(TypedDict):
    """What the broker shows of celery beat (`beat`); each source null when not read."""

    canary: Canary | None
    redbeat: RedBeat | None
    source: NotRequired[str]  # "broker", or "beat.redis_url" (a Redis of its own, any broker)
    redis: NotRequired[str | None]  # beat.redis_url, credentials redacted; null when read from the broker


class Discovery(TypedDict):
    """How queues were discovered (`discovery`, Redis)."""

    keys: int | None
    scanned: int | None
    last_pass_at: str | None
    redis_ms: float
    pass_seconds: float | None


class Connections(TypedDict):
    """The broker's connection table as far as it shows Celery's (`connections`)."""

    clients: int
    consumers: int
    subscribers: int
    by_host: dict[str, dict[str, int]]  # host -> {"consumers": n, "subscribers": n}
    hosts_truncated: bool
    source: NotRequired[str]  # "client_list" (Redis); "pidbox_probe", "pidbox_listing", "event_exchange" (RabbitMQ)


class TruncatedQueues(TypedDict):
    total: int
    shown: int
    pending_not_shown: int | None


class TruncatedWorkers(TypedDict):
    total: int
    shown: int
    alive_not_shown: int


class TruncatedCount(TypedDict):
    total: int
    shown: int


class TruncatedBytes(TypedDict):
    over: int
    limit: int


class Truncated(TypedDict, total=False):
    """What broker data was left out to keep the line bounded (`truncated`)."""

    queues: TruncatedQueues
    workers: TruncatedWorkers
    active: TruncatedCount
    bytes: TruncatedBytes


# ---------------------------------------------------------------- the record


class Snapshot(TypedDict):
    """One check of a broker and its workers (`kind: snapshot`). Only what `snapshot_problem`
    requires is required: a reader meets snapshots from older or hand-made writers."""

    v: int
    kind: Literal["snapshot"]
    ts: str
    redis_connected: bool
    cluster: NotRequired[str]
    broker: NotRequired[str | None]
    seq: NotRequired[int]
    trigger: NotRequired[str]
    error: NotRequired[str | None]
    pending_tasks: NotRequired[int | None]
    queues: NotRequired[dict[str, Queue]]
    alive_workers: NotRequired[int | None]
    workers: NotRequired[list[Worker]]
    active_tasks: NotRequired[int | None]
    active: NotRequired[list[ActiveTask]]
    unacked: NotRequired[UnackedSummary | None]
    workers_subscribed: NotRequired[int | None]
    inspect_error: NotRequired[str | None]
    broker_health: NotRequired[BrokerHealth | None]
    beat: NotRequired[BeatState | None]
    discovery: NotRequired[Discovery | None]
    connections: NotRequired[Connections | None]
    truncated: NotRequired[Truncated | None]
    tasks: NotRequired[Tasks | None]
    collect_ms: NotRequired[float]


def broker_readable(snap: Snapshot) -> bool:
    """The broker answered the check: what the analyze engine needs to run every rule."""
    return bool(snap.get("redis_connected") and snap.get("pending_tasks") is not None)


# ---------------------------------------------------------------- the check


def _check_head(h: object, where: Callable[[], str]) -> str | None:
    """`where` builds the field's path only when there is a problem to report (the hot path)."""
    if type(h) is not dict:
        return f"{where()}: expected an object"
    task_id = h.get("task_id")
    if task_id is not None and type(task_id) is not str:
        return f"{where()}.task_id: expected a string or null"
    age = h.get("age_seconds")
    if age is not None and type(age) not in (int, float):
        return f"{where()}.age_seconds: expected a number or null"
    return None


def snapshot_problem(obj: Mapping[str, object]) -> str | None:
    """Why `obj` is not a snapshot the rules can read (None: it is). Checks every field they use."""
    problem = version_problem(obj)
    if problem:
        return problem
    if obj.get("kind") != "snapshot":
        return f"kind must be 'snapshot', got {obj.get('kind')!r}"
    ts = obj.get("ts")
    if not isinstance(ts, str):
        return "missing ts" if ts is None else "ts must be an RFC 3339 string"
    try:
        parse_iso(ts)
    except (ValueError, OverflowError, OSError):
        return f"ts is not an RFC 3339 time: {ts[:40]!r}"
    if not isinstance(obj.get("cluster", ""), str):
        return "cluster must be a string"
    if type(obj.get("redis_connected")) is not bool:
        return "redis_connected must be true or false"
    for name in ("pending_tasks", "alive_workers"):
        if obj.get(name) is not None and not is_count(obj[name]):
            return f"{name} must be a non-negative integer or null"
    if obj.get("discovery") is not None and not isinstance(obj["discovery"], dict):
        return "discovery must be an object or null"
    for name in ("error", "broker"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return f"{name} must be a string or null"
    queues = obj.get("queues")
    if queues is not None:
        if not isinstance(queues, dict):
            return "queues must be an object"
        for qn, q in queues.items():
            if not isinstance(q, dict):
                return f"queues.{qn}: expected an object"
            if not is_count(q.get("pending")):
                return f"queues.{qn}.pending must be a non-negative integer"
            heads = q.get("heads")
            if heads is not None:
                if not isinstance(heads, list):
                    return f"queues.{qn}.heads must be a list"
                for i, h in enumerate(heads):
                    problem = _check_head(h, lambda qn=qn, i=i: f"queues.{qn}.heads[{i}]")  # type: ignore[misc]
                    if problem:
                        return problem
            if q.get("oldest") is not None:
                problem = _check_head(q["oldest"], lambda qn=qn: f"queues.{qn}.oldest")  # type: ignore[misc]
                if problem:
                    return problem
    lists: dict[str, list[object]] = {}
    for name in ("workers", "active"):
        items = obj.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            return f"{name} must be a list"
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return f"{name}[{i}]: expected an object"
        lists[name] = items
    for i, w in enumerate(lists.get("workers", ())):
        assert isinstance(w, dict)
        if not isinstance(w.get("name"), str):
            return f"workers[{i}].name must be a string"
        if type(w.get("alive")) is not bool and not ("alive" in w and w["alive"] is None):
            return f"workers[{i}].alive must be true, false or null"  # null: unknown (a full broker)
    for i, t in enumerate(lists.get("active", ())):
        assert isinstance(t, dict)
        if t.get("runtime_seconds") is not None and not is_num(t["runtime_seconds"]):
            return f"active[{i}].runtime_seconds must be a number or null"
    problem = tasks_problem(obj.get("tasks"))
    if problem is not None:
        if not isinstance(obj, dict):
            return problem
        # the task section is read as null, never the reason a snapshot (and its broker and worker
        # alerts) is dropped: the task rules then skip it, as with --once
        obj["tasks"] = None
    return None
