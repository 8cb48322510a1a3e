"""redis_down: the broker did not answer the check. Nothing else can be known then."""

from __future__ import annotations

from doorman.config.settings import Config
from doorman.rules.base import AlertType, BaseRule, Condition, Rule, Snapshot, State, condition


class RedisDown(BaseRule):
    name = "redis_down"
    alert_types = (AlertType("redis_down", ("emergency",), "cluster",
                             "The broker is unreachable, or answers but refuses the check."),)
    needs_broker = False

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        error = snapshot.get("error")
        refused = snapshot["redis_connected"] is not False and error and snapshot.get("pending_tasks") is None
        if snapshot["redis_connected"] is not False and not refused:
            return []
        broker = snapshot.get("broker") or "(unnamed)"
        if refused:  # it answers but refuses the check (ACL, OOM, LOADING...): Doorman is blind all the same
            title, message = "Redis broker refuses the check", f"Redis broker {broker} refuses the check: {error}"
        else:
            title, message = "Redis broker unreachable", f"Redis broker {broker} is unreachable: {error or 'no reason given'}"
        return [condition("redis_down", "emergency", "cluster", title, message,
                          {"broker": snapshot.get("broker"), "error": error, "connected": not not refused})]


RULE: Rule = RedisDown()
