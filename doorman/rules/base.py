"""What a rule is: its metadata, its configuration keys, its state, and `evaluate`.

A rule returns *conditions*, not notifications: the engine (`doorman.analyze.engine`) turns them into
alerts, deciding about fingerprints, cooldown, inhibition and resolution. A rule is a pure function
of (snapshot, its own slice of state, config, now), so it can be tested with dicts. "Now" is the
snapshot's `ts`, never the wall clock, so a replay gives the alerts a live run gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypedDict

from doorman.config.settings import Config, Setting
from doorman.contract.snapshot import Snapshot

__all__ = ["Snapshot"]  # rules' snapshot type is the contract's (re-exported for plugins)
State = dict[str, Any]


class Condition(TypedDict):
    """One finding of a rule. `status: resolved` is an explicit resolution carrying its own details."""

    alert_type: str
    severity: str
    subject: str
    title: str
    message: str
    details: dict[str, Any]
    status: str


# The broker or every worker down: what most other alerts follow from, so they wait while it holds.
OUTAGE = frozenset({"redis_down", "workers_down"})


@dataclass(frozen=True)
class AlertType:
    """One alert type a rule emits. `inhibited_by`: while any of these fire, this one is held back."""

    name: str
    severities: tuple[str, ...]
    subject: str  # "cluster", "queue:<name>" or "worker:<name>"
    summary: str
    inhibited_by: frozenset[str] = frozenset()
    # a worker-side alert: held for thresholds.reconnect_grace_seconds after the broker comes back
    # (and at a daemon's start while known workers have not answered yet), since workers need a
    # moment to reconnect; and never sent on its own for a worker whose fate an inhibiting
    # incident already told (it goes into that incident's resolution instead)
    reconnect_grace: bool = False
    # False: told once while it holds, no reminders (a standing setting, not an ongoing incident);
    # a change shows as a new subject, so it is told again
    reminders: bool = True


class Rule(Protocol):
    """What the engine calls. Read-only members, so a class attribute satisfies them; a plugin that
    lacks one is refused at load (doorman.plugins), never mid-run."""

    @property
    def name(self) -> str: ...

    @property
    def alert_types(self) -> Sequence[AlertType]: ...

    @property
    def needs_broker(self) -> bool:
        """Skipped (its alerts neither fire nor resolve) while the broker is unknown."""
        ...

    @property
    def settings(self) -> Sequence[Setting]: ...

    def initial_state(self) -> State: ...

    def state_problem(self, state: State) -> str | None: ...

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None: ...

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]: ...


class Measuring(Protocol):
    """An optional rule capability: figures for Nagios perfdata (`doorman-analyze --check`), read
    from the rule's own state, so the check knows no rule's private layout."""

    def perfdata(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[str]:
        """`label=value[UOM];warn;crit;min;max` items."""
        ...


class BaseRule:
    """Defaults for a rule without memory: subclass it and set the class attributes."""

    name: ClassVar[str] = ""
    alert_types: ClassVar[tuple[AlertType, ...]] = ()
    needs_broker: ClassVar[bool] = True
    # snapshot sections the rule reads (e.g. "tasks"): while one is null or missing the rule is
    # skipped like a rule that needs the broker while it is unknown (its alerts neither fire nor resolve)
    needs: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()

    def initial_state(self) -> State:
        return {}

    def state_problem(self, state: State) -> str | None:
        """Why a state read back from the file is not one this rule wrote (None: it is)."""
        return None if isinstance(state, dict) else "expected an object"

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        """Remember what later snapshots need; the only place a rule writes its state."""

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        raise NotImplementedError


def condition(alert_type: str, severity: str, subject: str, title: str, message: str,
              details: dict[str, Any], status: str = "firing") -> Condition:
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


def over_limit(value: float, limit: float) -> tuple[str, str]:
    """(value, limit) as a message shows them, the value visibly above the limit: `1.4 s` and
    `1 s`, not `1s` and `1s`. Long spans read as `12m` / `10m` when that already tells them apart;
    otherwise seconds, with as many decimals (up to 3) as it takes."""
    if duration(value) != duration(limit) and value >= 120:
        return duration(value), duration(limit)
    text = f"{value:.0f}"
    for places in range(4):
        text = f"{value:.{places}f}"
        if float(text) > limit:
            break
    return f"{text} s", f"{limit:g} s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
