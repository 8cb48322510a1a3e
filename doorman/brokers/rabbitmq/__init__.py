"""The RabbitMQ broker (kombu's `amqp`/`pyamqp` transport): its URL schemes, its configuration
keys, `connect`.

Every command loads this module (its keys are part of everyone's schema); py-amqp and requests are
imported only by `connect`. How it reads RabbitMQ: docs/rabbitmq.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from doorman.brokers.rabbitmq.urls import SCHEMES, management_url_problem, url_problem
from doorman.config.settings import Config, Setting

if TYPE_CHECKING:
    from doorman.brokers.base import BrokerPlugin
    from doorman.brokers.rabbitmq.broker import RabbitConnection


class RabbitBroker:
    """`doorman.brokers.base.BrokerPlugin` for RabbitMQ."""

    name: str = "rabbitmq"
    schemes: tuple[str, ...] = SCHEMES
    settings: tuple[Setting, ...] = (
        Setting("rabbitmq_management_url", "str", None, ("DOORMAN_RABBITMQ_MANAGEMENT_URL",),
                "RabbitMQ management API (default http://<broker host>:15672, https://...:15671 for amqps://, "
                "with the broker URL's credentials; credentials in this URL win).",
                secret=True, check=management_url_problem),
        Setting("rabbitmq_timeout", "float", 5.0, ("DOORMAN_RABBITMQ_TIMEOUT",),
                "Connect and read timeout of every AMQP and management API call.", positive=True),
        Setting("rabbitmq_statistics_interval_seconds", "float", 5.0,
                ("DOORMAN_RABBITMQ_STATISTICS_INTERVAL_SECONDS",),
                "The broker's collect_statistics_interval (rabbitmq.conf, in seconds): how old a management "
                "API figure may be; each queue's unacked_age_max_seconds says it.", positive=True),
    )

    def url_problem(self, url: str) -> str | None:
        return url_problem(url)

    def config_problem(self, cfg: Config) -> tuple[str, str] | None:
        return None

    def connect(self, cfg: Config) -> RabbitConnection:
        from doorman.brokers.rabbitmq.broker import RabbitConnection

        return RabbitConnection(cfg)


BROKER: BrokerPlugin = RabbitBroker()  # mypy checks it (and the `Broker` it connects) against the protocols
