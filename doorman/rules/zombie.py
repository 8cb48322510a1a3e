"""zombie_tasks: tasks running longer than `max_task_runtime_seconds` (hung, or looping)."""

from __future__ import annotations

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.rules.base import (
    AlertType,
    BaseRule,
    Condition,
    Rule,
    Snapshot,
    State,
    condition,
    over_limit,
    plural,
)

LISTED = 50


class Zombie(BaseRule):
    name = "zombie"
    alert_types = (AlertType("zombie_tasks", ("warning",), "cluster",
                             "Tasks running longer than max_task_runtime_seconds (hung, or looping)."),)
    settings = (
        Setting("max_task_runtime_seconds", "float", 1800.0, ("MAX_TASK_RUNTIME",),
                "A task running longer than this is a zombie.", section=THRESHOLDS),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        limit = config.thresholds.max_task_runtime_seconds
        slow = [t for t in snapshot.get("active") or ()
                if isinstance(t.get("runtime_seconds"), (int, float)) and t["runtime_seconds"] > limit]
        if not slow:
            return []
        slow.sort(key=lambda t: (-(t["runtime_seconds"] or 0), str(t.get("task_id"))))
        tasks = [{k: t.get(k) for k in ("task_id", "task_name", "worker", "runtime_seconds", "queue")}
                 for t in slow[:LISTED]]
        first = tasks[0]
        more = f" and {len(slow) - 1} more" if len(slow) > 1 else ""
        ran, most = over_limit(slow[0]["runtime_seconds"] or 0, limit)
        return [condition(
            "zombie_tasks", "warning", "cluster", "Zombie tasks",
            f"{plural(len(slow), 'task')} running longer than {most}: {first['task_name']} "
            f"{first['task_id']} on {first['worker']} for {ran}{more}.",
            {"count": len(slow), "threshold": limit, "tasks": tasks},
        )]


RULE: Rule = Zombie()
