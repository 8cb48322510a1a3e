"""Opt-in hook for *your* Celery app: stamp each message with its publish time.

Celery messages carry no publish time, so a monitor can only guess how long the oldest task
has waited. One line in the app that publishes tasks makes the age exact:

    import doorman.hook; doorman.hook.install(app)

It adds the header `x_doorman_published_at` (epoch seconds) in `before_task_publish`, and the AMQP
`timestamp` property when the message has none (RabbitMQ reports it as the queue's
`head_message_timestamp`); workers ignore both. Needs only Celery, not the rest of Doorman's dependencies.
"""

from __future__ import annotations

import time
from typing import Any

HEADER = "x_doorman_published_at"


def stamp_publish_time(sender: Any = None, headers: dict | None = None, properties: dict | None = None,
                       **kwargs: Any) -> None:
    now = time.time()
    if headers is not None and HEADER not in headers:
        headers[HEADER] = now
    # AMQP's own `timestamp` property (whole epoch seconds): RabbitMQ shows the head message's as the
    # queue's `head_message_timestamp`, which is how Doorman reads the wait on RabbitMQ
    if properties is not None and "timestamp" not in properties:
        properties["timestamp"] = int(now)


def install(app: Any = None) -> None:
    """Connect the stamp to Celery's `before_task_publish` signal (idempotent)."""
    from celery.signals import before_task_publish

    before_task_publish.connect(stamp_publish_time, weak=False, dispatch_uid="doorman-publish-stamp")


def uninstall() -> None:
    from celery.signals import before_task_publish

    before_task_publish.disconnect(dispatch_uid="doorman-publish-stamp")
