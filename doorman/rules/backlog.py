"""backlog_explosion: more tasks waiting than `max_queue_size`.

The total over all queues is compared with the global `max_queue_size` (subject `cluster`); a queue
with its own `thresholds.queues.<name>.max_queue_size` is also compared with that on its own
(subject `queue:<name>`).
"""

from __future__ import annotations

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.rules.base import (
    OUTAGE,
    AlertType,
    BaseRule,
    Condition,
    Rule,
    Snapshot,
    State,
    condition,
    plural,
)


class Backlog(BaseRule):
    name = "backlog"
    alert_types = (AlertType("backlog_explosion", ("critical",), "cluster | queue:<name>",
                             "More tasks pending than max_queue_size (in all, or in one queue with its own limit).",
                             inhibited_by=OUTAGE),)
    settings = (
        Setting("max_queue_size", "int", 1000, ("MAX_QUEUE_SIZE",), "Total pending tasks above this: backlog.",
                section=THRESHOLDS, per_queue=True),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        th = config.thresholds
        queues = snapshot["queues"]
        total = snapshot.get("pending_tasks")
        if total is None:
            total = sum(q["pending"] for q in queues.values())
        out = []
        if total > th.max_queue_size:
            counts = {name: q["pending"] for name, q in queues.items()}
            out.append(condition(
                "backlog_explosion", "critical", "cluster", "Backlog explosion",
                f"{plural(total, 'task')} pending, above the limit of {th.max_queue_size}.",
                {"total_pending": total, "threshold": th.max_queue_size, "queues": counts},
            ))
        for name, over in th.queues.items():
            limit = over.get("max_queue_size")
            q = queues.get(name)
            if limit is None or q is None or q["pending"] <= limit:
                continue
            out.append(condition(
                "backlog_explosion", "critical", f"queue:{name}", f"Backlog explosion in {name}",
                f"Queue {name} has {plural(q['pending'], 'task')} pending, above its limit of {limit}.",
                {"queue": name, "pending": q["pending"], "threshold": limit, "total_pending": total},
            ))
        return out


RULE: Rule = Backlog()
