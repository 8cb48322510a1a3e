"""redis_down: the broker did not answer the check. Nothing else can be known then."""

from __future__ import annotations

from typing import Any

from doorman.config import Config
from doorman.rules.base import RuleInfo, condition

INFO = RuleInfo("redis_down", ("redis_down",), "The Redis broker is unreachable.", needs_broker=False)


def evaluate(snapshot: dict[str, Any], state: dict[str, Any], config: Config) -> list[dict[str, Any]]:
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
