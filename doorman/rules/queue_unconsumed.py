"""queue_unconsumed: tasks wait in a queue that no live worker consumes (celery#3239).

Which workers consume a queue comes from the workers' own `active_queues`
(`queues.<q>.consumers`, see doorman/collect/liveness.py). A queue with tasks waiting and
`consumers: 0` for `unconsumed_after_seconds` fires: tasks routed to a queue nobody runs with
`-Q`, or a consumer cancelled with `celery control cancel_consumer`. Not raised while no worker
is alive at all (that is workers_down or celery_disconnected), nor while `consumers` is unknown
(null). Critical for `critical_queues`, a warning for the others.
"""

from __future__ import annotations

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
    plural,
)
from doorman.rules.workers import alive_count

MAX_QUEUES = 1000


def _unconsumed(snapshot: Snapshot) -> dict[str, int]:
    """{queue: pending} of the queues with tasks waiting and no live consumer (known, not guessed)."""
    if not alive_count(snapshot):
        return {}
    return {name: q["pending"] for name, q in (snapshot.get("queues") or {}).items()
            if q.get("pending") and q.get("consumers") == 0}


class QueueUnconsumed(BaseRule):
    name = "queue_unconsumed"
    alert_types = (AlertType("queue_unconsumed", ("warning", "critical"), "queue:<name>",
                             "Tasks wait in a queue no live worker consumes (critical in critical_queues).",
                             inhibited_by=OUTAGE, reconnect_grace=True),)
    settings = (
        Setting("unconsumed_after_seconds", "float", 60.0, ("UNCONSUMED_AFTER_SECONDS",),
                "A queue with tasks waiting and no live consumer this long: queue_unconsumed.",
                section=THRESHOLDS, per_queue=True),
    )

    def initial_state(self) -> State:
        return {"since": {}}

    def state_problem(self, state: State) -> str | None:
        return None if map_of(state.get("since"), is_num) else "since must map queues to times"

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        since = state.setdefault("since", {})
        now_unconsumed = _unconsumed(snapshot)
        for name in [n for n in since if n not in now_unconsumed]:
            del since[name]
        for name in now_unconsumed:
            if name not in since and len(since) < MAX_QUEUES:
                since[name] = now

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        th = config.thresholds
        waiting = _unconsumed(snapshot)
        out = []
        for name, first in sorted(state.get("since", {}).items()):
            limit = th.for_queue(name, "unconsumed_after_seconds")
            if name not in waiting or now - first < limit:
                continue
            severity = "critical" if name in th.critical_queues else "warning"
            pending = waiting[name]
            out.append(condition(
                "queue_unconsumed", severity, f"queue:{name}", f"Queue {name} not consumed",
                f"{plural(pending, 'task')} waiting in {name} for {duration(now - first)}, and no live worker "
                f"consumes it ({plural(alive_count(snapshot), 'worker')} alive).",
                {"queue": name, "pending": pending, "unconsumed_seconds": round(now - first, 3),
                 "threshold": limit, "alive_workers": alive_count(snapshot)},
            ))
        return out


RULE: Rule = QueueUnconsumed()
