"""backlog_growing: a backlog filling faster than it drains will cross `max_queue_size` soon.

The same series as backlog_explosion are watched: the total (subject `cluster`, against the global
`max_queue_size`) and each queue with its own `max_queue_size` override (subject `queue:<name>`).
State keeps recent (time, pending) samples per series; the rate is the least-squares slope over
the last `backlog_growth_window_seconds` (one sample per window/12 s at most). To stay quiet on
noise it needs at least `backlog_growth_min_samples` samples spanning half the window, a trend
that explains most of the variation (r² >= 0.5), more pending now than at the window's start,
and the projected crossing within `backlog_growth_horizon_seconds`.
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import is_num, map_of
from doorman.rules.base import (
    OUTAGE,
    AlertType,
    BaseRule,
    Condition,
    Rule,
    Snapshot,
    State,
    condition,
    duration,
)

TOTAL = "*"
MAX_SAMPLES = 64
SLOTS = 12  # samples per window at most; a snapshot closer than window/SLOTS to the last is not sampled
MIN_R2 = 0.5


def _series(snapshot: Snapshot, config: Config) -> dict[str, tuple[int, int]]:
    """{series key: (pending now, threshold)}."""
    queues = snapshot["queues"]
    total = snapshot.get("pending_tasks")
    if total is None:
        total = sum(q["pending"] for q in queues.values())
    out = {TOTAL: (total, config.thresholds.max_queue_size)}
    for name, over in config.thresholds.queues.items():
        if "max_queue_size" in over and name in queues:
            out[name] = (queues[name]["pending"], over["max_queue_size"])
    return out


def trend(points: list[list[float]]) -> tuple[float, float]:
    """(slope per second, r²) of a least-squares line through the points (one pass, centred)."""
    n = len(points)
    if n < 2:
        return 0.0, 0.0
    t0, p0 = points[0]
    st = sp = stt = spp = stp = 0.0
    for t, p in points:
        t -= t0
        p -= p0
        st += t
        sp += p
        stt += t * t
        spp += p * p
        stp += t * p
    sxx = stt - st * st / n
    syy = spp - sp * sp / n
    sxy = stp - st * sp / n
    if sxx <= 0 or syy <= 0:
        return 0.0, 0.0
    return sxy / sxx, (sxy * sxy) / (sxx * syy)


class BacklogGrowing(BaseRule):
    name = "backlog_growing"
    alert_types = (AlertType("backlog_growing", ("warning",), "cluster | queue:<name>",
                             "The backlog grows steadily and will cross max_queue_size within the horizon.",
                             inhibited_by=OUTAGE),)
    settings = (
        Setting("backlog_growth_horizon_seconds", "float", 600.0, ("BACKLOG_GROWTH_HORIZON",),
                "backlog_growing fires when the threshold is this close.", section=THRESHOLDS),
        Setting("backlog_growth_window_seconds", "float", 300.0, ("BACKLOG_GROWTH_WINDOW",),
                "Pending counts of this many recent seconds give the growth rate.", section=THRESHOLDS,
                positive=True),
        Setting("backlog_growth_min_samples", "int", 5, ("BACKLOG_GROWTH_MIN_SAMPLES",),
                "Fewest samples (over at least half the window) for a growth rate.", section=THRESHOLDS,
                positive=True),
    )

    def initial_state(self) -> State:
        return {"samples": {}, "trends": {}}

    def state_problem(self, state: State) -> str | None:
        if not map_of(state.get("samples"), lambda s: isinstance(s, list) and all(
                isinstance(p, list) and len(p) == 2 and is_num(p[0]) and is_num(p[1]) for p in s)):
            return "samples must map series to [time, pending] pairs"
        if not map_of(state.get("trends"), lambda t: isinstance(t, list) and len(t) == 2 and all(map(is_num, t))):
            return "trends must map series to [slope, r2]"
        return None

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        """Keep at most one sample per window/SLOTS seconds per series, and the trend through them.

        A snapshot closer than that to the last kept sample is not sampled, so the least-squares fit
        runs only when a sample is added, not on every snapshot of a fast daemon.
        """
        window = config.thresholds.backlog_growth_window_seconds
        spacing = window / SLOTS
        old = state.get("samples", {})
        old_trends = state.get("trends", {})
        samples: dict[str, list[list[float]]] = {}
        trends: dict[str, list[float]] = {}
        for key, (pending, _limit) in _series(snapshot, config).items():
            s = old.get(key, [])
            if s and now < s[-1][0]:
                s = []  # the clock went back (merged or reordered stream): start over
            if s and now - s[-1][0] < spacing and key in old_trends:
                samples[key], trends[key] = s, old_trends[key]
                continue
            cut = 0
            while cut < len(s) and s[cut][0] < now - window:
                cut += 1
            s = s[max(cut, len(s) - MAX_SAMPLES + 1):]
            s.append([now, pending])
            samples[key] = s
            trends[key] = list(trend(s))
        state["samples"] = samples
        state["trends"] = trends

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        th = config.thresholds
        samples = state.get("samples", {})
        trends = state.get("trends", {})
        out = []
        for key, (pending, limit) in _series(snapshot, config).items():
            s = samples.get(key) or []
            if key not in trends or len(s) < th.backlog_growth_min_samples or s[-1][0] - s[0][0] < th.backlog_growth_window_seconds / 2:
                continue
            if pending >= limit or s[-1][1] <= s[0][1]:
                continue  # over the limit is backlog_explosion's business; no net growth, no warning
            rate, r2 = trends[key]
            if rate <= 0 or r2 < MIN_R2:
                continue
            eta = (limit - pending) / rate
            if eta > th.backlog_growth_horizon_seconds:
                continue
            details: dict[str, Any] = {
                "pending": pending, "threshold": limit, "rate_per_second": round(rate, 4),
                "seconds_to_threshold": round(eta, 1), "window_seconds": round(s[-1][0] - s[0][0], 3),
                "samples": len(s), "r2": round(r2, 3),
            }
            if key == TOTAL:
                subject, where = "cluster", "The backlog"
                details["queues"] = {name: q["pending"] for name, q in snapshot["queues"].items()}
            else:
                subject, where = f"queue:{key}", f"Queue {key}"
                details["queue"] = key
            out.append(condition(
                "backlog_growing", "warning", subject, "Backlog growing",
                f"{where} grows by {rate:.2f} tasks/s ({pending} pending) and will pass {limit} in about "
                f"{duration(eta)}.",
                details,
            ))
        return out


RULE: Rule = BacklogGrowing()
