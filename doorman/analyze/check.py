"""`doorman-analyze --check`: one Nagios/Icinga status line and exit code for the last snapshot.

The status is the worst condition that holds *now* (cooldown does not make a check say OK):
warning -> WARNING (1), critical or emergency -> CRITICAL (2), broker unreachable or no snapshot
-> UNKNOWN (3), otherwise OK (0). Perfdata follows Nagios' `label=value[UOM];warn;crit;min;max`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from doorman.analyze.ruleset import RuleSet, default_rules
from doorman.config.settings import Config
from doorman.contract.severity import rank
from doorman.contract.snapshot import Snapshot
from doorman.rules.base import Condition, Measuring
from doorman.textsafe import one_line

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
LEVEL = {"info": OK, "warning": WARNING, "critical": CRITICAL, "emergency": CRITICAL}


def _label(name: str) -> str:
    return "'" + one_line(name).replace("'", "_").replace("=", "_").replace("|", "_").replace(" ", "_") + "'"


def perfdata(snap: Snapshot, state: dict[str, Any], config: Config, rules: RuleSet | None = None) -> str:
    th = config.thresholds
    if not snap.get("redis_connected") or snap.get("pending_tasks") is None:
        return "redis_connected=0;;;0;1"
    now = state.get("now") or 0.0
    alive = snap.get("alive_workers")
    if alive is None:
        alive = sum(1 for w in snap.get("workers") or () if w.get("alive") is True)
    parts = [
        f"pending={snap['pending_tasks']};;{th.max_queue_size};0",
        f"workers={alive};;;0",
        f"active={len(snap.get('active') or ())};;;0",
    ]
    mine = state.get("rules", {})
    for rule in (rules or default_rules()).rules:  # the rules that measure something (latency's oldest wait)
        measure = getattr(rule, "perfdata", None)
        if callable(measure):
            parts += cast(Measuring, rule).perfdata(snap, mine.get(rule.name, {}), config, now)
    parts += [f"{_label('queue_' + name)}={q['pending']};;{th.for_queue(name, 'max_queue_size')};0"
              for name, q in sorted(snap["queues"].items())]
    return " ".join(parts)


def status_line(snap: Snapshot | None, conditions: Sequence[Condition], state: dict[str, Any],
                config: Config, rules: RuleSet | None = None) -> tuple[int, str]:
    """(exit code, the line) for the last snapshot read and the conditions holding for it."""
    if snap is None:
        return UNKNOWN, "DOORMAN UNKNOWN - no snapshot read"
    perf = one_line(perfdata(snap, state, config, rules))
    if snap.get("redis_connected") is not True:
        down = [c for c in conditions if c["alert_type"] == "redis_down"]
        text = down[0]["message"] if down else f"broker unreachable: {snap.get('error')}"
        return UNKNOWN, f"DOORMAN UNKNOWN - {_oneline(text)} | {perf}"
    if not conditions:
        alive = snap.get("alive_workers") or 0
        return OK, (f"DOORMAN OK - {snap.get('pending_tasks') or 0} pending, "
                    f"{alive} {'worker' if alive == 1 else 'workers'} alive | {perf}")
    worst = sorted(conditions, key=lambda c: -rank(c["severity"]))
    code = LEVEL[worst[0]["severity"]]
    text = worst[0]["message"]
    if len(worst) > 1:
        text += f" (+{len(worst) - 1} more: {', '.join(c['alert_type'] for c in worst[1:])})"
    return code, f"DOORMAN {NAMES[code]} - {_oneline(text)} | {perf}"


def _oneline(text: str) -> str:
    """Always one line: broker names in a message can hold newlines and escapes (shown escaped)."""
    return one_line(text).replace("|", "/")
