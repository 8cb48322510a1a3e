"""RabbitMQ's own events (the `rabbitmq_event_exchange` plugin, off by default): which pidbox
queues were created and deleted, as it happens, so that liveness between checks costs no round
trip at all.

The plugin publishes every `queue.created` / `queue.deleted` of the broker to the topic exchange
`amq.rabbitmq.event` in vhost `/`, with the queue's name and vhost in the headers. Doorman
follows them with a queue of its own (`doorman.rmqev.<random>`, exclusive, auto-delete,
non-durable, messages expiring after 60 s), bound with those two routing keys only: it goes,
binding and all, with Doorman's connection. Where the plugin is off or vhost `/` is not
Doorman's to read, the subscription fails and the pidbox queues are probed instead.
"""

from __future__ import annotations

from dataclasses import replace

import amqp

from doorman.brokers.rabbitmq import wire
from doorman.brokers.rabbitmq.urls import Target

EXCHANGE = "amq.rabbitmq.event"
KEYS = ("queue.created", "queue.deleted")
PIDBOX_SUFFIX = ".celery.pidbox"
REPLY_SUFFIX = ".reply.celery.pidbox"  # a `celery inspect` client's reply queue, not a worker's
MAX_DRAIN = 10_000  # messages read per call at most: a storm of queue events must not stall a poll
MAX_NAME = 255


def _text(v: object) -> str | None:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "surrogateescape")
    return v if isinstance(v, str) and len(v) <= MAX_NAME else None


class PidboxEvents:
    """A subscription to the pidbox queues' creations and deletions in one vhost."""

    def __init__(self, target: Target, vhost: str, timeout: float, ssl: dict[str, object] | bool,
                 exchange_vhost: str = "/"):
        self.vhost = vhost
        self.conn = wire.connect(replace(target, vhost=exchange_vhost), timeout, ssl)
        self.seen: list[tuple[str, str]] = []  # (routing key, worker) not yet handed over
        self.overflowed = False  # events were dropped (a storm): the state must be probed again
        try:
            ch = self.conn.channel()
            queue = wire.own_queue("rmqev")
            ch.queue_declare(queue=queue, durable=False, exclusive=True, auto_delete=True,
                             arguments={"x-message-ttl": 60_000})
            for key in KEYS:
                ch.queue_bind(queue=queue, exchange=EXCHANGE, routing_key=key)
            ch.basic_consume(queue=queue, no_ack=True, callback=self._on_message)
        except (OSError, EOFError):  # no answer: a close handshake would wait out another timeout
            wire.abandon(self.conn)
            raise
        except Exception:
            wire.close(self.conn)
            raise

    def _on_message(self, msg: amqp.Message) -> None:
        headers = msg.properties.get("application_headers") or {}
        key = msg.delivery_info.get("routing_key") if msg.delivery_info else None
        name, vhost = _text(headers.get("name")), _text(headers.get("vhost"))
        if (key in KEYS and vhost == self.vhost and name and name.endswith(PIDBOX_SUFFIX)
                and not name.endswith(REPLY_SUFFIX)):
            if len(self.seen) < MAX_DRAIN:
                self.seen.append((str(key), name[: -len(PIDBOX_SUFFIX)]))
            else:
                self.overflowed = True

    def drain(self) -> list[tuple[str, str]]:
        """The (event, worker) pairs arrived since the last call, in order; raises when the
        subscription broke (the caller falls back to probes)."""
        for _ in range(MAX_DRAIN):
            try:
                self.conn.drain_events(timeout=0.001)
            except TimeoutError:
                break
        out, self.seen = self.seen, []
        return out

    def close(self) -> None:
        wire.close(self.conn)
