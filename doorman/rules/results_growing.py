"""results_growing: keys without an expiry pile up on the broker's server.

Keys minus keys with a TTL, summed over the server's databases (`INFO keyspace`), sampled and
judged by backlog_growing's trend test: enough samples over at least half the window, a line that
explains most of the variation (r² >= 0.5), net growth, and at least `results_growth_min_keys`
more keys over the window. Queues are one key each however deep they are, so a backlog does not
count; what grows this way is usually a result backend with `result_expires` off, or results
never read (celery 7801, 6089), until Redis fills up.
"""

from __future__ import annotations

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import is_count, is_num
from doorman.rules.backlog_growing import MAX_SAMPLES, MIN_R2, SLOTS, trend
from doorman.rules.base import AlertType, BaseRule, Condition, Rule, Snapshot, State, condition, duration
from doorman.rules.broker_memory import BROKER_DOWN, health


def persistent(snapshot: Snapshot) -> tuple[int, dict[str, int]] | None:
    """(keys without expiry over all dbs, per db) from `broker_health.keyspace`."""
    space = health(snapshot).get("keyspace")
    if not isinstance(space, dict):
        return None
    per: dict[str, int] = {}
    for db, v in list(space.items())[:64]:
        if isinstance(v, dict) and is_count(v.get("keys")) and is_count(v.get("expires")):
            per[str(db)[:16]] = max(0, v["keys"] - v["expires"])
    return sum(per.values()), per


class ResultsGrowing(BaseRule):
    name = "results_growing"
    alert_types = (AlertType("results_growing", ("warning",), "cluster",
                             "Keys without an expiry grow steadily (results kept forever?).",
                             inhibited_by=BROKER_DOWN),)
    settings = (
        Setting("results_growth_window_seconds", "float", 1800.0, ("RESULTS_GROWTH_WINDOW",),
                "Key counts of this many recent seconds give the growth of keys without expiry.",
                section=THRESHOLDS, positive=True),
        Setting("results_growth_min_keys", "int", 1000, ("RESULTS_GROWTH_MIN_KEYS",),
                "results_growing needs at least this many more keys without expiry over the window.",
                section=THRESHOLDS, positive=True),
    )

    def initial_state(self) -> State:
        return {"samples": [], "trend": [0.0, 0.0]}

    def state_problem(self, state: State) -> str | None:
        s, t = state.get("samples"), state.get("trend")
        if not (isinstance(s, list) and all(isinstance(p, list) and len(p) == 2 and all(map(is_num, p)) for p in s)):
            return "samples must be [time, keys] pairs"
        if not (isinstance(t, list) and len(t) == 2 and all(map(is_num, t))):
            return "trend must be [slope, r2]"
        return None

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        got = persistent(snapshot)
        if got is None:
            return
        window = config.thresholds.results_growth_window_seconds
        s = state.get("samples") or []
        if s and now < s[-1][0]:
            s = []
        if s and now - s[-1][0] < window / SLOTS:
            return
        s = [p for p in s if p[0] >= now - window][-(MAX_SAMPLES - 1):]
        s.append([now, got[0]])
        state["samples"] = s
        state["trend"] = list(trend(s))

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        got = persistent(snapshot)
        th = config.thresholds
        s = state.get("samples") or []
        if got is None or len(s) < th.backlog_growth_min_samples:
            return []
        span = s[-1][0] - s[0][0]
        if span < th.results_growth_window_seconds / 2:
            return []
        rate, r2 = state.get("trend") or [0.0, 0.0]
        grown = s[-1][1] - s[0][1]
        if rate <= 0 or r2 < MIN_R2 or grown < th.results_growth_min_keys:
            return []
        total, per = got
        return [condition(
            "results_growing", "warning", "cluster", "Keys without expiry growing",
            f"Keys without an expiry grew by {int(grown)} in {duration(span)} ({rate * 3600:.0f}/h, now {total}): "
            f"usually task results kept forever. Set result_expires, or ignore_result on tasks whose "
            f"result nobody reads.",
            {"keys_without_expiry": total, "per_db": per, "grown": int(grown), "window_seconds": round(span, 3),
             "rate_per_hour": round(rate * 3600, 1), "samples": len(s), "r2": round(r2, 3)})]


RULE: Rule = ResultsGrowing()
