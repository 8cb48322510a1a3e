"""high_latency: the oldest waiting task of a queue has waited longer than `max_wait_time_seconds`.

With Doorman's publish stamp the age is exact (`age_source: published_header`). Without it, state
keeps when each head task id was first seen at the head of its queue; the age is then now minus
that (`age_source: head_first_seen`, `estimated: true`), a lower bound that needs a state file
across one-shot runs. Critical for `critical_queues`, a warning for the others.
"""

from __future__ import annotations

from collections.abc import Sequence

from doorman.config.settings import THRESHOLDS, Config, Setting, queue_names
from doorman.contract.shapes import is_num, map_of
from doorman.contract.snapshot import MessageHead, Queue
from doorman.rules.base import (
    OUTAGE,
    AlertType,
    BaseRule,
    Condition,
    Rule,
    Snapshot,
    State,
    condition,
    over_limit,
)

MAX_QUEUES = 1000
MAX_HEADS = 16


def _heads(q: Queue) -> Sequence[MessageHead]:
    heads: Sequence[MessageHead] = q.get("heads") or ()
    first = q.get("oldest")
    if not heads and first:
        heads = (first,)
    return heads


def oldest(q: Queue, seen: dict[str, float], now: float) -> tuple[float, str, MessageHead] | None:
    """(age, age_source, head) of the head that has waited longest, or None when unknown."""
    best = None
    for h in _heads(q):
        known, task_id = h.get("age_seconds"), h.get("task_id")
        if isinstance(known, (int, float)):
            age, source = float(known), "published_header"
        elif isinstance(task_id, str) and task_id in seen:  # the check made it a string or null
            age, source = now - seen[task_id], "head_first_seen"
        else:
            continue
        if best is None or age > best[0]:
            best = (age, source, h)
    return best


class Latency(BaseRule):
    name = "latency"
    alert_types = (AlertType("high_latency", ("warning", "critical"), "queue:<name>",
                             "A queue's oldest task has waited longer than max_wait_time_seconds "
                             "(critical in critical_queues).",
                             inhibited_by=OUTAGE),)
    settings = (
        Setting("max_wait_time_seconds", "float", 60.0, ("MAX_WAIT_TIME",),
                "Oldest waiting task older than this: high latency.", section=THRESHOLDS, per_queue=True),
        Setting("critical_queues", "list", [], ("CRITICAL_QUEUES",), "Queues whose latency is critical.",
                section=THRESHOLDS, convert=queue_names),
    )

    def initial_state(self) -> State:
        return {"heads": {}}

    def state_problem(self, state: State) -> str | None:
        if not map_of(state.get("heads"), lambda h: map_of(h, is_num)):
            return "heads must map queues to {task id: first seen}"
        return None

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        old = state.get("heads", {})
        new: dict[str, dict[str, float]] = {}
        for name, q in snapshot["queues"].items():
            heads = _heads(q)
            if not heads or len(new) >= MAX_QUEUES:
                continue
            seen = old.get(name)
            if seen is not None and len(heads) == len(seen):
                for h in heads:
                    if h.get("task_id") not in seen:
                        break
                else:
                    new[name] = seen  # the same heads as before, the common case: keep their first-seen times
                    continue
            seen = seen or {}
            ids = {tid: seen.get(tid, now) for h in heads[:MAX_HEADS] if isinstance(tid := h.get("task_id"), str)}
            if ids:
                new[name] = ids
        state["heads"] = new

    def perfdata(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[str]:
        """The oldest wait of any queue (0 when none waits), against max_wait_time_seconds."""
        heads = state.get("heads", {})
        ages = [b[0] for name, q in snapshot["queues"].items() if q["pending"]
                for b in [oldest(q, heads.get(name, {}), now)] if b]
        return [f"oldest_wait={max(ages, default=0.0):.3f}s;;{config.thresholds.max_wait_time_seconds:g};0"]

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        th = config.thresholds
        seen_all = state.get("heads", {})
        out = []
        for name, q in snapshot["queues"].items():
            if not q["pending"]:
                continue
            best = oldest(q, seen_all.get(name, {}), now)
            if best is None:
                continue
            age, source, head = best
            limit = th.for_queue(name, "max_wait_time_seconds")
            if age <= limit:
                continue
            estimated = source == "head_first_seen"
            severity = "critical" if name in th.critical_queues else "warning"
            waited, most = over_limit(age, limit)
            out.append(condition(
                "high_latency", severity, f"queue:{name}", f"High latency in {name}",
                f"Oldest task in queue {name} has waited {'at least ' if estimated else ''}{waited} "
                f"(limit {most}); {q['pending']} pending.",
                {"queue": name, "age_seconds": round(age, 3), "threshold": limit, "pending": q["pending"],
                 "task_id": head.get("task_id"), "task_name": head.get("task_name"),
                 "priority": head.get("priority"), "age_source": source, "estimated": estimated},
            ))
        return out


RULE: Rule = Latency()
