"""example_odd_backlog: fires while the number of pending tasks is odd, resolves when it is even.

Useless in production, but it shows everything a rule owns: its alert type and severity, whether
it needs the broker, and a pure `evaluate`. The engine does the rest: fingerprints, cooldown,
the resolution when the condition stops being returned.
"""

from __future__ import annotations

from doorman.rules.base import AlertType, BaseRule, Condition, Snapshot, State, condition
from doorman.settings import Config


class OddBacklog(BaseRule):
    name = "example_odd_backlog"
    alert_types = (AlertType("example_odd_backlog", ("info",), "cluster", "The number of pending tasks is odd."),)

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        pending = snapshot.get("pending_tasks") or 0
        if pending % 2 == 0:
            return []
        return [condition("example_odd_backlog", "info", "cluster", "Odd backlog",
                          f"{pending} tasks pending, an odd number.", {"pending_tasks": pending})]


RULE = OddBacklog()
