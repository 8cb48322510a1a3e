"""Who the oldest unacknowledged messages are: task id and name from kombu's `unacked` hash.

`unacked_index` (a ZSET scored by delivery time) gives the oldest delivery tags; the `unacked`
hash holds each one's `[message, exchange, routing_key]`. A message can be large (task
arguments), so its length is read first (`HSTRLEN`) and only messages up to `MAX_BYTES` are
fetched; the others show as `task_id: null`. What a tag resolves to never changes, so answers are
cached (bounded): a stuck message costs nothing after the first snapshot that sees it.
Read-only: HSTRLEN and HMGET.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis

from doorman.brokers.base import UnackedMessage, decode
from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.wire import mapping

OLDEST = 5  # messages named in the snapshot
MAX_BYTES = 256 * 1024
CACHE = 256

Named = tuple[str | None, str | None]  # (task id, task name)


def _name(raw: bytes | str | None) -> Named:
    if raw is None:
        return None, None
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    msg = mapping(item[0] if isinstance(item, list) and item else None)
    headers, props = mapping(msg.get("headers")), mapping(msg.get("properties"))
    task_id = headers.get("id") or props.get("correlation_id")
    task = headers.get("task")
    return (task_id[:200] if isinstance(task_id, str) else None, task[:200] if isinstance(task, str) else None)


class Names:
    """Delivery tag -> (task id, task name), remembered across snapshots."""

    def __init__(self) -> None:
        self.known: dict[str, Named] = {}

    def of(self, client: redis.Redis, keys: Keys, tags: Sequence[bytes]) -> list[Named]:
        unknown = [t for t in tags if decode(t) not in self.known]
        if unknown:
            pipe = client.pipeline(transaction=False)
            for t in unknown:
                pipe.hstrlen(keys.unacked, t)
            sizes = pipe.execute()
            small = [t for t, n in zip(unknown, sizes, strict=True) if 0 < int(n or 0) <= MAX_BYTES]
            fetched = dict(zip(small, client.hmget(keys.unacked, small), strict=True)) if small else {}
            if len(self.known) + len(unknown) > CACHE:
                self.known.clear()
            for t in unknown:
                self.known[decode(t)] = _name(fetched.get(t))
        return [self.known[decode(t)] for t in tags]


def messages(names: Names, client: redis.Redis, keys: Keys,
             oldest: Sequence[tuple[bytes, float]]) -> tuple[UnackedMessage, ...]:
    """The oldest entries of `unacked_index` (tag, score), named."""
    named = names.of(client, keys, [t for t, _ in oldest])
    return tuple({"task_id": tid, "task_name": task, "delivered_at": at}
                 for (tid, task), (_, at) in zip(named, oldest, strict=True))
