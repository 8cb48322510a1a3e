"""task_retry_storm: one task name retries more than it runs, over the last window.

Over `task_failure_window_seconds`, retries (task-retried events) of one task name above
`task_retry_ratio` of its runs (task-started events, every try counts) **and** at least
`task_retry_min_count` retries. With the default 0.5, one retry in every two tries: a task that
retries its way through an outage downstream, hammering it and filling the queues with its own
retries, while the failure rate stays low until the retries run out.
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.rules import taskwindow as tw
from doorman.rules.base import (
    OUTAGE,
    AlertType,
    Condition,
    Snapshot,
    State,
    condition,
    duration,
    plural,
)
from doorman.textsafe import printable


def _pick(c: dict[str, Any]) -> tw.Vec:
    return {"retried": float(tw.count(c.get("retried"))), "started": float(tw.count(c.get("started")))}


class TaskRetryStorm(tw.WindowedTaskRule):
    name = "task_retry_storm"
    alert_types = (AlertType("task_retry_storm", ("warning",), "task:<name>",
                             "Over the window, a task's retries exceed task_retry_ratio of its runs and "
                             "task_retry_min_count.", inhibited_by=OUTAGE),)
    settings = (
        Setting("task_retry_ratio", "float", 0.5, ("TASK_RETRY_RATIO",),
                "task_retry_storm fires when a task's retries exceed this share of its runs (started).",
                section=THRESHOLDS, positive=True),
        Setting("task_retry_min_count", "int", 10, ("TASK_RETRY_MIN_COUNT",),
                "task_retry_storm needs at least this many retries in the window.",
                section=THRESHOLDS, positive=True),
    )

    pick = staticmethod(_pick)

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        if tw.tasks_of(snapshot) is None:
            return []
        th = config.thresholds
        window = th.task_failure_window_seconds
        out = []
        for name, v in sorted(tw.total(state.get("slots", []), now, window).items()):
            retried, started = int(v.get("retried", 0)), int(v.get("started", 0))
            if retried < th.task_retry_min_count or retried <= th.task_retry_ratio * started:
                continue
            ratio = retried / started if started else None
            shown = printable(name)
            out.append(condition(
                "task_retry_storm", "warning", f"task:{name}", f"Task {shown} retrying",
                f"Task {shown} retried {plural(retried, 'time')} in the last {duration(window)} for "
                f"{plural(started, 'run')}"
                + (f" ({ratio:.0%}, limit {th.task_retry_ratio:.0%})." if ratio is not None else "."),
                {"task": name, "retried": retried, "started": started,
                 "ratio": round(ratio, 4) if ratio is not None else None, "threshold": th.task_retry_ratio,
                 "min_count": th.task_retry_min_count, "window_seconds": window},
            ))
        return out


RULE = TaskRetryStorm()
