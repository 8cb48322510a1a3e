"""redis_down: the broker did not answer the check. Nothing else can be known then."""

from __future__ import annotations

from typing import Any

from doorman.config import Config
from doorman.rules.base import RuleInfo, condition

INFO = RuleInfo("redis_down", ("redis_down",), "The Redis broker is unreachable.", needs_broker=False)


def evaluate(snapshot: dict[str, Any], state: dict[str, Any], config: Config) -> list[dict[str, Any]]:
    if snapshot["redis_connected"] is not False:
        return []
    error = snapshot.get("error") or "no reason given"
    return [condition(
        "redis_down", "emergency", "cluster", "Redis broker unreachable",
        f"Redis broker {snapshot.get('broker') or '(unnamed)'} is unreachable: {error}",
        {"broker": snapshot.get("broker"), "error": snapshot.get("error")},
    )]
