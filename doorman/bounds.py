"""Broker data bounded at the edge: whatever a client of the broker wrote, a snapshot stays small,
flat where it should be, and readable by the next stage.

Any client can create queues, bind fake workers, answer `active` for a worker, publish heartbeats
or put a huge or deeply nested message at a queue's head. Left alone, that blinds the monitor:
a snapshot over analyze's line limit is skipped (no alert at all), a value nested deeper than
the serializer allows crashes a stage. So every snapshot passes through `bound_snapshot`:

- names (queues, workers) longer than `MAX_NAME` characters are cut, with a short hash so two
  long names stay distinct;
- at most `MAX_QUEUES` queues, `MAX_WORKERS` workers and `MAX_ACTIVE` active tasks are reported
  in detail. Which ones: those that can raise an alert first (configured queues, then the deepest
  and oldest; workers that are down, then the rest; the longest-running tasks). The totals
  (`pending_tasks`, `alive_workers`, `active_tasks`) still count everything that was read, and
  `truncated` says what was left out, so every alert a full snapshot raises still fires;
- fields that must be scalars (task ids, names, queues, pids) are scalars or null, strings capped;
- the encoded snapshot stays under `MAX_SNAPSHOT_BYTES`, a quarter of analyze's line limit.

Wire messages (pidbox replies, heartbeats) are refused before parsing above a byte budget and
after parsing when nested deeper than `MAX_DEPTH` (`check_wire`). A pidbox reply is also refused
before parsing when it holds more than `MAX_REPLY_CONTAINERS` objects and arrays (a 4 MiB reply of
`{}` costs ~165 MiB once parsed; counting braces costs nothing). Both brokers then keep what a
request's replies say through one `ReplyBudget` (`accept_reply`): one node per reply message, as
Celery answers (a reply naming 287,021 nodes is forged: refused whole, so it cannot make them
"alive" and hide `workers_down`), at most `MAX_REPLY_NODES` nodes, `MAX_ACTIVE` tasks per node and
`MAX_REPLY_TASKS` tasks per request, names capped by `cap_name`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

MAX_NAME = 200  # characters of a queue or worker name
MAX_QUEUES = 500  # queues reported in detail per snapshot
MAX_WORKERS = 500  # workers reported in detail per snapshot
MAX_ACTIVE = 500  # active tasks reported in detail per snapshot
MAX_TEXT = 500  # characters of any other string from the broker (task id, task name)
MAX_DEPTH = 32  # nesting of a wire message (a real one is under 10 deep)
MAX_HEAD_BYTES = 256 * 1024  # a queue head parsed for its headers; larger ones are not parsed
MAX_REPLY_BYTES = 1024 * 1024  # one pidbox reply (a busy worker's `active` is well under 1 MiB)
MAX_REPLY_CONTAINERS = 20_000  # objects + arrays in one pidbox reply (a task is ~5): counted before parsing
MAX_REPLY_ITEMS = 100_000  # commas in one pidbox reply: bounds the parsed scalars
MAX_REPLY_NODES = 2 * MAX_WORKERS  # nodes kept from one request's replies
MAX_REPLY_TASKS = 20 * MAX_ACTIVE  # tasks kept in detail from one request's replies, every node together
MAX_MANAGEMENT_BYTES = 8 * 1024 * 1024  # one management API answer (10,000 queues are ~2 MB)
MAX_MANAGEMENT_CONTAINERS = 50_000  # objects + arrays in one answer (a queue row is 2), before parsing
MAX_MANAGEMENT_ITEMS = 200_000  # commas in one answer (a queue row is ~8): bounds the parsed scalars
MAX_HTTP_ANSWER_BYTES = 64 * 1024  # what a sink or a heartbeat ping reads of an answer (the rest is cut)
MAX_EVENT_BYTES = 64 * 1024  # one worker event (a heartbeat is under 1 KiB)
MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024  # analyze reads lines up to 16 MiB


def depth_over(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests containers deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            items: Any = v.values()
        elif isinstance(v, list):
            items = v
        else:
            continue
        if d > limit:
            return True
        stack.extend((x, d + 1) for x in items)
    return False


def check_wire(raw: bytes | str, max_bytes: int, max_containers: int | None = None,
               max_items: int | None = None) -> None:
    """Refuse (ValueError) a wire message over its byte budget or, when given, holding more JSON
    objects and arrays than `max_containers` or more commas than `max_items` (over-counts: those in
    strings count too), before it is parsed: what a parsed document costs is bounded by these."""
    if len(raw) > max_bytes:
        raise ValueError(f"message of {len(raw)} bytes is over the {max_bytes}-byte budget")
    if max_containers is None and max_items is None:
        return
    b = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    if max_containers is not None and b.count(b"{") + b.count(b"[") > max_containers:
        raise ValueError(f"message holds over {max_containers} objects and arrays")
    if max_items is not None and b.count(b",") > max_items:
        raise ValueError(f"message holds over {max_items} items")


def check_reply(raw: bytes | str) -> None:
    """A pidbox reply's budgets, before it is parsed (`check_wire`)."""
    check_wire(raw, MAX_REPLY_BYTES, MAX_REPLY_CONTAINERS, MAX_REPLY_ITEMS)


