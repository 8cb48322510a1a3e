"""broker_evicting / broker_oom: Redis evicted keys, or refused writes for lack of memory, lately.

Both counters (`evicted_keys`, `errorstat_OOM`) only grow while the server runs, so state keeps
the last value seen and when it last rose; a lower value means a restart (the new value is the
baseline). A rise keeps the alert firing for `broker_error_hold_seconds`, so one burst is one
alert, not a firing/resolved pair per snapshot. An OOM means publishers are failing now (celery
5716): `apply_async` raises in the application, and the task never exists.
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import is_count, is_num, map_of
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
from doorman.rules.broker_memory import BROKER_DOWN, count, health

COUNTERS = {"broker_evicting": "evicted_keys", "broker_oom": "oom_errors"}


class BrokerErrors(BaseRule):
    name = "broker_errors"
    alert_types = (
        AlertType("broker_evicting", ("critical",), "cluster",
                  "The broker evicted keys since the previous snapshot: queued tasks may be gone.",
                  inhibited_by=BROKER_DOWN),
        AlertType("broker_oom", ("emergency",), "cluster",
                  "The broker refused writes for lack of memory (OOM): publishers are failing now.",
                  inhibited_by=BROKER_DOWN),
    )
    settings = (
        Setting("broker_error_hold_seconds", "float", 300.0, ("BROKER_ERROR_HOLD_SECONDS",),
                "broker_evicting and broker_oom keep firing this long after their counter last rose.",
                section=THRESHOLDS),
    )

    def initial_state(self) -> State:
        return {"last": {}, "rose": {}}

    def state_problem(self, state: State) -> str | None:
        if not map_of(state.get("last"), is_count):
            return "last must map counters to counts"
        if not map_of(state.get("rose"), lambda r: isinstance(r, list) and len(r) == 3 and all(map(is_num, r))):
            return "rose must map counters to [time, rise, since]"
        return None

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        h = health(snapshot)
        last: dict[str, int] = state.setdefault("last", {})
        rose: dict[str, list[float]] = state.setdefault("rose", {})
        hold = config.thresholds.broker_error_hold_seconds
        for alert_type, field in COUNTERS.items():
            value = count(h.get(field))
            if value is None:
                continue
            before = last.get(field)
            last[field] = value
            if before is not None and value > before:
                prev = rose.get(alert_type)
                start = prev[2] if prev and now - prev[0] < hold else now
                total = (prev[1] if prev and now - prev[0] < hold else 0) + value - before
                rose[alert_type] = [now, total, start]
            elif alert_type in rose and now - rose[alert_type][0] >= hold:
                del rose[alert_type]

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        out = []
        h = health(snapshot)
        for alert_type, (at, total, since) in sorted(state.get("rose", {}).items()):
            n = int(total)
            details: dict[str, Any] = {"new": n, "since_seconds": round(now - since, 3),
                                       "last_rise_seconds_ago": round(now - at, 3),
                                       COUNTERS[alert_type]: h.get(COUNTERS[alert_type]),
                                       "used_memory_bytes": h.get("used_memory_bytes"),
                                       "max_memory_bytes": h.get("max_memory_bytes"),
                                       "eviction_policy": h.get("eviction_policy")}
            if alert_type == "broker_evicting":
                out.append(condition(
                    alert_type, "critical", "cluster", "Broker evicting keys",
                    f"The broker evicted {plural(n, 'key')} in the last {duration(now - since)} "
                    f"(maxmemory-policy {h.get('eviction_policy')}): queued tasks, bindings or results may be "
                    f"gone. Free memory or raise maxmemory, and set noeviction.", details))
            else:
                out.append(condition(
                    alert_type, "emergency", "cluster", "Broker out of memory",
                    f"The broker refused {plural(n, 'write')} for lack of memory (OOM) in the last "
                    f"{duration(now - since)}: publishing tasks fails now. Free memory or raise maxmemory.",
                    details))
        return out


RULE: Rule = BrokerErrors()
