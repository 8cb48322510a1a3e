"""The stream contract's check of a snapshot line: every field the rules read, before they read it.

A line that fails is reported with its line number and skipped; the stream goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doorman import SCHEMA_VERSION
from doorman.shapes import is_count, is_num
from doorman.timefmt import parse_iso


def _check_head(h: Any, where: Callable[[], str]) -> str | None:
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


def snapshot_problem(obj: dict[str, Any]) -> str | None:
    """Why `obj` is not a snapshot the rules can read (None: it is). Checks every field they use."""
    v = obj.get("v")
    if type(v) is not int or v != SCHEMA_VERSION:
        return "missing v" if v is None else f"v must be {SCHEMA_VERSION}, got {v!r}"
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
    for name in ("workers", "active"):
        items = obj.get(name)
        if items is not None and not isinstance(items, list):
            return f"{name} must be a list"
        for i, item in enumerate(items or ()):
            if not isinstance(item, dict):
                return f"{name}[{i}]: expected an object"
    for i, w in enumerate(obj.get("workers") or ()):
        if not isinstance(w.get("name"), str):
            return f"workers[{i}].name must be a string"
        if type(w.get("alive")) is not bool and not ("alive" in w and w["alive"] is None):
            return f"workers[{i}].alive must be true, false or null"  # null: unknown (a full broker)
    for i, t in enumerate(obj.get("active") or ()):
        if t.get("runtime_seconds") is not None and not is_num(t["runtime_seconds"]):
            return f"active[{i}].runtime_seconds must be a number or null"
    return None
