"""What liveness needs from Redis: the connection table, a targeted ping, and each worker's queues
and pool size (`active_queues` and `stats` over the pidbox, the same request/reply path as `active`).

Everything here is read-only on the broker but for what every pidbox request writes already (the
temporary reply binding and list, removed before returning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from doorman.brokers.base import ConnectionTable, WorkerInfo, decode
from doorman.brokers.redis.clients import parse_client_list
from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.pidbox import broadcast
from doorman.brokers.redis.wire import active_queues, mapping


def read_connections(client: redis.Redis) -> ConnectionTable:
    """One `CLIENT LIST` (sent as two words so redis-py hands back the raw reply, parsed here)."""
    raw = client.execute_command("CLIENT", "LIST")
    return parse_client_list(raw if isinstance(raw, bytes) else str(raw).encode())


def ping(client: redis.Redis, keys: Keys, names: Sequence[str], timeout: float, block_max: float) -> set[str]:
    """The workers of `names` that answer a ping addressed to them alone within `timeout`."""
    if not names:
        return set()
    _receivers, replies = broadcast(client, keys, "ping", timeout, block_max=block_max, destination=names)
    return {decode(n) for n in replies} & set(names)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def worker_info(client: redis.Redis, keys: Keys, timeout: float, block_max: float) -> dict[str, WorkerInfo]:
    """{worker: its queues, pool size, tasks processed} for the workers that answered both requests
    (a worker that answered one only gets None for the other's figures)."""
    _n, queues = broadcast(client, keys, "active_queues", timeout, block_max=block_max)
    _n, stats = broadcast(client, keys, "stats", timeout, block_max=block_max)
    out: dict[str, WorkerInfo] = {}
    for node in set(queues) | set(stats):
        names, exchanges = active_queues(queues.get(node))
        st = mapping(stats.get(node))
        pool = mapping(st.get("pool"))
        totals = mapping(st.get("total"))
        counts = [v for v in (_int(x) for x in totals.values()) if v is not None]
        processed = sum(counts) if node in stats else None
        out[decode(node)] = WorkerInfo(names, _int(pool.get("max-concurrency")), processed, exchanges)
    return out
