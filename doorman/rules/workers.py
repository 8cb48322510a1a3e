"""workers_down / celery_disconnected: no worker is alive. With tasks waiting nothing will run them
(an emergency); with empty queues nothing is lost yet, but nothing would run a new task (a warning)."""

from __future__ import annotations

from doorman.config.settings import Config
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


def alive_count(snapshot: Snapshot) -> int:
    alive = snapshot.get("alive_workers")
    if alive is None:
        alive = sum(1 for w in snapshot.get("workers") or () if w.get("alive") is True)
    return alive


class Workers(BaseRule):
    name = "workers"
    alert_types = (
        AlertType("workers_down", ("emergency",), "cluster", "No worker is alive and tasks are pending.",
                  reconnect_grace=True),
        AlertType("celery_disconnected", ("warning",), "cluster", "No worker is alive; the queues are empty.",
                  inhibited_by=OUTAGE, reconnect_grace=True),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        if alive_count(snapshot):
            return []
        if snapshot.get("alive_workers") is None and any(w.get("alive") is None for w in snapshot.get("workers") or ()):
            return []  # liveness unknown (a full broker refused the check's request): not down
        pending = snapshot.get("pending_tasks") or 0
        known = sorted(w["name"] for w in snapshot.get("workers") or ())
        if pending > 0:
            verb = "is" if pending == 1 else "are"
            queues = {q: d["pending"] for q, d in snapshot["queues"].items() if d.get("pending")}
            return [condition(
                "workers_down", "emergency", "cluster", "Celery workers down",
                f"No workers responding but {plural(pending, 'task')} {verb} pending!",
                {"pending_tasks": pending, "alive_workers": 0, "known_workers": known, "queues": queues},
            )]
        return [condition(
            "celery_disconnected", "warning", "cluster", "No Celery workers",
            "No Celery workers responding; the queues are empty, so nothing is waiting yet.",
            {"pending_tasks": pending, "alive_workers": 0, "known_workers": known},
        )]


RULE: Rule = Workers()
