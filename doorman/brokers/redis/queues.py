"""Queue depth, the oldest waiting message, and the unacked set — read-only, two round trips.

Depth is counted as kombu counts it (`_size`): LLEN summed over every priority list. The next
message out of a list is its tail (`LINDEX -1`), so each non-empty list's tail is read too; both
are O(1), so cost does not grow with depth. Messages are parsed defensively: only the JSON
headers are read, never a body, so pickle or garbage items cannot hurt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
import redis

from doorman.bounds import MAX_HEAD_BYTES
from doorman.brokers.base import MessageHead, QueueState, Topology, Unacked, decode
from doorman.brokers.redis import bounded, unacked
from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.wire import mapping
from doorman.timefmt import iso, sane_epoch


def read_topology(client: redis.Redis, keys: Keys, exchanges: Sequence[str],
                  visibility_timeout: float, now: float | None = None,
                  names: unacked.Names | None = None) -> Topology:
    """Queues bound to `exchanges`, worker nodes known from pidbox bindings, unacked stats (with
    `now`: how many are past the visibility timeout; with `names`: who the oldest few are)."""
    # binding sets can be grown by any client: read within a budget (doorman.brokers.redis.bounded)
    sets = bounded.set_members(client, [*(keys.binding(e) for e in exchanges), keys.pidbox_binding])
    pipe = client.pipeline(transaction=False)
    if now is not None:
        pipe.zcount(keys.unacked_index, "-inf", now - visibility_timeout)
    pipe.zcard(keys.unacked_index)
    pipe.zrange(keys.unacked_index, 0, (unacked.OLDEST if names else 1) - 1, withscores=True)
    replies = pipe.execute(raise_on_error=False)
    for i, r in enumerate(replies):  # only the newer, optional reads may be refused by an older ACL
        if isinstance(r, Exception) and not (now is not None and i == len(replies) - 3
                                             and isinstance(r, redis.exceptions.NoPermissionError)):
            raise r

    queues: dict[str, str] = {}
    for members in sets[:-1]:
        for m in sorted(members or ()):
            q = keys.binding_queue(decode(m))
            if q and q not in queues:
                queues[q] = "binding"
    nodes = []
    for m in sorted(sets[-1]):
        q = keys.binding_queue(decode(m))
        node = keys.pidbox_node(q) if q else None
        if node is not None:
            nodes.append(node)
    count, oldest = replies[-2], replies[-1]
    oldest_at = sane_epoch(float(oldest[0][1])) if oldest else None
    overdue = int(replies[-3] or 0) if now is not None and not isinstance(replies[-3], Exception) else None
    entries = [(t, at) for t, score in oldest or () if (at := sane_epoch(float(score))) is not None]
    try:
        named = unacked.messages(names, client, keys, entries) if names and entries else ()
    except redis.exceptions.NoPermissionError:  # an ACL without HMGET/HSTRLEN: the names are unknown
        named = ()
    return Topology(queues, nodes, Unacked(int(count or 0), oldest_at, visibility_timeout, overdue, named))


class Parsed(NamedTuple):
    task_id: str | None
    task_name: str | None
    published: float | None  # the publish stamp, if the message carries a plausible one
    unparseable: bool = False


UNPARSEABLE = Parsed(None, None, None, True)


def parse_message(raw: bytes | str, header: str) -> Parsed:
    """Task id, name and publish stamp of a queued message; never raises. A message over the byte
    budget (doorman.bounds.MAX_HEAD_BYTES) is not parsed at all: unparseable."""
    if not isinstance(raw, (bytes, str)) or len(raw) > MAX_HEAD_BYTES:
        return UNPARSEABLE
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


# The head of a list within a byte budget: LINDEX inside the server, and only its size comes back
# when it is over the budget (a list item has no GETRANGE). Redis still copies the item once
# (as a plain LINDEX does into its reply); the client never receives more than the budget.
HEAD_SCRIPT = """
local v = redis.call('LINDEX', KEYS[1], -1)
if not v then return false end
if string.len(v) > tonumber(ARGV[1]) then return string.len(v) end
return v
"""


def _heads_fallback(client: redis.Redis, layout: list[tuple[str, Any]], replies: list[Any]) -> list[Any]:
    """Where EVAL_RO was refused (Redis < 7, scripting disabled, an ACL without +eval_ro), read
    those heads with a plain LINDEX: whole, as before (docs/security.md says what that costs)."""
    keys = [key for _q, lists in layout for _step, key in lists]
    refused = [n for n in range(1, len(replies), 2) if isinstance(replies[n], redis.ResponseError)]
    for n, r in enumerate(replies):
        if isinstance(r, Exception) and n not in refused:
            raise r
    if refused:
        pipe = client.pipeline(transaction=False)
        for n in refused:
            pipe.lindex(keys[n // 2], -1)
        for n, item in zip(refused, pipe.execute(), strict=True):
            replies[n] = item
    return replies


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
            pipe.execute_command("EVAL_RO", HEAD_SCRIPT, 1, key, MAX_HEAD_BYTES)
    replies = _heads_fallback(client, layout, pipe.execute(raise_on_error=False))

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
