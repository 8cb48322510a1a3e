"""The severity order, declared once: info < warning < critical < emergency."""

from __future__ import annotations

SEVERITIES = ("info", "warning", "critical", "emergency")
PAGE_AT_ONCE = frozenset({"critical", "emergency"})  # never held back by flap damping


def rank(severity: str) -> int:
    """Position in the order; -1 for anything that is not a severity."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1
