"""consumer_timeout_risk: on RabbitMQ, unacknowledged messages held close to (or past) the server's
`consumer_timeout`.

RabbitMQ (3.8.15+, 30 minutes by default) closes the channel of a consumer that holds a delivery
unacknowledged longer than `consumer_timeout`; the worker then loses every message it held, and
RabbitMQ redelivers them: a task that was running (`acks_late`) runs twice, and prefetched tasks
behind a long one move to another worker only after the channel is gone (celery 6429).

RabbitMQ shows no delivery time, so `unacked.oldest_age_seconds` is a lower bound that collect
keeps across snapshots (docs/rabbitmq.md): the alert fires late, never early. A one-shot check
(cron) cannot see it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import is_num
from doorman.rules.base import AlertType, BaseRule, Condition, Rule, Snapshot, State, condition, duration

AMQP = ("amqp", "amqps", "pyamqp")


def on_rabbitmq(snapshot: Snapshot) -> bool:
    broker = snapshot.get("broker")
    try:
        return isinstance(broker, str) and urlsplit(broker).scheme in AMQP
    except ValueError:
        return False


class ConsumerTimeout(BaseRule):
    name = "consumer_timeout"
    alert_types = (
        AlertType("consumer_timeout_risk", ("warning", "critical"), "cluster",
                  "RabbitMQ: an unacked message is held near or past consumer_timeout; it will be redelivered.",
                  inhibited_by=frozenset({"redis_down", "workers_down"})),
    )
    settings = (
        Setting("rabbitmq_consumer_timeout_seconds", "float", 1800.0, ("DOORMAN_RABBITMQ_CONSUMER_TIMEOUT",),
                "Your RabbitMQ's consumer_timeout (rabbitmq.conf; 30 min by default since 3.8.15).",
                section=THRESHOLDS, positive=True),
        Setting("consumer_timeout_warn_ratio", "float", 0.8, ("DOORMAN_CONSUMER_TIMEOUT_WARN_RATIO",),
                "consumer_timeout_risk warns when an unacked message is held this share of consumer_timeout.",
                section=THRESHOLDS, positive=True),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        u = snapshot.get("unacked")
        if not on_rabbitmq(snapshot) or not isinstance(u, dict) or not is_num(u.get("oldest_age_seconds")):
            return []
        held, limit = float(u["oldest_age_seconds"] or 0), config.thresholds.rabbitmq_consumer_timeout_seconds
        ratio = config.thresholds.consumer_timeout_warn_ratio
        if held < limit * ratio:
            return []
        past = held >= limit
        count = u.get("count") if is_num(u.get("count")) else None
        verb = "past" if past else "near"
        return [condition(
            "consumer_timeout_risk", "critical" if past else "warning", "cluster",
            f"Unacked message {verb} RabbitMQ's consumer_timeout",
            f"An unacknowledged message has been held at least {duration(held)}, {held / limit:.0%} of "
            f"consumer_timeout ({duration(limit)}): "
            + ("RabbitMQ closes the worker's channel and redelivers what it held (a running acks_late task runs "
               "twice)." if past else "past it RabbitMQ closes the worker's channel and redelivers what it held."),
            {"held_at_least_seconds": round(held, 3), "consumer_timeout_seconds": limit, "ratio": round(held / limit, 4),
             "unacked": count, "held_since": u.get("oldest_delivered_at")})]


RULE: Rule = ConsumerTimeout()
