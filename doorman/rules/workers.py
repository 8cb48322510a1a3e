"""workers_down / celery_disconnected: no worker is alive. With tasks waiting nothing will run them
(an emergency); with empty queues nothing is lost yet, but nothing would run a new task (a warning)."""

from __future__ import annotations

from typing import Any

from doorman.config import Config
from doorman.rules.base import RuleInfo, condition, plural

INFO = RuleInfo("workers", ("workers_down", "celery_disconnected"), "No Celery worker is alive.")


def alive_count(snapshot: dict[str, Any]) -> int:
    alive = snapshot.get("alive_workers")
    if alive is None:
        alive = sum(1 for w in snapshot.get("workers") or () if w.get("alive") is True)
    return alive


def evaluate(snapshot: dict[str, Any], state: dict[str, Any], config: Config) -> list[dict[str, Any]]:
    if alive_count(snapshot):
        return []
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
