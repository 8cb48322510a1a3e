"""broker_alarm: RabbitMQ raised a resource alarm (`mem_alarm`, `disk_free_alarm`).

While an alarm holds, RabbitMQ blocks every connection that publishes: `apply_async` hangs in the
application, beat cannot send, and nothing says so in Celery. Hence an emergency. Read from
`broker_health.alarms` (the management API's `/api/nodes`); a broker that reports no alarms
(Redis) never fires it.
"""

from __future__ import annotations

from doorman.config.settings import Config
from doorman.rules.base import AlertType, BaseRule, Condition, Rule, Snapshot, State, condition
from doorman.rules.broker_memory import BROKER_DOWN, health

KNOWN = {"mem_alarm": "memory", "disk_free_alarm": "free disk space"}


class BrokerAlarm(BaseRule):
    name = "broker_alarm"
    alert_types = (
        AlertType("broker_alarm", ("emergency",), "cluster",
                  "RabbitMQ raised a memory or disk alarm: every publisher is blocked.",
                  inhibited_by=BROKER_DOWN),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        h = health(snapshot)
        alarms = h.get("alarms")
        if not isinstance(alarms, list):
            return []
        raised = sorted({a for a in alarms if isinstance(a, str) and a in KNOWN})
        if not raised:
            return []
        what = " and ".join(KNOWN[a] for a in raised)
        return [condition(
            "broker_alarm", "emergency", "cluster", "Broker alarm: publishers blocked",
            f"RabbitMQ raised its {what} alarm ({', '.join(raised)}): every connection that publishes is "
            f"blocked until it clears, so no new task can be sent.",
            {"alarms": raised, "used_memory_bytes": h.get("used_memory_bytes"), "max_memory_bytes": h.get("max_memory_bytes")})]


RULE: Rule = BrokerAlarm()
