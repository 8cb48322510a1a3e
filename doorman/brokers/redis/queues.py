"""Queue depth, the oldest waiting message, and the unacked set — read-only, two round trips.

Depth is counted as kombu counts it (`_size`): LLEN summed over every priority list. The next
message out of a list is its tail (`LINDEX -1`), so each non-empty list's tail is read too; both
are O(1), so cost does not grow with depth. Messages are parsed defensively: only the JSON
headers are read, never a body, so pickle or garbage items cannot hurt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import orjson
import redis

from doorman.brokers.base import MessageHead, QueueState, Topology, Unacked, decode
from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.wire import mapping
from doorman.timefmt import iso, sane_epoch


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def discover_exchanges(client: redis.Redis, keys: Keys) -> list[str]:
    """Exchanges that have kombu binding sets. Celery gives each queue its own exchange by default,
    so the sets cannot be guessed. SCAN (never KEYS) walks the keyspace in small steps without
    blocking Redis; its cost grows with the number of keys, not with queue depth, and the daemon
    caches the answer."""
    head = keys.binding("")
    found = set()
    for raw in client.scan_iter(match=_glob_escape(head) + "*", count=1000):
        name = decode(raw)[len(head):]
        if name and not keys.internal(name):
            found.add(name)
    return sorted(found)


def read_topology(client: redis.Redis, keys: Keys, exchanges: Sequence[str],
                  visibility_timeout: float) -> Topology:
    """Queues bound to `exchanges`, worker nodes known from pidbox bindings, unacked stats."""
    pipe = client.pipeline(transaction=False)
    for exchange in exchanges:
        pipe.smembers(keys.binding(exchange))
    pipe.smembers(keys.pidbox_binding)
    pipe.zcard(keys.unacked_index)
    pipe.zrange(keys.unacked_index, 0, 0, withscores=True)
    replies = pipe.execute()

    queues: dict[str, str] = {}
    for members in replies[: len(exchanges)]:
        for m in sorted(members or ()):
            q = keys.binding_queue(decode(m))
            if q and q not in queues:
                queues[q] = "binding"
    nodes = []
    for m in sorted(replies[len(exchanges)] or ()):
        q = keys.binding_queue(decode(m))
        node = keys.pidbox_node(q) if q else None
        if node is not None:
            nodes.append(node)
    count, oldest = replies[-2], replies[-1]
    oldest_at = sane_epoch(float(oldest[0][1])) if oldest else None
    return Topology(queues, nodes, Unacked(int(count or 0), oldest_at, visibility_timeout))


class Parsed(NamedTuple):
    task_id: str | None
    task_name: str | None
    published: float | None  # the publish stamp, if the message carries a plausible one
    unparseable: bool = False


UNPARSEABLE = Parsed(None, None, None, True)


def parse_message(raw: bytes | str, header: str) -> Parsed:
    """Task id, name and publish stamp of a queued message; never raises."""
    try:
        msg = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return UNPARSEABLE
    if not isinstance(msg, dict):
        return UNPARSEABLE
    headers, props = mapping(msg.get("headers")), mapping(msg.get("properties"))
    task_id = headers.get("id") or props.get("correlation_id")
    task = headers.get("task")
    return Parsed(task_id if isinstance(task_id, str) else None, task if isinstance(task, str) else None,
                  sane_epoch(headers.get(header)))


def _head(step: int, m: Parsed, now: float) -> MessageHead:
    head: MessageHead = {"priority": step, "task_id": m.task_id, "task_name": m.task_name}
    if m.unparseable:
        head["unparseable"] = True
    pub = m.published
    head["published_at"] = iso(pub) if pub is not None else None
    head["age_seconds"] = round(max(0.0, now - pub), 3) if pub is not None else None
    return head


def read_queues(client: redis.Redis, keys: Keys, names: Sequence[str], header: str,
                now: float) -> dict[str, QueueState]:
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

    out: dict[str, QueueState] = {}
    i = 0
    for q, lists in layout:
        by_priority: dict[str, int] = {}
        heads: list[MessageHead] = []
        for step, _key in lists:
            depth, tail = int(replies[i] or 0), replies[i + 1]
            i += 2
            by_priority[str(step)] = depth
            if depth and tail is not None:
                heads.append(_head(step, parse_message(tail, header), now))
        out[q] = {
            "pending": sum(by_priority.values()),
            "by_priority": by_priority,
            "oldest": _oldest(heads),
            "heads": heads,
        }
    return out


def _oldest(heads: list[MessageHead]) -> MessageHead | None:
    """The head waiting longest: by publish stamp when stamped, else the lowest-priority list's head
    (served last, so it has waited at least as long as the others are likely to have)."""
    if not heads:
        return None
    stamped = [h for h in heads if h["age_seconds"] is not None]
    if stamped:
        h = max(stamped, key=lambda h: h["age_seconds"] or 0.0)
        return {**h, "age_source": "published_header"}
    return {**heads[-1], "age_source": None}
