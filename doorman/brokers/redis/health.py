"""The Redis server's health (memory, eviction, OOM, keyspace) from one `INFO`, never `CONFIG`.

`CONFIG GET` is refused by managed Redis (ElastiCache, Memorystore) and needs a broader ACL, while
`INFO` reports the same `maxmemory` and `maxmemory_policy`. One `INFO` costs one round trip; its
parsing is bounded by the reply (a few KB). Every field is checked: a figure Redis does not give
(an old server without `errorstats`) is null, never a guess.
"""

from __future__ import annotations

from typing import Any

import redis

from doorman.brokers.base import BrokerHealth

# INFO's sections Doorman reads: `default` is all of them but `commandstats` and `latencystats`;
# naming them one by one needs Redis 7, so `default` it is (one reply of 4-6 KB).
SECTION = "default"
MAX_DBS = 64


def _int(info: dict[str, Any], name: str) -> int | None:
    v = info.get(name)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _str(info: dict[str, Any], name: str) -> str | None:
    v = info.get(name)
    return str(v)[:64] if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None


def _oom(info: dict[str, Any]) -> int | None:
    """Writes refused for OOM since start (`errorstat_OOM:count=N`); 0 when the section is there
    but no OOM happened yet, None when the server has no error statistics (Redis < 6.2)."""
    stat = info.get("errorstat_OOM")
    if isinstance(stat, dict):
        count = stat.get("count")
        return count if isinstance(count, int) and not isinstance(count, bool) else None
    return 0 if "total_error_replies" in info else None


def _keyspace(info: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, value in info.items():
        if not (isinstance(name, str) and name.startswith("db") and name[2:].isdigit() and isinstance(value, dict)):
            continue
        keys, expires = value.get("keys"), value.get("expires")
        if isinstance(keys, int) and isinstance(expires, int):
            out[name] = {"keys": keys, "expires": expires}
        if len(out) >= MAX_DBS:
            break
    return out


def parse(info: dict[str, Any]) -> BrokerHealth:
    """`broker_health` from redis-py's parsed `INFO` reply."""
    return {
        "server": "redis",
        "version": _str(info, "redis_version"),
        "used_memory_bytes": _int(info, "used_memory"),
        "max_memory_bytes": _int(info, "maxmemory"),
        "eviction_policy": _str(info, "maxmemory_policy"),
        "evicted_keys": _int(info, "evicted_keys"),
        "oom_errors": _oom(info),
        "connected_clients": _int(info, "connected_clients"),
        "keyspace": _keyspace(info),
        "alarms": None,  # RabbitMQ's memory and disk alarms; Redis has none
    }


def read(client: redis.Redis) -> BrokerHealth:
    return parse(client.info(SECTION))


def is_oom(error: Exception) -> bool:
    """A write refused because memory is full (`OOM command not allowed when used memory > 'maxmemory'`),
    as such or as the EXECABORT of a transaction one of whose commands it refused."""
    return isinstance(error, redis.OutOfMemoryError) or (
        isinstance(error, redis.ResponseError) and "OOM" in str(error)[:200])
