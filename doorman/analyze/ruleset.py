"""The rules the engine runs, in evaluation order, and what it needs to know of their alert types
(which inhibit which, which need the broker, which wait out a reconnect, which never remind)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from doorman import plugins
from doorman.rules.base import Rule


class RuleSet:
    """The rules in evaluation order, and what the engine needs to know of their alert types."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = tuple(rules)
        self.blind = tuple(r for r in self.rules if not r.needs_broker)  # the broker could not be read
        self.inhibited_by = {t.name: t.inhibited_by for r in self.rules for t in r.alert_types}
        self.alert_types = tuple(self.inhibited_by)
        self.needing_broker = frozenset(t.name for r in self.rules if r.needs_broker for t in r.alert_types)
        self.grace_types = frozenset(t.name for r in self.rules for t in r.alert_types if t.reconnect_grace)
        self.no_reminders = frozenset(t.name for r in self.rules for t in r.alert_types if not t.reminders)
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
