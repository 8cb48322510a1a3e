"""celery beat's traces on Redis, read in one pipelined round trip (GET, PTTL, ZCARD, ZCOUNT,
ZRANGEBYSCORE): a canary key any scheduler's periodic task refreshes, and RedBeat's own keys.

RedBeat (the `celery-redbeat` scheduler) keeps `<prefix>:lock`, which a live beat extends on every
tick and deletes on a clean stop, and `<prefix>:schedule`, a ZSET of entry keys scored by their
next due time (negative: never due again). See sibson/redbeat `schedulers.py`.
"""

from __future__ import annotations

import redis

from doorman.brokers.base import BeatState, decode, display
from doorman.contract.snapshot import LateEntry

MAX_LATE = 10  # overdue entries named in the snapshot
MAX_VALUE = 64  # bytes of the canary's value looked at


def canary_time(raw: bytes | None) -> float | None:
    """The Unix time a canary holds (`1764500000` or `1764500000.25`), or None when it is not one."""
    if raw is None:
        return None
    try:
        value = float(raw[:MAX_VALUE])
    except ValueError:
        return None
    return value if 0 < value < 1e11 else None


def read(client: redis.Redis, now: float, canary_key: str | None, redbeat_prefix: str | None,
         grace: float) -> BeatState:
    pipe = client.pipeline(transaction=False)
    if canary_key:
        pipe.get(canary_key)
    if redbeat_prefix:
        schedule = redbeat_prefix + ":schedule"
        pipe.pttl(redbeat_prefix + ":lock")
        pipe.zcard(schedule)
        pipe.zcount(schedule, 0, now - grace)
        pipe.zrangebyscore(schedule, 0, now - grace, start=0, num=MAX_LATE, withscores=True)
    replies = pipe.execute()
    out: BeatState = {"canary": None, "redbeat": None}
    if canary_key:
        raw = replies.pop(0)
        at = canary_time(raw)
        out["canary"] = {
            "key": canary_key, "present": raw is not None, "readable": at is not None or raw is None,
            "value_at": at, "age_seconds": round(now - at, 3) if at is not None else None,
        }
    if redbeat_prefix:
        pttl, entries, late_count, late = replies
        pttl = int(pttl)
        head = redbeat_prefix
        late_entries: list[LateEntry] = []
        for member, score in late or ():
            name = decode(member)
            late_entries.append({"name": display(name[len(head):] if name.startswith(head) else name)[:200],
                                 "due_at": float(score), "late_seconds": round(now - float(score), 3)})
        out["redbeat"] = {
            "prefix": redbeat_prefix,
            "lock_present": pttl != -2,  # -2: no key; -1: a key without expiry (a lock never times out)
            "lock_ttl_seconds": round(pttl / 1000, 3) if pttl >= 0 else None,
            "entries": int(entries or 0),
            "late_count": int(late_count or 0),
            "late": late_entries,
        }
    return out
