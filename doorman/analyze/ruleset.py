"""The rules the engine runs, in evaluation order, and what it needs to know of their alert types
(which inhibit which, which need the broker, which wait out a reconnect, which never remind)."""

from __future__ import annotations

from collections.abc import Sequence

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


def default_rules() -> RuleSet:
    return RuleSet(plugins.rules())
