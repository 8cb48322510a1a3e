"""task_slowdown: a task's p95 runtime over the window is several times its usual p95.

The p95 of the runtimes (task-succeeded `runtime`) of one task name over
`task_failure_window_seconds` above `task_slowdown_factor` × its p95 over the previous
`task_baseline_seconds`, each from at least `task_slowdown_min_samples` runs. Quantiles come from
the runtime histogram's increments, interpolated within a bucket like Prometheus'
histogram_quantile; above the last finite bound (10 s) every runtime reads as 10 s, so a task
already slower than that cannot be seen slowing down further.

State: the window's fine slots and coarse slots (one per baseline/24 s) over window + baseline; the
baseline is the coarse sum minus the window's, so the window's own runs never dilute it.
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.tasks import RUNTIME_BUCKETS, quantile
from doorman.rules import taskwindow as tw
from doorman.rules.base import OUTAGE, AlertType, BaseRule, Condition, Snapshot, State, condition, duration
from doorman.textsafe import printable

SIZE = len(RUNTIME_BUCKETS) + 1
COARSE = 24  # coarse slots per baseline


def _pick(c: dict[str, Any]) -> tw.Vec:
    return tw.hist_vec(c.get("runtime"), SIZE)


def seconds(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


class TaskSlowdown(BaseRule):
    name = "task_slowdown"
    needs = ("tasks",)
    alert_types = (AlertType("task_slowdown", ("warning",), "task:<name>",
                             "A task's p95 runtime over the window is above task_slowdown_factor × its p95 "
                             "over the previous task_baseline_seconds.", inhibited_by=OUTAGE),)
    settings = (
        Setting("task_slowdown_factor", "float", 3.0, ("TASK_SLOWDOWN_FACTOR",),
                "task_slowdown fires when a task's p95 runtime over the window passes this many times its "
                "baseline p95.", section=THRESHOLDS, positive=True),
        Setting("task_baseline_seconds", "float", 86400.0, ("TASK_BASELINE_SECONDS",),
                "task_slowdown's baseline: the runtimes of this many seconds before the window.",
                section=THRESHOLDS, positive=True),
        Setting("task_slowdown_min_samples", "int", 50, ("TASK_SLOWDOWN_MIN_SAMPLES",),
                "task_slowdown needs at least this many runs both in the window and in the baseline.",
                section=THRESHOLDS, positive=True),
    )

    def initial_state(self) -> State:
        return tw.initial_state("slots", "coarse")

    def state_problem(self, state: State) -> str | None:
        return tw.state_problem(state, "slots", "coarse")

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        tasks = tw.tasks_of(snapshot)
        if tasks is None:
            return
        th = config.thresholds
        window, baseline = th.task_failure_window_seconds, th.task_baseline_seconds
        delta = tw.observe(state, tasks, _pick, now, window)
        state["coarse"] = tw.record(state.get("coarse", []), now, delta, min(baseline / COARSE, window),
                                    window + baseline)

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        if tw.tasks_of(snapshot) is None:
            return []
        th = config.thresholds
        window, baseline = th.task_failure_window_seconds, th.task_baseline_seconds
        recent = tw.total(state.get("slots", []), now, window)
        before = tw.total(state.get("coarse", []), now, window + baseline)
        out = []
        for name, v in sorted(recent.items()):
            counts = tw.hist_counts(v, SIZE)
            if sum(counts) < th.task_slowdown_min_samples:
                continue
            base = {k: x - v.get(k, 0.0) for k, x in before.get(name, {}).items()}
            base_counts = tw.hist_counts(base, SIZE)
            if sum(base_counts) < th.task_slowdown_min_samples:
                continue
            p95 = quantile(0.95, counts, RUNTIME_BUCKETS)
            p95_base = quantile(0.95, base_counts, RUNTIME_BUCKETS)
            if p95 is None or p95_base is None or p95 <= th.task_slowdown_factor * p95_base:
                continue
            shown = printable(name)
            out.append(condition(
                "task_slowdown", "warning", f"task:{name}", f"Task {shown} slower",
                f"Task {shown} ran in {seconds(p95)} at p95 over the last {duration(window)}, "
                f"{p95 / p95_base:.1f}× its usual {seconds(p95_base)} (limit {th.task_slowdown_factor:g}×).",
                {"task": name, "p95_seconds": round(p95, 4), "baseline_p95_seconds": round(p95_base, 4),
                 "factor": round(p95 / p95_base, 2), "threshold": th.task_slowdown_factor,
                 "runs": int(sum(counts)), "baseline_runs": int(sum(base_counts)),
                 "window_seconds": window, "baseline_seconds": baseline},
            ))
        return out


RULE = TaskSlowdown()
