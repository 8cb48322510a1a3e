"""What a rule is: its metadata, its configuration keys, its state, and `evaluate`.

A rule returns *conditions*, not notifications: the engine (`doorman.analyze`) turns them into
alerts, deciding about fingerprints, cooldown, inhibition and resolution. A rule is a pure function
of (snapshot, its own slice of state, config, now), so it can be tested with dicts. "Now" is the
snapshot's `ts`, never the wall clock, so a replay gives the alerts a live run gave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypedDict

from doorman.settings import Config, Setting

Snapshot = dict[str, Any]
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


class Rule(Protocol):
    name: str
    alert_types: tuple[AlertType, ...]
    needs_broker: bool  # skipped (its alerts neither fire nor resolve) while the broker is unknown
    settings: tuple[Setting, ...]

    def initial_state(self) -> State: ...

    def state_problem(self, state: State) -> str | None: ...

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None: ...

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]: ...


class BaseRule:
    """Defaults for a rule without memory: subclass it and set the class attributes."""

    name: ClassVar[str] = ""
    alert_types: ClassVar[tuple[AlertType, ...]] = ()
    needs_broker: ClassVar[bool] = True
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


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
