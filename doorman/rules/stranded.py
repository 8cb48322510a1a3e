"""unacked_stranded: unacked messages past the visibility timeout and no live worker to restore them.

kombu puts an overdue unacked message back in its queue only from a running consumer (a worker's
`restore_visible`). With every worker gone (`kill -9`, an OOM-killed pod, a scaled-to-zero
deployment) those tasks sit in `unacked` and come back only when some worker starts (kombu 164,
1190). Nothing but a down broker holds this page back — not even `workers_down`: that one says
"start workers", and stays silent when the queues are empty; this one says tasks already taken
are stuck where no queue depth, no dashboard and no restarted-but-different deployment shows them.
"""

from __future__ import annotations

from doorman.config.settings import Config
from doorman.contract.shapes import as_map, is_num
from doorman.rules.base import (
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
from doorman.rules.redelivery import names_text, tasks, unacked_view


class UnackedStranded(BaseRule):
    name = "unacked_stranded"
    alert_types = (AlertType("unacked_stranded", ("critical",), "cluster",
                             "Unacked messages are past the visibility timeout and no live worker can restore them.",
                             inhibited_by=frozenset({"redis_down"})),)

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        alive = snapshot.get("alive_workers")
        if alive != 0 or type(alive) is not int:
            return []  # some worker lives (it will restore them), or liveness is unknown
        view = unacked_view(snapshot)
        if view is None:
            return []
        age, vt, named = view
        if age < vt:
            return []
        u = as_map(snapshot.get("unacked"))  # a dict: unacked_view said so
        overdue: int = u["overdue"] if is_num(u.get("overdue")) and u["overdue"] > 0 else 1
        return [condition(
            "unacked_stranded", "critical", "cluster", "Unacked tasks stranded",
            f"{plural(overdue, 'unacked message')} older than the visibility timeout ({duration(vt)}), the "
            f"oldest {duration(age)}{names_text(named)}, and no worker is alive to restore them: they come "
            f"back only when a worker starts.",
            {"count": overdue, "oldest_age_seconds": age, "visibility_timeout": vt,
             "unacked": u.get("count") if is_num(u.get("count")) else None, "tasks": tasks(named)})]


RULE: Rule = UnackedStranded()