class ReplyBudget:
    """What one broadcast's replies may add, on either broker: `accept(data)` with one parsed reply
    ({node: answer}) returns the nodes to keep (none when the reply is forged or the budget spent)."""

    def __init__(self, max_nodes: int = MAX_REPLY_NODES, max_tasks: int = MAX_REPLY_TASKS,
                 tasks_per_node: int = MAX_ACTIVE):
        self.max_nodes, self.tasks_left, self.tasks_per_node = max_nodes, max_tasks, tasks_per_node
        self.nodes: set[str] = set()
        self.refused = 0  # replies dropped whole: more than one node, or past the node budget

    def accept(self, data: dict[str, Any]) -> dict[str, Any]:
        if len(data) != 1:  # Celery replies {hostname: answer}: never two nodes in one message
            self.refused += bool(data)
            return {}
        (node, answer), = data.items()
        name = cap_name(node)
        if name not in self.nodes and len(self.nodes) >= self.max_nodes:
            self.refused += 1
            return {}
        self.nodes.add(name)
        if isinstance(answer, list):
            answer = answer[:max(0, min(self.tasks_per_node, self.tasks_left))]
            self.tasks_left -= len(answer)
        return {name: answer}


def cap_name(name: Any) -> str:
    """A name of at most `MAX_NAME` characters; a cut one ends with a hash of the whole."""
    s = name if isinstance(name, str) else str(name)
    if len(s) <= MAX_NAME:
        return s
    digest = hashlib.sha256(s.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{s[:MAX_NAME - 14]}…~{digest}"


def text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A string field from the broker: a capped string, or None for anything else."""
    return value[:limit] if isinstance(value, str) else None


def number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and abs(value) > 2 ** 53:
        return None
    return value


def _age(q: dict[str, Any]) -> float:
    oldest = q.get("oldest") if isinstance(q.get("oldest"), dict) else None
    age = oldest.get("age_seconds") if oldest else None
    return float(age) if isinstance(age, (int, float)) else 0.0


def _head(h: Any) -> Any:
    if not isinstance(h, dict):
        return h
    return {**h, "task_id": text(h.get("task_id")), "task_name": text(h.get("task_name"))}


def _task(t: dict[str, Any]) -> dict[str, Any]:
    return {**t, "task_id": text(t.get("task_id")), "task_name": text(t.get("task_name")),
            "worker": cap_name(t.get("worker") if t.get("worker") is not None else ""),
            "queue": text(t.get("queue"), MAX_NAME), "pid": number(t.get("pid")),
            "runtime_seconds": number(t.get("runtime_seconds")), "started_at": text(t.get("started_at"), 40)}


def cap_queues(sources: dict[str, str], limit: int = MAX_QUEUES) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The queues to read (configured ones first, then discovered ones up to `limit`) and the
    `truncated` note when some were left unread."""
    if len(sources) <= limit:
        return sources, None
    order = sorted(sources.items(), key=lambda kv: kv[1] != "config")
    kept = dict(order[:max(limit, sum(1 for _, how in order if how == "config"))])
    return kept, {"queues": {"total": len(sources), "shown": len(kept), "pending_not_shown": None}}


def bound_snapshot(snap: dict[str, Any], max_queues: int = MAX_QUEUES, max_workers: int = MAX_WORKERS,
                   max_active: int = MAX_ACTIVE, max_bytes: int = MAX_SNAPSHOT_BYTES) -> dict[str, Any]:
    """`snap` with every part bounded (module docstring); `truncated` is null when nothing was cut."""
    truncated: dict[str, Any] = dict(snap.get("truncated") or {})  # what collect left unread
    queues = snap.get("queues")
    if isinstance(queues, dict):
        named: dict[str, Any] = {}
        for name, q in queues.items():
            if isinstance(q, dict):
                q = {**q, "oldest": _head(q.get("oldest")), "heads": [_head(h) for h in q.get("heads") or ()][:16]}
            named.setdefault(cap_name(name), q)
        configured = sum(1 for q in named.values() if isinstance(q, dict) and q.get("source") == "config")
        max_queues = max(max_queues, configured)  # the queues the user named are always shown
        if len(named) > max_queues:
            order = sorted(named.items(), key=lambda kv: (
                not (isinstance(kv[1], dict) and kv[1].get("source") == "config"),
                -(kv[1].get("pending") or 0) if isinstance(kv[1], dict) else 0,
                -_age(kv[1]) if isinstance(kv[1], dict) else 0.0, kv[0]))
            kept, left = dict(order[:max_queues]), order[max_queues:]
            truncated["queues"] = {"total": len(named), "shown": len(kept),
                                   "pending_not_shown": sum((q.get("pending") or 0) for _, q in left
                                                            if isinstance(q, dict))}
            named = kept
        snap["queues"] = named
    workers = snap.get("workers")
    if isinstance(workers, list):
        ws = [{**w, "name": cap_name(w.get("name", ""))} for w in workers if isinstance(w, dict)]
        if len(ws) > max_workers:
            ws.sort(key=lambda w: (w.get("alive") is True, w.get("name", "")))  # the down ones first
            truncated["workers"] = {"total": len(ws), "shown": max_workers,
                                    "alive_not_shown": sum(1 for w in ws[max_workers:] if w.get("alive") is True)}
            ws = ws[:max_workers]
        snap["workers"] = ws
    active = snap.get("active")
    if isinstance(active, list):
        ts = [_task(t) for t in active if isinstance(t, dict)]
        if len(ts) > max_active:
            ts.sort(key=lambda t: -(t.get("runtime_seconds") or 0))  # the longest-running: zombies first
            truncated["active"] = {"total": len(ts), "shown": max_active}
            ts = ts[:max_active]
        snap["active"] = ts
    snap["truncated"] = truncated or None
    return _fit(snap, max_bytes)


def _fit(snap: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Last resort: halve the detailed lists until the line fits (names of 200 characters × 500
    queues fit easily; this guards against what no cap foresaw)."""
    for _ in range(24):
        try:
            size = len(orjson.dumps(snap, option=orjson.OPT_NON_STR_KEYS, default=str))
        except TypeError:  # nested deeper than the serializer allows: drop what is not ours
            size = max_bytes + 1
        if size <= max_bytes:
            return snap
        t = snap["truncated"] = dict(snap.get("truncated") or {})
        t["bytes"] = {"over": size, "limit": max_bytes}
        for key in ("workers", "active"):
            if isinstance(snap.get(key), list) and snap[key]:
                snap[key] = snap[key][: len(snap[key]) // 2]
        if isinstance(snap.get("queues"), dict) and snap["queues"]:
            items = list(snap["queues"].items())
            snap["queues"] = dict(items[: len(items) // 2])
        for key in ("unacked", "broker_health", "beat", "connections"):
            if size > max_bytes and snap.get(key) not in (None, {}, []) and _too_big(snap.get(key), max_bytes // 8):
                snap[key] = None
    return snap


def _too_big(value: Any, limit: int) -> bool:
    try:
        return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str)) > limit
    except TypeError:
        return True
