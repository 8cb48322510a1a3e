"""watchdog: an opt-in alert that always fires, for dead-man receivers (Alertmanager's `Watchdog`).

Its presence says the whole pipeline works; its absence, that something stopped. It fires even
while the broker cannot be read (Doorman itself still works then), is never inhibited, and is
re-sent as a reminder every `alert_cooldown_seconds` like any firing alert, which keeps it up in
Alertmanager (the alertmanager sink's `endsAt`). Off unless `watchdog: true`.
"""

from __future__ import annotations

from doorman.config.settings import Config, Setting
from doorman.rules.base import AlertType, BaseRule, Condition, Rule, Snapshot, State, condition


class Watchdog(BaseRule):
    name = "watchdog"
    alert_types = (AlertType("watchdog", ("info",), "cluster",
                             "Opt-in (watchdog: true), always firing while the pipeline runs: for a dead-man "
                             "receiver, which alerts when it stops arriving."),)
    needs_broker = False
    settings = (
        Setting("watchdog", "bool", False, ("DOORMAN_WATCHDOG",),
                "Fire the always-on `watchdog` alert (info), for a dead-man receiver such as Alertmanager's."),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        if not config.watchdog:
            return []
        return [condition("watchdog", "info", "cluster", "Doorman watchdog",
                          "Always firing while Doorman's pipeline runs; if it stops arriving, Doorman stopped.",
                          {})]


RULE: Rule = Watchdog()
