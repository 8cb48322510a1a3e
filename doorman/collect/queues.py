"""Queue depth, the oldest waiting message, and the unacked set — read-only, two round trips.

Depth is counted as kombu counts it (`_size`): LLEN summed over every priority list. The next
message out of a list is its tail (`LINDEX -1`), so each non-empty list's tail is read too; both
are O(1), so cost does not grow with depth. Messages are parsed defensively: only the JSON
headers are read, never a body, so pickle or garbage items cannot hurt.
"""

from __future__ import annotations

from typing import Any

import orjson

from doorman.collect.keys import Keys, decode, display
from doorman.config import Config
from doorman.timefmt import iso, sane_epoch

INTERNAL_EXCHANGES = ("celery.pidbox", "celeryev", "reply.celery.pidbox")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def discover_exchanges(client: Any, keys: Keys) -> list[str]:
    """Exchanges that have kombu binding sets. Celery gives each queue its own exchange by default,
    so the sets cannot be guessed. SCAN (never KEYS) walks the keyspace in small steps without
    blocking Redis; its cost grows with the number of keys, not with queue depth, and the daemon
    caches the answer."""
    head = keys.binding("")
    found = set()
    for raw in client.scan_iter(match=_glob_escape(head) + "*", count=1000):
        name = decode(raw)[len(head):]
        if name and name not in INTERNAL_EXCHANGES and not name.endswith(".pidbox"):
            found.add(name)
    return sorted(found)


def read_topology(client: Any, keys: Keys, cfg: Config, exchanges: list[str]) -> dict[str, Any]:
    """Queues to read (config + kombu bindings), worker nodes known from pidbox bindings, unacked stats."""
    exchanges = list(dict.fromkeys([*cfg.exchanges, *exchanges]))
    pipe = client.pipeline(transaction=False)
    for exchange in exchanges:
        pipe.smembers(keys.binding(exchange))
    pipe.smembers(keys.pidbox_binding)
    pipe.zcard(keys.unacked_index)
    pipe.zrange(keys.unacked_index, 0, 0, withscores=True)
    replies = pipe.execute()

    queues: dict[str, str] = {q: "config" for q in cfg.monitored_queues}
    for members in replies[: len(exchanges)]:
        for m in sorted(members or ()):
            q = keys.binding_queue(decode(m))
            if q and q not in queues:
                queues[q] = "binding"
    nodes = []
    for m in sorted(replies[len(exchanges)] or ()):
        q = keys.binding_queue(decode(m))
        if q and q.endswith(".celery.pidbox"):
            nodes.append(q[: -len(".celery.pidbox")])
    count, oldest = replies[-2], replies[-1]
    oldest_at = sane_epoch(float(oldest[0][1])) if oldest else None
    return {"queues": queues, "nodes": nodes, "unacked_count": int(count or 0), "unacked_oldest": oldest_at}


def parse_message(raw: bytes | None, header: str) -> dict[str, Any]:
    """Task id, name and publish stamp of a queued message; never raises."""
    if raw is None:
        return {}
    try:
        msg = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return {"task_id": None, "task_name": None, "unparseable": True}
    if not isinstance(msg, dict):
        return {"task_id": None, "task_name": None, "unparseable": True}
    headers = msg.get("headers") if isinstance(msg.get("headers"), dict) else {}
    props = msg.get("properties") if isinstance(msg.get("properties"), dict) else {}
    task_id = headers.get("id") or props.get("correlation_id")
    published = sane_epoch(headers.get(header))
    return {
        "task_id": task_id if isinstance(task_id, str) else None,
        "task_name": headers.get("task") if isinstance(headers.get("task"), str) else None,
        "published": published,
    }


def read_queues(client: Any, keys: Keys, names: list[str], cfg: Config, now: float) -> dict[str, Any]:
    """Depth per priority and the waiting head of every non-empty list, in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    layout = []
    for q in names:
        lists = keys.queue_lists(q)
        layout.append((q, lists))
        for _step, key in lists:
            pipe.llen(key)
            pipe.lindex(key, -1)
    replies = pipe.execute()

    out: dict[str, Any] = {}
    i = 0
    for q, lists in layout:
        by_priority: dict[str, int] = {}
        heads = []
        for step, _key in lists:
            depth, tail = int(replies[i] or 0), replies[i + 1]
            i += 2
            by_priority[str(step)] = depth
            if depth and tail is not None:
                m = parse_message(tail, cfg.publish_time_header)
                pub = m.pop("published", None)
                heads.append({
                    "priority": step,
                    **m,
                    "published_at": iso(pub) if pub is not None else None,
                    "age_seconds": round(max(0.0, now - pub), 3) if pub is not None else None,
                })
        out[display(q)] = {
            "pending": sum(by_priority.values()),
            "by_priority": by_priority,
            "oldest": _oldest(heads),
            "heads": heads,
        }
    return out


def _oldest(heads: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The head waiting longest: by publish stamp when stamped, else the lowest-priority list's head
    (served last, so it has waited at least as long as the others are likely to have)."""
    if not heads:
        return None
    stamped = [h for h in heads if h["age_seconds"] is not None]
    if stamped:
        h = max(stamped, key=lambda h: h["age_seconds"])
        return {**h, "age_source": "published_header"}
    return {**heads[-1], "age_source": None}
