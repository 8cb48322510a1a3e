"""Reading sets any broker client can grow without limit (kombu binding sets), within a budget.

`SMEMBERS` of a set with a million fake pidbox bindings costs seconds and hundreds of MiB in the
client. `SCARD` first (O(1)); a set over the budget is read with one `SSCAN … COUNT budget`,
which returns about that many members (Redis visits that many hash buckets): a bounded, arbitrary
part of it. Which part does not matter for alerts: configured queues are always read, and real
workers are also known from their replies and heartbeats. An ACL without `SCARD`/`SSCAN` (a rule
written before they were needed) falls back to the unbounded `SMEMBERS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from doorman.bounds import MAX_QUEUES, MAX_WORKERS

MAX_MEMBERS = 2 * max(MAX_QUEUES, MAX_WORKERS)  # members read from one binding set


def set_members(client: redis.Redis, keys: Sequence[str], limit: int = MAX_MEMBERS) -> list[set[bytes]]:
    """The members of each set of `keys` (at most about `limit` of each), in two round trips."""
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.scard(k)
    try:
        sizes: list[int | None] = [int(n or 0) for n in pipe.execute()]
    except redis.exceptions.NoPermissionError:
        sizes = [None] * len(keys)
    pipe = client.pipeline(transaction=False)
    for k, n in zip(keys, sizes, strict=True):
        if n is None or n <= limit:
            pipe.smembers(k)
        else:
            pipe.sscan(k, 0, count=limit)
    out: list[set[bytes]] = []
    for reply in pipe.execute():
        if isinstance(reply, (list, tuple)):  # SSCAN: (cursor, members)
            out.append(set(list(reply[1])[: limit * 2]))
        else:
            out.append(set(reply or ()))
    return out
