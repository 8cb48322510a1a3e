"""broker_alarm: RabbitMQ raised a resource alarm (`mem_alarm`, `disk_free_alarm`).

While an alarm holds, RabbitMQ blocks every connection that publishes: `apply_async` hangs in the
application, beat cannot send, and nothing says so in Celery. Hence an emergency. Read from
`broker_health.alarms` (the management API's `/api/nodes`); a broker that reports no alarms
(Redis) never fires it.
"""

from __future__ import annotations

from doorman.rules.base import AlertType, BaseRule, Condition, Snapshot, State, condition
from doorman.settings import Config

KNOWN = {"mem_alarm": "memory", "disk_free_alarm": "free disk space"}


class BrokerAlarm(BaseRule):
    name = "broker_alarm"
    alert_types = (
        AlertType("broker_alarm", ("emergency",), "cluster",
                  "RabbitMQ raised a memory or disk alarm: every publisher is blocked.",
                  inhibited_by=frozenset({"redis_down"})),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        health = snapshot.get("broker_health")
        alarms = health.get("alarms") if isinstance(health, dict) else None
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
            {"alarms": raised, "used_memory_bytes": health.get("used_memory_bytes") if isinstance(health, dict) else None,
             "max_memory_bytes": health.get("max_memory_bytes") if isinstance(health, dict) else None})]


RULE = BrokerAlarm()
