"""broker_eviction_policy / broker_memory_high: a Redis broker that may evict queues, or is nearly full.

Read from `broker_health` (`INFO`, never `CONFIG`). With `maxmemory` set and a policy other than
`noeviction`, Redis deletes keys when full: `allkeys-*` can take a queue (its tasks are gone) or a
`_kombu.binding.*` set (publishes then route nowhere: kombu's `InconsistencyError`); `volatile-*`
takes result keys and locks. Celery's Redis docs ask for `noeviction`. With `noeviction` a full
Redis refuses writes instead (`broker_oom`): `broker_memory_high` warns before that.
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import as_map, is_count, is_num
from doorman.rules.base import AlertType, BaseRule, Condition, Rule, Snapshot, State, condition

BROKER_DOWN = frozenset({"redis_down"})


def health(snapshot: Snapshot) -> dict[str, Any]:
    return as_map(snapshot.get("broker_health"))


def count(v: Any) -> int | None:
    """`v` when it is a non-negative integer (JSON's true is not one), else None."""
    return v if is_count(v) else None


def num(v: Any) -> float | None:
    return float(v) if is_num(v) else None


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


class BrokerMemory(BaseRule):
    name = "broker_memory"
    alert_types = (
        AlertType("broker_eviction_policy", ("warning",), "policy:<maxmemory-policy>",
                  "maxmemory is set with an eviction policy other than noeviction: queues can be evicted. "
                  "Told once, and again when the policy changes.",
                  inhibited_by=BROKER_DOWN, reminders=False),
        AlertType("broker_memory_high", ("critical",), "cluster",
                  "The broker's used memory is above max_broker_memory_ratio of maxmemory.",
                  inhibited_by=BROKER_DOWN),
    )
    settings = (
        Setting("max_broker_memory_ratio", "float", 0.9, ("MAX_BROKER_MEMORY_RATIO",),
                "broker_memory_high fires above this share of the broker's maxmemory.",
                section=THRESHOLDS, positive=True),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        h = health(snapshot)
        used, limit, policy = count(h.get("used_memory_bytes")), count(h.get("max_memory_bytes")), h.get("eviction_policy")
        if not limit:
            return []  # no limit: Redis grows until the machine's OOM killer, not ours to see
        out = []
        if isinstance(policy, str) and policy != "noeviction":
            out.append(condition(
                "broker_eviction_policy", "warning", f"policy:{policy[:64]}", "Broker may evict queues",
                f"The broker has maxmemory {mib(limit)} with maxmemory-policy {policy}: when full it deletes "
                f"keys, which can be queued tasks or kombu's bindings. Set maxmemory-policy noeviction "
                f"(CONFIG SET, redis.conf, or your provider's parameter group) or give Celery a Redis of its own.",
                {"eviction_policy": policy[:64], "max_memory_bytes": limit}))
        ratio = config.thresholds.max_broker_memory_ratio
        if used is not None and used > limit * ratio:
            out.append(condition(
                "broker_memory_high", "critical", "cluster", "Broker memory nearly full",
                f"The broker uses {mib(used)} of its maxmemory {mib(limit)} ({used / limit:.0%}, threshold "
                f"{ratio:.0%}): next it "
                + ("raises its memory alarm and blocks every publisher (RabbitMQ's vm_memory_high_watermark)."
                   if h.get("server") == "rabbitmq" else
                   "refuses publishes (noeviction)." if policy == "noeviction" else f"evicts keys ({policy})."),
                {"used_memory_bytes": used, "max_memory_bytes": limit, "ratio": round(used / limit, 4),
                 "threshold": ratio, "eviction_policy": policy if isinstance(policy, str) else None}))
        return out


RULE: Rule = BrokerMemory()
