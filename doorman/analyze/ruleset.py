"""The rules the engine runs, in evaluation order, and what it needs to know of their alert types
(which inhibit which, which need the broker, which wait out a reconnect, which never remind).

A plugin rule is foreign code: one without a `name` or an `evaluate` is left out with one line on
stderr when the rule set is made (never mid-run), every other attribute is read with a default
(`needs_broker`: True, `alert_types`: none, `observe`: nothing, `initial_state`: {}), and a rule
whose `observe` or `evaluate` raises is skipped for that snapshot with one line (once per rule):
the other rules' alerts still go out.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from doorman import plugins
from doorman.rules.base import Condition, Rule


def _warn(message: str) -> None:
    sys.stderr.write(f"doorman: {message}\n")
    sys.stderr.flush()


class GuardedRule:
    """A rule read through defaults, its failures said once and contained (module docstring)."""

    def __init__(self, rule: Any, warn: Callable[[str], None]):
        self.rule, self.warn = rule, warn
        self.name: str = rule.name
        self.needs_broker = bool(getattr(rule, "needs_broker", True))
        types = getattr(rule, "alert_types", ())
        self.alert_types = tuple(t for t in types if all(hasattr(t, a) for a in ("name", "inhibited_by")))  \
            if isinstance(types, (tuple, list)) else ()
        self.failed = False

    def __getattr__(self, attr: str) -> Any:  # anything else a caller reads: the rule's own
        return getattr(self.rule, attr)

    def _failed(self, what: str, e: BaseException) -> None:
        if not self.failed:
            self.failed = True
            self.warn(f"rule {self.name!r}: {what} failed ({type(e).__name__}: {e}); skipped for this "
                      "snapshot, the other rules go on (said once)")

    def initial_state(self) -> dict[str, Any]:
        make = getattr(self.rule, "initial_state", None)
        try:
            state = make() if callable(make) else {}
        except Exception as e:  # noqa: BLE001 - foreign code
            self._failed("initial_state", e)
            return {}
        return state if isinstance(state, dict) else {}

    def state_problem(self, state: Any) -> str | None:
        check = getattr(self.rule, "state_problem", None)
        try:
            return check(state) if callable(check) else None
        except Exception as e:  # noqa: BLE001
            return f"state check failed ({type(e).__name__})"

    def observe(self, snapshot: Any, state: Any, config: Any, now: float) -> None:
        observe = getattr(self.rule, "observe", None)
        if callable(observe):
            try:
                observe(snapshot, state, config, now)
            except Exception as e:  # noqa: BLE001
                self._failed("observe", e)

    def evaluate(self, snapshot: Any, state: Any, config: Any, now: float) -> list[Condition]:
        try:
            return list(self.rule.evaluate(snapshot, state, config, now) or ())
        except Exception as e:  # noqa: BLE001
            self._failed("evaluate", e)
            return []


def usable(rules: Sequence[Any], warn: Callable[[str], None]) -> list[GuardedRule]:
    """The rules that can run at all (a string `name`, a callable `evaluate`), guarded."""
    out = []
    for r in rules:
        if isinstance(r, GuardedRule):
            out.append(r)
            continue
        name = getattr(r, "name", None)
        if not isinstance(name, str) or not callable(getattr(r, "evaluate", None)):
            warn(f"rule {name if isinstance(name, str) else type(r).__name__!r} left out: it has no "
                 f"{'name' if not isinstance(name, str) else 'evaluate method'}")
            continue
        out.append(GuardedRule(r, warn))
    return out


class RuleSet:
    """The rules in evaluation order, and what the engine needs to know of their alert types."""

    def __init__(self, rules: Sequence[Rule], warn: Callable[[str], None] = _warn):
        self.rules = tuple(usable(rules, warn))
        self.blind = tuple(r for r in self.rules if not r.needs_broker)  # the broker could not be read
        self.inhibited_by = {t.name: t.inhibited_by for r in self.rules for t in r.alert_types}
        self.alert_types = tuple(self.inhibited_by)
        self.needing_broker = frozenset(t.name for r in self.rules if r.needs_broker for t in r.alert_types)
        self.grace_types = frozenset(t.name for r in self.rules for t in r.alert_types
                                     if getattr(t, "reconnect_grace", False))
        self.no_reminders = frozenset(t.name for r in self.rules for t in r.alert_types
                                      if not getattr(t, "reminders", True))
        # rules that read a snapshot section that may be null (`tasks`): (rule, sections, alert types)
        self.sectioned = tuple((r, tuple(getattr(r, "needs", ())), frozenset(t.name for t in r.alert_types))
                               for r in self.rules if getattr(r, "needs", ()))

    def unseen(self, snapshot: Mapping[str, object]) -> tuple[frozenset[str], frozenset[str]]:
        """(rule names, alert types) of the rules whose sections this snapshot lacks (null or missing):
        they are skipped, so unknown is never taken for OK."""
        names: set[str] = set()
        types: set[str] = set()
        for rule, sections, alert_types in self.sectioned:
            if any(snapshot.get(s) is None for s in sections):
                names.add(rule.name)
                types |= alert_types
        return frozenset(names), frozenset(types)


def default_rules() -> RuleSet:
    return RuleSet(plugins.rules())
