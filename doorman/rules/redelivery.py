"""redelivery_risk: an unacknowledged message nears (warning) or passes (critical) the visibility timeout.

On Redis, kombu hands a message that stays unacked longer than `visibility_timeout` to another
worker: a task running with `acks_late` (or prefetched behind a long one, or an ETA task) runs
twice (celery 3270, 2481, 4400, 7009). The age is the oldest `unacked_index` score (the delivery
time); the task ids and names are the oldest few messages the snapshot names. While no worker is
alive the message cannot be redelivered: that is `unacked_stranded`'s page, which holds this one.
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import as_map, is_num
from doorman.rules.base import (
    AlertType,
    BaseRule,
    Condition,
    Rule,
    Snapshot,
    State,
    condition,
    duration,
    plural,
)
from doorman.rules.broker_memory import num

MAX_NAMED = 5


def unacked_view(snapshot: Snapshot) -> tuple[float, float, list[dict[str, Any]]] | None:
    """(oldest age, visibility timeout, oldest messages) when the snapshot has them."""
    u = as_map(snapshot.get("unacked"))
    age, vt = num(u.get("oldest_age_seconds")), num(u.get("visibility_timeout"))
    if age is None or vt is None or vt <= 0:
        return None
    oldest = u.get("oldest")
    named = [m for m in oldest if isinstance(m, dict)][:MAX_NAMED] if isinstance(oldest, list) else []
    return age, vt, named


def tasks(named: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"task_id": m.get("task_id") if isinstance(m.get("task_id"), str) else None,
             "task_name": m.get("task_name") if isinstance(m.get("task_name"), str) else None,
             "age_seconds": m.get("age_seconds") if is_num(m.get("age_seconds")) else None} for m in named]


def names_text(named: list[dict[str, Any]]) -> str:
    parts = [f"{t['task_name'] or '?'}[{t['task_id'] or '?'}]" for t in tasks(named)[:3]]
    return f" ({', '.join(parts)})" if parts else ""


class RedeliveryRisk(BaseRule):
    name = "redelivery_risk"
    alert_types = (AlertType("redelivery_risk", ("warning", "critical"), "cluster",
                             "The oldest unacked message nears or passes the visibility timeout: it will run twice.",
                             inhibited_by=frozenset({"redis_down", "unacked_stranded"})),)
    settings = (
        Setting("redelivery_warn_ratio", "float", 0.8, ("REDELIVERY_WARN_RATIO",),
                "redelivery_risk warns when the oldest unacked message is this share of visibility_timeout old.",
                section=THRESHOLDS, positive=True),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        view = unacked_view(snapshot)
        if view is None or snapshot.get("alive_workers") == 0:
            return []  # no live worker: nothing redelivers it (unacked_stranded's business)
        age, vt, named = view
        ratio = config.thresholds.redelivery_warn_ratio
        if age < vt * ratio:
            return []
        u = as_map(snapshot.get("unacked"))  # a dict: unacked_view said so
        count = u.get("count") if is_num(u.get("count")) else None
        overdue = u.get("overdue") if is_num(u.get("overdue")) else None
        details = {"oldest_age_seconds": age, "visibility_timeout": vt, "ratio": round(age / vt, 3),
                   "unacked": count, "overdue": overdue, "tasks": tasks(named)}
        who = names_text(named)
        if age >= vt:
            n = overdue or 1
            return [condition(
                "redelivery_risk", "critical", "cluster", "Unacked tasks past the visibility timeout",
                f"{plural(n, 'unacked message')} older than the visibility timeout ({duration(vt)}), the oldest "
                f"{duration(age)}{who}: kombu hands them to another worker and the tasks run twice.",
                details)]
        return [condition(
            "redelivery_risk", "warning", "cluster", "Unacked task near the visibility timeout",
            f"The oldest unacked message{who} is {duration(age)} old, {age / vt:.0%} of the visibility "
            f"timeout ({duration(vt)}): past it, kombu redelivers it and the task runs twice.",
            details)]


RULE: Rule = RedeliveryRisk()
