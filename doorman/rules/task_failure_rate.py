"""task_failure_rate: too many runs of one task name failed over the last window.

Over `task_failure_window_seconds`, failed / (succeeded + failed) of one task name above
`task_failure_ratio` **and** at least `task_failure_min_count` failures: a ratio alone pages on
tiny volumes (one failure in three runs), a count alone on a busy task's normal noise. Critical
when a queue the task ran from (the snapshot's `tasks.series` rows) is in `critical_queues`.
Increments come from the cumulative counts (doorman.rules.taskwindow), so a collector restart is
a counter reset, never a false alert.
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

EXC = "x:"  # vector keys of exception classes


def _pick(c: dict[str, Any]) -> tw.Vec:
    v: tw.Vec = {"ok": float(tw.count(c.get("succeeded"))), "fail": float(tw.count(c.get("failed"))),
                 "final": float(tw.count(c.get("final_failures")))}
    exc = c.get("exceptions")
    if isinstance(exc, dict):
        for cls, n in list(exc.items())[:tw.MAX_EXCEPTIONS]:
            if isinstance(cls, str) and tw.count(n):
                v[EXC + cls] = float(n)
    return v


class TaskFailureRate(tw.WindowedTaskRule):
    name = "task_failure_rate"
    alert_types = (AlertType("task_failure_rate", ("warning", "critical"), "task:<name>",
                             "Over the window, more than task_failure_ratio of a task's runs failed, and at "
                             "least task_failure_min_count (critical in critical_queues).",
                             inhibited_by=OUTAGE),)
    settings = (
        Setting("task_failure_window_seconds", "float", 600.0, ("TASK_FAILURE_WINDOW",),
                "The task rules (failure rate, retry storm, slowdown) judge the task events of this many "
                "recent seconds.", section=THRESHOLDS, positive=True),
        Setting("task_failure_ratio", "float", 0.05, ("TASK_FAILURE_RATIO",),
                "task_failure_rate fires above this share of failed runs (failed / (succeeded + failed)).",
                section=THRESHOLDS, positive=True),
        Setting("task_failure_min_count", "int", 5, ("TASK_FAILURE_MIN_COUNT",),
                "task_failure_rate needs at least this many failures in the window (no page on tiny volumes).",
                section=THRESHOLDS, positive=True),
    )

    pick = staticmethod(_pick)

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        tasks = tw.tasks_of(snapshot)
        if tasks is None:
            return []
        th = config.thresholds
        window = th.task_failure_window_seconds
        out = []
        for name, v in sorted(tw.total(state.get("slots", []), now, window).items()):
            failed, ok = int(v.get("fail", 0)), int(v.get("ok", 0))
            runs = failed + ok
            if failed < th.task_failure_min_count or runs <= 0 or failed / runs <= th.task_failure_ratio:
                continue
            ratio = failed / runs
            queues = tw.queues_of(tasks, name)
            critical = sorted(set(queues) & set(th.critical_queues))
            exceptions = tw.top({k[len(EXC):]: x for k, x in v.items() if k.startswith(EXC)})
            final = min(failed, int(v.get("final", 0)))
            shown = printable(name)
            top_text = ", ".join(f"{printable(cls)} ×{n}" for cls, n in exceptions.items())
            details: dict[str, Any] = {"task": name, "failed": failed, "succeeded": ok, "ratio": round(ratio, 4),
                       "threshold": th.task_failure_ratio, "min_count": th.task_failure_min_count,
                       "final_failures": final, "exceptions": exceptions, "queues": queues,
                       "critical_queues": critical, "window_seconds": window}
            last = ((tasks.get("by_name") or {}).get(name) or {}).get("last_exception")
            if isinstance(last, dict):  # only with task_exception_messages: the collector's, already masked
                details["last_exception"] = {k: printable(last[k])[:200] if isinstance(last.get(k), str) else None
                                             for k in ("class", "message", "at")}
            out.append(condition(
                "task_failure_rate", "critical" if critical else "warning", f"task:{name}",
                f"Task {shown} failing",
                f"{ratio:.0%} of task {shown}'s runs failed in the last {duration(window)} "
                f"({failed} of {plural(runs, 'run')}, limit {th.task_failure_ratio:.0%})"
                + (f"; {final} after their last retry" if final else "")
                + (f": {top_text}." if top_text else "."),
                details,
            ))
        return out


RULE = TaskFailureRate()
