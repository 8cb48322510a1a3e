"""What every rule shares: its metadata record and the shape of the alert it returns.

A rule returns *conditions*, not notifications: the engine (`doorman.analyze`) turns them into
alerts, deciding about fingerprints, cooldown, inhibition and resolution. So a rule stays a pure
function of (snapshot, state, config) and can be tested with a dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RuleInfo:
    name: str
    alert_types: tuple[str, ...]
    description: str
    needs_broker: bool = True  # skipped (its alerts neither fire nor resolve) while the broker is unknown
    version: int = 1


def condition(alert_type: str, severity: str, subject: str, title: str, message: str,
              details: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """One finding of a rule. `status: resolved` is an explicit resolution carrying its own details."""
    return {"alert_type": alert_type, "severity": severity, "subject": subject, "title": title,
            "message": message, "details": details, "status": status}


def duration(seconds: float) -> str:
    """`45s`, `12m`, `3h05m`: short enough for a notification line."""
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
